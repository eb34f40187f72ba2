/* test_reward_builtin2.c — the built-in rewards reasoning_steps, repetition, cosine_length, overlong
 * and language (rewards/NAME.lua over the C helpers v3.text.*), scored through the reward host.
 *
 * Expected values are derived by hand from the published definitions, with the arithmetic in the
 * comments: open-r1's src/open_r1/rewards.py (reasoning_steps_reward, get_repetition_penalty_reward,
 * get_cosine_scaled_reward, get_soft_overlong_punishment = DAPO, arXiv 2503.14476, eq. 13) and the
 * DeepSeek-R1 report (arXiv 2501.12948, sec. 2.3.2: proportion of target-language words in the
 * CoT). Then the golden rows of tests/golden/data/open_r1_rewards.jsonl (open-r1's functions run in
 * Python by tests/golden/gen_open_r1_rewards.py) are rescored. Options are set through small
 * wrapper scripts, `return require("NAME").new{...}`, written to a scratch directory. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/jsonl.h"
#include "rewards/host.h"
#include "testutil.h"

#define NO_SCORE NAN /* expected: skipped (nil) */

typedef struct ctx {
    char rdir[1024]; /* the source tree's rewards/ */
    char tmp[1024];  /* scratch dir for wrapper scripts */
    int n_wrappers;
} ctx;

/* A script path: "NAME" is the built-in rewards/NAME.lua; "NAME{opts}" is a wrapper script that
 * returns require("NAME").new{opts}; anything else with a newline is a script body. */
static const char *script_for(ctx *c, const char *spec, char *buf, size_t n) {
    int body = strchr(spec, '\n') != NULL;
    const char *brace = body ? NULL : strchr(spec, '{');
    if (!brace && !body) {
        snprintf(buf, n, "%s/%s.lua", c->rdir, spec);
        return buf;
    }
    snprintf(buf, n, "%s/w%d.lua", c->tmp, c->n_wrappers++);
    FILE *f = fopen(buf, "w");
    if (!f) return NULL;
    if (brace) fprintf(f, "return require(\"%.*s\").new%s\n", (int)(brace - spec), spec, brace);
    else fputs(spec, f);
    fclose(f);
    return buf;
}

/* Opens a host for one script; NULL (with err) when it does not load. */
static v3_reward_host *open_one(ctx *c, const char *spec, v3_err *err) {
    char path[2048];
    const char *dirs[1] = {c->rdir};
    v3_reward_script sc = {.path = script_for(c, spec, path, sizeof path)};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 2, .timeout_ms = 5000,
                        .fallback = -99, .reward_dirs = dirs, .n_reward_dirs = 1};
    v3_reward_host *h = NULL;
    if (!sc.path || v3_reward_host_init(&h, &o, err) != V3_OK) return NULL;
    return h;
}

static int close_to(double got, double want) {
    return got == want || fabs(got - want) <= 1e-12;
}

/* Scores s[0..n) with `spec` and checks each against want[i] (NaN: a skip). */
static void expect(ctx *c, const char *spec, const v3_reward_sample *s, const double *want, int n,
                   const char *what) {
    v3_err err = {0};
    v3_reward_host *h = open_one(c, spec, &err);
    CHECK(h != NULL, "%s: %s does not load: %s", what, spec, err.msg);
    if (!h) return;
    v3_reward_result *r = calloc((size_t)n, sizeof *r);
    CHECK_OK(v3_reward_host_score(h, s, n, r, &err), &err);
    for (int i = 0; i < n; i++) {
        const v3_reward_value *v = &r[i].values[0];
        if (isnan(want[i]))
            CHECK(v->status == V3_REWARD_SKIP, "%s case %d: want a skip, got status %d score %.17g %s",
                  what, i, v->status, v->score, v->error ? v->error : "");
        else
            CHECK(v->status == V3_REWARD_OK && close_to(v->score, want[i]),
                  "%s case %d: got %.17g (status %d %s), want %.17g", what, i, v->score, v->status,
                  v->error ? v->error : "", want[i]);
    }
    v3_reward_results_free(r, n);
    free(r);
    v3_reward_host_free(h);
}

