/*
 * capsule.h — run untrusted Python inside WebAssembly.
 *
 * A sandbox is CPython 3.11 compiled to wasm32-wasi and translated to native
 * code by wasm2c.  The guest can touch nothing but what the sandbox's virtual
 * file system and WASI layer give it: there is no host file, socket,
 * environment variable or process it can reach on its own.
 *
 * Usage:
 *
 *     cap_config *config = cap_config_new();
 *     cap_sandbox *sandbox;
 *     char error[CAP_ERROR_SIZE];
 *     if (cap_sandbox_new(config, &sandbox, error) != CAP_OK) { ...print error... }
 *     cap_result *result;
 *     cap_sandbox_run(sandbox, code, code_length, NULL, &result, error);
 *     ... cap_result_status(result), cap_result_stdout(result, &n) ...
 *     cap_result_free(result);
 *     cap_sandbox_free(sandbox);
 *     cap_config_free(config);
 *
 * Invariants:
 * - Every function that can fail returns a CAP_* code and, when the caller
 *   passes an `error` buffer of CAP_ERROR_SIZE bytes, writes a message there.
 *   The library never exits the process and never prints.
 * - Guest behaviour (exceptions, traps, exhausted limits) is not a failure of
 *   the call: cap_sandbox_run returns CAP_OK and the result says what happened.
 * - A sandbox is a warm zygote process: CPython initialised once, forked per
 *   run.  Every run executes in its own worker process (seccomp-filtered,
 *   resource-limited) and gets a fresh interpreter unless it names a session.
 *   The parent enforces the wall-clock deadline by killing the worker.
 * - One sandbox serves one run at a time; use one sandbox per thread
 *   (cap_sandbox_cancel excepted).
 * - The sandbox starts child processes and reaps them itself (waitpid on
 *   their pids only); it does not touch SIGCHLD.
 */
#ifndef CAPSULE_H
#define CAPSULE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAP_VERSION "0.1.0"
#define CAP_ERROR_SIZE 256

/* Return codes of the API. */
enum {
    CAP_OK = 0,
    CAP_EINVAL = 1,   /* bad argument */
    CAP_ENOMEM = 2,   /* out of host memory */
    CAP_EIO = 3,      /* a host file (the stdlib image, say) could not be read */
    CAP_ERUNTIME = 4, /* the runtime could not start the guest */
};

/* Outcome of one run, as reported in cap_result_status(). */
typedef enum {
    CAP_STATUS_SUCCESS = 0,      /* the code ran to its end (or sys.exit(0)) */
    CAP_STATUS_RUN_ERROR = 1,    /* an uncaught exception or a non-zero exit */
    CAP_STATUS_TRAP = 2,         /* the guest trapped: C stack exhausted, out of bounds, ... */
    CAP_STATUS_TIMEOUT = 3,      /* wall-clock limit: the worker was killed */
    CAP_STATUS_CPU_LIMIT = 4,    /* CPU-time limit */
    CAP_STATUS_MEMORY_LIMIT = 5, /* linear memory limit: MemoryError nobody caught */
    CAP_STATUS_OUTPUT_LIMIT = 6, /* stdout+stderr cap: output truncated, run stopped */
    CAP_STATUS_DISK_LIMIT = 7,   /* scratch file-system quota: uncaught ENOSPC */
    CAP_STATUS_CRASH = 8,        /* the worker died otherwise (e.g. a seccomp violation) */
    CAP_STATUS_SESSION_ERROR = 9, /* the named session is gone (evicted or expired) */
    CAP_STATUS_INSTALL_ERROR = 10, /* dependencies could not be installed: the code did not run */
    CAP_STATUS_CANCELLED = 11      /* cap_sandbox_cancel(): the worker was killed */
} cap_status;

/* Limits of one run; a zero field means the default shown. */
typedef struct cap_limits {
    double wall_seconds;   /* 30 s: the worker is SIGKILLed after this */
    double cpu_seconds;    /* wall_seconds: CPU time of the worker */
    uint64_t memory_bytes; /* 512 MiB: guest linear memory (memory.grow fails beyond) */
    uint64_t output_bytes; /* 16 MiB: stdout + stderr together */
    uint64_t disk_bytes;   /* 256 MiB: bytes of files in the scratch file system */
    uint64_t disk_entries; /* 10,000: files and directories in the scratch file system */
    /* Host functions (cap_config_add_function): */
    uint32_t function_calls;        /* 1,000: calls per run; then PermissionError */
    uint64_t function_result_bytes; /* 64 MiB: result bytes per run; then PermissionError */
    double function_seconds;        /* wall_seconds: per call, never past the wall clock */
} cap_limits;

