/* cu_attention_tc.cu — FlashAttention-2-style tiled attention on the tensor cores for the BF16
 * math mode: WMMA m16n16k16 products with bf16 operands and fp32 accumulation. cu_attention.cu
 * dispatches here when ctx->math == V3_MATH_BF16 and the shapes fit; its fp32 kernels stay the
 * exact path. Same contract, windows and outputs as those kernels (v3_attn_params).
 *
 * Work layout (tiles of 64 queries and 64 keys; head dims zero-padded to a multiple of 16):
 *   forward  one block per (query tile, head), 4 warps × 16 query rows, walking the key tiles
 *            that cover the union of the tile's windows. Q, K, V are read from the fp32 tensors
 *            with their strides and rounded to bf16 in shared memory; S = Q·Kᵀ (WMMA) is staged
 *            in shared memory for the row-wise online softmax (running max and sum in fp32),
 *            P is rounded to bf16 and O += P·V (WMMA) accumulates in registers.
 *   backward D = rowsum(dO ⊙ O); then one block per (key tile, head) with 8 warps over the
 *            query tiles whose windows meet the key tile, in increasing order: warps 0-3
 *            recompute Pᵀ from lse and accumulate dV = Pᵀ·dO, warps 4-7 compute dPᵀ = V·dOᵀ,
 *            dSᵀ = Pᵀ ⊙ (dPᵀ − D) and accumulate dK = scale·dSᵀ·Q (16 keys per warp and one
 *            gradient each, so head dims up to 256 fit in registers); then one block per
 *            (query tile, head) over its key tiles for dQ = scale·dS·K.
 * Determinism: no atomics (only the bad-window flag); every output element is owned by one warp
 * and summed over tiles in increasing order, so results repeat bit for bit.
 * WMMA leaves unspecified which fragment element holds which matrix element; a fragment loaded
 * from a table of indices tells each thread (frag_ids), so the backward's masks and P, the
 * rescaling of O and every output store work on accumulators in registers. */
#include <cuda_bf16.h>
#include <limits.h>
#include <math.h>
#include <mma.h>

#include "kernels/cuda/cuda_common.cuh"

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

/* bf16 WMMA needs sm_80; a pass for an older target (the default build may carry compute_75)
 * compiles the kernels empty, and the host sees that (tc_compiled) and runs the fp32 kernels. */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define TC_MMA 1
#else
#define TC_MMA 0
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define TC_DEVICE_MMA 1 /* kernel bodies: device passes with bf16 WMMA only */
#else
#define TC_DEVICE_MMA 0
#endif

enum {
    TC_TILE = 64,              /* queries per query tile, keys per key tile */
    TC_PADH = 8,               /* bf16 row padding (16 bytes): the 8 rows of a fragment load
                                * land on distinct banks */
    TC_LDS = TC_TILE + 4,      /* fp32 score staging row, floats (WMMA wants a multiple of 4) */
    TC_LDP = TC_TILE + TC_PADH,/* bf16 P / dS row */
    TC_MAXD = 256,             /* largest head dim (16 fragments of 16) */
};
enum { TC_VEC_Q = 1, TC_VEC_K = 2, TC_VEC_V = 4, TC_VEC_DO = 8 };
#define TC_LOG2E 1.4426950408889634f
#define TC_LN2 0.6931471805599453f

/* Shapes of one call, fixed on the host. */
struct tc_geom {
    int dqp, dvp;  /* head dims rounded up to 16 */
    int ldq, ldv;  /* shared row strides (bf16) of q/k tiles and v/dout tiles */
    int nqt;       /* query tiles */
    int vec;       /* TC_VEC_*: that tensor allows 16-byte loads */
    float sl2;     /* scale·log2(e): scores in base 2 (exp2) */
};

enum { TC_FE = 8 }; /* elements of a 16×16 fp32 accumulator fragment per lane (256 / 32) */

/* ---- shared-memory layouts: one function per kernel serves the host (size) and device ---- */

struct tc_carve {
    unsigned char *base; /* the dynamic shared memory; unused on the host, which only sizes */
    size_t off;
    __host__ __device__ void *take(size_t bytes) {
#ifdef __CUDA_ARCH__
        void *p = base + off; /* unconditional, so the compiler sees shared memory (ldmatrix) */
#else
        void *p = NULL;
#endif
        off += (bytes + 127) & ~(size_t)127; /* WMMA needs 32-byte aligned fragment pointers */
        return p;
    }
};

struct fwd_smem {
    bf16 *q, *k, *v, *p; /* tiles [64][ldq|ldv]; P: 4 warps × [16][TC_LDP] */
    float *s, *row;      /* scores: 4 warps × [16][TC_LDS]; per-row factors [64] */
};
__host__ __device__ static size_t fwd_layout(const tc_geom &g, unsigned char *base, fwd_smem *L) {
    tc_carve c = {base, 0};
    L->q = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->k = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->v = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldv);
    L->p = (bf16 *)c.take(sizeof(bf16) * TC_TILE * TC_LDP);
    L->s = (float *)c.take(sizeof(float) * TC_TILE * TC_LDS);
    L->row = (float *)c.take(sizeof(float) * TC_TILE);
    return c.off;
}

