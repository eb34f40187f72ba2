/* grpo.h — the GRPO training loop (`v3tune grpo`): one process, one set of weights. Each step
 *
 *   1. takes rollout.prompts_per_step prompts from the prompt set (a seeded order per epoch; the
 *      cursor is checkpointed), and the rollout engine (rollout/engine.h) samples G completions
 *      of each with the policy model itself — the struct the trainer updates, no weight copy;
 *   2. scores every completion with the Lua reward modules (rewards/host.h) and computes the
 *      group advantages exactly as TRL (trainer/grpo_adv.h); with dynamic sampling, groups whose
 *      rewards are all equal (or that have fewer than two scored samples) are dropped and
 *      replaced by groups of further prompts, for at most rollout.dynamic_max_rounds extra rounds;
 *   3. updates the policy grpo.mu times over grpo.mini_batches mini-batches of the kept groups:
 *      forward of the packed prompt+completion documents at the sampling temperature, logp of the
 *      completion tokens, the TRL loss and its gradient w.r.t. logp (trainer/grpo_loss.h), the
 *      model's backward with token weights −dL/dlogp, global-norm clipping and AdamW — with
 *      π_old = the sampler's logprob (π at rollout), so the ratio is exactly 1 at the first update;
 *      the trainer's first recompute is compared with the sampler's logprobs and the gap logged
 *      (exactly 0 on the CPU backend);
 *   4. writes every prompt, sample (ids, text, sampler/trainer/reference logprobs), reward per
 *      function (score, NULL, error, extras), advantage and the step's metrics to run_dir/run.db.
 *
 * A reference model (a second v3_model, inference only, absorbed attention) is loaded only when
 * grpo.beta > 0; its identity (sha256 of its config and weights) is stored in every checkpoint
 * and checked on resume. Checkpoints step-N/ hold the policy (HF layout), optim.bin, and the
 * state (step, prompt cursor, RNG, guard, reference identity); a resumed run reproduces the
 * uninterrupted one exactly on the CPU backend (same samples, same weights).
 *
 * The full reference of the config keys and the metrics: docs/grpo.md. */
#ifndef V3_GRPO_H
#define V3_GRPO_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "common/dtype.h"
#include "common/err.h"
#include "rollout/sampler.h"
#include "trainer/grpo_adv.h"
#include "trainer/grpo_loss.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

struct v3_cfg;

/* One reward module of the run: exactly one of script, builtin or source. */
typedef struct v3_grpo_reward {
    const char *script;   /* a Lua module file */
    const char *builtin;  /* a built-in module: "math", or a rewards/NAME.lua shipped with v3tune */
    const char *source;   /* the module's Lua source, inline in the config */
    const char *name;     /* NULL: the module's own `name`, else the file's base name */
    double weight;
    int has_weight;       /* 0: the module's `weight`, else 1 */
} v3_grpo_reward;

