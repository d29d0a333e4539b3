/*
 * test_unit.c — unit tests of the guest's whole view of the host: the VFS
 * (path normalisation, mount table, memfs, read-only images), the WASI
 * preview1 layer driven through a fake guest memory, and UTF-8 repair.
 *
 * Built with ASan/UBSan and run from the repository root (`make unit-test`):
 * the image tests read build/stdlib.img and compare it with build/stdlib/.
 * Every test frees what it creates, so the leak checker guards the
 * reference counting of files, nodes and images too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/libraries/digest.h"
#include "../../src/sandbox/buffer.h"
#include "../../src/sandbox/hot_pages.h"
#include "../../src/vfs/vfs.h"
#include "../../src/wasi/wasi.h"
#include "wasm-rt-impl.h"

/* The WASI imports, with the signatures of src/wasi/wasi.c.  The real build
 * checks them against wasm2c's header; this file only sees its own copy. */
uint32_t Z_wasi_snapshot_preview1Z_args_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_args_sizes_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_environ_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_environ_sizes_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_clock_res_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_clock_time_get(wasi *, uint32_t, uint64_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_random_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_close(wasi *, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_fdstat_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_filestat_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_filestat_set_size(wasi *, uint32_t, uint64_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_pread(wasi *, uint32_t, uint32_t, uint32_t, uint64_t,
                                            uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_pwrite(wasi *, uint32_t, uint32_t, uint32_t, uint64_t,
                                             uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_read(wasi *, uint32_t, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_write(wasi *, uint32_t, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_prestat_get(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(wasi *, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_readdir(wasi *, uint32_t, uint32_t, uint32_t, uint64_t,
                                              uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_seek(wasi *, uint32_t, uint64_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_fd_tell(wasi *, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_create_directory(wasi *, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_filestat_set_times(wasi *, uint32_t, uint32_t, uint32_t,
                                                           uint32_t, uint64_t, uint64_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_filestat_get(wasi *, uint32_t, uint32_t, uint32_t,
                                                     uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_link(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                             uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_open(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                             uint32_t, uint64_t, uint64_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_readlink(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                                 uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_remove_directory(wasi *, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_rename(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                               uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_symlink(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                                uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_path_unlink_file(wasi *, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_poll_oneoff(wasi *, uint32_t, uint32_t, uint32_t, uint32_t);
void Z_wasi_snapshot_preview1Z_proc_exit(wasi *, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_sock_accept(wasi *, uint32_t, uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_sock_recv(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                             uint32_t, uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_sock_send(wasi *, uint32_t, uint32_t, uint32_t, uint32_t,
                                             uint32_t);
uint32_t Z_wasi_snapshot_preview1Z_sock_shutdown(wasi *, uint32_t, uint32_t);

#define STDLIB_IMAGE "build/stdlib.img"
#define STDLIB_TREE "build/stdlib"

/* ========================================================================= */
/* VFS helpers                                                               */
/* ========================================================================= */

/* A vfs whose root is a fresh memfs; *scratch (if asked) is that backend. */
static vfs *memfs_vfs(uint64_t quota, void **scratch) {
    const vfs_backend_ops *ops;
    void *backend;
    vfs *fs = vfs_new();
    assert_non_null(fs);
    assert_int_equal(vfs_memfs_new(quota, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);
    if (scratch) *scratch = backend;
    return fs;
}

/* Mounts another memfs at `at`; returns the backend so tests can fill it. */
static void *mount_memfs(vfs *fs, const char *at, int read_only) {
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, at, ops, backend, read_only), 0);
    return backend;
}

/* The memfs operations table (one static object for every memfs), to look
 * inside a backend that a mount hides. */
static const vfs_backend_ops *memfs_ops(void) {
    const vfs_backend_ops *ops;
    void *probe;
    assert_int_equal(vfs_memfs_new(0, &ops, &probe), 0);
    ops->destroy(probe);
    return ops;
}

static void write_at(vfs_file *file, uint64_t offset, const char *text) {
    size_t done = 0;
    assert_int_equal(file->ops->write(file, text, strlen(text), offset, &done), 0);
    assert_int_equal(done, strlen(text));
}

/* Reads the whole file into `out` (NUL-terminated); returns its length. */
static size_t read_all(vfs_file *file, char *out, size_t capacity) {
    size_t total = 0, done;
    do {
        assert_int_equal(file->ops->read(file, out + total, capacity - 1 - total, total, &done),
                         0);
        total += done;
    } while (done > 0 && total < capacity - 1);
    out[total] = '\0';
    return total;
}

/* The content of the file at `path`, which must exist, as a string. */
static void read_path(vfs *fs, const char *path, char *out, size_t capacity) {
    vfs_file *file;
    assert_int_equal(vfs_open(fs, path, VFS_O_READ, &file), 0);
    read_all(file, out, capacity);
    vfs_file_release(file);
}

static void create_file(vfs *fs, const char *path, const char *text) {
    vfs_file *file;
    assert_int_equal(vfs_open(fs, path, VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    write_at(file, 0, text);
    vfs_file_release(file);
}

static uint64_t size_of(vfs *fs, const char *path) {
    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, path, &st), 0);
    return st.size;
}

/* How many times directory `dir` lists `name` (and with which type). */
static int count_entries(vfs_file *dir, const char *name, vfs_type *type) {
    int found = 0;
    vfs_dirent entry;
    for (uint64_t cookie = 0;; cookie++) {
        int rc = dir->ops->readdir(dir, cookie, &entry);
        assert_true(rc == 0 || rc == 1);
        if (rc == 0) break;
        if (strcmp(entry.name, name) == 0) {
            found++;
            if (type) *type = entry.type;
        }
    }
    return found;
}

static int lists(vfs *fs, const char *dir_path, const char *name, vfs_type *type) {
    vfs_file *dir;
    assert_int_equal(vfs_open(fs, dir_path, VFS_O_READ | VFS_O_DIRECTORY, &dir), 0);
    int found = count_entries(dir, name, type);
    vfs_file_release(dir);
    return found;
}

/* ========================================================================= */
/* vfs_normalize                                                             */
/* ========================================================================= */

static void expect_normal(const char *base, const char *path, const char *expected) {
    char out[VFS_PATH_MAX];
    int rc = vfs_normalize(base, path, strlen(path), out);
    if (rc != 0) fail_msg("normalize(%s, %s) = %d", base ? base : "NULL", path, rc);
    assert_string_equal(out, expected);
}

static void test_normalize_components(void **state) {
    (void)state;
    expect_normal(NULL, "/", "/");
    expect_normal(NULL, "/a/b", "/a/b");
    expect_normal(NULL, "/a/./b/.", "/a/b");
    expect_normal(NULL, "/a/b/../c", "/a/c");
    expect_normal(NULL, "//a///b//", "/a/b");
    expect_normal(NULL, "/a/b/", "/a/b");
    expect_normal(NULL, "/a/b/..", "/a");
    expect_normal(NULL, "/a/..", "/");
    /* Names that merely start with dots are ordinary names. */
    expect_normal(NULL, "/.../..a/.b", "/.../..a/.b");
}

static void test_normalize_clamps_at_root(void **state) {
    (void)state;
    expect_normal(NULL, "/..", "/");
    expect_normal(NULL, "/../../..", "/");
    expect_normal(NULL, "/../../etc/passwd", "/etc/passwd");
    expect_normal(NULL, "/a/../../b", "/b");
    expect_normal("/", "..", "/");
    expect_normal("/home/user", "../../../../etc", "/etc");
}

static void test_normalize_relative_to_base(void **state) {
    (void)state;
    expect_normal("/base/dir", "x", "/base/dir/x");
    expect_normal("/base/dir", ".", "/base/dir");
    expect_normal("/base/dir", "./x/./y/", "/base/dir/x/y");
    expect_normal("/base/dir", "../x", "/base/x");
    expect_normal("/", "x", "/x");
    /* An absolute path ignores the base. */
    expect_normal("/base/dir", "/other", "/other");
    /* Only path_size bytes count: WASI paths are not NUL-terminated. */
    char out[VFS_PATH_MAX];
    assert_int_equal(vfs_normalize("/d", "abcdef", 3, out), 0);
    assert_string_equal(out, "/d/abc");
}

static void test_normalize_rejects(void **state) {
    (void)state;
    char out[VFS_PATH_MAX];
    assert_int_equal(vfs_normalize(NULL, "/a\0b", 4, out), -EINVAL);
    assert_int_equal(vfs_normalize("/d", "\0", 1, out), -EINVAL);
    /* Empty: ENOENT, as open("") on Linux. */
    assert_int_equal(vfs_normalize("/d", "", 0, out), -ENOENT);
}

static void test_normalize_length_limits(void **state) {
    (void)state;
    char out[VFS_PATH_MAX];
    char name[VFS_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    /* 256 bytes: one too many for a component. */
    assert_int_equal(vfs_normalize("/", name, VFS_NAME_MAX + 1, out), -ENAMETOOLONG);
    assert_int_equal(vfs_normalize("/", name, VFS_NAME_MAX, out), 0);
    assert_int_equal(strlen(out), 1 + VFS_NAME_MAX);

    /* 15 components of 255 then one of 254: exactly VFS_PATH_MAX - 1 bytes
     * of output; one more byte does not fit with the NUL. */
    static char path[VFS_PATH_MAX * 2];
    size_t length = 0;
    for (int i = 0; i < 15; i++) {
        path[length++] = '/';
        memset(path + length, 'a' + i, VFS_NAME_MAX);
        length += VFS_NAME_MAX;
    }
    path[length++] = '/';
    memset(path + length, 'z', VFS_NAME_MAX);
    assert_int_equal(vfs_normalize(NULL, path, length + VFS_NAME_MAX - 1, out), 0);
    assert_int_equal(strlen(out), VFS_PATH_MAX - 1);
    assert_int_equal(vfs_normalize(NULL, path, length + VFS_NAME_MAX, out), -ENAMETOOLONG);

    /* The base counts too: a long base plus a short relative path. */
    char base[VFS_PATH_MAX];
    memcpy(base, path, length - 1);
    base[length - 1] = '\0';
    assert_int_equal(vfs_normalize(base, name, VFS_NAME_MAX, out), -ENAMETOOLONG);
    assert_int_equal(vfs_normalize(base, "x/..", 4, out), 0);

    /* ".." shortens only what was kept: a huge path of "x/.." stays short. */
    static char loops[VFS_PATH_MAX * 4];
    size_t n = 0;
    while (n + 5 < sizeof loops) memcpy(loops + n, "/x/..", 5), n += 5;
    assert_int_equal(vfs_normalize(NULL, loops, n, out), 0);
    assert_string_equal(out, "/");
}

/* ========================================================================= */
/* Mount table                                                               */
/* ========================================================================= */

static void test_mount_longest_prefix(void **state) {
    (void)state;
    void *scratch;
    vfs *fs = memfs_vfs(0, &scratch);
    /* Mounted deepest first, so "last mount wins" would be wrong too. */
    void *deep = mount_memfs(fs, "/a/b/c", 0);
    void *middle = mount_memfs(fs, "/a/b", 0);
    assert_int_equal(vfs_memfs_put(scratch, "a/b/x", "root", 4), 0); /* hidden */
    assert_int_equal(vfs_memfs_put(middle, "x", "middle", 6), 0);
    assert_int_equal(vfs_memfs_put(deep, "y", "deep!!!", 7), 0);
    assert_int_equal(vfs_memfs_put(scratch, "a/bc", "sibling", 7), 0);

    char text[64];
    read_path(fs, "/a/b/x", text, sizeof text);
    assert_string_equal(text, "middle");
    read_path(fs, "/a/b/c/y", text, sizeof text);
    assert_string_equal(text, "deep!!!");
    /* "/a/bc" shares the prefix "/a/b" as a string, not as a path. */
    read_path(fs, "/a/bc", text, sizeof text);
    assert_string_equal(text, "sibling");
    assert_int_equal(vfs_stat(fs, "/a/b/bc", &(vfs_metadata){0}), -ENOENT);

    /* A file created through the vfs lands in the owning backend. */
    create_file(fs, "/a/b/new", "n");
    vfs_metadata st;
    assert_int_equal(memfs_ops()->stat(middle, "new", &st), 0);
    assert_int_equal(memfs_ops()->stat(scratch, "a/b/new", &st), -ENOENT);
    vfs_free(fs);
}

static void test_mount_errors(void **state) {
    (void)state;
    const vfs_backend_ops *ops;
    void *backend;
    vfs *fs = vfs_new();
    /* The first mount must be the root; a rejected backend is destroyed
     * (the leak checker would see it otherwise). */
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/a", ops, backend, 0), -EINVAL);
    assert_int_equal(vfs_stat(fs, "/", &(vfs_metadata){0}), -ENOENT); /* no mounts at all */
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), -EEXIST);
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "relative", ops, backend, 0), -EINVAL);
    mount_memfs(fs, "/m", 0);
    /* The same place spelled differently is the same mount point. */
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "//m/./", ops, backend, 0), -EEXIST);
    vfs_free(fs);
}

static void test_mount_points_listed_and_protected(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    mount_memfs(fs, "/a/b", 0);
    vfs_type type = 0;
    assert_int_equal(lists(fs, "/", "a", &type), 1);
    assert_int_equal(type, VFS_DIRECTORY);
    assert_int_equal(lists(fs, "/a", "b", &type), 1);
    assert_int_equal(type, VFS_DIRECTORY);
    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, "/a/b", &st), 0);
    assert_int_equal(st.type, VFS_DIRECTORY);

    create_file(fs, "/file", "f");
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    assert_int_equal(vfs_rmdir(fs, "/a/b"), -EBUSY);
    assert_int_equal(vfs_unlink(fs, "/a/b"), -EISDIR);
    assert_int_equal(vfs_mkdir(fs, "/a/b"), -EEXIST);
    assert_int_equal(vfs_rename(fs, "/a/b", "/moved"), -EBUSY);
    assert_int_equal(vfs_rename(fs, "/file", "/a/b"), -EBUSY);
    assert_int_equal(vfs_rename(fs, "/d", "/a/b"), -EBUSY);
    /* Moving a directory that holds a mount point would leave the mount
     * behind at a path that no longer exists in any listing. */
    assert_int_equal(vfs_rename(fs, "/a", "/z"), -EBUSY);
    assert_int_equal(lists(fs, "/", "a", NULL), 1);
    assert_int_equal(vfs_rmdir(fs, "/a"), -ENOTEMPTY);
    /* The root itself. */
    assert_int_equal(vfs_rmdir(fs, "/"), -EBUSY);
    assert_int_equal(vfs_rename(fs, "/", "/x"), -EBUSY);
    assert_int_equal(vfs_mkdir(fs, "/"), -EEXIST);
    /* Siblings that only share a string prefix are unaffected. */
    assert_int_equal(vfs_mkdir(fs, "/a/bb"), 0);
    assert_int_equal(vfs_rename(fs, "/a/bb", "/a/bc"), 0);
    assert_int_equal(vfs_rmdir(fs, "/a/bc"), 0);
    vfs_free(fs);
}

static void test_mount_read_only(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    const vfs_backend_ops *ops;
    void *ro;
    assert_int_equal(vfs_memfs_new(0, &ops, &ro), 0);
    assert_int_equal(vfs_memfs_put(ro, "dir/file", "content", 7), 0);
    assert_int_equal(vfs_memfs_put(ro, "empty/.keep", "", 0), 0);
    assert_int_equal(vfs_mount(fs, "/ro", ops, ro, 1), 0);

    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/ro/dir/file", VFS_O_READ | VFS_O_WRITE, &file), -EROFS);
    assert_int_equal(vfs_open(fs, "/ro/dir/file", VFS_O_READ | VFS_O_TRUNCATE, &file), -EROFS);
    assert_int_equal(vfs_open(fs, "/ro/dir/new", VFS_O_READ | VFS_O_CREATE, &file), -EROFS);
    assert_int_equal(vfs_open(fs, "/ro/dir/missing", VFS_O_READ, &file), -ENOENT);
    assert_int_equal(vfs_mkdir(fs, "/ro/newdir"), -EROFS);
    assert_int_equal(vfs_unlink(fs, "/ro/dir/file"), -EROFS);
    assert_int_equal(vfs_unlink(fs, "/ro/empty/.keep"), -EROFS);
    assert_int_equal(vfs_rmdir(fs, "/ro/empty"), -EROFS);
    assert_int_equal(vfs_rename(fs, "/ro/dir/file", "/ro/dir/other"), -EROFS);
    create_file(fs, "/outside", "x");
    assert_int_equal(vfs_rename(fs, "/outside", "/ro/dir/in"), -EROFS);
    assert_int_equal(vfs_rename(fs, "/ro/dir/file", "/stolen"), -EROFS);

    /* Nothing changed, and reading still works. */
    char text[32];
    read_path(fs, "/ro/dir/file", text, sizeof text);
    assert_string_equal(text, "content");
    assert_int_equal(vfs_stat(fs, "/ro/dir/new", &(vfs_metadata){0}), -ENOENT);
    assert_int_equal(vfs_stat(fs, "/stolen", &(vfs_metadata){0}), -ENOENT);
    vfs_free(fs);
}

static void test_mount_rename_across(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    mount_memfs(fs, "/other", 0);
    create_file(fs, "/f", "data");
    create_file(fs, "/other/g", "more");
    assert_int_equal(vfs_rename(fs, "/f", "/other/f"), -EXDEV);
    assert_int_equal(vfs_rename(fs, "/other/g", "/g"), -EXDEV);
    assert_int_equal(size_of(fs, "/f"), 4);
    assert_int_equal(vfs_stat(fs, "/other/f", &(vfs_metadata){0}), -ENOENT);
    /* Within one mount, rename works. */
    assert_int_equal(vfs_rename(fs, "/other/g", "/other/h"), 0);
    assert_int_equal(size_of(fs, "/other/h"), 4);
    vfs_free(fs);
}

/* ========================================================================= */
/* memfs                                                                     */
/* ========================================================================= */

static void test_memfs_read_write_truncate(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE, &file), -ENOENT);
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    assert_int_equal(file->type, VFS_FILE);
    write_at(file, 0, "hello");
    /* Writing past the end leaves a hole of zeros. */
    write_at(file, 8, "end");
    char text[64];
    assert_int_equal(read_all(file, text, sizeof text), 11);
    assert_memory_equal(text, "hello\0\0\0end", 11);

    /* Reads at and past the end return nothing. */
    size_t done = 99;
    assert_int_equal(file->ops->read(file, text, 10, 11, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(file->ops->read(file, text, 10, UINT64_MAX, &done), 0);
    assert_int_equal(done, 0);
    /* A partial read from the middle. */
    assert_int_equal(file->ops->read(file, text, 3, 1, &done), 0);
    assert_int_equal(done, 3);
    assert_memory_equal(text, "ell", 3);

    assert_int_equal(file->ops->truncate(file, 3), 0);
    assert_int_equal(read_all(file, text, sizeof text), 3);
    assert_string_equal(text, "hel");
    /* Growing by truncate zero-fills, also where old bytes used to be. */
    assert_int_equal(file->ops->truncate(file, 6), 0);
    assert_int_equal(read_all(file, text, sizeof text), 6);
    assert_memory_equal(text, "hel\0\0\0", 6);
    vfs_metadata st;
    assert_int_equal(file->ops->stat(file, &st), 0);
    assert_int_equal(st.size, 6);
    assert_int_equal(st.type, VFS_FILE);
    /* A write whose end would overflow 64 bits is refused. */
    assert_int_equal(file->ops->write(file, "x", 1, UINT64_MAX, &done), -EFBIG);
    vfs_file_release(file);

    /* O_CREATE|O_EXCLUSIVE on an existing file, then O_TRUNCATE. */
    assert_int_equal(
        vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE | VFS_O_EXCLUSIVE, &file),
        -EEXIST);
    assert_int_equal(size_of(fs, "/f"), 6);
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_TRUNCATE, &file), 0);
    assert_int_equal(size_of(fs, "/f"), 0);
    vfs_file_release(file);
    vfs_free(fs);
}

static void test_memfs_shared_open_file(void **state) {
    (void)state;
    /* Two opens of one path see each other's writes (one node). */
    vfs *fs = memfs_vfs(0, NULL);
    vfs_file *a, *b;
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &a), 0);
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ, &b), 0);
    write_at(a, 0, "shared");
    char text[16];
    assert_int_equal(read_all(b, text, sizeof text), 6);
    assert_string_equal(text, "shared");
    /* Retain/release: the file lives until the last reference. */
    vfs_file_retain(a);
    vfs_file_release(a);
    write_at(a, 6, "!");
    vfs_file_release(a);
    assert_int_equal(read_all(b, text, sizeof text), 7);
    vfs_file_release(b);
    vfs_free(fs);
}

static void test_memfs_readdir(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    assert_int_equal(vfs_mkdir(fs, "/d"), -EEXIST);
    const char *names[] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "/d/%s", names[i]);
        create_file(fs, path, names[i]);
    }
    assert_int_equal(vfs_mkdir(fs, "/d/sub"), 0);
    create_file(fs, "/d/sub/deeper", "not listed in /d");

    vfs_file *dir;
    assert_int_equal(vfs_open(fs, "/d", VFS_O_READ | VFS_O_DIRECTORY, &dir), 0);
    assert_int_equal(dir->type, VFS_DIRECTORY);
    vfs_type type;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(count_entries(dir, names[i], &type), 1);
        assert_int_equal(type, VFS_FILE);
    }
    assert_int_equal(count_entries(dir, "sub", &type), 1);
    assert_int_equal(type, VFS_DIRECTORY);
    assert_int_equal(count_entries(dir, "deeper", NULL), 0);
    vfs_dirent entry;
    assert_int_equal(dir->ops->readdir(dir, 4, &entry), 0); /* exactly four */
    assert_int_equal(dir->ops->readdir(dir, UINT64_MAX, &entry), 0);
    /* Reading a directory as a file, or writing it, is EISDIR. */
    size_t done;
    char byte;
    assert_int_equal(dir->ops->read(dir, &byte, 1, 0, &done), -EISDIR);
    assert_int_equal(dir->ops->write(dir, "x", 1, 0, &done), -EISDIR);
    assert_int_equal(dir->ops->truncate(dir, 0), -EISDIR);
    vfs_file_release(dir);

    /* Listing a file is ENOTDIR. */
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/d/alpha", VFS_O_READ, &file), 0);
    assert_int_equal(file->ops->readdir(file, 0, &entry), -ENOTDIR);
    vfs_file_release(file);
    vfs_free(fs);
}

static void test_memfs_unlink_while_open(void **state) {
    (void)state;
    void *scratch;
    vfs *fs = memfs_vfs(0, &scratch);
    vfs_memfs_set_quota(scratch, 10);
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    write_at(file, 0, "12345678");
    assert_int_equal(vfs_unlink(fs, "/f"), 0);
    assert_int_equal(vfs_stat(fs, "/f", &(vfs_metadata){0}), -ENOENT);
    assert_int_equal(lists(fs, "/", "f", NULL), 0);

    /* The open file still has its data and can still grow. */
    char text[16];
    assert_int_equal(read_all(file, text, sizeof text), 8);
    assert_string_equal(text, "12345678");
    write_at(file, 8, "9");
    assert_int_equal(read_all(file, text, sizeof text), 9);

    /* Its bytes stay charged to the quota until the last close... */
    assert_int_equal(vfs_memfs_put(scratch, "g", "abc", 3), -ENOSPC);
    vfs_file_release(file);
    /* ...and are given back then. */
    assert_int_equal(vfs_memfs_put(scratch, "g", "abcdefghij", 10), 0);
    /* A new file under the old name is a different file. */
    create_file(fs, "/f", "");
    assert_int_equal(size_of(fs, "/f"), 0);
    vfs_free(fs);
}

static void test_memfs_remove(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    create_file(fs, "/d/f", "x");
    assert_int_equal(vfs_rmdir(fs, "/d"), -ENOTEMPTY);
    assert_int_equal(vfs_rmdir(fs, "/d/f"), -ENOTDIR);
    assert_int_equal(vfs_unlink(fs, "/d"), -EISDIR);
    assert_int_equal(vfs_unlink(fs, "/d/missing"), -ENOENT);
    assert_int_equal(vfs_rmdir(fs, "/missing"), -ENOENT);
    assert_int_equal(vfs_unlink(fs, "/d/f"), 0);
    assert_int_equal(vfs_rmdir(fs, "/d"), 0);
    assert_int_equal(vfs_stat(fs, "/d", &(vfs_metadata){0}), -ENOENT);
    /* An open directory can be removed; listing it afterwards is empty. */
    vfs_file *dir;
    assert_int_equal(vfs_mkdir(fs, "/e"), 0);
    assert_int_equal(vfs_open(fs, "/e", VFS_O_READ | VFS_O_DIRECTORY, &dir), 0);
    assert_int_equal(vfs_rmdir(fs, "/e"), 0);
    vfs_dirent entry;
    assert_int_equal(dir->ops->readdir(dir, 0, &entry), 0);
    vfs_file_release(dir);
    vfs_free(fs);
}

static void test_memfs_rename(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    char text[32];
    create_file(fs, "/a", "from a");
    create_file(fs, "/b", "old b");
    vfs_file *held;
    assert_int_equal(vfs_open(fs, "/a", VFS_O_READ, &held), 0);

    /* Over an existing file: it is replaced, and the source name is gone. */
    assert_int_equal(vfs_rename(fs, "/a", "/b"), 0);
    read_path(fs, "/b", text, sizeof text);
    assert_string_equal(text, "from a");
    assert_int_equal(vfs_stat(fs, "/a", &(vfs_metadata){0}), -ENOENT);
    assert_int_equal(lists(fs, "/", "b", NULL), 1);
    /* An open file follows its node, not its name. */
    assert_int_equal(read_all(held, text, sizeof text), 6);
    vfs_file_release(held);
    /* Onto itself: nothing happens. */
    assert_int_equal(vfs_rename(fs, "/b", "/b"), 0);
    assert_int_equal(size_of(fs, "/b"), 6);

    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    assert_int_equal(vfs_mkdir(fs, "/d/e"), 0);
    assert_int_equal(vfs_mkdir(fs, "/full"), 0);
    create_file(fs, "/full/x", "x");
    assert_int_equal(vfs_mkdir(fs, "/empty"), 0);
    /* A directory into itself or below itself. */
    assert_int_equal(vfs_rename(fs, "/d", "/d/e/f"), -EINVAL);
    assert_int_equal(vfs_rename(fs, "/d", "/d/inside"), -EINVAL);
    /* Type mismatches and non-empty targets. */
    assert_int_equal(vfs_rename(fs, "/d", "/b"), -ENOTDIR);
    assert_int_equal(vfs_rename(fs, "/b", "/d"), -EISDIR);
    assert_int_equal(vfs_rename(fs, "/d", "/full"), -ENOTEMPTY);
    /* Missing source, missing target parent, a file as target parent. */
    assert_int_equal(vfs_rename(fs, "/nothing", "/x"), -ENOENT);
    assert_int_equal(vfs_rename(fs, "/b", "/no/such/dir"), -ENOENT);
    assert_int_equal(vfs_rename(fs, "/b", "/full/x/below"), -ENOTDIR);
    /* A sibling that shares a string prefix is not "inside". */
    assert_int_equal(vfs_rename(fs, "/d", "/dx"), 0);
    assert_int_equal(vfs_stat(fs, "/dx/e", &(vfs_metadata){0}), 0);
    /* Over an empty directory: replaced. */
    assert_int_equal(vfs_rename(fs, "/dx", "/empty"), 0);
    assert_int_equal(vfs_stat(fs, "/empty/e", &(vfs_metadata){0}), 0);
    assert_int_equal(vfs_stat(fs, "/dx", &(vfs_metadata){0}), -ENOENT);
    /* Moving into another directory. */
    assert_int_equal(vfs_rename(fs, "/b", "/empty/e/b"), 0);
    read_path(fs, "/empty/e/b", text, sizeof text);
    assert_string_equal(text, "from a");
    vfs_free(fs);
}

/* Entries (files and directories) are bounded apart from bytes: a
 * program could otherwise make millions of empty files. */
static void test_memfs_entry_limit(void **state) {
    (void)state;
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    vfs_memfs_set_entry_limit(backend, 3);
    vfs *fs = vfs_new();
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    create_file(fs, "/d/a", "");
    create_file(fs, "/b", "x");
    assert_int_equal(vfs_mkdir(fs, "/e"), -ENOSPC);
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/c", VFS_O_WRITE | VFS_O_CREATE, &file), -ENOSPC);
    /* Opening what exists costs nothing; removing gives an entry back. */
    assert_int_equal(vfs_open(fs, "/b", VFS_O_WRITE, &file), 0);
    vfs_file_release(file);
    assert_int_equal(vfs_unlink(fs, "/b"), 0);
    assert_int_equal(vfs_mkdir(fs, "/e"), 0);
    vfs_free(fs);
}

static void test_memfs_set_times(void **state) {
    (void)state;
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    vfs *fs = vfs_new();
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);
    create_file(fs, "/f", "x");
    uint64_t atime = 1000000000ull * 1000000000ull, mtime = 1234567890ull * 1000000000ull;
    assert_int_equal(vfs_set_times(fs, "/f", &atime, &mtime), 0);
    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, "/f", &st), 0);
    assert_true(st.atime_ns == atime && st.mtime_ns == mtime);
    uint64_t later = mtime + 5;
    assert_int_equal(vfs_set_times(fs, "/f", NULL, &later), 0); /* atime stays */
    assert_int_equal(vfs_stat(fs, "/f", &st), 0);
    assert_true(st.atime_ns == atime && st.mtime_ns == later);
    assert_int_equal(vfs_set_times(fs, "/missing", NULL, &later), -ENOENT);
    vfs_free(fs);
}

static void test_devfs(void **state) {
    (void)state;
    vfs *fs = vfs_new();
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_memfs_new(0, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);
    assert_int_equal(vfs_devfs_new(&ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/dev", ops, backend, 0), 0);
    vfs_file *file;
    char data[300];
    size_t done = 99;
    assert_int_equal(vfs_open(fs, "/dev/null", VFS_O_READ | VFS_O_WRITE, &file), 0);
    assert_int_equal(file->ops->write(file, "gone", 4, 0, &done), 0);
    assert_int_equal(done, 4);
    assert_int_equal(file->ops->read(file, data, sizeof data, 0, &done), 0);
    assert_int_equal(done, 0);
    vfs_file_release(file);
    assert_int_equal(vfs_open(fs, "/dev/zero", VFS_O_READ, &file), 0);
    memset(data, 1, sizeof data);
    assert_int_equal(file->ops->read(file, data, 8, 0, &done), 0);
    assert_int_equal(done, 8);
    assert_int_equal(data[0] | data[7], 0);
    vfs_file_release(file);
    assert_int_equal(vfs_open(fs, "/dev/urandom", VFS_O_READ, &file), 0);
    assert_int_equal(file->ops->read(file, data, sizeof data, 0, &done), 0);
    assert_true(done > 0 && done <= 256);
    vfs_file_release(file);
    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, "/dev/null", &st), 0);
    assert_int_equal(st.type, VFS_CHARACTER_DEVICE);
    assert_int_equal(vfs_stat(fs, "/dev/sda", &st), -ENOENT);
    assert_int_equal(vfs_open(fs, "/dev/new", VFS_O_WRITE | VFS_O_CREATE, &file), -EACCES);
    assert_int_equal(vfs_unlink(fs, "/dev/null"), -EACCES);
    assert_int_equal(vfs_mkdir(fs, "/dev/d"), -EACCES);
    assert_int_equal(vfs_rename(fs, "/dev/null", "/dev/x"), -EACCES);
    assert_int_equal(vfs_open(fs, "/dev", VFS_O_READ | VFS_O_DIRECTORY, &file), 0);
    vfs_dirent entry;
    int count = 0;
    while (file->ops->readdir(file, (uint64_t)count, &entry) == 1) count++;
    assert_int_equal(count, 4);
    vfs_file_release(file);
    vfs_free(fs);
}

/* A template's value must not be a path to the server, however often it
 * decodes the URL. */
static void test_template_values(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int matches;
    } cases[] = {
        {"t-paris.json", 1},        {"t-paris..json", 1},       {"t-100%25.json", 1},
        {"t-...json", 0},           {"t-.json", 0},             {"t-....json", 1},
        {"t-a\\b.json", 0},         {"t-..%5C..%5Cx.json", 0},  {"t-%2e%2e.json", 0},
        {"t-%2E.json", 0},          {"t-..%2F..%2Fx.json", 0},  {"t-a%5cb.json", 0},
        {"t-%252e%252e.json", 0},   {"t-a%00b.json", 0},        {"t-a/b.json", 0},
        {"t-%25252F.json", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t start = 0;
        size_t length = vfs_template_match("t-{}.json", cases[i].name, strlen(cases[i].name), &start);
        if ((length > 0) != cases[i].matches) fail_msg("%s: %zu", cases[i].name, length);
    }
}

static void test_memfs_quota(void **state) {
    (void)state;
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_memfs_new(100, &ops, &backend), 0);
    vfs *fs = vfs_new();
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 0), 0);

    vfs_file *file;
    char block[100];
    memset(block, 'q', sizeof block);
    size_t done = 0;
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    assert_int_equal(file->ops->write(file, block, 100, 0, &done), 0);
    assert_int_equal(done, 100);
    assert_int_equal(file->ops->write(file, "x", 1, 100, &done), -ENOSPC);
    assert_int_equal(file->ops->truncate(file, 101), -ENOSPC);
    /* Rewriting bytes that are already charged costs nothing. */
    assert_int_equal(file->ops->write(file, block, 50, 10, &done), 0);
    assert_int_equal(size_of(fs, "/f"), 100);
    /* Other files share the quota; directories and empty files are free. */
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    create_file(fs, "/d/empty", "");
    assert_int_equal(vfs_memfs_put(backend, "g", "y", 1), -ENOSPC);
    /* Shrinking gives bytes back. */
    assert_int_equal(file->ops->truncate(file, 60), 0);
    assert_int_equal(vfs_memfs_put(backend, "g", block, 40), 0);
    assert_int_equal(vfs_memfs_put(backend, "h", "z", 1), -ENOSPC);
    /* O_TRUNCATE gives them back as well. */
    vfs_file *again;
    assert_int_equal(vfs_open(fs, "/g", VFS_O_READ | VFS_O_WRITE | VFS_O_TRUNCATE, &again), 0);
    vfs_file_release(again);
    assert_int_equal(vfs_memfs_put(backend, "h", block, 40), 0);
    /* A raised quota applies at once. */
    vfs_memfs_set_quota(backend, 1000);
    assert_int_equal(file->ops->write(file, block, 100, 500, &done), 0);
    assert_int_equal(size_of(fs, "/f"), 600);
    vfs_file_release(file);
    vfs_free(fs);
}

static void test_memfs_enotdir(void **state) {
    (void)state;
    vfs *fs = memfs_vfs(0, NULL);
    create_file(fs, "/f", "file");
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/f/x", VFS_O_READ, &file), -ENOTDIR);
    assert_int_equal(vfs_open(fs, "/f/x", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file),
                     -ENOTDIR);
    assert_int_equal(vfs_open(fs, "/f/x/y", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file),
                     -ENOTDIR);
    assert_int_equal(vfs_stat(fs, "/f/x", &(vfs_metadata){0}), -ENOTDIR);
    assert_int_equal(vfs_mkdir(fs, "/f/x"), -ENOTDIR);
    assert_int_equal(vfs_unlink(fs, "/f/x"), -ENOTDIR);
    assert_int_equal(vfs_open(fs, "/f", VFS_O_READ | VFS_O_DIRECTORY, &file), -ENOTDIR);
    /* The other way round: a directory opened for writing. */
    assert_int_equal(vfs_mkdir(fs, "/d"), 0);
    assert_int_equal(vfs_open(fs, "/d", VFS_O_READ | VFS_O_WRITE, &file), -EISDIR);
    assert_int_equal(vfs_open(fs, "/d/x/y", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file),
                     -ENOENT);
    /* The file is unchanged by all of that. */
    char text[16];
    read_path(fs, "/f", text, sizeof text);
    assert_string_equal(text, "file");
    vfs_free(fs);
}

static void test_memfs_put(void **state) {
    (void)state;
    void *scratch;
    vfs *fs = memfs_vfs(0, &scratch);
    /* Parents are made; an existing file is replaced, not appended to. */
    assert_int_equal(vfs_memfs_put(scratch, "p/q/r.txt", "first version", 13), 0);
    assert_int_equal(vfs_memfs_put(scratch, "p/q/r.txt", "second", 6), 0);
    char text[32];
    read_path(fs, "/p/q/r.txt", text, sizeof text);
    assert_string_equal(text, "second");
    /* A parent that is a file cannot hold children. */
    assert_int_equal(vfs_memfs_put(scratch, "p/q/r.txt/s", "x", 1), -ENOTDIR);
    vfs_free(fs);
}

/* ========================================================================= */
/* Image backend                                                             */
/* ========================================================================= */

/* The whole host file, for comparison with the image's copy. */
static char *slurp(const char *host_path, size_t *size) {
    FILE *f = fopen(host_path, "rb");
    if (!f) fail_msg("cannot open %s (run from the repository root after make build)", host_path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long length = ftell(f);
    assert_true(length >= 0);
    rewind(f);
    char *data = malloc((size_t)length + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)length, f), (size_t)length);
    fclose(f);
    *size = (size_t)length;
    return data;
}