/* A module whose options are wrong must fail to load, naming the problem. */
static void expect_load_error(ctx *c, const char *spec, const char *needle) {
    v3_err err = {0};
    v3_reward_host *h = open_one(c, spec, &err);
    CHECK(h == NULL && strstr(err.msg, needle), "%s: want a load error with '%s', got '%s'", spec,
          needle, h ? "(loaded)" : err.msg);
    v3_reward_host_free(h);
}

static double elapsed_of(ctx *c, const char *spec, const v3_reward_sample *s, double *score,
                         int *status) {
    v3_err err = {0};
    v3_reward_host *h = open_one(c, spec, &err);
    *status = -1;
    if (!h) return -1;
    v3_reward_result r;
    double ms = -1;
    if (v3_reward_host_score(h, s, 1, &r, &err) == V3_OK) {
        *score = r.values[0].score;
        *status = r.values[0].status;
        ms = r.values[0].elapsed_ms;
        v3_reward_results_free(&r, 1);
    }
    v3_reward_host_free(h);
    return ms;
}

/* ~1 MiB of `unit` repeated (the host caps completions at 1 MiB). */
static char *repeat(const char *unit, size_t total) {
    size_t u = strlen(unit), reps = total / u;
    char *p = malloc(reps * u + 1);
    for (size_t i = 0; i < reps; i++) memcpy(p + i * u, unit, u);
    p[reps * u] = 0;
    return p;
}

static void test_reasoning_steps(ctx *c) {
    /* count = len(re.findall(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", t));
     * score = min(1, count / 3) */
    static const struct {
        const char *text;
        int count;
    } k[] = {
        {"", 0},
        {"Step 1: add\nStep 2: carry\nStep 3: done", 3},           /* three "Step N:" */
        {"1. first\n2. second", 1},                                 /* ^ = start of text only */
        {"First, we add. Next, we carry. Finally, done.", 3},
        {"Step 12: x, Step : y, step 1: z", 1},                     /* no digits; lowercase s */
        {"\n- a\n* b", 2},                                          /* "\n-", "\n*" */
        {"Step \xd9\xa1\xd9\xa2: Arabic-Indic digits", 1},          /* U+0661 U+0662 are \d */
        {"Step \xef\xbc\x91: fullwidth one", 1},                    /* U+FF11 is \d */
        {"Step 1:Step 2:Step 3:Step 4:", 4},                        /* min(1, 4/3) = 1 */
        {" 1. indented", 0},                                        /* ^ is position 0 */
        {"Second,First,Next,", 3},
        {"Step 1 : no", 0},                                         /* ':' must follow the digits */
        {"\xe0\xa5\xa7\xe0\xa5\xa8. Devanagari", 1},                /* ^\d+\. with U+0967 U+0968 */
        {"First,First,", 2},                                        /* non-overlapping, 2/3 */
        {"\n\n-", 1},                                               /* "\n" then "\n-" */
    };
    enum { N = sizeof k / sizeof k[0] };
    v3_reward_sample s[N + 1];
    double want[N + 1];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        s[i].completion = k[i].text;
        want[i] = fmin(1.0, k[i].count / 3.0);
    }
    s[N].completion = NULL; /* no completion: 0 */
    want[N] = 0;
    expect(c, "reasoning_steps", s, want, N + 1, "reasoning_steps");

    /* steps = 5: "First, Second," has 2 -> 2/5 */
    v3_reward_sample s2 = {.completion = "First, Second,"};
    double w2 = 2.0 / 5.0;
    expect(c, "reasoning_steps{steps = 5}", &s2, &w2, 1, "reasoning_steps steps=5");

    /* 1 MiB of "Finally, " -> 116508 matches -> 1 */
    char *big = repeat("Finally, ", 1u << 20);
    v3_reward_sample sb = {.completion = big};
    double sc = 0;
    int st;
    double ms = elapsed_of(c, "reasoning_steps", &sb, &sc, &st);
    CHECK(st == V3_REWARD_OK && sc == 1.0, "reasoning_steps 1 MiB: status %d score %g", st, sc);
    printf("reasoning_steps on 1 MiB: %.1f ms\n", ms);
    free(big);
    expect_load_error(c, "reasoning_steps{steps = 0}", "steps");
}

