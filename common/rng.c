/* rng.c — xoshiro256** (Blackman & Vigna), seeded by splitmix64. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void v3_rng_seed(v3_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t v3_rng_u64(v3_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float v3_rng_uniform(v3_rng *r) { return (float)(v3_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

double v3_rng_uniform_f64(v3_rng *r) {
    return (double)(v3_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

float v3_rng_normal(v3_rng *r) {
    double u1 = v3_rng_uniform_f64(r), u2 = v3_rng_uniform_f64(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t v3_rng_below(v3_rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = v3_rng_u64(r);
    while (x >= lim);
    return x % n;
}

v3_rng v3_rng_split(v3_rng *r) {
    v3_rng c;
    v3_rng_seed(&c, v3_rng_u64(r) ^ 0x5851f42d4c957f2dull);
    return c;
}
