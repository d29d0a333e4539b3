/*
 * run.c — cap_sandbox_run, host side: hand the request to a worker (the
 * session's, or one from the pool), answer its frames, enforce its limits,
 * collect the result.
 *
 * Data path of a run: the host sends the request frame to an idle worker
 * (zygote.c); the worker's guest runner reads it, runs the code, and its
 * stdout/stderr and result come back as frames.  The host alone decides the
 * status: it kills the worker at the wall-clock deadline or when output
 * passes the cap, and reads the other limits off how the worker ended.
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "hot_pages.h"

#define DEFAULT_WALL_SECONDS 30.0
#define DEFAULT_MAX_OUTPUT (16u << 20)
#define DEFAULT_FUNCTION_CALLS 1000
#define DEFAULT_FUNCTION_RESULT_BYTES (64ull << 20)
#define MAX_CODE (64u << 20)
#define HOT_PAGES_EVERY 64 /* fresh runs between two reports of their hot pages */
#define TRUNCATION_MARKER "\n[capsule: output truncated]\n"

static void drain_cancellation(cap_sandbox *sandbox) {
    uint64_t count;
    while (read(sandbox->cancel_fd, &count, sizeof count) > 0) continue;
}

int cap_sandbox_cancel(cap_sandbox *sandbox) {
    uint64_t one = 1;
    if (!sandbox) return CAP_EINVAL;
    return write(sandbox->cancel_fd, &one, sizeof one) == sizeof one ? CAP_OK : CAP_ERUNTIME;
}

/* Delivers output within the cap; returns 0 once the cap is passed. */
static int deliver_output(sandbox_exchange *run, cap_stream stream, const char *data,
                          size_t size) {
    size_t room = run->max_output - run->output_total;
    size_t kept = size < room ? size : room;
    const cap_run_options *o = run->options;
    run->output_total += kept;
    if (kept && o->capture) buffer_append(stream == CAP_STDOUT ? &run->out : &run->err, data, kept);
    if (kept && o->on_output) o->on_output(o->userdata, stream, data, kept);
    if (kept < size) {
        run->output_exceeded = 1;
        return 0;
    }
    return 1;
}

/* --- the dispatch table ---------------------------------------------------------- */

/* 'O' and 'E': the guest's stdout and stderr, within the output cap. */
static sandbox_outcome frame_output(sandbox_exchange *exchange, cap_stream stream,
                                    const char *payload, size_t size) {
    if (deliver_output(exchange, stream, payload, size)) return SANDBOX_CONTINUE;
    cap_result *result = exchange->result;
    result->status = CAP_STATUS_OUTPUT_LIMIT;
    result->exit_code = 1;
    result->error = sandbox_format_message(
        "output limit of %zu bytes exceeded; the run was stopped", exchange->max_output);
    return SANDBOX_STOPPED;
}

static sandbox_outcome frame_stdout(sandbox_exchange *exchange, const char *payload,
                                    size_t size) {
    return frame_output(exchange, CAP_STDOUT, payload, size);
}

static sandbox_outcome frame_stderr(sandbox_exchange *exchange, const char *payload,
                                    size_t size) {
    return frame_output(exchange, CAP_STDERR, payload, size);
}

/* 'A': a file of the output directory.  Garbage stops the worker; past the
 * budget, a run drops the artifact and says so in stderr, while a compile
 * (whose artifacts are the environment's bytecode) ends, without bytecode. */
static sandbox_outcome frame_artifact(sandbox_exchange *exchange, const char *payload,
                                      size_t size) {
    cap_result *result = exchange->result;
    int rc = sandbox_add_artifact(result, payload, size, &exchange->artifact_bytes);
    if (rc == -EPROTO) {
        result->status = CAP_STATUS_CRASH;
        result->exit_code = 1;
        result->error = strdup("the worker sent a malformed artifact and was stopped");
        return SANDBOX_STOPPED;
    }
    if (rc && exchange->phase == SANDBOX_PHASE_COMPILE) return SANDBOX_STOPPED;
    if (rc) exchange->artifacts_dropped++;
    return SANDBOX_CONTINUE;
}

