/* store_query.c — the read side for the CLI and tools: run summaries and filtered sample listings.
 * Each call reads inside one read transaction, so everything it reports comes from a single
 * snapshot even while a writer commits (WAL: the reader never blocks it, nor it the reader).
 * Queries rely on the indices of the schema: samples(run_id, step, reward), samples(prompt_id),
 * the primary keys of steps and rewards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/store_internal.h"

int v3_store__check_reader(const v3_store *s, v3_err *err) {
    if (!s || s->magic != V3_STORE_MAGIC)
        return v3_errf(err, V3_EINVAL, "run store: not an open store handle");
    if (s->flags & V3_STORE_WRITE)
        return v3_errf(err, V3_EINVAL, "%s: queries run on a read-only store (its connection "
                       "belongs to the writer thread)", s->path);
    return V3_OK;
}

double v3_store__col_real(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

const char *v3_store__col_text(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

char *v3_store__dup_col(sqlite3_stmt *st, int i) {
    const char *t = v3_store__col_text(st, i);
    return t ? strdup(t) : NULL;
}

int v3_store__prepare(v3_store *s, const char *sql, sqlite3_stmt **st, v3_err *err) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return v3_store__sqlerr(err, s->db, s->path, "preparing a query");
    return V3_OK;
}

/* One snapshot for the whole call. */
static int begin_read(v3_store *s, v3_err *err) { return v3_store__exec(s->db, s->path, "BEGIN", err); }
static void end_read(v3_store *s) { sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); }

enum { Q_STEPS, Q_LOSS, Q_LASTSTEP, Q_MEANREW, Q_COUNT };

int v3_store_list_runs(v3_store *s, int (*cb)(void *ud, const v3_store_run_summary *r), void *ud,
                       v3_err *err) {
    static const char *const sql[Q_COUNT] = {
        [Q_STEPS] = "SELECT count(*), coalesce(max(step), -1) FROM steps WHERE run_id = ?1",
        [Q_LOSS] = "SELECT loss FROM steps WHERE run_id = ?1 AND loss IS NOT NULL "
                   "ORDER BY step DESC LIMIT 1",
        [Q_LASTSTEP] = "SELECT max(step) FROM samples WHERE run_id = ?1",
        [Q_MEANREW] = "SELECT avg(reward) FROM samples WHERE run_id = ?1 AND step = ?2",
    };
    sqlite3_stmt *runs = NULL, *q[Q_COUNT] = {0};
    int rc = v3_store__check_reader(s, err), in_txn = 0, k;
    if (rc) return rc;
    if ((rc = begin_read(s, err))) goto done;
    in_txn = 1;
    if ((rc = v3_store__prepare(s, "SELECT id, resumed_from, command, status, git_rev, message, "
                                   "started_at, ended_at, heartbeat_at, n_samples FROM runs "
                                   "ORDER BY id", &runs, err)))
        goto done;
    for (int i = 0; i < Q_COUNT; i++)
        if ((rc = v3_store__prepare(s, sql[i], &q[i], err))) goto done;
    while ((k = v3_store__step(runs)) == SQLITE_ROW) {
        v3_store_run_summary r = {0};
        r.id = sqlite3_column_int64(runs, 0);
        r.resumed_from = sqlite3_column_int64(runs, 1);
        r.command = v3_store__col_text(runs, 2);
        r.status = v3_store__col_text(runs, 3);
        r.git_rev = v3_store__col_text(runs, 4);
        r.message = v3_store__col_text(runs, 5);
        r.started_at = v3_store__col_real(runs, 6);
        r.ended_at = v3_store__col_real(runs, 7);
        r.heartbeat_at = v3_store__col_real(runs, 8);
        r.n_samples = sqlite3_column_int64(runs, 9);
        r.stale = r.status && !strcmp(r.status, "running") && !s->writer_alive;
        r.last_loss = NAN;
        r.last_step_mean_reward = NAN;
        r.last_sample_step = -1;
        for (int i = 0; i < Q_COUNT; i++) {
            sqlite3_reset(q[i]);
            sqlite3_bind_int64(q[i], 1, r.id);
        }
        /* every aggregate returns exactly one row; the loss query may return none */
        int ok = v3_store__step(q[Q_STEPS]) == SQLITE_ROW;
        if (ok) {
            r.n_steps = sqlite3_column_int64(q[Q_STEPS], 0);
            r.last_step = sqlite3_column_int64(q[Q_STEPS], 1);
            k = v3_store__step(q[Q_LOSS]);
            if (k == SQLITE_ROW) r.last_loss = sqlite3_column_double(q[Q_LOSS], 0);
            ok = k == SQLITE_ROW || k == SQLITE_DONE;
        }
        if (ok && (ok = v3_store__step(q[Q_LASTSTEP]) == SQLITE_ROW) &&
            sqlite3_column_type(q[Q_LASTSTEP], 0) != SQLITE_NULL) {
            r.last_sample_step = sqlite3_column_int64(q[Q_LASTSTEP], 0);
            sqlite3_bind_int64(q[Q_MEANREW], 2, r.last_sample_step);
            if ((ok = v3_store__step(q[Q_MEANREW]) == SQLITE_ROW))
                r.last_step_mean_reward = v3_store__col_real(q[Q_MEANREW], 0);
        }
        if (!ok) {
            rc = v3_store__sqlerr(err, s->db, s->path, "summarising runs");
            goto done;
        }
        if ((rc = cb(ud, &r))) goto done;
    }
    if (k != SQLITE_DONE) rc = v3_store__sqlerr(err, s->db, s->path, "summarising runs");
done:
    for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(q[i]);
    sqlite3_finalize(runs);
    if (in_txn) end_read(s);
    return rc;
}

