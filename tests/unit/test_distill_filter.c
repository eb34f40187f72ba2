/* test_distill_filter.c — the filter rules with exact counts, first on measured traces in memory
 * (each rule, their order, k per prompt by length and at random with a seed), then the whole
 * chain on synthetic traces through the store: import → verify (built-in verifiers in the reward
 * host) → filter (real DeepSeek-V3 tokenizer) → a second, non-destructive filter run → export in
 * both forms, whose conversations render through the r1-keep-reasoning template with the
 * reasoning present and trained on. */
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/chat.h"
#include "datasets/distill.h"
#include "datasets/distill_filter_internal.h"
#include "datasets/store.h"
#include "datasets/tokenizer.h"
#include "testutil.h"

static v3_distill_trace_info ti(int64_t id, int64_t prompt, int64_t tokens, double score) {
    return (v3_distill_trace_info){.id = id, .prompt_id = prompt, .tokens = tokens, .score = score,
                                   .has_verdict = !isnan(score), .script = 0, .language = 1.0,
                                   .repetition = 0.0, .rejected = -1};
}

static void test_rules(void) {
    enum { N = 12 };
    v3_distill_trace_info t[N];
    /* prompt 1: three correct of 100/50/70 tokens, one wrong; prompt 2: cut off, no answer,
     * unverified, too long, language mixed, looping, correct; prompt 3: one correct */
    t[0] = ti(1, 1, 100, 1.0);
    t[1] = ti(2, 1, 50, 1.0);
    t[2] = ti(3, 1, 70, 1.0);
    t[3] = ti(4, 1, 60, 0.0);
    t[4] = ti(5, 2, 80, 1.0), t[4].truncated = 1;
    t[5] = ti(6, 2, 80, 1.0), t[5].no_answer = 1;
    t[6] = ti(7, 2, 80, NAN);
    t[7] = ti(8, 2, 900, 1.0);
    t[8] = ti(9, 2, 80, 1.0), t[8].language = 0.5;
    t[9] = ti(10, 2, 80, 1.0), t[9].repetition = 0.8;
    t[10] = ti(11, 2, 30, 1.0);
    t[11] = ti(12, 3, 40, 1.0);
    v3_distill_filter_opts o;
    v3_distill_filter_opts_default(&o);
    o.max_tokens = 500;
    o.per_prompt = 1;
    v3_distill_filter_stats st = {0};
    /* shuffled input: the result does not depend on the order */
    v3_distill_trace_info s[N];
    for (int i = 0; i < N; i++) s[i] = t[(i * 5) % N];
    CHECK(v3_distill_apply_rules(s, N, &o, 1, &st) == V3_OK, "apply");
    int64_t want[V3_RULE_COUNT] = {1, 1, 2, 1, 1, 1, 2};
    for (int r = 0; r < V3_RULE_COUNT; r++)
        CHECK(st.removed[r] == want[r] && st.active[r], "rule %s removed %lld, want %lld",
              v3_distill_rule_name(r), (long long)st.removed[r], (long long)want[r]);
    CHECK(st.kept == 3 && st.prompts == 3 && st.prompts_kept == 3 && st.tokens_kept == 50 + 30 + 40,
          "kept %lld prompts %lld/%lld tokens %lld", (long long)st.kept, (long long)st.prompts_kept,
          (long long)st.prompts, (long long)st.tokens_kept);
    CHECK(s[1].id == 2 && s[1].rejected == -1 && s[0].rejected == V3_RULE_PER_PROMPT &&
          s[3].rejected == V3_RULE_CORRECT && s[6].rejected == V3_RULE_CORRECT &&
          s[7].rejected == V3_RULE_LENGTH, "per-trace verdicts (sorted by id)");

    /* keep_unverified, no bounds, no per-prompt: 1 2 3 7 8 11 12 pass */
    for (int i = 0; i < N; i++) s[i] = t[i];
    o.keep_unverified = 1;
    o.max_tokens = 0;
    o.per_prompt = 0;
    CHECK(v3_distill_apply_rules(s, N, &o, 1, &st) == V3_OK, "apply 2");
    CHECK(st.kept == 7 && st.removed[V3_RULE_CORRECT] == 1 && !st.active[V3_RULE_LENGTH] &&
          !st.active[V3_RULE_PER_PROMPT], "kept %lld", (long long)st.kept);

    /* random pick: k of each prompt, the same for the same seed, another for another seed */
    enum { M = 40 };
    v3_distill_trace_info r[M], r2[M];
    o = (v3_distill_filter_opts){0};
    o.per_prompt = 2;
    o.pick = V3_PICK_RANDOM;
    o.ngram = 1;
    int same = 1, differ = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        for (int i = 0; i < M; i++) r[i] = r2[M - 1 - i] = ti(i + 1, i % 4, 10, 1.0);
        o.seed = seed;
        v3_distill_apply_rules(r, M, &o, 0, &st);
        v3_distill_apply_rules(r2, M, &o, 0, &st);
        CHECK(st.kept == 8 && st.removed[V3_RULE_PER_PROMPT] == 32, "random: kept %lld", (long long)st.kept);
        for (int i = 0; i < M; i++) same &= r[i].rejected == r2[i].rejected;
        o.seed = seed + 100;
        for (int i = 0; i < M; i++) r2[i] = ti(i + 1, i % 4, 10, 1.0);
        v3_distill_apply_rules(r2, M, &o, 0, &st);
        for (int i = 0; i < M; i++) differ |= r[i].rejected != r2[i].rejected;
    }
    CHECK(same, "the same seed picks the same traces whatever the input order");
    CHECK(differ, "another seed picks other traces");
}

