/*
 * dependencies.c — packages a program imports ('D' frames).  The runner
 * says what it wants (a PEP 723 block, or its imports); src/deps/ resolves
 * and installs it into a read-only image whose descriptor goes back with
 * the answer.  A new environment is first compiled to bytecode, once, by a
 * fresh worker that runs only the runner's trusted _compile_environment.
 */
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../help/help.h"
#include "frame.h"

#define COMPILE_SECONDS 120.0 /* compiling a new environment's modules to bytecode */
#define COMPILE_DISK (1ull << 30)

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
    cJSON_AddNumberToObject(limits, "disk_entries", 1 << 20); /* one .pyc per module */
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
    static const cap_run_options quiet = {0}; /* no capture, no callbacks */
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
        /* Its frames go through the run's dispatch table, in the compile
         * phase: output is dropped, and a request or anything unexpected
         * ends the compile. */
        sandbox_exchange exchange = {.sandbox = sandbox,
                                     .phase = SANDBOX_PHASE_COMPILE,
                                     .fd = w.fd,
                                     .options = &quiet,
                                     .result = compiled,
                                     .deadline = sandbox_now_seconds() + COMPILE_SECONDS,
                                     .max_output = SIZE_MAX};
        ok = rc == 0 && sandbox_serve_worker(&exchange, -1) == SANDBOX_RESULT &&
             compiled->status == CAP_STATUS_SUCCESS;
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
    if (rc == 0) help_add_environment(config, environment.fd, options->principal); /* docs */
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
        free_strings(result->notes, result->note_count);
        result->notes = environment.notes;
        result->note_count = environment.note_count;
        environment.notes = NULL;
        environment.note_count = 0;
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

sandbox_outcome sandbox_frame_dependencies(sandbox_exchange *exchange, const char *payload,
                                           size_t size) {
    exchange->deadline += answer_dependencies(exchange->sandbox, exchange->fd, payload, size,
                                              exchange->options, exchange->result);
    return SANDBOX_CONTINUE;
}
