/*
 * vfs.h — the sandbox's virtual file system.
 *
 * The guest sees one tree of absolute paths.  It is built from mounts: each
 * mount attaches a backend (in-memory scratch, read-only image, and later
 * host directories and resource providers) at a guest path.  WASI talks only
 * to this interface, so a new kind of mount never touches the WASI layer.
 *
 * Invariants:
 * - Paths given to backends are relative to the mount root, already
 *   normalised: no ".", "..", empty components or leading/trailing "/".
 *   The root of a mount is "".  A backend therefore cannot be asked for
 *   anything outside itself; ".." is resolved lexically here, clamped at "/".
 * - Lexical ".." is exact because no backend has symbolic links the guest can
 *   create or follow (path_symlink is refused).
 * - Errors are negative POSIX errno values (-ENOENT, ...); the WASI layer
 *   maps them to WASI errno.  0 is success.
 * - Quotas: the scratch file system counts file bytes and entries (files
 *   and directories) against limits; exceeding either is ENOSPC.
 */
#ifndef CAP_VFS_H
#define CAP_VFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VFS_PATH_MAX 4096
#define VFS_NAME_MAX 255

typedef enum { VFS_FILE = 1, VFS_DIRECTORY = 2, VFS_CHARACTER_DEVICE = 3 } vfs_type;

typedef struct vfs_metadata {
    vfs_type type;
    uint64_t size;
    uint64_t inode;
    uint64_t mtime_ns; /* modification time, ns since the epoch */
    uint64_t links;
    uint64_t atime_ns; /* access time; 0: the same as mtime_ns */
} vfs_metadata;

typedef struct vfs_dirent {
    char name[VFS_NAME_MAX + 1];
    vfs_type type;
    uint64_t inode;
} vfs_dirent;

/* Open flags understood by backends. */
enum {
    VFS_O_READ = 1,
    VFS_O_WRITE = 2,
    VFS_O_CREATE = 4,
    VFS_O_EXCLUSIVE = 8,
    VFS_O_TRUNCATE = 16,
    VFS_O_DIRECTORY = 32,
};

typedef struct vfs_file vfs_file;

/* Operations on an open file.  Offsets are explicit: the fd table (WASI)
 * owns the cursor, so a file object can be shared by dup'd descriptors. */
typedef struct vfs_file_ops {
    int (*read)(vfs_file *file, void *buffer, size_t size, uint64_t offset, size_t *done);
    int (*write)(vfs_file *file, const void *buffer, size_t size, uint64_t offset, size_t *done);
    int (*stat)(vfs_file *file, vfs_metadata *st);
    int (*truncate)(vfs_file *file, uint64_t size);
    /* Directory listing: entry number `cookie` (0-based) into *entry;
     * returns 1 if there was one, 0 at the end, or a negative errno. */
    int (*readdir)(vfs_file *file, uint64_t cookie, vfs_dirent *entry);
    void (*close)(vfs_file *file);
} vfs_file_ops;

struct vfs_file {
    const vfs_file_ops *ops;
    vfs_type type;
    int refcount; /* descriptors sharing this open file */
};

/* A backend mounted somewhere.  `path` arguments are mount-relative. */
typedef struct vfs_backend_ops {
    int (*stat)(void *backend, const char *path, vfs_metadata *st);
    int (*open)(void *backend, const char *path, int flags, vfs_file **out);
    int (*mkdir)(void *backend, const char *path);
    int (*rmdir)(void *backend, const char *path);
    int (*unlink)(void *backend, const char *path);
    int (*rename)(void *backend, const char *from, const char *to);
    void (*destroy)(void *backend);
    /* Sets the access and/or modification time (NULL: leave it); NULL
     * for backends that keep no times of their own. */
    int (*set_times)(void *backend, const char *path, const uint64_t *atime_ns,
                     const uint64_t *mtime_ns);
} vfs_backend_ops;

typedef struct vfs vfs;

