/* guard.c — NaN/Inf and outlier step skipping (see guard.h). */
#include "trainer/guard.h"

#include <math.h>
#include <string.h>

void v3_guard_init(v3_guard *g, double z_max, int window, int max_bad) {
    memset(g, 0, sizeof *g);
    g->z_max = z_max;
    g->window = window < 2 ? 2 : window > V3_GUARD_WINDOW_MAX ? V3_GUARD_WINDOW_MAX : window;
    g->max_bad = max_bad;
}

/* z-score of x against the window's values; 0 until half the window is filled (too little
 * history gives a meaningless spread) */
static double zscore(const v3_guard *g, const double *w, double x) {
    if (g->n < g->window / 2 || g->n < 4) return 0.0;
    double mean = 0, var = 0;
    for (int i = 0; i < g->n; i++) mean += w[i];
    mean /= g->n;
    for (int i = 0; i < g->n; i++) var += (w[i] - mean) * (w[i] - mean);
    double sd = sqrt(var / (g->n - 1));
    return sd > 0 ? (x - mean) / sd : 0.0;
}

v3_guard_verdict v3_guard_check(v3_guard *g, int64_t step, double loss, double grad_norm, int *stop,
                                v3_err *err) {
    *stop = 0;
    v3_guard_verdict v = V3_GUARD_OK;
    if (!isfinite(loss) || !isfinite(grad_norm)) {
        v = V3_GUARD_NONFINITE;
    } else if (g->z_max > 0) {
        /* only upward spikes are bad: an unusually low loss is no reason to skip */
        if (zscore(g, g->loss, loss) > g->z_max || zscore(g, g->gnorm, grad_norm) > g->z_max)
            v = V3_GUARD_OUTLIER;
    }
    if (v == V3_GUARD_OK) {
        g->bad_in_row = 0;
        g->loss[g->head] = loss;
        g->gnorm[g->head] = grad_norm;
        g->head = (g->head + 1) % g->window;
        if (g->n < g->window) g->n++;
        return v;
    }
    g->skipped++;
    g->bad_in_row++;
    if (g->max_bad > 0 && g->bad_in_row >= g->max_bad) {
        *stop = 1;
        v3_errf(err, V3_ERANGE,
                "step %lld: %d bad steps in a row (last: %s, loss %g, grad norm %g); stopping — "
                "lower optim.lr, check the data, or raise guard.max_bad_steps",
                (long long)step, g->bad_in_row, v3_guard_verdict_name(v), loss, grad_norm);
    }
    return v;
}

const char *v3_guard_verdict_name(v3_guard_verdict v) {
    switch (v) {
    case V3_GUARD_NONFINITE: return "non-finite loss or gradient";
    case V3_GUARD_OUTLIER: return "outlier";
    default: return "ok";
    }
}
