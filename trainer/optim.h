/* optim.h — AdamW over the model's one parameter buffer, with global gradient-norm clipping.
 *
 * Exactly torch.optim.AdamW (decoupled weight decay, bias-corrected moments, fp32 state) applied
 * through the backend's adamw op, one call per contiguous range of parameters that share a weight
 * decay. The ranges come from the parameter table: NORM gains get no decay by default, and BIAS
 * (e_score_correction_bias) is skipped entirely — it is moved by the router-bias rule, not by
 * gradients. Clipping is torch.nn.utils.clip_grad_norm_: norm = sqrt(Σ g²) over every gradient
 * (one sumsq of the whole buffer, a fixed order), coef = max_norm / (norm + 1e-6) clamped to 1,
 * handed to the adamw op as grad_scale so the gradients are never rewritten.
 *
 *     v3_optim o;  v3_optim_init(&o, ctx, &m.table, &opts, &err);
 *     double norm = v3_optim_grad_norm(&o, m.grads);
 *     v3_optim_step(&o, m.params, m.grads, lr, v3_clip_coef(norm, max_norm));
 *     v3_optim_save(&o, "step-10.tmp/optim.bin", &err);  ...  v3_optim_free(&o); */
#ifndef V3_OPTIM_H
#define V3_OPTIM_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/kernels.h"
#include "model/params.h"

#define V3_OPTIM_FILE_VERSION 1

typedef struct v3_adamw_opts {
    float beta1, beta2, eps;
    float weight_decay;
    int decay_norms;      /* 1: NORM gains are decayed too (off by default, as the usual recipe) */
} v3_adamw_opts;

/* torch defaults except weight decay: betas (0.9, 0.95), eps 1e-8, weight decay 0.1. */
v3_adamw_opts v3_adamw_default_opts(void);

typedef struct v3_optim_range {
    int64_t off, n;       /* element range of the parameter buffer */
    float wd;             /* weight decay of the range */
} v3_optim_range;

typedef struct v3_optim {
    v3_kctx *ctx;
    v3_adamw_opts o;
    int64_t total;        /* elements of the parameter buffer */
    float *m, *v;         /* [total] backend memory, fp32 moments (zero for skipped ranges) */
    int64_t step;         /* optimizer steps taken (torch's state["step"]) */
    v3_optim_range *r;    /* [n_r] trained ranges in table order */
    int n_r;
} v3_optim;

int v3_optim_init(v3_optim *o, v3_kctx *ctx, const v3_param_table *t, const v3_adamw_opts *opts,
                  v3_err *err);
void v3_optim_free(v3_optim *o);

/* sqrt(Σ g²) over the whole gradient buffer (NaN/Inf when any gradient is). */
double v3_optim_grad_norm(v3_optim *o, const float *grads);
/* torch's clip coefficient: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0. */
float v3_clip_coef(double norm, double max_norm);
/* One AdamW step with learning rate lr on every trained range; g = grad_scale · grads. */
void v3_optim_step(v3_optim *o, float *params, const float *grads, float lr, float grad_scale);

/* State file: "V3OPTIM\0", u32 version, u32 0, i64 total, i64 step, m[total], v[total] (fp32 LE).
 * load checks the version and that total matches this model. */
int v3_optim_save(v3_optim *o, const char *path, v3_err *err);
int v3_optim_load(v3_optim *o, const char *path, v3_err *err);

#endif
