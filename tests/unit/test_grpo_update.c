/* test_grpo_update.c — the GRPO policy update (trainer/grpo_update.c) on golden model "b":
 *
 *   1. the parameter gradient it leaves (learning rate 0, so the weights stay) is the gradient of
 *      the TRL loss of the batch as a function of the weights: directional derivatives along
 *      random directions against central finite differences of J(θ) = v3_grpo_loss(logp(θ)),
 *      with old logprobs off the current policy (ratios ≠ 1), a perturbed
 *      reference (β > 0), a sampling temperature, truncated completions masked; every loss type;
 *   2. a mini-batch split into micro-batches (a model with a small token budget) gives the same
 *      gradient as one micro-batch;
 *   3. the trainer logprobs it records are the policy's, and the gap to the "sampler" is measured.
 * Directions are over lm_head and the final norm, as in test_model_tokweight: the loss enters the
 * network there, and deeper directions can flip an expert choice, which breaks any finite
 * difference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "trainer/grpo_internal.h"
#include "testutil.h"

enum { NP = 4, G = 3, NS = NP * G, MAXNEW = 6, BIG = 256, SMALL = 24 };
static const float TEMP = 0.8f;

typedef struct fixture {
    v3_kctx ctx;
    v3_config cfg;
    v3_grpo_opts o;
    grpo_prompt prompts[NP];
    v3_gen_output outs[NS];
    grpo_batch b;
    v3_rng rng;
    char dir[1024];
} fixture;

static int init_model(fixture *f, v3_model *m, int64_t max_tokens, int training, v3_err *err) {
    v3_model_options mo = v3_model_default_options();
    mo.absorb = 1;
    mo.training = training;
    mo.loss_chunk = 5;
    int rc = v3_model_init(m, &f->cfg, &f->ctx, max_tokens, &mo, err);
    if (!rc) rc = v3_model_load(m, f->dir, err);
    return rc;
}

/* A grpo run state around policy m (and reference ref), enough for grpo_update. */
static int init_grpo(fixture *f, grpo *g, v3_model *m, v3_model *ref, v3_err *err) {
    memset(g, 0, sizeof *g);
    g->o = &f->o;
    g->cfg = f->cfg;
    g->m = *m;
    if (ref) {
        g->ref = *ref;
        g->have_ref = 1;
    }
    g->train.p = f->prompts;
    g->train.n = NP;
    g->sched = (v3_schedule){.kind = V3_SCHED_CONSTANT, .lr = 0};
    g->updates_per_step = (int64_t)f->o.mu * f->o.mini_batches;
    v3_guard_init(&g->st.guard, 0, 10, 0);
    g->load_step = calloc((size_t)m->n_layers_total, sizeof *g->load_step);
    size_t T = (size_t)m->max_tokens;
    g->b_tok = malloc(T * 4), g->b_tgt = malloc(T * 4), g->b_pos = malloc(T * 4), g->b_ds = malloc(T * 4);
    g->b_loss = malloc(T * 4), g->b_w = malloc(T * 4);
    return v3_optim_init(&g->opt, &f->ctx, &m->table, &f->o.adamw, err);
}

static void free_grpo(grpo *g) {
    v3_optim_free(&g->opt);
    free(g->load_step);
    free(g->b_tok), free(g->b_tgt), free(g->b_pos), free(g->b_ds), free(g->b_loss), free(g->b_w);
}

/* logp of every sample's completion under m, one sample per forward */
static int logps(fixture *f, v3_model *m, float *out /* [NS][MAXNEW] */, v3_err *err) {
    int32_t tok[64], tgt[64], pos[64], ds[64];
    float tl[64];
    for (int i = 0; i < NS; i++) {
        const grpo_sample *s = &f->b.s[i];
        const grpo_prompt *p = &f->prompts[s->prompt];
        int64_t L = p->n + s->o->n;
        for (int64_t t = 0; t < L; t++) {
            tok[t] = t < p->n ? p->ids[t] : s->o->ids[t - p->n];
            pos[t] = (int32_t)t;
            ds[t] = 0;
        }
        for (int64_t t = 0; t < L; t++) tgt[t] = t >= p->n - 1 && t + 1 < L ? tok[t + 1] : -100;
        v3_batch bt = {.N = L, .tokens = tok, .targets = tgt, .positions = pos, .doc_start = ds,
                       .token_loss = tl, .temperature = TEMP};
        int rc = v3_model_forward(m, &bt, NULL, err);
        if (rc) return rc;
        for (int64_t j = 0; j < s->o->n; j++) out[i * MAXNEW + j] = -tl[p->n - 1 + j];
    }
    return V3_OK;
}

