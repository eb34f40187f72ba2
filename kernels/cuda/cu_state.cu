/* cu_state.cu — the CUDA device state of a context (stream, cuBLAS/cuBLASLt handles, workspace,
 * staging and scratch buffers, bad-input flags) and the error checks every op uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

enum { CU_WORKSPACE_BYTES = 32 << 20, CU_PINNED_BYTES = 1 << 20 };

int cu_check_(v3_kctx *ctx, cudaError_t e, const char *stmt, const char *file, int line) {
    if (e == cudaSuccess) return 0;
    v3k_fail(ctx, V3_EDEVICE, "%s:%d: %s: %s (%s)", file, line, stmt, cudaGetErrorString(e),
             cudaGetErrorName(e));
    return 1;
}

int cublas_check_(v3_kctx *ctx, cublasStatus_t s, const char *stmt, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    v3k_fail(ctx, V3_EDEVICE, "%s:%d: %s: cuBLAS status %d (%s)", file, line, stmt, (int)s,
             cublasGetStatusString(s));
    return 1;
}

void *cu_scratch(v3_kctx *ctx, size_t bytes) {
    v3_cuda_state *st = cu_state(ctx);
    if (bytes <= st->scratch_bytes && st->scratch) return st->scratch;
    size_t want = st->scratch_bytes * 2 > bytes ? st->scratch_bytes * 2 : bytes;
    want = (want + 255) & ~(size_t)255;
    /* the old buffer may still be read by queued kernels */
    if (CU_CHECK(ctx, cudaStreamSynchronize(st->stream))) return NULL;
    if (st->scratch) cudaFree(st->scratch);
    st->scratch = NULL;
    st->scratch_bytes = 0;
    if (CU_CHECK(ctx, cudaMalloc(&st->scratch, want))) {
        st->scratch = NULL;
        return NULL;
    }
    st->scratch_bytes = want;
    return st->scratch;
}

void *cu_pinned(v3_kctx *ctx, size_t bytes) {
    v3_cuda_state *st = cu_state(ctx);
    if (bytes <= st->pinned_bytes && st->pinned) return st->pinned;
    if (CU_CHECK(ctx, cudaStreamSynchronize(st->stream))) return NULL;
    if (st->pinned) cudaFreeHost(st->pinned);
    st->pinned = NULL;
    st->pinned_bytes = 0;
    if (CU_CHECK(ctx, cudaMallocHost(&st->pinned, bytes))) {
        st->pinned = NULL;
        return NULL;
    }
    st->pinned_bytes = bytes;
    return st->pinned;
}

