/*
 * store_internal.h — what store.c lends the store's other files (jobs.c):
 * its statement runner and its write transactions (its clock is store.h's
 * store_time), so that every table is reached through the one backend and
 * the one connection of a handle.  Not for code outside src/store/.
 */
#ifndef CAPSULE_STORE_INTERNAL_H
#define CAPSULE_STORE_INTERNAL_H

#include "backend.h"
#include "store.h"

/* Runs one statement (`sql` a static string) through the handle's backend. */
int store_internal_execute(store *store, const char *sql, const store_value *parameters,
                           int count, store_row_function row, void *context, char *error);
/* Begins a write transaction; store_internal_write_end commits it when
 * `result` is CAP_OK (else, or when the commit fails, rolls it back) and
 * returns the outcome. */
int store_internal_write_begin(store *store, char *error);
int store_internal_write_end(store *store, int result, char *error);
const store_backend *store_internal_backend(const store *store);
/* When this handle last swept dead job attempts (jobs.c), in store time;
 * 0: never. */
int64_t *store_internal_jobs_swept_at(store *store);

/* Shared helpers of the store's files.  store_fail writes "store: " and the
 * message into `error` (CAP_ERROR_SIZE; NULL: none) and returns `code`;
 * store_check_name refuses a missing name, or one of STORE_ID_SIZE bytes or
 * more (or empty, unless allowed); store_copy_text copies a text column
 * into a fixed buffer, cut to fit ("" for another type);
 * store_duplicate_text a malloc'd copy (NULL for another type, or out of
 * memory). */
int store_fail(char *error, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
int store_check_name(const char *value, const char *what, int empty_allowed, char *error);
void store_copy_text(char *destination, size_t size, const store_value *value);
char *store_duplicate_text(const store_value *value);

#endif