/* A file given to a run by value, placed in the scratch file system. */
typedef struct cap_file {
    const char *path; /* relative to the working directory /work, or absolute */
    const void *data;
    size_t size;
} cap_file;

typedef struct cap_config cap_config;
typedef struct cap_sandbox cap_sandbox;
typedef struct cap_result cap_result;

/* Which output stream a chunk of guest output came from. */
typedef enum { CAP_STDOUT = 1, CAP_STDERR = 2 } cap_stream;

/* Called with each chunk of guest output as it is written.  Runs inside the
 * guest's write call: keep it short and do not call back into the sandbox. */
typedef void (*cap_output_fn)(void *userdata, cap_stream stream, const char *data, size_t size);

/* --- Configuration ----------------------------------------------------- */

cap_config *cap_config_new(void);
void cap_config_free(cap_config *config);

/* The read-only standard library image (build/stdlib.img).  Default: the
 * first that exists of `stdlib.img` beside the running executable,
 * `stdlib.img` or `capsule/stdlib.img` beside the shared library holding
 * libcapsule, and `../lib/capsule/stdlib.img` from the executable (an
 * installation: $(PREFIX)/lib/capsule/stdlib.img). */
int cap_config_set_stdlib(cap_config *config, const char *image_path, char *error);

/* Mount another read-only image at a guest path (for example CPython's test
 * suite for the regression tests).  Images are opened once per config. */
int cap_config_add_image(cap_config *config, const char *image_path, const char *guest_path,
                         char *error);

/* Durable sessions (docs/sessions.md): sessions are kept in the store at
 * `url` ("sqlite:PATH", created if needed, or a "postgres://" URL), which
 * this call opens.  After each call of a session its interpreter (memory,
 * files under /tmp and /work) is saved with the result, in one transaction,
 * before the result is returned; a session whose worker was evicted, ended
 * idle, or lived in a process that died continues from its latest saved
 * state, on any sandbox of this config.  Host mounts, /network and
 * packages are granted again, not saved.  CAP_EIO when the store cannot be
 * opened (another process holds an SQLite store; a damaged file; a newer
 * schema), with the reason. */
int cap_config_set_store(cap_config *config, const char *url, char *error);

/* Bounds the store's compressed bytes; parked sessions are expired oldest
 * first to make room, and a call whose state cannot fit even then is a
 * session-error (the session stays as before it).  0: no bound. */
int cap_config_set_store_quota(cap_config *config, uint64_t bytes, char *error);

/* How long this process's claim on its live sessions lasts in the store
 * (default 30 s), renewed by a thread of the config every third of it.
 * Several servers on one PostgreSQL store: a server that dies loses its
 * sessions to the others after this long. */
int cap_config_set_store_lease(cap_config *config, double seconds, char *error);

/* How long a durable session may stay parked and unused before it expires
 * (0: never, the default): its saved state leaves the store and this
 * node's disk, and its next call is a session-error that says so.  It is
 * given to the sessions made (or forked) while it is set, and counts from
 * a session's last call.  Checked at such a session's call and every
 * quarter of the TTL (1 s to 1 min) by the thread that renews the lease.
 * Needs a store. */
int cap_config_set_session_ttl(cap_config *config, double seconds, char *error);

/* A directory (created 0700 if missing; NULL: none, the default) where
 * the interpreter's state right after start-up is kept as a "start image",
 * one per python.wasm build, images and environment.  A sandbox whose
 * image is there maps it (copy-on-write) instead of initialising CPython,
 * which makes starting a sandbox ≈ 100 ms cheaper.  The processes using
 * one image share its str hash secret; images are replaced after a day.
 * The CLI uses $XDG_CACHE_HOME/capsule (docs/sessions.md). */
int cap_config_set_start_cache(cap_config *config, const char *host_directory, char *error);

/* Idle pre-forked workers kept ready (default 2; 0 forks on demand). */
int cap_config_set_pool_size(cap_config *config, int workers, char *error);

/* Sessions: at most `max_sessions` live at once (default 8; the least
 * recently used is evicted; -1 keeps the current number), each ended (with
 * a store: parked) after `idle_seconds` unused (default 600). */
int cap_config_set_sessions(cap_config *config, int max_sessions, double idle_seconds,
                            char *error);

/* Adds NAME=VALUE to the guest environment.  The guest environment holds
 * only what is added here: nothing of the host's is passed. */
