/* test_reward_model.c — the local reward model (rewards/rm.h, model/score_head.c) against HF's
 * DeepseekV3ForSequenceClassification (tests/golden/gen_reward_model.py, data in
 * tests/golden/data/rm_{a,b}):
 *   - token sequences scored packed in one forward, one by one, and across many small forwards:
 *     every score within 1e-5 relative of HF; packing never changes a score;
 *   - HF's pooling: trailing pad tokens skipped (pad_token_id = eos in rm_a), all-pad -> row 0;
 *     no pad id (rm_b) -> last token; two labels and the `label` option;
 *   - samples (prompt or messages + completion) rendered with the chat template: ids equal HF's
 *     apply_chat_template, scores equal HF's; too-long sequences are errors with the fallback;
 *   - refusals: a causal LM directory (no score.weight), a bad label, a bad template;
 *   - mixing with a Lua reward host: values in order, combined reward = Σ weight·score;
 *   - the reward-config entry parser. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/rm.h"
#include "rewards/rm_mix.h"
#include "testutil.h"

#define TOL 1e-5

typedef struct ref {
    json_t *j;
    int num_labels, pad;
    double scale; /* rms of every reference score */
} ref;

static double rms_scores(const json_t *j);

static int ref_open(ref *r, const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_error_t je;
    r->j = json_load_file(path, 0, &je);
    CHECK(r->j != NULL, "%s: %s", path, je.text);
    if (!r->j) return -1;
    r->num_labels = (int)json_integer_value(json_object_get(r->j, "num_labels"));
    json_t *p = json_object_get(r->j, "pad_token_id");
    r->pad = json_is_integer(p) ? (int)json_integer_value(p) : -1;
    r->scale = rms_scores(r->j);
    return 0;
}

/* ids of case i of kind ("ids_cases" | "chat_cases") into a malloc'd array */
static int32_t *case_ids(const ref *r, const char *kind, size_t i, int64_t *n) {
    json_t *a = json_object_get(json_array_get(json_object_get(r->j, kind), i), "ids");
    *n = (int64_t)json_array_size(a);
    int32_t *p = malloc((size_t)(*n ? *n : 1) * sizeof *p);
    for (int64_t t = 0; t < *n; t++) p[t] = (int32_t)json_integer_value(json_array_get(a, (size_t)t));
    return p;
}

static double case_score(const ref *r, const char *kind, size_t i, int label) {
    json_t *s = json_object_get(json_array_get(json_object_get(r->j, kind), i), "scores");
    return json_number_value(json_array_get(s, (size_t)label));
}

/* Relative to the scale of the scores: a score is a dot product that cancels (HF in fp32 and in
 * fp64 differ by ~1e-6 on a score of 0.09), so each is held to 1e-5 of max(|want|, the rms of the
 * reference scores); a set as a whole to 1e-5 relative (‖got − want‖ / ‖want‖), as the model's
 * golden test. */
static int close_to(const ref *r, double got, double want) {
    return fabs(got - want) <= TOL * fmax(fabs(want), r->scale);
}

static double rms_scores(const json_t *j) {
    double ss = 0;
    int n = 0;
    const char *kinds[2] = {"ids_cases", "chat_cases"};
    for (int k = 0; k < 2; k++) {
        json_t *a = json_object_get(j, kinds[k]);
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *sc = json_object_get(json_array_get(a, i), "scores");
            for (size_t l = 0; l < json_array_size(sc); l++, n++)
                ss += json_number_value(json_array_get(sc, l)) * json_number_value(json_array_get(sc, l));
        }
    }
    return n ? sqrt(ss / n) : 1.0;
}

static v3_rm *open_rm(const char *dir, v3_kctx *ctx, int64_t max_tokens, int label, double fallback) {
    v3_rm_opts o = {.dir = dir, .max_tokens = max_tokens, .label = label, .fallback = fallback};
    v3_rm *rm = NULL;
    v3_err err = {0};
    CHECK_OK(v3_rm_init(&rm, &o, ctx, &err), &err);
    return rm;
}

