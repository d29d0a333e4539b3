/*
 * pool.c — the zygote and its workers: cap_sandbox_new starts the zygote (a
 * warm interpreter, zygote.c) and keeps a pool of idle workers forked from
 * it, asked for ahead of need so that a run rarely waits for a fork; workers
 * that finished are reaped later, without blocking.  Also the waiting
 * primitives the rest of the sandbox uses (a monotonic clock, poll with a
 * deadline, waitpid).
 */
#include "sandbox.h"

#include "durable.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

#define STARTUP_SECONDS 60

double sandbox_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until `fd` is readable, the deadline passes or `cancel_fd` (if not
 * -1) is signalled: a WAIT_* value, or -errno. */
int sandbox_wait_readable(int fd, double deadline, int cancel_fd) {
    for (;;) {
        double left = deadline - sandbox_now_seconds();
        if (left <= 0) return WAIT_DEADLINE;
        struct pollfd p[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
        int n = poll(p, cancel_fd >= 0 ? 2 : 1, (int)ceil(left * 1000));
        if (n > 0 && cancel_fd >= 0 && (p[1].revents & POLLIN)) return WAIT_CANCELLED;
        if (n > 0) return WAIT_READABLE;
        if (n < 0 && errno != EINTR) return -errno;
    }
}

/* waitpid, retried on EINTR: the pid, 0 if WNOHANG found it running, -1. */
pid_t sandbox_reap(pid_t pid, int *status, int flags) {
    pid_t rc;
    do rc = waitpid(pid, status, flags);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* Reaps the finished workers that have exited; with `block`, all of them. */
void sandbox_reap_exiting(cap_sandbox *sandbox, int block) {
    int kept = 0;
    for (int i = 0; i < sandbox->exiting_count; i++) {
        pid_t pid = sandbox->exiting[i];
        if (sandbox_reap(pid, NULL, block ? 0 : WNOHANG) == 0)
            sandbox->exiting[kept++] = pid; /* still exiting */
    }
    sandbox->exiting_count = kept;
}

void sandbox_reap_later(cap_sandbox *sandbox, pid_t pid) {
    if (sandbox->exiting_count == MAX_EXITING) sandbox_reap_exiting(sandbox, 1);
    sandbox->exiting[sandbox->exiting_count++] = pid;
}

void sandbox_worker_discard(worker *w) {
    if (w->pid <= 0) return;
    close(w->fd);
    kill(w->pid, SIGKILL);
    sandbox_reap(w->pid, NULL, 0);
    w->pid = 0;
}

/* Asks the zygote for a new worker; its pid comes later (finish_spawn).
 * The sandbox's hot pages ride along: the worker writes them ahead. */
static int request_spawn(cap_sandbox *sandbox, int *fd, char *error) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        sandbox_set_error(error, "socketpair: %s", strerror(errno));
        return CAP_ERUNTIME;
    }
    const buffer *hot = &sandbox->hot_pages;
    int rc = frame_write_fd(sandbox->control_fd, 'S', hot->data ? hot->data : "", hot->size,
                            pair[1]);
    close(pair[1]);
    if (rc != 0) {
        close(pair[0]);
        sandbox_set_error(error, "the zygote is gone");
        return CAP_ERUNTIME;
    }
    *fd = pair[0];
    return CAP_OK;
}

/* Reads the zygote's answer to the oldest spawn request. */
static int finish_spawn(cap_sandbox *sandbox, int fd, worker *out, char *error) {
    char type = 0;
    char *payload = NULL;
    size_t size = 0;
    uint32_t pid = 0;
    int rc = frame_read(sandbox->control_fd, &type, &payload, &size, 64, NULL);
    if (rc == 0 && type == 'P' && size == sizeof pid) memcpy(&pid, payload, sizeof pid);
    free(payload);
    if (pid == 0) {
        close(fd);
        sandbox_set_error(error, "the zygote could not start a worker%s",
                          rc ? " (it is gone)" : "");
        return CAP_ERUNTIME;
    }
    *out = (worker){(pid_t)pid, fd};
    return CAP_OK;
}

/* Moves answered spawn requests into the idle pool, oldest first (the
 * zygote answers in order).  `wait` 1: all of them.  0: only answers
 * already there, unless no worker is idle, then until one is: so a run
 * never waits for the clone of a worker it does not need. */
