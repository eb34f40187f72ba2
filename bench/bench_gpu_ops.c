/* bench_gpu_ops.c — the CUDA backend's gemm and attention on the shapes of one layer of a preset
 * (default `medium` at 4096 tokens), timed with CUDA events; one JSON line per case, in the
 * format bench/gpu_ops_torch.py prints for PyTorch on the same shapes (same "case" names), so
 * bench/gpu_summary.py can set the two side by side:
 *   {"impl": "v3tune", "op": "gemm", "case": "q_b.bwd_w", "dtype": "fp32", "M": 1536, "N": 384,
 *    "K": 4096, "shape": "...", "ms": 0.123, "tflops": 40.1}
 *
 *   bench_gpu_ops [--preset medium] [--tokens 4096] [--reps 10] [--filter SUBSTR]
 *                 [--math fp32,tf32,bf16]
 *
 * --math lists the backend's math modes to run every case in (default "fp32,bf16"; the "dtype"
 * field names the mode: bf16 = bf16 operands, fp32 accumulation and output, storage fp32).
 *
 * A linear layer y = x·Wᵀ (model/model_internal.h) is three GEMMs: fwd (x·Wᵀ), bwd_x (dy·W) and
 * bwd_w (dW += dyᵀ·x). The routed experts appear twice: one expert's GEMM at the average load
 * (T·K/E rows) through `gemm`, and all E of them through `gemm_grouped` as moe.c issues them.
 * The head is the loss chunk the model uses (model.c: 256 Mi logits per chunk on a device). Attention is one
 * causal document (kv_lo = 0, kv_hi = t + 1) in the model's layout (v inside the kv_b rows);
 * its FLOPs are counted as FlashAttention counts them: forward 2 matmuls, backward 5, over the
 * T(T+1)/2 visible pairs.
 * Timing: one warm-up, then the median of --reps repetitions, each between two events on the
 * legacy stream (the backend's op stream is a blocking one, so the events order with it), after
 * a write of 256 MiB that evicts the L2 cache. Inputs are random, never zeros. Exits 77
 * ("skipped") without a device, 1 if the backend reported an error. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/kernels.h"
#include "model/config.h"

enum { MAX_REPS = 100, POOL = 1 << 20, CHUNK = 1 << 16 };
static const size_t FLUSH_BYTES = (size_t)256 << 20; /* > the 50 MB L2 of an H100 */

typedef struct bench {
    v3_kctx ctx;
    int reps;
    const char *filter;
    void *flush;          /* [FLUSH_BYTES] device */
    float *pool;          /* (host) [POOL] normal samples, tiled into device buffers */
    cudaEvent_t e0, e1;
    int failed;
} bench;

/* a device buffer of n random floats; the pool is tiled at varying offsets (values only need to
 * be non-zero and of a realistic scale for timing, and drawing 165M normals would take seconds) */
