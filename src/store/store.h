/*
 * store.h — the durable store: sessions, their calls, their snapshots and the
 * content-addressed blobs the snapshots are made of (docs/store.md).
 *
 * A store is opened from a URL: `sqlite:PATH`, or `postgres://...` /
 * `postgresql://...` (any libpq URL).  Every operation below is written once,
 * in store.c, as SQL text run through a backend (backend.h): a backend is a
 * struct of function pointers that opens a connection, runs one statement
 * with parameters, and begins, commits or rolls back a transaction.
 *
 * Invariants:
 * - Every write is one transaction: it happens whole or not at all.  In
 *   particular store_call_finish commits a call's result together with the
 *   snapshot taken after it, so a result the client saw is never lost and
 *   never refers to a state that was not saved.
 * - Blobs are keyed by the SHA-256 of their raw bytes and kept zstd
 *   compressed; the same page saved by 100 sessions is stored once.  Every
 *   read decompresses and re-hashes: a blob whose bytes changed on disk is
 *   STORE_ECORRUPT, never wrong data.
 * - A blob lives as long as a snapshot page references it; store_gc deletes
 *   the others.  A session keeps only its latest snapshot.
 * - Every store handle is a node (store_node) with a lease, renewed by
 *   store_renew.  A node's running calls and live sessions name it; when its
 *   lease has expired, the next sweep (any node's store_open or store_renew)
 *   marks its running calls `interrupted` and parks its live sessions.
 *   store_close gives the lease up at once.
 * - An SQLite store is owned by one process, through one handle, at a time
 *   (a lock next to the database that dies with the process and is not
 *   inherited by its children): at open every other node is dead, so every
 *   call left `running` is marked `interrupted` and every `live` session
 *   `parked`.  A PostgreSQL store is shared by any number of nodes: at open
 *   only what nodes with an expired lease left is recovered.
 * - A store handle is used by one thread at a time.
 * - Errors are a CAP_* or STORE_E* code and, when `error` is not NULL, a
 *   message in a buffer of CAP_ERROR_SIZE bytes.  Nothing exits or prints.
 * - Times are milliseconds since the Unix epoch (the store's clock).
 */
#ifndef CAPSULE_STORE_H
#define CAPSULE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "capsule.h"

/* Error codes beyond capsule.h's CAP_OK, CAP_EINVAL, CAP_ENOMEM, CAP_EIO. */
enum {
    STORE_ENOTFOUND = 64, /* no such session, call, snapshot or blob */
    STORE_EEXIST,         /* a session with this id exists already */
    STORE_ECONFLICT,      /* an idempotency key reused for another request; a call not running */
    STORE_EBUSY,          /* locked by another process, or the keyed call is still running */
    STORE_ECORRUPT,       /* the database file or a blob fails its checks */
    STORE_EQUOTA,         /* the blob quota cannot be met even after expiring parked sessions */
    STORE_EVERSION,       /* the database's schema is newer than this program */
    STORE_EMOVED,         /* the session is live on another node now (a call cannot begin) */
};

#define STORE_ID_SIZE 129          /* session ids, principals, keys: at most 128 bytes */
#define STORE_STATUS_SIZE 32       /* a call's status: "running", "success", ... */
#define STORE_HASH_SIZE 32         /* SHA-256 */
#define STORE_BLOB_MAX (64u << 20) /* largest blob (raw bytes) put or read */

typedef struct store store;

typedef enum {
    STORE_SESSION_LIVE = 0,    /* a worker holds it */
    STORE_SESSION_PARKED = 1,  /* only its snapshot: the next call restores it */
    STORE_SESSION_EXPIRED = 2, /* its snapshot was dropped (expiry or quota); calls remain */
} store_session_status;

