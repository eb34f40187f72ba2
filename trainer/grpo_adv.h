/* grpo_adv.h — GRPO advantages from per-function reward scores, exactly as TRL's GRPOTrainer
 * (trl 1.16.0, GRPOTrainer._generate_and_score_completions), computed in double.
 *
 * Samples come in groups: samples [g·G, (g+1)·G) are the G completions of prompt g. Per sample i
 * and reward function f, score[i·n_func + f] is the function's score, NaN when it skipped (a Lua
 * reward returned nil: TRL's None). With aggregation "sum_then_normalize" (TRL's default):
 *
 *   reward_i = nansum_f(weight_f · score_if)          NaN when every function skipped (unscorable)
 *   mean_g   = nanmean of reward over the group       (unscorable samples drop out)
 *   std      = scale "group" | "none": nanstd over the group (Bessel, N−1), 0 when G == 1
 *              scale "batch":          nanstd over all n samples,        0 when n == 1
 *   adv_i    = reward_i − mean_g,  divided by (std + 1e-4) unless scale is "none"
 *   adv_i    = 0 where that is NaN (unscorable samples, groups with no scored sample, and a group
 *              whose std is NaN because only one sample was scored)
 *
 * With "normalize_then_sum" (GDPO): each function's scores are normalised within the group first,
 * (x − nanmean)/(nanstd + 1e-4), then reward_i = nansum_f(weight_f · normalised), and
 * adv = (reward − nanmean over the batch)/(nanstd over the batch + 1e-4); `scale` is not used.
 *
 * nanstd is TRL's: sqrt(nanmean((x − nanmean)²) · k/(k−1)) over the k non-NaN values, NaN when
 * k < 2. "std == 0" is torch.isclose(std, 0): |std| <= 1e-8, and NaN is not zero.
 *
 *     v3_grpo_adv_opts o = {.group_size = 4, .scale = V3_GRPO_SCALE_GROUP};
 *     double adv[8];  uint8_t zero[2];
 *     v3_grpo_adv_out out = {.adv = adv, .group_zero_std = zero};
 *     v3_grpo_advantages(scores, weights, 8, 2, &o, &out, &err);
 *
 * TRL computes in float32 (its rewards tensor); this computes in double, which is what the golden
 * test (tests/golden/gen_grpo.py runs TRL with float64 as the default dtype) checks. */
#ifndef V3_GRPO_ADV_H
#define V3_GRPO_ADV_H

#include <stdint.h>

#include "common/err.h"

#define V3_GRPO_ADV_EPS 1e-4      /* added to the std before dividing (TRL) */
#define V3_GRPO_ZERO_STD_ATOL 1e-8 /* torch.isclose(std, 0) */

typedef enum v3_grpo_scale {
    V3_GRPO_SCALE_GROUP = 0,      /* divide by the group's std (TRL default, scale_rewards=True) */
    V3_GRPO_SCALE_BATCH,          /* divide by the std of the whole batch (PPO Lite) */
    V3_GRPO_SCALE_NONE,           /* no division (Dr. GRPO) */
} v3_grpo_scale;

typedef enum v3_grpo_agg {
    V3_GRPO_AGG_SUM_THEN_NORMALIZE = 0, /* TRL default */
    V3_GRPO_AGG_NORMALIZE_THEN_SUM,     /* GDPO */
} v3_grpo_agg;

/* "group" | "batch" | "none" (also "true"/"false", as TRL maps booleans). */
int v3_grpo_scale_parse(const char *name, v3_grpo_scale *out, v3_err *err);
const char *v3_grpo_scale_name(v3_grpo_scale s);
/* "sum_then_normalize" | "normalize_then_sum" */
int v3_grpo_agg_parse(const char *name, v3_grpo_agg *out, v3_err *err);
const char *v3_grpo_agg_name(v3_grpo_agg a);

typedef struct v3_grpo_adv_opts {
    int group_size;               /* G >= 1; n must be a multiple of it */
    v3_grpo_scale scale;
    v3_grpo_agg agg;
} v3_grpo_adv_opts;

typedef struct v3_grpo_adv_stats {
    double reward_mean, reward_std; /* TRL "reward", "reward_std": nanmean/nanstd of reward_i */
    double frac_zero_std;           /* TRL "frac_reward_zero_std": share of samples whose scaling std
                                       (group, batch or GDPO batch, per the options) is 0 */
    int64_t n_unscorable;           /* samples every function skipped (their advantage is 0) */
    int64_t n_zero_std_groups;      /* groups whose own reward std is 0 (see group_zero_std) */
} v3_grpo_adv_stats;

/* Outputs; every array is caller-owned, all but adv may be NULL. Written only on success. */
typedef struct v3_grpo_adv_out {
    double *adv;                  /* [n] advantages */
    double *reward;               /* [n] combined reward nansum_f(w·score); NaN when unscorable */
    double *group_mean;           /* [n/G] nanmean of reward over the group (NaN: nothing scored) */
    double *group_std;            /* [n/G] nanstd of reward over the group (NaN with < 2 scored;
                                     0 when G == 1) — whatever `scale` is, for dynamic sampling */
    uint8_t *group_zero_std;      /* [n/G] 1 when group_std is 0 (isclose; NaN is not) */
    v3_grpo_adv_stats stats;
} v3_grpo_adv_out;

/* scores [n, n_func] row-major (NaN = skipped), weights [n_func]. V3_EINVAL on a bad shape or
 * option, or an infinite score or weight (TRL would carry it into every advantage of the batch). */
int v3_grpo_advantages(const double *scores, const double *weights, int64_t n, int n_func,
                       const v3_grpo_adv_opts *o, v3_grpo_adv_out *out, v3_err *err);

/* torch.nanmean and TRL's nanstd of x[i·stride], 0 <= i < n: mean NaN when every value is NaN,
 * std NaN when fewer than 2 values are not NaN. Also gives TRL's per-function metrics
 * rewards/<name>/mean and /std (x = scores + f, stride = n_func). */
void v3_grpo_nanmean_std(const double *x, int64_t n, int64_t stride, double *mean, double *std);

#endif