int cap_config_add_env(cap_config *config, const char *name, const char *value, char *error);

/* The artifacts directory (default "/output"): a scratch directory whose
 * files are returned with each run's result (cap_result_artifact) and then
 * removed.  At most 64 MiB of artifacts per run; beyond, files are dropped
 * and a note goes to the captured stderr. */
int cap_config_set_output_directory(cap_config *config, const char *guest_path, char *error);

/* Exposes the markdown files (*.md) of a host directory read-only at /docs,
 * with a generated /docs/README.md listing each file's title (its first
 * "# " heading).  The files are read now, once; a host README.md is kept
 * below the index. */
int cap_config_add_docs(cap_config *config, const char *host_directory, char *error);

/* help: searches the /docs files (by section), the granted host functions
 * and code-mode tools, the recipes capsule ships, and the distributions
 * that runs of `principal` (NULL: "", cap_run_options.principal) had
 * installed, with SQLite FTS5 (BM25): another principal's installs stay
 * unseen.  `query` is any text, a question in words: it is never query
 * syntax.  `limit` 1 to 20 (0: 5).  JSON (the caller frees it):
 * {"query": ..., "results": [{"title", "path", "section", "kind" ("doc",
 * "recipe", "function", "tool", "python-doc", "package"), "snippet", "text",
 * "score"}...]}, best first; NULL and `error` on failure.  Thread-safe; the
 * same search as the MCP tool `help` and the guest's capsule.help(). */
char *cap_config_help(cap_config *config, const char *principal, const char *query, int limit,
                      char *error);

/* describe: a model endpoint that the host (never the guest) asks about
 * files the code made: an OpenAI-compatible chat/completions URL or an
 * Anthropic Messages API URL (.../v1/messages).  `url` is the only URL it
 * may reach; `api_key` is sent as a bearer token (OpenAI) or as x-api-key
 * (Anthropic), NULL: none; `model` (NULL: gpt-4o-mini, or
 * claude-sonnet-4-5 for Anthropic).  Each argument that is NULL keeps what
 * was set.  Until a URL is set, describe is off: the MCP tool is not
 * listed and capsule.describe() raises PermissionError. */
int cap_config_set_describe(cap_config *config, const char *url, const char *api_key,
                            const char *model, char *error);

/* The API the describe URL speaks: "openai", "anthropic", or "auto" (or
 * NULL, the default): Anthropic's when the URL's path ends in /messages,
 * else OpenAI's. */
int cap_config_set_describe_api(cap_config *config, const char *api, char *error);
int cap_config_describe_enabled(const cap_config *config);

/* Asks the endpoint `question` about `size` bytes of `data` (`name` is
 * shown to the model).  The media type is read from the bytes: PNG, JPEG,
 * GIF, WebP (at most 1568 px a side and 5 MiB: larger images are refused,
 * make them smaller first), PDF, UTF-8 text (at most 256 KiB); at most
 * 8 MiB.  JSON {"answer", "media_type", "model"} (free
 * it), or NULL and `error`. */
char *cap_config_describe(cap_config *config, const void *data, size_t size, const char *name,
                          const char *question, double timeout_seconds, char *error);

/* HTTP resources: reading the guest file /network/NAME makes the host (not
 * the guest: it has no socket) fetch URL, and the open() blocks until then.
 * Every URL fetched, the first and each redirect, must start with a prefix
 * allowed by cap_config_allow_url ("http://127.0.0.1:8000/"); nothing is
 * allowed by default.  Failures are OSErrors in the guest (ENOENT for 404,
 * EACCES outside the allow-list, ETIMEDOUT, EFBIG over the size cap, EIO),
 * with the reason on the guest's stderr.  NAME may be a template with one
 * "{}" that fills the URL's one "{}" (in its path or query), percent-encoded:
 * "city-{}.json" with "https://host/weather?q={}". */
int cap_config_add_http_resource(cap_config *config, const char *name, const char *url,
                                 char *error);
int cap_config_allow_url(cap_config *config, const char *prefix, char *error);
/* Per fetch: timeout (default 10 s, never past the run's wall-clock
 * limit) and body size cap (default 8 MiB); zero keeps the default. */
int cap_config_set_http_limits(cap_config *config, double timeout_seconds, size_t max_bytes,
                               char *error);

/* A directory of files produced (and, with `write`, consumed) by the
 * embedder: reading GUEST_PATH/NAME calls `read` in the host, on the thread
 * running cap_sandbox_run, while the guest's open() waits; writing calls
 * `write` the same way. */
