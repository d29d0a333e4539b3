/*
 * MCP over capsule: JSON-RPC dispatch, the tools, and the pool of sandboxes
 * that runs them.  The transports (stdio.c, http.c) only move messages.
 *
 * The result text of run_python_code is mcp-run-python's, so that agents
 * prompted for that server work unchanged: lines of <status>, then
 * <dependencies>, <output>, <return_value> or <error> when present, each
 * body escaped against its own closing tag.
 */
#include "mcp.h"

#include "../help/describe_media.h"
#include "../sandbox/buffer.h" /* utf8_sanitize: JSON strings must be UTF-8 */
#include "../help/describe.h" /* describe_read_program: the session reads the file */
#include "ask.h"
#include "describe_client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
    RPC_SERVER_BUSY = -32000, /* implementation-defined range */
    /* 2026-07-28 */
    RPC_HEADER_MISMATCH = -32020,
    RPC_MISSING_CAPABILITY = -32021,
    RPC_UNSUPPORTED_VERSION = -32022,
};

#define META_PROTOCOL "io.modelcontextprotocol/protocolVersion"
#define META_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define META_LOG_LEVEL "io.modelcontextprotocol/logLevel"
#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"
#define STATE_KEY_BYTES 32          /* HMAC-SHA256 key of requestState */
#define STATE_SECONDS 600           /* a requestState is good for ten minutes */
#define MAX_APPROVALS 32            /* host-function calls approved in one requestState */
#define TOOLS_LIST_TTL_MS 300000    /* tools and capabilities change only with the server's flags */
#define APPROVAL_SECONDS 120.0      /* a person reads and answers an elicitation */
#define SAMPLING_SECONDS 120.0      /* the client's model answers describe */

/* The Tasks extension (SEP-2663): a run_python_code call from a client that
 * declares it runs in the background; the client polls tasks/get. */
#define TASKS_EXTENSION "io.modelcontextprotocol/tasks"
#define TASK_TTL_MS 3600000  /* a task can be polled for an hour after it started */
#define TASK_POLL_MS 250     /* the polling interval suggested to clients */
#define MAX_TASKS 1024       /* kept in memory; beyond, the oldest finished are dropped */
#define MAX_TASK_BYTES (256u << 20) /* their results in memory without a store: the same */

#define MAX_ROUTES 1024   /* Python sessions the server remembers */
#define MAX_IN_FLIGHT 1024
#define MAX_FILES 64
#define MAX_SESSION_NAME 128 /* characters of a client's session_id: the sandbox quotes 200 */
#define SESSION_ID_BYTES 16  /* of randomness in a minted session id: 128 bits */

static const char *const protocol_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};

/* RFC 5424 severities, as MCP's logging levels. */
static const char *const log_levels[] = {"debug",    "info",  "notice", "warning",
                                         "error",    "critical", "alert", "emergency"};

typedef struct route {
    char *session; /* a Python session id */
    int slot;      /* the sandbox that holds it */
} route;

typedef struct in_flight {
    mcp_client *client;
    char *id; /* the request id as JSON text */
    int slot;
} in_flight;

/* A legacy tasks/result waiting for its task to end: cancelling the request
 * (or its client going) ends the wait. */
typedef struct task_waiter {
    const mcp_client *client;
    const char *id; /* the request id as JSON text */
    int cancelled;
    struct task_waiter *next;
} task_waiter;

typedef struct slot {
    cap_sandbox *sandbox;
    int busy;
} slot;

/* A task (the Tasks extension): a run_python_code call running, or run, in
 * the background for a principal.  In memory while this process lives (and
 * until it expires); with a store, also a row there (cap_task_*), which is
 * what a later process answers from. */
typedef struct task {
    char id[2 * SESSION_ID_BYTES + 1]; /* 128 random bits, hex */
    char *principal;
    char status[16];          /* working, completed, failed, cancelled */
    char *status_message;     /* or NULL */
    char *payload;            /* JSON text: the tool result, or the JSON-RPC error */
    int64_t created_ms, updated_ms;
    int running;              /* its thread has not finished */
    int legacy;               /* started by a 2025-11-25 client: its wire shape (tasks in core) */
    int in_store;             /* its outcome is in the store, and only there: read it from there */
    struct mcp_client *client; /* the run's own, so that tasks/cancel stops this run alone */
    cJSON *params;            /* the tools/call params the thread runs */
    char *response;           /* the run's JSON-RPC response, as the thread captured it */
    int elicitation;          /* its client declared elicitation: approvals are asked */
    cJSON *input_requests;    /* input_required: what is asked (an object), or NULL */
    cJSON *input_responses;   /* tasks/update's answers to them, for the thread */
} task;

struct mcp_server {
    pthread_mutex_t lock;
    pthread_cond_t slot_freed;
    slot *slots;
    int slot_count;
    int waiting, queue_limit;
    int next_slot; /* round-robin for new sessions */
    cap_limits limits;
    int installs_packages;
    char code_mode_servers[1024]; /* "" without code mode: their names, for the tool's text */
    route routes[MAX_ROUTES];
    int route_count;
    in_flight calls[MAX_IN_FLIGHT];
    cap_config *config; /* the sandboxes'; with a store, sessions are durable */
    int durable;
    unsigned char state_key[STATE_KEY_BYTES]; /* signs requestState; random per server */
    task *tasks[MAX_TASKS];
    int task_count;
    size_t task_bytes;        /* of the tasks' payloads held in memory */
    int tasks_running;        /* threads of tasks not yet finished */
    pthread_cond_t task_ended; /* also: a task's status changed, a waiter was cancelled */
    task_waiter *waiters;
    int stopping;             /* mcp_server_free: tasks still running are interrupted */
    /* For /metrics (mcp_server_metrics), under `lock`. */
    uint64_t runs[CAP_STATUS_CANCELLED + 1]; /* finished runs, by status */
    uint64_t runs_refused;                   /* every worker busy and the queue full */
};

struct mcp_client {
    mcp_server *server;
    char *principal; /* who the client acts for: its Python sessions are its own */
    int log_level; /* index in log_levels: messages below it are not sent */
    int calls;     /* in progress */
    int freed;     /* mcp_client_free was called: the last call frees it */
    /* What initialize said (legacy revisions): the version agreed, and
     * whether the client takes elicitation (form mode) and sampling
     * requests; and those requests still waiting for an answer. */
    char protocol[16];
    int can_elicit, can_sample;
    ask_table *asks;
    int cancelled; /* a task's client whose task was cancelled: it takes no sandbox any more */
};

/* --- the pool ---------------------------------------------------------------- */

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

static void stop_tasks(mcp_server *server);

