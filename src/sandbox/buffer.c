#include "buffer.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int buffer_append(buffer *b, const void *data, size_t size) {
    if (size > SIZE_MAX / 2 - b->size) return -ENOMEM;
    if (b->size + size + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->size + size + 1) capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown) return -ENOMEM;
        b->data = grown;
        b->capacity = capacity;
    }
    if (size) memcpy(b->data + b->size, data, size);
    b->size += size;
    b->data[b->size] = '\0';
    return 0;
}

void buffer_free(buffer *b) {
    free(b->data);
    b->data = NULL;
    b->size = b->capacity = 0;
}

/* Length of the valid UTF-8 sequence at `s` (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if it is invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t available) {
    unsigned char c = s[0];
    size_t length;
    uint32_t minimum, code;
    if (c < 0x80) return c ? 1 : 0;
    if ((c & 0xE0) == 0xC0) length = 2, minimum = 0x80, code = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) length = 3, minimum = 0x800, code = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) length = 4, minimum = 0x10000, code = c & 0x07;
    else return 0;
    if (length > available) return 0;
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        code = code << 6 | (s[i] & 0x3F);
    }
    if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
    return length;
}

char *utf8_sanitize(const char *data, size_t size) {
    static const char replacement[] = "\xEF\xBF\xBD";
    buffer out = {0};
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    if (buffer_append(&out, "", 0)) return NULL;
    while (i < size) {
        size_t run = i;
        size_t n;
        while (run < size && (n = utf8_sequence(s + run, size - run)) > 0) run += n;
        if (run > i && buffer_append(&out, s + i, run - i)) goto fail;
        i = run;
        if (i < size) {
            if (buffer_append(&out, replacement, 3)) goto fail;
            i++;
        }
    }
    return out.data;
fail:
    buffer_free(&out);
    return NULL;
}

char *base64_encode(const unsigned char *data, size_t size) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((size + 2) / 3) + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < size) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < size) v |= data[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < size ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int base64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

unsigned char *base64_decode(const char *in, size_t *size) {
    size_t length = strlen(in);
    unsigned char *out = malloc(length / 4 * 3 + 3);
    if (!out) return NULL;
    uint32_t accumulator = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < length; i++) {
        if (in[i] == '=' || in[i] == '\n' || in[i] == '\r') continue;
        int v = base64_value((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        accumulator = (accumulator << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(accumulator >> bits);
        }
    }
    *size = o;
    return out;
}