/* Every ids case: packed in one forward, one at a time, and with a budget that forces several
 * forwards; all against HF, and identical to each other. */
static void check_ids(const char *name, const char *dir, const ref *r, v3_kctx *ctx) {
    json_t *cases = json_object_get(r->j, "ids_cases");
    int n = (int)json_array_size(cases), L = r->num_labels;
    int32_t *ids[16];
    int64_t lens[16], longest = 0;
    for (int i = 0; i < n; i++) {
        ids[i] = case_ids(r, "ids_cases", (size_t)i, &lens[i]);
        if (lens[i] > longest) longest = lens[i];
    }
    float *packed = calloc((size_t)(n * L), sizeof(float)), *one = calloc((size_t)(n * L), sizeof(float));
    float *small = calloc((size_t)(n * L), sizeof(float)), *want = calloc((size_t)(n * L), sizeof(float));
    v3_err err = {0};
    v3_rm *rm = open_rm(dir, ctx, 0, 0, 0.0);
    if (!rm) goto out;
    CHECK(v3_rm_num_labels(rm) == L, "%s: %d labels, want %d", name, v3_rm_num_labels(rm), L);
    CHECK(v3_rm_pad_id(rm) == r->pad, "%s: pad id %d, want %d", name, v3_rm_pad_id(rm), r->pad);
    CHECK_OK(v3_rm_score_ids(rm, (const int32_t *const *)ids, lens, n, packed, &err), &err);
    for (int i = 0; i < n; i++)
        CHECK_OK(v3_rm_score_ids(rm, (const int32_t *const *)&ids[i], &lens[i], 1, one + i * L, &err), &err);
    v3_rm_free(rm);
    rm = open_rm(dir, ctx, longest, 0, 0.0); /* a budget of the longest case: several forwards */
    if (rm) CHECK_OK(v3_rm_score_ids(rm, (const int32_t *const *)ids, lens, n, small, &err), &err);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < L; j++) {
            double w = case_score(r, "ids_cases", (size_t)i, j);
            want[i * L + j] = (float)w;
            CHECK(close_to(r, packed[i * L + j], w), "%s: ids case %d label %d: %.8g, HF %.8g", name, i, j,
                  (double)packed[i * L + j], w);
            CHECK(one[i * L + j] == packed[i * L + j] && small[i * L + j] == packed[i * L + j],
                  "%s: case %d: packing changed the score (%.9g alone, %.9g packed, %.9g small budget)",
                  name, i, (double)one[i * L + j], (double)packed[i * L + j], (double)small[i * L + j]);
        }
    double e = t_rel_err(packed, want, n * L);
    CHECK(e <= TOL, "%s: ids scores rel err %.3e", name, e);
    printf("%s: %d token sequences, rel err %.2e vs HF\n", name, n, e);
    /* a sequence over the budget, a token outside the vocabulary: refused */
    if (rm) {
        int64_t big = longest + 1;
        int32_t *b = calloc((size_t)big, sizeof *b);
        CHECK(v3_rm_score_ids(rm, (const int32_t *const *)&b, &big, 1, packed, &err) == V3_ERANGE,
              "%s: an over-long sequence was accepted", name);
        b[0] = 1 << 20;
        int64_t one_len = 1;
        CHECK(v3_rm_score_ids(rm, (const int32_t *const *)&b, &one_len, 1, packed, &err) == V3_ERANGE,
              "%s: a token outside the vocabulary was accepted", name);
        free(b);
    }
out:
    v3_rm_free(rm);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(packed);
    free(one);
    free(small);
    free(want);
}

