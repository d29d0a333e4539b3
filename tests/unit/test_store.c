/*
 * test_store.c — the durable store (src/store/) against real SQLite files
 * in a fresh temporary directory per test, and real processes killed with
 * SIGKILL for the crash test:
 *
 *   make build/test_store && build/test_store
 *
 * Nothing is mocked: corruption is made by editing the database with
 * SQLite itself (a flipped byte in a blob row) or by overwriting the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../../src/store/backend.h"
#include "../../src/store/store.h"

#define PAGE 4096

typedef struct fixture {
    char directory[64];
    char path[128];
    char url[140];
    int64_t now; /* the store's clock, when a test sets it */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->directory, sizeof f->directory, "/tmp/capsule-store-XXXXXX");
    if (!mkdtemp(f->directory)) return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->directory);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    f->now = 1700000000000;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-lock", "-journal"};
    char file[160];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(file, sizeof file, "%s%s", f->path, suffixes[i]);
        unlink(file);
    }
    rmdir(f->directory);
    free(f);
    return 0;
}

static int64_t fixture_clock(void *context) {
    return ((fixture *)context)->now;
}

static store *open_store(fixture *f) {
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    int result = store_open(f->url, &s, error);
    if (result != CAP_OK) fail_msg("store_open: %d %s", result, error);
    store_set_clock(s, fixture_clock, f);
    return s;
}

/* Deterministic page contents: a seed names the page. */
static void fill_page(uint8_t *page, uint32_t seed, int compressible) {
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < PAGE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t word = compressible ? (i < 64 ? x : 0) : x;
        memcpy(page + i, &word, 8);
    }
}

static int count_calls_with_status(store *s, const char *session, const char *status) {
    store_call *calls;
    size_t count;
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_call_list(s, session, 0, 0, &calls, &count, error), CAP_OK);
    int matching = 0;
    for (size_t i = 0; i < count; i++) matching += strcmp(calls[i].status, status) == 0;
    store_call_list_free(calls, count);
    return matching;
}

/* Runs SQL on the store's file directly, as a damaged disk or a hand would. */
static void raw_sql(fixture *f, const char *sql) {
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    char *message = NULL;
    if (sqlite3_exec(database, sql, NULL, NULL, &message) != SQLITE_OK)
        fail_msg("%s: %s", sql, message);
    sqlite3_close(database);
}

/* --- opening --------------------------------------------------------------------- */

static void test_open_creates_current_schema(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_schema_version(s), 2);
    assert_int_equal(store_recovered_calls(s), 0);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_bytes, 0);
    assert_int_equal(usage.sessions, 0);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
    /* The settings the guarantees rest on. */
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    sqlite3_stmt *statement;
    assert_int_equal(sqlite3_prepare_v2(database, "PRAGMA journal_mode", -1, &statement, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(statement), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(statement, 0), "wal");
    sqlite3_finalize(statement);
    sqlite3_close(database);
}

static void test_open_refuses_bad_urls_and_a_second_owner(void **state) {
    fixture *f = *state;
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open("mysql://localhost/x", &s, error), CAP_EINVAL);
    assert_non_null(strstr(error, "unknown kind of store"));
    assert_null(s);
    assert_int_equal(store_open("sqlite:", &s, error), CAP_EINVAL);
    char missing_directory[200];
    snprintf(missing_directory, sizeof missing_directory, "sqlite:%s/no/such/dir/x.db",
             f->directory);
    assert_int_equal(store_open(missing_directory, &s, error), CAP_EIO);

    store *first = open_store(f);
    assert_int_equal(store_open(f->url, &s, error), STORE_EBUSY);
    assert_non_null(strstr(error, "in use"));
    store_close(first);
    store *again = open_store(f);
    store_close(again);

    /* Another process is refused too. */
    store *owner = open_store(f);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        store *other = NULL;
        _exit(store_open(f->url, &other, NULL) == STORE_EBUSY ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    store_close(owner);
}

/* The owner's lock dies with the owner, even when a child it forked (the
 * server's zygote, say) lives on with its descriptors. */
static void test_lock_is_not_inherited_by_children(void **state) {
    fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t server = fork();
    assert_true(server >= 0);
    if (server == 0) {
        store *s = NULL;
        if (store_open(f->url, &s, NULL) != CAP_OK) _exit(1);
        pid_t zygote = fork();
        if (zygote == 0) {
            for (;;) pause(); /* holds every inherited descriptor */
        }
        if (write(fds[1], &zygote, sizeof zygote) != sizeof zygote) _exit(2);
        for (;;) pause();
    }
    close(fds[1]);
    pid_t zygote = 0;
    assert_int_equal(read(fds[0], &zygote, sizeof zygote), (ssize_t)sizeof zygote);
    close(fds[0]);
    store *s = NULL;
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_open(f->url, &s, error), STORE_EBUSY); /* the server owns it */
    kill(server, SIGKILL);
    int status;
    assert_int_equal(waitpid(server, &status, 0), server);
    int result = store_open(f->url, &s, error);
    kill(zygote, SIGKILL); /* reparented to init, which reaps it */
    assert_int_equal(result, CAP_OK);
    store_close(s);
}

static void test_garbage_file_is_a_clear_error(void **state) {
    fixture *f = *state;
    uint8_t garbage[8192];
    fill_page(garbage, 7, 0);
    fill_page(garbage + PAGE, 8, 0);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, garbage, sizeof garbage), (ssize_t)sizeof garbage);
    close(fd);
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open(f->url, &s, error), STORE_ECORRUPT);
    assert_null(s);
    assert_non_null(strstr(error, "not a database"));
}

/* A store with enough rows to span many database pages, cut in half. */
static void test_truncated_file_is_a_clear_error(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t pages[16][PAGE];
    store_page list[16];
    for (int i = 0; i < 16; i++) {
        fill_page(pages[i], (uint32_t)i, 0);
        list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
    }
    store_snapshot_data data = {
        .build_id = "b1", .manifest = "{}", .page_size = PAGE, .pages = list, .page_count = 16};
    char id[16];
    for (int n = 0; n < 40; n++) {
        snprintf(id, sizeof id, "s%d", n);
        assert_int_equal(store_session_create(s, id, "", 0, error), CAP_OK);
        fill_page(pages[0], (uint32_t)(100 + n), 0);
        assert_int_equal(store_snapshot_write(s, id, &data, NULL, error), CAP_OK);
    }
    store_close(s); /* the last close checkpoints the WAL into the file */
    struct stat info;
    assert_int_equal(stat(f->path, &info), 0);
    assert_true(info.st_size > 32 * PAGE);
    assert_int_equal(truncate(f->path, info.st_size / 2), 0);

    int result = store_open(f->url, &s, error);
    if (result == CAP_OK) {
        /* Opening reads only the first pages; the full check sees the rest. */
        result = store_check(s, error);
        store_close(s);
    }
    print_message("truncated store: %s\n", error);
    assert_int_equal(result, STORE_ECORRUPT);
    assert_true(strstr(error, "corrupt") || strstr(error, "malformed") ||
                strstr(error, "integrity"));
}

/* Schema version 1 as the first release wrote it, typed here independently
 * of src/store/sqlite.c, with a session and a finished call. */
