/* test_model_fd.c — the model's backward by finite differences where no external reference
 * exists: the MTP module (depth 1, λ-weighted) and the sequence-wise balance loss, both on, on
 * golden config "a" (tests/golden/data/model_a). For a random direction u over one tensor,
 * (L(p+εu) − L(p−εu)) / 2ε must match <dL/dp, u>. Routing is piecewise constant, so a perturbed
 * run must keep every expert selection; the test shrinks ε until it does.
 * Also checks the expert-load statistics and the aux-loss-free bias update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "testutil.h"

typedef struct fd_ctx {
    v3_model *m;
    v3_batch *b;
    v3_kctx *ctx;
    int32_t *sel;     /* (host) routing signature of the base point */
    int64_t sel_n;
} fd_ctx;

/* every MoE layer's topk_idx, concatenated (host) */
static int64_t selection(fd_ctx *f, int32_t *out) {
    v3_model *m = f->m;
    int64_t n = 0, NK = m->N * m->cfg.num_experts_per_tok;
    for (int l = 0; l < m->n_layers_total; l++) {
        if (!m->acts[l].topk_idx) continue;
        if (out) f->ctx->be->to_host(f->ctx, out + n, m->acts[l].topk_idx, (size_t)NK * sizeof(int32_t));
        n += NK;
    }
    return n;
}

static double loss_at(fd_ctx *f, int *same_sel) {
    double loss = 0;
    v3_err err;
    CHECK_OK(v3_model_forward(f->m, f->b, &loss, &err), &err);
    int32_t *s = malloc((size_t)f->sel_n * sizeof(int32_t));
    selection(f, s);
    *same_sel = memcmp(s, f->sel, (size_t)f->sel_n * sizeof(int32_t)) == 0;
    free(s);
    return loss;
}

