/* test_model_fused.c — the trainer's fused step and the head's row skipping, bit for bit:
 *   - v3_model_forward_backward gives exactly what v3_model_forward + v3_model_backward give
 *     (total and component losses, per-token losses, logits, EVERY gradient incl. lm_head, the
 *     embedding and the MTP module), also when run twice without zero_grad, on the three golden
 *     configurations (tests/golden/data/model_{a,b,c}; a has MTP), plain and absorbed attention,
 *     all layers recomputed, and batches: the golden packed two-document batch with ignored
 *     targets, every target present, the first half of each document ignored (a prompt), no
 *     target at all, token weights with a temperature, logits requested;
 *   - the head skips ignored rows without changing any other row: a row's loss and every row's
 *     logits are those of a batch where all rows have a target, and asking for logits changes no
 *     gradient;
 *   - MTP with λ = 0 adds nothing: the MTP module gets no gradient and every other gradient is
 *     that of the model without MTP (a zero gradient scale must not leave the logits in place).
 * The loss chunk is 3 tokens, so chunks of gathered rows and chunks read in place both occur. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "golden.h"
#include "testutil.h"

/* What one training step leaves behind, copied to the host. */
typedef struct step_out {
    double loss, main, mtp, balance;
    float *tok_loss, *logits, *mtp_logits, *grads;
} step_out;

static void out_free(step_out *o) {
    free(o->tok_loss);
    free(o->logits);
    free(o->mtp_logits);
    free(o->grads);
    memset(o, 0, sizeof *o);
}

/* One step (fused or not) on b; the batch's optional outputs are captured. */
static int step(v3_model *m, const v3_batch *b0, int fused, int want_logits, step_out *o) {
    v3_err err;
    int64_t N = b0->N, V = m->cfg.vocab_size;
    v3_batch b = *b0;
    memset(o, 0, sizeof *o);
    o->tok_loss = calloc((size_t)N, sizeof(float));
    o->grads = malloc((size_t)m->table.total * sizeof(float));
    if (want_logits) {
        o->logits = calloc((size_t)(N * V), sizeof(float));
        if (m->opt.mtp) o->mtp_logits = calloc((size_t)(N * V), sizeof(float));
    }
    b.token_loss = o->tok_loss;
    b.logits = o->logits;
    b.mtp_logits = o->mtp_logits;
    int rc;
    if (fused) {
        rc = v3_model_forward_backward(m, &b, &o->loss, &err);
        CHECK_OK(rc, &err);
    } else {
        rc = v3_model_forward(m, &b, &o->loss, &err);
        CHECK_OK(rc, &err);
        if (!rc) {
            rc = v3_model_backward(m, &err);
            CHECK_OK(rc, &err);
        }
    }
    o->main = m->loss_main;
    o->mtp = m->loss_mtp;
    o->balance = m->loss_balance;
    m->ctx->be->to_host(m->ctx, o->grads, m->grads, (size_t)m->table.total * sizeof(float));
    return rc;
}

static int64_t differing(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

/* Bitwise comparison of two steps; `what` names the case. */
static void same_step(const char *what, const v3_model *m, const step_out *a, const step_out *b,
                      int64_t N) {
    int64_t V = m->cfg.vocab_size;
    CHECK(a->loss == b->loss && a->main == b->main && a->mtp == b->mtp && a->balance == b->balance,
          "%s: losses differ (%.17g %.17g %.17g vs %.17g %.17g %.17g)", what, a->loss, a->main,
          a->mtp, b->loss, b->main, b->mtp);
    int64_t d = differing(a->tok_loss, b->tok_loss, N);
    CHECK(d == 0, "%s: %lld per-token losses differ", what, (long long)d);
    if (a->logits && b->logits) {
        d = differing(a->logits, b->logits, N * V);
        CHECK(d == 0, "%s: %lld logits differ", what, (long long)d);
    }
    if (a->mtp_logits && b->mtp_logits) {
        d = differing(a->mtp_logits, b->mtp_logits, N * V);
        CHECK(d == 0, "%s: %lld MTP logits differ", what, (long long)d);
    }
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        d = differing(a->grads + p->offset, b->grads + p->offset, p->numel);
        CHECK(d == 0, "%s: %lld entries of grad %s differ", what, (long long)d, p->name);
    }
}

