/*
 * resource.c — a directory whose files the host produces when they are
 * opened (/network/<name>: an HTTP fetch done by the parent), and, for
 * providers that take writes, consumes as they are written.
 *
 * The backend knows only names and a fetch callback; the zygote's callback
 * asks the host over the worker's channel and blocks until the answer, so
 * the guest sees an ordinary blocking open().  The content is fetched once
 * per open and read from memory afterwards.
 */
#include "vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest write handed to the host in one request. */
#define STORE_CHUNK (1u << 20)

typedef struct resource_backend {
    char **names;
    int count;
    vfs_resource_fetch fetch;
    vfs_resource_store store; /* NULL: read-only */
    void *context;
} resource_backend;

typedef struct resource_file {
    vfs_file base;
    resource_backend *backend; /* directories list its names */
    unsigned char *data;       /* fetched content, or what was written */
    size_t size;
    int writable;
    char name[VFS_NAME_MAX + 1];
} resource_file;

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A template's value goes into a URL, percent-encoded; the server decodes
 * it once, or more.  It must not be a path there: decoded as often as it
 * decodes, it may hold no '/', '\\' (a separator to some servers) or NUL,
 * and may not be "." or "..". */
static int plain_value(const char *value, size_t length) {
    char decoded[VFS_NAME_MAX + 1];
    memcpy(decoded, value, length);
    for (int round = 0; round < 8; round++) {
        size_t out = 0;
        int changed = 0;
        for (size_t i = 0; i < length; i++) {
            int high, low;
            if (decoded[i] == '%' && i + 2 < length &&
                (high = hex_digit(decoded[i + 1])) >= 0 && (low = hex_digit(decoded[i + 2])) >= 0) {
                decoded[out++] = (char)(high * 16 + low);
                i += 2;
                changed = 1;
            } else {
                decoded[out++] = decoded[i];
            }
        }
        length = out;
        if (memchr(decoded, '/', length) || memchr(decoded, '\\', length) ||
            memchr(decoded, '\0', length) || (length == 1 && decoded[0] == '.') ||
            (length == 2 && decoded[0] == '.' && decoded[1] == '.'))
            return 0;
        if (!changed) return 1;
    }
    return 0; /* still decoding after eight rounds: nobody means that */
}

size_t vfs_template_match(const char *template, const char *name, size_t name_size,
                          size_t *start) {
    const char *hole = strstr(template, "{}");
    if (!hole) return 0;
    size_t prefix = (size_t)(hole - template), suffix = strlen(hole + 2);
    if (name_size <= prefix + suffix || name_size > VFS_NAME_MAX ||
        memcmp(name, template, prefix) != 0 ||
        memcmp(name + name_size - suffix, hole + 2, suffix) != 0)
        return 0;
    size_t length = name_size - prefix - suffix;
    const char *value = name + prefix;
    if (!plain_value(value, length)) return 0;
    *start = prefix;
    return length;
}

/* The name's index, -1 if there is none: an exact name first, then a
 * template ("{}" in it) that the name fills in.  With no list (count < 0)
 * any single plain name is accepted, at index 0. */
static int find_name(resource_backend *backend, const char *path) {
    if (backend->count < 0)
        return *path && !strchr(path, '/') && strlen(path) <= VFS_NAME_MAX ? 0 : -1;
    for (int i = 0; i < backend->count; i++)
        if (strcmp(backend->names[i], path) == 0) return i;
    size_t start;
    for (int i = 0; i < backend->count; i++)
        if (vfs_template_match(backend->names[i], path, strlen(path), &start)) return i;
    return -1;
}

static int file_read(vfs_file *file, void *buffer, size_t size, uint64_t offset, size_t *done) {
    resource_file *f = (resource_file *)file;
    if (file->type == VFS_DIRECTORY) return -EISDIR;
    size_t left = offset < f->size ? f->size - (size_t)offset : 0;
    *done = size < left ? size : left;
    memcpy(buffer, f->data + (offset < f->size ? offset : 0), *done);
    return 0;
}

/* Writes go to the host at once, in chunks, so a failure belongs to the
 * write; the local copy keeps what was written for reads and stat. */
static int file_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                      size_t *done) {
    resource_file *f = (resource_file *)file;
    *done = 0;
    if (!f->writable) return -EROFS;
    if (offset > (64u << 20) || size > (64u << 20) - offset) return -EFBIG;
    int rc = 0;
    while (rc == 0 && *done < size) {
        size_t chunk = size - *done < STORE_CHUNK ? size - *done : STORE_CHUNK;
        uint64_t at = offset + *done;
        const unsigned char *bytes = (const unsigned char *)buffer + *done;
        rc = f->backend->store(f->backend->context, f->name, at, bytes, chunk);
        if (rc == 0 && at + chunk > f->size) {
            unsigned char *grown = realloc(f->data, (size_t)(at + chunk));
            if (!grown) rc = -ENOMEM;
            else {
                memset(grown + f->size, 0, (size_t)(at + chunk) - f->size);
                f->data = grown;
                f->size = (size_t)(at + chunk);
            }
        }
        if (rc == 0) {
            memcpy(f->data + at, bytes, chunk);
            *done += chunk;
        }
    }
    return *done ? 0 : rc;
}

