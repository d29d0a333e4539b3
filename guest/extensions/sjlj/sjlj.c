/*
 * sjlj.c — the guest's half of setjmp/longjmp for extension libraries
 * (libjpeg's and freetype's error handling).
 *
 * Compiled with -mllvm -enable-emscripten-sjlj, LLVM rewrites a function
 * that calls setjmp so that:
 *  - setjmp(env) becomes __wasm_setjmp(env, label, invocation): label
 *    numbers the setjmp within the function, invocation is the address of
 *    a stack slot of this call of the function (unique while it runs);
 *  - every call it makes goes through the host import
 *    env.invoke_<signature>(table index, arguments...), which returns
 *    normally, or, when a longjmp unwound the call, with __THREW__ set;
 *  - after each call it reads and clears __THREW__ (the jmp_buf address)
 *    and __threwValue (longjmp's value); when set, __wasm_setjmp_test says
 *    whether that jmp_buf belongs to this invocation (the label: jump
 *    there, the value from getTempRet0) or not (0: longjmp on outwards).
 *  - longjmp(env, value) becomes emscripten_longjmp(env, value).
 *
 * emscripten_longjmp records (env, value) and asks the host to unwind to
 * the innermost invoke (env.capsule_sjlj_unwind, src/runtime/sjlj.c): the
 * host restores the shadow stack pointer and returns from that invoke.
 * With no invoke active (a longjmp to a jmp_buf whose function returned,
 * or no setjmp at all) the host traps: the run fails, the host carries on.
 *
 * The state is ordinary guest memory, so snapshots include it.  Single
 * threaded, like the guest.
 */
#include <stdint.h>

#include "setjmp.h"

/* Read and cleared by the code LLVM generates after each invoke. */
uintptr_t __THREW__ = 0;
int __threwValue = 0;
static uint32_t temp_ret0;

struct invocation_jmp_buf {
    void *invocation;
    uint32_t label;
};
_Static_assert(sizeof(struct invocation_jmp_buf) <= sizeof(jmp_buf), "jmp_buf too small");

void setTempRet0(uint32_t value) {
    temp_ret0 = value;
}

uint32_t getTempRet0(void) {
    return temp_ret0;
}

void __wasm_setjmp(void *env, uint32_t label, void *invocation) {
    struct invocation_jmp_buf *buffer = env;
    buffer->invocation = invocation;
    buffer->label = label;
}

/* The label to resume at when env was set by this invocation, else 0. */
uint32_t __wasm_setjmp_test(void *env, void *invocation) {
    const struct invocation_jmp_buf *buffer = env;
    return buffer->invocation == invocation ? buffer->label : 0;
}

__attribute__((import_module("env"), import_name("capsule_sjlj_unwind"))) _Noreturn void
capsule_sjlj_unwind(void);

_Noreturn void emscripten_longjmp(uintptr_t env, int value) {
    /* The generated code treats a zero value as "nothing thrown"; C says
     * longjmp(env, 0) makes setjmp return 1. */
    __THREW__ = env;
    __threwValue = value ? value : 1;
    capsule_sjlj_unwind();
}
