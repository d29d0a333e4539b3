/*
 * listen.c — waking idle job runners early (store.h, store_listener_*):
 * on PostgreSQL a connection of its own that LISTENs on the channel
 * submits and events NOTIFY (jobs.c), so a runner on any node hears of a
 * new due job at once rather than at its next poll.  Only a hint: the
 * runners poll anyway, so a notification lost with a connection, or never
 * sent (SQLite, where one process owns the store and wakes its runners
 * itself), costs latency, never a job.
 */
#include "../libraries/pq.h"
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct store_listener {
    PGconn *connection; /* NULL after a failure: reconnected at the next wait */
    char *url;
    char channel[64];   /* STORE_JOBS_CHANNEL, or a node's park channel */
};

static void ignore_notice(void *context, const char *message) {
    (void)context, (void)message;
}

static int listener_connect(store_listener *listener) {
    const char *keywords[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *values[] = {"10", "capsule-listener", listener->url, NULL};
    listener->connection = PQconnectdbParams(keywords, values, 1);
    if (!listener->connection) return -1;
    PQsetNoticeProcessor(listener->connection, ignore_notice, NULL);
    char command[80];
    snprintf(command, sizeof command, "LISTEN %s", listener->channel);
    PGresult *result = PQstatus(listener->connection) == CONNECTION_OK
                           ? PQexec(listener->connection, command)
                           : NULL;
    int ok = result && PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    if (!ok) {
        PQfinish(listener->connection);
        listener->connection = NULL;
        return -1;
    }
    return 0;
}

int store_listener_open(const char *url, store_listener **out, char *error) {
    return store_listener_open_channel(url, STORE_JOBS_CHANNEL, out, error);
}

int store_listener_open_channel(const char *url, const char *channel, store_listener **out,
                                char *error) {
    *out = NULL;
    /* Only plain identifiers: the name goes into the LISTEN command. */
    if (!channel || !*channel || strlen(channel) >= 64 ||
        strspn(channel, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(channel)) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: bad channel name");
        return CAP_EINVAL;
    }
    if (!url || (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0))
        return CAP_OK; /* nothing to listen to */
    char why[256];
    if (library_load_pq(why) != 0) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: %.240s", why);
        return CAP_ERUNTIME;
    }
    store_listener *listener = calloc(1, sizeof *listener);
    if (!listener || !(listener->url = strdup(url))) {
        free(listener);
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: out of memory");
        return CAP_ENOMEM;
    }
    snprintf(listener->channel, sizeof listener->channel, "%s", channel);
    if (listener_connect(listener) != 0) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: cannot LISTEN on %s", channel);
        store_listener_close(listener);
        return CAP_EIO;
    }
    *out = listener;
    return CAP_OK;
}

int store_listener_wait(store_listener *listener, int timeout_ms) {
    if (!listener->connection && listener_connect(listener) != 0) return -1;
    PGconn *connection = listener->connection;
    int notified = 0;
    PGnotify *notify;
    /* Notifications that came with an earlier read first. */
    while ((notify = PQnotifies(connection))) {
        notified = 1;
        PQfreemem(notify);
    }
    if (notified) return 1;
    struct pollfd descriptor = {.fd = PQsocket(connection), .events = POLLIN};
    int ready = descriptor.fd >= 0 ? poll(&descriptor, 1, timeout_ms) : -1;
    if (ready > 0 && (!PQconsumeInput(connection) || PQstatus(connection) != CONNECTION_OK)) {
        PQfinish(connection);
        listener->connection = NULL; /* reconnected at the next wait */
        return -1;
    }
    while ((notify = PQnotifies(connection))) {
        notified = 1;
        PQfreemem(notify);
    }
    return ready < 0 ? -1 : notified;
}

void store_listener_close(store_listener *listener) {
    if (!listener) return;
    PQfinish(listener->connection);
    free(listener->url);
    free(listener);
}
