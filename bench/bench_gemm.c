/* bench_gemm.c — the CPU backend's GEMMs against OpenBLAS's cblas_sgemm on the shapes the model
 * issues (tiny and small presets), in one run:
 *   - plain gemm: GFLOP/s (wall clock, best of reps, and per core from process CPU time) and batch
 *     invariance (how many sampled rows of the M-row product differ bitwise from the same row
 *     computed alone, M = 1). The invariance column is why kernels/cpu/cpu_gemm.c does not call
 *     OpenBLAS.
 *   - gemm_grouped: the six routed-expert GEMMs of one MoE layer (moe.c: fwd gate_up / down,
 *     bwd d_act, g_down, d_xperm, g_gate_up) with a random routing; OpenBLAS runs one
 *     cblas_sgemm per expert.
 *   - the scalar and AVX2 micro-kernels give the same bits (cpu_gemm_force_scalar), and every
 *     element equals the plain sequential float loop on shapes that take the K-blocked paths.
 * Usage: bench_gemm [threads (0 = all)] [reps] [filter substring]. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/rng.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"

typedef struct { int ta, tb; int64_t M, N, K; const char *what; } shape;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run(v3_kctx *ctx, int blas, const shape *s, int64_t M, const float *A, int64_t lda,
                const float *B, float *C) {
    int64_t ldb = s->tb ? s->K : s->N;
    if (blas)
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, (int)M, (int)s->N, (int)s->K, 1.0f, A,
                    (int)lda, B, (int)ldb, 0.0f, C, (int)s->N);
    else
        v3k(ctx, gemm, s->ta, s->tb, M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
}

/* best wall GFLOP/s and per-core GFLOP/s (flop / process CPU seconds) over reps */
typedef struct { double wall, core; } rate;

/* Each implementation is timed in its own phase (all shapes with ours, then all with OpenBLAS):
 * OpenBLAS's pthreads keep spinning after a call and would steal the cores from the next run. */
typedef struct { rate rt[2]; int64_t diff[2], checked; int same; } plain_res;

static void plain(v3_kctx *ctx, const shape *s, int reps, int blas, plain_res *out) {
    v3_rng rr;
    v3_rng_seed(&rr, 1);
    v3_rng *r = &rr;
    int64_t nA = s->M * s->K, nB = s->K * s->N, lda = s->ta ? s->M : s->K;
    float *A = malloc(sizeof(float) * nA), *B = malloc(sizeof(float) * nB);
    float *C = malloc(sizeof(float) * s->M * s->N), *c1 = malloc(sizeof(float) * s->N);
    for (int64_t i = 0; i < nA; i++) A[i] = v3_rng_normal(r);
    for (int64_t i = 0; i < nB; i++) B[i] = v3_rng_normal(r);
    double flop = 2.0 * s->M * s->N * s->K;
    rate *rt = out->rt;
    int64_t *diff = out->diff, checked = 0;
    {
        run(ctx, blas, s, s->M, A, lda, B, C); /* warm-up */
        rt[blas] = (rate){0, 0};
        for (int i = 0; i < reps; i++) {
            double t0 = omp_get_wtime(), c0 = cpu_now();
            run(ctx, blas, s, s->M, A, lda, B, C);
            double w = omp_get_wtime() - t0, c = cpu_now() - c0;
            if (flop / w / 1e9 > rt[blas].wall) rt[blas].wall = flop / w / 1e9;
            if (flop / c / 1e9 > rt[blas].core) rt[blas].core = flop / c / 1e9;
        }
        /* up to 24 sampled rows, first and last included */
        diff[blas] = 0;
        checked = 0;
        int64_t step = s->M > 24 ? s->M / 23 : 1;
        for (int64_t i = 0; i < s->M; i += step) {
            int64_t row = i + step >= s->M ? s->M - 1 : i;
            const float *Ai = s->ta ? A + row : A + row * lda;
            run(ctx, blas, s, 1, Ai, lda, B, c1);
            diff[blas] += memcmp(c1, C + row * s->N, sizeof(float) * s->N) != 0;
            checked++;
        }
    }
    out->checked = checked;
    if (blas) {
        free(A), free(B), free(C), free(c1);
        return;
    }
    /* scalar micro-kernel: same bits as the AVX2 one (checked on a row window) */
    int64_t Mw = s->M < 40 ? s->M : 40;
    float *C2 = malloc(sizeof(float) * Mw * s->N);
    cpu_gemm_force_scalar(1);
    run(ctx, 0, s, Mw, A, lda, B, C2);
    cpu_gemm_force_scalar(0);
    run(ctx, 0, s, Mw, A, lda, B, C);
    out->same = memcmp(C, C2, sizeof(float) * Mw * s->N) == 0;
    free(A), free(B), free(C), free(c1), free(C2);
}