v3_store_sample_query v3_store_sample_query_all(void) {
    v3_store_sample_query q = {0};
    q.step = -1;
    q.prompt_id = -1;
    q.min_reward = NAN;
    q.max_reward = NAN;
    q.order = V3_STORE_ORDER_ID;
    return q;
}

/* Reward rows of one sample, copied (the statement's buffers change on the next step). */
typedef struct reward_buf {
    v3_store_reward_row *rows;
    int n, cap;
} reward_buf;

static void reward_buf_clear(reward_buf *rb) {
    for (int i = 0; i < rb->n; i++) {
        free((char *)rb->rows[i].name);
        free((char *)rb->rows[i].error);
        free((char *)rb->rows[i].extra_json);
        free((char *)rb->rows[i].script_hash);
    }
    rb->n = 0;
}

static int load_rewards(v3_store *s, sqlite3_stmt *st, int64_t sample_id, reward_buf *rb, v3_err *err) {
    int k;
    reward_buf_clear(rb);
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, sample_id);
    while ((k = v3_store__step(st)) == SQLITE_ROW) {
        if (rb->n == rb->cap) {
            int cap = rb->cap ? 2 * rb->cap : 8;
            v3_store_reward_row *p = realloc(rb->rows, (size_t)cap * sizeof *p);
            if (!p) return v3_errf(err, V3_ENOMEM, "%s: out of memory reading rewards", s->path);
            rb->rows = p;
            rb->cap = cap;
        }
        v3_store_reward_row *r = &rb->rows[rb->n++];
        r->name = v3_store__dup_col(st, 0);
        r->score = v3_store__col_real(st, 1);
        r->weight = v3_store__col_real(st, 2);
        r->error = v3_store__dup_col(st, 3);
        r->extra_json = v3_store__dup_col(st, 4);
        r->script_hash = v3_store__dup_col(st, 5);
        r->elapsed_ms = v3_store__col_real(st, 6);
    }
    if (k != SQLITE_DONE) return v3_store__sqlerr(err, s->db, s->path, "reading rewards");
    return V3_OK;
}

static int32_t blob_elems(sqlite3_stmt *st, int i, const uint8_t **p) {
    *p = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!*p) return 0;
    return n / 4;
}