/* Fused against separate on batch b: one step from zero, then a second on top (accumulation). */
static void fused_vs_separate(const char *what, v3_model *ms, v3_model *mf, const v3_batch *b,
                              int want_logits) {
    char name[256];
    v3_model_zero_grad(ms);
    v3_model_zero_grad(mf);
    for (int k = 0; k < 2; k++) {
        step_out s, f;
        step(ms, b, 0, want_logits, &s);
        step(mf, b, 1, want_logits, &f);
        snprintf(name, sizeof name, "%s, %s step", what, k ? "second" : "first");
        same_step(name, ms, &s, &f, b->N);
        out_free(&s);
        out_free(&f);
    }
}

static void run_config(const char *name, v3_kctx *ctx, v3_rng *rng, int mtp, int absorb,
                       int recompute) {
    golden g;
    if (golden_open(&g, name)) return;
    v3_err err;
    int64_t N = g.N;
    unsigned char re[64];
    memset(re, 1, sizeof re);
    v3_model_options o = v3_model_default_options();
    o.mtp = mtp;
    o.absorb = absorb;
    o.loss_chunk = 3;
    o.recompute = recompute ? re : NULL;
    v3_model ms, mf;
    int rc = v3_model_init(&ms, &g.cfg, ctx, N, &o, &err);
    CHECK_OK(rc, &err);
    if (rc) {
        golden_close(&g);
        return;
    }
    rc = v3_model_init(&mf, &g.cfg, ctx, N, &o, &err);
    CHECK_OK(rc, &err);
    if (rc) {
        v3_model_free(&ms);
        golden_close(&g);
        return;
    }
    CHECK_OK(v3_model_load(&ms, g.dir, &err), &err);
    ctx->be->copy(ctx, mf.params, ms.params, (size_t)ms.table.total * sizeof(float));
    int64_t nv = 0;
    for (int64_t t = 0; t < N; t++) nv += g.targets[t] >= 0;
    printf("  %s%s%s%s: N = %lld, %lld with a target\n", name, mtp ? ", MTP" : "",
           absorb ? ", absorbed attention" : "", recompute ? ", all layers recomputed" : "",
           (long long)N, (long long)nv);

    int32_t *all = malloc((size_t)N * sizeof(int32_t)), *prompt = malloc((size_t)N * sizeof(int32_t)),
            *none = malloc((size_t)N * sizeof(int32_t));
    float *w = malloc((size_t)N * sizeof(float));
    for (int64_t t = 0; t < N; t++) {
        /* every row a target (the golden one where it has one); the first half of each document
         * ignored; nothing */
        all[t] = g.targets[t] >= 0 ? g.targets[t] : g.tokens[t];
        int64_t s = g.doc_start[t], e = t;
        while (e + 1 < N && g.doc_start[e + 1] == s) e++;
        prompt[t] = t - s < (e + 1 - s) / 2 ? -100 : all[t];
        none[t] = -100;
        /* policy-gradient weights of both signs, some zero */
        w[t] = v3_rng_below(rng, 4) == 0 ? 0.0f : (float)(v3_rng_uniform(rng) * 2.0 - 1.0);
    }
    v3_batch b = {N, g.tokens, g.targets, g.positions, g.doc_start, NULL, NULL, NULL, 0.0f, NULL};
    char what[160];
    snprintf(what, sizeof what, "%s golden batch", name);
    fused_vs_separate(what, &ms, &mf, &b, 0);
    snprintf(what, sizeof what, "%s golden batch, logits requested", name);
    fused_vs_separate(what, &ms, &mf, &b, 1);
    v3_batch bw = b;
    bw.token_weight = w;
    bw.temperature = 0.7f;
    snprintf(what, sizeof what, "%s token weights, T = 0.7", name);
    fused_vs_separate(what, &ms, &mf, &bw, 0);
    v3_batch ba = b;
    ba.targets = all;
    snprintf(what, sizeof what, "%s every target", name);
    fused_vs_separate(what, &ms, &mf, &ba, 0);
    v3_batch bp = b;
    bp.targets = prompt;
    snprintf(what, sizeof what, "%s prompt halves ignored", name);
    fused_vs_separate(what, &ms, &mf, &bp, 1);
    v3_batch bn = b;
    bn.targets = none;
    snprintf(what, sizeof what, "%s no target", name);
    fused_vs_separate(what, &ms, &mf, &bn, 0);

    /* skipping ignored rows changes no other row: losses of rows with a target, and the logits
     * of every row, equal those of the batch where every row has one; asking for logits changes
     * no gradient */
    step_out sa, sg, sn;
    v3_model_zero_grad(&ms);
    step(&ms, &ba, 1, 1, &sa);
    v3_model_zero_grad(&ms);
    step(&ms, &b, 1, 1, &sg);
    v3_model_zero_grad(&ms);
    step(&ms, &b, 1, 0, &sn);
    int64_t bad_loss = 0, bad_logits = 0, bad_mtp = 0, V = g.cfg.vocab_size;
    for (int64_t t = 0; t < N; t++) {
        if (g.targets[t] >= 0) bad_loss += memcmp(&sa.tok_loss[t], &sg.tok_loss[t], sizeof(float)) != 0;
        else bad_loss += sg.tok_loss[t] != 0.0f;
    }
    bad_logits = differing(sa.logits, sg.logits, N * V);
    if (mtp) bad_mtp = differing(sa.mtp_logits, sg.mtp_logits, N * V);
    CHECK(bad_loss == 0, "%s: %lld per-token losses changed by ignoring other rows", name,
          (long long)bad_loss);
    CHECK(bad_logits == 0, "%s: %lld logits changed by ignoring rows", name, (long long)bad_logits);
    CHECK(bad_mtp == 0, "%s: %lld MTP logits changed by ignoring rows", name, (long long)bad_mtp);
    int64_t bad_g = differing(sg.grads, sn.grads, ms.table.total);
    CHECK(bad_g == 0, "%s: asking for logits changed %lld gradient entries", name, (long long)bad_g);
    out_free(&sa);
    out_free(&sg);
    out_free(&sn);

    free(all);
    free(prompt);
    free(none);
    free(w);
    v3_model_free(&ms);
    v3_model_free(&mf);
    golden_close(&g);
}

