/* pack.h — training batches from prepared token shards: documents packed into fixed-length
 * sequences that keep their boundaries (model-spec §9: sample masking, positions reset per
 * sample).
 *
 * Per epoch, documents are shuffled by (seed, epoch), over-long ones truncated to seq_len or
 * dropped (policy), then packed by best-fit decreasing: longest first, each into the open
 * sequence with the least room that still fits it (ties: shuffled order), found in O(log T) with a
 * segment tree over remaining capacities. The sequences are then shuffled, again by (seed,
 * epoch). Every kept document appears exactly once per epoch, whole (or truncated), in one
 * sequence; the rest of a sequence is padding.
 *
 * For each sequence position t (B rows × T, row-major) a batch carries:
 *   tokens[t]     input id (pad_id in padding)
 *   targets[t]    the next token of the same document when that token's loss mask is 1, else
 *                 -100 (last token of a document, masked tokens, padding)
 *   positions[t]  t minus the start of its document: RoPE positions restart per document
 *   doc_start[t]  index (within the row) of the first token of t's document: attention for t
 *                 covers [doc_start[t], t] — a block-diagonal causal mask. Padding counts as one
 *                 document of its own.
 *
 * The trainer checkpoints v3_pack_cursor (seed, epoch, next sequence) and resumes with
 * v3_packer_seek; batches are identical to an uninterrupted run. With world > 1, rank r takes
 * sequences r, r+world, ... of the shuffled epoch (each rank gets floor(n_seq/world)). */
#ifndef V3_PACK_H
#define V3_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "datasets/prepare.h"
#include "datasets/shard.h"

#define V3_IGNORE_INDEX (-100)

/* One split ("train" or "eval") of a prepared directory, every shard mmapped. */
typedef struct v3_dataset {
    v3_shard *shards;     /* [n_shards] */
    int n_shards;
    uint64_t *doc_base;   /* [n_shards + 1]: global id of each shard's first document */
    uint64_t n_docs, n_tokens, n_loss;
    uint64_t bad_rows;    /* from the manifest totals */
} v3_dataset;

/* Reads dir/manifest.json and opens the shards of `split` (NULL = all) with full validation
 * (flags: V3_SHARD_VERIFY to also check each checksum); the counts must match the manifest. */
int v3_dataset_open(v3_dataset *d, const char *dir, const char *split, int flags, v3_err *err);
void v3_dataset_close(v3_dataset *d);
/* Document `doc` (global id): its tokens and loss mask. */
void v3_dataset_doc(const v3_dataset *d, uint64_t doc, const uint32_t **tokens, const uint8_t **mask,
                    uint64_t *len);

typedef struct v3_pack_opts {
    int64_t seq_len;       /* T */
    v3_overlong overlong;  /* documents longer than T */
    uint64_t seed;
    int32_t pad_id;        /* DeepSeek-V3 pads with <｜end▁of▁sentence｜> = 1 */
    int rank, world;       /* data-parallel sharding of sequences (0, 1 alone) */
} v3_pack_opts;

/* What the trainer checkpoints to resume exactly. */
typedef struct v3_pack_cursor {
    uint64_t seed;
    uint64_t epoch;
    uint64_t next;         /* sequences this rank has consumed in the epoch */
} v3_pack_cursor;

typedef struct v3_pack_piece {
    uint64_t doc;          /* global document id */
    uint32_t len;          /* tokens taken (the document's first len tokens) */
} v3_pack_piece;

typedef struct v3_packer {
    const v3_dataset *ds;
    v3_pack_opts o;
    v3_pack_cursor cur;
    /* the plan of epoch cur.epoch */
    v3_pack_piece *pieces;  /* [n_pieces], grouped by sequence */
    uint64_t *seq_start;    /* [n_seq + 1] offsets into pieces */
    uint64_t *seq_order;    /* [n_seq] shuffled sequence order */
    uint64_t n_pieces, n_seq;
    uint64_t tokens_packed; /* non-pad tokens in the epoch */
    uint64_t dropped, truncated; /* documents, this epoch */
} v3_packer;

int v3_packer_init(v3_packer *p, const v3_dataset *ds, const v3_pack_opts *o, v3_err *err);
void v3_packer_free(v3_packer *p);
/* Moves to a saved cursor (re-planning when the epoch differs). */
int v3_packer_seek(v3_packer *p, const v3_pack_cursor *c, v3_err *err);
/* Non-pad tokens / (sequences × T) for the current epoch. */
double v3_packer_efficiency(const v3_packer *p);
/* Sequences per epoch for this rank. */
uint64_t v3_packer_steps_per_epoch(const v3_packer *p);

typedef struct v3_pack_batch {
    int B, T;
    int32_t *tokens;     /* [B, T] */
    int32_t *targets;    /* [B, T] */
    int32_t *positions;  /* [B, T] */
    int32_t *doc_start;  /* [B, T] */
} v3_pack_batch;

int v3_pack_batch_init(v3_pack_batch *b, int B, int T, v3_err *err);
void v3_pack_batch_free(v3_pack_batch *b);
/* Fills the next B sequences; rolls into the next epoch (re-planned) when this one is used up. */
int v3_packer_next(v3_packer *p, v3_pack_batch *b, v3_err *err);
/* Fills one row from sequence `s` of the current plan (s < n_seq, plan order, not shuffled). */
void v3_packer_fill_row(const v3_packer *p, uint64_t s, int32_t *tokens, int32_t *targets,
                        int32_t *positions, int32_t *doc_start);

#endif
