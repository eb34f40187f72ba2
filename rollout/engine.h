/* engine.h — the rollout engine: batched generation on the training model's own weights and
 * kernels, with the paged latent KV cache (kvcache.h) and the sampler (sampler.h).
 *
 * What it does per step (engine.c):
 *   - every running sequence feeds its pending tokens (1 when decoding; a prompt, or a chunk of
 *     it, when prefilling; 2 when verifying an MTP draft); waiting requests join as soon as
 *     blocks and the step's token budget allow (continuous batching);
 *   - the n samples of a request share its prompt: the prompt is prefilled once (sample 0) and
 *     the others start from its cached blocks and its last logits (prefix sharing);
 *   - when the cache runs out of blocks, the latest-admitted sequence is preempted: its blocks
 *     are freed and it is recomputed later from its tokens (never dropped, never changed);
 *   - one model step (v3_model_step, absorbed attention over the cache), then sampling, then the
 *     logprobs of the sampled tokens with the trainer's own loss ops (v3_model_logprobs), so the
 *     recorded logprob equals the trainer's recompute bit for bit on the CPU backend;
 *   - with MTP (greedy requests with n = 1), the MTP module drafts the next token and the main
 *     model verifies it in the same step as the token before it; output is unchanged.
 *
 * Typical use:
 *     v3_engine e;  v3_engine_options o = v3_engine_default_options();
 *     v3_engine_init(&e, &model, &o, &err);         // model initialised with opt.absorb = 1
 *     v3_engine_generate(&e, reqs, n_reqs, &outs, &n_outs, &err);
 *     ... outs[i] for request outs[i].request, sample outs[i].sample ...
 *     v3_gen_outputs_free(outs, n_outs);  v3_engine_free(&e); */
#ifndef V3_ENGINE_H
#define V3_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../datasets/tokenizer.h"
#include "../model/model.h"
#include "kvcache.h"
#include "sampler.h"
#include "wpack.h"

typedef struct v3_gen_request {
    const int32_t *prompt;     /* token ids (the chat template already applied) */
    int64_t prompt_len;        /* ≥ 1 */
    int n;                     /* samples (≥ 1) */
    v3_sampling sampling;
    int64_t max_new_tokens;    /* ≥ 1 */
    const int32_t *stop_ids;   /* generation stops after emitting one of these (e.g. EOS) */
    int n_stop_ids;
    const char *const *stop;   /* stop strings (need a tokenizer); the text is cut before them */
    int n_stop;
    uint64_t seed;             /* sample s uses stream (seed, request index, s) */
} v3_gen_request;

enum { V3_FINISH_NONE = 0, V3_FINISH_STOP = 1, V3_FINISH_LENGTH = 2 };
const char *v3_finish_name(int finish); /* "stop", "length" */

typedef struct v3_gen_output {
    int request, sample;
    int32_t *ids;              /* [n] generated tokens, a stop id included */
    int64_t n;
    float *logprob;            /* [n] log p under the distribution it was drawn from (0: greedy) */
    float *logprob_temp;       /* [n] log softmax(logits/T) — the trainer's recompute, bit-exact
                                * on the CPU (T = 1 for greedy) */
    float *logprob_raw;        /* [n] log softmax(logits) (T = 1), same ops */
    float *entropy;            /* [n] entropy (nats) of softmax(logits/T) over the full vocabulary
                                * at each step (T = 1 for greedy), before top-k/p/min-p */
    char *text;                /* detokenised, cut before a stop string; NULL without tokenizer */
    size_t text_len;
    int finish;                /* V3_FINISH_* */
    int stop_string;           /* index of the stop string that ended it, or -1 */
    int64_t preemptions;       /* times this sample was preempted and recomputed */
    double t_first_token;      /* seconds from the start of generate */
    double t_done;
} v3_gen_output;

void v3_gen_outputs_free(v3_gen_output *o, int64_t n);

/* Streaming: called with the newly safe text of a sample (piece may be empty) and done = 1
 * once when it finishes. */
typedef void (*v3_gen_stream_fn)(void *user, const v3_gen_output *o, const char *piece,
                                 size_t n, int done);

