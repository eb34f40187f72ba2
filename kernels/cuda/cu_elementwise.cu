/* cu_elementwise.cu — AdamW, the squared-norm reduction and the small vector ops (scale, axpy,
 * add, strided 3-D copy) in fp32.
 *
 * AdamW and the vector ops spell out each rounding (__fmul_rn, __fadd_rn, ...) in the CPU
 * backend's order, so nvcc's FMA contraction cannot change them: on the same inputs they give
 * the CPU's bits. sumsq uses fixed blocks and fixed trees: reproducible, not thread-count bound. */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"

/* Torch's single-tensor AdamW (see cpu_elementwise.c for the derivation of each scalar):
 * p·(1 − lr·wd); m.lerp_(g, 1 − b1) (two-sided lerp); v·b2 + (1 − b2)·g·g;
 * p + (−lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps). */
__global__ void k_adamw(float *p, const float *grad, float *m, float *v, int64_t n, float decay,
                        float w1, float beta2, float w2, float step, float bc2s, float eps,
                        float grad_scale) {
    CU_GRID_STRIDE(i, n) {
        float g = __fmul_rn(grad_scale, grad[i]);
        float pi = __fmul_rn(p[i], decay);
        float mi = m[i];
        mi = w1 < 0.5f ? __fadd_rn(mi, __fmul_rn(w1, __fsub_rn(g, mi)))
                       : __fsub_rn(g, __fmul_rn(__fsub_rn(g, mi), __fsub_rn(1.0f, w1)));
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(w2, g), g));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
        p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(step, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void cu_adamw(v3_kctx *ctx, float *p, const float *grad, float *m, float *v, int64_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         float bc1, float bc2, float grad_scale) {
    if (n <= 0) return;
    /* scalars as Python floats (double), rounded to fp32 once: as torch and the CPU backend */
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float w1 = (float)(1.0 - (double)beta1);
    float w2 = (float)(1.0 - (double)beta2);
    float step = (float)(-(double)lr / (double)bc1);
    float bc2s = (float)sqrt((double)bc2);
    k_adamw<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(p, grad, m, v, n, decay, w1, beta2, w2,
                                                           step, bc2s, eps, grad_scale);
    CU_LAUNCH_CHECK(ctx, "k_adamw");
}

enum { SS_BLOCK = 4096 }; /* elements per first-stage block */

__global__ void __launch_bounds__(CU_RED_THREADS) k_sumsq_part(double *part, const float *x, int64_t n) {
    __shared__ double sh[CU_RED_THREADS];
    int64_t i0 = (int64_t)blockIdx.x * SS_BLOCK, i1 = i0 + SS_BLOCK < n ? i0 + SS_BLOCK : n;
    double s = 0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)x[i] * x[i];
    s = cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(CU_RED_THREADS) k_sumsq_final(double *out, const double *part, int64_t nb) {
    __shared__ double sh[CU_RED_THREADS];
    double s = 0;
    for (int64_t b = threadIdx.x; b < nb; b += blockDim.x) s += part[b];
    s = cu_block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = s;
}

extern "C" void cu_sumsq(v3_kctx *ctx, const float *x, int64_t n, double *out) {
    *out = 0;
    if (n <= 0) return;
    int64_t nb = (n + SS_BLOCK - 1) / SS_BLOCK;
    if (nb > 2147483647) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "sumsq: n = %lld", (long long)n);
        return;
    }
    cudaStream_t st = cu_stream(ctx);
    double *part = (double *)cu_scratch(ctx, (size_t)(nb + 1) * sizeof(double));
    double *h = (double *)cu_pinned(ctx, sizeof(double));
    if (!part || !h) return;
    k_sumsq_part<<<(unsigned)nb, CU_RED_THREADS, 0, st>>>(part + 1, x, n);
    if (CU_LAUNCH_CHECK(ctx, "k_sumsq_part")) return;
    k_sumsq_final<<<1, CU_RED_THREADS, 0, st>>>(part, part + 1, nb);
    if (CU_LAUNCH_CHECK(ctx, "k_sumsq_final")) return;
    if (CU_CHECK(ctx, cudaMemcpyAsync(h, part, sizeof(double), cudaMemcpyDeviceToHost, st))) return;
    if (CU_CHECK(ctx, cudaStreamSynchronize(st))) return;
    *out = *h;
}

