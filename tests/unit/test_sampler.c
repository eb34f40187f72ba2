/* test_sampler.c — the rollout sampler against an independent reference of HF transformers'
 * warper rules (full sort, double precision, written here from the HF code, not from sampler.c),
 * by exact replay of the inverse-CDF draw and by chi-square goodness of fit; then logprobs,
 * greedy, streams, errors; then stop strings against a brute-force matcher. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "rollout/sampler.h"
#include "rollout/stop.h"
#include "testutil.h"

/* ======================= reference distribution (HF rules, full sort) ======================= */

typedef struct ref_tok {
    double x;
    int id;
} ref_tok;

/* ascending by x; among equal x the HIGHER id first, so that the lower id sits later in the
 * ascending order, i.e. counts as the more probable one (the documented tie rule) */
static int ref_cmp_asc(const void *pa, const void *pb) {
    const ref_tok *a = pa, *b = pb;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    return (a->id < b->id) - (a->id > b->id);
}

static int cmp_double_desc(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a < b) - (a > b);
}

typedef struct ref_dist {
    int64_t V;
    double *p;        /* [V] final probabilities (0 = filtered) */
    double *lsm_temp; /* [V] log_softmax(x) over all tokens */
    double *lsm_raw;  /* [V] log_softmax(logit) over all tokens */
    int64_t n_kept;
    double margin;    /* smallest distance of any token to a top-p / min-p threshold */
} ref_dist;

static void ref_log_softmax(const double *x, int64_t V, double *out) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < V; i++) s += exp(x[i] - mx);
    double lse = mx + log(s);
    for (int64_t i = 0; i < V; i++) out[i] = x[i] - lse;
}

/* HF: TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper in that
 * order, with the temperature applied as a float multiply by 1/T (v3tune's documented choice). */
static void ref_compute(const float *logits, int64_t V, const v3_sampling *s, ref_dist *r) {
    double *x = malloc((size_t)V * sizeof *x), *raw = malloc((size_t)V * sizeof *raw);
    char *keep = malloc((size_t)V);
    ref_tok *t = malloc((size_t)V * sizeof *t);
    float inv_t = 1.0f / s->temperature;
    for (int64_t i = 0; i < V; i++) {
        x[i] = (double)(logits[i] * inv_t);
        raw[i] = logits[i];
        keep[i] = 1;
    }
    r->V = V;
    r->margin = INFINITY;
    ref_log_softmax(x, V, r->lsm_temp);
    ref_log_softmax(raw, V, r->lsm_raw);
    double xmax = -INFINITY;
    for (int64_t i = 0; i < V; i++) xmax = x[i] > xmax ? x[i] : xmax;

    if (s->top_k > 0 && s->top_k < V) { /* remove x < k-th largest */
        double *srt = malloc((size_t)V * sizeof *srt);
        memcpy(srt, x, (size_t)V * sizeof *srt);
        qsort(srt, (size_t)V, sizeof *srt, cmp_double_desc);
        double kth = srt[s->top_k - 1];
        for (int64_t i = 0; i < V; i++)
            if (x[i] < kth) keep[i] = 0;
        free(srt);
    }
    if (s->top_p < 1.0f) { /* ascending sort, cumulative softmax, remove cum <= 1 - p but the last */
        int64_t n = 0;
        double z = 0;
        for (int64_t i = 0; i < V; i++)
            if (keep[i]) {
                t[n].x = x[i];
                t[n++].id = (int)i;
                z += exp(x[i] - xmax);
            }
        qsort(t, (size_t)n, sizeof *t, ref_cmp_asc);
        double thr = 1.0 - (double)s->top_p, cum = 0;
        for (int64_t j = 0; j < n; j++) {
            cum += exp(t[j].x - xmax) / z;
            double d = fabs(cum - thr);
            if (d < r->margin) r->margin = d;
            if (cum <= thr && j != n - 1) keep[t[j].id] = 0;
        }
    }
    if (s->min_p > 0.0f) { /* remove p < min_p * p_max over the kept distribution */
        double z = 0, pmax = 0;
        for (int64_t i = 0; i < V; i++)
            if (keep[i]) z += exp(x[i] - xmax);
        for (int64_t i = 0; i < V; i++)
            if (keep[i] && exp(x[i] - xmax) / z > pmax) pmax = exp(x[i] - xmax) / z;
        for (int64_t i = 0; i < V; i++) {
            if (!keep[i]) continue;
            double p = exp(x[i] - xmax) / z;
            double d = fabs(log(p / pmax) - log((double)s->min_p));
            if (d < r->margin) r->margin = d;
            if (p < (double)s->min_p * pmax) keep[i] = 0;
        }
    }
    double z = 0;
    r->n_kept = 0;
    for (int64_t i = 0; i < V; i++)
        if (keep[i]) {
            z += exp(x[i] - xmax);
            r->n_kept++;
        }
    for (int64_t i = 0; i < V; i++) r->p[i] = keep[i] ? exp(x[i] - xmax) / z : 0.0;
    free(x);
    free(raw);
    free(keep);
    free(t);
}

static void ref_alloc(ref_dist *r, int64_t V) {
    r->p = malloc((size_t)V * sizeof *r->p);
    r->lsm_temp = malloc((size_t)V * sizeof *r->lsm_temp);
    r->lsm_raw = malloc((size_t)V * sizeof *r->lsm_raw);
}

