/*
 * MCP's Streamable HTTP transport (spec revision 2025-11-25) on
 * libmicrohttpd, one thread per connection.
 *
 *   POST /mcp    one JSON-RPC message; a request is answered with JSON, or
 *                with an SSE stream when the client accepts one and the
 *                request is a tool call (its log and progress notifications
 *                then arrive before the response).  Notifications: 202.
 *   GET /mcp     an SSE stream for server-initiated messages (capsule sends
 *                none; the stream carries keep-alive comments).
 *   DELETE /mcp  ends the session named by Mcp-Session-Id.
 *
 * Before anything else: Host and Origin must be loopback names (or an
 * allowed origin) — DNS-rebinding protection — and the bearer token must
 * match.  A tool call whose connection closes is cancelled.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define MAX_SESSIONS 256
#define KEEPALIVE_SECONDS 15
#define HEARTBEAT_SECONDS 1
#define CONNECTION_TIMEOUT_SECONDS 60

typedef struct http_session {
    char id[33];
    mcp_client *client;
    int references; /* the table's, plus one per request using it */
    int deleted;
} http_session;

typedef struct http_server {
    mcp_server *server;
    const mcp_transport_options *options;
    int loopback; /* bound to a loopback address: Host is checked too */
    pthread_mutex_t lock;
    http_session *sessions[MAX_SESSIONS];
} http_server;

/* A request being received. */
typedef struct request {
    char *body;
    size_t size;
    int too_large;
} request;

/* --- sessions ------------------------------------------------------------------ */

static void session_release(http_server *http, http_session *session) {
    pthread_mutex_lock(&http->lock);
    int last = --session->references == 0;
    pthread_mutex_unlock(&http->lock);
    if (last) {
        mcp_client_free(session->client);
        free(session);
    }
}

static http_session *session_create(http_server *http) {
    http_session *session = calloc(1, sizeof *session);
    unsigned char bytes[16];
    if (!session || getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes ||
        !(session->client = mcp_client_new(http->server))) {
        free(session);
        return NULL;
    }
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(session->id + 2 * i, 3, "%02x", bytes[i]);
    session->references = 2; /* the table and the caller */
    pthread_mutex_lock(&http->lock);
    int slot = -1;
    for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
        if (!http->sessions[i]) slot = i;
    if (slot >= 0) http->sessions[slot] = session;
    pthread_mutex_unlock(&http->lock);
    if (slot < 0) {
        mcp_client_free(session->client);
        free(session);
        return NULL;
    }
    return session;
}

/* The session with that id, with a reference for the caller; or NULL. */
static http_session *session_find(http_server *http, const char *id) {
    http_session *found = NULL;
    pthread_mutex_lock(&http->lock);
    for (int i = 0; i < MAX_SESSIONS && !found; i++) {
        if (http->sessions[i] && strcmp(http->sessions[i]->id, id) == 0) {
            found = http->sessions[i];
            found->references++;
        }
    }
    pthread_mutex_unlock(&http->lock);
    return found;
}

static void session_delete(http_server *http, http_session *session) {
    int removed = 0;
    pthread_mutex_lock(&http->lock);
    for (int i = 0; i < MAX_SESSIONS; i++) {
        if (http->sessions[i] == session) {
            http->sessions[i] = NULL;
            session->deleted = 1;
            removed = 1;
        }
    }
    pthread_mutex_unlock(&http->lock);
    if (removed) {
        mcp_cancel_client(http->server, session->client);
        session_release(http, session);
    }
}

/* --- checks -------------------------------------------------------------------- */

static int header_contains(struct MHD_Connection *connection, const char *name, const char *word) {
    const char *value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
    return value && strcasestr(value, word) != NULL;
}

/* "localhost", "127.0.0.1" or "[::1]", with an optional ":port". */
static int is_loopback_host(const char *host, size_t length) {
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t n = strlen(names[i]);
        if (length >= n && strncasecmp(host, names[i], n) == 0 &&
            (length == n || host[n] == ':')) {
            for (size_t j = n + 1; j < length; j++)
                if (host[j] < '0' || host[j] > '9') return 0;
            return 1;
        }
    }
    return 0;
}

static int origin_allowed(const http_server *http, const char *origin) {
    for (size_t i = 0; i < http->options->origin_count; i++)
        if (strcmp(origin, http->options->origins[i]) == 0) return 1;
    const char *host = NULL;
    if (strncmp(origin, "http://", 7) == 0) host = origin + 7;
    else if (strncmp(origin, "https://", 8) == 0) host = origin + 8;
    return host && is_loopback_host(host, strlen(host));
}

