/*
 * fuzz_frames.c — libFuzzer target for what the host parses of a worker's
 * frames: the security boundary if the guest ever took over its worker
 * process (say, through a bug in CPython or wasm2c's output).
 *
 * The host side is src/sandbox/ (config.c, run.c, broker.c, provider.c,
 * dependencies.c, result.c...), linked whole.  Each input is one frame,
 * answered through the parent's dispatch table (sandbox_dispatch_frame, as
 * in a run) with the bytes a worker could send:
 *   'R' the result           'A' an artifact            'H' the broker
 *   'W' a provider's write   'F' a resource read        'D' dependencies
 *   'C' a host function's call or list
 * against a configuration with a read-only and a read-write host mount
 * (a temporary directory with a symbolic link out of it), a resource
 * provider that reads and takes writes, and host functions (one that
 * echoes its arguments, one that fails, one that needs approval, one
 * denied by a pattern), audited to /dev/null.  Answers go to a socket that a
 * thread drains.  Workers are never started: zygote_main is a stub.
 *
 * Checked besides ASan/UBSan/LeakSanitizer: nothing escapes the mounted
 * directory (after each input, /tmp/capsule-fuzz-outside holds exactly
 * what the harness put there), and the read-write mount's growth stays
 * within its quota.
 */
#include "../../src/sandbox/sandbox.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void zygote_main(const zygote_world *world, int control_fd) {
    (void)world, (void)control_fd;
    abort(); /* never reached: no sandbox is created */
}

/* durable.c names the guest build in snapshots; no guest is linked here. */
const char *runtime_build_id(void);
const char *runtime_build_id(void) {
    return "fuzz";
}

#define QUOTA (1u << 20)

static cap_config *fuzz_config;
static int host_end = -1, worker_end = -1;
static char outside[] = "/tmp/capsule-fuzz-outside";

static const char *provider_list(void *userdata, size_t index) {
    (void)userdata;
    static const char *const names[] = {"a.txt", "b.bin"};
    return index < 2 ? names[index] : NULL;
}

static int provider_read_file(void *userdata, const char *name, void **data, size_t *size,
                              char *error) {
    (void)userdata;
    if (name[0] == 'b') {
        snprintf(error, CAP_ERROR_SIZE, "b.bin is not available");
        return 1;
    }
    *data = strdup("provided content");
    *size = 16;
    return *data ? 0 : 1;
}

static int provider_write_file(void *userdata, const char *name, uint64_t offset,
                               const void *data, size_t size, char *error) {
    (void)userdata, (void)name, (void)data;
    if (offset + size > 4096) {
        snprintf(error, CAP_ERROR_SIZE, "too large");
        return 1;
    }
    return 0;
}

/* Host functions: "echo" returns its arguments, "broken" fails; the
 * arguments must be the JSON object the schema check let through. */
static int echo_function(void *userdata, const cap_function_call *call, char **result,
                         size_t *result_size, char *error) {
    (void)userdata;
    if (strlen(call->arguments) != call->arguments_size || call->arguments[0] != '{' ||
        !(call->timeout_seconds > 0))
        abort();
    if (strcmp(call->name, "broken") == 0) {
        snprintf(error, CAP_ERROR_SIZE, "broken on purpose");
        return CAP_FUNCTION_ERROR;
    }
    *result = strdup(call->arguments);
    *result_size = call->arguments_size;
    return *result ? CAP_FUNCTION_OK : CAP_FUNCTION_ERROR;
}

static void *drain(void *unused) {
    (void)unused;
    char buffer_[1 << 16];
    while (read(worker_end, buffer_, sizeof buffer_) > 0) {
    }
    return NULL;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    static char root[] = "/tmp/capsule-fuzz-root-XXXXXX";
    char path[PATH_MAX];
    if (!mkdtemp(root)) abort();
    mkdir(outside, 0755);
    snprintf(path, sizeof path, "%s/secret", outside);
    write_file(path, "outside\n");
    snprintf(path, sizeof path, "%s/d", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/f.txt", root);
    write_file(path, "inside\n");
    snprintf(path, sizeof path, "%s/d/g.txt", root);
    write_file(path, "deeper\n");
    snprintf(path, sizeof path, "%s/out", root);
    if (symlink(outside, path) != 0) abort();

    char error[CAP_ERROR_SIZE];
    fuzz_config = cap_config_new();
    cap_resource_provider provider = {provider_list, provider_read_file, provider_write_file};
    if (!fuzz_config ||
        cap_config_add_mount(fuzz_config, root, "/data", CAP_MOUNT_READ_ONLY, 0, error) ||
        cap_config_add_mount(fuzz_config, root, "/rw", 0, QUOTA, error) ||
        cap_config_add_resource_provider(fuzz_config, "/provided", &provider, NULL, error) ||
        cap_config_add_function(fuzz_config, "echo", "Echoes.",
                                "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
                                "\"integer\"},\"s\":{\"type\":[\"string\",\"null\"]}},"
                                "\"required\":[\"n\"],\"additionalProperties\":false}",
                                echo_function, NULL, error) ||
        cap_config_add_function(fuzz_config, "broken", NULL, NULL, echo_function, NULL, error) ||
        cap_config_add_function(fuzz_config, "guarded", NULL, NULL, echo_function, NULL, error) ||
        cap_config_add_function(fuzz_config, "hidden", NULL, NULL, echo_function, NULL, error) ||
        cap_config_require_approval(fuzz_config, "guarded", error) ||
        cap_config_deny_functions(fuzz_config, "hid*", error) ||
        cap_config_set_audit_log(fuzz_config, "/dev/null", error))
        abort();
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) abort();
    host_end = pair[0];
    worker_end = pair[1];
    pthread_t thread;
    if (pthread_create(&thread, NULL, drain, NULL) != 0) abort();
}

/* The outside directory must hold only what setup put there. */
static void check_outside(void) {
    DIR *directory = opendir(outside);
    if (!directory) abort();
    int entries = 0;
    for (struct dirent *entry; (entry = readdir(directory));)
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) entries++;
    closedir(directory);
    char path[PATH_MAX], text[16] = "";
    snprintf(path, sizeof path, "%s/secret", outside);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(text, sizeof text, f)) abort();
    fclose(f);
    if (entries != 1 || strcmp(text, "outside\n") != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_config) setup();
    if (size == 0) return 0;
    /* As frame_read gives it: the payload, NUL-terminated. */
    size_t n = size - 1;
    char *payload = malloc(n + 1);
    if (!payload) return 0;
    memcpy(payload, data + 1, n);
    payload[n] = '\0';
    static const char types[8] = {'R', 'A', 'H', 'W', 'F', 'D', 'C', 'M'};
    cap_result *result = calloc(1, sizeof *result);
    cap_run_options options = {0};
    cap_sandbox sandbox = {.config = fuzz_config};
    sandbox_exchange exchange = {.sandbox = &sandbox,
                                 .phase = SANDBOX_PHASE_RUN,
                                 .fd = host_end,
                                 .options = &options,
                                 .result = result,
                                 .deadline = sandbox_now_seconds() + 1,
                                 .max_output = 1 << 20,
                                 .report_pages = (data[0] >> 3) & 1}; /* 'M' asked or not */
    if (result) sandbox_dispatch_frame(&exchange, types[data[0] % 8], payload, n);
    buffer_free(&sandbox.hot_pages);
    buffer_free(&exchange.out);
    buffer_free(&exchange.err);
    if (result) cap_result_free(result);
    free(payload);
    check_outside();
    if (fuzz_config->host_used[1] > QUOTA) abort();
    return 0;
}
