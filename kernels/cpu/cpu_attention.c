/* cpu_attention.c — softmax attention with per-query key windows [kv_lo, kv_hi) (causal +
 * document masks, decoding against a cache) for the CPU backend.
 *
 * Every query (t, h) is computed by one fixed sequence of operations that depends only on its
 * own q, its window and the keys/values in it: the same bits whether the query is alone
 * (decoding) or in a batch (the trainer's recompute), and whatever the thread count.
 * For speed, queries of one head are processed in blocks of QB that walk the union of their
 * windows together, so each key/value row is loaded once per block instead of once per query;
 * blocking changes which rows are in cache, never a query's arithmetic.
 * The backward needs per-key sums over queries; instead of atomics it makes a second pass over
 * key blocks (each (s, h) owned by one task, queries visited in increasing t), recomputing the
 * scores once more but keeping results independent of the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

enum { QB = 8, KB = 8 };

/* Σ a[i]·b[i] with 8 interleaved partial sums, as one 8-lane vector (GCC/Clang vector
 * extension: element-wise multiply then add, so the order is fixed on every target). Every
 * score of this file goes through it, so forward and backward see identical scores. */
typedef float v8f __attribute__((vector_size(32)));
/* the fixed reduction of dot8's eight lanes (dot8x8 must use the same: same bits) */
static inline float reduce8(const float r[8]) {
    return ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
}

static inline float dot8(const float *a, const float *b, int64_t n) {
    v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        acc += x * y;
    }
    float r[8];
    memcpy(r, &acc, sizeof r);
    for (; i < n; i++) r[i & 7] += a[i] * b[i];
    return reduce8(r);
}

/* out[j] = dot8(a[j], b, n) for j < 8: the same per-lane sums and final reduction, the eight
 * chains interleaved (one dot8 is a chain of dependent adds: latency-bound, not throughput-bound).
 * Callers pass a repeated row for unused slots and ignore their results. */
static inline void dot8x8(const float *const a[8], const float *b, int64_t n, float out[8]) {
    if (n % 8) {
        for (int j = 0; j < 8; j++) out[j] = dot8(a[j], b, n);
        return;
    }
    v8f acc[8];
    for (int j = 0; j < 8; j++) acc[j] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i += 8) {
        v8f y;
        memcpy(&y, b + i, sizeof y);
        for (int j = 0; j < 8; j++) {
            v8f x;
            memcpy(&x, a[j] + i, sizeof x);
            acc[j] += x * y;
        }
    }
    for (int j = 0; j < 8; j++) {
        float r[8];
        memcpy(r, &acc[j], sizeof r);
        out[j] = reduce8(r);
    }
}

static int windows_ok(v3_kctx *ctx, const v3_attn_params *p) {
    for (int64_t t = 0; t < p->T; t++)
        if (p->kv_lo[t] < 0 || p->kv_hi[t] > p->Tk || p->kv_lo[t] > p->kv_hi[t]) {
            v3k_fail(ctx, V3_ERANGE, "attention: query %lld has key window [%d, %d) outside [0, %lld)",
                     (long long)t, p->kv_lo[t], p->kv_hi[t], (long long)p->Tk);
            return 0;
        }
    return 1;
}

/* union of the windows of queries [t0, t1) */
static void window_union(const v3_attn_params *p, int64_t t0, int64_t t1, int64_t *lo,
                         int64_t *hi) {
    *lo = p->Tk, *hi = 0;
    for (int64_t t = t0; t < t1; t++) {
        if (p->kv_hi[t] <= p->kv_lo[t]) continue;
        if (p->kv_lo[t] < *lo) *lo = p->kv_lo[t];
        if (p->kv_hi[t] > *hi) *hi = p->kv_hi[t];
    }
}

