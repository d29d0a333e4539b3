/*
 * SQLite operating-system layer for the wasm32-wasi guest.
 *
 * SQLite's own unix VFS needs fcntl() record locks, mmap and fchown, none of
 * which WASI preview1 has.  This VFS does plain POSIX I/O through wasi-libc
 * (which reaches capsule's VFS through WASI), gets randomness from
 * getentropy() and time from clock_gettime().  Built with SQLITE_OS_OTHER=1,
 * so SQLite calls sqlite3_os_init() below to register it as the default.
 *
 * Locking.  A sandbox is one process with one thread, but one program may
 * open several connections to the same database file, and each must see the
 * others' commits: SQLite re-reads its cache only when it takes a SHARED lock
 * and finds the file changed, and refuses to write while another connection
 * reads only if the locks say so.  Without real locks a second connection
 * keeps stale pages and overwrites the first one's commits.  So the locks are
 * kept in process, per database file (keyed by its full path: the guest
 * cannot make hard links or symbolic links, so a path names one file), with
 * exactly the state machine of SQLite's unix VFS minus fcntl(): a lock that
 * another connection's lock precludes is SQLITE_BUSY.  The WAL index ("shared
 * memory") is kept the same way, in process memory shared by the
 * connections of one file, so journal_mode=WAL works; it is rebuilt from the
 * -wal file when the first connection opens it, as after a crash.
 *
 * Nothing here is a security boundary: the guest is sandboxed as a whole.
 * A database on a read-write host mount is not locked against host
 * processes that write it at the same time.
 */
#include "sqlite3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WASI_MAX_PATHNAME 1024

typedef struct WasiShmConnection WasiShmConnection;

/* What the connections of one database file share: the lock state of
 * SQLite's unix VFS (unixInodeInfo) and the WAL index regions. */
typedef struct WasiSharedFile {
    char *path;                 /* full path, the key */
    int references;             /* open WasiFiles on this path */
    int lock;                   /* strongest lock any connection holds */
    int shared_count;           /* connections holding SHARED or more */
    int region_size;            /* WAL index: bytes per region (32 KiB) */
    int region_count;
    char **regions;             /* zero-filled on creation */
    WasiShmConnection *shm;     /* connections that mapped the WAL index */
    struct WasiSharedFile *next;
} WasiSharedFile;

/* One connection's hold on the WAL index's eight lock slots. */
struct WasiShmConnection {
    WasiSharedFile *file;
    unsigned short shared_mask;    /* slots held shared */
    unsigned short exclusive_mask; /* slots held exclusively */
    WasiShmConnection *next;
};

typedef struct WasiFile {
    sqlite3_file base; /* must be first: SQLite casts between the two */
    int fd;
    int lock;                  /* this connection's lock level */
    WasiSharedFile *shared;    /* NULL for temporary and journal files */
    WasiShmConnection *shm;    /* NULL until the WAL index is mapped */
} WasiFile;

static WasiSharedFile *shared_files;

/* The shared state of `path`, created on first use; NULL when out of
 * memory.  Every call is matched by one shared_file_release(). */
static WasiSharedFile *shared_file_retain(const char *path) {
    for (WasiSharedFile *s = shared_files; s; s = s->next) {
        if (strcmp(s->path, path) == 0) {
            s->references++;
            return s;
        }
    }
    WasiSharedFile *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return NULL;
    }
    s->references = 1;
    s->next = shared_files;
    shared_files = s;
    return s;
}

static void shared_file_release(WasiSharedFile *s) {
    if (--s->references > 0) return;
    for (WasiSharedFile **link = &shared_files; *link; link = &(*link)->next) {
        if (*link == s) {
            *link = s->next;
            break;
        }
    }
    for (int i = 0; i < s->region_count; i++) free(s->regions[i]);
    free(s->regions);
    free(s->path);
    free(s);
}

static int wasiUnlock(sqlite3_file *file, int level);
static int wasiShmUnmap(sqlite3_file *file, int delete_flag);

