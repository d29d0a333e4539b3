/*
 * MCP over capsule: the pool of sandboxes that runs the tools, the clients,
 * and the dispatch of JSON-RPC messages in both eras (2025-03-26 to
 * 2025-11-25 after initialize; 2026-07-28 with per-request _meta).  The
 * transports (stdio.c, http.c) only move messages; the tools are in
 * tools.c and the files it names (server_internal.h lists them).
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *const protocol_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};

/* --- the pool ---------------------------------------------------------------- */

/* How often idle sandboxes are tidied: a parked or idle-expired session's
 * worker stops within about this long even when no call comes. */
#define TIDY_INTERVAL_MS 1000

/* The tidier thread: every TIDY_INTERVAL_MS, each sandbox no call is using
 * is taken like a call takes it (marked busy, so no call runs it at the
 * same time) and given cap_sandbox_tidy: sessions idle past the timeout are
 * parked and the workers of sessions parked for another node stop, on a
 * server that receives no calls too (a run does the same first, but only
 * when one comes). */
static void *tidy_sandboxes(void *argument) {
    mcp_server *server = argument;
    pthread_mutex_lock(&server->lock);
    while (!server->tidier_stop) {
        struct timespec wake;
        clock_gettime(CLOCK_MONOTONIC, &wake);
        wake.tv_nsec += (long)(TIDY_INTERVAL_MS % 1000) * 1000000;
        wake.tv_sec += TIDY_INTERVAL_MS / 1000 + wake.tv_nsec / 1000000000;
        wake.tv_nsec %= 1000000000;
        while (!server->tidier_stop &&
               pthread_cond_timedwait(&server->tidier_wake, &server->lock, &wake) == 0) {
        }
        for (int i = 0; i < server->slot_count && !server->tidier_stop; i++) {
            if (server->slots[i].busy) continue;
            server->slots[i].busy = 1;
            pthread_mutex_unlock(&server->lock);
            cap_sandbox_tidy(server->slots[i].sandbox);
            pthread_mutex_lock(&server->lock);
            server->slots[i].busy = 0;
            pthread_cond_broadcast(&server->slot_freed);
        }
    }
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

/* Started at the first call (mcp_acquire_slot, under the lock), not with
 * the server: the job runners' sandboxes are made after the server, and
 * their zygotes are forked then; a thread still starting at a fork (its
 * runtime's bookkeeping under locks) can leave the child deadlocked. */
static void start_tidier(mcp_server *server) {
    if (server->tidier_attempted) return;
    server->tidier_attempted = 1;
    /* Without the thread the sandboxes are still tidied at each run. */
    server->tidier_started = pthread_create(&server->tidier, NULL, tidy_sandboxes, server) == 0;
}

static void stop_tidier(mcp_server *server) {
    pthread_mutex_lock(&server->lock);
    server->tidier_stop = 1;
    pthread_cond_broadcast(&server->tidier_wake);
    pthread_mutex_unlock(&server->lock);
    if (server->tidier_started) pthread_join(server->tidier, NULL);
    server->tidier_started = 0;
}

int mcp_server_new(cap_config *config, const mcp_server_options *options, mcp_server **out,
                   char *error) {
    mcp_server *server = calloc(1, sizeof *server);
    int workers = options && options->workers > 0 ? options->workers : 2;
    if (!server || !(server->slots = calloc((size_t)workers, sizeof *server->slots))) {
        free(server);
        snprintf(error, CAP_ERROR_SIZE, "out of memory");
        return CAP_ENOMEM;
    }
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->slot_freed, NULL);
    pthread_cond_init(&server->task_ended, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&server->tidier_wake, &monotonic);
    pthread_condattr_destroy(&monotonic);
    if (getrandom(server->state_key, sizeof server->state_key, 0) !=
        (ssize_t)sizeof server->state_key) {
        mcp_server_free(server);
        snprintf(error, CAP_ERROR_SIZE, "no randomness for the requestState key");
        return CAP_EIO;
    }
    server->queue_limit = options && options->queue >= 0 ? options->queue : 16;
    if (options) server->limits = options->limits;
    if (options) server->installs_packages = options->installs_packages;
    server->config = config;
    server->durable = options && options->durable;
    cap_config_mcp_server_names(config, server->code_mode_servers,
                                sizeof server->code_mode_servers);
    for (; server->slot_count < workers; server->slot_count++) {
        int rc = cap_sandbox_new(config, &server->slots[server->slot_count].sandbox, error);
        if (rc != CAP_OK) {
            mcp_server_free(server);
            return rc;
        }
    }
    *out = server;
    return CAP_OK;
}

