/* sampler.c — temperature / top-k / top-p / min-p sampling with HF transformers semantics
 * (see sampler.h for the rules and the numerics they share with the trainer).
 *
 * Every filter keeps a prefix of one total order — larger scaled logit first, lower token id
 * first among equals — so each filter only has to find its CUT, the last candidate it keeps;
 * min-p is a plain threshold on the weights. The kept set is then "tokens at or before the cut
 * with weight >= min_p", collected by one scan in token-id order, and the draw walks it in that
 * order, so the result does not depend on how a cut was found.
 *
 * Cuts are found without sorting the vocabulary: a histogram of the scaled logits over
 * V3_SAMPLE_NB buckets (larger x first; bucket order agrees with the candidate order and ties
 * share a bucket) tells which bucket holds the k-th token (top-k) or where the mass crosses the
 * limit (top-p); only that bucket is examined further. */
#include "sampler.h"

#include "common/vexp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct v3_sample_cand {
    float x;    /* scaled logit, logit · (1/T) */
    int32_t id; /* token id */
};
typedef struct v3_sample_cand cand;

v3_sampling v3_sampling_default(void) {
    v3_sampling s = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
    return s;
}

int v3_sampling_check(const v3_sampling *s, v3_err *err) {
    if (!s) return v3_errf(err, V3_EINVAL, "sampler: no sampling parameters");
    if (!(s->temperature >= 0.0f) || isinf(s->temperature))
        return v3_errf(err, V3_EINVAL, "sampler: temperature %g must be finite and >= 0 (0 = greedy)",
                       (double)s->temperature);
    if (s->top_k < 0)
        return v3_errf(err, V3_EINVAL, "sampler: top_k %d must be >= 0 (0 = off)", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return v3_errf(err, V3_EINVAL, "sampler: top_p %g must be in (0, 1] (1 = off)",
                       (double)s->top_p);
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f))
        return v3_errf(err, V3_EINVAL, "sampler: min_p %g must be in [0, 1] (0 = off)",
                       (double)s->min_p);
    return V3_OK;
}

int v3_sample_scratch_init(v3_sample_scratch *sc, int64_t cap, v3_err *err) {
    memset(sc, 0, sizeof *sc);
    if (cap < 1 || cap > INT32_MAX)
        return v3_errf(err, V3_EINVAL, "sampler: vocabulary capacity %lld outside [1, %d]",
                       (long long)cap, INT32_MAX);
    sc->cand = malloc((size_t)cap * sizeof *sc->cand);
    sc->w = malloc((size_t)cap * sizeof *sc->w);
    sc->kept = malloc((size_t)cap * sizeof *sc->kept);
    sc->bmass = malloc(V3_SAMPLE_NB * sizeof *sc->bmass);
    sc->bcount = malloc(V3_SAMPLE_NB * sizeof *sc->bcount);
    if (!sc->cand || !sc->w || !sc->kept || !sc->bmass || !sc->bcount) {
        v3_sample_scratch_free(sc);
        return v3_errf(err, V3_ENOMEM, "sampler: cannot allocate scratch for %lld tokens",
                       (long long)cap);
    }
    sc->cap = cap;
    return V3_OK;
}

void v3_sample_scratch_free(v3_sample_scratch *sc) {
    if (!sc) return;
    free(sc->cand);
    free(sc->w);
    free(sc->kept);
    free(sc->bmass);
    free(sc->bcount);
    memset(sc, 0, sizeof *sc);
}

/* ---- the candidate order ---- */

/* a comes before b: more probable, or as probable with a lower token id. Ids are unique, so this
 * is a strict total order and selection needs no special case for ties. */
static inline int before(cand a, cand b) { return a.x > b.x || (a.x == b.x && a.id < b.id); }

static int cmp_order(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return before(*a, *b) ? -1 : before(*b, *a) ? 1 : 0;
}

static inline void swap_cand(cand *c, int64_t i, int64_t j) {
    cand t = c[i];
    c[i] = c[j];
    c[j] = t;
}

/* Rearranges c[0..n) so that c[0..k) are its k first elements in candidate order (in no
 * particular order among themselves), 0 < k < n. Quickselect with a median-of-three pivot; if it
 * degrades (more rounds than ~2·log2 n) the remaining range is sorted instead. */
static void select_first(cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, target = k - 1; /* the element of rank k-1 lies in [lo, hi] */
    int rounds = 16;
    for (int64_t m = n; m > 1; m >>= 1) rounds += 2;
    while (hi > lo) {
        if (rounds-- == 0) {
            qsort(c + lo, (size_t)(hi - lo + 1), sizeof *c, cmp_order);
            return;
        }
        int64_t mid = lo + (hi - lo) / 2;
        if (before(c[mid], c[lo])) swap_cand(c, mid, lo);
        if (before(c[hi], c[lo])) swap_cand(c, hi, lo);
        if (before(c[mid], c[hi])) swap_cand(c, mid, hi);
        cand p = c[hi]; /* the median of the three */
        int64_t store = lo;
        for (int64_t i = lo; i < hi; i++)
            if (before(c[i], p)) swap_cand(c, i, store++);
        swap_cand(c, store, hi);
        /* now c[lo..store) come before p = c[store], and c(store..hi] after it */
        if (store == target) return;
        if (store < target) lo = store + 1;
        else hi = store - 1;
    }
}

