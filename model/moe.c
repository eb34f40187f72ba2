/* moe.c — the FFN sublayer: post_attention_layernorm, then a dense SwiGLU (layer <
 * first_k_dense_replace) or the DeepSeek-V3 MoE (model-spec §5), then the residual add.
 *
 * The MoE is written as four steps with function boundaries, so that a distributed version can
 * replace dispatch/combine with all-to-alls without touching the rest:
 *   route    — fp32 router GEMM, sigmoid, bias-for-selection group-limited top-k (router op),
 *              and the dispatch plan (rows sorted by expert, stable in token order);
 *   dispatch — the identity exchange on one process: gather token rows into expert order;
 *   experts  — the local experts as grouped GEMMs over their contiguous row ranges;
 *   combine  — weighted sum back into token order, on top of the shared experts' output.
 * R = N·K permuted rows: no capacity limit, no dropped tokens. */
#include "model_internal.h"

#include <string.h>

typedef struct moe_dims {
    int64_t N, C, E, K, R, Ie, Is;
} moe_dims;

static moe_dims dims(const v3_model *m) {
    const v3_config *c = &m->cfg;
    moe_dims d = {m->N, c->hidden_size, c->n_routed_experts, c->num_experts_per_tok, 0,
                  c->moe_intermediate_size, c->moe_intermediate_size * c->n_shared_experts};
    d.R = d.N * d.K;
    return d;
}

static void router_params(const v3_model *m, int layer, const moe_dims *d, v3_layer_acts *a,
                          v3_router_params *p) {
    const v3_config *c = &m->cfg;
    *p = (v3_router_params){0};
    p->T = d->N;
    p->E = d->E;
    p->K = d->K;
    p->n_group = c->n_group;
    p->topk_group = c->topk_group;
    p->route_scale = c->routed_scaling_factor;
    p->norm_topk_prob = c->norm_topk_prob;
    p->logits = a->rlogits;
    p->bias = m->lw[layer].bias;
    p->scores = a->scores;
    p->topk_idx = a->topk_idx;
    p->topk_w = a->topk_w;
}

/* ---- route ---- */
static void moe_route(v3_model *m, int layer, const moe_dims *d, v3_layer_acts *a) {
    v3_kctx *c = m->ctx;
    /* the router GEMM stays fp32 on every backend (the paper keeps gating in high precision) */
    v3_linear_fwd(c, a->rlogits, a->xn2, m->lw[layer].router, d->N, d->C, d->E, 0.0f);
    v3_router_params p;
    router_params(m, layer, d, a, &p);
    v3k(c, router_fwd, &p);
    v3k(c, moe_plan, a->topk_idx, d->N, d->K, d->E, a->counts, a->row_of, a->src_of);
}

/* ---- dispatch / combine: identity exchange on one process ---- */
static void moe_dispatch(v3_model *m, const moe_dims *d, v3_layer_acts *a) {
    v3k(m->ctx, gather_rows, a->xperm, a->xn2, a->src_of, d->R, d->C);
}
static void moe_dispatch_backward(v3_model *m, const moe_dims *d, v3_layer_acts *a, float *dx) {
    v3k(m->ctx, scatter_add_rows, dx, m->d_xperm, a->src_of, d->R, d->C);
}
static void moe_combine(v3_model *m, const moe_dims *d, v3_layer_acts *a, float *out) {
    v3k(m->ctx, moe_combine_fwd, out, a->yperm, a->row_of, a->topk_w, d->N, d->K, d->C);
}
static void moe_combine_backward(v3_model *m, const moe_dims *d, v3_layer_acts *a, const float *dy) {
    v3k(m->ctx, moe_combine_bwd, m->d_yperm, m->d_topk_w, dy, a->yperm, a->row_of, a->topk_w, d->N,
        d->K, d->C);
}

/* ---- local experts ---- */
/* One grouped GEMM over the experts' row ranges. which: 0 gate_up fwd, 1 down fwd, 2 d_act,
 * 3 g_down, 4 d_xperm, 5 g_gate_up. */
static void experts_gemm(v3_model *m, int layer, const moe_dims *d, v3_layer_acts *a, int which) {
    v3_kctx *c = m->ctx;
    v3_gemm_desc *g = m->descs;
    const v3_layer_w *w = &m->lw[layer], *gw = &m->lg[layer];
    int64_t off = 0, I2 = 2 * d->Ie;
    for (int64_t e = 0; e < d->E; e++) {
        int64_t n = a->counts[e];
        switch (which) {
        case 0: g[e] = (v3_gemm_desc){n, I2, d->C, a->xperm + off * d->C, w->exp_gate_up[e], a->gu_perm + off * I2}; break;
        case 1: g[e] = (v3_gemm_desc){n, d->C, d->Ie, a->act_perm + off * d->Ie, w->exp_down[e], a->yperm + off * d->C}; break;
        case 2: g[e] = (v3_gemm_desc){n, d->Ie, d->C, m->d_yperm + off * d->C, w->exp_down[e], m->d_act + off * d->Ie}; break;
        case 3: g[e] = (v3_gemm_desc){d->C, d->Ie, n, m->d_yperm + off * d->C, a->act_perm + off * d->Ie, gw->exp_down[e]}; break;
        case 4: g[e] = (v3_gemm_desc){n, d->C, I2, m->d_gu + off * I2, w->exp_gate_up[e], m->d_xperm + off * d->C}; break;
        case 5: g[e] = (v3_gemm_desc){I2, d->C, n, m->d_gu + off * I2, a->xperm + off * d->C, gw->exp_gate_up[e]}; break;
        }
        off += n;
    }
    switch (which) {
    case 0: case 1: v3k(c, gemm_grouped, 0, 1, 1.0f, 0.0f, (int)d->E, g); break;  /* x · Wᵀ */
    case 2: case 4: v3k(c, gemm_grouped, 0, 0, 1.0f, 0.0f, (int)d->E, g); break;  /* dy · W */
    case 3: case 5: v3k(c, gemm_grouped, 1, 0, 1.0f, 1.0f, (int)d->E, g); break;  /* dW += dyᵀ x */
    }
}

