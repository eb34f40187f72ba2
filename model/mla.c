/* mla.c — Multi-head Latent Attention (model-spec §3), forward and backward, with the input
 * RMSNorm and the residual add of the attention sublayer.
 *
 * Layouts (N tokens, H heads, dn/dr/dv = qk_nope/qk_rope/v head dims, dqk = dn + dr):
 *   q   [N, H, dqk]      rows of q_b_proj (or q_proj) are head-major, nope then rope
 *   ckv [N, kvr + dr]    latent c, then the ONE k_pe per token shared by every head
 *   kv  [N, H, dn + dv]  rows of kv_b_proj: k_nope then v per head
 * RoPE rotates the interleaved pairs of the rope dims in place (rope op), as the checkpoint is. */
#include "model_internal.h"

typedef struct mla_dims {
    int64_t N, C, H, dn, dr, dv, dqk, qr, kvr;
} mla_dims;

static mla_dims dims(const v3_model *m) {
    const v3_config *c = &m->cfg;
    mla_dims d = {m->N, c->hidden_size, c->n_head, c->qk_nope_head_dim, c->qk_rope_head_dim,
                  c->v_head_dim, 0, c->q_lora_rank, c->kv_lora_rank};
    d.dqk = d.dn + d.dr;
    return d;
}

/* K [N, H, dqk] = [k_nope_h ; k_pe] — the attention op takes one key tensor per head. */
static void assemble_keys(v3_model *m, const mla_dims *d, const v3_layer_acts *a) {
    v3_kctx *c = m->ctx;
    v3k(c, copy_3d, m->Kbuf, d->H * d->dqk, d->dqk, a->kv, d->H * (d->dn + d->dv), d->dn + d->dv,
        d->N, d->H, d->dn, 0);
    /* source head stride 0: k_pe broadcast to every head */
    v3k(c, copy_3d, m->Kbuf + d->dn, d->H * d->dqk, d->dqk, a->ckv + d->kvr, d->kvr + d->dr, 0,
        d->N, d->H, d->dr, 0);
}

static void attn_params(v3_model *m, const mla_dims *d, const v3_layer_acts *a, v3_attn_params *p) {
    *p = (v3_attn_params){0};
    p->T = d->N;
    p->Tk = d->N;
    p->H = d->H;
    p->d_qk = d->dqk;
    p->d_v = d->dv;
    p->scale = m->softmax_scale;
    p->kv_lo = m->d_kv_lo;
    p->kv_hi = m->d_kv_hi;
    p->q = a->q;
    p->q_st = d->H * d->dqk;
    p->q_sh = d->dqk;
    p->k = m->Kbuf;
    p->k_st = d->H * d->dqk;
    p->k_sh = d->dqk;
    p->v = a->kv + d->dn; /* v sits after k_nope inside each head's kv_b rows */
    p->v_st = d->H * (d->dn + d->dv);
    p->v_sh = d->dn + d->dv;
    p->out = a->att;
    p->lse = a->lse;
}

/* ---- absorbed form (model-spec §3): latent keys/values shared by every head ----
 *   qa[t, h]  = W_UK_hᵀ q_nope[t, h] ‖ q_pe[t, h]            [kvr + dr]
 *   lat[s]    = kv_a_layernorm(c[s]) ‖ k_pe[s]               [kvr + dr]  (the cache entry)
 *   olat[t,h] = softmax_s(scale · qa·lat[s]) · lat[s][:kvr]   [kvr]
 *   att[t, h] = W_UV_h olat[t, h]                             [dv]
 * W_UK_h / W_UV_h are the k_nope / v rows of head h in kv_b_proj ([dn, kvr] / [dv, kvr]). */
static void absorb_query(v3_model *m, const mla_dims *d, const v3_layer_w *w, v3_layer_acts *a) {
    v3_kctx *c = m->ctx;
    int64_t L = d->kvr + d->dr, Wst = (d->dn + d->dv) * d->kvr;
    v3k(c, gemm_strided_batched, 0, 0, d->N, d->kvr, d->dn, 1.0f, a->q, d->H * d->dqk, d->dqk,
        w->kv_b, d->kvr, Wst, 0.0f, a->qa, d->H * L, L, d->H);
    v3k(c, copy_3d, a->qa + d->kvr, d->H * L, L, a->q + d->dn, d->H * d->dqk, d->dqk, d->N, d->H,
        d->dr, 0);
}

