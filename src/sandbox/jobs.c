/*
 * jobs.c — durable jobs, host side: the runner threads that claim due jobs
 * and run each attempt in a sandbox, the parent's answers to a job's
 * capsule.step / sleep / await_event, and the C API (cap_job_*).
 *
 * The replay model is Absurd's: every attempt runs the job's code from the
 * top in a fresh worker; a step that completed in an earlier attempt
 * returns its cached result (job_steps) without running again.  A sleep or
 * an await that cannot be satisfied yet ends the attempt: the parent kills
 * the worker and parks the job (sleeping, waiting) in the store; whichever
 * runner of whichever process claims it when it is due runs it again from
 * the top.  The worker never touches the store: it asks on its call
 * channel (functions.c routes these ops here) and the parent answers.
 *
 * Requests (worker → host 'C', JSON), answers as functions.c's:
 *   {"op":"step","name":N}              → {"cached":true,"value":V} or {"cached":false}
 *   {"op":"step_done","name":N,"value":V} → {"value":V'} (V' the stored one:
 *                                          the first commit of a step wins)
 *   {"op":"sleep","name":N,"until":T}   → {} once T (seconds since the epoch,
 *                                          cached under N at the first call)
 *                                          has passed; else the attempt ends
 *   {"op":"await_event","name":E,"key":K,"timeout":S|null}
 *                                       → {"payload":P}, failure "timeout", or
 *                                          the attempt ends (waiting)
 * Every request first checks that the attempt still holds the job (fenced
 * by node and attempt number): a cancelled job answers failure "cancelled"
 * (capsule.Cancelled in the guest) and the attempt ends `cancelled`; a
 * lost one ends the attempt without recording anything.  Outside a job:
 * failure "not-in-job" (RuntimeError).
 *
 * Runners write through a group commit (group_commit): an attempt's end
 * and the runner's next claim join whatever other runners of this process
 * asked meanwhile, one transaction (one fsync) for all of them.
 *
 * Locks: the store handle is config->store_lock's, taken around each use;
 * the runners' own state (and the group commit's queue) is runners->lock's;
 * store_lock is never taken while runners->lock is held.
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RUNNERS 16
#define IDLE_POLL_MS 500           /* an idle runner looks for due jobs this often (default) */
#define LISTEN_WAIT_MS 250         /* the listener's wait between looks at `stop` */
#define MAX_RETRY_DELAY_MS 3600000 /* backoff is capped at an hour */
#define END_RETRY_MS 60000         /* an attempt's end is retried this long on a lost store */
#define DEFAULT_MAX_ATTEMPTS 3
#define DEFAULT_TIMEOUT_SECONDS 60.0
#define DEFAULT_BACKOFF_SECONDS 1.0
#define DEFAULT_RETENTION_MS (7 * 86400 * 1000LL)
#define PRUNE_INTERVAL_MS 1000 /* a process prunes about this often... */
#define PRUNE_BATCH 200        /* ...this many jobs and events at a time (sooner again if full) */

/* Upper bounds (ms) of the claim-latency histogram's buckets. */
static const int64_t CLAIM_BUCKETS_MS[] = {1,   2,    5,    10,   25,    50,    100,
                                           250, 500, 1000, 2500, 5000, 10000, 60000};
#define CLAIM_BUCKET_COUNT (sizeof CLAIM_BUCKETS_MS / sizeof *CLAIM_BUCKETS_MS)

/* A runner's request to the group commit (group_commit): its item, and,
 * once a leader committed it, the outcome. */
typedef struct commit_request {
    store_job_batch_item item;
    int done;
    int rc;
    struct commit_request *next;
} commit_request;

typedef struct job_runners {
    cap_config *config;
    cap_limits limits;
    int count;
    cap_sandbox *sandboxes[MAX_RUNNERS];
    pthread_t threads[MAX_RUNNERS];
    int started;
    int64_t poll_ms;
    store_listener *listener; /* PostgreSQL: other nodes' NOTIFY; NULL otherwise */
    pthread_t listener_thread;
    int listening;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    int wakes; /* wake-ups not yet consumed: a submit while all were busy */
    int64_t next_prune_ms; /* when a runner prunes next (now_ms) */
    /* The group commit: requests waiting for the next transaction, and
     * whether a runner (the leader) is committing one now. */
    commit_request *pending;
    commit_request **pending_tail;
    int committing;
    pthread_cond_t committed;
    /* Claim latency, for /metrics: how long each job this process claimed
     * had been due (claim time - run_after), as a Prometheus histogram. */
    uint64_t latency_buckets[CLAIM_BUCKET_COUNT]; /* claims <= CLAIM_BUCKETS_MS[i] */
    uint64_t latency_count;
    int64_t latency_sum_ms;
} job_runners;

/* --- the guest's requests ------------------------------------------------------ */

static int64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Ends the attempt here: the worker is killed by the caller (run.c) on
 * SANDBOX_STOPPED; the result says why, though the runner reads the
 * attempt rather than it. */
static sandbox_outcome end_attempt(sandbox_exchange *exchange, const char *why) {
    cap_result *result = exchange->result;
    result->status = CAP_STATUS_CANCELLED;
    result->exit_code = 0;
    free(result->error);
    result->error = strdup(why);
    return SANDBOX_STOPPED;
}

/* Whether the attempt may go on: CONTINUE; or it lost the job (STOPPED), or
 * it is cancelled (the guest is told; CONTINUE: its code ends as it will). */
static sandbox_outcome check_attempt(sandbox_exchange *exchange, int *answered) {
    cap_config *config = exchange->sandbox->config;
    job_attempt *attempt = exchange->sandbox->job;
    char error[CAP_ERROR_SIZE] = "";
    int cancel = 0;
    *answered = 0;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_check(config->store, attempt->job.id, attempt->job.attempts, &cancel, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ECONFLICT) {
        attempt->lost = 1;
        return end_attempt(exchange, "the job's attempt lost its lease");
    }
    if (rc != CAP_OK) {
        sandbox_call_failure(exchange->fd, "error", error);
        *answered = 1;
    } else if (cancel) {
        attempt->cancelled = 1;
        sandbox_call_failure(exchange->fd, "cancelled", "the job was cancelled");
        *answered = 1;
    }
    return SANDBOX_CONTINUE;
}

