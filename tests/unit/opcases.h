/* opcases.h — the cases of the op parity harness for every op of kernels/kernels.h (the pattern
 * of ggml's test-backend-ops). For each op and several shapes (odd sizes, T = 1, strided and
 * broadcast inputs, ignored targets, experts without tokens):
 *   (a) CPU forward against a naive double-precision reference written here;
 *   (b) every backward against central finite differences of L = <R, output>, in double;
 *   (c) accumulating ops run twice give exactly twice the result;
 *   (d) guard words past every buffer catch out-of-bounds writes; any NaN fails;
 *   (e) the other backend of the oc_env (opcheck.h) against the CPU on the same inputs (or
 *       "skipped (no device)" / "missing"), summarised in a coverage table;
 *   (f) bitwise independence of the thread count, and batch invariance (a row computed alone
 *       equals the same row computed in a batch).
 * oc_run_cases runs them all. Two programs drive it: test_ops.c (label cpu: an absent device is
 * reported skipped) and test_gpu_ops.c (label gpu: the device is required). The cases are static
 * functions in a header because every tests/unit/test_*.c is built alone (tests/CMakeLists.txt);
 * each of the two includes it once. */
#ifndef V3_OPCASES_H
#define V3_OPCASES_H

#include "opcheck.h"

/* Tolerance for other backends against the CPU: normalised error of fp32 results computed with a
 * different summation order (and FMA); generous enough for cuBLAS/TF32-free fp32 kernels. */
#define DEV_TOL 1e-4
/* Ops whose products follow the device's math mode (kernels.h V3_MATH_*): the three GEMMs and
 * attention. BF16 rounds both operands of every product (relative error ≤ 2^-9 each, about
 * 1.6e-3 rms on a sum of random products; attention also rounds P): 2e-2 leaves ~10× margin.
 * TF32 (a 10-bit mantissa, 2^-11): 4e-3. FP32: DEV_TOL. */
#define BF16_TOL 2e-2
#define TF32_TOL 4e-3
static double oc_math_tol(int math) {
    return math == V3_MATH_BF16 ? BF16_TOL : math == V3_MATH_TF32 ? TF32_TOL : DEV_TOL;
}
static double oc_prod_tol(const oc_env *E) {
    if (!E->dev_ok || E->dev.be == v3_backend_cpu()) return DEV_TOL; /* the CPU ignores math */
    return oc_math_tol(E->dev.math);
}
/* Finite differences: fp32 analytic gradients against double central differences with step
 * 1e-4 (truncation ~h² ≈ 1e-8 relative); the fp32 rounding of the analytic side dominates. */
#define FD_TOL 1e-4
#define FD_H 1e-4

/* ======================================================================== GEMM family */

typedef struct {
    int ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B, *C0;
} gemm_case;

static int64_t gemm_rows_a(const gemm_case *c) { return c->ta ? c->K : c->M; }
static int64_t gemm_rows_b(const gemm_case *c) { return c->tb ? c->N : c->K; }

static int64_t run_gemm(v3_kctx *ctx, const void *v, float *out) {
    const gemm_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "gemm"};
    float *A = oc_putf(&b, c->A, gemm_rows_a(c) * c->lda);
    float *B = oc_putf(&b, c->B, gemm_rows_b(c) * c->ldb);
    float *C = oc_putf(&b, c->C0, c->M * c->ldc);
    v3k(ctx, gemm, c->ta, c->tb, c->M, c->N, c->K, c->alpha, A, c->lda, B, c->ldb, c->beta, C,
        c->ldc);
    oc_get(&b, out, C, (size_t)(c->M * c->ldc) * 4);
    oc_done(&b);
    return c->M * c->ldc;
}

static double ref_dot_ab(const gemm_case *c, const float *A, const float *B, int64_t i, int64_t j) {
    double s = 0;
    for (int64_t k = 0; k < c->K; k++) {
        double a = c->ta ? A[k * c->lda + i] : A[i * c->lda + k];
        double b = c->tb ? B[j * c->ldb + k] : B[k * c->ldb + j];
        s += a * b;
    }
    return s;
}

/* C as the reference expects it: padding columns keep C0, beta == 0 ignores C0 (even NaN). */
static void ref_gemm(const gemm_case *c, const float *A, const float *B, const float *C0,
                     double *r) {
    for (int64_t i = 0; i < c->M; i++)
        for (int64_t j = 0; j < c->ldc; j++) {
            double c0 = C0[i * c->ldc + j];
            if (j >= c->N) r[i * c->ldc + j] = c0;
            else r[i * c->ldc + j] = c->alpha * ref_dot_ab(c, A, B, i, j) +
                                     (c->beta == 0.0f ? 0.0 : c->beta * c0);
        }
}

static void make_gemm(oc_env *E, gemm_case *c, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      int pad, float alpha, float beta) {
    *c = (gemm_case){ta, tb, M, N, K, 0, 0, 0, alpha, beta, NULL, NULL, NULL};
    c->lda = (ta ? M : K) + pad;
    c->ldb = (tb ? K : N) + pad;
    c->ldc = N + pad;
    c->A = oc_randn(E, gemm_rows_a(c) * c->lda, 1.0f);
    c->B = oc_randn(E, gemm_rows_b(c) * c->ldb, 1.0f);
    float *C0 = oc_randn(E, M * c->ldc, 1.0f);
    if (beta == 0.0f) /* the contract: beta = 0 ignores C, even NaN */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C0[i * c->ldc + j] = NAN;
    c->C0 = C0;
}
static void free_gemm(gemm_case *c) {
    free((void *)c->A);
    free((void *)c->B);
    free((void *)c->C0);
}

static void test_gemm(oc_env *E) {
    int f0 = oc_begin(E);
    static const struct { int ta, tb; int64_t M, N, K; int pad; float alpha, beta; } cs[] = {
        {0, 0, 1, 1, 1, 0, 1.0f, 0.0f},     {0, 1, 7, 13, 5, 3, 1.0f, 0.0f},
        {1, 0, 33, 17, 65, 0, 0.5f, 0.7f},  {1, 1, 64, 129, 40, 2, 1.0f, 1.0f},
        {0, 1, 3, 200, 300, 0, 1.0f, 0.0f}, {0, 0, 130, 20, 17, 1, -2.0f, 0.5f},
        {1, 0, 5, 300, 9, 0, 1.0f, 0.0f},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        gemm_case c;
        make_gemm(E, &c, cs[i].ta, cs[i].tb, cs[i].M, cs[i].N, cs[i].K, cs[i].pad, cs[i].alpha,
                  cs[i].beta);
        char name[96];
        snprintf(name, sizeof name, "gemm ta=%d tb=%d %lldx%lldx%lld", c.ta, c.tb, (long long)c.M,
                 (long long)c.N, (long long)c.K);
        int64_t n;
        float *out = oc_run(E, OP_gemm, name, run_gemm, &c, c.M * c.ldc, oc_prod_tol(E), &n);
        double *ref = malloc((size_t)n * 8);
        ref_gemm(&c, c.A, c.B, c.C0, ref);
        /* fp32 sums of K <= 300 products of N(0,1) values: relative error ~1e-7, bound 1e-5 */
        double err = oc_err(out, ref, n);
        CHECK(err < 1e-5, "%s: error %.3g vs double reference", name, err);
        free(ref);
        free(out);
        free_gemm(&c);
    }
    /* (c) beta = 1 accumulation from zero, twice: exactly twice */
    {
        gemm_case c;
        make_gemm(E, &c, 1, 0, 19, 23, 31, 0, 1.0f, 1.0f);
        float *C = calloc((size_t)(c.M * c.ldc), 4), *C1 = calloc((size_t)(c.M * c.ldc), 4);
        v3k(&E->cpu, gemm, 1, 0, c.M, c.N, c.K, 1.0f, c.A, c.lda, c.B, c.ldb, 1.0f, C1, c.ldc);
        v3k(&E->cpu, gemm, 1, 0, c.M, c.N, c.K, 1.0f, c.A, c.lda, c.B, c.ldb, 1.0f, C, c.ldc);
        v3k(&E->cpu, gemm, 1, 0, c.M, c.N, c.K, 1.0f, c.A, c.lda, c.B, c.ldb, 1.0f, C, c.ldc);
        int ok = 1;
        for (int64_t i = 0; i < c.M * c.ldc; i++) ok &= C[i] == 2.0f * C1[i];
        CHECK(ok, "gemm beta=1 twice is not exactly twice");
        free(C);
        free(C1);
        free_gemm(&c);
    }
    /* (f) batch invariance: row i computed with M = 1 equals row i of the M = many product,
     * bitwise (OpenBLAS fails this; see kernels/cpu/cpu_gemm.c). Odd sizes and a row count
     * that crosses the row-chunk and micro-tile boundaries. */
    for (int v = 0; v < 3; v++) {
        gemm_case c;
        int ta = v == 2, tb = v == 1;
        make_gemm(E, &c, ta, tb, 150, 70 + 61 * v, 193, 1, 1.0f, 0.0f);
        float *C = malloc((size_t)(c.M * c.ldc) * 4), *r = malloc((size_t)c.ldc * 4);
        v3k(&E->cpu, gemm, ta, tb, c.M, c.N, c.K, 1.0f, c.A, c.lda, c.B, c.ldb, 0.0f, C, c.ldc);
        int64_t rows[] = {0, 1, 5, 6, 95, 96, 97, 149};
        for (int q = 0; q < 8; q++) {
            int64_t i = rows[q];
            const float *Ai = ta ? c.A + i : c.A + i * c.lda;
            v3k(&E->cpu, gemm, ta, tb, 1, c.N, c.K, 1.0f, Ai, c.lda, c.B, c.ldb, 0.0f, r, c.ldc);
            CHECK(memcmp(r, C + i * c.ldc, (size_t)c.N * 4) == 0,
                  "gemm ta=%d tb=%d: row %lld alone differs from the batch", ta, tb, (long long)i);
        }
        /* and a window of rows [60, 77) as its own batch */
        float *C2 = malloc((size_t)(17 * c.ldc) * 4);
        const float *A60 = ta ? c.A + 60 : c.A + 60 * c.lda;
        v3k(&E->cpu, gemm, ta, tb, 17, c.N, c.K, 1.0f, A60, c.lda, c.B, c.ldb, 0.0f, C2, c.ldc);
        int ok = 1;
        for (int64_t i = 0; i < 17; i++)
            ok &= memcmp(C2 + i * c.ldc, C + (60 + i) * c.ldc, (size_t)c.N * 4) == 0;
        CHECK(ok, "gemm ta=%d tb=%d: rows 60..76 as a batch differ", ta, tb);
        free(C2);
        free(C);
        free(r);
        free_gemm(&c);
    }
    oc_mark(E, OP_gemm, f0);
}

typedef struct {
    gemm_case g; /* one problem's shape; A, B, C0 hold the whole batch */
    int64_t sA, sB, sC, batch;
} sb_case;

static int64_t run_gemm_sb(v3_kctx *ctx, const void *v, float *out) {
    const sb_case *c = v;
    const gemm_case *g = &c->g;
    oc_bufs b = {.ctx = ctx, .what = "gemm_strided_batched"};
    int64_t nA = (c->batch - 1) * c->sA + gemm_rows_a(g) * g->lda;
    int64_t nB = (c->batch - 1) * c->sB + gemm_rows_b(g) * g->ldb;
    int64_t nC = (c->batch - 1) * c->sC + g->M * g->ldc;
    float *A = oc_putf(&b, g->A, nA), *B = oc_putf(&b, g->B, nB), *C = oc_putf(&b, g->C0, nC);
    v3k(ctx, gemm_strided_batched, g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, c->sA, B,
        g->ldb, c->sB, g->beta, C, g->ldc, c->sC, c->batch);
    oc_get(&b, out, C, (size_t)nC * 4);
    oc_done(&b);
    return nC;
}

