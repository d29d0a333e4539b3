/*
 * code_mode.c — the tools of upstream MCP servers as host functions
 * (cap_config_add_mcp_server, docs/code-mode.md).
 *
 * Each tool of server S is registered in the config's one function
 * registry (functions.c) as "S.T", so a call is still "a name and a JSON
 * object" and the allow/deny globs, limits, approval and audit log apply as
 * for any host function.  S and T are the server's and the tool's names
 * made Python identifiers (other characters become '_'); the upstream's
 * own name is kept for tools/call.
 *
 * The guest sees /servers/S/T.py, one typed keyword-only stub per granted
 * tool, generated here when a sandbox is made.  Upstream names and
 * descriptions are untrusted: names are mapped to identifiers before they
 * reach any source text, and descriptions only ever appear inside
 * docstrings in which every backslash and quote is escaped and control
 * characters are dropped, so no text can end the string.
 */
#include "../sandbox/sandbox.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/buffer.h"
#include "mcp_client.h"

#define MAX_SERVERS 32
#define MAX_IDENTIFIER 64
#define CONNECT_SECONDS 60.0
#define MAX_UPSTREAM_MESSAGE ((size_t)512 << 20)
#define SUMMARY_LENGTH 200
#define DETAILS_LENGTH 1000

typedef struct upstream_tool {
    char *function;   /* the registry's name: "S.T" */
    char *tool;       /* the upstream's own name, for tools/call */
    struct server *server;
} upstream_tool;

typedef struct server {
    char *name;       /* as given in the config (for messages) */
    char *identifier; /* S */
    mcp_upstream *upstream;
    upstream_tool *tools;
    int tool_count;
} server;

typedef struct code_mode {
    server servers[MAX_SERVERS];
    int server_count;
} code_mode;

static int is_identifier_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when `name` may appear as is in generated source: ASCII letters,
 * digits and '_', starting with a letter, not a keyword (a keyword with a
 * '_' after it is fine). */
static int plain_identifier(const char *name) {
    size_t length = strlen(name);
    if (length == 0 || length > MAX_IDENTIFIER + 1) return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'))) return 0;
    for (size_t i = 1; i < length; i++)
        if (!is_identifier_char(name[i])) return 0;
    return !sandbox_is_python_keyword(name);
}

/* `name` made an identifier into `out` (MAX_IDENTIFIER + 1 bytes): every
 * other character becomes '_', a leading digit or '_' gets a 't' before
 * it, a keyword a '_' after it.  0, or -1 when nothing usable is left. */
static int to_identifier(const char *name, char *out) {
    size_t n = 0;
    if (!name[0]) return -1;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
        out[n++] = 't';
    for (const char *c = name; *c && n < MAX_IDENTIFIER; c++) {
        char mapped = is_identifier_char(*c) ? *c : '_';
        if (mapped == '_' && n && out[n - 1] == '_') continue; /* one '_' for a run */
        out[n++] = mapped;
    }
    while (n > 1 && out[n - 1] == '_') n--;
    out[n] = '\0';
    if (sandbox_is_python_keyword(out) && n < MAX_IDENTIFIER) {
        out[n++] = '_';
        out[n] = '\0';
    }
    return plain_identifier(out) ? 0 : -1;
}

/* --- results ---------------------------------------------------------------------- */

/* One content item as the guest gets it: text parsed as JSON when it is
 * JSON, else the string; an image, audio or blob as {"$bytes": base64}
 * (bytes in the guest); anything else as the item itself. */
