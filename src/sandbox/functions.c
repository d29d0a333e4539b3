/*
 * functions.c — host functions: the registry a guest's call is looked up
 * in, and the parent's answer to a worker's 'C' frame.
 *
 * The guest writes a call to its call device (fd 6, zygote.c); the worker
 * forwards the bytes, unread, as a 'C' frame and waits.  Here, on the
 * run's thread, the request is parsed and every field checked (the worker
 * is untrusted), the function looked up by name in the config's one
 * registry, the grant (allow and deny patterns), the run's limits, the
 * input schema's top level and the approval checked, in that order, and
 * only then the callback called.  Code mode will add its upstream tools to
 * the same registry, so a call is always "a name and a JSON object".
 *
 * Frames (frame.h):
 *   worker → host 'C'  {"op":"list"}  or  {"op":"call","function":NAME,"arguments":{...}}
 *   host → worker 'C'  a JSON header line, "\n", then the body:
 *                      {"ok":true}\n<the result's JSON, or the catalog's>
 *                      {"ok":false,"error":KIND,"message":TEXT}\n
 *   KIND: "not-granted", "denied", "limit" (PermissionError in the guest),
 *   "invalid-arguments" (TypeError), "error" (ToolError), "timeout"
 *   (TimeoutError), "malformed" (the request itself).
 *
 * Each call (malformed requests included) is one line of the audit log.
 * The same channel carries capsule.help and capsule.describe ("help",
 * "describe", answered here) and a job's capsule.step, sleep and
 * await_event ("step", "step_done", "sleep", "await_event": jobs.c).
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../help/describe.h"
#include "../libraries/digest.h"
#include "../help/describe_media.h"
#include "../help/help.h"
#include "frame.h"
#include "http.h"

#define MAX_NAME 64
#define MAX_DESCRIPTION (64u << 10)
#define MAX_SCHEMA (1u << 20)
#define MAX_CALL_REQUEST (16u << 20) /* the worker refuses more, too */
#define DEFAULT_CALLS 1000
#define DEFAULT_RESULT_BYTES (64ull << 20)
#define DEFAULT_CALL_SECONDS 30.0
#define LARGEST_RESULT (FRAME_MAX - 4096) /* one frame, with its header line */

/* Names the guest library defines itself in capsule.functions. */
static const char *const reserved_names[] = {"call", "describe", "ToolError", "ResultTooLarge"};

static const char *const python_keywords[] = {
    "False", "None",   "True",    "and",      "as",       "assert", "async",  "await",
    "break", "class",  "continue", "def",     "del",      "elif",   "else",   "except",
    "finally", "for",  "from",    "global",   "if",       "import", "in",     "is",
    "lambda", "nonlocal", "not",  "or",       "pass",     "raise",  "return", "try",
    "while", "with",   "yield"};

int sandbox_is_python_keyword(const char *name) {
    for (size_t i = 0; i < sizeof python_keywords / sizeof *python_keywords; i++)
        if (strcmp(name, python_keywords[i]) == 0) return 1;
    return 0;
}

/* A name the guest can import: ASCII letters, digits and '_', starting
 * with a letter (a leading '_' is private in Python), not a keyword. */
static int valid_function_name(const char *name) {
    size_t length = strlen(name);
    if (length == 0 || length > MAX_NAME) return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'))) return 0;
    for (size_t i = 1; i < length; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    if (sandbox_is_python_keyword(name)) return 0;
    for (size_t i = 0; i < sizeof reserved_names / sizeof *reserved_names; i++)
        if (strcmp(name, reserved_names[i]) == 0) return 0;
    return 1;
}

static const char *const schema_types[] = {"string", "number", "integer", "boolean",
                                           "object", "array",  "null"};

static int known_type(const cJSON *type) {
    if (!cJSON_IsString(type)) return 0;
    for (size_t i = 0; i < sizeof schema_types / sizeof *schema_types; i++)
        if (strcmp(type->valuestring, schema_types[i]) == 0) return 1;
    return 0;
}

/* The parts of a schema this file relies on must be well formed: type
 * "object" (or absent), properties an object of objects whose "type" is a
 * known name or a list of them, required a list of strings. */
static int valid_schema(const cJSON *schema) {
    if (!cJSON_IsObject(schema)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "object") == 0)) return 0;
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    if (properties && !cJSON_IsObject(properties)) return 0;
    const cJSON *property;
    cJSON_ArrayForEach(property, properties) {
        if (!cJSON_IsObject(property)) return 0;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(property, "type");
        if (!t) continue;
        if (cJSON_IsArray(t)) {
            const cJSON *each;
            cJSON_ArrayForEach(each, t) if (!known_type(each)) return 0;
        } else if (!known_type(t)) {
            return 0;
        }
    }
    const cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
    if (required && !cJSON_IsArray(required)) return 0;
    const cJSON *each;
    cJSON_ArrayForEach(each, required) if (!cJSON_IsString(each)) return 0;
    return 1;
}