typedef struct store_session {
    char id[STORE_ID_SIZE];
    char principal[STORE_ID_SIZE]; /* who owns it ("" for nobody in particular) */
    store_session_status status;
    int64_t created_at;
    int64_t last_used_at;
    int64_t ttl_ms;          /* idle time to expiry; 0: never expires */
    int64_t expires_at;      /* last_used_at + ttl_ms; 0: never */
    int64_t latest_snapshot; /* 0: none yet */
    int64_t call_count;      /* calls begun so far (the last seq) */
    char owner[STORE_ID_SIZE]; /* the node holding it live ("" when not live) */
    int64_t epoch;           /* how many times it was claimed (store_session_claim) */
} store_session;

/* One call of a session.  `result` is malloc'd: store_call_clear frees it. */
typedef struct store_call {
    char session[STORE_ID_SIZE];
    int64_t seq;                  /* 1, 2, ... per session */
    char idempotency_key[STORE_ID_SIZE]; /* "" for none */
    char status[STORE_STATUS_SIZE]; /* "running", "interrupted", or the caller's finish status */
    uint8_t request_hash[STORE_HASH_SIZE];
    int has_request_hash;
    char *result;                 /* JSON text; NULL while running or interrupted */
    int64_t started_at;
    int64_t finished_at;          /* 0 while running */
} store_call;

/* A page of a snapshot being written: either its bytes (`data`, exactly the
 * snapshot's page_size; with `hash` too when the caller hashed them already,
 * which the store then trusts) or, with data NULL, the hash of a blob already
 * in the store (a page unchanged since an earlier snapshot). */
typedef struct store_page {
    uint32_t index;       /* page number in linear memory */
    const void *data;
    const uint8_t *hash;  /* STORE_HASH_SIZE bytes, when data is NULL */
} store_page;

/* What a snapshot is made of; the store does not interpret the manifest. */
typedef struct store_snapshot_data {
    const char *build_id;   /* python.wasm build the pages belong to */
    const char *manifest;   /* JSON, validated by the caller */
    uint32_t page_size;     /* bytes per page, 512 .. STORE_BLOB_MAX */
    const store_page *pages;
    size_t page_count;
} store_snapshot_data;

/* A stored snapshot: store_snapshot_clear frees manifest and pages. */
typedef struct store_snapshot {
    int64_t id;
    char session[STORE_ID_SIZE];
    int64_t call_seq;       /* the call after which it was taken; 0: none (fork) */
    char build_id[STORE_ID_SIZE];
    uint32_t page_size;
    char *manifest;
    int64_t created_at;
    size_t page_count;
    struct store_page_reference {
        uint32_t index;
        uint8_t hash[STORE_HASH_SIZE];
    } *pages;               /* in index order */
} store_snapshot;

typedef struct store_usage {
    uint64_t blob_bytes;    /* compressed bytes of all blobs: what the quota counts */
    uint64_t blob_count;
    uint64_t raw_bytes;     /* their uncompressed size */
    int64_t sessions;       /* rows, whatever their status */
} store_usage;

/* --- opening --------------------------------------------------------------------- */

/* Opens (creating if needed) the store at `url`, brings its schema up to
 * date (each migration in its own transaction), joins it as a new node with
 * a lease, and recovers what dead nodes left (SQLite: every other node is
 * dead; PostgreSQL: those whose lease expired).  Fails with STORE_ECORRUPT
 * for a file that is not a database, STORE_EVERSION for a newer schema,
 * STORE_EBUSY when another process owns an SQLite store, CAP_EIO when a
 * PostgreSQL server cannot be reached or refuses (libpq's reason in the
 * message). */
int store_open(const char *url, store **out, char *error);

/* Closes the handle; its node gives its lease up, so what it leaves running
 * is recovered by the next sweep.  NULL is fine. */
void store_close(store *store);

/* Calls marked `interrupted` by this open's recovery. */
int64_t store_recovered_calls(const store *store);

/* This handle's node id: "host:pid:random", unique among the store's users. */
const char *store_node(const store *store);

/* How long the node's lease lasts after each renewal; the default (and
 * lease_ms <= 0) is 30 s.  Takes effect at the next store_renew. */
void store_set_lease(store *store, int64_t lease_ms);

