/*
 * memfs.c — the in-memory read-write file system (scratch space, /tmp).
 *
 * A tree of nodes.  A node lives while it is linked in the tree or open:
 * `references` counts both, so a file unlinked while open keeps its data
 * until the last descriptor closes, as on POSIX.  File bytes count against
 * the byte quota and nodes against the entry limit; exceeding either is
 * ENOSPC.  A node counts from its creation until it is freed.
 */
#include "vfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct node node;
struct node {
    vfs_type type;
    char *name;
    node *parent;    /* NULL for the root and for unlinked nodes */
    int references;  /* 1 while linked + 1 per open file */
    uint64_t inode;
    uint64_t mtime_ns;
    uint64_t atime_ns; /* 0 until set: the same as mtime_ns */
    /* VFS_FILE */
    unsigned char *data;
    size_t size, capacity;
    /* VFS_DIRECTORY */
    node **children;
    size_t child_count, child_capacity;
};

typedef struct memfs {
    node *root;
    uint64_t quota, used; /* file bytes */
    uint64_t entry_limit, entries; /* nodes, the root excluded */
    uint64_t next_inode;
} memfs;

typedef struct memfs_file {
    vfs_file base;
    memfs *fs;
    node *node;
} memfs_file;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* NULL with errno ENOSPC past the entry limit, ENOMEM without memory. */
static node *node_new(memfs *fs, vfs_type type, const char *name, size_t name_length) {
    if (fs->entry_limit && fs->entries >= fs->entry_limit) {
        errno = ENOSPC;
        return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n) {
        errno = ENOMEM;
        return NULL;
    }
    n->name = strndup(name, name_length);
    if (!n->name) {
        free(n);
        errno = ENOMEM;
        return NULL;
    }
    fs->entries++;
    n->type = type;
    n->references = 1;
    n->inode = ++fs->next_inode;
    n->mtime_ns = now_ns();
    return n;
}

static void node_release(memfs *fs, node *n) {
    if (--n->references > 0) return;
    for (size_t i = 0; i < n->child_count; i++) {
        n->children[i]->parent = NULL;
        node_release(fs, n->children[i]);
    }
    fs->used -= n->size;
    fs->entries--;
    free(n->children);
    free(n->data);
    free(n->name);
    free(n);
}

static node *child_named(node *dir, const char *name, size_t length) {
    for (size_t i = 0; i < dir->child_count; i++) {
        node *c = dir->children[i];
        if (strlen(c->name) == length && memcmp(c->name, name, length) == 0) return c;
    }
    return NULL;
}

static int attach(node *dir, node *child) {
    if (dir->child_count == dir->child_capacity) {
        size_t capacity = dir->child_capacity ? dir->child_capacity * 2 : 8;
        node **grown = realloc(dir->children, capacity * sizeof *grown);
        if (!grown) return -ENOMEM;
        dir->children = grown;
        dir->child_capacity = capacity;
    }
    dir->children[dir->child_count++] = child;
    child->parent = dir;
    dir->mtime_ns = now_ns();
    return 0;
}

static void detach(node *child) {
    node *dir = child->parent;
    for (size_t i = 0; i < dir->child_count; i++) {
        if (dir->children[i] == child) {
            dir->children[i] = dir->children[--dir->child_count];
            break;
        }
    }
    child->parent = NULL;
    dir->mtime_ns = now_ns();
}

/* Walks `path`; with `parent_only`, stops at the last component's parent
 * and points *last (length *last_length) at that component. */
static int walk(memfs *fs, const char *path, int parent_only, node **out, const char **last,
                size_t *last_length) {
    node *n = fs->root;
    const char *p = path;
    while (*p) {
        const char *start = p;
        while (*p && *p != '/') p++;
        size_t length = (size_t)(p - start);
        if (parent_only && *p == '\0') {
            *last = start;
            *last_length = length;
            break;
        }
        if (n->type != VFS_DIRECTORY) return -ENOTDIR;
        n = child_named(n, start, length);
        if (!n) return -ENOENT;
        if (*p == '/') p++;
    }
    if (parent_only && p == path) return -EBUSY; /* the root has no parent here */
    if (parent_only && n->type != VFS_DIRECTORY) return -ENOTDIR;
    *out = n;
    return 0;
}

