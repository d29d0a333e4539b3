/*
 * sjlj.h — the host's half of the guest's setjmp/longjmp (sjlj.c).
 */
#ifndef CAP_SJLJ_H
#define CAP_SJLJ_H

#include <stdint.h>

#include "wasm-rt.h"

/* What the host functions of the guest's "env" imports see: the guest's
 * table (the invokes call through it) and its shadow stack pointer (restored
 * when a longjmp unwinds an invoke). */
struct Z_env_instance_t {
    wasm_rt_funcref_table_t *table;
    uint32_t *stack_pointer;
};

/* Registers the invoke signatures with wasm2c's runtime; after
 * Z_python_init_module, before the guest runs. */
void sjlj_init(void);

/* Forgets every invoke in progress.  Called before each entry into the
 * guest: a trap leaves through wasm2c's own longjmp, past invokes that then
 * never returned. */
void sjlj_reset(void);

#endif
