/* cpu_internal.h — declarations shared by the files of the CPU backend (not a public header).
 * Every op here is fp32, OpenMP-parallel over independent outputs only: each output element is
 * produced by exactly one thread with a fixed operation order, which is what makes results
 * independent of the thread count and of how a batch was composed. */
#ifndef V3_CPU_INTERNAL_H
#define V3_CPU_INTERNAL_H

#include <omp.h>

#include "../kernels.h"

/* Threads for an OpenMP region: ctx->n_threads, or all cores when 0. */
static inline int cpu_threads(const v3_kctx *ctx) {
    return ctx->n_threads > 0 ? ctx->n_threads : omp_get_max_threads();
}

/* cpu_gemm.c */
void cpu_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);
void cpu_gemm_strided_batched(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N,
                              int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                              const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                              int64_t ldc, int64_t sC, int64_t batch);
void cpu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                      const v3_gemm_desc *descs);
/* Benches and tests only: 1 = use the portable micro-kernel even where AVX2 is available (both
 * give the same bits; this is how that is checked), 0 = choose by the CPU (the default). */
void cpu_gemm_force_scalar(int on);
int cpu_pack_nt(v3_kctx *ctx, void *Bp, const float *B, int64_t ldb, int64_t N, int64_t K,
                int bf16);

/* cpu_norm.c */
void cpu_rmsnorm_fwd(v3_kctx *ctx, float *out, int64_t ldo, float *rstd, const float *x,
                     int64_t ldx, const float *w, int64_t T, int64_t C, float eps);
void cpu_rmsnorm_bwd(v3_kctx *ctx, float *dx, int64_t lddx, float *dw, const float *dout,
                     int64_t ldd, const float *x, int64_t ldx, const float *w, const float *rstd,
                     int64_t T, int64_t C, int accumulate);
void cpu_rope_fwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                  int64_t d_rope, const int32_t *pos, const float *inv_freq);
void cpu_rope_bwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                  int64_t d_rope, const int32_t *pos, const float *inv_freq);

/* cpu_attention.c */
void cpu_attention_fwd(v3_kctx *ctx, const v3_attn_params *p);
void cpu_attention_bwd(v3_kctx *ctx, const v3_attn_params *p);

/* cpu_ffn.c */
void cpu_swiglu_fwd(v3_kctx *ctx, float *out, const float *in, int64_t ld_in, int64_t u_off,
                    int64_t rows, int64_t cols);
void cpu_swiglu_bwd(v3_kctx *ctx, float *din, const float *dout, const float *in, int64_t ld_in,
                    int64_t u_off, int64_t rows, int64_t cols);

/* cpu_router.c */
void cpu_router_fwd(v3_kctx *ctx, const v3_router_params *p);
void cpu_router_bwd(v3_kctx *ctx, const v3_router_params *p);
void cpu_router_balance(v3_kctx *ctx, const v3_balance_params *p);

/* cpu_moe.c */
void cpu_moe_plan(v3_kctx *ctx, const int32_t *topk_idx, int64_t T, int64_t K, int64_t E,
                  int64_t *counts, int32_t *row_of, int32_t *src_of);
void cpu_scatter_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                      int64_t C);
void cpu_gather_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                     int64_t C);
void cpu_scatter_add_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                          int64_t R, int64_t C);
void cpu_moe_combine_fwd(v3_kctx *ctx, float *y, const float *yperm, const int32_t *row_of,
                         const float *w, int64_t T, int64_t K, int64_t C);
void cpu_moe_combine_bwd(v3_kctx *ctx, float *dyperm, float *dw, const float *dy,
                         const float *yperm, const int32_t *row_of, const float *w, int64_t T,
                         int64_t K, int64_t C);

/* cpu_loss.c */
void cpu_cross_entropy(v3_kctx *ctx, float *logits, int64_t ld, float *loss,
                       const int32_t *targets, int64_t T, int64_t V, float grad_scale);

/* cpu_elementwise.c */
void cpu_adamw(v3_kctx *ctx, float *p, const float *grad, float *m, float *v, int64_t n, float lr,
               float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2,
               float grad_scale);
void cpu_sumsq(v3_kctx *ctx, const float *x, int64_t n, double *out);
void cpu_scale(v3_kctx *ctx, float *x, int64_t n, float s);
void cpu_axpy(v3_kctx *ctx, float *y, const float *x, int64_t n, float a);
void cpu_add(v3_kctx *ctx, float *out, const float *a, const float *b, int64_t n);
void cpu_copy_3d(v3_kctx *ctx, float *dst, int64_t ds0, int64_t ds1, const float *src, int64_t ss0,
                 int64_t ss1, int64_t n0, int64_t n1, int64_t n2, int accumulate);

#endif
