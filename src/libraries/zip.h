/*
 * zip.h — libzip.so.4: reading wheels, loaded when first needed.
 *
 * Include this instead of <zip.h>: it declares the functions capsule
 * uses as pointers into a table that library_load_zip() fills with
 * dlopen/dlsym, and #defines their names to those pointers, the way
 * sqlite3ext.h does for SQLite's loadable extensions.  Code calls them as
 * usual, after one library_load_zip() on the path that reaches them.
 * Why: the library and what it pulls in cost milliseconds of dynamic
 * linking at every start, and most runs never use it (libraries.c).
 */
#ifndef CAP_LIBRARIES_ZIP_H
#define CAP_LIBRARIES_ZIP_H
#include <zip.h>

struct library_zip {
    __typeof__(zip_discard) *zip_discard;
    __typeof__(zip_error_fini) *zip_error_fini;
    __typeof__(zip_error_init) *zip_error_init;
    __typeof__(zip_error_strerror) *zip_error_strerror;
    __typeof__(zip_fclose) *zip_fclose;
    __typeof__(zip_file_get_external_attributes) *zip_file_get_external_attributes;
    __typeof__(zip_fopen_index) *zip_fopen_index;
    __typeof__(zip_fread) *zip_fread;
    __typeof__(zip_get_num_entries) *zip_get_num_entries;
    __typeof__(zip_open_from_source) *zip_open_from_source;
    __typeof__(zip_source_buffer_create) *zip_source_buffer_create;
    __typeof__(zip_source_free) *zip_source_free;
    __typeof__(zip_stat_index) *zip_stat_index;
};

extern struct library_zip library_zip;

/* Loads libzip.so.4 once (thread-safe) and fills library_zip.  0, or -1
 * with a message in `error` (at least 256 bytes) naming the library and
 * the Debian package that has it (libzip4); a failure is remembered. */
int library_load_zip(char *error);

#ifndef LIBRARIES_IMPLEMENTATION
#undef zip_discard
#define zip_discard (library_zip.zip_discard)
#undef zip_error_fini
#define zip_error_fini (library_zip.zip_error_fini)
#undef zip_error_init
#define zip_error_init (library_zip.zip_error_init)
#undef zip_error_strerror
#define zip_error_strerror (library_zip.zip_error_strerror)
#undef zip_fclose
#define zip_fclose (library_zip.zip_fclose)
#undef zip_file_get_external_attributes
#define zip_file_get_external_attributes (library_zip.zip_file_get_external_attributes)
#undef zip_fopen_index
#define zip_fopen_index (library_zip.zip_fopen_index)
#undef zip_fread
#define zip_fread (library_zip.zip_fread)
#undef zip_get_num_entries
#define zip_get_num_entries (library_zip.zip_get_num_entries)
#undef zip_open_from_source
#define zip_open_from_source (library_zip.zip_open_from_source)
#undef zip_source_buffer_create
#define zip_source_buffer_create (library_zip.zip_source_buffer_create)
#undef zip_source_free
#define zip_source_free (library_zip.zip_source_free)
#undef zip_stat_index
#define zip_stat_index (library_zip.zip_stat_index)
#endif

#endif
