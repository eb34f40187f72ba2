/* store_writer.c — the queue and the one writer thread that empties it.
 * Training threads only append batches to the queue (bounded by queue_max_bytes: when the disk
 * cannot keep up, submit waits rather than dropping rows). The writer takes every queued batch up
 * to txn_max_bytes, writes them in ONE transaction with cached prepared statements and commits;
 * only after COMMIT returns does committed_seq advance, so a flush that returned means the rows are
 * in the WAL and survive a crash of this process. A failed transaction is rolled back whole, the
 * error becomes sticky and every later submit/flush reports it: a run never silently loses rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/store_internal.h"

static const char *const stmt_sql[V3_ST_COUNT] = {
    [V3_ST_BEGIN] = "BEGIN IMMEDIATE",
    [V3_ST_COMMIT] = "COMMIT",
    [V3_ST_ROLLBACK] = "ROLLBACK",
    [V3_ST_RUN] = "INSERT INTO runs(id, command, config, git_rev, v3tune_version, hostname, pid, "
                  "started_at, heartbeat_at, status, resumed_from) "
                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'running', ?9)",
    [V3_ST_RUN_END] = "UPDATE runs SET status = ?2, message = ?3, ended_at = ?4, heartbeat_at = ?4 "
                      "WHERE id = ?1",
    [V3_ST_HEARTBEAT] = "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1",
    [V3_ST_NSAMP] = "UPDATE runs SET n_samples = n_samples + ?2 WHERE id = ?1",
    [V3_ST_STEP] = "INSERT OR REPLACE INTO steps(run_id, step, time, loss, lr, grad_norm, tokens, "
                   "step_time_s) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [V3_ST_METRIC] = "INSERT OR REPLACE INTO metrics(run_id, name, step, value) VALUES(?1, ?2, ?3, ?4)",
    [V3_ST_EVAL] = "INSERT OR REPLACE INTO evals(run_id, step, name, value, n_examples, extra, time) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [V3_ST_LOAD] = "INSERT OR REPLACE INTO expert_load(run_id, step, layer, expert, tokens) "
                   "VALUES(?1, ?2, ?3, ?4, ?5)",
    [V3_ST_PROMPT] = "INSERT OR IGNORE INTO prompts(id, key, text, messages, fields, source_file, "
                     "source_line, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [V3_ST_SAMPLE] = "INSERT INTO samples(id, run_id, step, prompt_id, group_id, group_index, reward, "
                     "advantage, finish_reason, prompt_tokens, completion_tokens, policy_version, "
                     "seed, created_at, completion, token_ids, logprobs, trainer_logprobs, "
                     "ref_logprobs) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                     "?14, ?15, ?16, ?17, ?18, ?19)",
    [V3_ST_SAMPLE_UPDATE] = "UPDATE samples SET reward = coalesce(?2, reward), "
                            "advantage = coalesce(?3, advantage), "
                            "trainer_logprobs = coalesce(?4, trainer_logprobs), "
                            "ref_logprobs = coalesce(?5, ref_logprobs) WHERE id = ?1",
    [V3_ST_REWARD] = "INSERT OR REPLACE INTO rewards(sample_id, name, score, weight, error, extra, "
                     "script_hash, elapsed_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [V3_ST_TRACE] = "INSERT INTO traces(id, run_id, prompt_id, reasoning, answer, source_model, "
                    "provenance, filters_passed, accepted, created_at, key, truncated) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [V3_ST_VERDICT] = "INSERT OR REPLACE INTO verdicts(trace_id, verifier, passed, score, detail, "
                      "run_id, weight, error, extra, script_hash, elapsed_ms) "
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [V3_ST_TRACE_UPDATE] = "UPDATE traces SET accepted = ?2, filters_passed = ?3 WHERE id = ?1",
    [V3_ST_SELECTION] = "INSERT INTO selections(id, run_id, name, config, report, n_traces, n_kept, "
                        "created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [V3_ST_SELECTED] = "INSERT OR REPLACE INTO selection_traces(selection_id, trace_id, kept, "
                       "rejected_by, tokens, detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [V3_ST_CKPT] = "INSERT OR REPLACE INTO checkpoints(run_id, step, path, bytes, hash, created_at) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
};

#define V3_HEARTBEAT_S 10.0 /* runs.heartbeat_at is refreshed at least this often while writing */

/* ---- binding: NAN, NULL spans and negative "unknown" counts become SQL NULL ---- */