static void moe_experts(v3_model *m, int layer, const moe_dims *d, v3_layer_acts *a) {
    experts_gemm(m, layer, d, a, 0);
    v3k(m->ctx, swiglu_fwd, a->act_perm, a->gu_perm, 2 * d->Ie, d->Ie, d->R, d->Ie);
    experts_gemm(m, layer, d, a, 1);
}

static void moe_experts_backward(v3_model *m, int layer, const moe_dims *d, v3_layer_acts *a) {
    experts_gemm(m, layer, d, a, 2);
    experts_gemm(m, layer, d, a, 3);
    v3k(m->ctx, swiglu_bwd, m->d_gu, m->d_act, a->gu_perm, 2 * d->Ie, d->Ie, d->R, d->Ie);
    experts_gemm(m, layer, d, a, 4);
    experts_gemm(m, layer, d, a, 5);
}

/* ---- the sublayer ---- */
void v3_ffn_forward(v3_model *m, int layer, v3_layer_acts *a, float *out, int count_load) {
    v3_kctx *c = m->ctx;
    const v3_layer_w *w = &m->lw[layer];
    moe_dims d = dims(m);
    v3k(c, rmsnorm_fwd, a->xn2, d.C, a->rstd2, a->h_mid, d.C, w->post_ln, d.N, d.C,
        m->cfg.rms_norm_eps);
    v3k(c, copy, out, a->h_mid, (size_t)(d.N * d.C) * sizeof(float));
    if (!w->router) {
        v3_mlp_forward(c, a->xn2, w->gate_up, w->down, d.N, d.C, m->cfg.intermediate_size, a->gu,
                       a->act, out, 1.0f);
        return;
    }
    moe_route(m, layer, &d, a);
    moe_dispatch(m, &d, a);
    moe_experts(m, layer, &d, a);
    if (d.Is > 0)
        v3_mlp_forward(c, a->xn2, w->sh_gate_up, w->sh_down, d.N, d.C, d.Is, a->gu, a->act, out, 1.0f);
    moe_combine(m, &d, a, out);
    if (count_load) {
        memcpy(m->load_last[layer], a->counts, (size_t)d.E * sizeof(int64_t));
        for (int64_t e = 0; e < d.E; e++) m->load_accum[layer][e] += a->counts[e];
    }
}

static void balance_params(v3_model *m, v3_layer_acts *a, v3_balance_params *p, float *dlogits,
                           double *loss) {
    const v3_config *c = &m->cfg;
    *p = (v3_balance_params){0};
    p->T = m->N;
    p->E = c->n_routed_experts;
    p->K = c->num_experts_per_tok;
    p->n_seq = m->n_seq;
    p->seq_off = m->seq_off;
    /* the op sums over sequences; the model reports their mean */
    p->alpha = m->opt.balance_alpha / (float)m->n_seq;
    p->scores = a->scores;
    p->topk_idx = a->topk_idx;
    p->dlogits = dlogits;
    p->loss = loss;
}

double v3_moe_balance_loss(v3_model *m, v3_layer_acts *a) {
    double loss = 0;
    v3_balance_params p;
    balance_params(m, a, &p, NULL, &loss);
    v3k(m->ctx, router_balance, &p);
    return loss;
}

void v3_ffn_backward(v3_model *m, int layer, v3_layer_acts *a, float *dh) {
    v3_kctx *c = m->ctx;
    const v3_layer_w *w = &m->lw[layer], *g = &m->lg[layer];
    moe_dims d = dims(m);
    if (!w->router) {
        v3_mlp_backward(c, a->xn2, w->gate_up, w->down, g->gate_up, g->down, d.N, d.C,
                        m->cfg.intermediate_size, a->gu, a->act, dh, m->d_gu, m->d_act, m->dx, 0.0f);
    } else {
        moe_combine_backward(m, &d, a, dh);
        v3_router_params p;
        router_params(m, layer, &d, a, &p);
        p.dtopk_w = m->d_topk_w;
        p.dlogits = m->d_rlogits;
        v3k(c, router_bwd, &p);
        if (m->opt.balance_alpha > 0) {
            double unused = 0;
            v3_balance_params bp;
            balance_params(m, a, &bp, m->d_rlogits, &unused);
            v3k(c, router_balance, &bp);
        }
        v3_linear_bwd_x(c, m->dx, m->d_rlogits, w->router, d.N, d.C, d.E, 0.0f);
        v3_linear_bwd_w(c, g->router, m->d_rlogits, a->xn2, d.N, d.C, d.E);
        if (d.Is > 0)
            v3_mlp_backward(c, a->xn2, w->sh_gate_up, w->sh_down, g->sh_gate_up, g->sh_down, d.N,
                            d.C, d.Is, a->gu, a->act, dh, m->d_gu, m->d_act, m->dx, 1.0f);
        moe_experts_backward(m, layer, &d, a);
        moe_dispatch_backward(m, &d, a, m->dx);
    }
    /* post_attention_layernorm; the residual passes dh through unchanged */
    v3k(c, rmsnorm_bwd, dh, d.C, g->post_ln, m->dx, d.C, a->h_mid, d.C, w->post_ln, a->rstd2, d.N,
        d.C, 1);
}