static const char *string_field(const cJSON *request, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(request, name);
    return cJSON_IsString(item) && item->valuestring[0] &&
                   strlen(item->valuestring) < STORE_ID_SIZE
               ? item->valuestring
               : NULL;
}

/* Steps named so are the parent's record of the job's /network fetches
 * (sandbox_job_fetch): a guest's step, sleep or await may not use such a
 * name, so it can neither forge a response nor claim the name first. */
#define NETWORK_STEP_PREFIX "/network/"
#define RESERVED_NOTE " (names starting with '" NETWORK_STEP_PREFIX "' are capsule's own)"

/* A step name or key from the guest: string_field's, minus capsule's own. */
static const char *guest_step_name(const cJSON *request, const char *field) {
    const char *name = string_field(request, field);
    return name && strncmp(name, NETWORK_STEP_PREFIX, strlen(NETWORK_STEP_PREFIX)) != 0 ? name
                                                                                        : NULL;
}

/* The cached result of step `name`: 1 and *value, 0 when none, -1 on a
 * store failure (answered). */
static int cached_step(sandbox_exchange *exchange, const char *name, char **value) {
    cap_config *config = exchange->sandbox->config;
    char error[CAP_ERROR_SIZE] = "";
    int found = 0;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_step_get(config->store, exchange->sandbox->job->job.id, name, value, &found,
                                error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) {
        sandbox_call_failure(exchange->fd, "error", error);
        return -1;
    }
    return found;
}

/* Stores step `name` = `json` for this attempt; the stored value (the
 * first commit's) in *stored.  CONTINUE after answering a failure, STOPPED
 * when the attempt lost the job, or CONTINUE with *stored set. */
static sandbox_outcome put_step(sandbox_exchange *exchange, const char *name, const char *json,
                                char **stored) {
    cap_config *config = exchange->sandbox->config;
    job_attempt *attempt = exchange->sandbox->job;
    char error[CAP_ERROR_SIZE] = "";
    *stored = NULL;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_step_put(config->store, attempt->job.id, attempt->job.attempts, name, json,
                                stored, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ECONFLICT) {
        attempt->lost = 1;
        return end_attempt(exchange, "the job's attempt lost its lease");
    }
    if (rc != CAP_OK) sandbox_call_failure(exchange->fd, "error", error);
    return SANDBOX_CONTINUE;
}

/* {"key": <json text>} as an answer body. */
static void answer_with(int fd, const char *prefix, const char *json, const char *suffix) {
    size_t size = strlen(prefix) + strlen(json) + strlen(suffix) + 1;
    char *body = malloc(size);
    if (!body) {
        sandbox_call_failure(fd, "error", "out of memory");
        return;
    }
    snprintf(body, size, "%s%s%s", prefix, json, suffix);
    sandbox_call_answer(fd, "{\"ok\":true}", body, strlen(body));
    free(body);
}

static sandbox_outcome answer_step(sandbox_exchange *exchange, const cJSON *request) {
    const char *name = guest_step_name(request, "name");
    if (!name) {
        sandbox_call_failure(exchange->fd, "invalid-arguments",
                             "a step needs a name of 1 to 128 bytes" RESERVED_NOTE);
        return SANDBOX_CONTINUE;
    }
    char *value = NULL;
    int found = cached_step(exchange, name, &value);
    if (found > 0) answer_with(exchange->fd, "{\"cached\":true,\"value\":", value, "}");
    else if (found == 0) sandbox_call_answer(exchange->fd, "{\"ok\":true}", "{\"cached\":false}", 16);
    free(value);
    return SANDBOX_CONTINUE;
}

static sandbox_outcome answer_step_done(sandbox_exchange *exchange, const cJSON *request) {
    const char *name = guest_step_name(request, "name");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(request, "value");
    char *json = value ? cJSON_PrintUnformatted(value) : NULL;
    if (!name || !json) {
        free(json);
        sandbox_call_failure(exchange->fd, "invalid-arguments",
                             "a step's result needs a name and a JSON value" RESERVED_NOTE);
        return SANDBOX_CONTINUE;
    }
    char *stored = NULL;
    sandbox_outcome outcome = put_step(exchange, name, json, &stored);
    if (stored) answer_with(exchange->fd, "{\"value\":", stored, "}");
    free(stored);
    free(json);
    return outcome;
}

static sandbox_outcome answer_sleep(sandbox_exchange *exchange, const cJSON *request) {
    job_attempt *attempt = exchange->sandbox->job;
    const char *name = guest_step_name(request, "name");
    const cJSON *until = cJSON_GetObjectItemCaseSensitive(request, "until");
    if (!name || !cJSON_IsNumber(until) || !isfinite(until->valuedouble) ||
        until->valuedouble < 0 || until->valuedouble > 1e11) {
        sandbox_call_failure(exchange->fd, "invalid-arguments",
                             "sleep needs a name and a time (seconds since the epoch)" RESERVED_NOTE);
        return SANDBOX_CONTINUE;
    }
    /* The wake time is the first attempt's: a rerun's own clock says later. */
    char *cached = NULL;
    int found = cached_step(exchange, name, &cached);
    if (found < 0) return SANDBOX_CONTINUE;
    int64_t wake_ms = (int64_t)(until->valuedouble * 1000);
    if (found) {
        wake_ms = (int64_t)strtoll(cached, NULL, 10);
        free(cached);
    } else {
        char text[32], *stored = NULL;
        snprintf(text, sizeof text, "%lld", (long long)wake_ms);
        sandbox_outcome outcome = put_step(exchange, name, text, &stored);
        if (!stored) return outcome;
        wake_ms = (int64_t)strtoll(stored, NULL, 10);
        free(stored);
    }
    if (now_ms() >= wake_ms) {
        sandbox_call_answer(exchange->fd, "{\"ok\":true}", "{}", 2);
        return SANDBOX_CONTINUE;
    }
    attempt->suspend = STORE_JOB_SLEEPING;
    attempt->until = wake_ms;
    return end_attempt(exchange, "the job sleeps");
}

