/*
 * Tasks: a run_python_code call that runs in the background and is polled.
 * Two shapes on the wire: the Tasks extension of 2026-07-28 (SEP-2663:
 * tasks/get, tasks/update, tasks/cancel) and 2025-11-25's tasks in core
 * (task-augmented tools/call, tasks/get, tasks/result, tasks/list,
 * tasks/cancel).  With a store, a task's outcome outlives the process.
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* ISO 8601 in UTC with milliseconds: "2026-07-28T10:30:00.250Z". */
static void iso_time(int64_t ms, char out[32]) {
    time_t seconds = (time_t)(ms / 1000);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    size_t length = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + length, 32 - length, ".%03dZ", (int)(ms % 1000));
}

static int declares_tasks(const cJSON *capabilities) {
    const cJSON *extensions = cJSON_GetObjectItemCaseSensitive(capabilities, "extensions");
    return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(extensions, TASKS_EXTENSION));
}

/* When a run_python_code call becomes a task: its 2026-07-28 request
 * declares the extension in its clientCapabilities, and it is not a round
 * of host-function approval (requestState, inputResponses): those rounds
 * stay synchronous, as the extension recommends for input gathered before
 * a task exists.  In 2025-11-25 (tasks in core), when the call is
 * task-augmented: params.task is an object. */
int mcp_becomes_task(const reply *to, const cJSON *params) {
    if (!to->stateless) /* 2025-11-25: the client asks, with params.task */
        return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(params, "task"));
    return declares_tasks(to->stateless->capabilities) &&
           !cJSON_HasObjectItem(params, "requestState") &&
           !cJSON_HasObjectItem(params, "inputResponses");
}

/* The message of the error every task left working by a dead process gets. */
static const char interrupted_message[] =
    "interrupted: the server stopped (a restart, a crash or kill -9) while this task was "
    "running, so its result is lost; run the code again";

static char *interrupted_payload(void) {
    cJSON *error = cJSON_CreateObject();
    cJSON_AddNumberToObject(error, "code", RPC_INTERNAL_ERROR);
    cJSON_AddStringToObject(error, "message", interrupted_message);
    char *text = cJSON_PrintUnformatted(error);
    cJSON_Delete(error);
    return text;
}

static void task_free(task *t) {
    if (!t) return;
    free(t->principal);
    free(t->status_message);
    free(t->payload);
    free(t->response);
    cJSON_Delete(t->params);
    cJSON_Delete(t->input_requests);
    cJSON_Delete(t->input_responses);
    free(t);
}

/* Not finished: working, or waiting for the client's input. */
static int task_active(const char *status) {
    return strcmp(status, "working") == 0 || strcmp(status, "input_required") == 0;
}

/* The task's fields common to CreateTaskResult and tasks/get, into `out`;
 * `legacy`: in 2025-11-25's shape (Task), whose names are `ttl` and
 * `pollInterval` (always given). */
static void add_task_fields(cJSON *out, const char *id, const char *status, const char *message,
                            int64_t created_ms, int64_t updated_ms, int legacy) {
    char created[32], updated[32];
    iso_time(created_ms, created);
    iso_time(updated_ms, updated);
    cJSON_AddStringToObject(out, "taskId", id);
    cJSON_AddStringToObject(out, "status", status);
    if (message) cJSON_AddStringToObject(out, "statusMessage", message);
    cJSON_AddStringToObject(out, "createdAt", created);
    cJSON_AddStringToObject(out, "lastUpdatedAt", updated);
    cJSON_AddNumberToObject(out, legacy ? "ttl" : "ttlMs", TASK_TTL_MS);
    if (legacy || task_active(status))
        cJSON_AddNumberToObject(out, legacy ? "pollInterval" : "pollIntervalMs", TASK_POLL_MS);
}

static cJSON *legacy_task(const char *id, const char *status, const char *message,
                          int64_t created_ms, int64_t updated_ms) {
    cJSON *out = cJSON_CreateObject();
    add_task_fields(out, id, status, message, created_ms, updated_ms, 1);
    return out;
}

/* tasks/get's DetailedTask: the fields, and the result (completed) or the
 * error (failed) parsed from the payload. */