/* A chat case as a reward sample (borrowing from the JSON). */
static void chat_sample(const ref *r, size_t i, v3_reward_sample *s, char **msgs, char **row) {
    json_t *c = json_array_get(json_object_get(r->j, "chat_cases"), i);
    memset(s, 0, sizeof *s);
    s->prompt = json_string_value(json_object_get(c, "prompt"));
    json_t *m = json_object_get(c, "messages");
    *msgs = m ? json_dumps(m, JSON_COMPACT) : NULL;
    *row = json_dumps(json_object_get(c, "row"), JSON_COMPACT);
    s->messages_json = *msgs;
    s->completion = json_string_value(json_object_get(c, "completion"));
    s->row_json = *row;
    s->index = (int64_t)i;
}

static void check_chat(const char *name, const char *dir, const ref *r, v3_kctx *ctx, int label) {
    json_t *cases = json_object_get(r->j, "chat_cases");
    int n = (int)json_array_size(cases);
    v3_reward_sample s[8];
    char *msgs[8], *rows[8];
    v3_reward_value v[8];
    v3_err err = {0};
    for (int i = 0; i < n; i++) chat_sample(r, (size_t)i, &s[i], &msgs[i], &rows[i]);
    v3_rm *rm = open_rm(dir, ctx, 0, label, 0.0);
    if (!rm) goto out;
    v3_tok_ids ids = {0};
    for (int i = 0; i < n; i++) {
        int64_t nw;
        int32_t *want = case_ids(r, "chat_cases", (size_t)i, &nw);
        CHECK_OK(v3_rm_encode(rm, &s[i], &ids, &err), &err);
        int same = (int64_t)ids.n == nw;
        for (int64_t t = 0; same && t < nw; t++) same = ids.ids[t] == want[t];
        CHECK(same, "%s: chat case %d: ids differ from HF's apply_chat_template (%zu vs %lld)", name, i,
              ids.n, (long long)nw);
        free(want);
    }
    v3_tok_ids_free(&ids);
    CHECK_OK(v3_rm_score(rm, s, n, v, &err), &err);
    float got[8], want[8];
    for (int i = 0; i < n; i++) {
        got[i] = (float)v[i].score;
        want[i] = (float)case_score(r, "chat_cases", (size_t)i, label);
    }
    double e = t_rel_err(got, want, n);
    CHECK(e <= TOL, "%s: conversation scores rel err %.3e", name, e);
    for (int i = 0; i < n; i++) {
        double w = case_score(r, "chat_cases", (size_t)i, label);
        CHECK(v[i].status == V3_REWARD_OK, "%s: chat case %d: status %d (%s)", name, i, v[i].status,
              v[i].error ? v[i].error : "");
        CHECK(close_to(r, v[i].score, w), "%s: chat case %d: score %.8g, HF %.8g", name, i, v[i].score, w);
        CHECK(v[i].extra_json && strstr(v[i].extra_json, "\"tokens\":"), "%s: no token count in extra", name);
        if (r->num_labels > 1)
            CHECK(v[i].extra_json && strstr(v[i].extra_json, "\"logits\":["), "%s: no logits in extra", name);
    }
    printf("%s: %d conversations (label %d), rel err %.2e vs HF\n", name, n, label, e);
    v3_rm_values_free(v, n);
    v3_rm_free(rm);

    /* a budget too small for the longest conversation: that one fails with the fallback, the
     * others are still scored, and a NaN fallback makes the failure a skip */
    rm = open_rm(dir, ctx, 24, label, -2.5);
    if (!rm) goto out;
    CHECK_OK(v3_rm_score(rm, s, n, v, &err), &err);
    int errors = 0;
    for (int i = 0; i < n; i++) {
        int64_t nw;
        free(case_ids(r, "chat_cases", (size_t)i, &nw));
        if (nw > 24) {
            errors++;
            CHECK(v[i].status == V3_REWARD_ERROR && v[i].score == -2.5 && v[i].error &&
                      strstr(v[i].error, "max_tokens"),
                  "%s: case %d (%lld tokens) over the budget: status %d score %g error %s", name, i,
                  (long long)nw, v[i].status, v[i].score, v[i].error ? v[i].error : "(none)");
        } else {
            double w = case_score(r, "chat_cases", (size_t)i, label);
            CHECK(v[i].status == V3_REWARD_OK && close_to(r, v[i].score, w),
                  "%s: case %d within the budget: status %d", name, i, v[i].status);
        }
    }
    CHECK(errors > 0, "%s: no case is longer than 24 tokens", name);
    v3_rm_values_free(v, n);
out:
    v3_rm_free(rm);
    for (int i = 0; i < n; i++) {
        free(msgs[i]);
        free(rows[i]);
    }
}

