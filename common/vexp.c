/* vexp.c — the softmax exponential and its row sums (see vexp.h for the definition and why).
 *
 * Two implementations of one sequence of IEEE operations: AVX2 intrinsics (8 floats a vector,
 * chosen at run time) and plain C that performs the same operations lane by lane, in the same
 * order, with the same lane-wise partial sums combined by the same tree. Neither uses an FMA
 * (a fused multiply-add rounds once where the C code rounds twice), so both give the same bits;
 * tests/unit/test_vexp.c checks it, as tests/unit/test_ops.c does for the GEMM (cpu_gemm.c uses
 * the same scheme). */
#include "vexp.h"

#include <math.h>
#include <string.h>

/* No contraction into FMAs anywhere in this file (GNU C's default under -march=native would fuse
 * the scalar path's multiply-adds and change its bits; ISO C mode already implies this). And no
 * trapping math: it changes no value, but lets GCC if-convert the clamps and vectorise the scalar
 * path's blocks with SSE2 (same IEEE operations lane by lane, so the same bits), ~3x faster. */
#pragma GCC optimize("fp-contract=off", "no-trapping-math")

/* ---------------------------------------------------------------- the constants */

#define EXP_LO (-110.0f) /* arguments are clamped to [EXP_LO, EXP_HI]: e^-110 rounds to 0 and */
#define EXP_HI 89.0f     /* e^89 to +inf, like expf; q stays in [-159, 128] */
#define LOG2E 1.44269502162933349609375f     /* log2(e) rounded to float */
#define MAGIC 12582912.0f                    /* 1.5·2^23: y + MAGIC rounds y to an integer */
#define L2U 0.693145751953125f               /* ln 2 = L2U + L2L; L2U has 15 significant bits, */
#define L2L 1.428606765330187045e-06f        /* so q·L2U and x − q·L2U are exact */
/* e^s ≈ 1 + s + s²·(C0 + C1 s + … + C5 s^5) on |s| <= ln2/2 (the coefficients of SLEEF's 1-ulp
 * expf; evaluated here by Estrin's scheme) */
#define C5 0.000198527617612853646278381f
#define C4 0.00139304355252534151077271f
#define C3 0.00833336077630519866943359f
#define C2 0.0416664853692054748535156f
#define C1 0.166666671633720397949219f
#define C0 0.5f

enum { NL = 16, /* double lanes of the sums */
       NM = 32  /* float lanes of the min/max passes */ };

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------- the scalar path */

static inline __attribute__((always_inline)) float expf_lane(float x) {
    /* = _mm256_max_ps(LO, x), _mm256_min_ps(HI, x): a NaN x passes through */
    x = __builtin_isgreater(EXP_LO, x) ? EXP_LO : x;
    x = __builtin_isless(EXP_HI, x) ? EXP_HI : x;
    float y = x * LOG2E;
    float t = y + MAGIC;
    float q = t - MAGIC;                           /* rint(y), exact */
    int32_t n = (int32_t)(f2u(t) - f2u(MAGIC));    /* the same integer */
    float s = x - q * L2U;
    s = s - q * L2L;
    /* P(s) by Estrin's scheme (a shorter dependency chain than Horner's, for the vector path) */
    float s2 = s * s;
    float p01 = C1 * s + C0, p23 = C3 * s + C2, p45 = C5 * s + C4;
    float u = (s2 * p45 + p23) * s2 + p01;
    u = s2 * u + s;
    u = 1.0f + u;
    /* × 2^q as two normal powers of two: the first product is exact, the second rounds once
     * (also into the subnormal range) */
    int32_t n1 = n >> 1; /* arithmetic shift, as _mm256_srai_epi32 (GCC defines it so) */
    uint32_t n2 = (uint32_t)n - (uint32_t)n1;
    float p1 = u2f(((uint32_t)n1 + 127u) << 23), p2 = u2f((n2 + 127u) << 23);
    return (u * p1) * p2;
}

float v3_expf(float x) { return expf_lane(x); }

static double reduce_sum(double a[NL]) {
    for (int w = NL / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) a[j] = a[j] + a[j + w];
    return a[0];
}

/* The row pass: e_i = v3_expf(fl(x_i·scale) − shift); S (and D) over NL lanes; e_i to out. The
 * flags are compile-time constants in every caller. */
