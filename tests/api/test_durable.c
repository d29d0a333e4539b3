/*
 * test_durable.c — the host's side of durable sessions against a hostile
 * worker: every malformed snapshot a worker could send is refused with an
 * error, nothing is committed, the host does not crash (ASan/UBSan), and the
 * store stays usable.
 *
 * Also the hot-page lists a worker reports ('M', hot_pages.h): only one
 * asked for, well formed and bounded is kept for the next spawns.
 *
 * No guest runs here: a thread plays the worker on one end of a socketpair
 * and answers the host's snapshot request ('K', durable.h) with bytes chosen
 * to break one rule each.  The store is real SQLite in a temporary
 * directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/sandbox/durable.h"
#include "../../src/sandbox/frame.h"
#include "../../src/sandbox/hot_pages.h"
#include "../../src/sandbox/sandbox.h"

#define BASE_PAGES (320u * DURABLE_PER_WASM_PAGE)
#define STACK_POINTER (8u << 20) /* the pages below it are the dead stack */

static char directory[] = "/tmp/capsule-test-durable-XXXXXX";
static cap_config *config;
static cap_sandbox sandbox;
static uint8_t zero_hash[DURABLE_HASH];

/* What the fake worker sends after reading the host's 'K'. */
typedef struct script {
    const char *header;     /* the 'K' header */
    int page_count;         /* 'k' frames to send */
    uint32_t first_index;   /* their indices: first_index, + step, ... */
    int step;
    size_t page_size;       /* bytes per 'k' frame (4 + DURABLE_PAGE when well formed) */
    size_t vfs_bytes;       /* bytes of 'v' frames to send */
    int close_early;        /* hang up after the header */
    int fd;
} script;

static void *play_worker(void *argument) {
    script *s = argument;
    char type;
    char *payload;
    size_t size;
    if (frame_read(s->fd, &type, &payload, &size, 64, NULL) != 0) return NULL;
    free(payload);
    frame_write(s->fd, 'K', s->header, strlen(s->header));
    if (s->close_early) {
        shutdown(s->fd, SHUT_RDWR);
        return NULL;
    }
    uint8_t *page = calloc(1, s->page_size + 1);
    for (int i = 0; i < s->page_count; i++) {
        uint32_t index = s->first_index + (uint32_t)(i * s->step);
        memcpy(page, &index, 4); /* little-endian, like the worker */
        page[4] = (uint8_t)i;
        if (frame_write(s->fd, 'k', page, s->page_size) != 0) break;
    }
    free(page);
    char chunk[4096] = {0};
    for (size_t sent = 0; sent < s->vfs_bytes;) {
        size_t n = s->vfs_bytes - sent < sizeof chunk ? s->vfs_bytes - sent : sizeof chunk;
        if (frame_write(s->fd, 'v', chunk, n) != 0) break;
        sent += n;
    }
    shutdown(s->fd, SHUT_WR);
    return NULL;
}

/* Begins a call of session "s", plays `s` as the worker against the
 * host's commit, and returns the commit's code; the call is then finished
 * plainly, which shows the store still takes writes. */
static int commit_against(script *s, char *error) {
    store *db = config->store;
    store_call call;
    int replayed;
    assert_int_equal(store_call_begin(db, "s", NULL, NULL, &call, &replayed, error), CAP_OK);
    int64_t seq = call.seq;
    store_call_clear(&call);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    s->fd = pair[1];
    pthread_t thread;
    pthread_create(&thread, NULL, play_worker, s);
    durable_pages known = {0};
    assert_int_equal(sandbox_durable_fresh(&sandbox, &known), CAP_OK);
    for (uint32_t page = 0; page < known.count; page++)
        memcpy(known.hashes + (size_t)page * DURABLE_HASH, zero_hash, DURABLE_HASH);
    int rc = sandbox_durable_commit(&sandbox, pair[0], &known, "s", seq, "success", "{}", error);
    shutdown(pair[0], SHUT_RDWR);
    pthread_join(thread, NULL);
    close(pair[0]);
    close(pair[1]);
    sandbox_durable_pages_free(&known);
    if (rc != CAP_OK) {
        char message[CAP_ERROR_SIZE];
        assert_int_equal(store_call_finish(db, "s", seq, "session-error", "{}", NULL, NULL,
                                           message), CAP_OK);
    }
    assert_int_equal(store_check(db, error), CAP_OK);
    return rc;
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(directory)) return -1;
    char url[256], error[CAP_ERROR_SIZE];
    snprintf(url, sizeof url, "sqlite:%s/sessions.db", directory);
    config = cap_config_new();
    if (!config || cap_config_set_store(config, url, error) != CAP_OK) {
        fprintf(stderr, "%s\n", error);
        return -1;
    }
    sandbox.config = config;
    sandbox.base_pages = BASE_PAGES;
    sandbox.base_stack_pointer = STACK_POINTER;
    sandbox.base_stored = 1;
    sandbox.base_hashes = calloc(BASE_PAGES, DURABLE_HASH);
    /* Every known page is the zero page, which the store holds. */
    static const uint8_t zero[DURABLE_PAGE];
    if (store_blob_put(config->store, zero, sizeof zero, zero_hash, error) != CAP_OK) return -1;
    for (uint32_t page = 0; page < BASE_PAGES; page++)
        memcpy(sandbox.base_hashes + (size_t)page * DURABLE_HASH, zero_hash, DURABLE_HASH);
    return store_session_create(config->store, "s", "", 0, error) == CAP_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    free(sandbox.base_hashes);
    cap_config_free(config);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", directory);
    return system(command) == 0 ? 0 : -1;
}