/* ---- the chain through the store ---- */

static char dir[512];

static int64_t sql_i64(const char *db_path, const char *sql) {
    v3_store *s = NULL;
    v3_err err = {0};
    int64_t v = -999;
    if (v3_store_open(&s, db_path, V3_STORE_READ, &err)) return v;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "sql failed: %s: %s\n", sql, sqlite3_errmsg(v3_store_db(s)));
    sqlite3_finalize(st);
    v3_store_close(s, NULL);
    return v;
}

static char *long_reasoning(void) {
    size_t cap = 8192;
    char *s = malloc(cap);
    s[0] = 0;
    size_t n = 0;
    for (int i = 1; i <= 120; i++)
        n += (size_t)snprintf(s + n, cap - n, "step %d adds %d to the total, ", i, i * 7 % 13);
    snprintf(s + n, cap - n, "so the result is nine.");
    return s;
}

static const char *write_traces(void) {
    static char path[600];
    snprintf(path, sizeof path, "%s/traces.jsonl", dir);
    FILE *f = fopen(path, "w");
    json_t *rows = json_array();
    const char *sol = "Two plus two is four.";
    char loop[4096] = "";
    for (int i = 0; i < 15; i++) strcat(loop, "Wait, let me check again. ");
    strcat(loop, "Three threes are nine.");
    char *lr = long_reasoning();
    /* P1: correct short, correct long, wrong, cut off */
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s}", "prompt", "What is 2+2?", "answer", "4",
        "solution", sol, "completion", "<think>\n2 plus 2 is 4.\n</think>\n\nThe answer is \\boxed{4}."));
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s}", "prompt", "What is 2+2?", "answer", "4",
        "solution", sol, "completion", "<think>\nTwo and two: count them one by one, one, two, three, "
        "four. So it is 4.\n</think>\n\nThe answer is \\boxed{4}."));
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s}", "prompt", "What is 2+2?", "answer", "4",
        "solution", sol, "completion", "<think>\n2 plus 2 is 5.\n</think>\n\n\\boxed{5}"));
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s}", "prompt", "What is 2+2?", "answer", "4",
        "solution", sol, "completion", "<think>\nLet me think about 2 plus"));
    /* P2: correct, mixed language, looping */
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "prompt", "What is 3*3?", "answer", "9",
        "completion", "<think>\nThree times three is nine.\n</think>\n\n\\boxed{9}"));
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "prompt", "What is 3*3?", "answer", "9",
        "completion", "<think>\n三乘以三等于九，我们再检查一遍：三加三加三也等于九。所以答案是九。\n</think>\n\n\\boxed{9}"));
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "prompt", "What is 3*3?", "answer", "9",
        "completion", "<think>\n"));
    json_string_set(json_object_get(json_array_get(rows, 6), "completion"), "");
    {
        char *c = malloc(strlen(loop) + 64);
        sprintf(c, "<think>\n%s\n</think>\n\n\\boxed{9}", loop);
        json_object_set_new(json_array_get(rows, 6), "completion", json_string(c));
        free(c);
    }
    /* P3: no reference (the math verifier skips it) */
    json_array_append_new(rows, json_pack("{s:s, s:s}", "prompt", "Capital of France?",
        "completion", "<think>\nIt is Paris, on the Seine.\n</think>\n\nParis"));
    /* P4: no reasoning; correct but long */
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "prompt", "What is 10-1?", "answer", "9",
        "completion", "\\boxed{9}"));
    {
        char *c = malloc(strlen(lr) + 64);
        sprintf(c, "<think>\n%s\n</think>\n\n\\boxed{9}", lr);
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "prompt", "What is 10-1?", "answer",
                                              "9", "completion", c));
        free(c);
    }
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        char *s = json_dumps(r, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
    }
    json_decref(rows);
    free(lr);
    fclose(f);
    return path;
}