static cJSON *detailed_task(const char *id, const char *status, const char *message,
                            const char *payload, int64_t created_ms, int64_t updated_ms) {
    cJSON *out = cJSON_CreateObject();
    add_task_fields(out, id, status, message, created_ms, updated_ms, 0);
    int completed = strcmp(status, "completed") == 0, failed = strcmp(status, "failed") == 0;
    if (completed || failed) {
        cJSON *inlined = payload ? cJSON_Parse(payload) : NULL;
        if (!cJSON_IsObject(inlined)) { /* never written so; a damaged row reads as an error */
            cJSON_Delete(inlined);
            inlined = cJSON_CreateObject();
            if (completed) {
                cJSON_AddArrayToObject(inlined, "content");
                cJSON_AddBoolToObject(inlined, "isError", 1);
            } else {
                cJSON_AddNumberToObject(inlined, "code", RPC_INTERNAL_ERROR);
                cJSON_AddStringToObject(inlined, "message", "the task's stored outcome is unreadable");
            }
        }
        cJSON_AddItemToObject(out, completed ? "result" : "error", inlined);
    }
    return out;
}

/* The task's thread captures the run's JSON-RPC response here; nothing else
 * is sent (a task gets no log messages or progress: the extension has no
 * channel for them). */
static void capture_nothing(void *context, const char *json) {
    (void)context;
    (void)json;
}

static void capture_response(void *context, const char *json) {
    task *t = context;
    free(t->response);
    t->response = strdup(json);
}

/* Drops the task at `index` from memory, with the lock held. */
static void forget_task(mcp_server *server, int index) {
    task *t = server->tasks[index];
    if (t->payload) server->task_bytes -= strlen(t->payload);
    task_free(t);
    memmove(server->tasks + index, server->tasks + index + 1,
            (size_t)(server->task_count - index - 1) * sizeof *server->tasks);
    server->task_count--;
}

/* Without a store, results held in memory are bounded: past MAX_TASK_BYTES
 * the oldest finished tasks are forgotten (a running one never is).  With
 * the lock held. */
static void bound_task_bytes(mcp_server *server) {
    for (int i = 0; i < server->task_count && server->task_bytes > MAX_TASK_BYTES;) {
        if (!server->tasks[i]->running && server->tasks[i]->payload)
            forget_task(server, i);
        else
            i++;
    }
}

/* Records a task's end.  With a store, the store first and then memory, so
 * that an outcome a client saw (tasks/get, tasks/result) is never lost to
 * a kill -9, and the store decides between a run ending and a cancellation
 * arriving at once: whichever wrote first stands, and memory follows it.
 * Once stored, the payload is not kept in memory: tasks/get reads it from
 * the store.  Called with the lock NOT held; takes `payload`. */
static void finish_task(mcp_server *server, task *t, const char *status, const char *message,
                        char *payload) {
    pthread_mutex_lock(&server->lock);
    int still_working = task_active(t->status);
    pthread_mutex_unlock(&server->lock);
    if (!still_working) { /* cancelled, and stored so, before the run ended */
        free(payload);
        return;
    }
    int rc = CAP_OK;
    if (server->durable) {
        char error[CAP_ERROR_SIZE];
        rc = cap_task_finish(server->config, t->id, status, message, payload, error);
        if (rc != CAP_OK && rc != CAP_EINVAL)
            fprintf(stderr, "capsule: task %s: its outcome was not stored: %s\n", t->id, error);
    }
    pthread_mutex_lock(&server->lock);
    /* CAP_EINVAL: the stored task was not working any more: a cancellation
     * won (from this process, which then marks memory too, or from another
     * node) or another node took this one for dead.  The store has the
     * outcome: polls read it there. */
    if (rc == CAP_EINVAL) t->in_store = 1;
    if (rc != CAP_EINVAL && task_active(t->status)) {
        snprintf(t->status, sizeof t->status, "%s", status);
        free(t->status_message);
        t->status_message = message ? strdup(message) : NULL;
        t->updated_ms = now_ms();
        if (server->durable && rc == CAP_OK) {
            t->in_store = 1;
        } else { /* no store, or it failed: memory is all there is */
            t->payload = payload;
            if (payload) server->task_bytes += strlen(payload);
            payload = NULL;
            if (!server->durable) bound_task_bytes(server);
        }
        pthread_cond_broadcast(&server->task_ended); /* a legacy tasks/result waits */
    }
    pthread_mutex_unlock(&server->lock);
    free(payload);
}

/* When a round of the run asks for input (input_required: a host function
 * needs approval), the task parks as input_required with the round's
 * inputRequests until tasks/update answers them; the next round is the
 * same call retried with the answers and the round's requestState, as a
 * synchronous client would retry it (the code runs again from the start).
 * 1 when a next round is prepared in t->params; 0 when the run is over (a
 * result, an error, a cancellation, the server stopping, the TTL).  The
 * store keeps such a task `working`: a restart interrupts it like any run. */