static const char schema_v1[] =
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);"
    "INSERT INTO schema_version VALUES (1, 1600000000000);"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, principal TEXT NOT NULL, status TEXT NOT NULL"
    " CHECK (status IN ('live', 'parked', 'expired')), created_at INTEGER NOT NULL,"
    " last_used_at INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, expires_at INTEGER,"
    " latest_snapshot INTEGER REFERENCES snapshots(id) ON DELETE SET NULL,"
    " call_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX sessions_parked ON sessions(last_used_at) WHERE status = 'parked';"
    "CREATE INDEX sessions_latest_snapshot ON sessions(latest_snapshot);"
    "CREATE TABLE calls (session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
    " seq INTEGER NOT NULL, idempotency_key TEXT, status TEXT NOT NULL, request_hash BLOB,"
    " result TEXT, started_at INTEGER NOT NULL, finished_at INTEGER, PRIMARY KEY (session, seq),"
    " UNIQUE (session, idempotency_key));"
    "CREATE INDEX calls_running ON calls(session) WHERE status = 'running';"
    "CREATE TABLE blobs (hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    " raw_size INTEGER NOT NULL,"
    " stored_size INTEGER NOT NULL, data BLOB NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE snapshots (id INTEGER PRIMARY KEY, session TEXT NOT NULL REFERENCES sessions(id)"
    " ON DELETE CASCADE, call_seq INTEGER, build_id TEXT NOT NULL, page_size INTEGER NOT NULL,"
    " manifest TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE INDEX snapshots_session ON snapshots(session);"
    "CREATE TABLE snapshot_pages ("
    " snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    " page_index INTEGER NOT NULL, hash BLOB NOT NULL REFERENCES blobs(hash),"
    " PRIMARY KEY (snapshot, page_index)) WITHOUT ROWID;"
    "CREATE INDEX snapshot_pages_hash ON snapshot_pages(hash);"
    "INSERT INTO sessions VALUES ('old', 'alice', 'parked', 1, 2, 0, NULL, NULL, 1);"
    "INSERT INTO calls VALUES ('old', 1, 'key-1', 'success', NULL, '{\"v\":1}', 1, 2);";

/* A database at schema version 1, written here by hand (not by the code
 * under test), with a session, a call and a blob: opening migrates it to 2,
 * the usage counter is computed from the blob, and every row is readable. */
static void test_migration_from_version_1(void **state) {
    fixture *f = *state;
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    char *message = NULL;
    if (sqlite3_exec(database, schema_v1, NULL, NULL, &message) != SQLITE_OK)
        fail_msg("v1: %s", message);
    uint8_t page[PAGE], hash[STORE_HASH_SIZE], compressed[PAGE + 512];
    fill_page(page, 3, 1);
    store_hash(page, PAGE, hash);
    size_t stored = ZSTD_compress(compressed, sizeof compressed, page, PAGE, 3);
    assert_false(ZSTD_isError(stored));
    sqlite3_stmt *insert;
    assert_int_equal(
        sqlite3_prepare_v2(database, "INSERT INTO blobs VALUES (?, ?, ?, ?, 5)", -1, &insert, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(insert, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int(insert, 2, PAGE);
    sqlite3_bind_int64(insert, 3, (sqlite3_int64)stored);
    sqlite3_bind_blob(insert, 4, compressed, (int)stored, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(insert), SQLITE_DONE);
    sqlite3_finalize(insert);
    sqlite3_close(database);

    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_schema_version(s), 2);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 1);
    assert_int_equal(usage.blob_bytes, stored);
    assert_int_equal(usage.raw_bytes, PAGE);
    store_session session;
    assert_int_equal(store_session_get(s, "old", &session, error), CAP_OK);
    assert_string_equal(session.principal, "alice");
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    store_call call;
    assert_int_equal(store_call_get(s, "old", 1, &call, error), CAP_OK);
    assert_string_equal(call.result, "{\"v\":1}");
    store_call_clear(&call);
    void *bytes;
    size_t size;
    assert_int_equal(store_blob_get(s, hash, &bytes, &size, error), CAP_OK);
    assert_int_equal(size, PAGE);
    assert_memory_equal(bytes, page, PAGE);
    free(bytes);
    /* The next call continues the numbering, and the migrated store works. */
    int replayed;
    assert_int_equal(store_call_begin(s, "old", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 2);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);

    /* Version rows: 1 by hand, 2 by the migration. */
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    sqlite3_stmt *statement;
    sqlite3_prepare_v2(database, "SELECT group_concat(version) FROM schema_version", -1, &statement,
                       NULL);
    assert_int_equal(sqlite3_step(statement), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(statement, 0), "1,2");
    sqlite3_finalize(statement);
    sqlite3_close(database);
}

/* A migration that fails leaves the database at its version: the
 * migration's statements and its version row are one transaction. */
static void test_failed_migration_changes_nothing(void **state) {
    fixture *f = *state;
    raw_sql(f, schema_v1);
    raw_sql(f, "CREATE TABLE usage (stray INTEGER)"); /* migration 2 creates `usage` */
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open(f->url, &s, error), CAP_EIO);
    assert_null(s);
    assert_non_null(strstr(error, "migration to version 2"));
    assert_non_null(strstr(error, "already exists"));
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    sqlite3_stmt *statement;
    sqlite3_prepare_v2(database,
                       "SELECT MAX(version), (SELECT COUNT(*) FROM sessions) FROM schema_version",
                       -1, &statement, NULL);
    assert_int_equal(sqlite3_step(statement), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(statement, 0), 1);
    assert_int_equal(sqlite3_column_int(statement, 1), 1);
    sqlite3_finalize(statement);
    sqlite3_close(database);
    /* Repaired by hand, it migrates. */
    raw_sql(f, "DROP TABLE usage");
    s = open_store(f);
    assert_int_equal(store_schema_version(s), 2);
    store_close(s);
}

static void test_newer_schema_is_refused(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    store_close(s);
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(database, "INSERT INTO schema_version VALUES (99, 0)", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(database);
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open(f->url, &s, error), STORE_EVERSION);
    assert_non_null(strstr(error, "version 99"));
}

/* --- sessions -------------------------------------------------------------------- */

static void test_sessions(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    char long_id[200];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(store_session_create(s, "", "", 0, error), CAP_EINVAL);
    assert_int_equal(store_session_create(s, long_id, "", 0, error), CAP_EINVAL);
    assert_int_equal(store_session_create(s, NULL, "", 0, error), CAP_EINVAL);
    assert_int_equal(store_session_create(s, "a", "", -1, error), CAP_EINVAL);
    assert_int_equal(store_session_create(s, "a", "alice", 60000, error), CAP_OK);
    assert_int_equal(store_session_create(s, "a", "bob", 0, error), STORE_EEXIST);
    assert_non_null(strstr(error, "exists"));

    store_session session;
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_string_equal(session.id, "a");
    assert_string_equal(session.principal, "alice");
    assert_int_equal(session.status, STORE_SESSION_LIVE);
    assert_int_equal(session.created_at, f->now);
    assert_int_equal(session.expires_at, f->now + 60000);
    assert_int_equal(session.latest_snapshot, 0);
    assert_int_equal(store_session_get(s, "b", &session, error), STORE_ENOTFOUND);
    assert_non_null(strstr(error, "no session 'b'"));

    f->now += 5000;
    assert_int_equal(store_session_touch(s, "a", error), CAP_OK);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.last_used_at, f->now);
    assert_int_equal(session.expires_at, f->now + 60000);
    assert_int_equal(store_session_touch(s, "b", error), STORE_ENOTFOUND);

    assert_int_equal(store_session_set_status(s, "a", STORE_SESSION_PARKED, error), CAP_OK);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    assert_int_equal(store_session_set_status(s, "a", STORE_SESSION_EXPIRED, error), CAP_EINVAL);
    assert_int_equal(store_session_set_status(s, "b", STORE_SESSION_LIVE, error), STORE_ENOTFOUND);

    int replayed;
    store_call call;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_session_delete(s, "a", error), CAP_OK);
    assert_int_equal(store_session_get(s, "a", &session, error), STORE_ENOTFOUND);
    assert_int_equal(store_call_get(s, "a", call.seq, &call, error), STORE_ENOTFOUND);
    assert_int_equal(store_session_delete(s, "a", error), STORE_ENOTFOUND);
    /* The id is free again. */
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

