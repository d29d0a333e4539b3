/*
 * digest.c — SHA-256 and HMAC-SHA256 by Nettle (digest.h has why not
 * libcrypto).
 */
#include "digest.h"

#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <string.h>

_Static_assert(sizeof(struct sha256_ctx) <= sizeof(((digest_context *)0)->state),
               "digest_context is too small for Nettle's sha256_ctx");
_Static_assert(_Alignof(struct sha256_ctx) <= 16, "digest_context is aligned to 16");
_Static_assert(SHA256_DIGEST_SIZE == DIGEST_BYTES, "SHA-256 is 32 bytes");

void digest_start(digest_context *context) {
    sha256_init((struct sha256_ctx *)context->state);
}

void digest_add(digest_context *context, const void *data, size_t size) {
    if (size) sha256_update((struct sha256_ctx *)context->state, size, data);
}

void digest_finish(digest_context *context, uint8_t digest[DIGEST_BYTES]) {
    sha256_digest((struct sha256_ctx *)context->state, DIGEST_BYTES, digest);
    explicit_bzero(context, sizeof *context);
}

void digest_sha256(const void *data, size_t size, uint8_t digest[DIGEST_BYTES]) {
    digest_context context;
    digest_start(&context);
    digest_add(&context, data, size);
    digest_finish(&context, digest);
}

void digest_sha256_hex(const void *data, size_t size, char hex[2 * DIGEST_BYTES + 1]) {
    static const char digits[] = "0123456789abcdef";
    uint8_t digest[DIGEST_BYTES];
    digest_sha256(data, size, digest);
    for (int i = 0; i < DIGEST_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * DIGEST_BYTES] = '\0';
    explicit_bzero(digest, sizeof digest);
}

void digest_hmac_sha256(const void *key, size_t key_size, const void *data, size_t size,
                        uint8_t mac[DIGEST_BYTES]) {
    struct hmac_sha256_ctx context;
    hmac_sha256_set_key(&context, key_size, key);
    if (size) hmac_sha256_update(&context, size, data);
    hmac_sha256_digest(&context, DIGEST_BYTES, mac);
    explicit_bzero(&context, sizeof context);
}

int digest_equal(const void *a, const void *b, size_t size) {
    return memeql_sec(a, b, size) != 0;
}
