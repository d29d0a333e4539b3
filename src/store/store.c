/*
 * store.c — the store's operations (store.h), once for every backend.
 *
 * Each operation is a few statements of shared SQL (backend.h says which
 * dialect) run through the backend chosen by the URL.  Writes of more than
 * one statement run in one write transaction: store_write_begin, the
 * statements, store_write_end (commit, or roll back on any error).
 *
 * Blobs: the key is SHA-256 of the raw bytes, the row holds a zstd frame.
 * Compression happens inside the write transaction, only for blobs not
 * already stored, so a page shared by many snapshots is compressed once.
 * Reads trust nothing: the frame's declared size, the row's raw size and the
 * hash of what comes out must all agree.
 *
 * Usage (bytes of blobs) is a counter row kept in step with every blob
 * inserted or deleted, in the same transaction; store_check recomputes it.
 */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../libraries/digest.h"
#include "backend.h"

/* How long a node's lease lasts after each renewal, unless store_set_lease. */
#define DEFAULT_LEASE_MS 30000

/* Pages are small and written on the call's critical path: the fastest
 * positive level (bench/store.c: level 3 costs more and gains little). */
#define COMPRESSION_LEVEL 1

typedef struct id_list {
    char (*ids)[STORE_ID_SIZE];
    size_t count, capacity;
} id_list;

struct store {
    const store_backend *backend;
    void *connection;
    int schema_version;
    int exclusive;                   /* the backend said: no other user until closed */
    char node[STORE_ID_SIZE];        /* this handle's node id (nodes.id) */
    int64_t lease_ms;
    int64_t recovered_calls;
    uint64_t quota;                  /* 0: none */
    int64_t (*clock)(void *context); /* NULL: the real-time clock */
    void *clock_context;
    ZSTD_CCtx *compressor;
    ZSTD_DCtx *decompressor;
    void *scratch;                   /* compression output */
    size_t scratch_size;
    void *batch_scratch;             /* compression output of a batch of blobs */
    size_t batch_scratch_size;
    /* The two batches of decompressed pages a snapshot read alternates
     * between, kept: allocated afresh, their 128 pages were faulted in at
     * every restore. */
    uint8_t *page_buffers;
    size_t page_buffers_size;
    int64_t jobs_swept_at;           /* the store time of this handle's last job sweep; 0: never */
    /* Sessions make_room expired, for store_take_expired: those of committed
     * transactions, then the open one's (from quota_expired_before on). */
    id_list quota_expired;
    size_t quota_expired_before;
};

static const store_backend *const backends[] = {&store_sqlite_backend, &store_postgres_backend,
                                                &store_postgresql_backend};

#define COUNT(array) (sizeof(array) / sizeof *(array))
#define INTEGER(x) ((store_value){.type = STORE_INTEGER, .integer = (x)})
#define TEXT(s) ((store_value){.type = STORE_TEXT, .bytes = (s), .size = strlen(s)})
#define BLOB(p, n) ((store_value){.type = STORE_BLOB, .bytes = (p), .size = (n)})
#define NOTHING ((store_value){.type = STORE_NULL})
/* run(store, sql, row, context, error, parameters...) */
#define RUN(s, sql, row, context, error, ...)                                                      \
    store_run((s), (sql), (const store_value[]){__VA_ARGS__},                                      \
              (int)(sizeof((const store_value[]){__VA_ARGS__}) / sizeof(store_value)), (row),      \
              (context), (error))

int store_fail(char *error, int code, const char *format, ...) {
    if (error) {
        va_list arguments;
        va_start(arguments, format);
        int length = snprintf(error, CAP_ERROR_SIZE, "store: ");
        vsnprintf(error + length, CAP_ERROR_SIZE - (size_t)length, format, arguments);
        va_end(arguments);
    }
    return code;
}

static int64_t store_now(store *store) {
    if (store->clock) return store->clock(store->clock_context);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int store_run(store *store, const char *sql, const store_value *parameters, int count,
                     store_row_function row, void *context, char *error) {
    return store->backend->execute(store->connection, sql, parameters, count, row, context, error);
}

static int store_write_begin(store *store, char *error) {
    store->quota_expired_before = store->quota_expired.count;
    return store->backend->begin(store->connection, 1, error);
}

/* Commits when result is CAP_OK, else (or if the commit fails) rolls back;
 * returns the outcome. */
static int store_write_end(store *store, int result, char *error) {
    if (result == CAP_OK) {
        result = store->backend->commit(store->connection, error);
        if (result == CAP_OK) return CAP_OK;
    }
    store->backend->rollback(store->connection);
    store->quota_expired.count = store->quota_expired_before; /* expired in vain */
    return result;
}

/* --- row collectors ------------------------------------------------------------ */

typedef struct text_column {
    int rows;
    char text[STORE_ID_SIZE];
} text_column;

static int collect_text(void *context, const store_value *columns, int count, char *error) {
    (void)error;
    text_column *out = context;
    if (out->rows++ == 0 && count > 0) store_copy_text(out->text, sizeof out->text, &columns[0]);
    return 0;
}

/* The first row's integer columns (others read as 0) and how many rows came. */
typedef struct integers {
    int64_t rows;
    int64_t value[4];
    int null[4];
} integers;

static int collect_integers(void *context, const store_value *columns, int count, char *error) {
    (void)error;
    integers *out = context;
    if (out->rows++ == 0)
        for (int i = 0; i < count && i < 4; i++) {
            out->value[i] = columns[i].type == STORE_INTEGER ? columns[i].integer : 0;
            out->null[i] = columns[i].type == STORE_NULL;
        }
    return 0;
}

/* Sums the integer columns of every row (blob sizes of a DELETE ... RETURNING). */
static int sum_integers(void *context, const store_value *columns, int count, char *error) {
    (void)error;
    integers *out = context;
    out->rows++;
    for (int i = 0; i < count && i < 4; i++)
        if (columns[i].type == STORE_INTEGER) out->value[i] += columns[i].integer;
    return 0;
}

/* A row narrower than its statement's columns: only a damaged database. */
static int malformed_row(int count, int expected, char *error) {
    return store_fail(error, STORE_ECORRUPT, "a row of %d columns where %d are expected", count,
                expected);
}

void store_copy_text(char *destination, size_t size, const store_value *value) {
    size_t length = value->type == STORE_TEXT ? value->size : 0;
    if (length >= size) length = size - 1;
    if (length) memcpy(destination, value->bytes, length);
    destination[length] = '\0';
}

char *store_duplicate_text(const store_value *value) {
    if (value->type != STORE_TEXT) return NULL;
    char *copy = malloc(value->size + 1);
    if (!copy) return NULL;
    memcpy(copy, value->bytes, value->size);
    copy[value->size] = '\0';
    return copy;
}

static void hex(const uint8_t hash[STORE_HASH_SIZE], char out[17]) {
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

/* Ids, principals and keys: 1..128 bytes, no NUL (C strings). */
int store_check_name(const char *value, const char *what, int empty_allowed, char *error) {
    if (!value) return store_fail(error, CAP_EINVAL, "%s missing", what);
    size_t length = strlen(value);
    if ((!empty_allowed && length == 0) || length >= STORE_ID_SIZE)
        return store_fail(error, CAP_EINVAL, "%s must be %s1 to %d bytes", what,
                    empty_allowed ? "0 or " : "", STORE_ID_SIZE - 1);
    return CAP_OK;
}

int store_make_directory(const char *directory) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", directory) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *slash = strchr(path + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash) *slash = '\0';
        int made = mkdir(path, 0700) == 0 || errno == EEXIST;
        if (slash) *slash = '/';
        if (!made) return -1;
        if (!slash) return 0;
    }
}

void store_hash(const void *data, size_t size, uint8_t hash[STORE_HASH_SIZE]) {
    digest_sha256(data, size, hash);
}

/* --- opening --------------------------------------------------------------------- */

static const char schema_version_table[] =
    "CREATE TABLE IF NOT EXISTS schema_version"
    " (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
static const char schema_version_select[] = "SELECT MAX(version) FROM schema_version";
static const char schema_version_insert[] =
    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)";

/* Applies the migrations the database lacks, each in its own write
 * transaction that takes the backend's schema lock, then re-reads the
 * version (another process may have migrated in between). */
static int store_migrate(store *store, char *error) {
    int result = CAP_OK;
    for (;;) {
        if (result != CAP_OK) return result;
        if ((result = store_write_begin(store, error)) != CAP_OK) return result;
        if (store->backend->lock_schema)
            result = store->backend->lock_schema(store->connection, error);
        if (result == CAP_OK)
            result = store->backend->script(store->connection, schema_version_table, error);
        integers version = {0};
        if (result == CAP_OK)
            result =
                store_run(store, schema_version_select, NULL, 0, collect_integers, &version, error);
        int current = (int)version.value[0];
        if (result == CAP_OK && current > store->backend->migration_count)
            result = store_fail(error, STORE_EVERSION,
                          "the database's schema is version %d, newer than this capsule's %d",
                          current, store->backend->migration_count);
        if (result == CAP_OK && current == store->backend->migration_count) {
            store->schema_version = current;
            return store_write_end(store, CAP_OK, error);
        }
        if (result == CAP_OK)
            result = store->backend->script(store->connection, store->backend->migrations[current],
                                            error);
        if (result == CAP_OK)
            result = RUN(store, schema_version_insert, NULL, NULL, error, INTEGER(current + 1),
                         INTEGER(store_now(store)));
        if (result != CAP_OK && error) {
            char detail[CAP_ERROR_SIZE];
            snprintf(detail, sizeof detail, "%s", error);
            store_fail(error, result, "migration to version %d: %s", current + 1, detail);
        }
        result = store_write_end(store, result, error);
    }
}

/* Nodes and leases (docs/store.md, "Several nodes").  Every store handle is
 * a node: a row in `nodes` whose lease it renews; its running calls and its
 * live sessions name it.  A node whose lease has expired is dead (or cut
 * off, which is the same to the others): any node's sweep marks its running
 * calls `interrupted` and parks its live sessions.  With an exclusive
 * backend (SQLite) every other node is dead by definition. */
static const char node_register[] =
    "INSERT INTO nodes (id, started_at, lease_expires_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (id) DO UPDATE SET lease_expires_at = excluded.lease_expires_at";
static const char node_renew[] =
    "UPDATE nodes SET lease_expires_at = $3 WHERE id = $1 AND lease_expires_at >= $2 RETURNING 1";
static const char node_release[] = "UPDATE nodes SET lease_expires_at = 0 WHERE id = $1";
/* $1 now, $2 this node, $3 the oldest lease still alive (now; or, for an
 * exclusive store, beyond any lease). */
static const char sweep_calls[] =
    "UPDATE calls SET status = 'interrupted', finished_at = $1"
    " WHERE status = 'running' AND (node IS NULL OR node <> $2) AND NOT EXISTS"
    " (SELECT 1 FROM nodes WHERE nodes.id = calls.node AND nodes.lease_expires_at >= $3)"
    " RETURNING seq";
/* The live sessions of other nodes whose lease ended: $1 this node, $2 the
 * oldest lease still alive.  One text for the lock and the update below. */
#define SWEPT_SESSIONS                                                                             \
    " WHERE status = 'live' AND (owner IS NULL OR owner <> $1) AND NOT EXISTS"                     \
    " (SELECT 1 FROM nodes WHERE nodes.id = sessions.owner AND nodes.lease_expires_at >= $2)"
static const char sweep_sessions[] =
    "UPDATE sessions SET status = 'parked', owner = NULL" SWEPT_SESSIONS;
/* On PostgreSQL the rows are locked first, and sweep_sessions is a
 * statement of its own after: an UPDATE that waits for a row a claimer has
 * just changed re-checks only the row's own columns against the new
 * version, keeping its first verdict on the nodes table (the NOT EXISTS is
 * planned as an anti-join).  So a session claimed by a live node while the
 * sweep waited, its old owner dead, was parked under the new owner.  After
 * the lock the UPDATE's snapshot includes the claim (store_session_claim
 * does the same). */
static const char sweep_sessions_lock[] =
    "SELECT 1 FROM sessions" SWEPT_SESSIONS " ORDER BY id FOR UPDATE OF sessions";
static const char sweep_nodes[] = "DELETE FROM nodes WHERE id <> $1 AND lease_expires_at < $2";
/* This node's own, when it finds its lease lost. */
static const char own_calls_interrupt[] =
    "UPDATE calls SET status = 'interrupted', finished_at = $1"
    " WHERE status = 'running' AND node = $2 RETURNING seq";
static const char own_sessions_park[] =
    "UPDATE sessions SET status = 'parked', owner = NULL WHERE status = 'live' AND owner = $1";

/* Inside a write transaction: interrupts the running calls and parks the
 * live sessions of every node whose lease ended before `alive_since`, and
 * forgets those nodes; *calls receives how many calls. */
static int sweep_in_transaction(store *store, int64_t alive_since, int64_t *calls, char *error) {
    int64_t now = store_now(store);
    integers swept = {0};
    int result = RUN(store, sweep_calls, collect_integers, &swept, error, INTEGER(now),
                     TEXT(store->node), INTEGER(alive_since));
    if (result == CAP_OK && store->backend->row_locks)
        result = RUN(store, sweep_sessions_lock, NULL, NULL, error, TEXT(store->node),
                     INTEGER(alive_since));
    if (result == CAP_OK)
        result = RUN(store, sweep_sessions, NULL, NULL, error, TEXT(store->node),
                     INTEGER(alive_since));
    if (result == CAP_OK)
        result = RUN(store, sweep_nodes, NULL, NULL, error, TEXT(store->node),
                     INTEGER(alive_since));
    if (calls) *calls = swept.rows;
    return result;
}

