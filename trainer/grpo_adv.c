/* grpo_adv.c — GRPO advantages (see grpo_adv.h). */
#include "trainer/grpo_adv.h"

#include <math.h>
#include <string.h>

int v3_grpo_scale_parse(const char *name, v3_grpo_scale *out, v3_err *err) {
    if (!strcmp(name, "group") || !strcmp(name, "true")) *out = V3_GRPO_SCALE_GROUP;
    else if (!strcmp(name, "batch")) *out = V3_GRPO_SCALE_BATCH;
    else if (!strcmp(name, "none") || !strcmp(name, "false")) *out = V3_GRPO_SCALE_NONE;
    else
        return v3_errf(err, V3_EINVAL, "unknown reward scaling '%s' (group, batch, none)", name);
    return V3_OK;
}

const char *v3_grpo_scale_name(v3_grpo_scale s) {
    switch (s) {
    case V3_GRPO_SCALE_BATCH: return "batch";
    case V3_GRPO_SCALE_NONE: return "none";
    default: return "group";
    }
}

int v3_grpo_agg_parse(const char *name, v3_grpo_agg *out, v3_err *err) {
    if (!strcmp(name, "sum_then_normalize")) *out = V3_GRPO_AGG_SUM_THEN_NORMALIZE;
    else if (!strcmp(name, "normalize_then_sum")) *out = V3_GRPO_AGG_NORMALIZE_THEN_SUM;
    else
        return v3_errf(err, V3_EINVAL,
                       "unknown reward aggregation '%s' (sum_then_normalize, normalize_then_sum)", name);
    return V3_OK;
}

const char *v3_grpo_agg_name(v3_grpo_agg a) {
    return a == V3_GRPO_AGG_NORMALIZE_THEN_SUM ? "normalize_then_sum" : "sum_then_normalize";
}

void v3_grpo_nanmean_std(const double *x, int64_t n, int64_t stride, double *mean, double *std) {
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v)) continue;
        s += v;
        k++;
    }
    double m = s / (double)k; /* 0/0 = NaN when nothing was scored, as torch.nanmean */
    double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (!isnan(v)) ss += (v - m) * (v - m);
    }
    if (mean) *mean = m;
    /* TRL's order: nanmean of the squares, then the Bessel factor k/(k−1) */
    if (std) *std = k > 1 ? sqrt(ss / (double)k * ((double)k / (double)(k - 1))) : NAN;
}

static int is_zero_std(double s) { return fabs(s) <= V3_GRPO_ZERO_STD_ATOL; } /* NaN: 0 */

/* nansum_f(w_f · score_f); NaN when every term is NaN (TRL's unscorable row). */
static double combine(const double *score, const double *w, int n_func) {
    double s = 0;
    int scored = 0;
    for (int f = 0; f < n_func; f++) {
        double v = score[f] * w[f];
        if (isnan(v)) continue;
        s += v;
        scored = 1;
    }
    return scored ? s : NAN;
}

/* GDPO: adv[g·G ..] = nansum_f(w_f · (x − nanmean_g)/(nanstd_g + eps)); NaN when unscorable. */
static void normalize_then_sum(const double *scores, const double *w, int64_t n, int n_func, int G,
                               double *adv) {
    for (int64_t g0 = 0; g0 < n; g0 += G) {
        for (int i = 0; i < G; i++) adv[g0 + i] = 0;
        for (int f = 0; f < n_func; f++) {
            const double *x = scores + g0 * n_func + f;
            double m, s;
            v3_grpo_nanmean_std(x, G, n_func, &m, &s);
            if (G == 1) s = 0;
            for (int i = 0; i < G; i++) {
                double v = (x[(int64_t)i * n_func] - m) / (s + V3_GRPO_ADV_EPS) * w[f];
                if (!isnan(v)) adv[g0 + i] += v;
            }
        }
        for (int i = 0; i < G; i++)
            if (isnan(combine(scores + (g0 + i) * n_func, w, n_func))) adv[g0 + i] = NAN;
    }
}

