/* grpo.c — the GRPO loop (see grpo.h): setup, steps, evaluation, checkpoints, teardown. The parts
 * live in grpo_*.c (grpo_internal.h lists them). */
#include "trainer/grpo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "datasets/tokenizer.h"
#include "common/progress.h"
#include "common/rng.h"
#include "model/config.h"
#include "trainer/grpo_internal.h"

static int make_ctx(grpo *g, v3_err *err) {
    int rc = v3_kctx_open(&g->ctx, g->o->device, g->o->math, g->o->threads, err);
    g->have_ctx = !rc;
    return rc;
}

static void grpo_free(grpo *g) {
    if (g->have_eng) v3_engine_free(&g->eng);
    v3_reward_host_free(g->host);
    if (g->load_step) {
        for (int l = 0; l < g->m.n_layers_total; l++) free(g->load_step[l]);
        free(g->load_step);
    }
    free(g->b_tok), free(g->b_tgt), free(g->b_pos), free(g->b_ds), free(g->b_loss), free(g->b_w);
    free(g->order);
    grpo_prompts_free(&g->train);
    grpo_prompts_free(&g->eval);
    if (g->have_opt) v3_optim_free(&g->opt);
    if (g->have_ref) v3_model_free(&g->ref);
    if (g->have_model) v3_model_free(&g->m);
    if (g->have_ctx) v3_kctx_free(&g->ctx);
    v3_tok_free(g->tok);
}

static int last_run_id(void *ud, const v3_store_run_summary *r) {
    *(int64_t *)ud = r->id;
    return 0;
}

static int open_store(grpo *g, int resuming, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    char p[4200];
    snprintf(p, sizeof p, "%s/run.db", o->run_dir);
    int64_t prev = 0, run_id = 0;
    v3_err e2;
    if (resuming && v3_file_exists(p)) {
        v3_store *rd = NULL;
        if (!v3_store_open(&rd, p, V3_STORE_READ, &e2)) v3_store_list_runs(rd, last_run_id, &prev, &e2);
        v3_store_close(rd, &e2);
    }
    int rc = v3_store_open(&g->store, p, V3_STORE_WRITE | V3_STORE_CREATE, err);
    if (rc) return rc;
    v3_store_run_info ri = {.command = "grpo", .config = o->config_json, .resumed_from = prev};
    return v3_store_run_begin(g->store, &ri, &run_id, err);
}

/* prompts: the train set, the held-out set (files, or a share of the train set) */
static int load_prompts(grpo *g, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int rc = grpo_prompts_load(g, o->prompts, o->n_prompts, &g->train, err);
    if (rc) return rc;
    if (o->n_eval > 0) rc = grpo_prompts_load(g, o->eval, o->n_eval, &g->eval, err);
    else if (o->eval_fraction > 0) rc = grpo_prompts_split(&g->train, &g->eval, o->eval_fraction, o->seed, err);
    if (rc) return rc;
    if (g->train.n == 0)
        return v3_errf(err, V3_EINVAL, "data.prompts: no usable prompt in %s%s (%lld rows skipped as bad, "
                       "%lld as longer than data.seq_len allows)", o->prompts[0], o->n_prompts > 1 ? " ..." : "",
                       (long long)g->train.n_bad, (long long)g->train.n_long);
    grpo_prompts_sha(&g->train, g->prompts_sha);
    if (o->log)
        fprintf(o->log, "prompts: %lld for training (%lld skipped: %lld bad, %lld too long), %lld held out\n",
                (long long)g->train.n, (long long)(g->train.n_bad + g->train.n_long), (long long)g->train.n_bad,
                (long long)g->train.n_long, (long long)g->eval.n);
    return V3_OK;
}