static void ref_release(ref_dist *r) {
    free(r->p);
    free(r->lsm_temp);
    free(r->lsm_raw);
}

/* The token the inverse CDF over ascending ids gives for uniform u; -1 when u lies within eps of
 * a boundary (float vs double rounding could legitimately pick either side). */
#define PICK_EPS 2e-7 /* the sampler's fp32 weights (< 1 ulp each) move a normalised cumulative
                       * probability by less than 2 · 2^-24 */
static int64_t ref_pick(const ref_dist *r, double u, double eps) {
    double acc = 0;
    for (int64_t i = 0; i < r->V; i++) {
        if (r->p[i] == 0) continue;
        double next = acc + r->p[i];
        if (fabs(next - u) < eps || fabs(acc - u) < eps) return -1;
        if (next > u) return i;
        acc = next;
    }
    return -1;
}

/* ======================= chi-square ======================= */

/* Wilson–Hilferty: the q-quantile of chi-square with k degrees of freedom, z = Φ^-1(q). */
static double chi2_quantile(int k, double z) {
    double a = 2.0 / (9.0 * k);
    double c = 1.0 - a + z * sqrt(a);
    return k * c * c * c;
}
/* Φ^-1(0.99999): six settings per run, so a correct sampler fails the fit about once in 17000
 * runs; real errors (a misplaced cut, a wrong temperature) give statistics in the thousands. */
#define Z_Q 4.2648907939228247

/* Pearson statistic of counts against probabilities p; bins with expected count < 5 are pooled
 * (and the pool, if still under 5, joins the smallest regular bin). Only tokens with p > 0. */
static double chi2_stat(const long *count, const double *p, int64_t V, long n, int *dof) {
    double stat = 0, pool_e = 0, pool_o = 0, small_e = INFINITY, small_o = 0;
    int bins = 0;
    for (int64_t i = 0; i < V; i++) {
        if (p[i] <= 0) continue;
        double e = p[i] * (double)n;
        if (e < 5) {
            pool_e += e;
            pool_o += (double)count[i];
            continue;
        }
        if (e < small_e) {
            small_e = e;
            small_o = (double)count[i];
        }
        stat += (count[i] - e) * (count[i] - e) / e;
        bins++;
    }
    if (pool_e > 0) {
        if (pool_e < 5 && bins > 0) { /* merge the pool with the smallest regular bin */
            stat -= (small_o - small_e) * (small_o - small_e) / small_e;
            pool_e += small_e;
            pool_o += small_o;
            bins--;
        }
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    *dof = bins - 1;
    return stat;
}

/* ======================= the fixed V = 50 logits ======================= */

#define V50 50

/* Values by rank with ties at ranks 4/5 (the top_k = 5 boundary: 6 kept), 13/14 and 20/21 (split
 * by the top-p cuts of the combined and top_p = 0.9 settings, exercising the id tie rule); rank r
 * goes to token (17 r + 7) mod 50 so value order and id order disagree. */
static void fixed_logits(float *l) {
    float rv[V50] = {3.0f, 2.7f, 2.5f, 2.5f, 2.2f, 2.2f};
    for (int j = 0; j < V50 - 6; j++) rv[6 + j] = (float)(0.9 - 0.07 * j);
    rv[14] = rv[13];
    rv[21] = rv[20];
    for (int r = 0; r < V50; r++) l[(17 * r + 7) % V50] = rv[r];
}

typedef struct setting {
    const char *name;
    v3_sampling s;
    int64_t expect_kept; /* from the HF rules worked by hand/script (a lower bound for random
                          * logits); -1: not pinned */
} setting;

static void test_distribution(uint64_t seed) {
    float l[V50];
    fixed_logits(l);
    const setting set[] = {
        {"T=1", {1.0f, 0, 1.0f, 0.0f}, 50},
        {"T=0.7", {0.7f, 0, 1.0f, 0.0f}, 50},
        {"top_k=5", {1.0f, 5, 1.0f, 0.0f}, 6},
        {"top_p=0.9", {1.0f, 0, 0.9f, 0.0f}, 21},
        {"min_p=0.1", {1.0f, 0, 1.0f, 0.1f}, 9},
        {"T=0.8 k=20 p=0.95 min_p=0.05", {0.8f, 20, 0.95f, 0.05f}, 11},
    };
    const long N = 200000;
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, V50, &err), &err);
    ref_dist r, r1;
    ref_alloc(&r, V50);
    ref_alloc(&r1, V50);
    v3_sampling plain = v3_sampling_default();
    ref_compute(l, V50, &plain, &r1); /* T = 1 unfiltered: the power check's wrong hypothesis */
    for (size_t si = 0; si < sizeof set / sizeof set[0]; si++) {
        const setting *st = &set[si];
        ref_compute(l, V50, &st->s, &r);
        CHECK(r.margin > 1e-5, "%s: test logits too close to a threshold (%g)", st->name, r.margin);
        CHECK(r.n_kept == st->expect_kept, "%s: reference keeps %lld, expected %lld", st->name,
              (long long)r.n_kept, (long long)st->expect_kept);
        long count[V50] = {0};
        long bad_lp = 0, bad_lpt = 0, bad_lpr = 0, bad_pick = 0, bad_rng = 0, bad_kept = 0;
        long replayed = 0;
        double worst_lp = 0;
        v3_rng rng;
        v3_sample_rng(&rng, seed, 100 + si, 0);
        for (long n = 0; n < N; n++) {
            v3_rng before = rng;
            double u = v3_rng_uniform_f64(&before); /* `before` is now one step ahead */
            v3_sampled o;
            if (v3_sample_token(l, V50, &st->s, &rng, &sc, &o, &err) != V3_OK) {
                CHECK(0, "%s: %s", st->name, err.msg);
                break;
            }
            if (memcmp(&before, &rng, sizeof rng) != 0) bad_rng++;
            count[o.token]++;
            double lp_ref = r.p[o.token] > 0 ? log(r.p[o.token]) : -INFINITY;
            double d = fabs(o.logprob - lp_ref);
            if (!(d <= 1e-6)) bad_lp++;
            if (d > worst_lp) worst_lp = d;
            if (!(fabs(o.logprob_temp - r.lsm_temp[o.token]) <= 1e-6)) bad_lpt++;
            if (!(fabs(o.logprob_raw - r.lsm_raw[o.token]) <= 1e-6)) bad_lpr++;
            if (o.n_kept != r.n_kept) bad_kept++;
            int64_t want = ref_pick(&r, u, PICK_EPS);
            if (want >= 0) {
                replayed++;
                if (want != o.token) bad_pick++;
            }
        }
        CHECK(bad_rng == 0, "%s: %ld calls did not advance the rng by exactly one draw", st->name,
              bad_rng);
        CHECK(bad_lp == 0, "%s: %ld logprobs off by > 1e-6 (worst %g)", st->name, bad_lp, worst_lp);
        CHECK(bad_lpt == 0, "%s: %ld logprob_temp off by > 1e-6", st->name, bad_lpt);
        CHECK(bad_lpr == 0, "%s: %ld logprob_raw off by > 1e-6", st->name, bad_lpr);
        CHECK(bad_kept == 0, "%s: n_kept differs from the reference's %lld", st->name,
              (long long)r.n_kept);
        CHECK(replayed > N / 2 && bad_pick == 0,
              "%s: inverse-CDF replay: %ld of %ld draws picked another token", st->name, bad_pick,
              replayed);
        long filtered_hits = 0;
        for (int i = 0; i < V50; i++)
            if (r.p[i] == 0) filtered_hits += count[i];
        CHECK(filtered_hits == 0, "%s: %ld draws of filtered tokens", st->name, filtered_hits);
        int dof;
        double stat = chi2_stat(count, r.p, V50, N, &dof);
        double q = chi2_quantile(dof, Z_Q);
        CHECK(dof >= 1 && stat < q, "%s: chi-square %.2f >= %.2f (dof %d, 0.99999 quantile)",
              st->name, stat, q, dof);
        printf("  %-30s kept %2lld  chi2 %7.2f  dof %2d  q0.99999 %6.2f\n", st->name,
               (long long)r.n_kept, stat, dof, q);
        if (si == 1) { /* power: T = 0.7 draws must be rejected as draws of T = 1 */
            double wrong = chi2_stat(count, r1.p, V50, N, &dof);
            CHECK(wrong > 10 * chi2_quantile(dof, Z_Q),
                  "chi-square cannot tell T=0.7 from T=1 (%.2f)", wrong);
        }
    }
    ref_release(&r);
    ref_release(&r1);
    v3_sample_scratch_free(&sc);
}

