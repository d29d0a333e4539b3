/*
 * start_image.c — the state capsule_init leaves, saved once and mapped by
 * later zygotes (start_image.h).
 *
 * File layout (little-endian), START_IMAGE_MEMORY_OFFSET-aligned so the
 * memory can be mapped where it lies:
 *
 *   0       header: magic "capsule-start-01", key[32], build id[64] (hex),
 *           u32 wasm pages, u32 __stack_pointer, u64 files size,
 *           files SHA-256[32]; zero up to
 *   65536   the linear memory, pages x 65536 bytes
 *   ...     the files stream (durable_files_save: scratch memfs and
 *           descriptors)
 *   ...     the SHA-256 of each DURABLE_PAGE of the memory: a durable
 *           sandbox's base (durable.h), so its zygote need not hash 20 MB
 */
#include "start_image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../libraries/digest.h"
#include "../runtime/runtime.h"
#include "../store/store.h"
#include "../vfs/vfs.h"
#include "buffer.h"
#include "durable.h"
#include "page_file.h"

#define START_IMAGE_MAGIC "capsule-start-02"
#define START_IMAGE_MEMORY_OFFSET 65536u
#define WASM_PAGE 65536u
#define HEADER_SIZE (16 + START_IMAGE_KEY + 64 + 4 + 4 + 8 + 32 + 32)

typedef struct header {
    uint8_t key[START_IMAGE_KEY];
    char build_id[64];
    uint32_t pages, stack_pointer;
    uint64_t files_size;
    uint8_t files_hash[32];
    uint8_t page_hashes_hash[32]; /* of the page-hash table, which follows the files */
} header;

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void encode(const header *h, uint8_t out[HEADER_SIZE]) {
    uint8_t *p = out;
    memcpy(p, START_IMAGE_MAGIC, 16), p += 16;
    memcpy(p, h->key, START_IMAGE_KEY), p += START_IMAGE_KEY;
    memcpy(p, h->build_id, 64), p += 64;
    put32(p, h->pages), p += 4;
    put32(p, h->stack_pointer), p += 4;
    put64(p, h->files_size), p += 8;
    memcpy(p, h->files_hash, 32), p += 32;
    memcpy(p, h->page_hashes_hash, 32);
}

static int decode(const uint8_t in[HEADER_SIZE], header *h) {
    const uint8_t *p = in;
    if (memcmp(p, START_IMAGE_MAGIC, 16) != 0) return -1;
    p += 16;
    memcpy(h->key, p, START_IMAGE_KEY), p += START_IMAGE_KEY;
    memcpy(h->build_id, p, 64), p += 64;
    h->pages = get32(p), p += 4;
    h->stack_pointer = get32(p), p += 4;
    h->files_size = get64(p), p += 8;
    memcpy(h->files_hash, p, 32), p += 32;
    memcpy(h->page_hashes_hash, p, 32);
    return 0;
}

/* Each part is hashed with its length first, so no two different lists of
 * parts hash the same. */
static void add(digest_context *context, const void *data, size_t size) {
    uint8_t length[8];
    put64(length, size);
    digest_add(context, length, sizeof length);
    digest_add(context, data, size);
}

static void add_string(digest_context *context, const char *text) {
    add(context, text ? text : "", text ? strlen(text) + 1 : 0);
}

void start_image_key(const zygote_world *world, char *const *argv,
                     uint8_t key[START_IMAGE_KEY]) {
    digest_context state, *context = &state;
    digest_start(context);
    add_string(context, START_IMAGE_MAGIC);
    add_string(context, runtime_build_id());
    for (char *const *arg = argv; *arg; arg++) add_string(context, *arg);
    add_string(context, "env");
    for (char *const *entry = world->env; entry && *entry; entry++) add_string(context, *entry);
    add_string(context, "images");
    for (int i = 0; i < world->image_count; i++) {
        uint64_t size, mtime_ns;
        const void *table;
        size_t table_size;
        vfs_image_identity(world->images[i], &size, &mtime_ns, &table, &table_size);
        add_string(context, world->image_paths[i]);
        add(context, &size, sizeof size);
        add(context, &mtime_ns, sizeof mtime_ns);
        add(context, table, table_size);
    }
    /* The other mount points: the runner is told the read-only ones (in
     * argv), and the directories made for them exist in the scratch
     * files. */
    add_string(context, "mounts");
    add_string(context, world->output_directory);
    add(context, &world->doc_count, sizeof world->doc_count);
    add(context, &world->server_file_count, sizeof world->server_file_count);
    for (int i = 0; i < world->resource_mount_count; i++) {
        add_string(context, world->resource_mounts[i].path);
        add(context, &world->resource_mounts[i].writable, sizeof world->resource_mounts[i].writable);
    }
    for (int i = 0; i < world->host_mount_count; i++) {
        add_string(context, world->host_mounts[i]);
        add(context, &world->host_writable[i], sizeof world->host_writable[i]);
    }
    digest_finish(context, key);
}

