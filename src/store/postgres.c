/*
 * postgres.c — the store's PostgreSQL backend (backend.h):
 * `postgres://...` and `postgresql://...`, any URL libpq accepts, e.g.
 * `postgres:///capsule?host=/run/postgresql` or
 * `postgresql://capsule:secret@db.internal:5432/capsule`.
 *
 * One libpq connection per store handle.  Several processes, on several
 * machines, may share one database: nothing here is exclusive (open says
 * *exclusive = 0), so store.c recovers only the calls of nodes whose lease
 * expired (docs/store.md, "Several nodes").
 *
 * Transactions: writes are BEGIN (READ COMMITTED); store.c orders its
 * statements so that a transaction first updates the row it depends on,
 * which locks it.  Reads that span several statements are REPEATABLE READ
 * READ ONLY, so they see one snapshot.  A lock waited for longer than
 * lock_timeout, a deadlock or a serialization failure is STORE_EBUSY: the
 * caller may retry.  Commits are durable (synchronous_commit = on, set at
 * connect whatever the server's default).
 *
 * Statements are prepared once per connection, cached by the address of
 * their SQL text (store.c passes static strings), with the parameter types
 * of their first use: integers int8, text text, blobs bytea (sent in binary),
 * NULL left for the server to infer.  Results come back in binary and are
 * decoded by column type: int2/4/8, numeric (SUM of bigints) as integers,
 * text, bytea.
 *
 * Connection loss (the server restarted, a network cut): the statement in
 * flight fails with CAP_EIO and a message saying so; inside a transaction
 * the transaction is gone (the server rolled it back), and for a COMMIT
 * whose answer was lost the outcome is unknown and the message says that.
 * The next operation reconnects (PQreset) before it starts: a lost
 * connection is noticed without a round trip (PQconsumeInput reads the
 * server's goodbye or the EOF), and a BEGIN or a lone SELECT that fails for a
 * connection that died while idle is retried once on a new connection, since
 * running either twice is harmless.  A lone write statement is never
 * retried: whether it took effect is unknown.
 */
#include "../libraries/pq.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "store.h"

/* The schema, one migration per version: the same tables, columns and
 * constraints as sqlite.c's, in PostgreSQL's types (BIGINT for INTEGER,
 * BYTEA for BLOB, an identity column for snapshots.id).  docs/store.md shows
 * both. */
