/* test_grpo_loss.c — GRPO advantages and loss against TRL (tests/golden/gen_grpo.py runs TRL 1.16's
 * own _generate_and_score_completions and _compute_loss in float64 and records loss, d loss/d logp
 * from autograd, advantages and metrics for 41 option sets), the hand-written gradient against
 * central finite differences on fresh random inputs, and the edge cases: empty sequences,
 * zero-variance groups, skipped (None) rewards, bad arguments.
 *
 * Tolerances: the golden values come from float64 on the same float32 inputs, so losses and
 * advantages agree to ~1e-15 (checked at 1e-9 relative) and gradients to the float32 rounding of
 * our output (checked at 1e-6 relative per element). TRL computes its clip fractions in float32
 * (is_clipped.float()), so those are checked at 1e-6. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "testutil.h"
#include "trainer/grpo_adv.h"
#include "trainer/grpo_loss.h"

#define TOL_EXACT 1e-9  /* float64 vs float64 */
#define TOL_GRAD 1e-6   /* float32 output vs float64 */
#define TOL_METRIC 1e-6 /* TRL's float32 clip fractions */

/* |a − b| <= tol·max(|b|, floor); NaN only matches NaN. */
static int close_to(double a, double b, double tol, double floor) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    double s = fabs(b) > floor ? fabs(b) : floor;
    return fabs(a - b) <= tol * s;
}

static double jnum(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

/* array of numbers (null = NaN) into out[n]; returns how many the array held */
static size_t jarr(json_t *a, double *out, size_t n) {
    size_t k = json_array_size(a);
    for (size_t i = 0; i < k && i < n; i++) out[i] = jnum(json_array_get(a, i));
    return k;
}

typedef struct golden {
    json_t *root;
    int B, T, G;
    float *logp, *old, *ref, *ent;   /* [B·T] */
    double *scores, weights[2];      /* [B·2] */
    int lengths[64], truncated[64];
} golden;

static float *jfloats(json_t *a, size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)jnum(json_array_get(a, i));
    return p;
}

static int golden_load(golden *g) {
    char path[4096];
    json_error_t je;
    memset(g, 0, sizeof *g);
    g->root = json_load_file(t_source_path("tests/golden/data/grpo_golden.json", path, sizeof path), 0, &je);
    CHECK(g->root != NULL, "%s: %s (line %d)", path, je.text, je.line);
    if (!g->root) return -1;
    g->B = (int)json_integer_value(json_object_get(g->root, "B"));
    g->T = (int)json_integer_value(json_object_get(g->root, "T"));
    g->G = (int)json_integer_value(json_object_get(g->root, "G"));
    CHECK(g->B > 0 && g->B <= 64 && g->T > 0 && g->G > 0, "golden shape %d %d %d", g->B, g->T, g->G);
    json_t *in = json_object_get(g->root, "inputs");
    size_t n = (size_t)g->B * g->T;
    g->logp = jfloats(json_object_get(in, "logp"), n);
    g->old = jfloats(json_object_get(in, "old_logp"), n);
    g->ref = jfloats(json_object_get(in, "ref_logp"), n);
    g->ent = jfloats(json_object_get(in, "entropy"), n);
    for (int b = 0; b < g->B; b++) {
        g->lengths[b] = (int)json_integer_value(json_array_get(json_object_get(in, "lengths"), b));
        g->truncated[b] = (int)json_integer_value(json_array_get(json_object_get(in, "truncated"), b));
    }
    json_t *sc = json_object_get(in, "scores");
    CHECK(json_array_size(json_object_get(in, "weights")) == 2, "two reward functions");
    jarr(json_object_get(in, "weights"), g->weights, 2);
    g->scores = malloc((size_t)g->B * 2 * sizeof *g->scores);
    for (int b = 0; b < g->B; b++) jarr(json_array_get(sc, b), g->scores + 2 * b, 2);
    fprintf(stderr, "golden: trl %s, torch %s, %zu configs\n",
            json_string_value(json_object_get(g->root, "trl_version")),
            json_string_value(json_object_get(g->root, "torch_version")),
            json_array_size(json_object_get(g->root, "configs")));
    return 0;
}

static void golden_free(golden *g) {
    json_decref(g->root);
    free(g->logp), free(g->old), free(g->ref), free(g->ent), free(g->scores);
}

