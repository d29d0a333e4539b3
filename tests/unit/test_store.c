/*
 * test_store.c — the durable store (src/store/) against its two backends:
 * real SQLite files in a fresh temporary directory per test, and a real
 * PostgreSQL server (a fresh schema per test), with real processes killed
 * with SIGKILL for the crash test:
 *
 *   make test-store          (starts a throwaway PostgreSQL server, then:)
 *   build/test_store                                 SQLite only
 *   CAPSULE_TEST_POSTGRES=URL CAPSULE_TEST_POSTGRES_DIR=DIR build/test_store
 *                                                    SQLite, then PostgreSQL
 *
 * The tests common to both backends run once per backend; a few are one
 * backend's (SQLite's owner lock and files; PostgreSQL's several nodes,
 * server restarts).  Nothing is mocked: corruption is made by editing the
 * database with the database itself (a flipped byte in a blob row) or by
 * overwriting the file; the PostgreSQL server is restarted with pg_ctl
 * (tests/store/postgres-server.sh restart DIR).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
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
#define BATCH_PAGES 16 /* store.c's BATCH: a commit of this many pages takes its batch statements */

/* The backend the running group tests. */
static enum { SQLITE, POSTGRES } kind = SQLITE;
static const char *postgres_url; /* the server's database (CAPSULE_TEST_POSTGRES) */
static const char *postgres_dir; /* its directory, for restarts (CAPSULE_TEST_POSTGRES_DIR) */

typedef struct fixture {
    char directory[64];
    char path[128];     /* SQLite: the database file */
    char schema[64];    /* PostgreSQL: this test's schema */
    char url[640];      /* the store's URL */
    const char *location; /* the URL without its scheme (store_open_backend) */
    int64_t now; /* the store's clock, when a test sets it */
} fixture;

/* Runs SQL on the database directly, as a damaged disk or a hand would;
 * with `answer`, the first column of the first row as text. */
static void database_sql(const char *url, const char *sql, char *answer, size_t size);

static int setup(void **state) {
    static int tests;
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->directory, sizeof f->directory, "/tmp/capsule-store-XXXXXX");
    if (!mkdtemp(f->directory)) return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->directory);
    if (kind == SQLITE) {
        snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
        f->location = f->url + strlen("sqlite:");
    } else {
        /* A schema of its own: the test's tables are its alone, and
         * dropping the schema removes them. */
        snprintf(f->schema, sizeof f->schema, "test_%d_%d", (int)getpid(), ++tests);
        char sql[200];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", f->schema,
                 f->schema);
        database_sql(postgres_url, sql, NULL, 0);
        snprintf(f->url, sizeof f->url, "%s%coptions=-csearch_path%%3D%s", postgres_url,
                 strchr(postgres_url, '?') ? '&' : '?', f->schema);
        f->location = strstr(f->url, "://") + 3;
    }
    f->now = 1700000000000;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (kind == POSTGRES) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema);
        database_sql(postgres_url, sql, NULL, 0);
    }
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

static void quiet(void *context, const char *message) {
    (void)context, (void)message;
}

static void database_sql(const char *url, const char *sql, char *answer, size_t size) {
    if (answer) answer[0] = '\0';
    if (strncmp(url, "sqlite:", 7) == 0) {
        sqlite3 *database;
        assert_int_equal(sqlite3_open(url + 7, &database), SQLITE_OK);
        if (!answer) {
            char *message = NULL;
            if (sqlite3_exec(database, sql, NULL, NULL, &message) != SQLITE_OK)
                fail_msg("%s: %s", sql, message);
        } else {
            sqlite3_stmt *statement;
            if (sqlite3_prepare_v2(database, sql, -1, &statement, NULL) != SQLITE_OK)
                fail_msg("%s: %s", sql, sqlite3_errmsg(database));
            assert_int_equal(sqlite3_step(statement), SQLITE_ROW);
            const char *text = (const char *)sqlite3_column_text(statement, 0);
            snprintf(answer, size, "%s", text ? text : "");
            sqlite3_finalize(statement);
        }
        sqlite3_close(database);
        return;
    }
    PGconn *database = PQconnectdb(url);
    if (PQstatus(database) != CONNECTION_OK) fail_msg("%s: %s", url, PQerrorMessage(database));
    PQsetNoticeProcessor(database, quiet, NULL); /* DROP SCHEMA's NOTICEs */
    PGresult *result = PQexec(database, sql);
    int status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(result));
    if (answer) {
        assert_true(PQntuples(result) > 0);
        snprintf(answer, size, "%s", PQgetvalue(result, 0, 0));
    }
    PQclear(result);
    PQfinish(database);
}

static void raw_sql(fixture *f, const char *sql) {
    database_sql(f->url, sql, NULL, 0);
}

static void raw_query(fixture *f, const char *sql, char *answer, size_t size) {
    database_sql(f->url, sql, answer, size);
}

/* A hash as an SQL literal of the backend's dialect. */
static const char *hash_literal(const uint8_t hash[STORE_HASH_SIZE]) {
    static char text[2 * STORE_HASH_SIZE + 16];
    size_t at = (size_t)snprintf(text, sizeof text, kind == SQLITE ? "X'" : "'\\x");
    for (int i = 0; i < STORE_HASH_SIZE; i++)
        at += (size_t)snprintf(text + at, sizeof text - at, "%02x", hash[i]);
    snprintf(text + at, sizeof text - at, kind == SQLITE ? "'" : "'::bytea");
    return text;
}

#define SCHEMA_VERSION 7

/* --- opening --------------------------------------------------------------------- */

static void test_open_creates_current_schema(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_schema_version(s), SCHEMA_VERSION);
    assert_int_equal(store_recovered_calls(s), 0);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_bytes, 0);
    assert_int_equal(usage.sessions, 0);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
    char answer[64];
    raw_query(f, "SELECT CAST(COUNT(*) AS TEXT) FROM nodes", answer, sizeof answer);
    assert_string_equal(answer, "1"); /* this handle's node, its lease given up */
    raw_query(f, "SELECT CAST(lease_expires_at AS TEXT) FROM nodes", answer, sizeof answer);
    assert_string_equal(answer, "0");
    if (kind == POSTGRES) {
        /* Blob data, already compressed, is not compressed again. */
        raw_query(f,
                  "SELECT attstorage FROM pg_attribute WHERE attrelid = 'blobs'::regclass"
                  " AND attname = 'data'",
                  answer, sizeof answer);
        assert_string_equal(answer, "e");
        return;
    }
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
    /* A missing directory is made (0700); one under a file cannot be. */
    char missing_directory[200], under_a_file[200], made[200];
    snprintf(missing_directory, sizeof missing_directory, "sqlite:%s/no/such/dir/x.db",
             f->directory);
    assert_int_equal(store_open(missing_directory, &s, error), CAP_OK);
    store_close(s);
    s = NULL;
    snprintf(made, sizeof made, "%s/no/such/dir", f->directory);
    struct stat made_stat;
    assert_int_equal(stat(made, &made_stat), 0);
    assert_int_equal(made_stat.st_mode & 0777, 0700);
    snprintf(under_a_file, sizeof under_a_file, "sqlite:%s/no/such/dir/x.db/y.db",
             f->directory);
    assert_int_equal(store_open(under_a_file, &s, error), CAP_EIO);
    assert_non_null(strstr(error, "cannot create"));
    assert_null(s);
    static const char *const leftovers[] = {"/no/such/dir/x.db", "/no/such/dir/x.db-lock",
                                             "/no/such/dir/x.db-wal", "/no/such/dir/x.db-shm",
                                             "/no/such/dir", "/no/such", "/no"};
    for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s%s", f->directory, leftovers[i]);
        if (i < 4) unlink(path);
        else assert_int_equal(rmdir(path), 0);
    }

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

/* The same in PostgreSQL's types, as postgres.c's first migration made it. */
static const char schema_v1_postgres[] =
    "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);"
    "INSERT INTO schema_version VALUES (1, 1600000000000);"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, principal TEXT NOT NULL, status TEXT NOT NULL"
    " CHECK (status IN ('live', 'parked', 'expired')), created_at BIGINT NOT NULL,"
    " last_used_at BIGINT NOT NULL, ttl_ms BIGINT NOT NULL, expires_at BIGINT,"
    " latest_snapshot BIGINT, call_count BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX sessions_parked ON sessions(last_used_at) WHERE status = 'parked';"
    "CREATE INDEX sessions_latest_snapshot ON sessions(latest_snapshot);"
    "CREATE TABLE calls (session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
    " seq BIGINT NOT NULL, idempotency_key TEXT, status TEXT NOT NULL, request_hash BYTEA,"
    " result TEXT, started_at BIGINT NOT NULL, finished_at BIGINT, PRIMARY KEY (session, seq),"
    " UNIQUE (session, idempotency_key));"
    "CREATE INDEX calls_running ON calls(session) WHERE status = 'running';"
    "CREATE TABLE blobs (hash BYTEA PRIMARY KEY CHECK (length(hash) = 32),"
    " raw_size BIGINT NOT NULL, stored_size BIGINT NOT NULL, data BYTEA NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE snapshots (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, call_seq BIGINT,"
    " build_id TEXT NOT NULL, page_size BIGINT NOT NULL, manifest TEXT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX snapshots_session ON snapshots(session);"
    "CREATE TABLE snapshot_pages ("
    " snapshot BIGINT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    " page_index BIGINT NOT NULL, hash BYTEA NOT NULL REFERENCES blobs(hash),"
    " PRIMARY KEY (snapshot, page_index));"
    "CREATE INDEX snapshot_pages_hash ON snapshot_pages(hash);"
    "ALTER TABLE sessions ADD FOREIGN KEY (latest_snapshot) REFERENCES snapshots(id)"
    " ON DELETE SET NULL;"
    "INSERT INTO sessions VALUES ('old', 'alice', 'parked', 1, 2, 0, NULL, NULL, 1);"
    "INSERT INTO calls VALUES ('old', 1, 'key-1', 'success', NULL, '{\"v\":1}', 1, 2);";

/* Bytes as an SQL literal of the backend's dialect (malloc'd). */
static char *bytes_literal(const uint8_t *bytes, size_t size) {
    char *text = malloc(2 * size + 16);
    size_t at = (size_t)sprintf(text, kind == SQLITE ? "X'" : "'\\x");
    for (size_t i = 0; i < size; i++) at += (size_t)sprintf(text + at, "%02x", bytes[i]);
    sprintf(text + at, kind == SQLITE ? "'" : "'::bytea");
    return text;
}

/* A database at schema version 1, written here by hand (not by the code
 * under test), with a session, a call and a blob: opening migrates it to
 * the current version, the usage counter is computed from the blob, and
 * every row is readable. */
static void test_migration_from_version_1(void **state) {
    fixture *f = *state;
    raw_sql(f, kind == SQLITE ? schema_v1 : schema_v1_postgres);
    uint8_t page[PAGE], hash[STORE_HASH_SIZE], compressed[PAGE + 512];
    fill_page(page, 3, 1);
    store_hash(page, PAGE, hash);
    size_t stored = ZSTD_compress(compressed, sizeof compressed, page, PAGE, 3);
    assert_false(ZSTD_isError(stored));
    char *hash_text = bytes_literal(hash, STORE_HASH_SIZE);
    char *data_text = bytes_literal(compressed, stored);
    char *insert = malloc(strlen(hash_text) + strlen(data_text) + 128);
    sprintf(insert, "INSERT INTO blobs VALUES (%s, %d, %zu, %s, 5)", hash_text, PAGE, stored,
            data_text);
    raw_sql(f, insert);
    free(hash_text), free(data_text), free(insert);

    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(store_schema_version(s), SCHEMA_VERSION);
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

    /* Version rows: 1 by hand, the others by the migrations. */
    char versions[64];
    raw_query(f,
              kind == SQLITE ? "SELECT group_concat(version) FROM schema_version"
                             : "SELECT string_agg(CAST(version AS TEXT), ',' ORDER BY version)"
                               " FROM schema_version",
              versions, sizeof versions);
    assert_string_equal(versions, "1,2,3,4,5,6,7");
}

