/* grpo_loss.c — the GRPO loss and d loss / d logp (see grpo_loss.h for the formulas). */
#include "trainer/grpo_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int v3_grpo_loss_type_parse(const char *name, v3_grpo_loss_type *out, v3_err *err) {
    if (!strcmp(name, "grpo")) *out = V3_GRPO_LOSS_GRPO;
    else if (!strcmp(name, "bnpo")) *out = V3_GRPO_LOSS_BNPO;
    else if (!strcmp(name, "dr_grpo")) *out = V3_GRPO_LOSS_DR_GRPO;
    else if (!strcmp(name, "dapo")) *out = V3_GRPO_LOSS_DAPO;
    else
        return v3_errf(err, V3_EINVAL, "unknown GRPO loss type '%s' (grpo, bnpo, dr_grpo, dapo)", name);
    return V3_OK;
}

const char *v3_grpo_loss_type_name(v3_grpo_loss_type t) {
    switch (t) {
    case V3_GRPO_LOSS_GRPO: return "grpo";
    case V3_GRPO_LOSS_BNPO: return "bnpo";
    case V3_GRPO_LOSS_DR_GRPO: return "dr_grpo";
    default: return "dapo";
    }
}

int v3_grpo_is_level_parse(const char *name, v3_grpo_is_level *out, v3_err *err) {
    if (!strcmp(name, "token")) *out = V3_GRPO_IS_TOKEN;
    else if (!strcmp(name, "sequence")) *out = V3_GRPO_IS_SEQUENCE;
    else
        return v3_errf(err, V3_EINVAL, "unknown importance sampling level '%s' (token, sequence)", name);
    return V3_OK;
}

const char *v3_grpo_is_level_name(v3_grpo_is_level l) {
    return l == V3_GRPO_IS_SEQUENCE ? "sequence" : "token";
}

void v3_grpo_loss_default_opts(v3_grpo_loss_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = V3_GRPO_LOSS_DAPO;
    o->is_level = V3_GRPO_IS_TOKEN;
    o->eps_low = o->eps_high = 0.2;
    o->kl_ratio = 1;
    o->max_completion_length = 512;
    o->num_processes = 1;
    o->grad_accum = 1;
    o->steps_per_generation = 1;
}

void v3_grpo_mask_truncated(uint8_t *mask, const uint8_t *truncated, int64_t B, int64_t T) {
    for (int64_t b = 0; b < B; b++)
        if (truncated[b]) memset(mask + b * T, 0, (size_t)T);
}

int64_t v3_grpo_count_tokens(const uint8_t *mask, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += mask[i] != 0;
    return k;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double v3_grpo_entropy_threshold(const float *entropy, const uint8_t *mask, int64_t n, double rho,
                                 float *scratch) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i]) scratch[k++] = entropy[i];
    if (k == 0) return INFINITY;
    qsort(scratch, (size_t)k, sizeof *scratch, cmp_float);
    /* torch.quantile, linear: rank q·(k−1), lerp between its floor and ceil neighbours */
    double q = 1.0 - (rho < 0 ? 0 : rho > 1 ? 1 : rho);
    double rank = q * (double)(k - 1);
    int64_t lo = (int64_t)rank, hi = (int64_t)ceil(rank);
    if (lo < 0) lo = 0;
    if (hi > k - 1) hi = k - 1;
    double a = scratch[lo], b = scratch[hi], w = rank - (double)lo;
    return fabs(w) < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w); /* torch's lerp */
}

/* P = −min(c1·A, c2·A) with its derivative dP/dρ (ρ = log r), torch's subgradients: clamp passes
 * the gradient where lo <= r <= hi (and r <= δ), minimum splits it on a tie. *c1 gets the ratio
 * after the δ cap (what TRL's clip metrics look at). */
static double policy_term(double r, double A, const v3_grpo_loss_opts *o, double *dP, double *c1) {
    double lo = 1.0 - o->eps_low, hi = 1.0 + o->eps_high;
    double c2 = r < lo ? lo : (r > hi ? hi : r);
    double dc2 = (r >= lo && r <= hi) ? r : 0.0;
    double u = r, du = r;
    if (o->delta > 0 && !(r <= o->delta)) {
        u = o->delta;
        du = 0.0;
    }
    double a = u * A, b = c2 * A;
    if (a < b) *dP = -A * du;
    else if (a > b) *dP = -A * dc2;
    else *dP = -A * 0.5 * (du + dc2);
    *c1 = u;
    return -(a < b ? a : b);
}