/* Calls cb for every row of st (the sample columns of SAMPLE_COLS, in order), with its rewards. */
static int emit_rows(v3_store *s, sqlite3_stmt *st, sqlite3_stmt *rw, reward_buf *rb,
                     int (*cb)(void *ud, const v3_store_sample_row *row), void *ud, v3_err *err) {
    int k, rc;
    while ((k = v3_store__step(st)) == SQLITE_ROW) {
        v3_store_sample_row r = {0};
        r.id = sqlite3_column_int64(st, 0);
        r.run_id = sqlite3_column_int64(st, 1);
        r.step = sqlite3_column_int64(st, 2);
        r.prompt_id = sqlite3_column_int64(st, 3);
        r.group_id = sqlite3_column_int64(st, 4);
        r.group_index = sqlite3_column_int(st, 5);
        r.reward = v3_store__col_real(st, 6);
        r.advantage = v3_store__col_real(st, 7);
        r.finish_reason = v3_store__col_text(st, 8);
        r.prompt_tokens = sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 9);
        r.completion_tokens = sqlite3_column_int(st, 10);
        r.policy_version = sqlite3_column_int64(st, 11);
        r.seed = (uint64_t)sqlite3_column_int64(st, 12);
        r.completion = v3_store__col_text(st, 13);
        r.n_ids = blob_elems(st, 14, &r.token_ids);
        r.n_logprobs = blob_elems(st, 15, &r.logprobs);
        r.n_trainer_logprobs = blob_elems(st, 16, &r.trainer_logprobs);
        r.n_ref_logprobs = blob_elems(st, 17, &r.ref_logprobs);
        r.prompt_text = v3_store__col_text(st, 18);
        r.prompt_messages = v3_store__col_text(st, 19);
        r.prompt_fields = v3_store__col_text(st, 20);
        if ((rc = load_rewards(s, rw, r.id, rb, err))) return rc;
        r.n_rewards = rb->n;
        r.rewards = rb->rows;
        if ((rc = cb(ud, &r))) return rc;
    }
    if (k != SQLITE_DONE) return v3_store__sqlerr(err, s->db, s->path, "reading samples");
    return V3_OK;
}

#define SAMPLE_COLS                                                                               \
    "s.id, s.run_id, s.step, s.prompt_id, s.group_id, s.group_index, s.reward, s.advantage, "     \
    "s.finish_reason, s.prompt_tokens, s.completion_tokens, s.policy_version, s.seed, "           \
    "s.completion, s.token_ids, s.logprobs, s.trainer_logprobs, s.ref_logprobs, p.text, "         \
    "p.messages, p.fields"

