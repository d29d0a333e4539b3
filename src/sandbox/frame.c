#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Channels are sockets: MSG_NOSIGNAL turns a dead peer into EPIPE instead
 * of a SIGPIPE that would kill the embedding process. */
static int write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* 0, -EPIPE if the stream ended before any byte, -EIO if it ended midway. */
static int read_all(int fd, void *data, size_t size) {
    char *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, p + done, size - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return done == 0 ? -EPIPE : -EIO;
        done += (size_t)n;
    }
    return 0;
}

static void encode_header(unsigned char header[5], char type, size_t size) {
    header[0] = (unsigned char)type;
    for (int i = 0; i < 4; i++) header[1 + i] = (unsigned char)(size >> (8 * i));
}

/* A small frame goes out in one send: with the header sent apart, the
 * reader would wake for the header and again for the payload, which is
 * most of a short request's round trip (a host-function call, say). */
#define SMALL_FRAME 4096

int frame_write(int fd, char type, const void *payload, size_t size) {
    unsigned char header[5 + SMALL_FRAME];
    if (size > FRAME_MAX) return -EMSGSIZE;
    encode_header(header, type, size);
    if (size <= SMALL_FRAME) {
        if (size) memcpy(header + 5, payload, size);
        return write_all(fd, header, 5 + size);
    }
    int rc = write_all(fd, header, 5);
    return rc ? rc : write_all(fd, payload, size);
}

int frame_write_fd(int fd, char type, const void *payload, size_t size, int passed_fd) {
    unsigned char header[5];
    char control[CMSG_SPACE(sizeof(int))];
    if (size > FRAME_MAX) return -EMSGSIZE;
    encode_header(header, type, size);
    struct iovec iov = {header, sizeof header};
    struct msghdr message = {0};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    memset(control, 0, sizeof control);
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &passed_fd, sizeof(int));
    ssize_t n;
    do n = sendmsg(fd, &message, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if ((size_t)n < sizeof header) {
        int rc = write_all(fd, header + n, sizeof header - (size_t)n);
        if (rc) return rc;
    }
    return write_all(fd, payload, size);
}

int frame_read(int fd, char *type, char **payload, size_t *size, size_t max_size,
               int *received_fd) {
    unsigned char header[5];
    int rc;
    *payload = NULL;
    if (received_fd) {
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {header, 1};
        struct msghdr message = {0};
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        ssize_t n;
        *received_fd = -1;
        do n = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0) return -errno;
        if (n == 0) return -EPIPE;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                memcpy(received_fd, CMSG_DATA(c), sizeof(int));
        rc = read_all(fd, header + 1, 4);
    } else {
        rc = read_all(fd, header, 5);
    }
    if (rc) return rc == -EPIPE && received_fd ? -EIO : rc;
    size_t length = 0;
    for (int i = 0; i < 4; i++) length |= (size_t)header[1 + i] << (8 * i);
    if (length > max_size) return -EMSGSIZE;
    char *data = malloc(length + 1);
    if (!data) return -ENOMEM;
    rc = read_all(fd, data, length);
    if (rc) {
        free(data);
        return rc == -EPIPE ? -EIO : rc;
    }
    data[length] = '\0';
    *type = (char)header[0];
    *payload = data;
    *size = length;
    return 0;
}