static sandbox_outcome answer_await(sandbox_exchange *exchange, const cJSON *request) {
    cap_config *config = exchange->sandbox->config;
    job_attempt *attempt = exchange->sandbox->job;
    const char *event = string_field(request, "name");
    const char *key = guest_step_name(request, "key");
    const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(request, "timeout");
    if (!event || !key || strlen(key) > 118 ||
        (timeout && !cJSON_IsNull(timeout) &&
         !(cJSON_IsNumber(timeout) && timeout->valuedouble >= 0 && timeout->valuedouble < 1e9))) {
        sandbox_call_failure(exchange->fd, "invalid-arguments",
                             "await_event needs an event name and a timeout of seconds or None"
                             RESERVED_NOTE);
        return SANDBOX_CONTINUE;
    }
    /* Settled in an earlier attempt: the same answer. */
    char *cached = NULL;
    int found = cached_step(exchange, key, &cached);
    if (found < 0) return SANDBOX_CONTINUE;
    if (found) {
        int timed_out = strcmp(cached, "{\"timeout\":true}") == 0;
        if (timed_out)
            sandbox_call_failure(exchange->fd, "timeout", "no such event came in time");
        else
            sandbox_call_answer(exchange->fd, "{\"ok\":true}", cached, strlen(cached));
        free(cached);
        return SANDBOX_CONTINUE;
    }
    /* An event emitted since the job was created. */
    char error[CAP_ERROR_SIZE] = "", *payload = NULL;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_event_find(config->store, attempt->job.principal, event,
                                  attempt->job.created_at, &payload, &found, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) {
        sandbox_call_failure(exchange->fd, "error", error);
        return SANDBOX_CONTINUE;
    }
    char *stored = NULL;
    if (found) {
        size_t size = strlen(payload) + 16;
        char *settled = malloc(size);
        if (settled) snprintf(settled, size, "{\"payload\":%s}", payload);
        free(payload);
        if (!settled) {
            sandbox_call_failure(exchange->fd, "error", "out of memory");
            return SANDBOX_CONTINUE;
        }
        sandbox_outcome outcome = put_step(exchange, key, settled, &stored);
        free(settled);
        if (stored) sandbox_call_answer(exchange->fd, "{\"ok\":true}", stored, strlen(stored));
        free(stored);
        return outcome;
    }
    /* None yet: the deadline, fixed at the first attempt that waited. */
    char deadline_key[STORE_ID_SIZE];
    snprintf(deadline_key, sizeof deadline_key, "%s/deadline", key);
    int64_t deadline = 0;
    found = cached_step(exchange, deadline_key, &cached);
    if (found < 0) return SANDBOX_CONTINUE;
    if (found) {
        deadline = (int64_t)strtoll(cached, NULL, 10);
        free(cached);
    } else {
        char text[32];
        deadline = cJSON_IsNumber(timeout) ? now_ms() + (int64_t)(timeout->valuedouble * 1000) : 0;
        snprintf(text, sizeof text, "%lld", (long long)deadline);
        sandbox_outcome outcome = put_step(exchange, deadline_key, text, &stored);
        if (!stored) return outcome;
        free(stored);
    }
    if (deadline && now_ms() >= deadline) {
        sandbox_outcome outcome = put_step(exchange, key, "{\"timeout\":true}", &stored);
        if (!stored) return outcome;
        if (strcmp(stored, "{\"timeout\":true}") == 0)
            sandbox_call_failure(exchange->fd, "timeout", "no such event came in time");
        else
            sandbox_call_answer(exchange->fd, "{\"ok\":true}", stored, strlen(stored));
        free(stored);
        return SANDBOX_CONTINUE;
    }
    attempt->suspend = STORE_JOB_WAITING;
    attempt->until = deadline;
    snprintf(attempt->event, sizeof attempt->event, "%s", event);
    return end_attempt(exchange, "the job waits for an event");
}

sandbox_outcome sandbox_job_request(sandbox_exchange *exchange, const void *request_json,
                                    const char *op) {
    const cJSON *request = request_json;
    if (!exchange->sandbox->job || !exchange->sandbox->config->store) {
        sandbox_call_failure(exchange->fd, "not-in-job",
                             "capsule.step, sleep and await_event work only inside a job "
                             "(submit_job, `capsule job submit`)");
        return SANDBOX_CONTINUE;
    }
    if (exchange->sandbox->job->cancelled) {
        sandbox_call_failure(exchange->fd, "cancelled", "the job was cancelled");
        return SANDBOX_CONTINUE;
    }
    int answered;
    sandbox_outcome outcome = check_attempt(exchange, &answered);
    if (outcome != SANDBOX_CONTINUE || answered) return outcome;
    if (strcmp(op, "step") == 0) return answer_step(exchange, request);
    if (strcmp(op, "step_done") == 0) return answer_step_done(exchange, request);
    if (strcmp(op, "sleep") == 0) return answer_sleep(exchange, request);
    return answer_await(exchange, request);
}

/* --- /network fetches as steps ------------------------------------------------ */

/* The step that records a fetch of /network/NAME: "/network/NAME" when
 * NAME is short printable ASCII, else "/network/#" and a hash of NAME (a
 * template's value may be any bytes; step names are text of <= 128 bytes). */
static void network_step_name(const char *name, size_t size, char key[STORE_ID_SIZE]) {
    int plain = size > 0 && size <= 100;
    for (size_t i = 0; plain && i < size; i++) plain = name[i] > ' ' && name[i] < 127;
    if (plain) {
        snprintf(key, STORE_ID_SIZE, NETWORK_STEP_PREFIX "%.*s", (int)size, name);
        return;
    }
    uint8_t hash[STORE_HASH_SIZE];
    store_hash(name, size, hash);
    int used = snprintf(key, STORE_ID_SIZE, NETWORK_STEP_PREFIX "#");
    for (int i = 0; i < 16; i++) used += snprintf(key + used, STORE_ID_SIZE - (size_t)used, "%02x",
                                                  hash[i]);
}