static int wait_for_input(mcp_server *server, task *t, const cJSON *response) {
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(response, "result");
    const char *kind = mcp_argument_string(result, "resultType");
    const cJSON *requests = cJSON_GetObjectItemCaseSensitive(result, "inputRequests");
    const char *state = mcp_argument_string(result, "requestState");
    if (!kind || strcmp(kind, "input_required") != 0 || !cJSON_IsObject(requests) || !state)
        return 0;
    pthread_mutex_lock(&server->lock);
    if (strcmp(t->status, "working") != 0) { /* cancelled meanwhile */
        pthread_mutex_unlock(&server->lock);
        return 0;
    }
    snprintf(t->status, sizeof t->status, "input_required");
    cJSON_Delete(t->input_requests);
    t->input_requests = cJSON_Duplicate(requests, 1);
    cJSON_Delete(t->input_responses);
    t->input_responses = NULL;
    t->updated_ms = now_ms();
    int answered = 0;
    for (;;) {
        answered = t->input_responses != NULL;
        if (answered || t->client->cancelled || server->stopping ||
            strcmp(t->status, "input_required") != 0 || now_ms() > t->created_ms + TASK_TTL_MS)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&server->task_ended, &server->lock, &until);
    }
    cJSON *responses = t->input_responses;
    t->input_responses = NULL;
    cJSON_Delete(t->input_requests);
    t->input_requests = NULL;
    if (answered && strcmp(t->status, "input_required") == 0) {
        snprintf(t->status, sizeof t->status, "working");
        t->updated_ms = now_ms();
    }
    int again = answered && strcmp(t->status, "working") == 0 && !t->client->cancelled &&
                !server->stopping;
    pthread_mutex_unlock(&server->lock);
    if (!again) {
        cJSON_Delete(responses);
        return 0;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(t->params, "requestState");
    cJSON_DeleteItemFromObjectCaseSensitive(t->params, "inputResponses");
    cJSON_AddStringToObject(t->params, "requestState", state);
    cJSON_AddItemToObject(t->params, "inputResponses", responses);
    return 1;
}

/* A task's thread: the call runs as a synchronous one would, for the task's
 * own client, and its response becomes the task's outcome: a result is
 * `completed` (a tool result with isError included), a JSON-RPC error
 * `failed` with that error. */
