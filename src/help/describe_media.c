/*
 * describe_media.c — describe's checks of a file and its question
 * (describe_media.h).  The rule repeats describe.c's own sniffing, which
 * belongs to the endpoint backend; the two must refuse the same files.
 */
#include "describe_media.h"

#include <stdio.h>
#include <string.h>

#include "capsule.h"

#define MAX_FILE_BYTES (8u << 20)
#define MAX_QUESTION_BYTES (8u << 10)
#define MAX_TEXT_FILE_BYTES (256u << 10)

static const char *sniff(const unsigned char *data, size_t size) {
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
    if (size >= 3 && memcmp(data, "\xff\xd8\xff", 3) == 0) return "image/jpeg";
    if (size >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0))
        return "image/gif";
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (size >= 5 && memcmp(data, "%PDF-", 5) == 0) return "application/pdf";
    if (memchr(data, '\0', size)) return NULL;
    for (size_t i = 0; i < size;) { /* text: valid UTF-8 throughout */
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
    if (size > MAX_FILE_BYTES) {
        snprintf(error, CAP_ERROR_SIZE, "describe: the file has %zu bytes, more than the %u it "
                 "may have (make the image smaller, or send one page)", size, MAX_FILE_BYTES);
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
    return media_type;
}
