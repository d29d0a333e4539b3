/*
 * run_python_code: one run in a sandbox of the pool, its output forwarded
 * as log messages and progress while it runs, host-function approvals
 * asked of the client, and the tool result.
 *
 * The result text is mcp-run-python's, so that agents prompted for that
 * server work unchanged: lines of <status>, then <dependencies>, <output>,
 * <return_value> or <error> when present, each body escaped against its
 * own closing tag.
 */
#include "server_internal.h"

#include "../sandbox/buffer.h" /* utf8_sanitize: JSON strings must be UTF-8 */
#include "describe_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const mcp_log_levels[MCP_LOG_LEVEL_COUNT] = {
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"};

/* --- running code ---------------------------------------------------------------------- */

typedef struct call_state {
    const reply *to;
    mcp_client *client;
    const char *call_id; /* the tools/call's id (JSON text): its questions end with it */
    double deadline;     /* CLOCK_MONOTONIC seconds when the run's wall time is up */
    int log_level;     /* messages below it are not sent */
    approval_state *approval; /* NULL: no approver, calls needing approval fail */
    const cJSON *progress_token;
    double progress;
    text output;     /* stdout and stderr interleaved, as written */
    text partial[2]; /* the unfinished last line of stdout, of stderr */
} call_state;

int mcp_level_index(const char *name) {
    for (int i = 0; i < MCP_LOG_LEVEL_COUNT; i++)
        if (strcmp(name, mcp_log_levels[i]) == 0) return i;
    return -1;
}

static void send_log(call_state *call, int level, const char *logger, const char *data) {
    if (level < call->log_level) return;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "level", mcp_log_levels[level]);
    cJSON_AddStringToObject(params, "logger", logger);
    cJSON_AddStringToObject(params, "data", data);
    mcp_send_notification(call->to, "notifications/message", params);
}

static void send_progress(call_state *call, const char *message) {
    if (!call->progress_token) return;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "progressToken", cJSON_Duplicate(call->progress_token, 1));
    cJSON_AddNumberToObject(params, "progress", ++call->progress);
    cJSON_AddStringToObject(params, "message", message);
    mcp_send_notification(call->to, "notifications/progress", params);
}

static void send_log_line(call_state *call, cap_stream stream, const char *line, size_t size) {
    char *data = utf8_sanitize(line, size);
    if (!data) return;
    send_log(call, stream == CAP_STDOUT ? 1 : 3, stream == CAP_STDOUT ? "stdout" : "stderr", data);
    send_progress(call, data);
    free(data);
}

/* Package installation news: progress (when asked) and an "info" log line. */
static void on_progress(void *userdata, const char *message) {
    call_state *call = userdata;
    send_progress(call, message);
    send_log(call, 1, "capsule", message);
}

/* Output is forwarded while the code runs, a line at a time: as log
 * messages (stdout at "info", stderr at "warning") and, when the client
 * asked, as progress. */
static void on_output(void *userdata, cap_stream stream, const char *data, size_t size) {
    call_state *call = userdata;
    mcp_text_append(&call->output, data, size);
    text *partial = &call->partial[stream == CAP_STDOUT ? 0 : 1];
    mcp_text_append(partial, data, size);
    size_t start = 0;
    for (size_t i = 0; i < partial->size; i++) {
        if (partial->data[i] == '\n') {
            send_log_line(call, stream, partial->data + start, i - start);
            start = i + 1;
        }
    }
    if (start) {
        memmove(partial->data, partial->data + start, partial->size - start);
        partial->size -= start;
    }
}

/* What is left of unterminated lines when the run ends. */
static void flush_output(call_state *call) {
    for (int i = 0; i < 2; i++) {
        if (call->partial[i].size)
            send_log_line(call, i == 0 ? CAP_STDOUT : CAP_STDERR, call->partial[i].data,
                          call->partial[i].size);
        free(call->partial[i].data);
    }
}

