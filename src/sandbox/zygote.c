/*
 * zygote.c — the processes that run guest code.
 *
 * The zygote is forked by the host when a sandbox is created.  It builds the
 * guest's world (VFS, WASI, device files), instantiates CPython and calls
 * its capsule_init export: the interpreter is initialised and the runner
 * imports what most programs need, then the call returns.  The zygote then
 * serves "spawn" requests from the host forever, and each spawn clones a
 * worker with a copy of that initialised guest.  A worker waits for a
 * request on its channel and calls the guest's capsule_call, which reads
 * the request from the control channel, runs it, writes the result and
 * returns; the worker sends the result.  No guest frame is on the stack
 * when the zygote forks or between two calls of a session.
 *
 * Workers are cloned with CLONE_PARENT: they are the host's children, so the
 * host can waitpid() them and see exactly how they ended (SIGKILL after a
 * timeout, SIGPROF at the CPU limit, SIGSYS from seccomp).  Raw clone skips
 * glibc's fork bookkeeping; a worker therefore never uses raise()/abort()
 * (whose cached thread id would be the zygote's) -- seccomp forbids the
 * signal-sending calls anyway.
 *
 * Invariants:
 * - Nothing here runs in the host process; everything that can fail ends
 *   the process with _exit after telling the host what happened.
 * - A worker locks itself down (lockdown_worker_*) before its first request.
 * - A worker serves one request and exits, unless its request belongs to a
 *   session: then it waits for the next request on the same channel.
 */
#include "zygote.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "../store/store.h"
#include "buffer.h"
#include "durable.h"
#include "frame.h"
#include "hot_pages.h"
#include "lockdown.h"
#include "start_image.h"

#define CHANNEL_FD 4
#define DEPENDENCIES_FD 5
#define FUNCTIONS_FD 6
#define MAX_CALL_REQUEST (16u << 20) /* the host refuses more, too */
/* A host function's result larger than this reaches the guest through a
 * file of the scratch file system rather than through its reads. */
#define INLINE_RESULT (1u << 20)
#define SPILL_DIRECTORY GUEST_TEMP_DIRECTORY "/capsule-results"
#define MAX_ENVIRONMENTS 16 /* environment mounts per worker (a session adds some) */
#define MAX_DEPENDENCY_REQUEST (1u << 20)
#define MAX_RESULT (64u << 20)
#define WASM_PAGE 65536u
#define MAX_ARTIFACT_FRAME (64u << 20) /* the host's budget for all artifacts of a run */

#ifdef CAP_PROFILE_TRAINING
/* Profile-guided builds: a worker ends with _exit, which skips gcov's
 * atexit dump, so dump first (the training build has no seccomp). */
void __gcov_dump(void);
#define _exit(code) (__gcov_dump(), _exit(code))
#endif

/* One per process: the zygote's, then each worker's inherited copy. */
static struct {
    int control_fd; /* zygote <-> host */
    int channel_fd; /* worker <-> host; -1 in the zygote */
    int is_worker;
    int session;    /* serve further requests after a result */
    vfs *fs;
    void *scratch;  /* the root memfs */
    const char *output_directory;
    const zygote_resource_mount *resource_mounts;
    wasi *w;
    char *request;  /* what the runner reads: header line, code; NULL between runs */
    size_t request_size, request_offset;
    buffer result;  /* the runner's JSON */
    buffer dependency_request, dependency_reply; /* the runner's and ours (fd 5) */
    size_t dependency_reply_offset;
    buffer call_request, call_reply; /* the guest's host-function call and its answer (fd 6) */
    size_t call_reply_offset;
    unsigned spilled;                /* results written to SPILL_DIRECTORY so far */
    uint64_t disk_quota, disk_entries; /* the run's, raised by what is spilled */
    char environment_key[65]; /* of the environment mounted last */
    char environment_keys[MAX_ENVIRONMENTS][65]; /* all, in mount order (durable.h) */
    char environment_path[VFS_PATH_MAX];
    int environment_count;
    /* Durable sandboxes: the memory as capsule_init left it (shared with
     * every worker, never written), which snapshots are taken against, and
     * the 'Y' payload that tells the host its hashes. */
    uint8_t *base;
    uint32_t base_pages;
    buffer ready;
    uint8_t start_key[START_IMAGE_KEY]; /* of this world's start image (start_image.h) */
    int pagemap_fd;   /* a worker's /proc/self/pagemap, or -1 (hot_pages.h) */
    int report_pages; /* this request asks which pages the run wrote */
} G = {.control_fd = -1, .channel_fd = -1, .pagemap_fd = -1};

static void send_or_die(char type, const void *data, size_t size) {
    if (frame_write(G.channel_fd, type, data, size) != 0) _exit(0); /* the host is gone */
}

/* --- device files ---------------------------------------------------------- */

typedef struct device {
    vfs_file base;
    int kind; /* 0 stdin, 1 stdout, 2 stderr, 3 control channel, 4 dependencies, 5 functions */
} device;

/* Sends every regular file under `directory` as an 'A' frame and removes
 * it, so that a session's next run returns only what it made itself. */
