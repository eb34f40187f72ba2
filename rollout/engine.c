/* engine.c — the rollout engine's step loop: scheduling (continuous batching, prefix sharing,
 * preemption), the model step against the paged cache, sampling, trainer-exact logprobs and MTP
 * drafting. See engine.h for the contract; engine_seq.c holds a sample's bookkeeping. */
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_seq.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

v3_engine_options v3_engine_default_options(void) {
    v3_engine_options o = {0};
    o.block_size = 16;
    o.max_live_tokens = 65536;
    o.max_step_tokens = 0;
    o.max_seqs = 256;
    o.mtp_draft_vocab = 16384;
    o.pack_weights = 1;
    o.pack_bf16 = 1;
    return o;
}

void v3_engine_free(v3_engine *e) {
    if (!e || !e->m) return;
    v3_kctx *c = e->m->ctx;
    v3_kvcache_free(&e->kv);
    v3_sample_scratch_free(&e->sc);
    c->be->free(c, e->d_logits);
    c->be->free(c, e->d_hidden);
    c->be->free(c, e->d_mtp_hidden);
    v3_wpack_set_free(&e->wp, c);
    c->be->free(c, e->Kbuf);
    c->be->free(c, e->d_widx);
    c->be->free(c, e->d_gidx);
    c->be->free(c, e->d_hrows);
    if (!c->be->host_visible) free(e->h_logits);
    free(e->tokens);
    free(e->positions);
    free(e->kv_lo);
    free(e->kv_hi);
    free(e->widx);
    free(e->out_rows);
    free(e->hrows);
    free(e->gidx);
    free(e->lp_tok);
    free(e->lp_row);
    free(e->lp_temp);
    free(e->lp_val);
    memset(e, 0, sizeof *e);
}

int v3_engine_init(v3_engine *e, v3_model *m, const v3_engine_options *o, v3_err *err) {
    memset(e, 0, sizeof *e);
    e->o = o ? *o : v3_engine_default_options();
    if (!m->opt.absorb)
        return v3_errf(err, V3_EINVAL, "engine: the model must be initialised with absorb = 1");
    if (e->o.mtp && !m->opt.mtp)
        return v3_errf(err, V3_EINVAL, "engine: MTP decoding needs the model's MTP module (opt.mtp)");
    if (e->o.block_size < 1 || e->o.max_live_tokens < e->o.block_size || e->o.max_seqs < 1 ||
        e->o.max_step_tokens < 0)
        return v3_errf(err, V3_EINVAL, "engine: block_size %lld, max_live_tokens %lld, max_seqs %lld",
                       (long long)e->o.block_size, (long long)e->o.max_live_tokens,
                       (long long)e->o.max_seqs);
    if (e->o.mtp_draft_vocab < 0)
        return v3_errf(err, V3_EINVAL, "engine: mtp_draft_vocab %lld (0 = the whole vocabulary)",
                       (long long)e->o.mtp_draft_vocab);
    e->m = m;
    v3_kctx *c = m->ctx;
    const v3_config *cfg = &m->cfg;
    e->V = cfg->vocab_size;
    e->Vd = e->o.mtp_draft_vocab > 0 && e->o.mtp_draft_vocab < e->V ? e->o.mtp_draft_vocab : e->V;
    e->C = cfg->hidden_size;
    e->width = cfg->kv_lora_rank + cfg->qk_rope_head_dim;
    e->max_step = e->o.max_step_tokens > 0 && e->o.max_step_tokens < m->max_tokens
                      ? e->o.max_step_tokens : m->max_tokens;
    e->max_out = e->max_step < 2 * e->o.max_seqs ? e->max_step : 2 * e->o.max_seqs;
    int64_t nb = v3_kv_blocks_for(&(v3_kvcache){.block_size = e->o.block_size}, e->o.max_live_tokens);
    int rc = v3_kvcache_init(&e->kv, c, cfg->n_layer + (e->o.mtp ? 1 : 0), e->width,
                             e->o.block_size, nb, err);
    if (rc) return rc;
    if ((rc = v3_sample_scratch_init(&e->sc, e->V, err))) goto fail;
    size_t S = (size_t)e->max_step;
    e->d_logits = c->be->alloc(c, (size_t)(e->max_out * e->V) * sizeof(float));
    /* the host reads logits only (sampler, on_logits, MTP argmax): where the backend's memory is
     * the host's, the step's logits are read where the model wrote them, not copied (132 MB a
     * step at 256 rows of a 129,280-token vocabulary) */
    e->h_logits = c->be->host_visible ? e->d_logits : malloc((size_t)(e->max_out * e->V) * sizeof(float));
    e->d_hidden = c->be->alloc(c, S * (size_t)e->C * sizeof(float));
    e->d_widx = c->be->alloc(c, S * sizeof(int32_t));
    e->d_hrows = c->be->alloc(c, S * sizeof(int32_t));
    e->tokens = malloc(S * sizeof(int32_t));
    e->positions = malloc(S * sizeof(int32_t));
    e->kv_lo = malloc(S * sizeof(int32_t));
    e->kv_hi = malloc(S * sizeof(int32_t));
    e->widx = malloc(S * sizeof(int32_t));
    e->out_rows = malloc(S * sizeof(int32_t));
    e->hrows = malloc(S * sizeof(int32_t));
    if (!e->d_logits || !e->h_logits || !e->d_hidden || !e->d_widx || !e->d_hrows || !e->tokens ||
        !e->positions || !e->kv_lo || !e->kv_hi || !e->widx || !e->out_rows || !e->hrows)
        goto oom;
    if (e->o.mtp && !(e->d_mtp_hidden = c->be->alloc(c, S * (size_t)e->C * sizeof(float)))) goto oom;
    if (e->o.pack_weights && c->be->pack_nt && (rc = v3_wpack_set_init(&e->wp, m, err))) {
        v3_err_prefix(err, "engine");
        goto fail;
    }
    return V3_OK;
oom:
    rc = v3_errf(err, V3_ENOMEM, "engine: cannot allocate step buffers (%lld tokens, %lld logits rows)",
                 (long long)e->max_step, (long long)e->max_out);
fail:
    v3_engine_free(e);
    return rc;
}

