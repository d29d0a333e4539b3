/*
 * wasi.c — WASI preview1 for the guest, implemented over capsule's VFS.
 *
 * This file is the security boundary: it is everything the guest can ask
 * of the host.  Nothing here reaches the host's file system, network,
 * environment or processes; files exist only as the VFS presents them.
 * Functions are in the order of the WASI preview1 specification.
 */
#include "wasi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#ifdef CAP_WASI_CHECK_PROTOTYPES
/* In the real build, wasm2c's header checks our signatures against the
 * module's imports. */
#include "python.h"
#endif

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Rights bits (preview1). */
#define RIGHT_FD_DATASYNC (1ull << 0)
#define RIGHT_FD_READ (1ull << 1)
#define RIGHT_FD_SEEK (1ull << 2)
#define RIGHT_FD_FDSTAT_SET_FLAGS (1ull << 3)
#define RIGHT_FD_SYNC (1ull << 4)
#define RIGHT_FD_TELL (1ull << 5)
#define RIGHT_FD_WRITE (1ull << 6)
#define RIGHTS_ALL ((1ull << 30) - 1)

enum { FILETYPE_UNKNOWN = 0, FILETYPE_CHARACTER_DEVICE = 2, FILETYPE_DIRECTORY = 3,
       FILETYPE_REGULAR_FILE = 4 };
enum { FDFLAG_APPEND = 1, FDFLAG_DSYNC = 2, FDFLAG_NONBLOCK = 4, FDFLAG_RSYNC = 8,
       FDFLAG_SYNC = 16 };
enum { OFLAG_CREAT = 1, OFLAG_DIRECTORY = 2, OFLAG_EXCL = 4, OFLAG_TRUNC = 8 };
enum { WHENCE_SET = 0, WHENCE_CUR = 1, WHENCE_END = 2 };
enum { CLOCK_ID_REALTIME = 0, CLOCK_ID_MONOTONIC = 1, CLOCK_ID_PROCESS = 2, CLOCK_ID_THREAD = 3 };
enum { EVENT_CLOCK = 0, EVENT_FD_READ = 1, EVENT_FD_WRITE = 2 };
enum { SUBSCRIPTION_CLOCK_ABSTIME = 1 };

#define DIRENT_SIZE 24
#define FILESTAT_SIZE 64
#define SUBSCRIPTION_SIZE 48
#define EVENT_SIZE 32
#define MAX_IOVECS 1024

typedef struct descriptor {
    vfs_file *file; /* NULL: free slot */
    char *path;     /* absolute guest path */
    uint64_t offset;
    uint16_t flags; /* FDFLAG_* */
    int readable, writable, preopen;
} descriptor;

struct Z_wasi_snapshot_preview1_instance_t {
    wasm_rt_memory_t *memory;
    vfs *fs;
    descriptor *fds;
    u32 fd_count; /* slots allocated */
    u32 max_fds;
    char **argv, **env;
    u32 argc, envc;
    int exited;
    u32 exit_code;
    u64 monotonic_offset; /* added to the host's CLOCK_MONOTONIC (wasi_continue_monotonic) */
};

/* --- guest memory ------------------------------------------------------- */

/* A host pointer to guest bytes [offset, offset+size), or NULL if any part
 * is outside the guest's memory. */
static u8 *guest(wasi *w, u32 offset, u64 size) {
    if (!w->memory || (u64)offset + size > w->memory->size) return NULL;
    return w->memory->data + offset;
}

static void put16(u8 *p, u16 v) { memcpy(p, &v, 2); }
static void put32(u8 *p, u32 v) { memcpy(p, &v, 4); }
static void put64(u8 *p, u64 v) { memcpy(p, &v, 8); }
static u32 get32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static u64 get64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }

static u32 store32(wasi *w, u32 offset, u32 value) {
    u8 *p = guest(w, offset, 4);
    if (!p) return WASI_EFAULT;
    put32(p, value);
    return WASI_ESUCCESS;
}

static u32 store64(wasi *w, u32 offset, u64 value) {
    u8 *p = guest(w, offset, 8);
    if (!p) return WASI_EFAULT;
    put64(p, value);
    return WASI_ESUCCESS;
}

uint16_t wasi_errno_from_posix(int negative_errno) {
    switch (-negative_errno) {
    case 0: return WASI_ESUCCESS;
    case E2BIG: return WASI_E2BIG;
    case EACCES: return WASI_EACCES;
    case EAGAIN: return WASI_EAGAIN;
    case EBADF: return WASI_EBADF;
    case EBUSY: return WASI_EBUSY;
    case EEXIST: return WASI_EEXIST;
    case EFAULT: return WASI_EFAULT;
    case EFBIG: return WASI_EFBIG;
    case EINTR: return WASI_EINTR;
    case EINVAL: return WASI_EINVAL;
    case EISDIR: return WASI_EISDIR;
    case ELOOP: return WASI_ELOOP;
    case EMFILE: return WASI_EMFILE;
    case ENAMETOOLONG: return WASI_ENAMETOOLONG;
    case ENOENT: return WASI_ENOENT;
    case ENOMEM: return WASI_ENOMEM;
    case ENOSPC: return WASI_ENOSPC;
    case ENOSYS: return WASI_ENOSYS;
    case ENOTDIR: return WASI_ENOTDIR;
    case ENOTEMPTY: return WASI_ENOTEMPTY;
    case ENOTSUP: return WASI_ENOTSUP;
    case EOVERFLOW: return WASI_EOVERFLOW;
    case EPERM: return WASI_EPERM;
    case EROFS: return WASI_EROFS;
    case ESPIPE: return WASI_ESPIPE;
    case ETIMEDOUT: return WASI_ETIMEDOUT;
    case EXDEV: return WASI_EXDEV;
    default: return WASI_EIO;
    }
}

