/* cu_moe.cu — MoE dispatch plan, row gather / scatter-add and the weighted combine (fp32).
 *
 * moe_plan and scatter_add_rows group pairs by a key (expert, destination row) with CUB's radix
 * sort, which is stable and deterministic: pairs of one key stay in increasing index order, which
 * gives the contract's token order (plan) and increasing-r summation (scatter) without atomics.
 * scatter_add_rows sums the rows of one destination first and adds the sum once (as the CPU
 * backend), so a repeated backward doubles its result exactly. */
#include <string.h>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_common.cuh"

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

__global__ void k_iota(int32_t *v, int64_t n) {
    CU_GRID_STRIDE(i, n) v[i] = (int32_t)i;
}

/* Sorts (key, index) pairs stably by key into keys_out / vals_out; the scratch holds the CUB
 * temporary storage at `tmp`. Returns 0 on success (error recorded otherwise). */
static int sort_pairs(v3_kctx *ctx, const int32_t *keys, int32_t *keys_out, int32_t *vals_in,
                      int32_t *vals_out, int64_t n, void *tmp, size_t tmp_bytes) {
    cudaStream_t st = cu_stream(ctx);
    k_iota<<<cu_blocks(n, 256), 256, 0, st>>>(vals_in, n);
    if (CU_LAUNCH_CHECK(ctx, "k_iota")) return 1;
    return CU_CHECK(ctx, cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, keys, keys_out, vals_in,
                                                         vals_out, (int)n, 0, 32, st));
}

static size_t sort_tmp_bytes(v3_kctx *ctx, int64_t n) {
    size_t b = 0;
    if (CU_CHECK(ctx, cub::DeviceRadixSort::SortPairs((void *)NULL, b, (const int32_t *)NULL,
                                                      (int32_t *)NULL, (const int32_t *)NULL,
                                                      (int32_t *)NULL, (int)n, 0, 32,
                                                      cu_stream(ctx))))
        return 0;
    return b ? b : 1;
}

/* After sorting pair i = t*K + k by expert: permuted row r holds pair vals[r]. Boundaries of the
 * runs of equal keys give each expert's [start, end). Bad experts set *bad. */
__global__ void k_plan_rows(const int32_t *keys, const int32_t *vals, int64_t n, int64_t K,
                            int64_t E, int32_t *row_of, int32_t *src_of, int64_t *start,
                            int64_t *end, int *bad) {
    CU_GRID_STRIDE(r, n) {
        int32_t e = keys[r], v = vals[r];
        row_of[v] = (int32_t)r;
        src_of[r] = (int32_t)(v / K);
        if (e < 0 || e >= E) {
            *bad = 1;
            continue;
        }
        if (r == 0 || keys[r - 1] != e) start[e] = r;
        if (r == n - 1 || keys[r + 1] != e) end[e] = r + 1;
    }
}

__global__ void k_plan_counts(int64_t *counts, const int64_t *start, const int64_t *end, int64_t E) {
    CU_GRID_STRIDE(e, E) counts[e] = end[e] - start[e];
}