/* Compares without an early exit, so timing does not reveal the token. */
static int token_matches(const char *given, const char *expected) {
    size_t given_length = strlen(given), expected_length = strlen(expected);
    unsigned char difference = given_length != expected_length;
    for (size_t i = 0; i < expected_length; i++)
        difference |= (unsigned char)(expected[i] ^ (i < given_length ? given[i] : 0));
    return difference == 0;
}

/* --- responses ------------------------------------------------------------------ */

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned status,
                               const char *content_type, const char *body,
                               const char *session_id) {
    struct MHD_Response *response = MHD_create_response_from_buffer(
        body ? strlen(body) : 0, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    if (content_type) MHD_add_response_header(response, "Content-Type", content_type);
    if (session_id) MHD_add_response_header(response, "Mcp-Session-Id", session_id);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, "WWW-Authenticate",
                                "Bearer realm=\"capsule\", error=\"invalid_token\"");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(response, "Allow", "GET, POST, DELETE");
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result respond_error(struct MHD_Connection *connection, unsigned status,
                                     int code, const char *message) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":%d,\"message\":\"%s\"}}", code,
             message);
    return respond(connection, status, "application/json", body, NULL);
}

/* Keeps the last message sent: for a request, its response. */
typedef struct collector {
    char *last;
} collector;

static void collect(void *context, const char *json) {
    collector *c = context;
    free(c->last);
    c->last = strdup(json);
}

/* --- SSE streams of tool calls --------------------------------------------------- */

typedef struct stream {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char *pending;
    size_t pending_size;
    int finished, closed, references;
    http_server *http;
    http_session *session;
    char *message;
    size_t message_size;
    char *id;
} stream;

static void stream_release(stream *s) {
    pthread_mutex_lock(&s->lock);
    int last = --s->references == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last) return;
    session_release(s->http, s->session);
    free(s->pending);
    free(s->message);
    free(s->id);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void stream_send(void *context, const char *json) {
    stream *s = context;
    pthread_mutex_lock(&s->lock);
    if (!s->closed) {
        size_t length = strlen(json);
        char *grown = realloc(s->pending, s->pending_size + length + 32);
        if (grown) {
            s->pending = grown;
            s->pending_size += (size_t)sprintf(s->pending + s->pending_size,
                                               "event: message\ndata: %s\n\n", json);
        }
        pthread_cond_broadcast(&s->changed);
    }
    pthread_mutex_unlock(&s->lock);
}

static void *stream_run(void *argument) {
    stream *s = argument;
    mcp_handle(s->http->server, s->session->client, s->message, s->message_size, stream_send, s);
    pthread_mutex_lock(&s->lock);
    s->finished = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    stream_release(s);
    return NULL;
}