static void fd_check(fd_ctx *f, const char *name, v3_rng *rng, const float *grads) {
    v3_model *m = f->m;
    int i = v3_params_find(&m->table, name);
    CHECK(i >= 0, "no parameter %s", name);
    if (i < 0) return;
    const v3_param_info *p = &m->table.p[i];
    float *w = malloc((size_t)p->numel * sizeof(float));
    float *u = malloc((size_t)p->numel * sizeof(float));
    float *wp = malloc((size_t)p->numel * sizeof(float));
    float *dev = m->params + p->offset;
    f->ctx->be->to_host(f->ctx, w, dev, (size_t)p->numel * sizeof(float));
    double analytic = 0, numeric = 0, loss0 = 0, eps_used = 0;
    int ok = 0, sparse = 0;
    /* first a dense direction; if every ε flips a routing decision (margins are ~1e-3 here),
     * a direction over 2 random entries, which moves the router inputs far less */
    for (sparse = 0; sparse < 2 && !ok; sparse++) {
        if (!sparse) {
            t_fill_normal(rng, u, p->numel, 1.0f);
        } else {
            memset(u, 0, (size_t)p->numel * sizeof(float));
            /* entries that carry gradient (an unused embedding row would test nothing) */
            for (int k = 0, guard = 0; k < 2 && guard < 100000; guard++) {
                int64_t j = (int64_t)v3_rng_below(rng, (uint64_t)p->numel);
                if (grads[p->offset + j] != 0.0f && u[j] == 0.0f) {
                    u[j] = 1.0f;
                    k++;
                }
            }
        }
        analytic = 0;
        for (int64_t j = 0; j < p->numel; j++) analytic += (double)grads[p->offset + j] * u[j];
        float eps = 1e-2f;
        for (int tries = 0; tries < (sparse ? 6 : 4) && !ok; tries++, eps *= 0.5f) {
            /* central differences at ε and ε/2, combined by Richardson extrapolation
             * (4·D(ε/2) − D(ε))/3: the O(ε²) curvature term cancels, which matters where a
             * random direction nearly cancels the first-order term */
            double D[2];
            ok = 1;
            for (int h = 0; h < 2; h++) {
                float e = h ? 0.5f * eps : eps;
                int s1, s2;
                for (int64_t j = 0; j < p->numel; j++) wp[j] = w[j] + e * u[j];
                f->ctx->be->to_device(f->ctx, dev, wp, (size_t)p->numel * sizeof(float));
                double lp = loss_at(f, &s1);
                for (int64_t j = 0; j < p->numel; j++) wp[j] = w[j] - e * u[j];
                f->ctx->be->to_device(f->ctx, dev, wp, (size_t)p->numel * sizeof(float));
                double lm = loss_at(f, &s2);
                D[h] = (lp - lm) / (2.0 * e);
                ok &= s1 && s2;
                loss0 = fabs(lp);
            }
            numeric = (4.0 * D[1] - D[0]) / 3.0;
            eps_used = 0.5 * eps * 0.6; /* the noise of 4/3·D(ε/2) + 1/3·D(ε), as one step */
        }
    }
    sparse--;
    f->ctx->be->to_device(f->ctx, dev, w, (size_t)p->numel * sizeof(float));
    CHECK(ok, "%s: every ε changed an expert selection", name);
    /* fp32 forward: each loss carries rounding noise of a few ulps (~1.2e-7·|L| each), which the
     * central difference divides by 2ε; a wrong term in a gradient is off by far more */
    double noise = 4.0 * 1.2e-7 * loss0 / (2.0 * eps_used);
    double tol = 2e-2 * fmax(fabs(analytic), 1e-2) + noise;
    double rel = fabs(numeric - analytic) / fmax(fabs(analytic), 1e-2);
    printf("  %-50s %s analytic %+.6e numeric %+.6e rel %.2e\n", name, sparse ? "sparse" : "dense ",
           analytic, numeric, rel);
    CHECK(fabs(numeric - analytic) <= tol, "%s: finite difference %.6e vs analytic %.6e (ε %.1e)",
          name, numeric, analytic, eps_used);
    free(w);
    free(u);
    free(wp);
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) return 1;
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_model_fd"));
    char dir[1024], path[1200];
    t_source_path("tests/golden/data/model_a", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    v3_config cfg;
    CHECK_OK(v3_config_load(&cfg, path, &err), &err);
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    v3_st_file ref;
    int rc = v3_st_open(&ref, path, &err);
    CHECK_OK(rc, &err);
    if (rc) return t_finish("test_model_fd");
    const v3_st_tensor *tt[4] = {v3_st_find(&ref, "tokens"), v3_st_find(&ref, "targets"),
                                 v3_st_find(&ref, "positions"), v3_st_find(&ref, "doc_start")};
    int64_t N = tt[0]->numel;
    int32_t *arr[4];
    for (int k = 0; k < 4; k++) {
        arr[k] = malloc((size_t)N * sizeof(int32_t));
        memcpy(arr[k], tt[k]->data, (size_t)N * sizeof(int32_t));
    }

    v3_model_options o = v3_model_default_options();
    o.mtp = 1;
    o.mtp_lambda = 0.3f;
    o.balance_alpha = 0.3f; /* far above DeepSeek's 1e-4 so its gradient is visible here */
    v3_model m;
    CHECK_OK(v3_model_init(&m, &cfg, &ctx, N, &o, &err), &err);
    CHECK_OK(v3_model_load(&m, dir, &err), &err);
    v3_batch b = {N, arr[0], arr[1], arr[2], arr[3], NULL, NULL, NULL, 0.0f, NULL};
    double loss = 0;
    v3_model_zero_grad(&m);
    CHECK_OK(v3_model_forward(&m, &b, &loss, &err), &err);
    printf("  loss %.6f = main %.6f + %.1f·MTP %.6f + balance %.6f\n", loss, m.loss_main,
           o.mtp_lambda, m.loss_mtp, m.loss_balance);
    CHECK(m.loss_balance > 0 && m.loss_mtp > 0, "balance and MTP losses are on");
    CHECK_OK(v3_model_backward(&m, &err), &err);
    size_t gbytes = (size_t)m.table.total * sizeof(float);
    float *grads = malloc(gbytes);
    ctx.be->to_host(&ctx, grads, m.grads, gbytes);

    fd_ctx f = {&m, &b, &ctx, NULL, 0};
    f.sel_n = selection(&f, NULL);
    f.sel = malloc((size_t)f.sel_n * sizeof(int32_t));
    selection(&f, f.sel);

    /* expert loads: every MoE layer routes exactly N·K rows */
    for (int l = 0; l < m.n_layers_total; l++) {
        const int64_t *ld = v3_model_expert_load(&m, l);
        if (!ld) continue;
        int64_t s = 0;
        for (int e = 0; e < cfg.n_routed_experts; e++) s += ld[e];
        CHECK(s == N * cfg.num_experts_per_tok, "layer %d routes %lld rows", l, (long long)s);
    }

    const char *names[] = {
        "model.layers.3.enorm.weight",
        "model.layers.3.hnorm.weight",
        "model.layers.3.eh_proj.weight",
        "model.layers.3.shared_head.norm.weight",
        "model.layers.3.self_attn.kv_b_proj.weight",
        "model.layers.3.self_attn.kv_a_proj_with_mqa.weight",
        "model.layers.3.mlp.gate.weight",
        "model.layers.3.mlp.experts.5.down_proj.weight",
        "model.layers.3.mlp.shared_experts.up_proj.weight",
        "model.layers.1.mlp.gate.weight",
        "model.layers.2.self_attn.q_b_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
        /* not model.embed_tokens.weight: any change of an embedding row moves every router input
         * of its token and flips near-tied selections at every ε tried; its gradient (main and
         * MTP paths) is compared with torch autograd in test_model_golden instead */
    };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) fd_check(&f, names[k], &rng, grads);

    /* aux-loss-free bias update: b += γ·sign(mean − load) over the loads accumulated so far */
    int L = cfg.n_layer; /* the MTP layer is a MoE layer too */
    int E = cfg.n_routed_experts;
    float *b0 = malloc((size_t)E * sizeof(float)), *b1 = malloc((size_t)E * sizeof(float));
    int64_t *load = malloc((size_t)E * sizeof(int64_t));
    memcpy(load, v3_model_expert_load_accum(&m, L), (size_t)E * sizeof(int64_t));
    ctx.be->to_host(&ctx, b0, m.lw[L].bias, (size_t)E * sizeof(float));
    v3_model_update_router_bias(&m, 1e-3f);
    ctx.be->to_host(&ctx, b1, m.lw[L].bias, (size_t)E * sizeof(float));
    double mean = 0;
    for (int e = 0; e < E; e++) mean += (double)load[e] / E;
    int changed = 0;
    for (int e = 0; e < E; e++) {
        double want = b0[e] + 1e-3f * (float)((mean > load[e]) - (mean < load[e]));
        CHECK(fabs(b1[e] - want) < 1e-7, "bias update: expert %d load %lld mean %.2f: %g -> %g", e,
              (long long)load[e], mean, b0[e], b1[e]);
        changed += b1[e] != b0[e];
    }
    CHECK(changed > 0, "the bias update changed nothing");
    for (int e = 0; e < E; e++)
        CHECK(v3_model_expert_load_accum(&m, L)[e] == 0, "load accumulator not reset after the update");

    free(b0);
    free(b1);
    free(load);
    free(f.sel);
    free(grads);
    for (int k = 0; k < 4; k++) free(arr[k]);
    v3_st_close(&ref);
    v3_model_free(&m);
    v3_kctx_free(&ctx);
    return t_finish("test_model_fd");
}
