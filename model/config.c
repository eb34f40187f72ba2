/* config.c — config.json parsing/writing, validation, presets, parameter arithmetic. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

/* ---- defaults: HF DeepseekV3Config's, i.e. the 671B model ---- */
static void set_defaults(v3_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 129280;
    c->hidden_size = 7168;
    c->intermediate_size = 18432;
    c->moe_intermediate_size = 2048;
    c->n_layer = 61;
    c->n_head = 128;
    c->n_kv_head = 128;
    c->q_lora_rank = 1536;
    c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128;
    c->qk_rope_head_dim = 64;
    c->v_head_dim = 128;
    c->n_routed_experts = 256;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 8;
    c->n_group = 8;
    c->topk_group = 4;
    c->routed_scaling_factor = 2.5f;
    c->norm_topk_prob = 1;
    c->first_k_dense_replace = 3;
    c->moe_layer_freq = 1;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0;
    c->max_position_embeddings = 163840;
    c->rope_yarn = 1;
    c->rope_factor = 40.0;
    c->rope_orig_max_pos = 4096;
    c->beta_fast = 32.0;
    c->beta_slow = 1.0;
    c->mscale = 1.0;
    c->mscale_all_dim = 1.0;
    c->rope_interleave = 1;
    c->num_nextn_predict_layers = 1;
    c->tie_word_embeddings = 0;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    c->initializer_range = 0.02;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
    c->has_router_bias = 1;
    c->quant_block[0] = c->quant_block[1] = 128;
    c->aux_loss_alpha = 0.001;
    c->seq_aux = 1;
}

/* ---- typed field readers: each names the field and the file on error ---- */
typedef struct jctx {
    json_t *root;
    const char *origin;
    v3_err *err;
} jctx;

static int get_int(jctx *j, json_t *obj, const char *key, int64_t *out, int nullable_zero) {
    json_t *v = json_object_get(obj, key);
    if (!v) return V3_OK; /* keep default */
    if (json_is_null(v) && nullable_zero) {
        *out = 0;
        return V3_OK;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return V3_OK;
    }
    /* the range check comes first: converting an out-of-range double to int64 is undefined */
    if (json_is_real(v) && fabs(json_real_value(v)) < 9.0e15 &&
        json_real_value(v) == floor(json_real_value(v))) {
        *out = (int64_t)json_real_value(v);
        return V3_OK;
    }
    return v3_errf(j->err, V3_EFORMAT, "%s: field \"%s\" must be an integer", j->origin, key);
}

static int get_i32(jctx *j, json_t *obj, const char *key, int *out, int nullable_zero) {
    int64_t v = *out;
    int rc = get_int(j, obj, key, &v, nullable_zero);
    if (rc) return rc;
    if (v < -2147483647 || v > 2147483647)
        return v3_errf(j->err, V3_ERANGE, "%s: field \"%s\" out of range", j->origin, key);
    *out = (int)v;
    return V3_OK;
}

static int get_num(jctx *j, json_t *obj, const char *key, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return V3_OK;
    if (!json_is_number(v))
        return v3_errf(j->err, V3_EFORMAT, "%s: field \"%s\" must be a number", j->origin, key);
    *out = json_number_value(v);
    return V3_OK;
}

static int get_f32(jctx *j, json_t *obj, const char *key, float *out) {
    double d = *out;
    int rc = get_num(j, obj, key, &d);
    *out = (float)d;
    return rc;
}

static int get_bool(jctx *j, json_t *obj, const char *key, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return V3_OK;
    if (!json_is_boolean(v))
        return v3_errf(j->err, V3_EFORMAT, "%s: field \"%s\" must be true or false", j->origin, key);
    *out = json_is_true(v);
    return V3_OK;
}

static int get_str(jctx *j, json_t *obj, const char *key, char *out, size_t n, int *present) {
    json_t *v = json_object_get(obj, key);
    if (present) *present = v && !json_is_null(v);
    if (!v || json_is_null(v)) return V3_OK;
    if (!json_is_string(v))
        return v3_errf(j->err, V3_EFORMAT, "%s: field \"%s\" must be a string", j->origin, key);
    snprintf(out, n, "%s", json_string_value(v));
    return V3_OK;
}

#define TRY(x)                    \
    do {                          \
        int rc_ = (x);            \
        if (rc_) return rc_;      \
    } while (0)