/* The stored form of a fetch's outcome: {"base64": BYTES} or {"errno": N,
 * "message": M}.  NULL when out of memory. */
static char *network_step_value(int32_t rc, const buffer *body, const char *message) {
    cJSON *value = cJSON_CreateObject();
    if (!value) return NULL;
    if (rc == 0) {
        char *text = base64_encode((const unsigned char *)body->data, body->size);
        int added = text && cJSON_AddStringToObject(value, "base64", text) != NULL;
        free(text);
        if (!added) {
            cJSON_Delete(value);
            return NULL;
        }
    } else {
        cJSON_AddNumberToObject(value, "errno", -rc);
        cJSON_AddStringToObject(value, "message", message);
    }
    char *json = cJSON_PrintUnformatted(value);
    cJSON_Delete(value);
    return json;
}

/* Answers the worker's fetch with a stored outcome (network_step_value's). */
static void reply_stored_fetch(int fd, const char *json) {
    cJSON *value = cJSON_Parse(json);
    const cJSON *base64 = cJSON_GetObjectItemCaseSensitive(value, "base64");
    const cJSON *number = cJSON_GetObjectItemCaseSensitive(value, "errno");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(value, "message");
    size_t size = 0;
    unsigned char *bytes = cJSON_IsString(base64) ? base64_decode(base64->valuestring, &size) : NULL;
    if (bytes) {
        sandbox_fetch_reply(fd, 0, bytes, size, "");
        free(bytes);
    } else if (cJSON_IsString(base64)) {
        sandbox_fetch_reply(fd, -EIO, NULL, 0, "the stored response is damaged");
    } else if (cJSON_IsNumber(number) && number->valuedouble >= 1 && number->valuedouble < 4096) {
        sandbox_fetch_reply(fd, -(int32_t)number->valuedouble, NULL, 0,
                            cJSON_IsString(message) ? message->valuestring : "fetch failed");
    } else {
        sandbox_fetch_reply(fd, -EIO, NULL, 0, "the stored response is damaged");
    }
    cJSON_Delete(value);
}

/* Whether a fetch's outcome is kept as the job's step: a response (its
 * bytes, an HTTP error status, or one larger than the size limit).  Not
 * kept when nothing came back (an unknown name, a URL outside the
 * allow-list, a timeout, a connection that failed): a rerun tries again. */
static int fetch_is_kept(int32_t rc, const char *message) {
    return rc == 0 || rc == -EFBIG || strncmp(message, "HTTP ", 5) == 0;
}

sandbox_outcome sandbox_job_fetch(sandbox_exchange *exchange, const char *payload, size_t size) {
    cap_config *config = exchange->sandbox->config;
    job_attempt *attempt = exchange->sandbox->job;
    char error[CAP_ERROR_SIZE] = "";
    if (attempt->cancelled) {
        sandbox_fetch_reply(exchange->fd, -ECANCELED, NULL, 0, "the job was cancelled");
        return SANDBOX_CONTINUE;
    }
    /* The attempt must still hold the job: a lost one records nothing. */
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_check(config->store, attempt->job.id, attempt->job.attempts, NULL, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ECONFLICT) {
        attempt->lost = 1;
        return end_attempt(exchange, "the job's attempt lost its lease");
    }
    char key[STORE_ID_SIZE];
    network_step_name(payload + 1, size - 1, key);
    char *stored = NULL;
    int found = 0;
    if (rc == CAP_OK) {
        pthread_mutex_lock(&config->store_lock);
        rc = store_job_step_get(config->store, attempt->job.id, key, &stored, &found, error);
        pthread_mutex_unlock(&config->store_lock);
    }
    if (rc != CAP_OK) {
        sandbox_fetch_reply(exchange->fd, -EIO, NULL, 0, "the job's store failed");
        return SANDBOX_CONTINUE;
    }
    if (found) {
        reply_stored_fetch(exchange->fd, stored);
        free(stored);
        return SANDBOX_CONTINUE;
    }
    buffer body = {0};
    char message[256] = "";
    int32_t fetched = sandbox_fetch_resource(config, payload, size, exchange->deadline, &body,
                                             message);
    if (!fetch_is_kept(fetched, message)) {
        sandbox_fetch_reply(exchange->fd, fetched, body.data, body.size, message);
        buffer_free(&body);
        return SANDBOX_CONTINUE;
    }
    char *value = network_step_value(fetched, &body, message);
    buffer_free(&body);
    if (!value) {
        sandbox_fetch_reply(exchange->fd, -ENOMEM, NULL, 0, "out of memory");
        return SANDBOX_CONTINUE;
    }
    pthread_mutex_lock(&config->store_lock);
    rc = store_job_step_put(config->store, attempt->job.id, attempt->job.attempts, key, value,
                            &stored, error);
    pthread_mutex_unlock(&config->store_lock);
    free(value);
    if (rc == STORE_ECONFLICT) {
        attempt->lost = 1;
        return end_attempt(exchange, "the job's attempt lost its lease");
    }
    if (rc != CAP_OK || !stored) sandbox_fetch_reply(exchange->fd, -EIO, NULL, 0, "the job's store failed");
    else reply_stored_fetch(exchange->fd, stored);
    free(stored);
    return SANDBOX_CONTINUE;
}

/* --- the runners ------------------------------------------------------------------ */

/* Records `request` (an attempt's end, a claim, or both) in a write
 * transaction shared with whatever other runners of this process asked
 * meanwhile: group commit, one fsync for all of them.  Whoever finds no
 * transaction under way becomes the leader: it takes every pending
 * request, commits them together (store_job_commit_batch) and hands each
 * its outcome; the others wait, and one of them leads the next batch.
 * Returns once this request's transaction committed or failed: its rc
 * (and request->item's outputs) then.  A failed batch of several is tried
 * again one request at a time, so that one request that cannot be
 * written does not fail the others'. */