/* Control characters other than newline and tab are dropped from text
 * shown to the guest (and to agents reading its docstrings). */
static char *clean_text(const char *text) {
    char *out = malloc(strlen(text) + 1), *p = out;
    if (!out) return NULL;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if (*c >= 0x20 || *c == '\n' || *c == '\t') *p++ = (char)*c;
    *p = '\0';
    return out;
}

static struct function *find_function(cap_config *config, const char *name, size_t length) {
    for (int i = 0; i < config->function_count; i++)
        if (strlen(config->functions[i].name) == length &&
            memcmp(config->functions[i].name, name, length) == 0)
            return &config->functions[i];
    return NULL;
}

/* An upstream tool's name (code mode): "SERVER.TOOL", each part a name
 * the guest can import (reserved names are fine: they are not in
 * capsule.functions' namespace). */
static int valid_upstream_name(const char *name) {
    const char *dot = strchr(name, '.');
    if (!dot || strchr(dot + 1, '.') || dot - name > MAX_NAME || strlen(dot + 1) > MAX_NAME + 1)
        return 0;
    char server[MAX_NAME + 2];
    memcpy(server, name, (size_t)(dot - name));
    server[dot - name] = '\0';
    for (const char *part = server; part; part = part == server ? dot + 1 : NULL) {
        if (!((part[0] >= 'a' && part[0] <= 'z') || (part[0] >= 'A' && part[0] <= 'Z')))
            return 0;
        for (const char *c = part; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '_'))
                return 0;
        if (sandbox_is_python_keyword(part)) return 0;
    }
    return 1;
}

/* Both entries of the registry: host functions (plain names) and
 * upstream tools (dotted names, code_mode.c). */
