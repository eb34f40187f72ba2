/* loss.c — the output head and cross-entropy, computed over chunks of tokens so that full fp32
 * logits [N, V] never exist at once (V = 129280 for DeepSeek-V3): per chunk,
 * gemm (x · headᵀ) → cross_entropy. Backward recomputes each chunk's logits, lets the
 * cross-entropy op overwrite them in place with grad_scale·(softmax − onehot), and GEMMs back into
 * dx and dhead. A temperature T divides the logits (multiplies by 1/T, as the sampler does) before
 * the cross-entropy. Recomputing costs one extra head GEMM and saves N·V floats of memory. */
#include "model_internal.h"

void v3_loss_forward(v3_model *m, const float *x, const int32_t *targets, float inv_temp,
                     float *tok_loss, float *host_logits) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size, V = m->cfg.vocab_size, ch = m->loss_chunk;
    for (int64_t t0 = 0; t0 < N; t0 += ch) {
        int64_t n = N - t0 < ch ? N - t0 : ch;
        v3_linear_fwd(c, m->logits_chunk, x + t0 * C, m->head, n, C, V, 0.0f);
        if (host_logits)
            c->be->to_host(c, host_logits + t0 * V, m->logits_chunk, (size_t)(n * V) * sizeof(float));
        if (inv_temp != 1.0f) v3k(c, scale, m->logits_chunk, n * V, inv_temp);
        v3k(c, cross_entropy, m->logits_chunk, V, tok_loss + t0, targets + t0, n, V, 0.0f);
    }
}

void v3_loss_backward(v3_model *m, const float *x, const int32_t *targets, float inv_temp,
                      float grad_scale, const float *row_weight, float *dx, float beta) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size, V = m->cfg.vocab_size, ch = m->loss_chunk;
    for (int64_t t0 = 0; t0 < N; t0 += ch) {
        int64_t n = N - t0 < ch ? N - t0 : ch;
        v3_linear_fwd(c, m->logits_chunk, x + t0 * C, m->head, n, C, V, 0.0f);
        /* tok_loss is rewritten with the same values; only the in-place gradient matters here.
         * With a temperature, d/dz CE(z/T) = (softmax − onehot)/T. */
        if (inv_temp != 1.0f) v3k(c, scale, m->logits_chunk, n * V, inv_temp);
        v3k(c, cross_entropy, m->logits_chunk, V, m->tok_loss_scratch, targets + t0, n, V,
            row_weight ? inv_temp : grad_scale * inv_temp);
        if (row_weight) /* per-token weights (policy gradient): one scale per row */
            for (int64_t r = 0; r < n; r++) v3k(c, scale, m->logits_chunk + r * V, V, row_weight[t0 + r]);
        v3_linear_bwd_x(c, dx + t0 * C, m->logits_chunk, m->head, n, C, V, beta);
        v3_linear_bwd_w(c, m->g_head, m->logits_chunk, x + t0 * C, n, C, V);
    }
}