/* per-query data of the backward: window (empty when invalid), lse·log2(e), D */
struct tc_rows {
    int *lo, *hi;
    float *lse2, *d;
};
__host__ __device__ static void rows_layout(tc_carve *c, tc_rows *R) {
    R->lo = (int *)c->take(sizeof(int) * TC_TILE);
    R->hi = (int *)c->take(sizeof(int) * TC_TILE);
    R->lse2 = (float *)c->take(sizeof(float) * TC_TILE);
    R->d = (float *)c->take(sizeof(float) * TC_TILE);
}

struct dq_smem {
    bf16 *q, *o, *k, *v, *ds; /* q, dout of the query tile; k, v of the key tile; dS per warp */
    tc_rows rows;
};
__host__ __device__ static size_t dq_layout(const tc_geom &g, unsigned char *base, dq_smem *L) {
    tc_carve c = {base, 0};
    L->q = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->o = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldv);
    L->k = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->v = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldv);
    L->ds = (bf16 *)c.take(sizeof(bf16) * TC_TILE * TC_LDP);
    rows_layout(&c, &L->rows);
    return c.off;
}

struct kv_smem {
    bf16 *k, *v, *q, *o; /* key tile k, v; query tile q, dout */
    bf16 *pt, *dst;      /* Pᵀ and dSᵀ: 4 key groups × [16][TC_LDP] */
    float *px;           /* fp32 P of each group in fragment order: [4][4][TC_FE][32] */
    tc_rows rows;
};
__host__ __device__ static size_t kv_layout(const tc_geom &g, unsigned char *base, kv_smem *L) {
    tc_carve c = {base, 0};
    L->k = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->v = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldv);
    L->q = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldq);
    L->o = (bf16 *)c.take(sizeof(bf16) * TC_TILE * g.ldv);
    L->pt = (bf16 *)c.take(sizeof(bf16) * TC_TILE * TC_LDP);
    L->dst = (bf16 *)c.take(sizeof(bf16) * TC_TILE * TC_LDP);
    L->px = (float *)c.take(sizeof(float) * 16 * TC_FE * 32);
    rows_layout(&c, &L->rows);
    return c.off;
}

/* ---- device helpers ---- */
#if TC_MMA
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;
static_assert((int)frag_c::num_elements == (int)TC_FE, "accumulator fragment size");

/* Rows [0, n) of a strided fp32 matrix (row r at src + r·st, d columns) into a 64-row bf16 tile
 * with row stride ld, rounded to nearest. Columns [d, dp) and rows [n, 64) become zero: padding
 * must be finite, since it meets zero probabilities in P·V and 0·NaN would poison the sums.
 * vec: 16-byte loads (src and st 16-byte aligned, d % 4 == 0); otherwise scalar loads. */
__device__ __forceinline__ void tile_to_smem(bf16 *dst, int ld, const float *src, int64_t st, int n,
                                             int d, int dp, int vec) {
    const unsigned quads = (unsigned)dp / 4, total = TC_TILE * quads;
#pragma unroll 4
    for (unsigned i = threadIdx.x; i < total; i += blockDim.x) {
        const unsigned r = i / quads, c = (i - r * quads) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if ((int)r < n && (int)c < d) {
            const float *s = src + (int64_t)r * st + c;
            if (vec) {
                x = __ldg(reinterpret_cast<const float4 *>(s));
            } else {
                x.x = __ldg(s);
                if ((int)c + 1 < d) x.y = __ldg(s + 1);
                if ((int)c + 2 < d) x.z = __ldg(s + 2);
                if ((int)c + 3 < d) x.w = __ldg(s + 3);
            }
        }
        __nv_bfloat162 *o = reinterpret_cast<__nv_bfloat162 *>(dst + r * ld + c);
        o[0] = __floats2bfloat162_rn(x.x, x.y);
        o[1] = __floats2bfloat162_rn(x.z, x.w);
    }
}

/* id[e] = row·16 + column of accumulator element e within its 16×16 tile (the same for every
 * frag_c of this thread), read off a fragment loaded from a table of those numbers. tmp: 256
 * floats of the warp's own shared memory, 32-byte aligned. */
__device__ __forceinline__ void frag_ids(int (&id)[TC_FE], float *tmp) {
    const int lane = threadIdx.x & 31;
    for (int i = lane; i < 256; i += 32) tmp[i] = (float)i;
    __syncwarp();
    frag_c f;
    wmma::load_matrix_sync(f, tmp, 16, wmma::mem_row_major);
#pragma unroll
    for (int e = 0; e < TC_FE; e++) id[e] = (int)f.x[e];
    __syncwarp();
}