static int load_models(grpo *g, const char *ck_path, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int rc = make_ctx(g, err);
    if (rc) return rc;
    v3_model_options mo = v3_model_default_options();
    mo.training = 1;
    mo.absorb = 1; /* the engine's arithmetic: trainer logprobs equal the sampler's */
    mo.balance_alpha = o->balance_alpha;
    if ((rc = v3_model_init(&g->m, &g->cfg, &g->ctx, o->micro_batch_tokens, &mo, err))) return rc;
    g->have_model = 1;
    if ((rc = v3_model_load(&g->m, ck_path ? ck_path : o->model_dir, err))) return rc;
    if (o->loss.beta != 0) {
        const char *rd = o->ref_dir ? o->ref_dir : o->model_dir;
        char p[4200];
        v3_config rc_cfg;
        snprintf(p, sizeof p, "%s/config.json", rd);
        if ((rc = v3_config_load(&rc_cfg, p, err))) return v3_err_prefix(err, "grpo.ref_model");
        v3_model_options ro = v3_model_default_options();
        ro.training = 0;
        ro.absorb = 1;
        if ((rc = v3_model_init(&g->ref, &rc_cfg, &g->ctx, o->micro_batch_tokens, &ro, err))) return rc;
        g->have_ref = 1;
        if (g->ref.cfg.vocab_size != g->cfg.vocab_size)
            return v3_errf(err, V3_EINVAL, "grpo.ref_model: vocabulary %lld, the policy's %lld",
                           (long long)g->ref.cfg.vocab_size, (long long)g->cfg.vocab_size);
        if ((rc = v3_model_load(&g->ref, rd, err))) return v3_err_prefix(err, "grpo.ref_model");
        if ((rc = grpo_model_sha(&g->ref, g->ref_sha, err))) return rc;
    }
    if ((rc = v3_optim_init(&g->opt, &g->ctx, &g->m.table, &o->adamw, err))) return rc;
    g->have_opt = 1;
    v3_engine_options eo = v3_engine_default_options();
    eo.max_live_tokens = o->max_live_tokens;
    eo.max_seqs = o->max_seqs;
    eo.pack_weights = o->pack_weights;
    eo.tok = o->n_stop > 0 ? g->tok : NULL; /* stop strings need it; else grpo_completion_text */
    if ((rc = v3_engine_init(&g->eng, &g->m, &eo, err))) return rc;
    g->have_eng = 1;
    size_t T = (size_t)o->micro_batch_tokens;
    g->b_tok = malloc(T * sizeof(int32_t));
    g->b_tgt = malloc(T * sizeof(int32_t));
    g->b_pos = malloc(T * sizeof(int32_t));
    g->b_ds = malloc(T * sizeof(int32_t));
    g->b_loss = malloc(T * sizeof(float));
    g->b_w = malloc(T * sizeof(float));
    g->load_step = calloc((size_t)g->m.n_layers_total, sizeof *g->load_step);
    if (!g->b_tok || !g->b_tgt || !g->b_pos || !g->b_ds || !g->b_loss || !g->b_w || !g->load_step)
        return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int l = 0; l < g->m.n_layers_total; l++)
        if (v3_model_expert_load(&g->m, l) &&
            !(g->load_step[l] = calloc((size_t)g->cfg.n_routed_experts, sizeof(int64_t))))
            return v3_errf(err, V3_ENOMEM, "out of memory");
    return V3_OK;
}

