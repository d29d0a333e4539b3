/*
 * sandbox.c — the public API (include/capsule.h), host side: configure,
 * start the zygote, hand each run to a worker, enforce its limits, collect.
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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <math.h>
#include <poll.h>
#include <signal.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "../vfs/vfs.h"
#include "buffer.h"
#include "frame.h"
#include "http.h"
#include "zygote.h"
#include "../deps/deps.h"

#define DEFAULT_WALL_SECONDS 30.0
#define STARTUP_SECONDS 60
#define DEFAULT_MAX_OUTPUT (16u << 20)
#define MAX_CODE (64u << 20)
#define GUEST_ENOSPC 51 /* the guest's errno numbering is WASI's, not Linux's */
#define COMPILE_SECONDS 120.0 /* compiling a new environment's modules to bytecode */
#define COMPILE_DISK (1ull << 30)
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

/* --- runs ------------------------------------------------------------------------ */

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

static char *json_string(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) && item->valuestring ? strdup(item->valuestring) : NULL;
}

static char *format_message(const char *format, ...) {
    char text[512];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    return strdup(text);
}

/* Reads the worker's 'R' frame: how the guest ended, and the runner's JSON.
 * The runner's part is guest-controlled, so every field is checked. */
static void parse_result(cap_result *result, const char *payload, size_t size) {
    cJSON *outer = cJSON_ParseWithLength(payload, size);
    const cJSON *guest_text = cJSON_GetObjectItemCaseSensitive(outer, "guest");
    cJSON *guest = cJSON_IsString(guest_text) ? cJSON_Parse(guest_text->valuestring) : NULL;
    const cJSON *exit_code = cJSON_GetObjectItemCaseSensitive(outer, "exit_code");
    int memory_exhausted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(outer, "memory_exhausted"));
    result->exit_code = cJSON_IsNumber(exit_code) ? exit_code->valueint : 1;

    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(outer, "trapped"))) {
        result->status = memory_exhausted ? CAP_STATUS_MEMORY_LIMIT : CAP_STATUS_TRAP;
        result->exit_code = 128 + SIGABRT;
        char *message = json_string(outer, "message");
        result->error = memory_exhausted
                            ? format_message("memory limit reached: the interpreter could not "
                                             "recover (%s)", message ? message : "trap")
                            : message;
        if (memory_exhausted) free(message);
    } else if (cJSON_IsObject(guest)) {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(guest, "status");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(guest, "exit_code");
        const cJSON *exception = cJSON_GetObjectItemCaseSensitive(guest, "exception");
        const cJSON *error_number = cJSON_GetObjectItemCaseSensitive(guest, "errno");
        int success = cJSON_IsString(status) && strcmp(status->valuestring, "success") == 0;
        result->status = success ? CAP_STATUS_SUCCESS : CAP_STATUS_RUN_ERROR;
        if (cJSON_IsString(status) && strcmp(status->valuestring, "install-error") == 0)
            result->status = CAP_STATUS_INSTALL_ERROR;
        result->exit_code = cJSON_IsNumber(code) ? code->valueint : (success ? 0 : 1);
        result->return_value = json_string(guest, "return_value");
        result->error = json_string(guest, "error");
        if (!success && cJSON_IsString(exception)) {
            if (strcmp(exception->valuestring, "MemoryError") == 0)
                result->status = CAP_STATUS_MEMORY_LIMIT;
            else if (cJSON_IsNumber(error_number) && error_number->valueint == GUEST_ENOSPC)
                result->status = CAP_STATUS_DISK_LIMIT;
        }
    } else {
        /* No report from the runner: os._exit(), or it was tampered with. */
        result->status = result->exit_code == 0 ? CAP_STATUS_SUCCESS : CAP_STATUS_RUN_ERROR;
        if (result->exit_code != 0 || guest_text)
            result->error = strdup("the program ended without a result (os._exit, or it "
                                   "wrote to capsule's control channel)");
        if (guest_text && result->status == CAP_STATUS_SUCCESS) result->status = CAP_STATUS_RUN_ERROR;
    }
    cJSON_Delete(guest);
    cJSON_Delete(outer);
}

