/* test_engine.c — the rollout engine against the model's own full forward, on the golden tiny
 * models (tests/golden/data/model_*: random HF checkpoints, MoE, q_lora, YaRN, MTP for "a").
 *
 *   1. every logits row a token was sampled from equals the full-sequence forward's row for that
 *      position: bit for bit against the absorbed forward, ≤ 1e-5 relative against the plain one;
 *   2. the recorded logprobs (at the request temperature, and raw) equal the trainer's per-token
 *      −loss of a packed full forward of all samples, bit for bit (the GRPO invariant);
 *   3. the same requests under a tiny cache (preemption), a tiny step budget (chunked prefill)
 *      and few running sequences give identical tokens and logprobs (batch invariance);
 *   4. prefix sharing happened (n > 1), blocks were all returned;
 *   5. MTP speculative decoding leaves greedy outputs unchanged; acceptance is reported;
 *   6. stop ids end a sample with finish "stop", the stop token included;
 *   7. the packed weight copies (fp32, and bf16 once the weights are bf16) give the outputs of an
 *      engine without them, and are remade exactly when the weights change. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "model/checkpoint.h"
#include "rollout/engine.h"
#include "testutil.h"

#define MAXTOK 256

typedef struct rec {
    float *rows;     /* [n_samples][max_new][V] logits each token was drawn from */
    int64_t V, max_new;
    const int64_t *first; /* output index of (request, 0) */
} rec;

static void on_logits(void *user, const v3_gen_output *o, int64_t index, const float *logits,
                      int64_t V) {
    rec *r = user;
    int64_t k = r->first[o->request] + o->sample;
    memcpy(r->rows + (k * r->max_new + index) * V, logits, (size_t)V * sizeof(float));
}

