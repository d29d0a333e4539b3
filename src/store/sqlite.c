/*
 * sqlite.c — the store's SQLite backend (backend.h): `sqlite:PATH`.
 *
 * One connection per store handle, in WAL mode with synchronous=FULL (a
 * committed transaction survives a crash of the process and of the
 * machine), foreign keys on, a busy timeout, and BEGIN IMMEDIATE for writes
 * so that a write transaction holds the lock from its first statement.
 *
 * The process that opens the store owns it: an exclusive lock on PATH-lock,
 * released by the kernel when the process dies, so whatever the database
 * says is `running` when we get the lock was left by a dead process.
 *
 * Prepared statements are cached by their SQL text's address (store.c passes
 * static strings); parameters `$N` are bound by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../libraries/sqlite.h"
#include "backend.h"
#include "store.h"

/* The schema, one migration per version.  docs/store.md shows it whole;
 * PostgreSQL's (postgres.c) must describe the same tables. */
static const char *const sqlite_migrations[] = {
    /* 0 -> 1: sessions, calls, snapshots, pages, blobs (schema_version
     * itself is store.c's, the same for every backend). */
    "CREATE TABLE sessions (\n"
    "    id              TEXT PRIMARY KEY,\n"
    "    principal       TEXT NOT NULL,\n"
    "    status          TEXT NOT NULL CHECK (status IN ('live', 'parked', 'expired')),\n"
    "    created_at      INTEGER NOT NULL,\n"
    "    last_used_at    INTEGER NOT NULL,\n"
    "    ttl_ms          INTEGER NOT NULL,\n"
    "    expires_at      INTEGER,\n"
    "    latest_snapshot INTEGER REFERENCES snapshots(id) ON DELETE SET NULL,\n"
    "    call_count      INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX sessions_parked ON sessions(last_used_at) WHERE status = 'parked';\n"
    "CREATE INDEX sessions_latest_snapshot ON sessions(latest_snapshot);\n"
    "CREATE TABLE calls (\n"
    "    session         TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    seq             INTEGER NOT NULL,\n"
    "    idempotency_key TEXT,\n"
    "    status          TEXT NOT NULL,\n"
    "    request_hash    BLOB,\n"
    "    result          TEXT,\n"
    "    started_at      INTEGER NOT NULL,\n"
    "    finished_at     INTEGER,\n"
    "    PRIMARY KEY (session, seq),\n"
    "    UNIQUE (session, idempotency_key)\n"
    ");\n"
    "CREATE INDEX calls_running ON calls(session) WHERE status = 'running';\n"
    "CREATE TABLE blobs (\n"
    "    hash        BLOB PRIMARY KEY CHECK (length(hash) = 32),\n"
    "    raw_size    INTEGER NOT NULL,\n"
    "    stored_size INTEGER NOT NULL,\n"
    "    data        BLOB NOT NULL,\n"
    "    created_at  INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE snapshots (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    session    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,\n"
    "    call_seq   INTEGER,\n"
    "    build_id   TEXT NOT NULL,\n"
    "    page_size  INTEGER NOT NULL,\n"
    "    manifest   TEXT NOT NULL,\n"
    "    created_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX snapshots_session ON snapshots(session);\n"
    "CREATE TABLE snapshot_pages (\n"
    "    snapshot   INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,\n"
    "    page_index INTEGER NOT NULL,\n"
    "    hash       BLOB NOT NULL REFERENCES blobs(hash),\n"
    "    PRIMARY KEY (snapshot, page_index)\n"
    ") WITHOUT ROWID;\n"
    "CREATE INDEX snapshot_pages_hash ON snapshot_pages(hash);\n",

    /* 1 -> 2: blob usage as a counter (the quota is checked on every commit,
     * and summing the blobs each time grows with the store), initialised
     * from the blobs already there. */
    "CREATE TABLE usage (\n"
    "    id         INTEGER PRIMARY KEY CHECK (id = 1),\n"
    "    blob_bytes INTEGER NOT NULL,\n"
    "    blob_count INTEGER NOT NULL,\n"
    "    raw_bytes  INTEGER NOT NULL\n"
    ");\n"
    "INSERT INTO usage (id, blob_bytes, blob_count, raw_bytes)\n"
    "    SELECT 1, COALESCE(SUM(stored_size), 0), COUNT(*), COALESCE(SUM(raw_size), 0)\n"
    "    FROM blobs;\n",

    /* 2 -> 3: nodes and their leases (docs/store.md, "Several nodes"): the
     * node running a call, the node holding a live session, and the epoch a
     * session's owner changes bump.  The same in postgres.c. */
    "CREATE TABLE nodes (\n"
    "    id               TEXT PRIMARY KEY,\n"
    "    started_at       INTEGER NOT NULL,\n"
    "    lease_expires_at INTEGER NOT NULL\n"
    ");\n"
    "ALTER TABLE calls ADD COLUMN node TEXT;\n"
    "ALTER TABLE calls ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;\n"
    "ALTER TABLE sessions ADD COLUMN owner TEXT;\n"
    "ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;\n"
    "CREATE INDEX sessions_live ON sessions(owner) WHERE status = 'live';\n",

    /* 3 -> 4: durable jobs (docs/store.md, "Jobs"; the same in postgres.c):
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
    "    attempts         INTEGER NOT NULL DEFAULT 0,\n"
    "    max_attempts     INTEGER NOT NULL,\n"
    "    backoff_ms       INTEGER NOT NULL,\n"
    "    timeout_ms       INTEGER NOT NULL,\n"
    "    run_after        INTEGER NOT NULL,\n"
    "    lease_owner      TEXT,\n"
    "    lease_expires_at INTEGER,\n"
    "    cancel_requested INTEGER NOT NULL DEFAULT 0,\n"
    "    wait_event       TEXT,\n"
    "    last_error       TEXT,\n"
    "    result           TEXT,\n"
    "    created_at       INTEGER NOT NULL,\n"
    "    updated_at       INTEGER NOT NULL,\n"
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
    "    created_at INTEGER NOT NULL,\n"
    "    PRIMARY KEY (job, name)\n"
    ");\n"
    "CREATE TABLE job_events (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    principal  TEXT NOT NULL,\n"
    "    name       TEXT NOT NULL,\n"
    "    payload    TEXT NOT NULL,\n"
    "    created_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX job_events_name ON job_events(principal, name, created_at);\n"
    "CREATE TABLE job_queues (\n"
    "    name        TEXT PRIMARY KEY,\n"
    "    concurrency INTEGER NOT NULL CHECK (concurrency > 0)\n"
    ");\n",
    /* 4 -> 5: tasks of the MCP Tasks extension (docs/mcp.md, "Tasks"): one
     * row per task, owned by a principal, run by a node; `payload` is the
     * tool result (completed) or the JSON-RPC error (failed) as JSON text.
     * The same in postgres.c. */
    "CREATE TABLE tasks (\n"
    "    id             TEXT PRIMARY KEY,\n"
    "    principal      TEXT NOT NULL,\n"
    "    node           TEXT NOT NULL,\n"
    "    status         TEXT NOT NULL,\n"
    "    status_message TEXT,\n"
    "    payload        TEXT,\n"
    "    created_at     INTEGER NOT NULL,\n"
    "    updated_at     INTEGER NOT NULL,\n"
    "    expires_at     INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX tasks_expires ON tasks(expires_at);\n",
    /* 5 -> 6: finished jobs by age, for pruning them after the retention
     * (jobs.c, store_job_prune); how long a job waited, due, for a runner
     * (its claims' sum: the claim latency).  The same in postgres.c. */
    "CREATE INDEX jobs_finished ON jobs(updated_at)\n"
    "    WHERE status IN ('succeeded', 'dead', 'cancelled');\n"
    "ALTER TABLE jobs ADD COLUMN claim_wait_ms INTEGER NOT NULL DEFAULT 0;\n",
    /* 6 -> 7: a node that wants a session live on another (alive) node
     * asks it to park the session (docs/scale-out.md, "Moving a live
     * session"): the asking node, kept in the row so that the request
     * outlives a lost NOTIFY.  (postgres.c has the same.) */
    "ALTER TABLE sessions ADD COLUMN park_requested_by TEXT;\n",
};

