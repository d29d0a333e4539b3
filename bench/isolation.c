/*
 * isolation.c — the isolation benchmark: what a fresh, isolated run costs.
 *
 *     build/bench_isolation [--markdown FILE] [--runs N] [--seconds S]
 *
 * Uses only the public API (include/capsule.h).  In one invocation it
 * measures:
 *
 * 1. latency of `print(1+1)` in a fresh worker, from just before
 *    cap_sandbox_run to its return (request to result), from a warm sandbox
 *    with a pre-forked pool (the default, 2 workers) and with no pool (every
 *    worker forked on demand): p50, p90, p99, max after 20 warm-up runs;
 * 2. throughput: runs/s of one process with one sandbox, and of two
 *    processes at once (one sandbox each) on two cores, summed;
 * 3. memory: Private_Dirty, Pss and Rss (/proc/PID/smaps_rollup) and page
 *    tables (VmPTE) of a worker kept alive by a session after `print(1+1)`,
 *    of an idle pooled worker, and of the zygote;
 * 4. native comparison: `python3.11 -c "print(1+1)"` started with
 *    posix_spawn and reaped with wait4 (wall time, max RSS);
 * 5. sandbox creation: cap_sandbox_new until it returns (interpreter warm).
 *
 * Every run is checked: status success and stdout exactly "2\n"; anything
 * else stops the benchmark with exit status 1.  Targets not met are reported
 * but do not change the exit status.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "capsule.h"

extern char **environ;

#define CODE "print(1+1)"
#define EXPECTED "2\n"
#define WARMUP 20
#define DEFAULT_RUNS 1000
#define DEFAULT_SECONDS 5.0
#define NATIVE_RUNS 100
#define NATIVE_WARMUP 5
#define CREATE_RUNS 5
#define MAX_CHILDREN 4096
#define DEFAULT_POOL 2 /* capsule.h: cap_config_set_pool_size */

/* Targets of the issue. */
#define TARGET_P50_MS 0.25
#define TARGET_P99_MS 2.0
#define TARGET_RUNS_PER_SECOND 1000.0
#define TARGET_PRIVATE_KIB 8192.0 /* 8 MB, taken as 8 MiB */

static const char *native_python = "/usr/bin/python3.11";

/* --- helpers ---------------------------------------------------------------- */

