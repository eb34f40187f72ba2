/* model.c — the whole DeepSeek-V3 network: parameter/gradient buffers, the activation plan,
 * embedding → decoder layers → final norm → chunked loss (+ MTP, + balance loss), and their
 * backward in reverse order. Block math lives in mla.c, moe.c, mlp.c, loss.c, mtp.c. */
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

v3_model_options v3_model_default_options(void) {
    v3_model_options o = {0};
    o.mtp = 0;
    o.mtp_lambda = V3_MTP_LAMBDA_DEFAULT;
    o.balance_alpha = 0.0f;
    o.training = 1;
    o.recompute = NULL;
    o.loss_chunk = 0;
    return o;
}

static int is_moe(const v3_model *m, int l) {
    if (l >= m->cfg.n_layer) return m->cfg.n_routed_experts > 0; /* the MTP layer */
    return v3_config_is_moe_layer(&m->cfg, l);
}


/* ---- parameter pointers by Hugging Face name ---- */
static float *ptr(const v3_model *m, float *base, const char *fmt, int l, int e) {
    char name[128];
    if (e >= 0)
        snprintf(name, sizeof name, fmt, l, e);
    else if (l >= 0)
        snprintf(name, sizeof name, fmt, l);
    else
        snprintf(name, sizeof name, "%s", fmt);
    int i = v3_params_find(&m->table, name);
    if (i < 0 || !base) return NULL;
    return base + m->table.p[i].offset;
}

/* gate_proj and up_proj must be adjacent to form one [2I, C] matrix (params.c's order).
 * prefix_fmt names the FFN, e.g. "model.layers.%d.mlp.experts.%d". */
static int adjacent(const v3_model *m, const char *prefix_fmt, int l, int e, v3_err *err) {
    char pre[96], g[128], u[128]; /* names are at most 95 chars (params.h) */
    if (e >= 0) snprintf(pre, sizeof pre, prefix_fmt, l, e); else snprintf(pre, sizeof pre, prefix_fmt, l);
    snprintf(g, sizeof g, "%s.gate_proj.weight", pre);
    snprintf(u, sizeof u, "%s.up_proj.weight", pre);
    int ig = v3_params_find(&m->table, g), iu = v3_params_find(&m->table, u);
    if (ig < 0 || iu < 0 || m->table.p[iu].offset != m->table.p[ig].offset + m->table.p[ig].numel)
        return v3_errf(err, V3_EINVAL, "parameter table: %s and %s are not adjacent", g, u);
    return V3_OK;
}

