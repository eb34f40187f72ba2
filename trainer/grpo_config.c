/* grpo_config.c — GRPO options: defaults, checks (messages name the config key), and the mapping
 * from a config loaded with the "grpo" schema (lua/config_schemas.c). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua/config.h"
#include "rewards/host.h"
#include "trainer/grpo.h"
#include "trainer/optim_cfg.h"

void v3_grpo_opts_default(v3_grpo_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = "auto";
    o->math = "auto";
    o->seed = 1234;
    o->prompt_field = "prompt";
    o->chat = 1;
    o->template_name = "v3";
    o->seq_len = 4096;
    o->group_size = 8;
    o->prompts_per_step = 16;
    o->max_new_tokens = 256;
    o->sampling = v3_sampling_default();
    o->max_live_tokens = 65536;
    o->max_seqs = 64;
    o->pack_weights = 1;
    o->dynamic_max_rounds = 4;
    o->steps = 1000;
    o->mu = 1;
    o->mini_batches = 1;
    o->micro_batch_tokens = 8192;
    v3_grpo_loss_default_opts(&o->loss);
    o->scale = V3_GRPO_SCALE_GROUP;
    o->agg = V3_GRPO_AGG_SUM_THEN_NORMALIZE;
    o->adamw = v3_adamw_default_opts();
    o->clip = 1.0;
    o->sched = (v3_schedule){.kind = V3_SCHED_CONSTANT, .lr = 1e-6, .min_lr = 0, .warmup = 0};
    o->guard_window = 50;
    o->guard_max_bad = 10;
    o->reward_workers = 2;
    o->reward_timeout_ms = 2000;
    o->eval_every = 50;
    o->eval_samples = 1;
    o->ckpt_every = 100;
    o->ckpt_keep = 3;
    o->ckpt_dtype = V3_F32;
    o->log_every = 1;
}

int v3_grpo_opts_check(const v3_grpo_opts *o, v3_err *err) {
#define NEED(cond, ...) \
    if (!(cond)) return v3_errf(err, V3_EINVAL, __VA_ARGS__)
    NEED(o->model_dir && *o->model_dir, "model.dir: required");
    NEED(o->run_dir && *o->run_dir, "run.dir: required");
    NEED(o->n_prompts >= 1, "data.prompts: no prompt file given");
    NEED(o->eval_fraction >= 0 && o->eval_fraction < 1, "data.eval_fraction: %g (want 0 <= x < 1)", o->eval_fraction);
    NEED(o->prompt_field && *o->prompt_field, "data.prompt_field: empty");
    NEED(o->group_size >= 1, "rollout.group_size: %d (want >= 1)", o->group_size);
    NEED(o->prompts_per_step >= 1, "rollout.prompts_per_step: %d (want >= 1)", o->prompts_per_step);
    NEED(o->max_new_tokens >= 1, "rollout.max_new_tokens: %lld (want >= 1)", (long long)o->max_new_tokens);
    NEED(o->seq_len > o->max_new_tokens, "data.seq_len (%lld) must exceed rollout.max_new_tokens (%lld): "
         "it bounds prompt + completion", (long long)o->seq_len, (long long)o->max_new_tokens);
    NEED(o->micro_batch_tokens >= o->seq_len, "train.micro_batch_tokens (%lld) must be >= data.seq_len "
         "(%lld): one sample is one document of a micro-batch", (long long)o->micro_batch_tokens,
         (long long)o->seq_len);
    NEED(o->sampling.temperature > 0 && isfinite(o->sampling.temperature),
         "rollout.temperature: %g (want > 0: GRPO samples)", (double)o->sampling.temperature);
    v3_err e2;
    if (v3_sampling_check(&o->sampling, &e2)) return v3_errf(err, V3_EINVAL, "rollout: %s", e2.msg);
    NEED(o->max_seqs >= 1, "rollout.max_seqs: %lld (want >= 1)", (long long)o->max_seqs);
    NEED(o->max_live_tokens >= o->seq_len, "rollout.max_live_tokens (%lld) must hold one sequence "
         "(data.seq_len %lld)", (long long)o->max_live_tokens, (long long)o->seq_len);
    NEED(o->dynamic_max_rounds >= 0 && o->dynamic_max_rounds <= 16,
         "rollout.dynamic_max_rounds: %d (want 0..16)", o->dynamic_max_rounds);
    NEED(o->steps >= 1, "train.steps: %lld (want >= 1)", (long long)o->steps);
    NEED(o->mu >= 1, "grpo.mu: %d (want >= 1)", o->mu);
    NEED(o->mini_batches >= 1, "grpo.mini_batches: %d (want >= 1)", o->mini_batches);
    NEED(o->loss.eps_low >= 0 && o->loss.eps_low < 1, "grpo.eps_low: %g (want 0 <= x < 1)", o->loss.eps_low);
    NEED(o->loss.eps_high >= 0, "grpo.eps_high: %g (want >= 0)", o->loss.eps_high);
    NEED(o->loss.delta >= 0, "grpo.delta: %g (want >= 0)", o->loss.delta);
    NEED(o->loss.beta >= 0 && isfinite(o->loss.beta), "grpo.beta: %g (want >= 0)", o->loss.beta);
    NEED(o->n_rewards >= 1 && o->n_rewards <= V3_REWARD_MAX_FUNCS, "rewards: %d modules (want 1..%d)",
         o->n_rewards, V3_REWARD_MAX_FUNCS);
    for (int i = 0; i < o->n_rewards; i++) {
        const v3_grpo_reward *r = &o->rewards[i];
        int k = (r->script != NULL) + (r->builtin != NULL) + (r->source != NULL);
        NEED(k == 1, "rewards[%d]: give exactly one of script, builtin, source", i + 1);
        NEED(!r->has_weight || isfinite(r->weight), "rewards[%d].weight: not finite", i + 1);
        NEED(!r->source || (r->name && *r->name), "rewards[%d]: an inline source needs a name", i + 1);
    }
    NEED(o->reward_workers >= 1, "reward.workers: %d (want >= 1)", o->reward_workers);
    NEED(o->reward_timeout_ms >= 1, "reward.timeout_ms: %lld (want >= 1)", (long long)o->reward_timeout_ms);
    NEED(o->eval_every >= 0 && o->eval_prompts >= 0 && o->eval_samples >= 1,
         "eval.every / eval.prompts >= 0 and eval.samples >= 1");
    NEED(o->eval_temperature >= 0, "eval.temperature: %g (want >= 0)", (double)o->eval_temperature);
    NEED(o->ckpt_every >= 0 && o->ckpt_keep >= 0, "ckpt.every, ckpt.keep: want >= 0");
    NEED(o->clip >= 0, "optim.clip_grad_norm: %g (want >= 0)", o->clip);
    NEED(o->sched.lr >= 0 && o->sched.warmup >= 0, "optim.lr and sched.warmup_steps: want >= 0");
#undef NEED
    return V3_OK;
}

/* ---- from the Lua config ---- */

