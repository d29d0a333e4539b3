/*
 * config.c — cap_config: what every sandbox made from a configuration
 * shares (images, environment, limits of the pool and of sessions, mounts,
 * resources, package sources).  Every setter checks its arguments and
 * copies them; nothing here starts a process or touches the network.
 * Documentation files are docs.c's.
 */
#include "sandbox.h"

#include <time.h>
#include "../help/help.h"
#include "page_file.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_LEASE_MS 30000 /* as the store's own default */

#define STDLIB_GUEST_PATH "/usr/local/lib/python3.11"

void sandbox_set_error(char *error, const char *format, ...) {
    if (!error) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, CAP_ERROR_SIZE, format, args);
    va_end(args);
}

/* The directory part of `path`, with its final '/' ("" for a bare name). */
static void directory_of(char *path) {
    char *slash = strrchr(path, '/');
    if (slash) slash[1] = '\0';
    else path[0] = '\0';
}

/* Where the stdlib image is, the first of these that exists (else the
 * first): beside the executable (the build tree: build/capsule and
 * build/stdlib.img); beside the shared object holding this code (the build
 * tree's libcapsule.so, the Python wheel's copy), or in capsule/ there (an
 * installed $(libdir)/libcapsule.so.0 and $(libdir)/capsule/stdlib.img);
 * in ../lib/capsule/ from the executable (an installed binary, or a program
 * linked with libcapsule.a).  Found relative to the files themselves, so
 * an installation moved elsewhere (a DESTDIR, a venv) still works. */
