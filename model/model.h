/* model.h — the DeepSeek-V3 model: forward and backward of the whole network on the op table.
 *
 * No autograd: every block has an explicit forward and backward (model/mla.c, mlp.c, moe.c,
 * loss.c, mtp.c); the activations backward needs live in one arena planned at init from the
 * config and the token budget (model/arena.h). Parameters and gradients are each ONE buffer in
 * the layout of the parameter table (model/params.h), in backend memory.
 *
 * Typical use (a training step):
 *     v3_model m;  v3_model_options o = v3_model_default_options();
 *     v3_model_init(&m, &cfg, &ctx, max_tokens, &o, &err);
 *     v3_model_load(&m, dir, &err);
 *     v3_model_zero_grad(&m);
 *     v3_model_forward(&m, &batch, &loss, &err);     // loss = mean CE (+ λ·MTP + balance)
 *     v3_model_backward(&m, &err);                   // grads += d loss / d params
 *     (or both at once: v3_model_forward_backward, which saves the head's recompute)
 *     ... optimizer step on m.params / m.grads ...
 *     v3_model_update_router_bias(&m, gamma);        // aux-loss-free balancing (off when γ = 0)
 *
 * A batch is a flat, packed sequence of N ≤ max_tokens tokens: several documents (or several
 * rows of a B×T batch) one after another. Each token carries its position inside its document
 * (RoPE restarts per document) and the index of its document's first token: attention of token
 * t covers exactly [doc_start[t], t] (causal and never across documents).
 *
 * Gradient convention (as kernels.h): parameter gradients ACCUMULATE; running forward+backward
 * twice without v3_model_zero_grad doubles them. e_score_correction_bias gets no gradient. */
#ifndef V3_MODEL_H
#define V3_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"
#include "../kernels/kernels.h"
#include "arena.h"
#include "config.h"
#include "params.h"

/* DeepSeek-V3's published values (model-spec §6, §7), for callers that turn the features on. */
#define V3_MTP_LAMBDA_DEFAULT 0.1f      /* 0.3 for the first 10T pre-training tokens, then 0.1 */
#define V3_BALANCE_ALPHA_DEFAULT 1e-4f  /* sequence-wise balance loss */
#define V3_BIAS_GAMMA_DEFAULT 1e-3f     /* bias update speed (0 for the last 500B tokens) */

typedef struct v3_model_options {
    int mtp;                /* 1: build and run the MTP module (depth 1); needs config num_nextn ≥ 1 */
    float mtp_lambda;       /* weight of the MTP loss (used only when mtp) */
    float balance_alpha;    /* sequence-wise balance loss weight; 0 = off (default) */
    int training;           /* 0: forward only (no backward scratch; every layer uses one slot) */
    /* recompute[l] != 0: layer l keeps only its input and is recomputed in backward. NULL = none.
     * Length n_layer (+1 for the MTP layer at index n_layer when mtp). Copied at init. */
    const unsigned char *recompute;
    int64_t loss_chunk;     /* tokens per logits chunk in the loss (0 = auto: 128 MiB host, 1 GiB device) */
    /* 1: attention in the absorbed (latent) form of model-spec §3 — W_UK folded into the query,
     * keys/values = the normalised latent c ‖ k_pe shared by all heads, W_UV after attention.
     * The rollout engine always decodes this way; a trainer whose logprobs must equal the
     * sampler's bit for bit (GRPO) sets it too. Same function, different rounding (≤1e-5). */
    int absorb;
} v3_model_options;

v3_model_options v3_model_default_options(void);

/* One packed batch; all arrays host memory. */
typedef struct v3_batch {
    int64_t N;                  /* tokens (≤ max_tokens of init) */
    const int32_t *tokens;      /* [N] input ids */
    const int32_t *targets;     /* [N] id to predict at t (usually tokens[t+1] in t's document);
                                 * negative = ignored (HF's -100) */
    const int32_t *positions;   /* [N] RoPE position of t inside its document (0-based) */
    const int32_t *doc_start;   /* [N] index of the first token of t's document (≤ t) */
    /* optional outputs, written by v3_model_forward when non-NULL: */
    float *token_loss;          /* [N] −log p(targets[t]) (0 where ignored): per-token logprob = −loss */
    float *logits;              /* [N, V] main-model logits (tests and scoring of tiny models) */
    float *mtp_logits;          /* [N, V] MTP logits (row t predicts targets[t+1]) */
    float temperature;          /* main loss on softmax(logits / T) as the sampler drew (GRPO);
                                 * 0 or 1 = plain logits */
    const float *token_weight;  /* [N] or NULL. When given, backward differentiates
                                 * Σ_t token_weight[t] · CE_t (+ MTP, balance) instead of the mean
                                 * CE: a policy-gradient loss with d L/d logp_t = g_t passes
                                 * token_weight = −g_t (CE_t = −logp_t). */
} v3_batch;

