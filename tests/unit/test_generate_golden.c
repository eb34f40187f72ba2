/* test_generate_golden.c — the rollout engine's greedy generation against Hugging Face
 * transformers' generate(do_sample=False) on the golden tiny models (tests/golden/data/model_*).
 *
 * tests/golden/data/generate_golden.json (tests/golden/gen_generate.py: DeepseekV3ForCausalLM
 * fp32 eager, one prompt at a time, 24 new tokens, EOS stopping off) holds, per model, random
 * prompts whose every generated step has a top-1/top-2 logit margin and every router decision a
 * margin > 1e-4, so any correct implementation makes the same choices. For each model:
 *   1. all of its prompts go through ONE v3_engine_generate call (greedy, n = 1, 24 new tokens):
 *      continuous batching of prompts of lengths 1..40 in one batch must not change a token;
 *   2. the outputs equal HF's token for token (finish "length", 24 tokens each);
 *   3. the same under a tight engine (4-token blocks, a 128-token cache, 7-token steps), where
 *      sequences are preempted and recomputed and prompts are prefilled in chunks;
 *   4. model a (it has an MTP layer) again with MTP speculative decoding (engine mtp = 1, model
 *      opt.mtp = 1), roomy and tight, drafting over the whole vocabulary and (engine
 *      mtp_draft_vocab) over its first 64 ids: the same tokens, with drafts made. Its MTP layer
 *      is random (HF has none to train it), so few drafts are accepted here;
 *      bench/bench_generate.c measures acceptance on a trained one. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "rollout/engine.h"
#include "testutil.h"

#define MAXTOK 512

typedef struct gcase {
    int32_t *prompt, *expect;
    int64_t plen, n_expect;
} gcase;

static int load_model(v3_model *m, v3_kctx *ctx, const char *dir, int mtp) {
    v3_err err;
    v3_config cfg;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = v3_config_load(&cfg, path, &err);
    CHECK_OK(rc, &err);
    if (rc) return rc;
    v3_model_options o = v3_model_default_options();
    o.absorb = 1;
    o.mtp = mtp;
    rc = v3_model_init(m, &cfg, ctx, MAXTOK, &o, &err);
    CHECK_OK(rc, &err);
    if (rc) return rc;
    rc = v3_model_load(m, dir, &err);
    CHECK_OK(rc, &err);
    if (rc) v3_model_free(m);
    return rc;
}

static int32_t *ints(json_t *a, int64_t *n) {
    *n = (int64_t)json_array_size(a);
    int32_t *p = malloc((size_t)(*n ? *n : 1) * sizeof *p);
    for (int64_t i = 0; p && i < *n; i++) p[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return p;
}

/* Runs every case in one generate call; returns the number of tokens that matched HF's.
 * mtp: 0 off, else on with drafts among the first `mtp` token ids (0 in the engine: all). */
static int64_t run_cases(v3_model *m, const gcase *cs, int n, int64_t max_new, int64_t mtp, int tight,
                         const char *what, int64_t *compared) {
    v3_err err;
    v3_gen_request *rq = calloc((size_t)n, sizeof *rq);
    for (int i = 0; i < n; i++) {
        rq[i].prompt = cs[i].prompt;
        rq[i].prompt_len = cs[i].plen;
        rq[i].n = 1;
        rq[i].sampling = v3_sampling_default();
        rq[i].sampling.temperature = 0.0f; /* greedy */
        rq[i].max_new_tokens = max_new;
        rq[i].seed = 7 + (uint64_t)i;
    }
    v3_engine e;
    v3_engine_options o = v3_engine_default_options();
    o.mtp = mtp != 0;
    o.mtp_draft_vocab = mtp > 0 ? mtp : 0;
    if (tight) {
        /* a cache for ~2 sequences and 7-token steps: preemption, recompute, chunked prefill */
        o.block_size = 4;
        o.max_live_tokens = 128;
        o.max_step_tokens = 7;
    }
    int64_t matched = 0;
    int rc = v3_engine_init(&e, m, &o, &err);
    CHECK_OK(rc, &err);
    if (rc) {
        free(rq);
        return 0;
    }
    v3_gen_output *out = NULL;
    int64_t n_out = 0;
    rc = v3_engine_generate(&e, rq, n, &out, &n_out, &err);
    CHECK_OK(rc, &err);
    CHECK(rc || n_out == n, "%s: %lld outputs for %d requests", what, (long long)n_out, n);
    for (int64_t i = 0; !rc && i < n_out && i < n; i++) {
        const gcase *c = &cs[out[i].request];
        CHECK(out[i].finish == V3_FINISH_LENGTH && out[i].n == c->n_expect,
              "%s: prompt %d: %lld tokens, finish %s (want %lld, length)", what, out[i].request,
              (long long)out[i].n, v3_finish_name(out[i].finish), (long long)c->n_expect);
        int64_t first_diff = -1;
        for (int64_t t = 0; t < c->n_expect; t++) {
            int same = t < out[i].n && out[i].ids[t] == c->expect[t];
            matched += same;
            if (!same && first_diff < 0) first_diff = t;
        }
        *compared += c->n_expect;
        CHECK(first_diff < 0, "%s: prompt %d (length %lld): token %lld is %d, HF generated %d", what,
              out[i].request, (long long)c->plen, (long long)first_diff,
              first_diff < out[i].n ? out[i].ids[first_diff] : -1, c->expect[first_diff]);
    }
    printf("  %s: %d prompts in one generate call, %lld steps (%lld prefill + %lld decode tokens)",
           what, n, (long long)e.stats.steps, (long long)e.stats.prefill_tokens,
           (long long)e.stats.decode_tokens);
    if (mtp) {
        printf(", MTP %lld drafts, %lld accepted (%.0f%%)", (long long)e.stats.mtp_drafted,
               (long long)e.stats.mtp_accepted,
               e.stats.mtp_drafted ? 100.0 * (double)e.stats.mtp_accepted / (double)e.stats.mtp_drafted : 0.0);
        CHECK(e.stats.mtp_drafted > 0, "%s: MTP drafted nothing", what);
    }
    if (tight) {
        printf(", %lld preemptions", (long long)e.stats.preemptions);
        CHECK(e.stats.preemptions > 0, "%s: no preemption", what);
    }
    printf("\n");
    CHECK(e.kv.n_free == e.kv.n_blocks, "%s: %lld cache blocks not returned", what,
          (long long)(e.kv.n_blocks - e.kv.n_free));
    v3_gen_outputs_free(out, n_out);
    v3_engine_free(&e);
    free(rq);
    return matched;
}

