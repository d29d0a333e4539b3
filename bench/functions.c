/*
 * functions.c — the host-function benchmark: what one guest→host→guest
 * call costs.
 *
 *     build/bench_functions [--calls N]
 *
 * Uses only the public API (include/capsule.h).  One sandbox grants
 * "echo" (a C callback returning its arguments); one run inside it calls
 * it N times in a loop, three ways, timing itself with
 * time.perf_counter_ns in the guest:
 *
 * 1. the generated function, `echo(n=i)`: what a program writes;
 * 2. `capsule.functions.call("echo", n=i)`: the same without the
 *    keyword check of the generated wrapper;
 * 3. the raw device, a prepared request written to fd 6 and the answer
 *    read back: the transport alone (worker, channel, parent, callback),
 *    without JSON in the guest;
 *
 * then the same call with a 64 KiB string argument.  Each loop's mean is
 * the round trip; calls/s is its inverse.  On a busy machine the wall
 * time includes waiting for a core, so the CPU time per call is reported
 * too: the worker's (time.process_time_ns in the guest) and the parent's
 * (getrusage over the run, divided by the calls).  The host counts the callbacks
 * and checks that each way made exactly N calls.  Target: ≤ 50 µs per
 * small call (docs/functions.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include "capsule.h"

#define DEFAULT_CALLS 20000

static long callbacks;

static double seconds(const struct timeval *t) {
    return (double)t->tv_sec + (double)t->tv_usec / 1e6;
}

static int echo(void *userdata, const cap_function_call *call, char **result,
                size_t *result_size, char *error) {
    (void)userdata, (void)error;
    callbacks++;
    *result = malloc(call->arguments_size + 1);
    if (!*result) return CAP_FUNCTION_ERROR;
    memcpy(*result, call->arguments, call->arguments_size + 1);
    *result_size = call->arguments_size;
    return CAP_FUNCTION_OK;
}

static const char program[] =
    "import os, time, json\n"
    "from capsule.functions import echo, call\n"
    "N = %d\n"
    "echo(n=-1)\n"
    "cpu = []\n"
    "def timed(loop):\n"
    "    start, cpu_start = time.perf_counter_ns(), time.process_time_ns()\n"
    "    loop()\n"
    "    cpu.append((time.process_time_ns() - cpu_start) / N / 1000)\n"
    "    return (time.perf_counter_ns() - start) / N / 1000\n"
    "def generated():\n"
    "    for i in range(N): echo(n=i)\n"
    "def by_name():\n"
    "    for i in range(N): call('echo', n=i)\n"
    "request = b'{\"op\":\"call\",\"function\":\"echo\",\"arguments\":{\"n\":1}}'\n"
    "def raw():\n"
    "    for i in range(N):\n"
    "        os.write(6, request)\n"
    "        os.read(6, 65536)\n"
    "big = 'z' * 65536\n"
    "def large():\n"
    "    for i in range(N // 10): echo(s=big)\n"
    "out = {'generated': timed(generated), 'call': timed(by_name), 'raw': timed(raw),\n"
    "       'large_64k': timed(large) * 10}\n"
    "print(json.dumps(out), *cpu[:3])\n";

int main(int argc, char **argv) {
    int calls = DEFAULT_CALLS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) calls = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_functions [--calls N]\n");
            return 2;
        }
    }
    if (calls < 10) calls = 10;
    char error[CAP_ERROR_SIZE];
    cap_config *config = cap_config_new();
    cap_sandbox *sandbox = NULL;
    if (!config || cap_config_set_stdlib(config, "build/stdlib.img", error) != CAP_OK ||
        cap_config_add_function(config, "echo", "Returns its arguments.", NULL, echo, NULL,
                                error) != CAP_OK ||
        cap_sandbox_new(config, &sandbox, error) != CAP_OK) {
        fprintf(stderr, "bench_functions: %s\n", error);
        return 1;
    }
    char code[sizeof program + 32];
    snprintf(code, sizeof code, program, calls);
    cap_run_options options = {0};
    options.capture = 1;
    options.limits.wall_seconds = 600;
    options.limits.function_calls = 4 * (uint32_t)calls + 10;
    options.limits.function_result_bytes = 1ull << 40;
    cap_result *result = NULL;
    int status = 1;
    struct rusage before;
    getrusage(RUSAGE_SELF, &before);
    if (cap_sandbox_run(sandbox, code, strlen(code), &options, &result, error) != CAP_OK) {
        fprintf(stderr, "bench_functions: %s\n", error);
    } else if (cap_result_status(result) != CAP_STATUS_SUCCESS) {
        fprintf(stderr, "bench_functions: the run failed: %s\n", cap_result_error(result));
    } else if (callbacks != 1 + 3L * calls + calls / 10) {
        fprintf(stderr, "bench_functions: %ld callbacks, expected %ld\n", callbacks,
                1 + 3L * calls + calls / 10);
    } else {
        size_t size;
        const char *out = cap_result_stdout(result, &size);
        double generated, by_name, raw, large, cpu[3];
        if (sscanf(out, "{\"generated\": %lf, \"call\": %lf, \"raw\": %lf, \"large_64k\": %lf} "
                        "%lf %lf %lf", &generated, &by_name, &raw, &large, &cpu[0], &cpu[1],
                   &cpu[2]) == 7) {
            struct rusage after;
            getrusage(RUSAGE_SELF, &after);
            double host = (seconds(&after.ru_utime) + seconds(&after.ru_stime) -
                           seconds(&before.ru_utime) - seconds(&before.ru_stime)) /
                          (double)callbacks * 1e6;
            printf("host-function round trip (guest -> host -> guest), %d calls each, "
                   "mean per call:\n", calls);
            printf("  echo(n=i), generated function   %7.1f us   %8.0f calls/s\n", generated,
                   1e6 / generated);
            printf("  call('echo', n=i)               %7.1f us   %8.0f calls/s\n", by_name,
                   1e6 / by_name);
            printf("  raw device write + read         %7.1f us   %8.0f calls/s\n", raw,
                   1e6 / raw);
            printf("  echo(s=64 KiB string)           %7.1f us   %8.0f calls/s\n", large,
                   1e6 / large);
            printf("CPU per small call: worker (guest, user+system) %.1f / %.1f / %.1f us "
                   "(generated / call / raw); host (parent) %.1f us on average\n",
                   cpu[0], cpu[1], cpu[2], host);
            printf("target <= 50 us for a small call: %s\n",
                   generated <= 50 ? "met" : "NOT met");
            status = 0;
        } else {
            fprintf(stderr, "bench_functions: unexpected output: %.*s\n", (int)size, out);
        }
    }
    cap_result_free(result);
    cap_sandbox_free(sandbox);
    cap_config_free(config);
    return status;
}
