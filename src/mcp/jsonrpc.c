/*
 * The server's messages out (results, errors, notifications) and the text
 * and base64 helpers its parts share.
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void send_json(const reply *to, cJSON *message) {
    char *text = message ? cJSON_PrintUnformatted(message) : NULL;
    if (text) to->send(to->context, text);
    free(text);
    cJSON_Delete(message);
}

cJSON *mcp_envelope(void) {
    cJSON *message = cJSON_CreateObject();
    cJSON_AddStringToObject(message, "jsonrpc", "2.0");
    return message;
}

/* In 2026-07-28 every result says what it is: "complete" unless the
 * handler made it something else (input_required). */
void mcp_send_result(const reply *to, const cJSON *id, cJSON *result) {
    if (!result) result = cJSON_CreateObject();
    if (to->stateless && !cJSON_HasObjectItem(result, "resultType"))
        cJSON_AddStringToObject(result, "resultType", "complete");
    cJSON *message = mcp_envelope();
    cJSON_AddItemToObject(message, "id", cJSON_Duplicate(id, 1));
    cJSON_AddItemToObject(message, "result", result);
    send_json(to, message);
}

/* `data` (or NULL) passes to the message. */
void mcp_send_error_data(const reply *to, const cJSON *id, int code, const char *text,
                         cJSON *data) {
    cJSON *message = mcp_envelope();
    cJSON_AddItemToObject(message, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *error = cJSON_AddObjectToObject(message, "error");
    cJSON_AddNumberToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", text);
    if (data) cJSON_AddItemToObject(error, "data", data);
    send_json(to, message);
}

void mcp_send_error(const reply *to, const cJSON *id, int code, const char *text) {
    mcp_send_error_data(to, id, code, text, NULL);
}

void mcp_send_notification(const reply *to, const char *method, cJSON *params) {
    cJSON *message = mcp_envelope();
    cJSON_AddStringToObject(message, "method", method);
    cJSON_AddItemToObject(message, "params", params);
    send_json(to, message);
}

int mcp_is_valid_id(const cJSON *id) {
    return cJSON_IsString(id) || cJSON_IsNumber(id);
}

void mcp_classify(const char *text, size_t size, mcp_message_info *info) {
    memset(info, 0, sizeof *info);
    cJSON *message = cJSON_ParseWithLength(text, size);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(message, "jsonrpc");
    if (!cJSON_IsObject(message) || !cJSON_IsString(version) ||
        strcmp(version->valuestring, "2.0") != 0) {
        cJSON_Delete(message);
        return;
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(message, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(message, "params");
    info->stateless =
        cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(params, "_meta"), META_PROTOCOL);
    if (!cJSON_IsString(method)) {
        info->kind = id ? MCP_MESSAGE_RESPONSE : MCP_MESSAGE_INVALID;
    } else if (id) {
        info->kind = mcp_is_valid_id(id) ? MCP_MESSAGE_REQUEST : MCP_MESSAGE_INVALID;
        info->is_initialize = strcmp(method->valuestring, "initialize") == 0;
        /* The tasks methods: tasks/result (2025-11-25) waits for its task, and the
         * others may wait on the store (another thread's commit holds it):
         * neither may hold up a transport's reader or event loop. */
        info->is_tool_call = strcmp(method->valuestring, "tools/call") == 0 ||
                             strncmp(method->valuestring, "tasks/", 6) == 0;
        if (info->kind == MCP_MESSAGE_REQUEST) info->id = cJSON_PrintUnformatted(id);
    } else {
        info->kind = MCP_MESSAGE_NOTIFICATION;
    }
    cJSON_Delete(message);
}

/* --- text helpers ------------------------------------------------------------------ */

void mcp_text_append(text *t, const char *data, size_t size) {
    if (t->size + size + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 256;
        while (capacity < t->size + size + 1) capacity *= 2;
        char *grown = realloc(t->data, capacity);
        if (!grown) return; /* output is dropped rather than the server */
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->size, data, size);
    t->size += size;
    t->data[t->size] = '\0';
}

void mcp_text_append_string(text *t, const char *s) {
    mcp_text_append(t, s, strlen(s));
}

/* A copy of `message` (NULL: NULL) in which the internal, principal-scoped
 * name of a session reads as the name its client gave: the sandbox's
 * messages name the session it knows. */
char *mcp_unscope(const char *message, const char *scoped, const char *name) {
    if (!message) return NULL;
    text out = {0};
    size_t scoped_length = scoped ? strlen(scoped) : 0;
    const char *at;
    while (scoped_length && (at = strstr(message, scoped))) {
        mcp_text_append(&out, message, (size_t)(at - message));
        mcp_text_append_string(&out, name);
        message = at + scoped_length;
    }
    mcp_text_append_string(&out, message);
    return out.data ? out.data : strdup("");
}

static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* mcp-run-python's escapeClosing: every `</?\s*TAG(.*?>)?` in `body` (case
 * insensitive, `.` not crossing a newline) has its < and > escaped, so code
 * output cannot close or open the tag it is reported in. */
void mcp_append_escaped(text *out, const char *body, size_t size, const char *tag) {
    size_t tag_length = strlen(tag);
    size_t i = 0;
    while (i < size) {
        size_t end = i;
        if (body[i] == '<') {
            size_t j = i + 1;
            if (j < size && body[j] == '/') j++;
            while (j < size && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' ||
                                body[j] == '\r' || body[j] == '\f' || body[j] == '\v'))
                j++;
            size_t k = 0;
            while (k < tag_length && j + k < size && lower((unsigned char)body[j + k]) == tag[k]) k++;
            if (k == tag_length) {
                end = j + k;
                size_t m = end;
                while (m < size && body[m] != '>' && body[m] != '\n' && body[m] != '\r') m++;
                if (m < size && body[m] == '>') end = m + 1;
            }
        }
        if (end == i) {
            mcp_text_append(out, body + i, 1);
            i++;
            continue;
        }
        for (; i < end; i++) {
            if (body[i] == '<') mcp_text_append_string(out, "&lt;");
            else if (body[i] == '>') mcp_text_append_string(out, "&gt;");
            else mcp_text_append(out, body + i, 1);
        }
    }
}