static int wasiClose(sqlite3_file *file) {
    WasiFile *f = (WasiFile *)file;
    if (f->shared) {
        wasiUnlock(file, SQLITE_LOCK_NONE);
        wasiShmUnmap(file, 0);
        shared_file_release(f->shared);
        f->shared = NULL;
    }
    int rc = close(f->fd);
    return rc == 0 ? SQLITE_OK : SQLITE_IOERR_CLOSE;
}

static int wasiRead(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
    WasiFile *f = (WasiFile *)file;
    char *out = buffer;
    int done = 0;
    while (done < amount) {
        ssize_t n = pread(f->fd, out + done, (size_t)(amount - done), offset + done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return SQLITE_IOERR_READ;
        }
        if (n == 0) break;
        done += (int)n;
    }
    if (done < amount) {
        /* SQLite requires the unread tail to be zeroed on a short read. */
        memset(out + done, 0, (size_t)(amount - done));
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

static int wasiWrite(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
    WasiFile *f = (WasiFile *)file;
    const char *in = buffer;
    int done = 0;
    while (done < amount) {
        ssize_t n = pwrite(f->fd, in + done, (size_t)(amount - done), offset + done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
        }
        done += (int)n;
    }
    return SQLITE_OK;
}

static int wasiTruncate(sqlite3_file *file, sqlite3_int64 size) {
    WasiFile *f = (WasiFile *)file;
    return ftruncate(f->fd, size) == 0 ? SQLITE_OK : SQLITE_IOERR_TRUNCATE;
}

static int wasiSync(sqlite3_file *file, int flags) {
    (void)flags;
    WasiFile *f = (WasiFile *)file;
    return fsync(f->fd) == 0 ? SQLITE_OK : SQLITE_IOERR_FSYNC;
}

static int wasiFileSize(sqlite3_file *file, sqlite3_int64 *size) {
    WasiFile *f = (WasiFile *)file;
    struct stat st;
    if (fstat(f->fd, &st) != 0) return SQLITE_IOERR_FSTAT;
    *size = st.st_size;
    return SQLITE_OK;
}

/* unixLock() without fcntl(): the only other lock holders are this
 * process's other connections to the same file.  A request that a lock held
 * through another connection precludes is SQLITE_BUSY; a failed EXCLUSIVE
 * leaves PENDING, which keeps new readers out until the writer gets in. */
static int wasiLock(sqlite3_file *file, int level) {
    WasiFile *f = (WasiFile *)file;
    WasiSharedFile *s = f->shared;
    if (f->lock >= level) return SQLITE_OK;
    if (!s) {
        f->lock = level;
        return SQLITE_OK;
    }
    if (f->lock != s->lock && (s->lock >= SQLITE_LOCK_PENDING || level > SQLITE_LOCK_SHARED))
        return SQLITE_BUSY;
    if (level == SQLITE_LOCK_SHARED) {
        s->shared_count++;
        if (s->lock < SQLITE_LOCK_SHARED) s->lock = SQLITE_LOCK_SHARED;
        f->lock = SQLITE_LOCK_SHARED;
        return SQLITE_OK;
    }
    if (level == SQLITE_LOCK_EXCLUSIVE && s->shared_count > 1) {
        f->lock = s->lock = SQLITE_LOCK_PENDING;
        return SQLITE_BUSY;
    }
    f->lock = s->lock = level;
    return SQLITE_OK;
}

static int wasiUnlock(sqlite3_file *file, int level) {
    WasiFile *f = (WasiFile *)file;
    WasiSharedFile *s = f->shared;
    if (f->lock <= level) return SQLITE_OK;
    if (s) {
        if (f->lock > SQLITE_LOCK_SHARED) s->lock = SQLITE_LOCK_SHARED;
        if (level == SQLITE_LOCK_NONE && --s->shared_count == 0) s->lock = SQLITE_LOCK_NONE;
    }
    f->lock = level;
    return SQLITE_OK;
}

static int wasiCheckReservedLock(sqlite3_file *file, int *reserved) {
    WasiFile *f = (WasiFile *)file;
    *reserved = f->shared ? f->shared->lock > SQLITE_LOCK_SHARED : 0;
    return SQLITE_OK;
}

/* The WAL index.  Regions live in process memory shared by the file's
 * connections; SQLite asks for them one 32 KiB region at a time. */
static int wasiShmMap(sqlite3_file *file, int region, int region_size, int extend,
                      void volatile **out) {
    WasiFile *f = (WasiFile *)file;
    WasiSharedFile *s = f->shared;
    *out = NULL;
    if (!s) return SQLITE_IOERR_SHMOPEN;
    if (!f->shm) {
        f->shm = calloc(1, sizeof *f->shm);
        if (!f->shm) return SQLITE_NOMEM;
        f->shm->file = s;
        f->shm->next = s->shm;
        s->shm = f->shm;
    }
    if (s->region_count > 0 && s->region_size != region_size) return SQLITE_IOERR_SHMSIZE;
    if (region >= s->region_count) {
        if (!extend) return SQLITE_OK;
        char **regions = realloc(s->regions, (size_t)(region + 1) * sizeof *regions);
        if (!regions) return SQLITE_NOMEM;
        s->regions = regions;
        while (s->region_count <= region) {
            s->regions[s->region_count] = calloc(1, (size_t)region_size);
            if (!s->regions[s->region_count]) return SQLITE_NOMEM;
            s->region_count++;
        }
        s->region_size = region_size;
    }
    *out = s->regions[region];
    return SQLITE_OK;
}

/* unixShmLock()'s in-process part: slots [offset, offset+count) taken
 * shared or exclusive, or released; a conflict with another connection's
 * hold is SQLITE_BUSY. */
static int wasiShmLock(sqlite3_file *file, int offset, int count, int flags) {
    WasiFile *f = (WasiFile *)file;
    WasiShmConnection *me = f->shm;
    if (!me || offset < 0 || count < 1 || offset + count > SQLITE_SHM_NLOCK) return SQLITE_IOERR_SHMLOCK;
    unsigned short mask = (unsigned short)((1u << (offset + count)) - (1u << offset));
    if (flags & SQLITE_SHM_UNLOCK) {
        me->shared_mask &= (unsigned short)~mask;
        me->exclusive_mask &= (unsigned short)~mask;
        return SQLITE_OK;
    }
    for (WasiShmConnection *other = me->file->shm; other; other = other->next) {
        if (other == me) continue;
        if (other->exclusive_mask & mask) return SQLITE_BUSY;
        if ((flags & SQLITE_SHM_EXCLUSIVE) && (other->shared_mask & mask)) return SQLITE_BUSY;
    }
    if (flags & SQLITE_SHM_SHARED)
        me->shared_mask |= mask;
    else
        me->exclusive_mask |= mask;
    return SQLITE_OK;
}

static void wasiShmBarrier(sqlite3_file *file) {
    (void)file; /* one thread: program order is memory order */
}

/* Drops this connection's hold; the regions stay while the file is open
 * through any connection, and go with it (there is no -shm file). */
static int wasiShmUnmap(sqlite3_file *file, int delete_flag) {
    (void)delete_flag;
    WasiFile *f = (WasiFile *)file;
    if (!f->shm) return SQLITE_OK;
    for (WasiShmConnection **link = &f->shared->shm; *link; link = &(*link)->next) {
        if (*link == f->shm) {
            *link = f->shm->next;
            break;
        }
    }
    free(f->shm);
    f->shm = NULL;
    return SQLITE_OK;
}

static int wasiFileControl(sqlite3_file *file, int op, void *arg) {
    (void)file, (void)op, (void)arg;
    return SQLITE_NOTFOUND;
}

static int wasiSectorSize(sqlite3_file *file) {
    (void)file;
    return 4096;
}

static int wasiDeviceCharacteristics(sqlite3_file *file) {
    (void)file;
    return 0;
}

static const sqlite3_io_methods wasi_io_methods = {
    2,
    wasiClose,
    wasiRead,
    wasiWrite,
    wasiTruncate,
    wasiSync,
    wasiFileSize,
    wasiLock,
    wasiUnlock,
    wasiCheckReservedLock,
    wasiFileControl,
    wasiSectorSize,
    wasiDeviceCharacteristics,
    wasiShmMap,
    wasiShmLock,
    wasiShmBarrier,
    wasiShmUnmap,
    0, 0,
};

static int wasiRandomness(sqlite3_vfs *vfs, int amount, char *out);

static int wasiOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                    int *out_flags) {
    WasiFile *f = (WasiFile *)file;
    char temp_name[64];
    int oflags = 0;

    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (name == NULL) {
        /* SQLite asks for an anonymous temporary file. */
        unsigned char random_bytes[8];
        wasiRandomness(vfs, sizeof random_bytes, (char *)random_bytes);
        snprintf(temp_name, sizeof temp_name, "/tmp/sqlite-%02x%02x%02x%02x%02x%02x%02x%02x",
                 random_bytes[0], random_bytes[1], random_bytes[2], random_bytes[3],
                 random_bytes[4], random_bytes[5], random_bytes[6], random_bytes[7]);
        name = temp_name;
        flags |= SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_EXCLUSIVE;
    }
    if (flags & SQLITE_OPEN_EXCLUSIVE) oflags |= O_EXCL;
    if (flags & SQLITE_OPEN_CREATE) oflags |= O_CREAT;
    oflags |= (flags & SQLITE_OPEN_READWRITE) ? O_RDWR : O_RDONLY;

    f->fd = open(name, oflags, 0600);
    if (f->fd < 0 && (flags & SQLITE_OPEN_READWRITE) && !(flags & SQLITE_OPEN_CREATE)) {
        /* A read-only file (a read-only mount) still opens, read-only. */
        f->fd = open(name, O_RDONLY);
        if (f->fd >= 0) flags = (flags & ~SQLITE_OPEN_READWRITE) | SQLITE_OPEN_READONLY;
    }
    if (f->fd < 0) return SQLITE_CANTOPEN;
    if (name == temp_name || (flags & SQLITE_OPEN_DELETEONCLOSE)) unlink(name);
    if (flags & SQLITE_OPEN_MAIN_DB) {
        /* SQLite passes the name xFullPathname made, so equal files have
         * equal names. */
        f->shared = shared_file_retain(name);
        if (!f->shared) {
            close(f->fd);
            f->fd = -1;
            return SQLITE_NOMEM;
        }
    }
    if (out_flags) *out_flags = flags;
    f->base.pMethods = &wasi_io_methods;
    return SQLITE_OK;
}

static int wasiDelete(sqlite3_vfs *vfs, const char *path, int sync_dir) {
    (void)vfs, (void)sync_dir;
    if (unlink(path) != 0) return errno == ENOENT ? SQLITE_IOERR_DELETE_NOENT : SQLITE_IOERR_DELETE;
    return SQLITE_OK;
}

static int wasiAccess(sqlite3_vfs *vfs, const char *path, int flags, int *result) {
    (void)vfs;
    struct stat st;
    if (stat(path, &st) != 0) {
        *result = 0;
        return SQLITE_OK;
    }
    if (flags == SQLITE_ACCESS_EXISTS)
        *result = 1;
    else
        *result = access(path, flags == SQLITE_ACCESS_READWRITE ? (R_OK | W_OK) : R_OK) == 0;
    return SQLITE_OK;
}

/* Absolute and lexically normal ("/a/b": no ".", "..", "//"), so that one
 * file has one name: the in-process locks are keyed by it.  Lexical ".." is
 * exact because the guest has no symbolic links. */
static int wasiFullPathname(sqlite3_vfs *vfs, const char *path, int size, char *out) {
    (void)vfs;
    char joined[2 * WASI_MAX_PATHNAME + 2];
    int n;
    if (path[0] == '/') {
        n = snprintf(joined, sizeof joined, "%s", path);
    } else {
        char cwd[WASI_MAX_PATHNAME];
        if (getcwd(cwd, sizeof cwd) == NULL) return SQLITE_IOERR;
        n = snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    }
    if (n < 0 || (size_t)n >= sizeof joined) return SQLITE_CANTOPEN;
    int length = 0; /* of out, which never ends in '/' */
    for (const char *p = joined; *p;) {
        while (*p == '/') p++;
        const char *end = strchr(p, '/');
        size_t part = end ? (size_t)(end - p) : strlen(p);
        if (part == 0 || (part == 1 && p[0] == '.')) {
            /* nothing */
        } else if (part == 2 && p[0] == '.' && p[1] == '.') {
            while (length > 0 && out[length - 1] != '/') length--;
            if (length > 0) length--;
        } else {
            if (length + 1 + (int)part + 1 > size) return SQLITE_CANTOPEN;
            out[length++] = '/';
            memcpy(out + length, p, part);
            length += (int)part;
        }
        p += part;
    }
    if (length == 0) {
        if (size < 2) return SQLITE_CANTOPEN;
        out[length++] = '/';
    }
    out[length] = '\0';
    return SQLITE_OK;
}

/* No dynamic loading in WASI: extensions are compiled out
 * (SQLITE_OMIT_LOAD_EXTENSION), so these are never called. */
static void *wasiDlOpen(sqlite3_vfs *vfs, const char *path) {
    (void)vfs, (void)path;
    return NULL;
}

static void wasiDlError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    sqlite3_snprintf(size, message, "loadable extensions are not supported");
}