vfs *vfs_new(void);
void vfs_free(vfs *fs);

/* Attaches `backend` at the absolute guest path `at`.  The vfs takes
 * ownership and calls ops->destroy when freed.  A later mount at the same
 * path replaces nothing: it is an error (-EEXIST). */
int vfs_mount(vfs *fs, const char *at, const vfs_backend_ops *ops, void *backend, int read_only);

/* Normalises `path` (absolute, or relative to the absolute `base`) into
 * `out` (VFS_PATH_MAX bytes): "/a/b", never a trailing "/".
 * Returns 0, -ENOENT (empty path), -ENAMETOOLONG or -EINVAL (NUL inside). */
int vfs_normalize(const char *base, const char *path, size_t path_size, char *out);

/* Operations on absolute normalised guest paths. */
int vfs_stat(vfs *fs, const char *path, vfs_metadata *st);
/* 1 if `path` lies in a read-only mount. */
int vfs_is_read_only(vfs *fs, const char *path);
/* The `index`th mount point (in mount order) into *at, and whether it is
 * read-only; -ENOENT past the last. */
int vfs_mount_point(vfs *fs, int index, const char **at, int *read_only);
int vfs_open(vfs *fs, const char *path, int flags, vfs_file **out);
int vfs_mkdir(vfs *fs, const char *path);
int vfs_rmdir(vfs *fs, const char *path);
int vfs_unlink(vfs *fs, const char *path);
int vfs_rename(vfs *fs, const char *from, const char *to);
/* os.utime: NULL leaves a time as it is.  -EROFS on read-only mounts; a
 * backend that keeps no times accepts and ignores it. */
int vfs_set_times(vfs *fs, const char *path, const uint64_t *atime_ns, const uint64_t *mtime_ns);

void vfs_file_retain(vfs_file *file);
void vfs_file_release(vfs_file *file);

/* Character devices (stdio, control channels) supply read and write and
 * use these for the rest; the device object must be malloc'd, with the
 * vfs_file first (device.c). */
int vfs_device_stat(vfs_file *file, vfs_metadata *st);
int vfs_device_truncate(vfs_file *file, uint64_t size);
int vfs_device_readdir(vfs_file *file, uint64_t cookie, vfs_dirent *entry);
void vfs_device_close(vfs_file *file);

/* --- Backends ----------------------------------------------------------- */

/* In-memory read-write tree; `quota_bytes` of file data at most (0: none). */
int vfs_memfs_new(uint64_t quota_bytes, const vfs_backend_ops **ops, void **backend);
/* Changes the byte quota (0: none); files already there stay. */
void vfs_memfs_set_quota(void *memfs, uint64_t quota_bytes);
/* Bounds the files and directories it holds, the root excluded (0: none);
 * creating one more is ENOSPC.  Entries already there stay. */
void vfs_memfs_set_entry_limit(void *memfs, uint64_t entries);
/* Creates (or replaces) a file with the given content, making parents. */
int vfs_memfs_put(void *memfs, const char *path, const void *data, size_t size);

/* Writes the whole tree (directories, files, their bytes and times) as
 * one stream through `write` (0 or a negative errno, which stops the walk);
 * vfs_memfs_load puts it back.  Open files and unlinked-but-open data are
 * not part of it.  Durable sessions keep a session's scratch space this way. */
typedef int (*vfs_memfs_writer)(void *context, const void *data, size_t size);
int vfs_memfs_save(void *memfs, vfs_memfs_writer write, void *context);
/* Adds what vfs_memfs_save wrote to the tree (directories that exist are
 * kept, files replaced), within the quota and entry limit.  A stream that is
 * malformed in any way (bad magic, lengths past the end, a path with "..")
 * is -EINVAL, possibly after earlier entries were added: load into a tree
 * that is thrown away on failure. */
int vfs_memfs_load(void *memfs, const void *data, size_t size);

/* /dev: null, zero, random, urandom; nothing can be created there. */
int vfs_devfs_new(const vfs_backend_ops **ops, void **backend);

