/*
 * test_sjlj.c — the host's setjmp/longjmp imports (src/runtime/sjlj.c)
 * against a guest that calls them wrongly.
 *
 * A guest reaches these imports only through the code LLVM generates, but
 * nothing stops hand-written wasm from passing any table index or unwinding
 * with no invoke running: each must trap (the run fails, the host carries
 * on), never call outside the table or jump into a dead host frame.  The
 * "guest functions" here are C functions in a table built like wasm2c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "python.h"
#include "sjlj.h"
#include "wasm-rt-impl.h"

static uint32_t stack_pointer;
static wasm_rt_funcref_table_t table;
static wasm_rt_funcref_t entries[8];
static struct Z_env_instance_t env = {&table, &stack_pointer};
static uint32_t i32_to_i32, i32_to_void;

enum { ADD_ONE = 1, UNWINDS, NESTED, TRAPS, VOID_ONE, EMPTY };

static u32 add_one(void *instance, u32 x) {
    (void)instance;
    return x + 1;
}

/* Like a guest function that moved the shadow stack and then longjmp'd. */
static u32 unwinds(void *instance, u32 x) {
    (void)instance;
    stack_pointer -= 4096 + x;
    Z_envZ_capsule_sjlj_unwind(&env);
    return 0; /* not reached */
}

/* An invoke inside an invoke: the inner one is unwound, the outer returns. */
static u32 nested(void *instance, u32 x) {
    (void)instance;
    u32 inner = Z_envZ_invoke_ii(&env, UNWINDS, x);
    return inner + 100;
}

static u32 traps(void *instance, u32 x) {
    (void)instance;
    (void)x;
    wasm_rt_trap(WASM_RT_TRAP_OOB);
}

static void void_one(void *instance, u32 x) {
    (void)instance;
    (void)x;
}

static int setup(void **state) {
    (void)state;
    sjlj_init();
    i32_to_i32 = wasm_rt_register_func_type(1, 1, WASM_RT_I32, WASM_RT_I32);
    i32_to_void = wasm_rt_register_func_type(1, 0, WASM_RT_I32);
    entries[ADD_ONE] = (wasm_rt_funcref_t){i32_to_i32, (wasm_rt_function_ptr_t)add_one, NULL};
    entries[UNWINDS] = (wasm_rt_funcref_t){i32_to_i32, (wasm_rt_function_ptr_t)unwinds, NULL};
    entries[NESTED] = (wasm_rt_funcref_t){i32_to_i32, (wasm_rt_function_ptr_t)nested, NULL};
    entries[TRAPS] = (wasm_rt_funcref_t){i32_to_i32, (wasm_rt_function_ptr_t)traps, NULL};
    entries[VOID_ONE] = (wasm_rt_funcref_t){i32_to_void, (wasm_rt_function_ptr_t)void_one, NULL};
    table.data = entries;
    table.size = 8;
    table.max_size = 8;
    stack_pointer = 1 << 20;
    return 0;
}

static void test_an_invoke_returns_the_result(void **state) {
    (void)state;
    sjlj_reset();
    assert_int_equal(wasm_rt_impl_try(), 0);
    assert_int_equal(Z_envZ_invoke_ii(&env, ADD_ONE, 41), 42);
    Z_envZ_invoke_vi(&env, VOID_ONE, 1);
    assert_int_equal(stack_pointer, 1 << 20);
}

static void test_an_unwind_returns_from_the_invoke_with_the_stack_put_back(void **state) {
    (void)state;
    sjlj_reset();
    assert_int_equal(wasm_rt_impl_try(), 0);
    for (int i = 0; i < 1000; i++) assert_int_equal(Z_envZ_invoke_ii(&env, UNWINDS, 7), 0);
    assert_int_equal(stack_pointer, 1 << 20);
    assert_int_equal(Z_envZ_invoke_ii(&env, NESTED, 7), 100);
    assert_int_equal(stack_pointer, 1 << 20);
}

/* The trap calling invoke_ii(index) ends in (0: it returned). */
static wasm_rt_trap_t invoke_ii_trap(uint32_t index) {
    sjlj_reset();
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) Z_envZ_invoke_ii(&env, index, 1);
    return trap;
}

/* Every index and signature a guest can pass that is not a function of the
 * invoke's type traps like call_indirect. */
static void test_a_bad_table_index_or_signature_traps(void **state) {
    (void)state;
    const uint32_t bad[] = {0, EMPTY, 8, 9, UINT32_MAX, VOID_ONE};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(invoke_ii_trap(bad[i]), WASM_RT_TRAP_CALL_INDIRECT);
    sjlj_reset();
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) {
        Z_envZ_invoke_vi(&env, ADD_ONE, 1); /* (i32)->i32 called as (i32)->void */
        fail_msg("a mismatched signature was called");
    }
    assert_int_equal(trap, WASM_RT_TRAP_CALL_INDIRECT);
}

static void test_an_unwind_with_no_invoke_traps(void **state) {
    (void)state;
    sjlj_reset();
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) {
        Z_envZ_capsule_sjlj_unwind(&env);
        fail_msg("unwound to nowhere");
    }
    assert_int_equal(trap, WASM_RT_TRAP_UNREACHABLE);
}

/* A trap inside an invoke leaves through wasm2c's longjmp: that invoke's
 * frame is dead, and after the reset every entry into the guest does, an
 * unwind must trap instead of jumping into it. */
static void test_after_a_trap_inside_an_invoke_an_unwind_traps(void **state) {
    (void)state;
    sjlj_reset();
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == 0) {
        Z_envZ_invoke_ii(&env, TRAPS, 1);
        fail_msg("the trap returned");
    }
    assert_int_equal(trap, WASM_RT_TRAP_OOB);
    sjlj_reset();
    trap = wasm_rt_impl_try();
    if (trap == 0) {
        Z_envZ_capsule_sjlj_unwind(&env);
        fail_msg("unwound into a dead frame");
    }
    assert_int_equal(trap, WASM_RT_TRAP_UNREACHABLE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_invoke_returns_the_result),
        cmocka_unit_test(test_an_unwind_returns_from_the_invoke_with_the_stack_put_back),
        cmocka_unit_test(test_a_bad_table_index_or_signature_traps),
        cmocka_unit_test(test_an_unwind_with_no_invoke_traps),
        cmocka_unit_test(test_after_a_trap_inside_an_invoke_an_unwind_traps),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
