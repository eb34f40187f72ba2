/* test_distill_generate.c — `distill generate` against a local OpenAI-compatible server on
 * 127.0.0.1 (an ephemeral port) that answers, per prompt, with reasoning_content, with inline
 * <think>, with reasoning after a template-opened <think> (no opening tag), with 429 + retry-after
 * then success, with 500 then success, by dropping the connection once, cut off by the length
 * limit, with 400 (final at once), or with 500 on every hit while "flaky" is switched on.
 * Checks: every prompt × sample ends with exactly one stored trace; its provenance (teacher,
 * endpoint, model, sample, request params, time, usage, id, attempts); retries counted; requests
 * concurrent (and never more than max_in_flight); the API key sent from the environment; bad
 * prompt rows reported as file:line; a run limited by max_requests or stopped by the flag keeps
 * what it got and the next run asks only for the rest (the server counts every request: nothing
 * is asked twice); failures after retries are counted, recorded in the run's generate/failed row
 * and asked again (and stored) by the next run; the prompts of the store as input; export reads
 * the generated traces. The reply reading (reasoning_content, reasoning, inline tags, length,
 * usage) is checked on its own too. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "datasets/distill.h"
#include "datasets/distill_generate.h"
#include "datasets/distill_generate_internal.h"
#include "datasets/store.h"
#include "testutil.h"

#include "judge_server.c" /* the connection handling of the judge's test server */

#define KEY_ENV "V3_TEST_DGEN_KEY"
#define KEY "sk-dgen-test-4242"

static char dir[512];

/* ---- the teacher server: judge_server's sockets and bookkeeping, its own answers ---- */

#define SEEN_MAX 1024

typedef struct teacher_srv {
    judge_server js;   /* first: its connection threads get a judge_server * */
    int fail_flaky;    /* under js.mu: prompts with mode=flaky get 500 on every hit */
    long ok_by_prompt[64];
    struct { int id; long seed; int hits; } seen[SEEN_MAX];
    int n_seen;
} teacher_srv;

/* Hits of (prompt id, seed) so far, this one included; under js.mu. */
static int seen_hit(teacher_srv *t, int id, long seed) {
    for (int i = 0; i < t->n_seen; i++)
        if (t->seen[i].id == id && t->seen[i].seed == seed) return ++t->seen[i].hits;
    if (t->n_seen == SEEN_MAX) return 1000;
    t->seen[t->n_seen].id = id;
    t->seen[t->n_seen].seed = seed;
    t->seen[t->n_seen].hits = 1;
    return t->seen[t->n_seen++].hits;
}

static void reply_ok(int fd, int id, const char *model, const char *reasoning, const char *content,
                     const char *finish) {
    json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", content);
    if (reasoning) json_object_set_new(msg, "reasoning_content", json_string(reasoning));
    json_t *o = json_pack("{s:s, s:s, s:s, s:[{s:i, s:o, s:s}], s:{s:i, s:i, s:i}}", "id", "cmpl-x",
                          "object", "chat.completion", "model", model, "choices", "index", 0,
                          "message", msg, "finish_reason", finish, "usage", "prompt_tokens", 11,
                          "completion_tokens", 22, "total_tokens", 33);
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "cmpl-%d", id);
    json_object_set_new(o, "id", json_string(idbuf));
    char *s = json_dumps(o, JSON_COMPACT);
    js_respond(fd, 200, "OK", NULL, s);
    free(s);
    json_decref(o);
}