typedef struct cap_resource_provider {
    /* The file names (no '/'): the name at `index`, NULL past the end.
     * Called when the provider is added, not later (at most 64 names).
     * NULL: any plain name may be opened (and the listing is empty). */
    const char *(*list)(void *userdata, size_t index);
    /* The content of `name` into *data (malloc'd; capsule frees it) and
     * *size; non-zero on failure, with a message in `error`
     * (CAP_ERROR_SIZE bytes) that the guest sees on stderr with OSError. */
    int (*read)(void *userdata, const char *name, void **data, size_t *size, char *error);
    /* Optional (NULL: the files are read-only).  The guest wrote `size`
     * bytes at `offset` of `name`, in the order it writes them (at most
     * 1 MiB per call); opening with truncation first calls it with size 0
     * at offset 0.  Non-zero on failure, with a message in `error`: the
     * guest's write fails with OSError (EIO). */
    int (*write)(void *userdata, const char *name, uint64_t offset, const void *data,
                 size_t size, char *error);
} cap_resource_provider;
int cap_config_add_resource_provider(cap_config *config, const char *guest_path,
                                     const cap_resource_provider *provider, void *userdata,
                                     char *error);

/* Mounts the host directory `host_path` at `guest_path`.  The guest never
 * touches it: every stat, listing, read and write is done by the host
 * process, beneath the directory (openat2 RESOLVE_BENEATH): "..", absolute
 * symbolic links and links pointing outside fail with EACCES.  With
 * CAP_MOUNT_READ_ONLY write-like calls fail with EROFS; otherwise the guest
 * may create, write, truncate, rename and remove files and directories, and
 * the mount may grow by at most `quota_bytes` (0: 256 MiB) and gain at most
 * the entry limit's files and directories (cap_config_set_mount_entry_limit)
 * over the config's lifetime (ENOSPC beyond); files with several hard links
 * are never written.  Files are read whole when opened (64 MiB at most). */
enum { CAP_MOUNT_READ_ONLY = 1 };
/* Files and directories each read-write mount may gain (created minus
 * removed), default 10,000: a byte quota alone lets a program fill the
 * host's inodes with empty files. */
int cap_config_set_mount_entry_limit(cap_config *config, uint64_t entries, char *error);
int cap_config_add_mount(cap_config *config, const char *host_path, const char *guest_path,
                         int flags, uint64_t quota_bytes, char *error);

/* Packages.  When any source is configured, each run's imports (top-level
 * and nested; a PEP 723 "# /// script" block instead, when present) are
 * installed before the code runs: the host resolves them against the
 * sources, in the order added, takes pure-Python distributions only,
 * unpacks them into a read-only image and mounts it at
 * /usr/local/lib/python3.11/site-packages.  The guest never reaches the
 * sources itself.  A package that cannot be installed makes the result
 * "install-error" (one line per package), and the code does not run.  Time
 * spent installing does not count against the wall-clock limit.
 * - a directory of wheels (*.whl);
 * - a PEP 503/691 simple index ("https://pypi.org/simple/"); hashes it
 *   gives are verified;
 * - a site-packages directory of the host (Debian's
 *   /usr/lib/python3/dist-packages): only the distributions asked for,
 *   and their dependencies, are copied in.
 * The cache directory keeps downloaded wheels and built environments
 * across processes (default: none, environments are kept in memory). */
int cap_config_add_wheel_directory(cap_config *config, const char *host_path, char *error);
int cap_config_add_index_url(cap_config *config, const char *url, char *error);
int cap_config_add_site_packages(cap_config *config, const char *host_path, char *error);
int cap_config_set_package_cache(cap_config *config, const char *host_path, char *error);

/* --- Host functions ----------------------------------------------------- */

/* A host function is called by the guest and runs here, in the host, on
 * the thread running cap_sandbox_run, while the guest waits:
 *
 *     from capsule.functions import lookup_order
 *     lookup_order(order_id=42)
 *
 * The worker never runs it and never sees the callback, its userdata or
 * anything the host holds; it only forwards the call.  Arguments and
 * results are JSON; a bytes value crosses as the object {"$bytes":
 * "<base64>"} (the guest's library converts both ways).  In the guest,
 * each granted function is a plain Python function with keyword-only
 * arguments, its signature and docstring made from `input_schema_json`
 * (never executed).  Errors become the guest's exceptions: a function not
 * granted, denied or past a limit is PermissionError, a callback's
 * CAP_FUNCTION_ERROR is capsule.functions.ToolError(message),
 * CAP_FUNCTION_TIMEOUT is TimeoutError.  Results larger than 1 MiB reach
 * the guest through a file of its scratch file system (outside its disk
 * quota), read back transparently: a result the host has is never lost. */

