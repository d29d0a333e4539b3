/*
 * ask.h — the server's own requests to an MCP client in the middle of a
 * tool call (the legacy revisions, 2025-06-18 to 2025-11-25):
 * elicitation/create to approve a host-function call, sampling/createMessage
 * to ask the client's model for describe.
 *
 * The asking thread (a tool call's own) sends a JSON-RPC request through
 * the call's send function — on stdio a line of stdout, on Streamable HTTP
 * an event of the call's open SSE stream — and blocks until the client's
 * response comes back as an ordinary incoming message (a line of stdin, or
 * a POST of its own), which mcp_handle hands to ask_answer; responses are
 * matched by the id this module chose.  Every wait is bounded: by its
 * timeout, by the number of requests one client may have pending, and by
 * the client going away (ask_cancel, ask_close), which ends it at once.
 *
 * 2026-07-28 has no server-to-client requests (input_required instead);
 * nothing here is used for it.
 */
#ifndef CAPSULE_MCP_ASK_H
#define CAPSULE_MCP_ASK_H

#include <cjson/cJSON.h>

#include "mcp.h"

#define ASK_MAX_PENDING 16 /* requests one client may have unanswered at once */

typedef struct ask_table ask_table;

typedef enum ask_outcome {
    ASK_OK,      /* *result is the response's "result" (an object) */
    ASK_ERROR,   /* the client answered with a JSON-RPC error (message says which) */
    ASK_TIMEOUT, /* no answer in time */
    ASK_GONE,    /* the client went away, or the call was cancelled */
    ASK_BUSY,    /* ASK_MAX_PENDING requests are already waiting */
    ASK_INVALID, /* the client answered with neither a result object nor an error */
} ask_outcome;

/* NULL when out of memory. */
ask_table *ask_table_new(void);
/* Only once no thread waits in ask_request (the client's calls ended). */
void ask_table_free(ask_table *table);

/* Sends the request `method` with `params` (taken, freed here) by `send`
 * and waits up to `timeout_seconds` for the answer.  `call_id` (the
 * tools/call's id as JSON text, or NULL) lets ask_cancel end the wait when
 * that call is cancelled.  ASK_OK with *result (the caller frees it); any
 * other outcome with `error` (CAP_ERROR_SIZE) saying what happened. */
ask_outcome ask_request(ask_table *table, const char *call_id, mcp_send_fn send, void *context,
                        const char *method, cJSON *params, double timeout_seconds,
                        cJSON **result, char *error);

/* A response from the client (`message` has an id and no method): wakes
 * the request it answers.  1 if it matched one still waiting, else 0 (a
 * late answer after a timeout, or an id this server never sent). */
int ask_answer(ask_table *table, const cJSON *message);

/* Ends the waits of the call `call_id` (ASK_GONE). */
void ask_cancel(ask_table *table, const char *call_id);

/* The client is gone: every wait ends (ASK_GONE), and so does every later
 * request, at once. */
void ask_close(ask_table *table);

#endif
