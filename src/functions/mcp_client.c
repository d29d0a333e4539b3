/*
 * mcp_client.c — the MCP client of code mode (mcp_client.h).
 *
 * stdio: the server's command is spawned (posix_spawnp, no shell) in its
 * own session, with the host's environment plus the config's "env"; its
 * stdin and stdout are socket pairs (send with MSG_NOSIGNAL: a dead server
 * is an error here, not a SIGPIPE), its stderr /dev/null.  Messages are
 * JSON lines.  Requests the server makes of us are answered ("ping") or
 * refused (-32601); notifications are ignored.
 *
 * Streamable HTTP: each message is POSTed with Accept: application/json,
 * text/event-stream; a JSON body or the first matching event of an SSE
 * body is the answer.  The Mcp-Session-Id the server gives at initialize is
 * sent back; a 404 (session expired) re-initialises once.
 *
 * HTTP+SSE (2024-11-05): with "type": "sse", or when a server refuses to
 * initialise by POST (4xx), a GET event stream is opened and kept (curl
 * multi); its "endpoint" event says where to POST, on the same origin
 * only, and answers arrive as its "message" events.
 *
 * A failure that leaves the connection in an unknown state (a timeout, a
 * line that is not JSON, a message past the cap, the server's exit) cuts
 * it: the next request reconnects and initialises again.
 *
 * Concurrency.  A stdio pipe and the 2024-11-05 stream carry one exchange
 * at a time here, so their requests are serialised by the lock.  Streamable
 * HTTP needs no such order: each request is a POST of its own, so up to
 * MAX_CONCURRENT_CALLS run at once (runs of different sandboxes calling the
 * same server), the lock held only to take an id and a copy of the
 * session, and again to note what the answer changed.  A connection is cut
 * only by a failure of its own generation: a request that fails after
 * another one already reconnected leaves the new connection alone.
 */
#include "mcp_client.h"

#include "../libraries/curl.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../sandbox/buffer.h"

#define ERROR_SIZE 256 /* CAP_ERROR_SIZE */
#define MAX_ARGS 128
#define MAX_ENV_ADDED 128
#define MAX_HEADERS 64
#define MAX_TOOL_PAGES 32
#define HANDSHAKE_BYTES (4u << 20)
#define LIST_BYTES (16u << 20)
#define PROTOCOL_VERSION "2025-06-18"
#define MAX_CONCURRENT_CALLS 4 /* Streamable HTTP: requests in flight to one server */

extern char **environ;