/* A vfs with a memfs root and build/stdlib.img read-only at /lib. */
static vfs *stdlib_vfs(void) {
    vfs_image *image;
    int rc = vfs_image_open(STDLIB_IMAGE, &image);
    if (rc) fail_msg("%s: %s (run from the repository root after make build)", STDLIB_IMAGE,
                     strerror(-rc));
    vfs *fs = memfs_vfs(0, NULL);
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_image_backend(image, &ops, &backend), 0);
    vfs_image_release(image); /* the backend holds its own reference */
    assert_int_equal(vfs_mount(fs, "/lib", ops, backend, 1), 0);
    return fs;
}

static void test_image_stdlib_content(void **state) {
    (void)state;
    vfs *fs = stdlib_vfs();
    size_t host_size;
    char *host = slurp(STDLIB_TREE "/os.py", &host_size);

    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, "/lib/os.py", &st), 0);
    assert_int_equal(st.type, VFS_FILE);
    assert_int_equal(st.size, host_size);
    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/lib/os.py", VFS_O_READ, &file), 0);
    char *copy = malloc(host_size + 1);
    assert_non_null(copy);
    assert_int_equal(read_all(file, copy, host_size + 1), host_size);
    assert_memory_equal(copy, host, host_size);
    /* A read from the middle, and one that runs off the end. */
    size_t done;
    assert_int_equal(file->ops->read(file, copy, 16, 100, &done), 0);
    assert_int_equal(done, 16);
    assert_memory_equal(copy, host + 100, 16);
    assert_int_equal(file->ops->read(file, copy, 64, host_size - 10, &done), 0);
    assert_int_equal(done, 10);
    assert_int_equal(file->ops->read(file, copy, 64, UINT64_MAX, &done), 0);
    assert_int_equal(done, 0);
    vfs_file_release(file);
    free(copy);
    free(host);

    /* The file outlives its mount table: the open file holds the image. */
    assert_int_equal(vfs_open(fs, "/lib/json/__init__.py", VFS_O_READ, &file), 0);
    vfs_free(fs);
    char head[4];
    assert_int_equal(file->ops->read(file, head, 3, 0, &done), 0);
    assert_int_equal(done, 3);
    vfs_file_release(file);
}