/* ======================= a real vocabulary: exact kept sets ======================= */

static int cmp_float_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a < b) - (a > b);
}

enum { LOGITS_NORMAL, LOGITS_TIE_AT_K, LOGITS_BAND };

/* Normal logits (std 2); or with the 6th largest value repeated 3 more times (a 4-way tie over
 * ranks 6..9, straddling k = 7); or one outlier above a dense band of 20000 nearly equal values
 * over a low floor — the top-p cut then falls inside one histogram bucket of thousands of
 * tokens, which must be refined. */
static void fill_logits(v3_rng *g, float *l, int64_t V, int kind, float *tmp) {
    t_fill_normal(g, l, V, 2.0f);
    if (kind == LOGITS_TIE_AT_K) {
        memcpy(tmp, l, (size_t)V * sizeof *l);
        qsort(tmp, (size_t)V, sizeof *tmp, cmp_float_desc);
        float v6 = tmp[5];
        for (int put = 0; put < 3;) {
            int64_t i = (int64_t)v3_rng_below(g, (uint64_t)V);
            if (l[i] < v6) {
                l[i] = v6;
                put++;
            }
        }
    } else if (kind == LOGITS_BAND) {
        for (int64_t i = 0; i < V; i++) l[i] = l[i] - 25.0f;
        for (int n = 0; n < 20000; n++) l[v3_rng_below(g, (uint64_t)V)] = 0.05f * v3_rng_normal(g);
        l[v3_rng_below(g, (uint64_t)V)] = 7.0f;
    }
}

