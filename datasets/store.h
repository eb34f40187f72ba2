/* store.h — the run store: one SQLite file (`run.db`, WAL) per run directory holding runs, step
 * metrics, evals, expert load, prompts, samples, rewards, reasoning traces and checkpoints.
 *
 * Writing never waits on disk: records are copied into a batch, the batch is queued, and one writer
 * thread per open store commits queued batches in transactions. A batch is atomic: all of its rows
 * commit together or none do. v3_store_flush is the barrier a checkpoint waits on.
 * Reading (the CLI, another process) opens read-only and never creates, migrates or changes a file.
 *
 *     v3_store *s;  v3_err err;
 *     v3_store_open(&s, "runs/r1/run.db", V3_STORE_WRITE | V3_STORE_CREATE, &err);
 *     v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo", .config = json}, &run, &err);
 *     v3_store_batch *b;  v3_store_batch_new(s, &b, &err);
 *     v3_store_batch_add_sample(b, &smp, &sample_id, &err);      // ids are assigned at once
 *     v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sample_id, ...}, &err);
 *     v3_store_submit(s, b, NULL, &err);                          // queued; returns at once
 *     v3_store_flush(s, 1, &err);                                 // before writing a checkpoint
 *     v3_store_run_end(s, "completed", NULL, &err);
 *     v3_store_close(s, &err);
 *
 * Every function returns V3_OK or an error code with a message naming the db path. Columns, their
 * meaning, blob layouts and the concurrency rules: docs/store.md. */
#ifndef V3_STORE_H
#define V3_STORE_H

#include <stdint.h>

#include "common/err.h"

#define V3_STORE_SCHEMA_VERSION 3
#define V3_STORE_APPLICATION_ID 0x76337475 /* "v3tu": PRAGMA application_id of every run.db */

/* open flags: none = read-only */
enum {
    V3_STORE_READ = 0,
    V3_STORE_WRITE = 1 << 0,  /* the one writing process: migrates, starts the writer thread */
    V3_STORE_CREATE = 1 << 1, /* with WRITE: create the file when it does not exist */
};

typedef struct v3_store v3_store;
typedef struct v3_store_batch v3_store_batch;

/* Tunables for a writing store; zeros mean the defaults in brackets. */
typedef struct v3_store_opts {
    int64_t queue_max_bytes; /* submit blocks while this much is queued [512 MiB] */
    int64_t txn_max_bytes;   /* the writer commits once a transaction holds this much [64 MiB] */
    int page_size;           /* page size of a new file, power of two 512..65536 [65536] */
    /* A checkpointer thread copies the WAL into the database file (store_ckpt.c). */
    int64_t wal_checkpoint_bytes; /* it is asked to run once the WAL holds this much [32 MiB] */
    int64_t wal_max_bytes;        /* past this the writer waits for it, so the WAL restarts
                                     instead of growing with the run [256 MiB] */
} v3_store_opts;

/* ---- open / close ---- */

int v3_store_open(v3_store **out, const char *path, int flags, v3_err *err);
int v3_store_open_opts(v3_store **out, const char *path, int flags, const v3_store_opts *opts,
                       v3_err *err);
/* Commits everything queued, stops the writer, closes. Accepts NULL. Returns the writer's first
 * error if one happened (the handle is freed in every case). */
int v3_store_close(v3_store *s, v3_err *err);
const char *v3_store_path(const v3_store *s);

/* ---- runs ---- */

typedef struct v3_store_run_info {
    const char *command;    /* "sft", "grpo", "distill", ... (required) */
    const char *config;     /* resolved configuration, as JSON; may be NULL */
    const char *git_rev;    /* source revision of the binary; may be NULL */
    int64_t resumed_from;   /* runs.id this run continues, 0 = a fresh run */
} v3_store_run_info;

/* Starts a run (status "running") and waits until its row is committed. Later step, eval, sample,
 * trace and checkpoint rows belong to it. */
int v3_store_run_begin(v3_store *s, const v3_store_run_info *info, int64_t *run_id, v3_err *err);
/* status: "completed", "failed" or "interrupted"; message may be NULL. Waits for the commit. */
int v3_store_run_end(v3_store *s, const char *status, const char *message, v3_err *err);
/* The end of a command's work on a writing store: when run_begun, ends the run ("failed" with
 * err's message when rc != 0, else "completed"), then closes the store. Returns rc, or the first
 * error of ending/closing when rc was V3_OK (then copied into *err; err may be NULL). */
int v3_store_finish(v3_store *s, int run_begun, int rc, v3_err *err);

/* ---- records ---- */