/* 'R': the result, the worker's last frame. */
static sandbox_outcome frame_result(sandbox_exchange *exchange, const char *payload,
                                    size_t size) {
    sandbox_parse_result(exchange->result, payload, size);
    return SANDBOX_RESULT;
}

/* 'M': the pages the run wrote, when asked (hot_pages.h).  Malformed or
 * unasked lists are dropped: they are only a hint. */
static sandbox_outcome frame_hot_pages(sandbox_exchange *exchange, const char *payload,
                                       size_t size) {
    buffer *kept = &exchange->sandbox->hot_pages;
    if (!exchange->report_pages || !hot_pages_valid(payload, size)) return SANDBOX_CONTINUE;
    exchange->report_pages = 0; /* one list per run */
    kept->size = 0;
    if (buffer_append(kept, payload, size) != 0) buffer_free(kept);
    return SANDBOX_CONTINUE;
}

/* 'X': the worker could not run the request (its message). */
static sandbox_outcome frame_failure(sandbox_exchange *exchange, const char *payload,
                                     size_t size) {
    (void)size;
    exchange->result->status = CAP_STATUS_CRASH;
    exchange->result->error = strdup(payload);
    return SANDBOX_STOPPED;
}

#define ANY_PHASE (SANDBOX_PHASE_RUN | SANDBOX_PHASE_COMPILE)

/* The parent's handling of worker frames: one row per frame type a worker
 * may send (layouts: frame.h, zygote.h), with its handler and the phases in
 * which it may come.  A new kind of request is a handler and a row. */
static const struct frame_row {
    sandbox_frame_handler *handler;
    unsigned phases; /* SANDBOX_PHASE_* bits */
} frame_table[256] = {
    ['O'] = {frame_stdout, ANY_PHASE},
    ['E'] = {frame_stderr, ANY_PHASE},
    ['A'] = {frame_artifact, ANY_PHASE},
    ['R'] = {frame_result, ANY_PHASE},
    ['X'] = {frame_failure, ANY_PHASE},
    ['M'] = {frame_hot_pages, SANDBOX_PHASE_RUN},
    ['H'] = {sandbox_frame_host, SANDBOX_PHASE_RUN},         /* broker.c */
    ['F'] = {sandbox_frame_fetch, SANDBOX_PHASE_RUN},        /* provider.c */
    ['W'] = {sandbox_frame_store, SANDBOX_PHASE_RUN},        /* provider.c */
    ['D'] = {sandbox_frame_dependencies, SANDBOX_PHASE_RUN}, /* dependencies.c */
    ['C'] = {sandbox_frame_call, SANDBOX_PHASE_RUN},         /* functions.c */
};

sandbox_outcome sandbox_dispatch_frame(sandbox_exchange *exchange, char type,
                                       const char *payload, size_t size) {
    const struct frame_row *row = &frame_table[(unsigned char)type];
    if (row->handler && (row->phases & exchange->phase))
        return row->handler(exchange, payload, size);
    /* Not expected now.  A compiling worker runs only trusted code, so this
     * is a fault that ends the compile; a program's worker carries on. */
    return exchange->phase == SANDBOX_PHASE_COMPILE ? SANDBOX_STOPPED : SANDBOX_CONTINUE;
}

sandbox_outcome sandbox_serve_worker(sandbox_exchange *exchange, int cancel_fd) {
    for (;;) {
        int ready = sandbox_wait_readable(exchange->fd, exchange->deadline, cancel_fd);
        if (ready == WAIT_CANCELLED) return SANDBOX_CANCELLED;
        if (ready == WAIT_DEADLINE) return SANDBOX_DEADLINE;
        char type;
        char *payload = NULL;
        size_t size = 0;
        if (ready < 0 || frame_read(exchange->fd, &type, &payload, &size, FRAME_MAX, NULL) != 0)
            return SANDBOX_GONE;
        sandbox_outcome next = sandbox_dispatch_frame(exchange, type, payload, size);
        free(payload);
        if (next != SANDBOX_CONTINUE) return next;
    }
}

/* --- a run ----------------------------------------------------------------------- */

