/*
 * store_internal.h — what store.c lends the store's other files (jobs.c):
 * its statement runner, its write transactions and its clock, so that every
 * table is reached through the one backend and the one connection of a
 * handle.  Not for code outside src/store/.
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
/* The store's clock (store_set_clock), in milliseconds since the epoch. */
int64_t store_internal_now(store *store);
const store_backend *store_internal_backend(const store *store);

#endif
