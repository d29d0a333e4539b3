/*
 * MCP's Streamable HTTP transport on libmicrohttpd, as an event loop, for
 * both eras of the protocol on one endpoint: the legacy revisions (up to
 * 2025-11-25: initialize, Mcp-Session-Id) and 2026-07-28 (stateless: a POST
 * without Mcp-Session-Id whose _meta or MCP-Protocol-Version names it; its
 * headers are checked against its body by mcp_check_stateless before it is
 * handled, and it gets a client of its own for the request's life).
 *
 *   POST /mcp    one JSON-RPC message; a request is answered with JSON, or
 *                with an SSE stream when the client accepts one and the
 *                request is a tool call (its log and progress notifications
 *                then arrive before the response).  Notifications: 202.
 *   GET /mcp     an SSE stream for server-initiated messages (capsule sends
 *                none; the stream carries keep-alive comments).
 *   DELETE /mcp  ends the session named by Mcp-Session-Id.
 *
 * Before anything else, as soon as the headers are in (so a refused client
 * cannot make the server read or keep its body): Host and Origin must be
 * loopback names (or an allowed origin) — DNS-rebinding protection — and
 * the bearer token must be one of the configured ones.
 *
 * Principals.  Each token is a principal, known by a hash of the token; an
 * MCP session (Mcp-Session-Id) belongs to the principal that created it,
 * and so do the Python sessions its calls start (tools.c scopes them).
 * Without tokens (--no-auth) each MCP session is its own principal.
 *
 * Holding under abuse.  A few event-loop threads (epoll) serve every
 * connection, so an idle or slow socket costs a file descriptor and a
 * bounded buffer, not a thread.  Nothing on the loop may block: a tool
 * call runs on its own thread while its connection is suspended
 * (MHD_suspend_connection), and the call wakes it when there is something
 * to send; a stream with nothing to send suspends itself the same way, and
 * the main thread wakes it once a second for a heartbeat.  The main thread
 * also enforces what libmicrohttpd 0.9.75 cannot: a deadline for a
 * request's headers (its idle timeout restarts with every byte, so a
 * client sending a byte a second would hold a connection for ever); it
 * shuts down the socket of a connection past it.  Per-address and total
 * connection limits and a per-connection memory limit are libmicrohttpd's.
 *
 * A tool call whose connection closes is cancelled.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include "../libraries/microhttpd.h"
#include "../libraries/digest.h"
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_SESSIONS 256
#define SESSION_ID_LENGTH 32      /* hex digits: 128 random bits */
#define PRINCIPAL_SIZE 48
#define KEEPALIVE_SECONDS 15      /* GET streams: a comment this often */
#define IDLE_TIMEOUT_SECONDS 60   /* libmicrohttpd's: no byte either way */
#define HEADER_SECONDS 5          /* a new connection's first request headers */
#define KEEP_ALIVE_SECONDS 30     /* the next request's headers on a kept-alive one */
#define DEFAULT_MAX_CONNECTIONS 4096
#define DEFAULT_MAX_PER_ADDRESS 64
#define RESERVED_DESCRIPTORS 256  /* not for connections: sandboxes, files, logs */
#define EVENT_THREADS 2
#define CONNECTION_MEMORY (32 * 1024) /* libmicrohttpd's buffers: headers must fit */
#define LISTEN_BACKLOG 1024

typedef struct http_session {
    char id[SESSION_ID_LENGTH + 1];
    char principal[PRINCIPAL_SIZE];
    mcp_client *client;
    int references; /* the table's, plus one per request using it */
    int deleted;
} http_session;

typedef struct stream stream;

/* An open connection, watched for its request headers' deadline. */
typedef struct watched {
    int fd;
    double deadline; /* headers due by then (monotonic seconds); 0 while a request runs */
    int shut;        /* its socket was shut down for missing the deadline */
    struct watched *next, *previous;
} watched;