/* The prompt "P<id> mode=<mode> ..." decides the answer. */
static int teacher_answer(teacher_srv *t, int fd, const char *hdr, const char *body) {
    judge_server *s = &t->js;
    json_t *b = json_loads(body, 0, NULL);
    const json_t *msgs = json_object_get(b, "messages");
    const char *q = json_string_value(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1),
                                                      "content"));
    const char *model = json_string_value(json_object_get(b, "model"));
    long seed = (long)json_integer_value(json_object_get(b, "seed"));
    int id = q && q[0] == 'P' ? atoi(q + 1) % 64 : 63;
    char mode[16] = "reason";
    const char *mp = q ? strstr(q, "mode=") : NULL;
    if (mp) sscanf(mp + 5, "%15[a-z0-9]", mode);
    char want[300];
    snprintf(want, sizeof want, "\r\nAuthorization: Bearer %s\r\n", s->expect_key);
    int auth_ok = !s->expect_key[0] || strstr(hdr, want) != NULL;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    if (!auth_ok) s->bad_auth++;
    int hit = seen_hit(t, id, seed), flaky = t->fail_flaky;
    if (++s->active > s->max_active) s->max_active = s->active;
    pthread_mutex_unlock(&s->mu);
    js_sleep_ms(s, 20); /* long enough for requests to overlap */
    char r[128], a[128];
    int rc = 0, ok = 0;
    if (!auth_ok) {
        rc = js_respond(fd, 401, "Unauthorized", NULL, "{\"error\":{\"message\":\"bad key\"}}");
    } else if (!strcmp(mode, "rate") && hit == 1) {
        rc = js_respond(fd, 429, "Too Many Requests", "retry-after-ms: 50\r\n",
                        "{\"error\":{\"message\":\"rate limited\"}}");
    } else if ((!strcmp(mode, "e500") && hit == 1) || (!strcmp(mode, "flaky") && flaky)) {
        rc = js_respond(fd, 500, "Internal Server Error", NULL, "{\"error\":{\"message\":\"overloaded\"}}");
    } else if (!strcmp(mode, "drop") && hit == 1) {
        rc = -1;
    } else if (!strcmp(mode, "bad")) {
        rc = js_respond(fd, 400, "Bad Request", NULL, "{\"error\":{\"message\":\"no such model\"}}");
    } else if (!strcmp(mode, "think")) {
        snprintf(a, sizeof a, "<think>\nThinking about P%d.\n</think>\n\nThe answer is \\boxed{%d}.", id, id);
        reply_ok(fd, id, model, NULL, a, "stop"), ok = 1;
    } else if (!strcmp(mode, "open")) {
        snprintf(a, sizeof a, "Opened by the template, P%d.\n</think>\n\nAnswer %d", id, id);
        reply_ok(fd, id, model, NULL, a, "stop"), ok = 1;
    } else if (!strcmp(mode, "length")) {
        snprintf(r, sizeof r, "I keep thinking about P%d", id);
        reply_ok(fd, id, model, r, "", "length"), ok = 1;
    } else {
        snprintf(r, sizeof r, "Let me think about P%d.", id);
        snprintf(a, sizeof a, "The answer is %d.", id);
        reply_ok(fd, id, model, r, a, "stop"), ok = 1;
    }
    pthread_mutex_lock(&s->mu);
    s->active--;
    if (ok) t->ok_by_prompt[id]++;
    pthread_mutex_unlock(&s->mu);
    json_decref(b);
    return rc;
}

static int teacher_answer_js(judge_server *s, int fd, const char *hdr, const char *body) {
    return teacher_answer((teacher_srv *)s, fd, hdr, body); /* js is teacher_srv's first member */
}

/* js_start with the teacher's answers. Stopped with js_stop(&t->js). */
static int teacher_start(teacher_srv *t, const char *expect_key) {
    memset(t, 0, sizeof *t);
    return js_start_with(&t->js, expect_key, 0, teacher_answer_js);
}

static void teacher_reset(teacher_srv *t) {
    js_reset_counts(&t->js);
    pthread_mutex_lock(&t->js.mu);
    memset(t->ok_by_prompt, 0, sizeof t->ok_by_prompt);
    t->n_seen = 0;
    pthread_mutex_unlock(&t->js.mu);
}

static long srv_requests(teacher_srv *t) {
    pthread_mutex_lock(&t->js.mu);
    long n = t->js.requests;
    pthread_mutex_unlock(&t->js.mu);
    return n;
}

/* ---- helpers ---- */

static const char *write_file(const char *name, const char *text) {
    static char path[4][1024];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 1024, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static const char *db_of(const char *name) {
    static char path[4][1024];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 1024, "%s/%s.db", dir, name);
    return p;
}

