/*
 * test_api.c — the library API end to end: workers, sessions, limits, and
 * the lockdown of worker processes as the kernel reports it in /proc.
 *
 * Built with ASan/UBSan against the bounds-checked guest (build/asan).
 * Guest code here is hostile on purpose and only ever runs in capsule; the
 * suite stops unless the guest reports sys.platform == 'wasi'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capsule.h"

static cap_config *config;
static cap_sandbox *sandbox;

static cap_result *run(cap_sandbox *s, const char *code, const char *session) {
    char error[CAP_ERROR_SIZE];
    cap_run_options options = {0};
    options.capture = 1;
    options.session = session;
    cap_result *result = NULL;
    int rc = cap_sandbox_run(s, code, strlen(code), &options, &result, error);
    if (rc != CAP_OK) fail_msg("cap_sandbox_run: %s", error);
    return result;
}

/* Runs `code` and checks status and return value (NULL: none). */
static void expect(cap_sandbox *s, const char *code, const char *session, cap_status status,
                   const char *return_value) {
    cap_result *result = run(s, code, session);
    if (cap_result_status(result) != status)
        fail_msg("%s: status %s, wanted %s; error: %s", code,
                 cap_status_name(cap_result_status(result)), cap_status_name(status),
                 cap_result_error(result) ? cap_result_error(result) : "-");
    const char *value = cap_result_return_value(result);
    if (return_value) {
        assert_non_null(value);
        assert_string_equal(value, return_value);
    } else {
        assert_null(value);
    }
    cap_result_free(result);
}

static int setup(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    config = cap_config_new();
    if (!config || cap_config_set_stdlib(config, "build/stdlib.img", error) != CAP_OK ||
        cap_config_set_sessions(config, 2, 600, error) != CAP_OK ||
        cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "setup: %s\n", error);
        return -1;
    }
    cap_result *probe = run(sandbox, "import sys; sys.platform", NULL);
    int guest = cap_result_return_value(probe) &&
                strcmp(cap_result_return_value(probe), "'wasi'") == 0;
    cap_result_free(probe);
    if (!guest) {
        fprintf(stderr, "refusing to run hostile tests: the guest is not the WASI sandbox\n");
        return -1;
    }
    return 0;
}

/* A sandbox of its own, for tests that need other settings. */
static cap_sandbox *sandbox_with(cap_config **config, int pool_size, int max_sessions,
                                 double idle_seconds) {
    char error[CAP_ERROR_SIZE];
    cap_sandbox *made;
    *config = cap_config_new();
    assert_non_null(*config);
    assert_int_equal(cap_config_set_stdlib(*config, "build/stdlib.img", error), CAP_OK);
    assert_int_equal(cap_config_set_pool_size(*config, pool_size, error), CAP_OK);
    assert_int_equal(cap_config_set_sessions(*config, max_sessions, idle_seconds, error), CAP_OK);
    assert_int_equal(cap_sandbox_new(*config, &made, error), CAP_OK);
    return made;
}

static int teardown(void **state) {
    (void)state;
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return 0;
}

/* --- freshness ---------------------------------------------------------------- */

static void fresh_runs_share_nothing(void **state) {
    (void)state;
    cap_result *a = run(sandbox, "import random; random.random()", NULL);
    cap_result *b = run(sandbox, "import random; random.random()", NULL);
    assert_non_null(cap_result_return_value(a));
    assert_string_not_equal(cap_result_return_value(a), cap_result_return_value(b));
    cap_result_free(a);
    cap_result_free(b);
    /* os.urandom comes from the host CSPRNG in each worker. */
    a = run(sandbox, "import os; os.urandom(16).hex()", NULL);
    b = run(sandbox, "import os; os.urandom(16).hex()", NULL);
    assert_string_not_equal(cap_result_return_value(a), cap_result_return_value(b));
    cap_result_free(a);
    cap_result_free(b);

    expect(sandbox, "import builtins; builtins.LEFT_BEHIND = 1\nopen('/tmp/left', 'w').write('x')\n"
                    "secret = 42", NULL, CAP_STATUS_SUCCESS, NULL);
    expect(sandbox, "import builtins, os\n"
                    "(hasattr(builtins, 'LEFT_BEHIND'), os.path.exists('/tmp/left'), 'secret' in globals())",
           NULL, CAP_STATUS_SUCCESS, "(False, False, False)");
}

static void tempfile_names_differ_between_workers(void **state) {
    (void)state;
    cap_result *a = run(sandbox, "import tempfile; tempfile.mktemp()", NULL);
    cap_result *b = run(sandbox, "import tempfile; tempfile.mktemp()", NULL);
    assert_string_not_equal(cap_result_return_value(a), cap_result_return_value(b));
    cap_result_free(a);
    cap_result_free(b);
}

/* --- sessions -------------------------------------------------------------------- */

static void session_keeps_variables_imports_and_files(void **state) {
    (void)state;
    expect(sandbox, "import json\nx = 41\nopen('/tmp/kept', 'w').write('file')", "keep",
           CAP_STATUS_SUCCESS, "4");
    expect(sandbox, "(x + 1, json.dumps([1]), open('/tmp/kept').read())", "keep",
           CAP_STATUS_SUCCESS, "(42, '[1]', 'file')");
    /* A fresh run beside the session sees none of it. */
    expect(sandbox, "'x' in globals()", NULL, CAP_STATUS_SUCCESS, "False");
    assert_int_equal(cap_session_close(sandbox, "keep", NULL), CAP_OK);
    assert_int_equal(cap_session_close(sandbox, "keep", NULL), CAP_EINVAL);
    /* After a close the id starts afresh. */
    expect(sandbox, "'x' in globals()", "keep", CAP_STATUS_SUCCESS, "False");
    assert_int_equal(cap_session_close(sandbox, "keep", NULL), CAP_OK);
}

static void least_recently_used_session_is_evicted_with_a_clear_error(void **state) {
    (void)state;
    expect(sandbox, "a = 1", "one", CAP_STATUS_SUCCESS, NULL);
    expect(sandbox, "a = 2", "two", CAP_STATUS_SUCCESS, NULL);
    expect(sandbox, "a", "one", CAP_STATUS_SUCCESS, "1"); /* "two" is now least recent */
    expect(sandbox, "a = 3", "three", CAP_STATUS_SUCCESS, NULL); /* max 2: evicts "two" */
    cap_result *result = run(sandbox, "a", "two");
    assert_int_equal(cap_result_status(result), CAP_STATUS_SESSION_ERROR);
    assert_non_null(strstr(cap_result_error(result), "no longer exists"));
    cap_result_free(result);
    expect(sandbox, "a", "one", CAP_STATUS_SUCCESS, "1");
    cap_session_close(sandbox, "one", NULL);
    cap_session_close(sandbox, "three", NULL);
}

