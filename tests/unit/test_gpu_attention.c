/* test_gpu_attention.c — the tensor-core attention of the CUDA backend's BF16 math mode
 * (kernels/cuda/cu_attention_tc.cu: bf16 operands, fp32 accumulation) against the CPU backend's
 * fp32 attention, forward and backward, on the layouts the model uses. Exit 77 without a device;
 * V3_GPU_TEST_BACKEND=cpu runs it on a CPU stand-in (gpucheck.h), which checks the plumbing.
 *
 * Cases: a causal document; a packed batch of 3 documents with an empty window; decoding (T = 1
 * and T = 7 against long caches, kv_lo = 0) with a head-broadcast k (k_sh = 0); MLA as
 * model/mla.c lays it out (q [T,H,192]; keys [T,H,192] whose rope part is shared by the heads;
 * v = kv + dn inside [T,H,dn+dv] rows) and in the absorbed form (k = v = one latent row per
 * token, head stride 0, d_v < d_qk); odd head dims (24/20) with unaligned strides; the medium
 * preset's 96/64 at T = 1000; 192/128 at T = 257 (a last tile of one query); random windows.
 * Each case runs on the device three ways:
 *   bf16, fp32 inputs   out, dq, dk, dv: ‖a−b‖/‖b‖ ≤ 2e-2. bf16 keeps 8 significant bits (unit
 *                       roundoff u = 2^-8): rounding q, k, v, P and dS each moves a result by
 *                       ~u/√3 ≈ 2e-3 rms relative, about 3-6e-3 together on random data; 2e-2
 *                       leaves a 3-5× margin and still catches a lost tile or a wrong mask.
 *                       lse: |a−b| ≤ 1e-3 + (2u + u²)·scale·max_j Σ_i|q_i k_ji| over the window:
 *                       lse moves by at most the largest move of a score, and rounding q and k
 *                       to bf16 moves a score by at most that much (a rigorous bound; a score of
 *                       std 1 typically moves ~2e-3, more than 1e-3 alone allows).
 *   bf16, bf16 inputs   the same inputs rounded to bf16 first, so the products are exact and
 *                       only P, dS and the fp32 sums round: all of the above, with lse ≤ 1e-3
 *                       flat (observed ~1e-6) — this catches a wrong score or mask element.
 *   fp32                the dispatch keeps the exact kernels: ≤ 1e-5 (fp32 sums in another
 *                       order: ~1e-7), lse ≤ 1e-5·(1 + |lse|).
 * In bf16 mode the same call twice must give identical bits. Outputs are prefilled with NaN, so
 * an element the op fails to write shows; guard words past every output catch writes beyond.
 * V3_ATTN_BENCH=1 (device only) also times the presets' shapes in both modes. Fresh inputs each
 * run (t_seed); replay with V3_TEST_SEED. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpucheck.h"
#include "kernels/kernels.h"
#include "testutil.h"

#define TOL_BF16 2e-2
#define TOL_LSE_BF16 1e-3
#define TOL_FP32 1e-5
#define U_BF16 (1.0 / 256) /* bf16 unit roundoff: 8-bit significand */

/* One problem. q, k, v are views into host buffers: v may live in k's buffer (absorbed MLA). */
typedef struct acase {
    char name[112];
    int64_t T, Tk, H, dq, dv;
    float scale;
    float *buf[3];       /* q, k, v buffers; buf[2] == NULL: v is in buf[1] */
    int64_t len[3];      /* their floats */
    int64_t off[3];      /* where q, k, v start in their buffer */
    int64_t q_st, q_sh, k_st, k_sh, v_st, v_sh;
    int64_t shared_rope; /* > 0: k dims [dq - shared_rope, dq) are equal for every head */
    int32_t *lo, *hi;
    float *dout;         /* [T, H, dv] */
} acase;

typedef struct ares {
    float *out, *lse, *dq, *dk, *dv;
} ares;

static int64_t n_out(const acase *c) { return c->T * c->H * c->dv; }
static int64_t n_lse(const acase *c) { return c->T * c->H; }
static int64_t n_dq(const acase *c) { return c->T * c->H * c->dq; }
static int64_t n_dk(const acase *c) { return c->Tk * c->H * c->dq; }
static int64_t n_dv(const acase *c) { return c->Tk * c->H * c->dv; }