#define STATEMENT_CACHE_SIZE 80
#define MAX_COLUMNS 24

typedef struct sqlite_connection {
    sqlite3 *database;
    char *path;
    int lock_fd;
    /* The lock file's identity, for owned_stores. */
    dev_t lock_device;
    ino_t lock_inode;
    struct sqlite_connection *next_owned;
    struct {
        const char *sql;
        sqlite3_stmt *statement;
    } cache[STATEMENT_CACHE_SIZE];
} sqlite_connection;

/* Translates an SQLite result code into a store code and a message naming
 * what was being done. */
static int sqlite_error(sqlite_connection *connection, int code, const char *what, char *error) {
    int primary = code & 0xff;
    int result;
    switch (primary) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        result = STORE_ECORRUPT;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        result = STORE_EBUSY;
        break;
    case SQLITE_NOMEM:
        result = CAP_ENOMEM;
        break;
    case SQLITE_CONSTRAINT:
        result = STORE_ECONFLICT;
        break;
    default:
        result = CAP_EIO;
        break;
    }
    if (error) {
        sqlite3 *database = connection ? connection->database : NULL;
        const char *message = database ? sqlite3_errmsg(database) : sqlite3_errstr(code);
        /* For an I/O error or a full disk, what the system said (ENOSPC...). */
        int system_errno = database && (primary == SQLITE_IOERR || primary == SQLITE_FULL)
                               ? sqlite3_system_errno(database)
                               : 0;
        snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: %s: %s%s%s%s",
                 connection && connection->path ? connection->path : "?", what, message,
                 system_errno ? " (" : "", system_errno ? strerror(system_errno) : "",
                 system_errno ? ")" : "");
    }
    return result;
}