/* Headers: the known memory is 1280 pages of 16 KiB (320 WebAssembly
 * pages), 1284 after growing by one WebAssembly page; pages below 512
 * are the dead stack. */
#define HEADER(pages, stack_pointer, changed, files)                                           \
    "{\"pages\":" pages ",\"stack_pointer\":" stack_pointer ",\"changed\":" changed          \
    ",\"vfs_bytes\":" files "}"

static void a_well_formed_snapshot_is_committed(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    /* The 4 grown pages, and some file bytes. */
    script s = {HEADER("1284", "8388608", "4", "5000"), 4, 1280, 1, 4 + DURABLE_PAGE, 5000, 0,
                -1};
    assert_int_equal(commit_against(&s, error), CAP_OK);
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(config->store, "s", &snapshot, error), CAP_OK);
    assert_int_equal(snapshot.page_count, 1284 + 1); /* and the files' page */
    assert_non_null(strstr(snapshot.manifest, "\"vfs_bytes\":5000"));
    store_snapshot_clear(&snapshot);
}

#define KEY "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""

/* Each breaks one rule; none may be committed. */
static void malformed_snapshots_are_refused(void **state) {
    (void)state;
    const size_t page = 4 + DURABLE_PAGE;
    script cases[] = {
        {"not json", 0, 0, 1, page, 0, 0, -1},
        {HEADER("2000000", "8388608", "0", "0"), 0, 0, 1, page, 0, 0, -1}, /* past 4 GiB */
        {HEADER("400", "8388608", "0", "0"), 0, 0, 1, page, 0, 0, -1}, /* fewer than known */
        {HEADER("1281", "8388608", "1", "0"), 1, 1280, 1, page, 0, 0, -1}, /* not whole wasm pages */
        {HEADER("1280", "4096", "0", "0"), 0, 0, 1, page, 0, 0, -1}, /* a live frame */
        {HEADER("1280", "8388608", "9999", "0"), 0, 0, 1, page, 0, 0, -1}, /* changed > pages */
        {HEADER("1280", "8388608", "2", "0"), 2, 900, -10, page, 0, 0, -1}, /* going down */
        {HEADER("1280", "8388608", "2", "0"), 2, 900, 0, page, 0, 0, -1}, /* the same twice */
        {HEADER("1280", "8388608", "1", "0"), 1, 5, 1, page, 0, 0, -1}, /* the dead stack */
        {HEADER("1280", "8388608", "1", "0"), 1, 1500, 1, page, 0, 0, -1}, /* past the memory */
        {HEADER("1280", "8388608", "1", "0"), 1, 900, 1, page - 1, 0, 0, -1}, /* short page */
        {HEADER("1284", "8388608", "1", "0"), 1, 1280, 1, page, 0, 0, -1}, /* grown pages missing */
        {HEADER("1280", "8388608", "0", "1e12"), 0, 0, 1, page, 0, 0, -1}, /* files too big */
        {HEADER("1280", "8388608", "0", "100"), 0, 0, 1, page, 5000, 0, -1}, /* more than said */
        {HEADER("1280", "8388608", "3", "0"), 0, 0, 1, page, 0, 1, -1}, /* hangs up */
        {HEADER("1280.5", "8388608", "0", "0"), 0, 0, 1, page, 0, 0, -1}, /* not whole */
        /* package images named by anything but 64 hex digits, or too many */
        {"{\"pages\":1280,\"stack_pointer\":8388608,\"changed\":0,\"vfs_bytes\":0,"
         "\"environments\":[\"../../etc/passwd\"]}", 0, 0, 1, page, 0, 0, -1},
        {"{\"pages\":1280,\"stack_pointer\":8388608,\"changed\":0,\"vfs_bytes\":0,"
         "\"environments\":\"not a list\"}", 0, 0, 1, page, 0, 0, -1},
        {"{\"pages\":1280,\"stack_pointer\":8388608,\"changed\":0,\"vfs_bytes\":0,"
         "\"environments\":[" KEY "," KEY "," KEY "," KEY "," KEY "," KEY "," KEY "," KEY ","
         KEY "," KEY "," KEY "," KEY "," KEY "," KEY "," KEY "," KEY "," KEY "]}", 0, 0, 1, page,
         0, 0, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char error[CAP_ERROR_SIZE] = "";
        int rc = commit_against(&cases[i], error);
        if (rc == CAP_OK) fail_msg("case %zu was committed", i);
        if (!error[0]) fail_msg("case %zu: no message", i);
    }
    /* The snapshot of the well-formed case is still the latest. */
    char error[CAP_ERROR_SIZE];
    store_snapshot snapshot;
    assert_int_equal(store_snapshot_latest(config->store, "s", &snapshot, error), CAP_OK);
    assert_int_equal(snapshot.page_count, 1284 + 1);
    store_snapshot_clear(&snapshot);
}

/* The public calls on the MCP server's tasks (cap_task_*, docs/mcp.md
 * "Tasks"): a task's row through the library, and the mistakes a caller can
 * make (a taken id, a second outcome, an unknown task, no store). */
static void tasks_through_the_library(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE] = "";
    cap_task task;
    assert_int_equal(cap_task_create(config, "task-1", "token:a", 60000, error), CAP_OK);
    assert_int_equal(cap_task_create(config, "task-1", "token:b", 60000, error), CAP_EINVAL);
    assert_int_equal(cap_task_get(config, "task-1", "gone", "{}", &task, error), CAP_OK);
    assert_string_equal(task.status, "working");
    assert_string_equal(task.principal, "token:a");
    assert_null(task.payload_json);
    assert_true(task.expires_at_ms == task.created_at_ms + 60000);
    cap_task_clear(&task);
    assert_int_equal(cap_task_finish(config, "task-1", "completed", NULL, "{\"content\":[]}",
                                     error),
                     CAP_OK);
    assert_int_equal(cap_task_finish(config, "task-1", "cancelled", NULL, NULL, error),
                     CAP_EINVAL);
    assert_non_null(strstr(error, "not working"));
    assert_int_equal(cap_task_get(config, "task-1", "gone", "{}", &task, error), CAP_OK);
    assert_string_equal(task.status, "completed");
    assert_string_equal(task.payload_json, "{\"content\":[]}");
    cap_task_clear(&task);
    assert_int_equal(cap_task_get(config, "no-such-task", "gone", "{}", &task, error),
                     CAP_EINVAL);
    cap_config *plain = cap_config_new();
    assert_int_equal(cap_task_create(plain, "t", "p", 1000, error), CAP_EINVAL);
    assert_non_null(strstr(error, "store"));
    assert_int_equal(cap_task_get(plain, "t", "gone", "{}", &task, error), CAP_EINVAL);
    cap_config_free(plain);
}