/* Renews this node's lease (now + lease) and sweeps: the running calls of
 * nodes whose lease has expired become `interrupted`, their live sessions
 * `parked`; *recovered (may be NULL) receives how many calls.  To be called
 * well within every lease (e.g. every lease / 3), by host code, never on
 * the guest's behalf; the handle is still used by one thread at a time (a
 * heartbeat thread takes the lock its other users take).  If this
 * node's own lease had expired, others may have recovered its work: its own
 * running calls are interrupted and its sessions parked as well, the lease
 * is taken again, and the result is STORE_ECONFLICT: stop the workers of
 * those calls and sessions (their commits would be refused anyway). */
int store_renew(store *store, int64_t *recovered, char *error);

/* The schema version the database is at (after migrations). */
int store_schema_version(const store *store);

/* Bounds the compressed bytes of all blobs; 0 (the default) for no bound. */
void store_set_quota(store *store, uint64_t blob_bytes);

/* Replaces the clock (milliseconds since the epoch); for tests. NULL restores it. */
void store_set_clock(store *store, int64_t (*now_ms)(void *context), void *context);

int store_get_usage(store *store, store_usage *out, char *error);

/* Runs the backend's full integrity check (SQLite: PRAGMA integrity_check)
 * and checks the usage counters against the blobs: CAP_OK or STORE_ECORRUPT. */
int store_check(store *store, char *error);

/* --- sessions -------------------------------------------------------------------- */

/* A new live session with no snapshot; STORE_EEXIST if the id is taken
 * (whatever its status).  ttl_ms 0: never expires. */
int store_session_create(store *store, const char *id, const char *principal, int64_t ttl_ms,
                         char *error);
int store_session_get(store *store, const char *id, store_session *out, char *error);

/* Marks the session used now: last_used_at and expires_at move forward. */
int store_session_touch(store *store, const char *id, char *error);

/* live <-> parked.  An expired session cannot come back (STORE_ECONFLICT).
 * Parking a session that another node has claimed since changes nothing
 * (CAP_OK): a node only gives up what it holds. */
int store_session_set_status(store *store, const char *id, store_session_status status,
                             char *error);

/* Takes the session for this node (several nodes on one PostgreSQL store,
 * docs/store.md): it becomes live, owned by this node, and its epoch grows
 * by one, returned in *epoch (may be NULL).  Possible when the session is
 * parked, or live on a node whose lease has expired (that node's running
 * calls of it are interrupted); when it is live on this node already,
 * nothing changes and *epoch is its epoch.  Live on another node whose
 * lease holds: STORE_EBUSY naming it.  Of nodes claiming at once, exactly
 * one gets it.  Calls are fenced by the epoch: a call begun before the
 * session was claimed cannot be finished (STORE_ECONFLICT), so a node cut
 * off past its lease cannot commit over the new owner.  Then restore the
 * latest snapshot. */
int store_session_claim(store *store, const char *id, int64_t *epoch, char *error);

/* Moving a session that is live on another node whose lease holds
 * (docs/scale-out.md, "Moving a live session").  The asker records the
 * request in the session's row (park_requested_by = this node; durable, so
 * the owner finds it at its next renewal even if the notification is
 * lost) and, on PostgreSQL, NOTIFYs the owner's channel
 * (store_park_channel) at the commit.  *owner receives the node asked
 * ("" when the session is not live on another node: nothing was asked,
 * claim it).  Then claim until it succeeds or the caller's patience ends. */
int store_session_request_park(store *store, const char *id, char owner[STORE_ID_SIZE],
                               char *error);

/* The owner's side, for its sessions that were asked for and have no call
 * running: each is parked (status parked, no owner, request cleared) in
 * one transaction; `parked` (may be NULL) is called with each id after the
 * commit, *count receives how many. */
int store_sessions_park_requested(store *store, void (*parked)(void *context, const char *id),
                                  void *context, int64_t *count, char *error);

/* After a call of session `id` committed: parks it if another node asked
 * for it and it is still this node's; *released = 1 then (drop its
 * worker), 0 otherwise. */
int store_session_release_if_requested(store *store, const char *id, int *released,
                                       char *error);