static int bind_real(sqlite3_stmt *st, int i, double v) {
    return isnan(v) ? sqlite3_bind_null(st, i) : sqlite3_bind_double(st, i, v);
}

static int bind_i64(sqlite3_stmt *st, int i, int64_t v) { return sqlite3_bind_int64(st, i, v); }

static int bind_i64_or_null(sqlite3_stmt *st, int i, int64_t v, int present) {
    return present ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

static int bind_text(sqlite3_stmt *st, int i, const v3_store_batch *b, v3_span sp) {
    if (sp.len < 0) return sqlite3_bind_null(st, i);
    if (sp.len == 0) return sqlite3_bind_text(st, i, "", 0, SQLITE_STATIC);
    return sqlite3_bind_text64(st, i, (const char *)b->data + sp.off, (sqlite3_uint64)sp.len,
                               SQLITE_STATIC, SQLITE_UTF8);
}

static int bind_blob(sqlite3_stmt *st, int i, const v3_store_batch *b, v3_span sp) {
    if (sp.len < 0) return sqlite3_bind_null(st, i);
    if (sp.len == 0) return sqlite3_bind_zeroblob(st, i, 0); /* a NULL pointer would bind NULL */
    return sqlite3_bind_blob64(st, i, b->data + sp.off, (sqlite3_uint64)sp.len, SQLITE_STATIC);
}

/* What a record's statement was doing, for its error message (built only on failure: formatting
 * it for every row cost more than binding the row). */
static void describe_rec(const v3_rec *r, char *buf, size_t n) {
    switch (r->type) {
    case V3_REC_RUN_BEGIN:
        snprintf(buf, n, "inserting run %lld", (long long)r->u.run.id);
        break;
    case V3_REC_RUN_END:
        snprintf(buf, n, "ending run %lld", (long long)r->u.run_end.id);
        break;
    case V3_REC_STEP:
        snprintf(buf, n, "inserting step %lld", (long long)r->u.step.step);
        break;
    case V3_REC_METRIC:
        snprintf(buf, n, "inserting a metric of step %lld", (long long)r->u.metric.step);
        break;
    case V3_REC_EVAL:
        snprintf(buf, n, "inserting an eval of step %lld", (long long)r->u.eval.step);
        break;
    case V3_REC_EXPERT_LOAD:
        snprintf(buf, n, "inserting expert load of step %lld layer %d", (long long)r->u.load.step,
                 r->u.load.layer);
        break;
    case V3_REC_PROMPT:
        snprintf(buf, n, "inserting prompt %lld", (long long)r->u.prompt.id);
        break;
    case V3_REC_SAMPLE:
        snprintf(buf, n, "inserting sample %lld", (long long)r->u.sample.id);
        break;
    case V3_REC_SAMPLE_UPDATE:
        snprintf(buf, n, "updating sample %lld", (long long)r->u.upd.id);
        break;
    case V3_REC_REWARD:
        snprintf(buf, n, "inserting a reward of sample %lld", (long long)r->u.reward.sample_id);
        break;
    case V3_REC_TRACE:
        snprintf(buf, n, "inserting trace %lld", (long long)r->u.trace.id);
        break;
    case V3_REC_VERDICT:
        snprintf(buf, n, "inserting a verdict of trace %lld", (long long)r->u.verdict.trace_id);
        break;
    case V3_REC_TRACE_UPDATE:
        snprintf(buf, n, "updating trace %lld", (long long)r->u.trace_upd.id);
        break;
    case V3_REC_SELECTION:
        snprintf(buf, n, "inserting selection %lld", (long long)r->u.selection.id);
        break;
    case V3_REC_SELECTED:
        snprintf(buf, n, "selecting trace %lld in selection %lld", (long long)r->u.selected.trace_id,
                 (long long)r->u.selected.selection_id);
        break;
    case V3_REC_CHECKPOINT:
        snprintf(buf, n, "registering checkpoint of step %lld", (long long)r->u.ckpt.step);
        break;
    default:
        snprintf(buf, n, "writing a record of type %d", r->type);
    }
}

/* Runs a bound statement that returns no rows and makes it reusable. The error names `what`, or
 * else the record r. */
static int run_stmt(v3_store *s, sqlite3_stmt *st, int bind_rc, const char *what, const v3_rec *r,
                    v3_err *err) {
    int rc = bind_rc != SQLITE_OK ? bind_rc : v3_store__step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return V3_OK;
    }
    char buf[96];
    if (!what) {
        describe_rec(r, buf, sizeof buf);
        what = buf;
    }
    v3_store__sqlerr(err, s->db, s->path, what);
    sqlite3_reset(st);
    return err ? err->code : V3_EIO;
}

