/* rm_mix.c — Lua reward functions and local reward models as one list (rewards/rm_mix.h). */
#include "rewards/rm_mix.h"

#include <stdlib.h>
#include <string.h>

#include "rewards/sample.h"

static int n_host(const v3_rm_mix *x) { return x->host ? v3_reward_host_n_funcs(x->host) : 0; }

int v3_rm_mix_n_funcs(const v3_rm_mix *x) { return n_host(x) + x->n_rm; }

const v3_reward_func_info *v3_rm_mix_func(const v3_rm_mix *x, int f) {
    int nh = n_host(x);
    if (f < 0 || f >= nh + x->n_rm) return NULL;
    return f < nh ? v3_reward_host_func(x->host, f) : v3_rm_info(x->rms[f - nh]);
}

int v3_rm_mix_check(const v3_rm_mix *x, v3_err *err) {
    int nf = v3_rm_mix_n_funcs(x);
    if (nf < 1) return v3_errf(err, V3_EINVAL, "rewards: no reward function");
    if (nf > V3_REWARD_MAX_FUNCS)
        return v3_errf(err, V3_EINVAL, "rewards: %d functions and models (at most %d)", nf,
                       V3_REWARD_MAX_FUNCS);
    for (int f = 0; f < nf; f++)
        for (int g = 0; g < f; g++)
            if (!strcmp(v3_rm_mix_func(x, f)->name, v3_rm_mix_func(x, g)->name))
                return v3_errf(err, V3_EINVAL,
                               "rewards: two functions are named '%s' (rename one: `name = ...` in a "
                               "module or a reward-model entry, NAME=DIR for --reward-model)",
                               v3_rm_mix_func(x, f)->name);
    return V3_OK;
}

int v3_rm_mix_score(const v3_rm_mix *x, const v3_reward_sample *s, int n, v3_reward_result *out,
                    v3_err *err) {
    int rc = v3_rm_mix_check(x, err), nh = n_host(x), nf = nh + x->n_rm;
    if (rc) return rc;
    if (x->host) {
        rc = v3_reward_host_score(x->host, s, n, out, err);
        if (rc) return rc;
    } else {
        memset(out, 0, (size_t)(n > 0 ? n : 0) * sizeof *out);
    }
    v3_reward_value *vals = calloc((size_t)(n > 0 ? n : 1), sizeof *vals);
    if (!vals) rc = v3_errf(err, V3_ENOMEM, "rewards: out of memory");
    for (int j = 0; !rc && j < x->n_rm; j++) {
        rc = v3_rm_score(x->rms[j], s, n, vals, err);
        for (int i = 0; !rc && i < n; i++) out[i].values[nh + j] = vals[i]; /* ownership moves */
    }
    free(vals);
    if (rc) {
        v3_reward_results_free(out, n);
        return rc;
    }
    double w[V3_REWARD_MAX_FUNCS];
    for (int f = 0; f < nf; f++) w[f] = v3_rm_mix_func(x, f)->weight;
    for (int i = 0; i < n; i++) v3_reward_combine(&out[i], w, nf);
    return V3_OK;
}
