/* test_model_golden.c — the model's forward and backward against Hugging Face transformers
 * (tests/golden/gen_model.py: DeepseekV3ForCausalLM, fp32, eager attention) on three tiny random
 * configurations that together cover q_lora on/off, group-limited routing, YaRN and plain RoPE,
 * 1-2 dense layers, 1-2 shared experts, norm_topk_prob on/off, a packed batch of two documents
 * with ignored targets, a non-zero e_score_correction_bias, and (config a) the MTP module.
 * Compared: logits and loss (relative error ≤ 1e-5) and the gradient of EVERY parameter (≤ 1e-4).
 * Also: running backward twice doubles every gradient, and recomputing layers in backward gives
 * the same gradients bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "golden.h"
#include "testutil.h"

#define TOL_FWD 1e-5
#define TOL_GRAD 1e-4

/* grads of every parameter vs reference; returns the worst relative error */
static double check_grads(const char *name, v3_model *m, const golden *g, const float *grads,
                          double scale) {
    double worst = 0;
    char key[160], worst_name[128] = "";
    int compared = 0;
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        snprintf(key, sizeof key, "grad.%s", p->name);
        int64_t n = 0;
        float *ref = golden_f32(g, key, &n);
        if (!ref) {
            /* no gradient by design: the router bias, and the MTP module's physical copies of the
             * shared embedding/head (the main ones are used and receive the gradient) */
            int ok = p->kind == V3_PK_BIAS ||
                     (p->layer >= g->cfg.n_layer && (p->kind == V3_PK_EMBED || p->kind == V3_PK_HEAD));
            CHECK(ok, "%s: no reference gradient for %s", name, p->name);
            double s = 0;
            for (int64_t j = 0; j < p->numel; j++) s += fabs(grads[p->offset + j]);
            CHECK(s == 0, "%s: %s should get no gradient (|g|₁ = %g)", name, p->name, s);
            continue;
        }
        CHECK(n == p->numel, "%s: %s numel %lld vs %lld", name, p->name, (long long)n, (long long)p->numel);
        if (n == p->numel) {
            if (scale != 1.0)
                for (int64_t j = 0; j < n; j++) ref[j] = (float)(ref[j] * scale);
            double e = t_rel_err(grads + p->offset, ref, n);
            CHECK(e <= TOL_GRAD, "%s: grad %s rel err %.3e", name, p->name, e);
            if (e > worst) {
                worst = e;
                snprintf(worst_name, sizeof worst_name, "%s", p->name);
            }
            compared++;
        }
        free(ref);
    }
    printf("  %s: %d parameter gradients compared, worst rel err %.3e (%s)\n", name, compared, worst,
           worst_name);
    return worst;
}