static void check_refusals(v3_kctx *ctx, const char *dir_a) {
    char causal[1200];
    t_source_path("tests/golden/data/model_b", causal, sizeof causal);
    v3_rm *rm = NULL;
    v3_err err = {0};
    v3_rm_opts o = {.dir = causal};
    CHECK(v3_rm_init(&rm, &o, ctx, &err) == V3_ENOTFOUND && !rm, "a causal LM was accepted");
    CHECK(strstr(err.msg, "score.weight") && strstr(err.msg, "lm_head.weight"), "message: %s", err.msg);
    o = (v3_rm_opts){.dir = dir_a, .label = 1};
    CHECK(v3_rm_init(&rm, &o, ctx, &err) == V3_ERANGE && !rm, "label 1 of a one-label head was accepted");
    CHECK(strstr(err.msg, "label"), "message: %s", err.msg);
    o = (v3_rm_opts){.dir = dir_a, .template_name = "chatml"};
    CHECK(v3_rm_init(&rm, &o, ctx, &err) == V3_EINVAL && !rm, "an unknown template was accepted");
    o = (v3_rm_opts){.dir = "/nonexistent/rm"};
    CHECK(v3_rm_init(&rm, &o, ctx, &err) != V3_OK && !rm, "a missing directory was accepted");
}

static void check_pool_and_raw(const char *dir_a, v3_kctx *ctx) {
    int32_t a[] = {5, 6, 1, 1}, b[] = {1, 1}, c[] = {5, 1, 6};
    CHECK(v3_rm_pool_row(a, 4, 1) == 1, "trailing pads");
    CHECK(v3_rm_pool_row(b, 2, 1) == 0, "all pad");
    CHECK(v3_rm_pool_row(c, 3, 1) == 2, "inner pad");
    CHECK(v3_rm_pool_row(a, 4, -1) == 3, "no pad id");
    /* raw: the default BOS, not doubled when the prompt is a rendered template already */
    v3_rm_opts o = {.dir = dir_a, .template_name = "raw"};
    v3_rm *rm = NULL;
    v3_err err = {0};
    CHECK_OK(v3_rm_init(&rm, &o, ctx, &err), &err);
    if (!rm) return;
    v3_tok_ids x = {0}, y = {0};
    v3_reward_sample s = {.prompt = "Q: 1+1? ", .completion = "A: 2"};
    CHECK_OK(v3_rm_encode(rm, &s, &x, &err), &err);
    CHECK(x.n > 2 && x.ids[0] == 0 && x.ids[1] != 0, "raw: BOS then text (got %zu ids)", x.n);
    v3_reward_sample s2 = {.prompt = "<｜begin▁of▁sentence｜>Q: 1+1? ", .completion = "A: 2"};
    CHECK_OK(v3_rm_encode(rm, &s2, &y, &err), &err);
    int same = x.n == y.n;
    for (size_t t = 0; same && t < x.n; t++) same = x.ids[t] == y.ids[t];
    CHECK(same, "raw: a prompt starting with BOS got a second one");
    v3_reward_value v;
    CHECK_OK(v3_rm_score(rm, &s, 1, &v, &err), &err);
    float direct = 0;
    const int32_t *p = x.ids;
    int64_t n = (int64_t)x.n;
    CHECK_OK(v3_rm_score_ids(rm, &p, &n, 1, &direct, &err), &err);
    CHECK(v.status == V3_REWARD_OK && v.score == direct, "raw: sample score %g, ids score %g", v.score,
          (double)direct);
    v3_rm_values_free(&v, 1);
    v3_tok_ids_free(&x);
    v3_tok_ids_free(&y);
    v3_rm_free(rm);
}

