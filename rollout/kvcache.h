/* kvcache.h — the paged latent KV cache of the rollout engine (model-spec §3).
 *
 * Per token and layer the cache keeps only what MLA needs to attend: the normalised latent
 * c (kv_lora_rank = 512) and the rotated k_pe (qk_rope_head_dim = 64) — 576 floats instead of
 * 2·128·(128+64)… for full per-head keys and values. Memory is cut into blocks of block_size
 * tokens; a sequence owns a block table (block ids in order), so memory follows the live tokens
 * and sequences can share blocks (the n samples of one prompt share its prefix blocks).
 *
 * Blocks are reference counted. A sequence about to write into a block that others still read
 * first gets a private copy (copy on write, all layers). Each layer (the MTP layer included) has
 * its own pool [n_blocks · block_size, width] in backend memory; a slot id = block·block_size +
 * offset addresses the same row in every pool. */
#ifndef V3_KVCACHE_H
#define V3_KVCACHE_H

#include <stdint.h>

#include "../common/err.h"
#include "../kernels/kernels.h"

typedef struct v3_kvcache {
    v3_kctx *ctx;
    int n_layers;          /* pools (main layers + MTP layer) */
    int64_t width;         /* floats per row: kv_lora_rank + qk_rope_head_dim */
    int64_t block_size;    /* tokens per block */
    int64_t n_blocks;
    float **pool;          /* [n_layers] backend [n_blocks·block_size, width] */
    int32_t *refs;         /* (host) [n_blocks] readers of each block; 0 = free */
    int32_t *free_list;    /* (host) stack of free block ids */
    int64_t n_free;
    int64_t peak_used;     /* most blocks in use at once */
} v3_kvcache;

/* Allocates pools of n_blocks blocks for n_layers layers. */
int v3_kvcache_init(v3_kvcache *c, v3_kctx *ctx, int n_layers, int64_t width, int64_t block_size,
                    int64_t n_blocks, v3_err *err);
void v3_kvcache_free(v3_kvcache *c);

/* A sequence's block table. */
typedef struct v3_kv_table {
    int32_t *blocks;
    int64_t n, cap;
} v3_kv_table;

void v3_kv_table_free(v3_kvcache *c, v3_kv_table *t); /* releases its blocks */
/* Makes t cover slots for tokens [0, n_tokens) and makes the block holding token `first_write`
 * and every later one private (copy on write of rows [block start, first_write) of a shared
 * block). Returns V3_OK, or V3_ENOMEM (nothing changed that the caller must undo: blocks taken
 * so far stay in t and are released with it) when the pool runs out. */
int v3_kv_table_reserve(v3_kvcache *c, v3_kv_table *t, int64_t n_tokens, int64_t first_write);
/* dst shares src's first n_tokens' blocks (reference counts +1). dst must be empty. */
int v3_kv_table_share(v3_kvcache *c, v3_kv_table *dst, const v3_kv_table *src, int64_t n_tokens,
                      v3_err *err);
/* Drops blocks beyond those holding tokens [0, n_tokens). */
void v3_kv_table_truncate(v3_kvcache *c, v3_kv_table *t, int64_t n_tokens);
static inline int32_t v3_kv_slot(const v3_kvcache *c, const v3_kv_table *t, int64_t pos) {
    return (int32_t)(t->blocks[pos / c->block_size] * c->block_size + pos % c->block_size);
}
/* Blocks needed for n_tokens tokens. */
static inline int64_t v3_kv_blocks_for(const v3_kvcache *c, int64_t n_tokens) {
    return (n_tokens + c->block_size - 1) / c->block_size;
}

#endif
