/* cu_attention.cu — fp32 softmax attention with per-query key windows [kv_lo, kv_hi), forward
 * (online softmax, writes out and lse) and backward (recomputes P from lse), never materialising
 * the T×Tk score matrix.
 *
 * Layout of the work: one warp per (query t, head h); element i of a head vector belongs to lane
 * i % 32, slot i / 32, so head dims up to 32·CU_ATT_SLOTS = 256 (DeepSeek-V3: 192 and 128). A
 * block's warps are consecutive queries of one head, so they read overlapping keys (L1 reuse).
 * The backward needs per-key sums over queries; instead of atomics, dk/dv are computed by a
 * second kernel with one warp per (key s, head h) that visits the queries in increasing t. Every
 * sum therefore has a fixed order: results are reproducible run to run.
 * Simple, not fast: the exact reference (FP32 and TF32 math modes); the BF16 mode runs the tiled
 * tensor-core kernels of cu_attention_tc.cu instead. */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"

#define CU_ATT_SLOTS 8
enum { ATT_WARPS = 4 };

__device__ __forceinline__ int window_bad(const v3_attn_params &p, int64_t t) {
    int64_t lo = p.kv_lo[t], hi = p.kv_hi[t];
    return lo < 0 || hi > p.Tk || lo > hi;
}

/* Σ over the head vector a (in registers, slots) · b (memory): lane partials then a butterfly. */
__device__ __forceinline__ float dot_slots(const float (&a)[CU_ATT_SLOTS], const float *b, int64_t d,
                                           int lane) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) {
        int64_t i = (int64_t)j * 32 + lane;
        if (i < d) s += a[j] * b[i];
    }
    return cu_warp_sum(s);
}

__device__ __forceinline__ void load_slots(float (&a)[CU_ATT_SLOTS], const float *src, int64_t d,
                                           int lane) {
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) {
        int64_t i = (int64_t)j * 32 + lane;
        a[j] = i < d ? src[i] : 0.0f;
    }
}

__device__ __forceinline__ void store_slots(float *dst, const float (&a)[CU_ATT_SLOTS], int64_t d,
                                            int lane, float mul) {
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) {
        int64_t i = (int64_t)j * 32 + lane;
        if (i < d) dst[i] = a[j] * mul;
    }
}

/* warp index -> (t, h) with t fastest, so a block holds consecutive queries of one head */
__device__ __forceinline__ int warp_task(const v3_attn_params &p, int64_t n, int64_t *t, int64_t *h) {
    int64_t w = (int64_t)blockIdx.x * ATT_WARPS + threadIdx.x / 32;
    if (w >= n) return 0;
    *h = w / (n / p.H);
    *t = w % (n / p.H);
    return 1;
}

__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_fwd(v3_attn_params p, int *flags) {
    int64_t t, h;
    if (!warp_task(p, p.T * p.H, &t, &h)) return;
    int lane = threadIdx.x & 31;
    float *o = p.out + (t * p.H + h) * p.d_v;
    float acc[CU_ATT_SLOTS];
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) acc[j] = 0.0f;
    if (window_bad(p, t)) {
        if (lane == 0) cu_flag(flags, CU_FLAG_ATTN_WINDOW);
        store_slots(o, acc, p.d_v, lane, 1.0f);
        if (lane == 0) p.lse[t * p.H + h] = NAN;
        return;
    }
    float q[CU_ATT_SLOTS];
    load_slots(q, p.q + t * p.q_st + h * p.q_sh, p.d_qk, lane);
    float m = -INFINITY, l = 0.0f;
    for (int64_t s = p.kv_lo[t]; s < p.kv_hi[t]; s++) {
        float sc = p.scale * dot_slots(q, p.k + s * p.k_st + h * p.k_sh, p.d_qk, lane);
        float mn = fmaxf(m, sc);
        float corr = expf(m - mn); /* 0 on the first key (m = -inf) */
        float e = expf(sc - mn);
        l = l * corr + e;
        const float *v = p.v + s * p.v_st + h * p.v_sh;
#pragma unroll
        for (int j = 0; j < CU_ATT_SLOTS; j++) {
            int64_t i = (int64_t)j * 32 + lane;
            acc[j] = acc[j] * corr + (i < p.d_v ? e * v[i] : 0.0f);
        }
        m = mn;
    }
    if (l > 0.0f) {
        store_slots(o, acc, p.d_v, lane, 1.0f / l);
        if (lane == 0) p.lse[t * p.H + h] = m + logf(l);
    } else { /* empty window: zero output, lse = -inf (softmax over no keys), as the CPU backend */
        store_slots(o, acc, p.d_v, lane, 0.0f);
        if (lane == 0) p.lse[t * p.H + h] = -INFINITY;
    }
}