/* Invalid UTF-8 or malformed messages: that sample's error and fallback, the others scored. */
static void check_bad_input(const char *dir_a, v3_kctx *ctx) {
    v3_rm *rm = open_rm(dir_a, ctx, 0, 0, NAN);
    if (!rm) return;
    v3_reward_sample s[4] = {{.prompt = "ok?", .completion = "fine"},
                             {.prompt = "bad", .completion = "\xff\xfe"},
                             {.messages_json = "{\"role\": \"user\"}", .completion = "x"},
                             {.messages_json = "[{\"role\": \"user\", \"content\": null}]",
                              .completion = "x"}};
    v3_reward_value v[4];
    v3_err err = {0};
    CHECK_OK(v3_rm_score(rm, s, 4, v, &err), &err);
    CHECK(v[0].status == V3_REWARD_OK && isfinite(v[0].score), "bad input: the good sample");
    for (int i = 1; i < 4; i++)
        CHECK(v[i].status == V3_REWARD_ERROR && isnan(v[i].score) && v[i].error, "bad input %d: status %d", i,
              v[i].status);
    CHECK(v[1].error && strstr(v[1].error, "UTF-8"), "bad input: %s", v[1].error ? v[1].error : "");
    v3_rm_values_free(v, 4);
    v3_rm_free(rm);
}

/* A Lua function and the reward model scored together. */
static void check_mix(const char *dir_a, const ref *r, v3_kctx *ctx) {
    char tmp[512], script[700];
    t_tmpdir(tmp, sizeof tmp);
    snprintf(script, sizeof script, "%s/len.lua", tmp);
    FILE *f = fopen(script, "w");
    if (!f) return;
    fputs("return { name = 'len', score = function(s) if s.completion == '' then return nil end "
          "return #s.completion / 10 end }\n", f);
    fclose(f);
    v3_reward_script sc = {.path = script};
    v3_reward_opts ho = {.scripts = &sc, .n_scripts = 1, .n_workers = 1};
    v3_reward_host *h = NULL;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &ho, &err), &err);
    v3_rm_opts o = {.dir = dir_a, .name = "helpful", .weight = 0.5, .has_weight = 1};
    v3_rm *rm = NULL;
    CHECK_OK(v3_rm_init(&rm, &o, ctx, &err), &err);
    if (!h || !rm) goto out;
    v3_rm *rms[2] = {rm, rm};
    v3_rm_mix x = {h, rms, 1};
    CHECK(v3_rm_mix_n_funcs(&x) == 2 && !strcmp(v3_rm_mix_func(&x, 1)->name, "helpful") &&
              v3_rm_mix_func(&x, 1)->weight == 0.5 && strlen(v3_rm_mix_func(&x, 1)->sha256) == 64,
          "mix: function list");
    int n = (int)json_array_size(json_object_get(r->j, "chat_cases"));
    v3_reward_sample s[8];
    char *msgs[8], *rows[8];
    v3_reward_result res[8];
    for (int i = 0; i < n; i++) chat_sample(r, (size_t)i, &s[i], &msgs[i], &rows[i]);
    CHECK_OK(v3_rm_mix_score(&x, s, n, res, &err), &err);
    for (int i = 0; i < n; i++) {
        double lua = strlen(s[i].completion) ? (double)strlen(s[i].completion) / 10 : NAN;
        double rmv = case_score(r, "chat_cases", (size_t)i, 0);
        double want = (isnan(lua) ? 0 : lua) + 0.5 * rmv;
        CHECK(isnan(lua) ? isnan(res[i].values[0].score) : fabs(res[i].values[0].score - lua) < 1e-12,
              "mix: case %d: the Lua value", i);
        CHECK(close_to(r, res[i].values[1].score, rmv), "mix: case %d: the model's value", i);
        CHECK(fabs(res[i].reward - want) <= TOL * fmax(fabs(want), r->scale),
              "mix: case %d: reward %.8g, want %.8g", i, res[i].reward, want);
        CHECK(res[i].n_scored == (isnan(lua) ? 1 : 2), "mix: case %d: n_scored %d", i, res[i].n_scored);
    }
    v3_reward_results_free(res, n);
    /* the model alone (no host), and a duplicate name refused */
    v3_rm_mix only = {NULL, rms, 1};
    CHECK_OK(v3_rm_mix_score(&only, s, n, res, &err), &err);
    for (int i = 0; i < n; i++)
        CHECK(fabs(res[i].reward - 0.5 * res[i].values[0].score) < 1e-12, "model only: reward");
    v3_reward_results_free(res, n);
    v3_rm_mix dup = {h, rms, 2};
    CHECK(v3_rm_mix_score(&dup, s, n, res, &err) == V3_EINVAL && strstr(err.msg, "helpful"),
          "two models named alike were accepted: %s", err.msg);
    for (int i = 0; i < n; i++) {
        free(msgs[i]);
        free(rows[i]);
    }
