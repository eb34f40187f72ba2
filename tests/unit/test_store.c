/* test_store.c — the run store end to end in one process: every table written through the C API
 * and read back (values, NULLs, LE blobs, rewards per function, ordering and filters), prompt
 * dedupe across a reopen, schema migration, and the files that must be refused and left untouched
 * (newer schema, garbage, truncated, damaged pages, someone else's database, a second writer). */
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/blob.h"
#include "datasets/store.h"
#include "datasets/store_internal.h"
#include "testutil.h"

#define NTOK 37

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static int same_file(const char *path, const char *bytes, size_t n) {
    size_t m = 0;
    char *now = slurp(path, &m);
    int same = now && m == n && memcmp(now, bytes, n) == 0;
    free(now);
    return same;
}

static void put_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

/* ---- what the reader collects ---- */
typedef struct seen {
    int n;
    int64_t ids[64];
    double rewards[64];
    int bad_blob, bad_rewards;
    uint32_t want_ids[NTOK];
    float want_lp[NTOK];
} seen;

static int collect(void *ud, const v3_store_sample_row *r) {
    seen *S = ud;
    if (S->n < 64) {
        S->ids[S->n] = r->id;
        S->rewards[S->n] = r->reward;
    }
    S->n++;
    if (r->n_ids != NTOK || r->n_logprobs != NTOK) S->bad_blob++;
    else {
        uint32_t ids[NTOK];
        float lp[NTOK];
        v3_blob_get_u32(ids, r->token_ids, NTOK);
        v3_blob_get_f32(lp, r->logprobs, NTOK);
        for (int i = 0; i < NTOK; i++)
            if (ids[i] != S->want_ids[i] + (uint32_t)r->group_index || lp[i] != S->want_lp[i])
                S->bad_blob++;
    }
    /* every sample carries "correct" and "format" rewards; format failed on group_index 1 */
    if (r->n_rewards != 2 || strcmp(r->rewards[0].name, "correct") ||
        strcmp(r->rewards[1].name, "format"))
        S->bad_rewards++;
    else if (r->group_index == 1 && (!isnan(r->rewards[1].score) || !r->rewards[1].error ||
                                     !strstr(r->rewards[1].error, "boom")))
        S->bad_rewards++;
    return 0;
}

typedef struct runs_seen {
    int n;
    v3_store_run_summary last;
    char status[32];
} runs_seen;

static int collect_run(void *ud, const v3_store_run_summary *r) {
    runs_seen *R = ud;
    R->n++;
    R->last = *r;
    snprintf(R->status, sizeof R->status, "%s", r->status);
    R->last.status = R->status;
    R->last.command = R->last.git_rev = R->last.message = NULL;
    return 0;
}

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

