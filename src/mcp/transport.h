/*
 * The two transports of the MCP server (stdio.c, http.c).  Each returns
 * when its client is gone (stdio) or the server is asked to stop (HTTP:
 * SIGINT or SIGTERM).
 */
#ifndef CAPSULE_MCP_TRANSPORT_H
#define CAPSULE_MCP_TRANSPORT_H

#include "mcp.h"

typedef struct mcp_transport_options {
    size_t max_message_bytes; /* larger messages are refused (HTTP 413) */
    /* HTTP only */
    const char *host;           /* address to bind, default 127.0.0.1 */
    int port;
    const char *const *tokens;  /* bearer tokens, each its own principal; none only */
    size_t token_count;         /* with allow_no_auth */
    int allow_no_auth;          /* explicitly disabled, and only on loopback */
    int max_connections;        /* open at once (0: 4096; bounded by RLIMIT_NOFILE) */
    int max_connections_per_address; /* from one client address (0: 64) */
    const char *const *origins; /* allowed Origin values besides loopback ones */
    size_t origin_count;
    void (*on_listening)(int port); /* called once the socket is bound */
} mcp_transport_options;

int mcp_serve_stdio(mcp_server *server, const mcp_transport_options *options, char *error);
int mcp_serve_http(mcp_server *server, const mcp_transport_options *options, char *error);

#endif
