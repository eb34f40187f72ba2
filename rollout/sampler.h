/* sampler.h — next-token sampling for the rollout engine: temperature, top-k, top-p, min-p,
 * with the logprobs GRPO needs recorded at the moment of sampling.
 *
 * Semantics are those of Hugging Face transformers' sampling warpers, applied in the order
 * GenerationMixin._get_logits_processor builds them when do_sample is set
 * (src/transformers/generation/utils.py, read at commit 000034a44ef8):
 * TemperatureLogitsWarper → TopKLogitsWarper → TopPLogitsWarper → MinPLogitsWarper
 * (generation/logits_process.py), each with min_tokens_to_keep = 1. vLLM applies the same
 * filters. HF compares fp32 probabilities; we compare double sums of fp32 weights, so the two
 * can differ only for a token within rounding distance of a threshold.
 *
 *   temperature  x = logit · (1.0f/T), a float multiply (NOT a division, which HF and vLLM use):
 *                the trainer scales with the same op, so sampler and trainer see bit-identical
 *                scaled logits. T = 0 means greedy (argmax, the lowest token id wins ties).
 *   top_k        keep every token whose x >= the k-th largest x (HF's rule `x < kth → removed`),
 *                so tokens tied with the k-th value are all kept and more than k may survive.
 *                k = 0 or k >= V: off.
 *   top_p        on the softmax of the tokens kept so far: sorted ascending, a token is removed
 *                when the cumulative probability up to and including it is <= 1 - top_p; the
 *                most probable token is always kept. Equivalently a token survives iff the mass of
 *                the tokens strictly more probable than it is < top_p. Ties in x are ordered by
 *                token id (lower id counts as more probable) — torch.sort leaves that order
 *                unspecified; ours is fixed so results are reproducible. top_p = 1: off.
 *   min_p        on the softmax of the tokens kept so far: removed when p < min_p · p_max, which
 *                is computed as expf(x - x_max) < min_p (the normaliser cancels). min_p = 0: off.
 *
 * Numerics follow the trainer's cross-entropy (kernels/cpu/cpu_loss.c) through the same functions
 * (common/vexp.h): fp32 max, v3_expf(x - max), the normaliser summed in double in a fixed lane
 * order, lse = max + log(sum). Hence (float)-logprob_temp equals the loss the CPU trainer computes
 * for that token, bit for bit.
 *
 * The draw: one uniform u = v3_rng_uniform_f64 per call (greedy included, so the n-th token of a
 * sequence always uses the n-th uniform of its stream), then the inverse CDF over the kept tokens
 * in ascending token-id order: the first token whose running sum of weights exceeds u · sum
 * (the running sum advances in fixed blocks of 64 weights, then token by token inside the block
 * that crosses the target: deterministic, but not the plain token-order sum).
 *
 * Cost: a few O(V) passes (max, weights and normaliser, the raw normaliser when T != 1, the
 * draw). Nothing is sorted by value except small sets: top-k narrows the vocabulary with a
 * histogram of the scaled logits and finds its k-th value by quickselect; top-p finds the
 * histogram bucket where the mass crosses top_p and sorts only that bucket (refining it again
 * while it holds more than a few thousand tokens). No allocation per call.
 *
 *     v3_sample_scratch sc;  v3_sample_scratch_init(&sc, V, &err);
 *     v3_rng rng;  v3_sample_rng(&rng, seed, request_index, sample_index);
 *     v3_sampling s = v3_sampling_default();  s.temperature = 0.7f;  s.top_p = 0.95f;
 *     v3_sampled o;  v3_sample_token(logits, V, &s, &rng, &sc, &o, &err);
 *     ... o.token, o.logprob ...
 *     v3_sample_scratch_free(&sc);
 */
#ifndef V3_SAMPLER_H
#define V3_SAMPLER_H

#include <stdint.h>

#include "common/err.h"
#include "common/rng.h"

typedef struct v3_sampling {
    float temperature; /* >= 0; 0 = greedy */
    int top_k;         /* >= 0; 0 = off */
    float top_p;       /* (0, 1]; 1 = off */
    float min_p;       /* [0, 1]; 0 = off */
} v3_sampling;

/* temperature 1, top_k 0, top_p 1, min_p 0: plain sampling from softmax(logits). */
v3_sampling v3_sampling_default(void);

/* Checks the ranges above; names the bad field. */
int v3_sampling_check(const v3_sampling *s, v3_err *err);

typedef struct v3_sampled {
    int32_t token;
    double logprob;      /* log p(token) under the distribution it was drawn from (truncated by the
                          * filters and renormalised); 0 for greedy (a point mass) */
    double logprob_temp; /* log_softmax(logit · (1/T)) over the full vocabulary; T = 1 if greedy */
    double logprob_raw;  /* log_softmax(logit) over the full vocabulary */
    int64_t n_kept;      /* tokens left after the filters (1 for greedy) */
    double entropy;      /* of softmax(logit · (1/T)) over the full vocabulary (T = 1 if greedy),
                          * from the sampler's own exponentials: no extra pass */
} v3_sampled;

struct v3_sample_cand; /* (x, token id) pair; private to sampler.c */

/* Working memory for vocabularies up to cap tokens; one per sampling thread. */
typedef struct v3_sample_scratch {
    int64_t cap;                 /* largest V accepted */
    struct v3_sample_cand *cand; /* [cap] candidates of the filters */
    float *w;                    /* [cap] v3_expf(x - x_max) by token id, then compacted kept list */
    int32_t *kept;               /* [cap] kept token ids, ascending */
    double *bmass;               /* [V3_SAMPLE_NB] histogram: mass per bucket */
    int64_t *bcount;             /* [V3_SAMPLE_NB] histogram: tokens per bucket */
} v3_sample_scratch;

#define V3_SAMPLE_NB 2048 /* histogram buckets used to narrow a filter's cut */

int v3_sample_scratch_init(v3_sample_scratch *sc, int64_t cap, v3_err *err);
void v3_sample_scratch_free(v3_sample_scratch *sc); /* accepts a zeroed or freed scratch */

/* Samples one token from logits [V] (1 <= V <= sc->cap). rng is advanced by exactly one
 * v3_rng_u64 (it may be NULL for greedy only). Non-finite logits (or logits that overflow when
 * scaled by 1/T) are rejected with V3_ERANGE naming the index. *out is written only on success. */
int v3_sample_token(const float *logits, int64_t V, const v3_sampling *s, v3_rng *rng,
                    v3_sample_scratch *sc, v3_sampled *out, v3_err *err);

/* The generator of sample `sample` of request `request` under run seed `seed`: a pure function of
 * the three numbers, so a sample is reproducible whatever else shares its batch. */
void v3_sample_rng(v3_rng *r, uint64_t seed, uint64_t request, uint64_t sample);

#endif