static char *request_header(const cap_run_options *options, const cap_limits *limits,
                            size_t code_size, int session, int dependencies, int report_pages) {
    cJSON *header = cJSON_CreateObject();
    cJSON *limit_json = cJSON_AddObjectToObject(header, "limits");
    cJSON *files = cJSON_AddArrayToObject(header, "files");
    if (!header || !limit_json || !files) {
        cJSON_Delete(header);
        return NULL;
    }
    cJSON_AddStringToObject(header, "filename", options->filename ? options->filename : "main.py");
    cJSON_AddStringToObject(header, "cwd", GUEST_WORK_DIRECTORY);
    cJSON_AddBoolToObject(header, "traceback_to_stderr", options->traceback_to_stderr);
    cJSON_AddBoolToObject(header, "session", session);
    cJSON_AddNumberToObject(header, "code_size", (double)code_size);
    cJSON_AddBoolToObject(header, "return_json", options->return_json);
    cJSON_AddBoolToObject(header, "dependencies", dependencies);
    if (report_pages) cJSON_AddBoolToObject(header, "report_pages", 1);
    if (options->globals_json) {
        cJSON *globals = cJSON_Parse(options->globals_json);
        if (!cJSON_IsObject(globals)) {
            cJSON_Delete(globals);
            cJSON_Delete(header);
            return NULL;
        }
        cJSON_AddItemToObject(header, "globals", globals);
    }
    cJSON_AddNumberToObject(limit_json, "cpu_seconds", limits->cpu_seconds);
    cJSON_AddNumberToObject(limit_json, "memory_bytes", (double)limits->memory_bytes);
    cJSON_AddNumberToObject(limit_json, "disk_bytes", (double)limits->disk_bytes);
    cJSON_AddNumberToObject(limit_json, "disk_entries", (double)limits->disk_entries);
    for (size_t i = 0; i < options->file_count; i++) {
        cJSON *file = cJSON_CreateObject();
        cJSON_AddStringToObject(file, "path", options->files[i].path);
        cJSON_AddNumberToObject(file, "size", (double)options->files[i].size);
        cJSON_AddItemToArray(files, file);
    }
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    return text;
}

static void resolve_limits(const cap_limits *in, cap_limits *out) {
    *out = *in;
    if (!(out->wall_seconds > 0)) out->wall_seconds = DEFAULT_WALL_SECONDS;
    if (!(out->cpu_seconds > 0)) out->cpu_seconds = out->wall_seconds;
    if (!out->memory_bytes) out->memory_bytes = DEFAULT_MEMORY;
    if (!out->output_bytes) out->output_bytes = DEFAULT_MAX_OUTPUT;
    if (!out->disk_bytes) out->disk_bytes = DEFAULT_DISK;
    if (!out->disk_entries) out->disk_entries = DEFAULT_ENTRIES;
    if (!out->function_calls) out->function_calls = DEFAULT_FUNCTION_CALLS;
    if (!out->function_result_bytes) out->function_result_bytes = DEFAULT_FUNCTION_RESULT_BYTES;
    if (!(out->function_seconds > 0)) out->function_seconds = out->wall_seconds;
}