static void ares_alloc(const acase *c, ares *r) {
    r->out = malloc((size_t)n_out(c) * 4 + 4);
    r->lse = malloc((size_t)n_lse(c) * 4 + 4);
    r->dq = malloc((size_t)n_dq(c) * 4 + 4);
    r->dk = malloc((size_t)n_dk(c) * 4 + 4);
    r->dv = malloc((size_t)n_dv(c) * 4 + 4);
}
static void ares_free(ares *r) {
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
    memset(r, 0, sizeof *r);
}

/* ---- cases ---- */

static void case_new(acase *c, const char *name, int64_t T, int64_t Tk, int64_t H, int64_t dq,
                     int64_t dv) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->T = T, c->Tk = Tk, c->H = H, c->dq = dq, c->dv = dv;
    c->scale = (float)(1.0 / sqrt((double)dq)); /* N(0,1) inputs: scores of std ≈ 1 */
    c->lo = calloc((size_t)T, 4);
    c->hi = calloc((size_t)T, 4);
    c->dout = malloc((size_t)(T * H * dv) * 4);
}

static void case_free(acase *c) {
    for (int i = 0; i < 3; i++) free(c->buf[i]);
    free(c->lo), free(c->hi), free(c->dout);
}

static void alloc_bufs(acase *c, int64_t nq, int64_t nk, int64_t nv) {
    int64_t n[3] = {nq, nk, nv};
    for (int i = 0; i < 3; i++) {
        c->len[i] = n[i];
        c->buf[i] = n[i] > 0 ? malloc((size_t)n[i] * 4) : NULL;
    }
}

/* q [T,H,dq], k [Tk,H or 1,dq], v [Tk,H,dv], each row padded by `pad` floats (odd: unaligned) */
static void layout_plain(acase *c, int k_bcast, int64_t pad) {
    c->q_sh = c->dq, c->q_st = c->H * c->dq + pad;
    c->k_sh = k_bcast ? 0 : c->dq, c->k_st = (k_bcast ? 1 : c->H) * c->dq + pad;
    c->v_sh = c->dv, c->v_st = c->H * c->dv + 2 * pad;
    alloc_bufs(c, c->T * c->q_st, c->Tk * c->k_st, c->Tk * c->v_st);
}

/* model/mla.c, plain form: q [T,H,dn+dr]; keys [Tk,H,dn+dr] = k_nope of the head ‖ the one
 * k_pe of the token (copied to every head); v = kv + dn in kv [Tk,H,dn+dv]. */
static void layout_mla(acase *c, int64_t dn) {
    c->q_sh = c->dq, c->q_st = c->H * c->dq;
    c->k_sh = c->dq, c->k_st = c->H * c->dq;
    c->v_sh = dn + c->dv, c->v_st = c->H * (dn + c->dv);
    c->off[2] = dn;
    c->shared_rope = c->dq - dn;
    alloc_bufs(c, c->T * c->q_st, c->Tk * c->k_st, c->Tk * c->v_st);
}

/* model/mla.c, absorbed form: q [T,H,L]; one latent row [L] per key serves as k (all L dims)
 * and v (the first d_v = kv_lora_rank dims) of every head: k_sh = v_sh = 0, v aliases k. */
static void layout_absorbed(acase *c) {
    c->q_sh = c->dq, c->q_st = c->H * c->dq;
    c->k_sh = 0, c->k_st = c->dq;
    c->v_sh = 0, c->v_st = c->dq;
    alloc_bufs(c, c->T * c->q_st, c->Tk * c->k_st, 0);
}

static void fill_inputs(acase *c, v3_rng *rng) {
    for (int i = 0; i < 3; i++)
        if (c->buf[i]) t_fill_normal(rng, c->buf[i], c->len[i], 1.0f);
    t_fill_normal(rng, c->dout, n_out(c), 1.0f);
    if (c->shared_rope) /* assemble_keys: the rope part broadcast to every head */
        for (int64_t s = 0; s < c->Tk; s++)
            for (int64_t h = 1; h < c->H; h++)
                memcpy(c->buf[1] + s * c->k_st + h * c->k_sh + c->dq - c->shared_rope,
                       c->buf[1] + s * c->k_st + c->dq - c->shared_rope,
                       (size_t)c->shared_rope * 4);
}

