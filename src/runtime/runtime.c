/*
 * runtime.c — instantiate the translated CPython and enter it per call.
 */
#include "runtime.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define WASM_PAGE_SIZE 65536u

#include "python.h"
#include "build_id.h"
#include "sjlj.h"
#include "wasm-rt-impl.h"

/* A snapshot copies the instance's mutable state field by field.  wasm2c
 * puts every global of the module in this struct: if a rebuilt python.wasm
 * gains one (or a second memory or table), the layout below stops matching
 * and the build fails here, instead of snapshots silently missing it. */
struct expected_instance {
    struct Z_env_instance_t *env; /* sjlj.c's view of the table and stack pointer */
    struct Z_wasi_snapshot_preview1_instance_t *wasi;
    u32 stack_pointer; /* w2c___stack_pointer */
    wasm_rt_memory_t memory;
    wasm_rt_funcref_table_t table; /* filled at instantiation, never written after */
};
_Static_assert(sizeof(Z_python_instance_t) == sizeof(struct expected_instance) &&
                   offsetof(Z_python_instance_t, w2c___stack_pointer) ==
                       offsetof(struct expected_instance, stack_pointer),
               "python.wasm's instance has other state than memory and __stack_pointer: "
               "update runtime_snapshot");

/* Static: the instance must survive the longjmp out of a trap, and the
 * zygote's workers inherit it through fork. */
static Z_python_instance_t instance;
static wasi *instance_wasi;
/* Whether the memory holds the data segments, or something that replaced
 * all of it (runtime_load_data, runtime_map_memory, a snapshot). */
static int memory_filled;
/* What the setjmp/longjmp imports (sjlj.c) may touch. */
static struct Z_env_instance_t instance_env = {&instance.w2c_T0, &instance.w2c___stack_pointer};

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

void runtime_start(wasi *w) {
    wasm_rt_init();
    Z_python_init_module();
    sjlj_init();
    Z_python_instantiate(&instance, &instance_env, w);
    instance_wasi = w;
    wasi_set_memory(w, Z_pythonZ_memory(&instance));
}

void runtime_load_data(void) {
    Z_python_load_data_segments(&instance);
    memory_filled = 1;
}

runtime_outcome runtime_enter(runtime_entry entry, uint32_t *value, const char **message) {
    *value = 0;
    if (!memory_filled) { /* a host bug: the guest would run on zeroed data */
        *message = "the instance's memory was never filled (runtime_load_data)";
        return RUNTIME_TRAPPED;
    }
    /* An earlier entry may have trapped out of an invoke: none is running. */
    sjlj_reset();
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) {
        *value = entry == RUNTIME_INIT ? Z_pythonZ_capsule_init(&instance)
                                       : Z_pythonZ_capsule_call(&instance);
        return RUNTIME_RETURNED;
    }
    /* proc_exit is a trap too, after it recorded the exit code. */
    if (wasi_exited(instance_wasi, value)) return RUNTIME_EXITED;
    *message = describe_trap(trap);
    return RUNTIME_TRAPPED;
}

int runtime_snapshot_take(runtime_snapshot *snapshot) {
    const wasm_rt_memory_t *memory = &instance.w2c_memory;
    uint8_t *copy = malloc(memory->size ? memory->size : 1);
    if (!copy) return -ENOMEM;
    memcpy(copy, memory->data, memory->size);
    snapshot->memory = copy;
    snapshot->size = memory->size;
    snapshot->pages = memory->pages;
    snapshot->stack_pointer = instance.w2c___stack_pointer;
    return 0;
}

int runtime_resize_memory(uint32_t pages) {
    wasm_rt_memory_t *memory = &instance.w2c_memory;
    if (memory->pages < pages) {
        /* Back to the snapshot's size even under a lower limit set since. */
        uint32_t limit = memory->max_pages;
        if (memory->max_pages < pages) memory->max_pages = pages;
        uint32_t grown = wasm_rt_grow_memory(memory, pages - memory->pages);
        memory->max_pages = limit;
        if (grown == UINT32_MAX) return -ENOMEM;
    } else if (memory->pages > pages) {
        uint64_t size = (uint64_t)pages * WASM_PAGE_SIZE;
        uint8_t *tail = memory->data + size;
        size_t length = memory->size - size;
#if WASM_RT_MEMCHECK_SIGNAL_HANDLER
        /* wasm2c's grow only re-enables pages of its reservation: a fresh
         * anonymous PROT_NONE mapping in their place reads as zero when
         * grown again and traps until then.  (MADV_DONTNEED would not do
         * for pages mapped from a start image: they would read back the
         * file.) */
        if (mmap(tail, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
            MAP_FAILED)
            return -errno;
#else
        memset(tail, 0, length); /* grow zeroes only what realloc adds */
#endif
        memory->pages = pages;
        memory->size = size;
    }
    return 0;
}

int runtime_map_memory(int fd, uint64_t offset, uint32_t pages) {
    int rc = runtime_resize_memory(pages);
    if (rc == 0) rc = runtime_map_range(fd, offset, 0, instance.w2c_memory.size);
    if (rc == 0) memory_filled = 1; /* all of it replaced, data segments included */
    return rc;
}

int runtime_map_range(int fd, uint64_t offset, uint64_t at, uint64_t length) {
    wasm_rt_memory_t *memory = &instance.w2c_memory;
    if (at > memory->size || length > memory->size - at) return -EINVAL;
#if WASM_RT_MEMCHECK_SIGNAL_HANDLER
    /* Copy-on-write from the page cache: a page is read when first
     * touched, and shared by every process that maps the same file until
     * one of them writes it. */
    if (length && mmap(memory->data + at, length, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_FIXED, fd, (off_t)offset) == MAP_FAILED)
        return -errno;
#else
    /* The checked build's memory is plain heap (realloc'd to grow): the
     * file is copied in, through a mapping, which a locked-down worker
     * may make (it may not pread). */
    if (length) {
        void *file = mmap(NULL, length, PROT_READ, MAP_PRIVATE, fd, (off_t)offset);
        if (file == MAP_FAILED) return -errno;
        memcpy(memory->data + at, file, length);
        munmap(file, length);
    }
#endif
    return 0;
}

uint32_t runtime_memory_pages(void) {
    return instance.w2c_memory.pages;
}

uint8_t *runtime_memory_data(void) {
    return instance.w2c_memory.data;
}

uint32_t runtime_stack_pointer(void) {
    return instance.w2c___stack_pointer;
}

void runtime_set_stack_pointer(uint32_t value) {
    instance.w2c___stack_pointer = value;
}

const char *runtime_build_id(void) {
    return CAPSULE_GUEST_BUILD_ID;
}

int runtime_snapshot_restore(const runtime_snapshot *snapshot) {
    int rc = runtime_resize_memory(snapshot->pages);
    if (rc) return rc;
    memcpy(instance.w2c_memory.data, snapshot->memory, snapshot->size);
    instance.w2c___stack_pointer = snapshot->stack_pointer;
    memory_filled = 1;
    return 0;
}

void runtime_snapshot_free(runtime_snapshot *snapshot) {
    free(snapshot->memory);
    snapshot->memory = NULL;
}