static const char *media_type(const char *name) {
    static const char *const types[][2] = {
        {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"},
        {"gif", "image/gif"}, {"svg", "image/svg+xml"}, {"webp", "image/webp"},
        {"pdf", "application/pdf"}, {"csv", "text/csv"}, {"json", "application/json"},
        {"txt", "text/plain"}, {"md", "text/markdown"}, {"html", "text/html"},
        {"htm", "text/html"}, {"xml", "application/xml"}, {"zip", "application/zip"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    };
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i][0]) == 0) return types[i][1];
    return "application/octet-stream";
}

/* An 'A' frame: "relative/name", NUL, bytes.  The worker is guest code's
 * neighbour, so the name is checked as strictly as any guest path: it must
 * already be normalised and relative.  Returns 0, or -EPROTO for garbage
 * and -EFBIG past the run's artifact budget. */
static int add_artifact(cap_result *result, const char *payload, size_t size,
                        size_t *artifact_bytes) {
    const char *end = memchr(payload, '\0', size);
    if (!end || end == payload || (size_t)(end - payload) >= VFS_PATH_MAX) return -EPROTO;
    char normalized[VFS_PATH_MAX];
    if (payload[0] == '/' || vfs_normalize("/", payload, (size_t)(end - payload), normalized) ||
        strcmp(normalized + 1, payload) != 0)
        return -EPROTO;
    size_t data_size = size - (size_t)(end - payload) - 1;
    if (data_size > MAX_ARTIFACT_BYTES - *artifact_bytes) return -EFBIG;
    cap_artifact *grown =
        realloc(result->artifacts, (result->artifact_count + 1) * sizeof *result->artifacts);
    if (!grown) return -ENOMEM;
    result->artifacts = grown;
    cap_artifact *artifact = &grown[result->artifact_count];
    unsigned char *data = malloc(data_size ? data_size : 1);
    char *name = strdup(payload), *type = strdup(media_type(payload));
    if (!data || !name || !type) {
        free(data);
        free(name);
        free(type);
        return -ENOMEM;
    }
    memcpy(data, end + 1, data_size);
    *artifact = (cap_artifact){name, type, data, data_size};
    result->artifact_count++;
    *artifact_bytes += data_size;
    return 0;
}

/* --- dependencies: the worker asks, the host installs ------------------------------ */

static char **json_strings(const cJSON *object, const char *name, size_t *count) {
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, name), *item;
    *count = 0;
    int size = cJSON_IsArray(array) ? cJSON_GetArraySize(array) : 0;
    if (size <= 0 || size > 1000) return NULL;
    char **strings = calloc((size_t)size, sizeof *strings);
    cJSON_ArrayForEach(item, array) {
        if (strings && cJSON_IsString(item) && strlen(item->valuestring) < 1024)
            strings[(*count)++] = item->valuestring; /* borrowed from the JSON */
    }
    return strings;
}

/* The request that makes a fresh worker compile the environment mounted
 * with it (the runner's _compile_environment): trusted code only, before
 * any program has run in that worker. */
static char *compile_header(const cap_config *config) {
    cJSON *header = cJSON_CreateObject();
    cJSON *limits = cJSON_AddObjectToObject(header, "limits");
    if (!header || !limits || !cJSON_AddArrayToObject(header, "files")) {
        cJSON_Delete(header);
        return NULL;
    }
    cJSON_AddStringToObject(header, "filename", "compile");
    cJSON_AddStringToObject(header, "cwd", GUEST_WORK_DIRECTORY);
    cJSON_AddNumberToObject(header, "code_size", 0);
    cJSON_AddStringToObject(header, "compile_environment", GUEST_SITE_PACKAGES);
    cJSON_AddStringToObject(header, "output", config->output_directory ? config->output_directory
                                                                       : GUEST_OUTPUT_DIRECTORY);
    cJSON_AddNumberToObject(limits, "cpu_seconds", COMPILE_SECONDS);
    cJSON_AddNumberToObject(limits, "memory_bytes", (double)DEFAULT_MEMORY);
    cJSON_AddNumberToObject(limits, "disk_bytes", (double)COMPILE_DISK);
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    return text;
}

