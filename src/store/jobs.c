/*
 * jobs.c — durable jobs in the store (store.h, "jobs"; docs/store.md,
 * "Jobs"): submitting, claiming, the step cache, finishing an attempt,
 * cancelling, events.
 *
 * The shape is Absurd's: a job row with a lease, claimed by one UPDATE that
 * picks the oldest due row, a table of step results keyed by (job, name).
 * On PostgreSQL the pick is `FOR UPDATE SKIP LOCKED`, so nodes claiming at
 * once take different rows without waiting for each other; on SQLite the
 * claim is an `UPDATE ... RETURNING` in a BEGIN IMMEDIATE transaction, which
 * the database's one writer serialises.  Every write of an attempt (a step,
 * its end) is fenced by (lease_owner, attempts): an attempt whose job was
 * swept and claimed again elsewhere cannot commit over the new one.
 *
 * Runners end attempts and claim their next jobs together
 * (store_job_commit_batch): several runners' ends and claims in one
 * transaction, one commit (one fsync) for all of them.
 *
 * Dead attempts are found at claim time, by whoever claims next: a running
 * job whose node's lease (the nodes table, renewed by store_renew) expired,
 * or whose own lease (its timeout plus STORE_JOB_GRACE_MS) passed.  A
 * handle sweeps at its first claim and then at most every
 * JOB_SWEEP_INTERVAL_MS: a node draining a queue claims hundreds of times
 * a second, and the sweep's two statements (three round trips with the
 * transaction's) were a fifth of each claim on PostgreSQL, for leases that
 * run for seconds.  A dead attempt is found at most that much later.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define INTEGER(x) ((store_value){.type = STORE_INTEGER, .integer = (x)})
#define TEXT(s) ((store_value){.type = STORE_TEXT, .bytes = (s), .size = strlen(s)})
#define NOTHING ((store_value){.type = STORE_NULL})
#define RUN(s, sql, row, context, error, ...)                                                      \
    store_internal_execute((s), (sql), (const store_value[]){__VA_ARGS__},                         \
                           (int)(sizeof((const store_value[]){__VA_ARGS__}) / sizeof(store_value)), \
                           (row), (context), (error))

#define DEFAULT_LIST_LIMIT 100
/* A waiting job is looked at again this often even if no wake-up reaches
 * it (an event emitted in the instant between its check and its parking
 * on PostgreSQL): polling keeps it correct. */
#define WAIT_RECHECK_MS 60000
#define JOB_SWEEP_INTERVAL_MS 500

/* Counts rows; the first row's first column as an integer and as text. */
typedef struct first_row {
    int64_t rows;
    int64_t integer;
    char text[STORE_ID_SIZE];
    char *long_text; /* malloc'd copy of the first column when it is text */
} first_row;

static int collect_first(void *context, const store_value *columns, int count, char *error) {
    (void)error;
    first_row *out = context;
    if (out->rows++ == 0 && count > 0) {
        out->integer = columns[0].type == STORE_INTEGER ? columns[0].integer : 0;
        store_copy_text(out->text, sizeof out->text, &columns[0]);
        out->long_text = store_duplicate_text(&columns[0]);
    }
    return 0;
}

/* The 16 columns a job row is listed with; a single job (get, claim) is
 * read with JOB_FULL_COLUMNS, the same and 4 more (the backends read at
 * most 24), in the same statement. */
#define JOB_COLUMNS                                                                                \
    "id, principal, queue, status, attempts, max_attempts, backoff_ms, timeout_ms, run_after,"     \
    " lease_owner, cancel_requested, wait_event, last_error, result, created_at, updated_at"
#define JOB_FULL_COLUMNS JOB_COLUMNS ", code, idempotency_key, lease_expires_at, claim_wait_ms"

static int read_extra(store_job *job, const store_value *columns, int count, char *error);

static int read_job(store_job *out, const store_value *columns, int count, char *error) {
    if (count < 16)
        return store_fail(error, STORE_ECORRUPT, "a job row of %d columns where 16 are expected", count);
    memset(out, 0, sizeof *out);
    store_copy_text(out->id, sizeof out->id, &columns[0]);
    store_copy_text(out->principal, sizeof out->principal, &columns[1]);
    store_copy_text(out->queue, sizeof out->queue, &columns[2]);
    store_copy_text(out->status, sizeof out->status, &columns[3]);
    out->attempts = columns[4].integer;
    out->max_attempts = columns[5].integer;
    out->backoff_ms = columns[6].integer;
    out->timeout_ms = columns[7].integer;
    out->run_after = columns[8].integer;
    store_copy_text(out->lease_owner, sizeof out->lease_owner, &columns[9]);
    out->cancel_requested = columns[10].integer != 0;
    store_copy_text(out->wait_event, sizeof out->wait_event, &columns[11]);
    out->last_error = store_duplicate_text(&columns[12]);
    out->result = store_duplicate_text(&columns[13]);
    out->created_at = columns[14].integer;
    out->updated_at = columns[15].integer;
    if ((columns[12].type == STORE_TEXT && !out->last_error) ||
        (columns[13].type == STORE_TEXT && !out->result))
        return store_fail(error, CAP_ENOMEM, "out of memory");
    return count >= 20 ? read_extra(out, columns + 16, count - 16, error) : 0;
}

