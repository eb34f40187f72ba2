/* optim_cfg.h — the optimizer and schedule keys every trainer config shares (schemas sft and grpo):
 * optim.{lr, eps, weight_decay, clip_grad_norm, betas} and sched.{kind, warmup_steps, min_lr}. */
#ifndef V3_OPTIM_CFG_H
#define V3_OPTIM_CFG_H

#include "common/err.h"
#include "lua/config.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

/* Fills adamw, sched (lr, kind, warmup, min_lr) and *clip from the resolved config c. */
int v3_optim_from_cfg(const v3_cfg *c, v3_adamw_opts *adamw, v3_schedule *sched, double *clip,
                      v3_err *err);

#endif