/* Gives a freshly built environment its bytecode: a fresh worker mounts
 * it, compiles every module, and returns the .pyc files as artifacts,
 * which deps_finish_environment adds to the image.  Any failure only
 * leaves the environment without bytecode (imports compile from source). */
static void compile_environment(cap_sandbox *sandbox, deps_environment *environment,
                                const cap_run_options *options) {
    if (options->on_progress) options->on_progress(options->userdata, "compiling the packages");
    cap_result *compiled = calloc(1, sizeof *compiled);
    worker w;
    int ok = 0;
    if (compiled && sandbox_take_worker(sandbox, &w, NULL) == CAP_OK) {
        char *header = compile_header(sandbox->config);
        buffer request = {0};
        int rc = header ? buffer_append(&request, header, strlen(header)) : -ENOMEM;
        if (rc == 0) rc = buffer_append(&request, "\n", 1);
        if (rc == 0) rc = frame_write_fd(w.fd, 'Q', request.data, request.size, environment->fd);
        free(header);
        buffer_free(&request);
        double deadline = sandbox_now_seconds() + COMPILE_SECONDS;
        size_t artifact_bytes = 0;
        while (rc == 0 && sandbox_wait_readable(w.fd, deadline, -1) == WAIT_READABLE) {
            char type;
            char *payload = NULL;
            size_t size = 0;
            if (frame_read(w.fd, &type, &payload, &size, FRAME_MAX, NULL) != 0) break;
            if (type == 'A') {
                rc = add_artifact(compiled, payload, size, &artifact_bytes);
            } else if (type == 'R') {
                parse_result(compiled, payload, size);
                ok = compiled->status == CAP_STATUS_SUCCESS;
                rc = 1;
            } else if (type != 'O' && type != 'E') {
                rc = -EPROTO;
            }
            free(payload);
        }
        if (ok) {
            close(w.fd); /* it exits by itself after its result */
            sandbox_reap_later(sandbox, w.pid);
        } else {
            sandbox_worker_discard(&w);
        }
    }
    size_t count = ok ? compiled->artifact_count : 0;
    deps_file *files = count ? calloc(count, sizeof *files) : NULL;
    for (size_t i = 0; files && i < count; i++)
        files[i] = (deps_file){compiled->artifacts[i].name, compiled->artifacts[i].data,
                               compiled->artifacts[i].size};
    char message[DEPS_MESSAGE_SIZE] = "";
    deps_finish_environment(sandbox->config->dependencies, environment, files,
                            files ? count : 0, message);
    free(files);
    if (compiled) cap_result_free(compiled);
}

/* A 'D' frame: the runner's wanted packages (untrusted JSON: only lists of
 * short strings are taken).  The answer is JSON, with the environment's
 * image descriptor when something is installed.  Returns the seconds spent,
 * which do not count against the run's wall-clock limit. */