/* acc[n] = A·Bᵀ, n < 4: the 16 rows of A (bf16, row stride lda) against rows [16n, 16n + 16) of
 * B (bf16, row stride ldb), over kt chunks of 16 of the shared dimension. */
__device__ __forceinline__ void mma_abt(frag_c (&acc)[4], const bf16 *A, int lda, const bf16 *B,
                                        int ldb, int kt) {
#pragma unroll
    for (int n = 0; n < 4; n++) wmma::fill_fragment(acc[n], 0.0f);
    for (int kk = 0; kk < kt; kk++) {
        frag_a a;
        wmma::load_matrix_sync(a, A + kk * 16, lda);
#pragma unroll
        for (int n = 0; n < 4; n++) {
            frag_bt b;
            wmma::load_matrix_sync(b, B + n * 16 * ldb + kk * 16, ldb);
            wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

/* acc[j] += A·B[:, 16j, 16j + 16) for j < nt: A is 16×64 (bf16, row stride lda), B is 64 rows
 * (bf16, row stride ldb). N is a compile-time bound on nt, so acc stays in registers. */
template <int N>
__device__ __forceinline__ void mma_ab_acc(frag_c (&acc)[N], const bf16 *A, int lda, const bf16 *B,
                                           int ldb, int nt) {
#pragma unroll 1
    for (int kk = 0; kk < TC_TILE / 16; kk++) {
        frag_a a;
        wmma::load_matrix_sync(a, A + kk * 16, lda);
#pragma unroll
        for (int j = 0; j < N; j++) {
            if (j < nt) {
                frag_b b;
                wmma::load_matrix_sync(b, B + kk * 16 * ldb + j * 16, ldb);
                wmma::mma_sync(acc[j], a, b, acc[j]);
            }
        }
    }
}

/* The windows of queries [t0, t0 + 64) of the backward into shared memory; invalid windows (the
 * forward flagged them) and rows past T are empty, so they get zero gradients, as in the fp32
 * kernels. */
__device__ __forceinline__ void rows_to_smem(const v3_attn_params &p, int64_t h, int64_t t0,
                                             const float *D, const tc_rows &R) {
    for (int i = threadIdx.x; i < TC_TILE; i += blockDim.x) {
        const int64_t t = t0 + i;
        int lo = 0, hi = 0;
        float lse2 = 0.0f, d = 0.0f;
        if (t < p.T) {
            lo = p.kv_lo[t], hi = p.kv_hi[t];
            if (lo < 0 || hi > p.Tk || lo >= hi) lo = hi = 0;
            else lse2 = p.lse[t * p.H + h] * TC_LOG2E, d = D[t * p.H + h];
        }
        R.lo[i] = lo, R.hi[i] = hi, R.lse2[i] = lse2, R.d[i] = d;
    }
}

/* One key tile of the online softmax for row r of the warp's staged scores S (this lane takes
 * half of the row's 64 columns, interleaved; rows r and r + 8 are offset by one column pair so
 * the 32 lanes hit 32 banks). Updates the running max m and sum l (base 2, fp32; both lanes of
 * a row end with the same bits), writes P (bf16) and the factor that rescales the row's output
 * to row[r]. Keys outside [lo, hi) get probability 0; a row with no key yet keeps m = -inf. */
__device__ __forceinline__ void softmax_tile(const float *S, bf16 *P, float *row, int r, int half,
                                             int64_t s0, int lo, int hi, float sl2, float &m,
                                             float &l) {
    const int rot = r >> 3;
    float mx = -INFINITY;
#pragma unroll 8
    for (int j = 0; j < 32; j++) {
        const int c = 2 * ((j + rot) & 31) + half;
        const int64_t s = s0 + c;
        if (s >= lo && s < hi) mx = fmaxf(mx, S[r * TC_LDS + c] * sl2);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mn = fmaxf(m, mx);
    const float corr = mn == -INFINITY ? 1.0f : exp2f(m - mn); /* 0 when m was -inf */
    float sum = 0.0f;
#pragma unroll 8
    for (int j = 0; j < 32; j++) {
        const int c = 2 * ((j + rot) & 31) + half;
        const int64_t s = s0 + c;
        const float e = s >= lo && s < hi ? exp2f(S[r * TC_LDS + c] * sl2 - mn) : 0.0f;
        sum += e;
        P[r * TC_LDP + c] = __float2bfloat16(e);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * corr + sum;
    m = mn;
    if (!half) row[r] = corr;
}

/* Stores the accumulators of the warp's 16 rows: dst[((r0 + rr)·H + h)·d + col] = acc·mul·f,
 * f = rowmul[rr] (1 when NULL; f = 0 writes 0, whatever acc holds), for rows below nrows and
 * columns below d (16·nt columns hold data). */
template <int N>
__device__ __forceinline__ void store_acc(const frag_c (&acc)[N], const int (&id)[TC_FE],
                                          float *dst, int64_t r0, int64_t nrows, int64_t H, int64_t h,
                                          int64_t d, int nt, float mul, const float *rowmul) {
#pragma unroll
    for (int e = 0; e < TC_FE; e++) {
        const int rr = id[e] >> 4, c = id[e] & 15;
        if (r0 + rr >= nrows) continue;
        const float f = rowmul ? rowmul[rr] : 1.0f;
        float *o = dst + ((r0 + rr) * H + h) * d;
#pragma unroll
        for (int j = 0; j < N; j++) {
            const int col = j * 16 + c;
            if (j < nt && col < d) o[col] = f > 0.0f ? acc[j].x[e] * mul * f : 0.0f;
        }
    }
}

/* dQ kernel: dS = P ⊙ (dP − D) of the warp's 16 queries (rows i0 + rr of the tile) against the
 * key tile at s0, P = exp2(S·scale·log2e − lse2) inside each query's window, to bf16 in ds. */
__device__ __forceinline__ void ds_rows(const frag_c (&sc)[4], const frag_c (&dp)[4],
                                        const int (&id)[TC_FE], const tc_rows &R, int i0,
                                        int64_t s0, float sl2, bf16 *ds) {
#pragma unroll
    for (int e = 0; e < TC_FE; e++) {
        const int rr = id[e] >> 4, c = id[e] & 15, i = i0 + rr;
        const int lo = R.lo[i], hi = R.hi[i];
        const float lse2 = R.lse2[i], d = R.d[i];
#pragma unroll
        for (int n = 0; n < 4; n++) {
            const int64_t s = s0 + n * 16 + c;
            const float pr = s >= lo && s < hi ? exp2f(sc[n].x[e] * sl2 - lse2) : 0.0f;
            ds[rr * TC_LDP + n * 16 + c] = __float2bfloat16(pr * (dp[n].x[e] - d));
        }
    }
}

/* dK/dV kernel, dV warps: Pᵀ of keys sg + rr against the query tile (columns), from Sᵀ; to bf16
 * in pt for dV and in fp32 to px, in fragment order, for the dK warp of the same keys. */
__device__ __forceinline__ void probs_t(const frag_c (&st)[4], const int (&id)[TC_FE],
                                        const tc_rows &R, int64_t sg, float sl2, float *px,
                                        bf16 *pt) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int e = 0; e < TC_FE; e++) {
        const int rr = id[e] >> 4, c = id[e] & 15;
        const int64_t s = sg + rr;
#pragma unroll
        for (int n = 0; n < 4; n++) {
            const int i = n * 16 + c;
            const float pr =
                s >= R.lo[i] && s < R.hi[i] ? exp2f(st[n].x[e] * sl2 - R.lse2[i]) : 0.0f;
            px[(n * TC_FE + e) * 32 + lane] = pr;
            pt[rr * TC_LDP + n * 16 + c] = __float2bfloat16(pr);
        }
    }
}

/* dK/dV kernel, dK warps: dSᵀ = Pᵀ ⊙ (dPᵀ − D) from the dV warp's px (same element order), to
 * bf16 in dst. */
__device__ __forceinline__ void ds_t(const frag_c (&dpt)[4], const int (&id)[TC_FE],
                                     const tc_rows &R, const float *px, bf16 *dst) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int e = 0; e < TC_FE; e++) {
        const int rr = id[e] >> 4, c = id[e] & 15;
#pragma unroll
        for (int n = 0; n < 4; n++) {
            const float pr = px[(n * TC_FE + e) * 32 + lane];
            dst[rr * TC_LDP + n * 16 + c] = __float2bfloat16(pr * (dpt[n].x[e] - R.d[n * 16 + c]));
        }
    }
}
#endif /* TC_MMA */

/* ---- kernels ---- */

/* bounds[i] = union [lo, hi) of the valid, non-empty windows of query tile i ((0, 0) if none);
 * one warp per tile. */
__global__ void k_tc_bounds(v3_attn_params p, int nqt, int2 *bounds) {
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= nqt) return;
    int lo = INT_MAX, hi = 0;
    for (int i = lane; i < TC_TILE; i += 32) {
        const int64_t t = w * TC_TILE + i;
        if (t >= p.T) break;
        const int a = p.kv_lo[t], b = p.kv_hi[t];
        if (a >= 0 && b <= p.Tk && a < b) lo = min(lo, a), hi = max(hi, b);
    }
    for (int o = 16; o > 0; o >>= 1) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane == 0) bounds[w] = lo < hi ? make_int2(lo, hi) : make_int2(0, 0);
}

