/* grpo_loss.h — the GRPO policy loss and its gradient with respect to each token's log-probability,
 * exactly as TRL's GRPOTrainer._compute_loss (trl 1.16.0), computed in double on the CPU.
 *
 * The model's backward takes g_t = d loss / d logp_t as a per-token weight on the cross-entropy
 * gradient (d logp_t / d logits = onehot − softmax), so no autograd is needed: the loss depends on
 * the network only through the log-probabilities of the sampled tokens.
 *
 * For sequence b with advantage A_b and active tokens t (mask = 1; n_b of them):
 *
 *   log-ratio   ρ_t = logp_t − old_t                                  (token level)
 *               ρ_t = Σ_u m_u (logp_u − old_u) / max(n_b, 1)  for all t  (sequence level, GSPO)
 *   ratio       r_t = exp(ρ_t)
 *   policy      P_t = −min(c1·A_b, c2·A_b),  c2 = clamp(r_t, 1 − ε_low, 1 + ε_high),
 *                                            c1 = min(r_t, δ) when δ > 0, else r_t
 *   k3 KL       K_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1,   times r_t when kl_ratio
 *   token loss  ℓ_t = P_t · keep_t + β · K_t
 *     keep_t = [entropy_t >= entropy_threshold] (when an entropy is given)
 *            · [A_b >= 0 or mean_t(old_t − logp_t) <= opsm_threshold] (when OPSM is on)
 *
 *   loss = Σ_b Σ_t m_bt · ℓ_bt · w_b with, by loss type (GA = grad_accum):
 *     grpo     w_b = 1 / (max(n_b, 1) · B · GA)          mean per sequence, then over sequences
 *     bnpo     w   = 1 / (max(Σ n_b, 1) · GA)             mean over the tokens of this call
 *     dr_grpo  w   = 1 / (B · max_completion_length · GA)
 *     dapo     w   = 1 / (max(num_items_in_batch, 1) / num_processes · GA / steps_per_generation)
 *              num_items_in_batch: active tokens of the whole generation batch over all ranks
 *              (TRL gathers completion_mask.sum() at generation time); with the usual
 *              GA == steps_per_generation, the per-rank gradients averaged over ranks and summed
 *              over micro-batches are d(Σ all tokens ℓ / num_items_in_batch).
 *
 * The gradient is written by hand: d min(a, b) splits the gradient evenly on a tie (torch.minimum),
 * clamp passes it where lo <= r <= hi, d r_t/d logp_u = r_t (token) or r_b · m_u / max(n_b, 1)
 * (sequence), d K/d logp = 1 − exp(ref − logp) (before the ratio factor). Masked positions are never
 * read and get gradient 0. Gradient convention: dlogp is assigned (=), not accumulated.
 *
 *     v3_grpo_loss_opts o;  v3_grpo_loss_default_opts(&o);  o.beta = 0.04;
 *     v3_grpo_loss_in in = {.B = B, .T = T, .logp = lp, .old_logp = old, .ref_logp = ref,
 *                           .adv = adv, .mask = mask};
 *     double loss;  v3_grpo_loss_metrics m;
 *     v3_grpo_loss(&in, &o, &loss, dlogp, &m, &err);
 *
 * What TRL has and this has not (not needed here, or not a per-token-logp loss): the cispo, sapo,
 * luspo and vespo loss types, vLLM importance-sampling correction (our sampler and trainer share
 * the kernels), the entropy bonus (its gradient goes through the whole softmax), the MoE aux loss. */
#ifndef V3_GRPO_LOSS_H
#define V3_GRPO_LOSS_H

#include <stdint.h>

#include "common/err.h"

typedef enum v3_grpo_loss_type {
    V3_GRPO_LOSS_GRPO = 0,
    V3_GRPO_LOSS_BNPO,
    V3_GRPO_LOSS_DR_GRPO,
    V3_GRPO_LOSS_DAPO,            /* TRL's default */
} v3_grpo_loss_type;

typedef enum v3_grpo_is_level {
    V3_GRPO_IS_TOKEN = 0,         /* one ratio per token (TRL default) */
    V3_GRPO_IS_SEQUENCE,          /* one ratio per sequence, geometric mean (GSPO) */
} v3_grpo_is_level;

/* "grpo" | "bnpo" | "dr_grpo" | "dapo";  "token" | "sequence" */
int v3_grpo_loss_type_parse(const char *name, v3_grpo_loss_type *out, v3_err *err);
const char *v3_grpo_loss_type_name(v3_grpo_loss_type t);
int v3_grpo_is_level_parse(const char *name, v3_grpo_is_level *out, v3_err *err);
const char *v3_grpo_is_level_name(v3_grpo_is_level l);

