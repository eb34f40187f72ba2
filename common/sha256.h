/* sha256.h — SHA-256 (FIPS 180-4), for checkpoint, data and script checksums. Streaming:
 * init, update any number of times, final; or v3_sha256 for one buffer. */
#ifndef V3_SHA256_H
#define V3_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct v3_sha256_ctx {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];   /* the partial block */
    size_t nbuf;
} v3_sha256_ctx;

void v3_sha256_init(v3_sha256_ctx *s);
void v3_sha256_update(v3_sha256_ctx *s, const void *data, size_t n);
void v3_sha256_final(v3_sha256_ctx *s, uint8_t digest[32]);
/* One call: digest of data[0..n). */
void v3_sha256(const void *data, size_t n, uint8_t digest[32]);
/* Lower-case hex of a digest into hex[65] (NUL-terminated). */
void v3_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