static cJSON *content_value(const cJSON *item) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
    const char *kind = cJSON_IsString(type) ? type->valuestring : "";
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(item, "text");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(item, "data");
    if (strcmp(kind, "resource") == 0) {
        const cJSON *resource = cJSON_GetObjectItemCaseSensitive(item, "resource");
        text = cJSON_GetObjectItemCaseSensitive(resource, "text");
        data = cJSON_GetObjectItemCaseSensitive(resource, "blob");
    }
    if (cJSON_IsString(text)) {
        const char *end = NULL;
        cJSON *parsed = cJSON_ParseWithOpts(text->valuestring, &end, 1);
        return parsed ? parsed : cJSON_CreateString(text->valuestring);
    }
    if (cJSON_IsString(data)) {
        cJSON *bytes = cJSON_CreateObject();
        cJSON_AddStringToObject(bytes, "$bytes", data->valuestring);
        return bytes;
    }
    return cJSON_Duplicate(item, 1);
}

/* The text of an error result, for ToolError's message. */
static void error_text(const cJSON *content, char *error) {
    size_t used = 0;
    const cJSON *item;
    error[0] = '\0';
    cJSON_ArrayForEach(item, content) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(item, "text");
        if (!cJSON_IsString(text) || used + 2 >= CAP_ERROR_SIZE) continue;
        used += (size_t)snprintf(error + used, CAP_ERROR_SIZE - used, "%s%s", used ? "\n" : "",
                                 text->valuestring);
        if (used >= CAP_ERROR_SIZE) used = CAP_ERROR_SIZE - 1;
    }
    if (!error[0]) snprintf(error, CAP_ERROR_SIZE, "the tool reported an error");
}

/* tools/call's result as the guest's value: structuredContent when given,
 * else the content, one value for one item, a list for several. */
static cJSON *result_value(const cJSON *result) {
    const cJSON *structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");
    if (structured && !cJSON_IsNull(structured)) return cJSON_Duplicate(structured, 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(result, "content");
    int count = cJSON_IsArray(content) ? cJSON_GetArraySize(content) : 0;
    if (count == 0) return cJSON_CreateNull();
    if (count == 1) return content_value(content->child);
    cJSON *list = cJSON_CreateArray();
    const cJSON *item;
    cJSON_ArrayForEach(item, content) cJSON_AddItemToArray(list, content_value(item));
    return list;
}

/* The host function behind every upstream tool: tools/call with the
 * guest's (already checked) arguments, within the call's time and size. */
static int call_tool(void *userdata, const cap_function_call *call, char **result,
                     size_t *result_size, char *error) {
    const upstream_tool *tool = userdata;
    cJSON *arguments = cJSON_ParseWithLength(call->arguments, call->arguments_size);
    if (!cJSON_IsObject(arguments)) {
        cJSON_Delete(arguments);
        snprintf(error, CAP_ERROR_SIZE, "the arguments are not a JSON object");
        return CAP_FUNCTION_ERROR;
    }
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "name", tool->tool);
    cJSON_AddItemToObject(params, "arguments", arguments);
    /* The message carries the result escaped (text in JSON in JSON). */
    uint64_t cap = call->max_result_bytes * 2 + (1u << 20);
    size_t max_bytes = cap > MAX_UPSTREAM_MESSAGE ? MAX_UPSTREAM_MESSAGE : (size_t)cap;
    cJSON *answer = NULL;
    int rc = mcp_upstream_request(tool->server->upstream, "tools/call", params,
                                  call->timeout_seconds, max_bytes, &answer, error);
    if (rc == MCP_UPSTREAM_TIMEOUT) return CAP_FUNCTION_TIMEOUT;
    if (rc != MCP_UPSTREAM_OK) return CAP_FUNCTION_ERROR;
    const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(answer, "isError");
    if (cJSON_IsTrue(is_error)) {
        error_text(cJSON_GetObjectItemCaseSensitive(answer, "content"), error);
        cJSON_Delete(answer);
        return CAP_FUNCTION_ERROR;
    }
    cJSON *value = result_value(answer);
    cJSON_Delete(answer);
    char *text = value ? cJSON_PrintUnformatted(value) : NULL;
    cJSON_Delete(value);
    if (!text) {
        snprintf(error, CAP_ERROR_SIZE, "out of memory");
        return CAP_FUNCTION_ERROR;
    }
    *result = text;
    *result_size = strlen(text);
    return CAP_FUNCTION_OK;
}

