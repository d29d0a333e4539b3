/*
 * sandbox.h — what the files of the sandbox's host side share (private; the
 * API is include/capsule.h).
 *
 * Who owns what, and on which thread.  A cap_config is filled in by one
 * thread before any sandbox is made from it; after that the sandboxes only
 * read it, except for three things: a mount's growth (host_used and
 * host_entries, updated with atomics, because sandboxes on several threads
 * share one config), the
 * package resolver (deps.c, which locks itself) and the images, which the
 * first cap_sandbox_new opens (the API asks for sandboxes to be created
 * before threads start).  A cap_sandbox belongs to the one
 * thread that calls cap_sandbox_run on it; only cancel_fd is touched from
 * elsewhere (cap_sandbox_cancel).  Every worker process is a child of this
 * process, and each is held in exactly one place at a time: the idle pool,
 * a session, the run in progress, or (its channel closed, only its pid left)
 * the list of exiting workers still to be reaped; whoever holds a worker
 * either hands it on or discards it.  Frames from a worker are untrusted:
 * the handler of each frame type (the dispatch table in run.c) checks every
 * field, answers on the worker's channel, and runs on the run's thread, as
 * do the caller's provider, host-function and approval callbacks.  The
 * audit log's descriptor is shared by every sandbox of a config: each line
 * is one write() with O_APPEND.  A cap_result owns every field it
 * points to.
 *
 * The files: config.c (cap_config_*), docs.c (/docs and its index), pool.c
 * (the zygote and its idle workers), session.c (workers kept between runs),
 * run.c (cap_sandbox_run: a worker's frames through one dispatch table),
 * broker.c (host directories, 'H'), provider.c (resources and fetches, 'F'
 * and 'W'), dependencies.c ('D', and compiling a new environment),
 * functions.c (host functions, 'C'), result.c (cap_result_*).  Internal
 * functions shared between them are sandbox_*.
 */
#ifndef CAP_SANDBOX_H
#define CAP_SANDBOX_H

#include "capsule.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "../deps/deps.h"
#include "../store/store.h"
#include "../vfs/vfs.h"
#include "buffer.h"
#include "zygote.h"

#define MAX_POOL 16
#define MAX_SESSIONS 256
#define EVICTED_MEMORY 64 /* evicted session ids remembered, for a clear error */
#define PARKED_MEMORY 64  /* sessions parked on another node's request, remembered */
#define DEFAULT_MEMORY (512ull << 20)
#define DEFAULT_DISK (256ull << 20)
#define DEFAULT_ENTRIES 10000 /* files and directories: scratch per run, host mounts per mount */
#define MAX_EXITING 64 /* finished workers not reaped yet */
#define MAX_IMAGES 16
#define MAX_ENV 256
#define MAX_RESOURCES 64
#define MAX_PROVIDERS 16
#define MAX_HOST_MOUNTS 16
#define MAX_ALLOWED_URLS 64
#define MAX_DOCS 256
#define MAX_ARTIFACT_BYTES (64u << 20) /* all artifacts of one run together */
#define MAX_FUNCTIONS 256
#define MAX_FUNCTION_PATTERNS 64

/* --- configuration (config.c, docs.c) ----------------------------------- */

typedef struct image_mount {
    char *host_path;
    char *guest_path;
    vfs_image *image; /* opened on first use, shared by sandboxes */
} image_mount;