/* Per-layer pointers into params or grads (backend memory). NULL where the config lacks one. */
typedef struct v3_layer_w {
    float *in_ln;       /* [C] input_layernorm */
    float *q;           /* [H*dqk, C] q_proj (no q_lora) */
    float *q_a;         /* [qr, C] */
    float *q_a_ln;      /* [qr] */
    float *q_b;         /* [H*dqk, qr] */
    float *kv_a;        /* [kvr+dr, C] kv_a_proj_with_mqa */
    float *kv_a_ln;     /* [kvr] */
    float *kv_b;        /* [H*(dn+dv), kvr] */
    float *o;           /* [C, H*dv] */
    float *post_ln;     /* [C] */
    /* dense MLP (layer < first_k_dense_replace) */
    float *gate_up;     /* [2I, C]: gate_proj then up_proj, adjacent in the table */
    float *down;        /* [C, I] */
    /* MoE */
    float *router;      /* [E, C] mlp.gate.weight */
    float *bias;        /* [E] e_score_correction_bias (params only) */
    float **exp_gate_up;/* (host) [E] -> [2Ie, C] */
    float **exp_down;   /* (host) [E] -> [C, Ie] */
    float *sh_gate_up;  /* [2Is, C] shared experts (Is = n_shared·Ie) */
    float *sh_down;     /* [C, Is] */
} v3_layer_w;

/* What one decoder layer's forward saves for its backward (arena pointers). */
typedef struct v3_layer_acts {
    float *xn1, *rstd1;       /* [N, C], [N] input_layernorm out / 1/rms */
    float *cq, *rstd_q, *cqn; /* [N, qr], [N], [N, qr] (q_lora only) */
    float *q;                 /* [N, H, dqk] rope part rotated */
    float *ckv;               /* [N, kvr+dr]: c (raw) and k_pe (rotated) */
    float *rstd_kv;           /* [N] */
    float *cn;                /* [N, kvr] kv_a_layernorm out */
    float *kv;                /* [N, H, dn+dv] (not absorb) */
    float *qa;                /* absorb: [N, H, kvr+dr] query in latent space (W_UKᵀ q_nope ‖ q_pe) */
    float *lat;               /* absorb: [N, kvr+dr] key = value rows: kv_a_layernorm(c) ‖ rotated k_pe
                               * (exactly what the KV cache keeps per token) */
    float *olat;              /* absorb: [N, H, kvr] attention output in latent space */
    float *att;               /* [N, H, dv] attention output */
    float *lse;               /* [N, H] */
    float *h_mid;             /* [N, C] residual after attention */
    float *xn2, *rstd2;       /* [N, C], [N] post_attention_layernorm out */
    float *gu, *act;          /* dense: [N, 2I], [N, I]; MoE: shared [N, 2Is], [N, Is] */
    /* MoE */
    float *rlogits, *scores;  /* [N, E] */
    int32_t *topk_idx;        /* [N, K] */
    float *topk_w;            /* [N, K] */
    int32_t *row_of, *src_of; /* [N*K] */
    int64_t *counts;          /* (host) [E] rows per expert */
    float *xperm;             /* [R, C] dispatched inputs, R = N*K */
    float *gu_perm, *act_perm;/* [R, 2Ie], [R, Ie] */
    float *yperm;             /* [R, C] expert outputs (before combine weights) */
} v3_layer_acts;

/* The rows one loss head (main or MTP) computes logits for in the last batch: the head's GEMMs
 * run over the rows with a target only (prompt tokens of chat data and of GRPO need no logits).
 * Compact position i < n_valid is batch row row[i]; the rows with a target come first, then the
 * ignored rows, each group in batch order. */