static void test_gemm_strided_batched(oc_env *E) {
    int f0 = oc_begin(E);
    for (int v = 0; v < 3; v++) {
        sb_case c = {0};
        gemm_case *g = &c.g;
        *g = (gemm_case){v & 1, v == 1, 9, 11, 7, 0, 0, 0, 1.0f, v == 2 ? 0.5f : 0.0f, 0, 0, 0};
        g->lda = (g->ta ? g->M : g->K) + 1;
        g->ldb = g->tb ? g->K : g->N;
        g->ldc = g->N + 2;
        c.batch = v == 2 ? 1 : 4;
        c.sA = gemm_rows_a(g) * g->lda + 3;
        c.sB = v == 0 ? 0 : gemm_rows_b(g) * g->ldb; /* v == 0: one B broadcast to all */
        c.sC = g->M * g->ldc + 5;
        int64_t nA = (c.batch - 1) * c.sA + gemm_rows_a(g) * g->lda;
        int64_t nB = (c.batch - 1) * c.sB + gemm_rows_b(g) * g->ldb;
        int64_t nC = (c.batch - 1) * c.sC + g->M * g->ldc;
        g->A = oc_randn(E, nA, 1.0f);
        g->B = oc_randn(E, nB, 1.0f);
        g->C0 = oc_randn(E, nC, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "gemm_strided_batched v%d", v);
        int64_t n;
        float *out = oc_run(E, OP_gemm_strided_batched, name, run_gemm_sb, &c, nC, oc_prod_tol(E), &n);
        double *ref = malloc((size_t)nC * 8);
        for (int64_t i = 0; i < nC; i++) ref[i] = g->C0[i]; /* gaps between matrices untouched */
        for (int64_t bt = 0; bt < c.batch; bt++)
            ref_gemm(g, g->A + bt * c.sA, g->B + bt * c.sB, g->C0 + bt * c.sC, ref + bt * c.sC);
        double err = oc_err(out, ref, nC);
        CHECK(err < 1e-5, "%s: error %.3g", name, err); /* K = 7 fp32 sums */
        free(ref);
        free(out);
        free_gemm(g);
    }
    oc_mark(E, OP_gemm_strided_batched, f0);
}

typedef struct {
    int ta, tb, n;
    float alpha, beta;
    int64_t M[5], N[5], K[5];
    float *A[5], *B[5], *C0[5];
} grouped_case;

static int64_t run_gemm_grouped(v3_kctx *ctx, const void *v, float *out) {
    const grouped_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "gemm_grouped"};
    v3_gemm_desc d[5];
    int64_t n = 0;
    for (int g = 0; g < c->n; g++) {
        d[g] = (v3_gemm_desc){c->M[g], c->N[g], c->K[g], oc_putf(&b, c->A[g], c->M[g] * c->K[g]),
                              oc_putf(&b, c->B[g], c->K[g] * c->N[g]),
                              oc_putf(&b, c->C0[g], c->M[g] * c->N[g])};
    }
    v3k(ctx, gemm_grouped, c->ta, c->tb, c->alpha, c->beta, c->n, d);
    for (int g = 0; g < c->n; g++) {
        oc_get(&b, out + n, d[g].C, (size_t)(c->M[g] * c->N[g]) * 4);
        n += c->M[g] * c->N[g];
    }
    oc_done(&b);
    return n;
}

static void test_gemm_grouped(oc_env *E) {
    int f0 = oc_begin(E);
    /* experts of a MoE layer: one with no tokens (M = 0), a weight gradient over no tokens
     * (K = 0: C is zeroed with beta = 0, kept with beta = 1), odd sizes */
    static const int64_t MNK[5][3] = {{5, 7, 9}, {0, 7, 9}, {3, 4, 0}, {17, 33, 2}, {1, 65, 130}};
    for (int v = 0; v < 3; v++) {
        grouped_case c = {.ta = v == 1, .tb = v != 1, .n = 5, .alpha = 1.0f,
                          .beta = v == 2 ? 1.0f : 0.0f};
        int64_t total = 0;
        for (int g = 0; g < 5; g++) {
            c.M[g] = MNK[g][0], c.N[g] = MNK[g][1], c.K[g] = MNK[g][2];
            c.A[g] = oc_randn(E, c.M[g] * c.K[g], 1.0f);
            c.B[g] = oc_randn(E, c.K[g] * c.N[g], 1.0f);
            c.C0[g] = oc_randn(E, c.M[g] * c.N[g], 1.0f);
            if (c.beta == 0.0f)
                for (int64_t i = 0; i < c.M[g] * c.N[g]; i++) c.C0[g][i] = NAN;
            total += c.M[g] * c.N[g];
        }
        char name[64];
        snprintf(name, sizeof name, "gemm_grouped ta=%d tb=%d beta=%g", c.ta, c.tb, c.beta);
        float *out = oc_run(E, OP_gemm_grouped, name, run_gemm_grouped, &c, total, oc_prod_tol(E), NULL);
        double *ref = malloc((size_t)total * 8);
        int64_t off = 0;
        for (int g = 0; g < 5; g++) {
            gemm_case gc = {c.ta, c.tb, c.M[g], c.N[g], c.K[g], c.ta ? c.M[g] : c.K[g],
                            c.tb ? c.K[g] : c.N[g], c.N[g], c.alpha, c.beta, 0, 0, 0};
            ref_gemm(&gc, c.A[g], c.B[g], c.C0[g], ref + off);
            off += c.M[g] * c.N[g];
        }
        double err = oc_err(out, ref, total);
        CHECK(err < 1e-5, "%s: error %.3g", name, err); /* K <= 130 fp32 sums */
        free(ref);
        free(out);
        for (int g = 0; g < 5; g++) {
            free(c.A[g]);
            free(c.B[g]);
            free(c.C0[g]);
        }
    }
    oc_mark(E, OP_gemm_grouped, f0);
}

/* ======================================================================== RMSNorm */

typedef struct {
    int64_t T, C, ldx, ldo, ldd, lddx;
    float eps;
    int accumulate;
    const float *x, *w, *out0; /* out0: prior content of out (its padding must survive) */
    const float *R, *rstd, *dx0; /* backward: dout, rstd from the CPU forward, prior dx */
} rms_case;

static int64_t run_rms_fwd(v3_kctx *ctx, const void *v, float *out) {
    const rms_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "rmsnorm_fwd"};
    float *x = oc_putf(&b, c->x, c->T * c->ldx), *w = oc_putf(&b, c->w, c->C);
    float *o = oc_putf(&b, c->out0, c->T * c->ldo), *r = oc_putf(&b, NULL, c->T);
    v3k(ctx, rmsnorm_fwd, o, c->ldo, r, x, c->ldx, w, c->T, c->C, c->eps);
    oc_get(&b, out, o, (size_t)(c->T * c->ldo) * 4);
    oc_get(&b, out + c->T * c->ldo, r, (size_t)c->T * 4);
    oc_done(&b);
    return c->T * c->ldo + c->T;
}

static int64_t run_rms_bwd(v3_kctx *ctx, const void *v, float *out) {
    const rms_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "rmsnorm_bwd"};
    float *x = oc_putf(&b, c->x, c->T * c->ldx), *w = oc_putf(&b, c->w, c->C);
    float *d = oc_putf(&b, c->R, c->T * c->ldd), *r = oc_putf(&b, c->rstd, c->T);
    float *dx = oc_putf(&b, c->dx0, c->T * c->lddx), *dw = oc_putf(&b, NULL, c->C);
    v3k(ctx, rmsnorm_bwd, dx, c->lddx, dw, d, c->ldd, x, c->ldx, w, r, c->T, c->C, c->accumulate);
    oc_get(&b, out, dx, (size_t)(c->T * c->lddx) * 4);
    oc_get(&b, out + c->T * c->lddx, dw, (size_t)c->C * 4);
    oc_done(&b);
    return c->T * c->lddx + c->C;
}

/* out[t,c] = w[c]·x[t,c]/sqrt(mean_c x² + eps), in double; p = [x (T×C compact) ; w] */
static void ref_rms(const rms_case *c, const double *x, const double *w, double *out) {
    for (int64_t t = 0; t < c->T; t++) {
        double ss = 0;
        for (int64_t j = 0; j < c->C; j++) ss += x[t * c->C + j] * x[t * c->C + j];
        double r = 1.0 / sqrt(ss / c->C + c->eps);
        for (int64_t j = 0; j < c->C; j++) out[t * c->C + j] = w[j] * x[t * c->C + j] * r;
    }
}
static double loss_rms(const double *p, const void *v) {
    const rms_case *c = v;
    double *o = malloc((size_t)(c->T * c->C) * 8), L = 0;
    ref_rms(c, p, p + c->T * c->C, o);
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t j = 0; j < c->C; j++) L += c->R[t * c->ldd + j] * o[t * c->C + j];
    free(o);
    return L;
}

static void test_rmsnorm(oc_env *E) {
    int f0 = oc_begin(E);
    /* not C = 1: there dx ~ eps/x² comes from cancelling terms of size 1 and the fp32 rstd
     * makes it noise (the op is right, the comparison is ill-conditioned) */
    static const int64_t shapes[][3] = {{1, 7, 0}, {5, 64, 3}, {33, 257, 1}, {3, 3, 0}};
    for (int s = 0; s < 4; s++) {
        rms_case c = {.T = shapes[s][0], .C = shapes[s][1], .eps = 1e-6f};
        int64_t pad = shapes[s][2], T = c.T, C = c.C;
        c.ldx = C + pad, c.ldo = C + 2 * pad, c.ldd = C + pad, c.lddx = C + 3 * pad;
        c.x = oc_randn(E, T * c.ldx, 1.5f);
        float *w = oc_randn(E, C, 0.5f);
        for (int64_t j = 0; j < C; j++) w[j] += 1.0f;
        c.w = w;
        c.out0 = oc_randn(E, T * c.ldo, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "rmsnorm T=%lld C=%lld", (long long)T, (long long)C);
        /* (a) forward */
        int64_t n;
        float *out = oc_run(E, OP_rmsnorm_fwd, name, run_rms_fwd, &c, T * c.ldo + T, DEV_TOL, &n);
        double *xd = malloc((size_t)(T * C + C) * 8), *ro = malloc((size_t)(T * C) * 8);
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < C; j++) xd[t * C + j] = c.x[t * c.ldx + j];
        for (int64_t j = 0; j < C; j++) xd[T * C + j] = c.w[j];
        ref_rms(&c, xd, xd + T * C, ro);
        double *ref = malloc((size_t)n * 8);
        for (int64_t t = 0; t < T; t++) {
            double ss = 0;
            for (int64_t j = 0; j < C; j++) ss += xd[t * C + j] * xd[t * C + j];
            ref[T * c.ldo + t] = 1.0 / sqrt(ss / C + c.eps);
            for (int64_t j = 0; j < c.ldo; j++)
                ref[t * c.ldo + j] = j < C ? ro[t * C + j] : c.out0[t * c.ldo + j];
        }
        double err = oc_err(out, ref, n);
        CHECK(err < 1e-6, "%s fwd: error %.3g", name, err); /* double stats, 2 fp32 roundings */
        /* (b) backward against finite differences, dx assigned */
        c.R = oc_randn(E, T * c.ldd, 1.0f);
        float *rstd = malloc((size_t)T * 4);
        memcpy(rstd, out + T * c.ldo, (size_t)T * 4);
        c.rstd = rstd;
        c.dx0 = oc_randn(E, T * c.lddx, 1.0f);
        int64_t nb;
        float *g = oc_run(E, OP_rmsnorm_bwd, name, run_rms_bwd, &c, T * c.lddx + C, DEV_TOL, &nb);
        float *an = malloc((size_t)(T * C + C) * 4);
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < C; j++) an[t * C + j] = g[t * c.lddx + j];
        memcpy(an + T * C, g + T * c.lddx, (size_t)C * 4);
        double fe = oc_fd(E, loss_rms, &c, xd, T * C + C, an, FD_H, 200);
        CHECK(fe < FD_TOL, "%s bwd: dx,dw vs finite differences %.3g", name, fe);
        int pad_ok = 1;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = C; j < c.lddx; j++) pad_ok &= g[t * c.lddx + j] == c.dx0[t * c.lddx + j];
        CHECK(pad_ok, "%s bwd: dx padding overwritten", name);
        /* accumulate = 1: dx0 + the assigned gradient, bitwise */
        c.accumulate = 1;
        float *ga = oc_run(E, OP_rmsnorm_bwd, name, run_rms_bwd, &c, T * c.lddx + C, DEV_TOL, NULL);
        int acc_ok = 1;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < C; j++)
                acc_ok &= ga[t * c.lddx + j] == c.dx0[t * c.lddx + j] + g[t * c.lddx + j];
        CHECK(acc_ok, "%s bwd: accumulate=1 is not dx0 + gradient", name);
        /* (c) dw accumulates: twice from zero is exactly twice */
        float *dx = malloc((size_t)(T * c.lddx) * 4), *dw = calloc((size_t)C, 4);
        v3k(&E->cpu, rmsnorm_bwd, dx, c.lddx, dw, c.R, c.ldd, c.x, c.ldx, c.w, rstd, T, C, 0);
        v3k(&E->cpu, rmsnorm_bwd, dx, c.lddx, dw, c.R, c.ldd, c.x, c.ldx, c.w, rstd, T, C, 0);
        int tw = 1;
        for (int64_t j = 0; j < C; j++) tw &= dw[j] == 2.0f * g[T * c.lddx + j];
        CHECK(tw, "%s bwd: dw after two runs is not exactly twice", name);
        /* (f) batch invariance: the last row alone */
        float *o1 = malloc((size_t)C * 4), r1;
        v3k(&E->cpu, rmsnorm_fwd, o1, C, &r1, c.x + (T - 1) * c.ldx, c.ldx, c.w, 1, C, c.eps);
        CHECK(memcmp(o1, out + (T - 1) * c.ldo, (size_t)C * 4) == 0 && r1 == out[T * c.ldo + T - 1],
              "%s: last row alone differs from the batch", name);
        free(o1);
        free(dx);
        free(dw);
        free(ga);
        free(an);
        free(g);
        free(rstd);
        free((void *)c.R);
        free((void *)c.dx0);
        free(ref);
        free(ro);
        free(xd);
        free(out);
        free((void *)c.x);
        free(w);
        free((void *)c.out0);
    }
    oc_mark(E, OP_rmsnorm_fwd, f0);
    oc_mark(E, OP_rmsnorm_bwd, f0);
}