static void die(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bench_isolation: FAILED: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static void progress(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bench_isolation: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *sorted, size_t n, double q) {
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static double median(double *values, size_t n) {
    qsort(values, n, sizeof *values, compare_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static char *format_ms(char *out, size_t size, double seconds) {
    double ms = seconds * 1000.0;
    if (ms >= 100) snprintf(out, size, "%.0f ms", ms);
    else if (ms >= 10) snprintf(out, size, "%.1f ms", ms);
    else if (ms >= 1) snprintf(out, size, "%.2f ms", ms);
    else snprintf(out, size, "%.3f ms", ms);
    return out;
}
#define MS(seconds) format_ms((char[32]){0}, 32, (seconds))

/* Bytes beyond one per character (for padding text with "≤" in it). */
static int utf8_extra(const char *text) {
    int extra = 0;
    for (; *text; text++)
        if (((unsigned char)*text & 0xC0) == 0x80) extra++;
    return extra;
}

static char *format_kib(char *out, size_t size, double kib) {
    if (kib < 0) snprintf(out, size, "n/a");
    else if (kib >= 1024) snprintf(out, size, "%.2f MiB", kib / 1024);
    else snprintf(out, size, "%.0f KiB", kib);
    return out;
}
#define KIB(kib) format_kib((char[32]){0}, 32, (kib))

/* --- sandboxes ---------------------------------------------------------------- */

static cap_config *make_config(int pool_size) {
    char error[CAP_ERROR_SIZE];
    cap_config *config = cap_config_new();
    if (!config) die("cap_config_new: out of memory");
    if (pool_size >= 0 && cap_config_set_pool_size(config, pool_size, error) != CAP_OK)
        die("cap_config_set_pool_size(%d): %s", pool_size, error);
    return config;
}

static cap_sandbox *make_sandbox(cap_config *config) {
    char error[CAP_ERROR_SIZE];
    cap_sandbox *sandbox;
    if (cap_sandbox_new(config, &sandbox, error) != CAP_OK) die("cap_sandbox_new: %s", error);
    return sandbox;
}

/* At most 200 bytes of `data`, quoted, with control bytes escaped. */
static char *quoted(char *out, const char *data, size_t size) {
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < size && i < 200; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\n') n += (size_t)sprintf(out + n, "\\n");
        else if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') n += (size_t)sprintf(out + n, "\\x%02x", c);
        else out[n++] = (char)c;
    }
    n += (size_t)sprintf(out + n, "\"%s", size > 200 ? "..." : "");
    out[n] = '\0';
    return out;
}

static void check_result(const cap_result *result, const char *what) {
    size_t out_size, err_size;
    const char *out = cap_result_stdout(result, &out_size);
    const char *err = cap_result_stderr(result, &err_size);
    cap_status status = cap_result_status(result);
    if (status != CAP_STATUS_SUCCESS || out_size != strlen(EXPECTED) ||
        memcmp(out, EXPECTED, out_size) != 0) {
        const char *error = cap_result_error(result);
        char out_text[1024], err_text[1024], expected[64];
        die("%s: status %s, stdout %s (expected %s), stderr %s, error: %s", what,
            cap_status_name(status), quoted(out_text, out, out_size),
            quoted(expected, EXPECTED, strlen(EXPECTED)), quoted(err_text, err, err_size),
            error ? error : "-");
    }
}

/* --pace: the pause before each timed run of the paced rows (0: none). */
static double pace_seconds = 0;

static void pause_for(double seconds) {
    if (!(seconds > 0)) return;
    struct timespec pause = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&pause, NULL);
}

/* One checked run of CODE; returns its request-to-result time in seconds. */
static double timed_run(cap_sandbox *sandbox, const char *session, const char *what) {
    char error[CAP_ERROR_SIZE];
    cap_run_options options = {0};
    options.capture = 1;
    options.session = session;
    cap_result *result = NULL;
    double start = now();
    int rc = cap_sandbox_run(sandbox, CODE, strlen(CODE), &options, &result, error);
    double elapsed = now() - start;
    if (rc != CAP_OK) die("%s: cap_sandbox_run: %s", what, error);
    check_result(result, what);
    cap_result_free(result);
    return elapsed;
}

/* The guest really is CPython on WASI, not something else answering "2". */
static void sanity_check(cap_sandbox *sandbox) {
    const char *code = "import sys; (sys.platform, sys.version_info[:2])";
    char error[CAP_ERROR_SIZE];
    cap_result *result = NULL;
    if (cap_sandbox_run(sandbox, code, strlen(code), NULL, &result, error) != CAP_OK)
        die("sanity check: %s", error);
    const char *value = cap_result_return_value(result);
    if (cap_result_status(result) != CAP_STATUS_SUCCESS || !value ||
        strcmp(value, "('wasi', (3, 11))") != 0)
        die("sanity check: the guest reports %s, expected ('wasi', (3, 11))",
            value ? value : "nothing");
    cap_result_free(result);
}

/* --- 1. latency ------------------------------------------------------------------ */

typedef struct latency {
    int pool_size;
    size_t runs;
    double p50, p90, p99, max, mean;
} latency;

/* `runs` timed runs, each after a pause of `pace` seconds (0: back to
 * back, so the pool's refill competes with the next run). */
static latency measure_latency(int pool_size, size_t runs, double pace) {
    cap_config *config = make_config(pool_size);
    cap_sandbox *sandbox = make_sandbox(config);
    sanity_check(sandbox);
    for (int i = 0; i < WARMUP; i++) timed_run(sandbox, NULL, "latency warm-up");
    double *times = malloc(runs * sizeof *times);
    if (!times) die("out of memory");
    double sum = 0;
    for (size_t i = 0; i < runs; i++) {
        pause_for(pace);
        times[i] = timed_run(sandbox, NULL, "latency");
        sum += times[i];
    }
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    qsort(times, runs, sizeof *times, compare_double);
    latency l = {pool_size, runs, percentile(times, runs, 0.50), percentile(times, runs, 0.90),
                 percentile(times, runs, 0.99), times[runs - 1], sum / (double)runs};
    free(times);
    return l;
}

/* For reference, not an isolated run: the same worker again, through a
 * session, so neither a fresh process nor its page faults are paid. */
static latency measure_same_worker(size_t runs, double pace) {
    char error[CAP_ERROR_SIZE];
    cap_config *config = make_config(-1);
    cap_sandbox *sandbox = make_sandbox(config);
    for (int i = 0; i <= WARMUP; i++) timed_run(sandbox, "again", "session warm-up");
    double *times = malloc(runs * sizeof *times);
    if (!times) die("out of memory");
    double sum = 0;
    for (size_t i = 0; i < runs; i++) {
        pause_for(pace);
        times[i] = timed_run(sandbox, "again", "session latency");
        sum += times[i];
    }
    if (cap_session_close(sandbox, "again", error) != CAP_OK) die("cap_session_close: %s", error);
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    qsort(times, runs, sizeof *times, compare_double);
    latency l = {-1, runs, percentile(times, runs, 0.50), percentile(times, runs, 0.90),
                 percentile(times, runs, 0.99), times[runs - 1], sum / (double)runs};
    free(times);
    return l;
}

/* --- 2. throughput ------------------------------------------------------------------ */

typedef struct counted {
    long runs;
    double seconds;
} counted;

static counted run_for(cap_sandbox *sandbox, double seconds) {
    counted c = {0, 0};
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        timed_run(sandbox, NULL, "throughput");
        c.runs++;
        t = now();
    }
    c.seconds = t - start;
    return c;
}

/* One process: its own sandbox (default pool), warmed up, then runs for
 * `seconds` once the parent says go. */
static void throughput_child(int ready_fd, int go_fd, int result_fd, double seconds) {
    cap_config *config = make_config(-1);
    cap_sandbox *sandbox = make_sandbox(config);
    for (int i = 0; i < WARMUP; i++) timed_run(sandbox, NULL, "throughput warm-up");
    char byte = 'r';
    if (write(ready_fd, &byte, 1) != 1) die("throughput child: ready pipe: %s", strerror(errno));
    if (read(go_fd, &byte, 1) != 1) die("throughput child: go pipe closed");
    counted c = run_for(sandbox, seconds);
    if (write(result_fd, &c, sizeof c) != (ssize_t)sizeof c)
        die("throughput child: result pipe: %s", strerror(errno));
    cap_sandbox_free(sandbox);
    cap_config_free(config);
}

typedef struct throughput {
    double single;     /* runs/s, one process */
    double parallel;   /* runs/s, summed over the processes */
    double per[2];     /* each process's runs/s */
    long runs_single, runs_parallel;
    int processes;
    double cpu_per_run; /* CPU seconds of all processes per run, single process */
} throughput;

static pid_t find_zygote(void);
static double process_cpu_seconds(pid_t pid);

/* CPU time of this process, its reaped children (the workers) and the
 * sandbox's zygote (alive, so not among the reaped children). */
static double tree_cpu_seconds(pid_t zygote) {
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    double t = 0;
    const struct rusage *u[] = {&self, &children};
    for (int i = 0; i < 2; i++)
        t += (double)u[i]->ru_utime.tv_sec + (double)u[i]->ru_utime.tv_usec / 1e6 +
             (double)u[i]->ru_stime.tv_sec + (double)u[i]->ru_stime.tv_usec / 1e6;
    return t + process_cpu_seconds(zygote);
}

static double measure_parallel(int processes, double seconds, throughput *t) {
    int ready[2], go[2], results[2];
    if (pipe(ready) || pipe(go) || pipe(results)) die("pipe: %s", strerror(errno));
    pid_t pids[2];
    fflush(NULL);
    for (int i = 0; i < processes; i++) {
        pids[i] = fork();
        if (pids[i] < 0) die("fork: %s", strerror(errno));
        if (pids[i] == 0) {
            close(ready[0]);
            close(go[1]);
            close(results[0]);
            throughput_child(ready[1], go[0], results[1], seconds);
            _exit(0);
        }
    }
    close(ready[1]);
    close(go[0]);
    close(results[1]);
    for (int i = 0; i < processes; i++) {
        char byte;
        if (read(ready[0], &byte, 1) != 1) die("a throughput process failed before starting");
    }
    char go_bytes[2] = {'g', 'g'};
    if (write(go[1], go_bytes, (size_t)processes) != processes) die("go pipe: %s", strerror(errno));
    double total = 0;
    long runs = 0;
    for (int i = 0; i < processes; i++) {
        counted c;
        if (read(results[0], &c, sizeof c) != (ssize_t)sizeof c)
            die("a throughput process failed while running");
        t->per[i] = (double)c.runs / c.seconds;
        total += t->per[i];
        runs += c.runs;
    }
    for (int i = 0; i < processes; i++) {
        int status;
        while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("throughput process %d ended with status %d", (int)pids[i], status);
    }
    close(ready[0]);
    close(go[1]);
    close(results[0]);
    t->runs_parallel = runs;
    return total;
}

static throughput measure_throughput(double seconds) {
    throughput t = {0};
    t.processes = 2;
    t.parallel = measure_parallel(2, seconds, &t);

    cap_config *config = make_config(-1);
    cap_sandbox *sandbox = make_sandbox(config);
    for (int i = 0; i < WARMUP; i++) timed_run(sandbox, NULL, "throughput warm-up");
    pid_t zygote = find_zygote();
    if (!zygote) progress("warning: zygote not identified; its CPU time is left out");
    double cpu = tree_cpu_seconds(zygote);
    counted c = run_for(sandbox, seconds);
    t.cpu_per_run = (tree_cpu_seconds(zygote) - cpu) / (double)c.runs;
    t.single = (double)c.runs / c.seconds;
    t.runs_single = c.runs;
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return t;
}

/* --- 3. memory ---------------------------------------------------------------------- */

typedef struct memory {
    int valid;
    double rss, pss, private_dirty, private_clean, pte; /* KiB */
    double minor_faults; /* since the process started */
} memory;

/* Children of this process: the zygotes and (CLONE_PARENT) their workers. */
static size_t list_children(pid_t *out, size_t max) {
    DIR *proc = opendir("/proc");
    if (!proc) die("/proc: %s", strerror(errno));
    size_t n = 0;
    pid_t self = getpid();
    struct dirent *entry;
    while ((entry = readdir(proc)) && n < max) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], text[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t size = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[size] = '\0';
        char *paren = strrchr(text, ')'); /* the command name may hold anything */
        char state;
        long ppid;
        if (paren && sscanf(paren + 1, " %c %ld", &state, &ppid) == 2 && ppid == self &&
            state != 'Z')
            out[n++] = (pid_t)pid;
    }
    closedir(proc);
    return n;
}

