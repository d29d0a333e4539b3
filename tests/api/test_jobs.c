/*
 * test_jobs.c — durable jobs through the C API and the parent's answers to
 * a job's requests from a hostile worker.
 *
 * The API part: cap_job_* against a real SQLite store, each capability with
 * a "works" and a "still denied" (another principal, an ended job, no
 * store).  The worker part: no guest runs; the test writes the requests a
 * worker could send on its call channel ('C' frames) straight into the
 * dispatch table, one end of a socketpair standing for the worker, and
 * reads the answers: malformed requests are refused, a step's first result
 * wins, a sleep that is not due ends the attempt, a cancelled job says so,
 * an attempt whose job was taken from it ends without writing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/sandbox/frame.h"
#include "../../src/sandbox/sandbox.h"

static char directory[] = "/tmp/capsule-test-jobs-XXXXXX";
static cap_config *config;

static int setup(void **state) {
    (void)state;
    char url[128], error[CAP_ERROR_SIZE];
    if (!mkdtemp(directory)) return -1;
    snprintf(url, sizeof url, "sqlite:%s/store.db", directory);
    config = cap_config_new();
    return config && cap_config_set_store(config, url, error) == CAP_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    cap_config_free(config);
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", directory);
    return system(command) == 0 ? 0 : -1;
}

/* A string field of a JSON object, copied into `out`. */
static void field(const char *json, const char *name, char *out, size_t size) {
    cJSON *object = cJSON_Parse(json);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    snprintf(out, size, "%s", cJSON_IsString(item) ? item->valuestring : "");
    cJSON_Delete(object);
}

static void api_works_and_stays_per_principal(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE] = "", id[64], again_id[64], status[32];
    cap_job_options alice = {.principal = "alice", .idempotency_key = "k", .max_attempts = 2};
    char *json = NULL;
    assert_int_equal(cap_job_submit(config, "1 + 1", &alice, &json, error), CAP_OK);
    field(json, "job_id", id, sizeof id);
    field(json, "status", status, sizeof status);
    assert_int_equal(strlen(id), 32);
    assert_string_equal(status, "queued");
    free(json);
    /* The same key: the same job; with other code: refused. */
    assert_int_equal(cap_job_submit(config, "1 + 1", &alice, &json, error), CAP_OK);
    field(json, "job_id", again_id, sizeof again_id);
    assert_string_equal(again_id, id);
    free(json);
    assert_int_equal(cap_job_submit(config, "2 + 2", &alice, &json, error), CAP_EINVAL);
    assert_null(json);
    assert_non_null(strstr(error, "other code"));
    /* Another principal sees nothing of it. */
    assert_null(cap_job_get(config, id, "bob", error));
    assert_non_null(strstr(error, "no job"));
    assert_int_equal(cap_job_cancel(config, id, "bob", NULL, error), CAP_EINVAL);
    json = cap_job_list(config, "bob", NULL, 0, error);
    assert_string_equal(json, "[]");
    free(json);
    int woken = -1;
    assert_int_equal(cap_job_emit(config, "bob", "go", "{\"a\":1}", &woken, error), CAP_OK);
    assert_int_equal(woken, 0);
    assert_int_equal(cap_job_emit(config, "bob", "go", "{not json", &woken, error), CAP_EINVAL);
    /* Its owner reads, lists and cancels it; an ended job cannot be cancelled. */
    json = cap_job_get(config, id, "alice", error);
    assert_non_null(json);
    free(json);
    json = cap_job_list(config, "alice", "queued", 10, error);
    assert_non_null(strstr(json, id));
    free(json);
    assert_int_equal(cap_job_cancel(config, id, "alice", &json, error), CAP_OK);
    field(json, "status", status, sizeof status);
    assert_string_equal(status, "cancelled");
    free(json);
    assert_int_equal(cap_job_cancel(config, id, "alice", NULL, error), CAP_EINVAL);
    assert_non_null(strstr(error, "ended"));
    /* Bad options and no store. */
    cap_job_options bad = {.max_attempts = 5000};
    assert_int_equal(cap_job_submit(config, "1", &bad, NULL, error), CAP_EINVAL);
    cap_config *bare = cap_config_new();
    assert_int_equal(cap_job_submit(bare, "1", NULL, NULL, error), CAP_EINVAL);
    assert_null(cap_job_get(bare, id, NULL, error));
    assert_int_equal(cap_jobs_start(bare, 1, NULL, 0, error), CAP_EINVAL);
    cap_config_free(bare);
    /* The retention: positive, at most 10 years. */
    assert_int_equal(cap_config_set_job_retention(config, 0, error), CAP_EINVAL);
    assert_int_equal(cap_config_set_job_retention(config, -5, error), CAP_EINVAL);
    assert_int_equal(cap_config_set_job_retention(config, 1e12, error), CAP_EINVAL);
    assert_int_equal(cap_config_set_job_retention(NULL, 60, error), CAP_EINVAL);
    assert_int_equal(cap_config_set_job_retention(config, 0.5, error), CAP_OK);
    assert_int_equal(config->job_retention_ms, 500);
}