static int write_rec(v3_store *s, const v3_store_batch *b, const v3_rec *r, v3_err *err) {
    sqlite3_stmt *st;
    int k = SQLITE_OK;
    switch (r->type) {
    case V3_REC_RUN_BEGIN:
        st = s->st[V3_ST_RUN];
        k |= bind_i64(st, 1, r->u.run.id);
        k |= bind_text(st, 2, b, r->u.run.command);
        k |= bind_text(st, 3, b, r->u.run.config);
        k |= bind_text(st, 4, b, r->u.run.git_rev);
        k |= sqlite3_bind_text(st, 5, V3_VERSION, -1, SQLITE_STATIC);
        k |= bind_text(st, 6, b, r->u.run.host);
        k |= bind_i64(st, 7, r->u.run.pid);
        k |= bind_real(st, 8, r->time);
        k |= bind_i64_or_null(st, 9, r->u.run.resumed_from, r->u.run.resumed_from > 0);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_RUN_END:
        st = s->st[V3_ST_RUN_END];
        k |= bind_i64(st, 1, r->u.run_end.id);
        k |= bind_text(st, 2, b, r->u.run_end.status);
        k |= bind_text(st, 3, b, r->u.run_end.message);
        k |= bind_real(st, 4, r->time);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_STEP:
        st = s->st[V3_ST_STEP];
        k |= bind_i64(st, 1, r->run_id);
        k |= bind_i64(st, 2, r->u.step.step);
        k |= bind_real(st, 3, r->time);
        k |= bind_real(st, 4, r->u.step.loss);
        k |= bind_real(st, 5, r->u.step.lr);
        k |= bind_real(st, 6, r->u.step.grad_norm);
        k |= bind_i64_or_null(st, 7, r->u.step.tokens, r->u.step.tokens >= 0);
        k |= bind_real(st, 8, r->u.step.step_time_s);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_METRIC:
        st = s->st[V3_ST_METRIC];
        k |= bind_i64(st, 1, r->run_id);
        k |= bind_text(st, 2, b, r->u.metric.name);
        k |= bind_i64(st, 3, r->u.metric.step);
        k |= bind_real(st, 4, r->u.metric.value);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_EVAL:
        st = s->st[V3_ST_EVAL];
        k |= bind_i64(st, 1, r->run_id);
        k |= bind_i64(st, 2, r->u.eval.step);
        k |= bind_text(st, 3, b, r->u.eval.name);
        k |= bind_real(st, 4, r->u.eval.value);
        k |= bind_i64_or_null(st, 5, r->u.eval.n_examples, r->u.eval.n_examples >= 0);
        k |= bind_text(st, 6, b, r->u.eval.extra);
        k |= bind_real(st, 7, r->time);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_EXPERT_LOAD: {
        st = s->st[V3_ST_LOAD];
        const uint8_t *p = v3_span_ptr(b, r->u.load.counts);
        for (int e = 0; e < r->u.load.n_expert; e++) {
            int64_t c;
            memcpy(&c, p + (size_t)e * sizeof c, sizeof c); /* batch data is not aligned */
            k = bind_i64(st, 1, r->run_id);
            k |= bind_i64(st, 2, r->u.load.step);
            k |= bind_i64(st, 3, r->u.load.layer);
            k |= bind_i64(st, 4, e);
            k |= bind_i64(st, 5, c);
            int rc = run_stmt(s, st, k, NULL, r, err);
            if (rc) return rc;
        }
        return V3_OK;
    }
    case V3_REC_PROMPT:
        st = s->st[V3_ST_PROMPT];
        k |= bind_i64(st, 1, r->u.prompt.id);
        k |= bind_i64(st, 2, r->u.prompt.key);
        k |= bind_text(st, 3, b, r->u.prompt.text);
        k |= bind_text(st, 4, b, r->u.prompt.messages);
        k |= bind_text(st, 5, b, r->u.prompt.fields);
        k |= bind_text(st, 6, b, r->u.prompt.file);
        k |= bind_i64_or_null(st, 7, r->u.prompt.line, r->u.prompt.line > 0);
        k |= bind_real(st, 8, r->time);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_SAMPLE:
        st = s->st[V3_ST_SAMPLE];
        k |= bind_i64(st, 1, r->u.sample.id);
        k |= bind_i64(st, 2, r->run_id);
        k |= bind_i64(st, 3, r->u.sample.step);
        k |= bind_i64(st, 4, r->u.sample.prompt_id);
        k |= bind_i64(st, 5, r->u.sample.group_id);
        k |= bind_i64(st, 6, r->u.sample.group_index);
        k |= bind_real(st, 7, r->u.sample.reward);
        k |= bind_real(st, 8, r->u.sample.advantage);
        k |= bind_text(st, 9, b, r->u.sample.finish);
        k |= bind_i64_or_null(st, 10, r->u.sample.prompt_tokens, r->u.sample.prompt_tokens >= 0);
        k |= bind_i64(st, 11, r->u.sample.n_tokens);
        k |= bind_i64(st, 12, r->u.sample.policy_version);
        k |= bind_i64(st, 13, r->u.sample.seed);
        k |= bind_real(st, 14, r->time);
        k |= bind_text(st, 15, b, r->u.sample.completion);
        k |= bind_blob(st, 16, b, r->u.sample.ids);
        k |= bind_blob(st, 17, b, r->u.sample.logprobs);
        k |= bind_blob(st, 18, b, r->u.sample.trainer_logprobs);
        k |= bind_blob(st, 19, b, r->u.sample.ref_logprobs);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_SAMPLE_UPDATE:
        st = s->st[V3_ST_SAMPLE_UPDATE];
        k |= bind_i64(st, 1, r->u.upd.id);
        k |= bind_real(st, 2, r->u.upd.reward);
        k |= bind_real(st, 3, r->u.upd.advantage);
        k |= bind_blob(st, 4, b, r->u.upd.trainer_logprobs);
        k |= bind_blob(st, 5, b, r->u.upd.ref_logprobs);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_REWARD:
        st = s->st[V3_ST_REWARD];
        k |= bind_i64(st, 1, r->u.reward.sample_id);
        k |= bind_text(st, 2, b, r->u.reward.name);
        k |= bind_real(st, 3, r->u.reward.score);
        k |= bind_real(st, 4, r->u.reward.weight);
        k |= bind_text(st, 5, b, r->u.reward.error);
        k |= bind_text(st, 6, b, r->u.reward.extra);
        k |= bind_text(st, 7, b, r->u.reward.hash);
        k |= bind_real(st, 8, r->u.reward.elapsed_ms);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_TRACE:
        st = s->st[V3_ST_TRACE];
        k |= bind_i64(st, 1, r->u.trace.id);
        k |= bind_i64_or_null(st, 2, r->run_id, r->run_id > 0);
        k |= bind_i64_or_null(st, 3, r->u.trace.prompt_id, r->u.trace.prompt_id > 0);
        k |= bind_text(st, 4, b, r->u.trace.reasoning);
        k |= bind_text(st, 5, b, r->u.trace.answer);
        k |= bind_text(st, 6, b, r->u.trace.model);
        k |= bind_text(st, 7, b, r->u.trace.prov);
        k |= bind_text(st, 8, b, r->u.trace.filters);
        k |= bind_i64_or_null(st, 9, r->u.trace.accepted > 0, r->u.trace.accepted >= 0);
        k |= bind_real(st, 10, r->time);
        k |= bind_i64_or_null(st, 11, r->u.trace.key, r->u.trace.key != 0);
        k |= bind_i64(st, 12, r->u.trace.truncated);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_VERDICT:
        st = s->st[V3_ST_VERDICT];
        k |= bind_i64(st, 1, r->u.verdict.trace_id);
        k |= bind_text(st, 2, b, r->u.verdict.verifier);
        k |= bind_i64(st, 3, r->u.verdict.passed);
        k |= bind_real(st, 4, r->u.verdict.score);
        k |= bind_text(st, 5, b, r->u.verdict.detail);
        k |= bind_i64_or_null(st, 6, r->run_id, r->run_id > 0);
        k |= bind_real(st, 7, r->u.verdict.weight);
        k |= bind_text(st, 8, b, r->u.verdict.error);
        k |= bind_text(st, 9, b, r->u.verdict.extra);
        k |= bind_text(st, 10, b, r->u.verdict.hash);
        k |= bind_real(st, 11, r->u.verdict.elapsed_ms);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_TRACE_UPDATE:
        st = s->st[V3_ST_TRACE_UPDATE];
        k |= bind_i64(st, 1, r->u.trace_upd.id);
        k |= bind_i64_or_null(st, 2, r->u.trace_upd.accepted > 0, r->u.trace_upd.accepted >= 0);
        k |= bind_text(st, 3, b, r->u.trace_upd.filters);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_SELECTION:
        st = s->st[V3_ST_SELECTION];
        k |= bind_i64(st, 1, r->u.selection.id);
        k |= bind_i64_or_null(st, 2, r->run_id, r->run_id > 0);
        k |= bind_text(st, 3, b, r->u.selection.name);
        k |= bind_text(st, 4, b, r->u.selection.config);
        k |= bind_text(st, 5, b, r->u.selection.report);
        k |= bind_i64(st, 6, r->u.selection.n_traces);
        k |= bind_i64(st, 7, r->u.selection.n_kept);
        k |= bind_real(st, 8, r->time);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_SELECTED:
        st = s->st[V3_ST_SELECTED];
        k |= bind_i64(st, 1, r->u.selected.selection_id);
        k |= bind_i64(st, 2, r->u.selected.trace_id);
        k |= bind_i64(st, 3, r->u.selected.kept);
        k |= bind_text(st, 4, b, r->u.selected.rejected_by);
        k |= bind_i64_or_null(st, 5, r->u.selected.tokens, r->u.selected.tokens >= 0);
        k |= bind_text(st, 6, b, r->u.selected.detail);
        return run_stmt(s, st, k, NULL, r, err);
    case V3_REC_CHECKPOINT:
        st = s->st[V3_ST_CKPT];
        k |= bind_i64(st, 1, r->run_id);
        k |= bind_i64(st, 2, r->u.ckpt.step);
        k |= bind_text(st, 3, b, r->u.ckpt.path);
        k |= bind_i64_or_null(st, 4, r->u.ckpt.bytes, r->u.ckpt.bytes >= 0);
        k |= bind_text(st, 5, b, r->u.ckpt.hash);
        k |= bind_real(st, 6, r->time);
        return run_stmt(s, st, k, NULL, r, err);
    default:
        return v3_errf(err, V3_EINVAL, "%s: unknown record type %d", s->path, r->type);
    }
}

