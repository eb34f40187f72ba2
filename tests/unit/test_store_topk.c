/* test_store_topk.c — `--order best|worst --limit K` over whole runs (store_topk.c: each step's
 * best K through the index (run_id, step, reward), merged) must give exactly what SQLite's own
 * ORDER BY ... LIMIT gives on the same file: same ids, same order. Random runs with gaps between
 * steps, empty and single-sample steps, tied rewards (0, 0.5, 1 as a rule reward gives), NULL
 * rewards, negative steps; queries over one run and over all, with reward bounds and --where
 * conditions on samples and prompts, limits from 1 to past the number of samples.
 * Also: a v2 store (two indices) is migrated to v3 by the next writer and keeps its rows. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "datasets/store.h"
#include "datasets/store_internal.h"
#include "testutil.h"

typedef struct got {
    int n;
    int64_t ids[4096];
} got;

static int collect(void *ud, const v3_store_sample_row *r) {
    got *g = ud;
    if (g->n < 4096) g->ids[g->n] = r->id;
    g->n++;
    return 0;
}

static double pick_reward(v3_rng *rng) {
    int k = (int)v3_rng_below(rng, 10);
    if (k < 2) return NAN;                                  /* not scored */
    if (k < 6) return 0.5 * (double)v3_rng_below(rng, 3);   /* ties */
    return 4.0 * v3_rng_uniform_f64(rng) - 2.0;             /* continuous */
}

/* Writes 3 runs of random steps; returns the number of samples. */
static int write_store(const char *path, v3_rng *rng) {
    v3_err err = {0};
    v3_store *s = NULL;
    int total = 0;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err), &err);
    if (!s) return 0;
    for (int run = 1; run <= 3; run++) {
        int64_t run_id = 0;
        CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo"}, &run_id, &err), &err);
        int64_t step = run == 2 ? -3 : 0; /* steps need not start at 0 or be positive */
        int n_steps = 1 + (int)v3_rng_below(rng, 14);
        for (int k = 0; k < n_steps; k++) {
            step += 1 + (int64_t)v3_rng_below(rng, 3); /* gaps */
            v3_store_batch *b = NULL;
            CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
            int n = (int)v3_rng_below(rng, 5) == 0 ? (int)v3_rng_below(rng, 2) : (int)v3_rng_below(rng, 40);
            for (int i = 0; i < n; i++) {
                char text[32];
                int64_t pid = 0;
                snprintf(text, sizeof text, "prompt %d", (int)v3_rng_below(rng, 20));
                CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = text}, &pid, &err),
                         &err);
                CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = step,
                         .prompt_id = pid, .group_id = i / 4, .group_index = i % 4,
                         .completion = "c", .n_tokens = 0,
                         .finish_reason = v3_rng_below(rng, 3) ? "stop" : "length",
                         .reward = pick_reward(rng), .advantage = NAN}, NULL, &err), &err);
                total++;
            }
            CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
        }
        CHECK_OK(v3_store_run_end(s, "completed", NULL, &err), &err);
    }
    CHECK_OK(v3_store_close(s, &err), &err);
    return total;
}

/* The same query written as one SQL statement, run by SQLite. */
static int reference(sqlite3 *db, const v3_store_sample_query *q, got *g) {
    char sql[1024];
    int n = snprintf(sql, sizeof sql,
                     "SELECT s.id FROM samples s LEFT JOIN prompts p ON p.id = s.prompt_id "
                     "WHERE s.reward IS NOT NULL");
    if (q->run_id > 0) n += snprintf(sql + n, sizeof sql - n, " AND s.run_id = %lld", (long long)q->run_id);
    if (!isnan(q->min_reward)) n += snprintf(sql + n, sizeof sql - n, " AND s.reward >= %.17g", q->min_reward);
    if (!isnan(q->max_reward)) n += snprintf(sql + n, sizeof sql - n, " AND s.reward <= %.17g", q->max_reward);
    if (q->where) n += snprintf(sql + n, sizeof sql - n, " AND (%s)", q->where);
    const char *dir = q->order == V3_STORE_ORDER_BEST ? "DESC" : "ASC";
    snprintf(sql + n, sizeof sql - n, " ORDER BY s.reward %s, s.id %s LIMIT %lld", dir, dir,
             (long long)q->limit);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "reference: %s: %s\n", sql, sqlite3_errmsg(db));
        return 1;
    }
    g->n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (g->n < 4096) g->ids[g->n] = sqlite3_column_int64(st, 0);
        g->n++;
    }
    sqlite3_finalize(st);
    return 0;
}