/* ---- cuts ---- */

enum { SMALL = 2048 }; /* a candidate set this small is sorted outright */

static void x_range(const cand *c, int64_t n, float *lo, float *hi) {
    float a = c[0].x, b = c[0].x;
    for (int64_t j = 1; j < n; j++) {
        a = c[j].x < a ? c[j].x : a;
        b = c[j].x > b ? c[j].x : b;
    }
    *lo = a;
    *hi = b;
}

/* Bucket of x for a histogram of [lo, hi] (scale = (NB-1)/(hi-lo)): bucket 0 holds hi. The map
 * is monotone (non-increasing in x), so buckets never reorder candidates and ties share one. */
static inline int bucket_of(float x, float hi, double scale) {
    double d = ((double)hi - (double)x) * scale;
    return d < V3_SAMPLE_NB - 1 ? (int)d : V3_SAMPLE_NB - 1;
}

/* Top-k: leaves in c[0..m) the k first candidates of c[0..n) and every candidate tied with the
 * k-th (HF keeps x >= the k-th value), 0 < k < n; returns m and sets *last to the last of them in
 * candidate order (the tie with the highest id). */
static int64_t cut_top_k(v3_sample_scratch *sc, cand *c, int64_t n, int64_t k, cand *last) {
    if (n > 4 * SMALL) { /* narrow to the buckets up to the one holding the k-th candidate */
        float lo, hi;
        x_range(c, n, &lo, &hi);
        if (lo < hi) {
            double scale = (V3_SAMPLE_NB - 1) / ((double)hi - (double)lo);
            int64_t *cnt = sc->bcount;
            memset(cnt, 0, V3_SAMPLE_NB * sizeof *cnt);
            for (int64_t j = 0; j < n; j++) cnt[bucket_of(c[j].x, hi, scale)]++;
            int b = 0;
            for (int64_t cum = 0; b < V3_SAMPLE_NB - 1; b++)
                if ((cum += cnt[b]) >= k) break;
            int64_t m = 0;
            for (int64_t j = 0; j < n; j++)
                if (bucket_of(c[j].x, hi, scale) <= b) c[m++] = c[j];
            n = m;
        }
    }
    if (k < n) select_first(c, n, k);
    cand kth = c[0]; /* the last of c[0..k) in candidate order */
    for (int64_t j = 1; j < k; j++)
        if (before(kth, c[j])) kth = c[j];
    *last = kth;
    int64_t m = k;
    for (int64_t j = k; j < n; j++)
        if (c[j].x == kth.x) {
            if (c[j].id > last->id) *last = c[j];
            swap_cand(c, j, m++);
        }
    return m;
}

/* Top-p: c[0..n) are candidates in any order and `above` the mass of every token before all of
 * them. A candidate is kept iff the mass before it is < lim. Returns the last kept candidate.
 * Histogram rounds shrink the candidates to the bucket where the mass crosses lim; the final
 * small set is sorted and walked. Weights of 0 (underflowed) carry no mass and end the walk. */
static cand cut_top_p(v3_sample_scratch *sc, cand *c, int64_t n, double above, double lim,
                      const float *w) {
    for (;;) {
        float lo = 0, hi = 0;
        if (n > SMALL) x_range(c, n, &lo, &hi);
        if (n <= SMALL || lo == hi) {
            qsort(c, (size_t)n, sizeof *c, cmp_order);
            int64_t j = 0;
            for (; j < n; j++) {
                float wj = w[c[j].id];
                if (j > 0 && (above >= lim || wj == 0.0f)) break;
                above += wj;
            }
            return c[j - 1];
        }
        double scale = (V3_SAMPLE_NB - 1) / ((double)hi - (double)lo);
        double *mass = sc->bmass;
        int64_t *cnt = sc->bcount;
        memset(mass, 0, V3_SAMPLE_NB * sizeof *mass);
        memset(cnt, 0, V3_SAMPLE_NB * sizeof *cnt);
        for (int64_t j = 0; j < n; j++) {
            int b = bucket_of(c[j].x, hi, scale);
            mass[b] += w[c[j].id];
            cnt[b]++;
        }
        /* the first bucket whose mass reaches lim (or, if rounding leaves lim out of reach, the
         * last non-empty one); every earlier bucket is kept whole, every later one dropped */
        int cut = -1, lastb = -1;
        double acc = above, acc_lastb = above;
        for (int b = 0; b < V3_SAMPLE_NB; b++) {
            if (!cnt[b]) continue;
            if (acc + mass[b] >= lim) {
                cut = b;
                break;
            }
            lastb = b;
            acc_lastb = acc;
            acc += mass[b];
        }
        if (cut < 0) {
            cut = lastb;
            acc = acc_lastb;
        }
        above = acc;
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++)
            if (bucket_of(c[j].x, hi, scale) == cut) c[m++] = c[j];
        n = m; /* < the old n: lo and hi fall in different buckets */
    }
}