/* A migration that fails leaves the database at its version: the
 * migration's statements and its version row are one transaction. */
static void test_failed_migration_changes_nothing(void **state) {
    fixture *f = *state;
    raw_sql(f, kind == SQLITE ? schema_v1 : schema_v1_postgres);
    raw_sql(f, "CREATE TABLE usage (stray INTEGER)"); /* migration 2 creates `usage` */
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open(f->url, &s, error), CAP_EIO);
    assert_null(s);
    assert_non_null(strstr(error, "migration to version 2"));
    assert_non_null(strstr(error, "already exists"));
    char answer[64];
    raw_query(f,
              "SELECT CAST(MAX(version) AS TEXT) || ',' ||"
              " CAST((SELECT COUNT(*) FROM sessions) AS TEXT) FROM schema_version",
              answer, sizeof answer);
    assert_string_equal(answer, "1,1");
    /* Repaired by hand, it migrates. */
    raw_sql(f, "DROP TABLE usage");
    s = open_store(f);
    assert_int_equal(store_schema_version(s), SCHEMA_VERSION);
    store_close(s);
}

static void test_newer_schema_is_refused(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    store_close(s);
    raw_sql(f, "INSERT INTO schema_version VALUES (99, 0)");
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

/* store_expire's `each`: keeps the (one) id it is given. */
static void remember_id(void *context, const char *id) {
    snprintf(context, STORE_ID_SIZE, "%s", id);
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
    assert_int_equal(store_expire(s, &expired, NULL, NULL, error), CAP_OK);
    assert_int_equal(expired, 0);
    f->now += 1001;
    char named[STORE_ID_SIZE] = "";
    assert_int_equal(store_expire(s, &expired, remember_id, named, error), CAP_OK);
    assert_int_equal(expired, 1); /* not the live one, not the one without a ttl */
    assert_string_equal(named, "short");
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
    /* The expired session's page went with it: nothing is left to collect. */
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, 0);
    uint64_t freed_blobs = 1;
    assert_int_equal(store_gc(s, &freed_blobs, NULL, error), CAP_OK);
    assert_int_equal(freed_blobs, 0);
    assert_int_equal(store_check(s, error), CAP_OK);
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
    if (kind == POSTGRES) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "UPDATE blobs SET data = set_byte(data, length(data) - %d,"
                 " get_byte(data, length(data) - %d) # 64) WHERE hash = %s",
                 1 + from_end, 1 + from_end, hash_literal(hash));
        raw_sql(f, sql);
        return;
    }
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
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE blobs SET raw_size = 1099511627776 WHERE hash = %s",
             hash_literal(lying_hash));
    raw_sql(f, sql);
    s = open_store(f);
    assert_int_equal(store_blob_get(s, lying_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_non_null(strstr(error, "malformed row"));
    store_close(s);
    raw_sql(f, "UPDATE blobs SET raw_size = 4095 WHERE raw_size = 1099511627776");
    s = open_store(f);
    assert_int_equal(store_blob_get(s, lying_hash, &bytes, &size, error), STORE_ECORRUPT);
    assert_non_null(strstr(error, "not a zstd frame of 4095 bytes"));
    store_close(s);
    /* SQLite: foreign keys are per connection; PostgreSQL: replication
     * mode fires no foreign-key triggers. */
    raw_sql(f, kind == SQLITE
                   ? "PRAGMA foreign_keys = OFF;"
                     " DELETE FROM blobs WHERE hash IN (SELECT hash FROM snapshot_pages)"
                   : "SET session_replication_role = replica;"
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

/* Many pages: read on two threads (the store checks and hands over one
 * batch while it reads the next), still each checked, in index order. */
#define MANY_PAGES 300

typedef struct pages_in_order {
    const uint8_t (*expected)[PAGE];
    uint32_t next;
    uint32_t stop_at; /* 0: never */
} pages_in_order;

static int check_in_order(void *context, uint32_t index, const void *bytes, size_t size) {
    pages_in_order *walk = context;
    if (index != walk->next || size != PAGE || memcmp(bytes, walk->expected[index], PAGE) != 0)
        return 99; /* fails the assertion on the result */
    walk->next++;
    return walk->stop_at && walk->next == walk->stop_at ? 7 : 0;
}

/* MANY_PAGES pages made from `seed` into `contents`, written as a snapshot
 * of a new session `session`: its id. */
static int64_t write_many_pages(store *s, const char *session, uint32_t seed,
                                uint8_t (*contents)[PAGE]) {
    char error[CAP_ERROR_SIZE];
    static store_page pages[MANY_PAGES];
    for (uint32_t i = 0; i < MANY_PAGES; i++) {
        fill_page(contents[i], seed + i, i % 3 == 0);
        pages[i] = (store_page){.index = i, .data = contents[i]};
    }
    store_snapshot_data data = {.build_id = "b", .manifest = "{}", .page_size = PAGE,
                                .pages = pages, .page_count = MANY_PAGES};
    assert_int_equal(store_session_create(s, session, "", 0, error), CAP_OK);
    int64_t snapshot_id;
    assert_int_equal(store_snapshot_write(s, session, &data, &snapshot_id, error), CAP_OK);
    return snapshot_id;
}

/* store_snapshot_read_wanted_pages passes consecutive wanted pages of a
 * batch in one call (a restore writes them to its page file at once):
 * every call is a run of pages whose indexes follow each other, never
 * across a page not wanted, each page's bytes where they belong. */
typedef struct wanted_runs {
    const uint8_t (*expected)[PAGE];
    uint32_t next; /* the next wanted page */
    unsigned calls, longest;
} wanted_runs;

static int skip_every_seventh(void *context, uint32_t index, const uint8_t *hash) {
    (void)context;
    (void)hash;
    return index % 7 != 3;
}

static int check_run(void *context, uint32_t index, const void *bytes, size_t size) {
    wanted_runs *runs = context;
    while (!skip_every_seventh(NULL, runs->next, NULL)) runs->next++;
    if (index != runs->next || !size || size % PAGE) return 99;
    uint32_t count = (uint32_t)(size / PAGE);
    for (uint32_t i = 0; i < count; i++) {
        if (!skip_every_seventh(NULL, index + i, NULL)) return 98; /* ran across a gap */
        if (memcmp((const uint8_t *)bytes + (size_t)i * PAGE, runs->expected[index + i], PAGE))
            return 97;
    }
    runs->next = index + count;
    runs->calls++;
    if (count > runs->longest) runs->longest = count;
    return 0;
}

static void test_wanted_pages_come_in_runs(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t contents[MANY_PAGES][PAGE];
    int64_t snapshot_id = write_many_pages(s, "runs", 5000, contents);
    for (int round = 0; round < 2; round++) { /* the page buffers are kept between reads */
        wanted_runs runs = {.expected = (const uint8_t(*)[PAGE])contents};
        assert_int_equal(store_snapshot_read_wanted_pages(s, snapshot_id, skip_every_seventh,
                                                          check_run, &runs, error),
                         CAP_OK);
        assert_int_equal(runs.next, MANY_PAGES);
        assert_true(runs.longest > 1);  /* runs, not single pages */
        assert_true(runs.longest <= 6); /* never across a page not wanted */
        assert_true(runs.calls < MANY_PAGES - MANY_PAGES / 7);
    }
    store_close(s);
}

static void test_many_pages_are_checked_in_order(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t contents[MANY_PAGES][PAGE];
    int64_t snapshot_id = write_many_pages(s, "a", 1000, contents);
    pages_in_order walk = {.expected = (const uint8_t(*)[PAGE])contents};
    assert_int_equal(store_snapshot_read_pages(s, snapshot_id, check_in_order, &walk, error),
                     CAP_OK);
    assert_int_equal(walk.next, MANY_PAGES);
    /* The caller's refusal stops the walk and is what it returns. */
    walk = (pages_in_order){.expected = (const uint8_t(*)[PAGE])contents, .stop_at = 150};
    assert_int_equal(store_snapshot_read_pages(s, snapshot_id, check_in_order, &walk, error), 7);
    assert_int_equal(walk.next, 150);
    store_close(s);

    /* Page 200's bytes changed in the store (stored raw: the frame still
     * decompresses): the hash check finds it; the pages before it passed. */
    uint8_t hash[STORE_HASH_SIZE];
    store_hash(contents[200], PAGE, hash);
    flip_blob_byte(f, hash, 100);
    s = open_store(f);
    walk = (pages_in_order){.expected = (const uint8_t(*)[PAGE])contents};
    assert_int_equal(store_snapshot_read_pages(s, snapshot_id, check_in_order, &walk, error),
                     STORE_ECORRUPT);
    assert_non_null(strstr(error, "do not match its hash"));
    assert_int_equal(walk.next, 200);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

/* --- snapshots ------------------------------------------------------------------- */

typedef struct page_copy {
    uint8_t (*pages)[PAGE];
    uint32_t indices[64]; /* at most 64 pages */
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

    /* The next snapshot: two pages by hash (unchanged), one new: the
     * session's snapshot is updated in place (same id, only the rows that
     * changed), and its page 9 becomes garbage. */
    uint8_t hash0[STORE_HASH_SIZE];
    store_hash(pages[0], PAGE, hash0);
    store_page second[] = {
        {.index = 0, .hash = hash0}, {.index = 7, .hash = hash}, {.index = 8, .data = pages[3]}};
    data.pages = second;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    int64_t id2 = 0;
    assert_int_equal(store_call_finish(s, "a", 2, "success", "{\"r\":2}", &data, &id2, error),
                     CAP_OK);
    assert_int_equal(id2, id1);
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

/* Snapshots of many pages go in batches of statements (store.c's BATCH,
 * 16): full batches, a remainder, a batch with a page repeated, a batch of
 * pages by hash with one the store lacks, and a page by hash naming a
 * blob that a later page of the same snapshot brings. */
#define MANY 40
static void test_many_pages_in_batches(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    static uint8_t pages[MANY][PAGE];
    uint8_t hashes[MANY][STORE_HASH_SIZE];
    store_page list[MANY];
    for (int i = 0; i < MANY; i++) {
        fill_page(pages[i], (uint32_t)(5000 + i), i % 3 == 0);
        list[i] = (store_page){.index = (uint32_t)(2 * i), .data = pages[i]};
    }
    memcpy(pages[5], pages[3], PAGE); /* the same bytes twice in the first batch */
    for (int i = 0; i < MANY; i++) store_hash(pages[i], PAGE, hashes[i]);
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = list, .page_count = MANY};
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    int64_t id;
    assert_int_equal(store_snapshot_write(s, "a", &data, &id, error), CAP_OK);
    store_usage usage;
    assert_int_equal(store_get_usage(s, &usage, error), CAP_OK);
    assert_int_equal(usage.blob_count, MANY - 1);
    assert_int_equal(usage.raw_bytes, (MANY - 1) * PAGE);
    assert_int_equal(store_check(s, error), CAP_OK);
    static uint8_t copies[MANY][PAGE];
    page_copy copy = {.pages = copies};
    assert_int_equal(store_snapshot_read_pages(s, id, copy_page, &copy, error), CAP_OK);
    assert_int_equal(copy.count, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(copy.indices[i], 2 * i);
        assert_memory_equal(copies[i], pages[i], PAGE);
    }

    /* Every page by hash: three statements' worth, all there. */
    for (int i = 0; i < MANY; i++)
        list[i] = (store_page){.index = (uint32_t)(2 * i), .hash = hashes[i]};
    assert_int_equal(store_snapshot_write(s, "a", &data, &id, error), CAP_OK);
    copy.count = 0;
    assert_int_equal(store_snapshot_read_pages(s, id, copy_page, &copy, error), CAP_OK);
    assert_memory_equal(copies[MANY - 1], pages[MANY - 1], PAGE);
    /* One hash in a full batch names nothing: refused, naming its page. */
    uint8_t unknown[STORE_HASH_SIZE] = {7, 7, 7};
    list[9].hash = unknown;
    assert_int_equal(store_snapshot_write(s, "a", &data, NULL, error), STORE_ENOTFOUND);
    assert_non_null(strstr(error, "page 18 "));
    list[9].hash = hashes[9];
    /* Page 0 by hash of a blob that page 1 (later in the list) brings. */
    uint8_t fresh[PAGE], fresh_hash[STORE_HASH_SIZE];
    fill_page(fresh, 6000, 0);
    store_hash(fresh, PAGE, fresh_hash);
    list[0] = (store_page){.index = 0, .hash = fresh_hash};
    list[1] = (store_page){.index = 2, .data = fresh};
    assert_int_equal(store_snapshot_write(s, "a", &data, &id, error), CAP_OK);
    copy.count = 0;
    assert_int_equal(store_snapshot_read_pages(s, id, copy_page, &copy, error), CAP_OK);
    assert_memory_equal(copies[0], fresh, PAGE);
    assert_memory_equal(copies[1], fresh, PAGE);
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

/* store_take_expired's each: the ids, joined by spaces. */
static void note_expired(void *context, const char *id) {
    char *names = context;
    size_t used = strlen(names);
    snprintf(names + used, 256 - used, "%s%s", used ? " " : "", id);
}

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
    /* The commit names what it expired, once. */
    char expired[256] = "";
    store_take_expired(s, note_expired, expired);
    assert_string_equal(expired, "oldest");
    store_take_expired(s, note_expired, expired);
    assert_string_equal(expired, "oldest");
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
    store_take_expired(s, note_expired, expired); /* nothing: that expiry was rolled back */
    assert_string_equal(expired, "oldest");
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

/* 'O': the store opened; 'B': a call begun (committed `running`); 'F':
 * finished (result and snapshot committed). */
typedef struct acknowledgement {
    char kind;
    int64_t seq;
} acknowledgement;

#define CRASH_LEASE_MS 100

/* The child: commits calls with snapshots for ever, telling the parent each
 * acknowledged step through the pipe. */
static void crash_child(const char *url, int pipe_fd) {
    store *s = NULL;
    char error[CAP_ERROR_SIZE];
    if (store_open(url, &s, error) != CAP_OK) {
        fprintf(stderr, "child: %s\n", error);
        _exit(2);
    }
    /* A short lease, never renewed: once killed, this node is dead to the
     * next opener within CRASH_LEASE_MS (SQLite's owner lock says so at
     * once; a PostgreSQL store has only the lease to go by). */
    store_set_lease(s, CRASH_LEASE_MS);
    if (store_renew(s, NULL, error) != CAP_OK) _exit(3);
    int result = store_session_create(s, "crash", "", 0, error);
    if (result != CAP_OK && result != STORE_EEXIST) _exit(3);
    acknowledgement ready = {'O', 0};
    if (write(pipe_fd, &ready, sizeof ready) != sizeof ready) _exit(3);
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
        /* Once the child has opened the store, long enough for it (under
         * ASan) to commit some. */
        acknowledgement ready;
        assert_int_equal(read(fds[0], &ready, sizeof ready), (ssize_t)sizeof ready);
        assert_int_equal(ready.kind, 'O');
        struct timespec wait = {0, (150 + rand() % 250) * 1000 * 1000L};
        nanosleep(&wait, NULL);
        kill(child, SIGKILL);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        struct timespec lease = {0, (CRASH_LEASE_MS + 20) * 1000 * 1000L};
        nanosleep(&lease, NULL);

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

/* The backend under test with a countdown: the call that brings it to zero
 * fails with CAP_EIO, as a lost connection or an I/O error would. */
static const store_backend *base_backend(void) {
    return kind == SQLITE ? &store_sqlite_backend : &store_postgres_backend;
}

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
    return fault_now(error) ? CAP_EIO : base_backend()->begin(connection, write, error);
}

static int faulty_commit(void *connection, char *error) {
    return fault_now(error) ? CAP_EIO : base_backend()->commit(connection, error);
}

static int faulty_execute(void *connection, const char *sql, const store_value *parameters,
                          int count, store_row_function row, void *context, char *error) {
    if (fault_now(error)) return CAP_EIO;
    return base_backend()->execute(connection, sql, parameters, count, row, context, error);
}

static int faulty_script(void *connection, const char *sql, char *error) {
    return fault_now(error) ? CAP_EIO : base_backend()->script(connection, sql, error);
}

static store_backend faulty_backend(void) {
    store_backend backend = *base_backend();
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
    assert_int_equal(store_open_backend(&backend, f->location, &s, error), CAP_OK);
    int open_calls = backend_calls;
    store_close(s);
    for (int n = 0;; n++) {
        teardown(state);
        setup(state);
        f = *state;
        /* Opening a new store: migrations and recovery. */
        s = NULL;
        fault_countdown = n;
        faults_fired = 0;
        int result = store_open_backend(&backend, f->location, &s, error);
        fault_countdown = -1;
        assert_int_equal(faults_fired, n < open_calls);
        if (n < open_calls) {
            assert_int_equal(result, CAP_EIO);
            assert_null(s);
            s = NULL;
            assert_int_equal(store_open_backend(&backend, f->location, &s, error), CAP_OK);
            assert_int_equal(store_schema_version(s), SCHEMA_VERSION);
            assert_store_sound(s);
            store_close(s);
            injected_runs++;
            continue;
        }
        store_close(s);
        /* The day, on a prepared store. */
        assert_int_equal(store_open_backend(&backend, f->location, &s, error), CAP_OK);
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
        if (result == CAP_OK) result = store_expire(s, NULL, NULL, NULL, error);
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

/* --- claims and epochs ----------------------------------------------------------- */

/* One node: a claim makes a parked session live with the next epoch, a
 * claim of its own live session changes nothing, and a call begun before a
 * claim is fenced off. */
static void test_session_claim_and_fencing(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    int64_t epoch = -1;
    assert_int_equal(store_session_claim(s, "none", &epoch, error), STORE_ENOTFOUND);
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    store_session session;
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_string_equal(session.owner, store_node(s));
    assert_int_equal(session.epoch, 0);
    assert_int_equal(store_session_claim(s, "a", &epoch, error), CAP_OK);
    assert_int_equal(epoch, 0); /* already this node's */
    assert_int_equal(store_session_set_status(s, "a", STORE_SESSION_PARKED, error), CAP_OK);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_string_equal(session.owner, "");
    assert_int_equal(store_session_claim(s, "a", &epoch, error), CAP_OK);
    assert_int_equal(epoch, 1);
    assert_int_equal(store_session_get(s, "a", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_LIVE);
    assert_string_equal(session.owner, store_node(s));
    assert_int_equal(session.epoch, 1);

    /* A call of epoch 1; the session is parked and claimed again (as a
     * node that lost it and another that took it would): fenced. */
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_session_set_status(s, "a", STORE_SESSION_PARKED, error), CAP_OK);
    assert_int_equal(store_session_claim(s, "a", &epoch, error), CAP_OK);
    assert_int_equal(epoch, 2);
    assert_int_equal(store_call_finish(s, "a", call.seq, "success", "{}", NULL, NULL, error),
                     STORE_ECONFLICT);
    assert_non_null(strstr(error, "epoch 1"));
    assert_int_equal(store_call_get(s, "a", call.seq, &call, error), CAP_OK);
    assert_string_equal(call.status, "running");
    assert_null(call.result);
    /* A call of the new epoch commits. */
    assert_int_equal(store_call_begin(s, "a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_call_finish(s, "a", call.seq, "success", "{}", NULL, NULL, error),
                     CAP_OK);
    /* An expired session cannot be claimed. */
    assert_int_equal(store_session_create(s, "short", "", 1, error), CAP_OK);
    assert_int_equal(store_session_set_status(s, "short", STORE_SESSION_PARKED, error), CAP_OK);
    f->now += 10;
    store_set_clock(s, fixture_clock, f);
    assert_int_equal(store_expire(s, NULL, NULL, NULL, error), CAP_OK);
    assert_int_equal(store_session_claim(s, "short", &epoch, error), STORE_ECONFLICT);
    store_close(s);
}

/* --- jobs ------------------------------------------------------------------------ */

static store_job_spec job_spec(const char *principal, const char *code) {
    return (store_job_spec){.principal = principal, .code = code, .max_attempts = 3,
                            .backoff_ms = 1000, .timeout_ms = 5000};
}

/* Submit, read back, idempotency per principal, another principal sees nothing. */
static void test_jobs_submit_and_idempotency(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_job_spec spec = job_spec("alice", "print(1)");
    spec.idempotency_key = "k1";
    store_job job, again, other;
    int existing = -1;
    assert_int_equal(store_job_submit(s, &spec, &job, &existing, error), CAP_OK);
    assert_int_equal(existing, 0);
    assert_int_equal(strlen(job.id), 32);
    assert_string_equal(job.status, "queued");
    assert_string_equal(job.queue, "default");
    assert_string_equal(job.code, "print(1)");
    assert_string_equal(job.idempotency_key, "k1");
    assert_int_equal(job.run_after, f->now);
    /* The same key: the same job, nothing added. */
    assert_int_equal(store_job_submit(s, &spec, &again, &existing, error), CAP_OK);
    assert_int_equal(existing, 1);
    assert_string_equal(again.id, job.id);
    store_job_clear(&again);
    /* The same key with other code: refused. */
    spec.code = "print(2)";
    assert_int_equal(store_job_submit(s, &spec, &again, &existing, error), STORE_ECONFLICT);
    /* Another principal's key space is its own. */
    spec.principal = "bob";
    assert_int_equal(store_job_submit(s, &spec, &other, &existing, error), CAP_OK);
    assert_int_equal(existing, 0);
    assert_string_not_equal(other.id, job.id);
    /* bob cannot read or cancel alice's job. */
    char status[STORE_STATUS_SIZE];
    assert_int_equal(store_job_get(s, job.id, "bob", &again, error), STORE_ENOTFOUND);
    assert_int_equal(store_job_cancel(s, job.id, "bob", status, error), STORE_ENOTFOUND);
    assert_int_equal(store_job_get(s, job.id, "alice", &again, error), CAP_OK);
    assert_string_equal(again.status, "queued");
    store_job_clear(&again);
    store_job *jobs;
    size_t count;
    assert_int_equal(store_job_list(s, "alice", NULL, 0, &jobs, &count, error), CAP_OK);
    assert_int_equal(count, 1);
    assert_string_equal(jobs[0].id, job.id);
    store_job_list_free(jobs, count);
    assert_int_equal(store_job_list(s, NULL, "queued", 0, &jobs, &count, error), CAP_OK);
    assert_int_equal(count, 2);
    store_job_list_free(jobs, count);
    /* Bad specs. */
    spec = job_spec("alice", "x");
    spec.max_attempts = 0;
    assert_int_equal(store_job_submit(s, &spec, &again, &existing, error), CAP_EINVAL);
    store_job_clear(&job);
    store_job_clear(&other);
    store_close(s);
}

/* Claim, steps cached and fenced, retries with backoff to dead. */
static void test_jobs_claim_steps_retries_dead(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "", status[STORE_STATUS_SIZE];
    store_job_spec spec = job_spec("p", "code");
    spec.max_attempts = 2;
    store_job job, claimed;
    int got = -1;
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_string_equal(claimed.id, job.id);
    assert_string_equal(claimed.status, "running");
    assert_string_equal(claimed.lease_owner, store_node(s));
    assert_int_equal(claimed.attempts, 1);
    assert_string_equal(claimed.code, "code");
    store_job_clear(&claimed);
    /* Nothing else is due. */
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    /* A step: missing, stored, then its first result stays. */
    char *result = NULL;
    int found = -1;
    assert_int_equal(store_job_step_get(s, job.id, "a", &result, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    char *stored = NULL;
    assert_int_equal(store_job_step_put(s, job.id, 1, "a", "[1,2]", &stored, error), CAP_OK);
    assert_string_equal(stored, "[1,2]");
    free(stored);
    assert_int_equal(store_job_step_put(s, job.id, 1, "a", "\"other\"", &stored, error), CAP_OK);
    assert_string_equal(stored, "[1,2]");
    free(stored);
    assert_int_equal(store_job_step_get(s, job.id, "a", &result, &found, error), CAP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(result, "[1,2]");
    free(result);
    /* A stale attempt number is fenced. */
    assert_int_equal(store_job_step_put(s, job.id, 7, "b", "1", NULL, error), STORE_ECONFLICT);
    /* Attempt 1 fails: failed, due after the backoff. */
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_FAILED, NULL, "boom", 1000, 0, NULL,
                                      status, error),
                     CAP_OK);
    assert_string_equal(status, "failed");
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0); /* not yet due */
    f->now += 1000;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_int_equal(claimed.attempts, 2);
    assert_string_equal(claimed.last_error, "boom");
    store_job_clear(&claimed);
    /* The cached step survives the retry. */
    assert_int_equal(store_job_step_get(s, job.id, "a", &result, &found, error), CAP_OK);
    assert_int_equal(found, 1);
    free(result);
    /* The finish of the old attempt is refused; the last attempt fails: dead. */
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_SUCCEEDED, "1", NULL, 0, 0, NULL,
                                      status, error),
                     STORE_ECONFLICT);
    assert_int_equal(store_job_finish(s, job.id, 2, STORE_JOB_FAILED, NULL, "boom 2", 4000, 0,
                                      NULL, status, error),
                     CAP_OK);
    assert_string_equal(status, "dead");
    store_job_clear(&job);
    assert_int_equal(store_job_get(s, claimed.id, NULL, &job, error), CAP_OK);
    assert_string_equal(job.status, "dead");
    assert_string_equal(job.last_error, "boom 2");
    store_job_clear(&job);
    f->now += 100000;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    store_close(s);
}

/* Sleep and wait do not use attempts; events wake; cancel. */
static void test_jobs_sleep_events_cancel(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "", status[STORE_STATUS_SIZE];
    store_job_spec spec = job_spec("p", "code");
    store_job job, claimed;
    int got = -1;
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    store_job_clear(&claimed);
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_SLEEPING, NULL, NULL, 0,
                                      f->now + 500, NULL, status, error),
                     CAP_OK);
    assert_string_equal(status, "sleeping");
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    f->now += 500;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_int_equal(claimed.attempts, 1); /* the sleep was not an attempt */
    store_job_clear(&claimed);
    /* Waiting for "go": not due; another principal's "go" wakes nothing. */
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_WAITING, NULL, NULL, 0, 0, "go",
                                      status, error),
                     CAP_OK);
    assert_string_equal(status, "waiting");
    int64_t woken = -1;
    assert_int_equal(store_job_emit(s, "q", "go", "1", &woken, error), CAP_OK);
    assert_int_equal(woken, 0);
    f->now += 10;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    assert_int_equal(store_job_emit(s, "p", "go", "{\"x\":1}", &woken, error), CAP_OK);
    assert_int_equal(woken, 1);
    char *payload = NULL;
    int found = 0;
    assert_int_equal(store_job_event_find(s, "p", "go", job.created_at, &payload, &found, error),
                     CAP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(payload, "{\"x\":1}");
    free(payload);
    assert_int_equal(store_job_event_find(s, "p", "go", f->now + 1, &payload, &found, error),
                     CAP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    store_job_clear(&claimed);
    /* Waiting again for an event emitted already: due at once. */
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_WAITING, NULL, NULL, 0, 0, "go",
                                      status, error),
                     CAP_OK);
    assert_int_equal(store_job_get(s, job.id, NULL, &claimed, error), CAP_OK);
    assert_int_equal(claimed.run_after, f->now);
    store_job_clear(&claimed);
    /* Cancelling a job that is not running: at once. */
    assert_int_equal(store_job_cancel(s, job.id, "p", status, error), CAP_OK);
    assert_string_equal(status, "cancelled");
    assert_int_equal(store_job_cancel(s, job.id, "p", status, error), STORE_ECONFLICT);
    f->now += 100000;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    store_job_clear(&job);
    /* Cancelling a running job: marked; its attempt sees it and ends cancelled. */
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    store_job_clear(&claimed);
    assert_int_equal(store_job_cancel(s, job.id, NULL, status, error), CAP_OK);
    assert_string_equal(status, "running");
    int cancel = -1;
    assert_int_equal(store_job_check(s, job.id, 1, &cancel, error), CAP_OK);
    assert_int_equal(cancel, 1);
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_CANCELLED, NULL, NULL, 0, 0, NULL,
                                      status, error),
                     CAP_OK);
    assert_string_equal(status, "cancelled");
    store_job_clear(&job);
    /* Cancelled while running, then the attempt goes to sleep or to wait
     * before it saw the request: the job ends cancelled, not to run again
     * when due (it used to be left sleeping). */
    for (int outcome = 0; outcome < 2; outcome++) {
        assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
        assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
        store_job_clear(&claimed);
        assert_int_equal(store_job_cancel(s, job.id, NULL, status, error), CAP_OK);
        assert_string_equal(status, "running");
        assert_int_equal(store_job_finish(s, job.id, 1,
                                          outcome ? STORE_JOB_WAITING : STORE_JOB_SLEEPING, NULL,
                                          NULL, 0, f->now + 1, outcome ? "e" : NULL, status,
                                          error),
                         CAP_OK);
        assert_string_equal(status, "cancelled");
        f->now += 10;
        assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
        assert_int_equal(got, 0);
        store_job_clear(&job);
    }
    store_close(s);
}

