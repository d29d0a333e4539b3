/*
 * The MCP server's parts, shared by its files and by nothing else: the
 * server and client structures, the reply a handler writes to, and the
 * functions one part calls in another.
 *
 *   server.c         the pool of sandboxes, clients, initialize, dispatch
 *   jsonrpc.c        JSON-RPC messages out, text and base64 helpers
 *   run_tool.c       run_python_code: a run, its output, approvals, its result
 *   tools.c          the tool list and tools/call for every tool
 *   job_tools.c      submit_job, get_job, cancel_job, list_jobs, emit_event
 *   request_state.c  2026-07-28 input_required: the signed requestState
 *   describe_tool.c  describe: an endpoint, the client's model, or the file
 *   tasks.c          the Tasks extension and 2025-11-25's tasks
 *   metrics.c        GET /metrics
 */
#ifndef CAPSULE_MCP_SERVER_INTERNAL_H
#define CAPSULE_MCP_SERVER_INTERNAL_H

#include "mcp.h"
#include "ask.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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

/* RFC 5424 severities, as MCP's logging levels (run_tool.c). */
#define MCP_LOG_LEVEL_COUNT 8
extern const char *const mcp_log_levels[MCP_LOG_LEVEL_COUNT];

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
    /* The tidier (server.c): cap_sandbox_tidy on idle sandboxes. */
    pthread_t tidier;
    int tidier_attempted, tidier_started, tidier_stop;
    pthread_cond_t tidier_wake; /* on CLOCK_MONOTONIC */
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

typedef struct text {
    char *data;
    size_t size, capacity;
} text;

/* Host-function approval over input_required (2026-07-28): the calls the
 * client approved or declined in earlier rounds, and the first call of this
 * run that needs an answer.  A [function, arguments] pair each. */
typedef struct approval_state {
    int can_ask;       /* the client declared elicitation: unapproved calls are asked */
    cJSON *approved;   /* array of pairs */
    cJSON *declined;   /* array of pairs */
    char *ask_function, *ask_arguments; /* the call to ask about, once refused */
} approval_state;

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

/* server.c */
int mcp_route_session(mcp_server *server, const char *session);
int mcp_session_known(const mcp_server *server, const char *session);
void mcp_forget_route(mcp_server *server, const char *session);
int mcp_acquire_slot(mcp_server *server, mcp_client *client, const char *id, const char *session);
void mcp_release_slot(mcp_server *server, mcp_client *client, int slot_index);
void mcp_client_call_begins(mcp_client *client);
void mcp_client_call_ends(mcp_client *client);

/* jsonrpc.c */
cJSON *mcp_envelope(void);
void mcp_send_result(const reply *to, const cJSON *id, cJSON *result);
void mcp_send_error_data(const reply *to, const cJSON *id, int code, const char *text, cJSON *data);
void mcp_send_error(const reply *to, const cJSON *id, int code, const char *text);
void mcp_send_notification(const reply *to, const char *method, cJSON *params);
int mcp_is_valid_id(const cJSON *id);
void mcp_text_append(text *t, const char *data, size_t size);
void mcp_text_append_string(text *t, const char *s);
char *mcp_unscope(const char *message, const char *scoped, const char *name);
void mcp_append_escaped(text *out, const char *body, size_t size, const char *tag);

/* run_tool.c */
int mcp_level_index(const char *name);
const char *mcp_argument_string(const cJSON *arguments, const char *name);
void mcp_approval_question(const char *function, const char *arguments, char *out, size_t size);
cJSON *mcp_approval_schema(void);
void mcp_run_code(mcp_server *server, mcp_client *client, const char *id, const reply *to,
                  const cJSON *progress_token, const run_request *request, run_outcome *outcome);
cJSON *mcp_format_run_result(const cap_result *result, const text *output_text, const char *scoped,
                             const char *name);
cJSON *mcp_tool_error(const char *message);
cJSON *mcp_tool_text(const char *message, cJSON *structured);

/* tools.c */
cJSON *mcp_tool_definitions(const mcp_server *server);
int mcp_random_session_id(char out[2 * SESSION_ID_BYTES + 1]);
cJSON *mcp_session_program(mcp_server *server, mcp_client *client, const char *id, const reply *to,
                           const char *scoped, const char *name, const char *code,
                           cJSON *arguments_for_guest);
void mcp_call_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                   const cJSON *params);

/* job_tools.c */
int mcp_is_job_tool(const char *name);
void mcp_job_tool(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                  const char *name, const cJSON *arguments);

/* request_state.c */
char *mcp_sign_state(const mcp_server *server, const cJSON *payload);
int mcp_verified_state(const mcp_server *server, const mcp_client *client, const cJSON *params,
                       const cJSON *arguments, const char *tool, cJSON **payload_out,
                       char *message);
int mcp_resume_approval(const mcp_server *server, const mcp_client *client, const cJSON *params,
                        const cJSON *arguments, approval_state *approval, char *message);
cJSON *mcp_new_state_payload(const mcp_client *client, const cJSON *arguments, const char *tool);
cJSON *mcp_approval_request(const mcp_server *server, const mcp_client *client,
                            const cJSON *arguments, const approval_state *approval);

/* describe_tool.c */
void mcp_describe_tool(mcp_server *server, mcp_client *client, const cJSON *id, const char *id_text,
                       const reply *to, const cJSON *params, const char *scoped,
                       const char *session, const char *path, const char *question);

/* tasks.c */
int mcp_becomes_task(const reply *to, const cJSON *params);
void mcp_start_task(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                    const cJSON *params);
void mcp_stop_tasks(mcp_server *server);
void mcp_task_method(mcp_server *server, mcp_client *client, const cJSON *id, const reply *to,
                     const char *method, const cJSON *params);
void mcp_legacy_task_method(mcp_server *server, mcp_client *client, const cJSON *id,
                            const reply *to, const char *method, const cJSON *params);

#endif