static void idle_session_expires(void **state) {
    (void)state;
    cap_config *short_config;
    cap_sandbox *short_lived = sandbox_with(&short_config, 0, 4, 0.2);
    expect(short_lived, "v = 1", "idle", CAP_STATUS_SUCCESS, NULL);
    struct timespec pause = {0, 400000000};
    nanosleep(&pause, NULL);
    cap_result *result = run(short_lived, "v", "idle");
    assert_int_equal(cap_result_status(result), CAP_STATUS_SESSION_ERROR);
    cap_result_free(result);
    cap_sandbox_free(short_lived);
    cap_config_free(short_config);
}

/* --- workers as the kernel sees them ----------------------------------------------- */

static int read_status_field(pid_t pid, const char *field, char *out, size_t size) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = -1;
    size_t length = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, length) == 0 && line[length] == ':') {
            snprintf(out, size, "%s", line + length + 1 + strspn(line + length + 1, " \t"));
            out[strcspn(out, "\n")] = '\0';
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* The descriptors `pid` holds, except its own /proc/PID/pagemap (a
 * worker's: hot_pages.h); -1 if unreadable. */
static int count_fds(pid_t pid) {
    char path[64], own_pagemap[64], target[300];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    snprintf(own_pagemap, sizeof own_pagemap, "/proc/%d/pagemap", (int)pid);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        char link[400];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) target[n] = '\0';
        if (n <= 0 || strcmp(target, own_pagemap) != 0) count++;
    }
    closedir(dir);
    return count;
}

#define MAX_CHILDREN 64

/* The pids of this process's children (the zygote, workers). */
static int list_children(pid_t *out) {
    char value[64];
    int n = 0;
    DIR *proc = opendir("/proc");
    assert_non_null(proc);
    for (struct dirent *e; (e = readdir(proc)) && n < MAX_CHILDREN;) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || read_status_field(pid, "PPid", value, sizeof value) != 0) continue;
        if (atoi(value) == getpid()) out[n++] = pid;
    }
    closedir(proc);
    return n;
}

static void workers_are_locked_down(void **state) {
    (void)state;
    /* A session keeps its worker alive so we can look at it. */
    expect(sandbox, "1", "inspect", CAP_STATUS_SUCCESS, "1");
    char self_net[128] = "", net[128], value[64], path[64];
    ssize_t n = readlink("/proc/self/ns/net", self_net, sizeof self_net - 1);
    assert_true(n > 0);
    int workers = 0, zygotes = 0;
    pid_t children[MAX_CHILDREN];
    int child_count = 0;
    /* The pool is refilled asynchronously: a worker cloned a moment ago
     * locks itself down before it reads any request, but may not have yet.
     * Wait for clones in flight; then exactly one child (the zygote) is
     * unfiltered. */
    for (int attempt = 0; attempt < 100; attempt++) {
        int unfiltered = 0;
        child_count = list_children(children);
        for (int i = 0; i < child_count; i++)
            if (read_status_field(children[i], "Seccomp", value, sizeof value) == 0 &&
                strcmp(value, "0") == 0)
                unfiltered++;
        if (unfiltered == 1) break;
        struct timespec pause = {0, 20000000};
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < child_count; i++) {
        pid_t pid = children[i];
        assert_int_equal(read_status_field(pid, "Seccomp", value, sizeof value), 0);
        if (strcmp(value, "0") == 0) { /* the zygote: not filtered, it must fork */
            zygotes++;
            continue;
        }
        workers++;
        assert_string_equal(value, "2"); /* seccomp filter mode */
        assert_int_equal(read_status_field(pid, "NoNewPrivs", value, sizeof value), 0);
        assert_string_equal(value, "1");
        assert_int_equal(count_fds(pid), 1); /* its channel, nothing inherited */
        assert_int_equal(read_status_field(pid, "CapEff", value, sizeof value), 0);
        assert_string_equal(value, "0000000000000000"); /* no capability, even as root */
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        memset(net, 0, sizeof net);
        if (readlink(path, net, sizeof net - 1) > 0 && geteuid() == 0)
            assert_string_not_equal(net, self_net); /* an empty network namespace */
    }
    assert_int_equal(zygotes, 1);
    assert_true(workers >= 1);
    cap_session_close(sandbox, "inspect", NULL);
}

static pid_t session_worker(void) {
    /* The newest filtered child is the session's worker. */
    pid_t newest = 0, children[MAX_CHILDREN];
    char value[64];
    int child_count = list_children(children);
    for (int i = 0; i < child_count; i++) {
        pid_t pid = children[i];
        if (read_status_field(pid, "Seccomp", value, sizeof value) == 0 && strcmp(value, "2") == 0 &&
            pid > newest)
            newest = pid;
    }
    return newest;
}

static void killed_session_worker_is_reported_and_the_sandbox_recovers(void **state) {
    (void)state;
    cap_config *solo_config;
    cap_sandbox *solo = sandbox_with(&solo_config, 0, 8, 600);
    expect(solo, "n = 1", "doomed", CAP_STATUS_SUCCESS, NULL);
    pid_t worker = session_worker();
    assert_true(worker > 0);
    kill(worker, SIGKILL);
    cap_result *result = run(solo, "n", "doomed");
    cap_status status = cap_result_status(result);
    assert_true(status == CAP_STATUS_CRASH || status == CAP_STATUS_SESSION_ERROR);
    cap_result_free(result);
    expect(solo, "6 * 7", NULL, CAP_STATUS_SUCCESS, "42");
    cap_sandbox_free(solo);
    cap_config_free(solo_config);
}

static int count_own_fds(void) {
    return count_fds(getpid());
}

static void session_whose_run_times_out_ends_cleanly(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    expect(sandbox, "x = 1", "slow", CAP_STATUS_SUCCESS, NULL);
    int fds_before = count_own_fds();
    cap_run_options options = {0};
    options.capture = 1;
    options.session = "slow";
    options.limits.wall_seconds = 0.3;
    cap_result *result = NULL;
    assert_int_equal(cap_sandbox_run(sandbox, "while True: pass", 16, &options, &result, error), CAP_OK);
    assert_int_equal(cap_result_status(result), CAP_STATUS_TIMEOUT);
    cap_result_free(result);
    /* The session's worker and its channel are gone, once: the sandbox's
     * own descriptors (zygote control, pool) are all still there. */
    assert_int_equal(count_own_fds(), fds_before - 1);
    result = run(sandbox, "x", "slow");
    assert_int_equal(cap_result_status(result), CAP_STATUS_SESSION_ERROR);
    cap_result_free(result);
    expect(sandbox, "2 + 2", NULL, CAP_STATUS_SUCCESS, "4");
}