static const char *jstr(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Advantages of one config against TRL's. adv gets ours. */
static void check_advantages(const golden *g, json_t *c, const char *name, double *adv) {
    v3_err err;
    v3_grpo_adv_opts ao = {.group_size = g->G};
    CHECK_OK(v3_grpo_scale_parse(jstr(c, "scale_rewards"), &ao.scale, &err), &err);
    CHECK_OK(v3_grpo_agg_parse(jstr(c, "multi_objective_aggregation"), &ao.agg, &err), &err);
    double reward[64], gstd[64];
    uint8_t zero[64];
    v3_grpo_adv_out out = {.adv = adv, .reward = reward, .group_std = gstd, .group_zero_std = zero};
    CHECK_OK(v3_grpo_advantages(g->scores, g->weights, g->B, 2, &ao, &out, &err), &err);
    json_t *a = json_object_get(c, "advantages");
    double ref[64];
    jarr(json_object_get(a, "adv"), ref, 64);
    for (int b = 0; b < g->B; b++)
        CHECK(close_to(adv[b], ref[b], TOL_EXACT, 1e-6), "%s: adv[%d] %.17g vs TRL %.17g", name, b,
              adv[b], ref[b]);
    jarr(json_object_get(a, "rewards"), ref, 64);
    for (int b = 0; b < g->B; b++)
        CHECK(close_to(reward[b], ref[b], TOL_EXACT, 1e-6), "%s: reward[%d] %g vs %g", name, b,
              reward[b], ref[b]);
    CHECK(close_to(out.stats.reward_mean, jnum(json_object_get(a, "reward_mean")), TOL_EXACT, 1e-6),
          "%s: reward mean %g", name, out.stats.reward_mean);
    CHECK(close_to(out.stats.reward_std, jnum(json_object_get(a, "reward_std")), TOL_EXACT, 1e-6),
          "%s: reward std %g", name, out.stats.reward_std);
    CHECK(close_to(out.stats.frac_zero_std, jnum(json_object_get(a, "frac_reward_zero_std")), TOL_METRIC,
                   1e-6),
          "%s: frac_reward_zero_std %g vs %g", name, out.stats.frac_zero_std,
          jnum(json_object_get(a, "frac_reward_zero_std")));
    for (int f = 0; f < 2; f++) {
        double m, s;
        v3_grpo_nanmean_std(g->scores + f, g->B, 2, &m, &s);
        CHECK(close_to(m, jnum(json_array_get(json_object_get(a, "func_mean"), f)), TOL_EXACT, 1e-6) &&
                  close_to(s, jnum(json_array_get(json_object_get(a, "func_std"), f)), TOL_EXACT, 1e-6),
              "%s: function %d mean %g std %g", name, f, m, s);
    }
    /* the golden's groups: 0 ordinary, 1 with skips and an unscorable row, 2 zero variance */
    CHECK(out.stats.n_unscorable == 1 && zero[2] == 1 && zero[0] == 0 && zero[1] == 0 &&
              out.stats.n_zero_std_groups == 1,
          "%s: unscorable %lld, zero-std groups %d %d %d", name, (long long)out.stats.n_unscorable,
          zero[0], zero[1], zero[2]);
}

static void set_loss_opts(json_t *c, v3_grpo_loss_opts *o) {
    v3_err err;
    v3_grpo_loss_default_opts(o);
    CHECK_OK(v3_grpo_loss_type_parse(jstr(c, "loss_type"), &o->type, &err), &err);
    CHECK_OK(v3_grpo_is_level_parse(jstr(c, "importance_sampling_level"), &o->is_level, &err), &err);
    o->eps_low = jnum(json_object_get(c, "epsilon_low"));
    o->eps_high = jnum(json_object_get(c, "epsilon_high"));
    double d = jnum(json_object_get(c, "delta"));
    o->delta = isnan(d) ? 0 : d;
    o->beta = jnum(json_object_get(c, "beta"));
    o->kl_ratio = json_is_true(json_object_get(c, "use_bias_correction_kl"));
    double th = jnum(json_object_get(c, "off_policy_mask_threshold"));
    o->opsm = !isnan(th);
    o->opsm_threshold = th;
    o->max_completion_length = json_integer_value(json_object_get(c, "max_completion_length"));
    o->num_processes = (int)json_integer_value(json_object_get(c, "num_processes"));
    o->grad_accum = (int)json_integer_value(json_object_get(c, "gradient_accumulation_steps"));
    o->steps_per_generation = (int)json_integer_value(json_object_get(c, "steps_per_generation"));
}

static void check_metric(const char *name, json_t *mt, const char *key, double ours) {
    json_t *v = json_object_get(mt, key);
    if (!v) return; /* TRL did not log it (kl with beta = 0) */
    CHECK(close_to(ours, jnum(v), TOL_METRIC, 1e-6), "%s: %s %.9g vs TRL %.9g", name, key, ours, jnum(v));
}

static void test_golden(void) {
    golden g;
    if (golden_load(&g)) return;
    const int B = g.B, T = g.T;
    json_t *configs = json_object_get(g.root, "configs");
    uint8_t *mask = malloc((size_t)B * T);
    float *dlogp = malloc((size_t)B * T * sizeof *dlogp), *scratch = malloc((size_t)B * T * sizeof *scratch);
    double adv[64], ref[64 * 64];
    size_t ci;
    json_t *c;
    int n_steps = 0;
    json_array_foreach(configs, ci, c) {
        const char *name = jstr(c, "name");
        check_advantages(&g, c, name, adv);

        /* mask: completion lengths, then TRL's mask_truncated_completions */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) mask[b * T + t] = t < g.lengths[b];
        if (json_is_true(json_object_get(c, "mask_truncated_completions"))) {
            uint8_t tr[64];
            for (int b = 0; b < B; b++) tr[b] = (uint8_t)g.truncated[b];
            v3_grpo_mask_truncated(mask, tr, B, T);
        }
        CHECK(json_integer_value(json_object_get(c, "T_padded")) == T, "%s: padded length", name);
        jarr(json_object_get(c, "completion_mask"), ref, (size_t)B * T);
        int same = 1;
        for (int i = 0; i < B * T; i++) same &= mask[i] == (uint8_t)ref[i];
        CHECK(same, "%s: completion mask differs from TRL's", name);
        int64_t items = v3_grpo_count_tokens(mask, (int64_t)B * T);
        CHECK(items == json_integer_value(json_object_get(c, "num_items_in_batch")),
              "%s: num_items_in_batch %lld", name, (long long)items);

        v3_grpo_loss_opts o;
        set_loss_opts(c, &o);
        o.num_items_in_batch = items;
        double rho = jnum(json_object_get(c, "top_entropy_quantile"));
        int on_policy = json_is_true(json_object_get(c, "on_policy"));

        size_t si;
        json_t *s;
        json_array_foreach(json_object_get(c, "steps"), si, s) {
            int r0 = (int)json_integer_value(json_array_get(json_object_get(s, "rows"), 0));
            int r1 = (int)json_integer_value(json_array_get(json_object_get(s, "rows"), 1));
            int64_t off = (int64_t)r0 * T, n = (int64_t)(r1 - r0) * T;
            v3_grpo_loss_in in = {.B = r1 - r0, .T = T, .logp = g.logp + off,
                                  .old_logp = on_policy ? NULL : g.old + off,
                                  .ref_logp = o.beta != 0 ? g.ref + off : NULL,
                                  .adv = adv + r0, .mask = mask + off};
            if (rho < 1.0) {
                in.entropy = g.ent + off;
                in.entropy_threshold = v3_grpo_entropy_threshold(in.entropy, in.mask, n, rho, scratch);
            }
            double loss;
            v3_grpo_loss_metrics m;
            v3_err err;
            CHECK_OK(v3_grpo_loss(&in, &o, &loss, dlogp, &m, &err), &err);
            double want = jnum(json_object_get(s, "loss"));
            CHECK(close_to(loss, want, TOL_EXACT, 1e-12), "%s rows %d..%d: loss %.17g vs TRL %.17g", name,
                  r0, r1, loss, want);
            jarr(json_object_get(s, "grad"), ref, (size_t)n);
            double gmax = 0;
            for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref[i]));
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                if (!close_to(dlogp[i], ref[i], TOL_GRAD, 1e-6 * gmax) && bad++ < 3)
                    CHECK(0, "%s rows %d..%d: dlogp[%lld] %.9g vs TRL %.9g", name, r0, r1, (long long)i,
                          dlogp[i], ref[i]);
            t_checks++;
            if (bad) t_failures++;
            json_t *mt = json_object_get(s, "metrics");
            check_metric(name, mt, "clip_ratio/low_mean", m.clip_low);
            check_metric(name, mt, "clip_ratio/high_mean", m.clip_high);
            check_metric(name, mt, "clip_ratio/region_mean", m.clip_region);
            check_metric(name, mt, "clip_ratio/low_min", m.clip_low_min);
            check_metric(name, mt, "clip_ratio/high_max", m.clip_high_max);
            check_metric(name, mt, "kl", m.kl);
            CHECK(isnan(m.kl) == (o.beta == 0), "%s: kl is NaN exactly when beta = 0", name);
            CHECK(close_to(m.ratio_mean, jnum(json_object_get(s, "ratio_mean")), TOL_EXACT, 1e-9) &&
                      close_to(m.ratio_min, jnum(json_object_get(s, "ratio_min")), TOL_EXACT, 1e-9) &&
                      close_to(m.ratio_max, jnum(json_object_get(s, "ratio_max")), TOL_EXACT, 1e-9),
                  "%s: ratio mean/min/max %g %g %g", name, m.ratio_mean, m.ratio_min, m.ratio_max);
            if (!strncmp(name, "opsm", 4)) CHECK(m.n_opsm_dropped == 1, "%s: OPSM drops one row", name);
            n_steps++;
        }
    }
    CHECK(n_steps >= 41, "golden micro-batches checked: %d", n_steps);
    fprintf(stderr, "golden: %d micro-batches compared\n", n_steps);
    free(mask), free(dlogp), free(scratch);
    golden_free(&g);
}