/* ---- per-step buffers that grow with the context ---- */
static int ensure_keys(v3_engine *e, int64_t Tk, v3_err *err) {
    v3_kctx *c = e->m->ctx;
    if (Tk <= e->Kcap) return V3_OK;
    int64_t cap = e->Kcap ? e->Kcap : 1024;
    while (cap < Tk) cap *= 2;
    c->be->free(c, e->Kbuf);
    c->be->free(c, e->d_gidx);
    free(e->gidx);
    e->Kbuf = c->be->alloc(c, (size_t)(cap * e->width) * sizeof(float));
    e->d_gidx = c->be->alloc(c, (size_t)cap * sizeof(int32_t));
    e->gidx = malloc((size_t)cap * sizeof(int32_t));
    if (!e->Kbuf || !e->d_gidx || !e->gidx) {
        e->Kcap = 0;
        return v3_errf(err, V3_ENOMEM, "engine: cannot allocate keys for %lld cached tokens", (long long)cap);
    }
    e->Kcap = cap;
    return V3_OK;
}

/* ---- the key source handed to the model ---- */
typedef struct key_src {
    v3_kv_source src;
    v3_engine *e;
    int64_t n_new, Tk;
} key_src;

static const float *keys_cb(void *user, int layer, const float *lat_new, int64_t n_new) {
    key_src *k = user;
    v3_engine *e = k->e;
    v3_kctx *c = e->m->ctx;
    if (layer < 0 || layer >= e->kv.n_layers || n_new != k->n_new) {
        v3k_fail(c, V3_EINVAL, "engine: key request for layer %d with %lld rows", layer, (long long)n_new);
        return NULL;
    }
    /* the new rows go to their slots first: they are part of their own context */
    v3k(c, scatter_rows, e->kv.pool[layer], lat_new, e->d_widx, n_new, e->width);
    v3k(c, gather_rows, e->Kbuf, e->kv.pool[layer], e->d_gidx, k->Tk, e->width);
    return e->Kbuf;
}

/* One planned piece of work: seq feeds tokens at positions [a, a + k) (the last one the MTP
 * draft when draft), writing their cache rows. */
