/*
 * fuzz_wasi.c — libFuzzer target for the WASI imports and the VFS below them.
 *
 * Each input is a small program run against a fresh sandbox file system: a
 * memfs root with a small quota, the standard library image read-only at
 * /usr/local/lib/python3.11, stdio as character devices, preopens at fds 3-5
 * and two open files.  Every step's first byte picks a WASI import (each one
 * in wasi.c except proc_exit, which unwinds with longjmp) or a harness
 * action (copy input bytes into guest memory, swap the guest memory for none
 * or an empty one, check vfs_normalize directly); the bytes after it are the
 * arguments.  Guest pointers are drawn to land inside, on the edge of and
 * outside the 64 KiB guest memory; paths and iovec arrays are built in guest
 * memory from dictionary words, repeated fragments and raw input bytes.
 *
 * Checked besides ASan/UBSan/LeakSanitizer:
 * - every import returns a WASI errno (< 77);
 * - vfs_normalize gives "/" and plain components (no "", ".", ".."), the
 *   same path as a simple reference, and is idempotent;
 * - after each input, the memfs quota's count is within the quota and
 *   exactly the bytes of the files left in its tree (no bytes leaked or
 *   counted twice, either way; see check_quota).
 *
 * Determinism: time and randomness only reach guest memory, and the harness
 * overwrites them there (clock_*_get, random_get, filestat times), so an
 * input replays the same way.  Sleeps asked of poll_oneoff return at once
 * (see nanosleep below).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/vfs/vfs.h"
#include "../../src/wasi/wasi.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* The imports, exactly as wasi.c defines them (in the real build python.h
 * declares them). */