/* D[th] = <dout, out> of row th; one warp per row, fixed lane order and butterfly */
__global__ void k_tc_rowdot(const float *dout, const float *out, int64_t rows, int64_t d,
                            float *D) {
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= rows) return;
    float s = 0.0f;
    for (int64_t i = lane; i < d; i += 32) s += dout[w * d + i] * out[w * d + i];
    s = cu_warp_sum(s);
    if (lane == 0) D[w] = s;
}

/* Forward; grid (H, query tiles), the heaviest tiles (last: longest causal windows) first. NV
 * bounds the output fragments per warp (d_v / 16, rounded up). */
template <int NV>
__global__ void __launch_bounds__(128) k_tc_fwd(v3_attn_params p, tc_geom g, const int2 *bounds,
                                                const float *D, int *flags) {
#if TC_DEVICE_MMA
    extern __shared__ __align__(128) unsigned char tc_smem[];
    fwd_smem L;
    fwd_layout(g, tc_smem, &L);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t h = blockIdx.x, qt = g.nqt - 1 - (int64_t)blockIdx.y, t0 = qt * TC_TILE;
    float *sS = L.s + warp * 16 * TC_LDS, *row = L.row + warp * 16;
    bf16 *sP = L.p + warp * 16 * TC_LDP;
    int id[TC_FE];
    frag_ids(id, sS);

    /* this lane's softmax row: two lanes per row */
    const int r = lane >> 1, half = lane & 1;
    const int64_t t = t0 + warp * 16 + r;
    int lo = 0, hi = 0, bad = 0;
    if (t < p.T) {
        lo = p.kv_lo[t], hi = p.kv_hi[t];
        bad = lo < 0 || hi > p.Tk || lo > hi;
        if (bad) lo = hi = 0;
    }
    tile_to_smem(L.q, g.ldq, p.q + t0 * p.q_st + h * p.q_sh, p.q_st,
                 (int)min((int64_t)TC_TILE, p.T - t0), (int)p.d_qk, g.dqp, g.vec & TC_VEC_Q);

    frag_c o[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) wmma::fill_fragment(o[j], 0.0f);
    float m = -INFINITY, l = 0.0f;
    const int2 kb = bounds[qt];
    for (int64_t s0 = kb.x; s0 < kb.y; s0 += TC_TILE) {
        const int nk = (int)min((int64_t)TC_TILE, (int64_t)kb.y - s0);
        __syncthreads(); /* the previous tile's readers are done */
        tile_to_smem(L.k, g.ldq, p.k + s0 * p.k_st + h * p.k_sh, p.k_st, nk, (int)p.d_qk, g.dqp,
                     g.vec & TC_VEC_K);
        tile_to_smem(L.v, g.ldv, p.v + s0 * p.v_st + h * p.v_sh, p.v_st, nk, (int)p.d_v, g.dvp,
                     g.vec & TC_VEC_V);
        __syncthreads();
        frag_c sc[4];
        mma_abt(sc, L.q + warp * 16 * g.ldq, g.ldq, L.k, g.ldq, g.dqp / 16);
#pragma unroll
        for (int n = 0; n < 4; n++)
            wmma::store_matrix_sync(sS + n * 16, sc[n], TC_LDS, wmma::mem_row_major);
        __syncwarp();
        softmax_tile(sS, sP, row, r, half, s0, lo, hi, g.sl2, m, l);
        __syncwarp();
#pragma unroll
        for (int e = 0; e < TC_FE; e++) {
            const float cf = row[id[e] >> 4];
#pragma unroll
            for (int j = 0; j < NV; j++) o[j].x[e] *= cf;
        }
        mma_ab_acc<NV>(o, sP, TC_LDP, L.v, g.ldv, g.dvp / 16);
    }

    /* lse and 1/l of this lane's row; then every lane stores its output elements. Empty window:
     * zero output, lse = -inf; invalid window: flagged, zero output, lse = NaN (as k_attn_fwd). */
    __syncwarp(); /* the last rescale's reads of row[] are done */
    if (!half) {
        row[r] = l > 0.0f ? 1.0f / l : 0.0f;
        if (t < p.T) {
            p.lse[t * p.H + h] = bad ? NAN : l > 0.0f ? (m + log2f(l)) * TC_LN2 : -INFINITY;
            if (bad) cu_flag(flags, CU_FLAG_ATTN_WINDOW);
        }
    }
    __syncwarp();
    store_acc<NV>(o, id, p.out, t0 + warp * 16, p.T, p.H, h, p.d_v, g.dvp / 16, 1.0f, row);
#endif
}

