/* cu_gemm.cu — row-major fp32 GEMMs through cuBLAS (pedantic math, no TF32): single, strided
 * batched and grouped (a loop over the host descriptors).
 *
 * Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLAS is called with the
 * operands swapped and the same transpose flags. cuBLAS treats beta == 0 as "C is not read"
 * (NaN in C is ignored), as the contract requires. K == 0 is done here (C = beta·C), because
 * cuBLAS rejects the leading dimension 0 such a call would carry. */
#include <limits.h>

#include "kernels/cuda/cuda_common.cuh"

/* C[M,N] (row stride ldc) = beta == 0 ? 0 : beta·C */
__global__ void k_scale_c(float *C, int64_t ldc, int64_t M, int64_t N, float beta) {
    CU_GRID_STRIDE(i, M * N) {
        float *c = C + (i / N) * ldc + i % N;
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}

static int fits_int(v3_kctx *ctx, const char *op, int64_t a, int64_t b, int64_t c, int64_t d,
                    int64_t e, int64_t f) {
    int64_t v[6] = {a, b, c, d, e, f};
    for (int i = 0; i < 6; i++)
        if (v[i] < 0 || v[i] > INT_MAX) {
            v3k_fail(ctx, V3_EUNSUPPORTED, "%s: size or leading dimension %lld outside cuBLAS's int",
                     op, (long long)v[i]);
            return 0;
        }
    return 1;
}

static void scale_c(v3_kctx *ctx, float *C, int64_t ldc, int64_t M, int64_t N, float beta) {
    if (beta == 1.0f) return;
    k_scale_c<<<cu_blocks(M * N, 256), 256, 0, cu_stream(ctx)>>>(C, ldc, M, N, beta);
    CU_LAUNCH_CHECK(ctx, "k_scale_c");
}

extern "C" void cu_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(ctx, C, ldc, M, N, beta);
        return;
    }
    if (!fits_int(ctx, "gemm", M, N, K, lda, ldb, ldc)) return;
    CUBLAS_CHECK(ctx, cublasSgemm(cu_state(ctx)->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  transA ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K,
                                  &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)ldc));
}

extern "C" void cu_gemm_strided_batched(v3_kctx *ctx, int transA, int transB, int64_t M,
                                        int64_t N, int64_t K, float alpha, const float *A,
                                        int64_t lda, int64_t sA, const float *B, int64_t ldb,
                                        int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                                        int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {
        for (int64_t b = 0; b < batch; b++) scale_c(ctx, C + b * sC, ldc, M, N, beta);
        return;
    }
    if (!fits_int(ctx, "gemm_strided_batched", M, N, K, lda, ldb, ldc) ||
        !fits_int(ctx, "gemm_strided_batched", batch, 0, 0, 0, 0, 0))
        return;
    CUBLAS_CHECK(ctx, cublasSgemmStridedBatched(
                          cu_state(ctx)->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                          transA ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B,
                          (int)ldb, (long long)sB, A, (int)lda, (long long)sA, &beta, C, (int)ldc,
                          (long long)sC, (int)batch));
}

/* Natural leading dimensions: A is [M,K] ([K,M] when transA), B is [K,N] ([N,K] when transB). */
extern "C" void cu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta,
                                int n, const v3_gemm_desc *descs) {
    for (int i = 0; i < n; i++) {
        const v3_gemm_desc *d = &descs[i];
        if (d->M <= 0 || d->N <= 0) continue;
        cu_gemm(ctx, transA, transB, d->M, d->N, d->K, alpha, d->A, transA ? d->M : d->K, d->B,
                transB ? d->K : d->N, beta, d->C, d->N);
    }
}