/* ---- finite differences on fresh random inputs ---- */

enum { FB = 6, FT = 9 };

typedef struct fd_case {
    v3_grpo_loss_type type;
    v3_grpo_is_level level;
    double beta, delta;
    int kl_ratio, opsm, entropy, on_policy;
} fd_case;

static double loss_of(const v3_grpo_loss_in *in, const v3_grpo_loss_opts *o) {
    double l;
    v3_err err;
    int rc = v3_grpo_loss(in, o, &l, NULL, NULL, &err);
    return rc ? NAN : l;
}

/* distance of x from the nearest kink of the loss in log-ratio space */
static double kink_dist(double rho, const v3_grpo_loss_opts *o) {
    double d = fmin(fabs(rho - log(1 - o->eps_low)), fabs(rho - log(1 + o->eps_high)));
    if (o->delta > 0) d = fmin(d, fabs(rho - log(o->delta)));
    return d;
}

static void test_finite_differences(uint64_t seed) {
    v3_rng rng;
    v3_rng_seed(&rng, seed);
    float lp[FB * FT], old[FB * FT], ref[FB * FT], ent[FB * FT], noise[FB * FT], scratch[FB * FT];
    float g[FB * FT];
    uint8_t mask[FB * FT];
    double adv[FB];
    const int lens[FB] = {9, 4, 0, 7, 1, 6}; /* one empty sequence, one single token */
    for (int i = 0; i < FB * FT; i++) lp[i] = -0.05f - 4.0f * v3_rng_uniform(&rng);
    t_fill_normal(&rng, noise, FB * FT, 0.2f);
    for (int i = 0; i < FB * FT; i++) old[i] = lp[i] + noise[i];
    t_fill_normal(&rng, noise, FB * FT, 0.3f);
    for (int i = 0; i < FB * FT; i++) ref[i] = lp[i] + noise[i];
    t_fill_uniform(&rng, ent, FB * FT, 0.0f, 3.0f);
    for (int b = 0; b < FB; b++) {
        adv[b] = 1.5 * v3_rng_normal(&rng);
        for (int t = 0; t < FT; t++) mask[b * FT + t] = t < lens[b];
    }
    adv[3] = -fabs(adv[3]) - 0.1; /* a negative row for the low clip and OPSM */
    const double h = 1e-3;
    const fd_case cases[] = {
        {V3_GRPO_LOSS_GRPO, V3_GRPO_IS_TOKEN, 0, 0, 1, 0, 0, 0},
        {V3_GRPO_LOSS_GRPO, V3_GRPO_IS_TOKEN, 0.04, 0, 1, 0, 0, 0},
        {V3_GRPO_LOSS_BNPO, V3_GRPO_IS_TOKEN, 0.1, 0, 0, 0, 0, 0},
        {V3_GRPO_LOSS_DR_GRPO, V3_GRPO_IS_TOKEN, 0.1, 1.25, 1, 0, 0, 0},
        {V3_GRPO_LOSS_DAPO, V3_GRPO_IS_TOKEN, 0.04, 1.25, 1, 1, 1, 0},
        {V3_GRPO_LOSS_DAPO, V3_GRPO_IS_TOKEN, 0.04, 0, 1, 0, 0, 1},
        {V3_GRPO_LOSS_GRPO, V3_GRPO_IS_SEQUENCE, 0, 0, 1, 0, 0, 0},
        {V3_GRPO_LOSS_GRPO, V3_GRPO_IS_SEQUENCE, 0.1, 0, 1, 0, 0, 0},
        {V3_GRPO_LOSS_DAPO, V3_GRPO_IS_SEQUENCE, 0.1, 1.05, 1, 1, 0, 0},
        {V3_GRPO_LOSS_BNPO, V3_GRPO_IS_SEQUENCE, 0.1, 0, 0, 0, 1, 1},
    };
    int compared = 0, skipped = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const fd_case *k = &cases[ci];
        v3_grpo_loss_opts o;
        v3_grpo_loss_default_opts(&o);
        o.type = k->type;
        o.is_level = k->level;
        o.beta = k->beta;
        o.delta = k->delta;
        o.kl_ratio = k->kl_ratio;
        o.opsm = k->opsm;
        o.opsm_threshold = 0.01;
        o.max_completion_length = FT;
        o.num_items_in_batch = 40;
        o.grad_accum = 2;
        o.steps_per_generation = 2;
        if (k->level == V3_GRPO_IS_SEQUENCE) o.eps_low = 0.02, o.eps_high = 0.03;
        v3_grpo_loss_in in = {.B = FB, .T = FT, .logp = lp, .old_logp = k->on_policy ? NULL : old,
                              .ref_logp = ref, .adv = adv, .mask = mask};
        if (k->entropy) {
            in.entropy = ent;
            in.entropy_threshold = v3_grpo_entropy_threshold(ent, mask, FB * FT, 0.5, scratch);
        }
        /* on-policy (old = NULL) means TRL's old = logp.detach(): the same gradient as a fixed
         * old equal to the current logp, which is what finite differences can perturb around */
        float frozen[FB * FT];
        memcpy(frozen, lp, sizeof frozen);
        v3_grpo_loss_in fd_in = in;
        if (k->on_policy) fd_in.old_logp = frozen;
        double loss;
        v3_err err;
        CHECK_OK(v3_grpo_loss(&in, &o, &loss, g, NULL, &err), &err);
        if (k->on_policy) {
            float g2[FB * FT];
            double l2;
            CHECK_OK(v3_grpo_loss(&fd_in, &o, &l2, g2, NULL, &err), &err);
            CHECK(l2 == loss && !memcmp(g, g2, sizeof g2), "case %zu: old = NULL is old = logp", ci);
        }
        double gmax = 0;
        for (int i = 0; i < FB * FT; i++) gmax = fmax(gmax, fabs(g[i]));
        for (int b = 0; b < FB; b++) {
            /* the sequence's mean log-ratio and mean old − logp (for kinks of GSPO and OPSM) */
            double s = 0;
            int n = 0;
            for (int t = 0; t < FT; t++)
                if (mask[b * FT + t]) s += (double)lp[b * FT + t] - old[b * FT + t], n++;
            s = k->on_policy ? 0 : s / (n > 0 ? n : 1);
            int seq_near = (k->level == V3_GRPO_IS_SEQUENCE && kink_dist(s, &o) < 4 * h) ||
                           (k->opsm && fabs(-s - o.opsm_threshold) < 4 * h);
            for (int t = 0; t < FT; t++) {
                int i = b * FT + t;
                if (!mask[i]) {
                    CHECK(g[i] == 0.0f, "case %zu: masked token %d has gradient %g", ci, i, g[i]);
                    continue;
                }
                double rho = k->on_policy ? 0 : (double)lp[i] - old[i];
                if (seq_near || (k->level == V3_GRPO_IS_TOKEN && kink_dist(rho, &o) < 4 * h)) {
                    skipped++;
                    continue;
                }
                float x = lp[i];
                float xp = (float)(x + h), xm = (float)(x - h);
                lp[i] = xp;
                double lpl = loss_of(&fd_in, &o);
                lp[i] = xm;
                double lmi = loss_of(&fd_in, &o);
                lp[i] = x;
                double fd = (lpl - lmi) / ((double)xp - (double)xm);
                /* central differences: error ~ h²·|ℓ'''| ≪ 1e-4 of the largest gradient */
                CHECK(fabs(fd - g[i]) <= 1e-4 * fmax(fabs(g[i]), 0.05 * gmax),
                      "case %zu token %d: analytic %.9g vs finite difference %.9g", ci, i, g[i], fd);
                compared++;
            }
        }
    }
    /* whole sequences are skipped near a GSPO or OPSM kink: expect well over half compared */
    CHECK(compared > 150 && skipped < compared / 2, "finite differences: %d compared, %d near a kink",
          compared, skipped);
    fprintf(stderr, "finite differences: %d tokens compared, %d skipped near a kink\n", compared, skipped);
}