typedef struct http_server {
    mcp_server *server;
    const mcp_transport_options *options;
    int loopback; /* bound to a loopback address: Host is checked too */
    uint8_t (*token_digests)[DIGEST_BYTES]; /* SHA-256 of each token */
    size_t token_count;
    pthread_mutex_t lock; /* the session table */
    http_session *sessions[MAX_SESSIONS];
    /* Streams and calls: their state, their connections' suspension,
     * `stopping` and `running_calls`. */
    pthread_mutex_t streams_lock;
    pthread_cond_t calls_done;
    stream *streams;
    int running_calls;
    int stopping;
    pthread_mutex_t connections_lock; /* `connections` */
    watched *connections;
} http_server;

/* A request being received. */
typedef struct request {
    char *body;
    size_t size;
    int too_large;
    char principal[PRINCIPAL_SIZE]; /* the token's; "" without tokens */
    stream *call;                   /* a tool call answered with JSON, once started */
} request;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void to_hex(const unsigned char *bytes, size_t size, char *out) {
    for (size_t i = 0; i < size; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* --- principals ------------------------------------------------------------------ */

/* Finds the configured token `given` is, and writes its principal ("token:"
 * and half its SHA-256 in hex).  Every token is compared, each over its
 * digest with digest_equal, so the time taken tells nothing of how much of
 * a token matched.  1 if one matched, else 0. */
static int token_principal(const http_server *http, const char *given,
                           char principal[PRINCIPAL_SIZE]) {
    uint8_t digest[DIGEST_BYTES];
    digest_sha256(given, strlen(given), digest);
    int found = 0;
    for (size_t i = 0; i < http->token_count; i++)
        found |= digest_equal(digest, http->token_digests[i], sizeof digest);
    if (found) {
        memcpy(principal, "token:", 6);
        to_hex(digest, 16, principal + 6);
    }
    return found;
}

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

/* A new MCP session for `principal` (NULL without tokens: the session is a
 * principal of its own), with a reference for the caller; NULL when the
 * table is full or randomness or memory is short. */
static http_session *session_create(http_server *http, const char *principal) {
    http_session *session = calloc(1, sizeof *session);
    unsigned char bytes[SESSION_ID_LENGTH / 2], own[16];
    if (!session || getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes ||
        getrandom(own, sizeof own, 0) != (ssize_t)sizeof own) {
        free(session);
        return NULL;
    }
    to_hex(bytes, sizeof bytes, session->id);
    if (principal) {
        snprintf(session->principal, sizeof session->principal, "%s", principal);
    } else {
        memcpy(session->principal, "session:", 8);
        to_hex(own, sizeof own, session->principal + 8);
    }
    if (!(session->client = mcp_client_new(http->server, session->principal))) {
        free(session);
        return NULL;
    }
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

/* A 2026-07-28 request's stand-in for a session: not in the table, no id,
 * gone with the request's last reference.  Its principal is the token's;
 * without tokens every such request shares the principal "stateless" (its
 * Python sessions are reached by the unguessable ids create_session mints). */
static http_session *session_for_request(http_server *http, const char *principal) {
    http_session *session = calloc(1, sizeof *session);
    if (!session) return NULL;
    snprintf(session->principal, sizeof session->principal, "%s",
             principal && *principal ? principal : "stateless");
    if (!(session->client = mcp_client_new(http->server, session->principal))) {
        free(session);
        return NULL;
    }
    session->references = 1;
    return session;
}

/* The session with that id, with a reference for the caller; or NULL.  With
 * tokens, a session another principal created is not found: the caller
 * cannot tell it from one that never existed. */
static http_session *session_find(http_server *http, const char *id, const char *principal) {
    http_session *found = NULL;
    if (strlen(id) != SESSION_ID_LENGTH) return NULL;
    pthread_mutex_lock(&http->lock);
    for (int i = 0; i < MAX_SESSIONS && !found; i++) {
        http_session *session = http->sessions[i];
        if (session && digest_equal(session->id, id, SESSION_ID_LENGTH) &&
            (!*principal || strcmp(session->principal, principal) == 0)) {
            found = session;
            found->references++;
        }
    }
    pthread_mutex_unlock(&http->lock);
    return found;
}

static void wake_listeners(http_server *http, http_session *session);

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
        wake_listeners(http, session);
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

/* --- streams: tool calls and GET listeners ------------------------------------------
 *
 * A stream is what a suspended connection waits for.  Its connection is
 * suspended ("parked") only by the event loop, from the access handler or
 * the content reader, and resumed by whoever has news (the call's thread,
 * the ticker, a session's deletion), always under streams_lock, so that a
 * resume never misses a suspension nor touches a closed connection. */

typedef enum {
    STREAM_CALL_SSE,  /* a tool call answered as an SSE stream */
    STREAM_CALL_JSON, /* a tool call answered with JSON once it ends */
    STREAM_LISTENER   /* a GET stream */
} stream_kind;

struct stream {
    stream_kind kind;
    http_server *http;
    http_session *session; /* a reference */
    struct MHD_Connection *connection;
    /* under streams_lock: */
    int parked;   /* the connection is suspended, waiting for this stream */
    int wake;     /* a heartbeat (call) or keep-alive (listener) is due */
    int ticks;    /* listener: seconds since its last keep-alive */
    int opened;   /* listener: its opening comment was sent */
    int gone;     /* listener: its session was deleted */
    int finished; /* call: mcp_handle returned */
    int closed;   /* the connection is done with the stream: never resume it */
    int references;
    char *pending; /* SSE bytes not yet sent */
    size_t pending_size;
    char *last; /* JSON: the last message sent, i.e. the response */
    stream *next, *previous;
    /* the call, immutable: */
    char *message;
    size_t message_size;
    char *id;
};

/* Suspends the stream's connection until unpark(); 0 (and no suspension)
 * while the server stops.  Only on the event loop; streams_lock held. */
static int park(stream *s) {
    if (s->http->stopping) return 0;
    s->parked = 1;
    MHD_suspend_connection(s->connection);
    return 1;
}

/* streams_lock held. */
static void unpark(stream *s) {
    if (s->parked && !s->closed) {
        s->parked = 0;
        MHD_resume_connection(s->connection);
    }
}

static stream *stream_new(http_server *http, stream_kind kind, http_session *session,
                          struct MHD_Connection *connection, int references) {
    stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->http = http;
    s->session = session;
    s->connection = connection;
    s->references = references;
    pthread_mutex_lock(&http->streams_lock);
    s->next = http->streams;
    if (s->next) s->next->previous = s;
    http->streams = s;
    pthread_mutex_unlock(&http->streams_lock);
    return s;
}

/* Drops a reference; the last one frees the stream and its session's
 * reference. */
static void stream_release(stream *s) {
    http_server *http = s->http;
    pthread_mutex_lock(&http->streams_lock);
    int last = --s->references == 0;
    if (last) {
        if (s->previous) s->previous->next = s->next;
        else http->streams = s->next;
        if (s->next) s->next->previous = s->previous;
    }
    pthread_mutex_unlock(&http->streams_lock);
    if (!last) return;
    session_release(http, s->session);
    free(s->pending);
    free(s->last);
    free(s->message);
    free(s->id);
    free(s);
}

static void append_pending(stream *s, const char *data, size_t size) {
    char *grown = realloc(s->pending, s->pending_size + size);
    if (!grown) return; /* a lost notification, not a lost server */
    memcpy(grown + s->pending_size, data, size);
    s->pending = grown;
    s->pending_size += size;
}

/* The call's messages, from its thread: SSE events, or the last one kept. */
static void stream_send(void *context, const char *json) {
    stream *s = context;
    pthread_mutex_lock(&s->http->streams_lock);
    if (s->kind == STREAM_CALL_JSON) {
        free(s->last);
        s->last = strdup(json);
    } else if (!s->closed) {
        static const char head[] = "event: message\ndata: ", tail[] = "\n\n";
        append_pending(s, head, sizeof head - 1);
        append_pending(s, json, strlen(json));
        append_pending(s, tail, sizeof tail - 1);
        unpark(s);
    }
    pthread_mutex_unlock(&s->http->streams_lock);
}

static void *stream_run(void *argument) {
    stream *s = argument;
    http_server *http = s->http;
    /* Only an SSE stream can carry the server's questions to the client. */
    mcp_handle_streaming(http->server, s->session->client, s->message, s->message_size,
                         stream_send, s, s->kind == STREAM_CALL_SSE);
    pthread_mutex_lock(&http->streams_lock);
    s->finished = 1;
    unpark(s);
    pthread_mutex_unlock(&http->streams_lock);
    stream_release(s);
    pthread_mutex_lock(&http->streams_lock);
    if (--http->running_calls == 0) pthread_cond_broadcast(&http->calls_done);
    pthread_mutex_unlock(&http->streams_lock);
    return NULL;
}

static ssize_t copy_out(char *buffer, size_t max, const char *data, size_t size) {
    size_t n = size < max ? size : max;
    memcpy(buffer, data, n);
    return (ssize_t)n;
}

/* The content reader of a call's SSE stream.  With nothing to send, the
 * connection is parked; the call's thread wakes it with news, the ticker
 * every second for a heartbeat comment (libmicrohttpd notices a client
 * that went away only when a write fails). */
static ssize_t stream_read(void *context, uint64_t position, char *buffer, size_t max) {
    (void)position;
    stream *s = context;
    ssize_t n = 0;
    pthread_mutex_lock(&s->http->streams_lock);
    if (s->pending_size) {
        n = copy_out(buffer, max, s->pending, s->pending_size);
        memmove(s->pending, s->pending + n, s->pending_size - (size_t)n);
        s->pending_size -= (size_t)n;
    } else if (s->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (s->wake) {
        static const char heartbeat[] = ": running\n\n";
        s->wake = 0;
        n = copy_out(buffer, max, heartbeat, sizeof heartbeat - 1);
    } else if (!park(s)) {
        n = MHD_CONTENT_READER_END_OF_STREAM; /* the server stops */
    }
    pthread_mutex_unlock(&s->http->streams_lock);
    return n;
}

/* The connection is done with the stream: if the call still runs, its
 * client went away, so the run is cancelled. */
static void stream_closed(void *context) {
    stream *s = context;
    pthread_mutex_lock(&s->http->streams_lock);
    s->closed = 1;
    int running = s->kind != STREAM_LISTENER && !s->finished;
    pthread_mutex_unlock(&s->http->streams_lock);
    if (running) mcp_cancel_request(s->http->server, s->session->client, s->id);
    stream_release(s);
}

static enum MHD_Result finish_json_call(struct MHD_Connection *connection, request *r);

/* Starts a tool call on its own thread.  `session`'s reference and `id`
 * pass to the call.  With `sse`, the response is an SSE stream queued now;
 * without, the connection is parked until the call ends and the handler,
 * called again, answers with finish_json_call(). */
static enum MHD_Result start_call(http_server *http, struct MHD_Connection *connection,
                                  http_session *session, request *r, char *id, int sse) {
    stream *s = stream_new(http, sse ? STREAM_CALL_SSE : STREAM_CALL_JSON, session, connection,
                           2 /* the call's thread, and the response or request */);
    if (!s) {
        session_release(http, session);
        free(id);
        return respond_error(connection, 500, -32603, "out of memory");
    }
    s->message = r->body;
    s->message_size = r->size;
    r->body = NULL;
    s->id = id;
    /* SEP-1699's priming event: an id and no data, and a retry interval. */
    static const char priming[] = "id: 0\nretry: 1000\ndata:\n\n";
    if (sse) append_pending(s, priming, sizeof priming - 1);
    struct MHD_Response *response =
        sse ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s,
                                                stream_closed)
            : NULL;
    pthread_mutex_lock(&http->streams_lock);
    int stopping = http->stopping;
    if (!stopping) http->running_calls++;
    pthread_mutex_unlock(&http->streams_lock);
    pthread_t thread;
    if (stopping || (sse && !response) || pthread_create(&thread, NULL, stream_run, s) != 0) {
        if (!stopping) {
            pthread_mutex_lock(&http->streams_lock);
            http->running_calls--;
            pthread_mutex_unlock(&http->streams_lock);
        }
        if (response) MHD_destroy_response(response); /* releases a reference */
        else stream_release(s);
        stream_release(s);
        return respond_error(connection, 503, -32000,
                             stopping ? "the server is stopping" : "cannot start the call");
    }
    pthread_detach(thread);
    if (!sse) {
        r->call = s;
        return finish_json_call(connection, r);
    }
    MHD_add_response_header(response, "Content-Type", "text/event-stream");
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    if (session->id[0]) MHD_add_response_header(response, "Mcp-Session-Id", session->id);
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}

/* For a JSON tool call, when it starts and whenever the handler is called
 * again: the response once the call has ended, else the connection parks
 * (every return leaves a response queued or the connection suspended:
 * libmicrohttpd would otherwise call the handler again at once). */
static enum MHD_Result finish_json_call(struct MHD_Connection *connection, request *r) {
    stream *s = r->call;
    pthread_mutex_lock(&s->http->streams_lock);
    int finished = s->finished;
    char *last = finished ? s->last : NULL;
    s->last = NULL;
    if (!finished && !park(s)) finished = 1; /* stopping: no response will come */
    pthread_mutex_unlock(&s->http->streams_lock);
    if (!finished) return MHD_YES;
    enum MHD_Result result =
        last ? respond(connection, MHD_HTTP_OK, "application/json", last, NULL)
             : respond_error(connection, 503, -32000, "the server is stopping");
    free(last);
    return result;
}

/* The content reader of a GET stream: an opening comment, then a
 * keep-alive comment when the ticker says so, parked in between; it ends
 * when its session is deleted or the server stops. */
static ssize_t listener_read(void *context, uint64_t position, char *buffer, size_t max) {
    (void)position;
    stream *s = context;
    static const char opening[] = ": capsule sends no server-initiated messages\n\n";
    static const char keepalive[] = ": keep-alive\n\n";
    ssize_t n = 0;
    pthread_mutex_lock(&s->http->streams_lock);
    if (!s->opened) {
        s->opened = 1;
        n = copy_out(buffer, max, opening, sizeof opening - 1);
    } else if (s->gone) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (s->wake) {
        s->wake = 0;
        n = copy_out(buffer, max, keepalive, sizeof keepalive - 1);
    } else if (!park(s)) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&s->http->streams_lock);
    return n;
}

static void wake_listeners(http_server *http, http_session *session) {
    pthread_mutex_lock(&http->streams_lock);
    for (stream *s = http->streams; s; s = s->next) {
        if (s->kind == STREAM_LISTENER && s->session == session) {
            s->gone = 1;
            unpark(s);
        }
    }
    pthread_mutex_unlock(&http->streams_lock);
}

/* --- connections' deadlines --------------------------------------------------------- */

static watched *watched_of(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* A request's headers are in: no deadline while it is served.  `seconds`
 * after its end, the next request's headers are due.  (0: in a request.) */
static void set_deadline(http_server *http, struct MHD_Connection *connection, double seconds) {
    watched *w = watched_of(connection);
    if (!w) return;
    pthread_mutex_lock(&http->connections_lock);
    w->deadline = seconds ? now_seconds() + seconds : 0;
    pthread_mutex_unlock(&http->connections_lock);
}

/* libmicrohttpd's notice of a connection opened (on an event thread, before
 * its first byte is read) or closed (before its socket is). */
static void connection_changed(void *context, struct MHD_Connection *connection,
                               void **socket_context, enum MHD_ConnectionNotificationCode code) {
    http_server *http = context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        watched *w = info ? calloc(1, sizeof *w) : NULL;
        *socket_context = w;
        if (!w) return; /* no deadline for this one: the idle timeout remains */
        w->fd = info->connect_fd;
        w->deadline = now_seconds() + HEADER_SECONDS;
        pthread_mutex_lock(&http->connections_lock);
        w->next = http->connections;
        if (w->next) w->next->previous = w;
        http->connections = w;
        pthread_mutex_unlock(&http->connections_lock);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        watched *w = *socket_context;
        pthread_mutex_lock(&http->connections_lock);
        if (w->previous) w->previous->next = w->next;
        else http->connections = w->next;
        if (w->next) w->next->previous = w->previous;
        pthread_mutex_unlock(&http->connections_lock);
        free(w);
        *socket_context = NULL;
    }
}

/* Once a second, on the main thread: connections past their headers'
 * deadline are shut down (their event thread then sees the end of the
 * stream and closes them; the socket stays open until it has, so the
 * descriptor cannot be another's yet), and streams get their heartbeat. */
static void tick(http_server *http) {
    double now = now_seconds();
    pthread_mutex_lock(&http->connections_lock);
    for (watched *w = http->connections; w; w = w->next) {
        if (w->deadline && now > w->deadline && !w->shut) {
            shutdown(w->fd, SHUT_RDWR);
            w->shut = 1;
        }
    }
    pthread_mutex_unlock(&http->connections_lock);
    pthread_mutex_lock(&http->streams_lock);
    for (stream *s = http->streams; s; s = s->next) {
        if (s->kind == STREAM_CALL_SSE ||
            (s->kind == STREAM_LISTENER && ++s->ticks >= KEEPALIVE_SECONDS)) {
            s->ticks = 0;
            s->wake = 1;
            unpark(s);
        }
    }
    pthread_mutex_unlock(&http->streams_lock);
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
    const char *protocol =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "MCP-Protocol-Version");
    /* Two eras on one endpoint: a message without a session that names a
     * 2026-07-28 version (in _meta, or a version header no legacy revision
     * has) is stateless; everything else is as in 2025-11-25. */
    int stateless =
        !session_id && (info.stateless || (protocol && !mcp_protocol_supported(protocol)));
    if (stateless) {
        mcp_http_headers headers = {
            protocol, MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Mcp-Method"),
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Mcp-Name")};
        collector c = {0};
        int status = info.kind == MCP_MESSAGE_REQUEST
                         ? mcp_check_stateless(r->body, r->size, &headers, collect, &c)
                         : 0;
        if (status) {
            enum MHD_Result result = respond(connection, (unsigned)status, "application/json",
                                             c.last, NULL);
            free(c.last);
            free(info.id);
            return result;
        }
        session = session_for_request(http, r->principal);
        if (!session) {
            free(info.id);
            return respond_error(connection, 503, -32000, "out of memory");
        }
    } else if (protocol && !mcp_protocol_supported(protocol)) {
        free(info.id);
        return respond_error(connection, MHD_HTTP_BAD_REQUEST, -32600,
                             "unsupported MCP-Protocol-Version");
    } else if (info.is_initialize) {
        session = session_create(http, *r->principal ? r->principal : NULL);
        if (!session) {
            free(info.id);
            return respond_error(connection, 503, -32000, "too many sessions");
        }
    } else if (!session_id) {
        free(info.id);
        return respond_error(connection, 400, -32600, "missing Mcp-Session-Id header");
    } else if (!(session = session_find(http, session_id, r->principal))) {
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
    } else if (info.is_tool_call) {
        /* Runs long: on its own thread, never on the event loop. */
        result = start_call(http, connection, session, r, info.id,
                            header_contains(connection, "Accept", "text/event-stream"));
    } else {
        collector c = {0};
        mcp_handle(http->server, session->client, r->body, r->size, collect, &c);
        result = respond(connection, MHD_HTTP_OK, "application/json", c.last,
                         info.is_initialize && session->id[0] ? session->id : NULL);
        free(c.last);
        session_release(http, session);
        free(info.id);
    }
    return result;
}

/* What the headers alone decide: 1 with *result when the request is refused
 * (answered at once; libmicrohttpd then reads no body and closes the
 * connection after the answer), else 0 with r->principal set. */
static int refuse_early(http_server *http, struct MHD_Connection *connection, const char *url,
                        const char *method, request *r, enum MHD_Result *result) {
    /* DNS rebinding: a page elsewhere must not reach a local server. */
    const char *origin = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Host");
    if ((origin && !origin_allowed(http, origin)) ||
        (http->loopback && (!host || !is_loopback_host(host, strlen(host))))) {
        *result = respond_error(connection, MHD_HTTP_FORBIDDEN, -32600,
                                "forbidden: Host or Origin is not allowed");
        return 1;
    }
    if (http->token_count) {
        const char *authorization =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Authorization");
        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0 ||
            !token_principal(http, authorization + 7, r->principal)) {
            *result = respond_error(connection, MHD_HTTP_UNAUTHORIZED, -32600,
                                    "unauthorized: a valid bearer token is required");
            return 1;
        }
    }
    if (strcmp(url, "/metrics") == 0) {
        /* Prometheus' scrape: behind the same Host, Origin and token checks
         * as /mcp; GET only, no body. */
        if (strcmp(method, "GET") != 0) {
            *result = respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, -32600,
                                    "/metrics takes GET");
            return 1;
        }
        char *text = mcp_server_metrics(http->server);
        *result = text ? respond(connection, MHD_HTTP_OK, "text/plain; version=0.0.4", text, NULL)
                       : respond_error(connection, 500, -32603, "out of memory");
        free(text);
        return 1;
    }
    if (strcmp(url, "/mcp") != 0 && strcmp(url, "/") != 0) {
        *result = respond_error(connection, MHD_HTTP_NOT_FOUND, -32600,
                                "not found: the endpoint is /mcp");
        return 1;
    }
    /* POST checks the version once its body is in: 2026-07-28 names it there too. */
    const char *protocol =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "MCP-Protocol-Version");
    if (protocol && !mcp_protocol_supported(protocol) && strcmp(method, "POST") != 0) {
        *result = respond_error(connection, MHD_HTTP_BAD_REQUEST, -32600,
                                "unsupported MCP-Protocol-Version");
        return 1;
    }
    return 0;
}