static int check(const v3_grpo_loss_in *in, const v3_grpo_loss_opts *o, v3_err *err) {
    if (in->B < 1 || in->T < 1 || !in->logp || !in->adv || !in->mask)
        return v3_errf(err, V3_EINVAL, "grpo loss: need B, T >= 1 (got %lld, %lld), logp, adv, mask",
                       (long long)in->B, (long long)in->T);
    if (o->beta != 0 && !in->ref_logp)
        return v3_errf(err, V3_EINVAL, "grpo loss: beta = %g needs the reference log-probabilities",
                       o->beta);
    if ((unsigned)o->type > V3_GRPO_LOSS_DAPO || (unsigned)o->is_level > V3_GRPO_IS_SEQUENCE)
        return v3_errf(err, V3_EINVAL, "grpo loss: bad loss type (%d) or ratio level (%d)",
                       (int)o->type, (int)o->is_level);
    if (!(o->eps_low >= 0) || !(o->eps_high >= 0) || !(o->delta >= 0) || !isfinite(o->beta))
        return v3_errf(err, V3_EINVAL, "grpo loss: eps_low %g, eps_high %g, delta %g, beta %g",
                       o->eps_low, o->eps_high, o->delta, o->beta);
    if (o->grad_accum < 1 || o->num_processes < 1 || o->steps_per_generation < 1 ||
        o->num_items_in_batch < 0)
        return v3_errf(err, V3_EINVAL,
                       "grpo loss: grad_accum %d, num_processes %d, steps_per_generation %d, "
                       "num_items_in_batch %lld",
                       o->grad_accum, o->num_processes, o->steps_per_generation,
                       (long long)o->num_items_in_batch);
    if (o->type == V3_GRPO_LOSS_DR_GRPO && o->max_completion_length < 1)
        return v3_errf(err, V3_EINVAL, "grpo loss: dr_grpo needs max_completion_length >= 1");
    if (o->opsm && isnan(o->opsm_threshold))
        return v3_errf(err, V3_EINVAL, "grpo loss: off-policy mask threshold is NaN");
    return V3_OK;
}

/* Weight of every active token of sequence b in the loss (see the table in grpo_loss.h). */
static double token_weight(const v3_grpo_loss_opts *o, int64_t B, int64_t n_b, int64_t n_all) {
    double ga = (double)o->grad_accum;
    switch (o->type) {
    case V3_GRPO_LOSS_GRPO: return 1.0 / ((double)(n_b > 1 ? n_b : 1) * (double)B * ga);
    case V3_GRPO_LOSS_BNPO: return 1.0 / ((double)(n_all > 1 ? n_all : 1) * ga);
    case V3_GRPO_LOSS_DR_GRPO: return 1.0 / ((double)B * (double)o->max_completion_length * ga);
    default: {
        int64_t items = o->num_items_in_batch > 0 ? o->num_items_in_batch : n_all;
        double norm = (double)(items > 1 ? items : 1) / (double)o->num_processes;
        return 1.0 / (norm * ga / (double)o->steps_per_generation);
    }
    }
}

/* k3 estimator K = exp(d) − d − 1 with d = ref − logp, and dK/dlogp = 1 − exp(d). */
static double k3(float ref, float lp, double *dk) {
    double d = (double)ref - (double)lp, e = exp(d);
    *dk = 1.0 - e;
    return e - d - 1.0;
}