static void test_queries(const char *path, int total, v3_rng *rng) {
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    if (!s) return;
    sqlite3 *db = v3_store_db(s);
    static const char *const wheres[] = {NULL, "s.finish_reason = 'length'", "p.text LIKE '%1%'"};
    const int64_t limits[] = {1, 2, 3, 5, 17, 64, 1000};
    int n_queries = 0, n_rows = 0;
    static got a, b;
    for (int t = 0; t < 400; t++) {
        v3_store_sample_query q = v3_store_sample_query_all();
        q.order = v3_rng_below(rng, 2) ? V3_STORE_ORDER_BEST : V3_STORE_ORDER_WORST;
        q.limit = limits[v3_rng_below(rng, sizeof limits / sizeof *limits)];
        q.run_id = (int64_t)v3_rng_below(rng, 4); /* 0: every run */
        if (v3_rng_below(rng, 3) == 0) q.min_reward = 0.5 * (double)v3_rng_below(rng, 3) - 0.5;
        if (v3_rng_below(rng, 3) == 0) q.max_reward = 0.5 * (double)v3_rng_below(rng, 4);
        q.where = wheres[v3_rng_below(rng, 3)];
        a.n = b.n = 0;
        CHECK_OK(v3_store_query_samples(s, &q, collect, &a, &err), &err);
        if (reference(db, &q, &b)) {
            CHECK(0, "reference query failed");
            break;
        }
        int same = a.n == b.n;
        for (int i = 0; same && i < a.n && i < 4096; i++) same = a.ids[i] == b.ids[i];
        CHECK(same, "query %d (order %s, limit %lld, run %lld, reward in [%g, %g], where %s): "
              "%d rows, SQLite %d; first ids %lld / %lld", t,
              q.order == V3_STORE_ORDER_BEST ? "best" : "worst", (long long)q.limit,
              (long long)q.run_id, q.min_reward, q.max_reward, q.where ? q.where : "-", a.n, b.n,
              a.n ? (long long)a.ids[0] : -1LL, b.n ? (long long)b.ids[0] : -1LL);
        n_queries++;
        n_rows += a.n;
    }
    fprintf(stderr, "test_store_topk: %d samples, %d queries, %d rows compared\n", total, n_queries,
            n_rows);
    CHECK(n_rows > 1000, "the queries returned rows (%d)", n_rows);
    CHECK_OK(v3_store_close(s, &err), &err);
}

static int64_t q1(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A store written by schema v2 (migrations 1 and 2 only) is upgraded in place by a writer. */
static void test_v2_upgrade(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/v2.db", dir);
    v3_err err = {0};
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "create v2");
    CHECK_OK(v3_store__migrate(db, path, v3_store_migrations, 2, &err), &err);
    CHECK(sqlite3_exec(db, "INSERT INTO runs(id, command, started_at, status) VALUES(1, 'grpo', 0, "
                           "'completed'); INSERT INTO prompts(id, key, text, created_at) VALUES(1, "
                           "7, 'q', 0); INSERT INTO samples(id, run_id, step, prompt_id, group_id, "
                           "group_index, reward, completion_tokens, created_at, completion) VALUES"
                           "(1, 1, 0, 1, 0, 0, 0.25, 0, 0, 'a'), (2, 1, 1, 1, 0, 0, 0.75, 0, 0, 'b')",
                      NULL, NULL, NULL) == SQLITE_OK, "v2 rows: %s", sqlite3_errmsg(db));
    CHECK(q1(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'samples_reward'") == 1, "v2 index");
    sqlite3_close(db);
    v3_store *s = NULL;
    CHECK(v3_store_open(&s, path, V3_STORE_READ, &err) == V3_EUNSUPPORTED && strstr(err.msg, "older"),
          "a reader refuses v2 until a writer upgrades it: %s", err.msg);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "reopen");
    CHECK(q1(db, "PRAGMA user_version") == 3, "upgraded to v3");
    CHECK(q1(db, "SELECT count(*) FROM sqlite_schema WHERE name IN ('samples_reward', "
                 "'samples_run_step')") == 0, "the two v2 indices are gone");
    CHECK(q1(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'samples_run_step_reward'") == 1,
          "the v3 index");
    CHECK(q1(db, "SELECT count(*) FROM samples") == 2, "rows kept");
    sqlite3_close(db);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    got g = {0};
    v3_store_sample_query q = v3_store_sample_query_all();
    q.order = V3_STORE_ORDER_BEST;
    q.limit = 1;
    CHECK_OK(v3_store_query_samples(s, &q, collect, &g, &err), &err);
    CHECK(g.n == 1 && g.ids[0] == 2, "best of the upgraded store: n %d id %lld", g.n,
          g.n ? (long long)g.ids[0] : -1LL);
    CHECK_OK(v3_store_close(s, &err), &err);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_store_topk"));
    char dir[1024], path[1100], cmd[1200];
    t_tmpdir(dir, sizeof dir);
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/topk%d.db", dir, k);
        int total = write_store(path, &rng);
        test_queries(path, total, &rng);
    }
    test_v2_upgrade(dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_failures) system(cmd);
    return t_finish("test_store_topk");
}
