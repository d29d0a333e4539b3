/*
 * runtime.h — one instance of the wasm2c-translated CPython, entered per call.
 *
 * The module is instantiated once per process (runtime_start: the zygote,
 * whose workers inherit the instance through fork) and entered through its
 * exports: capsule_init once, then capsule_call once per request
 * (guest/capsule_entry.c).  Each entry returns to the host, so between two
 * entries nothing of the guest is on the native stack: the guest's whole
 * state is then its linear memory, its one mutable global
 * (__stack_pointer) and the host's WASI state (VFS, descriptor table), and
 * runtime_snapshot_take/restore can copy and put back the first two.
 *
 * wasm2c keeps its trap jmp_buf in a global, so the runtime is not
 * re-entrant: one guest runs at a time per process (workers isolate runs in
 * separate processes).  Its SIGSEGV handler turns any fault during a guest
 * call into a trap, which is why host code reached from the guest (WASI)
 * must be careful and small.  After a trap or proc_exit the instance is in
 * the middle of whatever it was doing: it must not be entered again.
 */
#ifndef CAP_RUNTIME_H
#define CAP_RUNTIME_H

#include <stdint.h>

#include "../wasi/wasi.h"

typedef enum {
    RUNTIME_RETURNED = 0, /* the entry returned; *value is its result */
    RUNTIME_EXITED = 1,   /* proc_exit was called; *value is the exit code */
    RUNTIME_TRAPPED = 2,  /* the guest trapped; *message says why */
} runtime_outcome;

typedef enum {
    RUNTIME_INIT, /* capsule_init: CPython initialised, the runner set up */
    RUNTIME_CALL, /* capsule_call: one request served */
} runtime_entry;

/* Instantiates the module with `w` as its WASI and gives `w` its memory.
 * Once per process; the instance lives until the process ends.  The
 * memory's data segments (4.6 MB: CPython's constants and initialised
 * globals) are not copied in yet: runtime_load_data does, and must come
 * before the first runtime_enter unless the whole memory was replaced
 * first (runtime_map_memory: a start image, which would throw the copy
 * away); runtime_enter refuses to run until one of them has. */
void runtime_start(wasi *w);
void runtime_load_data(void);

/* Calls `entry` of the instance runtime_start made.  On RUNTIME_TRAPPED,
 * *message is a static description.  (A memory limit is applied while the
 * guest runs, by lowering max_pages of wasi_memory(w).) */
runtime_outcome runtime_enter(runtime_entry entry, uint32_t *value, const char **message);

/* What a snapshot holds: the linear memory and the mutable globals. */
typedef struct runtime_snapshot {
    uint8_t *memory;        /* a copy of the whole linear memory (malloc'd) */
    uint64_t size;          /* its size in bytes */
    uint32_t pages;         /* and in 64 KiB pages */
    uint32_t stack_pointer; /* __stack_pointer, the module's one mutable global */
} runtime_snapshot;

/* Copies the instance's state into *snapshot.  Only between entries (never
 * from inside the guest, e.g. a WASI call): then no guest frame exists that
 * the copy would miss.  0, or -ENOMEM. */
int runtime_snapshot_take(runtime_snapshot *snapshot);

/* Puts a snapshot's state back: the memory's content and size (pages grown
 * since are zeroed and, with guard pages, made inaccessible again, so a
 * later memory.grow gives zeroed pages as WebAssembly requires) and the
 * globals.  Host state (VFS, descriptors) is not part of it.  0, or
 * -ENOMEM when the memory cannot grow back to the snapshot's size. */
int runtime_snapshot_restore(const runtime_snapshot *snapshot);

void runtime_snapshot_free(runtime_snapshot *snapshot);

/* Durable sessions move the same state piecewise (zygote.c): the memory is
 * read and written in place through wasi_memory(), these set its size and
 * the global.  runtime_resize_memory grows or shrinks the linear memory to
 * `pages` (grown pages read as zero; dropped ones trap again), even past a
 * lower max_pages; 0, -ENOMEM or -errno.  Only between entries. */
int runtime_resize_memory(uint32_t pages);
uint8_t *runtime_memory_data(void);
uint32_t runtime_memory_pages(void);
/* Sizes the memory to `pages` and fills it from `fd` at `offset` (page
 * aligned): mapped copy-on-write where the memory is a reservation with
 * guard pages (the release build), read where it is heap (the checked
 * build).  The file must not shrink while mapped.  0 or -errno; on
 * failure the memory's content is undefined and the instance must not be
 * entered. */
int runtime_map_memory(int fd, uint64_t offset, uint32_t pages);
/* The same for `length` bytes of the memory from byte `at` (both page
 * aligned, within its present size): the rest stays as it is. */
int runtime_map_range(int fd, uint64_t offset, uint64_t at, uint64_t length);
uint32_t runtime_stack_pointer(void);
void runtime_set_stack_pointer(uint32_t value);

/* The SHA-256 (hex, 64 characters) of the python.wasm this runtime was
 * translated from: a snapshot's memory means something only to that build. */
const char *runtime_build_id(void);

#endif /* CAP_RUNTIME_H */