/* dQ = scale·Σ_keys dS·K; grid (H, query tiles), heaviest first, 4 warps × 16 query rows. */
template <int NQ>
__global__ void __launch_bounds__(128, NQ <= 6 ? 3 : 1)
    k_tc_dq(v3_attn_params p, tc_geom g, const int2 *bounds, const float *D, int *flags) {
#if TC_DEVICE_MMA
    extern __shared__ __align__(128) unsigned char tc_smem[];
    dq_smem L;
    dq_layout(g, tc_smem, &L);
    const int warp = threadIdx.x >> 5;
    const int64_t h = blockIdx.x, qt = g.nqt - 1 - (int64_t)blockIdx.y, t0 = qt * TC_TILE;
    bf16 *sds = L.ds + warp * 16 * TC_LDP;
    int id[TC_FE];
    frag_ids(id, reinterpret_cast<float *>(sds));

    const int nr = (int)min((int64_t)TC_TILE, p.T - t0);
    rows_to_smem(p, h, t0, D, L.rows);
    tile_to_smem(L.q, g.ldq, p.q + t0 * p.q_st + h * p.q_sh, p.q_st, nr, (int)p.d_qk, g.dqp,
                 g.vec & TC_VEC_Q);
    tile_to_smem(L.o, g.ldv, p.dout + (t0 * p.H + h) * p.d_v, p.H * p.d_v, nr, (int)p.d_v, g.dvp,
                 g.vec & TC_VEC_DO);

    frag_c acc[NQ];
#pragma unroll
    for (int j = 0; j < NQ; j++) wmma::fill_fragment(acc[j], 0.0f);
    const int2 kb = bounds[qt];
    for (int64_t s0 = kb.x; s0 < kb.y; s0 += TC_TILE) {
        const int nk = (int)min((int64_t)TC_TILE, (int64_t)kb.y - s0);
        __syncthreads();
        tile_to_smem(L.k, g.ldq, p.k + s0 * p.k_st + h * p.k_sh, p.k_st, nk, (int)p.d_qk, g.dqp,
                     g.vec & TC_VEC_K);
        tile_to_smem(L.v, g.ldv, p.v + s0 * p.v_st + h * p.v_sh, p.v_st, nk, (int)p.d_v, g.dvp,
                     g.vec & TC_VEC_V);
        __syncthreads();
        frag_c sc[4], dp[4];
        mma_abt(sc, L.q + warp * 16 * g.ldq, g.ldq, L.k, g.ldq, g.dqp / 16);
        mma_abt(dp, L.o + warp * 16 * g.ldv, g.ldv, L.v, g.ldv, g.dvp / 16);
        ds_rows(sc, dp, id, L.rows, warp * 16, s0, g.sl2, sds);
        __syncwarp();
        mma_ab_acc<NQ>(acc, sds, TC_LDP, L.k, g.ldq, g.dqp / 16);
    }

    store_acc<NQ>(acc, id, p.dq, t0 + warp * 16, p.T, p.H, h, p.d_qk, g.dqp / 16, p.scale, NULL);
#endif
}