static const char *const postgres_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE sessions (\n"
    "    id              TEXT PRIMARY KEY,\n"
    "    principal       TEXT NOT NULL,\n"
    "    status          TEXT NOT NULL CHECK (status IN ('live', 'parked', 'expired')),\n"
    "    created_at      BIGINT NOT NULL,\n"
    "    last_used_at    BIGINT NOT NULL,\n"
    "    ttl_ms          BIGINT NOT NULL,\n"
    "    expires_at      BIGINT,\n"
    "    latest_snapshot BIGINT,\n"
    "    call_count      BIGINT NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX sessions_parked ON sessions(last_used_at) WHERE status = 'parked';\n"
    "CREATE INDEX sessions_latest_snapshot ON sessions(latest_snapshot);\n"
    "CREATE TABLE calls (\n"
    "    session         TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    seq             BIGINT NOT NULL,\n"
    "    idempotency_key TEXT,\n"
    "    status          TEXT NOT NULL,\n"
    "    request_hash    BYTEA,\n"
    "    result          TEXT,\n"
    "    started_at      BIGINT NOT NULL,\n"
    "    finished_at     BIGINT,\n"
    "    PRIMARY KEY (session, seq),\n"
    "    UNIQUE (session, idempotency_key)\n"
    ");\n"
    "CREATE INDEX calls_running ON calls(session) WHERE status = 'running';\n"
    "CREATE TABLE blobs (\n"
    "    hash        BYTEA PRIMARY KEY CHECK (length(hash) = 32),\n"
    "    raw_size    BIGINT NOT NULL,\n"
    "    stored_size BIGINT NOT NULL,\n"
    "    data        BYTEA NOT NULL,\n"
    "    created_at  BIGINT NOT NULL\n"
    ");\n"
    /* A zstd frame does not compress again: keep TOAST from trying. */
    "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;\n"
    "CREATE TABLE snapshots (\n"
    "    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "    session    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    call_seq   BIGINT,\n"
    "    build_id   TEXT NOT NULL,\n"
    "    page_size  BIGINT NOT NULL,\n"
    "    manifest   TEXT NOT NULL,\n"
    "    created_at BIGINT NOT NULL\n"
    ");\n"
    "CREATE INDEX snapshots_session ON snapshots(session);\n"
    "CREATE TABLE snapshot_pages (\n"
    "    snapshot   BIGINT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,\n"
    "    page_index BIGINT NOT NULL,\n"
    "    hash       BYTEA NOT NULL REFERENCES blobs(hash),\n"
    "    PRIMARY KEY (snapshot, page_index)\n"
    ");\n"
    "CREATE INDEX snapshot_pages_hash ON snapshot_pages(hash);\n"
    /* sessions <-> snapshots refer to each other: the second key after. */
    "ALTER TABLE sessions ADD CONSTRAINT sessions_latest_snapshot_fkey\n"
    "    FOREIGN KEY (latest_snapshot) REFERENCES snapshots(id) ON DELETE SET NULL;\n",

    /* 1 -> 2 */
    "CREATE TABLE usage (\n"
    "    id         BIGINT PRIMARY KEY CHECK (id = 1),\n"
    "    blob_bytes BIGINT NOT NULL,\n"
    "    blob_count BIGINT NOT NULL,\n"
    "    raw_bytes  BIGINT NOT NULL\n"
    ");\n"
    "INSERT INTO usage (id, blob_bytes, blob_count, raw_bytes)\n"
    "    SELECT 1, COALESCE(SUM(stored_size), 0), COUNT(*), COALESCE(SUM(raw_size), 0)\n"
    "    FROM blobs;\n",

    /* 2 -> 3: nodes and their leases (sqlite.c has the same). */
    "CREATE TABLE nodes (\n"
    "    id               TEXT PRIMARY KEY,\n"
    "    started_at       BIGINT NOT NULL,\n"
    "    lease_expires_at BIGINT NOT NULL\n"
    ");\n"
    "ALTER TABLE calls ADD COLUMN node TEXT;\n"
    "ALTER TABLE calls ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;\n"
    "ALTER TABLE sessions ADD COLUMN owner TEXT;\n"
    "ALTER TABLE sessions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;\n"
    "CREATE INDEX sessions_live ON sessions(owner) WHERE status = 'live';\n",

    /* 3 -> 4: durable jobs (sqlite.c has the same):
     * the jobs, the cached results of their steps, the events that wake
     * waiting jobs, and per-queue concurrency limits. */
    "CREATE TABLE jobs (\n"
    "    id               TEXT PRIMARY KEY,\n"
    "    principal        TEXT NOT NULL,\n"
    "    queue            TEXT NOT NULL,\n"
    "    code             TEXT NOT NULL,\n"
    "    idempotency_key  TEXT,\n"
    "    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'sleeping',\n"
    "                         'waiting', 'succeeded', 'failed', 'dead', 'cancelled')),\n"
    "    attempts         BIGINT NOT NULL DEFAULT 0,\n"
    "    max_attempts     BIGINT NOT NULL,\n"
    "    backoff_ms       BIGINT NOT NULL,\n"
    "    timeout_ms       BIGINT NOT NULL,\n"
    "    run_after        BIGINT NOT NULL,\n"
    "    lease_owner      TEXT,\n"
    "    lease_expires_at BIGINT,\n"
    "    cancel_requested BIGINT NOT NULL DEFAULT 0,\n"
    "    wait_event       TEXT,\n"
    "    last_error       TEXT,\n"
    "    result           TEXT,\n"
    "    created_at       BIGINT NOT NULL,\n"
    "    updated_at       BIGINT NOT NULL,\n"
    "    UNIQUE (principal, idempotency_key)\n"
    ");\n"
    "CREATE INDEX jobs_due ON jobs(run_after)\n"
    "    WHERE status IN ('queued', 'failed', 'sleeping', 'waiting');\n"
    "CREATE INDEX jobs_running ON jobs(queue) WHERE status = 'running';\n"
    "CREATE INDEX jobs_principal ON jobs(principal, created_at);\n"
    "CREATE TABLE job_steps (\n"
    "    job        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,\n"
    "    name       TEXT NOT NULL,\n"
    "    result     TEXT NOT NULL,\n"
    "    created_at BIGINT NOT NULL,\n"
    "    PRIMARY KEY (job, name)\n"
    ");\n"
    "CREATE TABLE job_events (\n"
    "    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "    principal  TEXT NOT NULL,\n"
    "    name       TEXT NOT NULL,\n"
    "    payload    TEXT NOT NULL,\n"
    "    created_at BIGINT NOT NULL\n"
    ");\n"
    "CREATE INDEX job_events_name ON job_events(principal, name, created_at);\n"
    "CREATE TABLE job_queues (\n"
    "    name        TEXT PRIMARY KEY,\n"
    "    concurrency BIGINT NOT NULL CHECK (concurrency > 0)\n"
    ");\n",
    /* 4 -> 5: tasks of the MCP Tasks extension (docs/mcp.md, "Tasks"): one
     * row per task, owned by a principal, run by a node; `payload` is the
     * tool result (completed) or the JSON-RPC error (failed) as JSON text.
     * (sqlite.c has the same.) */
    "CREATE TABLE tasks (\n"
    "    id             TEXT PRIMARY KEY,\n"
    "    principal      TEXT NOT NULL,\n"
    "    node           TEXT NOT NULL,\n"
    "    status         TEXT NOT NULL,\n"
    "    status_message TEXT,\n"
    "    payload        TEXT,\n"
    "    created_at     BIGINT NOT NULL,\n"
    "    updated_at     BIGINT NOT NULL,\n"
    "    expires_at     BIGINT NOT NULL\n"
    ");\n"
    "CREATE INDEX tasks_expires ON tasks(expires_at);\n",
    /* 5 -> 6: finished jobs by age, for pruning them after the retention
     * (jobs.c, store_job_prune); how long a job waited, due, for a runner
     * (its claims' sum: the claim latency).  The same in sqlite.c. */
    "CREATE INDEX jobs_finished ON jobs(updated_at)\n"
    "    WHERE status IN ('succeeded', 'dead', 'cancelled');\n"
    "ALTER TABLE jobs ADD COLUMN claim_wait_ms BIGINT NOT NULL DEFAULT 0;\n",
    /* 6 -> 7: a node that wants a session live on another (alive) node
     * asks it to park the session (docs/scale-out.md, "Moving a live
     * session"): the asking node, kept in the row so that the request
     * outlives a lost NOTIFY.  (sqlite.c has the same.) */
    "ALTER TABLE sessions ADD COLUMN park_requested_by TEXT;\n",
};

