/* engine_seq.c — a sample's bookkeeping: tokens, outputs, incremental detokenisation, stop
 * ids/strings and streaming. The model-facing work is in engine.c. */
#include "engine_seq.h"

#include <stdlib.h>
#include <string.h>

const char *v3_finish_name(int finish) {
    return finish == V3_FINISH_STOP ? "stop" : finish == V3_FINISH_LENGTH ? "length" : "none";
}

void v3_gen_outputs_free(v3_gen_output *o, int64_t n) {
    if (!o) return;
    for (int64_t i = 0; i < n; i++) {
        free(o[i].ids);
        free(o[i].logprob);
        free(o[i].logprob_temp);
        free(o[i].logprob_raw);
        free(o[i].entropy);
        free(o[i].text);
    }
    free(o);
}

int v3_gen_seq_init(v3_gen_seq *s, const v3_engine *e, const v3_gen_request *r, int req,
                    int sample, v3_gen_output *o, v3_err *err) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->req = req;
    s->sample = sample;
    s->out = o;
    o->request = req;
    o->sample = sample;
    o->stop_string = -1;
    s->prompt_len = r->prompt_len;
    s->cap = r->prompt_len + r->max_new_tokens + 2;
    s->toks = malloc((size_t)s->cap * sizeof(int32_t));
    int64_t mn = r->max_new_tokens;
    o->ids = malloc((size_t)mn * sizeof(int32_t));
    o->logprob = malloc((size_t)mn * sizeof(float));
    o->logprob_temp = malloc((size_t)mn * sizeof(float));
    o->logprob_raw = malloc((size_t)mn * sizeof(float));
    o->entropy = malloc((size_t)mn * sizeof(float));
    if (!s->toks || !o->ids || !o->logprob || !o->logprob_temp || !o->logprob_raw || !o->entropy)
        return v3_errf(err, V3_ENOMEM, "engine: out of memory for request %d", req);
    memcpy(s->toks, r->prompt, (size_t)r->prompt_len * sizeof(int32_t));
    s->len = r->prompt_len;
    v3_sample_rng(&s->rng, r->seed, (uint64_t)req, (uint64_t)sample);
    s->leader = r->n > 1 && sample == 0;
    s->state = r->n > 1 && sample > 0 ? SEQ_FOLLOW : SEQ_WAIT;
    s->use_mtp = e->o.mtp && r->n == 1 && r->sampling.temperature == 0.0f;
    if (e->o.tok) {
        v3_tok_stream_init(&s->ds, e->o.tok, 1);
        int rc = v3_stop_init(&s->stop, r->stop, r->n_stop, err);
        if (rc) return rc;
        s->tcap = 64;
        o->text = malloc(s->tcap);
        if (!o->text) return v3_errf(err, V3_ENOMEM, "engine: out of memory");
        o->text[0] = 0;
    }
    return V3_OK;
}

void v3_gen_seq_free(v3_gen_seq *s, v3_kvcache *kv) {
    v3_kv_table_free(kv, &s->tab);
    v3_stop_free(&s->stop);
    free(s->toks);
    memset(s, 0, sizeof *s);
}

static void stream(const v3_engine *e, v3_gen_seq *s, size_t upto, int done) {
    v3_gen_output *o = s->out;
    if (upto < s->emitted) upto = s->emitted;
    if (e->o.stream && (upto > s->emitted || done))
        e->o.stream(e->o.stream_user, o, o->text ? o->text + s->emitted : "", upto - s->emitted, done);
    s->emitted = upto;
}

/* appends decoded text of tok; returns 1 when a stop string completed */
static int push_text(v3_gen_seq *s, const v3_engine *e, int32_t tok, v3_err *err, int *rc) {
    v3_gen_output *o = s->out;
    size_t before = o->text_len;
    *rc = V3_OK;
    /* the model's vocabulary can be larger than the tokenizer's (DeepSeek-V3: 129,280 vs 128,815
     * ids): such an id has no text, as HF's decode drops it */
    if (tok >= v3_tok_n_ids(e->o.tok)) return 0;
    *rc = v3_tok_stream_push(&s->ds, tok, &o->text, &o->text_len, &s->tcap, err);
    if (*rc) return 0;
    v3_stop_status st;
    v3_stop_append(&s->stop, o->text + before, o->text_len - before, &st);
    if (st.stopped) {
        o->text_len = (size_t)st.cut;
        o->text[o->text_len] = 0;
        o->stop_string = st.which;
        return 1;
    }
    stream(e, s, (size_t)st.safe, 0);
    return 0;
}

int v3_gen_seq_push(v3_gen_seq *s, const v3_engine *e, int32_t tok, float lp, double t_now,
                    v3_err *err) {
    v3_gen_output *o = s->out;
    if (o->n == 0) o->t_first_token = t_now;
    o->ids[o->n] = tok;
    o->logprob[o->n] = lp;
    o->n++;
    s->toks[s->len++] = tok;
    const v3_gen_request *r = s->r;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (tok == r->stop_ids[i]) return v3_gen_seq_finish(s, (v3_engine *)e, V3_FINISH_STOP, t_now, err);
    if (e->o.tok) {
        int rc = 0;
        if (push_text(s, e, tok, err, &rc)) return v3_gen_seq_finish(s, (v3_engine *)e, V3_FINISH_STOP, t_now, err);
        if (rc) return rc;
    }
    if (o->n >= r->max_new_tokens) return v3_gen_seq_finish(s, (v3_engine *)e, V3_FINISH_LENGTH, t_now, err);
    return V3_OK;
}

int v3_gen_seq_finish(v3_gen_seq *s, v3_engine *e, int finish, double t_now, v3_err *err) {
    v3_gen_output *o = s->out;
    o->finish = finish;
    o->t_done = t_now;
    s->state = SEQ_DONE;
    v3_kv_table_free(&e->kv, &s->tab);
    if (e->o.tok) {
        if (o->stop_string < 0) {
            int rc = v3_tok_stream_flush(&s->ds, &o->text, &o->text_len, &s->tcap, err);
            if (rc) return rc;
        }
        stream(e, s, o->text_len, 1);
    } else if (e->o.stream) {
        e->o.stream(e->o.stream_user, o, "", 0, 1);
    }
    return V3_OK;
}
