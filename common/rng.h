/* rng.h — deterministic random numbers: splitmix64 seeding a xoshiro256** generator.
 * Same seed, same stream, on every machine; the state is a plain struct (checkpointable). */
#ifndef V3_RNG_H
#define V3_RNG_H

#include <stdint.h>

typedef struct v3_rng {
    uint64_t s[4];
} v3_rng;

void v3_rng_seed(v3_rng *r, uint64_t seed);
uint64_t v3_rng_u64(v3_rng *r);
/* uniform in [0, 1) with 24 random bits (exactly representable as float) */
float v3_rng_uniform(v3_rng *r);
/* uniform double in [0, 1) with 53 bits */
double v3_rng_uniform_f64(v3_rng *r);
/* standard normal (Box–Muller on two uniforms, no cached second value: stateless beyond s) */
float v3_rng_normal(v3_rng *r);
/* integer in [0, n) without modulo bias */
uint64_t v3_rng_below(v3_rng *r, uint64_t n);
/* a statistically independent child stream (for per-thread or per-request generators) */
v3_rng v3_rng_split(v3_rng *r);

#endif
