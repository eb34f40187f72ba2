/* prepare.h — `data prepare`: data files → token shards + manifest.json, on all cores.
 *
 * Pipeline: one reader thread streams records (jsonl.h) into batches; `jobs` worker threads parse
 * (ingest.h) and encode them (v3_encoder: chat template + tokenizer); the calling thread writes
 * the results strictly in input order, so the output bytes do not depend on `jobs` or timing.
 * At most 2*jobs+2 batches exist at once and a shard is flushed when it reaches shard_bytes, so
 * memory stays bounded whatever the input size.
 *
 * Bad rows (invalid JSON, missing field, wrong type, empty conversation, unknown role, overlong
 * under --overlong drop, ...) are reported as `file:line: reason`: skipped and counted (the first
 * 10 kept for the summary), or, in strict mode, the run stops with that message.
 *
 * Nothing partial is left looking complete: shards are written as `*.tmp` and renamed only when
 * the whole run succeeded, then manifest.json is written (through a temporary name) last. A
 * consumer trusts only the manifest. */
#ifndef V3_PREPARE_H
#define V3_PREPARE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "datasets/ingest.h"
#include "datasets/jsonl.h"

/* A rendered sample: token ids and their loss mask (1 = train on this token). */
typedef struct v3_sample {
    uint32_t *ids;  /* [n] */
    uint8_t *mask;  /* [n] */
    size_t n, cap;
} v3_sample;

void v3_sample_free(v3_sample *s);
/* Appends n ids (int32 as tokenizers produce them; must be >= 0) all with loss mask m. */
int v3_sample_push(v3_sample *s, const int32_t *ids, size_t n, uint8_t m, v3_err *err);

/* The tokenizer + chat template seen from the pipeline. encode appends the rendering of conv to
 * out; it is called from several threads at once, so it must not mutate shared state. */
typedef struct v3_encoder {
    void *ctx;
    int (*encode)(void *ctx, const v3_conv *conv, v3_sample *out, v3_err *err);
    uint32_t vocab_size; /* every id is below it (shards check it) */
    int masks_last;      /* 1: encode already applies --mask last itself (the chat template) */
    char name[96];       /* recorded in the manifest: tokenizer and template */
    char hash[65];       /* identity of the tokenizer files (sha256 hex) */
} v3_encoder;

typedef enum v3_overlong { V3_OVERLONG_TRUNCATE = 0, V3_OVERLONG_DROP } v3_overlong;

typedef struct v3_prepare_opts {
    const char *const *inputs; /* [n_inputs] data files */
    int n_inputs;
    const char *out_dir;
    v3_ingest_opts ingest;
    v3_jsonl_layout layout;    /* AUTO: per file, '[' = JSON array */
    size_t max_record;         /* bytes; longer records are bad rows (0 = 64 MiB) */
    int mask_last;             /* 1: loss only on the last assistant message (its run of 1s) */
    int64_t max_len;           /* tokens per sample, 0 = unlimited */
    v3_overlong overlong;
    double eval_fraction;      /* documents to the eval split, chosen by (seed, row index) */
    uint64_t seed;
    int strict;                /* stop at the first bad row */
    int force;                 /* replace an existing prepared dataset in out_dir */
    int jobs;                  /* worker threads (>= 1) */
    uint64_t shard_bytes;      /* roll a shard over past this size (0 = 256 MiB) */
    const char *template_name; /* recorded in the manifest */
    FILE *log;                 /* progress and summary (NULL = quiet) */
    int progress_tty;          /* -1 auto, 0 plain lines, 1 live line */
} v3_prepare_opts;

void v3_prepare_opts_default(v3_prepare_opts *o);

#define V3_PREPARE_MAX_ERRORS 10

typedef struct v3_prepare_stats {
    uint64_t rows;            /* records read */
    uint64_t docs, docs_train, docs_eval;
    uint64_t tokens, loss_tokens;
    uint64_t bad_rows;        /* all skipped rows, overlong drops included */
    uint64_t dropped_overlong, truncated;
    uint64_t bytes_in;
    int n_shards;
    double seconds;
    int n_errors;
    char errors[V3_PREPARE_MAX_ERRORS][512]; /* the first bad rows, "file:line: reason" */
} v3_prepare_stats;

/* Runs the pipeline. Returns V3_OK (bad rows skipped, counted in st), or an error: a fatal input
 * problem, an I/O failure, or in strict mode the first bad row (err = "file:line: reason"). */
int v3_prepare_run(const v3_prepare_opts *o, const v3_encoder *enc, v3_prepare_stats *st, v3_err *err);

/* Applies --mask last to a rendered sample: keeps only the final run of loss tokens. */
void v3_sample_mask_last(v3_sample *s);

/* The split of row `row` (0 = train, 1 = eval) for a seed and fraction: a pure function, so the
 * split is the same whatever the thread count or the order rows finish in. */
int v3_split_of(uint64_t seed, uint64_t row, double eval_fraction);

#endif
