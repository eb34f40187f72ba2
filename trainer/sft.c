/* sft.c — the SFT training loop (see sft.h). Everything is allocated before the first step; the
 * step loop itself only reuses buffers. */
#include "trainer/sft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/progress.h"
#include "common/rng.h"
#include "datasets/pack.h"
#include "datasets/store.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "trainer/ckpt.h"
#include "trainer/guard.h"

void v3_sft_opts_default(v3_sft_opts *o) {
    memset(o, 0, sizeof *o);
    o->eval_fraction = 0.02;
    o->format = "auto";
    o->template_name = "v3";
    o->seq_len = 4096;
    o->micro_batch_tokens = 16384;
    o->grad_accum = 1;
    o->epochs = 1;
    o->eval_every = 200;
    o->seed = 1234;
    o->adamw = v3_adamw_default_opts();
    o->clip = 1.0;
    o->sched = (v3_schedule){.kind = V3_SCHED_COSINE, .lr = 1e-5, .min_lr = 0, .warmup = 100};
    o->ckpt_every = 1000;
    o->ckpt_keep = 3;
    o->ckpt_dtype = V3_F32;
    o->guard_window = 50;
    o->guard_max_bad = 10;
    o->device = "auto";
    o->math = "auto";
    o->tty = -1;
    o->log_every = 10;
}

/* Everything one run owns; freed in one place. */
typedef struct sft {
    const v3_sft_opts *o;
    v3_kctx ctx;
    int have_ctx;
    v3_model m;
    int have_model;
    v3_optim opt;
    int have_opt;
    v3_dataset train, eval;
    int have_train, have_eval;
    v3_packer pk, pk_eval;
    int have_pk, have_pk_eval;
    v3_pack_batch b;
    int32_t *flat_ds;       /* [B*T] doc_start made flat (the packer's is per row) */
    int64_t **load_step;    /* [n_layers_total] expert load of this step (NULL for dense) */
    v3_store *store;
    v3_train_state st;
    int B, T;
    int64_t total_steps;
    v3_schedule sched;      /* o->sched with total_steps filled in */
    int tty;                /* progress drawn as a live line */
    double l_main, l_mtp, l_bal; /* loss components of the last step (means over micro-batches) */
    char tok_dir[4200];
} sft;

static int make_ctx(sft *s, v3_err *err) {
    int rc = v3_kctx_open(&s->ctx, s->o->device, s->o->math, s->o->threads, err);
    s->have_ctx = !rc;
    return rc;
}

/* the packer's per-row doc_start -> indices into the flat B*T batch */
static void flatten(sft *s) {
    for (int r = 0; r < s->B; r++)
        for (int t = 0; t < s->T; t++) {
            int64_t i = (int64_t)r * s->T + t;
            s->flat_ds[i] = s->b.doc_start[i] + r * s->T;
        }
}

static v3_batch as_batch(sft *s) {
    v3_batch b = {.N = (int64_t)s->B * s->T, .tokens = s->b.tokens, .targets = s->b.targets,
                  .positions = s->b.positions, .doc_start = s->flat_ds};
    return b;
}

/* Mean token loss over the eval split (or its first eval_batches micro-batches). */
static int evaluate(sft *s, double *loss_out, int64_t *tokens_out, v3_err *err) {
    v3_pack_cursor c0 = {.seed = s->o->seed, .epoch = 0, .next = 0};
    int rc = v3_packer_seek(&s->pk_eval, &c0, err);
    if (rc) return rc;
    uint64_t n_b = v3_packer_steps_per_epoch(&s->pk_eval) / (uint64_t)s->B;
    if (n_b == 0) n_b = 1;
    if (s->o->eval_batches > 0 && (uint64_t)s->o->eval_batches < n_b) n_b = (uint64_t)s->o->eval_batches;
    double sum = 0;
    int64_t nv = 0;
    for (uint64_t i = 0; i < n_b; i++) {
        if ((rc = v3_packer_next(&s->pk_eval, &s->b, err))) return rc;
        flatten(s);
        v3_batch b = as_batch(s);
        if ((rc = v3_model_forward(&s->m, &b, NULL, err))) return rc;
        sum += s->m.loss_main * (double)s->m.n_valid;
        nv += s->m.n_valid;
    }
    /* eval routing must not steer the router bias: drop the loads it accumulated */
    v3_model_update_router_bias(&s->m, 0.0f);
    *loss_out = nv ? sum / (double)nv : NAN;
    *tokens_out = nv;
    return V3_OK;
}

