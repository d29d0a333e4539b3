/*
 * broker.c — host directories mounted in the guest ('H' frames).  A worker
 * makes no path system call (seccomp), so hostfs.c in the worker asks the
 * parent for every stat, listing, read and, on a writable mount, change.
 * The parent resolves each mount-relative path strictly beneath the mount's
 * root with openat2 (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) and keeps the
 * mount's quota.  Threats and checks: docs/mounts.md.
 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "frame.h"

#define MAX_HOST_FILE (64u << 20) /* largest host file a read-only mount serves */

/* Opens a mount-relative path strictly beneath the mount's root: "..",
 * absolute symbolic links and links leading outside fail (EXDEV), as do
 * /proc-style magic links. */
static int open_beneath(int root, const char *path, int flags) {
    struct open_how how = {0};
    how.flags = (uint64_t)(flags | O_CLOEXEC | (flags & O_PATH ? 0 : O_NOCTTY));
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

static int host_stat_answer(int fd, buffer *body) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    uint64_t fields[5] = {S_ISDIR(st.st_mode) ? VFS_DIRECTORY : VFS_FILE, (uint64_t)st.st_size,
                          (uint64_t)st.st_ino,
                          (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec,
                          (uint64_t)st.st_nlink};
    return buffer_append(body, fields, sizeof fields);
}

static int host_read_answer(int fd, buffer *body) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EACCES; /* devices, fifos: never read by the host */
    if ((uint64_t)st.st_size > MAX_HOST_FILE) return -EFBIG;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return 0;
        if (body->size + (size_t)n > MAX_HOST_FILE) return -EFBIG;
        if (buffer_append(body, chunk, (size_t)n)) return -ENOMEM;
    }
}

static int host_list_answer(int fd, buffer *body) {
    DIR *directory = fdopendir(fd);
    if (!directory) return -errno;
    struct dirent *entry;
    int rc = 0;
    while (rc == 0 && (entry = readdir(directory))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char type = entry->d_type == DT_DIR ? 'd' : 'f';
        rc = buffer_append(body, &type, 1);
        if (rc == 0) rc = buffer_append(body, entry->d_name, strlen(entry->d_name) + 1);
    }
    closedir(directory);
    return rc;
}