/* ======================================================================== RoPE */

typedef struct {
    int64_t T, H, st, sh, d_rope, off; /* rotated dims start at x + t*st + h*sh + off */
    int bwd;
    const float *x, *inv_freq;
    const int32_t *pos;
} rope_case;

static int64_t run_rope(v3_kctx *ctx, const void *v, float *out) {
    const rope_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = c->bwd ? "rope_bwd" : "rope_fwd"};
    float *x = oc_putf(&b, c->x, c->T * c->st), *f = oc_putf(&b, c->inv_freq, c->d_rope / 2);
    int32_t *pos = oc_puti(&b, c->pos, c->T);
    if (c->bwd) v3k(ctx, rope_bwd, x + c->off, c->T, c->H, c->st, c->sh, c->d_rope, pos, f);
    else v3k(ctx, rope_fwd, x + c->off, c->T, c->H, c->st, c->sh, c->d_rope, pos, f);
    oc_get(&b, out, x, (size_t)(c->T * c->st) * 4);
    oc_done(&b);
    return c->T * c->st;
}

/* the rotation in double, by the same fp32 angle the contract prescribes; sign −1 = backward */
static void ref_rope(const rope_case *c, const double *x, double *out, double sign) {
    for (int64_t i = 0; i < c->T * c->st; i++) out[i] = x[i];
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->d_rope / 2; i++) {
                double ang = (float)c->pos[t] * c->inv_freq[i];
                double cs = cos(ang), sn = sign * sin(ang);
                int64_t o = t * c->st + h * c->sh + c->off + 2 * i;
                out[o] = x[o] * cs - x[o + 1] * sn;
                out[o + 1] = x[o] * sn + x[o + 1] * cs;
            }
}
static double loss_rope(const double *x, const void *v) {
    const rope_case *c = v;
    int64_t n = c->T * c->st;
    double *o = malloc((size_t)n * 8), L = 0;
    ref_rope(c, x, o, 1.0);
    /* R is stored after the case's x in the same allocation (see test_rope) */
    for (int64_t i = 0; i < n; i++) L += c->x[n + i] * o[i];
    free(o);
    return L;
}

static void test_rope(oc_env *E) {
    int f0 = oc_begin(E);
    /* {T, H, sh, d_rope, off, st pad}: a rope part inside a bigger head, one head, T = 1 */
    static const int64_t cs[][6] = {{7, 3, 12, 8, 4, 5}, {1, 1, 64, 64, 0, 0}, {19, 2, 6, 2, 4, 1}};
    for (int s = 0; s < 3; s++) {
        rope_case c = {.T = cs[s][0], .H = cs[s][1], .sh = cs[s][2], .d_rope = cs[s][3],
                       .off = cs[s][4]};
        c.st = c.H * c.sh + cs[s][5];
        int64_t n = c.T * c.st;
        float *xr = oc_randn(E, 2 * n, 1.0f); /* x, then R for the backward's loss */
        c.x = xr;
        float *f = malloc((size_t)(c.d_rope / 2) * 4);
        for (int64_t i = 0; i < c.d_rope / 2; i++) /* YaRN-like spread of frequencies */
            f[i] = (float)pow(10000.0, -2.0 * i / (double)c.d_rope) * (i % 3 == 2 ? 0.025f : 1.0f);
        c.inv_freq = f;
        int32_t *pos = malloc((size_t)c.T * 4);
        for (int64_t t = 0; t < c.T; t++) pos[t] = (int32_t)v3_rng_below(&E->rng, 5000);
        c.pos = pos;
        char name[64];
        snprintf(name, sizeof name, "rope T=%lld H=%lld d=%lld", (long long)c.T, (long long)c.H,
                 (long long)c.d_rope);
        float *out = oc_run(E, OP_rope_fwd, name, run_rope, &c, n, DEV_TOL, NULL);
        double *xd = oc_tod(c.x, n), *ref = malloc((size_t)n * 8);
        ref_rope(&c, xd, ref, 1.0);
        /* same fp32 angle; fp32 cos/sin products: a few ulp */
        double err = oc_err(out, ref, n);
        CHECK(err < 1e-6, "%s fwd: error %.3g", name, err);
        int untouched = 1; /* dims outside the rotated part keep their bits */
        for (int64_t i = 0; i < n; i++)
            if (ref[i] == xd[i]) untouched &= out[i] == c.x[i];
        CHECK(untouched, "%s fwd: a dim outside the rope part changed", name);
        /* (b) rope_bwd(R) is the gradient of <R, rope(x)> */
        rope_case cb = c;
        cb.bwd = 1;
        cb.x = xr + n;
        float *g = oc_run(E, OP_rope_bwd, name, run_rope, &cb, n, DEV_TOL, NULL);
        double fe = oc_fd(E, loss_rope, &c, xd, n, g, 1e-3, 300); /* linear: any h is exact */
        CHECK(fe < FD_TOL, "%s bwd: vs finite differences %.3g", name, fe);
        /* bwd undoes fwd */
        cb.x = out;
        float *back = oc_run(E, OP_rope_bwd, name, run_rope, &cb, n, DEV_TOL, NULL);
        double be = t_rel_err(back, c.x, n);
        CHECK(be < 1e-6, "%s: rope_bwd(rope_fwd(x)) != x, error %.3g", name, be);
        /* (f) the last token alone */
        float *x1 = malloc((size_t)c.st * 4);
        memcpy(x1, c.x + (c.T - 1) * c.st, (size_t)c.st * 4);
        v3k(&E->cpu, rope_fwd, x1 + c.off, 1, c.H, c.st, c.sh, c.d_rope, pos + c.T - 1, f);
        CHECK(memcmp(x1, out + (c.T - 1) * c.st, (size_t)c.st * 4) == 0,
              "%s: last token alone differs from the batch", name);
        free(x1);
        free(back);
        free(g);
        free(ref);
        free(xd);
        free(out);
        free(pos);
        free(f);
        free(xr);
    }
    oc_mark(E, OP_rope_fwd, f0);
    oc_mark(E, OP_rope_bwd, f0);
}

/* ======================================================================== attention */

typedef struct {
    int64_t T, Tk, H, dq, dv, Hk; /* Hk = 1 when k is broadcast to every head (stride 0) */
    int64_t q_st, k_st, v_st;
    float scale;
    const int32_t *lo, *hi;
    const float *q, *k, *v;       /* strided as the op sees them */
    const float *R, *out, *lse;   /* backward inputs: dout and the CPU forward's results */
} attn_case;

static int64_t run_attn(v3_kctx *ctx, const attn_case *c, int bwd, float *res) {
    oc_bufs b = {.ctx = ctx, .what = bwd ? "attention_bwd" : "attention_fwd"};
    int64_t T = c->T, H = c->H;
    v3_attn_params p = {.T = T, .Tk = c->Tk, .H = H, .d_qk = c->dq, .d_v = c->dv, .scale = c->scale};
    p.kv_lo = oc_puti(&b, c->lo, T);
    p.kv_hi = oc_puti(&b, c->hi, T);
    p.q = oc_putf(&b, c->q, T * c->q_st), p.q_st = c->q_st, p.q_sh = c->dq;
    p.k = oc_putf(&b, c->k, c->Tk * c->k_st), p.k_st = c->k_st, p.k_sh = c->Hk == 1 ? 0 : c->dq;
    p.v = oc_putf(&b, c->v, c->Tk * c->v_st), p.v_st = c->v_st, p.v_sh = c->dv;
    int64_t n = 0;
    if (!bwd) {
        p.out = oc_putf(&b, NULL, T * H * c->dv);
        p.lse = oc_putf(&b, NULL, T * H);
        v3k(ctx, attention_fwd, &p);
        oc_get(&b, res, p.out, (size_t)(T * H * c->dv) * 4);
        oc_get(&b, res + T * H * c->dv, p.lse, (size_t)(T * H) * 4);
        n = T * H * c->dv + T * H;
    } else {
        p.out = oc_putf(&b, c->out, T * H * c->dv);
        p.lse = oc_putf(&b, c->lse, T * H);
        p.dout = oc_putf(&b, c->R, T * H * c->dv);
        p.dq = oc_putf(&b, NULL, T * H * c->dq);
        p.dk = oc_putf(&b, NULL, c->Tk * H * c->dq);
        p.dv = oc_putf(&b, NULL, c->Tk * H * c->dv);
        v3k(ctx, attention_bwd, &p);
        oc_get(&b, res, p.dq, (size_t)(T * H * c->dq) * 4);
        n = T * H * c->dq;
        oc_get(&b, res + n, p.dk, (size_t)(c->Tk * H * c->dq) * 4);
        n += c->Tk * H * c->dq;
        oc_get(&b, res + n, p.dv, (size_t)(c->Tk * H * c->dv) * 4);
        n += c->Tk * H * c->dv;
    }
    oc_done(&b);
    return n;
}
static int64_t run_attn_fwd(v3_kctx *ctx, const void *v, float *out) { return run_attn(ctx, v, 0, out); }
static int64_t run_attn_bwd(v3_kctx *ctx, const void *v, float *out) { return run_attn(ctx, v, 1, out); }

/* Naive softmax attention in double over compact inputs p = [q (T,H,dq) ; k (Tk,Hk,dq) ;
 * v (Tk,H,dv)]; writes out (T,H,dv) and lse (T,H). */
static void ref_attn(const attn_case *c, const double *p, double *out, double *lse) {
    int64_t T = c->T, H = c->H, dq = c->dq, dv = c->dv;
    const double *q = p, *k = p + T * H * dq, *v = k + c->Tk * c->Hk * dq;
    double *s = malloc((size_t)c->Tk * 8);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = c->lo[t]; j < c->hi[t]; j++) {
                double d = 0;
                for (int64_t i = 0; i < dq; i++)
                    d += q[(t * H + h) * dq + i] * k[(j * c->Hk + (c->Hk == 1 ? 0 : h)) * dq + i];
                s[j] = c->scale * d;
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = c->lo[t]; j < c->hi[t]; j++) sum += exp(s[j] - mx);
            for (int64_t i = 0; i < dv; i++) {
                double o = 0;
                for (int64_t j = c->lo[t]; j < c->hi[t]; j++)
                    o += exp(s[j] - mx) / sum * v[(j * H + h) * dv + i];
                out[(t * H + h) * dv + i] = o;
            }
            if (lse) lse[t * H + h] = mx + log(sum);
        }
    free(s);
}
static double loss_attn(const double *p, const void *v) {
    const attn_case *c = v;
    int64_t n = c->T * c->H * c->dv;
    double *o = malloc((size_t)n * 8), L = 0;
    ref_attn(c, p, o, NULL);
    for (int64_t i = 0; i < n; i++) L += c->R[i] * o[i];
    free(o);
    return L;
}

