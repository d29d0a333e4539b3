/*
 * devfs.c — /dev: the device files programs open by name.
 *
 * null (reads end at once, writes vanish), zero (reads zeros), and
 * urandom and random (reads from getentropy).  Nothing else exists here and
 * nothing can be created, removed or renamed: EACCES, as a process without
 * privileges gets in a real /dev.  The streams of the sandbox (stdin,
 * stdout, stderr) are descriptors, not files here.
 */
#include "vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef enum { DEVICE_NULL, DEVICE_ZERO, DEVICE_RANDOM, DEVICE_URANDOM, DEVICE_COUNT } device_kind;

static const char *const device_names[DEVICE_COUNT] = {"null", "zero", "random", "urandom"};

typedef struct device_file {
    vfs_file base; /* first: vfs_device_close frees it */
    device_kind kind;
} device_file;

static int kind_of(const char *path) {
    for (int i = 0; i < DEVICE_COUNT; i++)
        if (strcmp(path, device_names[i]) == 0) return i;
    return -1;
}

static int device_read(vfs_file *file, void *buffer, size_t size, uint64_t offset,
                       size_t *done) {
    (void)offset;
    device_kind kind = ((device_file *)file)->kind;
    *done = 0;
    if (kind == DEVICE_NULL) return 0;
    if (kind == DEVICE_ZERO) {
        memset(buffer, 0, size);
        *done = size;
        return 0;
    }
    if (size > 256) size = 256; /* getentropy's limit: a short read, as /dev/random gives */
    if (getentropy(buffer, size) != 0) return -errno;
    *done = size;
    return 0;
}

static int device_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                        size_t *done) {
    (void)file, (void)buffer, (void)offset;
    *done = size;
    return 0;
}

static const vfs_file_ops device_ops = {
    device_read, device_write, vfs_device_stat, vfs_device_truncate, vfs_device_readdir,
    vfs_device_close,
};

/* The directory itself, for listing. */
typedef struct directory_file {
    vfs_file base;
} directory_file;

static int directory_stat(vfs_file *file, vfs_metadata *st) {
    (void)file;
    memset(st, 0, sizeof *st);
    st->type = VFS_DIRECTORY;
    st->inode = 1;
    st->links = 2;
    return 0;
}

static int directory_read(vfs_file *file, void *buffer, size_t size, uint64_t offset,
                          size_t *done) {
    (void)file, (void)buffer, (void)size, (void)offset, (void)done;
    return -EISDIR;
}

static int directory_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                           size_t *done) {
    (void)file, (void)buffer, (void)size, (void)offset, (void)done;
    return -EISDIR;
}

static int directory_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    (void)file;
    if (cookie >= DEVICE_COUNT) return 0;
    memset(entry, 0, sizeof *entry);
    snprintf(entry->name, sizeof entry->name, "%s", device_names[cookie]);
    entry->type = VFS_CHARACTER_DEVICE;
    entry->inode = cookie + 2;
    return 1;
}

static const vfs_file_ops directory_ops = {
    directory_read, directory_write, directory_stat, vfs_device_truncate, directory_readdir,
    vfs_device_close,
};

static int devfs_stat(void *backend, const char *path, vfs_metadata *st) {
    (void)backend;
    if (!*path) return directory_stat(NULL, st);
    int kind = kind_of(path);
    if (kind < 0) return -ENOENT;
    memset(st, 0, sizeof *st);
    st->type = VFS_CHARACTER_DEVICE;
    st->inode = (uint64_t)kind + 2;
    st->links = 1;
    return 0;
}

static int devfs_open(void *backend, const char *path, int flags, vfs_file **out) {
    (void)backend;
    if (!*path) {
        if (flags & (VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE)) return -EISDIR;
        directory_file *d = calloc(1, sizeof *d);
        if (!d) return -ENOMEM;
        d->base = (vfs_file){&directory_ops, VFS_DIRECTORY, 1};
        *out = &d->base;
        return 0;
    }
    int kind = kind_of(path);
    if (kind < 0) return (flags & VFS_O_CREATE) ? -EACCES : -ENOENT;
    if ((flags & VFS_O_CREATE) && (flags & VFS_O_EXCLUSIVE)) return -EEXIST;
    if (flags & VFS_O_DIRECTORY) return -ENOTDIR;
    device_file *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    d->base = (vfs_file){&device_ops, VFS_CHARACTER_DEVICE, 1};
    d->kind = (device_kind)kind;
    *out = &d->base;
    return 0;
}

static int devfs_refuse(void *backend, const char *path) {
    (void)backend;
    return kind_of(path) >= 0 || !*path ? -EACCES : -ENOENT;
}

static int devfs_rename(void *backend, const char *from, const char *to) {
    (void)backend, (void)to;
    return kind_of(from) >= 0 ? -EACCES : -ENOENT;
}

static int devfs_mkdir(void *backend, const char *path) {
    (void)backend, (void)path;
    return -EACCES;
}

static void devfs_destroy(void *backend) {
    (void)backend;
}

static const vfs_backend_ops devfs_ops = {
    devfs_stat, devfs_open, devfs_mkdir, devfs_refuse, devfs_refuse, devfs_rename, devfs_destroy,
    NULL, /* no times to keep */
};

int vfs_devfs_new(const vfs_backend_ops **ops, void **backend) {
    *ops = &devfs_ops;
    *backend = NULL;
    return 0;
}
