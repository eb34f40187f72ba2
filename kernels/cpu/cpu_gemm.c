/* cpu_gemm.c — fp32 GEMM family (plain, strided-batched, grouped) for the CPU backend.
 *
 * Why not cblas_sgemm: OpenBLAS 0.3.21 is not batch-invariant. Measured on this project's build
 * machine (Zen kernels), row i of C differs in its last bits between M = 1 and M = 300 for ordinary
 * shapes (K = N = 64), because OpenBLAS picks different micro-kernels and K-splits by problem size
 * and thread partition. The rollout engine needs the logprob of a token to be bit-identical whether
 * it was computed alone (decoding) or in a batch (the trainer's recompute), so this file computes
 * every element C[i,j] by ONE fixed sequence:
 *     acc = 0; for k = 0..K-1: acc = fmaf(a(i,k), b(k,j), acc);   C = alpha*acc (+ beta*C)
 * with one fused multiply-add (one rounding) per k: the AVX2 kernels' vfmadd and the portable
 * kernel's fmaf give the same bits. (Until 2026-11-23 it was a rounded product then a rounded sum:
 * 24 floating-point instructions per k of the six-row kernel instead of 12; alternated calls in one
 * process ran 10-48 % faster with the FMA on the model's shapes.) Tiling, K-blocking (the float
 * accumulator is parked in a buffer between K blocks, which does not change its value), packing,
 * padding rows/columns and threading only decide WHICH thread runs that sequence and when, never
 * its order, so the result is independent of M, of the row's position, of the thread count, of
 * how problems are grouped and of the vector width. tests/unit/test_ops.c checks this bitwise;
 * bench/bench_gemm.c shows it beside OpenBLAS and checks that both micro-kernels agree.
 *
 * Structure: every call (plain, strided-batched, grouped) becomes a list of problems, each cut
 * into tiles of rows × columns; one OpenMP region runs all tiles of all problems (dynamic
 * schedule), so the experts of a grouped call share one fork/join. A tile walks K in blocks; per
 * block, for each 16-column strip of op(B) (packed into a per-thread buffer, or read in place
 * when B is not transposed and few rows use it), a 6×16 micro-kernel runs over the tile's groups
 * of six rows. The last M mod 6 rows (all of them when M < 6: decode, MTP verification, routed
 * experts with few rows) run on few-row kernels instead of recomputing or padding rows: 1×64,
 * 2×32, 3×16, 4×16, 5×16 register tiles over panels of up to four strips, and, with B
 * transposed and at most 3 rows in all, a kernel that reads B's rows in place and transposes
 * 8×8 blocks in registers (no packed strip: a GEMV over x · Wᵀ). Each runs the same per-element
 * sequence, so a row computed alone equals the same row inside any batch. A plain A is read in
 * place (one broadcast per row and k); a transposed A is packed per tile and block into panels
 * of six adjacent values per k. A B packed once beforehand (cpu_pack_nt; the rollout engine's
 * copies of the weights a decode step reads, found through ctx->wpacks) is read as the strips the
 * packing would have made, by the same kernels: a decode step's GEMVs then stream contiguous
 * arrays instead of transposing 16 rows at a time (the lm_head alone: batch-1 decode on small
 * 1.18-1.31x, 2 threads). A weight whose every value is a bf16 (a bf16 checkpoint, untrained) may
 * be packed as bf16, half the bytes: the few-row kernels widen each value back to the same float
 * (a shift), so the products and bits are unchanged; only memory traffic halves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/dtype.h"
#include "cpu_internal.h"

/* The epilogue (alpha*acc + beta*c) must not be contracted into an FMA (it would be under
 * -march=native with GNU C's default -ffp-contract=fast): store_tile and store_avx2 must round
 * alike. ISO C mode (our CMake default) already implies this; the products use explicit FMAs. */
#pragma GCC optimize("fp-contract=off")

enum {
    MR = 6,   /* rows per micro-tile */
    NR = 16,  /* columns per micro-tile (two AVX2 vectors) */
    MC = 96,  /* rows per tile (a multiple of MR) */
    NC = 256, /* columns per tile (a multiple of NR) */
    KC = 256, /* K block when K > KMAX1 */
    KMAX1 = 640, /* K up to this runs as one block */
    KMAXT = 384, /* the same when A is transposed (its packed block is MC × K) */
    NP = 4,      /* strips per panel: the widest few-row tile is 1 × NP·NR */
    DKR = 3,     /* calls of up to this many rows with B transposed read B in place (dk_body) */
    PFD = 8      /* rows ahead that the packing routines prefetch */
};

/* ---------------------------------------------------------------- micro-kernels */

/* acc[MR][NR] (=, or += when load) Σ_k ar[r][k*aks] · b[k*bks + j], k = 0..kc-1 in order.
 * Both versions perform, per element and k, one fused multiply-add. */
typedef void ukernel_fn(int64_t kc, const float *const ar[MR], int64_t aks, const float *b,
                        int64_t bks, float *acc, int load);

/* The few-row kernels: rows r < mr (1..5; MR for the portable six-row one) of ns strips of NR
 * columns, strip s read at b + s*ss (row stride bks), its accumulators at acc + s*accs (row r at
 * + r*NR); A as for the 6-row kernel.
 * They run the calls with M < MR (decode: one row per sequence, two for MTP verification, the
 * routed experts' few rows) and the last M mod MR rows of any call: the same per-element sequence
 * as the 6-row kernel (so the same bits), without computing MR - mr discarded rows. */
static const int tk_ns[MR] = {0, 4, 2, 1, 1, 1}; /* strips per AVX2 call, by rows (tk_body) */

static void tkernel_scalar(int mr, int ns, int64_t kc, const float *const ar[MR], int64_t aks,
                           const float *b, int64_t bks, int64_t ss, float *acc, int64_t accs,
                           int load) {
    for (int s = 0; s < ns; s++) {
        float c[MR][NR], *as = acc + s * accs;
        const float *bs = b + s * ss;
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < NR; j++) c[r][j] = load ? as[r * NR + j] : 0.0f;
        for (int64_t k = 0; k < kc; k++) {
            const float *bk = bs + k * bks;
            for (int r = 0; r < mr; r++) {
                float a = ar[r][k * aks];
                for (int j = 0; j < NR; j++) {
                    c[r][j] = fmaf(a, bk[j], c[r][j]);
                }
            }
        }
        for (int r = 0; r < mr; r++) memcpy(as + r * NR, c[r], sizeof c[r]);
    }
}

