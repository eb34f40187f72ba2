/* test_vexp.c — common/vexp.h: the exponential of the softmax passes and its row sums.
 *
 *   1. accuracy of v3_expf against double-precision exp: every 11th float of [-104, 0] (every
 *      float with V3_VEXP_EXHAUSTIVE=1), a sample of (0, 88.72], max error <= 1 ulp; the edges
 *      (exp(±0) = 1 exactly, underflow to 0 below ln 2^-150 ≈ -103.972 like expf, subnormal
 *      results, +inf above ≈ 88.72, -inf → 0, NaN → NaN);
 *   2. the AVX2 path and the portable scalar path give the same bits (when the CPU has AVX2):
 *      every function, random and edge inputs, every length 0..80 and long rows, misaligned;
 *   3. the sums follow their definition (16 double lanes i mod 16, the fixed tree) exactly, so they
 *      do not depend on alignment or on the caller, and are as accurate as a double sum;
 *   4. max / range: the values of the plain loops, NaN and inf handling;
 *   5. on both paths, the sampler's recorded logprobs equal the CPU cross-entropy's loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/vexp.h"
#include "kernels/kernels.h"
#include "rollout/sampler.h"
#include "testutil.h"

/* the reference sums below must round every product and sum, as vexp.h defines */
#pragma GCC optimize("fp-contract=off")

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* error of the float e against the exact value r, in ulps of r's binade (subnormal: 2^-149) */
static double ulp_err(float e, double r) {
    double ulp = 0x1p-149;
    if (r >= 0x1p-126) { /* 2^(exponent of r − 23), from the bits of the double r */
        uint64_t bits;
        memcpy(&bits, &r, sizeof bits);
        bits = (((bits >> 52) & 0x7ff) - 23) << 52;
        memcpy(&ulp, &bits, sizeof ulp);
    }
    return fabs((double)e - r) / ulp;
}

/* ---------------------------------------------------------------- 1. accuracy and edges */