static enum MHD_Result handle_get(http_server *http, struct MHD_Connection *connection,
                                  http_session *session) {
    if (!header_contains(connection, "Accept", "text/event-stream")) {
        session_release(http, session);
        return respond_error(connection, MHD_HTTP_NOT_ACCEPTABLE, -32600,
                             "GET needs Accept: text/event-stream");
    }
    stream *s = stream_new(http, STREAM_LISTENER, session, connection, 1);
    struct MHD_Response *response =
        s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256, listener_read, s,
                                              stream_closed)
          : NULL;
    if (!response) {
        if (s) stream_release(s);
        else session_release(http, session);
        return respond_error(connection, 500, -32603, "out of memory");
    }
    pthread_mutex_lock(&http->lock);
    int deleted = session->deleted;
    pthread_mutex_unlock(&http->lock);
    if (deleted) wake_listeners(http, session); /* deleted meanwhile: end the stream */
    MHD_add_response_header(response, "Content-Type", "text/event-stream");
    MHD_add_response_header(response, "Cache-Control", "no-cache");
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result handle(void *context, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_context) {
    (void)version;
    http_server *http = context;
    request *r = *request_context;
    if (!r) { /* the headers are in */
        set_deadline(http, connection, 0);
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *request_context = r;
        enum MHD_Result result;
        return refuse_early(http, connection, url, method, r, &result) ? result : MHD_YES;
    }
    if (r->call) return finish_json_call(connection, r);
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

    if (strcmp(method, "POST") == 0) return handle_post(http, connection, r);
    const char *session_id =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Mcp-Session-Id");
    http_session *session = session_id ? session_find(http, session_id, r->principal) : NULL;
    if (strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0) {
        if (!session_id) return respond_error(connection, 400, -32600, "missing Mcp-Session-Id header");
        if (!session) return respond_error(connection, 404, -32001, "session not found");
    }
    if (strcmp(method, "DELETE") == 0) {
        session_delete(http, session);
        session_release(http, session);
        return respond(connection, MHD_HTTP_OK, NULL, NULL, NULL);
    }
    if (strcmp(method, "GET") == 0) return handle_get(http, connection, session);
    if (session) session_release(http, session);
    return respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, -32600, "method not allowed");
}

