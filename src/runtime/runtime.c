/*
 * runtime.c — instantiate the translated CPython and run it to completion.
 */
#include "runtime.h"

#include <sys/mman.h>

#include "python.h"
#include "wasm-rt-impl.h"

/* wasm2c reserves 8 GiB per memory (guard pages instead of bounds checks)
 * but its free only unmaps the used part; we release the rest. */
#define RESERVATION_SIZE 0x200000000ull

static int module_initialised;

static const char *describe_trap(wasm_rt_trap_t trap) {
    switch (trap) {
    case WASM_RT_TRAP_EXHAUSTION:
        return "the guest exhausted its call stack (C recursion too deep)";
    case WASM_RT_TRAP_OOB:
        /* With the shadow stack placed first, overflowing it lands below
         * address 0 and shows up as an out-of-bounds access. */
        return "the guest accessed memory out of bounds (stack overflow or a bug in native code)";
    case WASM_RT_TRAP_UNREACHABLE:
        return "the guest aborted (unreachable code executed)";
    case WASM_RT_TRAP_DIV_BY_ZERO:
        return "the guest divided an integer by zero in native code";
    case WASM_RT_TRAP_INT_OVERFLOW:
        return "the guest overflowed an integer conversion in native code";
    case WASM_RT_TRAP_INVALID_CONVERSION:
        return "the guest converted NaN to an integer in native code";
    case WASM_RT_TRAP_CALL_INDIRECT:
        return "the guest made an invalid indirect call";
    default:
        return wasm_rt_strerror(trap);
    }
}

runtime_outcome runtime_run(wasi *w, uint32_t *exit_code, const char **message) {
    if (!module_initialised) {
        wasm_rt_init();
        Z_python_init_module();
        module_initialised = 1;
    }
    /* static: the instance must survive the longjmp out of a trap. */
    static Z_python_instance_t instance;
    Z_python_instantiate(&instance, w);
    wasm_rt_memory_t *memory = Z_pythonZ_memory(&instance);
    wasi_set_memory(w, memory);

    runtime_outcome outcome = RUNTIME_EXITED;
    *exit_code = 0;
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) {
        Z_pythonZ__start(&instance);
    } else if (!wasi_exited(w, exit_code)) {
        outcome = RUNTIME_TRAPPED;
        *message = describe_trap(trap);
    }
    wasi_set_memory(w, NULL);
    uint8_t *base = memory->data;
    uint64_t used = memory->size;
    Z_python_free(&instance);
#if WASM_RT_MEMCHECK_SIGNAL_HANDLER
    munmap(base + used, RESERVATION_SIZE - used);
#else
    (void)base, (void)used;
#endif
    return outcome;
}