static int file_stat(vfs_file *file, vfs_metadata *st) {
    resource_file *f = (resource_file *)file;
    memset(st, 0, sizeof *st);
    st->type = file->type;
    st->size = f->size;
    st->inode = (uint64_t)(uintptr_t)file;
    st->links = 1;
    return 0;
}

static int file_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EROFS;
}

static int file_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    resource_file *f = (resource_file *)file;
    if (file->type != VFS_DIRECTORY) return -ENOTDIR;
    if (f->backend->count < 0 || cookie >= (uint64_t)f->backend->count) return 0;
    memset(entry, 0, sizeof *entry);
    snprintf(entry->name, sizeof entry->name, "%s", f->backend->names[cookie]);
    entry->type = VFS_FILE;
    entry->inode = cookie + 2;
    return 1;
}

static void file_close(vfs_file *file) {
    free(((resource_file *)file)->data);
    free(file);
}

static const vfs_file_ops resource_file_ops = {
    file_read, file_write, file_stat, file_truncate, file_readdir, file_close,
};

static int backend_stat(void *opaque, const char *path, vfs_metadata *st) {
    resource_backend *backend = opaque;
    memset(st, 0, sizeof *st);
    st->links = 1;
    if (*path == '\0') {
        st->type = VFS_DIRECTORY;
        st->inode = 1;
        return 0;
    }
    int index = find_name(backend, path);
    if (index < 0) return -ENOENT;
    st->type = VFS_FILE; /* size unknown until fetched: 0, as /proc files say */
    st->inode = (uint64_t)index + 2;
    return 0;
}

static int backend_open(void *opaque, const char *path, int flags, vfs_file **out) {
    resource_backend *backend = opaque;
    int index = *path ? find_name(backend, path) : -1;
    int writing = flags & (VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE);
    if (*path && index < 0) return (flags & VFS_O_CREATE) && !backend->store ? -EROFS : -ENOENT;
    if (writing && (!backend->store || !*path)) return *path ? -EROFS : -EISDIR;
    if (*path && (flags & VFS_O_DIRECTORY)) return -ENOTDIR;
    resource_file *file = calloc(1, sizeof *file);
    if (!file) return -ENOMEM;
    file->base.ops = &resource_file_ops;
    file->base.type = *path ? VFS_FILE : VFS_DIRECTORY;
    file->base.refcount = 1;
    file->backend = backend;
    file->writable = writing != 0;
    snprintf(file->name, sizeof file->name, "%s", path);
    /* Opened to write: the content starts empty (truncation is announced
     * to the host); opened to read as well, it is fetched first. */
    int rc = 0;
    if (*path && writing && (flags & VFS_O_TRUNCATE))
        rc = backend->store(backend->context, path, 0, "", 0);
    if (rc == 0 && *path && (!writing || (flags & VFS_O_READ)) && !(flags & VFS_O_TRUNCATE))
        rc = backend->fetch(backend->context, path, &file->data, &file->size);
    if (rc) {
        free(file);
        return rc;
    }
    *out = &file->base;
    return 0;
}

static int backend_refuse(void *backend, const char *path) {
    (void)backend, (void)path;
    return -EROFS;
}

static int backend_rename(void *backend, const char *from, const char *to) {
    (void)backend, (void)from, (void)to;
    return -EROFS;
}

static void backend_destroy(void *opaque) {
    resource_backend *backend = opaque;
    if (backend->count < 0) backend->count = 0;
    for (int i = 0; i < backend->count; i++) free(backend->names[i]);
    free(backend->names);
    free(backend);
}

static const vfs_backend_ops resource_backend_ops = {
    backend_stat, backend_open, backend_refuse, backend_refuse, backend_refuse, backend_rename,
    backend_destroy, NULL, /* resources keep no times */
};

int vfs_resource_new(const char *const *names, int count, vfs_resource_fetch fetch,
                     vfs_resource_store store, void *context, const vfs_backend_ops **ops,
                     void **out) {
    resource_backend *backend = calloc(1, sizeof *backend);
    if (!backend) return -ENOMEM;
    backend->names = calloc(count > 0 ? (size_t)count + 1 : 1, sizeof *backend->names);
    backend->fetch = fetch;
    backend->store = store;
    backend->context = context;
    if (!backend->names) {
        free(backend);
        return -ENOMEM;
    }
    if (count < 0) backend->count = -1;
    for (; backend->count < count; backend->count++) {
        backend->names[backend->count] = strdup(names[backend->count]);
        if (!backend->names[backend->count]) {
            backend_destroy(backend);
            return -ENOMEM;
        }
    }
    *ops = &resource_backend_ops;
    *out = backend;
    return 0;
}
