/*
 * durable_worker.c — a worker's side of durable sessions: send the state
 * that differs from the zygote's, or put a saved one back (durable.h).
 *
 * Runs in a locked-down worker, between two calls (no guest frame exists),
 * so the memory it reads and writes is the guest's whole state.  A restore
 * happens only in a fresh worker, before its first request.
 */
#include "durable.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../runtime/runtime.h"
#include "../wasi/wasi.h"
#include "../vfs/vfs.h"
#include "buffer.h"
#include "frame.h"
#include "hot_pages.h"
#include "page_file.h"

static int append(void *context, const void *data, size_t size) {
    return buffer_append(context, data, size);
}

/* The reference (durable.h): the zygote's base, shared with it
 * copy-on-write (a page the worker updates becomes its own), and past the
 * base's pages, when the memory grew beyond it, an extension of the
 * worker's own.  Growing copies only the extension: a session holding a
 * 20 MB heap copied the whole 20 MB base at each restore. */
static uint8_t *base;
static uint32_t base_pages;
static uint8_t *extension;
static uint32_t reference_pages; /* base_pages, plus the extension's */
/* After a restore from a page file (page_file.h), the pages it gave are
 * the reference there too: the file mapped a second time, copy-on-write,
 * so a restore copies nothing. */
static uint8_t *file_reference;
static uint8_t *from_file; /* one flag per page of file_reference */
static uint32_t file_pages;
/* The worker's pagemap (hot_pages.h), or -1: a page the memory still maps
 * from the page file, unwritten, equals its reference without comparing
 * them (both are the file's bytes). */
static int pagemap_fd = -1;

void durable_worker_set_pagemap(int fd) {
    pagemap_fd = fd;
}

/* unchanged[page] = 1 for the pages mapped from the page file whose four
 * 4 KiB pages are all still the file's (never written since the restore);
 * NULL when there is nothing to tell (no file, no pagemap, out of memory). */
static uint8_t *unchanged_file_pages(const uint8_t *memory, uint32_t pages) {
    uint32_t count = pages < file_pages ? pages : file_pages;
    if (!count || pagemap_fd < 0) return NULL;
    const uint32_t per = DURABLE_PAGE / HOT_PAGE_SIZE;
    uint8_t *small = malloc((size_t)count * per), *unchanged = calloc(count, 1);
    if (small && unchanged &&
        hot_pages_still_file(pagemap_fd, memory, (size_t)count * DURABLE_PAGE, small) == 0) {
        for (uint32_t page = 0; page < count; page++) {
            int still = from_file[page];
            for (uint32_t i = 0; i < per && still; i++) still = small[(size_t)page * per + i];
            unchanged[page] = (uint8_t)still;
        }
    } else {
        free(unchanged);
        unchanged = NULL;
    }
    free(small);
    return unchanged;
}

void durable_worker_set_base(uint8_t *memory, uint32_t pages) {
    base = memory;
    base_pages = reference_pages = pages;
}

static uint8_t *reference_page(uint32_t page) {
    if (page < file_pages && from_file[page]) return file_reference + (size_t)page * DURABLE_PAGE;
    return page < base_pages ? base + (size_t)page * DURABLE_PAGE
                             : extension + (size_t)(page - base_pages) * DURABLE_PAGE;
}

/* The extension is an anonymous mapping, grown by mremap: its new pages
 * read as zero without being touched (a realloc'd one had to be cleared,
 * which for a 20 MB heap was most of a restore from a page file). */
static int reference_reserve(uint32_t pages) {
    if (pages <= reference_pages) return 0;
    size_t old_size = (size_t)(reference_pages - base_pages) * DURABLE_PAGE;
    size_t size = (size_t)(pages - base_pages) * DURABLE_PAGE;
    void *grown = extension ? mremap(extension, old_size, size, MREMAP_MAYMOVE)
                            : mmap(NULL, size, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (grown == MAP_FAILED) return -ENOMEM;
    /* Pages the reference never had: the host knows no hash for them, so
     * they are always sent (page >= the old count); their content here
     * is set when they are. */
    extension = grown;
    reference_pages = pages;
    return 0;
}

/* Pages below the stack pointer hold only dead frames between two calls
 * (the shadow stack grows down from it, and a call returns to it): they are
 * never sent, and a snapshot names them as zero pages (durable.h). */
static uint32_t dead_pages(void) {
    return runtime_stack_pointer() / DURABLE_PAGE;
}

static int page_changed(const uint8_t *memory, uint32_t page, uint32_t known_pages,
                        const uint8_t *unchanged) {
    size_t offset = (size_t)page * DURABLE_PAGE;
    if (page < dead_pages()) return 0;
    if (page >= known_pages) return 1;
    if (unchanged && page < file_pages && unchanged[page]) return 0;
    return memcmp(memory + offset, reference_page(page), DURABLE_PAGE) != 0;
}

static int put_u64(buffer *out, uint64_t value) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(value >> (8 * i));
    return buffer_append(out, bytes, sizeof bytes);
}

