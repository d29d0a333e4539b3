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
#include "capsule.h"

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
#include <dlfcn.h>
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

#define STDLIB_GUEST_PATH "/usr/local/lib/python3.11"
#define MAX_POOL 16
#define MAX_SESSIONS 256
#define EVICTED_MEMORY 64 /* evicted session ids remembered, for a clear error */
#define DEFAULT_WALL_SECONDS 30.0
#define DEFAULT_MEMORY (512ull << 20)
#define DEFAULT_DISK (256ull << 20)
#define STARTUP_SECONDS 60
#define MAX_EXITING 64 /* finished workers not reaped yet */
#define MAX_IMAGES 16
#define MAX_ENV 256
#define DEFAULT_MAX_OUTPUT (16u << 20)
#define MAX_RESULT (64u << 20)
#define MAX_CODE (64u << 20)
#define GUEST_ENOSPC 51 /* the guest's errno numbering is WASI's, not Linux's */
#define MAX_RESOURCES 64
#define MAX_PROVIDERS 16
#define MAX_HOST_MOUNTS 16
#define MAX_HOST_FILE (64u << 20) /* largest host file a read-only mount serves */
#define MAX_ALLOWED_URLS 64
#define DEFAULT_HTTP_TIMEOUT 10.0
#define DEFAULT_HTTP_MAX_BYTES (8u << 20)
#define MAX_DOCS 256
#define MAX_DOC_BYTES (16u << 20)
#define MAX_ARTIFACT_BYTES (64u << 20) /* all artifacts of one run together */
#define COMPILE_SECONDS 120.0 /* compiling a new environment's modules to bytecode */
#define COMPILE_DISK (1ull << 30)
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
    int pool_size;
    int max_sessions;
    double session_idle_seconds;
    char *output_directory; /* NULL: GUEST_OUTPUT_DIRECTORY */
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
    int host_mount_count;
    deps_resolver *dependencies; /* NULL until a package source is added */
};

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
    if (!config->images[0].host_path || !config->images[0].guest_path) {
        cap_config_free(config);
        return NULL;
    }
    return config;
}

static void free_docs(cap_config *config) {
    for (int i = 0; i < config->doc_count; i++) {
        free(config->docs[i].name);
        free(config->docs[i].data);
    }
    config->doc_count = 0;
}

