/* distill.h — distilling reasoning from DeepSeek-R1 outputs: import → verify → filter → export,
 * all kept in a run's SQLite store (datasets/store.h: traces, verdicts, selections).
 *
 *   import  reads R1 outputs as people have them (JSONL, JSON arrays, a JSON document holding a
 *           list of records, optionally zstd) — OpenAI messages/responses with reasoning_content,
 *           text with inline <think>…</think>, dataset rows (OpenR1, OpenThoughts, LIMO, s1) with
 *           one or several generations and correctness flags — and stores each (prompt, trace)
 *           once: a trace whose normalised prompt, reasoning and answer were seen before is a
 *           duplicate. Bad rows are reported as `file:line: reason`, skipped and counted.
 *   verify  runs Lua reward modules (rewards/host.h) over every trace and stores each verdict
 *           (score, error, extra fields, script hash) per trace and function.
 *   filter  rejection sampling by rules (correct, complete, length in tokens, language of the
 *           reasoning, repetition, k per prompt), stored as a new selection; nothing is deleted.
 *   export  writes an SFT dataset in `messages` form that keeps the reasoning in the final
 *           assistant turn (reasoning_content, what the r1-keep-reasoning template renders).
 *
 * Each stage opens RUN_DIR/run.db itself, records a run (`runs.command` = "distill import", ...)
 * and fills a stats struct for the CLI's summary. docs/distill.md describes the commands, the
 * config and the tables. */
#ifndef V3_DISTILL_H
#define V3_DISTILL_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "rewards/host.h"

/* ---- import ---- */

/* Which row shapes are accepted (AUTO: each row by its fields, see distill_row.h). */
typedef enum v3_distill_form {
    V3_DISTILL_AUTO = 0,
    V3_DISTILL_MESSAGES, /* messages / conversations ending in an assistant turn */
    V3_DISTILL_RESPONSE, /* an OpenAI chat completion: choices[].message.{reasoning_content,content} */
    V3_DISTILL_PAIR,     /* a reasoning field + an answer field (reasoning_content/content, thinking/output, ...) */
    V3_DISTILL_TEXT,     /* one text (or a list: generations) with inline <think>…</think> */
    V3_DISTILL_SOLUTION, /* LIMO: the solution field is the reasoning itself */
} v3_distill_form;

/* Parses "auto", "messages", "response", "pair", "text", "solution"; -1 when unknown. */
int v3_distill_form_parse(const char *name);
const char *v3_distill_form_name(v3_distill_form f);

/* JSON field names of a row; NULL = detect (docs/distill.md lists the names tried). */
typedef struct v3_distill_fields {
    const char *prompt;    /* the problem: a string, or a messages array */
    const char *system;    /* a system prompt the teacher saw */
    const char *messages;  /* a conversation whose last turn is the assistant's */
    const char *reasoning; /* the reasoning (a string or a list: one per generation) */
    const char *content;   /* the final answer that goes with `reasoning` */
    const char *text;      /* one text with inline <think>…</think> (or a list) */
    const char *reference; /* the reference answer (GSM8K "… #### 42" is cut to "42") */
    const char *solution;  /* the source's original response (a worked solution) */
    const char *correct;   /* correctness flag(s) of the source: bool, 0/1, or a list */
    const char *model;     /* the model that wrote the trace */
} v3_distill_fields;

/* Sets one mapping from "key=name"; the pointer is borrowed from spec. V3_EUSAGE when the key
 * is unknown. */
int v3_distill_map_field(v3_distill_fields *f, char *spec, v3_err *err);

typedef struct v3_distill_import_opts {
    v3_distill_form form;
    v3_distill_fields fields;
    const char *records;      /* member of a top-level object holding the records ("results");
                                 NULL = auto: a pretty-printed document {"k": [records]} */
    const char *source_model; /* model name when a row names none (NULL: "unknown") */
    int starts_in_reasoning;  /* outputs began inside the reasoning (R1-distill chat templates put
                                 "<think>\n" in the prompt): a text without any tag is reasoning
                                 that was cut off, not a plain answer */
    const char *config_json;  /* stored with the run; may be NULL */
    size_t max_record;        /* longest record in bytes (0 = 64 MiB) */
    FILE *log;                /* bad rows (file:line: reason); NULL = stderr */
    int max_reported;         /* bad rows printed per file (0 = 20; then only counted) */
} v3_distill_import_opts;

void v3_distill_import_opts_default(v3_distill_import_opts *o);

typedef struct v3_distill_import_stats {
    int64_t files, rows, bad_rows;
    int64_t traces;     /* generations read */
    int64_t added;      /* new traces stored */
    int64_t duplicates; /* same normalised prompt and trace as one stored before (or just now) */
    int64_t empty;      /* generations with neither reasoning nor answer (skipped) */
    int64_t truncated;  /* stored traces whose reasoning was never closed */
    int64_t no_reasoning; /* stored traces without reasoning (a plain answer) */
    int64_t labelled;   /* stored traces carrying the source's correctness flag */
    int64_t prompts;    /* distinct prompts of the added traces */
} v3_distill_import_stats;

/* Imports files into db_path (created when missing; its directory must exist). */
int v3_distill_import(const char *db_path, const char *const *files, int n_files,
                      const v3_distill_import_opts *o, v3_distill_import_stats *st, v3_err *err);