static float *rand_buf(bench *b, int64_t n) {
    float *p = b->ctx.be->alloc(&b->ctx, (size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_gpu_ops: cannot allocate %lld floats\n", (long long)n);
        exit(1);
    }
    for (int64_t o = 0, i = 0; o < n; o += CHUNK, i++) {
        int64_t c = n - o < CHUNK ? n - o : CHUNK;
        int64_t start = (i * 104729) % (POOL - CHUNK);
        b->ctx.be->to_device(&b->ctx, p + o, b->pool + start, (size_t)c * sizeof(float));
    }
    return p;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*run_fn)(bench *b, const void *arg);

/* median milliseconds of one call of fn over b->reps, after one warm-up call */
static double time_ms(bench *b, run_fn fn, const void *arg) {
    float t[MAX_REPS];
    fn(b, arg);
    b->ctx.be->sync(&b->ctx);
    for (int r = 0; r < b->reps; r++) {
        cudaMemsetAsync(b->flush, r & 0xff, FLUSH_BYTES, 0);
        cudaEventRecord(b->e0, 0);
        fn(b, arg);
        cudaEventRecord(b->e1, 0);
        cudaEventSynchronize(b->e1);
        cudaEventElapsedTime(&t[r], b->e0, b->e1);
    }
    qsort(t, (size_t)b->reps, sizeof t[0], cmp_float);
    return t[b->reps / 2];
}

/* prints the case's line, or an error line (and marks the run failed) if the backend failed */
static void report(bench *b, const char *op, const char *name, const char *extra, double flop,
                   double ms) {
    v3_err err = {0};
    cudaError_t ce = cudaGetLastError();
    if (v3k_check(&b->ctx, &err) || ce != cudaSuccess) {
        printf("{\"impl\": \"v3tune\", \"op\": \"%s\", \"case\": \"%s\", \"error\": \"%s\"}\n", op,
               name, ce != cudaSuccess ? cudaGetErrorString(ce) : err.msg);
        b->failed = 1;
        return;
    }
    printf("{\"impl\": \"v3tune\", \"op\": \"%s\", \"case\": \"%s\", \"dtype\": \"%s\", %s, "
           "\"ms\": %.4f, \"tflops\": %.3f}\n",
           op, name, v3_math_name(b->ctx.math), extra, ms, flop / (ms * 1e-3) * 1e-12);
    fflush(stdout);
}

static int wanted(const bench *b, const char *name) {
    return !b->filter || strstr(name, b->filter);
}

/* ---- gemm ---- */
typedef struct gemm_case {
    int tA, tB;
    int64_t M, N, K;
    float beta;
    const float *A, *B;
    float *C;
} gemm_case;

static void run_gemm(bench *b, const void *arg) {
    const gemm_case *g = arg;
    v3k(&b->ctx, gemm, g->tA, g->tB, g->M, g->N, g->K, 1.0f, g->A, g->tA ? g->M : g->K, g->B,
        g->tB ? g->K : g->N, g->beta, g->C, g->N);
}

static void gemm_case_run(bench *b, const char *name, int tA, int tB, int64_t M, int64_t N,
                          int64_t K, float beta) {
    if (!wanted(b, name)) return;
    gemm_case g = {tA, tB, M, N, K, beta, NULL, NULL, NULL};
    g.A = rand_buf(b, M * K);
    g.B = rand_buf(b, K * N);
    g.C = rand_buf(b, M * N);
    double ms = time_ms(b, run_gemm, &g);
    char extra[256];
    snprintf(extra, sizeof extra,
             "\"M\": %lld, \"N\": %lld, \"K\": %lld, \"shape\": \"%s%lldx%lld · %s%lldx%lld\"",
             (long long)M, (long long)N, (long long)K, tA ? "T " : "", (long long)(tA ? K : M),
             (long long)(tA ? M : K), tB ? "T " : "", (long long)(tB ? N : K),
             (long long)(tB ? K : N));
    report(b, "gemm", name, extra, 2.0 * M * N * K, ms);
    b->ctx.be->free(&b->ctx, (void *)g.A);
    b->ctx.be->free(&b->ctx, (void *)g.B);
    b->ctx.be->free(&b->ctx, g.C);
}

/* y[rows, out] = x[rows, in] · W[out, in]ᵀ and its two backward GEMMs */
static void linear(bench *b, const char *layer, int64_t rows, int64_t in, int64_t out) {
    char name[96];
    snprintf(name, sizeof name, "%s.fwd", layer);
    gemm_case_run(b, name, 0, 1, rows, out, in, 0.0f);
    snprintf(name, sizeof name, "%s.bwd_x", layer);
    gemm_case_run(b, name, 0, 0, rows, in, out, 0.0f);
    snprintf(name, sizeof name, "%s.bwd_w", layer);
    gemm_case_run(b, name, 1, 0, out, in, rows, 1.0f);
}

/* ---- gemm_grouped: E experts of `rows` rows each, as model/moe.c issues them ---- */
typedef struct grouped_case {
    int tA, tB, n;
    float beta;
    v3_gemm_desc *d;
} grouped_case;

static void run_grouped(bench *b, const void *arg) {
    const grouped_case *g = arg;
    v3k(&b->ctx, gemm_grouped, g->tA, g->tB, 1.0f, g->beta, g->n, g->d);
}

static void experts_grouped(bench *b, const char *layer, int64_t E, int64_t rows, int64_t in,
                            int64_t out) {
    static const char *const pass[3] = {"fwd", "bwd_x", "bwd_w"};
    v3_gemm_desc *d = calloc((size_t)E, sizeof *d);
    for (int k = 0; k < 3; k++) {
        char name[96];
        snprintf(name, sizeof name, "%s.%s", layer, pass[k]);
        if (!wanted(b, name)) continue;
        /* fwd y = x·Wᵀ: [rows,in]·[out,in]ᵀ; bwd_x dx = dy·W; bwd_w dW += dyᵀ·x */
        int64_t M = k == 2 ? out : rows, N = k == 0 ? out : in, K = k == 0 ? in : k == 1 ? out : rows;
        int64_t nA = M * K, nB = K * N, nC = M * N;
        float *A = rand_buf(b, E * nA), *B = rand_buf(b, E * nB), *C = rand_buf(b, E * nC);
        for (int64_t e = 0; e < E; e++)
            d[e] = (v3_gemm_desc){M, N, K, A + e * nA, B + e * nB, C + e * nC};
        grouped_case g = {k == 2, k == 0, (int)E, k == 2 ? 1.0f : 0.0f, d};
        double ms = time_ms(b, run_grouped, &g);
        char extra[256];
        snprintf(extra, sizeof extra,
                 "\"E\": %lld, \"M\": %lld, \"N\": %lld, \"K\": %lld, \"shape\": \"%lld x (%lldx%lldx%lld)\"",
                 (long long)E, (long long)M, (long long)N, (long long)K, (long long)E, (long long)M,
                 (long long)N, (long long)K);
        report(b, "gemm_grouped", name, extra, 2.0 * E * M * N * K, ms);
        b->ctx.be->free(&b->ctx, A);
        b->ctx.be->free(&b->ctx, B);
        b->ctx.be->free(&b->ctx, C);
    }
    free(d);
}

/* ---- attention: one causal document in MLA's layout ---- */
static void run_attn_fwd(bench *b, const void *arg) { v3k(&b->ctx, attention_fwd, arg); }
static void run_attn_bwd(bench *b, const void *arg) { v3k(&b->ctx, attention_bwd, arg); }

static void attention(bench *b, const v3_config *c, int64_t T) {
    if (!wanted(b, "attn")) return;
    int64_t H = c->n_head, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    int64_t dqk = dn + c->qk_rope_head_dim;
    int32_t *lo = malloc((size_t)T * 4), *hi = malloc((size_t)T * 4);
    for (int64_t t = 0; t < T; t++) {
        lo[t] = 0;
        hi[t] = (int32_t)(t + 1);
    }
    v3_kctx *x = &b->ctx;
    v3_attn_params p = {0};
    p.T = p.Tk = T;
    p.H = H;
    p.d_qk = dqk;
    p.d_v = dv;
    p.scale = (float)v3_config_softmax_scale(c);
    int32_t *dlo = x->be->alloc(x, (size_t)T * 4), *dhi = x->be->alloc(x, (size_t)T * 4);
    x->be->to_device(x, dlo, lo, (size_t)T * 4);
    x->be->to_device(x, dhi, hi, (size_t)T * 4);
    p.kv_lo = dlo;
    p.kv_hi = dhi;
    float *q = rand_buf(b, T * H * dqk), *k = rand_buf(b, T * H * dqk);
    float *kv = rand_buf(b, T * H * (dn + dv)); /* kv_b rows: k_nope then v per head */
    p.q = q, p.q_st = H * dqk, p.q_sh = dqk;
    p.k = k, p.k_st = H * dqk, p.k_sh = dqk;
    p.v = kv + dn, p.v_st = H * (dn + dv), p.v_sh = dn + dv;
    p.out = rand_buf(b, T * H * dv);
    p.lse = rand_buf(b, T * H);
    p.dout = rand_buf(b, T * H * dv);
    p.dq = rand_buf(b, T * H * dqk);
    p.dk = rand_buf(b, T * H * dqk);
    p.dv = rand_buf(b, T * H * dv);
    double pairs = (double)T * (T + 1) / 2;
    char extra[256];
    snprintf(extra, sizeof extra,
             "\"T\": %lld, \"H\": %lld, \"d_qk\": %lld, \"d_v\": %lld, \"shape\": \"T=%lld H=%lld "
             "d_qk=%lld d_v=%lld causal\", \"backend\": \"warp-per-query\"",
             (long long)T, (long long)H, (long long)dqk, (long long)dv, (long long)T, (long long)H,
             (long long)dqk, (long long)dv);
    double ms = time_ms(b, run_attn_fwd, &p); /* also leaves out/lse for the backward */
    report(b, "attention_fwd", "attn.fwd", extra, 2.0 * pairs * H * (dqk + dv), ms);
    ms = time_ms(b, run_attn_bwd, &p);
    report(b, "attention_bwd", "attn.bwd", extra, 2.0 * pairs * H * (3 * dqk + 2 * dv), ms);
    void *bufs[] = {dlo, dhi, q, k, kv, p.out, p.lse, (void *)p.dout, p.dq, p.dk, p.dv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) x->be->free(x, bufs[i]);
    free(lo);
    free(hi);
}

int main(int argc, char **argv) {
    const char *preset = "medium";
    int64_t T = 4096;
    bench b = {.reps = 10};
    const char *maths = "fp32,bf16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) b.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc) b.filter = argv[++i];
        else if (!strcmp(argv[i], "--math") && i + 1 < argc) maths = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gpu_ops [--preset NAME] [--tokens T] [--reps N] "
                            "[--filter SUBSTR] [--math fp32,tf32,bf16]\n");
            return 2;
        }
    }
    if (b.reps < 1 || b.reps > MAX_REPS || T < 1) {
        fprintf(stderr, "bench_gpu_ops: --reps must be 1..%d and --tokens ≥ 1\n", MAX_REPS);
        return 2;
    }
    v3_err err;
    v3_config c;
    if (v3_config_preset(&c, preset, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    const v3_backend *be = v3_backend_cuda();
    if (!be || v3_kctx_init(&b.ctx, be, 0, &err)) {
        printf("skipped: %s\n", be ? err.msg : "this build has no CUDA backend");
        return 77;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    fprintf(stderr, "bench_gpu_ops: %s, %d SMs, %.0f MB L2; preset %s, %lld tokens, median of %d\n",
            prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6, preset, (long long)T,
            b.reps);
    b.pool = malloc(POOL * sizeof(float));
    v3_rng r;
    v3_rng_seed(&r, 7);
    for (int i = 0; i < POOL; i++) b.pool[i] = 0.5f * v3_rng_normal(&r);
    if (cudaMalloc(&b.flush, FLUSH_BYTES) != cudaSuccess || cudaEventCreate(&b.e0) != cudaSuccess ||
        cudaEventCreate(&b.e1) != cudaSuccess) {
        fprintf(stderr, "bench_gpu_ops: cannot set up the timing buffers\n");
        return 1;
    }

    int64_t C = c.hidden_size, H = c.n_head, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    int64_t dv = c.v_head_dim, dqk = dn + dr, qr = c.q_lora_rank, kvr = c.kv_lora_rank;
    int64_t E = c.n_routed_experts, K = c.num_experts_per_tok, Ie = c.moe_intermediate_size;
    int64_t Is = Ie * c.n_shared_experts, V = c.vocab_size;
    int64_t chunk = (256 << 20) / V; /* the model's automatic loss chunk on a device (model.c) */
    chunk = chunk < 16 ? 16 : chunk > 4096 ? 4096 : chunk;
    int64_t rows_e = E ? T * K / E : 0; /* one expert's rows under a perfectly balanced routing */

    char mlist[64];
    snprintf(mlist, sizeof mlist, "%s", maths);
    for (char *save = NULL, *mname = strtok_r(mlist, ",", &save); mname;
         mname = strtok_r(NULL, ",", &save)) {
        int math = v3_math_by_name(mname);
        if (math < 0) {
            fprintf(stderr, "bench_gpu_ops: --math: unknown mode \"%s\" (fp32, tf32, bf16)\n", mname);
            return 2;
        }
        b.ctx.math = math;
        if (qr) {
            linear(&b, "q_a", T, C, qr);
            linear(&b, "q_b", T, qr, H * dqk);
        } else {
            linear(&b, "q", T, C, H * dqk);
        }
        linear(&b, "kv_a", T, C, kvr + dr);
        linear(&b, "kv_b", T, kvr, H * (dn + dv));
        linear(&b, "o", T, H * dv, C);
        if (E) {
            linear(&b, "router", T, C, E);
            if (Is) {
                linear(&b, "shared.gate_up", T, C, 2 * Is);
                linear(&b, "shared.down", T, Is, C);
            }
            linear(&b, "expert.gate_up", rows_e, C, 2 * Ie);
            linear(&b, "expert.down", rows_e, Ie, C);
            experts_grouped(&b, "experts.gate_up", E, rows_e, C, 2 * Ie);
            experts_grouped(&b, "experts.down", E, rows_e, Ie, C);
        }
        linear(&b, "dense.gate_up", T, C, 2 * c.intermediate_size);
        linear(&b, "dense.down", T, c.intermediate_size, C);
        linear(&b, "head_chunk", chunk, C, V);
        attention(&b, &c, T);
    }

    cudaEventDestroy(b.e0);
    cudaEventDestroy(b.e1);
    cudaFree(b.flush);
    free(b.pool);
    v3_kctx_free(&b.ctx);
    return b.failed ? 1 : 0;
}