static void fill_stat(const node *n, vfs_metadata *st) {
    memset(st, 0, sizeof *st);
    st->type = n->type;
    st->size = n->type == VFS_FILE ? n->size : 0;
    st->inode = n->inode;
    st->mtime_ns = n->mtime_ns;
    st->atime_ns = n->atime_ns;
    st->links = 1;
}

/* --- open files --------------------------------------------------------- */

static int file_read(vfs_file *file, void *buffer, size_t size, uint64_t offset, size_t *done) {
    node *n = ((memfs_file *)file)->node;
    if (n->type != VFS_FILE) return -EISDIR;
    if (offset >= n->size) {
        *done = 0;
        return 0;
    }
    size_t available = n->size - (size_t)offset;
    *done = size < available ? size : available;
    memcpy(buffer, n->data + offset, *done);
    return 0;
}

/* Grows `n` to hold `size` bytes, charging the quota; new bytes are zero. */
static int resize(memfs *fs, node *n, uint64_t size) {
    if (size > SIZE_MAX / 2) return -EFBIG;
    if (size > n->size && fs->quota && fs->used + (size - n->size) > fs->quota) return -ENOSPC;
    if (size > n->capacity) {
        size_t capacity = n->capacity ? n->capacity : 64;
        while (capacity < size) capacity *= 2;
        unsigned char *grown = realloc(n->data, capacity);
        if (!grown) return -ENOSPC; /* host memory is the real quota */
        n->data = grown;
        n->capacity = capacity;
    }
    if (size > n->size) memset(n->data + n->size, 0, (size_t)size - n->size);
    fs->used = fs->used - n->size + size;
    n->size = (size_t)size;
    n->mtime_ns = now_ns();
    return 0;
}

static int file_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                      size_t *done) {
    memfs_file *f = (memfs_file *)file;
    node *n = f->node;
    if (n->type != VFS_FILE) return -EISDIR;
    if (offset > UINT64_MAX - size) return -EFBIG;
    *done = 0;
    if (size == 0) return 0; /* an empty file has no data buffer to memcpy into */
    if (offset + size > n->size) {
        int rc = resize(f->fs, n, offset + size);
        if (rc) return rc;
    }
    memcpy(n->data + offset, buffer, size);
    n->mtime_ns = now_ns();
    *done = size;
    return 0;
}

static int file_stat(vfs_file *file, vfs_metadata *st) {
    fill_stat(((memfs_file *)file)->node, st);
    return 0;
}

static int file_truncate(vfs_file *file, uint64_t size) {
    memfs_file *f = (memfs_file *)file;
    if (f->node->type != VFS_FILE) return -EISDIR;
    if (size < f->node->size) {
        f->fs->used -= f->node->size - size;
        f->node->size = (size_t)size;
        f->node->mtime_ns = now_ns();
        return 0;
    }
    return resize(f->fs, f->node, size);
}

static int file_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    node *n = ((memfs_file *)file)->node;
    if (n->type != VFS_DIRECTORY) return -ENOTDIR;
    if (cookie >= n->child_count) return 0;
    node *c = n->children[cookie];
    strncpy(entry->name, c->name, VFS_NAME_MAX);
    entry->name[VFS_NAME_MAX] = '\0';
    entry->type = c->type;
    entry->inode = c->inode;
    return 1;
}

static void file_close(vfs_file *file) {
    memfs_file *f = (memfs_file *)file;
    node_release(f->fs, f->node);
    free(f);
}

static const vfs_file_ops memfs_file_ops = {
    file_read, file_write, file_stat, file_truncate, file_readdir, file_close,
};

/* --- backend ------------------------------------------------------------ */

static int memfs_stat(void *backend, const char *path, vfs_metadata *st) {
    node *n;
    int rc = walk(backend, path, 0, &n, NULL, NULL);
    if (rc == 0) fill_stat(n, st);
    return rc;
}