void mcp_server_free(mcp_server *server) {
    if (!server) return;
    stop_tasks(server);
    for (int i = 0; i < server->slot_count; i++) cap_sandbox_free(server->slots[i].sandbox);
    for (int i = 0; i < server->route_count; i++) free(server->routes[i].session);
    free(server->slots);
    OPENSSL_cleanse(server->state_key, sizeof server->state_key);
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
static int route_session(mcp_server *server, const char *session) {
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
static int session_known(const mcp_server *server, const char *session) {
    return find_route(server, session) >= 0 ||
           (server->durable && cap_session_exists(server->config, session));
}

static void forget_route(mcp_server *server, const char *session) {
    int index = find_route(server, session);
    if (index < 0) return;
    free(server->routes[index].session);
    server->routes[index] = server->routes[--server->route_count];
}

/* Takes a free sandbox (that of `session`, if given) and registers the call
 * so that it can be cancelled: the slot index, -1 when the queue is full,
 * or -2 when the client is a cancelled task's (before or while it waited). */
static int acquire_slot(mcp_server *server, mcp_client *client, const char *id,
                        const char *session) {
    pthread_mutex_lock(&server->lock);
    int wanted = session ? route_session(server, session) : -1;
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

static void release_slot(mcp_server *server, mcp_client *client, int slot_index) {
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

static void client_call_begins(mcp_client *client) {
    pthread_mutex_lock(&client->server->lock);
    client->calls++;
    pthread_mutex_unlock(&client->server->lock);
}

static void client_call_ends(mcp_client *client) {
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

/* --- JSON-RPC plumbing ---------------------------------------------------------- */

/* What a 2026-07-28 request said about its client in _meta. */
typedef struct stateless_request {
    int log_level;                   /* index in log_levels; past the end: no logs */
    const cJSON *capabilities;       /* clientCapabilities, an object */
} stateless_request;

typedef struct reply {
    mcp_send_fn send;
    void *context;
    const stateless_request *stateless; /* NULL for the legacy revisions */
    int can_ask; /* `send` carries the server's requests to the client (ask.h) */
} reply;

static void send_json(const reply *to, cJSON *message) {
    char *text = message ? cJSON_PrintUnformatted(message) : NULL;
    if (text) to->send(to->context, text);
    free(text);
    cJSON_Delete(message);
}

static cJSON *envelope(void) {
    cJSON *message = cJSON_CreateObject();
    cJSON_AddStringToObject(message, "jsonrpc", "2.0");
    return message;
}

/* In 2026-07-28 every result says what it is: "complete" unless the
 * handler made it something else (input_required). */
static void send_result(const reply *to, const cJSON *id, cJSON *result) {
    if (!result) result = cJSON_CreateObject();
    if (to->stateless && !cJSON_HasObjectItem(result, "resultType"))
        cJSON_AddStringToObject(result, "resultType", "complete");
    cJSON *message = envelope();
    cJSON_AddItemToObject(message, "id", cJSON_Duplicate(id, 1));
    cJSON_AddItemToObject(message, "result", result);
    send_json(to, message);
}

/* `data` (or NULL) passes to the message. */
static void send_error_data(const reply *to, const cJSON *id, int code, const char *text,
                            cJSON *data) {
    cJSON *message = envelope();
    cJSON_AddItemToObject(message, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *error = cJSON_AddObjectToObject(message, "error");
    cJSON_AddNumberToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", text);
    if (data) cJSON_AddItemToObject(error, "data", data);
    send_json(to, message);
}

static void send_error(const reply *to, const cJSON *id, int code, const char *text) {
    send_error_data(to, id, code, text, NULL);
}

static void send_notification(const reply *to, const char *method, cJSON *params) {
    cJSON *message = envelope();
    cJSON_AddStringToObject(message, "method", method);
    cJSON_AddItemToObject(message, "params", params);
    send_json(to, message);
}

static int is_valid_id(const cJSON *id) {
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
        info->kind = is_valid_id(id) ? MCP_MESSAGE_REQUEST : MCP_MESSAGE_INVALID;
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

typedef struct text {
    char *data;
    size_t size, capacity;
} text;

static void text_append(text *t, const char *data, size_t size) {
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

static void text_append_string(text *t, const char *s) {
    text_append(t, s, strlen(s));
}

/* A copy of `message` (NULL: NULL) in which the internal, principal-scoped
 * name of a session reads as the name its client gave: the sandbox's
 * messages name the session it knows. */
static char *unscope(const char *message, const char *scoped, const char *name) {
    if (!message) return NULL;
    text out = {0};
    size_t scoped_length = scoped ? strlen(scoped) : 0;
    const char *at;
    while (scoped_length && (at = strstr(message, scoped))) {
        text_append(&out, message, (size_t)(at - message));
        text_append_string(&out, name);
        message = at + scoped_length;
    }
    text_append_string(&out, message);
    return out.data ? out.data : strdup("");
}

static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* mcp-run-python's escapeClosing: every `</?\s*TAG(.*?>)?` in `body` (case
 * insensitive, `.` not crossing a newline) has its < and > escaped, so code
 * output cannot close or open the tag it is reported in. */
static void append_escaped(text *out, const char *body, size_t size, const char *tag) {
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
            text_append(out, body + i, 1);
            i++;
            continue;
        }
        for (; i < end; i++) {
            if (body[i] == '<') text_append_string(out, "&lt;");
            else if (body[i] == '>') text_append_string(out, "&gt;");
            else text_append(out, body + i, 1);
        }
    }
}

static char *base64_encode(const unsigned char *data, size_t size) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((size + 2) / 3) + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < size) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < size) v |= data[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < size ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int base64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* NULL if `in` is not base64. */
static unsigned char *base64_decode(const char *in, size_t *size) {
    size_t length = strlen(in);
    unsigned char *out = malloc(length / 4 * 3 + 3);
    if (!out) return NULL;
    uint32_t accumulator = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < length; i++) {
        if (in[i] == '=' || in[i] == '\n' || in[i] == '\r') continue;
        int v = base64_value((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        accumulator = (accumulator << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(accumulator >> bits);
        }
    }
    *size = o;
    return out;
}

/* --- running code ---------------------------------------------------------------------- */

/* Host-function approval over input_required (2026-07-28): the calls the
 * client approved or declined in earlier rounds, and the first call of this
 * run that needs an answer.  A [function, arguments] pair each. */
typedef struct approval_state {
    int can_ask;       /* the client declared elicitation: unapproved calls are asked */
    cJSON *approved;   /* array of pairs */
    cJSON *declined;   /* array of pairs */
    char *ask_function, *ask_arguments; /* the call to ask about, once refused */
} approval_state;

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

static int level_index(const char *name) {
    for (int i = 0; i < (int)(sizeof log_levels / sizeof *log_levels); i++)
        if (strcmp(name, log_levels[i]) == 0) return i;
    return -1;
}

static void send_log(call_state *call, int level, const char *logger, const char *data) {
    if (level < call->log_level) return;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "level", log_levels[level]);
    cJSON_AddStringToObject(params, "logger", logger);
    cJSON_AddStringToObject(params, "data", data);
    send_notification(call->to, "notifications/message", params);
}

static void send_progress(call_state *call, const char *message) {
    if (!call->progress_token) return;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "progressToken", cJSON_Duplicate(call->progress_token, 1));
    cJSON_AddNumberToObject(params, "progress", ++call->progress);
    cJSON_AddStringToObject(params, "message", message);
    send_notification(call->to, "notifications/progress", params);
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
    text_append(&call->output, data, size);
    text *partial = &call->partial[stream == CAP_STDOUT ? 0 : 1];
    text_append(partial, data, size);
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

static const char *argument_string(const cJSON *arguments, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(arguments, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

typedef struct run_request {
    approval_state *approval; /* or NULL */
    const char *code;
    const char *session;
    const cJSON *globals; /* an object or NULL */
    const cJSON *files;   /* an array or NULL */
    double timeout_seconds;
    const char *idempotency_key; /* durable sessions: a retry returns the stored result */
} run_request;

typedef struct run_outcome {
    cap_result *result; /* NULL with `message` when the run could not start */
    char message[CAP_ERROR_SIZE];
    int busy; /* the queue was full */
    text output;
} run_outcome;

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
        const char *path = argument_string(file, "path");
        const char *content = argument_string(file, "content");
        const char *encoding = argument_string(file, "encoding");
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
static void approval_question(const char *function, const char *arguments, char *out,
                              size_t size) {
    snprintf(out, size,
             "The Python code asks to call the host function '%.100s' with arguments %.700s%s "
             "Allow this call?",
             function, arguments, strlen(arguments) > 700 ? "... (cut short)." : ".");
}

static cJSON *approval_schema(void) {
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
    approval_question(function, arguments, question, sizeof question);
    cJSON *params = cJSON_CreateObject();
    /* "mode" came with 2025-11-25; an older client's schema may refuse it. */
    if (strcmp(client->protocol, "2025-11-25") == 0) cJSON_AddStringToObject(params, "mode", "form");
    cJSON_AddStringToObject(params, "message", question);
    cJSON_AddItemToObject(params, "requestedSchema", approval_schema());
    cJSON *answer = NULL;
    char error[CAP_ERROR_SIZE];
    ask_outcome outcome = ask_request(client->asks, call->call_id, call->to->send,
                                      call->to->context, "elicitation/create", params, seconds,
                                      &answer, error);
    if (outcome != ASK_OK) {
        snprintf(reason, CAP_ERROR_SIZE, "no approval from the MCP client: %.80s", error);
        return 0;
    }
    const char *action = argument_string(answer, "action");
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

static void run_code(mcp_server *server, mcp_client *client, const char *id, const reply *to,
                     const cJSON *progress_token, const run_request *request,
                     run_outcome *outcome) {
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
    options.globals_json = globals;
    options.return_json = 1;
    options.idempotency_key = request->idempotency_key;

    client_call_begins(client);
    int slot_index = acquire_slot(server, client, id, request->session);
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
            send_notification(to, "notifications/progress", params);
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
            forget_route(server, request->session);
            pthread_mutex_unlock(&server->lock);
        }
        release_slot(server, client, slot_index);
    }
    client_call_ends(client);
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
    text_append_string(xml, "\n<");
    text_append_string(xml, tag);
    text_append_string(xml, ">\n");
    append_escaped(xml, body, size, tag);
    text_append_string(xml, "\n</");
    text_append_string(xml, tag);
    text_append_string(xml, ">");
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
static cJSON *format_run_result(const cap_result *result, const text *output_text,
                                const char *scoped, const char *name) {
    cap_status status = cap_result_status(result);
    const char *status_name = mcp_status(status);
    cJSON *structured = cJSON_CreateObject();
    cJSON_AddStringToObject(structured, "status", status_name);
    cJSON_AddStringToObject(structured, "capsule_status", cap_status_name(status));

    text xml = {0};
    text_append_string(&xml, "<status>");
    text_append_string(&xml, status_name);
    text_append_string(&xml, "</status>");
    cJSON *dependencies = cJSON_AddArrayToObject(structured, "dependencies");
    for (size_t i = 0; i < cap_result_dependency_count(result); i++)
        cJSON_AddItemToArray(dependencies, cJSON_CreateString(cap_result_dependency(result, i)));
    if (cJSON_GetArraySize(dependencies) > 0) {
        char *list = cJSON_PrintUnformatted(dependencies);
        text_append_string(&xml, "\n<dependencies>");
        if (list) text_append_string(&xml, list);
        text_append_string(&xml, "</dependencies>");
        free(list);
    }
    /* What the installer left out (a C accelerator, say): the agent should
     * know before it wonders why something is slow or missing. */
    text notes = {0};
    cJSON *note_list = cJSON_AddArrayToObject(structured, "notes");
    for (size_t i = 0; i < cap_result_note_count(result); i++) {
        cJSON_AddItemToArray(note_list, cJSON_CreateString(cap_result_note(result, i)));
        if (i) text_append_string(&notes, "\n");
        text_append_string(&notes, cap_result_note(result, i));
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
    char *own_error = unscope(cap_result_error(result), scoped, name);
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

/* A tool result that reports a failure of the tool itself. */
static cJSON *tool_error(const char *message) {
    cJSON *result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(result, "content");
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "text");
    cJSON_AddStringToObject(block, "text", message);
    cJSON_AddItemToArray(content, block);
    cJSON_AddBoolToObject(result, "isError", 1);
    return result;
}

static cJSON *tool_text(const char *message, cJSON *structured) {
    cJSON *result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(result, "content");
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "text");
    cJSON_AddStringToObject(block, "text", message);
    cJSON_AddItemToArray(content, block);
    if (structured) cJSON_AddItemToObject(result, "structuredContent", structured);
    cJSON_AddBoolToObject(result, "isError", 0);
    return result;
}

/* --- the tools ---------------------------------------------------------------------- */

/* The session tools run these fixed programs in the session's interpreter;
 * arguments arrive as the global __capsule_arguments__, never as code. */
static const char list_files_code[] =
    "(lambda a: [{'name': e.name, 'type': 'directory' if e.is_dir() else 'file',\n"
    "             'size': e.stat().st_size if e.is_file() else None}\n"
    "            for e in sorted(__import__('os').scandir(a['path']), key=lambda e: e.name)])"
    "(__capsule_arguments__)";
static const char write_file_code[] =
    "(lambda a: (__import__('os').makedirs(__import__('os').path.dirname(a['path']) or '.',"
    " exist_ok=True), open(a['path'], 'wb').write(a['data'].encode('utf-8') if a['encoding'] =="
    " 'utf-8' else __import__('base64').b64decode(a['data'])))[1])(__capsule_arguments__)";

/* read_file: {'text': ...} when the file is UTF-8 (it survives a decode
 * and encode unchanged), else {'base64': ...}. */
static const char read_file_expression[] =
    "(lambda data: (lambda text: {'text': text} if text.encode('utf-8') == data else\n"
    "   {'base64': __import__('base64').b64encode(data).decode()})(data.decode('utf-8', "
    "'replace')))(open(__capsule_arguments__['path'], 'rb').read())";

static cJSON *tool_definitions(const mcp_server *server) {
    static const char definitions[] =
        "["
        "{\"name\":\"run_python_code\","
        "\"description\":\"Run Python 3.11 code in a WebAssembly sandbox (no network, no host "
        "files). Output (stdout and stderr) and the value of the last expression are returned. "
        "Top-level await works. Files under /output are returned as artifacts. Pass session_id "
        "to keep variables and files between calls.\","
        "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"python_code\":{\"type\":\"string\",\"description\":\"Python code to run\"},"
        "\"global_variables\":{\"type\":\"object\",\"additionalProperties\":true,\"default\":{},"
        "\"description\":\"Map of global variables in context when the code runs\"},"
        "\"session_id\":{\"type\":\"string\",\"description\":\"Run in this session: state is "
        "kept between calls with the same id\"},"
        "\"idempotency_key\":{\"type\":\"string\",\"description\":\"With session_id on a "
        "durable server: a retry with the same key and code returns the stored result instead "
        "of running again\"},"
        "\"timeout_seconds\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"description\":"
        "\"Wall-clock limit of this run (at most the server's)\"},"
        "\"files\":{\"type\":\"array\",\"description\":\"Input files placed in the working "
        "directory /work before the code runs\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"},\"encoding\":{\"enum\":"
        "[\"utf-8\",\"base64\"],\"default\":\"utf-8\"}},\"required\":[\"path\",\"content\"]}}},"
        "\"required\":[\"python_code\"]},"
        "\"outputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"status\":{\"enum\":[\"success\",\"install-error\",\"run-error\"]},"
        "\"capsule_status\":{\"type\":\"string\"},"
        "\"dependencies\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"notes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"output\":{\"type\":\"string\"},"
        "\"return_value\":{\"type\":[\"string\",\"null\"]},"
        "\"error\":{\"type\":[\"string\",\"null\"]},"
        "\"artifacts\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\"},\"media_type\":{\"type\":\"string\"},\"size\":{\"type\":"
        "\"integer\"}}}}},"
        "\"required\":[\"status\",\"capsule_status\",\"dependencies\",\"output\",\"return_value\","
        "\"error\",\"artifacts\"]}},"
        "{\"name\":\"create_session\",\"description\":\"Start a Python session; pass its "
        "session_id to run_python_code to keep state between calls.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{}},\"outputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"close_session\",\"description\":\"End a Python session and free its "
        "memory and files.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"session_id\":"
        "{\"type\":\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"list_files\",\"description\":\"List a directory of a session's file system "
        "(default: the working directory /work).\",\"inputSchema\":{\"type\":\"object\","
        "\"properties\":{\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\","
        "\"default\":\"/work\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"read_file\",\"description\":\"Read a file of a session's file system: text "
        "if it is UTF-8, else base64.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\"}},\"required\":["
        "\"session_id\",\"path\"]}},"
        "{\"name\":\"write_file\",\"description\":\"Write a file into a session's file system "
        "(directories are created).\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":\"string\"},\"content\":{"
        "\"type\":\"string\"},\"encoding\":{\"enum\":[\"utf-8\",\"base64\"],\"default\":"
        "\"utf-8\"}},\"required\":[\"session_id\",\"path\",\"content\"]}}"
        "]";
    static const char durable_definitions[] =
        "[{\"name\":\"fork_session\",\"description\":\"Start a new session from another "
        "session's state after its last finished call (variables, imports, files); the other "
        "goes on unchanged.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]},"
        "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"session_id\":{\"type\":"
        "\"string\"}},\"required\":[\"session_id\"]}},"
        "{\"name\":\"session_history\",\"description\":\"A session's state (live, parked, "
        "expired) and its calls with status and timing; a call cut off by a server restart "
        "says interrupted.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"session_id\":{\"type\":\"string\"}},\"required\":[\"session_id\"]}}]";
    static const char job_definitions[] =
        "[{\"name\":\"submit_job\",\"description\":\"Run Python code as a durable background "
        "job: it survives server restarts and is retried on failure. Inside it, "
        "capsule.step(name, fn, *args) caches fn's JSON-able result (a retry returns it without "
        "running fn again), capsule.sleep(seconds) parks the job, capsule.await_event(name, "
        "timeout=None) waits for emit_event. Returns the job (job_id, status); read it with "
        "get_job.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"code\":{\"type\":\"string\",\"description\":\"Python code; the value of its last "
        "expression is the job's result\"},"
        "\"queue\":{\"type\":\"string\",\"default\":\"default\"},"
        "\"idempotency_key\":{\"type\":\"string\",\"description\":\"A key used before "
        "returns that job instead of a new one\"},"
        "\"max_attempts\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000,"
        "\"default\":3},"
        "\"timeout_seconds\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"default\":60,"
        "\"description\":\"Wall-clock limit of one attempt\"},"
        "\"backoff\":{\"type\":\"number\",\"minimum\":0,\"default\":1,\"description\":"
        "\"Seconds before the first retry, doubled for each later one\"}},"
        "\"required\":[\"code\"]}},"
        "{\"name\":\"get_job\",\"description\":\"A job's status (queued, running, sleeping, "
        "waiting, failed: a retry is due, succeeded, dead: out of attempts, cancelled), "
        "attempts, node, last error and, once succeeded, its result.\",\"inputSchema\":{"
        "\"type\":\"object\",\"properties\":{\"job_id\":{\"type\":\"string\"}},"
        "\"required\":[\"job_id\"]}},"
        "{\"name\":\"cancel_job\",\"description\":\"Cancel a job: at once unless it is "
        "running, else at its next step, sleep or wait.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"job_id\":{\"type\":\"string\"}},\"required\":["
        "\"job_id\"]}},"
        "{\"name\":\"list_jobs\",\"description\":\"Your jobs, newest first: state, attempts, "
        "node, last error.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"status\":{\"type\":\"string\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,"
        "\"maximum\":1000,\"default\":100}}}},"
        "{\"name\":\"emit_event\",\"description\":\"Emit an event: your jobs waiting in "
        "capsule.await_event(name) get its payload and go on.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"payload\":{"
        "\"description\":\"Any JSON value (default null)\"}},\"required\":[\"name\"]}}]";
    cJSON *tools = cJSON_Parse(definitions);
    if (server->durable) {
        cJSON *more = cJSON_Parse(durable_definitions), *tool;
        while (more && (tool = cJSON_DetachItemFromArray(more, 0))) cJSON_AddItemToArray(tools, tool);
        cJSON_Delete(more);
        more = cJSON_Parse(job_definitions);
        while (more && (tool = cJSON_DetachItemFromArray(more, 0))) cJSON_AddItemToArray(tools, tool);
        cJSON_Delete(more);
    }
    /* help: always something to search (the recipes ship in the binary). */
    static const char help_definition[] =
        "{\"name\":\"help\",\"description\":\"Search the documentation before writing code: "
        "the files under /docs (by section), recipes for what agents do most here (CSV, Excel "
        "XLSX and charts, PDF, zip, JSON, sqlite3, images, which packages can be installed) and "
        "the host functions and tools granted to the code. Ask in plain words. Returns the best "
        "sections, best first, with title, path (open /docs files from the code), snippet and "
        "the section's text.\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
        "\"query\":{\"type\":\"string\",\"description\":\"A question or keywords, e.g. "
        "'how do I add a chart to an xlsx file'\"},\"limit\":{\"type\":\"integer\","
        "\"minimum\":1,\"maximum\":20,\"default\":5}},\"required\":[\"query\"]}}";
    cJSON_AddItemToArray(tools, cJSON_Parse(help_definition));
    /* Listed always: without an endpoint the client's model answers (if it
     * offers sampling), else the file comes back for the caller to see. */
    static const char describe_definition[] =
        "{\"name\":\"describe\",\"description\":\"Ask a model about a file in a session's "
        "file system that the code made or unpacked: an image (PNG, JPEG, GIF, WebP), a PDF or "
        "text, at most 8 MiB. Returns the model's answer as text.\",\"inputSchema\":{\"type\":"
        "\"object\",\"properties\":{\"session_id\":{\"type\":\"string\"},\"path\":{\"type\":"
        "\"string\",\"description\":\"The file, e.g. /output/chart.png\"},\"question\":{"
        "\"type\":\"string\",\"description\":\"What to ask about it\"}},\"required\":["
        "\"session_id\",\"path\",\"question\"]}}";
    cJSON *describe = cJSON_Parse(describe_definition);
    if (!cap_config_describe_enabled(server->config))
        cJSON_ReplaceItemInObjectCaseSensitive(
            describe, "description",
            cJSON_CreateString("Ask a model about a file in a session's file system that the code "
                               "made or unpacked: an image (PNG, JPEG, GIF, WebP), a PDF or text, "
                               "at most 8 MiB. Your client's own model answers when it offers "
                               "sampling (returned as text); otherwise the file itself is "
                               "returned (image or resource content) for you to look at."));
    cJSON_AddItemToArray(tools, describe);
    cJSON *run = cJSON_GetArrayItem(tools, 0);
    const cJSON *description = cJSON_GetObjectItemCaseSensitive(run, "description");
    const char *servers = server->code_mode_servers;
    if (servers[0] && cJSON_IsString(description)) {
        /* Code mode: the servers' names only; the tools are found in the sandbox. */
        char text[2048];
        snprintf(text, sizeof text, "%s Tools of these MCP servers are Python functions here: "
                 "%s. List /servers (one file per tool, /servers/<server>/<tool>.py, with its "
                 "signature and docstring) or call capsule.tools.search('words'); then `from "
                 "servers.<server> import <tool>` and call it with keyword arguments. Chain many "
                 "calls in one program.", description->valuestring, servers);
        cJSON_ReplaceItemInObjectCaseSensitive(run, "description", cJSON_CreateString(text));
        description = cJSON_GetObjectItemCaseSensitive(run, "description");
    }
    if (server->installs_packages && cJSON_IsString(description)) {
        char text[4096];
        snprintf(text, sizeof text, "%s Imported packages are installed before the code runs "
                 "(pure-Python ones only); a PEP 723 '# /// script' block with 'dependencies', "
                 "when present, decides instead.", description->valuestring);
        cJSON_ReplaceItemInObjectCaseSensitive(run, "description", cJSON_CreateString(text));
    }
    return tools;
}

/* A session id nobody can guess: SESSION_ID_BYTES from getrandom as hex
 * into `out` (2 * SESSION_ID_BYTES + 1 characters).  0, or -1. */
static int random_session_id(char out[2 * SESSION_ID_BYTES + 1]) {
    unsigned char bytes[SESSION_ID_BYTES];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) return -1;
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

/* The name under which the sandboxes and the route table know the session
 * a client calls `name`: its principal, a slash, the name.  So a session
 * belongs to the principal that started it, and another principal naming
 * the same id reaches a different (new or unknown) session, exactly as if
 * the id had never been used.  The caller frees it. */
static char *scoped_session(const mcp_client *client, const char *name) {
    size_t size = strlen(client->principal) + 1 + strlen(name) + 1;
    char *scoped = malloc(size);
    if (scoped) snprintf(scoped, size, "%s/%s", client->principal, name);
    return scoped;
}

/* Runs one of the fixed session programs in the session `scoped` (the
 * client calls it `name`); the tool result. */
static cJSON *session_program(mcp_server *server, mcp_client *client, const char *id,
                              const reply *to, const char *scoped, const char *name,
                              const char *code, cJSON *arguments_for_guest) {
    cJSON *globals = cJSON_CreateObject();
    cJSON_AddItemToObject(globals, "__capsule_arguments__", arguments_for_guest);
    run_request request = {NULL, code, scoped, globals, NULL, 0, NULL};
    run_outcome outcome;
    run_code(server, client, id, to, NULL, &request, &outcome);
    cJSON_Delete(globals);
    free(outcome.output.data);
    if (!outcome.result) return tool_error(outcome.message);
    cJSON *tool_result;
    cap_status status = cap_result_status(outcome.result);
    if (status == CAP_STATUS_SUCCESS) {
        const char *value = cap_result_return_value(outcome.result);
        cJSON *parsed = value ? cJSON_Parse(value) : NULL;
        tool_result = tool_text(value ? value : "null", parsed && cJSON_IsObject(parsed)
                                                          ? parsed
                                                          : NULL);
        if (parsed && !cJSON_IsObject(parsed)) {
            cJSON *wrapped = cJSON_CreateObject();
            cJSON_AddItemToObject(wrapped, "result", parsed);
            cJSON_AddItemToObject(tool_result, "structuredContent", wrapped);
        }
    } else {
        char *error = unscope(cap_result_error(outcome.result), scoped, name);
        tool_result = tool_error(error ? error : cap_status_name(status));
        free(error);
    }
    cap_result_free(outcome.result);
    return tool_result;
}

/* help: cap_config_help over the server's config; the results as text
 * (numbered, with their paths and snippets) and as structuredContent. */
static cJSON *help_tool(mcp_server *server, const cJSON *arguments, int *invalid) {
    const char *query = argument_string(arguments, "query");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(arguments, "limit");
    *invalid = 0;
    if (!query || (limit && !cJSON_IsNull(limit) &&
                   !(cJSON_IsNumber(limit) && limit->valuedouble >= 1 &&
                     limit->valuedouble <= 20 && limit->valuedouble == (int)limit->valuedouble))) {
        *invalid = 1;
        return NULL;
    }
    char error[CAP_ERROR_SIZE] = "";
    char *json = cap_config_help(server->config, query,
                                 cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0, error);
    cJSON *structured = json ? cJSON_Parse(json) : NULL;
    free(json);
    if (!structured) return tool_error(error[0] ? error : "help failed");
    buffer text = {0};
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(structured, "results");
    const cJSON *result;
    int number = 0;
    cJSON_ArrayForEach(result, results) {
        const cJSON *title = cJSON_GetObjectItemCaseSensitive(result, "title");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(result, "path");
        const cJSON *snippet = cJSON_GetObjectItemCaseSensitive(result, "snippet");
        char head[1024];
        int n = snprintf(head, sizeof head, "%d. %s (%s)\n", ++number,
                         cJSON_IsString(title) ? title->valuestring : "",
                         cJSON_IsString(path) ? path->valuestring : "");
        buffer_append(&text, head, n < (int)sizeof head ? (size_t)n : sizeof head - 1);
        if (cJSON_IsString(snippet) && snippet->valuestring[0]) {
            buffer_append(&text, "   ", 3);
            buffer_append(&text, snippet->valuestring, strlen(snippet->valuestring));
            buffer_append(&text, "\n", 1);
        }
    }
    if (number == 0) buffer_append(&text, "no results", 10);
    buffer_append(&text, "", 1);
    cJSON *tool_result = tool_text(text.data ? text.data : "", structured);
    buffer_free(&text);
    return tool_result;
}

/* fork_session and session_history, offered when sessions are durable. */
static void durable_session_tool(mcp_server *server, mcp_client *client, const cJSON *id,
                                 const reply *to, const char *name, const char *scoped,
                                 const char *session) {
    char error[CAP_ERROR_SIZE];
    if (!server->durable) {
        send_error(to, id, RPC_INVALID_PARAMS, "unknown tool (sessions are not durable: no store)");
        return;
    }
    if (strcmp(name, "session_history") == 0) {
        char *history = cap_session_history(server->config, scoped, error);
        cJSON *structured = history ? cJSON_Parse(history) : NULL;
        if (structured) {
            send_result(to, id, tool_text(history, structured));
        } else {
            char *shown = unscope(error, scoped, session);
            send_result(to, id, tool_error(shown ? shown : error));
            free(shown);
        }
        free(history);
        return;
    }
    char session_id[2 * SESSION_ID_BYTES + 1];
    char *minted = NULL;
    if (random_session_id(session_id) != 0 || !(minted = scoped_session(client, session_id))) {
        send_error(to, id, RPC_INTERNAL_ERROR, "no randomness for a session id");
        return;
    }
    if (cap_session_fork(server->config, scoped, minted, error) == CAP_OK) {
        cJSON *structured = cJSON_CreateObject();
        cJSON_AddStringToObject(structured, "session_id", session_id);
        send_result(to, id, tool_text(session_id, structured));
    } else {
        char *shown = unscope(error, scoped, session);
        send_result(to, id, tool_error(shown ? shown : error));
        free(shown);
    }
    free(minted);
}

/* --- durable jobs (src/sandbox/jobs.c) --------------------------------------------- */

static int is_job_tool(const char *name) {
    static const char *const names[] = {"submit_job", "get_job", "cancel_job", "list_jobs",
                                        "emit_event"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

/* A job's JSON text as a tool result (text and structured content). */
static cJSON *job_result(char *json, const char *error) {
    cJSON *structured = json ? cJSON_Parse(json) : NULL;
    cJSON *result = structured ? tool_text(json, structured) : tool_error(error);
    free(json);
    return result;
}

/* The job tools, offered when the server has a store.  A job belongs to
 * the principal that submitted it: every tool passes the caller's, so
 * another principal's job reads as "no job". */
static void job_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                     const char *name, const cJSON *arguments) {
    char error[CAP_ERROR_SIZE] = "";
    cap_config *config = server->config;
    const char *principal = client->principal;
    if (!server->durable) {
        send_error(to, id, RPC_INVALID_PARAMS, "unknown tool (jobs need a store)");
        return;
    }
    if (strcmp(name, "submit_job") == 0) {
        const char *code = argument_string(arguments, "code");
        const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(arguments, "max_attempts");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(arguments, "timeout_seconds");
        const cJSON *backoff = cJSON_GetObjectItemCaseSensitive(arguments, "backoff");
        if (!code || (attempts && !(cJSON_IsNumber(attempts) && attempts->valuedouble >= 1 &&
                                    attempts->valuedouble <= 1000)) ||
            (timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) ||
            (backoff && !(cJSON_IsNumber(backoff) && backoff->valuedouble >= 0))) {
            send_error(to, id, RPC_INVALID_PARAMS,
                       "submit_job needs code (a string); max_attempts 1 to 1000, timeout_seconds "
                       "> 0 and backoff >= 0 when given");
            return;
        }
        double timeout_seconds = timeout ? timeout->valuedouble : 0;
        /* No attempt outlasts the server's own wall-clock limit. */
        if (server->limits.wall_seconds > 0 &&
            (!timeout_seconds || timeout_seconds > server->limits.wall_seconds))
            timeout_seconds = server->limits.wall_seconds;
        cap_job_options options = {
            .principal = principal,
            .queue = argument_string(arguments, "queue"),
            .idempotency_key = argument_string(arguments, "idempotency_key"),
            .max_attempts = attempts ? (int)attempts->valuedouble : 0,
            .timeout_seconds = timeout_seconds,
            .backoff_seconds = !backoff ? 0 : backoff->valuedouble > 0 ? backoff->valuedouble : -1};
        char *json = NULL;
        cap_job_submit(config, code, &options, &json, error);
        send_result(to, id, job_result(json, error));
    } else if (strcmp(name, "get_job") == 0 || strcmp(name, "cancel_job") == 0) {
        const char *job = argument_string(arguments, "job_id");
        if (!job) {
            send_error(to, id, RPC_INVALID_PARAMS, "this tool needs job_id (a string)");
            return;
        }
        char *json = NULL;
        if (name[0] == 'g') json = cap_job_get(config, job, principal, error);
        else cap_job_cancel(config, job, principal, &json, error);
        send_result(to, id, job_result(json, error));
    } else if (strcmp(name, "list_jobs") == 0) {
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(arguments, "limit");
        if (limit && !(cJSON_IsNumber(limit) && limit->valuedouble >= 1 &&
                       limit->valuedouble <= 1000)) {
            send_error(to, id, RPC_INVALID_PARAMS, "limit must be 1 to 1000");
            return;
        }
        char *json = cap_job_list(config, principal, argument_string(arguments, "status"),
                                  limit ? (size_t)limit->valuedouble : 0, error);
        cJSON *jobs = json ? cJSON_Parse(json) : NULL;
        if (jobs) {
            cJSON *structured = cJSON_CreateObject();
            cJSON_AddItemToObject(structured, "jobs", jobs);
            send_result(to, id, tool_text(json, structured));
        } else {
            send_result(to, id, tool_error(error));
        }
        free(json);
    } else {
        const char *event = argument_string(arguments, "name");
        const cJSON *payload = cJSON_GetObjectItemCaseSensitive(arguments, "payload");
        if (!event) {
            send_error(to, id, RPC_INVALID_PARAMS, "emit_event needs name (a string)");
            return;
        }
        char *payload_json = payload ? cJSON_PrintUnformatted(payload) : NULL;
        int woken = 0;
        if (cap_job_emit(config, principal, event, payload_json, &woken, error) == CAP_OK) {
            cJSON *structured = cJSON_CreateObject();
            cJSON_AddNumberToObject(structured, "woken", woken);
            char text[64];
            snprintf(text, sizeof text, "emitted; %d waiting jobs woken", woken);
            send_result(to, id, tool_text(text, structured));
        } else {
            send_result(to, id, tool_error(error));
        }
        free(payload_json);
    }
}

/* --- requestState: host-function approval over input_required ---------------------
 *
 * In 2026-07-28 a server does not send requests to the client; it answers
 * with an input_required result instead, and the client retries the call
 * with its answers (inputResponses) and the requestState it was given.
 * capsule uses it for host functions that need approval
 * (cap_config_require_approval): run_python_code runs the code, refusing
 * every call not yet approved; if one was refused and the client declared
 * elicitation, the result is an elicitation asking for it, and the retry
 * runs the code again from the start with that call approved.  The
 * requestState holds what was approved, so it is signed: a client that
 * alters it, or replays it for other arguments, as another principal, or
 * at another server (or after a restart), gets an error. */

static char *base64url(const unsigned char *data, size_t size) {
    char *out = base64_encode(data, size);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; out[i]; i++) {
        if (out[i] == '=') continue;
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[o] = '\0';
    return out;
}

static int state_mac(const mcp_server *server, const char *payload, size_t size,
                     unsigned char mac[32]) {
    unsigned int length = 0;
    return HMAC(EVP_sha256(), server->state_key, sizeof server->state_key,
                (const unsigned char *)payload, size, mac, &length) && length == 32
               ? 0
               : -1;
}

/* "PAYLOAD.MAC": base64url of the payload's JSON, and of its HMAC-SHA256. */
static char *sign_state(const mcp_server *server, const cJSON *payload) {
    char *json = cJSON_PrintUnformatted(payload);
    char *encoded = json ? base64url((const unsigned char *)json, strlen(json)) : NULL;
    free(json);
    unsigned char mac[32];
    char *mac_text = NULL, *state = NULL;
    if (encoded && state_mac(server, encoded, strlen(encoded), mac) == 0 &&
        (mac_text = base64url(mac, sizeof mac))) {
        size_t size = strlen(encoded) + 1 + strlen(mac_text) + 1;
        if ((state = malloc(size))) snprintf(state, size, "%s.%s", encoded, mac_text);
    }
    free(encoded);
    free(mac_text);
    return state;
}

/* The payload of a state this server signed, or NULL (compared in constant
 * time, so the MAC cannot be found a byte at a time). */
static cJSON *verify_state(const mcp_server *server, const char *state) {
    const char *dot = strrchr(state, '.');
    if (!dot || dot == state) return NULL;
    unsigned char mac[32];
    size_t given_size = 0;
    unsigned char *given = base64_decode(dot + 1, &given_size);
    int valid = given && given_size == sizeof mac &&
                state_mac(server, state, (size_t)(dot - state), mac) == 0 &&
                CRYPTO_memcmp(mac, given, sizeof mac) == 0;
    free(given);
    if (!valid) return NULL;
    char *encoded = strndup(state, (size_t)(dot - state));
    size_t size = 0;
    unsigned char *json = encoded ? base64_decode(encoded, &size) : NULL;
    free(encoded);
    cJSON *payload = json ? cJSON_ParseWithLength((const char *)json, size) : NULL;
    free(json);
    return payload;
}

/* SHA-256 (hex) of the call's arguments as sent: a state is good only for
 * the call it was issued for. */
static void arguments_digest(const cJSON *arguments, char out[65]) {
    char *text = arguments ? cJSON_PrintUnformatted(arguments) : NULL;
    const char *data = text ? text : "null";
    unsigned char digest[32];
    unsigned int length = 0;
    if (!EVP_Digest(data, strlen(data), digest, &length, EVP_sha256(), NULL))
        memset(digest, 0, sizeof digest);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
    free(text);
    OPENSSL_cleanse(digest, sizeof digest);
}

static void add_pair(cJSON *pairs, const char *function, const char *arguments) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(function));
    cJSON_AddItemToArray(pair, cJSON_CreateString(arguments));
    cJSON_AddItemToArray(pairs, pair);
}

/* What every retried call's requestState must satisfy: inputResponses, if
 * any, an object; the state a string this server signed (verify_state),
 * for `tool`, for this client's principal and these very arguments, not
 * expired.  0 with *payload NULL when the call carries no state; 0 with
 * *payload (the caller deletes it) when it verifies; -1 with `message`
 * otherwise (the retry is not a call this server issued). */
static int verified_state(const mcp_server *server, const mcp_client *client,
                          const cJSON *params, const cJSON *arguments, const char *tool,
                          cJSON **payload_out, char *message) {
    *payload_out = NULL;
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(params, "requestState");
    const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
    if (responses && !cJSON_IsObject(responses)) {
        snprintf(message, CAP_ERROR_SIZE, "inputResponses must be an object");
        return -1;
    }
    if (!state || cJSON_IsNull(state)) return 0; /* nothing was asked: answers are ignored */
    if (!cJSON_IsString(state)) {
        snprintf(message, CAP_ERROR_SIZE, "requestState must be a string");
        return -1;
    }
    cJSON *payload = verify_state(server, state->valuestring);
    char digest[65];
    arguments_digest(arguments, digest);
    const char *signed_tool = argument_string(payload, "tool");
    const char *principal = argument_string(payload, "principal");
    const char *digested = argument_string(payload, "arguments");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(payload, "expires");
    if (!payload || !signed_tool || strcmp(signed_tool, tool) != 0 || !principal ||
        strcmp(principal, client->principal) != 0 || !digested || strcmp(digested, digest) != 0 ||
        !cJSON_IsNumber(expires) || expires->valuedouble < (double)time(NULL)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "%s call (altered, expired, from another server or client, or for other "
                 "arguments); call again without requestState", tool);
        cJSON_Delete(payload);
        return -1;
    }
    *payload_out = payload;
    return 0;
}

/* A retried run_python_code: verifies its requestState and takes the
 * client's answer from inputResponses into `approval`.  0; or -1 with
 * `message` when the state does not verify or the answer is malformed (a
 * JSON-RPC error: the retry is not a call the server issued). */
static int resume_approval(const mcp_server *server, const mcp_client *client,
                           const cJSON *params, const cJSON *arguments, approval_state *approval,
                           char *message) {
    cJSON *payload;
    if (verified_state(server, client, params, arguments, "run_python_code", &payload,
                       message) != 0)
        return -1;
    if (!payload) return 0;
    const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
    const char *key = argument_string(payload, "key");
    const cJSON *ask = cJSON_GetObjectItemCaseSensitive(payload, "ask");
    cJSON *approved = cJSON_DetachItemFromObjectCaseSensitive(payload, "approved");
    cJSON *declined = cJSON_DetachItemFromObjectCaseSensitive(payload, "declined");
    const cJSON *function = cJSON_GetArrayItem(ask, 0);
    const cJSON *function_arguments = cJSON_GetArrayItem(ask, 1);
    if (!key || !cJSON_IsArray(approved) || !cJSON_IsArray(declined) ||
        !cJSON_IsString(function) || !cJSON_IsString(function_arguments)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "call (altered, expired, from another server or client, or for other "
                 "arguments); call again without requestState");
        cJSON_Delete(approved);
        cJSON_Delete(declined);
        cJSON_Delete(payload);
        return -1;
    }
    cJSON_Delete(approval->approved);
    cJSON_Delete(approval->declined);
    approval->approved = approved;
    approval->declined = declined;
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(responses, key);
    int failed = 0;
    if (answer && !cJSON_IsObject(answer)) {
        snprintf(message, CAP_ERROR_SIZE,
                 "inputResponses.%.64s must be the result of elicitation/create (an object)", key);
        failed = 1;
    } else if (answer) {
        const char *action = argument_string(answer, "action");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(answer, "content");
        int yes = action && strcmp(action, "accept") == 0 &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(content, "approve"));
        add_pair(yes ? approved : declined, function->valuestring,
                 function_arguments->valuestring);
    } /* no answer: the call is asked again */
    if (cJSON_GetArraySize(approved) + cJSON_GetArraySize(declined) >= MAX_APPROVALS)
        approval->can_ask = 0;
    cJSON_Delete(payload);
    return failed ? -1 : 0;
}

/* A state's common fields, as verified_state checks them: the version,
 * the tool, the client's principal, a digest of the call's arguments and
 * an expiry.  The caller adds its own fields, then signs it. */
static cJSON *new_state_payload(const mcp_client *client, const cJSON *arguments,
                                const char *tool) {
    char digest[65];
    arguments_digest(arguments, digest);
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "v", 1);
    cJSON_AddStringToObject(payload, "tool", tool);
    cJSON_AddStringToObject(payload, "principal", client->principal);
    cJSON_AddStringToObject(payload, "arguments", digest);
    cJSON_AddNumberToObject(payload, "expires", (double)time(NULL) + STATE_SECONDS);
    return payload;
}

