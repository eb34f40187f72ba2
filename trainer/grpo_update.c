/* grpo_update.c — the policy update of one generation batch (the kept groups).
 *
 * grpo.mu passes over grpo.mini_batches contiguous mini-batches; each mini-batch is one
 * optimizer step:
 *   - its samples are packed as documents (prompt + completion; targets = next tokens of the
 *     completion, ignored elsewhere) into micro-batches of at most train.micro_batch_tokens;
 *   - forward at the sampling temperature; logp of each completion token = −token_loss;
 *   - the TRL loss over the whole mini-batch (trainer/grpo_loss.h) with π_old = the sampler's
 *     logprob (the policy at rollout) and π_ref = the reference model's, giving dL/dlogp;
 *   - backward with token weights −dL/dlogp (0 off the completion), so the parameter gradient is
 *     dL/dθ; then global-norm clipping, the guard, AdamW at the scheduled rate, the router-bias
 *     update over this step's routed tokens.
 * A mini-batch of one micro-batch costs one forward and one backward. One of several costs a
 * forward-only pass over all of them first (the loss needs every logp), then backward for the
 * last one (its activations are still there) and forward+backward for the others.
 *
 * Before any update the trainer's logp equals the sampler's bit for bit on the CPU backend: the
 * gap (max |Δ|) is measured on the tokens recomputed before the first optimizer step of the step
 * (every kept sample with grpo.check_all_logprobs, else the first mini-batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "trainer/grpo_internal.h"

/* Packs samples idx[0..n) into the batch buffers; start[i] = offset of sample i. Returns N. */
static int64_t pack(grpo *g, const grpo_batch *b, const int64_t *idx, int64_t n, int64_t *start) {
    int64_t N = 0;
    for (int64_t i = 0; i < n; i++) {
        const grpo_sample *s = &b->s[idx[i]];
        const grpo_prompt *p = &g->train.p[s->prompt];
        int64_t P = p->n, L = P + s->o->n;
        start[i] = N;
        for (int64_t t = 0; t < L; t++) {
            g->b_tok[N + t] = t < P ? p->ids[t] : s->o->ids[t - P];
            g->b_pos[N + t] = (int32_t)t;
            g->b_ds[N + t] = (int32_t)N;
        }
        for (int64_t t = 0; t < L; t++)
            g->b_tgt[N + t] = t >= P - 1 && t + 1 < L ? g->b_tok[N + t + 1] : -100;
        N += L;
    }
    return N;
}

static int64_t seq_len(const grpo *g, const grpo_batch *b, int64_t i) {
    return g->train.p[b->s[i].prompt].n + b->s[i].o->n;
}

/* Splits idx[0..n) into micro-batches of at most max_tokens: cut[0] = 0 < ... < cut[k] = n. */
static int split_micro(const grpo *g, const grpo_batch *b, const int64_t *idx, int64_t n, int64_t *cut) {
    int k = 0;
    int64_t N = 0;
    cut[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t L = seq_len(g, b, idx[i]);
        if (N + L > g->m.max_tokens && N > 0) {
            cut[++k] = i;
            N = 0;
        }
        N += L;
    }
    cut[++k] = n;
    return k;
}

static int forward(v3_model *m, grpo *g, int64_t N, v3_err *err) {
    v3_batch bt = {.N = N, .tokens = g->b_tok, .targets = g->b_tgt, .positions = g->b_pos,
                   .doc_start = g->b_ds, .token_loss = g->b_loss, .temperature = g->o->sampling.temperature};
    return v3_model_forward(m, &bt, NULL, err);
}

/* −token_loss at the completion rows of packed sample i (offset start) into dst[0..n) */
static void take_logp(const grpo *g, const grpo_batch *b, int64_t si, int64_t start, float *dst) {
    const grpo_sample *s = &b->s[si];
    int64_t row = start + g->train.p[s->prompt].n - 1;
    for (int64_t j = 0; j < s->o->n; j++) dst[j] = -g->b_loss[row + j];
}

static void add_load(grpo *g) {
    for (int l = 0; l < g->m.n_layers_total; l++) {
        const int64_t *ld = v3_model_expert_load(&g->m, l);
        if (ld && g->load_step[l])
            for (int e = 0; e < g->m.cfg.n_routed_experts; e++) g->load_step[l][e] += ld[e];
    }
}