void cap_config_free(cap_config *config) {
    if (config) deps_resolver_free(config->dependencies);
    if (!config) return;
    for (int i = 0; i < config->image_count; i++) {
        free(config->images[i].host_path);
        free(config->images[i].guest_path);
        vfs_image_release(config->images[i].image);
    }
    for (int i = 0; i < config->env_count; i++) free(config->env[i]);
    free_docs(config);
    free(config->output_directory);
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

int cap_config_set_pool_size(cap_config *config, int workers, char *error) {
    if (!config || workers < 0 || workers > MAX_POOL) {
        set_error(error, "pool size must be between 0 and %d", MAX_POOL);
        return CAP_EINVAL;
    }
    config->pool_size = workers;
    return CAP_OK;
}

int cap_config_set_sessions(cap_config *config, int max_sessions, double idle_seconds,
                            char *error) {
    if (!config || max_sessions < 0 || max_sessions > MAX_SESSIONS || !(idle_seconds > 0)) {
        set_error(error, "sessions: 0 to %d sessions, idle timeout above 0", MAX_SESSIONS);
        return CAP_EINVAL;
    }
    config->max_sessions = max_sessions;
    config->session_idle_seconds = idle_seconds;
    return CAP_OK;
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

int cap_config_set_output_directory(cap_config *config, const char *guest_path, char *error) {
    char normalized[VFS_PATH_MAX];
    if (!config || !guest_path || guest_path[0] != '/' ||
        vfs_normalize(NULL, guest_path, strlen(guest_path), normalized) != 0 ||
        strcmp(normalized, "/") == 0) {
        set_error(error, "the output directory must be an absolute guest path other than /");
        return CAP_EINVAL;
    }
    char *copy = strdup(normalized);
    if (!copy) {
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    free(config->output_directory);
    config->output_directory = copy;
    return CAP_OK;
}

static int compare_docs(const void *a, const void *b) {
    return strcmp(((const zygote_file *)a)->name, ((const zygote_file *)b)->name);
}

/* The text after the first "# " heading line, else the file name. */
static void doc_title(const zygote_file *doc, char *title, size_t title_size) {
    const char *text = (const char *)doc->data, *end = text + doc->size;
    for (const char *line = text; line < end;) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *line_end = newline ? newline : end;
        if (line_end - line > 2 && line[0] == '#' && line[1] == ' ') {
            int length = (int)(line_end - line - 2);
            if (length > 0 && line[2 + length - 1] == '\r') length--;
            snprintf(title, title_size, "%.*s", length, line + 2);
            return;
        }
        line = line_end + 1;
    }
    snprintf(title, title_size, "%s", doc->name);
}

/* README.md: one line per document with its title.  A README.md of the
 * host directory is kept, below the generated index. */
static int build_docs_index(cap_config *config, zygote_file *host_readme) {
    buffer index = {0};
    const char heading[] = "# Documentation\n\nFiles in /docs:\n\n";
    int rc = buffer_append(&index, heading, sizeof heading - 1);
    for (int i = 0; rc == 0 && i < config->doc_count; i++) {
        char title[512], line[1024];
        doc_title(&config->docs[i], title, sizeof title);
        int n = snprintf(line, sizeof line, "- [%s](%s)\n", title, config->docs[i].name);
        rc = buffer_append(&index, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    }
    if (rc == 0 && host_readme) {
        rc = buffer_append(&index, "\n", 1);
        if (rc == 0) rc = buffer_append(&index, host_readme->data, host_readme->size);
    }
    char *name = strdup("README.md");
    if (rc != 0 || !name) {
        free(name);
        buffer_free(&index);
        return -ENOMEM;
    }
    config->docs[config->doc_count++] = (zygote_file){name, (unsigned char *)index.data, index.size};
    return 0;
}

static int read_doc(int directory_fd, const char *name, zygote_file *doc, char *error) {
    int fd = openat(directory_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return 1; /* not a regular file: not documentation */
    }
    if ((uint64_t)st.st_size > MAX_DOC_BYTES) {
        close(fd);
        set_error(error, "documentation file %.100s is larger than %u bytes", name, MAX_DOC_BYTES);
        return -EFBIG;
    }
    doc->size = (size_t)st.st_size;
    doc->data = malloc(doc->size + 1);
    doc->name = strdup(name);
    size_t done = 0;
    while (doc->data && done < doc->size) {
        ssize_t n = read(fd, doc->data + done, doc->size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    doc->size = done;
    if (!doc->data || !doc->name) {
        free(doc->data);
        free(doc->name);
        set_error(error, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int cap_config_add_docs(cap_config *config, const char *host_directory, char *error) {
    if (!config || !host_directory) {
        set_error(error, "cap_config_add_docs: missing argument");
        return CAP_EINVAL;
    }
    DIR *directory = opendir(host_directory);
    if (!directory) {
        set_error(error, "cannot open documentation directory %.150s: %s", host_directory,
                  strerror(errno));
        return CAP_EIO;
    }
    free_docs(config);
    zygote_file host_readme = {0};
    int rc = 0;
    struct dirent *entry;
    while (rc >= 0 && (entry = readdir(directory))) {
        size_t length = strlen(entry->d_name);
        if (length < 4 || strcmp(entry->d_name + length - 3, ".md") != 0) continue;
        if (config->doc_count == MAX_DOCS - 1) {
            set_error(error, "too many documentation files (at most %d)", MAX_DOCS - 1);
            rc = -E2BIG;
            break;
        }
        int is_readme = strcmp(entry->d_name, "README.md") == 0;
        zygote_file *doc = is_readme ? &host_readme : &config->docs[config->doc_count];
        rc = read_doc(dirfd(directory), entry->d_name, doc, error);
        if (rc == 0 && !is_readme) config->doc_count++;
    }
    closedir(directory);
    if (rc >= 0) {
        qsort(config->docs, (size_t)config->doc_count, sizeof config->docs[0], compare_docs);
        rc = build_docs_index(config, host_readme.name ? &host_readme : NULL);
        if (rc) set_error(error, "out of memory");
    }
    free(host_readme.name);
    free(host_readme.data);
    if (rc < 0) {
        free_docs(config);
        return rc == -ENOMEM ? CAP_ENOMEM : CAP_EINVAL;
    }
    return CAP_OK;
}

int cap_config_add_http_resource(cap_config *config, const char *name, const char *url,
                                 char *error) {
    if (!config || !name || !url || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > VFS_NAME_MAX ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) >= 4096) {
        set_error(error, "an HTTP resource needs a file name (no '/') and an http(s) URL");
        return CAP_EINVAL;
    }
    /* A template: one "{}" in the name, one in the URL (and none else). */
    const char *name_hole = strstr(name, "{}"), *url_hole = strstr(url, "{}");
    const char *authority = strstr(url, "://") + 3;
    const char *after_authority = authority + strcspn(authority, "/?#"); /* never the host */
    if (!name_hole != !url_hole || (name_hole && strstr(name_hole + 2, "{}")) ||
        (url_hole && (strstr(url_hole + 2, "{}") || url_hole < after_authority))) {
        set_error(error, "an HTTP resource template has one {} in the name and one in the URL's "
                         "path or query, e.g. city-{}.json=https://host/weather?city={}");
        return CAP_EINVAL;
    }
    for (int i = 0; i < config->resource_count; i++)
        if (strcmp(config->resource_names[i], name) == 0) {
            set_error(error, "HTTP resource %.100s is defined twice", name);
            return CAP_EINVAL;
        }
    if (config->resource_count == MAX_RESOURCES) {
        set_error(error, "too many HTTP resources (at most %d)", MAX_RESOURCES);
        return CAP_EINVAL;
    }
    char *name_copy = strdup(name), *url_copy = strdup(url);
    if (!name_copy || !url_copy) {
        free(name_copy);
        free(url_copy);
        set_error(error, "out of memory");
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
        set_error(error, "a resource provider needs list and read callbacks and an absolute "
                         "guest path other than /");
        return CAP_EINVAL;
    }
    if (config->provider_count == MAX_PROVIDERS) {
        set_error(error, "too many resource providers (at most %d)", MAX_PROVIDERS);
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
            set_error(error, "resource provider at %.100s: bad or too many names (at most %d)",
                      normalized, MAX_RESOURCES);
            rc = CAP_EINVAL;
        } else if (!(p->names[p->name_count] = strdup(name))) {
            rc = CAP_ENOMEM;
        } else {
            p->name_count++;
        }
    }
    if (rc == CAP_ENOMEM) set_error(error, "out of memory");
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
        set_error(error, "a mount needs a host directory and an absolute guest path other than /");
        return CAP_EINVAL;
    }
    if (config->host_mount_count == MAX_HOST_MOUNTS) {
        set_error(error, "too many host mounts (at most %d)", MAX_HOST_MOUNTS);
        return CAP_EINVAL;
    }
    int root = open(host_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        set_error(error, "cannot mount %.150s: %s", host_path, strerror(errno));
        return CAP_EIO;
    }
    char *copy = strdup(normalized);
    if (!copy) {
        close(root);
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int index = config->host_mount_count++;
    config->host_guest_paths[index] = copy;
    config->host_roots[index] = root;
    config->host_writable[index] = !(flags & CAP_MOUNT_READ_ONLY);
    config->host_quota[index] = quota_bytes ? quota_bytes : DEFAULT_DISK;
    config->host_used[index] = 0;
    return CAP_OK;
}

int cap_config_allow_url(cap_config *config, const char *prefix, char *error) {
    if (!config || !prefix ||
        (strncmp(prefix, "http://", 7) != 0 && strncmp(prefix, "https://", 8) != 0) ||
        strlen(prefix) < 9) {
        set_error(error, "an allowed URL prefix starts with http:// or https:// and a host");
        return CAP_EINVAL;
    }
    if (config->allowed_count == MAX_ALLOWED_URLS) {
        set_error(error, "too many allowed URL prefixes (at most %d)", MAX_ALLOWED_URLS);
        return CAP_EINVAL;
    }
    if (!(config->allowed_urls[config->allowed_count] = strdup(prefix))) {
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    config->allowed_count++;
    return CAP_OK;
}

int cap_config_set_http_limits(cap_config *config, double timeout_seconds, size_t max_bytes,
                               char *error) {
    if (!config || timeout_seconds < 0 || timeout_seconds > 1e6) {
        set_error(error, "HTTP timeout must be between 0 (default) and 1e6 seconds");
        return CAP_EINVAL;
    }
    config->http_timeout = timeout_seconds;
    config->http_max_bytes = max_bytes;
    return CAP_OK;
}

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
};

/* --- dependencies ------------------------------------------------------------ */

static deps_resolver *dependencies_of(cap_config *config, char *error) {
    if (!config->dependencies && !(config->dependencies = deps_resolver_new()))
        set_error(error, "out of memory");
    return config->dependencies;
}

static int add_package_source(cap_config *config, int kind, const char *location, char *error) {
    if (!config || !location) {
        set_error(error, "package source: missing argument");
        return CAP_EINVAL;
    }
    deps_resolver *resolver = dependencies_of(config, error);
    if (!resolver) return CAP_ENOMEM;
    char message[DEPS_MESSAGE_SIZE] = "";
    int rc = kind == 0   ? deps_add_wheel_directory(resolver, location, message)
             : kind == 1 ? deps_add_index(resolver, location, message)
                         : deps_add_site_packages(resolver, location, message);
    if (rc) {
        set_error(error, "%s", message);
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
        set_error(error, "cap_config_set_package_cache: missing argument");
        return CAP_EINVAL;
    }
    deps_resolver *resolver = dependencies_of(config, error);
    char message[DEPS_MESSAGE_SIZE] = "";
    if (!resolver) return CAP_ENOMEM;
    if (deps_set_cache_directory(resolver, host_path, message) != 0) {
        set_error(error, "%s", message);
        return CAP_EINVAL;
    }
    return CAP_OK;
}

/* --- sandboxes: the zygote and its workers -------------------------------- */

typedef struct worker {
    pid_t pid; /* a child of this process (CLONE_PARENT) */
    int fd;    /* its channel */
} worker;

typedef struct session {
    char *id;
    worker worker;
    double last_used;
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
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { WAIT_DEADLINE = 0, WAIT_READABLE = 1, WAIT_CANCELLED = 2 };

/* Waits until `fd` is readable, the deadline passes or `cancel_fd` (if not
 * -1) is signalled: a WAIT_* value, or -errno. */
static int wait_readable(int fd, double deadline, int cancel_fd) {
    for (;;) {
        double left = deadline - now_seconds();
        if (left <= 0) return WAIT_DEADLINE;
        struct pollfd p[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
        int n = poll(p, cancel_fd >= 0 ? 2 : 1, (int)ceil(left * 1000));
        if (n > 0 && cancel_fd >= 0 && (p[1].revents & POLLIN)) return WAIT_CANCELLED;
        if (n > 0) return WAIT_READABLE;
        if (n < 0 && errno != EINTR) return -errno;
    }
}

/* waitpid, retried on EINTR: the pid, 0 if WNOHANG found it running, -1. */
static pid_t reap(pid_t pid, int *status, int flags) {
    pid_t rc;
    do rc = waitpid(pid, status, flags);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* Reaps the finished workers that have exited; with `block`, all of them. */
static void reap_exiting(cap_sandbox *sandbox, int block) {
    int kept = 0;
    for (int i = 0; i < sandbox->exiting_count; i++) {
        pid_t pid = sandbox->exiting[i];
        if (reap(pid, NULL, block ? 0 : WNOHANG) == 0) sandbox->exiting[kept++] = pid; /* still exiting */
    }
    sandbox->exiting_count = kept;
}

static void reap_later(cap_sandbox *sandbox, pid_t pid) {
    if (sandbox->exiting_count == MAX_EXITING) reap_exiting(sandbox, 1);
    sandbox->exiting[sandbox->exiting_count++] = pid;
}

static void worker_discard(worker *w) {
    if (w->pid <= 0) return;
    close(w->fd);
    kill(w->pid, SIGKILL);
    reap(w->pid, NULL, 0);
    w->pid = 0;
}

/* Asks the zygote for a new worker; its pid comes later (finish_spawn). */
static int request_spawn(cap_sandbox *sandbox, int *fd, char *error) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        set_error(error, "socketpair: %s", strerror(errno));
        return CAP_ERUNTIME;
    }
    int rc = frame_write_fd(sandbox->control_fd, 'S', "", 0, pair[1]);
    close(pair[1]);
    if (rc != 0) {
        close(pair[0]);
        set_error(error, "the zygote is gone");
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
        set_error(error, "the zygote could not start a worker%s", rc ? " (it is gone)" : "");
        return CAP_ERUNTIME;
    }
    *out = (worker){(pid_t)pid, fd};
    return CAP_OK;
}

/* Moves answered spawn requests into the idle pool. */
static void collect_spawned(cap_sandbox *sandbox) {
    for (int i = 0; i < sandbox->pending_count; i++) {
        worker w;
        if (finish_spawn(sandbox, sandbox->pending[i], &w, NULL) == CAP_OK)
            sandbox->idle[sandbox->idle_count++] = w;
    }
    sandbox->pending_count = 0;
}

static int spawn_worker(cap_sandbox *sandbox, worker *out, char *error) {
    int fd;
    collect_spawned(sandbox); /* answers arrive in order: older requests first */
    int rc = request_spawn(sandbox, &fd, error);
    return rc == CAP_OK ? finish_spawn(sandbox, fd, out, error) : rc;
}

static int take_worker(cap_sandbox *sandbox, worker *out, char *error) {
    collect_spawned(sandbox);
    if (sandbox->idle_count > 0) {
        *out = sandbox->idle[--sandbox->idle_count];
        return CAP_OK;
    }
    return spawn_worker(sandbox, out, error);
}

/* Tops the pool up without waiting for the clones; failures only mean the
 * next run forks on demand. */
static void refill_pool(cap_sandbox *sandbox) {
    while (sandbox->idle_count + sandbox->pending_count < sandbox->config->pool_size) {
        int fd;
        if (request_spawn(sandbox, &fd, NULL) != CAP_OK) return;
        sandbox->pending[sandbox->pending_count++] = fd;
    }
}

int cap_sandbox_new(cap_config *config, cap_sandbox **out, char *error) {
    if (!config || !out) {
        set_error(error, "cap_sandbox_new: missing argument");
        return CAP_EINVAL;
    }
    vfs_image *images[MAX_IMAGES];
    const char *image_paths[MAX_IMAGES];
    for (int i = 0; i < config->image_count; i++) {
        image_mount *m = &config->images[i];
        if (!m->image) {
            int rc = vfs_image_open(m->host_path, &m->image);
            if (rc) {
                set_error(error, "cannot open image %s: %s", m->host_path,
                          rc == -EINVAL ? "not a capsule image, or damaged" : strerror(-rc));
                return CAP_EIO;
            }
        }
        images[i] = m->image;
        image_paths[i] = m->guest_path;
    }
    cap_sandbox *sandbox = calloc(1, sizeof *sandbox);
    int pair[2];
    if (!sandbox || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        free(sandbox);
        set_error(error, "cannot create the sandbox: %s", strerror(errno));
        return CAP_ENOMEM;
    }
    sandbox->config = config;
    fflush(NULL); /* nothing buffered is written twice by the child */
    pid_t pid = fork();
    if (pid == 0) {
        close(pair[0]);
        zygote_resource_mount resource_mounts[1 + MAX_PROVIDERS];
        zygote_world world = {images,
                              image_paths,
                              config->image_count,
                              config->env,
                              config->output_directory ? config->output_directory
                                                       : GUEST_OUTPUT_DIRECTORY,
                              config->docs,
                              config->doc_count,
                              resource_mounts,
                              0,
                              config->host_guest_paths,
                              config->host_mount_count,
                              config->host_writable};
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
    if (pid < 0) {
        close(pair[0]);
        free(sandbox);
        set_error(error, "cannot start the zygote: %s", strerror(errno));
        return CAP_ERUNTIME;
    }
    sandbox->zygote = pid;
    sandbox->control_fd = pair[0];
    sandbox->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sandbox->cancel_fd < 0) {
        set_error(error, "cannot create the sandbox: %s", strerror(errno));
        cap_sandbox_free(sandbox);
        return CAP_ENOMEM;
    }

    /* The zygote says 'Y' once the interpreter is initialised and warm. */
    char type = 0;
    char *payload = NULL;
    size_t size = 0;
    int ready = wait_readable(pair[0], now_seconds() + STARTUP_SECONDS, -1);
    int rc = ready == 1 ? frame_read(pair[0], &type, &payload, &size, 4096, NULL) : -ETIMEDOUT;
    if (rc != 0 || type != 'Y') {
        set_error(error, "the interpreter did not start: %s",
                  rc == 0 && type == 'X' ? payload : rc ? strerror(-rc) : "unexpected reply");
        free(payload);
        cap_sandbox_free(sandbox);
        return CAP_ERUNTIME;
    }
    free(payload);
    refill_pool(sandbox);
    *out = sandbox;
    return CAP_OK;
}

void cap_sandbox_free(cap_sandbox *sandbox) {
    if (!sandbox) return;
    reap_exiting(sandbox, 1);
    if (sandbox->zygote > 0) collect_spawned(sandbox);
    for (int i = 0; i < sandbox->idle_count; i++) worker_discard(&sandbox->idle[i]);
    for (int i = 0; i < sandbox->session_count; i++) {
        worker_discard(&sandbox->sessions[i].worker);
        free(sandbox->sessions[i].id);
    }
    for (int i = 0; i < EVICTED_MEMORY; i++) free(sandbox->evicted[i]);
    if (sandbox->cancel_fd > 0) close(sandbox->cancel_fd);
    if (sandbox->zygote > 0) {
        close(sandbox->control_fd); /* the zygote exits at end of stream */
        kill(sandbox->zygote, SIGKILL);
        reap(sandbox->zygote, NULL, 0);
    }
    free(sandbox);
}

static void drain_cancellation(cap_sandbox *sandbox) {
    uint64_t count;
    while (read(sandbox->cancel_fd, &count, sizeof count) > 0) continue;
}

int cap_sandbox_cancel(cap_sandbox *sandbox) {
    uint64_t one = 1;
    if (!sandbox) return CAP_EINVAL;
    return write(sandbox->cancel_fd, &one, sizeof one) == sizeof one ? CAP_OK : CAP_ERUNTIME;
}

/* --- sessions ----------------------------------------------------------------- */

static void remember_evicted(cap_sandbox *sandbox, const char *id) {
    free(sandbox->evicted[sandbox->evicted_next]);
    sandbox->evicted[sandbox->evicted_next] = strdup(id);
    sandbox->evicted_next = (sandbox->evicted_next + 1) % EVICTED_MEMORY;
}

static int was_evicted(const cap_sandbox *sandbox, const char *id) {
    for (int i = 0; i < EVICTED_MEMORY; i++)
        if (sandbox->evicted[i] && strcmp(sandbox->evicted[i], id) == 0) return 1;
    return 0;
}

static void session_remove(cap_sandbox *sandbox, int index, int evicted) {
    session *s = &sandbox->sessions[index];
    worker_discard(&s->worker);
    if (evicted) remember_evicted(sandbox, s->id);
    free(s->id);
    sandbox->sessions[index] = sandbox->sessions[--sandbox->session_count];
}

static void expire_sessions(cap_sandbox *sandbox) {
    double now = now_seconds();
    for (int i = sandbox->session_count - 1; i >= 0; i--)
        if (now - sandbox->sessions[i].last_used > sandbox->config->session_idle_seconds)
            session_remove(sandbox, i, 1);
}

static session *find_session(cap_sandbox *sandbox, const char *id) {
    for (int i = 0; i < sandbox->session_count; i++)
        if (strcmp(sandbox->sessions[i].id, id) == 0) return &sandbox->sessions[i];
    return NULL;
}

int cap_session_close(cap_sandbox *sandbox, const char *id, char *error) {
    for (int i = 0; sandbox && id && i < sandbox->session_count; i++) {
        if (strcmp(sandbox->sessions[i].id, id) == 0) {
            session_remove(sandbox, i, 0);
            return CAP_OK;
        }
    }
    set_error(error, "no session %s", id ? id : "(null)");
    return CAP_EINVAL;
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

/* Opens a mount-relative path strictly beneath the mount's root: "..",
 * absolute symbolic links and links leading outside fail (EXDEV), as do
 * /proc-style magic links. */
static int open_beneath(int root, const char *path, int flags) {
    struct open_how how = {0};
    how.flags = (uint64_t)(flags | O_CLOEXEC | (flags & O_PATH ? 0 : O_NOCTTY));
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

static int host_stat_answer(int fd, buffer *body) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    uint64_t fields[5] = {S_ISDIR(st.st_mode) ? VFS_DIRECTORY : VFS_FILE, (uint64_t)st.st_size,
                          (uint64_t)st.st_ino,
                          (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec,
                          (uint64_t)st.st_nlink};
    return buffer_append(body, fields, sizeof fields);
}

static int host_read_answer(int fd, buffer *body) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EACCES; /* devices, fifos: never read by the host */
    if ((uint64_t)st.st_size > MAX_HOST_FILE) return -EFBIG;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return 0;
        if (body->size + (size_t)n > MAX_HOST_FILE) return -EFBIG;
        if (buffer_append(body, chunk, (size_t)n)) return -ENOMEM;
    }
}

static int host_list_answer(int fd, buffer *body) {
    DIR *directory = fdopendir(fd);
    if (!directory) return -errno;
    struct dirent *entry;
    int rc = 0;
    while (rc == 0 && (entry = readdir(directory))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char type = entry->d_type == DT_DIR ? 'd' : 'f';
        rc = buffer_append(body, &type, 1);
        if (rc == 0) rc = buffer_append(body, entry->d_name, strlen(entry->d_name) + 1);
    }
    closedir(directory);
    return rc;
}

/* Quota of a writable mount: takes `bytes` of growth, or -ENOSPC. */
static int reserve_growth(cap_config *config, int mount, uint64_t bytes) {
    uint64_t used = __atomic_load_n(&config->host_used[mount], __ATOMIC_RELAXED);
    do {
        if (bytes > config->host_quota[mount] || used > config->host_quota[mount] - bytes)
            return -ENOSPC;
    } while (!__atomic_compare_exchange_n(&config->host_used[mount], &used, used + bytes, 0,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

static void release_growth(cap_config *config, int mount, uint64_t bytes) {
    uint64_t used = __atomic_load_n(&config->host_used[mount], __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&config->host_used[mount], &used,
                                        used > bytes ? used - bytes : 0, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        continue;
}

/* Opens the directory that holds `path` beneath `root`, and puts the last
 * component in `name`: a plain name, never "", "." or "..", so the *at()
 * call that follows cannot leave the directory. */
static int open_parent(int root, const char *path, char name[VFS_PATH_MAX]) {
    char parent[VFS_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *last = slash ? slash + 1 : parent;
    if (!*last || strcmp(last, ".") == 0 || strcmp(last, "..") == 0) return -EPERM;
    snprintf(name, VFS_PATH_MAX, "%s", last);
    if (slash) *slash = '\0';
    else parent[0] = '\0';
    return open_beneath(root, parent, O_PATH | O_DIRECTORY);
}

/* An existing regular file opened for writing, refused when it has other
 * hard links: one of them could be a file outside the mount. */
static int open_for_writing(int root, const char *path, struct stat *st) {
    int file = open_beneath(root, path, O_WRONLY | O_NONBLOCK);
    if (file < 0) return file;
    if (fstat(file, st) != 0 || !S_ISREG(st->st_mode) || st->st_nlink != 1) {
        int rc = S_ISDIR(st->st_mode) ? -EISDIR : -EPERM;
        close(file);
        return rc;
    }
    return file;
}

static int host_write_answer(cap_config *config, int mount, char op, const char *path,
                             const char *input, size_t input_size) {
    int root = config->host_roots[mount], rc = 0;
    char name[VFS_PATH_MAX], second[VFS_PATH_MAX];
    struct stat st;
    uint64_t number = 0;
    if ((op == 'p' || op == 't') && input_size >= 8) memcpy(&number, input, 8);
    switch (op) {
    case 'p': case 't': {
        if (input_size < 8 || (op == 't' && input_size != 8)) return -EINVAL;
        size_t length = op == 'p' ? input_size - 8 : 0;
        uint64_t end = op == 'p' ? number + length : number;
        if (number > MAX_HOST_FILE || end > MAX_HOST_FILE) return -EFBIG;
        int file = open_for_writing(root, path, &st);
        if (file < 0) return file;
        uint64_t old = (uint64_t)st.st_size;
        rc = end > old ? reserve_growth(config, mount, end - old) : 0;
        if (rc == 0 && op == 'p') {
            for (size_t done = 0; rc == 0 && done < length;) {
                ssize_t n = pwrite(file, input + 8 + done, length - done, (off_t)(number + done));
                if (n < 0 && errno != EINTR) rc = -errno;
                if (n > 0) done += (size_t)n;
            }
        } else if (rc == 0) {
            if (ftruncate(file, (off_t)number) != 0) rc = -errno;
            else if (number < old) release_growth(config, mount, old - number);
        }
        close(file);
        return rc;
    }
    case 'c': case 'm': case 'u': case 'd': case 'n': {
        if (op == 'c' ? input_size != 1 : op == 'n' ? input_size == 0 : input_size != 0)
            return -EINVAL;
        int parent = open_parent(root, path, name);
        if (parent < 0) return parent;
        if (op == 'c') {
            int file = openat(parent, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
                                                (input[0] ? O_EXCL : 0), 0644);
            rc = file < 0 ? -errno : 0;
            if (file >= 0) close(file);
        } else if (op == 'm') {
            rc = mkdirat(parent, name, 0755) ? -errno : 0;
        } else if (op == 'u' || op == 'd') {
            int regular = fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                          S_ISREG(st.st_mode) && st.st_nlink == 1;
            rc = unlinkat(parent, name, op == 'd' ? AT_REMOVEDIR : 0) ? -errno : 0;
            if (rc == 0 && regular) release_growth(config, mount, (uint64_t)st.st_size);
        } else {
            char to[VFS_PATH_MAX];
            if (input_size >= sizeof to || memchr(input, '\0', input_size)) rc = -EINVAL;
            if (rc == 0) {
                memcpy(to, input, input_size);
                to[input_size] = '\0';
            }
            int target = rc ? rc : open_parent(root, to, second);
            if (target < 0) rc = target;
            else {
                rc = renameat(parent, name, target, second) ? -errno : 0;
                close(target);
            }
        }
        close(parent);
        if (rc == -EXDEV || rc == -ELOOP) rc = -EACCES;
        return rc;
    }
    }
    return -EINVAL;
}

/* A worker's 'H' frame: mount index, op, mount-relative path, and for ops
 * that carry input a NUL and the input.  Checked field by field: it is
 * untrusted. */
static int answer_host(cap_config *config, int fd, const char *payload, size_t size) {
    int32_t rc = -EINVAL;
    buffer body = {0};
    const char *nul = size >= 2 ? memchr(payload + 2, '\0', size - 2) : NULL;
    size_t path_length = nul ? (size_t)(nul - payload - 2) : size >= 2 ? size - 2 : 0;
    const char *input = nul ? nul + 1 : payload + size;
    size_t input_size = (size_t)(payload + size - input);
    int reading = size >= 2 && (payload[1] == 's' || payload[1] == 'r' || payload[1] == 'l');
    int writing = size >= 2 && strchr("ptcmudn", payload[1]) && payload[1] != '\0';
    if (size >= 2 && (unsigned char)payload[0] < config->host_mount_count &&
        path_length < VFS_PATH_MAX && (reading ? !nul : writing)) {
        char path[VFS_PATH_MAX];
        memcpy(path, payload + 2, path_length);
        path[path_length] = '\0';
        char op = payload[1];
        int mount = (unsigned char)payload[0];
        if (writing) {
            rc = config->host_writable[mount]
                     ? host_write_answer(config, mount, op, path, input, input_size)
                     : -EROFS;
        } else {
            int file = open_beneath(config->host_roots[mount], path,
                                    op == 's' ? O_PATH : op == 'l' ? O_RDONLY | O_DIRECTORY
                                                                   : O_RDONLY | O_NONBLOCK);
            if (file == -EXDEV || file == -ELOOP) file = -EACCES;
            rc = file < 0 ? file
                 : op == 's' ? host_stat_answer(file, &body)
                 : op == 'r' ? host_read_answer(file, &body)
                             : host_list_answer(file, &body);
            if (file >= 0 && op != 'l') close(file);
        }
        if (rc == -EXDEV || rc == -ELOOP) rc = -EACCES;
    }
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0 && rc == 0 && body.size) status = buffer_append(&reply, body.data, body.size);
    if (status == 0) status = frame_write(fd, 'H', reply.data, reply.size);
    buffer_free(&reply);
    buffer_free(&body);
    return status;
}

/* A provider's read, on the caller's thread: its message or a generic one. */
static int provider_read(const struct provider *p, const char *name, buffer *body, char *message) {
    void *data = NULL;
    size_t size = 0;
    char error[CAP_ERROR_SIZE] = "";
    if (p->callbacks.read(p->userdata, name, &data, &size, error) != 0 || (!data && size)) {
        free(data);
        snprintf(message, 256, "%s", error[0] ? error : "the provider failed");
        return -EIO;
    }
    body->data = data;
    body->size = body->capacity = size;
    return 0;
}

/* A worker's 'W' frame: the index of a resource mount, a file name, NUL,
 * a u64 offset and the bytes written there, for a provider that takes
 * writes.  Answered with a 'W' frame like 'F' (errno, then a message). */
static int answer_store(const cap_config *config, int fd, const char *payload, size_t size) {
    int http_mounts = config->resource_count > 0;
    int mount = size > 0 ? (unsigned char)payload[0] - http_mounts : -1;
    const char *name = payload + 1;
    const char *nul = size > 1 ? memchr(name, '\0', size - 1) : NULL;
    size_t name_size = nul ? (size_t)(nul - name) : 0;
    char message[256] = "no such resource";
    int32_t rc = -ENOENT;
    if (mount >= 0 && mount < config->provider_count && nul && name_size &&
        size - 2 - name_size >= 8) {
        const struct provider *p = &config->providers[mount];
        int known = p->name_count < 0 && !memchr(name, '/', name_size) &&
                    strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
        for (int i = 0; i < p->name_count; i++) known |= strcmp(p->names[i], name) == 0;
        uint64_t offset;
        memcpy(&offset, nul + 1, 8);
        const char *data = nul + 9;
        size_t data_size = size - 2 - name_size - 8;
        char error[CAP_ERROR_SIZE] = "";
        if (!p->callbacks.write) {
            rc = -EROFS;
            snprintf(message, sizeof message, "read-only");
        } else if (known) {
            rc = p->callbacks.write(p->userdata, name, offset, data, data_size, error) ? -EIO : 0;
            snprintf(message, sizeof message, "%s", error[0] ? error : "the provider failed");
        }
    }
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0 && rc) status = buffer_append(&reply, message, strlen(message));
    if (status == 0) status = frame_write(fd, 'W', reply.data, reply.size);
    buffer_free(&reply);
    return status;
}

/* The URL template with its "{}" replaced by `value`, percent-encoded
 * (all but RFC 3986's unreserved characters), so a name cannot add a path
 * segment, a query or a host to the URL. */
static char *fill_template(const char *url, const char *value, size_t value_size) {
    const char *hole = strstr(url, "{}");
    size_t before = (size_t)(hole - url), after = strlen(hole + 2);
    char *out = malloc(before + 3 * value_size + after + 1);
    if (!out) return NULL;
    memcpy(out, url, before);
    char *p = out + before;
    for (size_t i = 0; i < value_size; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            *p++ = (char)c;
        else
            p += sprintf(p, "%%%02X", c);
    }
    memcpy(p, hole + 2, after + 1);
    return out;
}

/* A worker's 'F' frame: the index of a resource mount, then a file name.
 * Answered with an 'F' frame: a 32-bit errno (0 on success), then the body
 * or a message.  Every field comes from the worker, so each is checked. */
static int answer_fetch(const cap_config *config, int fd, const char *payload, size_t size,
                        double deadline) {
    int http_mounts = config->resource_count > 0;
    int mount = size > 0 ? (unsigned char)payload[0] : -1;
    const char *name = payload + 1;
    size_t name_size = size > 0 ? size - 1 : 0;
    char *const *names = NULL;
    int count = 0;
    if (mount >= 0 && mount < http_mounts) {
        names = config->resource_names;
        count = config->resource_count;
    } else if (mount >= http_mounts && mount < http_mounts + config->provider_count) {
        names = config->providers[mount - http_mounts].names;
        count = config->providers[mount - http_mounts].name_count;
    }
    int index = -1;
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == name_size && memcmp(names[i], name, name_size) == 0) index = i;
    char *templated_url = NULL; /* an HTTP template filled in with the name's value */
    size_t value_start = 0, value_size = 0;
    for (int i = 0; index < 0 && mount >= 0 && mount < http_mounts && i < count; i++) {
        value_size = vfs_template_match(names[i], name, name_size, &value_start);
        if (value_size && (templated_url = fill_template(config->resource_urls[i],
                                                         name + value_start, value_size)))
            index = i;
    }
    char any_name[VFS_NAME_MAX + 1];
    if (count < 0 && name_size > 0 && name_size <= VFS_NAME_MAX &&
        !memchr(name, '/', name_size) && !memchr(name, '\0', name_size) &&
        !(name_size <= 2 && memcmp(name, "..", name_size) == 0)) {
        memcpy(any_name, name, name_size);
        any_name[name_size] = '\0';
        index = 0;
    }
    buffer body = {0};
    char message[256] = "no such resource";
    int32_t rc = -ENOENT;
    if (index >= 0 && mount >= http_mounts) {
        rc = provider_read(&config->providers[mount - http_mounts],
                           count < 0 ? any_name : names[index], &body, message);
    } else if (index >= 0) {
        double left = deadline - now_seconds();
        double timeout = config->http_timeout > 0 ? config->http_timeout : DEFAULT_HTTP_TIMEOUT;
        http_policy policy = {config->allowed_urls, config->allowed_count,
                              timeout < left ? timeout : left,
                              config->http_max_bytes ? config->http_max_bytes
                                                     : DEFAULT_HTTP_MAX_BYTES,
                              NULL};
        const char *url = templated_url ? templated_url : config->resource_urls[index];
        rc = policy.timeout_seconds > 0 ? http_fetch(&policy, url, &body, message) : -ETIMEDOUT;
    }
    if (rc == 0 && body.size > FRAME_MAX - sizeof rc) {
        buffer_free(&body);
        snprintf(message, sizeof message, "content larger than %u bytes", FRAME_MAX / 2);
        rc = -EFBIG;
    }
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0)
        status = rc == 0 ? (body.size ? buffer_append(&reply, body.data, body.size) : 0)
                         : buffer_append(&reply, message, strlen(message));
    if (status == 0) status = frame_write(fd, 'F', reply.data, reply.size);
    buffer_free(&reply);
    buffer_free(&body);
    free(templated_url);
    return status;
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
    if (compiled && take_worker(sandbox, &w, NULL) == CAP_OK) {
        char *header = compile_header(sandbox->config);
        buffer request = {0};
        int rc = header ? buffer_append(&request, header, strlen(header)) : -ENOMEM;
        if (rc == 0) rc = buffer_append(&request, "\n", 1);
        if (rc == 0) rc = frame_write_fd(w.fd, 'Q', request.data, request.size, environment->fd);
        free(header);
        buffer_free(&request);
        double deadline = now_seconds() + COMPILE_SECONDS;
        size_t artifact_bytes = 0;
        while (rc == 0 && wait_readable(w.fd, deadline, -1) == WAIT_READABLE) {
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
            reap_later(sandbox, w.pid);
        } else {
            worker_discard(&w);
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
    double started = now_seconds();
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
    return now_seconds() - started;
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
        set_error(error, "cap_sandbox_run: missing argument");
        return CAP_EINVAL;
    }
    if (!options) options = &defaults;
    for (size_t i = 0; i < options->file_count; i++) {
        if (!options->files[i].path || (!options->files[i].data && options->files[i].size)) {
            set_error(error, "cap_sandbox_run: input file %zu has no path or data", i);
            return CAP_EINVAL;
        }
    }
    if (options->globals_json) {
        cJSON *globals = cJSON_Parse(options->globals_json);
        int is_object = cJSON_IsObject(globals);
        cJSON_Delete(globals);
        if (!is_object) {
            set_error(error, "cap_sandbox_run: globals_json is not a JSON object");
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
    reap_exiting(sandbox, 0);
    expire_sessions(sandbox);
    session *s = NULL;
    worker w;
    if (options->session) {
        s = find_session(sandbox, options->session);
        if (!s && was_evicted(sandbox, options->session)) {
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
        int rc = take_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
    }

    drain_cancellation(sandbox); /* a cancel meant for an earlier run */
    /* Armed before the worker can arm its CPU timer, so that with equal
     * limits the wall deadline always passes first. */
    double deadline = now_seconds() + limits.wall_seconds;
    int dependencies = deps_source_count(sandbox->config->dependencies) > 0;
    if (send_request(&w, code, code_size, options, &limits, options->session != NULL,
                     dependencies) != 0) {
        /* A pooled worker that died idle: the run goes to a new one. */
        worker_discard(&w);
        if (s) {
            s->worker.pid = 0; /* discarded just above: not twice */
            session_remove(sandbox, (int)(s - sandbox->sessions), 1);
            *out = result_new(CAP_STATUS_SESSION_ERROR, "the session's worker is gone");
            return *out ? CAP_OK : CAP_ENOMEM;
        }
        int rc = spawn_worker(sandbox, &w, error);
        if (rc != CAP_OK) return rc;
        if (send_request(&w, code, code_size, options, &limits, 0, dependencies) != 0) {
            worker_discard(&w);
            set_error(error, "cannot hand the run to a worker");
            return CAP_ERUNTIME;
        }
    }
    if (!s) refill_pool(sandbox); /* fork the next worker while this one runs */

    run_state run = {.options = options, .max_output = (size_t)limits.output_bytes};
    cap_result *result = calloc(1, sizeof *result);
    if (!result) {
        worker_discard(&w);
        set_error(error, "out of memory");
        return CAP_ENOMEM;
    }
    int finished = 0, alive = 1;
    size_t artifact_bytes = 0, artifacts_dropped = 0;
    while (!finished) {
        int ready = wait_readable(w.fd, deadline, sandbox->cancel_fd);
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
            reap(w.pid, &status, 0);
            alive = 0;
            classify_death(result, status, &limits);
            /* With the CPU limit at its default (equal to the wall limit)
             * a busy loop hits both; the wall deadline, armed first, is the
             * one the caller set, so it names the outcome. */
            if (result->status == CAP_STATUS_CPU_LIMIT && now_seconds() >= deadline) {
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
            answer_host(sandbox->config, w.fd, payload, size);
        } else if (type == 'F') {
            /* A failed answer means the worker is gone; the next read sees it. */
            answer_fetch(sandbox->config, w.fd, payload, size, deadline);
        } else if (type == 'W') {
            answer_store(sandbox->config, w.fd, payload, size);
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
        if (s) {
            s->last_used = now_seconds();
        } else if (sandbox->session_count < MAX_SESSIONS && sandbox->config->max_sessions > 0) {
            if (sandbox->session_count >= sandbox->config->max_sessions) {
                int oldest = 0; /* least recently used */
                for (int i = 1; i < sandbox->session_count; i++)
                    if (sandbox->sessions[i].last_used < sandbox->sessions[oldest].last_used)
                        oldest = i;
                session_remove(sandbox, oldest, 1);
            }
            char *id = strdup(options->session);
            if (id) {
                sandbox->sessions[sandbox->session_count++] = (session){id, w, now_seconds()};
            } else {
                worker_discard(&w);
            }
        } else {
            worker_discard(&w);
        }
    } else {
        if (alive) {
            if (finished == 2) {
                /* A fresh worker exits by itself after its result. */
                close(w.fd);
                reap_later(sandbox, w.pid);
                w.pid = 0;
            } else {
                worker_discard(&w);
            }
        } else {
            close(w.fd);
        }
        if (s) {
            s->worker.pid = 0; /* its worker was handled above: not twice */
            session_remove(sandbox, (int)(s - sandbox->sessions), 1);
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
