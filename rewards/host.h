/* host.h — the reward host: scores samples with user reward scripts (Lua 5.4) in a pool of
 * sandboxed worker processes, so that no script can hang, crash or corrupt the run.
 *
 * Each worker is a forked process with rlimits (address space, CPU, files, processes, no core
 * dumps, no file writes) holding one sandboxed lua_State per reward function (lua/sandbox.h, the
 * `v3` module of lua/v3mod.h). One task is one (sample, function) pair. Budgets are enforced twice:
 * inside the worker by the sandbox (instructions, memory, deadline) and from outside by the parent,
 * which SIGKILLs a worker that has not answered by the deadline plus a grace period (a script stuck
 * inside one C function, e.g. a pathological string.find, is out of reach of Lua hooks), records
 * "deadline exceeded (killed)" and starts a fresh worker. Any failure — script error, budget, bad
 * return value, crash — records the error text with the sample, and the function's fallback score
 * is used; scoring goes on. Results come back in input order whatever the scheduling.
 *
 * Combined reward (TRL's GRPOTrainer): reward = nansum_f(weight_f · score_f), where a skipped
 * function (script returned nil; or a NaN fallback after an error) counts as NaN and drops out.
 * When every function skipped a sample, TRL's nansum gives 0; we give 0 too, and n_scored = 0 tells
 * the caller (GRPO may then drop the sample from its group statistics).
 *
 * Judge modules (a table with `judge`, `request` and `parse` instead of `score`; see
 * rewards/judge_module.h and docs/rewards-judge.md) are scored in three phases per batch: request()
 * in the workers, the HTTP requests from this process through a v3_judge (rewards/judge.h), all
 * concurrently, then parse() in the workers. A failed request is that sample's error (fallback).
 *
 * A host is used by one thread at a time. Workers are forked from the calling process: create the
 * host early (before a model is loaded), so that forks are cheap and RLIMIT_AS is meaningful. */
#ifndef V3_REWARDS_HOST_H
#define V3_REWARDS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rewards/judge.h"

#define V3_REWARD_MAX_FUNCS 32

/* Defaults used when an option is 0. */
#define V3_REWARD_DEFAULT_WORKERS 2
#define V3_REWARD_DEFAULT_INSTRUCTIONS 50000000LL /* VM instructions per call */
#define V3_REWARD_DEFAULT_MEM (64u << 20)         /* bytes per function state */
#define V3_REWARD_DEFAULT_TIMEOUT_MS 2000         /* wall clock per call */
#define V3_REWARD_DEFAULT_GRACE_MS 200            /* parent waits this much longer, then kills */
#define V3_REWARD_DEFAULT_MAX_TEXT (1u << 20)     /* bytes of completion, of prompt */
#define V3_REWARD_DEFAULT_MAX_SAMPLE (4u << 20)   /* bytes of a whole encoded sample */

typedef struct v3_reward_script {
    const char *path;   /* the module file */
    const char *name;   /* NULL: the module's `name` option, else the file's base name */
    double weight;      /* used when has_weight; else the module's `weight`, else 1 */
    int has_weight;
} v3_reward_script;

typedef struct v3_reward_opts {
    const v3_reward_script *scripts;
    int n_scripts;                   /* 1..V3_REWARD_MAX_FUNCS */
    int n_workers;                   /* processes; 0 = default */
    int64_t max_instructions;        /* 0 = default; < 0 = unlimited (the deadline still holds) */
    size_t mem_cap;                  /* 0 = default */
    int64_t timeout_ms;              /* 0 = default */
    int64_t grace_ms;                /* 0 = default */
    double fallback;                 /* score of a failed call unless the module sets its own */
    const char *const *reward_dirs;  /* where `require` looks (the script's own dir is not added) */
    int n_reward_dirs;
    size_t max_text;                 /* 0 = default: longer prompt/completion text is cut */
    size_t max_sample;               /* 0 = default: a larger encoded sample is not scored */
    const v3_judge_opts *judge;      /* judge modules (docs/rewards-judge.md): its non-zero fields
                                        win over every module's `judge` table; may be NULL */
} v3_reward_opts;