static int group_commit(job_runners *runners, commit_request *request) {
    cap_config *config = runners->config;
    request->done = 0;
    request->next = NULL;
    pthread_mutex_lock(&runners->lock);
    *runners->pending_tail = request;
    runners->pending_tail = &request->next;
    while (!request->done) {
        if (runners->committing) {
            pthread_cond_wait(&runners->committed, &runners->lock);
            continue;
        }
        runners->committing = 1;
        /* The first MAX_RUNNERS pending (there are no more: each runner
         * waits for its one request), the rest left for the next batch. */
        commit_request *batch = runners->pending, *last = batch;
        size_t count = 1;
        while (last->next && count < MAX_RUNNERS) last = last->next, count++;
        runners->pending = last->next;
        if (!runners->pending) runners->pending_tail = &runners->pending;
        last->next = NULL;
        pthread_mutex_unlock(&runners->lock);
        store_job_batch_item items[MAX_RUNNERS];
        count = 0;
        for (commit_request *r = batch; r; r = r->next) items[count++] = r->item;
        char error[CAP_ERROR_SIZE] = "";
        int rcs[MAX_RUNNERS];
        pthread_mutex_lock(&config->store_lock);
        int rc = store_job_commit_batch(config->store, items, count, NULL, error);
        for (size_t i = 0; i < count; i++) rcs[i] = rc;
        if (rc != CAP_OK && count > 1)
            for (size_t i = 0; i < count; i++)
                rcs[i] = store_job_commit_batch(config->store, &items[i], 1, NULL, error);
        pthread_mutex_unlock(&config->store_lock);
        pthread_mutex_lock(&runners->lock);
        size_t i = 0;
        for (commit_request *r = batch; r && i < count; r = r->next, i++) {
            r->item = items[i];
            r->rc = rcs[i];
            r->done = 1;
        }
        runners->committing = 0;
        pthread_cond_broadcast(&runners->committed);
    }
    pthread_mutex_unlock(&runners->lock);
    return request->rc;
}

/* What an attempt's end is recorded as, from how its run ended; in the
 * same transaction (group_commit's) the runner's next job is claimed
 * (*claimed = 1 and *next), unless the transaction failed. */
static void finish_attempt(job_runners *runners, job_attempt *attempt, int rc,
                           const cap_result *result, const char *run_error, store_job *next,
                           int *claimed) {
    const store_job *job = &attempt->job;
    char *json = NULL;
    store_job_outcome outcome;
    char message[1024] = "";
    int64_t delay = 0;
    if (attempt->suspend) {
        outcome = (store_job_outcome)attempt->suspend;
    } else if (attempt->cancelled) {
        outcome = STORE_JOB_CANCELLED;
    } else if (rc == CAP_OK && cap_result_status(result) == CAP_STATUS_SUCCESS) {
        outcome = STORE_JOB_SUCCEEDED;
        json = cap_result_to_json(result);
    } else {
        outcome = STORE_JOB_FAILED;
        if (rc != CAP_OK)
            snprintf(message, sizeof message, "the attempt could not run: %s", run_error);
        else
            snprintf(message, sizeof message, "%s: %.900s", cap_status_name(cap_result_status(result)),
                     cap_result_error(result) ? cap_result_error(result) : "");
        /* backoff * 2^(n-1), capped. */
        delay = job->backoff_ms;
        for (int64_t n = 1; n < job->attempts && delay < MAX_RETRY_DELAY_MS; n++) delay *= 2;
        if (delay > MAX_RETRY_DELAY_MS) delay = MAX_RETRY_DELAY_MS;
    }
    commit_request request = {.item = {.id = job->id,
                                       .attempt = job->attempts,
                                       .outcome = outcome,
                                       .result_json = json ? json : "null",
                                       .message = message,
                                       .event = attempt->event,
                                       .retry_delay_ms = delay,
                                       .until = attempt->until,
                                       .want_next = 1}};
    /* A database that restarts under the attempt fails this write; the
     * next one reconnects.  Retried for up to END_RETRY_MS (a PostgreSQL
     * recovering from a crash may refuse connections for many seconds on a
     * busy machine: 12 s seen), or the job would stay `running` under this
     * live node until its own lease (timeout + 60 s) ran out; not past the
     * process's stop (the sweep gives the attempt back then). */
    int64_t give_up = now_ms() + END_RETRY_MS;
    for (int tries = 0;; tries++) {
        if (tries) {
            long ms = 250L << (tries < 3 ? tries : 3); /* 0.5, 1, then 2 s */
            struct timespec pause = {ms / 1000, ms % 1000 * 1000000L};
            nanosleep(&pause, NULL);
        }
        if (group_commit(runners, &request) != CAP_EIO) break; /* done, or not retryable */
        pthread_mutex_lock(&runners->lock);
        int stopping = runners->stop;
        pthread_mutex_unlock(&runners->lock);
        if (stopping || now_ms() >= give_up) break;
    }
    *claimed = request.rc == CAP_OK && request.item.claimed;
    if (*claimed) *next = request.item.next;
    free(json);
}

/* Runs one attempt of `job` and records its end; *claimed = 1 and *next
 * when the runner's next job was claimed with it. */
static void run_attempt(job_runners *runners, cap_sandbox *sandbox, store_job *job,
                        store_job *next, int *claimed) {
    job_attempt attempt = {.job = *job};
    cap_run_options options = {0};
    options.capture = 1;
    options.return_json = 1;
    options.filename = "job.py";
    options.principal = job->principal;
    options.limits = runners->limits;
    options.limits.wall_seconds = (double)job->timeout_ms / 1000.0;
    if (options.limits.cpu_seconds > options.limits.wall_seconds)
        options.limits.cpu_seconds = options.limits.wall_seconds;
    cap_result *result = NULL;
    char error[CAP_ERROR_SIZE] = "";
    pthread_mutex_lock(&runners->lock);
    int stopped_before = runners->stop;
    pthread_mutex_unlock(&runners->lock);
    if (stopped_before) return; /* claimed as the process stops: the sweep gives it back */
    sandbox->job = &attempt;
    int rc = cap_sandbox_run(sandbox, job->code ? job->code : "", job->code ? strlen(job->code) : 0,
                             &options, &result, error);
    sandbox->job = NULL;
    pthread_mutex_lock(&runners->lock);
    int stopping = runners->stop;
    pthread_mutex_unlock(&runners->lock);
    /* Stopped with the process: the attempt is left to the sweep, which
     * runs it again (it did not fail). */
    if (!stopping && !attempt.lost)
        finish_attempt(runners, &attempt, rc, result, error, next, claimed);
    cap_result_free(result);
}