/* ---- sampling ---- */

enum { DRAW_B = 64 }; /* tokens per block of the draw's walk */

/* The draw's walk over w[0..n) in token order: the index of the first token at which the running
 * sum of weights exceeds target, -1 if none does. The running sum (double) advances a block of
 * DRAW_B tokens at a time — a block's sum is taken as 8 partial sums (token j of the block into
 * sum j mod 8, in order) added as ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)) — until the block whose sum
 * would take it past target, then token by token from there. A fixed order that depends on the
 * weights alone; the blocks (vectorised by the compiler) spare most of the serial chain of
 * dependent additions a token-by-token walk would spend on 129,280 weights. */
static int64_t draw_index(const float *w, int64_t n, double target) {
    double acc = 0;
    int64_t j = 0;
    for (; j + DRAW_B <= n; j += DRAW_B) {
        double p[8] = {0};
        for (int q = 0; q < DRAW_B; q += 8)
            for (int r = 0; r < 8; r++) p[r] += w[j + q + r];
        double bs = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        if (acc + bs > target) break;
        acc += bs;
    }
    for (; j < n; j++) {
        acc += w[j];
        if (acc > target) return j;
    }
    return -1;
}

static int bad_logit(v3_err *err, int64_t i, float l) {
    return v3_errf(err, V3_ERANGE, "sampler: logit %lld is %s", (long long)i,
                   isnan(l) ? "NaN" : l > 0 ? "+inf" : "-inf");
}

/* log-sum-exp of logits [V] as the trainer's cross-entropy computes it (common/vexp.h: the same
 * exponentials and the same fixed-order double sum); with ent, also the entropy of softmax(x) from
 * the same exponentials: H = log Z − Σ e_i·(x_i − mx) / Z. */
static double lse_f32(const float *x, int64_t V, float mx, double *ent) {
    double ed = 0, sum = ent ? v3_sum_exp_ent(x, V, mx, &ed) : v3_sum_exp(x, V, mx);
    if (ent) *ent = log(sum) - ed / sum;
    return (double)mx + log(sum);
}

static int sample_greedy(const float *logits, int64_t V, v3_rng *rng, v3_sampled *out,
                         v3_err *err) {
    float lo = 0, hi = 0;
    if (!v3_range_f32(logits, V, &lo, &hi))
        for (int64_t i = 0; i < V; i++)
            if (!isfinite(logits[i])) return bad_logit(err, i, logits[i]);
    int64_t arg = 0; /* the lowest index of the maximum */
    while (arg < V - 1 && !(logits[arg] == hi)) arg++;
    const float mx = logits[arg];
    double lp = (double)logits[arg] - lse_f32(logits, V, mx, &out->entropy);
    if (rng) (void)v3_rng_u64(rng);
    out->token = (int32_t)arg;
    out->logprob = 0.0;
    out->logprob_temp = lp;
    out->logprob_raw = lp;
    out->n_kept = 1;
    return V3_OK;
}

