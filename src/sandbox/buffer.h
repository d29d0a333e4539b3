/*
 * buffer.h — a growable byte buffer, UTF-8 repair for text that came from
 * the guest (which may write any bytes), and base64 for bytes kept as JSON.
 */
#ifndef CAP_BUFFER_H
#define CAP_BUFFER_H

#include <stddef.h>

typedef struct buffer {
    char *data; /* NUL-terminated for convenience; may contain NULs */
    size_t size, capacity;
} buffer;

/* Appends; returns 0 or -ENOMEM (the buffer is unchanged on failure). */
int buffer_append(buffer *b, const void *data, size_t size);
void buffer_free(buffer *b);

/* A NUL-terminated copy of `data` in which every invalid UTF-8 sequence
 * and every NUL is replaced by U+FFFD, so it can go into JSON. */
char *utf8_sanitize(const char *data, size_t size);

/* `data` in standard base64 (RFC 4648, padded), NUL-terminated: malloc'd,
 * NULL when out of memory. */
char *base64_encode(const unsigned char *data, size_t size);

/* The bytes of base64 text `in` (standard or URL-safe alphabet, padding
 * and line breaks skipped) into *size: malloc'd, NULL when `in` is not
 * base64 or out of memory. */
unsigned char *base64_decode(const char *in, size_t *size);

#endif