static inline __attribute__((always_inline)) double
pass_scalar(const float *x, int64_t n, float scale, float shift, float *out, double *dsum,
            const int scaled, const int store, const int ent) {
    double a[NL] = {0}, b[NL] = {0};
    int64_t i = 0;
    for (; i + NL <= n; i += NL) { /* whole blocks: a fixed inner loop the compiler can vectorise */
        float e[NL], d[NL];
        for (int j = 0; j < NL; j++) {
            float xj = x[i + j];
            if (scaled) xj = xj * scale;
            d[j] = xj - shift;
            e[j] = expf_lane(d[j]);
        }
        if (store) memcpy(out + i, e, sizeof e);
        for (int j = 0; j < NL; j++) {
            a[j] = a[j] + (double)e[j];
            if (ent) b[j] = b[j] + (double)e[j] * (double)d[j];
        }
    }
    for (; i < n; i++) {
        float xi = x[i];
        if (scaled) xi = xi * scale;
        float d = xi - shift, e = expf_lane(d);
        if (store) out[i] = e;
        a[i % NL] = a[i % NL] + (double)e;
        if (ent) b[i % NL] = b[i % NL] + (double)e * (double)d;
    }
    if (ent) *dsum = reduce_sum(b);
    return reduce_sum(a);
}

/* `x > m ? x : m` with a quiet comparison (same value, NaN x keeps m): _mm256_max_ps(x, m) */
static inline float gt_pick(float x, float m) { return __builtin_isgreater(x, m) ? x : m; }
static inline float lt_pick(float x, float m) { return __builtin_isless(x, m) ? x : m; }

static float max_scalar(const float *x, int64_t n) {
    float m[NM];
    for (int j = 0; j < NM; j++) m[j] = -INFINITY;
    int64_t i = 0;
    for (; i + NM <= n; i += NM)
        for (int j = 0; j < NM; j++) m[j] = gt_pick(x[i + j], m[j]);
    for (; i < n; i++) m[i % NM] = gt_pick(x[i], m[i % NM]);
    for (int w = NM / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) m[j] = gt_pick(m[j + w], m[j]);
    return m[0];
}

static int range_scalar(const float *x, int64_t n, float *plo, float *phi) {
    float lo[NM], hi[NM];
    uint32_t bad = 0; /* nonzero once some |x| has an all-ones exponent (inf or NaN) */
    for (int j = 0; j < NM; j++) {
        lo[j] = INFINITY;
        hi[j] = -INFINITY;
    }
    int64_t i = 0;
    for (; i + NM <= n; i += NM)
        for (int j = 0; j < NM; j++) {
            float v = x[i + j];
            bad |= (f2u(v) & 0x7fffffffu) >= 0x7f800000u;
            lo[j] = lt_pick(v, lo[j]);
            hi[j] = gt_pick(v, hi[j]);
        }
    for (; i < n; i++) {
        bad |= (f2u(x[i]) & 0x7fffffffu) >= 0x7f800000u;
        lo[i % NM] = lt_pick(x[i], lo[i % NM]);
        hi[i % NM] = gt_pick(x[i], hi[i % NM]);
    }
    if (bad) return 0;
    for (int w = NM / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) {
            lo[j] = lt_pick(lo[j + w], lo[j]);
            hi[j] = gt_pick(hi[j + w], hi[j]);
        }
    *plo = lo[0];
    *phi = hi[0];
    return 1;
}

/* ---------------------------------------------------------------- the AVX2 path */

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define V3_VEXP_AVX2 1
#define AVX2 __attribute__((target("avx2")))
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* 1 + s + s²·P(s), as v3_expf */
AVX2_INLINE __m256 poly8(__m256 s) {
    __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p01 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(C1), s), _mm256_set1_ps(C0));
    __m256 p23 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(C3), s), _mm256_set1_ps(C2));
    __m256 p45 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(C5), s), _mm256_set1_ps(C4));
    __m256 u = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(s2, p45), p23), s2), p01);
    u = _mm256_add_ps(_mm256_mul_ps(s2, u), s);
    return _mm256_add_ps(_mm256_set1_ps(1.0f), u);
}

/* v3_expf on 8 lanes: the same operations in the same order (target "avx2" without "fma": the
 * compiler cannot fuse the _mm256_mul_ps/_mm256_add_ps pairs). */
/* The shared part of exp8 and exp8_normal: q = rint(x·log2e) (as the integer *n), the two-step
 * Cody–Waite reduction s = x − q·ln2 and u = exp(s) by the polynomial. */
AVX2_INLINE __m256 reduce8(__m256 x, __m256i *n) {
    const __m256 magic = _mm256_set1_ps(MAGIC);
    __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(LOG2E));
    __m256 t = _mm256_add_ps(y, magic);
    __m256 q = _mm256_sub_ps(t, magic);
    *n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    __m256 s = _mm256_sub_ps(x, _mm256_mul_ps(q, _mm256_set1_ps(L2U)));
    s = _mm256_sub_ps(s, _mm256_mul_ps(q, _mm256_set1_ps(L2L)));
    return poly8(s);
}

AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), x);
    __m256i n;
    __m256 u = reduce8(x, &n);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1);
    __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(u, p1), p2);
}

/* exp8 for lanes with |x| <= 86 (no NaN): the clamps are no-ops there, and q in [-124, 124] keeps
 * u·2^q normal, so adding q to u's exponent field is the exact product exp8 computes in two
 * steps. Same bits as exp8 on those inputs. */
AVX2_INLINE __m256 exp8_normal(__m256 x) {
    __m256i n;
    __m256 u = reduce8(x, &n);
    return _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_castps_si256(u), _mm256_slli_epi32(n, 23)));
}

/* nonzero unless every lane of a and b has |x| <= 86 */
AVX2_INLINE int needs_full(__m256 a, __m256 b) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), lim = _mm256_set1_ps(86.0f);
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(_mm256_and_ps(a, abs), lim, _CMP_LE_OQ),
                              _mm256_cmp_ps(_mm256_and_ps(b, abs), lim, _CMP_LE_OQ));
    return _mm256_movemask_ps(ok) != 0xff;
}

/* a[0..3] are lanes 0-3, 4-7, 8-11, 12-15; reduce_sum's tree */
AVX2_INLINE double reduce4(__m256d a0, __m256d a1, __m256d a2, __m256d a3) {
    a0 = _mm256_add_pd(a0, a2); /* w = 8 */
    a1 = _mm256_add_pd(a1, a3);
    a0 = _mm256_add_pd(a0, a1); /* w = 4 */
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1)); /* w = 2 */
    return _mm_cvtsd_f64(v) + _mm_cvtsd_f64(_mm_unpackhi_pd(v, v));                    /* w = 1 */
}

/* 16 elements at x (lanes 0..15 of the sums) */
AVX2_INLINE void block16(const float *x, float *out, __m256 vscale, __m256 vshift, __m256d a[4],
                         __m256d b[4], const int scaled, const int store, const int ent) {
    __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
    if (scaled) {
        x0 = _mm256_mul_ps(x0, vscale);
        x1 = _mm256_mul_ps(x1, vscale);
    }
    __m256 d0 = _mm256_sub_ps(x0, vshift), d1 = _mm256_sub_ps(x1, vshift);
    __m256 e0, e1;
    if (__builtin_expect(needs_full(d0, d1), 0)) {
        e0 = exp8(d0);
        e1 = exp8(d1);
    } else {
        e0 = exp8_normal(d0);
        e1 = exp8_normal(d1);
    }
    if (store) {
        _mm256_storeu_ps(out, e0);
        _mm256_storeu_ps(out + 8, e1);
    }
    __m256d e00 = _mm256_cvtps_pd(_mm256_castps256_ps128(e0));
    __m256d e01 = _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1));
    __m256d e10 = _mm256_cvtps_pd(_mm256_castps256_ps128(e1));
    __m256d e11 = _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1));
    a[0] = _mm256_add_pd(a[0], e00);
    a[1] = _mm256_add_pd(a[1], e01);
    a[2] = _mm256_add_pd(a[2], e10);
    a[3] = _mm256_add_pd(a[3], e11);
    if (ent) {
        b[0] = _mm256_add_pd(b[0], _mm256_mul_pd(e00, _mm256_cvtps_pd(_mm256_castps256_ps128(d0))));
        b[1] = _mm256_add_pd(b[1], _mm256_mul_pd(e01, _mm256_cvtps_pd(_mm256_extractf128_ps(d0, 1))));
        b[2] = _mm256_add_pd(b[2], _mm256_mul_pd(e10, _mm256_cvtps_pd(_mm256_castps256_ps128(d1))));
        b[3] = _mm256_add_pd(b[3], _mm256_mul_pd(e11, _mm256_cvtps_pd(_mm256_extractf128_ps(d1, 1))));
    }
}