static void test_expiry(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t page[PAGE];
    fill_page(page, 1, 0);
    store_page pages[] = {{.index = 0, .data = page}};
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = pages, .page_count = 1};
    assert_int_equal(store_session_create(s, "short", "", 1000, error), CAP_OK);
    assert_int_equal(store_snapshot_write(s, "short", &data, NULL, error), CAP_OK);
    assert_int_equal(store_session_set_status(s, "short", STORE_SESSION_PARKED, error), CAP_OK);
    assert_int_equal(store_session_create(s, "live", "", 1000, error), CAP_OK);
    assert_int_equal(store_session_create(s, "forever", "", 0, error), CAP_OK);
    assert_int_equal(store_session_set_status(s, "forever", STORE_SESSION_PARKED, error), CAP_OK);

    int64_t expired = -1;
    assert_int_equal(store_expire(s, &expired, error), CAP_OK);
    assert_int_equal(expired, 0);
    f->now += 1001;
    assert_int_equal(store_expire(s, &expired, error), CAP_OK);
    assert_int_equal(expired, 1); /* not the live one, not the one without a ttl */
    store_session session;
    assert_int_equal(store_session_get(s, "short", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_EXPIRED);
    assert_int_equal(session.latest_snapshot, 0);
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(s, "short", &snapshot, error), STORE_ENOTFOUND);
    assert_int_equal(store_session_touch(s, "short", error), STORE_ECONFLICT);
    assert_non_null(strstr(error, "expired"));
    assert_int_equal(store_session_set_status(s, "short", STORE_SESSION_LIVE, error),
                     STORE_ECONFLICT);
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(s, "short", NULL, NULL, &call, &replayed, error),
                     STORE_ECONFLICT);
    assert_int_equal(store_snapshot_write(s, "short", &data, NULL, error), STORE_ECONFLICT);
    assert_int_equal(store_session_get(s, "live", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_LIVE);
    /* The expired session's page is garbage now. */
    uint64_t freed_blobs = 0;
    assert_int_equal(store_gc(s, &freed_blobs, NULL, error), CAP_OK);
    assert_int_equal(freed_blobs, 1);
    store_close(s);
}

/* --- calls ----------------------------------------------------------------------- */

static void test_calls(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    store_call call;
    int replayed = -1;
    assert_int_equal(store_call_begin(s, "none", NULL, NULL, &call, &replayed, error),
                     STORE_ENOTFOUND);
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 1);
    assert_int_equal(replayed, 0);
    assert_string_equal(call.status, "running");
    assert_int_equal(call.started_at, f->now);
    f->now += 10;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 2);

    assert_int_equal(store_call_finish(s, "a", 1, "running", "{}", NULL, NULL, error), CAP_EINVAL);
    assert_int_equal(store_call_finish(s, "a", 1, "interrupted", "{}", NULL, NULL, error),
                     CAP_EINVAL);
    assert_int_equal(store_call_finish(s, "a", 1, "", "{}", NULL, NULL, error), CAP_EINVAL);
    assert_int_equal(store_call_finish(s, "a", 9, "success", "{}", NULL, NULL, error),
                     STORE_ENOTFOUND);
    assert_int_equal(store_call_finish(s, "a", 1, "success", "{\"out\":\"1\"}", NULL, NULL, error),
                     CAP_OK);
    assert_int_equal(store_call_finish(s, "a", 1, "success", "{}", NULL, NULL, error),
                     STORE_ECONFLICT);
    assert_non_null(strstr(error, "not running"));
    f->now += 10;
    assert_int_equal(
        store_call_finish(s, "a", 2, "run-error", "{\"error\":true}", NULL, NULL, error), CAP_OK);

    assert_int_equal(store_call_get(s, "a", 1, &call, error), CAP_OK);
    assert_string_equal(call.status, "success");
    assert_string_equal(call.result, "{\"out\":\"1\"}");
    assert_int_equal(call.finished_at, f->now - 10);
    store_call_clear(&call);
    assert_int_equal(store_call_get(s, "a", 3, &call, error), STORE_ENOTFOUND);

    store_call *calls;
    size_t count;
    assert_int_equal(store_call_list(s, "a", 0, 0, &calls, &count, error), CAP_OK);
    assert_int_equal(count, 2);
    assert_int_equal(calls[0].seq, 1);
    assert_string_equal(calls[1].status, "run-error");
    assert_string_equal(calls[1].result, "{\"error\":true}");
    store_call_list_free(calls, count);
    assert_int_equal(store_call_list(s, "a", 1, 0, &calls, &count, error), CAP_OK);
    assert_int_equal(count, 1);
    assert_int_equal(calls[0].seq, 2);
    store_call_list_free(calls, count);
    assert_int_equal(store_call_list(s, "a", 0, 1, &calls, &count, error), CAP_OK);
    assert_int_equal(count, 1);
    store_call_list_free(calls, count);
    assert_int_equal(store_call_list(s, "none", 0, 0, &calls, &count, error), STORE_ENOTFOUND);
    store_session session;
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.call_count, 2);
    store_close(s);
}