static void test_image_listing(void **state) {
    (void)state;
    vfs *fs = stdlib_vfs();
    vfs_type type = 0;
    assert_int_equal(lists(fs, "/lib", "json", &type), 1);
    assert_int_equal(type, VFS_DIRECTORY);
    assert_int_equal(lists(fs, "/lib", "os.py", &type), 1);
    assert_int_equal(type, VFS_FILE);
    assert_int_equal(lists(fs, "/lib/json", "__init__.py", &type), 1);
    assert_int_equal(type, VFS_FILE);
    /* Only children are listed, not deeper descendants. */
    assert_int_equal(lists(fs, "/lib", "__init__.py", NULL), 0);
    assert_int_equal(lists(fs, "/lib/json", "os.py", NULL), 0);

    /* Every listed name is a plain component, appears once, and stats as
     * the type the listing gave. */
    vfs_file *dir;
    assert_int_equal(vfs_open(fs, "/lib", VFS_O_READ | VFS_O_DIRECTORY, &dir), 0);
    vfs_dirent entry;
    uint64_t count = 0;
    while (dir->ops->readdir(dir, count, &entry) == 1) {
        assert_true(entry.name[0] != '\0');
        assert_null(strchr(entry.name, '/'));
        assert_int_equal(count_entries(dir, entry.name, NULL), 1);
        char path[VFS_PATH_MAX];
        snprintf(path, sizeof path, "/lib/%s", entry.name);
        vfs_metadata st;
        assert_int_equal(vfs_stat(fs, path, &st), 0);
        assert_int_equal(st.type, entry.type);
        count++;
    }
    assert_true(count > 50);
    /* The mount point shows in the parent (memfs) listing. */
    assert_int_equal(lists(fs, "/", "lib", NULL), 1);
    char byte;
    size_t done;
    assert_int_equal(dir->ops->read(dir, &byte, 1, 0, &done), -EISDIR);
    vfs_file_release(dir);
    vfs_free(fs);
}

static void test_image_lookup_errors(void **state) {
    (void)state;
    vfs *fs = stdlib_vfs();
    vfs_metadata st;
    vfs_file *file;
    assert_int_equal(vfs_stat(fs, "/lib/no_such_module.py", &st), -ENOENT);
    assert_int_equal(vfs_open(fs, "/lib/no_such_module.py", VFS_O_READ, &file), -ENOENT);
    assert_int_equal(vfs_stat(fs, "/lib/os.py/x", &st), -ENOTDIR);
    assert_int_equal(vfs_stat(fs, "/lib/os.py/x/y", &st), -ENOTDIR);
    assert_int_equal(vfs_stat(fs, "/lib/json/missing/x", &st), -ENOENT);
    assert_int_equal(vfs_open(fs, "/lib/os.py", VFS_O_READ | VFS_O_DIRECTORY, &file), -ENOTDIR);
    /* Names that sort next to real ones but are not them. */
    assert_int_equal(vfs_stat(fs, "/lib/os.p", &st), -ENOENT);
    assert_int_equal(vfs_stat(fs, "/lib/os.pyc", &st), -ENOENT);
    assert_int_equal(vfs_stat(fs, "/lib/jso", &st), -ENOENT);

    /* A missing path of ~2000 components: finding the first missing
     * ancestor must not recurse once per component (with a 4 KiB frame
     * each, that overflows an 8 MiB stack). */
    static char deep[VFS_PATH_MAX];
    size_t n = strlen(strcpy(deep, "/lib"));
    while (n + 2 < VFS_PATH_MAX) memcpy(deep + n, "/x", 2), n += 2;
    deep[n] = '\0';
    assert_int_equal(vfs_stat(fs, deep, &st), -ENOENT);
    memcpy(deep, "/lib/os.py", 10); /* "/lib/os.py/x/x/..." */
    assert_int_equal(vfs_stat(fs, deep, &st), -ENOTDIR);
    vfs_free(fs);
}

static void test_image_read_only(void **state) {
    (void)state;
    vfs_image *image;
    assert_int_equal(vfs_image_open(STDLIB_IMAGE, &image), 0);
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_image_backend(image, &ops, &backend), 0);
    vfs_image_release(image);
    /* Mounted writable on purpose: the backend itself must refuse. */
    vfs *fs = memfs_vfs(0, NULL);
    assert_int_equal(vfs_mount(fs, "/img", ops, backend, 0), 0);

    vfs_file *file;
    assert_int_equal(vfs_open(fs, "/img/os.py", VFS_O_READ | VFS_O_WRITE, &file), -EROFS);
    assert_int_equal(vfs_open(fs, "/img/os.py", VFS_O_READ | VFS_O_TRUNCATE, &file), -EROFS);
    assert_int_equal(
        vfs_open(fs, "/img/os.py", VFS_O_READ | VFS_O_CREATE | VFS_O_EXCLUSIVE, &file), -EEXIST);
    assert_int_equal(vfs_mkdir(fs, "/img/newdir"), -EROFS);
    assert_int_equal(vfs_unlink(fs, "/img/os.py"), -EROFS);
    assert_int_equal(vfs_rmdir(fs, "/img/json"), -EROFS);
    assert_int_equal(vfs_rename(fs, "/img/os.py", "/img/os2.py"), -EROFS);
    assert_int_equal(vfs_open(fs, "/img/os.py", VFS_O_READ, &file), 0);
    size_t done;
    assert_int_equal(file->ops->write(file, "x", 1, 0, &done), -EROFS);
    assert_int_equal(file->ops->truncate(file, 0), -EROFS);
    vfs_metadata st;
    assert_int_equal(file->ops->stat(file, &st), 0);
    assert_true(st.size > 0);
    vfs_file_release(file);
    assert_int_equal(vfs_stat(fs, "/img/os.py", &st), 0);
    assert_true(st.size > 0);
    vfs_free(fs);
}

