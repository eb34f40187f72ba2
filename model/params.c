/* params.c — the table of every parameter tensor, named as in the Hugging Face checkpoint. */
#include "params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t name_hash(const char *s) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

typedef struct builder {
    v3_param_table *t;
    int cap;
    int oom;
} builder;

static void add(builder *b, v3_param_kind kind, int layer, int expert, int64_t d0, int64_t d1,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void add(builder *b, v3_param_kind kind, int layer, int expert, int64_t d0, int64_t d1,
                const char *fmt, ...) {
    if (b->oom) return;
    v3_param_table *t = b->t;
    if (t->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        v3_param_info *p = realloc(t->p, (size_t)cap * sizeof *p);
        if (!p) {
            b->oom = 1;
            return;
        }
        t->p = p;
        b->cap = cap;
    }
    v3_param_info *p = &t->p[t->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = d1 ? d0 * d1 : d0;
    p->offset = t->total;
    p->kind = kind;
    p->layer = layer;
    p->expert = expert;
    t->total += p->numel;
}

static void add_ffn(builder *b, int L, int expert, int64_t d, int64_t w, const char *prefix) {
    add(b, V3_PK_LINEAR, L, expert, w, d, "%s.gate_proj.weight", prefix);
    add(b, V3_PK_LINEAR, L, expert, w, d, "%s.up_proj.weight", prefix);
    add(b, V3_PK_LINEAR, L, expert, d, w, "%s.down_proj.weight", prefix);
}

static void add_layer(builder *b, const v3_config *c, int L, int moe) {
    int64_t d = c->hidden_size, H = c->n_head, qk = v3_config_qk_head_dim(c);
    char pre[64];
    snprintf(pre, sizeof pre, "model.layers.%d", L);
    add(b, V3_PK_NORM, L, -1, d, 0, "%s.input_layernorm.weight", pre);
    if (c->q_lora_rank) {
        add(b, V3_PK_LINEAR, L, -1, c->q_lora_rank, d, "%s.self_attn.q_a_proj.weight", pre);
        add(b, V3_PK_NORM, L, -1, c->q_lora_rank, 0, "%s.self_attn.q_a_layernorm.weight", pre);
        add(b, V3_PK_LINEAR, L, -1, H * qk, c->q_lora_rank, "%s.self_attn.q_b_proj.weight", pre);
    } else {
        add(b, V3_PK_LINEAR, L, -1, H * qk, d, "%s.self_attn.q_proj.weight", pre);
    }
    add(b, V3_PK_LINEAR, L, -1, c->kv_lora_rank + c->qk_rope_head_dim, d,
        "%s.self_attn.kv_a_proj_with_mqa.weight", pre);
    add(b, V3_PK_NORM, L, -1, c->kv_lora_rank, 0, "%s.self_attn.kv_a_layernorm.weight", pre);
    add(b, V3_PK_LINEAR, L, -1, H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
        "%s.self_attn.kv_b_proj.weight", pre);
    add(b, V3_PK_LINEAR, L, -1, d, H * c->v_head_dim, "%s.self_attn.o_proj.weight", pre);
    add(b, V3_PK_NORM, L, -1, d, 0, "%s.post_attention_layernorm.weight", pre);
    char ffn[96];
    if (!moe) {
        snprintf(ffn, sizeof ffn, "%s.mlp", pre);
        add_ffn(b, L, -1, d, c->intermediate_size, ffn);
        return;
    }
    add(b, V3_PK_ROUTER, L, -1, c->n_routed_experts, d, "%s.mlp.gate.weight", pre);
    if (c->has_router_bias)
        add(b, V3_PK_BIAS, L, -1, c->n_routed_experts, 0, "%s.mlp.gate.e_score_correction_bias", pre);
    for (int e = 0; e < c->n_routed_experts; e++) {
        snprintf(ffn, sizeof ffn, "%s.mlp.experts.%d", pre, e);
        add_ffn(b, L, e, d, c->moe_intermediate_size, ffn);
    }
    if (c->n_shared_experts > 0) {
        snprintf(ffn, sizeof ffn, "%s.mlp.shared_experts", pre);
        add_ffn(b, L, -1, d, (int64_t)c->moe_intermediate_size * c->n_shared_experts, ffn);
    }
}

/* score_labels > 0: score.weight [score_labels, d] in place of lm_head.weight (no MTP) */
static int build(v3_param_table *t, const v3_config *c, int with_mtp, int64_t score_labels, v3_err *err) {
    memset(t, 0, sizeof *t);
    builder b = {t, 0, 0};
    int64_t d = c->hidden_size, V = c->vocab_size;
    add(&b, V3_PK_EMBED, -1, -1, V, d, "model.embed_tokens.weight");
    for (int L = 0; L < c->n_layer; L++) add_layer(&b, c, L, v3_config_is_moe_layer(c, L));
    add(&b, V3_PK_NORM, -1, -1, d, 0, "model.norm.weight");
    if (score_labels > 0) add(&b, V3_PK_HEAD, -1, -1, score_labels, d, "score.weight");
    else add(&b, V3_PK_HEAD, -1, -1, V, d, "lm_head.weight");
    if (with_mtp) {
        for (int k = 0; k < c->num_nextn_predict_layers; k++) {
            int L = c->n_layer + k;
            /* the released checkpoints store the shared embedding and head physically */
            add(&b, V3_PK_EMBED, L, -1, V, d, "model.layers.%d.embed_tokens.weight", L);
            add(&b, V3_PK_NORM, L, -1, d, 0, "model.layers.%d.enorm.weight", L);
            add(&b, V3_PK_NORM, L, -1, d, 0, "model.layers.%d.hnorm.weight", L);
            add(&b, V3_PK_LINEAR, L, -1, d, 2 * d, "model.layers.%d.eh_proj.weight", L);
            add_layer(&b, c, L, c->n_routed_experts > 0);
            add(&b, V3_PK_NORM, L, -1, d, 0, "model.layers.%d.shared_head.norm.weight", L);
            add(&b, V3_PK_HEAD, L, -1, V, d, "model.layers.%d.shared_head.head.weight", L);
        }
    }
    if (!b.oom) {
        t->hcap = 16;
        while (t->hcap < 2 * t->n) t->hcap *= 2;
        t->hash = calloc((size_t)t->hcap, sizeof *t->hash);
        if (!t->hash) b.oom = 1;
    }
    if (b.oom) {
        v3_params_free(t);
        return v3_errf(err, V3_ENOMEM, "out of memory building the parameter table");
    }
    for (int i = 0; i < t->n; i++) {
        uint32_t h = name_hash(t->p[i].name) & (uint32_t)(t->hcap - 1);
        while (t->hash[h]) h = (h + 1) & (uint32_t)(t->hcap - 1);
        t->hash[h] = i + 1;
    }
    return V3_OK;
}

int v3_params_build(v3_param_table *t, const v3_config *c, int with_mtp, v3_err *err) {
    return build(t, c, with_mtp, 0, err);
}

int v3_params_build_score(v3_param_table *t, const v3_config *c, int64_t num_labels, v3_err *err) {
    if (num_labels < 1 || num_labels > c->vocab_size) {
        memset(t, 0, sizeof *t);
        return v3_errf(err, V3_ERANGE, "parameter table: %lld score labels (want 1..vocab_size %lld)",
                       (long long)num_labels, (long long)c->vocab_size);
    }
    return build(t, c, 0, num_labels, err);
}

void v3_params_free(v3_param_table *t) {
    if (!t) return;
    free(t->p);
    free(t->hash);
    memset(t, 0, sizeof *t);
}

int v3_params_find(const v3_param_table *t, const char *name) {
    if (!t->hcap) return -1;
    uint32_t h = name_hash(name) & (uint32_t)(t->hcap - 1);
    while (t->hash[h]) {
        int i = t->hash[h] - 1;
        if (strcmp(t->p[i].name, name) == 0) return i;
        h = (h + 1) & (uint32_t)(t->hcap - 1);
    }
    return -1;
}
