/*
 * lockdown.c — seccomp filter and resource limits for workers.
 *
 * The allow-list is what a worker needs after it has been forked from the
 * zygote: the stdlib image is already mapped, guest memory grows with
 * mprotect, the host channel is an inherited socket.  Everything else,
 * including open/openat relative to the current directory, socket, connect,
 * execve, fork/clone, ptrace and kill, ends the worker with SIGSYS, which the
 * host reports as a crash.
 *
 * No path-taking call is allowed at all (open, openat, openat2, stat,
 * newfstatat, ...): workers need none, since the stdlib image is mapped in
 * the zygote.  A dirfd check alone would not do: openat(dirfd, "/etc/passwd")
 * ignores dirfd for absolute paths, and seccomp cannot read the path.
 */
#include "lockdown.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void lockdown_close_other_fds(const int *keep, int keep_count) {
    unsigned int next = 0;
    for (int i = 0; i <= keep_count; i++) {
        unsigned int until = i < keep_count ? (unsigned int)keep[i] : ~0u;
        if (until > next) syscall(SYS_close_range, next, until - 1, 0);
        next = until + 1;
    }
}

int lockdown_network_namespace(void) {
    /* As root this needs no user namespace; elsewhere a user namespace
     * makes it possible.  Failing is fine: seccomp forbids sockets anyway. */
    if (unshare(CLONE_NEWNET) == 0) return 1;
    return unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0;
}

static int set_limit(int resource, rlim_t value) {
    struct rlimit limit = {value, value};
    return setrlimit(resource, &limit) == 0 ? 0 : -errno;
}

/* The worker's filter, as libseccomp builds it; NULL when out of memory
 * or a rule cannot be added. */
static scmp_filter_ctx build_filter(void) {
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!filter) return NULL;
    static const int allowed[] = {
        /* the host channel and guest I/O through it */
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
        SCMP_SYS(close), SCMP_SYS(fstat), SCMP_SYS(lseek),
        /* memory: guest growth (mprotect), malloc, sanitizer runtimes */
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap),
        SCMP_SYS(madvise), SCMP_SYS(brk),
        /* time and randomness for WASI */
        SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(getrandom),
        /* wasm2c traps: signal delivery and siglongjmp's mask restore */
        SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(sigaltstack),
        SCMP_SYS(restart_syscall), SCMP_SYS(futex),
        SCMP_SYS(getpid), SCMP_SYS(gettid),
        /* the per-run CPU limit is armed once the request arrives */
        SCMP_SYS(setitimer),
        /* installed packages arrive as an image descriptor (SCM_RIGHTS)
         * on the channel, the only socket a worker holds */
        SCMP_SYS(recvmsg),
        SCMP_SYS(exit), SCMP_SYS(exit_group),
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !rc; i++)
        rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, allowed[i], 0);
    /* Frames go out with send(MSG_NOSIGNAL) (frame.c): sendto on the
     * connected channel only, never to an address. */
    if (!rc)
        rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(sendto), 2,
                              SCMP_A4(SCMP_CMP_EQ, 0), SCMP_A5(SCMP_CMP_EQ, 0));
    if (rc) {
        seccomp_release(filter);
        return NULL;
    }
    return filter;
}

/* The filter as a BPF program, compiled once in the zygote: libseccomp
 * builds it and probes the kernel with a dozen system calls, which each
 * worker then paid at its start. */
static struct {
    struct sock_filter *filter;
    unsigned short length;
} prepared;

void lockdown_prepare_worker(void) {
    scmp_filter_ctx filter = build_filter();
    int fd = filter ? memfd_create("capsule-seccomp", MFD_CLOEXEC) : -1;
    if (fd >= 0 && seccomp_export_bpf(filter, fd) == 0) {
        off_t size = lseek(fd, 0, SEEK_END);
        off_t count = size / (off_t)sizeof(struct sock_filter);
        struct sock_filter *program =
            size > 0 && size % (off_t)sizeof *program == 0 && count <= BPF_MAXINSNS
                ? malloc((size_t)size)
                : NULL;
        if (program && pread(fd, program, (size_t)size, 0) == size) {
            prepared.filter = program;
            prepared.length = (unsigned short)count;
        } else {
            free(program);
        }
    }
    if (fd >= 0) close(fd);
    if (filter) seccomp_release(filter);
}

int lockdown_worker_limits(void) {
    int rc = 0;
    /* No files written through host descriptors, no new processes, no
     * more descriptors than a run needs.  RLIMIT_AS stays generous: wasm2c
     * reserves 8 GiB of address space per memory (guard pages). */
    if (!rc) rc = set_limit(RLIMIT_FSIZE, 0);
    if (!rc) rc = set_limit(RLIMIT_NPROC, 0);
    if (!rc) rc = set_limit(RLIMIT_NOFILE, 64);
    if (!rc) rc = set_limit(RLIMIT_CORE, 0);
#ifndef __SANITIZE_ADDRESS__ /* ASan's shadow memory alone is terabytes of address space */
    if (!rc) rc = set_limit(RLIMIT_AS, (rlim_t)64 << 30);
#endif
    if (rc) return rc;
    /* A host run as root forks root workers: they keep the uid, but no
     * capability, so that what they still open (their own pagemap) shows
     * them nothing privileged, e.g. physical page numbers. */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &header, none) != 0) return -errno;
    return 0;
}

int lockdown_worker_filter(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -errno; /* no ptrace attach */

#ifdef CAP_PROFILE_TRAINING
    return 0; /* gcov writes profile files at exit: no filter while training */
#endif
    if (prepared.filter) {
        struct sock_fprog program = {prepared.length, prepared.filter};
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0 ? 0 : -errno;
    }
    scmp_filter_ctx filter = build_filter();
    if (!filter) return -ENOMEM;
    int rc = seccomp_load(filter);
    seccomp_release(filter);
    return rc;
}
