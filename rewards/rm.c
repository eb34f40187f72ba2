/* rm.c — loading a local reward model (rewards/rm.h): config.json, the HF sequence-classification
 * checkpoint (model.* and score.weight) into a v3_model whose lm_head slot holds score.weight
 * (model/params.h: v3_params_build_score), and the tokenizer. */
#include "rewards/rm_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "common/sha256.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"

/* num_labels from the checkpoint's score.weight [L, hidden]. */
static int head_labels(const char *dir, const v3_config *cfg, int64_t *labels, v3_err *err) {
    v3_st_model st;
    int rc = v3_st_model_open(&st, dir, err);
    if (rc) return rc;
    const v3_st_file *f = NULL;
    const v3_st_tensor *t = NULL;
    v3_err e2;
    if (v3_st_model_get(&st, "score.weight", &f, &t, &e2)) {
        int causal = v3_st_model_get(&st, "lm_head.weight", &f, &t, &e2) == V3_OK;
        rc = v3_errf(err, V3_ENOTFOUND,
                     "the checkpoint has no score.weight, so it is not a sequence-classification "
                     "(reward) model%s; see docs/rewards-model.md",
                     causal ? " (it has lm_head.weight: a causal LM)" : "");
    } else if (t->ndim != 2 || t->shape[1] != cfg->hidden_size || t->shape[0] < 1 ||
               t->shape[0] > cfg->vocab_size) {
        rc = v3_errf(err, V3_ERANGE, "%s: score.weight has shape [%lld, %lld], want [num_labels, %lld]",
                     v3_st_model_where(&st, "score.weight"), (long long)t->shape[0],
                     (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)cfg->hidden_size);
    } else {
        *labels = t->shape[0];
    }
    v3_st_model_close(&st);
    return rc;
}

/* pad_token_id and the id2label count from config.json (HF keeps both outside the model config). */
static int config_extras(const char *path, const char *text, int64_t labels, int *pad_id, v3_err *err) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return v3_errf(err, V3_EFORMAT, "%s: invalid JSON: %s", path, je.text);
    }
    int rc = V3_OK;
    json_t *pad = json_object_get(j, "pad_token_id"), *i2l = json_object_get(j, "id2label");
    json_t *nl = json_object_get(j, "num_labels");
    *pad_id = -1;
    if (json_is_integer(pad) && json_integer_value(pad) >= 0) *pad_id = (int)json_integer_value(pad);
    else if (pad && !json_is_null(pad))
        rc = v3_errf(err, V3_EFORMAT, "%s: pad_token_id must be a non-negative integer or null", path);
    if (!rc && json_is_object(i2l) && (int64_t)json_object_size(i2l) != labels)
        rc = v3_errf(err, V3_ERANGE, "%s: id2label has %zu labels but score.weight has %lld rows", path,
                     json_object_size(i2l), (long long)labels);
    if (!rc && json_is_integer(nl) && json_integer_value(nl) != labels)
        rc = v3_errf(err, V3_ERANGE, "%s: num_labels is %lld but score.weight has %lld rows", path,
                     (long long)json_integer_value(nl), (long long)labels);
    json_decref(j);
    return rc;
}

/* The score table's tensors sit where the causal table's do (params.h); checked, not assumed. */
static int same_layout(const v3_param_table *a, const v3_param_table *b, v3_err *err) {
    if (a->n != b->n) return v3_errf(err, V3_EINVAL, "parameter tables differ in length");
    for (int i = 0; i < a->n; i++)
        if (a->p[i].offset != b->p[i].offset ||
            (i < a->n - 1 && strcmp(a->p[i].name, b->p[i].name) != 0))
            return v3_errf(err, V3_EINVAL, "parameter table: %s is not where %s is", a->p[i].name,
                           b->p[i].name);
    return V3_OK;
}

static void identity_hash(const char *cfg_text, const float *host, const v3_model *m, int64_t labels,
                          char hex[65]) {
    v3_sha256_ctx s;
    v3_sha256_init(&s);
    v3_sha256_update(&s, cfg_text, strlen(cfg_text));
    int ih = v3_params_find(&m->table, "lm_head.weight"), in = v3_params_find(&m->table, "model.norm.weight");
    v3_sha256_update(&s, host + m->table.p[ih].offset, (size_t)(labels * m->cfg.hidden_size) * sizeof(float));
    v3_sha256_update(&s, host + m->table.p[in].offset, (size_t)m->cfg.hidden_size * sizeof(float));
    uint8_t d[32];
    v3_sha256_final(&s, d);
    v3_sha256_hex(d, hex);
}

static int load_weights(v3_rm *rm, const char *dir, const char *cfg_text, v3_err *err) {
    v3_param_table st;
    int rc = v3_params_build_score(&st, &rm->cfg, rm->num_labels, err);
    if (rc) return rc;
    rc = same_layout(&st, &rm->m.table, err);
    size_t bytes = (size_t)rm->m.table.total * sizeof(float);
    float *host = rc ? NULL : calloc(1, bytes ? bytes : 1);
    if (!rc && !host) rc = v3_errf(err, V3_ENOMEM, "cannot allocate %.1f MiB", bytes / 1048576.0);
    /* an extra lm_head.weight or MTP layers in the checkpoint are ignored */
    if (!rc) rc = v3_checkpoint_load(dir, &st, host, V3_CKPT_IGNORE_UNEXPECTED, err);
    if (!rc) {
        rm->m.ctx->be->to_device(rm->m.ctx, rm->m.params, host, bytes);
        v3_model_weights_changed(&rm->m);
        identity_hash(cfg_text, host, &rm->m, rm->num_labels, rm->info.sha256);
    }
    free(host);
    v3_params_free(&st);
    return rc;
}

