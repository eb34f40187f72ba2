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
    return ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
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
    for (int64_t j = 0; j < nq; j++) q[j] = p->q + (t0 + j) * p->q_st + h * p->q_sh;
    /* scores: one key row, every query of the block that sees it */
    for (int64_t s = ulo; s < uhi; s++) {
        const float *k = p->k + s * p->k_st + h * p->k_sh;
        for (int64_t j = 0; j < nq; j++)
            if (s >= p->kv_lo[t0 + j] && s < p->kv_hi[t0 + j])
                sc[j * Tk + s] = p->scale * dot8(q[j], k, dq);
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

/* dq for queries [t0, t0+nq) of head h: dS = P ⊙ (dP − D), dq = scale·dS·K */
__attribute__((target_clones("avx2", "default")))
static void dq_block(const v3_attn_params *p, const float *D, int64_t t0, int64_t nq, int64_t h) {
    int64_t H = p->H, dq = p->d_qk, dv = p->d_v, ulo, uhi;
    window_union(p, t0, t0 + nq, &ulo, &uhi);
    const float *q[QB], *dout[QB];
    float *g[QB];
    for (int64_t j = 0; j < nq; j++) {
        int64_t th = (t0 + j) * H + h;
        q[j] = p->q + (t0 + j) * p->q_st + h * p->q_sh;
        dout[j] = p->dout + th * dv;
        g[j] = p->dq + th * dq;
        for (int64_t i = 0; i < dq; i++) g[j][i] = 0.0f;
    }
    for (int64_t s = ulo; s < uhi; s++) {
        const float *k = p->k + s * p->k_st + h * p->k_sh;
        const float *v = p->v + s * p->v_st + h * p->v_sh;
        for (int64_t j = 0; j < nq; j++) {
            if (s < p->kv_lo[t0 + j] || s >= p->kv_hi[t0 + j]) continue;
            int64_t th = (t0 + j) * H + h;
            float pr = expf(p->scale * dot8(q[j], k, dq) - p->lse[th]);
            float ds = pr * (dot8(dout[j], v, dv) - D[th]);
#pragma omp simd
            for (int64_t i = 0; i < dq; i++) g[j][i] += ds * k[i];
        }
    }
    for (int64_t j = 0; j < nq; j++)
        for (int64_t i = 0; i < dq; i++) g[j][i] *= p->scale;
}

/* dk, dv for keys [s0, s0+nk) of head h, queries in increasing t: dk = scale·dSᵀQ, dv = Pᵀ dO */
__attribute__((target_clones("avx2", "default")))
static void dkv_block(const v3_attn_params *p, const float *D, int64_t s0, int64_t nk, int64_t h) {
    int64_t H = p->H, dq = p->d_qk, dv = p->d_v;
    const float *k[KB], *v[KB];
    float *gk[KB], *gv[KB];
    for (int64_t j = 0; j < nk; j++) {
        int64_t sh = (s0 + j) * H + h;
        k[j] = p->k + (s0 + j) * p->k_st + h * p->k_sh;
        v[j] = p->v + (s0 + j) * p->v_st + h * p->v_sh;
        gk[j] = p->dk + sh * dq;
        gv[j] = p->dv + sh * dv;
        for (int64_t i = 0; i < dq; i++) gk[j][i] = 0.0f;
        for (int64_t i = 0; i < dv; i++) gv[j][i] = 0.0f;
    }
    for (int64_t t = 0; t < p->T; t++) {
        int64_t lo = p->kv_lo[t], hi = p->kv_hi[t];
        if (hi <= s0 || lo >= s0 + nk) continue;
        int64_t th = t * H + h;
        const float *q = p->q + t * p->q_st + h * p->q_sh, *dout = p->dout + th * dv;
        for (int64_t j = 0; j < nk; j++) {
            int64_t s = s0 + j;
            if (s < lo || s >= hi) continue;
            float pr = expf(p->scale * dot8(q, k[j], dq) - p->lse[th]);
            float ds = pr * (dot8(dout, v[j], dv) - D[th]);
#pragma omp simd
            for (int64_t i = 0; i < dq; i++) gk[j][i] += ds * q[i];
#pragma omp simd
            for (int64_t i = 0; i < dv; i++) gv[j][i] += pr * dout[i];
        }
    }
    for (int64_t j = 0; j < nk; j++)
        for (int64_t i = 0; i < dq; i++) gk[j][i] *= p->scale;
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
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (T * H > 1)
    for (int64_t task = 0; task < nqb * H; task++) {
        int64_t t0 = task / H * QB;
        dq_block(p, D, t0, T - t0 < QB ? T - t0 : QB, task % H);
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (Tk * H > 1)
    for (int64_t task = 0; task < nkb * H; task++) {
        int64_t s0 = task / H * KB;
        dkv_block(p, D, s0, Tk - s0 < KB ? Tk - s0 : KB, task % H);
    }
    free(D);
}