/* --- registering a server ----------------------------------------------------------- */

/* A copy of the tool's input schema that the registry accepts: a property
 * "type" that is not a known name (or list of them) is dropped, and a
 * schema that is not an object becomes {"type": "object"}. */
static cJSON *usable_schema(const cJSON *schema) {
    static const char *const types[] = {"string", "number", "integer", "boolean",
                                        "object", "array",  "null"};
    cJSON *copy = cJSON_IsObject(schema) ? cJSON_Duplicate(schema, 1) : cJSON_CreateObject();
    if (!copy) return NULL;
    cJSON_ReplaceItemInObjectCaseSensitive(copy, "type", cJSON_CreateString("object"));
    if (!cJSON_GetObjectItemCaseSensitive(copy, "type"))
        cJSON_AddStringToObject(copy, "type", "object");
    cJSON *properties = cJSON_GetObjectItemCaseSensitive(copy, "properties");
    if (properties && !cJSON_IsObject(properties)) {
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "properties");
        properties = NULL;
    }
    cJSON *property = properties ? properties->child : NULL;
    while (property) {
        cJSON *next = property->next;
        if (!cJSON_IsObject(property)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(properties, property));
            property = next;
            continue;
        }
        cJSON *type = cJSON_GetObjectItemCaseSensitive(property, "type");
        int known = 0;
        if (cJSON_IsString(type) || cJSON_IsArray(type)) {
            known = 1;
            const cJSON *each = cJSON_IsString(type) ? type : type->child;
            for (; each && known; each = cJSON_IsString(type) ? NULL : each->next) {
                int found = 0;
                for (size_t i = 0; cJSON_IsString(each) && i < sizeof types / sizeof *types; i++)
                    if (strcmp(each->valuestring, types[i]) == 0) found = 1;
                known = found;
            }
        }
        if (type && !known) cJSON_DeleteItemFromObjectCaseSensitive(property, "type");
        property = next;
    }
    cJSON *required = cJSON_GetObjectItemCaseSensitive(copy, "required");
    int good = cJSON_IsArray(required);
    const cJSON *each;
    cJSON_ArrayForEach(each, required) if (!cJSON_IsString(each)) good = 0;
    if (required && !good) cJSON_DeleteItemFromObjectCaseSensitive(copy, "required");
    return copy;
}

static code_mode *code_mode_of(cap_config *config) {
    if (!config->code_mode) config->code_mode = calloc(1, sizeof(code_mode));
    return config->code_mode;
}

static void free_server(server *s) {
    mcp_upstream_free(s->upstream);
    for (int i = 0; i < s->tool_count; i++) {
        free(s->tools[i].function);
        free(s->tools[i].tool);
    }
    free(s->tools);
    free(s->name);
    free(s->identifier);
    memset(s, 0, sizeof *s);
}

void sandbox_code_mode_free(cap_config *config) {
    code_mode *mode = config->code_mode;
    if (!mode) return;
    for (int i = 0; i < mode->server_count; i++) free_server(&mode->servers[i]);
    free(mode);
    config->code_mode = NULL;
}

/* Registers each usable tool.  A tool whose name cannot be mapped, that
 * collides with an earlier one, or whose description or schema the
 * registry refuses is left out (the server's other tools stay usable);
 * running out of memory or of room in the registry fails the server. */
