/* params.h — the parameter table: every tensor of a DeepSeek-V3 model under its Hugging Face name,
 * with shape, in a fixed order. Loading, saving, initialisation, the optimiser and the model all
 * iterate this one table, so names never drift between them. */
#ifndef V3_PARAMS_H
#define V3_PARAMS_H

#include <stdint.h>

#include "config.h"

typedef enum v3_param_kind {
    V3_PK_EMBED,     /* model.embed_tokens.weight */
    V3_PK_HEAD,      /* lm_head.weight (score.weight in a v3_params_build_score table) */
    V3_PK_NORM,      /* any *norm*.weight: RMSNorm gains, no weight decay, init 1 */
    V3_PK_LINEAR,    /* projection weights [out, in] */
    V3_PK_ROUTER,    /* mlp.gate.weight [E, d] */
    V3_PK_BIAS,      /* mlp.gate.e_score_correction_bias [E]: not trained by gradients, init 0 */
} v3_param_kind;

typedef struct v3_param_info {
    char name[96];
    int ndim;
    int64_t shape[2];
    int64_t numel;
    int64_t offset;   /* element offset in one contiguous parameter buffer (table order) */
    v3_param_kind kind;
    int layer;        /* decoder layer index, -1 for top-level tensors */
    int expert;       /* routed expert index, -1 otherwise */
} v3_param_info;

typedef struct v3_param_table {
    v3_param_info *p;
    int n;
    int64_t total;    /* Σ numel */
    int *hash;        /* open addressing over names: index+1, 0 = empty; hcap slots */
    int hcap;
} v3_param_table;

/* Builds the table. with_mtp adds model.layers.{n_layer..n_layer+D-1}.* (enorm, hnorm, eh_proj,
 * embed_tokens, shared_head.{norm,head} and a MoE decoder layer), as the released checkpoints. */
int v3_params_build(v3_param_table *t, const v3_config *c, int with_mtp, v3_err *err);
/* The table of a sequence-classification model (HF's DeepseekV3ForSequenceClassification, a reward
 * model): the main model without MTP and score.weight [num_labels, hidden] in place of
 * lm_head.weight. The head is the last tensor of both tables, so every other tensor has the same
 * offset as in v3_params_build(c, 0), and score.weight starts where lm_head.weight does
 * (num_labels <= vocab_size): a checkpoint loaded with this table into a buffer laid out by the
 * causal table leaves the scores' weights in the first num_labels rows of the lm_head slot. */
int v3_params_build_score(v3_param_table *t, const v3_config *c, int64_t num_labels, v3_err *err);
void v3_params_free(v3_param_table *t);
/* Index of a name, or -1 (hashed: the 671B table has ~92K names). */
int v3_params_find(const v3_param_table *t, const char *name);

#endif