static int parse_template(const char *name, int *tmpl, v3_err *err) {
    if (!name || !strcmp(name, "v3")) *tmpl = V3_CHAT_V3;
    else if (!strcmp(name, "r1")) *tmpl = V3_CHAT_R1;
    else if (!strcmp(name, "raw")) *tmpl = V3_RM_TEMPLATE_RAW;
    else return v3_errf(err, V3_EINVAL, "template '%s' (want v3, r1 or raw)", name);
    return V3_OK;
}

static void set_info(v3_rm *rm, const v3_rm_opts *o) {
    v3_reward_func_info *fi = &rm->info;
    size_t end = strlen(o->dir), start;
    while (end > 1 && o->dir[end - 1] == '/') end--; /* "dir/" names dir */
    for (start = end; start > 0 && o->dir[start - 1] != '/'; start--) {}
    if (o->name && *o->name) snprintf(fi->name, sizeof fi->name, "%s", o->name);
    else snprintf(fi->name, sizeof fi->name, "%.*s", (int)(end - start), o->dir + start);
    fi->weight = o->has_weight ? o->weight : 1.0;
    fi->fallback = o->fallback;
    snprintf(fi->path, sizeof fi->path, "%s", o->dir);
}

static int alloc_buffers(v3_rm *rm, v3_err *err) {
    size_t n = (size_t)rm->max_tokens;
    rm->tokens = malloc(n * sizeof(int32_t));
    rm->positions = malloc(n * sizeof(int32_t));
    rm->doc_start = malloc(n * sizeof(int32_t));
    rm->out_rows = malloc(n * sizeof(int32_t));
    rm->scores = malloc(n * (size_t)rm->num_labels * sizeof(float));
    if (!rm->tokens || !rm->positions || !rm->doc_start || !rm->out_rows || !rm->scores)
        return v3_errf(err, V3_ENOMEM, "out of memory");
    return V3_OK;
}

static int init(v3_rm *rm, const v3_rm_opts *o, v3_kctx *ctx, v3_err *err) {
    char path[4200];
    char *cfg_text = NULL;
    int64_t labels = 0;
    rm->max_tokens = o->max_tokens > 0 ? o->max_tokens : V3_RM_DEFAULT_MAX_TOKENS;
    set_info(rm, o);
    int rc = parse_template(o->template_name, &rm->tmpl, err);
    snprintf(path, sizeof path, "%s/config.json", o->dir);
    if (!rc) rc = v3_config_load(&rm->cfg, path, err);
    if (!rc) rc = v3_read_file(path, &cfg_text, NULL, 16u << 20, err);
    if (!rc) rc = head_labels(o->dir, &rm->cfg, &labels, err);
    if (!rc) rc = config_extras(path, cfg_text, labels, &rm->pad_id, err);
    if (!rc) rc = v3_tok_load(&rm->tok, o->tokenizer_dir ? o->tokenizer_dir : o->dir, err);
    if (!rc && (o->label < 0 || o->label >= labels))
        rc = v3_errf(err, V3_ERANGE, "label %d, but score.weight has %lld labels", o->label,
                     (long long)labels);
    rm->num_labels = (int)labels;
    rm->label = o->label;
    if (!rc) {
        v3_model_options mo = v3_model_default_options();
        mo.training = 0;
        mo.mtp = 0;
        mo.loss_chunk = 1; /* no logits over the vocabulary are ever computed */
        rc = v3_model_init(&rm->m, &rm->cfg, ctx, rm->max_tokens, &mo, err);
        rm->have_model = rc == V3_OK;
    }
    if (!rc) rc = load_weights(rm, o->dir, cfg_text, err);
    if (!rc) rc = alloc_buffers(rm, err);
    free(cfg_text);
    return rc;
}

int v3_rm_init(v3_rm **out, const v3_rm_opts *o, v3_kctx *ctx, v3_err *err) {
    *out = NULL;
    if (!o || !o->dir || !*o->dir) return v3_errf(err, V3_EINVAL, "reward model: no directory given");
    if (o->has_weight && !isfinite(o->weight))
        return v3_errf(err, V3_EINVAL, "reward model %s: weight is not finite", o->dir);
    v3_rm *rm = calloc(1, sizeof *rm);
    if (!rm) return v3_errf(err, V3_ENOMEM, "reward model: out of memory");
    int rc = init(rm, o, ctx, err);
    if (rc) {
        v3_rm_free(rm);
        return v3_err_prefix(err, "reward model %s", o->dir);
    }
    *out = rm;
    return V3_OK;
}

void v3_rm_free(v3_rm *rm) {
    if (!rm) return;
    if (rm->have_model) v3_model_free(&rm->m);
    v3_tok_free(rm->tok);
    free(rm->tokens);
    free(rm->positions);
    free(rm->doc_start);
    free(rm->out_rows);
    free(rm->scores);
    free(rm);
}

const v3_reward_func_info *v3_rm_info(const v3_rm *rm) { return &rm->info; }
int v3_rm_num_labels(const v3_rm *rm) { return rm->num_labels; }
int v3_rm_pad_id(const v3_rm *rm) { return rm->pad_id; }
const v3_tokenizer *v3_rm_tokenizer(const v3_rm *rm) { return rm->tok; }