/* --- a hostile worker's requests ---------------------------------------------------- */

typedef struct worker_end {
    cap_sandbox sandbox;
    cap_result result;
    sandbox_exchange exchange;
    int worker_fd;
    job_attempt attempt;
} worker_end;

static void worker_open(worker_end *w) {
    memset(w, 0, sizeof *w);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    w->sandbox.config = config;
    w->exchange = (sandbox_exchange){.sandbox = &w->sandbox, .phase = SANDBOX_PHASE_RUN,
                                     .fd = fds[0], .result = &w->result};
    w->worker_fd = fds[1];
}

static void worker_close(worker_end *w) {
    close(w->exchange.fd);
    close(w->worker_fd);
    free(w->result.error);
    store_job_clear(&w->attempt.job);
}

/* Claims the next due job as this worker's attempt. */
static void worker_claim(worker_end *w) {
    char error[CAP_ERROR_SIZE];
    int claimed = 0;
    store_job_clear(&w->attempt.job);
    memset(&w->attempt, 0, sizeof w->attempt);
    assert_int_equal(store_job_claim(config->store, NULL, &w->attempt.job, &claimed, error), CAP_OK);
    assert_int_equal(claimed, 1);
    w->sandbox.job = &w->attempt;
}

/* Sends `request` as the worker would; the outcome, and the answer (header
 * line and body, malloc'd) in *answer when one came. */