/* At open: this node joins with a fresh lease, and what dead nodes left is
 * recovered (with an exclusive backend, everything others left). */
static int store_recover(store *store, char *error) {
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    int64_t now = store_now(store);
    result = RUN(store, node_register, NULL, NULL, error, TEXT(store->node), INTEGER(now),
                 INTEGER(now + store->lease_ms));
    if (result == CAP_OK)
        result = sweep_in_transaction(store, store->exclusive ? INT64_MAX : now,
                                      &store->recovered_calls, error);
    return store_write_end(store, result, error);
}

/* A node id unique among the store's users: host, pid and 32 random bits. */
static void make_node_id(char node[STORE_ID_SIZE]) {
    char host[64] = "";
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    uint32_t random = 0;
    if (getentropy(&random, sizeof random) != 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        random = (uint32_t)now.tv_nsec ^ (uint32_t)now.tv_sec;
    }
    snprintf(node, STORE_ID_SIZE, "%s:%ld:%08x", host, (long)getpid(), random);
}

const char *store_node(const store *store) {
    return store->node;
}

void store_set_lease(store *store, int64_t lease_ms) {
    store->lease_ms = lease_ms > 0 ? lease_ms : DEFAULT_LEASE_MS;
}

int store_renew(store *store, int64_t *recovered, char *error) {
    if (recovered) *recovered = 0;
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    int64_t now = store_now(store);
    integers renewed = {0};
    result = RUN(store, node_renew, collect_integers, &renewed, error, TEXT(store->node),
                 INTEGER(now), INTEGER(now + store->lease_ms));
    int lost = result == CAP_OK && !renewed.rows;
    integers own = {0};
    if (lost) {
        /* Others may have taken over already: what this node still marks
         * as its own is given up too, and it joins again afresh. */
        result = RUN(store, own_calls_interrupt, collect_integers, &own, error, INTEGER(now),
                     TEXT(store->node));
        if (result == CAP_OK)
            result = RUN(store, own_sessions_park, NULL, NULL, error, TEXT(store->node));
        if (result == CAP_OK)
            result = RUN(store, node_register, NULL, NULL, error, TEXT(store->node), INTEGER(now),
                         INTEGER(now + store->lease_ms));
    }
    int64_t swept = 0;
    if (result == CAP_OK) result = sweep_in_transaction(store, now, &swept, error);
    result = store_write_end(store, result, error);
    if (result != CAP_OK) return result;
    if (recovered) *recovered = swept;
    if (lost)
        return store_fail(error, STORE_ECONFLICT,
                    "node %s: its lease had expired; its %lld running calls are interrupted and"
                    " its live sessions parked (stop their workers)",
                    store->node, (long long)own.rows);
    return CAP_OK;
}

int store_open(const char *url, store **out, char *error) {
    *out = NULL;
    if (!url) return store_fail(error, CAP_EINVAL, "no URL");
    const store_backend *backend = NULL;
    for (size_t i = 0; i < COUNT(backends); i++)
        if (strncmp(url, backends[i]->scheme, strlen(backends[i]->scheme)) == 0)
            backend = backends[i];
    if (!backend)
        return store_fail(error, CAP_EINVAL,
                    "'%.100s': unknown kind of store (expected sqlite:PATH or postgres://...)",
                    url);
    return store_open_backend(backend, url + strlen(backend->scheme), out, error);
}

int store_open_backend(const store_backend *backend, const char *location, store **out,
                       char *error) {
    *out = NULL;
    store *opened = calloc(1, sizeof *opened);
    if (!opened) return store_fail(error, CAP_ENOMEM, "out of memory");
    opened->backend = backend;
    opened->lease_ms = DEFAULT_LEASE_MS;
    make_node_id(opened->node);
    int result = backend->open(location, &opened->connection, &opened->exclusive, error);
    if (result == CAP_OK) result = store_migrate(opened, error);
    if (result == CAP_OK) result = store_recover(opened, error);
    if (result != CAP_OK) {
        store_close(opened);
        return result;
    }
    *out = opened;
    return CAP_OK;
}

void store_close(store *store) {
    if (!store) return;
    /* Leaving, the node gives its lease up: whatever it leaves running is
     * recovered by the next sweep rather than after the lease.  Best
     * effort: a store that cannot be written to is recovered all the same. */
    if (store->connection && store->schema_version) {
        store->backend->rollback(store->connection);
        RUN(store, node_release, NULL, NULL, NULL, TEXT(store->node));
    }
    if (store->connection) store->backend->close(store->connection);
    ZSTD_freeCCtx(store->compressor);
    ZSTD_freeDCtx(store->decompressor);
    free(store->quota_expired.ids);
    free(store->scratch);
    free(store->batch_scratch);
    free(store->page_buffers);
    free(store);
}

int64_t store_recovered_calls(const store *store) {
    return store->recovered_calls;
}
int store_schema_version(const store *store) {
    return store->schema_version;
}
void store_set_quota(store *store, uint64_t blob_bytes) {
    store->quota = blob_bytes;
}

void store_set_clock(store *store, int64_t (*now_ms)(void *context), void *context) {
    store->clock = now_ms;
    store->clock_context = context;
}

static const char usage_select[] =
    "SELECT blob_bytes, blob_count, raw_bytes, (SELECT COUNT(*) FROM sessions)"
    " FROM usage WHERE id = 1";

int store_get_usage(store *store, store_usage *out, char *error) {
    integers usage = {0};
    int result = store_run(store, usage_select, NULL, 0, collect_integers, &usage, error);
    if (result != CAP_OK) return result;
    if (usage.rows != 1) return store_fail(error, STORE_ECORRUPT, "the usage row is missing");
    out->blob_bytes = (uint64_t)usage.value[0];
    out->blob_count = (uint64_t)usage.value[1];
    out->raw_bytes = (uint64_t)usage.value[2];
    out->sessions = usage.value[3];
    return CAP_OK;
}

static const char usage_recount[] =
    "SELECT COALESCE(SUM(stored_size), 0), COUNT(*), COALESCE(SUM(raw_size), 0) FROM blobs";

int store_check(store *store, char *error) {
    int result = store->backend->check(store->connection, error);
    if (result != CAP_OK) return result;
    store_usage usage;
    integers counted = {0};
    if ((result = store_get_usage(store, &usage, error)) != CAP_OK) return result;
    if ((result = store_run(store, usage_recount, NULL, 0, collect_integers, &counted, error)) !=
        CAP_OK)
        return result;
    if ((uint64_t)counted.value[0] != usage.blob_bytes ||
        (uint64_t)counted.value[1] != usage.blob_count)
        return store_fail(error, STORE_ECORRUPT,
                    "usage says %llu bytes in %llu blobs, the blobs %lld in %lld",
                    (unsigned long long)usage.blob_bytes, (unsigned long long)usage.blob_count,
                    (long long)counted.value[0], (long long)counted.value[1]);
    return CAP_OK;
}

/* --- sessions -------------------------------------------------------------------- */

static const char *const session_statuses[] = {"live", "parked", "expired"};

static int session_usable(store *store, const char *id, char *error);

static const char session_insert[] =
    "INSERT INTO sessions (id, principal, status, created_at, last_used_at, ttl_ms, expires_at,"
    " owner) VALUES ($1, $2, $3, $4, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1";
static const char session_select[] =
    "SELECT id, principal, status, created_at, last_used_at, ttl_ms, expires_at, latest_snapshot,"
    " call_count, owner, epoch FROM sessions WHERE id = $1";
static const char session_touch[] =
    "UPDATE sessions SET last_used_at = $2,"
    " expires_at = CASE WHEN ttl_ms > 0 THEN $2 + ttl_ms ELSE NULL END"
    " WHERE id = $1 AND status <> 'expired' RETURNING 1";
static const char session_set_status[] =
    "UPDATE sessions SET status = $2, owner = $3 WHERE id = $1 AND status <> 'expired' RETURNING 1";
/* Parking gives up only what this node ($2) holds (or nobody does): a
 * node whose session moved on must not park it under the new owner. */
static const char session_park[] =
    "UPDATE sessions SET status = 'parked', owner = NULL, park_requested_by = NULL"
    " WHERE id = $1 AND status <> 'expired' AND (owner IS NULL OR owner = $2) RETURNING 1";
static const char session_unlink_snapshot[] =
    "UPDATE sessions SET latest_snapshot = NULL WHERE id = $1";
static const char session_delete_snapshots[] = "DELETE FROM snapshots WHERE session = $1";
static const char session_delete[] = "DELETE FROM sessions WHERE id = $1 RETURNING 1";

static int read_session(void *context, const store_value *columns, int count, char *error) {
    store_session *out = context;
    if (count < 11) return malformed_row(count, 11, error);
    store_copy_text(out->id, sizeof out->id, &columns[0]);
    store_copy_text(out->principal, sizeof out->principal, &columns[1]);
    char status[16];
    store_copy_text(status, sizeof status, &columns[2]);
    out->status = STORE_SESSION_EXPIRED;
    for (int i = 0; i < 3; i++)
        if (strcmp(status, session_statuses[i]) == 0) out->status = (store_session_status)i;
    out->created_at = columns[3].integer;
    out->last_used_at = columns[4].integer;
    out->ttl_ms = columns[5].integer;
    out->expires_at = columns[6].type == STORE_INTEGER ? columns[6].integer : 0;
    out->latest_snapshot = columns[7].type == STORE_INTEGER ? columns[7].integer : 0;
    out->call_count = columns[8].integer;
    store_copy_text(out->owner, sizeof out->owner, &columns[9]);
    out->epoch = columns[10].integer;
    return 0;
}

static int session_load(store *store, const char *id, store_session *out, char *error) {
    memset(out, 0, sizeof *out);
    out->id[0] = '\0';
    int result = RUN(store, session_select, read_session, out, error, TEXT(id));
    if (result != CAP_OK) return result;
    if (!out->id[0]) return store_fail(error, STORE_ENOTFOUND, "no session '%s'", id);
    return CAP_OK;
}

/* Why an UPDATE of a session found no row: gone, or expired. */
static int session_unusable(store *store, const char *id, char *error) {
    store_session session;
    int result = session_load(store, id, &session, error);
    if (result != CAP_OK) return result;
    return store_fail(error, STORE_ECONFLICT, "session '%s' has expired", id);
}

static int session_insert_row(store *store, const char *id, const char *principal,
                              const char *status, int64_t ttl_ms, char *error) {
    int64_t now = store_now(store);
    integers inserted = {0};
    int result = RUN(store, session_insert, collect_integers, &inserted, error, TEXT(id),
                     TEXT(principal), TEXT(status), INTEGER(now), INTEGER(ttl_ms),
                     ttl_ms > 0 ? INTEGER(now + ttl_ms) : NOTHING,
                     strcmp(status, "live") == 0 ? TEXT(store->node) : NOTHING);
    if (result == CAP_OK && inserted.rows == 0)
        result = store_fail(error, STORE_EEXIST, "session '%s' exists already", id);
    return result;
}

int store_session_create(store *store, const char *id, const char *principal, int64_t ttl_ms,
                         char *error) {
    int result = store_check_name(id, "session id", 0, error);
    if (result == CAP_OK) result = store_check_name(principal ? principal : "", "principal", 1, error);
    if (result == CAP_OK && ttl_ms < 0) result = store_fail(error, CAP_EINVAL, "negative ttl");
    if (result != CAP_OK) return result;
    return session_insert_row(store, id, principal ? principal : "", "live", ttl_ms, error);
}

int store_session_get(store *store, const char *id, store_session *out, char *error) {
    int result = store_check_name(id, "session id", 0, error);
    return result != CAP_OK ? result : session_load(store, id, out, error);
}

int store_session_touch(store *store, const char *id, char *error) {
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK) return result;
    integers updated = {0};
    result = RUN(store, session_touch, collect_integers, &updated, error, TEXT(id),
                 INTEGER(store_now(store)));
    if (result == CAP_OK && updated.rows == 0) result = session_unusable(store, id, error);
    return result;
}

int store_session_set_status(store *store, const char *id, store_session_status status,
                             char *error) {
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK) return result;
    if (status != STORE_SESSION_LIVE && status != STORE_SESSION_PARKED)
        return store_fail(error, CAP_EINVAL, "a session is set live or parked; store_expire expires");
    integers updated = {0};
    if (status == STORE_SESSION_PARKED) {
        result = RUN(store, session_park, collect_integers, &updated, error, TEXT(id),
                     TEXT(store->node));
        store_session other;
        if (result == CAP_OK && updated.rows == 0 &&
            (result = session_load(store, id, &other, error)) == CAP_OK &&
            other.status == STORE_SESSION_LIVE)
            return CAP_OK; /* another node's now: not this node's to park */
    } else {
        result = RUN(store, session_set_status, collect_integers, &updated, error, TEXT(id),
                     TEXT(session_statuses[status]), TEXT(store->node));
    }
    if (result == CAP_OK && updated.rows == 0) result = session_unusable(store, id, error);
    return result;
}

/* Claiming a session (store.h): first the running calls of it that dead
 * nodes left (the same rule as the sweep's), then the session itself, in
 * that order because store_call_finish locks the call before the session:
 * one order, no deadlock between them. */
static const char claim_calls_interrupt[] =
    "UPDATE calls SET status = 'interrupted', finished_at = $2"
    " WHERE session = $1 AND status = 'running' AND (node IS NULL OR node <> $3) AND NOT EXISTS"
    " (SELECT 1 FROM nodes WHERE nodes.id = calls.node AND nodes.lease_expires_at >= $2)";