static void request_completed(void *context, struct MHD_Connection *connection,
                              void **request_context, enum MHD_RequestTerminationCode code) {
    (void)code;
    http_server *http = context;
    request *r = *request_context;
    set_deadline(http, connection, KEEP_ALIVE_SECONDS);
    if (r) {
        if (r->call) stream_release(r->call);
        free(r->body);
        free(r);
        *request_context = NULL;
    }
}

/* --- the server ------------------------------------------------------------------- */

/* Raises the soft limit of open files to the hard one and returns how many
 * connections fit under it, at most `wanted`. */
static int connections_that_fit(int wanted) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur == RLIM_INFINITY) return wanted;
    long fit = (long)limit.rlim_cur - RESERVED_DESCRIPTORS;
    if (fit < 16) fit = 16;
    return fit < wanted ? (int)fit : wanted;
}

/* Ends every session (cancelling its calls), waits for the calls' threads,
 * and wakes every parked connection: libmicrohttpd must not be stopped with
 * a suspended connection, and with `stopping` set none parks again. */
static void stop_streams(http_server *http) {
    pthread_mutex_lock(&http->streams_lock);
    http->stopping = 1;
    pthread_mutex_unlock(&http->streams_lock);
    for (int i = 0; i < MAX_SESSIONS; i++) {
        pthread_mutex_lock(&http->lock);
        http_session *session = http->sessions[i];
        if (session) session->references++;
        pthread_mutex_unlock(&http->lock);
        if (!session) continue;
        session_delete(http, session);
        session_release(http, session);
    }
    pthread_mutex_lock(&http->streams_lock);
    while (http->running_calls) pthread_cond_wait(&http->calls_done, &http->streams_lock);
    for (stream *s = http->streams; s; s = s->next) {
        s->gone = 1;
        unpark(s);
    }
    pthread_mutex_unlock(&http->streams_lock);
}