/* The input_required result asking the client to approve the call the run
 * was refused, with the signed state of this round. */
static cJSON *approval_request(const mcp_server *server, const mcp_client *client,
                               const cJSON *arguments, const approval_state *approval) {
    char key[40];
    snprintf(key, sizeof key, "approve_call_%d",
             cJSON_GetArraySize(approval->approved) + cJSON_GetArraySize(approval->declined) + 1);
    cJSON *payload = new_state_payload(client, arguments, "run_python_code");
    cJSON_AddStringToObject(payload, "key", key);
    cJSON *ask = cJSON_AddArrayToObject(payload, "ask");
    cJSON_AddItemToArray(ask, cJSON_CreateString(approval->ask_function));
    cJSON_AddItemToArray(ask, cJSON_CreateString(approval->ask_arguments));
    cJSON_AddItemToObject(payload, "approved", cJSON_Duplicate(approval->approved, 1));
    cJSON_AddItemToObject(payload, "declined", cJSON_Duplicate(approval->declined, 1));
    char *state = sign_state(server, payload);
    cJSON_Delete(payload);
    if (!state) return NULL;

    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "resultType", "input_required");
    cJSON *requests = cJSON_AddObjectToObject(result, "inputRequests");
    cJSON *request = cJSON_AddObjectToObject(requests, key);
    cJSON_AddStringToObject(request, "method", "elicitation/create");
    cJSON *params = cJSON_AddObjectToObject(request, "params");
    char question[1024];
    approval_question(approval->ask_function, approval->ask_arguments, question, sizeof question);
    cJSON_AddStringToObject(params, "message", question);
    cJSON_AddItemToObject(params, "requestedSchema", approval_schema());
    cJSON_AddStringToObject(result, "requestState", state);
    free(state);
    return result;
}