static void image_path(char *path, size_t size, const char *directory,
                       const uint8_t key[START_IMAGE_KEY], const char *suffix) {
    char hex[2 * START_IMAGE_KEY + 1];
    for (int i = 0; i < START_IMAGE_KEY; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(path, size, "%s/start-%s%s", directory, hex, suffix);
}

static int read_at(int fd, void *data, size_t size, uint64_t offset) {
    for (size_t done = 0; done < size;) {
        ssize_t n = pread(fd, (uint8_t *)data + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int write_at(int fd, const void *data, size_t size, uint64_t offset) {
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, (const uint8_t *)data + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static uint64_t page_hashes_size(uint32_t pages) {
    return (uint64_t)pages * DURABLE_PER_WASM_PAGE * DURABLE_HASH;
}

/* Reads and checks everything that can be checked before the instance is
 * touched: the header against this build and key, the file's size against
 * the header, the files stream and the page hashes against their hashes.
 * *files and *page_hashes are malloc'd.  0, or -1 for a file that is not a
 * usable image of `key`. */
static int check_image(int fd, const uint8_t key[START_IMAGE_KEY], header *h, uint8_t **files,
                       uint8_t **page_hashes) {
    struct stat st;
    uint8_t raw[HEADER_SIZE];
    if (fstat(fd, &st) != 0 || time(NULL) - st.st_mtime > START_IMAGE_MAX_AGE ||
        read_at(fd, raw, sizeof raw, 0) != 0 || decode(raw, h) != 0 ||
        memcmp(h->key, key, START_IMAGE_KEY) != 0 ||
        memcmp(h->build_id, runtime_build_id(), 64) != 0 ||
        h->pages < runtime_memory_pages() || h->pages > 65536u ||
        h->files_size > DURABLE_MAX_VFS ||
        (uint64_t)st.st_size != START_IMAGE_MEMORY_OFFSET + (uint64_t)h->pages * WASM_PAGE +
                                    h->files_size + page_hashes_size(h->pages))
        return -1;
    uint64_t files_at = START_IMAGE_MEMORY_OFFSET + (uint64_t)h->pages * WASM_PAGE;
    *files = malloc(h->files_size ? h->files_size : 1);
    *page_hashes = malloc(page_hashes_size(h->pages));
    uint8_t hash[STORE_HASH_SIZE], table_hash[STORE_HASH_SIZE];
    if (!*files || !*page_hashes || read_at(fd, *files, h->files_size, files_at) != 0 ||
        read_at(fd, *page_hashes, page_hashes_size(h->pages), files_at + h->files_size) != 0 ||
        (store_hash(*files, h->files_size, hash), memcmp(hash, h->files_hash, 32) != 0) ||
        (store_hash(*page_hashes, page_hashes_size(h->pages), table_hash),
         memcmp(table_hash, h->page_hashes_hash, 32) != 0)) {
        free(*files);
        free(*page_hashes);
        *files = *page_hashes = NULL;
        return -1;
    }
    return 0;
}

int start_image_load(const char *directory, const uint8_t key[START_IMAGE_KEY], void *scratch,
                     wasi *w, start_image_base *base) {
    char path[4096];
    image_path(path, sizeof path, directory, key, ".img");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    header h;
    uint8_t *files = NULL, *page_hashes = NULL;
    if (check_image(fd, key, &h, &files, &page_hashes) != 0) {
        close(fd);
        return 0;
    }
    /* From here on the instance and the scratch files change: a failure
     * (out of memory) leaves them half-made. */
    int rc = durable_files_load(files, h.files_size, scratch, w);
    free(files);
    if (rc == 0) rc = runtime_map_memory(fd, START_IMAGE_MEMORY_OFFSET, h.pages);
    if (rc == 0 && base) {
        /* The base a durable zygote keeps: the same file pages, mapped
         * again (a worker's writes to its reference copy are private). */
        size_t size = (size_t)h.pages * WASM_PAGE;
        void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
                            START_IMAGE_MEMORY_OFFSET);
        if (memory == MAP_FAILED) {
            rc = -errno;
        } else {
            base->memory = memory;
            base->pages = h.pages * DURABLE_PER_WASM_PAGE;
            base->hashes = page_hashes;
            page_hashes = NULL;
        }
    }
    free(page_hashes);
    close(fd); /* a mapping outlives its descriptor */
    if (rc) return rc < 0 ? rc : -EIO;
    runtime_set_stack_pointer(h.stack_pointer);
    return 1;
}

/* Keeps the directory bounded: every world (another environment, another
 * build) makes a new ≈ 20 MB image, so images older than
 * START_IMAGE_MAX_AGE go, then the oldest beyond START_IMAGE_MAX_COUNT,
 * and temporary files a crashed writer left an hour ago.  Another process
 * may be mapping a file removed here: its mapping outlives the name. */
static void prune(const char *directory) {
    DIR *listing = opendir(directory);
    if (!listing) return;
    struct kept {
        char name[96];
        time_t mtime;
    } kept[START_IMAGE_MAX_COUNT + 1];
    int count = 0;
    time_t now = time(NULL);
    struct dirent *entry;
    while ((entry = readdir(listing))) {
        const char *name = entry->d_name;
        size_t length = strlen(name);
        int image = length == 6 + 2 * START_IMAGE_KEY + 4 && strncmp(name, "start-", 6) == 0 &&
                    strcmp(name + length - 4, ".img") == 0;
        int temporary = strncmp(name, "start-", 6) == 0 && length > 4 &&
                        strcmp(name + length - 4, ".tmp") == 0;
        struct stat st;
        if ((!image && !temporary) ||
            fstatat(dirfd(listing), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        time_t age = now - st.st_mtime;
        if ((temporary && age > 3600) || (image && age > START_IMAGE_MAX_AGE)) {
            unlinkat(dirfd(listing), name, 0);
            continue;
        }
        if (!image) continue;
        /* Keep the newest START_IMAGE_MAX_COUNT: insert by mtime, newest
         * first, and drop what falls off the end. */
        int at = count;
        while (at > 0 && kept[at - 1].mtime < st.st_mtime) at--;
        if (at == START_IMAGE_MAX_COUNT) {
            unlinkat(dirfd(listing), name, 0);
            continue;
        }
        if (count == START_IMAGE_MAX_COUNT) {
            unlinkat(dirfd(listing), kept[count - 1].name, 0);
            count--;
        }
        memmove(&kept[at + 1], &kept[at], (size_t)(count - at) * sizeof *kept);
        snprintf(kept[at].name, sizeof kept[at].name, "%s", name);
        kept[at].mtime = st.st_mtime;
        count++;
    }
    closedir(listing);
}

void start_image_save(const char *directory, const uint8_t key[START_IMAGE_KEY], void *scratch,
                      wasi *w, uint32_t first_fd, uint8_t **hashes) {
    if (hashes) *hashes = NULL;
    buffer files = {0};
    if (durable_files_save(&files, scratch, w, first_fd) != 0) {
        buffer_free(&files);
        return;
    }
    header h = {.pages = runtime_memory_pages(), .stack_pointer = runtime_stack_pointer(),
                .files_size = files.size};
    memcpy(h.key, key, START_IMAGE_KEY);
    memcpy(h.build_id, runtime_build_id(), 64);
    store_hash(files.data, files.size, h.files_hash);
    uint64_t memory_size = (uint64_t)h.pages * WASM_PAGE;
    uint64_t table_size = page_hashes_size(h.pages);
    uint8_t *page_hashes = malloc(table_size ? table_size : 1);
    if (!page_hashes) {
        buffer_free(&files);
        return;
    }
    const uint8_t *memory = runtime_memory_data();
    for (uint64_t page = 0; page < table_size / DURABLE_HASH; page++)
        store_hash(memory + page * DURABLE_PAGE, DURABLE_PAGE, page_hashes + page * DURABLE_HASH);
    store_hash(page_hashes, table_size, h.page_hashes_hash);
    if (hashes) { /* a copy, whatever happens to the file */
        *hashes = malloc(table_size ? table_size : 1);
        if (*hashes) memcpy(*hashes, page_hashes, table_size);
    }
    uint8_t raw[HEADER_SIZE];
    encode(&h, raw);

    /* Private to the user: the images hold a hash secret.  A directory
     * that cannot be made shows at the open below. */
    store_make_directory(directory);
    char path[4096], temporary[4096];
    image_path(path, sizeof path, directory, key, ".img");
    char suffix[48];
    snprintf(suffix, sizeof suffix, ".%ld.tmp", (long)getpid());
    image_path(temporary, sizeof temporary, directory, key, suffix);
    int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        buffer_free(&files);
        free(page_hashes);
        return;
    }
    /* Header written last and the file renamed only when whole and on
     * disk: a reader never sees a part of one. */
    uint64_t files_at = START_IMAGE_MEMORY_OFFSET + memory_size;
    int ok = ftruncate(fd, (off_t)(files_at + files.size + table_size)) == 0 &&
             write_at(fd, memory, memory_size, START_IMAGE_MEMORY_OFFSET) == 0 &&
             write_at(fd, files.data, files.size, files_at) == 0 &&
             write_at(fd, page_hashes, table_size, files_at + files.size) == 0 &&
             write_at(fd, raw, sizeof raw, 0) == 0 && fdatasync(fd) == 0;
    buffer_free(&files);
    free(page_hashes);
    if (close(fd) != 0) ok = 0;
    if (!ok || rename(temporary, path) != 0) unlink(temporary);
    prune(directory);
}
