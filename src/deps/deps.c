/*
 * deps.c — sources, resolution and environments (see deps.h).
 *
 * Resolution is greedy, in the order requirements are met (the program's
 * first, then each chosen distribution's Requires-Dist): a distribution is
 * chosen once, at the highest version its first source offers that fits,
 * and every later requirement on it must accept that version or the
 * resolution reports a conflict.  When a conflict could be avoided by a
 * version that satisfies every constraint seen, the resolution restarts
 * with those constraints known up front (a few times at most).  That
 * covers what programs written by agents need without a SAT solver.
 *
 * Environments are content-addressed: the key is a SHA-256 over the chosen
 * distributions and the hashes of their files' sources, so equal keys mean
 * equal images.  With a cache directory, images and downloaded wheels are
 * files there (shared by processes); without one, images are sealed memfds.
 * A request seen before is answered from memory, without resolving again.
 */
#include "deps.h"

#include <cjson/cJSON.h>
#include "../libraries/curl.h"
#include "../libraries/digest.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sandbox/buffer.h"
#include "../sandbox/http.h"

#define MAX_SOURCES 16
#define MAX_CHOSEN 256
#define MAX_QUEUE 4096
#define MAX_MEMO 64
#define MAX_RESTARTS 4
#define MAX_UNFINISHED 8 /* environments waiting for their bytecode */
#define MAX_WHEEL_BYTES (256u << 20)
#define MAX_PAGE_BYTES (16u << 20)
#define MAX_INSTALLED_FILES 20000
#define MAX_ACCELERATORS 4 /* extension modules an installable distribution may leave out */
#define MAX_INSTALLED_BYTES (512ull << 20)
#define DOWNLOAD_SECONDS 60.0
#define PYTHON_FULL_VERSION "3.11.2"

typedef enum { SOURCE_WHEELS, SOURCE_INDEX, SOURCE_SITE_PACKAGES } source_kind;

/* A distribution installed in a host site-packages directory. */
typedef struct installed {
    char name[DEPS_NAME_MAX], normalized[DEPS_NAME_MAX], version[64];
    char info[NAME_MAX + 1]; /* its .dist-info or .egg-info entry */
    char **top_level;        /* import names it provides */
    size_t top_level_count;
} installed;

typedef struct source {
    source_kind kind;
    char *location; /* a directory, or the index URL ending in '/' */
    installed *installed;
    size_t installed_count;
    int scanned;
} source;

typedef struct memo_entry {
    char *request;
    deps_environment environment;
} memo_entry;

struct deps_resolver {
    pthread_mutex_t lock;
    source sources[MAX_SOURCES];
    int source_count;
    char *cache_directory;
    memo_entry memo[MAX_MEMO];
    int memo_count, memo_next;
    struct unfinished {
        char key[65];
        vfs_image_builder *builder; /* the environment's files, kept to add bytecode */
    } unfinished[MAX_UNFINISHED];
    int unfinished_count;
};

/* Import names that differ from the distribution's name. */
static const char *const KNOWN_IMPORTS[][2] = {
    {"yaml", "PyYAML"}, {"bs4", "beautifulsoup4"}, {"docx", "python-docx"},
    {"pptx", "python-pptx"}, {"dateutil", "python-dateutil"}, {"PIL", "pillow"},
    {"sklearn", "scikit-learn"}, {"skimage", "scikit-image"}, {"cv2", "opencv-python"},
    {"attr", "attrs"}, {"dotenv", "python-dotenv"}, {"jwt", "PyJWT"},
    {"magic", "python-magic"}, {"serial", "pyserial"}, {"Crypto", "pycryptodome"},
    {"Cryptodome", "pycryptodomex"}, {"OpenSSL", "pyOpenSSL"}, {"fitz", "PyMuPDF"},
    {"dns", "dnspython"}, {"git", "GitPython"}, {"multipart", "python-multipart"},
    {"slugify", "python-slugify"}, {"pkg_resources", "setuptools"}, {"socks", "PySocks"},
    {"zmq", "pyzmq"}, {"Levenshtein", "python-Levenshtein"}, {"odf", "odfpy"},
    {"pdfminer", "pdfminer.six"}, {"tabulate", "tabulate"}, {"google.protobuf", "protobuf"},
};

/* Distributions compiled into the guest's interpreter (guest/extensions):
 * a requirement on one is met by the built-in copy, reported with its
 * version, and never installed from a source (a host's copy is native code
 * for another platform).  Keep the versions equal to what guest/extensions
 * builds (Debian's sources); tests/integration/test_extensions.py checks. */
static const char *const BUILTIN_DISTRIBUTIONS[][2] = {
    {"pillow", "9.4.0"},
    {"lxml", "4.9.2"},
};

/* --- small helpers ------------------------------------------------------------ */

static void sayf(char *message, const char *format, ...) {
    if (!message) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, DEPS_MESSAGE_SIZE, format, args);
    va_end(args);
}

static int read_whole(int directory, const char *path, size_t max, unsigned char **data,
                      size_t *size) {
    int fd = openat(directory, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL
             : (uint64_t)st.st_size > max                       ? -EFBIG
                                                                 : 0;
    unsigned char *bytes = rc ? NULL : malloc((size_t)st.st_size + 1);
    if (!rc && !bytes) rc = -ENOMEM;
    size_t total = 0;
    while (!rc && total < (size_t)st.st_size) {
        ssize_t n = read(fd, bytes + total, (size_t)st.st_size - total);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) rc = n < 0 ? -errno : -EIO;
        else total += (size_t)n;
    }
    close(fd);
    if (rc) {
        free(bytes);
        return rc;
    }
    bytes[total] = '\0';
    *data = bytes;
    *size = total;
    return 0;
}

/* Writes `path` whole or not at all (another process may be reading the
 * cache): into a temporary file beside it, renamed over it when complete. */