extern "C" void cu_moe_plan(v3_kctx *ctx, const int32_t *topk_idx, int64_t T, int64_t K, int64_t E,
                            int64_t *counts, int32_t *row_of, int32_t *src_of) {
    int64_t n = T * K;
    if (E <= 0) return;
    for (int64_t e = 0; e < E; e++) counts[e] = 0;
    if (n <= 0) return;
    if (n > 2147483647) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "moe_plan: %lld pairs exceed int32", (long long)n);
        return;
    }
    cudaStream_t st = cu_stream(ctx);
    size_t tmp = sort_tmp_bytes(ctx, n);
    if (!tmp) return;
    size_t o_keys = align256(tmp), o_vin = o_keys + align256(n * 4), o_vout = o_vin + align256(n * 4);
    size_t o_start = o_vout + align256(n * 4), o_end = o_start + align256(E * 8);
    size_t o_cnt = o_end + align256(E * 8), o_bad = o_cnt + align256(E * 8);
    char *sc = (char *)cu_scratch(ctx, o_bad + 256);
    size_t hbytes = (size_t)E * 8 + 8;
    char *h = (char *)cu_pinned(ctx, hbytes);
    if (!sc || !h) return;
    int32_t *keys = (int32_t *)(sc + o_keys), *vin = (int32_t *)(sc + o_vin);
    int32_t *vout = (int32_t *)(sc + o_vout);
    int64_t *start = (int64_t *)(sc + o_start), *end = (int64_t *)(sc + o_end);
    int64_t *cnt = (int64_t *)(sc + o_cnt);
    int *bad = (int *)(sc + o_bad);
    /* start/end/counts/bad are contiguous from o_start: one memset */
    if (CU_CHECK(ctx, cudaMemsetAsync(sc + o_start, 0, o_bad + 256 - o_start, st))) return;
    if (sort_pairs(ctx, topk_idx, keys, vin, vout, n, sc, tmp)) return;
    k_plan_rows<<<cu_blocks(n, 256), 256, 0, st>>>(keys, vout, n, K, E, row_of, src_of, start, end, bad);
    if (CU_LAUNCH_CHECK(ctx, "k_plan_rows")) return;
    k_plan_counts<<<cu_blocks(E, 256), 256, 0, st>>>(cnt, start, end, E);
    if (CU_LAUNCH_CHECK(ctx, "k_plan_counts")) return;
    if (CU_CHECK(ctx, cudaMemcpyAsync(h, cnt, (size_t)E * 8, cudaMemcpyDeviceToHost, st))) return;
    if (CU_CHECK(ctx, cudaMemcpyAsync(h + (size_t)E * 8, bad, sizeof(int), cudaMemcpyDeviceToHost, st)))
        return;
    if (CU_CHECK(ctx, cudaStreamSynchronize(st))) return;
    int hbad;
    memcpy(&hbad, h + (size_t)E * 8, sizeof hbad);
    if (hbad) {
        v3k_fail(ctx, V3_ERANGE, "moe_plan: a pair routes to an expert outside [0, %lld)", (long long)E);
        return;
    }
    memcpy(counts, h, (size_t)E * 8);
}

__global__ void k_gather_rows(float *dst, const float *src, const int32_t *idx, int64_t R, int64_t C,
                              int *flags) {
    CU_GRID_STRIDE(i, R * C) {
        int64_t r = i / C, c = i % C;
        int32_t s = idx[r];
        if (s < 0) {
            if (c == 0) cu_flag(flags, CU_FLAG_GATHER_IDX);
            dst[i] = 0.0f;
            continue;
        }
        dst[i] = src[(int64_t)s * C + c];
    }
}

extern "C" void cu_gather_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                               int64_t R, int64_t C) {
    if (R <= 0 || C <= 0) return;
    k_gather_rows<<<cu_blocks(R * C, 256), 256, 0, cu_stream(ctx)>>>(dst, src, idx, R, C,
                                                                     cu_state(ctx)->flags);
    CU_LAUNCH_CHECK(ctx, "k_gather_rows");
}

__global__ void k_scatter_rows(float *dst, const float *src, const int32_t *idx, int64_t R, int64_t C,
                               int *flags) {
    CU_GRID_STRIDE(i, R * C) {
        int64_t r = i / C, c = i % C;
        int32_t d = idx[r];
        if (d < 0) {
            if (c == 0) cu_flag(flags, CU_FLAG_SCATTER_IDX);
            continue;
        }
        dst[(int64_t)d * C + c] = src[i];
    }
}

extern "C" void cu_scatter_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                                int64_t R, int64_t C) {
    if (R <= 0 || C <= 0) return;
    k_scatter_rows<<<cu_blocks(R * C, 256), 256, 0, cu_stream(ctx)>>>(dst, src, idx, R, C,
                                                                      cu_state(ctx)->flags);
    CU_LAUNCH_CHECK(ctx, "k_scatter_rows");
}

/* keys/vals: the rows sorted by destination (stable). The thread of (run head i, column c) sums
 * the run's source rows in increasing r and adds the sum to the destination once. */
__global__ void k_scatter_runs(float *dst, const float *src, const int32_t *keys, const int32_t *vals,
                               int64_t R, int64_t C, int *flags) {
    CU_GRID_STRIDE(ic, R * C) {
        int64_t i = ic / C, c = ic % C;
        int32_t d = keys[i];
        if (i > 0 && keys[i - 1] == d) continue; /* not the head of its run */
        if (d < 0) {
            if (c == 0) cu_flag(flags, CU_FLAG_SCATTER_IDX);
            continue;
        }
        float acc = src[(int64_t)vals[i] * C + c];
        for (int64_t j = i + 1; j < R && keys[j] == d; j++) acc = __fadd_rn(acc, src[(int64_t)vals[j] * C + c]);
        float *o = dst + (int64_t)d * C + c;
        *o = __fadd_rn(*o, acc);
    }
}