/* The channel a node LISTENs on for park requests: "capsule_park_" and a
 * hash of its id (an id may be longer than PostgreSQL's 63-byte names). */
#define STORE_PARK_CHANNEL_SIZE 40
void store_park_channel(const char *node, char channel[STORE_PARK_CHANNEL_SIZE]);

/* Deletes the session, its calls and its snapshots; blobs wait for store_gc. */
int store_session_delete(store *store, const char *id, char *error);

/* A new parked session `id` whose latest snapshot is a copy of `source`'s
 * (pages shared, not copied).  STORE_ENOTFOUND if source has no snapshot. */
int store_session_fork(store *store, const char *source, const char *id, const char *principal,
                       int64_t ttl_ms, char *error);

/* --- calls ----------------------------------------------------------------------- */

/* Begins a call of a live or parked session: a new row `running` with the
 * next seq, returned in *out (*replayed = 0).  With an idempotency key
 * already used in this session:
 * - by a finished call with the same request hash: *out is that call, with
 *   its stored result, and *replayed = 1: do not run it again;
 * - by a call still running: STORE_EBUSY;
 * - with another request hash: STORE_ECONFLICT;
 * - by an interrupted call: the key moves to a new call, which runs.
 * key and request_hash may be NULL.  Free *out with store_call_clear. */
int store_call_begin(store *store, const char *session, const char *key,
                     const uint8_t request_hash[STORE_HASH_SIZE], store_call *out, int *replayed,
                     char *error);

/* Finishes a running call with `status` (the run's outcome, e.g. "success";
 * not "running" or "interrupted") and its result JSON, and, when snapshot is
 * not NULL, writes the snapshot taken after it as the session's latest (older
 * ones are dropped): all in one transaction.  If the blobs exceed the quota,
 * parked sessions are expired oldest first (never this one) in the same
 * transaction; if that is not enough, STORE_EQUOTA and nothing is written.
 * *snapshot_id (may be NULL) receives the new snapshot's id, or 0. */
int store_call_finish(store *store, const char *session, int64_t seq, const char *status,
                      const char *result_json, const store_snapshot_data *snapshot,
                      int64_t *snapshot_id, char *error);

int store_call_get(store *store, const char *session, int64_t seq, store_call *out, char *error);

/* Calls with seq > after_seq, in order, at most `limit` (0: all).  Free
 * with store_call_list_free. */
int store_call_list(store *store, const char *session, int64_t after_seq, size_t limit,
                    store_call **calls, size_t *count, char *error);
void store_call_clear(store_call *call);
void store_call_list_free(store_call *calls, size_t count);

/* --- snapshots ------------------------------------------------------------------- */

/* Writes a snapshot outside a call (e.g. when parking after a state change
 * that was not a call) as the session's latest; same rules as in
 * store_call_finish. */
int store_snapshot_write(store *store, const char *session, const store_snapshot_data *snapshot,
                         int64_t *snapshot_id, char *error);

/* The session's latest snapshot, with its page list; STORE_ENOTFOUND if none. */
int store_snapshot_latest(store *store, const char *session, store_snapshot *out, char *error);
void store_snapshot_clear(store_snapshot *snapshot);

/* Calls page(context, index, bytes, page_size) for each page of a snapshot in
 * index order, each verified (decompressed, re-hashed) before it is passed;
 * `bytes` is valid during the call only, and `page` must not call the store.
 * For many pages, `page` is called on a thread of the store's own (one call
 * at a time, all done before this returns) while the caller's thread reads
 * the next ones: it must not depend on the calling thread.
 * A non-zero return of `page` stops the walk and is returned.  A bad page is
 * STORE_ECORRUPT, possibly after earlier pages were passed: restore into
 * memory that is thrown away on failure. */
int store_snapshot_read_pages(store *store, int64_t snapshot_id,
                              int (*page)(void *context, uint32_t index, const void *bytes,
                                          size_t size),
                              void *context, char *error);