static int register_tools(cap_config *config, server *s, const cJSON *tools, char *error) {
    int count = cJSON_GetArraySize(tools);
    s->tools = calloc((size_t)(count ? count : 1), sizeof *s->tools);
    if (!s->tools) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    const cJSON *tool;
    cJSON_ArrayForEach(tool, tools) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tool, "name");
        const cJSON *description = cJSON_GetObjectItemCaseSensitive(tool, "description");
        char identifier[MAX_IDENTIFIER + 2], function[2 * MAX_IDENTIFIER + 4];
        if (!cJSON_IsString(name) || strlen(name->valuestring) > 1024 ||
            to_identifier(name->valuestring, identifier) != 0)
            continue;
        snprintf(function, sizeof function, "%s.%s", s->identifier, identifier);
        if (sandbox_find_function(config, function)) continue; /* a collision: the first wins */
        cJSON *schema = usable_schema(cJSON_GetObjectItemCaseSensitive(tool, "inputSchema"));
        char *schema_text = schema ? cJSON_PrintUnformatted(schema) : NULL;
        cJSON_Delete(schema);
        upstream_tool *entry = &s->tools[s->tool_count];
        entry->function = strdup(function);
        entry->tool = strdup(name->valuestring);
        entry->server = s;
        char reason[CAP_ERROR_SIZE] = "";
        int rc = schema_text && entry->function && entry->tool
                     ? sandbox_add_upstream_function(
                           config, function,
                           cJSON_IsString(description) ? description->valuestring : NULL,
                           schema_text, call_tool, entry, reason)
                     : CAP_ENOMEM;
        free(schema_text);
        if (rc != CAP_OK) {
            free(entry->function);
            free(entry->tool);
            if (rc == CAP_ENOMEM || strstr(reason, "too many")) {
                sandbox_set_error(error, "server %s: %s", s->name,
                                  reason[0] ? reason : "out of memory");
                return rc;
            }
            continue; /* this tool only: its schema or description is unusable */
        }
        s->tool_count++;
    }
    return CAP_OK;
}

int cap_config_add_mcp_server(cap_config *config, const char *name, const char *server_json,
                              char *error) {
    if (!config || !name || !server_json) {
        sandbox_set_error(error, "cap_config_add_mcp_server: missing argument");
        return CAP_EINVAL;
    }
    code_mode *mode = code_mode_of(config);
    char identifier[MAX_IDENTIFIER + 2];
    if (!mode) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    if (strlen(name) > MAX_IDENTIFIER || to_identifier(name, identifier) != 0) {
        sandbox_set_error(error, "server name %.80s: need letters, digits, '-' or '_' (at most "
                          "%d)", name, MAX_IDENTIFIER);
        return CAP_EINVAL;
    }
    for (int i = 0; i < mode->server_count; i++) {
        if (strcmp(mode->servers[i].identifier, identifier) == 0) {
            sandbox_set_error(error, "server %s is added twice (as %s)", name, identifier);
            return CAP_EINVAL;
        }
    }
    if (mode->server_count == MAX_SERVERS) {
        sandbox_set_error(error, "too many MCP servers (at most %d)", MAX_SERVERS);
        return CAP_EINVAL;
    }
    cJSON *spec = cJSON_Parse(server_json);
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(spec);
        sandbox_set_error(error, "server %.80s: its configuration is not a JSON object", name);
        return CAP_EINVAL;
    }
    /* "requireApproval": globs over this server's tool names, checked
     * before anything is started: a typo must not leave tools unguarded. */
    const cJSON *approval = cJSON_GetObjectItemCaseSensitive(spec, "requireApproval");
    const cJSON *globs = cJSON_IsArray(approval) ? approval : NULL, *glob;
    int bad_approval = approval && !globs;
    cJSON_ArrayForEach(glob, globs)
        bad_approval |= !cJSON_IsString(glob) || !glob->valuestring[0] ||
                        strlen(glob->valuestring) > 200;
    if (bad_approval) {
        cJSON_Delete(spec);
        sandbox_set_error(error, "server %.80s: \"requireApproval\" must be a list of tool-name "
                          "globs (strings of 1 to 200 bytes), e.g. [\"create_*\", \"*\"]", name);
        return CAP_EINVAL;
    }
    server *s = &mode->servers[mode->server_count];
    s->name = strdup(name);
    s->identifier = strdup(identifier);
    cJSON *tools = NULL;
    char message[CAP_ERROR_SIZE] = "";
    int rc = s->name && s->identifier
                 ? mcp_upstream_open(identifier, spec, CONNECT_SECONDS, &s->upstream, &tools,
                                     message)
                 : MCP_UPSTREAM_FAILED;
    if (rc != MCP_UPSTREAM_OK) {
        cJSON_Delete(spec);
        sandbox_set_error(error, "%s", message[0] ? message : "out of memory");
        free_server(s);
        return CAP_EINVAL;
    }
    rc = register_tools(config, s, tools, error);
    cJSON_Delete(tools);
    /* The globs name tools as the registry does: "SERVER.TOOL". */
    cJSON_ArrayForEach(glob, globs) {
        char pattern[MAX_IDENTIFIER + 2 + 201];
        snprintf(pattern, sizeof pattern, "%s.%s", identifier, glob->valuestring);
        if (rc == CAP_OK) rc = cap_config_require_approval_matching(config, pattern, error);
    }
    if (rc != CAP_OK) {
        /* All or nothing: the tools added so far leave the registry with
         * the server (their userdata is freed with it). */
        for (int i = 0; i < s->tool_count; i++) sandbox_remove_function(config, s->tools[i].function);
        free_server(s);
        cJSON_Delete(spec);
        return rc;
    }
    cJSON_Delete(spec);
    mode->server_count++;
    return CAP_OK;
}