typedef struct one_job {
    store_job *job;
    int found;
} one_job;

static int read_one_job(void *context, const store_value *columns, int count, char *error) {
    one_job *out = context;
    if (out->found++) return 0;
    return read_job(out->job, columns, count, error);
}

typedef struct job_list {
    store_job *jobs;
    size_t count, capacity;
} job_list;

static int read_listed_job(void *context, const store_value *columns, int count, char *error) {
    job_list *list = context;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 16;
        store_job *grown = realloc(list->jobs, capacity * sizeof *grown);
        if (!grown) return store_fail(error, CAP_ENOMEM, "out of memory");
        list->jobs = grown;
        list->capacity = capacity;
    }
    int result = read_job(&list->jobs[list->count], columns, count, error);
    list->count++; /* counted even when partly read: freed with the rest */
    return result;
}

void store_job_clear(store_job *job) {
    if (!job) return;
    free(job->code);
    free(job->last_error);
    free(job->result);
    job->code = job->last_error = job->result = NULL;
}

void store_job_list_free(store_job *jobs, size_t count) {
    for (size_t i = 0; i < count; i++) store_job_clear(&jobs[i]);
    free(jobs);
}

static const char job_counts_select[] = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

typedef struct job_counts {
    int (*each)(void *context, const char *status, int64_t count);
    void *context;
} job_counts;

static int read_count(void *context, const store_value *columns, int count, char *error) {
    job_counts *counts = context;
    if (count < 2) return store_fail(error, STORE_ECORRUPT, "a short row");
    char status[STORE_STATUS_SIZE];
    store_copy_text(status, sizeof status, &columns[0]);
    return counts->each(counts->context, status,
                        columns[1].type == STORE_INTEGER ? columns[1].integer : 0);
}

int store_job_counts(store *store, int (*each)(void *context, const char *status, int64_t count),
                     void *context, char *error) {
    job_counts counts = {each, context};
    return store_internal_execute(store, job_counts_select, NULL, 0, read_count, &counts, error);
}

/* JOB_FULL_COLUMNS' last 4. */
static int read_extra(store_job *job, const store_value *columns, int count, char *error) {
    if (count < 4) return store_fail(error, STORE_ECORRUPT, "a short job row");
    job->claim_wait_ms = columns[3].type == STORE_INTEGER ? columns[3].integer : 0;
    free(job->code);
    job->code = store_duplicate_text(&columns[0]);
    store_copy_text(job->idempotency_key, sizeof job->idempotency_key, &columns[1]);
    job->lease_expires_at = columns[2].type == STORE_INTEGER ? columns[2].integer : 0;
    return job->code ? 0 : store_fail(error, CAP_ENOMEM, "out of memory");
}

/* 32 hex digits of randomness. */
static void make_job_id(char id[STORE_ID_SIZE]) {
    unsigned char random[16];
    if (getentropy(random, sizeof random) != 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (size_t i = 0; i < sizeof random; i++)
            random[i] = (unsigned char)((now.tv_nsec >> (i % 4 * 8)) ^ (i * 131) ^ getpid());
    }
    for (size_t i = 0; i < sizeof random; i++) snprintf(id + 2 * i, 3, "%02x", random[i]);
}

/* --- submitting and reading ----------------------------------------------------- */

/* Inside a write transaction: other nodes' idle runners hear of it at the
 * commit (PostgreSQL; a hint, listen.c). */
static const char jobs_notify[] = "SELECT pg_notify('" STORE_JOBS_CHANNEL "', '')";

static int notify_runners(store *store, char *error) {
    if (!store_internal_backend(store)->notifies) return CAP_OK;
    return store_internal_execute(store, jobs_notify, NULL, 0, NULL, NULL, error);
}

static const char job_insert[] =
    "INSERT INTO jobs (id, principal, queue, code, idempotency_key, status, max_attempts,"
    " backoff_ms, timeout_ms, run_after, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $10)"
    " ON CONFLICT DO NOTHING RETURNING 1";
static const char job_select_by_key[] =
    "SELECT id FROM jobs WHERE principal = $1 AND idempotency_key = $2";
static const char job_select[] = "SELECT " JOB_FULL_COLUMNS " FROM jobs WHERE id = $1";

