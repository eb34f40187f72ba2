/* cuda_common.cuh — what every CUDA op file shares: the device state kept in ctx->impl, the
 * checks that turn a failed CUDA/cuBLAS call or launch into a sticky context error (statement,
 * file and line; never exit), launch-size helpers and deterministic warp/block reductions.
 *
 * Determinism: no numeric result of kernels/cuda uses atomics (only the bad-input flag does).
 * Every reduction is done by one thread in index order or by a fixed tree (warp butterflies,
 * shared-memory halving), so a result does not change from run to run. */
#ifndef V3_CUDA_COMMON_CUH
#define V3_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "kernels/kernels.h"
}
#include "kernels/cuda/cuda_ops.h"

/* A cuBLASLt call (column-major, cu_lt.cu): what makes two calls share a plan. */
typedef struct cu_lt_key {
    int math;                 /* V3_MATH_TF32 or V3_MATH_BF16 */
    int ta, tb;               /* transposes of A and B */
    int64_t m, n, k, lda, ldb, ldc;
    int64_t sa, sb, sc, batch; /* strided batch (batch 1: strides unused, keep 0) */
} cu_lt_key;

typedef struct cu_lt_plan {
    cu_lt_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t Ad, Bd, Cd;
    cublasLtMatmulAlgo_t algo;
} cu_lt_plan;

enum { CU_LT_PLANS = 256 }; /* a model step meets a few dozen shapes per math mode */

/* Device state, owned by ctx->impl (created by v3_cuda_state_init). */
typedef struct v3_cuda_state {
    int device;
    cudaStream_t stream;       /* every op of this context runs on it, in call order */
    cublasHandle_t blas;       /* pedantic fp32 math: no TF32 */
    cublasHandle_t blas_fast;  /* default math: the grouped GEMMs of the TF32/BF16 modes */
    cublasLtHandle_t lt;       /* for the later bf16/fp8 GEMMs */
    void *workspace;           /* cuBLAS workspace (fixed, so cuBLAS picks the same algorithms) */
    size_t workspace_bytes;
    void *pinned;              /* host staging for the small host outputs (counts, loss, sums) */
    size_t pinned_bytes;
    void *scratch;             /* device scratch of the ops, grown on demand, never shrunk */
    size_t scratch_bytes;
    int *flags;                /* device: bad-input flags of asynchronous ops (CU_FLAG_*) */
    cu_lt_plan plans[CU_LT_PLANS]; /* cuBLASLt plans of the fast math modes (cu_lt.cu) */
    int n_plans, next_evict;
    int grouped_bf16;          /* cublasGemmGroupedBatchedEx takes bf16 x bf16 -> fp32:
                                * 0 untried, 1 yes, -1 no (then one cuBLASLt call per problem) */
} v3_cuda_state;

/* Bits of v3_cuda_state.flags: an op that finds invalid input on the device (index out of range)
 * skips that element and sets its bit; v3_cuda_state_check() turns the bits into an error. */
enum {
    CU_FLAG_ATTN_WINDOW = 1,   /* attention: kv window outside [0, Tk) */
    CU_FLAG_CE_TARGET = 2,     /* cross_entropy: target >= V (treated as ignored) */
    CU_FLAG_SCATTER_IDX = 4,   /* scatter_add_rows: negative index (row skipped) */
    CU_FLAG_GATHER_IDX = 8,    /* gather_rows: negative index (row zeroed) */
};

static inline v3_cuda_state *cu_state(v3_kctx *ctx) { return (v3_cuda_state *)ctx->impl; }
static inline cudaStream_t cu_stream(v3_kctx *ctx) { return cu_state(ctx)->stream; }

/* Record a CUDA/cuBLAS failure; return non-zero when it failed so callers write
 * `if (CU_CHECK(ctx, cudaMemsetAsync(...))) return;`. */
int cu_check_(v3_kctx *ctx, cudaError_t e, const char *stmt, const char *file, int line);
int cublas_check_(v3_kctx *ctx, cublasStatus_t s, const char *stmt, const char *file, int line);
#define CU_CHECK(ctx, stmt) cu_check_((ctx), (stmt), #stmt, __FILE__, __LINE__)
#define CUBLAS_CHECK(ctx, stmt) cublas_check_((ctx), (stmt), #stmt, __FILE__, __LINE__)
/* After every kernel launch: catches bad configurations and earlier asynchronous faults. */
#define CU_LAUNCH_CHECK(ctx, name) cu_check_((ctx), cudaGetLastError(), "launch " name, __FILE__, __LINE__)

/* Device scratch of at least `bytes` (256-byte aligned), valid until the next cu_scratch call;
 * NULL (error recorded) on failure. Growing synchronises the stream. */
void *cu_scratch(v3_kctx *ctx, size_t bytes);
/* Host staging buffer (pinned when possible) for copying small results back. */
void *cu_pinned(v3_kctx *ctx, size_t bytes);

/* fp32 -> compact bf16 (cu_lt.cu); cuBLASLt matmul of a cached plan; free the plans. */
extern "C" void cu_to_bf16(v3_kctx *ctx, __nv_bfloat16 *dst, const float *src, int64_t rows,
                           int64_t cols, int64_t ld, int64_t stride, int64_t batch);
extern "C" void cu_lt_matmul(v3_kctx *ctx, const cu_lt_key *k, float alpha, const void *A,
                             const void *B, float beta, float *C);
extern "C" void cu_lt_free(v3_cuda_state *st);

/* Work sizes: the op ABI is int64; kernels index with int64 throughout. */
static inline unsigned cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 2147483647) b = 2147483647; /* grid-stride loops cover the rest */
    return (unsigned)b;
}
#define CU_GRID_STRIDE(i, n)                                                                \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);               \
         i += (int64_t)gridDim.x * blockDim.x)

/* Warp sums by an xor butterfly: every lane ends with the same bits (each step adds the same two
 * values, and fp addition is commutative). */
__device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double cu_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum/max for blockDim.x == CU_RED_THREADS (a power of two); fixed tree; every thread
 * gets the result. `sh` holds CU_RED_THREADS values. */
#define CU_RED_THREADS 256
__device__ __forceinline__ double cu_block_sum_d(double v, double *sh) {
    int t = threadIdx.x;
    __syncthreads(); /* sh may still be read from a previous reduction */
    sh[t] = v;
    __syncthreads();
    for (int s = CU_RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    return sh[0];
}
__device__ __forceinline__ float cu_block_max(float v, float *sh) {
    int t = threadIdx.x;
    __syncthreads();
    sh[t] = v;
    __syncthreads();
    for (int s = CU_RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] = fmaxf(sh[t], sh[t + s]);
        __syncthreads();
    }
    return sh[0];
}

/* Device flags (bad input found on the device). The one atomic of kernels/cuda: an OR, whose
 * result does not depend on the order of the writers. */
__device__ __forceinline__ void cu_flag(int *flags, int bit) { atomicOr(flags, bit); }

#endif
