/* store_topk.c — the best or worst K samples of whole runs, step by step.
 * The index (run_id, step, reward) holds each step's samples in reward order, so a step's best K
 * are its index's last K entries, and a run's best K are among its steps' best K. Collecting those
 * costs a seek per step (steps are found by seeking past the previous one, not by scanning) and
 * at most K entries each, and once K candidates are held a step is read only down to the worst of
 * them. SQLite alone would sort every sample of the run for `--order best --limit 20`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/store_internal.h"

typedef struct cand {
    double reward;
    int64_t id;
} cand;

/* a comes before b in the order asked for (best: reward DESC, id DESC; worst: both ASC) */
static int cand_before(const cand *a, const cand *b, int best) {
    if (a->reward != b->reward) return best ? a->reward > b->reward : a->reward < b->reward;
    return best ? a->id > b->id : a->id < b->id;
}

/* A heap of at most k candidates whose root is the one that comes last. */
typedef struct cand_heap {
    cand *v;
    int64_t n, k;
    int best;
} cand_heap;

static void heap_sift_down(cand_heap *h, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && cand_before(&h->v[m], &h->v[l], h->best)) m = l;
        if (r < h->n && cand_before(&h->v[m], &h->v[r], h->best)) m = r;
        if (m == i) return;
        cand t = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = t;
        i = m;
    }
}

static void heap_offer(cand_heap *h, cand c) {
    if (h->n < h->k) {
        int64_t i = h->n++;
        h->v[i] = c;
        while (i > 0 && cand_before(&h->v[(i - 1) / 2], &h->v[i], h->best)) {
            cand t = h->v[i];
            h->v[i] = h->v[(i - 1) / 2];
            h->v[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (cand_before(&c, &h->v[0], h->best)) {
        h->v[0] = c;
        heap_sift_down(h, 0);
    }
}

/* Empties the heap into v[0..n) in the order asked for. */
static int64_t heap_drain(cand_heap *h) {
    int64_t n = h->n;
    while (h->n > 0) {
        cand last = h->v[0];
        h->v[0] = h->v[--h->n];
        heap_sift_down(h, 0);
        h->v[h->n] = last;
    }
    return n;
}

/* What one step may still contribute: rewards in [lo, hi]. Once h holds K candidates, a sample
 * must come before the last of them, so the bound tightens to its reward (ties are settled by id in
 * heap_offer). One range of the index: a second, separate reward condition would be checked row
 * by row and could make SQLite walk a step's whole range without reaching the LIMIT. */
static void step_bounds(const cand_heap *h, const v3_store_sample_query *q, double *lo, double *hi) {
    *lo = isnan(q->min_reward) ? -INFINITY : q->min_reward;
    *hi = isnan(q->max_reward) ? INFINITY : q->max_reward;
    if (h->n < h->k) return;
    double r = h->v[0].reward;
    if (h->best && r > *lo) *lo = r;
    if (!h->best && r < *hi) *hi = r;
}

/* Fills h from every step of run `run`. step_st: ?1 run, ?2 previous step -> the next step.
 * top: ?1 run, ?2 step, ?4..?5 reward range -> the step's first K in the order asked for. */
static int topk_run(v3_store *s, int64_t run, const v3_store_sample_query *q, sqlite3_stmt *step_st,
                    sqlite3_stmt *top, cand_heap *h, v3_err *err) {
    int64_t step = INT64_MIN;
    int k;
    for (;;) {
        sqlite3_reset(step_st);
        sqlite3_bind_int64(step_st, 1, run);
        sqlite3_bind_int64(step_st, 2, step);
        if ((k = v3_store__step(step_st)) == SQLITE_DONE) return V3_OK;
        if (k != SQLITE_ROW) break;
        step = sqlite3_column_int64(step_st, 0);
        double lo, hi;
        step_bounds(h, q, &lo, &hi);
        sqlite3_reset(top);
        sqlite3_bind_int64(top, 1, run);
        sqlite3_bind_int64(top, 2, step);
        sqlite3_bind_double(top, 4, lo);
        sqlite3_bind_double(top, 5, hi);
        while ((k = v3_store__step(top)) == SQLITE_ROW)
            heap_offer(h, (cand){sqlite3_column_double(top, 1), sqlite3_column_int64(top, 0)});
        if (k != SQLITE_DONE) break;
    }
    return v3_store__sqlerr(err, s->db, s->path, "reading a step's best samples");
}

static int topk_ids(v3_store *s, const v3_store_sample_query *q, cand_heap *h, int64_t *n,
                    v3_err *err) {
    const char *dir = h->best ? "DESC" : "ASC";
    const char *where = q->where && q->where[0] ? q->where : "1";
    size_t cap = 512 + strlen(where);
    char *sql = malloc(cap);
    sqlite3_stmt *runs = NULL, *step_st = NULL, *top = NULL;
    int rc, k;
    if (!sql) return v3_errf(err, V3_ENOMEM, "%s: out of memory", s->path);
    snprintf(sql, cap,
             "SELECT s.id, s.reward" V3_STORE_SAMPLE_FROM " AND s.run_id = ?1 AND s.step = ?2 AND "
             "s.reward BETWEEN ?4 AND ?5 AND (%s) ORDER BY s.reward %s, s.id %s LIMIT ?6",
             where, dir, dir);
    rc = v3_store__prepare(s, sql, &top, err);
    if (!rc) {
        sqlite3_bind_int64(top, 6, q->limit);
        rc = v3_store__prepare(s, "SELECT step FROM samples WHERE run_id = ?1 AND step > ?2 "
                                  "ORDER BY step LIMIT 1",
                               &step_st, err);
    }
    if (!rc && q->run_id > 0) {
        rc = topk_run(s, q->run_id, q, step_st, top, h, err);
    } else if (!rc && !(rc = v3_store__prepare(s, "SELECT id FROM runs ORDER BY id", &runs, err))) {
        while (!rc && (k = v3_store__step(runs)) == SQLITE_ROW)
            rc = topk_run(s, sqlite3_column_int64(runs, 0), q, step_st, top, h, err);
        if (!rc && k != SQLITE_DONE) rc = v3_store__sqlerr(err, s->db, s->path, "listing runs");
    }
    if (!rc) *n = heap_drain(h);
    sqlite3_finalize(runs);
    sqlite3_finalize(step_st);
    sqlite3_finalize(top);
    free(sql);
    return rc;
}

int v3_store__topk_ids(v3_store *s, const v3_store_sample_query *q, int64_t **ids, int64_t *n,
                       v3_err *err) {
    cand_heap h = {.k = q->limit, .best = q->order == V3_STORE_ORDER_BEST};
    int64_t *out = malloc((size_t)h.k * sizeof *out);
    int rc = V3_OK;
    *n = 0;
    if (!out || !(h.v = malloc((size_t)h.k * sizeof *h.v)))
        rc = v3_errf(err, V3_ENOMEM, "%s: out of memory for %lld candidates", s->path,
                     (long long)h.k);
    if (!rc) rc = topk_ids(s, q, &h, n, err);
    for (int64_t i = 0; !rc && i < *n; i++) out[i] = h.v[i].id;
    free(h.v);
    if (rc) {
        free(out);
        out = NULL;
        *n = 0;
    }
    *ids = out;
    return rc;
}
