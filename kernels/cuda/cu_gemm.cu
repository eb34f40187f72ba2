/* cu_gemm.cu — row-major GEMMs of the op table: single, strided batched and grouped.
 *
 * FP32 mode (the exact reference): cuBLAS in pedantic math (no TF32), grouped = one call per
 * problem. TF32 and BF16 modes: cuBLASLt through cached plans (cu_lt.cu) and one
 * cublasGemmGroupedBatchedEx call for a grouped GEMM; in BF16 both operands are first rounded to
 * compact bf16 copies in the device scratch (storage stays fp32: activations, gradients and
 * master weights; the copies live for one call), accumulation and C are fp32.
 *
 * Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLAS is called with the
 * operands swapped and the same transpose flags. cuBLAS treats beta == 0 as "C is not read"
 * (NaN in C is ignored), as the contract requires. K == 0 is done here (C = beta·C), because
 * cuBLAS rejects the leading dimension 0 such a call would carry. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

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

/* Stored shape of op(X) = [r, c] (X row-major with leading dimension ld). */
static void stored(int trans, int64_t r, int64_t c, int64_t *rows, int64_t *cols) {
    *rows = trans ? c : r;
    *cols = trans ? r : c;
}

static inline size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* The cuBLASLt key of a row-major call (operands swapped into column-major, see the top). */
static cu_lt_key lt_key(int math, int transA, int transB, int64_t M, int64_t N, int64_t K,
                        int64_t lda, int64_t ldb, int64_t ldc) {
    cu_lt_key k;
    memset(&k, 0, sizeof k); /* the key is compared bytewise: no stray padding bits */
    k.math = math;
    k.ta = transB;
    k.tb = transA;
    k.m = N;
    k.n = M;
    k.k = K;
    k.lda = ldb;
    k.ldb = lda;
    k.ldc = ldc;
    k.batch = 1;
    return k;
}

