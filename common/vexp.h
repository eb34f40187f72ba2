/* vexp.h — the exponential of the softmax passes over vocabulary rows, and the sums built on it:
 * ONE definition shared by the trainer's cross-entropy (kernels/cpu/cpu_loss.c) and the rollout
 * sampler (rollout/sampler.c), so the logprob the sampler records is the trainer's, bit for bit.
 *
 * v3_expf(x) is e^x in fp32 to within 1 ulp (measured over every float in [-104, 0], see
 * tests/unit/test_vexp.c), with expf's edges: exp(±0) = 1 exactly, subnormal results down to
 * x ≈ -103.97 and 0 below, +inf above ≈ 88.72, -inf → 0, NaN → NaN. Algorithm: x clamped to
 * [-110, 89], q = rint(x·log2 e) (by the 1.5·2^23 trick), s = x − q·ln2 (Cody–Waite, two
 * constants: the first product and difference are exact), e^s ≈ 1 + (s + s²·P(s)) with SLEEF's
 * degree-5 P evaluated by Estrin's scheme, then × 2^(q>>1) × 2^(q − (q>>1)) (the first product
 * exact, the second rounding once, also into the subnormal range). Every step is one IEEE
 * operation with no FMA, so the AVX2 path (8 lanes; where all |x| <= 86 it scales by an exponent
 * add, the same product) and the portable path (the same operations lane by lane) give the same
 * bits on every CPU; the portable path is used where the CPU lacks AVX2 or when forced
 * (v3_vexp_force_scalar).
 *
 * The sums. e_i = v3_expf(fl(x_i·scale) − shift) (scale 1 skips the multiply: same bits), and
 *   S = Σ e_i in double over 16 LANES: lane j = ((0 + e_j) + e_{j+16}) + e_{j+32} + …, i.e. the
 *       terms i ≡ j (mod 16) in increasing i, then the lanes are combined by the fixed tree
 *       for w = 8, 4, 2, 1: lane[j] += lane[j + w] (j < w); S = lane[0].
 *   D = Σ e_i·(fl(x_i·scale) − shift) the same way (each product of two floats is exact in
 *       double), for the entropy H = log S − D / S.
 * The order depends only on n and the values, never on the pointer's alignment, the thread or
 * the caller, and the scalar path performs the same lane sums in the same order. A float sum
 * would lose ~4 digits at V = 129,280; 16 double lanes keep the error at the level of one
 * sequential double sum. */
#ifndef V3_VEXP_H
#define V3_VEXP_H

#include <stdint.h>

/* e^x in fp32 (see above); the scalar form of the lanes below, same bits. */
float v3_expf(float x);

/* max over x[0..n) as `m = -inf; for i: if (x[i] > m) m = x[i]` (NaN ignored; -inf if n == 0 or
 * every element is NaN). Evaluated over 32 lanes; only the sign of a zero maximum can depend on
 * the lane structure, and both paths share it. */
float v3_max_f32(const float *x, int64_t n);

/* 1 if every x[i] is finite, then *lo and *hi are the minimum and maximum (n >= 1); 0 if some
 * element is NaN or ±inf (then *lo and *hi are not written). */
int v3_range_f32(const float *x, int64_t n, float *lo, float *hi);

/* S = Σ e^(x_i − shift) (scale 1), the log-sum-exp's normaliser: lse = shift + log(S). */
double v3_sum_exp(const float *x, int64_t n, float shift);

/* S as above, and *d = D = Σ e_i·(x_i − shift). */
double v3_sum_exp_ent(const float *x, int64_t n, float shift, double *d);

/* e_i = v3_expf(fl(x_i·scale) − shift) written to out[i] (out may be x itself: in place), and
 * S returned; with d non-NULL also D. Same S, bit for bit, as v3_sum_exp(x·scale, n, shift). */
double v3_exp_store(const float *x, int64_t n, float scale, float shift, float *out, double *d);

/* Tests and benchmarks: 1 = use the portable scalar path even where AVX2 is available (same bits;
 * this is how that is checked), 0 = choose by the CPU (the default). Not thread-safe: set it while
 * no other thread calls these functions. Returns the previous setting. */
int v3_vexp_force_scalar(int on);
/* 1 if the calls above currently take the AVX2 path. */
int v3_vexp_uses_avx2(void);

#endif
