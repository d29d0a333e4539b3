/*
 * sandbox.c — the public API (include/capsule.h): configure, build the
 * guest's world (file system, stdio, control channel), run, collect.
 *
 * Data path of a run: the request (options + code) sits behind the control
 * channel; the guest runner reads it, runs the code, and writes a JSON
 * result back to the channel.  stdout/stderr writes arrive through device
 * files and are captured and/or streamed.
 */
#include "capsule.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "../vfs/vfs.h"
#include "../wasi/wasi.h"
#include "buffer.h"

#define STDLIB_GUEST_PATH "/usr/local/lib/python3.11"
#define WORK_DIRECTORY "/work"
#define CHANNEL_FD 4
#define MAX_IMAGES 16
#define MAX_ENV 256
#define DEFAULT_MAX_OUTPUT (16u << 20)
#define MAX_RESULT (64u << 20)
#define TRUNCATION_MARKER "\n[capsule: output truncated]\n"

static void set_error(char *error, const char *format, ...) {
    if (!error) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, CAP_ERROR_SIZE, format, args);
    va_end(args);
}

/* --- configuration ------------------------------------------------------ */

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
};

static char *default_stdlib_path(void) {
    char executable[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", executable, sizeof executable - 1);
    if (n <= 0) return strdup("stdlib.img");
    executable[n] = '\0';
    char *slash = strrchr(executable, '/');
    if (slash) slash[1] = '\0';
    size_t size = strlen(executable) + sizeof "stdlib.img";
    char *path = malloc(size);
    if (path) snprintf(path, size, "%sstdlib.img", slash ? executable : "");
    return path;
}

cap_config *cap_config_new(void) {
    cap_config *config = calloc(1, sizeof *config);
    if (!config) return NULL;
    config->images[0].host_path = default_stdlib_path();
    config->images[0].guest_path = strdup(STDLIB_GUEST_PATH);
    config->image_count = 1;
    if (!config->images[0].host_path || !config->images[0].guest_path) {
        cap_config_free(config);
        return NULL;
    }
    return config;
}

void cap_config_free(cap_config *config) {
    if (!config) return;
    for (int i = 0; i < config->image_count; i++) {
        free(config->images[i].host_path);
        free(config->images[i].guest_path);
        vfs_image_release(config->images[i].image);
    }
    for (int i = 0; i < config->env_count; i++) free(config->env[i]);
    free(config);
}

static int set_image(image_mount *mount, const char *host_path, const char *guest_path,
                     char *error) {
    char *host = strdup(host_path), *guest = strdup(guest_path);
    if (!host || !guest) {
        free(host);
        free(guest);
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    free(mount->host_path);
    free(mount->guest_path);
    vfs_image_release(mount->image);
    *mount = (image_mount){host, guest, NULL};
    return CAP_OK;
}

int cap_config_set_stdlib(cap_config *config, const char *image_path, char *error) {
    if (!config || !image_path) {
        set_error(error, "cap_config_set_stdlib: missing argument");
        return CAP_EINVAL;
    }
    return set_image(&config->images[0], image_path, STDLIB_GUEST_PATH, error);
}

int cap_config_add_image(cap_config *config, const char *image_path, const char *guest_path,
                         char *error) {
    if (!config || !image_path || !guest_path || guest_path[0] != '/') {
        set_error(error, "cap_config_add_image: need an image and an absolute guest path");
        return CAP_EINVAL;
    }
    if (config->image_count == MAX_IMAGES) {
        set_error(error, "too many images (at most %d)", MAX_IMAGES);
        return CAP_EINVAL;
    }
    int rc = set_image(&config->images[config->image_count], image_path, guest_path, error);
    if (rc == CAP_OK) config->image_count++;
    return rc;
}

int cap_config_add_env(cap_config *config, const char *name, const char *value, char *error) {
    if (!config || !name || !value || !*name || strchr(name, '=')) {
        set_error(error, "environment variable names must be non-empty and contain no '='");
        return CAP_EINVAL;
    }
    if (config->env_count == MAX_ENV) {
        set_error(error, "too many environment variables (at most %d)", MAX_ENV);
        return CAP_EINVAL;
    }
    size_t size = strlen(name) + strlen(value) + 2;
    char *entry = malloc(size);
    if (!entry) {
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    snprintf(entry, size, "%s=%s", name, value);
    config->env[config->env_count++] = entry;
    return CAP_OK;
}

/* --- sandboxes ------------------------------------------------------------ */

struct cap_sandbox {
    cap_config *config;
    vfs *fs;
    void *scratch; /* the root memfs */
    int used;      /* a sandbox runs once */
};

int cap_sandbox_new(cap_config *config, cap_sandbox **out, char *error) {
    if (!config || !out) {
        set_error(error, "cap_sandbox_new: missing argument");
        return CAP_EINVAL;
    }
    for (int i = 0; i < config->image_count; i++) {
        image_mount *m = &config->images[i];
        if (m->image) continue;
        int rc = vfs_image_open(m->host_path, &m->image);
        if (rc) {
            set_error(error, "cannot open image %s: %s", m->host_path,
                      rc == -EINVAL ? "not a capsule image, or damaged" : strerror(-rc));
            return CAP_EIO;
        }
    }
    cap_sandbox *sandbox = calloc(1, sizeof *sandbox);
    if (!sandbox || !(sandbox->fs = vfs_new())) {
        free(sandbox);
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    sandbox->config = config;
    const vfs_backend_ops *ops;
    int rc = vfs_memfs_new(0, &ops, &sandbox->scratch);
    if (rc == 0) rc = vfs_mount(sandbox->fs, "/", ops, sandbox->scratch, 0);
    for (int i = 0; rc == 0 && i < config->image_count; i++) {
        void *backend;
        vfs_image_backend(config->images[i].image, &ops, &backend);
        rc = vfs_mount(sandbox->fs, config->images[i].guest_path, ops, backend, 1);
    }
    if (rc == 0) rc = vfs_mkdir(sandbox->fs, "/tmp");
    if (rc == 0) rc = vfs_mkdir(sandbox->fs, WORK_DIRECTORY);
    if (rc) {
        set_error(error, "cannot set up the sandbox file system: %s", strerror(-rc));
        cap_sandbox_free(sandbox);
        return CAP_ERUNTIME;
    }
    *out = sandbox;
    return CAP_OK;
}

void cap_sandbox_free(cap_sandbox *sandbox) {
    if (!sandbox) return;
    vfs_free(sandbox->fs);
    free(sandbox);
}

int cap_sandbox_add_file(cap_sandbox *sandbox, const char *guest_path, const void *data,
                         size_t size, char *error) {
    char path[VFS_PATH_MAX];
    if (!sandbox || !guest_path || (!data && size)) {
        set_error(error, "cap_sandbox_add_file: missing argument");
        return CAP_EINVAL;
    }
    int rc = vfs_normalize(WORK_DIRECTORY, guest_path, strlen(guest_path), path);
    if (rc == 0) {
        /* Only the scratch file system takes files by value. */
        vfs_metadata st;
        char parent[VFS_PATH_MAX];
        strcpy(parent, path);
        *strrchr(parent, '/') = '\0';
        if (*parent && vfs_stat(sandbox->fs, parent, &st) == 0 && st.type != VFS_DIRECTORY)
            rc = -ENOTDIR;
    }
    if (rc == 0) {
        vfs_file *probe;
        rc = vfs_open(sandbox->fs, path, VFS_O_READ, &probe);
        if (rc == 0) vfs_file_release(probe);
        rc = (rc == 0 || rc == -ENOENT) ? vfs_memfs_put(sandbox->scratch, path + 1, data, size)
                                        : rc;
    }
    if (rc) {
        set_error(error, "cannot add %s to the sandbox: %s", guest_path, strerror(-rc));
        return CAP_EINVAL;
    }
    return CAP_OK;
}

/* --- device files: stdio and the control channel ------------------------- */

typedef struct run_state {
    const cap_run_options *options;
    buffer out, err;          /* captured output */
    size_t output_total;      /* bytes written to stdout+stderr */
    size_t max_output;
    int truncated;
    const char *request;
    size_t request_size;
    buffer result;            /* JSON written by the runner */
} run_state;

typedef struct device {
    vfs_file base;
    run_state *run;
    int kind; /* 0 stdin, 1 stdout, 2 stderr, 3 channel */
} device;

static int device_read(vfs_file *file, void *data, size_t size, uint64_t offset, size_t *done) {
    (void)offset;
    device *d = (device *)file;
    *done = 0;
    if (d->kind == 3) {
        /* The request is handed out once, front to back. */
        run_state *run = d->run;
        *done = size < run->request_size ? size : run->request_size;
        memcpy(data, run->request, *done);
        run->request += *done;
        run->request_size -= *done;
    }
    return 0; /* stdin is empty: the guest reads end of file */
}

static int device_write(vfs_file *file, const void *data, size_t size, uint64_t offset,
                        size_t *done) {
    (void)offset;
    device *d = (device *)file;
    run_state *run = d->run;
    *done = size; /* output beyond the cap is dropped, not refused */
    if (d->kind == 3) {
        /* The runner's result is small; a flood here is the guest's doing. */
        return run->result.size + size > MAX_RESULT ? -EFBIG
                                                    : buffer_append(&run->result, data, size);
    }
    size_t room = run->max_output > run->output_total ? run->max_output - run->output_total : 0;
    size_t kept = size < room ? size : room;
    run->output_total += kept;
    if (kept < size && !run->truncated) run->truncated = 1;
    if (kept == 0) return 0;
    const cap_run_options *o = run->options;
    if (o->capture && buffer_append(d->kind == 1 ? &run->out : &run->err, data, kept))
        return -ENOSPC;
    if (o->on_output) o->on_output(o->userdata, d->kind == 1 ? CAP_STDOUT : CAP_STDERR, data, kept);
    return 0;
}

static int device_stat(vfs_file *file, vfs_metadata *st) {
    memset(st, 0, sizeof *st);
    st->type = VFS_CHARACTER_DEVICE;
    st->inode = (uint64_t)((device *)file)->kind + 1000000;
    st->links = 1;
    return 0;
}

static int device_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EINVAL;
}

static int device_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    (void)file, (void)cookie, (void)entry;
    return -ENOTDIR;
}

static void device_close(vfs_file *file) {
    free(file);
}

static const vfs_file_ops device_ops = {
    device_read, device_write, device_stat, device_truncate, device_readdir, device_close,
};

static vfs_file *device_new(run_state *run, int kind) {
    device *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->base.ops = &device_ops;
    d->base.type = VFS_CHARACTER_DEVICE;
    d->base.refcount = 1;
    d->run = run;
    d->kind = kind;
    return &d->base;
}

/* --- results -------------------------------------------------------------- */

struct cap_result {
    cap_status status;
    int exit_code;
    buffer out, err;
    char *return_value;
    char *error;
};

static char *json_string(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) && item->valuestring ? strdup(item->valuestring) : NULL;
}

/* Reads the runner's JSON.  The guest wrote it, so every field is checked
 * and a missing or malformed result is itself reported as an error. */
static void parse_guest_result(cap_result *result, const buffer *raw) {
    cJSON *json = raw->size ? cJSON_ParseWithLength(raw->data, raw->size) : NULL;
    if (!cJSON_IsObject(json)) {
        result->status = CAP_STATUS_RUN_ERROR;
        if (!result->error)
            result->error = strdup("the program ended without reporting a result "
                                   "(it closed or wrote to capsule's control channel)");
        cJSON_Delete(json);
        return;
    }
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(json, "status");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(json, "exit_code");
    result->status = cJSON_IsString(status) && strcmp(status->valuestring, "success") == 0
                         ? CAP_STATUS_SUCCESS
                         : CAP_STATUS_RUN_ERROR;
    if (cJSON_IsNumber(code)) result->exit_code = code->valueint;
    result->return_value = json_string(json, "return_value");
    result->error = json_string(json, "error");
    cJSON_Delete(json);
}

static char *request_header(const cap_run_options *options) {
    cJSON *header = cJSON_CreateObject();
    if (!header) return NULL;
    cJSON_AddStringToObject(header, "filename", options->filename ? options->filename : "main.py");
    cJSON_AddStringToObject(header, "cwd", WORK_DIRECTORY);
    cJSON_AddBoolToObject(header, "traceback_to_stderr", options->traceback_to_stderr);
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    return text;
}

int cap_sandbox_run(cap_sandbox *sandbox, const char *code, size_t code_size,
                    const cap_run_options *options, cap_result **out, char *error) {
    static const cap_run_options defaults = {NULL, NULL, NULL, 1, 0};
    if (!sandbox || !out || (!code && code_size)) {
        set_error(error, "cap_sandbox_run: missing argument");
        return CAP_EINVAL;
    }
    if (sandbox->used) {
        set_error(error, "a sandbox runs code once; create a new one for the next run");
        return CAP_EINVAL;
    }
    sandbox->used = 1;
    if (!options) options = &defaults;

    cap_result *result = calloc(1, sizeof *result);
    run_state run = {.options = options, .max_output = DEFAULT_MAX_OUTPUT};
    char *header = request_header(options);
    buffer request = {0};
    int rc = result && header ? 0 : -ENOMEM;
    if (rc == 0) rc = buffer_append(&request, header, strlen(header));
    if (rc == 0) rc = buffer_append(&request, "\n", 1);
    if (rc == 0) rc = buffer_append(&request, code, code_size);
    free(header);
    run.request = request.data;
    run.request_size = request.size;

    char channel_arg[96];
    snprintf(channel_arg, sizeof channel_arg, "import _capsule_runner; _capsule_runner.main(%d)",
             CHANNEL_FD);
    /* -I: ignore PYTHON* variables and the user site; -u: unbuffered, so
     * stdout and stderr interleave in the order they were written. */
    char *argv[] = {"python", "-I", "-u", "-c", channel_arg, NULL};
    wasi_options wasi_opts = {argv, sandbox->config->env, 0};
    wasi *w = rc == 0 ? wasi_new(sandbox->fs, &wasi_opts) : NULL;
    if (!w) rc = -ENOMEM;

    vfs_file *files[4] = {0};
    for (int kind = 0; rc == 0 && kind < 4; kind++)
        if (!(files[kind] = device_new(&run, kind))) rc = -ENOMEM;
    vfs_file *root = NULL;
    if (rc == 0) rc = vfs_open(sandbox->fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root);
    if (rc == 0) rc = wasi_install(w, 0, files[0], "/dev/stdin", 1, 0, 0);
    if (rc == 0) rc = wasi_install(w, 1, files[1], "/dev/stdout", 0, 1, 0);
    if (rc == 0) rc = wasi_install(w, 2, files[2], "/dev/stderr", 0, 1, 0);
    if (rc == 0) rc = wasi_install(w, 3, root, "/", 1, 0, 1);
    if (rc == 0) rc = wasi_install(w, CHANNEL_FD, files[3], "/dev/capsule", 1, 1, 0);
    for (int kind = 0; kind < 4; kind++) vfs_file_release(files[kind]);
    vfs_file_release(root);

    if (rc) {
        set_error(error, "cannot prepare the run: %s", strerror(-rc));
        wasi_free(w);
        free(request.data);
        buffer_free(&run.out);
        buffer_free(&run.err);
        free(result);
        return CAP_ENOMEM;
    }

    uint32_t exit_code = 0;
    const char *trap_message = NULL;
    runtime_outcome outcome = runtime_run(w, 0, &exit_code, &trap_message);
    wasi_free(w);
    free(request.data);

    if (run.truncated && options->capture) {
        buffer_append(&run.err, TRUNCATION_MARKER, sizeof TRUNCATION_MARKER - 1);
    }
    result->out = run.out;
    result->err = run.err;
    if (outcome == RUNTIME_TRAPPED) {
        result->status = CAP_STATUS_TRAP;
        result->exit_code = 128 + 6;
        result->error = strdup(trap_message);
    } else {
        parse_guest_result(result, &run.result);
        /* The interpreter's own exit status wins when it died before the
         * runner could report (e.g. os._exit). */
        if (exit_code != 0 && result->exit_code == 0) {
            result->exit_code = (int)exit_code;
            result->status = CAP_STATUS_RUN_ERROR;
        }
    }
    buffer_free(&run.result);
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
    free(result);
}