/* training windows: causal inside documents starting at starts[0] = 0, starts[1], ... */
static void win_docs(acase *c, const int64_t *starts, int n) {
    for (int64_t t = 0; t < c->T; t++) {
        int64_t s = 0;
        for (int i = 0; i < n; i++)
            if (starts[i] <= t) s = starts[i];
        c->lo[t] = (int32_t)s, c->hi[t] = (int32_t)(t + 1);
    }
}
/* decoding: the T queries are the last T of Tk positions */
static void win_decode(acase *c) {
    for (int64_t t = 0; t < c->T; t++) c->lo[t] = 0, c->hi[t] = (int32_t)(c->Tk - c->T + t + 1);
}
/* any window [lo, hi) ⊆ [0, Tk), one in eight empty */
static void win_random(acase *c, v3_rng *rng) {
    for (int64_t t = 0; t < c->T; t++) {
        int64_t a = (int64_t)v3_rng_below(rng, (uint64_t)c->Tk + 1);
        int64_t b = (int64_t)v3_rng_below(rng, (uint64_t)c->Tk + 1);
        if (a > b) { int64_t x = a; a = b; b = x; }
        if (v3_rng_below(rng, 8) == 0) b = a;
        c->lo[t] = (int32_t)a, c->hi[t] = (int32_t)b;
    }
}

/* round to the nearest bf16 (ties to even); finite inputs */
static float to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
static void round_inputs(acase *c) {
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; c->buf[i] && j < c->len[i]; j++) c->buf[i][j] = to_bf16(c->buf[i][j]);
    for (int64_t j = 0; j < n_out(c); j++) c->dout[j] = to_bf16(c->dout[j]);
}

/* ---- running a case on a backend ---- */

enum { GUARD = 16, MAX_BUFS = 16 };
static const uint32_t guard_word = 0x7fa5a5a5u; /* a NaN payload no op writes */

typedef struct dbufs {
    v3_kctx *ctx;
    int n;
    char *p[MAX_BUFS];
    size_t bytes[MAX_BUFS];
} dbufs;

/* bytes of backend memory holding host (NaN-filled when host is NULL: an output every element
 * of which the op must write), followed by guard words */
static void *dput(dbufs *b, const void *host, size_t bytes) {
    v3_kctx *ctx = b->ctx;
    if (b->n >= MAX_BUFS) abort(); /* test bug */
    char *p = ctx->be->alloc(ctx, bytes + GUARD * 4);
    if (!p) {
        fprintf(stderr, "test_gpu_attention: allocation of %zu bytes failed\n", bytes);
        abort();
    }
    uint32_t *fill = malloc(bytes + GUARD * 4);
    if (host) memcpy(fill, host, bytes);
    else
        for (size_t i = 0; i < bytes / 4; i++) fill[i] = 0x7fc00000u; /* NaN */
    for (int i = 0; i < GUARD; i++) fill[bytes / 4 + i] = guard_word;
    ctx->be->to_device(ctx, p, fill, bytes + GUARD * 4);
    free(fill);
    b->p[b->n] = p, b->bytes[b->n++] = bytes;
    return p;
}

static void dget(dbufs *b, void *host, const void *dev, size_t bytes) {
    b->ctx->be->to_host(b->ctx, host, dev, bytes);
}

/* checks every guard and the backend's sticky error, then frees; returns 0 when all is well */
static int ddone(dbufs *b, const char *what) {
    v3_kctx *ctx = b->ctx;
    int bad = 0;
    ctx->be->sync(ctx);
    for (int i = 0; i < b->n; i++) {
        uint32_t g[GUARD];
        ctx->be->to_host(ctx, g, b->p[i] + b->bytes[i], sizeof g);
        int ok = 1;
        for (int j = 0; j < GUARD; j++) ok &= g[j] == guard_word;
        CHECK(ok, "%s: write past the end of buffer %d (%zu bytes)", what, i, b->bytes[i]);
        bad += !ok;
        ctx->be->free(ctx, b->p[i]);
    }
    v3_err e = {0};
    int rc = v3k_check(ctx, &e);
    CHECK(rc == 0, "%s: backend error: %s", what, e.msg);
    b->n = 0;
    return bad + (rc != 0);
}