static int add_function(cap_config *config, const char *name, const char *description,
                        const char *input_schema_json, cap_function_fn callback, void *userdata,
                        int upstream, char *error) {
    if (!config || !name || !callback) {
        sandbox_set_error(error, "cap_config_add_function: missing argument");
        return CAP_EINVAL;
    }
    if (upstream ? !valid_upstream_name(name) : !valid_function_name(name)) {
        sandbox_set_error(error, "function name %.80s: need a Python identifier starting with a "
                                 "letter, at most %d bytes, not a keyword (nor call, describe, "
                                 "ToolError, ResultTooLarge)", name, MAX_NAME);
        return CAP_EINVAL;
    }
    if (find_function(config, name, strlen(name))) {
        sandbox_set_error(error, "function %s is added twice", name);
        return CAP_EINVAL;
    }
    if (config->function_count == MAX_FUNCTIONS) {
        sandbox_set_error(error, "too many functions (at most %d)", MAX_FUNCTIONS);
        return CAP_EINVAL;
    }
    if ((description && strlen(description) > MAX_DESCRIPTION) ||
        (input_schema_json && strlen(input_schema_json) > MAX_SCHEMA)) {
        sandbox_set_error(error, "function %s: description or schema too long", name);
        return CAP_EINVAL;
    }
    cJSON *schema = input_schema_json ? cJSON_Parse(input_schema_json)
                                      : cJSON_Parse("{\"type\":\"object\"}");
    if (!valid_schema(schema)) {
        cJSON_Delete(schema);
        sandbox_set_error(error, "function %s: the input schema must be a JSON Schema object of "
                                 "type \"object\" (properties with known types, required a list "
                                 "of names)", name);
        return CAP_EINVAL;
    }
    struct function *f = &config->functions[config->function_count];
    *f = (struct function){strdup(name), clean_text(description ? description : ""), schema,
                           callback, userdata, 0, NULL};
    if (!f->name || !f->description) {
        free(f->name);
        free(f->description);
        cJSON_Delete(schema);
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    config->function_count++;
    help_invalidate(config);
    return CAP_OK;
}

int cap_config_add_function(cap_config *config, const char *name, const char *description,
                            const char *input_schema_json, cap_function_fn callback,
                            void *userdata, char *error) {
    return add_function(config, name, description, input_schema_json, callback, userdata, 0,
                        error);
}

int sandbox_add_upstream_function(cap_config *config, const char *name, const char *description,
                                  const char *input_schema_json, cap_function_fn callback,
                                  void *userdata, char *error) {
    return add_function(config, name, description, input_schema_json, callback, userdata, 1,
                        error);
}

const struct function *sandbox_find_function(cap_config *config, const char *name) {
    return find_function(config, name, strlen(name));
}

/* An HTTP function's call: the arguments POSTed as JSON to its URL, which
 * (and every redirect) must be in the config's allow-list; the response
 * body, which must be JSON, is the result. */
static int call_endpoint(void *userdata, const cap_function_call *call, char **result,
                         size_t *result_size, char *error) {
    cap_config *config = userdata;
    const struct function *f = find_function(config, call->name, strlen(call->name));
    if (!f || !f->url) {
        snprintf(error, CAP_ERROR_SIZE, "no endpoint for %.100s", call->name);
        return CAP_FUNCTION_ERROR;
    }
    http_policy policy = {config->allowed_urls, config->allowed_count, call->timeout_seconds,
                          (size_t)call->max_result_bytes, "application/json", 0};
    buffer body = {0};
    char message[256] = "";
    int rc = http_post(&policy, f->url, call->arguments, call->arguments_size, &body, message);
    if (rc == 0) {
        cJSON *parsed = cJSON_ParseWithLength(body.data ? body.data : "", body.size);
        if (!parsed) {
            snprintf(message, sizeof message, "the endpoint's answer is not JSON");
            rc = -EPROTO;
        }
        cJSON_Delete(parsed);
    }
    if (rc) {
        buffer_free(&body);
        snprintf(error, CAP_ERROR_SIZE, "%s", message);
        return rc == -ETIMEDOUT ? CAP_FUNCTION_TIMEOUT
               : rc == -EACCES  ? CAP_FUNCTION_DENIED
                                : CAP_FUNCTION_ERROR;
    }
    *result = body.data;
    *result_size = body.size;
    return CAP_FUNCTION_OK;
}

int cap_config_add_http_function(cap_config *config, const char *name, const char *description,
                                 const char *input_schema_json, const char *url, char *error) {
    if (!config || !url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) >= 4096) {
        sandbox_set_error(error, "an HTTP function needs an http:// or https:// URL");
        return CAP_EINVAL;
    }
    char *copy = strdup(url);
    if (!copy) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int rc = cap_config_add_function(config, name, description, input_schema_json,
                                     call_endpoint, config, error);
    if (rc != CAP_OK) {
        free(copy);
        return rc;
    }
    config->functions[config->function_count - 1].url = copy;
    return CAP_OK;
}

int cap_config_require_approval(cap_config *config, const char *name, char *error) {
    struct function *f = config && name ? find_function(config, name, strlen(name)) : NULL;
    if (!f) {
        sandbox_set_error(error, "no function named %.80s", name ? name : "(null)");
        return CAP_EINVAL;
    }
    f->needs_approval = 1;
    return CAP_OK;
}

static int add_pattern(char **patterns, int *count, const char *pattern, char *error) {
    if (!pattern || !*pattern || strlen(pattern) > 256) {
        sandbox_set_error(error, "a function pattern is a non-empty glob of at most 256 bytes");
        return CAP_EINVAL;
    }
    if (*count == MAX_FUNCTION_PATTERNS) {
        sandbox_set_error(error, "too many function patterns (at most %d)",
                          MAX_FUNCTION_PATTERNS);
        return CAP_EINVAL;
    }
    if (!(patterns[*count] = strdup(pattern))) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    (*count)++;
    return CAP_OK;
}

int cap_config_allow_functions(cap_config *config, const char *pattern, char *error) {
    if (!config) return CAP_EINVAL;
    help_invalidate(config); /* what is granted is what help finds */
    return add_pattern(config->allowed_functions, &config->allowed_function_count, pattern, error);
}

int cap_config_deny_functions(cap_config *config, const char *pattern, char *error) {
    if (!config) return CAP_EINVAL;
    help_invalidate(config);
    return add_pattern(config->denied_functions, &config->denied_function_count, pattern, error);
}