static void absorb_attn_params(v3_model *m, const mla_dims *d, v3_layer_acts *a, const float *K,
                               int64_t Tk, v3_attn_params *p) {
    int64_t L = d->kvr + d->dr;
    *p = (v3_attn_params){0};
    p->T = d->N;
    p->Tk = Tk;
    p->H = d->H;
    p->d_qk = L;
    p->d_v = d->kvr;
    p->scale = m->softmax_scale;
    p->kv_lo = m->d_kv_lo;
    p->kv_hi = m->d_kv_hi;
    p->q = a->qa;
    p->q_st = d->H * L;
    p->q_sh = L;
    p->k = K; /* head stride 0: one latent key row per token for every head */
    p->k_st = L;
    p->k_sh = 0;
    p->v = K;
    p->v_st = L;
    p->v_sh = 0;
    p->out = a->olat;
    p->lse = a->lse;
}

static void absorb_output(v3_model *m, const mla_dims *d, const v3_layer_w *w, v3_layer_acts *a) {
    v3k(m->ctx, gemm_strided_batched, 0, 1, d->N, d->dv, d->kvr, 1.0f, a->olat, d->H * d->kvr,
        d->kvr, w->kv_b + d->dn * d->kvr, d->kvr, (d->dn + d->dv) * d->kvr, 0.0f, a->att,
        d->H * d->dv, d->dv, d->H);
}

void v3_mla_forward(v3_model *m, int layer, const float *h, v3_layer_acts *a) {
    v3_kctx *c = m->ctx;
    const v3_layer_w *w = &m->lw[layer];
    mla_dims d = dims(m);
    float eps = m->cfg.rms_norm_eps;
    int absorb = m->opt.absorb;

    v3k(c, rmsnorm_fwd, a->xn1, d.C, a->rstd1, h, d.C, w->in_ln, d.N, d.C, eps);
    if (d.qr) {
        v3_linear_fwd(c, a->cq, a->xn1, w->q_a, d.N, d.C, d.qr, 0.0f);
        v3k(c, rmsnorm_fwd, a->cqn, d.qr, a->rstd_q, a->cq, d.qr, w->q_a_ln, d.N, d.qr, eps);
        v3_linear_fwd(c, a->q, a->cqn, w->q_b, d.N, d.qr, d.H * d.dqk, 0.0f);
    } else {
        v3_linear_fwd(c, a->q, a->xn1, w->q, d.N, d.C, d.H * d.dqk, 0.0f);
    }
    v3_linear_fwd(c, a->ckv, a->xn1, w->kv_a, d.N, d.C, d.kvr + d.dr, 0.0f);
    v3k(c, rope_fwd, a->q + d.dn, d.N, d.H, d.H * d.dqk, d.dqk, d.dr, m->d_pos, m->inv_freq);
    v3k(c, rope_fwd, a->ckv + d.kvr, d.N, 1, d.kvr + d.dr, 0, d.dr, m->d_pos, m->inv_freq);

    v3_attn_params p;
    if (absorb) {
        int64_t L = d.kvr + d.dr;
        v3k(c, rmsnorm_fwd, a->lat, L, a->rstd_kv, a->ckv, L, w->kv_a_ln, d.N, d.kvr, eps);
        v3k(c, copy_3d, a->lat + d.kvr, L, 0, a->ckv + d.kvr, L, 0, d.N, 1, d.dr, 0);
        absorb_query(m, &d, w, a);
        const float *K = a->lat;
        int64_t Tk = d.N;
        if (m->kv_src) { /* an inference step: keys come from the cache (new rows included) */
            K = m->kv_src->keys(m->kv_src->user, layer, a->lat, d.N);
            if (!K) return;
            Tk = m->step_Tk;
        }
        absorb_attn_params(m, &d, a, K, Tk, &p);
        v3k(c, attention_fwd, &p);
        absorb_output(m, &d, w, a);
    } else {
        v3k(c, rmsnorm_fwd, a->cn, d.kvr, a->rstd_kv, a->ckv, d.kvr + d.dr, w->kv_a_ln, d.N, d.kvr, eps);
        v3_linear_fwd(c, a->kv, a->cn, w->kv_b, d.N, d.kvr, d.H * (d.dn + d.dv), 0.0f);
        assemble_keys(m, &d, a);
        attn_params(m, &d, a, &p);
        v3k(c, attention_fwd, &p);
    }

    /* residual: h_mid = h + att · o_projᵀ */
    v3k(c, copy, a->h_mid, h, (size_t)(d.N * d.C) * sizeof(float));
    v3_linear_fwd(c, a->h_mid, a->att, w->o, d.N, d.H * d.dv, d.C, 1.0f);
}