static char *default_stdlib_path(void) {
    char executable[PATH_MAX] = "", library[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", executable, sizeof executable - 1);
    executable[n > 0 ? n : 0] = '\0';
    directory_of(executable);
    Dl_info info;
    if (dladdr((void *)default_stdlib_path, &info) && info.dli_fname &&
        strlen(info.dli_fname) < sizeof library) {
        strcpy(library, info.dli_fname);
        directory_of(library);
    }
    char candidates[4][PATH_MAX + 32];
    snprintf(candidates[0], sizeof candidates[0], "%sstdlib.img", executable);
    snprintf(candidates[1], sizeof candidates[1], "%sstdlib.img", library);
    snprintf(candidates[2], sizeof candidates[2], "%scapsule/stdlib.img", library);
    snprintf(candidates[3], sizeof candidates[3], "%s../lib/capsule/stdlib.img", executable);
    for (int i = 0; i < 4; i++)
        if (access(candidates[i], R_OK) == 0) return strdup(candidates[i]);
    return strdup(candidates[0]);
}

cap_config *cap_config_new(void) {
    cap_config *config = calloc(1, sizeof *config);
    if (!config) return NULL;
    config->images[0].host_path = default_stdlib_path();
    config->images[0].guest_path = strdup(STDLIB_GUEST_PATH);
    config->image_count = 1;
    config->pool_size = 2;
    config->max_sessions = 8;
    config->session_idle_seconds = 600;
    config->host_entry_limit = DEFAULT_ENTRIES;
    config->audit_fd = -1;
    pthread_mutex_init(&config->store_lock, NULL);
    pthread_mutex_init(&config->renew_lock, NULL);
    pthread_mutex_init(&config->parked_lock, NULL);
    pthread_condattr_t wake_clock;
    pthread_condattr_init(&wake_clock);
    pthread_condattr_setclock(&wake_clock, CLOCK_MONOTONIC);
    pthread_cond_init(&config->renew_wake, &wake_clock);
    pthread_condattr_destroy(&wake_clock);
    config->lease_ms = DEFAULT_LEASE_MS;
    pthread_mutex_init(&config->help_lock, NULL);
    if (!config->images[0].host_path || !config->images[0].guest_path) {
        cap_config_free(config);
        return NULL;
    }
    return config;
}

void cap_config_free(cap_config *config) {
    if (config) deps_resolver_free(config->dependencies);
    if (!config) return;
    sandbox_jobs_stop(config); /* its runners use everything below */
    for (int i = 0; i < config->image_count; i++) {
        free(config->images[i].host_path);
        free(config->images[i].guest_path);
        vfs_image_release(config->images[i].image);
    }
    vfs_image_release(config->time_zones);
    for (int i = 0; i < config->env_count; i++) free(config->env[i]);
    sandbox_docs_free(config);
    sandbox_code_mode_free(config); /* before the registry its tools are in */
    sandbox_functions_free(config);
    pthread_mutex_lock(&config->renew_lock);
    config->renewer_stop = 1;
    int started = config->renewer_started;
    pthread_cond_signal(&config->renew_wake);
    pthread_mutex_unlock(&config->renew_lock);
    if (started) pthread_join(config->renewer, NULL);
    store_close(config->store);
    free(config->store_url);
    page_files_close(config->page_files);
    pthread_mutex_destroy(&config->store_lock);
    pthread_cond_destroy(&config->renew_wake);
    pthread_mutex_destroy(&config->renew_lock);
    pthread_mutex_destroy(&config->parked_lock);
    help_free(config);
    free(config->describe_url);
    if (config->describe_key) explicit_bzero(config->describe_key, strlen(config->describe_key));
    free(config->describe_key);
    free(config->describe_model);
    free(config->output_directory);
    free(config->start_cache);
    for (int i = 0; i < config->resource_count; i++) {
        free(config->resource_names[i]);
        free(config->resource_urls[i]);
    }
    for (int i = 0; i < config->allowed_count; i++) free(config->allowed_urls[i]);
    for (int i = 0; i < config->host_mount_count; i++) {
        free(config->host_guest_paths[i]);
        close(config->host_roots[i]);
    }
    for (int i = 0; i < config->provider_count; i++) {
        free(config->providers[i].guest_path);
        for (int j = 0; j < config->providers[i].name_count; j++)
            free(config->providers[i].names[j]);
    }
    free(config);
}

static int set_image(image_mount *mount, const char *host_path, const char *guest_path,
                     char *error) {
    char *host = strdup(host_path), *guest = strdup(guest_path);
    if (!host || !guest) {
        free(host);
        free(guest);
        sandbox_set_error(error, "out of memory");
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
        sandbox_set_error(error, "cap_config_set_stdlib: missing argument");
        return CAP_EINVAL;
    }
    return set_image(&config->images[0], image_path, STDLIB_GUEST_PATH, error);
}

int cap_config_add_image(cap_config *config, const char *image_path, const char *guest_path,
                         char *error) {
    if (!config || !image_path || !guest_path || guest_path[0] != '/') {
        sandbox_set_error(error, "cap_config_add_image: need an image and an absolute guest path");
        return CAP_EINVAL;
    }
    if (config->image_count == MAX_IMAGES) {
        sandbox_set_error(error, "too many images (at most %d)", MAX_IMAGES);
        return CAP_EINVAL;
    }
    int rc = set_image(&config->images[config->image_count], image_path, guest_path, error);
    if (rc == CAP_OK) config->image_count++;
    return rc;
}

int cap_config_set_pool_size(cap_config *config, int workers, char *error) {
    if (!config || workers < 0 || workers > MAX_POOL) {
        sandbox_set_error(error, "pool size must be between 0 and %d", MAX_POOL);
        return CAP_EINVAL;
    }
    config->pool_size = workers;
    return CAP_OK;
}

int cap_config_set_sessions(cap_config *config, int max_sessions, double idle_seconds,
                            char *error) {
    if (!config || max_sessions < -1 || max_sessions > MAX_SESSIONS || !(idle_seconds > 0)) {
        sandbox_set_error(error, "sessions: 0 to %d sessions (-1: unchanged), idle timeout above 0",
                          MAX_SESSIONS);
        return CAP_EINVAL;
    }
    if (max_sessions >= 0) config->max_sessions = max_sessions;
    config->session_idle_seconds = idle_seconds;
    return CAP_OK;
}

/* The renewer's record of a session it parked: its sandbox drops the
 * worker at its next run or tidy (cap_sandbox_tidy). */
static void remember_parked(void *context, const char *id) {
    cap_config *config = context;
    pthread_mutex_lock(&config->parked_lock);
    snprintf(config->parked_ids[config->parked_total % PARKED_MEMORY], STORE_ID_SIZE, "%s", id);
    config->parked_total++;
    pthread_mutex_unlock(&config->parked_lock);
}

/* Parks the sessions other nodes asked for that are idle here. */
static void park_requested(cap_config *config) {
    pthread_mutex_lock(&config->store_lock);
    store_sessions_park_requested(config->store, remember_parked, config, NULL, NULL);
    pthread_mutex_unlock(&config->store_lock);
}

static int64_t monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* How often the renewer looks for parked sessions past their time: a
 * quarter of the TTL, between 1 s and a minute. */
static int64_t expiry_interval_ms(int64_t ttl_ms) {
    int64_t interval = ttl_ms / 4;
    return interval < 1000 ? 1000 : interval > 60000 ? 60000 : interval;
}

/* Renews the node's lease every third of it, so that while this process
 * lives no other node takes its live sessions (issue 16: a node that stops
 * renewing loses them after the lease, and its commits are then refused).
 * At each renewal, and at once when a park request is NOTIFYed on the
 * node's channel (PostgreSQL), it parks the idle sessions other nodes
 * asked for: the request is in the store, so a lost notification delays
 * the park by at most a third of the lease, which is less than the asker
 * waits (sandbox_durable_begin).  With a session TTL it also expires the
 * parked sessions past their time (at its first turn, then every
 * expiry_interval_ms).  Host code only: guest code has no say in it. */
static void *renew_leases(void *argument) {
    cap_config *config = argument;
    store_listener *listener = NULL;
    if (config->store_url) {
        char channel[STORE_PARK_CHANNEL_SIZE];
        store_park_channel(store_node(config->store), channel);
        store_listener_open_channel(config->store_url, channel, &listener, NULL);
    }
    pthread_mutex_lock(&config->renew_lock);
    int64_t next_renewal = monotonic_ms(), next_expiry = monotonic_ms();
    while (!config->renewer_stop) {
        int64_t interval_ms = config->lease_ms / 3 > 0 ? config->lease_ms / 3 : 1;
        if (next_renewal > monotonic_ms() + interval_ms) next_renewal = monotonic_ms() + interval_ms;
        if (next_renewal <= monotonic_ms()) next_renewal = monotonic_ms() + interval_ms;
        int expiring = config->session_ttl_ms > 0;
        int64_t next_turn = expiring && next_expiry < next_renewal ? next_expiry : next_renewal;
        int notified = 0;
        int64_t wait_ms = next_turn - monotonic_ms();
        /* The listener's waits are short, so that a stop or a new lease
         * length (renew_wake) is seen within a fifth of a second. */
        if (listener && wait_ms > 200) wait_ms = 200;
        int listened = 0;
        if (listener) {
            pthread_mutex_unlock(&config->renew_lock);
            int heard = store_listener_wait(listener, (int)(wait_ms > 0 ? wait_ms : 0));
            pthread_mutex_lock(&config->renew_lock);
            listened = heard >= 0;
            notified = heard > 0;
        }
        if (!listened && wait_ms > 0) { /* no listener, or it failed (reconnected at its next wait) */
            struct timespec wake;
            clock_gettime(CLOCK_MONOTONIC, &wake);
            wake.tv_sec += wait_ms / 1000;
            wake.tv_nsec += (wait_ms % 1000) * 1000000;
            if (wake.tv_nsec >= 1000000000) {
                wake.tv_sec++;
                wake.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&config->renew_wake, &config->renew_lock, &wake);
        }
        if (config->renewer_stop) break;
        int renew = monotonic_ms() >= next_renewal;
        int expire = expiring && monotonic_ms() >= next_expiry;
        if (!renew && !notified && !expire) continue;
        pthread_mutex_unlock(&config->renew_lock);
        if (renew || expire) {
            pthread_mutex_lock(&config->store_lock);
            if (renew) store_renew(config->store, NULL, NULL); /* a lost lease shows at the next commit */
            if (expire) sandbox_expire_sessions(config);
            pthread_mutex_unlock(&config->store_lock);
        }
        park_requested(config);
        pthread_mutex_lock(&config->renew_lock);
        if (renew) next_renewal = monotonic_ms() + interval_ms;
        if (expire) next_expiry = monotonic_ms() + expiry_interval_ms(config->session_ttl_ms);
    }
    pthread_mutex_unlock(&config->renew_lock);
    store_listener_close(listener);
    return NULL;
}

int cap_config_set_store_lease(cap_config *config, double seconds, char *error) {
    if (!config || !config->store || !(seconds >= 0.1 && seconds <= 86400)) {
        sandbox_set_error(error, "a store lease needs a store and 0.1 to 86400 seconds");
        return CAP_EINVAL;
    }
    pthread_mutex_lock(&config->store_lock);
    store_set_lease(config->store, (int64_t)(seconds * 1000));
    int rc = store_renew(config->store, NULL, error); /* the new length from now */
    pthread_mutex_unlock(&config->store_lock);
    pthread_mutex_lock(&config->renew_lock);
    config->lease_ms = (int64_t)(seconds * 1000);
    pthread_cond_signal(&config->renew_wake);
    pthread_mutex_unlock(&config->renew_lock);
    return rc == CAP_OK ? CAP_OK : CAP_EIO;
}

int cap_config_set_session_ttl(cap_config *config, double seconds, char *error) {
    if (!config || !config->store || !(seconds >= 0 && seconds <= 10 * 365 * 86400.0)) {
        sandbox_set_error(error, "a session TTL needs a store and 0 to 315360000 seconds");
        return CAP_EINVAL;
    }
    pthread_mutex_lock(&config->renew_lock);
    config->session_ttl_ms = (int64_t)(seconds * 1000);
    if (seconds > 0 && config->session_ttl_ms == 0) config->session_ttl_ms = 1;
    pthread_cond_signal(&config->renew_wake);
    pthread_mutex_unlock(&config->renew_lock);
    return CAP_OK;
}

int cap_config_set_store(cap_config *config, const char *url, char *error) {
    if (!config || !url || !*url) {
        sandbox_set_error(error, "cap_config_set_store: missing store URL");
        return CAP_EINVAL;
    }
    if (config->store) {
        sandbox_set_error(error, "the configuration has a store already");
        return CAP_EINVAL;
    }
    store *opened = NULL;
    int rc = store_open(url, &opened, error);
    if (rc != CAP_OK) return rc == CAP_EINVAL || rc == CAP_ENOMEM || rc == CAP_EIO ? rc : CAP_EIO;
    config->store = opened;
    config->store_url = strdup(url); /* NULL: the runners only poll */
    config->page_files = page_files_open(url); /* NULL: restores read the store alone */
    return CAP_OK;
}

void sandbox_start_lease_renewal(cap_config *config) {
    /* Started at the first durable call, not with the store: the zygotes
     * are forked when sandboxes are made, and a thread that is still
     * starting (its runtime's bookkeeping under locks) must not be running
     * at a fork.  Later forks hold store_lock (pool.c). */
    pthread_mutex_lock(&config->renew_lock);
    int starting = !config->renewer_started && !config->renewer_stop;
    if (starting && pthread_create(&config->renewer, NULL, renew_leases, config) == 0)
        config->renewer_started = 1;
    pthread_mutex_unlock(&config->renew_lock);
    /* Renewed now, before the caller claims anything: the lease was taken
     * when the store was opened and may have run out since (a node idle
     * longer than its lease), and until the new thread's first turn other
     * nodes would take this node for dead and claim over its first claim. */
    if (starting) {
        pthread_mutex_lock(&config->store_lock);
        store_renew(config->store, NULL, NULL);
        pthread_mutex_unlock(&config->store_lock);
    }
}

int cap_config_set_store_quota(cap_config *config, uint64_t bytes, char *error) {
    if (!config || !config->store) {
        sandbox_set_error(error, "a store quota needs a store (cap_config_set_store first)");
        return CAP_EINVAL;
    }
    store_set_quota(config->store, bytes);
    /* The node's page files are copies of stored state: no more disk than
     * the store itself may take. */
    if (config->page_files && bytes) page_files_set_budget(config->page_files, bytes);
    return CAP_OK;
}

int cap_config_add_env(cap_config *config, const char *name, const char *value, char *error) {
    if (!config || !name || !value || !*name || strchr(name, '=')) {
        sandbox_set_error(error, "environment variable names must be non-empty and contain no '='");
        return CAP_EINVAL;
    }
    if (config->env_count == MAX_ENV) {
        sandbox_set_error(error, "too many environment variables (at most %d)", MAX_ENV);
        return CAP_EINVAL;
    }
    size_t size = strlen(name) + strlen(value) + 2;
    char *entry = malloc(size);
    if (!entry) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    snprintf(entry, size, "%s=%s", name, value);
    config->env[config->env_count++] = entry;
    return CAP_OK;
}

int cap_config_set_start_cache(cap_config *config, const char *host_directory, char *error) {
    if (!config || (host_directory && host_directory[0] != '/')) {
        sandbox_set_error(error, "the start-image directory must be an absolute host path");
        return CAP_EINVAL;
    }
    char *copy = host_directory ? strdup(host_directory) : NULL;
    if (host_directory && !copy) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    free(config->start_cache);
    config->start_cache = copy;
    return CAP_OK;
}

int cap_config_set_output_directory(cap_config *config, const char *guest_path, char *error) {
    char normalized[VFS_PATH_MAX];
    if (!config || !guest_path || guest_path[0] != '/' ||
        vfs_normalize(NULL, guest_path, strlen(guest_path), normalized) != 0 ||
        strcmp(normalized, "/") == 0) {
        sandbox_set_error(error,
                          "the output directory must be an absolute guest path other than /");
        return CAP_EINVAL;
    }
    char *copy = strdup(normalized);
    if (!copy) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    free(config->output_directory);
    config->output_directory = copy;
    return CAP_OK;
}

int cap_config_add_http_resource(cap_config *config, const char *name, const char *url,
                                 char *error) {
    if (!config || !name || !url || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > VFS_NAME_MAX ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) >= 4096) {
        sandbox_set_error(error, "an HTTP resource needs a file name (no '/') and an http(s) URL");
        return CAP_EINVAL;
    }
    /* A template: one "{}" in the name, one in the URL (and none else). */
    const char *name_hole = strstr(name, "{}"), *url_hole = strstr(url, "{}");
    const char *authority = strstr(url, "://") + 3;
    const char *after_authority = authority + strcspn(authority, "/?#"); /* never the host */
    if (!name_hole != !url_hole || (name_hole && strstr(name_hole + 2, "{}")) ||
        (url_hole && (strstr(url_hole + 2, "{}") || url_hole < after_authority))) {
        sandbox_set_error(error, "an HTTP resource template has one {} in the name and one in "
                                 "the URL's path or query, e.g. "
                                 "city-{}.json=https://host/weather?city={}");
        return CAP_EINVAL;
    }
    for (int i = 0; i < config->resource_count; i++)
        if (strcmp(config->resource_names[i], name) == 0) {
            sandbox_set_error(error, "HTTP resource %.100s is defined twice", name);
            return CAP_EINVAL;
        }
    if (config->resource_count == MAX_RESOURCES) {
        sandbox_set_error(error, "too many HTTP resources (at most %d)", MAX_RESOURCES);
        return CAP_EINVAL;
    }
    char *name_copy = strdup(name), *url_copy = strdup(url);
    if (!name_copy || !url_copy) {
        free(name_copy);
        free(url_copy);
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    config->resource_names[config->resource_count] = name_copy;
    config->resource_urls[config->resource_count++] = url_copy;
    return CAP_OK;
}

int cap_config_add_resource_provider(cap_config *config, const char *guest_path,
                                     const cap_resource_provider *provider, void *userdata,
                                     char *error) {
    char normalized[VFS_PATH_MAX];
    if (!config || !guest_path || !provider || !provider->read ||
        guest_path[0] != '/' || vfs_normalize(NULL, guest_path, strlen(guest_path), normalized) ||
        strcmp(normalized, "/") == 0) {
        sandbox_set_error(error, "a resource provider needs list and read callbacks and an "
                                 "absolute guest path other than /");
        return CAP_EINVAL;
    }
    if (config->provider_count == MAX_PROVIDERS) {
        sandbox_set_error(error, "too many resource providers (at most %d)", MAX_PROVIDERS);
        return CAP_EINVAL;
    }
    struct provider *p = &config->providers[config->provider_count];
    memset(p, 0, sizeof *p);
    int rc = (p->guest_path = strdup(normalized)) ? CAP_OK : CAP_ENOMEM;
    const char *name;
    if (!provider->list) p->name_count = -1; /* any name */
    for (size_t i = 0; rc == CAP_OK && provider->list && (name = provider->list(userdata, i));
         i++) {
        if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strlen(name) > VFS_NAME_MAX || p->name_count == MAX_RESOURCES) {
            sandbox_set_error(error,
                              "resource provider at %.100s: bad or too many names (at most %d)",
                              normalized, MAX_RESOURCES);
            rc = CAP_EINVAL;
        } else if (!(p->names[p->name_count] = strdup(name))) {
            rc = CAP_ENOMEM;
        } else {
            p->name_count++;
        }
    }
    if (rc == CAP_ENOMEM) sandbox_set_error(error, "out of memory");
    if (rc != CAP_OK) {
        free(p->guest_path);
        for (int j = 0; j < p->name_count; j++) free(p->names[j]);
        return rc;
    }
    p->callbacks = *provider;
    p->userdata = userdata;
    config->provider_count++;
    return CAP_OK;
}

