/*
 * describe_media.c — describe's checks of a file and its question
 * (describe_media.h), the one rule for every backend.
 */
#include "describe_media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capsule.h"
#include "describe.h"

#define MAX_QUESTION_BYTES (8u << 10)
#define MAX_TEXT_FILE_BYTES (256u << 10)

/* The media type of `data` from its first bytes, or NULL when describe
 * cannot send it. */
static const char *sniff(const unsigned char *data, size_t size) {
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
    if (size >= 3 && memcmp(data, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
    if (size >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0))
        return "image/gif";
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (size >= 5 && memcmp(data, "%PDF-", 5) == 0) return "application/pdf";
    if (memchr(data, '\0', size)) return NULL;
    /* Text: valid UTF-8 throughout. */
    for (size_t i = 0; i < size;) {
        unsigned char c = data[i];
        size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 2
                        : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!length || i + length > size) return NULL;
        for (size_t k = 1; k < length; k++)
            if ((data[i + k] & 0xC0) != 0x80) return NULL;
        i += length;
    }
    return "text/plain";
}

/* Big-endian integers of an image header. */
static unsigned read_be(const unsigned char *p, int bytes) {
    unsigned value = 0;
    for (int i = 0; i < bytes; i++) value = value << 8 | p[i];
    return value;
}

static unsigned read_le(const unsigned char *p, int bytes) {
    unsigned value = 0;
    for (int i = bytes - 1; i >= 0; i--) value = value << 8 | p[i];
    return value;
}

/* An image's width and height, read from its header only (PNG's IHDR,
 * GIF's screen, WebP's VP8/VP8L/VP8X chunk, JPEG's first SOF marker):
 * nothing is decoded on the host.  0 when the header does not say. */
static int image_size(const char *media_type, const unsigned char *data, size_t size,
                      unsigned *width, unsigned *height) {
    *width = *height = 0;
    if (strcmp(media_type, "image/png") == 0 && size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        *width = read_be(data + 16, 4);
        *height = read_be(data + 20, 4);
    } else if (strcmp(media_type, "image/gif") == 0 && size >= 10) {
        *width = read_le(data + 6, 2);
        *height = read_le(data + 8, 2);
    } else if (strcmp(media_type, "image/webp") == 0 && size >= 30) {
        if (memcmp(data + 12, "VP8 ", 4) == 0) {
            *width = read_le(data + 26, 2) & 0x3FFF;
            *height = read_le(data + 28, 2) & 0x3FFF;
        } else if (memcmp(data + 12, "VP8L", 4) == 0) {
            unsigned bits = read_le(data + 21, 4);
            *width = (bits & 0x3FFF) + 1;
            *height = (bits >> 14 & 0x3FFF) + 1;
        } else if (memcmp(data + 12, "VP8X", 4) == 0) {
            *width = read_le(data + 24, 3) + 1;
            *height = read_le(data + 27, 3) + 1;
        }
    } else if (strcmp(media_type, "image/jpeg") == 0) {
        /* Markers from offset 2: each FF xx and a 2-byte length, until a
         * start of frame (C0..CF but C4, C8, CC) gives the size. */
        size_t at = 2;
        while (at + 4 <= size && data[at] == 0xFF) {
            unsigned marker = data[at + 1];
            if (marker == 0xFF) {
                at++;
                continue;
            }
            unsigned length = read_be(data + at + 2, 2);
            if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
                marker != 0xCC) {
                if (at + 9 > size) break;
                *height = read_be(data + at + 5, 2);
                *width = read_be(data + at + 7, 2);
                break;
            }
            if (length < 2) break;
            at += 2 + length;
        }
    }
    return *width > 0 && *height > 0;
}

const char *describe_check_file(const unsigned char *data, size_t size, const char *question,
                                char *error) {
    if (!question || !*question || strlen(question) > MAX_QUESTION_BYTES) {
        snprintf(error, CAP_ERROR_SIZE, "describe needs a question of 1 to %u bytes",
                 MAX_QUESTION_BYTES);
        return NULL;
    }
    if (!data || size == 0) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the file is empty");
        return NULL;
    }
    if (size > DESCRIBE_MAX_FILE_BYTES) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the file has %zu bytes, more than the %u it "
                 "may have (make the image smaller, or send one page)", size, DESCRIBE_MAX_FILE_BYTES);
        return NULL;
    }
    const char *media_type = sniff(data, size);
    if (!media_type) {
        snprintf(error, CAP_ERROR_SIZE, "describe: unsupported media type (it takes PNG, JPEG, "
                 "GIF and WebP images, PDF and UTF-8 text)");
        return NULL;
    }
    if (strcmp(media_type, "text/plain") == 0 && size > MAX_TEXT_FILE_BYTES) {
        snprintf(error, CAP_ERROR_SIZE, "describe: a text file may have at most %u bytes",
                 MAX_TEXT_FILE_BYTES);
        return NULL;
    }
    if (strncmp(media_type, "image/", 6) == 0) {
        unsigned width, height;
        if (!image_size(media_type, data, size, &width, &height)) {
            snprintf(error, CAP_ERROR_SIZE, "describe: the %s has no readable size in its header "
                     "(a damaged image?)", media_type);
            return NULL;
        }
        if (width > DESCRIBE_MAX_IMAGE_SIDE || height > DESCRIBE_MAX_IMAGE_SIDE ||
            size > DESCRIBE_MAX_IMAGE_BYTES) {
            snprintf(error, CAP_ERROR_SIZE, "describe: the image is %ux%u px and %zu bytes, more "
                     "than the %u px a side and %u bytes a model is sent; make it smaller first "
                     "(Pillow: image.thumbnail((%u, %u)), then save it as PNG)", width, height,
                     size, DESCRIBE_MAX_IMAGE_SIDE, DESCRIBE_MAX_IMAGE_BYTES,
                     DESCRIBE_MAX_IMAGE_SIDE, DESCRIBE_MAX_IMAGE_SIDE);
            return NULL;
        }
    }
    return media_type;
}

char *describe_text_with_heading(const char *name, const unsigned char *data, size_t size) {
    char heading[300];
    int n = snprintf(heading, sizeof heading, "The file %.200s (text/plain):\n\n", name);
    char *text = malloc((size_t)n + size + 1);
    if (!text) return NULL;
    memcpy(text, heading, (size_t)n);
    memcpy(text + n, data, size);
    text[(size_t)n + size] = '\0';
    return text;
}