const char *mcp_argument_string(const cJSON *arguments, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(arguments, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Decodes the `files` argument: [{path, content, encoding?}] with encoding
 * "utf-8" (default) or "base64".  0, or -1 with `message`. */
static int decode_files(const cJSON *files, cap_file *out, size_t *count, char *message) {
    *count = 0;
    if (!files) return 0;
    if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) > MAX_FILES) {
        snprintf(message, CAP_ERROR_SIZE, "files must be an array of at most %d objects", MAX_FILES);
        return -1;
    }
    const cJSON *file;
    cJSON_ArrayForEach(file, files) {
        const char *path = mcp_argument_string(file, "path");
        const char *content = mcp_argument_string(file, "content");
        const char *encoding = mcp_argument_string(file, "encoding");
        if (!path || !content) {
            snprintf(message, CAP_ERROR_SIZE, "each file needs a string path and content");
            return -1;
        }
        cap_file *f = &out[(*count)++];
        f->path = path;
        if (encoding && strcmp(encoding, "base64") == 0) {
            f->data = base64_decode(content, &f->size);
            if (!f->data) {
                snprintf(message, CAP_ERROR_SIZE, "file %.100s: content is not base64", path);
                return -1;
            }
        } else if (!encoding || strcmp(encoding, "utf-8") == 0) {
            f->size = strlen(content);
            f->data = malloc(f->size + 1);
            if (f->data) memcpy((char *)f->data, content, f->size);
        } else {
            snprintf(message, CAP_ERROR_SIZE, "file %.100s: encoding must be utf-8 or base64", path);
            return -1;
        }
    }
    return 0;
}

static int pair_listed(const cJSON *pairs, const char *function, const char *arguments) {
    const cJSON *pair;
    cJSON_ArrayForEach(pair, pairs) {
        const cJSON *name = cJSON_GetArrayItem(pair, 0), *args = cJSON_GetArrayItem(pair, 1);
        if (cJSON_IsString(name) && cJSON_IsString(args) &&
            strcmp(name->valuestring, function) == 0 && strcmp(args->valuestring, arguments) == 0)
            return 1;
    }
    return 0;
}

static double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the client is asked about a call that needs approval, in both eras:
 * the function's name and its arguments as JSON text (cut short: a person
 * reads it), and a form with one boolean. */
void mcp_approval_question(const char *function, const char *arguments, char *out, size_t size) {
    snprintf(out, size,
             "The Python code asks to call the host function '%.100s' with arguments %.700s%s "
             "Allow this call?",
             function, arguments, strlen(arguments) > 700 ? "... (cut short)." : ".");
}

cJSON *mcp_approval_schema(void) {
    cJSON *schema = cJSON_CreateObject();
    cJSON_AddStringToObject(schema, "type", "object");
    cJSON *properties = cJSON_AddObjectToObject(schema, "properties");
    cJSON *approve = cJSON_AddObjectToObject(properties, "approve");
    cJSON_AddStringToObject(approve, "type", "boolean");
    cJSON_AddStringToObject(approve, "title", "Allow this call");
    cJSON *required = cJSON_AddArrayToObject(schema, "required");
    cJSON_AddItemToArray(required, cJSON_CreateString("approve"));
    return schema;
}

/* The seconds a question to the client may wait: at most `cap`, and a
 * second less than the run has left, so that a refusal still reaches the
 * guest as PermissionError before the wall-clock limit ends the run. */
static double question_seconds(const call_state *call, double cap) {
    double left = call->deadline - monotonic_seconds() - 1.0;
    return left < cap ? left : cap;
}

/* A legacy client's approval, asked now with elicitation/create (form
 * mode) while the run waits: yes only for "accept" with approve true.
 * Everything else refuses, saying why in `reason`: declined or cancelled,
 * no answer in time, a client that cannot be asked, an error, garbage. */