int cap_config_require_approval_matching(cap_config *config, const char *pattern, char *error) {
    if (!config) return CAP_EINVAL;
    help_invalidate(config); /* help's entries say which calls need approval */
    return add_pattern(config->approval_patterns, &config->approval_pattern_count, pattern, error);
}

int cap_config_set_audit_log(cap_config *config, const char *path, char *error) {
    if (!config || !path) {
        sandbox_set_error(error, "cap_config_set_audit_log: missing argument");
        return CAP_EINVAL;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        sandbox_set_error(error, "cannot open the audit log %.150s: %s", path, strerror(errno));
        return CAP_EIO;
    }
    if (config->audit_fd >= 0) close(config->audit_fd);
    config->audit_fd = fd;
    return CAP_OK;
}

void sandbox_remove_function(cap_config *config, const char *name) {
    struct function *f = find_function(config, name, strlen(name));
    if (!f) return;
    free(f->name);
    free(f->description);
    free(f->url);
    cJSON_Delete(f->schema);
    struct function *end = config->functions + config->function_count;
    memmove(f, f + 1, (size_t)(end - f - 1) * sizeof *f);
    config->function_count--;
    help_invalidate(config);
}

void sandbox_functions_free(cap_config *config) {
    for (int i = 0; i < config->function_count; i++) {
        free(config->functions[i].name);
        free(config->functions[i].description);
        free(config->functions[i].url);
        cJSON_Delete(config->functions[i].schema);
    }
    for (int i = 0; i < config->allowed_function_count; i++) free(config->allowed_functions[i]);
    for (int i = 0; i < config->denied_function_count; i++) free(config->denied_functions[i]);
    for (int i = 0; i < config->approval_pattern_count; i++) free(config->approval_patterns[i]);
    if (config->audit_fd >= 0) close(config->audit_fd);
    config->function_count = config->allowed_function_count = config->denied_function_count = 0;
    config->approval_pattern_count = 0;
    config->audit_fd = -1;
}

int sandbox_function_granted(const cap_config *config, const char *name) {
    int allowed = config->allowed_function_count == 0;
    for (int i = 0; !allowed && i < config->allowed_function_count; i++)
        allowed = fnmatch(config->allowed_functions[i], name, 0) == 0;
    for (int i = 0; allowed && i < config->denied_function_count; i++)
        allowed = fnmatch(config->denied_functions[i], name, 0) != 0;
    return allowed;
}

int sandbox_function_needs_approval(const cap_config *config, const struct function *f) {
    int needed = f->needs_approval;
    for (int i = 0; !needed && i < config->approval_pattern_count; i++)
        needed = fnmatch(config->approval_patterns[i], f->name, 0) == 0;
    return needed;
}

/* --- checking arguments against the schema's top level ------------------------- */

/* A bytes value as the guest library sends it: {"$bytes": "<base64>"}. */
static int is_bytes(const cJSON *value) {
    return cJSON_IsObject(value) && value->child && !value->child->next &&
           strcmp(value->child->string, "$bytes") == 0 && cJSON_IsString(value->child);
}

static int has_type(const cJSON *value, const char *type) {
    if (strcmp(type, "string") == 0) return cJSON_IsString(value) || is_bytes(value);
    if (strcmp(type, "number") == 0) return cJSON_IsNumber(value);
    if (strcmp(type, "integer") == 0)
        return cJSON_IsNumber(value) && isfinite(value->valuedouble) &&
               value->valuedouble == floor(value->valuedouble);
    if (strcmp(type, "boolean") == 0) return cJSON_IsBool(value);
    if (strcmp(type, "object") == 0) return cJSON_IsObject(value);
    if (strcmp(type, "array") == 0) return cJSON_IsArray(value);
    return cJSON_IsNull(value); /* "null" */
}

static int matches_type(const cJSON *value, const cJSON *type) {
    if (!type) return 1;
    if (cJSON_IsString(type)) return has_type(value, type->valuestring);
    const cJSON *each;
    cJSON_ArrayForEach(each, type) if (has_type(value, each->valuestring)) return 1;
    return 0;
}

/* NULL when `arguments` fits the schema's top level, else why not (into
 * `message`). */