static void test_large_vocab(uint64_t seed) {
    const int64_t V = 129280;
    float *l = malloc((size_t)V * sizeof *l), *tmp = malloc((size_t)V * sizeof *tmp);
    v3_rng g;
    v3_rng_seed(&g, seed ^ 0x1234);
    const struct {
        setting st;
        int kind;
    } set[] = {
        {{"T=1", {1.0f, 0, 1.0f, 0.0f}, V}, LOGITS_NORMAL},
        {{"T=1.3 k=50", {1.3f, 50, 1.0f, 0.0f}, 50}, LOGITS_NORMAL},
        {{"p=0.9", {1.0f, 0, 0.9f, 0.0f}, -1}, LOGITS_NORMAL},
        {{"T=0.6 p=0.5", {0.6f, 0, 0.5f, 0.0f}, -1}, LOGITS_NORMAL},
        {{"min_p=0.02", {1.0f, 0, 1.0f, 0.02f}, -1}, LOGITS_NORMAL},
        {{"k=2000 p=0.95 min_p=0.01", {0.9f, 2000, 0.95f, 0.01f}, -1}, LOGITS_NORMAL},
        {{"k=7 (4-way tie at rank 6)", {1.0f, 7, 1.0f, 0.0f}, 9}, LOGITS_TIE_AT_K},
        {{"p=0.5 (dense band)", {1.0f, 0, 0.5f, 0.0f}, -1}, LOGITS_BAND},
        {{"k=30000 p=0.8 (dense band)", {1.0f, 30000, 0.8f, 0.0f}, -1}, LOGITS_BAND},
    };
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, V, &err), &err);
    ref_dist r;
    ref_alloc(&r, V);
    for (size_t si = 0; si < sizeof set / sizeof set[0]; si++) {
        const setting *st = &set[si].st;
        /* Fresh logits until no token is within 1e-7 of a top-p / min-p threshold: the sampler's
         * fp32 weights (expf, < 1 ulp) move a cumulative probability by at most ~6e-8. */
        int tries = 0;
        do {
            fill_logits(&g, l, V, set[si].kind, tmp);
            ref_compute(l, V, &st->s, &r);
        } while (r.margin < 1e-7 && ++tries < 30);
        CHECK(r.margin >= 1e-7, "%s: no logits far enough from the thresholds", st->name);
        /* random logits may hold extra ties, so here expect_kept is a lower bound */
        CHECK(st->expect_kept < 0 || r.n_kept >= st->expect_kept,
              "%s: reference keeps %lld, want at least %lld", st->name, (long long)r.n_kept,
              (long long)st->expect_kept);
        v3_rng rng;
        v3_sample_rng(&rng, seed, 200 + si, 0);
        long bad = 0, replayed = 0;
        double t0 = (double)clock();
        const int draws = 16;
        for (int n = 0; n < draws; n++) {
            v3_rng before = rng;
            double u = v3_rng_uniform_f64(&before);
            v3_sampled o;
            if (v3_sample_token(l, V, &st->s, &rng, &sc, &o, &err) != V3_OK) {
                CHECK(0, "%s: %s", st->name, err.msg);
                break;
            }
            if (o.n_kept != r.n_kept || r.p[o.token] == 0 ||
                !(fabs(o.logprob - log(r.p[o.token])) <= 1e-6) ||
                !(fabs(o.logprob_temp - r.lsm_temp[o.token]) <= 1e-6) ||
                !(fabs(o.logprob_raw - r.lsm_raw[o.token]) <= 1e-6)) {
                if (bad++ == 0)
                    fprintf(stderr, "%s: token %d kept %lld (ref %lld) logprob %.9f (ref %.9f)\n",
                            st->name, o.token, (long long)o.n_kept, (long long)r.n_kept,
                            o.logprob, r.p[o.token] > 0 ? log(r.p[o.token]) : -INFINITY);
            }
            int64_t want = ref_pick(&r, u, PICK_EPS);
            if (want >= 0) {
                replayed++;
                if (want != o.token) bad++;
            }
        }
        double us = ((double)clock() - t0) / CLOCKS_PER_SEC * 1e6 / draws;
        CHECK(bad == 0 && replayed >= draws / 2, "%s (V=%lld): %ld mismatches with the reference",
              st->name, (long long)V, bad);
        printf("  V=%lld %-28s kept %6lld  %8.1f us/token\n", (long long)V, st->name,
               (long long)r.n_kept, us);
    }
    ref_release(&r);
    v3_sample_scratch_free(&sc);
    free(l);
    free(tmp);
}

/* ======================= the trainer's logprob, bit for bit ======================= */

/* The trainer scales logits by the same float multiply and takes the CPU cross-entropy op;
 * (float)-logprob_temp must equal its loss exactly, and logprob equal logprob_temp exactly when
 * nothing is filtered. */