static ssize_t stream_read(void *context, uint64_t position, char *buffer, size_t max) {
    (void)position;
    stream *s = context;
    pthread_mutex_lock(&s->lock);
    /* A silent run still writes a comment every second: MHD notices a
     * client that went away only when a write fails. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HEARTBEAT_SECONDS;
    while (!s->pending_size && !s->finished &&
           pthread_cond_timedwait(&s->changed, &s->lock, &until) == 0)
        continue;
    if (!s->pending_size && !s->finished) {
        static const char heartbeat[] = ": running\n\n";
        pthread_mutex_unlock(&s->lock);
        memcpy(buffer, heartbeat, sizeof heartbeat - 1 < max ? sizeof heartbeat - 1 : max);
        return (ssize_t)(sizeof heartbeat - 1 < max ? sizeof heartbeat - 1 : max);
    }
    ssize_t n;
    if (s->pending_size) {
        size_t take = s->pending_size < max ? s->pending_size : max;
        memcpy(buffer, s->pending, take);
        memmove(s->pending, s->pending + take, s->pending_size - take);
        s->pending_size -= take;
        n = (ssize_t)take;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* The connection is done with the stream: if the call still runs, its
 * client went away, so the run is cancelled. */
static void stream_closed(void *context) {
    stream *s = context;
    pthread_mutex_lock(&s->lock);
    s->closed = 1;
    int running = !s->finished;
    pthread_mutex_unlock(&s->lock);
    if (running) mcp_cancel_request(s->http->server, s->session->client, s->id);
    stream_release(s);
}

static enum MHD_Result start_stream(http_server *http, struct MHD_Connection *connection,
                                    http_session *session, request *r, char *id) {
    stream *s = calloc(1, sizeof *s);
    if (!s) return respond_error(connection, 500, -32603, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->http = http;
    s->session = session; /* the caller's reference passes to the stream */
    s->message = r->body;
    s->message_size = r->size;
    r->body = NULL;
    s->id = id;
    s->references = 2; /* the run thread and the response */
    /* SEP-1699's priming event: an id and no data, and a retry interval. */
    static const char priming[] = "id: 0\nretry: 1000\ndata:\n\n";
    if ((s->pending = malloc(sizeof priming))) {
        memcpy(s->pending, priming, sizeof priming);
        s->pending_size = sizeof priming - 1;
    }
    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_closed);
    pthread_t thread;
    if (!response || pthread_create(&thread, NULL, stream_run, s) != 0) {
        if (response) MHD_destroy_response(response);
        s->references = 1;
        stream_release(s);
        return respond_error(connection, 500, -32603, "cannot start the call");
    }
    pthread_detach(thread);
    MHD_add_response_header(response, "Content-Type", "text/event-stream");
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    MHD_add_response_header(response, "Mcp-Session-Id", session->id);
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}

/* --- the GET stream ----------------------------------------------------------- */

typedef struct listener {
    http_server *http;
    http_session *session;
    int opened;
} listener;

static ssize_t listener_read(void *context, uint64_t position, char *buffer, size_t max) {
    (void)position;
    listener *l = context;
    static const char opening[] = ": capsule sends no server-initiated messages\n\n";
    static const char keepalive[] = ": keep-alive\n\n";
    if (!l->opened) {
        l->opened = 1;
        size_t n = sizeof opening - 1 < max ? sizeof opening - 1 : max;
        memcpy(buffer, opening, n);
        return (ssize_t)n;
    }
    for (int waited = 0; waited < KEEPALIVE_SECONDS; waited++) {
        if (l->session->deleted) return MHD_CONTENT_READER_END_OF_STREAM;
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
    }
    size_t n = sizeof keepalive - 1 < max ? sizeof keepalive - 1 : max;
    memcpy(buffer, keepalive, n);
    return (ssize_t)n;
}

static void listener_closed(void *context) {
    listener *l = context;
    session_release(l->http, l->session);
    free(l);
}

/* --- the handler ---------------------------------------------------------------- */

static enum MHD_Result handle_post(http_server *http, struct MHD_Connection *connection,
                                   request *r) {
    if (r->too_large) return respond_error(connection, 413, -32600, "message too large");
    if (!header_contains(connection, "Content-Type", "application/json"))
        return respond_error(connection, 415, -32600, "Content-Type must be application/json");
    mcp_message_info info;
    mcp_classify(r->body ? r->body : "", r->size, &info);
    if (info.kind == MCP_MESSAGE_INVALID) {
        collector c = {0};
        mcp_handle(http->server, NULL, r->body ? r->body : "", r->size, collect, &c);
        enum MHD_Result result = respond(connection, MHD_HTTP_BAD_REQUEST, "application/json",
                                         c.last, NULL);
        free(c.last);
        return result;
    }
    http_session *session;
    const char *session_id =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Mcp-Session-Id");
    if (info.is_initialize) {
        session = session_create(http);
        if (!session) {
            free(info.id);
            return respond_error(connection, 503, -32000, "too many sessions");
        }
    } else if (!session_id) {
        free(info.id);
        return respond_error(connection, 400, -32600, "missing Mcp-Session-Id header");
    } else if (!(session = session_find(http, session_id))) {
        free(info.id);
        return respond_error(connection, 404, -32001, "session not found");
    }
    enum MHD_Result result;
    if (info.kind != MCP_MESSAGE_REQUEST) {
        collector c = {0};
        mcp_handle(http->server, session->client, r->body, r->size, collect, &c);
        free(c.last);
        result = respond(connection, MHD_HTTP_ACCEPTED, NULL, NULL, NULL);
        session_release(http, session);
        free(info.id);
    } else if (info.is_tool_call && header_contains(connection, "Accept", "text/event-stream")) {
        result = start_stream(http, connection, session, r, info.id);
    } else {
        collector c = {0};
        mcp_handle(http->server, session->client, r->body, r->size, collect, &c);
        result = respond(connection, MHD_HTTP_OK, "application/json", c.last,
                         info.is_initialize ? session->id : NULL);
        free(c.last);
        session_release(http, session);
        free(info.id);
    }
    return result;
}

static enum MHD_Result handle(void *context, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_context) {
    (void)version;
    http_server *http = context;
    request *r = *request_context;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *request_context = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->too_large && r->size + *upload_data_size <= http->options->max_message_bytes) {
            char *grown = realloc(r->body, r->size + *upload_data_size + 1);
            if (grown) {
                memcpy(grown + r->size, upload_data, *upload_data_size);
                r->body = grown;
                r->size += *upload_data_size;
                r->body[r->size] = '\0';
            } else {
                r->too_large = 1;
            }
        } else {
            r->too_large = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* DNS rebinding: a page elsewhere must not reach a local server. */
    const char *origin = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Host");
    if ((origin && !origin_allowed(http, origin)) ||
        (http->loopback && (!host || !is_loopback_host(host, strlen(host)))))
        return respond_error(connection, MHD_HTTP_FORBIDDEN, -32600,
                             "forbidden: Host or Origin is not allowed");
    if (http->options->token) {
        const char *authorization =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Authorization");
        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0 ||
            !token_matches(authorization + 7, http->options->token))
            return respond_error(connection, MHD_HTTP_UNAUTHORIZED, -32600,
                                 "unauthorized: a valid bearer token is required");
    }
    if (strcmp(url, "/mcp") != 0 && strcmp(url, "/") != 0)
        return respond_error(connection, MHD_HTTP_NOT_FOUND, -32600, "not found: the endpoint is /mcp");
    const char *protocol =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "MCP-Protocol-Version");
    if (protocol && !mcp_protocol_supported(protocol))
        return respond_error(connection, MHD_HTTP_BAD_REQUEST, -32600,
                             "unsupported MCP-Protocol-Version");

    if (strcmp(method, "POST") == 0) return handle_post(http, connection, r);
    const char *session_id =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Mcp-Session-Id");
    http_session *session = session_id ? session_find(http, session_id) : NULL;
    if (strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0) {
        if (!session_id) return respond_error(connection, 400, -32600, "missing Mcp-Session-Id header");
        if (!session) return respond_error(connection, 404, -32001, "session not found");
    }
    if (strcmp(method, "DELETE") == 0) {
        session_delete(http, session);
        session_release(http, session);
        return respond(connection, MHD_HTTP_OK, NULL, NULL, NULL);
    }
    if (strcmp(method, "GET") == 0) {
        if (!header_contains(connection, "Accept", "text/event-stream")) {
            session_release(http, session);
            return respond_error(connection, MHD_HTTP_NOT_ACCEPTABLE, -32600,
                                 "GET needs Accept: text/event-stream");
        }
        listener *l = calloc(1, sizeof *l);
        struct MHD_Response *response =
            l ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256, listener_read, l,
                                                  listener_closed)
              : NULL;
        if (!response) {
            free(l);
            session_release(http, session);
            return respond_error(connection, 500, -32603, "out of memory");
        }
        *l = (listener){http, session, 0};
        MHD_add_response_header(response, "Content-Type", "text/event-stream");
        MHD_add_response_header(response, "Cache-Control", "no-cache");
        enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
        MHD_destroy_response(response);
        return result;
    }
    if (session) session_release(http, session);
    return respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, -32600, "method not allowed");
}