static void test_idempotency(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t request[STORE_HASH_SIZE], other[STORE_HASH_SIZE];
    store_hash("print(1)", 8, request);
    store_hash("print(2)", 8, other);
    store_call call;
    int replayed;
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    assert_int_equal(store_call_begin(s, "a", "k1", request, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 1);
    assert_string_equal(call.idempotency_key, "k1");
    /* A retry while the first is running runs nothing. */
    assert_int_equal(store_call_begin(s, "a", "k1", request, &call, &replayed, error), STORE_EBUSY);
    assert_int_equal(
        store_call_finish(s, "a", 1, "success", "{\"stdout\":\"1\\n\"}", NULL, NULL, error),
        CAP_OK);
    /* A retry after: the stored result, no new call. */
    assert_int_equal(store_call_begin(s, "a", "k1", request, &call, &replayed, error), CAP_OK);
    assert_int_equal(replayed, 1);
    assert_int_equal(call.seq, 1);
    assert_string_equal(call.status, "success");
    assert_string_equal(call.result, "{\"stdout\":\"1\\n\"}");
    store_call_clear(&call);
    /* The same key for another request is refused. */
    assert_int_equal(store_call_begin(s, "a", "k1", other, &call, &replayed, error),
                     STORE_ECONFLICT);
    assert_non_null(strstr(error, "another request"));
    assert_int_equal(store_call_begin(s, "a", "k1", NULL, &call, &replayed, error),
                     STORE_ECONFLICT);
    store_session session;
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.call_count, 1);
    /* Keys are per session. */
    assert_int_equal(store_session_create(s, "b", "", 0, error), CAP_OK);
    assert_int_equal(store_call_begin(s, "b", "k1", other, &call, &replayed, error), CAP_OK);
    assert_int_equal(replayed, 0);

    /* A call left running by a crash is interrupted at the next open, and
     * a retry with its key runs as a new call. */
    assert_int_equal(store_call_begin(s, "a", "k2", request, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 2);
    store_close(s);
    s = open_store(f);
    assert_int_equal(store_recovered_calls(s), 2); /* a's k2 and b's k1 */
    assert_int_equal(store_call_get(s, "a", 2, &call, error), CAP_OK);
    assert_string_equal(call.status, "interrupted");
    assert_null(call.result);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    assert_int_equal(store_call_finish(s, "a", 2, "success", "{}", NULL, NULL, error),
                     STORE_ECONFLICT);
    assert_int_equal(store_call_begin(s, "a", "k2", request, &call, &replayed, error), CAP_OK);
    assert_int_equal(replayed, 0);
    assert_int_equal(call.seq, 3);
    assert_int_equal(store_call_get(s, "a", 2, &call, error), CAP_OK);
    assert_string_equal(call.idempotency_key, "");
    assert_string_equal(call.status, "interrupted");
    store_close(s);
}

/* --- blobs ----------------------------------------------------------------------- */

static void test_blobs(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t page[PAGE], hash[STORE_HASH_SIZE], again[STORE_HASH_SIZE], expected[STORE_HASH_SIZE];
    fill_page(page, 1, 1);
    store_hash(page, PAGE, expected);
    assert_int_equal(store_blob_put(s, page, PAGE, hash, error), CAP_OK);
    assert_memory_equal(hash, expected, STORE_HASH_SIZE);
    assert_int_equal(store_blob_put(s, page, PAGE, again, error), CAP_OK);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 1);
    assert_int_equal(usage.raw_bytes, PAGE);
    assert_true(usage.blob_bytes > 0 && usage.blob_bytes < PAGE / 4); /* compressed */
    void *bytes;
    size_t size;
    assert_int_equal(store_blob_get(s, hash, &bytes, &size, error), CAP_OK);
    assert_int_equal(size, PAGE);
    assert_memory_equal(bytes, page, PAGE);
    free(bytes);
    assert_int_equal(store_blob_put(s, "", 0, hash, error), CAP_OK);
    assert_int_equal(store_blob_get(s, hash, &bytes, &size, error), CAP_OK);
    assert_int_equal(size, 0);
    free(bytes);
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 2);
    uint8_t absent[STORE_HASH_SIZE] = {1, 2, 3};
    assert_int_equal(store_blob_get(s, absent, &bytes, &size, error), STORE_ENOTFOUND);
    assert_null(bytes);
    assert_int_equal(store_blob_put(s, page, STORE_BLOB_MAX + 1, hash, error), CAP_EINVAL);
    assert_int_equal(store_blob_put(s, NULL, 5, hash, error), CAP_EINVAL);
    /* Unreferenced: the next collection takes both. */
    uint64_t freed_blobs = 0, freed_bytes = 0;
    assert_int_equal(store_gc(s, &freed_blobs, &freed_bytes, error), CAP_OK);
    assert_int_equal(freed_blobs, 2);
    assert_int_equal(freed_bytes, usage.blob_bytes);
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 0);
    assert_int_equal(usage.blob_bytes, 0);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