static const char *check_arguments(const cJSON *schema, const cJSON *arguments, char *message,
                                   size_t size) {
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
    const cJSON *additional = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
    const cJSON *each;
    cJSON_ArrayForEach(each, required) {
        if (!cJSON_GetObjectItemCaseSensitive(arguments, each->valuestring)) {
            snprintf(message, size, "missing required argument '%.100s'", each->valuestring);
            return message;
        }
    }
    cJSON_ArrayForEach(each, arguments) {
        const cJSON *property = cJSON_GetObjectItemCaseSensitive(properties, each->string);
        if (!property && cJSON_IsFalse(additional)) {
            snprintf(message, size, "unexpected argument '%.100s'", each->string);
            return message;
        }
        if (property && !matches_type(each, cJSON_GetObjectItemCaseSensitive(property, "type"))) {
            snprintf(message, size, "argument '%.100s' has the wrong type", each->string);
            return message;
        }
    }
    return NULL;
}

/* --- the audit log ----------------------------------------------------------------- */

typedef struct call_record {
    const char *function;    /* NULL: the request named none */
    const char *arguments;   /* as received */
    size_t arguments_size;
    const char *result;      /* NULL: no result */
    size_t result_size;
    double started;          /* sandbox_now_seconds() */
    const char *outcome;
    const char *message;     /* NULL when ok */
} call_record;

/* One JSON line, written with one write() on an O_APPEND descriptor, so
 * that sandboxes on several threads (or processes) do not interleave. */
static void audit(const sandbox_exchange *exchange, const call_record *record) {
    int fd = exchange->sandbox->config->audit_fd;
    if (fd < 0) return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    char when[40], hash[65];
    size_t length = strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(when + length, sizeof when - length, ".%03uZ",
             (unsigned)(now.tv_nsec / 1000000) % 1000u);
    cJSON *line = cJSON_CreateObject();
    if (!line) return;
    cJSON_AddStringToObject(line, "time", when);
    const char *session = exchange->options ? exchange->options->session : NULL;
    if (session) cJSON_AddStringToObject(line, "session", session);
    else cJSON_AddNullToObject(line, "session");
    if (record->function) cJSON_AddStringToObject(line, "function", record->function);
    else cJSON_AddNullToObject(line, "function");
    cJSON_AddNumberToObject(line, "arguments_bytes", (double)record->arguments_size);
    digest_sha256_hex(record->arguments, record->arguments_size, hash);
    cJSON_AddStringToObject(line, "arguments_sha256", hash);
    cJSON_AddNumberToObject(line, "result_bytes", (double)record->result_size);
    if (record->result) {
        digest_sha256_hex(record->result, record->result_size, hash);
        cJSON_AddStringToObject(line, "result_sha256", hash);
    } else {
        cJSON_AddNullToObject(line, "result_sha256");
    }
    double milliseconds = (sandbox_now_seconds() - record->started) * 1000;
    cJSON_AddNumberToObject(line, "duration_ms", round(milliseconds * 1000) / 1000);
    cJSON_AddStringToObject(line, "outcome", record->outcome);
    if (record->message) cJSON_AddStringToObject(line, "message", record->message);
    char *text = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    if (!text) return;
    length = strlen(text);
    text[length] = '\n'; /* replaces the NUL: written with its length */
    ssize_t written;
    do written = write(fd, text, length + 1);
    while (written < 0 && errno == EINTR);
    free(text);
}

/* --- answering the worker ---------------------------------------------------------- */

void sandbox_call_answer(int fd, const char *header, const char *body, size_t body_size) {
    buffer reply = {0};
    int rc = buffer_append(&reply, header, strlen(header));
    if (rc == 0) rc = buffer_append(&reply, "\n", 1);
    if (rc == 0 && body_size) rc = buffer_append(&reply, body, body_size);
    if (rc == 0) frame_write(fd, 'C', reply.data, reply.size); /* a dead worker: the next read says */
    buffer_free(&reply);
}

void sandbox_call_failure(int fd, const char *kind, const char *message) {
    cJSON *header = cJSON_CreateObject();
    cJSON_AddBoolToObject(header, "ok", 0);
    cJSON_AddStringToObject(header, "error", kind);
    cJSON_AddStringToObject(header, "message", message);
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    sandbox_call_answer(fd, text ? text : "{\"ok\":false,\"error\":\"error\",\"message\":\"out of memory\"}",
           NULL, 0);
    free(text);
}

/* Ends a call: answers the guest with `result` (kind NULL) or the failure
 * `kind` and `message`, fills the record's outcome, and writes the audit
 * line. */