static int parse_fields(v3_config *c, jctx *j) {
    json_t *r = j->root;
    char s[64] = "";
    int present = 0;

    /* Kimi-K2.5 and VL wrappers nest the language model under text_config. */
    json_t *text = json_object_get(r, "text_config");
    if (json_is_object(text)) r = text;

    TRY(get_str(j, r, "model_type", s, sizeof s, &present));
    if (present && strcmp(s, "deepseek_v3") != 0 && strcmp(s, "kimi_k2") != 0 &&
        strcmp(s, "deepseek_v2") != 0)
        return v3_errf(j->err, V3_EUNSUPPORTED,
                       "%s: model_type \"%s\" is not a DeepSeek-V3 architecture (deepseek_v3, kimi_k2)",
                       j->origin, s);
    TRY(get_int(j, r, "vocab_size", &c->vocab_size, 0));
    TRY(get_int(j, r, "hidden_size", &c->hidden_size, 0));
    TRY(get_int(j, r, "intermediate_size", &c->intermediate_size, 0));
    TRY(get_int(j, r, "moe_intermediate_size", &c->moe_intermediate_size, 0));
    TRY(get_i32(j, r, "num_hidden_layers", &c->n_layer, 0));
    TRY(get_i32(j, r, "num_attention_heads", &c->n_head, 0));
    c->n_kv_head = c->n_head;
    TRY(get_i32(j, r, "num_key_value_heads", &c->n_kv_head, 0));
    TRY(get_i32(j, r, "q_lora_rank", &c->q_lora_rank, 1));
    TRY(get_i32(j, r, "kv_lora_rank", &c->kv_lora_rank, 0));
    TRY(get_i32(j, r, "qk_nope_head_dim", &c->qk_nope_head_dim, 0));
    TRY(get_i32(j, r, "qk_rope_head_dim", &c->qk_rope_head_dim, 0));
    TRY(get_i32(j, r, "v_head_dim", &c->v_head_dim, 0));
    TRY(get_i32(j, r, "n_routed_experts", &c->n_routed_experts, 1));
    TRY(get_i32(j, r, "n_shared_experts", &c->n_shared_experts, 1));
    TRY(get_i32(j, r, "num_experts_per_tok", &c->num_experts_per_tok, 1));
    TRY(get_i32(j, r, "n_group", &c->n_group, 1));
    TRY(get_i32(j, r, "topk_group", &c->topk_group, 1));
    if (c->n_group == 0) c->n_group = 1;
    if (c->topk_group == 0) c->topk_group = 1;
    TRY(get_f32(j, r, "routed_scaling_factor", &c->routed_scaling_factor));
    TRY(get_bool(j, r, "norm_topk_prob", &c->norm_topk_prob));
    TRY(get_i32(j, r, "first_k_dense_replace", &c->first_k_dense_replace, 0));
    TRY(get_i32(j, r, "moe_layer_freq", &c->moe_layer_freq, 0));
    TRY(get_f32(j, r, "rms_norm_eps", &c->rms_norm_eps));
    TRY(get_num(j, r, "rope_theta", &c->rope_theta));
    TRY(get_int(j, r, "max_position_embeddings", &c->max_position_embeddings, 0));
    TRY(get_i32(j, r, "num_nextn_predict_layers", &c->num_nextn_predict_layers, 1));
    TRY(get_bool(j, r, "tie_word_embeddings", &c->tie_word_embeddings));
    TRY(get_i32(j, r, "bos_token_id", &c->bos_token_id, 1));
    /* eos may be a list (generation configs); the first entry is the model's eos */
    json_t *eos = json_object_get(r, "eos_token_id");
    if (json_is_array(eos) && json_array_size(eos) > 0 && json_is_integer(json_array_get(eos, 0)))
        c->eos_token_id = (int)json_integer_value(json_array_get(eos, 0));
    else
        TRY(get_i32(j, r, "eos_token_id", &c->eos_token_id, 1));
    TRY(get_bool(j, r, "attention_bias", &c->attention_bias));
    TRY(get_num(j, r, "initializer_range", &c->initializer_range));
    TRY(get_num(j, r, "aux_loss_alpha", &c->aux_loss_alpha));
    TRY(get_bool(j, r, "seq_aux", &c->seq_aux));
    TRY(get_bool(j, r, "rope_interleave", &c->rope_interleave));
    TRY(get_str(j, r, "torch_dtype", c->torch_dtype, sizeof c->torch_dtype, NULL));
    TRY(get_str(j, r, "dtype", c->torch_dtype, sizeof c->torch_dtype, NULL));

    TRY(get_str(j, r, "scoring_func", s, sizeof s, &present));
    if (present && strcmp(s, "sigmoid") != 0)
        return v3_errf(j->err, V3_EUNSUPPORTED,
                       "%s: scoring_func \"%s\" is unsupported: v3tune implements DeepSeek-V3's "
                       "sigmoid router (the softmax router is DeepSeek-V2's)",
                       j->origin, s);
    TRY(get_str(j, r, "topk_method", s, sizeof s, &present));
    if (present) {
        if (strcmp(s, "noaux_tc") == 0) c->has_router_bias = 1;
        else
            return v3_errf(j->err, V3_EUNSUPPORTED,
                           "%s: topk_method \"%s\" is unsupported: only \"noaux_tc\" (group-limited "
                           "top-k with e_score_correction_bias) is implemented",
                           j->origin, s);
    }
    TRY(get_str(j, r, "hidden_act", s, sizeof s, &present));
    if (present && strcmp(s, "silu") != 0)
        return v3_errf(j->err, V3_EUNSUPPORTED, "%s: hidden_act \"%s\" is unsupported (only silu)",
                       j->origin, s);

    /* rope_scaling (v4) or rope_parameters (v5) */
    json_t *rs = json_object_get(r, "rope_scaling");
    if (!rs || json_is_null(rs)) rs = json_object_get(r, "rope_parameters");
    c->rope_yarn = 0;
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs))
            return v3_errf(j->err, V3_EFORMAT, "%s: rope_scaling must be an object or null",
                           j->origin);
        char type[32] = "";
        TRY(get_str(j, rs, "type", type, sizeof type, NULL));
        TRY(get_str(j, rs, "rope_type", type, sizeof type, NULL));
        TRY(get_num(j, rs, "rope_theta", &c->rope_theta));
        if (strcmp(type, "yarn") == 0) {
            c->rope_yarn = 1;
            c->mscale = 0; /* absent means 0 in HF's yarn */
            c->mscale_all_dim = 0;
            TRY(get_num(j, rs, "factor", &c->rope_factor));
            TRY(get_int(j, rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 0));
            TRY(get_num(j, rs, "beta_fast", &c->beta_fast));
            TRY(get_num(j, rs, "beta_slow", &c->beta_slow));
            TRY(get_num(j, rs, "mscale", &c->mscale));
            TRY(get_num(j, rs, "mscale_all_dim", &c->mscale_all_dim));
        } else if (strcmp(type, "default") != 0 && type[0]) {
            return v3_errf(j->err, V3_EUNSUPPORTED,
                           "%s: rope_scaling type \"%s\" is unsupported (yarn or none)", j->origin,
                           type);
        }
    }

    json_t *q = json_object_get(r, "quantization_config");
    c->quant_fp8 = 0;
    if (q && !json_is_null(q)) {
        if (!json_is_object(q))
            return v3_errf(j->err, V3_EFORMAT, "%s: quantization_config must be an object",
                           j->origin);
        char method[32] = "";
        TRY(get_str(j, q, "quant_method", method, sizeof method, NULL));
        if (strcmp(method, "fp8") != 0)
            return v3_errf(j->err, V3_EUNSUPPORTED,
                           "%s: quantization_config.quant_method \"%s\" is unsupported (fp8 only)",
                           j->origin, method);
        c->quant_fp8 = 1;
        snprintf(c->quant_fmt, sizeof c->quant_fmt, "e4m3");
        TRY(get_str(j, q, "fmt", c->quant_fmt, sizeof c->quant_fmt, NULL));
        TRY(get_str(j, q, "scale_fmt", c->quant_scale_fmt, sizeof c->quant_scale_fmt, NULL));
        TRY(get_str(j, q, "activation_scheme", c->quant_activation_scheme,
                    sizeof c->quant_activation_scheme, NULL));
        if (strcmp(c->quant_fmt, "e4m3") != 0)
            return v3_errf(j->err, V3_EUNSUPPORTED,
                           "%s: quantization_config.fmt \"%s\" is unsupported (e4m3)", j->origin,
                           c->quant_fmt);
        json_t *b = json_object_get(q, "weight_block_size");
        if (b) {
            if (!json_is_array(b) || json_array_size(b) != 2 ||
                !json_is_integer(json_array_get(b, 0)) || !json_is_integer(json_array_get(b, 1)))
                return v3_errf(j->err, V3_EFORMAT,
                               "%s: quantization_config.weight_block_size must be [rows, cols]",
                               j->origin);
            c->quant_block[0] = (int)json_integer_value(json_array_get(b, 0));
            c->quant_block[1] = (int)json_integer_value(json_array_get(b, 1));
        }
    }
    return V3_OK;
}