/* The worker ended without a result: say why, from how it ended. */
static void classify_death(cap_result *result, int wait_status, const cap_limits *limits) {
    int signal_number = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    if (signal_number == SIGPROF || signal_number == SIGXCPU) {
        result->status = CAP_STATUS_CPU_LIMIT;
        result->error =
            sandbox_format_message("CPU time limit of %g s exceeded", limits->cpu_seconds);
    } else if (signal_number == SIGSYS) {
        result->status = CAP_STATUS_CRASH;
        result->error = strdup("the worker made a forbidden system call and was stopped "
                               "(seccomp)");
    } else if (signal_number) {
        result->status = CAP_STATUS_CRASH;
        result->error = sandbox_format_message("the worker died with signal %d (%s)",
                                               signal_number, strsignal(signal_number));
    } else {
        result->status = CAP_STATUS_CRASH;
        result->error =
            sandbox_format_message("the worker exited (status %d) without a result",
                                   WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    }
    result->exit_code = signal_number ? 128 + signal_number : 1;
}

static int send_request(worker *w, const char *code, size_t code_size,
                        const cap_run_options *options, const cap_limits *limits, int session,
                        int dependencies, int report_pages) {
    char *header = request_header(options, limits, code_size, session, dependencies, report_pages);
    buffer request = {0};
    int rc = header ? 0 : -ENOMEM;
    if (!rc) rc = buffer_append(&request, header, strlen(header));
    if (!rc) rc = buffer_append(&request, "\n", 1);
    if (!rc) rc = buffer_append(&request, code, code_size);
    for (size_t i = 0; !rc && i < options->file_count; i++)
        rc = buffer_append(&request, options->files[i].data, options->files[i].size);
    if (!rc) rc = frame_write(w->fd, 'Q', request.data, request.size);
    free(header);
    buffer_free(&request);
    return rc;
}

/* Finishes a durable session's call `seq` with `result` and no snapshot,
 * its worker being gone or dropped: the session stays at its previous
 * state, and the call is recorded as it ended rather than left running. */
static void finish_without_worker(cap_sandbox *sandbox, const char *session, int64_t seq,
                                  const cap_result *result) {
    char *json = cap_result_to_json(result);
    char ignored[CAP_ERROR_SIZE];
    if (json)
        sandbox_durable_commit(sandbox, -1, NULL, session, seq, cap_status_name(result->status),
                               json, ignored);
    free(json);
}

int cap_sandbox_run(cap_sandbox *sandbox, const char *code, size_t code_size,
                    const cap_run_options *options, cap_result **out, char *error) {
    static const cap_run_options defaults = {.capture = 1};
    if (!sandbox || !out || (!code && code_size)) {
        sandbox_set_error(error, "cap_sandbox_run: missing argument");
        return CAP_EINVAL;
    }
    if (!options) options = &defaults;
    for (size_t i = 0; i < options->file_count; i++) {
        if (!options->files[i].path || (!options->files[i].data && options->files[i].size)) {
            sandbox_set_error(error, "cap_sandbox_run: input file %zu has no path or data", i);
            return CAP_EINVAL;
        }
    }
    if (options->globals_json) {
        cJSON *globals = cJSON_Parse(options->globals_json);
        int is_object = cJSON_IsObject(globals);
        cJSON_Delete(globals);
        if (!is_object) {
            sandbox_set_error(error, "cap_sandbox_run: globals_json is not a JSON object");
            return CAP_EINVAL;
        }
    }
    *out = NULL;
    if (code_size > MAX_CODE) {
        *out = sandbox_result_new(CAP_STATUS_RUN_ERROR, "the program is too large (over 64 MiB)");
        return *out ? CAP_OK : CAP_ENOMEM;
    }
    cap_limits limits;
    resolve_limits(&options->limits, &limits);

    /* Pick the worker: the session's, or a fresh one. */
    cap_sandbox_tidy(sandbox);
    session *s = NULL;
    worker w;
    if (options->session) {
        s = sandbox_session_find(sandbox, options->session);
        if (!s && !sandbox->config->store &&
            sandbox_session_was_evicted(sandbox, options->session)) {
            char message[300];
            snprintf(message, sizeof message,
                     "session %.200s no longer exists (evicted or idle too long); start a new one",
                     options->session);
            *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR, message);
            return *out ? CAP_OK : CAP_ENOMEM;
        }
        if (!s && sandbox->config->max_sessions == 0) {
            *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR, "sessions are disabled");
            return *out ? CAP_OK : CAP_ENOMEM;
        }
    }
    /* A durable session's call is begun in the store first; one that is not
     * live here continues from its latest snapshot in a fresh worker. */
    int durable = options->session && sandbox->config->store;
    int64_t seq = 0;
    durable_pages fresh_pages = {0}; /* a new worker's, until it is a session's */
    sandbox->interrupted_seq = 0;
    if (durable) {
        int live_here = s != NULL;
        int rc = sandbox_durable_begin(sandbox, code, code_size, options, &live_here, &seq, out,
                                       error);
        if (s && !live_here) { /* stale: the session went elsewhere since */
            sandbox_session_forget(sandbox, (int)(s - sandbox->sessions));
            s = NULL;
        }
        if (rc != CAP_OK || *out) return rc;
    }
    if (s) {
        w = s->worker;
    } else {
        int rc = sandbox_take_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
        if (durable) {
            char reason[CAP_ERROR_SIZE] = "out of memory";
            rc = sandbox_durable_fresh(sandbox, &fresh_pages);
            if (rc == CAP_OK)
                rc = sandbox_durable_restore(sandbox, w.fd, &fresh_pages, options->session, reason);
            if (rc != CAP_OK) {
                sandbox_worker_discard(&w);
                sandbox_durable_pages_free(&fresh_pages);
                char message[CAP_ERROR_SIZE + 64];
                snprintf(message, sizeof message, "session %.100s cannot be restored: %s",
                         options->session, reason);
                *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR, message);
                if (*out) finish_without_worker(sandbox, options->session, seq, *out);
                return *out ? CAP_OK : CAP_ENOMEM;
            }
        }
    }

    drain_cancellation(sandbox); /* a cancel meant for an earlier run */
    /* Armed before the worker can arm its CPU timer, so that with equal
     * limits the wall deadline always passes first. */
    double deadline = sandbox_now_seconds() + limits.wall_seconds;
    int dependencies = deps_source_count(sandbox->config->dependencies) > 0;
    /* A fresh run now and then says which pages it wrote, for the workers
     * forked after it (hot_pages.h). */
    int report_pages = !options->session && sandbox->runs_until_hot_report-- == 0;
    if (report_pages) sandbox->runs_until_hot_report = HOT_PAGES_EVERY - 1;
    if (send_request(&w, code, code_size, options, &limits, options->session != NULL,
                     dependencies, report_pages) != 0) {
        /* A pooled worker that died idle: the run goes to a new one. */
        sandbox_worker_discard(&w);
        if (s || durable) {
            if (durable) {
                sandbox_durable_pages_free(&fresh_pages);
                if (s) s->worker.pid = 0;
                if (s) sandbox_session_remove(sandbox, (int)(s - sandbox->sessions), 1);
                *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR,
                                          "the session's worker is gone; the session continues "
                                          "from its last saved state at the next call");
                if (*out) finish_without_worker(sandbox, options->session, seq, *out);
                return *out ? CAP_OK : CAP_ENOMEM;
            }
            s->worker.pid = 0; /* discarded just above: not twice */
            sandbox_session_remove(sandbox, (int)(s - sandbox->sessions), 1);
            *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR, "the session's worker is gone");
            return *out ? CAP_OK : CAP_ENOMEM;
        }
        int rc = sandbox_spawn_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
        if (send_request(&w, code, code_size, options, &limits, 0, dependencies, report_pages) !=
            0) {
            sandbox_worker_discard(&w);
            sandbox_set_error(error, "cannot hand the run to a worker");
            return CAP_ERUNTIME;
        }
    }
    if (!s) sandbox_refill_pool(sandbox); /* fork the next worker while this one runs */

    cap_result *result = calloc(1, sizeof *result);
    if (!result) {
        sandbox_worker_discard(&w);
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    sandbox_exchange run = {.sandbox = sandbox,
                            .phase = SANDBOX_PHASE_RUN,
                            .fd = w.fd,
                            .options = options,
                            .result = result,
                            .deadline = deadline,
                            .max_output = (size_t)limits.output_bytes,
                            .limits = &limits,
                            .report_pages = report_pages};
    sandbox_outcome end = sandbox_serve_worker(&run, sandbox->cancel_fd);
    int alive = end != SANDBOX_GONE;
    if (end == SANDBOX_CANCELLED) {
        result->status = CAP_STATUS_CANCELLED;
        result->exit_code = 128 + SIGKILL;
        result->error = strdup("the run was cancelled");
    } else if (end == SANDBOX_DEADLINE) {
        result->status = CAP_STATUS_TIMEOUT;
        result->exit_code = 128 + SIGKILL;
        result->error = sandbox_format_message("wall-clock limit of %g s exceeded",
                                               limits.wall_seconds);
    } else if (end == SANDBOX_GONE) {
        /* End of stream without a result: the worker died. */
        int status = 0;
        kill(w.pid, SIGKILL);
        sandbox_reap(w.pid, &status, 0);
        classify_death(result, status, &limits);
        /* With the CPU limit at its default (equal to the wall limit)
         * a busy loop hits both; the wall deadline, armed first, is the
         * one the caller set, so it names the outcome. */
        if (result->status == CAP_STATUS_CPU_LIMIT && sandbox_now_seconds() >= run.deadline) {
            free(result->error);
            result->status = CAP_STATUS_TIMEOUT;
            result->error = sandbox_format_message("wall-clock limit of %g s exceeded",
                                                   limits.wall_seconds);
        }
    }
    if (run.artifacts_dropped && options->capture) {
        char note[128];
        int n = snprintf(note, sizeof note, "\n[capsule: %zu artifacts dropped: over %u bytes]\n",
                         run.artifacts_dropped, MAX_ARTIFACT_BYTES);
        buffer_append(&run.err, note, (size_t)n);
    }
    if (run.output_exceeded && options->capture)
        buffer_append(&run.err, TRUNCATION_MARKER, sizeof TRUNCATION_MARKER - 1);
    if (run.output_exceeded && options->on_output)
        options->on_output(options->userdata, CAP_STDERR, TRUNCATION_MARKER,
                           sizeof TRUNCATION_MARKER - 1);
    result->out = run.out;
    result->err = run.err;

    int keep = s || options->session;
    if (durable) {
        /* The result is returned only once it is committed, with the state
         * it left (or, when the worker is gone, the state before it). */
        if (sandbox->interrupted_seq) {
            char note[160];
            snprintf(note, sizeof note,
                     "call %lld of this session was interrupted (the server stopped); the "
                     "session continued from its state before that call",
                     (long long)sandbox->interrupted_seq);
            sandbox_result_add_note(result, note);
        }
        char *json = cap_result_to_json(result);
        char reason[CAP_ERROR_SIZE] = "out of memory";
        durable_pages *known = s ? &s->pages : &fresh_pages;
        int saved = json ? sandbox_durable_commit(sandbox, end == SANDBOX_RESULT ? w.fd : -1,
                                                  known, options->session, seq,
                                                  cap_status_name(result->status), json, reason)
                         : CAP_ENOMEM;
        free(json);
        if (saved != CAP_OK) {
            result->status = CAP_STATUS_SESSION_ERROR;
            free(result->error);
            result->error = sandbox_format_message(
                "the call ran, but the session's state could not be saved (%.300s); the session "
                "continues from its state before this call", reason);
            end = SANDBOX_STOPPED; /* the worker is discarded below */
            finish_without_worker(sandbox, options->session, seq, result);
        } else if (!known->hashes) {
            end = SANDBOX_STOPPED; /* committed, but it cannot be described again */
        } else if (end == SANDBOX_RESULT &&
                   sandbox_durable_release_if_requested(sandbox, options->session)) {
            /* Another node asked for the session during this call: it is
             * parked at the snapshot just committed, and the worker goes. */
            end = SANDBOX_STOPPED;
            keep = 0;
        }
    }
    if (end == SANDBOX_RESULT && keep) {
        if (s) s->last_used = sandbox_now_seconds();
        else sandbox_session_add(sandbox, options->session, w, &fresh_pages);
    } else {
        if (alive) {
            if (end == SANDBOX_RESULT) {
                /* A fresh worker exits by itself after its result. */
                close(w.fd);
                sandbox_reap_later(sandbox, w.pid);
                w.pid = 0;
            } else {
                sandbox_worker_discard(&w);
            }
        } else {
            close(w.fd);
        }
        if (s) {
            s->worker.pid = 0; /* its worker was handled above: not twice */
            sandbox_session_remove(sandbox, (int)(s - sandbox->sessions), 1);
        }
    }
    sandbox_durable_pages_free(&fresh_pages);
    *out = result;
    return CAP_OK;
}

/* --- result accessors ------------------------------------------------------ */