/* --- describe: endpoint, the client's model, or the file itself ------------------------
 *
 * The backends in order: the configured endpoint (describe.c); the
 * client's own model, asked with sampling/createMessage (a legacy client
 * that declared sampling, now, on the call's stream; a 2026-07-28 client,
 * with an input_required result and a signed requestState naming the
 * session, the path and a hash of the file's bytes, so that the retry's
 * answer is used only for the same file); else the file itself, returned
 * as content for the calling model to look at. */

#define DESCRIBE_KEY "describe_sampling"

/* The file's bytes read by describe_read_program (describe.c: a large image
 * first shrunk by the guest's Pillow), or NULL with *error_result
 * (a tool result) set. */
static unsigned char *read_for_describe(mcp_server *server, mcp_client *client,
                                        const char *id_text, const reply *to, const char *scoped,
                                        const char *session, const char *path, size_t *size,
                                        cJSON **error_result) {
    *error_result = NULL;
    pthread_mutex_lock(&server->lock);
    int known = session_known(server, scoped);
    pthread_mutex_unlock(&server->lock);
    if (!known) {
        *error_result = tool_error("no such session; create one with create_session");
        return NULL;
    }
    cJSON *guest_arguments = cJSON_CreateObject();
    cJSON_AddStringToObject(guest_arguments, "path", path);
    cJSON *read = session_program(server, client, id_text, to, scoped, session,
                                  describe_read_program, guest_arguments);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(read, "isError"))) {
        *error_result = read;
        return NULL;
    }
    const cJSON *structured = cJSON_GetObjectItemCaseSensitive(read, "structuredContent");
    const cJSON *encoded = cJSON_GetObjectItemCaseSensitive(structured, "base64");
    const cJSON *too_large = cJSON_GetObjectItemCaseSensitive(structured, "size");
    const cJSON *refused = cJSON_GetObjectItemCaseSensitive(structured, "error");
    unsigned char *data = cJSON_IsString(encoded) ? base64_decode(encoded->valuestring, size)
                                                  : NULL;
    if (!data) {
        char error[CAP_ERROR_SIZE];
        if (cJSON_IsString(refused)) /* e.g. an image too large that could not be shrunk */
            snprintf(error, sizeof error, "describe: %.60s: %.150s", path, refused->valuestring);
        else if (cJSON_IsNumber(too_large))
            snprintf(error, sizeof error, "describe: %.100s has %.0f bytes, more than the 8 MiB a "
                     "file may have", path, too_large->valuedouble);
        else
            snprintf(error, sizeof error, "describe: %.100s could not be read", path);
        *error_result = tool_error(error);
    }
    cJSON_Delete(read);
    return data;
}