typedef struct v3_store_step {
    int64_t step;
    double loss, lr, grad_norm; /* NAN = not measured (stored as NULL) */
    int64_t tokens;             /* tokens trained on in this step; < 0 = not counted */
    double step_time_s;         /* wall time of the step; NAN = not measured */
    int n_metrics;              /* any further named metrics ("kl", "reward/mean", "time/rollout_s") */
    const char *const *metric_names; /* [n_metrics] */
    const double *metric_values;     /* [n_metrics]; NAN values are skipped */
} v3_store_step;

typedef struct v3_store_eval {
    int64_t step;
    const char *name;       /* "gsm8k/accuracy", "val/loss" */
    double value;
    int64_t n_examples;     /* < 0 = unknown */
    const char *extra_json; /* may be NULL */
} v3_store_eval;

typedef struct v3_store_prompt {
    const char *text;          /* prompt as plain text (or the rendered template); may be NULL */
    const char *messages_json; /* OpenAI messages array when the prompt is a conversation; may be NULL */
    const char *fields_json;   /* the dataset row's other fields (e.g. the reference answer) */
    const char *source_file;   /* where it came from; may be NULL */
    int64_t source_line;       /* 1-based; <= 0 = unknown */
} v3_store_prompt;

typedef struct v3_store_sample {
    int64_t step;           /* optimizer step whose rollout produced it */
    int64_t prompt_id;      /* from v3_store_batch_add_prompt */
    int64_t group_id;       /* GRPO group (the G completions of one prompt) within the step */
    int32_t group_index;    /* 0..G-1 */
    const char *completion; /* decoded completion text (UTF-8) */
    int32_t n_tokens;       /* completion length: the length of every array below */
    const uint32_t *token_ids;      /* [n_tokens] or NULL */
    const float *logprobs;          /* [n_tokens] sampler logprobs, or NULL */
    const float *trainer_logprobs;  /* [n_tokens] recomputed by the trainer (same weights), or NULL */
    const float *ref_logprobs;      /* [n_tokens] frozen reference model (for the KL), or NULL */
    const char *finish_reason;      /* "stop", "length", "abort" or "error" */
    int32_t prompt_tokens;
    int64_t policy_version; /* optimizer step of the weights that sampled it */
    uint64_t seed;          /* sampler seed of this completion (stored as its int64 bit pattern) */
    double reward;          /* total reward the advantage was computed from; NAN = not yet */
    double advantage;       /* group-normalised advantage; NAN = not yet */
} v3_store_sample;

typedef struct v3_store_reward {
    int64_t sample_id;
    const char *name;        /* reward function (script name) */
    double score;            /* NAN = none (the script returned nil, or failed without fallback) */
    double weight;           /* weight of this function in the total; NAN = unknown */
    const char *error;       /* error text when the script failed; may be NULL */
    const char *extra_json;  /* extra fields the script returned; may be NULL */
    const char *script_hash; /* hex digest of the script source; may be NULL */
    double elapsed_ms;       /* NAN = not measured */
} v3_store_reward;

/* Values that become known after the sample was queued (the trainer's recomputed logprobs, a late
 * reward). NAN / NULL fields are left as they are. */
typedef struct v3_store_sample_update {
    int64_t sample_id;
    double reward, advantage;
    int32_t n_tokens;
    const float *trainer_logprobs; /* [n_tokens] or NULL */
    const float *ref_logprobs;     /* [n_tokens] or NULL */
} v3_store_sample_update;

typedef struct v3_store_trace {
    int64_t prompt_id;
    const char *reasoning;      /* the <think> part / reasoning_content */
    const char *answer;         /* the final answer after the reasoning */
    const char *source_model;   /* "deepseek-r1", a teacher endpoint's model name */
    const char *provenance_json;/* {"file":..., "line":...} or {"url":..., "request_id":...} */
    const char *filters_json;   /* JSON array of the filters it passed; may be NULL */
    int accepted;               /* 1 kept for SFT, 0 rejected, < 0 not decided yet */
    uint64_t key;               /* dedupe hash of prompt + trace (UNIQUE); 0 = none (NULL) */
    int truncated;              /* 1 = cut off: the reasoning was never closed; 0 = no/unknown */
} v3_store_trace;

/* A zero-initialised verdict stores 0 for weight and elapsed_ms; pass NAN for "unknown". */
typedef struct v3_store_verdict {
    int64_t trace_id;
    const char *verifier;    /* reward function or filter name */
    int passed;              /* 0 / 1 */
    double score;            /* NAN = none */
    const char *detail;      /* may be NULL */
    double weight;           /* the function's weight; NAN = unknown */
    const char *error;       /* the script's error text when it failed; may be NULL */
    const char *extra_json;  /* extra fields the script returned; may be NULL */
    const char *script_hash; /* hex digest of the script source; may be NULL */
    double elapsed_ms;       /* NAN = not measured */
} v3_store_verdict;

/* A decision taken after the trace was stored (a filter run): accepted and filters_passed are
 * set; the trace's other columns are left alone. */