typedef struct plan {
    v3_gen_seq *s;
    int64_t a, k;
    int draft;
    int64_t row0;      /* first row of this seq in the step */
    int64_t out0;      /* first logits row, -1 if none */
    int64_t valid;     /* rows whose cache entries hold after verification */
} plan;

typedef struct gen_state {
    v3_gen_seq *seqs;
    int64_t n_seqs;
    v3_gen_seq **run;  /* running sequences in admission order */
    int64_t n_run;
    plan *plans;
    int64_t n_plans;
    int64_t admit_counter;
    double t0;
    int64_t *lp_seq, *lp_idx; /* logprob requests of the step: which output entry */
    int64_t n_lp, lp_cap;
} gen_state;

static void run_remove(gen_state *g, v3_gen_seq *s) {
    int64_t j = 0;
    for (int64_t i = 0; i < g->n_run; i++)
        if (g->run[i] != s) g->run[j++] = g->run[i];
    g->n_run = j;
}

static void preempt(v3_engine *e, gen_state *g, v3_gen_seq *s) {
    v3_kv_table_free(&e->kv, &s->tab);
    s->n_cached = 0;
    s->has_draft = 0;
    s->state = SEQ_WAIT;
    s->out->preemptions++;
    e->stats.preemptions++;
    run_remove(g, s);
}

/* Reserves cache for s to hold [0, a+k) writing from a; preempts the latest-admitted running
 * sequences admitted after s (never ones already planned) until it fits. Returns 0 on success,
 * 1 when s itself had to give way. */
static int reserve_or_preempt(v3_engine *e, gen_state *g, v3_gen_seq *s, int64_t a, int64_t k) {
    for (;;) {
        if (v3_kv_table_reserve(&e->kv, &s->tab, a + k, a) == V3_OK) return 0;
        v3_gen_seq *victim = g->n_run > 0 ? g->run[g->n_run - 1] : NULL;
        int planned = 0;
        for (int64_t i = 0; victim && i < g->n_plans; i++) planned |= g->plans[i].s == victim;
        if (!victim || victim == s || planned) {
            if (s->state == SEQ_RUN) preempt(e, g, s);
            return 1;
        }
        preempt(e, g, victim);
    }
}

static void add_plan(gen_state *g, v3_gen_seq *s, int64_t a, int64_t k, int draft) {
    plan *p = &g->plans[g->n_plans++];
    memset(p, 0, sizeof *p);
    p->s = s, p->a = a, p->k = k, p->draft = draft, p->out0 = -1;
}

/* logits rows a plan needs: the last known token's (+ the draft's) when it feeds through it */
static int64_t outs_needed(const v3_gen_seq *s, int64_t a, int64_t k, int draft) {
    return a + k - draft == s->len ? 1 + draft : 0;
}

static int schedule(v3_engine *e, gen_state *g) {
    int64_t budget = e->max_step, outs = 0;
    g->n_plans = 0;
    /* running sequences first, in admission order */
    for (int64_t i = 0; i < g->n_run && budget > 0; i++) {
        v3_gen_seq *s = g->run[i];
        int64_t a = s->n_cached, k = s->len - a;
        int draft = s->has_draft && k == 1 && budget >= 2 && s->len < s->cap;
        if (draft) k = 2;
        if (k > budget) k = budget;
        int64_t need = outs_needed(s, a, k, draft);
        if (outs + need > e->max_out) continue; /* no logits rows left: next step */
        outs += need;
        if (reserve_or_preempt(e, g, s, a, k)) {
            i--; /* s left the running list */
            continue;
        }
        add_plan(g, s, a, k, draft);
        budget -= k;
    }
    /* then waiting sequences join, in request order, while cache and budget allow */
    for (int64_t i = 0; i < g->n_seqs && budget > 0 && g->n_run < e->o.max_seqs; i++) {
        v3_gen_seq *s = &g->seqs[i];
        if (s->state != SEQ_WAIT) continue;
        int64_t k = s->len < budget ? s->len : budget;
        int64_t need = outs_needed(s, 0, k, 0);
        if (outs + need > e->max_out) break;
        outs += need;
        if (v3_kv_table_reserve(&e->kv, &s->tab, k, 0) != V3_OK) {
            v3_kv_table_free(&e->kv, &s->tab);
            break;
        }
        s->state = SEQ_RUN;
        s->admitted = g->admit_counter++;
        g->run[g->n_run++] = s;
        add_plan(g, s, 0, k, 0);
        budget -= k;
    }
    return (int)g->n_plans;
}