/* The portable six-row kernel: the few-row one at mr = MR over one strip. */
static void ukernel_scalar(int64_t kc, const float *const ar[MR], int64_t aks, const float *b,
                           int64_t bks, float *acc, int load) {
    tkernel_scalar(MR, 1, kc, ar, aks, b, bks, 0, acc, 0, load);
}

/* tkernel_scalar over prepacked bf16 strips (bp[k][NR], strip s at b + s*ss), A rows in place */
static void tkernel_scalar_bf16(int mr, int ns, int64_t kc, const float *const ar[MR],
                                const uint16_t *b, int64_t ss, float *acc, int64_t accs, int load) {
    for (int s = 0; s < ns; s++) {
        float c[MR][NR], *as = acc + s * accs;
        const uint16_t *bs = b + s * ss;
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < NR; j++) c[r][j] = load ? as[r * NR + j] : 0.0f;
        for (int64_t k = 0; k < kc; k++)
            for (int r = 0; r < mr; r++) {
                float a = ar[r][k];
                for (int j = 0; j < NR; j++) c[r][j] = fmaf(a, v3_bf16_to_f32(bs[k * NR + j]), c[r][j]);
            }
        for (int r = 0; r < mr; r++) memcpy(as + r * NR, c[r], sizeof c[r]);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define V3_HAVE_AVX2_KERNEL 1
/* every function below runs only where the CPU has both (pick_ukernels) */
#define AVX2_FN __attribute__((target("avx2,fma")))
/* The _rows and _cols variants take B as a packed strip (bks == NR). */
#define UK_DECL                                                                                    \
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                             \
    if (load) {                                                                                    \
        c00 = _mm256_loadu_ps(acc + 0), c01 = _mm256_loadu_ps(acc + 8);                            \
        c10 = _mm256_loadu_ps(acc + 16), c11 = _mm256_loadu_ps(acc + 24);                          \
        c20 = _mm256_loadu_ps(acc + 32), c21 = _mm256_loadu_ps(acc + 40);                          \
        c30 = _mm256_loadu_ps(acc + 48), c31 = _mm256_loadu_ps(acc + 56);                          \
        c40 = _mm256_loadu_ps(acc + 64), c41 = _mm256_loadu_ps(acc + 72);                          \
        c50 = _mm256_loadu_ps(acc + 80), c51 = _mm256_loadu_ps(acc + 88);                          \
    } else {                                                                                       \
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 =                   \
            _mm256_setzero_ps();                                                                   \
    }
#define UK_ROW(cr0, cr1, ptr)                                                                      \
    do {                                                                                           \
        __m256 a_ = _mm256_broadcast_ss(ptr);                                                      \
        cr0 = _mm256_fmadd_ps(a_, b0, cr0);                                                        \
        cr1 = _mm256_fmadd_ps(a_, b1, cr1);                                                        \
    } while (0)
/* one k: b points at bp[k][0..NR) */
#define UK_STEP(bptr, p0, p1, p2, p3, p4, p5)                                                      \
    do {                                                                                           \
        __m256 b0 = _mm256_loadu_ps(bptr), b1 = _mm256_loadu_ps((bptr) + 8);                      \
        UK_ROW(c00, c01, p0);                                                                      \
        UK_ROW(c10, c11, p1);                                                                      \
        UK_ROW(c20, c21, p2);                                                                      \
        UK_ROW(c30, c31, p3);                                                                      \
        UK_ROW(c40, c41, p4);                                                                      \
        UK_ROW(c50, c51, p5);                                                                      \
    } while (0)
#define UK_STORE                                                                                   \
    _mm256_storeu_ps(acc + 0, c00), _mm256_storeu_ps(acc + 8, c01);                                \
    _mm256_storeu_ps(acc + 16, c10), _mm256_storeu_ps(acc + 24, c11);                              \
    _mm256_storeu_ps(acc + 32, c20), _mm256_storeu_ps(acc + 40, c21);                              \
    _mm256_storeu_ps(acc + 48, c30), _mm256_storeu_ps(acc + 56, c31);                              \
    _mm256_storeu_ps(acc + 64, c40), _mm256_storeu_ps(acc + 72, c41);                              \
    _mm256_storeu_ps(acc + 80, c50), _mm256_storeu_ps(acc + 88, c51)

/* any A layout (six row pointers, k stride aks), any B row stride bks */
AVX2_FN static void ukernel_avx2(int64_t kc, const float *const ar[MR], int64_t aks, const float *b,
                                 int64_t bks, float *acc, int load) {
    UK_DECL
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    for (int64_t k = 0; k < kc; k++) {
        UK_STEP(b, a0, a1, a2, a3, a4, a5);
        b += bks;
        a0 += aks, a1 += aks, a2 += aks, a3 += aks, a4 += aks, a5 += aks;
    }
    UK_STORE;
}

/* A not transposed (aks == 1): one index for the six rows. Not unrolled: with k unrolled by 4,
 * GCC -O3 interleaved the steps and spilled the twelve accumulators to the stack (NT/NN GEMMs at
 * half speed in Release builds); one step per iteration needs exactly the 16 ymm registers. */
AVX2_FN static void ukernel_avx2_rows(int64_t kc, const float *const ar[MR], int64_t aks,
                                      const float *b, int64_t bks, float *acc, int load) {
    UK_DECL
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    (void)aks;
#pragma GCC unroll 1
    for (int64_t k = 0; k < kc; k++) {
        UK_STEP(b, a0 + k, a1 + k, a2 + k, a3 + k, a4 + k, a5 + k);
        b += bks;
    }
    UK_STORE;
}

/* six adjacent values per k: a(i+r, k) = a[k*aks + r], one pointer (the packed transposed A) */
AVX2_FN static void ukernel_avx2_cols(int64_t kc, const float *const ar[MR], int64_t aks,
                                      const float *b, int64_t bks, float *acc, int load) {
    UK_DECL
    const float *a = ar[0];
    for (int64_t k = 0; k < kc; k++) {
        UK_STEP(b, a, a + 1, a + 2, a + 3, a + 4, a + 5);
        b += NR;
        a += aks;
    }
    UK_STORE;
}

/* The few-row tiles in registers. A fixed-order sum has one dependency chain per element (an add
 * waits 3 cycles for the previous one), so a tile needs about 6+ independent accumulator vectors
 * to keep the two add pipes busy, and all of them plus the broadcast a, the b vectors and one
 * product must fit in the 16 ymm registers: 1 row × 4 strips (1×64: 8 accumulators, 8 b loads
 * per k, which is what a GEMV can use per cycle anyway), 2 × 32 (8), 3 × 16 (6; 3 × 32 would
 * need 18 registers), 4 × 16 (8), 5 × 16 (10). Narrower variants cover a panel's last strips.
 * B: bpack = packed strips (bp[k][NR], strip s at s*KMAX1*NR in the panel buffer) or in place
 * (row stride bks, strip s at s*NR); A: arows = one pointer per row, k stride 1, or the packed
 * transposed panel (a(r, k) = ar[0][k*MR + r]). k is unrolled by 4 with constant offsets. */
typedef void tkernel_fn(int64_t kc, const float *const ar[MR], const float *b, int64_t bks,
                        float *acc, int64_t accs, int load);

AVX2_FN __attribute__((always_inline)) static inline void
tk_body(const int mr, const int ns, const int bpack, const int arows, int64_t kc,
        const float *const ar[MR], const float *b, int64_t bks, float *acc, int64_t accs,
        int load) {
    const int nv = 2 * ns;
    const int64_t ss = bpack ? (int64_t)KMAX1 * NR : NR, aks = arows ? 1 : MR;
    if (bpack) bks = NR;
    __m256 c[MR - 1][2 * NP];
    const float *a[MR - 1];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        a[r] = arows ? ar[r] : ar[0] + r;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            c[r][v] = load ? _mm256_loadu_ps(acc + (v >> 1) * accs + r * NR + (v & 1) * 8)
                           : _mm256_setzero_ps();
    }
    /* one k at A offset u; a packed B is addressed at the constant offset u*NR, an in-place B
     * (runtime row stride) by advancing b after each k */
#define TK_STEP(u)                                                                                 \
    do {                                                                                           \
        const float *bu_ = bpack ? b + (u) * NR : b;                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {                                     \
            __m256 x_ = _mm256_broadcast_ss(a[r] + (u) * aks);                                     \
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) {                                 \
                __m256 b_ = _mm256_loadu_ps(bu_ + (v >> 1) * ss + (v & 1) * 8);                   \
                c[r][v] = _mm256_fmadd_ps(x_, b_, c[r][v]);                                        \
            }                                                                                      \
        }                                                                                          \
        if (!bpack) b += bks;                                                                      \
    } while (0)
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        TK_STEP(0);
        TK_STEP(1);
        TK_STEP(2);
        TK_STEP(3);
        if (bpack) b += 4 * NR;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) a[r] += 4 * aks;
    }
    for (; k < kc; k++) {
        TK_STEP(0);
        if (bpack) b += NR;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) a[r] += aks;
    }
