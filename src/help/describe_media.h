/*
 * describe_media.h — what `describe` may send, whichever backend answers
 * (describe.c's endpoint, or the caller's model through
 * cap_run_options.ask_model): the same checks, so a file does not pass or
 * fail depending on which backend happens to be there.
 */
#ifndef CAPSULE_DESCRIBE_MEDIA_H
#define CAPSULE_DESCRIBE_MEDIA_H

#include <stddef.h>

/* Checks the question (1 to 8 KiB), the size (1 byte to 8 MiB; text at
 * most 256 KiB) and the media type, read from the bytes, never a name:
 * PNG, JPEG, GIF, WebP, PDF or UTF-8 text.  The media type ("image/png",
 * ..., "application/pdf", "text/plain"), or NULL with `error`
 * (CAP_ERROR_SIZE) saying what is wrong. */
const char *describe_check_file(const unsigned char *data, size_t size, const char *question,
                                char *error);

/* What every backend sends of a file: its bytes in base64 (base64_encode,
 * buffer.h), or a text file as "The file NAME (text/plain):", a blank line
 * and the text.  Malloc'd; NULL when out of memory. */
char *describe_text_with_heading(const char *name, const unsigned char *data, size_t size);

#endif