static void test_accuracy(void) {
    const int exhaustive = getenv("V3_VEXP_EXHAUSTIVE") && atoi(getenv("V3_VEXP_EXHAUSTIVE"));
#ifdef __OPTIMIZE__
    const uint32_t step = exhaustive ? 1 : 11;
#else /* a Debug or sanitizer build: a sparser grid */
    const uint32_t step = exhaustive ? 1 : 61;
#endif
    enum { B = 4096 };
    float *xb = malloc(B * sizeof *xb), *eb = malloc(B * sizeof *eb);
    double worst = 0;
    float worst_x = 0;
    int64_t n = 0, bad_scalar = 0;
    /* negative floats from -0 (0x80000000) to -104 (0xc2d00000), plus a few beyond */
    for (uint64_t u = 0x80000000u; u <= 0xc2d10000u;) {
        int k = 0;
        for (; k < B && u <= 0xc2d10000u; k++, u += step) xb[k] = u2f((uint32_t)u);
        v3_exp_store(xb, k, 1.0f, 0.0f, eb, NULL); /* the dispatched (vector) path */
        for (int j = 0; j < k; j++) {
            float s = v3_expf(xb[j]);
            if (f2u(s) != f2u(eb[j]) && bad_scalar++ < 3)
                fprintf(stderr, "x = %a: row pass %a, v3_expf %a\n", (double)xb[j], (double)eb[j],
                        (double)s);
            double e = ulp_err(eb[j], exp((double)xb[j]));
            if (e > worst) {
                worst = e;
                worst_x = xb[j];
            }
        }
        n += k;
    }
    printf("  [-104, 0]: %lld floats (every %u%s), max error %.4f ulp at x = %.9g\n", (long long)n,
           step, step == 1 ? ", all" : "th", worst, (double)worst_x);
    CHECK(worst <= 1.0, "max error %.4f ulp at x = %a (want <= 1)", worst, (double)worst_x);
    CHECK(bad_scalar == 0, "%lld row-pass values differ from v3_expf", (long long)bad_scalar);

    /* positive arguments (not used by the softmax passes, but defined): a sample of (0, 88.72] */
    worst = 0;
    for (uint32_t u = 1; u <= 0x42b17217u; u += 997) {
        float x = u2f(u);
        double e = ulp_err(v3_expf(x), exp((double)x));
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
    }
    printf("  (0, 88.72]: max error %.4f ulp at x = %.9g\n", worst, (double)worst_x);
    CHECK(worst <= 1.0, "positive range: %.4f ulp at x = %a", worst, (double)worst_x);

    /* the edges */
    CHECK(v3_expf(0.0f) == 1.0f && v3_expf(-0.0f) == 1.0f, "exp(±0) = %a, %a, want 1",
          (double)v3_expf(0.0f), (double)v3_expf(-0.0f));
    CHECK(v3_expf(-INFINITY) == 0.0f && f2u(v3_expf(-INFINITY)) == 0, "exp(-inf) = %a",
          (double)v3_expf(-INFINITY));
    CHECK(isinf(v3_expf(INFINITY)) && v3_expf(INFINITY) > 0, "exp(inf) = %a",
          (double)v3_expf(INFINITY));
    CHECK(isnan(v3_expf(NAN)) && isnan(v3_expf(-NAN)), "exp(NaN) is not NaN");
    CHECK(v3_expf(-1e30f) == 0.0f && v3_expf(-104.0f) == 0.0f && v3_expf(-200.0f) == 0.0f,
          "deep negatives must underflow to 0");
    CHECK(isinf(v3_expf(88.7229f)) && isinf(v3_expf(1e30f)) && v3_expf(88.7228f) > 3.4e38f,
          "overflow edge: exp(88.7228) = %a, exp(88.7229) = %a", (double)v3_expf(88.7228f),
          (double)v3_expf(88.7229f));
    /* the underflow threshold agrees with libm's expf: within one float of ln 2^-150, and in the
     * subnormal range both round the same exact value (at most 1 subnormal ulp apart) */
    const double thr = -150.0 * log(2.0); /* e^x < 2^-150 rounds to 0 */
    int under_bad = 0, sub_bad = 0;
    for (uint32_t u = 0xc2ae0000u; u <= 0xc2d00000u; u++) { /* -87 .. -104, every float */
        float x = u2f(u), e = v3_expf(x), l = expf(x);
        if ((double)x < thr - 1e-5 && e != 0.0f) under_bad++;
        if ((double)x > thr + 1e-5 && e == 0.0f) under_bad++;
        if (fabs((double)e - (double)l) > 0x1p-149 * 1.0 + 1e-6 * (double)l) sub_bad++;
    }
    CHECK(under_bad == 0, "%d arguments on the wrong side of the underflow threshold", under_bad);
    CHECK(sub_bad == 0, "%d subnormal-range results more than 1 ulp from expf", sub_bad);
    free(xb);
    free(eb);
}

/* ---------------------------------------------------------------- 3. the definition of the sums */

/* S and D exactly as vexp.h defines them, from v3_expf */
static double ref_sum(const float *x, int64_t n, float scale, float shift, double *dsum) {
    double a[16] = {0}, b[16] = {0};
    for (int64_t i = 0; i < n; i++) {
        float xi = scale == 1.0f ? x[i] : x[i] * scale;
        float d = xi - shift, e = v3_expf(d);
        a[i % 16] += (double)e;
        b[i % 16] += (double)e * (double)d;
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) {
            a[j] += a[j + w];
            b[j] += b[j + w];
        }
    if (dsum) *dsum = b[0];
    return a[0];
}

/* the same bits, or both NaN (which NaN an operation returns when both operands are NaN depends
 * on operand order, which the compiler may commute) */
static int same_d(double a, double b) { return memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b); }
static int same_f(float a, float b) { return f2u(a) == f2u(b) || (a != a && b != b); }

/* Every function on x[0..n) against the definition and, if run twice (scalar then vector),
 * against itself: returns the number of mismatches. */
typedef struct results {
    double s[6], d[4];
    float mx, lo, hi;
    int ok;
} results;

