/* grpo_internal.h — what the parts of the GRPO loop share (trainer/grpo*.c): the run state, the
 * prompt set, one step's samples. Not a public API: see trainer/grpo.h.
 *
 *   grpo.c          setup, the step loop, teardown
 *   grpo_config.c   options: defaults, checks, mapping from the Lua config
 *   grpo_data.c     prompt sets: JSONL rows -> token ids (chat template), held-out split, cursor
 *   grpo_rewards.c  reward modules (files, built-ins, inline sources) -> the reward host
 *   grpo_rollout.c  generation with the engine, scoring, advantages, dynamic sampling
 *   grpo_update.c   the policy update: packing, logprobs, loss, backward, optimizer
 *   grpo_eval.c     held-out evaluation
 *   grpo_record.c   run.db: prompts, samples, rewards, step metrics
 *   grpo_ckpt.c     checkpoints, resume, reference identity */
#ifndef V3_GRPO_INTERNAL_H
#define V3_GRPO_INTERNAL_H

#include <stdint.h>

#include "datasets/pack.h"
#include "datasets/store.h"
#include "datasets/tokenizer.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "rewards/host.h"
#include "rollout/engine.h"
#include "trainer/ckpt.h"
#include "trainer/grpo.h"

#define GRPO_STATE_VERSION 1
#define GRPO_MAX_ROUNDS 17 /* round 0 + rollout.dynamic_max_rounds (<= 16) */

/* One prompt, ready for the engine. */
typedef struct grpo_prompt {
    int32_t *ids;          /* [n] the prompt tokens (template applied) */
    int64_t n;
    char *text;            /* the prompt text as given (rewards' s.prompt; the store's text) */
    char *messages;        /* JSON array of the chat messages, or NULL (raw text prompt) */
    char *fields;          /* JSON object: the row's other members (answer, tests, ...) */
    const char *file;      /* borrowed from the options */
    int64_t line;
} grpo_prompt;

typedef struct grpo_prompts {
    grpo_prompt *p;
    int64_t n, cap;
    int64_t n_bad;         /* rows skipped: not JSON, no prompt, template/tokenizer failure */
    int64_t n_long;        /* rows skipped: longer than data.seq_len - rollout.max_new_tokens */
} grpo_prompts;

/* One completion of one step. */
typedef struct grpo_sample {
    int64_t prompt;        /* index into the train prompt set */
    int group, index;      /* group of the step (every round counted), index in the group */
    int round;             /* generation round (0, then dynamic-sampling rounds) */
    uint64_t seed;         /* the request seed (stream: seed, request index, sample index) */
    const v3_gen_output *o;
    char *text;            /* the completion text (owned) */
    const v3_reward_result *r;
    double *score;         /* [n_func] NaN = skipped (or a NaN fallback) */
    double reward, adv;    /* reward NaN when every function skipped */
    int kept;              /* its group enters the update */
    int truncated;         /* finished on the length limit */
    float *lp;             /* [o->n] trainer logprobs at the sample's first update, or NULL */
    float *ref;            /* [o->n] reference logprobs (beta > 0), or NULL */
} grpo_sample;

typedef struct grpo_round {
    v3_gen_output *outs;
    int64_t n_outs;
    v3_reward_result *res; /* [n_outs] */
} grpo_round;

/* Everything one step generated. */
typedef struct grpo_batch {
    grpo_sample *s;
    int64_t n, cap;
    double *scores;        /* [cap * n_func] */
    grpo_round rounds[GRPO_MAX_ROUNDS];
    int n_rounds;
    int n_groups, n_kept_groups;
    int n_zero_std;        /* groups with reward std 0 (TRL frac_reward_zero_std numerator) */
    int n_no_signal;       /* groups with fewer than two scored samples */
    double t_rollout, t_reward;
    int64_t gen_tokens;    /* completion tokens generated */
} grpo_batch;

/* What the update reports for the step's metrics. */
typedef struct grpo_update_stats {
    int n_updates, n_skipped;
    double loss, grad_norm, lr;            /* means over the updates (lr: the last) */
    v3_grpo_loss_metrics lm;               /* sums and counts over every loss call */
    double gap_max;                        /* max |trainer − sampler| logprob, before any update */
    int64_t gap_tokens;                    /* tokens that comparison covered */
    int64_t tokens;                        /* tokens forwarded for training (μ passes) */
    int64_t active_tokens;                 /* completion tokens in the loss (num_items_in_batch) */
    double t_train, t_ref;
} grpo_update_stats;

