/*
 * result.c — cap_result: how a run ended, its output, return value,
 * artifacts and installed packages.  Made here from what a worker sends
 * (its 'R' result and 'A' artifacts: guest-controlled bytes, every field
 * checked), read through the cap_result_* accessors.
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GUEST_ENOSPC 51 /* the guest's errno numbering is WASI's, not Linux's */

static char *json_string(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) && item->valuestring ? strdup(item->valuestring) : NULL;
}

char *sandbox_format_message(const char *format, ...) {
    char text[512];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    return strdup(text);
}

/* Reads the worker's 'R' frame: how the guest ended, and the runner's JSON.
 * The runner's part is guest-controlled, so every field is checked. */
void sandbox_parse_result(cap_result *result, const char *payload, size_t size) {
    cJSON *outer = cJSON_ParseWithLength(payload, size);
    const cJSON *guest_text = cJSON_GetObjectItemCaseSensitive(outer, "guest");
    cJSON *guest = cJSON_IsString(guest_text) ? cJSON_Parse(guest_text->valuestring) : NULL;
    const cJSON *exit_code = cJSON_GetObjectItemCaseSensitive(outer, "exit_code");
    int memory_exhausted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(outer, "memory_exhausted"));
    result->exit_code = cJSON_IsNumber(exit_code) ? exit_code->valueint : 1;

    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(outer, "trapped"))) {
        result->status = memory_exhausted ? CAP_STATUS_MEMORY_LIMIT : CAP_STATUS_TRAP;
        result->exit_code = 128 + SIGABRT;
        char *message = json_string(outer, "message");
        result->error = memory_exhausted
                            ? sandbox_format_message("memory limit reached: the interpreter "
                                                     "could not recover (%s)",
                                                     message ? message : "trap")
                            : message;
        if (memory_exhausted) free(message);
    } else if (cJSON_IsObject(guest)) {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(guest, "status");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(guest, "exit_code");
        const cJSON *exception = cJSON_GetObjectItemCaseSensitive(guest, "exception");
        const cJSON *error_number = cJSON_GetObjectItemCaseSensitive(guest, "errno");
        int success = cJSON_IsString(status) && strcmp(status->valuestring, "success") == 0;
        result->status = success ? CAP_STATUS_SUCCESS : CAP_STATUS_RUN_ERROR;
        if (cJSON_IsString(status) && strcmp(status->valuestring, "install-error") == 0)
            result->status = CAP_STATUS_INSTALL_ERROR;
        result->exit_code = cJSON_IsNumber(code) ? code->valueint : (success ? 0 : 1);
        result->return_value = json_string(guest, "return_value");
        result->error = json_string(guest, "error");
        if (!success && cJSON_IsString(exception)) {
            if (strcmp(exception->valuestring, "MemoryError") == 0)
                result->status = CAP_STATUS_MEMORY_LIMIT;
            else if (cJSON_IsNumber(error_number) && error_number->valueint == GUEST_ENOSPC)
                result->status = CAP_STATUS_DISK_LIMIT;
        }
    } else {
        /* No report from the runner: os._exit(), or it was tampered with. */
        result->status = result->exit_code == 0 ? CAP_STATUS_SUCCESS : CAP_STATUS_RUN_ERROR;
        if (result->exit_code != 0 || guest_text)
            result->error = strdup("the program ended without a result (os._exit, or it "
                                   "wrote to capsule's control channel)");
        if (guest_text && result->status == CAP_STATUS_SUCCESS) result->status = CAP_STATUS_RUN_ERROR;
    }
    cJSON_Delete(guest);
    cJSON_Delete(outer);
}

static const char *media_type(const char *name) {
    static const char *const types[][2] = {
        {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"},
        {"gif", "image/gif"}, {"svg", "image/svg+xml"}, {"webp", "image/webp"},
        {"pdf", "application/pdf"}, {"csv", "text/csv"}, {"json", "application/json"},
        {"txt", "text/plain"}, {"md", "text/markdown"}, {"html", "text/html"},
        {"htm", "text/html"}, {"xml", "application/xml"}, {"zip", "application/zip"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    };
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i][0]) == 0) return types[i][1];
    return "application/octet-stream";
}

/* An 'A' frame: "relative/name", NUL, bytes.  The worker is guest code's
 * neighbour, so the name is checked as strictly as any guest path: it must
 * already be normalised and relative.  Returns 0, or -EPROTO for garbage
 * and -EFBIG past the run's artifact budget. */