/* The exported line n (0-based) of path, parsed. */
static json_t *line_of(const char *path, int n) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *line = NULL;
    size_t cap = 0;
    json_t *o = NULL;
    for (int i = 0; getline(&line, &cap, f) > 0; i++)
        if (i == n) {
            o = json_loads(line, 0, NULL);
            break;
        }
    free(line);
    fclose(f);
    return o;
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, c;
    if (!f) return -1;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void check_render(const v3_tokenizer *tok, const char *path) {
    json_t *o = line_of(path, 0);
    CHECK(o != NULL, "exported line parses");
    if (!o) return;
    json_t *msgs = json_object_get(o, "messages");
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *re = json_string_value(json_object_get(last, "reasoning_content"));
    const char *an = json_string_value(json_object_get(last, "content"));
    CHECK(re && an && !strcmp(re, "2 plus 2 is 4.") && !strcmp(an, "The answer is \\boxed{4}."),
          "assistant turn: [%s] [%s]", re, an);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system") &&
          !strcmp(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "Reason first."),
          "system prompt first");
    v3_chat_out out = {0};
    v3_chat_opts co = {.tmpl = V3_CHAT_R1_KEEP_REASONING};
    v3_err err = {0};
    CHECK_OK(v3_chat_render(tok, msgs, &co, &out, &err), &err);
    const char *want = "Reason first.<｜User｜>What is 2+2?<｜Assistant｜><think>\n2 plus 2 is 4.\n"
                       "</think>\n\nThe answer is \\boxed{4}.<｜end▁of▁sentence｜>";
    CHECK(out.text && strstr(out.text, want), "rendered: %s", out.text);
    /* the reasoning's tokens are in the sequence and carry the loss */
    v3_tok_ids r = {0};
    CHECK_OK(v3_tok_encode(tok, "2 plus 2 is", 11, 0, &r, &err), &err);
    int found = 0;
    for (size_t i = 0; i + r.n <= out.ids.n && !found; i++) {
        int eq = 1;
        for (size_t k = 0; k < r.n && eq; k++) eq = out.ids.ids[i + k] == r.ids[k] && out.mask[i + k];
        found = eq;
    }
    CHECK(found, "reasoning tokens present and masked for the loss");
    size_t masked = 0;
    for (size_t i = 0; i < out.ids.n; i++) masked += out.mask[i];
    CHECK(masked > r.n + 5, "loss on the reasoning and the answer: %zu tokens", masked);
    v3_tok_ids_free(&r);
    v3_chat_out_free(&out);
    json_decref(o);
}