/* Builds a case: docs > 1 splits the sequence into documents (causal within each); decode
 * puts T queries at the end of Tk keys (window [0, Tk − T + t + 1)). */
static void make_attn(oc_env *E, attn_case *c, int64_t T, int64_t Tk, int64_t H, int64_t dq,
                      int64_t dv, int bcast_k, int pad, int docs) {
    *c = (attn_case){.T = T, .Tk = Tk, .H = H, .dq = dq, .dv = dv, .Hk = bcast_k ? 1 : H};
    c->scale = (float)(1.0 / sqrt((double)dq)) * 1.3f;
    c->q_st = H * dq + pad, c->k_st = c->Hk * dq + pad, c->v_st = H * dv + 2 * pad;
    c->q = oc_randn(E, T * c->q_st, 1.0f);
    c->k = oc_randn(E, Tk * c->k_st, 1.0f);
    c->v = oc_randn(E, Tk * c->v_st, 1.0f);
    int32_t *lo = malloc((size_t)T * 4), *hi = malloc((size_t)T * 4);
    int64_t doc_len = (T + docs - 1) / docs;
    for (int64_t t = 0; t < T; t++) {
        if (Tk == T) lo[t] = (int32_t)(t / doc_len * doc_len), hi[t] = (int32_t)t + 1;
        else lo[t] = 0, hi[t] = (int32_t)(Tk - T + t + 1);
    }
    c->lo = lo, c->hi = hi;
}
static double *attn_compact(const attn_case *c) {
    int64_t T = c->T, H = c->H, nq = T * H * c->dq, nk = c->Tk * c->Hk * c->dq;
    double *p = malloc((size_t)(nq + nk + c->Tk * H * c->dv) * 8);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H * c->dq; i++) p[t * H * c->dq + i] = c->q[t * c->q_st + i];
    for (int64_t s = 0; s < c->Tk; s++) {
        for (int64_t i = 0; i < c->Hk * c->dq; i++) p[nq + s * c->Hk * c->dq + i] = c->k[s * c->k_st + i];
        for (int64_t i = 0; i < H * c->dv; i++) p[nq + nk + s * H * c->dv + i] = c->v[s * c->v_st + i];
    }
    return p;
}
static void free_attn(attn_case *c) {
    free((void *)c->q), free((void *)c->k), free((void *)c->v);
    free((void *)c->lo), free((void *)c->hi);
}

static void test_attention(oc_env *E) {
    int f0 = oc_begin(E);
    /* {T, Tk, H, dq, dv, bcast_k, pad, docs, fd}: single token; documents + broadcast k_pe;
     * decoding against a longer cache with strided q; realistic head dims (forward only) */
    static const int64_t cs[][9] = {{1, 1, 1, 3, 2, 0, 0, 1, 1},   {6, 6, 2, 5, 4, 1, 1, 2, 1},
                                    {3, 9, 3, 8, 6, 0, 2, 1, 1},   {7, 7, 2, 6, 4, 0, 0, 3, 1},
                                    {40, 40, 2, 192, 128, 1, 3, 2, 0}};
    for (int s = 0; s < 5; s++) {
        attn_case c;
        make_attn(E, &c, cs[s][0], cs[s][1], cs[s][2], cs[s][3], cs[s][4], (int)cs[s][5],
                  (int)cs[s][6], (int)cs[s][7]);
        int64_t T = c.T, H = c.H;
        char name[80];
        snprintf(name, sizeof name, "attention T=%lld Tk=%lld H=%lld dqk=%lld%s", (long long)T,
                 (long long)c.Tk, (long long)H, (long long)c.dq, c.Hk == 1 ? " k-broadcast" : "");
        int64_t n;
        float *out = oc_run(E, OP_attention_fwd, name, run_attn_fwd, &c, T * H * (c.dv + 1),
                            oc_prod_tol(E), &n);
        double *p = attn_compact(&c), *ref = malloc((size_t)n * 8);
        ref_attn(&c, p, ref, ref + T * H * c.dv);
        /* fp32 dots of <= 192 terms and fp32 exponentials: ~1e-7 relative, bound 1e-5 */
        double err = oc_err(out, ref, n);
        CHECK(err < 1e-5, "%s fwd: error %.3g", name, err);
        /* (f) batch invariance: one query alone (decoding) equals its row in the batch */
        for (int64_t t = T - 1; t >= 0; t -= T > 3 ? T / 3 : 1) {
            attn_case c1 = c;
            c1.T = 1, c1.q = c.q + t * c.q_st, c1.lo = c.lo + t, c1.hi = c.hi + t;
            float *o1 = malloc((size_t)(H * (c.dv + 1)) * 4);
            run_attn(&E->cpu, &c1, 0, o1);
            CHECK(memcmp(o1, out + t * H * c.dv, (size_t)(H * c.dv) * 4) == 0 &&
                      memcmp(o1 + H * c.dv, out + T * H * c.dv + t * H, (size_t)H * 4) == 0,
                  "%s: query %lld alone differs from the batch", name, (long long)t);
            free(o1);
        }
        /* (b) backward against finite differences of <R, out> over q, k, v */
        c.R = oc_randn(E, T * H * c.dv, 1.0f);
        c.out = out, c.lse = out + T * H * c.dv;
        int64_t nq = T * H * c.dq, nk = c.Tk * H * c.dq, nv = c.Tk * H * c.dv;
        float *g = oc_run(E, OP_attention_bwd, name, run_attn_bwd, &c, nq + nk + nv, oc_prod_tol(E), NULL);
        if (cs[s][8]) {
            /* the caller's reduction for a broadcast k: dk_shared = Σ_h dk[:, h, :] */
            int64_t nks = c.Tk * c.Hk * c.dq;
            float *an = malloc((size_t)(nq + nks + nv) * 4);
            memcpy(an, g, (size_t)nq * 4);
            for (int64_t j = 0; j < c.Tk; j++)
                for (int64_t i = 0; i < c.Hk * c.dq; i++) {
                    const float *dk = g + nq + j * H * c.dq; /* key j: [H][dq] */
                    float acc = 0;
                    if (c.Hk == 1)
                        for (int64_t h = 0; h < H; h++) acc += dk[h * c.dq + i];
                    else acc = dk[i];
                    an[nq + j * c.Hk * c.dq + i] = acc;
                }
            memcpy(an + nq + nks, g + nq + nk, (size_t)nv * 4);
            double fe = oc_fd(E, loss_attn, &c, p, nq + nks + nv, an, FD_H, 400);
            CHECK(fe < FD_TOL, "%s bwd: dq,dk,dv vs finite differences %.3g", name, fe);
            free(an);
        }
        free(g);
        free((void *)c.R);
        free(ref);
        free(p);
        free(out);
        free_attn(&c);
    }
    oc_mark(E, OP_attention_fwd, f0);
    oc_mark(E, OP_attention_bwd, f0);
}

/* ======================================================================== SwiGLU */

typedef struct {
    int64_t rows, cols, ld, u_off;
    const float *in, *R;
} swiglu_case;

static int64_t run_swiglu_fwd(v3_kctx *ctx, const void *v, float *out) {
    const swiglu_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "swiglu_fwd"};
    float *in = oc_putf(&b, c->in, c->rows * c->ld), *o = oc_putf(&b, NULL, c->rows * c->cols);
    v3k(ctx, swiglu_fwd, o, in, c->ld, c->u_off, c->rows, c->cols);
    oc_get(&b, out, o, (size_t)(c->rows * c->cols) * 4);
    oc_done(&b);
    return c->rows * c->cols;
}
static int64_t run_swiglu_bwd(v3_kctx *ctx, const void *v, float *out) {
    const swiglu_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "swiglu_bwd"};
    float *in = oc_putf(&b, c->in, c->rows * c->ld), *d = oc_putf(&b, c->R, c->rows * c->cols);
    float *din = oc_putf(&b, NULL, c->rows * c->ld); /* zero: gaps of the layout stay zero */
    v3k(ctx, swiglu_bwd, din, d, in, c->ld, c->u_off, c->rows, c->cols);
    oc_get(&b, out, din, (size_t)(c->rows * c->ld) * 4);
    oc_done(&b);
    return c->rows * c->ld;
}
static void ref_swiglu(const swiglu_case *c, const double *in, double *out) {
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t j = 0; j < c->cols; j++) {
            double g = in[r * c->ld + j], u = in[r * c->ld + c->u_off + j];
            out[r * c->cols + j] = g / (1.0 + exp(-g)) * u;
        }
}
static double loss_swiglu(const double *x, const void *v) {
    const swiglu_case *c = v;
    double *o = malloc((size_t)(c->rows * c->cols) * 8), L = 0;
    ref_swiglu(c, x, o);
    for (int64_t i = 0; i < c->rows * c->cols; i++) L += c->R[i] * o[i];
    free(o);
    return L;
}

static void test_swiglu(oc_env *E) {
    int f0 = oc_begin(E);
    static const int64_t cs[][2] = {{1, 5}, {17, 64}, {3, 1}, {130, 300}};
    for (int s = 0; s < 4; s++) {
        swiglu_case c = {.rows = cs[s][0], .cols = cs[s][1]};
        c.u_off = c.cols + 1, c.ld = 2 * c.cols + 3; /* a gap between the halves and after */
        int64_t n = c.rows * c.cols, ni = c.rows * c.ld;
        c.in = oc_randn(E, ni, 2.0f);
        c.R = oc_randn(E, n, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "swiglu %lldx%lld", (long long)c.rows, (long long)c.cols);
        float *out = oc_run(E, OP_swiglu_fwd, name, run_swiglu_fwd, &c, n, DEV_TOL, NULL);
        double *xd = oc_tod(c.in, ni), *ref = malloc((size_t)n * 8);
        ref_swiglu(&c, xd, ref);
        double err = oc_err(out, ref, n);
        CHECK(err < 1e-6, "%s fwd: error %.3g", name, err); /* expf + 3 roundings */
        float *g = oc_run(E, OP_swiglu_bwd, name, run_swiglu_bwd, &c, ni, DEV_TOL, NULL);
        double fe = oc_fd(E, loss_swiglu, &c, xd, ni, g, FD_H, 300);
        CHECK(fe < FD_TOL, "%s bwd: vs finite differences %.3g", name, fe);
        float *o1 = malloc((size_t)c.cols * 4); /* (f) last row alone */
        v3k(&E->cpu, swiglu_fwd, o1, c.in + (c.rows - 1) * c.ld, c.ld, c.u_off, 1, c.cols);
        CHECK(memcmp(o1, out + (c.rows - 1) * c.cols, (size_t)c.cols * 4) == 0,
              "%s: last row alone differs", name);
        free(o1);
        free(g);
        free(ref);
        free(xd);
        free(out);
        free((void *)c.in);
        free((void *)c.R);
    }
    oc_mark(E, OP_swiglu_fwd, f0);
    oc_mark(E, OP_swiglu_bwd, f0);
}

/* ======================================================================== router */

typedef struct {
    int64_t T, E, K;
    int n_group, topk_group, norm;
    float rs;
    const float *logits, *bias;
    const float *scores, *R;   /* backward: CPU forward scores, dtopk_w */
    const int32_t *idx;        /* backward: CPU forward selection */
} router_case;