static int elicit_approval(call_state *call, const char *function, const char *arguments,
                           char *reason) {
    mcp_client *client = call->client;
    if (!client->can_elicit) {
        snprintf(reason, CAP_ERROR_SIZE, "the MCP client cannot be asked (it declared no "
                 "elicitation capability)");
        return 0;
    }
    if (!call->to->can_ask) {
        snprintf(reason, CAP_ERROR_SIZE, "the MCP client cannot be asked on this connection "
                 "(an HTTP call answered with JSON, not an event stream)");
        return 0;
    }
    double seconds = question_seconds(call, APPROVAL_SECONDS);
    if (!(seconds > 0)) {
        snprintf(reason, CAP_ERROR_SIZE, "no time is left in the run to ask the MCP client");
        return 0;
    }
    char question[1024];
    mcp_approval_question(function, arguments, question, sizeof question);
    cJSON *params = cJSON_CreateObject();
    /* "mode" came with 2025-11-25; an older client's schema may refuse it. */
    if (strcmp(client->protocol, "2025-11-25") == 0) cJSON_AddStringToObject(params, "mode", "form");
    cJSON_AddStringToObject(params, "message", question);
    cJSON_AddItemToObject(params, "requestedSchema", mcp_approval_schema());
    cJSON *answer = NULL;
    char error[CAP_ERROR_SIZE];
    ask_outcome outcome = ask_request(client->asks, call->call_id, call->to->send,
                                      call->to->context, "elicitation/create", params, seconds,
                                      &answer, error);
    if (outcome != ASK_OK) {
        snprintf(reason, CAP_ERROR_SIZE, "no approval from the MCP client: %.80s", error);
        return 0;
    }
    const char *action = mcp_argument_string(answer, "action");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(answer, "content");
    int yes = action && strcmp(action, "accept") == 0 &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(content, "approve"));
    if (!yes)
        snprintf(reason, CAP_ERROR_SIZE, "%s",
                 !action                            ? "the MCP client's answer has no action"
                 : strcmp(action, "decline") == 0   ? "declined by the user"
                 : strcmp(action, "cancel") == 0    ? "cancelled by the user"
                 : strcmp(action, "accept") == 0    ? "the user did not set approve to true"
                                                    : "the MCP client's answer has an unknown action");
    cJSON_Delete(answer);
    return yes;
}

/* The run's approver (cap_run_options.approve, on the run's thread).
 * Legacy revisions: the client is asked now (elicit_approval).  2026-07-28:
 * yes for a call the client approved in an earlier round; no otherwise,
 * remembering the first call not yet asked about so that the tool call
 * can ask the client with input_required and run again. */
static int approve_call(void *userdata, const char *function, const char *arguments_json,
                        char *reason) {
    call_state *call = userdata;
    approval_state *approval = call->approval;
    const char *arguments = arguments_json ? arguments_json : "null";
    if (!approval) return elicit_approval(call, function, arguments, reason);
    if (pair_listed(approval->approved, function, arguments)) return 1;
    if (pair_listed(approval->declined, function, arguments)) {
        snprintf(reason, CAP_ERROR_SIZE, "declined by the user");
    } else if (!approval->can_ask) {
        snprintf(reason, CAP_ERROR_SIZE, "the MCP client cannot be asked (it declared no "
                 "elicitation capability, or too many calls were asked about)");
    } else if (!approval->ask_function) {
        approval->ask_function = strdup(function);
        approval->ask_arguments = strdup(arguments);
        if (!approval->ask_function || !approval->ask_arguments) { /* out of memory: refused */
            free(approval->ask_function);
            free(approval->ask_arguments);
            approval->ask_function = approval->ask_arguments = NULL;
        }
    }
    return 0;
}

/* capsule.describe() through a legacy client's model (cap_run_options.
 * ask_model): sampling/createMessage, asked while the run waits. */
