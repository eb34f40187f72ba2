/* rm_mix.h — Lua reward functions (a reward host, rewards/host.h) and local reward models
 * (rewards/rm.h) scored together as one list of functions: the host's functions first, then the
 * models, in order. The models run in this process after the host's workers have answered; each
 * model's verdicts are stored in the result's next value slot and the combined reward is
 * recomputed over all of them with the host's rule (v3_reward_combine: nansum of weight·score).
 * The host itself is unchanged; a caller that used v3_reward_host_score /
 * v3_reward_host_n_funcs / v3_reward_host_func switches to the v3_rm_mix_* equivalents. */
#ifndef V3_REWARDS_RM_MIX_H
#define V3_REWARDS_RM_MIX_H

#include "rewards/host.h"
#include "rewards/rm.h"

typedef struct v3_rm_mix {
    v3_reward_host *host;    /* may be NULL (reward models only) */
    v3_rm *const *rms;       /* [n_rm], borrowed */
    int n_rm;
} v3_rm_mix;

/* Checks the combination: at least one function, at most V3_REWARD_MAX_FUNCS in all, no two with
 * the same name. */
int v3_rm_mix_check(const v3_rm_mix *x, v3_err *err);
int v3_rm_mix_n_funcs(const v3_rm_mix *x);
const v3_reward_func_info *v3_rm_mix_func(const v3_rm_mix *x, int f);
/* As v3_reward_host_score over every function; free out with v3_reward_results_free. Fails only
 * when the host or a model's backend cannot go on (out is then freed). */
int v3_rm_mix_score(const v3_rm_mix *x, const v3_reward_sample *samples, int n, v3_reward_result *out,
                    v3_err *err);

#endif