/* Type OIDs (catalog/pg_type.h, which libpq-dev does not ship). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_NAME = 19,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_NUMERIC = 1700,
};

#define STATEMENT_CACHE_SIZE 80
#define MAX_PARAMETERS 96
#define MAX_COLUMNS 24

typedef struct postgres_connection {
    PGconn *connection;
    char where[160]; /* "database D on H": for messages, without the password */
    struct {
        const char *sql; /* NULL: free */
    } cache[STATEMENT_CACHE_SIZE];
} postgres_connection;

/* libpq's message on one line: "FATAL:  x\n\tHINT..." -> "FATAL: x HINT...". */
static void one_line(char *destination, size_t size, const char *message) {
    size_t at = 0;
    int space = 1; /* drops leading and repeated blanks */
    for (const char *p = message ? message : ""; *p && at + 1 < size; p++) {
        int blank = *p == '\n' || *p == '\t' || *p == ' ' || *p == '\r';
        if (blank && space) continue;
        destination[at++] = blank ? ' ' : *p;
        space = blank;
    }
    while (at && destination[at - 1] == ' ') at--;
    destination[at] = '\0';
}

/* Is this failure the connection's rather than the statement's? */
static int connection_lost(postgres_connection *c, const PGresult *result) {
    if (PQstatus(c->connection) != CONNECTION_OK) return 1;
    const char *state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
    /* 08: connection exception; 57P01-3: the server shutting down or starting. */
    return !state || strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0;
}