int mcp_serve_http(mcp_server *server, const mcp_transport_options *options, char *error) {
    http_server http = {0};
    http.server = server;
    http.options = options;
    pthread_mutex_init(&http.lock, NULL);
    pthread_mutex_init(&http.streams_lock, NULL);
    pthread_mutex_init(&http.connections_lock, NULL);
    pthread_cond_init(&http.calls_done, NULL);
    int rc = CAP_OK;
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)options->port);
    if (inet_pton(AF_INET, options->host ? options->host : "127.0.0.1", &address.sin_addr) != 1) {
        snprintf(error, CAP_ERROR_SIZE, "not an IPv4 address: %s", options->host);
        rc = CAP_EINVAL;
        goto done;
    }
    http.loopback = (ntohl(address.sin_addr.s_addr) >> 24) == 127;
    if (!options->token_count && !(options->allow_no_auth && http.loopback)) {
        snprintf(error, CAP_ERROR_SIZE,
                 "HTTP needs a bearer token (--token-file or CAPSULE_TOKEN); --no-auth is allowed "
                 "only on a loopback address");
        rc = CAP_EINVAL;
        goto done;
    }
    if (options->token_count) {
        http.token_digests = calloc(options->token_count, sizeof *http.token_digests);
        if (!http.token_digests) {
            snprintf(error, CAP_ERROR_SIZE, "out of memory");
            rc = CAP_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < options->token_count; i++)
            digest_sha256(options->tokens[i], strlen(options->tokens[i]), http.token_digests[i]);
        http.token_count = options->token_count;
    }
    int max_connections = connections_that_fit(
        options->max_connections > 0 ? options->max_connections : DEFAULT_MAX_CONNECTIONS);
    int per_address = options->max_connections_per_address > 0
                          ? options->max_connections_per_address
                          : DEFAULT_MAX_PER_ADDRESS;

    if (library_load_microhttpd(error) != 0) {
        rc = CAP_ERUNTIME;
        goto done;
    }
    /* The daemon's threads inherit this mask; this thread takes the signals. */
    sigset_t stop, previous;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &previous);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)options->port, NULL,
        NULL, handle, &http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, &http, MHD_OPTION_NOTIFY_CONNECTION,
        connection_changed, &http, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IDLE_TIMEOUT_SECONDS, MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)per_address,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)EVENT_THREADS, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)LISTEN_BACKLOG, MHD_OPTION_END);
    if (!daemon) {
        pthread_sigmask(SIG_SETMASK, &previous, NULL);
        snprintf(error, CAP_ERROR_SIZE, "cannot listen on %s:%d: %s",
                 options->host ? options->host : "127.0.0.1", options->port, strerror(errno));
        rc = CAP_EIO;
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (options->on_listening) options->on_listening(info ? info->port : options->port);
    struct timespec second = {1, 0};
    while (sigtimedwait(&stop, NULL, &second) < 0) tick(&http);
    stop_streams(&http);
    MHD_stop_daemon(daemon);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
done:
    free(http.token_digests);
    pthread_cond_destroy(&http.calls_done);
    pthread_mutex_destroy(&http.connections_lock);
    pthread_mutex_destroy(&http.streams_lock);
    pthread_mutex_destroy(&http.lock);
    return rc;
}