/* On PostgreSQL, of two nodes claiming at once, the second waits for the
 * first's row lock and then re-checks the condition against the row the
 * first wrote: its owner is alive, so the second updates nothing. */
static const char session_claim[] =
    "UPDATE sessions SET status = 'live', owner = $2, epoch = epoch + 1, park_requested_by = NULL"
    " WHERE id = $1 AND status <> 'expired' AND (owner IS NULL OR owner <> $2) AND NOT EXISTS"
    " (SELECT 1 FROM nodes WHERE nodes.id = sessions.owner AND nodes.lease_expires_at >= $3)"
    " RETURNING epoch";

static const char session_lock[] = "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE";

int store_session_claim(store *store, const char *id, int64_t *epoch, char *error) {
    if (epoch) *epoch = 0;
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) != CAP_OK) return result;
    int64_t now = store_now(store);
    result = session_usable(store, id, error);
    if (result == CAP_OK)
        result = RUN(store, claim_calls_interrupt, NULL, NULL, error, TEXT(id), INTEGER(now),
                     TEXT(store->node));
    /* On PostgreSQL the row is locked first, and the claim is a statement
     * of its own after it: READ COMMITTED gives that statement a snapshot
     * taken once the lock is held, so it sees a concurrent claimer's
     * commit whole (the owner and that node's freshly renewed lease).  In
     * one UPDATE the re-check after waiting for the lock would read the
     * nodes table as of before, where a node that had just joined again
     * (its lease had lapsed while idle) is missing, and take the session
     * from under it. */
    if (result == CAP_OK && store->backend->row_locks)
        result = RUN(store, session_lock, NULL, NULL, error, TEXT(id));
    integers claimed = {0};
    if (result == CAP_OK)
        result = RUN(store, session_claim, collect_integers, &claimed, error, TEXT(id),
                     TEXT(store->node), INTEGER(now));
    store_session session;
    if (result == CAP_OK && !claimed.rows) {
        result = session_load(store, id, &session, error);
        if (result == CAP_OK && session.status == STORE_SESSION_LIVE &&
            strcmp(session.owner, store->node) == 0)
            claimed.value[0] = session.epoch; /* already this node's */
        else if (result == CAP_OK)
            result = store_fail(error, STORE_EBUSY, "session '%s' is live on node %s, whose lease holds",
                          id, session.owner);
    }
    result = store_write_end(store, result, error);
    if (result == CAP_OK && epoch) *epoch = claimed.value[0];
    return result;
}

/* Moving a live session (store.h).  The request names the asker; the
 * owner's park clears it, and so does any claim. */
static const char session_park_request[] =
    "UPDATE sessions SET park_requested_by = $2"
    " WHERE id = $1 AND status = 'live' AND owner IS NOT NULL AND owner <> $2 RETURNING owner";
static const char park_notify[] = "SELECT pg_notify($1, $2)";
/* Idle ones only: a session with a call running is parked after it
 * (store_session_release_if_requested). */
static const char sessions_park_requested[] =
    "UPDATE sessions SET status = 'parked', owner = NULL, park_requested_by = NULL"
    " WHERE status = 'live' AND owner = $1 AND park_requested_by IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM calls WHERE calls.session = sessions.id AND calls.status = 'running')"
    " RETURNING id";
static const char session_release_requested[] =
    "UPDATE sessions SET status = 'parked', owner = NULL, park_requested_by = NULL"
    " WHERE id = $1 AND status = 'live' AND owner = $2 AND park_requested_by IS NOT NULL"
    " RETURNING 1";

void store_park_channel(const char *node, char channel[STORE_PARK_CHANNEL_SIZE]) {
    uint64_t hash = 14695981039346656037ull; /* FNV-1a: stable, not a secret */
    for (const unsigned char *c = (const unsigned char *)node; *c; c++)
        hash = (hash ^ *c) * 1099511628211ull;
    snprintf(channel, STORE_PARK_CHANNEL_SIZE, "capsule_park_%016llx", (unsigned long long)hash);
}

int store_session_request_park(store *store, const char *id, char owner[STORE_ID_SIZE],
                               char *error) {
    owner[0] = '\0';
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) != CAP_OK) return result;
    text_column asked = {0};
    result = RUN(store, session_park_request, collect_text, &asked, error, TEXT(id),
                 TEXT(store->node));
    if (result == CAP_OK && asked.rows && store->backend->notifies) {
        char channel[STORE_PARK_CHANNEL_SIZE];
        store_park_channel(asked.text, channel);
        result = RUN(store, park_notify, NULL, NULL, error, TEXT(channel), TEXT(id));
    }
    result = store_write_end(store, result, error);
    if (result == CAP_OK && asked.rows) snprintf(owner, STORE_ID_SIZE, "%s", asked.text);
    return result;
}

/* Out of memory stops the statement, so that its transaction is rolled
 * back: no session is parked that the caller was not told of. */
static int collect_ids(void *context, const store_value *columns, int count, char *error) {
    id_list *list = context;
    if (count < 1) return 0;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 8;
        void *grown = realloc(list->ids, capacity * sizeof *list->ids);
        if (!grown) return store_fail(error, CAP_ENOMEM, "out of memory");
        list->ids = grown;
        list->capacity = capacity;
    }
    store_copy_text(list->ids[list->count++], STORE_ID_SIZE, &columns[0]);
    return 0;
}

int store_sessions_park_requested(store *store, void (*parked)(void *context, const char *id),
                                  void *context, int64_t *count, char *error) {
    if (count) *count = 0;
    if (store->exclusive) return CAP_OK; /* one node: nobody asks */
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    id_list list = {0};
    result = RUN(store, sessions_park_requested, collect_ids, &list, error, TEXT(store->node));
    result = store_write_end(store, result, error);
    if (result == CAP_OK) {
        for (size_t i = 0; parked && i < list.count; i++) parked(context, list.ids[i]);
        if (count) *count = (int64_t)list.count;
    }
    free(list.ids);
    return result;
}

int store_session_release_if_requested(store *store, const char *id, int *released,
                                       char *error) {
    *released = 0;
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK || store->exclusive) return result; /* one node: nobody asks */
    integers updated = {0};
    result = RUN(store, session_release_requested, collect_integers, &updated, error, TEXT(id),
                 TEXT(store->node));
    if (result == CAP_OK) *released = updated.rows > 0;
    return result;
}

int store_session_delete(store *store, const char *id, char *error) {
    int result = store_check_name(id, "session id", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) != CAP_OK) return result;
    integers deleted = {0};
    result = RUN(store, session_unlink_snapshot, NULL, NULL, error, TEXT(id));
    if (result == CAP_OK)
        result = RUN(store, session_delete_snapshots, NULL, NULL, error, TEXT(id));
    if (result == CAP_OK)
        result = RUN(store, session_delete, collect_integers, &deleted, error, TEXT(id));
    if (result == CAP_OK && deleted.rows == 0)
        result = store_fail(error, STORE_ENOTFOUND, "no session '%s'", id);
    return store_write_end(store, result, error);
}

static const char snapshot_copy[] =
    "INSERT INTO snapshots (session, call_seq, build_id, page_size, manifest, created_at)"
    " SELECT $2, NULL, build_id, page_size, manifest, $3 FROM snapshots WHERE id = $1 RETURNING id";
static const char snapshot_pages_copy[] =
    "INSERT INTO snapshot_pages (snapshot, page_index, hash)"
    " SELECT $2, page_index, hash FROM snapshot_pages WHERE snapshot = $1";
static const char session_set_latest[] = "UPDATE sessions SET latest_snapshot = $2 WHERE id = $1";

int store_session_fork(store *store, const char *source, const char *id, const char *principal,
                       int64_t ttl_ms, char *error) {
    int result = store_check_name(source, "source session id", 0, error);
    if (result == CAP_OK) result = store_check_name(id, "session id", 0, error);
    if (result == CAP_OK) result = store_check_name(principal ? principal : "", "principal", 1, error);
    if (result == CAP_OK && ttl_ms < 0) result = store_fail(error, CAP_EINVAL, "negative ttl");
    if (result != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) != CAP_OK) return result;
    store_session from;
    integers copy = {0};
    result = session_load(store, source, &from, error);
    if (result == CAP_OK && !from.latest_snapshot)
        result = store_fail(error, STORE_ENOTFOUND, "session '%s' has no snapshot to fork", source);
    if (result == CAP_OK)
        result = session_insert_row(store, id, principal ? principal : "", "parked", ttl_ms, error);
    if (result == CAP_OK)
        result = RUN(store, snapshot_copy, collect_integers, &copy, error,
                     INTEGER(from.latest_snapshot), TEXT(id), INTEGER(store_now(store)));
    if (result == CAP_OK)
        result = RUN(store, snapshot_pages_copy, NULL, NULL, error, INTEGER(from.latest_snapshot),
                     INTEGER(copy.value[0]));
    if (result == CAP_OK)
        result =
            RUN(store, session_set_latest, NULL, NULL, error, TEXT(id), INTEGER(copy.value[0]));
    return store_write_end(store, result, error);
}

/* --- blobs ----------------------------------------------------------------------- */

static const char blob_exists[] = "SELECT 1 FROM blobs WHERE hash = $1";
/* On PostgreSQL a commit that reuses a stored blob holds a key-share lock
 * on it until it ends, so that another node's collection (which locks the
 * blobs it deletes, and passes over those locked: blobs_unreferenced_lock)
 * cannot delete it under the commit, whose page rows would then fail their
 * foreign key.  A blob deleted first reads as absent here: it is stored
 * again, or for a page named by hash the commit is STORE_ENOTFOUND and the
 * caller sends the page whole.  SQLite has one writer at a time. */
static const char blob_exists_locking[] = "SELECT 1 FROM blobs WHERE hash = $1 FOR KEY SHARE";

static const char *blob_exists_statement(const store *store) {
    return store->backend->row_locks ? blob_exists_locking : blob_exists;
}
static const char blob_insert[] =
    "INSERT INTO blobs (hash, raw_size, stored_size, data, created_at) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT DO NOTHING RETURNING stored_size, raw_size";
static const char usage_add[] =
    "UPDATE usage SET blob_bytes = blob_bytes + $1, blob_count = blob_count + $2,"
    " raw_bytes = raw_bytes + $3 WHERE id = 1";
static const char blob_select[] = "SELECT raw_size, data FROM blobs WHERE hash = $1";

/* Inside a write transaction: stores the blob unless its hash is there
 * already, compressing it only then, and adds it to *added (bytes stored,
 * count, raw bytes) for one usage_add at the end. */
static int blob_insert_if_absent(store *store, const void *data, size_t size,
                                 const uint8_t hash[STORE_HASH_SIZE], integers *added,
                                 char *error) {
    integers present = {0};
    int result = RUN(store, blob_exists_statement(store), collect_integers, &present, error,
                     BLOB(hash, STORE_HASH_SIZE));
    if (result != CAP_OK || present.rows) return result;
    size_t bound = ZSTD_compressBound(size);
    if (!store->compressor && !(store->compressor = ZSTD_createCCtx()))
        return store_fail(error, CAP_ENOMEM, "out of memory");
    if (store->scratch_size < bound) {
        void *larger = realloc(store->scratch, bound);
        if (!larger) return store_fail(error, CAP_ENOMEM, "out of memory");
        store->scratch = larger;
        store->scratch_size = bound;
    }
    size_t stored =
        ZSTD_compressCCtx(store->compressor, store->scratch, bound, data, size, COMPRESSION_LEVEL);
    if (ZSTD_isError(stored)) return store_fail(error, CAP_EIO, "zstd: %s", ZSTD_getErrorName(stored));
    integers inserted = {0};
    result = RUN(store, blob_insert, collect_integers, &inserted, error,
                 BLOB(hash, STORE_HASH_SIZE), INTEGER((int64_t)size), INTEGER((int64_t)stored),
                 BLOB(store->scratch, stored), INTEGER(store_now(store)));
    if (result == CAP_OK && inserted.rows) {
        added->value[0] += (int64_t)stored;
        added->value[1] += 1;
        added->value[2] += (int64_t)size;
    }
    return result;
}

static int usage_apply(store *store, const integers *added, char *error) {
    if (!added->value[1]) return CAP_OK;
    return RUN(store, usage_add, NULL, NULL, error, INTEGER(added->value[0]),
               INTEGER(added->value[1]), INTEGER(added->value[2]));
}

/* The failure of bytes that are not what `hash` names. */
static int hash_mismatch(const uint8_t hash[STORE_HASH_SIZE], char *error) {
    char name[17];
    hex(hash, name);
    return store_fail(error, STORE_ECORRUPT, "blob %s: its bytes do not match its hash", name);
}

/* Decompresses a blob row and, with `check_hash`, checks it is exactly
 * what `hash` names (else the caller must: store_snapshot_read_wanted_pages
 * does it on another thread); `expected_size` (0: any) is what the caller
 * needs.  *out is malloc'd unless `into` (expected_size bytes) is given. */