/* --- hand-made images ----------------------------------------------------- */

/* One entry of a hand-made image; data only for files. */
typedef struct image_entry {
    const char *path;
    uint32_t type, subtree_end;
    const char *data;
} image_entry;

/* Offsets of an entry's fields in the table (see the layout in image.c). */
enum { HEADER = 16, ENTRY = 32, F_PATH_OFFSET = 0, F_PATH_LENGTH = 4, F_DATA_OFFSET = 8,
       F_DATA_SIZE = 16, F_TYPE = 24, F_SUBTREE_END = 28 };

static void patch32(unsigned char *image, size_t at, uint32_t value) {
    for (int i = 0; i < 4; i++) image[at + i] = (unsigned char)(value >> (8 * i));
}

static uint32_t peek32(const unsigned char *image, size_t at) {
    return (uint32_t)image[at] | (uint32_t)image[at + 1] << 8 | (uint32_t)image[at + 2] << 16 |
           (uint32_t)image[at + 3] << 24;
}

static void patch64(unsigned char *image, size_t at, uint64_t value) {
    for (int i = 0; i < 8; i++) image[at + i] = (unsigned char)(value >> (8 * i));
}

static size_t field(uint32_t index, size_t offset) {
    return HEADER + (size_t)index * ENTRY + offset;
}

/* Serialises entries in tools/mkimage.py's layout: header, table, path
 * strings, file data.  The caller frees the result. */
static unsigned char *build_image(const image_entry *entries, uint32_t count, size_t *size) {
    size_t strings = 0, data = 0;
    for (uint32_t i = 0; i < count; i++) {
        strings += strlen(entries[i].path);
        data += entries[i].data ? strlen(entries[i].data) : 0;
    }
    size_t table_end = HEADER + (size_t)count * ENTRY;
    *size = table_end + strings + data;
    unsigned char *image = calloc(1, *size);
    assert_non_null(image);
    memcpy(image, "CAPIMG01", 8);
    patch32(image, 8, count);
    size_t string_at = table_end, data_at = table_end + strings;
    for (uint32_t i = 0; i < count; i++) {
        size_t path_length = strlen(entries[i].path);
        size_t data_size = entries[i].data ? strlen(entries[i].data) : 0;
        memcpy(image + string_at, entries[i].path, path_length);
        memcpy(image + data_at, entries[i].data ? entries[i].data : "", data_size);
        patch32(image, field(i, F_PATH_OFFSET), (uint32_t)string_at);
        patch32(image, field(i, F_PATH_LENGTH), (uint32_t)path_length);
        patch64(image, field(i, F_DATA_OFFSET), data_at);
        patch64(image, field(i, F_DATA_SIZE), data_size);
        patch32(image, field(i, F_TYPE), entries[i].type);
        patch32(image, field(i, F_SUBTREE_END), entries[i].subtree_end);
        string_at += path_length;
        data_at += data_size;
    }
    return image;
}

/* Writes `bytes` to a temporary file and opens it as an image. */
static int open_image_bytes(const unsigned char *bytes, size_t size, vfs_image **out) {
    char path[] = "/tmp/capsule-unit-image-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, size), (ssize_t)size);
    close(fd);
    int rc = vfs_image_open(path, out);
    unlink(path); /* the mapping outlives the name */
    return rc;
}

/* Lists and reads everything reachable below `path`; returns the number of
 * entries seen.  Used on images that opened, however odd. */
static int walk_image(vfs *fs, const char *path, int depth) {
    vfs_file *file;
    if (depth > 16 || vfs_open(fs, path, VFS_O_READ, &file) != 0) return 0;
    int seen = 1;
    if (file->type == VFS_DIRECTORY) {
        vfs_dirent entry;
        for (uint64_t cookie = 0; cookie < 64 && file->ops->readdir(file, cookie, &entry) == 1;
             cookie++) {
            assert_true(strlen(entry.name) <= VFS_NAME_MAX);
            char child[VFS_PATH_MAX + VFS_NAME_MAX + 2];
            char normal[VFS_PATH_MAX];
            snprintf(child, sizeof child, "%s/%s", path, entry.name);
            if (vfs_normalize(NULL, child, strlen(child), normal) == 0)
                seen += walk_image(fs, normal, depth + 1);
        }
    } else {
        char buffer[64];
        read_all(file, buffer, sizeof buffer);
    }
    vfs_file_release(file);
    return seen;
}

/* A memfs root with `image` mounted read-only at /i. */
static vfs *image_vfs(vfs_image *image) {
    vfs *fs = memfs_vfs(0, NULL);
    const vfs_backend_ops *ops;
    void *backend;
    assert_int_equal(vfs_image_backend(image, &ops, &backend), 0);
    assert_int_equal(vfs_mount(fs, "/i", ops, backend, 1), 0);
    return fs;
}

/* root, a/, a/f ("alpha"), b ("beta!"): a small well-formed image. */
static const image_entry sample_entries[] = {
    {"", 2, 4, NULL},
    {"a", 2, 3, NULL},
    {"a/f", 1, 3, "alpha"},
    {"b", 1, 4, "beta!"},
};

static void test_image_handmade_valid(void **state) {
    (void)state;
    /* The control for the corruption tests: the builder is right. */
    size_t size;
    unsigned char *bytes = build_image(sample_entries, 4, &size);
    vfs_image *image;
    assert_int_equal(open_image_bytes(bytes, size, &image), 0);
    vfs *fs = image_vfs(image);
    vfs_image_release(image);
    char text[16];
    read_path(fs, "/i/a/f", text, sizeof text);
    assert_string_equal(text, "alpha");
    read_path(fs, "/i/b", text, sizeof text);
    assert_string_equal(text, "beta!");
    assert_int_equal(lists(fs, "/i", "a", NULL), 1);
    assert_int_equal(lists(fs, "/i", "b", NULL), 1);
    assert_int_equal(lists(fs, "/i", "f", NULL), 0);
    assert_int_equal(lists(fs, "/i/a", "f", NULL), 1);
    assert_int_equal(walk_image(fs, "/i", 0), 4);
    vfs_free(fs);
    free(bytes);
}

/* Builds the sample image, runs `statement` on it (it may change `bytes`
 * or `size`), and requires vfs_image_open to reject the result. */
#define EXPECT_REJECTED(statement)                                                 \
    do {                                                                           \
        size_t size;                                                               \
        unsigned char *bytes = build_image(sample_entries, 4, &size);              \
        statement;                                                                 \
        vfs_image *opened_ = NULL;                                                 \
        int rc_ = open_image_bytes(bytes, size, &opened_);                         \
        free(bytes);                                                               \
        if (rc_ != -EINVAL) {                                                      \
            vfs_image_release(opened_);                                            \
            fail_msg("not rejected (rc %d): %s", rc_, #statement);                 \
        }                                                                          \
    } while (0)

static void test_image_corrupt_header(void **state) {
    (void)state;
    EXPECT_REJECTED(bytes[0] = 'X');
    EXPECT_REJECTED(memcpy(bytes, "CAPIMG02", 8));
    EXPECT_REJECTED(size = 12);                     /* shorter than the header */
    EXPECT_REJECTED(size = HEADER);                 /* no table */
    EXPECT_REJECTED(size = HEADER + 2 * ENTRY);     /* table cut short */
    EXPECT_REJECTED(patch32(bytes, 8, 0));          /* no root */
    EXPECT_REJECTED(patch32(bytes, 8, 0xFFFFFFFF)); /* count beyond the file */
    EXPECT_REJECTED(patch32(bytes, 8, 5));          /* one entry more than fits */

    /* An empty file, and no file. */
    vfs_image *image;
    assert_int_equal(open_image_bytes((const unsigned char *)"", 0, &image), -EINVAL);
    assert_int_equal(vfs_image_open("/nonexistent/capsule.img", &image), -ENOENT);
}

static void test_image_corrupt_entries(void **state) {
    (void)state;
    /* Offsets out of range, including sums that wrap 32 or 64 bits. */
    EXPECT_REJECTED(patch32(bytes, field(2, F_PATH_OFFSET), (uint32_t)size));
    EXPECT_REJECTED(patch32(bytes, field(2, F_PATH_OFFSET), (uint32_t)size + 1));
    EXPECT_REJECTED(patch32(bytes, field(2, F_PATH_LENGTH), 0xFFFFFFFF));
    EXPECT_REJECTED(patch32(bytes, field(2, F_PATH_OFFSET), (uint32_t)size - 1);
                    patch32(bytes, field(2, F_PATH_LENGTH), 0xFFFFFFFF));
    EXPECT_REJECTED(patch64(bytes, field(2, F_DATA_OFFSET), size + 1));
    EXPECT_REJECTED(patch64(bytes, field(2, F_DATA_OFFSET), 0xFFFFFFFFFFFFFFF0ull));
    EXPECT_REJECTED(patch64(bytes, field(2, F_DATA_SIZE), size));
    EXPECT_REJECTED(patch64(bytes, field(2, F_DATA_SIZE), UINT64_MAX));
    EXPECT_REJECTED(patch64(bytes, field(2, F_DATA_OFFSET), size - 1);
                    patch64(bytes, field(2, F_DATA_SIZE), UINT64_MAX));
    /* Types and subtree bounds. */
    EXPECT_REJECTED(patch32(bytes, field(1, F_TYPE), 0));
    EXPECT_REJECTED(patch32(bytes, field(1, F_TYPE), 3));
    EXPECT_REJECTED(patch32(bytes, field(0, F_TYPE), 1)); /* root a file */
    EXPECT_REJECTED(patch32(bytes, field(1, F_SUBTREE_END), 1));
    EXPECT_REJECTED(patch32(bytes, field(1, F_SUBTREE_END), 0));
    EXPECT_REJECTED(patch32(bytes, field(1, F_SUBTREE_END), 5));
    EXPECT_REJECTED(patch32(bytes, field(2, F_SUBTREE_END), 4)); /* a file with children */
    /* Order: a duplicate path, and a NUL inside a path. */
    EXPECT_REJECTED(patch32(bytes, field(3, F_PATH_OFFSET), peek32(bytes, field(2, F_PATH_OFFSET)));
                    patch32(bytes, field(3, F_PATH_LENGTH), 3));
    EXPECT_REJECTED(bytes[peek32(bytes, field(2, F_PATH_OFFSET)) + 2] = '\0');

    /* Every truncation of a good image: the last file's data is cut. */
    size_t full;
    unsigned char *good = build_image(sample_entries, 4, &full);
    for (size_t length = 0; length < full; length++) {
        vfs_image *image = NULL;
        int rc = open_image_bytes(good, length, &image);
        if (rc != -EINVAL) {
            vfs_image_release(image);
            free(good);
            fail_msg("image truncated to %zu bytes: rc %d", length, rc);
        }
    }
    free(good);
}

/* Images whose fields are each in range but whose tree is inconsistent:
 * listing them would compute a child's name from a path that is not below
 * its directory (an unsigned underflow, then a read past the path). */
static void expect_tree_rejected(const image_entry *entries, uint32_t count) {
    size_t size;
    unsigned char *bytes = build_image(entries, count, &size);
    vfs_image *image = NULL;
    int rc = open_image_bytes(bytes, size, &image);
    free(bytes);
    if (rc != -EINVAL) {
        vfs_image_release(image);
        fail_msg("inconsistent tree accepted (rc %d); entry 1 is \"%s\"", rc,
                 count > 1 ? entries[1].path : entries[0].path);
    }
}

static void test_image_corrupt_tree(void **state) {
    (void)state;
    /* "b" inside the subtree of "a". */
    const image_entry sibling_inside[] = {
        {"", 2, 3, NULL}, {"a", 2, 3, NULL}, {"b", 1, 3, "x"}};
    expect_tree_rejected(sibling_inside, 3);
    /* A child's subtree reaching past its parent's. */
    const image_entry overlapping[] = {
        {"", 2, 5, NULL},     {"a", 2, 3, NULL}, {"a/d", 2, 4, NULL},
        {"a/d/f", 1, 4, "x"}, {"b", 1, 5, "y"}};
    expect_tree_rejected(overlapping, 5);
    /* A grandchild without its directory: the listing would show "a/b". */
    const image_entry orphan[] = {{"", 2, 2, NULL}, {"a/b", 1, 2, "x"}};
    expect_tree_rejected(orphan, 2);
    /* Entries outside the root's subtree. */
    const image_entry outside_root[] = {{"", 2, 2, NULL}, {"a", 1, 2, "x"}, {"b", 1, 3, "y"}};
    expect_tree_rejected(outside_root, 3);
    /* A root that is not "". */
    const image_entry named_root[] = {{"r", 2, 1, NULL}};
    expect_tree_rejected(named_root, 1);

    /* The well-formed version of the nested shape is accepted. */
    const image_entry nested[] = {
        {"", 2, 5, NULL},     {"a", 2, 4, NULL}, {"a/d", 2, 4, NULL},
        {"a/d/f", 1, 4, "x"}, {"b", 1, 5, "y"}};
    size_t size;
    unsigned char *bytes = build_image(nested, 5, &size);
    vfs_image *image;
    assert_int_equal(open_image_bytes(bytes, size, &image), 0);
    free(bytes);
    vfs *fs = image_vfs(image);
    vfs_image_release(image);
    assert_int_equal(walk_image(fs, "/i", 0), 5);
    vfs_free(fs);
}

static void test_image_byte_flips_never_crash(void **state) {
    (void)state;
    /* Every byte of the sample image, set to a few hostile values: each
     * version is rejected, or opens and can be walked and read in full. */
    size_t size;
    unsigned char *good = build_image(sample_entries, 4, &size);
    unsigned char *bytes = malloc(size);
    assert_non_null(bytes);
    int opened = 0;
    for (size_t at = 0; at < size; at++) {
        const unsigned char values[] = {0x00, 0xFF, 0x01, 0x80, '/',
                                        (unsigned char)(good[at] ^ 1)};
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(bytes, good, size);
            bytes[at] = values[v];
            vfs_image *image;
            int rc = open_image_bytes(bytes, size, &image);
            assert_true(rc == 0 || rc == -EINVAL);
            if (rc) continue;
            opened++;
            vfs *fs = image_vfs(image);
            vfs_image_release(image);
            assert_true(walk_image(fs, "/i", 0) >= 1);
            vfs_free(fs);
        }
    }
    /* Not everything is rejected: file data bytes are free to change. */
    assert_true(opened > 0);
    free(bytes);
    free(good);
}

/* ========================================================================= */
/* WASI                                                                      */
/* ========================================================================= */

