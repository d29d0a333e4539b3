/*
 * requirement.h — PEP 440 versions and specifiers, PEP 508 requirements and
 * markers, PEP 503 names: what wheel metadata and PEP 723 blocks are made
 * of, evaluated for the sandbox.
 *
 * The marker environment is what the guest (CPython 3.11.2 on wasm32-wasi)
 * itself reports through `platform` and `sys`:
 *   python_version "3.11", python_full_version "3.11.2", sys_platform "wasi",
 *   os_name "posix", platform_system "wasi", platform_machine "wasm32",
 *   platform_release "0.0.0", platform_version "0.0.0" (wasi-libc's uname),
 *   implementation_name "cpython", implementation_version "3.11.2",
 *   platform_python_implementation "CPython".
 *
 * The text comes from wheels, so every function is total: bounded sizes,
 * bounded nesting, ASCII only, an error (-1 and a one-line message) instead
 * of a guess.  Error buffers may be NULL or of size 0.
 */
#ifndef CAP_REQUIREMENT_H
#define CAP_REQUIREMENT_H

#include <stddef.h>

#define DEPS_NAME_MAX 128
#define DEPS_EXTRAS_MAX 16
#define DEPS_SPECIFIER_MAX 256
#define DEPS_MARKER_MAX 1024

/* PEP 503: lowercase, runs of "-_." become one "-".  Writes "" and returns
 * -1 for an empty name, characters outside [A-Za-z0-9._-], a name that does
 * not begin and end with a letter or digit (PEP 508), or one that does not
 * fit in out_size. */
int deps_normalize_name(const char *name, char *out, size_t out_size);

/* PEP 440 ordering: 0 and *order <0, 0, >0; -1 if either is not a version
 * (epochs, releases of up to 16 parts of up to 18 significant digits,
 * pre/post/dev in every spelling PEP 440 normalises, local labels). */
int deps_version_compare(const char *a, const char *b, int *order, char *error,
                         size_t error_size);
/* 1 for a pre-release or development release, 0 if not, -1 if invalid. */
int deps_version_is_prerelease(const char *version);

/* Whether `version` is in the comma-separated specifier set ("" is every
 * version): ==, != (both with .*), <, <=, >, >=, ~=, ===, with PEP 440's
 * exclusive-ordering and local-label rules.  Pre-releases match only with
 * allow_prereleases or when a ==, ===, ~=, <, <=, >, >= clause names one. */
int deps_specifier_contains(const char *specifier, const char *version, int allow_prereleases,
                            int *contains, char *error, size_t error_size);

/* A PEP 508 marker, for the sandbox; `extra_name` is the extra being
 * considered (NULL or "": none).  Versions compare as PEP 440 versions when
 * both sides are versions; otherwise ==, !=, ===, in and not in compare the
 * strings and an ordering comparison is an error.  Parentheses nest at most
 * 32 deep. */
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

/* `name [extras] (specifier) ; marker` or without the parentheses; direct
 * references (`name @ url`) are refused.  The specifier and the marker's
 * syntax are checked; anything longer than the fields is an error.  On -1
 * *out is zeroed. */
int deps_requirement_parse(const char *text, deps_requirement *out, char *error,
                           size_t error_size);
/* The marker (true when empty) evaluated with `extra_name`. */
int deps_requirement_applies(const deps_requirement *requirement, const char *extra_name,
                             int *applies, char *error, size_t error_size);

#endif