int v3_grpo_advantages(const double *scores, const double *weights, int64_t n, int n_func,
                       const v3_grpo_adv_opts *o, v3_grpo_adv_out *out, v3_err *err) {
    int G = o->group_size;
    if (!scores || !weights || !out || !out->adv)
        return v3_errf(err, V3_EINVAL, "grpo advantages: scores, weights and adv are required");
    if (n < 1 || n_func < 1 || G < 1 || n % G != 0)
        return v3_errf(err, V3_EINVAL,
                       "grpo advantages: %lld samples, %d functions, group size %d (need n >= 1, "
                       "n_func >= 1, n a multiple of the group size)",
                       (long long)n, n_func, G);
    if ((unsigned)o->scale > V3_GRPO_SCALE_NONE || (unsigned)o->agg > V3_GRPO_AGG_NORMALIZE_THEN_SUM)
        return v3_errf(err, V3_EINVAL, "grpo advantages: bad scale (%d) or aggregation (%d)",
                       (int)o->scale, (int)o->agg);
    for (int f = 0; f < n_func; f++)
        if (!isfinite(weights[f]))
            return v3_errf(err, V3_EINVAL, "grpo advantages: weight of function %d is %g", f,
                           weights[f]);
    for (int64_t i = 0; i < n * n_func; i++)
        if (isinf(scores[i]))
            return v3_errf(err, V3_EINVAL, "grpo advantages: sample %lld, function %d: score %g",
                           (long long)(i / n_func), (int)(i % n_func), scores[i]);

    double *adv = out->adv;
    v3_grpo_adv_stats st = {0};
    for (int64_t i = 0; i < n; i++) {
        adv[i] = combine(scores + i * n_func, weights, n_func);
        if (isnan(adv[i])) st.n_unscorable++;
        if (out->reward) out->reward[i] = adv[i];
    }
    v3_grpo_nanmean_std(adv, n, 1, &st.reward_mean, &st.reward_std);
    double batch_std = n > 1 ? st.reward_std : 0;

    /* per group: statistics of the combined reward; with sum_then_normalize, the advantages */
    int64_t n_groups = n / G;
    for (int64_t g = 0; g < n_groups; g++) {
        double *r = adv + g * G;
        double m, s;
        v3_grpo_nanmean_std(r, G, 1, &m, &s);
        if (G == 1) s = 0;
        if (out->group_mean) out->group_mean[g] = m;
        if (out->group_std) out->group_std[g] = s;
        if (out->group_zero_std) out->group_zero_std[g] = (uint8_t)is_zero_std(s);
        st.n_zero_std_groups += is_zero_std(s);
        if (o->agg != V3_GRPO_AGG_SUM_THEN_NORMALIZE) continue;
        double div = o->scale == V3_GRPO_SCALE_BATCH ? batch_std : s;
        for (int i = 0; i < G; i++) {
            double a = r[i] - m;
            if (o->scale != V3_GRPO_SCALE_NONE) a = a / (div + V3_GRPO_ADV_EPS);
            r[i] = isnan(a) ? 0 : a;
        }
    }

    if (o->agg == V3_GRPO_AGG_SUM_THEN_NORMALIZE) {
        st.frac_zero_std = o->scale == V3_GRPO_SCALE_BATCH
                               ? (double)is_zero_std(batch_std)
                               : (double)st.n_zero_std_groups / (double)n_groups;
    } else {
        normalize_then_sum(scores, weights, n, n_func, G, adv);
        double m, s;
        v3_grpo_nanmean_std(adv, n, 1, &m, &s);
        if (n == 1) s = 0;
        for (int64_t i = 0; i < n; i++) {
            double a = (adv[i] - m) / (s + V3_GRPO_ADV_EPS);
            adv[i] = isnan(a) ? 0 : a;
        }
        st.frac_zero_std = (double)is_zero_std(s);
    }
    out->stats = st;
    return V3_OK;
}