static int64_t run_router_fwd(v3_kctx *ctx, const void *v, float *out) {
    const router_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "router_fwd"};
    int64_t T = c->T, E = c->E, K = c->K;
    v3_router_params p = {.T = T, .E = E, .K = K, .n_group = c->n_group,
                          .topk_group = c->topk_group, .route_scale = c->rs,
                          .norm_topk_prob = c->norm};
    p.logits = oc_putf(&b, c->logits, T * E);
    p.bias = c->bias ? oc_putf(&b, c->bias, E) : NULL;
    p.scores = oc_putf(&b, NULL, T * E);
    p.topk_idx = oc_puti(&b, NULL, T * K);
    p.topk_w = oc_putf(&b, NULL, T * K);
    v3k(ctx, router_fwd, &p);
    int32_t *idx = malloc((size_t)(T * K) * 4);
    oc_get(&b, out, p.scores, (size_t)(T * E) * 4);
    oc_get(&b, idx, p.topk_idx, (size_t)(T * K) * 4);
    for (int64_t i = 0; i < T * K; i++) out[T * E + i] = (float)idx[i];
    oc_get(&b, out + T * E + T * K, p.topk_w, (size_t)(T * K) * 4);
    free(idx);
    oc_done(&b);
    return T * E + 2 * T * K;
}
static int64_t run_router_bwd(v3_kctx *ctx, const void *v, float *out) {
    const router_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "router_bwd"};
    int64_t T = c->T, E = c->E, K = c->K;
    v3_router_params p = {.T = T, .E = E, .K = K, .n_group = c->n_group,
                          .topk_group = c->topk_group, .route_scale = c->rs,
                          .norm_topk_prob = c->norm};
    p.logits = oc_putf(&b, c->logits, T * E);
    p.scores = oc_putf(&b, c->scores, T * E);
    p.topk_idx = oc_puti(&b, c->idx, T * K);
    p.dtopk_w = oc_putf(&b, c->R, T * K);
    p.dlogits = oc_putf(&b, NULL, T * E);
    v3k(ctx, router_bwd, &p);
    oc_get(&b, out, p.dlogits, (size_t)(T * E) * 4);
    oc_done(&b);
    return T * E;
}

/* Brute-force selection for one token from the op's own fp32 scores: groups ranked by the best
 * pair sum over all pairs, experts ranked by a full sort; (value desc, index asc) throughout. */
static void ref_select(const router_case *c, const float *s, int32_t *idx) {
    int64_t E = c->E, G = c->n_group > 1 ? c->n_group : 1, gs = E / G;
    float *cb = malloc((size_t)E * 4);
    for (int64_t e = 0; e < E; e++) cb[e] = s[e] + (c->bias ? c->bias[e] : 0.0f);
    if (G > 1) {
        float gsc[64];
        int order[64];
        for (int64_t g = 0; g < G; g++) {
            float best = -INFINITY;
            for (int64_t i = 0; i < gs; i++)
                for (int64_t j = i + 1; j < gs; j++)
                    if (cb[g * gs + i] + cb[g * gs + j] > best) best = cb[g * gs + i] + cb[g * gs + j];
            gsc[g] = gs == 1 ? cb[g * gs] : best;
            order[g] = (int)g;
        }
        for (int64_t i = 0; i < G; i++) /* insertion sort, stable: ties keep index order */
            for (int64_t j = i; j > 0 && gsc[order[j]] > gsc[order[j - 1]]; j--) {
                int t = order[j];
                order[j] = order[j - 1], order[j - 1] = t;
            }
        for (int64_t r = c->topk_group; r < G; r++)
            for (int64_t i = 0; i < gs; i++) cb[order[r] * gs + i] = -INFINITY;
    }
    int *ord = malloc((size_t)E * sizeof(int));
    for (int64_t e = 0; e < E; e++) ord[e] = (int)e;
    for (int64_t i = 0; i < E; i++)
        for (int64_t j = i; j > 0 && cb[ord[j]] > cb[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    for (int64_t k = 0; k < c->K; k++) idx[k] = ord[k];
    free(ord);
    free(cb);
}
/* combine weights of a fixed selection, in double, from logits */
static void ref_router_w(const router_case *c, const double *logit, const int32_t *idx, double *w) {
    for (int64_t t = 0; t < c->T; t++) {
        double z = 1e-20;
        for (int64_t k = 0; k < c->K; k++) {
            w[t * c->K + k] = 1.0 / (1.0 + exp(-logit[t * c->E + idx[t * c->K + k]]));
            z += w[t * c->K + k];
        }
        for (int64_t k = 0; k < c->K; k++)
            w[t * c->K + k] = c->rs * (c->norm ? w[t * c->K + k] / z : w[t * c->K + k]);
    }
}
static double loss_router(const double *x, const void *v) {
    const router_case *c = v;
    double *w = malloc((size_t)(c->T * c->K) * 8), L = 0;
    ref_router_w(c, x, c->idx, w);
    for (int64_t i = 0; i < c->T * c->K; i++) L += c->R[i] * w[i];
    free(w);
    return L;
}

static void test_router(oc_env *E) {
    int f0 = oc_begin(E);
    /* {T, E, K, n_group, topk_group, norm, bias mode, logit mode}: bias 0 none, 1 small random,
     * 2 strongly negative (biased scores < 0: -inf masking differs from 0-filling there);
     * logits 0 normal, 1 on a coarse grid (exact ties) */
    static const int cs[][8] = {{9, 16, 4, 4, 2, 1, 1, 0}, {5, 8, 2, 1, 1, 0, 0, 0},
                                {7, 8, 3, 8, 3, 1, 1, 0},  {11, 8, 4, 4, 2, 1, 2, 0},
                                {13, 16, 6, 4, 2, 1, 0, 1}, {1, 32, 8, 8, 4, 1, 1, 0},
                                {64, 64, 8, 8, 4, 1, 1, 0}};
    for (int s = 0; s < 7; s++) {
        router_case c = {.T = cs[s][0], .E = cs[s][1], .K = cs[s][2], .n_group = cs[s][3],
                         .topk_group = cs[s][4], .norm = cs[s][5], .rs = cs[s][5] ? 2.5f : 1.0f};
        int64_t T = c.T, Ex = c.E, K = c.K;
        float *lg = oc_randn(E, T * Ex, 2.0f), *bias = NULL;
        if (cs[s][7])
            for (int64_t i = 0; i < T * Ex; i++) lg[i] = (float)(int)(lg[i] * 0.7f);
        if (cs[s][6]) {
            bias = oc_randn(E, Ex, cs[s][6] == 1 ? 0.05f : 0.1f);
            if (cs[s][6] == 2)
                for (int64_t e = 0; e < Ex; e++) bias[e] -= 2.0f;
        }
        c.logits = lg, c.bias = bias;
        char name[80];
        snprintf(name, sizeof name, "router T=%lld E=%lld K=%lld groups=%d/%d", (long long)T,
                 (long long)Ex, (long long)K, c.n_group, c.topk_group);
        int64_t n;
        float *out = oc_run(E, OP_router_fwd, name, run_router_fwd, &c, T * Ex + 2 * T * K,
                            DEV_TOL, &n);
        /* scores: expf-based sigmoid against double, a few ulp */
        double *sref = malloc((size_t)(T * Ex) * 8);
        for (int64_t i = 0; i < T * Ex; i++) sref[i] = 1.0 / (1.0 + exp(-(double)lg[i]));
        double err = oc_err(out, sref, T * Ex);
        CHECK(err < 1e-6, "%s: scores error %.3g", name, err);
        int32_t *idx = malloc((size_t)(T * K) * 4), *ridx = malloc((size_t)K * 4);
        int sel_ok = 1;
        for (int64_t t = 0; t < T; t++) {
            ref_select(&c, out + t * Ex, ridx);
            for (int64_t k = 0; k < K; k++) {
                idx[t * K + k] = (int32_t)out[T * Ex + t * K + k];
                sel_ok &= idx[t * K + k] == ridx[k];
            }
        }
        CHECK(sel_ok, "%s: selection differs from the brute-force reference", name);
        c.idx = idx;
        double *ld = oc_tod(lg, T * Ex), *wref = malloc((size_t)(T * K) * 8);
        ref_router_w(&c, ld, idx, wref);
        err = oc_err(out + T * Ex + T * K, wref, T * K);
        CHECK(err < 1e-6, "%s: weights error %.3g", name, err); /* fp32 sum of K terms */
        /* (f) one token alone */
        router_case c1 = c;
        int64_t tt = T / 2;
        c1.T = 1, c1.logits = lg + tt * Ex;
        float *o1 = malloc((size_t)(Ex + 2 * K) * 4);
        run_router_fwd(&E->cpu, &c1, o1);
        CHECK(memcmp(o1, out + tt * Ex, (size_t)Ex * 4) == 0 &&
                  memcmp(o1 + Ex, out + T * Ex + tt * K, (size_t)K * 4) == 0 &&
                  memcmp(o1 + Ex + K, out + T * Ex + T * K + tt * K, (size_t)K * 4) == 0,
              "%s: token %lld alone differs from the batch", name, (long long)tt);
        /* (b) backward for the fixed selection against finite differences of <R, w> */
        c.scores = out, c.R = oc_randn(E, T * K, 1.0f);
        float *g = oc_run(E, OP_router_bwd, name, run_router_bwd, &c, T * Ex, DEV_TOL, NULL);
        double fe = oc_fd(E, loss_router, &c, ld, T * Ex, g, FD_H, 300);
        CHECK(fe < FD_TOL, "%s bwd: vs finite differences %.3g", name, fe);
        free(g);
        free((void *)c.R);
        free(o1);
        free(wref);
        free(ld);
        free(ridx);
        free(idx);
        free(sref);
        free(out);
        free(lg);
        free(bias);
    }
    oc_mark(E, OP_router_fwd, f0);
    oc_mark(E, OP_router_bwd, f0);
}

/* ======================================================================== balance loss */

typedef struct {
    int64_t T, E, K, n_seq;
    const int64_t *off;
    float alpha;
    const float *scores;
    const int32_t *idx;
} bal_case;

static int64_t run_balance(v3_kctx *ctx, const void *v, float *out) {
    const bal_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "router_balance"};
    double loss = -1;
    v3_balance_params p = {.T = c->T, .E = c->E, .K = c->K, .n_seq = c->n_seq, .seq_off = c->off,
                           .alpha = c->alpha, .loss = &loss};
    p.scores = oc_putf(&b, c->scores, c->T * c->E);
    p.topk_idx = oc_puti(&b, c->idx, c->T * c->K);
    p.dlogits = oc_putf(&b, NULL, c->T * c->E);
    v3k(ctx, router_balance, &p);
    oc_get(&b, out, p.dlogits, (size_t)(c->T * c->E) * 4);
    oc_done(&b);
    /* the double loss as three floats: hi + mid + lo carry all 53 bits (bitwise comparable) */
    out[c->T * c->E] = (float)loss;
    out[c->T * c->E + 1] = (float)(loss - (double)out[c->T * c->E]);
    out[c->T * c->E + 2] = (float)(loss - (double)out[c->T * c->E] - (double)out[c->T * c->E + 1]);
    return c->T * c->E + 3;
}

/* model-spec §7 in double from scores s (f from the fixed routing) */
static double ref_balance(const bal_case *c, const double *s) {
    double total = 0;
    for (int64_t n = 0; n < c->n_seq; n++) {
        int64_t t0 = c->off[n], L = c->off[n + 1] - t0;
        if (L == 0) continue;
        double loss = 0;
        for (int64_t e = 0; e < c->E; e++) {
            double f = 0, P = 0;
            for (int64_t t = t0; t < t0 + L; t++) {
                double S = 0;
                for (int64_t j = 0; j < c->E; j++) S += s[t * c->E + j];
                P += s[t * c->E + e] / S / L;
                for (int64_t k = 0; k < c->K; k++) f += c->idx[t * c->K + k] == e;
            }
            loss += f * c->E / (c->K * (double)L) * P;
        }
        total += c->alpha * loss;
    }
    return total;
}
static double loss_balance(const double *logit, const void *v) {
    const bal_case *c = v;
    double *s = malloc((size_t)(c->T * c->E) * 8);
    for (int64_t i = 0; i < c->T * c->E; i++) s[i] = 1.0 / (1.0 + exp(-logit[i]));
    double L = ref_balance(c, s);
    free(s);
    return L;
}

static void test_balance(oc_env *E) {
    int f0 = oc_begin(E);
    int64_t T = 12, Ex = 8, K = 2;
    int64_t off[] = {0, 5, 5, 12}; /* three sequences, the middle one empty */
    float *lg = oc_randn(E, T * Ex, 1.5f);
    float *sc = malloc((size_t)(T * Ex) * 4), *w = malloc((size_t)(T * K) * 4);
    int32_t *idx = malloc((size_t)(T * K) * 4);
    v3_router_params rp = {.T = T, .E = Ex, .K = K, .n_group = 1, .topk_group = 1,
                           .route_scale = 1.0f, .norm_topk_prob = 1, .logits = lg, .scores = sc,
                           .topk_idx = idx, .topk_w = w};
    v3k(&E->cpu, router_fwd, &rp);
    bal_case c = {T, Ex, K, 3, off, 0.01f, sc, idx};
    int64_t n;
    float *out = oc_run(E, OP_router_balance, "router_balance", run_balance, &c, T * Ex + 3,
                        DEV_TOL, &n);
    double loss = (double)out[T * Ex] + out[T * Ex + 1] + out[T * Ex + 2];
    double *sd = oc_tod(sc, T * Ex), *ld = oc_tod(lg, T * Ex);
    double lref = ref_balance(&c, sd);
    /* the same double formula in another order: ~1e-16 relative */
    CHECK(fabs(loss - lref) <= 1e-12 * fabs(lref), "balance loss %.17g vs %.17g", loss, lref);
    double fe = oc_fd(E, loss_balance, &c, ld, T * Ex, out, FD_H, 200);
    CHECK(fe < FD_TOL, "balance dlogits vs finite differences %.3g", fe);
    /* (c) accumulates: twice from zero is exactly twice; dlogits = NULL gives the same loss */
    float *dl = calloc((size_t)(T * Ex), 4);
    double l1 = 0, l2 = 0;
    v3_balance_params bp = {.T = T, .E = Ex, .K = K, .n_seq = 3, .seq_off = off, .alpha = 0.01f,
                            .scores = sc, .topk_idx = idx, .dlogits = dl, .loss = &l1};
    v3k(&E->cpu, router_balance, &bp);
    v3k(&E->cpu, router_balance, &bp);
    int tw = 1;
    for (int64_t i = 0; i < T * Ex; i++) tw &= dl[i] == 2.0f * out[i];
    CHECK(tw, "balance: dlogits after two runs is not exactly twice");
    bp.dlogits = NULL, bp.loss = &l2;
    v3k(&E->cpu, router_balance, &bp);
    CHECK(l1 == l2 && l1 == loss, "balance: loss without dlogits differs");
    free(dl);
    free(sd);
    free(ld);
    free(out);
    free(idx);
    free(w);
    free(sc);
    free(lg);
    oc_mark(E, OP_router_balance, f0);
}

/* ======================================================================== MoE dispatch */

typedef struct {
    int64_t T, K, E;
    const int32_t *idx;
} plan_case;

static int64_t run_plan(v3_kctx *ctx, const void *v, float *out) {
    const plan_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "moe_plan"};
    int64_t R = c->T * c->K, *counts = malloc((size_t)c->E * 8);
    int32_t *idx = oc_puti(&b, c->idx, R), *ro = oc_puti(&b, NULL, R), *so = oc_puti(&b, NULL, R);
    v3k(ctx, moe_plan, idx, c->T, c->K, c->E, counts, ro, so);
    int32_t *h = malloc((size_t)(2 * R + 1) * 4);
    oc_get(&b, h, ro, (size_t)R * 4);
    oc_get(&b, h + R, so, (size_t)R * 4);
    oc_done(&b);
    for (int64_t e = 0; e < c->E; e++) out[e] = (float)counts[e];
    for (int64_t i = 0; i < 2 * R; i++) out[c->E + i] = (float)h[i];
    free(h);
    free(counts);
    return c->E + 2 * R;
}