/* Forward, then backward at fo/flse (the reference forward's out and lse, so both sides
 * differentiate the same function; NULL: this run's own) on ctx. */
static void run_case(v3_kctx *ctx, const acase *c, const float *fo, const float *flse, ares *r,
                     const char *what) {
    dbufs b = {.ctx = ctx};
    int64_t T = c->T, H = c->H;
    float *q = dput(&b, c->buf[0], (size_t)c->len[0] * 4);
    float *k = dput(&b, c->buf[1], (size_t)c->len[1] * 4);
    float *v = c->buf[2] ? dput(&b, c->buf[2], (size_t)c->len[2] * 4) : k;
    v3_attn_params p = {.T = T, .Tk = c->Tk, .H = H, .d_qk = c->dq, .d_v = c->dv,
                        .scale = c->scale};
    p.kv_lo = dput(&b, c->lo, (size_t)T * 4);
    p.kv_hi = dput(&b, c->hi, (size_t)T * 4);
    p.q = q + c->off[0], p.q_st = c->q_st, p.q_sh = c->q_sh;
    p.k = k + c->off[1], p.k_st = c->k_st, p.k_sh = c->k_sh;
    p.v = v + c->off[2], p.v_st = c->v_st, p.v_sh = c->v_sh;
    p.out = dput(&b, NULL, (size_t)n_out(c) * 4);
    p.lse = dput(&b, NULL, (size_t)n_lse(c) * 4);
    v3k(ctx, attention_fwd, &p);
    dget(&b, r->out, p.out, (size_t)n_out(c) * 4);
    dget(&b, r->lse, p.lse, (size_t)n_lse(c) * 4);
    if (fo) {
        ctx->be->to_device(ctx, p.out, fo, (size_t)n_out(c) * 4);
        ctx->be->to_device(ctx, p.lse, flse, (size_t)n_lse(c) * 4);
    }
    p.dout = dput(&b, c->dout, (size_t)n_out(c) * 4);
    p.dq = dput(&b, NULL, (size_t)n_dq(c) * 4);
    p.dk = dput(&b, NULL, (size_t)n_dk(c) * 4);
    p.dv = dput(&b, NULL, (size_t)n_dv(c) * 4);
    v3k(ctx, attention_bwd, &p);
    dget(&b, r->dq, p.dq, (size_t)n_dq(c) * 4);
    dget(&b, r->dk, p.dk, (size_t)n_dk(c) * 4);
    dget(&b, r->dv, p.dv, (size_t)n_dv(c) * 4);
    char label[160];
    snprintf(label, sizeof label, "%s [%s]", c->name, what);
    ddone(&b, label);
}

/* ---- comparisons ---- */

/* (2u + u²)·scale·max_{j in window} Σ_i |q_i k_ji| per (t, h): the most that rounding q and k to
 * bf16 can move any score of the window, hence lse (1-Lipschitz in the max norm); ×1.01 for the
 * fp32 sums. */
static double *lse_round_bound(const acase *c) {
    double *w = malloc((size_t)n_lse(c) * 8);
    const float *qb = c->buf[0] + c->off[0], *kb = c->buf[1] + c->off[1];
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t h = 0; h < c->H; h++) {
            const float *q = qb + t * c->q_st + h * c->q_sh;
            double mx = 0;
            for (int64_t j = c->lo[t]; j < c->hi[t]; j++) {
                const float *k = kb + j * c->k_st + h * c->k_sh;
                double s = 0;
                for (int64_t i = 0; i < c->dq; i++) s += fabs((double)q[i] * k[i]);
                if (s > mx) mx = s;
            }
            w[t * c->H + h] = 1.01 * (2 * U_BF16 + U_BF16 * U_BF16) * c->scale * mx;
        }
    return w;
}