static void test_repetition(ctx *c) {
    /* words = text.lower().split(); ngrams = zip(*[words[i:] for i in range(3)]);
     * score = (1 - len(set(ngrams)) / len(ngrams)) * -1; 0 when empty or fewer than 3 words */
    static const struct {
        const char *text;
        double want;
    } k[] = {
        {"", 0},
        {"a b", 0},                                   /* 2 words < 3 */
        {"a b c", 0},                                 /* 1 trigram, 1 distinct: (1 - 1) * -1 */
        {"a b c a b c", -(1 - 3.0 / 4)},              /* abc bca cab abc: 4, 3 distinct */
        {"The cat THE CAT the cat", -(1 - 2.0 / 4)},  /* the cat the / cat the cat, twice each */
        /* U+3000, U+00A0, U+2028 separate words: x y x y x -> xyx yxy xyx: 3, 2 distinct */
        {"x\xe3\x80\x80y\xc2\xa0x\xe3\x80\x80y\xe2\x80\xa8x", -(1 - 2.0 / 3)},
        /* U+200B is no whitespace for str.split(): one word "x\u200by" three times -> 1 trigram */
        {"x\xe2\x80\x8by x\xe2\x80\x8by x\xe2\x80\x8by", 0},
        /* final sigma: "ΟΔΟΣ".lower() == "οδος" (ς): ο a b ο a b -> oab abo boa oab: 4, 3 distinct */
        {"\xce\x9f\xce\x94\xce\x9f\xce\xa3 a b \xce\xbf\xce\xb4\xce\xbf\xcf\x82 a b", -(1 - 3.0 / 4)},
        /* ... and not "οδοσ" (σ): 4 distinct trigrams -> 0 */
        {"\xce\x9f\xce\x94\xce\x9f\xce\xa3 a b \xce\xbf\xce\xb4\xce\xbf\xcf\x83 a b", 0},
        /* "ΟΔΟΣ." -> "οδος." (the period is case-ignorable and not cased) */
        {"\xce\x9f\xce\x94\xce\x9f\xce\xa3. a b \xce\xbf\xce\xb4\xce\xbf\xcf\x82. a b", -(1 - 3.0 / 4)},
        /* "İ".lower() == "i\u0307" (two code points), equal to a written "i\u0307" */
        {"\xc4\xb0 a b i\xcc\x87 a b", -(1 - 3.0 / 4)},
        {"\xc4\xb0 a b i a b", 0},
        /* KELVIN SIGN U+212A lowercases to "k" */
        {"\xe2\x84\xaa a b k a b", -(1 - 3.0 / 4)},
        /* "ẞ" U+1E9E lowercases to "ß" */
        {"\xe1\xba\x9e a b \xc3\x9f a b", -(1 - 3.0 / 4)},
        /* "  a  b  c  a  b  c " with tabs and newlines: like "a b c a b c" */
        {"  a\t b\n c  a\r\nb\x0b c ", -(1 - 3.0 / 4)},
    };
    enum { N = sizeof k / sizeof k[0] };
    v3_reward_sample s[N + 1];
    double want[N + 1];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        s[i].completion = k[i].text;
        want[i] = k[i].want;
    }
    s[N].completion = NULL;
    want[N] = 0;
    expect(c, "repetition", s, want, N + 1, "repetition");

    /* unigrams, max_penalty -0.5: "a b a c": 4 unigrams, 3 distinct -> (1 - 3/4) * -0.5 = -0.125 */
    v3_reward_sample s2[2] = {{.completion = "a b a c"}, {.completion = "a"}};
    double w2[2] = {-0.125, 0}; /* "a": 1 unigram, 1 distinct: 0 */
    expect(c, "repetition{ngram_size = 1, max_penalty = -0.5}", s2, w2, 2, "repetition n=1");
    /* 4-grams: "a b c d a b c d": abcd bcda cdab dabc abcd -> 5, 4 distinct -> -(1 - 4/5) */
    v3_reward_sample s3 = {.completion = "a b c d a b c d"};
    double w3 = -(1 - 4.0 / 5);
    expect(c, "repetition{ngram_size = 4}", &s3, &w3, 1, "repetition n=4");

    expect_load_error(c, "repetition{max_penalty = 0.5}", "should not be positive");
    expect_load_error(c, "repetition{ngram_size = 0}", "ngram_size");

    /* 1 MiB of "a ": 524288 words, 524286 trigrams, 1 distinct -> -(1 - 1/524286) */
    char *big = repeat("a ", 1u << 20);
    v3_reward_sample sb = {.completion = big};
    double sc = 0;
    int st;
    double ms = elapsed_of(c, "repetition", &sb, &sc, &st);
    CHECK(st == V3_REWARD_OK && close_to(sc, -(1 - 1.0 / 524286)), "repetition 1 MiB a: status %d score %.17g",
          st, sc);
    printf("repetition on 1 MiB (524288 equal words): %.1f ms\n", ms);
    free(big);
    /* ~1 MiB of distinct words "w0 w1 w2 ...": every trigram distinct -> 0 */
    size_t cap = (1u << 20) - 16, len = 0;
    big = malloc(cap + 16);
    for (long i = 0; len < cap; i++) len += (size_t)sprintf(big + len, "w%ld ", i);
    sb.completion = big;
    ms = elapsed_of(c, "repetition", &sb, &sc, &st);
    CHECK(st == V3_REWARD_OK && sc == 0, "repetition 1 MiB distinct: status %d score %.17g", st, sc);
    printf("repetition on 1 MiB (distinct words): %.1f ms\n", ms);
    free(big);
}

