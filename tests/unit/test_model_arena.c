/* test_model_arena.c — the activation plan and the batch contract of the model:
 *   - the arena's carving pass takes exactly the planned bytes (every option combination), and the
 *     planned size follows the formula's monotonic expectations (recompute and inference shrink it,
 *     a larger token budget grows it);
 *   - the inference-only model (no saved activations) gives the training model's logits bit for bit,
 *     and a batch of two documents gives each document's logits as if it ran alone;
 *   - bad batches are refused with a message (too many tokens, a doc_start that is not a
 *     document start, an out-of-vocabulary id), and backward without forward is refused;
 *   - the sequence-wise balance loss equals its definition (model-spec §7) recomputed here;
 *   - v3_model_sync_mtp_copies copies the shared embedding/head into the MTP module's copies.
 * (CPU backend: params are host memory, compared directly.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "testutil.h"

static void random_params(v3_model *m, v3_rng *r) {
    float *h = malloc((size_t)m->table.total * sizeof(float));
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        for (int64_t j = 0; j < p->numel; j++)
            h[p->offset + j] = p->kind == V3_PK_NORM ? 1.0f + 0.1f * v3_rng_normal(r)
                               : p->kind == V3_PK_BIAS ? 0.05f * v3_rng_normal(r)
                                                       : 0.2f * v3_rng_normal(r);
    }
    m->ctx->be->to_device(m->ctx, m->params, h, (size_t)m->table.total * sizeof(float));
    free(h);
}

static v3_config small_cfg(void) {
    v3_config c;
    v3_err err;
    v3_config_preset(&c, "tiny", &err);
    c.vocab_size = 200; /* the tiny preset's real vocabulary would dominate every size here */
    return c;
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) return 1;
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_model_arena"));
    v3_config cfg = small_cfg();

    /* ---- planned == carved for every combination; sizes move the right way ---- */
    /* "some" recomputes two MoE layers: they share one slot, so one layer's worth is saved */
    unsigned char all[8] = {1, 1, 1, 1, 1, 1, 1, 1}, some[8] = {0, 1, 1, 0, 0, 0, 0, 0};
    size_t sz[2][2][3];
    for (int mtp = 0; mtp < 2; mtp++)
        for (int train = 0; train < 2; train++)
            for (int re = 0; re < 3; re++) {
                v3_model_options o = v3_model_default_options();
                o.mtp = mtp;
                o.training = train;
                o.recompute = re == 0 ? NULL : re == 1 ? some : all;
                o.balance_alpha = 1e-4f;
                v3_model m;
                int rc = v3_model_init(&m, &cfg, &ctx, 64, &o, &err);
                CHECK_OK(rc, &err);
                if (rc) continue;
                CHECK(m.arena.off == m.arena.planned && m.arena.cap == m.arena.planned,
                      "mtp %d train %d recompute %d: carved %zu, planned %zu, allocated %zu", mtp, train,
                      re, m.arena.off, m.arena.planned, m.arena.cap);
                size_t groups = 0;
                for (int g = 0; g < m.arena.n_groups; g++) groups += m.arena.group_bytes[g];
                CHECK(groups == m.arena.planned, "breakdown sums to %zu, planned %zu", groups, m.arena.planned);
                sz[mtp][train][re] = m.arena.planned;
                v3_model_free(&m);
            }
    for (int mtp = 0; mtp < 2; mtp++) {
        CHECK(sz[mtp][1][1] < sz[mtp][1][0] && sz[mtp][1][2] < sz[mtp][1][1],
              "recompute must shrink the arena: %zu %zu %zu", sz[mtp][1][0], sz[mtp][1][1], sz[mtp][1][2]);
        CHECK(sz[mtp][0][0] < sz[mtp][1][2], "inference must need less than training");
        CHECK(sz[1][1][0] > sz[0][1][0], "MTP must add activations");
    }
    {
        v3_model_options o = v3_model_default_options();
        v3_model m1, m2;
        CHECK_OK(v3_model_init(&m1, &cfg, &ctx, 32, &o, &err), &err);
        CHECK_OK(v3_model_init(&m2, &cfg, &ctx, 64, &o, &err), &err);
        CHECK(m2.arena.planned > m1.arena.planned, "a larger token budget must grow the arena");
        v3_model_free(&m1);
        v3_model_free(&m2);
    }

    /* ---- the MTP module's physical copies of embed/head follow the main ones on sync ---- */
    {
        v3_model_options o = v3_model_default_options();
        o.mtp = 1;
        v3_model m;
        CHECK_OK(v3_model_init(&m, &cfg, &ctx, 8, &o, &err), &err);
        random_params(&m, &rng);
        v3_model_sync_mtp_copies(&m);
        int64_t n = cfg.vocab_size * cfg.hidden_size;
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.embed_tokens.weight", cfg.n_layer);
        int ie = v3_params_find(&m.table, name);
        snprintf(name, sizeof name, "model.layers.%d.shared_head.head.weight", cfg.n_layer);
        int ih = v3_params_find(&m.table, name);
        CHECK(ie >= 0 && ih >= 0, "MTP copies missing from the table");
        if (ie >= 0 && ih >= 0) {
            CHECK(memcmp(m.params + m.table.p[ie].offset, m.embed, (size_t)n * 4) == 0, "embed copy not synced");
            CHECK(memcmp(m.params + m.table.p[ih].offset, m.head, (size_t)n * 4) == 0, "head copy not synced");
        }
        v3_model_free(&m);
    }

    /* ---- inference == training forward; packed documents == separate runs ---- */
    int64_t n1 = 11, n2 = 9, N = n1 + n2, V = cfg.vocab_size;
    int32_t tok[20], tgt[20], pos[20], ds[20];
    for (int64_t t = 0; t < N; t++) tok[t] = (int32_t)v3_rng_below(&rng, (uint64_t)V);
    for (int64_t t = 0; t < N; t++) {
        int64_t s = t < n1 ? 0 : n1, e = t < n1 ? n1 : N;
        pos[t] = (int32_t)(t - s);
        ds[t] = (int32_t)s;
        tgt[t] = t + 1 < e ? tok[t + 1] : -100;
    }
    v3_model_options ot = v3_model_default_options(), oi = ot;
    ot.balance_alpha = 0.01f;
    oi.training = 0;
    v3_model mt, mi;
    CHECK_OK(v3_model_init(&mt, &cfg, &ctx, N, &ot, &err), &err);
    CHECK_OK(v3_model_init(&mi, &cfg, &ctx, N, &oi, &err), &err);
    random_params(&mt, &rng);
    ctx.be->copy(&ctx, mi.params, mt.params, (size_t)mt.table.total * sizeof(float));
    float *lt = calloc((size_t)(N * V), sizeof(float)), *li = calloc((size_t)(N * V), sizeof(float));
    float *ls = calloc((size_t)(N * V), sizeof(float));
    v3_batch b = {N, tok, tgt, pos, ds, NULL, lt, NULL, 0.0f, NULL};
    double loss_t = 0, loss_i = 0;
    CHECK_OK(v3_model_forward(&mt, &b, &loss_t, &err), &err);
    b.logits = li;
    CHECK_OK(v3_model_forward(&mi, &b, &loss_i, &err), &err);
    CHECK(memcmp(lt, li, (size_t)(N * V) * sizeof(float)) == 0, "inference logits differ from training logits");
    CHECK(mi.grads == NULL, "an inference model holds no gradients");
    CHECK_OK(!v3_model_backward(&mi, &err), &err);
    /* each document alone */
    for (int d = 0; d < 2; d++) {
        int64_t s = d ? n1 : 0, n = d ? n2 : n1;
        int32_t dsd[20];
        for (int64_t t = 0; t < n; t++) dsd[t] = 0;
        v3_batch bd = {n, tok + s, tgt + s, pos + s, dsd, NULL, ls, NULL, 0.0f, NULL};
        CHECK_OK(v3_model_forward(&mi, &bd, NULL, &err), &err);
        double e = t_rel_err(ls, lt + s * V, n * V);
        CHECK(e < 1e-6, "document %d alone vs packed: logits rel err %.3e", d, e);
    }

    /* ---- the balance loss against its definition, from the saved routing ---- */
    CHECK_OK(v3_model_forward(&mt, &b, &loss_t, &err), &err);
    {
        int64_t E = cfg.n_routed_experts, K = cfg.num_experts_per_tok;
        float *sc = malloc((size_t)(N * E) * sizeof(float));
        int32_t *ix = malloc((size_t)(N * K) * sizeof(int32_t));
        double want = 0;
        int64_t off[3] = {0, n1, N};
        for (int l = 0; l < cfg.n_layer; l++) {
            if (!v3_config_is_moe_layer(&cfg, l)) continue;
            ctx.be->to_host(&ctx, sc, mt.acts[l].scores, (size_t)(N * E) * sizeof(float));
            ctx.be->to_host(&ctx, ix, mt.acts[l].topk_idx, (size_t)(N * K) * sizeof(int32_t));
            for (int s = 0; s < 2; s++) {
                int64_t T = off[s + 1] - off[s];
                for (int64_t e = 0; e < E; e++) {
                    double P = 0, cnt = 0;
                    for (int64_t t = off[s]; t < off[s + 1]; t++) {
                        double z = 0;
                        for (int64_t j = 0; j < E; j++) z += sc[t * E + j];
                        P += sc[t * E + e] / z;
                        for (int64_t k = 0; k < K; k++) cnt += ix[t * K + k] == e;
                    }
                    double f = (double)E / (double)(K * T) * cnt;
                    want += ot.balance_alpha * f * (P / (double)T) / 2.0; /* mean over 2 sequences */
                }
            }
        }
        double rel = fabs(mt.loss_balance - want) / want;
        printf("  balance loss %.9f, definition %.9f (rel %.2e)\n", mt.loss_balance, want, rel);
        CHECK(rel < 1e-5, "balance loss %.9g vs definition %.9g", mt.loss_balance, want);
        CHECK(fabs(loss_t - (mt.loss_main + mt.loss_balance)) < 1e-9, "total = main + balance");
        free(sc);
        free(ix);
    }

    /* ---- bad batches ---- */
    v3_batch bad = b;
    bad.N = N + 1;
    CHECK(v3_model_forward(&mt, &bad, NULL, &err) == V3_ERANGE, "more tokens than planned must fail");
    CHECK(strstr(err.msg, "planned") != NULL, "message: %s", err.msg);
    int32_t ds_bad[20];
    memcpy(ds_bad, ds, sizeof ds_bad);
    ds_bad[15] = 3; /* points into the middle of another document */
    bad = b;
    bad.doc_start = ds_bad;
    CHECK(v3_model_forward(&mt, &bad, NULL, &err) == V3_ERANGE, "a bad doc_start must fail");
    CHECK(strstr(err.msg, "doc_start[15]") != NULL, "message: %s", err.msg);
    int32_t tok_bad[20];
    memcpy(tok_bad, tok, sizeof tok_bad);
    tok_bad[4] = (int32_t)V;
    bad = b;
    bad.tokens = tok_bad;
    CHECK(v3_model_forward(&mt, &bad, NULL, &err) == V3_ERANGE, "an out-of-vocabulary token must fail");
    CHECK(v3_model_backward(&mt, &err) != V3_OK, "backward after a failed forward must fail");

    free(lt);
    free(li);
    free(ls);
    v3_model_free(&mt);
    v3_model_free(&mi);
    v3_kctx_free(&ctx);
    return t_finish("test_model_arena");
}
