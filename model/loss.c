/* loss.c — the output head and cross-entropy, computed over chunks of tokens so that full fp32
 * logits [N, V] never exist at once (V = 129280 for DeepSeek-V3): per chunk,
 * gemm (x · headᵀ) → cross_entropy, and for the gradient the cross-entropy op overwrites the
 * chunk's logits in place with grad_scale·(softmax − onehot), which two GEMMs take back into dx
 * and dhead. A temperature T divides the logits (multiplies by 1/T, as the sampler does) before
 * the cross-entropy.
 *
 * Only rows with a target go through the head: the loss rows (model.h, v3_loss_rows) list them
 * first, and each chunk gathers loss_chunk of them into m->x_rows (or reads x in place when the
 * chunk's rows are adjacent, as in a batch without ignored targets). Their dx rows are scattered
 * back; ignored rows get loss 0 and dx 0, exactly what a pass over all rows gives them.
 *
 * v3_model_backward calls this again with a gradient (recomputing the logits: one more head GEMM
 * instead of N·V floats of memory); v3_model_forward_backward calls it once with both. */
#include "model_internal.h"

/* Copies chunk rows [0, n) (batch rows row[0..n)) to host logits, one call per run of adjacent
 * batch rows. */
static void logits_to_host(v3_kctx *c, float *host_logits, const float *chunk, const int32_t *row,
                           int64_t n, int64_t V) {
    for (int64_t r = 0; r < n;) {
        int64_t e = r + 1;
        while (e < n && row[e] == row[r] + (e - r)) e++;
        c->be->to_host(c, host_logits + (int64_t)row[r] * V, chunk + r * V,
                       (size_t)((e - r) * V) * sizeof(float));
        r = e;
    }
}

void v3_loss_head(v3_model *m, const float *x, const v3_loss_rows *rows, float inv_temp,
                  float *tok_loss, float *host_logits, const v3_head_grad *g) {
    v3_kctx *c = m->ctx;
    int64_t N = m->N, C = m->cfg.hidden_size, V = m->cfg.vocab_size, ch = m->loss_chunk;
    int64_t nv = rows->n_valid;
    /* the cross-entropy's gradient scale; with a temperature, d/dz CE(z/T) = (softmax − onehot)/T.
     * A zero scale (MTP with λ = 0) is a zero gradient: the op would leave the logits in place. */
    float gs = !g ? 0.0f : g->row_weight ? inv_temp : g->scale * inv_temp;
    int grad = gs != 0.0f;
    /* the ignored rows' loss and gradient: the chunks below write the other rows */
    if (tok_loss && nv < N) c->be->memset0(c, tok_loss, (size_t)N * sizeof(float));
    if (g && (nv < N || !grad)) c->be->memset0(c, g->dx, (size_t)(N * C) * sizeof(float));
    if (!grad && !tok_loss && !host_logits) return;
    for (int64_t p0 = 0; p0 < nv; p0 += ch) {
        int64_t n = nv - p0 < ch ? nv - p0 : ch;
        const int32_t *row = rows->row + p0, *d_row = rows->d_row + p0;
        /* batch rows ascend within the valid group: adjacent iff the span is n rows */
        int adjacent = row[n - 1] - row[0] == n - 1;
        const float *xs = x + (int64_t)row[0] * C;
        if (!adjacent) {
            v3k(c, gather_rows, m->x_rows, x, d_row, n, C);
            xs = m->x_rows;
        }
        v3_linear_fwd(c, m->logits_chunk, xs, m->head, n, C, V, 0.0f);
        if (host_logits) logits_to_host(c, host_logits, m->logits_chunk, row, n, V);
        if (inv_temp != 1.0f) v3k(c, scale, m->logits_chunk, n * V, inv_temp);
        float *loss = tok_loss && adjacent ? tok_loss + row[0] : m->tok_loss_scratch;
        v3k(c, cross_entropy, m->logits_chunk, V, loss, rows->d_target + p0, n, V, gs);
        if (tok_loss && !adjacent) v3k(c, scatter_rows, tok_loss, m->tok_loss_scratch, d_row, n, 1);
        if (!grad) continue;
        if (g->row_weight) /* per-token weights (policy gradient): one scale per row */
            for (int64_t r = 0; r < n; r++)
                v3k(c, scale, m->logits_chunk + r * V, V, g->row_weight[row[r]]);
        /* dhead first: the gathered inputs' buffer then takes their gradient */
        v3_linear_bwd_w(c, m->g_head, m->logits_chunk, xs, n, C, V);
        if (adjacent) {
            v3_linear_bwd_x(c, g->dx + (int64_t)row[0] * C, m->logits_chunk, m->head, n, C, V, 0.0f);
        } else {
            v3_linear_bwd_x(c, m->x_rows, m->logits_chunk, m->head, n, C, V, 0.0f);
            v3k(c, scatter_rows, g->dx, m->x_rows, d_row, n, C);
        }
    }
    if (!host_logits) return;
    /* the caller wants every row's logits: the ignored rows, logits only */
    for (int64_t p0 = nv; p0 < N; p0 += ch) {
        int64_t n = N - p0 < ch ? N - p0 : ch;
        const int32_t *row = rows->row + p0;
        const float *xs = x + (int64_t)row[0] * C;
        if (row[n - 1] - row[0] != n - 1) {
            v3k(c, gather_rows, m->x_rows, x, rows->d_row + p0, n, C);
            xs = m->x_rows;
        }
        v3_linear_fwd(c, m->logits_chunk, xs, m->head, n, C, V, 0.0f);
        logits_to_host(c, host_logits, m->logits_chunk, row, n, V);
    }
}