static uint64_t get_u64(const uint8_t *bytes) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value |= (uint64_t)bytes[i] << (8 * i);
    return value;
}

/* One descriptor record: u64 fd, u64 offset, u64 flags and rights, u64
 * path length, path. */
static int save_descriptor(void *context, const wasi_descriptor_state *state) {
    buffer *out = context;
    size_t length = strlen(state->path);
    uint64_t bits = (uint64_t)state->flags | (uint64_t)!!state->readable << 16 |
                    (uint64_t)!!state->writable << 17 | (uint64_t)!!state->directory << 18;
    int rc = put_u64(out, state->fd);
    if (rc == 0) rc = put_u64(out, state->offset);
    if (rc == 0) rc = put_u64(out, bits);
    if (rc == 0) rc = put_u64(out, length);
    if (rc == 0) rc = buffer_append(out, state->path, length);
    return rc;
}

int durable_files_save(buffer *files, void *scratch, wasi *w, uint32_t first_fd) {
    int rc = put_u64(files, 0);
    size_t start = files->size;
    if (rc == 0) rc = vfs_memfs_save(scratch, append, files);
    if (rc == 0) {
        uint64_t length = files->size - start;
        for (int i = 0; i < 8; i++) files->data[start - 8 + i] = (char)(length >> (8 * i));
        rc = wasi_descriptors(w, first_fd, save_descriptor, files);
    }
    return rc;
}

int durable_files_load(const uint8_t *data, size_t size, void *scratch, wasi *w) {
    if (size < 8) return -EINVAL;
    uint64_t length = get_u64(data);
    if (length > size - 8) return -EINVAL;
    int rc = vfs_memfs_load(scratch, data + 8, (size_t)length);
    for (size_t at = 8 + (size_t)length; rc == 0 && at < size;) {
        if (size - at < 32) return -EINVAL;
        uint64_t fd = get_u64(data + at), offset = get_u64(data + at + 8);
        uint64_t bits = get_u64(data + at + 16), path_length = get_u64(data + at + 24);
        at += 32;
        if (path_length == 0 || path_length >= 4096 || path_length > size - at || fd > UINT32_MAX)
            return -EINVAL;
        char path[4096];
        memcpy(path, data + at, (size_t)path_length);
        path[path_length] = '\0';
        at += (size_t)path_length;
        wasi_descriptor_state state = {(uint32_t)fd, path, offset, (uint16_t)(bits & 0xffff),
                                       (int)(bits >> 16 & 1), (int)(bits >> 17 & 1),
                                       (int)(bits >> 18 & 1)};
        rc = wasi_descriptor_restore(w, &state);
    }
    return rc;
}

