/*
 * page_file.h — a node's own copy of each durable session's memory, kept so
 * that a restore on this node maps it instead of reading the store.
 *
 * The store holds a session's pages compressed and content-addressed; a
 * restore from it reads, decompresses, verifies and copies every page the
 * fresh worker lacks (≈ 125 ms for a 20 MB heap).  A page file holds the
 * same pages decompressed, each at its own place (a fixed header, then page
 * N at PAGE_FILE_HEADER + N × DURABLE_PAGE): the worker maps the runs of
 * pages it lacks copy-on-write, as it maps a start image, and pays for a
 * page only when the guest touches it.
 *
 * The store stays the truth; a page file is a cache of one snapshot:
 * - its header is sealed with a key computed from the boot, the guest's
 *   build and the hash of every live page of the snapshot it holds.  A
 *   restore computes the key of the store's latest snapshot and maps the
 *   file only when they are equal, so a file that another node's commits
 *   made stale, one a crash left half-written (its header is unsealed
 *   before any page is written) or one from before a reboot (whose writes
 *   may not all have reached the disk) is never used;
 * - it holds every page of that snapshot that differs from the base, at
 *   least: pages equal to the base, and the dead stack, are never mapped.
 *
 * Mapped pages see later writes to the file until the worker writes them
 * itself, so a file is written in place only with the pages of its own
 * session's live worker, which has written each of them (or holds the same
 * bytes); every other file is written under a temporary name and renamed
 * into place, leaving any mapping of the one it replaces intact.  One
 * process at a time uses a directory (an exclusive lock on it): another
 * one that finds it locked keeps no page files.
 *
 * The parent owns the files (0600, in a 0700 directory); a worker gets a
 * read-only descriptor (or, for a file in memory, one sealed against
 * writes), which it can map but not write.
 */
#ifndef CAP_PAGE_FILE_H
#define CAP_PAGE_FILE_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_FILE_HEADER 16384u        /* one DURABLE_PAGE: keeps the pages aligned */
#define PAGE_FILE_KEY 32
#define PAGE_FILES_BUDGET (2ull << 30) /* bytes a directory may use before the oldest go */

typedef struct page_files page_files; /* a directory of page files, locked by this process */

/* Opens (creating it 0700) the directory for page files of the store
 * opened from `store_url`: beside an SQLite file (PATH-pages), else under
 * $XDG_STATE_HOME/capsule (or ~/.local/state/capsule) by the URL's hash.
 * NULL when there is none to use (no such place, or another process holds
 * it): durable sessions then restore from the store alone. */
page_files *page_files_open(const char *store_url);
void page_files_close(page_files *files);

/* Bounds the bytes the directory's files use (PAGE_FILES_BUDGET until
 * set; the store's quota when it has one): past it the least recently
 * written go, first at once. */
void page_files_set_budget(page_files *files, uint64_t bytes);

/* The key a file holding these page hashes is sealed with: `hashes` holds
 * DURABLE_HASH bytes for each of `pages` pages, of which those below
 * `first_live` (the dead stack) are not part of it. */
void page_files_key(const page_files *files, const uint8_t *hashes, uint32_t pages,
                    uint32_t first_live, uint8_t key[PAGE_FILE_KEY]);

/* One session's file, open for writing. */
typedef struct page_file {
    int fd;
    char path[4200];      /* "" for an anonymous one */
    char temporary[4224]; /* while being written under another name, else "" */
} page_file;

/* The file of `session` if it is sealed with `key`: a page_file (malloc'd)
 * with a read-write descriptor, else NULL. */
page_file *page_file_open_sealed(page_files *files, const char *session,
                                 const uint8_t key[PAGE_FILE_KEY]);

/* A new, empty file for `session`, under a temporary name until
 * page_file_seal puts it in place; NULL when it cannot be made. */
page_file *page_file_create(page_files *files, const char *session);

/* A file in memory (memfd) with the same layout, for one restore when
 * there is no page-file directory, or its disk refused a write; never
 * kept, never sealed.  NULL when out of memory. */
page_file *page_file_anonymous(void);

/* Makes `file` anonymous, its pages copied along (a write to its disk
 * failed: the restore goes on in memory).  0 or -1. */
int page_file_to_memory(page_file *file);

/* Marks the file as holding no snapshot, before its pages change.  0 or -1. */
int page_file_unseal(page_file *file);

/* Writes `count` pages from `bytes` (DURABLE_PAGE each, consecutive in
 * memory) at page `first`.  0 or -1. */
int page_file_write(page_file *file, uint32_t first, const uint8_t *bytes, uint32_t count);

/* Seals the file with `key` (and renames a new one into place).  0 or -1;
 * the file is unusable after a failure (page_file_drop it). */
int page_file_seal(page_files *files, page_file *file, const uint8_t key[PAGE_FILE_KEY]);

/* Removes the file of `session` (deleted from the store), if any; a NULL
 * `files` is allowed. */
void page_files_remove(page_files *files, const char *session);

/* A descriptor of the file for a worker to map, through which it cannot
 * be written: read-only, or for one in memory the same file sealed
 * against writes (it is never written again); -1 on failure. */
int page_file_reader(const page_file *file);

/* Closes the file; a new one never sealed is removed. */
void page_file_close(page_file *file);

/* Closes and removes the file (it could not be kept up to date). */
void page_file_drop(page_file *file);

#endif