int sandbox_add_artifact(cap_result *result, const char *payload, size_t size,
                        size_t *artifact_bytes) {
    const char *end = memchr(payload, '\0', size);
    if (!end || end == payload || (size_t)(end - payload) >= VFS_PATH_MAX) return -EPROTO;
    char normalized[VFS_PATH_MAX];
    if (payload[0] == '/' || vfs_normalize("/", payload, (size_t)(end - payload), normalized) ||
        strcmp(normalized + 1, payload) != 0)
        return -EPROTO;
    size_t data_size = size - (size_t)(end - payload) - 1;
    if (data_size > MAX_ARTIFACT_BYTES - *artifact_bytes) return -EFBIG;
    cap_artifact *grown =
        realloc(result->artifacts, (result->artifact_count + 1) * sizeof *result->artifacts);
    if (!grown) return -ENOMEM;
    result->artifacts = grown;
    cap_artifact *artifact = &grown[result->artifact_count];
    unsigned char *data = malloc(data_size ? data_size : 1);
    char *name = strdup(payload), *type = strdup(media_type(payload));
    if (!data || !name || !type) {
        free(data);
        free(name);
        free(type);
        return -ENOMEM;
    }
    memcpy(data, end + 1, data_size);
    *artifact = (cap_artifact){name, type, data, data_size};
    result->artifact_count++;
    *artifact_bytes += data_size;
    return 0;
}

cap_result *sandbox_result_new(cap_status status, const char *error) {
    cap_result *result = calloc(1, sizeof *result);
    if (result) {
        result->status = status;
        result->exit_code = status == CAP_STATUS_SUCCESS ? 0 : 1;
        result->error = error ? strdup(error) : NULL;
    }
    return result;
}

/* --- accessors --------------------------------------------------------------- */

cap_status cap_result_status(const cap_result *result) {
    return result->status;
}

const char *cap_status_name(cap_status status) {
    switch (status) {
    case CAP_STATUS_SUCCESS: return "success";
    case CAP_STATUS_RUN_ERROR: return "run-error";
    case CAP_STATUS_TRAP: return "trap";
    case CAP_STATUS_TIMEOUT: return "timeout";
    case CAP_STATUS_CPU_LIMIT: return "cpu-limit";
    case CAP_STATUS_MEMORY_LIMIT: return "memory-limit";
    case CAP_STATUS_OUTPUT_LIMIT: return "output-limit";
    case CAP_STATUS_DISK_LIMIT: return "disk-limit";
    case CAP_STATUS_CRASH: return "crash";
    case CAP_STATUS_SESSION_ERROR: return "session-error";
    case CAP_STATUS_INSTALL_ERROR: return "install-error";
    case CAP_STATUS_CANCELLED: return "cancelled";
    }
    return "unknown";
}

int cap_result_exit_code(const cap_result *result) {
    return result->exit_code;
}

const char *cap_result_stdout(const cap_result *result, size_t *size) {
    *size = result->out.size;
    return result->out.data ? result->out.data : "";
}

const char *cap_result_stderr(const cap_result *result, size_t *size) {
    *size = result->err.size;
    return result->err.data ? result->err.data : "";
}

const char *cap_result_return_value(const cap_result *result) {
    return result->return_value;
}

const char *cap_result_error(const cap_result *result) {
    return result->error;
}

size_t cap_result_artifact_count(const cap_result *result) {
    return result->artifact_count;
}

const cap_artifact *cap_result_artifact(const cap_result *result, size_t index) {
    return index < result->artifact_count ? &result->artifacts[index] : NULL;
}

size_t cap_result_dependency_count(const cap_result *result) {
    return result->dependency_count;
}

const char *cap_result_dependency(const cap_result *result, size_t index) {
    return index < result->dependency_count ? result->dependencies[index] : NULL;
}

size_t cap_result_note_count(const cap_result *result) {
    return result->note_count;
}

const char *cap_result_note(const cap_result *result, size_t index) {
    return index < result->note_count ? result->notes[index] : NULL;
}

static void add_text(cJSON *object, const char *name, const char *data, size_t size) {
    if (!data) {
        cJSON_AddNullToObject(object, name);
        return;
    }
    char *text = utf8_sanitize(data, size);
    cJSON_AddStringToObject(object, name, text ? text : "");
    free(text);
}

