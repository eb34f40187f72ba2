/* cu_router.cu — MoE router forward/backward (model-spec §5) and the sequence-wise balance loss
 * (§7) in fp32, with the CPU backend's semantics: sigmoid scores; biased scores c = s + b for
 * selection only; group score = sum of the group's top-2 c (the single c for one-expert groups);
 * the topk_group best groups kept, the others masked with -inf; top-K over the rest in descending
 * c; ties go to the lower index everywhere; weights from the unbiased s, divided by (Σ + 1e-20)
 * when norm_topk_prob, then times route_scale.
 *
 * Forward: one warp per token, its biased scores in shared memory; each of the K picks is a warp
 * arg-max (lane-strided scan, then a butterfly whose combine is symmetric, so every lane agrees).
 * The group step and the weights are tiny and done by lane 0 in the CPU's order. */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"

enum { RT_WARPS = 4, RT_MAX_GROUPS = 64 };

/* (value, index) arg-max combine: higher value wins, ties (and NaN) go to the lower index;
 * an index < 0 means "no candidate". */
__device__ __forceinline__ void best_combine(float *v, int *i, float v2, int i2) {
    if (i2 < 0) return;
    if (*i < 0 || v2 > *v || (!(v2 < *v) && i2 < *i)) {
        *v = v2;
        *i = i2;
    }
}

__global__ void __launch_bounds__(RT_WARPS * 32) k_router_fwd(v3_router_params p) {
    extern __shared__ unsigned char smem[];
    int wid = threadIdx.x / 32, lane = threadIdx.x & 31;
    int64_t t = (int64_t)blockIdx.x * RT_WARPS + wid;
    int E = (int)p.E, K = (int)p.K;
    float *c = (float *)smem + (size_t)wid * E;
    int *taken = (int *)((float *)smem + (size_t)RT_WARPS * E) + (size_t)wid * E;
    if (t >= p.T) return;
    float *s = p.scores + t * E;
    for (int e = lane; e < E; e += 32) {
        float sv = 1.0f / (1.0f + expf(-p.logits[t * E + e]));
        s[e] = sv;
        c[e] = sv + (p.bias ? p.bias[e] : 0.0f);
        taken[e] = 0;
    }
    __syncwarp();
    if (p.n_group > 1 && lane == 0) {
        int G = p.n_group, gs = E / G;
        float gsc[RT_MAX_GROUPS];
        int keep[RT_MAX_GROUPS];
        for (int g = 0; g < G; g++) {
            const float *cg = c + g * gs;
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = 0; e < gs; e++) {
                if (cg[e] > b1) { b2 = b1; b1 = cg[e]; }
                else if (cg[e] > b2) b2 = cg[e];
            }
            gsc[g] = gs == 1 ? b1 : b1 + b2;
            keep[g] = 0;
        }
        for (int k = 0; k < p.topk_group; k++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (!keep[g] && (best < 0 || gsc[g] > gsc[best])) best = g;
            keep[best] = 1;
        }
        for (int g = 0; g < G; g++)
            if (!keep[g])
                for (int e = 0; e < gs; e++) c[g * gs + e] = -INFINITY;
    }
    __syncwarp();
    int32_t *idx = p.topk_idx + t * K;
    for (int k = 0; k < K; k++) {
        float bv = 0.0f;
        int bi = -1;
        for (int e = lane; e < E; e += 32)
            if (!taken[e]) best_combine(&bv, &bi, c[e], e);
        for (int o = 16; o > 0; o >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, bv, o);
            int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
            best_combine(&bv, &bi, v2, i2);
        }
        if (lane == 0) {
            idx[k] = bi;
            if (bi >= 0) taken[bi] = 1;
        }
        __syncwarp();
    }
    if (lane == 0) {
        float *w = p.topk_w + t * K;
        float z = 0.0f;
        for (int k = 0; k < K; k++) {
            w[k] = s[idx[k]];
            z += w[k];
        }
        z += 1e-20f;
        for (int k = 0; k < K; k++)
            w[k] = __fmul_rn(p.norm_topk_prob ? __fdiv_rn(w[k], z) : w[k], p.route_scale);
    }
}

extern "C" void cu_router_fwd(v3_kctx *ctx, const v3_router_params *p) {
    if (p->T <= 0) return;
    if (p->K > p->E || p->K < 1 || p->E > 4096 || /* shared memory: 4 warps × E × 8 bytes */
        (p->n_group > 1 && (p->E % p->n_group || p->topk_group < 1 ||
                            p->topk_group > p->n_group || p->n_group > RT_MAX_GROUPS))) {
        v3k_fail(ctx, V3_EINVAL, "router_fwd: bad shape E=%lld K=%lld n_group=%d topk_group=%d",
                 (long long)p->E, (long long)p->K, p->n_group, p->topk_group);
        return;
    }
    size_t sm = (size_t)RT_WARPS * p->E * (sizeof(float) + sizeof(int));
    if (sm > 48 * 1024 &&
        CU_CHECK(ctx, cudaFuncSetAttribute(k_router_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)sm)))
        return;
    k_router_fwd<<<cu_blocks(p->T, RT_WARPS), RT_WARPS * 32, sm, cu_stream(ctx)>>>(*p);
    CU_LAUNCH_CHECK(ctx, "k_router_fwd");
}