/* The seccomp mode from /proc/PID/status: workers are filtered (2), the
 * zygote is not (0); -1 if unreadable. */
static int seccomp_mode(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int mode = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Seccomp: %d", &mode) == 1) break;
    fclose(f);
    return mode;
}

/* utime + stime of a live process, 0 if unknown. */
static double process_cpu_seconds(pid_t pid) {
    if (pid <= 0) return 0;
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t size = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[size] = '\0';
    char *paren = strrchr(text, ')');
    unsigned long utime, stime;
    if (!paren || sscanf(paren + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                         &utime, &stime) != 2)
        return 0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The one child that is not seccomp-filtered: the (only) sandbox's zygote.
 * A worker the zygote has just cloned is not filtered either until it has
 * locked itself down, so this waits (up to 2 s) for a single candidate. */
static pid_t find_zygote(void) {
    static pid_t children[MAX_CHILDREN];
    double deadline = now() + 2;
    do {
        size_t n = list_children(children, MAX_CHILDREN);
        pid_t found = 0;
        int candidates = 0;
        for (size_t i = 0; i < n; i++) {
            if (seccomp_mode(children[i]) != 0) continue;
            candidates++;
            found = children[i];
        }
        if (candidates == 1) return found;
        usleep(1000);
    } while (now() < deadline);
    return 0;
}

static int contains(const pid_t *pids, size_t n, pid_t pid) {
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid) return 1;
    return 0;
}

/* The single child that is in `after` but not in `before`. */
static pid_t new_child(const pid_t *before, size_t n_before, const pid_t *after, size_t n_after,
                       const char *what) {
    pid_t found = 0;
    for (size_t i = 0; i < n_after; i++) {
        if (contains(before, n_before, after[i])) continue;
        if (found) die("%s: more than one new child process (%d, %d)", what, (int)found,
                       (int)after[i]);
        found = after[i];
    }
    if (!found) die("%s: no new child process found", what);
    return found;
}

static double field_kib(const char *line, const char *name) {
    size_t length = strlen(name);
    double value;
    if (strncmp(line, name, length) == 0 && sscanf(line + length, " %lf kB", &value) == 1)
        return value;
    return -1;
}