int v3_grpo_loss(const v3_grpo_loss_in *in, const v3_grpo_loss_opts *o, double *loss, float *dlogp,
                 v3_grpo_loss_metrics *m, v3_err *err) {
    int rc = check(in, o, err);
    if (rc) return rc;
    const int64_t B = in->B, T = in->T;
    const int seq = o->is_level == V3_GRPO_IS_SEQUENCE;
    const double beta = o->beta;
    int64_t n_all = v3_grpo_count_tokens(in->mask, B * T);

    v3_grpo_loss_metrics mt;
    memset(&mt, 0, sizeof mt);
    mt.n_tokens = n_all;
    mt.clip_low_min = INFINITY;
    mt.clip_high_max = -INFINITY;
    mt.ratio_min = INFINITY;
    mt.ratio_max = -INFINITY;
    double total = 0;
    if (dlogp) memset(dlogp, 0, (size_t)(B * T) * sizeof *dlogp);

    for (int64_t b = 0; b < B; b++) {
        const float *lp = in->logp + b * T;
        const float *old = in->old_logp ? in->old_logp + b * T : NULL;
        const float *ref = in->ref_logp ? in->ref_logp + b * T : NULL;
        const float *ent = in->entropy ? in->entropy + b * T : NULL;
        const uint8_t *mk = in->mask + b * T;
        float *g = dlogp ? dlogp + b * T : NULL;
        const double A = in->adv[b];

        /* sequence quantities: length, mean log-ratio (GSPO), mean old − logp (OPSM) */
        int64_t n_b = 0;
        double sum_lr = 0, sum_kl = 0;
        for (int64_t t = 0; t < T; t++) {
            if (!mk[t]) continue;
            n_b++;
            double d = old ? (double)lp[t] - (double)old[t] : 0.0;
            sum_lr += d;
            if (!isnan(d)) sum_kl -= d; /* nan_to_num(old − logp) */
        }
        const double inv_n = 1.0 / (double)(n_b > 1 ? n_b : 1);
        double keep = 1.0;
        if (o->opsm && !(A >= 0) && !(sum_kl * inv_n <= o->opsm_threshold)) {
            keep = 0.0;
            mt.n_opsm_dropped++;
        }
        const double w = token_weight(o, B, n_b, n_all);

        /* sequence level: one ratio, one policy term for every token */
        double r_s = 0, P_s = 0, dP_s = 0, c1_s = 0;
        if (seq) {
            r_s = exp(sum_lr * inv_n);
            P_s = policy_term(r_s, A, o, &dP_s, &c1_s);
        }

        /* token loop: loss, metrics, and the gradient of every term local to the token */
        double sum_keep = 0, sum_kb = 0; /* sequence level: Σ keep_t, Σ K_t before the ratio */
        int64_t n_low = 0, n_high = 0;
        for (int64_t t = 0; t < T; t++) {
            if (!mk[t]) continue;
            double r = r_s, P = P_s, dP = dP_s, c1 = c1_s;
            if (!seq) {
                r = exp(old ? (double)lp[t] - (double)old[t] : 0.0);
                P = policy_term(r, A, o, &dP, &c1);
                n_low += c1 < 1.0 - o->eps_low && A < 0;
                n_high += c1 > 1.0 + o->eps_high && A > 0;
                mt.sum_ratio += r;
                if (r < mt.ratio_min) mt.ratio_min = r;
                if (r > mt.ratio_max) mt.ratio_max = r;
            }
            int ent_keep = !ent || (double)ent[t] >= in->entropy_threshold;
            mt.n_entropy_kept += ent && ent_keep;
            double k = ent_keep ? keep : 0.0;
            double lt = P * k, gt = seq ? 0.0 : dP * k;
            if (beta != 0) {
                double dk, kb = k3(ref[t], lp[t], &dk), R = o->kl_ratio ? r : 1.0;
                lt += beta * kb * R;
                gt += beta * dk * R;
                if (o->kl_ratio && !seq) gt += beta * kb * r; /* d r_t / d logp_t = r_t */
                mt.sum_kl += kb * R;
                sum_kb += kb;
            }
            sum_keep += k;
            total += w * lt;
            if (g && !seq) g[t] = (float)(w * gt);
        }
        if (seq && g) {
            /* every active token moves ρ_s by m_u / max(n_b, 1): the sequence-wide terms are
             * shared; the KL's own 1 − exp(d) stays per token */
            double cross = dP_s * sum_keep;
            if (beta != 0 && o->kl_ratio) cross += beta * r_s * sum_kb;
            for (int64_t t = 0; t < T; t++) {
                if (!mk[t]) continue;
                double gt = cross * inv_n;
                if (beta != 0) {
                    double dk;
                    (void)k3(ref[t], lp[t], &dk);
                    gt += beta * dk * (o->kl_ratio ? r_s : 1.0);
                }
                g[t] = (float)(w * gt);
            }
        }
        /* clip metrics: per token over the sequence, or the sequence's single verdict */
        if (seq) {
            int lo = c1_s < 1.0 - o->eps_low && A < 0, hi = c1_s > 1.0 + o->eps_high && A > 0;
            mt.sum_clip_low += lo;
            mt.sum_clip_high += hi;
            mt.sum_clip_region += lo || hi;
            mt.count++;
            if (lo < mt.clip_low_min) mt.clip_low_min = lo;
            if (hi > mt.clip_high_max) mt.clip_high_max = hi;
            if (n_b > 0) {
                mt.sum_ratio += r_s;
                mt.count_ratio++;
                if (r_s < mt.ratio_min) mt.ratio_min = r_s;
                if (r_s > mt.ratio_max) mt.ratio_max = r_s;
            }
        } else {
            mt.sum_clip_low += (double)n_low;
            mt.sum_clip_high += (double)n_high;
            mt.sum_clip_region += (double)(n_low + n_high); /* low needs A < 0, high A > 0 */
            mt.count += n_b;
            mt.count_ratio += n_b;
            if (n_b > 0) {
                double fl = (double)n_low / (double)n_b, fh = (double)n_high / (double)n_b;
                if (fl < mt.clip_low_min) mt.clip_low_min = fl;
                if (fh > mt.clip_high_max) mt.clip_high_max = fh;
            }
        }
    }

    if (m) {
        double c = (double)(mt.count > 1 ? mt.count : 1); /* TRL clamps the count at 1 */
        mt.clip_low = mt.sum_clip_low / c;
        mt.clip_high = mt.sum_clip_high / c;
        mt.clip_region = mt.sum_clip_region / c;
        mt.count_kl = beta != 0 ? n_all : 0;
        mt.kl = beta != 0 ? mt.sum_kl / (double)(n_all > 1 ? n_all : 1) : NAN;
        if (isinf(mt.clip_low_min)) mt.clip_low_min = NAN;
        if (isinf(mt.clip_high_max)) mt.clip_high_max = NAN;
        if (mt.count_ratio > 0) {
            mt.ratio_mean = mt.sum_ratio / (double)mt.count_ratio;
        } else {
            mt.ratio_mean = mt.ratio_min = mt.ratio_max = NAN;
        }
        *m = mt;
    }
    *loss = total;
    return V3_OK;
}