/* --- the /servers tree ---------------------------------------------------------------- */

/* Appends `text` for the inside of a """ docstring so that nothing can
 * end the string: backslashes escaped, a quote left as is only when
 * neither the one before nor the one after is a quote and it is not the
 * text's last character (so JSON stays readable, and no two unescaped
 * quotes ever touch); control characters other than newline dropped,
 * invalid UTF-8 replaced, each newline followed by `indent`. */
static int append_docstring(buffer *out, const char *text, const char *indent) {
    char *clean = utf8_sanitize(text, strlen(text));
    if (!clean) return -1;
    /* First what is kept, so that the quote rule sees neighbours as written. */
    char *kept = clean;
    for (const unsigned char *c = (const unsigned char *)clean; *c; c++) {
        if (*c == '\t') *kept++ = ' ';
        else if (*c == '\n' || (*c >= 0x20 && *c != 0x7f)) *kept++ = (char)*c;
    }
    *kept = '\0';
    int rc = 0, raw_quote = 0;
    for (const char *c = clean; rc == 0 && *c; c++) {
        int quote_here = *c == '"' && !raw_quote && c[1] && c[1] != '"';
        raw_quote = quote_here;
        if (*c == '\\') rc = buffer_append(out, "\\\\", 2);
        else if (quote_here) rc = buffer_append(out, "\"", 1);
        else if (*c == '"') rc = buffer_append(out, "\\\"", 2);
        else if (*c == '\n') {
            rc = buffer_append(out, "\n", 1);
            if (rc == 0 && c[1] && c[1] != '\n') rc = buffer_append(out, indent, strlen(indent));
        } else rc = buffer_append(out, c, 1);
    }
    free(clean);
    return rc;
}