static void (*wasiDlSym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs, (void)handle, (void)symbol;
    return NULL;
}

static void wasiDlClose(sqlite3_vfs *vfs, void *handle) {
    (void)vfs, (void)handle;
}

static int wasiRandomness(sqlite3_vfs *vfs, int amount, char *out) {
    (void)vfs;
    int done = 0;
    while (done < amount) {
        int chunk = amount - done > 256 ? 256 : amount - done; /* getentropy's limit */
        if (getentropy(out + done, (size_t)chunk) != 0) break;
        done += chunk;
    }
    return done;
}

static int wasiSleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    struct timespec ts = {microseconds / 1000000, (long)(microseconds % 1000000) * 1000};
    nanosleep(&ts, NULL);
    return microseconds;
}

static int wasiCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    (void)vfs;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Milliseconds since the Julian epoch, as SQLite wants. */
    *now = (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 210866760000000LL;
    return SQLITE_OK;
}

static int wasiCurrentTime(sqlite3_vfs *vfs, double *now) {
    sqlite3_int64 ms;
    wasiCurrentTimeInt64(vfs, &ms);
    *now = (double)ms / 86400000.0;
    return SQLITE_OK;
}

static int wasiGetLastError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    if (size > 0) sqlite3_snprintf(size, message, "%s", strerror(errno));
    return errno;
}

static sqlite3_vfs wasi_vfs = {
    2,                   /* iVersion */
    sizeof(WasiFile),    /* szOsFile */
    WASI_MAX_PATHNAME,   /* mxPathname */
    0,                   /* pNext */
    "wasi",              /* zName */
    0,                   /* pAppData */
    wasiOpen,
    wasiDelete,
    wasiAccess,
    wasiFullPathname,
    wasiDlOpen,
    wasiDlError,
    wasiDlSym,
    wasiDlClose,
    wasiRandomness,
    wasiSleep,
    wasiCurrentTime,
    wasiGetLastError,
    wasiCurrentTimeInt64,
    0, 0, 0,
};

int sqlite3_os_init(void) {
    return sqlite3_vfs_register(&wasi_vfs, 1);
}

int sqlite3_os_end(void) {
    return SQLITE_OK;
}