/* One call, as the callback sees it; valid during the callback only. */
typedef struct cap_function_call {
    const char *name;        /* the function's registered name */
    const char *arguments;   /* a JSON object, NUL-terminated; checked against the schema's
                                top level (required names, property types, additionalProperties) */
    size_t arguments_size;
    const char *session;     /* the run's session id, NULL for a fresh run */
    double timeout_seconds;  /* the time the call may take (cap_limits.function_seconds, never
                                past the run's wall clock): capsule cannot interrupt a callback,
                                so it is the callback's to honour */
    uint64_t max_result_bytes; /* what is left of the run's result budget */
} cap_function_call;

/* What a callback returns. */
enum {
    CAP_FUNCTION_OK = 0,      /* *result holds JSON text (malloc'd; capsule frees it) */
    CAP_FUNCTION_ERROR = 1,   /* the guest raises capsule.functions.ToolError(error) */
    CAP_FUNCTION_TIMEOUT = 2, /* the guest raises TimeoutError(error) */
    CAP_FUNCTION_DENIED = 3,  /* the guest raises PermissionError(error) */
};

/* `error` is a CAP_ERROR_SIZE buffer for the message the guest sees. */
typedef int (*cap_function_fn)(void *userdata, const cap_function_call *call, char **result,
                               size_t *result_size, char *error);

/* Grants the function `name` (a Python identifier, not a keyword, at most
 * 64 bytes; a dotted "namespace.name" is reserved for tools of other
 * servers).  `description` (may be NULL) and `input_schema_json` (a JSON
 * Schema of type "object"; NULL: any keyword arguments) are shown to the
 * guest as text only.  Names are unique; at most 256 functions. */
int cap_config_add_function(cap_config *config, const char *name, const char *description,
                            const char *input_schema_json, cap_function_fn callback,
                            void *userdata, char *error);

/* A function backed by an HTTP endpoint: each call POSTs the arguments
 * (JSON, Content-Type application/json) to `url`, which, like every
 * redirect, must be allowed by cap_config_allow_url (else PermissionError);
 * a 2xx response whose body is JSON is the result; anything else is a
 * ToolError, and the call's time limit a TimeoutError.  The host makes the
 * request: the guest has no socket. */
int cap_config_add_http_function(cap_config *config, const char *name, const char *description,
                                 const char *input_schema_json, const char *url, char *error);

/* Marks a function as needing approval: each call first asks the run's
 * cap_run_options.approve; without one, or when it says no, the call fails
 * closed (PermissionError) and the function does not run. */
int cap_config_require_approval(cap_config *config, const char *name, char *error);
/* The same for every function whose name matches the glob `pattern`
 * (fnmatch: "github.*", "*delete*"), whenever it is added, before or
 * after this call: functions, HTTP functions and code-mode tools alike.
 * At most 64 patterns. */
int cap_config_require_approval_matching(cap_config *config, const char *pattern, char *error);

/* Allow and deny lists of glob patterns (fnmatch: "github.*", "*delete*")
 * over the functions' names.  A function is granted when it is added, it
 * matches an allow pattern (or none were given) and no deny pattern.
 * Functions not granted are not listed to the guest and their calls fail
 * with PermissionError.  At most 64 patterns each. */
int cap_config_allow_functions(cap_config *config, const char *pattern, char *error);
int cap_config_deny_functions(cap_config *config, const char *pattern, char *error);

/* Appends one JSON line per call to the file at `path` (created 0600 if
 * needed): time (UTC), session, function, sizes and SHA-256 of the
 * arguments and the result, duration, and outcome ("ok", "error",
 * "timeout", "denied", "not-granted", "invalid-arguments", "limit"). */
int cap_config_set_audit_log(cap_config *config, const char *path, char *error);