/* One value of a query (an integer; -999 when none). */
static int64_t sql_i64(const char *db, const char *sql) {
    v3_store *s = NULL;
    v3_err err = {0};
    int64_t v = -999;
    if (v3_store_open(&s, db, V3_STORE_READ, &err)) return v;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    else if (!st)
        fprintf(stderr, "sql: %s: %s\n", sql, sqlite3_errmsg(v3_store_db(s)));
    sqlite3_finalize(st);
    v3_store_close(s, NULL);
    return v;
}

static void sql_text(const char *db, const char *sql, char *out, size_t n) {
    v3_store *s = NULL;
    v3_err err = {0};
    out[0] = 0;
    if (v3_store_open(&s, db, V3_STORE_READ, &err)) return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    v3_store_close(s, NULL);
}

static void opts_for(v3_distill_generate_opts *o, const teacher_srv *t, const char *prompts,
                     const char *model, char *url, size_t url_n) {
    v3_distill_generate_opts_default(o);
    snprintf(url, url_n, "http://127.0.0.1:%d/v1", t->js.port);
    o->url = url;
    o->model = model;
    o->prompts = prompts;
    o->n = 2;
    o->max_in_flight = 4;
    o->timeout_s = 10;
    o->retries = 3;
    o->backoff_s = 0.02;
    o->seed = 7; /* a seed per sample: the server tells the samples of a prompt apart */
    o->max_tokens = 512;
    o->temperature = 0.6;
}

/* Every stored (prompt, sample, teacher) exactly once: no key twice, each prompt's samples 0..n-1. */
static void check_once_each(const char *db, const char *model, int64_t prompts, int n) {
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM traces WHERE source_model = '%s'", model);
    CHECK(sql_i64(db, sql) == prompts * n, "%s: %lld traces, want %lld", model,
          (long long)sql_i64(db, sql), (long long)(prompts * n));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM (SELECT prompt_id, json_extract(provenance, "
             "'$.sample') AS s FROM traces WHERE source_model = '%s' GROUP BY 1, 2 HAVING count(*) > 1)",
             model);
    CHECK(sql_i64(db, sql) == 0, "%s: a prompt × sample stored twice", model);
    snprintf(sql, sizeof sql, "SELECT count(DISTINCT prompt_id) FROM traces WHERE source_model = '%s'",
             model);
    CHECK(sql_i64(db, sql) == prompts, "%s: %lld prompts with traces", model, (long long)sql_i64(db, sql));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM traces WHERE source_model = '%s' AND "
             "json_extract(provenance, '$.sample') NOT BETWEEN 0 AND %d", model, n - 1);
    CHECK(sql_i64(db, sql) == 0, "%s: a sample index outside 0..%d", model, n - 1);
    CHECK(sql_i64(db, "SELECT count(*) - count(DISTINCT key) FROM traces") == 0, "duplicate keys");
}

/* ---- the reply reading ---- */