#undef TK_STEP
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(acc + (v >> 1) * accs + r * NR + (v & 1) * 8, c[r][v]);
}

#define TK_FN(mr, ns, bp, rw)                                                                      \
    AVX2_FN static void tk_##mr##ns##bp##rw(int64_t kc, const float *const ar[MR], const float *b, \
                                            int64_t bks, float *acc, int64_t accs, int load) {     \
        tk_body(mr, ns, bp, rw, kc, ar, b, bks, acc, accs, load);                                  \
    }
#define TK_FN4(mr, ns) TK_FN(mr, ns, 0, 0) TK_FN(mr, ns, 0, 1) TK_FN(mr, ns, 1, 0) TK_FN(mr, ns, 1, 1)
#define TK_ENT(mr, ns)                                                                             \
    [0][0][mr][ns] = tk_##mr##ns##00, [0][1][mr][ns] = tk_##mr##ns##01,                            \
    [1][0][mr][ns] = tk_##mr##ns##10, [1][1][mr][ns] = tk_##mr##ns##11
TK_FN4(1, 1) TK_FN4(1, 2) TK_FN4(1, 3) TK_FN4(1, 4)
TK_FN4(2, 1) TK_FN4(2, 2)
TK_FN4(3, 1)
TK_FN4(4, 1)
TK_FN4(5, 1)
/* [bpack][arows][mr][ns]; tk_ns[mr] = the widest ns per row count */
static tkernel_fn *const tk_avx2[2][2][MR][NP + 1] = {
    TK_ENT(1, 1), TK_ENT(1, 2), TK_ENT(1, 3), TK_ENT(1, 4), TK_ENT(2, 1),
    TK_ENT(2, 2), TK_ENT(3, 1), TK_ENT(4, 1), TK_ENT(5, 1),
};
#undef TK_FN
#undef TK_FN4
#undef TK_ENT

/* The few-row tiles over prepacked bf16 strips (strip s at b + s*ss, any ss; A rows in place):
 * tk_body's tiles and per-element sequence, each b vector widened from 8 bf16 (zero-extend, shift
 * into the high half: the very float that was packed). Half the bytes of the fp32 strips, which
 * is what a decode step's GEMVs are bound by. */
typedef void tkbf_fn(int64_t kc, const float *const ar[MR], const uint16_t *b, int64_t ss,
                     float *acc, int64_t accs, int load);

AVX2_FN __attribute__((always_inline)) static inline __m256 widen_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

AVX2_FN __attribute__((always_inline)) static inline void
tkbf_body(const int mr, const int ns, int64_t kc, const float *const ar[MR], const uint16_t *b,
          int64_t ss, float *acc, int64_t accs, int load) {
    const int nv = 2 * ns;
    __m256 c[MR - 1][2 * NP];
    const uint16_t *bs[NP];
#pragma GCC unroll 4
    for (int s = 0; s < ns; s++) bs[s] = b + s * ss;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            c[r][v] = load ? _mm256_loadu_ps(acc + (v >> 1) * accs + r * NR + (v & 1) * 8)
                           : _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        __m256 x[MR - 1];
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) x[r] = _mm256_broadcast_ss(ar[r] + k);
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            __m256 b_ = widen_bf16(bs[v >> 1] + k * NR + (v & 1) * 8);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) c[r][v] = _mm256_fmadd_ps(x[r], b_, c[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(acc + (v >> 1) * accs + r * NR + (v & 1) * 8, c[r][v]);
}

#define TKB_FN(mr, ns)                                                                             \
    AVX2_FN static void tkb_##mr##ns(int64_t kc, const float *const ar[MR], const uint16_t *b,     \
                                     int64_t ss, float *acc, int64_t accs, int load) {             \
        tkbf_body(mr, ns, kc, ar, b, ss, acc, accs, load);                                         \
    }