static void send_artifacts(const char *directory, size_t root_length, int depth) {
    vfs_file *listing;
    if (depth > 32 || vfs_open(G.fs, directory, VFS_O_READ | VFS_O_DIRECTORY, &listing) != 0)
        return;
    vfs_dirent entry;
    char path[VFS_PATH_MAX];
    /* Removing entries shifts the listing, so the cookie advances only past
     * what stays (directories, and files that could not be sent). */
    for (uint64_t cookie = 0; listing->ops->readdir(listing, cookie, &entry) == 1;) {
        int n = snprintf(path, sizeof path, "%s/%s", directory, entry.name);
        if (n <= 0 || (size_t)n >= sizeof path) {
            cookie++;
            continue;
        }
        if (entry.type == VFS_DIRECTORY) {
            send_artifacts(path, root_length, depth + 1);
            cookie++;
            continue;
        }
        vfs_file *file;
        vfs_metadata st;
        buffer frame = {0};
        int rc = vfs_open(G.fs, path, VFS_O_READ, &file);
        if (rc == 0) {
            rc = file->ops->stat(file, &st);
            if (rc == 0 && (st.type != VFS_FILE || st.size > MAX_ARTIFACT_FRAME)) rc = -EFBIG;
            const char *name = path + root_length + 1;
            if (rc == 0) rc = buffer_append(&frame, name, strlen(name) + 1);
            char *data = rc == 0 && st.size ? malloc(st.size) : NULL;
            if (rc == 0 && st.size && !data) rc = -ENOMEM;
            size_t total = 0, done = 0;
            while (rc == 0 && total < st.size &&
                   (rc = file->ops->read(file, data + total, st.size - total, total, &done)) == 0 &&
                   done > 0)
                total += done;
            if (rc == 0 && total) rc = buffer_append(&frame, data, total);
            free(data);
            vfs_file_release(file);
        }
        if (rc == 0) {
            send_or_die('A', frame.data, frame.size);
            vfs_unlink(G.fs, path);
        } else {
            cookie++;
        }
        buffer_free(&frame);
    }
    vfs_file_release(listing);
}

static void send_result(int trapped, const char *message, uint32_t exit_code) {
    send_artifacts(G.output_directory, strlen(G.output_directory), 0);
    wasm_rt_memory_t *memory = wasi_memory(G.w);
    cJSON *json = cJSON_CreateObject();
    char *text = NULL;
    if (json) {
        cJSON_AddBoolToObject(json, "trapped", trapped);
        if (message) cJSON_AddStringToObject(json, "message", message);
        cJSON_AddNumberToObject(json, "exit_code", exit_code);
        cJSON_AddBoolToObject(json, "memory_exhausted",
                              memory && memory->pages >= memory->max_pages);
        if (G.result.data) cJSON_AddStringToObject(json, "guest", G.result.data);
        text = cJSON_PrintUnformatted(json);
        cJSON_Delete(json);
    }
    if (!text) _exit(1);
    send_or_die('R', text, strlen(text));
    free(text);
    buffer_free(&G.result);
}

/* The runner reads the request the worker received (wait_for_request),
 * then end of file; once the call returned, reads see end of file too. */
static int channel_read(void *data, size_t size, size_t *done) {
    size_t left = G.request ? G.request_size - G.request_offset : 0;
    *done = size < left ? size : left;
    if (*done) memcpy(data, G.request + G.request_offset, *done);
    G.request_offset += *done;
    return 0;
}

/* Mounts the package image `fd` unless it is the one mounted last (same
 * key, same content); NULL, or what went wrong. */
static const char *mount_environment(int fd, const char *key) {
    if (strlen(key) >= sizeof G.environment_key) return "malformed answer from the host";
    if (strcmp(key, G.environment_key) == 0) return NULL;
    if (G.environment_count == MAX_ENVIRONMENTS)
        return "too many different package sets in one session";
    char path[VFS_PATH_MAX];
    if (G.environment_count == 0)
        snprintf(path, sizeof path, "%s", GUEST_SITE_PACKAGES);
    else
        snprintf(path, sizeof path, "%s-%d", GUEST_SITE_PACKAGES, G.environment_count + 1);
    snprintf(G.environment_keys[G.environment_count], sizeof G.environment_keys[0], "%s", key);
    vfs_image *image = NULL;
    const vfs_backend_ops *ops;
    void *backend;
    if (vfs_image_open_fd(fd, &image) != 0) return "the host sent an unusable package image";
    vfs_image_backend(image, &ops, &backend);
    vfs_image_release(image); /* the backend holds its own reference */
    if (vfs_mount(G.fs, path, ops, backend, 1) != 0) return "cannot mount the installed packages";
    G.environment_count++;
    snprintf(G.environment_key, sizeof G.environment_key, "%s", key);
    snprintf(G.environment_path, sizeof G.environment_path, "%s", path);
    return NULL;
}

/* Dependencies: the runner writes its request (JSON) to fd 5, then reads
 * the answer.  The first read sends the request to the host ('D'), which
 * answers 'D' with JSON and, when packages were installed, the image's
 * descriptor; it is mounted here, and the answer tells the runner where. */
