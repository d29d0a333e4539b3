/*
 * store.c — the store's benchmark (src/store/, docs/store.md):
 *
 *     make bench-store
 *     build/bench_store [--commits N] [--directory DIR] [--url URL]
 *
 * For two page sizes (4 KiB chunks and 64 KiB wasm pages) it measures, on a
 * real SQLite file (WAL, synchronous=FULL) in DIR (default /tmp), then on
 * the PostgreSQL database at URL (default: $CAPSULE_TEST_POSTGRES, which
 * `make bench-store` sets to a throwaway server; none: SQLite only):
 *
 * 1. a call committed with its snapshot (store_call_begin + store_call_finish)
 *    whose delta is 256 KiB of changed pages, in a session whose snapshot
 *    differs from the base image by 1 MiB (the unchanged 768 KiB are named
 *    by hash): p50, p99, mean, and new blobs/s within those commits;
 * 2. store_blob_put of distinct pages, one transaction each: blobs/s;
 * 3. restore: store_snapshot_latest + store_snapshot_read_pages (every page
 *    decompressed and re-hashed) of that 1 MiB snapshot, and of a 20 MiB one;
 * 4. the bare cost of a durable transaction (store_session_touch).
 *
 * Page contents imitate a heap: a quarter random bytes, the rest zeros
 * (compresses about 4:1).  Every restore is checked byte for byte.  On
 * PostgreSQL the run's sessions are deleted and collected at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/store/store.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *values, size_t count, double p) {
    qsort(values, count, sizeof *values, compare_doubles);
    size_t index = (size_t)(p * (double)(count - 1) + 0.5);
    return values[index];
}

static uint64_t state = 88172645463325252ull;

static void fill(uint8_t *page, size_t size) {
    memset(page, 0, size);
    for (size_t i = 0; i < size / 4; i += 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        memcpy(page + i * 4 % size, &state, 8);
    }
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int code_ = (call);                                                                        \
        if (code_ != CAP_OK) {                                                                     \
            fprintf(stderr, "bench_store: %s: %d %s\n", #call, code_, error);                      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct restore_check {
    uint8_t *memory; /* expected bytes, by page index */
    size_t page_size;
    size_t pages;
} restore_check;

static int check_page(void *context, uint32_t index, const void *bytes, size_t size) {
    restore_check *check = context;
    if (index >= check->pages || size != check->page_size) return 1;
    return memcmp(check->memory + (size_t)index * size, bytes, size) != 0;
}

static char error[CAP_ERROR_SIZE];

/* Restores the session's latest snapshot `runs` times; the best time in ms. */
static double time_restore(store *s, const char *session, restore_check *check, int runs) {
    double best = 1e9;
    for (int run = 0; run < runs; run++) {
        double start = now_ms();
        store_snapshot snapshot;
        CHECK(store_snapshot_latest(s, session, &snapshot, error));
        CHECK(store_snapshot_read_pages(s, snapshot.id, check_page, check, error));
        double elapsed = now_ms() - start;
        store_snapshot_clear(&snapshot);
        if (elapsed < best) best = elapsed;
    }
    return best;
}