/* Largest excess of |a − b| over its bound abs_tol + rel_tol·|b| + (extra ? extra[i] : 0)
 * (≤ 0: all within); a non-finite reference (-inf: empty window) must be matched exactly. */
static double lse_excess(const float *a, const float *b, int64_t n, double abs_tol,
                         double rel_tol, const double *extra, double *worst) {
    double ex = -INFINITY;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e;
        if (!isfinite(b[i])) e = a[i] == b[i] ? -1.0 : INFINITY;
        else {
            double d = fabs((double)a[i] - b[i]);
            if (isnan(a[i])) d = INFINITY;
            if (d > *worst) *worst = d;
            e = d - (abs_tol + rel_tol * fabs(b[i]) + (extra ? extra[i] : 0.0));
        }
        if (e > ex) ex = e;
    }
    return ex;
}

typedef struct errs {
    double out, lse, dq, dk, dv;
} errs;

/* Compares got with ref under tolerance tol (relative Frobenius) and the lse bounds; reports. */
static errs compare(const acase *c, const ares *got, const ares *ref, const char *mode, double tol,
                    double lse_abs, double lse_rel, const double *lse_extra) {
    errs e;
    e.out = t_rel_err(got->out, ref->out, n_out(c));
    e.dq = t_rel_err(got->dq, ref->dq, n_dq(c));
    e.dk = t_rel_err(got->dk, ref->dk, n_dk(c));
    e.dv = t_rel_err(got->dv, ref->dv, n_dv(c));
    double ex = lse_excess(got->lse, ref->lse, n_lse(c), lse_abs, lse_rel, lse_extra, &e.lse);
    CHECK(e.out <= tol, "%s [%s]: out error %.3g > %.3g", c->name, mode, e.out, tol);
    CHECK(ex <= 0, "%s [%s]: lse error %.3g beyond its bound by %.3g", c->name, mode, e.lse, ex);
    CHECK(e.dq <= tol, "%s [%s]: dq error %.3g > %.3g", c->name, mode, e.dq, tol);
    CHECK(e.dk <= tol, "%s [%s]: dk error %.3g > %.3g", c->name, mode, e.dk, tol);
    CHECK(e.dv <= tol, "%s [%s]: dv error %.3g > %.3g", c->name, mode, e.dv, tol);
    return e;
}

static int same_bits(const acase *c, const ares *a, const ares *b) {
    return memcmp(a->out, b->out, (size_t)n_out(c) * 4) == 0 &&
           memcmp(a->lse, b->lse, (size_t)n_lse(c) * 4) == 0 &&
           memcmp(a->dq, b->dq, (size_t)n_dq(c) * 4) == 0 &&
           memcmp(a->dk, b->dk, (size_t)n_dk(c) * 4) == 0 &&
           memcmp(a->dv, b->dv, (size_t)n_dv(c) * 4) == 0;
}

/* ---- one case, every way ---- */

typedef struct env {
    v3_kctx cpu, dev;
    int fake;
    int bf16_differs; /* some bf16-mode result differs from the fp32 mode's: the fast path ran */
} env;

/* bf16 mode on c as it is, bitwise repeatable; fp32 mode too when `fp32`. Returns bf16 errors. */
static errs bf16_pass(env *E, const acase *c, const char *flavour, const double *lse_extra,
                      int fp32) {
    ares ref, a, a2;
    ares_alloc(c, &ref), ares_alloc(c, &a), ares_alloc(c, &a2);
    run_case(&E->cpu, c, NULL, NULL, &ref, "cpu");
    char mode[64];
    snprintf(mode, sizeof mode, "bf16, %s", flavour);
    E->dev.math = V3_MATH_BF16;
    run_case(&E->dev, c, ref.out, ref.lse, &a, mode);
    run_case(&E->dev, c, ref.out, ref.lse, &a2, mode);
    CHECK(same_bits(c, &a, &a2), "%s [%s]: two identical calls differ bitwise", c->name, mode);
    errs e = compare(c, &a, &ref, mode, TOL_BF16, TOL_LSE_BF16, 0.0, lse_extra);
    if (fp32) {
        E->dev.math = V3_MATH_FP32;
        run_case(&E->dev, c, ref.out, ref.lse, &a2, "fp32");
        errs f = compare(c, &a2, &ref, "fp32", TOL_FP32, TOL_FP32, TOL_FP32, NULL);
        printf("    fp32:             out %.1e  lse %.1e  dq %.1e  dk %.1e  dv %.1e\n", f.out,
               f.lse, f.dq, f.dk, f.dv);
        E->bf16_differs |= !same_bits(c, &a, &a2);
    }
    printf("    bf16, %-11s out %.1e  lse %.1e  dq %.1e  dk %.1e  dv %.1e\n", flavour, e.out, e.lse,
           e.dq, e.dk, e.dv);
    ares_free(&ref), ares_free(&a), ares_free(&a2);
    E->dev.math = V3_MATH_FP32;
    return e;
}