/* The same, reading (and verifying) only the pages for which want(context,
 * index, hash) is non-zero: a caller that has a page's content already
 * (its hash says so) skips it.  want may be NULL: every page.  Here `page`
 * may get several pages in one call: `size` is a multiple of the page size,
 * the pages index, index + 1, … one after the other in `bytes`. */
int store_snapshot_read_wanted_pages(store *store, int64_t snapshot_id,
                                     int (*want)(void *context, uint32_t index,
                                                 const uint8_t *hash),
                                     int (*page)(void *context, uint32_t index, const void *bytes,
                                                 size_t size),
                                     void *context, char *error);

/* --- blobs ----------------------------------------------------------------------- */

/* mkdir -p, each directory it makes 0700: private to the user, as a store,
 * its page files (a session's memory) and start images (a hash secret)
 * must be.  0, or -1 with errno set when one cannot be made. */
int store_make_directory(const char *directory);

/* SHA-256 of `size` bytes. */
void store_hash(const void *data, size_t size, uint8_t hash[STORE_HASH_SIZE]);

/* Stores `size` bytes (at most STORE_BLOB_MAX) under their hash, written to
 * `hash`; storing bytes already there is free.  A blob no snapshot references
 * is removed by the next store_gc (or a commit that needs room), so snapshot
 * pages go through store_call_finish, not here.  STORE_EQUOTA if the blobs
 * are over the quota afterwards (nothing is expired to make room). */
int store_blob_put(store *store, const void *data, size_t size, uint8_t hash[STORE_HASH_SIZE],
                   char *error);

/* The blob's bytes in a malloc'd buffer (*data, *size), verified;
 * STORE_ENOTFOUND if absent, STORE_ECORRUPT if its bytes do not decompress
 * to exactly what was hashed. */
int store_blob_get(store *store, const uint8_t hash[STORE_HASH_SIZE], void **data, size_t *size,
                   char *error);

/* --- expiry and collection ------------------------------------------------------- */

/* Expires parked sessions whose expires_at has passed (their snapshots are
 * dropped, their calls kept; blobs no snapshot references any more are
 * deleted in the same transaction); *expired (may be NULL) receives how
 * many, and once committed each(context, id) (may be NULL) is called for
 * each of them, e.g. to drop what a node keeps of them besides the store. */
int store_expire(store *store, int64_t *expired, void (*each)(void *context, const char *id),
                 void *context, char *error);

/* Gives each(context, id) the sessions that commits through this handle
 * expired to make room under the quota (store_call_finish,
 * store_snapshot_write) since the last call, oldest expiry first, then
 * forgets them: what a node keeps of them besides the store can go too. */
void store_take_expired(store *store, void (*each)(void *context, const char *id),
                        void *context);

/* The store's clock: milliseconds since the epoch (store_set_clock's). */
int64_t store_time(store *store);

/* Deletes blobs no snapshot page references; counts may be NULL. */
int store_gc(store *store, uint64_t *freed_blobs, uint64_t *freed_bytes, char *error);

/* --- jobs (jobs.c; docs/store.md, "Jobs") ------------------------------------------ */

/* A job is Python code run to completion in the background by whichever
 * node claims it.  Every attempt runs the code from the top; the results of
 * its completed steps are cached in job_steps, so a step that committed is
 * never run again (exactly once), while code between steps may run again
 * after a crash (at least once).  Statuses:
 *   queued     waiting for its first attempt (run_after: when it is due)
 *   running    an attempt holds it: lease_owner is the node, fenced by
 *              (lease_owner, attempts); a dead owner's attempt is swept at
 *              the next claim (any node's)
 *   sleeping   capsule.sleep: due again at run_after
 *   waiting    capsule.await_event: due when the event is emitted, or at
 *              run_after (its timeout, or a re-check)
 *   failed     the last attempt failed; a retry is due at run_after
 *   succeeded, dead (max_attempts used up; last_error says why), cancelled
 * A suspension (sleeping, waiting) is not a failed attempt: `attempts`
 * counts the attempts that ended in a failure or are running. */