int v3_sample_token(const float *logits, int64_t V, const v3_sampling *s, v3_rng *rng,
                    v3_sample_scratch *sc, v3_sampled *out, v3_err *err) {
    int rc = v3_sampling_check(s, err);
    if (rc) return rc;
    if (!logits || !sc || !out) return v3_errf(err, V3_EINVAL, "sampler: NULL argument");
    if (V < 1 || V > sc->cap)
        return v3_errf(err, V3_ERANGE, "sampler: V = %lld outside [1, %lld] (scratch capacity)",
                       (long long)V, (long long)sc->cap);
    if (s->temperature == 0.0f) return sample_greedy(logits, V, rng, out, err);
    if (!rng) return v3_errf(err, V3_EINVAL, "sampler: no generator for temperature %g",
                             (double)s->temperature);
    const float inv_t = 1.0f / s->temperature;
    if (!isfinite(inv_t))
        return v3_errf(err, V3_ERANGE, "sampler: temperature %g is too small (1/T overflows)",
                       (double)s->temperature);

    /* pass 1: validity and maxima. x = l·(1/T) rounds monotonically (1/T > 0), so the largest
     * scaled logit is the largest logit scaled, and a scaled logit overflows only if the largest
     * or the smallest does; on any failure the per-token loop below names the first bad index. */
    float lmin = 0, lmax = 0;
    int ok = v3_range_f32(logits, V, &lmin, &lmax);
    float xmax = lmax * inv_t;
    if (!ok || !isfinite(xmax) || !isfinite(lmin * inv_t))
        for (int64_t i = 0; i < V; i++) {
            float l = logits[i];
            if (!isfinite(l)) return bad_logit(err, i, l);
            float x = l * inv_t;
            if (!isfinite(x))
                return v3_errf(err, V3_ERANGE,
                               "sampler: logit %lld (%g) overflows when scaled by 1/T = %g",
                               (long long)i, (double)l, (double)inv_t);
        }

    /* pass 2: weights w[i] = v3_expf(x_i - xmax) and the full normaliser (vexp.h's lane order);
     * the candidates for the value filters */
    const int use_k = s->top_k > 0 && (int64_t)s->top_k < V;
    const int use_p = s->top_p < 1.0f;
    const int use_min = s->min_p > 0.0f;
    float *w = sc->w;
    cand *c = sc->cand;
    /* x is rounded to float before the subtraction (ISO C mode, and vexp.c contracts no FMA), so
     * it is exactly the scaled logit the trainer stores; zfull is the trainer's sum for it */
    double wd = 0; /* Σ w_i·(x_i − xmax), for the entropy */
    const double zfull = v3_exp_store(logits, V, inv_t, xmax, w, &wd);
    if (use_k || use_p)
        for (int64_t i = 0; i < V; i++) {
            c[i].x = logits[i] * inv_t;
            c[i].id = (int32_t)i;
        }
    const double lse_temp = (double)xmax + log(zfull);
    const double lse_raw = inv_t == 1.0f ? lse_temp : lse_f32(logits, V, lmax, NULL);
    out->entropy = log(zfull) - wd / zfull;

    /* the cuts, in HF's order: top-k, then top-p on what top-k kept (min-p is a threshold) */
    int has_cut = 0;
    cand cut = {0};
    if (use_k || use_p) {
        int64_t n = V;
        double z = zfull;
        if (use_k) {
            n = cut_top_k(sc, c, V, s->top_k, &cut);
            has_cut = 1;
            if (use_p) {
                z = 0;
                for (int64_t j = 0; j < n; j++) z += w[c[j].id];
            }
        }
        if (use_p) {
            cut = cut_top_p(sc, c, n, 0.0, (double)s->top_p * z, w);
            has_cut = 1;
        }
    }

    /* the kept tokens in id order: kept[0..nk) with weights compacted to w[0..nk) (in place is
     * safe: kept[j] >= j and entries are written in ascending j) */
    int32_t *kept = sc->kept;
    int64_t nk = 0;
    const int all = !has_cut && !use_min; /* no filter: the kept list is the vocabulary itself */
    if (all) nk = V;
    else
        for (int64_t i = 0; i < V; i++) {
            if (has_cut) {
                float x = logits[i] * inv_t;
                if (!(x > cut.x || (x == cut.x && i <= cut.id))) continue;
            }
            if (use_min && !(w[i] >= s->min_p)) continue;
            kept[nk] = (int32_t)i;
            w[nk++] = w[i];
        }

    /* the draw: inverse CDF over the kept tokens, ascending id (draw_index: the running sum is
     * taken by blocks of 64 tokens up to the block where it crosses the target) */
    double zk = 0;
    if (nk == V) zk = zfull; /* nothing filtered: the full normaliser (logprob == logprob_temp) */
    else
        for (int64_t j = 0; j < nk; j++) zk += w[j];
    const double target = v3_rng_uniform_f64(rng) * zk;
    int64_t pick = draw_index(w, nk, target);
    if (pick < 0) /* u·zk rounded up to zk: take the last token that has any mass */
        for (pick = nk - 1; pick > 0 && w[pick] == 0.0f; pick--) {
        }
    const int32_t tok = all ? (int32_t)pick : kept[pick];
    const double x_tok = (double)(logits[tok] * inv_t);
    out->token = tok;
    out->logprob = x_tok - ((double)xmax + log(zk));
    out->logprob_temp = x_tok - lse_temp;
    out->logprob_raw = (double)logits[tok] - lse_raw;
    out->n_kept = nk;
    return V3_OK;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void v3_sample_rng(v3_rng *r, uint64_t seed, uint64_t request, uint64_t sample) {
    /* each input goes through its own finaliser with its own offset, so (request, sample) and
     * (sample, request) differ; the chain is splitmix64's mixer, which v3_rng_seed expands */
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
    h = mix64(h ^ mix64(request + 0x632be59bd9b4e019ull));
    h = mix64(h ^ mix64(sample + 0x85157af5d6e8a9c3ull));
    v3_rng_seed(r, h);
}