static void finish_call(sandbox_exchange *exchange, call_record *record, const char *kind,
                        const char *message, const char *result, size_t result_size) {
    if (kind) {
        sandbox_call_failure(exchange->fd, kind, message);
        record->outcome = kind;
        record->message = message;
    } else {
        sandbox_call_answer(exchange->fd, "{\"ok\":true}", result, result_size);
        record->outcome = "ok";
        record->result = result;
        record->result_size = result_size;
    }
    audit(exchange, record);
}

/* The granted functions, as the guest library builds them: name,
 * description, input schema, whether calls need approval. */
static void answer_list(sandbox_exchange *exchange) {
    cap_config *config = exchange->sandbox->config;
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && i < config->function_count; i++) {
        const struct function *f = &config->functions[i];
        if (!sandbox_function_granted(config, f->name)) continue;
        cJSON *entry = cJSON_CreateObject();
        cJSON_AddStringToObject(entry, "name", f->name);
        cJSON_AddStringToObject(entry, "description", f->description);
        cJSON_AddItemReferenceToObject(entry, "input_schema", f->schema);
        cJSON_AddBoolToObject(entry, "needs_approval", sandbox_function_needs_approval(config, f));
        cJSON_AddItemToArray(list, entry);
    }
    char *text = list ? cJSON_PrintUnformatted(list) : NULL;
    cJSON_Delete(list); /* references only: the schemas stay the config's */
    if (text) sandbox_call_answer(exchange->fd, "{\"ok\":true}", text, strlen(text));
    else sandbox_call_failure(exchange->fd, "error", "out of memory");
    free(text);
}

static const cap_limits default_limits = {.function_calls = DEFAULT_CALLS,
                                          .function_result_bytes = DEFAULT_RESULT_BYTES,
                                          .function_seconds = DEFAULT_CALL_SECONDS};

/* A call: every check, then the callback, then the answer and the audit
 * line.  `request` is the worker's parsed JSON. */
static void answer_call(sandbox_exchange *exchange, const cJSON *request, const char *payload,
                        size_t size, double started) {
    cap_config *config = exchange->sandbox->config;
    const cap_limits *limits = exchange->limits ? exchange->limits : &default_limits;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(request, "function");
    const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(request, "arguments");
    call_record record = {NULL, payload, size, NULL, 0, started, "malformed", NULL};
    char message[CAP_ERROR_SIZE] = "";
    const char *kind = NULL;
    struct function *f = NULL;
    char *arguments_text = NULL;
    if (!cJSON_IsString(name) || !cJSON_IsObject(arguments)) {
        kind = "malformed";
        snprintf(message, sizeof message, "a call names a function and passes a JSON object");
    } else {
        record.function = name->valuestring;
        arguments_text = cJSON_PrintUnformatted(arguments);
        if (arguments_text) {
            record.arguments = arguments_text;
            record.arguments_size = strlen(arguments_text);
        }
        f = find_function(config, name->valuestring, strlen(name->valuestring));
        if (!f || !sandbox_function_granted(config, f->name)) {
            kind = "not-granted";
            snprintf(message, sizeof message, "function '%.100s' is not granted to this sandbox",
                     name->valuestring);
        }
    }
    uint64_t budget = limits->function_result_bytes;
    uint64_t left = budget > exchange->function_result_bytes
                        ? budget - exchange->function_result_bytes
                        : 0;
    if (!kind && exchange->function_calls >= limits->function_calls) {
        kind = "limit";
        snprintf(message, sizeof message, "the run's limit of %u function calls is reached",
                 limits->function_calls);
    } else if (!kind && left == 0) {
        kind = "limit";
        snprintf(message, sizeof message,
                 "the run's budget of %llu result bytes is used up",
                 (unsigned long long)budget);
    }
    if (!kind && check_arguments(f->schema, arguments, message, sizeof message)) {
        kind = "invalid-arguments";
    }
    if (!kind && !arguments_text) {
        kind = "error";
        snprintf(message, sizeof message, "out of memory");
    }
    const cap_run_options *options = exchange->options;
    char reason[CAP_ERROR_SIZE] = "";
    if (!kind && sandbox_function_needs_approval(config, f) &&
        !(options && options->approve &&
          options->approve(options->userdata, f->name, arguments_text, reason))) {
        kind = "denied";
        reason[sizeof reason - 1] = '\0'; /* the callback's text, however it wrote it */
        snprintf(message, sizeof message, "calling '%.80s' needs approval, which was %s%s%.120s",
                 f->name, options && options->approve ? "refused" : "not available",
                 reason[0] ? ": " : "", reason);
    }
    double timeout = limits->function_seconds > 0 ? limits->function_seconds
                                                  : DEFAULT_CALL_SECONDS;
    double run_left = exchange->deadline - sandbox_now_seconds();
    if (run_left < timeout) timeout = run_left;
    if (!kind && !(timeout > 0)) {
        kind = "timeout";
        snprintf(message, sizeof message, "no time is left in the run for '%.100s'", f->name);
    }
    char *result = NULL;
    size_t result_size = 0;
    if (!kind) {
        exchange->function_calls++;
        cap_function_call call = {f->name, arguments_text, strlen(arguments_text),
                                  options ? options->session : NULL, timeout,
                                  left < LARGEST_RESULT ? left : LARGEST_RESULT};
        char error[CAP_ERROR_SIZE] = "";
        int rc = f->callback(f->userdata, &call, &result, &result_size, error);
        if (rc == CAP_FUNCTION_OK && !result) {
            kind = "error";
            snprintf(message, sizeof message, "'%.100s' returned no result", f->name);
        } else if (rc == CAP_FUNCTION_OK && result_size > LARGEST_RESULT) {
            kind = "error";
            snprintf(message, sizeof message, "'%.100s' returned %zu bytes, more than the %u a "
                     "result may have", f->name, result_size, LARGEST_RESULT);
        } else if (rc != CAP_FUNCTION_OK) {
            kind = rc == CAP_FUNCTION_TIMEOUT ? "timeout"
                   : rc == CAP_FUNCTION_DENIED ? "denied"
                                               : "error";
            snprintf(message, sizeof message, "%s",
                     error[0] ? error : rc == CAP_FUNCTION_TIMEOUT ? "the function timed out"
                                                                   : "the function failed");
        }
    }
    if (kind) {
        free(result);
        result = NULL;
        result_size = 0;
    } else {
        /* Delivered even past the budget: the function has run, and its
         * result is not thrown away; the budget stops the next call. */
        exchange->function_result_bytes += result_size;
    }
    finish_call(exchange, &record, kind, message, result, result_size);
    free(result);
    free(arguments_text);
}