static void add_strings(cJSON *object, const char *name, char *const *strings, size_t count) {
    cJSON *array = cJSON_AddArrayToObject(object, name);
    for (size_t i = 0; array && i < count; i++)
        cJSON_AddItemToArray(array, cJSON_CreateString(strings[i]));
}

char *cap_result_to_json(const cap_result *result) {
    cJSON *json = cJSON_CreateObject();
    if (!json) return NULL;
    cJSON_AddStringToObject(json, "status", cap_status_name(result->status));
    cJSON_AddNumberToObject(json, "exit_code", result->exit_code);
    add_text(json, "stdout", result->out.data ? result->out.data : "", result->out.size);
    add_text(json, "stderr", result->err.data ? result->err.data : "", result->err.size);
    add_text(json, "return_value", result->return_value,
             result->return_value ? strlen(result->return_value) : 0);
    add_text(json, "error", result->error, result->error ? strlen(result->error) : 0);
    add_strings(json, "dependencies", result->dependencies, result->dependency_count);
    add_strings(json, "notes", result->notes, result->note_count);
    cJSON *artifacts = cJSON_AddArrayToObject(json, "artifacts");
    for (size_t i = 0; artifacts && i < result->artifact_count; i++) {
        cJSON *artifact = cJSON_CreateObject();
        cJSON_AddStringToObject(artifact, "name", result->artifacts[i].name);
        cJSON_AddStringToObject(artifact, "media_type", result->artifacts[i].media_type);
        cJSON_AddNumberToObject(artifact, "size", (double)result->artifacts[i].size);
        cJSON_AddItemToArray(artifacts, artifact);
    }
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

void cap_result_free(cap_result *result) {
    if (!result) return;
    buffer_free(&result->out);
    buffer_free(&result->err);
    free(result->return_value);
    free(result->error);
    for (size_t i = 0; i < result->artifact_count; i++) {
        free((char *)result->artifacts[i].name);
        free((char *)result->artifacts[i].media_type);
        free((unsigned char *)result->artifacts[i].data);
    }
    free(result->artifacts);
    free_strings(result->dependencies, result->dependency_count);
    free_strings(result->notes, result->note_count);
    free(result);
}


int sandbox_result_add_note(cap_result *result, const char *note) {
    char **grown = realloc(result->notes, (result->note_count + 1) * sizeof *grown);
    if (!grown) return CAP_ENOMEM;
    result->notes = grown;
    if (!(grown[result->note_count] = strdup(note))) return CAP_ENOMEM;
    result->note_count++;
    return CAP_OK;
}

static char **json_strings(const cJSON *array, size_t *count) {
    *count = 0;
    size_t n = (size_t)cJSON_GetArraySize(array);
    char **strings = n ? calloc(n, sizeof *strings) : NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, array) {
        if (strings && cJSON_IsString(item) && (strings[*count] = strdup(item->valuestring)))
            (*count)++;
    }
    return strings;
}

cap_result *sandbox_result_from_json(const char *text) {
    cJSON *json = cJSON_Parse(text);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(json, "status");
    cap_result *result = cJSON_IsString(status) ? calloc(1, sizeof *result) : NULL;
    if (!result) {
        cJSON_Delete(json);
        return NULL;
    }
    result->status = CAP_STATUS_RUN_ERROR;
    for (int s = CAP_STATUS_SUCCESS; s <= CAP_STATUS_CANCELLED; s++)
        if (strcmp(cap_status_name((cap_status)s), status->valuestring) == 0)
            result->status = (cap_status)s;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(json, "exit_code");
    result->exit_code = cJSON_IsNumber(code) ? code->valueint : 0;
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(json, "stdout");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(json, "stderr");
    if (cJSON_IsString(out)) buffer_append(&result->out, out->valuestring, strlen(out->valuestring));
    if (cJSON_IsString(err)) buffer_append(&result->err, err->valuestring, strlen(err->valuestring));
    result->return_value = json_string(json, "return_value");
    result->error = json_string(json, "error");
    result->dependencies =
        json_strings(cJSON_GetObjectItemCaseSensitive(json, "dependencies"), &result->dependency_count);
    result->notes = json_strings(cJSON_GetObjectItemCaseSensitive(json, "notes"), &result->note_count);
    cJSON_Delete(json);
    return result;
}
