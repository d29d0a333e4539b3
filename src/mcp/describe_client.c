/*
 * describe_client.c — the messages of `describe` through the MCP client
 * (describe_client.h).  The file was checked by describe_check_file.
 */
#include "describe_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capsule.h"
#include "../help/describe_media.h"
#include "../sandbox/buffer.h"

static int is_image(const char *media_type) {
    return strncmp(media_type, "image/", 6) == 0;
}

static cJSON *message(const char *role, cJSON *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddItemToObject(m, "content", content);
    return m;
}

cJSON *describe_client_sampling(const unsigned char *data, size_t size, const char *media_type,
                                const char *name, const char *question, char *error) {
    if (strcmp(media_type, "application/pdf") == 0) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the client's model is asked by MCP sampling, "
                 "which carries text and images, not PDF: render the page as an image (e.g. "
                 "PNG) and describe that");
        return NULL;
    }
    cJSON *file = cJSON_CreateObject();
    char *encoded = is_image(media_type) ? base64_encode(data, size)
                                         : describe_text_with_heading(name, data, size);
    if (!file || !encoded) {
        cJSON_Delete(file);
        free(encoded);
        snprintf(error, CAP_ERROR_SIZE, "out of memory");
        return NULL;
    }
    if (is_image(media_type)) {
        cJSON_AddStringToObject(file, "type", "image");
        cJSON_AddStringToObject(file, "data", encoded);
        cJSON_AddStringToObject(file, "mimeType", media_type);
    } else {
        cJSON_AddStringToObject(file, "type", "text");
        cJSON_AddStringToObject(file, "text", encoded);
    }
    free(encoded);
    cJSON *asked = cJSON_CreateObject();
    cJSON_AddStringToObject(asked, "type", "text");
    cJSON_AddStringToObject(asked, "text", question);
    /* Two user messages, one block each: every revision since 2024-11-05
     * accepts that (arrays of blocks came with 2025-11-25). */
    cJSON *params = cJSON_CreateObject();
    cJSON *messages = cJSON_AddArrayToObject(params, "messages");
    cJSON_AddItemToArray(messages, message("user", file));
    cJSON_AddItemToArray(messages, message("user", asked));
    char system[400];
    snprintf(system, sizeof system, "Answer the question about the file %.200s that a program "
             "made. Be factual and concise.", name);
    cJSON_AddStringToObject(params, "systemPrompt", system);
    cJSON_AddStringToObject(params, "includeContext", "none");
    cJSON_AddNumberToObject(params, "maxTokens", DESCRIBE_CLIENT_MAX_TOKENS);
    return params;
}

char *describe_client_answer(const cJSON *result, char *error) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(result, "content");
    buffer text = {0};
    const cJSON *block;
    if (cJSON_IsObject(content)) {
        const cJSON *piece = cJSON_GetObjectItemCaseSensitive(content, "text");
        if (cJSON_IsString(piece)) buffer_append(&text, piece->valuestring, strlen(piece->valuestring));
    } else {
        cJSON_ArrayForEach(block, content) {
            const cJSON *piece = cJSON_GetObjectItemCaseSensitive(block, "text");
            if (cJSON_IsString(piece))
                buffer_append(&text, piece->valuestring, strlen(piece->valuestring));
        }
    }
    if (!text.data) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the client's model answered no text (the "
                 "sampling result's content has no text block)");
        return NULL;
    }
    char *clean = utf8_sanitize(text.data, text.size);
    buffer_free(&text);
    if (!clean) snprintf(error, CAP_ERROR_SIZE, "out of memory");
    return clean;
}

cJSON *describe_client_fallback(const unsigned char *data, size_t size, const char *media_type,
                                const char *path, const char *question) {
    cJSON *result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(result, "content");
    char note[1024];
    snprintf(note, sizeof note, "No model is configured to describe files, and this client "
             "offers none (sampling), so here is the file itself (%s, %zu bytes): look at it "
             "to answer: %.600s", media_type, size, question);
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(text, "type", "text");
    cJSON_AddStringToObject(text, "text", note);
    cJSON_AddItemToArray(content, text);
    cJSON *file = cJSON_CreateObject();
    int textual = strcmp(media_type, "text/plain") == 0;
    char *encoded = textual ? NULL : base64_encode(data, size);
    if (is_image(media_type) && encoded) {
        cJSON_AddStringToObject(file, "type", "image");
        cJSON_AddStringToObject(file, "data", encoded);
        cJSON_AddStringToObject(file, "mimeType", media_type);
    } else {
        char uri[1100];
        snprintf(uri, sizeof uri, "file://%s%.1000s", path[0] == '/' ? "" : "/", path);
        cJSON_AddStringToObject(file, "type", "resource");
        cJSON *resource = cJSON_AddObjectToObject(file, "resource");
        cJSON_AddStringToObject(resource, "uri", uri);
        cJSON_AddStringToObject(resource, "mimeType", media_type);
        if (textual) {
            char *clean = utf8_sanitize((const char *)data, size); /* already UTF-8: a copy */
            cJSON_AddStringToObject(resource, "text", clean ? clean : "");
            free(clean);
        } else {
            cJSON_AddStringToObject(resource, "blob", encoded ? encoded : "");
        }
    }
    free(encoded);
    cJSON_AddItemToArray(content, file);
    cJSON *structured = cJSON_AddObjectToObject(result, "structuredContent");
    cJSON_AddStringToObject(structured, "backend", "fallback");
    cJSON_AddStringToObject(structured, "media_type", media_type);
    cJSON_AddNumberToObject(structured, "size", (double)size);
    cJSON_AddBoolToObject(result, "isError", 0);
    return result;
}