int store_job_submit(store *store, const store_job_spec *spec, store_job *out, int *existing,
                     char *error) {
    memset(out, 0, sizeof *out);
    if (existing) *existing = 0;
    const char *queue = spec->queue && spec->queue[0] ? spec->queue : STORE_JOB_QUEUE_DEFAULT;
    const char *principal = spec->principal ? spec->principal : "";
    int result = store_check_name(principal, "principal", 1, error);
    if (result == CAP_OK) result = store_check_name(queue, "queue", 0, error);
    if (result == CAP_OK && spec->idempotency_key)
        result = store_check_name(spec->idempotency_key, "idempotency key", 0, error);
    if (result == CAP_OK && !spec->code) result = store_fail(error, CAP_EINVAL, "a job needs code");
    if (result == CAP_OK && (spec->max_attempts < 1 || spec->backoff_ms < 0 ||
                             spec->timeout_ms <= 0))
        result = store_fail(error, CAP_EINVAL,
                      "a job needs max_attempts >= 1, backoff >= 0 and a positive timeout");
    if (result != CAP_OK) return result;
    char id[STORE_ID_SIZE];
    make_job_id(id);
    if ((result = store_internal_write_begin(store, error)) != CAP_OK) return result;
    int64_t now = store_time(store);
    first_row inserted = {0}, found = {0};
    result = RUN(store, job_insert, collect_first, &inserted, error, TEXT(id), TEXT(principal),
                 TEXT(queue), TEXT(spec->code),
                 spec->idempotency_key ? TEXT(spec->idempotency_key) : NOTHING,
                 INTEGER(spec->max_attempts), INTEGER(spec->backoff_ms),
                 INTEGER(spec->timeout_ms), INTEGER(spec->run_after > 0 ? spec->run_after : now),
                 INTEGER(now));
    if (result == CAP_OK && !inserted.rows) {
        /* The key was used: the job it names (a random id never collides). */
        if (!spec->idempotency_key)
            result = store_fail(error, STORE_ECONFLICT, "job id %s exists already", id);
        else
            result = RUN(store, job_select_by_key, collect_first, &found, error, TEXT(principal),
                         TEXT(spec->idempotency_key));
        if (result == CAP_OK && !found.rows)
            result = store_fail(error, STORE_ECONFLICT, "the job could not be added");
        if (result == CAP_OK) snprintf(id, sizeof id, "%s", found.text);
    } else if (result == CAP_OK) {
        result = notify_runners(store, error);
    }
    free(inserted.long_text);
    free(found.long_text);
    result = store_internal_write_end(store, result, error);
    if (result == CAP_OK) result = store_job_get(store, id, NULL, out, error);
    if (result == CAP_OK && found.rows) {
        if (existing) *existing = 1;
        if (strcmp(out->code ? out->code : "", spec->code) != 0) {
            store_job_clear(out);
            result = store_fail(error, STORE_ECONFLICT,
                          "idempotency key '%s' was used for a job with other code",
                          spec->idempotency_key);
        }
    }
    return result;
}

int store_job_get(store *store, const char *id, const char *principal, store_job *out,
                  char *error) {
    memset(out, 0, sizeof *out);
    int result = store_check_name(id, "job id", 0, error);
    if (result != CAP_OK) return result;
    one_job found = {out, 0};
    result = RUN(store, job_select, read_one_job, &found, error, TEXT(id));
    if (result == CAP_OK && (!found.found || (principal && strcmp(out->principal, principal))))
        result = store_fail(error, STORE_ENOTFOUND, "no job '%s'", id);
    if (result != CAP_OK) store_job_clear(out);
    return result;
}

static const char job_list_all[] =
    "SELECT " JOB_COLUMNS " FROM jobs WHERE ($1 = '' OR status = $1)"
    " ORDER BY created_at DESC, id LIMIT $2";
static const char job_list_principal[] =
    "SELECT " JOB_COLUMNS " FROM jobs WHERE principal = $3 AND ($1 = '' OR status = $1)"
    " ORDER BY created_at DESC, id LIMIT $2";

int store_job_list(store *store, const char *principal, const char *status, size_t limit,
                   store_job **jobs, size_t *count, char *error) {
    *jobs = NULL;
    *count = 0;
    job_list list = {0};
    int64_t bound = limit ? (int64_t)limit : DEFAULT_LIST_LIMIT;
    const char *wanted = status ? status : "";
    int result = principal ? RUN(store, job_list_principal, read_listed_job, &list, error,
                                 TEXT(wanted), INTEGER(bound), TEXT(principal))
                           : RUN(store, job_list_all, read_listed_job, &list, error,
                                 TEXT(wanted), INTEGER(bound));
    if (result != CAP_OK) {
        store_job_list_free(list.jobs, list.count);
        return result;
    }
    *jobs = list.jobs;
    *count = list.count;
    return CAP_OK;
}