static double answer_dependencies(cap_sandbox *sandbox, int fd, const char *payload, size_t size,
                                  const cap_run_options *options, cap_result *result) {
    cap_config *config = sandbox->config;
    double started = sandbox_now_seconds();
    cJSON *wanted = cJSON_ParseWithLength(payload, size);
    deps_request request = {0};
    request.requirements = json_strings(wanted, "requirements", &request.requirement_count);
    request.imports = json_strings(wanted, "imports", &request.import_count);
    request.optional_imports = json_strings(wanted, "optional", &request.optional_count);
    const cJSON *python = cJSON_GetObjectItemCaseSensitive(wanted, "requires_python");
    if (cJSON_IsString(python) && strlen(python->valuestring) < 256)
        request.requires_python = python->valuestring;
    deps_environment environment;
    char *message = NULL;
    int rc = !cJSON_IsObject(wanted) ? (message = strdup("malformed request"), -1)
             : config->dependencies
                 ? deps_prepare(config->dependencies, &request, options->on_progress,
                                options->userdata, &environment, &message)
                 : -1;
    if (rc == 0 && environment.needs_bytecode) compile_environment(sandbox, &environment, options);
    cJSON *answer = cJSON_CreateObject();
    cJSON_AddBoolToObject(answer, "ok", rc == 0);
    if (rc == 0) {
        cJSON_AddStringToObject(answer, "key", environment.key);
        for (size_t i = 0; i < result->dependency_count; i++) free(result->dependencies[i]);
        free(result->dependencies);
        result->dependencies = environment.installed; /* the result takes them */
        result->dependency_count = environment.installed_count;
        environment.installed = NULL;
        environment.installed_count = 0;
    } else {
        cJSON_AddStringToObject(answer, "error", message ? message : "no package sources");
    }
    char *text = cJSON_PrintUnformatted(answer);
    if (text && rc == 0 && environment.fd >= 0)
        frame_write_fd(fd, 'D', text, strlen(text), environment.fd);
    else if (text)
        frame_write(fd, 'D', text, strlen(text));
    free(text);
    cJSON_Delete(answer);
    if (rc == 0) deps_environment_free(&environment);
    free(message);
    free(request.requirements);
    free(request.imports);
    free(request.optional_imports);
    cJSON_Delete(wanted);
    return sandbox_now_seconds() - started;
}