static int setup(grpo *g, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int rc = v3_grpo_opts_check(o, err);
    if (rc) return rc;
    if ((rc = v3_mkdirs(o->run_dir, err))) return rc;
    int64_t ck_step = -1;
    char ck_path[4200], p[4400];
    v3_err e2;
    int have_ck = !v3_ckpt_latest(o->run_dir, &ck_step, ck_path, sizeof ck_path, &e2);
    if (have_ck && !o->resume)
        return v3_errf(err, V3_EINVAL, "%s already holds checkpoints (latest step-%lld): pass --resume to "
                       "continue it, or choose another run.dir", o->run_dir, (long long)ck_step);
    if (o->config_lua) {
        snprintf(p, sizeof p, "%s/config.lua", o->run_dir);
        FILE *f = fopen(p, "w");
        if (f) {
            fputs(o->config_lua, f);
            fclose(f);
        }
    }
    /* the store first, so that a run failing from here on is recorded with its reason */
    if ((rc = open_store(g, have_ck, err))) return rc;
    snprintf(p, sizeof p, "%s/config.json", o->model_dir);
    if ((rc = v3_config_load(&g->cfg, p, err))) return rc;
    if (o->seq_len > g->cfg.max_position_embeddings)
        return v3_errf(err, V3_EINVAL, "data.seq_len %lld exceeds the model's max_position_embeddings %lld",
                       (long long)o->seq_len, (long long)g->cfg.max_position_embeddings);
    const char *td = v3_tok_find_dir(o->tokenizer_dir, o->model_dir, g->tok_dir, sizeof g->tok_dir);
    if ((rc = v3_tok_load(&g->tok, td, err))) return rc;
    if (td != g->tok_dir) snprintf(g->tok_dir, sizeof g->tok_dir, "%s", td);
    g->n_stop_ids = 0;
    int32_t eos = v3_tok_eos_id(g->tok);
    if (eos >= 0) g->stop_ids[g->n_stop_ids++] = eos;
    if (g->cfg.eos_token_id >= 0 && g->cfg.eos_token_id != eos) g->stop_ids[g->n_stop_ids++] = (int32_t)g->cfg.eos_token_id;
    if ((rc = load_prompts(g, err))) return rc;
    /* reward workers are forked before the model is allocated: cheap forks, meaningful limits */
    if ((rc = grpo_rewards_init(g, err))) return rc;
    if ((rc = load_models(g, have_ck ? ck_path : NULL, err))) return rc;

    memset(&g->st, 0, sizeof g->st);
    g->st.cursor = (v3_pack_cursor){.seed = o->seed, .epoch = 0, .next = 0};
    v3_rng_seed(&g->st.rng, o->seed);
    v3_guard_init(&g->st.guard, o->guard_z, o->guard_window, o->guard_max_bad);
    if (have_ck) {
        if ((rc = grpo_ckpt_restore(g, ck_path, err))) return rc;
        if (o->log) fprintf(o->log, "resuming from %s (step %lld)\n", ck_path, (long long)g->st.step);
    }
    g->total_steps = o->steps;
    g->updates_per_step = (int64_t)o->mu * o->mini_batches;
    g->sched = o->sched;
    g->sched.total_steps = g->total_steps * g->updates_per_step;
    if (o->log)
        fprintf(o->log,
                "grpo: %s, %lld steps x %d prompts x %d samples, %lld new tokens at T=%g, loss %s, eps "
                "%g/%g, beta %g%s, mu %d x %d mini-batches, lr %g %s, device %s%s%s\n",
                o->model_dir, (long long)g->total_steps, o->prompts_per_step, o->group_size,
                (long long)o->max_new_tokens, (double)o->sampling.temperature,
                v3_grpo_loss_type_name(o->loss.type), o->loss.eps_low, o->loss.eps_high, o->loss.beta,
                o->dynamic_sampling ? ", dynamic sampling" : "", o->mu, o->mini_batches, o->sched.lr,
                v3_schedule_kind_name(o->sched.kind), g->ctx.be->name,
                g->ctx.be->host_visible ? "" : ", math ",
                g->ctx.be->host_visible ? "" : v3_math_name(g->ctx.math));
    return V3_OK;
}

static double metric(const grpo_metrics *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], name)) return m->vals[i];
    return NAN;
}

