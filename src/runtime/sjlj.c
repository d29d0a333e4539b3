/*
 * sjlj.c — the host's half of setjmp/longjmp in the guest.
 *
 * The guest's C libraries (libjpeg, freetype) report errors with longjmp.
 * They are compiled with LLVM's Emscripten-style lowering
 * (guest/extensions/sjlj/sjlj.c has the guest's half): a function that
 * calls setjmp makes each of its calls through the import
 * env.invoke_<signature>(table index, arguments...), and longjmp ends in
 * the import env.capsule_sjlj_unwind after recording where to.
 *
 * Contract (this is part of the sandbox's boundary: the guest chooses every
 * argument):
 *  - invoke_*: the table index is checked exactly like wasm's call_indirect
 *    (in bounds, non-null, same signature: else a CALL_INDIRECT trap), then
 *    the entry is called in a host frame that remembers the shadow stack
 *    pointer (and, in the checked build, wasm2c's call depth).  It returns
 *    the callee's result, or 0 after an unwind.
 *  - capsule_sjlj_unwind: native longjmp to the innermost invoke still
 *    running; with none, an UNREACHABLE trap (the run fails, the host
 *    carries on).  The frames skipped are wasm2c's, which are plain C
 *    frames that hold no host resources (wasm2c leaves them the same way
 *    on a trap).
 *  - Nothing else: no signal mask (glibc's setjmp saves none, so no
 *    syscall), no memory outside the instance's table and stack pointer.
 *
 * The invokes themselves are generated from the imports python.wasm has
 * (tools/sjlj-invokes.py; an unknown import fails the build).
 */
#include "sjlj.h"

#include <setjmp.h>
#include <stddef.h>

#include "python.h"
#include "wasm-rt-impl.h"

/* One invoke in progress: where an unwind resumes, and the guest's state to
 * put back then. */
struct sjlj_frame {
    jmp_buf resume;
    struct sjlj_frame *outer;
    uint32_t stack_pointer;
#if WASM_RT_USE_STACK_DEPTH_COUNT
    uint32_t call_depth;
#endif
};

static struct sjlj_frame *innermost;

void sjlj_reset(void) {
    innermost = NULL;
}

/* The table entry an invoke calls, checked like call_indirect. */
static const wasm_rt_funcref_t *sjlj_target(struct Z_env_instance_t *env, uint32_t index,
                                            uint32_t type) {
    const wasm_rt_funcref_table_t *table = env->table;
    if (index >= table->size || !table->data[index].func || table->data[index].func_type != type)
        wasm_rt_trap(WASM_RT_TRAP_CALL_INDIRECT);
    return &table->data[index];
}

static void sjlj_push(struct Z_env_instance_t *env, struct sjlj_frame *frame) {
    frame->outer = innermost;
    frame->stack_pointer = *env->stack_pointer;
#if WASM_RT_USE_STACK_DEPTH_COUNT
    frame->call_depth = wasm_rt_call_stack_depth;
#endif
    innermost = frame;
}

/* After a longjmp back into `frame`: the guest's state as at its call. */
static void sjlj_unwound(struct Z_env_instance_t *env, struct sjlj_frame *frame) {
    innermost = frame->outer;
    *env->stack_pointer = frame->stack_pointer;
#if WASM_RT_USE_STACK_DEPTH_COUNT
    wasm_rt_call_stack_depth = frame->call_depth;
#endif
}

void Z_envZ_capsule_sjlj_unwind(struct Z_env_instance_t *env) {
    (void)env;
    if (!innermost) wasm_rt_trap(WASM_RT_TRAP_UNREACHABLE);
    longjmp(innermost->resume, 1);
}

/* The body of every invoke (only its signature differs).  Nothing the
 * longjmp path reads is written after setjmp, so no volatile is needed. */
#define SJLJ_INVOKE_VALUE(n, result_type, function_type, arguments)               \
    const wasm_rt_funcref_t *target = sjlj_target(env, index, sjlj_types[n]);     \
    struct sjlj_frame frame;                                                       \
    sjlj_push(env, &frame);                                                        \
    if (setjmp(frame.resume) == 0) {                                               \
        result_type result = (function_type target->func) arguments;               \
        innermost = frame.outer;                                                   \
        return result;                                                             \
    }                                                                              \
    sjlj_unwound(env, &frame);                                                     \
    return 0;
#define SJLJ_INVOKE_VOID(n, function_type, arguments)                              \
    const wasm_rt_funcref_t *target = sjlj_target(env, index, sjlj_types[n]);     \
    struct sjlj_frame frame;                                                       \
    sjlj_push(env, &frame);                                                        \
    if (setjmp(frame.resume) == 0) {                                               \
        (function_type target->func) arguments;                                    \
        innermost = frame.outer;                                                   \
        return;                                                                    \
    }                                                                              \
    sjlj_unwound(env, &frame);

#include "sjlj-invokes.c"

void sjlj_init(void) {
    sjlj_register_signatures();
}