int cap_config_add_mount(cap_config *config, const char *host_path, const char *guest_path,
                         int flags, uint64_t quota_bytes, char *error) {
    char normalized[VFS_PATH_MAX];
    if (!config || !host_path || !guest_path || guest_path[0] != '/' ||
        vfs_normalize(NULL, guest_path, strlen(guest_path), normalized) ||
        strcmp(normalized, "/") == 0) {
        sandbox_set_error(error, "a mount needs a host directory and an absolute guest path "
                                 "other than /");
        return CAP_EINVAL;
    }
    if (config->host_mount_count == MAX_HOST_MOUNTS) {
        sandbox_set_error(error, "too many host mounts (at most %d)", MAX_HOST_MOUNTS);
        return CAP_EINVAL;
    }
    int root = open(host_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        sandbox_set_error(error, "cannot mount %.150s: %s", host_path, strerror(errno));
        return CAP_EIO;
    }
    char *copy = strdup(normalized);
    if (!copy) {
        close(root);
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int index = config->host_mount_count++;
    config->host_guest_paths[index] = copy;
    config->host_roots[index] = root;
    config->host_writable[index] = !(flags & CAP_MOUNT_READ_ONLY);
    config->host_quota[index] = quota_bytes ? quota_bytes : DEFAULT_DISK;
    config->host_used[index] = 0;
    config->host_entries[index] = 0;
    return CAP_OK;
}

int cap_config_allow_url(cap_config *config, const char *prefix, char *error) {
    if (!config || !prefix ||
        (strncmp(prefix, "http://", 7) != 0 && strncmp(prefix, "https://", 8) != 0) ||
        strlen(prefix) < 9) {
        sandbox_set_error(error,
                          "an allowed URL prefix starts with http:// or https:// and a host");
        return CAP_EINVAL;
    }
    if (config->allowed_count == MAX_ALLOWED_URLS) {
        sandbox_set_error(error, "too many allowed URL prefixes (at most %d)", MAX_ALLOWED_URLS);
        return CAP_EINVAL;
    }
    if (!(config->allowed_urls[config->allowed_count] = strdup(prefix))) {
        sandbox_set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    config->allowed_count++;
    return CAP_OK;
}

int cap_config_set_mount_entry_limit(cap_config *config, uint64_t entries, char *error) {
    if (!config || entries == 0) {
        sandbox_set_error(error, "the mount entry limit must be positive");
        return CAP_EINVAL;
    }
    config->host_entry_limit = entries;
    return CAP_OK;
}

int cap_config_set_http_limits(cap_config *config, double timeout_seconds, size_t max_bytes,
                               char *error) {
    if (!config || timeout_seconds < 0 || timeout_seconds > 1e6) {
        sandbox_set_error(error, "HTTP timeout must be between 0 (default) and 1e6 seconds");
        return CAP_EINVAL;
    }
    config->http_timeout = timeout_seconds;
    config->http_max_bytes = max_bytes;
    return CAP_OK;
}

/* --- package sources ------------------------------------------------------- */

static deps_resolver *dependencies_of(cap_config *config, char *error) {
    if (!config->dependencies && !(config->dependencies = deps_resolver_new()))
        sandbox_set_error(error, "out of memory");
    return config->dependencies;
}

static int add_package_source(cap_config *config, int kind, const char *location, char *error) {
    if (!config || !location) {
        sandbox_set_error(error, "package source: missing argument");
        return CAP_EINVAL;
    }
    deps_resolver *resolver = dependencies_of(config, error);
    if (!resolver) return CAP_ENOMEM;
    char message[DEPS_MESSAGE_SIZE] = "";
    int rc = kind == 0   ? deps_add_wheel_directory(resolver, location, message)
             : kind == 1 ? deps_add_index(resolver, location, message)
                         : deps_add_site_packages(resolver, location, message);
    if (rc) {
        sandbox_set_error(error, "%s", message);
        return CAP_EINVAL;
    }
    return CAP_OK;
}

int cap_config_add_wheel_directory(cap_config *config, const char *host_path, char *error) {
    return add_package_source(config, 0, host_path, error);
}

int cap_config_add_index_url(cap_config *config, const char *url, char *error) {
    return add_package_source(config, 1, url, error);
}

int cap_config_add_site_packages(cap_config *config, const char *host_path, char *error) {
    return add_package_source(config, 2, host_path, error);
}

int cap_config_set_package_cache(cap_config *config, const char *host_path, char *error) {
    if (!config || !host_path) {
        sandbox_set_error(error, "cap_config_set_package_cache: missing argument");
        return CAP_EINVAL;
    }
    deps_resolver *resolver = dependencies_of(config, error);
    char message[DEPS_MESSAGE_SIZE] = "";
    if (!resolver) return CAP_ENOMEM;
    if (deps_set_cache_directory(resolver, host_path, message) != 0) {
        sandbox_set_error(error, "%s", message);
        return CAP_EINVAL;
    }
    return CAP_OK;
}