static int str_list(const v3_cfg *c, const char *key, const char ***out, int *n, v3_err *err) {
    size_t len = 0;
    int rc = v3_cfg_get_list_len(c, key, &len, err);
    if (rc) return rc;
    *out = calloc(len + 1, sizeof **out);
    if (!*out) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (size_t i = 0; i < len; i++)
        if ((rc = v3_cfg_get_list_string(c, key, i, &(*out)[i], err))) return rc;
    *n = (int)len;
    return V3_OK;
}

/* rewards = { "x.lua", {script = ...} | {builtin = ...} | {source = ...}, ... } */
static int rewards_list(const v3_cfg *c, v3_grpo_opts *o, v3_grpo_cfg_hold *h, v3_err *err) {
    const json_t *j = NULL;
    int rc = v3_cfg_get_json(c, "rewards", &j, err);
    if (rc) return rc;
    size_t n = json_is_array(j) ? json_array_size(j) : 0;
    if (!json_is_array(j) && !json_is_object(j))
        return v3_errf(err, V3_EINVAL, "rewards: expected a list of reward modules");
    if (json_is_object(j) && json_object_size(j) > 0)
        return v3_errf(err, V3_EINVAL, "rewards: expected a list { {...}, {...} }, found a table with keys");
    h->rewards = calloc(n + 1, sizeof *h->rewards);
    if (!h->rewards) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(j, i);
        v3_grpo_reward *r = &h->rewards[i];
        if (json_is_string(e)) {
            r->script = json_string_value(e);
            continue;
        }
        if (!json_is_object(e))
            return v3_errf(err, V3_EINVAL, "rewards[%zu]: expected a file name or a table", i + 1);
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)e, k, v) {
            if (!strcmp(k, "weight")) {
                if (!json_is_number(v)) return v3_errf(err, V3_EINVAL, "rewards[%zu].weight: expected a number", i + 1);
                r->weight = json_number_value(v);
                r->has_weight = 1;
                continue;
            }
            const char **dst = !strcmp(k, "script") ? &r->script : !strcmp(k, "builtin") ? &r->builtin
                             : !strcmp(k, "source") ? &r->source : !strcmp(k, "name") ? &r->name : NULL;
            if (!dst)
                return v3_errf(err, V3_EINVAL, "rewards[%zu]: unknown key '%s' (script, builtin, source, "
                               "name, weight)", i + 1, k);
            if (!json_is_string(v) || !*json_string_value(v))
                return v3_errf(err, V3_EINVAL, "rewards[%zu].%s: expected a non-empty string", i + 1, k);
            *dst = json_string_value(v);
        }
    }
    o->rewards = h->rewards;
    o->n_rewards = (int)n;
    return V3_OK;
}

