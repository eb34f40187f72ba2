/* cu_ffn.cu — SwiGLU activation forward/backward (model-spec §5) in fp32, one thread per
 * element, in the CPU backend's operation order (roundings spelled out so that nvcc does not
 * contract them into FMAs; expf itself may differ from glibc's in the last bit). */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"

__device__ __forceinline__ float sigm(float g) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g))); }

__global__ void k_swiglu_fwd(float *out, const float *in, int64_t ld_in, int64_t u_off,
                             int64_t rows, int64_t cols) {
    CU_GRID_STRIDE(i, rows * cols) {
        int64_t r = i / cols, j = i % cols;
        float g = in[r * ld_in + j], u = in[r * ld_in + u_off + j];
        out[i] = __fmul_rn(__fmul_rn(g, sigm(g)), u);
    }
}

/* dg = dout·u·σ(g)(1 + g(1 − σ(g))), du = dout·silu(g); both read before either is written (din
 * may alias in) */
__global__ void k_swiglu_bwd(float *din, const float *dout, const float *in, int64_t ld_in,
                             int64_t u_off, int64_t rows, int64_t cols) {
    CU_GRID_STRIDE(i, rows * cols) {
        int64_t r = i / cols, j = i % cols;
        float g = in[r * ld_in + j], u = in[r * ld_in + u_off + j], d = dout[i];
        float s = sigm(g);
        float ds = __fmul_rn(s, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, s))));
        din[r * ld_in + j] = __fmul_rn(__fmul_rn(d, u), ds);
        din[r * ld_in + u_off + j] = __fmul_rn(d, __fmul_rn(g, s));
    }
}

extern "C" void cu_swiglu_fwd(v3_kctx *ctx, float *out, const float *in, int64_t ld_in,
                              int64_t u_off, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    k_swiglu_fwd<<<cu_blocks(rows * cols, 256), 256, 0, cu_stream(ctx)>>>(out, in, ld_in, u_off,
                                                                           rows, cols);
    CU_LAUNCH_CHECK(ctx, "k_swiglu_fwd");
}

extern "C" void cu_swiglu_bwd(v3_kctx *ctx, float *din, const float *dout, const float *in,
                              int64_t ld_in, int64_t u_off, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    k_swiglu_bwd<<<cu_blocks(rows * cols, 256), 256, 0, cu_stream(ctx)>>>(din, dout, in, ld_in,
                                                                           u_off, rows, cols);
    CU_LAUNCH_CHECK(ctx, "k_swiglu_bwd");
}
