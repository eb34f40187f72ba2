/* config.h — the DeepSeek-V3 family's Hugging Face config.json, parsed and validated
 * (model-spec §1), plus named presets and parameter/memory arithmetic. */
#ifndef V3_CONFIG_H
#define V3_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"

typedef struct v3_config {
    int64_t vocab_size;          /* 129280 */
    int64_t hidden_size;         /* d = 7168 */
    int64_t intermediate_size;   /* dense MLP width, 18432 */
    int64_t moe_intermediate_size; /* each routed and shared expert, 2048 */
    int n_layer;                 /* num_hidden_layers, 61 */
    int n_head;                  /* num_attention_heads, 128 */
    int n_kv_head;               /* num_key_value_heads: kept for round-trip, unused by MLA */
    int q_lora_rank;             /* 1536; 0 when config says null (plain q_proj) */
    int kv_lora_rank;            /* 512 */
    int qk_nope_head_dim;        /* 128 */
    int qk_rope_head_dim;        /* 64 */
    int v_head_dim;              /* 128 */
    int n_routed_experts;        /* 256 */
    int n_shared_experts;        /* 1 */
    int num_experts_per_tok;     /* 8 */
    int n_group, topk_group;     /* 8 / 4 */
    float routed_scaling_factor; /* 2.5 */
    int norm_topk_prob;          /* true */
    int first_k_dense_replace;   /* 3 */
    int moe_layer_freq;          /* 1 */
    float rms_norm_eps;          /* 1e-6 */
    double rope_theta;           /* 10000 */
    int64_t max_position_embeddings; /* 163840 */
    /* rope_scaling (yarn), absent => plain RoPE */
    int rope_yarn;
    double rope_factor;          /* 40 */
    int64_t rope_orig_max_pos;   /* original_max_position_embeddings 4096 */
    double beta_fast, beta_slow; /* 32 / 1 */
    double mscale, mscale_all_dim; /* 1.0 / 1.0 */
    int rope_interleave;         /* HF field, default true: checkpoint rope pairs are interleaved */
    int num_nextn_predict_layers;/* MTP depth, 1 */
    int tie_word_embeddings;     /* false */
    int bos_token_id, eos_token_id;
    int attention_bias;          /* must be false */
    double initializer_range;    /* 0.02 */
    char torch_dtype[16];        /* "bfloat16" */
    int has_router_bias;         /* topk_method == noaux_tc: e_score_correction_bias present */
    /* quantization_config (fp8) */
    int quant_fp8;
    int quant_block[2];          /* weight_block_size 128x128 */
    char quant_fmt[16];          /* "e4m3" */
    char quant_scale_fmt[16];    /* "" or "ue8m0" (V3.1) */
    char quant_activation_scheme[16];
    /* the aux/seq-aux fields some copies carry (unused by any forward pass) */
    double aux_loss_alpha;
    int seq_aux;
} v3_config;

/* Reads and validates a config.json. Unknown fields are ignored (HF adds many); unsupported
 * variants (softmax scoring, attention bias, tied embeddings, non-yarn rope scaling) are refused
 * with a message naming the field. */
int v3_config_load(v3_config *cfg, const char *path, v3_err *err);
int v3_config_parse(v3_config *cfg, const char *json_text, const char *origin, v3_err *err);
/* Writes config.json that transformers' DeepseekV3Config loads. */
int v3_config_save(const v3_config *cfg, const char *path, v3_err *err);
/* Internal consistency (divisibility, ranges). */
int v3_config_validate(const v3_config *cfg, v3_err *err);

/* Presets: "tiny", "small", "medium", "deepseek-v3-671b", "moonlight-16b-a3b", "kimi-k2". */
int v3_config_preset(v3_config *cfg, const char *name, v3_err *err);
/* NULL-terminated list of preset names. */
const char *const *v3_config_preset_names(void);

static inline int v3_config_is_moe_layer(const v3_config *c, int layer) {
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace &&
           layer % (c->moe_layer_freq > 0 ? c->moe_layer_freq : 1) == 0;
}
static inline int v3_config_qk_head_dim(const v3_config *c) {
    return c->qk_nope_head_dim + c->qk_rope_head_dim;
}

/* Softmax scale 1/sqrt(qk_head_dim) · m², m = yarn_get_mscale(factor, mscale_all_dim)
 * (model-spec §3: 0.13523378 for the 671B config). */
double v3_config_softmax_scale(const v3_config *c);
/* YaRN (or plain) inverse frequencies for the qk_rope_head_dim/2 pairs, fp32 as HF/official. */
void v3_config_rope_inv_freq(const v3_config *c, float *inv_freq);

/* Parameter counts. total includes MTP layers (num_nextn_predict_layers) when with_mtp. */
typedef struct v3_param_counts {
    int64_t total;          /* every stored parameter of the main model */
    int64_t embedding;      /* embed_tokens + lm_head */
    int64_t active;         /* per token: attention, dense, shared + K routed experts, router, norms, embed+head */
    int64_t active_nonembed;/* active minus embed_tokens and lm_head */
    int64_t mtp;            /* unique MTP parameters (excluding its shared embed/head copies) */
} v3_param_counts;
void v3_config_count_params(const v3_config *c, v3_param_counts *out);

/* Prints the config as an aligned "key value" table. */
void v3_config_print(const v3_config *c, FILE *f);

#endif
