/* cu_norm.cu — RMSNorm forward/backward and interleaved-pair RoPE (model-spec §2, §3) in fp32.
 *
 * Row statistics: one block per row, per-thread strided sums in double and a fixed tree.
 * dw (a sum over tokens) is reduced without atomics in two fixed stages: per chunk of rows,
 * then the chunk sums in chunk order, added to dw once (so a repeated backward doubles dw
 * exactly). Multiplies and adds that the CPU does separately are written with __fmul_rn /
 * __fadd_rn where cheap, so that nvcc's FMA contraction does not change their rounding. */
#include "kernels/cuda/cuda_common.cuh"

enum { DW_ROWS = 128 }; /* rows per first-stage chunk of the dw reduction */

__global__ void __launch_bounds__(CU_RED_THREADS)
k_rmsnorm_fwd(float *out, int64_t ldo, float *rstd, const float *x, int64_t ldx, const float *w,
              int64_t C, float eps) {
    __shared__ double sh[CU_RED_THREADS];
    int64_t t = blockIdx.x;
    const float *xr = x + t * ldx;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += (double)xr[c] * xr[c];
    ss = cu_block_sum_d(ss, sh);
    float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    float *o = out + t * ldo;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = __fmul_rn(w[c], __fmul_rn(xr[c], r));
    if (rstd && threadIdx.x == 0) rstd[t] = r;
}

extern "C" void cu_rmsnorm_fwd(v3_kctx *ctx, float *out, int64_t ldo, float *rstd, const float *x,
                               int64_t ldx, const float *w, int64_t T, int64_t C, float eps) {
    if (T <= 0 || C <= 0) return;
    k_rmsnorm_fwd<<<(unsigned)T, CU_RED_THREADS, 0, cu_stream(ctx)>>>(out, ldo, rstd, x, ldx, w,
                                                                       C, eps);
    CU_LAUNCH_CHECK(ctx, "k_rmsnorm_fwd");
}

/* dx = r·(w⊙dout − x·r·mean(w⊙dout⊙x·r)) */
__global__ void __launch_bounds__(CU_RED_THREADS)
k_rmsnorm_bwd_dx(float *dx, int64_t lddx, const float *dout, int64_t ldd, const float *x,
                 int64_t ldx, const float *w, const float *rstd, int64_t C, int accumulate) {
    __shared__ double sh[CU_RED_THREADS];
    int64_t t = blockIdx.x;
    const float *xr = x + t * ldx, *dr = dout + t * ldd;
    double r = rstd[t], dot = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += (double)w[c] * dr[c] * xr[c] * r;
    dot = cu_block_sum_d(dot, sh);
    double mean = dot / (double)C;
    float *o = dx + t * lddx;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = (float)(r * ((double)w[c] * dr[c] - (double)xr[c] * r * mean));
        o[c] = accumulate ? __fadd_rn(o[c], v) : v;
    }
}

/* part[chunk][c] = Σ_{t in chunk} dout[t,c]·x[t,c]·rstd[t], t increasing */
__global__ void k_rmsnorm_dw_part(double *part, const float *dout, int64_t ldd, const float *x,
                                  int64_t ldx, const float *rstd, int64_t T, int64_t C) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t ch = blockIdx.y;
    if (c >= C) return;
    int64_t t0 = ch * DW_ROWS, t1 = t0 + DW_ROWS < T ? t0 + DW_ROWS : T;
    double acc = 0;
    for (int64_t t = t0; t < t1; t++) acc += (double)dout[t * ldd + c] * x[t * ldx + c] * (double)rstd[t];
    part[ch * C + c] = acc;
}

__global__ void k_rmsnorm_dw_sum(float *dw, const double *part, int64_t nch, int64_t C) {
    CU_GRID_STRIDE(c, C) {
        double acc = 0;
        for (int64_t ch = 0; ch < nch; ch++) acc += part[ch * C + c];
        dw[c] = __fadd_rn(dw[c], (float)acc);
    }
}

extern "C" void cu_rmsnorm_bwd(v3_kctx *ctx, float *dx, int64_t lddx, float *dw, const float *dout,
                               int64_t ldd, const float *x, int64_t ldx, const float *w,
                               const float *rstd, int64_t T, int64_t C, int accumulate) {
    if (T <= 0 || C <= 0) return;
    cudaStream_t s = cu_stream(ctx);
    k_rmsnorm_bwd_dx<<<(unsigned)T, CU_RED_THREADS, 0, s>>>(dx, lddx, dout, ldd, x, ldx, w, rstd,
                                                             C, accumulate);
    if (CU_LAUNCH_CHECK(ctx, "k_rmsnorm_bwd_dx") || !dw) return;
    int64_t nch = (T + DW_ROWS - 1) / DW_ROWS;
    if (nch > 65535) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "rmsnorm_bwd: T = %lld rows is too many", (long long)T);
        return;
    }
    double *part = (double *)cu_scratch(ctx, (size_t)(nch * C) * sizeof(double));
    if (!part) return;
    dim3 grid(cu_blocks(C, 128), (unsigned)nch);
    k_rmsnorm_dw_part<<<grid, 128, 0, s>>>(part, dout, ldd, x, ldx, rstd, T, C);
    if (CU_LAUNCH_CHECK(ctx, "k_rmsnorm_dw_part")) return;
    k_rmsnorm_dw_sum<<<cu_blocks(C, 256), 256, 0, s>>>(dw, part, nch, C);
    CU_LAUNCH_CHECK(ctx, "k_rmsnorm_dw_sum");
}

/* One thread per (t, pair i), looping over heads: the angle pos·inv_freq in fp32 as the
 * reference; cos/sin in double, rounded once (as the CPU backend). sign −1 is the backward. */
__global__ void k_rope(float *x, int64_t T, int64_t H, int64_t st, int64_t sh, int64_t np,
                       const int32_t *pos, const float *inv_freq, float sign) {
    CU_GRID_STRIDE(ti, T * np) {
        int64_t t = ti / np, i = ti % np;
        float ang = __fmul_rn((float)pos[t], inv_freq[i]);
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        float c = (float)cd, s = sign * (float)sd;
        for (int64_t h = 0; h < H; h++) {
            float *p = x + t * st + h * sh + 2 * i;
            float a = p[0], b = p[1];
            p[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            p[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
        }
    }
}

static void rope(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                 int64_t d_rope, const int32_t *pos, const float *inv_freq, float sign) {
    int64_t np = d_rope / 2;
    if (T <= 0 || H <= 0 || np <= 0) return;
    k_rope<<<cu_blocks(T * np, 256), 256, 0, cu_stream(ctx)>>>(x, T, H, st, sh, np, pos, inv_freq,
                                                               sign);
    CU_LAUNCH_CHECK(ctx, "k_rope");
}

extern "C" void cu_rope_fwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                            int64_t d_rope, const int32_t *pos, const float *inv_freq) {
    rope(ctx, x, T, H, st, sh, d_rope, pos, inv_freq, 1.0f);
}

extern "C" void cu_rope_bwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                            int64_t d_rope, const int32_t *pos, const float *inv_freq) {
    rope(ctx, x, T, H, st, sh, d_rope, pos, inv_freq, -1.0f);
}
