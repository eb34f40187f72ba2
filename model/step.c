/* step.c — inference steps of the rollout engine: the model over a few new tokens per sequence,
 * attending to keys kept in the engine's latent KV cache (model.h: v3_model_step), the MTP
 * module's draft step, and logprobs computed exactly as the trainer's loss computes them.
 *
 * A step reuses the training forward block by block (v3_layer_forward) with the attention in the
 * absorbed form; only the key source differs (m->kv_src). So every new token's arithmetic is the
 * arithmetic the trainer performs for that token in a full forward with opt.absorb, and on a
 * batch-invariant backend the logits and logprobs agree bit for bit. */
#include "model_internal.h"

#include <stdlib.h>

static int step_inputs(v3_model *m, const v3_step *s, const v3_kv_source *src, v3_err *err) {
    const v3_config *c = &m->cfg;
    if (!m->opt.absorb)
        return v3_errf(err, V3_EINVAL, "model step: the model must be initialised with absorb = 1");
    int64_t N = s->N;
    if (N < 1 || N > m->max_tokens)
        return v3_errf(err, V3_ERANGE, "model step: %lld new tokens, the model was planned for 1..%lld",
                       (long long)N, (long long)m->max_tokens);
    if (!s->tokens || !s->positions || !src || !src->keys || !src->kv_lo || !src->kv_hi)
        return v3_errf(err, V3_EINVAL, "model step: tokens, positions and a key source are required");
    if (s->vocab < 0 || s->vocab > c->vocab_size)
        return v3_errf(err, V3_ERANGE, "model step: %lld logit columns of a %lld-token vocabulary",
                       (long long)s->vocab, (long long)c->vocab_size);
    if (s->n_out < 0 || s->n_out > N || (s->n_out > 0 && (!s->out_rows || !s->logits)))
        return v3_errf(err, V3_EINVAL, "model step: %lld output rows of %lld", (long long)s->n_out,
                       (long long)N);
    for (int64_t t = 0; t < N; t++) {
        if (s->tokens[t] < 0 || s->tokens[t] >= c->vocab_size)
            return v3_errf(err, V3_ERANGE, "model step: token %lld is %d, outside the vocabulary",
                           (long long)t, s->tokens[t]);
        if (s->positions[t] < 0)
            return v3_errf(err, V3_ERANGE, "model step: position %lld is negative", (long long)t);
        if (src->kv_lo[t] < 0 || src->kv_hi[t] > src->Tk || src->kv_lo[t] >= src->kv_hi[t])
            return v3_errf(err, V3_ERANGE, "model step: token %lld attends to [%d, %d) of %lld keys",
                           (long long)t, src->kv_lo[t], src->kv_hi[t], (long long)src->Tk);
    }
    for (int64_t r = 0; r < s->n_out; r++)
        if (s->out_rows[r] < 0 || s->out_rows[r] >= N)
            return v3_errf(err, V3_ERANGE, "model step: output row %lld is %d of %lld", (long long)r,
                           s->out_rows[r], (long long)N);
    v3_kctx *ctx = m->ctx;
    m->N = N;
    m->have_forward = 0;
    ctx->be->to_device(ctx, m->d_tokens, s->tokens, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_pos, s->positions, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_lo, src->kv_lo, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_hi, src->kv_hi, (size_t)N * sizeof(int32_t));
    if (s->n_out > 0)
        ctx->be->to_device(ctx, m->d_targets, s->out_rows, (size_t)s->n_out * sizeof(int32_t));
    m->kv_src = src;
    m->step_Tk = src->Tk;
    return V3_OK;
}

/* logits of the output rows of x [N, C] through the head (its first s->vocab rows when set: a
 * row-major head's leading rows are a smaller head); scratch: a free [N, C] buffer */
static void step_logits(v3_model *m, const v3_step *s, const float *x, float *scratch) {
    if (s->n_out == 0) return;
    v3_kctx *c = m->ctx;
    int64_t C = m->cfg.hidden_size, V = s->vocab ? s->vocab : m->cfg.vocab_size;
    v3k(c, gather_rows, scratch, x, m->d_targets, s->n_out, C);
    v3_linear_fwd(c, s->logits, scratch, m->head, s->n_out, C, V, 0.0f);
}

