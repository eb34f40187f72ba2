/* dtype.c — dtype names and the non-inline conversions. */
#include "dtype.h"

#include <math.h>

static const char *const names[V3_DTYPE_COUNT] = {"F32", "BF16", "F16", "F8_E4M3", "I32", "I64", "U8", "BOOL"};
static const int sizes[V3_DTYPE_COUNT] = {4, 2, 2, 1, 4, 8, 1, 1};

int v3_dtype_from_name(const char *name) {
    for (int i = 0; i < V3_DTYPE_COUNT; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *v3_dtype_name(v3_dtype t) { return (unsigned)t < V3_DTYPE_COUNT ? names[t] : "?"; }
int v3_dtype_size(v3_dtype t) { return (unsigned)t < V3_DTYPE_COUNT ? sizes[t] : 0; }

float v3_f16_to_f32(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

uint16_t v3_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (a < 0x38800000u) {                                   /* subnormal or zero in half */
        float af;
        memcpy(&af, &a, 4);
        float q = af * 16777216.0f; /* units of 2^-24 */
        uint32_t r = (uint32_t)nearbyintf(q);
        return (uint16_t)(sign | r);
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 127 + 15;
    uint32_t h = exp << 10 | mant >> 13;
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

uint8_t v3_f32_to_e4m3(float f) {
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    /* Find the nearest representable value by exhaustive comparison over the 126 finite
     * magnitudes; ties go to the even code (mantissa lsb 0). Used only for re-quantisation. */
    int best = 0;
    float bestd = INFINITY;
    for (int c = 0; c <= 0x7e; c++) {
        float d = fabsf(v3_e4m3_to_f32((uint8_t)c) - a);
        if (d < bestd || (d == bestd && (c & 1) == 0)) {
            bestd = d;
            best = c;
        }
    }
    return sign | (uint8_t)best;
}
