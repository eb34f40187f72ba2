/* cpu_gemm.c — fp32 GEMM family (plain, strided-batched, grouped) for the CPU backend.
 *
 * Why not cblas_sgemm: OpenBLAS 0.3.21 is not batch-invariant. Measured on this project's build
 * machine (Zen kernels), row i of C differs in its last bits between M = 1 and M = 300 for ordinary
 * shapes (K = N = 64), because OpenBLAS picks different micro-kernels and K-splits by problem size
 * and thread partition. The rollout engine needs the logprob of a token to be bit-identical whether
 * it was computed alone (decoding) or in a batch (the trainer's recompute), so this file computes
 * every element C[i,j] by ONE fixed sequence: acc = 0; for k = 0..K-1: acc = acc + a(i,k)*b(k,j)
 * (separate multiply and add: the ISO C mode we compile in keeps GCC from contracting them into
 * FMAs; a build that contracts anyway changes the bits, not the invariance, since every row runs
 * the same kernel), then C = alpha*acc (+ beta*C). Tiling, packing, padding rows/columns and
 * threading only decide WHICH thread runs that sequence, never its order, so the result is
 * independent of M, of the row's position, of the thread count and of the vector width.
 * tests/unit/test_ops.c checks this bitwise; bench/bench_gemm.c shows both effects side by side.
 * The price is speed (a few tens of GFLOP/s per core, several times below OpenBLAS); the CPU
 * backend is the reference and the small-model path, the GPU backend is the fast one. */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

enum { MR = 6, NR = 8, NB = 128, MCHUNK = 96 }; /* MCHUNK: a multiple of MR */

/* Panel of op(B) columns [j0, j0+nb) as strips of NR columns: bp[s][k][NR], zero-padded. */
static void pack_b(const float *B, int64_t ldb, int transB, int64_t K, int64_t j0, int64_t nb,
                   float *bp) {
    int64_t ns = (nb + NR - 1) / NR;
    for (int64_t s = 0; s < ns; s++) {
        float *dst = bp + s * K * NR;
        int64_t jw = nb - s * NR < NR ? nb - s * NR : NR;
        for (int64_t k = 0; k < K; k++) {
            float *d = dst + k * NR;
            int64_t jj = 0;
            if (!transB) {
                const float *src = B + k * ldb + j0 + s * NR;
                for (; jj < jw; jj++) d[jj] = src[jj];
            } else {
                const float *src = B + (j0 + s * NR) * ldb + k;
                for (; jj < jw; jj++) d[jj] = src[jj * ldb];
            }
            for (; jj < NR; jj++) d[jj] = 0.0f;
        }
    }
}

/* out[r][j] = Σ_k a_r(k) · bp[k][j], k in increasing order; a_r(k) = ar[r][k*aks].
 * Written out for MR = 6 rows with a local accumulator so that the compiler keeps the 6×8 tile
 * in registers (measured ~3x faster than a generic loop nest). Cloned for AVX2, chosen at load
 * time: wider vectors only, no FMA, so both clones perform the same per-element operations and
 * give the same bits. */
_Static_assert(MR == 6, "ukernel is written out for 6 rows");
__attribute__((target_clones("avx2", "default")))
static void ukernel(int64_t K, const float *const ar[MR], int64_t aks, const float *bp,
                    float out[MR][NR]) {
    float acc[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    for (int64_t k = 0; k < K; k++) {
        const float *b = bp + k * NR;
        int64_t o = k * aks;
        float v0 = a0[o], v1 = a1[o], v2 = a2[o], v3 = a3[o], v4 = a4[o], v5 = a5[o];
#pragma omp simd
        for (int j = 0; j < NR; j++) {
            acc[0][j] += v0 * b[j];
            acc[1][j] += v1 * b[j];
            acc[2][j] += v2 * b[j];
            acc[3][j] += v3 * b[j];
            acc[4][j] += v4 * b[j];
            acc[5][j] += v5 * b[j];
        }
    }
    memcpy(out, acc, sizeof acc);
}

/* Rows [i0, i1) of C against the packed panel of columns [j0, j0+nb). */
static void run_rows(int transA, int64_t i0, int64_t i1, int64_t j0, int64_t nb, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *bp, float beta,
                     float *C, int64_t ldc) {
    int64_t aks = transA ? lda : 1;
    float acc[MR][NR];
    for (int64_t i = i0; i < i1; i += MR) {
        int64_t mr = i1 - i < MR ? i1 - i : MR;
        const float *ar[MR];
        for (int r = 0; r < MR; r++) {
            int64_t row = i + (r < mr ? r : 0); /* missing rows recompute row i: discarded */
            ar[r] = transA ? A + row : A + row * lda;
        }
        for (int64_t s = 0; s * NR < nb; s++) {
            ukernel(K, ar, aks, bp + s * K * NR, acc);
            int64_t jw = nb - s * NR < NR ? nb - s * NR : NR;
            for (int64_t r = 0; r < mr; r++) {
                float *c = C + (i + r) * ldc + j0 + s * NR;
                if (beta == 0.0f)
                    for (int64_t j = 0; j < jw; j++) c[j] = alpha * acc[r][j];
                else
                    for (int64_t j = 0; j < jw; j++) c[j] = alpha * acc[r][j] + beta * c[j];
            }
        }
    }
}

void cpu_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* BLAS semantics: C = beta*C, and beta == 0 ignores C's content */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    int nt = cpu_threads(ctx);
    int64_t n_jb = (N + NB - 1) / NB;
    /* split rows too when there are too few column panels to keep every thread busy */
    int64_t mchunk = n_jb >= 2 * nt ? M : MCHUNK;
    int64_t n_ib = (M + mchunk - 1) / mchunk;
    int64_t n_task = n_jb * n_ib;
    int64_t panel = K * ((NB + NR - 1) / NR) * NR;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (n_task > 1 && M * N * K > 32768)
    {
        float *bp = malloc((size_t)panel * sizeof(float));
        int64_t packed = -1;
        if (!bp) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_task; t++) {
            if (!bp) continue;
            int64_t jb = t / n_ib, ib = t % n_ib;
            int64_t j0 = jb * NB, nb = N - j0 < NB ? N - j0 : NB;
            if (packed != jb) {
                pack_b(B, ldb, transB, K, j0, nb, bp);
                packed = jb;
            }
            int64_t i0 = ib * mchunk, i1 = i0 + mchunk < M ? i0 + mchunk : M;
            run_rows(transA, i0, i1, j0, nb, K, alpha, A, lda, bp, beta, C, ldc);
        }
        free(bp);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "cpu gemm: out of memory for a %lld-float panel",
                         (long long)panel);
}

void cpu_gemm_strided_batched(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N,
                              int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                              const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                              int64_t ldc, int64_t sC, int64_t batch) {
    for (int64_t b = 0; b < batch; b++)
        cpu_gemm(ctx, transA, transB, M, N, K, alpha, A + b * sA, lda, B + b * sB, ldb, beta,
                 C + b * sC, ldc);
}

void cpu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                      const v3_gemm_desc *d) {
    for (int g = 0; g < n; g++) {
        int64_t M = d[g].M, N = d[g].N, K = d[g].K;
        /* natural leading dimensions: the stored row length of each operand */
        cpu_gemm(ctx, transA, transB, M, N, K, alpha, d[g].A, transA ? M : K, d[g].B,
                 transB ? K : N, beta, d[g].C, N);
    }
}