#define MEMORY_SIZE (1u << 20)
/* Where the tests put things in the fake guest memory. */
enum {
    OUT_A = 0x10, /* scalar results */
    OUT_B = 0x18,
    FD_OUT = 0x20,
    IOVS = 0x40,   /* iovec array, 8 bytes each */
    PATH = 0x100,  /* path arguments */
    PATH2 = 0x1100,
    DATA = 0x2000, /* buffers */
    BIG = 0x10000,
};
enum { RIGHT_FD_READ = 1u << 1, RIGHT_FD_WRITE = 1u << 6 };
enum { OFLAG_CREAT = 1, OFLAG_DIRECTORY = 2, OFLAG_EXCL = 4, OFLAG_TRUNC = 8 };
enum { FDFLAG_APPEND = 1 };
enum { WHENCE_SET = 0, WHENCE_CUR = 1, WHENCE_END = 2 };
/* A guest offset whose (offset + length) wraps 32 bits. */
#define BAD_OFFSET 0xFFFFFFF0u

typedef struct harness {
    vfs *fs;
    void *scratch;
    wasi *w;
    wasm_rt_memory_t memory;
} harness;

static char *test_argv[] = {"python", "-c", "print('hi')", NULL};
static char *test_env[] = {"A=1", "LANG=C.UTF-8", NULL};

static int wasi_setup(void **state) {
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->fs = memfs_vfs(0, &h->scratch);
    assert_int_equal(vfs_memfs_put(h->scratch, "data/hello.txt", "hello world", 11), 0);
    wasi_options options = {test_argv, test_env, 0};
    h->w = wasi_new(h->fs, &options);
    assert_non_null(h->w);
    h->memory = (wasm_rt_memory_t){.data = calloc(1, MEMORY_SIZE), .pages = 16, .max_pages = 16,
                                   .size = MEMORY_SIZE};
    assert_non_null(h->memory.data);
    wasi_set_memory(h->w, &h->memory);
    vfs_file *root;
    assert_int_equal(vfs_open(h->fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root), 0);
    assert_int_equal(wasi_install(h->w, 3, root, "/", 1, 0, 1), 0);
    vfs_file_release(root);
    *state = h;
    return 0;
}

static int wasi_teardown(void **state) {
    harness *h = *state;
    /* Descriptors first: open memfs files point into the file system. */
    wasi_free(h->w);
    vfs_free(h->fs);
    free(h->memory.data);
    free(h);
    return 0;
}

static uint32_t load32(harness *h, uint32_t at) {
    uint32_t v;
    memcpy(&v, h->memory.data + at, 4);
    return v;
}

static uint64_t load64(harness *h, uint32_t at) {
    uint64_t v;
    memcpy(&v, h->memory.data + at, 8);
    return v;
}

static void store32(harness *h, uint32_t at, uint32_t v) {
    memcpy(h->memory.data + at, &v, 4);
}

static void store64(harness *h, uint32_t at, uint64_t v) {
    memcpy(h->memory.data + at, &v, 8);
}

/* Copies `s` into guest memory at `at`; returns its length (no NUL). */
static uint32_t put_string(harness *h, uint32_t at, const char *s) {
    size_t n = strlen(s);
    memcpy(h->memory.data + at, s, n);
    return (uint32_t)n;
}

static void put_iovec(harness *h, uint32_t index, uint32_t buffer, uint32_t length) {
    store32(h, IOVS + index * 8, buffer);
    store32(h, IOVS + index * 8 + 4, length);
}

/* path_open relative to `dir`; the new descriptor goes to *fd. */
static uint32_t wasi_open(harness *h, uint32_t dir, const char *path, uint32_t oflags,
                          uint64_t rights, uint32_t fdflags, uint32_t *fd) {
    uint32_t length = put_string(h, PATH, path);
    store32(h, FD_OUT, 0xDEADBEEF);
    uint32_t rc = Z_wasi_snapshot_preview1Z_path_open(h->w, dir, 0, PATH, length, oflags, rights,
                                                      0, fdflags, FD_OUT);
    if (fd) *fd = load32(h, FD_OUT);
    return rc;
}

/* path_open relative to the root preopen, which must succeed. */
static uint32_t open_ok(harness *h, const char *path, uint32_t oflags, uint64_t rights,
                        uint32_t fdflags) {
    uint32_t fd;
    uint32_t rc = wasi_open(h, 3, path, oflags, rights, fdflags, &fd);
    if (rc) fail_msg("path_open(%s) = %u", path, rc);
    assert_int_not_equal(fd, 3);
    return fd;
}

static uint32_t wasi_write(harness *h, uint32_t fd, const char *text, uint32_t *written) {
    uint32_t length = put_string(h, DATA, text);
    put_iovec(h, 0, DATA, length);
    uint32_t rc = Z_wasi_snapshot_preview1Z_fd_write(h->w, fd, IOVS, 1, OUT_A);
    *written = load32(h, OUT_A);
    return rc;
}

/* Reads up to `capacity` bytes into guest DATA; returns the count. */
static uint32_t wasi_read(harness *h, uint32_t fd, uint32_t capacity) {
    put_iovec(h, 0, DATA, capacity);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(h->w, fd, IOVS, 1, OUT_A), WASI_ESUCCESS);
    return load32(h, OUT_A);
}

static void test_wasi_bad_pointers(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t end = MEMORY_SIZE;
    uint32_t length = put_string(h, PATH, "data/hello.txt");

    /* Paths: beyond memory, straddling its end, wrapping 32 bits. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, end + 16, 4, 0, RIGHT_FD_READ,
                                                         0, 0, FD_OUT),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, end - 2, 4, 0, RIGHT_FD_READ,
                                                         0, 0, FD_OUT),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, BAD_OFFSET, 0x20, 0,
                                                         RIGHT_FD_READ, 0, 0, FD_OUT),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, PATH, 0xFFFFFFFF, 0,
                                                         RIGHT_FD_READ, 0, 0, FD_OUT),
                     WASI_EFAULT);
    /* A good path but nowhere to put the descriptor: nothing is opened. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, PATH, length, 0, RIGHT_FD_READ,
                                                         0, 0, BAD_OFFSET),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, 0), WASI_EBADF);
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_filestat_get(w, 3, 0, BAD_OFFSET, 0x20, DATA),
        WASI_EFAULT);
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_filestat_get(w, 3, 0, PATH, length, BAD_OFFSET),
        WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_create_directory(w, 3, end, 1), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_unlink_file(w, 3, BAD_OFFSET, 0x20),
                     WASI_EFAULT);
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_rename(w, 3, PATH, length, 3, BAD_OFFSET, 0x20),
        WASI_EFAULT);
    assert_int_equal(vfs_stat(h->fs, "/data/hello.txt", &(vfs_metadata){0}), 0);

    /* Reads and writes: a bad iovec array, a bad buffer, a huge count. */
    uint32_t fd = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, fd, BAD_OFFSET, 4, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, end - 4, 1, OUT_A), WASI_EFAULT);
    put_iovec(h, 0, BAD_OFFSET, 0x100);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 1, OUT_A), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, fd, IOVS, 1, OUT_A), WASI_EFAULT);
    put_iovec(h, 0, end - 4, 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, fd, IOVS, 1, OUT_A), WASI_EFAULT);
    put_iovec(h, 0, DATA, 4);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 1, BAD_OFFSET), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(w, fd, BAD_OFFSET, 2, 0, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pwrite(w, fd, BAD_OFFSET, 2, 0, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 0xFFFFFFFF, OUT_A),
                     WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, WHENCE_SET, BAD_OFFSET),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, end - 7), WASI_EFAULT);
    assert_int_equal(size_of(h->fs, "/data/hello.txt"), 11);

    /* Results that cannot be stored. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, 3, BAD_OFFSET), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_get(w, 3, end - 63), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(w, 3, BAD_OFFSET), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(w, 3, BAD_OFFSET, 0x20),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, 3, BAD_OFFSET, 0x20, 0, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, 3, DATA, 256, 0, BAD_OFFSET),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_sizes_get(w, BAD_OFFSET, OUT_B),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_get(w, BAD_OFFSET, DATA), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_get(w, OUT_A, end - 3), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_sizes_get(w, OUT_A, end), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_get(w, BAD_OFFSET, DATA), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(w, 1, 0, BAD_OFFSET), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_res_get(w, 1, end - 4), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, BAD_OFFSET, 0x20), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, end - 4, 5), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, end - 4, 4), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, end, 0), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, BAD_OFFSET, DATA, 1, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BAD_OFFSET, 1, OUT_A),
                     WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 1, end), WASI_EFAULT);

    /* No memory at all (between runs): every access is a fault. */
    wasi_set_memory(w, NULL);
    assert_null(wasi_memory(w));
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, 0, 1), WASI_EFAULT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, PATH, length, 0, RIGHT_FD_READ,
                                                         0, 0, FD_OUT),
                     WASI_EFAULT);
    wasi_set_memory(w, &h->memory);
    assert_ptr_equal(wasi_memory(w), &h->memory);
}

static void test_wasi_bad_fd(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t length = put_string(h, PATH, "data/hello.txt");
    const uint32_t bad[] = {0, 2, 4, 99, 1024, 0x7FFFFFFF, 0xFFFFFFFF};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t fd = bad[i];
        put_iovec(h, 0, DATA, 16);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 1, OUT_A), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, fd, IOVS, 1, OUT_A), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, fd), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, WHENCE_SET, OUT_A),
                         WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_A), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, fd, OUT_A), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_get(w, fd, DATA), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(w, fd, OUT_A), WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, DATA, 256, 0, OUT_A),
                         WASI_EBADF);
        assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, fd, 0, PATH, length, 0,
                                                             RIGHT_FD_READ, 0, 0, FD_OUT),
                         WASI_EBADF);
        assert_int_equal(
            Z_wasi_snapshot_preview1Z_path_filestat_get(w, fd, 0, PATH, length, DATA),
            WASI_EBADF);
        assert_int_equal(
            Z_wasi_snapshot_preview1Z_path_rename(w, 3, PATH, length, fd, PATH, length),
            WASI_EBADF);
    }
    /* A descriptor that was closed is as bad as one never opened. */
    uint32_t fd = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, fd), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, fd), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 1, OUT_A), WASI_EBADF);
    /* A path relative to a file descriptor is ENOTDIR. */
    fd = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ, 0);
    assert_int_equal(wasi_open(h, fd, "x", 0, RIGHT_FD_READ, 0, NULL), WASI_ENOTDIR);
    /* Host-side misuse of wasi_install is an error, not a wild write. */
    vfs_file *root;
    assert_int_equal(vfs_open(h->fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root), 0);
    assert_int_not_equal(wasi_install(w, 0xFFFFFFFF, root, "/", 1, 0, 0), 0);
    assert_int_not_equal(wasi_install(w, 5000, root, "/", 1, 0, 0), 0); /* > max_fds */
    vfs_file_release(root);
}

static void test_wasi_path_escape(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    /* Relative to "/", ".." stays at "/": this is the VFS's /etc/passwd,
     * which does not exist, never the host's. */
    const char *escapes[] = {"../../etc/passwd", "../../../../../../etc/passwd", "/etc/passwd",
                             "data/../../etc/passwd", "./../etc/passwd"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        assert_int_equal(wasi_open(h, 3, escapes[i], 0, RIGHT_FD_READ, 0, NULL), WASI_ENOENT);
        uint32_t length = put_string(h, PATH, escapes[i]);
        assert_int_equal(
            Z_wasi_snapshot_preview1Z_path_filestat_get(w, 3, 0, PATH, length, DATA),
            WASI_ENOENT);
    }
    /* The same climb lands on a file the VFS has. */
    uint32_t fd = open_ok(h, "../../data/hello.txt", 0, RIGHT_FD_READ, 0);
    assert_int_equal(wasi_read(h, fd, 64), 11);
    assert_memory_equal(h->memory.data + DATA, "hello world", 11);

    /* From a subdirectory descriptor, too. */
    uint32_t dir = open_ok(h, "data", OFLAG_DIRECTORY, RIGHT_FD_READ, 0);
    assert_int_equal(wasi_open(h, dir, "../../../etc/passwd", 0, RIGHT_FD_READ, 0, NULL),
                     WASI_ENOENT);
    assert_int_equal(wasi_open(h, dir, "../data/./hello.txt", 0, RIGHT_FD_READ, 0, NULL),
                     WASI_ESUCCESS);
    assert_int_equal(wasi_open(h, dir, "hello.txt", OFLAG_DIRECTORY, RIGHT_FD_READ, 0, NULL),
                     WASI_ENOTDIR);
    /* An empty path names nothing, as open("") on Linux. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, PATH, 0, 0, RIGHT_FD_READ, 0,
                                                         0, FD_OUT),
                     WASI_ENOENT);
    /* A NUL inside the path is not a terminator. */
    memcpy(h->memory.data + PATH, "data/hello.txt\0/../x", 20);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(w, 3, 0, PATH, 20, 0, RIGHT_FD_READ, 0,
                                                         0, FD_OUT),
                     WASI_EINVAL);
    /* Creating through an escape creates inside the VFS. */
    uint32_t created =
        open_ok(h, "../../../tmp-file", OFLAG_CREAT, RIGHT_FD_READ | RIGHT_FD_WRITE, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, created), WASI_ESUCCESS);
    assert_int_equal(vfs_stat(h->fs, "/tmp-file", &(vfs_metadata){0}), 0);
}

static void test_wasi_read_write_roundtrip(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t fd =
        open_ok(h, "note.txt", OFLAG_CREAT | OFLAG_TRUNC, RIGHT_FD_READ | RIGHT_FD_WRITE, 0);
    /* Two iovecs gathered into one write. */
    put_string(h, DATA, "hello, ");
    put_string(h, DATA + 100, "world");
    put_iovec(h, 0, DATA, 7);
    put_iovec(h, 1, DATA + 100, 5);
    put_iovec(h, 2, DATA, 0); /* empty ones are fine */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, fd, IOVS, 3, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 12);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_B), WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_B), 12);

    /* Scattered back into two buffers, the second larger than the rest. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, WHENCE_SET, OUT_B),
                     WASI_ESUCCESS);
    put_iovec(h, 0, BIG, 5);
    put_iovec(h, 1, BIG + 0x100, 100);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 2, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 12);
    assert_memory_equal(h->memory.data + BIG, "hello", 5);
    assert_memory_equal(h->memory.data + BIG + 0x100, ", world", 7);
    /* At the end: zero bytes, not an error. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, fd, IOVS, 2, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 0);

    /* pread/pwrite use their own offset and leave the cursor alone. */
    put_string(h, DATA, "W");
    put_iovec(h, 0, DATA, 1);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pwrite(w, fd, IOVS, 1, 7, OUT_A),
                     WASI_ESUCCESS);
    put_iovec(h, 0, BIG, 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(w, fd, IOVS, 1, 7, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 5);
    assert_memory_equal(h->memory.data + BIG, "World", 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_B), WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_B), 12);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, fd), WASI_ESUCCESS);

    /* The VFS holds what was written. */
    char text[32];
    read_path(h->fs, "/note.txt", text, sizeof text);
    assert_string_equal(text, "hello, World");

    /* A read-only descriptor refuses writes, a directory refuses reads. */
    fd = open_ok(h, "note.txt", 0, RIGHT_FD_READ, 0);
    uint32_t written;
    assert_int_equal(wasi_write(h, fd, "nope", &written), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_set_size(w, fd, 0), WASI_EINVAL);
    assert_int_equal(size_of(h->fs, "/note.txt"), 12);
    put_iovec(h, 0, DATA, 4);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, 3, IOVS, 1, OUT_A), WASI_EISDIR);
    /* A bad iovec after a good one: what was done is reported. */
    uint32_t rw = open_ok(h, "note.txt", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, 0);
    put_string(h, DATA, "ab");
    put_iovec(h, 0, DATA, 2);
    put_iovec(h, 1, BAD_OFFSET, 0x100);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(w, rw, IOVS, 2, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 2);
    read_path(h->fs, "/note.txt", text, sizeof text);
    assert_string_equal(text, "abllo, World");
}

