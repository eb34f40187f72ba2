/* test_distill_store.c — the store's distillation side: a version-1 run.db holding traces and
 * verdicts is upgraded to version 2 by the next writer with its rows intact; trace keys are unique;
 * verdicts keep error/extra/hash/run; trace updates, selections and selected rows are written and
 * read back; the trace query pages by id, filters by selection, and fills verdicts. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/store.h"
#include "datasets/store_internal.h"
#include "testutil.h"

static int64_t sql_i64(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -999;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "sql failed: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return v;
}

static void test_upgrade(const char *path) {
    /* a version-1 file, as the previous build wrote it */
    sqlite3 *db = NULL;
    v3_err err = {0};
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "open");
    CHECK_OK(v3_store__migrate(db, path, v3_store_migrations, 1, &err), &err);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO runs(id, command, started_at, status) VALUES(1, 'distill', 1, 'completed');"
                       "INSERT INTO prompts(id, key, text, created_at) VALUES(1, 77, 'q', 1);"
                       "INSERT INTO traces(id, run_id, prompt_id, reasoning, answer, accepted, created_at) "
                       "VALUES(1, 1, 1, 'r', 'a', 1, 1);"
                       "INSERT INTO verdicts(trace_id, verifier, passed, score) VALUES(1, 'math', 1, 1.0);",
                       NULL, NULL, NULL) == SQLITE_OK, "v1 rows: %s", sqlite3_errmsg(db));
    CHECK(sql_i64(db, "PRAGMA user_version") == 1, "version 1");
    sqlite3_close(db);

    /* a reader refuses to touch it; the next writer upgrades it */
    v3_store *s = NULL;
    int rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_EUNSUPPORTED && strstr(err.msg, "older"), "reader of v1: %s", err.msg);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    if (!s) return;
    int64_t run = 0, tid = 0, tid2 = 0, sel = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "distill filter"}, &run, &err), &err);
    CHECK(run == 2, "run ids continue: %lld", (long long)run);
    v3_store_batch *b = NULL;
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    CHECK_OK(v3_store_batch_add_trace(b, &(v3_store_trace){.prompt_id = 1, .reasoning = "r2",
             .answer = "a2", .accepted = -1, .key = 0xF00DF00DF00DF00Dull, .truncated = 1}, &tid,
             &err), &err);
    CHECK_OK(v3_store_batch_add_trace(b, &(v3_store_trace){.prompt_id = 1, .reasoning = "r3",
             .answer = "a3", .accepted = -1, .key = 5}, &tid2, &err), &err);
    CHECK(tid == 2 && tid2 == 3, "trace ids continue: %lld %lld", (long long)tid, (long long)tid2);
    CHECK_OK(v3_store_batch_add_verdict(b, &(v3_store_verdict){.trace_id = tid, .verifier = "math",
             .passed = 0, .score = NAN, .error = "math.lua:3: boom", .extra_json = "{\"x\":1}",
             .script_hash = "abc", .weight = 2.0, .elapsed_ms = 1.5}, &err), &err);
    CHECK_OK(v3_store_batch_add_selection(b, &(v3_store_selection){.name = "filter",
             .report_json = "{}", .n_traces = 3, .n_kept = 1}, &sel, &err), &err);
    CHECK(sel == 1, "selection id %lld", (long long)sel);
    CHECK(v3_store_batch_add_selection(b, &(v3_store_selection){.n_traces = 1, .n_kept = 2}, NULL,
                                       &err) == V3_EINVAL, "kept > traces refused");
    for (int64_t t = 1; t <= 3; t++) {
        CHECK_OK(v3_store_batch_add_selected(b, &(v3_store_selected){.selection_id = sel,
                 .trace_id = t, .kept = t == 3, .rejected_by = t == 3 ? NULL : "correct",
                 .tokens = t == 1 ? -1 : 10 * t}, &err), &err);
        CHECK_OK(v3_store_batch_update_trace(b, &(v3_store_trace_update){.trace_id = t,
                 .accepted = t == 3, .filters_json = "[\"complete\"]"}, &err), &err);
    }
    CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    CHECK_OK(v3_store_run_end(s, "completed", NULL, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);

    /* a duplicate key is refused by the unique index: the writer's error is sticky and named */
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    CHECK_OK(v3_store_batch_add_trace(b, &(v3_store_trace){.prompt_id = 1, .reasoning = "x",
             .accepted = -1, .key = 5}, NULL, &err), &err);
    CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    rc = v3_store_close(s, &err);
    CHECK(rc != 0 && strstr(err.msg, "UNIQUE"), "duplicate key refused: %s", err.msg);

    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "reopen");
    CHECK(sql_i64(db, "PRAGMA user_version") == V3_STORE_SCHEMA_VERSION, "upgraded");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE id = 1 AND reasoning = 'r' AND key IS NULL "
                      "AND truncated IS NULL") == 1, "v1 trace kept, new columns NULL");
    CHECK(sql_i64(db, "SELECT count(*) FROM verdicts WHERE trace_id = 1 AND score = 1.0 AND "
                      "run_id IS NULL AND error IS NULL") == 1, "v1 verdict kept");
    CHECK(sql_i64(db, "SELECT key = -1148998387256922099 AND truncated = 1 FROM traces WHERE id = 2") == 1,
          "key as int64 bit pattern, truncated");
    CHECK(sql_i64(db, "SELECT count(*) FROM verdicts WHERE trace_id = 2 AND score IS NULL AND run_id = 2 "
                      "AND weight = 2.0 AND error = 'math.lua:3: boom' AND extra = '{\"x\":1}' AND "
                      "script_hash = 'abc' AND elapsed_ms = 1.5") == 1, "v2 verdict columns");
    CHECK(sql_i64(db, "SELECT count(*) FROM selections WHERE id = 1 AND run_id = 2 AND n_kept = 1") == 1,
          "selection row");
    CHECK(sql_i64(db, "SELECT count(*) FROM selection_traces WHERE tokens IS NULL") == 1 &&
          sql_i64(db, "SELECT sum(kept) FROM selection_traces") == 1, "selected rows");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE accepted = 0 AND filters_passed = '[\"complete\"]'") == 2,
          "trace updates");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces") == 3, "the duplicate was not stored");
    sqlite3_close(db);
}