void mcp_server_free(mcp_server *server) {
    if (!server) return;
    stop_tidier(server);
    mcp_stop_tasks(server);
    for (int i = 0; i < server->slot_count; i++) cap_sandbox_free(server->slots[i].sandbox);
    for (int i = 0; i < server->route_count; i++) free(server->routes[i].session);
    free(server->slots);
    explicit_bzero(server->state_key, sizeof server->state_key);
    pthread_cond_destroy(&server->tidier_wake);
    pthread_cond_destroy(&server->task_ended);
    pthread_cond_destroy(&server->slot_freed);
    pthread_mutex_destroy(&server->lock);
    free(server);
}

static int find_route(const mcp_server *server, const char *session) {
    for (int i = 0; i < server->route_count; i++)
        if (strcmp(server->routes[i].session, session) == 0) return i;
    return -1;
}

/* The sandbox for a session: the one that holds it, or a new assignment. */
int mcp_route_session(mcp_server *server, const char *session) {
    int index = find_route(server, session);
    if (index >= 0) return server->routes[index].slot;
    int slot_index = server->next_slot++ % server->slot_count;
    if (server->route_count == MAX_ROUTES) { /* forget the oldest */
        free(server->routes[0].session);
        memmove(server->routes, server->routes + 1, (MAX_ROUTES - 1) * sizeof *server->routes);
        server->route_count--;
    }
    char *copy = strdup(session);
    if (copy) server->routes[server->route_count++] = (route){copy, slot_index};
    return slot_index;
}

/* Whether `session` exists: a sandbox holds it (a route), or, when
 * sessions are durable, the store has it (parked, or saved by an earlier
 * run of the server).  Called with the lock held. */
int mcp_session_known(const mcp_server *server, const char *session) {
    return find_route(server, session) >= 0 ||
           (server->durable && cap_session_exists(server->config, session));
}

void mcp_forget_route(mcp_server *server, const char *session) {
    int index = find_route(server, session);
    if (index < 0) return;
    free(server->routes[index].session);
    server->routes[index] = server->routes[--server->route_count];
}

/* Takes a free sandbox (that of `session`, if given) and registers the call
 * so that it can be cancelled: the slot index, -1 when the queue is full,
 * or -2 when the client is a cancelled task's (before or while it waited). */
int mcp_acquire_slot(mcp_server *server, mcp_client *client, const char *id, const char *session) {
    pthread_mutex_lock(&server->lock);
    if (!server->tidier_stop) start_tidier(server);
    int wanted = session ? mcp_route_session(server, session) : -1;
    int chosen = -1;
    for (;;) {
        if (client->cancelled) {
            pthread_mutex_unlock(&server->lock);
            return -2;
        }
        for (int i = 0; i < server->slot_count && chosen < 0; i++)
            if (!server->slots[i].busy && (wanted < 0 || wanted == i)) chosen = i;
        if (chosen >= 0) break;
        if (server->waiting >= server->queue_limit) {
            pthread_mutex_unlock(&server->lock);
            return -1;
        }
        server->waiting++;
        pthread_cond_wait(&server->slot_freed, &server->lock);
        server->waiting--;
    }
    server->slots[chosen].busy = 1;
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        if (!server->calls[i].client) {
            server->calls[i] = (in_flight){client, id ? strdup(id) : NULL, chosen};
            break;
        }
    }
    pthread_mutex_unlock(&server->lock);
    return chosen;
}

void mcp_release_slot(mcp_server *server, mcp_client *client, int slot_index) {
    pthread_mutex_lock(&server->lock);
    server->slots[slot_index].busy = 0;
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        if (server->calls[i].client == client && server->calls[i].slot == slot_index) {
            free(server->calls[i].id);
            server->calls[i] = (in_flight){0};
            break;
        }
    }
    pthread_cond_broadcast(&server->slot_freed);
    pthread_mutex_unlock(&server->lock);
}