/* Backward of the absorbed attention: from d_att to d_q (nope and rotated-rope parts, as the
 * plain form leaves it), d_ckv's k_pe part (rotated) and d_lat's c part (grad of the norm output);
 * kv_b's gradient accumulates (W_UK and W_UV rows). */
static void absorb_backward(v3_model *m, const mla_dims *d, const v3_layer_w *w,
                            const v3_layer_w *g, v3_layer_acts *a) {
    v3_kctx *c = m->ctx;
    int64_t L = d->kvr + d->dr, Wst = (d->dn + d->dv) * d->kvr, H = d->H, N = d->N;
    /* att = W_UV olat */
    v3k(c, gemm_strided_batched, 0, 0, N, d->kvr, d->dv, 1.0f, m->d_att, H * d->dv, d->dv,
        w->kv_b + d->dn * d->kvr, d->kvr, Wst, 0.0f, m->d_olat, H * d->kvr, d->kvr, H);
    if (N > 0)
        v3k(c, gemm_strided_batched, 1, 0, d->dv, d->kvr, N, 1.0f, m->d_att, H * d->dv, d->dv,
            a->olat, H * d->kvr, d->kvr, 1.0f, g->kv_b + d->dn * d->kvr, d->kvr, Wst, H);
    v3_attn_params p;
    absorb_attn_params(m, d, a, a->lat, N, &p);
    p.dout = m->d_olat;
    p.dq = m->d_qa;
    p.dk = m->d_Kl;
    p.dv = m->d_Vl;
    v3k(c, attention_bwd, &p);
    /* the latent row is key (all of it) and value (its c part) of every head: sum over heads,
     * in increasing h (copy_3d with destination head stride 0) */
    v3k(c, copy_3d, m->d_lat, L, 0, m->d_Kl, H * L, L, N, 1, L, 0);
    if (H > 1) v3k(c, copy_3d, m->d_lat, L, 0, m->d_Kl + L, H * L, L, N, H - 1, L, 1);
    v3k(c, copy_3d, m->d_lat, L, 0, m->d_Vl, H * d->kvr, d->kvr, N, H, d->kvr, 1);
    /* k_pe part → d_ckv (still rotated; the caller's rope_bwd follows) */
    v3k(c, copy_3d, m->d_ckv + d->kvr, L, 0, m->d_lat + d->kvr, L, 0, N, 1, d->dr, 0);
    /* query: rope part straight through, nope part through W_UK */
    v3k(c, copy_3d, m->d_q + d->dn, H * d->dqk, d->dqk, m->d_qa + d->kvr, H * L, L, N, H, d->dr, 0);
    v3k(c, gemm_strided_batched, 0, 1, N, d->dn, d->kvr, 1.0f, m->d_qa, H * L, L, w->kv_b, d->kvr,
        Wst, 0.0f, m->d_q, H * d->dqk, d->dqk, H);
    if (N > 0)
        v3k(c, gemm_strided_batched, 1, 0, d->dn, d->kvr, N, 1.0f, a->q, H * d->dqk, d->dqk,
            m->d_qa, H * L, L, 1.0f, g->kv_b, d->kvr, Wst, H);
}

