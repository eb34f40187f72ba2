/* bench_gemm.c — the CPU backend's GEMM against OpenBLAS's cblas_sgemm, side by side in one run:
 * speed (GFLOP/s) on model-like shapes, and batch invariance (how many rows of an M-row product
 * differ bitwise from the same row computed alone, M = 1). The second column is why
 * kernels/cpu/cpu_gemm.c does not call OpenBLAS. Usage: bench_gemm [threads] (0 = all). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/kernels.h"

typedef struct { int64_t M, N, K; int tb; const char *what; } shape;

static void run(v3_kctx *ctx, int blas, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                const float *B, float *C) {
    if (blas)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                    (int)K, 1.0f, A, (int)K, B, tb ? (int)K : (int)N, 0.0f, C, (int)N);
    else
        v3k(ctx, gemm, 0, tb, M, N, K, 1.0f, A, K, B, tb ? K : N, 0.0f, C, N);
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 0;
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), nt, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (nt > 0) openblas_set_num_threads(nt);
    static const shape shapes[] = {
        {256, 1024, 1024, 1, "x·Wᵀ, small model"},
        {64, 2048, 7168, 1, "expert up-projection, 64 tokens"},
        {512, 512, 512, 0, "square 512"},
        {300, 64, 64, 0, "tiny K and N"},
    };
    v3_rng r;
    v3_rng_seed(&r, 1);
    printf("%-34s %8s %8s | %14s %14s\n", "shape (M N K)", "ours", "openblas", "rows≠alone ours",
           "rows≠alone blas");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        float *A = malloc(sizeof(float) * sh->M * sh->K), *B = malloc(sizeof(float) * sh->K * sh->N);
        float *C = malloc(sizeof(float) * sh->M * sh->N), *c1 = malloc(sizeof(float) * sh->N);
        for (int64_t i = 0; i < sh->M * sh->K; i++) A[i] = v3_rng_normal(&r);
        for (int64_t i = 0; i < sh->K * sh->N; i++) B[i] = v3_rng_normal(&r);
        double gf[2];
        int64_t diff[2];
        for (int blas = 0; blas < 2; blas++) {
            run(&ctx, blas, sh->tb, sh->M, sh->N, sh->K, A, B, C); /* warm-up */
            int reps = 3;
            double t0 = omp_get_wtime();
            for (int i = 0; i < reps; i++) run(&ctx, blas, sh->tb, sh->M, sh->N, sh->K, A, B, C);
            gf[blas] = 2.0 * sh->M * sh->N * sh->K * reps / (omp_get_wtime() - t0) / 1e9;
            diff[blas] = 0;
            for (int64_t i = 0; i < sh->M; i++) {
                run(&ctx, blas, sh->tb, 1, sh->N, sh->K, A + i * sh->K, B, c1);
                diff[blas] += memcmp(c1, C + i * sh->N, sizeof(float) * sh->N) != 0;
            }
        }
        char label[96];
        snprintf(label, sizeof label, "%s (%lld %lld %lld)", sh->what, (long long)sh->M,
                 (long long)sh->N, (long long)sh->K);
        printf("%-34s %8.1f %8.1f | %8lld/%-5lld %8lld/%-5lld\n", label, gf[0], gf[1],
               (long long)diff[0], (long long)sh->M, (long long)diff[1], (long long)sh->M);
        free(A), free(B), free(C), free(c1);
    }
    printf("GFLOP/s; OpenBLAS core: %s\n", openblas_get_corename());
    v3_kctx_free(&ctx);
    return 0;
}
