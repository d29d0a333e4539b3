/*
 * sha256.h — SHA-256, for every digest capsule takes: content addresses of
 * snapshot pages and packages, start-image keys, audit-log and token
 * digests.
 *
 * Computed by libcrypto's direct digest functions rather than EVP: the
 * first EVP digest of a process initialises OpenSSL's providers and reads
 * openssl.cnf, ≈ 2 ms (0.8 ms without the file) on the 2-core test machine,
 * which every `capsule run` paid for its start-image key — most of the
 * gap to native `python3.11 -c pass` there.  The direct functions run the
 * same assembly (SHA-NI where the CPU has it), with no set-up.
 */
#ifndef CAPSULE_SHA256_H
#define CAPSULE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32

/* A digest in progress; its contents are libcrypto's (sha256.c checks the
 * size at compile time). */
typedef struct sha256_context {
    _Alignas(16) unsigned char state[128];
} sha256_context;

void sha256_start(sha256_context *context);
void sha256_add(sha256_context *context, const void *data, size_t size);
/* Writes the digest and wipes the context. */
void sha256_finish(sha256_context *context, uint8_t digest[SHA256_DIGEST_BYTES]);

/* The digest of `size` bytes at `data` (which may be NULL when size is 0). */
void sha256_digest(const void *data, size_t size, uint8_t digest[SHA256_DIGEST_BYTES]);
/* The same as 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t size, char hex[2 * SHA256_DIGEST_BYTES + 1]);

#endif