/* D[t*H + h] = <dout, out> of the query */
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_bwd_D(v3_attn_params p, float *D) {
    int64_t t, h;
    if (!warp_task(p, p.T * p.H, &t, &h)) return;
    int lane = threadIdx.x & 31;
    float a[CU_ATT_SLOTS];
    int64_t th = t * p.H + h;
    load_slots(a, p.dout + th * p.d_v, p.d_v, lane);
    float d = dot_slots(a, p.out + th * p.d_v, p.d_v, lane);
    if (lane == 0) D[th] = d;
}

/* dq = scale · Σ_s P_ts (dP_ts − D_t) k_s, keys in increasing s */
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_bwd_dq(v3_attn_params p, const float *D) {
    int64_t t, h;
    if (!warp_task(p, p.T * p.H, &t, &h)) return;
    int lane = threadIdx.x & 31;
    int64_t th = t * p.H + h;
    float g[CU_ATT_SLOTS];
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) g[j] = 0.0f;
    if (!window_bad(p, t)) {
        float q[CU_ATT_SLOTS], dout[CU_ATT_SLOTS];
        load_slots(q, p.q + t * p.q_st + h * p.q_sh, p.d_qk, lane);
        load_slots(dout, p.dout + th * p.d_v, p.d_v, lane);
        float lse = p.lse[th], Dt = D[th];
        for (int64_t s = p.kv_lo[t]; s < p.kv_hi[t]; s++) {
            const float *k = p.k + s * p.k_st + h * p.k_sh;
            float pr = expf(p.scale * dot_slots(q, k, p.d_qk, lane) - lse);
            float ds = pr * (dot_slots(dout, p.v + s * p.v_st + h * p.v_sh, p.d_v, lane) - Dt);
#pragma unroll
            for (int j = 0; j < CU_ATT_SLOTS; j++) {
                int64_t i = (int64_t)j * 32 + lane;
                if (i < p.d_qk) g[j] += ds * k[i];
            }
        }
    }
    store_slots(p.dq + th * p.d_qk, g, p.d_qk, lane, p.scale);
}