static int blob_decode(store *store, const uint8_t hash[STORE_HASH_SIZE],
                       const store_value *raw_size, const store_value *data, size_t expected_size,
                       int check_hash, void *into, void **out, char *error) {
    char name[17];
    hex(hash, name);
    if (raw_size->type != STORE_INTEGER || data->type != STORE_BLOB || raw_size->integer < 0 ||
        raw_size->integer > STORE_BLOB_MAX)
        return store_fail(error, STORE_ECORRUPT, "blob %s: malformed row", name);
    size_t size = (size_t)raw_size->integer;
    if (expected_size && size != expected_size)
        return store_fail(error, STORE_ECORRUPT, "blob %s: %zu bytes where %zu are expected", name, size,
                    expected_size);
    unsigned long long declared = ZSTD_getFrameContentSize(data->bytes, data->size);
    if (declared != size)
        return store_fail(error, STORE_ECORRUPT, "blob %s: not a zstd frame of %zu bytes", name, size);
    if (!store->decompressor && !(store->decompressor = ZSTD_createDCtx()))
        return store_fail(error, CAP_ENOMEM, "out of memory");
    void *bytes = into ? into : malloc(size ? size : 1);
    if (!bytes) return store_fail(error, CAP_ENOMEM, "out of memory");
    size_t produced =
        ZSTD_decompressDCtx(store->decompressor, bytes, size, data->bytes, data->size);
    uint8_t actual[STORE_HASH_SIZE];
    int result = CAP_OK;
    if (ZSTD_isError(produced)) {
        result = store_fail(error, STORE_ECORRUPT, "blob %s: does not decompress: %s", name,
                      ZSTD_getErrorName(produced));
    } else if (produced != size) {
        result = store_fail(error, STORE_ECORRUPT, "blob %s: decompresses to %zu bytes, not %zu", name,
                      produced, size);
    } else if (check_hash) {
        store_hash(bytes, size, actual);
        if (memcmp(actual, hash, STORE_HASH_SIZE) != 0) result = hash_mismatch(hash, error);
    }
    if (result != CAP_OK) {
        if (!into) free(bytes);
        return result;
    }
    if (out) *out = bytes;
    return CAP_OK;
}

static int usage_over_quota(store *store, int *over, char *error) {
    *over = 0;
    if (!store->quota) return CAP_OK;
    store_usage usage;
    int result = store_get_usage(store, &usage, error);
    if (result == CAP_OK) *over = usage.blob_bytes > store->quota;
    return result;
}

int store_blob_put(store *store, const void *data, size_t size, uint8_t hash[STORE_HASH_SIZE],
                   char *error) {
    if (!data && size) return store_fail(error, CAP_EINVAL, "blob without bytes");
    if (size > STORE_BLOB_MAX) return store_fail(error, CAP_EINVAL, "blob of %zu bytes: too large", size);
    store_hash(data, size, hash);
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    int over = 0;
    integers added = {0};
    result = blob_insert_if_absent(store, data, size, hash, &added, error);
    if (result == CAP_OK) result = usage_apply(store, &added, error);
    if (result == CAP_OK) result = usage_over_quota(store, &over, error);
    if (result == CAP_OK && over)
        result =
            store_fail(error, STORE_EQUOTA, "blob of %zu bytes: the store's quota (%llu bytes) is full",
                 size, (unsigned long long)store->quota);
    return store_write_end(store, result, error);
}

typedef struct blob_read {
    store *store;
    const uint8_t *hash;
    int found;
    void *data;
    size_t size;
} blob_read;

static int read_blob(void *context, const store_value *columns, int count, char *error) {
    blob_read *read = context;
    if (count < 2) return malformed_row(count, 2, error);
    read->found = 1;
    read->size = columns[0].type == STORE_INTEGER ? (size_t)columns[0].integer : 0;
    return blob_decode(read->store, read->hash, &columns[0], &columns[1], 0, 1, NULL, &read->data,
                       error);
}

int store_blob_get(store *store, const uint8_t hash[STORE_HASH_SIZE], void **data, size_t *size,
                   char *error) {
    *data = NULL;
    *size = 0;
    blob_read read = {.store = store, .hash = hash};
    int result = RUN(store, blob_select, read_blob, &read, error, BLOB(hash, STORE_HASH_SIZE));
    if (result != CAP_OK) return result;
    if (!read.found) {
        char name[17];
        hex(hash, name);
        return store_fail(error, STORE_ENOTFOUND, "no blob %s", name);
    }
    *data = read.data;
    *size = read.size;
    return CAP_OK;
}

/* --- expiry and collection ------------------------------------------------------- */

static const char blobs_collect[] =
    "DELETE FROM blobs WHERE NOT EXISTS"
    " (SELECT 1 FROM snapshot_pages WHERE snapshot_pages.hash = blobs.hash)"
    " RETURNING stored_size, 1, raw_size";
/* On PostgreSQL, in two statements.  The first locks the blobs no page
 * names, passing over those a commit in progress has locked to reuse
 * (blob_exists_locking: it is collected next time if that commit did not
 * name it after all).  The second deletes those still named by no page,
 * with a snapshot taken after the locks: a commit that ended meanwhile is
 * seen there (in one statement it was not, and the delete failed the
 * foreign key), and none can start naming them before this transaction
 * ends (its key-share lock waits for ours). */
static const char blobs_unreferenced_lock[] =
    "SELECT hash FROM blobs WHERE NOT EXISTS"
    " (SELECT 1 FROM snapshot_pages WHERE snapshot_pages.hash = blobs.hash)"
    " FOR UPDATE SKIP LOCKED";
static const char blobs_collect_locked[] =
    "DELETE FROM blobs WHERE hash = ANY($1::bytea[]) AND NOT EXISTS"
    " (SELECT 1 FROM snapshot_pages WHERE snapshot_pages.hash = blobs.hash)"
    " RETURNING stored_size, 1, raw_size";

/* Hashes written as the text of a PostgreSQL bytea[]: {"\\x<hex>",...}. */
typedef struct hash_array {
    char *text;
    size_t length, capacity;
    size_t count;
} hash_array;

static int append_hash(void *context, const store_value *columns, int count, char *error) {
    hash_array *array = context;
    if (count < 1 || columns[0].type != STORE_BLOB || columns[0].size != STORE_HASH_SIZE)
        return store_fail(error, STORE_ECORRUPT, "malformed blob hash");
    size_t need = array->length + 8 + 2 * STORE_HASH_SIZE + 2;
    if (need > array->capacity) {
        size_t capacity = array->capacity ? 2 * array->capacity : 4096;
        while (capacity < need) capacity *= 2;
        char *grown = realloc(array->text, capacity);
        if (!grown) return store_fail(error, CAP_ENOMEM, "out of memory");
        array->text = grown;
        array->capacity = capacity;
    }
    char *at = array->text + array->length;
    at += sprintf(at, "%s\"\\\\x", array->count ? "," : "{");
    const uint8_t *hash = columns[0].bytes;
    for (int i = 0; i < STORE_HASH_SIZE; i++) at += sprintf(at, "%02x", hash[i]);
    at += sprintf(at, "\"");
    array->length = (size_t)(at - array->text);
    array->count++;
    return 0;
}
static const char usage_subtract[] =
    "UPDATE usage SET blob_bytes = blob_bytes - $1, blob_count = blob_count - $2,"
    " raw_bytes = raw_bytes - $3 WHERE id = 1";
static const char sessions_expire_due[] =
    "UPDATE sessions SET status = 'expired', latest_snapshot = NULL"
    " WHERE status = 'parked' AND expires_at IS NOT NULL AND expires_at <= $1 RETURNING id";
static const char sessions_expire_oldest[] =
    "UPDATE sessions SET status = 'expired', latest_snapshot = NULL"
    " WHERE id = (SELECT id FROM sessions"
    " WHERE status = 'parked' AND id <> $1 ORDER BY last_used_at, id LIMIT 1) RETURNING id";
static const char expired_snapshots_delete[] =
    "DELETE FROM snapshots WHERE session IN (SELECT id FROM sessions WHERE status = 'expired')";

/* Inside a write transaction. */
static int gc_in_transaction(store *store, uint64_t *freed_blobs, uint64_t *freed_bytes,
                             char *error) {
    integers freed = {0};
    int result;
    if (store->backend->row_locks) {
        hash_array locked = {0};
        result = store_run(store, blobs_unreferenced_lock, NULL, 0, append_hash, &locked, error);
        if (result == CAP_OK && locked.count) {
            locked.text[locked.length++] = '}';
            locked.text[locked.length] = '\0';
            result = RUN(store, blobs_collect_locked, sum_integers, &freed, error,
                         TEXT(locked.text));
        }
        free(locked.text);
    } else {
        result = store_run(store, blobs_collect, NULL, 0, sum_integers, &freed, error);
    }
    if (result == CAP_OK && freed.rows)
        result = RUN(store, usage_subtract, NULL, NULL, error, INTEGER(freed.value[0]),
                     INTEGER(freed.value[1]), INTEGER(freed.value[2]));
    if (freed_blobs) *freed_blobs = (uint64_t)freed.value[1];
    if (freed_bytes) *freed_bytes = (uint64_t)freed.value[0];
    return result;
}

int store_gc(store *store, uint64_t *freed_blobs, uint64_t *freed_bytes, char *error) {
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    result = gc_in_transaction(store, freed_blobs, freed_bytes, error);
    return store_write_end(store, result, error);
}

int store_expire(store *store, int64_t *expired, void (*each)(void *context, const char *id),
                 void *context, char *error) {
    if (expired) *expired = 0;
    int result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    id_list due = {0}; /* reported once committed */
    result = RUN(store, sessions_expire_due, collect_ids, &due, error, INTEGER(store_now(store)));
    if (result == CAP_OK && due.count)
        result = store_run(store, expired_snapshots_delete, NULL, 0, NULL, NULL, error);
    if (result == CAP_OK && due.count) result = gc_in_transaction(store, NULL, NULL, error);
    result = store_write_end(store, result, error);
    if (result == CAP_OK) {
        if (expired) *expired = (int64_t)due.count;
        for (size_t i = 0; each && i < due.count; i++) each(context, due.ids[i]);
    }
    free(due.ids);
    return result;
}

void store_take_expired(store *store, void (*each)(void *context, const char *id),
                        void *context) {
    for (size_t i = 0; each && i < store->quota_expired.count; i++)
        each(context, store->quota_expired.ids[i]);
    store->quota_expired.count = store->quota_expired_before = 0;
}

int64_t store_time(store *store) {
    return store_now(store);
}

#define QUOTA_EXPIRED_KEPT 4096

/* Inside a write transaction, when over quota: frees unreferenced blobs,
 * then expires parked sessions other than `keep`, least recently used
 * first, until the blobs fit; STORE_EQUOTA if they cannot.  The expired
 * ids are kept for store_take_expired (dropped if the transaction is). */
static int make_room(store *store, const char *keep, char *error) {
    int over = 0;
    int result = usage_over_quota(store, &over, error);
    if (result != CAP_OK || !over) return result;
    if ((result = gc_in_transaction(store, NULL, NULL, error)) != CAP_OK) return result;
    for (;;) {
        if ((result = usage_over_quota(store, &over, error)) != CAP_OK || !over) return result;
        /* Kept for store_take_expired up to a bound: a caller that never
         * takes them does not grow the handle without end. */
        id_list forgotten = {0};
        id_list *into = store->quota_expired.count < QUOTA_EXPIRED_KEPT ? &store->quota_expired
                                                                          : &forgotten;
        size_t before = into->count;
        result = RUN(store, sessions_expire_oldest, collect_ids, into, error, TEXT(keep));
        int expired = into->count > before;
        free(forgotten.ids);
        if (result != CAP_OK) return result;
        if (!expired)
            return store_fail(error, STORE_EQUOTA,
                        "the snapshot does not fit in the store's quota (%llu bytes)",
                        (unsigned long long)store->quota);
        result = store_run(store, expired_snapshots_delete, NULL, 0, NULL, NULL, error);
        if (result == CAP_OK) result = gc_in_transaction(store, NULL, NULL, error);
        if (result != CAP_OK) return result;
    }
}

/* --- snapshots ------------------------------------------------------------------- */

static const char snapshot_insert[] =
    "INSERT INTO snapshots (session, call_seq, build_id, page_size, manifest, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
static const char snapshot_page_insert[] =
    "INSERT INTO snapshot_pages (snapshot, page_index, hash) VALUES ($1, $2, $3)";
static const char session_after_snapshot[] =
    "UPDATE sessions SET latest_snapshot = $2, last_used_at = $3,"
    " expires_at = CASE WHEN ttl_ms > 0 THEN $3 + ttl_ms ELSE NULL END WHERE id = $1";
static const char snapshots_older_delete[] =
    "DELETE FROM snapshots WHERE session = $1 AND id <> $2";

/* Statements over BATCH rows at once: a snapshot has hundreds of pages,
 * and each statement is a round trip to a PostgreSQL server (SQLite does
 * not mind).  Built once: the backends cache statements by their text's
 * address.  The rows that do not fill a batch go one by one. */
#define BATCH 16
static char page_insert_batch[80 + BATCH * 24]; /* VALUES ($1, $2, $3), ($1, $4, $5)... */
static char blobs_present_batch[80 + BATCH * 8]; /* SELECT hash ... IN ($1, ... $16) */
static char blobs_present_batch_locking[100 + BATCH * 8]; /* the same, FOR KEY SHARE */
static char blobs_data_batch[80 + BATCH * 8];    /* SELECT hash, raw_size, data ... IN (...) */
static char blob_insert_batch[160 + BATCH * 40]; /* VALUES ($1, ..., $5), ($6, ...)... */
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

