/*
 * MCP's stdio transport: newline-delimited JSON-RPC on stdin and stdout.
 *
 * Tool calls run on threads of their own so that the reader stays free for
 * cancellations and pings while code runs; everything else is answered in
 * order on the reader's thread.  Writes of whole lines are serialised.
 *
 * The call threads are kept between calls (up to KEEP_RUNNERS idle ones):
 * a new thread per call took ≈ 32 µs to start where a waiting one takes
 * ≈ 8, and glibc drops an ending thread's stack pages (MADV_DONTNEED), so
 * each new one faulted its stack in again, at ≈ 12 µs a page on the 2-core
 * test machine.
 */
#include "transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEP_RUNNERS 4 /* idle call threads kept for the next calls */

typedef struct call {
    char *message;
    size_t size;
    struct call *next;
} call;

typedef struct stdio_state {
    mcp_server *server;
    mcp_client *client;
    pthread_mutex_t lock; /* stdout, and `running` */
    pthread_cond_t idle;
    int running;
    /* The calls waiting for a thread, and the threads that run them. */
    pthread_mutex_t queue_lock;
    pthread_cond_t queued; /* a call was queued, or `closing` */
    pthread_cond_t ended;  /* a runner ended */
    call *first, *last;
    int waiting_calls;
    int waiting_runners;
    int runners;
    int closing;
} stdio_state;

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

/* A call thread: runs queued calls one after another, waits for more while
 * fewer than KEEP_RUNNERS others wait, and ends when the reader closes. */
static void *run_calls(void *argument) {
    stdio_state *state = argument;
    pthread_mutex_lock(&state->queue_lock);
    for (;;) {
        while (!state->first && !state->closing) {
            state->waiting_runners++;
            pthread_cond_wait(&state->queued, &state->queue_lock);
            state->waiting_runners--;
        }
        call *c = state->first;
        if (!c) break; /* closing */
        state->first = c->next;
        if (!state->first) state->last = NULL;
        state->waiting_calls--;
        pthread_mutex_unlock(&state->queue_lock);
        mcp_handle_streaming(state->server, state->client, c->message, c->size, write_line, state,
                             1);
        free(c->message);
        free(c);
        pthread_mutex_lock(&state->lock);
        if (--state->running == 0) pthread_cond_broadcast(&state->idle);
        pthread_mutex_unlock(&state->lock);
        pthread_mutex_lock(&state->queue_lock);
        if (!state->first && state->waiting_runners >= KEEP_RUNNERS) break;
    }
    state->runners--;
    pthread_cond_broadcast(&state->ended);
    pthread_mutex_unlock(&state->queue_lock);
    return NULL;
}

/* Queues a tool call for a waiting thread, or for a new one when every
 * thread is busy; 0, or -1 when no thread could be had. */
static int queue_call(stdio_state *state, char *message, size_t size) {
    call *c = malloc(sizeof *c);
    if (!c) return -1;
    *c = (call){message, size, NULL};
    pthread_mutex_lock(&state->queue_lock);
    int started = 0;
    if (state->waiting_runners <= state->waiting_calls) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&thread, &attributes, run_calls, state) == 0;
        pthread_attr_destroy(&attributes);
        if (!started) {
            pthread_mutex_unlock(&state->queue_lock);
            free(c);
            return -1;
        }
        state->runners++;
    }
    if (state->last)
        state->last->next = c;
    else
        state->first = c;
    state->last = c;
    state->waiting_calls++;
    if (!started) pthread_cond_signal(&state->queued);
    pthread_mutex_unlock(&state->queue_lock);
    return 0;
}

static void dispatch(stdio_state *state, char *message, size_t size) {
    mcp_message_info info;
    mcp_classify(message, size, &info);
    free(info.id);
    if (info.is_tool_call) {
        pthread_mutex_lock(&state->lock);
        state->running++;
        pthread_mutex_unlock(&state->lock);
        if (queue_call(state, message, size) == 0) return;
        pthread_mutex_lock(&state->lock);
        state->running--;
        pthread_mutex_unlock(&state->lock);
        /* No thread to spare: answer in line instead. */
    }
    mcp_handle_streaming(state->server, state->client, message, size, write_line, state, 1);
    free(message);
}

int mcp_serve_stdio(mcp_server *server, const mcp_transport_options *options, char *error) {
    /* One client on one pipe: one principal. */
    stdio_state state = {.server = server,
                         .client = mcp_client_new(server, "stdio"),
                         .lock = PTHREAD_MUTEX_INITIALIZER,
                         .idle = PTHREAD_COND_INITIALIZER,
                         .queue_lock = PTHREAD_MUTEX_INITIALIZER,
                         .queued = PTHREAD_COND_INITIALIZER,
                         .ended = PTHREAD_COND_INITIALIZER};
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
    /* Every call is done; the waiting threads end before `state` does. */
    pthread_mutex_lock(&state.queue_lock);
    state.closing = 1;
    pthread_cond_broadcast(&state.queued);
    while (state.runners) pthread_cond_wait(&state.ended, &state.queue_lock);
    pthread_mutex_unlock(&state.queue_lock);
    mcp_client_free(state.client);
    return CAP_OK;
}