/* dK and dV of one key tile; grid (H, key tiles), 8 warps: warp w < 4 owns dV of keys
 * [16w, 16w + 16) of the tile, warp w + 4 owns their dK. Query tiles in increasing order. N
 * bounds the fragments per warp (max of d_qk, d_v over 16, rounded up). */
template <int N>
__global__ void __launch_bounds__(256, N <= 4 ? 2 : 1)
    k_tc_dkdv(v3_attn_params p, tc_geom g, const int2 *bounds, const float *D, int *flags) {
#if TC_DEVICE_MMA
    extern __shared__ __align__(128) unsigned char tc_smem[];
    kv_smem L;
    kv_layout(g, tc_smem, &L);
    const int warp = threadIdx.x >> 5;
    const int is_k = warp >> 2, grp = warp & 3; /* is_k: this warp accumulates dK, else dV */
    const int64_t h = blockIdx.x, s0 = (int64_t)blockIdx.y * TC_TILE;
    const int nk = (int)min((int64_t)TC_TILE, p.Tk - s0);
    const int64_t sg = s0 + grp * 16; /* first key of the group */
    bf16 *mine = (is_k ? L.dst : L.pt) + grp * 16 * TC_LDP; /* this warp's Pᵀ or dSᵀ */
    float *px = L.px + grp * 4 * TC_FE * 32;
    int id[TC_FE];
    frag_ids(id, reinterpret_cast<float *>(mine));

    tile_to_smem(L.k, g.ldq, p.k + s0 * p.k_st + h * p.k_sh, p.k_st, nk, (int)p.d_qk, g.dqp,
                 g.vec & TC_VEC_K);
    tile_to_smem(L.v, g.ldv, p.v + s0 * p.v_st + h * p.v_sh, p.v_st, nk, (int)p.d_v, g.dvp,
                 g.vec & TC_VEC_V);
    const int nqk = g.dqp / 16, nvt = g.dvp / 16;
    frag_c acc[N];
#pragma unroll
    for (int j = 0; j < N; j++) wmma::fill_fragment(acc[j], 0.0f);

    for (int qt = 0; qt < g.nqt; qt++) {
        const int2 qb = bounds[qt];
        if (qb.x >= s0 + nk || qb.y <= s0) continue; /* no window of the tile meets these keys */
        const int64_t tq0 = (int64_t)qt * TC_TILE;
        const int nr = (int)min((int64_t)TC_TILE, p.T - tq0);
        __syncthreads(); /* the previous query tile's readers are done */
        rows_to_smem(p, h, tq0, D, L.rows);
        tile_to_smem(L.q, g.ldq, p.q + tq0 * p.q_st + h * p.q_sh, p.q_st, nr, (int)p.d_qk, g.dqp,
                     g.vec & TC_VEC_Q);
        tile_to_smem(L.o, g.ldv, p.dout + (tq0 * p.H + h) * p.d_v, p.H * p.d_v, nr, (int)p.d_v,
                     g.dvp, g.vec & TC_VEC_DO);
        __syncthreads();
        /* x: Sᵀ (dV warps) or dPᵀ (dK warps), rows = the group's 16 keys, columns = queries */
        frag_c x[4];
        if (!is_k) {
            mma_abt(x, L.k + grp * 16 * g.ldq, g.ldq, L.q, g.ldq, nqk);
            probs_t(x, id, L.rows, sg, g.sl2, px, mine);
        } else {
            mma_abt(x, L.v + grp * 16 * g.ldv, g.ldv, L.o, g.ldv, nvt);
        }
        __syncthreads(); /* px complete */
        if (!is_k) {
            mma_ab_acc<N>(acc, mine, TC_LDP, L.o, g.ldv, nvt); /* dV += Pᵀ·dO */
        } else {
            ds_t(x, id, L.rows, px, mine);
            __syncwarp();
            mma_ab_acc<N>(acc, mine, TC_LDP, L.q, g.ldq, nqk); /* dK += dSᵀ·Q */
        }
    }

    if (is_k) store_acc<N>(acc, id, p.dk, sg, p.Tk, p.H, h, p.d_qk, nqk, p.scale, NULL);
    else store_acc<N>(acc, id, p.dv, sg, p.Tk, p.H, h, p.d_v, nvt, 1.0f, NULL);
#endif
}

