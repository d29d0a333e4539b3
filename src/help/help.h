/*
 * help.h — `help`: a full-text index (SQLite FTS5, BM25) over what an agent
 * may need to read before it writes code: the /docs Markdown split at its
 * headings, the host functions and code-mode tools of the config's
 * registry, the recipes capsule ships (the Markdown of docs/recipes,
 * compiled in), CPython's own documentation (compiled in too) and the
 * metadata of the distributions installed for a run.
 *
 * The index lives in the host, in memory, built on the first search and
 * again after the docs or the registry change.  One search answers the MCP
 * tool `help`, cap_config_help and the guest's capsule.help() alike.
 */
#ifndef CAPSULE_HELP_H
#define CAPSULE_HELP_H

#include "capsule.h"

#define HELP_DEFAULT_LIMIT 5
#define HELP_MAX_LIMIT 20

/* A recipe compiled into the binary (generated from docs/recipes/). */
typedef struct help_recipe {
    const char *name; /* "csv.md" */
    const char *text;
} help_recipe;

extern const help_recipe help_recipes[];
extern const int help_recipe_count;

/* CPython's own documentation, compiled in (generated at build time by
 * tools/extract-python-docs.py from the guest's stdlib, parsed, never
 * run): the language reference topics, each public module's docstring
 * and the summaries of its functions, the built-ins. */
typedef struct help_python_doc {
    const char *path;  /* "pydoc:topics/with", "gzip", "builtins.enumerate" */
    const char *title; /* "Python module gzip: Functions that read and write gzipped files." */
    const char *text;
} help_python_doc;

extern const help_python_doc help_python_docs[];
extern const int help_python_doc_count;

/* The results for `query` as JSON: {"query": ..., "results": [{"title",
 * "path", "section", "kind", "snippet", "text", "score"}...]}, best first,
 * at most `limit` (0: HELP_DEFAULT_LIMIT).  Any text is a valid query: it
 * is reduced to quoted words, never FTS5 syntax.  CAP_OK and *json (the
 * caller frees it), or an error code and `error`. */
int help_search(cap_config *config, const char *principal, const char *query, int limit,
                char **json, char *error);

/* Indexes the distributions installed in an environment's image (its
 * *.dist-info METADATA: Summary and description, capped), for the later
 * searches of `principal` (NULL: "") in `config`: help finds "how do I use
 * openpyxl" once a run of the principal has installed openpyxl; other
 * principals do not learn that it did.  Distributions already indexed only
 * gain the principal; any failure only leaves them out.  Thread-safe. */
void help_add_environment(cap_config *config, int image_fd, const char *principal);

/* Drops the built index: the docs or the registry changed. */
void help_invalidate(cap_config *config);

/* Frees the index and its lock (cap_config_free). */
void help_free(cap_config *config);

#endif
