/*
 * test_unit.c — the VFS and every WASI import, driven directly with a fake
 * guest memory and hostile arguments.  Built with ASan and UBSan.
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
#include <unistd.h>

#include "../../src/sandbox/buffer.h"
#include "../../src/vfs/vfs.h"
#include "../../src/wasi/wasi.h"

typedef uint32_t u32;
typedef uint64_t u64;

/* The imports under test (wasm2c's names; see src/wasi/wasi.c). */
u32 Z_wasi_snapshot_preview1Z_args_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_args_sizes_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_environ_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_environ_sizes_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_clock_time_get(wasi *, u32, u64, u32);
u32 Z_wasi_snapshot_preview1Z_random_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_close(wasi *, u32);
u32 Z_wasi_snapshot_preview1Z_fd_fdstat_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_filestat_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_filestat_set_size(wasi *, u32, u64);
u32 Z_wasi_snapshot_preview1Z_fd_prestat_get(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(wasi *, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_pread(wasi *, u32, u32, u32, u64, u32);
u32 Z_wasi_snapshot_preview1Z_fd_read(wasi *, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_readdir(wasi *, u32, u32, u32, u64, u32);
u32 Z_wasi_snapshot_preview1Z_fd_seek(wasi *, u32, u64, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_tell(wasi *, u32, u32);
u32 Z_wasi_snapshot_preview1Z_fd_write(wasi *, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_create_directory(wasi *, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_filestat_get(wasi *, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_link(wasi *, u32, u32, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_open(wasi *, u32, u32, u32, u32, u32, u64, u64, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_readlink(wasi *, u32, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_remove_directory(wasi *, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_rename(wasi *, u32, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_symlink(wasi *, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_path_unlink_file(wasi *, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_poll_oneoff(wasi *, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_sock_recv(wasi *, u32, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_sock_send(wasi *, u32, u32, u32, u32, u32);
u32 Z_wasi_snapshot_preview1Z_sock_accept(wasi *, u32, u32, u32);

#define MEMORY_SIZE 65536u
#define RIGHT_READ (1ull << 1)
#define RIGHT_WRITE (1ull << 6)
#define OFLAG_CREAT 1
#define OFLAG_DIRECTORY 2
#define OFLAG_EXCL 4
#define OFLAG_TRUNC 8

/* Guest memory layout used by the tests. */
#define PATH_AT 1024   /* path strings */
#define IOV_AT 2048    /* iovec arrays */
#define OUT_AT 3072    /* out-parameters */
#define DATA_AT 4096   /* buffers */

typedef struct fixture {
    vfs *fs;
    void *scratch;
    wasi *w;
    wasm_rt_memory_t memory;
} fixture;

static u32 get32(fixture *f, u32 at) {
    u32 v;
    memcpy(&v, f->memory.data + at, 4);
    return v;
}

static u64 get64(fixture *f, u32 at) {
    u64 v;
    memcpy(&v, f->memory.data + at, 8);
    return v;
}

static void put32(fixture *f, u32 at, u32 v) {
    memcpy(f->memory.data + at, &v, 4);
}

static u32 put_path(fixture *f, const char *path) {
    size_t n = strlen(path);
    memcpy(f->memory.data + PATH_AT, path, n);
    return (u32)n;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    const vfs_backend_ops *ops;
    char *argv[] = {"python", "-c", "pass", NULL};
    char *env[] = {"GIVEN=1", NULL};
    wasi_options options = {argv, env, 32};
    vfs_file *root;
    f->memory.data = calloc(1, MEMORY_SIZE);
    f->memory.pages = f->memory.max_pages = 1;
    f->memory.size = MEMORY_SIZE;
    f->fs = vfs_new();
    assert_int_equal(vfs_memfs_new(1 << 20, &ops, &f->scratch), 0);
    assert_int_equal(vfs_mount(f->fs, "/", ops, f->scratch, 0), 0);
    assert_int_equal(vfs_mkdir(f->fs, "/tmp"), 0);
    f->w = wasi_new(f->fs, &options);
    wasi_set_memory(f->w, &f->memory);
    assert_int_equal(vfs_open(f->fs, "/", VFS_O_READ | VFS_O_DIRECTORY, &root), 0);
    assert_int_equal(wasi_install(f->w, 3, root, "/", 1, 0, 1), 0);
    vfs_file_release(root);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    wasi_free(f->w);
    vfs_free(f->fs);
    free(f->memory.data);
    free(f);
    return 0;
}

/* Opens `path` relative to the root preopen; returns the WASI errno. */
static u32 open_path(fixture *f, const char *path, u32 oflags, u64 rights, u32 *fd) {
    u32 n = put_path(f, path);
    u32 rc = Z_wasi_snapshot_preview1Z_path_open(f->w, 3, 0, PATH_AT, n, oflags, rights, 0, 0, OUT_AT);
    if (rc == 0) *fd = get32(f, OUT_AT);
    return rc;
}

static u32 write_text(fixture *f, u32 fd, const char *text) {
    memcpy(f->memory.data + DATA_AT, text, strlen(text));
    put32(f, IOV_AT, DATA_AT);
    put32(f, IOV_AT + 4, (u32)strlen(text));
    return Z_wasi_snapshot_preview1Z_fd_write(f->w, fd, IOV_AT, 1, OUT_AT);
}

static u32 read_text(fixture *f, u32 fd, u32 size, char *out) {
    put32(f, IOV_AT, DATA_AT);
    put32(f, IOV_AT + 4, size);
    u32 rc = Z_wasi_snapshot_preview1Z_fd_read(f->w, fd, IOV_AT, 1, OUT_AT);
    if (rc == 0) {
        u32 n = get32(f, OUT_AT);
        memcpy(out, f->memory.data + DATA_AT, n);
        out[n] = '\0';
    }
    return rc;
}

/* --- vfs_normalize ------------------------------------------------------------ */

static void normalize_paths(void **state) {
    (void)state;
    char out[VFS_PATH_MAX];
    struct { const char *base, *path, *want; } cases[] = {
        {NULL, "/a/b/c", "/a/b/c"},   {NULL, "/a//b///c/", "/a/b/c"},
        {NULL, "/a/./b/.", "/a/b"},   {NULL, "/a/b/../c", "/a/c"},
        {NULL, "/../../etc", "/etc"}, {NULL, "/..", "/"},
        {"/work", "x/y", "/work/x/y"}, {"/work", "../../../etc/passwd", "/etc/passwd"},
        {"/work", ".", "/work"},      {"/work", "/abs", "/abs"},
        {"/", "a/../../b", "/b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(vfs_normalize(cases[i].base, cases[i].path, strlen(cases[i].path), out), 0);
        assert_string_equal(out, cases[i].want);
    }
    assert_int_equal(vfs_normalize(NULL, "/a\0b", 4, out), -EINVAL);
    assert_int_equal(vfs_normalize("/", "", 0, out), -ENOENT);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(vfs_normalize("/", long_name, strlen(long_name), out), -ENAMETOOLONG);
    static char long_path[VFS_PATH_MAX * 2];
    for (size_t i = 0; i + 2 < sizeof long_path; i += 2) memcpy(long_path + i, "a/", 2);
    assert_int_equal(vfs_normalize("/", long_path, strlen(long_path), out), -ENAMETOOLONG);
}

/* --- mounts --------------------------------------------------------------------------- */

static void mounts_route_by_longest_prefix_and_enforce_read_only(void **state) {
    fixture *f = *state;
    const vfs_backend_ops *ops;
    void *other;
    vfs_file *file;
    vfs_metadata st;
    assert_int_equal(vfs_memfs_new(0, &ops, &other), 0);
    assert_int_equal(vfs_memfs_put(other, "inside.txt", "ro", 2), 0);
    assert_int_equal(vfs_mount(f->fs, "/data/ro", ops, other, 1), 0);
    /* The mount point appears in its parent. */
    assert_int_equal(vfs_stat(f->fs, "/data", &st), 0);
    assert_int_equal(st.type, VFS_DIRECTORY);
    assert_int_equal(vfs_stat(f->fs, "/data/ro/inside.txt", &st), 0);
    assert_int_equal(st.size, 2);
    /* "/data/rox" is not under "/data/ro". */
    assert_int_equal(vfs_open(f->fs, "/data/rox", VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    vfs_file_release(file);
    /* Every write-like call on the read-only mount is EROFS. */
    assert_int_equal(vfs_open(f->fs, "/data/ro/inside.txt", VFS_O_WRITE, &file), -EROFS);
    assert_int_equal(vfs_open(f->fs, "/data/ro/new", VFS_O_WRITE | VFS_O_CREATE, &file), -EROFS);
    assert_int_equal(vfs_open(f->fs, "/data/ro/inside.txt", VFS_O_READ | VFS_O_TRUNCATE, &file), -EROFS);
    assert_int_equal(vfs_mkdir(f->fs, "/data/ro/d"), -EROFS);
    assert_int_equal(vfs_unlink(f->fs, "/data/ro/inside.txt"), -EROFS);
    assert_int_equal(vfs_rename(f->fs, "/data/ro/inside.txt", "/data/ro/x"), -EROFS);
    /* Across mounts, and the mount point itself. */
    assert_int_equal(vfs_rename(f->fs, "/data/rox", "/tmp/rox"), 0);
    assert_int_equal(vfs_rename(f->fs, "/tmp/rox", "/data/ro/rox"), -EROFS);
    assert_int_equal(vfs_rmdir(f->fs, "/data/ro"), -EBUSY);
    assert_int_equal(vfs_rename(f->fs, "/data/ro", "/data/moved"), -EBUSY);
    /* A second mount at the same point, or at a relative path, is refused
     * (and the backend handed over is destroyed: ASan checks for leaks). */
    void *spare;
    assert_int_equal(vfs_memfs_new(0, &ops, &spare), 0);
    assert_int_equal(vfs_mount(f->fs, "/data/ro", ops, spare, 1), -EEXIST);
    assert_int_equal(vfs_memfs_new(0, &ops, &spare), 0);
    assert_int_equal(vfs_mount(f->fs, "relative", ops, spare, 1), -EINVAL);
}

static void image_backend_reads_the_stdlib(void **state) {
    fixture *f = *state;
    vfs_image *image;
    const vfs_backend_ops *ops;
    void *backend;
    vfs_file *file;
    vfs_metadata st;
    assert_int_equal(vfs_image_open("build/stdlib.img", &image), 0);
    assert_int_equal(vfs_image_backend(image, &ops, &backend), 0);
    assert_int_equal(vfs_mount(f->fs, "/lib", ops, backend, 1), 0);
    vfs_image_release(image); /* the mount holds its own reference */

    assert_int_equal(vfs_open(f->fs, "/lib/os.py", VFS_O_READ, &file), 0);
    char head[64] = {0}, expected[64] = {0};
    size_t done;
    assert_int_equal(file->ops->read(file, head, sizeof head - 1, 0, &done), 0);
    FILE *host = fopen("build/stdlib/os.py", "rb");
    assert_non_null(host);
    assert_int_equal(fread(expected, 1, sizeof expected - 1, host), done);
    fclose(host);
    assert_string_equal(head, expected);
    vfs_file_release(file);

    /* The listing of the root holds "json" exactly once. */
    assert_int_equal(vfs_open(f->fs, "/lib", VFS_O_READ | VFS_O_DIRECTORY, &file), 0);
    vfs_dirent entry;
    int seen = 0;
    for (uint64_t cookie = 0; file->ops->readdir(file, cookie, &entry) == 1; cookie++)
        if (strcmp(entry.name, "json") == 0 && entry.type == VFS_DIRECTORY) seen++;
    assert_int_equal(seen, 1);
    vfs_file_release(file);

    assert_int_equal(vfs_stat(f->fs, "/lib/no-such-module.py", &st), -ENOENT);
    assert_int_equal(vfs_stat(f->fs, "/lib/os.py/x", &st), -ENOTDIR);
    assert_int_equal(vfs_open(f->fs, "/lib/os.py", VFS_O_WRITE, &file), -EROFS);
}

static void damaged_images_are_rejected(void **state) {
    (void)state;
    static const unsigned char bad_magic[32] = "NOTANIMG";
    unsigned char huge_count[32] = "CAPIMG01\xff\xff\xff\x7f";
    unsigned char wild_offset[16 + 32] = "CAPIMG01\x01";
    memset(wild_offset + 16, 0xff, 16); /* path and data offsets far outside */
    struct { const void *data; size_t size; } cases[] = {
        {bad_magic, sizeof bad_magic}, {huge_count, sizeof huge_count},
        {wild_offset, sizeof wild_offset}, {"CAPIMG01", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[] = "/tmp/capsule-test-image-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, cases[i].data, cases[i].size), (ssize_t)cases[i].size);
        close(fd);
        vfs_image *image = NULL;
        assert_int_equal(vfs_image_open(path, &image), -EINVAL);
        unlink(path);
    }
    vfs_image *image;
    assert_int_equal(vfs_image_open("/nonexistent/image", &image), -ENOENT);
}

/* --- memfs ----------------------------------------------------------------------------- */

static void memfs_files_directories_and_quota(void **state) {
    fixture *f = *state;
    vfs_file *file, *again;
    size_t done;
    char buffer[16] = {0};
    assert_int_equal(vfs_open(f->fs, "/tmp/a", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    assert_int_equal(file->ops->write(file, "hello", 5, 0, &done), 0);
    assert_int_equal(vfs_open(f->fs, "/tmp/a", VFS_O_READ | VFS_O_WRITE | VFS_O_CREATE |
                                                   VFS_O_EXCLUSIVE, &again), -EEXIST);
    /* Unlinked while open: the data stays readable until closed. */
    assert_int_equal(vfs_unlink(f->fs, "/tmp/a"), 0);
    assert_int_equal(file->ops->read(file, buffer, sizeof buffer, 0, &done), 0);
    assert_int_equal(done, 5);
    assert_memory_equal(buffer, "hello", 5);
    vfs_file_release(file);

    assert_int_equal(vfs_mkdir(f->fs, "/tmp/d"), 0);
    assert_int_equal(vfs_mkdir(f->fs, "/tmp/d"), -EEXIST);
    assert_int_equal(vfs_memfs_put(f->scratch, "tmp/d/f", "x", 1), 0);
    assert_int_equal(vfs_rmdir(f->fs, "/tmp/d"), -ENOTEMPTY);
    assert_int_equal(vfs_unlink(f->fs, "/tmp/d"), -EISDIR);
    assert_int_equal(vfs_rmdir(f->fs, "/tmp/d/f"), -ENOTDIR);
    assert_int_equal(vfs_open(f->fs, "/tmp/d/f/g", VFS_O_READ, &file), -ENOTDIR);
    assert_int_equal(vfs_rename(f->fs, "/tmp/d", "/tmp/d/inside"), -EINVAL);
    assert_int_equal(vfs_memfs_put(f->scratch, "tmp/other", "yy", 2), 0);
    assert_int_equal(vfs_rename(f->fs, "/tmp/other", "/tmp/d/f"), 0); /* replaces */
    vfs_metadata st;
    assert_int_equal(vfs_stat(f->fs, "/tmp/d/f", &st), 0);
    assert_int_equal(st.size, 2);
    assert_int_equal(vfs_stat(f->fs, "/tmp/other", &st), -ENOENT);

    /* 1 MiB quota (setup): a write past it is ENOSPC, below it works. */
    static char block[512 << 10];
    assert_int_equal(vfs_open(f->fs, "/tmp/big", VFS_O_WRITE | VFS_O_CREATE, &file), 0);
    assert_int_equal(file->ops->write(file, block, sizeof block, 0, &done), 0);
    assert_int_equal(file->ops->write(file, block, sizeof block, sizeof block + 4096, &done), -ENOSPC);
    assert_int_equal(file->ops->truncate(file, 0), 0); /* frees the quota */
    assert_int_equal(file->ops->write(file, block, sizeof block, 0, &done), 0);
    vfs_file_release(file);
}

/* --- WASI --------------------------------------------------------------------------------- */

static void guest_pointers_are_checked(void **state) {
    fixture *f = *state;
    /* Out-parameter past the end, and an (offset + length) that wraps. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_sizes_get(f->w, MEMORY_SIZE - 2, OUT_AT), 21);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(f->w, 0xFFFFFFF0u, 0x20), 21);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(f->w, MEMORY_SIZE - 4, 8), 21);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(f->w, 3, 0, 0xFFFFFFFFu, 16, 0, RIGHT_READ,
                                                         0, 0, OUT_AT), 21);
    put32(f, IOV_AT, 0xFFFFFF00u); /* iovec pointing outside memory */
    put32(f, IOV_AT + 4, 0x1000);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_read(f->w, 3, IOV_AT, 1, OUT_AT), 31); /* dir */
    u32 fd;
    assert_int_equal(open_path(f, "tmp/p", OFLAG_CREAT, RIGHT_READ | RIGHT_WRITE, &fd), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(f->w, fd, IOV_AT, 1, OUT_AT), 21);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_write(f->w, fd, IOV_AT, 100000, OUT_AT), 28);
    /* Bad descriptors. */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(f->w, 999), 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(f->w, 0xFFFFFFFFu, OUT_AT), 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_open(f->w, 77, 0, PATH_AT, 1, 0, RIGHT_READ, 0,
                                                         0, OUT_AT), 8);
}

static void paths_cannot_leave_the_sandbox(void **state) {
    fixture *f = *state;
    u32 fd;
    assert_int_equal(open_path(f, "../../etc/passwd", 0, RIGHT_READ, &fd), 44);
    assert_int_equal(open_path(f, "/etc/passwd", 0, RIGHT_READ, &fd), 44);
    assert_int_equal(open_path(f, "tmp/../../../proc/self/environ", 0, RIGHT_READ, &fd), 44);
    /* ".." from an opened subdirectory climbs inside the VFS only. */
    u32 dir;
    assert_int_equal(open_path(f, "tmp", OFLAG_DIRECTORY, RIGHT_READ, &dir), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_create_directory(f->w, dir, PATH_AT,
                                                                      put_path(f, "../made")), 0);
    vfs_metadata st;
    assert_int_equal(vfs_stat(f->fs, "/made", &st), 0);
    /* Links cannot be made: they would defeat lexical resolution. */
    u32 n = put_path(f, "tmp/link");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_symlink(f->w, PATH_AT, n, 3, PATH_AT, n), 63);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_link(f->w, 3, 0, PATH_AT, n, 3, PATH_AT, n), 63);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_readlink(f->w, 3, PATH_AT, put_path(f, "made"),
                                                             DATA_AT, 64, OUT_AT), 28);
}

static void files_round_trip_through_iovecs(void **state) {
    fixture *f = *state;
    u32 fd;
    char text[64];
    assert_int_equal(open_path(f, "tmp/round", OFLAG_CREAT | OFLAG_TRUNC, RIGHT_READ | RIGHT_WRITE, &fd), 0);
    assert_int_equal(write_text(f, fd, "hello, world"), 0);
    assert_int_equal(get32(f, OUT_AT), 12);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_tell(f->w, fd, OUT_AT), 0);
    assert_int_equal(get64(f, OUT_AT), 12);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(f->w, fd, 7, 0, OUT_AT), 0);
    assert_int_equal(read_text(f, fd, 32, text), 0);
    assert_string_equal(text, "world");
    assert_int_equal(read_text(f, fd, 32, text), 0); /* end of file */
    assert_string_equal(text, "");
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(f->w, fd, (u64)-100, 1, OUT_AT), 28);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_seek(f->w, fd, 0, 9, OUT_AT), 28);
    /* pread at an offset leaves the cursor alone. */
    put32(f, IOV_AT, DATA_AT);
    put32(f, IOV_AT + 4, 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_pread(f->w, fd, IOV_AT, 1, 0, OUT_AT), 0);
    assert_memory_equal(f->memory.data + DATA_AT, "hello", 5);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_set_size(f->w, fd, 5), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_filestat_get(f->w, fd, OUT_AT), 0);
    assert_int_equal(get64(f, OUT_AT + 32), 5);         /* size */
    assert_int_equal(f->memory.data[OUT_AT + 16], 4);   /* regular file */
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(f->w, fd), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_close(f->w, fd), 8);

    /* A read-only open has no FD_WRITE right and cannot write. */
    assert_int_equal(open_path(f, "tmp/round", 0, RIGHT_READ, &fd), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_fdstat_get(f->w, fd, OUT_AT), 0);
    assert_int_equal(get64(f, OUT_AT + 8) & RIGHT_WRITE, 0);
    assert_int_equal(write_text(f, fd, "x"), 8);
    assert_int_equal(open_path(f, "tmp/round", OFLAG_CREAT | OFLAG_EXCL, RIGHT_READ, &fd), 20);
    assert_int_equal(open_path(f, "tmp/round", OFLAG_DIRECTORY, RIGHT_READ, &fd), 54);
    u32 n = put_path(f, "tmp/round");
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_filestat_get(f->w, 3, 0, PATH_AT, n, OUT_AT), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_rename(f->w, 3, PATH_AT, n, 3, PATH_AT + 512,
                                                           0) , 44);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_unlink_file(f->w, 3, PATH_AT, n), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_unlink_file(f->w, 3, PATH_AT, n), 44);
    assert_int_equal(Z_wasi_snapshot_preview1Z_path_remove_directory(f->w, 3, PATH_AT,
                                                                     put_path(f, "tmp")), 0);
}

static void readdir_resumes_and_truncates(void **state) {
    fixture *f = *state;
    char name[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "tmp/entry-%02d", i);
        assert_int_equal(vfs_memfs_put(f->scratch, name, "", 0), 0);
    }
    u32 dir;
    assert_int_equal(open_path(f, "tmp", OFLAG_DIRECTORY, RIGHT_READ, &dir), 0);
    int seen[20] = {0};
    u64 cookie = 0;
    for (int rounds = 0; rounds < 100; rounds++) {
        /* A 50-byte buffer holds one 35-byte entry and part of the next. */
        assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(f->w, dir, DATA_AT, 50, cookie, OUT_AT), 0);
        u32 used = get32(f, OUT_AT);
        if (used == 0) break;
        u32 at = DATA_AT, end = DATA_AT + used;
        while (at + 24 <= end) {
            u32 length;
            memcpy(&length, f->memory.data + at + 16, 4);
            if (at + 24 + length > end) break; /* cut short: ask again from here */
            int index = atoi((char *)f->memory.data + at + 24 + 6);
            seen[index]++;
            memcpy(&cookie, f->memory.data + at, 8);
            at += 24 + length;
        }
        if (used < 50) break;
    }
    for (int i = 0; i < 20; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_readdir(f->w, 30, DATA_AT, 50, 0, OUT_AT), 8);
}

static void preopens_args_environment(void **state) {
    fixture *f = *state;
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(f->w, 3, OUT_AT), 0);
    assert_int_equal(get32(f, OUT_AT + 4), 1);
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_dir_name(f->w, 3, DATA_AT, 1), 0);
    assert_int_equal(f->memory.data[DATA_AT], '/');
    assert_int_equal(Z_wasi_snapshot_preview1Z_fd_prestat_get(f->w, 4, OUT_AT), 8);

    assert_int_equal(Z_wasi_snapshot_preview1Z_args_sizes_get(f->w, OUT_AT, OUT_AT + 4), 0);
    assert_int_equal(get32(f, OUT_AT), 3);
    assert_int_equal(get32(f, OUT_AT + 4), sizeof "python" + sizeof "-c" + sizeof "pass");
    assert_int_equal(Z_wasi_snapshot_preview1Z_args_get(f->w, IOV_AT, DATA_AT), 0);
    assert_string_equal((char *)f->memory.data + get32(f, IOV_AT + 8), "pass");
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_sizes_get(f->w, OUT_AT, OUT_AT + 4), 0);
    assert_int_equal(get32(f, OUT_AT), 1);
    assert_int_equal(Z_wasi_snapshot_preview1Z_environ_get(f->w, IOV_AT, DATA_AT), 0);
    assert_string_equal((char *)f->memory.data + get32(f, IOV_AT), "GIVEN=1");
}

static void clocks_randomness_polling_sockets(void **state) {
    fixture *f = *state;
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(f->w, 1, 0, OUT_AT), 0);
    u64 first = get64(f, OUT_AT);
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(f->w, 1, 0, OUT_AT), 0);
    assert_true(get64(f, OUT_AT) >= first);
    assert_int_equal(Z_wasi_snapshot_preview1Z_clock_time_get(f->w, 99, 0, OUT_AT), 28);

    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(f->w, DATA_AT, 32), 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_random_get(f->w, DATA_AT + 32, 32), 0);
    assert_memory_not_equal(f->memory.data + DATA_AT, f->memory.data + DATA_AT + 32, 32);

    /* One relative 1 ms clock subscription: one clock event comes back. */
    unsigned char *s = f->memory.data + DATA_AT;
    memset(s, 0, 48);
    u64 userdata = 0x1234, timeout = 1000000;
    memcpy(s, &userdata, 8);
    s[8] = 0;                    /* clock */
    put32(f, DATA_AT + 16, 1);   /* monotonic */
    memcpy(s + 24, &timeout, 8);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(f->w, DATA_AT, DATA_AT + 64, 1, OUT_AT), 0);
    assert_int_equal(get32(f, OUT_AT), 1);
    assert_int_equal(get64(f, DATA_AT + 64), 0x1234);
    assert_int_equal(f->memory.data[DATA_AT + 64 + 10], 0);
    assert_int_equal(Z_wasi_snapshot_preview1Z_poll_oneoff(f->w, DATA_AT, DATA_AT + 64, 0, OUT_AT), 28);

    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_accept(f->w, 3, 0, OUT_AT), 57);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_recv(f->w, 3, IOV_AT, 1, 0, OUT_AT, OUT_AT + 4), 57);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_send(f->w, 3, IOV_AT, 1, 0, OUT_AT), 57);
    assert_int_equal(Z_wasi_snapshot_preview1Z_sock_send(f->w, 50, IOV_AT, 1, 0, OUT_AT), 8);
}

