/* rm.h — a local reward model: a DeepSeek-V3-architecture model with a scalar head, loaded from a
 * Hugging Face DeepseekV3ForSequenceClassification directory and run in this process on the op
 * table (any backend), so GRPO and `v3tune reward` can score completions with it alongside Lua
 * reward functions. docs/rewards-model.md.
 *
 * The checkpoint holds model.* and score.weight [num_labels, hidden] (no lm_head.weight). A
 * sample's input is the conversation (its messages, or its prompt as one user message) plus the
 * completion as the assistant's reply, rendered with the DeepSeek chat template and the model's
 * own tokenizer (template "v3" or "r1"; "raw" encodes prompt + completion as one text). The score
 * is the head applied to the final-norm hidden state of the last token, where, as in HF, trailing
 * tokens equal to config.json's pad_token_id are skipped (the rightmost non-pad token; row 0 when
 * every token is pad). Sequences are packed into forwards of up to max_tokens tokens.
 *
 *     v3_rm *rm;  v3_rm_opts o = {.dir = "rm/"};
 *     v3_rm_init(&rm, &o, &ctx, &err);            // ctx: the backend it runs on (borrowed)
 *     v3_rm_score(rm, samples, n, values, &err);  // one v3_reward_value per sample
 *     v3_rm_values_free(values, n);  v3_rm_free(rm);
 *
 * A sample that cannot be scored (its messages do not render, its sequence is longer than
 * max_tokens, a token is outside the model's vocabulary, the score is not finite) gets status
 * V3_REWARD_ERROR, the message, and the fallback score, as a failed Lua call does. rewards/rm_mix.h
 * combines reward models with a Lua reward host. */
#ifndef V3_REWARDS_RM_H
#define V3_REWARDS_RM_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "datasets/tokenizer.h"
#include "kernels/kernels.h"
#include "rewards/host.h"

#define V3_RM_DEFAULT_MAX_TOKENS 4096

typedef struct v3_rm_opts {
    const char *dir;            /* HF directory: config.json, model.safetensors (or an index and
                                   shards), tokenizer.json (+ tokenizer_config.json) */
    const char *name;           /* NULL: the directory's base name */
    double weight;              /* used when has_weight; else 1 */
    int has_weight;
    const char *template_name;  /* "v3" (default), "r1" or "raw" */
    int label;                  /* which logit is the reward (0..num_labels-1; default 0) */
    int64_t max_tokens;         /* tokens per forward, and the longest sequence; 0 = default */
    double fallback;            /* score of a sample that cannot be scored; NaN = skip */
    const char *tokenizer_dir;  /* NULL: dir */
} v3_rm_opts;

typedef struct v3_rm v3_rm; /* opaque */

/* Loads the model (config.json, the checkpoint with score.weight, the tokenizer) onto ctx's
 * backend. Fails with a message naming the file: no score.weight (a causal LM has lm_head.weight
 * instead), num_labels of config.json's id2label not matching score.weight, a bad label. */
int v3_rm_init(v3_rm **rm, const v3_rm_opts *opts, v3_kctx *ctx, v3_err *err);
void v3_rm_free(v3_rm *rm); /* accepts NULL */

/* name, weight, fallback, path (the directory) and sha256: an identity hash of config.json,
 * score.weight and model.norm.weight as loaded (fp32), not of the whole checkpoint. */
const v3_reward_func_info *v3_rm_info(const v3_rm *rm);
int v3_rm_num_labels(const v3_rm *rm);
int v3_rm_pad_id(const v3_rm *rm);               /* config.json pad_token_id, -1 when null */
const v3_tokenizer *v3_rm_tokenizer(const v3_rm *rm);

/* The token ids the model scores for a sample (replaces ids' contents). */
int v3_rm_encode(const v3_rm *rm, const v3_reward_sample *s, v3_tok_ids *ids, v3_err *err);
/* The row of ids[0..n) that is scored: the rightmost id != pad_id (0 when all are pad), or n-1
 * when pad_id < 0 (HF's GenericForSequenceClassification). */
int64_t v3_rm_pool_row(const int32_t *ids, int64_t n, int pad_id);

/* Scores n token sequences (each 1..max_tokens ids inside the vocabulary; else V3_ERANGE), packed
 * into as few forwards as fit: logits [n, num_labels]. */
int v3_rm_score_ids(v3_rm *rm, const int32_t *const *ids, const int64_t *lens, int n, float *logits,
                    v3_err *err);

/* Scores samples: out[i] is the verdict on samples[i] (score = logit `label`; extra_json holds
 * {"tokens": n} and, with several labels, "logits"). Per-sample failures are recorded in out;
 * the call fails only when the backend does (out is then freed). */
int v3_rm_score(v3_rm *rm, const v3_reward_sample *samples, int n, v3_reward_value *out, v3_err *err);
void v3_rm_values_free(v3_reward_value *v, int n);

/* A reward-config entry {model = "DIR", name =, weight =, template =, label =, max_tokens =,
 * fallback =, tokenizer =} (a JSON object) into opts; strings point into entry, which must
 * outlive opts. Unknown keys are an error naming the key. fallback defaults to 0. */
int v3_rm_opts_from_json(const json_t *entry, v3_rm_opts *opts, v3_err *err);

#endif