static int load_model(v3_model *m, v3_kctx *ctx, const char *dir, int absorb, int mtp) {
    v3_err err;
    v3_config cfg;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (v3_config_load(&cfg, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    v3_model_options o = v3_model_default_options();
    o.absorb = absorb;
    o.mtp = mtp;
    o.loss_chunk = 5; /* the trainer's logits come in chunks of another size than the engine's */
    int rc = v3_model_init(m, &cfg, ctx, MAXTOK, &o, &err);
    if (!rc) rc = v3_model_load(m, dir, &err);
    CHECK_OK(rc, &err);
    return rc;
}

enum { NREQ = 5 };

static void make_requests(v3_gen_request *rq, int32_t *prompts, int64_t V, v3_rng *rng) {
    static const int64_t plen[NREQ] = {3, 9, 17, 30, 6};
    static const int nsamp[NREQ] = {1, 3, 2, 4, 1};
    static const int64_t maxnew[NREQ] = {12, 20, 9, 16, 24};
    int32_t *p = prompts;
    for (int i = 0; i < NREQ; i++) {
        memset(&rq[i], 0, sizeof rq[i]);
        for (int64_t t = 0; t < plen[i]; t++) p[t] = (int32_t)v3_rng_below(rng, (uint64_t)V);
        rq[i].prompt = p;
        rq[i].prompt_len = plen[i];
        p += plen[i];
        rq[i].n = nsamp[i];
        rq[i].max_new_tokens = maxnew[i];
        rq[i].seed = 1234 + (uint64_t)i;
        rq[i].sampling = v3_sampling_default();
    }
    rq[1].sampling.temperature = 0.7f;
    rq[1].sampling.top_p = 0.9f;
    rq[2].sampling.temperature = 1.3f;
    rq[2].sampling.top_k = 20;
    rq[3].sampling.min_p = 0.05f;
    rq[4].sampling.temperature = 0.0f; /* greedy */
}

static int same_outputs(const v3_gen_output *a, const v3_gen_output *b, int64_t n, const char *what) {
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        int same = a[i].n == b[i].n && a[i].finish == b[i].finish &&
                   !memcmp(a[i].ids, b[i].ids, (size_t)a[i].n * 4) &&
                   !memcmp(a[i].logprob_temp, b[i].logprob_temp, (size_t)a[i].n * 4) &&
                   !memcmp(a[i].logprob_raw, b[i].logprob_raw, (size_t)a[i].n * 4) &&
                   !memcmp(a[i].logprob, b[i].logprob, (size_t)a[i].n * 4);
        CHECK(same, "%s: sample %lld (request %d/%d) differs", what, (long long)i, a[i].request,
              a[i].sample);
        ok &= same;
    }
    return ok;
}

/* Packs every sample (prompt + generated) as a document and runs the trainer's forward at
 * temperature T over the samples of requests with that temperature; compares per token. */
static void check_recompute(v3_model *m, v3_model *plain, const v3_gen_request *rq,
                            const v3_gen_output *out, int64_t n_out, const rec *r) {
    v3_err err;
    int64_t V = m->cfg.vocab_size;
    int32_t *tok = malloc(MAXTOK * 4), *tgt = malloc(MAXTOK * 4), *pos = malloc(MAXTOK * 4),
            *ds = malloc(MAXTOK * 4);
    float *tl = malloc(MAXTOK * 4), *tl1 = malloc(MAXTOK * 4);
    float *lg = malloc((size_t)(MAXTOK * V) * 4), *lgp = malloc((size_t)(MAXTOK * V) * 4);
    int64_t bad_lp = 0, bad_raw = 0, bad_logit = 0, compared = 0;
    double worst_plain = 0;
    for (int64_t i0 = 0; i0 < n_out;) {
        /* fill a batch with whole samples of one temperature, beginning at i0 */
        float T = rq[out[i0].request].sampling.temperature;
        int64_t N = 0, i1 = i0;
        while (i1 < n_out && rq[out[i1].request].sampling.temperature == T) {
            const v3_gen_request *q = &rq[out[i1].request];
            int64_t L = q->prompt_len + out[i1].n;
            if (N + L > MAXTOK) break;
            for (int64_t t = 0; t < L; t++) {
                tok[N + t] = t < q->prompt_len ? q->prompt[t] : out[i1].ids[t - q->prompt_len];
                pos[N + t] = (int32_t)t;
                ds[N + t] = (int32_t)N;
            }
            for (int64_t t = 0; t < L; t++) tgt[N + t] = t + 1 < L ? tok[N + t + 1] : -100;
            N += L;
            i1++;
        }
        if (i1 == i0) break;
        v3_batch b = {N, tok, tgt, pos, ds, tl, lg, NULL, T > 0 ? T : 1.0f, NULL};
        CHECK_OK(v3_model_forward(m, &b, NULL, &err), &err);
        v3_batch b1 = {N, tok, tgt, pos, ds, tl1, NULL, NULL, 1.0f, NULL};
        CHECK_OK(v3_model_forward(m, &b1, NULL, &err), &err);
        v3_batch bp = {N, tok, tgt, pos, ds, NULL, lgp, NULL, 1.0f, NULL};
        CHECK_OK(v3_model_forward(plain, &bp, NULL, &err), &err);
        int64_t off = 0;
        for (int64_t i = i0; i < i1; i++) {
            const v3_gen_request *q = &rq[out[i].request];
            for (int64_t j = 0; j < out[i].n; j++) {
                int64_t t = off + q->prompt_len - 1 + j; /* row that predicts generated token j */
                compared++;
                bad_lp += -tl[t] != out[i].logprob_temp[j];
                bad_raw += -tl1[t] != out[i].logprob_raw[j];
                const float *row = r->rows + ((r->first[out[i].request] + out[i].sample) * r->max_new + j) * V;
                bad_logit += memcmp(row, lg + t * V, (size_t)V * 4) != 0;
                double e = t_rel_err(row, lgp + t * V, V);
                if (e > worst_plain) worst_plain = e;
            }
            off += q->prompt_len + out[i].n;
        }
        i0 = i1;
    }
    printf("  recompute: %lld tokens; logprob (T) mismatches %lld, raw %lld, logits rows not "
           "bit-equal %lld; vs the plain (non-absorbed) forward worst rel err %.2e\n",
           (long long)compared, (long long)bad_lp, (long long)bad_raw, (long long)bad_logit, worst_plain);
    CHECK(compared > 100, "only %lld tokens compared", (long long)compared);
    CHECK(bad_lp == 0, "%lld sampler logprobs differ from the trainer's recompute", (long long)bad_lp);
    CHECK(bad_raw == 0, "%lld raw logprobs differ from the trainer's recompute", (long long)bad_raw);
    CHECK(bad_logit == 0, "%lld logits rows differ from the full forward", (long long)bad_logit);
    CHECK(worst_plain <= 1e-5, "logits vs plain forward rel err %.3e", worst_plain);
    free(tok), free(tgt), free(pos), free(ds), free(tl), free(tl1), free(lg), free(lgp);
}

/* The packed weight copies (pack_weights) follow the weights: made at the first call, not again
 * while weights_version stays, made again after v3_model_weights_changed — as bf16 once every
 * weight is a bf16 — and always giving what an engine without copies gives, bit for bit. */
static void check_packed_copies(v3_model *m, const v3_gen_request *rq) {
    v3_err err;
    v3_kctx *c = m->ctx;
    size_t bytes = (size_t)m->table.total * sizeof(float);
    float *orig = malloc(bytes), *rounded = malloc(bytes);
    if (!orig || !rounded) {
        CHECK(0, "out of memory");
        free(orig), free(rounded);
        return;
    }
    c->be->to_host(c, orig, m->params, bytes);
    for (int64_t i = 0; i < m->table.total; i++) /* to the nearest bf16, ties to even */
        rounded[i] = v3_bf16_to_f32(v3_f32_to_bf16(orig[i]));
    v3_engine ep, eu;
    v3_engine_options op = v3_engine_default_options(), ou = v3_engine_default_options();
    ou.pack_weights = 0;
    CHECK_OK(v3_engine_init(&ep, m, &op, &err), &err);
    CHECK_OK(v3_engine_init(&eu, m, &ou, &err), &err);
    CHECK(ep.wp.n > 0 && eu.wp.n == 0, "packed copies: %lld with, %lld without", (long long)ep.wp.n,
          (long long)eu.wp.n);
    v3_gen_output *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    /* rounds: 0 the weights as loaded, 1 again unchanged, 2 rounded to bf16, 3 back as loaded */
    static const int64_t want_packs[4] = {1, 1, 2, 3};
    for (int round = 0; round < 4; round++) {
        if (round == 2 || round == 3) {
            c->be->to_device(c, m->params, round == 2 ? rounded : orig, bytes);
            v3_model_weights_changed(m);
        }
        CHECK_OK(v3_engine_generate(&ep, rq, NREQ, &a, &na, &err), &err);
        CHECK_OK(v3_engine_generate(&eu, rq, NREQ, &b, &nb, &err), &err);
        char what[64];
        snprintf(what, sizeof what, "packed copies, round %d", round);
        if (na == nb) same_outputs(a, b, na, what);
        CHECK(ep.stats.packs == want_packs[round], "round %d: packed %lld times, want %lld", round,
              (long long)ep.stats.packs, (long long)want_packs[round]);
        int64_t want_bf16 = round == 2 ? ep.wp.n : 0;
        CHECK(ep.wp.n_bf16 == want_bf16, "round %d: %lld of %lld copies bf16, want %lld", round,
              (long long)ep.wp.n_bf16, (long long)ep.wp.n, (long long)want_bf16);
        printf("  packed copies, round %d: %lld copies (%lld bf16, %.1f MiB), packed %lld times\n", round,
               (long long)ep.wp.n, (long long)ep.wp.n_bf16, ep.wp.bytes_read / 1048576.0,
               (long long)ep.stats.packs);
        v3_gen_outputs_free(a, na);
        v3_gen_outputs_free(b, nb);
    }
    CHECK(c->wpacks == NULL, "the context still points at the engine's copies after generate");
    v3_engine_free(&ep);
    v3_engine_free(&eu);
    free(orig), free(rounded);
}

static void run_golden(v3_kctx *ctx, const char *name, int has_mtp) {
    char dir[1024], rel[64];
    snprintf(rel, sizeof rel, "tests/golden/data/model_%s", name);
    t_source_path(rel, dir, sizeof dir);
    v3_model m, plain;
    if (load_model(&m, ctx, dir, 1, has_mtp)) return;
    if (load_model(&plain, ctx, dir, 0, 0)) {
        v3_model_free(&m);
        return;
    }
    printf("model %s\n", name);
    int64_t V = m.cfg.vocab_size;
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_engine"));
    int32_t prompts[128];
    v3_gen_request rq[NREQ];
    make_requests(rq, prompts, V, &rng);
    int64_t first[NREQ], n_samples = 0, max_new = 0;
    for (int i = 0; i < NREQ; i++) {
        first[i] = n_samples;
        n_samples += rq[i].n;
        if (rq[i].max_new_tokens > max_new) max_new = rq[i].max_new_tokens;
    }
    rec r = {calloc((size_t)(n_samples * max_new * V), sizeof(float)), V, max_new, first};
    v3_err err;

    /* A: roomy engine */
    v3_engine e;
    v3_engine_options o = v3_engine_default_options();
    o.on_logits = on_logits;
    o.logits_user = &r;
    CHECK_OK(v3_engine_init(&e, &m, &o, &err), &err);
    v3_gen_output *outA = NULL;
    int64_t nA = 0;
    CHECK_OK(v3_engine_generate(&e, rq, NREQ, &outA, &nA, &err), &err);
    CHECK(nA == n_samples, "%lld outputs for %lld samples", (long long)nA, (long long)n_samples);
    printf("  roomy: %lld steps, %lld prefill + %lld decode tokens, %lld prompt tokens shared, "
           "peak %lld blocks\n", (long long)e.stats.steps, (long long)e.stats.prefill_tokens,
           (long long)e.stats.decode_tokens, (long long)e.stats.prefix_shared_tokens,
           (long long)e.stats.peak_blocks);
    CHECK(e.stats.prefix_shared_tokens == 9 * 2 + 17 * 1 + 30 * 3,
          "prefix sharing: %lld prompt tokens shared", (long long)e.stats.prefix_shared_tokens);
    CHECK(e.kv.n_free == e.kv.n_blocks, "%lld of %lld blocks not returned", (long long)(e.kv.n_blocks - e.kv.n_free),
          (long long)e.kv.n_blocks);
    for (int64_t i = 0; i < nA; i++) {
        CHECK(outA[i].n == rq[outA[i].request].max_new_tokens && outA[i].finish == V3_FINISH_LENGTH,
              "sample %lld: %lld tokens, finish %s", (long long)i, (long long)outA[i].n,
              v3_finish_name(outA[i].finish));
    }
    /* samples of one request differ (their own streams), except greedy */
    CHECK(memcmp(outA[1].ids, outA[2].ids, (size_t)outA[1].n * 4) != 0, "samples 0 and 1 of request 1 are identical");
    v3_engine_free(&e);

    check_recompute(&m, &plain, rq, outA, nA, &r);

    /* B: tiny cache, tiny steps, few sequences: preemption and chunked prefill */
    v3_engine_options ob = v3_engine_default_options();
    ob.block_size = 4;
    ob.max_live_tokens = 64; /* fits request 3 (30 + 16) alone, not everything at once */
    ob.max_step_tokens = 7;
    ob.max_seqs = 5;
    CHECK_OK(v3_engine_init(&e, &m, &ob, &err), &err);
    v3_gen_output *outB = NULL;
    int64_t nB = 0;
    CHECK_OK(v3_engine_generate(&e, rq, NREQ, &outB, &nB, &err), &err);
    printf("  tight: %lld steps, %lld preemptions, peak %lld of %lld blocks\n", (long long)e.stats.steps,
           (long long)e.stats.preemptions, (long long)e.stats.peak_blocks, (long long)e.kv.n_blocks);
    CHECK(e.stats.preemptions > 0, "no preemption under a %lld-token cache", (long long)ob.max_live_tokens);
    if (nB == nA) same_outputs(outA, outB, nA, "tight vs roomy");
    int64_t pre = 0;
    for (int64_t i = 0; i < nB; i++) pre += outB[i].preemptions;
    CHECK(pre == e.stats.preemptions, "per-sample preemptions %lld vs %lld", (long long)pre,
          (long long)e.stats.preemptions);
    CHECK(e.kv.n_free == e.kv.n_blocks, "tight: blocks not returned");
    v3_engine_free(&e);
    v3_gen_outputs_free(outB, nB);

    /* a request alone gives the same samples as in company */
    v3_engine_options oc = v3_engine_default_options();
    CHECK_OK(v3_engine_init(&e, &m, &oc, &err), &err);
    v3_gen_output *outC = NULL;
    int64_t nC = 0;
    CHECK_OK(v3_engine_generate(&e, rq + 3, 1, &outC, &nC, &err), &err);
    for (int64_t i = 0; i < nC; i++) outC[i].request = 3; /* renumber for the comparison */
    /* the stream depends on the request index: rerun request 3 as index 3 of a padded list */
    v3_gen_outputs_free(outC, nC);
    v3_gen_request solo[4];
    for (int i = 0; i < 4; i++) {
        solo[i] = rq[3];
        solo[i].n = i < 3 ? 1 : rq[3].n;
        solo[i].max_new_tokens = 1;
    }
    solo[3].max_new_tokens = rq[3].max_new_tokens;
    CHECK_OK(v3_engine_generate(&e, solo, 4, &outC, &nC, &err), &err);
    if (nC == 3 + rq[3].n) same_outputs(outA + first[3], outC + 3, rq[3].n, "alone vs in company");
    v3_gen_outputs_free(outC, nC);

    /* stop ids: stop at the token request 0 generated at index 4 (its first occurrence) */
    v3_gen_request st = rq[0];
    int32_t stop_tok = outA[first[0]].ids[4];
    int64_t at = 0;
    while (outA[first[0]].ids[at] != stop_tok) at++;
    st.stop_ids = &stop_tok;
    st.n_stop_ids = 1;
    v3_gen_request sl[1] = {st};
    CHECK_OK(v3_engine_generate(&e, sl, 1, &outC, &nC, &err), &err);
    if (nC == 1) {
        CHECK(outC[0].finish == V3_FINISH_STOP && outC[0].n == at + 1 && outC[0].ids[at] == stop_tok,
              "stop id: finish %s after %lld tokens (want stop after %lld)",
              v3_finish_name(outC[0].finish), (long long)outC[0].n, (long long)at + 1);
    }
    v3_gen_outputs_free(outC, nC);
    v3_engine_free(&e);

    /* MTP: greedy outputs unchanged with speculative decoding */
    if (has_mtp) {
        v3_gen_request g[3];
        for (int i = 0; i < 3; i++) {
            g[i] = rq[i];
            g[i].n = 1;
            g[i].sampling = v3_sampling_default();
            g[i].sampling.temperature = 0.0f;
            g[i].max_new_tokens = 24;
        }
        v3_engine_options om = v3_engine_default_options();
        CHECK_OK(v3_engine_init(&e, &m, &om, &err), &err);
        v3_gen_output *o0 = NULL, *o1 = NULL;
        int64_t n0 = 0, n1 = 0;
        CHECK_OK(v3_engine_generate(&e, g, 3, &o0, &n0, &err), &err);
        int64_t steps0 = e.stats.steps;
        v3_engine_free(&e);
        om.mtp = 1;
        om.block_size = 4;
        om.max_live_tokens = 48; /* preemption with drafts in flight, too */
        CHECK_OK(v3_engine_init(&e, &m, &om, &err), &err);
        CHECK_OK(v3_engine_generate(&e, g, 3, &o1, &n1, &err), &err);
        printf("  MTP: %lld drafts, %lld accepted (%.0f%%), %lld steps vs %lld without, %lld preemptions\n",
               (long long)e.stats.mtp_drafted, (long long)e.stats.mtp_accepted,
               e.stats.mtp_drafted ? 100.0 * e.stats.mtp_accepted / e.stats.mtp_drafted : 0.0,
               (long long)e.stats.steps, (long long)steps0, (long long)e.stats.preemptions);
        CHECK(e.stats.mtp_drafted > 0, "MTP drafted nothing");
        if (n0 == n1) same_outputs(o0, o1, n0, "MTP vs plain greedy");
        v3_gen_outputs_free(o0, n0);
        v3_gen_outputs_free(o1, n1);
        v3_engine_free(&e);
    }

    check_packed_copies(&m, rq);

    /* bad input: a prompt token outside the vocabulary, a request larger than the cache */
    {
        v3_engine_options ox = v3_engine_default_options();
        ox.block_size = 4;
        ox.max_live_tokens = 16;
        CHECK_OK(v3_engine_init(&e, &m, &ox, &err), &err);
        v3_gen_request bad = rq[0];
        int32_t badp[2] = {1, (int32_t)V};
        bad.prompt = badp;
        bad.prompt_len = 2;
        v3_gen_output *ob2 = NULL;
        int64_t nb2 = 0;
        int rc = v3_engine_generate(&e, &bad, 1, &ob2, &nb2, &err);
        CHECK(rc == V3_ERANGE && strstr(err.msg, "request 0"), "bad token: rc %d (%s)", rc, err.msg);
        bad = rq[3]; /* 30 + 16 tokens > 16 */
        rc = v3_engine_generate(&e, &bad, 1, &ob2, &nb2, &err);
        CHECK(rc == V3_ERANGE && strstr(err.msg, "max_live_tokens"), "too long: rc %d (%s)", rc, err.msg);
        v3_engine_free(&e);
        ox.mtp_draft_vocab = -1;
        rc = v3_engine_init(&e, &m, &ox, &err);
        CHECK(rc == V3_EINVAL && strstr(err.msg, "mtp_draft_vocab"), "draft vocab -1: rc %d (%s)", rc,
              err.msg);
        if (!rc) v3_engine_free(&e);
    }

    v3_gen_outputs_free(outA, nA);
    free(r.rows);
    v3_model_free(&m);
    v3_model_free(&plain);
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    run_golden(&ctx, "a", 1);
    run_golden(&ctx, "c", 0);
    v3_kctx_free(&ctx);
    return t_finish("test_engine");
}