static void bench_page_size(const char *directory, const char *database_url, size_t page_size,
                            int commits) {
    char path[512], url[1024];
    snprintf(path, sizeof path, "%s/bench-store-%d-%zu.db", directory, (int)getpid(), page_size);
    if (database_url)
        snprintf(url, sizeof url, "%s", database_url);
    else
        snprintf(url, sizeof url, "sqlite:%s", path);
    store *s;
    CHECK(store_open(url, &s, error));
    /* Empty at the start, as the SQLite file is (the usage row is global). */
    store_usage before;
    CHECK(store_get_usage(s, &before, error));
    if (before.sessions) {
        fprintf(stderr, "bench_store: the store at %s is not empty\n", url);
        exit(1);
    }

    const size_t session_bytes = 1 << 20, delta_bytes = 256 << 10;
    size_t pages = session_bytes / page_size, delta_pages = delta_bytes / page_size;
    uint8_t *memory = malloc(session_bytes);
    uint8_t(*hashes)[STORE_HASH_SIZE] = malloc(pages * STORE_HASH_SIZE);
    store_page *list = malloc(pages * sizeof *list);
    for (size_t i = 0; i < pages; i++) fill(memory + i * page_size, page_size);
    store_snapshot_data data = {.build_id = "bench",
                                .manifest = "{\"format\":1}",
                                .page_size = (uint32_t)page_size,
                                .pages = list,
                                .page_count = pages};
    CHECK(store_session_create(s, "bench", "", 0, error));
    /* The first snapshot stores every page. */
    for (size_t i = 0; i < pages; i++)
        list[i] = (store_page){.index = (uint32_t)i, .data = memory + i * page_size};
    CHECK(store_snapshot_write(s, "bench", &data, NULL, error));
    for (size_t i = 0; i < pages; i++) store_hash(memory + i * page_size, page_size, hashes[i]);

    double *latency = malloc((size_t)commits * sizeof *latency), total = 0;
    for (int c = 0; c < commits; c++) {
        /* The call changed delta_pages consecutive pages somewhere. */
        size_t first = (size_t)c * delta_pages % pages;
        for (size_t i = 0; i < pages; i++) {
            int changed = i >= first && i < first + delta_pages;
            if (changed) fill(memory + i * page_size, page_size);
            list[i] = changed ? (store_page){.index = (uint32_t)i, .data = memory + i * page_size}
                              : (store_page){.index = (uint32_t)i, .hash = hashes[i]};
        }
        double start = now_ms();
        store_call call;
        int replayed;
        CHECK(store_call_begin(s, "bench", NULL, NULL, &call, &replayed, error));
        CHECK(store_call_finish(s, "bench", call.seq, "success", "{\"stdout\":\"\"}", &data, NULL,
                                error));
        latency[c] = now_ms() - start;
        total += latency[c];
        for (size_t i = first; i < first + delta_pages; i++)
            store_hash(memory + i * page_size, page_size, hashes[i]);
    }
    double mean = total / commits;
    double p50 = percentile(latency, (size_t)commits, 0.5),
           p99 = percentile(latency, (size_t)commits, 0.99);

    restore_check check = {.memory = memory, .page_size = page_size, .pages = pages};
    double restore_small = time_restore(s, "bench", &check, 5);

    /* Lone puts: one durable transaction per blob. */
    int puts = 200;
    uint8_t *blob = malloc(page_size), hash[STORE_HASH_SIZE];
    double start = now_ms();
    for (int i = 0; i < puts; i++) {
        fill(blob, page_size);
        CHECK(store_blob_put(s, blob, page_size, hash, error));
    }
    double put_rate = puts / ((now_ms() - start) / 1e3);

    /* A 20 MiB heap, all pages new: commit and restore. */
    const size_t big_bytes = 20 << 20;
    size_t big_pages = big_bytes / page_size;
    uint8_t *big = malloc(big_bytes);
    store_page *big_list = malloc(big_pages * sizeof *big_list);
    for (size_t i = 0; i < big_pages; i++) {
        fill(big + i * page_size, page_size);
        big_list[i] = (store_page){.index = (uint32_t)i, .data = big + i * page_size};
    }
    store_snapshot_data big_data = {.build_id = "bench",
                                    .manifest = "{}",
                                    .page_size = (uint32_t)page_size,
                                    .pages = big_list,
                                    .page_count = big_pages};
    CHECK(store_session_create(s, "big", "", 0, error));
    start = now_ms();
    CHECK(store_snapshot_write(s, "big", &big_data, NULL, error));
    double big_commit = now_ms() - start;
    restore_check big_check = {.memory = big, .page_size = page_size, .pages = big_pages};
    double big_restore = time_restore(s, "big", &big_check, 3);

    double touch_start = now_ms();
    for (int i = 0; i < 50; i++) CHECK(store_session_touch(s, "bench", error));
    double touch = (now_ms() - touch_start) / 50;

    store_usage usage;
    CHECK(store_get_usage(s, &usage, error));
    printf("| %zu KiB | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %.2f |\n",
           page_size >> 10, p50, p99, mean, (double)delta_pages / (mean / 1e3), put_rate,
           restore_small, big_commit, big_restore, touch,
           (double)usage.raw_bytes / (double)usage.blob_bytes);
    fflush(stdout);

    CHECK(store_session_delete(s, "bench", error));
    CHECK(store_session_delete(s, "big", error));
    CHECK(store_gc(s, NULL, NULL, error));
    store_close(s);
    if (database_url) {
        free(memory), free(hashes), free(list), free(latency), free(blob), free(big),
            free(big_list);
        return;
    }
    const char *suffixes[] = {"", "-wal", "-shm", "-lock"};
    char file[600];
    for (int i = 0; i < 4; i++) {
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        unlink(file);
    }
    free(memory), free(hashes), free(list), free(latency), free(blob), free(big), free(big_list);
}

static void print_header(void) {
    printf("| page | commit p50 ms | p99 ms | mean ms | new blobs/s in commits | lone puts/s "
           "| restore 1 MiB ms | commit 20 MiB ms | restore 20 MiB ms | durable txn ms "
           "| compression |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
}

int main(int argc, char **argv) {
    int commits = 200;
    const char *directory = "/tmp";
    const char *url = getenv("CAPSULE_TEST_POSTGRES");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--commits") == 0 && i + 1 < argc)
            commits = atoi(argv[++i]);
        else if (strcmp(argv[i], "--directory") == 0 && i + 1 < argc)
            directory = argv[++i];
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--commits N] [--directory DIR] [--url postgres://...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (commits < 1) commits = 1;
    printf("store benchmark: %d commits of a 256 KiB delta in a 1 MiB session\n\n", commits);
    printf("SQLite (WAL, synchronous=FULL) in %s:\n\n", directory);
    print_header();
    bench_page_size(directory, NULL, 4096, commits);
    bench_page_size(directory, NULL, 65536, commits);
    if (url && url[0]) {
        /* The URL may hold a password: say where, not how. */
        printf("\nPostgreSQL (synchronous_commit=on), %s:\n\n",
               strstr(url, "host=") ? strstr(url, "host=") : "the given URL");
        print_header();
        bench_page_size(directory, url, 4096, commits);
        bench_page_size(directory, url, 65536, commits);
    }
    return 0;
}