/* Forward-only logp of samples idx[0..n) under model m into dst[i] (a [n][*] table of rows). */
static int logp_pass(grpo *g, v3_model *m, grpo_batch *b, const int64_t *idx, int64_t n, float **dst,
                     v3_err *err) {
    int64_t *cut = malloc((size_t)(n + 1) * sizeof *cut), *start = malloc((size_t)n * sizeof *start);
    int rc = cut && start ? V3_OK : v3_errf(err, V3_ENOMEM, "grpo: out of memory");
    int k = rc ? 0 : split_micro(g, b, idx, n, cut);
    for (int c = 0; c < k && !rc; c++) {
        int64_t N = pack(g, b, idx + cut[c], cut[c + 1] - cut[c], start);
        if ((rc = forward(m, g, N, err))) break;
        for (int64_t i = cut[c]; i < cut[c + 1]; i++) take_logp(g, b, idx[i], start[i - cut[c]], dst[i]);
    }
    free(cut);
    free(start);
    return rc;
}

static double max_gap(const grpo_sample *s, const float *lp) {
    double gmax = 0;
    for (int64_t j = 0; j < s->o->n; j++) {
        double d = fabs((double)lp[j] - (double)s->o->logprob_temp[j]);
        if (!(d <= gmax)) gmax = d; /* NaN wins */
    }
    return gmax;
}

/* Allocates lp (and ref) rows for the kept samples that lack them. */
static int alloc_rows(grpo_batch *b, const int64_t *idx, int64_t n, int ref, v3_err *err) {
    for (int64_t i = 0; i < n; i++) {
        grpo_sample *s = &b->s[idx[i]];
        float **p = ref ? &s->ref : &s->lp;
        if (!*p && !(*p = malloc((size_t)(s->o->n ? s->o->n : 1) * sizeof(float))))
            return v3_errf(err, V3_ENOMEM, "grpo: out of memory");
    }
    return V3_OK;
}

static void add_metrics(v3_grpo_loss_metrics *acc, const v3_grpo_loss_metrics *m, int first) {
    acc->sum_clip_low += m->sum_clip_low;
    acc->sum_clip_high += m->sum_clip_high;
    acc->sum_clip_region += m->sum_clip_region;
    acc->sum_kl += m->sum_kl;
    acc->sum_ratio += m->sum_ratio;
    acc->count += m->count;
    acc->count_kl += m->count_kl;
    acc->count_ratio += m->count_ratio;
    acc->n_tokens += m->n_tokens;
    if (first || m->ratio_min < acc->ratio_min) acc->ratio_min = m->ratio_min;
    if (first || m->ratio_max > acc->ratio_max) acc->ratio_max = m->ratio_max;
}

typedef struct mini {
    int64_t B, T;
    float *lp, *old, *ref, *dlogp, *w;
    uint8_t *mask;
    double *adv;
    int64_t *cut, *start;
    float **rows;
} mini;

static void mini_free(mini *x) {
    free(x->lp), free(x->old), free(x->ref), free(x->dlogp), free(x->w);
    free(x->mask), free(x->adv), free(x->cut), free(x->start), free(x->rows);
}