static void batch_statements(void) {
    int at = snprintf(page_insert_batch, sizeof page_insert_batch,
                      "INSERT INTO snapshot_pages (snapshot, page_index, hash) VALUES");
    for (int i = 0; i < BATCH; i++)
        at += snprintf(page_insert_batch + at, sizeof page_insert_batch - (size_t)at,
                       "%s ($1, $%d, $%d)", i ? "," : "", 2 + 2 * i, 3 + 2 * i);
    at = snprintf(blobs_present_batch, sizeof blobs_present_batch,
                  "SELECT hash FROM blobs WHERE hash IN (");
    for (int i = 0; i < BATCH; i++)
        at += snprintf(blobs_present_batch + at, sizeof blobs_present_batch - (size_t)at, "%s$%d",
                       i ? ", " : "", i + 1);
    snprintf(blobs_present_batch + at, sizeof blobs_present_batch - (size_t)at, ")");
    snprintf(blobs_present_batch_locking, sizeof blobs_present_batch_locking, "%s FOR KEY SHARE",
             blobs_present_batch);
    at = snprintf(blobs_data_batch, sizeof blobs_data_batch,
                  "SELECT hash, raw_size, data FROM blobs WHERE hash IN (");
    for (int i = 0; i < BATCH; i++)
        at += snprintf(blobs_data_batch + at, sizeof blobs_data_batch - (size_t)at, "%s$%d",
                       i ? ", " : "", i + 1);
    snprintf(blobs_data_batch + at, sizeof blobs_data_batch - (size_t)at, ")");
    at = snprintf(blob_insert_batch, sizeof blob_insert_batch,
                  "INSERT INTO blobs (hash, raw_size, stored_size, data, created_at) VALUES");
    for (int i = 0; i < BATCH; i++)
        at += snprintf(blob_insert_batch + at, sizeof blob_insert_batch - (size_t)at,
                       "%s ($%d, $%d, $%d, $%d, $%d)", i ? "," : "", 5 * i + 1, 5 * i + 2,
                       5 * i + 3, 5 * i + 4, 5 * i + 5);
    snprintf(blob_insert_batch + at, sizeof blob_insert_batch - (size_t)at,
             " ON CONFLICT DO NOTHING RETURNING stored_size, raw_size");
}

typedef struct present_hashes {
    const uint8_t *hashes;
    const size_t *which;
    int present[BATCH];
} present_hashes;

static int mark_present(void *context, const store_value *columns, int count, char *error) {
    present_hashes *batch = context;
    if (count < 1 || columns[0].type != STORE_BLOB || columns[0].size != STORE_HASH_SIZE)
        return store_fail(error, STORE_ECORRUPT, "malformed blob hash");
    for (size_t i = 0; i < BATCH; i++)
        if (memcmp(columns[0].bytes, batch->hashes + batch->which[i] * STORE_HASH_SIZE,
                   STORE_HASH_SIZE) == 0)
            batch->present[i] = 1;
    return 0;
}

/* Which of the blobs that pages which[0..BATCH) name are stored
 * (batch->present), in one statement; on PostgreSQL those found stay
 * locked until the transaction ends (blob_exists_locking). */
static int blobs_find_present(store *store, const uint8_t *hashes, const size_t *which,
                              present_hashes *batch, char *error) {
    *batch = (present_hashes){.hashes = hashes, .which = which};
    store_value values[BATCH];
    for (size_t i = 0; i < BATCH; i++)
        values[i] = BLOB(hashes + which[i] * STORE_HASH_SIZE, STORE_HASH_SIZE);
    const char *sql =
        store->backend->row_locks ? blobs_present_batch_locking : blobs_present_batch;
    return store_run(store, sql, values, BATCH, mark_present, batch, error);
}

/* Inside a write transaction: stores the blobs of pages `which[0..BATCH)`
 * (pages given by their bytes) that are not stored yet, adding them to
 * *added like blob_insert_if_absent.  One statement finds which are stored;
 * when none of the 16 is (and no two are the same, the usual case for the
 * changed pages of a call), one statement inserts them all; otherwise the
 * missing ones go one by one. */
static int blobs_insert_batch(store *store, const store_snapshot_data *snapshot,
                              const uint8_t *hashes, const size_t *which, integers *added,
                              char *error) {
    present_hashes batch;
    int result = blobs_find_present(store, hashes, which, &batch, error);
    if (result != CAP_OK) return result;
    int all_new = 1;
    for (size_t i = 0; i < BATCH && all_new; i++) {
        all_new = !batch.present[i];
        for (size_t j = 0; j < i && all_new; j++)
            all_new = memcmp(hashes + which[i] * STORE_HASH_SIZE,
                             hashes + which[j] * STORE_HASH_SIZE, STORE_HASH_SIZE) != 0;
    }
    if (!all_new) {
        for (size_t i = 0; i < BATCH && result == CAP_OK; i++)
            if (!batch.present[i])
                result = blob_insert_if_absent(store, snapshot->pages[which[i]].data,
                                               snapshot->page_size,
                                               hashes + which[i] * STORE_HASH_SIZE, added, error);
        return result;
    }
    size_t size = snapshot->page_size, bound = ZSTD_compressBound(size);
    if (!store->compressor && !(store->compressor = ZSTD_createCCtx()))
        return store_fail(error, CAP_ENOMEM, "out of memory");
    if (store->batch_scratch_size < BATCH * bound) {
        void *larger = realloc(store->batch_scratch, BATCH * bound);
        if (!larger) return store_fail(error, CAP_ENOMEM, "out of memory");
        store->batch_scratch = larger;
        store->batch_scratch_size = BATCH * bound;
    }
    int64_t now = store_now(store);
    store_value values[5 * BATCH];
    for (size_t i = 0; i < BATCH; i++) {
        uint8_t *out = (uint8_t *)store->batch_scratch + i * bound;
        size_t stored = ZSTD_compressCCtx(store->compressor, out, bound,
                                          snapshot->pages[which[i]].data, size, COMPRESSION_LEVEL);
        if (ZSTD_isError(stored))
            return store_fail(error, CAP_EIO, "zstd: %s", ZSTD_getErrorName(stored));
        values[5 * i] = BLOB(hashes + which[i] * STORE_HASH_SIZE, STORE_HASH_SIZE);
        values[5 * i + 1] = INTEGER((int64_t)size);
        values[5 * i + 2] = INTEGER((int64_t)stored);
        values[5 * i + 3] = BLOB(out, stored);
        values[5 * i + 4] = INTEGER(now);
    }
    /* Another transaction may have stored some meanwhile: RETURNING names
     * only the rows this one inserted. */
    integers inserted = {0};
    result = store_run(store, blob_insert_batch, values, 5 * BATCH, sum_integers, &inserted, error);
    if (result == CAP_OK) {
        added->value[0] += inserted.value[0];
        added->value[1] += inserted.rows;
        added->value[2] += inserted.value[1];
    }
    return result;
}

/* Inside a write transaction: the blobs that pages `which[0..count)` name
 * by hash are all stored (and, on PostgreSQL, locked until the transaction
 * ends: blob_exists_locking); STORE_ENOTFOUND naming the first that is not.
 * A full batch is one statement, otherwise, or to find which is missing,
 * one per page. */
static int blobs_check_present(store *store, const store_snapshot_data *snapshot,
                               const uint8_t *hashes, const size_t *which, size_t count,
                               char *error) {
    if (count == BATCH) {
        present_hashes batch;
        int result = blobs_find_present(store, hashes, which, &batch, error);
        int all = 1;
        for (size_t i = 0; i < BATCH && all; i++) all = batch.present[i];
        if (result != CAP_OK || all) return result;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *hash = hashes + which[i] * STORE_HASH_SIZE;
        integers present = {0};
        int result = RUN(store, blob_exists_statement(store), collect_integers, &present, error,
                         BLOB(hash, STORE_HASH_SIZE));
        if (result != CAP_OK) return result;
        if (!present.rows) {
            char name[17];
            hex(hash, name);
            return store_fail(error, STORE_ENOTFOUND, "page %u names blob %s, which is not stored",
                        snapshot->pages[which[i]].index, name);
        }
    }
    return CAP_OK;
}

static int check_snapshot(const store_snapshot_data *snapshot, char *error) {
    int result = store_check_name(snapshot->build_id, "build id", 0, error);
    if (result != CAP_OK) return result;
    if (!snapshot->manifest) return store_fail(error, CAP_EINVAL, "snapshot without a manifest");
    if (snapshot->page_size < 512 || snapshot->page_size > STORE_BLOB_MAX)
        return store_fail(error, CAP_EINVAL, "page size %u out of range", snapshot->page_size);
    if (snapshot->page_count && !snapshot->pages) return store_fail(error, CAP_EINVAL, "no pages");
    for (size_t i = 0; i < snapshot->page_count; i++) {
        const store_page *page = &snapshot->pages[i];
        if (i && page->index <= snapshot->pages[i - 1].index)
            return store_fail(error, CAP_EINVAL, "pages not in increasing index order at page %u",
                        page->index);
        if (!page->data && !page->hash)
            return store_fail(error, CAP_EINVAL, "page %u has neither bytes nor a hash", page->index);
    }
    return CAP_OK;
}

/* A snapshot's page rows (index and hash, by increasing index).  A new
 * snapshot of a session updates its current one's in place: a call changes
 * a few dozen of a snapshot's ≈ 1,300 pages, and writing only those rows
 * (instead of a new snapshot's every row and deleting the old one's) is
 * what keeps a commit small. */
typedef struct page_rows {
    int64_t id;        /* 0: the session has none */
    int64_t page_size;
    uint32_t *indexes; /* its rows, by increasing page index */
    uint8_t *hashes;
    size_t count, capacity;
} page_rows;

static const char snapshot_current_select[] =
    "SELECT s.id, s.page_size FROM sessions AS owner JOIN snapshots AS s"
    " ON s.id = owner.latest_snapshot WHERE owner.id = $1";
static const char snapshot_rows_select[] =
    "SELECT page_index, hash FROM snapshot_pages WHERE snapshot = $1 ORDER BY page_index";
static const char snapshot_update[] =
    "UPDATE snapshots SET call_seq = $2, build_id = $3, page_size = $4, manifest = $5,"
    " created_at = $6 WHERE id = $1";
static const char snapshot_page_update[] =
    "UPDATE snapshot_pages SET hash = $3 WHERE snapshot = $1 AND page_index = $2";
static const char snapshot_page_delete[] =
    "DELETE FROM snapshot_pages WHERE snapshot = $1 AND page_index = $2";

static int read_page_row(void *context, const store_value *columns, int count, char *error) {
    page_rows *previous = context;
    if (count < 2 || columns[1].type != STORE_BLOB || columns[1].size != STORE_HASH_SIZE)
        return store_fail(error, STORE_ECORRUPT, "snapshot %lld: malformed page row",
                    (long long)previous->id);
    if (previous->count == previous->capacity) {
        size_t capacity = previous->capacity ? 2 * previous->capacity : 256;
        uint32_t *indexes = realloc(previous->indexes, capacity * sizeof *indexes);
        if (indexes) previous->indexes = indexes;
        uint8_t *hashes = indexes ? realloc(previous->hashes, capacity * STORE_HASH_SIZE) : NULL;
        if (!hashes) return store_fail(error, CAP_ENOMEM, "out of memory");
        previous->hashes = hashes;
        previous->capacity = capacity;
    }
    previous->indexes[previous->count] = (uint32_t)columns[0].integer;
    memcpy(previous->hashes + previous->count * STORE_HASH_SIZE, columns[1].bytes,
           STORE_HASH_SIZE);
    previous->count++;
    return 0;
}

static int read_previous(store *store, const char *session, page_rows *out,
                         char *error) {
    integers current = {0};
    int result = RUN(store, snapshot_current_select, collect_integers, &current, error,
                     TEXT(session));
    if (result != CAP_OK || !current.rows) return result;
    out->id = current.value[0];
    out->page_size = current.value[1];
    return RUN(store, snapshot_rows_select, read_page_row, out, error, INTEGER(out->id));
}

/* same[i]: page i of the new snapshot has the row it would get already
 * (same index, same hash): its blob is stored, and nothing is written. */
static void mark_unchanged(const page_rows *previous, const store_snapshot_data *snapshot,
                           const uint8_t *hashes, uint8_t *same) {
    size_t old = 0;
    for (size_t i = 0; i < snapshot->page_count; i++) {
        uint32_t index = snapshot->pages[i].index;
        while (old < previous->count && previous->indexes[old] < index) old++;
        same[i] = old < previous->count && previous->indexes[old] == index &&
                  memcmp(previous->hashes + old * STORE_HASH_SIZE, hashes + i * STORE_HASH_SIZE,
                         STORE_HASH_SIZE) == 0;
    }
}

/* The rows of `previous` made those of `snapshot`: an update where a page
 * changed, an insert where it is new, a delete where it is gone (both lists
 * are by increasing index). */
static int update_rows(store *store, const page_rows *previous,
                       const store_snapshot_data *snapshot, const uint8_t *hashes,
                       const uint8_t *same, char *error) {
    int result = CAP_OK;
    size_t old = 0;
    for (size_t i = 0; i < snapshot->page_count && result == CAP_OK; i++) {
        uint32_t index = snapshot->pages[i].index;
        for (; old < previous->count && previous->indexes[old] < index && result == CAP_OK; old++)
            result = RUN(store, snapshot_page_delete, NULL, NULL, error, INTEGER(previous->id),
                         INTEGER(previous->indexes[old]));
        int exists = old < previous->count && previous->indexes[old] == index;
        if (result == CAP_OK && !same[i])
            result = RUN(store, exists ? snapshot_page_update : snapshot_page_insert, NULL, NULL,
                         error, INTEGER(previous->id), INTEGER(index),
                         BLOB(hashes + i * STORE_HASH_SIZE, STORE_HASH_SIZE));
        if (exists) old++;
    }
    for (; old < previous->count && result == CAP_OK; old++)
        result = RUN(store, snapshot_page_delete, NULL, NULL, error, INTEGER(previous->id),
                     INTEGER(previous->indexes[old]));
    return result;
}