static void test_cosine(ctx *c) {
    /* score = lo + 0.5 * (hi - lo) * (1 + cos(pi * L / 1000)); correct: lo, hi = 0.5, 1;
     * wrong: lo, hi = -0.5, -1. L = #completion_ids when given, else code points. */
    int32_t *ids = calloc(2000, sizeof *ids);
    const char *right = "so \\boxed{42}", *wrong = "so \\boxed{41}", *row = "{\"answer\":\"$42$\"}";
    v3_reward_sample s[] = {
        {.completion = right, .completion_ids = ids, .n_completion_ids = 0, .row_json = row},
        /* L = 0: cos 0 = 1 -> 0.5 + 0.25 * 2 = 1 */
        {.completion = right, .completion_ids = ids, .n_completion_ids = 1000, .row_json = row},
        /* L = 1000: cos(pi) = -1 -> 0.5 */
        {.completion = right, .completion_ids = ids, .n_completion_ids = 2000, .row_json = row},
        /* L = 2000: cos(2 pi) = 1 -> 1.0 again (open-r1 does not clamp) */
        {.completion = right, .completion_ids = ids, .n_completion_ids = 500, .row_json = row},
        /* L = 500: cos(pi/2) ~ 6e-17 -> 0.75 */
        {.completion = wrong, .completion_ids = ids, .n_completion_ids = 0, .row_json = row},
        /* wrong, L = 0: -0.5 + 0.5 * (-1 - -0.5) * 2 = -1 */
        {.completion = wrong, .completion_ids = ids, .n_completion_ids = 1000, .row_json = row},
        /* wrong, L = 1000: -0.5 */
        {.completion = wrong, .completion_ids = ids, .n_completion_ids = 250, .row_json = row},
        /* wrong, L = 250: -0.5 - 0.25 * (1 + cos(pi/4)) = -0.5 - 0.25 * 1.70710678... */
        {.completion = right, .row_json = "{\"answer\":\"no math here\"}"},
        /* the gold does not parse: 1.0 (open-r1) */
        {.completion = right},
        /* no gold: skipped */
        {.completion = NULL, .row_json = row},
        /* no completion: wrong, L = 0 -> -1 */
        {.completion = right, .row_json = "{\"solution\":\"$42$\",\"answer\":\"$7$\"}"},
        /* `solution` wins over `answer`: right, L = 13 characters -> 0.5 + 0.25 (1 + cos(0.013 pi)) */
    };
    enum { N = sizeof s / sizeof s[0] };
    const double pi = 3.14159265358979323846;
    double want[N] = {1.0, 0.5, 1.0, 0.75, -1.0, -0.5, -0.5 - 0.25 * (1 + cos(pi / 4)), 1.0,
                      NO_SCORE, -1.0, 0.5 + 0.25 * (1 + cos(13.0 / 1000 * pi))};
    expect(c, "cosine_length", s, want, N, "cosine_length");

    /* characters, not bytes: "\boxed{42}" (10) + 990 × "é" (2 bytes each) = 1000 code points ->
     * cos(pi) = -1 -> 0.5 (with bytes, L = 1990 would give ~1.0) */
    char text[4096];
    size_t o = (size_t)sprintf(text, "\\boxed{42}");
    for (int i = 0; i < 990; i++) o += (size_t)sprintf(text + o, "\xc3\xa9");
    v3_reward_sample sc[2] = {{.completion = text, .row_json = row},
                              {.completion = right, .completion_ids = ids, .n_completion_ids = 2000,
                               .row_json = row}};
    double wc[2] = {0.5, 1.0};
    expect(c, "cosine_length", sc, wc, 1, "cosine_length chars");
    /* clamp = true: L = 2000 is held at 1000 -> 0.5; unparsed_gold = false: skip */
    wc[1] = 0.5;
    expect(c, "cosine_length{clamp = true}", sc + 1, wc + 1, 1, "cosine_length clamp");
    v3_reward_sample su = {.completion = right, .row_json = "{\"answer\":\"no math\"}"};
    double wu = NO_SCORE;
    expect(c, "cosine_length{unparsed_gold = false}", &su, &wu, 1, "cosine_length unparsed=false");
    /* length = "chars" with ids: L = 13 characters, not 1000 tokens */
    v3_reward_sample sl = {.completion = right, .completion_ids = ids, .n_completion_ids = 1000, .row_json = row};
    double wl = 0.5 + 0.25 * (1 + cos(13.0 / 1000 * pi));
    expect(c, "cosine_length{length = 'chars'}", &sl, &wl, 1, "cosine_length length=chars");
    expect_load_error(c, "cosine_length{max_len = 0}", "max_len");
    free(ids);
}