/* Deletes a batch of finished jobs and dead events when this process's
 * turn is due: one runner at a time, about every PRUNE_INTERVAL_MS, at
 * once again while batches come back full.  A failure is left for the next
 * turn (pruning is housekeeping; nothing waits for it). */
static void maybe_prune(job_runners *runners) {
    cap_config *config = runners->config;
    int64_t now = now_ms();
    pthread_mutex_lock(&runners->lock);
    int due = now >= runners->next_prune_ms;
    if (due) runners->next_prune_ms = now + PRUNE_INTERVAL_MS;
    pthread_mutex_unlock(&runners->lock);
    if (!due) return;
    int64_t jobs = 0, events = 0;
    char error[CAP_ERROR_SIZE];
    pthread_mutex_lock(&config->store_lock);
    int64_t retention = config->job_retention_ms > 0 ? config->job_retention_ms
                                                     : DEFAULT_RETENTION_MS;
    int rc = store_job_prune(config->store, retention, PRUNE_BATCH, &jobs, &events, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == CAP_OK && (jobs == PRUNE_BATCH || events == PRUNE_BATCH)) {
        pthread_mutex_lock(&runners->lock);
        runners->next_prune_ms = now;
        pthread_mutex_unlock(&runners->lock);
    }
}

static void record_claim_latency(job_runners *runners, int64_t waited_ms) {
    if (waited_ms < 0) waited_ms = 0; /* run_after set by another node's clock */
    pthread_mutex_lock(&runners->lock);
    for (size_t i = 0; i < CLAIM_BUCKET_COUNT; i++)
        if (waited_ms <= CLAIM_BUCKETS_MS[i]) runners->latency_buckets[i]++;
    runners->latency_count++;
    runners->latency_sum_ms += waited_ms;
    pthread_mutex_unlock(&runners->lock);
}

int sandbox_jobs_metrics(cap_config *config, buffer *out) {
    job_runners *runners = config->jobs;
    if (!runners) return 0;
    static const char help[] =
        "# HELP capsule_job_claim_latency_seconds How long a job this node claimed had been "
        "due (queued, or its retry, sleep or event due) before a runner took it.\n"
        "# TYPE capsule_job_claim_latency_seconds histogram\n";
    int rc = buffer_append(out, help, sizeof help - 1);
    char line[160];
    pthread_mutex_lock(&runners->lock);
    for (size_t i = 0; rc == 0 && i < CLAIM_BUCKET_COUNT; i++) {
        int length = snprintf(line, sizeof line,
                              "capsule_job_claim_latency_seconds_bucket{le=\"%g\"} %llu\n",
                              (double)CLAIM_BUCKETS_MS[i] / 1000,
                              (unsigned long long)runners->latency_buckets[i]);
        rc = buffer_append(out, line, (size_t)length);
    }
    if (rc == 0) {
        int length = snprintf(line, sizeof line,
                              "capsule_job_claim_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                              "capsule_job_claim_latency_seconds_sum %.3f\n"
                              "capsule_job_claim_latency_seconds_count %llu\n",
                              (unsigned long long)runners->latency_count,
                              (double)runners->latency_sum_ms / 1000,
                              (unsigned long long)runners->latency_count);
        rc = buffer_append(out, line, (size_t)length);
    }
    pthread_mutex_unlock(&runners->lock);
    return rc;
}

static void *runner_main(void *argument) {
    void **pair = argument;
    job_runners *runners = pair[0];
    cap_sandbox *sandbox = pair[1];
    free(pair);
    store_job job;
    int claimed = 0; /* job holds a claimed job not yet run */
    for (;;) {
        pthread_mutex_lock(&runners->lock);
        int stop = runners->stop;
        pthread_mutex_unlock(&runners->lock);
        if (stop) break;
        maybe_prune(runners);
        int rc = CAP_OK;
        if (!claimed) {
            /* Idle runners' claims share transactions too. */
            commit_request request = {.item = {.want_next = 1}};
            rc = group_commit(runners, &request);
            claimed = rc == CAP_OK && request.item.claimed;
            if (claimed) job = request.item.next;
        }
        if (rc == CAP_OK && claimed) {
            /* While jobs keep coming, each attempt's end claims the next. */
            record_claim_latency(runners, job.updated_at - job.run_after);
            store_job next;
            int next_claimed = 0;
            run_attempt(runners, sandbox, &job, &next, &next_claimed);
            store_job_clear(&job);
            claimed = next_claimed;
            if (claimed) job = next;
            continue;
        }
        /* Idle (or the store failed: tried again after the same pause). */
        struct timespec wake;
        clock_gettime(CLOCK_REALTIME, &wake);
        wake.tv_sec += runners->poll_ms / 1000;
        wake.tv_nsec += (long)(runners->poll_ms % 1000) * 1000000;
        wake.tv_sec += wake.tv_nsec / 1000000000;
        wake.tv_nsec %= 1000000000;
        pthread_mutex_lock(&runners->lock);
        while (!runners->stop && !runners->wakes &&
               pthread_cond_timedwait(&runners->wake, &runners->lock, &wake) == 0)
            continue;
        if (runners->wakes) runners->wakes--;
        pthread_mutex_unlock(&runners->lock);
    }
    /* A job claimed as the process stops: the sweep gives it back. */
    if (claimed) store_job_clear(&job);
    return NULL;
}

static void wake_runners(cap_config *config);

/* PostgreSQL: hears other processes' submits and events, and wakes this
 * process's runners. */
