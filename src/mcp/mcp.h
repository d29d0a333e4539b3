/*
 * The MCP server: JSON-RPC and the Model Context Protocol over capsule's
 * library API, independent of the transport (stdio.c, http.c).
 *
 * A server owns `workers` sandboxes, created before any thread starts (the
 * library's rule), and runs one tool call on each at a time; further calls
 * wait in a bounded queue, beyond which they get a clear error.  Messages
 * for a client go through the `mcp_send_fn` the transport passes with each
 * message, which must be safe to call from any thread.
 */
#ifndef CAPSULE_MCP_H
#define CAPSULE_MCP_H

#include "capsule.h"

#include <stddef.h>

#define MCP_LATEST_PROTOCOL "2025-11-25"
/* The stateless revision: no initialize, no Mcp-Session-Id; every request
 * carries its protocol version and client capabilities in params._meta. */
#define MCP_STATELESS_PROTOCOL "2026-07-28"

typedef struct mcp_server mcp_server;
typedef struct mcp_client mcp_client;

typedef struct mcp_server_options {
    int workers;      /* runs in parallel (default 2) */
    int queue;        /* calls allowed to wait for a worker (default 16) */
    cap_limits limits; /* per run; timeout_seconds in a call may only lower the wall limit */
    int installs_packages; /* the config has package sources: the tool says so */
    int durable;           /* the config has a store: sessions survive restarts, and
                              fork_session and session_history are offered */
} mcp_server_options;

/* Sends one JSON-RPC message (a complete JSON text) to the client. */
typedef void (*mcp_send_fn)(void *context, const char *json);

int mcp_server_new(cap_config *config, const mcp_server_options *options, mcp_server **out,
                   char *error);
void mcp_server_free(mcp_server *server);

/* One client: its log level, and the principal it acts for.  The stdio
 * transport has one; the HTTP transport one per Mcp-Session-Id.
 *
 * A principal is whoever owns Python sessions: a string the transport
 * chooses (stdio: one; HTTP: one per bearer token, or per MCP session
 * without a token), copied.  A client reaches only its principal's
 * sessions: the session_id values it names are scoped by the principal, so
 * the same name from two principals means two interpreters, and an id
 * another principal created is, to this one, a session that does not exist.
 * NULL when out of memory. */
mcp_client *mcp_client_new(mcp_server *server, const char *principal);
/* Cancels the client's calls in progress and frees it once they end. */
void mcp_client_free(mcp_client *client);

/* Handles one incoming message (`text` of `size` bytes, not necessarily
 * NUL-terminated).  Responses and notifications go to `send`; tool calls
 * block until the run ends.  A response from the client (to a request of
 * the server's) wakes the call that asked it. */
void mcp_handle(mcp_server *server, mcp_client *client, const char *text, size_t size,
                mcp_send_fn send, void *context);
/* The same, where `send` can also carry the server's own requests to the
 * client while the message is handled (stdio; an HTTP call's SSE stream)
 * and the client's responses come back through mcp_handle on the same
 * `client`: with `can_ask`, a tool call may ask the client to approve a
 * host-function call (elicitation) or to describe a file (sampling). */
void mcp_handle_streaming(mcp_server *server, mcp_client *client, const char *text, size_t size,
                          mcp_send_fn send, void *context, int can_ask);

/* The server's numbers in Prometheus' text format (HTTP GET /metrics):
 * runs by status, refusals, workers busy, calls waiting, tasks running,
 * then the store's (cap_config_store_metrics).  Malloc'd; NULL when out of
 * memory. */
char *mcp_server_metrics(mcp_server *server);

/* Kinds of message, for transports that treat them differently. */
typedef enum {
    MCP_MESSAGE_INVALID,      /* not JSON, or not a JSON-RPC 2.0 object */
    MCP_MESSAGE_REQUEST,      /* has an id and a method */
    MCP_MESSAGE_NOTIFICATION, /* a method without an id */
    MCP_MESSAGE_RESPONSE      /* a reply from the client to one of the server's requests */
} mcp_message_kind;

typedef struct mcp_message_info {
    mcp_message_kind kind;
    int is_initialize; /* an initialize request */
    int is_tool_call;  /* tools/call or a tasks method: may run long, or wait on the store */
    char *id;          /* a request's id as JSON text (caller frees), else NULL */
    int stateless;     /* params._meta names a protocol version: a 2026-07-28 message */
} mcp_message_info;
void mcp_classify(const char *text, size_t size, mcp_message_info *info);

/* Cancels one request of `client` in progress (its id as JSON text), as
 * when the connection that carried it closes. */
void mcp_cancel_request(mcp_server *server, mcp_client *client, const char *id);

/* Cancels every call of `client` in progress (e.g. its connection closed). */
void mcp_cancel_client(mcp_server *server, mcp_client *client);

/* True if `version` is a legacy (initialize-based) revision this server
 * speaks; MCP_STATELESS_PROTOCOL is spoken without initialize. */
int mcp_protocol_supported(const char *version);

/* The HTTP headers a 2026-07-28 request must carry (NULL when absent). */
typedef struct mcp_http_headers {
    const char *protocol_version; /* MCP-Protocol-Version */
    const char *method;           /* Mcp-Method */
    const char *name;             /* Mcp-Name */
} mcp_http_headers;

/* For HTTP, before a 2026-07-28 request is handled (on the event loop, so
 * that a refusal gets its HTTP status even for a tool call answered later):
 * checks its _meta, its headers against its body, its version and its
 * method.  0 when it may go on to mcp_handle; else the error response went
 * to `send` and the return value is its HTTP status (400 or 404). */
int mcp_check_stateless(const char *text, size_t size, const mcp_http_headers *headers,
                        mcp_send_fn send, void *context);

#endif