static int sqlite_simple(sqlite_connection *connection, const char *sql, char *error) {
    int code = sqlite3_exec(connection->database, sql, NULL, NULL, NULL);
    return code == SQLITE_OK ? CAP_OK : sqlite_error(connection, code, sql, error);
}

/* The owner lock is a POSIX record lock (fcntl F_SETLK), which belongs to
 * the process, not to the open file: a child the server forks (the zygote, a
 * worker) does not inherit it, so a killed server's store is free again
 * even while its children live on (an flock would stay with them).  Such a
 * lock does not exclude its own process, so this process's owned stores are
 * listed too, and a second open of one of them is refused like another
 * process's. */
static pthread_mutex_t owned_mutex = PTHREAD_MUTEX_INITIALIZER;
static sqlite_connection *owned_stores;

static int owner_lock(sqlite_connection *connection, char *error) {
    struct stat file;
    if (fstat(connection->lock_fd, &file) != 0) {
        if (error)
            snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: lock file: %s", connection->path,
                     strerror(errno));
        return CAP_EIO;
    }
    connection->lock_device = file.st_dev;
    connection->lock_inode = file.st_ino;
    pthread_mutex_lock(&owned_mutex);
    int busy = 0, failure = 0;
    for (sqlite_connection *other = owned_stores; other; other = other->next_owned)
        busy |= other->lock_device == file.st_dev && other->lock_inode == file.st_ino;
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (!busy && fcntl(connection->lock_fd, F_SETLK, &lock) != 0) {
        busy = errno == EACCES || errno == EAGAIN;
        failure = busy ? 0 : errno;
    }
    if (!busy && !failure) {
        connection->next_owned = owned_stores;
        owned_stores = connection;
    }
    pthread_mutex_unlock(&owned_mutex);
    if (busy || failure) {
        if (error)
            snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: %s", connection->path,
                     busy
                         ? "in use (one process at a time owns an SQLite store, through one handle)"
                         : strerror(failure));
        close(connection->lock_fd); /* not owned: closing releases nothing of another handle's */
        connection->lock_fd = -1;
        return busy ? STORE_EBUSY : CAP_EIO;
    }
    return CAP_OK;
}