/* --- claiming ---------------------------------------------------------------------- */

/* $1 now.  An attempt is dead when its node's lease expired (the node is
 * gone from `nodes` or stale) or its own lease passed. */
#define SWEPT_JOBS                                                                                 \
    " WHERE status = 'running' AND (lease_expires_at < $1 OR NOT EXISTS"                           \
    " (SELECT 1 FROM nodes WHERE nodes.id = jobs.lease_owner AND nodes.lease_expires_at >= $1))"
static const char job_sweep[] =
    "UPDATE jobs SET"
    " status = CASE WHEN cancel_requested <> 0 THEN 'cancelled'"
    "   WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,"
    " last_error = 'attempt ' || attempts || ' was cut off: its node ' ||"
    "   COALESCE(lease_owner, '?') || ' stopped',"
    " lease_owner = NULL, lease_expires_at = NULL, run_after = $1, updated_at = $1"
    SWEPT_JOBS;

/* On PostgreSQL the rows are locked first and job_sweep decides after, in a
 * statement of its own: an UPDATE that waits for a row another node has just
 * claimed re-checks only the row's own columns against the claim and keeps
 * its first verdict on `nodes` (an anti-join), so it cut off the new
 * attempt of a job whose previous node was dead, and the job ran twice at
 * once (store.c's sweep_sessions_lock is the same). */
static const char job_sweep_lock[] = "SELECT 1 FROM jobs" SWEPT_JOBS " ORDER BY id FOR UPDATE OF jobs";

/* $1 now, $2 this node, $3 the queue ('' for any).  The pick: the oldest
 * due job of a queue under its limit. */
#define JOB_PICK                                                                                   \
    "SELECT j.id FROM jobs AS j"                                                                   \
    " WHERE j.status IN ('queued', 'failed', 'sleeping', 'waiting') AND j.run_after <= $1"         \
    " AND ($3 = '' OR j.queue = $3) AND NOT EXISTS (SELECT 1 FROM job_queues AS q"                 \
    " WHERE q.name = j.queue AND q.concurrency <= (SELECT COUNT(*) FROM jobs AS r"                 \
    " WHERE r.queue = j.queue AND r.status = 'running'))"                                          \
    " ORDER BY j.run_after, j.created_at LIMIT 1"
#define JOB_TAKE                                                                                   \
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $2,"               \
    " lease_expires_at = $1 + timeout_ms + " STRINGIFY(STORE_JOB_GRACE_MS) ","                     \
    " claim_wait_ms = claim_wait_ms + CASE WHEN $1 > run_after THEN $1 - run_after ELSE 0 END,"   \
    " wait_event = NULL, updated_at = $1"
#define STRINGIFY(x) STRINGIFY_(x)
#define STRINGIFY_(x) #x
static const char job_claim_sqlite[] =
    JOB_TAKE " WHERE id = (" JOB_PICK ") RETURNING " JOB_FULL_COLUMNS;
static const char job_claim_locking[] =
    JOB_TAKE " WHERE id = (" JOB_PICK " FOR UPDATE SKIP LOCKED) RETURNING " JOB_FULL_COLUMNS;
/* PostgreSQL: the limited queues' rows are locked first, so that two nodes
 * never both see a queue one below its limit and both claim (a claim of an
 * unlimited queue locks nothing and waits for no one). */
static const char job_queues_lock[] = "SELECT name FROM job_queues ORDER BY name FOR UPDATE";

/* One claim on its own: a batch of one item that only wants a job (one
 * code path for every claim: store_job_commit_batch's). */
int store_job_claim(store *store, const char *queue, store_job *out, int *claimed,
                    char *error) {
    memset(out, 0, sizeof *out);
    *claimed = 0;
    store_job_batch_item item = {.want_next = 1};
    int result = store_job_commit_batch(store, &item, 1, queue, error);
    if (result != CAP_OK) return result;
    *claimed = item.claimed;
    *out = item.next;
    return CAP_OK;
}

/* --- an attempt's steps and end -------------------------------------------------- */

/* $1 id, $2 this node, $3 the attempt, $4 now: touches the job if the
 * attempt still holds it. */
static const char job_fence[] =
    "UPDATE jobs SET updated_at = $4 WHERE id = $1 AND status = 'running' AND lease_owner = $2"
    " AND attempts = $3 RETURNING cancel_requested";

static int fence(store *store, const char *id, int64_t attempt, int *cancel_requested,
                 char *error) {
    first_row held = {0};
    int result = RUN(store, job_fence, collect_first, &held, error, TEXT(id),
                     TEXT(store_node(store)), INTEGER(attempt), INTEGER(store_time(store)));
    if (result == CAP_OK && !held.rows)
        result = store_fail(error, STORE_ECONFLICT,
                      "job %s: attempt %lld no longer holds it (swept, cancelled or finished "
                      "elsewhere)",
                      id, (long long)attempt);
    if (cancel_requested) *cancel_requested = held.integer != 0;
    return result;
}