static char *ask_client_model(void *userdata, const void *data, size_t size,
                              const char *media_type, const char *name, const char *question,
                              double timeout_seconds, char *error) {
    call_state *call = userdata;
    cJSON *params = describe_client_sampling(data, size, media_type, name, question, error);
    if (!params) return NULL;
    double seconds = question_seconds(call, SAMPLING_SECONDS);
    if (timeout_seconds > 0 && timeout_seconds < seconds) seconds = timeout_seconds;
    if (!(seconds > 0)) {
        cJSON_Delete(params);
        snprintf(error, CAP_ERROR_SIZE, "describe: no time is left in the run to ask the "
                 "client's model");
        return NULL;
    }
    cJSON *result = NULL;
    char message[CAP_ERROR_SIZE];
    if (ask_request(call->client->asks, call->call_id, call->to->send, call->to->context,
                    "sampling/createMessage", params, seconds, &result, message) != ASK_OK) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the client's model (sampling): %.180s",
                 message);
        return NULL;
    }
    char *answer = describe_client_answer(result, error);
    cJSON_Delete(result);
    return answer;
}

void mcp_run_code(mcp_server *server, mcp_client *client, const char *id, const reply *to,
                  const cJSON *progress_token, const run_request *request, run_outcome *outcome) {
    memset(outcome, 0, sizeof *outcome);
    cap_file files[MAX_FILES];
    size_t file_count = 0;
    if (decode_files(request->files, files, &file_count, outcome->message) != 0) {
        for (size_t i = 0; i < file_count; i++) free((void *)files[i].data);
        return;
    }
    char *globals = request->globals ? cJSON_PrintUnformatted(request->globals) : NULL;
    call_state call = {to, client, id, 0,
                       to->stateless ? to->stateless->log_level : client->log_level,
                       request->approval, progress_token, 0, {0}, {{0}, {0}}};
    cap_run_options options = {0};
    options.approve = approve_call;
    /* describe's second backend, where the client takes requests now. */
    if (!to->stateless && to->can_ask && client->can_sample) options.ask_model = ask_client_model;
    options.filename = "main.py";
    options.on_output = on_output;
    options.on_progress = on_progress;
    options.userdata = &call;
    options.limits = server->limits;
    if (request->timeout_seconds > 0 &&
        (!(options.limits.wall_seconds > 0) || request->timeout_seconds < options.limits.wall_seconds))
        options.limits.wall_seconds = request->timeout_seconds;
    options.files = files;
    options.file_count = file_count;
    options.session = request->session;
    options.principal = client->principal;
    options.globals_json = globals;
    options.return_json = 1;
    options.idempotency_key = request->idempotency_key;

    mcp_client_call_begins(client);
    int slot_index = mcp_acquire_slot(server, client, id, request->session);
    if (slot_index == -2) {
        snprintf(outcome->message, CAP_ERROR_SIZE, "cancelled before it started");
    } else if (slot_index < 0) {
        outcome->busy = 1;
        pthread_mutex_lock(&server->lock);
        server->runs_refused++;
        pthread_mutex_unlock(&server->lock);
        snprintf(outcome->message, CAP_ERROR_SIZE,
                 "server busy: all %d workers are running and %d calls are waiting; retry later",
                 server->slot_count, server->queue_limit);
    } else {
        if (progress_token) {
            cJSON *params = cJSON_CreateObject();
            cJSON_AddItemToObject(params, "progressToken", cJSON_Duplicate(progress_token, 1));
            cJSON_AddNumberToObject(params, "progress", 0);
            cJSON_AddStringToObject(params, "message", "running");
            mcp_send_notification(to, "notifications/progress", params);
        }
        /* The run's limit is its wall time from now (30 s by default, as in
         * run.c): questions to the client end a little before it. */
        call.deadline = monotonic_seconds() +
                        (options.limits.wall_seconds > 0 ? options.limits.wall_seconds : 30.0);
        int rc = cap_sandbox_run(server->slots[slot_index].sandbox, request->code,
                                 strlen(request->code), &options, &outcome->result,
                                 outcome->message);
        if (rc != CAP_OK) outcome->result = NULL;
        if (outcome->result) {
            cap_status status = cap_result_status(outcome->result);
            pthread_mutex_lock(&server->lock);
            if ((unsigned)status <= CAP_STATUS_CANCELLED) server->runs[status]++;
            pthread_mutex_unlock(&server->lock);
        }
        flush_output(&call);
        if (outcome->result && cap_result_status(outcome->result) == CAP_STATUS_SESSION_ERROR &&
            request->session) {
            pthread_mutex_lock(&server->lock);
            mcp_forget_route(server, request->session);
            pthread_mutex_unlock(&server->lock);
        }
        mcp_release_slot(server, client, slot_index);
    }
    mcp_client_call_ends(client);
    outcome->output = call.output;
    free(globals);
    for (size_t i = 0; i < file_count; i++) free((void *)files[i].data);
}