static void *run_task(void *argument) {
    task *t = argument;
    mcp_server *server = t->client->server;
    /* The run in line: no tasks; elicitation if the client declared it, so
     * that a host function needing approval is asked (input_required). */
    cJSON *capabilities = cJSON_CreateObject();
    if (t->elicitation) cJSON_AddObjectToObject(capabilities, "elicitation");
    stateless_request request = {MCP_LOG_LEVEL_COUNT, capabilities};
    reply to = {capture_response, t, &request, 0}; /* its questions go through tasks/update */
    cJSON *id = cJSON_CreateString(t->id);
    cJSON *response = NULL;
    for (;;) {
        mcp_call_tool(server, t->client, id, &to, t->params);
        response = t->response ? cJSON_Parse(t->response) : NULL;
        if (!wait_for_input(server, t, response)) break;
        cJSON_Delete(response);
        response = NULL;
    }
    cJSON_Delete(id);
    cJSON_Delete(capabilities);

    cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(response, "result");
    cJSON *error = cJSON_DetachItemFromObjectCaseSensitive(response, "error");
    /* The inlined result stays a 2026-07-28 CallToolResult, resultType
     * "complete" included: the tasks client validates it as one. */
    pthread_mutex_lock(&server->lock);
    int stopping = server->stopping, cancelled = t->client->cancelled;
    pthread_mutex_unlock(&server->lock);
    if (stopping) {
        finish_task(server, t, "failed", interrupted_message, interrupted_payload());
    } else if (cancelled) {
        finish_task(server, t, "cancelled", "cancelled by tasks/cancel", NULL);
    } else if (cJSON_IsObject(result) && strcmp(mcp_argument_string(result, "resultType")
                                                    ? mcp_argument_string(result, "resultType")
                                                    : "complete",
                                                "input_required") == 0) {
        cJSON *rpc_error = cJSON_CreateObject();
        cJSON_AddNumberToObject(rpc_error, "code", RPC_INTERNAL_ERROR);
        cJSON_AddStringToObject(rpc_error, "message",
                                "the task's input request was not answered within its lifetime");
        finish_task(server, t, "failed", "the task's input request was not answered within its "
                    "lifetime", cJSON_PrintUnformatted(rpc_error));
        cJSON_Delete(rpc_error);
    } else if (cJSON_IsObject(result)) {
        finish_task(server, t, "completed", NULL, cJSON_PrintUnformatted(result));
    } else {
        if (!cJSON_IsObject(error)) {
            cJSON_Delete(error);
            error = cJSON_CreateObject();
            cJSON_AddNumberToObject(error, "code", RPC_INTERNAL_ERROR);
            cJSON_AddStringToObject(error, "message", "the run gave no response (out of memory?)");
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(error, "message");
        finish_task(server, t, "failed", cJSON_IsString(text) ? text->valuestring : NULL,
                    cJSON_PrintUnformatted(error));
    }
    cJSON_Delete(result);
    cJSON_Delete(error);
    cJSON_Delete(response);

    /* Detached under the lock first: tasks/cancel and mcp_stop_tasks reach the
     * client through the task, with the lock held. */
    pthread_mutex_lock(&server->lock);
    mcp_client *own = t->client;
    t->client = NULL;
    pthread_mutex_unlock(&server->lock);
    mcp_client_free(own); /* its last call ended: freed now */
    pthread_mutex_lock(&server->lock);
    t->running = 0;
    cJSON_Delete(t->params);
    t->params = NULL;
    free(t->response);
    t->response = NULL;
    server->tasks_running--;
    pthread_cond_broadcast(&server->task_ended);
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

/* Room for one more task in memory, with the lock held: expired finished
 * tasks go, then the oldest finished one if the table is still full.  0,
 * or -1 when every task in it is running. */
static int make_room_for_task(mcp_server *server) {
    int64_t now = now_ms();
    for (int i = 0; i < server->task_count;) {
        task *t = server->tasks[i];
        if (!t->running && t->created_ms + TASK_TTL_MS < now)
            forget_task(server, i);
        else
            i++;
    }
    if (server->task_count < MAX_TASKS) return 0;
    for (int i = 0; i < server->task_count; i++) { /* oldest first */
        if (!server->tasks[i]->running) {
            forget_task(server, i);
            return 0;
        }
    }
    return -1;
}

/* Answers a tools/call with a CreateTaskResult once the task exists (in
 * the store too, when there is one: a tasks/get right after must find it),
 * and starts the run on the task's own thread. */
void mcp_start_task(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                    const cJSON *params) {
    task *t = calloc(1, sizeof *t);
    if (!t || mcp_random_session_id(t->id) != 0 || !(t->principal = strdup(client->principal)) ||
        !(t->params = cJSON_Duplicate(params, 1)) ||
        !(t->client = mcp_client_new(server, client->principal))) {
        if (t && t->client) mcp_client_free(t->client);
        task_free(t);
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, "out of memory for a task");
        return;
    }
    /* The run reports nothing as it goes: no progress token, no log level. */
    cJSON_DeleteItemFromObjectCaseSensitive(t->params, "_meta");
    cJSON_DeleteItemFromObjectCaseSensitive(t->params, "task");
    t->legacy = !to->stateless;
    t->elicitation = to->stateless && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(
                                          to->stateless->capabilities, "elicitation"));
    snprintf(t->status, sizeof t->status, "working");
    t->created_ms = t->updated_ms = now_ms();
    t->running = 1;
    char error[CAP_ERROR_SIZE];
    if (server->durable &&
        cap_task_create(server->config, t->id, t->principal, TASK_TTL_MS, error) != CAP_OK) {
        mcp_client_free(t->client);
        task_free(t);
        char message[CAP_ERROR_SIZE + 64];
        snprintf(message, sizeof message, "the task could not be stored: %s", error);
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, message);
        return;
    }
    pthread_mutex_lock(&server->lock);
    int room = make_room_for_task(server) == 0;
    if (room) {
        server->tasks[server->task_count++] = t;
        server->tasks_running++;
    }
    pthread_mutex_unlock(&server->lock);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int started = room && pthread_create(&thread, &attributes, run_task, t) == 0;
    pthread_attr_destroy(&attributes);
    if (!started) {
        const char *why = room ? "no thread for the task" : "too many tasks running";
        if (room) {
            pthread_mutex_lock(&server->lock);
            server->tasks[--server->task_count] = NULL;
            server->tasks_running--;
            pthread_mutex_unlock(&server->lock);
        }
        if (server->durable) {
            char *payload = NULL;
            cJSON *rpc_error = cJSON_CreateObject();
            cJSON_AddNumberToObject(rpc_error, "code", RPC_SERVER_BUSY);
            cJSON_AddStringToObject(rpc_error, "message", why);
            payload = cJSON_PrintUnformatted(rpc_error);
            cJSON_Delete(rpc_error);
            cap_task_finish(server->config, t->id, "failed", why, payload, error);
            free(payload);
        }
        mcp_client_free(t->client);
        task_free(t);
        mcp_send_error(to, id, RPC_SERVER_BUSY, why);
        return;
    }
    cJSON *result = cJSON_CreateObject();
    if (t->legacy) { /* CreateTaskResult: {task: Task} */
        cJSON_AddItemToObject(result, "task",
                              legacy_task(t->id, "working", NULL, t->created_ms, t->created_ms));
    } else {
        cJSON_AddStringToObject(result, "resultType", "task");
        add_task_fields(result, t->id, "working", NULL, t->created_ms, t->created_ms, 0);
    }
    mcp_send_result(to, id, result);
}