__global__ void k_scale(float *x, int64_t n, float s) {
    CU_GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], s);
}
__global__ void k_axpy(float *y, const float *x, int64_t n, float a) {
    CU_GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}
__global__ void k_add(float *out, const float *a, const float *b, int64_t n) {
    CU_GRID_STRIDE(i, n) out[i] = __fadd_rn(a[i], b[i]);
}

extern "C" void cu_scale(v3_kctx *ctx, float *x, int64_t n, float s) {
    if (n <= 0) return;
    k_scale<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(x, n, s);
    CU_LAUNCH_CHECK(ctx, "k_scale");
}
extern "C" void cu_axpy(v3_kctx *ctx, float *y, const float *x, int64_t n, float a) {
    if (n <= 0) return;
    k_axpy<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(y, x, n, a);
    CU_LAUNCH_CHECK(ctx, "k_axpy");
}
extern "C" void cu_add(v3_kctx *ctx, float *out, const float *a, const float *b, int64_t n) {
    if (n <= 0) return;
    k_add<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(out, a, b, n);
    CU_LAUNCH_CHECK(ctx, "k_add");
}

/* One thread per destination element. A dimension whose destination stride is 0 (with more than
 * one index) is looped inside the thread in increasing order, so no two threads write one
 * element: with accumulate, a reduction over j is summed first and added once per i (as the CPU
 * backend); without accumulate, the last (i, j) wins, as a sequential copy would leave it. */
__global__ void k_copy_3d(float *dst, int64_t ds0, int64_t ds1, const float *src, int64_t ss0,
                          int64_t ss1, int64_t n0, int64_t n1, int64_t n2, int accumulate, int ri,
                          int rj) {
    int64_t m0 = ri ? 1 : n0, m1 = rj ? 1 : n1;
    CU_GRID_STRIDE(idx, m0 * m1 * n2) {
        int64_t c = idx % n2, j0 = (idx / n2) % m1, i0 = idx / (n2 * m1);
        float *d = dst + i0 * ds0 + j0 * ds1 + c;
        if (!accumulate) {
            int64_t i = ri ? n0 - 1 : i0, j = rj ? n1 - 1 : j0;
            *d = src[i * ss0 + j * ss1 + c];
            continue;
        }
        float dv = *d;
        int64_t ia = ri ? 0 : i0, ib = ri ? n0 : i0 + 1;
        for (int64_t i = ia; i < ib; i++) {
            if (rj) {
                float acc = src[i * ss0 + c];
                for (int64_t j = 1; j < n1; j++) acc = __fadd_rn(acc, src[i * ss0 + j * ss1 + c]);
                dv = __fadd_rn(dv, acc);
            } else {
                dv = __fadd_rn(dv, src[i * ss0 + j0 * ss1 + c]);
            }
        }
        *d = dv;
    }
}

extern "C" void cu_copy_3d(v3_kctx *ctx, float *dst, int64_t ds0, int64_t ds1, const float *src,
                           int64_t ss0, int64_t ss1, int64_t n0, int64_t n1, int64_t n2,
                           int accumulate) {
    if (n0 <= 0 || n1 <= 0 || n2 <= 0) return;
    int ri = ds0 == 0 && n0 > 1, rj = ds1 == 0 && n1 > 1;
    int64_t n = (ri ? 1 : n0) * (rj ? 1 : n1) * n2;
    k_copy_3d<<<cu_blocks(n, 256), 256, 0, cu_stream(ctx)>>>(dst, ds0, ds1, src, ss0, ss1, n0, n1,
                                                             n2, accumulate, ri, rj);
    CU_LAUNCH_CHECK(ctx, "k_copy_3d");
}