static void test_wasi_seek_tell_append(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t fd = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, (uint64_t)-5, WHENCE_END, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_B), 6);
    assert_int_equal(wasi_read(h, fd, 64), 5);
    assert_memory_equal(h->memory.data + DATA, "world", 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, (uint64_t)-4, WHENCE_CUR, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_B), 7);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_A), 7);
    /* Before the start, or an unknown whence: EINVAL, cursor unchanged. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, (uint64_t)-8, WHENCE_CUR, OUT_B),
                     WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, (uint64_t)-1, WHENCE_SET, OUT_B),
                     WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, 3, OUT_B), WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_A), 7);
    /* Past the end is allowed; a write there leaves a hole. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 13, WHENCE_SET, OUT_B),
                     WASI_ESUCCESS);
    uint32_t written;
    assert_int_equal(wasi_write(h, fd, "!", &written), WASI_ESUCCESS);
    assert_int_equal(size_of(h->fs, "/data/hello.txt"), 14);
    /* Far beyond anything memory can hold: the write fails, nothing grows. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, INT64_MAX - 1, WHENCE_SET, OUT_B),
                     WASI_ESUCCESS);
    assert_int_not_equal(wasi_write(h, fd, "xy", &written), WASI_ESUCCESS);
    assert_int_equal(size_of(h->fs, "/data/hello.txt"), 14);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, INT64_MAX, WHENCE_CUR, OUT_B),
                     WASI_EINVAL); /* signed overflow is caught */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(w, fd), WASI_ESUCCESS);

    /* O_APPEND: every write goes to the end, wherever the cursor was. */
    fd = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, FDFLAG_APPEND);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(w, fd, 0, WHENCE_SET, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(wasi_write(h, fd, "+tail", &written), WASI_ESUCCESS);
    assert_int_equal(written, 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(w, fd, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load64(h, OUT_A), 19);
    char text[32];
    read_path(h->fs, "/data/hello.txt", text, sizeof text);
    assert_memory_equal(text, "hello world\0\0!+tail", 19);
    /* A truncate through the descriptor, seen by fd_filestat_get. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_set_size(w, fd, 5), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_get(w, fd, BIG), WASI_ESUCCESS);
    assert_int_equal(load64(h, BIG + 32), 5);      /* size */
    assert_int_equal(h->memory.data[BIG + 16], 4); /* regular file */
}

/* Parses the dirents in guest memory [buffer, buffer+used): whole records
 * go to names[] (at most `capacity`); returns the d_next of the last whole
 * record, or `cookie` if there was none. */
static uint64_t parse_dirents(harness *h, uint32_t buffer, uint32_t used, uint64_t cookie,
                              char names[][64], int capacity, int *count) {
    uint32_t at = 0;
    while (at + 24 <= used) {
        uint32_t name_length = load32(h, buffer + at + 16);
        if (at + 24 + name_length > used) break; /* the cut-off last entry */
        assert_true(name_length < 64);
        assert_true(*count < capacity); /* more entries than exist: a repeat */
        memcpy(names[*count], h->memory.data + buffer + at + 24, name_length);
        names[*count][name_length] = '\0';
        (*count)++;
        cookie = load64(h, buffer + at);
        at += 24 + name_length;
    }
    return cookie;
}

static void test_wasi_readdir(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    /* Names of varied lengths, so record boundaries fall everywhere. */
    const char *names[] = {"alpha",      "b",          "a-rather-long-file-name.txt",
                           "dir",        "z9",         "0123456789",
                           "with space", "mid.py",     "last-one"};
    const int total = (int)(sizeof names / sizeof names[0]);
    assert_int_equal(vfs_mkdir(h->fs, "/list"), 0);
    for (int i = 0; i < total; i++) {
        char path[64];
        snprintf(path, sizeof path, "/list/%s", names[i]);
        if (strcmp(names[i], "dir") == 0)
            assert_int_equal(vfs_mkdir(h->fs, path), 0);
        else
            create_file(h->fs, path, "x");
    }
    uint32_t fd = open_ok(h, "list", OFLAG_DIRECTORY, RIGHT_FD_READ, 0);

    /* Room for the first entry and 1 byte of the next: the buffer comes
     * back full (bufused == buf_len) with a partial last entry. */
    uint32_t first = 24 + (uint32_t)strlen(names[0]);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, DATA, first + 1, 0, OUT_A),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), first + 1);
    assert_int_equal(load64(h, DATA), 1);                     /* d_next */
    assert_int_equal(load32(h, DATA + 16), strlen(names[0])); /* d_namlen */
    assert_int_equal(h->memory.data[DATA + 20], 4);           /* regular file */
    assert_memory_equal(h->memory.data + DATA + 24, names[0], strlen(names[0]));
    /* Smaller than one header: still filled to the last byte, no further. */
    memset(h->memory.data + DATA, 0xAA, 64);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, DATA, 10, 0, OUT_A),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 10);
    assert_int_equal(h->memory.data[DATA + 10], 0xAA);
    /* Zero-sized buffer, and a cookie past the end. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, DATA, 0, 0, OUT_A),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, DATA, 256, 1000, OUT_A),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 0);

    /* As wasi-libc lists: keep the whole entries, continue from the last
     * whole entry's cookie; a short fill means the end.  Every name must
     * come back exactly once, whatever the buffer size. */
    const uint32_t sizes[] = {24 + 27, 60, 64, 100, 4096};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        char seen[16][64];
        int count = 0, calls = 0;
        uint64_t cookie = 0;
        for (;;) {
            assert_true(++calls < 100);
            assert_int_equal(
                Z_wasi_snapshot_preview1Z_fd_readdir(w, fd, BIG, sizes[s], cookie, OUT_A),
                WASI_ESUCCESS);
            uint32_t used = load32(h, OUT_A);
            assert_true(used <= sizes[s]);
            int before = count;
            cookie = parse_dirents(h, BIG, used, cookie, seen, 16, &count);
            if (used < sizes[s]) break;
            assert_true(count > before); /* each buffer holds a whole entry */
        }
        assert_int_equal(count, total);
        for (int i = 0; i < total; i++) {
            int found = 0;
            for (int j = 0; j < count; j++) found += strcmp(seen[j], names[i]) == 0;
            if (found != 1) fail_msg("buffer %u: %s listed %d times", sizes[s], names[i], found);
        }
    }
    /* Listing a file is ENOTDIR. */
    uint32_t file = open_ok(h, "list/alpha", 0, RIGHT_FD_READ, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(w, file, DATA, 256, 0, OUT_A),
                     WASI_ENOTDIR);
}

static void test_wasi_prestat(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    store64(h, OUT_A, UINT64_MAX);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(w, 3, OUT_A), WASI_ESUCCESS);
    assert_int_equal(h->memory.data[OUT_A], 0); /* tag: directory */
    assert_int_equal(load32(h, OUT_A + 4), 1);  /* strlen("/") */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(w, 3, PATH, 1),
                     WASI_ESUCCESS);
    assert_int_equal(h->memory.data[PATH], '/');
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(w, 3, PATH, 0),
                     WASI_ENAMETOOLONG);

    /* A second preopen with a longer name. */
    vfs_file *data;
    assert_int_equal(vfs_open(h->fs, "/data", VFS_O_READ | VFS_O_DIRECTORY, &data), 0);
    assert_int_equal(wasi_install(w, 4, data, "/data", 1, 0, 1), 0);
    vfs_file_release(data);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(w, 4, OUT_A), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A + 4), 5);
    memset(h->memory.data + PATH, 0, 16);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(w, 4, PATH, 16),
                     WASI_ESUCCESS);
    assert_string_equal((char *)h->memory.data + PATH, "/data");
    /* Paths relative to it resolve below /data. */
    uint32_t fd;
    assert_int_equal(wasi_open(h, 4, "hello.txt", 0, RIGHT_FD_READ, 0, &fd), WASI_ESUCCESS);
    /* Opened descriptors are not preopens: libc's scan stops at EBADF. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(w, fd, OUT_A), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(w, fd, PATH, 16),
                     WASI_EBADF);
}

static void test_wasi_fdstat_rights(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    const uint64_t write_right = 1ull << 6, read_right = 1ull << 1;
    uint32_t ro = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ, 0);
    uint32_t rw = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, FDFLAG_APPEND);

    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, ro, DATA), WASI_ESUCCESS);
    assert_int_equal(h->memory.data[DATA], 4); /* regular file */
    assert_int_equal(load64(h, DATA + 8) & write_right, 0);
    assert_int_equal(load64(h, DATA + 8) & read_right, read_right);

    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, rw, DATA), WASI_ESUCCESS);
    assert_int_equal(load64(h, DATA + 8) & write_right, write_right);
    uint16_t flags;
    memcpy(&flags, h->memory.data + DATA + 2, 2);
    assert_int_equal(flags, FDFLAG_APPEND);

    /* A write-only open (O_WRONLY leaves FD_READ out) cannot be read. */
    uint32_t wo = open_ok(h, "data/hello.txt", 0, RIGHT_FD_WRITE, 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, wo, DATA), WASI_ESUCCESS);
    assert_int_equal(load64(h, DATA + 8) & read_right, 0);
    store32(h, IOVS, DATA + 64);
    store32(h, IOVS + 4, 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(w, wo, IOVS, 1, OUT_A), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(w, wo, IOVS, 1, 0, OUT_A), WASI_EBADF);

    /* The preopened root was installed read-only. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(w, 3, DATA), WASI_ESUCCESS);
    assert_int_equal(h->memory.data[DATA], 3); /* directory */
    assert_int_equal(load64(h, DATA + 8) & write_right, 0);
}

static void test_wasi_links_refused(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t old_length = put_string(h, PATH, "data/hello.txt");
    uint32_t new_length = put_string(h, PATH2, "link");
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_symlink(w, PATH, old_length, 3, PATH2, new_length),
        WASI_EPERM);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_link(w, 3, 0, PATH, old_length, 3, PATH2,
                                                         new_length),
                     WASI_EPERM);
    assert_int_equal(vfs_stat(h->fs, "/link", &(vfs_metadata){0}), -ENOENT);
    /* Nothing is a link: readlink of a file is EINVAL, of nothing ENOENT. */
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_readlink(w, 3, PATH, old_length, DATA, 64, OUT_A),
        WASI_EINVAL);
    assert_int_equal(
        Z_wasi_snapshot_preview1Z_path_readlink(w, 3, PATH2, new_length, DATA, 64, OUT_A),
        WASI_ENOENT);
}

static void test_wasi_sockets(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t file = open_ok(h, "data/hello.txt", 0, RIGHT_FD_READ, 0);
    const uint32_t fds[] = {3, file};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(Z_wasi_snapshot_preview1Z_sock_accept(w, fds[i], 0, OUT_A),
                         WASI_ENOTSOCK);
        assert_int_equal(
            Z_wasi_snapshot_preview1Z_sock_recv(w, fds[i], IOVS, 1, 0, OUT_A, OUT_B),
            WASI_ENOTSOCK);
        assert_int_equal(Z_wasi_snapshot_preview1Z_sock_send(w, fds[i], IOVS, 1, 0, OUT_A),
                         WASI_ENOTSOCK);
        assert_int_equal(Z_wasi_snapshot_preview1Z_sock_shutdown(w, fds[i], 2), WASI_ENOTSOCK);
    }
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_accept(w, 77, 0, OUT_A), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_recv(w, 77, IOVS, 1, 0, OUT_A, OUT_B),
                     WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_send(w, 77, IOVS, 1, 0, OUT_A), WASI_EBADF);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_shutdown(w, 77, 2), WASI_EBADF);
}

/* Checks argv-style output: `count` pointers at `pointers`, each to the
 * expected NUL-terminated string in guest memory. */
static void expect_strings(harness *h, uint32_t pointers, char *const *expected, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        uint32_t at = load32(h, pointers + 4 * i);
        assert_true(at >= BIG && at < MEMORY_SIZE);
        assert_string_equal((char *)h->memory.data + at, expected[i]);
    }
}

static void test_wasi_args_environ(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    /* A host variable that must not leak into the guest. */
    setenv("CAPSULE_UNIT_SECRET", "leaked", 1);

    assert_int_equal(Z_wasi_snapshot_preview1Z_args_sizes_get(w, OUT_A, OUT_B), WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 3);
    assert_int_equal(load32(h, OUT_B),
                     strlen("python") + strlen("-c") + strlen("print('hi')") + 3);
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_get(w, DATA, BIG), WASI_ESUCCESS);
    expect_strings(h, DATA, test_argv, 3);
    /* The strings are packed back to back, as the sizes promised. */
    assert_int_equal(load32(h, DATA), BIG);
    assert_int_equal(load32(h, DATA + 4), BIG + 7);

    memset(h->memory.data + BIG, 0, 4096);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_sizes_get(w, OUT_A, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 2);
    uint32_t size = load32(h, OUT_B);
    assert_int_equal(size, strlen("A=1") + strlen("LANG=C.UTF-8") + 2);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_get(w, DATA, BIG), WASI_ESUCCESS);
    expect_strings(h, DATA, test_env, 2);
    assert_null(memmem(h->memory.data + BIG, 4096, "CAPSULE_UNIT_SECRET", 19));
    assert_int_equal(h->memory.data[BIG + size], 0); /* nothing beyond the promised size */

    /* No argv, no environment: empty, not the host's. */
    wasi_options empty = {NULL, NULL, 0};
    wasi *bare = wasi_new(h->fs, &empty);
    assert_non_null(bare);
    wasi_set_memory(bare, &h->memory);
    store32(h, OUT_A, 99);
    store32(h, OUT_B, 99);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_sizes_get(bare, OUT_A, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 0);
    assert_int_equal(load32(h, OUT_B), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_sizes_get(bare, OUT_A, OUT_B),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 0);
    wasi_free(bare);
    unsetenv("CAPSULE_UNIT_SECRET");
}

