/*
 * sqlite.h — libsqlite3.so.0: the store's SQLite backend and help's index,
 * loaded when first needed.
 *
 * Include this instead of <sqlite3.h>, as zip.h has it for libzip: the
 * functions capsule uses are pointers into a table that
 * library_load_sqlite() fills, and their names #defined to them.  Why:
 * relocating libsqlite3 cost every `capsule run` ≈ 1 ms on the 2-core test
 * machine, and a run without a session or a help search never uses it.
 */
#ifndef CAP_LIBRARIES_SQLITE_H
#define CAP_LIBRARIES_SQLITE_H
#include <sqlite3.h>

struct library_sqlite {
    __typeof__(sqlite3_bind_blob64) *sqlite3_bind_blob64;
    __typeof__(sqlite3_bind_int) *sqlite3_bind_int;
    __typeof__(sqlite3_bind_int64) *sqlite3_bind_int64;
    __typeof__(sqlite3_bind_null) *sqlite3_bind_null;
    __typeof__(sqlite3_bind_parameter_count) *sqlite3_bind_parameter_count;
    __typeof__(sqlite3_bind_parameter_name) *sqlite3_bind_parameter_name;
    __typeof__(sqlite3_bind_text) *sqlite3_bind_text;
    __typeof__(sqlite3_bind_text64) *sqlite3_bind_text64;
    __typeof__(sqlite3_bind_zeroblob) *sqlite3_bind_zeroblob;
    __typeof__(sqlite3_busy_timeout) *sqlite3_busy_timeout;
    __typeof__(sqlite3_clear_bindings) *sqlite3_clear_bindings;
    __typeof__(sqlite3_close) *sqlite3_close;
    __typeof__(sqlite3_column_blob) *sqlite3_column_blob;
    __typeof__(sqlite3_column_bytes) *sqlite3_column_bytes;
    __typeof__(sqlite3_column_count) *sqlite3_column_count;
    __typeof__(sqlite3_column_double) *sqlite3_column_double;
    __typeof__(sqlite3_column_int64) *sqlite3_column_int64;
    __typeof__(sqlite3_column_text) *sqlite3_column_text;
    __typeof__(sqlite3_column_type) *sqlite3_column_type;
    __typeof__(sqlite3_errmsg) *sqlite3_errmsg;
    __typeof__(sqlite3_errstr) *sqlite3_errstr;
    __typeof__(sqlite3_exec) *sqlite3_exec;
    __typeof__(sqlite3_extended_result_codes) *sqlite3_extended_result_codes;
    __typeof__(sqlite3_finalize) *sqlite3_finalize;
    __typeof__(sqlite3_get_autocommit) *sqlite3_get_autocommit;
    __typeof__(sqlite3_open_v2) *sqlite3_open_v2;
    __typeof__(sqlite3_prepare_v2) *sqlite3_prepare_v2;
    __typeof__(sqlite3_prepare_v3) *sqlite3_prepare_v3;
    __typeof__(sqlite3_reset) *sqlite3_reset;
    __typeof__(sqlite3_step) *sqlite3_step;
    __typeof__(sqlite3_system_errno) *sqlite3_system_errno;
};

extern struct library_sqlite library_sqlite;

/* Loads libsqlite3.so.0 once (thread-safe) and fills library_sqlite.  0,
 * or -1 with a message in `error` (at least 256 bytes) naming the library
 * and the Debian package that has it (libsqlite3-0); a failure is
 * remembered. */
int library_load_sqlite(char *error);

#ifndef LIBRARIES_IMPLEMENTATION
#undef sqlite3_bind_blob64
#define sqlite3_bind_blob64 (library_sqlite.sqlite3_bind_blob64)
#undef sqlite3_bind_int
#define sqlite3_bind_int (library_sqlite.sqlite3_bind_int)
#undef sqlite3_bind_int64
#define sqlite3_bind_int64 (library_sqlite.sqlite3_bind_int64)
#undef sqlite3_bind_null
#define sqlite3_bind_null (library_sqlite.sqlite3_bind_null)
#undef sqlite3_bind_parameter_count
#define sqlite3_bind_parameter_count (library_sqlite.sqlite3_bind_parameter_count)
#undef sqlite3_bind_parameter_name
#define sqlite3_bind_parameter_name (library_sqlite.sqlite3_bind_parameter_name)
#undef sqlite3_bind_text
#define sqlite3_bind_text (library_sqlite.sqlite3_bind_text)
#undef sqlite3_bind_text64
#define sqlite3_bind_text64 (library_sqlite.sqlite3_bind_text64)
#undef sqlite3_bind_zeroblob
#define sqlite3_bind_zeroblob (library_sqlite.sqlite3_bind_zeroblob)
#undef sqlite3_busy_timeout
#define sqlite3_busy_timeout (library_sqlite.sqlite3_busy_timeout)
#undef sqlite3_clear_bindings
#define sqlite3_clear_bindings (library_sqlite.sqlite3_clear_bindings)
#undef sqlite3_close
#define sqlite3_close (library_sqlite.sqlite3_close)
#undef sqlite3_column_blob
#define sqlite3_column_blob (library_sqlite.sqlite3_column_blob)
#undef sqlite3_column_bytes
#define sqlite3_column_bytes (library_sqlite.sqlite3_column_bytes)
#undef sqlite3_column_count
#define sqlite3_column_count (library_sqlite.sqlite3_column_count)
#undef sqlite3_column_double
#define sqlite3_column_double (library_sqlite.sqlite3_column_double)
#undef sqlite3_column_int64
#define sqlite3_column_int64 (library_sqlite.sqlite3_column_int64)
#undef sqlite3_column_text
#define sqlite3_column_text (library_sqlite.sqlite3_column_text)
#undef sqlite3_column_type
#define sqlite3_column_type (library_sqlite.sqlite3_column_type)
#undef sqlite3_errmsg
#define sqlite3_errmsg (library_sqlite.sqlite3_errmsg)
#undef sqlite3_errstr
#define sqlite3_errstr (library_sqlite.sqlite3_errstr)
#undef sqlite3_exec
#define sqlite3_exec (library_sqlite.sqlite3_exec)
#undef sqlite3_extended_result_codes
#define sqlite3_extended_result_codes (library_sqlite.sqlite3_extended_result_codes)
#undef sqlite3_finalize
#define sqlite3_finalize (library_sqlite.sqlite3_finalize)
#undef sqlite3_get_autocommit
#define sqlite3_get_autocommit (library_sqlite.sqlite3_get_autocommit)
#undef sqlite3_open_v2
#define sqlite3_open_v2 (library_sqlite.sqlite3_open_v2)
#undef sqlite3_prepare_v2
#define sqlite3_prepare_v2 (library_sqlite.sqlite3_prepare_v2)
#undef sqlite3_prepare_v3
#define sqlite3_prepare_v3 (library_sqlite.sqlite3_prepare_v3)
#undef sqlite3_reset
#define sqlite3_reset (library_sqlite.sqlite3_reset)
#undef sqlite3_step
#define sqlite3_step (library_sqlite.sqlite3_step)
#undef sqlite3_system_errno
#define sqlite3_system_errno (library_sqlite.sqlite3_system_errno)
#endif

#endif
