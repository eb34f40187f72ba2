/* blob.c — little-endian encode/decode of the store's id and logprob arrays.
 * On little-endian hosts (x86-64, aarch64 Linux) this is a memcpy; elsewhere bytes are swapped, so
 * the on-disk layout never depends on the writer's byte order. */
#include "blob.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define V3_BLOB_NATIVE_LE 1
#else
#define V3_BLOB_NATIVE_LE 0
#endif

static void put_le32(uint8_t *d, uint32_t v) {
    d[0] = (uint8_t)v;
    d[1] = (uint8_t)(v >> 8);
    d[2] = (uint8_t)(v >> 16);
    d[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *s) {
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

void v3_blob_put_u32(uint8_t *dst, const uint32_t *src, size_t n) {
    if (V3_BLOB_NATIVE_LE) {
        if (n) memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) put_le32(dst + 4 * i, src[i]);
}

void v3_blob_put_f32(uint8_t *dst, const float *src, size_t n) {
    if (V3_BLOB_NATIVE_LE) {
        if (n) memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        put_le32(dst + 4 * i, u);
    }
}

void v3_blob_get_u32(uint32_t *dst, const uint8_t *src, size_t n) {
    if (V3_BLOB_NATIVE_LE) {
        if (n) memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = get_le32(src + 4 * i);
}

void v3_blob_get_f32(float *dst, const uint8_t *src, size_t n) {
    if (V3_BLOB_NATIVE_LE) {
        if (n) memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_le32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
}