static void test_reply(void) {
    static const struct {
        const char *body, *reasoning, *answer;
        int truncated;
    } cases[] = {
        {"{\"choices\":[{\"message\":{\"content\":\" 42 \",\"reasoning_content\":\"\\nhmm\\n\"},"
         "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9},"
         "\"id\":\"c1\",\"model\":\"deepseek-reasoner\"}", "hmm", "42", 0},
        {"{\"choices\":[{\"message\":{\"content\":\"A\",\"reasoning\":\"vllm style\"}}]}", "vllm style", "A", 0},
        {"{\"choices\":[{\"message\":{\"content\":\"<think>\\nR\\n</think>\\n\\nA\"}}]}", "R", "A", 0},
        {"{\"choices\":[{\"message\":{\"content\":\"R only\\n</think>\\nA\"}}]}", "R only", "A", 0},
        {"{\"choices\":[{\"message\":{\"content\":\"<think>\\nstill going\"}}]}", "still going", "", 1},
        {"{\"choices\":[{\"message\":{\"content\":\"\",\"reasoning_content\":\"long\"},"
         "\"finish_reason\":\"length\"}]}", "long", "", 1},
        {"{\"choices\":[{\"message\":{\"content\":\"plain\"}}]}", "", "plain", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v3_judge_result jr = {0};
        v3_dgen_reply r = {0};
        v3_err e = {0};
        jr.body = strdup(cases[i].body);
        jr.body_len = strlen(jr.body);
        jr.attempts = 2;
        CHECK_OK(v3_judge_parse_reply(jr.body, jr.body_len, &jr, &e), &e);
        jr.ok = 1;
        CHECK_OK(v3_dgen_http_reply(&jr, &r, &e), &e);
        CHECK(r.ok && r.reasoning && !strcmp(r.reasoning, cases[i].reasoning), "case %zu reasoning \"%s\"",
              i, r.reasoning ? r.reasoning : "(null)");
        CHECK(r.answer && !strcmp(r.answer, cases[i].answer), "case %zu answer \"%s\"", i,
              r.answer ? r.answer : "(null)");
        CHECK(r.truncated == cases[i].truncated, "case %zu truncated %d", i, r.truncated);
        CHECK(r.attempts == 2 && r.retries == 1, "case %zu attempts %d", i, r.attempts);
        if (i == 0) {
            CHECK(r.prompt_tokens == 5 && r.completion_tokens == 9, "usage %lld %lld",
                  (long long)r.prompt_tokens, (long long)r.completion_tokens);
            CHECK(!strcmp(json_string_value(json_object_get(r.prov, "id")), "c1") &&
                  !strcmp(json_string_value(json_object_get(r.prov, "response_model")), "deepseek-reasoner") &&
                  !strcmp(json_string_value(json_object_get(r.prov, "finish_reason")), "stop") &&
                  json_integer_value(json_object_get(json_object_get(r.prov, "usage"), "completion_tokens")) == 9,
                  "provenance of the reply");
        }
        v3_dgen_reply_free(&r);
        v3_judge_results_free(&jr, 1);
    }
    v3_judge_result bad = {0};
    v3_dgen_reply r = {0};
    v3_err e = {0};
    bad.error = strdup("HTTP 500: overloaded (4 attempts)");
    bad.attempts = 4;
    CHECK_OK(v3_dgen_http_reply(&bad, &r, &e), &e);
    CHECK(!r.ok && r.error && strstr(r.error, "HTTP 500") && r.retries == 3, "failed reply: %s",
          r.error ? r.error : "(null)");
    v3_dgen_reply_free(&r);
    v3_judge_results_free(&bad, 1);
}

/* ---- a run over every kind of answer ---- */

static const char MIXED[] =
    "{\"prompt\": \"P0 mode=reason\", \"answer\": \"Natalia sold 48/2 = 24 clips.\\n#### 72\"}\n"
    "{\"prompt\": \"P1 mode=think\", \"answer\": \"1\"}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"P2 mode=open\"}], \"answer\": 2}\n"
    "{\"question\": \"P3 mode=rate\"}\n"
    "{\"prompt\": \"P4 mode=e500\", \"system\": \"Be brief.\"}\n"
    "{\"prompt\": \"P5 mode=drop\"}\n"
    "{\"prompt\": \"P6 mode=length\"}\n"
    "{\"prompt\": \"P7 mode=reason\"}\n"
    "{\"prompt\": \"P8 mode=reason\"}\n"
    "{\"prompt\": \"P9 mode=think\"}\n"
    "{\"prompt\": \"P10 mode=reason\"}\n"
    "{\"prompt\": \"P11 mode=reason\"}\n"
    "this is not json\n"
    "{\"answer\": \"no prompt here\"}\n"
    "{\"prompt\": \"P0 mode=reason\", \"answer\": \"Natalia sold 48/2 = 24 clips.\\n#### 72\"}\n";

static void test_mixed(teacher_srv *t, const char *prompts) {
    teacher_reset(t);
    const char *db = db_of("mixed");
    char url[128], logbuf[4096] = "";
    v3_distill_generate_opts o;
    v3_distill_generate_stats st;
    v3_err err = {0};
    opts_for(&o, t, prompts, "teacher-a", url, sizeof url);
    o.key_env = KEY_ENV;
    FILE *log = tmpfile();
    o.log = log;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    rewind(log);
    size_t nl = fread(logbuf, 1, sizeof logbuf - 1, log);
    logbuf[nl] = 0;
    CHECK(st.rows == 15 && st.bad_rows == 2 && st.prompts == 13, "rows %lld bad %lld prompts %lld",
          (long long)st.rows, (long long)st.bad_rows, (long long)st.prompts);
    CHECK(strstr(logbuf, "prompts.jsonl:13: invalid JSON") && strstr(logbuf, "prompts.jsonl:14: no prompt"),
          "bad rows not reported as file:line: %s", logbuf);
    CHECK(st.wanted == 26 && st.done_before == 2 && st.requested == 24 && st.stored == 24 &&
          st.failed == 0 && st.left == 0, "wanted %lld before %lld requested %lld stored %lld failed %lld",
          (long long)st.wanted, (long long)st.done_before, (long long)st.requested,
          (long long)st.stored, (long long)st.failed);
    /* rate, e500 and drop fail each sample's first attempt once; curl itself resends a request
     * whose reused connection was dropped, so a drop is not always an attempt of the client's */
    CHECK(st.retries >= 4 && st.retries <= 6 && st.attempts == 24 + st.retries,
          "retries %lld attempts %lld", (long long)st.retries, (long long)st.attempts);
    CHECK(srv_requests(t) == 30, "server saw %ld requests", srv_requests(t));
    CHECK(t->js.bad_auth == 0, "the key was not sent from %s", KEY_ENV);
    CHECK(t->js.max_active > 1 && t->js.max_active <= 4, "max in flight %d", t->js.max_active);
    CHECK(st.truncated == 2 && st.no_reasoning == 0, "truncated %lld", (long long)st.truncated);
    CHECK(st.prompt_tokens == 24 * 11 && st.completion_tokens == 24 * 22, "usage %lld %lld",
          (long long)st.prompt_tokens, (long long)st.completion_tokens);
    check_once_each(db, "teacher-a", 12, 2);

    /* what was stored: split, provenance, prompt fields */
    char s[1024], want[256];
    sql_text(db, "SELECT reasoning || '|' || answer FROM traces t JOIN prompts p ON p.id = t.prompt_id "
             "WHERE p.text = 'P1 mode=think' LIMIT 1", s, sizeof s);
    CHECK(!strcmp(s, "Thinking about P1.|The answer is \\boxed{1}."), "inline think: %s", s);
    sql_text(db, "SELECT reasoning || '|' || answer FROM traces t JOIN prompts p ON p.id = t.prompt_id "
             "WHERE p.text = 'P2 mode=open' LIMIT 1", s, sizeof s);
    CHECK(!strcmp(s, "Opened by the template, P2.|Answer 2"), "no opening tag: %s", s);
    sql_text(db, "SELECT reasoning || '|' || answer FROM traces t JOIN prompts p ON p.id = t.prompt_id "
             "WHERE p.text = 'P7 mode=reason' LIMIT 1", s, sizeof s);
    CHECK(!strcmp(s, "Let me think about P7.|The answer is 7."), "reasoning_content: %s", s);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE "
                      "p.text = 'P6 mode=length' AND t.truncated = 1 AND t.answer = ''") == 2,
          "length: cut off");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE truncated = 1") == 2, "only P6 cut off");
    sql_text(db, "SELECT fields FROM prompts WHERE text = 'P0 mode=reason'", s, sizeof s);
    CHECK(!strcmp(s, "{\"answer\": \"72\", \"solution\": \"Natalia sold 48/2 = 24 clips.\\n#### 72\"}") ||
          !strcmp(s, "{\"answer\":\"72\",\"solution\":\"Natalia sold 48/2 = 24 clips.\\n#### 72\"}"),
          "reference kept as import keeps it: %s", s);
    sql_text(db, "SELECT messages FROM prompts WHERE text = 'P4 mode=e500'", s, sizeof s);
    CHECK(strstr(s, "\"system\"") && strstr(s, "Be brief."), "system field kept: %s", s);
    sql_text(db, "SELECT provenance FROM traces t JOIN prompts p ON p.id = t.prompt_id "
             "WHERE p.text = 'P3 mode=rate' ORDER BY t.id LIMIT 1", s, sizeof s);
    json_t *pv = json_loads(s, 0, NULL);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/v1/chat/completions", t->js.port);
    CHECK(pv && !strcmp(json_string_value(json_object_get(pv, "form")), "generate") &&
          !strcmp(json_string_value(json_object_get(pv, "teacher")), "http") &&
          !strcmp(json_string_value(json_object_get(pv, "endpoint")), want) &&
          !strcmp(json_string_value(json_object_get(pv, "model")), "teacher-a") &&
          !strcmp(json_string_value(json_object_get(pv, "response_model")), "teacher-a") &&
          !strcmp(json_string_value(json_object_get(pv, "id")), "cmpl-3") &&
          json_real_value(json_object_get(json_object_get(pv, "params"), "temperature")) == 0.6 &&
          json_real_value(json_object_get(json_object_get(pv, "params"), "top_p")) == 0.95 &&
          json_integer_value(json_object_get(json_object_get(pv, "params"), "max_tokens")) == 512 &&
          json_integer_value(json_object_get(json_object_get(pv, "usage"), "completion_tokens")) == 22 &&
          json_integer_value(json_object_get(pv, "attempts")) == 2 &&
          json_string_length(json_object_get(pv, "time")) == 20 &&
          strstr(json_string_value(json_object_get(pv, "file")), "prompts.jsonl") &&
          json_integer_value(json_object_get(pv, "line")) == 4,
          "provenance: %s", s);
    json_decref(pv);
    CHECK(sql_i64(db, "SELECT count(*) FROM runs WHERE command = 'distill generate' AND status = 'completed'") == 1,
          "the run is recorded");

    /* again: everything is stored, nothing is asked */
    teacher_reset(t);
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.requested == 0 && st.done_before == 26 && srv_requests(t) == 0,
          "rerun asked %lld (server %ld)", (long long)st.requested, srv_requests(t));
    check_once_each(db, "teacher-a", 12, 2);

    /* the store's prompts, for another teacher: one sample each */
    teacher_reset(t);
    opts_for(&o, t, NULL, "teacher-b", url, sizeof url);
    o.n = 1;
    o.key_env = KEY_ENV;
    o.log = log;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.prompts == 12 && st.requested == 12 && st.stored == 12, "store prompts %lld stored %lld",
          (long long)st.prompts, (long long)st.stored);
    check_once_each(db, "teacher-b", 12, 1);
    CHECK(sql_i64(db, "SELECT count(*) FROM prompts") == 12, "a store prompt was stored again");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE source_model = 'teacher-b' AND "
                      "json_extract(provenance, '$.file') IS NOT NULL") == 0, "store prompts have no file");

    /* export reads them like imported traces */
    char out[1024];
    snprintf(out, sizeof out, "%s/sft.jsonl", dir);
    v3_distill_export_opts eo = {.selection_id = -1};
    v3_distill_export_stats es;
    CHECK_OK(v3_distill_export(db, out, &eo, &es, &err), &err);
    CHECK(es.written == 36 && es.prompts == 12, "exported %lld of %lld prompts", (long long)es.written,
          (long long)es.prompts);
    FILE *f = fopen(out, "r");
    char line[4096];
    int with_reasoning = 0;
    while (f && fgets(line, sizeof line, f))
        with_reasoning += strstr(line, "\"reasoning_content\": \"Let me think about P7.\"") != NULL ||
                          strstr(line, "\"reasoning_content\":\"Let me think about P7.\"") != NULL;
    if (f) fclose(f);
    CHECK(with_reasoning == 3, "P7's traces exported with reasoning_content: %d", with_reasoning);
    fclose(log);
}