/* Fills the step arrays for the plans (or, with mtp, for their validated rows). */
static int build_step(v3_engine *e, gen_state *g, int mtp, int64_t *N_out, int64_t *n_out,
                      int64_t *Tk_out, v3_err *err) {
    int64_t N = 0, Tk = 0, no = 0;
    for (int64_t i = 0; i < g->n_plans; i++) {
        plan *p = &g->plans[i];
        if (mtp && (!p->s->use_mtp || p->s->state != SEQ_RUN)) continue;
        int64_t rows = mtp ? p->valid : p->k;
        Tk += p->a + rows;
    }
    int rc = ensure_keys(e, Tk, err);
    if (rc) return rc;
    Tk = 0;
    for (int64_t i = 0; i < g->n_plans; i++) {
        plan *p = &g->plans[i];
        v3_gen_seq *s = p->s;
        if (mtp && (!s->use_mtp || s->state != SEQ_RUN)) continue;
        int64_t rows = mtp ? p->valid : p->k, base = Tk;
        for (int64_t pos = 0; pos < p->a + rows; pos++) e->gidx[Tk++] = v3_kv_slot(&e->kv, &s->tab, pos);
        if (!mtp) p->row0 = N;
        for (int64_t j = 0; j < rows; j++) {
            int64_t pos = p->a + j;
            if (mtp) {
                e->tokens[N] = s->toks[pos + 1]; /* MTP row at pos reads token pos+1 */
                e->hrows[N] = (int32_t)(p->row0 + j);
            } else {
                e->tokens[N] = p->draft && j == rows - 1 ? s->draft : s->toks[pos];
            }
            e->positions[N] = (int32_t)pos;
            e->kv_lo[N] = (int32_t)base;
            e->kv_hi[N] = (int32_t)(base + pos + 1);
            e->widx[N] = v3_kv_slot(&e->kv, &s->tab, pos);
            N++;
        }
        if (mtp) {
            /* draft from the last row when it is the newest known token's predecessor */
            if (p->a + rows == s->len - 1) e->out_rows[no++] = (int32_t)(N - 1);
        } else if (p->a + p->k - p->draft == s->len) {
            p->out0 = no;
            for (int64_t j = p->k - 1 - p->draft; j < p->k; j++) e->out_rows[no++] = (int32_t)(p->row0 + j);
        }
    }
    *N_out = N, *n_out = no, *Tk_out = Tk;
    return V3_OK;
}

static int run_model(v3_engine *e, int64_t N, int64_t n_out, int64_t Tk, int mtp, v3_err *err) {
    v3_model *m = e->m;
    v3_kctx *c = m->ctx;
    c->be->to_device(c, e->d_widx, e->widx, (size_t)N * sizeof(int32_t));
    c->be->to_device(c, e->d_gidx, e->gidx, (size_t)Tk * sizeof(int32_t));
    key_src ks = {{0}, e, N, Tk};
    ks.src.user = &ks;
    ks.src.keys = keys_cb;
    ks.src.Tk = Tk;
    ks.src.kv_lo = e->kv_lo;
    ks.src.kv_hi = e->kv_hi;
    v3_step st = {N, e->tokens, e->positions, n_out, e->out_rows, e->d_logits, NULL, 0};
    int rc;
    if (mtp) {
        c->be->to_device(c, e->d_hrows, e->hrows, (size_t)N * sizeof(int32_t));
        v3k(c, gather_rows, e->d_mtp_hidden, e->d_hidden, e->d_hrows, N, e->C);
        st.hidden = e->d_mtp_hidden;
        st.vocab = e->Vd < e->V ? e->Vd : 0;
        rc = v3_model_mtp_step(m, &st, &ks.src, err);
    } else {
        st.hidden = e->o.mtp ? e->d_hidden : NULL;
        rc = v3_model_step(m, &st, &ks.src, err);
    }
    if (rc) return rc;
    if (n_out > 0 && !c->be->host_visible)
        c->be->to_host(c, e->h_logits, e->d_logits,
                       (size_t)(n_out * (mtp ? e->Vd : e->V)) * sizeof(float));
    return V3_OK;
}