/* At shutdown: running tasks are stopped (their workers killed) and end
 * failed as interrupted, in the store too; then every task is freed. */
void mcp_stop_tasks(mcp_server *server) {
    pthread_mutex_lock(&server->lock);
    server->stopping = 1;
    for (int i = 0; i < server->task_count; i++) {
        task *t = server->tasks[i];
        if (!t->running || !t->client) continue;
        t->client->cancelled = 1;
        for (int j = 0; j < MAX_IN_FLIGHT; j++)
            if (server->calls[j].client == t->client)
                cap_sandbox_cancel(server->slots[server->calls[j].slot].sandbox);
    }
    pthread_cond_broadcast(&server->slot_freed);
    while (server->tasks_running) pthread_cond_wait(&server->task_ended, &server->lock);
    while (server->task_count) forget_task(server, server->task_count - 1);
    pthread_mutex_unlock(&server->lock);
}

/* Cancels a task in memory, with the lock held: cancelled for every poll
 * from now on, and its run stopped as a timeout stops it (its worker is
 * killed), or never started if it still waits for a worker. */
static void mark_cancelled(mcp_server *server, task *t) {
    snprintf(t->status, sizeof t->status, "cancelled");
    free(t->status_message);
    t->status_message = strdup("cancelled by tasks/cancel");
    if (t->payload) server->task_bytes -= strlen(t->payload);
    free(t->payload);
    t->payload = NULL;
    t->in_store = 0;
    t->updated_ms = now_ms();
    if (t->client) {
        t->client->cancelled = 1;
        for (int j = 0; j < MAX_IN_FLIGHT; j++)
            if (server->calls[j].client == t->client)
                cap_sandbox_cancel(server->slots[server->calls[j].slot].sandbox);
    }
    pthread_cond_broadcast(&server->slot_freed); /* a queued run sees it */
    pthread_cond_broadcast(&server->task_ended);
}

/* tasks/get, tasks/update and tasks/cancel (2026-07-28 only).  A task is
 * found only by the principal that started it: another principal's id, an
 * unknown one and an expired one all get the same -32602. */
/* The taskId of a request to a tasks method, or NULL once the error is sent. */
static const char *task_id_argument(const cJSON *params, const reply *to, const cJSON *id) {
    const char *task_id = mcp_argument_string(params, "taskId");
    if (!task_id || !task_id[0] || strlen(task_id) > MAX_SESSION_NAME) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS,
                       "invalid params: taskId must be the string a tools/call returned");
        return NULL;
    }
    return task_id;
}