/* Translates a failed result (or, with result NULL, the connection's last
 * error) into a store code and a message naming what was being done. */
static int postgres_error(postgres_connection *c, const PGresult *result, const char *what,
                          char *error) {
    const char *state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
    int code = CAP_EIO;
    int lost = connection_lost(c, result);
    if (state && !lost) {
        if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
            strcmp(state, "55P03") == 0)
            code = STORE_EBUSY; /* serialization failure, deadlock, lock_timeout */
        else if (strncmp(state, "23", 2) == 0)
            code = STORE_ECONFLICT; /* integrity constraint, as SQLite's CONSTRAINT */
        else if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
            code = STORE_ECORRUPT; /* data_corrupted, index_corrupted */
        else if (strcmp(state, "53200") == 0)
            code = CAP_ENOMEM;
    }
    if (error) {
        const char *message = result ? PQresultErrorMessage(result) : "";
        if (!message || !message[0]) message = PQerrorMessage(c->connection);
        char text[CAP_ERROR_SIZE];
        one_line(text, sizeof text, message && message[0] ? message : "unknown error");
        size_t length;
        /* Long messages are cut to fit (the return value is checked only
         * to say so to the compiler). */
        if (snprintf(error, CAP_ERROR_SIZE, "store postgres (%s): %s: %s%s%s%s", c->where, what,
                     text, state ? " [" : "", state ? state : "", state ? "]" : "") < 0)
            error[0] = '\0';
        if (lost) {
            length = strlen(error);
            snprintf(error + length, CAP_ERROR_SIZE - length,
                     strcmp(what, "COMMIT") == 0
                         ? " (connection lost: whether the transaction committed is unknown)"
                         : " (connection lost; the next operation reconnects)");
        }
    }
    return code;
}

/* Runs a statement without parameters or rows (BEGIN, SET, COMMIT...). */
static int postgres_simple(postgres_connection *c, const char *sql, char *error) {
    PGresult *result = PQexec(c->connection, sql);
    int status = PQresultStatus(result);
    int code = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                   ? CAP_OK
                   : postgres_error(c, result, sql, error);
    PQclear(result);
    return code;
}

/* Per-connection settings, after each connect and reconnect. */
static int postgres_setup(postgres_connection *c, char *error) {
    if (PQserverVersion(c->connection) < 100000) {
        if (error)
            snprintf(error, CAP_ERROR_SIZE,
                     "store postgres (%s): server version %d; PostgreSQL 10 or later is needed",
                     c->where, PQserverVersion(c->connection));
        return CAP_EIO;
    }
    /* Durable commits whatever the server's default; a lock waited for
     * longer than SQLite's busy timeout is STORE_EBUSY; messages in English
     * ASCII whatever the server's locale. */
    return postgres_simple(c,
                           "SET synchronous_commit = on; SET lock_timeout = '5s';"
                           " SET client_min_messages = warning",
                           error);
}

static void forget_statements(postgres_connection *c) {
    for (int i = 0; i < STATEMENT_CACHE_SIZE; i++) c->cache[i].sql = NULL;
}