/* Code mode (docs/code-mode.md): capsule becomes an MCP client of the
 * server `name`, described by `server_json` as one entry of the
 * "mcpServers" config Claude Desktop uses: {"command": "...", "args":
 * [...], "env": {...}} (stdio: spawned now, without a shell, and again
 * after a crash) or {"url": "https://...", "headers": {...}} (Streamable
 * HTTP; "type": "sse" for the 2024-11-05 HTTP+SSE transport, which is
 * also tried when a server refuses the POST).  Its tools are listed now and each becomes the host function
 * "SERVER.TOOL" (both made Python identifiers: other characters become
 * '_'), so the allow/deny patterns ("github.*"), limits, approval and audit
 * log apply; in the guest, `from servers.SERVER import TOOL` (stubs in
 * /servers/SERVER/TOOL.py) and capsule.tools.search().  CAP_EINVAL when the
 * server cannot be reached or answers wrongly (the message says why). */
int cap_config_add_mcp_server(cap_config *config, const char *name, const char *server_json,
                              char *error);
/* The servers added, as the guest names them, ", "-separated into `out`
 * (truncated to `size`); returns how many there are. */
int cap_config_mcp_server_names(const cap_config *config, char *out, size_t size);

/* --- Sandboxes ---------------------------------------------------------- */

int cap_sandbox_new(cap_config *config, cap_sandbox **out, char *error);
void cap_sandbox_free(cap_sandbox *sandbox);
/* Housekeeping between runs, which a run also does first: parks (or, without
 * a store, ends) the sessions idle longer than the idle timeout, and stops
 * the workers of sessions this node parked because another node asked for
 * them.  A program whose sandboxes may sit idle for long (a server) calls
 * it about once a second for each sandbox not running, from a thread that
 * does not run that sandbox at the same time, so that idle workers do not
 * hold their memory until the next call.  Returns how many session workers
 * it stopped. */
int cap_sandbox_tidy(cap_sandbox *sandbox);

typedef struct cap_run_options {
    const char *filename;     /* shown in tracebacks; default "main.py" */
    cap_output_fn on_output;  /* streamed output; NULL: only captured */
    void *userdata;           /* passed to on_output */
    int capture;              /* non-zero: keep stdout/stderr in the result */
    int traceback_to_stderr;  /* non-zero: print an uncaught traceback on stderr, like python */
    cap_limits limits;        /* zero fields: defaults */
    const cap_file *files;    /* input files by value */
    size_t file_count;
    const char *session;      /* NULL: a fresh interpreter; else a session's id */
    const char *globals_json; /* a JSON object: names bound in the program's globals first */
    int return_json;          /* non-zero: the return value as mcp-run-python gives it: a str
                                 as is, else JSON (indent 2), else repr() */
    /* Called with a line of news while packages are resolved and installed
     * ("resolving pypdf", "downloading x.whl"), on the calling thread. */
    void (*on_progress)(void *userdata, const char *message);
    /* Asked before each call of a function that needs approval
     * (cap_config_require_approval, cap_config_require_approval_matching),
     * on the calling thread: non-zero allows this one call.  When it
     * refuses it may say why in `reason` (CAP_ERROR_SIZE bytes, "" on
     * entry), e.g. "declined by the user": the guest's PermissionError and
     * the audit log's message repeat it.  NULL: such calls fail with
     * PermissionError. */
    int (*approve)(void *userdata, const char *function, const char *arguments_json,
                   char *reason);
    /* With a store and a session: a retried call with the same key (and
     * the same code) returns the stored result instead of running again. */
    const char *idempotency_key;
    /* Asked by the guest's capsule.describe() when no describe endpoint is
     * configured (cap_config_set_describe): a model of the caller's, e.g. an
     * MCP client's own through sampling.  `data` (`size` bytes, named
     * `name`) has passed describe's checks and is of `media_type` (image/png,
     * image/jpeg, image/gif, image/webp, application/pdf, text/plain).  The
     * answer as malloc'd UTF-8 text, or NULL with `error` (a ToolError in the
     * guest).  NULL: capsule.describe() raises PermissionError as before. */
    char *(*ask_model)(void *userdata, const void *data, size_t size, const char *media_type,
                       const char *name, const char *question, double timeout_seconds,
                       char *error);
    /* Who runs it (NULL: ""): the distributions the run installs are shown
     * by help to this principal's searches only (cap_config_help). */
    const char *principal;
} cap_run_options;

/* Runs `code` (Python source, any bytes) as the program `main.py`, in a
 * fresh worker process (or the named session's).
 * Returns CAP_OK with a result for every guest outcome. */
int cap_sandbox_run(cap_sandbox *sandbox, const char *code, size_t code_size,
                    const cap_run_options *options, cap_result **out, char *error);

/* Stops the run in progress on `sandbox` (its worker is killed; the result
 * says "cancelled").  The one call that may come from another thread, or a
 * signal handler; a cancel with no run in progress is forgotten when the
 * next run starts. */