/* J(θ): the TRL loss of the whole batch as the update computes it (one mini-batch) */
static double objective(fixture *f, v3_model *m, const float *ref_lp, v3_err *err) {
    float lp[NS * MAXNEW] = {0};
    uint8_t mask[NS * MAXNEW] = {0};
    double adv[NS];
    if (logps(f, m, lp, err)) return NAN;
    int64_t T = 0, items = 0;
    for (int i = 0; i < NS; i++)
        if (f->b.s[i].o->n > T) T = f->b.s[i].o->n;
    /* [NS, T] right-padded as the update builds it */
    float lpT[NS * MAXNEW] = {0}, oldT[NS * MAXNEW] = {0}, refT[NS * MAXNEW] = {0};
    for (int i = 0; i < NS; i++) {
        const grpo_sample *s = &f->b.s[i];
        adv[i] = s->adv;
        int active = !(f->o.mask_truncated && s->truncated);
        for (int64_t j = 0; j < s->o->n; j++) {
            lpT[i * T + j] = lp[i * MAXNEW + j];
            oldT[i * T + j] = s->o->logprob_temp[j];
            refT[i * T + j] = ref_lp[i * MAXNEW + j];
            mask[i * T + j] = (uint8_t)active;
            items += active;
        }
    }
    v3_grpo_loss_opts lo = f->o.loss;
    lo.num_items_in_batch = items;
    lo.num_processes = 1;
    lo.grad_accum = 1;
    lo.steps_per_generation = f->o.mini_batches;
    lo.max_completion_length = f->o.max_new_tokens;
    v3_grpo_loss_in in = {.B = NS, .T = T, .logp = lpT, .old_logp = oldT, .ref_logp = refT, .adv = adv, .mask = mask};
    double loss = NAN;
    if (v3_grpo_loss(&in, &lo, &loss, NULL, NULL, err)) return NAN;
    return loss;
}

static void make_batch(fixture *f, v3_model *m, v3_err *err) {
    int64_t V = f->cfg.vocab_size;
    static const int plen[NP] = {3, 7, 2, 9};
    for (int p = 0; p < NP; p++) {
        f->prompts[p].n = plen[p];
        f->prompts[p].ids = malloc(sizeof(int32_t) * (size_t)plen[p]);
        for (int t = 0; t < plen[p]; t++) f->prompts[p].ids[t] = (int32_t)v3_rng_below(&f->rng, (uint64_t)V);
    }
    f->b.s = calloc(NS, sizeof *f->b.s);
    f->b.n = f->b.cap = NS;
    for (int i = 0; i < NS; i++) {
        v3_gen_output *o = &f->outs[i];
        int n = i % 4 == 3 ? MAXNEW : 1 + (int)v3_rng_below(&f->rng, MAXNEW - 1);
        o->n = n;
        o->ids = malloc(sizeof(int32_t) * MAXNEW);
        o->logprob_temp = malloc(sizeof(float) * MAXNEW);
        for (int j = 0; j < n; j++) o->ids[j] = (int32_t)v3_rng_below(&f->rng, (uint64_t)V);
        o->finish = n == MAXNEW ? V3_FINISH_LENGTH : V3_FINISH_STOP;
        grpo_sample *s = &f->b.s[i];
        s->prompt = i / G;
        s->group = i / G;
        s->index = i % G;
        s->o = o;
        s->kept = 1;
        s->truncated = o->finish == V3_FINISH_LENGTH;
        s->adv = v3_rng_uniform(&f->rng) * 2.0 - 1.0;
    }
    /* "sampler" logprobs: the policy's, moved a little so that ratios differ from 1 (inside the
     * clip range: finite differences need a smooth loss) */
    float lp[NS * MAXNEW];
    CHECK_OK(logps(f, m, lp, err), err);
    for (int i = 0; i < NS; i++)
        for (int j = 0; j < f->outs[i].n; j++)
            f->outs[i].logprob_temp[j] = lp[i * MAXNEW + j] + 0.1f * (v3_rng_uniform(&f->rng) - 0.5f);
}