static void test_trainer_parity(uint64_t seed) {
    const int64_t V = 129280;
    float *l = malloc((size_t)V * sizeof *l), *xs = malloc((size_t)V * sizeof *xs);
    v3_rng g;
    v3_rng_seed(&g, seed ^ 0x7a1);
    v3_kctx ctx;
    v3_err err = {0};
    v3_sample_scratch sc;
    CHECK_OK(v3_kctx_init(&ctx, v3_backend_cpu(), 1, &err), &err);
    CHECK_OK(v3_sample_scratch_init(&sc, V, &err), &err);
    const float temps[] = {1.0f, 0.7f, 1.3f, 0.6f};
    int bad = 0;
    for (int rep = 0; rep < 8; rep++) {
        t_fill_normal(&g, l, V, 2.5f);
        v3_sampling s = v3_sampling_default();
        s.temperature = temps[rep % 4];
        v3_rng rng;
        v3_sample_rng(&rng, seed, 300, (uint64_t)rep);
        v3_sampled o;
        if (v3_sample_token(l, V, &s, &rng, &sc, &o, &err) != V3_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        float inv_t = 1.0f / s.temperature;
        for (int64_t i = 0; i < V; i++) xs[i] = l[i] * inv_t;
        /* the entropy of softmax(l/T), in double from the scaled logits */
        double mx = xs[0], z = 0, ez = 0;
        for (int64_t i = 1; i < V; i++) mx = xs[i] > mx ? xs[i] : mx;
        for (int64_t i = 0; i < V; i++) {
            double d = (double)xs[i] - mx, e = exp(d);
            z += e;
            ez += e * d;
        }
        double h_ref = log(z) - ez / z;
        CHECK(fabs(o.entropy - h_ref) <= 1e-6 * h_ref, "T=%g: entropy %.9g, reference %.9g",
              (double)s.temperature, o.entropy, h_ref);
        int32_t tgt = o.token;
        float loss_t = 0, loss_r = 0;
        v3k(&ctx, cross_entropy, xs, V, &loss_t, &tgt, 1, V, 0.0f);
        memcpy(xs, l, (size_t)V * sizeof *xs);
        v3k(&ctx, cross_entropy, xs, V, &loss_r, &tgt, 1, V, 0.0f);
        if ((float)-o.logprob_temp != loss_t || (float)-o.logprob_raw != loss_r ||
            o.logprob != o.logprob_temp) {
            if (bad++ == 0)
                fprintf(stderr, "T=%g: -logprob_temp %.9g vs loss %.9g; -logprob_raw %.9g vs %.9g\n",
                        (double)s.temperature, -o.logprob_temp, (double)loss_t, -o.logprob_raw,
                        (double)loss_r);
        }
    }
    CHECK(bad == 0, "%d of 8 tokens: sampler logprobs differ from the CPU trainer's loss", bad);
    v3_sample_scratch_free(&sc);
    v3_kctx_free(&ctx);
    free(l);
    free(xs);
}

/* ======================= greedy, streams, errors ======================= */

static void test_greedy(void) {
    float l[16];
    for (int i = 0; i < 16; i++) l[i] = (float)(i % 5) * 0.5f - 1.0f;
    l[3] = 4.0f;
    l[9] = 4.0f; /* a tie for the maximum: the lowest index wins */
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, 16, &err), &err);
    v3_sampling s = {0.0f, 3, 0.5f, 0.2f}; /* filters are irrelevant when greedy */
    v3_rng rng, ref;
    v3_rng_seed(&rng, 99);
    ref = rng;
    (void)v3_rng_u64(&ref);
    v3_sampled o;
    CHECK_OK(v3_sample_token(l, 16, &s, &rng, &sc, &o, &err), &err);
    double x[16], lsm[16];
    for (int i = 0; i < 16; i++) x[i] = l[i];
    ref_log_softmax(x, 16, lsm);
    CHECK(o.token == 3, "greedy picked %d, want 3 (lowest index of the tied maximum)", o.token);
    CHECK(o.logprob == 0.0, "greedy logprob %g, want 0", o.logprob);
    CHECK(fabs(o.logprob_raw - lsm[3]) <= 1e-6 && o.logprob_temp == o.logprob_raw,
          "greedy logprob_raw %.9f temp %.9f, want %.9f", o.logprob_raw, o.logprob_temp, lsm[3]);
    double h = 0; /* entropy of softmax(l) from the reference log-softmax */
    for (int i = 0; i < 16; i++) h -= exp(lsm[i]) * lsm[i];
    CHECK(fabs(o.entropy - h) <= 1e-6 * h, "greedy entropy %.9f, want %.9f", o.entropy, h);
    CHECK(memcmp(&rng, &ref, sizeof rng) == 0, "greedy must advance the rng by one draw");
    CHECK_OK(v3_sample_token(l, 16, &s, NULL, &sc, &o, &err), &err); /* no rng needed */
    CHECK(o.token == 3, "greedy without rng picked %d", o.token);
    v3_sample_scratch_free(&sc);
}

static void draw_seq(const float *l, int64_t V, const v3_sampling *s, v3_rng *rng,
                     v3_sample_scratch *sc, int32_t *toks, int n) {
    v3_err err = {0};
    for (int i = 0; i < n; i++) {
        v3_sampled o;
        int rc = v3_sample_token(l, V, s, rng, sc, &o, &err);
        toks[i] = rc == V3_OK ? o.token : -1;
    }
}

static void test_streams(uint64_t seed) {
    float l[V50];
    fixed_logits(l);
    v3_sampling s = {0.9f, 0, 0.98f, 0.0f};
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, V50, &err), &err);
    enum { N = 200 };
    int32_t a[N], b[N], c[N], d[N], e[N];
    v3_rng r;
    v3_sample_rng(&r, seed, 3, 1);
    draw_seq(l, V50, &s, &r, &sc, a, N);
    v3_sample_rng(&r, seed, 3, 1);
    draw_seq(l, V50, &s, &r, &sc, b, N);
    CHECK(memcmp(a, b, sizeof a) == 0, "same (seed, request, sample) gave different draws");
    v3_sample_rng(&r, seed, 3, 2);
    draw_seq(l, V50, &s, &r, &sc, c, N);
    v3_sample_rng(&r, seed, 1, 3);
    draw_seq(l, V50, &s, &r, &sc, d, N);
    v3_sample_rng(&r, seed + 1, 3, 1);
    draw_seq(l, V50, &s, &r, &sc, e, N);
    CHECK(memcmp(a, c, sizeof a) != 0, "another sample of the request gave the same draws");
    CHECK(memcmp(c, d, sizeof c) != 0, "(request 3, sample 2) and (1, 3) gave the same draws");
    CHECK(memcmp(a, e, sizeof a) != 0, "another seed gave the same draws");
    /* batch composition: interleaving another stream (with other settings) changes nothing */
    v3_rng ra, rb;
    v3_sample_rng(&ra, seed, 3, 1);
    v3_sample_rng(&rb, seed, 8, 0);
    v3_sampling s2 = {1.3f, 7, 1.0f, 0.0f};
    for (int i = 0; i < N; i++) {
        int32_t junk;
        draw_seq(l, V50, &s2, &rb, &sc, &junk, 1);
        draw_seq(l, V50, &s, &ra, &sc, &b[i], 1);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "interleaving another stream changed a sequence");
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == c[i];
    CHECK(same < N / 2, "two streams agree on %d of %d draws", same, N);
    v3_sample_scratch_free(&sc);
}