/* A new snapshot row and every one of its pages' rows. */
static int insert_rows(store *store, const char *session, int64_t call_seq,
                       const store_snapshot_data *snapshot, const uint8_t *hashes, int64_t now,
                       int64_t *id, char *error) {
    integers inserted = {0};
    int result = RUN(store, snapshot_insert, collect_integers, &inserted, error, TEXT(session),
                     call_seq ? INTEGER(call_seq) : NOTHING, TEXT(snapshot->build_id),
                     INTEGER(snapshot->page_size), TEXT(snapshot->manifest), INTEGER(now));
    *id = inserted.value[0];
    size_t i = 0;
    for (; i + BATCH <= snapshot->page_count && result == CAP_OK; i += BATCH) {
        store_value values[1 + 2 * BATCH];
        values[0] = INTEGER(*id);
        for (size_t j = 0; j < BATCH; j++) {
            values[1 + 2 * j] = INTEGER(snapshot->pages[i + j].index);
            values[2 + 2 * j] = BLOB(hashes + (i + j) * STORE_HASH_SIZE, STORE_HASH_SIZE);
        }
        result = store_run(store, page_insert_batch, values, 1 + 2 * BATCH, NULL, NULL, error);
    }
    for (; i < snapshot->page_count && result == CAP_OK; i++)
        result = RUN(store, snapshot_page_insert, NULL, NULL, error, INTEGER(*id),
                     INTEGER(snapshot->pages[i].index),
                     BLOB(hashes + i * STORE_HASH_SIZE, STORE_HASH_SIZE));
    return result;
}

/* Inside a write transaction: the blobs, the snapshot row and its pages,
 * the session pointing at it, older snapshots gone, the quota met.
 * `hashes` holds each page's hash (computed before the transaction).  A
 * session keeps one snapshot: the one it has is updated in place (only
 * the rows of pages that changed are written), and only a session without
 * one, or whose page size changed, gets a new row. */
static int snapshot_write_in_transaction(store *store, const char *session, int64_t call_seq,
                                         const store_snapshot_data *snapshot, const uint8_t *hashes,
                                         int64_t *snapshot_id, char *error) {
    int result = CAP_OK;
    integers added = {0};
    pthread_once(&batch_once, batch_statements);
    page_rows previous = {0};
    uint8_t *same = calloc(snapshot->page_count ? snapshot->page_count : 1, 1);
    if (!same) return store_fail(error, CAP_ENOMEM, "out of memory");
    result = read_previous(store, session, &previous, error);
    if (result == CAP_OK && previous.id && previous.page_size != snapshot->page_size) {
        previous.id = 0; /* a new snapshot; the old one is deleted below */
        previous.count = 0;
    }
    if (result == CAP_OK) mark_unchanged(&previous, snapshot, hashes, same);
    /* The pages given by their bytes first: a page named by hash may name
     * a blob stored by another page of this very snapshot. */
    size_t batch[BATCH], queued = 0;
    for (size_t i = 0; i < snapshot->page_count && result == CAP_OK; i++) {
        if (!snapshot->pages[i].data || same[i]) continue;
        batch[queued++] = i;
        if (queued == BATCH) {
            result = blobs_insert_batch(store, snapshot, hashes, batch, &added, error);
            queued = 0;
        }
    }
    for (size_t i = 0; i < queued && result == CAP_OK; i++)
        result = blob_insert_if_absent(store, snapshot->pages[batch[i]].data, snapshot->page_size,
                                       hashes + batch[i] * STORE_HASH_SIZE, &added, error);
    queued = 0;
    for (size_t i = 0; i < snapshot->page_count && result == CAP_OK; i++) {
        if (snapshot->pages[i].data || same[i]) continue;
        batch[queued++] = i;
        if (queued == BATCH) {
            result = blobs_check_present(store, snapshot, hashes, batch, queued, error);
            queued = 0;
        }
    }
    if (result == CAP_OK && queued)
        result = blobs_check_present(store, snapshot, hashes, batch, queued, error);
    if (result == CAP_OK) result = usage_apply(store, &added, error);
    int64_t now = store_now(store);
    int64_t id = previous.id;
    if (result == CAP_OK && id) {
        result = RUN(store, snapshot_update, NULL, NULL, error, INTEGER(id),
                     call_seq ? INTEGER(call_seq) : NOTHING, TEXT(snapshot->build_id),
                     INTEGER(snapshot->page_size), TEXT(snapshot->manifest), INTEGER(now));
        if (result == CAP_OK) result = update_rows(store, &previous, snapshot, hashes, same, error);
    } else if (result == CAP_OK) {
        result = insert_rows(store, session, call_seq, snapshot, hashes, now, &id, error);
    }
    free(same);
    free(previous.indexes);
    free(previous.hashes);
    if (result == CAP_OK)
        result = RUN(store, session_after_snapshot, NULL, NULL, error, TEXT(session), INTEGER(id),
                     INTEGER(now));
    if (result == CAP_OK)
        result = RUN(store, snapshots_older_delete, NULL, NULL, error, TEXT(session), INTEGER(id));
    if (result == CAP_OK) result = make_room(store, session, error);
    if (result == CAP_OK && snapshot_id) *snapshot_id = id;
    return result;
}

/* Checks a snapshot and hashes its pages (outside any transaction: the
 * write lock is not held while hashing).  *hashes is malloc'd. */
static int snapshot_prepare(const store_snapshot_data *snapshot, uint8_t **hashes, char *error) {
    *hashes = NULL;
    int result = check_snapshot(snapshot, error);
    if (result != CAP_OK) return result;
    *hashes = malloc(snapshot->page_count ? snapshot->page_count * STORE_HASH_SIZE : 1);
    if (!*hashes) return store_fail(error, CAP_ENOMEM, "out of memory");
    for (size_t i = 0; i < snapshot->page_count; i++) {
        const store_page *page = &snapshot->pages[i];
        if (page->data && !page->hash)
            store_hash(page->data, snapshot->page_size, *hashes + i * STORE_HASH_SIZE);
        else
            memcpy(*hashes + i * STORE_HASH_SIZE, page->hash, STORE_HASH_SIZE);
    }
    return CAP_OK;
}

static const char session_status_select[] = "SELECT status FROM sessions WHERE id = $1";

/* The third column as text (call_epochs_select's owner). */
static int collect_owner(void *context, const store_value *columns, int count, char *error) {
    (void)error;
    text_column *out = context;
    if (out->rows++ == 0 && count > 2) store_copy_text(out->text, sizeof out->text, &columns[2]);
    return 0;
}

/* Inside a transaction: the session exists and is not expired. */
static int session_usable(store *store, const char *id, char *error) {
    text_column status = {0};
    int result = RUN(store, session_status_select, collect_text, &status, error, TEXT(id));
    if (result != CAP_OK) return result;
    if (!status.rows) return store_fail(error, STORE_ENOTFOUND, "no session '%s'", id);
    if (strcmp(status.text, "expired") == 0)
        return store_fail(error, STORE_ECONFLICT, "session '%s' has expired", id);
    return CAP_OK;
}

int store_snapshot_write(store *store, const char *session, const store_snapshot_data *snapshot,
                         int64_t *snapshot_id, char *error) {
    if (snapshot_id) *snapshot_id = 0;
    int result = store_check_name(session, "session id", 0, error);
    if (result != CAP_OK) return result;
    if (!snapshot) return store_fail(error, CAP_EINVAL, "no snapshot");
    uint8_t *hashes;
    if ((result = snapshot_prepare(snapshot, &hashes, error)) != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) == CAP_OK) {
        result = session_usable(store, session, error);
        if (result == CAP_OK)
            result = snapshot_write_in_transaction(store, session, 0, snapshot, hashes, snapshot_id,
                                                   error);
        result = store_write_end(store, result, error);
    }
    free(hashes);
    if (result != CAP_OK && snapshot_id) *snapshot_id = 0;
    return result;
}

static const char snapshot_latest_select[] =
    "SELECT s.id, s.call_seq, s.page_size, s.created_at, s.session, s.build_id, s.manifest"
    " FROM sessions AS owner JOIN snapshots AS s ON s.id = owner.latest_snapshot"
    " WHERE owner.id = $1";

static int read_snapshot(void *context, const store_value *columns, int count, char *error) {
    store_snapshot *out = context;
    if (count < 7) return malformed_row(count, 7, error);
    out->id = columns[0].integer;
    out->call_seq = columns[1].type == STORE_INTEGER ? columns[1].integer : 0;
    out->page_size = (uint32_t)columns[2].integer;
    out->created_at = columns[3].integer;
    store_copy_text(out->session, sizeof out->session, &columns[4]);
    store_copy_text(out->build_id, sizeof out->build_id, &columns[5]);
    out->manifest = store_duplicate_text(&columns[6]);
    return out->manifest ? 0 : store_fail(error, CAP_ENOMEM, "out of memory");
}

typedef struct page_list {
    store_snapshot *snapshot;
    size_t capacity;
} page_list;

static int read_page_reference(void *context, const store_value *columns, int count, char *error) {
    page_list *list = context;
    store_snapshot *snapshot = list->snapshot;
    if (count < 2 || columns[1].type != STORE_BLOB || columns[1].size != STORE_HASH_SIZE)
        return store_fail(error, STORE_ECORRUPT, "snapshot %lld: malformed page row",
                    (long long)snapshot->id);
    if (snapshot->page_count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        void *larger = realloc(snapshot->pages, capacity * sizeof *snapshot->pages);
        if (!larger) return store_fail(error, CAP_ENOMEM, "out of memory");
        snapshot->pages = larger;
        list->capacity = capacity;
    }
    struct store_page_reference *page = &snapshot->pages[snapshot->page_count++];
    page->index = (uint32_t)columns[0].integer;
    memcpy(page->hash, columns[1].bytes, STORE_HASH_SIZE);
    return 0;
}

int store_snapshot_latest(store *store, const char *session, store_snapshot *out, char *error) {
    memset(out, 0, sizeof *out);
    int result = store_check_name(session, "session id", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store->backend->begin(store->connection, 0, error)) != CAP_OK) return result;
    result = RUN(store, snapshot_latest_select, read_snapshot, out, error, TEXT(session));
    if (result == CAP_OK && !out->id) {
        store_session exists;
        result = session_load(store, session, &exists, error);
        if (result == CAP_OK)
            result = store_fail(error, STORE_ENOTFOUND, "session '%s' has no snapshot", session);
    }
    page_list list = {.snapshot = out};
    if (result == CAP_OK)
        result =
            RUN(store, snapshot_rows_select, read_page_reference, &list, error, INTEGER(out->id));
    store->backend->rollback(store->connection);
    if (result != CAP_OK) store_snapshot_clear(out);
    return result;
}

void store_snapshot_clear(store_snapshot *snapshot) {
    free(snapshot->manifest);
    free(snapshot->pages);
    memset(snapshot, 0, sizeof *snapshot);
}

static const char snapshot_page_size_select[] = "SELECT page_size FROM snapshots WHERE id = $1";

/* The wanted pages' blobs, BATCH at a time, decompressed into slot
 * buffers (their hashes checked by take_batch): a restore wants a few
 * hundred of a snapshot's pages, and reading only their blobs (not every
 * page's, as one join would) is most of its speed. */
typedef struct blob_slots {
    store *store;
    const uint8_t *hashes; /* BATCH hashes (repeats allowed) */
    uint32_t page_size;
    uint8_t *buffers;      /* BATCH x page_size */
    int loaded[BATCH];
} blob_slots;

static int decode_into_slots(void *context, const store_value *columns, int count,
                             char *error) {
    blob_slots *slots = context;
    if (count < 3 || columns[0].type != STORE_BLOB || columns[0].size != STORE_HASH_SIZE)
        return store_fail(error, STORE_ECORRUPT, "malformed blob row");
    int decoded = -1;
    for (int i = 0; i < BATCH; i++) {
        if (slots->loaded[i] ||
            memcmp(columns[0].bytes, slots->hashes + (size_t)i * STORE_HASH_SIZE, STORE_HASH_SIZE))
            continue;
        uint8_t *into = slots->buffers + (size_t)i * slots->page_size;
        if (decoded < 0) {
            int result = blob_decode(slots->store, columns[0].bytes, &columns[1], &columns[2],
                                     slots->page_size, 0, into, NULL, error);
            if (result != CAP_OK) return result;
            decoded = i;
        } else {
            memcpy(into, slots->buffers + (size_t)decoded * slots->page_size, slots->page_size);
        }
        slots->loaded[i] = 1;
    }
    return 0;
}

static int read_pages(store *store, int64_t snapshot_id,
                      int (*want)(void *context, uint32_t index, const uint8_t *hash),
                      int (*page)(void *context, uint32_t index, const void *bytes, size_t size),
                      void *context, int runs, char *error);

int store_snapshot_read_pages(store *store, int64_t snapshot_id,
                              int (*page)(void *context, uint32_t index, const void *bytes,
                                          size_t size),
                              void *context, char *error) {
    return read_pages(store, snapshot_id, NULL, page, context, 0, error);
}

int store_snapshot_read_wanted_pages(store *store, int64_t snapshot_id,
                                     int (*want)(void *context, uint32_t index,
                                                 const uint8_t *hash),
                                     int (*page)(void *context, uint32_t index, const void *bytes,
                                                 size_t size),
                                     void *context, char *error) {
    return read_pages(store, snapshot_id, want, page, context, 1, error);
}