/* K distinct experts per token drawn from the experts not in `unused` (those get no token) */
static int32_t *make_topk(oc_env *E, int64_t T, int64_t K, int64_t Ex, int64_t unused_a,
                          int64_t unused_b) {
    int32_t *idx = malloc((size_t)(T * K) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < K; k++) {
            int32_t e;
            int dup;
            do {
                e = (int32_t)v3_rng_below(&E->rng, (uint64_t)Ex);
                dup = e == unused_a || e == unused_b;
                for (int64_t j = 0; j < k; j++) dup |= idx[t * K + j] == e;
            } while (dup);
            idx[t * K + k] = e;
        }
    return idx;
}

static void test_moe_plan(oc_env *E) {
    int f0 = oc_begin(E);
    static const int64_t cs[][3] = {{1, 1, 1}, {13, 3, 8}, {50, 4, 16}};
    for (int s = 0; s < 3; s++) {
        plan_case c = {cs[s][0], cs[s][1], cs[s][2], NULL};
        int64_t R = c.T * c.K;
        c.idx = make_topk(E, c.T, c.K, c.E, c.E > 4 ? 2 : -1, c.E > 4 ? 5 : -1);
        char name[64];
        snprintf(name, sizeof name, "moe_plan T=%lld K=%lld E=%lld", (long long)c.T,
                 (long long)c.K, (long long)c.E);
        float *out = oc_run(E, OP_moe_plan, name, run_plan, &c, c.E + 2 * R, 0, NULL);
        /* reference: walk experts, then tokens in order (stable by construction) */
        float *ref = calloc((size_t)(c.E + 2 * R), 4);
        int64_t r = 0;
        for (int64_t e = 0; e < c.E; e++)
            for (int64_t i = 0; i < R; i++)
                if (c.idx[i] == e) {
                    ref[e] += 1.0f;
                    ref[c.E + i] = (float)r;
                    ref[c.E + R + r] = (float)(i / c.K);
                    r++;
                }
        CHECK(memcmp(out, ref, (size_t)(c.E + 2 * R) * 4) == 0, "%s: plan differs", name);
        if (c.E > 4) CHECK(out[2] == 0 && out[5] == 0, "%s: unused experts got tokens", name);
        free(ref);
        free(out);
        free((void *)c.idx);
    }
    oc_mark(E, OP_moe_plan, f0);
}

typedef struct {
    int64_t R, C, n_rows; /* R indexed rows; n_rows rows on the other side */
    const int32_t *idx;
    const float *src, *dst0;
} rows_case;

static int64_t run_gather(v3_kctx *ctx, const void *v, float *out) {
    const rows_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "gather_rows"};
    float *src = oc_putf(&b, c->src, c->n_rows * c->C), *dst = oc_putf(&b, NULL, c->R * c->C);
    int32_t *idx = oc_puti(&b, c->idx, c->R);
    v3k(ctx, gather_rows, dst, src, idx, c->R, c->C);
    oc_get(&b, out, dst, (size_t)(c->R * c->C) * 4);
    oc_done(&b);
    return c->R * c->C;
}
static int64_t run_scatter(v3_kctx *ctx, const void *v, float *out) {
    const rows_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "scatter_add_rows"};
    float *src = oc_putf(&b, c->src, c->R * c->C), *dst = oc_putf(&b, c->dst0, c->n_rows * c->C);
    int32_t *idx = oc_puti(&b, c->idx, c->R);
    v3k(ctx, scatter_add_rows, dst, src, idx, c->R, c->C);
    oc_get(&b, out, dst, (size_t)(c->n_rows * c->C) * 4);
    oc_done(&b);
    return c->n_rows * c->C;
}
static int64_t run_scatter_assign(v3_kctx *ctx, const void *v, float *out) {
    const rows_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "scatter_rows"};
    float *src = oc_putf(&b, c->src, c->R * c->C), *dst = oc_putf(&b, c->dst0, c->n_rows * c->C);
    int32_t *idx = oc_puti(&b, c->idx, c->R);
    v3k(ctx, scatter_rows, dst, src, idx, c->R, c->C);
    oc_get(&b, out, dst, (size_t)(c->n_rows * c->C) * 4);
    oc_done(&b);
    return c->n_rows * c->C;
}
/* L = <R, gather(x)>: its gradient is scatter_add(R) */
static double loss_gather(const double *x, const void *v) {
    const rows_case *c = v;
    double L = 0;
    for (int64_t r = 0; r < c->R; r++)
        for (int64_t j = 0; j < c->C; j++) L += c->src[r * c->C + j] * x[c->idx[r] * c->C + j];
    return L;
}

static void test_rows(oc_env *E) {
    int f0 = oc_begin(E);
    static const int64_t cs[][3] = {{1, 1, 1}, {40, 7, 9}, {300, 130, 50}};
    for (int s = 0; s < 3; s++) {
        rows_case c = {cs[s][0], cs[s][1], cs[s][2], NULL, NULL, NULL};
        int64_t R = c.R, C = c.C, N = c.n_rows;
        int32_t *idx = malloc((size_t)R * 4);
        for (int64_t r = 0; r < R; r++) idx[r] = (int32_t)v3_rng_below(&E->rng, (uint64_t)N);
        c.idx = idx;
        char name[64];
        snprintf(name, sizeof name, "rows R=%lld C=%lld", (long long)R, (long long)C);
        /* gather: exact copies */
        rows_case cg = c;
        cg.src = oc_randn(E, N * C, 1.0f);
        float *out = oc_run(E, OP_gather_rows, name, run_gather, &cg, R * C, 0, NULL);
        int ok = 1;
        for (int64_t r = 0; r < R; r++)
            ok &= memcmp(out + r * C, cg.src + idx[r] * C, (size_t)C * 4) == 0;
        CHECK(ok, "%s: gather is not an exact copy", name);
        /* scatter_add onto a non-zero destination; duplicates summed */
        c.src = oc_randn(E, R * C, 1.0f);
        c.dst0 = oc_randn(E, N * C, 1.0f);
        float *sc = oc_run(E, OP_scatter_add_rows, name, run_scatter, &c, N * C, DEV_TOL, NULL);
        double *ref = oc_tod(c.dst0, N * C);
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < C; j++) ref[idx[r] * C + j] += c.src[r * C + j];
        double err = oc_err(sc, ref, N * C);
        CHECK(err < 1e-6, "%s: scatter_add error %.3g", name, err); /* fp32 sums of few rows */
        /* (b) scatter_add into zeros is the gradient of <R, gather(x)> (adjoint pair) */
        rows_case cz = c;
        float *zero = calloc((size_t)(N * C), 4);
        cz.dst0 = zero;
        float *g = oc_run(E, OP_scatter_add_rows, name, run_scatter, &cz, N * C, DEV_TOL, NULL);
        double *xd = oc_tod(cg.src, N * C);
        double fe = oc_fd(E, loss_gather, &c, xd, N * C, g, 0.5, 200); /* linear: exact FD */
        CHECK(fe < 1e-6, "%s: scatter_add is not the adjoint of gather, %.3g", name, fe);
        /* scatter_rows (assignment) to distinct rows: exact copies, the other rows untouched */
        {
            int64_t Rd = R < N ? R : N;
            int32_t *perm = malloc((size_t)N * 4);
            for (int64_t i = 0; i < N; i++) perm[i] = (int32_t)i;
            for (int64_t i = N - 1; i > 0; i--) {
                int64_t j = (int64_t)v3_rng_below(&E->rng, (uint64_t)(i + 1));
                int32_t t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
            rows_case ca = {Rd, C, N, perm, c.src, c.dst0};
            float *as = oc_run(E, OP_scatter_rows, name, run_scatter_assign, &ca, N * C, 0, NULL);
            float *want = malloc((size_t)(N * C) * 4);
            memcpy(want, c.dst0, (size_t)(N * C) * 4);
            for (int64_t r = 0; r < Rd; r++) memcpy(want + perm[r] * C, c.src + r * C, (size_t)C * 4);
            CHECK(memcmp(as, want, (size_t)(N * C) * 4) == 0, "%s: scatter_rows is not exact", name);
            free(want);
            free(as);
            free(perm);
        }
        /* (c) twice from zero is exactly twice */
        float *d2 = calloc((size_t)(N * C), 4);
        v3k(&E->cpu, scatter_add_rows, d2, c.src, idx, R, C);
        v3k(&E->cpu, scatter_add_rows, d2, c.src, idx, R, C);
        ok = 1;
        for (int64_t i = 0; i < N * C; i++) ok &= d2[i] == 2.0f * g[i];
        CHECK(ok, "%s: scatter_add twice is not exactly twice", name);
        free(d2);
        free(xd);
        free(g);
        free(zero);
        free(ref);
        free(sc);
        free((void *)c.src);
        free((void *)c.dst0);
        free(out);
        free((void *)cg.src);
        free(idx);
    }
    oc_mark(E, OP_gather_rows, f0);
    oc_mark(E, OP_scatter_add_rows, f0);
    oc_mark(E, OP_scatter_rows, f0);
}