TKB_FN(1, 1) TKB_FN(1, 2) TKB_FN(1, 3) TKB_FN(1, 4)
TKB_FN(2, 1) TKB_FN(2, 2)
TKB_FN(3, 1)
TKB_FN(4, 1)
TKB_FN(5, 1)
/* [mr][ns] */
static tkbf_fn *const tkb_avx2[MR][NP + 1] = {
    [1][1] = tkb_11, [1][2] = tkb_12, [1][3] = tkb_13, [1][4] = tkb_14,
    [2][1] = tkb_21, [2][2] = tkb_22, [3][1] = tkb_31, [4][1] = tkb_41, [5][1] = tkb_51,
};
#undef TKB_FN

/* x[i] = row i of an 8×8 block -> x[k] = column k (a copy: no arithmetic) */
AVX2_FN __attribute__((always_inline)) static inline void tr8x8(__m256 *x) {
    __m256 t0 = _mm256_unpacklo_ps(x[0], x[1]), t1 = _mm256_unpackhi_ps(x[0], x[1]);
    __m256 t2 = _mm256_unpacklo_ps(x[2], x[3]), t3 = _mm256_unpackhi_ps(x[2], x[3]);
    __m256 t4 = _mm256_unpacklo_ps(x[4], x[5]), t5 = _mm256_unpackhi_ps(x[4], x[5]);
    __m256 t6 = _mm256_unpacklo_ps(x[6], x[7]), t7 = _mm256_unpackhi_ps(x[6], x[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    x[0] = _mm256_permute2f128_ps(u0, u4, 0x20), x[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    x[2] = _mm256_permute2f128_ps(u2, u6, 0x20), x[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    x[4] = _mm256_permute2f128_ps(u0, u4, 0x31), x[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    x[6] = _mm256_permute2f128_ps(u2, u6, 0x31), x[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* bp[k][0..NR) = B[j, k] for the NR rows j of src (row stride ldb), k < kc: the transposed
 * strip of pack_strip, 8×8 blocks transposed in registers (a copy: no arithmetic). */
AVX2_FN static void pack_nt_avx2(const float *src, int64_t ldb, int64_t kc, float *bp) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int h = 0; h < NR; h += 8) {
            const float *s0 = src + h * ldb + k;
            __m256 x[8];
            for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(s0 + i * ldb);
            tr8x8(x);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(bp + (k + i) * NR + h, x[i]);
        }
    for (; k < kc; k++)
        for (int j = 0; j < NR; j++) bp[k * NR + j] = src[j * ldb + k];
}

/* The few-row tiles with B transposed and read in place (M < MR and B = [N, K], e.g. x · Wᵀ at
 * decode): packing a strip that at most three rows use costs more than those rows' arithmetic, so
 * per strip (16 rows of B, two groups of 8) and 8 k, each 8 × 8 block is loaded and transposed in
 * registers and its 8 k applied in order: each element gets the packed kernels' exact sequence.
 * One strip per call: 16 rows of B at a power-of-two stride already fill the two L1 sets they map
 * to (32 rows measured 40 % slower). A comes expanded, ax[(k*mr + r)*8 + l] = a(r, k) (expand_a,
 * once per tile and K block), so the multiplies take it from memory: no broadcast registers.
 * Measured against pack_nt_avx2 + tk_body (1 thread, B in cache): 1.2-1.4× faster for 1..3 rows,
 * slower for 4 and 5. No software prefetch: the weights stream at about the rate of a plain
 * sequential read, and prefetching the next strip's rows (any hint) lands them in the same two L1
 * sets as the current ones: ~10 % on the head from DRAM, 60 % slower when B is in cache. */

AVX2_FN static void expand_a(int mr, int64_t kc, const float *const ar[MR], int64_t aks,
                             float *ax) {
    for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < mr; r++)
            _mm256_storeu_ps(ax + (k * mr + r) * 8, _mm256_broadcast_ss(ar[r] + k * aks));
}

typedef void dkernel_fn(int64_t kc, const float *ax, const float *b, int64_t ldb, float *acc,
                        int load);

AVX2_FN __attribute__((always_inline)) static inline void
dk_body(const int mr, int64_t kc, const float *ax, const float *b, int64_t ldb, float *acc,
        int load) {
    __m256 c[DKR][2];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int q = 0; q < 2; q++)
            c[r][q] = load ? _mm256_loadu_ps(acc + r * NR + q * 8) : _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
#pragma GCC unroll 8
        for (int q = 0; q < 2; q++) {
            /* opaque per group: otherwise GCC keeps 16 row pointers and the shared A values
             * live across both groups and spills */
            const float *bq = b + q * 8 * ldb + k, *aq = ax + k * mr * 8;
            __asm__ volatile("" : "+r"(bq), "+r"(aq));
            __m256 x[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(bq + i * ldb);
            tr8x8(x);
#pragma GCC unroll 8
            for (int kk = 0; kk < 8; kk++)
#pragma GCC unroll 8
                for (int r = 0; r < mr; r++)
                    c[r][q] = _mm256_fmadd_ps(x[kk], _mm256_loadu_ps(aq + (kk * mr + r) * 8),
                                              c[r][q]);
        }
    }
    for (; k < kc; k++)
#pragma GCC unroll 8
        for (int q = 0; q < 2; q++) {
            const float *bq = b + q * 8 * ldb + k;
            __m256 x = _mm256_setr_ps(bq[0], bq[ldb], bq[2 * ldb], bq[3 * ldb], bq[4 * ldb],
                                      bq[5 * ldb], bq[6 * ldb], bq[7 * ldb]);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++)
                c[r][q] = _mm256_fmadd_ps(x, _mm256_loadu_ps(ax + (k * mr + r) * 8), c[r][q]);
        }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int q = 0; q < 2; q++) _mm256_storeu_ps(acc + r * NR + q * 8, c[r][q]);
}

#define DK_FN(mr)                                                                                  \
    AVX2_FN static void dk_##mr(int64_t kc, const float *ax, const float *b, int64_t ldb,          \
                                float *acc, int load) {                                            \
        dk_body(mr, kc, ax, b, ldb, acc, load);                                                    \
    }