static void sha256_hex(const unsigned char *data, size_t size, char out[65]) {
    unsigned char digest[32];
    unsigned int length = 0;
    if (!EVP_Digest(data, size, digest, &length, EVP_sha256(), NULL)) memset(digest, 0, 32);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* A retried 2026-07-28 describe: the payload of its requestState when it
 * verifies as one this server issued for this call of this client (NULL
 * when the call has none); -1 with `message` when it does not verify. */
static int resume_describe(const mcp_server *server, const mcp_client *client,
                           const cJSON *params, const cJSON *arguments, cJSON **payload_out,
                           char *message) {
    if (verified_state(server, client, params, arguments, "describe", payload_out, message) != 0)
        return -1;
    if (*payload_out && !argument_string(*payload_out, "sha256")) {
        snprintf(message, CAP_ERROR_SIZE,
                 "requestState rejected: it does not verify as one this server issued for this "
                 "describe call; call again without requestState");
        cJSON_Delete(*payload_out);
        *payload_out = NULL;
        return -1;
    }
    return 0;
}

/* The input_required result asking a 2026-07-28 client's model about the
 * file; NULL when out of memory. */
static cJSON *describe_request(const mcp_server *server, const mcp_client *client,
                               const cJSON *arguments, const char *scoped, const char *path,
                               const char *file_digest, cJSON *sampling) {
    cJSON *payload = new_state_payload(client, arguments, "describe");
    cJSON_AddStringToObject(payload, "session", scoped);
    cJSON_AddStringToObject(payload, "path", path);
    cJSON_AddStringToObject(payload, "sha256", file_digest);
    char *state = sign_state(server, payload);
    cJSON_Delete(payload);
    if (!state) {
        cJSON_Delete(sampling);
        return NULL;
    }
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "resultType", "input_required");
    cJSON *request = cJSON_AddObjectToObject(cJSON_AddObjectToObject(result, "inputRequests"),
                                             DESCRIBE_KEY);
    cJSON_AddStringToObject(request, "method", "sampling/createMessage");
    cJSON_AddItemToObject(request, "params", sampling);
    cJSON_AddStringToObject(result, "requestState", state);
    free(state);
    return result;
}