struct cap_config {
    image_mount images[MAX_IMAGES]; /* [0] is the standard library */
    int image_count;
    char *env[MAX_ENV + 1];
    int env_count;
    int pool_size;
    int max_sessions;
    double session_idle_seconds;
    char *output_directory; /* NULL: GUEST_OUTPUT_DIRECTORY */
    char *start_cache;      /* start images' directory (start_image.h), or NULL */
    zygote_file docs[MAX_DOCS];
    int doc_count;
    char *resource_names[MAX_RESOURCES]; /* files of /network */
    char *resource_urls[MAX_RESOURCES];
    int resource_count;
    char *allowed_urls[MAX_ALLOWED_URLS];
    int allowed_count;
    double http_timeout;
    size_t http_max_bytes;
    struct provider {
        char *guest_path;
        cap_resource_provider callbacks;
        void *userdata;
        char *names[MAX_RESOURCES];
        int name_count;
    } providers[MAX_PROVIDERS];
    int provider_count;
    char *host_guest_paths[MAX_HOST_MOUNTS];
    int host_roots[MAX_HOST_MOUNTS]; /* O_PATH descriptors of the mounted directories */
    int host_writable[MAX_HOST_MOUNTS];
    uint64_t host_quota[MAX_HOST_MOUNTS]; /* bytes a writable mount may grow by */
    uint64_t host_used[MAX_HOST_MOUNTS];  /* growth so far (atomic: sandboxes share configs) */
    uint64_t host_entry_limit;            /* entries a writable mount may gain (each mount) */
    uint64_t host_entries[MAX_HOST_MOUNTS]; /* entries gained so far (atomic, like host_used) */
    vfs_image *time_zones; /* tzdata.img beside the stdlib image, NULL if there is none */
    int host_mount_count;
    deps_resolver *dependencies; /* NULL until a package source is added */
    /* Host functions (functions.c): the one registry a guest's call is
     * looked up in, by name. */
    struct function {
        char *name;
        char *description;      /* "" when none */
        void *schema;           /* cJSON object: the input schema */
        cap_function_fn callback;
        void *userdata;
        int needs_approval;
        char *url;              /* an HTTP function's endpoint (its userdata is the config) */
    } functions[MAX_FUNCTIONS];
    int function_count;
    char *allowed_functions[MAX_FUNCTION_PATTERNS]; /* fnmatch patterns */
    int allowed_function_count;
    char *denied_functions[MAX_FUNCTION_PATTERNS];
    int denied_function_count;
    /* Functions matching one of these need approval, as if each had been
     * marked (cap_config_require_approval_matching). */
    char *approval_patterns[MAX_FUNCTION_PATTERNS];
    int approval_pattern_count;
    int audit_fd; /* -1: no audit log; O_APPEND, one write per line */
    /* Durable sessions (durable.c): NULL without a store.  The lock is
     * held around every use of the handle. */
    store *store;
    char *store_url; /* what it was opened from (the job runners' listener) */
    struct page_files *page_files; /* this node's copies of session memory, or NULL */
    /* Restores that succeeded, [0] from the store, [1] mapped from a page
     * file, and their microseconds (atomic: for /metrics). */
    uint64_t restores[2];
    uint64_t restore_microseconds[2];
    pthread_mutex_t store_lock;
    /* The node's lease in the store is renewed by this thread, every third
     * of the lease (config.c); guarded by renew_lock. */
    pthread_t renewer;
    int renewer_started, renewer_stop;
    int64_t lease_ms;
    /* A parked session's idle time to expiry, given to the sessions made
     * while it is set (0: never); the renewer expires them (durable.c). */
    int64_t session_ttl_ms;
    pthread_mutex_t renew_lock;
    pthread_cond_t renew_wake;
    /* Sessions this node parked because another node asked for them
     * (config.c, docs/scale-out.md "Moving a live session"): the renewer
     * parks them in the store; each sandbox drops the workers it still
     * holds for them at its next run or tidy (cap_sandbox_tidy), since
     * only the sandbox's own thread touches its sessions.  A ring: the last
     * PARKED_MEMORY ids, parked_total counting every one; guarded by
     * parked_lock. */
    pthread_mutex_t parked_lock;
    char parked_ids[PARKED_MEMORY][STORE_ID_SIZE];
    uint64_t parked_total;
    /* Sessions whose worker this node dropped but could not park in the
     * store (it failed: a restarting database): the store still says live
     * here, and without this note the next call would take them for live
     * in another sandbox of this process.  Also under parked_lock. */
    char orphan_ids[PARKED_MEMORY][STORE_ID_SIZE];
    uint64_t orphan_total;
    void *jobs; /* the job runners (jobs.c), NULL until cap_jobs_start */
    int64_t job_retention_ms; /* finished jobs are pruned after this; 0: 7 days */
    void *code_mode; /* MCP servers whose tools are in the registry (code_mode.c); NULL */
    /* help (src/help/help.c): the index, built on the first search, dropped
     * when the docs or the registry change; the lock is held around every
     * use. */
    void *help_index;
    pthread_mutex_t help_lock;
    void *help_distributions; /* the installed distributions' metadata (help.c) */
    /* describe (src/help/describe.c): an OpenAI-compatible chat/completions
     * or an Anthropic messages URL, its key and model; off while the URL is
     * NULL.  describe_api: 0 (told by the URL), 1 OpenAI, 2 Anthropic. */
    char *describe_url;
    char *describe_key;
    char *describe_model;
    int describe_api;
};

