/*
 * curl.h — libcurl.so.4: HTTP fetches (/network, host functions over HTTP,
 * describe, package indexes, code mode), loaded when first needed.
 *
 * Include this instead of <curl/curl.h>: it declares the functions capsule
 * uses as pointers into a table that library_load_curl() fills with
 * dlopen/dlsym, and #defines their names to those pointers, the way
 * sqlite3ext.h does for SQLite's loadable extensions.  Code calls them as
 * usual, after one library_load_curl() on the path that reaches them.
 * Why: the library and what it pulls in cost milliseconds of dynamic
 * linking at every start, and most runs never use it (libraries.c).
 */
#ifndef CAP_LIBRARIES_CURL_H
#define CAP_LIBRARIES_CURL_H
/* curl.h's type-checking macros call the function by name: off, since the
 * names become pointers below (each name is #undef'd first). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

struct library_curl {
    __typeof__(curl_easy_cleanup) *curl_easy_cleanup;
    __typeof__(curl_easy_getinfo) *curl_easy_getinfo;
    __typeof__(curl_easy_init) *curl_easy_init;
    __typeof__(curl_easy_perform) *curl_easy_perform;
    __typeof__(curl_easy_setopt) *curl_easy_setopt;
    __typeof__(curl_easy_strerror) *curl_easy_strerror;
    __typeof__(curl_free) *curl_free;
    __typeof__(curl_global_init) *curl_global_init;
    __typeof__(curl_multi_add_handle) *curl_multi_add_handle;
    __typeof__(curl_multi_cleanup) *curl_multi_cleanup;
    __typeof__(curl_multi_info_read) *curl_multi_info_read;
    __typeof__(curl_multi_init) *curl_multi_init;
    __typeof__(curl_multi_perform) *curl_multi_perform;
    __typeof__(curl_multi_poll) *curl_multi_poll;
    __typeof__(curl_multi_remove_handle) *curl_multi_remove_handle;
    __typeof__(curl_slist_append) *curl_slist_append;
    __typeof__(curl_slist_free_all) *curl_slist_free_all;
    __typeof__(curl_url) *curl_url;
    __typeof__(curl_url_cleanup) *curl_url_cleanup;
    __typeof__(curl_url_get) *curl_url_get;
    __typeof__(curl_url_set) *curl_url_set;
};

extern struct library_curl library_curl;

/* Loads libcurl.so.4 once (thread-safe) and fills library_curl.  0, or -1
 * with a message in `error` (at least 256 bytes) naming the library and
 * the Debian package that has it (libcurl4); a failure is remembered. */
int library_load_curl(char *error);

#ifndef LIBRARIES_IMPLEMENTATION
#undef curl_easy_cleanup
#define curl_easy_cleanup (library_curl.curl_easy_cleanup)
#undef curl_easy_getinfo
#define curl_easy_getinfo (library_curl.curl_easy_getinfo)
#undef curl_easy_init
#define curl_easy_init (library_curl.curl_easy_init)
#undef curl_easy_perform
#define curl_easy_perform (library_curl.curl_easy_perform)
#undef curl_easy_setopt
#define curl_easy_setopt (library_curl.curl_easy_setopt)
#undef curl_easy_strerror
#define curl_easy_strerror (library_curl.curl_easy_strerror)
#undef curl_free
#define curl_free (library_curl.curl_free)
#undef curl_global_init
#define curl_global_init (library_curl.curl_global_init)
#undef curl_multi_add_handle
#define curl_multi_add_handle (library_curl.curl_multi_add_handle)
#undef curl_multi_cleanup
#define curl_multi_cleanup (library_curl.curl_multi_cleanup)
#undef curl_multi_info_read
#define curl_multi_info_read (library_curl.curl_multi_info_read)
#undef curl_multi_init
#define curl_multi_init (library_curl.curl_multi_init)
#undef curl_multi_perform
#define curl_multi_perform (library_curl.curl_multi_perform)
#undef curl_multi_poll
#define curl_multi_poll (library_curl.curl_multi_poll)
#undef curl_multi_remove_handle
#define curl_multi_remove_handle (library_curl.curl_multi_remove_handle)
#undef curl_slist_append
#define curl_slist_append (library_curl.curl_slist_append)
#undef curl_slist_free_all
#define curl_slist_free_all (library_curl.curl_slist_free_all)
#undef curl_url
#define curl_url (library_curl.curl_url)
#undef curl_url_cleanup
#define curl_url_cleanup (library_curl.curl_url_cleanup)
#undef curl_url_get
#define curl_url_get (library_curl.curl_url_get)
#undef curl_url_set
#define curl_url_set (library_curl.curl_url_set)
#endif

#endif
