/* bench_membw.c — the memory read rate a decode step can hope for: a plain sequential sum over a
 * buffer the size of the `small` preset's lm_head (129,280 × 512 fp32, 265 MB: far beyond the
 * caches), each thread over its contiguous share, alternated with the CPU backend's GEMV (one row
 * of A) over the same bytes read as a packed copy (pack_nt, registered in the context's wpacks),
 * so that both see the same machine state; and the GEMV over a bf16 copy of a bf16 matrix of the
 * same shape (half the bytes: the rate is counted in the fp32 bytes it stands for).
 *
 *   bench_membw [THREADS (2)] [ROUNDS (20)]
 *
 * Prints the median and best GB/s of each over the rounds. A batch-1 decode step reads each
 * weight once, so tokens/s × bytes per token cannot exceed the first figure. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

enum { N = 129280, K = 512, MAXR = 200 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#if defined(__x86_64__)
#include <immintrin.h>
/* eight independent vector sums (the adds never wait on each other): two cache lines per step */
__attribute__((target("avx2"))) static float sum_share(const float *p, int64_t n) {
    __m256 s[8];
    for (int j = 0; j < 8; j++) s[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i + 64 <= n; i += 64)
        for (int j = 0; j < 8; j++) s[j] = _mm256_add_ps(s[j], _mm256_loadu_ps(p + i + 8 * j));
    for (int j = 1; j < 8; j++) s[0] = _mm256_add_ps(s[0], s[j]);
    float o[8];
    _mm256_storeu_ps(o, s[0]);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
#else
static float sum_share(const float *p, int64_t n) {
    float s[8] = {0};
    for (int64_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += p[i + j];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}
#endif

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 20;
    if (threads < 1 || rounds < 1 || rounds > MAXR) {
        fprintf(stderr, "usage: bench_membw [THREADS] [ROUNDS <= %d]\n", MAXR);
        return 2;
    }
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), threads, &err)) {
        fprintf(stderr, "bench_membw: %s\n", err.msg);
        return 1;
    }
    size_t n = (size_t)N * K;
    float *w = ctx.be->alloc(&ctx, n * sizeof(float)), *x = ctx.be->alloc(&ctx, K * sizeof(float));
    float *y = ctx.be->alloc(&ctx, N * sizeof(float));
    if (!w || !x || !y) {
        fprintf(stderr, "bench_membw: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i += 997) w[i] = 1.0f; /* touch every page */
    for (int k = 0; k < K; k++) x[k] = 1.0f;
    /* the GEMV reads w as a packed copy of some [N, K] matrix `dummy` (its values do not matter
     * here); and a bf16 copy of an all-ones matrix, in wb */
    static const float dummy[1];
    void *wb = ctx.be->alloc(&ctx, V3_PACKED_NT_BYTES(N, K, 0));
    float *ones = ctx.be->alloc(&ctx, n * sizeof(float));
    if (!wb || !ones) {
        fprintf(stderr, "bench_membw: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
    int isb = ctx.be->pack_nt(&ctx, wb, ones, K, N, K, 1);
    ctx.be->free(&ctx, ones);
    v3_wpack e32 = {dummy, N, K, w, 0}, e16 = {dummy, N, K, wb, isb};
    v3_wpacks p32 = {&e32, 1}, p16 = {&e16, 1};
    double t_sum[MAXR], t_gemv[MAXR], t_gemv16[MAXR];
    volatile float sink = 0;
    for (int r = 0; r < rounds; r++) {
        double t = now_s();
        float s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
        {
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t share = (int64_t)n / nt / 64 * 64, lo = id * share;
            s += sum_share(w + lo, id == nt - 1 ? (int64_t)n - lo : share);
        }
        t_sum[r] = now_s() - t;
        sink += s;
        t = now_s();
        ctx.wpacks = &p32;
        ctx.be->gemm(&ctx, 0, 1, 1, N, K, 1.0f, x, K, dummy, K, 0.0f, y, N);
        t_gemv[r] = now_s() - t;
        sink += y[0];
        t = now_s();
        ctx.wpacks = &p16;
        ctx.be->gemm(&ctx, 0, 1, 1, N, K, 1.0f, x, K, dummy, K, 0.0f, y, N);
        t_gemv16[r] = now_s() - t;
        ctx.wpacks = NULL;
        sink += y[0];
    }
    qsort(t_sum, (size_t)rounds, sizeof(double), cmp);
    qsort(t_gemv, (size_t)rounds, sizeof(double), cmp);
    qsort(t_gemv16, (size_t)rounds, sizeof(double), cmp);
    double gb = (double)n * sizeof(float) / 1e9;
    printf("%d thread(s), %d rounds, %.0f MB per pass\n", threads, rounds, gb * 1e3);
    printf("sequential sum        median %5.1f GB/s  best %5.1f GB/s\n", gb / t_sum[rounds / 2], gb / t_sum[0]);
    printf("packed GEMV (1 row)   median %5.1f GB/s  best %5.1f GB/s\n", gb / t_gemv[rounds / 2], gb / t_gemv[0]);
    printf("bf16 copy (%s)   median %5.1f GB/s  best %5.1f GB/s  (fp32-equivalent)\n",
           isb ? "1 row" : "NOT bf16", gb / t_gemv16[rounds / 2], gb / t_gemv16[0]);
    ctx.be->free(&ctx, wb);
    ctx.be->free(&ctx, w);
    ctx.be->free(&ctx, x);
    ctx.be->free(&ctx, y);
    v3_kctx_free(&ctx);
    return 0;
}