static int ends_with_slash(const u8 *path, u32 length) {
    return length > 0 && path[length - 1] == '/';
}

/* Reads a guest path argument (not NUL-terminated in WASI). */
static u32 guest_path(wasi *w, u32 fd, u32 path, u32 path_length, char *out) {
    if (fd >= w->fd_count || !w->fds[fd].file) return WASI_EBADF;
    descriptor *d = &w->fds[fd];
    if (d->file->type != VFS_DIRECTORY) return WASI_ENOTDIR;
    const u8 *p = guest(w, path, path_length);
    if (!p) return WASI_EFAULT;
    int rc = vfs_normalize(d->path, (const char *)p, path_length, out);
    /* Normalising drops a trailing "/", which on Linux says "a directory":
     * stat("file/"), unlink("file/") and open("file/") are ENOTDIR. */
    vfs_metadata st;
    if (rc == 0 && ends_with_slash(p, path_length) && vfs_stat(w->fs, out, &st) == 0 &&
        st.type != VFS_DIRECTORY)
        return WASI_ENOTDIR;
    return wasi_errno_from_posix(rc);
}

static descriptor *lookup(wasi *w, u32 fd) {
    return fd < w->fd_count && w->fds[fd].file ? &w->fds[fd] : NULL;
}

/* --- setup -------------------------------------------------------------- */

static int copy_strings(char *const *source, char ***out, u32 *count) {
    u32 n = 0;
    while (source && source[n]) n++;
    *out = calloc(n + 1, sizeof(char *));
    if (!*out) return -ENOMEM;
    for (u32 i = 0; i < n; i++)
        if (!((*out)[i] = strdup(source[i]))) return -ENOMEM;
    *count = n;
    return 0;
}

static void free_strings(char **strings) {
    for (char **s = strings; s && *s; s++) free(*s);
    free(strings);
}

wasi *wasi_new(vfs *fs, const wasi_options *options) {
    wasi *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->fs = fs;
    w->max_fds = options->max_fds ? options->max_fds : 1024;
    if (copy_strings(options->argv, &w->argv, &w->argc) ||
        copy_strings(options->env, &w->env, &w->envc)) {
        wasi_free(w);
        return NULL;
    }
    return w;
}

static void close_descriptor(descriptor *d) {
    vfs_file_release(d->file);
    free(d->path);
    memset(d, 0, sizeof *d);
}

void wasi_free(wasi *w) {
    if (!w) return;
    for (u32 i = 0; i < w->fd_count; i++)
        if (w->fds[i].file) close_descriptor(&w->fds[i]);
    free(w->fds);
    free_strings(w->argv);
    free_strings(w->env);
    free(w);
}

void wasi_set_memory(wasi *w, wasm_rt_memory_t *memory) {
    w->memory = memory;
}

wasm_rt_memory_t *wasi_memory(wasi *w) {
    return w->memory;
}

int wasi_exited(const wasi *w, uint32_t *code) {
    if (w->exited) *code = w->exit_code;
    return w->exited;
}

static int grow_table(wasi *w, u32 needed) {
    if (needed <= w->fd_count) return 0;
    if (needed > w->max_fds) return -EMFILE;
    u32 count = w->fd_count ? w->fd_count : 8;
    while (count < needed) count *= 2;
    if (count > w->max_fds) count = w->max_fds;
    descriptor *grown = realloc(w->fds, count * sizeof *grown);
    if (!grown) return -ENOMEM;
    memset(grown + w->fd_count, 0, (count - w->fd_count) * sizeof *grown);
    w->fds = grown;
    w->fd_count = count;
    return 0;
}

int wasi_install(wasi *w, uint32_t fd, vfs_file *file, const char *path, int readable,
                 int writable, int preopen) {
    if (fd >= w->max_fds) return -EBADF; /* also keeps fd + 1 from wrapping */
    int rc = grow_table(w, fd + 1);
    if (rc) return rc;
    char *copy = strdup(path);
    if (!copy) return -ENOMEM;
    if (w->fds[fd].file) close_descriptor(&w->fds[fd]);
    vfs_file_retain(file);
    w->fds[fd] = (descriptor){file, copy, 0, 0, readable, writable, preopen};
    return 0;
}

int wasi_descriptors(wasi *w, uint32_t first,
                     int (*each)(void *context, const wasi_descriptor_state *state),
                     void *context) {
    for (u32 fd = first; fd < w->fd_count; fd++) {
        descriptor *d = &w->fds[fd];
        if (!d->file || d->preopen) continue;
        vfs_metadata st;
        int directory = d->file->ops->stat(d->file, &st) == 0 && st.type == VFS_DIRECTORY;
        wasi_descriptor_state state = {fd, d->path, d->offset, d->flags, d->readable,
                                       d->writable, directory};
        int rc = each(context, &state);
        if (rc) return rc;
    }
    return 0;
}