static void flip_blob_byte(fixture *f, const uint8_t hash[STORE_HASH_SIZE], int from_end) {
    sqlite3 *database;
    assert_int_equal(sqlite3_open(f->path, &database), SQLITE_OK);
    sqlite3_stmt *statement;
    assert_int_equal(
        sqlite3_prepare_v2(database, "SELECT data FROM blobs WHERE hash = ?", -1, &statement, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(statement, 1, hash, STORE_HASH_SIZE, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(statement), SQLITE_ROW);
    int size = sqlite3_column_bytes(statement, 0);
    uint8_t *data = malloc((size_t)size);
    memcpy(data, sqlite3_column_blob(statement, 0), (size_t)size);
    sqlite3_finalize(statement);
    data[size - 1 - from_end] ^= 0x40;
    assert_int_equal(sqlite3_prepare_v2(database, "UPDATE blobs SET data = ? WHERE hash = ?", -1,
                                        &statement, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(statement, 1, data, size, SQLITE_STATIC);
    sqlite3_bind_blob(statement, 2, hash, STORE_HASH_SIZE, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(statement), SQLITE_DONE);
    sqlite3_finalize(statement);
    sqlite3_close(database);
    free(data);
}

static int count_pages(void *context, uint32_t index, const void *bytes, size_t size) {
    (void)index, (void)bytes, (void)size;
    ++*(int *)context;
    return 0;
}

static void test_corrupted_blob_is_a_clear_error(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t random_page[PAGE], sparse_page[PAGE];
    fill_page(random_page, 11, 0); /* stored raw inside the frame: a flip changes a byte */
    fill_page(sparse_page, 12, 1); /* mostly a match: a flip breaks the frame */
    store_page pages[] = {{.index = 0, .data = random_page}, {.index = 1, .data = sparse_page}};
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = pages, .page_count = 2};
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    int64_t snapshot_id;
    assert_int_equal(store_snapshot_write(s, "a", &data, &snapshot_id, error), CAP_OK);
    store_close(s);
    uint8_t random_hash[STORE_HASH_SIZE], sparse_hash[STORE_HASH_SIZE];
    store_hash(random_page, PAGE, random_hash);
    store_hash(sparse_page, PAGE, sparse_hash);
    flip_blob_byte(f, random_hash, 100);
    flip_blob_byte(f, sparse_hash, 0);

    s = open_store(f);
    void *bytes = NULL;
    size_t size;
    assert_int_equal(store_blob_get(s, random_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_null(bytes);
    assert_non_null(strstr(error, "do not match its hash"));
    assert_int_equal(store_blob_get(s, sparse_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_null(bytes);
    assert_non_null(strstr(error, "blob"));
    int pages_seen = 0;
    assert_int_equal(store_snapshot_read_pages(s, snapshot_id, count_pages, &pages_seen, error),
                     STORE_ECORRUPT);
    assert_int_equal(pages_seen, 0);
    /* The store goes on working. */
    uint8_t fine[PAGE], hash[STORE_HASH_SIZE];
    fill_page(fine, 13, 0);
    assert_int_equal(store_blob_put(s, fine, PAGE, hash, error), CAP_OK);
    assert_int_equal(store_blob_get(s, hash, &bytes, &size, error), CAP_OK);
    free(bytes);
    assert_int_equal(store_check(s, error), CAP_OK); /* the database itself is sound */
    store_close(s);

    /* A raw size that lies (too large to allocate, or not the frame's),
     * and a page whose blob row is gone (foreign keys off, by hand). */
    uint8_t lying[PAGE], lying_hash[STORE_HASH_SIZE];
    fill_page(lying, 14, 1);
    s = open_store(f);
    assert_int_equal(store_blob_put(s, lying, PAGE, lying_hash, error), CAP_OK);
    store_close(s);
    raw_sql(f, "UPDATE blobs SET raw_size = 1099511627776 WHERE raw_size = 4096 AND hash = "
               "(SELECT hash FROM blobs ORDER BY created_at DESC, rowid DESC LIMIT 1)");
    s = open_store(f);
    assert_int_equal(store_blob_get(s, lying_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_non_null(strstr(error, "malformed row"));
    store_close(s);
    raw_sql(f, "UPDATE blobs SET raw_size = 4095 WHERE raw_size = 1099511627776");
    s = open_store(f);
    assert_int_equal(store_blob_get(s, lying_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_non_null(strstr(error, "not a zstd frame of 4095 bytes"));
    store_close(s);
    raw_sql(
        f,
        "PRAGMA foreign_keys = OFF;"
        " DELETE FROM blobs WHERE hash IN (SELECT hash FROM snapshot_pages)");
    s = open_store(f);
    pages_seen = 0;
    assert_int_equal(store_snapshot_read_pages(s, snapshot_id, count_pages, &pages_seen, error),
                     STORE_ECORRUPT);
    assert_non_null(strstr(error, "its blob is missing"));
    assert_int_equal(pages_seen, 0);
    assert_int_equal(store_check(s, error), STORE_ECORRUPT); /* usage no longer matches */
    store_close(s);
}

/* --- snapshots ------------------------------------------------------------------- */

typedef struct page_copy {
    uint8_t (*pages)[PAGE];
    uint32_t indices[64];
    int count;
} page_copy;

static int copy_page(void *context, uint32_t index, const void *bytes, size_t size) {
    page_copy *copy = context;
    assert_int_equal(size, PAGE);
    copy->indices[copy->count] = index;
    memcpy(copy->pages[copy->count++], bytes, PAGE);
    return 0;
}

static int stop_at_second(void *context, uint32_t index, const void *bytes, size_t size) {
    (void)index, (void)bytes, (void)size;
    return ++*(int *)context == 2 ? 42 : 0;
}

static void test_snapshot_committed_with_the_call(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t pages[4][PAGE];
    for (int i = 0; i < 4; i++) fill_page(pages[i], (uint32_t)(20 + i), i % 2);
    store_page first[] = {{.index = 0, .data = pages[0]},
                          {.index = 7, .data = pages[1]},
                          {.index = 9, .data = pages[2]}};
    store_snapshot_data data = {.build_id = "build-1",
                                .manifest = "{\"globals\":[1]}",
                                .page_size = PAGE,
                                .pages = first,
                                .page_count = 3};
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    int64_t id1 = 0;
    assert_int_equal(store_call_finish(s, "a", 1, "success", "{\"r\":1}", &data, &id1, error),
                     CAP_OK);
    assert_true(id1 > 0);

    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(s, "a", &snapshot, error), CAP_OK);
    assert_int_equal(snapshot.id, id1);
    assert_int_equal(snapshot.call_seq, 1);
    assert_string_equal(snapshot.build_id, "build-1");
    assert_string_equal(snapshot.manifest, "{\"globals\":[1]}");
    assert_int_equal(snapshot.page_size, PAGE);
    assert_int_equal(snapshot.page_count, 3);
    assert_int_equal(snapshot.pages[1].index, 7);
    uint8_t hash[STORE_HASH_SIZE];
    store_hash(pages[1], PAGE, hash);
    assert_memory_equal(snapshot.pages[1].hash, hash, STORE_HASH_SIZE);
    store_snapshot_clear(&snapshot);
    uint8_t copies[4][PAGE];
    page_copy copy = {.pages = copies};
    assert_int_equal(store_snapshot_read_pages(s, id1, copy_page, &copy, error), CAP_OK);
    assert_int_equal(copy.count, 3);
    assert_int_equal(copy.indices[2], 9);
    assert_memory_equal(copies[2], pages[2], PAGE);
    int seen = 0;
    assert_int_equal(store_snapshot_read_pages(s, id1, stop_at_second, &seen, error), 42);
    assert_int_equal(store_snapshot_read_pages(s, 999, count_pages, &seen, error), STORE_ENOTFOUND);

    /* The next snapshot: two pages by hash (unchanged), one new: the older
     * snapshot is dropped, and its page 9 becomes garbage. */
    uint8_t hash0[STORE_HASH_SIZE];
    store_hash(pages[0], PAGE, hash0);
    store_page second[] = {
        {.index = 0, .hash = hash0}, {.index = 7, .hash = hash}, {.index = 8, .data = pages[3]}};
    data.pages = second;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    int64_t id2 = 0;
    assert_int_equal(store_call_finish(s, "a", 2, "success", "{\"r\":2}", &data, &id2, error),
                     CAP_OK);
    assert_true(id2 > id1);
    assert_int_equal(store_snapshot_read_pages(s, id1, count_pages, &seen, error), STORE_ENOTFOUND);
    store_session session;
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.latest_snapshot, id2);
    uint64_t freed = 0;
    assert_int_equal(store_gc(s, &freed, NULL, error), CAP_OK);
    assert_int_equal(freed, 1);
    copy.count = 0;
    assert_int_equal(store_snapshot_read_pages(s, id2, copy_page, &copy, error), CAP_OK);
    assert_int_equal(copy.count, 3);
    assert_memory_equal(copies[0], pages[0], PAGE);
    assert_memory_equal(copies[2], pages[3], PAGE);

    /* A page naming a blob the store lacks: nothing is written, the call
     * is still running (the result and the snapshot go together). */
    uint8_t unknown[STORE_HASH_SIZE] = {9};
    store_page bad[] = {{.index = 0, .data = pages[0]}, {.index = 1, .hash = unknown}};
    data.pages = bad;
    data.page_count = 2;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    int64_t id3 = -1;
    assert_int_equal(store_call_finish(s, "a", 3, "success", "{}", &data, &id3, error),
                     STORE_ENOTFOUND);
    assert_int_equal(id3, 0);
    assert_non_null(strstr(error, "not stored"));
    assert_int_equal(store_call_get(s, "a", 3, &call, error), CAP_OK);
    assert_string_equal(call.status, "running");
    store_call_clear(&call);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.latest_snapshot, id2);
    /* Bad snapshot descriptions. */
    store_page unordered[] = {{.index = 5, .data = pages[0]}, {.index = 5, .data = pages[1]}};
    data.pages = unordered;
    assert_int_equal(store_call_finish(s, "a", 3, "success", "{}", &data, NULL, error), CAP_EINVAL);
    data.pages = first;
    data.page_size = 100;
    assert_int_equal(store_call_finish(s, "a", 3, "success", "{}", &data, NULL, error), CAP_EINVAL);
    data.page_size = PAGE;
    data.build_id = "";
    assert_int_equal(store_call_finish(s, "a", 3, "success", "{}", &data, NULL, error), CAP_EINVAL);
    data.build_id = "b";
    assert_int_equal(store_snapshot_write(s, "none", &data, NULL, error), STORE_ENOTFOUND);
    assert_int_equal(store_snapshot_latest(s, "none", &snapshot, error), STORE_ENOTFOUND);
    assert_int_equal(store_session_create(s, "empty", "", 0, error), CAP_OK);
    assert_int_equal(store_snapshot_latest(s, "empty", &snapshot, error), STORE_ENOTFOUND);
    assert_non_null(strstr(error, "no snapshot"));
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

/* The same page in 100 sessions' snapshots is one blob. */
static void test_pages_shared_by_sessions_are_stored_once(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t shared[PAGE], own[PAGE];
    fill_page(shared, 50, 0);
    store_page pages[] = {{.index = 0, .data = shared}, {.index = 1, .data = own}};
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = pages, .page_count = 2};
    char id[16];
    for (int n = 0; n < 100; n++) {
        snprintf(id, sizeof id, "s%d", n);
        fill_page(own, (uint32_t)(1000 + n), 0);
        assert_int_equal(store_session_create(s, id, "", 0, error), CAP_OK);
        assert_int_equal(store_snapshot_write(s, id, &data, NULL, error), CAP_OK);
    }
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 101);
    assert_int_equal(usage.sessions, 100);
    assert_true(usage.blob_bytes < 102 * (PAGE + 64));
    /* Deleting 99 sessions frees their own pages, not the shared one. */
    for (int n = 1; n < 100; n++) {
        snprintf(id, sizeof id, "s%d", n);
        assert_int_equal(store_session_delete(s, id, error), CAP_OK);
    }
    uint64_t freed = 0;
    assert_int_equal(store_gc(s, &freed, NULL, error), CAP_OK);
    assert_int_equal(freed, 99);
    int seen = 0;
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(s, "s0", &snapshot, error), CAP_OK);
    assert_int_equal(store_snapshot_read_pages(s, snapshot.id, count_pages, &seen, error), CAP_OK);
    assert_int_equal(seen, 2);
    store_snapshot_clear(&snapshot);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

static void test_fork(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    uint8_t page[PAGE];
    fill_page(page, 60, 0);
    store_page pages[] = {{.index = 3, .data = page}};
    store_snapshot_data data = {.build_id = "b",
                                .manifest = "{\"m\":1}",
                                .page_size = PAGE,
                                .pages = pages,
                                .page_count = 1};
    assert_int_equal(store_session_create(s, "parent", "alice", 0, error), CAP_OK);
    assert_int_equal(store_session_fork(s, "parent", "child", "", 0, error), STORE_ENOTFOUND);
    assert_int_equal(store_session_fork(s, "nobody", "child", "", 0, error), STORE_ENOTFOUND);
    int64_t parent_snapshot;
    assert_int_equal(store_snapshot_write(s, "parent", &data, &parent_snapshot, error), CAP_OK);
    assert_int_equal(store_session_fork(s, "parent", "child", "bob", 5000, error), CAP_OK);
    assert_int_equal(store_session_fork(s, "parent", "child", "bob", 0, error), STORE_EEXIST);
    assert_int_equal(store_session_fork(s, "parent", "", "bob", 0, error), CAP_EINVAL);

    store_session child;
    assert_int_equal(store_session_get(s, "child", &child, error), CAP_OK);
    assert_int_equal(child.status, STORE_SESSION_PARKED);
    assert_string_equal(child.principal, "bob");
    assert_int_equal(child.call_count, 0);
    assert_true(child.latest_snapshot != parent_snapshot);
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(s, "child", &snapshot, error), CAP_OK);
    assert_string_equal(snapshot.manifest, "{\"m\":1}");
    assert_int_equal(snapshot.call_seq, 0);
    assert_int_equal(snapshot.page_count, 1);
    assert_int_equal(snapshot.pages[0].index, 3);
    int64_t child_snapshot = snapshot.id;
    store_snapshot_clear(&snapshot);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 1); /* shared, not copied */

    /* The fork outlives its parent. */
    assert_int_equal(store_session_delete(s, "parent", error), CAP_OK);
    uint64_t freed = 9;
    assert_int_equal(store_gc(s, &freed, NULL, error), CAP_OK);
    assert_int_equal(freed, 0);
    uint8_t copies[1][PAGE];
    page_copy copy = {.pages = copies};
    assert_int_equal(store_snapshot_read_pages(s, child_snapshot, copy_page, &copy, error), CAP_OK);
    assert_memory_equal(copies[0], page, PAGE);
    store_close(s);
}

/* --- quota ----------------------------------------------------------------------- */

static void test_quota(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t pages[8][PAGE];
    store_page list[8];
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = list, .page_count = 4};
    /* Random pages do not compress: 4 pages are a little over 16 KiB. */
    const char *sessions[] = {"oldest", "older", "current"};
    for (int n = 0; n < 3; n++) {
        for (int i = 0; i < 4; i++) {
            fill_page(pages[i], (uint32_t)(100 * n + i), 0);
            list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
        }
        assert_int_equal(store_session_create(s, sessions[n], "", 0, error), CAP_OK);
        assert_int_equal(store_snapshot_write(s, sessions[n], &data, NULL, error), CAP_OK);
        if (n < 2)
            assert_int_equal(store_session_set_status(s, sessions[n], STORE_SESSION_PARKED, error),
                             CAP_OK);
        f->now += 1000;
    }
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 12);
    store_set_quota(s, 2 * 4 * (PAGE + 64));

    /* The live session's next call brings 4 new pages: the oldest parked
     * session makes room, and no more than needed. */
    for (int i = 0; i < 4; i++) fill_page(pages[i], (uint32_t)(1000 + i), 0);
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(s, "current", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_call_finish(s, "current", call.seq, "success", "{}", &data, NULL, error),
                     CAP_OK);
    store_session session;
    assert_int_equal(store_session_get(s, "oldest", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_EXPIRED);
    assert_int_equal(store_session_get(s, "older", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_true(usage.blob_bytes <= 2 * 4 * (PAGE + 64));
    assert_int_equal(usage.blob_count, 8);

    /* A snapshot larger than the quota by itself: refused whole, the call
     * still running, the other parked session expired in vain is not (the
     * transaction rolled back). */
    store_set_quota(s, 6 * (PAGE + 64));
    for (int i = 0; i < 8; i++) {
        fill_page(pages[i], (uint32_t)(2000 + i), 0);
        list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
    }
    data.page_count = 8;
    assert_int_equal(store_call_begin(s, "current", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_call_finish(s, "current", call.seq, "success", "{}", &data, NULL, error),
                     STORE_EQUOTA);
    assert_non_null(strstr(error, "quota"));
    assert_int_equal(store_call_get(s, "current", call.seq, &call, error), CAP_OK);
    assert_string_equal(call.status, "running");
    store_call_clear(&call);
    assert_int_equal(store_session_get(s, "older", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    store_usage after;
    assert_int_equal(store_get_usage(s, &after, error), CAP_OK);
    assert_int_equal(after.blob_count, usage.blob_count);
    assert_int_equal(after.blob_bytes, usage.blob_bytes);
    /* A lone blob over the quota. */
    uint8_t hash[STORE_HASH_SIZE];
    assert_int_equal(store_blob_put(s, pages[7], PAGE, hash, error), STORE_EQUOTA);
    /* Without a quota the same commit goes through. */
    store_set_quota(s, 0);
    assert_int_equal(store_call_finish(s, "current", call.seq, "success", "{}", &data, NULL, error),
                     CAP_OK);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

/* --- crash ----------------------------------------------------------------------- */

/* 'B': a call begun (committed `running`); 'F': finished (result and
 * snapshot committed). */
typedef struct acknowledgement {
    char kind;
    int64_t seq;
} acknowledgement;

/* The child: commits calls with snapshots for ever, telling the parent each
 * acknowledged step through the pipe. */
static void crash_child(const char *url, int pipe_fd) {
    store *s = NULL;
    char error[CAP_ERROR_SIZE];
    if (store_open(url, &s, error) != CAP_OK) {
        fprintf(stderr, "child: %s\n", error);
        _exit(2);
    }
    int result = store_session_create(s, "crash", "", 0, error);
    if (result != CAP_OK && result != STORE_EEXIST) _exit(3);
    static uint8_t pages[4][PAGE];
    for (int i = 0; i < 3; i++) fill_page(pages[i], (uint32_t)(7000 + i), 1);
    store_page list[4];
    for (int i = 0; i < 4; i++) list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
    store_snapshot_data data = {
        .build_id = "crash", .manifest = "{}", .page_size = PAGE, .pages = list, .page_count = 4};
    for (;;) {
        store_call call;
        int replayed;
        if (store_call_begin(s, "crash", NULL, NULL, &call, &replayed, error) != CAP_OK) _exit(4);
        acknowledgement begun = {'B', call.seq};
        if (write(pipe_fd, &begun, sizeof begun) != sizeof begun) _exit(5);
        struct timespec running = {0, 3 * 1000 * 1000}; /* the code runs */
        nanosleep(&running, NULL);
        fill_page(pages[3], (uint32_t)call.seq, 0); /* a page of its own */
        char result_json[64];
        snprintf(result_json, sizeof result_json, "{\"seq\":%lld}", (long long)call.seq);
        if (store_call_finish(s, "crash", call.seq, "success", result_json, &data, NULL, error) !=
            CAP_OK) {
            fprintf(stderr, "child: %s\n", error);
            _exit(6);
        }
        acknowledgement finished = {'F', call.seq};
        if (write(pipe_fd, &finished, sizeof finished) != sizeof finished) _exit(7);
    }
}

static int check_page_of_call(void *context, uint32_t index, const void *bytes, size_t size) {
    if (index != 3) return 0;
    uint8_t expected[PAGE];
    fill_page(expected, (uint32_t) * (int64_t *)context, 0);
    return size == PAGE && memcmp(bytes, expected, PAGE) == 0 ? 0 : 1;
}

static void test_kill_9_loses_no_acknowledged_commit(void **state) {
    fixture *f = *state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rounds = 10, interrupted_total = 0, finished_total = 0;
    int64_t calls_before = 0; /* calls in the store before this round */
    int64_t *finished = NULL;
    size_t finished_capacity = 0;
    for (int round = 0; round < rounds; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(fds[0]);
            crash_child(f->url, fds[1]);
        }
        close(fds[1]);
        /* Long enough for the child (under ASan) to open and commit some. */
        struct timespec wait = {0, (150 + rand() % 250) * 1000 * 1000L};
        nanosleep(&wait, NULL);
        kill(child, SIGKILL);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        int64_t last_finished = 0, last_begun = 0;
        size_t finished_count = 0;
        acknowledgement ack;
        ssize_t n;
        while ((n = read(fds[0], &ack, sizeof ack)) == (ssize_t)sizeof ack) {
            if (ack.kind == 'F') {
                if (finished_count == finished_capacity) {
                    finished_capacity = finished_capacity ? 2 * finished_capacity : 256;
                    finished = realloc(finished, finished_capacity * sizeof *finished);
                    assert_non_null(finished);
                }
                finished[finished_count++] = ack.seq;
                last_finished = ack.seq;
                finished_total++;
            } else {
                last_begun = ack.seq;
            }
        }
        assert_int_equal(n, 0);
        close(fds[0]);

        store *s = open_store(f);
        char error[CAP_ERROR_SIZE];
        assert_int_equal(store_check(s, error), CAP_OK);
        assert_int_equal(count_calls_with_status(s, "crash", "running"), 0);
        store_call *calls;
        size_t count;
        assert_int_equal(store_call_list(s, "crash", 0, 0, &calls, &count, error), CAP_OK);
        int interrupted_now = 0;
        for (size_t i = 0; i < count; i++) {
            store_call *call = &calls[i];
            if (strcmp(call->status, "success") == 0) {
                char expected[64];
                snprintf(expected, sizeof expected, "{\"seq\":%lld}", (long long)call->seq);
                assert_non_null(call->result);
                assert_string_equal(call->result, expected);
            } else {
                /* Only a call the child had not finished can be interrupted. */
                assert_string_equal(call->status, "interrupted");
                assert_null(call->result);
                interrupted_now += call->seq > calls_before;
            }
        }
        /* Every acknowledged finish is there; a begun call is there too. */
        assert_true((int64_t)count >= last_finished && (int64_t)count >= last_begun);
        for (size_t i = 0; i < finished_count; i++) {
            store_call call;
            assert_int_equal(store_call_get(s, "crash", finished[i], &call, error), CAP_OK);
            assert_string_equal(call.status, "success");
            store_call_clear(&call);
        }
        if (last_begun > last_finished) {
            store_call call;
            assert_int_equal(store_call_get(s, "crash", last_begun, &call, error), CAP_OK);
            assert_true(strcmp(call.status, "interrupted") == 0 ||
                        strcmp(call.status, "success") == 0);
            store_call_clear(&call);
        }
        calls_before = (int64_t)count;
        store_call_list_free(calls, count);
        interrupted_total += interrupted_now;
        assert_int_equal(store_recovered_calls(s), interrupted_now);
        /* The latest snapshot is the last finished call's (or a later one's
         * whose acknowledgement was lost with the child), and it reads back. */
        if (last_finished) {
            store_snapshot snapshot;
            assert_int_equal(store_snapshot_latest(s, "crash", &snapshot, error), CAP_OK);
            assert_true(snapshot.call_seq >= last_finished);
            store_call call; /* never the snapshot of a call that did not finish */
            assert_int_equal(store_call_get(s, "crash", snapshot.call_seq, &call, error), CAP_OK);
            assert_string_equal(call.status, "success");
            store_call_clear(&call);
            int64_t seq = snapshot.call_seq;
            assert_int_equal(
                store_snapshot_read_pages(s, snapshot.id, check_page_of_call, &seq, error), CAP_OK);
            store_snapshot_clear(&snapshot);
        }
        store_close(s);
    }
    free(finished);
    print_message("crash: %d rounds, %d acknowledged calls, %d interrupted\n", rounds,
                  finished_total, interrupted_total);
    assert_true(finished_total > 0);
    assert_true(interrupted_total > 0);
}

/* --- fault injection ------------------------------------------------------------ */

/* The SQLite backend with a countdown: the call that brings it to zero
 * fails with CAP_EIO, as a lost connection or an I/O error would. */
static int fault_countdown = -1; /* < 0: no fault */
static int faults_fired;
static int backend_calls; /* calls that could have failed, faults on or off */

static int fault_now(char *error) {
    backend_calls++;
    if (fault_countdown < 0 || fault_countdown-- > 0) return 0;
    faults_fired++;
    if (error) snprintf(error, CAP_ERROR_SIZE, "injected fault");
    return 1;
}

static int faulty_begin(void *connection, int write, char *error) {
    return fault_now(error) ? CAP_EIO : store_sqlite_backend.begin(connection, write, error);
}

static int faulty_commit(void *connection, char *error) {
    return fault_now(error) ? CAP_EIO : store_sqlite_backend.commit(connection, error);
}

static int faulty_execute(void *connection, const char *sql, const store_value *parameters,
                          int count, store_row_function row, void *context, char *error) {
    if (fault_now(error)) return CAP_EIO;
    return store_sqlite_backend.execute(connection, sql, parameters, count, row, context, error);
}

static int faulty_script(void *connection, const char *sql, char *error) {
    return fault_now(error) ? CAP_EIO : store_sqlite_backend.script(connection, sql, error);
}

static store_backend faulty_backend(void) {
    store_backend backend = store_sqlite_backend;
    backend.begin = faulty_begin;
    backend.commit = faulty_commit;
    backend.execute = faulty_execute;
    backend.script = faulty_script;
    return backend;
}

/* Every session's latest snapshot reads back; the usage counters agree. */
static void assert_store_sound(store *s) {
    char error[CAP_ERROR_SIZE];
    if (store_check(s, error) != CAP_OK) fail_msg("store_check: %s", error);
    const char *sessions[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        store_snapshot snapshot;
        int result = store_snapshot_latest(s, sessions[i], &snapshot, error);
        if (result == STORE_ENOTFOUND) continue;
        assert_int_equal(result, CAP_OK);
        int seen = 0;
        if (store_snapshot_read_pages(s, snapshot.id, count_pages, &seen, error) != CAP_OK)
            fail_msg("session %s: %s", sessions[i], error);
        assert_int_equal((size_t)seen, snapshot.page_count);
        store_snapshot_clear(&snapshot);
    }
}

/* Opening, then a server's day (a call with its snapshot, a fork, a
 * deletion, expiry, collection), with a failure injected at the 1st, 2nd,
 * ... backend call until a run sees none.  After each: the failing
 * operation reported it; with the faults off the store is sound; and the
 * call is either finished with its snapshot the latest, or still running
 * with the previous snapshot the latest, never in between. */
static void test_a_failure_at_any_backend_call_leaves_the_store_sound(void **state) {
    fixture *f = *state;
    store_backend backend = faulty_backend();
    static uint8_t pages[3][PAGE];
    for (int i = 0; i < 3; i++) fill_page(pages[i], (uint32_t)(900 + i), i);
    uint8_t hash0[STORE_HASH_SIZE];
    store_hash(pages[0], PAGE, hash0);
    store_page first[] = {{.index = 0, .data = pages[0]}, {.index = 1, .data = pages[1]}};
    store_page second[] = {{.index = 0, .hash = hash0}, {.index = 1, .data = pages[2]}};
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .page_count = 2};
    char error[CAP_ERROR_SIZE];
    int injected_runs = 0;
    /* How many backend calls opening a new store makes: faults below that
     * number hit the open, the others the day. */
    store *s = NULL;
    backend_calls = 0;
    assert_int_equal(store_open_backend(&backend, f->path, &s, error), CAP_OK);
    store_close(s);
    int open_calls = backend_calls;
    for (int n = 0;; n++) {
        teardown(state);
        setup(state);
        f = *state;
        /* Opening a new store: migrations and recovery. */
        s = NULL;
        fault_countdown = n;
        faults_fired = 0;
        int result = store_open_backend(&backend, f->path, &s, error);
        fault_countdown = -1;
        assert_int_equal(faults_fired, n < open_calls);
        if (n < open_calls) {
            assert_int_equal(result, CAP_EIO);
            assert_null(s);
            s = NULL;
            assert_int_equal(store_open_backend(&backend, f->path, &s, error), CAP_OK);
            assert_int_equal(store_schema_version(s), 2);
            assert_store_sound(s);
            store_close(s);
            injected_runs++;
            continue;
        }
        store_close(s);
        /* The day, on a prepared store. */
        assert_int_equal(store_open_backend(&backend, f->path, &s, error), CAP_OK);
        store_set_clock(s, fixture_clock, f);
        store_call call;
        int replayed;
        data.pages = first;
        assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
        assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
        int64_t first_snapshot;
        assert_int_equal(
            store_call_finish(s, "a", 1, "success", "{}", &data, &first_snapshot, error), CAP_OK);
        assert_int_equal(store_session_create(s, "b", "", 1, error), CAP_OK);
        assert_int_equal(store_snapshot_write(s, "b", &data, NULL, error), CAP_OK);
        assert_int_equal(store_session_set_status(s, "b", STORE_SESSION_PARKED, error), CAP_OK);
        f->now += 10;

        assert_int_equal(result, CAP_OK);
        fault_countdown = n - open_calls; /* counted from here on */
        faults_fired = 0;
        data.pages = second;
        int64_t seq = 0;
        result = store_call_begin(s, "a", "key", NULL, &call, &replayed, error);
        if (result == CAP_OK) {
            seq = call.seq;
            result = store_call_finish(s, "a", seq, "success", "{\"r\":2}", &data, NULL, error);
        }
        if (result == CAP_OK) result = store_session_fork(s, "a", "c", "", 0, error);
        if (result == CAP_OK) result = store_expire(s, NULL, error);
        if (result == CAP_OK) result = store_session_delete(s, "b", error);
        if (result == CAP_OK) result = store_gc(s, NULL, NULL, error);
        int fired = faults_fired;
        fault_countdown = -1;
        if (fired) {
            assert_int_equal(result, CAP_EIO); /* the failure is reported, not swallowed */
            assert_string_equal(error, "injected fault");
        } else {
            assert_int_equal(result, CAP_OK);
        }

        assert_store_sound(s);
        store_session a;
        assert_int_equal(store_session_get(s, "a", &a, error), CAP_OK);
        store_snapshot latest;
        assert_int_equal(store_snapshot_latest(s, "a", &latest, error), CAP_OK);
        if (seq) {
            assert_int_equal(store_call_get(s, "a", seq, &call, error), CAP_OK);
            if (strcmp(call.status, "success") == 0) {
                assert_string_equal(call.result, "{\"r\":2}");
                assert_int_equal(latest.call_seq, seq);
            } else {
                assert_string_equal(call.status, "running");
                assert_null(call.result);
                assert_int_equal(latest.id, first_snapshot);
            }
            store_call_clear(&call);
        } else {
            assert_int_equal(a.call_count, 1);
            assert_int_equal(latest.id, first_snapshot);
        }
        store_snapshot_clear(&latest);
        store_close(s);
        if (!fired) break;
        injected_runs++;
    }
    print_message("fault injection: %d runs with a failure, each at a different backend call\n",
                  injected_runs);
    assert_true(injected_runs > 20);
}

/* --- a full disk ---------------------------------------------------------------- */

/* A child whose files cannot grow past 512 KiB (RLIMIT_FSIZE: write(2) fails
 * with EFBIG, as it fails with ENOSPC on a full disk) commits 64 KiB
 * snapshots until the store refuses; it reports each finished seq, then the
 * refusal's code and message. */
static void full_disk_child(const char *url, int pipe_fd) {
    signal(SIGXFSZ, SIG_IGN);
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    if (store_open(url, &s, error) != CAP_OK ||
        store_session_create(s, "full", "", 0, error) != CAP_OK)
        _exit(2);
    struct rlimit limit = {512 << 10, 512 << 10};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(3);
    static uint8_t pages[16][PAGE];
    store_page list[16];
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = list, .page_count = 16};
    for (uint32_t n = 0;; n++) {
        for (int i = 0; i < 16; i++) {
            fill_page(pages[i], n * 16 + (uint32_t)i, 0);
            list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
        }
        store_call call;
        int replayed;
        int result = store_call_begin(s, "full", NULL, NULL, &call, &replayed, error);
        if (result == CAP_OK)
            result = store_call_finish(s, "full", call.seq, "success", "{}", &data, NULL, error);
        int64_t report[2] = {result, call.seq};
        if (write(pipe_fd, report, sizeof report) != sizeof report) _exit(4);
        if (result != CAP_OK) {
            if (write(pipe_fd, error, CAP_ERROR_SIZE) != CAP_ERROR_SIZE) _exit(5);
            store_close(s);
            _exit(0);
        }
    }
}

static void test_full_disk_is_a_clear_error(void **state) {
    fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        full_disk_child(f->url, fds[1]);
    }
    close(fds[1]);
    int64_t report[2];
    int64_t finished = 0, failure = CAP_OK;
    char message[CAP_ERROR_SIZE] = "";
    while (read(fds[0], report, sizeof report) == sizeof report) {
        if (report[0] == CAP_OK) {
            finished = report[1];
            continue;
        }
        failure = report[0];
        assert_int_equal(read(fds[0], message, sizeof message), (ssize_t)sizeof message);
        break;
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    print_message("full disk after %lld calls: %s\n", (long long)finished, message);
    assert_int_equal(failure, CAP_EIO);
    assert_non_null(strstr(message, f->path));
    assert_true(finished >= 1);

    /* With room again: intact, every acknowledged call there. */
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_check(s, error), CAP_OK);
    assert_int_equal(count_calls_with_status(s, "full", "running"), 0);
    assert_int_equal(count_calls_with_status(s, "full", "success"), finished);
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(s, "full", &snapshot, error), CAP_OK);
    assert_int_equal(snapshot.call_seq, finished);
    int seen = 0;
    assert_int_equal(store_snapshot_read_pages(s, snapshot.id, count_pages, &seen, error), CAP_OK);
    assert_int_equal(seen, 16);
    store_snapshot_clear(&snapshot);
    store_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_current_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_bad_urls_and_a_second_owner, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_is_not_inherited_by_children, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_blob_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_committed_with_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_shared_by_sessions_are_stored_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_9_loses_no_acknowledged_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failure_at_any_backend_call_leaves_the_store_sound,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