/* --- run_python_code's result ------------------------------------------------------- */

static const char *mcp_status(cap_status status) {
    if (status == CAP_STATUS_SUCCESS) return "success";
    if (status == CAP_STATUS_INSTALL_ERROR) return "install-error";
    return "run-error";
}

static void append_section(text *xml, const char *tag, const char *body, size_t size) {
    mcp_text_append_string(xml, "\n<");
    mcp_text_append_string(xml, tag);
    mcp_text_append_string(xml, ">\n");
    mcp_append_escaped(xml, body, size, tag);
    mcp_text_append_string(xml, "\n</");
    mcp_text_append_string(xml, tag);
    mcp_text_append_string(xml, ">");
}

static int is_image(const char *media_type) {
    return strncmp(media_type, "image/", 6) == 0;
}

static int is_text(const char *media_type) {
    return strncmp(media_type, "text/", 5) == 0 || strcmp(media_type, "application/json") == 0;
}

/* The tool result: the text block, artifacts as content, and the same
 * fields as structuredContent.  `scoped` (or NULL) is the session's internal
 * name, shown to the client as `name`. */
cJSON *mcp_format_run_result(const cap_result *result, const text *output_text, const char *scoped,
                             const char *name) {
    cap_status status = cap_result_status(result);
    const char *status_name = mcp_status(status);
    cJSON *structured = cJSON_CreateObject();
    cJSON_AddStringToObject(structured, "status", status_name);
    cJSON_AddStringToObject(structured, "capsule_status", cap_status_name(status));

    text xml = {0};
    mcp_text_append_string(&xml, "<status>");
    mcp_text_append_string(&xml, status_name);
    mcp_text_append_string(&xml, "</status>");
    cJSON *dependencies = cJSON_AddArrayToObject(structured, "dependencies");
    for (size_t i = 0; i < cap_result_dependency_count(result); i++)
        cJSON_AddItemToArray(dependencies, cJSON_CreateString(cap_result_dependency(result, i)));
    if (cJSON_GetArraySize(dependencies) > 0) {
        char *list = cJSON_PrintUnformatted(dependencies);
        mcp_text_append_string(&xml, "\n<dependencies>");
        if (list) mcp_text_append_string(&xml, list);
        mcp_text_append_string(&xml, "</dependencies>");
        free(list);
    }
    /* What the installer left out (a C accelerator, say): the agent should
     * know before it wonders why something is slow or missing. */
    text notes = {0};
    cJSON *note_list = cJSON_AddArrayToObject(structured, "notes");
    for (size_t i = 0; i < cap_result_note_count(result); i++) {
        cJSON_AddItemToArray(note_list, cJSON_CreateString(cap_result_note(result, i)));
        if (i) mcp_text_append_string(&notes, "\n");
        mcp_text_append_string(&notes, cap_result_note(result, i));
    }
    if (notes.size) append_section(&xml, "notes", notes.data, notes.size);
    free(notes.data);
    /* The output's final newline belongs to the last line, not the block. */
    size_t output_size = output_text->size;
    if (output_size && output_text->data[output_size - 1] == '\n') output_size--;
    if (output_size) append_section(&xml, "output", output_text->data, output_size);
    char *output = utf8_sanitize(output_size ? output_text->data : "", output_size);
    cJSON_AddStringToObject(structured, "output", output ? output : "");
    free(output);
    const char *value = cap_result_return_value(result);
    char *own_error = mcp_unscope(cap_result_error(result), scoped, name);
    const char *error = own_error;
    if (status == CAP_STATUS_SUCCESS) {
        if (value) append_section(&xml, "return_value", value, strlen(value));
        cJSON_AddItemToObject(structured, "return_value",
                              value ? cJSON_CreateString(value) : cJSON_CreateNull());
        cJSON_AddNullToObject(structured, "error");
    } else {
        if (!error) error = cap_status_name(status);
        size_t error_size = strlen(error);
        if (error_size && error[error_size - 1] == '\n') error_size--;
        append_section(&xml, "error", error, error_size);
        cJSON_AddNullToObject(structured, "return_value");
        cJSON_AddStringToObject(structured, "error", error);
    }
    free(own_error);

    cJSON *tool_result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(tool_result, "content");
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "text");
    char *xml_text = utf8_sanitize(xml.data ? xml.data : "", xml.size);
    cJSON_AddStringToObject(block, "text", xml_text ? xml_text : "");
    cJSON_AddItemToArray(content, block);
    free(xml_text);
    free(xml.data);

    cJSON *artifacts = cJSON_AddArrayToObject(structured, "artifacts");
    for (size_t i = 0; i < cap_result_artifact_count(result); i++) {
        const cap_artifact *artifact = cap_result_artifact(result, i);
        cJSON *summary = cJSON_CreateObject();
        cJSON_AddStringToObject(summary, "name", artifact->name);
        cJSON_AddStringToObject(summary, "media_type", artifact->media_type);
        cJSON_AddNumberToObject(summary, "size", (double)artifact->size);
        cJSON_AddItemToArray(artifacts, summary);
        char *encoded = base64_encode(artifact->data, artifact->size);
        if (!encoded) continue;
        cJSON *item = cJSON_CreateObject();
        if (is_image(artifact->media_type)) {
            cJSON_AddStringToObject(item, "type", "image");
            cJSON_AddStringToObject(item, "data", encoded);
            cJSON_AddStringToObject(item, "mimeType", artifact->media_type);
        } else {
            char uri[1200];
            snprintf(uri, sizeof uri, "file:///output/%s", artifact->name);
            cJSON_AddStringToObject(item, "type", "resource");
            cJSON *resource = cJSON_AddObjectToObject(item, "resource");
            cJSON_AddStringToObject(resource, "uri", uri);
            cJSON_AddStringToObject(resource, "mimeType", artifact->media_type);
            /* Text content only when it is UTF-8 already: sanitising
             * (which also replaces NULs) changes nothing. */
            char *textual = is_text(artifact->media_type)
                                ? utf8_sanitize((const char *)artifact->data, artifact->size)
                                : NULL;
            if (textual && strlen(textual) == artifact->size &&
                memcmp(textual, artifact->data, artifact->size) == 0) {
                cJSON_AddStringToObject(resource, "text", textual);
            } else {
                cJSON_AddStringToObject(resource, "blob", encoded);
            }
            free(textual);
        }
        free(encoded);
        cJSON_AddItemToArray(content, item);
    }
    cJSON_AddItemToObject(tool_result, "structuredContent", structured);
    cJSON_AddBoolToObject(tool_result, "isError", 0);
    return tool_result;
}

/* A tool result of one text block: a failure of the tool itself
 * (`is_error`), or its answer with `structured` (or NULL) as
 * structuredContent. */
static cJSON *text_result(const char *message, cJSON *structured, int is_error) {
    cJSON *result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(result, "content");
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "text");
    cJSON_AddStringToObject(block, "text", message);
    cJSON_AddItemToArray(content, block);
    if (structured) cJSON_AddItemToObject(result, "structuredContent", structured);
    cJSON_AddBoolToObject(result, "isError", is_error);
    return result;
}

cJSON *mcp_tool_error(const char *message) {
    return text_result(message, NULL, 1);
}

cJSON *mcp_tool_text(const char *message, cJSON *structured) {
    return text_result(message, structured, 0);
}
