/*
 * backend.h — what a database must offer the store (store.c), in the shape
 * of SQLite's sqlite3_vfs: a struct of function pointers, one per backend
 * file (sqlite.c, postgres.c), chosen by the URL's scheme.
 *
 * The store's SQL is written once, in store.c, in the dialect both SQLite
 * (3.35+) and PostgreSQL accept: parameters are `$1`, `$2`, ... (SQLite binds
 * them by name), `INSERT ... ON CONFLICT DO NOTHING`, `RETURNING` instead of
 * "rows changed", integers for times and booleans.  Only the schema (the
 * migrations: types such as BLOB vs BYTEA, identity columns) and the
 * transaction statements differ, and a backend supplies them.
 *
 * Contract of every function: returns CAP_OK or a store code (store.h),
 * translated from the database's own errors (busy -> STORE_EBUSY, corrupt
 * file -> STORE_ECORRUPT, ...), with a message in `error` (CAP_ERROR_SIZE).
 */
#ifndef CAPSULE_STORE_BACKEND_H
#define CAPSULE_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum { STORE_NULL, STORE_INTEGER, STORE_TEXT, STORE_BLOB } store_type;

/* A parameter or a column.  Text and blob bytes are valid only during the
 * call (parameters) or the row callback (columns); text is not necessarily
 * NUL-terminated: use `size`. */
typedef struct store_value {
    store_type type;
    int64_t integer;
    const void *bytes;
    size_t size;
} store_value;

/* Called once per result row; a non-zero return stops the statement and is
 * returned by execute (with its message in `error`). */
typedef int (*store_row_function)(void *context, const store_value *columns, int count,
                                  char *error);

typedef struct store_backend {
    const char *scheme; /* the URL prefix: "sqlite:" */

    /* Schema migrations: migrations[i] brings version i to version i + 1
     * (several statements, no parameters).  store.c runs each in a write
     * transaction together with the schema_version row it adds. */
    const char *const *migrations;
    int migration_count;

    /* Opens the database at `location` (the URL without the scheme).
     * *exclusive = 1 when this connection is the database's only user until
     * closed (then rows left `running` are from a dead process, whatever
     * their node's lease says); 0 when other nodes may be using it (then
     * only the rows of nodes whose lease expired are). */
    int (*open)(const char *location, void **connection, int *exclusive, char *error);
    void (*close)(void *connection);

    /* write: the transaction takes the write lock now (SQLite: BEGIN
     * IMMEDIATE), so it never fails later for a lock it could not upgrade. */
    int (*begin)(void *connection, int write, char *error);
    int (*commit)(void *connection, char *error);
    void (*rollback)(void *connection);

    /* Runs one statement.  `sql` names a static string: backends may cache
     * the prepared statement under it. */
    int (*execute)(void *connection, const char *sql, const store_value *parameters,
                   int parameter_count, store_row_function row, void *context, char *error);

    /* Runs several statements without parameters (migrations). */
    int (*script)(void *connection, const char *sql, char *error);

    /* Optional (NULL: nothing to do).  Called first in each migration's
     * write transaction: serialises the migrations of processes opening the
     * same database at once when `begin` does not (PostgreSQL: an advisory
     * lock held until the transaction ends; SQLite's BEGIN IMMEDIATE does). */
    int (*lock_schema)(void *connection, char *error);

    /* The database's own full consistency check. */
    int (*check)(void *connection, char *error);

    /* Non-zero when SELECT ... FOR UPDATE SKIP LOCKED exists (PostgreSQL):
     * job claims (jobs.c) use it so that nodes claiming at once skip each
     * other's rows; without it (SQLite) a claim is one UPDATE in a write
     * transaction, which the database's single writer serialises. */
    int row_locks;

    /* Non-zero when NOTIFY exists (PostgreSQL): job submits and events
     * notify STORE_JOBS_CHANNEL, on which other nodes' runners listen
     * (listen.c). */
    int notifies;
} store_backend;

extern const store_backend store_sqlite_backend;
extern const store_backend store_postgres_backend;   /* "postgres://" */
extern const store_backend store_postgresql_backend; /* "postgresql://", the same */

/* store_open (store.h) with the backend given rather than chosen by the
 * URL's scheme, `location` being the URL without it; tests wrap a backend
 * to inject a failure into any of its calls.  The backend must outlive the
 * store. */
struct store;
int store_open_backend(const store_backend *backend, const char *location, struct store **out,
                       char *error);

#endif