typedef struct v3_grpo_opts {
    /* model and run */
    const char *model_dir;       /* HF layout: config.json + safetensors (+ tokenizer files) */
    const char *run_dir;
    const char *tokenizer_dir;   /* NULL: model_dir when it holds tokenizer.json, else the default */
    const char *ref_dir;         /* reference model (beta > 0); NULL or "": model_dir */
    const char *device;          /* auto | cpu | cuda */
    const char *math;            /* auto | fp32 | tf32 | bf16 (v3_kctx_open; NULL = auto) */
    int threads;                 /* CPU threads, 0 = all */
    uint64_t seed;

    /* prompts */
    const char *const *prompts;  /* JSONL files: rows with `prompt` (or prompt_field) or `messages` */
    int n_prompts;
    const char *const *eval;     /* held-out JSONL prompt files; none: eval_fraction of prompts */
    int n_eval;
    double eval_fraction;
    const char *prompt_field;    /* the row's prompt text member ("prompt"; GSM8K: "question") */
    int chat;                    /* 1: render as a user message with the chat template */
    const char *template_name;   /* v3 | r1 */
    const char *system_prompt;   /* chat: a system message before each prompt (NULL/"" = none) */
    int64_t seq_len;             /* prompt + completion tokens at most */

    /* rollout */
    int group_size;              /* G */
    int prompts_per_step;
    int64_t max_new_tokens;
    v3_sampling sampling;        /* temperature > 0 */
    const char *const *stop;     /* stop strings */
    int n_stop;
    int64_t max_live_tokens, max_seqs; /* engine cache budget, sequences at once */
    int pack_weights;            /* engine pack_weights: packed weight copies for decoding (CPU) */
    int dynamic_sampling;
    int dynamic_max_rounds;      /* extra generation rounds per step at most */

    /* update */
    int64_t steps;               /* GRPO steps (rollout + updates) */
    int mu;                      /* updates per generation batch (TRL num_iterations) */
    int mini_batches;            /* optimizer steps per pass over the generation batch */
    int64_t micro_batch_tokens;  /* tokens per forward/backward (the model's max_tokens) */
    v3_grpo_loss_opts loss;      /* type, eps_low/high, delta, beta, is_level, kl_ratio */
    v3_grpo_scale scale;
    v3_grpo_agg agg;
    int mask_truncated;          /* completions that hit max_new_tokens leave the loss */
    int check_all_logprobs;      /* 1: recompute every sample before the first update (a forward
                                    pass more when mini_batches > 1): the gap covers them all */
    v3_adamw_opts adamw;
    double clip;
    v3_schedule sched;           /* over optimizer updates; total_steps filled in */
    float router_gamma, balance_alpha;
    double guard_z;
    int guard_window, guard_max_bad;

    /* rewards */
    const v3_grpo_reward *rewards;
    int n_rewards;
    int reward_workers;
    int64_t reward_timeout_ms;
    double reward_fallback;
    const char *const *reward_dirs; /* `require` path; NULL: the built-in rewards/ directory */
    int n_reward_dirs;

    /* evaluation on held-out prompts */
    int64_t eval_every;          /* 0 = off; also at step 0 and at the end */
    int64_t eval_prompts;        /* 0 = all held-out prompts */
    int eval_samples;            /* completions per held-out prompt */
    float eval_temperature;      /* 0 = greedy */

    /* checkpoints */
    int64_t ckpt_every;
    int ckpt_keep;
    v3_dtype ckpt_dtype;
    int resume;

    /* process */
    const char *config_json;     /* resolved config stored with the run (may be NULL) */
    const char *config_lua;      /* written to run_dir/config.lua (may be NULL) */
    FILE *log;                   /* progress (NULL = quiet) */
    int64_t log_every;
    const volatile sig_atomic_t *stop_flag; /* set (by a signal handler): checkpoint and stop */
    int64_t stop_after;          /* > 0: stop after this many steps of this process, checkpointed
                                    (tests; time-boxed jobs) */
} v3_grpo_opts;

/* TRL's GRPOConfig defaults where they apply (dapo, ε 0.2, β 0, μ 1, scale group). */
void v3_grpo_opts_default(v3_grpo_opts *o);
/* Checks ranges and combinations; the message names the config key. */
int v3_grpo_opts_check(const v3_grpo_opts *o, v3_err *err);

/* Fills o from a config loaded with the "grpo" schema (lua/config_schemas.c). Strings are
 * borrowed from c; the lists (prompts, eval, stop, rewards, reward dirs) are allocated into
 * *hold, released by v3_grpo_cfg_hold_free. */
typedef struct v3_grpo_cfg_hold {
    const char **prompts, **eval, **stop, **dirs;
    v3_grpo_reward *rewards;
} v3_grpo_cfg_hold;
int v3_grpo_opts_from_cfg(const struct v3_cfg *c, v3_grpo_opts *o, v3_grpo_cfg_hold *hold,
                          v3_err *err);
void v3_grpo_cfg_hold_free(v3_grpo_cfg_hold *hold);

/* Runs the whole training; V3_OK when it completed (or stopped on request, checkpointed). */
int v3_grpo_run(const v3_grpo_opts *o, v3_err *err);

#endif