static int appendf(buffer *out, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int appendf(buffer *out, const char *format, ...) {
    char small[1024];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return buffer_append(out, small, (size_t)n);
    char *large = malloc((size_t)n + 1);
    if (!large) return -1;
    va_start(args, format);
    vsnprintf(large, (size_t)n + 1, format, args);
    va_end(args);
    int rc = buffer_append(out, large, (size_t)n);
    free(large);
    return rc;
}

/* A Python annotation for a JSON Schema "type" (as capsule.functions
 * reads them), or NULL when there is none to give. */
static int append_annotation(buffer *out, const cJSON *type) {
    static const char *const json[] = {"string", "integer", "number", "boolean",
                                       "array",  "object",  "null"};
    static const char *const python[] = {"str", "int", "float", "bool", "list", "dict", "None"};
    int written = 0, rc = 0;
    const cJSON *each = cJSON_IsArray(type) ? type->child : type;
    for (; each && rc == 0; each = cJSON_IsArray(type) ? each->next : NULL) {
        for (size_t i = 0; cJSON_IsString(each) && i < sizeof json / sizeof *json; i++) {
            if (strcmp(each->valuestring, json[i]) != 0) continue;
            rc = appendf(out, "%s%s", written++ ? " | " : "", python[i]);
        }
    }
    if (!written && rc == 0) rc = buffer_append(out, "object", 6);
    return rc;
}

/* The rest of a property's schema (items, enum, default...), as compact
 * JSON on its own docstring line, so that nested shapes are documented;
 * long ones are cut. */
static int append_details(buffer *out, const cJSON *property) {
    cJSON *rest = cJSON_Duplicate(property, 1);
    if (!rest) return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(rest, "type");
    cJSON_DeleteItemFromObjectCaseSensitive(rest, "description");
    int rc = 0;
    if (rest->child) {
        char *text = cJSON_PrintUnformatted(rest);
        if (!text) rc = -1;
        if (text && strlen(text) > DETAILS_LENGTH) {
            size_t n = DETAILS_LENGTH - 3;
            while (n && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
            strcpy(text + n, "...");
        }
        if (rc == 0) rc = buffer_append(out, "\n            schema: ", 21);
        if (rc == 0) rc = append_docstring(out, text, "            ");
        free(text);
    }
    cJSON_Delete(rest);
    return rc;
}

typedef struct parameter {
    const char *name;
    const cJSON *property;
    int required;
} parameter;

static int is_required(const cJSON *required, const char *name) {
    const cJSON *each;
    cJSON_ArrayForEach(each, required) if (strcmp(each->valuestring, name) == 0) return 1;
    return 0;
}

/* /servers/S/T.py: a module docstring, and the function T with keyword-
 * only parameters (the schema's properties that are plain identifiers not
 * starting with '_'; others go through **_arguments), whose body hands
 * everything to capsule.tools._call. */
static int tool_stub(const cap_config *config, const struct function *f,
                     const upstream_tool *tool, const char *name, buffer *out) {
    const cJSON *schema = f->schema;
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *required = cJSON_GetObjectItemCaseSensitive(schema, "required");
    const cJSON *additional = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
    int count = cJSON_GetArraySize(properties), used = 0, extra = 0;
    parameter *parameters = calloc((size_t)(count ? count : 1), sizeof *parameters);
    if (!parameters) return -1;
    for (int pass = 0; pass < 2; pass++) { /* required ones first */
        const cJSON *property;
        cJSON_ArrayForEach(property, properties) {
            int needed = is_required(required, property->string);
            if (needed != (pass == 0)) continue;
            int duplicate = 0;
            for (int i = 0; i < used; i++)
                if (strcmp(parameters[i].name, property->string) == 0) duplicate = 1;
            if (duplicate) continue;
            if (!plain_identifier(property->string)) {
                extra = 1;
                continue;
            }
            parameters[used++] = (parameter){property->string, property, needed};
        }
    }
    if (count == 0 && !cJSON_IsFalse(additional)) extra = 1;
    buffer signature = {0};
    int rc = buffer_append(&signature, "(", 1);
    if (used && rc == 0) rc = buffer_append(&signature, "*, ", 3);
    for (int i = 0; i < used && rc == 0; i++) {
        rc = appendf(&signature, "%s%s: ", i ? ", " : "", parameters[i].name);
        if (rc == 0)
            rc = append_annotation(&signature, cJSON_GetObjectItemCaseSensitive(
                                                   parameters[i].property, "type"));
        if (rc == 0 && !parameters[i].required)
            rc = appendf(&signature, "%s = None", /* "| None" unless the type says it */
                         memcmp(signature.data + signature.size - 4, "None", 4) == 0
                             ? ""
                             : " | None");
    }
    if (extra && rc == 0) rc = appendf(&signature, "%s**_arguments", used ? ", " : "");
    if (rc == 0) rc = buffer_append(&signature, ")", 1);
    const char *description = f->description;
    /* The module's docstring: what an agent reading the file sees first. */
    if (rc == 0) rc = appendf(out, "\"\"\"%s.%s%s -> object\n\n", tool->server->identifier, name,
                              signature.data);
    if (rc == 0 && description[0]) rc = append_docstring(out, description, "");
    if (rc == 0) rc = appendf(out, "\n\nMCP server '");
    if (rc == 0) rc = append_docstring(out, tool->server->name, "");
    if (rc == 0) rc = appendf(out, "', tool '");
    if (rc == 0) rc = append_docstring(out, tool->tool, "");
    if (rc == 0)
        rc = appendf(out, "'.  Generated by capsule from the server's tool list.\n\"\"\"\n"
                          "from capsule.tools import _call\n\n\ndef %s%s -> object:\n"
                          "    \"\"\"%s",
                     name, signature.data, description[0] ? "" : "(no description)");
    if (rc == 0 && description[0]) rc = append_docstring(out, description, "    ");
    if (rc == 0 && used) rc = appendf(out, "\n\n    Args:");
    for (int i = 0; i < used && rc == 0; i++) {
        const cJSON *what = cJSON_GetObjectItemCaseSensitive(parameters[i].property,
                                                             "description");
        rc = appendf(out, "\n        %s (", parameters[i].name);
        if (rc == 0)
            rc = append_annotation(out, cJSON_GetObjectItemCaseSensitive(parameters[i].property,
                                                                          "type"));
        if (rc == 0) rc = appendf(out, "%s)", parameters[i].required ? ", required" : "");
        if (rc == 0 && cJSON_IsString(what) && what->valuestring[0]) {
            rc = buffer_append(out, ": ", 2);
            if (rc == 0) rc = append_docstring(out, what->valuestring, "            ");
        }
        if (rc == 0) rc = append_details(out, parameters[i].property);
    }
    if (rc == 0)
        rc = appendf(out, "\n\n    Returns the tool's structuredContent, else its content (text "
                          "parsed as JSON when it is JSON;\n    images and blobs as bytes).  "
                          "Raises PermissionError, TimeoutError, TypeError or\n    "
                          "capsule.functions.ToolError (the tool's own error).%s\n    \"\"\"\n"
                          "    return _call(\"%s\", {",
                     sandbox_function_needs_approval(config, f) ? "  Each call needs approval." : "",
                     f->name);
    for (int i = 0; i < used && rc == 0; i++)
        rc = appendf(out, "%s\"%s\": %s", i ? ", " : "", parameters[i].name, parameters[i].name);
    if (rc == 0) rc = buffer_append(out, "}, (", 4);
    for (int i = 0; i < used && rc == 0; i++)
        if (parameters[i].required) rc = appendf(out, "\"%s\", ", parameters[i].name);
    if (rc == 0) rc = appendf(out, "), %s)\n", extra ? "_arguments" : "{}");
    buffer_free(&signature);
    free(parameters);
    return rc;
}

static int add_file(zygote_file **files, int *count, int *capacity, const char *path,
                    buffer *content) {
    if (*count == *capacity) {
        int more = *capacity ? 2 * *capacity : 16;
        zygote_file *grown = realloc(*files, (size_t)more * sizeof *grown);
        if (!grown) return -1;
        *files = grown;
        *capacity = more;
    }
    char *name = strdup(path);
    if (!name) return -1;
    (*files)[(*count)++] = (zygote_file){name, (unsigned char *)content->data, content->size};
    *content = (buffer){0};
    return 0;
}

/* The first line of a description, at most SUMMARY_LENGTH bytes (cut at
 * a UTF-8 boundary), for the package docstrings. */
static void summary(const char *description, char *out, size_t size) {
    size_t n = strcspn(description, "\n");
    if (n > SUMMARY_LENGTH) n = SUMMARY_LENGTH;
    while (n && ((unsigned char)description[n] & 0xC0) == 0x80) n--;
    if (n >= size) n = size - 1;
    memcpy(out, description, n);
    out[n] = '\0';
}

int sandbox_server_files(cap_config *config, zygote_file **files, int *count) {
    code_mode *mode = config->code_mode;
    *files = NULL;
    *count = 0;
    if (!mode || mode->server_count == 0) return 0;
    int capacity = 0, rc = 0;
    buffer root = {0}, package = {0}, stub = {0};
    rc = appendf(&root, "\"\"\"The tools of MCP servers, as Python functions (code mode).\n\n"
                        "    from servers.<server> import <tool>\n\n"
                        "Servers: ");
    for (int i = 0; rc == 0 && i < mode->server_count; i++)
        rc = appendf(&root, "%s%s", i ? ", " : "", mode->servers[i].identifier);
    if (rc == 0)
        rc = appendf(&root, ".\nEach tool is a file, /servers/<server>/<tool>.py: read the ones "
                            "you need.\ncapsule.tools.search(\"words\") finds tools by name and "
                            "description.\n\"\"\"\n");
    for (int i = 0; rc == 0 && i < mode->server_count; i++) {
        const server *s = &mode->servers[i];
        char path[2 * MAX_IDENTIFIER + 16];
        rc = appendf(&package, "\"\"\"Tools of the MCP server '");
        if (rc == 0) rc = append_docstring(&package, s->name, "");
        if (rc == 0) rc = appendf(&package, "' (one file each in /servers/%s):\n\n",
                                  s->identifier);
        buffer imports = {0};
        for (int t = 0; rc == 0 && t < s->tool_count; t++) {
            const upstream_tool *tool = &s->tools[t];
            const struct function *f = sandbox_find_function(config, tool->function);
            if (!f || !sandbox_function_granted(config, tool->function)) continue;
            const char *name = strchr(tool->function, '.') + 1;
            char line[SUMMARY_LENGTH + 1];
            summary(f->description, line, sizeof line);
            rc = appendf(&package, "    %s: ", name);
            if (rc == 0) rc = append_docstring(&package, line, "");
            if (rc == 0) rc = buffer_append(&package, "\n", 1);
            if (rc == 0) rc = appendf(&imports, "from .%s import %s\n", name, name);
            if (rc == 0) rc = tool_stub(config, f, tool, name, &stub);
            snprintf(path, sizeof path, "%s/%s.py", s->identifier, name);
            if (rc == 0) rc = add_file(files, count, &capacity, path, &stub);
        }
        if (rc == 0)
            rc = appendf(&package, "\"\"\"\n%s\n\ndef __getattr__(name):\n"
                         "    if name.startswith(\"_\"):\n"
                         "        raise AttributeError(name)\n"
                         "    raise PermissionError(f\"tool {name!r} of server '%s' is not granted "
                         "to this sandbox (capsule.tools.search() lists those that are)\")\n",
                         imports.data ? imports.data : "", s->identifier);
        buffer_free(&imports);
        snprintf(path, sizeof path, "%s/__init__.py", s->identifier);
        if (rc == 0) rc = add_file(files, count, &capacity, path, &package);
    }
    if (rc == 0) rc = add_file(files, count, &capacity, "__init__.py", &root);
    buffer_free(&root);
    buffer_free(&package);
    buffer_free(&stub);
    if (rc != 0) {
        sandbox_free_server_files(*files, *count);
        *files = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

void sandbox_free_server_files(zygote_file *files, int count) {
    for (int i = 0; i < count; i++) {
        free(files[i].name);
        free(files[i].data);
    }
    free(files);
}

int cap_config_mcp_server_names(const cap_config *config, char *out, size_t size) {
    const code_mode *mode = config->code_mode;
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; mode && i < mode->server_count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "",
                                 mode->servers[i].identifier);
    return mode ? mode->server_count : 0;
}