/* ---- host side ---- */

typedef void (*tc_kernel)(v3_attn_params, tc_geom, const int2 *, const float *, int *);

/* Instances by fragments per warp: 4, 6, 8, 12, 16 (head dim ≤ 64, 96, 128, 192, 256); a
 * bound above the need costs registers, so the presets' dims (96/64, 192/128) have their own. */
static int tc_bucket(int dp) {
    int n = dp / 16;
    return n <= 4 ? 0 : n <= 6 ? 1 : n <= 8 ? 2 : n <= 12 ? 3 : 4;
}

static const tc_kernel tc_fwd_k[5] = {k_tc_fwd<4>, k_tc_fwd<6>, k_tc_fwd<8>, k_tc_fwd<12>,
                                      k_tc_fwd<16>};
static const tc_kernel tc_dq_k[5] = {k_tc_dq<4>, k_tc_dq<6>, k_tc_dq<8>, k_tc_dq<12>,
                                     k_tc_dq<16>};
static const tc_kernel tc_kv_k[5] = {k_tc_dkdv<4>, k_tc_dkdv<6>, k_tc_dkdv<8>, k_tc_dkdv<12>,
                                     k_tc_dkdv<16>};

static int aligned16(const void *ptr) { return ((uintptr_t)ptr & 15) == 0; }

/* The call's geometry, or 0 when the tensor-core path does not take it (head dims, grid limits,
 * a device before sm_80, shared memory): the caller then runs the fp32 kernels. */
static int tc_geom_init(v3_kctx *ctx, const v3_attn_params *p, tc_geom *g) {
    if (p->d_qk <= 0 || p->d_v <= 0 || p->d_qk > TC_MAXD || p->d_v > TC_MAXD) return 0;
    if (p->H > INT_MAX || p->Tk > INT_MAX || (p->T + TC_TILE - 1) / TC_TILE > 65535 ||
        (p->Tk + TC_TILE - 1) / TC_TILE > 65535)
        return 0;
    int dev = cu_state(ctx)->device, major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        major < 8)
        return 0;
    g->dqp = (int)(p->d_qk + 15) / 16 * 16;
    g->dvp = (int)(p->d_v + 15) / 16 * 16;
    g->ldq = g->dqp + TC_PADH;
    g->ldv = g->dvp + TC_PADH;
    g->nqt = (int)((p->T + TC_TILE - 1) / TC_TILE);
    g->sl2 = p->scale * TC_LOG2E;
    g->vec = 0;
    if (aligned16(p->q) && p->q_st % 4 == 0 && p->q_sh % 4 == 0 && p->d_qk % 4 == 0)
        g->vec |= TC_VEC_Q;
    if (aligned16(p->k) && p->k_st % 4 == 0 && p->k_sh % 4 == 0 && p->d_qk % 4 == 0)
        g->vec |= TC_VEC_K;
    if (aligned16(p->v) && p->v_st % 4 == 0 && p->v_sh % 4 == 0 && p->d_v % 4 == 0)
        g->vec |= TC_VEC_V;
    if (aligned16(p->dout) && p->d_v % 4 == 0) g->vec |= TC_VEC_DO;
    return 1;
}