/* Children of this process: all of them, and those that are zombies. */
static void count_children(int *children, int *zombies) {
    char value[64];
    pid_t pids[MAX_CHILDREN];
    *children = list_children(pids);
    *zombies = 0;
    for (int i = 0; i < *children; i++)
        if (read_status_field(pids[i], "State", value, sizeof value) == 0 && value[0] == 'Z')
            (*zombies)++;
}

static void finished_workers_do_not_pile_up(void **state) {
    (void)state;
    for (int i = 0; i < 60; i++) expect(sandbox, "1", NULL, CAP_STATUS_SUCCESS, "1");
    /* Reaping is deferred to the next call, never dropped: a few more calls
     * (each reaps what has exited) leave only the zygote, the pool of 2 and
     * at most the last worker or two still on their way out. */
    int children = 0, zombies = 0;
    for (int attempt = 0; attempt < 50; attempt++) {
        expect(sandbox, "1", NULL, CAP_STATUS_SUCCESS, "1");
        struct timespec pause = {0, 20000000};
        nanosleep(&pause, NULL);
        count_children(&children, &zombies);
        if (zombies <= 1 && children <= 1 + 2 + 2) break;
    }
    assert_true(zombies <= 1);
    assert_true(children <= 1 + 2 + 2);
}

/* --- limits through the API ---------------------------------------------------------- */