static int lp_request(v3_engine *e, gen_state *g, v3_gen_seq *s, int64_t row, int32_t tok, v3_err *err) {
    if (g->n_lp == g->lp_cap) {
        int64_t cap = g->lp_cap ? 2 * g->lp_cap : 256;
        int64_t *a = realloc(g->lp_seq, (size_t)cap * sizeof(int64_t));
        if (a) g->lp_seq = a;
        int64_t *b = realloc(g->lp_idx, (size_t)cap * sizeof(int64_t));
        if (b) g->lp_idx = b;
        int32_t *c = realloc(e->lp_tok, (size_t)cap * sizeof(int32_t));
        if (c) e->lp_tok = c;
        int32_t *d = realloc(e->lp_row, (size_t)cap * sizeof(int32_t));
        if (d) e->lp_row = d;
        float *f = realloc(e->lp_temp, (size_t)cap * sizeof(float));
        if (f) e->lp_temp = f;
        float *h = realloc(e->lp_val, (size_t)cap * sizeof(float));
        if (h) e->lp_val = h;
        if (!a || !b || !c || !d || !f || !h) return v3_errf(err, V3_ENOMEM, "engine: out of memory");
        g->lp_cap = cap;
    }
    g->lp_seq[g->n_lp] = s - g->seqs;
    g->lp_idx[g->n_lp] = s->out->n - 1;
    e->lp_tok[g->n_lp] = tok;
    e->lp_row[g->n_lp] = (int32_t)row;
    float T = s->r->sampling.temperature;
    e->lp_temp[g->n_lp] = T > 0.0f ? T : 1.0f;
    g->n_lp++;
    return V3_OK;
}

/* Samples s's next token from logits row `row`, records it. */
static int sample_into(v3_engine *e, gen_state *g, v3_gen_seq *s, int64_t row, int32_t *tok,
                       v3_err *err) {
    v3_sampled o;
    if (e->o.on_logits) e->o.on_logits(e->o.logits_user, s->out, s->out->n, e->h_logits + row * e->V, e->V);
    double t = now_s();
    int rc = v3_sample_token(e->h_logits + row * e->V, e->V, &s->r->sampling, &s->rng, &e->sc, &o, err);
    e->stats.t_sample += now_s() - t;
    if (rc) return rc;
    *tok = o.token;
    s->out->entropy[s->out->n] = (float)o.entropy;
    if ((rc = v3_gen_seq_push(s, e, o.token, (float)o.logprob, now_s() - g->t0, err))) return rc;
    e->stats.generated++;
    return lp_request(e, g, s, row, o.token, err);
}

/* After the main step: sampling, sharing with followers, draft verification. */
static int consume(v3_engine *e, gen_state *g, v3_err *err) {
    int rc;
    for (int64_t i = 0; i < g->n_plans; i++) {
        plan *p = &g->plans[i];
        v3_gen_seq *s = p->s;
        int64_t real = p->k - p->draft;
        s->n_cached = p->a + real;
        p->valid = real;
        if (p->out0 < 0) continue; /* a prefill chunk: nothing to sample yet */
        if (s->leader) {
            /* the other samples of this request start from this prompt and these logits */
            s->leader = 0;
            for (int64_t j = 0; j < g->n_seqs; j++) {
                v3_gen_seq *f = &g->seqs[j];
                if (f->state != SEQ_FOLLOW || f->req != s->req) continue;
                if ((rc = v3_kv_table_share(&e->kv, &f->tab, &s->tab, s->prompt_len, err))) return rc;
                f->n_cached = s->prompt_len;
                f->state = SEQ_RUN;
                f->admitted = g->admit_counter++;
                g->run[g->n_run++] = f;
                e->stats.prefix_shared_tokens += s->prompt_len;
                int32_t ft;
                if ((rc = sample_into(e, g, f, p->out0, &ft, err))) return rc;
            }
        }
        int32_t tok;
        if ((rc = sample_into(e, g, s, p->out0, &tok, err))) return rc;
        if (p->draft) {
            e->stats.mtp_drafted++;
            if (tok == s->draft && s->state == SEQ_RUN) {
                /* the draft was right: its row is valid and its logits give one more token */
                e->stats.mtp_accepted++;
                s->n_cached++;
                p->valid++;
                if ((rc = sample_into(e, g, s, p->out0 + 1, &tok, err))) return rc;
            }
        }
        s->has_draft = 0;
    }
    return V3_OK;
}