int v3_config_parse(v3_config *out, const char *text, const char *origin, v3_err *err) {
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return v3_errf(err, V3_EFORMAT, "%s:%d:%d: invalid JSON: %s", origin, je.line, je.column,
                       je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return v3_errf(err, V3_EFORMAT, "%s: config must be a JSON object", origin);
    }
    v3_config c;
    set_defaults(&c);
    jctx j = {root, origin, err};
    int rc = parse_fields(&c, &j);
    json_decref(root);
    if (rc) return rc;
    rc = v3_config_validate(&c, err);
    if (rc) return v3_err_prefix(err, "%s", origin);
    *out = c;
    return V3_OK;
}

int v3_config_load(v3_config *cfg, const char *path, v3_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return v3_errf(err, V3_EIO, "%s: cannot seek", path);
    }
    long n = ftell(f);
    if (n < 0 || n > (64L << 20)) {
        fclose(f);
        return v3_errf(err, V3_EFORMAT, "%s: unreasonable size for a config.json (%ld bytes)", path,
                       n);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return v3_errf(err, V3_EIO, "%s: short read", path);
    }
    buf[n] = 0;
    int rc = v3_config_parse(cfg, buf, path, err);
    free(buf);
    return rc;
}

int v3_config_validate(const v3_config *c, v3_err *err) {
#define REQ(cond, ...)                                           \
    do {                                                         \
        if (!(cond)) return v3_errf(err, V3_EINVAL, __VA_ARGS__); \
    } while (0)
    /* Upper bounds keep every derived count (parameters, bytes) far from int64 overflow; they
     * are two orders of magnitude past the largest released model. */
    REQ(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "vocab_size %lld out of range",
        (long long)c->vocab_size);
    REQ(c->hidden_size > 0 && c->hidden_size <= (1 << 20), "hidden_size %lld out of range",
        (long long)c->hidden_size);
    REQ(c->intermediate_size >= 0 && c->intermediate_size <= (1 << 22),
        "intermediate_size %lld out of range", (long long)c->intermediate_size);
    REQ(c->moe_intermediate_size >= 0 && c->moe_intermediate_size <= (1 << 22),
        "moe_intermediate_size %lld out of range", (long long)c->moe_intermediate_size);
    REQ(c->n_head <= 4096 && c->q_lora_rank <= (1 << 20) && c->kv_lora_rank <= (1 << 20) &&
            c->qk_nope_head_dim <= 4096 && c->qk_rope_head_dim <= 4096 && c->v_head_dim <= 4096,
        "attention dimensions out of range");
    REQ(c->n_routed_experts >= 0 && c->n_routed_experts <= 65536 && c->n_shared_experts <= 1024,
        "expert counts out of range");
    REQ(c->max_position_embeddings > 0, "max_position_embeddings must be positive");
    REQ(c->n_layer > 0 && c->n_layer <= 4096, "num_hidden_layers %d out of range", c->n_layer);
    REQ(c->n_head > 0, "num_attention_heads must be positive");
    REQ(c->q_lora_rank >= 0, "q_lora_rank must be >= 0 or null");
    REQ(c->kv_lora_rank > 0, "kv_lora_rank must be positive");
    REQ(c->qk_nope_head_dim >= 0 && c->v_head_dim > 0, "head dims must be positive");
    REQ(c->qk_rope_head_dim > 0 && c->qk_rope_head_dim % 2 == 0,
        "qk_rope_head_dim %d must be positive and even (rotated in pairs)", c->qk_rope_head_dim);
    REQ(c->first_k_dense_replace >= 0, "first_k_dense_replace must be >= 0");
    REQ(c->moe_layer_freq >= 1, "moe_layer_freq must be >= 1");
    if (c->first_k_dense_replace > 0 || c->n_routed_experts == 0)
        REQ(c->intermediate_size > 0, "intermediate_size must be positive for dense layers");
    if (c->n_routed_experts > 0) {
        REQ(c->moe_intermediate_size > 0, "moe_intermediate_size must be positive");
        REQ(c->num_experts_per_tok >= 1 && c->num_experts_per_tok <= c->n_routed_experts,
            "num_experts_per_tok %d must be in [1, n_routed_experts=%d]", c->num_experts_per_tok,
            c->n_routed_experts);
        REQ(c->n_group >= 1 && c->n_routed_experts % c->n_group == 0,
            "n_routed_experts %d must be divisible by n_group %d", c->n_routed_experts, c->n_group);
        REQ(c->topk_group >= 1 && c->topk_group <= c->n_group,
            "topk_group %d must be in [1, n_group=%d]", c->topk_group, c->n_group);
        REQ(c->topk_group * (c->n_routed_experts / c->n_group) >= c->num_experts_per_tok,
            "topk_group %d groups of %d experts cannot supply num_experts_per_tok %d",
            c->topk_group, c->n_routed_experts / c->n_group, c->num_experts_per_tok);
        REQ(c->n_shared_experts >= 0, "n_shared_experts must be >= 0");
    }
    REQ(!c->attention_bias, "attention_bias=true is unsupported: DeepSeek-V3 has no biases");
    REQ(!c->tie_word_embeddings,
        "tie_word_embeddings=true is unsupported: DeepSeek-V3 keeps lm_head untied");
    REQ(c->rms_norm_eps > 0, "rms_norm_eps must be positive");
    REQ(c->rope_theta > 0, "rope_theta must be positive");
    REQ(c->num_nextn_predict_layers >= 0 && c->num_nextn_predict_layers <= 1,
        "num_nextn_predict_layers %d is unsupported (0 or 1)", c->num_nextn_predict_layers);
    if (c->rope_yarn) {
        REQ(c->rope_factor >= 1, "rope_scaling.factor must be >= 1");
        REQ(c->rope_orig_max_pos > 0, "rope_scaling.original_max_position_embeddings must be > 0");
        /* HF multiplies cos/sin by mscale(factor, mscale)/mscale(factor, mscale_all_dim); every
         * released DeepSeek-V3-family config makes that 1. We refuse the others rather than
         * silently differ. */
        double f = c->rope_factor;
        double a = (c->mscale && c->mscale_all_dim)
                       ? (f <= 1 ? 1 : 0.1 * c->mscale * log(f) + 1) /
                             (f <= 1 ? 1 : 0.1 * c->mscale_all_dim * log(f) + 1)
                       : (f <= 1 ? 1 : 0.1 * log(f) + 1);
        REQ(fabs(a - 1.0) < 1e-12,
            "rope_scaling with a cos/sin attention factor of %.6f is unsupported (mscale %.3f, "
            "mscale_all_dim %.3f): v3tune requires mscale == mscale_all_dim",
            a, c->mscale, c->mscale_all_dim);
    }
    if (c->quant_fp8)
        REQ(c->quant_block[0] > 0 && c->quant_block[1] > 0,
            "quantization_config.weight_block_size must be positive");
    return V3_OK;
#undef REQ
}