static int exec_stmt(v3_store *s, int id, v3_err *err) {
    return run_stmt(s, s->st[id], SQLITE_OK, stmt_sql[id], NULL, err);
}

static int add_samples(v3_store *s, int64_t run_id, int64_t n, v3_err *err) {
    sqlite3_stmt *st = s->st[V3_ST_NSAMP];
    int k = bind_i64(st, 1, run_id) | bind_i64(st, 2, n);
    return run_stmt(s, st, k, "counting the run's samples", NULL, err);
}

/* Writes a chain of batches in one transaction. run_id: the current run for the heartbeat. */
static int commit_chain(v3_store *s, v3_store_batch *chain, int durable, int64_t run_id,
                        v3_err *err) {
    int rc = V3_OK, in_txn = 0;
    if (durable && (rc = v3_store__exec(s->db, s->path, "PRAGMA synchronous = FULL", err))) goto done;
    if ((rc = exec_stmt(s, V3_ST_BEGIN, err))) goto done;
    in_txn = 1;
    /* runs.n_samples moves in the same transaction as the rows it counts, so `v3tune runs` can
     * show it without counting millions of rows, and it can never disagree with them. */
    int64_t count_run = 0, count = 0;
    for (v3_store_batch *b = chain; b; b = b->next) {
        for (int i = 0; i < b->n; i++) {
            const v3_rec *r = &b->recs[i];
            if (r->type == V3_REC_SAMPLE && r->run_id != count_run) {
                if (count && (rc = add_samples(s, count_run, count, err))) goto done;
                count_run = r->run_id;
                count = 0;
            }
            if (r->type == V3_REC_SAMPLE) count++;
            if ((rc = write_rec(s, b, r, err))) goto done;
        }
    }
    if (count && (rc = add_samples(s, count_run, count, err))) goto done;
    double now = v3_store__now();
    /* With synchronous=FULL the commit fsyncs the whole WAL, earlier frames included; the heartbeat
     * row guarantees the transaction is not empty (an empty one writes and syncs nothing). */
    if (run_id > 0 && (durable || now - s->last_heartbeat >= V3_HEARTBEAT_S)) {
        sqlite3_stmt *st = s->st[V3_ST_HEARTBEAT];
        int k = bind_i64(st, 1, run_id) | bind_real(st, 2, now);
        if ((rc = run_stmt(s, st, k, "updating the run heartbeat", NULL, err))) goto done;
        s->last_heartbeat = now;
    }
    if ((rc = exec_stmt(s, V3_ST_COMMIT, err))) goto done;
    in_txn = 0;
    /* No run row to touch: a checkpoint syncs the WAL before copying it into the db file. */
    if (durable && run_id <= 0) v3_store__ckpt_sync(s);
done:
    if (in_txn) { /* its result is moot: SQLite may already have rolled back (e.g. disk full) */
        sqlite3_step(s->st[V3_ST_ROLLBACK]);
        sqlite3_reset(s->st[V3_ST_ROLLBACK]);
    }
    if (durable) sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    return rc;
}