static void exchange_dependencies(void) {
    buffer *reply = &G.dependency_reply;
    buffer_free(reply);
    G.dependency_reply_offset = 0;
    send_or_die('D', G.dependency_request.data ? G.dependency_request.data : "",
                G.dependency_request.size);
    buffer_free(&G.dependency_request);
    char type;
    char *payload;
    size_t size;
    int fd = -1;
    if (frame_read(G.channel_fd, &type, &payload, &size, FRAME_MAX, &fd) != 0) _exit(0);
    cJSON *answer = type == 'D' ? cJSON_ParseWithLength(payload, size) : NULL;
    free(payload);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(answer, "key");
    const char *failure = NULL;
    if (!cJSON_IsObject(answer))
        failure = "malformed answer from the host";
    else if (fd >= 0 && cJSON_IsString(key))
        failure = mount_environment(fd, key->valuestring);
    if (fd >= 0) close(fd);
    if (failure) {
        cJSON_Delete(answer);
        answer = cJSON_CreateObject();
        cJSON_AddBoolToObject(answer, "ok", 0);
        cJSON_AddStringToObject(answer, "error", failure);
    } else if (G.environment_path[0]) {
        cJSON_DeleteItemFromObjectCaseSensitive(answer, "path");
        cJSON_AddStringToObject(answer, "path", G.environment_path);
    }
    char *text = answer ? cJSON_PrintUnformatted(answer) : NULL;
    cJSON_Delete(answer);
    if (!text || buffer_append(reply, text, strlen(text)) != 0) _exit(1);
    free(text);
}

static int dependencies_read(void *data, size_t size, size_t *done) {
    if (!G.is_worker) return -EBADF;
    if (G.dependency_request.size) exchange_dependencies();
    size_t left = G.dependency_reply.size - G.dependency_reply_offset;
    *done = size < left ? size : left;
    if (*done) memcpy(data, G.dependency_reply.data + G.dependency_reply_offset, *done);
    G.dependency_reply_offset += *done;
    return 0;
}

/* Writes a large result into the scratch file system, outside the
 * run's quota (which grows by its size: the host bounded it with the
 * run's result budget), so that it is never lost for want of disk.  The
 * path, or NULL. */
static const char *spill_result(const char *data, size_t size, char path[VFS_PATH_MAX]) {
    if (G.disk_quota) vfs_memfs_set_quota(G.scratch, G.disk_quota += size);
    if (G.disk_entries) vfs_memfs_set_entry_limit(G.scratch, G.disk_entries += 2);
    int rc = vfs_mkdir(G.fs, SPILL_DIRECTORY);
    if (rc == -EEXIST) rc = 0;
    snprintf(path, VFS_PATH_MAX, "%s/result-%u.json", SPILL_DIRECTORY, ++G.spilled);
    vfs_file *file;
    if (rc == 0) rc = vfs_open(G.fs, path, VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE, &file);
    if (rc) return NULL;
    size_t written = 0, done = 0;
    while (rc == 0 && written < size &&
           (rc = file->ops->write(file, data + written, size - written, written, &done)) == 0 &&
           done > 0)
        written += done;
    vfs_file_release(file);
    return rc == 0 && written == size ? path : NULL;
}

/* Host functions: the guest writes one request (JSON) to fd 6, then reads
 * the answer to its end.  The first read sends the request, unread, to the
 * host ('C'), which answers with a JSON header line and the body (functions.c).
 * A body over INLINE_RESULT is spilled to a file whose path replaces it
 * in the header, so the guest reads it back as a file. */
static void exchange_call(void) {
    buffer *reply = &G.call_reply;
    buffer_free(reply);
    G.call_reply_offset = 0;
    send_or_die('C', G.call_request.data, G.call_request.size);
    buffer_free(&G.call_request);
    char type;
    char *payload;
    size_t size;
    if (frame_read(G.channel_fd, &type, &payload, &size, FRAME_MAX, NULL) != 0) _exit(0);
    char *newline = type == 'C' ? memchr(payload, '\n', size) : NULL;
    size_t body = newline ? size - (size_t)(newline + 1 - payload) : 0;
    char path[VFS_PATH_MAX];
    char header[VFS_PATH_MAX + 96];
    int rc = 0;
    if (!newline) {
        snprintf(header, sizeof header,
                 "{\"ok\":false,\"error\":\"malformed\",\"message\":\"malformed answer "
                 "from the host\"}\n");
        rc = buffer_append(reply, header, strlen(header));
    } else if (body > INLINE_RESULT && strncmp(payload, "{\"ok\":true}", 11) == 0) {
        /* The path is ours (no quote or backslash in it): plain JSON. */
        if (spill_result(newline + 1, body, path))
            snprintf(header, sizeof header, "{\"ok\":true,\"spilled\":\"%s\",\"size\":%zu}\n",
                     path, body);
        else
            snprintf(header, sizeof header,
                     "{\"ok\":false,\"error\":\"error\",\"message\":\"the result (%zu bytes) "
                     "could not be written to %s\"}\n", body, SPILL_DIRECTORY);
        rc = buffer_append(reply, header, strlen(header));
    } else {
        rc = buffer_append(reply, payload, size);
    }
    free(payload);
    if (rc) _exit(1);
}

static int functions_read(void *data, size_t size, size_t *done) {
    if (!G.is_worker) return -EBADF;
    if (G.call_request.size) exchange_call();
    size_t left = G.call_reply.size - G.call_reply_offset;
    *done = size < left ? size : left;
    if (*done) memcpy(data, G.call_reply.data + G.call_reply_offset, *done);
    G.call_reply_offset += *done;
    return 0;
}