u32 Z_wasi_snapshot_preview1Z_args_get(wasi *w, u32 argv, u32 buffer);
u32 Z_wasi_snapshot_preview1Z_args_sizes_get(wasi *w, u32 count, u32 size);
u32 Z_wasi_snapshot_preview1Z_environ_get(wasi *w, u32 environ, u32 buffer);
u32 Z_wasi_snapshot_preview1Z_environ_sizes_get(wasi *w, u32 count, u32 size);
u32 Z_wasi_snapshot_preview1Z_clock_res_get(wasi *w, u32 id, u32 out);
u32 Z_wasi_snapshot_preview1Z_clock_time_get(wasi *w, u32 id, u64 precision, u32 out);
u32 Z_wasi_snapshot_preview1Z_random_get(wasi *w, u32 buffer, u32 size);
u32 Z_wasi_snapshot_preview1Z_fd_advise(wasi *w, u32 fd, u64 offset, u64 length, u32 advice);
u32 Z_wasi_snapshot_preview1Z_fd_allocate(wasi *w, u32 fd, u64 offset, u64 length);
u32 Z_wasi_snapshot_preview1Z_fd_close(wasi *w, u32 fd);
u32 Z_wasi_snapshot_preview1Z_fd_datasync(wasi *w, u32 fd);
u32 Z_wasi_snapshot_preview1Z_fd_fdstat_get(wasi *w, u32 fd, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_fdstat_set_flags(wasi *w, u32 fd, u32 flags);
u32 Z_wasi_snapshot_preview1Z_fd_filestat_get(wasi *w, u32 fd, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_filestat_set_size(wasi *w, u32 fd, u64 size);
u32 Z_wasi_snapshot_preview1Z_fd_filestat_set_times(wasi *w, u32 fd, u64 atime, u64 mtime,
                                                     u32 flags);
u32 Z_wasi_snapshot_preview1Z_fd_pread(wasi *w, u32 fd, u32 iovs, u32 count, u64 offset,
                                       u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_pwrite(wasi *w, u32 fd, u32 iovs, u32 count, u64 offset,
                                        u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_read(wasi *w, u32 fd, u32 iovs, u32 count, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_write(wasi *w, u32 fd, u32 iovs, u32 count, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_prestat_get(wasi *w, u32 fd, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(wasi *w, u32 fd, u32 path, u32 length);
u32 Z_wasi_snapshot_preview1Z_fd_readdir(wasi *w, u32 fd, u32 buffer, u32 length, u64 cookie,
                                         u32 used_out);
u32 Z_wasi_snapshot_preview1Z_fd_seek(wasi *w, u32 fd, u64 offset, u32 whence, u32 out);
u32 Z_wasi_snapshot_preview1Z_fd_sync(wasi *w, u32 fd);
u32 Z_wasi_snapshot_preview1Z_fd_tell(wasi *w, u32 fd, u32 out);
u32 Z_wasi_snapshot_preview1Z_path_create_directory(wasi *w, u32 fd, u32 path, u32 length);
u32 Z_wasi_snapshot_preview1Z_path_filestat_get(wasi *w, u32 fd, u32 flags, u32 path,
                                                u32 length, u32 out);
u32 Z_wasi_snapshot_preview1Z_path_filestat_set_times(wasi *w, u32 fd, u32 flags, u32 path,
                                                      u32 length, u64 atime, u64 mtime,
                                                      u32 fst_flags);
u32 Z_wasi_snapshot_preview1Z_path_link(wasi *w, u32 old_fd, u32 flags, u32 old_path,
                                        u32 old_length, u32 new_fd, u32 new_path,
                                        u32 new_length);
u32 Z_wasi_snapshot_preview1Z_path_open(wasi *w, u32 dir_fd, u32 dir_flags, u32 path,
                                        u32 length, u32 oflags, u64 rights_base,
                                        u64 rights_inheriting, u32 fdflags, u32 fd_out);
u32 Z_wasi_snapshot_preview1Z_path_readlink(wasi *w, u32 fd, u32 path, u32 length, u32 buffer,
                                            u32 buffer_length, u32 out);
u32 Z_wasi_snapshot_preview1Z_path_remove_directory(wasi *w, u32 fd, u32 path, u32 length);
u32 Z_wasi_snapshot_preview1Z_path_rename(wasi *w, u32 fd, u32 old_path, u32 old_length,
                                          u32 new_fd, u32 new_path, u32 new_length);
u32 Z_wasi_snapshot_preview1Z_path_symlink(wasi *w, u32 old_path, u32 old_length, u32 fd,
                                           u32 new_path, u32 new_length);
u32 Z_wasi_snapshot_preview1Z_path_unlink_file(wasi *w, u32 fd, u32 path, u32 length);
u32 Z_wasi_snapshot_preview1Z_poll_oneoff(wasi *w, u32 in, u32 out, u32 count, u32 events_out);
u32 Z_wasi_snapshot_preview1Z_sched_yield(wasi *w);
u32 Z_wasi_snapshot_preview1Z_sock_accept(wasi *w, u32 fd, u32 flags, u32 out);
u32 Z_wasi_snapshot_preview1Z_sock_recv(wasi *w, u32 fd, u32 iovs, u32 count, u32 flags,
                                        u32 size_out, u32 flags_out);
u32 Z_wasi_snapshot_preview1Z_sock_send(wasi *w, u32 fd, u32 iovs, u32 count, u32 flags,
                                        u32 size_out);
u32 Z_wasi_snapshot_preview1Z_sock_shutdown(wasi *w, u32 fd, u32 how);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(condition)                                                                    \
    do {                                                                                      \
        if (!(condition)) {                                                                   \
            fprintf(stderr, "fuzz_wasi: invariant violated at %s:%d: %s\n", __FILE__, __LINE__, \
                    #condition);                                                              \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#define GUEST_SIZE 65536u
#define QUOTA (256u << 10) /* small, so that steps reach it */
#define MAX_FDS 32
#define MAX_STEPS 1024
#define STDLIB_AT "/usr/local/lib/python3.11"

/* Guest memory map: where the harness builds arguments.  Pointers the
 * fuzzer picks can land anywhere, these areas included. */
#define AREA_OUT 0x0000u    /* results */
#define AREA_PATH_A 0x1000u /* first path */
#define AREA_PATH_B 0x3000u /* second path (rename, link, symlink) */
#define AREA_ARRAY 0x5000u  /* iovec and subscription arrays */
#define AREA_DATA 0x7000u   /* buffers, to the end */
#define AREA_SIZE 0x2000u

static vfs_image *stdlib_image;

/* --- sleeping ---------------------------------------------------------------- */

/* poll_oneoff sleeps until its earliest clock subscription, which the guest
 * may set years ahead (and, by overlapping its event and subscription
 * arrays, can even rewrite while poll_oneoff runs).  This definition
 * replaces libc's for the whole program: inside a fuzz run a sleep returns
 * at once; elsewhere (libFuzzer's RSS thread) it still sleeps. */
static _Thread_local int running_input;

int nanosleep(const struct timespec *request, struct timespec *remaining) {
    if (running_input) {
        if (remaining) remaining->tv_sec = 0, remaining->tv_nsec = 0;
        return 0;
    }
    int rc = clock_nanosleep(CLOCK_REALTIME, 0, request, remaining);
    if (rc) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* --- the input ------------------------------------------------------------- */

typedef struct stream {
    const u8 *data;
    size_t size;
} stream;

static u8 take8(stream *s) {
    if (!s->size) return 0;
    s->size--;
    return *s->data++;
}

/* Little-endian; one call per statement, as argument order is unspecified. */
static u16 take16(stream *s) {
    u16 low = take8(s);
    return (u16)(low | take8(s) << 8);
}

static u32 take32(stream *s) {
    u32 low = take16(s);
    return low | (u32)take16(s) << 16;
}

static u64 take64(stream *s) {
    u64 low = take32(s);
    return low | (u64)take32(s) << 32;
}

/* Descriptors: mostly the ones that exist (0..7) and a few free slots;
 * sometimes the table's edges and absurd numbers. */
static u32 pick_fd(stream *s) {
    u8 b = take8(s);
    if (b < 0xe0) return b % 12;
    switch (b % 8) {
    case 0: return MAX_FDS - 1;
    case 1: return MAX_FDS;
    case 2: return 1024;
    case 3: return UINT32_MAX;
    case 4: return 0x80000000u;
    default: return take32(s);
    }
}

/* A guest address: in one of the areas, near the end of memory, just past
 * it, wrapping around, or anything. */
static u32 pick_address(stream *s) {
    static const u32 areas[] = {AREA_OUT, AREA_PATH_A, AREA_PATH_B, AREA_ARRAY, AREA_DATA};
    u8 b = take8(s);
    switch (b % 8) {
    case 0:
    case 1: return AREA_OUT + (u32)(take8(s) % 64) * 8;
    case 2: return areas[(b >> 3) % 5] + take8(s);
    case 3: return AREA_DATA + take16(s) % (GUEST_SIZE - AREA_DATA);
    case 4: return GUEST_SIZE - take8(s) % 72;
    case 5: return GUEST_SIZE + take8(s);
    case 6: return UINT32_MAX - take8(s);
    default: return take32(s);
    }
}

static u32 pick_length(stream *s) {
    u8 b = take8(s);
    switch (b % 8) {
    case 0:
    case 1: return b >> 3;
    case 2: return take8(s);
    case 3: return take16(s);
    case 4: return GUEST_SIZE - take8(s);
    case 5: return GUEST_SIZE + take8(s);
    case 6: return UINT32_MAX - take8(s);
    default: return take32(s);
    }
}

/* Offsets and sizes: small, around the quota, around the signed and
 * unsigned limits, or anything. */
static u64 pick_u64(stream *s) {
    u8 b = take8(s);
    switch (b % 8) {
    case 0: return b >> 3;
    case 1: return take8(s);
    case 2: return take16(s);
    case 3: return QUOTA - 128 + take8(s);
    case 4: return (u64)INT64_MAX - 128 + take8(s);
    case 5: return UINT64_MAX - take8(s);
    case 6: return (u64)-(int64_t)take16(s); /* small negative seek */
    default: return take64(s);
    }
}

/* --- guest memory ------------------------------------------------------------ */

typedef struct harness {
    wasi *w;
    wasm_rt_memory_t full;  /* the 64 KiB memory the harness builds in */
    wasm_rt_memory_t empty; /* zero pages */
} harness;

static void put32(u8 *p, u32 v) { memcpy(p, &v, 4); }
static void put64(u8 *p, u64 v) { memcpy(p, &v, 8); }
static u32 get32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }

/* The current guest memory's bytes [offset, offset+size), or NULL. */
static u8 *visible(harness *h, u32 offset, u64 size) {
    wasm_rt_memory_t *m = wasi_memory(h->w);
    if (!m || (u64)offset + size > m->size) return NULL;
    return m->data + offset;
}

/* Overwrites what the host wrote from a clock or from getrandom, so that
 * later steps reading it (as a path, say) replay identically. */
static void scrub(harness *h, u32 offset, u64 size) {
    u8 *p = visible(h, offset, size);
    if (p) memset(p, 0x5a, (size_t)size);
}

/* --- paths -------------------------------------------------------------------- */

static const char *const words[] = {
    "", ".", "..", "/", "//", "tmp", "tmp/", "/tmp/hello.txt", "tmp/hello.txt",
    "tmp/hello.txt/x", "tmp/dir", "tmp/dir/sub", "tmp/dir/sub/deep.txt", "tmp/empty", "tmp/new",
    "new", "x", "../../x", "a/./b//c", "a/b/../../..", "./", "../tmp/./hello.txt", "home",
    "home/user/data.bin", "usr", "usr/local", "usr/local/lib", "usr/local/lib/python3.11",
    STDLIB_AT, STDLIB_AT "/os.py", STDLIB_AT "/os.py/x", STDLIB_AT "/encodings",
    STDLIB_AT "/encodings/__init__.py", STDLIB_AT "/json/../re", STDLIB_AT "/missing/x",
    STDLIB_AT "/..", "os.py", "encodings", "encodings/utf_8.py", "lib-dynload", "json",
    "__pycache__", "zz", "\xff\xfe", "a b", "...",
};
#define WORD_COUNT (sizeof words / sizeof *words)

/* Bases for direct vfs_normalize checks, as descriptors hold them. */
static const char *const bases[] = {"/", "/tmp", STDLIB_AT, "/home/user", "/a/b/c"};
#define BASE_COUNT (sizeof bases / sizeof *bases)

static const char *pick_word(stream *s) {
    return words[take8(s) % WORD_COUNT];
}

/* Appends to a path being built; false once the area is full. */
static int append(char *area, size_t *length, const void *bytes, size_t size) {
    if (size > AREA_SIZE - *length) size = AREA_SIZE - *length;
    memcpy(area + *length, bytes, size);
    *length += size;
    return *length < AREA_SIZE;
}

static void check_normalize(const char *base, const char *path, size_t size);

/* A path argument: built at `area` of the full memory (checked against
 * vfs_normalize too), or a raw pointer and length. */
static void pick_path(stream *s, harness *h, u32 area, u32 *path, u32 *length) {
    char *out = (char *)h->full.data + area;
    size_t n = 0;
    u8 mode = take8(s);
    switch (mode % 8) {
    case 0:
    case 1: {
        const char *word = pick_word(s);
        append(out, &n, word, strlen(word));
        break;
    }
    case 2: {
        const char *first = pick_word(s), *second = pick_word(s);
        append(out, &n, first, strlen(first));
        append(out, &n, "/", 1);
        append(out, &n, second, strlen(second));
        break;
    }
    case 3: { /* raw bytes, NUL and all */
        size_t want = take8(s);
        if (want > s->size) want = s->size;
        append(out, &n, s->data, want);
        s->data += want, s->size -= want;
        break;
    }
    case 4: { /* a fragment repeated: deep paths, long paths, ".." chains */
        char fragment[16];
        size_t fragment_size = 1 + take8(s) % 8;
        const char *word = pick_word(s);
        if (mode & 8) {
            fragment_size = strlen(word) + 1;
            if (fragment_size > sizeof fragment) fragment_size = sizeof fragment;
            memcpy(fragment, word, fragment_size - 1);
            fragment[fragment_size - 1] = '/';
        } else {
            for (size_t i = 0; i < fragment_size; i++) fragment[i] = (char)take8(s);
        }
        const char *prefix = pick_word(s);
        append(out, &n, prefix, strlen(prefix));
        u32 count = take16(s) % 4200;
        for (u32 i = 0; i < count && append(out, &n, fragment, fragment_size); i++) {}
        break;
    }
    case 5: { /* one component around VFS_NAME_MAX */
        const char *word = pick_word(s);
        append(out, &n, word, strlen(word));
        append(out, &n, "/", 1);
        size_t name = VFS_NAME_MAX - 8 + take8(s) % 16;
        for (size_t i = 0; i < name; i++) append(out, &n, "n", 1);
        break;
    }
    case 6: /* wherever the fuzzer says */
        *path = pick_address(s);
        *length = pick_length(s);
        return;
    default: { /* a word, then raw bytes */
        const char *word = pick_word(s);
        append(out, &n, word, strlen(word));
        size_t want = take8(s) % 32;
        if (want > s->size) want = s->size;
        append(out, &n, s->data, want);
        s->data += want, s->size -= want;
        break;
    }
    }
    check_normalize(bases[n % BASE_COUNT], out, n);
    *path = area;
    *length = (u32)n;
}

/* --- vfs_normalize ------------------------------------------------------------ */

/* The obvious implementation, for comparison: a stack of components. */
static void reference_normalize(const char *base, const char *path, size_t size, char *out) {
    static size_t starts[2 * VFS_PATH_MAX + AREA_SIZE];
    size_t depth = 0, length = 0;
    const char *sources[2] = {path[0] == '/' ? NULL : base, path};
    size_t sizes[2] = {sources[0] ? strlen(base) : 0, size};
    for (int i = 0; i < 2; i++) {
        const char *p = sources[i], *end = p ? p + sizes[i] : NULL;
        while (p && p < end) {
            const char *start = p;
            while (p < end && *p != '/') p++;
            size_t n = (size_t)(p - start);
            if (p < end) p++;
            if (n == 0 || (n == 1 && start[0] == '.')) continue;
            if (n == 2 && start[0] == '.' && start[1] == '.') {
                if (depth) length = starts[--depth];
                continue;
            }
            starts[depth++] = length;
            out[length++] = '/';
            memcpy(out + length, start, n);
            length += n;
        }
    }
    if (length == 0) out[length++] = '/';
    out[length] = '\0';
}

static void check_normalize(const char *base, const char *path, size_t size) {
    static char out[VFS_PATH_MAX + 1], again[VFS_PATH_MAX + 1];
    static char expected[2 * VFS_PATH_MAX + AREA_SIZE];
    memset(out, 0x7f, sizeof out);
    int rc = vfs_normalize(base, path, size, out);
    if (size == 0) {
        REQUIRE(rc == -ENOENT || rc == -EINVAL);
        return;
    }
    if (memchr(path, '\0', size)) {
        REQUIRE(rc == -EINVAL);
        return;
    }
    REQUIRE(rc == 0 || rc == -ENAMETOOLONG);
    if (rc) return;
    size_t length = strnlen(out, VFS_PATH_MAX);
    REQUIRE(length < VFS_PATH_MAX);
    /* "/" and components: none empty (no "//" nor trailing "/"), none "."
     * or "..", none longer than a name may be. */
    REQUIRE(out[0] == '/');
    if (length > 1) {
        for (const char *p = out + 1, *end = out + length; p <= end;) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            size_t n = (size_t)((slash ? slash : end) - p);
            REQUIRE(n > 0 && n <= VFS_NAME_MAX);
            REQUIRE(!(n == 1 && p[0] == '.'));
            REQUIRE(!(n == 2 && p[0] == '.' && p[1] == '.'));
            p += n + 1;
        }
    }
    reference_normalize(base, path, size, expected);
    REQUIRE(strcmp(out, expected) == 0);
    REQUIRE(vfs_normalize(NULL, out, length, again) == 0 && strcmp(out, again) == 0);
    REQUIRE(vfs_normalize("/", out, length, again) == 0 && strcmp(out, again) == 0);
}

/* --- iovecs and subscriptions --------------------------------------------------- */

/* A buffer for an iovec: mostly in the data area, ending at or just past
 * the end of memory, or anywhere. */
static void pick_buffer(stream *s, u32 *buffer, u32 *length) {
    u8 b = take8(s);
    *buffer = b & 0x80 ? pick_address(s) : AREA_DATA + take16(s) % (GUEST_SIZE - AREA_DATA);
    switch (b % 6) {
    case 0: *length = take8(s); break;
    case 1: *length = take16(s) % (GUEST_SIZE - AREA_DATA); break;
    case 2: *length = 0; break;
    case 3: *length = GUEST_SIZE - *buffer; break;
    case 4: *length = GUEST_SIZE - *buffer + 1; break;
    default: *length = take32(s); break;
    }
}

static void pick_iovecs(stream *s, harness *h, u32 *iovs, u32 *count) {
    u8 *array = h->full.data + AREA_ARRAY;
    u8 mode = take8(s) % 8;
    if (mode == 7) { /* raw */
        *iovs = pick_address(s);
        *count = take8(s) & 1 ? pick_length(s) : take8(s) % 16;
        return;
    }
    u32 n;
    if (mode == 6) { /* around MAX_IOVECS; entries of 0 or 1 byte */
        n = 1023 + take8(s) % 3;
        for (u32 i = 0; i < n && i < AREA_SIZE / 8; i++) {
            put32(array + i * 8, AREA_DATA + i);
            put32(array + i * 8 + 4, i % 2);
        }
    } else {
        n = mode == 5 ? 0 : 1 + take8(s) % 4;
        for (u32 i = 0; i < n; i++) {
            u32 buffer, length;
            pick_buffer(s, &buffer, &length);
            put32(array + i * 8, buffer);
            put32(array + i * 8 + 4, length);
        }
    }
    *iovs = AREA_ARRAY;
    *count = n;
}

/* poll_oneoff's subscriptions (48 bytes each) at the array area. */
static void pick_subscriptions(stream *s, harness *h, u32 *in, u32 *count) {
    u8 mode = take8(s);
    if (mode % 8 == 7) {
        *in = pick_address(s);
        *count = take8(s) & 1 ? pick_length(s) : take8(s) % 8;
        return;
    }
    u32 n = mode % 8 == 6 ? 4096 + (mode >> 7) : mode % 6;
    u8 *array = h->full.data + AREA_ARRAY;
    for (u32 i = 0; i < n && (i + 1) * 48 <= AREA_SIZE; i++) {
        u8 *sub = array + i * 48;
        memset(sub, 0, 48);
        put64(sub, take8(s));          /* userdata */
        sub[8] = take8(s) % 4;         /* tag: clock, fd_read, fd_write, bad */
        put32(sub + 16, sub[8] == 0 ? take8(s) % 5 : pick_fd(s)); /* clock id / fd */
        put64(sub + 24, pick_u64(s));  /* timeout */
        put32(sub + 40, take8(s) % 4); /* flags: abstime */
    }
    *in = AREA_ARRAY;
    *count = n;
}

/* --- a character device for stdio ------------------------------------------------- */

/* Reads give a few bytes, writes are short past 100 bytes: the non-seekable
 * and short-transfer paths. */
static int device_read(vfs_file *file, void *buffer, size_t size, uint64_t offset,
                       size_t *done) {
    (void)file, (void)offset;
    static const char text[] = "device\n";
    *done = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(buffer, text, *done);
    return 0;
}

static int device_write(vfs_file *file, const void *buffer, size_t size, uint64_t offset,
                        size_t *done) {
    (void)file, (void)buffer, (void)offset;
    *done = size < 100 ? size : 100;
    return 0;
}

static const vfs_file_ops device_ops = {
    device_read, device_write, vfs_device_stat, vfs_device_truncate, vfs_device_readdir,
    vfs_device_close,
};

static vfs_file *device_new(void) {
    vfs_file *file = calloc(1, sizeof *file);
    REQUIRE(file);
    file->ops = &device_ops;
    file->type = VFS_CHARACTER_DEVICE;
    file->refcount = 1;
    return file;
}

/* --- the quota -------------------------------------------------------------------- */

typedef struct path_buffer {
    char *text;
    size_t capacity;
} path_buffer;

/* Bytes of the files in the memfs tree under p->text (mount-relative,
 * `length` long), through the backend itself: files hidden under the image
 * mount count too. */
static u64 tree_bytes(const vfs_backend_ops *ops, void *backend, path_buffer *p, size_t length) {
    vfs_file *dir;
    REQUIRE(ops->open(backend, p->text, VFS_O_READ | VFS_O_DIRECTORY, &dir) == 0);
    u64 total = 0;
    vfs_dirent entry;
    for (u64 cookie = 0;; cookie++) {
        int rc = dir->ops->readdir(dir, cookie, &entry);
        REQUIRE(rc == 0 || rc == 1);
        if (rc == 0) break;
        size_t name_length = strlen(entry.name);
        REQUIRE(name_length > 0 && !memchr(entry.name, '/', name_length));
        size_t child = length + (length ? 1 : 0) + name_length;
        if (child + 1 > p->capacity) {
            p->capacity = 2 * (child + 1);
            p->text = realloc(p->text, p->capacity);
            REQUIRE(p->text);
        }
        if (length) p->text[length] = '/';
        memcpy(p->text + child - name_length, entry.name, name_length + 1);
        if (entry.type == VFS_DIRECTORY) {
            total += tree_bytes(ops, backend, p, child);
        } else {
            vfs_metadata st;
            REQUIRE(ops->stat(backend, p->text, &st) == 0);
            REQUIRE(st.type == entry.type);
            total += st.size;
        }
        p->text[length] = '\0';
    }
    vfs_file_release(dir);
    return total;
}

/* With every descriptor closed, the quota's count must be exactly the bytes
 * in the tree, and within the quota.  Exactly: with the quota lowered to
 * that count plus one, a file may grow by one byte but not by two. */
static void check_quota(const vfs_backend_ops *ops, void *backend) {
    vfs_file *fill = NULL;
    char name[32];
    for (int i = 0; !fill; i++) {
        REQUIRE(i < 1000);
        snprintf(name, sizeof name, ".fuzz-quota-%d", i);
        int rc = ops->open(backend, name, VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE | VFS_O_TRUNCATE,
                           &fill);
        REQUIRE(rc == 0 || rc == -EISDIR);
        if (rc) fill = NULL;
    }
    path_buffer p = {calloc(1, 256), 256};
    REQUIRE(p.text);
    u64 used = tree_bytes(ops, backend, &p, 0);
    free(p.text);
    REQUIRE(used <= QUOTA);
    vfs_memfs_set_quota(backend, used + 1);
    REQUIRE(fill->ops->truncate(fill, 2) == -ENOSPC);
    REQUIRE(fill->ops->truncate(fill, 1) == 0);
    vfs_file_release(fill);
}

/* --- setup -------------------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("CAPSULE_FUZZ_IMAGE");
    if (!path) path = "build/stdlib.img";
    int rc = vfs_image_open(path, &stdlib_image);
    if (rc) {
        fprintf(stderr, "fuzz_wasi: cannot open %s (%s); run from the repository after `make build`\n",
                path, strerror(-rc));
        exit(1);
    }
    return 0;
}

static void install(wasi *w, u32 fd, vfs_file *file, const char *path, int readable,
                    int writable, int preopen) {
    REQUIRE(wasi_install(w, fd, file, path, readable, writable, preopen) == 0);
    vfs_file_release(file);
}

static vfs_file *open_or_die(vfs *fs, const char *path, int flags) {
    vfs_file *file;
    REQUIRE(vfs_open(fs, path, flags, &file) == 0);
    return file;
}

/* --- the steps ------------------------------------------------------------------------- */

enum {
    OP_ARGS_GET, OP_ARGS_SIZES_GET, OP_ENVIRON_GET, OP_ENVIRON_SIZES_GET, OP_CLOCK_RES_GET,
    OP_CLOCK_TIME_GET, OP_RANDOM_GET, OP_FD_ADVISE, OP_FD_ALLOCATE, OP_FD_CLOSE,
    OP_FD_DATASYNC, OP_FD_FDSTAT_GET, OP_FD_FDSTAT_SET_FLAGS, OP_FD_FILESTAT_GET,
    OP_FD_FILESTAT_SET_SIZE, OP_FD_FILESTAT_SET_TIMES, OP_FD_PREAD, OP_FD_PWRITE, OP_FD_READ,
    OP_FD_WRITE, OP_FD_PRESTAT_GET, OP_FD_PRESTAT_DIR_NAME, OP_FD_READDIR, OP_FD_SEEK,
    OP_FD_SYNC, OP_FD_TELL, OP_PATH_CREATE_DIRECTORY, OP_PATH_FILESTAT_GET,
    OP_PATH_FILESTAT_SET_TIMES, OP_PATH_LINK, OP_PATH_OPEN, OP_PATH_READLINK,
    OP_PATH_REMOVE_DIRECTORY, OP_PATH_RENAME, OP_PATH_SYMLINK, OP_PATH_UNLINK_FILE,
    OP_POLL_ONEOFF, OP_SCHED_YIELD, OP_SOCK_ACCEPT, OP_SOCK_RECV, OP_SOCK_SEND,
    OP_SOCK_SHUTDOWN,
    /* harness actions */
    OP_POKE, OP_MEMORY, OP_NORMALIZE,
    OP_COUNT
};

static u32 checked(u32 rc) {
    REQUIRE(rc < 77); /* WASI errno: 0 .. 76 (ENOTCAPABLE) */
    return rc;
}

#define W(name) Z_wasi_snapshot_preview1Z_##name

static void step(stream *s, harness *h) {
    wasi *w = h->w;
    u32 path, length, path2, length2, iovs, count, out, rc;
    u8 op = take8(s) % OP_COUNT;
    switch (op) {
    case OP_ARGS_GET: {
        u32 argv = pick_address(s);
        checked(W(args_get)(w, argv, pick_address(s)));
        break;
    }
    case OP_ARGS_SIZES_GET: {
        u32 count_out = pick_address(s);
        checked(W(args_sizes_get)(w, count_out, pick_address(s)));
        break;
    }
    case OP_ENVIRON_GET: {
        u32 env = pick_address(s);
        checked(W(environ_get)(w, env, pick_address(s)));
        break;
    }
    case OP_ENVIRON_SIZES_GET: {
        u32 count_out = pick_address(s);
        checked(W(environ_sizes_get)(w, count_out, pick_address(s)));
        break;
    }
    case OP_CLOCK_RES_GET: {
        u32 id = take8(s) % 6;
        out = pick_address(s);
        if (checked(W(clock_res_get)(w, id, out)) == 0) scrub(h, out, 8);
        break;
    }
    case OP_CLOCK_TIME_GET: {
        u32 id = take8(s) % 6;
        u64 precision = pick_u64(s);
        out = pick_address(s);
        if (checked(W(clock_time_get)(w, id, precision, out)) == 0) scrub(h, out, 8);
        break;
    }
    case OP_RANDOM_GET: {
        u32 buffer;
        pick_buffer(s, &buffer, &length);
        if (checked(W(random_get)(w, buffer, length)) == 0) scrub(h, buffer, length);
        break;
    }
    case OP_FD_ADVISE: {
        u32 fd = pick_fd(s);
        u64 offset = pick_u64(s), len = pick_u64(s);
        checked(W(fd_advise)(w, fd, offset, len, take8(s) % 8));
        break;
    }
    case OP_FD_ALLOCATE: {
        u32 fd = pick_fd(s);
        u64 offset = pick_u64(s);
        checked(W(fd_allocate)(w, fd, offset, pick_u64(s)));
        break;
    }
    case OP_FD_CLOSE: checked(W(fd_close)(w, pick_fd(s))); break;
    case OP_FD_DATASYNC: checked(W(fd_datasync)(w, pick_fd(s))); break;
    case OP_FD_FDSTAT_GET: {
        u32 fd = pick_fd(s);
        checked(W(fd_fdstat_get)(w, fd, pick_address(s)));
        break;
    }
    case OP_FD_FDSTAT_SET_FLAGS: {
        u32 fd = pick_fd(s);
        u8 b = take8(s);
        checked(W(fd_fdstat_set_flags)(w, fd, b & 0x80 ? take32(s) : b % 32));
        break;
    }
    case OP_FD_FILESTAT_GET: {
        u32 fd = pick_fd(s);
        out = pick_address(s);
        if (checked(W(fd_filestat_get)(w, fd, out)) == 0) scrub(h, out + 40, 24);
        break;
    }
    case OP_FD_FILESTAT_SET_SIZE: {
        u32 fd = pick_fd(s);
        checked(W(fd_filestat_set_size)(w, fd, pick_u64(s)));
        break;
    }
    case OP_FD_FILESTAT_SET_TIMES: {
        u32 fd = pick_fd(s);
        u64 atime = pick_u64(s), mtime = pick_u64(s);
        checked(W(fd_filestat_set_times)(w, fd, atime, mtime, take8(s) % 20));
        break;
    }
    case OP_FD_PREAD:
    case OP_FD_PWRITE: {
        u32 fd = pick_fd(s);
        pick_iovecs(s, h, &iovs, &count);
        u64 offset = pick_u64(s);
        out = pick_address(s);
        if (op == OP_FD_PREAD)
            checked(W(fd_pread)(w, fd, iovs, count, offset, out));
        else
            checked(W(fd_pwrite)(w, fd, iovs, count, offset, out));
        break;
    }
    case OP_FD_READ:
    case OP_FD_WRITE: {
        u32 fd = pick_fd(s);
        pick_iovecs(s, h, &iovs, &count);
        out = pick_address(s);
        if (op == OP_FD_READ)
            checked(W(fd_read)(w, fd, iovs, count, out));
        else
            checked(W(fd_write)(w, fd, iovs, count, out));
        break;
    }
    case OP_FD_PRESTAT_GET: {
        u32 fd = pick_fd(s);
        checked(W(fd_prestat_get)(w, fd, pick_address(s)));
        break;
    }
    case OP_FD_PRESTAT_DIR_NAME: {
        u32 fd = pick_fd(s);
        u32 buffer = pick_address(s);
        checked(W(fd_prestat_dir_name)(w, fd, buffer, pick_length(s)));
        break;
    }
    case OP_FD_READDIR: {
        u32 fd = pick_fd(s), buffer;
        pick_buffer(s, &buffer, &length);
        u8 b = take8(s);
        u64 cookie = b & 0x80 ? pick_u64(s) : b % 64;
        out = pick_address(s);
        rc = checked(W(fd_readdir)(w, fd, buffer, length, cookie, out));
        u8 *used = visible(h, out, 4);
        if (rc == 0 && used) REQUIRE(get32(used) <= length);
        break;
    }
    case OP_FD_SEEK: {
        u32 fd = pick_fd(s);
        u64 offset = pick_u64(s);
        u32 whence = take8(s) % 4;
        checked(W(fd_seek)(w, fd, offset, whence, pick_address(s)));
        break;
    }
    case OP_FD_SYNC: checked(W(fd_sync)(w, pick_fd(s))); break;
    case OP_FD_TELL: {
        u32 fd = pick_fd(s);
        checked(W(fd_tell)(w, fd, pick_address(s)));
        break;
    }
    case OP_PATH_CREATE_DIRECTORY: {
        u32 fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_A, &path, &length);
        checked(W(path_create_directory)(w, fd, path, length));
        break;
    }
    case OP_PATH_FILESTAT_GET: {
        u32 fd = pick_fd(s), flags = take8(s) % 2;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        out = pick_address(s);
        if (checked(W(path_filestat_get)(w, fd, flags, path, length, out)) == 0)
            scrub(h, out + 40, 24);
        break;
    }
    case OP_PATH_FILESTAT_SET_TIMES: {
        u32 fd = pick_fd(s), flags = take8(s) % 2;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        u64 atime = pick_u64(s), mtime = pick_u64(s);
        checked(W(path_filestat_set_times)(w, fd, flags, path, length, atime, mtime,
                                           take8(s) % 20));
        break;
    }
    case OP_PATH_LINK: {
        u32 old_fd = pick_fd(s), flags = take8(s) % 2, new_fd;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        new_fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_B, &path2, &length2);
        checked(W(path_link)(w, old_fd, flags, path, length, new_fd, path2, length2));
        break;
    }
    case OP_PATH_OPEN: {
        u32 fd = pick_fd(s), dir_flags = take8(s) % 2;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        u8 b = take8(s);
        u32 oflags = b & 0x80 ? take16(s) : b % 16;
        u64 rights;
        switch (take8(s) % 4) {
        case 0: rights = 0x2 | 0x4 | 0x20; break;   /* read, seek, tell */
        case 1: rights = (1ull << 29) - 1; break;   /* what wasi-libc asks */
        case 2: rights = 0x40; break;               /* write */
        default: rights = pick_u64(s); break;
        }
        u64 inheriting = take8(s) & 1 ? rights : pick_u64(s);
        b = take8(s);
        u32 fdflags = b & 0x80 ? take16(s) : b % 32;
        out = pick_address(s);
        rc = checked(W(path_open)(w, fd, dir_flags, path, length, oflags, rights, inheriting,
                                  fdflags, out));
        u8 *fd_out = visible(h, out, 4);
        if (rc == 0) REQUIRE(fd_out && get32(fd_out) < MAX_FDS);
        break;
    }
    case OP_PATH_READLINK: {
        u32 fd = pick_fd(s), buffer, buffer_length;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        pick_buffer(s, &buffer, &buffer_length);
        checked(W(path_readlink)(w, fd, path, length, buffer, buffer_length, pick_address(s)));
        break;
    }
    case OP_PATH_REMOVE_DIRECTORY: {
        u32 fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_A, &path, &length);
        checked(W(path_remove_directory)(w, fd, path, length));
        break;
    }
    case OP_PATH_RENAME: {
        u32 fd = pick_fd(s), new_fd;
        pick_path(s, h, AREA_PATH_A, &path, &length);
        new_fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_B, &path2, &length2);
        checked(W(path_rename)(w, fd, path, length, new_fd, path2, length2));
        break;
    }
    case OP_PATH_SYMLINK: {
        pick_path(s, h, AREA_PATH_A, &path, &length);
        u32 fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_B, &path2, &length2);
        checked(W(path_symlink)(w, path, length, fd, path2, length2));
        break;
    }
    case OP_PATH_UNLINK_FILE: {
        u32 fd = pick_fd(s);
        pick_path(s, h, AREA_PATH_A, &path, &length);
        checked(W(path_unlink_file)(w, fd, path, length));
        break;
    }
    case OP_POLL_ONEOFF: {
        u32 in, events, events_out;
        pick_subscriptions(s, h, &in, &count);
        /* Events may overlap the subscriptions, as a guest may arrange. */
        u8 b = take8(s);
        events = b % 4 == 0 ? in + take8(s) % 96 : pick_address(s);
        events_out = pick_address(s);
        checked(W(poll_oneoff)(w, in, events, count, events_out));
        break;
    }
    case OP_SCHED_YIELD: checked(W(sched_yield)(w)); break;
    case OP_SOCK_ACCEPT: {
        u32 fd = pick_fd(s), flags = take8(s);
        checked(W(sock_accept)(w, fd, flags, pick_address(s)));
        break;
    }
    case OP_SOCK_RECV: {
        u32 fd = pick_fd(s), flags = take8(s);
        pick_iovecs(s, h, &iovs, &count);
        u32 size_out = pick_address(s);
        checked(W(sock_recv)(w, fd, iovs, count, flags, size_out, pick_address(s)));
        break;
    }
    case OP_SOCK_SEND: {
        u32 fd = pick_fd(s), flags = take8(s);
        pick_iovecs(s, h, &iovs, &count);
        checked(W(sock_send)(w, fd, iovs, count, flags, pick_address(s)));
        break;
    }
    case OP_SOCK_SHUTDOWN: {
        u32 fd = pick_fd(s);
        checked(W(sock_shutdown)(w, fd, take8(s) % 4));
        break;
    }
    case OP_POKE: { /* input bytes into guest memory, anywhere */
        u32 at = take16(s);
        size_t n = take8(s);
        if (n > s->size) n = s->size;
        if (n > GUEST_SIZE - at) n = GUEST_SIZE - at;
        memcpy(h->full.data + at, s->data, n);
        s->data += n, s->size -= n;
        break;
    }
    case OP_MEMORY: /* no memory, zero pages, or back to 64 KiB */
        switch (take8(s) % 4) {
        case 0: wasi_set_memory(w, NULL); break;
        case 1: wasi_set_memory(w, &h->empty); break;
        default: wasi_set_memory(w, &h->full); break;
        }
        break;
    case OP_NORMALIZE: {
        u8 b = take8(s);
        const char *base = b % (BASE_COUNT + 1) == BASE_COUNT ? NULL : bases[b % (BASE_COUNT + 1)];
        pick_path(s, h, AREA_PATH_B, &path, &length);
        if ((u64)path + length <= GUEST_SIZE)
            check_normalize(base, (const char *)h->full.data + path, length);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    running_input = 1;

    /* The sandbox's file system: scratch root, files, the stdlib image. */
    vfs *fs = vfs_new();
    REQUIRE(fs);
    const vfs_backend_ops *scratch_ops, *image_ops;
    void *scratch, *image;
    REQUIRE(vfs_memfs_new(QUOTA, &scratch_ops, &scratch) == 0);
    REQUIRE(vfs_mount(fs, "/", scratch_ops, scratch, 0) == 0);
    u8 bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (u8)i;
    REQUIRE(vfs_memfs_put(scratch, "tmp/hello.txt", "hello, world\n", 13) == 0);
    REQUIRE(vfs_memfs_put(scratch, "tmp/empty", "", 0) == 0);
    REQUIRE(vfs_memfs_put(scratch, "tmp/dir/sub/deep.txt", "deep", 4) == 0);
    REQUIRE(vfs_memfs_put(scratch, "home/user/data.bin", bytes, sizeof bytes) == 0);
    REQUIRE(vfs_image_backend(stdlib_image, &image_ops, &image) == 0);
    REQUIRE(vfs_mount(fs, STDLIB_AT, image_ops, image, 1) == 0);

    /* Its WASI view: stdio devices, three preopens, two open files. */
    static char *argv[] = {"python", "-c", "pass", NULL};
    static char *env[] = {"PYTHONHOME=/usr/local", "LANG=C.UTF-8", "EMPTY=", NULL};
    wasi_options options = {argv, env, MAX_FDS};
    harness h = {0};
    h.w = wasi_new(fs, &options);
    REQUIRE(h.w);
    h.full = (wasm_rt_memory_t){calloc(1, GUEST_SIZE), 1, 1, GUEST_SIZE};
    h.empty = (wasm_rt_memory_t){malloc(0), 0, 0, 0};
    REQUIRE(h.full.data && h.empty.data);
    wasi_set_memory(h.w, &h.full);

    install(h.w, 0, device_new(), "/dev/stdin", 1, 0, 0);
    install(h.w, 1, device_new(), "/dev/stdout", 0, 1, 0);
    install(h.w, 2, device_new(), "/dev/stderr", 0, 1, 0);
    install(h.w, 3, open_or_die(fs, "/", VFS_O_READ | VFS_O_DIRECTORY), "/", 1, 0, 1);
    install(h.w, 4, open_or_die(fs, "/tmp", VFS_O_READ | VFS_O_DIRECTORY), "/tmp", 1, 0, 1);
    install(h.w, 5, open_or_die(fs, STDLIB_AT, VFS_O_READ | VFS_O_DIRECTORY), STDLIB_AT, 1, 0,
            1);
    install(h.w, 6, open_or_die(fs, "/tmp/hello.txt", VFS_O_READ | VFS_O_WRITE),
            "/tmp/hello.txt", 1, 1, 0);
    install(h.w, 7, open_or_die(fs, STDLIB_AT "/os.py", VFS_O_READ), STDLIB_AT "/os.py", 1, 0, 0);

    stream s = {data, size};
    for (int i = 0; i < MAX_STEPS && s.size > 0; i++) step(&s, &h);

    wasi_free(h.w);
    check_quota(scratch_ops, scratch);
    vfs_free(fs);
    free(h.full.data);
    free(h.empty.data);
    running_input = 0;
    return 0;
}