#define STORE_JOB_QUEUE_DEFAULT "default"
#define STORE_JOB_GRACE_MS 60000 /* a running attempt's lease: its timeout and this */

typedef struct store_job_spec {
    const char *principal;       /* who owns it ("" for nobody in particular) */
    const char *queue;           /* NULL or "": STORE_JOB_QUEUE_DEFAULT */
    const char *code;
    const char *idempotency_key; /* NULL: none; else unique per principal */
    int64_t max_attempts;        /* >= 1 */
    int64_t backoff_ms;          /* retry n waits backoff_ms * 2^(n-1) */
    int64_t timeout_ms;          /* one attempt's wall-clock limit, > 0 */
    int64_t run_after;           /* 0: now */
} store_job_spec;

/* A job as stored; store_job_clear frees code, last_error and result. */
typedef struct store_job {
    char id[STORE_ID_SIZE];
    char principal[STORE_ID_SIZE];
    char queue[STORE_ID_SIZE];
    char idempotency_key[STORE_ID_SIZE]; /* "" for none */
    char status[STORE_STATUS_SIZE];
    int64_t attempts, max_attempts, backoff_ms, timeout_ms;
    int64_t run_after;
    char lease_owner[STORE_ID_SIZE];     /* the node running it ("" when none) */
    int64_t lease_expires_at;
    int cancel_requested;
    char wait_event[STORE_ID_SIZE];      /* what a waiting job waits for */
    char *code;                          /* only from store_job_get and store_job_claim */
    char *last_error;                    /* NULL: none */
    char *result;                        /* JSON; NULL until succeeded */
    int64_t created_at, updated_at;
    /* The time it waited, due, for a runner: the sum over its claims of
     * (claim time - run_after); from store_job_get and store_job_claim.  A
     * claim's own wait is updated_at - run_after of the claimed job. */
    int64_t claim_wait_ms;
} store_job;

/* How an attempt ended (store_job_finish). */
typedef enum {
    STORE_JOB_SUCCEEDED,  /* result_json is the job's result */
    STORE_JOB_FAILED,     /* `message` the error: retried after retry_delay_ms, or dead */
    STORE_JOB_SLEEPING,   /* due again at `until` */
    STORE_JOB_WAITING,    /* for event `event`, or until `until` */
    STORE_JOB_CANCELLED,  /* it saw its cancellation */
} store_job_outcome;

/* A new job, `queued`, its id (32 hex digits) in out->id.  With an
 * idempotency key the principal used before, nothing is added: *out is
 * that job and *existing = 1 (STORE_ECONFLICT when its code differs).
 * out may not be NULL; free it with store_job_clear. */
int store_job_submit(store *store, const store_job_spec *spec, store_job *out, int *existing,
                     char *error);

/* The job `id` (with its code).  With principal not NULL, a job of another
 * principal is STORE_ENOTFOUND, like one that does not exist. */
int store_job_get(store *store, const char *id, const char *principal, store_job *out,
                  char *error);

/* The principal's jobs (every principal's with NULL), newest first, those
 * in `status` only unless it is NULL or "", at most `limit` (0: 100).  Code
 * is not read.  Free with store_job_list_free. */
int store_job_list(store *store, const char *principal, const char *status, size_t limit,
                   store_job **jobs, size_t *count, char *error);
void store_job_clear(store_job *job);
void store_job_list_free(store_job *jobs, size_t count);

/* How many jobs are in each status, every principal's (for /metrics):
 * `each` is called once per status that has any, in no order; a non-zero
 * return stops and is returned. */
int store_job_counts(store *store, int (*each)(void *context, const char *status, int64_t count),
                     void *context, char *error);

/* Sweeps, then claims one due job for this node: *claimed = 1 and *out is
 * it (status running, attempts counting this one, code read).  The sweep
 * ends the attempts of nodes whose lease expired (their jobs become
 * failed, dead when out of attempts, or cancelled when asked to be), as
 * well as attempts past their own lease.  Due: queued, failed, sleeping or
 * waiting with run_after <= now, in the queue `queue` (NULL: any), in a
 * queue below its concurrency limit (store_job_set_queue_limit); oldest
 * due first.  Of nodes claiming at once each job goes to one. */