static int fill_logprobs(v3_engine *e, gen_state *g, v3_err *err) {
    float *val = e->lp_val;
    int64_t ch = e->m->max_tokens;
    for (int64_t i0 = 0; i0 < g->n_lp; i0 += ch) {
        int64_t n = g->n_lp - i0 < ch ? g->n_lp - i0 : ch;
        int rc = v3_model_logprobs(e->m, e->d_logits, e->lp_row + i0, n, e->lp_tok + i0,
                                   e->lp_temp + i0, val + i0, err);
        if (rc) return rc;
        int all_t1 = 1;
        for (int64_t i = i0; i < i0 + n; i++) {
            g->seqs[g->lp_seq[i]].out->logprob_temp[g->lp_idx[i]] = val[i];
            all_t1 &= e->lp_temp[i] == 1.0f;
        }
        /* at T = 1 the raw logprob is the same computation: skip the second pass */
        if (!all_t1 && (rc = v3_model_logprobs(e->m, e->d_logits, e->lp_row + i0, n, e->lp_tok + i0,
                                               NULL, val + i0, err)))
            return rc;
        for (int64_t i = i0; i < i0 + n; i++)
            g->seqs[g->lp_seq[i]].out->logprob_raw[g->lp_idx[i]] = val[i];
    }
    g->n_lp = 0;
    return V3_OK;
}

static int32_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

/* The MTP module over the rows just validated; drafts for sequences that sampled. */
static int mtp_step(v3_engine *e, gen_state *g, v3_err *err) {
    int64_t N, n_out, Tk;
    int rc = build_step(e, g, 1, &N, &n_out, &Tk, err);
    if (rc || N == 0) return rc;
    double t = now_s();
    if ((rc = run_model(e, N, n_out, Tk, 1, err))) return rc;
    e->stats.t_mtp += now_s() - t;
    /* out rows were emitted in plan order, one per drafting sequence */
    int64_t r = 0;
    for (int64_t i = 0; i < g->n_plans; i++) {
        plan *p = &g->plans[i];
        v3_gen_seq *s = p->s;
        if (!s->use_mtp || s->state != SEQ_RUN || p->a + p->valid != s->len - 1) continue;
        s->draft = argmax(e->h_logits + r * e->Vd, e->Vd);
        s->has_draft = 1;
        r++;
    }
    return V3_OK;
}

static int check_requests(const v3_engine *e, const v3_gen_request *reqs, int n_reqs, v3_err *err) {
    int64_t cap_tokens = e->kv.n_blocks * e->kv.block_size;
    for (int i = 0; i < n_reqs; i++) {
        const v3_gen_request *r = &reqs[i];
        if (!r->prompt || r->prompt_len < 1 || r->n < 1 || r->max_new_tokens < 1)
            return v3_errf(err, V3_EINVAL, "request %d: needs a prompt, n ≥ 1 and max_new_tokens ≥ 1", i);
        for (int64_t t = 0; t < r->prompt_len; t++)
            if (r->prompt[t] < 0 || r->prompt[t] >= e->V)
                return v3_errf(err, V3_ERANGE, "request %d: prompt token %lld is %d, outside the vocabulary",
                               i, (long long)t, r->prompt[t]);
        if (r->prompt_len + r->max_new_tokens + 1 > cap_tokens)
            return v3_errf(err, V3_ERANGE,
                           "request %d: %lld prompt + %lld new tokens exceed the cache (%lld tokens); "
                           "raise max_live_tokens", i, (long long)r->prompt_len,
                           (long long)r->max_new_tokens, (long long)cap_tokens);
        if (r->n_stop > 0 && !e->o.tok)
            return v3_errf(err, V3_EINVAL, "request %d: stop strings need a tokenizer", i);
        v3_err e2;
        if (v3_sampling_check(&r->sampling, &e2))
            return v3_errf(err, V3_EINVAL, "request %d: %s", i, e2.msg);
    }
    return V3_OK;
}