DK_FN(1) DK_FN(2) DK_FN(3)
static dkernel_fn *const dk_avx2[DKR + 1] = {NULL, dk_1, dk_2, dk_3};
#undef DK_FN

/* c[r][0..NR) = alpha*acc[r] (+ beta*c[r]) for r < mr: the same rounded operations as
 * store_tile's scalar loop, eight lanes at a time. */
AVX2_FN static void store_avx2(float *c, int64_t ldc, int64_t mr, float alpha, float beta,
                               const float *acc) {
    __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
    for (int64_t r = 0; r < mr; r++, c += ldc, acc += NR)
        for (int h = 0; h < NR; h += 8) {
            __m256 v = _mm256_mul_ps(al, _mm256_loadu_ps(acc + h));
            if (beta != 0.0f) v = _mm256_add_ps(v, _mm256_mul_ps(be, _mm256_loadu_ps(c + h)));
            _mm256_storeu_ps(c + h, v);
        }
}
#endif

static int force_scalar; /* bench/test switch, see cpu_internal.h */

void cpu_gemm_force_scalar(int on) { force_scalar = on; }

/* The kernels of one call: any layout, A rows in place (aks == 1), six adjacent A columns. */
typedef struct ukernels {
    ukernel_fn *any, *rows, *cols;
    int avx2; /* full-width tiles are stored with store_avx2 */
} ukernels;

static ukernels pick_ukernels(void) {
#ifdef V3_HAVE_AVX2_KERNEL
    if (!force_scalar && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (ukernels){ukernel_avx2, ukernel_avx2_rows, ukernel_avx2_cols, 1};
#endif
    return (ukernels){ukernel_scalar, ukernel_scalar, ukernel_scalar, 0};
}

/* ---------------------------------------------------------------- problems and tiles */

/* One problem C[M,N] = alpha op(A) op(B) + beta C, cut into n_ib × n_jb tiles of mc × nc. */
typedef struct gemm_prob {
    int transA, transB;
    int64_t M, N, K;
    float alpha, beta;
    const float *A; int64_t lda; /* [M, K], or [K, M] when transA */
    const float *B; int64_t ldb; /* [K, N], or [N, K] when transB */
    float *C; int64_t ldc;       /* [M, N] */
    int packed;                  /* B (transB) comes packed by cpu_pack_nt: strip s at B + s*K*NR;
                                  * 2: as bf16, at B16 + s*K*NR (M < MR only) */
    const uint16_t *B16;
    int64_t mc, nc, n_ib, n_jb;
    int64_t task0; /* index of its first tile in the call's tile list */
} gemm_prob;

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Tile sizes: MC × NC, shrunk (columns first) until the call has about 4 tiles per thread.
 * Any tiling gives the same bits; this only balances the threads. */
static void plan_tiles(gemm_prob *p, int64_t min_tiles) {
    p->mc = p->M < MC ? round_up(p->M, MR) : MC;
    p->nc = p->N < NC ? round_up(p->N, NR) : NC;
    for (;;) {
        p->n_ib = (p->M + p->mc - 1) / p->mc;
        p->n_jb = (p->N + p->nc - 1) / p->nc;
        if (p->n_ib * p->n_jb >= min_tiles) break;
        if (p->nc > 2 * NR) p->nc = round_up(p->nc / 2, NR);
        else if (p->mc > 2 * MR) p->mc = round_up(p->mc / 2, MR);
        else break;
    }
}

/* Strip of op(B): rows k0..k0+kc, columns j0..j0+jw (jw <= NR), as bp[k][NR], zero-padded;
 * with next, the line of the next strip in each row is prefetched. B's rows lie ldb apart, one
 * line of each is read per strip, and the hardware prefetchers did not follow: the first load of
 * each row stalled for ~13 % of a 512³ NN product's time (perf) without the software prefetches
 * (a few rows ahead in this strip, and the next strip's line while this one is read). */
static void pack_strip(const gemm_prob *p, int64_t k0, int64_t kc, int64_t j0, int64_t jw,
                       float *bp, int next) {
    if (!p->transB) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = p->B + (k0 + k) * p->ldb + j0;
            float *d = bp + k * NR;
            if (next) __builtin_prefetch(src + NR, 0, 3);
            if (k + PFD < kc) __builtin_prefetch(src + PFD * p->ldb, 0, 3);
            int64_t j = 0;
            for (; j < jw; j++) d[j] = src[j];
            for (; j < NR; j++) d[j] = 0.0f;
        }
        return;
    }
    /* B is [N, K]: column j of op(B) is row j of B, contiguous in k */
    if (jw < NR) memset(bp, 0, (size_t)(kc * NR) * sizeof(float));
    for (int64_t j = 0; j < jw; j++) {
        const float *src = p->B + (j0 + j) * p->ldb + k0;
        for (int64_t k = 0; k < kc; k++) bp[k * NR + j] = src[k];
    }
}

/* Rows [i0, i1) of op(A) = Aᵀ, k in [k0, k0+kc), as ap[group][k][MR] (rows past i1 zero: their
 * results are discarded). Columns of A at a power-of-two stride would fall into a few L1 sets. */
static void pack_a_t(const gemm_prob *p, int64_t i0, int64_t i1, int64_t k0, int64_t kc,
                     float *ap) {
    int64_t m = i1 - i0, n_grp = (m + MR - 1) / MR;
    for (int64_t k = 0; k < kc; k++) {
        const float *src = p->A + (k0 + k) * p->lda + i0;
        if (k + PFD < kc) /* the lines of a row PFD ahead (see pack_strip) */
            for (int64_t q = 0; q < m; q += 16) __builtin_prefetch(src + PFD * p->lda + q, 0, 3);
        for (int64_t g = 0; g < n_grp; g++) {
            float *d = ap + (g * kc + k) * MR;
            int64_t w = m - g * MR < MR ? m - g * MR : MR, r = 0;
            if (w == MR) {
                memcpy(d, src + g * MR, MR * sizeof(float));
                continue;
            }
            for (; r < w; r++) d[r] = src[g * MR + r];
            for (; r < MR; r++) d[r] = 0.0f;
        }
    }
}

