/*
 * hostfs.c — a host directory, seen through a broker.
 *
 * Workers make no path-based system calls (seccomp), so this backend does
 * not touch the host itself: every stat, listing, read and (on a writable
 * mount) change is a request to the host process (the `broker` callback),
 * which resolves the path beneath the mount's root with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), enforces the quota, and
 * answers.  A file's content is fetched once, at open, so reads are served
 * from memory; writes go through to the host at once (so a full quota is
 * an error of the write itself) and update that copy.
 */
#include "vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest write sent in one request: a frame stays small. */
#define WRITE_CHUNK (1u << 20)
#define MAX_FILE (64u << 20) /* as the host's limit for files read whole */

typedef struct hostfs {
    vfs_host_broker broker;
    void *context;
    int writable;
} hostfs;

typedef struct hostfs_file {
    vfs_file base;
    hostfs *fs;
    char path[VFS_PATH_MAX];
    vfs_metadata metadata;
    unsigned char *data; /* a file's bytes, or a listing: (type byte, name, NUL)* */
    size_t size;
    size_t entry_count;
} hostfs_file;

static int parse_metadata(const unsigned char *data, size_t size, vfs_metadata *st) {
    uint64_t fields[5];
    if (size != sizeof fields) return -EIO;
    memcpy(fields, data, sizeof fields);
    if (fields[0] != VFS_FILE && fields[0] != VFS_DIRECTORY) return -EIO;
    *st = (vfs_metadata){(vfs_type)fields[0], fields[1], fields[2], fields[3], fields[4], 0};
    return 0;
}

static int host_stat(void *opaque, const char *path, vfs_metadata *st) {
    hostfs *fs = opaque;
    unsigned char *data = NULL;
    size_t size = 0;
    int rc = fs->broker(fs->context, 's', path, NULL, 0, &data, &size);
    if (rc == 0) rc = parse_metadata(data, size, st);
    free(data);
    return rc;
}

static int file_read(vfs_file *file, void *buffer, size_t size, uint64_t offset, size_t *done) {
    hostfs_file *f = (hostfs_file *)file;
    if (file->type == VFS_DIRECTORY) return -EISDIR;
    size_t left = offset < f->size ? f->size - (size_t)offset : 0;
    *done = size < left ? size : left;
    if (*done) memcpy(buffer, f->data + offset, *done);
    return 0;
}

/* Sends an op whose answer is empty. */
static int ask(hostfs *fs, char op, const char *path, const void *input, size_t input_size) {
    unsigned char *data = NULL;
    size_t size = 0;
    int rc = fs->broker(fs->context, op, path, input, input_size, &data, &size);
    free(data);
    return rc;
}

/* Makes the local copy `size` bytes long (new bytes zero). */
static int resize_copy(hostfs_file *f, size_t size) {
    if (size > MAX_FILE) return -EFBIG;
    if (size > f->size) {
        unsigned char *grown = realloc(f->data, size);
        if (!grown) return -ENOMEM;
        memset(grown + f->size, 0, size - f->size);
        f->data = grown;
    }
    f->size = size;
    f->metadata.size = size;
    return 0;
}

static int file_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                      size_t *done) {
    hostfs_file *f = (hostfs_file *)file;
    *done = 0;
    if (!f->fs->writable) return -EROFS;
    if (file->type == VFS_DIRECTORY) return -EISDIR;
    if (offset > MAX_FILE || size > MAX_FILE - offset) return -EFBIG;
    unsigned char *request = malloc(8 + (size < WRITE_CHUNK ? size : WRITE_CHUNK));
    if (!request) return -ENOMEM;
    int rc = 0;
    while (rc == 0 && *done < size) {
        size_t chunk = size - *done < WRITE_CHUNK ? size - *done : WRITE_CHUNK;
        uint64_t at = offset + *done;
        memcpy(request, &at, 8);
        memcpy(request + 8, (const unsigned char *)buffer + *done, chunk);
        rc = ask(f->fs, 'p', f->path, request, 8 + chunk);
        if (rc == 0 && at + chunk > f->size) rc = resize_copy(f, (size_t)(at + chunk));
        if (rc == 0) {
            memcpy(f->data + at, (const unsigned char *)buffer + *done, chunk);
            *done += chunk;
        }
    }
    free(request);
    return *done ? 0 : rc; /* a partial write reports what was written */
}

static int file_stat(vfs_file *file, vfs_metadata *st) {
    *st = ((hostfs_file *)file)->metadata;
    return 0;
}

static int file_truncate(vfs_file *file, uint64_t size) {
    hostfs_file *f = (hostfs_file *)file;
    if (!f->fs->writable) return -EROFS;
    if (file->type == VFS_DIRECTORY) return -EISDIR;
    if (size > MAX_FILE) return -EFBIG;
    int rc = ask(f->fs, 't', f->path, &size, sizeof size);
    return rc ? rc : resize_copy(f, (size_t)size);
}

