/*
 * MCP's stdio transport: newline-delimited JSON-RPC on stdin and stdout.
 *
 * Tool calls run on their own threads so that the reader stays free for
 * cancellations and pings while code runs; everything else is answered in
 * order on the reader's thread.  Writes of whole lines are serialised.
 */
#include "transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct stdio_state {
    mcp_server *server;
    mcp_client *client;
    pthread_mutex_t lock; /* stdout, and `running` */
    pthread_cond_t idle;
    int running;
} stdio_state;

typedef struct call {
    stdio_state *state;
    char *message;
    size_t size;
} call;

static void write_line(void *context, const char *json) {
    stdio_state *state = context;
    pthread_mutex_lock(&state->lock);
    size_t length = strlen(json);
    const char *data = json;
    while (length) { /* a closed stdout loses messages, not the server */
        ssize_t n = write(STDOUT_FILENO, data, length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        data += n;
        length -= (size_t)n;
    }
    if (!length) while (write(STDOUT_FILENO, "\n", 1) < 0 && errno == EINTR) continue;
    pthread_mutex_unlock(&state->lock);
}

static void *run_call(void *argument) {
    call *c = argument;
    stdio_state *state = c->state;
    mcp_handle_streaming(state->server, state->client, c->message, c->size, write_line, state, 1);
    free(c->message);
    free(c);
    pthread_mutex_lock(&state->lock);
    if (--state->running == 0) pthread_cond_broadcast(&state->idle);
    pthread_mutex_unlock(&state->lock);
    return NULL;
}

static void dispatch(stdio_state *state, char *message, size_t size) {
    mcp_message_info info;
    mcp_classify(message, size, &info);
    free(info.id);
    if (info.is_tool_call) {
        call *c = malloc(sizeof *c);
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        if (c) *c = (call){state, message, size};
        pthread_mutex_lock(&state->lock);
        state->running++;
        pthread_mutex_unlock(&state->lock);
        if (c && pthread_create(&thread, &attributes, run_call, c) == 0) {
            pthread_attr_destroy(&attributes);
            return;
        }
        pthread_attr_destroy(&attributes);
        pthread_mutex_lock(&state->lock);
        state->running--;
        pthread_mutex_unlock(&state->lock);
        free(c);
        /* No thread to spare: answer in line instead. */
    }
    mcp_handle_streaming(state->server, state->client, message, size, write_line, state, 1);
    free(message);
}

int mcp_serve_stdio(mcp_server *server, const mcp_transport_options *options, char *error) {
    /* One client on one pipe: one principal. */
    stdio_state state = {server, mcp_client_new(server, "stdio"), PTHREAD_MUTEX_INITIALIZER,
                         PTHREAD_COND_INITIALIZER, 0};
    if (!state.client) {
        snprintf(error, CAP_ERROR_SIZE, "out of memory");
        return CAP_ENOMEM;
    }
    size_t limit = options->max_message_bytes;
    char *line = NULL;
    size_t length = 0, capacity = 0;
    int too_long = 0, c;
    for (;;) {
        c = getchar_unlocked(); /* only this thread reads stdin */
        if (c != EOF && c != '\n') {
            if (too_long) continue;
            if (length + 1 >= capacity) {
                size_t grown_capacity = capacity ? capacity * 2 : 4096;
                char *grown = realloc(line, grown_capacity);
                if (!grown) {
                    too_long = 1;
                    continue;
                }
                line = grown;
                capacity = grown_capacity;
            }
            line[length++] = (char)c;
            if (length > limit) too_long = 1;
            continue;
        }
        if (too_long) {
            write_line(&state, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                               "\"message\":\"message too large\"}}");
        } else if (length && !(length == 1 && line[0] == '\r')) {
            char *message = malloc(length + 1);
            if (message) {
                memcpy(message, line, length);
                message[length] = '\0';
                dispatch(&state, message, length);
            }
        }
        length = 0;
        too_long = 0;
        if (c == EOF) break;
    }
    free(line);
    /* stdin closed: the client is gone, so are its runs. */
    mcp_cancel_client(server, state.client);
    pthread_mutex_lock(&state.lock);
    while (state.running) pthread_cond_wait(&state.idle, &state.lock);
    pthread_mutex_unlock(&state.lock);
    mcp_client_free(state.client);
    return CAP_OK;
}