static void test_errors(void) {
    float l[V50];
    fixed_logits(l);
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, V50, &err), &err);
    v3_sampling s = v3_sampling_default();
    v3_rng rng, keep;
    v3_rng_seed(&rng, 5);
    keep = rng;
    v3_sampled o, sentinel;
    memset(&sentinel, 0x5a, sizeof sentinel);

    l[7] = NAN;
    o = sentinel;
    int rc = v3_sample_token(l, V50, &s, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE && strstr(err.msg, "logit 7 ") && strstr(err.msg, "NaN"),
          "NaN at 7: rc %d msg '%s'", rc, err.msg);
    CHECK(memcmp(&o, &sentinel, sizeof o) == 0, "out written on failure");
    CHECK(memcmp(&rng, &keep, sizeof rng) == 0, "rng advanced on failure");
    v3_sampling g = {0.0f, 0, 1.0f, 0.0f};
    rc = v3_sample_token(l, V50, &g, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE && strstr(err.msg, "logit 7 "), "greedy NaN: rc %d msg '%s'", rc, err.msg);
    fixed_logits(l);
    l[42] = -INFINITY;
    rc = v3_sample_token(l, V50, &s, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE && strstr(err.msg, "logit 42 "), "-inf at 42: rc %d msg '%s'", rc,
          err.msg);
    fixed_logits(l);
    l[0] = 3e38f;
    v3_sampling cold = {0.5f, 0, 1.0f, 0.0f}; /* 3e38 · 2 overflows */
    rc = v3_sample_token(l, V50, &cold, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE && strstr(err.msg, "logit 0 "), "overflow: rc %d msg '%s'", rc, err.msg);
    fixed_logits(l);

    const v3_sampling bad[] = {
        {-1.0f, 0, 1.0f, 0.0f}, {NAN, 0, 1.0f, 0.0f}, {1.0f, -1, 1.0f, 0.0f},
        {1.0f, 0, 0.0f, 0.0f},  {1.0f, 0, 1.5f, 0.0f}, {1.0f, 0, 1.0f, -0.1f},
        {1.0f, 0, 1.0f, 1.5f},
    };
    const char *field[] = {"temperature", "temperature", "top_k", "top_p", "top_p", "min_p", "min_p"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = v3_sample_token(l, V50, &bad[i], &rng, &sc, &o, &err);
        CHECK(rc == V3_EINVAL && strstr(err.msg, field[i]), "bad %s accepted or unnamed: '%s'",
              field[i], err.msg);
    }
    rc = v3_sample_token(l, V50 + 1, &s, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE, "V beyond the scratch capacity accepted");
    rc = v3_sample_token(l, V50, &s, NULL, &sc, &o, &err);
    CHECK(rc == V3_EINVAL, "sampling without a generator accepted");
    v3_sampling tiny = {1e-39f, 0, 1.0f, 0.0f};
    rc = v3_sample_token(l, V50, &tiny, &rng, &sc, &o, &err);
    CHECK(rc == V3_ERANGE, "temperature 1e-39 (1/T = inf) accepted");
    CHECK(memcmp(&rng, &keep, sizeof rng) == 0, "rng advanced by failed calls");
    v3_sample_scratch_free(&sc);
    v3_sample_scratch_free(&sc); /* twice is harmless */
    CHECK(v3_sample_scratch_init(&sc, 0, &err) == V3_EINVAL, "capacity 0 accepted");
}

/* top_k = 1 and a tiny top_p reduce to the argmax: every draw is the greedy token. */
static void test_degenerate(uint64_t seed) {
    float l[V50];
    fixed_logits(l);
    int32_t arg = (17 * 0 + 7) % V50;
    v3_sample_scratch sc;
    v3_err err = {0};
    CHECK_OK(v3_sample_scratch_init(&sc, V50, &err), &err);
    const v3_sampling s[] = {{1.0f, 1, 1.0f, 0.0f}, {1.7f, 0, 1e-6f, 0.0f}, {1.0f, 0, 1.0f, 1.0f}};
    v3_rng rng;
    v3_sample_rng(&rng, seed, 7, 7);
    for (size_t k = 0; k < sizeof s / sizeof s[0]; k++) {
        int bad = 0;
        for (int n = 0; n < 500; n++) {
            v3_sampled o;
            if (v3_sample_token(l, V50, &s[k], &rng, &sc, &o, &err) != V3_OK || o.token != arg ||
                o.logprob != 0.0 || o.n_kept != 1)
                bad++;
        }
        CHECK(bad == 0, "setting %zu: %d draws were not the argmax with logprob 0", k, bad);
    }
    v3_sample_scratch_free(&sc);
}

/* ======================= stop strings ======================= */