int v3_grpo_opts_from_cfg(const v3_cfg *c, v3_grpo_opts *o, v3_grpo_cfg_hold *h, v3_err *err) {
    memset(h, 0, sizeof *h);
    int rc = 0, b = 0;
    double d;
    int64_t i;
    const char *s;
#define GETS(key, dst) if (!rc) rc = v3_cfg_get_string(c, key, &(dst), err)
#define GETI(key, dst) if (!rc && !(rc = v3_cfg_get_int(c, key, &i, err))) (dst) = i
#define GETD(key, dst) if (!rc && !(rc = v3_cfg_get_number(c, key, &d, err))) (dst) = d
#define GETB(key, dst) if (!rc && !(rc = v3_cfg_get_bool(c, key, &b, err))) (dst) = b
    GETS("model.dir", o->model_dir);
    GETS("run.dir", o->run_dir);
    GETS("device", o->device);
    GETS("math", o->math);
    GETI("train.seed", o->seed);
    GETI("train.threads", o->threads);
    GETI("train.log_every", o->log_every);
    GETI("train.steps", o->steps);
    GETI("train.micro_batch_tokens", o->micro_batch_tokens);
    GETD("data.eval_fraction", o->eval_fraction);
    GETS("data.prompt_field", o->prompt_field);
    GETB("data.chat", o->chat);
    GETS("data.template", o->template_name);
    GETS("data.system_prompt", o->system_prompt);
    GETI("data.seq_len", o->seq_len);
    GETI("rollout.group_size", o->group_size);
    GETI("rollout.prompts_per_step", o->prompts_per_step);
    GETI("rollout.max_new_tokens", o->max_new_tokens);
    GETD("rollout.temperature", o->sampling.temperature);
    GETD("rollout.top_p", o->sampling.top_p);
    GETI("rollout.top_k", o->sampling.top_k);
    GETD("rollout.min_p", o->sampling.min_p);
    GETI("rollout.max_live_tokens", o->max_live_tokens);
    GETI("rollout.max_seqs", o->max_seqs);
    GETB("rollout.dynamic_sampling", o->dynamic_sampling);
    GETB("rollout.pack_weights", o->pack_weights);
    GETI("rollout.dynamic_max_rounds", o->dynamic_max_rounds);
    GETI("grpo.mu", o->mu);
    GETI("grpo.mini_batches", o->mini_batches);
    if (!rc && !(rc = v3_cfg_get_string(c, "grpo.loss_type", &s, err))) rc = v3_grpo_loss_type_parse(s, &o->loss.type, err);
    GETD("grpo.eps_low", o->loss.eps_low);
    GETD("grpo.eps_high", o->loss.eps_high);
    GETD("grpo.delta", o->loss.delta);
    GETD("grpo.beta", o->loss.beta);
    GETS("grpo.ref_model", o->ref_dir);
    if (!rc && !(rc = v3_cfg_get_string(c, "grpo.scale_rewards", &s, err))) rc = v3_grpo_scale_parse(s, &o->scale, err);
    if (!rc && !(rc = v3_cfg_get_string(c, "grpo.reward_aggregation", &s, err))) rc = v3_grpo_agg_parse(s, &o->agg, err);
    if (!rc && !(rc = v3_cfg_get_string(c, "grpo.importance_sampling_level", &s, err)))
        rc = v3_grpo_is_level_parse(s, &o->loss.is_level, err);
    GETB("grpo.mask_truncated", o->mask_truncated);
    GETB("grpo.check_all_logprobs", o->check_all_logprobs);
    GETI("reward.workers", o->reward_workers);
    GETI("reward.timeout_ms", o->reward_timeout_ms);
    GETD("reward.fallback", o->reward_fallback);
    GETI("eval.every", o->eval_every);
    GETI("eval.prompts", o->eval_prompts);
    GETI("eval.samples", o->eval_samples);
    GETD("eval.temperature", o->eval_temperature);
    if (!rc) rc = v3_optim_from_cfg(c, &o->adamw, &o->sched, &o->clip, err);
    GETD("moe.router_bias_gamma", o->router_gamma);
    GETD("moe.balance_alpha", o->balance_alpha);
    if (!rc && !(rc = v3_cfg_get_number(c, "moe.mtp_lambda", &d, err)) && d != 0)
        rc = v3_errf(err, V3_EINVAL, "moe.mtp_lambda: GRPO does not train the MTP module (set 0)");
    GETI("ckpt.every", o->ckpt_every);
    GETI("ckpt.keep", o->ckpt_keep);
    if (!rc && !(rc = v3_cfg_get_string(c, "ckpt.dtype", &s, err))) o->ckpt_dtype = !strcmp(s, "bf16") ? V3_BF16 : V3_F32;
    GETI("guard.max_bad_steps", o->guard_max_bad);
    GETD("guard.outlier_z", o->guard_z);
    GETI("guard.window", o->guard_window);
#undef GETS
#undef GETI
#undef GETD
#undef GETB
    if (!rc) rc = str_list(c, "data.prompts", &h->prompts, &o->n_prompts, err);
    if (!rc) rc = str_list(c, "data.eval", &h->eval, &o->n_eval, err);
    if (!rc) rc = str_list(c, "rollout.stop", &h->stop, &o->n_stop, err);
    if (!rc) rc = str_list(c, "reward.dirs", &h->dirs, &o->n_reward_dirs, err);
    if (!rc) rc = rewards_list(c, o, h, err);
    o->prompts = h->prompts;
    o->eval = h->eval;
    o->stop = h->stop;
    o->reward_dirs = h->dirs;
    if (o->ref_dir && !*o->ref_dir) o->ref_dir = NULL;
    if (o->system_prompt && !*o->system_prompt) o->system_prompt = NULL;
    return rc;
}

void v3_grpo_cfg_hold_free(v3_grpo_cfg_hold *h) {
    free(h->prompts);
    free(h->eval);
    free(h->stop);
    free(h->dirs);
    free(h->rewards);
    memset(h, 0, sizeof *h);
}
