/* kernels.h — the op table: every numeric operation the model, trainer and rollout engine use,
 * declared once and independent of the backend.
 *
 * Model code never branches on the backend: it calls `v3k(ctx, op, args...)`, which dispatches
 * through the backend's table. A NULL entry means "this backend does not implement the op"; the
 * parity harness (tests/unit/test_ops.c) lists such ops instead of hiding them.
 *
 * Conventions (all ops):
 *   - Row-major fp32 buffers in the backend's memory (host memory on the CPU backend, device memory
 *     on CUDA). Dimension letters: T tokens, C channels, H heads, E experts, K experts per token,
 *     V vocabulary, R permuted rows (= T*K).
 *   - Gradient convention: parameter gradients ACCUMULATE (+=); activation gradients ASSIGN (=)
 *     unless the op says otherwise. Running a backward twice therefore doubles parameter grads.
 *   - Ops return void; a backend failure (CUDA launch, cuBLAS) is recorded as a sticky error in the
 *     context and reported by v3k_check(). The CPU backend cannot fail after init.
 *   - Reductions have a fixed order: results are identical run to run, and on the CPU backend they
 *     do not depend on the number of threads or on how a batch was composed (batch invariance).
 *   - Integer index arrays (tokens, expert ids, permutations) are int32 in backend memory.
 *   - Host-side outputs are marked "(host)".
 */
#ifndef V3_KERNELS_H
#define V3_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* C linkage for C++ (CUDA) translation units; err.h is included inside so that its functions
 * get it too. */
