/*
 * image.c — read-only file-system images (the standard library).
 *
 * An image is one file, mapped read-only and shared by every sandbox of the
 * process (and, after fork, by every worker: its pages stay clean).  Layout,
 * little-endian, written by tools/mkimage.py:
 *
 *   header   "CAPIMG01" u32 entry_count u32 reserved
 *   entries  entry_count x { u32 path_offset, u32 path_length,
 *                            u64 data_offset, u64 data_size,
 *                            u32 type (1 file, 2 directory), u32 subtree_end }
 *   strings and file data
 *
 * Entry 0 is the root (path "").  Entries are sorted by path compared
 * component by component ('/' sorts before every other byte), so a
 * directory's descendants follow it contiguously and end at subtree_end;
 * lookup is a binary search and a listing hops from child to child.
 * Every offset is checked when the image is opened, so a damaged image is
 * an error, never a wild read.
 */
#include "vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IMAGE_MAGIC "CAPIMG01"
#define HEADER_SIZE 16
#define ENTRY_SIZE 32

typedef struct entry {
    const char *path;
    uint32_t path_length;
    const unsigned char *data;
    uint64_t size;
    vfs_type type;
    uint32_t subtree_end;
} entry;

struct vfs_image {
    int references;
    void *map;
    size_t map_size;
    entry *entries;
    uint32_t count;
    uint64_t mtime_ns;
};

typedef struct image_file {
    vfs_file base;
    vfs_image *image;
    uint32_t index;
} image_file;

static uint32_t read32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t read64(const unsigned char *p) {
    return (uint64_t)read32(p) | (uint64_t)read32(p + 4) << 32;
}

/* Component-wise order: '/' before any other byte; a prefix sorts first. */
static int path_compare(const char *a, size_t a_length, const char *b, size_t b_length) {
    size_t n = a_length < b_length ? a_length : b_length;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i] == '/' ? 0 : (unsigned char)a[i];
        unsigned char y = (unsigned char)b[i] == '/' ? 0 : (unsigned char)b[i];
        if (x != y) return x < y ? -1 : 1;
    }
    return a_length < b_length ? -1 : a_length > b_length;
}

/* The table must describe one tree: each entry after the root is a direct
 * child (one plain component) of the innermost directory whose subtree
 * holds it, and its subtree ends within that directory's.  A listing takes
 * a child's name by stripping the parent's path, so an entry that is not
 * below its directory made that length underflow and the name copy read
 * past the mapping. */
static int check_tree(const vfs_image *image) {
    const entry *entries = image->entries;
    if (entries[0].subtree_end != image->count) return -EINVAL;
    uint32_t *stack = malloc(image->count * sizeof *stack); /* open directories */
    if (!stack) return -ENOMEM;
    uint32_t depth = 0;
    int rc = 0;
    stack[depth++] = 0;
    for (uint32_t i = 1; rc == 0 && i < image->count; i++) {
        while (entries[stack[depth - 1]].subtree_end <= i) depth--; /* the root never ends */
        const entry *parent = &entries[stack[depth - 1]], *e = &entries[i];
        size_t prefix = parent->path_length ? (size_t)parent->path_length + 1 : 0;
        const char *name = e->path + prefix;
        size_t name_length = e->path_length > prefix ? e->path_length - prefix : 0;
        if (e->subtree_end > parent->subtree_end || name_length == 0 ||
            (prefix && (memcmp(e->path, parent->path, prefix - 1) != 0 ||
                        e->path[prefix - 1] != '/')) ||
            memchr(name, '/', name_length) || (name_length == 1 && name[0] == '.') ||
            (name_length == 2 && name[0] == '.' && name[1] == '.'))
            rc = -EINVAL;
        else if (e->type == VFS_DIRECTORY)
            stack[depth++] = i;
    }
    free(stack);
    return rc;
}