static int file_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    hostfs_file *f = (hostfs_file *)file;
    if (file->type != VFS_DIRECTORY) return -ENOTDIR;
    const unsigned char *p = f->data, *end = f->data + f->size;
    for (uint64_t i = 0; p < end; i++) {
        const unsigned char *nul = memchr(p + 1, '\0', (size_t)(end - p - 1));
        if (!nul) return -EIO;
        if (i == cookie) {
            memset(entry, 0, sizeof *entry);
            entry->type = p[0] == 'd' ? VFS_DIRECTORY : VFS_FILE;
            snprintf(entry->name, sizeof entry->name, "%s", (const char *)p + 1);
            entry->inode = cookie + 2;
            return 1;
        }
        p = nul + 1;
    }
    return 0;
}

static void file_close(vfs_file *file) {
    free(((hostfs_file *)file)->data);
    free(file);
}

static const vfs_file_ops hostfs_file_ops = {
    file_read, file_write, file_stat, file_truncate, file_readdir, file_close,
};

static int host_open(void *opaque, const char *path, int flags, vfs_file **out) {
    hostfs *fs = opaque;
    vfs_metadata st;
    int writing = flags & (VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE);
    int rc = host_stat(fs, path, &st), fresh = 0;
    if (rc == -ENOENT && (flags & VFS_O_CREATE)) {
        if (!fs->writable) return -EROFS;
        unsigned char exclusive = (flags & VFS_O_EXCLUSIVE) != 0;
        rc = ask(fs, 'c', path, &exclusive, 1);
        if (rc == 0) rc = host_stat(fs, path, &st);
        fresh = 1;
    } else if (rc == 0 && (flags & VFS_O_CREATE) && (flags & VFS_O_EXCLUSIVE)) {
        return -EEXIST;
    }
    if (rc) return rc;
    if (writing && !fs->writable) return -EROFS;
    if ((flags & VFS_O_DIRECTORY) && st.type != VFS_DIRECTORY) return -ENOTDIR;
    if (st.type == VFS_DIRECTORY && (flags & (VFS_O_WRITE | VFS_O_TRUNCATE))) return -EISDIR;
    if (st.type == VFS_FILE && (flags & VFS_O_TRUNCATE) && !fresh) {
        uint64_t zero = 0;
        rc = ask(fs, 't', path, &zero, sizeof zero);
        if (rc) return rc;
        fresh = 1;
    }
    hostfs_file *file = calloc(1, sizeof *file);
    if (!file) return -ENOMEM;
    if (!fresh || st.type == VFS_DIRECTORY)
        rc = fs->broker(fs->context, st.type == VFS_DIRECTORY ? 'l' : 'r', path, NULL, 0,
                        &file->data, &file->size);
    if (rc) {
        free(file);
        return rc;
    }
    file->base.ops = &hostfs_file_ops;
    file->base.type = st.type;
    file->base.refcount = 1;
    file->fs = fs;
    snprintf(file->path, sizeof file->path, "%s", path);
    file->metadata = st;
    if (st.type == VFS_FILE) file->metadata.size = file->size;
    *out = &file->base;
    return 0;
}

static int host_mkdir(void *backend, const char *path) {
    hostfs *fs = backend;
    return fs->writable ? ask(fs, 'm', path, NULL, 0) : -EROFS;
}

static int host_rmdir(void *backend, const char *path) {
    hostfs *fs = backend;
    return fs->writable ? ask(fs, 'd', path, NULL, 0) : -EROFS;
}

static int host_unlink(void *backend, const char *path) {
    hostfs *fs = backend;
    return fs->writable ? ask(fs, 'u', path, NULL, 0) : -EROFS;
}

static int host_rename(void *backend, const char *from, const char *to) {
    hostfs *fs = backend;
    return fs->writable ? ask(fs, 'n', from, to, strlen(to)) : -EROFS;
}

/* 'T': two u64 times in ns, UINT64_MAX for one to leave as it is. */
static int host_set_times(void *backend, const char *path, const uint64_t *atime_ns,
                          const uint64_t *mtime_ns) {
    hostfs *fs = backend;
    if (!fs->writable) return -EROFS;
    uint64_t times[2] = {atime_ns ? *atime_ns : UINT64_MAX, mtime_ns ? *mtime_ns : UINT64_MAX};
    return ask(fs, 'T', path, times, sizeof times);
}

static void host_destroy(void *backend) {
    free(backend);
}

static const vfs_backend_ops hostfs_ops = {
    host_stat, host_open, host_mkdir, host_rmdir, host_unlink, host_rename, host_destroy,
    host_set_times,
};

int vfs_hostfs_new(vfs_host_broker broker, void *context, int writable,
                   const vfs_backend_ops **ops, void **backend) {
    hostfs *fs = calloc(1, sizeof *fs);
    if (!fs) return -ENOMEM;
    fs->broker = broker;
    fs->context = context;
    fs->writable = writable;
    *ops = &hostfs_ops;
    *backend = fs;
    return 0;
}