/* Outside a transaction: notices a connection the server closed (reading
 * what is pending costs no round trip) and replaces it. */
static int postgres_ensure(postgres_connection *c, char *error) {
    if (PQstatus(c->connection) == CONNECTION_OK && PQconsumeInput(c->connection) &&
        PQstatus(c->connection) == CONNECTION_OK)
        return CAP_OK;
    forget_statements(c); /* prepared statements die with their session */
    PQreset(c->connection);
    if (PQstatus(c->connection) != CONNECTION_OK) {
        if (error) {
            char text[CAP_ERROR_SIZE];
            one_line(text, sizeof text, PQerrorMessage(c->connection));
            if (snprintf(error, CAP_ERROR_SIZE, "store postgres (%s): cannot reconnect: %s",
                         c->where, text) < 0)
                error[0] = '\0';
        }
        return CAP_EIO;
    }
    return postgres_setup(c, error);
}

static int in_transaction(postgres_connection *c) {
    PGTransactionStatusType status = PQtransactionStatus(c->connection);
    return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE;
}

static void ignore_notice(void *context, const char *message) {
    (void)context, (void)message;
}

static void postgres_close(void *handle) {
    postgres_connection *c = handle;
    if (!c) return;
    PQfinish(c->connection);
    free(c);
}

/* Connects to `location`, the URL after "postgres://" (or
 * "postgresql://"): libpq reads it whole, with a 10 s connect timeout
 * unless the URL sets one.  An unreachable server, a missing database or a
 * refused login is CAP_EIO with libpq's message ("connection to server on
 * socket ... failed: No such file or directory", ...). */
static int postgres_open(const char *location, void **out, int *exclusive, char *error) {
    *out = NULL;
    *exclusive = 0;
    char why[256];
    if (library_load_pq(why) != 0) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: %.240s", why);
        return CAP_ERUNTIME;
    }
    postgres_connection *c = calloc(1, sizeof *c);
    size_t length = strlen(location);
    char *url = malloc(length + sizeof "postgresql://");
    if (!c || !url) {
        free(c);
        free(url);
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: out of memory");
        return CAP_ENOMEM;
    }
    memcpy(url, "postgresql://", sizeof "postgresql://" - 1);
    memcpy(url + sizeof "postgresql://" - 1, location, length + 1);
    /* Later keywords override earlier ones: the URL's own settings win. */
    const char *keywords[] = {"connect_timeout", "application_name", "client_encoding", "dbname",
                              NULL};
    const char *values[] = {"10", "capsule", "UTF8", url, NULL};
    c->connection = PQconnectdbParams(keywords, values, 1);
    free(url);
    if (!c->connection) {
        free(c);
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: out of memory");
        return CAP_ENOMEM;
    }
    /* Library code prints nothing: the server's notices and warnings
     * ("terminating connection due to administrator command") are not
     * written to stderr; its errors come back as results. */
    PQsetNoticeProcessor(c->connection, ignore_notice, NULL);
    const char *host = PQhost(c->connection), *database = PQdb(c->connection);
    snprintf(c->where, sizeof c->where, "database %.60s on %.80s", database ? database : "?",
             host && host[0] ? host : "the default socket");
    if (PQstatus(c->connection) != CONNECTION_OK) {
        if (error) {
            char text[CAP_ERROR_SIZE];
            one_line(text, sizeof text, PQerrorMessage(c->connection));
            if (snprintf(error, CAP_ERROR_SIZE, "store postgres (%s): cannot connect: %s",
                         c->where, text) < 0)
                error[0] = '\0';
        }
        postgres_close(c);
        return CAP_EIO;
    }
    int result = postgres_setup(c, error);
    if (result != CAP_OK) {
        postgres_close(c);
        return result;
    }
    *out = c;
    return CAP_OK;
}