/* Closing the lock file releases the lock (and would release it whatever
 * descriptor of the file this process closed: nothing else opens it). */
static void owner_unlock(sqlite_connection *connection) {
    if (connection->lock_fd < 0) return;
    pthread_mutex_lock(&owned_mutex);
    for (sqlite_connection **link = &owned_stores; *link; link = &(*link)->next_owned)
        if (*link == connection) {
            *link = connection->next_owned;
            break;
        }
    close(connection->lock_fd);
    connection->lock_fd = -1;
    pthread_mutex_unlock(&owned_mutex);
}

static void sqlite_close(void *handle) {
    sqlite_connection *connection = handle;
    if (!connection) return;
    for (int i = 0; i < STATEMENT_CACHE_SIZE; i++) sqlite3_finalize(connection->cache[i].statement);
    sqlite3_close(connection->database);
    owner_unlock(connection);
    free(connection->path);
    free(connection);
}

/* Takes the store's lock, opens the database and sets it up.  The first
 * statement that reads the file (journal_mode) is where a file that is not a
 * database is found: STORE_ECORRUPT. */
static int sqlite_open(const char *location, void **out, int *exclusive, char *error) {
    *out = NULL;
    *exclusive = 0;
    if (!location[0]) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: sqlite: URL without a path");
        return CAP_EINVAL;
    }
    char why[256];
    if (library_load_sqlite(why) != 0) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: %.240s", why);
        return CAP_ERUNTIME;
    }
    sqlite_connection *connection = calloc(1, sizeof *connection);
    size_t length = strlen(location);
    char *lock_path = malloc(length + sizeof "-lock");
    if (!connection || !lock_path || !(connection->path = strdup(location))) {
        free(connection);
        free(lock_path);
        if (error) snprintf(error, CAP_ERROR_SIZE, "store: out of memory");
        return CAP_ENOMEM;
    }
    /* The file's directory is made if missing, private to the user: the
     * store holds every session's state. */
    const char *slash = strrchr(location, '/');
    if (slash && slash > location) {
        memcpy(lock_path, location, (size_t)(slash - location));
        lock_path[slash - location] = '\0';
        if (store_make_directory(lock_path) != 0) {
            if (error)
                snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: cannot create %s: %s", location,
                         lock_path, strerror(errno));
            free(lock_path);
            free(connection->path);
            free(connection);
            return CAP_EIO;
        }
    }
    memcpy(lock_path, location, length);
    memcpy(lock_path + length, "-lock", sizeof "-lock");
    connection->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int lock_errno = errno;
    free(lock_path);
    if (connection->lock_fd < 0) {
        if (error)
            snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: cannot create its lock file: %s",
                     location, strerror(lock_errno));
        sqlite_close(connection);
        return CAP_EIO;
    }
    int result = owner_lock(connection, error);
    if (result != CAP_OK) {
        sqlite_close(connection);
        return result;
    }
    int code =
        sqlite3_open_v2(location, &connection->database,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (code != SQLITE_OK) {
        int result = sqlite_error(connection, code, "open", error);
        sqlite_close(connection);
        return result;
    }
    sqlite3_extended_result_codes(connection->database, 1);
    sqlite3_busy_timeout(connection->database, 5000);
    /* journal_mode answers with the mode in force: anything but "wal" means
     * the setting did not take (a read-only directory, say). */
    sqlite3_stmt *statement = NULL;
    code =
        sqlite3_prepare_v2(connection->database, "PRAGMA journal_mode=WAL", -1, &statement, NULL);
    if (code == SQLITE_OK) code = sqlite3_step(statement);
    int wal =
        code == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(statement, 0), "wal") == 0;
    sqlite3_finalize(statement);
    if (code != SQLITE_ROW) {
        int result = sqlite_error(connection, code, "open", error);
        sqlite_close(connection);
        return result;
    }
    if (!wal) {
        if (error) snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: WAL mode refused", location);
        sqlite_close(connection);
        return CAP_EIO;
    }
    result = sqlite_simple(connection, "PRAGMA synchronous=FULL", error);
    if (result == CAP_OK) result = sqlite_simple(connection, "PRAGMA foreign_keys=ON", error);
    /* 2 MiB of page cache, SQLite's default.  It was 32 MiB, for the blob
     * and page indexes a commit touches; but a restore from the store reads
     * every blob of the session once, and a cache allowed to hold them all
     * grew by ≈ 1,300 freshly faulted pages at the first restore of a
     * process (the test machine: 20 MB heap restored in 65-78 ms, 45-57 ms
     * with 2 MiB; durable calls 8.4-11.8 ms, 7.6-10.4 ms with 2 MiB). */
    if (result == CAP_OK) result = sqlite_simple(connection, "PRAGMA cache_size=-2048", error);
    /* After a checkpoint, a WAL that one large snapshot grew is cut back. */
    if (result == CAP_OK)
        result = sqlite_simple(connection, "PRAGMA journal_size_limit=67108864", error);
    if (result != CAP_OK) {
        sqlite_close(connection);
        return result;
    }
    *exclusive = 1;
    *out = connection;
    return CAP_OK;
}