static int publish(const char *path, int (*write_to)(int fd, void *context), void *context) {
    char temporary[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int directory_length = slash ? (int)(slash - path) : 0;
    snprintf(temporary, sizeof temporary, "%.*s/.partial-XXXXXX", directory_length, path);
    int fd = mkstemp(temporary);
    if (fd < 0) return -errno;
    int rc = write_to(fd, context);
    close(fd);
    if (rc == 0 && rename(temporary, path) != 0) rc = -errno;
    if (rc) unlink(temporary);
    return rc;
}

static int write_buffer(int fd, void *context) {
    const buffer *b = context;
    for (size_t done = 0; done < b->size;) {
        ssize_t n = write(fd, b->data + done, b->size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return 0;
}

static int write_image(int fd, void *builder) {
    return vfs_image_builder_write(builder, fd);
}

/* Where the cache keeps the environment `key`. */
static void environment_path(const deps_resolver *resolver, const char *key, char *out,
                             size_t out_size) {
    snprintf(out, out_size, "%s/environments/%s.img", resolver->cache_directory, key);
}

static int push_string(char ***list, size_t *count, const char *text) {
    char **grown = realloc(*list, (*count + 1) * sizeof *grown);
    if (!grown) return -1;
    *list = grown;
    if (!(grown[*count] = strdup(text))) return -1;
    (*count)++;
    return 0;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --- configuration --------------------------------------------------------------- */

deps_resolver *deps_resolver_new(void) {
    deps_resolver *resolver = calloc(1, sizeof *resolver);
    if (resolver) pthread_mutex_init(&resolver->lock, NULL);
    return resolver;
}

void deps_environment_free(deps_environment *environment) {
    if (!environment) return;
    if (environment->fd >= 0) close(environment->fd);
    free_strings(environment->installed, environment->installed_count);
    free_strings(environment->notes, environment->note_count);
    memset(environment, 0, sizeof *environment);
    environment->fd = -1;
}

static void free_installed(source *s) {
    for (size_t i = 0; i < s->installed_count; i++)
        free_strings(s->installed[i].top_level, s->installed[i].top_level_count);
    free(s->installed);
    s->installed = NULL;
    s->installed_count = 0;
}

void deps_resolver_free(deps_resolver *resolver) {
    if (!resolver) return;
    for (int i = 0; i < resolver->source_count; i++) {
        free(resolver->sources[i].location);
        free_installed(&resolver->sources[i]);
    }
    for (int i = 0; i < resolver->memo_count; i++) {
        free(resolver->memo[i].request);
        deps_environment_free(&resolver->memo[i].environment);
    }
    for (int i = 0; i < resolver->unfinished_count; i++)
        vfs_image_builder_free(resolver->unfinished[i].builder);
    free(resolver->cache_directory);
    pthread_mutex_destroy(&resolver->lock);
    free(resolver);
}

static int add_source(deps_resolver *resolver, source_kind kind, const char *location,
                      char *error) {
    if (resolver->source_count == MAX_SOURCES) {
        sayf(error, "too many package sources (at most %d)", MAX_SOURCES);
        return -1;
    }
    source *s = &resolver->sources[resolver->source_count];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    if (kind == SOURCE_INDEX) {
        size_t length = strlen(location);
        s->location = malloc(length + 2);
        if (s->location) snprintf(s->location, length + 2, "%s%s", location,
                                  length && location[length - 1] == '/' ? "" : "/");
    } else {
        s->location = realpath(location, NULL);
        struct stat st;
        if (!s->location || stat(s->location, &st) != 0 || !S_ISDIR(st.st_mode)) {
            sayf(error, "%s: not a directory", location);
            free(s->location);
            return -1;
        }
    }
    if (!s->location) {
        sayf(error, "out of memory");
        return -1;
    }
    resolver->source_count++;
    return 0;
}

int deps_add_wheel_directory(deps_resolver *resolver, const char *path, char *error) {
    return add_source(resolver, SOURCE_WHEELS, path, error);
}

int deps_add_site_packages(deps_resolver *resolver, const char *path, char *error) {
    return add_source(resolver, SOURCE_SITE_PACKAGES, path, error);
}

int deps_add_index(deps_resolver *resolver, const char *url, char *error) {
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        sayf(error, "index URL must be http:// or https://: %.300s", url);
        return -1;
    }
    return add_source(resolver, SOURCE_INDEX, url, error);
}

static int make_directory(const char *path) {
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

int deps_set_cache_directory(deps_resolver *resolver, const char *path, char *error) {
    char sub[PATH_MAX];
    int rc = 0;
    /* mkdir -p: the default (~/.cache/capsule) may not exist yet. */
    snprintf(sub, sizeof sub, "%s", path);
    for (char *slash = strchr(sub + 1, '/'); rc == 0 && slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        rc = make_directory(sub);
        *slash = '/';
    }
    if (rc == 0) rc = make_directory(path);
    snprintf(sub, sizeof sub, "%s/wheels", path);
    if (rc == 0) rc = make_directory(sub);
    snprintf(sub, sizeof sub, "%s/environments", path);
    if (rc == 0) rc = make_directory(sub);
    if (rc) {
        sayf(error, "cache directory %.300s: %s", path, strerror(-rc));
        return -1;
    }
    free(resolver->cache_directory);
    resolver->cache_directory = strdup(path);
    return resolver->cache_directory ? 0 : -1;
}

int deps_open_environment(const deps_resolver *resolver, const char *key) {
    if (!resolver || !resolver->cache_directory) return -ENOENT;
    size_t length = key ? strlen(key) : 0;
    if (length != 64 || strspn(key, "0123456789abcdef") != length) return -EINVAL;
    char path[PATH_MAX];
    environment_path(resolver, key, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    vfs_image *image;
    if (vfs_image_open_fd(fd, &image) != 0) { /* checked, not trusted */
        close(fd);
        return -EINVAL;
    }
    vfs_image_release(image);
    return fd;
}

int deps_source_count(const deps_resolver *resolver) {
    return resolver ? resolver->source_count : 0;
}

/* --- host site-packages ------------------------------------------------------------ */

static int has_suffix(const char *text, const char *suffix) {
    size_t a = strlen(text), b = strlen(suffix);
    return a >= b && strcmp(text + a - b, suffix) == 0;
}

/* The metadata text of an installed distribution: METADATA of a
 * .dist-info, PKG-INFO of an .egg-info directory, or the .egg-info file. */
static char *installed_metadata(int root, const char *info) {
    char path[PATH_MAX];
    struct stat st;
    if (fstatat(root, info, &st, 0) != 0) return NULL;
    if (S_ISREG(st.st_mode)) snprintf(path, sizeof path, "%s", info);
    else snprintf(path, sizeof path, "%s/%s", info, has_suffix(info, ".dist-info") ? "METADATA"
                                                                                   : "PKG-INFO");
    unsigned char *data;
    size_t size;
    return read_whole(root, path, 4u << 20, &data, &size) == 0 ? (char *)data : NULL;
}

/* A RECORD line's path: the text before the last two commas, unquoted. */
static int record_path(const char *line, size_t length, char *out, size_t out_size) {
    const char *end = line + length;
    for (int commas = 0; end > line && commas < 2;)
        if (*--end == ',') commas++;
    size_t n = (size_t)(end - line);
    if (n >= 2 && line[0] == '"' && line[n - 1] == '"') line++, n -= 2;
    if (n == 0 || n >= out_size) return -1;
    memcpy(out, line, n);
    out[n] = '\0';
    return 0;
}

/* Import names a distribution without top_level.txt or RECORD may have
 * (an .egg-info that is a single file, as Debian ships XlsxWriter and
 * jdcal): its name as is, in lower case, and with '-' and '.' as '_',
 * where a package directory or a module of that name is there. */
static void guessed_top_level(int root, installed *dist) {
    char variants[3][sizeof dist->name];
    snprintf(variants[0], sizeof variants[0], "%s", dist->name);
    for (int v = 1; v < 3; v++) {
        for (size_t i = 0;; i++) {
            char c = dist->name[i];
            if (v == 2 && (c == '-' || c == '.')) c = '_';
            variants[v][i] = (char)tolower((unsigned char)c);
            if (!c) break;
        }
    }
    for (int v = 0; v < 3; v++) {
        int seen = 0;
        for (size_t i = 0; i < dist->top_level_count; i++)
            seen |= strcmp(dist->top_level[i], variants[v]) == 0;
        if (seen || strchr(variants[v], '.') || strchr(variants[v], '/') || !variants[v][0])
            continue;
        char module[PATH_MAX], package[PATH_MAX];
        struct stat st;
        snprintf(module, sizeof module, "%s.py", variants[v]);
        snprintf(package, sizeof package, "%s/__init__.py", variants[v]);
        if ((fstatat(root, module, &st, 0) == 0 && S_ISREG(st.st_mode)) ||
            (fstatat(root, package, &st, 0) == 0 && S_ISREG(st.st_mode)))
            push_string(&dist->top_level, &dist->top_level_count, variants[v]);
    }
}

/* Import names: top_level.txt, else the first components of RECORD, else
 * guessed from the distribution's name. */
static void installed_top_level(int root, installed *dist) {
    char path[PATH_MAX];
    unsigned char *data = NULL;
    size_t size;
    int from_record = 0;
    snprintf(path, sizeof path, "%s/top_level.txt", dist->info);
    if (read_whole(root, path, 1u << 20, &data, &size) != 0) {
        snprintf(path, sizeof path, "%s/RECORD", dist->info);
        if (read_whole(root, path, 16u << 20, &data, &size) != 0) {
            guessed_top_level(root, dist);
            return;
        }
        from_record = 1;
    }
    for (char *save = NULL, *line = strtok_r((char *)data, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        char name[PATH_MAX];
        if (from_record ? record_path(line, strlen(line), name, sizeof name) != 0
                        : snprintf(name, sizeof name, "%s", line) >= (int)sizeof name)
            continue;
        name[strcspn(name, "/")] = '\0';
        if (has_suffix(name, ".py")) name[strlen(name) - 3] = '\0';
        if (!name[0] || strstr(name, ".dist-info") || strstr(name, ".egg-info") ||
            strcmp(name, "..") == 0 || strcmp(name, "__pycache__") == 0 || strchr(name, '.'))
            continue;
        int seen = 0;
        for (size_t i = 0; i < dist->top_level_count; i++)
            seen |= strcmp(dist->top_level[i], name) == 0;
        if (!seen) push_string(&dist->top_level, &dist->top_level_count, name);
    }
    free(data);
}

static void scan_site_packages(source *s) {
    if (s->scanned) return;
    s->scanned = 1;
    int root = open(s->location, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *directory = root >= 0 ? fdopendir(dup(root)) : NULL;
    if (!directory) {
        if (root >= 0) close(root);
        return;
    }
    size_t capacity = 0;
    for (struct dirent *entry; (entry = readdir(directory));) {
        if (!has_suffix(entry->d_name, ".dist-info") && !has_suffix(entry->d_name, ".egg-info"))
            continue;
        char *metadata = installed_metadata(root, entry->d_name);
        char *name = metadata ? metadata_field(metadata, "Name") : NULL;
        char *version = metadata ? metadata_field(metadata, "Version") : NULL;
        free(metadata);
        installed dist = {0};
        if (name && version && strlen(version) < sizeof dist.version &&
            deps_normalize_name(name, dist.normalized, sizeof dist.normalized) == 0 &&
            strlen(name) < sizeof dist.name) {
            strcpy(dist.name, name);
            strcpy(dist.version, version);
            snprintf(dist.info, sizeof dist.info, "%s", entry->d_name);
            installed_top_level(root, &dist);
            if (s->installed_count == capacity) {
                capacity = capacity ? capacity * 2 : 64;
                installed *grown = realloc(s->installed, capacity * sizeof *grown);
                if (grown) s->installed = grown;
                else capacity = s->installed_count;
            }
            if (s->installed_count < capacity) s->installed[s->installed_count++] = dist;
            else free_strings(dist.top_level, dist.top_level_count);
        }
        free(name);
        free(version);
    }
    closedir(directory);
    close(root);
}

/* Requires-Dist of an installed distribution; an .egg-info keeps them in
 * requires.txt, in sections "[extra]", "[:marker]" or "[extra:marker]". */
static int installed_requires(const char *root_path, const installed *dist, char ***out,
                              size_t *count) {
    *out = NULL;
    *count = 0;
    int root = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return -1;
    int rc = 0;
    if (has_suffix(dist->info, ".dist-info")) {
        char *metadata = installed_metadata(root, dist->info);
        rc = metadata ? metadata_field_values(metadata, "Requires-Dist", out, count) : -1;
        free(metadata);
        close(root);
        return rc;
    }
    char path[PATH_MAX];
    unsigned char *data;
    size_t size;
    snprintf(path, sizeof path, "%s/requires.txt", dist->info);
    if (read_whole(root, path, 1u << 20, &data, &size) != 0) {
        close(root);
        return 0; /* none */
    }
    close(root);
    char extra[DEPS_NAME_MAX] = "", marker[DEPS_MARKER_MAX] = "";
    for (char *save = NULL, *line = strtok_r((char *)data, "\r\n", &save); rc == 0 && line;
         line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        if (*line == '[') {
            char *close_bracket = strchr(line, ']');
            if (!close_bracket) continue;
            *close_bracket = '\0';
            char *colon = strchr(line + 1, ':');
            if (colon) *colon = '\0';
            snprintf(extra, sizeof extra, "%s", line + 1);
            snprintf(marker, sizeof marker, "%s", colon ? colon + 1 : "");
            continue;
        }
        char requirement[DEPS_MARKER_MAX * 2];
        if (extra[0] && marker[0])
            snprintf(requirement, sizeof requirement, "%s ; (%s) and extra == \"%s\"", line,
                     marker, extra);
        else if (extra[0])
            snprintf(requirement, sizeof requirement, "%s ; extra == \"%s\"", line, extra);
        else if (marker[0])
            snprintf(requirement, sizeof requirement, "%s ; %s", line, marker);
        else
            snprintf(requirement, sizeof requirement, "%s", line);
        rc = push_string(out, count, requirement);
    }
    free(data);
    return rc;
}

/* Files of an installed distribution, relative to the site-packages root:
 * RECORD when there is one, else the top-level names walked on disk. */
typedef struct file_list {
    char **paths;        /* what is installed */
    size_t count;
    char **native_paths; /* extension modules: never installed */
    size_t native_count;
    int too_many;
} file_list;

static void file_list_free(file_list *list) {
    free_strings(list->paths, list->count);
    free_strings(list->native_paths, list->native_count);
    memset(list, 0, sizeof *list);
}

static int is_native(const char *path) {
    return has_suffix(path, ".so") || has_suffix(path, ".pyd") || strstr(path, ".so.") != NULL;
}

static int plain_relative(const char *path) {
    if (!*path || path[0] == '/') return 0;
    for (const char *start = path;;) {
        const char *slash = strchr(start, '/');
        size_t n = slash ? (size_t)(slash - start) : strlen(start);
        if (n == 0 || (n == 1 && start[0] == '.') || (n == 2 && !strncmp(start, "..", 2)) ||
            (n == 11 && !strncmp(start, "__pycache__", 11)))
            return 0;
        if (!slash) return 1;
        start = slash + 1;
    }
}

static void list_add(file_list *list, const char *path) {
    if (!plain_relative(path) || has_suffix(path, ".pyc")) return;
    if (list->count + list->native_count >= MAX_INSTALLED_FILES) {
        list->too_many = 1;
        return;
    }
    if (is_native(path)) push_string(&list->native_paths, &list->native_count, path);
    else push_string(&list->paths, &list->count, path);
}

static void walk(int root, const char *path, file_list *list, int depth) {
    struct stat st;
    if (depth > 32 || list->too_many || fstatat(root, path, &st, 0) != 0) return;
    if (S_ISREG(st.st_mode)) {
        list_add(list, path);
        return;
    }
    if (!S_ISDIR(st.st_mode)) return;
    int fd = openat(root, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (!directory) {
        if (fd >= 0) close(fd);
        return;
    }
    for (struct dirent *entry; (entry = readdir(directory));) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..") ||
            !strcmp(entry->d_name, "__pycache__"))
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, entry->d_name) < (int)sizeof child)
            walk(root, child, list, depth + 1);
    }
    closedir(directory);
}

static void installed_files(const char *root_path, const installed *dist, file_list *list) {
    memset(list, 0, sizeof *list);
    int root = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return;
    char path[PATH_MAX];
    unsigned char *data;
    size_t size;
    snprintf(path, sizeof path, "%s/RECORD", dist->info);
    if (has_suffix(dist->info, ".dist-info") &&
        read_whole(root, path, 16u << 20, &data, &size) == 0) {
        for (char *save = NULL, *line = strtok_r((char *)data, "\r\n", &save); line;
             line = strtok_r(NULL, "\r\n", &save)) {
            char file[PATH_MAX];
            struct stat st;
            if (record_path(line, strlen(line), file, sizeof file) == 0 &&
                fstatat(root, file, &st, 0) == 0 && S_ISREG(st.st_mode))
                list_add(list, file);
        }
        free(data);
    } else {
        walk(root, dist->info, list, 0);
        for (size_t i = 0; i < dist->top_level_count; i++) {
            char module[PATH_MAX];
            walk(root, dist->top_level[i], list, 0);
            snprintf(module, sizeof module, "%s.py", dist->top_level[i]);
            walk(root, module, list, 0);
            /* Extension modules next to the package ("name.cpython-311-x86_64-linux-gnu.so"). */
            DIR *directory = fdopendir(dup(root));
            size_t prefix = strlen(dist->top_level[i]);
            for (struct dirent *entry; directory && (entry = readdir(directory));)
                if (!strncmp(entry->d_name, dist->top_level[i], prefix) &&
                    entry->d_name[prefix] == '.' && is_native(entry->d_name))
                    list_add(list, entry->d_name);
            if (directory) closedir(directory);
        }
    }
    close(root);
}

/* 1 when the Python files left after the extension modules are taken out
 * still make `name` importable: "name.py", or a package directory with
 * Python in it (regular or namespace). */
static int importable_without_native(const file_list *list, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < list->count; i++) {
        const char *path = list->paths[i];
        if (strncmp(path, name, n) != 0) continue;
        if (strcmp(path + n, ".py") == 0) return 1;
        if (path[n] == '/' && has_suffix(path, ".py")) return 1;
    }
    return 0;
}

/* Copies the files into the image; only regular files beneath the root
 * (a symbolic link leading elsewhere on the host is left out). */
static int install_files(const char *root_path, const file_list *list, vfs_image_builder *builder,
                         char *message) {
    int root = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        sayf(message, "cannot open %.300s: %s", root_path, strerror(errno));
        return -1;
    }
    size_t root_length = strlen(root_path);
    uint64_t total = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < list->count; i++) {
        char full[PATH_MAX], *real;
        snprintf(full, sizeof full, "%s/%s", root_path, list->paths[i]);
        if (!(real = realpath(full, NULL))) continue;
        int beneath = strncmp(real, root_path, root_length) == 0 && real[root_length] == '/';
        free(real);
        unsigned char *data;
        size_t size;
        if (!beneath || read_whole(root, list->paths[i], MAX_INSTALLED_BYTES, &data, &size) != 0)
            continue;
        total += size;
        if (total > MAX_INSTALLED_BYTES) {
            sayf(message, "more than %llu bytes of files", MAX_INSTALLED_BYTES);
            rc = -1;
        } else if (vfs_image_builder_add(builder, list->paths[i], data, size) != 0) {
            sayf(message, "cannot install %.300s (a duplicate or unusable name)", list->paths[i]);
            rc = -1;
        }
        free(data);
    }
    close(root);
    return rc;
}

/* --- candidates ---------------------------------------------------------------------- */

typedef struct candidate {
    char name[DEPS_NAME_MAX];
    char version[64];
    int source;
    char *location;   /* wheel path or URL; NULL for an installed distribution */
    char sha256[65];  /* from the index, "" when it gives none */
    int pure;
    char tags[200];
    const installed *dist;
} candidate;

typedef struct candidate_list {
    candidate *items;
    size_t count;
    int source_distributions; /* files that are not wheels (for the message) */
} candidate_list;

static void candidates_free(candidate_list *list) {
    for (size_t i = 0; i < list->count; i++) free(list->items[i].location);
    free(list->items);
    memset(list, 0, sizeof *list);
}

static int candidates_push(candidate_list *list, const candidate *c) {
    candidate *grown = realloc(list->items, (list->count + 1) * sizeof *grown);
    if (!grown) return -1;
    list->items = grown;
    grown[list->count++] = *c;
    return 0;
}

/* A wheel file name, if its distribution is `normalized`. */
static int wheel_candidate(const char *filename, const char *normalized, int source_index,
                           candidate *c) {
    wheel_name parsed;
    char name[DEPS_NAME_MAX];
    if (wheel_parse_filename(filename, &parsed) != 0 ||
        deps_normalize_name(parsed.name, name, sizeof name) != 0 || strcmp(name, normalized) != 0)
        return -1;
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", parsed.name);
    snprintf(c->version, sizeof c->version, "%s", parsed.version);
    int order;
    if (deps_version_compare(c->version, c->version, &order, NULL, 0) != 0) return -1;
    c->source = source_index;
    c->pure = wheel_is_pure(&parsed);
    snprintf(c->tags, sizeof c->tags, "%.60s-%.40s-%.90s", parsed.python_tag, parsed.abi_tag,
             parsed.platform_tag);
    return 0;
}

static void html_unescape(char *text) {
    static const char *const entities[][2] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"},
        {"&#x27;", "'"}};
    char *out = text;
    for (char *in = text; *in;) {
        int replaced = 0;
        for (size_t i = 0; i < sizeof entities / sizeof *entities && *in == '&'; i++) {
            size_t n = strlen(entities[i][0]);
            if (strncmp(in, entities[i][0], n) == 0) {
                *out++ = entities[i][1][0];
                in += n;
                replaced = 1;
                break;
            }
        }
        if (!replaced) *out++ = *in++;
    }
    *out = '\0';
}