/* A read, not a write: a check costs no fsync; the writes that follow are
 * fenced themselves. */
static const char job_holder[] =
    "SELECT cancel_requested FROM jobs WHERE id = $1 AND status = 'running' AND lease_owner = $2"
    " AND attempts = $3";

int store_job_check(store *store, const char *id, int64_t attempt, int *cancel_requested,
                    char *error) {
    int result = store_check_name(id, "job id", 0, error);
    if (result != CAP_OK) return result;
    first_row held = {0};
    result = RUN(store, job_holder, collect_first, &held, error, TEXT(id), TEXT(store_node(store)),
                 INTEGER(attempt));
    if (result == CAP_OK && !held.rows)
        result = store_fail(error, STORE_ECONFLICT,
                      "job %s: attempt %lld no longer holds it (swept, cancelled or finished "
                      "elsewhere)",
                      id, (long long)attempt);
    if (cancel_requested) *cancel_requested = held.integer != 0;
    return result;
}

static const char step_select[] = "SELECT result FROM job_steps WHERE job = $1 AND name = $2";
static const char step_insert[] =
    "INSERT INTO job_steps (job, name, result, created_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT DO NOTHING";

int store_job_step_get(store *store, const char *id, const char *name, char **result_json,
                       int *found, char *error) {
    *result_json = NULL;
    *found = 0;
    int result = store_check_name(id, "job id", 0, error);
    if (result == CAP_OK) result = store_check_name(name, "step name", 0, error);
    if (result != CAP_OK) return result;
    first_row row = {0};
    result = RUN(store, step_select, collect_first, &row, error, TEXT(id), TEXT(name));
    if (result == CAP_OK && row.rows && !row.long_text)
        result = store_fail(error, CAP_ENOMEM, "out of memory");
    if (result != CAP_OK) {
        free(row.long_text);
        return result;
    }
    *found = row.rows > 0;
    *result_json = row.long_text;
    return CAP_OK;
}

int store_job_step_put(store *store, const char *id, int64_t attempt, const char *name,
                       const char *result_json, char **stored, char *error) {
    if (stored) *stored = NULL;
    int result = store_check_name(id, "job id", 0, error);
    if (result == CAP_OK) result = store_check_name(name, "step name", 0, error);
    if (result == CAP_OK && !result_json) result = store_fail(error, CAP_EINVAL, "a step needs a result");
    if (result != CAP_OK) return result;
    if ((result = store_internal_write_begin(store, error)) != CAP_OK) return result;
    result = fence(store, id, attempt, NULL, error);
    if (result == CAP_OK)
        result = RUN(store, step_insert, NULL, NULL, error, TEXT(id), TEXT(name),
                     TEXT(result_json), INTEGER(store_time(store)));
    first_row row = {0};
    if (result == CAP_OK && stored)
        result = RUN(store, step_select, collect_first, &row, error, TEXT(id), TEXT(name));
    result = store_internal_write_end(store, result, error);
    if (result == CAP_OK && stored) *stored = row.long_text;
    else free(row.long_text);
    return result;
}

/* $1 id, $2 node, $3 attempt, $4 now, then per outcome. */
static const char finish_succeeded[] =
    "UPDATE jobs SET status = 'succeeded', result = $5, lease_owner = NULL,"
    " lease_expires_at = NULL, updated_at = $4"
    " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING status";
static const char finish_failed[] =
    "UPDATE jobs SET status = CASE WHEN cancel_requested <> 0 THEN 'cancelled'"
    "   WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,"
    " last_error = $5, run_after = $4 + $6, lease_owner = NULL, lease_expires_at = NULL,"
    " updated_at = $4"
    " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING status";
/* A sleep or wait that ends an attempt cancelled meanwhile ends the job. */
#define OR_CANCELLED(status)                                                                       \
    " status = CASE WHEN cancel_requested <> 0 THEN 'cancelled' ELSE '" status "' END,"            \
    " last_error = CASE WHEN cancel_requested <> 0 THEN 'cancelled' ELSE last_error END,"
static const char finish_sleeping[] =
    "UPDATE jobs SET" OR_CANCELLED("sleeping") " attempts = attempts - 1, run_after = $5,"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = $4"
    " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING status";
/* $5 when due without the event, $6 the event. */
static const char finish_waiting[] =
    "UPDATE jobs SET" OR_CANCELLED("waiting") " attempts = attempts - 1, wait_event = $6,"
    " run_after = CASE WHEN EXISTS (SELECT 1 FROM job_events AS e WHERE e.principal ="
    "   jobs.principal AND e.name = $6 AND e.created_at >= jobs.created_at) THEN $4 ELSE $5 END,"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = $4"
    " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING status";