/* C rows i..i+mr, columns j..j+jw from the finished accumulator tile acc[MR][NR]. */
static void store_tile(const gemm_prob *p, int64_t i, int64_t mr, int64_t j, int64_t jw,
                       const float *acc) {
    for (int64_t r = 0; r < mr; r++) {
        float *c = p->C + (i + r) * p->ldc + j;
        const float *a = acc + r * NR;
        if (p->beta == 0.0f)
            for (int64_t q = 0; q < jw; q++) c[q] = p->alpha * a[q];
        else
            for (int64_t q = 0; q < jw; q++) c[q] = p->alpha * a[q] + p->beta * c[q];
    }
}

/* Stores the finished accumulators of rows i..i+mr, columns j..j+jw. */
static void store_acc(const gemm_prob *p, const ukernels *uk, int64_t i, int64_t mr, int64_t j,
                      int64_t jw, const float *acc) {
#ifdef V3_HAVE_AVX2_KERNEL
    if (uk->avx2 && jw == NR) {
        store_avx2(p->C + i * p->ldc + j, p->ldc, mr, p->alpha, p->beta, acc);
        return;
    }
#endif
    store_tile(p, i, mr, j, jw, acc);
}

/* Per-thread scratch (one allocation): a panel of packed strips and the accumulators of a tile. */
typedef struct scratch {
    float *strip; /* [NP][KMAX1][NR] */
    float *ax;    /* [KMAX1][DKR][8]: the expanded A of dk_body */
    float *acc;   /* [MC/MR * NC/NR][MR][NR] */
    float *apack; /* [MC/MR][KMAXT][MR], transposed A only */
} scratch;

/* How a K block of one NR-column strip of op(B) is read. */
enum {
    SK_PACK,    /* packed into the panel buffer: bp[k][NR] at s->strip + t*KMAX1*NR */
    SK_INPLACE, /* B not transposed, read in place (row stride ldb) */
    SK_DIRECT,  /* B transposed, few rows: its rows read in place by dk_body */
    SK_PACKED,  /* packed beforehand (cpu_pack_nt): bp[k][NR] at p->B + strip*K*NR + k0*NR */
    SK_PACKED16 /* the same as bf16, at p->B16 (only tail rows: M < MR) */
};

/* Tile (ib, jb) of problem p. Per K block, the columns go in panels of strips: each strip is
 * packed (or read in place) and the full six-row groups run over it while it is hot; then the
 * last mt = rows mod MR rows run over the panel with the few-row kernels. A tile of fewer than
 * MR rows takes panels of NP strips, for the few-row kernels' wider tiles. */
static void run_tile(const gemm_prob *p, int64_t ib, int64_t jb, const ukernels *uk, scratch *s) {
    int64_t i0 = ib * p->mc, i1 = i0 + p->mc < p->M ? i0 + p->mc : p->M;
    int64_t j0 = jb * p->nc, j1 = j0 + p->nc < p->N ? j0 + p->nc : p->N;
    int64_t n_full = (i1 - i0) / MR, mt = (i1 - i0) % MR, n_grp = n_full + (mt > 0);
    int64_t K = p->K, kc = K <= (p->transA ? KMAXT : KMAX1) ? K : KC;
    int64_t it = i0 + n_full * MR;    /* first tail row */
    int64_t accs = n_grp * (MR * NR); /* accumulator stride between strips */
    /* strips per panel: one when there are six-row groups (a panel's packed strips pushed their
     * A block out of L2, and the few tail rows cost little: they run on each strip while it is
     * in L1) */
    int pw = n_full > 0 ? 1 : NP;
    /* at most DKR rows in all and B transposed: its full strips are read in place (dk_body) */
    int direct = 0;
#ifdef V3_HAVE_AVX2_KERNEL
    direct = uk->avx2 && p->transB && !p->packed && n_full == 0 && mt <= DKR;
#endif
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
        int64_t kb = K - k0 < kc ? K - k0 : kc;
        int last = k0 + kb == K;
        if (p->transA) pack_a_t(p, i0, i1, k0, kb, s->apack);
        /* the tail rows' A: mt row pointers at k0 (k stride aks) */
        const float *ar[MR] = {NULL};
        int64_t aks = p->transA ? MR : 1;
        for (int r = 0; r < mt; r++)
            ar[r] = p->transA ? s->apack + n_full * kb * MR + r : p->A + (it + r) * p->lda + k0;
#ifdef V3_HAVE_AVX2_KERNEL
        if (direct) expand_a((int)mt, kb, ar, aks, s->ax);
#endif
        for (int64_t jp = j0; jp < j1; jp += pw * NR) {
            int64_t sp = (jp - j0) / NR; /* index of the panel's first strip in the tile */
            int np = (int)((j1 - jp + NR - 1) / NR < pw ? (j1 - jp + NR - 1) / NR : pw);
            const float *bs[NP];
            const uint16_t *bh[NP];
            int kind[NP];
            for (int t = 0; t < np; t++) {
                int64_t j = jp + t * NR, jw = j1 - j < NR ? j1 - j : NR;
                /* op(B) strip: read in place when B is not transposed and the strip serves few
                 * row groups (packing would cost more than it saves); otherwise packed, also when
                 * not transposed, since rows of B at a power-of-two stride fall into a few L1
                 * sets */
                float *buf = s->strip + (int64_t)t * KMAX1 * NR;
                if (p->packed == 2) {
                    kind[t] = SK_PACKED16;
                    bh[t] = p->B16 + (j / NR) * p->K * NR + k0 * NR;
                    continue; /* no six-row groups (M < MR) */
                } else if (p->packed) {
                    kind[t] = SK_PACKED;
                    bs[t] = p->B + (j / NR) * p->K * NR + k0 * NR;
                } else if (!p->transB && jw == NR && n_grp <= 4) {
                    kind[t] = SK_INPLACE;
                    bs[t] = p->B + k0 * p->ldb + j;
                } else if (direct && jw == NR) {
                    kind[t] = SK_DIRECT;
                    bs[t] = p->B + j * p->ldb + k0;
                } else {
                    kind[t] = SK_PACK;
                    bs[t] = buf;
#ifdef V3_HAVE_AVX2_KERNEL
                    if (uk->avx2 && p->transB && jw == NR)
                        pack_nt_avx2(p->B + j * p->ldb + k0, p->ldb, kb, buf);
                    else
#endif
                        pack_strip(p, k0, kb, j, jw, buf, j + NR < j1);
                }
                int64_t bks = kind[t] == SK_INPLACE ? p->ldb : NR;
                for (int64_t g = 0; g < n_full; g++) {
                    int64_t i = i0 + g * MR;
                    const float *a6[MR];
                    float *acc = s->acc + (sp + t) * accs + g * (MR * NR);
                    /* the six C lines the epilogue reads (beta != 0) or writes, fetched while
                     * the kernel runs: the weight gradients of 64 experts (32 MiB per GEMM) sit
                     * in L3 or memory, and a K of ~48 rows gives the kernel only ~300 cycles */
                    if (last)
                        for (int r = 0; r < MR; r++)
                            __builtin_prefetch(p->C + (i + r) * p->ldc + j, 1, 3);
                    if (p->transA) { /* packed: six adjacent values per k */
                        for (int r = 0; r < MR; r++) a6[r] = s->apack + g * kb * MR + r;
                        (bks == NR ? uk->cols : uk->any)(kb, a6, MR, bs[t], bks, acc, k0 > 0);
                    } else {
                        for (int r = 0; r < MR; r++) a6[r] = p->A + (i + r) * p->lda + k0;
                        (bks == NR ? uk->rows : uk->any)(kb, a6, 1, bs[t], bks, acc, k0 > 0);
                    }
                    if (last) store_acc(p, uk, i, MR, j, jw, acc);
                }
            }
            if (!mt) continue;
            /* the tail rows over the panel, in runs of strips of one kind (in place: adjacent
             * columns; packed: the panel buffer's slots), at most tk_ns[mt] strips per AVX2
             * call (one for SK_DIRECT) */
            for (int t = 0; t < np;) {
                /* (the AVX2 fp32 tail kernels address a panel's packed strips KMAX1·NR apart, so
                 * prepacked fp32 strips, K·NR apart, go one per call; the bf16 ones take any
                 * strip stride) */
                int e = t + 1, ns_max = kind[t] == SK_DIRECT || kind[t] == SK_PACKED ? 1 : tk_ns[mt];
                while (e < np && kind[e] == kind[t] && (!uk->avx2 || e - t < ns_max)) e++;
                float *acc = s->acc + (sp + t) * accs + n_full * (MR * NR);
                int64_t bks = kind[t] == SK_INPLACE ? p->ldb : NR;
                int64_t ss = kind[t] == SK_INPLACE ? NR
                             : kind[t] >= SK_PACKED ? p->K * NR : (int64_t)KMAX1 * NR;
#ifdef V3_HAVE_AVX2_KERNEL
                if (kind[t] == SK_PACKED16 && uk->avx2)
                    tkb_avx2[mt][e - t](kb, ar, bh[t], ss, acc, accs, k0 > 0);
                else if (kind[t] == SK_DIRECT)
                    dk_avx2[mt](kb, s->ax, bs[t], p->ldb, acc, k0 > 0);
                else if (uk->avx2)
                    tk_avx2[kind[t] != SK_INPLACE][!p->transA][mt][e - t](kb, ar, bs[t], bks, acc,
                                                                        accs, k0 > 0);
                else
#endif
                if (kind[t] == SK_PACKED16)
                    tkernel_scalar_bf16((int)mt, e - t, kb, ar, bh[t], ss, acc, accs, k0 > 0);
                else
                    tkernel_scalar((int)mt, e - t, kb, ar, aks, bs[t], bks, ss, acc, accs,
                                   k0 > 0);
                if (last)
                    for (int u = t; u < e; u++) {
                        int64_t j = jp + u * NR, jw = j1 - j < NR ? j1 - j : NR;
                        store_acc(p, uk, it, mt, j, jw, acc + (u - t) * accs);
                    }
                t = e;
            }
        }
    }
}