static void cancel_matching(mcp_server *server, mcp_client *client, const char *id) {
    pthread_mutex_lock(&server->lock);
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        in_flight *call = &server->calls[i];
        if (call->client == client && (!id || (call->id && strcmp(call->id, id) == 0)))
            cap_sandbox_cancel(server->slots[call->slot].sandbox);
    }
    for (task_waiter *waiter = server->waiters; waiter; waiter = waiter->next)
        if (waiter->client == client && (!id || strcmp(waiter->id, id) == 0)) waiter->cancelled = 1;
    pthread_cond_broadcast(&server->task_ended);
    pthread_mutex_unlock(&server->lock);
}

/* A cancelled call also stops waiting for the client's answer to its
 * questions (approval, sampling), so that it ends now, not at a timeout. */
void mcp_cancel_request(mcp_server *server, mcp_client *client, const char *id) {
    if (!id) return;
    cancel_matching(server, client, id);
    ask_cancel(client->asks, id);
}

void mcp_cancel_client(mcp_server *server, mcp_client *client) {
    cancel_matching(server, client, NULL);
    ask_close(client->asks);
}

/* --- clients ------------------------------------------------------------------ */

mcp_client *mcp_client_new(mcp_server *server, const char *principal) {
    mcp_client *client = calloc(1, sizeof *client);
    if (client && (!(client->principal = strdup(principal)) || !(client->asks = ask_table_new()))) {
        free(client->principal);
        free(client);
        return NULL;
    }
    if (client) {
        client->server = server;
        client->log_level = 1; /* info, until the client sets a level */
    }
    return client;
}

static void client_destroy(mcp_client *client) {
    ask_table_free(client->asks);
    free(client->principal);
    free(client);
}

void mcp_client_free(mcp_client *client) {
    if (!client) return;
    mcp_server *server = client->server;
    cancel_matching(server, client, NULL);
    ask_close(client->asks);
    pthread_mutex_lock(&server->lock);
    int last = client->calls == 0;
    client->freed = 1;
    pthread_mutex_unlock(&server->lock);
    if (last) client_destroy(client);
}

void mcp_client_call_begins(mcp_client *client) {
    pthread_mutex_lock(&client->server->lock);
    client->calls++;
    pthread_mutex_unlock(&client->server->lock);
}

void mcp_client_call_ends(mcp_client *client) {
    mcp_server *server = client->server;
    pthread_mutex_lock(&server->lock);
    int free_now = --client->calls == 0 && client->freed;
    pthread_mutex_unlock(&server->lock);
    if (free_now) client_destroy(client);
}

int mcp_protocol_supported(const char *version) {
    for (size_t i = 0; i < sizeof protocol_versions / sizeof *protocol_versions; i++)
        if (strcmp(version, protocol_versions[i]) == 0) return 1;
    return 0;
}

/* --- dispatch ---------------------------------------------------------------------------- */

/* What a 2026-07-28 client may call: everything else, including the
 * legacy revisions' initialize, ping and logging/setLevel, is not found. */
static const char *const stateless_methods[] = {"server/discover", "tools/list", "tools/call",
                                                "tasks/get", "tasks/update", "tasks/cancel"};

static int stateless_method_known(const char *method) {
    for (size_t i = 0; i < sizeof stateless_methods / sizeof *stateless_methods; i++)
        if (strcmp(method, stateless_methods[i]) == 0) return 1;
    return 0;
}

/* `header` equals `expected`, but for the whitespace HTTP allows around a
 * field value; case matters (method names and tool names are case-sensitive). */
static int header_equals(const char *header, const char *expected) {
    while (*header == ' ' || *header == '\t') header++;
    size_t length = strlen(header);
    while (length && (header[length - 1] == ' ' || header[length - 1] == '\t')) length--;
    return strlen(expected) == length && memcmp(header, expected, length) == 0;
}