static sandbox_outcome ask(worker_end *w, const char *request, char **answer) {
    sandbox_outcome outcome = sandbox_dispatch_frame(&w->exchange, 'C', request, strlen(request));
    *answer = NULL;
    struct timeval none = {0, 200000};
    setsockopt(w->worker_fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    char type;
    size_t size;
    if (frame_read(w->worker_fd, &type, answer, &size, 1 << 20, NULL) != 0) *answer = NULL;
    return outcome;
}

static void expect(worker_end *w, const char *request, const char *wanted) {
    char *answer;
    assert_int_equal(ask(w, request, &answer), SANDBOX_CONTINUE);
    if (!answer || !strstr(answer, wanted))
        fail_msg("%s: answer %s, wanted %s", request, answer ? answer : "(none)", wanted);
    free(answer);
}

static void hostile_requests_are_refused_and_steps_keep_their_first_result(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE];
    worker_end w;
    worker_open(&w);
    /* Outside a job. */
    expect(&w, "{\"op\":\"step\",\"name\":\"a\"}", "not-in-job");
    cap_job_options options = {.principal = "p"};
    assert_int_equal(cap_job_submit(config, "code", &options, NULL, error), CAP_OK);
    worker_claim(&w);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    char request[512];
    snprintf(request, sizeof request, "{\"op\":\"step\",\"name\":\"%s\"}", long_name);
    expect(&w, request, "invalid-arguments");
    expect(&w, "{\"op\":\"step\"}", "invalid-arguments");
    expect(&w, "{\"op\":\"step\",\"name\":7}", "invalid-arguments");
    expect(&w, "{\"op\":\"step_done\",\"name\":\"a\"}", "invalid-arguments");
    expect(&w, "{\"op\":\"sleep\",\"name\":\"$s\",\"until\":\"soon\"}", "invalid-arguments");
    expect(&w, "{\"op\":\"sleep\",\"name\":\"$s\",\"until\":1e300}", "invalid-arguments");
    expect(&w, "{\"op\":\"sleep\",\"name\":\"$s\",\"until\":-1}", "invalid-arguments");
    expect(&w, "{\"op\":\"await_event\",\"name\":\"e\",\"key\":\"$e\",\"timeout\":-1}",
           "invalid-arguments");
    expect(&w, "{\"op\":\"await_event\",\"key\":\"$e\"}", "invalid-arguments");
    /* The steps that hold /network responses are the parent's: no guest
     * request may name one (forge, read or pre-empt it). */
    expect(&w, "{\"op\":\"step\",\"name\":\"/network/data.txt\"}", "invalid-arguments");
    expect(&w, "{\"op\":\"step_done\",\"name\":\"/network/data.txt\",\"value\":"
               "{\"base64\":\"Zm9yZ2Vk\"}}", "invalid-arguments");
    expect(&w, "{\"op\":\"sleep\",\"name\":\"/network/x\",\"until\":1}", "invalid-arguments");
    expect(&w, "{\"op\":\"await_event\",\"name\":\"e\",\"key\":\"/network/x\"}",
           "invalid-arguments");
    char *stored = NULL;
    int found = -1;
    assert_int_equal(store_job_step_get(config->store, w.attempt.job.id, "/network/data.txt",
                                        &stored, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    /* A step: missing, stored, cached; a second result does not replace it. */
    expect(&w, "{\"op\":\"step\",\"name\":\"a\"}", "{\"cached\":false}");
    expect(&w, "{\"op\":\"step_done\",\"name\":\"a\",\"value\":[1,\"x\"]}", "{\"value\":[1,\"x\"]}");
    expect(&w, "{\"op\":\"step\",\"name\":\"a\"}", "{\"cached\":true,\"value\":[1,\"x\"]}");
    expect(&w, "{\"op\":\"step_done\",\"name\":\"a\",\"value\":\"other\"}", "{\"value\":[1,\"x\"]}");
    /* A sleep already due goes on; one in the future ends the attempt. */
    expect(&w, "{\"op\":\"sleep\",\"name\":\"$past\",\"until\":1}", "{}");
    char *answer;
    assert_int_equal(ask(&w, "{\"op\":\"sleep\",\"name\":\"$future\",\"until\":9999999999}",
                         &answer),
                     SANDBOX_STOPPED);
    assert_null(answer);
    assert_int_equal(w.attempt.suspend, STORE_JOB_SLEEPING);
    assert_true(w.attempt.until == 9999999999000LL);
    /* An await with no event and no timeout ends the attempt, waiting. */
    w.attempt.suspend = 0;
    assert_int_equal(ask(&w, "{\"op\":\"await_event\",\"name\":\"go\",\"key\":\"$event:go\","
                             "\"timeout\":null}", &answer),
                     SANDBOX_STOPPED);
    assert_int_equal(w.attempt.suspend, STORE_JOB_WAITING);
    assert_string_equal(w.attempt.event, "go");
    /* Another principal's event is not this job's. */
    assert_int_equal(cap_job_emit(config, "q", "go", "1", NULL, error), CAP_OK);
    assert_int_equal(ask(&w, "{\"op\":\"await_event\",\"name\":\"go\",\"key\":\"$event:go\","
                             "\"timeout\":null}", &answer),
                     SANDBOX_STOPPED);
    assert_int_equal(cap_job_emit(config, "p", "go", "{\"n\":2}", NULL, error), CAP_OK);
    expect(&w, "{\"op\":\"await_event\",\"name\":\"go\",\"key\":\"$event:go\",\"timeout\":null}",
           "{\"payload\":{\"n\":2}}");
    worker_close(&w);
}

static void cancelled_and_lost_attempts(void **state) {
    (void)state;
    char error[CAP_ERROR_SIZE], status[STORE_STATUS_SIZE];
    worker_end w;
    worker_open(&w);
    cap_job_options options = {.principal = "p"};
    char *json = NULL, id[64];
    assert_int_equal(cap_job_submit(config, "code", &options, &json, error), CAP_OK);
    field(json, "job_id", id, sizeof id);
    free(json);
    worker_claim(&w);
    /* Cancelled while running: the next request says so, and keeps saying. */
    assert_int_equal(cap_job_cancel(config, id, "p", NULL, error), CAP_OK);
    expect(&w, "{\"op\":\"step\",\"name\":\"a\"}", "\"cancelled\"");
    assert_int_equal(w.attempt.cancelled, 1);
    expect(&w, "{\"op\":\"step_done\",\"name\":\"a\",\"value\":1}", "\"cancelled\"");
    int found = -1;
    char *value = NULL;
    assert_int_equal(store_job_step_get(config->store, id, "a", &value, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(store_job_finish(config->store, id, w.attempt.job.attempts,
                                      STORE_JOB_CANCELLED, NULL, NULL, 0, 0, NULL, status, error),
                     CAP_OK);
    /* An attempt whose job ended elsewhere (swept, claimed again) stops
     * without writing anything. */
    assert_int_equal(cap_job_submit(config, "code 2", &options, &json, error), CAP_OK);
    field(json, "job_id", id, sizeof id);
    free(json);
    worker_claim(&w);
    assert_int_equal(store_job_finish(config->store, id, w.attempt.job.attempts,
                                      STORE_JOB_FAILED, NULL, "taken", 0, 0, NULL, status, error),
                     CAP_OK);
    char *answer;
    assert_int_equal(ask(&w, "{\"op\":\"step_done\",\"name\":\"b\",\"value\":1}", &answer),
                     SANDBOX_STOPPED);
    assert_null(answer);
    assert_int_equal(w.attempt.lost, 1);
    assert_int_equal(store_job_step_get(config->store, id, "b", &value, &found, error), CAP_OK);
    assert_int_equal(found, 0);
    worker_close(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_works_and_stays_per_principal),
        cmocka_unit_test(hostile_requests_are_refused_and_steps_keep_their_first_result),
        cmocka_unit_test(cancelled_and_lost_attempts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