/* C = beta*C for a problem with K == 0 (BLAS semantics: beta == 0 ignores C's content). */
static void scale_c(const gemm_prob *p) {
    for (int64_t i = 0; i < p->M; i++)
        for (int64_t j = 0; j < p->N; j++) {
            float *c = p->C + i * p->ldc + j;
            *c = p->beta == 0.0f ? 0.0f : p->beta * *c;
        }
}

/* A problem x · Wᵀ whose W has a packed copy in ctx->wpacks (kernels.h) reads the copy. */
static void use_wpack(const v3_kctx *ctx, gemm_prob *p) {
    const v3_wpacks *w = ctx->wpacks;
    if (!w || !p->transB || p->transA || p->packed || p->ldb != p->K) return;
    int64_t lo = 0, hi = w->n; /* sorted by w: binary search for p->B */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)w->e[mid].w < (uintptr_t)p->B) lo = mid + 1;
        else hi = mid;
    }
    if (lo == w->n) return;
    const v3_wpack *e = &w->e[lo];
    if (e->w != p->B || e->K != p->K || p->N > e->N) return;
    if (e->bf16) {
        if (p->M >= MR) return; /* the six-row kernels read floats: W itself */
        p->packed = 2;
        p->B16 = e->packed;
    } else {
        p->packed = 1;
        p->B = e->packed;
    }
}

