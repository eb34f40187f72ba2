/* engine_seq.h — one generated sample inside the engine (private to rollout/engine*.c): its
 * tokens, cache table, sampling stream, text/stop state and the output being filled. */
#ifndef V3_ENGINE_SEQ_H
#define V3_ENGINE_SEQ_H

#include "engine.h"
#include "stop.h"

enum { SEQ_WAIT, SEQ_FOLLOW, SEQ_RUN, SEQ_DONE };

typedef struct v3_gen_seq {
    int state;
    int req, sample;
    const v3_gen_request *r;
    int32_t *toks;             /* prompt then generated tokens */
    int64_t len, cap, prompt_len;
    int64_t n_cached;          /* positions [0, n_cached) have cache rows (main and MTP layers) */
    v3_kv_table tab;
    v3_rng rng;
    int leader;                /* sample 0 of a request with n > 1 that has not shared yet */
    int use_mtp;
    int has_draft;
    int32_t draft;
    int64_t admitted;          /* admission order (preemption picks the latest) */
    /* text */
    v3_tok_stream ds;
    v3_stop stop;
    size_t tcap, emitted;
    v3_gen_output *out;
} v3_gen_seq;

/* Sets up sample `sample` of request `req` (output slot o). */
int v3_gen_seq_init(v3_gen_seq *s, const v3_engine *e, const v3_gen_request *r, int req,
                    int sample, v3_gen_output *o, v3_err *err);
void v3_gen_seq_free(v3_gen_seq *s, v3_kvcache *kv);

/* Appends a generated token with its logprobs; decides whether the sample is finished
 * (stop id, stop string, length) and streams the newly safe text. Returns V3_OK or an error. */
int v3_gen_seq_push(v3_gen_seq *s, const v3_engine *e, int32_t tok, float lp, double t_now,
                    v3_err *err);
/* Marks the sample finished: final text, stream callback, blocks released. */
int v3_gen_seq_finish(v3_gen_seq *s, v3_engine *e, int finish, double t_now, v3_err *err);

#endif