static void fmt_eta(char *buf, size_t n, double sec) {
    if (!isfinite(sec) || sec < 0) sec = 0;
    long t = (long)(sec + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static void log_step(grpo *g, const grpo_metrics *mt, const grpo_update_stats *us, double eta) {
    const v3_grpo_opts *o = g->o;
    char etab[32];
    fmt_eta(etab, sizeof etab, eta);
    fprintf(o->log, "step %lld/%lld reward %.4f", (long long)g->st.step, (long long)g->total_steps,
            metric(mt, "reward"));
    if (g->acc_func >= 0) fprintf(o->log, " acc %.4f", metric(mt, "accuracy"));
    fprintf(o->log, " loss %.5f", us->n_updates ? us->loss : NAN);
    if (o->loss.beta != 0) fprintf(o->log, " kl %.5f", metric(mt, "kl"));
    fprintf(o->log, " clip %.3f len %.1f zero_std %.2f gap %.3g | rollout %.1fs reward %.1fs train %.1fs | "
            "%.0f tok/s | eta %s\n", metric(mt, "clip_ratio/region_mean"), metric(mt, "completions/mean_length"),
            metric(mt, "frac_reward_zero_std"), metric(mt, "logprob_gap/max"), metric(mt, "time/rollout_s"),
            metric(mt, "time/reward_s"), metric(mt, "time/train_s"), metric(mt, "tokens_per_s"), etab);
}

/* One GRPO step: rollout, rewards, update, records. */
static int step(grpo *g, double *dt_out, v3_err *err) {
    int64_t s = g->st.step + 1;
    double t0 = v3_now();
    grpo_batch b = {0};
    grpo_update_stats us = {0};
    us.lr = NAN;
    grpo_metrics mt = {0};
    for (int l = 0; l < g->m.n_layers_total; l++)
        if (g->load_step[l]) memset(g->load_step[l], 0, (size_t)g->cfg.n_routed_experts * sizeof(int64_t));
    int rc = grpo_rollout(g, s, &b, err);
    if (!rc) rc = grpo_update(g, s, &b, &us, err);
    if (!rc) {
        g->st.step = s;
        g->st.tokens += us.tokens;
        double dt = v3_now() - t0;
        if (grpo_step_metrics(g, &b, &us, dt, &mt)) rc = v3_errf(err, V3_ENOMEM, "metrics: out of memory");
        if (!rc) rc = grpo_record_step(g, s, &b, &us, dt, &mt, err);
        *dt_out = dt;
    }
    if (!rc && g->o->log &&
        (g->st.step % (g->o->log_every > 0 ? g->o->log_every : 1) == 0 || g->st.step == g->total_steps)) {
        log_step(g, &mt, &us, (double)(g->total_steps - g->st.step) * *dt_out);
    }
    grpo_metrics_free(&mt);
    grpo_batch_free(&b);
    return rc;
}

int v3_grpo_run(const v3_grpo_opts *o, v3_err *err) {
    grpo *g = calloc(1, sizeof *g);
    if (!g) return v3_errf(err, V3_ENOMEM, "out of memory");
    g->o = o;
    int rc = setup(g, err);
    double t_start = v3_now();
    int64_t step0 = g->st.step, done_here = 0;
    int stopped = 0, eval_on = !rc && o->eval_every > 0 && g->eval.n > 0;
    if (!rc && eval_on && g->st.step == 0) rc = grpo_evaluate(g, 0, err);
    while (!rc && g->st.step < g->total_steps) {
        double dt = 0;
        if ((rc = step(g, &dt, err))) break;
        done_here++;
        int last = g->st.step == g->total_steps;
        stopped = (o->stop_flag && *o->stop_flag) || (o->stop_after > 0 && done_here >= o->stop_after);
        if (eval_on && (g->st.step % o->eval_every == 0 || last) && (rc = grpo_evaluate(g, g->st.step, err))) break;
        if ((o->ckpt_every > 0 && g->st.step % o->ckpt_every == 0) || last || stopped) {
            if ((rc = grpo_ckpt_write(g, err))) break;
            if (o->log) fprintf(o->log, "checkpoint step-%lld\n", (long long)g->st.step);
        }
        if (stopped && !last) break;
        stopped = 0;
    }
    if (g->store) {
        v3_err e2;
        char msg[128];
        snprintf(msg, sizeof msg, "stopped on request after step %lld (checkpointed)", (long long)g->st.step);
        int erc = v3_store_run_end(g->store, rc ? "failed" : stopped ? "interrupted" : "completed",
                                   rc ? err->msg : stopped ? msg : NULL, &e2);
        int crc = v3_store_close(g->store, &e2);
        if (!rc && (erc || crc)) rc = v3_errf(err, erc ? erc : crc, "%s", e2.msg);
    }
    if (!rc && o->log)
        fprintf(o->log, "%s: %lld steps (%lld here), %lld tokens trained, %.1fs; checkpoints in %s\n",
                stopped ? "stopped" : "done", (long long)g->st.step, (long long)(g->st.step - step0),
                (long long)g->st.tokens, v3_now() - t_start, o->run_dir);
    grpo_free(g);
    free(g);
    return rc;
}