typedef struct v3_grpo_loss_opts {
    v3_grpo_loss_type type;
    v3_grpo_is_level is_level;
    double eps_low, eps_high;     /* clip range [1 − eps_low, 1 + eps_high] (TRL epsilon, epsilon_high) */
    double delta;                 /* > 0: cap of the unclipped ratio (two-sided clipping); 0 = off */
    double beta;                  /* weight of the k3 KL to the reference; 0 = off (ref unused) */
    int kl_ratio;                 /* TRL use_bias_correction_kl: KL term times the ratio */
    int opsm;                     /* off-policy sequence mask (DeepSeek-V3.2) on */
    double opsm_threshold;        /* its δ: drop A < 0 sequences whose mean(old − logp) exceeds it */
    int64_t max_completion_length;/* dr_grpo's constant */
    int64_t num_items_in_batch;   /* dapo: see above; 0 = the active tokens of this call */
    int num_processes;            /* dapo: ranks sharing num_items_in_batch */
    int grad_accum;               /* micro-batches per optimizer step (TRL divides by it) */
    int steps_per_generation;     /* dapo: micro-batches per generation batch */
} v3_grpo_loss_opts;

/* TRL's GRPOConfig defaults: dapo, token level, ε 0.2/0.2, no δ, β 0, kl_ratio 1, OPSM off,
 * max_completion_length 512, num_items_in_batch 0, 1 process, grad_accum 1, steps_per_generation 1. */
void v3_grpo_loss_default_opts(v3_grpo_loss_opts *o);

typedef struct v3_grpo_loss_in {
    int64_t B, T;                 /* sequences, completion positions (right-padded) */
    const float *logp;            /* [B, T] log π_θ of each completion token (current policy) */
    const float *old_logp;        /* [B, T] log π_old (the sampler's); NULL = on-policy: ratio 1,
                                     as TRL with old = logp.detach() */
    const float *ref_logp;        /* [B, T] reference policy; required when beta != 0 */
    const double *adv;            /* [B] advantage of each sequence */
    const uint8_t *mask;          /* [B, T] nonzero = token in the loss (after v3_grpo_mask_truncated) */
    const float *entropy;         /* [B, T] per-token entropy, or NULL: no entropy mask */
    double entropy_threshold;     /* policy term kept where entropy >= it (v3_grpo_entropy_threshold) */
} v3_grpo_loss_in;

typedef struct v3_grpo_loss_metrics {
    /* TRL's logged metrics (one rank): clip_ratio/{low,high,region}_mean, clip_ratio/low_min,
     * clip_ratio/high_max, kl. Clipped = c1 < 1 − ε_low with A < 0 (low), c1 > 1 + ε_high with A > 0
     * (high). Token level: means over active tokens, min/max over sequences with an active token
     * of the per-sequence fraction (NaN when there is none). Sequence level: one value per
     * sequence, means over all B sequences. kl: mean of K_t over active tokens; NaN when β = 0. */
    double clip_low, clip_high, clip_region, clip_low_min, clip_high_max, kl;
    /* the importance ratio r over active tokens (token level) or non-empty sequences: NaN if none */
    double ratio_mean, ratio_min, ratio_max;
    /* sums for an all-reduce across ranks: mean = sum / count (count_kl for kl) */
    double sum_clip_low, sum_clip_high, sum_clip_region, sum_kl, sum_ratio;
    int64_t count, count_kl, count_ratio;
    int64_t n_tokens;             /* active tokens */
    int64_t n_entropy_kept;       /* active tokens whose policy term the entropy mask kept */
    int64_t n_opsm_dropped;       /* sequences the off-policy mask dropped */
} v3_grpo_loss_metrics;

/* Computes *loss (what TRL's _compute_loss returns), dlogp [B, T] (d loss / d logp; may be NULL)
 * and *m (may be NULL). V3_EINVAL on a missing input or bad option. */
int v3_grpo_loss(const v3_grpo_loss_in *in, const v3_grpo_loss_opts *o, double *loss, float *dlogp,
                 v3_grpo_loss_metrics *m, v3_err *err);

/* TRL's mask_truncated_completions: zeroes mask rows [B, T] whose truncated[b] is nonzero (a
 * completion that hit the length limit without EOS). Do it before counting num_items_in_batch. */
void v3_grpo_mask_truncated(uint8_t *mask, const uint8_t *truncated, int64_t B, int64_t T);
/* Active tokens of a mask of n entries (num_items_in_batch of a generation batch). */
int64_t v3_grpo_count_tokens(const uint8_t *mask, int64_t n);

/* TRL's top_entropy_quantile ρ: the threshold torch.quantile(active entropies, 1 − ρ) (linear
 * interpolation), +INFINITY when no token is active (nothing kept). scratch holds n floats.
 * ρ is clamped to [0, 1]; ρ = 1 keeps everything: pass entropy = NULL to the loss instead. TRL
 * takes the quantile over the tokens of every rank: on several ranks, gather first. */
double v3_grpo_entropy_threshold(const float *entropy, const uint8_t *mask, int64_t n, double rho,
                                 float *scratch);

#endif