static void test_wasi_random(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    memset(h->memory.data + DATA, 0, 128);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, DATA, 32), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, DATA + 64, 32), WASI_ESUCCESS);
    static const unsigned char zeros[32];
    /* 2^-256 odds of a false failure. */
    assert_memory_not_equal(h->memory.data + DATA, zeros, 32);
    assert_memory_not_equal(h->memory.data + DATA, h->memory.data + DATA + 64, 32);
    /* Exactly the bytes asked for. */
    assert_memory_equal(h->memory.data + DATA + 32, zeros, 32);
    /* A large request is filled in full (getrandom may return it in parts). */
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(w, BIG, 65536), WASI_ESUCCESS);
    int zero_run = 0, longest = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        zero_run = h->memory.data[BIG + i] ? 0 : zero_run + 1;
        if (zero_run > longest) longest = zero_run;
    }
    assert_true(longest < 16);
}

static void test_wasi_clocks(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint64_t previous = 0;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(w, 1, 1, OUT_A), WASI_ESUCCESS);
        uint64_t now = load64(h, OUT_A);
        assert_true(now >= previous);
        previous = now;
    }
    assert_true(previous > 0);
    /* Realtime is in nanoseconds since the epoch: after 2020. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(w, 0, 1, OUT_A), WASI_ESUCCESS);
    assert_true(load64(h, OUT_A) > 1577836800ull * 1000000000ull);
    for (uint32_t id = 0; id < 4; id++) {
        assert_int_equal(Z_wasi_snapshot_preview1Z_clock_res_get(w, id, OUT_A), WASI_ESUCCESS);
        assert_true(load64(h, OUT_A) > 0);
        assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(w, id, 0, OUT_A),
                         WASI_ESUCCESS);
    }
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(w, 4, 0, OUT_A), WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_res_get(w, 0xFFFFFFFF, OUT_A), WASI_EINVAL);
}

/* A subscription record (48 bytes) at `at`. */
static void put_subscription(harness *h, uint32_t at, uint64_t userdata, uint8_t tag,
                             uint32_t id_or_fd, uint64_t timeout, uint16_t flags) {
    memset(h->memory.data + at, 0, 48);
    store64(h, at, userdata);
    h->memory.data[at + 8] = tag;
    store32(h, at + 16, id_or_fd);
    store64(h, at + 24, timeout);
    memcpy(h->memory.data + at + 40, &flags, 2);
}

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_wasi_poll_oneoff(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    const uint64_t userdata = 0x1122334455667788ull;
    /* One relative 1 ms monotonic clock: one clock event, after >= 1 ms. */
    put_subscription(h, DATA, userdata, 0, 1, 1000000, 0);
    memset(h->memory.data + BIG, 0xAA, 64);
    uint64_t start = monotonic_ns();
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 1, OUT_A),
                     WASI_ESUCCESS);
    uint64_t elapsed = monotonic_ns() - start;
    assert_int_equal(load32(h, OUT_A), 1);
    assert_int_equal(load64(h, BIG), userdata);
    uint16_t error;
    memcpy(&error, h->memory.data + BIG + 8, 2);
    assert_int_equal(error, 0);
    assert_int_equal(h->memory.data[BIG + 10], 0); /* type: clock */
    assert_true(elapsed >= 1000000);
    assert_true(elapsed < 1000000000);                /* and not absurdly long */
    assert_int_equal(h->memory.data[BIG + 32], 0xAA); /* one event written, no more */

    /* An absolute deadline in the past fires at once. */
    put_subscription(h, DATA, 7, 0, 1, 1, 1);
    start = monotonic_ns();
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 1, OUT_A),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, OUT_A), 1);
    assert_int_equal(load64(h, BIG), 7);
    assert_true(monotonic_ns() - start < 500000000);

    /* Ready descriptors win over a long clock: no sleep, one event per fd
     * subscription; a bad descriptor reports EBADF in its event. */
    put_subscription(h, DATA, 1, 0, 1, 60ull * 1000000000ull, 0);
    put_subscription(h, DATA + 48, 2, 1, 3, 0, 0);
    put_subscription(h, DATA + 96, 3, 2, 55, 0, 0);
    start = monotonic_ns();
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 3, OUT_A),
                     WASI_ESUCCESS);
    assert_true(monotonic_ns() - start < 500000000);
    assert_int_equal(load32(h, OUT_A), 2);
    assert_int_equal(load64(h, BIG), 2);
    assert_int_equal(h->memory.data[BIG + 10], 1); /* fd_read */
    assert_int_equal(load64(h, BIG + 32), 3);
    memcpy(&error, h->memory.data + BIG + 32 + 8, 2);
    assert_int_equal(error, WASI_EBADF);

    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 0, OUT_A), WASI_EINVAL);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(w, DATA, BIG, 0xFFFFFFFF, OUT_A),
                     WASI_EINVAL);
}

/* Calls a (wasi, fd, path, length) import on `path` relative to fd 3. */
static uint32_t path_call(harness *h, uint32_t (*call)(wasi *, uint32_t, uint32_t, uint32_t),
                          const char *path) {
    uint32_t length = put_string(h, PATH, path);
    return call(h->w, 3, PATH, length);
}

static void test_wasi_path_operations(void **state) {
    harness *h = *state;
    wasi *w = h->w;
    uint32_t (*mkdir_)(wasi *, uint32_t, uint32_t, uint32_t) =
        Z_wasi_snapshot_preview1Z_path_create_directory;
    uint32_t (*rmdir_)(wasi *, uint32_t, uint32_t, uint32_t) =
        Z_wasi_snapshot_preview1Z_path_remove_directory;
    uint32_t (*unlink_)(wasi *, uint32_t, uint32_t, uint32_t) =
        Z_wasi_snapshot_preview1Z_path_unlink_file;
    assert_int_equal(path_call(h, mkdir_, "newdir"), WASI_ESUCCESS);
    assert_int_equal(path_call(h, mkdir_, "newdir"), WASI_EEXIST);
    assert_int_equal(path_call(h, mkdir_, "a/b/c"), WASI_ENOENT);
    assert_int_equal(path_call(h, rmdir_, "data"), WASI_ENOTEMPTY);
    assert_int_equal(path_call(h, unlink_, "data"), WASI_EISDIR);
    assert_int_equal(path_call(h, unlink_, "missing"), WASI_ENOENT);
    assert_int_equal(path_call(h, rmdir_, "data/hello.txt"), WASI_ENOTDIR);
    assert_int_equal(path_call(h, rmdir_, "newdir"), WASI_ESUCCESS);
    assert_int_equal(vfs_stat(h->fs, "/newdir", &(vfs_metadata){0}), -ENOENT);

    /* stat through a path. */
    uint32_t n = put_string(h, PATH, "data/hello.txt");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_filestat_get(w, 3, 0, PATH, n, BIG),
                     WASI_ESUCCESS);
    assert_int_equal(h->memory.data[BIG + 16], 4);
    assert_int_equal(load64(h, BIG + 32), 11);

    /* Rename, and the errno mapping of the VFS's refusals. */
    uint32_t m = put_string(h, PATH2, "data/renamed.txt");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_rename(w, 3, PATH, n, 3, PATH2, m),
                     WASI_ESUCCESS);
    assert_int_equal(vfs_stat(h->fs, "/data/renamed.txt", &(vfs_metadata){0}), 0);
    mount_memfs(h->fs, "/mnt", 0);
    mount_memfs(h->fs, "/ro", 1);
    n = put_string(h, PATH, "data/renamed.txt");
    m = put_string(h, PATH2, "mnt/x");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_rename(w, 3, PATH, n, 3, PATH2, m),
                     WASI_EXDEV);
    assert_int_equal(path_call(h, mkdir_, "ro/d"), WASI_EROFS);
    assert_int_equal(
        wasi_open(h, 3, "ro/f", OFLAG_CREAT, RIGHT_FD_READ | RIGHT_FD_WRITE, 0, NULL),
        WASI_EROFS);
    assert_int_equal(path_call(h, rmdir_, "mnt"), WASI_EBUSY);
    assert_int_equal(wasi_open(h, 3, "data", 0, RIGHT_FD_READ | RIGHT_FD_WRITE, 0, NULL),
                     WASI_EISDIR);
    assert_int_equal(wasi_open(h, 3, "data/renamed.txt", OFLAG_CREAT | OFLAG_EXCL,
                               RIGHT_FD_READ | RIGHT_FD_WRITE, 0, NULL),
                     WASI_EEXIST);

    /* utimensat: given times are stored, "now" is now, and both at once
     * for one field is EINVAL; read-only mounts refuse. */
    n = put_string(h, PATH, "data/renamed.txt");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_filestat_set_times(w, 3, 0, PATH, n, 7, 9, 1 | 4),
                     WASI_ESUCCESS);
    vfs_metadata st;
    assert_int_equal(vfs_stat(h->fs, "/data/renamed.txt", &st), 0);
    assert_true(st.atime_ns == 7 && st.mtime_ns == 9);
    struct timespec before;
    clock_gettime(CLOCK_REALTIME, &before);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_filestat_set_times(w, 3, 0, PATH, n, 0, 0, 2 | 8),
                     WASI_ESUCCESS);
    assert_int_equal(vfs_stat(h->fs, "/data/renamed.txt", &st), 0);
    assert_true(st.mtime_ns >= (uint64_t)before.tv_sec * 1000000000u && st.atime_ns == st.mtime_ns);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_filestat_set_times(w, 3, 0, PATH, n, 1, 1, 1 | 2),
                     WASI_EINVAL);
}

static void test_wasi_fd_table(void **state) {
    harness *h = *state;
    /* A table of 6 slots, with the preopen at 3... */
    wasi_options options = {NULL, NULL, 6};
    wasi *small = wasi_new(h->fs, &options);
    assert_non_null(small);
    wasi_set_memory(small, &h->memory);
    vfs_file *root;
    assert_int_equal(vfs_open(h->fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root), 0);
    assert_int_equal(wasi_install(small, 3, root, "/", 1, 0, 1), 0);
    vfs_file_release(root);

    uint32_t length = put_string(h, PATH, "data/hello.txt");
    uint32_t got[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(small, 3, 0, PATH, length, 0,
                                                             RIGHT_FD_READ, 0, 0, FD_OUT),
                         WASI_ESUCCESS);
        got[i] = load32(h, FD_OUT);
    }
    /* ...hands out 0, 1, 2, 4, 5 (the lowest free first), then EMFILE. */
    assert_int_equal(got[0], 0);
    assert_int_equal(got[2], 2);
    assert_int_equal(got[3], 4);
    assert_int_equal(got[4], 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(small, 3, 0, PATH, length, 0,
                                                         RIGHT_FD_READ, 0, 0, FD_OUT),
                     WASI_EMFILE);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(small, 1), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(small, 3, 0, PATH, length, 0,
                                                         RIGHT_FD_READ, 0, 0, FD_OUT),
                     WASI_ESUCCESS);
    assert_int_equal(load32(h, FD_OUT), 1);
    /* Closing the preopen makes paths relative to it fail cleanly. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(small, 3), WASI_ESUCCESS);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(small, 3, 0, PATH, length, 0,
                                                         RIGHT_FD_READ, 0, 0, FD_OUT),
                     WASI_EBADF);
    wasi_free(small); /* closes the rest: the leak checker verifies */
}

static void test_wasi_proc_exit(void **state) {
    harness *h = *state;
    uint32_t code = 12345;
    assert_int_equal(wasi_exited(h->w, &code), 0);
    assert_int_equal(code, 12345);
    /* proc_exit unwinds with a trap, as out of the guest; the runtime then
     * asks wasi_exited whether that was an exit. */
    volatile int returned = 0;
    wasm_rt_trap_t trap = wasm_rt_impl_try();
    if (trap == WASM_RT_TRAP_NONE) {
        Z_wasi_snapshot_preview1Z_proc_exit(h->w, 42);
        returned = 1;
    }
    assert_int_equal(returned, 0);
    assert_int_not_equal(trap, WASM_RT_TRAP_NONE);
    assert_int_equal(wasi_exited(h->w, &code), 1);
    assert_int_equal(code, 42);
}

static void test_wasi_errno_mapping(void **state) {
    (void)state;
    assert_int_equal(wasi_errno_from_posix(0), WASI_ESUCCESS);
    assert_int_equal(wasi_errno_from_posix(-ENOENT), WASI_ENOENT);
    assert_int_equal(wasi_errno_from_posix(-ENOTDIR), WASI_ENOTDIR);
    assert_int_equal(wasi_errno_from_posix(-EROFS), WASI_EROFS);
    assert_int_equal(wasi_errno_from_posix(-EXDEV), WASI_EXDEV);
    assert_int_equal(wasi_errno_from_posix(-ENOSPC), WASI_ENOSPC);
    assert_int_equal(wasi_errno_from_posix(-ENAMETOOLONG), WASI_ENAMETOOLONG);
    assert_int_equal(wasi_errno_from_posix(-EBUSY), WASI_EBUSY);
    /* Anything unexpected is EIO, never a host number passed through. */
    assert_int_equal(wasi_errno_from_posix(-EHOSTUNREACH), WASI_EIO);
    assert_int_equal(wasi_errno_from_posix(-100000), WASI_EIO);
}

/* ========================================================================= */
/* buffer.c                                                                  */
/* ========================================================================= */

#define FFFD "\xEF\xBF\xBD"

static void expect_sanitized(const char *input, size_t size, const char *expected) {
    char *out = utf8_sanitize(input, size);
    assert_non_null(out);
    assert_string_equal(out, expected);
    free(out);
}