typedef struct v3_store_trace_update {
    int64_t trace_id;
    int accepted;             /* 1 / 0; < 0 = NULL (undecided) */
    const char *filters_json; /* JSON array of the filters it passed; may be NULL */
} v3_store_trace_update;

/* One filter run over the traces (a selection): the rows of selection_traces say which traces it
 * kept. Selections are never overwritten; the latest one is what export uses by default. */
typedef struct v3_store_selection {
    const char *name;        /* e.g. "filter"; may be NULL */
    const char *config_json; /* the rules as resolved; may be NULL */
    const char *report_json; /* per-rule counts; may be NULL */
    int64_t n_traces, n_kept;
} v3_store_selection;

typedef struct v3_store_selected {
    int64_t selection_id, trace_id;
    int kept;                /* 0 / 1 */
    const char *rejected_by; /* the first rule that removed it; NULL when kept */
    int64_t tokens;          /* tokens of the trace as counted by the filter; < 0 = not counted */
    const char *detail_json; /* measured values (language fraction, repetition, ...); may be NULL */
} v3_store_selected;

typedef struct v3_store_checkpoint {
    int64_t step;
    const char *path; /* relative to the run directory, e.g. "step-100" */
    int64_t bytes;
    const char *hash; /* hex digest; may be NULL */
} v3_store_checkpoint;

/* ---- batches: built by one thread, submitted whole, committed atomically ---- */

int v3_store_batch_new(v3_store *s, v3_store_batch **out, v3_err *err);
void v3_store_batch_free(v3_store_batch *b); /* only for a batch never submitted; accepts NULL */
int v3_store_batch_add_step(v3_store_batch *b, const v3_store_step *st, v3_err *err);
int v3_store_batch_add_eval(v3_store_batch *b, const v3_store_eval *ev, v3_err *err);
/* counts: [n_expert] tokens routed to each expert of `layer` in this step */
int v3_store_batch_add_expert_load(v3_store_batch *b, int64_t step, int layer, int n_expert,
                                   const int64_t *counts, v3_err *err);
/* The same text+messages+fields always get the same id (prompts are deduplicated across epochs and
 * resumes). The prompt row is queued with this batch every time (INSERT OR IGNORE), so call it in
 * each batch whose samples or traces use the id: then no committed row can point at a prompt lost
 * in a crash. */
int v3_store_batch_add_prompt(v3_store_batch *b, const v3_store_prompt *p, int64_t *id, v3_err *err);
int v3_store_batch_add_sample(v3_store_batch *b, const v3_store_sample *smp, int64_t *id, v3_err *err);
int v3_store_batch_add_reward(v3_store_batch *b, const v3_store_reward *r, v3_err *err);
int v3_store_batch_update_sample(v3_store_batch *b, const v3_store_sample_update *u, v3_err *err);
int v3_store_batch_add_trace(v3_store_batch *b, const v3_store_trace *t, int64_t *id, v3_err *err);
int v3_store_batch_add_verdict(v3_store_batch *b, const v3_store_verdict *v, v3_err *err);
int v3_store_batch_update_trace(v3_store_batch *b, const v3_store_trace_update *u, v3_err *err);
/* The selection row gets its id at once (like samples); its selection_traces rows may follow in
 * the same batch or later ones. */
int v3_store_batch_add_selection(v3_store_batch *b, const v3_store_selection *sel, int64_t *id,
                                 v3_err *err);
int v3_store_batch_add_selected(v3_store_batch *b, const v3_store_selected *s, v3_err *err);
int v3_store_batch_add_checkpoint(v3_store_batch *b, const v3_store_checkpoint *c, v3_err *err);
/* Queues the batch (ownership passes to the store, also on failure) and returns at once unless the
 * queue is over queue_max_bytes. seq (may be NULL) numbers the batch: it is committed once
 * v3_store_committed_seq() >= seq. Fails only when the writer has already failed. */
int v3_store_submit(v3_store *s, v3_store_batch *b, uint64_t *seq, v3_err *err);

/* One-record conveniences: a batch of one, submitted. */
int v3_store_log_step(v3_store *s, const v3_store_step *st, v3_err *err);
int v3_store_log_eval(v3_store *s, const v3_store_eval *ev, v3_err *err);
/* Queues the checkpoint row and waits until it and everything before it is durable. */
int v3_store_register_checkpoint(v3_store *s, const v3_store_checkpoint *c, v3_err *err);

/* Returns when every batch submitted before the call is committed (or the writer failed: its error
 * is returned). durable: also fsync the WAL, so the rows survive a power cut, not only a crash. */
int v3_store_flush(v3_store *s, int durable, v3_err *err);
/* Highest batch seq whose transaction has committed. */
uint64_t v3_store_committed_seq(v3_store *s);

