/* sft.h — the supervised fine-tuning loop (`v3tune sft`): packed batches from prepared token
 * shards, forward/backward with gradient accumulation, global-norm clipping, AdamW on a schedule,
 * the router-bias update, guards, periodic evaluation on the held-out split, atomic checkpoints
 * with exact resumption, and every metric in run_dir/run.db.
 *
 * Step semantics (what a resumed run reproduces bit for bit on the CPU backend):
 *   grads = Σ over grad_accum micro-batches of d(mean token CE of the micro-batch)
 *   loss  = mean of the micro-batch losses; grad_norm = ‖grads‖ / grad_accum
 *   AdamW step with lr = schedule(step) and g = grads · clip_coef(grad_norm) / grad_accum
 *   router bias += γ · sign(mean load − load) over the step's routed tokens (γ = 0: off)
 * A step the guard rejects (non-finite, or an outlier) changes no weight and no optimizer state,
 * but its data are consumed and it counts as a step. */
#ifndef V3_SFT_H
#define V3_SFT_H

#include <stdint.h>
#include <stdio.h>

#include "common/dtype.h"
#include "common/err.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

typedef struct v3_sft_opts {
    const char *model_dir;       /* HF layout: config.json + safetensors (+ tokenizer files) */
    const char *run_dir;
    const char *tokenizer_dir;   /* NULL: model_dir when it holds tokenizer.json, else the default */
    const char *const *train;    /* JSONL files, or one prepared shard directory (manifest.json) */
    int n_train;
    const char *const *eval;     /* held-out JSONL files (or one prepared dir); none = eval_fraction */
    int n_eval;
    double eval_fraction;        /* share of train rows held out when no eval files are given */
    const char *format;          /* ingest format name ("auto", "prompt_completion", ...) */
    const char *const *fields;   /* "key=jsonname" field mappings (gsm8k: prompt=question) */
    int n_fields;
    const char *template_name;   /* chat template: v3 | r1 | r1-keep-reasoning */
    int mask_last;
    int64_t seq_len, micro_batch_tokens, grad_accum;
    int64_t steps, epochs;       /* steps = 0: epochs passes over the train split */
    int64_t eval_every, eval_batches; /* eval_batches 0 = the whole eval split */
    uint64_t seed;
    v3_adamw_opts adamw;
    double clip;                 /* max grad norm, 0 = off */
    v3_schedule sched;           /* total_steps is filled in by the trainer */
    float router_gamma, balance_alpha, mtp_lambda;
    int64_t ckpt_every;          /* 0 = only at the end */
    int ckpt_keep;               /* 0 = keep all */
    v3_dtype ckpt_dtype;         /* V3_F32 (exact resume) or V3_BF16 */
    double guard_z;              /* outlier skip threshold (0 = off) */
    int guard_window, guard_max_bad;
    int resume;                  /* continue from the latest complete checkpoint */
    const char *config_json;     /* resolved config stored with the run (may be NULL) */
    const char *config_lua;      /* written to run_dir/config.lua (may be NULL) */
    const char *device;          /* auto | cpu | cuda */
    const char *math;            /* auto | fp32 | tf32 | bf16 (v3_kctx_open; NULL = auto) */
    int threads;                 /* CPU threads, 0 = all */
    FILE *log;                   /* progress and messages (NULL = quiet) */
    int tty;                     /* -1 auto, 0 plain lines, 1 live line */
    int64_t log_every;           /* plain-line interval in steps */
} v3_sft_opts;

void v3_sft_opts_default(v3_sft_opts *o);
/* Runs the whole training; V3_OK when it completed. */
int v3_sft_run(const v3_sft_opts *o, v3_err *err);

/* Data (trainer/sft_data.c): the prepared directory for o->train (the given one, or
 * run_dir/data prepared on first use and reused after), and for o->eval (run_dir/data-eval).
 * eval_dir is "" when there is no eval data; eval_split is the split to open in it. */
int v3_sft_prepare_data(const v3_sft_opts *o, char *train_dir, size_t n1, char *eval_dir, size_t n2,
                        const char **eval_split, v3_err *err);

#endif