static int sqlite_begin(void *handle, int write, char *error) {
    return sqlite_simple(handle, write ? "BEGIN IMMEDIATE" : "BEGIN", error);
}

static int sqlite_commit(void *handle, char *error) {
    return sqlite_simple(handle, "COMMIT", error);
}

static void sqlite_rollback(void *handle) {
    sqlite_connection *connection = handle;
    if (!sqlite3_get_autocommit(connection->database))
        sqlite3_exec(connection->database, "ROLLBACK", NULL, NULL, NULL);
}

/* The cached statement for `sql`, prepared on first use.  *cached = 0 when
 * the cache is full: the caller finalizes it after use. */
static int sqlite_statement(sqlite_connection *connection, const char *sql, sqlite3_stmt **out,
                            int *cached, char *error) {
    int free_slot = -1;
    for (int i = 0; i < STATEMENT_CACHE_SIZE; i++) {
        if (connection->cache[i].sql == sql) {
            *out = connection->cache[i].statement;
            *cached = 1;
            return CAP_OK;
        }
        if (!connection->cache[i].sql && free_slot < 0) free_slot = i;
    }
    int code =
        sqlite3_prepare_v3(connection->database, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (code != SQLITE_OK) return sqlite_error(connection, code, "prepare", error);
    *cached = free_slot >= 0;
    if (*cached) {
        connection->cache[free_slot].sql = sql;
        connection->cache[free_slot].statement = *out;
    }
    return CAP_OK;
}

static int sqlite_bind(sqlite_connection *connection, sqlite3_stmt *statement,
                       const store_value *parameters, int parameter_count, char *error) {
    int count = sqlite3_bind_parameter_count(statement);
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(statement, i);
        int number = name && name[0] == '$' ? atoi(name + 1) : 0;
        if (number < 1 || number > parameter_count) {
            if (error)
                snprintf(error, CAP_ERROR_SIZE, "store: statement parameter %s has no value",
                         name ? name : "?");
            return CAP_EINVAL;
        }
        const store_value *value = &parameters[number - 1];
        int code;
        switch (value->type) {
        case STORE_INTEGER:
            code = sqlite3_bind_int64(statement, i, value->integer);
            break;
        case STORE_TEXT:
            code = sqlite3_bind_text64(statement, i, value->size ? value->bytes : "", value->size,
                                       SQLITE_STATIC, SQLITE_UTF8);
            break;
        case STORE_BLOB:
            code = value->size
                       ? sqlite3_bind_blob64(statement, i, value->bytes, value->size, SQLITE_STATIC)
                       : sqlite3_bind_zeroblob(statement, i, 0);
            break;
        default:
            code = sqlite3_bind_null(statement, i);
            break;
        }
        if (code != SQLITE_OK) return sqlite_error(connection, code, "bind", error);
    }
    return CAP_OK;
}