struct mcp_upstream {
    char *name;
    pthread_mutex_t lock;
    pthread_cond_t call_ended; /* Streamable HTTP: a slot of MAX_CONCURRENT_CALLS is free */
    int in_flight;             /* Streamable HTTP requests sent, not yet answered */
    unsigned generation;       /* counts disconnects: which connection a request used */
    long next_id;
    /* stdio */
    char **argv;            /* NULL for HTTP */
    char **envp;
    pid_t pid;              /* 0: not running */
    int to_server, from_server;
    buffer pending;         /* bytes read past the last message */
    /* HTTP */
    char *url;
    struct curl_slist *headers; /* the config's */
    struct curl_slist *stream_headers; /* the config's, and Accept, for the legacy stream */
    char *session_id;
    char *protocol_version;
    long last_status;       /* of the last POST */
    /* HTTP+SSE, the 2024-11-05 transport: answers come on a GET stream */
    int legacy;             /* "type": "sse", or the server refused to initialise by POST */
    CURLM *multi;
    CURL *stream;
    buffer events;          /* the stream's bytes not yet split into events */
    size_t events_searched;
    char *endpoint;         /* where messages are POSTed (the "endpoint" event) */
    cJSON *inbox;           /* messages received, not yet claimed */
    size_t stream_cap;      /* bytes one event may have */
    int stream_failed;      /* the stream ended, or sent too much */
    int post_done;          /* the POST in flight has ended ... */
    CURLcode post_result;   /* ... so */
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_strings(char **strings) {
    if (!strings) return;
    for (int i = 0; strings[i]; i++) free(strings[i]);
    free(strings);
}

/* --- stdio ------------------------------------------------------------------------ */

static void stop_process(mcp_upstream *up) {
    if (up->pid > 0) {
        kill(-up->pid, SIGKILL); /* its session: npx and its node with it */
        kill(up->pid, SIGKILL);
        while (waitpid(up->pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (up->to_server >= 0) close(up->to_server);
    if (up->from_server >= 0) close(up->from_server);
    up->pid = 0;
    up->to_server = up->from_server = -1;
    buffer_free(&up->pending);
}

/* Starts the server's program; 0 or -1 with a message. */
static int start_process(mcp_upstream *up, char *error) {
    int in[2], out[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
        snprintf(error, ERROR_SIZE, "server %s: socketpair: %s", up->name, strerror(errno));
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) != 0) {
        snprintf(error, ERROR_SIZE, "server %s: socketpair: %s", up->name, strerror(errno));
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[1], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    /* Nothing else of capsule's: not a client's connection, not a log. */
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_init(&attributes);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, up->argv[0], &actions, &attributes, up->argv, up->envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(in[1]);
    close(out[1]);
    if (rc != 0) {
        snprintf(error, ERROR_SIZE, "server %s: cannot run %.100s: %s", up->name, up->argv[0],
                 strerror(rc));
        close(in[0]);
        close(out[0]);
        return -1;
    }
    up->pid = pid;
    up->to_server = in[0];
    up->from_server = out[0];
    up->pending = (buffer){0};
    return 0;
}

static int send_line(mcp_upstream *up, const char *text, double deadline, char *error) {
    size_t size = strlen(text), sent = 0;
    while (sent <= size) {
        const char *from = sent < size ? text + sent : "\n";
        size_t left = sent < size ? size - sent : 1;
        ssize_t n = send(up->to_server, from, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int wait = (int)((deadline - now_seconds()) * 1000);
            if (wait <= 0) {
                snprintf(error, ERROR_SIZE, "server %s does not read its input", up->name);
                return MCP_UPSTREAM_TIMEOUT;
            }
            struct pollfd p = {up->to_server, POLLOUT, 0};
            poll(&p, 1, wait);
            continue;
        }
        if (n < 0) {
            snprintf(error, ERROR_SIZE, "server %s has exited", up->name);
            return MCP_UPSTREAM_FAILED;
        }
        if (sent == size) break; /* the newline went */
        sent += (size_t)n;
    }
    return MCP_UPSTREAM_OK;
}

/* The next JSON message from the server: blank lines are skipped; a line
 * that is not JSON, or longer than `max_bytes`, is an error. */
static int read_message(mcp_upstream *up, double deadline, size_t max_bytes, cJSON **message,
                        char *error) {
    size_t scanned = 0;
    for (;;) {
        char *newline = up->pending.size > scanned
                            ? memchr(up->pending.data + scanned, '\n', up->pending.size - scanned)
                            : NULL;
        if (newline) {
            size_t length = (size_t)(newline - up->pending.data);
            cJSON *parsed = NULL;
            int blank = 1;
            for (size_t i = 0; i < length; i++)
                if (!strchr(" \t\r", up->pending.data[i])) blank = 0;
            if (!blank) parsed = cJSON_ParseWithLength(up->pending.data, length);
            memmove(up->pending.data, newline + 1, up->pending.size - length - 1);
            up->pending.size -= length + 1;
            up->pending.data[up->pending.size] = '\0';
            scanned = 0;
            if (blank) continue;
            if (!parsed) {
                snprintf(error, ERROR_SIZE, "server %s sent a line that is not JSON", up->name);
                return MCP_UPSTREAM_FAILED;
            }
            *message = parsed;
            return MCP_UPSTREAM_OK;
        }
        scanned = up->pending.size;
        if (up->pending.size > max_bytes) {
            snprintf(error, ERROR_SIZE, "server %s sent a message of more than %zu bytes",
                     up->name, max_bytes);
            return MCP_UPSTREAM_FAILED;
        }
        int wait = (int)((deadline - now_seconds()) * 1000);
        if (wait <= 0) {
            snprintf(error, ERROR_SIZE, "server %s did not answer in time", up->name);
            return MCP_UPSTREAM_TIMEOUT;
        }
        struct pollfd p = {up->from_server, POLLIN, 0};
        int ready = poll(&p, 1, wait);
        if (ready < 0 && errno != EINTR) {
            snprintf(error, ERROR_SIZE, "server %s: poll: %s", up->name, strerror(errno));
            return MCP_UPSTREAM_FAILED;
        }
        if (ready <= 0) continue;
        char chunk[1 << 16];
        ssize_t n = read(up->from_server, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(error, ERROR_SIZE, "server %s exited (or closed its output) before "
                     "answering", up->name);
            return MCP_UPSTREAM_FAILED;
        }
        if (buffer_append(&up->pending, chunk, (size_t)n) != 0) {
            snprintf(error, ERROR_SIZE, "out of memory");
            return MCP_UPSTREAM_FAILED;
        }
    }
}

/* A request the server makes of us: "ping" is answered, anything else
 * refused, so that a server waiting for an answer is not left waiting. */
static void answer_server_request(mcp_upstream *up, const cJSON *message, double deadline) {
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(message, "method");
    cJSON *reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "jsonrpc", "2.0");
    cJSON_AddItemToObject(reply, "id",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(message, "id"), 1));
    if (cJSON_IsString(method) && strcmp(method->valuestring, "ping") == 0) {
        cJSON_AddItemToObject(reply, "result", cJSON_CreateObject());
    } else {
        cJSON *failure = cJSON_AddObjectToObject(reply, "error");
        cJSON_AddNumberToObject(failure, "code", -32601);
        cJSON_AddStringToObject(failure, "message", "capsule does not offer this method");
    }
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    char ignored[ERROR_SIZE];
    if (text) send_line(up, text, deadline, ignored);
    free(text);
}

static int stdio_exchange(mcp_upstream *up, const char *request, long id, double deadline,
                          size_t max_bytes, cJSON **response, char *error) {
    int rc = send_line(up, request, deadline, error);
    if (rc != MCP_UPSTREAM_OK || id < 0) return rc;
    for (;;) {
        cJSON *message = NULL;
        rc = read_message(up, deadline, max_bytes, &message, error);
        if (rc != MCP_UPSTREAM_OK) return rc;
        const cJSON *their_id = cJSON_GetObjectItemCaseSensitive(message, "id");
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(message, "method");
        if (cJSON_IsString(method)) {
            if (their_id) answer_server_request(up, message, deadline);
            cJSON_Delete(message);
            continue;
        }
        if (cJSON_IsNumber(their_id) && their_id->valuedouble == (double)id) {
            *response = message;
            return MCP_UPSTREAM_OK;
        }
        cJSON_Delete(message); /* an answer to something else: ignored */
    }
}

/* --- Streamable HTTP -------------------------------------------------------------- */

typedef struct http_reply {
    mcp_upstream *up;
    buffer body;
    size_t max_bytes;
    long id;             /* the response awaited; -1: none */
    int event_stream;    /* Content-Type: text/event-stream */
    int too_large;
    size_t scanned;      /* SSE: bytes of body already split into events */
    size_t searched;     /* SSE: bytes of body known to hold no event's end past `scanned` */
    cJSON *response;     /* found in the event stream */
    char *session_id;
} http_reply;

static size_t on_header(char *data, size_t size, size_t count, void *userdata) {
    http_reply *reply = userdata;
    size_t length = size * count;
    const char session[] = "mcp-session-id:", type[] = "content-type:";
    if (length > sizeof session - 1 && strncasecmp(data, session, sizeof session - 1) == 0) {
        const char *value = data + sizeof session - 1;
        size_t n = length - (sizeof session - 1);
        while (n && (*value == ' ' || *value == '\t')) value++, n--;
        while (n && (value[n - 1] == '\r' || value[n - 1] == '\n' || value[n - 1] == ' ')) n--;
        if (n && n < 1024) {
            free(reply->session_id);
            reply->session_id = strndup(value, n);
        }
    } else if (length > sizeof type - 1 && strncasecmp(data, type, sizeof type - 1) == 0) {
        reply->event_stream = memmem(data, length, "text/event-stream", 17) != NULL;
    }
    return length;
}

/* Splits the complete events received so far; stops the transfer (returns
 * 1) once the awaited response is found. */
static int scan_events(http_reply *reply) {
    for (;;) {
        char *start = reply->body.data + reply->scanned;
        /* Only the new bytes (and the 3 before them) can hold an end: a
         * long event arriving in many chunks is searched once. */
        size_t from = reply->searched > reply->scanned + 3 ? reply->searched - 3 : reply->scanned;
        char *search = reply->body.data + from;
        size_t left = reply->body.size - from;
        char *end = memmem(search, left, "\n\n", 2);
        char *end_crlf = memmem(search, left, "\r\n\r\n", 4);
        size_t skip = 2;
        if (end_crlf && (!end || end_crlf < end)) end = end_crlf, skip = 4;
        if (!end) {
            reply->searched = reply->body.size;
            return 0;
        }
        buffer data = {0};
        for (char *line = start; line < end;) {
            char *eol = memchr(line, '\n', (size_t)(end - line));
            char *line_end = eol ? eol : end;
            size_t n = (size_t)(line_end - line);
            if (n && line[n - 1] == '\r') n--;
            if (n >= 5 && memcmp(line, "data:", 5) == 0) {
                const char *value = line + 5;
                size_t m = n - 5;
                if (m && *value == ' ') value++, m--;
                if (data.size) buffer_append(&data, "\n", 1);
                buffer_append(&data, value, m);
            }
            line = line_end + 1;
        }
        reply->scanned = (size_t)(end - reply->body.data) + skip;
        cJSON *message = data.size ? cJSON_ParseWithLength(data.data, data.size) : NULL;
        buffer_free(&data);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
        if (message && !cJSON_GetObjectItemCaseSensitive(message, "method") &&
            cJSON_IsNumber(id) && id->valuedouble == (double)reply->id) {
            reply->response = message;
            return 1;
        }
        cJSON_Delete(message);
    }
}

static size_t on_body(char *data, size_t size, size_t count, void *userdata) {
    http_reply *reply = userdata;
    size_t length = size * count;
    if (reply->body.size + length > reply->max_bytes) {
        reply->too_large = 1;
        return 0;
    }
    if (buffer_append(&reply->body, data, length) != 0) return 0;
    if (reply->event_stream && reply->id >= 0 && scan_events(reply)) return 0; /* done */
    return length;
}

/* What a POST sends of the connection's state, and what its answer
 * changes: read and applied by the caller, so that the POST itself needs
 * no lock. */
typedef struct http_state {
    const char *session_id;       /* sent as Mcp-Session-Id, or NULL */
    const char *protocol_version; /* sent as MCP-Protocol-Version, or NULL */
    long status;                  /* the answer's HTTP status */
    char *new_session_id;         /* given by the answer (the caller frees it), or NULL */
} http_state;

/* One POST of `request`; the answer to `id` (-1: none awaited).  Uses only
 * the upstream's immutable fields (name, url, headers) and `state`. */
static int http_exchange(mcp_upstream *up, http_state *state, const char *request, long id,
                         double deadline, size_t max_bytes, cJSON **response, char *error) {
    double left = deadline - now_seconds();
    if (left <= 0) {
        snprintf(error, ERROR_SIZE, "server %s: no time left", up->name);
        return MCP_UPSTREAM_TIMEOUT;
    }
    if (library_load_curl(error) != 0) return MCP_UPSTREAM_FAILED;
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    struct curl_slist *headers = NULL;
    for (struct curl_slist *h = up->headers; h; h = h->next)
        headers = curl_slist_append(headers, h->data);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json, text/event-stream");
    char line[1200];
    if (state->session_id) {
        snprintf(line, sizeof line, "Mcp-Session-Id: %s", state->session_id);
        headers = curl_slist_append(headers, line);
    }
    if (state->protocol_version) {
        snprintf(line, sizeof line, "MCP-Protocol-Version: %s", state->protocol_version);
        headers = curl_slist_append(headers, line);
    }
    http_reply reply = {up, {0}, max_bytes, id, 0, 0, 0, 0, NULL, NULL};
    curl_easy_setopt(curl, CURLOPT_URL, up->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(left * 1000) + 1);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &reply);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    state->status = status;
    int rc = MCP_UPSTREAM_OK;
    state->new_session_id = reply.session_id;
    reply.session_id = NULL;
    if (reply.response) {
        *response = reply.response;
    } else if (reply.too_large) {
        snprintf(error, ERROR_SIZE, "server %s sent a message of more than %zu bytes", up->name,
                 max_bytes);
        rc = MCP_UPSTREAM_FAILED;
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(error, ERROR_SIZE, "server %s did not answer in time", up->name);
        rc = MCP_UPSTREAM_TIMEOUT;
    } else if (code != CURLE_OK) {
        snprintf(error, ERROR_SIZE, "server %s: %s", up->name, curl_easy_strerror(code));
        rc = MCP_UPSTREAM_FAILED;
    } else if (status == 404 && state->session_id) {
        snprintf(error, ERROR_SIZE, "server %s: session expired", up->name);
        rc = -404;
    } else if (status < 200 || status >= 300) {
        snprintf(error, ERROR_SIZE, "server %s answered HTTP %ld", up->name, status);
        rc = MCP_UPSTREAM_FAILED;
    } else if (id >= 0) {
        cJSON *message = NULL;
        if (reply.event_stream) {
            /* The stream ended: a last event without its blank line. */
            buffer_append(&reply.body, "\n\n", 2);
            if (scan_events(&reply)) message = reply.response;
        } else if (reply.body.size) {
            message = cJSON_ParseWithLength(reply.body.data, reply.body.size);
        }
        const cJSON *their_id = cJSON_GetObjectItemCaseSensitive(message, "id");
        if (!cJSON_IsNumber(their_id) || their_id->valuedouble != (double)id) {
            cJSON_Delete(message);
            snprintf(error, ERROR_SIZE, "server %s sent no JSON-RPC answer", up->name);
            rc = MCP_UPSTREAM_FAILED;
        } else {
            *response = message;
        }
    }
    buffer_free(&reply.body);
    return rc;
}

/* --- HTTP+SSE (2024-11-05) ---------------------------------------------------------- */

/* The endpoint event's URL: a path on the server's own origin (scheme,
 * host and port of "url"), or an absolute URL with that origin; anything
 * else is refused, so a server cannot send capsule's messages elsewhere. */
static char *endpoint_url(const mcp_upstream *up, const char *data, size_t size) {
    const char *host = strstr(up->url, "://") + 3;
    size_t origin = strcspn(host, "/?#") + (size_t)(host - up->url);
    char *url = NULL;
    if (size && data[0] == '/' && (size < 2 || data[1] != '/')) {
        url = malloc(origin + size + 1);
        if (url) {
            memcpy(url, up->url, origin);
            memcpy(url + origin, data, size);
            url[origin + size] = '\0';
        }
    } else if (size > origin && memcmp(data, up->url, origin) == 0 &&
               strchr("/?", data[origin])) {
        url = strndup(data, size);
    }
    if (url && (strpbrk(url, " \r\n") || strlen(url) >= 4096)) {
        free(url);
        url = NULL;
    }
    return url;
}

/* Splits the stream's complete events: "endpoint" sets where to POST,
 * "message" (or unnamed) events go to the inbox. */
static void split_stream(mcp_upstream *up) {
    for (;;) {
        size_t from = up->events_searched > 3 ? up->events_searched - 3 : 0;
        char *data = up->events.data;
        char *end = memmem(data + from, up->events.size - from, "\n\n", 2);
        char *end_crlf = memmem(data + from, up->events.size - from, "\r\n\r\n", 4);
        size_t skip = 2;
        if (end_crlf && (!end || end_crlf < end)) end = end_crlf, skip = 4;
        if (!end) {
            up->events_searched = up->events.size;
            return;
        }
        buffer value = {0};
        char name[32] = "message";
        for (char *line = data; line < end;) {
            char *eol = memchr(line, '\n', (size_t)(end - line));
            char *line_end = eol ? eol : end;
            size_t n = (size_t)(line_end - line);
            if (n && line[n - 1] == '\r') n--;
            if (n >= 5 && memcmp(line, "data:", 5) == 0) {
                size_t m = n - 5, offset = 5 + (m && line[5] == ' ');
                if (value.size) buffer_append(&value, "\n", 1);
                buffer_append(&value, line + offset, n - offset);
            } else if (n >= 6 && memcmp(line, "event:", 6) == 0) {
                size_t offset = 6 + (n > 6 && line[6] == ' ');
                snprintf(name, sizeof name, "%.*s", (int)(n - offset), line + offset);
            }
            line = line_end + 1;
        }
        if (strcmp(name, "endpoint") == 0 && !up->endpoint && value.size) {
            up->endpoint = endpoint_url(up, value.data, value.size);
            if (!up->endpoint) up->stream_failed = 1;
        } else if (strcmp(name, "message") == 0 && value.size) {
            cJSON *message = cJSON_ParseWithLength(value.data, value.size);
            if (message) cJSON_AddItemToArray(up->inbox, message);
            else up->stream_failed = 1; /* garbage: the stream is not to be trusted */
        }
        buffer_free(&value);
        size_t used = (size_t)(end - data) + skip;
        memmove(data, data + used, up->events.size - used);
        up->events.size -= used;
        up->events.data[up->events.size] = '\0';
        up->events_searched = 0;
    }
}

static size_t on_stream(char *data, size_t size, size_t count, void *userdata) {
    mcp_upstream *up = userdata;
    size_t length = size * count;
    if (up->events.size + length > up->stream_cap ||
        buffer_append(&up->events, data, length) != 0) {
        up->stream_failed = 1;
        return 0;
    }
    split_stream(up);
    return up->stream_failed ? 0 : length;
}

static void note_done(mcp_upstream *up) {
    CURLMsg *message;
    int left;
    while ((message = curl_multi_info_read(up->multi, &left))) {
        if (message->msg != CURLMSG_DONE) continue;
        if (message->easy_handle == up->stream) {
            up->stream_failed = 1;
        } else {
            up->post_done = 1;
            up->post_result = message->data.result;
        }
    }
}

/* Lets curl move the stream (and a POST in flight) for at most until
 * `deadline` (100 ms at a time).  The stream's end marks the connection
 * failed; a POST's end is noted in post_done. */
static void pump(mcp_upstream *up, double deadline) {
    int running = 0;
    curl_multi_perform(up->multi, &running);
    note_done(up);
    int wait = (int)((deadline - now_seconds()) * 1000);
    if (wait > 100) wait = 100;
    if (wait > 0) curl_multi_poll(up->multi, NULL, 0, wait, NULL);
    curl_multi_perform(up->multi, &running);
    note_done(up);
}

static void legacy_disconnect(mcp_upstream *up) {
    if (up->multi && up->stream) curl_multi_remove_handle(up->multi, up->stream);
    if (up->stream) curl_easy_cleanup(up->stream);
    if (up->multi) curl_multi_cleanup(up->multi);
    up->multi = NULL;
    up->stream = NULL;
    buffer_free(&up->events);
    up->events_searched = 0;
    free(up->endpoint);
    up->endpoint = NULL;
    cJSON_Delete(up->inbox);
    up->inbox = NULL;
    up->stream_failed = 0;
}

/* Opens the GET stream and waits for its endpoint event. */
static int legacy_connect(mcp_upstream *up, double deadline, char *error) {
    if (library_load_curl(error) != 0) return MCP_UPSTREAM_FAILED;
    up->multi = curl_multi_init();
    up->stream = curl_easy_init();
    up->inbox = cJSON_CreateArray();
    up->stream_cap = HANDSHAKE_BYTES;
    if (!up->multi || !up->stream || !up->inbox) {
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    curl_easy_setopt(up->stream, CURLOPT_URL, up->url);
    curl_easy_setopt(up->stream, CURLOPT_HTTPHEADER, up->stream_headers);
    curl_easy_setopt(up->stream, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(up->stream, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(up->stream, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(up->stream, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(up->stream, CURLOPT_WRITEDATA, up);
    curl_multi_add_handle(up->multi, up->stream);
    while (!up->endpoint && !up->stream_failed && now_seconds() < deadline) pump(up, deadline);
    if (up->endpoint) return MCP_UPSTREAM_OK;
    snprintf(error, ERROR_SIZE, up->stream_failed ? "server %s: its event stream failed or named "
             "no usable endpoint" : "server %s: no endpoint event in time", up->name);
    return up->stream_failed ? MCP_UPSTREAM_FAILED : MCP_UPSTREAM_TIMEOUT;
}

static size_t ignore_body(char *data, size_t size, size_t count, void *userdata) {
    (void)data;
    (void)userdata;
    return size * count;
}

/* POSTs the message to the endpoint, then waits for the answer with `id`
 * on the stream (a notification: for the POST only). */
static int legacy_exchange(mcp_upstream *up, const char *request, long id, double deadline,
                           size_t max_bytes, cJSON **response, char *error) {
    if (library_load_curl(error) != 0) return MCP_UPSTREAM_FAILED;
    CURL *post = curl_easy_init();
    struct curl_slist *headers = NULL;
    for (struct curl_slist *h = up->headers; h; h = h->next)
        headers = curl_slist_append(headers, h->data);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (!post || !headers) {
        if (post) curl_easy_cleanup(post);
        curl_slist_free_all(headers);
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    up->stream_cap = max_bytes;
    curl_easy_setopt(post, CURLOPT_URL, up->endpoint);
    curl_easy_setopt(post, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(post, CURLOPT_POSTFIELDS, request);
    curl_easy_setopt(post, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(post, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(post, CURLOPT_WRITEFUNCTION, ignore_body);
    curl_multi_add_handle(up->multi, post);
    int posted = 0, rc = MCP_UPSTREAM_TIMEOUT;
    long status = 0;
    *response = NULL;
    up->post_done = 0;
    while (now_seconds() < deadline) {
        pump(up, deadline);
        curl_easy_getinfo(post, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) posted = 1; /* the answer may come before its end */
        if (up->post_done && (up->post_result != CURLE_OK || !posted)) posted = -1;
        if (posted < 0) {
            snprintf(error, ERROR_SIZE, "server %s refused the message (HTTP %ld)", up->name,
                     status);
            rc = MCP_UPSTREAM_FAILED;
            break;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, up->inbox) {
            const cJSON *their_id = cJSON_GetObjectItemCaseSensitive(item, "id");
            if (id >= 0 && !cJSON_GetObjectItemCaseSensitive(item, "method") &&
                cJSON_IsNumber(their_id) && their_id->valuedouble == (double)id) {
                *response = cJSON_DetachItemViaPointer(up->inbox, (cJSON *)item);
                break;
            }
        }
        if (*response || (id < 0 && posted)) {
            rc = MCP_UPSTREAM_OK;
            break;
        }
        if (up->stream_failed) {
            snprintf(error, ERROR_SIZE, "server %s: its event stream ended, sent garbage or a "
                     "message of more than %zu bytes", up->name, max_bytes);
            rc = MCP_UPSTREAM_FAILED;
            break;
        }
    }
    if (rc == MCP_UPSTREAM_TIMEOUT)
        snprintf(error, ERROR_SIZE, "server %s did not answer in time", up->name);
    curl_multi_remove_handle(up->multi, post);
    curl_easy_cleanup(post);
    curl_slist_free_all(headers);
    /* Requests and notifications from the server are not served here. */
    while (cJSON_GetArraySize(up->inbox) > 64) cJSON_DeleteItemFromArray(up->inbox, 0);
    return rc;
}

/* --- the protocol ----------------------------------------------------------------- */

static void disconnect(mcp_upstream *up) {
    up->generation++; /* requests still in flight on the old connection are stale */
    if (up->argv) {
        stop_process(up);
    } else {
        free(up->session_id);
        up->session_id = NULL;
        legacy_disconnect(up);
    }
    free(up->protocol_version);
    up->protocol_version = NULL;
}

static int connected(const mcp_upstream *up) {
    if (up->argv) return up->pid > 0;
    return up->protocol_version != NULL && !(up->legacy && (!up->endpoint || up->stream_failed));
}

/* The JSON text of a request (`id` >= 0) or a notification (-1); `params`
 * is taken.  NULL when out of memory. */
static char *message_text(const char *method, cJSON *params, long id) {
    cJSON *message = cJSON_CreateObject();
    cJSON_AddStringToObject(message, "jsonrpc", "2.0");
    if (id >= 0) cJSON_AddNumberToObject(message, "id", (double)id);
    cJSON_AddStringToObject(message, "method", method);
    if (params) cJSON_AddItemToObject(message, "params", params);
    char *text = cJSON_PrintUnformatted(message);
    cJSON_Delete(message);
    return text;
}

/* The "result" of `response` (taken) into *result, or the error. */
static int take_result(const mcp_upstream *up, const char *method, cJSON *response,
                       cJSON **result, char *error);

/* Notes what a Streamable HTTP answer changed, if the connection it was
 * sent on is still the upstream's.  The lock is held. */
static void apply_http_state(mcp_upstream *up, http_state *state, unsigned generation) {
    if (generation == up->generation) {
        up->last_status = state->status;
        if (state->new_session_id) {
            free(up->session_id);
            up->session_id = state->new_session_id;
            state->new_session_id = NULL;
        }
    }
    free(state->new_session_id);
    state->new_session_id = NULL;
}

/* Sends one message (a request if `method` expects an answer, else a
 * notification) and waits for the answer's "result", holding the lock
 * throughout (the handshake, and the transports that take one exchange at
 * a time). */
static int roundtrip(mcp_upstream *up, const char *method, cJSON *params, int notification,
                     double deadline, size_t max_bytes, cJSON **result, char *error) {
    long id = notification ? -1 : up->next_id++;
    char *text = message_text(method, params, id);
    if (!text) {
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    cJSON *response = NULL;
    http_state state = {up->session_id, up->protocol_version, 0, NULL};
    int rc = up->argv     ? stdio_exchange(up, text, id, deadline, max_bytes, &response, error)
             : up->legacy ? legacy_exchange(up, text, id, deadline, max_bytes, &response, error)
                          : http_exchange(up, &state, text, id, deadline, max_bytes, &response,
                                          error);
    if (!up->argv && !up->legacy) apply_http_state(up, &state, up->generation);
    free(text);
    if (rc != MCP_UPSTREAM_OK || notification) return rc;
    return take_result(up, method, response, result, error);
}

/* A request over Streamable HTTP without holding the lock while it is in
 * flight: called with the lock held, which it releases around the POST
 * (at most MAX_CONCURRENT_CALLS at once; a caller beyond waits for a slot
 * until its deadline) and holds again on return. */
static int concurrent_roundtrip(mcp_upstream *up, const char *method, cJSON *params,
                                double deadline, size_t max_bytes, cJSON **result, char *error) {
    while (up->in_flight >= MAX_CONCURRENT_CALLS) {
        double left = deadline - now_seconds();
        if (left <= 0) {
            cJSON_Delete(params);
            snprintf(error, ERROR_SIZE, "server %s: %d calls were in flight and none ended in "
                     "time", up->name, MAX_CONCURRENT_CALLS);
            return MCP_UPSTREAM_TIMEOUT;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)left;
        until.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&up->call_ended, &up->lock, &until);
    }
    long id = up->next_id++;
    char *text = message_text(method, params, id);
    char *session = up->session_id ? strdup(up->session_id) : NULL;
    char *version = up->protocol_version ? strdup(up->protocol_version) : NULL;
    if (!text || (up->session_id && !session) || (up->protocol_version && !version)) {
        free(text);
        free(session);
        free(version);
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    unsigned generation = up->generation;
    up->in_flight++;
    pthread_mutex_unlock(&up->lock);
    http_state state = {session, version, 0, NULL};
    cJSON *response = NULL;
    int rc = http_exchange(up, &state, text, id, deadline, max_bytes, &response, error);
    pthread_mutex_lock(&up->lock);
    up->in_flight--;
    pthread_cond_signal(&up->call_ended);
    apply_http_state(up, &state, generation);
    free(text);
    free(session);
    free(version);
    if (rc != MCP_UPSTREAM_OK) return rc;
    return take_result(up, method, response, result, error);
}

static int take_result(const mcp_upstream *up, const char *method, cJSON *response,
                       cJSON **result, char *error) {
    int rc = MCP_UPSTREAM_OK;
    const cJSON *failure = cJSON_GetObjectItemCaseSensitive(response, "error");
    cJSON *answer = cJSON_DetachItemFromObjectCaseSensitive(response, "result");
    if (failure) {
        const cJSON *what = cJSON_GetObjectItemCaseSensitive(failure, "message");
        snprintf(error, ERROR_SIZE, "server %s: %.200s", up->name,
                 cJSON_IsString(what) ? what->valuestring : "error");
        rc = MCP_UPSTREAM_RPC_ERROR;
    } else if (!cJSON_IsObject(answer)) {
        snprintf(error, ERROR_SIZE, "server %s answered %s without a result object", up->name,
                 method);
        rc = MCP_UPSTREAM_FAILED;
    }
    cJSON_Delete(response);
    if (rc == MCP_UPSTREAM_OK) *result = answer;
    else cJSON_Delete(answer);
    return rc;
}

/* Connects and runs initialize, then notifications/initialized. */
static int connect_upstream(mcp_upstream *up, double deadline, char *error) {
    if (up->argv && start_process(up, error) != 0) return MCP_UPSTREAM_FAILED;
    if (up->legacy) {
        int rc = legacy_connect(up, deadline, error);
        if (rc != MCP_UPSTREAM_OK) {
            disconnect(up);
            return rc;
        }
    }
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "protocolVersion", PROTOCOL_VERSION);
    cJSON_AddObjectToObject(params, "capabilities");
    cJSON *info = cJSON_AddObjectToObject(params, "clientInfo");
    cJSON_AddStringToObject(info, "name", "capsule");
    cJSON_AddStringToObject(info, "version", "0.1");
    cJSON *result = NULL;
    int rc = roundtrip(up, "initialize", params, 0, deadline, HANDSHAKE_BYTES, &result, error);
    if (rc == MCP_UPSTREAM_OK) {
        const cJSON *version = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
        up->protocol_version =
            strdup(cJSON_IsString(version) && strlen(version->valuestring) < 64
                       ? version->valuestring
                       : PROTOCOL_VERSION);
        cJSON_Delete(result);
        rc = roundtrip(up, "notifications/initialized", NULL, 1, deadline, HANDSHAKE_BYTES,
                       NULL, error);
    }
    if (rc != MCP_UPSTREAM_OK) disconnect(up);
    /* A server of the 2024-11-05 era refuses the POST (4xx): its GET
     * stream is tried instead, from then on. */
    if (rc == MCP_UPSTREAM_FAILED && !up->argv && !up->legacy && up->last_status >= 400 &&
        up->last_status < 500) {
        long status = up->last_status;
        up->legacy = 1;
        rc = connect_upstream(up, deadline, error);
        if (rc != MCP_UPSTREAM_OK) {
            up->legacy = 0; /* the next attempt starts with a POST again */
            snprintf(error, ERROR_SIZE, "server %s answered HTTP %ld to initialize (and has no "
                     "2024-11-05 event stream either)", up->name, status);
        }
    }
    return rc;
}

int mcp_upstream_request(mcp_upstream *up, const char *method, cJSON *params,
                         double timeout_seconds, size_t max_bytes, cJSON **result, char *error) {
    double deadline = now_seconds() + timeout_seconds;
    pthread_mutex_lock(&up->lock);
    int rc = MCP_UPSTREAM_OK;
    /* A server that exited since the last call is started again before
     * this one, rather than failing it. */
    if (up->argv && up->pid > 0 && waitpid(up->pid, NULL, WNOHANG) == up->pid) {
        up->pid = 0; /* reaped: nothing to kill */
        stop_process(up);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!connected(up)) {
            disconnect(up); /* what is left of a broken connection */
            rc = connect_upstream(up, deadline, error);
        }
        if (rc != MCP_UPSTREAM_OK) break;
        cJSON *copy = attempt == 0 ? cJSON_Duplicate(params, 1) : params;
        if (attempt == 1) params = NULL;
        unsigned generation = up->generation;
        rc = !up->argv && !up->legacy
                 ? concurrent_roundtrip(up, method, copy, deadline, max_bytes, result, error)
                 : roundtrip(up, method, copy, 0, deadline, max_bytes, result, error);
        /* Cut the connection the request used, not one made since. */
        int current = generation == up->generation;
        if (rc == -404) { /* the HTTP session expired: once more, in a new one */
            if (current) disconnect(up);
            rc = MCP_UPSTREAM_OK;
            continue;
        }
        if ((rc == MCP_UPSTREAM_FAILED || rc == MCP_UPSTREAM_TIMEOUT) && current) disconnect(up);
        break;
    }
    if (rc == -404) rc = MCP_UPSTREAM_FAILED;
    pthread_mutex_unlock(&up->lock);
    cJSON_Delete(params);
    return rc;
}

/* --- opening ---------------------------------------------------------------------- */

static char **string_list(int count) {
    return calloc((size_t)count + 1, sizeof(char *));
}

/* argv from "command" and "args"; envp: the host's environment with the
 * config's "env" added (replacing names it has). */
static int parse_stdio(mcp_upstream *up, const cJSON *spec, char *error) {
    const cJSON *command = cJSON_GetObjectItemCaseSensitive(spec, "command");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(spec, "args");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(spec, "env");
    if (!cJSON_IsString(command) || !command->valuestring[0] || (args && !cJSON_IsArray(args)) ||
        (env && !cJSON_IsObject(env)) || cJSON_GetArraySize(args) >= MAX_ARGS ||
        cJSON_GetArraySize(env) > MAX_ENV_ADDED) {
        snprintf(error, ERROR_SIZE, "server %s: \"command\" is a string, \"args\" a list of "
                 "strings, \"env\" an object of strings", up->name);
        return -1;
    }
    up->argv = string_list(cJSON_GetArraySize(args) + 1);
    if (!up->argv) return -1;
    int n = 0;
    up->argv[n++] = strdup(command->valuestring);
    const cJSON *each;
    cJSON_ArrayForEach(each, args) {
        if (!cJSON_IsString(each)) {
            snprintf(error, ERROR_SIZE, "server %s: \"args\" holds strings only", up->name);
            return -1;
        }
        up->argv[n++] = strdup(each->valuestring);
    }
    int host = 0;
    while (environ[host]) host++;
    up->envp = string_list(host + cJSON_GetArraySize(env));
    if (!up->envp) return -1;
    int count = 0;
    for (int i = 0; i < host; i++) {
        const char *equals = strchr(environ[i], '=');
        int replaced = 0;
        cJSON_ArrayForEach(each, env) {
            if (equals && strlen(each->string) == (size_t)(equals - environ[i]) &&
                strncmp(each->string, environ[i], (size_t)(equals - environ[i])) == 0)
                replaced = 1;
        }
        if (!replaced) up->envp[count++] = strdup(environ[i]);
    }
    cJSON_ArrayForEach(each, env) {
        if (!cJSON_IsString(each) || !each->string[0] || strchr(each->string, '=')) {
            snprintf(error, ERROR_SIZE, "server %s: \"env\" maps names to strings", up->name);
            return -1;
        }
        size_t size = strlen(each->string) + strlen(each->valuestring) + 2;
        char *entry = malloc(size);
        if (entry) snprintf(entry, size, "%s=%s", each->string, each->valuestring);
        up->envp[count++] = entry;
    }
    for (int i = 0; i < n; i++)
        if (!up->argv[i]) return -1;
    for (int i = 0; i < count; i++)
        if (!up->envp[i]) return -1;
    return 0;
}

static int parse_http(mcp_upstream *up, const cJSON *spec, char *error) {
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(spec, "url");
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(spec, "headers");
    if (!cJSON_IsString(url) ||
        (strncmp(url->valuestring, "http://", 7) != 0 &&
         strncmp(url->valuestring, "https://", 8) != 0) ||
        strlen(url->valuestring) >= 4096 || (headers && !cJSON_IsObject(headers)) ||
        cJSON_GetArraySize(headers) > MAX_HEADERS) {
        snprintf(error, ERROR_SIZE, "server %s: \"url\" is an http(s) URL, \"headers\" an "
                 "object of strings", up->name);
        return -1;
    }
    char why[ERROR_SIZE];
    if (library_load_curl(why) != 0) {
        snprintf(error, ERROR_SIZE, "server %s: %.200s", up->name, why);
        return -1;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(spec, "type");
    up->legacy = cJSON_IsString(type) && strcmp(type->valuestring, "sse") == 0;
    up->url = strdup(url->valuestring);
    const cJSON *each;
    cJSON_ArrayForEach(each, headers) {
        char line[4096];
        if (!cJSON_IsString(each) || strpbrk(each->string, ":\r\n") ||
            strpbrk(each->valuestring, "\r\n") ||
            snprintf(line, sizeof line, "%s: %s", each->string, each->valuestring) >=
                (int)sizeof line) {
            snprintf(error, ERROR_SIZE, "server %s: a header is malformed or too long",
                     up->name);
            return -1;
        }
        up->headers = curl_slist_append(up->headers, line);
        up->stream_headers = curl_slist_append(up->stream_headers, line);
    }
    up->stream_headers = curl_slist_append(up->stream_headers, "Accept: text/event-stream");
    return up->url && up->stream_headers ? 0 : -1;
}

int mcp_upstream_open(const char *name, const cJSON *spec, double timeout_seconds,
                      mcp_upstream **out, cJSON **tools, char *error) {
    mcp_upstream *up = calloc(1, sizeof *up);
    if (!up || !(up->name = strdup(name))) {
        free(up);
        snprintf(error, ERROR_SIZE, "out of memory");
        return MCP_UPSTREAM_FAILED;
    }
    pthread_mutex_init(&up->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC); /* deadlines are monotonic */
    pthread_cond_init(&up->call_ended, &attributes);
    pthread_condattr_destroy(&attributes);
    up->next_id = 1;
    up->to_server = up->from_server = -1;
    int has_command = cJSON_GetObjectItemCaseSensitive(spec, "command") != NULL;
    int has_url = cJSON_GetObjectItemCaseSensitive(spec, "url") != NULL;
    error[0] = '\0';
    int bad = !cJSON_IsObject(spec) || has_command == has_url;
    if (bad) {
        snprintf(error, ERROR_SIZE, "server %s: give either \"command\" (stdio) or \"url\" "
                 "(Streamable HTTP)", name);
    } else {
        bad = has_command ? parse_stdio(up, spec, error) : parse_http(up, spec, error);
    }
    if (bad) {
        if (!error[0]) snprintf(error, ERROR_SIZE, "out of memory");
        mcp_upstream_free(up);
        return MCP_UPSTREAM_FAILED;
    }
    /* Every page of tools/list. */
    cJSON *all = cJSON_CreateArray();
    cJSON *cursor = NULL;
    int rc = MCP_UPSTREAM_OK;
    for (int page = 0; rc == MCP_UPSTREAM_OK && page < MAX_TOOL_PAGES; page++) {
        cJSON *params = cJSON_CreateObject();
        if (cursor) cJSON_AddItemToObject(params, "cursor", cursor);
        cursor = NULL;
        cJSON *result = NULL;
        rc = mcp_upstream_request(up, "tools/list", params, timeout_seconds, LIST_BYTES, &result,
                                  error);
        if (rc != MCP_UPSTREAM_OK) break;
        cJSON *list = cJSON_DetachItemFromObjectCaseSensitive(result, "tools");
        if (!cJSON_IsArray(list)) {
            snprintf(error, ERROR_SIZE, "server %s: tools/list gave no list of tools", name);
            rc = MCP_UPSTREAM_FAILED;
        } else {
            while (list->child) cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(list, list->child));
        }
        cJSON_Delete(list);
        cJSON *next = cJSON_DetachItemFromObjectCaseSensitive(result, "nextCursor");
        cJSON_Delete(result);
        if (!cJSON_IsString(next)) {
            cJSON_Delete(next);
            break;
        }
        cursor = next;
    }
    cJSON_Delete(cursor);
    if (rc != MCP_UPSTREAM_OK) {
        cJSON_Delete(all);
        mcp_upstream_free(up);
        return rc;
    }
    *tools = all;
    *out = up;
    return MCP_UPSTREAM_OK;
}

void mcp_upstream_free(mcp_upstream *up) {
    if (!up) return;
    disconnect(up);
    free_strings(up->argv);
    free_strings(up->envp);
    free(up->url);
    /* Only an HTTP upstream has headers, and libcurl loaded (parse_http). */
    if (up->headers) curl_slist_free_all(up->headers);
    if (up->stream_headers) curl_slist_free_all(up->stream_headers);
    free(up->session_id);
    pthread_cond_destroy(&up->call_ended);
    pthread_mutex_destroy(&up->lock);
    free(up->name);
    free(up);
}