int durable_worker_snapshot(int fd, const uint8_t *memory, uint32_t pages, void *scratch,
                            wasi *w, uint32_t first_fd, const char (*environment_keys)[65],
                            int environment_count, int full) {
    buffer files = {0};
    if (durable_files_save(&files, scratch, w, first_fd) != 0) {
        buffer_free(&files);
        return frame_write(fd, 'K', "{\"error\":\"cannot save the scratch files\"}", 41);
    }
    uint32_t known_pages = reference_pages; /* pages past these are new to the host */
    if (reference_reserve(pages) != 0) full = 1; /* no room to remember: send it all */
    /* One comparison pass: the pages found changed are then sent from
     * this list. */
    uint32_t dead = dead_pages(), changed = 0;
    uint32_t *changed_pages = full ? NULL : malloc((size_t)pages * sizeof *changed_pages);
    if (!changed_pages) full = 1;
    uint8_t *unchanged = full ? NULL : unchanged_file_pages(memory, pages);
    if (full)
        changed = pages > dead ? pages - dead : 0;
    else
        for (uint32_t page = dead; page < pages; page++)
            if (page_changed(memory, page, known_pages, unchanged))
                changed_pages[changed++] = page;
    free(unchanged);
    char header[256 + 16 * 70];
    int length = snprintf(header, sizeof header,
                          "{\"pages\":%u,\"stack_pointer\":%u,\"changed\":%u,\"vfs_bytes\":%zu,"
                          "\"monotonic_us\":%llu,\"environments\":[",
                          pages, runtime_stack_pointer(), changed, files.size,
                          (unsigned long long)(wasi_monotonic_now(w) / 1000));
    for (int i = 0; i < environment_count && i < 16; i++)
        length += snprintf(header + length, sizeof header - (size_t)length, "%s\"%.64s\"",
                           i ? "," : "", environment_keys[i]);
    length += snprintf(header + length, sizeof header - (size_t)length, "]}");
    int rc = frame_write(fd, 'K', header, (size_t)length);
    static uint8_t frame[4 + DURABLE_PAGE];
    for (uint32_t i = 0; rc == 0 && i < changed; i++) {
        uint32_t page = full ? dead + i : changed_pages[i];
        const uint8_t *bytes = memory + (size_t)page * DURABLE_PAGE;
        for (int i = 0; i < 4; i++) frame[i] = (uint8_t)(page >> (8 * i));
        memcpy(frame + 4, bytes, DURABLE_PAGE);
        rc = frame_write(fd, 'k', frame, sizeof frame);
        /* The host keeps this page's hash from now on. */
        if (rc == 0 && page < reference_pages) memcpy(reference_page(page), bytes, DURABLE_PAGE);
    }
    free(changed_pages);
    for (size_t offset = 0; rc == 0 && offset < files.size; offset += DURABLE_VFS_CHUNK) {
        size_t n = files.size - offset < DURABLE_VFS_CHUNK ? files.size - offset : DURABLE_VFS_CHUNK;
        rc = frame_write(fd, 'v', files.data + offset, n);
    }
    buffer_free(&files);
    return rc;
}

static uint32_t field(const cJSON *object, const char *name, double most) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > most) return UINT32_MAX;
    return (uint32_t)item->valuedouble;
}

static int refuse(int fd, const char *reason) {
    frame_write(fd, 'L', reason, strlen(reason));
    return -1;
}

/* Maps the runs of pages that the 'm' frame `runs` names (u32 first page,
 * u32 count, ascending, within `pages`) from the page file `file`, into
 * the memory and as their reference.  0, or the reason it cannot. */
static const char *map_page_file(int file, const uint8_t *runs, size_t count, uint32_t pages) {
    if (pages == 0) return "malformed page runs";
    file_reference = mmap(NULL, (size_t)pages * DURABLE_PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE, file, PAGE_FILE_HEADER);
    from_file = calloc(pages, 1);
    if (file_reference == MAP_FAILED || !from_file) {
        file_reference = NULL;
        return "cannot map the page file";
    }
    file_pages = pages;
    uint64_t next = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t first = 0, length = 0;
        for (int b = 0; b < 4; b++) {
            first |= (uint32_t)runs[8 * i + b] << (8 * b);
            length |= (uint32_t)runs[8 * i + 4 + b] << (8 * b);
        }
        if (first < next || length == 0 || length > pages - first) return "malformed page runs";
        next = (uint64_t)first + length;
        if (runtime_map_range(file, PAGE_FILE_HEADER + (uint64_t)first * DURABLE_PAGE,
                              (uint64_t)first * DURABLE_PAGE,
                              (uint64_t)length * DURABLE_PAGE) != 0)
            return "cannot map the page file";
        memset(from_file + first, 1, length);
    }
    return NULL;
}