static int run_all(const float *x, int64_t n, float scale, float shift, float *out, results *r) {
    int bad = 0;
    double dref, sref = ref_sum(x, n, 1.0f, shift, &dref), dsref;
    double ssref = ref_sum(x, n, scale, shift, &dsref);
    r->s[0] = v3_sum_exp(x, n, shift);
    r->s[1] = v3_sum_exp_ent(x, n, shift, &r->d[0]);
    r->s[2] = v3_exp_store(x, n, 1.0f, shift, out, NULL);
    for (int64_t i = 0; i < n; i++) bad += !same_f(out[i], v3_expf(x[i] - shift));
    r->s[3] = v3_exp_store(x, n, 1.0f, shift, out, &r->d[1]);
    r->s[4] = v3_exp_store(x, n, scale, shift, out, &r->d[2]);
    for (int64_t i = 0; i < n; i++) {
        float xs = x[i] * scale; /* rounded before the subtraction, as vexp.h defines */
        bad += !same_f(out[i], v3_expf(xs - shift));
    }
    r->s[5] = v3_exp_store(x, n, scale, shift, out, NULL);
    bad += !same_d(r->s[0], sref) + !same_d(r->s[1], sref) + !same_d(r->s[2], sref) +
           !same_d(r->s[3], sref) + !same_d(r->d[0], dref) + !same_d(r->d[1], dref);
    bad += !same_d(r->s[4], ssref) + !same_d(r->s[5], ssref) + !same_d(r->d[2], dsref);
    r->mx = v3_max_f32(x, n);
    r->ok = n > 0 ? v3_range_f32(x, n, &r->lo, &r->hi) : 0;
    /* the plain loops' values (a zero maximum may differ in sign only) */
    float m = -INFINITY, lo = INFINITY, hi = -INFINITY;
    int fin = 1;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > m) m = x[i];
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        fin &= isfinite(x[i]) != 0;
    }
    bad += !(r->mx == m || (isnan(r->mx) && isnan(m)));
    bad += r->ok != (fin && n > 0);
    if (r->ok) bad += !(r->lo == lo && r->hi == hi);
    return bad;
}

static int same_results(const results *a, const results *b) {
    int same = 1;
    for (int k = 0; k < 6; k++) same &= same_d(a->s[k], b->s[k]);
    for (int k = 0; k < 3; k++) same &= same_d(a->d[k], b->d[k]);
    return same && f2u(a->mx) == f2u(b->mx) && a->ok == b->ok &&
           (!a->ok || (f2u(a->lo) == f2u(b->lo) && f2u(a->hi) == f2u(b->hi)));
}

/* both paths on x[0..n): each against the definition, and against each other */
static void check_paths(const float *x, int64_t n, float scale, float shift, float *out,
                        const char *what) {
    results rs, rv;
    int prev = v3_vexp_force_scalar(1);
    int bad_s = run_all(x, n, scale, shift, out, &rs);
    v3_vexp_force_scalar(0);
    int bad_v = run_all(x, n, scale, shift, out, &rv);
    v3_vexp_force_scalar(prev);
    CHECK(bad_s == 0, "%s, n = %lld: scalar path: %d mismatches with the definition", what,
          (long long)n, bad_s);
    CHECK(bad_v == 0, "%s, n = %lld: dispatched path: %d mismatches with the definition", what,
          (long long)n, bad_v);
    CHECK(same_results(&rs, &rv), "%s, n = %lld: scalar and AVX2 paths differ (S %a vs %a)",
          what, (long long)n, rs.s[0], rv.s[0]);
}

/* edge values mixed into ordinary logits: every block mixes fast-path and full-path lanes */
static const float edges[] = {0.0f,    -0.0f,    1.0f,     -1.0f,   -86.0f,   -86.5f,  -87.33f,
                              -87.34f, -100.0f,  -103.97f, -103.98f, -104.0f, -110.0f, -1e30f,
                              -3e38f,  0x1p-149f, -0x1p-149f, 0x1p-126f, 86.0f,  88.72f,
                              88.73f,  89.0f,    1e30f,    -0.5f,   0.34657f, -0.34658f};

