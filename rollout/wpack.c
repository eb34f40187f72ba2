/* wpack.c — the engine's packed weight copies (wpack.h). */
#include "wpack.h"

#include <stdlib.h>
#include <string.h>

/* appends weight w [N, K] (skipped when absent) */
static void add(v3_wpack_set *s, const float *w, int64_t N, int64_t K) {
    if (!w) return;
    if (s->e) s->e[s->n] = (v3_wpack){w, N, K, NULL, 0};
    s->n++;
}

/* the decode step's x · Wᵀ products (model/mla.c, mlp.c, moe.c, mtp.c, step.c); kv_b is read in
 * the absorbed form by other products and stays out */
static void list_weights(v3_wpack_set *s, const v3_model *m) {
    const v3_config *c = &m->cfg;
    int64_t C = c->hidden_size, H = c->n_head, dqk = v3_config_qk_head_dim(c);
    int64_t qr = c->q_lora_rank, kvr = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    int64_t I = c->intermediate_size, Ie = c->moe_intermediate_size, E = c->n_routed_experts;
    int64_t Is = (int64_t)c->n_shared_experts * Ie;
    for (int l = 0; l < m->n_layers_total; l++) {
        const v3_layer_w *w = &m->lw[l];
        add(s, w->q, H * dqk, C);
        add(s, w->q_a, qr, C);
        add(s, w->q_b, H * dqk, qr);
        add(s, w->kv_a, kvr + dr, C);
        add(s, w->o, C, H * c->v_head_dim);
        add(s, w->gate_up, 2 * I, C);
        add(s, w->down, C, I);
        add(s, w->router, E, C);
        for (int64_t x = 0; w->exp_gate_up && x < E; x++) add(s, w->exp_gate_up[x], 2 * Ie, C);
        for (int64_t x = 0; w->exp_down && x < E; x++) add(s, w->exp_down[x], C, Ie);
        if (Is > 0) {
            add(s, w->sh_gate_up, 2 * Is, C);
            add(s, w->sh_down, C, Is);
        }
    }
    add(s, m->head, c->vocab_size, C);
    add(s, m->mtp_eh, C, 2 * C);
}

static int by_w(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const v3_wpack *)a)->w, y = (uintptr_t)((const v3_wpack *)b)->w;
    return x < y ? -1 : x > y;
}

int v3_wpack_set_init(v3_wpack_set *s, v3_model *m, v3_err *err) {
    memset(s, 0, sizeof *s);
    v3_kctx *c = m->ctx;
    if (!c->be->pack_nt)
        return v3_errf(err, V3_EUNSUPPORTED, "packed weights: the %s backend has no pack_nt",
                       c->be->name);
    list_weights(s, m); /* count */
    if (!(s->e = calloc((size_t)(s->n ? s->n : 1), sizeof *s->e)))
        return v3_errf(err, V3_ENOMEM, "packed weights: out of memory");
    s->n = 0;
    list_weights(s, m);
    qsort(s->e, (size_t)s->n, sizeof *s->e, by_w);
    for (int64_t i = 0; i < s->n; i++) s->bytes += V3_PACKED_NT_BYTES(s->e[i].N, s->e[i].K, 0);
    if (!(s->buf = c->be->alloc(c, s->bytes ? s->bytes : 1))) {
        size_t b = s->bytes;
        v3_wpack_set_free(s, c);
        return v3_errf(err, V3_ENOMEM, "packed weights: cannot allocate %.1f MiB (pack_weights = 0 "
                       "does without)", b / 1048576.0);
    }
    size_t off = 0;
    for (int64_t i = 0; i < s->n; i++) {
        s->e[i].packed = (char *)s->buf + off;
        off += V3_PACKED_NT_BYTES(s->e[i].N, s->e[i].K, 0);
    }
    s->view = (v3_wpacks){s->e, s->n};
    return V3_OK;
}

int v3_wpack_set_refresh(v3_wpack_set *s, v3_model *m, int bf16, int *did, v3_err *err) {
    if (did) *did = 0;
    if (s->fresh && s->version == m->weights_version && s->bf16 == bf16) return V3_OK;
    v3_kctx *c = m->ctx;
    s->fresh = 0;
    s->n_bf16 = 0;
    s->bytes_read = 0;
    for (int64_t i = 0; i < s->n; i++) {
        v3_wpack *e = &s->e[i];
        e->bf16 = c->be->pack_nt(c, (void *)e->packed, e->w, e->K, e->N, e->K, bf16);
        s->n_bf16 += e->bf16;
        s->bytes_read += V3_PACKED_NT_BYTES(e->N, e->K, e->bf16);
    }
    int rc = v3k_check(c, err);
    if (rc) return v3_err_prefix(err, "packed weights");
    s->fresh = 1;
    s->bf16 = bf16;
    s->version = m->weights_version;
    if (did) *did = 1;
    return V3_OK;
}

void v3_wpack_set_free(v3_wpack_set *s, v3_kctx *ctx) {
    if (s->buf) ctx->be->free(ctx, s->buf);
    free(s->e);
    memset(s, 0, sizeof *s);
}