int store_job_claim(store *store, const char *queue, store_job *out, int *claimed,
                    char *error);

/* Whether attempt `attempt` of job `id` still holds it on this node (CAP_OK,
 * with *cancel_requested) or lost it (STORE_ECONFLICT: swept, cancelled
 * while queued, finished elsewhere): then stop it, it cannot commit. */
int store_job_check(store *store, const char *id, int64_t attempt, int *cancel_requested,
                    char *error);

/* The cached result (JSON, malloc'd into *result) of step `name` of job
 * `id`, *found = 0 when the step has not completed. */
int store_job_step_get(store *store, const char *id, const char *name, char **result,
                       int *found, char *error);

/* Commits step `name`'s result for attempt `attempt` (fenced as in
 * store_job_check); a step already stored keeps its first result, which
 * *stored (may be NULL; malloc'd) receives. */
int store_job_step_put(store *store, const char *id, int64_t attempt, const char *name,
                       const char *result_json, char **stored, char *error);

/* Ends attempt `attempt` (fenced: STORE_ECONFLICT when it no longer holds
 * the job).  FAILED: `message` becomes last_error; the job is `failed`,
 * due after retry_delay_ms, or `dead` when its attempts are used up, or
 * `cancelled` if that was asked.  SLEEPING / WAITING do not count as an
 * attempt; a WAITING job whose event was emitted already (since the job
 * was created) is due at once.  *status (may be NULL) receives the status
 * the job took. */
int store_job_finish(store *store, const char *id, int64_t attempt, store_job_outcome outcome,
                     const char *result_json, const char *message, int64_t retry_delay_ms,
                     int64_t until, const char *event, char status[STORE_STATUS_SIZE],
                     char *error);

/* One runner's part of a group commit (store_job_commit_batch): the end of
 * its attempt (`id` set; the fields as store_job_finish's) and/or the wish
 * for its next job (`want_next`).  The caller fills the first part; the
 * store fills the second. */
typedef struct store_job_batch_item {
    const char *id; /* NULL: no attempt to end, only a claim */
    int64_t attempt;
    store_job_outcome outcome;
    const char *result_json, *message, *event;
    int64_t retry_delay_ms, until;
    int want_next;
    /* Out: `ended` is CAP_OK when the end was recorded, STORE_ECONFLICT
     * when it was refused (the attempt no longer holds the job: nothing of
     * it written); `status` the status the job took; `claimed` = 1 and
     * `next` (the caller clears it) when a job was claimed for it. */
    int ended;
    char status[STORE_STATUS_SIZE];
    int claimed;
    store_job next;
} store_job_batch_item;

/* Group commit: the ends of several runners' attempts, then up to one
 * claim for each item that wants one (the sweep first; queue limits
 * honoured claim by claim), in ONE write transaction — one commit, one
 * fsync, for all of them.  Each claimed job gets its own attempt and lease
 * (from this transaction's time: the caller starts it at once).  A refused
 * end (its item's `ended` = STORE_ECONFLICT) does not stop the others.
 * Any other failure writes nothing and claims nothing: every item's
 * `claimed` = 0, the result is the error, and the caller may retry; a
 * result or a claim is reported only once committed.  `queue` as
 * store_job_claim's. */
int store_job_commit_batch(store *store, store_job_batch_item *items, size_t count,
                           const char *queue, char *error);

/* Cancels job `id` (of `principal`, unless NULL): one not running is
 * `cancelled` at once; a running one is marked and its attempt sees it at
 * its next step.  *status receives the status it now has.  A finished job
 * is STORE_ECONFLICT; another principal's STORE_ENOTFOUND. */
int store_job_cancel(store *store, const char *id, const char *principal,
                     char status[STORE_STATUS_SIZE], char *error);

/* Records event `name` of `principal` with its payload (JSON) and makes the
 * principal's jobs waiting for it due now; *woken (may be NULL) says how
 * many. */
