/* mtp.c — the Multi-Token Prediction module, depth 1 (model-spec §6), for training:
 *   h'_i = eh_proj · [enorm(Embed(t_{i+1})) ; hnorm(h0_i)]     (checkpoint order: embedding first)
 *   h1   = DecoderLayer_{n_layer}(h')                          (same positions and document windows)
 *   P_i  = softmax(lm_head · shared_head.norm(h1_i))           predicts t_{i+2}
 * h0 is the main model's final hidden AFTER model.norm (as vLLM/SGLang). The embedding and the
 * head are the main model's (shared); the checkpoint's physical copies are not used. The flat
 * MTP inputs are built by the caller (model.c): token i+1 of the same document, and the target
 * of position i+1, ignored where i is the last token of its document. */
#include "model_internal.h"


void v3_mtp_hidden(v3_model *m, const float *h0, int count_load) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size;
    float eps = m->cfg.rms_norm_eps;
    int L = m->cfg.n_layer;
    float *hp = hs_at(m, L + 1), *h1 = hs_at(m, L + 2);
    v3k(c, gather_rows, m->mtp_e, m->embed, m->d_mtp_tokens, N, C);
    v3k(c, rmsnorm_fwd, m->mtp_cat, 2 * C, m->mtp_rstd_e, m->mtp_e, C, m->mtp_enorm, N, C, eps);
    v3k(c, rmsnorm_fwd, m->mtp_cat + C, 2 * C, m->mtp_rstd_h, h0, C, m->mtp_hnorm, N, C, eps);
    v3_linear_fwd(c, hp, m->mtp_cat, m->mtp_eh, N, 2 * C, C, 0.0f);
    v3_layer_forward(m, L, hp, &m->acts[L], h1, count_load);
    v3k(c, rmsnorm_fwd, m->mtp_xf, C, m->mtp_rstd_f, h1, C, m->mtp_snorm, N, C, eps);
}

/* d loss / d CE_t of the MTP head: λ times the mean over its valid rows */
static v3_head_grad mtp_head_grad(v3_model *m) {
    v3_head_grad g = {m->n_valid_mtp ? m->opt.mtp_lambda / (float)m->n_valid_mtp : 0.0f, NULL, m->dx};
    return g;
}

void v3_mtp_forward(v3_model *m, float *host_logits, int head_grad) {
    v3_mtp_hidden(m, m->xf, 1);
    v3_head_grad g = mtp_head_grad(m);
    v3_loss_head(m, m->mtp_xf, &m->mtp_rows, 1.0f, m->mtp_tok_loss, host_logits,
                 head_grad ? &g : NULL);
}

void v3_mtp_backward(v3_model *m, int head_done) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size;
    int L = m->cfg.n_layer;
    float *hp = hs_at(m, L + 1), *h1 = hs_at(m, L + 2);
    if (!head_done) {
        v3_head_grad g = mtp_head_grad(m);
        v3_loss_head(m, m->mtp_xf, &m->mtp_rows, 1.0f, NULL, NULL, &g);
    }
    v3k(c, rmsnorm_bwd, m->dh, C, m->g_mtp_snorm, m->dx, C, h1, C, m->mtp_snorm, m->mtp_rstd_f, N,
        C, 0);
    v3_layer_backward(m, L, hp, h1, m->dh);
    /* eh_proj, then the two norms: the embedding half goes to the shared embedding, the hidden
     * half adds to the gradient of the main model's final hidden */
    v3_linear_bwd_x(c, m->d_mtp_cat, m->dh, m->mtp_eh, N, 2 * C, C, 0.0f);
    v3_linear_bwd_w(c, m->g_mtp_eh, m->dh, m->mtp_cat, N, 2 * C, C);
    v3k(c, rmsnorm_bwd, m->d_mtp_e, C, m->g_mtp_enorm, m->d_mtp_cat, 2 * C, m->mtp_e, C,
        m->mtp_enorm, m->mtp_rstd_e, N, C, 0);
    v3k(c, scatter_add_rows, m->g_embed, m->d_mtp_e, m->d_mtp_tokens, N, C);
    v3k(c, rmsnorm_bwd, m->d_xf, C, m->g_mtp_hnorm, m->d_mtp_cat + C, 2 * C, m->xf, C,
        m->mtp_hnorm, m->mtp_rstd_h, N, C, 1);
}
