/*
 * SQLite operating-system layer for the wasm32-wasi guest.
 *
 * SQLite's own unix VFS needs fcntl() record locks, mmap and fchown, none of
 * which WASI preview1 has.  A sandbox is one process with one thread, so no
 * locking is needed: this VFS does plain POSIX I/O through wasi-libc (which
 * reaches capsule's VFS through WASI), gets randomness from getentropy() and
 * time from clock_gettime().  Built with SQLITE_OS_OTHER=1, so SQLite calls
 * sqlite3_os_init() below to register it as the default.
 */
#include "sqlite3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WASI_MAX_PATHNAME 1024

typedef struct WasiFile {
    sqlite3_file base; /* must be first: SQLite casts between the two */
    int fd;
} WasiFile;

static int wasiClose(sqlite3_file *file) {
    WasiFile *f = (WasiFile *)file;
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

/* One process, one thread: every lock is granted, no lock is ever held. */
static int wasiLock(sqlite3_file *file, int level) {
    (void)file, (void)level;
    return SQLITE_OK;
}

static int wasiCheckReservedLock(sqlite3_file *file, int *reserved) {
    (void)file;
    *reserved = 0;
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
    1,
    wasiClose,
    wasiRead,
    wasiWrite,
    wasiTruncate,
    wasiSync,
    wasiFileSize,
    wasiLock,
    wasiLock,
    wasiCheckReservedLock,
    wasiFileControl,
    wasiSectorSize,
    wasiDeviceCharacteristics,
    0, 0, 0, 0, 0, 0,
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

static int wasiFullPathname(sqlite3_vfs *vfs, const char *path, int size, char *out) {
    (void)vfs;
    char cwd[WASI_MAX_PATHNAME];
    int n;
    if (path[0] == '/') {
        n = snprintf(out, (size_t)size, "%s", path);
    } else {
        if (getcwd(cwd, sizeof cwd) == NULL) return SQLITE_IOERR;
        n = snprintf(out, (size_t)size, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path);
    }
    return n < 0 || n >= size ? SQLITE_CANTOPEN : SQLITE_OK;
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