/* dk_s = scale · Σ_t dS_ts q_t and dv_s = Σ_t P_ts dout_t over the queries whose window holds s,
 * in increasing t; one warp per (s, h) */
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attn_bwd_dkdv(v3_attn_params p, const float *D) {
    int64_t w = (int64_t)blockIdx.x * ATT_WARPS + threadIdx.x / 32;
    if (w >= p.Tk * p.H) return;
    int64_t h = w / p.Tk, s = w % p.Tk;
    int lane = threadIdx.x & 31;
    float k[CU_ATT_SLOTS], v[CU_ATT_SLOTS], gk[CU_ATT_SLOTS], gv[CU_ATT_SLOTS];
    load_slots(k, p.k + s * p.k_st + h * p.k_sh, p.d_qk, lane);
    load_slots(v, p.v + s * p.v_st + h * p.v_sh, p.d_v, lane);
#pragma unroll
    for (int j = 0; j < CU_ATT_SLOTS; j++) gk[j] = gv[j] = 0.0f;
    for (int64_t t = 0; t < p.T; t++) {
        if (s < p.kv_lo[t] || s >= p.kv_hi[t] || window_bad(p, t)) continue;
        int64_t th = t * p.H + h;
        const float *q = p.q + t * p.q_st + h * p.q_sh, *dout = p.dout + th * p.d_v;
        float pr = expf(p.scale * dot_slots(k, q, p.d_qk, lane) - p.lse[th]);
        float ds = pr * (dot_slots(v, dout, p.d_v, lane) - D[th]);
#pragma unroll
        for (int j = 0; j < CU_ATT_SLOTS; j++) {
            int64_t i = (int64_t)j * 32 + lane;
            if (i < p.d_qk) gk[j] += ds * q[i];
            if (i < p.d_v) gv[j] += pr * dout[i];
        }
    }
    store_slots(p.dk + (s * p.H + h) * p.d_qk, gk, p.d_qk, lane, p.scale);
    store_slots(p.dv + (s * p.H + h) * p.d_v, gv, p.d_v, lane, 1.0f);
}

static int attn_dims_ok(v3_kctx *ctx, const v3_attn_params *p, const char *op) {
    if (p->d_qk > 32 * CU_ATT_SLOTS || p->d_v > 32 * CU_ATT_SLOTS || p->d_qk < 0 || p->d_v < 0) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "%s: head dims d_qk=%lld d_v=%lld (at most %d)", op,
                 (long long)p->d_qk, (long long)p->d_v, 32 * CU_ATT_SLOTS);
        return 0;
    }
    return 1;
}

/* BF16 mode: the tensor-core kernels (cu_attention_tc.cu) when they take the shape; FP32 (the
 * exact reference) and TF32 always run the fp32 kernels below. */
extern "C" void cu_attention_fwd(v3_kctx *ctx, const v3_attn_params *p) {
    if (p->T <= 0 || p->H <= 0 || !attn_dims_ok(ctx, p, "attention_fwd")) return;
    if (ctx->math == V3_MATH_BF16 && cu_attention_tc_fwd(ctx, p)) return;
    int64_t nw = p->T * p->H;
    k_attn_fwd<<<cu_blocks(nw, ATT_WARPS), ATT_WARPS * 32, 0, cu_stream(ctx)>>>(*p,
                                                                               cu_state(ctx)->flags);
    CU_LAUNCH_CHECK(ctx, "k_attn_fwd");
}

extern "C" void cu_attention_bwd(v3_kctx *ctx, const v3_attn_params *p) {
    if (p->T <= 0 || p->H <= 0 || !attn_dims_ok(ctx, p, "attention_bwd")) return;
    if (ctx->math == V3_MATH_BF16 && cu_attention_tc_bwd(ctx, p)) return;
    cudaStream_t st = cu_stream(ctx);
    int64_t nq = p->T * p->H, nk = p->Tk * p->H;
    float *D = (float *)cu_scratch(ctx, (size_t)nq * sizeof(float));
    if (!D) return;
    k_attn_bwd_D<<<cu_blocks(nq, ATT_WARPS), ATT_WARPS * 32, 0, st>>>(*p, D);
    if (CU_LAUNCH_CHECK(ctx, "k_attn_bwd_D")) return;
    k_attn_bwd_dq<<<cu_blocks(nq, ATT_WARPS), ATT_WARPS * 32, 0, st>>>(*p, D);
    if (CU_LAUNCH_CHECK(ctx, "k_attn_bwd_dq")) return;
    if (nk <= 0) return;
    k_attn_bwd_dkdv<<<cu_blocks(nk, ATT_WARPS), ATT_WARPS * 32, 0, st>>>(*p, D);
    CU_LAUNCH_CHECK(ctx, "k_attn_bwd_dkdv");
}