static void write_run(const char *path, seen *S, v3_rng *rng) {
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err), &err);
    if (!s) return;
    int64_t run = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo", .config = "{\"lr\":1e-6}",
                                                        .git_rev = "abc123"}, &run, &err), &err);
    CHECK(run == 1, "first run id %lld", (long long)run);

    v3_store_batch *b = NULL;
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    int64_t p1 = 0, p1b = 0, p2 = 0;
    v3_store_prompt pr = {.text = "What is 2+2?", .fields_json = "{\"answer\":\"4\"}",
                          .source_file = "data/math.jsonl", .source_line = 3};
    CHECK_OK(v3_store_batch_add_prompt(b, &pr, &p1, &err), &err);
    CHECK_OK(v3_store_batch_add_prompt(b, &pr, &p1b, &err), &err);
    CHECK(p1 == p1b && p1 > 0, "same prompt, ids %lld %lld", (long long)p1, (long long)p1b);
    pr.fields_json = "{\"answer\":\"5\"}";
    CHECK_OK(v3_store_batch_add_prompt(b, &pr, &p2, &err), &err);
    CHECK(p2 != p1, "different fields give a different prompt");

    for (int i = 0; i < NTOK; i++) {
        S->want_ids[i] = (uint32_t)v3_rng_below(rng, 129280);
        S->want_lp[i] = -5.0f * v3_rng_uniform(rng);
    }
    /* 2 steps x 1 group x 4 samples; reward = group_index * 0.25 + step */
    for (int step = 1; step <= 2; step++) {
        for (int g = 0; g < 4; g++) {
            uint32_t ids[NTOK];
            for (int i = 0; i < NTOK; i++) ids[i] = S->want_ids[i] + (uint32_t)g;
            v3_store_sample smp = {.step = step, .prompt_id = p1, .group_id = 0, .group_index = g,
                                   .completion = g == 3 ? "" : "<think>2+2</think> 4",
                                   .n_tokens = NTOK, .token_ids = ids, .logprobs = S->want_lp,
                                   .trainer_logprobs = S->want_lp, .ref_logprobs = NULL,
                                   .finish_reason = g == 2 ? "length" : "stop", .prompt_tokens = 12,
                                   .policy_version = step - 1, .seed = 0xFFFFFFFFFFFFFFF0ull + g,
                                   .reward = g * 0.25 + step, .advantage = NAN};
            int64_t sid = 0;
            CHECK_OK(v3_store_batch_add_sample(b, &smp, &sid, &err), &err);
            CHECK_OK(v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid,
                     .name = "correct", .score = 1.0, .weight = 1.0, .extra_json = "{\"why\":1}",
                     .script_hash = "deadbeef", .elapsed_ms = 0.5}, &err), &err);
            CHECK_OK(v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid,
                     .name = "format", .score = g == 1 ? NAN : 0.5, .weight = NAN,
                     .error = g == 1 ? "format.lua:3: boom" : NULL, .elapsed_ms = NAN}, &err), &err);
            CHECK_OK(v3_store_batch_update_sample(b, &(v3_store_sample_update){.sample_id = sid,
                     .reward = NAN, .advantage = g - 1.5, .n_tokens = 0}, &err), &err);
        }
        const char *names[] = {"kl", "reward/mean", "skipped"};
        double vals[] = {0.01 * step, 1.5, NAN};
        CHECK_OK(v3_store_batch_add_step(b, &(v3_store_step){.step = step, .loss = 2.0 / step,
                 .lr = 1e-6, .grad_norm = NAN, .tokens = 4 * NTOK, .step_time_s = 0.25,
                 .n_metrics = 3, .metric_names = names, .metric_values = vals}, &err), &err);
    }
    int64_t load[8] = {5, 0, 7, 1, 1, 1, 2, 3};
    CHECK_OK(v3_store_batch_add_expert_load(b, 2, 1, 8, load, &err), &err);
    int64_t tr = 0;
    CHECK_OK(v3_store_batch_add_trace(b, &(v3_store_trace){.prompt_id = p1, .reasoning = "2+2=4",
             .answer = "4", .source_model = "deepseek-r1", .provenance_json = "{\"line\":3}",
             .filters_json = "[\"dedupe\"]", .accepted = 1}, &tr, &err), &err);
    CHECK_OK(v3_store_batch_add_verdict(b, &(v3_store_verdict){.trace_id = tr, .verifier = "math",
             .passed = 1, .score = 1.0}, &err), &err);
    uint64_t seq = 0;
    CHECK_OK(v3_store_submit(s, b, &seq, &err), &err);
    /* a submitted batch is the store's: re-submitting it is caught, not followed */
    CHECK(v3_store_submit(s, b, NULL, &err) == V3_EINVAL, "double submit refused");
    CHECK_OK(v3_store_log_eval(s, &(v3_store_eval){.step = 2, .name = "gsm8k/acc", .value = 0.5,
             .n_examples = 10}, &err), &err);
    CHECK_OK(v3_store_flush(s, 0, &err), &err);
    CHECK(v3_store_committed_seq(s) >= seq, "flush returned before batch %llu committed",
          (unsigned long long)seq);
    CHECK_OK(v3_store_register_checkpoint(s, &(v3_store_checkpoint){.step = 2, .path = "step-2",
             .bytes = 1234, .hash = "cafe"}, &err), &err);
    CHECK_OK(v3_store_run_end(s, "completed", NULL, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);
}