static int memfs_open(void *backend, const char *path, int flags, vfs_file **out) {
    memfs *fs = backend;
    node *n;
    int rc = walk(fs, path, 0, &n, NULL, NULL);
    if (rc == -ENOENT && (flags & VFS_O_CREATE)) {
        node *dir;
        const char *name;
        size_t length;
        rc = walk(fs, path, 1, &dir, &name, &length);
        if (rc) return rc;
        n = node_new(fs, VFS_FILE, name, length);
        if (!n) return -errno;
        rc = attach(dir, n);
        if (rc) {
            node_release(fs, n);
            return rc;
        }
    } else if (rc) {
        return rc;
    } else if ((flags & VFS_O_CREATE) && (flags & VFS_O_EXCLUSIVE)) {
        return -EEXIST;
    }
    if ((flags & VFS_O_DIRECTORY) && n->type != VFS_DIRECTORY) return -ENOTDIR;
    if (n->type == VFS_DIRECTORY && (flags & (VFS_O_WRITE | VFS_O_TRUNCATE))) return -EISDIR;
    if ((flags & VFS_O_TRUNCATE) && n->type == VFS_FILE) {
        fs->used -= n->size;
        n->size = 0;
        n->mtime_ns = now_ns();
    }
    memfs_file *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->base.ops = &memfs_file_ops;
    f->base.type = n->type;
    f->base.refcount = 1;
    f->fs = fs;
    f->node = n;
    n->references++;
    *out = &f->base;
    return 0;
}

static int memfs_mkdir(void *backend, const char *path) {
    memfs *fs = backend;
    node *dir;
    const char *name;
    size_t length;
    int rc = walk(fs, path, 1, &dir, &name, &length);
    if (rc) return rc == -EBUSY ? -EEXIST : rc;
    if (child_named(dir, name, length)) return -EEXIST;
    node *n = node_new(fs, VFS_DIRECTORY, name, length);
    if (!n) return -errno;
    rc = attach(dir, n);
    if (rc) node_release(fs, n);
    return rc;
}

static int remove_entry(memfs *fs, const char *path, vfs_type want) {
    node *n;
    int rc = walk(fs, path, 0, &n, NULL, NULL);
    if (rc) return rc;
    if (n == fs->root) return -EBUSY;
    if (want == VFS_DIRECTORY && n->type != VFS_DIRECTORY) return -ENOTDIR;
    if (want == VFS_FILE && n->type == VFS_DIRECTORY) return -EISDIR;
    if (n->type == VFS_DIRECTORY && n->child_count) return -ENOTEMPTY;
    detach(n);
    node_release(fs, n);
    return 0;
}

static int memfs_rmdir(void *backend, const char *path) {
    return remove_entry(backend, path, VFS_DIRECTORY);
}

static int memfs_unlink(void *backend, const char *path) {
    return remove_entry(backend, path, VFS_FILE);
}

static int memfs_rename(void *backend, const char *from, const char *to) {
    memfs *fs = backend;
    node *source, *target_dir;
    const char *name;
    size_t length;
    int rc = walk(fs, from, 0, &source, NULL, NULL);
    if (rc) return rc;
    if (source == fs->root) return -EBUSY;
    rc = walk(fs, to, 1, &target_dir, &name, &length);
    if (rc) return rc;
    node *existing = child_named(target_dir, name, length);
    if (existing == source) return 0;
    if (existing) {
        if (source->type == VFS_DIRECTORY && existing->type != VFS_DIRECTORY) return -ENOTDIR;
        if (source->type != VFS_DIRECTORY && existing->type == VFS_DIRECTORY) return -EISDIR;
        if (existing->type == VFS_DIRECTORY && existing->child_count) return -ENOTEMPTY;
    }
    char *new_name = strndup(name, length);
    if (!new_name) return -ENOMEM;
    /* Make room first so that nothing below can fail half-way. */
    if (target_dir->child_count == target_dir->child_capacity) {
        size_t capacity = target_dir->child_capacity ? target_dir->child_capacity * 2 : 8;
        node **grown = realloc(target_dir->children, capacity * sizeof *grown);
        if (!grown) {
            free(new_name);
            return -ENOMEM;
        }
        target_dir->children = grown;
        target_dir->child_capacity = capacity;
    }
    if (existing) {
        detach(existing);
        node_release(fs, existing);
    }
    detach(source);
    free(source->name);
    source->name = new_name;
    attach(target_dir, source);
    return 0;
}

