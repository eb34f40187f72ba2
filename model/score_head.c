/* score_head.c — sequence scores (model.h: v3_model_score): the main model over a packed batch,
 * the final norm, then a linear head on chosen rows, as HF's GenericForSequenceClassification
 * (DeepseekV3ForSequenceClassification) pools the score head's logits at one token per sequence.
 * Only the rows asked for go through the head. */
#include "model_internal.h"

#include <stdlib.h>

static int check(const v3_model *m, const v3_score_batch *b, v3_err *err) {
    const v3_config *c = &m->cfg;
    int64_t N = b->N;
    if (N < 1 || N > m->max_tokens)
        return v3_errf(err, V3_ERANGE, "score: %lld tokens, the model was planned for 1..%lld",
                       (long long)N, (long long)m->max_tokens);
    if (!b->tokens || !b->positions || !b->doc_start || !b->out_rows || !b->head || !b->scores)
        return v3_errf(err, V3_EINVAL, "score: tokens, positions, doc_start, out_rows, head and scores "
                                       "are required");
    if (b->n_out < 1 || b->n_out > N)
        return v3_errf(err, V3_ERANGE, "score: %lld output rows of %lld tokens", (long long)b->n_out,
                       (long long)N);
    if (b->n_labels < 1 || b->n_labels > c->vocab_size)
        return v3_errf(err, V3_ERANGE, "score: %lld labels", (long long)b->n_labels);
    for (int64_t t = 0; t < N; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
            return v3_errf(err, V3_ERANGE, "score: token %lld is %d, outside the vocabulary [0, %lld)",
                           (long long)t, b->tokens[t], (long long)c->vocab_size);
        if (b->positions[t] < 0)
            return v3_errf(err, V3_ERANGE, "score: position %lld is negative", (long long)t);
        int32_t s = b->doc_start[t];
        if (!(s == t || (t > 0 && s == b->doc_start[t - 1])))
            return v3_errf(err, V3_ERANGE, "score: doc_start[%lld] = %d (must be %lld or doc_start[%lld])",
                           (long long)t, s, (long long)t, (long long)t - 1);
    }
    for (int64_t r = 0; r < b->n_out; r++)
        if (b->out_rows[r] < 0 || b->out_rows[r] >= N)
            return v3_errf(err, V3_ERANGE, "score: output row %lld is %d of %lld", (long long)r,
                           b->out_rows[r], (long long)N);
    return V3_OK;
}

/* The batch's inputs on the backend, as v3_model_forward prepares them (no targets). */
static int upload(v3_model *m, const v3_score_batch *b, v3_err *err) {
    v3_kctx *ctx = m->ctx;
    int64_t N = b->N;
    int32_t *hi = malloc((size_t)N * sizeof *hi);
    if (!hi) return v3_errf(err, V3_ENOMEM, "score: out of memory");
    m->n_seq = 0;
    for (int64_t t = 0; t < N; t++) {
        hi[t] = (int32_t)(t + 1);
        if (b->doc_start[t] == t) m->seq_off[m->n_seq++] = t;
    }
    m->seq_off[m->n_seq] = N;
    m->N = N;
    m->have_forward = 0; /* nothing here for a backward */
    m->kv_src = NULL;
    ctx->be->to_device(ctx, m->d_tokens, b->tokens, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_pos, b->positions, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_lo, b->doc_start, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_kv_hi, hi, (size_t)N * sizeof(int32_t));
    ctx->be->to_device(ctx, m->d_targets, b->out_rows, (size_t)b->n_out * sizeof(int32_t));
    free(hi);
    return V3_OK;
}

int v3_model_score(v3_model *m, const v3_score_batch *b, v3_err *err) {
    int rc = check(m, b, err);
    if (!rc) rc = upload(m, b, err);
    if (rc) return rc;
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size, Lb = b->n_labels;
    int L = m->cfg.n_layer;
    v3k(c, gather_rows, hs_at(m, 0), m->embed, m->d_tokens, N, C);
    for (int l = 0; l < L; l++)
        v3_layer_forward(m, l, hs_at(m, l), &m->acts[l], hs_at(m, l + 1), 0);
    v3k(c, rmsnorm_fwd, m->xf, C, m->rstd_f, hs_at(m, L), C, m->final_ln, N, C, m->cfg.rms_norm_eps);
    /* the scored rows into the (now free) layer-0 input, then the head in chunks that fit the
     * logits chunk (loss_chunk · V ≥ n_labels floats) */
    float *rows = hs_at(m, 0);
    v3k(c, gather_rows, rows, m->xf, m->d_targets, b->n_out, C);
    int64_t per = m->loss_chunk * m->cfg.vocab_size / Lb;
    if (per < 1) per = 1;
    for (int64_t r0 = 0; r0 < b->n_out; r0 += per) {
        int64_t k = b->n_out - r0 < per ? b->n_out - r0 : per;
        v3_linear_fwd(c, m->logits_chunk, rows + r0 * C, b->head, k, C, Lb, 0.0f);
        c->be->to_host(c, b->scores + r0 * Lb, m->logits_chunk, (size_t)(k * Lb) * sizeof(float));
    }
    return v3k_check(c, err);
}
