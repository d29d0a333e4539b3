/*
 * lockdown.h — what a worker gives up before it touches a request.
 *
 * Defence in depth under the WebAssembly boundary: even if guest code found
 * a way to run native code in the worker, the worker could not open host
 * files by path, create sockets, run programs, or start processes.
 */
#ifndef CAP_LOCKDOWN_H
#define CAP_LOCKDOWN_H

/* Closes every descriptor except those listed (sorted ascending). */
void lockdown_close_other_fds(const int *keep, int keep_count);

/* Enters an empty network namespace where the kernel allows it; returns 1
 * if it did.  Called once, in the zygote. */
int lockdown_network_namespace(void);

/* Compiles the workers' seccomp filter once, in the zygote, so that each
 * worker only installs it; without it (it failed), each worker builds it. */
void lockdown_prepare_worker(void);
/* A worker locks itself down in two steps, opening in between what it
 * keeps (its pagemap, hot_pages.h): rlimits and no capabilities, then
 * no-new-privs and the seccomp filter.  Each: 0 or a negative errno; on
 * failure the worker must not run guest code. */
int lockdown_worker_limits(void);
int lockdown_worker_filter(void);

#endif