/* The tool result of the client model's answer (a sampling result). */
static cJSON *describe_answer(const cJSON *sampled, const char *media_type) {
    char error[CAP_ERROR_SIZE];
    char *text = describe_client_answer(sampled, error);
    if (!text) return tool_error(error);
    cJSON *structured = cJSON_CreateObject();
    cJSON_AddStringToObject(structured, "answer", text);
    cJSON_AddStringToObject(structured, "media_type", media_type);
    const char *model = argument_string(sampled, "model");
    cJSON_AddStringToObject(structured, "model", model ? model : "client");
    cJSON_AddStringToObject(structured, "backend", "client");
    cJSON *result = tool_text(text, structured);
    free(text);
    return result;
}

/* The describe tool: the file, then the first backend there is. */
static void describe_tool(mcp_server *server, mcp_client *client, const cJSON *id,
                          const char *id_text, const reply *to, const cJSON *params,
                          const char *scoped, const char *session, const char *path,
                          const char *question) {
    const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    int endpoint = cap_config_describe_enabled(server->config);
    char error[CAP_ERROR_SIZE] = "";
    cJSON *resumed = NULL;
    if (to->stateless && !endpoint &&
        resume_describe(server, client, params, arguments, &resumed, error) != 0) {
        send_error(to, id, RPC_INVALID_PARAMS, error); /* the retry is not a call we issued */
        return;
    }
    size_t size = 0;
    cJSON *result = NULL;
    unsigned char *data = read_for_describe(server, client, id_text, to, scoped, session, path,
                                            &size, &result);
    const char *media_type = data && !endpoint ? describe_check_file(data, size, question, error)
                                               : NULL;
    if (!data) {
        /* result: why the file could not be read */
    } else if (endpoint) {
        char *json = cap_config_describe(server->config, data, size, path, question, 0, error);
        cJSON *answer = json ? cJSON_Parse(json) : NULL;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(answer, "answer");
        result = cJSON_IsString(text) ? tool_text(text->valuestring, answer)
                                      : tool_error(error[0] ? error : "describe failed");
        if (!cJSON_IsString(text)) cJSON_Delete(answer);
        free(json);
    } else if (!media_type) {
        result = tool_error(error);
    } else {
        int samplable = strcmp(media_type, "application/pdf") != 0; /* sampling has no PDF */
        char digest[65];
        sha256_hex(data, size, digest);
        const cJSON *responses = cJSON_GetObjectItemCaseSensitive(params, "inputResponses");
        const cJSON *sampled = cJSON_GetObjectItemCaseSensitive(responses, DESCRIBE_KEY);
        if (resumed && strcmp(argument_string(resumed, "sha256"), digest) != 0) {
            result = tool_error("describe: the file changed after the client's model was asked "
                                "about it, so the answer is not used; call describe again");
        } else if (resumed && sampled) {
            result = cJSON_IsObject(sampled)
                         ? describe_answer(sampled, media_type)
                         : tool_error("describe: inputResponses." DESCRIBE_KEY " must be the "
                                      "result of sampling/createMessage (an object)");
        } else if (to->stateless && samplable &&
                   cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(to->stateless->capabilities,
                                                                   "sampling"))) {
            cJSON *sampling =
                describe_client_sampling(data, size, media_type, path, question, error);
            result = sampling ? describe_request(server, client, arguments, scoped, path, digest,
                                                 sampling)
                              : NULL;
            if (!result) result = tool_error(error[0] ? error : "out of memory");
        } else if (!to->stateless && samplable && to->can_ask && client->can_sample) {
            cJSON *sampling =
                describe_client_sampling(data, size, media_type, path, question, error);
            cJSON *sampled_now = NULL;
            char message[CAP_ERROR_SIZE];
            if (!sampling) {
                result = tool_error(error);
            } else if (ask_request(client->asks, id_text, to->send, to->context,
                                   "sampling/createMessage", sampling, SAMPLING_SECONDS,
                                   &sampled_now, message) != ASK_OK) {
                snprintf(error, sizeof error, "describe: the client's model (sampling): %.180s",
                         message);
                result = tool_error(error);
            } else {
                result = describe_answer(sampled_now, media_type);
            }
            cJSON_Delete(sampled_now);
        } else {
            result = describe_client_fallback(data, size, media_type, path, question);
        }
    }
    free(data);
    cJSON_Delete(resumed);
    send_result(to, id, result);
}
static int becomes_task(const reply *to, const cJSON *params);
static void start_task(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                       const cJSON *params);