static memory read_memory(pid_t pid) {
    memory m = {0, -1, -1, -1, -1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        progress("cannot read %s: %s", path, strerror(errno));
        return m;
    }
    while (fgets(line, sizeof line, f)) {
        double v;
        if ((v = field_kib(line, "Rss:")) >= 0) m.rss = v;
        else if ((v = field_kib(line, "Pss:")) >= 0) m.pss = v;
        else if ((v = field_kib(line, "Private_Dirty:")) >= 0) m.private_dirty = v;
        else if ((v = field_kib(line, "Private_Clean:")) >= 0) m.private_clean = v;
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r"))) {
        while (fgets(line, sizeof line, f)) {
            double v = field_kib(line, "VmPTE:");
            if (v >= 0) m.pte = v;
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r"))) {
        char text[1024];
        size_t size = fread(text, 1, sizeof text - 1, f);
        text[size] = '\0';
        fclose(f);
        /* after "(comm)": state ppid pgrp session tty tpgid flags minflt */
        char *paren = strrchr(text, ')');
        unsigned long minflt;
        if (paren && sscanf(paren + 1, " %*c %*d %*d %*d %*d %*d %*u %lu", &minflt) == 1)
            m.minor_faults = (double)minflt;
    }
    m.valid = m.rss >= 0 && m.private_dirty >= 0;
    return m;
}

typedef struct memory_report {
    memory worker;      /* session worker after print(1+1) */
    memory idle_ahead;  /* the pool's newest idle worker after fresh runs: hot pages written */
    memory idle;        /* idle pooled worker (mean of the pool) */
    memory zygote;
    int idle_count;
} memory_report;

static memory_report measure_memory(void) {
    memory_report r = {0};
    static pid_t before[MAX_CHILDREN], after[MAX_CHILDREN];
    char error[CAP_ERROR_SIZE];

    /* No pool: the zygote is the one new child of cap_sandbox_new, and the
     * session's worker the one new child of the run. */
    size_t n_before = list_children(before, MAX_CHILDREN);
    cap_config *config = make_config(0);
    cap_sandbox *sandbox = make_sandbox(config);
    size_t n_after = list_children(after, MAX_CHILDREN);
    pid_t zygote = new_child(before, n_before, after, n_after, "zygote");
    if (seccomp_mode(zygote) != 0) die("child %d is not the zygote (seccomp mode %d)", (int)zygote,
                                       seccomp_mode(zygote));
    memcpy(before, after, n_after * sizeof *after);
    n_before = n_after;
    timed_run(sandbox, "bench", "memory (session)");
    n_after = list_children(after, MAX_CHILDREN);
    pid_t worker = new_child(before, n_before, after, n_after, "session worker");
    if (seccomp_mode(worker) != 2)
        die("child %d is not a worker (seccomp mode %d)", (int)worker, seccomp_mode(worker));
    r.worker = read_memory(worker);
    r.zygote = read_memory(zygote);
    if (cap_session_close(sandbox, "bench", error) != CAP_OK) die("cap_session_close: %s", error);
    cap_sandbox_free(sandbox);
    cap_config_free(config);

    /* The default pool: its idle workers, before any run.  The sandbox may
     * refill its pool asynchronously, so wait (up to 2 s) until both workers
     * exist and have locked themselves down. */
    n_before = list_children(before, MAX_CHILDREN);
    config = make_config(-1);
    sandbox = make_sandbox(config);
    double deadline = now() + 2;
    for (;;) {
        n_after = list_children(after, MAX_CHILDREN);
        int workers = 0;
        for (size_t i = 0; i < n_after; i++)
            if (!contains(before, n_before, after[i]) && seccomp_mode(after[i]) == 2) workers++;
        if (workers >= DEFAULT_POOL || now() > deadline) break;
        usleep(1000);
    }
    memory sum = {1, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < n_after; i++) {
        if (contains(before, n_before, after[i]) || seccomp_mode(after[i]) != 2) continue;
        memory m = read_memory(after[i]);
        if (!m.valid) continue;
        sum.rss += m.rss;
        sum.pss += m.pss;
        sum.private_dirty += m.private_dirty;
        sum.private_clean += m.private_clean;
        sum.pte += m.pte;
        sum.minor_faults += m.minor_faults;
        r.idle_count++;
    }
    /* After fresh runs, the workers forked since the first one reported
     * its hot pages have written them while idle (hot_pages.h): their
     * Private_Dirty and faults are those the run no longer takes. */
    for (int i = 0; i < 3; i++) timed_run(sandbox, NULL, "memory (fresh runs)");
    usleep(300 * 1000);
    n_after = list_children(after, MAX_CHILDREN);
    pid_t newest = 0;
    for (size_t i = 0; i < n_after; i++)
        if (!contains(before, n_before, after[i]) && seccomp_mode(after[i]) == 2 &&
            after[i] > newest)
            newest = after[i];
    if (newest) r.idle_ahead = read_memory(newest);
    if (r.idle_count) {
        double n = r.idle_count;
        r.idle = (memory){1, sum.rss / n, sum.pss / n, sum.private_dirty / n,
                          sum.private_clean / n, sum.pte / n, sum.minor_faults / n};
    }
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return r;
}

/* --- 4. native ------------------------------------------------------------------------ */

typedef struct native {
    int runs;
    double p50, p99, max;
    double max_rss_kib, median_rss_kib;
} native;

static double native_run(double *rss_kib) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)native_python, "-c", CODE, NULL};
    pid_t pid;
    double start = now();
    int rc = posix_spawn(&pid, native_python, &actions, NULL, argv, environ);
    if (rc != 0) die("posix_spawn %s: %s", native_python, strerror(rc));
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0)
        if (errno != EINTR) die("wait4: %s", strerror(errno));
    double elapsed = now() - start;
    posix_spawn_file_actions_destroy(&actions);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s -c '%s' ended with status %d", native_python, CODE, status);
    *rss_kib = (double)usage.ru_maxrss;
    return elapsed;
}

/* Checks once that the native interpreter prints what capsule's does. */
static void native_check(void) {
    char command[512];
    snprintf(command, sizeof command, "%s -c '%s'", native_python, CODE);
    FILE *p = popen(command, "r");
    char out[64] = {0};
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int status = p ? pclose(p) : -1;
    if (status != 0 || n != strlen(EXPECTED) || memcmp(out, EXPECTED, n) != 0)
        die("%s does not print %s", command, "2");
}

static native measure_native(void) {
    native r = {NATIVE_RUNS, 0, 0, 0, 0, 0};
    double times[NATIVE_RUNS], rss[NATIVE_RUNS], ignored;
    native_check();
    for (int i = 0; i < NATIVE_WARMUP; i++) native_run(&ignored);
    for (int i = 0; i < NATIVE_RUNS; i++) times[i] = native_run(&rss[i]);
    qsort(times, NATIVE_RUNS, sizeof *times, compare_double);
    r.p50 = percentile(times, NATIVE_RUNS, 0.50);
    r.p99 = percentile(times, NATIVE_RUNS, 0.99);
    r.max = times[NATIVE_RUNS - 1];
    for (int i = 0; i < NATIVE_RUNS; i++)
        if (rss[i] > r.max_rss_kib) r.max_rss_kib = rss[i];
    r.median_rss_kib = median(rss, NATIVE_RUNS);
    return r;
}

/* --- 5. sandbox creation ------------------------------------------------------------- */

static double measure_creation(int pool_size) {
    double times[CREATE_RUNS];
    cap_config *config = make_config(pool_size);
    for (int i = 0; i < CREATE_RUNS; i++) {
        double start = now();
        cap_sandbox *sandbox = make_sandbox(config);
        times[i] = now() - start;
        cap_sandbox_free(sandbox);
    }
    cap_config_free(config);
    return median(times, CREATE_RUNS);
}

/* --- machine facts --------------------------------------------------------------------- */

typedef struct fact {
    const char *key;
    char value[256];
} fact;

static void first_line(const char *command, char *out, size_t size) {
    out[0] = '\0';
    FILE *p = popen(command, "r");
    if (!p) return;
    if (!fgets(out, (int)size, p)) out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
}

