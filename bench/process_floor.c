/*
 * process_floor.c — what one process per run costs on this machine, with no
 * capsule in it: the floor under `build/bench_isolation`'s fresh runs.
 *
 * A parent holding as much written anonymous memory as capsule's zygote
 * forks children back to back; each child writes some of that memory (the
 * copy-on-write copies a fresh run makes: about 260 pages for `print(1+1)`,
 * docs/sessions.md) and exits; the parent reaps it.  Printed: the p50 of a
 * whole cycle (fork, writes, exit, reap) for 0 and for the given number of
 * pages written.  Fresh runs back to back cannot be cheaper than their
 * share of that CPU (the cycle's time over the cores that can overlap it).
 *
 *   make build/bench_process_floor && build/bench_process_floor [--mebibytes 24] [--pages 260]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CYCLES 400
#define PAGE 4096

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p50 of CYCLES fork-write-exit-reap cycles, in seconds; the child
 * writes `pages` pages spread over `memory` (every other page from the
 * start, as a run's writes are spread over the heap). */
static double cycle_p50(unsigned char *memory, size_t size, long pages) {
    double times[CYCLES];
    for (int i = 0; i < CYCLES; i++) {
        double start = now();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        if (pid == 0) {
            for (long p = 0; p < pages && (size_t)(2 * p + 1) * PAGE <= size; p++)
                memory[(size_t)(2 * p) * PAGE] ^= 1;
            _exit(0);
        }
        if (waitpid(pid, NULL, 0) != pid) {
            perror("waitpid");
            exit(1);
        }
        times[i] = now() - start;
    }
    qsort(times, CYCLES, sizeof *times, compare);
    return times[CYCLES / 2];
}

int main(int argc, char **argv) {
    long mebibytes = 24, pages = 260;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mebibytes") == 0 && i + 1 < argc) mebibytes = atol(argv[++i]);
        else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc) pages = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--mebibytes N] [--pages N]\n", argv[0]);
            return 2;
        }
    }
    if (mebibytes < 1 || pages < 0) {
        fprintf(stderr, "%s: --mebibytes must be at least 1 and --pages at least 0\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)mebibytes << 20;
    unsigned char *memory =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(memory, 1, size); /* written: the child shares it copy-on-write */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double bare = cycle_p50(memory, size, 0), writing = cycle_p50(memory, size, pages);
    printf("process floor: a parent with %ld MiB written forks a child that exits; p50 of %d\n",
           mebibytes, CYCLES);
    printf("  fork + exit + reap:                      %.3f ms\n", bare * 1e3);
    printf("  the same, the child writing %4ld pages:  %.3f ms (%.2f us a page)\n", pages,
           writing * 1e3, pages ? (writing - bare) / (double)pages * 1e6 : 0.0);
    printf("  back-to-back runs can cost no less than %.3f ms each on %ld cores\n",
           writing * 1e3 / (double)(cores > 0 ? cores : 1), cores);
    return 0;
}