static const char finish_cancelled[] =
    "UPDATE jobs SET status = 'cancelled', last_error = $5, lease_owner = NULL,"
    " lease_expires_at = NULL, updated_at = $4"
    " WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING status";

/* The end's statement (in a transaction of the caller's, or on its own);
 * STORE_ECONFLICT when the attempt no longer holds the job. */
static int finish_within(store *store, const char *id, int64_t attempt,
                         store_job_outcome outcome, const char *result_json, const char *message,
                         int64_t retry_delay_ms, int64_t until, const char *event,
                         char status[STORE_STATUS_SIZE], char *error) {
    int64_t now = store_time(store);
    store_value node = TEXT(store_node(store));
    first_row row = {0};
    const char *text = message ? message : "";
    int result;
    switch (outcome) {
    case STORE_JOB_SUCCEEDED:
        result = RUN(store, finish_succeeded, collect_first, &row, error, TEXT(id), node,
                     INTEGER(attempt), INTEGER(now), TEXT(result_json ? result_json : "null"));
        break;
    case STORE_JOB_FAILED:
        result = RUN(store, finish_failed, collect_first, &row, error, TEXT(id), node,
                     INTEGER(attempt), INTEGER(now), TEXT(text),
                     INTEGER(retry_delay_ms > 0 ? retry_delay_ms : 0));
        break;
    case STORE_JOB_SLEEPING:
        result = RUN(store, finish_sleeping, collect_first, &row, error, TEXT(id), node,
                     INTEGER(attempt), INTEGER(now), INTEGER(until));
        break;
    case STORE_JOB_WAITING: {
        int64_t due = until > 0 && until < now + WAIT_RECHECK_MS ? until : now + WAIT_RECHECK_MS;
        result = RUN(store, finish_waiting, collect_first, &row, error, TEXT(id), node,
                     INTEGER(attempt), INTEGER(now), INTEGER(due), TEXT(event));
        break;
    }
    case STORE_JOB_CANCELLED:
        result = RUN(store, finish_cancelled, collect_first, &row, error, TEXT(id), node,
                     INTEGER(attempt), INTEGER(now), TEXT(text[0] ? text : "cancelled"));
        break;
    default:
        result = store_fail(error, CAP_EINVAL, "unknown outcome");
    }
    free(row.long_text);
    if (result == CAP_OK && !row.rows)
        return store_fail(error, STORE_ECONFLICT,
                    "job %s: attempt %lld no longer holds it; its end is not recorded", id,
                    (long long)attempt);
    if (result == CAP_OK && status) snprintf(status, STORE_STATUS_SIZE, "%.31s", row.text);
    return result;
}

static int check_finish(const char *id, store_job_outcome outcome, const char *event,
                        char *error) {
    int result = store_check_name(id, "job id", 0, error);
    if (result == CAP_OK && outcome == STORE_JOB_WAITING)
        result = store_check_name(event, "event name", 0, error);
    return result;
}

int store_job_finish(store *store, const char *id, int64_t attempt, store_job_outcome outcome,
                     const char *result_json, const char *message, int64_t retry_delay_ms,
                     int64_t until, const char *event, char status[STORE_STATUS_SIZE],
                     char *error) {
    if (status) status[0] = '\0';
    int result = check_finish(id, outcome, event, error);
    if (result != CAP_OK) return result;
    return finish_within(store, id, attempt, outcome, result_json, message, retry_delay_ms, until,
                         event, status, error);
}