/* Every operation of a descriptor whose file could not be opened again. */
static int closed_read(vfs_file *file, void *data, size_t size, uint64_t offset, size_t *done) {
    (void)file, (void)data, (void)size, (void)offset, (void)done;
    return -EBADF;
}

static int closed_write(vfs_file *file, const void *data, size_t size, uint64_t offset,
                        size_t *done) {
    (void)file, (void)data, (void)size, (void)offset, (void)done;
    return -EBADF;
}

static int closed_stat(vfs_file *file, vfs_metadata *st) {
    (void)file, (void)st;
    return -EBADF;
}

static int closed_truncate(vfs_file *file, uint64_t size) {
    (void)file, (void)size;
    return -EBADF;
}

static int closed_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry) {
    (void)file, (void)cookie, (void)entry;
    return -EBADF;
}

static const vfs_file_ops closed_ops = {closed_read, closed_write, closed_stat, closed_truncate,
                                        closed_readdir, vfs_device_close};

int wasi_descriptor_restore(wasi *w, const wasi_descriptor_state *state) {
    if (state->fd < 3 || state->fd >= w->max_fds || !state->path || state->path[0] != '/')
        return -EINVAL;
    vfs_file *file = NULL;
    int flags = (state->readable ? VFS_O_READ : 0) | (state->writable ? VFS_O_WRITE : 0) |
                (state->directory ? VFS_O_DIRECTORY : 0);
    if (vfs_open(w->fs, state->path, flags, &file) != 0) {
        vfs_file *closed = calloc(1, sizeof *closed);
        if (!closed) return -ENOMEM;
        closed->ops = &closed_ops;
        closed->refcount = 1;
        file = closed;
    }
    int rc = wasi_install(w, state->fd, file, state->path, state->readable, state->writable, 0);
    vfs_file_release(file);
    if (rc == 0) {
        w->fds[state->fd].offset = state->offset;
        w->fds[state->fd].flags = (u16)(state->flags & 0x1f);
    }
    return rc;
}

/* Lowest free descriptor, as POSIX open() does. */
static int allocate_fd(wasi *w, u32 *fd) {
    for (u32 i = 0; i < w->fd_count; i++) {
        if (!w->fds[i].file) {
            *fd = i;
            return 0;
        }
    }
    int rc = grow_table(w, w->fd_count + 1);
    if (rc) return rc;
    for (u32 i = 0; i < w->fd_count; i++) {
        if (!w->fds[i].file) {
            *fd = i;
            return 0;
        }
    }
    return -EMFILE;
}

/* --- args and environment ----------------------------------------------- */

/* Shared shape of args_get/environ_get: an array of pointers plus the
 * NUL-terminated strings, both in guest memory. */
static u32 put_strings(wasi *w, char **strings, u32 count, u32 pointers, u32 buffer) {
    for (u32 i = 0; i < count; i++) {
        size_t size = strlen(strings[i]) + 1;
        u8 *p = guest(w, buffer, size);
        if (!p || store32(w, pointers + i * 4, buffer)) return WASI_EFAULT;
        memcpy(p, strings[i], size);
        buffer += (u32)size;
    }
    return WASI_ESUCCESS;
}