/* ---- edge cases ---- */

static void test_adv_edges(void) {
    v3_err err;
    const double N = NAN, w[2] = {1.0, 0.5};
    /* group 0: one None, one unscorable; group 1: zero variance; group 2: one scored sample */
    const double sc[12 * 2] = {1, 1, 0, N, N, N, 1, 0,   2, 0, 2, 0, 1, 2, 2, 0,
                               N, N, 3, 1, N, N, N, N};
    double adv[12], r[12], gm[12], gs[12]; /* [n / G]: 12 groups when G = 1 below */
    uint8_t z[12];
    v3_grpo_adv_opts o = {.group_size = 4, .scale = V3_GRPO_SCALE_GROUP};
    v3_grpo_adv_out out = {.adv = adv, .reward = r, .group_mean = gm, .group_std = gs, .group_zero_std = z};
    CHECK_OK(v3_grpo_advantages(sc, w, 12, 2, &o, &out, &err), &err);
    /* group 0 rewards 1.5, 0, NaN, 1 -> mean 5/6, std over 3 values */
    double m0 = (1.5 + 0 + 1) / 3, s0 = sqrt(((1.5 - m0) * (1.5 - m0) + m0 * m0 + (1 - m0) * (1 - m0)) / 2);
    CHECK(r[1] == 0 && isnan(r[2]) && fabs(gm[0] - m0) < 1e-15 && fabs(gs[0] - s0) < 1e-15,
          "None skipped, all-None unscorable: %g %g %g %g", r[1], r[2], gm[0], gs[0]);
    CHECK(fabs(adv[0] - (1.5 - m0) / (s0 + 1e-4)) < 1e-12 && adv[2] == 0, "group-scaled adv %g, unscorable 0",
          adv[0]);
    CHECK(z[1] == 1 && gs[1] == 0 && adv[4] == 0 && adv[7] == 0, "zero-variance group: adv 0, flagged");
    CHECK(isnan(gs[2]) && z[2] == 0 && adv[9] == 0 && adv[8] == 0 && r[9] == 3.5,
          "one scored sample: std NaN, not 'zero', advantages 0");
    CHECK(out.stats.n_unscorable == 4 && out.stats.n_zero_std_groups == 1 &&
              fabs(out.stats.frac_zero_std - 1.0 / 3) < 1e-15,
          "stats: unscorable %lld, zero groups %lld", (long long)out.stats.n_unscorable,
          (long long)out.stats.n_zero_std_groups);
    /* scale none keeps the raw difference; batch divides by the batch std */
    o.scale = V3_GRPO_SCALE_NONE;
    CHECK_OK(v3_grpo_advantages(sc, w, 12, 2, &o, &out, &err), &err);
    CHECK(fabs(adv[0] - (1.5 - m0)) < 1e-15, "scale none: %g", adv[0]);
    o.scale = V3_GRPO_SCALE_BATCH;
    CHECK_OK(v3_grpo_advantages(sc, w, 12, 2, &o, &out, &err), &err);
    CHECK(fabs(adv[0] - (1.5 - m0) / (out.stats.reward_std + 1e-4)) < 1e-12 && out.stats.frac_zero_std == 0,
          "scale batch: %g", adv[0]);
    /* G = 1: std 0, every advantage 0 */
    o.group_size = 1;
    o.scale = V3_GRPO_SCALE_GROUP;
    CHECK_OK(v3_grpo_advantages(sc, w, 12, 2, &o, &out, &err), &err);
    int allzero = 1;
    for (int i = 0; i < 12; i++) allzero &= adv[i] == 0;
    CHECK(allzero && out.stats.n_zero_std_groups == 12, "G = 1: zero advantages (%lld zero groups)",
          (long long)out.stats.n_zero_std_groups);
    /* errors: shape, infinities; outputs untouched on failure */
    o.group_size = 5;
    adv[0] = 42;
    CHECK(v3_grpo_advantages(sc, w, 12, 2, &o, &out, &err) == V3_EINVAL && adv[0] == 42,
          "n not a multiple of G");
    o.group_size = 4;
    double bad[24];
    memcpy(bad, sc, sizeof bad);
    bad[5] = INFINITY;
    CHECK(v3_grpo_advantages(bad, w, 12, 2, &o, &out, &err) == V3_EINVAL && strstr(err.msg, "sample 2"),
          "infinite score rejected: %s", err.msg);
    v3_grpo_scale s;
    v3_grpo_agg a;
    CHECK(v3_grpo_scale_parse("batch", &s, &err) == 0 && s == V3_GRPO_SCALE_BATCH &&
              !strcmp(v3_grpo_scale_name(s), "batch") && v3_grpo_scale_parse("grp", &s, &err) == V3_EINVAL,
          "scale names");
    CHECK(v3_grpo_agg_parse("normalize_then_sum", &a, &err) == 0 && a == V3_GRPO_AGG_NORMALIZE_THEN_SUM &&
              v3_grpo_agg_parse("sum", &a, &err) == V3_EINVAL,
          "aggregation names");
}