static void read_run(const char *path, seen *S) {
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    if (!s) return;
    v3_store_batch *b = NULL;
    CHECK(v3_store_batch_new(s, &b, &err) == V3_EINVAL, "a read store refuses batches");

    v3_store_sample_query q = v3_store_sample_query_all();
    S->n = 0;
    CHECK_OK(v3_store_query_samples(s, &q, collect, S, &err), &err);
    CHECK(S->n == 8, "8 samples, got %d", S->n);
    CHECK(S->bad_blob == 0, "%d blob mismatches", S->bad_blob);
    CHECK(S->bad_rewards == 0, "%d reward mismatches", S->bad_rewards);
    for (int i = 1; i < 8 && i < S->n; i++) CHECK(S->ids[i] > S->ids[i - 1], "id order");

    q.order = V3_STORE_ORDER_BEST;
    q.limit = 3;
    S->n = 0;
    CHECK_OK(v3_store_query_samples(s, &q, collect, S, &err), &err);
    CHECK(S->n == 3 && S->rewards[0] == 2.75 && S->rewards[1] == 2.5 && S->rewards[2] == 2.25,
          "best: n %d, %g %g %g", S->n, S->rewards[0], S->rewards[1], S->rewards[2]);
    q.order = V3_STORE_ORDER_WORST;
    q.step = 2;
    S->n = 0;
    CHECK_OK(v3_store_query_samples(s, &q, collect, S, &err), &err);
    CHECK(S->n == 3 && S->rewards[0] == 2.0, "worst of step 2: n %d first %g", S->n, S->rewards[0]);
    q = v3_store_sample_query_all();
    q.min_reward = 1.25;
    q.max_reward = 2.0;
    S->n = 0;
    CHECK_OK(v3_store_query_samples(s, &q, collect, S, &err), &err);
    CHECK(S->n == 4, "1.25 <= reward <= 2.0: %d", S->n); /* 1.25 1.5 1.75 2.0 */
    q = v3_store_sample_query_all();
    q.where = "s.finish_reason = 'length' AND p.text LIKE '%2+2%'";
    S->n = 0;
    CHECK_OK(v3_store_query_samples(s, &q, collect, S, &err), &err);
    CHECK(S->n == 2, "--where: %d", S->n);
    q.where = "1; DROP TABLE samples";
    CHECK(v3_store_query_samples(s, &q, collect, S, &err) != 0, "two statements refused");
    q.where = "no_such_column = 1";
    int rc = v3_store_query_samples(s, &q, collect, S, &err);
    CHECK(rc != 0 && strstr(err.msg, "no_such_column") && strstr(err.msg, path), "bad --where: %s",
          err.msg);

    runs_seen R = {0};
    CHECK_OK(v3_store_list_runs(s, collect_run, &R, &err), &err);
    CHECK(R.n == 1 && R.last.n_steps == 2 && R.last.last_step == 2 && R.last.last_loss == 1.0 &&
          R.last.n_samples == 8 && fabs(R.last.last_step_mean_reward - 2.375) < 1e-12 &&
          !strcmp(R.status, "completed") && !R.last.stale,
          "summary n %d steps %lld loss %g samples %lld reward %g status %s", R.n,
          (long long)R.last.n_steps, R.last.last_loss, (long long)R.last.n_samples,
          R.last.last_step_mean_reward, R.status);

    sqlite3 *db = v3_store_db(s);
    CHECK(sql_i64(db, "PRAGMA user_version") == V3_STORE_SCHEMA_VERSION, "user_version");
    CHECK(sql_i64(db, "PRAGMA application_id") == V3_STORE_APPLICATION_ID, "application_id");
    CHECK(sql_i64(db, "SELECT count(*) FROM prompts") == 2, "prompts deduplicated");
    CHECK(sql_i64(db, "SELECT count(*) FROM metrics") == 4, "NAN metric skipped");
    CHECK(sql_i64(db, "SELECT count(*) FROM steps WHERE grad_norm IS NULL") == 2, "NAN -> NULL");
    CHECK(sql_i64(db, "SELECT sum(tokens) FROM expert_load WHERE layer = 1") == 20, "expert load");
    CHECK(sql_i64(db, "SELECT count(*) FROM samples WHERE length(token_ids) = 4 * completion_tokens "
                      "AND ref_logprobs IS NULL AND advantage IS NOT NULL") == 8, "blob lengths");
    CHECK(sql_i64(db, "SELECT seed FROM samples ORDER BY id LIMIT 1") == -16, "seed bit pattern");
    CHECK(sql_i64(db, "SELECT count(*) FROM samples WHERE completion = ''") == 2, "empty completion");
    CHECK(sql_i64(db, "SELECT count(*) FROM verdicts v JOIN traces t ON t.id = v.trace_id "
                      "WHERE t.accepted = 1 AND v.passed = 1") == 1, "trace + verdict");
    CHECK(sql_i64(db, "SELECT bytes FROM checkpoints WHERE step = 2") == 1234, "checkpoint");
    CHECK(sql_i64(db, "SELECT count(*) FROM evals") == 1, "eval");
    CHECK(sql_i64(db, "SELECT ended_at >= started_at FROM runs") == 1, "run ended");
    CHECK_OK(v3_store_close(s, &err), &err);
}

