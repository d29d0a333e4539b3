/*
 * mcp_client.h — capsule as an MCP *client* of upstream servers (code
 * mode): one connection per server of an `mcpServers` config, over stdio
 * (a spawned program, no shell), Streamable HTTP, or the 2024-11-05
 * HTTP+SSE transport.  Everything an upstream
 * sends is untrusted: every message is parsed and checked, and a server
 * that crashes, hangs, or sends garbage or too much is cut off (a stdio
 * server is killed) and reconnected at the next request.
 */
#ifndef CAP_MCP_CLIENT_H
#define CAP_MCP_CLIENT_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct mcp_upstream mcp_upstream;

typedef enum {
    MCP_UPSTREAM_OK = 0,
    MCP_UPSTREAM_FAILED = 1,    /* transport or protocol failure: the message says which */
    MCP_UPSTREAM_TIMEOUT = 2,   /* no answer in time: the connection was cut */
    MCP_UPSTREAM_RPC_ERROR = 3, /* the server answered with a JSON-RPC error */
} mcp_upstream_status;

/* Connects to the server `name` described by `spec` (one entry of
 * "mcpServers": {"command", "args", "env"} or {"url", "headers", "type"}), runs
 * the initialize handshake and lists its tools (`*tools`: a cJSON array of
 * the servers' tool objects, unchecked, the caller's to free).  Returns a
 * mcp_upstream_status with a message in `error` (CAP_ERROR_SIZE bytes). */
int mcp_upstream_open(const char *name, const cJSON *spec, double timeout_seconds,
                      mcp_upstream **out, cJSON **tools, char *error);

/* One JSON-RPC request; `params` is taken (freed here).  On
 * MCP_UPSTREAM_OK, `*result` is the response's "result" (the caller's).
 * `max_bytes` caps the size of the one message awaited.  Safe to call from
 * several threads: requests to a stdio or 2024-11-05 server are
 * serialised, and up to 4 run at once over Streamable HTTP. */
int mcp_upstream_request(mcp_upstream *upstream, const char *method, cJSON *params,
                         double timeout_seconds, size_t max_bytes, cJSON **result, char *error);

/* Ends the connection (a stdio server is killed) and frees it. */
void mcp_upstream_free(mcp_upstream *upstream);

#endif