int store_job_commit_batch(store *store, store_job_batch_item *items, size_t count,
                           const char *queue, char *error) {
    int wanted = 0;
    for (size_t i = 0; i < count; i++) {
        items[i].ended = CAP_OK;
        items[i].status[0] = '\0';
        items[i].claimed = 0;
        memset(&items[i].next, 0, sizeof items[i].next);
        wanted += items[i].want_next != 0;
    }
    int result = CAP_OK;
    int64_t swept = 0; /* the time of this transaction's sweep; 0: none */
    for (size_t i = 0; result == CAP_OK && i < count; i++)
        if (items[i].id) result = check_finish(items[i].id, items[i].outcome, items[i].event, error);
    if (result != CAP_OK) return result;
    if ((result = store_internal_write_begin(store, error)) != CAP_OK) return result;
    for (size_t i = 0; result == CAP_OK && i < count; i++) {
        store_job_batch_item *item = &items[i];
        if (!item->id) continue;
        char refused[CAP_ERROR_SIZE];
        /* A refusal is a statement that matched no row: the transaction
         * goes on for the others. */
        int ended = finish_within(store, item->id, item->attempt, item->outcome,
                                  item->result_json, item->message, item->retry_delay_ms,
                                  item->until, item->event, item->status, refused);
        if (ended == STORE_ECONFLICT) {
            item->ended = STORE_ECONFLICT;
        } else if (ended != CAP_OK) {
            result = ended;
            if (error) snprintf(error, CAP_ERROR_SIZE, "%s", refused);
        }
    }
    if (result == CAP_OK && wanted) {
        const store_backend *backend = store_internal_backend(store);
        int64_t now = store_time(store);
        int64_t *swept_at = store_internal_jobs_swept_at(store);
        /* Also when the clock went back (another node's, a test's). */
        if (*swept_at == 0 || now - *swept_at >= JOB_SWEEP_INTERVAL_MS || now < *swept_at) {
            if (backend->row_locks)
                result = RUN(store, job_sweep_lock, NULL, NULL, error, INTEGER(now));
            if (result == CAP_OK) result = RUN(store, job_sweep, NULL, NULL, error, INTEGER(now));
            if (result == CAP_OK) swept = now;
        }
        if (result == CAP_OK && backend->row_locks)
            result = store_internal_execute(store, job_queues_lock, NULL, 0, NULL, NULL, error);
        /* One pick per claim, each seeing the claims before it: a queue's
         * limit holds inside the batch too. */
        for (size_t i = 0; result == CAP_OK && i < count; i++) {
            store_job_batch_item *item = &items[i];
            if (!item->want_next) continue;
            one_job picked = {&item->next, 0};
            result = RUN(store, backend->row_locks ? job_claim_locking : job_claim_sqlite,
                         read_one_job, &picked, error, INTEGER(now), TEXT(store_node(store)),
                         TEXT(queue ? queue : ""));
            item->claimed = picked.found > 0;
            if (!picked.found) break; /* none due: the rest would find none either */
        }
    }
    result = store_internal_write_end(store, result, error);
    if (result == CAP_OK && swept) *store_internal_jobs_swept_at(store) = swept;
    if (result != CAP_OK)
        for (size_t i = 0; i < count; i++) {
            items[i].status[0] = '\0';
            items[i].claimed = 0;
            store_job_clear(&items[i].next);
        }
    return result;
}

/* --- cancelling, events, limits ---------------------------------------------------- */

static const char job_cancel[] =
    "UPDATE jobs SET cancel_requested = 1, updated_at = $2,"
    " status = CASE WHEN status = 'running' THEN status ELSE 'cancelled' END,"
    " last_error = CASE WHEN status = 'running' THEN last_error ELSE 'cancelled' END"
    " WHERE id = $1 AND status IN ('queued', 'running', 'sleeping', 'waiting', 'failed')"
    " RETURNING status";

int store_job_cancel(store *store, const char *id, const char *principal,
                     char status[STORE_STATUS_SIZE], char *error) {
    status[0] = '\0';
    store_job job;
    int result = store_job_get(store, id, principal, &job, error);
    if (result != CAP_OK) return result;
    store_job_clear(&job);
    first_row row = {0};
    result = RUN(store, job_cancel, collect_first, &row, error, TEXT(id),
                 INTEGER(store_time(store)));
    free(row.long_text);
    if (result != CAP_OK) return result;
    if (!row.rows) {
        result = store_job_get(store, id, NULL, &job, error);
        if (result != CAP_OK) return result;
        snprintf(status, STORE_STATUS_SIZE, "%.31s", job.status);
        store_job_clear(&job);
        return store_fail(error, STORE_ECONFLICT, "job %s has ended already (%s)", id, status);
    }
    snprintf(status, STORE_STATUS_SIZE, "%.31s", row.text);
    return CAP_OK;
}

static const char event_insert[] =
    "INSERT INTO job_events (principal, name, payload, created_at) VALUES ($1, $2, $3, $4)";
static const char event_wake[] =
    "UPDATE jobs SET run_after = $3, updated_at = $3"
    " WHERE principal = $1 AND status = 'waiting' AND wait_event = $2 RETURNING id";
static const char event_select[] =
    "SELECT payload FROM job_events WHERE principal = $1 AND name = $2 AND created_at >= $3"
    " ORDER BY id LIMIT 1";

