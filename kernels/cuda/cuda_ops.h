/* cuda_ops.h — the CUDA backend's numeric ops and device state, with C linkage, so that the
 * backend table (cuda_table.c, plain C) and cuda_backend.cu can name them. Every op follows the
 * contract of its member in kernels.h exactly; pointers are device memory unless kernels.h marks
 * them (host). Failures are recorded in ctx (v3k_fail, V3_EDEVICE / V3_ERANGE), never fatal. */
#ifndef V3_CUDA_OPS_H
#define V3_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* inside the C-linkage block, so C++ callers link to the C backend functions (v3k_fail, ...)
 * whether or not kernels.h has guards of its own */
#include "kernels/kernels.h"

/* Device state in ctx->impl: device 0, a stream, cuBLAS (pedantic fp32: no TF32) and cuBLASLt
 * handles, a fixed cuBLAS workspace, pinned staging, device scratch and the bad-input flags.
 * Fails with V3_EDEVICE and "no CUDA device: ..." when none is usable. */
int v3_cuda_state_init(v3_kctx *ctx, v3_err *err);
void v3_cuda_state_free(v3_kctx *ctx); /* accepts ctx->impl == NULL */
/* Reads back (synchronously) and clears the bad-input flags that asynchronous ops set on the
 * device, recording an error in ctx for each. Call from the backend's sync. Returns the bits. */
int v3_cuda_state_check(v3_kctx *ctx);
/* Sets every numeric op of the table (memory ops and lifetime are left as they are). */
void v3_cuda_fill_table(v3_backend *be);

void cu_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
             int64_t ldc);
void cu_gemm_strided_batched(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N,
                             int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                             const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                             int64_t ldc, int64_t sC, int64_t batch);
void cu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                     const v3_gemm_desc *descs);

void cu_rmsnorm_fwd(v3_kctx *ctx, float *out, int64_t ldo, float *rstd, const float *x,
                    int64_t ldx, const float *w, int64_t T, int64_t C, float eps);
void cu_rmsnorm_bwd(v3_kctx *ctx, float *dx, int64_t lddx, float *dw, const float *dout,
                    int64_t ldd, const float *x, int64_t ldx, const float *w, const float *rstd,
                    int64_t T, int64_t C, int accumulate);
void cu_rope_fwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                 int64_t d_rope, const int32_t *pos, const float *inv_freq);
void cu_rope_bwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                 int64_t d_rope, const int32_t *pos, const float *inv_freq);

void cu_attention_fwd(v3_kctx *ctx, const v3_attn_params *p);
void cu_attention_bwd(v3_kctx *ctx, const v3_attn_params *p);
/* The tensor-core (bf16 WMMA) attention of the BF16 math mode (cu_attention_tc.cu), called by
 * the two above: 1 when it took the call (failures recorded in ctx), 0 when the shape or device
 * is outside it (head dims > 256, before sm_80, shared memory) and the fp32 kernels must run. */
int cu_attention_tc_fwd(v3_kctx *ctx, const v3_attn_params *p);
int cu_attention_tc_bwd(v3_kctx *ctx, const v3_attn_params *p);

void cu_swiglu_fwd(v3_kctx *ctx, float *out, const float *in, int64_t ld_in, int64_t u_off,
                   int64_t rows, int64_t cols);
void cu_swiglu_bwd(v3_kctx *ctx, float *din, const float *dout, const float *in, int64_t ld_in,
                   int64_t u_off, int64_t rows, int64_t cols);

void cu_router_fwd(v3_kctx *ctx, const v3_router_params *p);
void cu_router_bwd(v3_kctx *ctx, const v3_router_params *p);
void cu_router_balance(v3_kctx *ctx, const v3_balance_params *p);

void cu_moe_plan(v3_kctx *ctx, const int32_t *topk_idx, int64_t T, int64_t K, int64_t E,
                 int64_t *counts, int32_t *row_of, int32_t *src_of);
void cu_scatter_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                     int64_t C);
void cu_gather_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                    int64_t C);
void cu_scatter_add_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                         int64_t C);
void cu_moe_combine_fwd(v3_kctx *ctx, float *y, const float *yperm, const int32_t *row_of,
                        const float *w, int64_t T, int64_t K, int64_t C);
void cu_moe_combine_bwd(v3_kctx *ctx, float *dyperm, float *dw, const float *dy,
                        const float *yperm, const int32_t *row_of, const float *w, int64_t T,
                        int64_t K, int64_t C);

void cu_cross_entropy(v3_kctx *ctx, float *logits, int64_t ld, float *loss,
                      const int32_t *targets, int64_t T, int64_t V, float grad_scale);

void cu_adamw(v3_kctx *ctx, float *p, const float *grad, float *m, float *v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2,
              float grad_scale);
void cu_sumsq(v3_kctx *ctx, const float *x, int64_t n, double *out);
void cu_scale(v3_kctx *ctx, float *x, int64_t n, float s);
void cu_axpy(v3_kctx *ctx, float *y, const float *x, int64_t n, float a);
void cu_add(v3_kctx *ctx, float *out, const float *a, const float *b, int64_t n);
void cu_copy_3d(v3_kctx *ctx, float *dst, int64_t ds0, int64_t ds1, const float *src, int64_t ss0,
                int64_t ss1, int64_t n0, int64_t n1, int64_t n2, int accumulate);

#ifdef __cplusplus
}
#endif

#endif
