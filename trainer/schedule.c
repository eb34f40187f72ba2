/* schedule.c — learning-rate schedules (see schedule.h). */
#include "trainer/schedule.h"

#include <math.h>
#include <string.h>

int v3_schedule_parse_kind(const char *name, v3_sched_kind *out, v3_err *err) {
    if (!strcmp(name, "constant")) *out = V3_SCHED_CONSTANT;
    else if (!strcmp(name, "linear")) *out = V3_SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) *out = V3_SCHED_COSINE;
    else
        return v3_errf(err, V3_EINVAL, "unknown schedule '%s' (constant, linear, cosine)", name);
    return V3_OK;
}

const char *v3_schedule_kind_name(v3_sched_kind k) {
    switch (k) {
    case V3_SCHED_LINEAR: return "linear";
    case V3_SCHED_COSINE: return "cosine";
    default: return "constant";
    }
}

double v3_schedule_lr(const v3_schedule *s, int64_t step) {
    if (step < 1) step = 1;
    if (s->warmup > 0 && step <= s->warmup) return s->lr * (double)step / (double)s->warmup;
    if (s->kind == V3_SCHED_CONSTANT) return s->lr;
    int64_t span = s->total_steps - s->warmup;
    /* progress 0 right after warmup, 1 at total_steps; clamped so extra steps stay at the floor */
    double prog = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
    if (prog > 1.0) prog = 1.0;
    if (prog < 0.0) prog = 0.0;
    if (s->kind == V3_SCHED_LINEAR) return s->min_lr + (s->lr - s->min_lr) * (1.0 - prog);
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * prog));
}
