/*
 * frame.h — messages between the host, the zygote and workers.
 *
 * A frame is one type byte, a 32-bit little-endian payload length, and the
 * payload, over a stream socketpair.  Lengths are checked against the
 * caller's maximum before anything is allocated.
 *
 *   host → zygote   'S' spawn a worker (the worker's socket rides along as
 *                       SCM_RIGHTS; the payload: hot pages to write ahead,
 *                       hot_pages.h)           zygote → host 'P' u32 pid
 *   zygote → host   'Y' ready (warm-up done) or 'X' start-up failed (text)
 *   host → worker   'Q' request: JSON header line, "\n", code bytes
 *   worker → host   'O' stdout bytes, 'E' stderr bytes, 'R' result (JSON)
 *   worker → host   'M' the pages the run wrote, before 'R', when the
 *                       request's header asked ("report_pages")
 *   worker → host   'D' dependencies wanted (JSON)    host → worker 'D' answer
 *                       (JSON; the package image rides along as SCM_RIGHTS)
 *   worker → host   'C' a host-function call or list (JSON)   host → worker 'C'
 *                       a JSON header line, then the result (functions.c)
 */
#ifndef CAP_FRAME_H
#define CAP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAX (256u << 20)

/* Writes a whole frame, retrying on EINTR; 0 or -errno. */
int frame_write(int fd, char type, const void *payload, size_t size);
/* Same, passing `passed_fd` along with it. */
int frame_write_fd(int fd, char type, const void *payload, size_t size, int passed_fd);
/* Reads one frame; *payload is malloc'd (NUL-terminated), caller frees.
 * *received_fd gets a passed descriptor or -1 (NULL: none expected).
 * Returns 0, -EPIPE at a clean end of stream, -EMSGSIZE, or -errno. */
int frame_read(int fd, char *type, char **payload, size_t *size, size_t max_size,
               int *received_fd);

#endif