/* ---- verify ---- */

typedef struct v3_distill_verify_opts {
    v3_reward_opts host;       /* scripts, workers, budgets (rewards/host.h) */
    double pass_score;         /* verdicts.passed = status ok and score >= this (default 1) */
    const char *config_json;   /* stored with the run; may be NULL */
    FILE *log;                 /* progress; NULL = quiet */
} v3_distill_verify_opts;

typedef struct v3_distill_verify_stats {
    int64_t traces;
    int n_funcs;
    char names[V3_REWARD_MAX_FUNCS][128];
    int64_t scored[V3_REWARD_MAX_FUNCS], passed[V3_REWARD_MAX_FUNCS];
    int64_t skipped[V3_REWARD_MAX_FUNCS], errors[V3_REWARD_MAX_FUNCS];
    double sum[V3_REWARD_MAX_FUNCS];
} v3_distill_verify_stats;

/* Names of the built-in verifiers, and their Lua source ("math": the final answer against the
 * reference with v3.math; "r1_format": closed reasoning and a non-empty answer). */
const char *const *v3_distill_builtin_names(void);
const char *v3_distill_builtin_source(const char *name);
/* Writes the built-in verifier `name` to DIR/name.lua (replacing an older copy), so that the
 * reward host can load it and the run keeps the exact script; path gets the file name. */
int v3_distill_write_builtin(const char *dir, const char *name, char *path, size_t n, v3_err *err);

int v3_distill_verify(const char *db_path, const v3_distill_verify_opts *o,
                      v3_distill_verify_stats *st, v3_err *err);

/* ---- filter ---- */

typedef enum { V3_PICK_SHORTEST = 0, V3_PICK_RANDOM } v3_distill_pick;

typedef struct v3_distill_filter_opts {
    const char *correct;      /* verdict deciding correctness ("math", "source"); NULL/"" = off */
    double min_score;         /* ... its score must be >= this */
    int keep_unverified;      /* 1: a trace without that verdict (or a skipped one) passes */
    int require_complete;     /* reject traces cut off inside the reasoning */
    int require_answer;       /* reject traces without a final answer or without reasoning */
    int64_t min_tokens, max_tokens; /* bounds on the assistant turn's tokens; 0 = none */
    const char *language;     /* expected script of the reasoning: "auto" (the prompt's), a script
                                 name (distill_metrics.h), NULL/"" or "off" = no rule */
    double min_language_fraction;
    int ngram;                /* words per n-gram of the repetition measure */
    double max_repetition;    /* reject when 1 - distinct/total n-grams exceeds this; 0 = off */
    int per_prompt;           /* keep at most k traces per prompt; 0 = all */
    v3_distill_pick pick;
    uint64_t seed;            /* of V3_PICK_RANDOM */
    const char *tokenizer_dir;/* DeepSeek-V3 tokenizer.json directory */
    int threads;              /* token counting threads; 0 = 2 */
    const char *config_json;  /* stored with the run and the selection; may be NULL */
} v3_distill_filter_opts;

void v3_distill_filter_opts_default(v3_distill_filter_opts *o);

/* The rules in the order they are applied; a trace is charged to the first one it fails. */
enum {
    V3_RULE_COMPLETE = 0,
    V3_RULE_ANSWER,
    V3_RULE_CORRECT,
    V3_RULE_LENGTH,
    V3_RULE_LANGUAGE,
    V3_RULE_REPETITION,
    V3_RULE_PER_PROMPT,
    V3_RULE_COUNT
};
const char *v3_distill_rule_name(int rule);

typedef struct v3_distill_filter_stats {
    int64_t selection_id;
    int64_t traces, kept;
    int64_t removed[V3_RULE_COUNT];
    int active[V3_RULE_COUNT];
    int64_t prompts, prompts_kept;
    int64_t tokens_kept; /* sum over kept traces */
} v3_distill_filter_stats;

int v3_distill_filter(const char *db_path, const v3_distill_filter_opts *o,
                      v3_distill_filter_stats *st, v3_err *err);

/* ---- export ---- */

typedef enum { V3_EXPORT_R1 = 0, V3_EXPORT_ORIGINAL } v3_distill_export_form;

typedef struct v3_distill_export_opts {
    v3_distill_export_form form;
    const char *system_prompt; /* R1 form: replaces the prompt's system messages; NULL/"" = keep */
    int inline_reasoning;      /* 1: "<think>\nR\n</think>\n\nA" in content instead of reasoning_content */
    int original_skip;         /* ORIGINAL form: skip prompts without a source solution (else
                                  the trace's final answer stands in for it) */
    int64_t selection_id;      /* 0 = the latest selection; < 0 = every trace (no filter run) */
} v3_distill_export_opts;

typedef struct v3_distill_export_stats {
    int64_t selection_id;
    int64_t traces, written, prompts;
    int64_t original_from_solution, original_from_answer, original_skipped;
} v3_distill_export_stats;

/* Writes out_path atomically (a temporary file renamed into place). */
int v3_distill_export(const char *db_path, const char *out_path, const v3_distill_export_opts *o,
                      v3_distill_export_stats *st, v3_err *err);

#endif