int store_job_emit(store *store, const char *principal, const char *name,
                   const char *payload_json, int64_t *woken, char *error) {
    if (woken) *woken = 0;
    int result = store_check_name(principal ? principal : "", "principal", 1, error);
    if (result == CAP_OK) result = store_check_name(name, "event name", 0, error);
    if (result != CAP_OK) return result;
    if ((result = store_internal_write_begin(store, error)) != CAP_OK) return result;
    int64_t now = store_time(store);
    first_row rows = {0};
    result = RUN(store, event_insert, NULL, NULL, error, TEXT(principal ? principal : ""),
                 TEXT(name), TEXT(payload_json ? payload_json : "null"), INTEGER(now));
    if (result == CAP_OK)
        result = RUN(store, event_wake, collect_first, &rows, error,
                     TEXT(principal ? principal : ""), TEXT(name), INTEGER(now));
    if (result == CAP_OK && rows.rows) result = notify_runners(store, error);
    free(rows.long_text);
    result = store_internal_write_end(store, result, error);
    if (result == CAP_OK && woken) *woken = rows.rows;
    return result;
}

int store_job_event_find(store *store, const char *principal, const char *name, int64_t since,
                         char **payload, int *found, char *error) {
    *payload = NULL;
    *found = 0;
    int result = store_check_name(name, "event name", 0, error);
    if (result != CAP_OK) return result;
    first_row row = {0};
    result = RUN(store, event_select, collect_first, &row, error,
                 TEXT(principal ? principal : ""), TEXT(name), INTEGER(since));
    if (result == CAP_OK && row.rows && !row.long_text)
        result = store_fail(error, CAP_ENOMEM, "out of memory");
    if (result != CAP_OK) {
        free(row.long_text);
        return result;
    }
    *found = row.rows > 0;
    *payload = row.long_text;
    return CAP_OK;
}

static const char queue_limit_set[] =
    "INSERT INTO job_queues (name, concurrency) VALUES ($1, $2)"
    " ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency";
static const char queue_limit_remove[] = "DELETE FROM job_queues WHERE name = $1";

int store_job_set_queue_limit(store *store, const char *queue, int64_t concurrency,
                              char *error) {
    int result = store_check_name(queue, "queue", 0, error);
    if (result == CAP_OK && concurrency < 0)
        result = store_fail(error, CAP_EINVAL, "a queue's limit is 0 (none) or more");
    if (result != CAP_OK) return result;
    return concurrency ? RUN(store, queue_limit_set, NULL, NULL, error, TEXT(queue),
                             INTEGER(concurrency))
                       : RUN(store, queue_limit_remove, NULL, NULL, error, TEXT(queue));
}

/* --- pruning ------------------------------------------------------------------------ */

#define FINISHED "('succeeded', 'dead', 'cancelled')"
/* $1 the cut-off, $2 the batch.  The steps of the oldest finished jobs
 * first, then those jobs: a job is taken only once it has no steps left,
 * so a job picked by the second statement but not the first (another node
 * pruned in between, PostgreSQL) keeps its steps and waits for a later
 * round rather than leaving them behind. */
static const char prune_steps[] =
    "DELETE FROM job_steps WHERE job IN (SELECT id FROM jobs WHERE status IN " FINISHED
    " AND updated_at < $1 ORDER BY updated_at LIMIT $2)";
static const char prune_jobs[] =
    "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs AS j WHERE j.status IN " FINISHED
    " AND j.updated_at < $1 AND NOT EXISTS (SELECT 1 FROM job_steps AS s WHERE s.job = j.id)"
    " ORDER BY j.updated_at LIMIT $2) RETURNING 1";
static const char prune_events[] =
    "DELETE FROM job_events WHERE id IN (SELECT e.id FROM job_events AS e WHERE e.created_at < $1"
    " AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.principal = e.principal"
    " AND j.created_at <= e.created_at AND j.status NOT IN " FINISHED ")"
    " ORDER BY e.id LIMIT $2) RETURNING 1";

int store_job_prune(store *store, int64_t retention_ms, int64_t batch, int64_t *jobs,
                    int64_t *events, char *error) {
    if (jobs) *jobs = 0;
    if (events) *events = 0;
    if (retention_ms < 0 || batch < 1)
        return store_fail(error, CAP_EINVAL, "pruning needs a retention >= 0 and a batch >= 1");
    int result = store_internal_write_begin(store, error);
    if (result != CAP_OK) return result;
    int64_t cutoff = store_time(store) - retention_ms;
    first_row pruned_jobs = {0}, pruned_events = {0};
    result = RUN(store, prune_steps, NULL, NULL, error, INTEGER(cutoff), INTEGER(batch));
    if (result == CAP_OK)
        result = RUN(store, prune_jobs, collect_first, &pruned_jobs, error, INTEGER(cutoff),
                     INTEGER(batch));
    if (result == CAP_OK)
        result = RUN(store, prune_events, collect_first, &pruned_events, error, INTEGER(cutoff),
                     INTEGER(batch));
    free(pruned_jobs.long_text);
    free(pruned_events.long_text);
    result = store_internal_write_end(store, result, error);
    if (result == CAP_OK && jobs) *jobs = pruned_jobs.rows;
    if (result == CAP_OK && events) *events = pruned_events.rows;
    return result;
}