/* Runs n problems: all tiles of all problems in one parallel region. */
static void run_probs(v3_kctx *ctx, gemm_prob *ps, int64_t n) {
    int nt = cpu_threads(ctx);
    int64_t n_task = 0;
    double flop = 0;
    int64_t m = 0;
    for (int64_t q = 0; q < n; q++) {
        gemm_prob *p = &ps[q];
        if (p->M <= 0 || p->N <= 0) continue;
        use_wpack(ctx, p);
        if (p->K <= 0) {
            scale_c(p);
            continue;
        }
        ps[m++] = *p;
        flop += 2.0 * p->M * p->N * p->K;
    }
    n = m;
    if (n == 0) return;
    /* tiles per problem: enough for the whole call to have ~4 tiles per thread; a problem with
     * K-blocking (K > KMAX1, e.g. the head's dx = dlogits · W with K = vocab) only one per
     * thread: its tiles are long and even, and every extra row or column split streams the
     * other operand's K-long rows from memory once more */
    for (int64_t q = 0; q < n; q++) {
        gemm_prob *p = &ps[q];
        int64_t want = (p->K > KMAX1 ? 1 : 4) * (int64_t)nt;
        int64_t share = (int64_t)(want * (2.0 * p->M * p->N * p->K) / flop + 0.999);
        plan_tiles(p, share < 1 ? 1 : share);
        p->task0 = n_task;
        n_task += p->n_ib * p->n_jb;
    }
    ukernels uk = pick_ukernels();
    int failed = 0;
    /* threads from 0.05 MFLOP: a decode step is a chain of GEMVs of 0.5-3 MB of weights each,
     * memory-bound, which two cores stream ~1.8x faster than one; a fork/join costs microseconds
     * on a quiet machine (batch-1 decode on small, 2 threads: 35 -> 44-48 tok/s against the
     * earlier 10 MFLOP threshold) */
#pragma omp parallel num_threads(nt) if (n_task > 1 && flop > 5e4)
    {
        /* one block: separate blocks of this size made glibc return the freed heap top to the
         * system after every call and fault it in again on the next (measured: +45 % on a
         * 512×512×24 TN call) */
        size_t n_strip = NP * KMAX1 * NR, n_ax = KMAX1 * DKR * 8, n_acc = MC * NC;
        float *blk = malloc(sizeof(float) *
                            (n_strip + n_ax + n_acc + (ps[0].transA ? MC * KMAXT : 0)));
        scratch s = {blk, NULL, NULL, NULL};
        if (blk) {
            s.ax = blk + n_strip;
            s.acc = s.ax + n_ax;
            if (ps[0].transA) s.apack = s.acc + n_acc;
        } else {
#pragma omp atomic write
            failed = 1;
        }
        int64_t q = 0;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_task; t++) {
            if (!blk) continue;
            while (q + 1 < n && ps[q + 1].task0 <= t) q++; /* tasks arrive in increasing t */
            while (ps[q].task0 > t) q--;
            const gemm_prob *p = &ps[q];
            int64_t l = t - p->task0;
            run_tile(p, l % p->n_ib, l / p->n_ib, &uk, &s);
        }
        free(blk);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "cpu gemm: out of memory for per-thread scratch");
}

static gemm_prob make_prob(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc) {
    return (gemm_prob){transA, transB, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc,
                       0, NULL, 0, 0, 0, 0, 0};
}

/* ---------------------------------------------------------------- the ops */

void cpu_gemm(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    gemm_prob p = make_prob(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    run_probs(ctx, &p, 1);
}

/* Runs a list of problems in chunks of at most 256 (bounded stack, no allocation). */
typedef gemm_prob prob_chunk[256];

void cpu_gemm_strided_batched(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N,
                              int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                              const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                              int64_t ldc, int64_t sC, int64_t batch) {
    prob_chunk ps;
    for (int64_t b0 = 0; b0 < batch; b0 += 256) {
        int64_t nb = batch - b0 < 256 ? batch - b0 : 256;
        for (int64_t b = 0; b < nb; b++)
            ps[b] = make_prob(transA, transB, M, N, K, alpha, A + (b0 + b) * sA, lda,
                              B + (b0 + b) * sB, ldb, beta, C + (b0 + b) * sC, ldc);
        run_probs(ctx, ps, nb);
    }
}

void cpu_gemm_grouped(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                      const v3_gemm_desc *d) {
    prob_chunk ps;
    for (int g0 = 0; g0 < n; g0 += 256) {
        int nb = n - g0 < 256 ? n - g0 : 256;
        for (int g = 0; g < nb; g++) {
            const v3_gemm_desc *e = &d[g0 + g];
            /* natural leading dimensions: the stored row length of each operand */
            ps[g] = make_prob(transA, transB, e->M, e->N, e->K, alpha, e->A, transA ? e->M : e->K,
                              e->B, transB ? e->K : e->N, beta, e->C, e->N);
        }
        run_probs(ctx, ps, nb);
    }
}

/* ---------------------------------------------------------------- prepacked B */

/* 1 when every value of B [N, K] (row stride ldb) is exactly a bf16 (its low 16 bits zero); stops
 * at the first row that is not (trained weights: at once) */
static int is_bf16_exact(v3_kctx *ctx, const float *B, int64_t ldb, int64_t N, int64_t K) {
    int bad = 0;
#pragma omp parallel for schedule(static) num_threads(cpu_threads(ctx)) if (N * K >= (1 << 16))
    for (int64_t j = 0; j < N; j++) {
        int seen;
#pragma omp atomic read
        seen = bad;
        if (seen) continue;
        uint32_t low = 0;
        for (int64_t k = 0; k < K; k++) {
            uint32_t u;
            memcpy(&u, B + j * ldb + k, sizeof u);
            low |= u & 0xFFFFu;
        }
        if (low) {
#pragma omp atomic write
            bad = 1;
        }
    }
    return !bad;
}

int cpu_pack_nt(v3_kctx *ctx, void *Bp, const float *B, int64_t ldb, int64_t N, int64_t K,
                int bf16) {
    int64_t n_s = (N + NR - 1) / NR;
    if (bf16) bf16 = is_bf16_exact(ctx, B, ldb, N, K);
#ifdef V3_HAVE_AVX2_KERNEL
    int avx2 = pick_ukernels().avx2;
#endif
    int failed = 0;
#pragma omp parallel num_threads(cpu_threads(ctx)) if (n_s >= 8)
    {
        /* bf16: each strip is transposed as floats first, then halved */
        float *tmp = bf16 ? malloc(sizeof(float) * (size_t)(K * NR)) : NULL;
        if (bf16 && !tmp) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t st = 0; st < n_s; st++) {
            if (bf16 && !tmp) continue;
            float *bp = bf16 ? tmp : (float *)Bp + st * K * NR;
            int64_t j0 = st * NR, jw = N - j0 < NR ? N - j0 : NR;
#ifdef V3_HAVE_AVX2_KERNEL
            if (avx2 && jw == NR)
                pack_nt_avx2(B + j0 * ldb, ldb, K, bp);
            else
#endif
            {
                gemm_prob q = make_prob(0, 1, 0, N, K, 1.0f, NULL, 0, B, ldb, 0.0f, NULL, 0);
                pack_strip(&q, 0, K, j0, jw, bp, 0);
            }
            if (bf16) { /* the high halves: exact, the low ones are zero */
                uint16_t *d = (uint16_t *)Bp + st * K * NR;
                for (int64_t i = 0; i < K * NR; i++) {
                    uint32_t u;
                    memcpy(&u, bp + i, sizeof u);
                    d[i] = (uint16_t)(u >> 16);
                }
            }
        }
        free(tmp);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "cpu pack_nt: out of memory for a %lld-float strip",
                         (long long)(K * NR));
    return bf16;
}
