/* schedule.h — learning-rate schedules: a pure function of the optimizer step, so a resumed run
 * recomputes the same rate without storing scheduler state.
 *
 * Steps are 1-based (the step about to be taken). Kinds:
 *   constant  lr for every step after warmup;
 *   linear    warmup, then straight down from lr to min_lr at total_steps;
 *   cosine    warmup, then min_lr + (lr - min_lr)·½(1 + cos(π·progress)) (the usual SFT recipe).
 * Warmup is linear from lr/warmup (step 1) to lr (step warmup), as transformers'
 * get_*_schedule_with_warmup: factor step/warmup. */
#ifndef V3_SCHEDULE_H
#define V3_SCHEDULE_H

#include <stdint.h>

#include "common/err.h"

typedef enum v3_sched_kind { V3_SCHED_CONSTANT = 0, V3_SCHED_LINEAR, V3_SCHED_COSINE } v3_sched_kind;

typedef struct v3_schedule {
    v3_sched_kind kind;
    double lr;            /* peak rate */
    double min_lr;        /* floor reached at total_steps (linear, cosine) */
    int64_t warmup;       /* steps of linear warmup (0 = none) */
    int64_t total_steps;  /* length of the whole run */
} v3_schedule;

/* "constant", "linear" or "cosine" -> kind; V3_EINVAL names the accepted values. */
int v3_schedule_parse_kind(const char *name, v3_sched_kind *out, v3_err *err);
const char *v3_schedule_kind_name(v3_sched_kind k);
/* Learning rate for 1-based optimizer step `step`. */
double v3_schedule_lr(const v3_schedule *s, int64_t step);

#endif