static void *writer_main(void *arg) {
    v3_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->cv_work, &s->mu);
        if (!s->head) break; /* stop requested and the queue is empty */
        /* Take batches up to txn_max_bytes (at least one): large transactions amortise the commit,
         * bounded ones keep memory and the time to the next committed_seq small. */
        v3_store_batch *chain = s->head, *last = s->head;
        int64_t bytes = v3_store__batch_bytes(last);
        int durable = last->durable;
        while (last->next && bytes + v3_store__batch_bytes(last->next) <= s->opts.txn_max_bytes) {
            last = last->next;
            bytes += v3_store__batch_bytes(last);
            durable |= last->durable;
        }
        s->head = last->next;
        if (!s->head) s->tail = NULL;
        last->next = NULL;
        int failed = s->werr.code != 0;
        int64_t run_id = s->run_id;
        pthread_mutex_unlock(&s->mu);

        v3_err e = {0};
        int rc = failed ? V3_OK : commit_chain(s, chain, durable, run_id, &e);
        if (!rc && !failed) v3_store__ckpt_after_commit(s);

        pthread_mutex_lock(&s->mu);
        if (rc && !s->werr.code) s->werr = e;
        if (!rc && !failed) s->committed_seq = last->seq;
        s->queued_bytes -= bytes;
        pthread_cond_broadcast(&s->cv_done);
        pthread_mutex_unlock(&s->mu);
        while (chain) {
            v3_store_batch *next = chain->next;
            v3_store__batch_recycle(s, chain);
            chain = next;
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int v3_store__writer_start(v3_store *s, v3_err *err) {
    for (int i = 0; i < V3_ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            v3_store__sqlerr(err, s->db, s->path, "preparing the writer's statements");
            v3_err_prefix(err, "statement \"%.40s\"", stmt_sql[i]);
            return err ? err->code : V3_EIO;
        }
    }
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0)
        return v3_errf(err, V3_EIO, "%s: cannot start the store writer thread", s->path);
    s->have_thread = 1;
    return V3_OK;
}

