/* grpo_record.c — what a GRPO step leaves in run.db: its metrics (named as TRL logs them where
 * TRL has one) and, in the same atomic store batch, every prompt, sample and reward. Metric
 * definitions: docs/grpo.md "Metrics". Reward metrics cover every completion the step generated
 * (dropped groups included: they measure the policy); the loss metrics cover the updates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/grpo_internal.h"

int grpo_metrics_add(grpo_metrics *m, const char *name, double v) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 32;
        char **nn = realloc(m->names, (size_t)cap * sizeof *nn);
        if (nn) m->names = nn;
        double *nv = realloc(m->vals, (size_t)cap * sizeof *nv);
        if (nv) m->vals = nv;
        if (!nn || !nv) return V3_ENOMEM;
        m->cap = cap;
    }
    if (!(m->names[m->n] = strdup(name))) return V3_ENOMEM;
    m->vals[m->n++] = v;
    return V3_OK;
}

void grpo_metrics_free(grpo_metrics *m) {
    for (int i = 0; i < m->n; i++) free(m->names[i]);
    free(m->names);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static double ratio_or_nan(double a, double b) { return b > 0 ? a / b : NAN; }

int grpo_step_metrics(grpo *g, const grpo_batch *b, const grpo_update_stats *us, double step_s,
                      grpo_metrics *mt) {
    int rc = 0;
    int64_t n = b->n;
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    if (!x) return V3_ENOMEM;
    double mean, sd;
#define ADD(name, v) if (!rc) rc = grpo_metrics_add(mt, name, v)
    for (int64_t i = 0; i < n; i++) x[i] = b->s[i].reward;
    v3_grpo_nanmean_std(x, n, 1, &mean, &sd);
    ADD("reward", mean);
    ADD("reward_std", sd);
    for (int f = 0; f < g->n_func; f++) {
        char name[200];
        v3_grpo_nanmean_std(b->scores + f, n, g->n_func, &mean, &sd);
        snprintf(name, sizeof name, "rewards/%s/mean", v3_reward_host_func(g->host, f)->name);
        ADD(name, mean);
        snprintf(name, sizeof name, "rewards/%s/std", v3_reward_host_func(g->host, f)->name);
        ADD(name, sd);
        if (f == g->acc_func) ADD("accuracy", mean);
    }
    int64_t errors = 0, unscorable = 0, trunc = 0, len_max = 0, len_min = n ? INT64_MAX : 0, toks = 0;
    double ent = 0;
    for (int64_t i = 0; i < n; i++) {
        const grpo_sample *s = &b->s[i];
        errors += s->r->n_errors;
        unscorable += isnan(s->reward);
        trunc += s->truncated;
        if (s->o->n > len_max) len_max = s->o->n;
        if (s->o->n < len_min) len_min = s->o->n;
        toks += s->o->n;
        for (int64_t j = 0; s->o->entropy && j < s->o->n; j++) ent += s->o->entropy[j];
    }
    ADD("reward_errors", (double)errors);
    ADD("frac_unscorable", ratio_or_nan((double)unscorable, (double)n));
    ADD("frac_reward_zero_std", ratio_or_nan((double)b->n_zero_std, (double)b->n_groups));
    ADD("frac_no_signal", ratio_or_nan((double)b->n_no_signal, (double)b->n_groups));
    ADD("entropy", ratio_or_nan(ent, (double)toks));
    ADD("completions/mean_length", ratio_or_nan((double)toks, (double)n));
    ADD("completions/max_length", (double)len_max);
    ADD("completions/min_length", (double)len_min);
    ADD("completions/clipped_ratio", ratio_or_nan((double)trunc, (double)n));
    const v3_grpo_loss_metrics *lm = &us->lm;
    ADD("kl", ratio_or_nan(lm->sum_kl, (double)lm->count_kl));
    ADD("clip_ratio/low_mean", ratio_or_nan(lm->sum_clip_low, (double)lm->count));
    ADD("clip_ratio/high_mean", ratio_or_nan(lm->sum_clip_high, (double)lm->count));
    ADD("clip_ratio/region_mean", ratio_or_nan(lm->sum_clip_region, (double)lm->count));
    ADD("ratio/mean", ratio_or_nan(lm->sum_ratio, (double)lm->count_ratio));
    ADD("ratio/min", lm->count_ratio ? lm->ratio_min : NAN);
    ADD("ratio/max", lm->count_ratio ? lm->ratio_max : NAN);
    ADD("logprob_gap/max", us->gap_tokens ? us->gap_max : NAN);
    ADD("logprob_gap/tokens", (double)us->gap_tokens);
    ADD("num_items", (double)us->active_tokens);
    ADD("dynamic/rounds", (double)b->n_rounds);
    ADD("dynamic/groups", (double)b->n_groups);
    ADD("dynamic/groups_kept", (double)b->n_kept_groups);
    ADD("updates", (double)us->n_updates);
    ADD("updates/skipped", (double)us->n_skipped);
    ADD("time/rollout_s", b->t_rollout);
    ADD("time/reward_s", b->t_reward);
    ADD("time/train_s", us->t_train);
    ADD("time/ref_s", g->o->loss.beta != 0 ? us->t_ref : NAN);
    ADD("time/step_s", step_s);
    ADD("tokens_per_s", ratio_or_nan((double)b->gen_tokens, step_s));
    ADD("tokens_per_s/rollout", ratio_or_nan((double)b->gen_tokens, b->t_rollout));
    ADD("tokens_per_s/train", ratio_or_nan((double)us->tokens, us->t_train));
    ADD("data/prompts_skipped", (double)(g->train.n_bad + g->train.n_long));
    ADD("data/epoch", (double)g->st.cursor.epoch);
#undef ADD
    free(x);
    return rc;
}

static int add_sample(grpo *g, v3_store_batch *bt, int64_t step, const grpo_sample *s, int64_t prompt_id,
                      v3_err *err) {
    const v3_gen_output *o = s->o;
    uint32_t *ids = malloc((size_t)(o->n ? o->n : 1) * sizeof *ids);
    if (!ids) return v3_errf(err, V3_ENOMEM, "record: out of memory");
    for (int64_t t = 0; t < o->n; t++) ids[t] = (uint32_t)o->ids[t];
    v3_store_sample sm = {0};
    sm.step = step;
    sm.prompt_id = prompt_id;
    sm.group_id = s->group;
    sm.group_index = s->index;
    sm.completion = s->text ? s->text : "";
    sm.n_tokens = (int32_t)o->n;
    sm.token_ids = ids;
    sm.logprobs = o->logprob_temp;
    sm.trainer_logprobs = s->lp;
    sm.ref_logprobs = s->ref;
    sm.finish_reason = v3_finish_name(o->finish);
    sm.prompt_tokens = (int32_t)g->train.p[s->prompt].n;
    sm.policy_version = step - 1;
    sm.seed = s->seed;
    sm.reward = s->reward;
    sm.advantage = s->adv;
    int64_t sid = 0;
    int rc = v3_store_batch_add_sample(bt, &sm, &sid, err);
    free(ids);
    for (int f = 0; f < g->n_func && !rc; f++) {
        const v3_reward_value *v = &s->r->values[f];
        const v3_reward_func_info *fi = v3_reward_host_func(g->host, f);
        v3_store_reward rw = {.sample_id = sid, .name = fi->name, .score = v->score, .weight = fi->weight,
                              .error = v->error, .extra_json = v->extra_json, .script_hash = fi->sha256,
                              .elapsed_ms = v->elapsed_ms};
        rc = v3_store_batch_add_reward(bt, &rw, err);
    }
    return rc;
}

int grpo_record_step(grpo *g, int64_t step, const grpo_batch *b, const grpo_update_stats *us, double step_s,
                     const grpo_metrics *mt, v3_err *err) {
    v3_store_batch *bt = NULL;
    int rc = v3_store_batch_new(g->store, &bt, err);
    if (rc) return rc;
    int64_t prompt_id = 0, last = -1;
    for (int64_t i = 0; i < b->n && !rc; i++) {
        const grpo_sample *s = &b->s[i];
        if (s->group != last) { /* a group's samples are adjacent; the store dedups prompts */
            const grpo_prompt *p = &g->train.p[s->prompt];
            v3_store_prompt sp = {p->text, p->messages, p->fields, p->file, p->line};
            rc = v3_store_batch_add_prompt(bt, &sp, &prompt_id, err);
            last = s->group;
        }
        if (!rc) rc = add_sample(g, bt, step, s, prompt_id, err);
    }
    v3_store_step row = {.step = step, .loss = us->n_updates ? us->loss : NAN, .lr = us->lr,
                         .grad_norm = us->n_updates ? us->grad_norm : NAN, .tokens = us->tokens,
                         .step_time_s = step_s, .n_metrics = mt->n,
                         .metric_names = (const char *const *)mt->names, .metric_values = mt->vals};
    if (!rc) rc = v3_store_batch_add_step(bt, &row, err);
    for (int l = 0; l < g->m.n_layers_total && !rc; l++)
        if (g->load_step[l])
            rc = v3_store_batch_add_expert_load(bt, step, l, g->m.cfg.n_routed_experts, g->load_step[l], err);
    if (rc) {
        v3_store_batch_free(bt);
        return rc;
    }
    return v3_store_submit(g->store, bt, NULL, err);
}
