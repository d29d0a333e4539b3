/*
 * wasi.h — capsule's WASI preview1 implementation, over the VFS.
 *
 * The guest's whole view of the world is the table of functions named
 * Z_wasi_snapshot_preview1Z_* (the names wasm2c gives the imports).  Each is
 * total: any guest-supplied pointer, length, descriptor or flag is checked,
 * and anything unsupported returns a WASI errno, so Python raises OSError.
 *
 * Invariants:
 * - Guest memory is addressed only through checked (offset, length) pairs
 *   against the current memory size, re-read on every call because the
 *   guest may have grown (and so moved) its memory in between.
 * - Descriptors hold vfs_file objects; the same table holds stdio and the
 *   control channel, which the sandbox creates as device files.
 * - Every descriptor remembers its absolute guest path, so a path relative
 *   to it is resolved by vfs_normalize: ".." can never climb above "/".
 */
#ifndef CAP_WASI_H
#define CAP_WASI_H

#include <stdint.h>

#include "../vfs/vfs.h"
#include "wasm-rt.h"

typedef struct Z_wasi_snapshot_preview1_instance_t wasi;

/* WASI errno values used by capsule (preview1 numbering). */
enum {
    WASI_ESUCCESS = 0, WASI_E2BIG = 1, WASI_EACCES = 2, WASI_EAGAIN = 6, WASI_EBADF = 8,
    WASI_EBUSY = 10, WASI_EEXIST = 20, WASI_EFAULT = 21, WASI_EFBIG = 22, WASI_EINTR = 27,
    WASI_EINVAL = 28, WASI_EIO = 29, WASI_EISDIR = 31, WASI_ELOOP = 32, WASI_EMFILE = 33,
    WASI_ENAMETOOLONG = 37, WASI_ENOENT = 44, WASI_ENOMEM = 48, WASI_ENOSPC = 51,
    WASI_ENOSYS = 52, WASI_ENOTDIR = 54, WASI_ENOTEMPTY = 55, WASI_ENOTSOCK = 57,
    WASI_ENOTSUP = 58, WASI_EOVERFLOW = 61, WASI_EPERM = 63, WASI_EROFS = 69, WASI_ESPIPE = 70,
    WASI_ETIMEDOUT = 73, WASI_EXDEV = 75, WASI_ENOTCAPABLE = 76,
};

typedef struct wasi_options {
    char *const *argv;  /* NULL-terminated */
    char *const *env;   /* NULL-terminated NAME=VALUE; nothing else is visible */
    uint32_t max_fds;   /* descriptor table limit; 0: 1024 */
} wasi_options;

wasi *wasi_new(vfs *fs, const wasi_options *options);
void wasi_free(wasi *w);
void wasi_set_memory(wasi *w, wasm_rt_memory_t *memory);
/* The guest memory while it runs (NULL otherwise); the sandbox lowers its
 * max_pages to enforce a memory limit. */
wasm_rt_memory_t *wasi_memory(wasi *w);

/* Installs `file` at descriptor `fd` (taking one reference).  `path` is its
 * absolute guest path; a preopen is announced to the guest's libc by
 * fd_prestat_get.  Returns 0 or a negative errno. */
int wasi_install(wasi *w, uint32_t fd, vfs_file *file, const char *path, int readable,
                 int writable, int preopen);

/* A descriptor the guest opened itself, as durable sessions save it. */
typedef struct wasi_descriptor_state {
    uint32_t fd;
    const char *path; /* absolute guest path */
    uint64_t offset;
    uint16_t flags;   /* the guest's fdflags (append, ...) */
    int readable, writable, directory;
} wasi_descriptor_state;

/* Calls `each` for every open descriptor from `first` on that is not a
 * preopen, in fd order; a non-zero return stops the walk and is returned. */
int wasi_descriptors(wasi *w, uint32_t first,
                     int (*each)(void *context, const wasi_descriptor_state *state),
                     void *context);

/* Opens state->path again at state->fd with its offset, flags and rights
 * (never creating or truncating).  When the file is gone (or its mount was
 * not granted again), the fd is still taken, by a descriptor on which every
 * operation fails with EBADF: a later open() must not get the fd a Python
 * file object still names.  0 or a negative errno. */
int wasi_descriptor_restore(wasi *w, const wasi_descriptor_state *state);

/* After proc_exit: 1 and the exit code; 0 if the guest did not exit. */
int wasi_exited(const wasi *w, uint32_t *code);

/* The guest's monotonic clock (ns), and making it continue from `saved`
 * (one read before a snapshot) in a process restored from it: a session
 * restored after a reboot, when the host's clock starts again near zero,
 * must not see time.monotonic() go backwards.  The clock is never moved
 * back; it only gains the offset that keeps it at or above `saved`. */
uint64_t wasi_monotonic_now(const wasi *w);
void wasi_continue_monotonic(wasi *w, uint64_t saved);

/* Maps a negative POSIX errno (as the VFS returns) to a WASI errno. */
uint16_t wasi_errno_from_posix(int negative_errno);

#endif /* CAP_WASI_H */