static int machine_facts(fact *facts, const char *executable) {
    int n = 0;
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    int nproc = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus)
                                                              : (int)sysconf(_SC_NPROCESSORS_ONLN);
    facts[n].key = "nproc";
    snprintf(facts[n++].value, sizeof facts[0].value, "%d", nproc);

    char line[512];
    facts[n].key = "CPU";
    snprintf(facts[n].value, sizeof facts[0].value, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            char *value = strchr(line, ':') + 1;
            value += strspn(value, " \t");
            value[strcspn(value, "\n")] = '\0';
            snprintf(facts[n].value, sizeof facts[0].value, "%s", value);
            break;
        }
    }
    if (f) fclose(f);
    n++;

    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        double kib;
        if (sscanf(line, "MemTotal: %lf kB", &kib) == 1) {
            facts[n].key = "memory";
            snprintf(facts[n++].value, sizeof facts[0].value, "%.1f GiB", kib / (1 << 20));
            break;
        }
    }
    if (f) fclose(f);

    struct utsname u;
    if (uname(&u) == 0) {
        facts[n].key = "kernel";
        snprintf(facts[n++].value, sizeof facts[0].value, "%s %s", u.sysname, u.release);
    }
    f = fopen("/proc/loadavg", "r");
    double load[3];
    if (f && fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) == 3) {
        facts[n].key = "load average at start";
        snprintf(facts[n++].value, sizeof facts[0].value, "%.2f %.2f %.2f", load[0], load[1],
                 load[2]);
    }
    if (f) fclose(f);

    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    facts[n].key = "date";
    strftime(facts[n++].value, sizeof facts[0].value, "%Y-%m-%d %H:%M UTC", &tm);

    facts[n].key = "capsule";
    snprintf(facts[n++].value, sizeof facts[0].value,
             "%s (CPython 3.11, wasm32-wasi via wasm2c), library API", CAP_VERSION);

    char command[600], version[200];
    snprintf(command, sizeof command, "%s -c 'import sys; print(sys.version.replace(chr(10), \" \"))'",
             native_python);
    first_line(command, version, sizeof version);
    facts[n].key = "native";
    snprintf(facts[n++].value, sizeof facts[0].value, "%s: %s", native_python,
             version[0] ? version : "unknown");

    /* The project's commit, from the directory of this executable's source
     * tree (build/.. by default). */
    char directory[400] = ".";
    const char *slash = strrchr(executable, '/');
    if (slash) snprintf(directory, sizeof directory, "%.*s", (int)(slash - executable), executable);
    char commit[100], dirty[100];
    snprintf(command, sizeof command, "git -C '%s' rev-parse --short HEAD 2>/dev/null", directory);
    first_line(command, commit, sizeof commit);
    if (commit[0]) {
        snprintf(command, sizeof command,
                 "git -C '%s' status --porcelain --untracked-files=no 2>/dev/null", directory);
        first_line(command, dirty, sizeof dirty);
        facts[n].key = "project commit";
        snprintf(facts[n++].value, sizeof facts[0].value, "%s%s", commit,
                 dirty[0] ? " (with uncommitted changes)" : "");
    }
    return n;
}

/* Wall-clock enforcement: how long after its deadline a busy run's result
 * comes back (the host SIGKILLs the worker at the deadline). */
#define OVERSHOOT_RUNS 10
#define OVERSHOOT_LIMIT 0.2
#define TARGET_OVERSHOOT_MS 50.0

static double measure_overshoot(void) {
    cap_config *config = make_config(-1);
    cap_sandbox *sandbox = make_sandbox(config);
    static const char code[] = "while True: pass";
    double worst = 0;
    for (int i = 0; i < OVERSHOOT_RUNS; i++) {
        char error[CAP_ERROR_SIZE];
        cap_run_options options = {0};
        options.capture = 1;
        options.limits.wall_seconds = OVERSHOOT_LIMIT;
        options.limits.cpu_seconds = 30;
        cap_result *result = NULL;
        double started = now();
        if (cap_sandbox_run(sandbox, code, sizeof code - 1, &options, &result, error) != CAP_OK)
            die("overshoot run: %s", error);
        double overshoot = now() - started - OVERSHOOT_LIMIT;
        if (cap_result_status(result) != CAP_STATUS_TIMEOUT)
            die("overshoot run ended with %s, not timeout", cap_status_name(cap_result_status(result)));
        cap_result_free(result);
        if (overshoot > worst) worst = overshoot;
    }
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return worst;
}

/* --- report ----------------------------------------------------------------------------- */

typedef struct results {
    latency pooled, on_demand, same_worker;
    latency paced, paced_same_worker; /* with --pace: one run every pace_seconds */
    throughput tput;
    memory_report mem;
    native nat;
    double create_pooled, create_bare;
    double overshoot; /* worst wall-clock overshoot */
    double seconds; /* throughput duration */
    double total;   /* the whole benchmark */
} results;

typedef struct target {
    const char *name;
    char wanted[32], measured[32];
    int met;
} target;

static int targets(const results *r, target *t) {
    int n = 0;
    t[n] = (target){"p50 request-to-result, pre-forked pool", "", "", 0};
    snprintf(t[n].wanted, sizeof t[n].wanted, "≤ %.2f ms", TARGET_P50_MS);
    snprintf(t[n].measured, sizeof t[n].measured, "%.3f ms", r->pooled.p50 * 1e3);
    t[n].met = r->pooled.p50 * 1e3 <= TARGET_P50_MS;
    n++;
    t[n] = (target){"p99 request-to-result, pre-forked pool", "", "", 0};
    snprintf(t[n].wanted, sizeof t[n].wanted, "≤ %.0f ms", TARGET_P99_MS);
    snprintf(t[n].measured, sizeof t[n].measured, "%.3f ms", r->pooled.p99 * 1e3);
    t[n].met = r->pooled.p99 * 1e3 <= TARGET_P99_MS;
    n++;
    t[n] = (target){"runs/s on 2 cores", "", "", 0};
    snprintf(t[n].wanted, sizeof t[n].wanted, "≥ %.0f", TARGET_RUNS_PER_SECOND);
    snprintf(t[n].measured, sizeof t[n].measured, "%.0f", r->tput.parallel);
    t[n].met = r->tput.parallel >= TARGET_RUNS_PER_SECOND;
    n++;
    t[n] = (target){"private memory per worker (Private_Dirty)", "", "", 0};
    snprintf(t[n].wanted, sizeof t[n].wanted, "≤ 8 MiB");
    format_kib(t[n].measured, sizeof t[n].measured, r->mem.worker.private_dirty);
    t[n].met = r->mem.worker.valid && r->mem.worker.private_dirty <= TARGET_PRIVATE_KIB;
    n++;
    t[n] = (target){"wall-clock overshoot (worst of 10, 200 ms limit)", "", "", 0};
    snprintf(t[n].wanted, sizeof t[n].wanted, "≤ %.0f ms", TARGET_OVERSHOOT_MS);
    snprintf(t[n].measured, sizeof t[n].measured, "%.1f ms", r->overshoot * 1e3);
    t[n].met = r->overshoot * 1e3 <= TARGET_OVERSHOOT_MS;
    n++;
    return n;
}