/* ---- interrupted runs continue where they stopped ---- */

static void test_resume(teacher_srv *t) {
    teacher_reset(t);
    const char *prompts = write_file("plain.jsonl",
                                     "{\"prompt\": \"P20 mode=reason\"}\n{\"prompt\": \"P21 mode=think\"}\n"
                                     "{\"prompt\": \"P22 mode=reason\"}\n{\"prompt\": \"P23 mode=reason\"}\n"
                                     "{\"prompt\": \"P24 mode=think\"}\n{\"prompt\": \"P25 mode=reason\"}\n"
                                     "{\"prompt\": \"P26 mode=reason\"}\n");
    const char *db = db_of("resume");
    char url[128];
    v3_distill_generate_opts o;
    v3_distill_generate_stats st;
    v3_err err = {0};
    opts_for(&o, t, prompts, "teacher-r", url, sizeof url);
    o.n = 3;
    o.max_requests = 5;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.stored == 5 && st.left == 16 && st.requested == 5, "limited run: stored %lld left %lld",
          (long long)st.stored, (long long)st.left);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces") == 5, "5 traces after the limited run");
    CHECK(sql_i64(db, "SELECT count(*) FROM runs WHERE status = 'interrupted'") == 1, "run status");
    /* stopped before anything is asked: nothing changes */
    volatile sig_atomic_t stop = 1;
    o.stop = &stop;
    o.max_requests = 0;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.stopped && st.requested == 0 && st.left == 16, "stopped run asked %lld",
          (long long)st.requested);
    o.stop = NULL;
    o.max_requests = 7;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.done_before == 5 && st.stored == 7, "second run: before %lld stored %lld",
          (long long)st.done_before, (long long)st.stored);
    o.max_requests = 0;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.done_before == 12 && st.stored == 9 && st.left == 0, "last run: before %lld stored %lld",
          (long long)st.done_before, (long long)st.stored);
    check_once_each(db, "teacher-r", 7, 3);
    CHECK(srv_requests(t) == 21, "the server was asked %ld times for 21 samples", srv_requests(t));
    for (int id = 20; id <= 26; id++)
        CHECK(t->ok_by_prompt[id] == 3, "P%d answered %ld times", id, t->ok_by_prompt[id]);
}