/* The kernel's code was generated for sm_80 or later (else its body is empty: TC_MMA). */
static int tc_compiled(tc_kernel k) {
    cudaFuncAttributes a;
    if (cudaFuncGetAttributes(&a, k) != cudaSuccess) {
        cudaGetLastError(); /* not a failure of the op: the fp32 kernels run instead */
        return 0;
    }
    return a.ptxVersion >= 80;
}

static int tc_smem_fits(v3_kctx *ctx, size_t bytes) {
    int lim = 0;
    if (cudaDeviceGetAttribute(&lim, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                               cu_state(ctx)->device) != cudaSuccess)
        return 0;
    return bytes <= (size_t)lim;
}

/* Opts the kernel in to `smem` bytes of dynamic shared memory (above the default 48 KB) and
 * launches it; returns non-zero after a recorded failure. */
static int tc_launch(v3_kctx *ctx, tc_kernel k, const char *name, dim3 grid, int threads,
                     size_t smem, const v3_attn_params *p, const tc_geom *g, const int2 *bounds,
                     const float *D) {
    if (cu_check_(ctx, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)smem),
                  name, __FILE__, __LINE__))
        return 1;
    k<<<grid, threads, smem, cu_stream(ctx)>>>(*p, *g, bounds, D, cu_state(ctx)->flags);
    return cu_check_(ctx, cudaGetLastError(), name, __FILE__, __LINE__);
}

static int tc_bounds(v3_kctx *ctx, const v3_attn_params *p, const tc_geom *g, int2 *bounds) {
    k_tc_bounds<<<cu_blocks((int64_t)g->nqt * 32, 128), 128, 0, cu_stream(ctx)>>>(*p, g->nqt,
                                                                                  bounds);
    return CU_LAUNCH_CHECK(ctx, "k_tc_bounds");
}

extern "C" int cu_attention_tc_fwd(v3_kctx *ctx, const v3_attn_params *p) {
    tc_geom g;
    if (!tc_geom_init(ctx, p, &g)) return 0;
    fwd_smem L;
    size_t smem = fwd_layout(g, NULL, &L);
    tc_kernel k = tc_fwd_k[tc_bucket(g.dvp)];
    if (!tc_compiled(k) || !tc_smem_fits(ctx, smem)) return 0;
    int2 *bounds = (int2 *)cu_scratch(ctx, sizeof(int2) * (size_t)g.nqt);
    if (!bounds || tc_bounds(ctx, p, &g, bounds)) return 1;
    tc_launch(ctx, k, "launch k_tc_fwd", dim3((unsigned)p->H, g.nqt), 128, smem, p, &g, bounds,
              NULL);
    return 1;
}

extern "C" int cu_attention_tc_bwd(v3_kctx *ctx, const v3_attn_params *p) {
    tc_geom g;
    if (!tc_geom_init(ctx, p, &g)) return 0;
    dq_smem Lq;
    kv_smem Lk;
    size_t smem_q = dq_layout(g, NULL, &Lq), smem_k = kv_layout(g, NULL, &Lk);
    tc_kernel kq = tc_dq_k[tc_bucket(g.dqp)];
    tc_kernel kkv = tc_kv_k[tc_bucket(g.dqp > g.dvp ? g.dqp : g.dvp)];
    if (!tc_compiled(kq) || !tc_compiled(kkv) ||
        !tc_smem_fits(ctx, smem_q > smem_k ? smem_q : smem_k))
        return 0;
    /* scratch: bounds [nqt] int2, then D [T·H] */
    size_t boff = (sizeof(int2) * (size_t)g.nqt + 255) & ~(size_t)255;
    size_t bytes = boff + sizeof(float) * (size_t)(p->T * p->H);
    unsigned char *scr = (unsigned char *)cu_scratch(ctx, bytes);
    if (!scr) return 1;
    int2 *bounds = (int2 *)scr;
    float *D = (float *)(scr + boff);
    if (tc_bounds(ctx, p, &g, bounds)) return 1;
    k_tc_rowdot<<<cu_blocks(p->T * p->H * 32, 128), 128, 0, cu_stream(ctx)>>>(
        p->dout, p->out, p->T * p->H, p->d_v, D);
    if (CU_LAUNCH_CHECK(ctx, "k_tc_rowdot")) return 1;
    if (p->Tk > 0 &&
        tc_launch(ctx, kkv, "launch k_tc_dkdv",
                  dim3((unsigned)p->H, (unsigned)((p->Tk + TC_TILE - 1) / TC_TILE)), 256, smem_k,
                  p, &g, bounds, D))
        return 1;
    tc_launch(ctx, kq, "launch k_tc_dq", dim3((unsigned)p->H, g.nqt), 128, smem_q, p, &g, bounds,
              D);
    return 1;
}