static int postgres_begin(void *handle, int write, char *error) {
    postgres_connection *c = handle;
    const char *sql = write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    for (int attempt = 0;; attempt++) {
        int result = postgres_ensure(c, error);
        if (result != CAP_OK) return result;
        PGresult *answer = PQexec(c->connection, sql);
        if (PQresultStatus(answer) == PGRES_COMMAND_OK) {
            PQclear(answer);
            return CAP_OK;
        }
        int lost = connection_lost(c, answer);
        result = postgres_error(c, answer, sql, error);
        PQclear(answer);
        /* A BEGIN that died with the connection began nothing: once more. */
        if (!lost || attempt > 0) return result;
    }
}

static int postgres_commit(void *handle, char *error) {
    postgres_connection *c = handle;
    PGresult *answer = PQexec(c->connection, "COMMIT");
    int result;
    if (PQresultStatus(answer) != PGRES_COMMAND_OK) {
        result = postgres_error(c, answer, "COMMIT", error);
    } else if (strcmp(PQcmdStatus(answer), "COMMIT") != 0) {
        /* COMMIT of a failed transaction answers ROLLBACK, not an error. */
        if (error)
            snprintf(error, CAP_ERROR_SIZE, "store postgres (%s): the transaction was rolled back",
                     c->where);
        result = CAP_EIO;
    } else {
        result = CAP_OK;
    }
    PQclear(answer);
    return result;
}

static void postgres_rollback(void *handle) {
    postgres_connection *c = handle;
    if (PQstatus(c->connection) == CONNECTION_OK && in_transaction(c))
        PQclear(PQexec(c->connection, "ROLLBACK"));
}

/* The big-endian integer of `size` bytes at `bytes`. */
static int64_t big_endian(const unsigned char *bytes, int size) {
    uint64_t value = 0;
    for (int i = 0; i < size; i++) value = value << 8 | bytes[i];
    if (size < 8 && size > 0 && (bytes[0] & 0x80)) value |= ~(uint64_t)0 << (8 * size);
    return (int64_t)value;
}

/* A numeric in binary form (ndigits, weight, sign, dscale, then base-10000
 * digits) that holds an integer: SUM() of bigint columns. */
static int numeric_integer(const unsigned char *bytes, int size, int64_t *out) {
    if (size < 8) return 0;
    int digits = (int)big_endian(bytes, 2), weight = (int)big_endian(bytes + 2, 2);
    int sign = (int)(big_endian(bytes + 4, 2) & 0xffff);
    if (size < 8 + 2 * digits || sign == 0xC000) return 0; /* NaN */
    __int128 value = 0;
    for (int i = 0; i <= weight; i++) {
        int64_t digit = i < digits ? big_endian(bytes + 8 + 2 * i, 2) : 0;
        value = value * 10000 + digit;
        if (value > INT64_MAX) return 0;
    }
    *out = (int64_t)(sign == 0x4000 ? -value : value);
    return 1;
}

/* Decodes column `i` of row `row` (binary format) into a store value. */
static int decode_column(postgres_connection *c, const PGresult *result, int row, int i,
                         store_value *out, char *error) {
    memset(out, 0, sizeof *out);
    if (PQgetisnull(result, row, i)) {
        out->type = STORE_NULL;
        return CAP_OK;
    }
    const unsigned char *bytes = (const unsigned char *)PQgetvalue(result, row, i);
    int size = PQgetlength(result, row, i);
    Oid type = PQftype(result, i);
    switch (type) {
    case OID_INT8:
    case OID_INT4:
    case OID_INT2:
    case OID_BOOL:
        if (size != 8 && size != 4 && size != 2 && size != 1) break;
        out->type = STORE_INTEGER;
        out->integer = big_endian(bytes, size);
        return CAP_OK;
    case OID_NUMERIC:
        if (!numeric_integer(bytes, size, &out->integer)) break;
        out->type = STORE_INTEGER;
        return CAP_OK;
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
    case OID_NAME:
        out->type = STORE_TEXT;
        out->bytes = bytes;
        out->size = (size_t)size;
        return CAP_OK;
    case OID_BYTEA:
        out->type = STORE_BLOB;
        out->bytes = bytes;
        out->size = (size_t)size;
        return CAP_OK;
    default:
        break;
    }
    if (error)
        snprintf(error, CAP_ERROR_SIZE,
                 "store postgres (%s): column %d is of type %u, which the store does not read",
                 c->where, i + 1, (unsigned)type);
    return STORE_ECORRUPT;
}