AVX2_INLINE double pass_avx2(const float *x, int64_t n, float scale, float shift, float *out,
                             double *dsum, const int scaled, const int store, const int ent) {
    const __m256 vscale = _mm256_set1_ps(scale), vshift = _mm256_set1_ps(shift);
    __m256d a[4], b[4];
    for (int k = 0; k < 4; k++) a[k] = b[k] = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + NL <= n; i += NL)
        block16(x + i, store ? out + i : NULL, vscale, vshift, a, b, scaled, store, ent);
    if (i < n) {
        /* the tail (r < 16 elements) through a buffer, its terms into zeroed accumulators
         * (0 + t = t exactly), then added to the lanes j < r only: the other lanes are left as
         * they are, as in the scalar path */
        const int r = (int)(n - i);
        float xb[NL] = {0}, eb[NL];
        memcpy(xb, x + i, (size_t)r * sizeof *xb);
        __m256d at[4], bt[4];
        for (int k = 0; k < 4; k++) at[k] = bt[k] = _mm256_setzero_pd();
        block16(xb, eb, vscale, vshift, at, bt, scaled, 1, ent);
        if (store) memcpy(out + i, eb, (size_t)r * sizeof *eb);
        double ta[NL], tb[NL], ra[NL], rb[NL];
        for (int k = 0; k < 4; k++) {
            _mm256_storeu_pd(ta + 4 * k, at[k]);
            _mm256_storeu_pd(tb + 4 * k, bt[k]);
            _mm256_storeu_pd(ra + 4 * k, a[k]);
            _mm256_storeu_pd(rb + 4 * k, b[k]);
        }
        for (int j = 0; j < r; j++) {
            ra[j] = ra[j] + ta[j];
            rb[j] = rb[j] + tb[j];
        }
        for (int k = 0; k < 4; k++) {
            a[k] = _mm256_loadu_pd(ra + 4 * k);
            b[k] = _mm256_loadu_pd(rb + 4 * k);
        }
    }
    if (ent) *dsum = reduce4(b[0], b[1], b[2], b[3]);
    return reduce4(a[0], a[1], a[2], a[3]);
}

/* m = max_ps(x, m) is `x > m ? x : m`; lanes i % 32 as in max_scalar; then its tree */
AVX2 static float max_avx2(const float *x, int64_t n) {
    __m256 m[4];
    for (int k = 0; k < 4; k++) m[k] = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + NM <= n; i += NM)
        for (int k = 0; k < 4; k++) m[k] = _mm256_max_ps(_mm256_loadu_ps(x + i + 8 * k), m[k]);
    if (i < n) {
        float b[NM];
        const int r = (int)(n - i);
        memcpy(b, x + i, (size_t)r * sizeof *b);
        for (int j = r; j < NM; j++) b[j] = -INFINITY; /* never > m: no-ops */
        for (int k = 0; k < 4; k++) m[k] = _mm256_max_ps(_mm256_loadu_ps(b + 8 * k), m[k]);
    }
    m[0] = _mm256_max_ps(m[2], m[0]); /* w = 16 */
    m[1] = _mm256_max_ps(m[3], m[1]);
    m[0] = _mm256_max_ps(m[1], m[0]); /* w = 8 */
    __m128 v = _mm_max_ps(_mm256_extractf128_ps(m[0], 1), _mm256_castps256_ps128(m[0])); /* 4 */
    v = _mm_max_ps(_mm_movehl_ps(v, v), v);                                                /* 2 */
    v = _mm_max_ps(_mm_shuffle_ps(v, v, 1), v);                                            /* 1 */
    return _mm_cvtss_f32(v);
}

AVX2 static int range_avx2(const float *x, int64_t n, float *plo, float *phi) {
    __m256 lo[4], hi[4], bad = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        lo[k] = _mm256_set1_ps(INFINITY);
        hi[k] = _mm256_set1_ps(-INFINITY);
    }
    float b[NM];
    int64_t i = 0;
    for (; i < n; i += NM) {
        const float *p = x + i;
        if (i + NM > n) { /* the tail, padded with copies of x[0] (no-ops for min and max) */
            const int r = (int)(n - i);
            memcpy(b, p, (size_t)r * sizeof *b);
            for (int j = r; j < NM; j++) b[j] = x[0];
            p = b;
        }
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_loadu_ps(p + 8 * k);
            bad = _mm256_or_ps(bad, _mm256_sub_ps(v, v)); /* +0 if finite, NaN otherwise */
            lo[k] = _mm256_min_ps(v, lo[k]);
            hi[k] = _mm256_max_ps(v, hi[k]);
        }
    }
    if (_mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q))) return 0;
    lo[0] = _mm256_min_ps(lo[2], lo[0]);
    lo[1] = _mm256_min_ps(lo[3], lo[1]);
    lo[0] = _mm256_min_ps(lo[1], lo[0]);
    hi[0] = _mm256_max_ps(hi[2], hi[0]);
    hi[1] = _mm256_max_ps(hi[3], hi[1]);
    hi[0] = _mm256_max_ps(hi[1], hi[0]);
    __m128 l = _mm_min_ps(_mm256_extractf128_ps(lo[0], 1), _mm256_castps256_ps128(lo[0]));
    __m128 h = _mm_max_ps(_mm256_extractf128_ps(hi[0], 1), _mm256_castps256_ps128(hi[0]));
    l = _mm_min_ps(_mm_movehl_ps(l, l), l);
    h = _mm_max_ps(_mm_movehl_ps(h, h), h);
    l = _mm_min_ps(_mm_shuffle_ps(l, l, 1), l);
    h = _mm_max_ps(_mm_shuffle_ps(h, h, 1), h);
    *plo = _mm_cvtss_f32(l);
    *phi = _mm_cvtss_f32(h);
    return 1;
}