#ifdef __cplusplus
extern "C" {
#endif

#include "../common/err.h"

typedef struct v3_backend v3_backend;

/* Arithmetic of the CUDA backend's matrix products and attention (v3_kctx.math). The CPU backend
 * is always fp32 and ignores it. FP32 is the exact mode the parity tests use (no TF32); TF32 keeps
 * fp32 storage and runs products on the tensor cores with a 10-bit mantissa; BF16 rounds both
 * operands of every product to bf16 and accumulates in fp32 (outputs, norms, softmax statistics,
 * losses, gradients and optimizer state stay fp32: DESIGN §4). */
enum { V3_MATH_FP32 = 0, V3_MATH_TF32 = 1, V3_MATH_BF16 = 2 };
/* "fp32" | "tf32" | "bf16" -> V3_MATH_*, -1 if unknown; and back ("?" if out of range). */
int v3_math_by_name(const char *name);
const char *v3_math_name(int math);

/* Execution context: first argument of every op. Owns the backend's private state. */
typedef struct v3_kctx {
    const v3_backend *be;
    void *impl;      /* backend state: thread count, cuBLASLt handle and stream, ... */
    int n_threads;   /* CPU threads (OpenMP); 0 = all cores */
    int math;        /* V3_MATH_*: set after v3_kctx_init (which sets FP32), read by every op */
    v3_err err;      /* first failure since the last v3k_check(), code V3_OK if none */
    const struct v3_wpacks *wpacks; /* packed weight copies the CPU GEMMs may read (pack_nt); NULL */
} v3_kctx;

/* Packed copies of weights (pack_nt) that the CPU backend's gemm and gemm_grouped read in place
 * of the originals while a context's wpacks points at them: a product x · Wᵀ (transB, not
 * transA, B's row stride K) whose B is an entry's w, with its K and at most its N rows (a leading
 * block of rows is a smaller matrix), reads the packed strips instead of transposing W's rows:
 * the same bits. An fp32 copy serves any number of rows; a bf16 copy (every value of W exactly a
 * bf16) serves products of fewer than 6 rows (decode steps), the others read W. Sorted by w; the
 * owner (the rollout engine) keeps the copies equal to the weights and sets wpacks only for the
 * duration of its steps. */
typedef struct v3_wpack {
    const float *w;     /* the weight [N, K] (row stride K) */
    int64_t N, K;
    const void *packed; /* pack_nt's output for w */
    int bf16;           /* packed as bf16 (pack_nt returned 1) */
} v3_wpack;
typedef struct v3_wpacks {
    const v3_wpack *e;
    int64_t n;
} v3_wpacks;

/* One problem of a grouped GEMM: C[M,N] = alpha * op(A) op(B) + beta * C, with natural
 * leading dimensions (A is [M,K], or [K,M] when transA; B is [K,N], or [N,K] when transB). */
typedef struct v3_gemm_desc {
    int64_t M, N, K;
    const float *A;
    const float *B;
    float *C;
} v3_gemm_desc;

/* Attention with arbitrary key windows (causal + document boundaries for training, a cache for
 * decoding). Query t of head h attends to keys s in [kv_lo[t], kv_hi[t]) only.
 *   training:  kv_lo[t] = first token of t's document, kv_hi[t] = t + 1.
 * Element (t, h, i) of q lives at q[t*q_st + h*q_sh + i]; the same for k and v. A head stride of 0
 * broadcasts one vector to every head. Forward writes out and lse; backward reads
 * dout/out/lse and ASSIGNS dq, dk, dv (contiguous, shapes below; dk/dv are full per-head even
 * when k or v broadcast — the caller reduces over heads). */
typedef struct v3_attn_params {
    int64_t T, Tk, H;       /* queries, keys, heads */
    int64_t d_qk, d_v;      /* head dims: 192 and 128 for DeepSeek-V3 */
    float scale;            /* softmax scale, YaRN mscale included */
    const int32_t *kv_lo;   /* [T] */
    const int32_t *kv_hi;   /* [T] */
    const float *q; int64_t q_st, q_sh;   /* (T, H, d_qk) */
    const float *k; int64_t k_st, k_sh;   /* (Tk, H, d_qk) */
    const float *v; int64_t v_st, v_sh;   /* (Tk, H, d_v) */
    float *out;             /* [T, H, d_v] contiguous */
    float *lse;             /* [T, H] log-sum-exp of the scaled scores (natural log) */
    /* backward only */
    const float *dout;      /* [T, H, d_v] */
    float *dq;              /* [T, H, d_qk] */
    float *dk;              /* [Tk, H, d_qk] */
    float *dv;              /* [Tk, H, d_v] */
} v3_attn_params;

/* Router: sigmoid affinities, group-limited top-k selection with the correction bias, and combine
 * weights from the unbiased scores (model-spec §5). Official semantics: excluded groups are masked
 * with -inf; the group score is the sum of the group's top-2 biased scores (the single score when
 * a group holds one expert). n_group == 1 disables group limiting. Ties: lower index wins. */
typedef struct v3_router_params {
    int64_t T, E, K;        /* tokens, routed experts, experts per token */
    int n_group, topk_group;
    float route_scale;      /* routed_scaling_factor */
    int norm_topk_prob;     /* normalise the K weights to sum to 1 (+1e-20 in the denominator) */
    const float *logits;    /* [T, E] fp32: x · Wgᵀ */
    const float *bias;      /* [E] e_score_correction_bias, may be NULL */
    float *scores;          /* [T, E] sigmoid(logits) (forward output, backward input) */
    int32_t *topk_idx;      /* [T, K] chosen experts, in descending biased-score order */
    float *topk_w;          /* [T, K] combine weights */
    /* backward only */
    const float *dtopk_w;   /* [T, K] gradient of the loss w.r.t. topk_w */
    float *dlogits;         /* [T, E] ASSIGNED (zero for unselected experts) */
} v3_router_params;

/* Sequence-wise balance loss (model-spec §7): per sequence [seq_off[i], seq_off[i+1]),
 * L = alpha * Σ_e f_e P_e with f from the actual routing. Adds alpha-weighted dL/dlogits into
 * dlogits (ACCUMULATES) when dlogits != NULL, and writes the loss summed over sequences to
 * *loss (host). */
typedef struct v3_balance_params {
    int64_t T, E, K;
    int64_t n_seq;
    const int64_t *seq_off; /* (host) [n_seq + 1] */
    float alpha;
    const float *scores;    /* [T, E] sigmoid scores */
    const int32_t *topk_idx;/* [T, K] */
    float *dlogits;         /* [T, E] or NULL */
    double *loss;           /* (host) */
} v3_balance_params;

/* The X-list of op names: generates the harness's coverage table. Keep in the struct's order. */
#define V3_OP_LIST(X)                                                                           \
    X(gemm) X(gemm_strided_batched) X(gemm_grouped)                                             \
    X(rmsnorm_fwd) X(rmsnorm_bwd) X(rope_fwd) X(rope_bwd) X(attention_fwd) X(attention_bwd)     \
    X(swiglu_fwd) X(swiglu_bwd) X(router_fwd) X(router_bwd) X(router_balance)                   \
    X(moe_plan) X(gather_rows) X(scatter_rows) X(scatter_add_rows) X(moe_combine_fwd) X(moe_combine_bwd)        \
    X(cross_entropy) X(adamw) X(sumsq) X(scale) X(axpy) X(add) X(copy_3d)

struct v3_backend {
    const char *name; /* "cpu", "cuda" */
    int host_visible; /* 1 when the backend's memory is the host's (CPU): a caller that only reads
                       * a buffer on the host may skip the to_host copy */

    /* ---- lifetime: set up / tear down ctx->impl (may be NULL) ---- */
    int (*init)(v3_kctx *ctx, v3_err *err);
    void (*fini)(v3_kctx *ctx);

    /* ---- memory (never NULL) ---- */
    void *(*alloc)(v3_kctx *ctx, size_t bytes);           /* zero-filled; NULL on failure */
    void (*free)(v3_kctx *ctx, void *p);                   /* accepts NULL */
    void (*to_device)(v3_kctx *ctx, void *dst, const void *host_src, size_t bytes);
    void (*to_host)(v3_kctx *ctx, void *host_dst, const void *src, size_t bytes);
    void (*copy)(v3_kctx *ctx, void *dst, const void *src, size_t bytes);
    void (*memset0)(v3_kctx *ctx, void *p, size_t bytes);
    void (*sync)(v3_kctx *ctx);

    /* ---- linear algebra ---- */
    /* C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, leading dimensions as BLAS row-major.
     * beta = 0 must ignore the prior content of C (even NaN). */
    void (*gemm)(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);
    /* batch of gemms; matrix b uses A + b*sA, B + b*sB, C + b*sC */
    void (*gemm_strided_batched)(v3_kctx *ctx, int transA, int transB, int64_t M, int64_t N,
                                 int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                                 const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                                 int64_t ldc, int64_t sC, int64_t batch);
    /* independent problems of different sizes (routed experts); descs are (host); problems with
     * M, N or K == 0 are skipped (K == 0 with beta == 0 zeroes C) */
    void (*gemm_grouped)(v3_kctx *ctx, int transA, int transB, float alpha, float beta, int n,
                         const v3_gemm_desc *descs);

    /* ---- normalisation and position ---- */
    /* out[t] = w ⊙ x[t] · rstd[t], rstd[t] = 1/sqrt(mean(x[t]²) + eps); row strides ldx, ldo. */
    void (*rmsnorm_fwd)(v3_kctx *ctx, float *out, int64_t ldo, float *rstd, const float *x,
                        int64_t ldx, const float *w, int64_t T, int64_t C, float eps);
    /* dx (row stride lddx) = or += (accumulate != 0) the input gradient; dw += Σ_t dout ⊙ x·rstd. */
    void (*rmsnorm_bwd)(v3_kctx *ctx, float *dx, int64_t lddx, float *dw, const float *dout,
                        int64_t ldd, const float *x, int64_t ldx, const float *w,
                        const float *rstd, int64_t T, int64_t C, int accumulate);
    /* In-place rotation of interleaved pairs (x[2i], x[2i+1]) by angle pos[t]·inv_freq[i], on the
     * d_rope dims starting at x + t*st + h*sh for h < H. rope_bwd rotates by the negative angle
     * (the transpose), which is the exact backward. inv_freq: [d_rope/2]; pos: [T] int32. */
    void (*rope_fwd)(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                     int64_t d_rope, const int32_t *pos, const float *inv_freq);
    void (*rope_bwd)(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                     int64_t d_rope, const int32_t *pos, const float *inv_freq);

    /* ---- attention (see v3_attn_params) ---- */
    void (*attention_fwd)(v3_kctx *ctx, const v3_attn_params *p);
    void (*attention_bwd)(v3_kctx *ctx, const v3_attn_params *p);

    /* ---- feed-forward ---- */
    /* out[r, j] = silu(g[r, j]) * u[r, j], with g = in[r*ld_in + j], u = in[r*ld_in + u_off + j];
     * out is [rows, cols] contiguous. */
    void (*swiglu_fwd)(v3_kctx *ctx, float *out, const float *in, int64_t ld_in, int64_t u_off,
                       int64_t rows, int64_t cols);
    /* din (same layout as in; both halves ASSIGNED) from dout [rows, cols]. */
    void (*swiglu_bwd)(v3_kctx *ctx, float *din, const float *dout, const float *in,
                       int64_t ld_in, int64_t u_off, int64_t rows, int64_t cols);

    /* ---- mixture of experts ---- */
    void (*router_fwd)(v3_kctx *ctx, const v3_router_params *p);
    void (*router_bwd)(v3_kctx *ctx, const v3_router_params *p);
    void (*router_balance)(v3_kctx *ctx, const v3_balance_params *p);
    /* Dispatch plan: sort the T*K (token, slot) pairs by expert, stably in token order.
     * counts (host) [E]: tokens per expert; row_of [T*K]: permuted row of pair (t, k);
     * src_of [T*K]: token of permuted row r. Rows of expert e start at Σ_{e'<e} counts[e']. */
    void (*moe_plan)(v3_kctx *ctx, const int32_t *topk_idx, int64_t T, int64_t K, int64_t E,
                     int64_t *counts, int32_t *row_of, int32_t *src_of);
    /* dst[r, :] = src[idx[r], :] for r < R (embedding lookup, MoE dispatch); row strides = C. */
    void (*gather_rows)(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                        int64_t C);
    /* dst[idx[r], :] = src[r, :] (ASSIGNS; writing new rows into the paged KV cache). The indices
     * must be distinct (not checked). */
    void (*scatter_rows)(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                         int64_t C);
    /* dst[idx[r], :] += src[r, :] (ACCUMULATES; embedding backward, dispatch backward). Rows that
     * share a destination are summed in increasing r. */
    void (*scatter_add_rows)(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                             int64_t R, int64_t C);
    /* y[t] += Σ_k w[t,k] · yperm[row_of[t*K+k]] (ACCUMULATES onto the shared-expert output). */
    void (*moe_combine_fwd)(v3_kctx *ctx, float *y, const float *yperm, const int32_t *row_of,
                            const float *w, int64_t T, int64_t K, int64_t C);
    /* dyperm[row_of[t*K+k]] = w[t,k]·dy[t]; dw[t,k] = <dy[t], yperm[row_of[t*K+k]]> (ASSIGN). */
    void (*moe_combine_bwd)(v3_kctx *ctx, float *dyperm, float *dw, const float *dy,
                            const float *yperm, const int32_t *row_of, const float *w, int64_t T,
                            int64_t K, int64_t C);

    /* ---- loss ---- */
    /* Softmax cross-entropy of rows of logits [T, V] (row stride ld) against targets [T]
     * (negative = ignored: loss 0, gradient 0). loss [T] = logsumexp - logit[target].
     * If grad_scale != 0, logits are overwritten IN PLACE with grad_scale·(softmax - onehot)
     * (zero rows for ignored targets). Callers chunk over tokens, so full-sequence fp32 logits
     * never exist at once. */
    void (*cross_entropy)(v3_kctx *ctx, float *logits, int64_t ld, float *loss,
                          const int32_t *targets, int64_t T, int64_t V, float grad_scale);

    /* ---- optimiser and reductions ---- */
    /* PyTorch AdamW (decoupled decay): p -= lr·wd·p; m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g²;
     * p -= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps), with g = grad_scale·grad, bc = 1 - beta^step. */
    void (*adamw)(v3_kctx *ctx, float *p, const float *grad, float *m, float *v, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                  float bc2, float grad_scale);
    /* *out (host, double) = Σ x[i]², fixed reduction order. */
    void (*sumsq)(v3_kctx *ctx, const float *x, int64_t n, double *out);
    void (*scale)(v3_kctx *ctx, float *x, int64_t n, float s);                 /* x *= s */
    void (*axpy)(v3_kctx *ctx, float *y, const float *x, int64_t n, float a);  /* y += a·x */
    void (*add)(v3_kctx *ctx, float *out, const float *a, const float *b, int64_t n); /* out = a+b */
    /* dst[i*ds0 + j*ds1 + c] (= or +=) src[i*ss0 + j*ss1 + c] for i<n0, j<n1, c<n2. A source stride
     * of 0 broadcasts. With accumulate and ds1 == 0 it is a reduction over j, summed in increasing j
     * (backends must not race on it). */
    void (*copy_3d)(v3_kctx *ctx, float *dst, int64_t ds0, int64_t ds1, const float *src,
                    int64_t ss0, int64_t ss1, int64_t n0, int64_t n1, int64_t n2, int accumulate);

    /* ---- optional: NULL where a backend lacks them (callers fall back to gemm); not in
     * V3_OP_LIST, so the parity harness does not require them ---- */
    /* Bp = B [N, K] (row stride ldb) in the CPU GEMM's strip layout: strip s holds B[16s + j, k]
     * at [k][j], j < 16, the last strip zero-padded. As floats; with bf16 set, as their high halves
     * when every value of B is exactly a bf16 (low 16 bits zero: a bf16 checkpoint's weights until
     * they are trained): returns 1 then, else packs floats and returns 0. Bp needs
     * V3_PACKED_NT_BYTES(N, K, 0) bytes (half of them are used for bf16). Read through wpacks. */
    int (*pack_nt)(v3_kctx *ctx, void *Bp, const float *B, int64_t ldb, int64_t N, int64_t K,
                   int bf16);
};

#define V3_PACKED_NT_BYTES(N, K, bf16) \
    ((size_t)(((N) + 15) / 16) * 16 * (size_t)(K) * ((bf16) ? 2 : 4))

/* Dispatch: v3k(ctx, gemm, 0, 1, M, N, K, ...). */
#define v3k(ctx, op, ...) ((ctx)->be->op((ctx), __VA_ARGS__))

/* Backends. v3_backend_cpu() always exists; v3_backend_cuda() returns NULL when the build has no
 * CUDA, and v3_kctx_init fails with a message when no device is present. */
const v3_backend *v3_backend_cpu(void);
const v3_backend *v3_backend_cuda(void);
/* "cpu" or "cuda"; NULL if unknown or not compiled in. */
const v3_backend *v3_backend_by_name(const char *name);

int v3_kctx_init(v3_kctx *ctx, const v3_backend *be, int n_threads, v3_err *err);
/* A context from the user's words: device "auto" (CUDA when compiled in and a device answers,
 * else the CPU), "cpu" or "cuda" (an error when unavailable; NULL = auto); math "auto" (bf16 on a
 * device, fp32 on the CPU), "fp32", "tf32" or "bf16" (NULL = auto). */
int v3_kctx_open(v3_kctx *ctx, const char *device, const char *math, int n_threads, v3_err *err);
void v3_kctx_free(v3_kctx *ctx);
/* Returns the sticky error (copied into err) and clears it. Synchronises the device. */
int v3k_check(v3_kctx *ctx, v3_err *err);
/* Records a failure in the context (first one wins). For backend implementations. */
void v3k_fail(v3_kctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