/* ---- failures after retries are recorded and asked again ---- */

static void test_failures(teacher_srv *t) {
    teacher_reset(t);
    pthread_mutex_lock(&t->js.mu);
    t->fail_flaky = 1;
    pthread_mutex_unlock(&t->js.mu);
    const char *prompts = write_file("flaky.jsonl",
                                     "{\"prompt\": \"P30 mode=reason\"}\n{\"prompt\": \"P31 mode=flaky\"}\n"
                                     "{\"prompt\": \"P32 mode=think\"}\n{\"prompt\": \"P33 mode=flaky\"}\n"
                                     "{\"prompt\": \"P34 mode=reason\"}\n{\"prompt\": \"P35 mode=reason\"}\n");
    const char *db = db_of("flaky");
    char url[128], logbuf[4096] = "";
    v3_distill_generate_opts o;
    v3_distill_generate_stats st;
    v3_err err = {0};
    opts_for(&o, t, prompts, "teacher-f", url, sizeof url);
    o.retries = 1;
    FILE *log = tmpfile();
    o.log = log;
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    rewind(log);
    size_t nl = fread(logbuf, 1, sizeof logbuf - 1, log);
    logbuf[nl] = 0;
    CHECK(st.failed == 4 && st.stored == 8 && st.requested == 12, "failed %lld stored %lld",
          (long long)st.failed, (long long)st.stored);
    CHECK(strstr(logbuf, "flaky.jsonl:2: sample 0: HTTP 500") && strstr(logbuf, "flaky.jsonl:4: sample 1"),
          "failures reported as file:line: %s", logbuf);
    CHECK(sql_i64(db, "SELECT value FROM evals WHERE name = 'generate/failed'") == 4,
          "generate/failed row");
    CHECK(sql_i64(db, "SELECT json_array_length(extra, '$.failures') FROM evals WHERE name = 'generate/failed'") == 4,
          "the failures are listed");
    char s[512];
    sql_text(db, "SELECT json_extract(extra, '$.failures[0].error') FROM evals WHERE name = 'generate/failed'",
             s, sizeof s);
    CHECK(strstr(s, "HTTP 500") && strstr(s, "2 attempts"), "failure recorded: %s", s);
    CHECK(sql_i64(db, "SELECT count(*) FROM runs WHERE status = 'failed' AND message LIKE '4 of 12 requests failed%'") == 1,
          "the run says what failed");
    /* the server recovers: the next run asks for the 4 failed ones only */
    pthread_mutex_lock(&t->js.mu);
    t->fail_flaky = 0;
    pthread_mutex_unlock(&t->js.mu);
    long before = srv_requests(t);
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    CHECK(st.requested == 4 && st.stored == 4 && st.failed == 0 && st.done_before == 8,
          "rerun requested %lld stored %lld", (long long)st.requested, (long long)st.stored);
    CHECK(srv_requests(t) - before == 4, "rerun sent %ld requests", srv_requests(t) - before);
    check_once_each(db, "teacher-f", 6, 2);
    fclose(log);

    /* a 400 is final at once: no retry */
    teacher_reset(t);
    prompts = write_file("bad.jsonl", "{\"prompt\": \"P40 mode=bad\"}\n");
    db = db_of("bad");
    opts_for(&o, t, prompts, "teacher-x", url, sizeof url);
    o.n = 1;
    o.log = tmpfile();
    CHECK_OK(v3_distill_generate(db, &o, &st, &err), &err);
    fclose(o.log);
    CHECK(st.failed == 1 && st.attempts == 1 && srv_requests(t) == 1, "400: failed %lld attempts %lld",
          (long long)st.failed, (long long)st.attempts);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces") == 0, "no trace for a failure");
}