static int parse(vfs_image *image) {
    const unsigned char *base = image->map;
    size_t size = image->map_size;
    if (size < HEADER_SIZE || memcmp(base, IMAGE_MAGIC, 8) != 0) return -EINVAL;
    uint32_t count = read32(base + 8);
    if (count == 0 || count > (size - HEADER_SIZE) / ENTRY_SIZE) return -EINVAL;
    image->entries = calloc(count, sizeof(entry));
    if (!image->entries) return -ENOMEM;
    image->count = count;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = base + HEADER_SIZE + (size_t)i * ENTRY_SIZE;
        uint32_t path_offset = read32(e), path_length = read32(e + 4);
        uint64_t data_offset = read64(e + 8), data_size = read64(e + 16);
        uint32_t type = read32(e + 24), subtree_end = read32(e + 28);
        if (path_offset > size || path_length > size - path_offset) return -EINVAL;
        if (data_offset > size || data_size > size - data_offset) return -EINVAL;
        if (type != VFS_FILE && type != VFS_DIRECTORY) return -EINVAL;
        if (subtree_end <= i || subtree_end > count) return -EINVAL;
        if (type == VFS_FILE && subtree_end != i + 1) return -EINVAL;
        entry *out = &image->entries[i];
        out->path = (const char *)base + path_offset;
        out->path_length = path_length;
        out->data = base + data_offset;
        out->size = data_size;
        out->type = (vfs_type)type;
        out->subtree_end = subtree_end;
        if (memchr(out->path, '\0', path_length)) return -EINVAL;
        if (i > 0 && path_compare(image->entries[i - 1].path, image->entries[i - 1].path_length,
                                  out->path, path_length) >= 0)
            return -EINVAL;
    }
    if (image->entries[0].path_length != 0 || image->entries[0].type != VFS_DIRECTORY)
        return -EINVAL;
    return check_tree(image);
}

static int map_image(int fd, size_t size, uint64_t mtime_ns, vfs_image **out) {
    vfs_image *image = calloc(1, sizeof *image);
    if (!image) return -ENOMEM;
    image->references = 1;
    image->map_size = size;
    image->mtime_ns = mtime_ns;
    image->map = mmap(NULL, image->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (image->map == MAP_FAILED) {
        free(image);
        return -ENOMEM;
    }
    int rc = parse(image);
    if (rc) {
        image->references = 1;
        vfs_image_release(image);
        return rc;
    }
    *out = image;
    return 0;
}

int vfs_image_open(const char *host_path, vfs_image **out) {
    int fd = open(host_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 || st.st_size <= 0
                 ? -EINVAL
                 : map_image(fd, (size_t)st.st_size,
                             (uint64_t)st.st_mtim.tv_sec * 1000000000u +
                                 (uint64_t)st.st_mtim.tv_nsec,
                             out);
    close(fd);
    return rc;
}

/* Used by locked-down workers: lseek and clock_gettime, never fstat
 * (glibc's fstat is newfstatat, a path call seccomp refuses). */
int vfs_image_open_fd(int fd, vfs_image **out) {
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0) return -EINVAL;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return map_image(fd, (size_t)size,
                     (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, out);
}

void vfs_image_identity(const vfs_image *image, uint64_t *size, uint64_t *mtime_ns,
                        const void **table, size_t *table_size) {
    *size = image->map_size;
    *mtime_ns = image->mtime_ns;
    *table = image->map;
    *table_size = HEADER_SIZE + (size_t)image->count * ENTRY_SIZE; /* checked by parse */
}

void vfs_image_retain(vfs_image *image) {
    image->references++;
}

void vfs_image_release(vfs_image *image) {
    if (!image || --image->references > 0) return;
    munmap(image->map, image->map_size);
    free(image->entries);
    free(image);
}

/* Binary search for the entry whose path is the first `length` bytes of
 * `path`; 1 if there is one. */
static int search(const vfs_image *image, const char *path, size_t length, uint32_t *index) {
    uint32_t low = 0, high = image->count;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        const entry *e = &image->entries[middle];
        int order = path_compare(e->path, e->path_length, path, length);
        if (order == 0) {
            *index = middle;
            return 1;
        }
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return 0;
}

static int find(const vfs_image *image, const char *path, uint32_t *index) {
    size_t length = strlen(path);
    if (search(image, path, length, index)) return 0;
    /* Distinguish "a/b" missing from "a" being a file (ENOTDIR): the
     * nearest ancestor that exists decides.  A loop over prefixes, not a
     * recursion with a path copy per level: a guest path can have ~2000
     * components, and that recursion overflowed the host stack (found by
     * tests/fuzz). */
    while (length > 0) {
        while (length > 0 && path[length - 1] != '/') length--;
        if (length == 0) break;
        length--; /* the "/" */
        uint32_t parent;
        if (search(image, path, length, &parent))
            return image->entries[parent].type == VFS_DIRECTORY ? -ENOENT : -ENOTDIR;
    }
    return -ENOENT;
}

static void fill_stat(const vfs_image *image, uint32_t index, vfs_metadata *st) {
    const entry *e = &image->entries[index];
    memset(st, 0, sizeof *st);
    st->type = e->type;
    st->size = e->type == VFS_FILE ? e->size : 0;
    st->inode = (uint64_t)index + 1;
    st->mtime_ns = image->mtime_ns;
    st->links = 1;
}

static int file_read(vfs_file *file, void *buffer, size_t size, uint64_t offset, size_t *done) {
    image_file *f = (image_file *)file;
    const entry *e = &f->image->entries[f->index];
    if (e->type != VFS_FILE) return -EISDIR;
    if (offset >= e->size) {
        *done = 0;
        return 0;
    }
    uint64_t available = e->size - offset;
    *done = size < available ? size : (size_t)available;
    memcpy(buffer, e->data + offset, *done);
    return 0;
}

static int file_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                      size_t *done) {
    (void)file, (void)buffer, (void)size, (void)offset, (void)done;
    return -EROFS;
}

static int file_stat(vfs_file *file, vfs_metadata *st) {
    image_file *f = (image_file *)file;
    fill_stat(f->image, f->index, st);
    return 0;
}

static int file_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EROFS;
}