void mcp_task_method(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                     const char *method, const cJSON *params) {
    if (!declares_tasks(to->stateless->capabilities)) {
        cJSON *data = cJSON_CreateObject();
        cJSON *required = cJSON_AddObjectToObject(data, "requiredCapabilities");
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(required, "extensions"), TASKS_EXTENSION);
        mcp_send_error_data(
            to, id, RPC_MISSING_CAPABILITY,
            "missing required client capability: declare the extension " TASKS_EXTENSION
            " in clientCapabilities.extensions to use tasks/*",
            data);
        return;
    }
    const char *task_id = task_id_argument(params, to, id);
    if (!task_id) return;
    int updating = strcmp(method, "tasks/update") == 0;
    if (updating && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(params, "inputResponses"))) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS, "invalid params: inputResponses must be an object");
        return;
    }
    int cancelling = strcmp(method, "tasks/cancel") == 0;
    cJSON *detailed = NULL;
    int found = 0, cancel_in_store = 0;
    pthread_mutex_lock(&server->lock);
    for (int i = 0; i < server->task_count && !found; i++) {
        task *t = server->tasks[i];
        if (strcmp(t->id, task_id) != 0 || strcmp(t->principal, client->principal) != 0 ||
            t->created_ms + TASK_TTL_MS < now_ms() || t->in_store)
            continue; /* in_store: finished, and the store has it (below) */
        found = 1;
        if (cancelling && task_active(t->status)) {
            if (server->durable)
                cancel_in_store = 1; /* the store first, below */
            else
                mark_cancelled(server, t);
        }
        if (!cancelling && !updating) {
            detailed = detailed_task(t->id, t->status, t->status_message, t->payload, t->created_ms,
                                     t->updated_ms);
            if (t->input_requests && strcmp(t->status, "input_required") == 0)
                cJSON_AddItemToObject(detailed, "inputRequests",
                                      cJSON_Duplicate(t->input_requests, 1));
        }
        if (updating && t->input_requests && strcmp(t->status, "input_required") == 0) {
            /* Answers to what is outstanding go to the task's thread; any
             * other key is ignored, as the extension says. */
            const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
            const cJSON *answer;
            cJSON_ArrayForEach(answer, responses) {
                if (!cJSON_HasObjectItem(t->input_requests, answer->string)) continue;
                if (!t->input_responses) t->input_responses = cJSON_CreateObject();
                cJSON_DeleteItemFromObjectCaseSensitive(t->input_responses, answer->string);
                cJSON_AddItemToObject(t->input_responses, answer->string,
                                      cJSON_Duplicate(answer, 1));
            }
            pthread_cond_broadcast(&server->task_ended);
        }
    }
    pthread_mutex_unlock(&server->lock);
    char error[CAP_ERROR_SIZE] = "";
    if (!found && server->durable) { /* an earlier process's, or another node's */
        char *payload = interrupted_payload();
        cap_task stored;
        int rc = payload ? cap_task_get(server->config, task_id, interrupted_message, payload,
                                        &stored, error)
                         : CAP_ENOMEM;
        free(payload);
        if (rc == CAP_OK && strcmp(stored.principal, client->principal) == 0) {
            found = 1;
            if (cancelling && strcmp(stored.status, "working") == 0) {
                /* Running elsewhere (another node): marked cancelled for
                 * every poll; that node finishes the run and keeps it so. */
                if (cap_task_finish(server->config, task_id, "cancelled",
                                    "cancelled by tasks/cancel", NULL, error) != CAP_OK)
                    error[0] = '\0'; /* it ended meanwhile: the ack stands */
            } else if (!cancelling && !updating) {
                detailed = detailed_task(task_id, stored.status, stored.status_message,
                                         stored.payload_json, stored.created_at_ms,
                                         stored.updated_at_ms);
            }
        } else if (rc != CAP_OK && rc != CAP_EINVAL) {
            char message[CAP_ERROR_SIZE + 64];
            snprintf(message, sizeof message, "internal error: the store could not be read: %s",
                     error);
            mcp_send_error(to, id, RPC_INTERNAL_ERROR, message);
            return;
        }
        cap_task_clear(&stored);
    } else if (cancel_in_store) {
        /* Stored first; only then is it cancelled for this process's polls
         * and its run stopped.  A run that ended meanwhile keeps its outcome
         * (CAP_EINVAL), and the acknowledgement stands either way. */
        int rc = cap_task_finish(server->config, task_id, "cancelled", "cancelled by tasks/cancel",
                                 NULL, error);
        if (rc != CAP_OK && rc != CAP_EINVAL)
            fprintf(stderr, "capsule: task %s: its cancellation was not stored: %s\n", task_id,
                    error);
        pthread_mutex_lock(&server->lock);
        for (int i = 0; rc == CAP_OK && i < server->task_count; i++)
            if (strcmp(server->tasks[i]->id, task_id) == 0) mark_cancelled(server, server->tasks[i]);
        pthread_mutex_unlock(&server->lock);
    }
    if (!found) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS,
                       "invalid params: no such task (unknown, expired, or not this client's)");
    } else if (detailed) {
        mcp_send_result(to, id, detailed);
    } else {
        /* tasks/cancel and tasks/update: an empty acknowledgement (the
         * answers went to the task's thread above; the next poll shows
         * their effect). */
        mcp_send_result(to, id, NULL);
    }
}