static void *listener_main(void *argument) {
    job_runners *runners = argument;
    for (;;) {
        pthread_mutex_lock(&runners->lock);
        int stop = runners->stop;
        pthread_mutex_unlock(&runners->lock);
        if (stop) break;
        int heard = store_listener_wait(runners->listener, LISTEN_WAIT_MS);
        if (heard > 0) wake_runners(runners->config);
        else if (heard < 0) {
            struct timespec pause = {0, LISTEN_WAIT_MS * 1000000L}; /* reconnects after */
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

int cap_jobs_start(cap_config *config, int count, const cap_limits *limits, double poll_seconds,
                   char *error) {
    if (!config || !config->store || count < 1 || count > MAX_RUNNERS || config->jobs ||
        !(poll_seconds >= 0 && poll_seconds <= 3600)) {
        sandbox_set_error(error, "job runners need a store, 1 to %d of them, started once, "
                                 "polling every 0 to 3600 s", MAX_RUNNERS);
        return CAP_EINVAL;
    }
    job_runners *runners = calloc(1, sizeof *runners);
    if (!runners) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    runners->config = config;
    if (limits) runners->limits = *limits;
    runners->poll_ms = poll_seconds > 0 ? (int64_t)(poll_seconds * 1000) : IDLE_POLL_MS;
    if (runners->poll_ms < 1) runners->poll_ms = 1;
    pthread_mutex_init(&runners->lock, NULL);
    pthread_cond_init(&runners->wake, NULL);
    pthread_cond_init(&runners->committed, NULL);
    runners->pending_tail = &runners->pending;
    config->jobs = runners;
    /* Every sandbox (and its zygote) before any runner thread: forks with
     * threads running are made only under store_lock (pool.c). */
    for (; runners->count < count; runners->count++) {
        int rc = cap_sandbox_new(config, &runners->sandboxes[runners->count], error);
        if (rc != CAP_OK) {
            sandbox_jobs_stop(config);
            return rc;
        }
    }
    sandbox_start_lease_renewal(config);
    /* Without a listener the runners poll: a hint lost, not a job. */
    if (store_listener_open(config->store_url, &runners->listener, NULL) == CAP_OK &&
        runners->listener &&
        pthread_create(&runners->listener_thread, NULL, listener_main, runners) == 0)
        runners->listening = 1;
    for (int i = 0; i < runners->count; i++) {
        void **pair = malloc(2 * sizeof *pair);
        if (!pair) break;
        pair[0] = runners;
        pair[1] = runners->sandboxes[i];
        if (pthread_create(&runners->threads[i], NULL, runner_main, pair) != 0) {
            free(pair);
            break;
        }
        runners->started++;
    }
    if (runners->started < runners->count) {
        sandbox_jobs_stop(config);
        sandbox_set_error(error, "cannot start the job runner threads");
        return CAP_ENOMEM;
    }
    return CAP_OK;
}

void sandbox_jobs_stop(cap_config *config) {
    job_runners *runners = config ? config->jobs : NULL;
    if (!runners) return;
    pthread_mutex_lock(&runners->lock);
    runners->stop = 1;
    pthread_cond_broadcast(&runners->wake);
    pthread_mutex_unlock(&runners->lock);
    for (int i = 0; i < runners->started; i++) cap_sandbox_cancel(runners->sandboxes[i]);
    for (int i = 0; i < runners->started; i++) pthread_join(runners->threads[i], NULL);
    if (runners->listening) pthread_join(runners->listener_thread, NULL);
    store_listener_close(runners->listener);
    for (int i = 0; i < runners->count; i++) cap_sandbox_free(runners->sandboxes[i]);
    pthread_cond_destroy(&runners->wake);
    pthread_cond_destroy(&runners->committed);
    pthread_mutex_destroy(&runners->lock);
    free(runners);
    config->jobs = NULL;
}

/* A runner of this process looks now rather than at its next poll. */
static void wake_runners(cap_config *config) {
    job_runners *runners = config->jobs;
    if (!runners) return;
    pthread_mutex_lock(&runners->lock);
    runners->wakes = runners->count;
    pthread_cond_broadcast(&runners->wake);
    pthread_mutex_unlock(&runners->lock);
}

/* --- the C API --------------------------------------------------------------------- */

static cJSON *job_json(const store_job *job) {
    cJSON *out = cJSON_CreateObject();
    if (!out) return NULL;
    cJSON_AddStringToObject(out, "job_id", job->id);
    cJSON_AddStringToObject(out, "queue", job->queue);
    cJSON_AddStringToObject(out, "status", job->status);
    cJSON_AddNumberToObject(out, "attempts", (double)job->attempts);
    cJSON_AddNumberToObject(out, "max_attempts", (double)job->max_attempts);
    if (job->lease_owner[0]) cJSON_AddStringToObject(out, "node", job->lease_owner);
    else cJSON_AddNullToObject(out, "node");
    if (job->last_error) cJSON_AddStringToObject(out, "last_error", job->last_error);
    else cJSON_AddNullToObject(out, "last_error");
    cJSON *result = job->result ? cJSON_Parse(job->result) : NULL;
    if (result) cJSON_AddItemToObject(out, "result", result);
    else cJSON_AddNullToObject(out, "result");
    if (job->wait_event[0] && strcmp(job->status, "waiting") == 0)
        cJSON_AddStringToObject(out, "waiting_for", job->wait_event);
    cJSON_AddNumberToObject(out, "run_after_ms", (double)job->run_after);
    cJSON_AddNumberToObject(out, "created_at_ms", (double)job->created_at);
    cJSON_AddNumberToObject(out, "updated_at_ms", (double)job->updated_at);
    cJSON_AddNumberToObject(out, "claim_wait_ms", (double)job->claim_wait_ms);
    if (job->idempotency_key[0]) cJSON_AddStringToObject(out, "idempotency_key", job->idempotency_key);
    cJSON_AddBoolToObject(out, "cancel_requested", job->cancel_requested);
    return out;
}

static char *print_and_delete(cJSON *json, char *error) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) sandbox_set_error(error, "out of memory");
    return text;
}

/* Store codes as the API's: what the caller got wrong is CAP_EINVAL. */
static int api_code(int rc) {
    if (rc == CAP_OK || rc == CAP_ENOMEM || rc == CAP_EINVAL) return rc;
    if (rc == STORE_ENOTFOUND || rc == STORE_ECONFLICT || rc == STORE_EEXIST) return CAP_EINVAL;
    return CAP_EIO;
}

static int need_store(cap_config *config, char *error) {
    if (config && config->store) return CAP_OK;
    sandbox_set_error(error, "jobs need a store (cap_config_set_store)");
    return CAP_EINVAL;
}

int cap_job_submit(cap_config *config, const char *code, const cap_job_options *options,
                   char **out, char *error) {
    if (out) *out = NULL;
    if (need_store(config, error) != CAP_OK) return CAP_EINVAL;
    static const cap_job_options defaults = {0};
    if (!options) options = &defaults;
    double timeout = options->timeout_seconds > 0 ? options->timeout_seconds : DEFAULT_TIMEOUT_SECONDS;
    double backoff = options->backoff_seconds > 0   ? options->backoff_seconds
                     : options->backoff_seconds < 0 ? 0
                                                    : DEFAULT_BACKOFF_SECONDS;
    if (!code || options->max_attempts < 0 || options->max_attempts > 1000 || timeout > 86400 ||
        backoff > 86400) {
        sandbox_set_error(error, "a job needs code, at most 1000 attempts, a timeout and a "
                                 "backoff of at most a day");
        return CAP_EINVAL;
    }
    store_job_spec spec = {.principal = options->principal ? options->principal : "",
                           .queue = options->queue,
                           .code = code,
                           .idempotency_key = options->idempotency_key,
                           .max_attempts = options->max_attempts ? options->max_attempts
                                                                 : DEFAULT_MAX_ATTEMPTS,
                           .backoff_ms = (int64_t)(backoff * 1000),
                           .timeout_ms = (int64_t)(timeout * 1000)};
    if (spec.timeout_ms < 1) spec.timeout_ms = 1;
    store_job job;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_submit(config->store, &spec, &job, NULL, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) return api_code(rc);
    wake_runners(config);
    if (out && !(*out = print_and_delete(job_json(&job), error))) rc = CAP_ENOMEM;
    store_job_clear(&job);
    return rc;
}

char *cap_job_get(cap_config *config, const char *id, const char *principal, char *error) {
    if (need_store(config, error) != CAP_OK) return NULL;
    if (!id) {
        sandbox_set_error(error, "no job id");
        return NULL;
    }
    store_job job;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_get(config->store, id, principal, &job, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ENOTFOUND) sandbox_set_error(error, "no job %.200s", id);
    if (rc != CAP_OK) return NULL;
    char *text = print_and_delete(job_json(&job), error);
    store_job_clear(&job);
    return text;
}

char *cap_job_list(cap_config *config, const char *principal, const char *status, size_t limit,
                   char *error) {
    if (need_store(config, error) != CAP_OK) return NULL;
    store_job *jobs = NULL;
    size_t count = 0;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_list(config->store, principal, status, limit, &jobs, &count, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) return NULL;
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; list && i < count; i++) cJSON_AddItemToArray(list, job_json(&jobs[i]));
    store_job_list_free(jobs, count);
    return print_and_delete(list, error);
}