int v3_engine_generate(v3_engine *e, const v3_gen_request *reqs, int n_reqs, v3_gen_output **out,
                       int64_t *n_out, v3_err *err) {
    *out = NULL;
    *n_out = 0;
    int rc = check_requests(e, reqs, n_reqs, err);
    if (rc) return rc;
    gen_state g = {0};
    g.t0 = now_s();
    if (e->wp.n) { /* the weights may have changed since the last call */
        int did = 0;
        if ((rc = v3_wpack_set_refresh(&e->wp, e->m, e->o.pack_bf16, &did, err))) return rc;
        e->stats.packs += did;
        e->stats.t_pack += now_s() - g.t0;
        e->m->ctx->wpacks = &e->wp.view; /* until the call returns */
    }
    for (int i = 0; i < n_reqs; i++) g.n_seqs += reqs[i].n;
    v3_gen_output *outs = calloc((size_t)(g.n_seqs ? g.n_seqs : 1), sizeof *outs);
    g.seqs = calloc((size_t)(g.n_seqs ? g.n_seqs : 1), sizeof *g.seqs);
    g.run = calloc((size_t)(g.n_seqs ? g.n_seqs : 1), sizeof *g.run);
    g.plans = calloc((size_t)(g.n_seqs ? g.n_seqs : 1), sizeof *g.plans);
    if (!outs || !g.seqs || !g.run || !g.plans) {
        rc = v3_errf(err, V3_ENOMEM, "engine: out of memory for %lld samples", (long long)g.n_seqs);
        goto done;
    }
    for (int i = 0, k = 0; i < n_reqs; i++)
        for (int s = 0; s < reqs[i].n; s++, k++)
            if ((rc = v3_gen_seq_init(&g.seqs[k], e, &reqs[i], i, s, &outs[k], err))) goto done;

    int64_t n_done = 0;
    while (n_done < g.n_seqs) {
        if (schedule(e, &g) == 0) {
            rc = v3_errf(err, V3_ENOMEM, "engine: no sequence fits in the cache (%lld blocks of %lld)",
                         (long long)e->kv.n_blocks, (long long)e->kv.block_size);
            goto done;
        }
        int64_t N, no, Tk;
        if ((rc = build_step(e, &g, 0, &N, &no, &Tk, err))) goto done;
        double t = now_s();
        if ((rc = run_model(e, N, no, Tk, 0, err))) goto done;
        e->stats.t_model += now_s() - t;
        e->stats.steps++;
        for (int64_t i = 0; i < g.n_plans; i++) { /* decode = feeding generated tokens only */
            if (g.plans[i].a < g.plans[i].s->prompt_len)
                e->stats.prefill_tokens += g.plans[i].k;
            else
                e->stats.decode_tokens += g.plans[i].k;
        }
        if ((rc = consume(e, &g, err))) goto done;
        if ((rc = fill_logprobs(e, &g, err))) goto done;
        if (e->o.mtp && (rc = mtp_step(e, &g, err))) goto done;
        n_done = 0;
        for (int64_t i = 0; i < g.n_seqs; i++) {
            if (g.seqs[i].state == SEQ_DONE) {
                n_done++;
                run_remove(&g, &g.seqs[i]);
            }
        }
        if (e->kv.peak_used > e->stats.peak_blocks) e->stats.peak_blocks = e->kv.peak_used;
    }
    e->stats.t_total += now_s() - g.t0;
done:
    e->m->ctx->wpacks = NULL;
    for (int64_t i = 0; g.seqs && i < g.n_seqs; i++) v3_gen_seq_free(&g.seqs[i], &e->kv);
    free(g.seqs);
    free(g.run);
    free(g.plans);
    free(g.lp_seq);
    free(g.lp_idx);
    if (rc) {
        v3_gen_outputs_free(outs, g.n_seqs);
        return rc;
    }
    *out = outs;
    *n_out = g.n_seqs;
    return V3_OK;
}