static int device_read(vfs_file *file, void *data, size_t size, uint64_t offset, size_t *done) {
    (void)offset;
    *done = 0;
    int kind = ((device *)file)->kind;
    return kind == 3   ? channel_read(data, size, done)
           : kind == 4 ? dependencies_read(data, size, done)
           : kind == 5 ? functions_read(data, size, done)
                       : 0;
}

static int device_write(vfs_file *file, const void *data, size_t size, uint64_t offset,
                        size_t *done) {
    (void)offset;
    device *d = (device *)file;
    *done = size;
    if (d->kind == 3) {
        if (G.result.size + size > MAX_RESULT) return -EFBIG;
        return buffer_append(&G.result, data, size);
    }
    if (d->kind == 4) {
        if (!G.is_worker) return -EBADF;
        if (G.dependency_request.size + size > MAX_DEPENDENCY_REQUEST) return -EFBIG;
        return buffer_append(&G.dependency_request, data, size);
    }
    if (d->kind == 5) {
        if (!G.is_worker) return -EBADF;
        if (G.call_request.size + size > MAX_CALL_REQUEST) return -EFBIG;
        return buffer_append(&G.call_request, data, size);
    }
    if (!G.is_worker || size == 0) return 0; /* warm-up output is dropped */
    send_or_die(d->kind == 1 ? 'O' : 'E', data, size);
    return 0;
}

static const vfs_file_ops device_ops = {
    device_read, device_write, vfs_device_stat, vfs_device_truncate, vfs_device_readdir,
    vfs_device_close,
};

static vfs_file *device_new(int kind) {
    device *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->base.ops = &device_ops;
    d->base.type = VFS_CHARACTER_DEVICE;
    d->base.refcount = 1;
    d->kind = kind;
    return &d->base;
}

/* --- the zygote ------------------------------------------------------------ */

static void zygote_serve(void) {
    static int announced;
    if (!announced) {
        announced = 1;
        if (frame_write(G.control_fd, 'Y', G.ready.data ? G.ready.data : "", G.ready.size) != 0)
            _exit(0);
        buffer_free(&G.ready);
    }
    for (;;) {
        char type;
        char *payload;
        size_t size;
        int fd;
        int rc = frame_read(G.control_fd, &type, &payload, &size, HOT_PAGES_MAX * 4, &fd);
        if (rc != 0) _exit(0); /* the host closed the sandbox */
        if (type != 'S' || fd < 0) {
            free(payload);
            if (fd >= 0) close(fd);
            continue;
        }
        long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0) {
            close(G.control_fd);
            G.control_fd = -1;
            G.channel_fd = fd;
            G.is_worker = 1;
            int keep[] = {fd};
            lockdown_close_other_fds(keep, 1);
            rc = lockdown_worker_limits();
            if (rc == 0) {
                G.pagemap_fd = hot_pages_open();
                durable_worker_set_pagemap(G.pagemap_fd);
                rc = lockdown_worker_filter();
            }
            if (rc != 0) {
                char message[128];
                snprintf(message, sizeof message, "worker lockdown failed: %s", strerror(-rc));
                frame_write(fd, 'X', message, strlen(message));
                _exit(1);
            }
            /* The spawn's payload: the pages runs of this sandbox write,
             * written now while the worker waits in the pool. */
            wasm_rt_memory_t *memory = wasi_memory(G.w);
            if (memory && size)
                hot_pages_prefault(memory->data, (size_t)memory->pages * WASM_PAGE, payload, size);
            free(payload);
            return;
        }
        free(payload);
        close(fd);
        uint32_t reply = pid > 0 ? (uint32_t)pid : 0;
        if (frame_write(G.control_fd, 'P', &reply, sizeof reply) != 0) _exit(0);
    }
}

/* --- a worker's request ------------------------------------------------------ */

static void fail_request(const char *message) {
    /* Reported as the runner would, so the host shows a clear run error. */
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "status", "run-error");
    cJSON_AddStringToObject(json, "error", message);
    cJSON_AddNumberToObject(json, "exit_code", 1);
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    buffer_free(&G.result);
    if (text) buffer_append(&G.result, text, strlen(text));
    free(text);
    send_result(0, NULL, 1);
    _exit(0);
}

static double number_field(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNumber(item) && item->valuedouble > 0 ? item->valuedouble : 0;
}

static int put_file(const char *path, const char *data, size_t size) {
    char absolute[VFS_PATH_MAX];
    int rc = vfs_normalize(GUEST_WORK_DIRECTORY, path, strlen(path), absolute);
    for (char *slash = absolute; rc == 0 && (slash = strchr(slash + 1, '/'));) {
        *slash = '\0';
        rc = vfs_mkdir(G.fs, absolute);
        if (rc == -EEXIST) rc = 0;
        *slash = '/';
    }
    vfs_file *file;
    if (rc == 0) rc = vfs_open(G.fs, absolute, VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE, &file);
    if (rc) return rc;
    size_t done = 0;
    rc = size ? file->ops->write(file, data, size, 0, &done) : 0;
    vfs_file_release(file);
    return rc;
}

/* Applies the request's limits and files, then leaves the runner's part of
 * it (header line and code) in G.request. */