static void test_loss_edges(void) {
    v3_err err;
    enum { B = 3, T = 4 };
    float lp[B * T], old[B * T], ref[B * T], g[B * T];
    uint8_t mask[B * T] = {1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0}; /* row 1 empty */
    double adv[B] = {1.0, -3.0, -0.5};
    for (int i = 0; i < B * T; i++) {
        lp[i] = -1.0f - 0.1f * (float)i;
        old[i] = lp[i] + (float)((i % 3) - 1) * 0.05f;
        ref[i] = lp[i] + 0.2f;
        if (!mask[i]) lp[i] = old[i] = ref[i] = NAN; /* never read */
    }
    v3_grpo_loss_opts o;
    v3_grpo_loss_default_opts(&o);
    o.type = V3_GRPO_LOSS_GRPO;
    o.beta = 0.04;
    v3_grpo_loss_in in = {.B = B, .T = T, .logp = lp, .old_logp = old, .ref_logp = ref, .adv = adv,
                          .mask = mask};
    double loss, l2;
    v3_grpo_loss_metrics m;
    CHECK_OK(v3_grpo_loss(&in, &o, &loss, g, &m, &err), &err);
    int row1_zero = 1, finite = isfinite(loss);
    for (int t = 0; t < T; t++) row1_zero &= g[T + t] == 0;
    for (int i = 0; i < B * T; i++) finite &= isfinite(g[i]);
    CHECK(finite && row1_zero, "empty row: finite loss %g, zero gradient, padding never read", loss);
    CHECK(m.n_tokens == 5 && m.count == 5 && isfinite(m.clip_low_min), "metrics skip the empty row");
    /* grpo: the empty row still counts in the mean over sequences (TRL's clamp(min=1)) */
    uint8_t mask2[2 * T];
    float lp2[2 * T], old2[2 * T], ref2[2 * T];
    double adv2[2] = {adv[0], adv[2]};
    memcpy(mask2, mask, T), memcpy(mask2 + T, mask + 2 * T, T);
    memcpy(lp2, lp, sizeof lp2[0] * T), memcpy(lp2 + T, lp + 2 * T, sizeof lp2[0] * T);
    memcpy(old2, old, sizeof old2[0] * T), memcpy(old2 + T, old + 2 * T, sizeof old2[0] * T);
    memcpy(ref2, ref, sizeof ref2[0] * T), memcpy(ref2 + T, ref + 2 * T, sizeof ref2[0] * T);
    v3_grpo_loss_in in2 = {.B = 2, .T = T, .logp = lp2, .old_logp = old2, .ref_logp = ref2, .adv = adv2,
                           .mask = mask2};
    CHECK_OK(v3_grpo_loss(&in2, &o, &l2, NULL, NULL, &err), &err);
    CHECK(fabs(loss - l2 * 2.0 / 3.0) < 1e-15, "grpo divides by B including the empty row: %g vs %g", loss,
          l2 * 2 / 3);
    /* the gradient is assigned, not accumulated */
    float g2[B * T];
    CHECK_OK(v3_grpo_loss(&in, &o, &l2, g2, NULL, &err), &err);
    CHECK(l2 == loss && !memcmp(g, g2, sizeof g), "a second call gives the same gradient (= not +=)");
    /* on-policy, no KL: ratio 1, loss = −mean A over non-empty rows weighted per type */
    in.old_logp = NULL;
    o.beta = 0;
    o.type = V3_GRPO_LOSS_BNPO;
    CHECK_OK(v3_grpo_loss(&in, &o, &loss, g, &m, &err), &err);
    CHECK(fabs(loss - (-(3 * 1.0 + 2 * -0.5) / 5)) < 1e-15 && fabs(g[0] - (-1.0f / 5)) < 1e-7 &&
              m.ratio_min == 1 && m.ratio_max == 1 && m.clip_region == 0,
          "on-policy bnpo: loss %g, g0 %g", loss, g[0]);
    /* zero advantages and β = 0: nothing to learn */
    double zadv[B] = {0, 0, 0};
    in.adv = zadv;
    in.old_logp = old;
    CHECK_OK(v3_grpo_loss(&in, &o, &loss, g, &m, &err), &err);
    int gz = 1;
    for (int i = 0; i < B * T; i++) gz &= g[i] == 0;
    CHECK(loss == 0 && gz, "zero-variance group (A = 0), beta 0: zero loss and gradient");
    /* everything masked: loss 0, metrics without NaN except the per-sequence extremes */
    uint8_t none[B * T] = {0};
    in.mask = none;
    o.type = V3_GRPO_LOSS_DAPO;
    CHECK_OK(v3_grpo_loss(&in, &o, &loss, g, &m, &err), &err);
    CHECK(loss == 0 && m.clip_low == 0 && isnan(m.clip_low_min) && isnan(m.ratio_mean) && m.n_tokens == 0,
          "all masked: loss %g", loss);
    /* errors */
    in.mask = mask;
    in.adv = adv;
    o.beta = 0.1;
    in.ref_logp = NULL;
    CHECK(v3_grpo_loss(&in, &o, &loss, g, &m, &err) == V3_EINVAL, "beta without reference rejected");
    in.ref_logp = ref;
    o.type = V3_GRPO_LOSS_DR_GRPO;
    o.max_completion_length = 0;
    CHECK(v3_grpo_loss(&in, &o, &loss, g, &m, &err) == V3_EINVAL, "dr_grpo without max length rejected");
    v3_grpo_loss_type lt;
    v3_grpo_is_level lv;
    CHECK(v3_grpo_loss_type_parse("dr_grpo", &lt, &err) == 0 && lt == V3_GRPO_LOSS_DR_GRPO &&
              !strcmp(v3_grpo_loss_type_name(lt), "dr_grpo") &&
              v3_grpo_loss_type_parse("ppo", &lt, &err) == V3_EINVAL,
          "loss type names");
    CHECK(v3_grpo_is_level_parse("sequence", &lv, &err) == 0 && lv == V3_GRPO_IS_SEQUENCE &&
              v3_grpo_is_level_parse("seq", &lv, &err) == V3_EINVAL,
          "ratio level names");
    /* truncation masking and counting */
    uint8_t mk[2 * 3] = {1, 1, 1, 1, 1, 0}, tr[2] = {1, 0};
    v3_grpo_mask_truncated(mk, tr, 2, 3);
    CHECK(v3_grpo_count_tokens(mk, 6) == 2 && mk[0] == 0 && mk[3] == 1, "truncated row masked");
    /* torch.quantile, linear interpolation: values 0..4 (one masked), q = 1 − 0.3 */
    float e[6] = {4, 0, 9, 2, 1, 3}, sc[6];
    uint8_t em[6] = {1, 1, 0, 1, 1, 1};
    double th = v3_grpo_entropy_threshold(e, em, 6, 0.3, sc);
    CHECK(fabs(th - 2.8) < 1e-12, "entropy quantile %g (want 2.8)", th);
    CHECK(isinf(v3_grpo_entropy_threshold(e, none, 6, 0.3, sc)), "no tokens: infinite threshold");
}