static void test_overlong(ctx *c) {
    /* L_max = 16384, L_cache = 4096: 0 for L <= 12288; (12288 - L) / 4096 up to 16384; then -1 */
    int32_t *ids = calloc(20000, sizeof *ids);
    static const struct {
        int n;
        double want;
    } k[] = {
        {0, 0}, {12288, 0}, {12289, -1.0 / 4096}, {14336, -2048.0 / 4096}, {16383, -4095.0 / 4096},
        {16384, -1.0}, {16385, -1.0}, {20000, -1.0},
    };
    enum { N = sizeof k / sizeof k[0] };
    v3_reward_sample s[N + 1];
    double want[N + 1];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        s[i].completion = "x";
        s[i].completion_ids = ids;
        s[i].n_completion_ids = k[i].n;
        want[i] = k[i].want;
    }
    s[N].completion = "no ids"; /* no completion_ids: skipped */
    want[N] = NO_SCORE;
    expect(c, "overlong", s, want, N + 1, "overlong");

    /* L_max = 100, L_cache = 20: 80 -> 0; 90 -> (80 - 90) / 20 = -0.5; 100 -> -1; 101 -> -1 */
    v3_reward_sample s2[4];
    double w2[4] = {0, -0.5, -1, -1};
    int n2[4] = {80, 90, 100, 101};
    memset(s2, 0, sizeof s2);
    for (int i = 0; i < 4; i++) s2[i].completion_ids = ids, s2[i].n_completion_ids = n2[i];
    expect(c, "overlong{max_completion_len = 100, soft_punish_cache = 20}", s2, w2, 4, "overlong 100/20");
    /* L_cache = 0: 100 -> 0, 101 -> -1 */
    double w3[2] = {0, -1};
    s2[0].n_completion_ids = 100;
    s2[1].n_completion_ids = 101;
    expect(c, "overlong{max_completion_len = 100, soft_punish_cache = 0}", s2, w3, 2, "overlong 100/0");
    expect_load_error(c, "overlong{max_completion_len = 10, soft_punish_cache = 20}", "soft_punish_cache");
    free(ids);
}

