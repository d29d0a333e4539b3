/*
 * vfs.c — mount table and path normalisation.
 *
 * Every guest path is first made absolute and normalised lexically, then the
 * mount with the longest matching prefix gets the remainder.  This is the
 * only place that decides which backend a path belongs to.
 */
#include "vfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VFS_MAX_MOUNTS 64

typedef struct mount {
    char *at; /* absolute normalised guest path; "/" for the root */
    size_t at_length;
    const vfs_backend_ops *ops;
    void *backend;
    int read_only;
} mount;

struct vfs {
    mount mounts[VFS_MAX_MOUNTS];
    int mount_count;
};

vfs *vfs_new(void) {
    return calloc(1, sizeof(vfs));
}

void vfs_free(vfs *fs) {
    if (!fs) return;
    for (int i = fs->mount_count - 1; i >= 0; i--) {
        fs->mounts[i].ops->destroy(fs->mounts[i].backend);
        free(fs->mounts[i].at);
    }
    free(fs);
}

int vfs_normalize(const char *base, const char *path, size_t path_size, char *out) {
    /* Components are appended to `out`; ".." pops back to the previous "/". */
    size_t length = 0;
    const char *sources[2] = {base, path};
    size_t sizes[2] = {base ? strlen(base) : 0, path_size};

    if (path_size == 0) return -ENOENT;
    if (memchr(path, '\0', path_size)) return -EINVAL;
    if (path[0] == '/') sources[0] = NULL, sizes[0] = 0;

    out[0] = '\0';
    for (int s = 0; s < 2; s++) {
        const char *p = sources[s], *end = p ? p + sizes[s] : NULL;
        while (p && p < end) {
            while (p < end && *p == '/') p++;
            const char *start = p;
            while (p < end && *p != '/') p++;
            size_t n = (size_t)(p - start);
            if (n == 0 || (n == 1 && start[0] == '.')) continue;
            if (n == 2 && start[0] == '.' && start[1] == '.') {
                while (length > 0 && out[length - 1] != '/') length--;
                if (length > 0) length--; /* the "/" itself; at "/" we stay */
                out[length] = '\0';
                continue;
            }
            if (n > VFS_NAME_MAX) return -ENAMETOOLONG;
            if (length + 1 + n + 1 > VFS_PATH_MAX) return -ENAMETOOLONG;
            out[length++] = '/';
            memcpy(out + length, start, n);
            length += n;
            out[length] = '\0';
        }
    }
    if (length == 0) strcpy(out, "/");
    return 0;
}

/* The mount owning `path`, and the mount-relative remainder. */
static mount *find_mount(vfs *fs, const char *path, const char **relative) {
    mount *best = NULL;
    for (int i = 0; i < fs->mount_count; i++) {
        mount *m = &fs->mounts[i];
        int matches;
        if (m->at_length == 1) /* "/" */
            matches = 1;
        else
            matches = strncmp(path, m->at, m->at_length) == 0 &&
                      (path[m->at_length] == '\0' || path[m->at_length] == '/');
        if (matches && (!best || m->at_length > best->at_length)) best = m;
    }
    if (best) {
        const char *rest = path + (best->at_length == 1 ? 0 : best->at_length);
        while (*rest == '/') rest++;
        *relative = rest;
    }
    return best;
}

static int is_mount_point(vfs *fs, const char *path) {
    for (int i = 0; i < fs->mount_count; i++)
        if (strcmp(fs->mounts[i].at, path) == 0) return 1;
    return 0;
}

int vfs_mount(vfs *fs, const char *at, const vfs_backend_ops *ops, void *backend, int read_only) {
    char normalized[VFS_PATH_MAX];
    int rc = vfs_normalize(NULL, at, strlen(at), normalized);
    if (rc == 0 && at[0] != '/') rc = -EINVAL;
    if (rc == 0 && is_mount_point(fs, normalized)) rc = -EEXIST;
    if (rc == 0 && fs->mount_count == VFS_MAX_MOUNTS) rc = -ENOSPC;
    if (rc == 0 && fs->mount_count == 0 && strcmp(normalized, "/") != 0) rc = -EINVAL;
    if (rc != 0) {
        ops->destroy(backend);
        return rc;
    }
    /* Make the mount point exist in the enclosing mounts, so that listing
     * and stat of its parents work like on a real system. */
    for (char *slash = strchr(normalized + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash) *slash = '\0';
        const char *relative;
        mount *parent = fs->mount_count ? find_mount(fs, normalized, &relative) : NULL;
        if (parent && *relative) parent->ops->mkdir(parent->backend, relative);
        if (!slash) break;
        *slash = '/';
    }
    mount *m = &fs->mounts[fs->mount_count];
    m->at = strdup(normalized);
    if (!m->at) {
        ops->destroy(backend);
        return -ENOMEM;
    }
    m->at_length = strlen(normalized);
    m->ops = ops;
    m->backend = backend;
    m->read_only = read_only;
    fs->mount_count++;
    return 0;
}