/* capsule.help(): the same search as the MCP tool `help`, answered on the
 * call channel (not a function: nothing to grant, no call budget), and
 * logged like a call, as the function "help". */
static void answer_help(sandbox_exchange *exchange, const cJSON *request, const char *payload,
                        size_t size, double started) {
    const cJSON *query = cJSON_GetObjectItemCaseSensitive(request, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(request, "limit");
    call_record record = {"help", payload, size, NULL, 0, started, "malformed", NULL};
    char message[CAP_ERROR_SIZE] = "";
    char *json = NULL;
    if (!cJSON_IsString(query) ||
        (limit && !cJSON_IsNull(limit) &&
         !(cJSON_IsNumber(limit) && limit->valuedouble >= 1 &&
           limit->valuedouble <= HELP_MAX_LIMIT))) {
        snprintf(message, sizeof message, "help takes a query (a string) and a limit of 1 to %d",
                 HELP_MAX_LIMIT);
        finish_call(exchange, &record, "invalid-arguments", message, NULL, 0);
    } else if (help_search(exchange->sandbox->config,
                           exchange->options ? exchange->options->principal : NULL,
                           query->valuestring, cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0,
                           &json, message) != CAP_OK) {
        finish_call(exchange, &record, "error", message, NULL, 0);
    } else {
        finish_call(exchange, &record, NULL, NULL, json, strlen(json));
    }
    free(json);
}

/* {"$bytes": BASE64} as bytes (malloc'd, *size set), or NULL. */
static unsigned char *decode_bytes(const cJSON *value, size_t *size) {
    if (!is_bytes(value)) return NULL;
    return base64_decode(value->child->valuestring, size);
}

/* describe's second backend: the run's caller's model
 * (cap_run_options.ask_model; an MCP client's sampling), asked after the
 * same checks as the endpoint's.  As describe_file. */
static describe_outcome describe_with_caller(const cap_run_options *options,
                                             const unsigned char *data, size_t size,
                                             const char *name, const char *question,
                                             double seconds, char **json, char *message) {
    const char *media_type = describe_check_file(data, size, question, message);
    if (!media_type) return DESCRIBE_INVALID;
    char error[CAP_ERROR_SIZE] = "";
    char *answer = options->ask_model(options->userdata, data, size, media_type, name, question,
                                      seconds, error);
    if (!answer) {
        error[sizeof error - 1] = '\0';
        snprintf(message, CAP_ERROR_SIZE, "%s", error[0] ? error : "the caller's model failed");
        return DESCRIBE_FAILED;
    }
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "answer", answer);
    cJSON_AddStringToObject(result, "media_type", media_type);
    cJSON_AddStringToObject(result, "model", "client");
    free(answer);
    *json = cJSON_PrintUnformatted(result);
    cJSON_Delete(result);
    if (!*json) {
        snprintf(message, CAP_ERROR_SIZE, "out of memory");
        return DESCRIBE_FAILED;
    }
    return DESCRIBE_OK;
}

