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

#define DEFAULT_WALL_SECONDS 30.0
#define DEFAULT_MAX_OUTPUT (16u << 20)
#define MAX_CODE (64u << 20)
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

typedef struct run_state {
    const cap_run_options *options;
    buffer out, err;
    size_t output_total, max_output;
    int output_exceeded;
} run_state;

/* Delivers output within the cap; returns 0 once the cap is passed. */
static int deliver_output(run_state *run, cap_stream stream, const char *data, size_t size) {
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

static char *request_header(const cap_run_options *options, const cap_limits *limits,
                            size_t code_size, int session, int dependencies) {
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
}

/* The worker ended without a result: say why, from how it ended. */
static void classify_death(cap_result *result, int wait_status, const cap_limits *limits) {
    int signal_number = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    if (signal_number == SIGPROF || signal_number == SIGXCPU) {
        result->status = CAP_STATUS_CPU_LIMIT;
        result->error = sandbox_format_message("CPU time limit of %g s exceeded", limits->cpu_seconds);
    } else if (signal_number == SIGSYS) {
        result->status = CAP_STATUS_CRASH;
        result->error = strdup("the worker made a forbidden system call and was stopped "
                               "(seccomp)");
    } else if (signal_number) {
        result->status = CAP_STATUS_CRASH;
        result->error = sandbox_format_message("the worker died with signal %d (%s)", signal_number,
                                       strsignal(signal_number));
    } else {
        result->status = CAP_STATUS_CRASH;
        result->error = sandbox_format_message("the worker exited (status %d) without a result",
                                       WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    }
    result->exit_code = signal_number ? 128 + signal_number : 1;
}

static int send_request(worker *w, const char *code, size_t code_size,
                        const cap_run_options *options, const cap_limits *limits, int session,
                        int dependencies) {
    char *header = request_header(options, limits, code_size, session, dependencies);
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
    sandbox_reap_exiting(sandbox, 0);
    sandbox_sessions_expire(sandbox);
    session *s = NULL;
    worker w;
    if (options->session) {
        s = sandbox_session_find(sandbox, options->session);
        if (!s && sandbox_session_was_evicted(sandbox, options->session)) {
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
    if (s) {
        w = s->worker;
    } else {
        int rc = sandbox_take_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
    }

    drain_cancellation(sandbox); /* a cancel meant for an earlier run */
    /* Armed before the worker can arm its CPU timer, so that with equal
     * limits the wall deadline always passes first. */
    double deadline = sandbox_now_seconds() + limits.wall_seconds;
    int dependencies = deps_source_count(sandbox->config->dependencies) > 0;
    if (send_request(&w, code, code_size, options, &limits, options->session != NULL,
                     dependencies) != 0) {
        /* A pooled worker that died idle: the run goes to a new one. */
        sandbox_worker_discard(&w);
        if (s) {
            s->worker.pid = 0; /* discarded just above: not twice */
            sandbox_session_remove(sandbox, (int)(s - sandbox->sessions), 1);
            *out = sandbox_result_new(CAP_STATUS_SESSION_ERROR, "the session's worker is gone");
            return *out ? CAP_OK : CAP_ENOMEM;
        }
        int rc = sandbox_spawn_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
        if (send_request(&w, code, code_size, options, &limits, 0, dependencies) != 0) {
            sandbox_worker_discard(&w);
            sandbox_set_error(error, "cannot hand the run to a worker");
            return CAP_ERUNTIME;
        }
    }
    if (!s) sandbox_refill_pool(sandbox); /* fork the next worker while this one runs */

    run_state run = {.options = options, .max_output = (size_t)limits.output_bytes};
    cap_result *result = calloc(1, sizeof *result);
    if (!result) {
        sandbox_worker_discard(&w);
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int finished = 0, alive = 1;
    size_t artifact_bytes = 0, artifacts_dropped = 0;
    while (!finished) {
        int ready = sandbox_wait_readable(w.fd, deadline, sandbox->cancel_fd);
        if (ready == WAIT_CANCELLED) {
            result->status = CAP_STATUS_CANCELLED;
            result->exit_code = 128 + SIGKILL;
            result->error = strdup("the run was cancelled");
            break;
        }
        if (ready == WAIT_DEADLINE) {
            result->status = CAP_STATUS_TIMEOUT;
            result->exit_code = 128 + SIGKILL;
            result->error = sandbox_format_message("wall-clock limit of %g s exceeded",
                                           limits.wall_seconds);
            break;
        }
        char type;
        char *payload = NULL;
        size_t size = 0;
        int rc = ready < 0 ? ready : frame_read(w.fd, &type, &payload, &size, FRAME_MAX, NULL);
        if (rc != 0) {
            /* End of stream without a result: the worker died. */
            int status = 0;
            kill(w.pid, SIGKILL);
            sandbox_reap(w.pid, &status, 0);
            alive = 0;
            classify_death(result, status, &limits);
            /* With the CPU limit at its default (equal to the wall limit)
             * a busy loop hits both; the wall deadline, armed first, is the
             * one the caller set, so it names the outcome. */
            if (result->status == CAP_STATUS_CPU_LIMIT && sandbox_now_seconds() >= deadline) {
                free(result->error);
                result->status = CAP_STATUS_TIMEOUT;
                result->error = sandbox_format_message("wall-clock limit of %g s exceeded",
                                               limits.wall_seconds);
            }
            break;
        }
        if (type == 'O' || type == 'E') {
            if (!deliver_output(&run, type == 'O' ? CAP_STDOUT : CAP_STDERR, payload, size)) {
                result->status = CAP_STATUS_OUTPUT_LIMIT;
                result->exit_code = 1;
                result->error = sandbox_format_message("output limit of %zu bytes exceeded; the run was "
                                               "stopped", run.max_output);
                finished = 1;
            }
        } else if (type == 'A') {
            int artifact_rc = sandbox_add_artifact(result, payload, size, &artifact_bytes);
            if (artifact_rc == -EPROTO) {
                result->status = CAP_STATUS_CRASH;
                result->exit_code = 1;
                result->error = strdup("the worker sent a malformed artifact and was stopped");
                finished = 1;
            } else if (artifact_rc) {
                artifacts_dropped++;
            }
        } else if (type == 'H') {
            sandbox_answer_host(sandbox->config, w.fd, payload, size);
        } else if (type == 'F') {
            /* A failed answer means the worker is gone; the next read sees it. */
            sandbox_answer_fetch(sandbox->config, w.fd, payload, size, deadline);
        } else if (type == 'W') {
            sandbox_answer_store(sandbox->config, w.fd, payload, size);
        } else if (type == 'D') {
            deadline += sandbox_answer_dependencies(sandbox, w.fd, payload, size, options, result);
        } else if (type == 'R') {
            sandbox_parse_result(result, payload, size);
            finished = 2;
        } else if (type == 'X') {
            result->status = CAP_STATUS_CRASH;
            result->error = strdup(payload);
            finished = 1;
        }
        free(payload);
    }
    if (artifacts_dropped && options->capture) {
        char note[128];
        int n = snprintf(note, sizeof note, "\n[capsule: %zu artifacts dropped: over %u bytes]\n",
                         artifacts_dropped, MAX_ARTIFACT_BYTES);
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
    if (finished == 2 && keep) {
        if (s) s->last_used = sandbox_now_seconds();
        else sandbox_session_add(sandbox, options->session, w);
    } else {
        if (alive) {
            if (finished == 2) {
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
    *out = result;
    return CAP_OK;
}

/* --- result accessors ------------------------------------------------------ */