/* One batch of decompressed pages on its way to the caller's `page`. */
typedef struct page_batch {
    uint8_t *buffers; /* BATCH x page_size */
    uint8_t hashes[BATCH * STORE_HASH_SIZE];
    uint32_t indexes[BATCH];
    size_t count;
    int full; /* handed to the checker, not taken yet */
} page_batch;

/* The second half of reading a snapshot's pages: each page's SHA-256
 * checked against its hash, then handed to `page`, in index order.  On a
 * thread of its own when there is much to read (a restore of a large
 * heap), so that a core checks and stores batch N while the other reads
 * and decompresses batch N + 1; the two batches alternate. */
typedef struct page_checker {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    page_batch batches[2];
    int stop;   /* the reader has handed over every batch */
    int result; /* the first failure, CAP_OK until then */
    char error[CAP_ERROR_SIZE];
    uint32_t page_size;
    int (*page)(void *context, uint32_t index, const void *bytes, size_t size);
    void *context;
    int runs; /* pass consecutive pages of a batch in one call */
} page_checker;

/* Checks each page of `batch` and passes it on, alone or, with runs, with
 * the pages that follow it in the batch when their indexes do too (one
 * write of the page file for them instead of one each: 1,400 writes of
 * 16 KiB took 8–9 ms on the test machine, 90 of 256 KiB 3.1–3.6 ms). */
static int take_batch(page_checker *checker, const page_batch *batch, char *error) {
    size_t first = 0; /* of the run being gathered */
    for (size_t i = 0; i < batch->count; i++) {
        const uint8_t *bytes = batch->buffers + i * checker->page_size;
        const uint8_t *hash = batch->hashes + i * STORE_HASH_SIZE;
        uint8_t actual[STORE_HASH_SIZE];
        store_hash(bytes, checker->page_size, actual);
        if (memcmp(actual, hash, STORE_HASH_SIZE) != 0) return hash_mismatch(hash, error);
        if (checker->runs && i + 1 < batch->count && batch->indexes[i + 1] == batch->indexes[i] + 1)
            continue;
        int result = checker->page(checker->context, batch->indexes[first],
                                   batch->buffers + first * checker->page_size,
                                   (i + 1 - first) * checker->page_size);
        first = i + 1;
        if (result) {
            if (error) error[0] = '\0'; /* the caller's own code, its own words */
            return result;
        }
    }
    return CAP_OK;
}

static void *checker_main(void *argument) {
    page_checker *checker = argument;
    int next = 0;
    pthread_mutex_lock(&checker->lock);
    for (;;) {
        page_batch *batch = &checker->batches[next];
        while (!batch->full && !checker->stop) pthread_cond_wait(&checker->changed, &checker->lock);
        if (!batch->full) break; /* stopped, every batch taken */
        int failed = checker->result != CAP_OK;
        pthread_mutex_unlock(&checker->lock);
        int result = failed ? CAP_OK : take_batch(checker, batch, checker->error);
        pthread_mutex_lock(&checker->lock);
        if (result != CAP_OK) checker->result = result;
        batch->full = 0;
        pthread_cond_broadcast(&checker->changed);
        next ^= 1;
    }
    pthread_mutex_unlock(&checker->lock);
    return NULL;
}

/* Waits until `batch` is the reader's again; the checker's failure, if
 * any (the reader then stops). */
static int batch_free(page_checker *checker, page_batch *batch) {
    pthread_mutex_lock(&checker->lock);
    while (batch->full && checker->result == CAP_OK)
        pthread_cond_wait(&checker->changed, &checker->lock);
    int result = checker->result;
    pthread_mutex_unlock(&checker->lock);
    return result;
}

static int read_pages(store *store, int64_t snapshot_id,
                      int (*want)(void *context, uint32_t index, const uint8_t *hash),
                      int (*page)(void *context, uint32_t index, const void *bytes, size_t size),
                      void *context, int runs, char *error) {
    if (!page) return store_fail(error, CAP_EINVAL, "no page function");
    pthread_once(&batch_once, batch_statements);
    int result = store->backend->begin(store->connection, 0, error);
    if (result != CAP_OK) return result;
    integers size = {0};
    page_rows rows = {.id = snapshot_id};
    blob_slots slots = {.store = store};
    page_checker checker = {.page = page, .context = context, .result = CAP_OK, .runs = runs};
    result =
        RUN(store, snapshot_page_size_select, collect_integers, &size, error, INTEGER(snapshot_id));
    if (result == CAP_OK && !size.rows)
        result = store_fail(error, STORE_ENOTFOUND, "no snapshot %lld", (long long)snapshot_id);
    if (result == CAP_OK && (size.value[0] < 512 || size.value[0] > STORE_BLOB_MAX))
        result = store_fail(error, STORE_ECORRUPT, "snapshot %lld: page size %lld",
                      (long long)snapshot_id, (long long)size.value[0]);
    if (result == CAP_OK) {
        checker.page_size = slots.page_size = (uint32_t)size.value[0];
        size_t batch_bytes = (size_t)BATCH * slots.page_size;
        if (store->page_buffers_size < 2 * batch_bytes) {
            free(store->page_buffers);
            store->page_buffers_size = 0;
            if ((store->page_buffers = malloc(2 * batch_bytes)))
                store->page_buffers_size = 2 * batch_bytes;
            else
                result = store_fail(error, CAP_ENOMEM, "out of memory");
        }
        checker.batches[0].buffers = store->page_buffers;
        checker.batches[1].buffers = store->page_buffers + batch_bytes;
    }
    if (result == CAP_OK)
        result = RUN(store, snapshot_rows_select, read_page_row, &rows, error,
                     INTEGER(snapshot_id));
    /* Keep the wanted rows, in index order. */
    size_t wanted = 0;
    for (size_t i = 0; i < rows.count && result == CAP_OK; i++) {
        const uint8_t *hash = rows.hashes + i * STORE_HASH_SIZE;
        if (want && !want(context, rows.indexes[i], hash)) continue;
        rows.indexes[wanted] = rows.indexes[i];
        memmove(rows.hashes + wanted * STORE_HASH_SIZE, hash, STORE_HASH_SIZE);
        wanted++;
    }
    /* A few batches are checked here; more by a thread of their own. */
    pthread_t thread;
    int threaded = 0;
    if (result == CAP_OK && wanted > 4 * BATCH) {
        pthread_mutex_init(&checker.lock, NULL);
        pthread_cond_init(&checker.changed, NULL);
        threaded = pthread_create(&thread, NULL, checker_main, &checker) == 0;
        if (!threaded) {
            pthread_cond_destroy(&checker.changed);
            pthread_mutex_destroy(&checker.lock);
        }
    }
    for (size_t start = 0; start < wanted && result == CAP_OK; start += BATCH) {
        page_batch *batch = &checker.batches[(start / BATCH) % 2];
        if (threaded && batch_free(&checker, batch) != CAP_OK) break; /* its failure, below */
        store_value values[BATCH];
        for (size_t i = 0; i < BATCH; i++) {
            size_t from = start + i < wanted ? start + i : start; /* a short batch repeats */
            memcpy(batch->hashes + i * STORE_HASH_SIZE, rows.hashes + from * STORE_HASH_SIZE,
                   STORE_HASH_SIZE);
            values[i] = BLOB(batch->hashes + i * STORE_HASH_SIZE, STORE_HASH_SIZE);
            slots.loaded[i] = 0;
        }
        slots.hashes = batch->hashes;
        slots.buffers = batch->buffers;
        result = store_run(store, blobs_data_batch, values, BATCH, decode_into_slots, &slots, error);
        batch->count = 0;
        for (size_t i = 0; i < BATCH && start + i < wanted && result == CAP_OK; i++) {
            batch->indexes[i] = rows.indexes[start + i];
            batch->count++;
            if (!slots.loaded[i])
                result = store_fail(error, STORE_ECORRUPT, "page %u: its blob is missing",
                                    batch->indexes[i]);
        }
        if (result != CAP_OK) break;
        if (!threaded) {
            result = take_batch(&checker, batch, error);
        } else {
            pthread_mutex_lock(&checker.lock);
            batch->full = 1;
            pthread_cond_broadcast(&checker.changed);
            pthread_mutex_unlock(&checker.lock);
        }
    }
    if (threaded) {
        pthread_mutex_lock(&checker.lock);
        checker.stop = 1;
        pthread_cond_broadcast(&checker.changed);
        pthread_mutex_unlock(&checker.lock);
        pthread_join(thread, NULL);
        if (result == CAP_OK && checker.result != CAP_OK) {
            result = checker.result;
            if (error) snprintf(error, CAP_ERROR_SIZE, "%s", checker.error);
        }
        pthread_cond_destroy(&checker.changed);
        pthread_mutex_destroy(&checker.lock);
    }
    store->backend->rollback(store->connection);
    free(rows.indexes);
    free(rows.hashes);
    return result;
}

/* --- calls ----------------------------------------------------------------------- */

static const char call_by_key_select[] =
    "SELECT session, seq, idempotency_key, status, request_hash, result, started_at, finished_at"
    " FROM calls WHERE session = $1 AND idempotency_key = $2";
static const char call_by_seq_select[] =
    "SELECT session, seq, idempotency_key, status, request_hash, result, started_at, finished_at"
    " FROM calls WHERE session = $1 AND seq = $2";
static const char calls_select[] =
    "SELECT session, seq, idempotency_key, status, request_hash, result, started_at, finished_at"
    " FROM calls WHERE session = $1 AND seq > $2 ORDER BY seq LIMIT $3";
static const char call_release_key[] =
    "UPDATE calls SET idempotency_key = NULL WHERE session = $1 AND seq = $2";
static const char session_next_seq[] =
    "UPDATE sessions SET call_count = call_count + 1, last_used_at = $2,"
    " expires_at = CASE WHEN ttl_ms > 0 THEN $2 + ttl_ms ELSE NULL END"
    " WHERE id = $1 RETURNING call_count, epoch";
/* After session_next_seq (the row is locked): the node the call's session
 * is live on, "" when none. */
static const char session_owner_select[] =
    "SELECT COALESCE(owner, '') FROM sessions WHERE id = $1";
static const char call_insert[] =
    "INSERT INTO calls (session, seq, idempotency_key, status, request_hash, started_at, node,"
    " epoch) VALUES ($1, $2, $3, 'running', $4, $5, $6, $7)";
/* Fenced: a call begun in an earlier epoch of its session (before another
 * node claimed it) does not commit. */
static const char call_finish[] =
    "UPDATE calls SET status = $3, result = $4, finished_at = $5"
    " WHERE session = $1 AND seq = $2 AND status = 'running'"
    " AND epoch = (SELECT epoch FROM sessions WHERE id = $1) RETURNING 1";
static const char call_epochs_select[] =
    "SELECT c.epoch, s.epoch, s.owner FROM calls AS c JOIN sessions AS s ON s.id = c.session"
    " WHERE c.session = $1 AND c.seq = $2";

static int read_call(store_call *out, const store_value *columns, int count, char *error) {
    if (count < 8) return malformed_row(count, 8, error);
    memset(out, 0, sizeof *out);
    store_copy_text(out->session, sizeof out->session, &columns[0]);
    out->seq = columns[1].integer;
    store_copy_text(out->idempotency_key, sizeof out->idempotency_key, &columns[2]);
    store_copy_text(out->status, sizeof out->status, &columns[3]);
    if (columns[4].type == STORE_BLOB && columns[4].size == STORE_HASH_SIZE) {
        memcpy(out->request_hash, columns[4].bytes, STORE_HASH_SIZE);
        out->has_request_hash = 1;
    }
    if (columns[5].type == STORE_TEXT && !(out->result = store_duplicate_text(&columns[5])))
        return store_fail(error, CAP_ENOMEM, "out of memory");
    out->started_at = columns[6].integer;
    out->finished_at = columns[7].type == STORE_INTEGER ? columns[7].integer : 0;
    return 0;
}

typedef struct call_read {
    int rows;
    store_call *call;
} call_read;

static int read_one_call(void *context, const store_value *columns, int count, char *error) {
    call_read *read = context;
    if (read->rows++) return 0;
    return read_call(read->call, columns, count, error);
}

typedef struct call_list {
    store_call *calls;
    size_t count;
    size_t capacity;
} call_list;

static int read_listed_call(void *context, const store_value *columns, int count, char *error) {
    call_list *list = context;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 16;
        void *larger = realloc(list->calls, capacity * sizeof *list->calls);
        if (!larger) return store_fail(error, CAP_ENOMEM, "out of memory");
        list->calls = larger;
        list->capacity = capacity;
    }
    int result = read_call(&list->calls[list->count], columns, count, error);
    if (result == 0) list->count++;
    return result;
}

void store_call_clear(store_call *call) {
    free(call->result);
    call->result = NULL;
}

void store_call_list_free(store_call *calls, size_t count) {
    for (size_t i = 0; i < count; i++) store_call_clear(&calls[i]);
    free(calls);
}

