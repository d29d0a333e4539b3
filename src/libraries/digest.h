/*
 * digest.h — SHA-256 and HMAC-SHA256, for every digest capsule takes:
 * content addresses of snapshot pages and packages, start-image keys,
 * audit-log and token digests, the MAC of a requestState; and comparing
 * secrets in constant time.
 *
 * From Nettle (libnettle8), not OpenSSL's libcrypto.  Every `capsule run`
 * takes one digest, its start-image key, and libcrypto made that dear:
 * loading and relocating it (17,000 relocations, ≈ 400 KB written) cost
 * ≈ 1.9 ms a process, and its first EVP digest set up providers and read
 * openssl.cnf, ≈ 2 ms more, on the 2-core test machine where native
 * `python3.11 -c pass` takes ≈ 20 ms.  Nettle loads in ≈ 0.1–0.3 ms and
 * needs no set-up; its SHA-256 uses the CPU's SHA instructions where they
 * exist (22 MB of 16 KiB pages: 14.7 ms against libcrypto's 13.1).
 */
#ifndef CAPSULE_DIGEST_H
#define CAPSULE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_BYTES 32 /* SHA-256's, and HMAC-SHA256's */

/* A SHA-256 in progress; its contents are Nettle's (digest.c checks the
 * size at compile time). */
typedef struct digest_context {
    _Alignas(16) unsigned char state[128];
} digest_context;

void digest_start(digest_context *context);
void digest_add(digest_context *context, const void *data, size_t size);
/* Writes the digest and wipes the context. */
void digest_finish(digest_context *context, uint8_t digest[DIGEST_BYTES]);

/* The SHA-256 of `size` bytes at `data` (which may be NULL when size is 0). */
void digest_sha256(const void *data, size_t size, uint8_t digest[DIGEST_BYTES]);
/* The same as 64 lowercase hex digits and a NUL. */
void digest_sha256_hex(const void *data, size_t size, char hex[2 * DIGEST_BYTES + 1]);

/* HMAC-SHA256 (RFC 2104) of `data` under `key`. */
void digest_hmac_sha256(const void *key, size_t key_size, const void *data, size_t size,
                        uint8_t mac[DIGEST_BYTES]);

/* 1 if the `size` bytes at a and b are equal, else 0, in a time that does
 * not depend on where they differ (MACs, token digests, session ids). */
int digest_equal(const void *a, const void *b, size_t size);

#endif