static void test_resume(const char *path) {
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    if (!s) return;
    /* a second writer on the same file is refused (flock is per open file description) */
    v3_store *s2 = NULL;
    int rc = v3_store_open(&s2, path, V3_STORE_WRITE, &err);
    CHECK(rc != 0 && strstr(err.msg, "another process"), "second writer: %d %s", rc, err.msg);
    int64_t run = 0, pid = 0, sid = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo", .resumed_from = 1}, &run,
                                &err), &err);
    CHECK(run == 2, "resumed run id %lld", (long long)run);
    v3_store_batch *b = NULL;
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = "What is 2+2?",
             .fields_json = "{\"answer\":\"4\"}"}, &pid, &err), &err);
    CHECK(pid == 1, "prompt id survives a reopen: %lld", (long long)pid);
    CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = 3, .prompt_id = pid,
             .completion = "x", .finish_reason = "stop", .reward = NAN, .advantage = NAN}, &sid,
             &err), &err);
    CHECK(sid == 9, "sample ids continue: %lld", (long long)sid);
    CHECK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = 3, .prompt_id = pid,
          .completion = "x", .finish_reason = "timeout"}, NULL, &err) == V3_EINVAL,
          "bad finish reason refused at add time");
    CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    /* a late update: reward known, reference logprobs computed after the sample was queued */
    static const float ref[1] = {-0.75f};
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    CHECK_OK(v3_store_batch_update_sample(b, &(v3_store_sample_update){.sample_id = 1,
             .reward = 0.5, .advantage = NAN, .n_tokens = 1, .ref_logprobs = ref}, &err), &err);
    CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    /* closing without run_end leaves "running"; the next writer marks it interrupted */
    CHECK_OK(v3_store_close(s, &err), &err);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    if (!s) return;
    CHECK(sql_i64(v3_store_db(s), "SELECT count(*) FROM runs WHERE status = 'interrupted'") == 1,
          "dead run marked interrupted");
    CHECK(sql_i64(v3_store_db(s), "SELECT count(*) FROM samples") == 9, "9 samples");
    CHECK(sql_i64(v3_store_db(s), "SELECT n_samples FROM runs WHERE id = 2") == 1, "run 2 counter");
    CHECK(sql_i64(v3_store_db(s), "SELECT reward = 0.5 AND advantage = -1.5 AND ref_logprobs = "
                                  "x'000040BF' AND length(trainer_logprobs) = 4 * 37 FROM samples "
                                  "WHERE id = 1") == 1, "late update kept the other columns");
    CHECK_OK(v3_store_close(s, &err), &err);
}