/* A task as a legacy method sees it: copied out of memory or the store. */
typedef struct task_view {
    int found;
    char status[32];
    char *message, *payload;
    int64_t created_ms, updated_ms;
} task_view;

static void task_view_clear(task_view *view) {
    free(view->message);
    free(view->payload);
    memset(view, 0, sizeof *view);
}

/* Looks `task_id` up for `principal`: memory first, then the store (a
 * finished task, an earlier process's, another node's).  0, or -1 with a
 * store error in `error`. */
static int view_task(mcp_server *server, const char *principal, const char *task_id,
                     task_view *view, char *error) {
    memset(view, 0, sizeof *view);
    pthread_mutex_lock(&server->lock);
    for (int i = 0; i < server->task_count && !view->found; i++) {
        task *t = server->tasks[i];
        if (strcmp(t->id, task_id) != 0 || strcmp(t->principal, principal) != 0 ||
            t->created_ms + TASK_TTL_MS < now_ms() || t->in_store)
            continue;
        view->found = 1;
        snprintf(view->status, sizeof view->status, "%s", t->status);
        view->message = t->status_message ? strdup(t->status_message) : NULL;
        view->payload = t->payload ? strdup(t->payload) : NULL;
        view->created_ms = t->created_ms;
        view->updated_ms = t->updated_ms;
    }
    pthread_mutex_unlock(&server->lock);
    if (view->found || !server->durable) return 0;
    char *payload = interrupted_payload();
    cap_task stored;
    int rc = payload ? cap_task_get(server->config, task_id, interrupted_message, payload, &stored,
                                    error)
                     : CAP_ENOMEM;
    free(payload);
    if (rc == CAP_OK && strcmp(stored.principal, principal) == 0) {
        view->found = 1;
        snprintf(view->status, sizeof view->status, "%s", stored.status);
        view->message = stored.status_message;
        view->payload = stored.payload_json;
        stored.status_message = stored.payload_json = NULL;
        view->created_ms = stored.created_at_ms;
        view->updated_ms = stored.updated_at_ms;
    }
    cap_task_clear(&stored);
    return rc == CAP_OK || rc == CAP_EINVAL ? 0 : -1;
}

/* Answers a legacy tasks request whose task could not be read (the store
 * failed: `failed`, with `error`) or is not the client's to see: 1 when it
 * did, 0 when `view` holds the task. */
static int unviewable(const reply *to, const cJSON *id, int failed, const task_view *view,
                      const char *error) {
    if (failed) {
        char message[CAP_ERROR_SIZE + 64];
        snprintf(message, sizeof message, "internal error: the store could not be read: %s", error);
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, message);
        return 1;
    }
    if (!view->found) {
        mcp_send_error(to, id, RPC_INVALID_PARAMS,
                       "invalid params: no such task (unknown, expired, or not this client's)");
        return 1;
    }
    return 0;
}

/* tasks/result (2025-11-25): waits until the task ends, then answers what
 * the call itself would have: its result (with the related-task _meta), or
 * its JSON-RPC error.  The wait ends early when the request is cancelled or
 * its client goes. */
