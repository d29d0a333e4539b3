/*
 * image_writer.c — writes read-only images (the format is in image.c).
 *
 * The host builds one image per installed environment (src/deps/), so the
 * writer lives next to the reader and shares its notion of order: entries
 * sorted component by component, each directory followed by its subtree.
 * tools/mkimage.py writes the same format at build time.
 *
 * Files may be added in any order; parents are implied.  Nothing is checked
 * late that could have been refused early, except duplicates and file/
 * directory clashes, which only sorting reveals.
 */
#include "vfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER_SIZE 16
#define ENTRY_SIZE 32
#define IMAGE_MAX_ENTRIES 1000000u

typedef struct builder_entry {
    char *path;
    size_t path_length;
    unsigned char *data; /* NULL for a directory */
    size_t size;
    int is_directory;
} builder_entry;

struct vfs_image_builder {
    builder_entry *entries;
    size_t count, capacity;
};

vfs_image_builder *vfs_image_builder_new(void) {
    return calloc(1, sizeof(vfs_image_builder));
}

void vfs_image_builder_free(vfs_image_builder *builder) {
    if (!builder) return;
    for (size_t i = 0; i < builder->count; i++) {
        free(builder->entries[i].path);
        free(builder->entries[i].data);
    }
    free(builder->entries);
    free(builder);
}

static int append(vfs_image_builder *builder, const char *path, size_t path_length,
                  const void *data, size_t size, int is_directory) {
    if (builder->count == builder->capacity) {
        size_t capacity = builder->capacity ? builder->capacity * 2 : 64;
        if (capacity > IMAGE_MAX_ENTRIES) return -EFBIG;
        builder_entry *grown = realloc(builder->entries, capacity * sizeof *grown);
        if (!grown) return -ENOMEM;
        builder->entries = grown;
        builder->capacity = capacity;
    }
    builder_entry *e = &builder->entries[builder->count];
    *e = (builder_entry){.path = strndup(path, path_length), .path_length = path_length,
                         .size = size, .is_directory = is_directory};
    if (!e->path) return -ENOMEM;
    if (!is_directory) {
        e->data = malloc(size ? size : 1);
        if (!e->data) {
            free(e->path);
            return -ENOMEM;
        }
        if (size) memcpy(e->data, data, size);
    }
    builder->count++;
    return 0;
}

int vfs_image_builder_add(vfs_image_builder *builder, const char *path, const void *data,
                          size_t size) {
    size_t length = strlen(path);
    if (length == 0 || length >= VFS_PATH_MAX || (size && !data)) return -EINVAL;
    /* Every component plain: the reader refuses the image otherwise. */
    for (const char *start = path;;) {
        const char *slash = strchr(start, '/');
        size_t n = slash ? (size_t)(slash - start) : strlen(start);
        if (n == 0 || n > VFS_NAME_MAX || (n == 1 && start[0] == '.') ||
            (n == 2 && start[0] == '.' && start[1] == '.'))
            return -EINVAL;
        if (!slash) break;
        start = slash + 1;
    }
    for (const char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
        int rc = append(builder, path, (size_t)(slash - path), NULL, 0, 1);
        if (rc) return rc;
    }
    return append(builder, path, length, data, size, 0);
}

/* The reader's order: '/' before every other byte, a prefix first. */
static int entry_order(const void *a, const void *b) {
    const builder_entry *x = a, *y = b;
    size_t n = x->path_length < y->path_length ? x->path_length : y->path_length;
    for (size_t i = 0; i < n; i++) {
        unsigned char p = x->path[i] == '/' ? 0 : (unsigned char)x->path[i];
        unsigned char q = y->path[i] == '/' ? 0 : (unsigned char)y->path[i];
        if (p != q) return p < q ? -1 : 1;
    }
    if (x->path_length != y->path_length) return x->path_length < y->path_length ? -1 : 1;
    return y->is_directory - x->is_directory; /* a clash sorts the directory first */
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static int write_all(int fd, const void *data, size_t size) {
    const unsigned char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

int vfs_image_builder_write(vfs_image_builder *builder, int fd) {
    if (builder->count)
        qsort(builder->entries, builder->count, sizeof *builder->entries, entry_order);
    /* Drop the repeated implied directories; any other repeat is a clash. */
    size_t kept = 0;
    for (size_t i = 0; i < builder->count; i++) {
        builder_entry *e = &builder->entries[i];
        if (kept && builder->entries[kept - 1].path_length == e->path_length &&
            memcmp(builder->entries[kept - 1].path, e->path, e->path_length) == 0) {
            if (!e->is_directory || !builder->entries[kept - 1].is_directory) return -EEXIST;
            free(e->path);
            continue;
        }
        builder->entries[kept++] = *e;
    }
    builder->count = kept;

    uint32_t count = (uint32_t)kept + 1; /* the root first */
    uint32_t *subtree_end = malloc(count * sizeof *subtree_end);
    uint32_t *stack = malloc(count * sizeof *stack);
    if (!subtree_end || !stack) {
        free(subtree_end);
        free(stack);
        return -ENOMEM;
    }
    /* Entry i+1 is builder entry i; a directory's subtree ends at the first
     * entry that is not below it. */
    uint32_t depth = 0;
    stack[depth++] = 0;
    for (uint32_t i = 1; i < count; i++) {
        const builder_entry *e = &builder->entries[i - 1];
        while (depth > 1) {
            const builder_entry *top = &builder->entries[stack[depth - 1] - 1];
            if (e->path_length > top->path_length && e->path[top->path_length] == '/' &&
                memcmp(e->path, top->path, top->path_length) == 0)
                break;
            subtree_end[stack[--depth]] = i;
        }
        subtree_end[i] = i + 1;
        if (e->is_directory) stack[depth++] = i;
    }
    while (depth) subtree_end[stack[--depth]] = count;
    free(stack);

    uint64_t strings_size = 0;
    for (size_t i = 0; i < kept; i++) strings_size += builder->entries[i].path_length;
    uint64_t table_end = HEADER_SIZE + (uint64_t)ENTRY_SIZE * count;
    uint64_t data_start = table_end + strings_size;
    size_t head_size = (size_t)data_start;
    unsigned char *head = calloc(1, head_size);
    if (!head) {
        free(subtree_end);
        return -ENOMEM;
    }
    memcpy(head, "CAPIMG01", 8);
    put32(head + 8, count);
    uint64_t string_at = table_end, data_at = data_start;
    for (uint32_t i = 0; i < count; i++) {
        unsigned char *record = head + HEADER_SIZE + (size_t)i * ENTRY_SIZE;
        const builder_entry *e = i ? &builder->entries[i - 1] : NULL;
        size_t length = e ? e->path_length : 0;
        put32(record, (uint32_t)string_at);
        put32(record + 4, (uint32_t)length);
        put64(record + 8, e && !e->is_directory ? data_at : data_start);
        put64(record + 16, e && !e->is_directory ? e->size : 0);
        put32(record + 24, e && !e->is_directory ? VFS_FILE : VFS_DIRECTORY);
        put32(record + 28, subtree_end[i]);
        if (length) memcpy(head + string_at, e->path, length);
        string_at += length;
        if (e && !e->is_directory) data_at += e->size;
    }
    free(subtree_end);
    int rc = data_start > UINT32_MAX ? -EFBIG : write_all(fd, head, head_size);
    free(head);
    for (size_t i = 0; rc == 0 && i < kept; i++)
        if (!builder->entries[i].is_directory && builder->entries[i].size)
            rc = write_all(fd, builder->entries[i].data, builder->entries[i].size);
    return rc;
}
