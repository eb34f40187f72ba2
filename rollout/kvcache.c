/* kvcache.c — block pool with reference counts and copy on write (see kvcache.h). */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

int v3_kvcache_init(v3_kvcache *c, v3_kctx *ctx, int n_layers, int64_t width, int64_t block_size,
                    int64_t n_blocks, v3_err *err) {
    memset(c, 0, sizeof *c);
    if (n_layers < 1 || width < 1 || block_size < 1 || n_blocks < 1 || n_blocks > INT32_MAX / block_size)
        return v3_errf(err, V3_EINVAL, "kv cache: %d layers, width %lld, %lld blocks of %lld tokens",
                       n_layers, (long long)width, (long long)n_blocks, (long long)block_size);
    c->ctx = ctx;
    c->n_layers = n_layers;
    c->width = width;
    c->block_size = block_size;
    c->n_blocks = n_blocks;
    c->pool = calloc((size_t)n_layers, sizeof *c->pool);
    c->refs = calloc((size_t)n_blocks, sizeof *c->refs);
    c->free_list = malloc((size_t)n_blocks * sizeof *c->free_list);
    if (!c->pool || !c->refs || !c->free_list) goto oom;
    size_t bytes = (size_t)(n_blocks * block_size * width) * sizeof(float);
    for (int l = 0; l < n_layers; l++)
        if (!(c->pool[l] = ctx->be->alloc(ctx, bytes))) goto oom;
    /* pop order 0, 1, 2, …: block ids ascend in a fresh cache (easier to read in tests) */
    for (int64_t b = 0; b < n_blocks; b++) c->free_list[b] = (int32_t)(n_blocks - 1 - b);
    c->n_free = n_blocks;
    return V3_OK;
oom:
    v3_kvcache_free(c);
    return v3_errf(err, V3_ENOMEM, "kv cache: cannot allocate %lld blocks of %lld tokens × %d layers",
                   (long long)n_blocks, (long long)block_size, n_layers);
}

void v3_kvcache_free(v3_kvcache *c) {
    if (!c || !c->ctx) return;
    for (int l = 0; c->pool && l < c->n_layers; l++) c->ctx->be->free(c->ctx, c->pool[l]);
    free(c->pool);
    free(c->refs);
    free(c->free_list);
    memset(c, 0, sizeof *c);
}

static int32_t take_block(v3_kvcache *c) {
    if (c->n_free == 0) return -1;
    int32_t b = c->free_list[--c->n_free];
    c->refs[b] = 1;
    int64_t used = c->n_blocks - c->n_free;
    if (used > c->peak_used) c->peak_used = used;
    return b;
}

static void release_block(v3_kvcache *c, int32_t b) {
    if (--c->refs[b] == 0) c->free_list[c->n_free++] = b;
}

static int table_grow(v3_kv_table *t, int64_t n) {
    if (n <= t->cap) return 0;
    int64_t cap = t->cap ? t->cap * 2 : 8;
    while (cap < n) cap *= 2;
    int32_t *b = realloc(t->blocks, (size_t)cap * sizeof *b);
    if (!b) return -1;
    t->blocks = b;
    t->cap = cap;
    return 0;
}

void v3_kv_table_free(v3_kvcache *c, v3_kv_table *t) {
    for (int64_t i = 0; i < t->n; i++) release_block(c, t->blocks[i]);
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

int v3_kv_table_reserve(v3_kvcache *c, v3_kv_table *t, int64_t n_tokens, int64_t first_write) {
    int64_t need = v3_kv_blocks_for(c, n_tokens);
    if (table_grow(t, need)) return V3_ENOMEM;
    /* copy on write: a shared block that will receive new rows */
    int64_t bw = first_write / c->block_size;
    if (first_write < n_tokens && bw < t->n && c->refs[t->blocks[bw]] > 1) {
        int32_t nb = take_block(c);
        if (nb < 0) return V3_ENOMEM;
        int64_t rows = first_write - bw * c->block_size;
        if (rows > 0)
            for (int l = 0; l < c->n_layers; l++)
                c->ctx->be->copy(c->ctx, c->pool[l] + (int64_t)nb * c->block_size * c->width,
                                 c->pool[l] + (int64_t)t->blocks[bw] * c->block_size * c->width,
                                 (size_t)(rows * c->width) * sizeof(float));
        release_block(c, t->blocks[bw]);
        t->blocks[bw] = nb;
    }
    while (t->n < need) {
        int32_t nb = take_block(c);
        if (nb < 0) return V3_ENOMEM;
        t->blocks[t->n++] = nb;
    }
    return V3_OK;
}

int v3_kv_table_share(v3_kvcache *c, v3_kv_table *dst, const v3_kv_table *src, int64_t n_tokens,
                      v3_err *err) {
    int64_t nb = v3_kv_blocks_for(c, n_tokens);
    if (dst->n != 0 || nb > src->n)
        return v3_errf(err, V3_EINVAL, "kv cache: cannot share %lld blocks of a %lld-block table",
                       (long long)nb, (long long)src->n);
    if (table_grow(dst, nb)) return v3_errf(err, V3_ENOMEM, "kv cache: out of memory");
    for (int64_t i = 0; i < nb; i++) {
        dst->blocks[i] = src->blocks[i];
        c->refs[src->blocks[i]]++;
    }
    dst->n = nb;
    return V3_OK;
}

void v3_kv_table_truncate(v3_kvcache *c, v3_kv_table *t, int64_t n_tokens) {
    int64_t keep = v3_kv_blocks_for(c, n_tokens);
    while (t->n > keep) release_block(c, t->blocks[--t->n]);
}