/* TF32/BF16 single or strided-batched GEMM through cuBLASLt (row-major arguments). */
static void fast_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                      int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                      int64_t batch) {
    const void *a = A, *b = B;
    if (ctx->math == V3_MATH_BF16) {
        int64_t ar, ac, br, bc;
        stored(transA, M, K, &ar, &ac);
        stored(transB, K, N, &br, &bc);
        size_t na = align256((size_t)(ar * ac * batch) * 2), nb = (size_t)(br * bc * batch) * 2;
        char *sc = (char *)cu_scratch(ctx, na + nb);
        if (!sc) return;
        __nv_bfloat16 *a16 = (__nv_bfloat16 *)sc, *b16 = (__nv_bfloat16 *)(sc + na);
        cu_to_bf16(ctx, a16, A, ar, ac, lda, sA, batch);
        cu_to_bf16(ctx, b16, B, br, bc, ldb, sB, batch);
        a = a16;
        b = b16;
        lda = ac;
        ldb = bc;
        sA = ar * ac;
        sB = br * bc;
    }
    cu_lt_key k = lt_key(ctx->math, transA, transB, M, N, K, lda, ldb, ldc);
    k.batch = batch;
    if (batch > 1) {
        k.sa = sB;
        k.sb = sA;
        k.sc = sC;
    }
    cu_lt_matmul(ctx, &k, alpha, b, a, beta, C);
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
    if (ctx->math != V3_MATH_FP32) {
        fast_gemm(ctx, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
        return;
    }
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
    if (ctx->math != V3_MATH_FP32) {
        fast_gemm(ctx, transA, transB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC,
                  batch);
        return;
    }
    CUBLAS_CHECK(ctx, cublasSgemmStridedBatched(
                          cu_state(ctx)->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                          transA ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B,
                          (int)ldb, (long long)sB, A, (int)lda, (long long)sA, &beta, C, (int)ldc,
                          (long long)sC, (int)batch));
}

/* Natural leading dimensions: A is [M,K] ([K,M] when transA), B is [K,N] ([N,K] when transB). */
static void grouped_loop(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                         const v3_gemm_desc *descs) {
    for (int i = 0; i < n; i++) {
        const v3_gemm_desc *d = &descs[i];
        if (d->M <= 0 || d->N <= 0) continue;
        cu_gemm(ctx, transA, transB, d->M, d->N, d->K, alpha, d->A, transA ? d->M : d->K, d->B,
                transB ? d->K : d->N, beta, d->C, d->N);
    }
}

/* The problems of a grouped call that cuBLAS gets (M, N, K > 0), with host arrays in
 * cublasGemmGroupedBatchedEx's column-major terms (operands swapped, one problem per group). */
typedef struct grouped_args {
    void *block; /* one allocation holds every array below */
    int n;
    cublasOperation_t *ta, *tb;
    int *m, *nn, *k, *lda, *ldb, *ldc, *size;
    float *alpha, *beta;
    const void **A, **B; /* column-major A = our B, B = our A (device pointers) */
    void **C;
} grouped_args;

static int grouped_args_init(grouped_args *g, int cap) {
    memset(g, 0, sizeof *g);
    size_t bytes = (size_t)cap * (3 * sizeof(void *) + 2 * sizeof(cublasOperation_t) +
                                  7 * sizeof(int) + 2 * sizeof(float));
    char *p = (char *)malloc(bytes ? bytes : 1);
    if (!p) return 1;
    g->block = p;
    g->A = (const void **)p; p += cap * sizeof(void *);
    g->B = (const void **)p; p += cap * sizeof(void *);
    g->C = (void **)p; p += cap * sizeof(void *);
    g->ta = (cublasOperation_t *)p; p += cap * sizeof(cublasOperation_t);
    g->tb = (cublasOperation_t *)p; p += cap * sizeof(cublasOperation_t);
    int *ints = (int *)p; p += 7 * (size_t)cap * sizeof(int);
    g->m = ints; g->nn = ints + cap; g->k = ints + 2 * cap; g->lda = ints + 3 * cap;
    g->ldb = ints + 4 * cap; g->ldc = ints + 5 * cap; g->size = ints + 6 * cap;
    g->alpha = (float *)p; g->beta = g->alpha + cap;
    return 0;
}

static void grouped_args_free(grouped_args *g) {
    free(g->block);
    memset(g, 0, sizeof *g);
}

/* The problems of g as separate cuBLASLt calls (operands already converted). */
static void each_lt(v3_kctx *ctx, const grouped_args *g, int transA, int transB, float alpha,
                    float beta) {
    for (int j = 0; j < g->n; j++) { /* g holds column-major terms: M = nn, N = m */
        cu_lt_key k = lt_key(ctx->math, transA, transB, g->nn[j], g->m[j], g->k[j], g->ldb[j],
                             g->lda[j], g->ldc[j]);
        cu_lt_matmul(ctx, &k, alpha, g->A[j], g->B[j], beta, (float *)g->C[j]);
    }
}

/* TF32/BF16: one cublasGemmGroupedBatchedEx for every problem (BF16: operands converted into the
 * scratch first). When cuBLAS does not take bf16 x bf16 -> fp32 grouped, each problem runs as
 * its own cuBLASLt call on the converted operands (remembered in the state). */
static void grouped_fast(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                         const v3_gemm_desc *descs) {
    v3_cuda_state *st = cu_state(ctx);
    const int bf16 = ctx->math == V3_MATH_BF16;
    grouped_args g;
    if (grouped_args_init(&g, n)) {
        v3k_fail(ctx, V3_ENOMEM, "gemm_grouped: out of host memory for %d problems", n);
        return;
    }
    size_t conv = 0; /* bytes of the bf16 copies */
    for (int i = 0; i < n; i++) {
        const v3_gemm_desc *d = &descs[i];
        if (d->M <= 0 || d->N <= 0) continue;
        if (d->K <= 0) {
            scale_c(ctx, d->C, d->N, d->M, d->N, beta);
            continue;
        }
        if (!fits_int(ctx, "gemm_grouped", d->M, d->N, d->K, 0, 0, 0)) goto done;
        int j = g.n++;
        g.ta[j] = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
        g.tb[j] = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
        g.m[j] = (int)d->N;
        g.nn[j] = (int)d->M;
        g.k[j] = (int)d->K;
        g.lda[j] = (int)(transB ? d->K : d->N);
        g.ldb[j] = (int)(transA ? d->M : d->K);
        g.ldc[j] = (int)d->N;
        g.size[j] = 1;
        g.alpha[j] = alpha;
        g.beta[j] = beta;
        g.A[j] = d->B;
        g.B[j] = d->A;
        g.C[j] = d->C;
        if (bf16) conv += align256((size_t)(d->M * d->K) * 2) + align256((size_t)(d->K * d->N) * 2);
    }
    if (g.n == 0) goto done;
    {
        size_t ptrs = align256(3 * (size_t)g.n * sizeof(void *));
        char *sc = (char *)cu_scratch(ctx, ptrs + conv);
        if (!sc) goto done;
        if (bf16) { /* convert every operand; natural leading dimensions make them compact */
            char *q = sc + ptrs;
            for (int j = 0; j < g.n; j++) {
                int64_t M = g.nn[j], N = g.m[j], K = g.k[j];
                __nv_bfloat16 *a16 = (__nv_bfloat16 *)q;
                q += align256((size_t)(M * K) * 2);
                __nv_bfloat16 *b16 = (__nv_bfloat16 *)q;
                q += align256((size_t)(K * N) * 2);
                cu_to_bf16(ctx, a16, (const float *)g.B[j], 1, M * K, M * K, 0, 1);
                cu_to_bf16(ctx, b16, (const float *)g.A[j], 1, K * N, K * N, 0, 1);
                g.B[j] = a16;
                g.A[j] = b16;
            }
        }
        if (bf16 && st->grouped_bf16 < 0) { /* known unsupported: one plan per problem */
            each_lt(ctx, &g, transA, transB, alpha, beta);
            goto done;
        }
        /* the pointer arrays live on the device; a copy from pageable memory returns once the
         * source has been staged, so the host arrays can be freed right after */
        void **dp = (void **)sc;
        if (CU_CHECK(ctx, cudaMemcpyAsync(dp, g.A, (size_t)g.n * sizeof(void *), cudaMemcpyHostToDevice, st->stream)) ||
            CU_CHECK(ctx, cudaMemcpyAsync(dp + g.n, g.B, (size_t)g.n * sizeof(void *), cudaMemcpyHostToDevice, st->stream)) ||
            CU_CHECK(ctx, cudaMemcpyAsync(dp + 2 * g.n, g.C, (size_t)g.n * sizeof(void *), cudaMemcpyHostToDevice, st->stream)))
            goto done;
        const cudaDataType_t ab = bf16 ? CUDA_R_16BF : CUDA_R_32F;
        const cublasComputeType_t ct = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
        cublasStatus_t s = cublasGemmGroupedBatchedEx(
            st->blas_fast, g.ta, g.tb, g.m, g.nn, g.k, g.alpha, (const void *const *)dp, ab,
            g.lda, (const void *const *)(dp + g.n), ab, g.ldb, g.beta, (void *const *)(dp + 2 * g.n),
            CUDA_R_32F, g.ldc, g.n, g.size, ct);
        if (bf16 && st->grouped_bf16 == 0 &&
            (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE)) {
            st->grouped_bf16 = -1; /* the converted operands are still in the scratch: redo */
            each_lt(ctx, &g, transA, transB, alpha, beta);
            goto done;
        }
        if (!CUBLAS_CHECK(ctx, s) && bf16) st->grouped_bf16 = 1;
    }
done:
    grouped_args_free(&g);
}

extern "C" void cu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta,
                                int n, const v3_gemm_desc *descs) {
    if (n <= 0) return;
    if (ctx->math == V3_MATH_FP32)
        grouped_loop(ctx, transA, transB, alpha, beta, n, descs);
    else
        grouped_fast(ctx, transA, transB, alpha, beta, n, descs);
}