int cap_sandbox_cancel(cap_sandbox *sandbox);

/* --- Results ------------------------------------------------------------ */

cap_status cap_result_status(const cap_result *result);
/* "success", "run-error", "trap", "timeout", "cpu-limit", "memory-limit",
 * "output-limit", "disk-limit", "crash", "session-error", "install-error", "cancelled" */
const char *cap_status_name(cap_status status);
int cap_result_exit_code(const cap_result *result); /* Python's exit status */
/* Captured output; not NUL-terminated in general, size in *size. */
const char *cap_result_stdout(const cap_result *result, size_t *size);
const char *cap_result_stderr(const cap_result *result, size_t *size);
/* repr() of the value of the last expression statement, NULL if none. */
const char *cap_result_return_value(const cap_result *result);
/* Traceback text (or trap description) when the run failed, else NULL. */
const char *cap_result_error(const cap_result *result);
/* The whole result as a JSON object (caller frees with free()). */
char *cap_result_to_json(const cap_result *result);
void cap_result_free(cap_result *result);

/* Files the run left in the artifacts directory (/output), returned by
 * value.  Valid until cap_result_free. */
typedef struct cap_artifact {
    const char *name;       /* path relative to the artifacts directory */
    const char *media_type; /* "image/png", "text/csv", ...; "application/octet-stream" if unknown */
    const unsigned char *data;
    size_t size;
} cap_artifact;
size_t cap_result_artifact_count(const cap_result *result);
const cap_artifact *cap_result_artifact(const cap_result *result, size_t index);

/* Distributions installed for the run, as "name==version". */
size_t cap_result_dependency_count(const cap_result *result);
const char *cap_result_dependency(const cap_result *result, size_t index);

/* What the run's caller should know and the status does not say, one
 * sentence each: e.g. a distribution installed without its compiled
 * accelerators. */
size_t cap_result_note_count(const cap_result *result);
const char *cap_result_note(const cap_result *result, size_t index);

/* Durable sessions (with cap_config_set_store).  Whether a session named
 * `id` exists, live or parked (0 without a store). */
int cap_session_exists(cap_config *config, const char *id);
/* A new session `id` starting from `source`'s latest saved state (its last
 * finished call); `source` goes on unchanged. */
int cap_session_fork(cap_config *config, const char *source, const char *id, char *error);
/* The session's state ("live", "parked", "expired") and its calls (seq,
 * status, times, idempotency key) as a JSON object; free() it.  NULL with
 * the message when there is no such session or no store. */
char *cap_session_history(cap_config *config, const char *id, char *error);

/* The store's numbers in Prometheus' text format (malloc'd; the caller
 * frees it): its blobs (compressed and raw bytes, count), sessions, and
 * jobs by status.  "" without a store; NULL with `error` when the store
 * fails. */
char *cap_config_store_metrics(cap_config *config, char *error);

/* Tasks of the MCP server's Tasks extension (docs/mcp.md, "Tasks"), kept
 * in the store (with cap_config_set_store) so that they outlive the
 * server's process.  A task is created working, for `principal`, by this
 * process, and expires ttl_ms after; CAP_EINVAL without a store or when the
 * id is taken. */
int cap_task_create(cap_config *config, const char *id, const char *principal, int64_t ttl_ms,
                    char *error);
/* Ends a working task with its status, status message and payload (the
 * tool result or the JSON-RPC error, as JSON text; either may be NULL).
 * CAP_EINVAL if the task is not working any more. */
int cap_task_finish(cap_config *config, const char *id, const char *status, const char *message,
                    const char *payload_json, char *error);
/* A stored task, by value; cap_task_clear frees its strings. */
typedef struct cap_task {
    char principal[129];
    char status[32];      /* working, completed, failed, cancelled */
    char *status_message; /* or NULL */
    char *payload_json;   /* or NULL */
    int64_t created_at_ms, updated_at_ms, expires_at_ms;
} cap_task;
/* The unexpired task `id`; CAP_EINVAL when there is none.  A task left
 * working by a process that died (a crash, kill -9) is returned failed,
 * with `interrupted_message` and `interrupted_payload`, and stored so. */
int cap_task_get(cap_config *config, const char *id, const char *interrupted_message,
                 const char *interrupted_payload, cap_task *out, char *error);
void cap_task_clear(cap_task *task);

/* Ends a session and its worker; CAP_EINVAL if there is no such session. */
int cap_session_close(cap_sandbox *sandbox, const char *session, char *error);