/* The value a request's Mcp-Name header must repeat, or NULL if it has none. */
static const char *request_name(const char *method, const cJSON *params) {
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0)
        return mcp_argument_string(params, "name");
    if (strcmp(method, "resources/read") == 0) return mcp_argument_string(params, "uri");
    /* The Tasks extension's own: load balancers route on the task id. */
    if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/update") == 0 ||
        strcmp(method, "tasks/cancel") == 0)
        return mcp_argument_string(params, "taskId");
    return NULL;
}

/* A 2026-07-28 request's mcp_envelope, in the order the specification's
 * errors imply: its headers' presence, its _meta, headers against body,
 * the version, the method.  0, or the HTTP status of the error sent.
 * `headers` is NULL off HTTP. */
static int check_stateless(const reply *to, const cJSON *id, const char *method,
                           const cJSON *params, const mcp_http_headers *headers) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(meta, META_PROTOCOL);
    const cJSON *capabilities = cJSON_GetObjectItemCaseSensitive(meta, META_CAPABILITIES);
    if (headers && !headers->protocol_version) {
        mcp_send_error(to, id, RPC_HEADER_MISMATCH,
                       "header mismatch: the MCP-Protocol-Version header is missing");
        return 400;
    }
    if (!cJSON_IsString(version) || !cJSON_IsObject(capabilities)) {
        mcp_send_error(
            to, id, RPC_INVALID_PARAMS,
            "invalid params: a 2026-07-28 request carries params._meta with \"" META_PROTOCOL
            "\" (a string) and \"" META_CAPABILITIES "\" (an object)");
        return 400;
    }
    if (headers && !header_equals(headers->protocol_version, version->valuestring)) {
        mcp_send_error(to, id, RPC_HEADER_MISMATCH,
                       "header mismatch: MCP-Protocol-Version differs from params._meta's "
                       "protocol version");
        return 400;
    }
    if (strcmp(version->valuestring, MCP_STATELESS_PROTOCOL) != 0) {
        cJSON *data = cJSON_CreateObject();
        cJSON *supported = cJSON_AddArrayToObject(data, "supported");
        cJSON_AddItemToArray(supported, cJSON_CreateString(MCP_STATELESS_PROTOCOL));
        cJSON_AddStringToObject(data, "requested", version->valuestring);
        mcp_send_error_data(
            to, id, RPC_UNSUPPORTED_VERSION,
            "unsupported protocol version: per-request _meta speaks " MCP_STATELESS_PROTOCOL
            " (2025-03-26 to 2025-11-25 are spoken after initialize)",
            data);
        return 400;
    }
    if (headers) {
        const char *name = request_name(method, params);
        if (!headers->method || !header_equals(headers->method, method)) {
            mcp_send_error(to, id, RPC_HEADER_MISMATCH,
                           "header mismatch: the Mcp-Method header must repeat the body's method");
            return 400;
        }
        if (name && (!headers->name || !header_equals(headers->name, name))) {
            mcp_send_error(
                to, id, RPC_HEADER_MISMATCH,
                "header mismatch: the Mcp-Name header must repeat the body's params.name "
                "(params.uri for resources/read)");
            return 400;
        }
    }
    if (!stateless_method_known(method)) {
        mcp_send_error(
            to, id, RPC_METHOD_NOT_FOUND,
            "method not found: in 2026-07-28 capsule answers server/discover, tools/list, "
            "tools/call and (with the " TASKS_EXTENSION " extension) tasks/get, "
            "tasks/update and tasks/cancel");
        return 404;
    }
    return 0;
}