static int sqlite_execute(void *handle, const char *sql, const store_value *parameters,
                          int parameter_count, store_row_function row, void *context, char *error) {
    sqlite_connection *connection = handle;
    sqlite3_stmt *statement;
    int cached = 0;
    int result = sqlite_statement(connection, sql, &statement, &cached, error);
    if (result != CAP_OK) return result;
    result = sqlite_bind(connection, statement, parameters, parameter_count, error);
    while (result == CAP_OK) {
        int code = sqlite3_step(statement);
        if (code == SQLITE_DONE) break;
        if (code != SQLITE_ROW) {
            result = sqlite_error(connection, code, "query", error);
            break;
        }
        if (!row) continue;
        store_value columns[MAX_COLUMNS];
        int count = sqlite3_column_count(statement);
        if (count > MAX_COLUMNS) count = MAX_COLUMNS;
        for (int i = 0; i < count; i++) {
            store_value *column = &columns[i];
            memset(column, 0, sizeof *column);
            switch (sqlite3_column_type(statement, i)) {
            case SQLITE_INTEGER:
            case SQLITE_FLOAT:
                column->type = STORE_INTEGER;
                column->integer = sqlite3_column_int64(statement, i);
                break;
            case SQLITE_TEXT:
                column->type = STORE_TEXT;
                column->bytes = sqlite3_column_text(statement, i);
                column->size = (size_t)sqlite3_column_bytes(statement, i);
                break;
            case SQLITE_BLOB:
                column->type = STORE_BLOB;
                column->bytes = sqlite3_column_blob(statement, i);
                column->size = (size_t)sqlite3_column_bytes(statement, i);
                break;
            default:
                column->type = STORE_NULL;
                break;
            }
        }
        result = row(context, columns, count, error);
    }
    if (cached) {
        sqlite3_reset(statement);
        sqlite3_clear_bindings(statement);
    } else {
        sqlite3_finalize(statement);
    }
    return result;
}

static int sqlite_script(void *handle, const char *sql, char *error) {
    sqlite_connection *connection = handle;
    int code = sqlite3_exec(connection->database, sql, NULL, NULL, NULL);
    return code == SQLITE_OK ? CAP_OK : sqlite_error(connection, code, "migration", error);
}

static int sqlite_check(void *handle, char *error) {
    sqlite_connection *connection = handle;
    sqlite3_stmt *statement;
    int code =
        sqlite3_prepare_v2(connection->database, "PRAGMA integrity_check", -1, &statement, NULL);
    if (code != SQLITE_OK) return sqlite_error(connection, code, "integrity_check", error);
    code = sqlite3_step(statement);
    int result = CAP_OK;
    if (code != SQLITE_ROW) {
        result = sqlite_error(connection, code, "integrity_check", error);
    } else {
        const char *answer = (const char *)sqlite3_column_text(statement, 0);
        if (!answer || strcmp(answer, "ok") != 0) {
            if (error)
                snprintf(error, CAP_ERROR_SIZE, "store sqlite:%s: integrity_check: %s",
                         connection->path, answer ? answer : "no answer");
            result = STORE_ECORRUPT;
        }
    }
    sqlite3_finalize(statement);
    return result;
}

const store_backend store_sqlite_backend = {
    .scheme = "sqlite:",
    .migrations = sqlite_migrations,
    .migration_count = (int)(sizeof sqlite_migrations / sizeof *sqlite_migrations),
    .open = sqlite_open,
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .execute = sqlite_execute,
    .script = sqlite_script,
    .check = sqlite_check,
};
