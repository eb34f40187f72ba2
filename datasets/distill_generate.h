/* distill_generate.h — `distill generate`: asks a teacher model for new reasoning traces and
 * stores them in the run store exactly as `distill import` stores traces (a prompts row, a traces
 * row with reasoning, answer, source_model and provenance), so verify, filter and export read
 * them unchanged.
 *
 * The teacher is either
 *   - an OpenAI-compatible endpoint (`url`, `model`): the chat completions client of
 *     rewards/judge.h sends the requests concurrently, with timeouts, retries, backoff and
 *     Retry-After; the reasoning comes from message.reasoning_content (or `reasoning`), or from
 *     `<think>…</think>` inline in the content; or
 *   - a local model directory (`model_dir`): the rollout engine (rollout/engine.h) samples from
 *     prompts rendered with the R1 template (generation prompt `<｜Assistant｜><think>\n`), and
 *     the completion is split at `</think>`.
 *
 * Resumable: every (prompt, sample index, teacher model) has a key (traces.key, UNIQUE). The
 * keys already stored are read first; those samples are never asked for again. Responses are
 * committed in chunks as they come, so an interrupted run (a signal, a crash, max_requests)
 * keeps what it got and the next run continues with the rest. A request that still fails after
 * its retries stores no trace: it is counted, reported, listed in the run's `generate/failed`
 * eval row, and asked again by the next run. docs/distill.md describes the command. */
#ifndef V3_DISTILL_GENERATE_H
#define V3_DISTILL_GENERATE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "datasets/distill_config.h"

typedef struct v3_distill_generate_opts {
    const char *prompts;       /* JSONL file of prompts (`prompt` or `messages`, plus `answer`,
                                  `solution`, `system`...); NULL/"" = the prompts in the store */
    const char *url;           /* teacher endpoint (http/https; /chat/completions is added to a
                                  base URL) */
    const char *model;         /* the endpoint's model name (required with url); with model_dir
                                  the name recorded as source_model (NULL: the directory's name) */
    const char *model_dir;     /* local teacher: a model directory for the rollout engine */
    const char *key_env;       /* environment variable holding the API key; NULL/"" = none */
    const char *tokenizer_dir; /* local teacher: tokenizer files when the model dir has none */
    const char *system_prompt; /* replaces each prompt's system messages; NULL/"" = keep them */
    int n;                     /* samples per prompt (>= 1) */
    double temperature;        /* >= 0 */
    double top_p;              /* (0, 1] */
    int64_t max_tokens;        /* completion tokens; HTTP: 0 = not sent (the server's default) */
    uint64_t seed;             /* 0 = none. HTTP: sent as "seed" (one per prompt and sample);
                                  local: the sampler's seed */
    int max_in_flight;         /* HTTP requests at once */
    double timeout_s;          /* per HTTP attempt */
    int retries;               /* retries after a failed attempt (429, 5xx, network); < 0 = none */
    double backoff_s;          /* first retry's backoff (0 = the judge's default, 0.5 s) */
    int64_t max_requests;      /* ask for at most this many prompt × sample this run; 0 = all */
    const char *config_json;   /* stored with the run; may be NULL */
    const volatile sig_atomic_t *stop; /* set by a signal handler: stop after the current chunk */
    FILE *log;                 /* bad prompt rows and failures (file:line: reason); NULL = stderr */
    FILE *progress;            /* a line per chunk; NULL = quiet */
} v3_distill_generate_opts;

void v3_distill_generate_opts_default(v3_distill_generate_opts *o);

typedef struct v3_distill_generate_stats {
    int64_t rows, bad_rows;    /* prompt rows read (JSONL) / skipped as bad */
    int64_t prompts;           /* usable prompts */
    int64_t wanted;            /* prompts × n */
    int64_t done_before;       /* already stored by earlier runs (not asked again) */
    int64_t requested;         /* asked for in this run */
    int64_t stored;            /* new traces */
    int64_t failed;            /* requests that failed after their retries (asked again next run) */
    int64_t left;              /* not asked for: max_requests or a stop */
    int64_t truncated, no_reasoning; /* among the stored */
    int64_t attempts, retries; /* HTTP attempts and retries */
    int64_t prompt_tokens, completion_tokens; /* usage reported (HTTP) or counted (local) */
    int stopped;               /* 1: ended early by the stop flag */
    char teacher[512];         /* "model @ endpoint" */
} v3_distill_generate_stats;

/* Generates into db_path (created when missing; its directory must exist). Failed requests are not
 * an error of the call (st->failed says how many); errors are a bad prompts file, a teacher that
 * cannot be set up, the store. */
int v3_distill_generate(const char *db_path, const v3_distill_generate_opts *o,
                        v3_distill_generate_stats *st, v3_err *err);

/* The generate.* keys of a distill config → o (strings borrowed from c). */
int v3_distill_config_generate(v3_distill_config *c, v3_distill_generate_opts *o, v3_err *err);

#endif