/* The cached prepared statement's name for `sql`, preparing it with the
 * parameter types of this first use; *name = "" when the cache is full (the
 * statement is then run unprepared). */
static int postgres_prepare(postgres_connection *c, const char *sql, const Oid *types, int count,
                            char name[24], char *error) {
    int free_slot = -1;
    for (int i = 0; i < STATEMENT_CACHE_SIZE; i++) {
        if (c->cache[i].sql == sql) {
            snprintf(name, 24, "capsule_%d", i);
            return CAP_OK;
        }
        if (!c->cache[i].sql && free_slot < 0) free_slot = i;
    }
    name[0] = '\0';
    if (free_slot < 0) return CAP_OK;
    snprintf(name, 24, "capsule_%d", free_slot);
    PGresult *answer = PQprepare(c->connection, name, sql, count, types);
    int result = PQresultStatus(answer) == PGRES_COMMAND_OK
                     ? CAP_OK
                     : postgres_error(c, answer, "prepare", error);
    PQclear(answer);
    if (result == CAP_OK) c->cache[free_slot].sql = sql;
    return result;
}

static int starts_with_select(const char *sql) {
    return strncasecmp(sql, "SELECT", 6) == 0;
}

static int postgres_execute(void *handle, const char *sql, const store_value *parameters,
                            int parameter_count, store_row_function row, void *context,
                            char *error) {
    postgres_connection *c = handle;
    if (parameter_count > MAX_PARAMETERS) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: too many statement parameters");
        return CAP_EINVAL;
    }
    Oid types[MAX_PARAMETERS];
    const char *values[MAX_PARAMETERS];
    int lengths[MAX_PARAMETERS], formats[MAX_PARAMETERS];
    char numbers[MAX_PARAMETERS][24];
    for (int i = 0; i < parameter_count; i++) {
        const store_value *value = &parameters[i];
        lengths[i] = 0;
        formats[i] = 0;
        switch (value->type) {
        case STORE_INTEGER:
            types[i] = OID_INT8;
            snprintf(numbers[i], sizeof numbers[i], "%lld", (long long)value->integer);
            values[i] = numbers[i];
            break;
        case STORE_TEXT:
        case STORE_BLOB:
            /* Both in binary: text's binary form is its bytes, and a
             * binary parameter needs no NUL terminator. */
            types[i] = value->type == STORE_TEXT ? OID_TEXT : OID_BYTEA;
            values[i] = value->size ? value->bytes : "";
            lengths[i] = (int)value->size;
            formats[i] = 1;
            break;
        default:
            types[i] = 0;
            values[i] = NULL;
            break;
        }
    }
    int standalone = !in_transaction(c);
    PGresult *answer = NULL;
    int result = CAP_OK;
    for (int attempt = 0;; attempt++) {
        if (standalone && (result = postgres_ensure(c, error)) != CAP_OK) return result;
        char name[24];
        result = postgres_prepare(c, sql, types, parameter_count, name, error);
        if (result == CAP_OK) {
            answer = name[0] ? PQexecPrepared(c->connection, name, parameter_count, values,
                                              lengths, formats, 1)
                             : PQexecParams(c->connection, sql, parameter_count, types, values,
                                            lengths, formats, 1);
            int status = PQresultStatus(answer);
            if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) break;
            int lost = connection_lost(c, answer);
            result = postgres_error(c, answer, "query", error);
            PQclear(answer);
            answer = NULL;
            /* A read on a connection that died while idle: once more. */
            if (!(lost && standalone && attempt == 0 && starts_with_select(sql))) return result;
        } else if (!(standalone && attempt == 0 && PQstatus(c->connection) != CONNECTION_OK)) {
            return result;
        }
    }
    int rows = PQntuples(answer), count = PQnfields(answer);
    if (count > MAX_COLUMNS) count = MAX_COLUMNS;
    for (int r = 0; r < rows && row && result == CAP_OK; r++) {
        store_value columns[MAX_COLUMNS];
        for (int i = 0; i < count && result == CAP_OK; i++)
            result = decode_column(c, answer, r, i, &columns[i], error);
        if (result == CAP_OK) result = row(context, columns, count, error);
    }
    PQclear(answer);
    return result;
}

