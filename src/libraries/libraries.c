/*
 * libraries.c — the shared libraries capsule loads only when a run needs
 * them (curl.h, pq.h, microhttpd.h, zip.h, sqlite.h).
 *
 * Linked directly, libcurl, libpq and libmicrohttpd bring in some thirty
 * more (GnuTLS, Kerberos, LDAP, SSH, …) whose loading and relocation was
 * most of `capsule run -c pass`'s time (≈ 6 of 10 ms) though a plain run
 * uses none of them.  Each is now dlopen'ed by its SONAME on the first call
 * of library_load_NAME(), which fills the table the header's #defines
 * point at; the result (success or the error) is kept for the process.
 */
#define LIBRARIES_IMPLEMENTATION
#include "curl.h"
#include "microhttpd.h"
#include "pq.h"
#include "sqlite.h"
#include "zip.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct library_curl library_curl;
struct library_pq library_pq;
struct library_microhttpd library_microhttpd;
struct library_zip library_zip;
struct library_sqlite library_sqlite;

typedef struct library {
    const char *soname;
    const char *package; /* Debian's, for the error message */
    void **table;        /* the struct library_NAME, as pointers */
    const char *symbols; /* its members' names, space-separated, in order */
    pthread_once_t once;
    int failed;
    char error[256];
    void (*after)(void); /* called once loaded */
} library;

static void curl_after(void) {
    /* Not thread-safe, so here, once, before any transfer. */
    library_curl.curl_global_init(CURL_GLOBAL_DEFAULT);
}

#define SYMBOLS_OF(table) (sizeof(table) / sizeof(void *))

static library curl = {"libcurl.so.4", "libcurl4", (void **)&library_curl,
                       "curl_easy_cleanup curl_easy_getinfo curl_easy_init curl_easy_perform "
                       "curl_easy_setopt curl_easy_strerror curl_free curl_global_init "
                       "curl_multi_add_handle curl_multi_cleanup curl_multi_info_read "
                       "curl_multi_init curl_multi_perform curl_multi_poll "
                       "curl_multi_remove_handle curl_slist_append curl_slist_free_all curl_url "
                       "curl_url_cleanup curl_url_get curl_url_set",
                       PTHREAD_ONCE_INIT, 0, "", curl_after};
static library pq = {"libpq.so.5", "libpq5", (void **)&library_pq,
                     "PQclear PQcmdStatus PQconnectdbParams PQconsumeInput PQdb PQerrorMessage "
                     "PQexec PQexecParams PQexecPrepared PQfinish PQftype PQgetisnull "
                     "PQgetlength PQgetvalue PQhost PQnfields PQntuples PQprepare PQreset "
                     "PQresultErrorField PQresultErrorMessage PQresultStatus PQserverVersion "
                     "PQsetNoticeProcessor PQstatus PQtransactionStatus PQfreemem PQnotifies "
                     "PQsocket",
                     PTHREAD_ONCE_INIT, 0, "", NULL};
static library microhttpd = {"libmicrohttpd.so.12", "libmicrohttpd12",
                             (void **)&library_microhttpd,
                             "MHD_add_response_header MHD_create_response_from_buffer "
                             "MHD_create_response_from_callback MHD_destroy_response "
                             "MHD_get_connection_info MHD_get_daemon_info "
                             "MHD_lookup_connection_value MHD_queue_response "
                             "MHD_resume_connection MHD_start_daemon MHD_stop_daemon "
                             "MHD_suspend_connection",
                             PTHREAD_ONCE_INIT, 0, "", NULL};
static library zip = {"libzip.so.4", "libzip4", (void **)&library_zip,
                      "zip_discard zip_error_fini zip_error_init zip_error_strerror zip_fclose "
                      "zip_file_get_external_attributes zip_fopen_index zip_fread "
                      "zip_get_num_entries zip_open_from_source zip_source_buffer_create "
                      "zip_source_free zip_stat_index",
                      PTHREAD_ONCE_INIT, 0, "", NULL};

static library sqlite = {"libsqlite3.so.0", "libsqlite3-0", (void **)&library_sqlite,
                         "sqlite3_bind_blob64 sqlite3_bind_int sqlite3_bind_int64 "
                         "sqlite3_bind_null sqlite3_bind_parameter_count "
                         "sqlite3_bind_parameter_name sqlite3_bind_text sqlite3_bind_text64 "
                         "sqlite3_bind_zeroblob sqlite3_busy_timeout sqlite3_clear_bindings "
                         "sqlite3_close sqlite3_column_blob sqlite3_column_bytes "
                         "sqlite3_column_count sqlite3_column_double sqlite3_column_int64 "
                         "sqlite3_column_text sqlite3_column_type sqlite3_errmsg sqlite3_errstr "
                         "sqlite3_exec sqlite3_extended_result_codes sqlite3_finalize "
                         "sqlite3_get_autocommit sqlite3_open_v2 sqlite3_prepare_v2 "
                         "sqlite3_prepare_v3 sqlite3_reset sqlite3_step sqlite3_system_errno",
                         PTHREAD_ONCE_INIT, 0, "", NULL};

/* dlopen, then one dlsym per name into the table's slots in order (the
 * struct's members are all function pointers, declared in this order). */
static void load(library *l, size_t slots) {
    void *handle = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
    const char *at = l->symbols;
    size_t filled = 0;
    while (handle && *at && filled < slots) {
        char name[64];
        size_t length = strcspn(at, " ");
        snprintf(name, sizeof name, "%.*s", (int)length, at);
        /* POSIX: a function pointer may be converted from dlsym's void *. */
        void *symbol = dlsym(handle, name);
        if (!symbol) {
            snprintf(l->error, sizeof l->error, "%s lacks %s (Debian package %s)", l->soname, name,
                     l->package);
            l->failed = 1;
            return;
        }
        l->table[filled++] = symbol;
        at += length;
        while (*at == ' ') at++;
    }
    if (!handle || filled != slots || *at) {
        const char *reason = handle ? "symbol list and table differ" : dlerror();
        snprintf(l->error, sizeof l->error, "cannot load %s (Debian package %s): %s", l->soname,
                 l->package, reason ? reason : "unknown error");
        l->failed = 1;
        return;
    }
    if (l->after) l->after();
}

static void load_curl(void) { load(&curl, SYMBOLS_OF(library_curl)); }
static void load_pq(void) { load(&pq, SYMBOLS_OF(library_pq)); }
static void load_microhttpd(void) { load(&microhttpd, SYMBOLS_OF(library_microhttpd)); }
static void load_zip(void) { load(&zip, SYMBOLS_OF(library_zip)); }
static void load_sqlite(void) { load(&sqlite, SYMBOLS_OF(library_sqlite)); }

static int loaded(library *l, void (*once)(void), char *error) {
    pthread_once(&l->once, once);
    if (!l->failed) return 0;
    if (error) snprintf(error, 256, "%s", l->error);
    return -1;
}

int library_load_curl(char *error) { return loaded(&curl, load_curl, error); }
int library_load_pq(char *error) { return loaded(&pq, load_pq, error); }
int library_load_microhttpd(char *error) { return loaded(&microhttpd, load_microhttpd, error); }
int library_load_zip(char *error) { return loaded(&zip, load_zip, error); }
int library_load_sqlite(char *error) { return loaded(&sqlite, load_sqlite, error); }