static u32 put_sizes(wasi *w, char **strings, u32 count, u32 count_out, u32 size_out) {
    u64 total = 0;
    for (u32 i = 0; i < count; i++) total += strlen(strings[i]) + 1;
    if (store32(w, count_out, count) || store32(w, size_out, (u32)total)) return WASI_EFAULT;
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_args_get(wasi *w, u32 argv, u32 buffer) {
    return put_strings(w, w->argv, w->argc, argv, buffer);
}

u32 Z_wasi_snapshot_preview1Z_args_sizes_get(wasi *w, u32 count, u32 size) {
    return put_sizes(w, w->argv, w->argc, count, size);
}

u32 Z_wasi_snapshot_preview1Z_environ_get(wasi *w, u32 environ, u32 buffer) {
    return put_strings(w, w->env, w->envc, environ, buffer);
}

u32 Z_wasi_snapshot_preview1Z_environ_sizes_get(wasi *w, u32 count, u32 size) {
    return put_sizes(w, w->env, w->envc, count, size);
}

/* --- clocks and randomness ---------------------------------------------- */

static int host_clock(u32 id, clockid_t *out) {
    switch (id) {
    case CLOCK_ID_REALTIME: *out = CLOCK_REALTIME; return 0;
    case CLOCK_ID_MONOTONIC: *out = CLOCK_MONOTONIC; return 0;
    case CLOCK_ID_PROCESS: *out = CLOCK_PROCESS_CPUTIME_ID; return 0;
    case CLOCK_ID_THREAD: *out = CLOCK_THREAD_CPUTIME_ID; return 0;
    default: return -1;
    }
}

u32 Z_wasi_snapshot_preview1Z_clock_res_get(wasi *w, u32 id, u32 out) {
    clockid_t clock;
    struct timespec ts;
    if (host_clock(id, &clock) || clock_getres(clock, &ts)) return WASI_EINVAL;
    return store64(w, out, (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec);
}

/* The guest's view of a clock: the host's, and for the monotonic clock
 * the offset a restored session carries. */
static int guest_clock_now(const wasi *w, clockid_t clock, u64 *now) {
    struct timespec ts;
    if (clock_gettime(clock, &ts)) return -1;
    *now = (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
    if (clock == CLOCK_MONOTONIC) *now += w->monotonic_offset;
    return 0;
}

u32 Z_wasi_snapshot_preview1Z_clock_time_get(wasi *w, u32 id, u64 precision, u32 out) {
    (void)precision;
    clockid_t clock;
    u64 now;
    if (host_clock(id, &clock) || guest_clock_now(w, clock, &now)) return WASI_EINVAL;
    return store64(w, out, now);
}

uint64_t wasi_monotonic_now(const wasi *w) {
    u64 now = 0;
    guest_clock_now(w, CLOCK_MONOTONIC, &now);
    return now;
}

void wasi_continue_monotonic(wasi *w, uint64_t saved) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    u64 host = (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
    w->monotonic_offset = saved > host ? saved - host : 0;
}

u32 Z_wasi_snapshot_preview1Z_random_get(wasi *w, u32 buffer, u32 size) {
    u8 *p = guest(w, buffer, size);
    if (!p) return WASI_EFAULT;
    while (size > 0) {
        ssize_t n = getrandom(p, size, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return WASI_EIO;
        }
        p += n;
        size -= (u32)n;
    }
    return WASI_ESUCCESS;
}

/* --- descriptors ---------------------------------------------------------- */

u32 Z_wasi_snapshot_preview1Z_fd_advise(wasi *w, u32 fd, u64 offset, u64 length, u32 advice) {
    (void)offset, (void)length;
    if (!lookup(w, fd)) return WASI_EBADF;
    return advice <= 5 ? WASI_ESUCCESS : WASI_EINVAL;
}

u32 Z_wasi_snapshot_preview1Z_fd_allocate(wasi *w, u32 fd, u64 offset, u64 length) {
    descriptor *d = lookup(w, fd);
    vfs_metadata st;
    if (!d) return WASI_EBADF;
    if (!d->writable) return WASI_EBADF;
    if (offset > UINT64_MAX - length) return WASI_EFBIG;
    int rc = d->file->ops->stat(d->file, &st);
    if (rc == 0 && offset + length > st.size) rc = d->file->ops->truncate(d->file, offset + length);
    return wasi_errno_from_posix(rc);
}

u32 Z_wasi_snapshot_preview1Z_fd_close(wasi *w, u32 fd) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    close_descriptor(d);
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_datasync(wasi *w, u32 fd) {
    return lookup(w, fd) ? WASI_ESUCCESS : WASI_EBADF;
}

static u8 filetype_of(vfs_type type) {
    switch (type) {
    case VFS_FILE: return FILETYPE_REGULAR_FILE;
    case VFS_DIRECTORY: return FILETYPE_DIRECTORY;
    case VFS_CHARACTER_DEVICE: return FILETYPE_CHARACTER_DEVICE;
    }
    return FILETYPE_UNKNOWN;
}

u32 Z_wasi_snapshot_preview1Z_fd_fdstat_get(wasi *w, u32 fd, u32 out) {
    descriptor *d = lookup(w, fd);
    u8 *p = guest(w, out, 24);
    if (!d) return WASI_EBADF;
    if (!p) return WASI_EFAULT;
    u64 rights = RIGHTS_ALL;
    if (!d->readable) rights &= ~RIGHT_FD_READ;
    if (!d->writable) rights &= ~RIGHT_FD_WRITE;
    /* Devices keep SEEK/TELL: wasi-libc's isatty() says "tty" only for a
     * character device without them, and our stdio is not a terminal. */
    memset(p, 0, 24);
    p[0] = filetype_of(d->file->type);
    put16(p + 2, d->flags);
    put64(p + 8, rights);
    put64(p + 16, RIGHTS_ALL);
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_fdstat_set_flags(wasi *w, u32 fd, u32 flags) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (flags & ~(u32)(FDFLAG_APPEND | FDFLAG_NONBLOCK | FDFLAG_DSYNC | FDFLAG_RSYNC | FDFLAG_SYNC))
        return WASI_EINVAL;
    d->flags = (u16)flags;
    return WASI_ESUCCESS;
}

static u32 put_filestat(wasi *w, u32 out, const vfs_metadata *st) {
    u8 *p = guest(w, out, FILESTAT_SIZE);
    if (!p) return WASI_EFAULT;
    memset(p, 0, FILESTAT_SIZE);
    put64(p + 0, 1); /* one device: the sandbox */
    put64(p + 8, st->inode);
    p[16] = filetype_of(st->type);
    put64(p + 24, st->links);
    put64(p + 32, st->size);
    put64(p + 40, st->atime_ns ? st->atime_ns : st->mtime_ns);
    put64(p + 48, st->mtime_ns);
    put64(p + 56, st->mtime_ns);
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_filestat_get(wasi *w, u32 fd, u32 out) {
    descriptor *d = lookup(w, fd);
    vfs_metadata st;
    if (!d) return WASI_EBADF;
    int rc = d->file->ops->stat(d->file, &st);
    return rc ? wasi_errno_from_posix(rc) : put_filestat(w, out, &st);
}

u32 Z_wasi_snapshot_preview1Z_fd_filestat_set_size(wasi *w, u32 fd, u64 size) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (!d->writable) return WASI_EINVAL; /* POSIX ftruncate on a read-only fd */
    return wasi_errno_from_posix(d->file->ops->truncate(d->file, size));
}

enum { FSTFLAG_ATIM = 1, FSTFLAG_ATIM_NOW = 2, FSTFLAG_MTIM = 4, FSTFLAG_MTIM_NOW = 8 };

/* utimensat()/futimens(): which times to set, from the guest's flags.  A
 * time and "now" for the same field at once is EINVAL, as in WASI. */
static u32 set_times(wasi *w, const char *path, u64 atime, u64 mtime, u32 flags) {
    if (flags > 15 || ((flags & FSTFLAG_ATIM) && (flags & FSTFLAG_ATIM_NOW)) ||
        ((flags & FSTFLAG_MTIM) && (flags & FSTFLAG_MTIM_NOW)))
        return WASI_EINVAL;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    u64 now_ns = (u64)now.tv_sec * 1000000000u + (u64)now.tv_nsec;
    if (flags & FSTFLAG_ATIM_NOW) atime = now_ns;
    if (flags & FSTFLAG_MTIM_NOW) mtime = now_ns;
    const u64 *new_atime = (flags & (FSTFLAG_ATIM | FSTFLAG_ATIM_NOW)) ? &atime : NULL;
    const u64 *new_mtime = (flags & (FSTFLAG_MTIM | FSTFLAG_MTIM_NOW)) ? &mtime : NULL;
    return wasi_errno_from_posix(vfs_set_times(w->fs, path, new_atime, new_mtime));
}

u32 Z_wasi_snapshot_preview1Z_fd_filestat_set_times(wasi *w, u32 fd, u64 atime, u64 mtime,
                                                     u32 flags) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (d->file->type == VFS_CHARACTER_DEVICE) return flags <= 15 ? WASI_ESUCCESS : WASI_EINVAL;
    return set_times(w, d->path, atime, mtime, flags);
}

/* Shared by read/pread/write/pwrite: walks the guest's iovec array. */
static u32 transfer(wasi *w, descriptor *d, u32 iovs, u32 iovs_count, u64 offset, int writing,
                    u32 *total) {
    if (iovs_count > MAX_IOVECS) return WASI_EINVAL;
    const u8 *vectors = guest(w, iovs, (u64)iovs_count * 8);
    if (!vectors) return WASI_EFAULT;
    *total = 0;
    for (u32 i = 0; i < iovs_count; i++) {
        u32 buffer = get32(vectors + i * 8), length = get32(vectors + i * 8 + 4);
        if (length > UINT32_MAX - *total) length = UINT32_MAX - *total;
        u8 *p = guest(w, buffer, length);
        if (!p) return *total ? WASI_ESUCCESS : WASI_EFAULT;
        if (length == 0) continue;
        size_t done = 0;
        int rc = writing ? d->file->ops->write(d->file, p, length, offset, &done)
                         : d->file->ops->read(d->file, p, length, offset, &done);
        if (rc) return *total ? WASI_ESUCCESS : wasi_errno_from_posix(rc);
        *total += (u32)done;
        offset += done;
        if (done < length) break; /* short transfer: end of file, or a full device */
    }
    return WASI_ESUCCESS;
}

static int seekable(const descriptor *d) {
    return d->file->type == VFS_FILE;
}

u32 Z_wasi_snapshot_preview1Z_fd_pread(wasi *w, u32 fd, u32 iovs, u32 count, u64 offset,
                                       u32 out) {
    descriptor *d = lookup(w, fd);
    u32 total, rc;
    if (!d || !d->readable) return WASI_EBADF;
    if (!seekable(d)) return d->file->type == VFS_DIRECTORY ? WASI_EISDIR : WASI_ESPIPE;
    rc = transfer(w, d, iovs, count, offset, 0, &total);
    return rc ? rc : store32(w, out, total);
}

u32 Z_wasi_snapshot_preview1Z_fd_pwrite(wasi *w, u32 fd, u32 iovs, u32 count, u64 offset,
                                        u32 out) {
    descriptor *d = lookup(w, fd);
    u32 total, rc;
    if (!d || !d->writable) return WASI_EBADF;
    if (!seekable(d)) return d->file->type == VFS_DIRECTORY ? WASI_EISDIR : WASI_ESPIPE;
    rc = transfer(w, d, iovs, count, offset, 1, &total);
    return rc ? rc : store32(w, out, total);
}

u32 Z_wasi_snapshot_preview1Z_fd_read(wasi *w, u32 fd, u32 iovs, u32 count, u32 out) {
    descriptor *d = lookup(w, fd);
    u32 total, rc;
    if (!d || !d->readable) return WASI_EBADF;
    if (d->file->type == VFS_DIRECTORY) return WASI_EISDIR;
    rc = transfer(w, d, iovs, count, d->offset, 0, &total);
    if (rc) return rc;
    if (seekable(d)) d->offset += total;
    return store32(w, out, total);
}

u32 Z_wasi_snapshot_preview1Z_fd_write(wasi *w, u32 fd, u32 iovs, u32 count, u32 out) {
    descriptor *d = lookup(w, fd);
    u32 total, rc;
    if (!d || !d->writable) return WASI_EBADF;
    if (d->file->type == VFS_DIRECTORY) return WASI_EISDIR;
    if (seekable(d) && (d->flags & FDFLAG_APPEND)) {
        vfs_metadata st;
        int stat_rc = d->file->ops->stat(d->file, &st);
        if (stat_rc) return wasi_errno_from_posix(stat_rc);
        d->offset = st.size;
    }
    rc = transfer(w, d, iovs, count, d->offset, 1, &total);
    if (rc) return rc;
    if (seekable(d)) d->offset += total;
    return store32(w, out, total);
}

u32 Z_wasi_snapshot_preview1Z_fd_prestat_get(wasi *w, u32 fd, u32 out) {
    descriptor *d = lookup(w, fd);
    u8 *p = guest(w, out, 8);
    if (!d || !d->preopen) return WASI_EBADF;
    if (!p) return WASI_EFAULT;
    memset(p, 0, 8);
    put32(p + 4, (u32)strlen(d->path));
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(wasi *w, u32 fd, u32 path, u32 length) {
    descriptor *d = lookup(w, fd);
    if (!d || !d->preopen) return WASI_EBADF;
    size_t size = strlen(d->path);
    if (length < size) return WASI_ENAMETOOLONG;
    u8 *p = guest(w, path, size);
    if (!p) return WASI_EFAULT;
    memcpy(p, d->path, size);
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_fd_readdir(wasi *w, u32 fd, u32 buffer, u32 length, u64 cookie,
                                         u32 used_out) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (d->file->type != VFS_DIRECTORY) return WASI_ENOTDIR;
    u8 *out = guest(w, buffer, length);
    if (!out) return WASI_EFAULT;
    u32 used = 0;
    /* Entries are written whole while they fit; the last one may be cut
     * short, and a full buffer tells libc to ask again with a bigger one. */
    while (used < length) {
        vfs_dirent entry;
        int rc = d->file->ops->readdir(d->file, cookie, &entry);
        if (rc < 0) return wasi_errno_from_posix(rc);
        if (rc == 0) break;
        u8 record[DIRENT_SIZE + VFS_NAME_MAX + 1];
        u32 name_length = (u32)strlen(entry.name);
        memset(record, 0, DIRENT_SIZE);
        put64(record, cookie + 1);
        put64(record + 8, entry.inode);
        put32(record + 16, name_length);
        record[20] = filetype_of(entry.type);
        memcpy(record + DIRENT_SIZE, entry.name, name_length);
        u32 size = DIRENT_SIZE + name_length;
        u32 fits = length - used < size ? length - used : size;
        memcpy(out + used, record, fits);
        used += fits;
        cookie++;
    }
    return store32(w, used_out, used);
}

u32 Z_wasi_snapshot_preview1Z_fd_seek(wasi *w, u32 fd, u64 offset, u32 whence, u32 out) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (!seekable(d)) return d->file->type == VFS_DIRECTORY ? WASI_EISDIR : WASI_ESPIPE;
    int64_t base;
    vfs_metadata st;
    switch (whence) {
    case WHENCE_SET: base = 0; break;
    case WHENCE_CUR: base = (int64_t)d->offset; break;
    case WHENCE_END: {
        int rc = d->file->ops->stat(d->file, &st);
        if (rc) return wasi_errno_from_posix(rc);
        base = (int64_t)st.size;
        break;
    }
    default: return WASI_EINVAL;
    }
    int64_t delta = (int64_t)offset, position;
    if (__builtin_add_overflow(base, delta, &position) || position < 0) return WASI_EINVAL;
    d->offset = (u64)position;
    return store64(w, out, d->offset);
}

u32 Z_wasi_snapshot_preview1Z_fd_sync(wasi *w, u32 fd) {
    return lookup(w, fd) ? WASI_ESUCCESS : WASI_EBADF;
}

u32 Z_wasi_snapshot_preview1Z_fd_tell(wasi *w, u32 fd, u32 out) {
    descriptor *d = lookup(w, fd);
    if (!d) return WASI_EBADF;
    if (!seekable(d)) return WASI_ESPIPE;
    return store64(w, out, d->offset);
}

/* --- paths ---------------------------------------------------------------- */

u32 Z_wasi_snapshot_preview1Z_path_create_directory(wasi *w, u32 fd, u32 path, u32 length) {
    char absolute[VFS_PATH_MAX];
    u32 rc = guest_path(w, fd, path, length, absolute);
    return rc ? rc : wasi_errno_from_posix(vfs_mkdir(w->fs, absolute));
}

u32 Z_wasi_snapshot_preview1Z_path_filestat_get(wasi *w, u32 fd, u32 flags, u32 path,
                                                u32 length, u32 out) {
    (void)flags; /* no symbolic links: following them or not is the same */
    char absolute[VFS_PATH_MAX];
    vfs_metadata st;
    u32 rc = guest_path(w, fd, path, length, absolute);
    if (rc) return rc;
    int status = vfs_stat(w->fs, absolute, &st);
    return status ? wasi_errno_from_posix(status) : put_filestat(w, out, &st);
}

u32 Z_wasi_snapshot_preview1Z_path_filestat_set_times(wasi *w, u32 fd, u32 flags, u32 path,
                                                      u32 length, u64 atime, u64 mtime,
                                                      u32 fst_flags) {
    (void)flags; /* there are no symbolic links to follow or not */
    char absolute[VFS_PATH_MAX];
    u32 rc = guest_path(w, fd, path, length, absolute);
    if (rc) return rc;
    return set_times(w, absolute, atime, mtime, fst_flags);
}

/* Links are refused: a hard link would let one file appear under two
 * mounts' rules, and symbolic links would make lexical ".." unsound. */
u32 Z_wasi_snapshot_preview1Z_path_link(wasi *w, u32 old_fd, u32 flags, u32 old_path,
                                        u32 old_length, u32 new_fd, u32 new_path,
                                        u32 new_length) {
    (void)w, (void)old_fd, (void)flags, (void)old_path, (void)old_length, (void)new_fd,
        (void)new_path, (void)new_length;
    return WASI_EPERM;
}

u32 Z_wasi_snapshot_preview1Z_path_open(wasi *w, u32 dir_fd, u32 dir_flags, u32 path,
                                        u32 length, u32 oflags, u64 rights_base,
                                        u64 rights_inheriting, u32 fdflags, u32 fd_out) {
    (void)dir_flags, (void)rights_inheriting;
    char absolute[VFS_PATH_MAX];
    u32 rc = guest_path(w, dir_fd, path, length, absolute);
    if (rc) return rc;
    if (!guest(w, fd_out, 4)) return WASI_EFAULT;
    vfs_metadata st;
    if ((oflags & OFLAG_CREAT) && ends_with_slash(guest(w, path, length), length) &&
        vfs_stat(w->fs, absolute, &st) == -ENOENT)
        return WASI_EISDIR; /* open("missing/", O_CREAT): Linux will not make a file */

    /* wasi-libc asks for broad rights; FD_READ and FD_WRITE are what say
     * "for reading" and "for writing" (O_WRONLY leaves FD_READ out). */
    int readable = (rights_base & RIGHT_FD_READ) != 0;
    int writable = (rights_base & RIGHT_FD_WRITE) != 0;
    int flags = VFS_O_READ;
    if (writable) flags |= VFS_O_WRITE;
    if (oflags & OFLAG_CREAT) flags |= VFS_O_CREATE;
    if (oflags & OFLAG_EXCL) flags |= VFS_O_EXCLUSIVE;
    if (oflags & OFLAG_TRUNC) flags |= VFS_O_TRUNCATE;
    if (oflags & OFLAG_DIRECTORY) flags |= VFS_O_DIRECTORY;

    vfs_file *file;
    int status = vfs_open(w->fs, absolute, flags, &file);
    if (status == -EISDIR && writable && !(oflags & (OFLAG_CREAT | OFLAG_TRUNC))) {
        /* open(dir, O_RDWR) is EISDIR on Linux; libc's opendir never asks
         * for write, so this only reports the error correctly. */
        return WASI_EISDIR;
    }
    if (status) return wasi_errno_from_posix(status);
    u32 fd;
    status = allocate_fd(w, &fd);
    if (status == 0) status = wasi_install(w, fd, file, absolute, readable, writable, 0);
    vfs_file_release(file);
    if (status) return wasi_errno_from_posix(status);
    w->fds[fd].flags = (u16)(fdflags & 0x1f);
    put32(guest(w, fd_out, 4), fd);
    return WASI_ESUCCESS;
}

u32 Z_wasi_snapshot_preview1Z_path_readlink(wasi *w, u32 fd, u32 path, u32 length, u32 buffer,
                                            u32 buffer_length, u32 out) {
    (void)buffer, (void)buffer_length, (void)out;
    char absolute[VFS_PATH_MAX];
    vfs_metadata st;
    u32 rc = guest_path(w, fd, path, length, absolute);
    if (rc) return rc;
    int status = vfs_stat(w->fs, absolute, &st);
    return status ? wasi_errno_from_posix(status) : WASI_EINVAL; /* exists, not a link */
}

u32 Z_wasi_snapshot_preview1Z_path_remove_directory(wasi *w, u32 fd, u32 path, u32 length) {
    char absolute[VFS_PATH_MAX];
    u32 rc = guest_path(w, fd, path, length, absolute);
    return rc ? rc : wasi_errno_from_posix(vfs_rmdir(w->fs, absolute));
}

u32 Z_wasi_snapshot_preview1Z_path_rename(wasi *w, u32 fd, u32 old_path, u32 old_length,
                                          u32 new_fd, u32 new_path, u32 new_length) {
    char from[VFS_PATH_MAX], to[VFS_PATH_MAX];
    u32 rc = guest_path(w, fd, old_path, old_length, from);
    if (!rc) rc = guest_path(w, new_fd, new_path, new_length, to);
    return rc ? rc : wasi_errno_from_posix(vfs_rename(w->fs, from, to));
}

u32 Z_wasi_snapshot_preview1Z_path_symlink(wasi *w, u32 old_path, u32 old_length, u32 fd,
                                           u32 new_path, u32 new_length) {
    (void)w, (void)old_path, (void)old_length, (void)fd, (void)new_path, (void)new_length;
    return WASI_EPERM;
}

u32 Z_wasi_snapshot_preview1Z_path_unlink_file(wasi *w, u32 fd, u32 path, u32 length) {
    char absolute[VFS_PATH_MAX];
    u32 rc = guest_path(w, fd, path, length, absolute);
    return rc ? rc : wasi_errno_from_posix(vfs_unlink(w->fs, absolute));
}

/* --- polling, processes --------------------------------------------------- */

/* Every descriptor is always ready (reads from the VFS never block), so
 * only clock subscriptions can make this wait: sleep until the earliest. */
u32 Z_wasi_snapshot_preview1Z_poll_oneoff(wasi *w, u32 in, u32 out, u32 count, u32 events_out) {
    if (count == 0) return WASI_EINVAL;
    if (count > 4096) return WASI_EINVAL;
    const u8 *subscriptions = guest(w, in, (u64)count * SUBSCRIPTION_SIZE);
    u8 *events = guest(w, out, (u64)count * EVENT_SIZE);
    if (!subscriptions || !events || !guest(w, events_out, 4)) return WASI_EFAULT;

    u32 ready = 0;
    int64_t earliest = -1; /* index of the clock that fires first */
    u64 earliest_wait = UINT64_MAX;
    for (u32 i = 0; i < count; i++) {
        const u8 *s = subscriptions + (size_t)i * SUBSCRIPTION_SIZE;
        u8 tag = s[8];
        if (tag == EVENT_CLOCK) {
            clockid_t clock;
            u64 timeout = get64(s + 24), wait = timeout;
            if (host_clock(get32(s + 16), &clock)) continue;
            if (get32(s + 40) & SUBSCRIPTION_CLOCK_ABSTIME) {
                u64 now_ns = 0;
                guest_clock_now(w, clock, &now_ns);
                wait = timeout > now_ns ? timeout - now_ns : 0;
            }
            if (wait < earliest_wait) earliest_wait = wait, earliest = i;
        } else if (tag == EVENT_FD_READ || tag == EVENT_FD_WRITE) {
            /* Read the subscription before writing the event: the guest
             * may overlap the two arrays, and memcpy between overlapping
             * ranges is undefined (found by tests/fuzz). */
            u8 *e = events + (size_t)ready * EVENT_SIZE;
            u8 userdata[8];
            memcpy(userdata, s, 8);
            u16 error = lookup(w, get32(s + 16)) ? WASI_ESUCCESS : WASI_EBADF;
            memset(e, 0, EVENT_SIZE);
            memcpy(e, userdata, 8);
            put16(e + 8, error);
            e[10] = tag;
            put64(e + 16, 0);
            ready++;
        }
    }
    if (ready == 0 && earliest >= 0) {
        struct timespec pause = {(time_t)(earliest_wait / 1000000000u),
                                 (long)(earliest_wait % 1000000000u)};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {}
        u8 *e = events, userdata[8];
        memcpy(userdata, subscriptions + (size_t)earliest * SUBSCRIPTION_SIZE, 8);
        memset(e, 0, EVENT_SIZE);
        memcpy(e, userdata, 8);
        e[10] = EVENT_CLOCK;
        ready = 1;
    }
    put32(guest(w, events_out, 4), ready);
    return WASI_ESUCCESS;
}

void Z_wasi_snapshot_preview1Z_proc_exit(wasi *w, u32 code) {
    w->exited = 1;
    w->exit_code = code;
    /* Unwind out of the guest; the runtime checks wasi_exited() first, so
     * this is an exit, not a fault. */
    wasm_rt_trap(WASM_RT_TRAP_UNREACHABLE);
}

u32 Z_wasi_snapshot_preview1Z_sched_yield(wasi *w) {
    (void)w;
    return WASI_ESUCCESS;
}

/* --- sockets: the guest has none ------------------------------------------ */

u32 Z_wasi_snapshot_preview1Z_sock_accept(wasi *w, u32 fd, u32 flags, u32 out) {
    (void)flags, (void)out;
    return lookup(w, fd) ? WASI_ENOTSOCK : WASI_EBADF;
}

u32 Z_wasi_snapshot_preview1Z_sock_recv(wasi *w, u32 fd, u32 iovs, u32 count, u32 flags,
                                        u32 size_out, u32 flags_out) {
    (void)iovs, (void)count, (void)flags, (void)size_out, (void)flags_out;
    return lookup(w, fd) ? WASI_ENOTSOCK : WASI_EBADF;
}

u32 Z_wasi_snapshot_preview1Z_sock_send(wasi *w, u32 fd, u32 iovs, u32 count, u32 flags,
                                        u32 size_out) {
    (void)iovs, (void)count, (void)flags, (void)size_out;
    return lookup(w, fd) ? WASI_ENOTSOCK : WASI_EBADF;
}

u32 Z_wasi_snapshot_preview1Z_sock_shutdown(wasi *w, u32 fd, u32 how) {
    (void)how;
    return lookup(w, fd) ? WASI_ENOTSOCK : WASI_EBADF;
}