typedef struct v3_loss_rows {
    int32_t *d_row;           /* [N] backend copy of row */
    int32_t *d_target;        /* [N] the target of row[i] (≥ 0 for i < n_valid) */
    int32_t *row;             /* (host) [max_tokens] */
    int64_t n_valid;
} v3_loss_rows;

typedef struct v3_model {
    v3_config cfg;
    v3_model_options opt;
    v3_kctx *ctx;
    v3_param_table table;
    float *params;            /* [table.total] backend memory */
    float *grads;             /* [table.total] backend memory (NULL when !training) */
    uint64_t weights_version; /* changes whenever params change (v3_model_weights_changed): copies
                               * made from the weights (the engine's packed ones) follow it */
    int n_layers_total;       /* n_layer (+1 with MTP) */
    v3_layer_w *lw, *lg;      /* [n_layers_total] weight / gradient pointers */
    float *embed, *final_ln, *head;       /* params: [V, C], [C], [V, C] */
    float *g_embed, *g_final_ln, *g_head; /* grads */
    float *mtp_enorm, *mtp_hnorm, *mtp_eh, *mtp_snorm;     /* [C], [C], [C, 2C], [C] */
    float *g_mtp_enorm, *g_mtp_hnorm, *g_mtp_eh, *g_mtp_snorm;
    unsigned char *recompute; /* (host) [n_layers_total] */
    int64_t max_tokens;
    int64_t loss_chunk;
    float *inv_freq;          /* [dr/2] backend memory */
    v3_gemm_desc *descs;      /* (host) [E] grouped-GEMM problems of the routed experts */
    float softmax_scale;

    /* ---- the arena ---- */
    v3_arena arena;
    v3_layer_acts *acts;      /* [n_layers_total]; recomputed layers share `slot` */
    v3_layer_acts slot;
    float *hs;                /* [n_layers_total + 1, N, C] residual stream at each layer input,
                               * hs[n_layer] = main final hidden (pre-norm) */
    float *xf, *rstd_f;       /* [N, C], [N] final norm out (main) */
    int32_t *d_tokens, *d_targets, *d_pos, *d_kv_lo, *d_kv_hi; /* [N] backend copies */
    int32_t *d_mtp_tokens;    /* [N] the token after each position (MTP input) */
    float *tok_loss;          /* [N] per-token CE (device) */
    float *logits_chunk;      /* [chunk, V] */
    float *tok_loss_scratch;  /* [chunk] per-token loss of one chunk of gathered rows */
    float *x_rows;            /* [chunk, C] one chunk's gathered head inputs, then their gradient */
    v3_loss_rows rows, mtp_rows; /* the main and the MTP head's rows */
    float *host_tok_loss;     /* (host) [max_tokens] */
    float *d_xf;              /* [N, C] gradient of the main final-norm output (main CE + MTP) */
    float *Kbuf;              /* [N, H, dqk] keys assembled for the attention op (scratch) */
    /* MTP forward */
    float *mtp_e, *mtp_rstd_e, *mtp_rstd_h, *mtp_cat; /* [N,C], [N], [N], [N, 2C] */
    float *mtp_xf, *mtp_rstd_f;                       /* [N, C], [N] */
    float *mtp_tok_loss;                              /* [N] */
    /* backward scratch (a union: attention and FFN parts share memory) */
    float *dh, *dx;           /* [N, C] residual-stream gradient, normalised-input gradient */
    float *d_q, *d_K, *d_V, *d_kv, *d_ckv, *d_cn, *d_cqn, *d_cq, *d_att;
    float *d_gu, *d_act, *d_yperm, *d_xperm, *d_topk_w, *d_rlogits;
    float *d_mtp_cat, *d_mtp_e;   /* [N, 2C], [N, C] */
    float *d_qa, *d_Kl, *d_Vl, *d_olat, *d_lat; /* absorb: [N,H,kvr+dr] x2, [N,H,kvr] x2, [N,kvr+dr] */

    /* ---- inference steps against a KV cache (v3_model_step) ---- */
    const struct v3_kv_source *kv_src;  /* non-NULL during a step */
    int64_t step_Tk;

    /* ---- the last forward ---- */
    int64_t N;
    int64_t n_valid, n_valid_mtp;
    float inv_temp;           /* 1 / the batch's temperature (1 = none) */
    float *host_tok_weight;   /* (host) [max_tokens] the batch's token weights */
    int use_tok_weight;
    int64_t n_seq;
    int64_t *seq_off;         /* (host) [max_tokens + 1] document boundaries */
    double loss_main, loss_mtp, loss_balance, loss_total;
    int have_forward;
    /* expert load: rows per expert of each MoE layer (index = layer; NULL for dense layers) */
    int64_t **load_last;      /* (host) [n_layers_total][E] last forward */
    int64_t **load_accum;     /* (host) since the last v3_model_update_router_bias */
} v3_model;

