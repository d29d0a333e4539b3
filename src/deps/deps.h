/*
 * deps.h — dependencies of guest programs, found and installed by the host.
 *
 * The guest's runner reads the program's imports and PEP 723 block and asks
 * for them (a 'D' frame).  The host resolves the request against its
 * sources (wheel directories, a PEP 503/691 index, host site-packages),
 * unpacks pure-Python distributions into one read-only image and hands the
 * worker a descriptor of it, mounted at site-packages.  The sandbox never
 * sees a socket or a host path.  See docs/dependencies.md.
 */
#ifndef CAP_DEPS_H
#define CAP_DEPS_H

#include <stddef.h>

#include "../vfs/vfs.h"
#include "requirement.h"

#define DEPS_MESSAGE_SIZE 512

typedef struct deps_resolver deps_resolver;

deps_resolver *deps_resolver_new(void);
void deps_resolver_free(deps_resolver *resolver);
/* Sources, consulted in the order they are added.  0, or -1 with a message. */
int deps_add_wheel_directory(deps_resolver *resolver, const char *path, char *error);
int deps_add_index(deps_resolver *resolver, const char *url, char *error);
int deps_add_site_packages(deps_resolver *resolver, const char *path, char *error);
/* Downloaded wheels and built environments are kept there across
 * processes; without one, environments live in memory (memfd). */
int deps_set_cache_directory(deps_resolver *resolver, const char *path, char *error);
int deps_source_count(const deps_resolver *resolver);

/* The cached environment `key` (64 hex digits), checked to be an image:
 * a read-only descriptor, or a negative errno (-ENOENT when the cache does
 * not have it, or there is no cache).  Durable sessions mount again what
 * their worker had mounted. */
int deps_open_environment(const deps_resolver *resolver, const char *key);

/* A line of news ("resolving pypdf"); cap_run_options.on_progress's shape. */
typedef void (*deps_progress_fn)(void *userdata, const char *message);

/* What a program needs: PEP 508 requirements (from a PEP 723 block), and
 * top-level import names, mapped to distributions; an optional import (one
 * guarded by `except ImportError`) that no source has is skipped. */
typedef struct deps_request {
    char **requirements;
    size_t requirement_count;
    char **imports;
    size_t import_count;
    char **optional_imports;
    size_t optional_count;
    char *requires_python; /* PEP 723 requires-python, or NULL */
} deps_request;

typedef struct deps_environment {
    int fd;             /* read-only image; -1 when nothing is installed */
    char key[65];       /* sha256 of what is in it: equal keys, equal content */
    char **installed;   /* "name==version", sorted */
    size_t installed_count;
    char **notes;       /* what the result should tell, e.g. accelerators left out */
    size_t note_count;
    int needs_bytecode; /* built just now, without .pyc: see deps_finish_environment */
} deps_environment;

/* Resolves and installs; thread-safe (one resolution at a time per
 * resolver).  0 with *out filled (the caller owns it), or -1 with *message
 * (malloc'd): one line per package that failed. */
int deps_prepare(deps_resolver *resolver, const deps_request *request, deps_progress_fn progress,
                 void *userdata, deps_environment *out, char **message);
void deps_environment_free(deps_environment *environment);

/* A freshly built environment has sources only.  Its caller compiles them
 * (in a sandbox: the host runs no Python) and hands back the .pyc files,
 * paths relative to site-packages, each under a __pycache__ directory; the
 * environment's image is then replaced by one with them, in the cache and
 * in memory, and environment->fd with it.  With no files (compiling
 * failed) the environment is kept as it is.  0, or -1 with a message. */
typedef struct deps_file {
    const char *path;
    const unsigned char *data;
    size_t size;
} deps_file;
int deps_finish_environment(deps_resolver *resolver, deps_environment *environment,
                            const deps_file *files, size_t count, char *message);

/* --- wheels (wheel.c) -------------------------------------------------------- */

typedef struct wheel_name {
    char name[DEPS_NAME_MAX];
    char version[64];
    char python_tag[64], abi_tag[64], platform_tag[128];
} wheel_name;

/* "name-version(-build)?-python-abi-platform.whl"; 0 or -1. */
int wheel_parse_filename(const char *filename, wheel_name *out);
/* Pure Python for CPython 3: abi "none", platform "any", a py3 tag. */
int wheel_is_pure(const wheel_name *name);
/* The wheel's *.dist-info/METADATA (malloc'd, NUL-terminated). */
int wheel_metadata(const unsigned char *data, size_t size, char **metadata, char *message);
/* Unpacks the wheel's files into `builder` (purelib/platlib data moved to
 * the root), refusing unsafe entries: absolute or ".." paths, symbolic
 * links, and sizes or ratios of a zip bomb.  0 or -1 with a message. */
int wheel_unpack(const unsigned char *data, size_t size, vfs_image_builder *builder,
                 char *message);

/* Values of header `field` ("Requires-Dist") in an RFC 822 style metadata
 * text, in order; *values malloc'd strings. */
int metadata_field_values(const char *metadata, const char *field, char ***values,
                          size_t *count);
char *metadata_field(const char *metadata, const char *field);
void free_strings(char **strings, size_t count);

#endif
