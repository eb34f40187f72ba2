/* gemm_ab.c — two builds of kernels/cpu/cpu_gemm.c in one process, their calls alternated.
 *
 * Why: on a shared VM the speed of anything cache-bound changes from one second to the next (a
 * 512³ product: 40 or 80 GFLOP/s for runs of several calls), so two builds timed in separate
 * processes, or one after the other, compare the machine's moods more than the code. Here build A
 * and build B (the same file from two revisions, compiled with their global symbols renamed a_* /
 * b_* by bench/gemm_ab.sh) run on the same operands in alternated pairs, A first in even pairs and
 * B first in odd ones; each pair gives a time ratio under the same conditions, and the median and
 * quartiles of those ratios are the result. Identical code measured this way gives ratios of
 * 0.96-1.04: differences inside that band are not evidence.
 *
 * Usage: gemm_ab plain TA TB M N K PAIRS     (one gemm, C = A·B, beta 0)
 *        gemm_ab moe WHICH TOKENS PAIRS      (one of a small-preset MoE layer's six grouped
 *                                             GEMMs, as model/moe.c issues them: E = 64 experts,
 *                                             hidden 512, expert width 256, 6 experts per token,
 *                                             a fixed pseudo-random routing)
 * Threads: V3_THREADS (default 1). Also prints how many output elements differ bitwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/kernels.h"

typedef void gemm_fn(v3_kctx *, int, int, int64_t, int64_t, int64_t, float, const float *,
                     int64_t, const float *, int64_t, float, float *, int64_t);
typedef void grouped_fn(v3_kctx *, int, int, float, float, int, const v3_gemm_desc *);
gemm_fn a_gemm, b_gemm;
grouped_fn a_gemm_grouped, b_gemm_grouped;

/* one case: runs build `b` (0 = A, 1 = B) once */
typedef struct ab_case {
    v3_kctx *ctx;
    int plain, ta, tb;
    int64_t M, N, K;
    const float *A, *B;
    float *C[2];
    int n_desc;
    const v3_gemm_desc *desc[2];
    float beta;
} ab_case;

static void run(const ab_case *c, int b) {
    if (c->plain) {
        int64_t lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
        (b ? b_gemm : a_gemm)(c->ctx, c->ta, c->tb, c->M, c->N, c->K, 1.0f, c->A, lda, c->B, ldb,
                              0.0f, c->C[b], c->N);
    } else {
        (b ? b_gemm_grouped : a_gemm_grouped)(c->ctx, c->ta, c->tb, 1.0f, c->beta, c->n_desc,
                                              c->desc[b]);
    }
}

/* 2 MiB-aligned and advised as huge pages, like the CPU backend's large buffers */
static float *alloc_f(size_t n) {
    size_t bytes = (n * sizeof(float) + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, bytes)) {
        fprintf(stderr, "gemm_ab: out of memory\n");
        exit(1);
    }
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void fill(float *x, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)rand_r(seed) / RAND_MAX - 0.5f;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* alternated pairs; prints GFLOP/s medians of each build and the median/quartiles of tA/tB */
static void measure(const ab_case *c, double flop, int pairs, const char *label, int64_t differ) {
    double *ga = malloc(sizeof(double) * pairs), *gb = malloc(sizeof(double) * pairs);
    double *ratio = malloc(sizeof(double) * pairs);
    for (int r = 0; r < pairs; r++) {
        int first = r & 1;
        double t0 = now();
        run(c, first);
        double t1 = now();
        run(c, !first);
        double t2 = now();
        double ta = first ? t2 - t1 : t1 - t0, tb = first ? t1 - t0 : t2 - t1;
        ga[r] = flop / ta / 1e9, gb[r] = flop / tb / 1e9, ratio[r] = ta / tb;
    }
    qsort(ga, pairs, sizeof(double), cmp_d);
    qsort(gb, pairs, sizeof(double), cmp_d);
    qsort(ratio, pairs, sizeof(double), cmp_d);
    printf("%-28s A %6.1f  B %6.1f GFLOP/s (medians)  tA/tB %.3f [%.3f, %.3f]  %lld elements "
           "differ\n",
           label, ga[pairs / 2], gb[pairs / 2], ratio[pairs / 2], ratio[pairs / 4],
           ratio[3 * pairs / 4], (long long)differ);
    free(ga), free(gb), free(ratio);
}

static int64_t count_differ(const float *x, const float *y, size_t n) {
    int64_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&x[i], &y[i], sizeof(float)) != 0;
    return d;
}