static void test_language(ctx *c) {
    /* score = units in the target's scripts / all units of the reasoning; a Han or kana character is
     * a unit, elsewhere a run of letters (a word) is */
    v3_reward_sample s[] = {
        /* 0: zh; think part: 我们先计算 (5 Han), "。" no unit, Then check (2 Latin) -> 5/7 */
        {.completion = "<think>\n\xe6\x88\x91\xe4\xbb\xac\xe5\x85\x88\xe8\xae\xa1\xe7\xae\x97\xe3\x80\x82\nThen check.\n</think>\n"
                       "\xe7\xad\x94\xe6\xa1\x88 42",
         .row_json = "{\"language\":\"zh\"}"},
        /* 1: sample field en: Hello world (2 Latin) мир (1 Cyrillic) -> 2/3 */
        {.completion = "<think>Hello \xd0\xbc\xd0\xb8\xd1\x80 world</think>", .row_json = "{\"language\":\"en\"}"},
        /* 2: target from the prompt 计算六乘七。 (Han); reasoning 六乘七等于四十二 (8 Han) -> 8/8 */
        {.prompt = "\xe8\xae\xa1\xe7\xae\x97\xe5\x85\xad\xe4\xb9\x98\xe4\xb8\x83\xe3\x80\x82",
         .completion = "<think>\xe5\x85\xad\xe4\xb9\x98\xe4\xb8\x83\xe7\xad\x89\xe4\xba\x8e\xe5\x9b\x9b\xe5\x8d\x81\xe4\xba\x8c</think>"},
        /* 3: same prompt, English reasoning: 0 Han of 3 Latin words -> 0 */
        {.prompt = "\xe8\xae\xa1\xe7\xae\x97\xe5\x85\xad\xe4\xb9\x98\xe4\xb8\x83\xe3\x80\x82",
         .completion = "<think>six times seven</think>"},
        /* 4: the last user message is Russian (Сколько будет: Cyrillic); no think block, whole
         * completion: Шесть на семь (3 Cyrillic) is (1 Latin) -> 3/4 */
        {.messages_json = "[{\"role\":\"system\",\"content\":\"You are a helpful assistant\"},"
                          "{\"role\":\"user\",\"content\":\"\xd0\xa1\xd0\xba\xd0\xbe\xd0\xbb\xd1\x8c\xd0\xba\xd0\xbe \xd0\xb1\xd1\x83\xd0\xb4\xd0\xb5\xd1\x82 6*7?\"}]",
         .completion = "\xd0\xa8\xd0\xb5\xd1\x81\xd1\x82\xd1\x8c \xd0\xbd\xd0\xb0 \xd1\x81\xd0\xb5\xd0\xbc\xd1\x8c is 42"},
        /* 5: special tokens are not prompt text: <｜begin▁of▁sentence｜><｜User｜>计算<｜Assistant｜>
         * would be 5 Latin words vs 2 Han; stripped, the target is Han. Only "</think>": the
         * reasoning is before it, 这是答案 (4 Han) -> 1 */
        {.prompt = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>"
                   "\xe8\xae\xa1\xe7\xae\x97<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
         .completion = "\xe8\xbf\x99\xe6\x98\xaf\xe7\xad\x94\xe6\xa1\x88</think>\nanswer"},
        /* 6: Japanese prompt これは何ですか (kana + Han) -> han+kana; これは漢字です: 7 units, all in -> 1 */
        {.prompt = "\xe3\x81\x93\xe3\x82\x8c\xe3\x81\xaf\xe4\xbd\x95\xe3\x81\xa7\xe3\x81\x99\xe3\x81\x8b",
         .completion = "<think>\xe3\x81\x93\xe3\x82\x8c\xe3\x81\xaf\xe6\xbc\xa2\xe5\xad\x97\xe3\x81\xa7\xe3\x81\x99</think>"},
        /* 7: empty completion: no unit -> no_words = 0 */
        {.completion = "", .row_json = "{\"language\":\"en\"}"},
        /* 8: no completion -> 0 */
        {.row_json = "{\"language\":\"en\"}"},
        /* 9: no target at all (no option, field or prompt): skipped */
        {.completion = "hello"},
        /* 10: a code dataset's language "python" is no natural language: the prompt decides (Latin);
         * two plus two -> 3/3 */
        {.prompt = "What is 2+2?", .completion = "<think>two plus two</think>",
         .row_json = "{\"language\":\"python\"}"},
        /* 11: en: hello (Latin) 世 界 (2 Han) abc (Latin) -> 2/4 */
        {.completion = "hello\xe4\xb8\x96\xe7\x95\x8c" "abc", .row_json = "{\"language\":\"en-US\"}"},
        /* 12: en: math only, 1+1=2: no unit -> 0 */
        {.completion = "<think>1+1=2</think>", .row_json = "{\"language\":\"en\"}"},
        /* 13: en: "cafe\u0301s" is one word (the combining acute continues it) + мир -> 1/2 */
        {.completion = "cafe\xcc\x81s \xd0\xbc\xd0\xb8\xd1\x80", .row_json = "{\"language\":\"en\"}"},
        /* 14: unclosed <think>: everything after it; zh: 好 (1 Han) ok (1 Latin) -> 1/2 */
        {.completion = "<think>\xe5\xa5\xbd ok", .row_json = "{\"language\":\"zh\"}"},
    };
    enum { N = sizeof s / sizeof s[0] };
    double want[N] = {5.0 / 7, 2.0 / 3, 1, 0, 3.0 / 4, 1, 1, 0, 0, NO_SCORE, 1, 0.5, 0, 0.5, 0.5};
    expect(c, "language", s, want, N, "language");

    /* the option wins over the sample field: option en on case 1's zh-less text -> 2/3 still; on
     * case 0 (field zh), en -> 2/7 */
    double w1[2] = {2.0 / 7, 2.0 / 3};
    expect(c, "language{language = 'en'}", s, w1, 2, "language option en");
    /* a list: {"latin", "cyrillic"} on case 1 -> 3/3 */
    double w2 = 1;
    expect(c, "language{language = {'latin', 'cyrillic'}}", s + 1, &w2, 1, "language list");
    expect_load_error(c, "language{language = 'klingon'}", "unknown language");

    /* 1 MiB of "数学 math " : per unit 2 Han + 1 Latin -> zh: 2/3 */
    char *big = repeat("\xe6\x95\xb0\xe5\xad\xa6 math ", 1u << 20);
    v3_reward_sample sb = {.completion = big, .row_json = "{\"language\":\"zh\"}"};
    double sc = 0;
    int st;
    double ms = elapsed_of(c, "language", &sb, &sc, &st);
    CHECK(st == V3_REWARD_OK && close_to(sc, 2.0 / 3), "language 1 MiB: status %d score %.17g", st, sc);
    printf("language on 1 MiB: %.1f ms\n", ms);
    free(big);
    /* a 1 MiB prompt of unclosed "<|" and "<｜" (special-token stripping must stay linear): no
     * letters, no target -> skipped, not killed */
    big = repeat("<|<\xef\xbd\x9c", 1u << 20);
    v3_reward_sample sp = {.prompt = big, .completion = "hello"};
    ms = elapsed_of(c, "language", &sp, &sc, &st);
    CHECK(st == V3_REWARD_SKIP, "language 1 MiB '<|' prompt: status %d", st);
    printf("language with a 1 MiB adversarial prompt: %.1f ms\n", ms);
    free(big);
}