/* Z = Σ_S s + 1e-20: ds_i = (rs/Z)(g_i − Σ_k g_k s_k / Z) (normalised) or rs·g_i;
 * dlogit_i = ds_i·s_i(1 − s_i); the row was zeroed before (unselected experts get 0). */
__global__ void k_router_bwd(v3_router_params p) {
    CU_GRID_STRIDE(t, p.T) {
        const float *s = p.scores + t * p.E, *g = p.dtopk_w + t * p.K;
        const int32_t *idx = p.topk_idx + t * p.K;
        float *dl = p.dlogits + t * p.E;
        double z = 1e-20, gs = 0;
        for (int64_t k = 0; k < p.K; k++) {
            z += s[idx[k]];
            gs += (double)g[k] * s[idx[k]];
        }
        for (int64_t k = 0; k < p.K; k++) {
            double si = s[idx[k]];
            double ds = p.norm_topk_prob ? p.route_scale / z * (g[k] - gs / z)
                                         : (double)p.route_scale * g[k];
            dl[idx[k]] = (float)(ds * si * (1.0 - si));
        }
    }
}

extern "C" void cu_router_bwd(v3_kctx *ctx, const v3_router_params *p) {
    if (p->T <= 0 || p->E <= 0) return;
    if (CU_CHECK(ctx, cudaMemsetAsync(p->dlogits, 0, (size_t)(p->T * p->E) * sizeof(float),
                                      cu_stream(ctx))))
        return;
    k_router_bwd<<<cu_blocks(p->T, 128), 128, 0, cu_stream(ctx)>>>(*p);
    CU_LAUNCH_CHECK(ctx, "k_router_bwd");
}

/* ---- balance loss: per sequence n of length L, f_e = E/(K L)·#{t: e selected},
 * P_e = (1/L) Σ_t s_te / S_t (S_t = Σ_j s_tj), L_n = Σ_e f_e P_e; loss = Σ_n alpha·L_n.
 * dL/dlogit_tj = (alpha/L)(f_j − Σ_e f_e s_te / S_t)/S_t · s_tj (1 − s_tj). All in double. ---- */

__global__ void k_bal_S(double *S, const float *scores, int64_t T, int64_t E) {
    CU_GRID_STRIDE(t, T) {
        double a = 0;
        for (int64_t e = 0; e < E; e++) a += scores[t * E + e];
        S[t] = a;
    }
}

__global__ void k_bal_fP(double *f, double *P, const int64_t *off, int64_t n_seq,
                         const float *scores, const double *S, const int32_t *topk_idx, int64_t E,
                         int64_t K) {
    CU_GRID_STRIDE(ne, n_seq * E) {
        int64_t n = ne / E, e = ne % E;
        int64_t t0 = off[n], t1 = off[n + 1], L = t1 - t0;
        double pe = 0, cnt = 0;
        for (int64_t t = t0; t < t1; t++) {
            pe += scores[t * E + e] / S[t];
            for (int64_t k = 0; k < K; k++) cnt += topk_idx[t * K + k] == e ? 1.0 : 0.0;
        }
        if (L > 0) {
            f[ne] = cnt * ((double)E / ((double)K * (double)L));
            P[ne] = pe / (double)L;
        } else {
            f[ne] = P[ne] = 0;
        }
    }
}

__global__ void k_bal_loss(double *loss, const double *f, const double *P, int64_t n_seq,
                           int64_t E) {
    CU_GRID_STRIDE(n, n_seq) {
        double a = 0;
        for (int64_t e = 0; e < E; e++) a += f[n * E + e] * P[n * E + e];
        loss[n] = a;
    }
}

/* sequence holding token t (the last n with off[n] <= t; empty sequences share offsets), or -1 */
__device__ __forceinline__ int64_t seq_of(const int64_t *off, int64_t n_seq, int64_t t) {
    int64_t lo = 0, hi = n_seq; /* invariant: answer in [lo, hi) if any */
    if (n_seq <= 0 || t < off[0] || t >= off[n_seq]) return -1;
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (off[mid] <= t) lo = mid;
        else hi = mid;
    }
    return t < off[lo + 1] ? lo : -1;
}

__global__ void k_bal_fs(double *fs, const double *f, const int64_t *off, int64_t n_seq,
                         const float *scores, const double *S, int64_t T, int64_t E) {
    CU_GRID_STRIDE(t, T) {
        int64_t n = seq_of(off, n_seq, t);
        if (n < 0) continue;
        double a = 0;
        for (int64_t e = 0; e < E; e++) a += f[n * E + e] * scores[t * E + e];
        fs[t] = a / S[t];
    }
}