static void call_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                      const cJSON *params) {
    const char *name = argument_string(params, "name");
    const cJSON *arguments = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *progress_token = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (progress_token && !is_valid_id(progress_token)) progress_token = NULL;
    if (!name) {
        send_error(to, id, RPC_INVALID_PARAMS, "tools/call needs a tool name");
        return;
    }
    if (arguments && !cJSON_IsObject(arguments)) {
        send_error(to, id, RPC_INVALID_PARAMS, "arguments must be an object");
        return;
    }
    char *id_text = cJSON_PrintUnformatted(id);
    const char *session = argument_string(arguments, "session_id");
    const cJSON *session_item = cJSON_GetObjectItemCaseSensitive(arguments, "session_id");
    char *scoped = session && strlen(session) <= MAX_SESSION_NAME
                       ? scoped_session(client, session)
                       : NULL;
    if (session_item && !cJSON_IsNull(session_item) && !session) {
        send_error(to, id, RPC_INVALID_PARAMS, "session_id must be a string");
    } else if (session && strlen(session) > MAX_SESSION_NAME) {
        send_error(to, id, RPC_INVALID_PARAMS, "session_id is too long");
    } else if (session && !scoped) {
        send_error(to, id, RPC_INTERNAL_ERROR, "out of memory");
    } else if (strcmp(name, "help") == 0) {
        int invalid;
        cJSON *result = help_tool(server, arguments, &invalid);
        if (invalid)
            send_error(to, id, RPC_INVALID_PARAMS, "help needs query (a string) and a limit of 1 to 20");
        else
            send_result(to, id, result);
    } else if (strcmp(name, "run_python_code") == 0) {
        const char *code = argument_string(arguments, "python_code");
        const cJSON *globals = cJSON_GetObjectItemCaseSensitive(arguments, "global_variables");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(arguments, "timeout_seconds");
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(arguments, "files");
        if (!code) {
            send_error(to, id, RPC_INVALID_PARAMS, "run_python_code needs python_code (a string)");
        } else if (globals && !cJSON_IsNull(globals) && !cJSON_IsObject(globals)) {
            send_error(to, id, RPC_INVALID_PARAMS, "global_variables must be an object");
        } else if (timeout && !(cJSON_IsNumber(timeout) && timeout->valuedouble > 0)) {
            send_error(to, id, RPC_INVALID_PARAMS, "timeout_seconds must be a positive number");
        } else if (becomes_task(to, params)) {
            start_task(server, client, id, to, params);
        } else {
            approval_state approval = {0};
            char message[CAP_ERROR_SIZE];
            if (to->stateless) {
                approval.can_ask = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(
                    to->stateless->capabilities, "elicitation"));
                approval.approved = cJSON_CreateArray();
                approval.declined = cJSON_CreateArray();
            }
            run_request request = {to->stateless ? &approval : NULL, code, scoped,
                                   cJSON_IsObject(globals) ? globals : NULL,
                                   cJSON_IsNull(files) ? NULL : files,
                                   timeout ? timeout->valuedouble : 0,
                                   argument_string(arguments, "idempotency_key")};
            run_outcome outcome = {0};
            cJSON *asking = NULL;
            int rejected = to->stateless && resume_approval(server, client, params, arguments,
                                                            &approval, message) != 0;
            if (rejected) {
                send_error(to, id, RPC_INVALID_PARAMS, message);
            } else {
                run_code(server, client, id_text, to, progress_token, &request, &outcome);
                if (outcome.result && approval.ask_function)
                    asking = approval_request(server, client, arguments, &approval);
            }
            if (asking) {
                send_result(to, id, asking);
                cap_result_free(outcome.result);
            } else if (outcome.result) {
                send_result(to, id, format_run_result(outcome.result, &outcome.output, scoped,
                                                      session));
                cap_result_free(outcome.result);
            } else if (outcome.busy) {
                send_error(to, id, RPC_SERVER_BUSY, outcome.message);
            } else if (!rejected) {
                send_result(to, id, tool_error(outcome.message));
            }
            free(outcome.output.data);
            cJSON_Delete(approval.approved);
            cJSON_Delete(approval.declined);
            free(approval.ask_function);
            free(approval.ask_arguments);
        }
    } else if (is_job_tool(name)) {
        job_tool(server, client, id, to, name, arguments);
    } else if (strcmp(name, "create_session") == 0) {
        char session_id[2 * SESSION_ID_BYTES + 1];
        char *minted = NULL;
        if (random_session_id(session_id) != 0 || !(minted = scoped_session(client, session_id))) {
            send_error(to, id, RPC_INTERNAL_ERROR, "no randomness for a session id");
        } else {
            /* A first run creates the session in its sandbox. */
            run_request request = {NULL, "pass", minted, NULL, NULL, 0, NULL};
            run_outcome outcome;
            run_code(server, client, id_text, to, NULL, &request, &outcome);
            free(outcome.output.data);
            if (outcome.result && cap_result_status(outcome.result) == CAP_STATUS_SUCCESS) {
                cJSON *structured = cJSON_CreateObject();
                cJSON_AddStringToObject(structured, "session_id", session_id);
                send_result(to, id, tool_text(session_id, structured));
            } else if (outcome.busy) {
                send_error(to, id, RPC_SERVER_BUSY, outcome.message);
            } else {
                char *error = unscope(outcome.result ? cap_result_error(outcome.result)
                                                     : outcome.message,
                                      minted, session_id);
                send_result(to, id, tool_error(error ? error : "out of memory"));
                free(error);
            }
            cap_result_free(outcome.result);
        }
        free(minted);
    } else if (!session) {
        if (strcmp(name, "close_session") == 0 || strcmp(name, "list_files") == 0 ||
            strcmp(name, "read_file") == 0 || strcmp(name, "write_file") == 0 ||
            strcmp(name, "describe") == 0)
            send_error(to, id, RPC_INVALID_PARAMS, "this tool needs session_id");
        else
            send_error(to, id, RPC_INVALID_PARAMS, "unknown tool");
    } else if (strcmp(name, "fork_session") == 0 || strcmp(name, "session_history") == 0) {
        durable_session_tool(server, client, id, to, name, scoped, session);
    } else if (strcmp(name, "describe") == 0) {
        const char *path = argument_string(arguments, "path");
        const char *question = argument_string(arguments, "question");
        if (!path || !question)
            send_error(to, id, RPC_INVALID_PARAMS, "describe needs path and question");
        else
            describe_tool(server, client, id, id_text, to, params, scoped, session, path,
                          question);
    } else if (strcmp(name, "close_session") == 0) {
        pthread_mutex_lock(&server->lock);
        int slot_index = session_known(server, scoped) ? route_session(server, scoped) : -1;
        pthread_mutex_unlock(&server->lock);
        char error[CAP_ERROR_SIZE] = "no such session";
        int closed = 0;
        if (slot_index >= 0) {
            int taken = acquire_slot(server, client, id_text, scoped);
            if (taken >= 0) {
                closed = cap_session_close(server->slots[taken].sandbox, scoped, error) == CAP_OK;
                pthread_mutex_lock(&server->lock);
                forget_route(server, scoped);
                pthread_mutex_unlock(&server->lock);
                release_slot(server, client, taken);
            }
        }
        char *shown = unscope(error, scoped, session);
        send_result(to, id, closed ? tool_text("closed", NULL) : tool_error(shown ? shown : error));
        free(shown);
    } else if (strcmp(name, "list_files") == 0 || strcmp(name, "read_file") == 0 ||
               strcmp(name, "write_file") == 0) {
        const char *path = argument_string(arguments, "path");
        const char *content = argument_string(arguments, "content");
        const char *encoding = argument_string(arguments, "encoding");
        int listing = strcmp(name, "list_files") == 0, writing = strcmp(name, "write_file") == 0;
        if (!path && listing) path = "/work";
        if (!path || (writing && !content)) {
            send_error(to, id, RPC_INVALID_PARAMS,
                       writing ? "write_file needs path and content" : "this tool needs a path");
        } else if (encoding && strcmp(encoding, "utf-8") != 0 && strcmp(encoding, "base64") != 0) {
            send_error(to, id, RPC_INVALID_PARAMS, "encoding must be utf-8 or base64");
        } else {
            pthread_mutex_lock(&server->lock);
            int known = session_known(server, scoped);
            pthread_mutex_unlock(&server->lock);
            if (!known) {
                send_result(to, id, tool_error("no such session; create one with create_session"));
            } else {
                cJSON *guest_arguments = cJSON_CreateObject();
                cJSON_AddStringToObject(guest_arguments, "path", path);
                if (writing) {
                    cJSON_AddStringToObject(guest_arguments, "data", content);
                    cJSON_AddStringToObject(guest_arguments, "encoding",
                                            encoding ? encoding : "utf-8");
                }
                const char *code = listing ? list_files_code
                                   : writing ? write_file_code
                                             : read_file_expression;
                send_result(to, id,
                            session_program(server, client, id_text, to, scoped, session, code,
                                            guest_arguments));
            }
        }
    } else {
        send_error(to, id, RPC_INVALID_PARAMS, "unknown tool");
    }
    free(scoped);
    free(id_text);
}

/* --- tasks (the Tasks extension, SEP-2663) ----------------------------------------------- */

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
static int becomes_task(const reply *to, const cJSON *params) {
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
    const char *kind = argument_string(result, "resultType");
    const cJSON *requests = cJSON_GetObjectItemCaseSensitive(result, "inputRequests");
    const char *state = argument_string(result, "requestState");
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
    stateless_request request = {(int)(sizeof log_levels / sizeof *log_levels), capabilities};
    reply to = {capture_response, t, &request, 0}; /* its questions go through tasks/update */
    cJSON *id = cJSON_CreateString(t->id);
    cJSON *response = NULL;
    for (;;) {
        call_tool(server, t->client, id, &to, t->params);
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
    } else if (cJSON_IsObject(result) &&
               strcmp(argument_string(result, "resultType") ? argument_string(result, "resultType")
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

    /* Detached under the lock first: tasks/cancel and stop_tasks reach the
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
static void start_task(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                       const cJSON *params) {
    task *t = calloc(1, sizeof *t);
    if (!t || random_session_id(t->id) != 0 || !(t->principal = strdup(client->principal)) ||
        !(t->params = cJSON_Duplicate(params, 1)) ||
        !(t->client = mcp_client_new(server, client->principal))) {
        if (t && t->client) mcp_client_free(t->client);
        task_free(t);
        send_error(to, id, RPC_INTERNAL_ERROR, "out of memory for a task");
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
        send_error(to, id, RPC_INTERNAL_ERROR, message);
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
        send_error(to, id, RPC_SERVER_BUSY, why);
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
    send_result(to, id, result);
}

/* At shutdown: running tasks are stopped (their workers killed) and end
 * failed as interrupted, in the store too; then every task is freed. */
static void stop_tasks(mcp_server *server) {
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
    const char *task_id = argument_string(params, "taskId");
    if (!task_id || !task_id[0] || strlen(task_id) > MAX_SESSION_NAME) {
        send_error(to, id, RPC_INVALID_PARAMS,
                   "invalid params: taskId must be the string a tools/call returned");
        return NULL;
    }
    return task_id;
}

static void task_method(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                        const char *method, const cJSON *params) {
    if (!declares_tasks(to->stateless->capabilities)) {
        cJSON *data = cJSON_CreateObject();
        cJSON *required = cJSON_AddObjectToObject(data, "requiredCapabilities");
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(required, "extensions"), TASKS_EXTENSION);
        send_error_data(to, id, RPC_MISSING_CAPABILITY,
                        "missing required client capability: declare the extension "
                        TASKS_EXTENSION " in clientCapabilities.extensions to use tasks/*",
                        data);
        return;
    }
    const char *task_id = task_id_argument(params, to, id);
    if (!task_id) return;
    int updating = strcmp(method, "tasks/update") == 0;
    if (updating && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(params, "inputResponses"))) {
        send_error(to, id, RPC_INVALID_PARAMS, "invalid params: inputResponses must be an object");
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
            send_error(to, id, RPC_INTERNAL_ERROR, message);
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
        send_error(to, id, RPC_INVALID_PARAMS,
                   "invalid params: no such task (unknown, expired, or not this client's)");
    } else if (detailed) {
        send_result(to, id, detailed);
    } else {
        /* tasks/cancel and tasks/update: an empty acknowledgement (the
         * answers went to the task's thread above; the next poll shows
         * their effect). */
        send_result(to, id, NULL);
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
    if (failed) {
        char message[CAP_ERROR_SIZE + 64];
        snprintf(message, sizeof message, "internal error: the store could not be read: %s", error);
        send_error(to, id, RPC_INTERNAL_ERROR, message);
    } else if (!view.found) {
        send_error(to, id, RPC_INVALID_PARAMS,
                   "invalid params: no such task (unknown, expired, or not this client's)");
    } else if (cancelled) {
        /* notifications/cancelled: no response, as the specification asks. */
    } else if (strcmp(view.status, "working") == 0) {
        send_error(to, id, RPC_INTERNAL_ERROR, "the server stopped before the task ended");
    } else if (strcmp(view.status, "completed") == 0) {
        cJSON *result = view.payload ? cJSON_Parse(view.payload) : NULL;
        if (!cJSON_IsObject(result)) {
            cJSON_Delete(result);
            send_error(to, id, RPC_INTERNAL_ERROR, "the task's stored result is unreadable");
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(result, "resultType");
            cJSON *meta = cJSON_GetObjectItemCaseSensitive(result, "_meta");
            if (!cJSON_IsObject(meta)) meta = cJSON_AddObjectToObject(result, "_meta");
            cJSON_AddStringToObject(
                cJSON_AddObjectToObject(meta, "io.modelcontextprotocol/related-task"), "taskId",
                task_id);
            send_result(to, id, result);
        }
    } else if (strcmp(view.status, "failed") == 0) {
        cJSON *rpc_error = view.payload ? cJSON_Parse(view.payload) : NULL;
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(rpc_error, "code");
        const char *message = argument_string(rpc_error, "message");
        send_error(to, id, cJSON_IsNumber(code) ? (int)code->valuedouble : RPC_INTERNAL_ERROR,
                   message ? message : "the task failed");
        cJSON_Delete(rpc_error);
    } else {
        send_error(to, id, RPC_INTERNAL_ERROR, "the task was cancelled: it has no result");
    }
    task_view_clear(&view);
    free(id_text);
}

/* tasks/get, tasks/result, tasks/list and tasks/cancel of 2025-11-25, where
 * tasks are in core: the same tasks, in that revision's shapes.  tasks/list
 * lists this process's tasks of the principal (a store's older ones are
 * reached by id). */
static void legacy_task_method(mcp_server *server, mcp_client *client, const cJSON *id,
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
        send_result(to, id, result);
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
            send_error(to, id, RPC_INVALID_PARAMS, message);
            task_view_clear(&before);
            return;
        }
        task_view_clear(&before);
        cJSON *stateless_capabilities = cJSON_CreateObject();
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(stateless_capabilities, "extensions"),
                                TASKS_EXTENSION);
        stateless_request request = {0, stateless_capabilities};
        reply quiet = {capture_nothing, NULL, &request, 0};
        task_method(server, client, id, &quiet, "tasks/cancel", params);
        cJSON_Delete(stateless_capabilities);
    }
    task_view view;
    char error[CAP_ERROR_SIZE] = "";
    if (view_task(server, client->principal, task_id, &view, error) != 0) {
        char message[CAP_ERROR_SIZE + 64];
        snprintf(message, sizeof message, "internal error: the store could not be read: %s", error);
        send_error(to, id, RPC_INTERNAL_ERROR, message);
    } else if (!view.found) {
        send_error(to, id, RPC_INVALID_PARAMS,
                   "invalid params: no such task (unknown, expired, or not this client's)");
    } else {
        send_result(to, id, legacy_task(task_id, view.status, view.message, view.created_ms,
                                        view.updated_ms));
    }
    task_view_clear(&view);
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
        return argument_string(params, "name");
    if (strcmp(method, "resources/read") == 0) return argument_string(params, "uri");
    /* The Tasks extension's own: load balancers route on the task id. */
    if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/update") == 0 ||
        strcmp(method, "tasks/cancel") == 0)
        return argument_string(params, "taskId");
    return NULL;
}