/* the instantiations: flags (scaled, store, ent) as constants */
AVX2 static double sum_avx2(const float *x, int64_t n, float shift) {
    return pass_avx2(x, n, 1.0f, shift, NULL, NULL, 0, 0, 0);
}
AVX2 static double sum_ent_avx2(const float *x, int64_t n, float shift, double *d) {
    return pass_avx2(x, n, 1.0f, shift, NULL, d, 0, 0, 1);
}
AVX2 static double store_avx2(const float *x, int64_t n, float shift, float *out) {
    return pass_avx2(x, n, 1.0f, shift, out, NULL, 0, 1, 0);
}
AVX2 static double store_ent_avx2(const float *x, int64_t n, float shift, float *out, double *d) {
    return pass_avx2(x, n, 1.0f, shift, out, d, 0, 1, 1);
}
AVX2 static double store_scaled_avx2(const float *x, int64_t n, float scale, float shift,
                                     float *out) {
    return pass_avx2(x, n, scale, shift, out, NULL, 1, 1, 0);
}
AVX2 static double store_scaled_ent_avx2(const float *x, int64_t n, float scale, float shift,
                                         float *out, double *d) {
    return pass_avx2(x, n, scale, shift, out, d, 1, 1, 1);
}
#endif

/* ---------------------------------------------------------------- dispatch */

static int force_scalar;

int v3_vexp_force_scalar(int on) {
    int old = force_scalar;
    force_scalar = on;
    return old;
}

int v3_vexp_uses_avx2(void) {
#ifdef V3_VEXP_AVX2
    return !force_scalar && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

float v3_max_f32(const float *x, int64_t n) {
#ifdef V3_VEXP_AVX2
    if (v3_vexp_uses_avx2()) return max_avx2(x, n);
#endif
    return max_scalar(x, n);
}

int v3_range_f32(const float *x, int64_t n, float *lo, float *hi) {
    if (n < 1) return 0;
#ifdef V3_VEXP_AVX2
    if (v3_vexp_uses_avx2()) return range_avx2(x, n, lo, hi);
#endif
    return range_scalar(x, n, lo, hi);
}

double v3_sum_exp(const float *x, int64_t n, float shift) {
#ifdef V3_VEXP_AVX2
    if (v3_vexp_uses_avx2()) return sum_avx2(x, n, shift);
#endif
    return pass_scalar(x, n, 1.0f, shift, NULL, NULL, 0, 0, 0);
}

double v3_sum_exp_ent(const float *x, int64_t n, float shift, double *d) {
#ifdef V3_VEXP_AVX2
    if (v3_vexp_uses_avx2()) return sum_ent_avx2(x, n, shift, d);
#endif
    return pass_scalar(x, n, 1.0f, shift, NULL, d, 0, 0, 1);
}

double v3_exp_store(const float *x, int64_t n, float scale, float shift, float *out, double *d) {
    const int scaled = scale != 1.0f; /* x·1 == x: the multiply is skipped, same bits */
#ifdef V3_VEXP_AVX2
    if (v3_vexp_uses_avx2()) {
        if (scaled)
            return d ? store_scaled_ent_avx2(x, n, scale, shift, out, d)
                     : store_scaled_avx2(x, n, scale, shift, out);
        return d ? store_ent_avx2(x, n, shift, out, d) : store_avx2(x, n, shift, out);
    }
#endif
    if (scaled)
        return d ? pass_scalar(x, n, scale, shift, out, d, 1, 1, 1)
                 : pass_scalar(x, n, scale, shift, out, NULL, 1, 1, 0);
    return d ? pass_scalar(x, n, 1.0f, shift, out, d, 0, 1, 1)
             : pass_scalar(x, n, 1.0f, shift, out, NULL, 0, 1, 0);
}