/* Formats into the caller's CAP_ERROR_SIZE buffer; a NULL `error` is allowed. */
void sandbox_set_error(char *error, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Frees the documentation files (and their index) of `config`. */
void sandbox_docs_free(cap_config *config);

/* Whether `name` is a Python keyword (functions.c): such a name cannot be
 * a function's or a tool's. */
int sandbox_is_python_keyword(const char *name);

/* Starts the thread that renews the node's lease in the store, once
 * (config.c); the first durable call does. */
void sandbox_start_lease_renewal(cap_config *config);

/* Expires the parked sessions whose time has passed (store_expire) and
 * removes this node's page files of them; the caller holds store_lock.
 * Failures are left for the next turn (nothing waits for it). */
void sandbox_expire_sessions(cap_config *config);

/* Frees the functions, patterns and audit log of `config` (functions.c). */
void sandbox_functions_free(cap_config *config);

/* An upstream tool in the registry, named "SERVER.TOOL" (code_mode.c);
 * otherwise as cap_config_add_function. */
int sandbox_add_upstream_function(cap_config *config, const char *name, const char *description,
                                  const char *input_schema_json, cap_function_fn callback,
                                  void *userdata, char *error);
/* Takes `name` out of the registry (a server whose tools could not all be
 * added); nothing if there is no such function. */
void sandbox_remove_function(cap_config *config, const char *name);
/* The registry's entry for `name`, or NULL. */
const struct function *sandbox_find_function(cap_config *config, const char *name);
/* True when the allow and deny patterns grant `name`. */
int sandbox_function_granted(const cap_config *config, const char *name);
/* True when calls of `f` need approval: it was marked, or its name
 * matches an approval pattern. */
int sandbox_function_needs_approval(const cap_config *config, const struct function *f);

/* Code mode (src/functions/code_mode.c): ends the upstream connections. */
void sandbox_code_mode_free(cap_config *config);
/* The /servers tree of a new sandbox: one stub per granted upstream tool
 * and the packages' __init__.py files; 0, or -1 when out of memory.  The
 * caller frees them with sandbox_free_server_files. */
int sandbox_server_files(cap_config *config, zygote_file **files, int *count);
void sandbox_free_server_files(zygote_file *files, int count);

/* --- results (result.c) -------------------------------------------------- */

struct cap_result {
    cap_status status;
    int exit_code;
    buffer out, err;
    char *return_value;
    char *error;
    cap_artifact *artifacts; /* each field owned by the result */
    size_t artifact_count;
    char **dependencies;
    size_t dependency_count;
    char **notes;
    size_t note_count;
};

/* A result with `status` and a copy of `error` (may be NULL); NULL when out
 * of memory. */
cap_result *sandbox_result_new(cap_status status, const char *error);

/* Reads a worker's 'R' frame into `result`: how the guest ended and the
 * runner's JSON report, every field checked. */
void sandbox_parse_result(cap_result *result, const char *payload, size_t size);

/* Adds a worker's 'A' frame to the result's artifacts, counting its bytes
 * in `*artifact_bytes`: 0, -EPROTO for garbage, -EFBIG past the budget of
 * MAX_ARTIFACT_BYTES, or -ENOMEM. */
int sandbox_add_artifact(cap_result *result, const char *payload, size_t size,
                         size_t *artifact_bytes);

/* Adds a note (copied) to the result: CAP_OK or CAP_ENOMEM. */
int sandbox_result_add_note(cap_result *result, const char *note);

/* A result read back from cap_result_to_json's text (a stored call's);
 * artifacts are not in that text.  NULL when it is not such a text. */
cap_result *sandbox_result_from_json(const char *text);

/* A malloc'd message, formatted (at most 511 bytes); NULL when out of memory. */
char *sandbox_format_message(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* --- the zygote, its workers and sessions (pool.c, session.c) ------------ */

typedef struct worker {
    pid_t pid; /* a child of this process (CLONE_PARENT) */
    int fd;    /* its channel */
} worker;

/* The page hashes the host knows a durable session's worker memory by
 * (durable.c): the base's for a fresh worker, then its last snapshot's. */
typedef struct durable_pages {
    uint8_t *hashes; /* DURABLE_HASH bytes per page; malloc'd */
    uint32_t count;
    int stored;      /* the hashes are a stored snapshot's (restored or committed), so the
                        store has every blob they name; 0 for a fresh worker's base */
    /* This node's copy of the snapshot the hashes describe (page_file.h),
     * kept up to date at each commit; NULL when there is none.  A fresh
     * worker's first commit makes one (its pages are all that differ from
     * the base), which `from_base` allows. */
    struct page_file *page_file;
    int from_base;
} durable_pages;

typedef struct session {
    char *id;
    worker worker;
    double last_used;
    durable_pages pages; /* with a store */
} session;

struct cap_sandbox {
    cap_config *config;
    pid_t zygote;
    int control_fd;
    int cancel_fd; /* eventfd: cap_sandbox_cancel() from any thread */
    worker idle[MAX_POOL];
    int idle_count;
    /* Spawns asked of the zygote whose pid has not been read yet; the
     * zygote answers in order.  Refilling this way keeps the clone off the
     * critical path of the run that triggered it. */
    int pending[MAX_POOL];
    int pending_count;
    /* Fresh workers exit by themselves after their result; waiting for
     * that (unmapping guest memory takes ~0.2 ms) would delay the result,
     * so they are reaped later, without blocking, at the next call. */
    pid_t exiting[MAX_EXITING];
    int exiting_count;
    session sessions[MAX_SESSIONS];
    int session_count;
    char *evicted[EVICTED_MEMORY];
    int evicted_next;
    uint64_t parked_seen; /* config->parked_total when this sandbox last looked */
    /* Durable sandboxes: the zygote's memory after capsule_init, by page
     * hash, which snapshots name instead of sending (durable.c). */
    uint8_t *base_hashes;
    uint32_t base_pages;
    uint32_t base_stack_pointer;
    int base_stored; /* a full snapshot put the base's pages in the store */
    int64_t interrupted_seq; /* set by sandbox_durable_begin: the call before was interrupted */
    /* The pages of guest memory a fresh run wrote, as its worker reported
     * them (hot_pages.h): each spawn asks the zygote to write them ahead.
     * Asked of the first fresh run, then of one in HOT_PAGES_EVERY. */
    buffer hot_pages;
    unsigned runs_until_hot_report;
    struct job_attempt *job; /* the job attempt being run (jobs.c), or NULL */
};

/* --- durable jobs (jobs.c) ------------------------------------------------ */

/* One attempt of a job, as its runner and the handlers of the guest's job
 * requests share it, on the run's thread. */
typedef struct job_attempt {
    store_job job;               /* as claimed: id, principal, attempts, created_at */
    int suspend;                 /* 0, STORE_JOB_SLEEPING or STORE_JOB_WAITING */
    int64_t until;               /* when a suspended job is due again (0: no bound) */
    char event[STORE_ID_SIZE];   /* what a waiting job waits for */
    int cancelled;               /* the guest was told it is cancelled */
    int lost;                    /* the attempt no longer holds the job: record nothing */
} job_attempt;

/* Appends this process's claim-latency histogram (Prometheus text) to
 * `out`; nothing without runners.  0, or -1 when out of memory. */
int sandbox_jobs_metrics(cap_config *config, buffer *out);

/* Stops and joins the job runners of `config` (cap_config_free). */
void sandbox_jobs_stop(cap_config *config);

/* The call channel's answers (functions.c): a header line and a body, or a
 * failure of `kind` (the guest's exception) with a message. */
void sandbox_call_answer(int fd, const char *header, const char *body, size_t body_size);
void sandbox_call_failure(int fd, const char *kind, const char *message);

/* Seconds on the monotonic clock. */
double sandbox_now_seconds(void);

enum { WAIT_DEADLINE = 0, WAIT_READABLE = 1, WAIT_CANCELLED = 2 };

/* Waits until `fd` is readable, the deadline passes or `cancel_fd` (if not
 * -1) is signalled: a WAIT_* value, or -errno. */
int sandbox_wait_readable(int fd, double deadline, int cancel_fd);

/* waitpid, retried on EINTR: the pid, 0 if WNOHANG found it running, -1. */
pid_t sandbox_reap(pid_t pid, int *status, int flags);

/* Reaps the finished workers that have exited; with `block`, all of them. */
void sandbox_reap_exiting(cap_sandbox *sandbox, int block);

/* Takes the pid of a worker that exits by itself (its channel is closed),
 * to be reaped later by sandbox_reap_exiting. */
void sandbox_reap_later(cap_sandbox *sandbox, pid_t pid);

/* Kills and reaps the worker and closes its channel; a pid of 0 means it
 * was discarded already.  Sets the pid to 0. */
void sandbox_worker_discard(worker *w);

/* A new worker forked now, waiting for it (the pool is bypassed). */
int sandbox_spawn_worker(cap_sandbox *sandbox, worker *out, char *error);

/* An idle worker from the pool, or a new one if the pool is empty. */
int sandbox_take_worker(cap_sandbox *sandbox, worker *out, char *error);

/* Asks the zygote for workers until the pool (idle and asked for) is full
 * again, without waiting for them. */
void sandbox_refill_pool(cap_sandbox *sandbox);

/* The session named `id`, or NULL. */
session *sandbox_session_find(cap_sandbox *sandbox, const char *id);

/* Whether `id` names a session evicted (or expired) recently. */
int sandbox_session_was_evicted(const cap_sandbox *sandbox, const char *id);

/* Discards the session at `index` and its worker; `evicted` remembers its id
 * for sandbox_session_was_evicted.  The last session takes its index. */
void sandbox_session_remove(cap_sandbox *sandbox, int index, int evicted);

/* Drops session `index`'s worker and entry without touching the store
 * (the session is no longer this node's). */
void sandbox_session_forget(cap_sandbox *sandbox, int index);

/* Keeps `w`, whose run has just ended with a result, as session `id`, or
 * discards it when no session can be kept; either way the caller no longer
 * holds it. */
void sandbox_session_add(cap_sandbox *sandbox, const char *id, worker w, durable_pages *pages);

/* --- durable sessions (durable.c) ---------------------------------------- */

/* Reads the base the zygote's 'Y' carries (durable.h) into the sandbox. */
int sandbox_durable_base(cap_sandbox *sandbox, const char *payload, size_t size, char *error);

/* The hashes a fresh worker of this sandbox is known by: the base's. */
int sandbox_durable_fresh(const cap_sandbox *sandbox, durable_pages *known);
void sandbox_durable_pages_free(durable_pages *pages);

/* Finishes call `seq` of `session` in the store with its status and result
 * JSON and, in the same transaction, the snapshot of the worker on
 * `worker_fd` (between two calls), which `known` describes before and
 * after (it is updated on success); with worker_fd -1 (the worker died,
 * its state is lost) the result alone, and the session is parked at its
 * previous snapshot.  CAP_OK, or a store or CAP_* code with the message:
 * then nothing was committed. */
int sandbox_durable_commit(cap_sandbox *sandbox, int worker_fd, durable_pages *known,
                           const char *session, int64_t seq, const char *status,
                           const char *result_json, char *error);

/* Puts the session's latest snapshot into the fresh worker on `worker_fd`
 * (nothing when it has none yet), and sets `known` to what the worker
 * then holds.  On failure the worker is half-written
 * and must be discarded; STORE_EVERSION means another build saved it. */
int sandbox_durable_restore(cap_sandbox *sandbox, int worker_fd, durable_pages *known,
                            const char *session, char *error);

/* Before a call of durable session options->session: creates the session
 * if new, claims it for this node unless it is live in this sandbox
 * (`live_here`), and begins the call in the store (*seq).  When the call
 * must not run, *early is its result: a replay of the idempotency key's
 * stored result, or a session-error (expired, the store failed, a key
 * reused for other code, or the session busy on another node that did not
 * park it in time).  A session live on another node whose lease holds is
 * asked to park (store_session_request_park) and claimed once it has, for
 * at most the lease's length.  *live_here is set to 0 when the sandbox's
 * worker for the session is stale (the session was parked or moved since:
 * the caller forgets it and restores the latest snapshot).  CAP_OK, or
 * CAP_ENOMEM. */
int sandbox_durable_begin(cap_sandbox *sandbox, const char *code, size_t code_size,
                          const cap_run_options *options, int *live_here, int64_t *seq,
                          cap_result **early, char *error);

/* After a committed call: when another node asked for the session, parks
 * it and returns 1 (drop its worker); 0 otherwise. */
int sandbox_durable_release_if_requested(cap_sandbox *sandbox, const char *session);

/* The session's worker is gone from this sandbox (evicted, idle): the
 * store has it parked at its latest snapshot; with `forget`, the session
 * is deleted from the store (closed). */
void sandbox_durable_park(cap_sandbox *sandbox, const char *session, int forget);

/* --- a worker's frames, through one dispatch table (run.c) -------------- */

/* Whom a worker's frames are answered for: a program's run, or the compile
 * of a new environment's bytecode (a fresh worker that runs only the
 * runner's trusted code).  The dispatch table says, per frame type, in
 * which phases it may come (a mask of these bits). */
typedef enum sandbox_phase { SANDBOX_PHASE_RUN = 1, SANDBOX_PHASE_COMPILE = 2 } sandbox_phase;

/* A handler returns CONTINUE (read the next frame), STOPPED (the exchange
 * ends without a result; the handler has said why in the result) or RESULT
 * (the worker's 'R' was read).  sandbox_serve_worker returns one of the
 * last two, or why it stopped waiting: the DEADLINE passed, the run was
 * CANCELLED, or the worker is GONE (end of stream, no result). */
typedef enum sandbox_outcome {
    SANDBOX_CONTINUE,
    SANDBOX_STOPPED,
    SANDBOX_RESULT,
    SANDBOX_DEADLINE,
    SANDBOX_CANCELLED,
    SANDBOX_GONE
} sandbox_outcome;

/* One worker's frames being answered: what the handlers share.  It lives on
 * the stack of whoever serves the worker (cap_sandbox_run, or the compile
 * of an environment), on that thread; `out` and `err` are its own until the
 * caller moves them into the result. */
typedef struct sandbox_exchange {
    cap_sandbox *sandbox;
    sandbox_phase phase;
    int fd;                         /* the worker's channel: answers go there */
    const cap_run_options *options; /* output and progress callbacks, capture */
    cap_result *result;             /* what the frames report */
    double deadline;                /* wall clock; time spent installing packages is added */
    buffer out, err;                /* captured output */
    size_t output_total, max_output;
    int output_exceeded;            /* output passed max_output and was cut */
    size_t artifact_bytes;          /* of all artifacts so far (MAX_ARTIFACT_BYTES) */
    size_t artifacts_dropped;       /* over that budget */
    const cap_limits *limits;       /* the run's, resolved (NULL in a compile) */
    uint32_t function_calls;        /* host-function calls answered so far */
    uint64_t function_result_bytes; /* result bytes sent back so far */
    int report_pages;               /* the worker was asked for its hot pages ('M') */
} sandbox_exchange;

/* A row's handler: `payload` (NUL-terminated, `size` bytes without the NUL)
 * is the worker's, untrusted, and only borrowed. */
typedef sandbox_outcome sandbox_frame_handler(sandbox_exchange *exchange, const char *payload,
                                              size_t size);

/* Answers one frame of type `type` through the dispatch table.  A type the
 * phase does not allow ends a compile (STOPPED) and is dropped during a
 * run (CONTINUE). */
sandbox_outcome sandbox_dispatch_frame(sandbox_exchange *exchange, char type,
                                       const char *payload, size_t size);

/* Reads the worker's frames and dispatches each until a handler ends the
 * exchange, exchange->deadline passes, `cancel_fd` (-1: none) is signalled,
 * or the worker's stream ends.  Never returns SANDBOX_CONTINUE. */
sandbox_outcome sandbox_serve_worker(sandbox_exchange *exchange, int cancel_fd);

/* The handlers that answer a worker's requests (each answers on the
 * worker's channel; a failed answer means the worker is gone, which the
 * next read finds, so they always return SANDBOX_CONTINUE):
 *   'H' a host directory's stat, listing, read or change   broker.c
 *   'F' a resource read (/network or a provider)           provider.c
 *   'W' a write to a provider's resource                   provider.c
 *   'D' the packages a program wants; the time spent is    dependencies.c
 *       added to the deadline (it is not the program's)
 *   'C' a host function's call, or the list of functions   functions.c */
sandbox_outcome sandbox_frame_host(sandbox_exchange *exchange, const char *payload, size_t size);
sandbox_outcome sandbox_frame_fetch(sandbox_exchange *exchange, const char *payload, size_t size);
sandbox_outcome sandbox_frame_store(sandbox_exchange *exchange, const char *payload, size_t size);
sandbox_outcome sandbox_frame_dependencies(sandbox_exchange *exchange, const char *payload,
                                           size_t size);
sandbox_outcome sandbox_frame_call(sandbox_exchange *exchange, const char *payload, size_t size);

/* jobs.c: a job request on the call channel */
/* Answers a guest's job request ({"op": "step" | "step_done" | "sleep" |
 * "await_event", ...}) on the call channel; SANDBOX_STOPPED when the
 * attempt ends here (the job parks, or lost its lease). */
sandbox_outcome sandbox_job_request(sandbox_exchange *exchange, const void *request,
                                    const char *op);

/* provider.c: a resource fetch's two halves, for jobs.c.  The first does
 * what an 'F' frame asks (payload: the mount's index, then the name) and
 * returns 0 with the bytes in *body or a negative errno with a message of
 * at most 255 bytes; the second writes the 'F' answer. */
int sandbox_fetch_resource(const cap_config *config, const char *payload, size_t size,
                           double deadline, buffer *body, char *message);
int sandbox_fetch_reply(int fd, int32_t rc, const void *body, size_t body_size,
                        const char *message);

/* jobs.c: a /network fetch inside a job, as a step of the job: the stored
 * response when the job has one (a rerun), else fetched and stored first.
 * Answers with an 'F' frame; SANDBOX_STOPPED when the attempt lost the
 * job. */
sandbox_outcome sandbox_job_fetch(sandbox_exchange *exchange, const char *payload, size_t size);

#endif