/* v3.text directly: len counts code points; ngrams returns total, unique, words */
static void test_text_module(ctx *c) {
    const char *body = "return function(s)\n"
                       "  local t, u, w = v3.text.ngrams(s.completion, 2)\n"
                       "  local c, n = v3.text.scripts(s.completion)\n"
                       "  return {score = v3.text.len(s.completion), t = t, u = u, w = w,\n"
                       "          steps = v3.text.reasoning_steps(s.completion), latin = c.latin, total = n}\n"
                       "end\n";
    char path[2048];
    v3_reward_script sc = {.path = script_for(c, body, path, sizeof path)};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 1, .timeout_ms = 2000};
    v3_reward_host *h = NULL;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    /* "a b a b\n- é中😀": code points a,' ',b,' ',a,' ',b,'\n','-',' ',é,中,😀 = 13;
     * words a b a b - é中😀 (6): bigrams ab ba ab b- -é中😀: 5, 4 distinct; steps: "\n-" = 1;
     * scripts: a b a b é (5 Latin words) 中 (Han): total 6 */
    v3_reward_sample s = {.completion = "a b a b\n- \xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"};
    v3_reward_result r;
    CHECK_OK(v3_reward_host_score(h, &s, 1, &r, &err), &err);
    const v3_reward_value *v = &r.values[0];
    CHECK(v->status == V3_REWARD_OK && v->score == 13, "v3.text.len: %g %s", v->score, v->error ? v->error : "");
    const char *want = "{\"latin\":5,\"steps\":1,\"t\":5,\"total\":6,\"u\":4,\"w\":6}";
    CHECK(v->extra_json && strcmp(v->extra_json, want) == 0, "v3.text: %s (want %s)",
          v->extra_json ? v->extra_json : "(none)", want);
    v3_reward_results_free(&r, 1);
    v3_reward_host_free(h);
}