/* Migrations (and schema_version's CREATE TABLE IF NOT EXISTS), inside
 * store.c's write transaction, after postgres_lock_schema. */
static int postgres_script(void *handle, const char *sql, char *error) {
    postgres_connection *c = handle;
    if (!in_transaction(c)) {
        int result = postgres_ensure(c, error);
        if (result != CAP_OK) return result;
    }
    PGresult *answer = PQexec(c->connection, sql);
    int status = PQresultStatus(answer);
    int result = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                     ? CAP_OK
                     : postgres_error(c, answer, "migration", error);
    PQclear(answer);
    return result;
}

/* An advisory lock held until the migration's transaction ends: nodes
 * starting together on a new database migrate one after the other (the
 * second then finds the schema current), and two CREATE TABLE IF NOT
 * EXISTS never race (PostgreSQL lets them, and one fails).  The key is any
 * constant every capsule uses; it is per database, so stores in several
 * schemas of one database take turns, which costs nothing but a wait. */
static int postgres_lock_schema(void *handle, char *error) {
    return postgres_simple(handle, "SELECT pg_advisory_xact_lock(7340218493519042561)", error);
}

/* PostgreSQL has no cheap whole-database check (pg_amcheck is a separate
 * tool); what can be checked from here is that the server answers and that
 * every page names a blob that exists (true unless the foreign keys were
 * bypassed). */
static int postgres_check(void *handle, char *error) {
    postgres_connection *c = handle;
    int result = postgres_ensure(c, error);
    if (result != CAP_OK) return result;
    PGresult *answer =
        PQexec(c->connection, "SELECT COUNT(*) FROM snapshot_pages AS p"
                              " WHERE NOT EXISTS (SELECT 1 FROM blobs AS b WHERE b.hash = p.hash)");
    if (PQresultStatus(answer) != PGRES_TUPLES_OK) {
        result = postgres_error(c, answer, "check", error);
    } else if (strcmp(PQgetvalue(answer, 0, 0), "0") != 0) {
        if (error)
            snprintf(error, CAP_ERROR_SIZE, "store postgres (%s): %s snapshot pages name no blob",
                     c->where, PQgetvalue(answer, 0, 0));
        result = STORE_ECORRUPT;
    }
    PQclear(answer);
    return result;
}

#define POSTGRES_BACKEND(name)                                                                     \
    {                                                                                              \
        .scheme = name, .migrations = postgres_migrations,                                         \
        .migration_count = (int)(sizeof postgres_migrations / sizeof *postgres_migrations),       \
        .open = postgres_open, .close = postgres_close, .begin = postgres_begin,                   \
        .commit = postgres_commit, .rollback = postgres_rollback, .execute = postgres_execute,     \
        .script = postgres_script, .lock_schema = postgres_lock_schema, .check = postgres_check,   \
        .row_locks = 1, .notifies = 1,                                                             \
    }

const store_backend store_postgres_backend = POSTGRES_BACKEND("postgres://");
const store_backend store_postgresql_backend = POSTGRES_BACKEND("postgresql://");