static void limits_give_distinct_statuses(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    struct {
        const char *code;
        cap_limits limits;
        cap_status status;
    } cases[] = {
        {"while True: pass", {.wall_seconds = 0.5, .cpu_seconds = 30}, CAP_STATUS_TIMEOUT},
        {"while True: pass", {.wall_seconds = 30, .cpu_seconds = 0.3}, CAP_STATUS_CPU_LIMIT},
        {"x = []\nwhile True: x.append(' ' * 10**6)", {.memory_bytes = 64 << 20}, CAP_STATUS_MEMORY_LIMIT},
        {"import os; os.urandom(10**9)", {.memory_bytes = 256 << 20}, CAP_STATUS_MEMORY_LIMIT},
        {"while True: print('flood' * 1000)", {.output_bytes = 1 << 20}, CAP_STATUS_OUTPUT_LIMIT},
        {"open('/tmp/big', 'wb').write(b'x' * (8 << 20))", {.disk_bytes = 1 << 20}, CAP_STATUS_DISK_LIMIT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cap_run_options options = {0};
        options.capture = 1;
        options.limits = cases[i].limits;
        cap_result *result = NULL;
        assert_int_equal(cap_sandbox_run(sandbox, cases[i].code, strlen(cases[i].code), &options,
                                         &result, error),
                         CAP_OK);
        if (cap_result_status(result) != cases[i].status)
            fail_msg("%s: got %s (%s), wanted %s", cases[i].code,
                     cap_status_name(cap_result_status(result)),
                     cap_result_error(result) ? cap_result_error(result) : "-",
                     cap_status_name(cases[i].status));
        assert_non_null(cap_result_error(result));
        cap_result_free(result);
        /* The sandbox carries on. */
        expect(sandbox, "1 + 1", NULL, CAP_STATUS_SUCCESS, "2");
    }
}

static void oversized_program_is_refused_cleanly(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    size_t size = (64u << 20) + 1;
    char *code = malloc(size);
    assert_non_null(code);
    memset(code, '#', size);
    cap_result *result = NULL;
    assert_int_equal(cap_sandbox_run(sandbox, code, size, NULL, &result, error), CAP_OK);
    assert_int_equal(cap_result_status(result), CAP_STATUS_RUN_ERROR);
    assert_non_null(strstr(cap_result_error(result), "too large"));
    cap_result_free(result);
    free(code);
}

static void input_files_land_in_the_scratch_space_only(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    cap_file files[] = {{"data/in.txt", "hello", 5}};
    cap_run_options options = {0};
    options.capture = 1;
    options.files = files;
    options.file_count = 1;
    const char *code = "open('/work/data/in.txt').read()";
    cap_result *result = NULL;
    assert_int_equal(cap_sandbox_run(sandbox, code, strlen(code), &options, &result, error), CAP_OK);
    assert_string_equal(cap_result_return_value(result), "'hello'");
    cap_result_free(result);
    /* A file aimed at the read-only stdlib is refused, not written. */
    cap_file evil[] = {{"/usr/local/lib/python3.11/os.py", "x", 1}};
    options.files = evil;
    assert_int_equal(cap_sandbox_run(sandbox, "1", 1, &options, &result, error), CAP_OK);
    assert_int_equal(cap_result_status(result), CAP_STATUS_RUN_ERROR);
    assert_non_null(strstr(cap_result_error(result), "Read-only"));
    cap_result_free(result);
}

/* --- resource providers and artifacts ------------------------------------- */

static const char *provider_list(void *userdata, size_t index) {
    static const char *const names[] = {"greeting.txt", "broken", NULL};
    (void)userdata;
    return index < 2 ? names[index] : NULL;
}

static int provider_read(void *userdata, const char *name, void **data, size_t *size,
                         char *error) {
    int *calls = userdata;
    (*calls)++;
    if (strcmp(name, "greeting.txt") != 0) {
        snprintf(error, CAP_ERROR_SIZE, "backend for %s is down", name);
        return 1;
    }
    *data = strdup("hello from the host");
    *size = strlen(*data);
    return 0;
}

static void resource_provider_serves_reads_and_reports_failures(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    int calls = 0;
    cap_resource_provider provider = {provider_list, provider_read, NULL};
    cap_config *own;
    own = cap_config_new();
    assert_non_null(own);
    assert_int_equal(cap_config_set_stdlib(own, "build/stdlib.img", error), CAP_OK);
    assert_int_equal(cap_config_add_resource_provider(own, "/data/../backend/", &provider, &calls,
                                                      error),
                     CAP_OK);
    cap_resource_provider incomplete = {provider_list, NULL, NULL};
    assert_int_equal(cap_config_add_resource_provider(own, "/x", &incomplete, NULL, error),
                     CAP_EINVAL);
    cap_sandbox *made;
    assert_int_equal(cap_sandbox_new(own, &made, error), CAP_OK);

    expect(made, "import os; sorted(os.listdir('/backend'))", NULL, CAP_STATUS_SUCCESS,
           "['broken', 'greeting.txt']");
    expect(made, "open('/backend/greeting.txt').read()", NULL, CAP_STATUS_SUCCESS,
           "'hello from the host'");
    assert_int_equal(calls, 1);
    cap_result *result = run(made,
                             "try:\n    open('/backend/broken')\nexcept OSError as e:\n"
                             "    r = type(e).__name__\nr",
                             NULL);
    assert_string_equal(cap_result_return_value(result), "'OSError'");
    size_t size;
    const char *err = cap_result_stderr(result, &size);
    assert_non_null(strstr(err, "/backend/broken: backend for broken is down"));
    cap_result_free(result);
    assert_int_equal(calls, 2);
    /* Not listed, not written, not read: the callback is not even asked. */
    expect(made,
           "import errno\nout = []\nfor p, m in (('/backend/other', 'r'), "
           "('/backend/greeting.txt', 'w'), ('/backend/new', 'w')):\n"
           "    try:\n        open(p, m)\n    except OSError as e:\n"
           "        out.append(errno.errorcode[e.errno])\nout",
           NULL, CAP_STATUS_SUCCESS, "['ENOENT', 'EROFS', 'EROFS']");
    assert_int_equal(calls, 2);
    cap_sandbox_free(made);
    cap_config_free(own);
}

/* What a writable provider received: one string of "name@offset:bytes;". */
typedef struct written {
    char log[256];
} written;

static int provider_write(void *userdata, const char *name, uint64_t offset, const void *data,
                          size_t size, char *error) {
    written *w = userdata;
    if (strcmp(name, "broken") == 0) {
        snprintf(error, CAP_ERROR_SIZE, "the queue for %s is full", name);
        return 1;
    }
    size_t used = strlen(w->log);
    snprintf(w->log + used, sizeof w->log - used, "%s@%llu:%.*s;", name,
             (unsigned long long)offset, (int)size, (const char *)data);
    return 0;
}

static int no_read(void *userdata, const char *name, void **data, size_t *size, char *error) {
    (void)userdata, (void)data, (void)size;
    snprintf(error, CAP_ERROR_SIZE, "%s is write-only", name);
    return 1;
}

static void resource_provider_consumes_writes(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    written w = {""};
    cap_resource_provider provider = {provider_list, no_read, provider_write};
    cap_config *own = cap_config_new();
    assert_non_null(own);
    assert_int_equal(cap_config_set_stdlib(own, "build/stdlib.img", error), CAP_OK);
    assert_int_equal(cap_config_add_resource_provider(own, "/outbox", &provider, &w, error),
                     CAP_OK);
    cap_sandbox *made;
    assert_int_equal(cap_sandbox_new(own, &made, error), CAP_OK);
    expect(made,
           "with open('/outbox/greeting.txt', 'w') as f:\n    f.write('hi'); f.flush(); "
           "f.write(' there')\n",
           NULL, CAP_STATUS_SUCCESS, NULL);
    assert_string_equal(w.log, "greeting.txt@0:;greeting.txt@0:hi;greeting.txt@2: there;");
    /* A failing consumer is the guest's OSError, with its message on
     * stderr; names the provider does not list cannot be written. */
    cap_result *result = run(made,
                             "import errno\nout = []\nfor p in ('/outbox/broken', '/outbox/new'):\n"
                             "    try:\n        with open(p, 'w') as f: f.write('x')\n"
                             "    except OSError as e:\n        out.append(errno.errorcode[e.errno])\n"
                             "out",
                             NULL);
    assert_string_equal(cap_result_return_value(result), "['EIO', 'ENOENT']");
    size_t size;
    assert_non_null(strstr(cap_result_stderr(result, &size), "the queue for broken is full"));
    cap_result_free(result);
    cap_sandbox_free(made);
    cap_config_free(own);
}

static void artifacts_come_back_with_the_result(void **state) {
    (void)state;
    cap_result *result = run(sandbox,
                             "open('/output/chart.png', 'wb').write(b'\\x89PNG')\n"
                             "open('/work/not-an-artifact', 'w').write('x')",
                             "artifacts");
    assert_int_equal(cap_result_artifact_count(result), 1);
    const cap_artifact *artifact = cap_result_artifact(result, 0);
    assert_string_equal(artifact->name, "chart.png");
    assert_string_equal(artifact->media_type, "image/png");
    assert_int_equal(artifact->size, 4);
    assert_memory_equal(artifact->data, "\x89PNG", 4);
    assert_null(cap_result_artifact(result, 1));
    cap_result_free(result);
    /* In a session, the next run returns only what it made. */
    result = run(sandbox, "open('/output/b.csv', 'w').write('1')", "artifacts");
    assert_int_equal(cap_result_artifact_count(result), 1);
    assert_string_equal(cap_result_artifact(result, 0)->name, "b.csv");
    assert_string_equal(cap_result_artifact(result, 0)->media_type, "text/csv");
    cap_result_free(result);
    char error[CAP_ERROR_SIZE];
    assert_int_equal(cap_session_close(sandbox, "artifacts", error), CAP_OK);
}

/* Packages from Debian's dist-packages: installed before the run, listed
 * in the result; a second identical request is answered from memory. */
static void count_progress(void *userdata, const char *message) {
    (void)message;
    (*(int *)userdata)++;
}

static void packages_are_installed_from_host_site_packages(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    cap_config *own = cap_config_new();
    cap_sandbox *s = NULL;
    assert_int_equal(cap_config_set_stdlib(own, "build/stdlib.img", error), CAP_OK);
    assert_int_equal(cap_config_add_wheel_directory(own, "/nonexistent/wheels", error), CAP_EINVAL);
    assert_non_null(strstr(error, "not a directory"));
    assert_int_equal(cap_config_add_index_url(own, "file:///etc", error), CAP_EINVAL);
    assert_int_equal(cap_config_add_site_packages(own, "/usr/lib/python3/dist-packages", error),
                     CAP_OK);
    assert_int_equal(cap_sandbox_new(own, &s, error), CAP_OK);
    const char *code = "import markdown\nmarkdown.markdown('*x*')";
    for (int round = 0; round < 2; round++) {
        int progress = 0;
        cap_run_options options = {0};
        options.capture = 1;
        options.on_progress = count_progress;
        options.userdata = &progress;
        cap_result *result = NULL;
        assert_int_equal(cap_sandbox_run(s, code, strlen(code), &options, &result, error), CAP_OK);
        assert_int_equal(cap_result_status(result), CAP_STATUS_SUCCESS);
        assert_string_equal(cap_result_return_value(result), "'<p><em>x</em></p>'");
        assert_int_equal(cap_result_dependency_count(result), 1);
        assert_string_equal(cap_result_dependency(result, 0), "Markdown==3.4.1");
        assert_null(cap_result_dependency(result, 1));
        if (round == 0) assert_true(progress > 0);
        else assert_int_equal(progress, 0); /* remembered: nothing resolved again */
        cap_result_free(result);
    }
    /* PyYAML's C accelerator is left out, and the result says so. */
    cap_result *result = run(s, "import yaml\nyaml.safe_load('a: 1')", NULL);
    assert_int_equal(cap_result_status(result), CAP_STATUS_SUCCESS);
    assert_string_equal(cap_result_return_value(result), "{'a': 1}");
    assert_int_equal(cap_result_note_count(result), 1);
    assert_non_null(strstr(cap_result_note(result, 0), "PyYAML==6.0: installed without"));
    assert_null(cap_result_note(result, 1));
    cap_result_free(result);
    result = run(s, "print('not run')\nimport no_such_distribution_here", NULL);
    assert_int_equal(cap_result_status(result), CAP_STATUS_INSTALL_ERROR);
    assert_non_null(strstr(cap_result_error(result), "no_such_distribution_here: "));
    size_t size;
    cap_result_stdout(result, &size);
    assert_int_equal(size, 0);
    cap_result_free(result);
    cap_sandbox_free(s);
    cap_config_free(own);
}

/* --- host functions ------------------------------------------------------------ */

/* What the host functions saw, for the tests to check. */
typedef struct function_log {
    int calls;
    char arguments[512];   /* of the last call */
    char session[64];      /* "" for a fresh run */
    double timeout;        /* of the last call */
    int approvals;
    int approve;           /* what the approval callback answers */
} function_log;

/* "lookup_order" answers with the order; "echo" returns its arguments;
 * "fail" and "slow" fail in their two ways; "big" returns a string of
 * `order_id` bytes. */
static int host_function(void *userdata, const cap_function_call *call, char **result,
                         size_t *result_size, char *error) {
    function_log *log = userdata;
    log->calls++;
    snprintf(log->arguments, sizeof log->arguments, "%s", call->arguments);
    snprintf(log->session, sizeof log->session, "%s", call->session ? call->session : "");
    log->timeout = call->timeout_seconds;
    const char *id = strstr(call->arguments, "\"order_id\":");
    long number = id ? strtol(id + 11, NULL, 10) : 0;
    if (strcmp(call->name, "fail") == 0) {
        snprintf(error, CAP_ERROR_SIZE, "the database is down (order %ld)", number);
        return CAP_FUNCTION_ERROR;
    }
    if (strcmp(call->name, "slow") == 0) {
        snprintf(error, CAP_ERROR_SIZE, "no answer within %.2f s", call->timeout_seconds);
        return CAP_FUNCTION_TIMEOUT;
    }
    if (strcmp(call->name, "echo") == 0 || strcmp(call->name, "guarded") == 0) {
        *result = strdup(call->arguments);
        *result_size = call->arguments_size;
        return CAP_FUNCTION_OK;
    }
    if (strcmp(call->name, "big") == 0) {
        *result = malloc((size_t)number + 2);
        if (!*result) return CAP_FUNCTION_ERROR;
        memset(*result, 'x', (size_t)number + 2);
        (*result)[0] = (*result)[number + 1] = '"';
        *result_size = (size_t)number + 2;
        return CAP_FUNCTION_OK;
    }
    char text[128];
    int n = snprintf(text, sizeof text, "{\"order\":%ld,\"status\":\"shipped\"}", number);
    *result = strdup(text);
    *result_size = (size_t)n;
    return CAP_FUNCTION_OK;
}

static int approve_call(void *userdata, const char *function, const char *arguments,
                        char *reason) {
    function_log *log = userdata;
    log->approvals++;
    snprintf(log->arguments, sizeof log->arguments, "%s(%s)", function, arguments);
    if (!log->approve && log->approvals > 2) snprintf(reason, CAP_ERROR_SIZE, "the test says no");
    return log->approve;
}

static const char order_schema[] =
    "{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"integer\",\"description\":"
    "\"The order's number.\"},\"verbose\":{\"type\":\"boolean\"}},\"required\":[\"order_id\"],"
    "\"additionalProperties\":false}";

/* A sandbox granting the test functions, all logging into `log`. */
static cap_sandbox *function_sandbox(cap_config **own, function_log *log) {
    char error[CAP_ERROR_SIZE];
    *own = cap_config_new();
    assert_non_null(*own);
    assert_int_equal(cap_config_set_stdlib(*own, "build/stdlib.img", error), CAP_OK);
    assert_int_equal(cap_config_add_function(*own, "lookup_order", "Looks an order up by number.",
                                             order_schema, host_function, log, error),
                     CAP_OK);
    static const char *const others[] = {"echo", "fail", "slow", "big", "guarded", "hidden_one"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        assert_int_equal(cap_config_add_function(*own, others[i], NULL, NULL, host_function, log,
                                                 error),
                         CAP_OK);
    assert_int_equal(cap_config_require_approval(*own, "guarded", error), CAP_OK);
    assert_int_equal(cap_config_deny_functions(*own, "hidden_*", error), CAP_OK);
    cap_sandbox *made;
    assert_int_equal(cap_sandbox_new(*own, &made, error), CAP_OK);
    return made;
}

static cap_result *run_with(cap_sandbox *s, const char *code, cap_run_options *options) {
    char error[CAP_ERROR_SIZE];
    cap_result *result = NULL;
    options->capture = 1;
    if (cap_sandbox_run(s, code, strlen(code), options, &result, error) != CAP_OK)
        fail_msg("cap_sandbox_run: %s", error);
    return result;
}

static void expect_returned(cap_result *result, const char *value) {
    if (cap_result_status(result) != CAP_STATUS_SUCCESS || !cap_result_return_value(result) ||
        strcmp(cap_result_return_value(result), value) != 0)
        fail_msg("wanted %s, got %s: %s", value,
                 cap_result_return_value(result) ? cap_result_return_value(result) : "nothing",
                 cap_result_error(result) ? cap_result_error(result) : "");
    cap_result_free(result);
}

static void host_function_names_and_schemas_are_checked(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    cap_config *own = cap_config_new();
    assert_non_null(own);
    static const char *const bad_names[] = {"class", "_private", "a-b", "9lives", "", "call",
                                            "ToolError", "name.with.dots", "é"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_int_equal(cap_config_add_function(own, bad_names[i], NULL, NULL, host_function,
                                                 NULL, error),
                         CAP_EINVAL);
    static const char *const bad_schemas[] = {"[]", "{\"type\":\"string\"}", "not json",
                                              "{\"properties\":{\"a\":{\"type\":\"decimal\"}}}",
                                              "{\"required\":\"a\"}"};
    for (size_t i = 0; i < sizeof bad_schemas / sizeof *bad_schemas; i++)
        assert_int_equal(cap_config_add_function(own, "f", NULL, bad_schemas[i], host_function,
                                                 NULL, error),
                         CAP_EINVAL);
    assert_int_equal(cap_config_add_function(own, "f", NULL, NULL, NULL, NULL, error), CAP_EINVAL);
    assert_int_equal(cap_config_add_function(own, "f", "d", order_schema, host_function, NULL,
                                             error),
                     CAP_OK);
    assert_int_equal(cap_config_add_function(own, "f", NULL, NULL, host_function, NULL, error),
                     CAP_EINVAL);
    assert_non_null(strstr(error, "twice"));
    assert_int_equal(cap_config_require_approval(own, "g", error), CAP_EINVAL);
    assert_int_equal(cap_config_allow_functions(own, "", error), CAP_EINVAL);
    assert_int_equal(cap_config_set_audit_log(own, "/nonexistent/dir/log", error), CAP_EIO);
    cap_config_free(own);
}

static void host_function_is_called_in_the_host(void **state) {
    (void)state;
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    cap_run_options options = {0};
    expect_returned(run_with(s, "from capsule.functions import lookup_order\n"
                             "lookup_order(order_id=42)", &options),
                 "{'order': 42, 'status': 'shipped'}");
    assert_int_equal(log.calls, 1);
    assert_string_equal(log.arguments, "{\"order_id\":42}");
    assert_string_equal(log.session, "");
    /* The per-call time is bounded by the run's wall clock (30 s here). */
    assert_true(log.timeout > 25 && log.timeout <= 30);
    /* Bytes cross as bytes, both ways; unicode and nesting survive. */
    expect_returned(run_with(s, "from capsule.functions import echo\n"
                             "echo(data=b'\\x00\\xff', text='h\\u00e9', nested={'a': [1, None]})",
                          &options),
                 "{'data': b'\\x00\\xff', 'text': 'hé', 'nested': {'a': [1, None]}}");
    assert_non_null(strstr(log.arguments, "\"data\":{\"$bytes\":\"AP8=\"}"));
    /* The signature and docstring come from the schema. */
    expect_returned(run_with(s, "import inspect\nfrom capsule.functions import lookup_order as f\n"
                             "(str(inspect.signature(f)), 'Looks an order up' in f.__doc__, "
                             "\"The order's number.\" in f.__doc__)", &options),
                 "('(*, order_id: int, verbose: bool = None)', True, True)");
    /* Wrong arguments are a TypeError before anything is sent... */
    int before = log.calls;
    expect_returned(run_with(s, "from capsule.functions import lookup_order\nout = []\n"
                             "for kw in ({}, {'order_id': 1, 'colour': 2}):\n"
                             "    try:\n        lookup_order(**kw)\n"
                             "    except TypeError as e:\n        out.append(str(e))\nout",
                          &options),
                 "[\"lookup_order() missing required keyword argument: 'order_id'\", "
                 "\"lookup_order() got an unexpected keyword argument 'colour'\"]");
    /* ... and the host refuses what the schema refuses, whatever the guest sends. */
    expect_returned(run_with(s, "from capsule.functions import call\n"
                             "try:\n    call('lookup_order', order_id='7')\n"
                             "except TypeError as e:\n    r = str(e)\nr", &options),
                 "\"argument 'order_id' has the wrong type\"");
    assert_int_equal(log.calls, before);
    /* In a session, the callback learns which. */
    options.session = "s1";
    expect_returned(run_with(s, "from capsule.functions import lookup_order\n"
                             "lookup_order(order_id=1)['order']", &options), "1");
    assert_string_equal(log.session, "s1");
    char error[CAP_ERROR_SIZE];
    assert_int_equal(cap_session_close(s, "s1", error), CAP_OK);
    cap_sandbox_free(s);
    cap_config_free(own);
}

static void host_function_errors_become_python_exceptions(void **state) {
    (void)state;
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    cap_run_options options = {0};
    /* Not granted (never added, or denied by a pattern): PermissionError,
     * and the denied one is not listed. */
    expect_returned(run_with(s, "import capsule.functions as f\nout = [f.__all__]\n"
                             "for name in ('delete_everything', 'hidden_one'):\n"
                             "    try:\n        f.call(name)\n"
                             "    except PermissionError as e:\n        out.append(str(e))\n"
                             "try:\n    from capsule.functions import hidden_one\n"
                             "except PermissionError as e:\n    out.append(type(e).__name__)\nout",
                          &options),
                 "[['big', 'echo', 'fail', 'guarded', 'lookup_order', 'slow'], "
                 "\"function 'delete_everything' is not granted to this sandbox\", "
                 "\"function 'hidden_one' is not granted to this sandbox\", 'PermissionError']");
    assert_int_equal(log.calls, 0);
    /* The callback's failure is a ToolError with its message; its timeout
     * a TimeoutError; the program goes on after catching them. */
    options.limits.function_seconds = 0.25;
    expect_returned(run_with(s, "from capsule.functions import fail, slow, ToolError\nout = []\n"
                             "for f in (fail, slow):\n"
                             "    try:\n        f(order_id=3)\n"
                             "    except (ToolError, TimeoutError) as e:\n"
                             "        out.append(f'{type(e).__name__}: {e}')\nout",
                          &options),
                 "['ToolError: the database is down (order 3)', 'TimeoutError: no answer within "
                 "0.25 s']");
    assert_true(log.timeout > 0.2 && log.timeout <= 0.25);
    /* Uncaught, a ToolError fails the run like any exception. */
    cap_result *result = run_with(s, "from capsule.functions import fail\nfail()", &options);
    assert_int_equal(cap_result_status(result), CAP_STATUS_RUN_ERROR);
    assert_non_null(strstr(cap_result_error(result), "capsule.functions.ToolError: the database"));
    cap_result_free(result);
    cap_sandbox_free(s);
    cap_config_free(own);
}

static void approval_fails_closed(void **state) {
    (void)state;
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    const char *code = "from capsule.functions import guarded\n"
                       "try:\n    r = guarded(x=1)\nexcept PermissionError as e:\n    r = str(e)\nr";
    cap_run_options options = {0};
    expect_returned(run_with(s, code, &options),
                 "\"calling 'guarded' needs approval, which was not available\"");
    options.approve = approve_call;
    options.userdata = &log;
    log.approve = 0;
    expect_returned(run_with(s, code, &options), "\"calling 'guarded' needs approval, which was "
                                              "refused\"");
    assert_int_equal(log.approvals, 1);
    assert_string_equal(log.arguments, "guarded({\"x\":1})");
    assert_int_equal(log.calls, 0); /* it never ran */
    log.approve = 1;
    expect_returned(run_with(s, code, &options), "{'x': 1}");
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.approvals, 2);
    /* The approver's reason reaches the guest's PermissionError. */
    log.approve = 0;
    expect_returned(run_with(s, code, &options), "\"calling 'guarded' needs approval, which was "
                                              "refused: the test says no\"");
    cap_sandbox_free(s);
    cap_config_free(own);
}

static void large_results_are_spilled_not_lost(void **state) {
    (void)state;
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    cap_run_options options = {0};
    /* 5 MiB back, more than the 1 MiB scratch quota of this run: it comes
     * through a file, which is gone once read. */
    options.limits.disk_bytes = 1 << 20;
    expect_returned(run_with(s, "import os\nfrom capsule.functions import big\n"
                             "r = big(order_id=5 << 20)\n"
                             "(len(r), set(r), os.listdir('/tmp/capsule-results'))",
                          &options),
                 "(5242880, {'x'}, [])");
    /* The run's result budget: the call that crosses it is delivered,
     * the next one refused; so is the call past the count limit. */
    options.limits.function_result_bytes = 3 << 20;
    options.limits.function_calls = 5;
    expect_returned(run_with(s, "from capsule.functions import big, echo\nout = []\n"
                             "for f, n in ((big, 2 << 20), (big, 2 << 20), (big, 1)):\n"
                             "    try:\n        out.append(len(f(order_id=n)))\n"
                             "    except PermissionError as e:\n        out.append(str(e))\n"
                             "for i in range(5):\n"
                             "    try:\n        echo(i=i)\n"
                             "    except PermissionError as e:\n        out.append(str(e))\nout",
                          &options),
                 "[2097152, 2097152, \"the run's budget of 3145728 result bytes is used up\", "
                 "\"the run's budget of 3145728 result bytes is used up\", "
                 "\"the run's budget of 3145728 result bytes is used up\", "
                 "\"the run's budget of 3145728 result bytes is used up\", "
                 "\"the run's budget of 3145728 result bytes is used up\", "
                 "\"the run's budget of 3145728 result bytes is used up\"]");
    options.limits.function_result_bytes = 0;
    options.limits.function_calls = 2;
    expect_returned(run_with(s, "from capsule.functions import echo\nout = []\n"
                             "for i in range(3):\n"
                             "    try:\n        out.append(echo(i=i)['i'])\n"
                             "    except PermissionError as e:\n        out.append(str(e))\nout",
                          &options),
                 "[0, 1, \"the run's limit of 2 function calls is reached\"]");
    cap_sandbox_free(s);
    cap_config_free(own);
}

static void hostile_guest_garbage_on_the_call_device(void **state) {
    (void)state;
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    cap_run_options options = {0};
    /* Garbage, a call of another shape, an empty read, a request over the
     * worker's cap: each a clear error, none reaching a callback. */
    expect_returned(run_with(s, "import os, errno, json\nout = []\n"
                             "def ask(data):\n    os.write(6, data)\n    chunks = []\n"
                             "    while True:\n        c = os.read(6, 65536)\n"
                             "        if not c: break\n        chunks.append(c)\n"
                             "    return json.loads(b''.join(chunks).partition(b'\\n')[0])['error']\n"
                             "out.append(ask(b'\\xff\\x00garbage' * 100))\n"
                             "out.append(ask(b'{\"op\": \"call\", \"function\": 7, \"arguments\": []}'))\n"
                             "out.append(ask(b'{\"op\": \"call\", \"function\": \"echo\", \"arguments\": {\"a\": 1}'))\n"
                             "out.append(os.read(6, 10))\n"
                             "try:\n    os.write(6, b'x' * (17 << 20))\n"
                             "except OSError as e:\n    out.append(errno.errorcode[e.errno])\nout",
                          &options),
                 "['malformed', 'malformed', 'malformed', b'', 'EFBIG']");
    assert_int_equal(log.calls, 0);
    /* The sandbox is fine, and so is the next call. */
    expect_returned(run_with(s, "from capsule.functions import echo\necho(ok=True)", &options),
                 "{'ok': True}");
    cap_sandbox_free(s);
    cap_config_free(own);
}

static void calls_are_audited(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE], path[] = "/tmp/capsule-audit-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    function_log log = {0};
    cap_config *own;
    cap_sandbox *s = function_sandbox(&own, &log);
    assert_int_equal(cap_config_set_audit_log(own, path, error), CAP_OK);
    cap_run_options options = {0};
    options.session = "audited";
    expect_returned(run_with(s, "from capsule.functions import call, lookup_order, fail\n"
                             "lookup_order(order_id=9)\n"
                             "for f in (fail, lambda: call('nope')):\n"
                             "    try:\n        f()\n    except Exception:\n        pass\n1",
                          &options),
                 "1");
    assert_int_equal(cap_session_close(s, "audited", error), CAP_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char lines[3][1024];
    for (int i = 0; i < 3; i++) assert_non_null(fgets(lines[i], sizeof lines[i], f));
    char extra[16];
    assert_null(fgets(extra, sizeof extra, f));
    fclose(f);
    unlink(path);
    /* sha256 of {"order_id":9} and of the result, as the host saw them. */
    assert_non_null(strstr(lines[0], "\"session\":\"audited\",\"function\":\"lookup_order\","
                                     "\"arguments_bytes\":14,"));
    assert_non_null(strstr(lines[0], "\"result_bytes\":30,"));
    assert_non_null(strstr(lines[0], "\"outcome\":\"ok\""));
    assert_non_null(strstr(lines[0], "\"time\":\"20"));
    assert_non_null(strstr(lines[0], "\"duration_ms\":"));
    assert_non_null(strstr(lines[1], "\"function\":\"fail\""));
    assert_non_null(strstr(lines[1], "\"outcome\":\"error\",\"message\":\"the database is down"));
    assert_non_null(strstr(lines[1], "\"result_sha256\":null"));
    assert_non_null(strstr(lines[2], "\"function\":\"nope\""));
    assert_non_null(strstr(lines[2], "\"outcome\":\"not-granted\""));
    cap_sandbox_free(s);
    cap_config_free(own);
}

/* Code mode through the API: an upstream MCP server (a tiny Python one,
 * run by the host's python3) is added with its mcpServers JSON; its tools
 * join the registry as "test.TOOL" and are importable in the guest. */
static void mcp_server_tools_join_the_registry(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    char names[64];
    cap_config *own = cap_config_new();
    assert_non_null(own);
    assert_int_equal(cap_config_set_stdlib(own, "build/stdlib.img", error), CAP_OK);
    static const char *const bad[] = {"not json", "[]", "{}", "{\"command\": 3}",
                                      "{\"command\": \"x\", \"url\": \"http://h/\"}",
                                      "{\"url\": \"ftp://h/\"}",
                                      "{\"command\": \"/nonexistent/program\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(cap_config_add_mcp_server(own, "test", bad[i], error), CAP_EINVAL);
    assert_int_equal(cap_config_add_mcp_server(own, "no good", "{\"command\": \"x\"}", error),
                     CAP_EINVAL);
    static const char server[] =
        "{\"command\": \"python3\", \"args\": [\"tests/code_mode/upstream.py\", \"well\"]}";
    assert_int_equal(cap_config_add_mcp_server(own, "test", server, error), CAP_OK);
    assert_int_equal(cap_config_add_mcp_server(own, "test", server, error), CAP_EINVAL);
    assert_non_null(strstr(error, "twice"));
    assert_int_equal(cap_config_mcp_server_names(own, names, sizeof names), 1);
    assert_string_equal(names, "test");
    /* The registry's controls apply to upstream tools by their dotted names. */
    assert_int_equal(cap_config_deny_functions(own, "test.fail", error), CAP_OK);
    assert_int_equal(cap_config_require_approval(own, "test.echo", error), CAP_OK);
    cap_sandbox *s;
    assert_int_equal(cap_sandbox_new(own, &s, error), CAP_OK);
    expect(s, "from servers.test import add\nadd(a=2, b=3)['sum']", NULL, CAP_STATUS_SUCCESS, "5");
    expect(s, "import os\nsorted(os.listdir('/servers/test'))", NULL, CAP_STATUS_SUCCESS,
           "['__init__.py', 'add.py', 'echo.py', 'get_image.py']");
    expect(s, "from servers.test import echo\ntry:\n    r = echo(text='x')\n"
              "except PermissionError:\n    r = 'refused'\nr", NULL, CAP_STATUS_SUCCESS, "'refused'");
    cap_sandbox_free(s);
    cap_config_free(own);
}

static int ok_callback(void *userdata, const cap_function_call *call, char **result,
                       size_t *result_size, char *error) {
    (void)userdata, (void)call, (void)error;
    *result = strdup("{}");
    *result_size = 2;
    return CAP_FUNCTION_OK;
}

/* help and describe through the C API, on a config of their own (no
 * sandbox needed: the host searches and asks). */
static void help_searches_docs_recipes_and_functions(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE] = "";
    char directory[] = "/tmp/capsule-help-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[256];
    snprintf(path, sizeof path, "%s/orders.md", directory);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("# Orders\n\n## Refunds\n\nA refund goes back to the card.\n", file);
    fclose(file);
    cap_config *own = cap_config_new();
    assert_non_null(own);
    char *json = cap_config_help(own, NULL, "how do I unpack a zip archive?", 2, error);
    assert_non_null(json);
    assert_non_null(strstr(json, "capsule:recipes/zip.md"));
    free(json);
    /* New docs and functions are found on the next search. */
    assert_int_equal(cap_config_add_docs(own, directory, error), CAP_OK);
    assert_int_equal(cap_config_add_function(own, "lookup_order", "Finds a parcel's tracking "
                                             "number.", NULL, ok_callback, NULL, error), CAP_OK);
    json = cap_config_help(own, NULL, "Where is my refund?", 1, error);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"path\":\"/docs/orders.md\""));
    free(json);
    json = cap_config_help(own, NULL, "parcel tracking", 1, error);
    assert_non_null(json);
    assert_non_null(strstr(json, "capsule.functions.lookup_order"));
    free(json);
    json = cap_config_help(own, NULL, "\"NEAR(\" AND OR * ^ : - \"", 0, error);
    assert_non_null(json);
    free(json);
    /* CPython's own documentation is compiled in. */
    json = cap_config_help(own, NULL, "What does enumerate return?", 1, error);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"path\":\"builtins.enumerate\""));
    assert_non_null(strstr(json, "\"kind\":\"python-doc\""));
    free(json);
    assert_null(cap_config_help(own, NULL, "x", 21, error));
    assert_null(cap_config_help(own, NULL, NULL, 1, error));
    /* describe is off until a URL is set, and the URL must be http(s). */
    assert_int_equal(cap_config_describe_enabled(own), 0);
    assert_null(cap_config_describe(own, "text", 4, "a.txt", "what?", 1, error));
    assert_non_null(strstr(error, "not available"));
    assert_int_equal(cap_config_set_describe(own, "file:///etc/passwd", NULL, NULL, error),
                     CAP_EINVAL);
    assert_int_equal(cap_config_set_describe(own, "http://127.0.0.1:9/v1/chat/completions",
                                             "key", NULL, error), CAP_OK);
    assert_int_equal(cap_config_describe_enabled(own), 1);
    assert_null(cap_config_describe(own, "\x00\x01\x02", 3, "junk", "what?", 1, error));
    assert_non_null(strstr(error, "unsupported media type"));
    /* An image over 1568 px a side is refused, its size read from its
     * header; the API is openai, anthropic or auto. */
    static const unsigned char wide_png[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
        0, 0, 0x07, 0xd0, 0, 0, 0, 10, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    assert_null(cap_config_describe(own, wide_png, sizeof wide_png, "wide.png", "what?", 1, error));
    assert_non_null(strstr(error, "the image is 2000x10 px"));
    assert_int_equal(cap_config_set_describe_api(own, "anthropic", error), CAP_OK);
    assert_int_equal(cap_config_set_describe_api(own, "gemini", error), CAP_EINVAL);
    assert_int_equal(cap_config_set_describe_api(own, NULL, error), CAP_OK);
    cap_config_free(own);
    unlink(path);
    snprintf(path, sizeof path, "%s", directory);
    rmdir(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fresh_runs_share_nothing),
        cmocka_unit_test(tempfile_names_differ_between_workers),
        cmocka_unit_test(session_keeps_variables_imports_and_files),
        cmocka_unit_test(least_recently_used_session_is_evicted_with_a_clear_error),
        cmocka_unit_test(idle_session_expires),
        cmocka_unit_test(workers_are_locked_down),
        cmocka_unit_test(killed_session_worker_is_reported_and_the_sandbox_recovers),
        cmocka_unit_test(session_whose_run_times_out_ends_cleanly),
        cmocka_unit_test(finished_workers_do_not_pile_up),
        cmocka_unit_test(limits_give_distinct_statuses),
        cmocka_unit_test(oversized_program_is_refused_cleanly),
        cmocka_unit_test(input_files_land_in_the_scratch_space_only),
        cmocka_unit_test(resource_provider_serves_reads_and_reports_failures),
        cmocka_unit_test(resource_provider_consumes_writes),
        cmocka_unit_test(artifacts_come_back_with_the_result),
        cmocka_unit_test(packages_are_installed_from_host_site_packages),
        cmocka_unit_test(host_function_names_and_schemas_are_checked),
        cmocka_unit_test(host_function_is_called_in_the_host),
        cmocka_unit_test(host_function_errors_become_python_exceptions),
        cmocka_unit_test(approval_fails_closed),
        cmocka_unit_test(large_results_are_spilled_not_lost),
        cmocka_unit_test(hostile_guest_garbage_on_the_call_device),
        cmocka_unit_test(calls_are_audited),
        cmocka_unit_test(mcp_server_tools_join_the_registry),
        cmocka_unit_test(help_searches_docs_recipes_and_functions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