typedef struct {
    int64_t T, K, C;
    const int32_t *row_of;
    const float *w, *yperm, *y0, *R;
} comb_case;

static int64_t run_comb_fwd(v3_kctx *ctx, const void *v, float *out) {
    const comb_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "moe_combine_fwd"};
    int64_t TK = c->T * c->K;
    float *y = oc_putf(&b, c->y0, c->T * c->C), *yp = oc_putf(&b, c->yperm, TK * c->C);
    float *w = oc_putf(&b, c->w, TK);
    int32_t *ro = oc_puti(&b, c->row_of, TK);
    v3k(ctx, moe_combine_fwd, y, yp, ro, w, c->T, c->K, c->C);
    oc_get(&b, out, y, (size_t)(c->T * c->C) * 4);
    oc_done(&b);
    return c->T * c->C;
}
static int64_t run_comb_bwd(v3_kctx *ctx, const void *v, float *out) {
    const comb_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "moe_combine_bwd"};
    int64_t TK = c->T * c->K;
    float *dy = oc_putf(&b, c->R, c->T * c->C), *yp = oc_putf(&b, c->yperm, TK * c->C);
    float *w = oc_putf(&b, c->w, TK), *dyp = oc_putf(&b, NULL, TK * c->C);
    float *dw = oc_putf(&b, NULL, TK);
    int32_t *ro = oc_puti(&b, c->row_of, TK);
    v3k(ctx, moe_combine_bwd, dyp, dw, dy, yp, ro, w, c->T, c->K, c->C);
    oc_get(&b, out, dyp, (size_t)(TK * c->C) * 4);
    oc_get(&b, out + TK * c->C, dw, (size_t)TK * 4);
    oc_done(&b);
    return TK * c->C + TK;
}
/* L = <R, Σ_k w·yperm[row_of]> over p = [yperm ; w] */
static double loss_comb(const double *p, const void *v) {
    const comb_case *c = v;
    int64_t TK = c->T * c->K;
    double L = 0;
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t k = 0; k < c->K; k++)
            for (int64_t j = 0; j < c->C; j++)
                L += c->R[t * c->C + j] * p[TK * c->C + t * c->K + k] *
                     p[c->row_of[t * c->K + k] * c->C + j];
    return L;
}

static void test_combine(oc_env *E) {
    int f0 = oc_begin(E);
    static const int64_t cs[][3] = {{1, 1, 3}, {9, 3, 17}, {64, 8, 40}};
    for (int s = 0; s < 3; s++) {
        comb_case c = {cs[s][0], cs[s][1], cs[s][2], NULL, NULL, NULL, NULL, NULL};
        int64_t T = c.T, K = c.K, C = c.C, TK = T * K;
        /* a real dispatch plan for row_of */
        int32_t *idx = make_topk(E, T, K, K + 3, -1, -1), *ro = malloc((size_t)TK * 4);
        int32_t *so = malloc((size_t)TK * 4);
        int64_t counts[16];
        v3k(&E->cpu, moe_plan, idx, T, K, K + 3, counts, ro, so);
        c.row_of = ro;
        c.w = oc_randn(E, TK, 1.0f);
        c.yperm = oc_randn(E, TK * C, 1.0f);
        c.y0 = oc_randn(E, T * C, 1.0f);
        c.R = oc_randn(E, T * C, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "moe_combine T=%lld K=%lld C=%lld", (long long)T,
                 (long long)K, (long long)C);
        float *out = oc_run(E, OP_moe_combine_fwd, name, run_comb_fwd, &c, T * C, DEV_TOL, NULL);
        double *ref = oc_tod(c.y0, T * C);
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < C; j++)
                    ref[t * C + j] += (double)c.w[t * K + k] * c.yperm[ro[t * K + k] * C + j];
        double err = oc_err(out, ref, T * C);
        CHECK(err < 1e-6, "%s fwd: error %.3g", name, err); /* K + 1 fp32 terms */
        /* (c) onto zeros, twice: exactly twice; (f) the last token alone */
        float *y2 = calloc((size_t)(T * C), 4), *y1 = calloc((size_t)(T * C), 4);
        v3k(&E->cpu, moe_combine_fwd, y1, c.yperm, ro, c.w, T, K, C);
        v3k(&E->cpu, moe_combine_fwd, y2, c.yperm, ro, c.w, T, K, C);
        v3k(&E->cpu, moe_combine_fwd, y2, c.yperm, ro, c.w, T, K, C);
        int ok = 1;
        for (int64_t i = 0; i < T * C; i++) ok &= y2[i] == 2.0f * y1[i];
        CHECK(ok, "%s fwd: twice from zero is not exactly twice", name);
        float *yt = calloc((size_t)C, 4);
        v3k(&E->cpu, moe_combine_fwd, yt, c.yperm, ro + (T - 1) * K, c.w + (T - 1) * K, 1, K, C);
        CHECK(memcmp(yt, y1 + (T - 1) * C, (size_t)C * 4) == 0, "%s: last token alone differs", name);
        /* (b) backward against finite differences over yperm and w */
        float *g = oc_run(E, OP_moe_combine_bwd, name, run_comb_bwd, &c, TK * C + TK, DEV_TOL, NULL);
        double *p = malloc((size_t)(TK * C + TK) * 8);
        for (int64_t i = 0; i < TK * C; i++) p[i] = c.yperm[i];
        for (int64_t i = 0; i < TK; i++) p[TK * C + i] = c.w[i];
        double fe = oc_fd(E, loss_comb, &c, p, TK * C + TK, g, FD_H, 300);
        CHECK(fe < FD_TOL, "%s bwd: vs finite differences %.3g", name, fe);
        free(p);
        free(g);
        free(yt);
        free(y1);
        free(y2);
        free(ref);
        free(out);
        free((void *)c.w), free((void *)c.yperm), free((void *)c.y0), free((void *)c.R);
        free(idx), free(ro), free(so);
    }
    oc_mark(E, OP_moe_combine_fwd, f0);
    oc_mark(E, OP_moe_combine_bwd, f0);
}

/* ======================================================================== cross-entropy */

typedef struct {
    int64_t T, V, ld;
    float grad_scale;
    const float *logits;
    const int32_t *targets;
} ce_case;

static int64_t run_ce(v3_kctx *ctx, const void *v, float *out) {
    const ce_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "cross_entropy"};
    float *lg = oc_putf(&b, c->logits, c->T * c->ld), *loss = oc_putf(&b, NULL, c->T);
    int32_t *tg = oc_puti(&b, c->targets, c->T);
    v3k(ctx, cross_entropy, lg, c->ld, loss, tg, c->T, c->V, c->grad_scale);
    oc_get(&b, out, loss, (size_t)c->T * 4);
    oc_get(&b, out + c->T, lg, (size_t)(c->T * c->ld) * 4);
    oc_done(&b);
    return c->T + c->T * c->ld;
}
/* per-row loss in double; L = grad_scale·Σ loss (the quantity whose gradient the op writes) */
static double ref_ce_row(const ce_case *c, const double *x, int64_t t) {
    int32_t y = c->targets[t];
    if (y < 0) return 0;
    double mx = -INFINITY, s = 0;
    for (int64_t v = 0; v < c->V; v++) mx = fmax(mx, x[t * c->ld + v]);
    for (int64_t v = 0; v < c->V; v++) s += exp(x[t * c->ld + v] - mx);
    return mx + log(s) - x[t * c->ld + y];
}
static double loss_ce(const double *x, const void *v) {
    const ce_case *c = v;
    double L = 0;
    for (int64_t t = 0; t < c->T; t++) L += ref_ce_row(c, x, t);
    return c->grad_scale * L;
}

static void test_cross_entropy(oc_env *E) {
    int f0 = oc_begin(E);
    /* {T, V, pad, logit std}: one class; ignored targets; large logits; the real vocabulary */
    static const int64_t cs[][4] = {{1, 1, 0, 1}, {6, 7, 2, 2}, {3, 1000, 0, 20}, {2, 129280, 3, 3}};
    for (int s = 0; s < 4; s++) {
        ce_case c = {.T = cs[s][0], .V = cs[s][1], .ld = cs[s][1] + cs[s][2]};
        int64_t T = c.T, V = c.V, n = T * c.ld;
        c.grad_scale = 1.0f / (float)T;
        c.logits = oc_randn(E, n, (float)cs[s][3]);
        int32_t *tg = malloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++) tg[t] = (int32_t)v3_rng_below(&E->rng, (uint64_t)V);
        if (T >= 6) tg[1] = -1, tg[4] = -100; /* ignored */
        c.targets = tg;
        char name[64];
        snprintf(name, sizeof name, "cross_entropy T=%lld V=%lld", (long long)T, (long long)V);
        int64_t no;
        float *out = oc_run(E, OP_cross_entropy, name, run_ce, &c, T + n, DEV_TOL, &no);
        double *xd = oc_tod(c.logits, n), *ref = malloc((size_t)(T + n) * 8);
        for (int64_t t = 0; t < T; t++) {
            ref[t] = ref_ce_row(&c, xd, t);
            double lse = ref[t] + (tg[t] >= 0 ? xd[t * c.ld + tg[t]] : 0);
            for (int64_t v = 0; v < c.ld; v++) {
                double g = v >= V ? xd[t * c.ld + v] /* padding untouched */
                           : tg[t] < 0 ? 0
                                       : c.grad_scale * (exp(xd[t * c.ld + v] - lse) - (v == tg[t]));
                ref[T + t * c.ld + v] = g;
            }
        }
        /* losses and probabilities through fp32 exponentials, sums in double: ~1e-7 */
        double el = oc_err(out, ref, T), eg = oc_err(out + T, ref + T, n);
        CHECK(el < 1e-6 || fabs(out[0] - ref[0]) < 1e-6, "%s: loss error %.3g", name, el);
        CHECK(eg < 1e-5, "%s: gradient error %.3g", name, eg);
        /* FD on the small vocabularies only: with V = 1000 and std-20 logits almost every
         * gradient is ~1e-12, below the double FD's own noise (~1e-11); there the double
         * reference above is the check. Padding columns: the loss does not depend on them. */
        if (V <= 64) {
            float *an = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) an[i] = i % c.ld < V ? out[T + i] : 0.0f;
            double fe = oc_fd(E, loss_ce, &c, xd, n, an, FD_H, 200);
            free(an);
            CHECK(fe < FD_TOL, "%s: gradient vs finite differences %.3g", name, fe);
        }
        /* (f) the last row alone: same loss and gradient bits */
        ce_case c1 = c;
        c1.T = 1, c1.logits = c.logits + (T - 1) * c.ld, c1.targets = tg + T - 1;
        float *o1 = malloc((size_t)(1 + c.ld) * 4);
        run_ce(&E->cpu, &c1, o1);
        CHECK(o1[0] == out[T - 1] && memcmp(o1 + 1, out + T + (T - 1) * c.ld, (size_t)c.ld * 4) == 0,
              "%s: last row alone differs", name);
        /* grad_scale = 0 leaves the logits untouched */
        c1.grad_scale = 0.0f;
        run_ce(&E->cpu, &c1, o1);
        CHECK(o1[0] == out[T - 1] && memcmp(o1 + 1, c1.logits, (size_t)c.ld * 4) == 0,
              "%s: grad_scale = 0 changed the logits", name);
        free(o1);
        free(ref);
        free(xd);
        free(out);
        free(tg);
        free((void *)c.logits);
    }
    oc_mark(E, OP_cross_entropy, f0);
}