static void test_errors(teacher_srv *t) {
    v3_distill_generate_opts o;
    v3_distill_generate_stats st;
    v3_err err = {0};
    char url[128];
    opts_for(&o, t, write_file("one.jsonl", "{\"prompt\": \"P50\"}\n"), "m", url, sizeof url);
    o.model_dir = dir;
    CHECK(v3_distill_generate(db_of("err"), &o, &st, &err) == V3_EINVAL && strstr(err.msg, "both"),
          "two teachers: %s", err.msg);
    o.model_dir = NULL;
    o.model = NULL;
    CHECK(v3_distill_generate(db_of("err"), &o, &st, &err) == V3_EINVAL && strstr(err.msg, "generate.model"),
          "no model name: %s", err.msg);
    o.model = "m";
    o.prompts = write_file("none.jsonl", "not json\n");
    o.log = tmpfile();
    CHECK(v3_distill_generate(db_of("err"), &o, &st, &err) == V3_EINVAL && strstr(err.msg, "no usable prompts"),
          "no prompts: %s", err.msg);
    fclose(o.log);
    o.log = NULL;
    o.prompts = NULL;
    CHECK(v3_distill_generate(db_of("empty"), &o, &st, &err) == V3_EINVAL && strstr(err.msg, "holds no prompts"),
          "empty store: %s", err.msg);
    o.prompts = write_file("one.jsonl", "{\"prompt\": \"P50\"}\n");
    o.key_env = "V3_TEST_DGEN_UNSET";
    unsetenv("V3_TEST_DGEN_UNSET");
    CHECK(v3_distill_generate(db_of("err"), &o, &st, &err) != V3_OK && strstr(err.msg, "V3_TEST_DGEN_UNSET"),
          "unset key variable: %s", err.msg);
}

int main(void) {
    t_tmpdir(dir, sizeof dir);
    setenv(KEY_ENV, KEY, 1);
    test_reply();
    teacher_srv *t = calloc(1, sizeof *t);
    if (!t || teacher_start(t, KEY) != 0) {
        fprintf(stderr, "cannot start the test server\n");
        return 1;
    }
    test_mixed(t, write_file("prompts.jsonl", MIXED));
    t->js.expect_key[0] = 0; /* the other tests send no key */
    test_resume(t);
    test_failures(t);
    test_errors(t);
    js_stop(&t->js);
    free(t);
    return t_finish("test_distill_generate");
}