static void test_chain(void) {
    char tokdir[600], db[600], vdir[600], paths[2][4200], out[600];
    t_data_path("deepseek-v3", tokdir, sizeof tokdir);
    char probe[700];
    snprintf(probe, sizeof probe, "%s/tokenizer.json", tokdir);
    FILE *pf = fopen(probe, "r");
    if (!pf) {
        printf("skip the store chain: no tokenizer at %s\n", tokdir);
        return;
    }
    fclose(pf);
    snprintf(db, sizeof db, "%s/run.db", dir);
    snprintf(vdir, sizeof vdir, "%s/verifiers", dir);
    const char *f = write_traces();
    v3_err err = {0};
    v3_distill_import_opts io;
    v3_distill_import_opts_default(&io);
    v3_distill_import_stats ist;
    CHECK_OK(v3_distill_import(db, &f, 1, &io, &ist, &err), &err);
    CHECK(ist.added == 10 && ist.truncated == 1 && ist.no_reasoning == 1, "imported %lld",
          (long long)ist.added);

    /* nothing selected yet: export refuses, --all works */
    snprintf(out, sizeof out, "%s/sft.jsonl", dir);
    v3_distill_export_opts eo = {0};
    v3_distill_export_stats est;
    int rc = v3_distill_export(db, out, &eo, &est, &err);
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "distill filter"), "no selection: %s", err.msg);
    eo.selection_id = -1;
    CHECK_OK(v3_distill_export(db, out, &eo, &est, &err), &err);
    CHECK(est.written == 10 && count_lines(out) == 10, "--all: %lld", (long long)est.written);

    CHECK_OK(v3_distill_write_builtin(vdir, "math", paths[0], sizeof paths[0], &err), &err);
    CHECK_OK(v3_distill_write_builtin(vdir, "r1_format", paths[1], sizeof paths[1], &err), &err);
    v3_reward_script sc[2] = {{.path = paths[0]}, {.path = paths[1]}};
    v3_distill_verify_opts vo = {.host = {.scripts = sc, .n_scripts = 2, .n_workers = 2},
                                 .pass_score = 1.0};
    v3_distill_verify_stats vst;
    CHECK_OK(v3_distill_verify(db, &vo, &vst, &err), &err);
    /* math: 9 with a reference, P3 skipped; wrong: the "5"; the cut-off one has no answer */
    CHECK(vst.traces == 10 && vst.n_funcs == 2 && !strcmp(vst.names[0], "math") &&
          vst.scored[0] == 9 && vst.skipped[0] == 1 && vst.passed[0] == 7 && vst.errors[0] == 0,
          "math: scored %lld skipped %lld passed %lld errors %lld", (long long)vst.scored[0],
          (long long)vst.skipped[0], (long long)vst.passed[0], (long long)vst.errors[0]);
    CHECK(vst.scored[1] == 10 && vst.passed[1] == 8, "r1_format: passed %lld", (long long)vst.passed[1]);
    CHECK(sql_i64(db, "SELECT count(*) FROM verdicts WHERE script_hash IS NOT NULL AND run_id = 2 "
                      "AND weight = 1") == 20, "verdicts keep hash, run, weight");
    CHECK(sql_i64(db, "SELECT count(*) FROM verdicts WHERE verifier = 'math' AND "
                      "json_extract(extra, '$.extracted') IS NOT NULL") == 8, "extras stored");

    v3_distill_filter_opts fo;
    v3_distill_filter_opts_default(&fo);
    fo.tokenizer_dir = tokdir;
    fo.max_tokens = 200;
    fo.ngram = 4;
    fo.per_prompt = 1;
    v3_distill_filter_stats fst;
    CHECK_OK(v3_distill_filter(db, &fo, &fst, &err), &err);
    int64_t want[V3_RULE_COUNT] = {1, 1, 2, 1, 1, 1, 1};
    for (int r = 0; r < V3_RULE_COUNT; r++)
        CHECK(fst.removed[r] == want[r], "rule %s removed %lld, want %lld", v3_distill_rule_name(r),
              (long long)fst.removed[r], (long long)want[r]);
    CHECK(fst.selection_id == 1 && fst.traces == 10 && fst.kept == 2 && fst.prompts == 4 &&
          fst.prompts_kept == 2, "selection %lld kept %lld prompts %lld/%lld",
          (long long)fst.selection_id, (long long)fst.kept, (long long)fst.prompts_kept,
          (long long)fst.prompts);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE accepted = 1") == 2 &&
          sql_i64(db, "SELECT count(*) FROM traces WHERE accepted = 0") == 8, "accepted mirrored");
    CHECK(sql_i64(db, "SELECT id FROM traces WHERE accepted = 1 ORDER BY id LIMIT 1") == 1,
          "the shorter correct trace of P1 is kept");
    CHECK(sql_i64(db, "SELECT tokens FROM selection_traces WHERE trace_id = 1") > 5 &&
          sql_i64(db, "SELECT tokens FROM selection_traces WHERE trace_id = 10") > 200,
          "token counts stored");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE filters_passed = "
                      "'[\"complete\",\"answer\",\"correct\",\"length\",\"language\",\"repetition\","
                      "\"per_prompt\"]'") == 2, "filters_passed of the kept ones");

    /* a second run with other rules is a new selection; the first stays */
    fo.keep_unverified = 1;
    fo.per_prompt = 0;
    CHECK_OK(v3_distill_filter(db, &fo, &fst, &err), &err);
    CHECK(fst.selection_id == 2 && fst.kept == 4 && fst.removed[V3_RULE_CORRECT] == 1,
          "second selection %lld kept %lld", (long long)fst.selection_id, (long long)fst.kept);
    CHECK(sql_i64(db, "SELECT count(*) FROM selection_traces WHERE selection_id = 1 AND kept = 1") == 2 &&
          sql_i64(db, "SELECT count(*) FROM selection_traces WHERE selection_id = 2 AND kept = 1") == 4,
          "both selections readable");

    /* export: the latest selection, r1 form with a system prompt */
    eo = (v3_distill_export_opts){.system_prompt = "Reason first.", .selection_id = 1};
    CHECK_OK(v3_distill_export(db, out, &eo, &est, &err), &err);
    CHECK(est.written == 2 && est.selection_id == 1 && count_lines(out) == 2, "export %lld",
          (long long)est.written);
    v3_tokenizer *tok = NULL;
    CHECK_OK(v3_tok_load(&tok, tokdir, &err), &err);
    if (tok) check_render(tok, out);
    v3_tok_free(tok);
    eo.selection_id = 0;
    CHECK_OK(v3_distill_export(db, out, &eo, &est, &err), &err);
    CHECK(est.written == 4 && est.selection_id == 2, "latest selection: %lld from %lld",
          (long long)est.written, (long long)est.selection_id);
    /* original form: once per prompt, the source's solution where there is one */
    eo.form = V3_EXPORT_ORIGINAL;
    CHECK_OK(v3_distill_export(db, out, &eo, &est, &err), &err);
    CHECK(est.written == 3 && est.original_from_solution == 1 && est.original_from_answer == 2,
          "original: %lld (%lld solution, %lld answer)", (long long)est.written,
          (long long)est.original_from_solution, (long long)est.original_from_answer);
    json_t *o = line_of(out, 0);
    json_t *m = json_object_get(o, "messages");
    CHECK(json_array_size(m) == 2 &&
          !strcmp(json_string_value(json_object_get(json_array_get(m, 1), "content")),
                  "Two plus two is four.") &&
          !json_object_get(json_array_get(m, 1), "reasoning_content"), "original response");
    json_decref(o);
    eo.original_skip = 1;
    CHECK_OK(v3_distill_export(db, out, &eo, &est, &err), &err);
    CHECK(est.written == 1 && est.original_skipped == 2, "original, skip: %lld", (long long)est.written);
}

int main(void) {
    t_tmpdir(dir, sizeof dir);
    test_rules();
    test_chain();
    return t_finish("test_distill_filter");
}