int store_job_emit(store *store, const char *principal, const char *name,
                   const char *payload_json, int64_t *woken, char *error);

/* The payload of the first event `name` of `principal` emitted at or after
 * `since` (malloc'd into *payload), *found = 0 when none. */
int store_job_event_find(store *store, const char *principal, const char *name, int64_t since,
                         char **payload, int *found, char *error);

/* Waking idle runners early (listen.c).  On PostgreSQL, submits and
 * events NOTIFY this channel when they commit; a listener LISTENs on a
 * connection of its own.  A hint only: runners poll anyway. */
#define STORE_JOBS_CHANNEL "capsule_jobs"
typedef struct store_listener store_listener;
/* For a postgres:// URL a listener; for any other *out = NULL and CAP_OK
 * (nothing to listen to); CAP_EIO when the server cannot be reached. */
int store_listener_open(const char *url, store_listener **out, char *error);
/* The same on `channel` (a plain lowercase identifier) instead of the jobs'
 * one: the lease renewer's for park requests (store_park_channel). */
int store_listener_open_channel(const char *url, const char *channel, store_listener **out,
                                char *error);
/* Waits up to timeout_ms: 1 when notified, 0 when not, -1 when the
 * connection failed (the next wait reconnects). */
int store_listener_wait(store_listener *listener, int timeout_ms);
void store_listener_close(store_listener *listener);

/* At most `concurrency` jobs of `queue` run at once, on all nodes; 0
 * removes the limit. */
int store_job_set_queue_limit(store *store, const char *queue, int64_t concurrency,
                              char *error);

/* Deletes, in one write transaction, up to `batch` jobs that finished
 * (succeeded, dead, cancelled) more than `retention_ms` ago, with their
 * steps, and up to `batch` events older than that which no job can await
 * any more (no unfinished job of their principal was created at or before
 * them: a job sees only events since its submission).  *jobs and *events
 * (may be NULL) receive the counts; a full batch means more may be due. */
int store_job_prune(store *store, int64_t retention_ms, int64_t batch, int64_t *jobs,
                    int64_t *events, char *error);

/* --- tasks (the MCP Tasks extension) ----------------------------------------------- */

/* A task: a tools/call the MCP server runs in the background for a
 * principal, polled with tasks/get (docs/mcp.md, "Tasks").  The row is
 * written when the task starts (status "working", this node) and once more
 * when it ends; `payload` is then the tool result ("completed") or the
 * JSON-RPC error ("failed") as JSON text.  store_task_clear frees the
 * strings. */
typedef struct store_task {
    char id[STORE_ID_SIZE];
    char principal[STORE_ID_SIZE];
    char status[STORE_STATUS_SIZE]; /* working, completed, failed, cancelled */
    char *status_message;           /* NULL for none */
    char *payload;                  /* NULL while working, and when cancelled */
    int64_t created_at;
    int64_t updated_at;
    int64_t expires_at;             /* created_at + the TTL: gone after that */
} store_task;

/* A new task `id` of `principal`, working on this node, expiring ttl_ms
 * from now; tasks already expired are deleted in the same transaction.
 * STORE_EEXIST if the id is taken. */
int store_task_create(store *store, const char *id, const char *principal, int64_t ttl_ms,
                      char *error);

/* Ends a working task: `status` with its message and payload (either may
 * be NULL).  A task no longer working (cancelled meanwhile, or interrupted
 * by another node's recovery) keeps what it has: STORE_ECONFLICT. */
int store_task_finish(store *store, const char *id, const char *status, const char *message,
                      const char *payload, char *error);

/* The task, unexpired; STORE_ENOTFOUND otherwise.  A task still working on
 * a node that is dead (SQLite: any node but this one; PostgreSQL: one whose
 * lease expired) will never finish: it is first marked failed with
 * `interrupted_message` and `interrupted_payload`, and returned so. */
int store_task_get(store *store, const char *id, const char *interrupted_message,
                   const char *interrupted_payload, store_task *out, char *error);

void store_task_clear(store_task *task);

#endif
