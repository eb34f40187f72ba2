/* cu_lt.cu — the fast GEMMs of the TF32 and BF16 math modes through cuBLASLt, with a cache of
 * matmul plans (descriptors, layouts and the heuristic's first algorithm) keyed by everything
 * that defines a call, so that a shape met again costs no heuristic query and always runs the
 * same algorithm (same bits run to run).
 *
 * Calls here are column-major (cu_gemm.cu maps row-major onto them). BF16 operands arrive
 * already converted (cu_to_bf16_*); C and D are fp32, the compute type is fp32, so products are
 * of bf16 inputs with fp32 accumulation and an fp32 result, and beta·C is added in fp32. */
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

/* fp32 [rows, cols] (row stride ld) of `batch` matrices `stride` apart -> compact bf16 [rows,
 * cols] matrices rows·cols apart. Round to nearest even (__float2bfloat16_rn). */
__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t rows, int64_t cols,
                          int64_t ld, int64_t stride, int64_t batch) {
    int64_t per = rows * cols;
    CU_GRID_STRIDE(i, per * batch) {
        int64_t b = i / per, r = (i % per) / cols, c = i % cols;
        dst[i] = __float2bfloat16_rn(src[b * stride + r * ld + c]);
    }
}

extern "C" void cu_to_bf16(v3_kctx *ctx, __nv_bfloat16 *dst, const float *src, int64_t rows,
                           int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
    int64_t n = rows * cols * batch;
    if (n <= 0) return;
    k_to_bf16<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(dst, src, rows, cols, ld, stride, batch);
    CU_LAUNCH_CHECK(ctx, "k_to_bf16");
}

static int same_key(const cu_lt_key *a, const cu_lt_key *b) { return memcmp(a, b, sizeof *a) == 0; }

static void plan_free(cu_lt_plan *p) {
    if (p->Ad) cublasLtMatrixLayoutDestroy(p->Ad);
    if (p->Bd) cublasLtMatrixLayoutDestroy(p->Bd);
    if (p->Cd) cublasLtMatrixLayoutDestroy(p->Cd);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

extern "C" void cu_lt_free(v3_cuda_state *st) {
    for (int i = 0; i < CU_LT_PLANS; i++) plan_free(&st->plans[i]);
    st->n_plans = 0;
}

static cublasStatus_t layout(cublasLtMatrixLayout_t *d, cudaDataType_t t, int64_t rows,
                             int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
    cublasStatus_t s = cublasLtMatrixLayoutCreate(d, t, (uint64_t)rows, (uint64_t)cols, ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1) return s;
    int32_t nb = (int32_t)batch;
    s = cublasLtMatrixLayoutSetAttribute(*d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    return cublasLtMatrixLayoutSetAttribute(*d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &stride, sizeof stride);
}

/* Builds the plan of k (descriptors + the heuristic's first algorithm); 0 on success. */
static int plan_make(v3_kctx *ctx, cu_lt_plan *p, const cu_lt_key *k) {
    v3_cuda_state *st = cu_state(ctx);
    memset(p, 0, sizeof *p);
    p->key = *k;
    const int bf16 = k->math == V3_MATH_BF16;
    const cudaDataType_t ab = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    cublasOperation_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (CUBLAS_CHECK(ctx, cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F))) goto fail;
    if (CUBLAS_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
        CUBLAS_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)))
        goto fail;
    /* stored shapes (column-major): A is m×k (k×m when transposed), B is k×n (n×k), C is m×n */
    if (CUBLAS_CHECK(ctx, layout(&p->Ad, ab, k->ta ? k->k : k->m, k->ta ? k->m : k->k, k->lda, k->sa, k->batch)) ||
        CUBLAS_CHECK(ctx, layout(&p->Bd, ab, k->tb ? k->n : k->k, k->tb ? k->k : k->n, k->ldb, k->sb, k->batch)) ||
        CUBLAS_CHECK(ctx, layout(&p->Cd, CUDA_R_32F, k->m, k->n, k->ldc, k->sc, k->batch)))
        goto fail;
    {
        cublasLtMatmulPreference_t pref = NULL;
        if (CUBLAS_CHECK(ctx, cublasLtMatmulPreferenceCreate(&pref))) goto fail;
        uint64_t ws = st->workspace_bytes;
        cublasLtMatmulHeuristicResult_t r;
        int got = 0;
        cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
        if (s == CUBLAS_STATUS_SUCCESS)
            s = cublasLtMatmulAlgoGetHeuristic(st->lt, p->op, p->Ad, p->Bd, p->Cd, p->Cd, pref, 1,
                                               &r, &got);
        cublasLtMatmulPreferenceDestroy(pref);
        if (CUBLAS_CHECK(ctx, s)) goto fail;
        if (got < 1) {
            v3k_fail(ctx, V3_EUNSUPPORTED,
                     "cuBLASLt has no %s algorithm for m=%lld n=%lld k=%lld (batch %lld)",
                     v3_math_name(k->math), (long long)k->m, (long long)k->n, (long long)k->k,
                     (long long)k->batch);
            goto fail;
        }
        p->algo = r.algo;
    }
    return 0;
fail:
    plan_free(p);
    return 1;
}

/* The cached plan of k, made on a miss; slots are reused round robin once the cache is full. */
static cu_lt_plan *plan_get(v3_kctx *ctx, const cu_lt_key *k) {
    v3_cuda_state *st = cu_state(ctx);
    for (int i = 0; i < st->n_plans; i++)
        if (same_key(&st->plans[i].key, k)) return &st->plans[i];
    int slot;
    if (st->n_plans < CU_LT_PLANS) {
        slot = st->n_plans++;
    } else {
        slot = st->next_evict;
        st->next_evict = (st->next_evict + 1) % CU_LT_PLANS;
        plan_free(&st->plans[slot]);
    }
    if (plan_make(ctx, &st->plans[slot], k)) {
        /* keep the cache dense: move the last plan into the failed slot */
        if (slot == st->n_plans - 1) st->n_plans--;
        return NULL;
    }
    return &st->plans[slot];
}

extern "C" void cu_lt_matmul(v3_kctx *ctx, const cu_lt_key *k, float alpha, const void *A,
                             const void *B, float beta, float *C) {
    v3_cuda_state *st = cu_state(ctx);
    cu_lt_plan *p = plan_get(ctx, k);
    if (!p) return;
    CUBLAS_CHECK(ctx, cublasLtMatmul(st->lt, p->op, &alpha, A, p->Ad, B, p->Bd, &beta, C, p->Cd,
                                     C, p->Cd, &p->algo, st->workspace, st->workspace_bytes,
                                     st->stream));
}