typedef struct v3_engine_options {
    int64_t block_size;        /* tokens per cache block (16) */
    int64_t max_live_tokens;   /* cache capacity in tokens: the memory budget (65536) */
    int64_t max_step_tokens;   /* tokens per model step (0 = the model's max_tokens) */
    int64_t max_seqs;          /* sequences running at once (256) */
    int mtp;                   /* MTP speculative decoding for greedy n = 1 requests */
    /* MTP drafts choose among token ids < mtp_draft_vocab (16384; 0 = the whole vocabulary). The
     * draft's head is the lm_head's leading rows: byte-level BPE numbers tokens in merge order,
     * roughly by frequency (the first 16,384 of the V3 vocabulary hold 93 % of GSM8K's answer
     * tokens), so drafting costs 1/8 of a full head pass and loses few accepted drafts. Outputs
     * never depend on it: a draft is only kept when the main model samples the same token. */
    int64_t mtp_draft_vocab;
    /* Keep copies of the weights a decode step reads in the backend's GEMM strip layout
     * (be->pack_nt, the CPU only; rollout/wpack.h), made again at the start of a generate call
     * when the model's weights_version moved (the trainer's updates): a step's GEMVs then stream
     * contiguous arrays instead of transposing 16 rows at a time. With pack_bf16, a weight whose
     * every value is a bf16 (a bf16 checkpoint before training) is kept as bf16: half the bytes.
     * Same bits either way. + about the model's projection weights in memory. (1, 1) */
    int pack_weights;
    int pack_bf16;
    const v3_tokenizer *tok;   /* detokenisation and stop strings (may be NULL) */
    v3_gen_stream_fn stream;
    void *stream_user;
    /* (tests, debugging) called with the logits row each token is sampled from: output o, index
     * of the token about to be generated, logits [V] (host) */
    void (*on_logits)(void *user, const v3_gen_output *o, int64_t index, const float *logits,
                      int64_t V);
    void *logits_user;
} v3_engine_options;

v3_engine_options v3_engine_default_options(void);

typedef struct v3_engine_stats {
    int64_t steps, prefill_tokens, decode_tokens, generated, preemptions;
    int64_t prefix_shared_tokens; /* prompt tokens not prefilled thanks to sharing */
    int64_t mtp_drafted, mtp_accepted;
    int64_t peak_blocks;
    double t_total, t_model, t_mtp, t_sample, t_pack;
    int64_t packs;             /* generate calls that (re)packed the weights */
} v3_engine_stats;

struct v3_gen_seq;

typedef struct v3_engine {
    v3_model *m;
    v3_engine_options o;
    v3_kvcache kv;
    v3_sample_scratch sc;
    int64_t V, C, width, max_step, max_out;
    int64_t Vd;                /* logit columns of an MTP draft step (≤ V) */
    v3_wpack_set wp;           /* packed weight copies (pack_weights; wp.n = 0 without) */
    float *d_logits;           /* (backend) [max_out, V] */
    float *h_logits;           /* (host) [max_out, V]; = d_logits on a host_visible backend */
    float *d_hidden;           /* (backend) [max_step, C] main final hidden of the step (MTP) */
    float *d_mtp_hidden;       /* (backend) [max_step, C] rows gathered for the MTP step */
    float *Kbuf;               /* (backend) [Kcap, width] keys of the current step */
    int64_t Kcap;
    int32_t *d_widx, *d_gidx, *d_hrows; /* (backend) write slots, gathered slots, hidden rows */
    int64_t gcap;
    /* per-step host arrays */
    int32_t *tokens, *positions, *kv_lo, *kv_hi, *widx, *out_rows, *hrows, *gidx;
    int32_t *lp_tok, *lp_row;
    float *lp_temp, *lp_val;
    v3_engine_stats stats;
} v3_engine;

/* The model must have been initialised with opt.absorb = 1 (and opt.mtp for o->mtp). The engine
 * keeps a pointer to it and generates with its current weights (no copy). */
int v3_engine_init(v3_engine *e, v3_model *m, const v3_engine_options *o, v3_err *err);
void v3_engine_free(v3_engine *e);

/* Runs every request to completion. *out (malloc'd, [Σ n], ordered by request then sample). */
int v3_engine_generate(v3_engine *e, const v3_gen_request *reqs, int n_reqs, v3_gen_output **out,
                       int64_t *n_out, v3_err *err);

#endif