__global__ void k_bal_grad(float *dlogits, const double *f, const double *fs, const int64_t *off,
                           int64_t n_seq, const float *scores, const double *S, int64_t T,
                           int64_t E, float alpha) {
    CU_GRID_STRIDE(te, T * E) {
        int64_t t = te / E, e = te % E;
        int64_t n = seq_of(off, n_seq, t);
        if (n < 0) continue;
        double L = (double)(off[n + 1] - off[n]);
        double c = (double)alpha / L / S[t];
        double ds = c * (f[n * E + e] - fs[t]);
        double s = scores[te];
        dlogits[te] = __fadd_rn(dlogits[te], (float)(ds * s * (1.0 - s)));
    }
}

extern "C" void cu_router_balance(v3_kctx *ctx, const v3_balance_params *p) {
    int64_t T = p->T, E = p->E, K = p->K, ns = p->n_seq;
    *p->loss = 0;
    if (ns <= 0 || E <= 0) return;
    for (int64_t n = 0; n < ns; n++)
        if (p->seq_off[n] < 0 || p->seq_off[n + 1] < p->seq_off[n] || p->seq_off[n + 1] > T) {
            v3k_fail(ctx, V3_ERANGE, "router_balance: sequence %lld [%lld, %lld) outside [0, %lld)",
                     (long long)n, (long long)p->seq_off[n], (long long)p->seq_off[n + 1],
                     (long long)T);
            return;
        }
    cudaStream_t st = cu_stream(ctx);
    size_t b_off = (size_t)(ns + 1) * sizeof(int64_t);
    size_t b_t = (size_t)(T > 0 ? T : 1) * sizeof(double);
    size_t b_ne = (size_t)(ns * E) * sizeof(double);
    size_t b_n = (size_t)ns * sizeof(double);
    size_t a = 256; /* keep each piece 256-byte aligned */
#define CU_ALN(x) (((x) + a - 1) / a * a)
    size_t o_S = CU_ALN(b_off), o_fs = o_S + CU_ALN(b_t), o_f = o_fs + CU_ALN(b_t);
    size_t o_P = o_f + CU_ALN(b_ne), o_l = o_P + CU_ALN(b_ne), total = o_l + CU_ALN(b_n);
#undef CU_ALN
    char *sc = (char *)cu_scratch(ctx, total);
    double *hl = (double *)cu_pinned(ctx, b_n);
    if (!sc || !hl) return;
    int64_t *off = (int64_t *)sc;
    double *S = (double *)(sc + o_S), *fs = (double *)(sc + o_fs), *f = (double *)(sc + o_f);
    double *P = (double *)(sc + o_P), *ld = (double *)(sc + o_l);
    if (CU_CHECK(ctx, cudaMemcpyAsync(off, p->seq_off, b_off, cudaMemcpyHostToDevice, st))) return;
    /* the host seq_off may change after we return: make the copy complete first */
    if (CU_CHECK(ctx, cudaStreamSynchronize(st))) return;
    if (T > 0) {
        k_bal_S<<<cu_blocks(T, 128), 128, 0, st>>>(S, p->scores, T, E);
        if (CU_LAUNCH_CHECK(ctx, "k_bal_S")) return;
    }
    k_bal_fP<<<cu_blocks(ns * E, 128), 128, 0, st>>>(f, P, off, ns, p->scores, S, p->topk_idx, E, K);
    if (CU_LAUNCH_CHECK(ctx, "k_bal_fP")) return;
    k_bal_loss<<<cu_blocks(ns, 128), 128, 0, st>>>(ld, f, P, ns, E);
    if (CU_LAUNCH_CHECK(ctx, "k_bal_loss")) return;
    if (p->dlogits && T > 0) {
        k_bal_fs<<<cu_blocks(T, 128), 128, 0, st>>>(fs, f, off, ns, p->scores, S, T, E);
        if (CU_LAUNCH_CHECK(ctx, "k_bal_fs")) return;
        k_bal_grad<<<cu_blocks(T * E, 256), 256, 0, st>>>(p->dlogits, f, fs, off, ns, p->scores,
                                                          S, T, E, p->alpha);
        if (CU_LAUNCH_CHECK(ctx, "k_bal_grad")) return;
    }
    if (CU_CHECK(ctx, cudaMemcpyAsync(hl, ld, b_n, cudaMemcpyDeviceToHost, st))) return;
    if (CU_CHECK(ctx, cudaStreamSynchronize(st))) return;
    double total_loss = 0;
    for (int64_t n = 0; n < ns; n++)
        if (p->seq_off[n + 1] > p->seq_off[n]) total_loss += (double)p->alpha * hl[n];
    *p->loss = total_loss;
}