static void memfs_destroy(void *backend) {
    memfs *fs = backend;
    node_release(fs, fs->root);
    free(fs);
}

static int memfs_set_times(void *backend, const char *path, const uint64_t *atime_ns,
                           const uint64_t *mtime_ns) {
    node *n;
    int rc = walk(backend, path, 0, &n, NULL, NULL);
    if (rc) return rc;
    if (mtime_ns) n->mtime_ns = *mtime_ns;
    if (atime_ns) n->atime_ns = *atime_ns ? *atime_ns : 1; /* 0 means "as mtime" */
    return 0;
}

static const vfs_backend_ops memfs_ops = {
    memfs_stat, memfs_open, memfs_mkdir, memfs_rmdir, memfs_unlink, memfs_rename, memfs_destroy,
    memfs_set_times,
};

int vfs_memfs_new(uint64_t quota_bytes, const vfs_backend_ops **ops, void **backend) {
    memfs *fs = calloc(1, sizeof *fs);
    if (!fs) return -ENOMEM;
    fs->quota = quota_bytes;
    fs->root = node_new(fs, VFS_DIRECTORY, "", 0);
    if (!fs->root) {
        free(fs);
        return -ENOMEM;
    }
    fs->entries = 0; /* the root is not counted */
    *ops = &memfs_ops;
    *backend = fs;
    return 0;
}

void vfs_memfs_set_quota(void *backend, uint64_t quota_bytes) {
    ((memfs *)backend)->quota = quota_bytes;
}

void vfs_memfs_set_entry_limit(void *backend, uint64_t entries) {
    ((memfs *)backend)->entry_limit = entries;
}

int vfs_memfs_put(void *backend, const char *path, const void *data, size_t size) {
    memfs *fs = backend;
    char parents[VFS_PATH_MAX];
    if (strlen(path) >= sizeof parents) return -ENAMETOOLONG;
    strcpy(parents, path);
    for (char *slash = strchr(parents, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        int rc = memfs_mkdir(fs, parents);
        *slash = '/';
        if (rc && rc != -EEXIST) return rc;
    }
    vfs_file *file;
    int rc = memfs_open(fs, path, VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE, &file);
    if (rc) return rc;
    size_t done = 0;
    rc = size ? file_write(file, data, size, 0, &done) : 0;
    vfs_file_release(file);
    return rc;
}

/* --- saving and loading the tree (durable sessions) ------------------------ */

#define SAVE_MAGIC "capsule-memfs-1\n"

typedef struct save_state {
    vfs_memfs_writer write;
    void *context;
    char path[VFS_PATH_MAX];
} save_state;

static int put_u64(save_state *s, uint64_t value) {
    unsigned char bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)(value >> (8 * i));
    return s->write(s->context, bytes, sizeof bytes);
}

/* Pre-order, so that a directory's record comes before its children's and
 * loading never needs to create a parent itself. */
static int save_node(save_state *s, const node *n, size_t length, int depth) {
    if (depth > 64) return -ELOOP;
    for (size_t i = 0; i < n->child_count; i++) {
        const node *c = n->children[i];
        size_t name_length = strlen(c->name);
        size_t child_length = length + (length ? 1 : 0) + name_length;
        if (child_length >= sizeof s->path) return -ENAMETOOLONG;
        if (length) s->path[length] = '/';
        memcpy(s->path + length + (length ? 1 : 0), c->name, name_length);
        s->path[child_length] = '\0';
        unsigned char type = c->type == VFS_DIRECTORY ? 'd' : 'f';
        int rc = s->write(s->context, &type, 1);
        if (rc == 0) rc = put_u64(s, child_length);
        if (rc == 0) rc = s->write(s->context, s->path, child_length);
        if (rc == 0) rc = put_u64(s, c->mtime_ns);
        if (rc == 0) rc = put_u64(s, c->atime_ns);
        if (rc == 0 && c->type == VFS_FILE) {
            rc = put_u64(s, c->size);
            if (rc == 0 && c->size) rc = s->write(s->context, c->data, c->size);
        }
        if (rc == 0 && c->type == VFS_DIRECTORY) rc = save_node(s, c, child_length, depth + 1);
        if (rc) return rc;
        s->path[length] = '\0';
    }
    return 0;
}