static void test_utf8_valid_unchanged(void **state) {
    (void)state;
    const char *valid[] = {
        "",
        "plain ASCII, with\ttabs\nand newlines",
        "caf\xC3\xA9",                      /* U+00E9 */
        "\xC2\x80\xDF\xBF",                 /* U+0080, U+07FF: 2-byte bounds */
        "\xE0\xA0\x80\xEF\xBF\xBF",         /* U+0800, U+FFFF */
        "\xE2\x82\xAC 100",                 /* euro sign */
        "\xED\x9F\xBF\xEE\x80\x80",         /* U+D7FF, U+E000: around the surrogates */
        "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF", /* U+10000, U+10FFFF */
        "\xF0\x9F\x98\x80 emoji",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        expect_sanitized(valid[i], strlen(valid[i]), valid[i]);
}

static void test_utf8_invalid_replaced(void **state) {
    (void)state;
    expect_sanitized("\xFF", 1, FFFD);
    expect_sanitized("a\x80z", 3, "a" FFFD "z");         /* lone continuation */
    expect_sanitized("\xC3(", 2, FFFD "(");              /* missing continuation */
    expect_sanitized("\xC0\xAF", 2, FFFD FFFD);          /* overlong '/' */
    expect_sanitized("\xC1\xBF", 2, FFFD FFFD);          /* overlong U+007F */
    expect_sanitized("\xE0\x80\xAF", 3, FFFD FFFD FFFD); /* overlong, 3 bytes */
    expect_sanitized("\xF0\x80\x80\xAF", 4, FFFD FFFD FFFD FFFD);
    expect_sanitized("\xED\xA0\x80", 3, FFFD FFFD FFFD);          /* U+D800 */
    expect_sanitized("\xED\xBF\xBF", 3, FFFD FFFD FFFD);          /* U+DFFF */
    expect_sanitized("\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD); /* U+110000 */
    expect_sanitized("\xF8\x88\x80\x80\x80", 5, FFFD FFFD FFFD FFFD FFFD);
    expect_sanitized("ok\xE2\x82", 4, "ok" FFFD FFFD); /* cut off at the end */
    expect_sanitized("a\0b", 3, "a" FFFD "b");         /* NUL */
    expect_sanitized("\0", 1, FFFD);
    /* Valid text around invalid bytes is kept exactly. */
    expect_sanitized("\xC3\xA9\xFF\xC3\xA9", 5, "\xC3\xA9" FFFD "\xC3\xA9");
    /* Only `size` bytes are read. */
    expect_sanitized("abc\xFF", 3, "abc");
}

static void test_buffer_append(void **state) {
    (void)state;
    buffer b = {0};
    assert_int_equal(buffer_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 10; i++) assert_int_equal(buffer_append(&b, chunk, sizeof chunk), 0);
    assert_int_equal(b.size, 10000);
    assert_true(b.capacity > b.size);
    assert_int_equal(b.data[b.size], '\0');
    assert_int_equal(buffer_append(&b, "a\0b", 3), 0);
    assert_memory_equal(b.data + 10000, "a\0b", 4);
    /* A size that would overflow is refused and changes nothing. */
    assert_int_equal(buffer_append(&b, chunk, SIZE_MAX - 2), -ENOMEM);
    assert_int_equal(b.size, 10003);
    buffer_free(&b);
    assert_null(b.data);
    assert_int_equal(b.size, 0);
}

/* ========================================================================= */

/* --- image writer (src/vfs/image_writer.c): what it writes, image.c reads --- */

static int anonymous_file(void) {
    char path[] = "/tmp/capsule-image-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_image_writer_round_trip(void **state) {
    (void)state;
    vfs_image_builder *builder = vfs_image_builder_new();
    assert_int_equal(vfs_image_builder_add(builder, "pkg/sub/mod.py", "x = 1\n", 6), 0);
    assert_int_equal(vfs_image_builder_add(builder, "pkg/__init__.py", "", 0), 0);
    assert_int_equal(vfs_image_builder_add(builder, "pkg-1.0.dist-info/METADATA", "Name: pkg\n", 10), 0);
    assert_int_equal(vfs_image_builder_add(builder, "top.py", "y", 1), 0);
    assert_int_equal(vfs_image_builder_add(builder, "../evil", "", 0), -EINVAL);
    assert_int_equal(vfs_image_builder_add(builder, "/abs", "", 0), -EINVAL);
    assert_int_equal(vfs_image_builder_add(builder, "a//b", "", 0), -EINVAL);
    int fd = anonymous_file();
    assert_int_equal(vfs_image_builder_write(builder, fd), 0);
    vfs_image_builder_free(builder);
    vfs_image *image;
    assert_int_equal(vfs_image_open_fd(fd, &image), 0);
    close(fd);
    const vfs_backend_ops *ops;
    void *backend;
    vfs_image_backend(image, &ops, &backend);
    vfs_image_release(image); /* the mount holds its own reference */
    vfs *fs = vfs_new();
    assert_int_equal(vfs_mount(fs, "/", ops, backend, 1), 0);
    vfs_file *file;
    char data[16] = "";
    size_t done = 0;
    assert_int_equal(vfs_open(fs, "/pkg/sub/mod.py", VFS_O_READ, &file), 0);
    assert_int_equal(file->ops->read(file, data, sizeof data, 0, &done), 0);
    assert_int_equal(done, 6);
    assert_memory_equal(data, "x = 1\n", 6);
    vfs_file_release(file);
    vfs_metadata st;
    assert_int_equal(vfs_stat(fs, "/pkg/sub", &st), 0);
    assert_int_equal(st.type, VFS_DIRECTORY);
    assert_int_equal(vfs_stat(fs, "/top.py", &st), 0);
    assert_int_equal(st.size, 1);
    assert_int_equal(vfs_stat(fs, "/pkg/missing", &st), -ENOENT);
    vfs_free(fs);

    /* A file where a directory is, or the same file twice: refused. */
    static const char *const clashes[][2] = {{"a", "a/b"}, {"same", "same"}};
    for (int i = 0; i < 2; i++) {
        builder = vfs_image_builder_new();
        assert_int_equal(vfs_image_builder_add(builder, clashes[i][0], "1", 1), 0);
        assert_int_equal(vfs_image_builder_add(builder, clashes[i][1], "2", 1), 0);
        fd = anonymous_file();
        assert_int_equal(vfs_image_builder_write(builder, fd), -EEXIST);
        close(fd);
        vfs_image_builder_free(builder);
    }
    /* An empty environment is still an image. */
    builder = vfs_image_builder_new();
    fd = anonymous_file();
    assert_int_equal(vfs_image_builder_write(builder, fd), 0);
    assert_int_equal(vfs_image_open_fd(fd, &image), 0);
    vfs_image_release(image);
    close(fd);
    vfs_image_builder_free(builder);
}

/* --- base64 and hot pages (buffer.c, hot_pages.c) ----------------------------------- */

static void test_base64_round_trip(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
                 {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}, {"\xff\xfe\x00", "//4A"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t size = i == 7 ? 3 : strlen(cases[i].in);
        char *encoded = base64_encode((const unsigned char *)cases[i].in, size);
        assert_non_null(encoded);
        assert_string_equal(encoded, cases[i].out);
        free(encoded);
        size_t decoded_size = 99;
        unsigned char *decoded = base64_decode(cases[i].out, &decoded_size);
        assert_non_null(decoded);
        assert_int_equal(decoded_size, size);
        assert_memory_equal(decoded, cases[i].in, size);
        free(decoded);
    }
    /* The URL-safe alphabet and line breaks are read too; other bytes are not base64. */
    size_t size;
    unsigned char *decoded = base64_decode("_-4A\n", &size);
    assert_non_null(decoded);
    assert_int_equal(size, 3);
    assert_memory_equal(decoded, "\xff\xee\x00", 3);
    free(decoded);
    assert_null(base64_decode("Zm9v!", &size));
    assert_null(base64_decode("Zm 9v", &size));
}

static void test_hot_pages_valid(void **state) {
    (void)state;
    uint32_t good[] = {0, 3, 4, 900}, repeated[] = {1, 1}, decreasing[] = {5, 2};
    assert_true(hot_pages_valid(good, sizeof good));
    assert_true(hot_pages_valid(NULL, 0));
    assert_false(hot_pages_valid(repeated, sizeof repeated));
    assert_false(hot_pages_valid(decreasing, sizeof decreasing));
    assert_false(hot_pages_valid(good, sizeof good - 1)); /* not whole indices */
    size_t too_many = (HOT_PAGES_MAX + 1) * sizeof(uint32_t);
    uint32_t *many = malloc(too_many);
    assert_non_null(many);
    for (uint32_t i = 0; i <= HOT_PAGES_MAX; i++) many[i] = i;
    assert_false(hot_pages_valid(many, too_many));
    assert_true(hot_pages_valid(many, too_many - sizeof(uint32_t)));
    free(many);
}

/* In a child forked from a process whose memory is all present (as a
 * worker is forked from the zygote), reports in `pipe_fd` the pages the
 * child wrote after `prefault` ran on `list`, then `written` ones. */
static void child_scan(uint8_t *memory, size_t size, const uint32_t *list, size_t list_count,
                       const uint32_t *written, size_t written_count, int pipe_fd) {
    int pagemap = hot_pages_open();
    if (pagemap < 0) _exit(2);
    hot_pages_prefault(memory, size, list, list_count * sizeof *list);
    for (size_t i = 0; i < written_count; i++) memory[(size_t)written[i] * HOT_PAGE_SIZE + 7] = 1;
    buffer found = {0};
    if (hot_pages_scan(pagemap, memory, size, &found) != 0) _exit(3);
    if (write(pipe_fd, found.data ? found.data : "", found.size) != (ssize_t)found.size) _exit(4);
    _exit(0);
}

static size_t scan_in_child(uint8_t *memory, size_t size, const uint32_t *list, size_t list_count,
                            const uint32_t *written, size_t written_count, uint32_t *out,
                            size_t out_max) {
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipe_fds[0]);
        child_scan(memory, size, list, list_count, written, written_count, pipe_fds[1]);
    }
    close(pipe_fds[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], (char *)out + got, out_max * sizeof *out - got)) > 0)
        got += (size_t)n;
    close(pipe_fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2) skip(); /* no /proc/self/pagemap here */
    assert_int_equal(WEXITSTATUS(status), 0);
    return got / sizeof *out;
}

/* What a worker reports is exactly what it wrote after the fork (not what
 * it only read), and pages written ahead count as written: so a list
 * learnt once is what the next workers take off their runs. */
static void test_hot_pages_scan_and_prefault(void **state) {
    (void)state;
    size_t pages = 64, size = pages * HOT_PAGE_SIZE;
    uint8_t *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(memory != MAP_FAILED);
    memset(memory, 0x5a, size); /* all present before the fork, as the zygote's memory is */
    uint32_t found[64];
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < size; i += HOT_PAGE_SIZE) sum += memory[i];
    (void)sum;

    uint32_t written[] = {3, 7, 8, 63};
    size_t count = scan_in_child(memory, size, NULL, 0, written, 4, found, 64);
    assert_int_equal(count, 4);
    assert_memory_equal(found, written, sizeof written);

    /* Written ahead: 10-12, and 70 (beyond the memory: skipped); then the
     * child writes 3 only.  Contents stay as they were (checked by 0x5a). */
    uint32_t ahead[] = {10, 11, 12, 70}, three[] = {3}, expected[] = {3, 10, 11, 12};
    count = scan_in_child(memory, size, ahead, 4, three, 1, found, 64);
    assert_int_equal(count, 4);
    assert_memory_equal(found, expected, sizeof expected);
    assert_int_equal(memory[10 * HOT_PAGE_SIZE], 0x5a);
    munmap(memory, size);
}

/* SHA-256 (src/libraries/digest.c) against FIPS 180-2's examples, whole and
 * fed in pieces that straddle its 64-byte blocks; every content address and
 * start-image key depends on it. */
static void test_digest_known_answers(void **state) {
    (void)state;
    char hex[2 * DIGEST_BYTES + 1];
    digest_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest_sha256_hex(NULL, 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    digest_sha256_hex(two_blocks, strlen(two_blocks), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a's, added 1, 63, 64, 65 ... bytes at a time. */
    static char million[1000000];
    memset(million, 'a', sizeof million);
    digest_context context;
    digest_start(&context);
    size_t done = 0, step = 1;
    while (done < sizeof million) {
        size_t n = sizeof million - done < step ? sizeof million - done : step;
        digest_add(&context, million + done, n);
        done += n;
        step = step == 1 ? 63 : step + 1;
    }
    uint8_t pieces[DIGEST_BYTES], whole[DIGEST_BYTES];
    digest_finish(&context, pieces);
    digest_sha256(million, sizeof million, whole);
    assert_memory_equal(pieces, whole, sizeof whole);
    digest_sha256_hex(million, sizeof million, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* HMAC-SHA256, RFC 4231's second case (a key shorter than the block). */
    uint8_t mac[DIGEST_BYTES], expected[DIGEST_BYTES];
    const char *message = "what do ya want for nothing?";
    digest_hmac_sha256("Jefe", 4, message, strlen(message), mac);
    static const char expected_hex[] =
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    for (int i = 0; i < DIGEST_BYTES; i++) {
        unsigned byte;
        sscanf(expected_hex + 2 * i, "%2x", &byte);
        expected[i] = (uint8_t)byte;
    }
    assert_memory_equal(mac, expected, sizeof mac);
    assert_int_equal(digest_equal(mac, expected, sizeof mac), 1);
    expected[DIGEST_BYTES - 1] ^= 1;
    assert_int_equal(digest_equal(mac, expected, sizeof mac), 0);
}

int main(void) {
    wasm_rt_init();
#define WASI_TEST(name) cmocka_unit_test_setup_teardown(name, wasi_setup, wasi_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_known_answers),
        cmocka_unit_test(test_normalize_components),
        cmocka_unit_test(test_normalize_clamps_at_root),
        cmocka_unit_test(test_normalize_relative_to_base),
        cmocka_unit_test(test_normalize_rejects),
        cmocka_unit_test(test_normalize_length_limits),
        cmocka_unit_test(test_mount_longest_prefix),
        cmocka_unit_test(test_mount_errors),
        cmocka_unit_test(test_mount_points_listed_and_protected),
        cmocka_unit_test(test_mount_read_only),
        cmocka_unit_test(test_mount_rename_across),
        cmocka_unit_test(test_memfs_read_write_truncate),
        cmocka_unit_test(test_memfs_shared_open_file),
        cmocka_unit_test(test_memfs_readdir),
        cmocka_unit_test(test_memfs_unlink_while_open),
        cmocka_unit_test(test_memfs_remove),
        cmocka_unit_test(test_memfs_rename),
        cmocka_unit_test(test_memfs_quota),
        cmocka_unit_test(test_memfs_entry_limit),
        cmocka_unit_test(test_memfs_set_times),
        cmocka_unit_test(test_devfs),
        cmocka_unit_test(test_template_values),
        cmocka_unit_test(test_memfs_enotdir),
        cmocka_unit_test(test_memfs_put),
        cmocka_unit_test(test_image_stdlib_content),
        cmocka_unit_test(test_image_listing),
        cmocka_unit_test(test_image_lookup_errors),
        cmocka_unit_test(test_image_read_only),
        cmocka_unit_test(test_image_handmade_valid),
        cmocka_unit_test(test_image_corrupt_header),
        cmocka_unit_test(test_image_corrupt_entries),
        cmocka_unit_test(test_image_corrupt_tree),
        cmocka_unit_test(test_image_byte_flips_never_crash),
        WASI_TEST(test_wasi_bad_pointers),
        WASI_TEST(test_wasi_bad_fd),
        WASI_TEST(test_wasi_path_escape),
        WASI_TEST(test_wasi_read_write_roundtrip),
        WASI_TEST(test_wasi_seek_tell_append),
        WASI_TEST(test_wasi_readdir),
        WASI_TEST(test_wasi_prestat),
        WASI_TEST(test_wasi_fdstat_rights),
        WASI_TEST(test_wasi_links_refused),
        WASI_TEST(test_wasi_sockets),
        WASI_TEST(test_wasi_args_environ),
        WASI_TEST(test_wasi_random),
        WASI_TEST(test_wasi_clocks),
        WASI_TEST(test_wasi_poll_oneoff),
        WASI_TEST(test_wasi_path_operations),
        WASI_TEST(test_wasi_fd_table),
        WASI_TEST(test_wasi_proc_exit),
        cmocka_unit_test(test_wasi_errno_mapping),
        cmocka_unit_test(test_utf8_valid_unchanged),
        cmocka_unit_test(test_utf8_invalid_replaced),
        cmocka_unit_test(test_buffer_append),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_hot_pages_valid),
        cmocka_unit_test(test_hot_pages_scan_and_prefault),
        cmocka_unit_test(test_image_writer_round_trip),
    };
#undef WASI_TEST
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    wasm_rt_free();
    return failed;
}
