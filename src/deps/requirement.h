/*
 * requirement.h — PEP 440 versions and specifiers, PEP 508 requirements and
 * markers, PEP 503 names: what wheel metadata and PEP 723 blocks are made
 * of, evaluated for the sandbox (CPython 3.11.2 on wasm32-wasi:
 * sys_platform "wasi", os_name "posix", platform_machine "wasm32").
 *
 * The text comes from wheels, so every function is total: bounded sizes,
 * bounded nesting, an error (-1 and a one-line message) instead of a guess.
 * Error buffers may be NULL.
 */
#ifndef CAP_REQUIREMENT_H
#define CAP_REQUIREMENT_H

#include <stddef.h>

#define DEPS_NAME_MAX 128
#define DEPS_EXTRAS_MAX 16
#define DEPS_SPECIFIER_MAX 256
#define DEPS_MARKER_MAX 1024

/* PEP 503: lowercase, runs of "-_." become "-".  -1 for an empty name,
 * other characters, or one that does not fit. */
int deps_normalize_name(const char *name, char *out, size_t out_size);

/* PEP 440 ordering: *order <0, 0, >0.  -1 if either is not a version. */
int deps_version_compare(const char *a, const char *b, int *order, char *error,
                         size_t error_size);
/* 1 for a pre-release or development release, 0 if not, -1 if invalid. */
int deps_version_is_prerelease(const char *version);

/* Whether `version` is in the comma-separated specifier set ("" is every
 * version).  Pre-releases match only with allow_prereleases or when a
 * clause names one. */
int deps_specifier_contains(const char *specifier, const char *version, int allow_prereleases,
                            int *contains, char *error, size_t error_size);

/* A PEP 508 marker, for the sandbox; `extra_name` is the extra being
 * considered (NULL or "": none). */
int deps_marker_evaluate(const char *marker, const char *extra_name, int *result, char *error,
                         size_t error_size);

typedef struct deps_requirement {
    char name[DEPS_NAME_MAX];                    /* as written */
    char normalized[DEPS_NAME_MAX];              /* PEP 503 */
    char extras[DEPS_EXTRAS_MAX][DEPS_NAME_MAX]; /* normalised */
    int extra_count;
    char specifier[DEPS_SPECIFIER_MAX];          /* ">=1.0,<2" (no spaces); "" for any */
    char marker[DEPS_MARKER_MAX];                /* after ';', trimmed; "" for none */
} deps_requirement;

/* `name [extras] (specifier) ; marker`; direct references (`name @ url`)
 * are refused.  The specifier and the marker's syntax are checked. */
int deps_requirement_parse(const char *text, deps_requirement *out, char *error,
                           size_t error_size);
/* The marker (true when empty) evaluated with `extra_name`. */
int deps_requirement_applies(const deps_requirement *requirement, const char *extra_name,
                             int *applies, char *error, size_t error_size);

#endif