static void test_migration(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/mig.db", dir);
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err), &err);
    int64_t run = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "sft"}, &run, &err), &err);
    CHECK_OK(v3_store_log_step(s, &(v3_store_step){.step = 1, .loss = 3.0, .lr = NAN,
             .grad_norm = NAN, .tokens = -1, .step_time_s = NAN}, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);
    /* a future version adds a column: applying it keeps the data and bumps user_version */
    enum { NEXT = V3_STORE_SCHEMA_VERSION + 1 };
    const char *migs[NEXT];
    for (int i = 0; i < V3_STORE_SCHEMA_VERSION; i++) migs[i] = v3_store_migrations[i];
    migs[NEXT - 1] = "ALTER TABLE steps ADD COLUMN tokens_per_s REAL";
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "open");
    CHECK_OK(v3_store__migrate(db, path, migs, NEXT, &err), &err);
    CHECK(sql_i64(db, "PRAGMA user_version") == NEXT, "migrated to the next version");
    CHECK(sql_i64(db, "SELECT count(*) FROM steps WHERE loss = 3.0 AND tokens_per_s IS NULL") == 1,
          "data kept");
    CHECK_OK(v3_store__migrate(db, path, migs, NEXT, &err), &err); /* idempotent */
    sqlite3_close(db);
    /* and this build refuses the newer file, for writing and for reading */
    size_t n = 0;
    char *before = slurp(path, &n);
    int rc = v3_store_open(&s, path, V3_STORE_WRITE, &err);
    CHECK(rc == V3_EUNSUPPORTED && strstr(err.msg, "newer") && strstr(err.msg, path),
          "newer refused for write: %d %s", rc, err.msg);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    char newer[32];
    snprintf(newer, sizeof newer, "version %d", NEXT);
    CHECK(rc == V3_EUNSUPPORTED && strstr(err.msg, newer), "newer refused for read: %s", err.msg);
    CHECK(same_file(path, before, n), "refused file unchanged");
    free(before);
}