int v3_store_query_samples(v3_store *s, const v3_store_sample_query *q,
                           int (*cb)(void *ud, const v3_store_sample_row *row), void *ud,
                           v3_err *err) {
    sqlite3_stmt *st = NULL, *rw = NULL, *by_id = NULL;
    reward_buf rb = {0};
    int64_t *ids = NULL, n_ids = 0;
    char *sql = NULL;
    int rc = v3_store__check_reader(s, err), in_txn = 0;
    if (rc) return rc;
    size_t cap = 2048 + (q->where ? strlen(q->where) : 0);
    if (!(sql = malloc(cap))) return v3_errf(err, V3_ENOMEM, "%s: out of memory", s->path);
    int n = snprintf(sql, cap, "SELECT " SAMPLE_COLS V3_STORE_SAMPLE_FROM);
    if (q->run_id > 0) n += snprintf(sql + n, cap - n, " AND s.run_id = ?1");
    /* The step index leads with run_id; naming every run lets SQLite use it for a step filter
     * without --run (a rowid scan of 10M rows took a second where this takes milliseconds). */
    else if (q->step >= 0) n += snprintf(sql + n, cap - n, " AND s.run_id IN (SELECT id FROM runs)");
    if (q->step >= 0) n += snprintf(sql + n, cap - n, " AND s.step = ?2");
    if (q->prompt_id >= 0) n += snprintf(sql + n, cap - n, " AND s.prompt_id = ?3");
    if (!isnan(q->min_reward)) n += snprintf(sql + n, cap - n, " AND s.reward >= ?4");
    if (!isnan(q->max_reward)) n += snprintf(sql + n, cap - n, " AND s.reward <= ?5");
    if (q->where && q->where[0]) n += snprintf(sql + n, cap - n, " AND (%s)", q->where);
    switch (q->order) {
    case V3_STORE_ORDER_BEST:
        n += snprintf(sql + n, cap - n, " AND s.reward IS NOT NULL ORDER BY s.reward DESC, s.id DESC");
        break;
    case V3_STORE_ORDER_WORST:
        n += snprintf(sql + n, cap - n, " AND s.reward IS NOT NULL ORDER BY s.reward ASC, s.id ASC");
        break;
    case V3_STORE_ORDER_RECENT: n += snprintf(sql + n, cap - n, " ORDER BY s.id DESC"); break;
    default: n += snprintf(sql + n, cap - n, " ORDER BY s.id"); break;
    }
    if (q->limit > 0) snprintf(sql + n, cap - n, " LIMIT ?6");
    /* prepared in every case: it is what checks the user's --where */
    const char *tail = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, &tail) != SQLITE_OK) {
        rc = v3_store__sqlerr(err, s->db, s->path, "the sample query (check --where)");
        if (q->where && q->where[0] && err) rc = err->code = V3_EUSAGE; /* most likely the user's SQL */
        goto done;
    }
    if (tail && tail[strspn(tail, " \t\r\n;")]) {
        rc = v3_errf(err, V3_EUSAGE, "%s: --where must be one condition, not several statements",
                     s->path);
        goto done;
    }
    if (q->run_id > 0) sqlite3_bind_int64(st, 1, q->run_id);
    if (q->step >= 0) sqlite3_bind_int64(st, 2, q->step);
    if (q->prompt_id >= 0) sqlite3_bind_int64(st, 3, q->prompt_id);
    if (!isnan(q->min_reward)) sqlite3_bind_double(st, 4, q->min_reward);
    if (!isnan(q->max_reward)) sqlite3_bind_double(st, 5, q->max_reward);
    if (q->limit > 0) sqlite3_bind_int64(st, 6, q->limit);
    if ((rc = v3_store__prepare(s, "SELECT name, score, weight, error, extra, script_hash, "
                                   "elapsed_ms FROM rewards WHERE sample_id = ?1 ORDER BY name",
                                &rw, err)))
        goto done;
    if ((rc = begin_read(s, err))) goto done;
    in_txn = 1;
    /* A reward order over whole runs (a prompt's few samples are better found by its index, and
     * past V3_STORE_TOPK_MAX rows SQLite's sort of the run is as good): store_topk.c. */
    int by_steps = (q->order == V3_STORE_ORDER_BEST || q->order == V3_STORE_ORDER_WORST) &&
                   q->step < 0 && q->prompt_id < 0 && q->limit > 0 && q->limit <= V3_STORE_TOPK_MAX;
    if (!by_steps) {
        rc = emit_rows(s, st, rw, &rb, cb, ud, err);
        goto done;
    }
    if ((rc = v3_store__topk_ids(s, q, &ids, &n_ids, err)) ||
        (rc = v3_store__prepare(s, "SELECT " SAMPLE_COLS V3_STORE_SAMPLE_FROM " AND s.id = ?1",
                                &by_id, err)))
        goto done;
    for (int64_t i = 0; !rc && i < n_ids; i++) {
        sqlite3_reset(by_id);
        sqlite3_bind_int64(by_id, 1, ids[i]);
        rc = emit_rows(s, by_id, rw, &rb, cb, ud, err);
    }
done:
    reward_buf_clear(&rb);
    free(rb.rows);
    free(ids);
    sqlite3_finalize(st);
    sqlite3_finalize(rw);
    sqlite3_finalize(by_id);
    if (in_txn) end_read(s);
    free(sql);
    return rc;
}