static void run_config(const char *name, v3_kctx *ctx, int mtp, int absorb) {
    golden g;
    if (golden_open(&g, name)) return;
    if (absorb) printf("  %s: attention in the absorbed form\n", name);
    v3_err err;
    int64_t N = g.N, V = g.cfg.vocab_size;
    v3_model_options o = v3_model_default_options();
    o.mtp = mtp;
    o.absorb = absorb; /* the latent (absorbed) attention must match HF's plain form too */
    o.loss_chunk = 7; /* several chunks, the last one partial */
    if (mtp) {
        float *lam = golden_f32(&g, "mtp.lambda", NULL);
        o.mtp_lambda = lam ? lam[0] : 0.3f;
        free(lam);
    }
    v3_model m;
    int rc = v3_model_init(&m, &g.cfg, ctx, N, &o, &err);
    CHECK_OK(rc, &err);
    if (rc) {
        golden_close(&g);
        return;
    }
    CHECK_OK(v3_model_load(&m, g.dir, &err), &err);

    float *logits = calloc((size_t)(N * V), sizeof(float));
    float *mtp_logits = mtp ? calloc((size_t)(N * V), sizeof(float)) : NULL;
    float *tok_loss = calloc((size_t)N, sizeof(float));
    v3_batch b = {N, g.tokens, g.targets, g.positions, g.doc_start, tok_loss, logits, mtp_logits, 0.0f, NULL};
    double loss = 0;
    v3_model_zero_grad(&m);
    CHECK_OK(v3_model_forward(&m, &b, &loss, &err), &err);

    float *ref_logits = golden_f32(&g, "logits", NULL);
    float *ref_loss = golden_f32(&g, "loss", NULL);
    double el = t_rel_err(logits, ref_logits, N * V);
    double eloss = fabs(m.loss_main - ref_loss[0]) / fabs(ref_loss[0]);
    printf("  %s: N=%lld logits rel err %.3e, loss %.7f vs %.7f (rel %.3e)\n", name, (long long)N, el,
           m.loss_main, ref_loss[0], eloss);
    CHECK(el <= TOL_FWD, "%s: logits rel err %.3e", name, el);
    CHECK(eloss <= TOL_FWD, "%s: loss rel err %.3e", name, eloss);
    /* per-token losses sum to the mean loss */
    double s = 0;
    int64_t nv = 0;
    for (int64_t t = 0; t < N; t++) {
        s += tok_loss[t];
        nv += g.targets[t] >= 0;
        if (g.targets[t] < 0) CHECK(tok_loss[t] == 0.0f, "%s: ignored token %lld has loss", name, (long long)t);
    }
    CHECK(fabs(s / nv - m.loss_main) < 1e-6 * fabs(m.loss_main), "%s: token losses do not average to the loss", name);
    if (mtp) {
        float *rl = golden_f32(&g, "mtp.logits", NULL);
        int64_t nvalid = 0;
        int32_t *valid = golden_i32(&g, "mtp.valid", &nvalid);
        double num = 0, den = 0;
        for (int64_t t = 0; t < N; t++) {
            if (!valid[t]) continue;
            for (int64_t v = 0; v < V; v++) {
                double d = (double)mtp_logits[t * V + v] - rl[t * V + v];
                num += d * d;
                den += (double)rl[t * V + v] * rl[t * V + v];
            }
        }
        double em = sqrt(num / den);
        float *rml = golden_f32(&g, "mtp.loss", NULL);
        float *rtot = golden_f32(&g, "mtp.total", NULL);
        double eml = fabs(m.loss_mtp - rml[0]) / fabs(rml[0]);
        double etot = fabs(loss - rtot[0]) / fabs(rtot[0]);
        printf("  %s: MTP logits rel err %.3e, MTP loss %.7f vs %.7f (rel %.3e), total rel %.3e\n",
               name, em, m.loss_mtp, rml[0], eml, etot);
        CHECK(em <= TOL_FWD, "%s: MTP logits rel err %.3e", name, em);
        CHECK(eml <= TOL_FWD, "%s: MTP loss rel err %.3e", name, eml);
        CHECK(etot <= TOL_FWD, "%s: total loss rel err %.3e", name, etot);
        free(rl);
        free(valid);
        free(rml);
        free(rtot);
    }

    CHECK_OK(v3_model_backward(&m, &err), &err);
    size_t gbytes = (size_t)m.table.total * sizeof(float);
    float *grads = malloc(gbytes);
    ctx->be->to_host(ctx, grads, m.grads, gbytes);
    check_grads(name, &m, &g, grads, 1.0);

    /* a second forward+backward without zero_grad doubles every parameter gradient: an op that
     * overwrote instead of accumulating would leave a relative error of 0.5 there. Not bit-exact:
     * a parameter fed by several contributions (chunks, shared embedding) sums them in another
     * order the second time. */
    CHECK_OK(v3_model_forward(&m, &b, NULL, &err), &err);
    CHECK_OK(v3_model_backward(&m, &err), &err);
    float *grads2 = malloc(gbytes);
    ctx->be->to_host(ctx, grads2, m.grads, gbytes);
    double worst2 = 0;
    for (int i = 0; i < m.table.n; i++) {
        const v3_param_info *p = &m.table.p[i];
        float *twice = malloc((size_t)p->numel * sizeof(float));
        for (int64_t j = 0; j < p->numel; j++) twice[j] = 2.0f * grads[p->offset + j];
        double e = t_rel_err(grads2 + p->offset, twice, p->numel);
        CHECK(e <= 1e-6, "%s: second backward: %s is not doubled (rel err %.3e)", name, p->name, e);
        if (e > worst2) worst2 = e;
        free(twice);
    }
    printf("  %s: second backward doubles every gradient (worst rel err %.1e)\n", name, worst2);
    int64_t bad = 0;

    /* every layer recomputed in backward: identical gradients, smaller arena */
    unsigned char re[64];
    memset(re, 1, sizeof re);
    v3_model_options o2 = o;
    o2.recompute = re;
    v3_model m2;
    rc = v3_model_init(&m2, &g.cfg, ctx, N, &o2, &err);
    CHECK_OK(rc, &err);
    if (rc == 0) {
        ctx->be->copy(ctx, m2.params, m.params, gbytes);
        v3_model_zero_grad(&m2);
        double loss2 = 0;
        CHECK_OK(v3_model_forward(&m2, &b, &loss2, &err), &err);
        CHECK_OK(v3_model_backward(&m2, &err), &err);
        ctx->be->to_host(ctx, grads2, m2.grads, gbytes);
        CHECK(loss2 == loss, "%s: recompute changed the loss (%.9g vs %.9g)", name, loss2, loss);
        bad = 0;
        for (int64_t i = 0; i < m.table.total; i++)
            if (grads2[i] != grads[i]) bad++;
        CHECK(bad == 0, "%s: recompute changed %lld gradient entries", name, (long long)bad);
        CHECK(m2.arena.planned < m.arena.planned, "%s: recompute did not shrink the arena (%zu vs %zu)",
              name, m2.arena.planned, m.arena.planned);
        printf("  %s: arena %zu B, all layers recomputed %zu B; gradients identical\n", name,
               m.arena.planned, m2.arena.planned);
        v3_model_free(&m2);
    }

    free(grads);
    free(grads2);
    free(ref_logits);
    free(ref_loss);
    free(logits);
    free(mtp_logits);
    free(tok_loss);
    v3_model_free(&m);
    golden_close(&g);
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    for (int absorb = 0; absorb <= 1; absorb++) {
        run_config("a", &ctx, 1, absorb);
        run_config("b", &ctx, 0, absorb);
        run_config("c", &ctx, 0, absorb);
    }
    v3_kctx_free(&ctx);
    return t_finish("test_model_golden");
}