static void test_bad_files(const char *dir, const char *good, v3_rng *rng) {
    v3_err err = {0};
    v3_store *s = NULL;
    char path[1100];
    int rc;

    /* missing: readers never create */
    snprintf(path, sizeof path, "%s/missing.db", dir);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_ENOTFOUND && access(path, F_OK) != 0, "missing: %d %s", rc, err.msg);
    rc = v3_store_open(&s, path, V3_STORE_WRITE, &err);
    CHECK(rc == V3_ENOTFOUND && access(path, F_OK) != 0, "missing without CREATE: %d", rc);

    /* garbage bytes: never overwritten, not even with CREATE */
    snprintf(path, sizeof path, "%s/garbage.db", dir);
    char junk[5000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)v3_rng_below(rng, 256);
    put_file(path, junk, sizeof junk);
    rc = v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "not an SQLite database"), "garbage: %d %s", rc,
          err.msg);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_EFORMAT, "garbage read: %d", rc);
    CHECK(same_file(path, junk, sizeof junk), "garbage file untouched");

    /* a text file (a config someone named run.db) */
    snprintf(path, sizeof path, "%s/text.db", dir);
    put_file(path, "return { lr = 1e-6 }\n", 21);
    rc = v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err);
    CHECK(rc == V3_EFORMAT && same_file(path, "return { lr = 1e-6 }\n", 21), "text file: %d", rc);

    /* a directory */
    rc = v3_store_open(&s, dir, V3_STORE_WRITE | V3_STORE_CREATE, &err);
    CHECK(rc == V3_EINVAL, "directory: %d %s", rc, err.msg);

    size_t n = 0;
    char *img = slurp(good, &n);
    /* the page size from the header (bytes 16-17, big-endian; 1 means 65536) */
    size_t page = img && n > 100 ? ((size_t)(unsigned char)img[16] << 8 | (unsigned char)img[17]) : 0;
    if (page == 1) page = 65536;
    CHECK(img && page >= 512 && n > 4 * page, "good image %zu bytes, page %zu", n, page);
    if (!img || page < 512) return;

    /* truncated to half */
    snprintf(path, sizeof path, "%s/trunc.db", dir);
    size_t half = (n / 2) & ~(page - 1); /* page aligned, so only the header count tells */
    put_file(path, img, half);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "truncated"), "truncated read: %d %s", rc, err.msg);
    rc = v3_store_open(&s, path, V3_STORE_WRITE, &err);
    CHECK(rc == V3_EFORMAT && same_file(path, img, half), "truncated write refused, untouched");
    put_file(path, img, 1000); /* not even page aligned */
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_EFORMAT, "1000-byte stub: %d %s", rc, err.msg);

    /* damaged pages: everything after page 1 overwritten; the header still looks fine */
    snprintf(path, sizeof path, "%s/damaged.db", dir);
    char *bad = malloc(n);
    memcpy(bad, img, n);
    for (size_t i = page; i < n; i++) bad[i] = (char)v3_rng_below(rng, 256);
    put_file(path, bad, n);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    if (rc == V3_OK) {
        seen S = {0};
        v3_store_sample_query q = v3_store_sample_query_all();
        rc = v3_store_query_samples(s, &q, collect, &S, &err);
        v3_store_close(s, NULL);
    }
    CHECK(rc == V3_EFORMAT && (strstr(err.msg, "malformed") || strstr(err.msg, "damaged")),
          "damaged: %d %s", rc, err.msg);
    rc = v3_store_open(&s, path, V3_STORE_WRITE, &err);
    if (rc == V3_OK) v3_store_close(s, NULL);
    CHECK(rc != V3_OK, "damaged file refused for writing");
    CHECK(same_file(path, bad, n), "damaged file untouched");
    free(bad);
    free(img);

    /* an SQLite database that is not a run store */
    snprintf(path, sizeof path, "%s/other.db", dir);
    sqlite3 *db = NULL;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "CREATE TABLE users(name TEXT); INSERT INTO users VALUES('ann')", 0, 0, 0);
    sqlite3_close(db);
    char *other = slurp(path, &n);
    rc = v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "not a v3tune run store"), "other db: %d %s", rc,
          err.msg);
    CHECK(same_file(path, other, n), "other db untouched");
    free(other);

    /* an empty file (what a crash right after creation leaves) becomes a store */
    snprintf(path, sizeof path, "%s/empty.db", dir);
    put_file(path, "", 0);
    rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    CHECK(rc == V3_ENOTFOUND, "empty file is no store for a reader: %d", rc);
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);
}


static int64_t size_of(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* The checkpointer (store_ckpt.c) copies the WAL into the database file while the run writes,
 * and a writer that never pauses still cannot grow the WAL past wal_max_bytes (plus the
 * transaction that crossed it): here ~12 MB of rows go through a WAL kept near 256 KiB. */
static void test_checkpointer(const char *dir) {
    char path[1100], wal[1200];
    snprintf(path, sizeof path, "%s/ckpt.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    v3_err err = {0};
    v3_store *s = NULL;
    const int64_t txn = 32 << 10, wal_max = 256 << 10;
    v3_store_opts o = {.txn_max_bytes = txn, .page_size = 4096, .wal_checkpoint_bytes = 64 << 10,
                       .wal_max_bytes = wal_max};
    CHECK_OK(v3_store_open_opts(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &o, &err), &err);
    if (!s) return;
    int64_t run = 0, pid = 0, wal_peak = 0, db_before_close = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "ckpt"}, &run, &err), &err);
    static float lp[2048];
    for (int k = 0; k < 400; k++) {
        v3_store_batch *b = NULL;
        CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
        CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = "q"}, &pid, &err), &err);
        for (int i = 0; i < 4; i++) {
            lp[i] = (float)k;
            CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = k, .prompt_id = pid,
                     .completion = "c", .n_tokens = 2048, .logprobs = lp, .finish_reason = "stop",
                     .reward = NAN, .advantage = NAN}, NULL, &err), &err);
        }
        CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
        if (k % 16 == 15) {
            CHECK_OK(v3_store_flush(s, 0, &err), &err);
            int64_t w = size_of(wal);
            if (w > wal_peak) wal_peak = w;
        }
    }
    CHECK_OK(v3_store_flush(s, 1, &err), &err);
    db_before_close = size_of(path);
    int64_t wal_end = size_of(wal);
    if (wal_end > wal_peak) wal_peak = wal_end;
    CHECK_OK(v3_store_close(s, &err), &err);
    /* 1,600 samples of 8 KiB of logprobs: ~13 MB of rows. */
    int64_t rows = 1600 * 8192;
    CHECK(wal_peak > 0 && wal_peak <= wal_max + 4 * txn + (64 << 10),
          "WAL stays bounded: peak %lld bytes, wal_max %lld", (long long)wal_peak, (long long)wal_max);
    CHECK(db_before_close >= rows / 2, "rows reach the database file while the run writes: %lld bytes "
          "before close", (long long)db_before_close);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "reopen");
    CHECK(sql_i64(db, "SELECT count(*) FROM samples") == 1600, "all 1600 samples");
    CHECK(sql_i64(db, "SELECT count(DISTINCT step) FROM samples WHERE length(logprobs) = 8192") == 400,
          "every batch's rows, whole");
    sqlite3_close(db);
}