/* The cookie is the entry index of the next child (0: the first child),
 * so a listing costs one step per child, not per descendant. */
static int file_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *out) {
    image_file *f = (image_file *)file;
    const entry *dir = &f->image->entries[f->index];
    if (dir->type != VFS_DIRECTORY) return -ENOTDIR;
    uint64_t child = f->index + 1;
    /* Cookies are ordinal positions; walk siblings to reach this one. */
    for (uint64_t i = 0; i < cookie && child < dir->subtree_end; i++)
        child = f->image->entries[child].subtree_end;
    if (child >= dir->subtree_end) return 0;
    const entry *e = &f->image->entries[child];
    const char *name = e->path + (dir->path_length ? dir->path_length + 1 : 0);
    size_t name_length = e->path_length - (size_t)(name - e->path);
    if (name_length > VFS_NAME_MAX) name_length = VFS_NAME_MAX;
    memcpy(out->name, name, name_length);
    out->name[name_length] = '\0';
    out->type = e->type;
    out->inode = child + 1;
    return 1;
}

static void file_close(vfs_file *file) {
    image_file *f = (image_file *)file;
    vfs_image_release(f->image);
    free(f);
}

static const vfs_file_ops image_file_ops = {
    file_read, file_write, file_stat, file_truncate, file_readdir, file_close,
};

static int image_stat(void *backend, const char *path, vfs_metadata *st) {
    uint32_t index;
    int rc = find(backend, path, &index);
    if (rc == 0) fill_stat(backend, index, st);
    return rc;
}

static int image_open(void *backend, const char *path, int flags, vfs_file **out) {
    vfs_image *image = backend;
    uint32_t index;
    int rc = find(image, path, &index);
    if (rc) return rc;
    if ((flags & VFS_O_CREATE) && (flags & VFS_O_EXCLUSIVE)) return -EEXIST;
    if (flags & (VFS_O_WRITE | VFS_O_TRUNCATE)) return -EROFS;
    if ((flags & VFS_O_DIRECTORY) && image->entries[index].type != VFS_DIRECTORY) return -ENOTDIR;
    image_file *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->base.ops = &image_file_ops;
    f->base.type = image->entries[index].type;
    f->base.refcount = 1;
    f->image = image;
    f->index = index;
    vfs_image_retain(image);
    *out = &f->base;
    return 0;
}

static int image_refuse(void *backend, const char *path) {
    (void)backend, (void)path;
    return -EROFS;
}

static int image_rename(void *backend, const char *from, const char *to) {
    (void)backend, (void)from, (void)to;
    return -EROFS;
}

static void image_destroy(void *backend) {
    vfs_image_release(backend);
}

static const vfs_backend_ops image_ops = {
    image_stat, image_open, image_refuse, image_refuse, image_refuse, image_rename, image_destroy,
    NULL, /* read-only */
};

int vfs_image_backend(vfs_image *image, const vfs_backend_ops **ops, void **backend) {
    vfs_image_retain(image);
    *ops = &image_ops;
    *backend = image;
    return 0;
}