int cap_job_cancel(cap_config *config, const char *id, const char *principal, char **out,
                   char *error) {
    if (out) *out = NULL;
    if (need_store(config, error) != CAP_OK) return CAP_EINVAL;
    if (!id) {
        sandbox_set_error(error, "no job id");
        return CAP_EINVAL;
    }
    char status[STORE_STATUS_SIZE];
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_cancel(config->store, id, principal, status, error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc == STORE_ENOTFOUND) sandbox_set_error(error, "no job %.200s", id);
    else if (rc == STORE_ECONFLICT)
        sandbox_set_error(error, "job %.200s has ended already (%s)", id, status);
    if (rc != CAP_OK) return api_code(rc);
    if (out && !(*out = cap_job_get(config, id, principal, error))) return CAP_ENOMEM;
    return CAP_OK;
}

int cap_job_emit(cap_config *config, const char *principal, const char *name,
                 const char *payload_json, int *woken, char *error) {
    if (woken) *woken = 0;
    if (need_store(config, error) != CAP_OK) return CAP_EINVAL;
    cJSON *payload = payload_json ? cJSON_Parse(payload_json) : NULL;
    cJSON_Delete(payload);
    if (payload_json && !payload) {
        sandbox_set_error(error, "an event's payload must be JSON");
        return CAP_EINVAL;
    }
    int64_t count = 0;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_emit(config->store, principal ? principal : "", name, payload_json, &count,
                            error);
    pthread_mutex_unlock(&config->store_lock);
    if (rc != CAP_OK) return api_code(rc);
    if (woken) *woken = (int)count;
    if (count) wake_runners(config);
    return CAP_OK;
}

int cap_config_set_job_retention(cap_config *config, double seconds, char *error) {
    if (!config || !(seconds > 0 && seconds <= 10 * 366 * 86400.0)) {
        sandbox_set_error(error, "a job retention is more than 0 s and at most 10 years");
        return CAP_EINVAL;
    }
    int64_t ms = (int64_t)(seconds * 1000);
    /* Read by the runners under store_lock. */
    pthread_mutex_lock(&config->store_lock);
    config->job_retention_ms = ms > 0 ? ms : 1;
    pthread_mutex_unlock(&config->store_lock);
    return CAP_OK;
}

int cap_job_set_queue_limit(cap_config *config, const char *queue, int concurrency,
                            char *error) {
    if (need_store(config, error) != CAP_OK) return CAP_EINVAL;
    pthread_mutex_lock(&config->store_lock);
    int rc = store_job_set_queue_limit(config->store, queue, concurrency, error);
    pthread_mutex_unlock(&config->store_lock);
    return api_code(rc);
}
