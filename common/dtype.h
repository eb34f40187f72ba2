/* dtype.h — element types of checkpoints and their scalar conversions (bf16, fp16, e4m3fn).
 * Conversions are exact where the format allows: widening to fp32 is exact for all three;
 * narrowing rounds to nearest even, as torch does. */
#ifndef V3_DTYPE_H
#define V3_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum v3_dtype {
    V3_F32 = 0,
    V3_BF16,
    V3_F16,
    V3_F8_E4M3,
    V3_I32,
    V3_I64,
    V3_U8,
    V3_BOOL,   /* one byte per element, 0 or 1 */
    V3_DTYPE_COUNT
} v3_dtype;

/* safetensors spelling ("F32", "BF16", "F16", "F8_E4M3", "I32", "I64", "U8", "BOOL"); -1 if unknown. */
int v3_dtype_from_name(const char *name);
const char *v3_dtype_name(v3_dtype t);
int v3_dtype_size(v3_dtype t);

static inline float v3_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t v3_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float v3_f16_to_f32(uint16_t h);
uint16_t v3_f32_to_f16(float f);

/* e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN; max 448. */
static inline float v3_e4m3_to_f32(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) {
        uint32_t nan = 0x7fc00000u;
        memcpy(&v, &nan, 4);
        return v;
    }
    if (e == 0) v = (float)m * 0.001953125f; /* 2^-6 * m/8 = m * 2^-9 */
    else {
        uint32_t u = (uint32_t)(e - 7 + 127) << 23 | (uint32_t)m << 20;
        memcpy(&v, &u, 4);
    }
    return s ? -v : v;
}

/* Round to nearest even, saturating to ±448 (as torch's float8_e4m3fn cast of finite values does
 * not; torch gives NaN past 464 — we saturate because quantisation always scales into range first). */
uint8_t v3_f32_to_e4m3(float f);

#endif
