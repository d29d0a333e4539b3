/*
 * describe.c — `describe`: a file the code produced (an image, a PDF, text)
 * and a question, sent by the host to a configured OpenAI-compatible
 * chat/completions endpoint; the model's answer as text.
 *
 * The endpoint is the only URL allowed (no redirects: it is a POST), its
 * key is sent as a bearer token and never shown.  The file's media type is
 * read from its first bytes, never from its name; sizes are capped before
 * anything is encoded.  One function serves the MCP tool, the guest's
 * capsule.describe() (on the call channel) and cap_config_describe.
 */
#include "describe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/http.h"
#include "../sandbox/sandbox.h"

#define DEFAULT_MODEL "gpt-4o-mini"
#define MAX_QUESTION_BYTES (8u << 10)
#define MAX_TEXT_FILE_BYTES (256u << 10)
#define MAX_ANSWER_BYTES (4u << 20)
#define MAX_TOKENS 1024
#define DEFAULT_SECONDS 120.0

int cap_config_set_describe(cap_config *config, const char *url, const char *api_key,
                            const char *model, char *error) {
    if (!config) {
        sandbox_set_error(error, "cap_config_set_describe: missing config");
        return CAP_EINVAL;
    }
    if (url && ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
                strlen(url) >= 4096)) {
        sandbox_set_error(error, "describe: the endpoint must be an http:// or https:// URL "
                                 "(a chat/completions URL)");
        return CAP_EINVAL;
    }
    if ((api_key && (strlen(api_key) > 4000 || strpbrk(api_key, "\r\n"))) ||
        (model && (!*model || strlen(model) > 200))) {
        sandbox_set_error(error, "describe: the key must be one line of at most 4000 bytes, "
                                 "the model a name of at most 200");
        return CAP_EINVAL;
    }
    char **fields[] = {&config->describe_url, &config->describe_key, &config->describe_model};
    const char *values[] = {url, api_key, model};
    for (int i = 0; i < 3; i++) {
        if (!values[i]) continue;
        char *copy = strdup(values[i]);
        if (!copy) {
            sandbox_set_error(error, "out of memory");
            return CAP_ENOMEM;
        }
        if (*fields[i] && i == 1) explicit_bzero(*fields[i], strlen(*fields[i]));
        free(*fields[i]);
        *fields[i] = copy;
    }
    return CAP_OK;
}

int cap_config_describe_enabled(const cap_config *config) {
    return config && config->describe_url != NULL;
}

/* The media type of `data` from its first bytes, or NULL when describe
 * cannot send it. */
static const char *sniff(const unsigned char *data, size_t size) {
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
    if (size >= 3 && memcmp(data, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
    if (size >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0))
        return "image/gif";
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (size >= 5 && memcmp(data, "%PDF-", 5) == 0) return "application/pdf";
    if (memchr(data, '\0', size)) return NULL;
    /* Text: valid UTF-8 throughout. */
    for (size_t i = 0; i < size;) {
        unsigned char c = data[i];
        size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 2
                        : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!length || i + length > size) return NULL;
        for (size_t k = 1; k < length; k++)
            if ((data[i + k] & 0xC0) != 0x80) return NULL;
        i += length;
    }
    return "text/plain";
}

static char *data_url(const char *media_type, const unsigned char *data, size_t size) {
    size_t prefix = strlen("data:;base64,") + strlen(media_type);
    char *url = malloc(prefix + 4 * ((size + 2) / 3) + 1);
    if (!url) return NULL;
    snprintf(url, prefix + 1, "data:%s;base64,", media_type);
    EVP_EncodeBlock((unsigned char *)url + prefix, data, (int)size);
    return url;
}

/* The chat/completions request: the question, then the file as an image
 * (a data URL), a PDF (a file part) or text. */
static char *build_request(const char *model, const char *question, const char *name,
                           const char *media_type, const unsigned char *data, size_t size) {
    cJSON *request = cJSON_CreateObject();
    cJSON_AddStringToObject(request, "model", model);
    cJSON_AddNumberToObject(request, "max_tokens", MAX_TOKENS);
    cJSON *message = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(request, "messages"), message);
    cJSON_AddStringToObject(message, "role", "user");
    cJSON *content = cJSON_AddArrayToObject(message, "content");
    cJSON *text = cJSON_CreateObject();
    cJSON_AddStringToObject(text, "type", "text");
    cJSON_AddStringToObject(text, "text", question);
    cJSON_AddItemToArray(content, text);
    cJSON *part = cJSON_CreateObject();
    char *encoded = NULL;
    if (strcmp(media_type, "text/plain") == 0) {
        char *file = malloc(size + 300);
        if (file) {
            int n = snprintf(file, 300, "The file %.200s (text/plain):\n\n", name);
            memcpy(file + n, data, size);
            file[n + size] = '\0';
            cJSON_AddStringToObject(part, "type", "text");
            cJSON_AddStringToObject(part, "text", file);
            free(file);
        }
    } else if ((encoded = data_url(media_type, data, size))) {
        if (strcmp(media_type, "application/pdf") == 0) {
            cJSON_AddStringToObject(part, "type", "file");
            cJSON *file = cJSON_AddObjectToObject(part, "file");
            cJSON_AddStringToObject(file, "filename", name);
            cJSON_AddStringToObject(file, "file_data", encoded);
        } else {
            cJSON_AddStringToObject(part, "type", "image_url");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_url"), "url", encoded);
        }
    }
    free(encoded);
    cJSON_AddItemToArray(content, part);
    char *json = cJSON_PrintUnformatted(request);
    cJSON_Delete(request);
    return json;
}