/* The golden rows: one host per (reward, options), scoring that group's rows. */
typedef struct grow {
    char key[512]; /* reward + options JSON */
    json_t *row;
} grow;

static void test_golden(ctx *c) {
    char path[2048];
    t_source_path("tests/golden/data/open_r1_rewards.jsonl", path, sizeof path);
    v3_err err = {0};
    v3_jsonl *r = NULL;
    CHECK_OK(v3_jsonl_open(&r, path, V3_JSONL_LINES, 0, &err), &err);
    if (!r) return;
    grow *rows = NULL;
    int n = 0, cap = 0;
    for (;;) {
        v3_record rec;
        int got = 0;
        if (v3_jsonl_next(r, &rec, &got, &err) != V3_OK || !got) break;
        json_error_t je;
        json_t *j = json_loadb(rec.text, rec.len, 0, &je);
        CHECK(j != NULL, "golden line %lld: %s", (long long)rec.line, je.text);
        if (!j) continue;
        if (n == cap) rows = realloc(rows, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *rows);
        char *opts = json_dumps(json_object_get(j, "opts"), JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(rows[n].key, sizeof rows[n].key, "%s\t%s", json_string_value(json_object_get(j, "reward")),
                 opts ? opts : "{}");
        free(opts);
        rows[n++].row = j;
    }
    v3_jsonl_close(r);
    CHECK(n >= 400, "golden: only %d rows", n);
    int32_t *ids = calloc(20001, sizeof *ids);
    int checked = 0;
    char *done = calloc((size_t)n + 1, 1);
    for (int g = 0; g < n; g++) {
        if (done[g]) continue;
        int m = 0;
        v3_reward_sample *s = calloc((size_t)n, sizeof *s);
        double *want = calloc((size_t)n, sizeof *want);
        char **rowj = calloc((size_t)n, sizeof *rowj);
        for (int i = g; i < n; i++) {
            if (done[i] || strcmp(rows[i].key, rows[g].key) != 0) continue;
            done[i] = 1;
            json_t *j = rows[i].row;
            s[m].completion = json_string_value(json_object_get(j, "completion"));
            json_t *sol = json_object_get(j, "solution");
            if (sol) {
                json_t *o = json_pack("{sO}", "solution", sol);
                rowj[m] = json_dumps(o, JSON_COMPACT);
                json_decref(o);
                s[m].row_json = rowj[m];
            }
            json_t *nid = json_object_get(j, "n_ids");
            if (nid) {
                s[m].completion_ids = ids;
                s[m].n_completion_ids = (int)json_integer_value(nid);
            }
            want[m++] = json_number_value(json_object_get(j, "expected"));
        }
        /* the wrapper: require("NAME").new(v3.json.decode([==[OPTS]==])) */
        const char *tab = strchr(rows[g].key, '\t');
        char body[1200];
        snprintf(body, sizeof body, "return require(\"%.*s\").new(v3.json.decode([==[%s]==]))\n",
                 (int)(tab - rows[g].key), rows[g].key, tab + 1);
        char what[600];
        snprintf(what, sizeof what, "golden %s", rows[g].key);
        expect(c, body, s, want, m, what);
        checked += m;
        for (int i = 0; i < m; i++) free(rowj[i]);
        free(rowj);
        free(want);
        free(s);
    }
    printf("golden: %d rows of open-r1's rewards rescored\n", checked);
    for (int i = 0; i < n; i++) json_decref(rows[i].row);
    free(rows);
    free(done);
    free(ids);
}

int main(void) {
    ctx c = {0};
    t_source_path("rewards", c.rdir, sizeof c.rdir);
    t_tmpdir(c.tmp, sizeof c.tmp);
    test_reasoning_steps(&c);
    test_repetition(&c);
    test_cosine(&c);
    test_overlong(&c);
    test_language(&c);
    test_text_module(&c);
    test_golden(&c);
    for (int i = 0; i < c.n_wrappers; i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/w%d.lua", c.tmp, i);
        unlink(p);
    }
    rmdir(c.tmp);
    return t_finish("test_reward_builtin2");
}