static void apply_request(char *payload, size_t size) {
    char *newline = memchr(payload, '\n', size);
    if (!newline) fail_request("malformed request");
    cJSON *header = cJSON_ParseWithLength(payload, (size_t)(newline - payload));
    if (!cJSON_IsObject(header)) fail_request("malformed request header");
    G.session = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(header, "session"));
    G.report_pages = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(header, "report_pages"));

    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(header, "limits");
    double cpu = number_field(limits, "cpu_seconds");
    double memory = number_field(limits, "memory_bytes");
    double disk = number_field(limits, "disk_bytes");
    double entries = number_field(limits, "disk_entries");
    if (cpu > 0) {
        /* ITIMER_PROF counts this process's CPU time from now, so it is
         * per run even in a session; SIGPROF's default action ends us. */
        struct itimerval timer = {{0, 0}, {(time_t)cpu, (long)((cpu - (time_t)cpu) * 1e6)}};
        if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0) timer.it_value.tv_usec = 1;
        setitimer(ITIMER_PROF, &timer, NULL);
    }
    wasm_rt_memory_t *linear = wasi_memory(G.w);
    if (memory > 0 && linear) {
        double pages = memory / WASM_PAGE;
        uint32_t limit = pages >= 65536 ? 65536u : (uint32_t)pages;
        if (limit < linear->pages) limit = linear->pages;
        linear->max_pages = limit;
    }
    G.disk_quota = disk > 0 ? (uint64_t)disk : 0;
    G.disk_entries = entries > 0 ? (uint64_t)entries : 0;
    if (disk > 0) vfs_memfs_set_quota(G.scratch, G.disk_quota);
    if (entries > 0) vfs_memfs_set_entry_limit(G.scratch, G.disk_entries);
    /* A call half-written or half-read by the previous run of a session
     * is not this run's. */
    buffer_free(&G.call_request);
    buffer_free(&G.call_reply);
    G.call_reply_offset = 0;

    const cJSON *code_size = cJSON_GetObjectItemCaseSensitive(header, "code_size");
    size_t offset = (size_t)(newline - payload) + 1;
    size_t code_length = cJSON_IsNumber(code_size) ? (size_t)code_size->valuedouble : 0;
    if (code_length > size - offset) fail_request("malformed request: code size");
    size_t files_offset = offset + code_length;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(header, "files");
    const cJSON *file;
    cJSON_ArrayForEach(file, files) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(file, "path");
        const cJSON *length = cJSON_GetObjectItemCaseSensitive(file, "size");
        if (!cJSON_IsString(path) || !cJSON_IsNumber(length) || length->valuedouble < 0 ||
            (size_t)length->valuedouble > size - files_offset)
            fail_request("malformed request: files");
        size_t n = (size_t)length->valuedouble;
        int rc = put_file(path->valuestring, payload + files_offset, n);
        if (rc) {
            char message[512];
            snprintf(message, sizeof message, "cannot add input file %.300s: %s",
                     path->valuestring, strerror(-rc));
            fail_request(message);
        }
        files_offset += n;
    }
    cJSON_Delete(header);
    /* The runner reads the header line and the code; the files are placed. */
    G.request = payload;
    G.request_size = offset + code_length;
    G.request_offset = 0;
}

static void wait_for_request(void) {
    char type;
    char *payload;
    size_t size;
    free(G.request);
    G.request = NULL;
    int fd = -1;
    int rc = frame_read(G.channel_fd, &type, &payload, &size, FRAME_MAX, &fd);
    if (rc != 0) _exit(0); /* the host closed the channel: session over */
    /* Between calls the host may save this worker's state or, before its
     * first request, put a saved one in place (durable.h). */
    while ((type == 'K' && G.base) || type == 'L') {
        wasm_rt_memory_t *memory = wasi_memory(G.w);
        if (type == 'K') {
            rc = durable_worker_snapshot(G.channel_fd, memory->data,
                                         memory->pages * DURABLE_PER_WASM_PAGE, G.scratch, G.w,
                                         FUNCTIONS_FD + 1, G.environment_keys,
                                         G.environment_count,
                                         size == 4 && !memcmp(payload, "full", 4));
        } else {
            rc = durable_worker_restore(G.channel_fd, payload, size, G.scratch, G.w,
                                        mount_environment);
        }
        free(payload);
        if (fd >= 0) close(fd);
        fd = -1;
        if (rc != 0) _exit(0);
        if (frame_read(G.channel_fd, &type, &payload, &size, FRAME_MAX, &fd) != 0) _exit(0);
    }
    if (type != 'Q') fail_request("unexpected message from the host");
    apply_request(payload, size);
    if (fd >= 0) {
        /* Packages to compile (deps_finish_environment), mounted before
         * the runner starts. */
        const char *failure = mount_environment(fd, "compile");
        close(fd);
        if (failure) fail_request(failure);
    }
}

/* --- resources: the host fetches, the worker waits ---------------------------- */

/* Sends a request frame and waits for the host's answer: a 32-bit errno,
 * then the content (success) or a message (failure, into *message). */
