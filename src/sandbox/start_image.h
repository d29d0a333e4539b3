/*
 * start_image.h — the interpreter's state right after capsule_init, kept in
 * a file so that the next process maps it instead of initialising CPython.
 *
 * Initialising CPython and importing the runner costs ≈ 100 ms of CPU; a
 * start image makes a zygote's start a copy-on-write mmap of the memory the
 * last initialisation left (plus its scratch files and descriptors, which
 * are small).  The image is keyed by everything the initialisation could
 * depend on: the python.wasm build, the mounted images' identities, the
 * environment, the argv (which names the read-only mount points) and the
 * other mount points.  Images are written atomically (a temporary file
 * renamed into place), per user (the directory is 0700), and replaced
 * after START_IMAGE_MAX_AGE, which bounds how long the processes of one
 * user share a str hash secret (docs/sessions.md).
 *
 * Runs in the zygote, before any guest code of a request: what it maps is
 * the trusted output of our own initialisation.  A file that does not
 * check out (size, header, build, key, the files' hash) is ignored and
 * rewritten.
 */
#ifndef CAP_START_IMAGE_H
#define CAP_START_IMAGE_H

#include <stdint.h>

#include "../wasi/wasi.h"
#include "zygote.h"

#define START_IMAGE_MAX_AGE (24 * 3600) /* seconds */
#define START_IMAGE_MAX_COUNT 16         /* images kept in a directory, the newest */
#define START_IMAGE_KEY 32

/* The key of `world` started with `argv` (NULL-terminated). */
void start_image_key(const zygote_world *world, char *const *argv,
                     uint8_t key[START_IMAGE_KEY]);

/* A durable zygote's base (durable.h), as an image gives it: the memory
 * mapped a second time (private, copy-on-write) and the hash of each of its
 * DURABLE_PAGE pages (malloc'd). */
typedef struct start_image_base {
    uint8_t *memory;
    uint32_t pages; /* DURABLE_PAGE pages */
    uint8_t *hashes;
} start_image_base;

/* Puts the image of `key` from `directory` in place of capsule_init: the
 * instance's memory and stack pointer, the scratch memfs and descriptors;
 * with `base`, fills it too.  1 when it did, 0 when there is no usable
 * image (nothing was changed: the caller initialises), or a negative errno
 * when it failed half-way (the instance must not be entered). */
int start_image_load(const char *directory, const uint8_t key[START_IMAGE_KEY], void *scratch,
                     wasi *w, start_image_base *base);

/* Writes the state capsule_init just left as the image of `key` in
 * `directory` (created 0700 if missing), for the next process.  Failures
 * are ignored: the image is only a shortcut.  With `hashes`, *hashes gets
 * the page hashes it computed (malloc'd, DURABLE_HASH per DURABLE_PAGE;
 * NULL when it failed before), which a durable zygote's base needs too. */
void start_image_save(const char *directory, const uint8_t key[START_IMAGE_KEY], void *scratch,
                      wasi *w, uint32_t first_fd, uint8_t **hashes);

#endif
