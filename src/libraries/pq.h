/*
 * pq.h — libpq.so.5: the PostgreSQL store, loaded when first needed.
 *
 * Include this instead of <libpq-fe.h>: it declares the functions capsule
 * uses as pointers into a table that library_load_pq() fills with
 * dlopen/dlsym, and #defines their names to those pointers, the way
 * sqlite3ext.h does for SQLite's loadable extensions.  Code calls them as
 * usual, after one library_load_pq() on the path that reaches them.
 * Why: the library and what it pulls in cost milliseconds of dynamic
 * linking at every start, and most runs never use it (libraries.c).
 */
#ifndef CAP_LIBRARIES_PQ_H
#define CAP_LIBRARIES_PQ_H
#include <libpq-fe.h>

struct library_pq {
    __typeof__(PQclear) *PQclear;
    __typeof__(PQcmdStatus) *PQcmdStatus;
    __typeof__(PQconnectdbParams) *PQconnectdbParams;
    __typeof__(PQconsumeInput) *PQconsumeInput;
    __typeof__(PQdb) *PQdb;
    __typeof__(PQerrorMessage) *PQerrorMessage;
    __typeof__(PQexec) *PQexec;
    __typeof__(PQexecParams) *PQexecParams;
    __typeof__(PQexecPrepared) *PQexecPrepared;
    __typeof__(PQfinish) *PQfinish;
    __typeof__(PQftype) *PQftype;
    __typeof__(PQgetisnull) *PQgetisnull;
    __typeof__(PQgetlength) *PQgetlength;
    __typeof__(PQgetvalue) *PQgetvalue;
    __typeof__(PQhost) *PQhost;
    __typeof__(PQnfields) *PQnfields;
    __typeof__(PQntuples) *PQntuples;
    __typeof__(PQprepare) *PQprepare;
    __typeof__(PQreset) *PQreset;
    __typeof__(PQresultErrorField) *PQresultErrorField;
    __typeof__(PQresultErrorMessage) *PQresultErrorMessage;
    __typeof__(PQresultStatus) *PQresultStatus;
    __typeof__(PQserverVersion) *PQserverVersion;
    __typeof__(PQsetNoticeProcessor) *PQsetNoticeProcessor;
    __typeof__(PQstatus) *PQstatus;
    __typeof__(PQtransactionStatus) *PQtransactionStatus;
    __typeof__(PQfreemem) *PQfreemem;
    __typeof__(PQnotifies) *PQnotifies;
    __typeof__(PQsocket) *PQsocket;
};

extern struct library_pq library_pq;

/* Loads libpq.so.5 once (thread-safe) and fills library_pq.  0, or -1
 * with a message in `error` (at least 256 bytes) naming the library and
 * the Debian package that has it (libpq5); a failure is remembered. */
int library_load_pq(char *error);

#ifndef LIBRARIES_IMPLEMENTATION
#undef PQclear
#define PQclear (library_pq.PQclear)
#undef PQcmdStatus
#define PQcmdStatus (library_pq.PQcmdStatus)
#undef PQconnectdbParams
#define PQconnectdbParams (library_pq.PQconnectdbParams)
#undef PQconsumeInput
#define PQconsumeInput (library_pq.PQconsumeInput)
#undef PQdb
#define PQdb (library_pq.PQdb)
#undef PQerrorMessage
#define PQerrorMessage (library_pq.PQerrorMessage)
#undef PQexec
#define PQexec (library_pq.PQexec)
#undef PQexecParams
#define PQexecParams (library_pq.PQexecParams)
#undef PQexecPrepared
#define PQexecPrepared (library_pq.PQexecPrepared)
#undef PQfinish
#define PQfinish (library_pq.PQfinish)
#undef PQftype
#define PQftype (library_pq.PQftype)
#undef PQgetisnull
#define PQgetisnull (library_pq.PQgetisnull)
#undef PQgetlength
#define PQgetlength (library_pq.PQgetlength)
#undef PQgetvalue
#define PQgetvalue (library_pq.PQgetvalue)
#undef PQhost
#define PQhost (library_pq.PQhost)
#undef PQnfields
#define PQnfields (library_pq.PQnfields)
#undef PQntuples
#define PQntuples (library_pq.PQntuples)
#undef PQprepare
#define PQprepare (library_pq.PQprepare)
#undef PQreset
#define PQreset (library_pq.PQreset)
#undef PQresultErrorField
#define PQresultErrorField (library_pq.PQresultErrorField)
#undef PQresultErrorMessage
#define PQresultErrorMessage (library_pq.PQresultErrorMessage)
#undef PQresultStatus
#define PQresultStatus (library_pq.PQresultStatus)
#undef PQserverVersion
#define PQserverVersion (library_pq.PQserverVersion)
#undef PQsetNoticeProcessor
#define PQsetNoticeProcessor (library_pq.PQsetNoticeProcessor)
#undef PQstatus
#define PQstatus (library_pq.PQstatus)
#undef PQtransactionStatus
#define PQtransactionStatus (library_pq.PQtransactionStatus)
#undef PQfreemem
#define PQfreemem (library_pq.PQfreemem)
#undef PQnotifies
#define PQnotifies (library_pq.PQnotifies)
#undef PQsocket
#define PQsocket (library_pq.PQsocket)
#endif

#endif