/* --- Durable jobs (docs/scale-out.md, "Jobs") ---------------------------
 *
 * A job is Python code run to completion in the background by a job runner
 * (cap_jobs_start) of any process sharing the store, retried on failure,
 * surviving crashes.  Inside it, capsule.step(name, fn, ...) caches fn's
 * result in the store (a rerun returns it without calling fn again),
 * capsule.sleep / capsule.sleep_until park the job until a time and
 * capsule.await_event parks it until cap_job_emit.  Every attempt runs the
 * code from the top: code between steps runs at least once, a step that
 * completed exactly once.  Jobs belong to a principal (any string, "" for
 * none): the functions below given a principal see only its jobs, and
 * treat another principal's like a job that does not exist.
 *
 * Every function needs a store (cap_config_set_store); without one,
 * CAP_EINVAL.  Jobs are described as JSON objects: job_id, queue, status
 * (queued, running, sleeping, waiting, failed: a retry is due, succeeded,
 * dead: attempts used up, cancelled), attempts, max_attempts, node (the
 * process running it), last_error, result (the last attempt's run, as
 * cap_result_to_json, once succeeded), run_after_ms, created_at_ms,
 * updated_at_ms, idempotency_key, cancel_requested.  Returned text is
 * malloc'd: free() it. */
typedef struct cap_job_options {
    const char *principal;       /* NULL: "" */
    const char *queue;           /* NULL: "default" */
    const char *idempotency_key; /* NULL: none; a key used before returns that job */
    int max_attempts;            /* 0: 3 */
    double timeout_seconds;      /* one attempt's wall-clock limit; 0: 60 */
    double backoff_seconds;      /* retry n waits backoff * 2^(n-1); 0: 1 (negative: none) */
} cap_job_options;

/* Submits `code` as a job; *job_json (may be NULL) receives the job.  A key
 * used before by the principal returns its job (CAP_EINVAL if its code was
 * other).  Wakes this process's runners. */
int cap_job_submit(cap_config *config, const char *code, const cap_job_options *options,
                   char **job_json, char *error);
/* The job, or NULL with the message ("no job ..."). */
char *cap_job_get(cap_config *config, const char *id, const char *principal, char *error);
/* The principal's jobs (every principal's with NULL), newest first, as a
 * JSON array; `status` NULL for any, limit 0 for 100. */
char *cap_job_list(cap_config *config, const char *principal, const char *status, size_t limit,
                   char *error);
/* Cancels the job: at once unless it is running, else at its next step,
 * sleep or wait.  *job_json (may be NULL) receives it.  CAP_EINVAL for no
 * such job or one that has ended. */
int cap_job_cancel(cap_config *config, const char *id, const char *principal, char **job_json,
                   char *error);
/* Emits event `name` with `payload_json` (NULL: null) for the principal's
 * jobs: those waiting for it are due now; *woken (may be NULL) says how
 * many.  An event counts for every job of the principal created before it
 * that awaits its name. */
int cap_job_emit(cap_config *config, const char *principal, const char *name,
                 const char *payload_json, int *woken, char *error);
/* At most `concurrency` jobs of `queue` run at once in all processes
 * sharing the store; 0 removes the limit. */
int cap_job_set_queue_limit(cap_config *config, const char *queue, int concurrency, char *error);
/* Starts `runners` threads (1..16), each with a sandbox of its own made
 * now (call it before other threads start, like cap_sandbox_new), which
 * claim due jobs and run each attempt with `limits` (NULL: defaults; the
 * job's timeout is its wall-clock limit).  An idle runner looks for due
 * jobs every `poll_seconds` (0: 0.5), and at once when this process
 * submits or emits, or (PostgreSQL) when any process does: a listener
 * connection hears their NOTIFY.  Stopped by cap_config_free: an attempt
 * cut off by the stop counts as failed and is run again later. */
int cap_jobs_start(cap_config *config, int runners, const cap_limits *limits,
                   double poll_seconds, char *error);
/* Finished jobs (succeeded, dead, cancelled) are deleted with their steps
 * `seconds` after they finished, and events once older than that and no
 * job can await them (default 7 days); the runners of every process
 * prune, in small batches, about once a second.  CAP_EINVAL unless
 * 0 < seconds <= 10 years.  Takes effect at once, running or not. */
int cap_config_set_job_retention(cap_config *config, double seconds, char *error);

#ifdef __cplusplus
}
#endif

#endif /* CAPSULE_H */