out:
    v3_rm_free(rm);
    v3_reward_host_free(h);
    remove(script);
}

static void check_entry(void) {
    v3_rm_opts o;
    v3_err err = {0};
    json_t *e = json_loads("{\"model\": \"rm/\", \"weight\": 0.25, \"template\": \"r1\", \"label\": 1, "
                           "\"max_tokens\": 2048, \"fallback\": \"nan\", \"name\": \"pref\"}", 0, NULL);
    CHECK_OK(v3_rm_opts_from_json(e, &o, &err), &err);
    CHECK(!strcmp(o.dir, "rm/") && o.has_weight && o.weight == 0.25 && !strcmp(o.template_name, "r1") &&
              o.label == 1 && o.max_tokens == 2048 && isnan(o.fallback) && !strcmp(o.name, "pref"),
          "entry fields");
    json_decref(e);
    e = json_loads("{\"model\": \"rm\", \"temperature\": 1}", 0, NULL);
    CHECK(v3_rm_opts_from_json(e, &o, &err) == V3_EINVAL && strstr(err.msg, "temperature"), "unknown key: %s",
          err.msg);
    json_decref(e);
    e = json_loads("{\"weight\": 1}", 0, NULL);
    CHECK(v3_rm_opts_from_json(e, &o, &err) == V3_EINVAL && strstr(err.msg, "model"), "no model: %s",
          err.msg);
    json_decref(e);
    e = json_loads("{\"model\": \"rm\", \"label\": 0.5}", 0, NULL);
    CHECK(v3_rm_opts_from_json(e, &o, &err) == V3_EINVAL, "a fractional label was accepted");
    json_decref(e);
}

int main(void) {
    v3_kctx ctx;
    v3_err err = {0};
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char dir_a[1200], dir_b[1200];
    t_source_path("tests/golden/data/rm_a", dir_a, sizeof dir_a);
    t_source_path("tests/golden/data/rm_b", dir_b, sizeof dir_b);
    ref ra = {0}, rb = {0};
    if (!ref_open(&ra, dir_a) && !ref_open(&rb, dir_b)) {
        check_ids("rm_a", dir_a, &ra, &ctx);
        check_ids("rm_b", dir_b, &rb, &ctx);
        check_chat("rm_a", dir_a, &ra, &ctx, 0);
        check_chat("rm_b", dir_b, &rb, &ctx, 1);
        check_refusals(&ctx, dir_a);
        check_pool_and_raw(dir_a, &ctx);
        check_bad_input(dir_a, &ctx);
        check_mix(dir_a, &ra, &ctx);
        check_entry();
    }
    json_decref(ra.j);
    json_decref(rb.j);
    v3_kctx_free(&ctx);
    return t_finish("test_reward_model");
}