typedef struct seen {
    int n, n_verdicts;
    int64_t ids[16];
    int light_nulls;
} seen;

static int collect(void *ud, const v3_store_trace_row *r) {
    seen *s = ud;
    if (s->n < 16) s->ids[s->n] = r->id;
    s->n++;
    s->n_verdicts += r->n_verdicts;
    s->light_nulls += !r->reasoning && !r->prompt_text;
    return 0;
}

static void test_query(const char *path) {
    v3_store *s = NULL;
    v3_err err = {0};
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    if (!s) return;
    seen a = {0};
    v3_store_trace_query q = {.with_verdicts = 1};
    CHECK_OK(v3_store_query_traces(s, &q, collect, &a, &err), &err);
    CHECK(a.n == 3 && a.n_verdicts == 2 && a.light_nulls == 0, "all: %d traces %d verdicts", a.n,
          a.n_verdicts);
    seen p = {0};
    q = (v3_store_trace_query){.after_id = 1, .limit = 1};
    CHECK_OK(v3_store_query_traces(s, &q, collect, &p, &err), &err);
    CHECK(p.n == 1 && p.ids[0] == 2, "page after 1: %d, id %lld", p.n, (long long)p.ids[0]);
    seen k = {0};
    q = (v3_store_trace_query){.selection_id = 1, .light = 1};
    CHECK_OK(v3_store_query_traces(s, &q, collect, &k, &err), &err);
    CHECK(k.n == 1 && k.ids[0] == 3 && k.light_nulls == 1, "kept by selection 1: %d", k.n);
    int64_t latest = -1;
    CHECK_OK(v3_store_latest_selection(s, &latest, &err), &err);
    CHECK(latest == 1, "latest selection %lld", (long long)latest);
    CHECK_OK(v3_store_close(s, &err), &err);
    /* a writer's handle cannot be queried */
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    CHECK(v3_store_query_traces(s, &q, collect, &k, &err) == V3_EINVAL, "writer query refused");
    v3_store_close(s, NULL);
}

int main(void) {
    char dir[512], path[600];
    t_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/run.db", dir);
    test_upgrade(path);
    test_query(path);
    return t_finish("test_distill_store");
}