/* A tiny queue budget forces submit to wait on the writer; nothing may be lost. Then a transaction
 * that fails (its table dropped behind the writer's back) must surface with SQLite's message and
 * the path, stay sticky, and leave earlier rows committed. */
static void test_backpressure_and_failure(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/bp.db", dir);
    v3_err err = {0};
    v3_store *s = NULL;
    v3_store_opts o = {.queue_max_bytes = 64 << 10, .txn_max_bytes = 16 << 10, .page_size = 4096};
    CHECK_OK(v3_store_open_opts(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &o, &err), &err);
    if (!s) return;
    int64_t run = 0, pid = 0;
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "bp"}, &run, &err), &err);
    static float lp[2048];
    for (int k = 0; k < 200; k++) {
        v3_store_batch *b = NULL;
        CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
        CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = "q"}, &pid, &err), &err);
        for (int i = 0; i < 4; i++)
            CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = k, .prompt_id = pid,
                     .completion = "c", .n_tokens = 2048, .logprobs = lp, .finish_reason = "stop",
                     .reward = NAN, .advantage = NAN}, NULL, &err), &err);
        CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    }
    CHECK_OK(v3_store_flush(s, 0, &err), &err);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK, "second connection");
    CHECK(sql_i64(db, "SELECT count(*) FROM samples") == 800, "all 800 samples committed");
    CHECK(sqlite3_exec(db, "DROP TABLE rewards", 0, 0, 0) == SQLITE_OK, "drop: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    v3_store_batch *b = NULL;
    CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
    CHECK_OK(v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = 1, .name = "r", .score = 1,
             .weight = NAN, .elapsed_ms = NAN}, &err), &err);
    CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
    int rc = v3_store_flush(s, 0, &err);
    CHECK(rc != 0 && strstr(err.msg, "rewards") && strstr(err.msg, path), "failure surfaces: %d %s",
          rc, err.msg);
    CHECK(v3_store_log_step(s, &(v3_store_step){.step = 1, .loss = NAN, .lr = NAN, .grad_norm = NAN,
          .tokens = -1, .step_time_s = NAN}, &err) != 0, "sticky after failure");
    CHECK(v3_store_close(s, &err) != 0, "close reports the failure");
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_store"));
    char dir[1024], path[1100], cmd[2400];
    t_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/run.db", dir);
    seen S;
    memset(&S, 0, sizeof S);
    write_run(path, &S, &rng);
    read_run(path, &S);
    char copy[1100];
    snprintf(copy, sizeof copy, "%s/good.db", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy); /* cleanly closed: no WAL to copy */
    CHECK(system(cmd) == 0, "copy");
    test_resume(path);
    test_migration(dir);
    test_backpressure_and_failure(dir);
    test_checkpointer(dir);
    test_bad_files(dir, copy, &rng);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_failures) system(cmd);
    return t_finish("test_store");
}