/* Builds the parameter table (with MTP tensors when opt->mtp), allocates params, grads and the
 * activation arena for up to max_tokens tokens per forward. Parameters start at zero. */
int v3_model_init(v3_model *m, const v3_config *cfg, v3_kctx *ctx, int64_t max_tokens,
                  const v3_model_options *opt, v3_err *err);
void v3_model_free(v3_model *m);

/* Loads a Hugging Face checkpoint directory (v3_checkpoint_load into host memory, then to the
 * backend). Without MTP weights in the checkpoint (HF drops them) the MTP module keeps its
 * values; the checkpoint's MTP copies of embed/head are ignored (the main ones are used). */
int v3_model_load(v3_model *m, const char *dir, v3_err *err);
/* To be called by whoever writes m->params outside v3_model_load (the optimizer's callers): bumps
 * weights_version, so that the rollout engine repacks its copies before its next steps. */
void v3_model_weights_changed(v3_model *m);
/* Copies the main embed/lm_head into the MTP module's physical copies
 * (model.layers.<n>.embed_tokens / shared_head.head) so a saved checkpoint stays consistent. */
void v3_model_sync_mtp_copies(v3_model *m);

/* Runs the forward pass; *loss (may be NULL) = mean CE over non-ignored targets
 * + mtp_lambda · MTP loss + balance loss. Components stay in m->loss_*. */
int v3_model_forward(v3_model *m, const v3_batch *b, double *loss, v3_err *err);
/* Sets the token weights of the last forward (as v3_batch.token_weight would have), for losses
 * that need the forward's logprobs to compute them (GRPO). N must be the forward's token count. */
int v3_model_set_token_weight(v3_model *m, const float *w, int64_t N, v3_err *err);
/* Backward of the last forward's loss; parameter gradients accumulate into m->grads. */
int v3_model_backward(v3_model *m, v3_err *err);
/* v3_model_forward then v3_model_backward in one call, with the same results bit for bit (loss,
 * outputs, every gradient), for a loss whose gradient scale is known at forward time (mean CE,
 * or b->token_weight): the output head's gradient is computed in the forward's chunk loop from
 * the logits already there, so the head's GEMM runs 3 times instead of 4 (no recompute in
 * backward), and no [N, V] buffer is needed. Not for weights that need the forward's logprobs
 * (GRPO): those use v3_model_forward, v3_model_set_token_weight, v3_model_backward. */
int v3_model_forward_backward(v3_model *m, const v3_batch *b, double *loss, v3_err *err);
void v3_model_zero_grad(v3_model *m);

/* ---- inference steps against a KV cache (the rollout engine, rollout/) ----
 * A step runs N new tokens of any number of sequences whose earlier tokens live in a cache. For
 * every layer the model hands the new tokens' latent rows (lat_new [N, kvr+dr], backend memory:
 * exactly the per-token cache entry of model-spec §3) to src->keys, which stores them and returns
 * the rows the new tokens attend to ([Tk, kvr+dr], backend memory, one layout for all layers);
 * new token t attends to rows [kv_lo[t], kv_hi[t]). Attention runs in the absorbed form, so the
 * model must be initialised with opt.absorb. Per-token arithmetic is that of v3_model_forward
 * with absorb, so on a batch-invariant backend the logits are bit-identical to a full forward. */
typedef struct v3_kv_source {
    void *user;
    /* NULL on failure (after v3k_fail on the model's context) */
    const float *(*keys)(void *user, int layer, const float *lat_new, int64_t n_new);
    int64_t Tk;
    const int32_t *kv_lo, *kv_hi; /* (host) [N] */
} v3_kv_source;