static void check_status(const v3_stop_status *st, int stopped, int which, int64_t cut,
                         int64_t hold, int64_t safe, const char *what) {
    CHECK(st->stopped == stopped && st->which == which && st->cut == cut && st->hold == hold &&
              st->safe == safe,
          "%s: stopped %d which %d cut %lld hold %lld safe %lld; want %d %d %lld %lld %lld", what,
          st->stopped, st->which, (long long)st->cut, (long long)st->hold, (long long)st->safe,
          stopped, which, (long long)cut, (long long)hold, (long long)safe);
}

static void test_stop_basic(void) {
    v3_err err = {0};
    v3_stop st;
    v3_stop_status res;
    const char *s1[] = {"</answer>", "STOP"};
    CHECK_OK(v3_stop_init(&st, s1, 2, &err), &err);
    const char *a = "The answer is 42</ans";
    CHECK(v3_stop_append(&st, a, strlen(a), &res) == 0, "stopped too early");
    int64_t la = (int64_t)strlen(a);
    check_status(&res, 0, -1, -1, 5, la - 5, "split 1/2");
    CHECK(v3_stop_append(&st, "wer> more", 9, &res) == 1, "split stop string not found");
    check_status(&res, 1, 0, 16, 0, 16, "split 2/2");
    CHECK(res.end == 25, "end %lld, want 25", (long long)res.end);
    CHECK(v3_stop_append(&st, "STOP", 4, &res) == 1 && res.which == 0 && res.cut == 16,
          "append after a stop changed the result");
    v3_stop_reset(&st);
    CHECK(v3_stop_append(&st, "xxSTO", 5, &res) == 0 && res.hold == 3 && res.safe == 2,
          "after reset: hold %lld safe %lld", (long long)res.hold, (long long)res.safe);
    CHECK(v3_stop_append(&st, "Pyy", 3, &res) == 1 && res.which == 1 && res.cut == 2 &&
              res.end == 6,
          "after reset: which %d cut %lld", res.which, (long long)res.cut);
    v3_stop_free(&st);

    /* earliest completion wins, whatever the list order; equal ends: the longest wins */
    const char *s2[] = {"world", "lo w"};
    CHECK_OK(v3_stop_init(&st, s2, 2, &err), &err);
    v3_stop_append(&st, "hello world", 11, &res);
    check_status(&res, 1, 1, 3, 0, 3, "earliest completion");
    v3_stop_free(&st);
    const char *s3[] = {"b", "ab", "xab"};
    CHECK_OK(v3_stop_init(&st, s3, 3, &err), &err);
    v3_stop_append(&st, "zz", 2, &res);
    v3_stop_append(&st, "xa", 2, &res);
    check_status(&res, 0, -1, -1, 2, 2, "hold of xa");
    v3_stop_append(&st, "b", 1, &res);
    check_status(&res, 1, 2, 2, 0, 2, "longest of equal ends");
    v3_stop_free(&st);

    /* failure links: a mismatch inside one stop string continues inside another */
    const char *s4[] = {"abcd", "bce", "aab"};
    CHECK_OK(v3_stop_init(&st, s4, 3, &err), &err);
    v3_stop_append(&st, "aaa", 3, &res);
    check_status(&res, 0, -1, -1, 2, 1, "aaa holds aa");
    v3_stop_append(&st, "bc", 2, &res);
    check_status(&res, 1, 2, 1, 0, 1, "aab inside aaabc");
    v3_stop_reset(&st);
    v3_stop_append(&st, "abc", 3, &res);
    check_status(&res, 0, -1, -1, 3, 0, "abc holds all");
    v3_stop_append(&st, "e", 1, &res);
    check_status(&res, 1, 1, 1, 0, 1, "abc + e -> bce");
    v3_stop_reset(&st);
    v3_stop_append(&st, "abcx", 4, &res);
    check_status(&res, 0, -1, -1, 0, 4, "abcx holds nothing");
    v3_stop_free(&st);
    const char *s8[] = {"abcd", "c", "bc"}; /* two suffixes of "abc" end together: "bc" wins */
    CHECK_OK(v3_stop_init(&st, s8, 3, &err), &err);
    v3_stop_append(&st, "ab", 2, &res);
    check_status(&res, 0, -1, -1, 2, 0, "ab");
    v3_stop_append(&st, "c", 1, &res);
    check_status(&res, 1, 2, 1, 0, 1, "deepest dictionary suffix");
    v3_stop_free(&st);

    /* UTF-8: a multibyte stop string split inside its characters */
    const char *s5[] = {"\xe3\x80\x82\n", "\xe7\xb5\x82\xe3\x82\x8f\xe3\x82\x8a"}; /* "。\n", "終わり" */
    CHECK_OK(v3_stop_init(&st, s5, 2, &err), &err);
    const char *p1 = "\xe7\xad\x94\xe3\x81\x88\xe3\x81\xaf" "42\xe7"; /* 答えは42 + lead byte of 終 */
    v3_stop_append(&st, p1, strlen(p1), &res);
    check_status(&res, 0, -1, -1, 1, 11, "utf8 lead byte held");
    v3_stop_append(&st, "\xb5\x82\xe3\x82", 4, &res);
    check_status(&res, 0, -1, -1, 5, 11, "utf8 partial");
    v3_stop_append(&st, "\x8f\xe3\x82\x8a!", 5, &res);
    check_status(&res, 1, 1, 11, 0, 11, "utf8 stop");
    v3_stop_reset(&st);
    v3_stop_append(&st, "\xe7\xb5\xb5", 3, &res); /* 絵 shares two bytes with 終 */
    check_status(&res, 0, -1, -1, 0, 3, "utf8 near miss releases all");
    v3_stop_append(&st, "\xe3\x80\x82", 3, &res);
    check_status(&res, 0, -1, -1, 3, 3, "utf8 holds 。");
    v3_stop_append(&st, "\n", 1, &res);
    check_status(&res, 1, 0, 3, 0, 3, "utf8 。\\n");
    v3_stop_free(&st);

    /* no stop strings; bad input; duplicates keep the first index */
    CHECK_OK(v3_stop_init(&st, NULL, 0, &err), &err);
    CHECK(v3_stop_append(&st, "anything", 8, &res) == 0 && res.hold == 0 && res.safe == 8,
          "empty stop set");
    v3_stop_free(&st);
    const char *s6[] = {"ok", ""};
    CHECK(v3_stop_init(&st, s6, 2, &err) == V3_EINVAL && strstr(err.msg, "1"),
          "empty stop string accepted: %s", err.msg);
    v3_stop_free(&st);
    const char *s7[] = {"end", "end"};
    CHECK_OK(v3_stop_init(&st, s7, 2, &err), &err);
    v3_stop_append(&st, "the end", 7, &res);
    check_status(&res, 1, 0, 4, 0, 4, "duplicate stop strings");
    v3_stop_free(&st);
}

