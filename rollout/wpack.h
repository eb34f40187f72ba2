/* wpack.h — the rollout engine's packed copies of the weights a decode step reads.
 *
 * At a few rows per step, every projection is a GEMV bound by the rate at which its weight
 * streams from memory, and the CPU GEMM reads a weight [N, K] (x · Wᵀ) by transposing 16 rows at
 * a time in registers: ~60 % of a plain sequential read. A copy in the GEMM's own strip layout
 * (be->pack_nt) streams at the read rate; a copy in bf16 when every value of the weight is a bf16
 * (a bf16 checkpoint, untrained) reads half the bytes. The GEMM finds them through the context's
 * wpacks (kernels.h) and computes the same bits either way.
 *
 * The copies follow the model's weights_version: v3_wpack_set_refresh repacks only when the
 * weights changed since the last refresh (the GRPO trainer's updates, a checkpoint load).
 *
 *     v3_wpack_set s;  v3_wpack_set_init(&s, m, &err);      (all copies allocated at fp32 size)
 *     v3_wpack_set_refresh(&s, m, 1, &err);  m->ctx->wpacks = &s.view;  ...steps...
 *     m->ctx->wpacks = NULL;  v3_wpack_set_free(&s, m->ctx); */
#ifndef V3_WPACK_H
#define V3_WPACK_H

#include "../model/model.h"

typedef struct v3_wpack_set {
    v3_wpack *e;        /* (host) [n] sorted by w */
    int64_t n;
    void *buf;          /* (backend) every copy, at its fp32 size */
    size_t bytes;
    int fresh;          /* the copies match the weights of `version` */
    int bf16;           /* the last refresh allowed bf16 copies */
    uint64_t version;
    int64_t n_bf16;     /* copies packed as bf16 by the last refresh */
    size_t bytes_read;  /* bytes the copies occupy (what a step streams of them) */
    v3_wpacks view;     /* {e, n}: what to put in ctx->wpacks */
} v3_wpack_set;

/* Lists the decode step's projections (attention, MLPs, router, every expert, the lm_head, the
 * MTP module's) and allocates their copies. V3_EUNSUPPORTED when the backend has no pack_nt. */
int v3_wpack_set_init(v3_wpack_set *s, v3_model *m, v3_err *err);
/* Makes the copies equal to the weights unless they already are (same weights_version and bf16
 * choice); bf16: pack bf16-exact weights as bf16. *did (optional) = 1 when it packed. */
int v3_wpack_set_refresh(v3_wpack_set *s, v3_model *m, int bf16, int *did, v3_err *err);
void v3_wpack_set_free(v3_wpack_set *s, v3_kctx *ctx);

#endif
