/*
 * page_file.c — decompressed copies of durable sessions' memory on this
 * node's disk, mapped by restores (page_file.h).
 */
#include "page_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "../store/store.h"
#include "durable.h"

#define MAGIC "capsule pages 1\n" /* 16 bytes */

struct page_files {
    char directory[4096];
    int lock_fd;        /* flock'd for as long as this process uses the directory */
    char boot_id[64];   /* the kernel's: a file from another boot is never used */
    pthread_mutex_t lock;
    uint64_t used;      /* bytes of the directory's files, as last counted or grown */
    uint64_t budget;    /* bytes they may use before the oldest go */
};

/* The header's first bytes: the magic, then the key when sealed (zeros
 * when not). */
typedef struct header {
    char magic[16];
    uint8_t sealed;
    uint8_t key[PAGE_FILE_KEY];
} header;

/* The directory's files, oldest first, are removed until they use at most
 * `target` bytes; returns what they use then.  `keep` is never removed. */
static uint64_t evict(page_files *files, uint64_t target, const char *keep) {
    DIR *directory = opendir(files->directory);
    if (!directory) return files->used;
    typedef struct entry {
        char name[256];
        struct timespec modified;
        uint64_t bytes;
    } entry;
    entry *entries = NULL;
    size_t count = 0, capacity = 0;
    uint64_t used = 0;
    struct dirent *d;
    while ((d = readdir(directory))) {
        struct stat st;
        if (d->d_name[0] == '.' || strcmp(d->d_name, "lock") == 0 ||
            fstatat(dirfd(directory), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        uint64_t bytes = (uint64_t)st.st_blocks * 512;
        used += bytes;
        if (count == capacity) {
            entry *grown = realloc(entries, (capacity ? capacity * 2 : 64) * sizeof *entries);
            if (!grown) break;
            entries = grown;
            capacity = capacity ? capacity * 2 : 64;
        }
        snprintf(entries[count].name, sizeof entries[count].name, "%s", d->d_name);
        entries[count].modified = st.st_mtim;
        entries[count++].bytes = bytes;
    }
    while (used > target && count > 0) {
        size_t oldest = 0;
        for (size_t i = 1; i < count; i++)
            if (entries[i].modified.tv_sec < entries[oldest].modified.tv_sec ||
                (entries[i].modified.tv_sec == entries[oldest].modified.tv_sec &&
                 entries[i].modified.tv_nsec < entries[oldest].modified.tv_nsec))
                oldest = i;
        /* A file still open here stays usable: its descriptor keeps it. */
        if (!keep || strcmp(entries[oldest].name, keep) != 0)
            if (unlinkat(dirfd(directory), entries[oldest].name, 0) == 0)
                used -= entries[oldest].bytes;
        entries[oldest] = entries[--count];
    }
    free(entries);
    closedir(directory);
    return used;
}

page_files *page_files_open(const char *store_url) {
    page_files *files = calloc(1, sizeof *files);
    if (!files) return NULL;
    int n = -1;
    if (strncmp(store_url, "sqlite:", 7) == 0) {
        const char *path = store_url + 7;
        if (*path && strcmp(path, ":memory:") != 0)
            n = snprintf(files->directory, sizeof files->directory, "%s-pages", path);
    } else {
        const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        uint8_t hash[STORE_HASH_SIZE];
        store_hash(store_url, strlen(store_url), hash);
        char name[24];
        for (int i = 0; i < 8; i++) snprintf(name + 2 * i, 3, "%02x", hash[i]);
        n = state && state[0] == '/'
                ? snprintf(files->directory, sizeof files->directory, "%s/capsule/pages-%s",
                           state, name)
            : home && home[0] == '/'
                ? snprintf(files->directory, sizeof files->directory,
                           "%s/.local/state/capsule/pages-%s", home, name)
                : -1;
    }
    char lock[4200];
    if (n < 0 || (size_t)n >= sizeof files->directory || store_make_directory(files->directory) != 0 ||
        snprintf(lock, sizeof lock, "%s/lock", files->directory) >= (int)sizeof lock) {
        free(files);
        return NULL;
    }
    files->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (files->lock_fd < 0 || flock(files->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (files->lock_fd >= 0) close(files->lock_fd);
        free(files);
        return NULL;
    }
    int boot = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t got = boot >= 0 ? read(boot, files->boot_id, sizeof files->boot_id - 1) : -1;
    if (boot >= 0) close(boot);
    if (got <= 0) { /* no boot to tell apart: no file may outlive this process */
        snprintf(files->boot_id, sizeof files->boot_id, "process %ld.%ld", (long)getpid(),
                 (long)time(NULL));
    }
    pthread_mutex_init(&files->lock, NULL);
    files->budget = PAGE_FILES_BUDGET;
    files->used = evict(files, files->budget, NULL);
    return files;
}

void page_files_set_budget(page_files *files, uint64_t bytes) {
    pthread_mutex_lock(&files->lock);
    files->budget = bytes;
    files->used = evict(files, bytes, NULL);
    pthread_mutex_unlock(&files->lock);
}

void page_files_close(page_files *files) {
    if (!files) return;
    close(files->lock_fd); /* and with it the lock */
    pthread_mutex_destroy(&files->lock);
    free(files);
}

void page_files_key(const page_files *files, const uint8_t *hashes, uint32_t pages,
                    uint32_t first_live, uint8_t key[PAGE_FILE_KEY]) {
    const char *build = runtime_build_id();
    size_t boot = strlen(files->boot_id), build_size = strlen(build);
    size_t live = first_live < pages ? (size_t)(pages - first_live) * DURABLE_HASH : 0;
    size_t size = boot + 1 + build_size + 1 + 8 + live;
    uint8_t *text = malloc(size);
    if (!text) { /* a key nothing is sealed with */
        memset(key, 0xff, PAGE_FILE_KEY);
        return;
    }
    uint8_t *at = text;
    memcpy(at, files->boot_id, boot + 1), at += boot + 1;
    memcpy(at, build, build_size + 1), at += build_size + 1;
    for (int i = 0; i < 4; i++) *at++ = (uint8_t)(pages >> (8 * i));
    for (int i = 0; i < 4; i++) *at++ = (uint8_t)(first_live >> (8 * i));
    if (live) memcpy(at, hashes + (size_t)first_live * DURABLE_HASH, live);
    store_hash(text, size, key);
    free(text);
}

/* The file's name: the session's id hashed (ids are the clients' strings). */
static int session_path(const page_files *files, const char *session, char *path, size_t size) {
    uint8_t hash[STORE_HASH_SIZE];
    store_hash(session, strlen(session), hash);
    char name[41];
    for (int i = 0; i < 20; i++) snprintf(name + 2 * i, 3, "%02x", hash[i]);
    int n = snprintf(path, size, "%s/%s", files->directory, name);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

static int write_all(int fd, const void *data, size_t size, off_t offset) {
    const uint8_t *bytes = data;
    while (size) {
        ssize_t n = pwrite(fd, bytes, size, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        bytes += n, size -= (size_t)n, offset += n;
    }
    return 0;
}

page_file *page_file_open_sealed(page_files *files, const char *session,
                                 const uint8_t key[PAGE_FILE_KEY]) {
    page_file *file = calloc(1, sizeof *file);
    if (!file) return NULL;
    header h;
    if (session_path(files, session, file->path, sizeof file->path) != 0 ||
        (file->fd = open(file->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        free(file);
        return NULL;
    }
    if (pread(file->fd, &h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h.magic, MAGIC, 16) != 0 ||
        h.sealed != 1 || memcmp(h.key, key, PAGE_FILE_KEY) != 0) {
        close(file->fd);
        free(file);
        return NULL;
    }
    return file;
}

page_file *page_file_create(page_files *files, const char *session) {
    page_file *file = calloc(1, sizeof *file);
    if (!file) return NULL;
    static unsigned counter;
    unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    header h = {MAGIC, 0, {0}};
    if (session_path(files, session, file->path, sizeof file->path) != 0 ||
        snprintf(file->temporary, sizeof file->temporary, "%s.new-%ld-%u", file->path,
                 (long)getpid(), n) >= (int)sizeof file->temporary ||
        (file->fd = open(file->temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        free(file);
        return NULL;
    }
    if (write_all(file->fd, &h, sizeof h, 0) != 0) {
        page_file_drop(file);
        return NULL;
    }
    return file;
}

page_file *page_file_anonymous(void) {
    page_file *file = calloc(1, sizeof *file);
    if (!file) return NULL;
    header h = {MAGIC, 0, {0}};
    file->fd = memfd_create("capsule-restore", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (file->fd < 0 || write_all(file->fd, &h, sizeof h, 0) != 0) {
        if (file->fd >= 0) close(file->fd);
        free(file);
        return NULL;
    }
    return file;
}

int page_file_to_memory(page_file *file) {
    page_file *memory = page_file_anonymous();
    if (!memory) return -1;
    struct stat st;
    static uint8_t chunk[1 << 20];
    static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;
    int rc = fstat(file->fd, &st) == 0 ? 0 : -1;
    pthread_mutex_lock(&chunk_lock); /* sandboxes restore on several threads */
    for (off_t at = 0; rc == 0 && at < st.st_size;) {
        ssize_t n = pread(file->fd, chunk, sizeof chunk, at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || write_all(memory->fd, chunk, (size_t)n, at) != 0) rc = -1;
        at += n > 0 ? n : 0;
    }
    pthread_mutex_unlock(&chunk_lock);
    if (rc != 0) {
        page_file_close(memory);
        return -1;
    }
    close(file->fd);
    if (file->temporary[0]) unlink(file->temporary);
    file->fd = memory->fd;
    file->path[0] = file->temporary[0] = '\0';
    free(memory);
    return 0;
}

int page_file_unseal(page_file *file) {
    static const uint8_t unsealed[1 + PAGE_FILE_KEY];
    return write_all(file->fd, unsealed, sizeof unsealed, offsetof(header, sealed));
}

int page_file_write(page_file *file, uint32_t first, const uint8_t *bytes, uint32_t count) {
    return write_all(file->fd, bytes, (size_t)count * DURABLE_PAGE,
                     (off_t)PAGE_FILE_HEADER + (off_t)first * DURABLE_PAGE);
}

int page_file_seal(page_files *files, page_file *file, const uint8_t key[PAGE_FILE_KEY]) {
    uint8_t sealed[1 + PAGE_FILE_KEY] = {1};
    memcpy(sealed + 1, key, PAGE_FILE_KEY);
    struct stat before, after;
    int new_file = file->temporary[0] != '\0';
    if (fstat(file->fd, &before) != 0) return -1;
    if (write_all(file->fd, sealed, sizeof sealed, offsetof(header, sealed)) != 0) return -1;
    if (new_file) {
        if (rename(file->temporary, file->path) != 0) return -1;
        file->temporary[0] = '\0';
    }
    if (fstat(file->fd, &after) != 0) return 0;
    /* The sealed file stands; the directory's budget is kept by removing
     * the oldest others. */
    uint64_t grown = after.st_blocks > before.st_blocks
                         ? (uint64_t)(after.st_blocks - before.st_blocks) * 512
                         : 0;
    if (new_file) grown = (uint64_t)after.st_blocks * 512;
    pthread_mutex_lock(&files->lock);
    files->used += grown;
    if (files->used > files->budget) {
        const char *name = strrchr(file->path, '/');
        files->used = evict(files, files->budget / 4 * 3, name ? name + 1 : NULL);
    }
    pthread_mutex_unlock(&files->lock);
    return 0;
}

void page_files_remove(page_files *files, const char *session) {
    char path[4200];
    if (files && session_path(files, session, path, sizeof path) == 0) unlink(path);
}

int page_file_reader(const page_file *file) {
    if (!file->path[0]) { /* in memory: sealed against any write, then shared as it is */
        if (fcntl(file->fd, F_ADD_SEALS,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
            return -1;
        return fcntl(file->fd, F_DUPFD_CLOEXEC, 0);
    }
    /* By name (this process alone renames its directory's files), which
     * needs no /proc. */
    return open(file->temporary[0] ? file->temporary : file->path,
                O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

void page_file_close(page_file *file) {
    if (!file) return;
    close(file->fd);
    if (file->temporary[0]) unlink(file->temporary);
    free(file);
}

void page_file_drop(page_file *file) {
    if (!file) return;
    if (!file->temporary[0] && file->path[0]) unlink(file->path);
    page_file_close(file);
}