static void sft_free(sft *s) {
    v3_pack_batch_free(&s->b);
    free(s->flat_ds);
    if (s->load_step) {
        for (int l = 0; l < s->m.n_layers_total; l++) free(s->load_step[l]);
        free(s->load_step);
    }
    if (s->have_pk) v3_packer_free(&s->pk);
    if (s->have_pk_eval) v3_packer_free(&s->pk_eval);
    if (s->have_train) v3_dataset_close(&s->train);
    if (s->have_eval) v3_dataset_close(&s->eval);
    if (s->have_opt) v3_optim_free(&s->opt);
    if (s->have_model) v3_model_free(&s->m);
    if (s->have_ctx) v3_kctx_free(&s->ctx);
}

static int last_run_id(void *ud, const v3_store_run_summary *r) {
    *(int64_t *)ud = r->id;
    return 0;
}

static void fmt_eta(char *buf, size_t n, double sec) {
    if (!isfinite(sec) || sec < 0) sec = 0;
    long t = (long)(sec + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* Opens data, model, optimizer and store; restores a checkpoint under resume. */
static int setup(sft *s, v3_err *err) {
    const v3_sft_opts *o = s->o;
    int rc;
    if (o->seq_len < 2 || o->micro_batch_tokens < o->seq_len || o->grad_accum < 1)
        return v3_errf(err, V3_EINVAL,
                       "data.seq_len (%lld) must be >= 2 and <= data.micro_batch_tokens (%lld); "
                       "data.grad_accum >= 1",
                       (long long)o->seq_len, (long long)o->micro_batch_tokens);
    if ((rc = v3_mkdirs(o->run_dir, err))) return rc;
    int64_t ck_step = -1;
    char ck_path[4200];
    v3_err e2;
    int have_ck = !v3_ckpt_latest(o->run_dir, &ck_step, ck_path, sizeof ck_path, &e2);
    if (have_ck && !o->resume)
        return v3_errf(err, V3_EINVAL,
                       "%s already holds checkpoints (latest step-%lld): pass --resume to continue "
                       "it, or choose another run.dir",
                       o->run_dir, (long long)ck_step);
    if (o->config_lua) {
        char p[4200];
        snprintf(p, sizeof p, "%s/config.lua", o->run_dir);
        FILE *f = fopen(p, "w");
        if (f) {
            fputs(o->config_lua, f);
            fclose(f);
        }
    }

    /* data */
    char train_dir[4200], eval_dir[4200];
    const char *eval_split;
    if ((rc = v3_sft_prepare_data(o, train_dir, sizeof train_dir, eval_dir, sizeof eval_dir,
                                  &eval_split, err)))
        return rc;
    if ((rc = v3_dataset_open(&s->train, train_dir, "train", 0, err))) return rc;
    s->have_train = 1;
    if (s->train.n_docs == 0) return v3_errf(err, V3_EINVAL, "%s: no training documents", train_dir);
    if (eval_dir[0] && o->eval_every > 0) {
        v3_dataset d;
        if (!v3_dataset_open(&d, eval_dir, eval_split, 0, &e2)) {
            if (d.n_docs > 0) {
                s->eval = d;
                s->have_eval = 1;
            } else {
                v3_dataset_close(&d);
            }
        }
    }

    /* model */
    char p[4400];
    v3_config cfg;
    snprintf(p, sizeof p, "%s/config.json", o->model_dir);
    if ((rc = v3_config_load(&cfg, p, err))) return rc;
    if ((rc = make_ctx(s, err))) return rc;
    s->T = (int)o->seq_len;
    s->B = (int)(o->micro_batch_tokens / o->seq_len);
    v3_model_options mo = v3_model_default_options();
    mo.training = 1;
    mo.balance_alpha = o->balance_alpha;
    mo.mtp = o->mtp_lambda > 0 && cfg.num_nextn_predict_layers >= 1;
    mo.mtp_lambda = o->mtp_lambda;
    if ((rc = v3_model_init(&s->m, &cfg, &s->ctx, (int64_t)s->B * s->T, &mo, err))) return rc;
    s->have_model = 1;
    if ((rc = v3_model_load(&s->m, have_ck ? ck_path : o->model_dir, err))) return rc;
    if ((rc = v3_optim_init(&s->opt, &s->ctx, &s->m.table, &o->adamw, err))) return rc;
    s->have_opt = 1;

    /* batches */
    v3_pack_opts po = {.seq_len = o->seq_len, .overlong = V3_OVERLONG_TRUNCATE, .seed = o->seed,
                       .pad_id = (int32_t)(cfg.eos_token_id >= 0 ? cfg.eos_token_id : 1), .rank = 0,
                       .world = 1};
    if ((rc = v3_packer_init(&s->pk, &s->train, &po, err))) return rc;
    s->have_pk = 1;
    if (s->have_eval) {
        if ((rc = v3_packer_init(&s->pk_eval, &s->eval, &po, err))) return rc;
        s->have_pk_eval = 1;
    }
    if ((rc = v3_pack_batch_init(&s->b, s->B, s->T, err))) return rc;
    s->flat_ds = malloc((size_t)s->B * s->T * sizeof *s->flat_ds);
    s->load_step = calloc((size_t)s->m.n_layers_total, sizeof *s->load_step);
    if (!s->flat_ds || !s->load_step) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int l = 0; l < s->m.n_layers_total; l++)
        if (v3_model_expert_load(&s->m, l) &&
            !(s->load_step[l] = calloc((size_t)cfg.n_routed_experts, sizeof(int64_t))))
            return v3_errf(err, V3_ENOMEM, "out of memory");

    uint64_t per_epoch = v3_packer_steps_per_epoch(&s->pk) / ((uint64_t)s->B * (uint64_t)o->grad_accum);
    if (per_epoch == 0) per_epoch = 1;
    s->total_steps = o->steps > 0 ? o->steps : (int64_t)per_epoch * (o->epochs > 0 ? o->epochs : 1);
    s->sched = o->sched;
    s->sched.total_steps = s->total_steps;

    /* state */
    memset(&s->st, 0, sizeof s->st);
    s->st.cursor = s->pk.cur;
    v3_rng_seed(&s->st.rng, o->seed);
    v3_guard_init(&s->st.guard, o->guard_z, o->guard_window, o->guard_max_bad);
    if (have_ck) {
        snprintf(p, sizeof p, "%s/optim.bin", ck_path);
        if ((rc = v3_optim_load(&s->opt, p, err))) return rc;
        snprintf(p, sizeof p, "%s/trainer_state.json", ck_path);
        if ((rc = v3_train_state_load(&s->st, p, err))) return rc;
        if ((rc = v3_packer_seek(&s->pk, &s->st.cursor, err))) return rc;
        if (o->log) fprintf(o->log, "resuming from %s (step %lld)\n", ck_path, (long long)s->st.step);
    }

    /* tokenizer files go into every checkpoint so it is a complete model directory */
    snprintf(s->tok_dir, sizeof s->tok_dir, "%s/tokenizer.json", o->model_dir);
    if (v3_file_exists(s->tok_dir)) snprintf(s->tok_dir, sizeof s->tok_dir, "%s", o->model_dir);
    else if (o->tokenizer_dir) snprintf(s->tok_dir, sizeof s->tok_dir, "%s", o->tokenizer_dir);
    else s->tok_dir[0] = 0;

    /* store */
    snprintf(p, sizeof p, "%s/run.db", o->run_dir);
    int64_t prev = 0, run_id = 0;
    if (have_ck && v3_file_exists(p)) {
        /* the run this one continues: the newest in run.db (read before this run's row exists) */
        v3_store *rd = NULL;
        if (!v3_store_open(&rd, p, V3_STORE_READ, &e2)) v3_store_list_runs(rd, last_run_id, &prev, &e2);
        v3_store_close(rd, &e2);
    }
    if ((rc = v3_store_open(&s->store, p, V3_STORE_WRITE | V3_STORE_CREATE, err))) return rc;
    v3_store_run_info ri = {.command = "sft", .config = o->config_json, .resumed_from = prev};
    if ((rc = v3_store_run_begin(s->store, &ri, &run_id, err))) return rc;
    if (o->log)
        fprintf(o->log,
                "sft: %s, %d x %d tokens per micro-batch, grad_accum %lld, %lld steps (%llu train "
                "docs%s), lr %g %s, device %s%s%s\n",
                o->model_dir, s->B, s->T, (long long)o->grad_accum, (long long)s->total_steps,
                (unsigned long long)s->train.n_docs, s->have_eval ? ", eval on" : "", o->sched.lr,
                v3_schedule_kind_name(o->sched.kind), s->ctx.be->name,
                s->ctx.be->host_visible ? "" : ", math ",
                s->ctx.be->host_visible ? "" : v3_math_name(s->ctx.math));
    if (o->log && (o->router_gamma > 0 || o->balance_alpha > 0 || mo.mtp))
        fprintf(o->log, "moe: router bias gamma %g, balance alpha %g, mtp lambda %g%s\n",
                o->router_gamma, o->balance_alpha, o->mtp_lambda,
                o->mtp_lambda > 0 && !mo.mtp ? " (model has no MTP layer: off)" : "");
    return V3_OK;
}

static int checkpoint(sft *s, v3_err *err) {
    int rc = v3_store_flush(s->store, 1, err);
    int64_t bytes = 0;
    if (!rc) rc = v3_ckpt_write(s->o->run_dir, &s->m, &s->opt, &s->st, s->o->ckpt_dtype,
                                s->tok_dir[0] ? s->tok_dir : NULL, &bytes, err);
    if (rc) return rc;
    char rel[64];
    snprintf(rel, sizeof rel, "step-%lld", (long long)s->st.step);
    v3_store_checkpoint c = {.step = s->st.step, .path = rel, .bytes = bytes};
    if ((rc = v3_store_register_checkpoint(s->store, &c, err))) return rc;
    return v3_ckpt_prune(s->o->run_dir, s->o->ckpt_keep, err);
}

/* One optimizer step: micro-batches, guard, update, logging. */
static int train_step(sft *s, double *loss_out, double *gnorm_out, double *lr_out, int64_t *tok_out,
                      int *skipped, int *stop_out, v3_err *err) {
    const v3_sft_opts *o = s->o;
    int rc;
    int64_t step = s->st.step + 1;
    v3_model_zero_grad(&s->m);
    double loss = 0;
    int64_t ntok = 0;
    s->l_main = s->l_mtp = s->l_bal = 0;
    for (int l = 0; l < s->m.n_layers_total; l++)
        if (s->load_step[l]) memset(s->load_step[l], 0, (size_t)s->m.cfg.n_routed_experts * sizeof(int64_t));
    for (int64_t a = 0; a < o->grad_accum; a++) {
        if ((rc = v3_packer_next(&s->pk, &s->b, err))) return rc;
        flatten(s);
        v3_batch b = as_batch(s);
        double l = 0;
        /* forward + backward at once: the head's gradient comes from the forward's logits */
        if ((rc = v3_model_forward_backward(&s->m, &b, &l, err))) return rc;
        loss += l;
        s->l_main += s->m.loss_main / (double)o->grad_accum;
        s->l_mtp += s->m.loss_mtp / (double)o->grad_accum;
        s->l_bal += s->m.loss_balance / (double)o->grad_accum;
        ntok += s->m.n_valid;
        for (int ly = 0; ly < s->m.n_layers_total; ly++) {
            const int64_t *ld = v3_model_expert_load(&s->m, ly);
            if (ld && s->load_step[ly])
                for (int e = 0; e < s->m.cfg.n_routed_experts; e++) s->load_step[ly][e] += ld[e];
        }
    }
    double ga = (double)o->grad_accum;
    loss /= ga;
    double gnorm = v3_optim_grad_norm(&s->opt, s->m.grads) / ga;
    double lr = v3_schedule_lr(&s->sched, step);
    int stop = 0;
    v3_guard_verdict v = v3_guard_check(&s->st.guard, step, loss, gnorm, &stop, err);
    float coef = 1.0f;
    if (v == V3_GUARD_OK) {
        coef = v3_clip_coef(gnorm, o->clip);
        v3_optim_step(&s->opt, s->m.params, s->m.grads, (float)lr, coef / (float)ga);
        v3_model_weights_changed(&s->m); /* the rollout engine repacks its copies */
        v3_model_update_router_bias(&s->m, o->router_gamma);
    } else {
        v3_model_update_router_bias(&s->m, 0.0f); /* forget this step's loads */
        if (o->log)
            fprintf(o->log, "%sstep %lld skipped: %s (loss %g, grad norm %g)\n", s->tty ? "\n" : "",
                    (long long)step, v3_guard_verdict_name(v), loss, gnorm);
    }
    if ((rc = v3k_check(&s->ctx, err))) return rc;
    s->st.step = step;
    s->st.tokens += ntok;
    s->st.cursor = s->pk.cur;
    *loss_out = loss;
    *gnorm_out = gnorm;
    *lr_out = lr;
    *tok_out = ntok;
    *skipped = v != V3_GUARD_OK;
    *stop_out = stop;
    return V3_OK;
}

int v3_sft_run(const v3_sft_opts *o, v3_err *err) {
    sft s;
    memset(&s, 0, sizeof s);
    s.o = o;
    int rc = setup(&s, err);
    if (rc) {
        if (s.store) {
            v3_err e2;
            v3_store_run_end(s.store, "failed", err->msg, &e2);
            v3_store_close(s.store, &e2);
        }
        sft_free(&s);
        return rc;
    }
    int tty = o->tty;
    if (tty < 0) tty = o->log ? isatty(fileno(o->log)) : 0;
    s.tty = tty;
    double t_start = v3_now();
    int64_t step0 = s.st.step;
    int live = 0; /* a live progress line is on screen (tty) */
    static const char *const names[] = {"loss/main", "loss/mtp", "loss/balance", "tokens_per_s",
                                        "clip_coef", "skipped", "router_gamma"};
    while (s.st.step < s.total_steps) {
        double t0 = v3_now(), loss = NAN, gnorm = NAN, lr = NAN;
        int64_t ntok = 0;
        int skipped = 0, stop = 0;
        rc = train_step(&s, &loss, &gnorm, &lr, &ntok, &skipped, &stop, err);
        if (rc) break;
        double dt = v3_now() - t0;
        double tps = (double)s.B * s.T * (double)o->grad_accum / (dt > 0 ? dt : 1e-9);
        /* run.db: the step, its named metrics and the expert load per MoE layer, one batch */
        double vals[7] = {s.l_main, s.m.opt.mtp ? s.l_mtp : NAN, o->balance_alpha > 0 ? s.l_bal : NAN, tps,
                          skipped ? NAN : (double)v3_clip_coef(gnorm, o->clip), skipped ? 1.0 : NAN,
                          o->router_gamma > 0 ? o->router_gamma : NAN};
        v3_store_step row = {.step = s.st.step, .loss = loss, .lr = lr, .grad_norm = gnorm,
                             .tokens = ntok, .step_time_s = dt, .n_metrics = 7,
                             .metric_names = names, .metric_values = vals};
        v3_store_batch *bt = NULL;
        v3_err e2;
        int src = v3_store_batch_new(s.store, &bt, &e2);
        if (!src) src = v3_store_batch_add_step(bt, &row, &e2);
        for (int l = 0; l < s.m.n_layers_total && !src; l++)
            if (s.load_step[l])
                src = v3_store_batch_add_expert_load(bt, s.st.step, l, s.m.cfg.n_routed_experts,
                                                     s.load_step[l], &e2);
        if (!src) src = v3_store_submit(s.store, bt, NULL, &e2);
        else v3_store_batch_free(bt);
        if (src) {
            rc = v3_errf(err, src, "%s", e2.msg);
            break;
        }
        if (stop) {
            rc = V3_ERANGE; /* the guard's message is in err */
            break;
        }

        /* what the user sees */
        double el = v3_now() - t_start;
        double eta = (double)(s.total_steps - s.st.step) * el / (double)(s.st.step - step0);
        char etab[32];
        fmt_eta(etab, sizeof etab, eta);
        if (o->log && tty) {
            fprintf(o->log, "\r\033[Kstep %lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s",
                    (long long)s.st.step, (long long)s.total_steps, loss, lr, gnorm, tps, etab);
            fflush(o->log);
            live = 1;
        } else if (o->log && (s.st.step % (o->log_every > 0 ? o->log_every : 1) == 0 ||
                              s.st.step == s.total_steps || s.st.step == step0 + 1)) {
            fprintf(o->log, "step %lld/%lld loss %.6f lr %.3e grad_norm %.4f tok/s %.0f eta %s\n",
                    (long long)s.st.step, (long long)s.total_steps, loss, lr, gnorm, tps, etab);
        }

        if (s.have_eval && o->eval_every > 0 &&
            (s.st.step % o->eval_every == 0 || s.st.step == s.total_steps)) {
            double el2;
            int64_t ne;
            if ((rc = evaluate(&s, &el2, &ne, err))) break;
            v3_store_eval ev = {.step = s.st.step, .name = "val/loss", .value = el2, .n_examples = ne};
            if ((rc = v3_store_log_eval(s.store, &ev, err))) break;
            if (o->log)
                fprintf(o->log, "%seval step %lld: val/loss %.6f over %lld tokens\n", live ? "\n" : "",
                        (long long)s.st.step, el2, (long long)ne);
            live = 0;
        }
        if ((o->ckpt_every > 0 && s.st.step % o->ckpt_every == 0) || s.st.step == s.total_steps) {
            if ((rc = checkpoint(&s, err))) break;
            if (o->log && !tty) fprintf(o->log, "checkpoint step-%lld\n", (long long)s.st.step);
        }
    }
    if (o->log && live) fputc('\n', o->log);
    v3_err e2;
    int erc = v3_store_run_end(s.store, rc ? "failed" : "completed", rc ? err->msg : NULL, &e2);
    int crc = v3_store_close(s.store, &e2);
    if (!rc && (erc || crc)) rc = v3_errf(err, erc ? erc : crc, "%s", e2.msg);
    if (!rc && o->log)
        fprintf(o->log, "done: %lld steps, %lld tokens, %lld skipped, %.1fs; checkpoints in %s\n",
                (long long)s.st.step, (long long)s.st.tokens, (long long)s.st.guard.skipped,
                v3_now() - t_start, o->run_dir);
    sft_free(&s);
    return rc;
}
