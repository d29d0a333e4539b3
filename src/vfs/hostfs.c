/*
 * hostfs.c — a read-only host directory, seen through a broker.
 *
 * Workers make no path-based system calls (seccomp), so this backend does
 * not touch the host itself: every stat, listing and read is a request to
 * the host process (the `broker` callback), which resolves the path beneath
 * the mount's root with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) and
 * answers with metadata, entries or the file's bytes.  A file's content is
 * fetched once, at open, so reads are served from memory.
 */
#include "vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hostfs {
    vfs_host_broker broker;
    void *context;
} hostfs;

typedef struct hostfs_file {
    vfs_file base;
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
    *st = (vfs_metadata){(vfs_type)fields[0], fields[1], fields[2], fields[3], fields[4]};
    return 0;
}

static int host_stat(void *opaque, const char *path, vfs_metadata *st) {
    hostfs *fs = opaque;
    unsigned char *data = NULL;
    size_t size = 0;
    int rc = fs->broker(fs->context, 's', path, &data, &size);
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

static int file_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                      size_t *done) {
    (void)file, (void)buffer, (void)size, (void)offset;
    *done = 0;
    return -EROFS;
}

static int file_stat(vfs_file *file, vfs_metadata *st) {
    *st = ((hostfs_file *)file)->metadata;
    return 0;
}

static int file_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EROFS;
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
    int rc = host_stat(fs, path, &st);
    if (rc == -ENOENT && (flags & VFS_O_CREATE)) return -EROFS;
    if (rc) return rc;
    if (flags & (VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE)) return -EROFS;
    if ((flags & VFS_O_DIRECTORY) && st.type != VFS_DIRECTORY) return -ENOTDIR;
    hostfs_file *file = calloc(1, sizeof *file);
    if (!file) return -ENOMEM;
    rc = fs->broker(fs->context, st.type == VFS_DIRECTORY ? 'l' : 'r', path, &file->data,
                    &file->size);
    if (rc) {
        free(file);
        return rc;
    }
    file->base.ops = &hostfs_file_ops;
    file->base.type = st.type;
    file->base.refcount = 1;
    file->metadata = st;
    if (st.type == VFS_FILE) file->metadata.size = file->size;
    *out = &file->base;
    return 0;
}

static int host_refuse(void *backend, const char *path) {
    (void)backend, (void)path;
    return -EROFS;
}

static int host_rename(void *backend, const char *from, const char *to) {
    (void)backend, (void)from, (void)to;
    return -EROFS;
}

static void host_destroy(void *backend) {
    free(backend);
}

static const vfs_backend_ops hostfs_ops = {
    host_stat, host_open, host_refuse, host_refuse, host_refuse, host_rename, host_destroy,
};

int vfs_hostfs_new(vfs_host_broker broker, void *context, const vfs_backend_ops **ops,
                   void **backend) {
    hostfs *fs = calloc(1, sizeof *fs);
    if (!fs) return -ENOMEM;
    fs->broker = broker;
    fs->context = context;
    *ops = &hostfs_ops;
    *backend = fs;
    return 0;
}