static void print_memory_row(FILE *out, int markdown, const char *name, const memory *m) {
    char faults[32];
    if (m->minor_faults >= 0) snprintf(faults, sizeof faults, "%.0f", m->minor_faults);
    else snprintf(faults, sizeof faults, "n/a");
    if (markdown)
        fprintf(out, "| %s | %s | %s | %s | %s | %s | %s |\n", name, KIB(m->private_dirty),
                KIB(m->private_clean), KIB(m->pss), KIB(m->rss), KIB(m->pte), faults);
    else
        fprintf(out, "  %-36s %11s %11s %11s %11s %9s %8s\n", name, KIB(m->private_dirty),
                KIB(m->private_clean), KIB(m->pss), KIB(m->rss), KIB(m->pte), faults);
}

/* One latency row, as text and as markdown: every latency table row has
 * these columns. */
static void print_latency_row(const char *name, const latency *l) {
    printf("  %-34s %6zu %10s %10s %10s %10s %10s\n", name, l->runs, MS(l->p50), MS(l->p90),
           MS(l->p99), MS(l->max), MS(l->mean));
}

static void write_latency_row(FILE *out, const char *name, const latency *l) {
    fprintf(out, "| %s | %zu | %s | %s | %s | %s | %s |\n", name, l->runs, MS(l->p50),
            MS(l->p90), MS(l->p99), MS(l->max), MS(l->mean));
}

static void print_text(const results *r, const fact *facts, int fact_count,
                       const char *command) {
    printf("capsule isolation benchmark: %s\n", command);
    for (int i = 0; i < fact_count; i++) printf("  %-22s %s\n", facts[i].key, facts[i].value);
    printf("\n1. request-to-result latency of `%s` (fresh worker each run)\n", CODE);
    printf("  %-34s %6s %10s %10s %10s %10s %10s\n", "", "runs", "p50", "p90", "p99", "max",
           "mean");
    print_latency_row("pre-forked pool (2, default)", &r->pooled);
    print_latency_row("no pool (fork on demand)", &r->on_demand);
    printf("  %-34s %6d %10s %10s %10s %10s\n", "native python3.11 process", r->nat.runs,
           MS(r->nat.p50), "", MS(r->nat.p99), MS(r->nat.max));
    print_latency_row("session re-run (not fresh)", &r->same_worker);
    if (pace_seconds > 0) {
        char name[64];
        snprintf(name, sizeof name, "pool, one run every %g ms", pace_seconds * 1e3);
        print_latency_row(name, &r->paced);
        snprintf(name, sizeof name, "session re-run, every %g ms", pace_seconds * 1e3);
        print_latency_row(name, &r->paced_same_worker);
    }
    printf("\n2. throughput (fresh worker per run, %g s each)\n", r->seconds);
    printf("  1 process, 1 sandbox:             %8.0f runs/s (%ld runs; %.2f ms CPU per run, "
           "all processes)\n", r->tput.single, r->tput.runs_single, r->tput.cpu_per_run * 1e3);
    printf("  2 processes, 1 sandbox each:      %8.0f runs/s (%.0f + %.0f; %ld runs)\n",
           r->tput.parallel, r->tput.per[0], r->tput.per[1], r->tput.runs_parallel);
    printf("\n3. memory\n");
    printf("  %-36s %11s %11s %11s %11s %9s %8s\n", "", "Priv_Dirty", "Priv_Clean", "Pss", "Rss",
           "PTE", "minflt");
    print_memory_row(stdout, 0, "worker after print(1+1) (session)", &r->mem.worker);
    if (r->mem.idle_count) print_memory_row(stdout, 0, "idle pooled worker (mean)", &r->mem.idle);
    if (r->mem.idle_ahead.valid)
        print_memory_row(stdout, 0, "  after fresh runs: hot pages written", &r->mem.idle_ahead);
    print_memory_row(stdout, 0, "zygote", &r->mem.zygote);
    printf("  native python3.11 -c: max RSS %s (median %s)\n", KIB(r->nat.max_rss_kib),
           KIB(r->nat.median_rss_kib));
    printf("\n4. sandbox creation (cap_sandbox_new, median of %d)\n", CREATE_RUNS);
    printf("  default pool (2): %s;  no pool: %s\n", MS(r->create_pooled), MS(r->create_bare));

    target t[8];
    int n = targets(r, t);
    printf("\ntargets\n");
    for (int i = 0; i < n; i++)
        printf("  %-44s %-*s %-12s %s\n", t[i].name, 10 + utf8_extra(t[i].wanted), t[i].wanted,
               t[i].measured,
               t[i].met ? "met" : "NOT met");
}