int mcp_check_stateless(const char *text, size_t size, const mcp_http_headers *headers,
                        mcp_send_fn send, void *context) {
    reply to = {send, context, NULL, 0};
    cJSON *message = cJSON_ParseWithLength(text, size);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(message, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(message, "params");
    int status = 0;
    if (cJSON_IsObject(message) && cJSON_IsString(method) && mcp_is_valid_id(id) &&
        (!params || cJSON_IsObject(params)))
        status = check_stateless(&to, id, method->valuestring, params, headers);
    cJSON_Delete(message);
    return status;
}

static void server_info(cJSON *info) {
    cJSON_AddStringToObject(info, "name", "capsule");
    cJSON_AddStringToObject(info, "title", "capsule: Python in a WebAssembly sandbox");
    cJSON_AddStringToObject(info, "version", CAP_VERSION);
}

static const char instructions[] =
    "Call run_python_code to run Python 3.11 in a sandbox without network or host files. Use a "
    "session (create_session) to keep state between calls.";

/* A 2026-07-28 request: its client is described by its _meta alone. */
static void handle_stateless(mcp_server *server, mcp_client *client, const reply *plain,
                             const cJSON *id, const char *method, const cJSON *params) {
    if (check_stateless(plain, id, method, params, NULL)) return;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(meta, META_LOG_LEVEL);
    stateless_request request = {MCP_LOG_LEVEL_COUNT,
                                 cJSON_GetObjectItemCaseSensitive(meta, META_CAPABILITIES)};
    if (cJSON_IsString(level) && mcp_level_index(level->valuestring) >= 0)
        request.log_level = mcp_level_index(level->valuestring);
    reply to = *plain;
    to.stateless = &request;
    if (strcmp(method, "server/discover") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON *versions = cJSON_AddArrayToObject(result, "supportedVersions");
        cJSON_AddItemToArray(versions, cJSON_CreateString(MCP_STATELESS_PROTOCOL));
        cJSON *capabilities = cJSON_AddObjectToObject(result, "capabilities");
        cJSON_AddObjectToObject(capabilities, "tools");
        cJSON_AddObjectToObject(capabilities, "logging");
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(capabilities, "extensions"),
                                TASKS_EXTENSION);
        cJSON_AddStringToObject(result, "instructions", instructions);
        cJSON_AddNumberToObject(result, "ttlMs", TOOLS_LIST_TTL_MS);
        cJSON_AddStringToObject(result, "cacheScope", "public");
        cJSON *result_meta = cJSON_AddObjectToObject(result, "_meta");
        server_info(cJSON_AddObjectToObject(result_meta, META_SERVER_INFO));
        mcp_send_result(&to, id, result);
    } else if (strcmp(method, "tools/list") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON_AddItemToObject(result, "tools", mcp_tool_definitions(server));
        /* The same for every client, changing only with the server's flags. */
        cJSON_AddNumberToObject(result, "ttlMs", TOOLS_LIST_TTL_MS);
        cJSON_AddStringToObject(result, "cacheScope", "public");
        mcp_send_result(&to, id, result);
    } else if (strncmp(method, "tasks/", 6) == 0) {
        mcp_task_method(server, client, id, &to, method, params);
    } else {
        mcp_call_tool(server, client, id, &to, params);
    }
}

/* The version agreed and the client's capabilities are remembered: the
 * server asks (ask.h) only what the client said it answers.  Elicitation
 * counts when it allows form mode: {} (form, before 2025-11-25 the only
 * one) or {"form": {...}}, not {"url": {...}} alone. */
static void initialize(mcp_client *client, const reply *to, const cJSON *id,
                       const cJSON *params) {
    const char *requested = mcp_argument_string(params, "protocolVersion");
    const char *agreed =
        requested && mcp_protocol_supported(requested) ? requested : MCP_LATEST_PROTOCOL;
    const cJSON *declared = cJSON_GetObjectItemCaseSensitive(params, "capabilities");
    const cJSON *elicitation = cJSON_GetObjectItemCaseSensitive(declared, "elicitation");
    if (client) {
        snprintf(client->protocol, sizeof client->protocol, "%s", agreed);
        client->can_elicit =
            cJSON_IsObject(elicitation) &&
            (!cJSON_HasObjectItem(elicitation, "url") || cJSON_HasObjectItem(elicitation, "form"));
        client->can_sample =
            cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(declared, "sampling"));
    }
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "protocolVersion", agreed);
    cJSON *capabilities = cJSON_AddObjectToObject(result, "capabilities");
    cJSON *tools = cJSON_AddObjectToObject(capabilities, "tools");
    cJSON_AddBoolToObject(tools, "listChanged", 0);
    cJSON_AddObjectToObject(capabilities, "logging");
    /* 2025-11-25's tasks (in core): tools/call may be task-augmented. */
    cJSON *tasks = cJSON_AddObjectToObject(capabilities, "tasks");
    cJSON_AddObjectToObject(tasks, "list");
    cJSON_AddObjectToObject(tasks, "cancel");
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(tasks, "requests"),
                                                    "tools"),
                            "call");
    server_info(cJSON_AddObjectToObject(result, "serverInfo"));
    cJSON_AddStringToObject(result, "instructions", instructions);
    mcp_send_result(to, id, result);
}

