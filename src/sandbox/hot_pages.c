/*
 * hot_pages.c — which pages of guest memory a run writes (from the
 * worker's pagemap), and writing them ahead in the next workers
 * (hot_pages.h has the why).
 */
#include "hot_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_FILE_OR_SHARED (1ull << 61)
#define PAGEMAP_EXCLUSIVE (1ull << 56)

int hot_pages_open(void) {
    return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/* A page written since the fork is a private anonymous copy mapped by this
 * process alone; one only read is still the zygote's (mapped twice, or a
 * page of the start image's file), and one never touched is not present. */
int hot_pages_scan(int pagemap_fd, const uint8_t *memory, size_t size, buffer *out) {
    uint64_t entries[512];
    size_t first = (uintptr_t)memory / HOT_PAGE_SIZE, count = size / HOT_PAGE_SIZE;
    uint32_t found = 0;
    if (lseek(pagemap_fd, (off_t)(first * sizeof *entries), SEEK_SET) < 0) return -errno;
    for (size_t done = 0; done < count && found < HOT_PAGES_MAX;) {
        size_t want = count - done < 512 ? count - done : 512;
        ssize_t got = read(pagemap_fd, entries, want * sizeof *entries);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0 || got % (ssize_t)sizeof *entries) return got < 0 ? -errno : -EIO;
        size_t n = (size_t)got / sizeof *entries;
        for (size_t i = 0; i < n && found < HOT_PAGES_MAX; i++) {
            uint64_t e = entries[i];
            if ((e & PAGEMAP_PRESENT) && (e & PAGEMAP_EXCLUSIVE) && !(e & PAGEMAP_FILE_OR_SHARED)) {
                uint32_t index = (uint32_t)(done + i);
                int rc = buffer_append(out, &index, sizeof index);
                if (rc) return rc;
                found++;
            }
        }
        done += n;
    }
    return 0;
}

int hot_pages_still_file(int pagemap_fd, const uint8_t *memory, size_t size, uint8_t *flags) {
    uint64_t entries[512];
    size_t first = (uintptr_t)memory / HOT_PAGE_SIZE, count = size / HOT_PAGE_SIZE;
    memset(flags, 0, count);
    if (lseek(pagemap_fd, (off_t)(first * sizeof *entries), SEEK_SET) < 0) return -errno;
    for (size_t done = 0; done < count;) {
        size_t want = count - done < 512 ? count - done : 512;
        ssize_t got = read(pagemap_fd, entries, want * sizeof *entries);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0 || got % (ssize_t)sizeof *entries) {
            memset(flags, 0, count);
            return got < 0 ? -errno : -EIO;
        }
        size_t n = (size_t)got / sizeof *entries;
        for (size_t i = 0; i < n; i++)
            flags[done + i] = (entries[i] & PAGEMAP_PRESENT) && (entries[i] & PAGEMAP_FILE_OR_SHARED);
        done += n;
    }
    return 0;
}

/* Consecutive pages are one madvise.  Without MADV_POPULATE_WRITE (older
 * kernels) each page is written with the byte it holds. */
void hot_pages_prefault(uint8_t *memory, size_t size, const void *list, size_t list_size) {
    size_t count = list_size / sizeof(uint32_t), pages = size / HOT_PAGE_SIZE;
    const uint8_t *bytes = list;
    int populate = 1;
    for (size_t i = 0; i < count;) {
        uint32_t start, next;
        memcpy(&start, bytes + i * sizeof start, sizeof start);
        if (start >= pages) break; /* increasing: the rest are beyond too */
        size_t run = 1;
        while (i + run < count &&
               (memcpy(&next, bytes + (i + run) * sizeof next, sizeof next), next == start + run) &&
               next < pages)
            run++;
        uint8_t *at = memory + (size_t)start * HOT_PAGE_SIZE;
        if (populate && madvise(at, run * HOT_PAGE_SIZE, MADV_POPULATE_WRITE) != 0)
            populate = errno != EINVAL && errno != ENOSYS;
        if (!populate) {
            for (size_t page = 0; page < run; page++) {
                volatile uint8_t *byte = at + page * HOT_PAGE_SIZE;
                *byte = *byte;
            }
        }
        i += run;
    }
}

int hot_pages_valid(const void *list, size_t list_size) {
    if (list_size % sizeof(uint32_t) || list_size / sizeof(uint32_t) > HOT_PAGES_MAX) return 0;
    const uint8_t *bytes = list;
    uint32_t previous = 0;
    for (size_t i = 0; i < list_size / sizeof previous; i++) {
        uint32_t index;
        memcpy(&index, bytes + i * sizeof index, sizeof index);
        if (i && index <= previous) return 0;
        previous = index;
    }
    return 1;
}
