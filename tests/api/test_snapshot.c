/*
 * test_snapshot.c — a guest with no frames between calls can be put back.
 *
 * A harness of the runtime alone, in this process (no zygote, no seccomp,
 * no host protocol): it builds a minimal guest world (scratch root, the
 * stdlib image, /dev, stdio and the control channel as device files),
 * calls capsule_init once, then capsule_call per request, exactly as a
 * worker does.  Between two calls it copies linear memory and
 * __stack_pointer (runtime_snapshot_take), runs more code, puts the copy
 * back (runtime_snapshot_restore), and checks that the guest continues from
 * the copy: `x = 41`, then `x = 1000` and a 100 MB allocation, restore,
 * then `x + 1` is 42, what came after the copy is gone, and the memory is
 * the copy's size again.
 *
 * The code run here is fixed and harmless (assignments, arithmetic); it
 * still runs only inside the translated guest, never natively.  The VFS
 * and descriptor table are host state, not restored here: the test's code
 * between copy and restore touches neither (docs/sessions.md).
 *
 * Built with ASan/UBSan against the bounds-checked guest, like test_api.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/runtime/runtime.h"
#include "../../src/vfs/vfs.h"
#include "../../src/wasi/wasi.h"

#define CHANNEL_FD 4

/* What the guest reads from and writes to its devices. */
static struct {
    char request[4096];
    size_t request_size, request_offset;
    char result[1 << 16]; /* the runner's JSON */
    size_t result_size;
    char output[1 << 16]; /* stdout and stderr, for failure messages */
    size_t output_size;
} io;

typedef struct device {
    vfs_file base;
    int kind; /* 0 stdin, 1 stdout/stderr, 2 control channel */
} device;

static void append(char *to, size_t *used, size_t capacity, const void *data, size_t size) {
    if (size > capacity - 1 - *used) size = capacity - 1 - *used;
    memcpy(to + *used, data, size);
    *used += size;
    to[*used] = '\0';
}

static int device_read(vfs_file *file, void *data, size_t size, uint64_t offset, size_t *done) {
    (void)offset;
    *done = 0;
    if (((device *)file)->kind != 2) return 0;
    size_t left = io.request_size - io.request_offset;
    *done = size < left ? size : left;
    memcpy(data, io.request + io.request_offset, *done);
    io.request_offset += *done;
    return 0;
}

static int device_write(vfs_file *file, const void *data, size_t size, uint64_t offset,
                        size_t *done) {
    (void)offset;
    *done = size;
    if (((device *)file)->kind == 2)
        append(io.result, &io.result_size, sizeof io.result, data, size);
    else
        append(io.output, &io.output_size, sizeof io.output, data, size);
    return 0;
}

static const vfs_file_ops device_ops = {
    device_read, device_write, vfs_device_stat, vfs_device_truncate, vfs_device_readdir,
    vfs_device_close,
};

static int install_device(wasi *w, uint32_t fd, int kind, const char *path) {
    device *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    d->base.ops = &device_ops;
    d->base.type = VFS_CHARACTER_DEVICE;
    d->base.refcount = 1;
    d->kind = kind;
    int rc = wasi_install(w, fd, &d->base, path, kind != 1, kind != 0, 0);
    vfs_file_release(&d->base);
    return rc;
}

/* The guest world the zygote builds, reduced to what these runs use. */
static wasi *build_guest(void) {
    const vfs_backend_ops *ops;
    void *scratch, *devices, *backend;
    vfs_image *stdlib;
    vfs *fs = vfs_new();
    if (!fs || vfs_memfs_new(0, &ops, &scratch) || vfs_mount(fs, "/", ops, scratch, 0)) return NULL;
    if (vfs_image_open("build/stdlib.img", &stdlib)) return NULL;
    vfs_image_backend(stdlib, &ops, &backend);
    vfs_image_release(stdlib);
    if (vfs_mount(fs, "/usr/local/lib/python3.11", ops, backend, 1)) return NULL;
    if (vfs_devfs_new(&ops, &devices) || vfs_mount(fs, "/dev", ops, devices, 0)) return NULL;
    if (vfs_mkdir(fs, "/tmp") || vfs_mkdir(fs, "/work")) return NULL;

    char *argv[] = {"python", "-I", "-u", "-c",
                    "import _capsule_runner; _capsule_runner.init(4, ())", NULL};
    char *env[] = {NULL};
    wasi_options options = {argv, env, 0};
    wasi *w = wasi_new(fs, &options);
    vfs_file *root;
    if (!w || vfs_open(fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root)) return NULL;
    int rc = install_device(w, 0, 0, "/dev/stdin") | install_device(w, 1, 1, "/dev/stdout") |
             install_device(w, 2, 1, "/dev/stderr") |
             wasi_install(w, 3, root, "/", 1, 0, 1) |
             install_device(w, CHANNEL_FD, 2, "/dev/capsule");
    vfs_file_release(root);
    return rc ? NULL : w;
}

/* Serves `code` as one request of a session through capsule_call; returns
 * the runner's result (cJSON, the caller deletes it). */
static cJSON *call(const char *code) {
    io.request_size = (size_t)snprintf(
        io.request, sizeof io.request,
        "{\"session\":true,\"filename\":\"main.py\",\"cwd\":\"/work\",\"code_size\":%zu}\n%s",
        strlen(code), code);
    io.request_offset = 0;
    io.result_size = io.output_size = 0;
    uint32_t value;
    const char *message = NULL;
    runtime_outcome outcome = runtime_enter(RUNTIME_CALL, &value, &message);
    if (outcome != RUNTIME_RETURNED || value != 0)
        fail_msg("capsule_call(%s): outcome %d, value %u, %s; output: %s", code, outcome, value,
                 message ? message : "-", io.output);
    cJSON *result = cJSON_Parse(io.result);
    if (!result) fail_msg("capsule_call(%s): no result; output: %s", code, io.output);
    return result;
}