/* The value of attribute `name` inside one tag, unescaped (malloc'd). */
static char *tag_attribute(const char *tag, size_t tag_length, const char *name) {
    size_t name_length = strlen(name);
    for (const char *p = tag; p + name_length + 2 < tag + tag_length; p++) {
        if ((p == tag || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n') &&
            strncasecmp(p, name, name_length) == 0 && p[name_length] == '=') {
            const char *value = p + name_length + 1;
            char quote = *value == '"' || *value == '\'' ? *value++ : ' ';
            const char *end = value;
            while (end < tag + tag_length && *end != quote && (quote != ' ' || *end != '>')) end++;
            char *text = strndup(value, (size_t)(end - value));
            if (text) html_unescape(text);
            return text;
        }
        if (p + name_length + 1 < tag + tag_length && strncasecmp(p, name, name_length) == 0 &&
            (p == tag || p[-1] == ' ') && (p[name_length] == ' ' || p[name_length] == '>'))
            return strdup(""); /* present without a value (data-yanked) */
    }
    return NULL;
}

static char *resolve_url(const char *base, const char *reference) {
    if (library_load_curl(NULL) != 0) return NULL;
    CURLU *url = curl_url();
    char *result = NULL, *out = NULL;
    if (url && curl_url_set(url, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(url, CURLUPART_URL, reference, 0) == CURLUE_OK &&
        curl_url_get(url, CURLUPART_URL, &out, 0) == CURLUE_OK) {
        result = strdup(out);
        curl_free(out);
    }
    if (url) curl_url_cleanup(url);
    return result;
}

/* Adds one file of an index page. */
static void index_file(candidate_list *list, const char *page_url, const char *normalized,
                       int source_index, const char *filename, const char *href,
                       const char *sha256, const char *requires_python, int yanked) {
    if (!has_suffix(filename, ".whl")) {
        list->source_distributions++;
        return;
    }
    candidate c;
    if (yanked || wheel_candidate(filename, normalized, source_index, &c) != 0) return;
    if (requires_python && *requires_python) {
        int fits = 1;
        if (deps_specifier_contains(requires_python, PYTHON_FULL_VERSION, 1, &fits, NULL, 0) == 0 &&
            !fits)
            return;
    }
    char *reference = strdup(href), *fragment = reference ? strchr(reference, '#') : NULL;
    if (!reference) return;
    if (fragment) {
        *fragment++ = '\0';
        if (!sha256 && strncmp(fragment, "sha256=", 7) == 0) sha256 = fragment + 7;
    }
    if (sha256 && strlen(sha256) == 64) {
        for (int i = 0; i < 64; i++) c.sha256[i] = (char)tolower((unsigned char)sha256[i]);
        c.sha256[64] = '\0';
    }
    c.location = resolve_url(page_url, reference);
    free(reference);
    if (!c.location || candidates_push(list, &c) != 0) free(c.location);
}

static void parse_json_page(const buffer *page, const char *url, const char *normalized,
                            int source_index, candidate_list *list) {
    cJSON *root = cJSON_ParseWithLength(page->data, page->size);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files"), *file;
    cJSON_ArrayForEach(file, files) {
        const cJSON *filename = cJSON_GetObjectItemCaseSensitive(file, "filename");
        const cJSON *href = cJSON_GetObjectItemCaseSensitive(file, "url");
        const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(file, "hashes");
        const cJSON *sha256 = cJSON_GetObjectItemCaseSensitive(hashes, "sha256");
        const cJSON *python = cJSON_GetObjectItemCaseSensitive(file, "requires-python");
        const cJSON *yanked = cJSON_GetObjectItemCaseSensitive(file, "yanked");
        if (!cJSON_IsString(filename) || !cJSON_IsString(href)) continue;
        index_file(list, url, normalized, source_index, filename->valuestring, href->valuestring,
                   cJSON_IsString(sha256) ? sha256->valuestring : NULL,
                   cJSON_IsString(python) ? python->valuestring : NULL,
                   cJSON_IsTrue(yanked) || cJSON_IsString(yanked));
    }
    cJSON_Delete(root);
}

static void parse_html_page(const buffer *page, const char *url, const char *normalized,
                            int source_index, candidate_list *list) {
    const char *text = page->data, *end = page->data + page->size;
    for (const char *p = text; p < end && (p = strstr(p, "<a")) && p < end;) {
        const char *tag_end = memchr(p, '>', (size_t)(end - p));
        if (!tag_end) break;
        const char *close = strstr(tag_end, "</a>");
        if (!close) break;
        char *href = tag_attribute(p, (size_t)(tag_end - p), "href");
        char *python = tag_attribute(p, (size_t)(tag_end - p), "data-requires-python");
        char *yanked = tag_attribute(p, (size_t)(tag_end - p), "data-yanked");
        char *filename = strndup(tag_end + 1, (size_t)(close - tag_end - 1));
        if (href && filename) {
            html_unescape(filename);
            char *trimmed = filename;
            while (*trimmed == ' ' || *trimmed == '\n') trimmed++;
            trimmed[strcspn(trimmed, " \r\n<")] = '\0';
            index_file(list, url, normalized, source_index, trimmed, href, NULL, python,
                       yanked != NULL);
        }
        free(href);
        free(python);
        free(yanked);
        free(filename);
        p = close + 4;
    }
}

/* The index and the files it links to are the embedder's choice, so any
 * http(s) URL they lead to may be fetched. */
static http_policy download_policy(const char *accept) {
    static char *const anywhere[] = {"http://", "https://"};
    http_policy policy = {anywhere, 2, DOWNLOAD_SECONDS, MAX_WHEEL_BYTES, accept, 0};
    return policy;
}

/* Every candidate of `normalized` in source `index`; -1 when the source
 * failed (not when it lacks the name), with a message. */
static int find_candidates(deps_resolver *resolver, int index, const char *normalized,
                           candidate_list *list, char *message) {
    source *s = &resolver->sources[index];
    memset(list, 0, sizeof *list);
    if (s->kind == SOURCE_WHEELS) {
        DIR *directory = opendir(s->location);
        if (!directory) {
            sayf(message, "wheel directory %.300s: %s", s->location, strerror(errno));
            return -1;
        }
        for (struct dirent *entry; (entry = readdir(directory));) {
            candidate c;
            if (wheel_candidate(entry->d_name, normalized, index, &c) != 0) continue;
            size_t n = strlen(s->location) + strlen(entry->d_name) + 2;
            if (!(c.location = malloc(n))) continue;
            snprintf(c.location, n, "%s/%s", s->location, entry->d_name);
            if (candidates_push(list, &c) != 0) free(c.location);
        }
        closedir(directory);
        return 0;
    }
    if (s->kind == SOURCE_SITE_PACKAGES) {
        scan_site_packages(s);
        for (size_t i = 0; i < s->installed_count; i++) {
            if (strcmp(s->installed[i].normalized, normalized) != 0) continue;
            candidate c = {.source = index, .dist = &s->installed[i], .pure = 1};
            snprintf(c.name, sizeof c.name, "%s", s->installed[i].name);
            snprintf(c.version, sizeof c.version, "%s", s->installed[i].version);
            snprintf(c.tags, sizeof c.tags, "installed in %s", s->location);
            candidates_push(list, &c);
        }
        return 0;
    }
    size_t n = strlen(s->location) + strlen(normalized) + 2;
    char *url = malloc(n);
    if (!url) return -1;
    snprintf(url, n, "%s%s/", s->location, normalized);
    http_policy policy = download_policy("application/vnd.pypi.simple.v1+json, "
                                                   "text/html;q=0.1");
    policy.max_bytes = MAX_PAGE_BYTES;
    buffer page = {0};
    char reason[256] = "";
    int rc = http_fetch(&policy, url, &page, reason);
    if (rc == -ENOENT) {
        rc = 0; /* the index has no such project */
    } else if (rc) {
        sayf(message, "index %.200s: %s", url, reason);
        rc = -1;
    } else {
        size_t start = 0;
        while (start < page.size && (page.data[start] == ' ' || page.data[start] == '\n')) start++;
        if (start < page.size && page.data[start] == '{')
            parse_json_page(&page, url, normalized, index, list);
        else
            parse_html_page(&page, url, normalized, index, list);
    }
    buffer_free(&page);
    free(url);
    return rc;
}

/* --- fetching wheels ------------------------------------------------------------------ */

/* The wheel's bytes: read from its directory, or the cache, or downloaded
 * (and checked against the index's hash, then cached). */
static int wheel_bytes(deps_resolver *resolver, const candidate *c, unsigned char **data,
                       size_t *size, char actual_sha256[65], deps_progress_fn progress,
                       void *userdata, char *message) {
    const source *s = &resolver->sources[c->source];
    const char *filename = strrchr(c->location, '/') ? strrchr(c->location, '/') + 1 : c->location;
    if (s->kind == SOURCE_WHEELS) {
        int rc = read_whole(AT_FDCWD, c->location, MAX_WHEEL_BYTES, data, size);
        if (rc) {
            sayf(message, "cannot read %.300s: %s", c->location, strerror(-rc));
            return -1;
        }
        digest_sha256_hex(*data, *size, actual_sha256);
        return 0;
    }
    char cached[PATH_MAX] = "";
    if (resolver->cache_directory && c->sha256[0]) {
        snprintf(cached, sizeof cached, "%s/wheels/%s.whl", resolver->cache_directory, c->sha256);
        if (read_whole(AT_FDCWD, cached, MAX_WHEEL_BYTES, data, size) == 0) {
            digest_sha256_hex(*data, *size, actual_sha256);
            if (strcmp(actual_sha256, c->sha256) == 0) return 0;
            free(*data); /* a damaged cache entry: fetch again */
        }
    }
    if (progress) {
        char line[300];
        snprintf(line, sizeof line, "downloading %.250s", filename);
        progress(userdata, line);
    }
    http_policy policy = download_policy(NULL);
    buffer body = {0};
    char reason[256] = "";
    if (http_fetch(&policy, c->location, &body, reason) != 0) {
        sayf(message, "download of %.200s failed: %s", filename, reason);
        return -1;
    }
    digest_sha256_hex(body.data, body.size, actual_sha256);
    if (c->sha256[0] && strcmp(actual_sha256, c->sha256) != 0) {
        sayf(message, "hash mismatch for %.200s: the index says sha256 %s, the file has %s",
             filename, c->sha256, actual_sha256);
        buffer_free(&body);
        return -1;
    }
    if (cached[0]) publish(cached, write_buffer, &body); /* a cache: failing to keep it is fine */
    *data = (unsigned char *)body.data;
    *size = body.size;
    return 0;
}

/* --- resolution ------------------------------------------------------------------------- */

typedef struct chosen {
    candidate c;
    char **requires;
    size_t require_count;
    char extras[DEPS_EXTRAS_MAX][DEPS_NAME_MAX];
    int extra_count;
    unsigned char *wheel; /* the wheel's bytes (NULL for installed) */
    size_t wheel_size;
    char content_sha256[65];
    char wanted_by[160];
    char note[400]; /* what the result should say about it, or "" */
    int builtin;    /* compiled into the interpreter: nothing to install */
} chosen;

typedef struct pending {
    deps_requirement requirement;
    char wanted_by[160];
    int optional;
} pending;

/* A constraint learnt from a conflict, applied from the start next time. */
typedef struct constraint {
    char normalized[DEPS_NAME_MAX];
    char specifier[DEPS_SPECIFIER_MAX * 4];
} constraint;

typedef struct resolution {
    deps_resolver *resolver;
    chosen *chosen;
    int chosen_count;
    pending *queue;
    size_t queue_head, queue_count;
    buffer errors;
    int failed_names; /* lines in errors */
    constraint constraints[32];
    int constraint_count;
    int restart; /* a constraint was learnt: run again */
    int quiet;   /* resolving an optional import: failures are not errors */
    deps_progress_fn progress;
    void *userdata;
} resolution;

static void fail(resolution *r, const char *name, const char *format, ...) {
    if (r->quiet) return;
    char line[DEPS_MESSAGE_SIZE + DEPS_NAME_MAX + 4];
    int n = snprintf(line, sizeof line, "%s: ", name);
    va_list args;
    va_start(args, format);
    vsnprintf(line + n, sizeof line - (size_t)n, format, args);
    va_end(args);
    /* One line per package: a name already reported is not repeated. */
    char prefix[DEPS_NAME_MAX + 3];
    snprintf(prefix, sizeof prefix, "%s: ", name);
    if (r->errors.data) {
        for (const char *p = r->errors.data; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (strncmp(p, prefix, strlen(prefix)) == 0) return;
    }
    buffer_append(&r->errors, line, strlen(line));
    buffer_append(&r->errors, "\n", 1);
    r->failed_names++;
}

static int enqueue(resolution *r, const deps_requirement *requirement, const char *wanted_by,
                   int optional) {
    if (r->queue_count == MAX_QUEUE) {
        fail(r, requirement->name, "too many requirements (over %d)", MAX_QUEUE);
        return -1;
    }
    pending *p = &r->queue[r->queue_count++];
    p->requirement = *requirement;
    snprintf(p->wanted_by, sizeof p->wanted_by, "%s", wanted_by);
    p->optional = optional;
    return 0;
}

static void enqueue_text(resolution *r, const char *text, const char *wanted_by, int optional) {
    deps_requirement requirement;
    char error[256] = "";
    if (deps_requirement_parse(text, &requirement, error, sizeof error) != 0) {
        fail(r, text, "invalid requirement (%s)", error);
        return;
    }
    enqueue(r, &requirement, wanted_by, optional);
}

/* Requires-Dist lines of `chosen` that apply with `extra` (NULL: none). */
static void enqueue_requires(resolution *r, const chosen *ch, const char *extra) {
    char wanted_by[160];
    snprintf(wanted_by, sizeof wanted_by, "%.60s %.40s%s%.40s%s", ch->c.name, ch->c.version,
             extra ? " [" : "", extra ? extra : "", extra ? "]" : "");
    for (size_t i = 0; i < ch->require_count; i++) {
        deps_requirement requirement;
        int applies = 0, applies_without_extra = 0;
        if (deps_requirement_parse(ch->requires[i], &requirement, NULL, 0) != 0) continue;
        if (deps_requirement_applies(&requirement, extra, &applies, NULL, 0) != 0 || !applies)
            continue;
        /* With an extra, only what the extra adds. */
        if (extra && deps_requirement_applies(&requirement, NULL, &applies_without_extra, NULL, 0) == 0 &&
            applies_without_extra)
            continue;
        requirement.marker[0] = '\0'; /* evaluated here, where the extra is known */
        enqueue(r, &requirement, wanted_by, 0);
    }
}

static const char *learnt_constraint(const resolution *r, const char *normalized) {
    for (int i = 0; i < r->constraint_count; i++)
        if (strcmp(r->constraints[i].normalized, normalized) == 0)
            return r->constraints[i].specifier;
    return "";
}

static int contains(const char *specifier, const char *version, int prerelease) {
    int inside = 0;
    return deps_specifier_contains(specifier, version, prerelease, &inside, NULL, 0) == 0 && inside;
}

/* Picks the best candidate for `p`: the first source with a fitting pure
 * distribution, its highest version.  0, 1 when nothing fits (reported
 * unless optional), -1 on failure. */
static int choose(resolution *r, const pending *p, candidate *out) {
    const deps_requirement *req = &p->requirement;
    const char *learnt = learnt_constraint(r, req->normalized);
    char versions[200] = "", native_tags[200] = "";
    int any = 0, source_distributions = 0;
    if (r->progress) {
        char line[200];
        snprintf(line, sizeof line, "resolving %s", req->name);
        r->progress(r->userdata, line);
    }
    for (int s = 0; s < r->resolver->source_count; s++) {
        candidate_list list;
        char message[DEPS_MESSAGE_SIZE] = "";
        if (find_candidates(r->resolver, s, req->normalized, &list, message) != 0) {
            if (!p->optional) fail(r, req->name, "%s", message);
            return -1;
        }
        source_distributions += list.source_distributions;
        const candidate *best = NULL;
        for (size_t i = 0; i < list.count; i++) {
            const candidate *c = &list.items[i];
            any = 1;
            if (strlen(versions) + strlen(c->version) + 3 < sizeof versions && !strstr(versions, c->version))
                snprintf(versions + strlen(versions), sizeof versions - strlen(versions), "%s%s",
                         versions[0] ? ", " : "", c->version);
            if (!contains(req->specifier, c->version, 0) || !contains(learnt, c->version, 1))
                continue;
            if (!c->pure) {
                if (!native_tags[0]) snprintf(native_tags, sizeof native_tags, "%s", c->tags);
                continue;
            }
            int order = 0;
            if (!best || (deps_version_compare(c->version, best->version, &order, NULL, 0) == 0 &&
                          order > 0))
                best = c;
        }
        if (best) {
            *out = *best;
            out->location = best->location ? strdup(best->location) : NULL;
            candidates_free(&list);
            return 0;
        }
        candidates_free(&list);
    }
    if (p->optional) return 1;
    if (learnt[0] && any)
        fail(r, req->name, "conflict: no version is both '%s' (%s) and '%s' (available: %s)",
             req->specifier, p->wanted_by, learnt, versions);
    else if (native_tags[0])
        fail(r, req->name, "only platform-specific wheels fit (%s); the sandbox installs "
                           "pure-Python wheels (py3-none-any) only", native_tags);
    else if (any)
        fail(r, req->name, "no version matches '%s' (available: %s)", req->specifier, versions);
    else if (source_distributions)
        fail(r, req->name, "only source distributions are published; the sandbox installs "
                           "wheels only");
    else
        fail(r, req->name, "not found in any package source");
    return 1;
}

/* Metadata of a chosen candidate: Requires-Dist, and the wheel itself. */
static int load(resolution *r, chosen *ch) {
    const source *s = &r->resolver->sources[ch->c.source];
    char message[DEPS_MESSAGE_SIZE] = "";
    if (s->kind == SOURCE_SITE_PACKAGES) {
        /* An optional accelerator (PyYAML's yaml._yaml, MarkupSafe's
         * _speedups) is left out and said so.  Refused: a distribution whose
         * import names would all be gone without its extension modules, and
         * one built on native code (more than MAX_ACCELERATORS of them, as
         * pycryptodome's dozens of ciphers): its Python is glue, and an
         * optional import of it (pypdf's) must fail, not half-work. */
        file_list files;
        installed_files(s->location, ch->c.dist, &files);
        if (files.native_count > 0) {
            int importable = 0;
            for (size_t i = 0; i < ch->c.dist->top_level_count; i++)
                importable |= importable_without_native(&files, ch->c.dist->top_level[i]);
            buffer names = {0};
            for (size_t i = 0; i < files.native_count && i < 8; i++) {
                const char *base = strrchr(files.native_paths[i], '/');
                base = base ? base + 1 : files.native_paths[i];
                if (i) buffer_append(&names, ", ", 2);
                buffer_append(&names, base, strcspn(base, "."));
            }
            if (files.native_count > 8) buffer_append(&names, ", ...", 5);
            buffer_append(&names, "", 1);
            if (files.native_count > MAX_ACCELERATORS) {
                fail(r, ch->c.name, "%s in %s is built on native code (%zu extension modules: "
                                    "%s); only pure-Python distributions can be installed",
                     ch->c.version, s->location, files.native_count, names.data ? names.data : "");
                importable = 0;
            } else if (!importable) {
                fail(r, ch->c.name, "%s in %s is native code only (%s); only pure-Python "
                                    "distributions can be installed", ch->c.version, s->location,
                     names.data ? names.data : "");
            } else {
                snprintf(ch->note, sizeof ch->note, "%s==%s: installed without its compiled "
                         "extension modules (%.200s); its pure-Python code is used",
                         ch->c.name, ch->c.version, names.data ? names.data : "");
            }
            buffer_free(&names);
            if (!importable) {
                file_list_free(&files);
                return -1;
            }
        }
        file_list_free(&files);
        if (installed_requires(s->location, ch->c.dist, &ch->requires, &ch->require_count) != 0) {
            fail(r, ch->c.name, "cannot read its metadata in %s", s->location);
            return -1;
        }
        snprintf(ch->content_sha256, sizeof ch->content_sha256, "%s", "installed");
        return 0;
    }
    if (wheel_bytes(r->resolver, &ch->c, &ch->wheel, &ch->wheel_size, ch->content_sha256,
                    r->progress, r->userdata, message) != 0) {
        fail(r, ch->c.name, "%s", message);
        return -1;
    }
    char *metadata = NULL;
    if (wheel_metadata(ch->wheel, ch->wheel_size, &metadata, message) != 0) {
        fail(r, ch->c.name, "%s %s: %s", ch->c.version, strrchr(ch->c.location, '/') + 1, message);
        return -1;
    }
    char *python = metadata_field(metadata, "Requires-Python");
    int fits = 1;
    if (python && deps_specifier_contains(python, PYTHON_FULL_VERSION, 1, &fits, NULL, 0) == 0 &&
        !fits) {
        fail(r, ch->c.name, "%s requires Python %s; the sandbox has %s", ch->c.version, python,
             PYTHON_FULL_VERSION);
        free(python);
        free(metadata);
        return -1;
    }
    free(python);
    int rc = metadata_field_values(metadata, "Requires-Dist", &ch->requires, &ch->require_count);
    free(metadata);
    return rc;
}

static int has_extra(const chosen *ch, const char *extra) {
    for (int i = 0; i < ch->extra_count; i++)
        if (strcmp(ch->extras[i], extra) == 0) return 1;
    return 0;
}

static void learn(resolution *r, const char *normalized, const char *specifier) {
    for (int i = 0; i < r->constraint_count; i++) {
        constraint *c = &r->constraints[i];
        if (strcmp(c->normalized, normalized) != 0) continue;
        size_t n = strlen(c->specifier);
        if (specifier[0] && n + strlen(specifier) + 2 < sizeof c->specifier)
            snprintf(c->specifier + n, sizeof c->specifier - n, "%s%s", n ? "," : "", specifier);
        return;
    }
    if (r->constraint_count == (int)(sizeof r->constraints / sizeof *r->constraints)) return;
    constraint *c = &r->constraints[r->constraint_count++];
    snprintf(c->normalized, sizeof c->normalized, "%s", normalized);
    snprintf(c->specifier, sizeof c->specifier, "%s", specifier);
}

static void resolve_pending(resolution *r, const pending *p) {
    const deps_requirement *req = &p->requirement;
    int applies = 0;
    if (deps_requirement_applies(req, NULL, &applies, NULL, 0) != 0 || !applies) return;
    chosen *ch = NULL;
    for (int i = 0; i < r->chosen_count; i++) {
        char normalized[DEPS_NAME_MAX];
        if (deps_normalize_name(r->chosen[i].c.name, normalized, sizeof normalized) == 0 &&
            strcmp(normalized, req->normalized) == 0)
            ch = &r->chosen[i];
    }
    if (ch) {
        if (!contains(req->specifier, ch->c.version, 1)) {
            /* Perhaps another version satisfies both: start again knowing
             * this constraint from the beginning. */
            if (!strstr(learnt_constraint(r, req->normalized), req->specifier)) {
                learn(r, req->normalized, req->specifier);
                r->restart = 1;
                return;
            }
            fail(r, req->name, "conflict: %s requires %s%s, but %s was chosen for %s",
                 p->wanted_by, req->name, req->specifier, ch->c.version, ch->wanted_by);
            return;
        }
        for (int e = 0; e < req->extra_count; e++) {
            if (has_extra(ch, req->extras[e]) || ch->extra_count == DEPS_EXTRAS_MAX) continue;
            snprintf(ch->extras[ch->extra_count++], DEPS_NAME_MAX, "%s", req->extras[e]);
            enqueue_requires(r, ch, req->extras[e]);
        }
        return;
    }
    if (r->chosen_count == MAX_CHOSEN) {
        fail(r, req->name, "too many distributions (over %d)", MAX_CHOSEN);
        return;
    }
    for (size_t b = 0; b < sizeof BUILTIN_DISTRIBUTIONS / sizeof *BUILTIN_DISTRIBUTIONS; b++) {
        const char *name = BUILTIN_DISTRIBUTIONS[b][0], *version = BUILTIN_DISTRIBUTIONS[b][1];
        if (strcmp(req->normalized, name) != 0) continue;
        if (!contains(req->specifier, version, 1)) {
            if (!p->optional)
                fail(r, req->name, "%s asks for '%s%s', but the sandbox has %s %s compiled into "
                                   "its interpreter, and native packages cannot be installed",
                     p->wanted_by, req->name, req->specifier, name, version);
            return;
        }
        ch = &r->chosen[r->chosen_count++];
        memset(ch, 0, sizeof *ch);
        snprintf(ch->c.name, sizeof ch->c.name, "%s", name);
        snprintf(ch->c.version, sizeof ch->c.version, "%s", version);
        snprintf(ch->content_sha256, sizeof ch->content_sha256, "%s", "built-in");
        snprintf(ch->wanted_by, sizeof ch->wanted_by, "%s", p->wanted_by);
        ch->builtin = 1;
        return; /* its own requirements are built in too */
    }
    candidate c;
    if (choose(r, p, &c) != 0) return;
    ch = &r->chosen[r->chosen_count++];
    memset(ch, 0, sizeof *ch);
    ch->c = c;
    snprintf(ch->wanted_by, sizeof ch->wanted_by, "%s", p->wanted_by);
    r->quiet = p->optional;
    int loaded = load(r, ch);
    r->quiet = 0;
    if (loaded != 0) {
        if (p->optional) { /* not installable: as if nobody had it */
            free(ch->c.location);
            free_strings(ch->requires, ch->require_count);
            free(ch->wheel);
            r->chosen_count--;
        }
        return;
    }
    enqueue_requires(r, ch, NULL);
    for (int e = 0; e < req->extra_count && e < DEPS_EXTRAS_MAX; e++) {
        snprintf(ch->extras[ch->extra_count++], DEPS_NAME_MAX, "%s", req->extras[e]);
        enqueue_requires(r, ch, req->extras[e]);
    }
}

static void resolution_reset(resolution *r) {
    for (int i = 0; i < r->chosen_count; i++) {
        free(r->chosen[i].c.location);
        free_strings(r->chosen[i].requires, r->chosen[i].require_count);
        free(r->chosen[i].wheel);
    }
    r->chosen_count = 0;
    r->queue_head = r->queue_count = 0;
    buffer_free(&r->errors);
    r->failed_names = 0;
    r->restart = 0;
}

/* The distribution an import name comes from. */
static void import_distribution(deps_resolver *resolver, const char *module, char *out,
                                size_t out_size) {
    for (size_t i = 0; i < sizeof KNOWN_IMPORTS / sizeof *KNOWN_IMPORTS; i++)
        if (strcmp(KNOWN_IMPORTS[i][0], module) == 0) {
            snprintf(out, out_size, "%s", KNOWN_IMPORTS[i][1]);
            return;
        }
    for (int s = 0; s < resolver->source_count; s++) {
        source *src = &resolver->sources[s];
        if (src->kind != SOURCE_SITE_PACKAGES) continue;
        scan_site_packages(src);
        for (size_t i = 0; i < src->installed_count; i++)
            for (size_t j = 0; j < src->installed[i].top_level_count; j++)
                if (strcmp(src->installed[i].top_level[j], module) == 0) {
                    snprintf(out, out_size, "%s", src->installed[i].name);
                    return;
                }
    }
    snprintf(out, out_size, "%s", module);
}

static void seed(resolution *r, const deps_request *request) {
    for (size_t i = 0; i < request->requirement_count; i++)
        enqueue_text(r, request->requirements[i], "the program", 0);
    for (int optional = 0; optional < 2; optional++) {
        char **names = optional ? request->optional_imports : request->imports;
        size_t count = optional ? request->optional_count : request->import_count;
        for (size_t i = 0; i < count; i++) {
            char distribution[DEPS_NAME_MAX], wanted_by[160];
            deps_requirement requirement;
            import_distribution(r->resolver, names[i], distribution, sizeof distribution);
            snprintf(wanted_by, sizeof wanted_by, "import %.100s", names[i]);
            if (deps_requirement_parse(distribution, &requirement, NULL, 0) != 0) {
                if (!optional) fail(r, names[i], "not a valid distribution name");
                continue;
            }
            enqueue(r, &requirement, wanted_by, optional);
        }
    }
}

/* --- environments ---------------------------------------------------------------------- */

static int chosen_order(const void *a, const void *b) {
    return strcasecmp(((const chosen *)a)->c.name, ((const chosen *)b)->c.name);
}

static int open_sealed(vfs_image_builder *builder) {
    int fd = memfd_create("capsule-environment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    int rc = vfs_image_builder_write(builder, fd);
    /* Sealed: no process, the workers included, can change it. */
    if (rc == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        rc = -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

static int build_environment(resolution *r, deps_environment *out, char *message) {
    qsort(r->chosen, (size_t)r->chosen_count, sizeof *r->chosen, chosen_order);
    buffer identity = {0};
    for (int i = 0; i < r->chosen_count; i++) {
        const chosen *ch = &r->chosen[i];
        char line[600];
        int n = snprintf(line, sizeof line, "%s==%s %s %s\n", ch->c.name, ch->c.version,
                         ch->content_sha256,
                         ch->c.dist ? r->resolver->sources[ch->c.source].location : "");
        buffer_append(&identity, line, (size_t)n);
        char installed_name[DEPS_NAME_MAX + 70];
        snprintf(installed_name, sizeof installed_name, "%s==%s", ch->c.name, ch->c.version);
        push_string(&out->installed, &out->installed_count, installed_name);
        if (ch->note[0]) push_string(&out->notes, &out->note_count, ch->note);
    }
    digest_sha256_hex(identity.data ? identity.data : "", identity.size, out->key);
    buffer_free(&identity);

    char cached[PATH_MAX] = "";
    if (r->resolver->cache_directory) {
        environment_path(r->resolver, out->key, cached, sizeof cached);
        vfs_image *image;
        int fd = open(cached, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && vfs_image_open_fd(fd, &image) == 0) { /* checked, not trusted */
            vfs_image_release(image);
            out->fd = fd;
            return 0;
        }
        if (fd >= 0) close(fd);
    }
    if (r->progress) {
        char line[100];
        snprintf(line, sizeof line, "installing %d distributions", r->chosen_count);
        r->progress(r->userdata, line);
    }
    vfs_image_builder *builder = vfs_image_builder_new();
    int rc = builder ? 0 : -1, unpacked = 0;
    /* Every package is tried, so that each bad one gets its line. */
    for (int i = 0; builder && i < r->chosen_count; i++, rc |= unpacked) {
        const chosen *ch = &r->chosen[i];
        char reason[DEPS_MESSAGE_SIZE] = "";
        if (ch->builtin) {
            unpacked = 0; /* in the interpreter and the standard library's image */
        } else if (ch->wheel) {
            unpacked = wheel_unpack(ch->wheel, ch->wheel_size, builder, reason);
        } else {
            const char *root = r->resolver->sources[ch->c.source].location;
            file_list files;
            installed_files(root, ch->c.dist, &files);
            unpacked = install_files(root, &files, builder, reason);
            file_list_free(&files);
        }
        if (unpacked) fail(r, ch->c.name, "%s", reason);
    }
    if (rc == 0) {
        /* In memory for now; the cache gets the image with bytecode
         * (deps_finish_environment).  An empty one is still an image. */
        out->fd = open_sealed(builder);
        if (out->fd < 0) {
            sayf(message, "cannot write the environment: %s", strerror(-out->fd));
            out->fd = -1;
            rc = -1;
        }
    }
    if (rc == 0 && r->chosen_count > 0) {
        deps_resolver *resolver = r->resolver;
        if (resolver->unfinished_count == MAX_UNFINISHED) { /* forget the oldest */
            vfs_image_builder_free(resolver->unfinished[0].builder);
            memmove(resolver->unfinished, resolver->unfinished + 1,
                    (MAX_UNFINISHED - 1) * sizeof *resolver->unfinished);
            resolver->unfinished_count--;
        }
        struct unfinished *slot = &resolver->unfinished[resolver->unfinished_count++];
        memcpy(slot->key, out->key, sizeof slot->key);
        slot->builder = builder;
        builder = NULL;
        out->needs_bytecode = 1;
    }
    vfs_image_builder_free(builder);
    return rc;
}

/* The request as one canonical string: the memo's key. */
static char *request_key(const deps_request *request) {
    buffer key = {0};
    const struct {
        char **items;
        size_t count;
    } lists[3] = {{request->requirements, request->requirement_count},
                  {request->imports, request->import_count},
                  {request->optional_imports, request->optional_count}};
    for (int l = 0; l < 3; l++) {
        char **sorted = lists[l].count ? malloc(lists[l].count * sizeof *sorted) : NULL;
        if (lists[l].count && !sorted) {
            buffer_free(&key);
            return NULL;
        }
        if (lists[l].count) memcpy(sorted, lists[l].items, lists[l].count * sizeof *sorted);
        if (lists[l].count) qsort(sorted, lists[l].count, sizeof *sorted, compare_strings);
        for (size_t i = 0; i < lists[l].count; i++) {
            buffer_append(&key, sorted[i], strlen(sorted[i]));
            buffer_append(&key, "\n", 1);
        }
        free(sorted);
        buffer_append(&key, "|", 1);
    }
    if (request->requires_python)
        buffer_append(&key, request->requires_python, strlen(request->requires_python));
    buffer_append(&key, "", 1);
    return key.data;
}

static int copy_environment(const deps_environment *from, deps_environment *to) {
    memset(to, 0, sizeof *to);
    to->fd = from->fd >= 0 ? fcntl(from->fd, F_DUPFD_CLOEXEC, 0) : -1;
    memcpy(to->key, from->key, sizeof to->key);
    to->needs_bytecode = 0; /* only the one that built it compiles it */
    for (size_t i = 0; i < from->installed_count; i++)
        if (push_string(&to->installed, &to->installed_count, from->installed[i]) != 0) return -1;
    for (size_t i = 0; i < from->note_count; i++)
        if (push_string(&to->notes, &to->note_count, from->notes[i]) != 0) return -1;
    return from->fd >= 0 && to->fd < 0 ? -1 : 0;
}

static int prepare_locked(deps_resolver *resolver, const deps_request *request,
                          deps_progress_fn progress, void *userdata, deps_environment *out,
                          char **message) {
    if (request->requires_python) {
        int fits = 1;
        char error[256] = "";
        if (deps_specifier_contains(request->requires_python, PYTHON_FULL_VERSION, 1, &fits, error,
                                    sizeof error) != 0 || !fits) {
            *message = malloc(400);
            if (*message)
                snprintf(*message, 400, "python: the script requires Python %.200s; the sandbox "
                                        "has %s%s%s", request->requires_python,
                         PYTHON_FULL_VERSION, error[0] ? ": " : "", error);
            return -1;
        }
    }
    resolution r = {.resolver = resolver, .progress = progress, .userdata = userdata};
    r.chosen = calloc(MAX_CHOSEN, sizeof *r.chosen);
    r.queue = calloc(MAX_QUEUE, sizeof *r.queue);
    int rc = r.chosen && r.queue ? 0 : -1;
    for (int attempt = 0; rc == 0; attempt++) {
        resolution_reset(&r);
        seed(&r, request);
        while (r.queue_head < r.queue_count && !r.restart) {
            pending p = r.queue[r.queue_head++];
            resolve_pending(&r, &p);
        }
        if (!r.restart || attempt == MAX_RESTARTS) break;
    }
    if (rc == 0 && r.restart) {
        /* Still restarting: name the conflicts plainly. */
        for (int i = 0; i < r.constraint_count; i++)
            fail(&r, r.constraints[i].normalized, "conflicting requirements: %s",
                 r.constraints[i].specifier);
    }
    if (rc == 0 && r.failed_names) rc = -1;
    char reason[DEPS_MESSAGE_SIZE] = "";
    if (rc == 0 && (rc = build_environment(&r, out, reason)) != 0 && reason[0])
        fail(&r, "environment", "%s", reason);
    if (rc) {
        deps_environment_free(out);
        if (!r.errors.data) buffer_append(&r.errors, "out of memory\n", 14);
        r.errors.data[r.errors.size - 1] = '\0'; /* no trailing newline */
        *message = r.errors.data;
        r.errors.data = NULL;
    }
    resolution_reset(&r);
    free(r.chosen);
    free(r.queue);
    return rc;
}

int deps_prepare(deps_resolver *resolver, const deps_request *request, deps_progress_fn progress,
                 void *userdata, deps_environment *out, char **message) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    *message = NULL;
    char *key = request_key(request);
    if (!key) return -1;
    pthread_mutex_lock(&resolver->lock);
    int rc = 1;
    for (int i = 0; i < resolver->memo_count; i++)
        if (strcmp(resolver->memo[i].request, key) == 0) {
            rc = copy_environment(&resolver->memo[i].environment, out);
            break;
        }
    if (rc == 1) {
        rc = prepare_locked(resolver, request, progress, userdata, out, message);
        memo_entry *slot = NULL;
        if (rc == 0 && resolver->memo_count < MAX_MEMO) {
            slot = &resolver->memo[resolver->memo_count++];
        } else if (rc == 0) {
            slot = &resolver->memo[resolver->memo_next];
            resolver->memo_next = (resolver->memo_next + 1) % MAX_MEMO;
            free(slot->request);
            deps_environment_free(&slot->environment);
        }
        if (slot) {
            slot->request = key;
            key = NULL;
            if (copy_environment(out, &slot->environment) != 0) {
                /* Not remembered; the answer itself is fine. */
                free(slot->request);
                slot->request = strdup("");
            }
        }
    }
    pthread_mutex_unlock(&resolver->lock);
    free(key);
    if (rc != 0 && !*message) *message = strdup("out of memory");
    return rc == 0 ? 0 : -1;
}

/* A compiled module's path: NAME/__pycache__/MODULE.TAG.pyc, nothing else,
 * so compiled output can only add bytecode beside sources. */
static int is_bytecode_path(const char *path) {
    const char *cache = strstr(path, "__pycache__/");
    return cache && (cache == path || cache[-1] == '/') && has_suffix(path, ".pyc") &&
           !strchr(cache + 12, '/');
}

int deps_finish_environment(deps_resolver *resolver, deps_environment *environment,
                            const deps_file *files, size_t count, char *message) {
    pthread_mutex_lock(&resolver->lock);
    int index = -1, rc = 0;
    for (int i = 0; i < resolver->unfinished_count; i++)
        if (strcmp(resolver->unfinished[i].key, environment->key) == 0) index = i;
    vfs_image_builder *builder = index >= 0 ? resolver->unfinished[index].builder : NULL;
    if (index >= 0) {
        memmove(resolver->unfinished + index, resolver->unfinished + index + 1,
                (size_t)(resolver->unfinished_count - index - 1) * sizeof *resolver->unfinished);
        resolver->unfinished_count--;
    }
    environment->needs_bytecode = 0;
    for (size_t i = 0; builder && rc == 0 && i < count; i++)
        if (!is_bytecode_path(files[i].path) ||
            vfs_image_builder_add(builder, files[i].path, files[i].data, files[i].size) != 0) {
            sayf(message, "unusable compiled file %.300s", files[i].path);
            rc = -1;
        }
    /* Without bytecode (none given, or refused) the sources alone are kept. */
    int fd = -1;
    char cached[PATH_MAX] = "";
    if (builder && rc != 0) {
        vfs_image_builder_free(builder);
        builder = NULL;
    }
    if (builder && resolver->cache_directory) {
        environment_path(resolver, environment->key, cached, sizeof cached);
        fd = publish(cached, write_image, builder) == 0 ? open(cached, O_RDONLY | O_CLOEXEC) : -1;
    } else if (builder) {
        fd = open_sealed(builder);
    }
    int attempted = builder != NULL;
    vfs_image_builder_free(builder);
    if (fd >= 0) {
        /* Everyone who remembers this environment gets the compiled one. */
        for (int i = 0; i < resolver->memo_count; i++) {
            deps_environment *known = &resolver->memo[i].environment;
            if (strcmp(known->key, environment->key) != 0 || known->fd < 0) continue;
            close(known->fd);
            known->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        }
        if (environment->fd >= 0) close(environment->fd);
        environment->fd = fd;
    } else if (attempted) {
        sayf(message, "cannot write the environment with bytecode");
        rc = -1;
    }
    pthread_mutex_unlock(&resolver->lock);
    return rc;
}
