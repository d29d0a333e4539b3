/*
 * sha256.c — SHA-256 by libcrypto's SHA256_Init/Update/Final (sha256.h has
 * why not EVP).  OpenSSL 3 marks them deprecated in favour of EVP, and
 * keeps them; they need no library context, so no provider is loaded and
 * no configuration file read.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sha256.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((sha256_context *)0)->state),
               "sha256_context is too small for libcrypto's SHA256_CTX");
_Static_assert(SHA256_DIGEST_LENGTH == SHA256_DIGEST_BYTES, "SHA-256 is 32 bytes");

void sha256_start(sha256_context *context) {
    SHA256_Init((SHA256_CTX *)context->state);
}

void sha256_add(sha256_context *context, const void *data, size_t size) {
    if (size) SHA256_Update((SHA256_CTX *)context->state, data, size);
}

void sha256_finish(sha256_context *context, uint8_t digest[SHA256_DIGEST_BYTES]) {
    SHA256_Final(digest, (SHA256_CTX *)context->state);
    OPENSSL_cleanse(context, sizeof *context);
}

void sha256_digest(const void *data, size_t size, uint8_t digest[SHA256_DIGEST_BYTES]) {
    sha256_context context;
    sha256_start(&context);
    sha256_add(&context, data, size);
    sha256_finish(&context, digest);
}

void sha256_hex(const void *data, size_t size, char hex[2 * SHA256_DIGEST_BYTES + 1]) {
    static const char digits[] = "0123456789abcdef";
    uint8_t digest[SHA256_DIGEST_BYTES];
    sha256_digest(data, size, digest);
    for (int i = 0; i < SHA256_DIGEST_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * SHA256_DIGEST_BYTES] = '\0';
}