/* A node that dies mid-attempt: the next claim (after its lease) sweeps it,
 * and the job runs again with its steps; queue limits are honoured. */
static void test_jobs_dead_node_swept_and_queue_limits(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_job_spec spec = job_spec("p", "code");
    spec.queue = "q";
    store_job job, claimed;
    int got = -1;
    assert_int_equal(store_job_set_queue_limit(s, "q", 1, error), CAP_OK);
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    store_job_clear(&job);
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    f->now += 1;
    assert_int_equal(store_job_claim(s, "q", &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    char first[STORE_ID_SIZE];
    snprintf(first, sizeof first, "%s", claimed.id);
    store_job_clear(&claimed);
    /* The queue is at its limit: the second job waits. */
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    assert_int_equal(store_job_step_put(s, first, 1, "one", "1", NULL, error), CAP_OK);
    /* The node dies (its handle closed without finishing: for SQLite the
     * next open finds every other node dead; on PostgreSQL its lease is
     * given up at close). */
    store_close(s);
    s = open_store(f);
    assert_int_equal(store_job_claim(s, "q", &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    /* The oldest due: the swept one (due since the sweep) or the other;
     * either way the limit lets only one run. */
    store_job other;
    assert_int_equal(store_job_claim(s, NULL, &other, &got, error), CAP_OK);
    assert_int_equal(got, 0);
    store_job swept;
    assert_int_equal(store_job_get(s, first, NULL, &swept, error), CAP_OK);
    if (strcmp(claimed.id, first) == 0) {
        assert_int_equal(claimed.attempts, 2);
    } else {
        assert_string_equal(swept.status, "failed");
    }
    assert_non_null(strstr(swept.last_error ? swept.last_error : "", "cut off"));
    store_job_clear(&swept);
    char *result = NULL;
    int found = 0;
    assert_int_equal(store_job_step_get(s, first, "one", &result, &found, error), CAP_OK);
    assert_int_equal(found, 1);
    free(result);
    /* Without the limit both run. */
    assert_int_equal(store_job_set_queue_limit(s, "q", 0, error), CAP_OK);
    assert_int_equal(store_job_claim(s, NULL, &other, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    store_job_clear(&other);
    store_job_clear(&claimed);
    store_job_clear(&job);
    store_close(s);
}

/* The claim latency: a claim's wait is updated_at - run_after; the job
 * keeps the sum over its claims (a retry's wait counts from its due time). */
static void test_jobs_claim_wait(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "", status[STORE_STATUS_SIZE];
    store_job_spec spec = job_spec("p", "code");
    store_job job, claimed;
    int got = -1;
    assert_int_equal(store_job_submit(s, &spec, &job, NULL, error), CAP_OK);
    f->now += 7;
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_int_equal(claimed.updated_at - claimed.run_after, 7);
    assert_int_equal(claimed.claim_wait_ms, 7);
    store_job_clear(&claimed);
    assert_int_equal(store_job_finish(s, job.id, 1, STORE_JOB_FAILED, NULL, "x", 100, 0, NULL,
                                      status, error),
                     CAP_OK);
    f->now += 100 + 5; /* due after 100 ms, claimed 5 ms later */
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_int_equal(claimed.updated_at - claimed.run_after, 5);
    assert_int_equal(claimed.claim_wait_ms, 12);
    store_job_clear(&claimed);
    assert_int_equal(store_job_get(s, job.id, NULL, &claimed, error), CAP_OK);
    assert_int_equal(claimed.claim_wait_ms, 12);
    store_job_clear(&claimed);
    store_job_clear(&job);
    store_close(s);
}

/* Group commit: several attempts' ends and the runners' next claims in one
 * transaction.  A refused end (a stale attempt) does not stop the others;
 * each claim is a job of its own with its own attempt; a queue's limit
 * holds inside the batch; an invalid item writes nothing at all. */
static void test_jobs_commit_batch(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_job_spec spec = job_spec("p", "code");
    store_job a, b, c, d, claimed, read;
    int got = -1;
    assert_int_equal(store_job_submit(s, &spec, &a, NULL, error), CAP_OK);
    f->now += 1;
    assert_int_equal(store_job_submit(s, &spec, &b, NULL, error), CAP_OK);
    f->now += 1;
    assert_int_equal(store_job_submit(s, &spec, &c, NULL, error), CAP_OK);
    f->now += 1;
    assert_int_equal(store_job_submit(s, &spec, &d, NULL, error), CAP_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
        assert_int_equal(got, 1);
        store_job_clear(&claimed);
    }
    store_job_batch_item items[3] = {
        {.id = a.id, .attempt = 1, .outcome = STORE_JOB_SUCCEEDED, .result_json = "42",
         .want_next = 1},
        {.id = b.id, .attempt = 2, .outcome = STORE_JOB_SUCCEEDED, .result_json = "1",
         .want_next = 1}, /* stale: b runs its 1st attempt */
        {.want_next = 1}, /* an idle runner */
    };
    assert_int_equal(store_job_commit_batch(s, items, 3, NULL, error), CAP_OK);
    assert_int_equal(items[0].ended, CAP_OK);
    assert_string_equal(items[0].status, "succeeded");
    assert_int_equal(items[1].ended, STORE_ECONFLICT);
    assert_int_equal(items[0].claimed, 1);
    assert_int_equal(items[1].claimed, 1);
    assert_int_equal(items[2].claimed, 0); /* two were due, for three claims */
    assert_string_equal(items[0].next.id, c.id);
    assert_string_equal(items[1].next.id, d.id);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(items[i].next.status, "running");
        assert_int_equal(items[i].next.attempts, 1);
        assert_non_null(items[i].next.code);
        assert_true(items[i].next.lease_expires_at > f->now);
        store_job_clear(&items[i].next);
    }
    assert_int_equal(store_job_get(s, a.id, NULL, &read, error), CAP_OK);
    assert_string_equal(read.status, "succeeded");
    assert_string_equal(read.result, "42");
    store_job_clear(&read);
    assert_int_equal(store_job_get(s, b.id, NULL, &read, error), CAP_OK);
    assert_string_equal(read.status, "running"); /* the refused end wrote nothing */
    assert_int_equal(read.attempts, 1);
    assert_null(read.result);
    store_job_clear(&read);
    /* A limit of 1: one claim of the two asked for. */
    assert_int_equal(store_job_set_queue_limit(s, "q", 1, error), CAP_OK);
    store_job e, g;
    spec.queue = "q";
    assert_int_equal(store_job_submit(s, &spec, &e, NULL, error), CAP_OK);
    assert_int_equal(store_job_submit(s, &spec, &g, NULL, error), CAP_OK);
    store_job_batch_item two[2] = {{.want_next = 1}, {.want_next = 1}};
    assert_int_equal(store_job_commit_batch(s, two, 2, "q", error), CAP_OK);
    assert_int_equal(two[0].claimed + two[1].claimed, 1);
    store_job_clear(&two[0].next);
    store_job_clear(&two[1].next);
    /* An invalid item (no event for a wait) fails the batch: b's good end
     * is not written either, and nothing is claimed. */
    store_job_batch_item bad[2] = {
        {.id = b.id, .attempt = 1, .outcome = STORE_JOB_SUCCEEDED, .result_json = "7",
         .want_next = 1},
        {.id = c.id, .attempt = 1, .outcome = STORE_JOB_WAITING, .want_next = 1},
    };
    assert_int_not_equal(store_job_commit_batch(s, bad, 2, NULL, error), CAP_OK);
    assert_int_equal(bad[0].claimed + bad[1].claimed, 0);
    assert_int_equal(store_job_get(s, b.id, NULL, &read, error), CAP_OK);
    assert_string_equal(read.status, "running");
    store_job_clear(&read);
    store_job_clear(&a);
    store_job_clear(&b);
    store_job_clear(&c);
    store_job_clear(&d);
    store_job_clear(&e);
    store_job_clear(&g);
    store_close(s);
}

/* Finished jobs go with their steps after the retention, in batches; an
 * event goes once no unfinished job could still await it. */
static void test_jobs_pruned_after_retention(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "", status[STORE_STATUS_SIZE];
    store_job_spec spec = job_spec("p", "code");
    store_job done, open_job, claimed;
    int got = -1, found = -1;
    int64_t jobs = -1, events = -1;
    assert_int_equal(store_job_submit(s, &spec, &done, NULL, error), CAP_OK);
    assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    store_job_clear(&claimed);
    assert_int_equal(store_job_step_put(s, done.id, 1, "one", "1", NULL, error), CAP_OK);
    assert_int_equal(store_job_finish(s, done.id, 1, STORE_JOB_SUCCEEDED, "2", NULL, 0, 0, NULL,
                                      status, error),
                     CAP_OK);
    assert_int_equal(store_job_emit(s, "p", "before", "1", NULL, error), CAP_OK);
    f->now += 10;
    assert_int_equal(store_job_submit(s, &spec, &open_job, NULL, error), CAP_OK);
    f->now += 10;
    assert_int_equal(store_job_emit(s, "p", "after", "2", NULL, error), CAP_OK);
    /* Within the retention: nothing goes. */
    f->now += 500;
    assert_int_equal(store_job_prune(s, 1000, 10, &jobs, &events, error), CAP_OK);
    assert_int_equal(jobs, 0);
    assert_int_equal(events, 0);
    /* Past it: the finished job and its step; "before" (only the finished
     * job was created before it); not the queued job, nor "after", which
     * the queued job may still await. */
    f->now += 1000;
    assert_int_equal(store_job_prune(s, 1000, 10, &jobs, &events, error), CAP_OK);
    assert_int_equal(jobs, 1);
    assert_int_equal(events, 1);
    assert_int_equal(store_job_get(s, done.id, NULL, &claimed, error), STORE_ENOTFOUND);
    char *value = NULL;
    assert_int_equal(store_job_step_get(s, done.id, "one", &value, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(store_job_event_find(s, "p", "before", 0, &value, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(store_job_get(s, open_job.id, NULL, &claimed, error), CAP_OK);
    store_job_clear(&claimed);
    assert_int_equal(store_job_event_find(s, "p", "after", 0, &value, &found, error), CAP_OK);
    assert_int_equal(found, 1);
    free(value);
    /* Cancelled: "after" (older than the retention) goes at once, as no
     * job can await it now; the job once its own retention has passed. */
    assert_int_equal(store_job_cancel(s, open_job.id, NULL, status, error), CAP_OK);
    assert_int_equal(store_job_prune(s, 1000, 10, &jobs, &events, error), CAP_OK);
    assert_int_equal(jobs, 0);
    assert_int_equal(events, 1);
    f->now += 1001;
    assert_int_equal(store_job_prune(s, 1000, 10, &jobs, &events, error), CAP_OK);
    assert_int_equal(jobs, 1);
    assert_int_equal(events, 0);
    /* In batches: three dead jobs, two a time. */
    spec.max_attempts = 1;
    for (int i = 0; i < 3; i++) {
        store_job_clear(&done);
        assert_int_equal(store_job_submit(s, &spec, &done, NULL, error), CAP_OK);
        assert_int_equal(store_job_claim(s, NULL, &claimed, &got, error), CAP_OK);
        assert_int_equal(store_job_finish(s, claimed.id, 1, STORE_JOB_FAILED, NULL, "x", 0, 0,
                                          NULL, status, error),
                         CAP_OK);
        assert_string_equal(status, "dead");
        store_job_clear(&claimed);
    }
    f->now += 1001;
    assert_int_equal(store_job_prune(s, 1000, 2, &jobs, NULL, error), CAP_OK);
    assert_int_equal(jobs, 2);
    assert_int_equal(store_job_prune(s, 1000, 2, &jobs, NULL, error), CAP_OK);
    assert_int_equal(jobs, 1);
    assert_int_equal(store_job_prune(s, -1, 2, &jobs, NULL, error), CAP_EINVAL);
    store_job_clear(&done);
    store_job_clear(&open_job);
    store_close(s);
}

/* --- PostgreSQL: several nodes, an unreachable or restarted server ------------- */

/* A server that is not there, a database that does not exist: clear errors
 * from store_open, quickly. */
static void test_postgres_unreachable_at_open_is_a_clear_error(void **state) {
    fixture *f = *state;
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    char url[700];
    snprintf(url, sizeof url, "postgres:///capsule?host=%s/no-server-here", f->directory);
    assert_int_equal(store_open(url, &s, error), CAP_EIO);
    assert_null(s);
    print_message("no server: %s\n", error);
    assert_non_null(strstr(error, "cannot connect"));
    assert_non_null(strstr(error, "no-server-here"));
    /* The real server, a database it does not have. */
    char *at = strstr(f->url, "/capsule?");
    assert_non_null(at);
    snprintf(url, sizeof url, "%.*s/no_such_database%s", (int)(at - f->url), f->url,
             at + strlen("/capsule"));
    assert_int_equal(store_open(url, &s, error), CAP_EIO);
    assert_null(s);
    print_message("no database: %s\n", error);
    assert_non_null(strstr(error, "no_such_database"));
    assert_non_null(strstr(error, "does not exist"));
    /* Not a URL libpq reads. */
    assert_int_equal(store_open("postgres://[::1", &s, error), CAP_EIO);
    assert_null(s);
}

static void restart_server(const char *mode) {
    char command[600];
    snprintf(command, sizeof command, "sh tests/store/postgres-server.sh restart '%s' %s",
             postgres_dir, mode);
    if (system(command) != 0) fail_msg("%s failed", command);
}

/* The PostgreSQL backend that restarts the server (immediately: a crash of
 * the server, with its recovery) just before its n-th statement. */
static int restart_countdown = -1;
static int restarting_execute(void *connection, const char *sql, const store_value *parameters,
                              int count, store_row_function row, void *context, char *error) {
    if (restart_countdown >= 0 && restart_countdown-- == 0) restart_server("immediate");
    return store_postgres_backend.execute(connection, sql, parameters, count, row, context, error);
}

/* The server restarted while the store is idle: the next operation
 * reconnects.  Restarted (crashed) in the middle of a commit: that
 * operation fails with a clear error, nothing half-done is visible, the
 * next one reconnects, and everything committed before is there. */
static void test_postgres_server_restarted_during_use(void **state) {
    fixture *f = *state;
    store_backend backend = store_postgres_backend;
    backend.execute = restarting_execute;
    store *s = NULL;
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_open_backend(&backend, f->location, &s, error), CAP_OK);
    static uint8_t pages[3][PAGE];
    for (int i = 0; i < 3; i++) fill_page(pages[i], (uint32_t)(300 + i), 0);
    store_page first[] = {{.index = 0, .data = pages[0]}, {.index = 1, .data = pages[1]}};
    store_snapshot_data data = {
        .build_id = "b", .manifest = "{}", .page_size = PAGE, .pages = first, .page_count = 2};
    store_call call;
    int replayed;
    int64_t first_snapshot = 0;
    assert_int_equal(store_session_create(s, "a", "", 0, error), CAP_OK);
    assert_int_equal(store_call_begin(s, "a", "k1", NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_call_finish(s, "a", 1, "success", "{\"r\":1}", &data, &first_snapshot,
                                       error),
                     CAP_OK);

    /* Idle: a clean restart, then the next calls work. */
    restart_server("fast");
    store_session session;
    if (store_session_get(s, "a", &session, error) != CAP_OK) fail_msg("after restart: %s", error);
    assert_int_equal(session.call_count, 1);
    assert_int_equal(store_call_begin(s, "a", "k1", NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(replayed, 1); /* the committed result, after the restart */
    assert_string_equal(call.result, "{\"r\":1}");
    store_call_clear(&call);

    /* A crash of the server in the middle of a commit. */
    assert_int_equal(store_call_begin(s, "a", "k2", NULL, &call, &replayed, error), CAP_OK);
    int64_t seq = call.seq;
    store_page second[] = {{.index = 0, .data = pages[0]}, {.index = 1, .data = pages[2]}};
    data.pages = second;
    restart_countdown = 3; /* inside store_call_finish's transaction */
    int result = store_call_finish(s, "a", seq, "success", "{\"r\":2}", &data, NULL, error);
    restart_countdown = -1;
    print_message("server crashed mid-commit: %s\n", error);
    assert_int_equal(result, CAP_EIO);
    assert_non_null(strstr(error, "connection lost"));
    /* Nothing of it committed; the store reconnects; the earlier state. */
    assert_int_equal(store_call_get(s, "a", seq, &call, error), CAP_OK);
    assert_string_equal(call.status, "running");
    assert_null(call.result);
    store_snapshot latest;
    assert_int_equal(store_snapshot_latest(s, "a", &latest, error), CAP_OK);
    assert_int_equal(latest.id, first_snapshot);
    store_snapshot_clear(&latest);
    assert_int_equal(store_check(s, error), CAP_OK);
    /* The retry goes through. */
    assert_int_equal(store_call_finish(s, "a", seq, "success", "{\"r\":2}", &data, NULL, error),
                     CAP_OK);
    assert_int_equal(store_call_get(s, "a", seq, &call, error), CAP_OK);
    assert_string_equal(call.result, "{\"r\":2}");
    store_call_clear(&call);
    int seen = 0;
    assert_int_equal(store_snapshot_latest(s, "a", &latest, error), CAP_OK);
    assert_int_equal(latest.call_seq, seq);
    assert_int_equal(store_snapshot_read_pages(s, latest.id, count_pages, &seen, error), CAP_OK);
    assert_int_equal(seen, 2);
    store_snapshot_clear(&latest);
    store_close(s);
}

/* Another node's open and sweeps spare a live node's running calls and
 * sessions; once its lease expires they are recovered, its late commit is
 * refused, and its next renewal tells it so. */
static void test_postgres_sweep_spares_live_nodes(void **state) {
    fixture *f = *state;
    store *a = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_call call;
    int replayed;
    assert_int_equal(store_session_create(a, "of-a", "", 0, error), CAP_OK);
    assert_int_equal(store_call_begin(a, "of-a", NULL, NULL, &call, &replayed, error), CAP_OK);

    store *b = NULL;
    assert_int_equal(store_open(f->url, &b, error), CAP_OK); /* no exclusive lock */
    assert_string_not_equal(store_node(a), store_node(b));
    assert_int_equal(store_recovered_calls(b), 0);
    int64_t recovered = -1;
    assert_int_equal(store_renew(b, &recovered, error), CAP_OK);
    assert_int_equal(recovered, 0);
    assert_int_equal(store_call_get(b, "of-a", 1, &call, error), CAP_OK);
    assert_string_equal(call.status, "running");
    store_session session;
    assert_int_equal(store_session_get(b, "of-a", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_LIVE);

    /* a stops renewing: its lease runs out. */
    store_set_lease(a, 50);
    assert_int_equal(store_renew(a, NULL, error), CAP_OK);
    struct timespec pause = {0, 120 * 1000 * 1000L};
    nanosleep(&pause, NULL);
    assert_int_equal(store_renew(b, &recovered, error), CAP_OK);
    assert_int_equal(recovered, 1);
    assert_int_equal(store_call_get(b, "of-a", 1, &call, error), CAP_OK);
    assert_string_equal(call.status, "interrupted");
    assert_int_equal(store_session_get(b, "of-a", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    /* a's late result is refused; its renewal says why, then it goes on. */
    assert_int_equal(store_call_finish(a, "of-a", 1, "success", "{}", NULL, NULL, error),
                     STORE_ECONFLICT);
    assert_int_equal(store_renew(a, NULL, error), STORE_ECONFLICT);
    assert_non_null(strstr(error, "lease had expired"));
    store_set_lease(a, 0);
    assert_int_equal(store_renew(a, NULL, error), CAP_OK);
    assert_int_equal(store_call_begin(a, "of-a", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(call.seq, 2);
    store_close(b);
    store_close(a);
}

static void count_parked(void *context, const char *id) {
    char *last = context;
    snprintf(last, STORE_ID_SIZE, "%s", id);
}

/* Moving a session live on another node (docs/scale-out.md, "Moving a live
 * session"): the asker's request is in the row and NOTIFYed on the owner's
 * channel; the owner parks an idle session at once and a busy one only
 * after its call; a claim clears the request; the old owner cannot park a
 * session that moved on. */
/* Ends the lease of `node` at once, as if it had died long ago. */
static void end_lease(fixture *f, const char *node) {
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE nodes SET lease_expires_at = 0 WHERE id = '%s'", node);
    database_sql(f->url, sql, NULL, 0);
}

/* Runs `sql` (a transaction begun, and left open: a claim in progress) on a
 * connection of the test's own, then `during` in a thread, which is to
 * wait for that transaction's row; commits after 300 ms and joins. */
static void beside_an_open_claim(fixture *f, const char *sql, void *(*during)(void *),
                                 void *argument) {
    PGconn *claim = PQconnectdb(f->url);
    assert_int_equal(PQstatus(claim), CONNECTION_OK);
    PGresult *result = PQexec(claim, sql);
    assert_int_equal(PQresultStatus(result), PGRES_COMMAND_OK);
    PQclear(result);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, during, argument), 0);
    struct timespec pause = {0, 300 * 1000000}; /* it waits for the row by then */
    nanosleep(&pause, NULL);
    result = PQexec(claim, "COMMIT");
    assert_int_equal(PQresultStatus(result), PGRES_COMMAND_OK);
    PQclear(result);
    pthread_join(thread, NULL);
    PQfinish(claim);
}

/* A node's sweep that waits for a session row another node is claiming
 * (its old owner dead) must see the claim: the session stays the claimer's.
 * The claim is held open on a connection of the test's own; the sweep runs
 * in a thread and waits for it.  An UPDATE that re-checked only the row
 * against the new version parked the just-claimed session here. */
typedef struct sweeper {
    store *store;
    int result;
} sweeper;

static void *sweep_in_thread(void *argument) {
    sweeper *s = argument;
    s->result = store_renew(s->store, NULL, NULL);
    return NULL;
}

static void test_postgres_sweep_waiting_for_a_claim_keeps_it(void **state) {
    fixture *f = *state;
    char error[CAP_ERROR_SIZE] = "";
    store *dead = open_store(f);
    store *claimer = open_store(f);
    sweeper other = {open_store(f), -1};
    assert_int_equal(store_session_create(dead, "moving", "", 0, error), CAP_OK);
    end_lease(f, store_node(dead)); /* (an open or a renewal would sweep) */
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; SELECT 1 FROM sessions WHERE id = 'moving' FOR UPDATE; "
             "UPDATE sessions SET status = 'live', owner = '%s', epoch = epoch + 1 "
             "WHERE id = 'moving'", store_node(claimer));
    beside_an_open_claim(f, sql, sweep_in_thread, &other);
    assert_int_equal(other.result, CAP_OK);
    store_session session;
    assert_int_equal(store_session_get(claimer, "moving", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_LIVE);
    assert_string_equal(session.owner, store_node(claimer));
    store_close(other.store);
    store_close(claimer);
    store_close(dead);
}

/* The same for jobs: a node's claim (its sweep) waiting for a job that
 * another node is claiming after the job's node died must leave it to that
 * node, not cut its new attempt off (the job would then run twice at
 * once). */
typedef struct claimer_thread {
    store *store;
    int result, claimed;
} claimer_thread;

static void *claim_in_thread(void *argument) {
    claimer_thread *c = argument;
    store_job job = {0};
    c->result = store_job_claim(c->store, NULL, &job, &c->claimed, NULL);
    if (c->claimed) store_job_clear(&job);
    return NULL;
}

/* A job submitted and claimed by `dead`, whose lease then ends: a running
 * attempt of a dead node, for the next sweep.  *job is the job as
 * submitted (the caller clears it). */
static void running_on_a_dead_node(fixture *f, store *dead, store_job *job) {
    char error[CAP_ERROR_SIZE] = "";
    store_job_spec spec = job_spec("p", "code");
    store_job claimed;
    int got = 0;
    assert_int_equal(store_job_submit(dead, &spec, job, NULL, error), CAP_OK);
    f->now += 1;
    assert_int_equal(store_job_claim(dead, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    store_job_clear(&claimed);
    end_lease(f, store_node(dead));
}

static void test_postgres_job_sweep_waiting_for_a_claim_keeps_it(void **state) {
    fixture *f = *state;
    char error[CAP_ERROR_SIZE] = "";
    store *dead = open_store(f);
    store *live = open_store(f);
    claimer_thread other = {open_store(f), -1, -1};
    store_job job;
    running_on_a_dead_node(f, dead, &job);
    /* The live node takes the job over, as its sweep and claim would. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; SELECT 1 FROM jobs WHERE id = '%s' FOR UPDATE; "
             "UPDATE jobs SET attempts = attempts + 1, lease_owner = '%s', "
             "lease_expires_at = %lld WHERE id = '%s'",
             job.id, store_node(live), (long long)(f->now + 600000), job.id);
    beside_an_open_claim(f, sql, claim_in_thread, &other);
    assert_int_equal(other.result, CAP_OK);
    assert_int_equal(other.claimed, 0); /* nothing else was due */
    store_job now;
    assert_int_equal(store_job_get(live, job.id, NULL, &now, error), CAP_OK);
    assert_string_equal(now.status, "running");
    assert_string_equal(now.lease_owner, store_node(live));
    assert_int_equal(now.attempts, 2);
    store_job_clear(&now);
    store_job_clear(&job);
    store_close(other.store);
    store_close(live);
    store_close(dead);
}

/* A handle sweeps dead attempts at its first claim, then at most every
 * JOB_SWEEP_INTERVAL_MS (500 ms): a node found dead between two sweeps is
 * swept by the first claim after the interval, not before. */
static void test_postgres_job_sweeps_are_spaced(void **state) {
    fixture *f = *state;
    char error[CAP_ERROR_SIZE] = "";
    store *dead = open_store(f);
    store *live = open_store(f);
    store_job job, claimed;
    int got = -1;
    assert_int_equal(store_job_claim(live, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0); /* nothing due; live's first sweep is done */
    running_on_a_dead_node(f, dead, &job);
    f->now += 100;
    assert_int_equal(store_job_claim(live, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 0); /* within the interval: not swept yet */
    f->now += 500;
    assert_int_equal(store_job_claim(live, NULL, &claimed, &got, error), CAP_OK);
    assert_int_equal(got, 1);
    assert_string_equal(claimed.id, job.id);
    assert_int_equal(claimed.attempts, 2);
    store_job_clear(&claimed);
    store_job_clear(&job);
    store_close(live);
    store_close(dead);
}

/* --- blobs reused while another node collects them (PostgreSQL) ------------------- */

/* Another node's transaction, on a connection of its own, left open while
 * this node works, and committed by a thread after a pause. */
typedef struct other_node {
    PGconn *connection;
    pthread_t thread;
} other_node;

static void other_node_sql(other_node *node, const char *sql) {
    PGresult *result = PQexec(node->connection, sql);
    int status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(result));
    PQclear(result);
}

static void *commit_after_a_pause(void *argument) {
    other_node *node = argument;
    struct timespec pause = {0, 300 * 1000 * 1000L};
    nanosleep(&pause, NULL);
    PQclear(PQexec(node->connection, "COMMIT"));
    return NULL;
}

/* Begins the other node's transaction with `sql`; it commits 300 ms later. */
static other_node *other_node_start(fixture *f, const char *sql) {
    other_node *node = calloc(1, sizeof *node);
    assert_non_null(node);
    node->connection = PQconnectdb(f->url);
    if (PQstatus(node->connection) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(node->connection));
    other_node_sql(node, "BEGIN");
    other_node_sql(node, sql);
    assert_int_equal(pthread_create(&node->thread, NULL, commit_after_a_pause, node), 0);
    return node;
}

static void other_node_end(other_node *node) {
    pthread_join(node->thread, NULL);
    PQfinish(node->connection);
    free(node);
}

/* The other node collects the stored blob `hash` (usage kept in step). */
static other_node *collect_in_another_node(fixture *f, const uint8_t hash[STORE_HASH_SIZE]) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH gone AS (DELETE FROM blobs WHERE hash = %s RETURNING stored_size, raw_size)"
             " UPDATE usage SET blob_bytes = blob_bytes - (SELECT stored_size FROM gone),"
             " blob_count = blob_count - 1, raw_bytes = raw_bytes - (SELECT raw_size FROM gone)"
             " WHERE id = 1",
             hash_literal(hash));
    return other_node_start(f, sql);
}

static size_t blobs_named(fixture *f, const uint8_t hash[STORE_HASH_SIZE]) {
    char sql[160], answer[32];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM blobs WHERE hash = %s", hash_literal(hash));
    raw_query(f, sql, answer, sizeof answer);
    return (size_t)strtoul(answer, NULL, 10);
}

/* A commit whose pages include one already stored, which another node is
 * deleting (nothing referenced it): the commit waits for that node, finds
 * the blob gone and stores it again.  It used to see the blob, keep it,
 * and fail its page rows' foreign key once the other node committed. */
static void test_postgres_a_commit_reusing_a_blob_being_collected_stores_it(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t pages[BATCH_PAGES][PAGE];
    store_page list[BATCH_PAGES];
    for (int i = 0; i < BATCH_PAGES; i++) {
        fill_page(pages[i], (uint32_t)(7000 + i), 0);
        list[i] = (store_page){.index = (uint32_t)i, .data = pages[i]};
    }
    uint8_t reused[STORE_HASH_SIZE];
    assert_int_equal(store_blob_put(s, pages[3], PAGE, reused, error), CAP_OK);
    assert_int_equal(store_session_create(s, "reuser", "", 0, error), CAP_OK);
    store_snapshot_data data = {.build_id = "b", .manifest = "{}", .page_size = PAGE,
                                .pages = list, .page_count = BATCH_PAGES};
    other_node *collector = collect_in_another_node(f, reused);
    int rc = store_snapshot_write(s, "reuser", &data, NULL, error);
    other_node_end(collector);
    if (rc != CAP_OK) fail_msg("the commit failed: %s", error);
    assert_int_equal(blobs_named(f, reused), 1);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

/* The same for a page the commit names by hash (its worker did not change
 * it): STORE_ENOTFOUND, on which the caller sends every page whole. */
static void test_postgres_a_page_named_by_a_blob_being_collected_is_not_found(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t page[PAGE];
    fill_page(page, 7100, 0);
    uint8_t hash[STORE_HASH_SIZE];
    assert_int_equal(store_blob_put(s, page, PAGE, hash, error), CAP_OK);
    assert_int_equal(store_session_create(s, "namer", "", 0, error), CAP_OK);
    store_page named = {.index = 0, .hash = hash};
    store_snapshot_data data = {.build_id = "b", .manifest = "{}", .page_size = PAGE,
                                .pages = &named, .page_count = 1};
    other_node *collector = collect_in_another_node(f, hash);
    int rc = store_snapshot_write(s, "namer", &data, NULL, error);
    other_node_end(collector);
    assert_int_equal(rc, STORE_ENOTFOUND);
    store_page whole = {.index = 0, .data = page};
    data.pages = &whole;
    assert_int_equal(store_snapshot_write(s, "namer", &data, NULL, error), CAP_OK);
    assert_int_equal(blobs_named(f, hash), 1);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

/* Collection passes over an unreferenced blob that another node's commit
 * in progress has locked to reuse, and takes it next time if that commit
 * ended without naming it.  It used to wait for that commit and delete the
 * blob under it. */
static void test_postgres_collection_passes_over_a_blob_a_commit_reuses(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE];
    static uint8_t page[PAGE];
    fill_page(page, 7200, 0);
    uint8_t hash[STORE_HASH_SIZE];
    assert_int_equal(store_blob_put(s, page, PAGE, hash, error), CAP_OK);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT 1 FROM blobs WHERE hash = %s FOR KEY SHARE",
             hash_literal(hash));
    other_node *committer = other_node_start(f, sql);
    uint64_t freed = 99;
    int rc = store_gc(s, &freed, NULL, error);
    other_node_end(committer);
    assert_int_equal(rc, CAP_OK);
    assert_int_equal(freed, 0);
    assert_int_equal(blobs_named(f, hash), 1);
    assert_int_equal(store_gc(s, &freed, NULL, error), CAP_OK);
    assert_int_equal(freed, 1);
    assert_int_equal(blobs_named(f, hash), 0);
    assert_int_equal(store_check(s, error), CAP_OK);
    store_close(s);
}

static void test_postgres_park_requests(void **state) {
    fixture *f = *state;
    store *a = open_store(f), *b = NULL;
    char error[CAP_ERROR_SIZE] = "", owner[STORE_ID_SIZE], last[STORE_ID_SIZE] = "";
    assert_int_equal(store_open(f->url, &b, error), CAP_OK);
    store_set_clock(a, NULL, NULL); /* real time: both nodes' leases hold */
    store_set_clock(b, NULL, NULL);
    assert_int_equal(store_renew(a, NULL, error), CAP_OK);
    char channel[STORE_PARK_CHANNEL_SIZE];
    store_park_channel(store_node(a), channel);
    store_listener *listener = NULL;
    assert_int_equal(store_listener_open_channel(f->url, channel, &listener, error), CAP_OK);
    assert_non_null(listener);
    store_listener *refused = NULL;
    assert_int_equal(store_listener_open_channel(f->url, "bad; name", &refused, error),
                     CAP_EINVAL);
    assert_null(refused);
    store_listener *jobs = NULL; /* the jobs' channel hears nothing of it */
    assert_int_equal(store_listener_open(f->url, &jobs, error), CAP_OK);

    assert_int_equal(store_session_create(a, "busy", "", 0, error), CAP_OK);
    assert_int_equal(store_session_create(a, "idle", "", 0, error), CAP_OK);
    assert_int_equal(store_session_claim(b, "busy", NULL, error), STORE_EBUSY);
    store_call call;
    int replayed, released = -1;
    int64_t parked = -1;
    assert_int_equal(store_call_begin(a, "busy", NULL, NULL, &call, &replayed, error), CAP_OK);
    assert_int_equal(store_session_request_park(b, "busy", owner, error), CAP_OK);
    assert_string_equal(owner, store_node(a));
    assert_int_equal(store_listener_wait(listener, 5000), 1); /* NOTIFYed */
    assert_int_equal(store_listener_wait(jobs, 200), 0);
    /* Busy in a call: not parked now... */
    assert_int_equal(store_sessions_park_requested(a, count_parked, last, &parked, error), CAP_OK);
    assert_int_equal(parked, 0);
    assert_int_equal(store_session_claim(b, "busy", NULL, error), STORE_EBUSY);
    /* ...but after it (and only then, once). */
    assert_int_equal(store_call_finish(a, "busy", call.seq, "success", "{}", NULL, NULL, error),
                     CAP_OK);
    store_call_clear(&call);
    assert_int_equal(store_session_release_if_requested(a, "busy", &released, error), CAP_OK);
    assert_int_equal(released, 1);
    assert_int_equal(store_session_release_if_requested(a, "busy", &released, error), CAP_OK);
    assert_int_equal(released, 0);
    int64_t epoch = 0;
    assert_int_equal(store_session_claim(b, "busy", &epoch, error), CAP_OK);
    assert_int_equal(epoch, 1);

    /* Idle: parked by the owner's look (its renewer's), the id reported;
     * without a request nothing is. */
    assert_int_equal(store_sessions_park_requested(a, count_parked, last, &parked, error), CAP_OK);
    assert_int_equal(parked, 0);
    assert_int_equal(store_session_request_park(b, "idle", owner, error), CAP_OK);
    assert_string_equal(owner, store_node(a));
    assert_int_equal(store_sessions_park_requested(a, count_parked, last, &parked, error), CAP_OK);
    assert_int_equal(parked, 1);
    assert_string_equal(last, "idle");
    assert_int_equal(store_session_claim(b, "idle", NULL, error), CAP_OK);
    /* Asking for one's own session, or a parked one, asks nobody. */
    assert_int_equal(store_session_request_park(b, "idle", owner, error), CAP_OK);
    assert_string_equal(owner, "");
    /* The old owner's late park (an evicted stale worker) leaves it b's. */
    assert_int_equal(store_session_set_status(a, "idle", STORE_SESSION_PARKED, error), CAP_OK);
    store_session session;
    assert_int_equal(store_session_get(a, "idle", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_LIVE);
    assert_string_equal(session.owner, store_node(b));
    /* A claim clears a request: b's session is not parked for a stale one. */
    assert_int_equal(store_session_request_park(a, "idle", owner, error), CAP_OK);
    assert_string_equal(owner, store_node(b));
    assert_int_equal(store_session_set_status(b, "idle", STORE_SESSION_PARKED, error), CAP_OK);
    assert_int_equal(store_session_claim(b, "idle", NULL, error), CAP_OK);
    assert_int_equal(store_sessions_park_requested(b, NULL, NULL, &parked, error), CAP_OK);
    assert_int_equal(parked, 0);
    store_listener_close(jobs);
    store_listener_close(listener);
    store_close(b);
    store_close(a);
}

/* Two processes on one database at once: both work, and an idempotency key
 * holds across them.  Each process runs calls with keys k0..k29 of one
 * session, racing the other for each key: a key's call runs once in all,
 * the loser replays its result. */
#define RACE_KEYS 30
static int race_keys(const char *url, int *ran, char *error) {
    store *s = NULL;
    int result = store_open(url, &s, error);
    if (result != CAP_OK) return result;
    *ran = 0;
    for (int k = 0; k < RACE_KEYS && result == CAP_OK; k++) {
        char key[16], request[16], answer[64];
        snprintf(key, sizeof key, "k%d", k);
        snprintf(request, sizeof request, "request %d", k);
        uint8_t hash[STORE_HASH_SIZE];
        store_hash(request, strlen(request), hash);
        for (;;) {
            store_call call;
            int replayed = 0;
            result = store_call_begin(s, "shared", key, hash, &call, &replayed, error);
            if (result == STORE_EBUSY) { /* the other one is running it */
                struct timespec pause = {0, 1000 * 1000L};
                nanosleep(&pause, NULL);
                continue;
            }
            if (result != CAP_OK) break;
            if (replayed) {
                snprintf(answer, sizeof answer, "{\"key\":\"%s\"", key);
                if (!call.result || strncmp(call.result, answer, strlen(answer)) != 0) {
                    snprintf(error, CAP_ERROR_SIZE, "replayed %s: %s", key,
                             call.result ? call.result : "(null)");
                    result = CAP_EINVAL;
                }
                store_call_clear(&call);
                break;
            }
            snprintf(answer, sizeof answer, "{\"key\":\"%s\",\"pid\":%d}", key, (int)getpid());
            result = store_call_finish(s, "shared", call.seq, "success", answer, NULL, NULL, error);
            if (result == CAP_OK) ++*ran;
            break;
        }
    }
    store_close(s);
    return result;
}

static void test_postgres_two_processes_share_a_store(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    assert_int_equal(store_session_create(s, "shared", "", 0, error), CAP_OK);
    /* Parked: owned by no node, so both may begin its calls (a session
     * live on another node refuses them: STORE_EMOVED, below). */
    assert_int_equal(store_session_set_status(s, "shared", STORE_SESSION_PARKED, error), CAP_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        int ran = 0;
        char child_error[CAP_ERROR_SIZE] = "";
        int result = race_keys(f->url, &ran, child_error);
        int report[2] = {result, ran};
        if (write(fds[1], report, sizeof report) != sizeof report ||
            write(fds[1], child_error, sizeof child_error) != sizeof child_error)
            _exit(2);
        _exit(0);
    }
    close(fds[1]);
    int ran = 0;
    int result = race_keys(f->url, &ran, error);
    int report[2] = {-1, 0};
    char child_error[CAP_ERROR_SIZE] = "";
    assert_int_equal(read(fds[0], report, sizeof report), (ssize_t)sizeof report);
    assert_int_equal(read(fds[0], child_error, sizeof child_error), (ssize_t)sizeof child_error);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (result != CAP_OK) fail_msg("parent: %d %s", result, error);
    if (report[0] != CAP_OK) fail_msg("child: %d %s", report[0], child_error);
    print_message("two processes: %d and %d of %d keyed calls run\n", ran, report[1], RACE_KEYS);
    assert_int_equal(ran + report[1], RACE_KEYS); /* each key's call ran once */
    store_call *calls;
    size_t count;
    assert_int_equal(store_call_list(s, "shared", 0, 0, &calls, &count, error), CAP_OK);
    assert_int_equal(count, RACE_KEYS);
    for (size_t i = 0; i < count; i++) {
        assert_string_equal(calls[i].status, "success");
        assert_non_null(calls[i].result);
    }
    store_call_list_free(calls, count);
    /* The child's node left: nothing of the parent's was touched. */
    store_session session;
    assert_int_equal(store_session_get(s, "shared", &session, error), CAP_OK);
    assert_int_equal(session.status, STORE_SESSION_PARKED);
    assert_int_equal(session.call_count, RACE_KEYS);
    /* Live on one node, the session's calls cannot begin on another: the
     * call would record the new owner's epoch and pass the fence. */
    store *other = NULL;
    assert_int_equal(store_open(f->url, &other, error), CAP_OK);
    assert_int_equal(store_session_claim(s, "shared", NULL, error), CAP_OK);
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(other, "shared", NULL, NULL, &call, &replayed, error),
                     STORE_EMOVED);
    assert_non_null(strstr(error, store_node(s)));
    store_close(other);
    store_close(s);
}

/* Nodes opening a new database at once migrate one after the other. */
static void test_postgres_concurrent_first_opens(void **state) {
    fixture *f = *state;
    pid_t children[4];
    for (int i = 0; i < 4; i++) {
        children[i] = fork();
        assert_true(children[i] >= 0);
        if (children[i] == 0) {
            store *s = NULL;
            char error[CAP_ERROR_SIZE];
            int result = store_open(f->url, &s, error);
            if (result != CAP_OK) fprintf(stderr, "child %d: %s\n", i, error);
            store_close(s);
            _exit(result == CAP_OK ? 0 : 1);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        assert_int_equal(waitpid(children[i], &status, 0), children[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    char versions[64];
    raw_query(f, "SELECT CAST(COUNT(*) AS TEXT) || ',' || CAST(MAX(version) AS TEXT)"
                 " FROM schema_version", versions, sizeof versions);
    char expected[32];
    snprintf(expected, sizeof expected, "%d,%d", SCHEMA_VERSION, SCHEMA_VERSION);
    assert_string_equal(versions, expected);
}

/* Two nodes race to claim sessions whose owner's lease has expired: for
 * each, exactly one wins (epoch 1, its node the owner), the other gets
 * STORE_EBUSY, and the dead owner's running call is interrupted. */
#define CLAIM_SESSIONS 20
/* read() until `size` bytes, end of file or an error other than EINTR: a
 * child's report, whatever the scheduling splits it into. */
static ssize_t read_whole(int fd, void *data, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, (char *)data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return n;
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* A racer: claims every session once told to go, reports, then keeps its
 * store (its lease) open until `done_fd` ends: a racer that closed its
 * store at once would release its lease, and the other, slower one would
 * rightly take over the sessions it had won. */
static void claim_child(const char *url, int ready_fd, int go_fd, int report_fd, int done_fd,
                        int done_write_fd) {
    close(done_write_fd); /* the parent's end: its close is the signal */
    store *s = NULL;
    char error[CAP_ERROR_SIZE];
    if (store_open(url, &s, error) != CAP_OK) _exit(2);
    char node[STORE_ID_SIZE];
    snprintf(node, sizeof node, "%s", store_node(s));
    char byte = 'r';
    if (write(ready_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1) _exit(3);
    int results[CLAIM_SESSIONS];
    for (int i = 0; i < CLAIM_SESSIONS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        int64_t epoch = 0;
        results[i] = store_session_claim(s, id, &epoch, error);
        if (results[i] == CAP_OK && epoch != 1) results[i] = -1;
    }
    if (write(report_fd, node, sizeof node) != sizeof node ||
        write(report_fd, results, sizeof results) != sizeof results)
        _exit(4);
    while (read(done_fd, &byte, 1) > 0) continue;
    store_close(s);
    _exit(0);
}

static void test_postgres_two_nodes_race_for_an_expired_lease(void **state) {
    fixture *f = *state;
    store *dead = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_call call;
    int replayed;
    for (int i = 0; i < CLAIM_SESSIONS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        assert_int_equal(store_session_create(dead, id, "", 0, error), CAP_OK);
        assert_int_equal(store_call_begin(dead, id, NULL, NULL, &call, &replayed, error), CAP_OK);
    }
    /* Its lease (the default 30 s) lasts while both racers open, so their
     * sweeps spare it; once both are ready it is cut to 1.5 s and runs out:
     * it never renews again.  Cutting it only then keeps a slow machine
     * from letting it expire during the racers' start-up. */
    store_set_clock(dead, NULL, NULL);
    int ready[2], go[2], done[2], reports[2][2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t children[2];
    for (int c = 0; c < 2; c++) {
        assert_int_equal(pipe(reports[c]), 0);
        children[c] = fork();
        assert_true(children[c] >= 0);
        if (children[c] == 0) claim_child(f->url, ready[1], go[0], reports[c][1], done[0], done[1]);
        close(reports[c][1]);
    }
    char byte;
    for (int c = 0; c < 2; c++) assert_int_equal(read(ready[0], &byte, 1), 1);
    store_set_lease(dead, 1500);
    assert_int_equal(store_renew(dead, NULL, error), CAP_OK);
    struct timespec expiry = {1, 600 * 1000 * 1000L};
    nanosleep(&expiry, NULL);
    assert_int_equal(write(go[1], "gg", 2), 2); /* both at once */
    char nodes[2][STORE_ID_SIZE];
    int results[2][CLAIM_SESSIONS];
    for (int c = 0; c < 2; c++) {
        /* A short report says how it ended (seen once under load: -1). */
        ssize_t node_bytes = read_whole(reports[c][0], nodes[c], sizeof nodes[c]);
        int node_errno = errno;
        ssize_t result_bytes = read_whole(reports[c][0], results[c], sizeof results[c]);
        if (node_bytes != (ssize_t)sizeof nodes[c] || result_bytes != (ssize_t)sizeof results[c]) {
            int status = 0;
            waitpid(children[c], &status, 0);
            fail_msg("child %d reported %zd + %zd bytes (%s); it ended with status %#x", c,
                     node_bytes, result_bytes, strerror(node_errno), (unsigned)status);
        }
        close(reports[c][0]);
    }
    close(done[1]); /* both reported: the racers may leave */
    for (int c = 0; c < 2; c++) {
        int status;
        assert_int_equal(waitpid(children[c], &status, 0), children[c]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]), close(done[0]);
    int wins[2] = {0, 0};
    for (int i = 0; i < CLAIM_SESSIONS; i++) {
        int winner = results[0][i] == CAP_OK ? 0 : 1;
        assert_int_equal(results[winner][i], CAP_OK);         /* one won... */
        assert_int_equal(results[1 - winner][i], STORE_EBUSY); /* ...and one only */
        wins[winner]++;
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        store_session session;
        assert_int_equal(store_session_get(dead, id, &session, error), CAP_OK);
        assert_int_equal(session.epoch, 1);
        assert_string_equal(session.owner, nodes[winner]);
        assert_int_equal(store_call_get(dead, id, 1, &call, error), CAP_OK);
        assert_string_equal(call.status, "interrupted");
    }
    print_message("claim race: %d and %d of %d sessions won\n", wins[0], wins[1], CLAIM_SESSIONS);
    /* The dead node's late commit is refused. */
    assert_int_equal(store_call_finish(dead, "r0", 1, "success", "{}", NULL, NULL, error),
                     STORE_ECONFLICT);
    store_close(dead);
}

/* --- tasks (the MCP Tasks extension) ---------------------------------------------- */

/* A task's row: working until finished once; a task left working by a
 * node that is gone reads failed with the message given; expired tasks are
 * not found. */
static void test_tasks(void **state) {
    fixture *f = *state;
    store *s = open_store(f);
    char error[CAP_ERROR_SIZE] = "";
    store_task task;
    assert_int_equal(store_task_create(s, "t1", "token:alice", 3600000, error), CAP_OK);
    assert_int_equal(store_task_create(s, "t1", "token:bob", 3600000, error), STORE_EEXIST);
    assert_int_equal(store_task_get(s, "t1", "gone", "{}", &task, error), CAP_OK);
    assert_string_equal(task.status, "working"); /* this node's: alive */
    assert_string_equal(task.principal, "token:alice");
    assert_null(task.payload);
    assert_int_equal(task.created_at, f->now);
    assert_int_equal(task.expires_at, f->now + 3600000);
    store_task_clear(&task);

    f->now += 10;
    assert_int_equal(store_task_finish(s, "t1", "completed", NULL, "{\"content\":[]}", error),
                     CAP_OK);
    /* Finished once: a late second outcome (a run cancelled meanwhile) is refused. */
    assert_int_equal(store_task_finish(s, "t1", "failed", "late", "{}", error), STORE_ECONFLICT);
    assert_int_equal(store_task_get(s, "t1", "gone", "{}", &task, error), CAP_OK);
    assert_string_equal(task.status, "completed");
    assert_string_equal(task.payload, "{\"content\":[]}");
    assert_null(task.status_message);
    assert_int_equal(task.updated_at, task.created_at + 10);
    store_task_clear(&task);

    assert_int_equal(store_task_create(s, "t2", "token:alice", 3600000, error), CAP_OK);
    assert_int_equal(store_task_get(s, "missing", "gone", "{}", &task, error), STORE_ENOTFOUND);
    store_close(s); /* t2 is left working by a node that is gone */

    s = open_store(f);
    assert_int_equal(store_task_get(s, "t2", "interrupted: gone", "{\"code\":-32603}", &task,
                                    error),
                     CAP_OK);
    assert_string_equal(task.status, "failed");
    assert_string_equal(task.status_message, "interrupted: gone");
    assert_string_equal(task.payload, "{\"code\":-32603}");
    store_task_clear(&task);
    /* Stored so: its late result from the dead node would be refused. */
    assert_int_equal(store_task_finish(s, "t2", "completed", NULL, "{}", error), STORE_ECONFLICT);
    assert_int_equal(store_task_get(s, "t1", "gone", "{}", &task, error), CAP_OK);
    assert_string_equal(task.status, "completed"); /* a finished one is kept as it was */
    store_task_clear(&task);

    /* Past the TTL a task is gone, and the next create deletes its row. */
    f->now += 3600000 + 1;
    assert_int_equal(store_task_get(s, "t1", "gone", "{}", &task, error), STORE_ENOTFOUND);
    assert_int_equal(store_task_create(s, "t3", "", 1000, error), CAP_OK);
    char rows[32] = "";
    store_close(s);
    database_sql(f->url, "SELECT CAST(COUNT(*) AS TEXT) FROM tasks", rows, sizeof rows);
    assert_string_equal(rows, "1");
    /* Names are checked as session ids are. */
    s = open_store(f);
    assert_int_equal(store_task_create(s, "", "p", 1000, error), CAP_EINVAL);
    store_close(s);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    /* Both backends. */
    const struct CMUnitTest common[] = {
        TEST(test_open_creates_current_schema),
        TEST(test_migration_from_version_1),
        TEST(test_failed_migration_changes_nothing),
        TEST(test_newer_schema_is_refused),
        TEST(test_sessions),
        TEST(test_expiry),
        TEST(test_calls),
        TEST(test_idempotency),
        TEST(test_blobs),
        TEST(test_corrupted_blob_is_a_clear_error),
        TEST(test_many_pages_are_checked_in_order),
        TEST(test_wanted_pages_come_in_runs),
        TEST(test_snapshot_committed_with_the_call),
        TEST(test_pages_shared_by_sessions_are_stored_once),
        TEST(test_fork),
        TEST(test_quota),
        TEST(test_kill_9_loses_no_acknowledged_commit),
        TEST(test_a_failure_at_any_backend_call_leaves_the_store_sound),
        TEST(test_session_claim_and_fencing),
        TEST(test_many_pages_in_batches),
        TEST(test_jobs_submit_and_idempotency),
        TEST(test_jobs_claim_steps_retries_dead),
        TEST(test_jobs_sleep_events_cancel),
        TEST(test_jobs_dead_node_swept_and_queue_limits),
        TEST(test_jobs_pruned_after_retention),
        TEST(test_jobs_claim_wait),
        TEST(test_jobs_commit_batch),
        TEST(test_tasks),
    };
    /* SQLite's own: the owner lock, the database file, a full disk under
     * the client's file-size limit. */
    const struct CMUnitTest sqlite_only[] = {
        TEST(test_open_refuses_bad_urls_and_a_second_owner),
        TEST(test_lock_is_not_inherited_by_children),
        TEST(test_garbage_file_is_a_clear_error),
        TEST(test_truncated_file_is_a_clear_error),
        TEST(test_full_disk_is_a_clear_error),
    };
    /* PostgreSQL's own: a server, several nodes. */
    const struct CMUnitTest postgres_only[] = {
        TEST(test_postgres_unreachable_at_open_is_a_clear_error),
        TEST(test_postgres_server_restarted_during_use),
        TEST(test_postgres_sweep_spares_live_nodes),
        TEST(test_postgres_two_processes_share_a_store),
        TEST(test_postgres_concurrent_first_opens),
        TEST(test_postgres_two_nodes_race_for_an_expired_lease),
        TEST(test_postgres_park_requests),
        TEST(test_postgres_a_commit_reusing_a_blob_being_collected_stores_it),
        TEST(test_postgres_a_page_named_by_a_blob_being_collected_is_not_found),
        TEST(test_postgres_collection_passes_over_a_blob_a_commit_reuses),
        TEST(test_postgres_sweep_waiting_for_a_claim_keeps_it),
        TEST(test_postgres_job_sweep_waiting_for_a_claim_keeps_it),
        TEST(test_postgres_job_sweeps_are_spaced),
    };
    size_t common_count = sizeof common / sizeof *common;
    struct CMUnitTest tests[64];
    memcpy(tests, common, sizeof common);
    memcpy(tests + common_count, sqlite_only, sizeof sqlite_only);
    kind = SQLITE;
    int failures = _cmocka_run_group_tests("store on SQLite", tests,
                                           common_count + sizeof sqlite_only / sizeof *sqlite_only,
                                           NULL, NULL);
    postgres_url = getenv("CAPSULE_TEST_POSTGRES");
    postgres_dir = getenv("CAPSULE_TEST_POSTGRES_DIR");
    if (!postgres_url || !postgres_url[0] || !postgres_dir || !postgres_dir[0]) {
        print_message("store on PostgreSQL: not run (CAPSULE_TEST_POSTGRES and "
                      "CAPSULE_TEST_POSTGRES_DIR unset; `make test-store` sets them)\n");
        return failures;
    }
    memcpy(tests + common_count, postgres_only, sizeof postgres_only);
    kind = POSTGRES;
    failures += _cmocka_run_group_tests("store on PostgreSQL", tests,
                                        common_count + sizeof postgres_only / sizeof *postgres_only,
                                        NULL, NULL);
    return failures;
}