/* ======================================================================== optimiser, reductions */

typedef struct {
    int64_t n;
    int step;
    float lr, b1, b2, eps, wd, gs;
    const float *p, *g, *m, *v;
} adamw_case;

static int64_t run_adamw(v3_kctx *ctx, const void *vc, float *out) {
    const adamw_case *c = vc;
    oc_bufs b = {.ctx = ctx, .what = "adamw"};
    float *p = oc_putf(&b, c->p, c->n), *g = oc_putf(&b, c->g, c->n);
    float *m = oc_putf(&b, c->m, c->n), *v = oc_putf(&b, c->v, c->n);
    float bc1 = (float)(1.0 - pow(c->b1, c->step)), bc2 = (float)(1.0 - pow(c->b2, c->step));
    v3k(ctx, adamw, p, g, m, v, c->n, c->lr, c->b1, c->b2, c->eps, c->wd, bc1, bc2, c->gs);
    oc_get(&b, out, p, (size_t)c->n * 4);
    oc_get(&b, out + c->n, m, (size_t)c->n * 4);
    oc_get(&b, out + 2 * c->n, v, (size_t)c->n * 4);
    oc_done(&b);
    return 3 * c->n;
}

static void test_adamw(oc_env *E) {
    int f0 = oc_begin(E);
    static const int64_t ns[] = {1, 1000, 70001};
    for (int s = 0; s < 3; s++) {
        adamw_case c = {.n = ns[s], .step = s == 0 ? 1 : 7, .lr = 1e-3f, .b1 = 0.9f,
                        .b2 = 0.95f, .eps = 1e-8f, .wd = 0.1f, .gs = 0.5f};
        int64_t n = c.n;
        c.p = oc_randn(E, n, 1.0f);
        c.g = oc_randn(E, n, 1.0f);
        float *m = oc_randn(E, n, 0.1f), *v = oc_randn(E, n, 0.1f);
        for (int64_t i = 0; i < n; i++) v[i] = v[i] * v[i];
        c.m = m, c.v = v;
        char name[64];
        snprintf(name, sizeof name, "adamw n=%lld step=%d", (long long)n, c.step);
        float *out = oc_run(E, OP_adamw, name, run_adamw, &c, 3 * n, DEV_TOL, NULL);
        double *ref = malloc((size_t)(3 * n) * 8), *dref = malloc((size_t)n * 8);
        double bc1 = 1.0 - pow(c.b1, c.step), bc2 = 1.0 - pow(c.b2, c.step);
        for (int64_t i = 0; i < n; i++) {
            double g = (double)c.gs * c.g[i];
            double p = c.p[i] * (1.0 - (double)c.lr * c.wd);
            double mi = c.b1 * (double)c.m[i] + (1.0 - c.b1) * g;
            double vi = c.b2 * (double)c.v[i] + (1.0 - c.b2) * g * g;
            p -= c.lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + c.eps);
            ref[i] = p, ref[n + i] = mi, ref[2 * n + i] = vi;
            dref[i] = p - c.p[i];
        }
        /* m, v: one fp32 rounding per PyTorch operation, a few ulp. p: every element within
         * 2 ulp of the exact result (the decay product and the final add round once each; the
         * update term's own error is ~1e-7 of an update ~1e-3·|p|) plus 1e-4 of its update */
        double ep = oc_err(out + n, ref + n, 2 * n);
        CHECK(ep < 1e-6, "%s: m,v error %.3g", name, ep);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += !(fabs(out[i] - ref[i]) <= ldexp(fabs(ref[i]), -22) + 1e-4 * fabs(dref[i]));
        CHECK(bad == 0, "%s: %lld of %lld parameters off by more than 2 ulp", name,
              (long long)bad, (long long)n);
        free(dref);
        free(ref);
        free(out);
        free((void *)c.p), free((void *)c.g), free(m), free(v);
    }
    oc_mark(E, OP_adamw, f0);
}

typedef struct {
    int op; /* OP_sumsq, OP_scale, OP_axpy, OP_add */
    int64_t n;
    float a;
    const float *x, *y;
} vec_case;

static int64_t run_vec(v3_kctx *ctx, const void *v, float *out) {
    const vec_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = oc_names[c->op]};
    float *x = oc_putf(&b, c->x, c->n), *y = oc_putf(&b, c->y, c->n);
    float *o = oc_putf(&b, NULL, c->n);
    double s = 0;
    int64_t n = c->n;
    switch (c->op) {
    case OP_sumsq: v3k(ctx, sumsq, x, c->n, &s); break;
    case OP_scale: v3k(ctx, scale, x, c->n, c->a); break;
    case OP_axpy: v3k(ctx, axpy, y, x, c->n, c->a); break;
    default: v3k(ctx, add, o, x, y, c->n); break;
    }
    if (c->op == OP_sumsq) { /* the double as three floats: all 53 bits, bitwise comparable */
        out[0] = (float)s;
        out[1] = (float)(s - (double)out[0]);
        out[2] = (float)(s - (double)out[0] - (double)out[1]);
        n = 3;
    } else
        oc_get(&b, out, c->op == OP_scale ? x : c->op == OP_axpy ? y : o, (size_t)n * 4);
    oc_done(&b);
    return n;
}

static void test_vector_ops(oc_env *E) {
    static const int ops[] = {OP_sumsq, OP_scale, OP_axpy, OP_add};
    static const int64_t ns[] = {1, 4095, 4097, 100003};
    for (int o = 0; o < 4; o++) {
        int f0 = oc_begin(E);
        for (int s = 0; s < 4; s++) {
            vec_case c = {ops[o], ns[s], -0.75f, NULL, NULL};
            c.x = oc_randn(E, c.n, 1.0f);
            c.y = oc_randn(E, c.n, 1.0f);
            char name[64];
            snprintf(name, sizeof name, "%s n=%lld", oc_names[c.op], (long long)c.n);
            int64_t n;
            float *out = oc_run(E, c.op, name, run_vec, &c, c.n + 3, DEV_TOL, &n);
            if (c.op == OP_sumsq) {
                double s2 = 0, got = (double)out[0] + out[1] + out[2];
                for (int64_t i = 0; i < c.n; i++) s2 += (double)c.x[i] * c.x[i];
                /* exact double products, another summation order: ~n·1e-16 */
                CHECK(fabs(got - s2) <= 1e-12 * s2, "%s: %.17g vs %.17g", name, got, s2);
            } else {
                /* error relative to the size of the terms (a sum may cancel): one or two fp32
                 * roundings give <= 2^-23 */
                double num = 0, den = 0;
                for (int64_t i = 0; i < c.n; i++) {
                    double ref = c.op == OP_scale  ? (double)c.a * c.x[i]
                                 : c.op == OP_axpy ? c.y[i] + (double)c.a * c.x[i]
                                                   : (double)c.x[i] + c.y[i];
                    double mag = c.op == OP_scale  ? fabs((double)c.a * c.x[i])
                                 : c.op == OP_axpy ? fabs(c.y[i]) + fabs((double)c.a * c.x[i])
                                                   : fabs(c.x[i]) + fabs(c.y[i]);
                    num = fmax(num, fabs(out[i] - ref) / (mag > 1e-30 ? mag : 1e-30));
                    den += isnan(out[i]);
                }
                CHECK(num < 2.4e-7 && den == 0, "%s: error %.3g", name, num);
            }
            free(out);
            free((void *)c.x), free((void *)c.y);
        }
        oc_mark(E, ops[o], f0);
    }
}

typedef struct {
    int64_t ds0, ds1, ss0, ss1, n0, n1, n2, nd, ns;
    int acc;
    const float *src, *dst0;
} c3_case;

static int64_t run_c3(v3_kctx *ctx, const void *v, float *out) {
    const c3_case *c = v;
    oc_bufs b = {.ctx = ctx, .what = "copy_3d"};
    float *d = oc_putf(&b, c->dst0, c->nd), *s = oc_putf(&b, c->src, c->ns);
    v3k(ctx, copy_3d, d, c->ds0, c->ds1, s, c->ss0, c->ss1, c->n0, c->n1, c->n2, c->acc);
    oc_get(&b, out, d, (size_t)c->nd * 4);
    oc_done(&b);
    return c->nd;
}

static void test_copy_3d(oc_env *E) {
    int f0 = oc_begin(E);
    /* {n0, n1, n2, ds0, ds1, ss0, ss1, acc}: padded strides; broadcast source; accumulate;
     * reduction over j (ds1 = 0); a reduction big enough to run in parallel */
    static const int64_t cs[][8] = {{3, 4, 5, 30, 7, 26, 6, 0},  {3, 4, 5, 20, 5, 5, 0, 0},
                                    {2, 3, 4, 12, 4, 13, 4, 1},  {4, 5, 6, 7, 0, 31, 6, 1},
                                    {64, 8, 128, 129, 0, 1024, 128, 1}, {1, 1, 1, 1, 1, 1, 1, 0}};
    for (int s = 0; s < 6; s++) {
        c3_case c = {.n0 = cs[s][0], .n1 = cs[s][1], .n2 = cs[s][2], .ds0 = cs[s][3],
                     .ds1 = cs[s][4], .ss0 = cs[s][5], .ss1 = cs[s][6], .acc = (int)cs[s][7]};
        c.nd = (c.n0 - 1) * c.ds0 + (c.n1 - 1) * c.ds1 + c.n2;
        c.ns = (c.n0 - 1) * c.ss0 + (c.n1 - 1) * c.ss1 + c.n2;
        c.src = oc_randn(E, c.ns, 1.0f);
        c.dst0 = oc_randn(E, c.nd, 1.0f);
        char name[64];
        snprintf(name, sizeof name, "copy_3d case %d", s);
        float *out = oc_run(E, OP_copy_3d, name, run_c3, &c, c.nd, DEV_TOL, NULL);
        double *ref = oc_tod(c.dst0, c.nd);
        for (int64_t i = 0; i < c.n0; i++) {
            if (!c.acc)
                for (int64_t j = 0; j < c.n1; j++)
                    for (int64_t k = 0; k < c.n2; k++) ref[i * c.ds0 + j * c.ds1 + k] = 0;
            for (int64_t j = 0; j < c.n1; j++)
                for (int64_t k = 0; k < c.n2; k++)
                    ref[i * c.ds0 + j * c.ds1 + k] += c.src[i * c.ss0 + j * c.ss1 + k];
        }
        double err = oc_err(out, ref, c.nd);
        CHECK(err < 1e-6, "%s: error %.3g", name, err); /* copies exact; sums of <= 9 terms */
        if (c.acc) { /* (c) twice onto zeros is exactly twice */
            float *d1 = calloc((size_t)c.nd, 4), *d2 = calloc((size_t)c.nd, 4);
            v3k(&E->cpu, copy_3d, d1, c.ds0, c.ds1, c.src, c.ss0, c.ss1, c.n0, c.n1, c.n2, 1);
            v3k(&E->cpu, copy_3d, d2, c.ds0, c.ds1, c.src, c.ss0, c.ss1, c.n0, c.n1, c.n2, 1);
            v3k(&E->cpu, copy_3d, d2, c.ds0, c.ds1, c.src, c.ss0, c.ss1, c.n0, c.n1, c.n2, 1);
            int ok = 1;
            for (int64_t i = 0; i < c.nd; i++) ok &= d2[i] == 2.0f * d1[i];
            CHECK(ok, "%s: accumulating twice is not exactly twice", name);
            free(d1), free(d2);
        }
        free(ref);
        free(out);
        free((void *)c.src), free((void *)c.dst0);
    }
    oc_mark(E, OP_copy_3d, f0);
}

/* ======================================================================== all cases */

static void oc_run_cases(oc_env *E) {
    test_gemm(E);
    test_gemm_strided_batched(E);
    test_gemm_grouped(E);
    test_rmsnorm(E);
    test_rope(E);
    test_attention(E);
    test_swiglu(E);
    test_router(E);
    test_balance(E);
    test_moe_plan(E);
    test_rows(E);
    test_combine(E);
    test_cross_entropy(E);
    test_adamw(E);
    test_vector_ops(E);
    test_copy_3d(E);
}

#endif