int store_call_begin(store *store, const char *session, const char *key,
                     const uint8_t request_hash[STORE_HASH_SIZE], store_call *out, int *replayed,
                     char *error) {
    memset(out, 0, sizeof *out);
    *replayed = 0;
    int result = store_check_name(session, "session id", 0, error);
    if (result == CAP_OK && key) result = store_check_name(key, "idempotency key", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) != CAP_OK) return result;
    result = session_usable(store, session, error);
    /* The seq first: updating the session's row locks it, so concurrent
     * begins of one session serialise here (on PostgreSQL; SQLite's write
     * transactions are serial anyway) and the key check below sees any
     * call with the same key that another transaction committed.  A replay
     * rolls this back. */
    int64_t now = store_now(store);
    integers seq = {0};
    if (result == CAP_OK)
        result = RUN(store, session_next_seq, collect_integers, &seq, error, TEXT(session),
                     INTEGER(now));
    /* The epoch the call records is its node's only while the node owns
     * the session: had another node claimed it since this node's claim,
     * the call would record the new epoch and pass the commit's fence. */
    text_column owner = {0};
    if (result == CAP_OK)
        result = RUN(store, session_owner_select, collect_text, &owner, error, TEXT(session));
    if (result == CAP_OK && owner.text[0] && strcmp(owner.text, store->node) != 0)
        result = store_fail(error, STORE_EMOVED, "session '%s' is live on node %s now", session,
                            owner.text);
    if (result == CAP_OK && key) {
        call_read earlier = {.call = out};
        result = RUN(store, call_by_key_select, read_one_call, &earlier, error, TEXT(session),
                     TEXT(key));
        if (result == CAP_OK && earlier.rows) {
            int same_request =
                out->has_request_hash == (request_hash != NULL) &&
                (!request_hash || memcmp(out->request_hash, request_hash, STORE_HASH_SIZE) == 0);
            if (!same_request) {
                result = store_fail(error, STORE_ECONFLICT,
                              "idempotency key '%s' was used for another request (call %lld)", key,
                              (long long)out->seq);
            } else if (strcmp(out->status, "running") == 0) {
                result = store_fail(error, STORE_EBUSY,
                              "the call with idempotency key '%s' is still running", key);
            } else if (strcmp(out->status, "interrupted") == 0) {
                /* It never finished, so no client saw a result: run it
                 * again as a new call, which takes the key over. */
                result = RUN(store, call_release_key, NULL, NULL, error, TEXT(session),
                             INTEGER(out->seq));
            } else {
                *replayed = 1;
                store->backend->rollback(store->connection);
                return CAP_OK;
            }
            store_call_clear(out);
            memset(out, 0, sizeof *out);
        }
    }
    if (result == CAP_OK)
        result = RUN(store, call_insert, NULL, NULL, error, TEXT(session), INTEGER(seq.value[0]),
                     key ? TEXT(key) : NOTHING,
                     request_hash ? BLOB(request_hash, STORE_HASH_SIZE) : NOTHING, INTEGER(now),
                     TEXT(store->node), INTEGER(seq.value[1]));
    result = store_write_end(store, result, error);
    if (result != CAP_OK) {
        store_call_clear(out);
        memset(out, 0, sizeof *out);
        return result;
    }
    snprintf(out->session, sizeof out->session, "%s", session);
    out->seq = seq.value[0];
    snprintf(out->idempotency_key, sizeof out->idempotency_key, "%s", key ? key : "");
    snprintf(out->status, sizeof out->status, "running");
    if (request_hash) {
        memcpy(out->request_hash, request_hash, STORE_HASH_SIZE);
        out->has_request_hash = 1;
    }
    out->started_at = now;
    return CAP_OK;
}

/* Why finishing found no running call: none with that seq, or not running. */
static int call_not_running(store *store, const char *session, int64_t seq, char *error) {
    store_call call;
    call_read read = {.call = &call};
    int result =
        RUN(store, call_by_seq_select, read_one_call, &read, error, TEXT(session), INTEGER(seq));
    if (result != CAP_OK) return result;
    if (!read.rows)
        return store_fail(error, STORE_ENOTFOUND, "session '%s' has no call %lld", session,
                    (long long)seq);
    if (strcmp(call.status, "running") == 0) {
        store_call_clear(&call);
        /* Running, so fenced: the session changed hands since it began. */
        integers epochs = {0};
        text_column owner = {0};
        result = RUN(store, call_epochs_select, collect_integers, &epochs, error, TEXT(session),
                     INTEGER(seq));
        if (result == CAP_OK)
            result = RUN(store, call_epochs_select, collect_owner, &owner, error, TEXT(session),
                         INTEGER(seq));
        if (result != CAP_OK) return result;
        return store_fail(error, STORE_ECONFLICT,
                    "call %lld of session '%s' began in epoch %lld; the session is in epoch %lld"
                    " now, held by %s: its result is not committed",
                    (long long)seq, session, (long long)epochs.value[0],
                    (long long)epochs.value[1], owner.text[0] ? owner.text : "no node");
    }
    result = store_fail(error, STORE_ECONFLICT, "call %lld of session '%s' is %s, not running",
                  (long long)seq, session, call.status);
    store_call_clear(&call);
    return result;
}

int store_call_finish(store *store, const char *session, int64_t seq, const char *status,
                      const char *result_json, const store_snapshot_data *snapshot,
                      int64_t *snapshot_id, char *error) {
    if (snapshot_id) *snapshot_id = 0;
    int result = store_check_name(session, "session id", 0, error);
    if (result != CAP_OK) return result;
    if (!status || !status[0] || strlen(status) >= STORE_STATUS_SIZE ||
        strcmp(status, "running") == 0 || strcmp(status, "interrupted") == 0)
        return store_fail(error, CAP_EINVAL, "'%.40s' is not a status a call finishes with",
                    status ? status : "");
    uint8_t *hashes = NULL;
    if (snapshot && (result = snapshot_prepare(snapshot, &hashes, error)) != CAP_OK) return result;
    if ((result = store_write_begin(store, error)) == CAP_OK) {
        integers finished = {0};
        result =
            RUN(store, call_finish, collect_integers, &finished, error, TEXT(session), INTEGER(seq),
                TEXT(status), result_json ? TEXT(result_json) : NOTHING, INTEGER(store_now(store)));
        if (result == CAP_OK && !finished.rows)
            result = call_not_running(store, session, seq, error);
        if (result == CAP_OK && snapshot) result = session_usable(store, session, error);
        if (result == CAP_OK && snapshot)
            result = snapshot_write_in_transaction(store, session, seq, snapshot, hashes,
                                                   snapshot_id, error);
        result = store_write_end(store, result, error);
    }
    free(hashes);
    if (result != CAP_OK && snapshot_id) *snapshot_id = 0;
    return result;
}

int store_call_get(store *store, const char *session, int64_t seq, store_call *out, char *error) {
    memset(out, 0, sizeof *out);
    int result = store_check_name(session, "session id", 0, error);
    if (result != CAP_OK) return result;
    call_read read = {.call = out};
    result =
        RUN(store, call_by_seq_select, read_one_call, &read, error, TEXT(session), INTEGER(seq));
    if (result == CAP_OK && !read.rows)
        result =
            store_fail(error, STORE_ENOTFOUND, "session '%s' has no call %lld", session, (long long)seq);
    return result;
}

int store_call_list(store *store, const char *session, int64_t after_seq, size_t limit,
                    store_call **calls, size_t *count, char *error) {
    *calls = NULL;
    *count = 0;
    int result = store_check_name(session, "session id", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store->backend->begin(store->connection, 0, error)) != CAP_OK) return result;
    store_session exists;
    call_list list = {0};
    result = session_load(store, session, &exists, error);
    if (result == CAP_OK)
        result = RUN(store, calls_select, read_listed_call, &list, error, TEXT(session),
                     INTEGER(after_seq), INTEGER(limit ? (int64_t)limit : INT64_MAX));
    store->backend->rollback(store->connection);
    if (result != CAP_OK) {
        store_call_list_free(list.calls, list.count);
        return result;
    }
    *calls = list.calls;
    *count = list.count;
    return CAP_OK;
}

/* --- for jobs.c (store_internal.h) ----------------------------------------------- */

int store_internal_execute(store *store, const char *sql, const store_value *parameters,
                           int count, store_row_function row, void *context, char *error) {
    return store_run(store, sql, parameters, count, row, context, error);
}

int store_internal_write_begin(store *store, char *error) {
    return store_write_begin(store, error);
}

int store_internal_write_end(store *store, int result, char *error) {
    return store_write_end(store, result, error);
}

int64_t *store_internal_jobs_swept_at(store *store) {
    return &store->jobs_swept_at;
}

const store_backend *store_internal_backend(const store *store) {
    return store->backend;
}

/* --- tasks (the MCP Tasks extension) ---------------------------------------------- */

static const char task_expired_delete[] = "DELETE FROM tasks WHERE expires_at < $1";
static const char task_insert[] =
    "INSERT INTO tasks (id, principal, node, status, created_at, updated_at, expires_at)"
    " VALUES ($1, $2, $3, 'working', $4, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING 1";
static const char task_finish_update[] =
    "UPDATE tasks SET status = $2, status_message = $3, payload = $4, updated_at = $5"
    " WHERE id = $1 AND status = 'working' RETURNING 1";
/* $2 this node, $3 the oldest lease still alive (as the sweep's). */
static const char task_interrupt_update[] =
    "UPDATE tasks SET status = 'failed', status_message = $4, payload = $5, updated_at = $6"
    " WHERE id = $1 AND status = 'working' AND node <> $2 AND NOT EXISTS"
    " (SELECT 1 FROM nodes WHERE nodes.id = tasks.node AND nodes.lease_expires_at >= $3)";
static const char task_select[] =
    "SELECT id, principal, status, status_message, payload, created_at, updated_at, expires_at,"
    " node FROM tasks WHERE id = $1 AND expires_at >= $2";

int store_task_create(store *store, const char *id, const char *principal, int64_t ttl_ms,
                      char *error) {
    int result = store_check_name(id, "task id", 0, error);
    if (result == CAP_OK) result = store_check_name(principal, "principal", 1, error);
    if (result == CAP_OK) result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    int64_t now = store_now(store);
    integers inserted = {0};
    result = RUN(store, task_expired_delete, NULL, NULL, error, INTEGER(now));
    if (result == CAP_OK)
        result = RUN(store, task_insert, collect_integers, &inserted, error, TEXT(id),
                     TEXT(principal), TEXT(store->node), INTEGER(now), INTEGER(now + ttl_ms));
    if (result == CAP_OK && !inserted.rows)
        result = store_fail(error, STORE_EEXIST, "a task named '%s' exists already", id);
    return store_write_end(store, result, error);
}

int store_task_finish(store *store, const char *id, const char *status, const char *message,
                      const char *payload, char *error) {
    int result = store_check_name(id, "task id", 0, error);
    if (result == CAP_OK) result = store_write_begin(store, error);
    if (result != CAP_OK) return result;
    integers updated = {0};
    result = RUN(store, task_finish_update, collect_integers, &updated, error, TEXT(id),
                 TEXT(status), message ? TEXT(message) : NOTHING,
                 payload ? TEXT(payload) : NOTHING, INTEGER(store_now(store)));
    if (result == CAP_OK && !updated.rows)
        result = store_fail(error, STORE_ECONFLICT, "task '%s' is not working", id);
    return store_write_end(store, result, error);
}

typedef struct task_read {
    store_task *task;
    char node[STORE_ID_SIZE];
    int rows;
    int out_of_memory;
} task_read;

static int read_task(void *context, const store_value *columns, int count, char *error) {
    task_read *read = context;
    if (count < 9) return malformed_row(count, 9, error);
    if (read->rows++) return 0;
    store_task *task = read->task;
    store_copy_text(task->id, sizeof task->id, &columns[0]);
    store_copy_text(task->principal, sizeof task->principal, &columns[1]);
    store_copy_text(task->status, sizeof task->status, &columns[2]);
    task->status_message = store_duplicate_text(&columns[3]);
    task->payload = store_duplicate_text(&columns[4]);
    read->out_of_memory = (columns[3].type == STORE_TEXT && !task->status_message) ||
                          (columns[4].type == STORE_TEXT && !task->payload);
    task->created_at = columns[5].integer;
    task->updated_at = columns[6].integer;
    task->expires_at = columns[7].integer;
    store_copy_text(read->node, sizeof read->node, &columns[8]);
    return 0;
}

int store_task_get(store *store, const char *id, const char *interrupted_message,
                   const char *interrupted_payload, store_task *out, char *error) {
    memset(out, 0, sizeof *out);
    int result = store_check_name(id, "task id", 0, error);
    if (result != CAP_OK) return result;
    int64_t now = store_now(store);
    task_read read = {.task = out};
    result = RUN(store, task_select, read_task, &read, error, TEXT(id), INTEGER(now));
    if (result == CAP_OK && !read.rows)
        return store_fail(error, STORE_ENOTFOUND, "no task '%s'", id);
    if (result == CAP_OK && read.out_of_memory) result = store_fail(error, CAP_ENOMEM, "out of memory");
    if (result != CAP_OK || strcmp(out->status, "working") != 0 ||
        strcmp(read.node, store->node) == 0) {
        if (result != CAP_OK) store_task_clear(out);
        return result;
    }
    /* Working on another node: is that node still alive? */
    result = store_write_begin(store, error);
    if (result == CAP_OK)
        result = RUN(store, task_interrupt_update, NULL, NULL, error, TEXT(id), TEXT(store->node),
                     INTEGER(store->exclusive ? INT64_MAX : now), TEXT(interrupted_message),
                     TEXT(interrupted_payload), INTEGER(now));
    result = store_write_end(store, result, error);
    store_task_clear(out);
    read = (task_read){.task = out};
    if (result == CAP_OK)
        result = RUN(store, task_select, read_task, &read, error, TEXT(id), INTEGER(now));
    if (result == CAP_OK && !read.rows) result = store_fail(error, STORE_ENOTFOUND, "no task '%s'", id);
    if (result == CAP_OK && read.out_of_memory) result = store_fail(error, CAP_ENOMEM, "out of memory");
    if (result != CAP_OK) store_task_clear(out);
    return result;
}

void store_task_clear(store_task *task) {
    free(task->status_message);
    free(task->payload);
    task->status_message = task->payload = NULL;
}