/* ---- reading (any mode) ---- */

typedef struct v3_store_run_summary {
    int64_t id, resumed_from;
    const char *command, *status, *git_rev, *message;
    double started_at, ended_at, heartbeat_at; /* unix seconds; NAN = unset */
    int stale;               /* status says "running" but no process holds the writer lock */
    int64_t n_steps, last_step; /* last_step < 0: no steps */
    double last_loss;        /* NAN = none */
    int64_t n_samples;
    double last_step_mean_reward; /* mean samples.reward of the run's last sampled step; NAN = none */
    int64_t last_sample_step;
} v3_store_run_summary;

/* Calls cb once per run, oldest first; a non-zero return from cb stops and is returned. */
int v3_store_list_runs(v3_store *s, int (*cb)(void *ud, const v3_store_run_summary *r), void *ud,
                       v3_err *err);

enum { V3_STORE_ORDER_ID = 0, V3_STORE_ORDER_BEST, V3_STORE_ORDER_WORST, V3_STORE_ORDER_RECENT };

typedef struct v3_store_sample_query {
    int64_t run_id;    /* 0 = every run */
    int64_t step;      /* < 0 = any */
    int64_t prompt_id; /* < 0 = any */
    double min_reward, max_reward; /* NAN = unbounded */
    const char *where; /* extra SQL condition on samples (alias s) and prompts (alias p); may be NULL */
    int64_t limit;     /* <= 0 = all */
    int order;         /* V3_STORE_ORDER_* */
} v3_store_sample_query;

/* A query with every filter off. */
v3_store_sample_query v3_store_sample_query_all(void);

typedef struct v3_store_reward_row {
    const char *name, *error, *extra_json, *script_hash;
    double score, weight, elapsed_ms; /* NAN = NULL */
} v3_store_reward_row;

/* Pointers are valid only during the callback. */
typedef struct v3_store_sample_row {
    int64_t id, run_id, step, prompt_id, group_id, policy_version;
    int32_t group_index, prompt_tokens, completion_tokens;
    uint64_t seed;
    const char *prompt_text, *prompt_messages, *prompt_fields, *completion, *finish_reason;
    double reward, advantage; /* NAN = NULL */
    int32_t n_ids, n_logprobs, n_trainer_logprobs, n_ref_logprobs; /* elements, from blob lengths */
    const uint8_t *token_ids, *logprobs, *trainer_logprobs, *ref_logprobs; /* LE blobs (blob.h) */
    int n_rewards;
    const v3_store_reward_row *rewards; /* [n_rewards], by name */
} v3_store_sample_row;

int v3_store_query_samples(v3_store *s, const v3_store_sample_query *q,
                           int (*cb)(void *ud, const v3_store_sample_row *row), void *ud,
                           v3_err *err);

/* ---- reading traces (datasets/store_traces.c) ---- */

typedef struct v3_store_verdict_row {
    const char *verifier, *detail, *error, *extra_json, *script_hash;
    int passed;
    double score, weight, elapsed_ms; /* NAN = NULL */
} v3_store_verdict_row;

typedef struct v3_store_trace_query {
    int64_t after_id;     /* only traces with id > after_id (keyset paging); 0 = from the start */
    int64_t limit;        /* <= 0 = all */
    int64_t selection_id; /* > 0: only the traces this selection kept; 0 = every trace */
    int light;            /* 1: ids, key, flags and lengths only (texts and verdicts left NULL) */
    int with_verdicts;    /* 1: fill verdicts (by verifier name) */
} v3_store_trace_query;

/* Pointers are valid only during the callback. */
typedef struct v3_store_trace_row {
    int64_t id, run_id, prompt_id; /* run_id 0 = NULL */
    uint64_t key;                  /* 0 = NULL */
    int truncated;                 /* 0 / 1 */
    int accepted;                  /* 1 / 0; -1 = NULL */
    int64_t reasoning_bytes, answer_bytes;
    const char *reasoning, *answer, *source_model, *provenance_json, *filters_json;
    const char *prompt_text, *prompt_messages, *prompt_fields;
    int n_verdicts;
    const v3_store_verdict_row *verdicts;
} v3_store_trace_row;

/* Calls cb for each trace in id order (one snapshot per call; a non-zero return from cb stops and
 * is returned). A read store only. */
int v3_store_query_traces(v3_store *s, const v3_store_trace_query *q,
                          int (*cb)(void *ud, const v3_store_trace_row *row), void *ud, v3_err *err);
/* The newest selection's id, 0 when there is none. */
int v3_store_latest_selection(v3_store *s, int64_t *id, v3_err *err);

/* The raw connection for tests and tools that run their own read-only SQL on a read store. */
struct sqlite3 *v3_store_db(v3_store *s);

#endif