/* The numbers TRL's documentation works out by hand. */
static void test_trl_hand_numbers(void) {
    v3_err err;
    /* group rewards [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3), A = ±0.5 / (std + 1e-4) */
    double scores[4] = {1, 0, 0, 1}, w = 1.0, adv[4];
    v3_grpo_adv_opts ao = {4, V3_GRPO_SCALE_GROUP, V3_GRPO_AGG_SUM_THEN_NORMALIZE};
    v3_grpo_adv_out out = {0};
    out.adv = adv;
    CHECK_OK(v3_grpo_advantages(scores, &w, 4, 1, &ao, &out, &err), &err);
    CHECK(fabs(adv[0] - 0.8658754) < 5e-8 && fabs(adv[1] + 0.8658754) < 5e-8 &&
              fabs(adv[2] + 0.8658754) < 5e-8 && fabs(adv[3] - 0.8658754) < 5e-8,
          "[1,0,0,1]: advantages %.7f %.7f %.7f %.7f (TRL: ±0.8658754)", adv[0], adv[1], adv[2], adv[3]);
    /* two sequences of 2 and 4 tokens, advantages +1 and −1, ratio 1: per-token losses −1, +1;
     * grpo (−1 + 1)/2 = 0, bnpo and dapo (−2 + 4)/6 = 1/3, dr_grpo 2/(2·4) = 0.25 */
    float lp[8] = {-1, -1, 0, 0, -1, -1, -1, -1};
    uint8_t mask[8] = {1, 1, 0, 0, 1, 1, 1, 1};
    double A[2] = {1, -1};
    v3_grpo_loss_in in = {0};
    in.B = 2, in.T = 4, in.logp = lp, in.old_logp = lp, in.adv = A, in.mask = mask;
    static const struct { v3_grpo_loss_type t; double want; } cases[] = {
        {V3_GRPO_LOSS_GRPO, 0.0}, {V3_GRPO_LOSS_BNPO, 1.0 / 3}, {V3_GRPO_LOSS_DAPO, 1.0 / 3},
        {V3_GRPO_LOSS_DR_GRPO, 0.25}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v3_grpo_loss_opts o;
        v3_grpo_loss_default_opts(&o);
        o.type = cases[i].t;
        o.max_completion_length = 4;
        double loss = NAN;
        CHECK_OK(v3_grpo_loss(&in, &o, &loss, NULL, NULL, &err), &err);
        CHECK(fabs(loss - cases[i].want) < 1e-12, "%s: loss %.12f, TRL's example gives %.12f",
              v3_grpo_loss_type_name(cases[i].t), loss, cases[i].want);
    }
}

int main(void) {
    uint64_t seed = t_seed("test_grpo_loss");
    test_trl_hand_numbers();
    test_golden();
    test_finite_differences(seed);
    test_adv_edges();
    test_loss_edges();
    return t_finish("test_grpo_loss");
}
