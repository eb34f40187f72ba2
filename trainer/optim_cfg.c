/* optim_cfg.c — see optim_cfg.h. */
#include "trainer/optim_cfg.h"

int v3_optim_from_cfg(const v3_cfg *c, v3_adamw_opts *adamw, v3_schedule *sched, double *clip,
                      v3_err *err) {
    double d = 0, b1 = 0.9, b2 = 0.95;
    int64_t i = 0;
    const char *s = NULL;
    size_t n = 0;
    int rc = v3_cfg_get_number(c, "optim.lr", &d, err);
    if (!rc) sched->lr = d;
    if (!rc && !(rc = v3_cfg_get_number(c, "optim.eps", &d, err))) adamw->eps = (float)d;
    if (!rc && !(rc = v3_cfg_get_number(c, "optim.weight_decay", &d, err))) adamw->weight_decay = (float)d;
    if (!rc && !(rc = v3_cfg_get_number(c, "optim.clip_grad_norm", &d, err))) *clip = d;
    if (!rc) rc = v3_cfg_get_list_len(c, "optim.betas", &n, err);
    if (!rc && n != 2) rc = v3_errf(err, V3_EINVAL, "optim.betas: expected {beta1, beta2}");
    if (!rc) rc = v3_cfg_get_list_number(c, "optim.betas", 0, &b1, err);
    if (!rc) rc = v3_cfg_get_list_number(c, "optim.betas", 1, &b2, err);
    if (!rc) {
        adamw->beta1 = (float)b1;
        adamw->beta2 = (float)b2;
    }
    if (!rc && !(rc = v3_cfg_get_string(c, "sched.kind", &s, err)))
        rc = v3_schedule_parse_kind(s, &sched->kind, err);
    if (!rc && !(rc = v3_cfg_get_int(c, "sched.warmup_steps", &i, err))) sched->warmup = i;
    if (!rc && !(rc = v3_cfg_get_number(c, "sched.min_lr", &d, err))) sched->min_lr = d;
    return rc;
}