/* Brute force: the first stop to complete in text[0..n) (smallest end, then longest). */
static void brute_stop(const char *text, int64_t n, const char *const *stops, int ns, int *which,
                       int64_t *cut) {
    *which = -1;
    *cut = -1;
    for (int64_t e = 1; e <= n; e++) {
        int best = -1;
        int64_t blen = 0;
        for (int k = 0; k < ns; k++) {
            int64_t L = (int64_t)strlen(stops[k]);
            if (L <= e && memcmp(text + e - L, stops[k], (size_t)L) == 0 && L > blen) {
                best = k;
                blen = L;
            }
        }
        if (best >= 0) {
            *which = best;
            *cut = e - blen;
            return;
        }
    }
}

/* Brute force hold-back: the longest suffix of text[0..n) that is a proper prefix of a stop. */
static int64_t brute_hold(const char *text, int64_t n, const char *const *stops, int ns) {
    int64_t best = 0;
    for (int k = 0; k < ns; k++) {
        int64_t L = (int64_t)strlen(stops[k]);
        for (int64_t h = L - 1 < n ? L - 1 : n; h > best; h--)
            if (memcmp(text + n - h, stops[k], (size_t)h) == 0) {
                best = h;
                break;
            }
    }
    return best;
}

static void test_stop_random(uint64_t seed) {
    v3_rng g;
    v3_rng_seed(&g, seed ^ 0x5707);
    long bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        char buf[4][8];
        const char *stops[4];
        int ns = 1 + (int)v3_rng_below(&g, 4);
        for (int k = 0; k < ns; k++) {
            int L = 1 + (int)v3_rng_below(&g, 5);
            for (int j = 0; j < L; j++) buf[k][j] = (char)('a' + v3_rng_below(&g, 3));
            buf[k][L] = 0;
            stops[k] = buf[k];
        }
        char text[64];
        int64_t n = 1 + (int64_t)v3_rng_below(&g, 60);
        for (int64_t j = 0; j < n; j++) text[j] = (char)('a' + v3_rng_below(&g, 3));
        int want_which;
        int64_t want_cut;
        brute_stop(text, n, stops, ns, &want_which, &want_cut);
        v3_stop st;
        v3_err err = {0};
        if (v3_stop_init(&st, stops, ns, &err) != V3_OK) {
            bad++;
            continue;
        }
        v3_stop_status res = {0};
        int64_t pos = 0;
        while (pos < n) { /* random pieces, sometimes empty */
            int64_t piece = (int64_t)v3_rng_below(&g, 5);
            if (piece > n - pos) piece = n - pos;
            int stopped = v3_stop_append(&st, text + pos, (size_t)piece, &res);
            pos += piece;
            if (stopped) break;
            if (res.hold != brute_hold(text, pos, stops, ns) || res.safe != pos - res.hold) {
                if (bad++ < 5)
                    fprintf(stderr, "hold %lld, brute %lld at %lld of '%.*s'\n",
                            (long long)res.hold, (long long)brute_hold(text, pos, stops, ns),
                            (long long)pos, (int)n, text);
            }
        }
        if (res.which != want_which || res.cut != want_cut || res.stopped != (want_which >= 0) ||
            (res.stopped && res.end != want_cut + (int64_t)strlen(stops[want_which]))) {
            if (bad++ < 5)
                fprintf(stderr, "text '%.*s': which %d cut %lld, brute %d %lld\n", (int)n, text,
                        res.which, (long long)res.cut, want_which, (long long)want_cut);
        }
        v3_stop_free(&st);
    }
    CHECK(bad == 0, "%ld disagreements with the brute-force stop matcher", bad);
}

int main(void) {
    uint64_t seed = t_seed("test_sampler");
    test_distribution(seed);
    test_large_vocab(seed);
    test_trainer_parity(seed);
    test_greedy();
    test_streams(seed);
    test_errors();
    test_degenerate(seed);
    test_stop_basic();
    test_stop_random(seed);
    return t_finish("test_sampler");
}