static void plain_print(const shape *s, const plain_res *o) {
    const rate *rt = o->rt;
    const int64_t *diff = o->diff, checked = o->checked;
    int same = o->same;
    char label[96];
    snprintf(label, sizeof label, "%s %c%c (%lld %lld %lld)", s->what, s->ta ? 'T' : 'N',
             s->tb ? 'T' : 'N', (long long)s->M, (long long)s->N, (long long)s->K);
    printf("%-44s %7.1f %7.1f %8.1f %7.1f | %3lld/%-3lld %3lld/%-3lld | %s\n", label, rt[0].wall,
           rt[0].core, rt[1].wall, rt[1].core, (long long)diff[0], (long long)checked,
           (long long)diff[1], (long long)checked, same ? "same" : "DIFFER");
    fflush(stdout);
}

/* One MoE layer's six expert GEMMs (model/moe.c experts_gemm) for T tokens, E experts of width
 * Ie, hidden C, k experts per token; rows per expert from a random routing. */
static void grouped(v3_kctx *ctx, const char *name, int64_t T, int64_t C, int64_t E, int64_t Ie,
                    int64_t k, int reps, v3_rng *r) {
    int64_t R = T * k, Ie2 = 2 * Ie;
    int64_t *cnt = calloc((size_t)E, sizeof(int64_t));
    for (int64_t t = 0; t < R; t++) cnt[v3_rng_u64(r) % (uint64_t)E]++;
    size_t big = (size_t)(R * (Ie2 > C ? Ie2 : C));
    float *X = malloc(big * 4), *Y = malloc(big * 4), *Z = malloc(big * 4);
    float *W = malloc((size_t)(E * Ie2 * C) * 4), *G = calloc((size_t)(E * Ie2 * C), 4);
    for (size_t i = 0; i < big; i++) X[i] = v3_rng_normal(r), Y[i] = v3_rng_normal(r);
    for (int64_t i = 0; i < E * Ie2 * C; i++) W[i] = v3_rng_normal(r);
    v3_gemm_desc *d = malloc(sizeof(v3_gemm_desc) * (size_t)E);
    static const char *const cname[6] = {"fwd gate_up x·Wᵀ", "fwd down x·Wᵀ", "bwd d_act dy·W",
                                         "bwd g_down dyᵀ·x", "bwd d_xperm dy·W",
                                         "bwd g_gate_up dyᵀ·x"};
    static const int tA[6] = {0, 0, 0, 1, 0, 1}, tB[6] = {1, 1, 0, 0, 0, 0};
    double total[2] = {0, 0}, tflop = 0, best[6][2] = {{0}};
    for (int blas = 0; blas < 2; blas++) /* phases: see plain() */
    for (int which = 0; which < 6; which++) {
        int64_t off = 0;
        double flop = 0;
        for (int64_t e = 0; e < E; e++) {
            int64_t n = cnt[e];
            float *w = W + e * Ie2 * C, *g = G + e * Ie2 * C;
            switch (which) {
            case 0: d[e] = (v3_gemm_desc){n, Ie2, C, X + off * C, w, Z + off * Ie2}; break;
            case 1: d[e] = (v3_gemm_desc){n, C, Ie, X + off * Ie, w, Z + off * C}; break;
            case 2: d[e] = (v3_gemm_desc){n, Ie, C, X + off * C, w, Z + off * Ie}; break;
            case 3: d[e] = (v3_gemm_desc){C, Ie, n, X + off * C, Y + off * Ie, g}; break;
            case 4: d[e] = (v3_gemm_desc){n, C, Ie2, X + off * Ie2, w, Z + off * C}; break;
            case 5: d[e] = (v3_gemm_desc){Ie2, C, n, X + off * Ie2, Y + off * C, g}; break;
            }
            flop += 2.0 * d[e].M * d[e].N * d[e].K;
            off += n;
        }
        float beta = tA[which] ? 1.0f : 0.0f;
        {
            for (int i = 0; i <= reps; i++) { /* i == 0: warm-up */
                double t0 = omp_get_wtime();
                if (blas) {
                    for (int64_t e = 0; e < E; e++) {
                        if (d[e].M == 0 || d[e].N == 0 || d[e].K == 0) continue;
                        cblas_sgemm(CblasRowMajor, tA[which] ? CblasTrans : CblasNoTrans,
                                    tB[which] ? CblasTrans : CblasNoTrans, (int)d[e].M,
                                    (int)d[e].N, (int)d[e].K, 1.0f, d[e].A,
                                    (int)(tA[which] ? d[e].M : d[e].K), d[e].B,
                                    (int)(tB[which] ? d[e].K : d[e].N), beta, d[e].C, (int)d[e].N);
                    }
                } else {
                    v3k(ctx, gemm_grouped, tA[which], tB[which], 1.0f, beta, (int)E, d);
                }
                double w = omp_get_wtime() - t0;
                if (i > 0 && flop / w / 1e9 > best[which][blas]) best[which][blas] = flop / w / 1e9;
            }
            total[blas] += flop / (best[which][blas] * 1e9);
        }
        if (!blas) tflop += flop;
    }
    for (int which = 0; which < 6; which++) {
        char label[96];
        snprintf(label, sizeof label, "%s %s %c%c", name, cname[which], tA[which] ? 'T' : 'N',
                 tB[which] ? 'T' : 'N');
        printf("%-44s %7.1f %8s %7.1f\n", label, best[which][0], "", best[which][1]);
        fflush(stdout);
    }
    printf("%-44s %7.1f %8s %7.1f   (layer: %.1f ms vs %.1f ms)\n", "  all six", tflop / total[0] / 1e9,
           "", tflop / total[1] / 1e9, total[0] * 1e3, total[1] * 1e3);
    free(cnt), free(X), free(Y), free(Z), free(W), free(G), free(d);
}