/* Config a with the MTP module at λ = 0 against config a without it. */
static void mtp_lambda_zero(v3_kctx *ctx) {
    golden g;
    if (golden_open(&g, "a")) {
        golden_close(&g);
        return;
    }
    v3_err err;
    v3_model m0, m1;
    v3_model_options o = v3_model_default_options();
    o.loss_chunk = 3;
    int rc0 = v3_model_init(&m0, &g.cfg, ctx, g.N, &o, &err);
    CHECK_OK(rc0, &err);
    o.mtp = 1;
    o.mtp_lambda = 0.0f;
    int rc1 = v3_model_init(&m1, &g.cfg, ctx, g.N, &o, &err);
    CHECK_OK(rc1, &err);
    if (!rc0 && !rc1) {
        CHECK_OK(v3_model_load(&m0, g.dir, &err), &err);
        CHECK_OK(v3_model_load(&m1, g.dir, &err), &err);
        v3_batch b = {g.N, g.tokens, g.targets, g.positions, g.doc_start, NULL, NULL, NULL, 0.0f, NULL};
        for (int fused = 0; fused <= 1; fused++) {
            step_out s0, s1;
            v3_model_zero_grad(&m0);
            v3_model_zero_grad(&m1);
            step(&m0, &b, fused, 0, &s0);
            step(&m1, &b, fused, 0, &s1);
            int64_t bad_mtp = 0, bad_main = 0;
            for (int i = 0; i < m1.table.n; i++) {
                const v3_param_info *p = &m1.table.p[i];
                int j = v3_params_find(&m0.table, p->name);
                for (int64_t e = 0; e < p->numel; e++) {
                    float v = s1.grads[p->offset + e];
                    if (j < 0) bad_mtp += v != 0.0f;
                    else bad_main += v != s0.grads[m0.table.p[j].offset + e];
                }
            }
            CHECK(bad_mtp == 0, "λ = 0 (%s): %lld MTP gradient entries are not zero",
                  fused ? "fused" : "separate", (long long)bad_mtp);
            CHECK(bad_main == 0, "λ = 0 (%s): %lld gradient entries differ from the model without MTP",
                  fused ? "fused" : "separate", (long long)bad_main);
            out_free(&s0);
            out_free(&s1);
        }
        printf("  a, MTP at λ = 0: no MTP gradient, main gradients as without MTP\n");
    }
    if (!rc0) v3_model_free(&m0);
    if (!rc1) v3_model_free(&m1);
    golden_close(&g);
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_model_fused"));
    for (int absorb = 0; absorb <= 1; absorb++) {
        run_config("a", &ctx, &rng, 1, absorb, 0);
        run_config("b", &ctx, &rng, 0, absorb, 0);
        run_config("c", &ctx, &rng, 0, absorb, 0);
    }
    run_config("a", &ctx, &rng, 1, 0, 1);
    mtp_lambda_zero(&ctx);
    v3_kctx_free(&ctx);
    return t_finish("test_model_fused");
}
