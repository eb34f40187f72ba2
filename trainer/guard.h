/* guard.h — the training step's safety checks: a non-finite loss or gradient norm skips the update;
 * optionally so does an outlier (z-score of the loss or grad norm against the recent good steps);
 * too many bad steps in a row stop the run.
 *
 * The window of recent values is part of the trainer state (checkpointed), so a resumed run makes
 * the same skip decisions as an uninterrupted one. */
#ifndef V3_GUARD_H
#define V3_GUARD_H

#include <stdint.h>

#include "common/err.h"

#define V3_GUARD_WINDOW_MAX 256

typedef enum v3_guard_verdict {
    V3_GUARD_OK = 0,
    V3_GUARD_NONFINITE,   /* NaN/Inf loss or gradient */
    V3_GUARD_OUTLIER,     /* z-score above the threshold */
} v3_guard_verdict;

typedef struct v3_guard {
    double z_max;         /* skip when |z| of loss or grad norm exceeds it; 0 = off */
    int window;           /* recent good steps the z-score uses (<= V3_GUARD_WINDOW_MAX) */
    int max_bad;          /* stop after this many bad steps in a row; 0 = never */
    /* state */
    double loss[V3_GUARD_WINDOW_MAX], gnorm[V3_GUARD_WINDOW_MAX];
    int n, head;          /* values held, next slot */
    int bad_in_row;
    int64_t skipped;      /* total skipped steps */
} v3_guard;

void v3_guard_init(v3_guard *g, double z_max, int window, int max_bad);
/* Judges a step; an OK step enters the window. Returns the verdict; *stop is set when this bad
 * step makes max_bad in a row (err then holds the message for the user). */
v3_guard_verdict v3_guard_check(v3_guard *g, int64_t step, double loss, double grad_norm, int *stop,
                                v3_err *err);
const char *v3_guard_verdict_name(v3_guard_verdict v);

#endif