static void descriptor_table_is_bounded(void **state) {
    fixture *f = *state;
    u32 fd = 0, rc = 0;
    assert_int_equal(vfs_memfs_put(f->scratch, "tmp/x", "", 0), 0);
    for (int i = 0; i < 64 && rc == 0; i++) rc = open_path(f, "tmp/x", 0, RIGHT_READ, &fd);
    assert_int_equal(rc, 33); /* EMFILE at the table's limit (32) */
}

/* --- buffer.c --------------------------------------------------------------------------------- */

static void utf8_is_repaired_for_json(void **state) {
    (void)state;
    struct { const char *in; size_t size; const char *out; } cases[] = {
        {"plain", 5, "plain"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},            /* overlong "/" */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"x\0y", 3, "x\xef\xbf\xbdy"},
        {"\xe2\x82", 2, "\xef\xbf\xbd\xef\xbf\xbd"},            /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = utf8_sanitize(cases[i].in, cases[i].size);
        assert_non_null(out);
        assert_string_equal(out, cases[i].out);
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalize_paths),
        cmocka_unit_test_setup_teardown(mounts_route_by_longest_prefix_and_enforce_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(image_backend_reads_the_stdlib, setup, teardown),
        cmocka_unit_test(damaged_images_are_rejected),
        cmocka_unit_test_setup_teardown(memfs_files_directories_and_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(guest_pointers_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(paths_cannot_leave_the_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(files_round_trip_through_iovecs, setup, teardown),
        cmocka_unit_test_setup_teardown(readdir_resumes_and_truncates, setup, teardown),
        cmocka_unit_test_setup_teardown(preopens_args_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(clocks_randomness_polling_sockets, setup, teardown),
        cmocka_unit_test_setup_teardown(descriptor_table_is_bounded, setup, teardown),
        cmocka_unit_test(utf8_is_repaired_for_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
