/*
 * runtime.h — one instance of the wasm2c-translated CPython.
 *
 * wasm2c keeps its trap jmp_buf in a global, so the runtime is not
 * re-entrant: one guest runs at a time per process (workers isolate runs in
 * separate processes).  Its SIGSEGV handler turns any fault during a guest
 * call into a trap, which is why host code reached from the guest (WASI)
 * must be careful and small.
 */
#ifndef CAP_RUNTIME_H
#define CAP_RUNTIME_H

#include <stdint.h>

#include "../wasi/wasi.h"

typedef enum {
    RUNTIME_EXITED = 0,  /* _start returned or proc_exit was called */
    RUNTIME_TRAPPED = 1, /* the guest trapped; message says why */
} runtime_outcome;

/* Runs the module's _start with `w` as its WASI.  On a trap, *message is a
 * static description.  (A memory limit is applied while the guest runs, by
 * lowering max_pages of wasi_memory(w).) */
runtime_outcome runtime_run(wasi *w, uint32_t *exit_code, const char **message);

#endif /* CAP_RUNTIME_H */