static void run_all(env *E, acase *c, v3_rng *rng) {
    printf("  %s: T=%lld Tk=%lld H=%lld d_qk=%lld d_v=%lld\n", c->name, (long long)c->T,
           (long long)c->Tk, (long long)c->H, (long long)c->dq, (long long)c->dv);
    fill_inputs(c, rng);
    double *extra = lse_round_bound(c);
    bf16_pass(E, c, "fp32 inputs", extra, 1);
    free(extra);
    round_inputs(c);
    bf16_pass(E, c, "bf16 inputs", NULL, 0);
    case_free(c);
}

static void run_cases(env *E, v3_rng *rng) {
    acase c;
    case_new(&c, "causal, one document", 200, 200, 2, 64, 64);
    layout_plain(&c, 0, 0);
    win_docs(&c, (const int64_t[]){0}, 1);
    run_all(E, &c, rng);

    case_new(&c, "packed 3 documents, an empty window", 300, 300, 3, 96, 64);
    layout_plain(&c, 0, 0);
    win_docs(&c, (const int64_t[]){0, 90, 107}, 3);
    c.hi[150] = c.lo[150];
    run_all(E, &c, rng);

    case_new(&c, "decode T=1", 1, 777, 4, 192, 128);
    layout_plain(&c, 0, 0);
    win_decode(&c);
    run_all(E, &c, rng);

    case_new(&c, "decode T=7, k broadcast (k_sh=0), d_v > d_qk", 7, 500, 3, 40, 56);
    layout_plain(&c, 1, 4);
    win_decode(&c);
    run_all(E, &c, rng);

    case_new(&c, "MLA plain layout, 2 documents", 150, 150, 2, 192, 128);
    layout_mla(&c, 128);
    win_docs(&c, (const int64_t[]){0, 61}, 2);
    run_all(E, &c, rng);

    case_new(&c, "MLA absorbed: k = v = latent, head stride 0", 100, 100, 4, 80, 64);
    layout_absorbed(&c);
    win_docs(&c, (const int64_t[]){0}, 1);
    run_all(E, &c, rng);

    case_new(&c, "odd head dims, unaligned strides", 33, 33, 2, 24, 20);
    layout_plain(&c, 0, 1);
    win_docs(&c, (const int64_t[]){0, 20}, 2);
    run_all(E, &c, rng);

    case_new(&c, "medium preset dims, 2 documents", 1000, 1000, 2, 96, 64);
    layout_plain(&c, 0, 0);
    win_docs(&c, (const int64_t[]){0, 613}, 2);
    run_all(E, &c, rng);

    case_new(&c, "DeepSeek-V3 dims, last tile of one query", 257, 257, 2, 192, 128);
    layout_plain(&c, 0, 0);
    win_docs(&c, (const int64_t[]){0}, 1);
    run_all(E, &c, rng);

    case_new(&c, "random windows, some empty", 130, 250, 2, 48, 16);
    layout_plain(&c, 0, 0);
    win_random(&c, rng);
    run_all(E, &c, rng);
}

/* ---- optional timing (V3_ATTN_BENCH=1) ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* causal single document of T tokens: forward and backward per math mode, mean of 5 after one
 * warm-up; TFLOP/s counts the useful (unmasked) products, backward as 2.5 forwards */