void v3_store__writer_stop(v3_store *s) {
    if (s->have_thread) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->have_thread = 0;
    }
    for (int i = 0; i < V3_ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
}

int v3_store__enqueue(v3_store *s, v3_store_batch *b, uint64_t *seq, v3_err *err) {
    int64_t bytes = v3_store__batch_bytes(b);
    pthread_mutex_lock(&s->mu);
    /* Back-pressure: wait while the queue is over budget (one batch larger than the budget still
     * goes through once the queue is empty). */
    while (!s->werr.code && !s->stop && s->queued_bytes > 0 &&
           s->queued_bytes + bytes > s->opts.queue_max_bytes)
        pthread_cond_wait(&s->cv_done, &s->mu);
    if (s->werr.code || s->stop || !s->have_thread) {
        int code;
        if (s->werr.code) {
            if (err) *err = s->werr;
            code = s->werr.code;
        } else {
            code = v3_errf(err, V3_EINVAL, "%s: the store is closing", s->path);
        }
        pthread_mutex_unlock(&s->mu);
        v3_store__batch_destroy(b);
        return code;
    }
    b->magic = V3_STORE_DEAD; /* the caller's pointer is no longer a live batch */
    b->seq = ++s->next_seq;
    b->next = NULL;
    if (s->tail) s->tail->next = b;
    else s->head = b;
    s->tail = b;
    s->queued_bytes += bytes;
    if (seq) *seq = b->seq;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return V3_OK;
}

int v3_store__wait(v3_store *s, uint64_t seq, v3_err *err) {
    int rc = V3_OK;
    pthread_mutex_lock(&s->mu);
    while (s->committed_seq < seq && !s->werr.code && s->have_thread)
        pthread_cond_wait(&s->cv_done, &s->mu);
    if (s->committed_seq < seq) {
        if (s->werr.code) {
            if (err) *err = s->werr;
            rc = s->werr.code;
        } else {
            rc = v3_errf(err, V3_EIO, "%s: the writer stopped before batch %llu committed", s->path,
                         (unsigned long long)seq);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