/* One sample as the rollout produced it. All pointers borrowed for the duration of a call; any may
 * be NULL (absent). */
typedef struct v3_reward_sample {
    const char *prompt;        /* prompt text (chat template applied, or raw) */
    const char *messages_json; /* the prompt as a JSON array of {role, content} */
    const char *completion;    /* completion text */
    const int32_t *completion_ids;
    int n_completion_ids;
    const char *finish_reason; /* "stop", "length", ... */
    const char *row_json;      /* the dataset row as a JSON object (fields like "answer") */
    int64_t group;             /* GRPO group id */
    int64_t index;             /* index of the sample in its group */
} v3_reward_sample;

enum { V3_REWARD_OK = 0, V3_REWARD_SKIP = 1, V3_REWARD_ERROR = 2 };

/* One function's verdict on one sample. */
typedef struct v3_reward_value {
    int status;         /* V3_REWARD_* */
    double score;       /* OK: the score; ERROR: the fallback (NaN = skip); SKIP: NaN */
    char *error;        /* ERROR: the message (malloc'd); else NULL */
    char *extra_json;   /* fields of a returned table other than score, as a JSON object; or NULL */
    double elapsed_ms;  /* wall clock seen by the parent, send to answer */
} v3_reward_value;

typedef struct v3_reward_result {
    v3_reward_value values[V3_REWARD_MAX_FUNCS]; /* [n_funcs] used */
    double reward;  /* nansum of weight·score */
    int n_scored;   /* functions whose score entered the sum */
    int n_errors;
} v3_reward_result;

/* Per function, after init. */
typedef struct v3_reward_func_info {
    char name[128];
    double weight;
    double fallback;
    char sha256[65]; /* of the script file's bytes, for provenance */
    char path[1024];
    int is_judge;    /* a judge module: request() -> HTTP -> parse() (rewards/judge_module.h) */
} v3_reward_func_info;

typedef struct v3_reward_host v3_reward_host; /* opaque */

/* Reads and hashes the scripts, starts the workers and checks that every module loads (a syntax
 * error or a module that returns neither a function nor a table with `score` fails init with the
 * module's message). On failure nothing is left running and *host is NULL. */
int v3_reward_host_init(v3_reward_host **host, const v3_reward_opts *opts, v3_err *err);
/* Stops the workers (EOF, then SIGKILL after a short wait) and frees everything. NULL is fine. */
void v3_reward_host_free(v3_reward_host *host);

int v3_reward_host_n_funcs(const v3_reward_host *host);
const v3_reward_func_info *v3_reward_host_func(const v3_reward_host *host, int i);

/* Scores samples[0..n) with every function, across the pool; out[i] belongs to samples[i]. Script
 * failures are not errors of this call (they are recorded in out). Fails only when the host itself
 * cannot go on (no worker can be started, out of memory); out is then freed. Free out with
 * v3_reward_results_free. */
int v3_reward_host_score(v3_reward_host *host, const v3_reward_sample *samples, int n,
                         v3_reward_result *out, v3_err *err);
void v3_reward_results_free(v3_reward_result *out, int n);

/* Counters since init (for summaries and tests). */
typedef struct v3_reward_host_stats {
    int64_t calls, errors, kills, crashes, restarts;
} v3_reward_host_stats;
void v3_reward_host_get_stats(const v3_reward_host *host, v3_reward_host_stats *st);

/* Counters of function f's judge since init (all zero when f is no judge module). */
void v3_reward_host_judge_stats(const v3_reward_host *host, int f, v3_judge_stats *st);

/* Test hook: the pid of worker w (0 <= w < n_workers), or -1. Lets a test SIGKILL a worker to
 * check that a crash is recorded and the worker replaced. */
int v3_reward_host_worker_pid(const v3_reward_host *host, int w);

#endif