/* choices[0].message.content: a string, or a list of text parts. */
static char *answer_text(const cJSON *response) {
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(response, "choices"), 0);
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    buffer text = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *piece = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(piece)) buffer_append(&text, piece->valuestring, strlen(piece->valuestring));
    }
    if (!text.data) return NULL;
    if (buffer_append(&text, "", 1) != 0) {
        buffer_free(&text);
        return NULL;
    }
    return text.data;
}

describe_outcome describe_file(cap_config *config, const void *data, size_t size,
                               const char *name, const char *question, double timeout_seconds,
                               char **json, char *error) {
    *json = NULL;
    if (!cap_config_describe_enabled(config)) {
        sandbox_set_error(error, "describe is not available: the server has no model endpoint "
                                 "(capsule serve --describe-url URL --describe-key-file FILE)");
        return DESCRIBE_OFF;
    }
    if (!question || !*question || strlen(question) > MAX_QUESTION_BYTES) {
        sandbox_set_error(error, "describe needs a question of 1 to %u bytes", MAX_QUESTION_BYTES);
        return DESCRIBE_INVALID;
    }
    if (!data || size == 0) {
        sandbox_set_error(error, "describe: the file is empty");
        return DESCRIBE_INVALID;
    }
    if (size > DESCRIBE_MAX_FILE_BYTES) {
        sandbox_set_error(error, "describe: the file has %zu bytes, more than the %u it may have "
                                 "(make the image smaller, or send one page)", size,
                          DESCRIBE_MAX_FILE_BYTES);
        return DESCRIBE_INVALID;
    }
    const char *media_type = sniff(data, size);
    if (!media_type) {
        sandbox_set_error(error, "describe: unsupported media type (it takes PNG, JPEG, GIF and "
                                 "WebP images, PDF and UTF-8 text)");
        return DESCRIBE_INVALID;
    }
    if (strcmp(media_type, "text/plain") == 0 && size > MAX_TEXT_FILE_BYTES) {
        sandbox_set_error(error, "describe: a text file may have at most %u bytes",
                          MAX_TEXT_FILE_BYTES);
        return DESCRIBE_INVALID;
    }
    const char *model = config->describe_model ? config->describe_model : DEFAULT_MODEL;
    char *request = build_request(model, question, name && *name ? name : "file", media_type, data,
                                  size);
    if (!request) {
        sandbox_set_error(error, "out of memory");
        return DESCRIBE_FAILED;
    }
    char *allowed[] = {config->describe_url};
    http_policy policy = {allowed, 1,
                          timeout_seconds > 0 && timeout_seconds < DEFAULT_SECONDS
                              ? timeout_seconds
                              : DEFAULT_SECONDS,
                          MAX_ANSWER_BYTES, "application/json"};
    char authorization[4200] = "";
    if (config->describe_key)
        snprintf(authorization, sizeof authorization, "Bearer %s", config->describe_key);
    buffer body = {0};
    char message[256] = "";
    int rc = http_post_authorized(&policy, config->describe_url,
                                  authorization[0] ? authorization : NULL, request,
                                  strlen(request), &body, message);
    explicit_bzero(authorization, sizeof authorization);
    free(request);
    if (rc != 0) {
        buffer_free(&body);
        sandbox_set_error(error, "describe: the model endpoint failed: %s", message);
        return rc == -ETIMEDOUT ? DESCRIBE_TIMEOUT : DESCRIBE_FAILED;
    }
    cJSON *response = cJSON_ParseWithLength(body.data ? body.data : "", body.size);
    buffer_free(&body);
    char *answer = response ? answer_text(response) : NULL;
    cJSON_Delete(response);
    if (!answer) {
        sandbox_set_error(error, "describe: the model endpoint's answer has no text "
                                 "(choices[0].message.content)");
        return DESCRIBE_FAILED;
    }
    char *clean = utf8_sanitize(answer, strlen(answer)); /* JSON strings must be UTF-8 */
    free(answer);
    if (!clean) {
        sandbox_set_error(error, "out of memory");
        return DESCRIBE_FAILED;
    }
    answer = clean;
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "answer", answer);
    cJSON_AddStringToObject(result, "media_type", media_type);
    cJSON_AddStringToObject(result, "model", model);
    free(answer);
    *json = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);
    if (!*json) {
        sandbox_set_error(error, "out of memory");
        return DESCRIBE_FAILED;
    }
    return DESCRIBE_OK;
}

char *cap_config_describe(cap_config *config, const void *data, size_t size, const char *name,
                          const char *question, double timeout_seconds, char *error) {
    char *json = NULL;
    if (!config) {
        sandbox_set_error(error, "cap_config_describe: missing config");
        return NULL;
    }
    describe_file(config, data, size, name, question, timeout_seconds, &json, error);
    return json;
}
