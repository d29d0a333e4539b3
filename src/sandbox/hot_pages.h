/*
 * hot_pages.h — the pages of guest memory a run writes, written ahead.
 *
 * A fresh worker is a copy-on-write fork of the zygote: every page of
 * linear memory a run writes costs a page fault and a 4 KiB copy during the
 * run (≈ 350 of them for `print(1)`, most of its latency).  Those pages are
 * nearly the same from run to run (the interpreter's state, the stack, the
 * allocator's current arenas), so a worker that has run tells which ones it
 * wrote (its /proc/self/pagemap, opened before lockdown), the host keeps
 * that list per sandbox, and each worker forked afterwards writes them
 * (MADV_POPULATE_WRITE) while it waits idle in the pool, off the run's
 * critical path.
 *
 * The list is only a hint: a worker checks every index against its own
 * memory, and writing ahead never changes a byte.  The host bounds its size
 * (HOT_PAGES_MAX), so a hostile run can at worst make later workers copy
 * that much memory early.
 *
 * Wire form ('M' frame from the worker, 'S' payload from host to zygote):
 * strictly increasing uint32 indices of 4 KiB pages from the start of
 * linear memory, host byte order.
 */
#ifndef CAP_HOT_PAGES_H
#define CAP_HOT_PAGES_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

#define HOT_PAGE_SIZE 4096u
#define HOT_PAGES_MAX 4096u /* 16 MiB written ahead at most */

/* The worker's own /proc/self/pagemap (call it in the worker, before
 * lockdown): a descriptor, or -1 when the kernel does not offer it. */
int hot_pages_open(void);

/* Appends to `out` the pages of [memory, memory + size) this process has
 * written since it was forked (present, anonymous, mapped only here), at
 * most HOT_PAGES_MAX.  0, or -errno.  `memory` is page-aligned. */
int hot_pages_scan(int pagemap_fd, const uint8_t *memory, size_t size, buffer *out);

/* Sets flags[i] to 1 when the i-th 4 KiB page of [memory, memory + size)
 * is mapped from a file and has never been written here (present, a file
 * page: a write to a private file mapping makes its page anonymous, and
 * nothing makes it a file page again), else 0.  0, or -errno (then every
 * flag is 0: nothing can be said of any page).  `memory` is page-aligned. */
int hot_pages_still_file(int pagemap_fd, const uint8_t *memory, size_t size, uint8_t *flags);

/* Writes ahead the listed pages of [memory, memory + size): those beyond
 * `size` are skipped.  `list` is the wire form, `list_size` its bytes. */
void hot_pages_prefault(uint8_t *memory, size_t size, const void *list, size_t list_size);

/* Whether `list` (from a worker: untrusted) is a well-formed hot list. */
int hot_pages_valid(const void *list, size_t list_size);

#endif