/* Forward for queries [t0, t0+nq) of head h. sc: [QB][Tk] scratch, acc: [QB][d_v] scratch. */
__attribute__((target_clones("avx2", "default")))
static void fwd_block(const v3_attn_params *p, int64_t t0, int64_t nq, int64_t h, float *sc,
                      float *acc) {
    int64_t H = p->H, dq = p->d_qk, dv = p->d_v, Tk = p->Tk, ulo, uhi;
    window_union(p, t0, t0 + nq, &ulo, &uhi);
    const float *q[QB];
    for (int64_t j = 0; j < QB; j++) /* unused slots repeat the first query */
        q[j] = p->q + (t0 + (j < nq ? j : 0)) * p->q_st + h * p->q_sh;
    /* scores: one key row, every query of the block that sees it */
    for (int64_t s = ulo; s < uhi; s++) {
        const float *k = p->k + s * p->k_st + h * p->k_sh;
        float d[QB];
        dot8x8(q, k, dq, d);
        for (int64_t j = 0; j < nq; j++)
            if (s >= p->kv_lo[t0 + j] && s < p->kv_hi[t0 + j]) sc[j * Tk + s] = p->scale * d[j];
    }
    float mx[QB];
    double sum[QB];
    for (int64_t j = 0; j < nq; j++) {
        int64_t lo = p->kv_lo[t0 + j], hi = p->kv_hi[t0 + j];
        float m = -INFINITY;
        for (int64_t s = lo; s < hi; s++)
            if (sc[j * Tk + s] > m) m = sc[j * Tk + s];
        double z = 0;
        for (int64_t s = lo; s < hi; s++) {
            float e = expf(sc[j * Tk + s] - m);
            sc[j * Tk + s] = e;
            z += e;
        }
        mx[j] = m, sum[j] = z;
        for (int64_t i = 0; i < dv; i++) acc[j * dv + i] = 0.0f;
    }
    /* values: one row, every query that sees it, keys in increasing order per query */
    for (int64_t s = ulo; s < uhi; s++) {
        const float *v = p->v + s * p->v_st + h * p->v_sh;
        for (int64_t j = 0; j < nq; j++) {
            if (s < p->kv_lo[t0 + j] || s >= p->kv_hi[t0 + j]) continue;
            float e = sc[j * Tk + s], *a = acc + j * dv;
#pragma omp simd /* distinct rows (the compiler cannot prove it): vectorise */
            for (int64_t i = 0; i < dv; i++) a[i] += e * v[i];
        }
    }
    for (int64_t j = 0; j < nq; j++) {
        int64_t th = (t0 + j) * H + h;
        float *o = p->out + th * dv;
        if (p->kv_hi[t0 + j] <= p->kv_lo[t0 + j]) { /* no keys: zero output, lse = -inf */
            for (int64_t i = 0; i < dv; i++) o[i] = 0.0f;
            p->lse[th] = -INFINITY;
            continue;
        }
        float inv = (float)(1.0 / sum[j]);
        for (int64_t i = 0; i < dv; i++) o[i] = acc[j * dv + i] * inv;
        p->lse[th] = mx[j] + (float)log(sum[j]);
    }
}

void cpu_attention_fwd(v3_kctx *ctx, const v3_attn_params *p) {
    if (!windows_ok(ctx, p)) return;
    int64_t T = p->T, H = p->H, nb = (T + QB - 1) / QB;
    int failed = 0;
#pragma omp parallel num_threads(cpu_threads(ctx)) if (T * H > 1)
    {
        float *sc = malloc((size_t)(QB * (p->Tk > 0 ? p->Tk : 1)) * sizeof(float));
        float *acc = malloc((size_t)(QB * p->d_v + 1) * sizeof(float));
        if (!sc || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < nb * H; task++) {
            if (!sc || !acc) continue;
            int64_t b = task / H, h = task % H, t0 = b * QB;
            fwd_block(p, t0, T - t0 < QB ? T - t0 : QB, h, sc, acc);
        }
        free(sc);
        free(acc);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "attention_fwd: out of memory");
}

/* dq for queries [t0, t0+nq) of head h: dS = P ⊙ (dP − D), dq = scale·dS·K. The sums build up in
 * the scratch g ([QB][d_qk]), not in dq: rows of other heads, which the other threads write at the
 * same time, share cache lines with them, and every key's update would bounce those lines between
 * cores (the backward ran slower on two threads than on one). */
__attribute__((target_clones("avx2", "default")))
static void dq_block(const v3_attn_params *p, const float *D, int64_t t0, int64_t nq, int64_t h,
                     float *gbuf) {
    int64_t H = p->H, dq = p->d_qk, dv = p->d_v, ulo, uhi;
    window_union(p, t0, t0 + nq, &ulo, &uhi);
    const float *q[QB], *dout[QB];
    float *g[QB];
    for (int64_t j = 0; j < QB; j++) {
        int64_t t = t0 + (j < nq ? j : 0); /* unused slots repeat the first query */
        q[j] = p->q + t * p->q_st + h * p->q_sh;
        dout[j] = p->dout + (t * H + h) * dv;
        g[j] = gbuf + j * dq;
        if (j < nq) memset(g[j], 0, (size_t)dq * sizeof(float));
    }
    for (int64_t s = ulo; s < uhi; s++) {
        const float *k = p->k + s * p->k_st + h * p->k_sh;
        const float *v = p->v + s * p->v_st + h * p->v_sh;
        float sd[QB], pd[QB];
        dot8x8(q, k, dq, sd);
        dot8x8(dout, v, dv, pd);
        for (int64_t j = 0; j < nq; j++) {
            if (s < p->kv_lo[t0 + j] || s >= p->kv_hi[t0 + j]) continue;
            int64_t th = (t0 + j) * H + h;
            float pr = expf(p->scale * sd[j] - p->lse[th]);
            float ds = pr * (pd[j] - D[th]);
#pragma omp simd
            for (int64_t i = 0; i < dq; i++) g[j][i] += ds * k[i];
        }
    }
    for (int64_t j = 0; j < nq; j++) {
        float *o = p->dq + ((t0 + j) * H + h) * dq;
        for (int64_t i = 0; i < dq; i++) o[i] = g[j][i] * p->scale;
    }
}