/* ---- writing ---- */
int v3_config_save(const v3_config *c, const char *path, v3_err *err) {
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", "DeepseekV3ForCausalLM"));
    json_object_set_new(o, "model_type", json_string("deepseek_v3"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "bos_token_id", json_integer(c->bos_token_id));
    json_object_set_new(o, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(o, "first_k_dense_replace", json_integer(c->first_k_dense_replace));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "initializer_range", json_real(c->initializer_range));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "kv_lora_rank", json_integer(c->kv_lora_rank));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
    json_object_set_new(o, "moe_layer_freq", json_integer(c->moe_layer_freq));
    json_object_set_new(o, "n_group", json_integer(c->n_group));
    json_object_set_new(o, "n_routed_experts", json_integer(c->n_routed_experts));
    json_object_set_new(o, "n_shared_experts", json_integer(c->n_shared_experts));
    json_object_set_new(o, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(o, "num_nextn_predict_layers", json_integer(c->num_nextn_predict_layers));
    json_object_set_new(o, "q_lora_rank", c->q_lora_rank ? json_integer(c->q_lora_rank) : json_null());
    json_object_set_new(o, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
    json_object_set_new(o, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    if (c->rope_yarn) {
        json_t *rs = json_object();
        json_object_set_new(rs, "type", json_string("yarn"));
        json_object_set_new(rs, "factor", json_real(c->rope_factor));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_orig_max_pos));
        json_object_set_new(rs, "beta_fast", json_real(c->beta_fast));
        json_object_set_new(rs, "beta_slow", json_real(c->beta_slow));
        json_object_set_new(rs, "mscale", json_real(c->mscale));
        json_object_set_new(rs, "mscale_all_dim", json_real(c->mscale_all_dim));
        json_object_set_new(o, "rope_scaling", rs);
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    json_object_set_new(o, "routed_scaling_factor", json_real(c->routed_scaling_factor));
    json_object_set_new(o, "scoring_func", json_string("sigmoid"));
    json_object_set_new(o, "tie_word_embeddings", json_false());
    json_object_set_new(o, "topk_group", json_integer(c->topk_group));
    json_object_set_new(o, "topk_method", json_string("noaux_tc"));
    json_object_set_new(o, "torch_dtype", json_string(c->torch_dtype));
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "v_head_dim", json_integer(c->v_head_dim));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    if (c->quant_fp8) {
        json_t *q = json_object();
        json_object_set_new(q, "activation_scheme", json_string("dynamic"));
        json_object_set_new(q, "fmt", json_string(c->quant_fmt));
        json_object_set_new(q, "quant_method", json_string("fp8"));
        json_object_set_new(q, "weight_block_size",
                            json_pack("[ii]", c->quant_block[0], c->quant_block[1]));
        if (c->quant_scale_fmt[0]) json_object_set_new(q, "scale_fmt", json_string(c->quant_scale_fmt));
        json_object_set_new(o, "quantization_config", q);
    }
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (rc != 0) return v3_errf(err, V3_EIO, "%s: cannot write config", path);
    return V3_OK;
}

/* ---- presets ---- */
static const char *const preset_names[] = {"tiny", "small", "medium", "deepseek-v3-671b",
                                           "moonlight-16b-a3b", "kimi-k2", NULL};
const char *const *v3_config_preset_names(void) { return preset_names; }

int v3_config_preset(v3_config *c, const char *name, v3_err *err) {
    set_defaults(c);
    if (strcmp(name, "deepseek-v3-671b") == 0) {
        /* defaults are exactly the 671B config (model-spec §1.1) */
    } else if (strcmp(name, "tiny") == 0) {
        /* CPU unit tests: every feature on (q_lora, groups, yarn, dense + MoE, MTP), real vocab so
         * the DeepSeek-V3 tokenizer's ids are valid. ~17M parameters, 16M of them embed/head. */
        c->hidden_size = 64;
        c->intermediate_size = 128;
        c->moe_intermediate_size = 32;
        c->n_layer = 3;
        c->n_head = 4;
        c->n_kv_head = 4;
        c->q_lora_rank = 32;
        c->kv_lora_rank = 32;
        c->qk_nope_head_dim = 16;
        c->qk_rope_head_dim = 8;
        c->v_head_dim = 16;
        c->n_routed_experts = 8;
        c->n_shared_experts = 1;
        c->num_experts_per_tok = 2;
        c->n_group = 4;
        c->topk_group = 2;
        c->first_k_dense_replace = 1;
        c->max_position_embeddings = 4096;
        c->rope_factor = 4.0;
        c->rope_orig_max_pos = 1024;
    } else if (strcmp(name, "small") == 0) {
        /* CPU demo and GPU smoke test: ~0.4B total, ~0.2B of it embed/head */
        c->hidden_size = 512;
        c->intermediate_size = 1536;
        c->moe_intermediate_size = 256;
        c->n_layer = 8;
        c->n_head = 8;
        c->n_kv_head = 8;
        c->q_lora_rank = 192;
        c->kv_lora_rank = 128;
        c->qk_nope_head_dim = 64;
        c->qk_rope_head_dim = 32;
        c->v_head_dim = 64;
        c->n_routed_experts = 64;
        c->n_shared_experts = 1;
        c->num_experts_per_tok = 6;
        c->n_group = 8;
        c->topk_group = 4;
        c->first_k_dense_replace = 1;
        c->max_position_embeddings = 16384;
        c->rope_factor = 4.0;
        c->rope_orig_max_pos = 4096;
    } else if (strcmp(name, "medium") == 0) {
        /* benchmarks on one 80 GB GPU with AdamW: ~2.5B total, ~0.35B active */
        c->hidden_size = 1280;
        c->intermediate_size = 3584;
        c->moe_intermediate_size = 512;
        c->n_layer = 12;
        c->n_head = 16;
        c->n_kv_head = 16;
        c->q_lora_rank = 384;
        c->kv_lora_rank = 256;
        c->qk_nope_head_dim = 64;
        c->qk_rope_head_dim = 32;
        c->v_head_dim = 64;
        c->n_routed_experts = 64;
        c->n_shared_experts = 1;
        c->num_experts_per_tok = 6;
        c->n_group = 8;
        c->topk_group = 4;
        c->first_k_dense_replace = 1;
        c->max_position_embeddings = 32768;
        c->rope_factor = 8.0;
        c->rope_orig_max_pos = 4096;
    } else if (strcmp(name, "moonlight-16b-a3b") == 0) {
        /* moonshotai/Moonlight-16B-A3B config.json */
        c->vocab_size = 163840;
        c->hidden_size = 2048;
        c->intermediate_size = 11264;
        c->moe_intermediate_size = 1408;
        c->n_layer = 27;
        c->n_head = 16;
        c->n_kv_head = 16;
        c->q_lora_rank = 0;
        c->n_routed_experts = 64;
        c->n_shared_experts = 2;
        c->num_experts_per_tok = 6;
        c->n_group = 1;
        c->topk_group = 1;
        c->routed_scaling_factor = 2.446f;
        c->first_k_dense_replace = 1;
        c->rms_norm_eps = 1e-5f;
        c->rope_theta = 50000.0;
        c->max_position_embeddings = 8192;
        c->rope_yarn = 0;
        c->num_nextn_predict_layers = 0;
        c->bos_token_id = 163584;
        c->eos_token_id = 163585;
    } else if (strcmp(name, "kimi-k2") == 0) {
        /* moonshotai/Kimi-K2-Instruct config.json */
        c->vocab_size = 163840;
        c->n_head = 64;
        c->n_kv_head = 64;
        c->n_routed_experts = 384;
        c->n_group = 1;
        c->topk_group = 1;
        c->routed_scaling_factor = 2.827f;
        c->first_k_dense_replace = 1;
        c->rope_theta = 50000.0;
        c->max_position_embeddings = 131072;
        c->rope_factor = 32.0;
        c->beta_fast = 1.0;
        c->beta_slow = 1.0;
        c->num_nextn_predict_layers = 0;
        c->bos_token_id = 163584;
        c->eos_token_id = 163585;
    } else {
        return v3_errf(err, V3_EINVAL,
                       "unknown preset \"%s\" (tiny, small, medium, deepseek-v3-671b, "
                       "moonlight-16b-a3b, kimi-k2)",
                       name);
    }
    return v3_config_validate(c, err);
}

/* ---- derived quantities ---- */
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

double v3_config_softmax_scale(const v3_config *c) {
    double s = 1.0 / sqrt((double)v3_config_qk_head_dim(c));
    if (c->rope_yarn && c->mscale_all_dim != 0) {
        double m = yarn_mscale(c->rope_factor, c->mscale_all_dim);
        s *= m * m;
    }
    return s;
}

void v3_config_rope_inv_freq(const v3_config *c, float *inv_freq) {
    int dim = c->qk_rope_head_dim, half = dim / 2;
    double base = c->rope_theta;
    double low = 0, high = 0;
    if (c->rope_yarn) {
        /* HF _compute_yarn_parameters with truncate=True */
        double omax = (double)c->rope_orig_max_pos;
        low = floor(dim * log(omax / (c->beta_fast * 2 * M_PI)) / (2 * log(base)));
        high = ceil(dim * log(omax / (c->beta_slow * 2 * M_PI)) / (2 * log(base)));
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
    }
    for (int i = 0; i < half; i++) {
        /* torch computes base ** (arange(0, dim, 2) / dim) in fp32 */
        float expo = (float)(2 * i) / (float)dim;
        float pos_freq = powf((float)base, expo);
        float extra = 1.0f / pos_freq;
        if (!c->rope_yarn) {
            inv_freq[i] = extra;
            continue;
        }
        float inter = 1.0f / ((float)c->rope_factor * pos_freq);
        float ramp = (float)(((double)i - low) / (high - low));
        if (ramp < 0) ramp = 0;
        if (ramp > 1) ramp = 1;
        float extra_factor = 1.0f - ramp;
        inv_freq[i] = inter * (1.0f - extra_factor) + extra * extra_factor;
    }
}

void v3_config_count_params(const v3_config *c, v3_param_counts *o) {
    int64_t d = c->hidden_size, H = c->n_head, qk = v3_config_qk_head_dim(c);
    int64_t attn = 0;
    if (c->q_lora_rank) attn += d * c->q_lora_rank + c->q_lora_rank + (int64_t)c->q_lora_rank * H * qk;
    else attn += d * H * qk;
    attn += d * (c->kv_lora_rank + c->qk_rope_head_dim) + c->kv_lora_rank;
    attn += (int64_t)c->kv_lora_rank * H * (c->qk_nope_head_dim + c->v_head_dim);
    attn += H * c->v_head_dim * d;
    int64_t norms = 2 * d;
    int64_t dense = 3 * d * c->intermediate_size;
    int64_t expert = 3 * d * c->moe_intermediate_size;
    int64_t shared = expert * c->n_shared_experts;
    int64_t router = (int64_t)c->n_routed_experts * d + (c->has_router_bias ? c->n_routed_experts : 0);
    int64_t moe_total = router + shared + expert * c->n_routed_experts;
    int64_t moe_active = router + shared + expert * c->num_experts_per_tok;
    int64_t embed = c->vocab_size * d;

    int64_t total = 2 * embed + d, active = 2 * embed + d;
    for (int l = 0; l < c->n_layer; l++) {
        int moe = v3_config_is_moe_layer(c, l);
        total += attn + norms + (moe ? moe_total : dense);
        active += attn + norms + (moe ? moe_active : dense);
    }
    o->total = total;
    o->embedding = 2 * embed;
    o->active = active;
    o->active_nonembed = active - 2 * embed;
    /* MTP: enorm, hnorm, eh_proj, shared_head.norm, plus a MoE decoder layer */
    o->mtp = c->num_nextn_predict_layers * (3 * d + 2 * d * d + attn + norms + moe_total);
}

void v3_config_print(const v3_config *c, FILE *f) {
#define PI(k, v) fprintf(f, "  %-28s %lld\n", k, (long long)(v))
#define PF(k, v) fprintf(f, "  %-28s %g\n", k, (double)(v))
    PI("vocab_size", c->vocab_size);
    PI("hidden_size", c->hidden_size);
    PI("intermediate_size", c->intermediate_size);
    PI("moe_intermediate_size", c->moe_intermediate_size);
    PI("num_hidden_layers", c->n_layer);
    PI("num_attention_heads", c->n_head);
    if (c->q_lora_rank) PI("q_lora_rank", c->q_lora_rank);
    else fprintf(f, "  %-28s %s\n", "q_lora_rank", "null (plain q_proj)");
    PI("kv_lora_rank", c->kv_lora_rank);
    fprintf(f, "  %-28s %d / %d / %d\n", "qk_nope / qk_rope / v dims", c->qk_nope_head_dim,
            c->qk_rope_head_dim, c->v_head_dim);
    fprintf(f, "  %-28s %d routed + %d shared, %d per token\n", "experts", c->n_routed_experts,
            c->n_shared_experts, c->num_experts_per_tok);
    fprintf(f, "  %-28s %d groups, top %d\n", "expert groups", c->n_group, c->topk_group);
    PF("routed_scaling_factor", c->routed_scaling_factor);
    fprintf(f, "  %-28s %s\n", "norm_topk_prob", c->norm_topk_prob ? "true" : "false");
    fprintf(f, "  %-28s layers 0..%d dense, MoE every %d after\n", "first_k_dense_replace",
            c->first_k_dense_replace - 1, c->moe_layer_freq);
    PF("rms_norm_eps", c->rms_norm_eps);
    PF("rope_theta", c->rope_theta);
    if (c->rope_yarn)
        fprintf(f, "  %-28s yarn factor %g, original %lld, beta %g/%g, mscale %g/%g\n",
                "rope_scaling", c->rope_factor, (long long)c->rope_orig_max_pos, c->beta_fast,
                c->beta_slow, c->mscale, c->mscale_all_dim);
    else fprintf(f, "  %-28s none\n", "rope_scaling");
    fprintf(f, "  %-28s %.8f\n", "softmax scale", v3_config_softmax_scale(c));
    PI("max_position_embeddings", c->max_position_embeddings);
    PI("num_nextn_predict_layers", c->num_nextn_predict_layers);
    fprintf(f, "  %-28s %d / %d\n", "bos / eos token", c->bos_token_id, c->eos_token_id);
    fprintf(f, "  %-28s %s\n", "torch_dtype", c->torch_dtype);
    if (c->quant_fp8)
        fprintf(f, "  %-28s fp8 %s, blocks %dx%d%s%s\n", "quantization", c->quant_fmt,
                c->quant_block[0], c->quant_block[1], c->quant_scale_fmt[0] ? ", scale " : "",
                c->quant_scale_fmt);
#undef PI
#undef PF
}
