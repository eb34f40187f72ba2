/* distill_generate_internal.h — what the parts of `distill generate` share: the prompt list
 * (distill_generate_prompts.c), the work items and replies, and the teacher interface with its
 * two kinds (distill_generate_http.c, distill_generate_local.c). The driver is
 * distill_generate.c. Not part of the public API. */
#ifndef V3_DISTILL_GENERATE_INTERNAL_H
#define V3_DISTILL_GENERATE_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "datasets/distill_generate.h"
#include "rewards/judge.h"

/* ---- prompts ---- */

typedef struct v3_dgen_prompt {
    json_t *messages;    /* the conversation the teacher sees (owned) */
    char *messages_json; /* its compact dump */
    const char *text;    /* the last user message's content (borrowed from messages) */
    char *fields_json;   /* {"answer", "solution"} or the stored prompt's fields; may be NULL */
    const char *file;    /* source file (borrowed), NULL for prompts of the store */
    int64_t line;
} v3_dgen_prompt;

typedef struct v3_dgen_prompts {
    v3_dgen_prompt *p;
    int64_t n, cap;
} v3_dgen_prompts;

void v3_dgen_prompts_init(v3_dgen_prompts *ps);
void v3_dgen_prompts_free(v3_dgen_prompts *ps);
/* Reads o->prompts (JSONL / JSON array, zstd allowed): bad rows are reported to log as
 * file:line: reason and counted in st; the system prompt is applied. */
int v3_dgen_prompts_from_file(v3_dgen_prompts *ps, const v3_distill_generate_opts *o, FILE *log,
                              v3_distill_generate_stats *st, v3_err *err);
/* Every prompt of the store (prompts table, by id). */
int v3_dgen_prompts_from_store(v3_dgen_prompts *ps, const char *db_path,
                               const v3_distill_generate_opts *o, v3_distill_generate_stats *st,
                               v3_err *err);
/* The resume key of (prompt, sample, teacher model): a dedupe key (distill_text.h) over the
 * prompt's messages and the model and the sample index. Never 0. */
uint64_t v3_dgen_key(const v3_dgen_prompt *p, const char *model, int sample);

/* ---- work ---- */

typedef struct v3_dgen_item {
    int64_t prompt; /* index into the prompt list */
    int sample;
    uint64_t key;
} v3_dgen_item;

typedef struct v3_dgen_reply {
    int ok;
    char *reasoning, *answer; /* ok: trimmed, never NULL */
    int truncated;            /* cut off: the reasoning never closed, or finish_reason "length" */
    json_t *prov;             /* teacher-specific provenance (finish_reason, usage, id, attempts,
                                 ...); owned, may be NULL */
    int64_t prompt_tokens, completion_tokens; /* -1 = unknown */
    int attempts, retries;
    char *error;              /* !ok: why */
} v3_dgen_reply;

void v3_dgen_reply_free(v3_dgen_reply *r);

/* Splits a teacher's answer: a non-blank reasoning (reasoning_content) goes with the content as
 * it is; otherwise the content is split at its think tags (mode says what an untagged text is).
 * finish_length marks the trace cut off. Fills r->reasoning, r->answer, r->truncated. */
int v3_dgen_split(const char *reasoning, const char *content, int starts_in_reasoning,
                  int finish_length, v3_dgen_reply *r, v3_err *err);

/* ---- teachers ---- */

typedef struct v3_dgen_teacher {
    const char *kind;     /* "http" or "local" */
    char *model;          /* source_model of its traces */
    char *endpoint;       /* the URL requests go to, or the model directory */
    int chunk;            /* items per run call (then the replies are committed) */
    void *impl;
    /* Answers items[0..n) into out[0..n) (zeroed by the caller). A failed request is a reply with
     * ok = 0; an error return means nothing could be asked at all. */
    int (*run)(void *impl, const v3_dgen_prompts *ps, const v3_dgen_item *items, int n,
               v3_dgen_reply *out, v3_err *err);
    void (*free)(void *impl);
} v3_dgen_teacher;

/* Checks the options and sets up the teacher (no connection is made / no weights are read yet
 * for HTTP; the local teacher loads its model here). */
int v3_dgen_http_init(v3_dgen_teacher *t, const v3_distill_generate_opts *o, v3_err *err);
int v3_dgen_local_init(v3_dgen_teacher *t, const v3_distill_generate_opts *o, v3_err *err);
/* The name of the local teacher without loading it: o->model, else the directory's last part. */
char *v3_dgen_local_name(const v3_distill_generate_opts *o);
void v3_dgen_teacher_free(v3_dgen_teacher *t);

/* A judge result (rewards/judge.h) → a reply: the reasoning from reasoning_content, else the
 * message's `reasoning`, else think tags in the content; finish_reason, usage, id and the
 * response's model go to the provenance. A failed result is a reply with ok = 0 and the error. */
int v3_dgen_http_reply(const v3_judge_result *jr, v3_dgen_reply *r, v3_err *err);

#endif
