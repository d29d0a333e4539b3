/*
 * microhttpd.h — libmicrohttpd.so.12: MCP over HTTP, loaded when first needed.
 *
 * Include this instead of <microhttpd.h>: it declares the functions capsule
 * uses as pointers into a table that library_load_microhttpd() fills with
 * dlopen/dlsym, and #defines their names to those pointers, the way
 * sqlite3ext.h does for SQLite's loadable extensions.  Code calls them as
 * usual, after one library_load_microhttpd() on the path that reaches them.
 * Why: the library and what it pulls in cost milliseconds of dynamic
 * linking at every start, and most runs never use it (libraries.c).
 */
#ifndef CAP_LIBRARIES_MICROHTTPD_H
#define CAP_LIBRARIES_MICROHTTPD_H
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <microhttpd.h>

struct library_microhttpd {
    __typeof__(MHD_add_response_header) *MHD_add_response_header;
    __typeof__(MHD_create_response_from_buffer) *MHD_create_response_from_buffer;
    __typeof__(MHD_create_response_from_callback) *MHD_create_response_from_callback;
    __typeof__(MHD_destroy_response) *MHD_destroy_response;
    __typeof__(MHD_get_connection_info) *MHD_get_connection_info;
    __typeof__(MHD_get_daemon_info) *MHD_get_daemon_info;
    __typeof__(MHD_lookup_connection_value) *MHD_lookup_connection_value;
    __typeof__(MHD_queue_response) *MHD_queue_response;
    __typeof__(MHD_resume_connection) *MHD_resume_connection;
    __typeof__(MHD_start_daemon) *MHD_start_daemon;
    __typeof__(MHD_stop_daemon) *MHD_stop_daemon;
    __typeof__(MHD_suspend_connection) *MHD_suspend_connection;
};

extern struct library_microhttpd library_microhttpd;

/* Loads libmicrohttpd.so.12 once (thread-safe) and fills library_microhttpd.  0, or -1
 * with a message in `error` (at least 256 bytes) naming the library and
 * the Debian package that has it (libmicrohttpd12); a failure is remembered. */
int library_load_microhttpd(char *error);

#ifndef LIBRARIES_IMPLEMENTATION
#undef MHD_add_response_header
#define MHD_add_response_header (library_microhttpd.MHD_add_response_header)
#undef MHD_create_response_from_buffer
#define MHD_create_response_from_buffer (library_microhttpd.MHD_create_response_from_buffer)
#undef MHD_create_response_from_callback
#define MHD_create_response_from_callback (library_microhttpd.MHD_create_response_from_callback)
#undef MHD_destroy_response
#define MHD_destroy_response (library_microhttpd.MHD_destroy_response)
#undef MHD_get_connection_info
#define MHD_get_connection_info (library_microhttpd.MHD_get_connection_info)
#undef MHD_get_daemon_info
#define MHD_get_daemon_info (library_microhttpd.MHD_get_daemon_info)
#undef MHD_lookup_connection_value
#define MHD_lookup_connection_value (library_microhttpd.MHD_lookup_connection_value)
#undef MHD_queue_response
#define MHD_queue_response (library_microhttpd.MHD_queue_response)
#undef MHD_resume_connection
#define MHD_resume_connection (library_microhttpd.MHD_resume_connection)
#undef MHD_start_daemon
#define MHD_start_daemon (library_microhttpd.MHD_start_daemon)
#undef MHD_stop_daemon
#define MHD_stop_daemon (library_microhttpd.MHD_stop_daemon)
#undef MHD_suspend_connection
#define MHD_suspend_connection (library_microhttpd.MHD_suspend_connection)
#endif

#endif