static void legacy_task_result(mcp_server *server, mcp_client *client, const cJSON *id,
                               const reply *to, const char *task_id) {
    char *id_text = cJSON_PrintUnformatted(id);
    task_waiter waiter = {client, id_text ? id_text : "", 0, NULL};
    pthread_mutex_lock(&server->lock);
    waiter.next = server->waiters;
    server->waiters = &waiter;
    pthread_mutex_unlock(&server->lock);
    task_view view;
    char error[CAP_ERROR_SIZE] = "";
    int failed = 0;
    for (;;) {
        if (view_task(server, client->principal, task_id, &view, error) != 0) {
            failed = 1;
            break;
        }
        if (!view.found || strcmp(view.status, "working") != 0) break;
        /* Woken by the task's end when it runs here; else (another node's)
         * polled at the task's own interval. */
        pthread_mutex_lock(&server->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += TASK_POLL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (!waiter.cancelled && !server->stopping)
            pthread_cond_timedwait(&server->task_ended, &server->lock, &until);
        int stop = waiter.cancelled || server->stopping;
        pthread_mutex_unlock(&server->lock);
        if (stop) break;
        task_view_clear(&view);
    }
    pthread_mutex_lock(&server->lock);
    for (task_waiter **at = &server->waiters; *at; at = &(*at)->next)
        if (*at == &waiter) {
            *at = waiter.next;
            break;
        }
    int cancelled = waiter.cancelled;
    pthread_mutex_unlock(&server->lock);
    if (unviewable(to, id, failed, &view, error)) {
        /* answered */
    } else if (cancelled) {
        /* notifications/cancelled: no response, as the specification asks. */
    } else if (strcmp(view.status, "working") == 0) {
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, "the server stopped before the task ended");
    } else if (strcmp(view.status, "completed") == 0) {
        cJSON *result = view.payload ? cJSON_Parse(view.payload) : NULL;
        if (!cJSON_IsObject(result)) {
            cJSON_Delete(result);
            mcp_send_error(to, id, RPC_INTERNAL_ERROR, "the task's stored result is unreadable");
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(result, "resultType");
            cJSON *meta = cJSON_GetObjectItemCaseSensitive(result, "_meta");
            if (!cJSON_IsObject(meta)) meta = cJSON_AddObjectToObject(result, "_meta");
            cJSON_AddStringToObject(
                cJSON_AddObjectToObject(meta, "io.modelcontextprotocol/related-task"), "taskId",
                task_id);
            mcp_send_result(to, id, result);
        }
    } else if (strcmp(view.status, "failed") == 0) {
        cJSON *rpc_error = view.payload ? cJSON_Parse(view.payload) : NULL;
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(rpc_error, "code");
        const char *message = mcp_argument_string(rpc_error, "message");
        mcp_send_error(to, id, cJSON_IsNumber(code) ? (int)code->valuedouble : RPC_INTERNAL_ERROR,
                       message ? message : "the task failed");
        cJSON_Delete(rpc_error);
    } else {
        mcp_send_error(to, id, RPC_INTERNAL_ERROR, "the task was cancelled: it has no result");
    }
    task_view_clear(&view);
    free(id_text);
}

/* tasks/get, tasks/result, tasks/list and tasks/cancel of 2025-11-25, where
 * tasks are in core: the same tasks, in that revision's shapes.  tasks/list
 * lists this process's tasks of the principal (a store's older ones are
 * reached by id). */
void mcp_legacy_task_method(mcp_server *server, mcp_client *client, const cJSON *id,
                            const reply *to, const char *method, const cJSON *params) {
    if (strcmp(method, "tasks/list") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON *list = cJSON_AddArrayToObject(result, "tasks");
        pthread_mutex_lock(&server->lock);
        for (int i = 0; i < server->task_count; i++) {
            task *t = server->tasks[i];
            if (strcmp(t->principal, client->principal) == 0 &&
                t->created_ms + TASK_TTL_MS >= now_ms())
                cJSON_AddItemToArray(list, legacy_task(t->id, t->status, t->status_message,
                                                       t->created_ms, t->updated_ms));
        }
        pthread_mutex_unlock(&server->lock);
        mcp_send_result(to, id, result);
        return;
    }
    const char *task_id = task_id_argument(params, to, id);
    if (!task_id) return;
    if (strcmp(method, "tasks/result") == 0) {
        legacy_task_result(server, client, id, to, task_id);
        return;
    }
    int cancelling = strcmp(method, "tasks/cancel") == 0;
    if (cancelling) {
        /* As in 2026-07-28, then the task as it is now; a finished task
         * cannot be cancelled in this revision: -32602. */
        task_view before;
        char error[CAP_ERROR_SIZE] = "";
        if (view_task(server, client->principal, task_id, &before, error) == 0 && before.found &&
            strcmp(before.status, "working") != 0) {
            char message[128];
            snprintf(message, sizeof message,
                     "invalid params: cannot cancel a task in terminal status %s", before.status);
            mcp_send_error(to, id, RPC_INVALID_PARAMS, message);
            task_view_clear(&before);
            return;
        }
        task_view_clear(&before);
        cJSON *stateless_capabilities = cJSON_CreateObject();
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(stateless_capabilities, "extensions"),
                                TASKS_EXTENSION);
        stateless_request request = {0, stateless_capabilities};
        reply quiet = {capture_nothing, NULL, &request, 0};
        mcp_task_method(server, client, id, &quiet, "tasks/cancel", params);
        cJSON_Delete(stateless_capabilities);
    }
    task_view view;
    char error[CAP_ERROR_SIZE] = "";
    int failed = view_task(server, client->principal, task_id, &view, error) != 0;
    if (!unviewable(to, id, failed, &view, error))
        mcp_send_result(
            to, id,
            legacy_task(task_id, view.status, view.message, view.created_ms, view.updated_ms));
    task_view_clear(&view);
}