static const char *field(const cJSON *result, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(result, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Runs `code` and checks its status and return value (NULL: none). */
static void expect(const char *code, const char *status, const char *value) {
    cJSON *result = call(code);
    if (strcmp(field(result, "status") ? field(result, "status") : "-", status) != 0)
        fail_msg("%s: status %s, wanted %s; error: %s", code, field(result, "status"), status,
                 field(result, "error") ? field(result, "error") : "-");
    if (value)
        assert_string_equal(field(result, "return_value") ? field(result, "return_value") : "-",
                            value);
    else
        assert_null(field(result, "return_value"));
    cJSON_Delete(result);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static wasi *guest;
static uint32_t stack_pointer_after_init;

static int setup(void **state) {
    (void)state;
    guest = build_guest();
    if (!guest) {
        fprintf(stderr, "setup: cannot build the guest's world (run from the repository, "
                        "after make)\n");
        return -1;
    }
    runtime_start(guest);
    uint32_t value;
    const char *message = NULL;
    /* Not before the data segments are in: the guest would run on zeros. */
    runtime_outcome outcome = runtime_enter(RUNTIME_INIT, &value, &message);
    if (outcome != RUNTIME_TRAPPED || !message || !strstr(message, "never filled")) {
        fprintf(stderr, "an entry before runtime_load_data: outcome %d, %s\n", outcome,
                message ? message : "-");
        return -1;
    }
    runtime_load_data();
    message = NULL;
    outcome = runtime_enter(RUNTIME_INIT, &value, &message);
    if (outcome != RUNTIME_RETURNED || value != 0) {
        fprintf(stderr, "capsule_init: outcome %d, value %u, %s; output: %s\n", outcome, value,
                message ? message : "-", io.output);
        return -1;
    }
    runtime_snapshot snapshot;
    if (runtime_snapshot_take(&snapshot)) return -1;
    stack_pointer_after_init = snapshot.stack_pointer;
    /* For docs/sessions.md: what one copy of an initialised guest weighs. */
    print_message("after capsule_init: linear memory %u pages (%llu bytes), "
                  "__stack_pointer %u\n", snapshot.pages, (unsigned long long)snapshot.size,
                  snapshot.stack_pointer);
    runtime_snapshot_free(&snapshot);
    /* Refuse to go on unless the code really runs in the guest. */
    cJSON *probe = call("import sys; sys.platform");
    int in_guest = field(probe, "return_value") && strcmp(field(probe, "return_value"), "'wasi'") == 0;
    cJSON_Delete(probe);
    return in_guest ? 0 : -1;
}

/* Each call returns with the shadow stack where capsule_init left it:
 * nothing of a run stays on the guest's stack either. */
static void test_calls_leave_no_frames(void **state) {
    (void)state;
    runtime_snapshot snapshot;
    expect("def f(n): return n if n == 0 else f(n - 1)\nf(500)", "success", "0");
    assert_int_equal(runtime_snapshot_take(&snapshot), 0);
    assert_int_equal(snapshot.stack_pointer, stack_pointer_after_init);
    assert_int_equal(snapshot.size, (uint64_t)snapshot.pages * 65536);
    runtime_snapshot_free(&snapshot);
}

static void test_restore_returns_to_the_copy(void **state) {
    (void)state;
    runtime_snapshot snapshot;
    expect("x = 41", "success", NULL);
    double started = now();
    assert_int_equal(runtime_snapshot_take(&snapshot), 0);
    double taken = now();

    /* After the copy: x changes, and the heap grows by ~100 MB (so
     * memory.grow ran and restore must shrink the memory back). */
    expect("x = 1000\nbig = bytearray(100 * 2**20)\nx", "success", "1000");
    runtime_snapshot after;
    assert_int_equal(runtime_snapshot_take(&after), 0);
    assert_true(after.pages > snapshot.pages);
    runtime_snapshot_free(&after);

    double restoring = now();
    assert_int_equal(runtime_snapshot_restore(&snapshot), 0);
    print_message("copy of %llu bytes: taken in %.2f ms, restored (shrinking %u pages) in "
                  "%.2f ms (%s)\n", (unsigned long long)snapshot.size, (taken - started) * 1e3,
                  after.pages - snapshot.pages, (now() - restoring) * 1e3,
                  WASM_RT_MEMCHECK_SIGNAL_HANDLER ? "guard pages" : "bounds-checked, ASan");
    expect("x + 1", "success", "42");
    expect("'big' in globals()", "success", "False");

    /* The copy can be put back again, after the guest ran on from it. */
    expect("x = 7\ny = [0] * 10**6\nx", "success", "7");
    assert_int_equal(runtime_snapshot_restore(&snapshot), 0);
    expect("x + 1", "success", "42");
    expect("'y' in globals()", "success", "False");

    /* The memory is the copy's size again, and the guest grows it anew. */
    assert_int_equal(runtime_snapshot_take(&after), 0);
    assert_int_equal(after.pages, snapshot.pages);
    runtime_snapshot_free(&after);
    expect("z = bytearray(100 * 2**20)\nz.count(0)", "success", "104857600");
    runtime_snapshot_free(&snapshot);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_leave_no_frames),
        cmocka_unit_test(test_restore_returns_to_the_copy),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