static void perturb(v3_kctx *ctx, v3_model *m, const char *name, v3_rng *r, float scale) {
    int i = v3_params_find(&m->table, name);
    const v3_param_info *p = &m->table.p[i];
    float *h = malloc(sizeof(float) * (size_t)p->numel);
    ctx->be->to_host(ctx, h, m->params + p->offset, sizeof(float) * (size_t)p->numel);
    for (int64_t k = 0; k < p->numel; k++) h[k] += scale * v3_rng_normal(r);
    ctx->be->to_device(ctx, m->params + p->offset, h, sizeof(float) * (size_t)p->numel);
    free(h);
}

static void reset_lp(fixture *f) {
    for (int i = 0; i < NS; i++) {
        free(f->b.s[i].lp);
        f->b.s[i].lp = NULL;
    }
}

int main(void) {
    fixture *f = calloc(1, sizeof *f);
    v3_err err;
    if (v3_kctx_init(&f->ctx, v3_backend_cpu(), 2, &err)) return 1;
    v3_rng_seed(&f->rng, t_seed("test_grpo_update"));
    char path[1200];
    t_source_path("tests/golden/data/model_b", f->dir, sizeof f->dir);
    snprintf(path, sizeof path, "%s/config.json", f->dir);
    CHECK_OK(v3_config_load(&f->cfg, path, &err), &err);
    v3_grpo_opts_default(&f->o);
    f->o.sampling.temperature = TEMP;
    f->o.max_new_tokens = MAXNEW;
    f->o.mask_truncated = 1;
    f->o.clip = 0;
    f->o.loss.beta = 0.1;
    f->o.loss.eps_low = 0.2;
    f->o.loss.eps_high = 0.28;

    v3_model m, small, ref;
    CHECK_OK(init_model(f, &m, BIG, 1, &err), &err);
    CHECK_OK(init_model(f, &small, SMALL, 1, &err), &err);
    CHECK_OK(init_model(f, &ref, BIG, 0, &err), &err);
    perturb(&f->ctx, &ref, "lm_head.weight", &f->rng, 0.05f);
    make_batch(f, &m, &err);
    float ref_lp[NS * MAXNEW];
    CHECK_OK(logps(f, &ref, ref_lp, &err), &err);
    for (int i = 0; i < NS; i++) {
        f->b.s[i].ref = malloc(sizeof(float) * MAXNEW);
        memcpy(f->b.s[i].ref, ref_lp + i * MAXNEW, sizeof(float) * MAXNEW);
    }

    size_t P = (size_t)m.table.total;
    float *g1 = malloc(P * 4), *g2 = malloc(P * 4), *p0 = malloc(P * 4), *pp = malloc(P * 4), *u = malloc(P * 4);
    f->ctx.be->to_host(&f->ctx, p0, m.params, P * 4);
    static const v3_grpo_loss_type types[] = {V3_GRPO_LOSS_DAPO, V3_GRPO_LOSS_GRPO, V3_GRPO_LOSS_BNPO,
                                              V3_GRPO_LOSS_DR_GRPO};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        f->o.loss.type = types[ti];
        const char *tn = v3_grpo_loss_type_name(types[ti]);
        /* 1. the update's gradient (lr 0) */
        grpo g;
        CHECK_OK(init_grpo(f, &g, &m, &ref, &err), &err);
        grpo_update_stats us = {0};
        reset_lp(f);
        /* the reference logprobs are the update's own (it recomputes them) */
        CHECK_OK(grpo_update(&g, 1, &f->b, &us, &err), &err);
        CHECK(us.n_updates == 1, "%s: %d updates", tn, us.n_updates);
        f->ctx.be->to_host(&f->ctx, g1, m.grads, P * 4);
        CHECK(t_max_abs_diff(f->b.s[0].ref, ref_lp, f->outs[0].n) == 0, "%s: reference logprobs differ", tn);
        /* the recorded trainer logprobs are the policy's; the gap is what the "sampler" was moved by */
        float lp[NS * MAXNEW];
        CHECK_OK(logps(f, &m, lp, &err), &err);
        double worst = 0, gap = 0;
        for (int i = 0; i < NS; i++)
            for (int j = 0; j < f->outs[i].n; j++) {
                worst = fmax(worst, fabs(f->b.s[i].lp[j] - lp[i * MAXNEW + j]));
                gap = fmax(gap, fabs(lp[i * MAXNEW + j] - f->outs[i].logprob_temp[j]));
            }
        CHECK(worst == 0, "%s: recorded trainer logprobs differ from the policy's by %g", tn, worst);
        CHECK(us.gap_max == gap && gap > 0, "%s: gap %g, expected %g", tn, us.gap_max, gap);
        CHECK(us.lm.count_ratio > 0 && us.lm.ratio_min < 1 && us.lm.ratio_max > 1, "%s: ratios %g..%g", tn,
              us.lm.ratio_min, us.lm.ratio_max);
        free_grpo(&g);

        /* 2. finite differences of J along random directions */
        const char *names[] = {"lm_head.weight", "model.norm.weight"};
        for (int k = 0; k < 2; k++) {
            int pi = v3_params_find(&m.table, names[k]);
            const v3_param_info *pinf = &m.table.p[pi];
            memset(u, 0, P * 4);
            double dot = 0;
            for (int64_t j = 0; j < pinf->numel; j++) {
                u[pinf->offset + j] = v3_rng_normal(&f->rng);
                dot += (double)u[pinf->offset + j] * g1[pinf->offset + j];
            }
            double eps = 3e-4, J[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                for (size_t j = 0; j < P; j++) pp[j] = p0[j] + (sgn ? -1.0f : 1.0f) * (float)eps * u[j];
                f->ctx.be->to_device(&f->ctx, m.params, pp, P * 4);
                J[sgn] = objective(f, &m, ref_lp, &err);
            }
            f->ctx.be->to_device(&f->ctx, m.params, p0, P * 4);
            double fd = (J[0] - J[1]) / (2 * eps), rel = fabs(fd - dot) / fmax(fabs(dot), 0.05); /* float32 logps: an absolute floor */
            printf("  %-8s %-18s analytic %+.6e  finite difference %+.6e  rel %.2e\n", tn, names[k], dot, fd, rel);
            CHECK(rel < 1e-2, "%s %s: directional derivative %.6e vs finite difference %.6e", tn, names[k], dot, fd);
        }

        /* 3. split into micro-batches of <= SMALL tokens: the same gradient */
        f->ctx.be->to_device(&f->ctx, small.params, p0, P * 4);
        CHECK_OK(init_grpo(f, &g, &small, &ref, &err), &err);
        memset(&us, 0, sizeof us);
        reset_lp(f);
        CHECK_OK(grpo_update(&g, 1, &f->b, &us, &err), &err);
        f->ctx.be->to_host(&f->ctx, g2, small.grads, P * 4);
        double e = t_rel_err(g2, g1, (int64_t)P);
        printf("  %-8s micro-batches of <= %d tokens vs one: gradient rel err %.2e\n", tn, SMALL, e);
        CHECK(e < 1e-5, "%s: split gradient differs (rel %.3e)", tn, e);
        free_grpo(&g);
    }

    reset_lp(f);
    for (int i = 0; i < NS; i++) {
        free(f->outs[i].ids);
        free(f->outs[i].logprob_temp);
        free(f->b.s[i].ref);
    }
    for (int p = 0; p < NP; p++) free(f->prompts[p].ids);
    free(f->b.s);
    free(g1), free(g2), free(p0), free(pp), free(u);
    v3_model_free(&m);
    v3_model_free(&small);
    v3_model_free(&ref);
    v3_kctx_free(&f->ctx);
    free(f);
    return t_finish("test_grpo_update");
}
