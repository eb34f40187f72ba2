/* model_internal.h — what the model's block files share: linear-layer helpers on the op table and
 * the block forward/backward entry points. Not part of the public API (see model.h). */
#ifndef V3_MODEL_INTERNAL_H
#define V3_MODEL_INTERNAL_H

#include "model.h"

/* The residual stream at the input of layer i (i = n_layer: the main model's final hidden). */
static inline float *hs_at(v3_model *m, int i) {
    return m->hs + (int64_t)i * m->max_tokens * m->cfg.hidden_size;
}

/* y[T, out] = x[T, in] · Wᵀ (+ beta·y), W [out, in]. */
static inline void v3_linear_fwd(v3_kctx *c, float *y, const float *x, const float *W, int64_t T,
                                 int64_t in, int64_t out, float beta) {
    v3k(c, gemm, 0, 1, T, out, in, 1.0f, x, in, W, in, beta, y, out);
}
/* dx[T, in] (= or += by beta) dy[T, out] · W. */
static inline void v3_linear_bwd_x(v3_kctx *c, float *dx, const float *dy, const float *W, int64_t T,
                                   int64_t in, int64_t out, float beta) {
    v3k(c, gemm, 0, 0, T, in, out, 1.0f, dy, out, W, in, beta, dx, in);
}
/* dW[out, in] += dyᵀ · x. */
static inline void v3_linear_bwd_w(v3_kctx *c, float *dW, const float *dy, const float *x, int64_t T,
                                   int64_t in, int64_t out) {
    if (T == 0) return;
    v3k(c, gemm, 1, 0, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

/* ---- decoder layer pieces; N tokens, arrays in backend memory ---- */
/* MLA: h_mid = h + MLA(input_layernorm(h)). */
void v3_mla_forward(v3_model *m, int layer, const float *h, v3_layer_acts *a);
/* dh: in = grad of h_mid, out = grad of h (input); parameter grads accumulate. */
void v3_mla_backward(v3_model *m, int layer, const float *h, v3_layer_acts *a, float *dh);

/* Dense SwiGLU on x [N, C] -> out [N, C] (= or += by beta), saving gu/act. */
void v3_mlp_forward(v3_kctx *c, const float *x, const float *gate_up, const float *down, int64_t N,
                    int64_t C, int64_t I, float *gu, float *act, float *out, float beta);
/* dx (= or += by beta_dx) from dout; weight grads accumulate. */
void v3_mlp_backward(v3_kctx *c, const float *x, const float *gate_up, const float *down,
                     float *g_gate_up, float *g_down, int64_t N, int64_t C, int64_t I,
                     const float *gu, const float *act, const float *dout, float *dgu,
                     float *dact, float *dx, float beta_dx);

/* FFN sublayer (dense or MoE): out = h_mid + FFN(post_attention_layernorm(h_mid)).
 * count_load: add this forward's expert counts to the load statistics (not during recompute). */
void v3_ffn_forward(v3_model *m, int layer, v3_layer_acts *a, float *out, int count_load);
/* dh: in = grad of out, out = grad of h_mid. */
void v3_ffn_backward(v3_model *m, int layer, v3_layer_acts *a, float *dh);
/* Balance loss of one MoE layer for the current batch (host double), forward only. */
double v3_moe_balance_loss(v3_model *m, v3_layer_acts *a);

/* Whole decoder layer: out = layer(h). */
void v3_layer_forward(v3_model *m, int layer, const float *h, v3_layer_acts *a, float *out,
                      int count_load);
/* dh: in = grad of out, out = grad of h. A layer marked for recompute first reruns its forward
 * (rewriting `out` with the same values). */
void v3_layer_backward(v3_model *m, int layer, const float *h, float *out, float *dh);

/* The output head's gradient, for a loss pass that computes it (backward, or the fused forward). */
typedef struct v3_head_grad {
    float scale;              /* d loss / d CE_t for every token (mean CE: 1 / n_valid) */
    const float *row_weight;  /* (host) [N] by batch row, replaces scale per token; may be NULL */
    float *dx;                /* [N, C] ASSIGNED: gradient of x, zero on ignored rows */
} v3_head_grad;

/* Chunked cross-entropy over (x [N, C] · headᵀ) · inv_temp on the rows of `rows` that have a
 * target (gathered loss_chunk at a time; no [N, V] buffer). tok_loss (device [N], may be NULL):
 * per-token loss, 0 on ignored rows. host_logits (host [N, V], may be NULL): the logits of EVERY
 * row, before the temperature (ignored rows in an extra logits-only pass). g (may be NULL): also
 * the gradient of Σ_t scale_t·CE_t, from the same chunk's logits: g->dx = d/dx, g_head += d/dhead.
 * A row's values do not depend on which rows share its chunk (batch-invariant GEMMs), so the
 * loss and dx are those of a full pass; the chunking only orders the sum into g_head. */
void v3_loss_head(v3_model *m, const float *x, const v3_loss_rows *rows, float inv_temp,
                  float *tok_loss, float *host_logits, const v3_head_grad *g);

/* MTP module up to its final norm (m->mtp_xf) from the main model's final-norm hidden h0 and
 * the next tokens in m->d_mtp_tokens. */
void v3_mtp_hidden(v3_model *m, const float *h0, int count_load);
/* MTP module (depth 1, model-spec §6) on top of the main model's final hidden m->xf. With
 * head_grad, its head's gradient is computed as well (the fused step): g_head accumulates and
 * m->dx holds the gradient of m->mtp_xf until v3_mtp_backward(m, 1). */
void v3_mtp_forward(v3_model *m, float *host_logits, int head_grad);
/* Adds its gradient into m->d_xf (grad of xf), the embedding, the head and its own parameters.
 * head_done: the forward already computed the head's part (m->dx, g_head). */
void v3_mtp_backward(v3_model *m, int head_done);

#endif
