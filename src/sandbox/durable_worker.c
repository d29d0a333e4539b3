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

#include "../runtime/runtime.h"
#include "../vfs/vfs.h"
#include "buffer.h"
#include "frame.h"

static int append(void *context, const void *data, size_t size) {
    return buffer_append(context, data, size);
}

int durable_worker_snapshot(int fd, const uint8_t *memory, uint32_t pages, const uint8_t *base,
                            uint32_t base_pages, void *scratch, int full) {
    buffer files = {0};
    if (vfs_memfs_save(scratch, append, &files) != 0) {
        buffer_free(&files);
        return frame_write(fd, 'K', "{\"error\":\"cannot save the scratch files\"}", 41);
    }
    /* Pages equal to the base are not sent: the host knows their hashes. */
    uint32_t changed = 0;
    for (uint32_t page = 0; page < pages; page++)
        if (full || page >= base_pages ||
            memcmp(memory + (size_t)page * DURABLE_PAGE, base + (size_t)page * DURABLE_PAGE,
                   DURABLE_PAGE) != 0)
            changed++;
    char header[192];
    int length = snprintf(header, sizeof header,
                          "{\"pages\":%u,\"stack_pointer\":%u,\"changed\":%u,\"vfs_bytes\":%zu}",
                          pages, runtime_stack_pointer(), changed, files.size);
    int rc = frame_write(fd, 'K', header, (size_t)length);
    static uint8_t frame[4 + DURABLE_PAGE];
    for (uint32_t page = 0; rc == 0 && page < pages; page++) {
        const uint8_t *bytes = memory + (size_t)page * DURABLE_PAGE;
        if (!full && page < base_pages &&
            memcmp(bytes, base + (size_t)page * DURABLE_PAGE, DURABLE_PAGE) == 0)
            continue;
        for (int i = 0; i < 4; i++) frame[i] = (uint8_t)(page >> (8 * i));
        memcpy(frame + 4, bytes, DURABLE_PAGE);
        rc = frame_write(fd, 'k', frame, sizeof frame);
    }
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

int durable_worker_restore(int fd, const char *payload, size_t size, void *scratch) {
    cJSON *header = cJSON_ParseWithLength(payload, size);
    uint32_t pages = field(header, "pages", DURABLE_MAX_PAGES);
    uint32_t stack_pointer = field(header, "stack_pointer", UINT32_MAX - 1.0);
    uint32_t page_frames = field(header, "page_frames", DURABLE_MAX_PAGES);
    const cJSON *vfs_item = cJSON_GetObjectItemCaseSensitive(header, "vfs_bytes");
    double vfs_bytes = cJSON_IsNumber(vfs_item) ? vfs_item->valuedouble : -1;
    cJSON_Delete(header);
    if (pages == UINT32_MAX || stack_pointer == UINT32_MAX || page_frames == UINT32_MAX ||
        vfs_bytes < 0 || vfs_bytes > (double)DURABLE_MAX_VFS)
        return refuse(fd, "malformed restore header");
    if (runtime_resize_memory(pages) != 0) return refuse(fd, "cannot size the memory");
    uint8_t *memory = runtime_memory_data(); /* after the resize: it may move */
    for (uint32_t i = 0; i < page_frames; i++) {
        char type;
        char *page;
        size_t page_size;
        if (frame_read(fd, &type, &page, &page_size, 4 + DURABLE_PAGE, NULL) != 0) return -1;
        uint32_t index = 0;
        for (int b = 0; b < 4 && page_size == 4 + DURABLE_PAGE; b++)
            index |= (uint32_t)(uint8_t)page[b] << (8 * b);
        if (type != 'l' || page_size != 4 + DURABLE_PAGE || index >= pages) {
            free(page);
            return refuse(fd, "malformed restore page");
        }
        memcpy(memory + (size_t)index * DURABLE_PAGE, page + 4, DURABLE_PAGE);
        free(page);
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
    int rc = files.size ? vfs_memfs_load(scratch, files.data, files.size) : 0;
    buffer_free(&files);
    if (rc) return refuse(fd, rc == -ENOSPC ? "the saved files exceed the disk limit"
                                            : "the saved files are malformed");
    runtime_set_stack_pointer(stack_pointer);
    return frame_write(fd, 'L', "", 0) == 0 ? 0 : -1;
}