/* One optimizer step on the mini-batch idx[0..n). */
static int minibatch(grpo *g, grpo_batch *b, const int64_t *idx, int64_t n, const v3_grpo_loss_opts *lo,
                     int first_pass, int check_gap, int64_t sched_step, grpo_update_stats *us, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    mini x = {0};
    x.B = n;
    for (int64_t i = 0; i < n; i++)
        if (b->s[idx[i]].o->n > x.T) x.T = b->s[idx[i]].o->n;
    size_t BT = (size_t)(x.B * x.T);
    x.lp = calloc(BT, sizeof(float));
    x.old = calloc(BT, sizeof(float));
    x.ref = o->loss.beta != 0 ? calloc(BT, sizeof(float)) : NULL;
    x.dlogp = calloc(BT, sizeof(float));
    x.w = calloc((size_t)g->m.max_tokens, sizeof(float));
    x.mask = calloc(BT, 1);
    x.adv = calloc((size_t)n, sizeof(double));
    x.cut = malloc((size_t)(n + 1) * sizeof(int64_t));
    x.start = malloc((size_t)n * sizeof(int64_t));
    x.rows = malloc((size_t)n * sizeof(float *));
    int rc = V3_OK;
    if (!x.lp || !x.old || (o->loss.beta != 0 && !x.ref) || !x.dlogp || !x.w || !x.mask || !x.adv || !x.cut ||
        !x.start || !x.rows) {
        mini_free(&x);
        return v3_errf(err, V3_ENOMEM, "grpo: out of memory for a mini-batch of %lld samples", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        const grpo_sample *s = &b->s[idx[i]];
        x.rows[i] = x.lp + i * x.T;
        x.adv[i] = s->adv;
        int active = !(o->mask_truncated && s->truncated);
        for (int64_t j = 0; j < s->o->n; j++) {
            x.old[i * x.T + j] = s->o->logprob_temp[j];
            if (x.ref) x.ref[i * x.T + j] = s->ref[j];
            x.mask[i * x.T + j] = (uint8_t)active;
        }
    }
    v3_model *m = &g->m;
    v3_model_zero_grad(m);
    int k = split_micro(g, b, idx, n, x.cut);
    /* logp of every sample; the last micro-batch's forward stays for its backward */
    for (int c = 0; c < k && !rc; c++) {
        if (c == k - 1) v3_model_update_router_bias(m, 0.0f); /* loads: count each micro-batch once */
        int64_t N = pack(g, b, idx + x.cut[c], x.cut[c + 1] - x.cut[c], x.start + x.cut[c]);
        if ((rc = forward(m, g, N, err))) break;
        for (int64_t i = x.cut[c]; i < x.cut[c + 1]; i++)
            take_logp(g, b, idx[i], x.start[i], x.rows[i]);
    }
    if (rc) goto out;
    /* the first recompute of each sample is recorded; before any update it must equal the sampler */
    for (int64_t i = 0; i < n && first_pass; i++) {
        grpo_sample *s = &b->s[idx[i]];
        if (s->lp) continue;
        if (!(s->lp = malloc((size_t)(s->o->n ? s->o->n : 1) * sizeof(float)))) {
            rc = v3_errf(err, V3_ENOMEM, "grpo: out of memory");
            goto out;
        }
        memcpy(s->lp, x.rows[i], (size_t)s->o->n * sizeof(float));
        if (check_gap) {
            double gp = max_gap(s, s->lp);
            if (!(gp <= us->gap_max)) us->gap_max = gp;
            us->gap_tokens += s->o->n;
        }
    }
    v3_grpo_loss_in in = {.B = x.B, .T = x.T, .logp = x.lp, .old_logp = x.old, .ref_logp = x.ref,
                          .adv = x.adv, .mask = x.mask};
    double loss = 0;
    v3_grpo_loss_metrics lm;
    if ((rc = v3_grpo_loss(&in, lo, &loss, x.dlogp, &lm, err))) goto out;
    add_metrics(&us->lm, &lm, us->n_updates + us->n_skipped == 0);
    /* backward: the last micro-batch first (still in the arena), then the others again */
    for (int cc = 0; cc < k && !rc; cc++) {
        int c = (k - 1 + cc) % k;
        int64_t n_c = x.cut[c + 1] - x.cut[c];
        int64_t N = pack(g, b, idx + x.cut[c], n_c, x.start + x.cut[c]);
        if (cc > 0 && (rc = forward(m, g, N, err))) break;
        memset(x.w, 0, (size_t)N * sizeof(float));
        for (int64_t i = x.cut[c]; i < x.cut[c + 1]; i++) {
            const grpo_sample *s = &b->s[idx[i]];
            int64_t row = x.start[i] + g->train.p[s->prompt].n - 1;
            for (int64_t j = 0; j < s->o->n; j++) x.w[row + j] = -x.dlogp[i * x.T + j];
        }
        if ((rc = v3_model_set_token_weight(m, x.w, N, err))) break;
        if ((rc = v3_model_backward(m, err))) break;
        add_load(g);
        us->tokens += N;
    }
    if (rc) goto out;
    /* the optimizer step */
    double gnorm = v3_optim_grad_norm(&g->opt, m->grads);
    double lr = v3_schedule_lr(&g->sched, sched_step);
    int stop = 0;
    v3_guard_verdict v = v3_guard_check(&g->st.guard, sched_step, loss, gnorm, &stop, err);
    if (v == V3_GUARD_OK) {
        v3_optim_step(&g->opt, m->params, m->grads, (float)lr, v3_clip_coef(gnorm, o->clip));
        v3_model_weights_changed(m); /* the rollout engine repacks its copies */
        v3_model_update_router_bias(m, g->o->router_gamma);
        us->n_updates++;
        us->loss += loss;
        us->grad_norm += gnorm;
    } else {
        v3_model_update_router_bias(m, 0.0f);
        us->n_skipped++;
        if (o->log)
            fprintf(o->log, "update %lld skipped: %s (loss %g, grad norm %g)\n", (long long)sched_step,
                    v3_guard_verdict_name(v), loss, gnorm);
    }
    us->lr = lr;
    if (stop) rc = V3_ERANGE; /* the guard's message is in err */
    if (!rc) rc = v3k_check(&g->ctx, err);
out:
    mini_free(&x);
    return rc;
}

int grpo_update(grpo *g, int64_t step, grpo_batch *b, grpo_update_stats *us, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    double t0 = v3_now();
    int64_t nk = 0, num_items = 0;
    for (int64_t i = 0; i < b->n; i++) nk += b->s[i].kept;
    if (nk == 0) return V3_OK;
    int64_t *idx = malloc((size_t)nk * sizeof *idx);
    float **rows = malloc((size_t)nk * sizeof *rows);
    if (!idx || !rows) {
        free(idx);
        free(rows);
        return v3_errf(err, V3_ENOMEM, "grpo: out of memory");
    }
    nk = 0;
    for (int64_t i = 0; i < b->n; i++)
        if (b->s[i].kept) {
            idx[nk++] = i;
            if (!(o->mask_truncated && b->s[i].truncated)) num_items += b->s[i].o->n;
        }
    us->active_tokens = num_items;
    v3_grpo_loss_opts lo = o->loss;
    lo.num_items_in_batch = num_items;
    lo.num_processes = 1;
    lo.grad_accum = 1;
    lo.steps_per_generation = o->mini_batches;
    lo.max_completion_length = o->max_new_tokens;
    int rc = V3_OK;
    /* reference logprobs, once per generation batch */
    if (o->loss.beta != 0) {
        double tr = v3_now();
        rc = alloc_rows(b, idx, nk, 1, err);
        for (int64_t i = 0; i < nk && !rc; i++) rows[i] = b->s[idx[i]].ref;
        if (!rc) rc = logp_pass(g, &g->ref, b, idx, nk, rows, err);
        us->t_ref = v3_now() - tr;
    }
    /* every sample recomputed before any update (optional) */
    int gap_done = 0;
    if (!rc && o->check_all_logprobs && o->mini_batches > 1) {
        rc = alloc_rows(b, idx, nk, 0, err);
        for (int64_t i = 0; i < nk && !rc; i++) rows[i] = b->s[idx[i]].lp;
        if (!rc) rc = logp_pass(g, &g->m, b, idx, nk, rows, err);
        v3_model_update_router_bias(&g->m, 0.0f);
        for (int64_t i = 0; i < nk && !rc; i++) {
            double gp = max_gap(&b->s[idx[i]], b->s[idx[i]].lp);
            if (!(gp <= us->gap_max)) us->gap_max = gp;
            us->gap_tokens += b->s[idx[i]].o->n;
        }
        gap_done = 1;
    }
    int M = o->mini_batches;
    int64_t u = 0;
    for (int it = 0; it < o->mu && !rc; it++)
        for (int j = 0; j < M && !rc; j++, u++) {
            int64_t lo_i = nk * j / M, hi_i = nk * (j + 1) / M;
            if (hi_i <= lo_i) continue;
            int64_t sched_step = (step - 1) * g->updates_per_step + u + 1;
            rc = minibatch(g, b, idx + lo_i, hi_i - lo_i, &lo, it == 0, !gap_done && u == 0, sched_step, us, err);
        }
    if (us->n_updates > 0) {
        us->loss /= us->n_updates;
        us->grad_norm /= us->n_updates;
    }
    us->t_train = v3_now() - t0;
    free(idx);
    free(rows);
    return rc;
}