static void request_completed(void *context, struct MHD_Connection *connection,
                              void **request_context, enum MHD_RequestTerminationCode code) {
    (void)context;
    (void)connection;
    (void)code;
    request *r = *request_context;
    if (r) {
        free(r->body);
        free(r);
        *request_context = NULL;
    }
}

int mcp_serve_http(mcp_server *server, const mcp_transport_options *options, char *error) {
    http_server http = {server, options, 0, PTHREAD_MUTEX_INITIALIZER, {0}};
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)options->port);
    if (inet_pton(AF_INET, options->host ? options->host : "127.0.0.1", &address.sin_addr) != 1) {
        snprintf(error, CAP_ERROR_SIZE, "not an IPv4 address: %s", options->host);
        return CAP_EINVAL;
    }
    http.loopback = (ntohl(address.sin_addr.s_addr) >> 24) == 127;
    if (!options->token && !(options->allow_no_auth && http.loopback)) {
        snprintf(error, CAP_ERROR_SIZE,
                 "HTTP needs a bearer token (--token-file or CAPSULE_TOKEN); --no-auth is allowed "
                 "only on a loopback address");
        return CAP_EINVAL;
    }
    /* The daemon's threads inherit this mask; this thread waits for them. */
    sigset_t stop, previous;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &previous);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)options->port,
        NULL, NULL, handle, &http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_SECONDS, MHD_OPTION_CONNECTION_LIMIT, 512u,
        MHD_OPTION_END);
    if (!daemon) {
        pthread_sigmask(SIG_SETMASK, &previous, NULL);
        snprintf(error, CAP_ERROR_SIZE, "cannot listen on %s:%d: %s",
                 options->host ? options->host : "127.0.0.1", options->port, strerror(errno));
        return CAP_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (options->on_listening) options->on_listening(info ? info->port : options->port);
    int signal_number;
    sigwait(&stop, &signal_number);
    /* Runs end and streams close first: the daemon joins their threads. */
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (http.sessions[i]) session_delete(&http, http.sessions[i]);
    MHD_stop_daemon(daemon);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return CAP_OK;
}