/* capsule.describe(): the file's bytes and the question to the configured
 * model endpoint (describe.c) or else the caller's model, within the
 * run's time; logged as the function "describe". */
static void answer_describe(sandbox_exchange *exchange, const cJSON *request, const char *payload,
                            size_t size, double started) {
    const cJSON *question = cJSON_GetObjectItemCaseSensitive(request, "question");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(request, "name");
    call_record record = {"describe", payload, size, NULL, 0, started, "malformed", NULL};
    char message[CAP_ERROR_SIZE] = "";
    const char *kind = NULL;
    char *json = NULL;
    size_t data_size = 0;
    unsigned char *data = decode_bytes(cJSON_GetObjectItemCaseSensitive(request, "data"),
                                       &data_size);
    double left = exchange->deadline - sandbox_now_seconds();
    if (!data || !cJSON_IsString(question) || (name && !cJSON_IsString(name))) {
        kind = "invalid-arguments";
        snprintf(message, sizeof message, "describe takes the file's bytes and a question");
    } else if (!(left > 0)) {
        kind = "timeout";
        snprintf(message, sizeof message, "no time is left in the run for describe");
    } else {
        const char *shown = cJSON_IsString(name) ? name->valuestring : "file";
        describe_outcome outcome = describe_file(exchange->sandbox->config, data, data_size,
                                                 shown, question->valuestring, left, &json,
                                                 message);
        const cap_run_options *options = exchange->options;
        if (outcome == DESCRIBE_OFF && options && options->ask_model)
            outcome = describe_with_caller(options, data, data_size, shown,
                                           question->valuestring, left, &json, message);
        kind = outcome == DESCRIBE_OK        ? NULL
               : outcome == DESCRIBE_OFF     ? "not-granted"
               : outcome == DESCRIBE_INVALID ? "invalid-arguments"
               : outcome == DESCRIBE_TIMEOUT ? "timeout"
                                             : "error";
    }
    free(data);
    finish_call(exchange, &record, kind, message, json, json ? strlen(json) : 0);
    free(json);
}

sandbox_outcome sandbox_frame_call(sandbox_exchange *exchange, const char *payload, size_t size) {
    double started = sandbox_now_seconds();
    cJSON *request = size <= MAX_CALL_REQUEST ? cJSON_ParseWithLength(payload, size) : NULL;
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(request, "op");
    if (cJSON_IsString(op) && strcmp(op->valuestring, "list") == 0) {
        answer_list(exchange);
    } else if (cJSON_IsString(op) && strcmp(op->valuestring, "call") == 0) {
        answer_call(exchange, request, payload, size, started);
    } else if (cJSON_IsString(op) && strcmp(op->valuestring, "help") == 0) {
        answer_help(exchange, request, payload, size, started);
    } else if (cJSON_IsString(op) && strcmp(op->valuestring, "describe") == 0) {
        answer_describe(exchange, request, payload, size, started);
    } else if (cJSON_IsString(op) &&
               (strcmp(op->valuestring, "step") == 0 || strcmp(op->valuestring, "step_done") == 0 ||
                strcmp(op->valuestring, "sleep") == 0 ||
                strcmp(op->valuestring, "await_event") == 0)) {
        /* capsule.step, sleep and await_event: answered from the store (jobs.c). */
        sandbox_outcome outcome = sandbox_job_request(exchange, request, op->valuestring);
        cJSON_Delete(request);
        return outcome;
    } else {
        call_record record = {NULL, payload, size, NULL, 0, started, "malformed",
                              "not a function call"};
        sandbox_call_failure(exchange->fd, "malformed",
                       "not a function call: the call device takes {\"op\": \"call\", "
                       "\"function\": NAME, \"arguments\": {...}} (use capsule.functions)");
        audit(exchange, &record);
    }
    cJSON_Delete(request);
    return SANDBOX_CONTINUE;
}