/* Every element must equal the plain sequential loop acc = 0; acc = fmaf(a, b, acc) (k in order),
 * then alpha*acc + beta*c, bit for bit, on both micro-kernels: checked on shapes that take the
 * K-blocked paths (K > 640, or > 384 with a transposed A), which tests/unit/test_ops.c does not
 * reach. Returns the number of failing shapes. */
static int exact(v3_kctx *ctx) {
    enum { NBASE = 8, NFEW = 3 * 10 };
    static const int base[NBASE][5] = {{1, 0, 100, 70, 1000}, {0, 1, 50, 33, 1500},
                                       {0, 0, 37, 45, 2000},  {1, 1, 13, 29, 700},
                                       {1, 0, 517, 260, 390}, {0, 0, 5, 17, 900},
                                       {0, 1, 1, 1000, 700},  {1, 1, 3, 150, 500}};
    /* the few-row kernels: M = 1..5 (all rows) and 7..11 (a 6-row group and a 1..5-row tail) on
     * NN, NT and TN, K-blocked (K > 640, or > 384 with a transposed A); N = 150 is 9 full strips
     * and a partial one, so a panel mixes in-place and packed strips on NN */
    int cs[NBASE + NFEW][5];
    memcpy(cs, base, sizeof base);
    for (int l = 0; l < 3; l++)
        for (int q = 0; q < 10; q++) {
            int *c = cs[NBASE + l * 10 + q], ta = l == 2, tb = l == 1;
            c[0] = ta, c[1] = tb, c[2] = q < 5 ? q + 1 : q + 2, c[3] = 150, c[4] = ta ? 500 : 1000;
        }
    int bad = 0;
    v3_rng r;
    v3_rng_seed(&r, 7);
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
        int ta = cs[t][0], tb = cs[t][1];
        int64_t M = cs[t][2], N = cs[t][3], K = cs[t][4];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * N * K);
        float *C = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
        for (int64_t i = 0; i < M * K; i++) A[i] = v3_rng_normal(&r);
        for (int64_t i = 0; i < N * K; i++) B[i] = v3_rng_normal(&r);
        for (int64_t i = 0; i < M * N; i++) C[i] = C2[i] = v3_rng_normal(&r);
        float *C0 = malloc(sizeof(float) * M * N);
        memcpy(C0, C, sizeof(float) * M * N);
        v3k(ctx, gemm, ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 0.75f, C, N);
        cpu_gemm_force_scalar(1);
        v3k(ctx, gemm, ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 0.75f, C2, N);
        cpu_gemm_force_scalar(0);
        int64_t wrong = 0, differ = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++) {
                    float a = ta ? A[k * M + i] : A[i * K + k], b = tb ? B[j * K + k] : B[k * N + j];
                    acc = fmaf(a, b, acc);
                }
                float x = 0.5f * acc, y = 0.75f * C0[i * N + j];
                wrong += C[i * N + j] != x + y;
                differ += C[i * N + j] != C2[i * N + j];
            }
        printf("exact %c%c (%lld %lld %lld): %lld elements ≠ sequential loop, %lld scalar ≠ avx2\n",
               ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)M, (long long)N, (long long)K,
               (long long)wrong, (long long)differ);
        bad += wrong || differ;
        free(A), free(B), free(C), free(C2), free(C0);
    }
    return bad;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 0;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *filter = argc > 3 ? argv[3] : "";
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), nt, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (nt > 0) openblas_set_num_threads(nt);
    /* model/loss.c: chunks of 64 tokens through the head (V = 129280); the rest at 512 tokens */
    static const shape shapes[] = {
        {0, 1, 64, 129280, 64, "tiny head fwd"},
        {0, 0, 64, 64, 129280, "tiny head dx"},
        {1, 0, 129280, 64, 64, "tiny head dW"},
        {0, 1, 512, 128, 64, "tiny mlp gate_up"},
        {0, 1, 64, 129280, 512, "small head fwd"},
        {0, 0, 64, 512, 129280, "small head dx"},
        {1, 0, 129280, 512, 64, "small head dW"},
        {0, 1, 512, 768, 192, "small q_b x·Wᵀ"},
        {0, 1, 512, 512, 512, "small o / shared x·Wᵀ"},
        {0, 0, 512, 512, 512, "small dx dy·W"},
        {1, 0, 512, 512, 512, "small dW dyᵀ·x"},
        {0, 1, 512, 3072, 512, "small dense gate_up"},
        {0, 1, 512, 64, 512, "small router"},
        {0, 1, 1, 512, 512, "decode one row"},
        /* decode (one row per sequence; two when MTP's draft is verified) and routed experts */
        {0, 1, 1, 1536, 512, "decode one row"},
        {0, 1, 1, 129280, 512, "decode head one row"},
        {0, 1, 2, 129280, 512, "decode head two rows"},
        {0, 1, 4, 256, 512, "decode expert-like"},
        /* few rows: M < 6 and a 6-row group plus an M mod 6 tail */
#define FEW(ta, tb, what)                                                                          \
    {ta, tb, 1, 512, 512, what}, {ta, tb, 2, 512, 512, what}, {ta, tb, 3, 512, 512, what},         \
        {ta, tb, 4, 512, 512, what}, {ta, tb, 5, 512, 512, what}, {ta, tb, 7, 512, 512, what},     \
        {ta, tb, 8, 512, 512, what}, {ta, tb, 9, 512, 512, what}, {ta, tb, 10, 512, 512, what},    \
        {ta, tb, 11, 512, 512, what}
        FEW(0, 1, "few rows x·Wᵀ"),
        FEW(0, 0, "few rows dy·W"),
        FEW(1, 0, "few rows dyᵀ·x"),
#undef FEW
    };
    v3_rng r;
    v3_rng_seed(&r, 1);
    printf("threads %d, best of %d\n", nt ? nt : omp_get_max_threads(), reps);
    printf("%-44s %7s %7s %8s %7s | %-7s %-7s | %s\n", "plain gemm (M N K)", "ours", "/core",
           "openblas", "/core", "≠alone", "≠alone", "scalar=avx2");
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static plain_res res[NS];
    for (int blas = 0; blas < 2; blas++)
        for (size_t s = 0; s < NS; s++)
            if (strstr(shapes[s].what, filter)) plain(&ctx, &shapes[s], reps, blas, &res[s]);
    for (size_t s = 0; s < NS; s++)
        if (strstr(shapes[s].what, filter)) plain_print(&shapes[s], &res[s]);
    printf("\n%-44s %7s %8s %7s\n", "gemm_grouped (one MoE layer)", "ours", "", "openblas");
    if (strstr("grouped", filter) || !*filter) {
        grouped(&ctx, "tiny 256", 256, 64, 8, 32, 2, reps, &r);
        grouped(&ctx, "small 256", 256, 512, 64, 256, 6, reps, &r);
        grouped(&ctx, "small 2048", 2048, 512, 64, 256, 6, reps, &r);
    }
    printf("GFLOP/s; OpenBLAS core: %s\n\n", openblas_get_corename());
    int bad = exact(&ctx);
    v3_kctx_free(&ctx);
    return bad ? 1 : 0;
}