static int write_markdown(const char *path, const results *r, const fact *facts,
                          int fact_count, const char *command) {
    FILE *out = fopen(path, "w");
    if (!out) return -errno;
    fprintf(out, "# Isolation benchmark: a fresh sandboxed run\n\n");
    fprintf(out, "Generated by `bench/isolation.c` (`make bench` builds and runs it); re-run it "
                 "to update this file:\n\n```sh\n%s\n```\n\n", command);
    fprintf(out, "## Machine\n\n");
    for (int i = 0; i < fact_count; i++) fprintf(out, "- %s: %s\n", facts[i].key, facts[i].value);

    fprintf(out, "\n## Targets\n\n| target | wanted | measured | |\n|---|--:|--:|---|\n");
    target t[8];
    int n = targets(r, t);
    for (int i = 0; i < n; i++)
        fprintf(out, "| %s | %s | %s | %s |\n", t[i].name, t[i].wanted, t[i].measured,
                t[i].met ? "met" : "**NOT met**");

    fprintf(out, "\n## Latency: request to result\n\n");
    fprintf(out, "`%s` in a fresh worker per run, timed from just before `cap_sandbox_run` to "
                 "its return, after %d warm-up runs.\n\n", CODE, WARMUP);
    fprintf(out, "| | runs | p50 | p90 | p99 | max | mean |\n|---|--:|--:|--:|--:|--:|--:|\n");
    write_latency_row(out, "pre-forked pool (2, default)", &r->pooled);
    write_latency_row(out, "no pool (fork on demand)", &r->on_demand);
    fprintf(out, "| native `python3.11 -c \"%s\"` process | %d | %s | | %s | %s | |\n", CODE,
            r->nat.runs, MS(r->nat.p50), MS(r->nat.p99), MS(r->nat.max));
    write_latency_row(out, "*for reference, not isolated:* the same worker again (a session)",
                      &r->same_worker);
    if (pace_seconds > 0) {
        char name[80];
        snprintf(name, sizeof name, "pre-forked pool, one run every %g ms", pace_seconds * 1e3);
        write_latency_row(out, name, &r->paced);
        snprintf(name, sizeof name, "the same worker again, one run every %g ms",
                 pace_seconds * 1e3);
        write_latency_row(out, name, &r->paced_same_worker);
    }

    fprintf(out, "\n## Throughput\n\n");
    fprintf(out, "Back-to-back runs of `%s` for %g s, each in a fresh worker.\n\n", CODE,
            r->seconds);
    fprintf(out, "| | runs/s | runs |\n|---|--:|--:|\n");
    fprintf(out, "| 1 process, 1 sandbox | %.0f | %ld |\n", r->tput.single, r->tput.runs_single);
    fprintf(out, "| 2 processes, 1 sandbox each (%.0f + %.0f) | %.0f | %ld |\n", r->tput.per[0],
            r->tput.per[1], r->tput.parallel, r->tput.runs_parallel);
    fprintf(out, "\nCPU time per run, all processes of the single-process case (host, zygote, "
                 "workers): %.2f ms, so %.0f runs/s would fill %d cores.\n",
            r->tput.cpu_per_run * 1e3, r->tput.cpu_per_run > 0 ? 2 / r->tput.cpu_per_run : 0, 2);

    fprintf(out, "\n## Memory\n\nFrom `/proc/PID/smaps_rollup` (page tables: `VmPTE` of "
                 "`/proc/PID/status`; minor faults: `minflt` of `/proc/PID/stat`, counted "
                 "since the process was cloned).\n\n");
    fprintf(out, "| process | Private_Dirty | Private_Clean | Pss | Rss | page tables | minor faults |\n"
                 "|---|--:|--:|--:|--:|--:|--:|\n");
    print_memory_row(out, 1, "worker after `print(1+1)` (kept by a session)", &r->mem.worker);
    if (r->mem.idle_count)
        print_memory_row(out, 1, "idle pooled worker (mean of the pool)", &r->mem.idle);
    if (r->mem.idle_ahead.valid)
        print_memory_row(out, 1, "idle pooled worker after fresh runs (their hot pages written "
                         "ahead)", &r->mem.idle_ahead);
    print_memory_row(out, 1, "zygote", &r->mem.zygote);
    fprintf(out, "\nNative `python3.11 -c \"%s\"`: max RSS %s (median %s over %d runs, "
                 "`ru_maxrss` from `wait4`).\n", CODE, KIB(r->nat.max_rss_kib),
            KIB(r->nat.median_rss_kib), r->nat.runs);

    fprintf(out, "\n## Sandbox creation\n\n");
    fprintf(out, "`cap_sandbox_new` until it returns (interpreter initialised and warm), "
                 "median of %d: %s with the default pool of 2 workers, %s with no pool.\n",
            CREATE_RUNS, MS(r->create_pooled), MS(r->create_bare));

    fprintf(out, "\n## Reading the results\n\n");
    fprintf(out,
            "- A fresh worker costs %s more at the median than running the same code again "
            "in a worker that already ran it (the session row): %s against %s.\n",
            MS(r->pooled.p50 - r->same_worker.p50), MS(r->pooled.p50), MS(r->same_worker.p50));
    if (r->mem.worker.minor_faults >= 0 && r->mem.idle_count)
        fprintf(out,
                "- The worker took %.0f minor page faults in all, an idle pooled worker %.0f "
                "before any request: about %.0f faults belong to the run, and its private "
                "memory grew from %s to %s (the zygote's pages copied on write, and new "
                "allocations). A worker that already ran the code has these pages.\n",
                r->mem.worker.minor_faults, r->mem.idle.minor_faults,
                r->mem.worker.minor_faults - r->mem.idle.minor_faults, KIB(r->mem.idle.private_dirty),
                KIB(r->mem.worker.private_dirty));
    if (r->on_demand.p50 > r->pooled.p50)
        fprintf(out, "- The pre-forked pool saves %s at the median over forking on demand.\n",
                MS(r->on_demand.p50 - r->pooled.p50));
    else
        fprintf(out, "- The pre-forked pool did not lower the median here (%s against %s "
                     "forking on demand).\n", MS(r->pooled.p50), MS(r->on_demand.p50));
    fprintf(out, "- Against a native `python3.11` process per run, a pooled run is %.1f× faster "
                 "at the median.\n", r->nat.p50 / r->pooled.p50);
    fprintf(out, "\n## Method\n\n");
    fprintf(out,
            "- One program, `bench/isolation.c`, using only the public API "
            "(`include/capsule.h`); everything above comes from one invocation.\n"
            "- Every run is checked: status `success` and stdout exactly `2\\n` (a failed "
            "check stops the benchmark). Before timing, one run checks that the guest "
            "reports `sys.platform == 'wasi'` and Python 3.11.\n"
            "- Latency: one sandbox, runs one after another, each timed with "
            "`CLOCK_MONOTONIC` around `cap_sandbox_run` only (freeing the result is not "
            "timed). Percentiles are nearest-rank. With the pool, a run takes an idle "
            "worker and the sandbox forks its replacement while the run executes; with "
            "pool size 0 each run first asks the zygote for a new worker.\n"
            "- The session row is not an isolated run: it re-uses one worker (and its "
            "interpreter state) through a session; it shows what a run costs without a "
            "fresh process.\n"
            "- Throughput: one process with one sandbox (default pool), then two "
            "processes at once, each with its own sandbox, started together after "
            "%d warm-up runs each; runs/s of the two are summed. Each sandbox has its "
            "own zygote and workers; all of them share the two cores. CPU time per run "
            "is `getrusage` of the host and its reaped workers plus the zygote's "
            "`/proc/PID/stat` times, over the single-process measurement.\n"
            "- Memory: a sandbox with pool size 0, so the zygote is the one new child "
            "process of `cap_sandbox_new` and the session's worker (`session = \"bench\"`, "
            "so it stays alive after its result) the one new child of the run "
            "(workers are cloned with `CLONE_PARENT`, so they are children of the host; "
            "they are told apart from the zygote by `Seccomp: 2` in `/proc/PID/status`). "
            "The idle pooled workers are those of a fresh default sandbox. "
            "`Private_Dirty` is memory only that process holds (copied-on-write "
            "pages and its own allocations); `Pss` shares the zygote's pages out among "
            "the processes that map them. The 8 MB target is taken as 8 MiB and is "
            "checked against the worker's `Private_Dirty`; page tables are counted "
            "apart from it. The zygote's `Private_*` figures count only pages no live "
            "worker shares, so they depend on how many workers exist at that moment.\n"
            "- Native: `%s -c \"%s\"` with `posix_spawn` (stdout to /dev/null) and "
            "`wait4`, %d runs after %d warm-up runs; time from before `posix_spawn` to "
            "the return of `wait4`.\n"
            "- Sandbox creation: `cap_sandbox_new` with one `cap_config` (the images "
            "are opened on the first call, which is included in the median's sample); "
            "with the default pool it also forks the 2 idle workers before returning.\n",
            WARMUP, native_python, CODE, NATIVE_RUNS, NATIVE_WARMUP);
    fprintf(out, "\nThe whole benchmark took %.1f s.\n", r->total);
    return fclose(out) == 0 ? 0 : -errno;
}