static int step_end(v3_model *m, v3_err *err) {
    m->kv_src = NULL;
    return v3k_check(m->ctx, err);
}

int v3_model_step(v3_model *m, const v3_step *s, const v3_kv_source *src, v3_err *err) {
    int rc = step_inputs(m, s, src, err);
    if (rc) return rc;
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size;
    int L = m->cfg.n_layer;
    v3k(c, gather_rows, hs_at(m, 0), m->embed, m->d_tokens, N, C);
    for (int l = 0; l < L; l++)
        v3_layer_forward(m, l, hs_at(m, l), &m->acts[l], hs_at(m, l + 1), 0);
    v3k(c, rmsnorm_fwd, m->xf, C, m->rstd_f, hs_at(m, L), C, m->final_ln, N, C, m->cfg.rms_norm_eps);
    if (s->hidden) c->be->copy(c, s->hidden, m->xf, (size_t)(N * C) * sizeof(float));
    step_logits(m, s, m->xf, hs_at(m, 0));
    return step_end(m, err);
}

int v3_model_mtp_step(v3_model *m, const v3_step *s, const v3_kv_source *src, v3_err *err) {
    if (!m->opt.mtp) return v3_errf(err, V3_EINVAL, "model: MTP step without the MTP module");
    if (!s->hidden) return v3_errf(err, V3_EINVAL, "model: MTP step needs the main hidden rows");
    int rc = step_inputs(m, s, src, err);
    if (rc) return rc;
    /* the step's tokens are the next tokens the MTP module reads */
    m->ctx->be->copy(m->ctx, m->d_mtp_tokens, m->d_tokens, (size_t)m->N * sizeof(int32_t));
    v3_mtp_hidden(m, s->hidden, 0);
    step_logits(m, s, m->mtp_xf, hs_at(m, 0));
    return step_end(m, err);
}

int v3_model_logprobs(v3_model *m, const float *logits, const int32_t *rows, int64_t n,
                      const int32_t *tokens, const float *temperature, float *out, v3_err *err) {
    v3_kctx *c = m->ctx;
    int64_t V = m->cfg.vocab_size, ch = m->loss_chunk;
    if (n > m->max_tokens)
        return v3_errf(err, V3_ERANGE, "logprobs: %lld rows, planned for %lld", (long long)n,
                       (long long)m->max_tokens);
    for (int64_t r = 0; r < n; r++)
        if (tokens[r] < 0 || tokens[r] >= V)
            return v3_errf(err, V3_ERANGE, "logprobs: token %lld is %d", (long long)r, tokens[r]);
    c->be->to_device(c, m->d_targets, tokens, (size_t)n * sizeof(int32_t));
    for (int64_t r0 = 0; r0 < n; r0 += ch) {
        int64_t k = n - r0 < ch ? n - r0 : ch;
        /* consecutive source rows at T = 1 (the engine's usual step) are read in place: with
         * grad_scale 0 the op does not write its logits, so the copy would only cost time */
        int in_place = 1;
        for (int64_t r = 0; r < k && in_place; r++)
            in_place = (!temperature || temperature[r0 + r] == 1.0f) &&
                       (!rows || rows[r0 + r] == rows[r0] + r);
        float *x = m->logits_chunk;
        if (in_place) {
            x = (float *)logits + (rows ? (int64_t)rows[r0] : r0) * V;
        } else {
            for (int64_t r = 0; r < k; r++)
                c->be->copy(c, x + r * V, logits + (rows ? (int64_t)rows[r0 + r] : r0 + r) * V,
                            (size_t)V * sizeof(float));
            for (int64_t r = 0; r < k; r++) {
                float T = temperature ? temperature[r0 + r] : 1.0f;
                /* the same float factor and op as v3_loss_head applies to a whole chunk */
                if (T > 0.0f && T != 1.0f) v3k(c, scale, x + r * V, V, 1.0f / T);
            }
        }
        v3k(c, cross_entropy, x, V, m->tok_loss_scratch, m->d_targets + r0, k, V, 0.0f);
        c->be->to_host(c, out + r0, m->tok_loss_scratch, (size_t)k * sizeof(float));
        for (int64_t r = 0; r < k; r++) out[r0 + r] = -out[r0 + r];
    }
    return v3k_check(c, err);
}