extern "C" void cu_scatter_add_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                                    int64_t R, int64_t C) {
    if (R <= 0 || C <= 0) return;
    if (R > 2147483647) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "scatter_add_rows: %lld rows exceed int32", (long long)R);
        return;
    }
    size_t tmp = sort_tmp_bytes(ctx, R);
    if (!tmp) return;
    size_t o_keys = align256(tmp), o_vin = o_keys + align256(R * 4), o_vout = o_vin + align256(R * 4);
    char *sc = (char *)cu_scratch(ctx, o_vout + align256(R * 4));
    if (!sc) return;
    int32_t *keys = (int32_t *)(sc + o_keys), *vin = (int32_t *)(sc + o_vin);
    int32_t *vout = (int32_t *)(sc + o_vout);
    if (sort_pairs(ctx, idx, keys, vin, vout, R, sc, tmp)) return;
    k_scatter_runs<<<cu_blocks(R * C, 256), 256, 0, cu_stream(ctx)>>>(dst, src, keys, vout, R, C,
                                                                      cu_state(ctx)->flags);
    CU_LAUNCH_CHECK(ctx, "k_scatter_runs");
}

/* y[t,c] += Σ_k w[t,k]·yperm[row_of[t*K+k], c], the sum formed first in k order */
__global__ void k_combine_fwd(float *y, const float *yperm, const int32_t *row_of, const float *w,
                              int64_t T, int64_t K, int64_t C) {
    CU_GRID_STRIDE(tc, T * C) {
        int64_t t = tc / C, c = tc % C;
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++)
            acc = __fadd_rn(acc, __fmul_rn(w[t * K + k], yperm[(int64_t)row_of[t * K + k] * C + c]));
        y[tc] = __fadd_rn(y[tc], acc);
    }
}

extern "C" void cu_moe_combine_fwd(v3_kctx *ctx, float *y, const float *yperm, const int32_t *row_of,
                                   const float *w, int64_t T, int64_t K, int64_t C) {
    if (T <= 0 || C <= 0 || K <= 0) return;
    k_combine_fwd<<<cu_blocks(T * C, 256), 256, 0, cu_stream(ctx)>>>(y, yperm, row_of, w, T, K, C);
    CU_LAUNCH_CHECK(ctx, "k_combine_fwd");
}

/* dyperm[row_of[t*K+k], c] = w[t,k]·dy[t,c] */
__global__ void k_combine_bwd_rows(float *dyperm, const float *dy, const int32_t *row_of,
                                   const float *w, int64_t T, int64_t K, int64_t C) {
    CU_GRID_STRIDE(i, T * K * C) {
        int64_t tk = i / C, c = i % C, t = tk / K;
        dyperm[(int64_t)row_of[tk] * C + c] = __fmul_rn(w[tk], dy[t * C + c]);
    }
}

/* dw[t,k] = <dy[t], yperm[row_of[t*K+k]]> in double: one warp per (t, k) */
__global__ void k_combine_bwd_dw(float *dw, const float *dy, const float *yperm,
                                 const int32_t *row_of, int64_t T, int64_t K, int64_t C) {
    int64_t tk = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (tk >= T * K) return;
    const float *d = dy + (tk / K) * C, *yp = yperm + (int64_t)row_of[tk] * C;
    double acc = 0;
    for (int64_t c = lane; c < C; c += 32) acc += (double)d[c] * yp[c];
    acc = cu_warp_sum_d(acc);
    if (lane == 0) dw[tk] = (float)acc;
}

extern "C" void cu_moe_combine_bwd(v3_kctx *ctx, float *dyperm, float *dw, const float *dy,
                                   const float *yperm, const int32_t *row_of, const float *w,
                                   int64_t T, int64_t K, int64_t C) {
    if (T <= 0 || K <= 0) return;
    cudaStream_t st = cu_stream(ctx);
    if (C > 0) {
        k_combine_bwd_rows<<<cu_blocks(T * K * C, 256), 256, 0, st>>>(dyperm, dy, row_of, w, T, K, C);
        if (CU_LAUNCH_CHECK(ctx, "k_combine_bwd_rows")) return;
    }
    k_combine_bwd_dw<<<cu_blocks(T * K, 4), 128, 0, st>>>(dw, dy, yperm, row_of, T, K, C);
    CU_LAUNCH_CHECK(ctx, "k_combine_bwd_dw");
}