int durable_worker_restore(int fd, const char *payload, size_t size, void *scratch, wasi *w,
                           const char *(*mount_environment)(int fd, const char *key)) {
    cJSON *header = cJSON_ParseWithLength(payload, size);
    uint32_t pages = field(header, "pages", DURABLE_MAX_PAGES);
    if (pages != UINT32_MAX && pages % DURABLE_PER_WASM_PAGE) pages = UINT32_MAX;
    uint32_t stack_pointer = field(header, "stack_pointer", UINT32_MAX - 1.0);
    uint32_t environments = field(header, "environments", 16);
    uint32_t mapped = field(header, "mapped", DURABLE_MAX_PAGES / 2 + 1);
    const cJSON *monotonic = cJSON_GetObjectItemCaseSensitive(header, "monotonic_us");
    /* Microseconds, rounded up: the clock continues at or after it. */
    uint64_t monotonic_ns = cJSON_IsNumber(monotonic) && monotonic->valuedouble > 0 &&
                                    monotonic->valuedouble < DURABLE_MONOTONIC_MAX_US
                                ? ((uint64_t)monotonic->valuedouble + 1) * 1000
                                : 0;
    const cJSON *vfs_item = cJSON_GetObjectItemCaseSensitive(header, "vfs_bytes");
    double vfs_bytes = cJSON_IsNumber(vfs_item) ? vfs_item->valuedouble : -1;
    cJSON_Delete(header);
    if (pages == UINT32_MAX || stack_pointer == UINT32_MAX ||
        environments == UINT32_MAX || mapped == UINT32_MAX ||
        vfs_bytes < 0 || vfs_bytes > (double)DURABLE_MAX_VFS)
        return refuse(fd, "malformed restore header");
    /* The package images first, in their order: a missing one ends the
     * list (the later ones' places depend on it). */
    int mounting = 1;
    for (uint32_t i = 0; i < environments; i++) {
        char type, *key;
        size_t key_size;
        int image = -1;
        if (frame_read(fd, &type, &key, &key_size, 64, &image) != 0) return -1;
        if (type != 'e') {
            free(key);
            if (image >= 0) close(image);
            return refuse(fd, "malformed restore environment");
        }
        if (image < 0) mounting = 0;
        if (mounting && mount_environment(image, key) != NULL) mounting = 0;
        if (image >= 0) close(image);
        free(key);
    }
    /* Then the page file holding every page the worker lacks (page_file.h). */
    int file = -1;
    char *runs = NULL;
    size_t runs_size = 0;
    if (mapped) {
        char type;
        if (frame_read(fd, &type, &runs, &runs_size, (size_t)mapped * 8, &file) != 0) return -1;
        if (type != 'm' || runs_size != (size_t)mapped * 8 || file < 0) {
            free(runs);
            if (file >= 0) close(file);
            return refuse(fd, "malformed restore page file");
        }
    }
    if (runtime_resize_memory(pages / DURABLE_PER_WASM_PAGE) != 0) {
        free(runs);
        if (file >= 0) close(file);
        return refuse(fd, "cannot size the memory");
    }
    /* The host knows this memory by the snapshot's hashes from now on, so
     * the reference maps the file's pages too; the pages not mapped are
     * the base's, which a fresh worker's memory and reference both hold
     * already. */
    if (reference_reserve(pages) != 0) {
        free(runs);
        if (file >= 0) close(file);
        return refuse(fd, "out of memory for the reference");
    }
    if (mapped) {
        const char *failed = map_page_file(file, (const uint8_t *)runs, mapped, pages);
        free(runs);
        close(file); /* the mappings keep the file */
        if (failed) return refuse(fd, failed);
    }
    buffer files = {0};
    while (files.size < (size_t)vfs_bytes) {
        char type;
        char *chunk;
        size_t chunk_size;
        if (frame_read(fd, &type, &chunk, &chunk_size, DURABLE_VFS_CHUNK, NULL) != 0) {
            buffer_free(&files);
            return -1;
        }
        int rc = type == 'v' && files.size + chunk_size <= (size_t)vfs_bytes
                     ? buffer_append(&files, chunk, chunk_size)
                     : -EINVAL;
        free(chunk);
        if (rc) {
            buffer_free(&files);
            return refuse(fd, "malformed restore files");
        }
    }
    int rc = files.size ? durable_files_load((const uint8_t *)files.data, files.size, scratch, w) : 0;
    buffer_free(&files);
    if (rc) return refuse(fd, rc == -ENOSPC ? "the saved files exceed the disk limit"
                                            : "the saved files are malformed");
    runtime_set_stack_pointer(stack_pointer);
    if (monotonic_ns) wasi_continue_monotonic(w, monotonic_ns);
    return frame_write(fd, 'L', "", 0) == 0 ? 0 : -1;
}