/* Named step metrics, in insertion order. */
typedef struct grpo_metrics {
    char **names;
    double *vals;
    int n, cap;
} grpo_metrics;

typedef struct grpo {
    const v3_grpo_opts *o;
    v3_config cfg;         /* the policy's config.json (read before anything is allocated) */
    v3_kctx ctx;
    int have_ctx;
    v3_model m, ref;
    int have_model, have_ref;
    char ref_sha[65];
    v3_optim opt;
    int have_opt;
    v3_engine eng;
    int have_eng;
    v3_tokenizer *tok;
    v3_reward_host *host;
    int n_func;
    double weights[V3_REWARD_MAX_FUNCS];
    int acc_func;          /* the function named "accuracy" (else "math"), or -1 */
    grpo_prompts train, eval;
    int32_t *order;        /* [train.n] prompt order of order_epoch */
    uint64_t order_epoch;
    int have_order;
    v3_store *store;
    v3_train_state st;     /* step, tokens, prompt cursor (seed, epoch, next), rng, guard */
    v3_schedule sched;
    int64_t total_steps;
    int64_t updates_per_step;
    int32_t stop_ids[2];
    int n_stop_ids;
    char tok_dir[4200];
    char prompts_sha[65];  /* of the train prompt ids, stored with checkpoints */
    int64_t **load_step;   /* [n_layers_total] expert load of the step's updates (NULL: dense) */
    /* update scratch, [m.max_tokens] each */
    int32_t *b_tok, *b_tgt, *b_pos, *b_ds;
    float *b_loss, *b_w;
} grpo;

/* grpo_data.c */
int grpo_prompts_load(grpo *g, const char *const *files, int n_files, grpo_prompts *out, v3_err *err);
void grpo_prompts_free(grpo_prompts *ps);
/* Moves a seeded eval_fraction of train into eval (when no eval files are given). */
int grpo_prompts_split(grpo_prompts *train, grpo_prompts *eval, double frac, uint64_t seed, v3_err *err);
/* The next k prompt indices from the cursor (g->st.cursor), crossing epochs as needed. */
int grpo_next_prompts(grpo *g, int k, int64_t *out, v3_err *err);
/* sha256 of the train set's token ids (identity of the prompt order a checkpoint continues). */
void grpo_prompts_sha(const grpo_prompts *ps, char hex[65]);

/* grpo_rewards.c */
int grpo_rewards_init(grpo *g, v3_err *err);

/* grpo_rollout.c */
int grpo_rollout(grpo *g, int64_t step, grpo_batch *b, v3_err *err);
void grpo_batch_free(grpo_batch *b);
/* The text of a completion: the engine's when it decoded (stop strings), else the ids the
 * tokenizer knows, decoded without special tokens. malloc'd; NULL on out of memory. */
char *grpo_completion_text(const grpo *g, const v3_gen_output *o);
/* Reward samples for an engine output of prompt p with its text (fills one v3_reward_sample). */
void grpo_reward_sample(const grpo_prompt *p, const v3_gen_output *o, const char *text, int64_t group,
                        int64_t index, v3_reward_sample *rs);

/* grpo_update.c */
int grpo_update(grpo *g, int64_t step, grpo_batch *b, grpo_update_stats *us, v3_err *err);

/* grpo_eval.c */
int grpo_evaluate(grpo *g, int64_t step, v3_err *err);

/* grpo_record.c */
int grpo_metrics_add(grpo_metrics *m, const char *name, double v);
void grpo_metrics_free(grpo_metrics *m);
/* The step's metrics (reward per function, accuracy, KL, clipping, entropy, lengths, gap,
 * time split, tokens/s). */
int grpo_step_metrics(grpo *g, const grpo_batch *b, const grpo_update_stats *us, double step_s,
                      grpo_metrics *mt);
/* One store batch: the step's prompts, samples, rewards and metrics (atomic). */
int grpo_record_step(grpo *g, int64_t step, const grpo_batch *b, const grpo_update_stats *us,
                     double step_s, const grpo_metrics *mt, v3_err *err);

/* grpo_ckpt.c */
int grpo_ckpt_write(grpo *g, v3_err *err);
/* Restores optimizer, state and checks the GRPO state of checkpoint dir `path` (the policy
 * weights were loaded from it already). */
int grpo_ckpt_restore(grpo *g, const char *path, v3_err *err);
/* sha256 of a model's config and weights (the reference identity). */
int grpo_model_sha(v3_model *m, char hex[65], v3_err *err);

#endif