static void collect_spawned(cap_sandbox *sandbox, int wait) {
    int done = 0;
    for (; done < sandbox->pending_count; done++) {
        struct pollfd ready = {sandbox->control_fd, POLLIN, 0};
        if (!wait && sandbox->idle_count > 0 && poll(&ready, 1, 0) != 1) break;
        worker w;
        if (finish_spawn(sandbox, sandbox->pending[done], &w, NULL) == CAP_OK)
            sandbox->idle[sandbox->idle_count++] = w;
    }
    memmove(sandbox->pending, sandbox->pending + done,
            (size_t)(sandbox->pending_count - done) * sizeof *sandbox->pending);
    sandbox->pending_count -= done;
}

int sandbox_spawn_worker(cap_sandbox *sandbox, worker *out, char *error) {
    int fd;
    collect_spawned(sandbox, 1); /* this request's answer comes after theirs */
    int rc = request_spawn(sandbox, &fd, error);
    return rc == CAP_OK ? finish_spawn(sandbox, fd, out, error) : rc;
}

int sandbox_take_worker(cap_sandbox *sandbox, worker *out, char *error) {
    collect_spawned(sandbox, 0);
    if (sandbox->idle_count > 0) {
        *out = sandbox->idle[--sandbox->idle_count];
        return CAP_OK;
    }
    return sandbox_spawn_worker(sandbox, out, error);
}

/* Tops the pool up without waiting for the clones; failures only mean the
 * next run forks on demand. */
void sandbox_refill_pool(cap_sandbox *sandbox) {
    while (sandbox->idle_count + sandbox->pending_count < sandbox->config->pool_size) {
        int fd;
        if (request_spawn(sandbox, &fd, NULL) != CAP_OK) return;
        sandbox->pending[sandbox->pending_count++] = fd;
    }
}

#define TIME_ZONES_GUEST_PATH "/usr/share/zoneinfo"

/* The time-zone database (tzdata.img, built from Debian's tzdata) sits
 * beside the standard library image and is mounted where zoneinfo looks.
 * Optional: without it (an embedder shipping only stdlib.img), zoneinfo
 * finds no zones, and nothing else changes.  0 when config->time_zones is
 * open; an image the caller mounted there itself wins. */
static int open_time_zones(cap_config *config) {
    if (config->time_zones) return 0;
    for (int i = 0; i < config->image_count; i++)
        if (strcmp(config->images[i].guest_path, TIME_ZONES_GUEST_PATH) == 0) return -1;
    const char *stdlib = config->images[0].host_path;
    const char *slash = strrchr(stdlib, '/');
    size_t directory = slash ? (size_t)(slash - stdlib) + 1 : 0;
    char path[PATH_MAX];
    if (directory + sizeof "tzdata.img" > sizeof path) return -1;
    memcpy(path, stdlib, directory);
    memcpy(path + directory, "tzdata.img", sizeof "tzdata.img");
    return vfs_image_open(path, &config->time_zones) == 0 ? 0 : -1;
}

