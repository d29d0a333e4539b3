/*
 * durable.h — moving a session's state between a worker and the host
 * (durable sessions, docs/sessions.md).
 *
 * Between two calls a session's whole state is its linear memory, the
 * guest's __stack_pointer and the scratch file system (runtime.h); these
 * frames carry them.  Memory travels in pages of DURABLE_PAGE bytes; page
 * counts are in those pages, always whole WebAssembly pages.
 *
 *   zygote → host   'Y' ready; when the sandbox is durable its payload is the
 *                       base: u32 pages, u32 stack pointer, then the SHA-256
 *                       of each page of the memory as capsule_init left it
 *                       (the zygote ran no program yet: the host trusts it)
 *   host → worker   'K' take a snapshot; payload "full" asks for every page
 *   worker → host   'K' JSON {"pages":N,"stack_pointer":S,"changed":C,"vfs_bytes":V,
 *                   "environments":[KEY...]} (the package images it mounted, in order)
 *                   then C 'k' frames, u32 page index + the page, indices
 *                   strictly increasing, every page not sent being equal to
 *                   the reference's (the base for a fresh worker, else what
 *                   the last snapshot or restore left: the host keeps the
 *                   page hashes of each); then 'v' frames holding the V
 *                   bytes of the worker's files: u64 length, the scratch
 *                   file system (vfs_memfs_save), then the descriptors the
 *                   guest opened (fd, flags, offset, path: reopened by a
 *                   restore, so that a file object kept across calls still
 *                   names its file and no later open() takes its fd)
 *   host → worker   'L' restore, in a fresh worker: JSON {"pages":N,
 *                   "stack_pointer":S,"mapped":R,"vfs_bytes":V,
 *                   "environments":E}, then E 'e' frames (KEY, the image
 *                   riding along by SCM_RIGHTS, or none when the host no
 *                   longer has it: then that mount and the later ones are
 *                   skipped, as their places follow the order), then when
 *                   R > 0 one 'm' frame: R runs (u32 first page, u32 count,
 *                   ascending) to map from the page file riding along,
 *                   read-only (page_file.h: the node's, or one in memory
 *                   the host filled from the store); pages not mapped are
 *                   the base's; then 'v' frames of V bytes
 *   worker → host   'L' "" when restored, else the reason (and it exits)
 *
 * Pages below the stack pointer (the shadow stack, whose frames are all
 * dead between two calls) are never sent either way: a snapshot names them
 * as zero pages, and a restore leaves whatever the fresh worker has there.
 *
 * All of the worker's side is untrusted: the host checks every count, index
 * and size against the header and the limits before it keeps anything.
 */
#ifndef CAP_DURABLE_H
#define CAP_DURABLE_H

#include <stddef.h>
#include <stdint.h>

/* Snapshots are cut in 16 KiB pages, not WebAssembly's 64 KiB ones.  A
 * small call changes ~100 scattered 4 KiB pages (~70 of 16 KiB, ~42 of 64
 * KiB): 16 KiB stores 250 KiB a call, 64 KiB 660 KiB, while 4 KiB (84 KiB)
 * costs twice the time in page rows (docs/sessions.md, bench/sessions.py). */
#define DURABLE_PAGE 16384u
#define DURABLE_PER_WASM_PAGE (65536u / DURABLE_PAGE)
#define DURABLE_MAX_PAGES (65536u * DURABLE_PER_WASM_PAGE) /* 4 GiB: all of wasm32 */
#define DURABLE_MAX_VFS (2048ull << 20) /* a scratch file system's stream */
#define DURABLE_VFS_CHUNK (1u << 20)    /* bytes per 'v' frame */
#define DURABLE_HASH 32
/* The guest's monotonic clock travels in a snapshot as microseconds, a
 * JSON number: below 2^53, so exact (≈ 285 years); anything else is 0,
 * "not given". */
#define DURABLE_MONOTONIC_MAX_US 9.0e15

/* Worker side (durable_worker.c).  The reference is the state the host
 * knows this worker's memory by: the base (the zygote's copy after
 * capsule_init) for a fresh worker, then what the last snapshot or restore
 * left.  Only pages that differ from it are sent. */
void durable_worker_set_base(uint8_t *base, uint32_t pages);

/* The worker's /proc/self/pagemap (hot_pages_open), or -1: with it, a
 * snapshot skips comparing the pages still mapped, unwritten, from the
 * page file of a restore. */
void durable_worker_set_pagemap(int fd);

/* Sends the snapshot (every page with `full`) of `memory` (`pages` long)
 * and of the root memfs `scratch` on `fd`, then takes it as the new
 * reference.  0, or a negative errno once the host is gone. */
struct Z_wasi_snapshot_preview1_instance_t;
int durable_worker_snapshot(int fd, const uint8_t *memory, uint32_t pages, void *scratch,
                            struct Z_wasi_snapshot_preview1_instance_t *wasi, uint32_t first_fd,
                            const char (*environment_keys)[65], int environment_count,
                            int full); /* `pages` in DURABLE_PAGE */
/* Reads the restore that the 'L' header `payload` begins, puts it in place,
 * and answers 'L'.  Returns 0 when restored, else non-zero (the worker must
 * then exit: its state is half-written). */
int durable_worker_restore(int fd, const char *payload, size_t size, void *scratch,
                           struct Z_wasi_snapshot_preview1_instance_t *wasi,
                           const char *(*mount_environment)(int fd, const char *key));

/* The scratch files and open descriptors of a worker as one stream (u64
 * length of the memfs stream, the stream, then one record per descriptor
 * from `first_fd` on): what a snapshot and a start image (start_image.c)
 * carry besides the memory.  Save appends to `out` (a buffer, buffer.h);
 * load replaces the memfs content and reopens the descriptors.  0 or a
 * negative errno (-EINVAL for a malformed stream). */
struct buffer;
int durable_files_save(struct buffer *out, void *scratch,
                       struct Z_wasi_snapshot_preview1_instance_t *wasi, uint32_t first_fd);
int durable_files_load(const uint8_t *data, size_t size, void *scratch,
                       struct Z_wasi_snapshot_preview1_instance_t *wasi);

#endif