void v3_mla_backward(v3_model *m, int layer, const float *h, v3_layer_acts *a, float *dh) {
    v3_kctx *c = m->ctx;
    const v3_layer_w *w = &m->lw[layer];
    const v3_layer_w *g = &m->lg[layer];
    mla_dims d = dims(m);

    /* o_proj */
    v3_linear_bwd_x(c, m->d_att, dh, w->o, d.N, d.H * d.dv, d.C, 0.0f);
    v3_linear_bwd_w(c, g->o, dh, a->att, d.N, d.H * d.dv, d.C);

    if (m->opt.absorb) {
        absorb_backward(m, &d, w, g, a);
        v3k(c, rope_bwd, m->d_q + d.dn, d.N, d.H, d.H * d.dqk, d.dqk, d.dr, m->d_pos, m->inv_freq);
        v3k(c, rope_bwd, m->d_ckv + d.kvr, d.N, 1, d.kvr + d.dr, 0, d.dr, m->d_pos, m->inv_freq);
        v3k(c, rmsnorm_bwd, m->d_ckv, d.kvr + d.dr, g->kv_a_ln, m->d_lat, d.kvr + d.dr, a->ckv,
            d.kvr + d.dr, w->kv_a_ln, a->rstd_kv, d.N, d.kvr, 0);
    } else {
        /* attention: dq, dK, dV (dK/dV per head, contiguous) */
        assemble_keys(m, &d, a);
        v3_attn_params p;
        attn_params(m, &d, a, &p);
        p.dout = m->d_att;
        p.dq = m->d_q;
        p.dk = m->d_K;
        p.dv = m->d_V;
        v3k(c, attention_bwd, &p);

        /* RoPE backward = rotation by −θ, on the rope dims of dq and of the shared dk_pe */
        v3k(c, rope_bwd, m->d_q + d.dn, d.N, d.H, d.H * d.dqk, d.dqk, d.dr, m->d_pos, m->inv_freq);
        /* dkv [N, H, dn+dv] from dK's nope part and dV */
        v3k(c, copy_3d, m->d_kv, d.H * (d.dn + d.dv), d.dn + d.dv, m->d_K, d.H * d.dqk, d.dqk, d.N, d.H,
            d.dn, 0);
        v3k(c, copy_3d, m->d_kv + d.dn, d.H * (d.dn + d.dv), d.dn + d.dv, m->d_V, d.H * d.dv, d.dv, d.N,
            d.H, d.dv, 0);
        /* dk_pe = Σ_h dK[:, h, dn:] (k_pe is shared by all heads): head 0 assigns, the rest add in
         * increasing h (copy_3d with a destination head stride of 0 is an ordered reduction) */
        v3k(c, copy_3d, m->d_ckv + d.kvr, d.kvr + d.dr, 0, m->d_K + d.dn, d.H * d.dqk, d.dqk, d.N, 1,
            d.dr, 0);
        if (d.H > 1)
            v3k(c, copy_3d, m->d_ckv + d.kvr, d.kvr + d.dr, 0, m->d_K + d.dqk + d.dn, d.H * d.dqk, d.dqk,
                d.N, d.H - 1, d.dr, 1);
        v3k(c, rope_bwd, m->d_ckv + d.kvr, d.N, 1, d.kvr + d.dr, 0, d.dr, m->d_pos, m->inv_freq);

        /* kv_b_proj and kv_a_layernorm (into the c part of d_ckv) */
        v3_linear_bwd_x(c, m->d_cn, m->d_kv, w->kv_b, d.N, d.kvr, d.H * (d.dn + d.dv), 0.0f);
        v3_linear_bwd_w(c, g->kv_b, m->d_kv, a->cn, d.N, d.kvr, d.H * (d.dn + d.dv));
        v3k(c, rmsnorm_bwd, m->d_ckv, d.kvr + d.dr, g->kv_a_ln, m->d_cn, d.kvr, a->ckv, d.kvr + d.dr,
            w->kv_a_ln, a->rstd_kv, d.N, d.kvr, 0);
    }

    /* kv_a_proj_with_mqa: dx assigned here, the q path adds */
    v3_linear_bwd_x(c, m->dx, m->d_ckv, w->kv_a, d.N, d.C, d.kvr + d.dr, 0.0f);
    v3_linear_bwd_w(c, g->kv_a, m->d_ckv, a->xn1, d.N, d.C, d.kvr + d.dr);

    if (d.qr) {
        v3_linear_bwd_x(c, m->d_cqn, m->d_q, w->q_b, d.N, d.qr, d.H * d.dqk, 0.0f);
        v3_linear_bwd_w(c, g->q_b, m->d_q, a->cqn, d.N, d.qr, d.H * d.dqk);
        v3k(c, rmsnorm_bwd, m->d_cq, d.qr, g->q_a_ln, m->d_cqn, d.qr, a->cq, d.qr, w->q_a_ln,
            a->rstd_q, d.N, d.qr, 0);
        v3_linear_bwd_x(c, m->dx, m->d_cq, w->q_a, d.N, d.C, d.qr, 1.0f);
        v3_linear_bwd_w(c, g->q_a, m->d_cq, a->xn1, d.N, d.C, d.qr);
    } else {
        v3_linear_bwd_x(c, m->dx, m->d_q, w->q, d.N, d.C, d.H * d.dqk, 1.0f);
        v3_linear_bwd_w(c, g->q, m->d_q, a->xn1, d.N, d.C, d.H * d.dqk);
    }

    /* input_layernorm; the residual passes dh through, so the norm's dx accumulates onto it */
    v3k(c, rmsnorm_bwd, dh, d.C, g->in_ln, m->dx, d.C, h, d.C, w->in_ln, a->rstd1, d.N, d.C, 1);
}