int cap_sandbox_new(cap_config *config, cap_sandbox **out, char *error) {
    if (!config || !out) {
        sandbox_set_error(error, "cap_sandbox_new: missing argument");
        return CAP_EINVAL;
    }
    vfs_image *images[MAX_IMAGES + 1];
    const char *image_paths[MAX_IMAGES + 1];
    int image_count = config->image_count;
    for (int i = 0; i < config->image_count; i++) {
        image_mount *m = &config->images[i];
        if (!m->image) {
            int rc = vfs_image_open(m->host_path, &m->image);
            if (rc) {
                sandbox_set_error(error, "cannot open image %s: %s", m->host_path,
                                  rc == -EINVAL ? "not a capsule image, or damaged"
                                                : strerror(-rc));
                return CAP_EIO;
            }
        }
        images[i] = m->image;
        image_paths[i] = m->guest_path;
    }
    if (open_time_zones(config) == 0) {
        images[image_count] = config->time_zones;
        image_paths[image_count++] = TIME_ZONES_GUEST_PATH;
    }
    cap_sandbox *sandbox = calloc(1, sizeof *sandbox);
    int pair[2];
    if (!sandbox || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        free(sandbox);
        sandbox_set_error(error, "cannot create the sandbox: %s", strerror(errno));
        return CAP_ENOMEM;
    }
    sandbox->config = config;
    /* Code mode's stubs, made now: the allow and deny patterns are final. */
    zygote_file *server_files;
    int server_file_count;
    if (sandbox_server_files(config, &server_files, &server_file_count) != 0) {
        close(pair[0]);
        close(pair[1]);
        free(sandbox);
        sandbox_set_error(error, "cannot create the sandbox: out of memory");
        return CAP_ENOMEM;
    }
    fflush(NULL); /* nothing buffered is written twice by the child */
    /* The store's lease thread must not be inside SQLite (or malloc) when
     * the zygote is forked: the zygote would inherit its locks held. */
    if (config->store) pthread_mutex_lock(&config->store_lock);
    pid_t pid = fork();
    if (pid != 0 && config->store) pthread_mutex_unlock(&config->store_lock);
    if (pid == 0) {
        close(pair[0]);
        zygote_resource_mount resource_mounts[1 + MAX_PROVIDERS];
        zygote_world world = {images,
                              image_paths,
                              image_count,
                              config->env,
                              config->output_directory ? config->output_directory
                                                       : GUEST_OUTPUT_DIRECTORY,
                              config->docs,
                              config->doc_count,
                              resource_mounts,
                              0,
                              config->host_guest_paths,
                              config->host_mount_count,
                              config->host_writable,
                              server_files,
                              server_file_count,
                              config->store != NULL,
                              config->start_cache};
        /* /network first: its index is 0 in the workers' requests. */
        if (config->resource_count)
            resource_mounts[world.resource_mount_count++] = (zygote_resource_mount){
                GUEST_NETWORK_DIRECTORY, config->resource_names, config->resource_count, 0};
        for (int i = 0; i < config->provider_count; i++)
            resource_mounts[world.resource_mount_count++] = (zygote_resource_mount){
                config->providers[i].guest_path, config->providers[i].names,
                config->providers[i].name_count, config->providers[i].callbacks.write != NULL};
        zygote_main(&world, pair[1]);
    }
    close(pair[1]);
    sandbox_free_server_files(server_files, server_file_count);
    if (pid < 0) {
        close(pair[0]);
        free(sandbox);
        sandbox_set_error(error, "cannot start the zygote: %s", strerror(errno));
        return CAP_ERUNTIME;
    }
    sandbox->zygote = pid;
    sandbox->control_fd = pair[0];
    sandbox->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sandbox->cancel_fd < 0) {
        sandbox_set_error(error, "cannot create the sandbox: %s", strerror(errno));
        cap_sandbox_free(sandbox);
        return CAP_ENOMEM;
    }

    /* The zygote says 'Y' once the interpreter is initialised and warm. */
    char type = 0;
    char *payload = NULL;
    size_t size = 0;
    int ready = sandbox_wait_readable(pair[0], sandbox_now_seconds() + STARTUP_SECONDS, -1);
    /* A durable sandbox's 'Y' carries the base: a hash per page (durable.h). */
    size_t most = config->store ? 8 + (size_t)DURABLE_MAX_PAGES * DURABLE_HASH : 4096;
    int rc = ready == 1 ? frame_read(pair[0], &type, &payload, &size, most, NULL) : -ETIMEDOUT;
    if (rc != 0 || type != 'Y') {
        sandbox_set_error(error, "the interpreter did not start: %s",
                          rc == 0 && type == 'X' ? payload
                          : rc                   ? strerror(-rc)
                                                 : "unexpected reply");
        free(payload);
        cap_sandbox_free(sandbox);
        return CAP_ERUNTIME;
    }
    if (config->store && (rc = sandbox_durable_base(sandbox, payload, size, error)) != CAP_OK) {
        free(payload);
        cap_sandbox_free(sandbox);
        return rc;
    }
    free(payload);
    sandbox_refill_pool(sandbox);
    *out = sandbox;
    return CAP_OK;
}

void cap_sandbox_free(cap_sandbox *sandbox) {
    if (!sandbox) return;
    sandbox_reap_exiting(sandbox, 1);
    if (sandbox->zygote > 0) collect_spawned(sandbox, 1);
    for (int i = 0; i < sandbox->idle_count; i++) sandbox_worker_discard(&sandbox->idle[i]);
    for (int i = 0; i < sandbox->session_count; i++) {
        sandbox_worker_discard(&sandbox->sessions[i].worker);
        if (sandbox->config->store) sandbox_durable_park(sandbox, sandbox->sessions[i].id, 0);
        sandbox_durable_pages_free(&sandbox->sessions[i].pages);
        free(sandbox->sessions[i].id);
    }
    for (int i = 0; i < EVICTED_MEMORY; i++) free(sandbox->evicted[i]);
    free(sandbox->base_hashes);
    buffer_free(&sandbox->hot_pages);
    if (sandbox->cancel_fd > 0) close(sandbox->cancel_fd);
    if (sandbox->zygote > 0) {
        close(sandbox->control_fd); /* the zygote exits at end of stream */
        kill(sandbox->zygote, SIGKILL);
        sandbox_reap(sandbox->zygote, NULL, 0);
    }
    free(sandbox);
}