/* Read-only image built by tools/mkimage.py; shared, reference counted. */
typedef struct vfs_image vfs_image;
int vfs_image_open(const char *host_path, vfs_image **out);
/* The same from an open descriptor (not closed: the mapping outlives it). */
int vfs_image_open_fd(int fd, vfs_image **out);
/* What identifies an image's content without reading its data: its size,
 * its modification time (as opened) and its header and entry table, which
 * hold every path's and every file's offset and size.  A key for things
 * derived from the image (start_image.c). */
void vfs_image_identity(const vfs_image *image, uint64_t *size, uint64_t *mtime_ns,
                        const void **table, size_t *table_size);
void vfs_image_retain(vfs_image *image);
void vfs_image_release(vfs_image *image);
/* A backend view of an image; destroying it releases one reference. */
int vfs_image_backend(vfs_image *image, const vfs_backend_ops **ops, void **backend);

/* Writes images (environments of installed packages, built by the host):
 * files are added by relative path in any order, parent directories are
 * implied, and the result is what vfs_image_open reads. */
typedef struct vfs_image_builder vfs_image_builder;
vfs_image_builder *vfs_image_builder_new(void);
/* Copies `data`.  The path must be relative and plain ("a/b.py": no "",
 * ".", ".." component, no NUL); a path added twice, or a file where a
 * directory is (or the reverse), is -EEXIST. */
int vfs_image_builder_add(vfs_image_builder *builder, const char *path, const void *data,
                          size_t size);
/* Writes the image to `fd` (at its current offset); 0 or -errno. */
int vfs_image_builder_write(vfs_image_builder *builder, int fd);
void vfs_image_builder_free(vfs_image_builder *builder);

/* Read-only directory of named resources whose content `fetch` produces
 * on each open (malloc'd bytes into *data, or a negative errno).  A count
 * of -1: any plain name may be opened, and the listing is empty. */
typedef int (*vfs_resource_fetch)(void *context, const char *name, unsigned char **data,
                                  size_t *size);
/* A resource name may be a template with one "{}": `name` (of `name_size`
 * bytes) matches when it is the template with "{}" replaced by a non-empty
 * plain value (no '/', not "." or "..").  Returns the value's length, its
 * offset in *start; 0 when it does not match. */
size_t vfs_template_match(const char *template, const char *name, size_t name_size,
                          size_t *start);
/* Hands `size` bytes written at `offset` of `name` to the host (0 or a
 * negative errno); NULL for a read-only directory. */
typedef int (*vfs_resource_store)(void *context, const char *name, uint64_t offset,
                                  const void *data, size_t size);
int vfs_resource_new(const char *const *names, int count, vfs_resource_fetch fetch,
                     vfs_resource_store store, void *context, const vfs_backend_ops **ops,
                     void **backend);

/* A host directory served by a broker in the host process.  Requests are
 * an op, a mount-relative path and, for some ops, input bytes:
 *   's' stat: answer five u64 (type, size, inode, mtime_ns, links)
 *   'l' list: answer entries "f" or "d", name, NUL
 *   'r' read: answer the bytes
 * and on writable mounts only (the host enforces this and the quota):
 *   'c' create (input: one byte, 1 = exclusive)   'p' write (input: u64 offset, bytes)
 *   't' truncate (input: u64 size)   'm' mkdir   'u' unlink   'd' rmdir
 *   'n' rename (input: the new mount-relative path)
 *   'T' set times (input: u64 atime_ns, u64 mtime_ns; all ones: leave it)
 * A malloc'd answer goes to *data (may be empty), or a negative errno. */
typedef int (*vfs_host_broker)(void *context, char op, const char *path, const void *input,
                               size_t input_size, unsigned char **data, size_t *size);
int vfs_hostfs_new(vfs_host_broker broker, void *context, int writable,
                   const vfs_backend_ops **ops, void **backend);

#endif /* CAP_VFS_H */