int vfs_is_read_only(vfs *fs, const char *path) {
    const char *relative;
    mount *m = find_mount(fs, path, &relative);
    return m && m->read_only;
}

int vfs_mount_point(vfs *fs, int index, const char **at, int *read_only) {
    if (index < 0 || index >= fs->mount_count) return -ENOENT;
    *at = fs->mounts[index].at;
    *read_only = fs->mounts[index].read_only;
    return 0;
}

int vfs_stat(vfs *fs, const char *path, vfs_metadata *st) {
    const char *relative;
    mount *m = find_mount(fs, path, &relative);
    if (!m) return -ENOENT;
    return m->ops->stat(m->backend, relative, st);
}

int vfs_open(vfs *fs, const char *path, int flags, vfs_file **out) {
    const char *relative;
    mount *m = find_mount(fs, path, &relative);
    if (!m) return -ENOENT;
    if (m->read_only && (flags & (VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE))) {
        /* Creating a file that does not exist is still EROFS; opening a
         * missing file read-only must say ENOENT, as Linux does. */
        return -EROFS;
    }
    return m->ops->open(m->backend, relative, flags, out);
}

/* Shared shape of the mutating calls: resolve, refuse on read-only mounts
 * and on mount points themselves, then hand to the backend. */
static mount *writable_mount(vfs *fs, const char *path, const char **relative, int *rc) {
    mount *m = find_mount(fs, path, relative);
    if (!m)
        *rc = -ENOENT;
    else if (**relative == '\0' || is_mount_point(fs, path))
        *rc = -EBUSY;
    else if (m->read_only)
        *rc = -EROFS;
    else
        *rc = 0;
    return *rc ? NULL : m;
}

int vfs_mkdir(vfs *fs, const char *path) {
    const char *relative;
    int rc;
    mount *m = writable_mount(fs, path, &relative, &rc);
    if (!m) return rc == -EBUSY ? -EEXIST : rc;
    return m->ops->mkdir(m->backend, relative);
}

int vfs_rmdir(vfs *fs, const char *path) {
    const char *relative;
    int rc;
    mount *m = writable_mount(fs, path, &relative, &rc);
    return m ? m->ops->rmdir(m->backend, relative) : rc;
}

int vfs_unlink(vfs *fs, const char *path) {
    const char *relative;
    int rc;
    mount *m = writable_mount(fs, path, &relative, &rc);
    if (!m) return rc == -EBUSY ? -EISDIR : rc;
    return m->ops->unlink(m->backend, relative);
}

int vfs_rename(vfs *fs, const char *from, const char *to) {
    const char *from_relative, *to_relative;
    int rc;
    mount *source = writable_mount(fs, from, &from_relative, &rc);
    if (!source) return rc;
    mount *target = writable_mount(fs, to, &to_relative, &rc);
    if (!target) return rc;
    if (source != target) return -EXDEV;
    /* Moving a directory into itself would detach it from the tree. */
    size_t from_length = strlen(from);
    if (strncmp(to, from, from_length) == 0 && to[from_length] == '/') return -EINVAL;
    /* A directory holding a mount point cannot move: the mount would stay
     * at the old path, which no listing would show any more. */
    for (int i = 0; i < fs->mount_count; i++)
        if (strncmp(fs->mounts[i].at, from, from_length) == 0 &&
            fs->mounts[i].at[from_length] == '/')
            return -EBUSY;
    return source->ops->rename(source->backend, from_relative, to_relative);
}

int vfs_set_times(vfs *fs, const char *path, const uint64_t *atime_ns, const uint64_t *mtime_ns) {
    const char *relative;
    mount *m = find_mount(fs, path, &relative);
    if (!m) return -ENOENT;
    vfs_metadata st;
    int rc = m->ops->stat(m->backend, relative, &st);
    if (rc) return rc;
    if (m->read_only) return -EROFS;
    if (!m->ops->set_times) return 0;
    return m->ops->set_times(m->backend, relative, atime_ns, mtime_ns);
}

void vfs_file_retain(vfs_file *file) {
    file->refcount++;
}

void vfs_file_release(vfs_file *file) {
    if (file && --file->refcount == 0) file->ops->close(file);
}