static int ask_host(char type, const char *request, size_t request_size, unsigned char **data,
                    size_t *size, char **message) {
    send_or_die(type, request, request_size);
    char reply_type;
    char *payload;
    size_t length;
    if (frame_read(G.channel_fd, &reply_type, &payload, &length, FRAME_MAX, NULL) != 0) _exit(0);
    int32_t rc;
    if (reply_type != type || length < sizeof rc) {
        free(payload);
        return -EIO;
    }
    memcpy(&rc, payload, sizeof rc);
    if (rc > 0 || rc < -4095) rc = -EIO;
    *size = length - sizeof rc;
    memmove(payload, payload + sizeof rc, *size);
    payload[*size] = '\0';
    if (rc) {
        if (message) *message = payload;
        else free(payload);
        return rc;
    }
    *data = (unsigned char *)payload;
    return 0;
}

/* errno alone would say little: the host's reason for a failed resource
 * read or write goes to the guest's stderr (and is freed). */
static void report_failure(const zygote_resource_mount *mount, const char *name, char *message) {
    if (!message) return;
    char line[512];
    int n = snprintf(line, sizeof line, "capsule: %s/%s: %.300s\n", mount->path, name, message);
    send_or_die('E', line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    free(message);
}

static int fetch_from_host(void *context, const char *name, unsigned char **data, size_t *size) {
    const zygote_resource_mount *mount = context;
    if (!G.is_worker) return -EAGAIN; /* the zygote itself never asks */
    char request[1 + VFS_PATH_MAX], *message = NULL;
    size_t name_length = strlen(name);
    if (name_length >= VFS_PATH_MAX) return -ENAMETOOLONG;
    request[0] = (char)(mount - G.resource_mounts);
    memcpy(request + 1, name, name_length);
    int rc = ask_host('F', request, 1 + name_length, data, size, &message);
    report_failure(mount, name, message);
    return rc;
}

static int store_to_host(void *context, const char *name, uint64_t offset, const void *data,
                         size_t size) {
    const zygote_resource_mount *mount = context;
    if (!G.is_worker) return -EAGAIN;
    size_t name_length = strlen(name);
    if (name_length >= VFS_PATH_MAX || size > FRAME_MAX - VFS_PATH_MAX - 16) return -EFBIG;
    char *request = malloc(2 + name_length + 8 + size);
    if (!request) return -ENOMEM;
    request[0] = (char)(mount - G.resource_mounts);
    memcpy(request + 1, name, name_length + 1);
    memcpy(request + 2 + name_length, &offset, 8);
    if (size) memcpy(request + 10 + name_length, data, size);
    unsigned char *answer = NULL;
    size_t answer_size = 0;
    char *message = NULL;
    int rc = ask_host('W', request, 10 + name_length + size, &answer, &answer_size, &message);
    free(request);
    free(answer);
    report_failure(mount, name, message);
    return rc;
}

static int ask_broker(void *context, char op, const char *path, const void *input,
                      size_t input_size, unsigned char **data, size_t *size) {
    if (!G.is_worker) return -EAGAIN;
    size_t path_length = strlen(path);
    if (path_length >= VFS_PATH_MAX) return -ENAMETOOLONG;
    if (input_size > FRAME_MAX - VFS_PATH_MAX - 3) return -EFBIG;
    char *request = malloc(3 + path_length + input_size);
    if (!request) return -ENOMEM;
    request[0] = (char)(intptr_t)context;
    request[1] = op;
    memcpy(request + 2, path, path_length);
    size_t request_size = 2 + path_length;
    if (input_size || op == 'n') { /* the path ends at a NUL; the input follows */
        request[request_size++] = '\0';
        if (input_size) memcpy(request + request_size, input, input_size);
        request_size += input_size;
    }
    int rc = ask_host('H', request, request_size, data, size, NULL);
    free(request);
    return rc;
}

/* --- start-up ------------------------------------------------------------------ */

/* The runner's command: init(CHANNEL, (b'/read/only', ...)), naming the
 * read-only mount points (os.access cannot learn them through WASI).
 * Paths are passed as bytes literals with every byte escaped that is not
 * plainly safe, so no path can end the literal.  Malloc'd, or NULL. */
static char *runner_command(void) {
    buffer command = {0};
    char head[96];
    int n = snprintf(head, sizeof head, "import _capsule_runner; _capsule_runner.init(%d, (",
                     CHANNEL_FD);
    int rc = buffer_append(&command, head, (size_t)n);
    const char *at;
    int read_only;
    for (int i = 0; rc == 0 && vfs_mount_point(G.fs, i, &at, &read_only) == 0; i++) {
        if (!read_only) continue;
        rc |= buffer_append(&command, "b'", 2);
        for (const unsigned char *p = (const unsigned char *)at; *p; p++) {
            char escaped[5];
            int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                        (*p >= '0' && *p <= '9') || *p == '/' || *p == '.' || *p == '-' || *p == '_';
            int length = plain ? 1 : snprintf(escaped, sizeof escaped, "\\x%02x", *p);
            if (plain) escaped[0] = (char)*p;
            rc |= buffer_append(&command, escaped, (size_t)length);
        }
        rc |= buffer_append(&command, "',", 2);
    }
    rc |= buffer_append(&command, "))", 3); /* with the NUL */
    if (rc) {
        buffer_free(&command);
        return NULL;
    }
    return command.data;
}

static int build_world(const zygote_world *world) {
    const vfs_backend_ops *ops;
    void *devices;
    G.fs = vfs_new();
    if (!G.fs) return -ENOMEM;
    int rc = vfs_memfs_new(0, &ops, &G.scratch);
    if (rc == 0) rc = vfs_mount(G.fs, "/", ops, G.scratch, 0);
    for (int i = 0; rc == 0 && i < world->image_count; i++) {
        void *backend;
        vfs_image_backend(world->images[i], &ops, &backend);
        rc = vfs_mount(G.fs, world->image_paths[i], ops, backend, 1);
    }
    if (rc == 0 && world->doc_count) {
        void *docs;
        rc = vfs_memfs_new(0, &ops, &docs);
        for (int i = 0; rc == 0 && i < world->doc_count; i++)
            rc = vfs_memfs_put(docs, world->docs[i].name, world->docs[i].data, world->docs[i].size);
        if (rc == 0)
            rc = vfs_mount(G.fs, GUEST_DOCS_DIRECTORY, ops, docs, 1);
        else if (docs)
            ops->destroy(docs);
    }
    if (rc == 0 && world->server_file_count) {
        void *servers;
        rc = vfs_memfs_new(0, &ops, &servers);
        for (int i = 0; rc == 0 && i < world->server_file_count; i++)
            rc = vfs_memfs_put(servers, world->server_files[i].name, world->server_files[i].data,
                               world->server_files[i].size);
        if (rc == 0)
            rc = vfs_mount(G.fs, GUEST_SERVERS_DIRECTORY, ops, servers, 1);
        else if (servers)
            ops->destroy(servers);
    }
    G.resource_mounts = world->resource_mounts;
    for (int i = 0; rc == 0 && i < world->resource_mount_count; i++) {
        const zygote_resource_mount *mount = &world->resource_mounts[i];
        void *resources;
        rc = vfs_resource_new((const char *const *)mount->names, mount->count, fetch_from_host,
                              mount->writable ? store_to_host : NULL, (void *)mount, &ops,
                              &resources);
        if (rc == 0) rc = vfs_mount(G.fs, mount->path, ops, resources, !mount->writable);
    }
    for (int i = 0; rc == 0 && i < world->host_mount_count; i++) {
        void *host;
        int writable = world->host_writable[i];
        rc = vfs_hostfs_new(ask_broker, (void *)(intptr_t)i, writable, &ops, &host);
        if (rc == 0) rc = vfs_mount(G.fs, world->host_mounts[i], ops, host, !writable);
    }
    if (rc == 0) rc = vfs_devfs_new(&ops, &devices);
    if (rc == 0) rc = vfs_mount(G.fs, "/dev", ops, devices, 0);
    if (rc == 0) rc = vfs_mkdir(G.fs, GUEST_TEMP_DIRECTORY);
    if (rc == 0) rc = vfs_mkdir(G.fs, GUEST_WORK_DIRECTORY);
    G.output_directory = world->output_directory;
    char output[VFS_PATH_MAX];
    snprintf(output, sizeof output, "%s", world->output_directory);
    for (char *slash = strchr(output + 1, '/'); rc == 0; slash = strchr(slash + 1, '/')) {
        /* mkdir -p of the artifacts directory */
        if (slash) *slash = '\0';
        rc = vfs_mkdir(G.fs, output);
        if (rc == -EEXIST) rc = 0;
        if (!slash) break;
        *slash = '/';
    }
    if (rc) return rc;

    char *runner = runner_command();
    if (!runner) return -ENOMEM;
    /* -I: ignore PYTHON* variables and the user site; -u: unbuffered, so
     * stdout and stderr interleave in the order they were written. */
    char *argv[] = {"python", "-I", "-u", "-c", runner, NULL};
    wasi_options options = {argv, world->env, 0};
    G.w = wasi_new(G.fs, &options);
    if (world->start_cache) start_image_key(world, argv, G.start_key);
    free(runner); /* wasi_new copied argv */
    if (!G.w) return -ENOMEM;

    vfs_file *files[6] = {0}, *root = NULL;
    for (int kind = 0; kind < 6; kind++)
        if (!(files[kind] = device_new(kind))) rc = -ENOMEM;
    if (rc == 0) rc = vfs_open(G.fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root);
    if (rc == 0) rc = wasi_install(G.w, 0, files[0], "/dev/stdin", 1, 0, 0);
    if (rc == 0) rc = wasi_install(G.w, 1, files[1], "/dev/stdout", 0, 1, 0);
    if (rc == 0) rc = wasi_install(G.w, 2, files[2], "/dev/stderr", 0, 1, 0);
    if (rc == 0) rc = wasi_install(G.w, 3, root, "/", 1, 0, 1);
    if (rc == 0) rc = wasi_install(G.w, CHANNEL_FD, files[3], "/dev/capsule", 1, 1, 0);
    if (rc == 0)
        rc = wasi_install(G.w, DEPENDENCIES_FD, files[4], "/dev/capsule-dependencies", 1, 1, 0);
    if (rc == 0) rc = wasi_install(G.w, FUNCTIONS_FD, files[5], "/dev/capsule-functions", 1, 1, 0);
    for (int kind = 0; kind < 6; kind++) vfs_file_release(files[kind]);
    vfs_file_release(root);
    return rc;
}

/* A worker's life: one request per capsule_call, until the run that is not
 * part of a session, or the host closes the channel (wait_for_request). */
static void serve_requests(void) __attribute__((noreturn));
static void serve_requests(void) {
    for (;;) {
        wait_for_request();
        uint32_t value;
        const char *trap = NULL;
        runtime_outcome outcome = runtime_enter(RUNTIME_CALL, &value, &trap);
        if (outcome != RUNTIME_RETURNED) {
            /* The guest ended (exit, os._exit, a trap) inside the run: the
             * instance cannot be entered again. */
            send_result(outcome == RUNTIME_TRAPPED, trap, outcome == RUNTIME_EXITED ? value : 0);
            _exit(0);
        }
        if (G.report_pages && G.pagemap_fd >= 0) {
            wasm_rt_memory_t *memory = wasi_memory(G.w);
            buffer pages = {0};
            if (hot_pages_scan(G.pagemap_fd, memory->data, (size_t)memory->pages * WASM_PAGE,
                               &pages) == 0 &&
                pages.size)
                send_or_die('M', pages.data, pages.size);
            buffer_free(&pages);
        }
        /* capsule_call returns 1 when the runner itself failed (its
         * traceback is on stderr): exit status 1, as `python -c` would. */
        send_result(0, NULL, value ? 1 : 0);
        if (value || !G.session) _exit(0);
        free(G.request);
        G.request = NULL;
    }
}

/* Keeps the memory capsule_init left, and prepares the 'Y' payload that
 * gives the host its page hashes (durable.h).  The copy is private to the
 * zygote and, through fork, shared with every worker until the zygote
 * ends; nothing writes it.  A start image gives the memory (mapped again)
 * and the hashes when it was loaded, the hashes when it was just written. */
static int keep_base(start_image_base *from_image) {
    wasm_rt_memory_t *memory = wasi_memory(G.w);
    uint32_t pages = memory->pages * DURABLE_PER_WASM_PAGE;
    size_t size = (size_t)pages * DURABLE_PAGE;
    if (from_image->memory && from_image->pages == pages) {
        G.base = from_image->memory;
    } else {
        G.base = malloc(size ? size : 1);
        if (!G.base) return -ENOMEM;
        memcpy(G.base, memory->data, size);
    }
    G.base_pages = pages;
    durable_worker_set_base(G.base, G.base_pages);
    uint32_t head[2] = {pages, runtime_stack_pointer()};
    int rc = buffer_append(&G.ready, head, sizeof head);
    if (rc == 0 && from_image->hashes)
        return buffer_append(&G.ready, from_image->hashes, (size_t)pages * DURABLE_HASH);
    for (uint32_t page = 0; rc == 0 && page < pages; page++) {
        uint8_t hash[DURABLE_HASH];
        store_hash(G.base + (size_t)page * DURABLE_PAGE, DURABLE_PAGE, hash);
        rc = buffer_append(&G.ready, hash, sizeof hash);
    }
    return rc;
}

void zygote_main(const zygote_world *world, int control_fd) {
    G.control_fd = control_fd;
    int keep[] = {control_fd};
    lockdown_close_other_fds(keep, 1);
    lockdown_network_namespace();
    lockdown_prepare_worker();

    int rc = build_world(world);
    if (rc) {
        char message[128];
        snprintf(message, sizeof message, "cannot build the guest's world: %s", strerror(-rc));
        frame_write(control_fd, 'X', message, strlen(message));
        _exit(1);
    }
    runtime_start(G.w);
    uint32_t value = 0;
    const char *trap = NULL;
    runtime_outcome outcome = RUNTIME_RETURNED;
    /* The state a previous initialisation left, if one was saved for this
     * world (start_image.h); else initialise, and save it for the next. */
    start_image_base from_image = {0};
    rc = world->start_cache ? start_image_load(world->start_cache, G.start_key, G.scratch, G.w,
                                               world->durable ? &from_image : NULL)
                            : 0;
    if (rc < 0) {
        char message[128];
        snprintf(message, sizeof message, "cannot load the start image: %s", strerror(-rc));
        frame_write(control_fd, 'X', message, strlen(message));
        _exit(1);
    }
    if (rc == 0) {
        runtime_load_data(); /* no image replaced the memory */
        outcome = runtime_enter(RUNTIME_INIT, &value, &trap);
        if (outcome == RUNTIME_RETURNED && value == 0 && world->start_cache)
            start_image_save(world->start_cache, G.start_key, G.scratch, G.w, FUNCTIONS_FD + 1,
                             world->durable ? &from_image.hashes : NULL);
    }
    if (outcome != RUNTIME_RETURNED || value != 0) {
        char message[256];
        snprintf(message, sizeof message,
                 "the interpreter ended during start-up (%s, exit code %u)",
                 outcome == RUNTIME_TRAPPED ? trap : outcome == RUNTIME_EXITED ? "exit" : "error",
                 outcome == RUNTIME_RETURNED ? 1u : value);
        frame_write(control_fd, 'X', message, strlen(message));
        _exit(1);
    }
    if (world->durable && keep_base(&from_image) != 0) {
        frame_write(control_fd, 'X', "out of memory for the base snapshot", 35);
        _exit(1);
    }
    free(from_image.hashes); /* copied into the 'Y' payload */
    zygote_serve(); /* returns only in a new worker */
    serve_requests();
}