static int plain_case(v3_kctx *ctx, char **v) {
    ab_case c = {ctx, 1, atoi(v[0]), atoi(v[1]), atoll(v[2]), atoll(v[3]), atoll(v[4])};
    int pairs = atoi(v[5]);
    unsigned seed = 1;
    float *A = alloc_f((size_t)(c.M * c.K)), *B = alloc_f((size_t)(c.K * c.N));
    fill(A, (size_t)(c.M * c.K), &seed), fill(B, (size_t)(c.K * c.N), &seed);
    c.A = A, c.B = B;
    c.C[0] = alloc_f((size_t)(c.M * c.N)), c.C[1] = alloc_f((size_t)(c.M * c.N));
    run(&c, 0), run(&c, 1); /* warm-up, and the outputs to compare */
    char label[64];
    snprintf(label, sizeof label, "%c%c %lld %lld %lld", c.ta ? 'T' : 'N', c.tb ? 'T' : 'N',
             (long long)c.M, (long long)c.N, (long long)c.K);
    measure(&c, 2.0 * c.M * c.N * c.K, pairs, label,
            count_differ(c.C[0], c.C[1], (size_t)(c.M * c.N)));
    free(A), free(B), free(c.C[0]), free(c.C[1]);
    return 0;
}

static int moe_case(v3_kctx *ctx, char **v) {
    enum { E = 64, C = 512, Ie = 256, Ie2 = 2 * Ie, TOPK = 6 };
    static const char *const name[6] = {"fwd gate_up NT", "fwd down NT", "bwd d_act NN",
                                        "bwd g_down TN",  "bwd d_xperm NN", "bwd g_gate_up TN"};
    static const int tA[6] = {0, 0, 0, 1, 0, 1}, tB[6] = {1, 1, 0, 0, 0, 0};
    int which = atoi(v[0]), pairs = atoi(v[2]);
    int64_t T = atoll(v[1]), R = T * TOPK, cnt[E] = {0};
    if (which < 0 || which > 5 || T < 1) {
        fprintf(stderr, "gemm_ab moe: WHICH is 0..5, TOKENS >= 1\n");
        return 2;
    }
    unsigned seed = 1;
    for (int64_t i = 0; i < R; i++) cnt[rand_r(&seed) % E]++;
    size_t rows = (size_t)R * Ie2, wn = (size_t)E * Ie2 * C;
    float *X = alloc_f(rows), *Y = alloc_f(rows), *W = alloc_f(wn);
    float *out[2] = {alloc_f(tA[which] ? wn : rows), alloc_f(tA[which] ? wn : rows)};
    fill(X, rows, &seed), fill(Y, rows, &seed), fill(W, wn, &seed);
    memset(out[0], 0, sizeof(float) * (tA[which] ? wn : rows));
    memset(out[1], 0, sizeof(float) * (tA[which] ? wn : rows));
    v3_gemm_desc d[2][E];
    double flop = 0;
    for (int b = 0; b < 2; b++) {
        int64_t off = 0;
        for (int e = 0; e < E; e++) {
            int64_t n = cnt[e];
            const float *w = W + (size_t)e * Ie2 * C;
            float *g = out[b] + (size_t)e * Ie2 * C, *z = out[b];
            switch (which) {
            case 0: d[b][e] = (v3_gemm_desc){n, Ie2, C, X + off * C, w, z + off * Ie2}; break;
            case 1: d[b][e] = (v3_gemm_desc){n, C, Ie, X + off * Ie, w, z + off * C}; break;
            case 2: d[b][e] = (v3_gemm_desc){n, Ie, C, X + off * C, w, z + off * Ie}; break;
            case 3: d[b][e] = (v3_gemm_desc){C, Ie, n, X + off * C, Y + off * Ie, g}; break;
            case 4: d[b][e] = (v3_gemm_desc){n, C, Ie2, X + off * Ie2, w, z + off * C}; break;
            case 5: d[b][e] = (v3_gemm_desc){Ie2, C, n, X + off * Ie2, Y + off * C, g}; break;
            }
            if (b == 0) flop += 2.0 * d[b][e].M * d[b][e].N * d[b][e].K;
            off += n;
        }
    }
    /* the weight gradients accumulate (beta 1), as in the model */
    ab_case c = {ctx, 0, tA[which], tB[which], 0, 0, 0, NULL, NULL, {out[0], out[1]}, E,
                 {d[0], d[1]}, tA[which] ? 1.0f : 0.0f};
    run(&c, 0), run(&c, 1);
    int64_t differ = count_differ(out[0], out[1], tA[which] ? wn : rows);
    char label[64];
    snprintf(label, sizeof label, "moe %s T=%lld", name[which], (long long)T);
    measure(&c, flop, pairs, label, differ);
    free(X), free(Y), free(W), free(out[0]), free(out[1]);
    return 0;
}

int main(int argc, char **argv) {
    int plain = argc == 8 && !strcmp(argv[1], "plain"), moe = argc == 5 && !strcmp(argv[1], "moe");
    if (!plain && !moe) {
        fprintf(stderr, "usage: gemm_ab plain TA TB M N K PAIRS\n"
                        "       gemm_ab moe WHICH TOKENS PAIRS\n");
        return 2;
    }
    const char *th = getenv("V3_THREADS");
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), th ? atoi(th) : 1, &err)) {
        fprintf(stderr, "gemm_ab: %s\n", err.msg);
        return 1;
    }
    int rc = plain ? plain_case(&ctx, argv + 2) : moe_case(&ctx, argv + 2);
    v3_kctx_free(&ctx);
    return rc;
}
