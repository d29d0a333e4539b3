/*
 * setjmp.h for C libraries compiled into the guest (guest/extensions/sjlj.c
 * has the runtime; docs/extensions.md "setjmp/longjmp" the design).
 *
 * Debian's wasi-libc has no setjmp.h.  Code that includes this one must be
 * compiled with $ext_sjlj_cflags (-mllvm -enable-emscripten-sjlj): LLVM then
 * rewrites every setjmp call and every longjmp call, so neither function
 * exists at link time (a file compiled without the flag fails to link).
 */
#ifndef CAPSULE_GUEST_SETJMP_H
#define CAPSULE_GUEST_SETJMP_H

/* What __wasm_setjmp records: the calling function's invocation and the
 * setjmp's label within it.  Room to spare for code that copies it. */
typedef struct {
    void *invocation;
    unsigned int label;
    unsigned int spare[2];
} __capsule_jmp_buf;
typedef __capsule_jmp_buf jmp_buf[1];
typedef jmp_buf sigjmp_buf;

int setjmp(jmp_buf env) __attribute__((returns_twice));
_Noreturn void longjmp(jmp_buf env, int value);
#define _setjmp setjmp
#define _longjmp longjmp

#endif