/* --- main ------------------------------------------------------------------------------ */

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s [--markdown FILE] [--runs N] [--seconds S] [--native PYTHON] [--pace MS]\n"
            "  --markdown FILE  also write the results as markdown to FILE\n"
            "  --runs N         timed runs for the pooled latency (default %d; no pool: N/2)\n"
            "  --seconds S      duration of each throughput measurement (default %.0f)\n"
            "  --native PYTHON  native interpreter to compare with (default %s)\n"
            "  --pace MS        also time 200 fresh runs and 200 session re-runs, each after\n"
            "                   a pause of MS ms (the pool refilled, the CPU gone idle)\n",
            program, DEFAULT_RUNS, DEFAULT_SECONDS, native_python);
    exit(2);
}

int main(int argc, char **argv) {
    const char *markdown = NULL;
    long runs = DEFAULT_RUNS;
    double seconds = DEFAULT_SECONDS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0 && i + 1 < argc) markdown = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--native") == 0 && i + 1 < argc) native_python = argv[++i];
        else if (strcmp(argv[i], "--pace") == 0 && i + 1 < argc)
            pace_seconds = atof(argv[++i]) / 1e3;
        else usage(argv[0]);
    }
    if (runs < 100 || !(seconds > 0) || pace_seconds < 0 || pace_seconds > 10) {
        fprintf(stderr, "%s: --runs must be at least 100, --seconds above 0 and --pace 0 to "
                "10000\n", argv[0]);
        return 2;
    }
    char command[1024];
    size_t used = 0;
    for (int i = 0; i < argc && used < sizeof command; i++)
        used += (size_t)snprintf(command + used, sizeof command - used, "%s%s", i ? " " : "",
                                 argv[i]);

    fact facts[16];
    int fact_count = machine_facts(facts, argv[0]);
    results r = {0};
    r.seconds = seconds;
    double started = now();

    progress("sandbox creation (%d times each, default pool and no pool)", CREATE_RUNS);
    r.create_pooled = measure_creation(-1);
    r.create_bare = measure_creation(0);
    progress("latency, pre-forked pool: %ld runs after %d warm-up", runs, WARMUP);
    r.pooled = measure_latency(-1, (size_t)runs, 0);
    progress("  p50 %s, p99 %s", MS(r.pooled.p50), MS(r.pooled.p99));
    progress("latency, no pool: %ld runs after %d warm-up", runs / 2, WARMUP);
    r.on_demand = measure_latency(0, (size_t)runs / 2, 0);
    progress("  p50 %s, p99 %s", MS(r.on_demand.p50), MS(r.on_demand.p99));
    progress("for reference: the same worker again (session), %d runs", 200);
    r.same_worker = measure_same_worker(200, 0);
    if (pace_seconds > 0) {
        progress("paced: 200 fresh runs, then 200 session re-runs, one every %g ms",
                 pace_seconds * 1e3);
        r.paced = measure_latency(-1, 200, pace_seconds);
        r.paced_same_worker = measure_same_worker(200, pace_seconds);
        progress("  fresh p50 %s, session p50 %s", MS(r.paced.p50), MS(r.paced_same_worker.p50));
    }
    progress("throughput: 2 processes, then 1, %g s each", seconds);
    r.tput = measure_throughput(seconds);
    progress("  %.0f runs/s on 2 processes, %.0f on 1", r.tput.parallel, r.tput.single);
    progress("memory of a worker, the pool and the zygote");
    r.mem = measure_memory();
    progress("wall-clock overshoot: %d runs of a busy loop, %.0f ms limit", OVERSHOOT_RUNS,
             OVERSHOOT_LIMIT * 1e3);
    r.overshoot = measure_overshoot();
    progress("native %s -c '%s': %d runs", native_python, CODE, NATIVE_RUNS);
    r.nat = measure_native();
    r.total = now() - started;
    FILE *load = fopen("/proc/loadavg", "r");
    double l1, l5, l15;
    if (load && fscanf(load, "%lf %lf %lf", &l1, &l5, &l15) == 3 && fact_count < 16) {
        facts[fact_count].key = "load average at end";
        snprintf(facts[fact_count++].value, sizeof facts[0].value, "%.2f %.2f %.2f", l1, l5, l15);
    }
    if (load) fclose(load);

    print_text(&r, facts, fact_count, command);
    printf("(benchmark run took %.1f s)\n", r.total);
    if (markdown) {
        int rc = write_markdown(markdown, &r, facts, fact_count, command);
        if (rc) die("cannot write %s: %s", markdown, strerror(-rc));
        printf("wrote %s\n", markdown);
    }
    return 0;
}