/* dk, dv for keys [s0, s0+nk) of head h, queries in increasing t: dk = scale·dSᵀQ, dv = Pᵀ dO;
 * summed in the scratch gbuf ([KB][d_qk] then [KB][d_v]) for the reason given at dq_block */
__attribute__((target_clones("avx2", "default")))
static void dkv_block(const v3_attn_params *p, const float *D, int64_t s0, int64_t nk, int64_t h,
                      float *gbuf) {
    int64_t H = p->H, dq = p->d_qk, dv = p->d_v;
    const float *k[KB], *v[KB];
    float *gk[KB], *gv[KB];
    for (int64_t j = 0; j < KB; j++) {
        int64_t s = s0 + (j < nk ? j : 0); /* unused slots repeat the first key */
        k[j] = p->k + s * p->k_st + h * p->k_sh;
        v[j] = p->v + s * p->v_st + h * p->v_sh;
        gk[j] = gbuf + j * dq;
        gv[j] = gbuf + KB * dq + j * dv;
    }
    memset(gbuf, 0, (size_t)(KB * (dq + dv)) * sizeof(float));
    for (int64_t t = 0; t < p->T; t++) {
        int64_t lo = p->kv_lo[t], hi = p->kv_hi[t];
        if (hi <= s0 || lo >= s0 + nk) continue;
        int64_t th = t * H + h;
        const float *q = p->q + t * p->q_st + h * p->q_sh, *dout = p->dout + th * dv;
        float sd[KB], pd[KB];
        dot8x8(k, q, dq, sd);
        dot8x8(v, dout, dv, pd);
        for (int64_t j = 0; j < nk; j++) {
            int64_t s = s0 + j;
            if (s < lo || s >= hi) continue;
            float pr = expf(p->scale * sd[j] - p->lse[th]);
            float ds = pr * (pd[j] - D[th]);
#pragma omp simd
            for (int64_t i = 0; i < dq; i++) gk[j][i] += ds * q[i];
#pragma omp simd
            for (int64_t i = 0; i < dv; i++) gv[j][i] += pr * dout[i];
        }
    }
    for (int64_t j = 0; j < nk; j++) {
        int64_t sh = (s0 + j) * H + h;
        float *ok = p->dk + sh * dq, *ov = p->dv + sh * dv;
        for (int64_t i = 0; i < dq; i++) ok[i] = gk[j][i] * p->scale;
        memcpy(ov, gv[j], (size_t)dv * sizeof(float));
    }
}

/* With P = softmax(S), S = scale·QKᵀ: dV = Pᵀ dO; dP = dO Vᵀ; dS = P ⊙ (dP − D), D_t = <dO_t, O_t>;
 * dQ = scale·dS K; dK = scale·dSᵀ Q. P is recomputed from lse. */
void cpu_attention_bwd(v3_kctx *ctx, const v3_attn_params *p) {
    if (!windows_ok(ctx, p)) return;
    int64_t T = p->T, Tk = p->Tk, H = p->H, dv = p->d_v;
    int nt = cpu_threads(ctx);
    float *D = malloc((size_t)(T * H > 0 ? T * H : 1) * sizeof(float));
    if (!D) {
        v3k_fail(ctx, V3_ENOMEM, "attention_bwd: out of memory");
        return;
    }
#pragma omp parallel for num_threads(nt) if (T * H > 1)
    for (int64_t th = 0; th < T * H; th++)
        D[th] = dot8(p->dout + th * dv, p->out + th * dv, dv);
    int64_t nqb = (T + QB - 1) / QB, nkb = (Tk + KB - 1) / KB;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (T * H > 1 || Tk * H > 1)
    {
        size_t n_q = (size_t)(QB * p->d_qk), n_kv = (size_t)(KB * (p->d_qk + p->d_v));
        float *g = malloc((n_q > n_kv ? n_q : n_kv) * sizeof(float) + 1);
        if (!g) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < nqb * H; task++) {
            int64_t t0 = task / H * QB;
            if (g) dq_block(p, D, t0, T - t0 < QB ? T - t0 : QB, task % H, g);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < nkb * H; task++) {
            int64_t s0 = task / H * KB;
            if (g) dkv_block(p, D, s0, Tk - s0 < KB ? Tk - s0 : KB, task % H, g);
        }
        free(g);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "attention_bwd: out of memory");
    free(D);
}