static void test_paths(uint64_t seed) {
    if (!v3_vexp_uses_avx2()) printf("  no AVX2 on this CPU: the paths below are both scalar\n");
    v3_rng g;
    v3_rng_seed(&g, seed);
    enum { NMAX = 129280 + 40 };
    float *buf = malloc((NMAX + 16) * sizeof *buf), *out = malloc((NMAX + 16) * sizeof *out);
    /* every length 0..80 at offsets 0..3 (alignment), random logits */
    for (int off = 0; off < 4; off++)
        for (int64_t n = 0; n <= 80; n++) {
            float *x = buf + off;
            t_fill_normal(&g, x, n, 3.0f);
            float mx = n ? v3_max_f32(x, n) : 0.0f;
            check_paths(x, n, 1.0f / 0.7f, n ? mx / 0.7f : 0.0f, out + off, "random");
        }
    /* long rows: the vocabulary, logits with a wide spread (many subnormal and zero weights) */
    const int64_t lens[] = {129280, 129280 + 7, 129280 + 31, 4099};
    const float stds[] = {2.5f, 40.0f, 0.01f, 15.0f};
    for (int k = 0; k < 4; k++) {
        float *x = buf + (k & 1);
        t_fill_normal(&g, x, lens[k], stds[k]);
        check_paths(x, lens[k], 0.6f, v3_max_f32(x, lens[k]) * 0.6f, out, "long row");
        check_paths(x, lens[k], 1.0f, v3_max_f32(x, lens[k]), out, "long row, T = 1");
    }
    /* edge values, scattered into random rows, and shifts that push everything to the edges */
    const int ne = (int)(sizeof edges / sizeof *edges);
    for (int rep = 0; rep < 40; rep++) {
        int64_t n = 1 + (int64_t)v3_rng_below(&g, 200);
        float *x = buf + rep % 3;
        t_fill_normal(&g, x, n, 30.0f);
        for (int j = 0; j < 1 + rep % 8; j++) x[v3_rng_below(&g, (uint64_t)n)] = edges[v3_rng_below(&g, (uint64_t)ne)];
        if (rep % 5 == 0) x[v3_rng_below(&g, (uint64_t)n)] = NAN;
        if (rep % 7 == 0) x[v3_rng_below(&g, (uint64_t)n)] = -INFINITY;
        const float shifts[] = {0.0f, 50.0f, -50.0f, 90.0f};
        check_paths(x, n, 1.3f, shifts[rep % 4], out, "edge values");
    }
    /* the in-place form (out == x), as the cross-entropy uses it */
    for (int rep = 0; rep < 2; rep++) {
        int64_t n = 129280;
        t_fill_normal(&g, buf, n, 4.0f);
        memcpy(out, buf, (size_t)n * sizeof *out);
        int prev = v3_vexp_force_scalar(rep);
        float mx = v3_max_f32(buf, n);
        double s1 = v3_sum_exp(buf, n, mx), s2 = v3_exp_store(buf, n, 1.0f, mx, buf, NULL);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) bad += f2u(buf[i]) != f2u(v3_expf(out[i] - mx));
        v3_vexp_force_scalar(prev);
        CHECK(same_d(s1, s2) && bad == 0, "in place (%s): sums %a vs %a, %d values differ",
              rep ? "scalar" : "dispatched", s1, s2, bad);
    }
    /* alignment does not change a sum: the same values at offsets 0..7 */
    {
        int64_t n = 1000;
        float *src = malloc((size_t)n * sizeof *src);
        t_fill_normal(&g, src, n, 5.0f);
        double s0 = 0;
        int bad = 0;
        for (int off = 0; off < 8; off++) {
            memcpy(buf + off, src, (size_t)n * sizeof *src);
            double s = v3_sum_exp(buf + off, n, 2.0f);
            if (off == 0) s0 = s;
            bad += !same_d(s, s0);
        }
        CHECK(bad == 0, "the sum depends on the pointer's alignment (%d offsets differ)", bad);
        free(src);
    }
    /* accuracy of the sum: against a long-double sum of the same exponentials */
    {
        int64_t n = 129280;
        t_fill_normal(&g, buf, n, 2.5f);
        float mx = v3_max_f32(buf, n);
        long double ref = 0;
        for (int64_t i = 0; i < n; i++) ref += (long double)v3_expf(buf[i] - mx);
        double s = v3_sum_exp(buf, n, mx), rel = fabs((double)((s - ref) / ref));
        printf("  sum of %lld exponentials: relative error %.2e against long double\n",
               (long long)n, rel);
        CHECK(rel < 1e-14, "sum relative error %.3g", rel);
    }
    free(buf);
    free(out);
}

/* ---------------------------------------------------------------- 4. max and range */