void mcp_handle(mcp_server *server, mcp_client *client, const char *message_text, size_t size,
                mcp_send_fn send, void *context) {
    mcp_handle_streaming(server, client, message_text, size, send, context, 0);
}

void mcp_handle_streaming(mcp_server *server, mcp_client *client, const char *message_text,
                          size_t size, mcp_send_fn send, void *context, int can_ask) {
    reply to = {send, context, NULL, can_ask};
    cJSON *message = cJSON_ParseWithLength(message_text, size);
    if (!message) {
        mcp_send_error(&to, NULL, RPC_PARSE_ERROR, "parse error: not valid JSON");
        return;
    }
    if (cJSON_IsArray(message)) {
        mcp_send_error(&to, NULL, RPC_INVALID_REQUEST, "batches are not supported (MCP 2025-06-18)");
        cJSON_Delete(message);
        return;
    }
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(message, "jsonrpc");
    const cJSON *method_item = cJSON_GetObjectItemCaseSensitive(message, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(message, "params");
    int valid = cJSON_IsObject(message) && cJSON_IsString(version) &&
                strcmp(version->valuestring, "2.0") == 0 && (!id || mcp_is_valid_id(id));
    if (valid && !method_item && id) { /* a response to one of our requests (ask.h) */
        if (client) ask_answer(client->asks, message);
        cJSON_Delete(message);
        return;
    }
    if (!valid || !cJSON_IsString(method_item) || (params && !cJSON_IsObject(params))) {
        mcp_send_error(&to, mcp_is_valid_id(id) ? id : NULL, RPC_INVALID_REQUEST,
                       "invalid request: expected a JSON-RPC 2.0 object with a string method and "
                       "object params");
        cJSON_Delete(message);
        return;
    }
    const char *method = method_item->valuestring;
    if (!id) { /* notifications: never answered */
        if (strcmp(method, "notifications/cancelled") == 0) {
            const cJSON *request = cJSON_GetObjectItemCaseSensitive(params, "requestId");
            if (mcp_is_valid_id(request)) {
                char *request_text = cJSON_PrintUnformatted(request);
                mcp_cancel_request(server, client, request_text);
                free(request_text);
            }
        }
        cJSON_Delete(message);
        return;
    }
    if (cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(params, "_meta"), META_PROTOCOL)) {
        handle_stateless(server, client, &to, id, method, params);
    } else if (strcmp(method, "initialize") == 0) {
        initialize(client, &to, id, params);
    } else if (strcmp(method, "ping") == 0) {
        mcp_send_result(&to, id, NULL);
    } else if (strcmp(method, "tools/list") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON *tools = mcp_tool_definitions(server);
        /* run_python_code may run as a task (2025-11-25's tasks in core). */
        cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_GetArrayItem(tools, 0), "execution"),
                                "taskSupport", "optional");
        cJSON_AddItemToObject(result, "tools", tools);
        mcp_send_result(&to, id, result);
    } else if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/result") == 0 ||
               strcmp(method, "tasks/list") == 0 || strcmp(method, "tasks/cancel") == 0) {
        mcp_legacy_task_method(server, client, id, &to, method, params);
    } else if (strcmp(method, "tools/call") == 0) {
        mcp_call_tool(server, client, id, &to, params);
    } else if (strcmp(method, "logging/setLevel") == 0) {
        const char *level = mcp_argument_string(params, "level");
        int index = level ? mcp_level_index(level) : -1;
        if (index < 0) {
            mcp_send_error(&to, id, RPC_INVALID_PARAMS,
                           "level must be one of debug, info, notice, "
                           "warning, error, critical, alert, emergency");
        } else {
            client->log_level = index;
            mcp_send_result(&to, id, NULL);
        }
    } else {
        mcp_send_error(&to, id, RPC_METHOD_NOT_FOUND, "method not found");
    }
    cJSON_Delete(message);
}