/* Creation in dependency order; any failure unwinds through v3_cuda_state_free. */
extern "C" int v3_cuda_state_init(v3_kctx *ctx, v3_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return v3_errf(err, V3_EDEVICE, "no CUDA device: cudaGetDeviceCount failed: %s (%s)",
                       cudaGetErrorString(e), cudaGetErrorName(e));
    if (n < 1) return v3_errf(err, V3_EDEVICE, "no CUDA device: cudaGetDeviceCount reports 0");
    v3_cuda_state *st = (v3_cuda_state *)calloc(1, sizeof *st);
    if (!st) return v3_errf(err, V3_ENOMEM, "cuda state: out of memory");
    ctx->impl = st;
    const char *what = NULL;
    cudaError_t ce = cudaSuccess;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
#define STEP_CU(stmt) do { if ((ce = (stmt)) != cudaSuccess) { what = #stmt; goto fail_cu; } } while (0)
#define STEP_BLAS(stmt) do { if ((bs = (stmt)) != CUBLAS_STATUS_SUCCESS) { what = #stmt; goto fail_blas; } } while (0)
    st->device = 0;
    STEP_CU(cudaSetDevice(st->device));
    STEP_CU(cudaStreamCreate(&st->stream)); /* blocking: ordered with legacy-stream memcpys */
    STEP_CU(cudaMalloc(&st->workspace, CU_WORKSPACE_BYTES));
    st->workspace_bytes = CU_WORKSPACE_BYTES;
    STEP_CU(cudaMallocHost(&st->pinned, CU_PINNED_BYTES));
    st->pinned_bytes = CU_PINNED_BYTES;
    STEP_CU(cudaMalloc((void **)&st->flags, sizeof(int)));
    STEP_CU(cudaMemset(st->flags, 0, sizeof(int)));
    STEP_BLAS(cublasCreate(&st->blas));
    STEP_BLAS(cublasSetStream(st->blas, st->stream));
    /* the fp32 reference mode: no TF32 or other reduced-precision shortcuts */
    STEP_BLAS(cublasSetMathMode(st->blas, CUBLAS_PEDANTIC_MATH));
    /* a fixed user workspace makes cuBLAS's choice of algorithm (and so its bits) reproducible */
    STEP_BLAS(cublasSetWorkspace(st->blas, st->workspace, st->workspace_bytes));
    STEP_BLAS(cublasCreate(&st->blas_fast));
    STEP_BLAS(cublasSetStream(st->blas_fast, st->stream));
    STEP_BLAS(cublasSetWorkspace(st->blas_fast, st->workspace, st->workspace_bytes));
    STEP_BLAS(cublasLtCreate(&st->lt));
#undef STEP_CU
#undef STEP_BLAS
    return V3_OK;
fail_cu:
    v3_errf(err, V3_EDEVICE, "cuda state: %s: %s (%s)", what, cudaGetErrorString(ce),
            cudaGetErrorName(ce));
    v3_cuda_state_free(ctx);
    return V3_EDEVICE;
fail_blas:
    v3_errf(err, V3_EDEVICE, "cuda state: %s: cuBLAS status %d (%s)", what, (int)bs,
            cublasGetStatusString(bs));
    v3_cuda_state_free(ctx);
    return V3_EDEVICE;
}

extern "C" void v3_cuda_state_free(v3_kctx *ctx) {
    if (!ctx || !ctx->impl) return;
    v3_cuda_state *st = cu_state(ctx);
    if (st->stream) cudaStreamSynchronize(st->stream);
    cu_lt_free(st);
    if (st->lt) cublasLtDestroy(st->lt);
    if (st->blas) cublasDestroy(st->blas);
    if (st->blas_fast) cublasDestroy(st->blas_fast);
    if (st->flags) cudaFree(st->flags);
    if (st->scratch) cudaFree(st->scratch);
    if (st->pinned) cudaFreeHost(st->pinned);
    if (st->workspace) cudaFree(st->workspace);
    if (st->stream) cudaStreamDestroy(st->stream);
    free(st);
    ctx->impl = NULL;
}

extern "C" int v3_cuda_state_check(v3_kctx *ctx) {
    v3_cuda_state *st = cu_state(ctx);
    if (!st || !st->flags) return 0;
    int bits = 0;
    if (CU_CHECK(ctx, cudaMemcpyAsync(&bits, st->flags, sizeof bits, cudaMemcpyDeviceToHost,
                                      st->stream)))
        return 0;
    if (CU_CHECK(ctx, cudaStreamSynchronize(st->stream))) return 0;
    if (!bits) return 0;
    if (CU_CHECK(ctx, cudaMemsetAsync(st->flags, 0, sizeof(int), st->stream))) return bits;
    if (bits & CU_FLAG_ATTN_WINDOW)
        v3k_fail(ctx, V3_ERANGE, "attention: a query's key window is outside [0, Tk) (query skipped)");
    if (bits & CU_FLAG_CE_TARGET)
        v3k_fail(ctx, V3_ERANGE, "cross_entropy: a target is >= V (row ignored)");
    if (bits & CU_FLAG_SCATTER_IDX)
        v3k_fail(ctx, V3_ERANGE, "scatter_rows/scatter_add_rows: a negative row index (row skipped)");
    if (bits & CU_FLAG_GATHER_IDX)
        v3k_fail(ctx, V3_ERANGE, "gather_rows: a negative row index (row zeroed)");
    return bits;
}