static void test_max_range(void) {
    float x[70];
    for (int i = 0; i < 70; i++) x[i] = (float)((i * 37) % 70) - 35.0f;
    x[41] = 100.0f;
    for (int s = 0; s < 2; s++) {
        int prev = v3_vexp_force_scalar(s);
        for (int n = 42; n <= 70; n++) CHECK(v3_max_f32(x, n) == 100.0f, "max of %d", n);
        float lo, hi;
        CHECK(v3_range_f32(x, 70, &lo, &hi) && lo == -35.0f && hi == 100.0f, "range %g %g",
              (double)lo, (double)hi);
        CHECK(v3_max_f32(x, 0) == -INFINITY && !v3_range_f32(x, 0, &lo, &hi), "empty rows");
        float y[40];
        for (int i = 0; i < 40; i++) y[i] = NAN;
        CHECK(v3_max_f32(y, 40) == -INFINITY, "all-NaN max must be -inf (NaN ignored)");
        y[33] = 2.0f;
        CHECK(v3_max_f32(y, 40) == 2.0f, "NaN ignored by the max");
        /* a non-finite value at any position, the tail included, fails the range */
        for (int p = 0; p < 70; p++) {
            float keep = x[p];
            x[p] = p % 3 == 0 ? NAN : p % 3 == 1 ? INFINITY : -INFINITY;
            CHECK(!v3_range_f32(x, 70, &lo, &hi), "non-finite at %d not detected", p);
            x[p] = keep;
        }
        v3_vexp_force_scalar(prev);
    }
}

/* ---------------------------------------------------------------- 5. the two users agree */

/* On either path, the sampler's recorded logprobs equal the CPU cross-entropy's loss bit for bit
 * (test_sampler checks this on the dispatched path; here the portable path too). */
static void test_users(uint64_t seed) {
    const int64_t V = 129280;
    float *l = malloc((size_t)V * sizeof *l), *xs = malloc((size_t)V * sizeof *xs);
    v3_rng g;
    v3_rng_seed(&g, seed ^ 0x5eed);
    v3_kctx ctx;
    v3_err err = {0};
    v3_sample_scratch sc;
    CHECK_OK(v3_kctx_init(&ctx, v3_backend_cpu(), 1, &err), &err);
    CHECK_OK(v3_sample_scratch_init(&sc, V, &err), &err);
    const float temps[] = {1.0f, 0.7f, 1.3f};
    double lp[2][3];
    for (int path = 0; path < 2; path++) {
        int prev = v3_vexp_force_scalar(path);
        v3_rng_seed(&g, seed ^ 0x5eed);
        for (int k = 0; k < 3; k++) {
            t_fill_normal(&g, l, V, 3.0f);
            v3_sampling s = v3_sampling_default();
            s.temperature = temps[k];
            v3_rng rng;
            v3_sample_rng(&rng, seed, 7, (uint64_t)k);
            v3_sampled o = {0};
            CHECK_OK(v3_sample_token(l, V, &s, &rng, &sc, &o, &err), &err);
            float inv_t = 1.0f / s.temperature, loss_t = 0, loss_r = 0;
            int32_t tgt = o.token;
            for (int64_t i = 0; i < V; i++) xs[i] = l[i] * inv_t;
            v3k(&ctx, cross_entropy, xs, V, &loss_t, &tgt, 1, V, 0.0f);
            memcpy(xs, l, (size_t)V * sizeof *xs);
            v3k(&ctx, cross_entropy, xs, V, &loss_r, &tgt, 1, V, 1.0f); /* with the gradient */
            CHECK((float)-o.logprob_temp == loss_t && (float)-o.logprob_raw == loss_r,
                  "%s path, T = %g: -logprob_temp %.9g vs loss %.9g, -logprob_raw %.9g vs %.9g",
                  path ? "scalar" : "dispatched", (double)s.temperature, -o.logprob_temp,
                  (double)loss_t, -o.logprob_raw, (double)loss_r);
            lp[path][k] = o.logprob_temp;
        }
        v3_vexp_force_scalar(prev);
    }
    CHECK(memcmp(lp[0], lp[1], sizeof lp[0]) == 0, "the two paths record different logprobs");
    v3_sample_scratch_free(&sc);
    v3_kctx_free(&ctx);
    free(l);
    free(xs);
}

int main(void) {
    printf("vexp: %s path\n", v3_vexp_uses_avx2() ? "AVX2" : "scalar");
    test_accuracy();
    test_paths(t_seed("test_vexp"));
    test_max_range();
    test_users(t_seed("test_vexp users"));
    return t_finish("test_vexp");
}