typedef struct v3_step {
    int64_t N;                    /* new tokens (≤ max_tokens) */
    const int32_t *tokens;        /* (host) [N]; for an MTP step: the NEXT token of each row */
    const int32_t *positions;     /* (host) [N] RoPE positions */
    int64_t n_out;                /* rows whose logits are wanted */
    const int32_t *out_rows;      /* (host) [n_out] indices into the N new rows */
    float *logits;                /* (backend) [n_out, V] out */
    float *hidden;                /* main step: (backend, optional) [N, C] out, final-norm output
                                   * of every row; MTP step: (backend) [N, C] in, the main model's
                                   * final-norm output at each row's position */
    int64_t vocab;                /* logit columns: 0 = the whole vocabulary, else token ids
                                   * 0..vocab-1 only ([n_out, vocab] out), for MTP drafts */
} v3_step;

/* Main model over the new tokens. */
int v3_model_step(v3_model *m, const v3_step *s, const v3_kv_source *src, v3_err *err);
/* MTP module (opt.mtp) over rows (main hidden at position i, token i+1): logits predict i+2.
 * Its attention layer has its own cache: src->keys is called with layer = n_layer. */
int v3_model_mtp_step(v3_model *m, const v3_step *s, const v3_kv_source *src, v3_err *err);
/* log p(tokens[r]) under softmax(logits[rows[r]] / temperature[r]) for n entries, read from a
 * backend logits buffer [*, V] (left intact; rows NULL = row r), with the ops the trainer's loss
 * uses, so the result is bit-identical to the trainer's per-token logprob at that temperature.
 * temperature NULL, ≤ 0 or 1: none. */
int v3_model_logprobs(v3_model *m, const float *logits, const int32_t *rows, int64_t n,
                      const int32_t *tokens, const float *temperature, float *out, v3_err *err);

/* ---- sequence scores: HF's *ForSequenceClassification (model/score_head.c) ----
 * The main model (no MTP, no loss) over a packed batch, then a linear head on the final-norm
 * hidden state of chosen rows: scores[r, j] = final_norm(h)[out_rows[r]] · head[j], j < n_labels.
 * A reward model scores each document at its last (non-pad) token. The batch is packed as for
 * v3_model_forward (positions restart per document, attention never crosses doc_start); the
 * per-token arithmetic is that of v3_model_forward with the model's options. head is backend
 * memory [n_labels, C]: a reward model keeps score.weight in the first rows of the lm_head slot
 * (model/params.h: v3_params_build_score). Expert-load statistics are left untouched. */
typedef struct v3_score_batch {
    int64_t N;                  /* tokens (≤ max_tokens of init) */
    const int32_t *tokens;      /* (host) [N] */
    const int32_t *positions;   /* (host) [N] */
    const int32_t *doc_start;   /* (host) [N] */
    int64_t n_out;              /* rows to score, 1..N */
    const int32_t *out_rows;    /* (host) [n_out] */
    const float *head;          /* (backend) [n_labels, C] */
    int64_t n_labels;
    float *scores;              /* (host) [n_out, n_labels] out */
} v3_score_batch;

int v3_model_score(v3_model *m, const v3_score_batch *b, v3_err *err);

/* Rows routed to each expert of MoE layer `layer` (NULL for a dense layer): in the last forward,
 * and accumulated since the last bias update. Arrays of n_routed_experts. */
const int64_t *v3_model_expert_load(const v3_model *m, int layer);
const int64_t *v3_model_expert_load_accum(const v3_model *m, int layer);
/* Aux-loss-free balancing (model-spec §7), for the trainer to call after each optimizer step:
 * b_e += gamma · sign(mean_load − load_e) per MoE layer over the loads accumulated since the last
 * call, then the accumulators reset. gamma = 0 only resets. */
void v3_model_update_router_bias(v3_model *m, float gamma);

/* Prints the activation plan (arena breakdown) and the weight/gradient sizes. */
void v3_model_print_memory(const v3_model *m, FILE *f);
/* Bytes of params + grads + arena on the backend. */
size_t v3_model_device_bytes(const v3_model *m);

#endif