/* The worker ended without a result: say why, from how it ended. */
static void classify_death(cap_result *result, int wait_status, const cap_limits *limits) {
    int signal_number = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    if (signal_number == SIGPROF || signal_number == SIGXCPU) {
        result->status = CAP_STATUS_CPU_LIMIT;
        result->error = format_message("CPU time limit of %g s exceeded", limits->cpu_seconds);
    } else if (signal_number == SIGSYS) {
        result->status = CAP_STATUS_CRASH;
        result->error = strdup("the worker made a forbidden system call and was stopped "
                               "(seccomp)");
    } else if (signal_number) {
        result->status = CAP_STATUS_CRASH;
        result->error = format_message("the worker died with signal %d (%s)", signal_number,
                                       strsignal(signal_number));
    } else {
        result->status = CAP_STATUS_CRASH;
        result->error = format_message("the worker exited (status %d) without a result",
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

static cap_result *result_new(cap_status status, const char *error) {
    cap_result *result = calloc(1, sizeof *result);
    if (result) {
        result->status = status;
        result->exit_code = status == CAP_STATUS_SUCCESS ? 0 : 1;
        result->error = error ? strdup(error) : NULL;
    }
    return result;
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
        *out = result_new(CAP_STATUS_RUN_ERROR, "the program is too large (over 64 MiB)");
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
            *out = result_new(CAP_STATUS_SESSION_ERROR, message);
            return *out ? CAP_OK : CAP_ENOMEM;
        }
        if (!s && sandbox->config->max_sessions == 0) {
            *out = result_new(CAP_STATUS_SESSION_ERROR, "sessions are disabled");
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
            *out = result_new(CAP_STATUS_SESSION_ERROR, "the session's worker is gone");
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
            result->error = format_message("wall-clock limit of %g s exceeded",
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
                result->error = format_message("wall-clock limit of %g s exceeded",
                                               limits.wall_seconds);
            }
            break;
        }
        if (type == 'O' || type == 'E') {
            if (!deliver_output(&run, type == 'O' ? CAP_STDOUT : CAP_STDERR, payload, size)) {
                result->status = CAP_STATUS_OUTPUT_LIMIT;
                result->exit_code = 1;
                result->error = format_message("output limit of %zu bytes exceeded; the run was "
                                               "stopped", run.max_output);
                finished = 1;
            }
        } else if (type == 'A') {
            int artifact_rc = add_artifact(result, payload, size, &artifact_bytes);
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
            deadline += answer_dependencies(sandbox, w.fd, payload, size, options, result);
        } else if (type == 'R') {
            parse_result(result, payload, size);
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

cap_status cap_result_status(const cap_result *result) {
    return result->status;
}

const char *cap_status_name(cap_status status) {
    switch (status) {
    case CAP_STATUS_SUCCESS: return "success";
    case CAP_STATUS_RUN_ERROR: return "run-error";
    case CAP_STATUS_TRAP: return "trap";
    case CAP_STATUS_TIMEOUT: return "timeout";
    case CAP_STATUS_CPU_LIMIT: return "cpu-limit";
    case CAP_STATUS_MEMORY_LIMIT: return "memory-limit";
    case CAP_STATUS_OUTPUT_LIMIT: return "output-limit";
    case CAP_STATUS_DISK_LIMIT: return "disk-limit";
    case CAP_STATUS_CRASH: return "crash";
    case CAP_STATUS_SESSION_ERROR: return "session-error";
    case CAP_STATUS_INSTALL_ERROR: return "install-error";
    case CAP_STATUS_CANCELLED: return "cancelled";
    }
    return "unknown";
}

int cap_result_exit_code(const cap_result *result) {
    return result->exit_code;
}

const char *cap_result_stdout(const cap_result *result, size_t *size) {
    *size = result->out.size;
    return result->out.data ? result->out.data : "";
}

const char *cap_result_stderr(const cap_result *result, size_t *size) {
    *size = result->err.size;
    return result->err.data ? result->err.data : "";
}

const char *cap_result_return_value(const cap_result *result) {
    return result->return_value;
}

const char *cap_result_error(const cap_result *result) {
    return result->error;
}

size_t cap_result_artifact_count(const cap_result *result) {
    return result->artifact_count;
}

const cap_artifact *cap_result_artifact(const cap_result *result, size_t index) {
    return index < result->artifact_count ? &result->artifacts[index] : NULL;
}

size_t cap_result_dependency_count(const cap_result *result) {
    return result->dependency_count;
}

const char *cap_result_dependency(const cap_result *result, size_t index) {
    return index < result->dependency_count ? result->dependencies[index] : NULL;
}

static void add_text(cJSON *object, const char *name, const char *data, size_t size) {
    if (!data) {
        cJSON_AddNullToObject(object, name);
        return;
    }
    char *text = utf8_sanitize(data, size);
    cJSON_AddStringToObject(object, name, text ? text : "");
    free(text);
}

char *cap_result_to_json(const cap_result *result) {
    cJSON *json = cJSON_CreateObject();
    if (!json) return NULL;
    cJSON_AddStringToObject(json, "status", cap_status_name(result->status));
    cJSON_AddNumberToObject(json, "exit_code", result->exit_code);
    add_text(json, "stdout", result->out.data ? result->out.data : "", result->out.size);
    add_text(json, "stderr", result->err.data ? result->err.data : "", result->err.size);
    add_text(json, "return_value", result->return_value,
             result->return_value ? strlen(result->return_value) : 0);
    add_text(json, "error", result->error, result->error ? strlen(result->error) : 0);
    cJSON *dependencies = cJSON_AddArrayToObject(json, "dependencies");
    for (size_t i = 0; dependencies && i < result->dependency_count; i++)
        cJSON_AddItemToArray(dependencies, cJSON_CreateString(result->dependencies[i]));
    cJSON *artifacts = cJSON_AddArrayToObject(json, "artifacts");
    for (size_t i = 0; artifacts && i < result->artifact_count; i++) {
        cJSON *artifact = cJSON_CreateObject();
        cJSON_AddStringToObject(artifact, "name", result->artifacts[i].name);
        cJSON_AddStringToObject(artifact, "media_type", result->artifacts[i].media_type);
        cJSON_AddNumberToObject(artifact, "size", (double)result->artifacts[i].size);
        cJSON_AddItemToArray(artifacts, artifact);
    }
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

void cap_result_free(cap_result *result) {
    if (!result) return;
    buffer_free(&result->out);
    buffer_free(&result->err);
    free(result->return_value);
    free(result->error);
    for (size_t i = 0; i < result->artifact_count; i++) {
        free((char *)result->artifacts[i].name);
        free((char *)result->artifacts[i].media_type);
        free((unsigned char *)result->artifacts[i].data);
    }
    free(result->artifacts);
    for (size_t i = 0; i < result->dependency_count; i++) free(result->dependencies[i]);
    free(result->dependencies);
    free(result);
}