static int layer_ptrs(v3_model *m, float *base, int l, v3_layer_w *w, int is_grad, v3_err *err) {
    const v3_config *c = &m->cfg;
    memset(w, 0, sizeof *w);
    w->in_ln = ptr(m, base, "model.layers.%d.input_layernorm.weight", l, -1);
    w->q = ptr(m, base, "model.layers.%d.self_attn.q_proj.weight", l, -1);
    w->q_a = ptr(m, base, "model.layers.%d.self_attn.q_a_proj.weight", l, -1);
    w->q_a_ln = ptr(m, base, "model.layers.%d.self_attn.q_a_layernorm.weight", l, -1);
    w->q_b = ptr(m, base, "model.layers.%d.self_attn.q_b_proj.weight", l, -1);
    w->kv_a = ptr(m, base, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l, -1);
    w->kv_a_ln = ptr(m, base, "model.layers.%d.self_attn.kv_a_layernorm.weight", l, -1);
    w->kv_b = ptr(m, base, "model.layers.%d.self_attn.kv_b_proj.weight", l, -1);
    w->o = ptr(m, base, "model.layers.%d.self_attn.o_proj.weight", l, -1);
    w->post_ln = ptr(m, base, "model.layers.%d.post_attention_layernorm.weight", l, -1);
    if (!is_moe(m, l)) {
        w->gate_up = ptr(m, base, "model.layers.%d.mlp.gate_proj.weight", l, -1);
        w->down = ptr(m, base, "model.layers.%d.mlp.down_proj.weight", l, -1);
        return adjacent(m, "model.layers.%d.mlp", l, -1, err);
    }
    w->router = ptr(m, base, "model.layers.%d.mlp.gate.weight", l, -1);
    if (!is_grad) w->bias = ptr(m, base, "model.layers.%d.mlp.gate.e_score_correction_bias", l, -1);
    int E = c->n_routed_experts;
    w->exp_gate_up = calloc((size_t)E, sizeof(float *));
    w->exp_down = calloc((size_t)E, sizeof(float *));
    if (!w->exp_gate_up || !w->exp_down) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int e = 0; e < E; e++) {
        w->exp_gate_up[e] = ptr(m, base, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
        w->exp_down[e] = ptr(m, base, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
        int rc = adjacent(m, "model.layers.%d.mlp.experts.%d", l, e, err);
        if (rc) return rc;
    }
    if (c->n_shared_experts > 0) {
        w->sh_gate_up = ptr(m, base, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l, -1);
        w->sh_down = ptr(m, base, "model.layers.%d.mlp.shared_experts.down_proj.weight", l, -1);
        return adjacent(m, "model.layers.%d.mlp.shared_experts", l, -1, err);
    }
    return V3_OK;
}

/* ---- the activation plan: the same carving runs to plan and to hand out pointers ---- */
#define TAKE_F(n) ((float *)v3_arena_take(ar, (size_t)(n), sizeof(float)))
#define TAKE_I(n) ((int32_t *)v3_arena_take(ar, (size_t)(n), sizeof(int32_t)))

/* want_dense / want_moe: which FFN kinds this slot must hold (both for a shared recompute slot) */
static void carve_acts(v3_model *m, v3_arena *ar, v3_layer_acts *a, int want_dense, int want_moe) {
    const v3_config *c = &m->cfg;
    int64_t N = m->max_tokens, C = c->hidden_size, H = c->n_head;
    int64_t dqk = v3_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    int64_t E = c->n_routed_experts, K = c->num_experts_per_tok, R = N * K;
    int64_t Ie = c->moe_intermediate_size, Is = Ie * c->n_shared_experts;
    int64_t I = 0;
    if (want_dense) I = c->intermediate_size;
    if (want_moe && Is > I) I = Is;
    int64_t *counts = a->counts; /* host, kept */
    memset(a, 0, sizeof *a);
    a->counts = counts;
    a->xn1 = TAKE_F(N * C);
    a->rstd1 = TAKE_F(N);
    if (qr) {
        a->cq = TAKE_F(N * qr);
        a->rstd_q = TAKE_F(N);
        a->cqn = TAKE_F(N * qr);
    }
    a->q = TAKE_F(N * H * dqk);
    a->ckv = TAKE_F(N * (kvr + dr));
    a->rstd_kv = TAKE_F(N);
    if (m->opt.absorb) {
        a->qa = TAKE_F(N * H * (kvr + dr));
        a->lat = TAKE_F(N * (kvr + dr));
        a->olat = TAKE_F(N * H * kvr);
    } else {
        a->cn = TAKE_F(N * kvr);
        a->kv = TAKE_F(N * H * (dn + dv));
    }
    a->att = TAKE_F(N * H * dv);
    a->lse = TAKE_F(N * H);
    a->h_mid = TAKE_F(N * C);
    a->xn2 = TAKE_F(N * C);
    a->rstd2 = TAKE_F(N);
    if (I > 0) {
        a->gu = TAKE_F(N * 2 * I);
        a->act = TAKE_F(N * I);
    }
    if (want_moe) {
        a->rlogits = TAKE_F(N * E);
        a->scores = TAKE_F(N * E);
        a->topk_idx = TAKE_I(N * K);
        a->topk_w = TAKE_F(N * K);
        a->row_of = TAKE_I(R);
        a->src_of = TAKE_I(R);
        a->xperm = TAKE_F(R * C);
        a->gu_perm = TAKE_F(R * 2 * Ie);
        a->act_perm = TAKE_F(R * Ie);
        a->yperm = TAKE_F(R * C);
    }
}

static int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static void carve(v3_model *m, v3_arena *ar) {
    const v3_config *c = &m->cfg;
    int64_t N = m->max_tokens, C = c->hidden_size, H = c->n_head, V = c->vocab_size;
    int64_t dqk = v3_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    int64_t E = c->n_routed_experts, K = c->num_experts_per_tok, R = N * K;
    int64_t Ie = c->moe_intermediate_size, Is = Ie * c->n_shared_experts, I = c->intermediate_size;
    int LT = m->n_layers_total, L = c->n_layer, mtp = m->opt.mtp;

    v3_arena_group(ar, "batch inputs");
    m->d_tokens = TAKE_I(N);
    m->d_targets = TAKE_I(N);
    m->d_pos = TAKE_I(N);
    m->d_kv_lo = TAKE_I(N);
    m->d_kv_hi = TAKE_I(N);
    m->inv_freq = TAKE_F(dr / 2);
    m->rows.d_row = TAKE_I(N);
    m->rows.d_target = TAKE_I(N);
    if (mtp) {
        m->d_mtp_tokens = TAKE_I(N);
        m->mtp_rows.d_row = TAKE_I(N);
        m->mtp_rows.d_target = TAKE_I(N);
    }

    v3_arena_group(ar, "residual stream (layer inputs)");
    m->hs = TAKE_F((int64_t)(L + 1 + (mtp ? 2 : 0)) * N * C);

    int any_dense = 0, any_moe = 0;
    for (int l = 0; l < LT; l++) {
        if (m->opt.training && !m->recompute[l]) {
            v3_arena_group(ar, "layer activations (saved)");
            carve_acts(m, ar, &m->acts[l], !is_moe(m, l), is_moe(m, l));
        } else {
            if (is_moe(m, l)) any_moe = 1; else any_dense = 1;
        }
    }
    if (any_dense || any_moe) {
        v3_arena_group(ar, "recompute / inference slot");
        carve_acts(m, ar, &m->slot, any_dense, any_moe);
    }
    v3_arena_group(ar, "final norm, token losses");
    m->xf = TAKE_F(N * C);
    m->rstd_f = TAKE_F(N);
    m->tok_loss = TAKE_F(N);
    v3_arena_group(ar, "logits chunk");
    m->logits_chunk = TAKE_F(m->loss_chunk * V);
    m->tok_loss_scratch = TAKE_F(m->loss_chunk);
    m->x_rows = TAKE_F(m->loss_chunk * C);
    if (!m->opt.absorb) {
        v3_arena_group(ar, "attention keys (scratch)");
        m->Kbuf = TAKE_F(N * H * dqk);
    }
    if (mtp) {
        v3_arena_group(ar, "MTP module");
        m->mtp_e = TAKE_F(N * C);
        m->mtp_rstd_e = TAKE_F(N);
        m->mtp_rstd_h = TAKE_F(N);
        m->mtp_cat = TAKE_F(N * 2 * C);
        m->mtp_xf = TAKE_F(N * C);
        m->mtp_rstd_f = TAKE_F(N);
        m->mtp_tok_loss = TAKE_F(N);
    }
    if (!m->opt.training) return;

    v3_arena_group(ar, "backward scratch");
    m->dh = TAKE_F(N * C);
    m->dx = TAKE_F(N * C);
    m->d_xf = TAKE_F(N * C);
    /* a union: the attention part, the FFN part and the MTP part are never live together */
    size_t base = v3_arena_mark(ar), high = base;
    m->d_q = TAKE_F(N * H * dqk);
    if (m->opt.absorb) {
        m->d_qa = TAKE_F(N * H * (kvr + dr));
        m->d_Kl = TAKE_F(N * H * (kvr + dr));
        m->d_Vl = TAKE_F(N * H * kvr);
        m->d_olat = TAKE_F(N * H * kvr);
        m->d_lat = TAKE_F(N * (kvr + dr));
    } else {
        m->d_K = TAKE_F(N * H * dqk);
        m->d_V = TAKE_F(N * H * dv);
        m->d_kv = TAKE_F(N * H * (dn + dv));
        m->d_cn = TAKE_F(N * kvr);
    }
    m->d_ckv = TAKE_F(N * (kvr + dr));
    m->d_cqn = qr ? TAKE_F(N * qr) : NULL;
    m->d_cq = qr ? TAKE_F(N * qr) : NULL;
    m->d_att = TAKE_F(N * H * dv);
    v3_arena_rewind(ar, base, &high);
    int has_dense = 0;
    for (int l = 0; l < LT; l++) has_dense |= !is_moe(m, l);
    int64_t ffn_w = max3(has_dense ? N * I : 0, Is > 0 ? N * Is : 0, E > 0 ? R * Ie : 0);
    m->d_gu = TAKE_F(2 * ffn_w);
    m->d_act = TAKE_F(ffn_w);
    if (E > 0) {
        m->d_yperm = TAKE_F(R * C);
        m->d_xperm = TAKE_F(R * C);
        m->d_topk_w = TAKE_F(N * K);
        m->d_rlogits = TAKE_F(N * E);
    }
    v3_arena_rewind(ar, base, &high);
    if (mtp) {
        m->d_mtp_cat = TAKE_F(N * 2 * C);
        m->d_mtp_e = TAKE_F(N * C);
    }
    v3_arena_rewind(ar, base, &high);
    v3_arena_advance_to(ar, high);
}

int v3_model_init(v3_model *m, const v3_config *cfg, v3_kctx *ctx, int64_t max_tokens,
                  const v3_model_options *opt, v3_err *err) {
    memset(m, 0, sizeof *m);
    int rc = v3_config_validate(cfg, err);
    if (rc) return rc;
    if (max_tokens < 1) return v3_errf(err, V3_EINVAL, "model: max_tokens must be ≥ 1");
    m->cfg = *cfg;
    m->opt = opt ? *opt : v3_model_default_options();
    m->opt.recompute = NULL;
    m->ctx = ctx;
    m->max_tokens = max_tokens;
    /* auto: about 128 MiB of fp32 logits per chunk (259 tokens at V = 129280, 16..1024 tokens) in
     * host memory, about 1 GiB (2076 tokens, 16..4096) on a device. Each chunk streams the whole
     * lm_head twice (logits, dx) and its gradient once in and out, ~1 GB on `small`: with 64-token
     * chunks that traffic cost ~8 % of a CPU step at 256 tokens; on a device a 64-row head GEMM
     * would also leave most of the GPU idle (and in bf16 re-round the head per chunk) */
    if (m->opt.loss_chunk > 0) {
        m->loss_chunk = m->opt.loss_chunk;
    } else {
        int dev = ctx && ctx->be && !ctx->be->host_visible;
        int64_t floats = dev ? 256 << 20 : 32 << 20, most = dev ? 4096 : 1024;
        m->loss_chunk = floats / cfg->vocab_size;
        if (m->loss_chunk < 16) m->loss_chunk = 16;
        if (m->loss_chunk > most) m->loss_chunk = most;
    }
    if (m->loss_chunk > max_tokens) m->loss_chunk = max_tokens;
    if (m->opt.mtp) {
        if (cfg->num_nextn_predict_layers < 1)
            return v3_errf(err, V3_EINVAL, "model: MTP requested but num_nextn_predict_layers is 0");
        if (cfg->num_nextn_predict_layers > 1)
            return v3_errf(err, V3_EUNSUPPORTED, "model: MTP depth %d (only depth 1 is implemented)",
                           cfg->num_nextn_predict_layers);
    }
    if (!cfg->rope_interleave)
        return v3_errf(err, V3_EUNSUPPORTED,
                       "model: rope_interleave false (half-split rope rows) is not supported; the "
                       "rope op rotates interleaved pairs as the released checkpoints store them");
    m->n_layers_total = cfg->n_layer + (m->opt.mtp ? 1 : 0);
    int LT = m->n_layers_total;

    rc = v3_params_build(&m->table, cfg, m->opt.mtp, err);
    if (rc) goto fail;
    m->recompute = calloc((size_t)LT, 1);
    m->lw = calloc((size_t)LT, sizeof *m->lw);
    m->lg = calloc((size_t)LT, sizeof *m->lg);
    m->acts = calloc((size_t)LT, sizeof *m->acts);
    m->load_last = calloc((size_t)LT, sizeof *m->load_last);
    m->load_accum = calloc((size_t)LT, sizeof *m->load_accum);
    m->seq_off = calloc((size_t)max_tokens + 1, sizeof *m->seq_off);
    m->host_tok_loss = calloc((size_t)max_tokens, sizeof(float));
    m->host_tok_weight = calloc((size_t)max_tokens, sizeof(float));
    m->rows.row = calloc((size_t)max_tokens, sizeof(int32_t));
    m->mtp_rows.row = calloc((size_t)max_tokens, sizeof(int32_t));
    m->descs = calloc((size_t)(cfg->n_routed_experts > 0 ? cfg->n_routed_experts : 1), sizeof *m->descs);
    if (!m->recompute || !m->lw || !m->lg || !m->acts || !m->load_last || !m->load_accum ||
        !m->seq_off || !m->host_tok_loss || !m->host_tok_weight || !m->rows.row ||
        !m->mtp_rows.row || !m->descs) {
        rc = v3_errf(err, V3_ENOMEM, "model: out of memory");
        goto fail;
    }
    if (opt && opt->recompute) memcpy(m->recompute, opt->recompute, (size_t)LT);

    size_t pbytes = (size_t)m->table.total * sizeof(float);
    m->params = ctx->be->alloc(ctx, pbytes);
    if (!m->params) {
        rc = v3_errf(err, V3_ENOMEM, "model: cannot allocate %.1f MiB of parameters", pbytes / 1048576.0);
        goto fail;
    }
    if (m->opt.training) {
        m->grads = ctx->be->alloc(ctx, pbytes);
        if (!m->grads) {
            rc = v3_errf(err, V3_ENOMEM, "model: cannot allocate %.1f MiB of gradients", pbytes / 1048576.0);
            goto fail;
        }
    }
    for (int l = 0; l < LT; l++) {
        if ((rc = layer_ptrs(m, m->params, l, &m->lw[l], 0, err))) goto fail;
        if ((rc = layer_ptrs(m, m->grads, l, &m->lg[l], 1, err))) goto fail;
        if (is_moe(m, l)) {
            m->load_last[l] = calloc((size_t)cfg->n_routed_experts, sizeof(int64_t));
            m->load_accum[l] = calloc((size_t)cfg->n_routed_experts, sizeof(int64_t));
            m->acts[l].counts = calloc((size_t)cfg->n_routed_experts, sizeof(int64_t));
            if (!m->load_last[l] || !m->load_accum[l] || !m->acts[l].counts) {
                rc = v3_errf(err, V3_ENOMEM, "model: out of memory");
                goto fail;
            }
        }
    }
    if (cfg->n_routed_experts > 0) {
        m->slot.counts = calloc((size_t)cfg->n_routed_experts, sizeof(int64_t));
        if (!m->slot.counts) {
            rc = v3_errf(err, V3_ENOMEM, "model: out of memory");
            goto fail;
        }
    }
    m->embed = ptr(m, m->params, "model.embed_tokens.weight", -1, -1);
    m->final_ln = ptr(m, m->params, "model.norm.weight", -1, -1);
    m->head = ptr(m, m->params, "lm_head.weight", -1, -1);
    m->g_embed = ptr(m, m->grads, "model.embed_tokens.weight", -1, -1);
    m->g_final_ln = ptr(m, m->grads, "model.norm.weight", -1, -1);
    m->g_head = ptr(m, m->grads, "lm_head.weight", -1, -1);
    if (m->opt.mtp) {
        int L = cfg->n_layer;
        m->mtp_enorm = ptr(m, m->params, "model.layers.%d.enorm.weight", L, -1);
        m->mtp_hnorm = ptr(m, m->params, "model.layers.%d.hnorm.weight", L, -1);
        m->mtp_eh = ptr(m, m->params, "model.layers.%d.eh_proj.weight", L, -1);
        m->mtp_snorm = ptr(m, m->params, "model.layers.%d.shared_head.norm.weight", L, -1);
        m->g_mtp_enorm = ptr(m, m->grads, "model.layers.%d.enorm.weight", L, -1);
        m->g_mtp_hnorm = ptr(m, m->grads, "model.layers.%d.hnorm.weight", L, -1);
        m->g_mtp_eh = ptr(m, m->grads, "model.layers.%d.eh_proj.weight", L, -1);
        m->g_mtp_snorm = ptr(m, m->grads, "model.layers.%d.shared_head.norm.weight", L, -1);
    }

    /* plan, allocate, carve, and check the two passes agree */
    v3_arena_begin_plan(&m->arena, ctx);
    carve(m, &m->arena);
    if ((rc = v3_arena_alloc(&m->arena, err))) goto fail;
    carve(m, &m->arena);
    if ((rc = v3_arena_check(&m->arena, err))) goto fail;
    for (int l = 0; l < LT; l++)
        if (!m->opt.training || m->recompute[l]) {
            int64_t *keep = m->acts[l].counts;
            m->acts[l] = m->slot;
            /* a recomputed layer writes the slot's counts; its own stay for the statistics */
            (void)keep;
            if (keep && keep != m->slot.counts) free(keep);
        }

    int64_t half = cfg->qk_rope_head_dim / 2;
    float *inv = malloc((size_t)(half > 0 ? half : 1) * sizeof(float));
    if (!inv) {
        rc = v3_errf(err, V3_ENOMEM, "model: out of memory");
        goto fail;
    }
    v3_config_rope_inv_freq(cfg, inv);
    ctx->be->to_device(ctx, m->inv_freq, inv, (size_t)half * sizeof(float));
    free(inv);
    m->softmax_scale = (float)v3_config_softmax_scale(cfg);
    return V3_OK;
fail:
    v3_model_free(m);
    return rc;
}

void v3_model_free(v3_model *m) {
    if (!m || !m->ctx) return;
    v3_kctx *ctx = m->ctx;
    for (int l = 0; l < m->n_layers_total; l++) {
        if (m->lw) {
            free(m->lw[l].exp_gate_up);
            free(m->lw[l].exp_down);
        }
        if (m->lg) {
            free(m->lg[l].exp_gate_up);
            free(m->lg[l].exp_down);
        }
        if (m->load_last) free(m->load_last[l]);
        if (m->load_accum) free(m->load_accum[l]);
        if (m->acts && m->acts[l].counts != m->slot.counts) free(m->acts[l].counts);
    }
    free(m->slot.counts);
    free(m->lw);
    free(m->lg);
    free(m->acts);
    free(m->load_last);
    free(m->load_accum);
    free(m->recompute);
    free(m->seq_off);
    free(m->host_tok_loss);
    free(m->host_tok_weight);
    free(m->rows.row);
    free(m->mtp_rows.row);
    free(m->descs);
    v3_arena_free(&m->arena);
    ctx->be->free(ctx, m->params);
    ctx->be->free(ctx, m->grads);
    v3_params_free(&m->table);
    memset(m, 0, sizeof *m);
}

int v3_model_load(v3_model *m, const char *dir, v3_err *err) {
    size_t bytes = (size_t)m->table.total * sizeof(float);
    float *host = malloc(bytes ? bytes : 1);
    if (!host) return v3_errf(err, V3_ENOMEM, "model: cannot allocate %.1f MiB host buffer", bytes / 1048576.0);
    /* keep current values where the checkpoint has no MTP tensors */
    m->ctx->be->to_host(m->ctx, host, m->params, bytes);
    int rc = v3_checkpoint_load(dir, &m->table, host, V3_CKPT_ALLOW_MISSING_MTP | V3_CKPT_IGNORE_UNEXPECTED, err);
    if (rc == V3_OK) m->ctx->be->to_device(m->ctx, m->params, host, bytes);
    free(host);
    v3_model_weights_changed(m); /* also after a failed load: params may be partly written */
    return rc;
}

void v3_model_weights_changed(v3_model *m) { m->weights_version++; }

void v3_model_sync_mtp_copies(v3_model *m) {
    if (!m->opt.mtp) return;
    int L = m->cfg.n_layer;
    size_t bytes = (size_t)(m->cfg.vocab_size * m->cfg.hidden_size) * sizeof(float);
    float *e = ptr(m, m->params, "model.layers.%d.embed_tokens.weight", L, -1);
    float *h = ptr(m, m->params, "model.layers.%d.shared_head.head.weight", L, -1);
    if (e) m->ctx->be->copy(m->ctx, e, m->embed, bytes);
    if (h) m->ctx->be->copy(m->ctx, h, m->head, bytes);
}

void v3_model_zero_grad(v3_model *m) {
    if (m->grads) m->ctx->be->memset0(m->ctx, m->grads, (size_t)m->table.total * sizeof(float));
}

/* ---- one decoder layer ---- */
void v3_layer_forward(v3_model *m, int layer, const float *h, v3_layer_acts *a, float *out,
                      int count_load) {
    v3_mla_forward(m, layer, h, a);
    v3_ffn_forward(m, layer, a, out, count_load);
}

void v3_layer_backward(v3_model *m, int layer, const float *h, float *out, float *dh) {
    v3_layer_acts *a = &m->acts[layer];
    if (m->recompute[layer]) v3_layer_forward(m, layer, h, a, out, 0);
    v3_ffn_backward(m, layer, a, dh);
    v3_mla_backward(m, layer, h, a, dh);
}

/* ---- batch checks and device inputs ---- */
static int take_token_weight(v3_model *m, const float *w, v3_err *err) {
    for (int64_t t = 0; t < m->N; t++)
        if (!isfinite(w[t]))
            return v3_errf(err, V3_ERANGE, "batch: token_weight[%lld] is not finite", (long long)t);
    memcpy(m->host_tok_weight, w, (size_t)m->N * sizeof(float));
    m->use_tok_weight = 1;
    return V3_OK;
}

int v3_model_set_token_weight(v3_model *m, const float *w, int64_t N, v3_err *err) {
    if (!m->have_forward || N != m->N)
        return v3_errf(err, V3_EINVAL, "model: token weights for %lld tokens, the last forward had %lld",
                       (long long)N, m->have_forward ? (long long)m->N : 0LL);
    return take_token_weight(m, w, err);
}

/* A head's loss rows (model.h) from its targets (host [N]); tmp: host [N] scratch. */
static void set_loss_rows(v3_model *m, v3_loss_rows *r, const int32_t *targets, int32_t *tmp) {
    int64_t N = m->N, k = 0;
    for (int64_t t = 0; t < N; t++)
        if (targets[t] >= 0) r->row[k++] = (int32_t)t;
    r->n_valid = k;
    for (int64_t t = 0; t < N; t++)
        if (targets[t] < 0) r->row[k++] = (int32_t)t;
    for (int64_t i = 0; i < N; i++) tmp[i] = targets[r->row[i]];
    m->ctx->be->to_device(m->ctx, r->d_row, r->row, (size_t)N * sizeof(int32_t));
    m->ctx->be->to_device(m->ctx, r->d_target, tmp, (size_t)N * sizeof(int32_t));
}

static int prepare_batch(v3_model *m, const v3_batch *b, v3_err *err) {
    const v3_config *c = &m->cfg;
    int64_t N = b->N;
    if (N < 1 || N > m->max_tokens)
        return v3_errf(err, V3_ERANGE, "batch: %lld tokens, the model was planned for 1..%lld",
                       (long long)N, (long long)m->max_tokens);
    if (!b->tokens || !b->targets || !b->positions || !b->doc_start)
        return v3_errf(err, V3_EINVAL, "batch: tokens, targets, positions and doc_start are required");
    if (b->mtp_logits && !m->opt.mtp)
        return v3_errf(err, V3_EINVAL, "batch: mtp_logits requested but the model has no MTP module");
    int64_t nv = 0;
    m->n_seq = 0;
    for (int64_t t = 0; t < N; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
            return v3_errf(err, V3_ERANGE, "batch: token %lld is %d, outside the vocabulary [0, %lld)",
                           (long long)t, b->tokens[t], (long long)c->vocab_size);
        if (b->targets[t] >= c->vocab_size)
            return v3_errf(err, V3_ERANGE, "batch: target %lld is %d, outside the vocabulary",
                           (long long)t, b->targets[t]);
        if (b->positions[t] < 0)
            return v3_errf(err, V3_ERANGE, "batch: position %lld is negative", (long long)t);
        int32_t s = b->doc_start[t];
        int ok = s == t || (t > 0 && s == b->doc_start[t - 1]);
        if (!ok)
            return v3_errf(err, V3_ERANGE,
                           "batch: doc_start[%lld] = %d (must be %lld or doc_start[%lld])",
                           (long long)t, s, (long long)t, (long long)t - 1);
        if (s == t) m->seq_off[m->n_seq++] = t;
        if (b->targets[t] >= 0) nv++;
    }
    m->seq_off[m->n_seq] = N;
    m->n_valid = nv;
    m->N = N;
    if (!(b->temperature >= 0.0f) || !isfinite(b->temperature))
        return v3_errf(err, V3_ERANGE, "batch: temperature %g", (double)b->temperature);
    m->inv_temp = b->temperature > 0.0f && b->temperature != 1.0f ? 1.0f / b->temperature : 1.0f;
    m->use_tok_weight = 0;
    if (b->token_weight) {
        int rc = take_token_weight(m, b->token_weight, err);
        if (rc) return rc;
    }

    v3_kctx *ctx = m->ctx;
    int32_t *hi = malloc((size_t)N * sizeof(int32_t) * 4);
    if (!hi) return v3_errf(err, V3_ENOMEM, "batch: out of memory");
    for (int64_t t = 0; t < N; t++) hi[t] = (int32_t)(t + 1);
    ctx->be->to_device(ctx, m->d_tokens, b->tokens, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_targets, b->targets, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_pos, b->positions, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_lo, b->doc_start, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_hi, hi, (size_t)N * sizeof(int32_t));
    set_loss_rows(m, &m->rows, b->targets, hi + 3 * N);
    if (m->opt.mtp) {
        /* MTP at i reads token i+1 and predicts the target of i+1, inside one document only */
        int32_t *mt = hi + N, *mg = hi + 2 * N;
        int64_t nvm = 0;
        for (int64_t t = 0; t < N; t++) {
            int same = t + 1 < N && b->doc_start[t + 1] == b->doc_start[t];
            mt[t] = same ? b->tokens[t + 1] : b->tokens[t];
            mg[t] = same && b->targets[t + 1] >= 0 ? b->targets[t + 1] : -100;
            if (mg[t] >= 0) nvm++;
        }
        m->n_valid_mtp = nvm;
        ctx->be->to_device(ctx, m->d_mtp_tokens, mt, (size_t)N * sizeof(int32_t));
        set_loss_rows(m, &m->mtp_rows, mg, hi + 3 * N);
    }
    free(hi);
    return V3_OK;
}

static double mean_loss(v3_model *m, const float *d_loss, float *host_out, int64_t n_valid) {
    v3_kctx *c = m->ctx;
    c->be->to_host(c, m->host_tok_loss, d_loss, (size_t)m->N * sizeof(float));
    double s = 0;
    for (int64_t t = 0; t < m->N; t++) s += m->host_tok_loss[t];
    if (host_out) memcpy(host_out, m->host_tok_loss, (size_t)m->N * sizeof(float));
    return n_valid ? s / (double)n_valid : 0.0;
}

/* The main head's gradient of the loss of the last batch (or of its token weights). */
static v3_head_grad main_head_grad(v3_model *m) {
    v3_head_grad g = {m->n_valid ? 1.0f / (float)m->n_valid : 0.0f,
                      m->use_tok_weight ? m->host_tok_weight : NULL, m->d_xf};
    return g;
}

/* head_grad: also the heads' gradients, from the forward's own logits (the fused step): the main
 * head's dx into m->d_xf, the MTP head's into m->dx, both heads' into g_head (main first, as
 * backward adds them). Nothing else writes those buffers before the backward reads them. */
static int forward(v3_model *m, const v3_batch *b, double *loss, int head_grad, v3_err *err) {
    m->have_forward = 0;
    int rc = prepare_batch(m, b, err);
    if (rc) return rc;
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size;
    int L = m->cfg.n_layer;

    v3k(c, gather_rows, hs_at(m, 0), m->embed, m->d_tokens, N, C);
    m->loss_balance = 0;
    for (int l = 0; l < L; l++) {
        v3_layer_forward(m, l, hs_at(m, l), &m->acts[l], hs_at(m, l + 1), 1);
        /* the balance loss reads this layer's routing now: a recomputed layer's slot is reused */
        if (m->opt.balance_alpha > 0 && is_moe(m, l))
            m->loss_balance += v3_moe_balance_loss(m, &m->acts[l]);
    }
    v3k(c, rmsnorm_fwd, m->xf, C, m->rstd_f, hs_at(m, L), C, m->final_ln, N, C, m->cfg.rms_norm_eps);
    v3_head_grad g = main_head_grad(m);
    v3_loss_head(m, m->xf, &m->rows, m->inv_temp, m->tok_loss, b->logits, head_grad ? &g : NULL);
    m->loss_main = mean_loss(m, m->tok_loss, b->token_loss, m->n_valid);
    m->loss_mtp = 0;
    if (m->opt.mtp) {
        v3_mtp_forward(m, b->mtp_logits, head_grad);
        if (m->opt.balance_alpha > 0) m->loss_balance += v3_moe_balance_loss(m, &m->acts[L]);
        m->loss_mtp = mean_loss(m, m->mtp_tok_loss, NULL, m->n_valid_mtp);
    }
    m->loss_total = m->loss_main + (m->opt.mtp ? m->opt.mtp_lambda * m->loss_mtp : 0) + m->loss_balance;
    rc = v3k_check(c, err);
    if (rc) return rc;
    m->have_forward = 1;
    if (loss) *loss = m->loss_total;
    return V3_OK;
}

/* head_done: the forward computed the heads' gradients already (see forward). */
static int backward(v3_model *m, int head_done, v3_err *err) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size;
    int L = m->cfg.n_layer;
    if (!head_done) {
        v3_head_grad g = main_head_grad(m);
        v3_loss_head(m, m->xf, &m->rows, m->inv_temp, NULL, NULL, &g);
    }
    if (m->opt.mtp) v3_mtp_backward(m, head_done);
    v3k(c, rmsnorm_bwd, m->dh, C, m->g_final_ln, m->d_xf, C, hs_at(m, L), C, m->final_ln, m->rstd_f,
        N, C, 0);
    for (int l = L - 1; l >= 0; l--) v3_layer_backward(m, l, hs_at(m, l), hs_at(m, l + 1), m->dh);
    v3k(c, scatter_add_rows, m->g_embed, m->dh, m->d_tokens, N, C);
    return v3k_check(c, err);
}