static void bench_shape(env *E, v3_rng *rng, int64_t T, int64_t H, int64_t dq, int64_t dv) {
    acase c;
    case_new(&c, "bench", T, T, H, dq, dv);
    layout_plain(&c, 0, 0);
    win_docs(&c, (const int64_t[]){0}, 1);
    fill_inputs(&c, rng);
    v3_kctx *ctx = &E->dev;
    dbufs b = {.ctx = ctx};
    v3_attn_params p = {.T = T, .Tk = T, .H = H, .d_qk = dq, .d_v = dv, .scale = c.scale};
    p.q = dput(&b, c.buf[0], (size_t)c.len[0] * 4), p.q_st = c.q_st, p.q_sh = c.q_sh;
    p.k = dput(&b, c.buf[1], (size_t)c.len[1] * 4), p.k_st = c.k_st, p.k_sh = c.k_sh;
    p.v = dput(&b, c.buf[2], (size_t)c.len[2] * 4), p.v_st = c.v_st, p.v_sh = c.v_sh;
    p.kv_lo = dput(&b, c.lo, (size_t)T * 4), p.kv_hi = dput(&b, c.hi, (size_t)T * 4);
    p.out = dput(&b, NULL, (size_t)n_out(&c) * 4), p.lse = dput(&b, NULL, (size_t)T * H * 4);
    p.dout = dput(&b, c.dout, (size_t)n_out(&c) * 4);
    p.dq = dput(&b, NULL, (size_t)n_dq(&c) * 4), p.dk = dput(&b, NULL, (size_t)n_dk(&c) * 4);
    p.dv = dput(&b, NULL, (size_t)n_dv(&c) * 4);
    double flop = 2.0 * (double)T * (T + 1) / 2 * H * (dq + dv);
    const int modes[] = {V3_MATH_BF16, V3_MATH_FP32};
    for (int m = 0; m < 2; m++) {
        ctx->math = modes[m];
        double tf = 0, tb = 0;
        for (int it = 0; it < 6; it++) {
            ctx->be->sync(ctx);
            double t0 = now_s();
            v3k(ctx, attention_fwd, &p);
            ctx->be->sync(ctx);
            double t1 = now_s();
            v3k(ctx, attention_bwd, &p);
            ctx->be->sync(ctx);
            double t2 = now_s();
            if (it) tf += (t1 - t0) / 5, tb += (t2 - t1) / 5;
        }
        printf("  bench T=%lld H=%lld d_qk=%lld d_v=%lld causal, %s: fwd %.3f ms (%.1f TFLOP/s), "
               "bwd %.3f ms (%.1f TFLOP/s)\n",
               (long long)T, (long long)H, (long long)dq, (long long)dv, v3_math_name(modes[m]),
               tf * 1e3, flop / tf * 1e-12, tb * 1e3, 2.5 * flop / tb * 1e-12);
    }
    ctx->math = V3_MATH_FP32;
    ddone(&b, "bench");
    case_free(&c);
}

int main(void) {
    gpu_dev d;
    env E = {0};
    int rc = gpu_open(&d, &E.dev, "test_gpu_attention");
    if (rc) return rc;
    E.fake = d.fake;
    v3_err err = {0};
    CHECK_OK(v3_kctx_init(&E.cpu, v3_backend_cpu(), 0, &err), &err);
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_gpu_attention"));
    run_cases(&E, &rng);
    /* on a device, bf16 must take the tensor-core path: a build without sm_80+ device code
     * (CMAKE_CUDA_ARCHITECTURES below 80) silently falls back to the fp32 kernels */
    if (!E.fake)
        CHECK(E.bf16_differs, "bf16 mode gave the fp32 kernels' bits on every case: the "
              "tensor-core kernels did not run (build for sm_80+, e.g. "
              "-DCMAKE_CUDA_ARCHITECTURES=90)");
    const char *bench = getenv("V3_ATTN_BENCH");
    if (bench && *bench && strcmp(bench, "0") != 0 && !E.fake) {
        bench_shape(&E, &rng, 4096, 16, 96, 64);
        bench_shape(&E, &rng, 4096, 16, 192, 128);
    }
    v3_kctx_free(&E.cpu);
    v3_kctx_free(&E.dev);
    return t_finish("test_gpu_attention");
}