/* A worker's 'M' frame is a hint for the next spawns: the parent keeps a
 * list only when it asked for one in this run, only a well-formed one
 * (whole uint32 indices, strictly increasing, at most HOT_PAGES_MAX), and
 * only the first; anything else changes nothing and the run goes on. */
static void hot_page_lists_from_a_hostile_worker(void **state) {
    (void)state;
    cap_result result = {0};
    cap_sandbox local = {.config = config};
    sandbox_exchange run = {.sandbox = &local, .phase = SANDBOX_PHASE_RUN, .fd = -1,
                            .result = &result};
    uint32_t good[] = {3, 4, 90}, other[] = {7}, repeated[] = {5, 5}, decreasing[] = {9, 2};
    /* Not asked for. */
    assert_int_equal(sandbox_dispatch_frame(&run, 'M', (const char *)good, sizeof good),
                     SANDBOX_CONTINUE);
    assert_int_equal(local.hot_pages.size, 0);
    /* Asked, but malformed: each refused. */
    run.report_pages = 1;
    const struct {
        const void *data;
        size_t size;
    } bad[] = {{repeated, sizeof repeated}, {decreasing, sizeof decreasing}, {good, 5}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sandbox_dispatch_frame(&run, 'M', bad[i].data, bad[i].size),
                         SANDBOX_CONTINUE);
        assert_int_equal(local.hot_pages.size, 0);
    }
    size_t too_many = (HOT_PAGES_MAX + 1) * sizeof(uint32_t);
    uint32_t *many = malloc(too_many);
    assert_non_null(many);
    for (uint32_t i = 0; i <= HOT_PAGES_MAX; i++) many[i] = i;
    assert_int_equal(sandbox_dispatch_frame(&run, 'M', (const char *)many, too_many),
                     SANDBOX_CONTINUE);
    assert_int_equal(local.hot_pages.size, 0);
    free(many);
    /* Asked and well formed: kept, exactly; a second list in the run is not. */
    assert_int_equal(sandbox_dispatch_frame(&run, 'M', (const char *)good, sizeof good),
                     SANDBOX_CONTINUE);
    assert_int_equal(local.hot_pages.size, sizeof good);
    assert_memory_equal(local.hot_pages.data, good, sizeof good);
    assert_int_equal(sandbox_dispatch_frame(&run, 'M', (const char *)other, sizeof other),
                     SANDBOX_CONTINUE);
    assert_int_equal(local.hot_pages.size, sizeof good);
    assert_memory_equal(local.hot_pages.data, good, sizeof good);
    assert_int_equal(result.status, 0); /* the run was not stopped */
    buffer_free(&local.hot_pages);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_well_formed_snapshot_is_committed),
        cmocka_unit_test(malformed_snapshots_are_refused),
        cmocka_unit_test(tasks_through_the_library),
        cmocka_unit_test(hot_page_lists_from_a_hostile_worker),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