/* A 2026-07-28 request's envelope, in the order the specification's
 * errors imply: its headers' presence, its _meta, headers against body,
 * the version, the method.  0, or the HTTP status of the error sent.
 * `headers` is NULL off HTTP. */
static int check_stateless(const reply *to, const cJSON *id, const char *method,
                           const cJSON *params, const mcp_http_headers *headers) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(meta, META_PROTOCOL);
    const cJSON *capabilities = cJSON_GetObjectItemCaseSensitive(meta, META_CAPABILITIES);
    if (headers && !headers->protocol_version) {
        send_error(to, id, RPC_HEADER_MISMATCH,
                   "header mismatch: the MCP-Protocol-Version header is missing");
        return 400;
    }
    if (!cJSON_IsString(version) || !cJSON_IsObject(capabilities)) {
        send_error(to, id, RPC_INVALID_PARAMS,
                   "invalid params: a 2026-07-28 request carries params._meta with \""
                   META_PROTOCOL "\" (a string) and \"" META_CAPABILITIES "\" (an object)");
        return 400;
    }
    if (headers && !header_equals(headers->protocol_version, version->valuestring)) {
        send_error(to, id, RPC_HEADER_MISMATCH,
                   "header mismatch: MCP-Protocol-Version differs from params._meta's "
                   "protocol version");
        return 400;
    }
    if (strcmp(version->valuestring, MCP_STATELESS_PROTOCOL) != 0) {
        cJSON *data = cJSON_CreateObject();
        cJSON *supported = cJSON_AddArrayToObject(data, "supported");
        cJSON_AddItemToArray(supported, cJSON_CreateString(MCP_STATELESS_PROTOCOL));
        cJSON_AddStringToObject(data, "requested", version->valuestring);
        send_error_data(to, id, RPC_UNSUPPORTED_VERSION,
                        "unsupported protocol version: per-request _meta speaks "
                        MCP_STATELESS_PROTOCOL
                        " (2025-03-26 to 2025-11-25 are spoken after initialize)",
                        data);
        return 400;
    }
    if (headers) {
        const char *name = request_name(method, params);
        if (!headers->method || !header_equals(headers->method, method)) {
            send_error(to, id, RPC_HEADER_MISMATCH,
                       "header mismatch: the Mcp-Method header must repeat the body's method");
            return 400;
        }
        if (name && (!headers->name || !header_equals(headers->name, name))) {
            send_error(to, id, RPC_HEADER_MISMATCH,
                       "header mismatch: the Mcp-Name header must repeat the body's params.name "
                       "(params.uri for resources/read)");
            return 400;
        }
    }
    if (!stateless_method_known(method)) {
        send_error(to, id, RPC_METHOD_NOT_FOUND,
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
    if (cJSON_IsObject(message) && cJSON_IsString(method) && is_valid_id(id) &&
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
    stateless_request request = {(int)(sizeof log_levels / sizeof *log_levels),
                                 cJSON_GetObjectItemCaseSensitive(meta, META_CAPABILITIES)};
    if (cJSON_IsString(level) && level_index(level->valuestring) >= 0)
        request.log_level = level_index(level->valuestring);
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
        send_result(&to, id, result);
    } else if (strcmp(method, "tools/list") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON_AddItemToObject(result, "tools", tool_definitions(server));
        /* The same for every client, changing only with the server's flags. */
        cJSON_AddNumberToObject(result, "ttlMs", TOOLS_LIST_TTL_MS);
        cJSON_AddStringToObject(result, "cacheScope", "public");
        send_result(&to, id, result);
    } else if (strncmp(method, "tasks/", 6) == 0) {
        task_method(server, client, id, &to, method, params);
    } else {
        call_tool(server, client, id, &to, params);
    }
}

/* The version agreed and the client's capabilities are remembered: the
 * server asks (ask.h) only what the client said it answers.  Elicitation
 * counts when it allows form mode: {} (form, before 2025-11-25 the only
 * one) or {"form": {...}}, not {"url": {...}} alone. */
static void initialize(mcp_client *client, const reply *to, const cJSON *id,
                       const cJSON *params) {
    const char *requested = argument_string(params, "protocolVersion");
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
    send_result(to, id, result);
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
        send_error(&to, NULL, RPC_PARSE_ERROR, "parse error: not valid JSON");
        return;
    }
    if (cJSON_IsArray(message)) {
        send_error(&to, NULL, RPC_INVALID_REQUEST, "batches are not supported (MCP 2025-06-18)");
        cJSON_Delete(message);
        return;
    }
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(message, "jsonrpc");
    const cJSON *method_item = cJSON_GetObjectItemCaseSensitive(message, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(message, "params");
    int valid = cJSON_IsObject(message) && cJSON_IsString(version) &&
                strcmp(version->valuestring, "2.0") == 0 && (!id || is_valid_id(id));
    if (valid && !method_item && id) { /* a response to one of our requests (ask.h) */
        if (client) ask_answer(client->asks, message);
        cJSON_Delete(message);
        return;
    }
    if (!valid || !cJSON_IsString(method_item) || (params && !cJSON_IsObject(params))) {
        send_error(&to, is_valid_id(id) ? id : NULL, RPC_INVALID_REQUEST,
                   "invalid request: expected a JSON-RPC 2.0 object with a string method and "
                   "object params");
        cJSON_Delete(message);
        return;
    }
    const char *method = method_item->valuestring;
    if (!id) { /* notifications: never answered */
        if (strcmp(method, "notifications/cancelled") == 0) {
            const cJSON *request = cJSON_GetObjectItemCaseSensitive(params, "requestId");
            if (is_valid_id(request)) {
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
        send_result(&to, id, NULL);
    } else if (strcmp(method, "tools/list") == 0) {
        cJSON *result = cJSON_CreateObject();
        cJSON *tools = tool_definitions(server);
        /* run_python_code may run as a task (2025-11-25's tasks in core). */
        cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_GetArrayItem(tools, 0), "execution"),
                                "taskSupport", "optional");
        cJSON_AddItemToObject(result, "tools", tools);
        send_result(&to, id, result);
    } else if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/result") == 0 ||
               strcmp(method, "tasks/list") == 0 || strcmp(method, "tasks/cancel") == 0) {
        legacy_task_method(server, client, id, &to, method, params);
    } else if (strcmp(method, "tools/call") == 0) {
        call_tool(server, client, id, &to, params);
    } else if (strcmp(method, "logging/setLevel") == 0) {
        const char *level = argument_string(params, "level");
        int index = level ? level_index(level) : -1;
        if (index < 0) {
            send_error(&to, id, RPC_INVALID_PARAMS, "level must be one of debug, info, notice, "
                                                    "warning, error, critical, alert, emergency");
        } else {
            client->log_level = index;
            send_result(&to, id, NULL);
        }
    } else {
        send_error(&to, id, RPC_METHOD_NOT_FOUND, "method not found");
    }
    cJSON_Delete(message);
}

/* --- /metrics -------------------------------------------------------------------- */

char *mcp_server_metrics(mcp_server *server) {
    buffer out = {0};
    char line[256];
    static const char runs_help[] =
        "# HELP capsule_runs_total Runs of run_python_code, by how they ended.\n"
        "# TYPE capsule_runs_total counter\n";
    int rc = buffer_append(&out, runs_help, sizeof runs_help - 1);
    pthread_mutex_lock(&server->lock);
    int busy = 0;
    for (int i = 0; i < server->slot_count; i++) busy += server->slots[i].busy;
    for (int status = 0; rc == 0 && status <= CAP_STATUS_CANCELLED; status++) {
        int length = snprintf(line, sizeof line, "capsule_runs_total{status=\"%s\"} %llu\n",
                              cap_status_name((cap_status)status),
                              (unsigned long long)server->runs[status]);
        rc = buffer_append(&out, line, (size_t)length);
    }
    int length = snprintf(
        line, sizeof line,
        "# HELP capsule_runs_refused_total Calls refused: every worker busy, the queue full.\n"
        "# TYPE capsule_runs_refused_total counter\ncapsule_runs_refused_total %llu\n",
        (unsigned long long)server->runs_refused);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    length = snprintf(line, sizeof line,
                      "# HELP capsule_workers Sandboxes running calls, and those busy.\n"
                      "# TYPE capsule_workers gauge\ncapsule_workers %d\n"
                      "capsule_workers_busy %d\n", server->slot_count, busy);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    length = snprintf(line, sizeof line,
                      "# HELP capsule_calls_waiting Calls queued for a worker.\n"
                      "# TYPE capsule_calls_waiting gauge\ncapsule_calls_waiting %d\n"
                      "# HELP capsule_tasks_running Tasks whose run has not ended.\n"
                      "# TYPE capsule_tasks_running gauge\ncapsule_tasks_running %d\n",
                      server->waiting, server->tasks_running);
    if (rc == 0) rc = buffer_append(&out, line, (size_t)length);
    pthread_mutex_unlock(&server->lock);
    char error[CAP_ERROR_SIZE];
    char *store = cap_config_store_metrics(server->config, error);
    if (rc == 0 && store) rc = buffer_append(&out, store, strlen(store));
    else if (rc == 0) { /* the store failed: the server's numbers still, and why */
        length = snprintf(line, sizeof line, "# the store failed: %.200s\n", error);
        rc = buffer_append(&out, line, (size_t)length);
    }
    free(store);
    if (rc != 0 || buffer_append(&out, "", 1) != 0) {
        buffer_free(&out);
        return NULL;
    }
    return out.data;
}