int v3_model_forward(v3_model *m, const v3_batch *b, double *loss, v3_err *err) {
    return forward(m, b, loss, 0, err);
}

int v3_model_backward(v3_model *m, v3_err *err) {
    if (!m->opt.training) return v3_errf(err, V3_EINVAL, "model: initialised for inference only");
    if (!m->have_forward) return v3_errf(err, V3_EINVAL, "model: backward without a successful forward");
    return backward(m, 0, err);
}

int v3_model_forward_backward(v3_model *m, const v3_batch *b, double *loss, v3_err *err) {
    if (!m->opt.training) {
        m->have_forward = 0;
        return v3_errf(err, V3_EINVAL, "model: initialised for inference only");
    }
    double l = 0;
    int rc = forward(m, b, &l, 1, err);
    if (!rc) rc = backward(m, 1, err);
    if (!rc && loss) *loss = l;
    return rc;
}

const int64_t *v3_model_expert_load(const v3_model *m, int layer) {
    if (layer < 0 || layer >= m->n_layers_total) return NULL;
    return m->load_last[layer];
}
const int64_t *v3_model_expert_load_accum(const v3_model *m, int layer) {
    if (layer < 0 || layer >= m->n_layers_total) return NULL;
    return m->load_accum[layer];
}

void v3_model_update_router_bias(v3_model *m, float gamma) {
    int64_t E = m->cfg.n_routed_experts;
    float *b = E > 0 ? malloc((size_t)E * sizeof(float)) : NULL;
    for (int l = 0; l < m->n_layers_total; l++) {
        if (!m->load_accum[l]) continue;
        int64_t *load = m->load_accum[l];
        if (b && gamma != 0.0f && m->lw[l].bias) {
            double mean = 0;
            for (int64_t e = 0; e < E; e++) mean += (double)load[e];
            mean /= (double)E;
            m->ctx->be->to_host(m->ctx, b, m->lw[l].bias, (size_t)E * sizeof(float));
            /* b += γ·sign(mean − load): overloaded experts become less attractive */
            for (int64_t e = 0; e < E; e++) {
                double diff = mean - (double)load[e];
                b[e] += gamma * (float)((diff > 0) - (diff < 0));
            }
            m->ctx->be->to_device(m->ctx, m->lw[l].bias, b, (size_t)E * sizeof(float));
        }
        memset(load, 0, (size_t)E * sizeof(int64_t));
    }
    free(b);
}

size_t v3_model_device_bytes(const v3_model *m) {
    size_t p = (size_t)m->table.total * sizeof(float);
    return p + (m->grads ? p : 0) + m->arena.planned;
}

void v3_model_print_memory(const v3_model *m, FILE *f) {
    double p = (double)m->table.total * sizeof(float) / 1048576.0;
    fprintf(f, "memory plan for %lld tokens per step (%s)\n", (long long)m->max_tokens,
            m->ctx->be->name);
    fprintf(f, "  %-28s %10.2f MiB (%lld fp32)\n", "parameters", p, (long long)m->table.total);
    if (m->grads) fprintf(f, "  %-28s %10.2f MiB\n", "gradients", p);
    v3_arena_print(&m->arena, f);
    int n_re = 0;
    for (int l = 0; l < m->n_layers_total; l++) n_re += m->recompute[l] != 0;
    fprintf(f, "  layers recomputed in backward: %d of %d\n", n_re, m->n_layers_total);
    fprintf(f, "total %.2f MiB\n", (double)v3_model_device_bytes(m) / 1048576.0);
}