/* Quota of a writable mount: takes `bytes` of growth, or -ENOSPC. */
static int reserve_growth(cap_config *config, int mount, uint64_t bytes) {
    uint64_t used = __atomic_load_n(&config->host_used[mount], __ATOMIC_RELAXED);
    do {
        if (bytes > config->host_quota[mount] || used > config->host_quota[mount] - bytes)
            return -ENOSPC;
    } while (!__atomic_compare_exchange_n(&config->host_used[mount], &used, used + bytes, 0,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

/* Entries of a writable mount: one more file or directory, or -ENOSPC. */
static int reserve_entry(cap_config *config, int mount) {
    uint64_t used = __atomic_load_n(&config->host_entries[mount], __ATOMIC_RELAXED);
    do {
        if (used >= config->host_entry_limit) return -ENOSPC;
    } while (!__atomic_compare_exchange_n(&config->host_entries[mount], &used, used + 1, 0,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

static void release_entry(cap_config *config, int mount) {
    uint64_t used = __atomic_load_n(&config->host_entries[mount], __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&config->host_entries[mount], &used,
                                        used > 0 ? used - 1 : 0, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        continue;
}

static void release_growth(cap_config *config, int mount, uint64_t bytes) {
    uint64_t used = __atomic_load_n(&config->host_used[mount], __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&config->host_used[mount], &used,
                                        used > bytes ? used - bytes : 0, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        continue;
}

/* Opens the directory that holds `path` beneath `root`, and puts the last
 * component in `name`: a plain name, never "", "." or "..", so the *at()
 * call that follows cannot leave the directory. */
static int open_parent(int root, const char *path, char name[VFS_PATH_MAX]) {
    char parent[VFS_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *last = slash ? slash + 1 : parent;
    if (!*last || strcmp(last, ".") == 0 || strcmp(last, "..") == 0) return -EPERM;
    snprintf(name, VFS_PATH_MAX, "%s", last);
    if (slash) *slash = '\0';
    else parent[0] = '\0';
    return open_beneath(root, parent, O_PATH | O_DIRECTORY);
}

/* An existing regular file opened for writing, refused when it has other
 * hard links: one of them could be a file outside the mount. */
static int open_for_writing(int root, const char *path, struct stat *st) {
    int file = open_beneath(root, path, O_WRONLY | O_NONBLOCK);
    if (file < 0) return file;
    if (fstat(file, st) != 0 || !S_ISREG(st->st_mode) || st->st_nlink != 1) {
        int rc = S_ISDIR(st->st_mode) ? -EISDIR : -EPERM;
        close(file);
        return rc;
    }
    return file;
}

static int host_write_answer(cap_config *config, int mount, char op, const char *path,
                             const char *input, size_t input_size) {
    int root = config->host_roots[mount], rc = 0;
    char name[VFS_PATH_MAX], second[VFS_PATH_MAX];
    struct stat st;
    uint64_t number = 0;
    if ((op == 'p' || op == 't') && input_size >= 8) memcpy(&number, input, 8);
    switch (op) {
    case 'p': case 't': {
        if (input_size < 8 || (op == 't' && input_size != 8)) return -EINVAL;
        size_t length = op == 'p' ? input_size - 8 : 0;
        uint64_t end = op == 'p' ? number + length : number;
        if (number > MAX_HOST_FILE || end > MAX_HOST_FILE) return -EFBIG;
        int file = open_for_writing(root, path, &st);
        if (file < 0) return file;
        uint64_t old = (uint64_t)st.st_size;
        rc = end > old ? reserve_growth(config, mount, end - old) : 0;
        if (rc == 0 && op == 'p') {
            for (size_t done = 0; rc == 0 && done < length;) {
                ssize_t n = pwrite(file, input + 8 + done, length - done, (off_t)(number + done));
                if (n < 0 && errno != EINTR) rc = -errno;
                if (n > 0) done += (size_t)n;
            }
        } else if (rc == 0) {
            if (ftruncate(file, (off_t)number) != 0) rc = -errno;
            else if (number < old) release_growth(config, mount, old - number);
        }
        close(file);
        return rc;
    }
    case 'c': case 'm': case 'u': case 'd': case 'n': case 'T': {
        if (op == 'c' ? input_size != 1 : op == 'n' ? input_size == 0
            : op == 'T' ? input_size != 16 : input_size != 0)
            return -EINVAL;
        int parent = open_parent(root, path, name);
        if (parent < 0) return parent;
        /* A new entry is reserved before it is made and given back if the
         * call fails, so concurrent runs never overshoot the limit. */
        int exists = fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if ((op == 'c' && !exists) || op == 'm') rc = reserve_entry(config, mount);
        if (rc) {
            /* over the entry limit */
        } else if (op == 'c') {
            int file = openat(parent, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
                                                (input[0] ? O_EXCL : 0), 0644);
            rc = file < 0 ? -errno : 0;
            if (file >= 0) close(file);
            if (rc && !exists) release_entry(config, mount);
        } else if (op == 'm') {
            rc = mkdirat(parent, name, 0755) ? -errno : 0;
            if (rc) release_entry(config, mount);
        } else if (op == 'T') {
            uint64_t times[2];
            memcpy(times, input, sizeof times);
            struct timespec at[2];
            for (int i = 0; i < 2; i++)
                at[i] = times[i] == UINT64_MAX
                            ? (struct timespec){0, UTIME_OMIT}
                            : (struct timespec){(time_t)(times[i] / 1000000000u),
                                                (long)(times[i] % 1000000000u)};
            rc = utimensat(parent, name, at, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
        } else if (op == 'u' || op == 'd') {
            int regular = exists && S_ISREG(st.st_mode) && st.st_nlink == 1;
            rc = unlinkat(parent, name, op == 'd' ? AT_REMOVEDIR : 0) ? -errno : 0;
            if (rc == 0 && regular) release_growth(config, mount, (uint64_t)st.st_size);
            if (rc == 0) release_entry(config, mount);
        } else {
            char to[VFS_PATH_MAX];
            if (input_size >= sizeof to || memchr(input, '\0', input_size)) rc = -EINVAL;
            if (rc == 0) {
                memcpy(to, input, input_size);
                to[input_size] = '\0';
            }
            int target = rc ? rc : open_parent(root, to, second);
            if (target < 0) rc = target;
            else {
                struct stat replaced;
                int replacing = fstatat(target, second, &replaced, AT_SYMLINK_NOFOLLOW) == 0;
                rc = renameat(parent, name, target, second) ? -errno : 0;
                if (rc == 0 && replacing) release_entry(config, mount);
                close(target);
            }
        }
        close(parent);
        if (rc == -EXDEV || rc == -ELOOP) rc = -EACCES;
        return rc;
    }
    }
    return -EINVAL;
}

/* A worker's 'H' frame: mount index, op, mount-relative path, and for ops
 * that carry input a NUL and the input.  Checked field by field: it is
 * untrusted. */
static int answer_host(cap_config *config, int fd, const char *payload, size_t size) {
    int32_t rc = -EINVAL;
    buffer body = {0};
    const char *nul = size >= 2 ? memchr(payload + 2, '\0', size - 2) : NULL;
    size_t path_length = nul ? (size_t)(nul - payload - 2) : size >= 2 ? size - 2 : 0;
    const char *input = nul ? nul + 1 : payload + size;
    size_t input_size = (size_t)(payload + size - input);
    int reading = size >= 2 && (payload[1] == 's' || payload[1] == 'r' || payload[1] == 'l');
    int writing = size >= 2 && strchr("ptcmudnT", payload[1]) && payload[1] != '\0';
    if (size >= 2 && (unsigned char)payload[0] < config->host_mount_count &&
        path_length < VFS_PATH_MAX && (reading ? !nul : writing)) {
        char path[VFS_PATH_MAX];
        memcpy(path, payload + 2, path_length);
        path[path_length] = '\0';
        char op = payload[1];
        int mount = (unsigned char)payload[0];
        if (writing) {
            rc = config->host_writable[mount]
                     ? host_write_answer(config, mount, op, path, input, input_size)
                     : -EROFS;
        } else {
            int file = open_beneath(config->host_roots[mount], path,
                                    op == 's' ? O_PATH : op == 'l' ? O_RDONLY | O_DIRECTORY
                                                                   : O_RDONLY | O_NONBLOCK);
            if (file == -EXDEV || file == -ELOOP) file = -EACCES;
            rc = file < 0 ? file
                 : op == 's' ? host_stat_answer(file, &body)
                 : op == 'r' ? host_read_answer(file, &body)
                             : host_list_answer(file, &body);
            if (file >= 0 && op != 'l') close(file);
        }
        if (rc == -EXDEV || rc == -ELOOP) rc = -EACCES;
    }
    buffer reply = {0};
    int status = buffer_append(&reply, &rc, sizeof rc);
    if (status == 0 && rc == 0 && body.size) status = buffer_append(&reply, body.data, body.size);
    if (status == 0) status = frame_write(fd, 'H', reply.data, reply.size);
    buffer_free(&reply);
    buffer_free(&body);
    return status;
}

sandbox_outcome sandbox_frame_host(sandbox_exchange *exchange, const char *payload, size_t size) {
    answer_host(exchange->sandbox->config, exchange->fd, payload, size);
    return SANDBOX_CONTINUE;
}