int main(void) {
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    char path[4096];
    json_error_t je;
    json_t *root = json_load_file(t_source_path("tests/golden/data/generate_golden.json", path, sizeof path), 0, &je);
    CHECK(root != NULL, "%s: %s (line %d)", path, je.text, je.line);
    int64_t compared = 0, matched = 0;
    if (root) {
        int64_t max_new = json_integer_value(json_object_get(root, "max_new_tokens"));
        json_t *models = json_object_get(root, "models");
        printf("golden: transformers %s, torch %s, %zu models, %lld new tokens per prompt\n",
               json_string_value(json_object_get(root, "transformers")),
               json_string_value(json_object_get(root, "torch")), json_array_size(models),
               (long long)max_new);
        CHECK(max_new > 0 && json_array_size(models) == 3, "golden: max_new_tokens %lld, %zu models",
              (long long)max_new, json_array_size(models));
        for (size_t mi = 0; mi < json_array_size(models); mi++) {
            json_t *jm = json_array_get(models, mi);
            const char *name = json_string_value(json_object_get(jm, "name"));
            json_t *jc = json_object_get(jm, "cases");
            int n = (int)json_array_size(jc);
            CHECK(name && n >= 6, "model %zu: %d golden prompts", mi, n);
            if (!name || n < 1) continue;
            gcase *cs = calloc((size_t)n, sizeof *cs);
            for (int i = 0; i < n; i++) {
                json_t *c = json_array_get(jc, (size_t)i);
                cs[i].prompt = ints(json_object_get(c, "prompt"), &cs[i].plen);
                cs[i].expect = ints(json_object_get(c, "output"), &cs[i].n_expect);
                CHECK(cs[i].plen >= 1 && cs[i].n_expect == max_new, "model %s case %d: %lld prompt, %lld output tokens",
                      name, i, (long long)cs[i].plen, (long long)cs[i].n_expect);
            }
            char rel[256], dir[4096];
            snprintf(rel, sizeof rel, "tests/golden/data/model_%s", name);
            t_source_path(rel, dir, sizeof dir);
            printf("model %s: %d prompts, min logit margin %.2e, min router margin %.2e\n", name, n,
                   json_real_value(json_object_get(jm, "min_margin")),
                   json_real_value(json_object_get(jm, "min_router_margin")));
            v3_model m;
            if (!load_model(&m, &ctx, dir, 0)) {
                matched += run_cases(&m, cs, n, max_new, 0, 0, "greedy", &compared);
                matched += run_cases(&m, cs, n, max_new, 0, 1, "greedy, tight cache", &compared);
                v3_model_free(&m);
            }
            if (!strcmp(name, "a") && !load_model(&m, &ctx, dir, 1)) {
                matched += run_cases(&m, cs, n, max_new, -1, 0, "greedy + MTP", &compared);
                matched += run_cases(&m, cs, n, max_new, -1, 1, "greedy + MTP, tight cache", &compared);
                matched += run_cases(&m, cs, n, max_new, 64, 0, "greedy + MTP drafting among 64 ids",
                                     &compared);
                matched += run_cases(&m, cs, n, max_new, 64, 1,
                                     "greedy + MTP drafting among 64 ids, tight cache", &compared);
                v3_model_free(&m);
            }
            for (int i = 0; i < n; i++) free(cs[i].prompt), free(cs[i].expect);
            free(cs);
        }
        json_decref(root);
    }
    printf("compared %lld generated tokens with HF transformers: %lld equal\n", (long long)compared,
           (long long)matched);
    CHECK(compared >= 3 * 2 * 6 * 24, "only %lld tokens compared", (long long)compared);
    CHECK(matched == compared, "%lld of %lld tokens differ from HF", (long long)(compared - matched),
          (long long)compared);
    v3_kctx_free(&ctx);
    return t_finish("test_generate_golden");
}