int vfs_memfs_save(void *backend, vfs_memfs_writer write, void *context) {
    memfs *fs = backend;
    save_state s = {write, context, {0}};
    int rc = write(context, SAVE_MAGIC, sizeof SAVE_MAGIC - 1);
    if (rc == 0) rc = save_node(&s, fs->root, 0, 0);
    unsigned char end = 'e';
    if (rc == 0) rc = write(context, &end, 1);
    return rc;
}

static int take(const unsigned char **p, const unsigned char *end, size_t size,
                const unsigned char **out) {
    if ((size_t)(end - *p) < size) return -EINVAL;
    *out = *p;
    *p += size;
    return 0;
}

static int take_u64(const unsigned char **p, const unsigned char *end, uint64_t *value) {
    const unsigned char *bytes;
    if (take(p, end, 8, &bytes)) return -EINVAL;
    *value = 0;
    for (int i = 0; i < 8; i++) *value |= (uint64_t)bytes[i] << (8 * i);
    return 0;
}

int vfs_memfs_load(void *backend, const void *data, size_t size) {
    memfs *fs = backend;
    const unsigned char *p = data, *end = p + size, *bytes;
    if (take(&p, end, sizeof SAVE_MAGIC - 1, &bytes) ||
        memcmp(bytes, SAVE_MAGIC, sizeof SAVE_MAGIC - 1) != 0)
        return -EINVAL;
    for (;;) {
        const unsigned char *type;
        uint64_t length, mtime, atime, file_size = 0;
        if (take(&p, end, 1, &type)) return -EINVAL;
        if (*type == 'e') return p == end ? 0 : -EINVAL;
        if ((*type != 'd' && *type != 'f') || take_u64(&p, end, &length) || length == 0 ||
            length >= VFS_PATH_MAX || take(&p, end, (size_t)length, &bytes) ||
            take_u64(&p, end, &mtime) || take_u64(&p, end, &atime))
            return -EINVAL;
        char path[VFS_PATH_MAX];
        memcpy(path, bytes, (size_t)length);
        path[length] = '\0';
        /* Plain relative paths only: no empty, "." or ".." component. */
        if (memchr(path, '\0', (size_t)length) || path[0] == '/' || path[length - 1] == '/' ||
            strstr(path, "//") || strcmp(path, ".") == 0 || strcmp(path, "..") == 0 ||
            strncmp(path, "./", 2) == 0 || strncmp(path, "../", 3) == 0 || strstr(path, "/./") ||
            strstr(path, "/../") ||
            (length >= 2 && strcmp(path + length - 2, "/.") == 0) ||
            (length >= 3 && strcmp(path + length - 3, "/..") == 0))
            return -EINVAL;
        int rc;
        if (*type == 'd') {
            rc = memfs_mkdir(fs, path);
            if (rc == -EEXIST) rc = 0;
        } else {
            if (take_u64(&p, end, &file_size) || file_size > (uint64_t)(end - p)) return -EINVAL;
            take(&p, end, (size_t)file_size, &bytes);
            vfs_file *file;
            rc = memfs_open(fs, path, VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE, &file);
            if (rc == 0) {
                size_t done = 0;
                if (file_size) rc = file_write(file, bytes, (size_t)file_size, 0, &done);
                vfs_file_release(file);
            }
        }
        node *n;
        if (rc == 0) rc = walk(fs, path, 0, &n, NULL, NULL);
        if (rc) return rc;
        n->mtime_ns = mtime;
        n->atime_ns = atime;
    }
}
