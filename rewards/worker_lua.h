/* worker_lua.h — inside a reward worker: one reward function's sandboxed state, its loading and
 * one call on a sample. Used by worker.c's main loop; also usable in-process by tests. */
#ifndef V3_REWARDS_WORKER_LUA_H
#define V3_REWARDS_WORKER_LUA_H

#include <jansson.h>

#include "common/err.h"
#include "lua/sandbox.h"
#include "lua/v3mod.h"

typedef struct v3_reward_fn {
    v3_sandbox sb;          /* the function's state; lives here (must not move once loaded) */
    const char *text;       /* borrowed script bytes */
    size_t len;
    const char *chunkname;  /* "@path" */
    v3_sandbox_limits limits;
    v3_v3mod_opts mod;
    /* from the module (table form), valid after load */
    char name[128];     /* used by v3.log: the configured or default name */
    char mod_name[128]; /* the module's `name` option, or "" */
    int has_weight, has_fallback;
    double weight, fallback;
} v3_reward_fn;

/* One call's outcome. */
typedef struct v3_reward_call {
    int status;   /* V3_REWARD_OK / SKIP / ERROR */
    double score;
    char *extra;  /* malloc'd JSON object text or NULL */
    v3_err err;   /* ERROR: why */
} v3_reward_call;

/* Creates the state, opens `v3` and `require`, runs the module under the budgets and keeps its
 * score function. default_name names the function if the module does not. */
int v3_reward_fn_load(v3_reward_fn *fn, const char *default_name, v3_err *err);
void v3_reward_fn_free(v3_reward_fn *fn);
/* Calls the function on the sample (a JSON object, rewards/sample.h layout). A budget kill resets
 * the state (free + load) so nothing half-done survives. Never fails as a whole: the outcome, error
 * included, is in *out (free out->extra). */
void v3_reward_fn_call(v3_reward_fn *fn, const json_t *sample, v3_reward_call *out);

#endif
