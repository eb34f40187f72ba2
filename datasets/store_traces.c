/* store_traces.c — the read side of distillation: reasoning traces with their prompt and their
 * verdicts, page by page (keyset paging on the trace id, one read snapshot per call), and the
 * newest selection. Used by `v3tune distill verify|filter|export` on a read-only store. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/store_internal.h"

/* Verdict rows of one trace, copied (the statement's buffers change on the next step). */
typedef struct verdict_buf {
    v3_store_verdict_row *rows;
    int n, cap;
} verdict_buf;

static void verdict_buf_clear(verdict_buf *vb) {
    for (int i = 0; i < vb->n; i++) {
        free((char *)vb->rows[i].verifier);
        free((char *)vb->rows[i].detail);
        free((char *)vb->rows[i].error);
        free((char *)vb->rows[i].extra_json);
        free((char *)vb->rows[i].script_hash);
    }
    vb->n = 0;
}

static int load_verdicts(v3_store *s, sqlite3_stmt *st, int64_t trace_id, verdict_buf *vb,
                         v3_err *err) {
    int k;
    verdict_buf_clear(vb);
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, trace_id);
    while ((k = v3_store__step(st)) == SQLITE_ROW) {
        if (vb->n == vb->cap) {
            int cap = vb->cap ? 2 * vb->cap : 8;
            v3_store_verdict_row *p = realloc(vb->rows, (size_t)cap * sizeof *p);
            if (!p) return v3_errf(err, V3_ENOMEM, "%s: out of memory reading verdicts", s->path);
            vb->rows = p;
            vb->cap = cap;
        }
        v3_store_verdict_row *r = &vb->rows[vb->n++];
        memset(r, 0, sizeof *r);
        r->verifier = v3_store__dup_col(st, 0);
        r->passed = sqlite3_column_int(st, 1);
        r->score = v3_store__col_real(st, 2);
        r->detail = v3_store__dup_col(st, 3);
        r->weight = v3_store__col_real(st, 4);
        r->error = v3_store__dup_col(st, 5);
        r->extra_json = v3_store__dup_col(st, 6);
        r->script_hash = v3_store__dup_col(st, 7);
        r->elapsed_ms = v3_store__col_real(st, 8);
        if (!r->verifier) return v3_errf(err, V3_ENOMEM, "%s: out of memory reading verdicts", s->path);
    }
    if (k != SQLITE_DONE) return v3_store__sqlerr(err, s->db, s->path, "reading verdicts");
    return V3_OK;
}

int v3_store_query_traces(v3_store *s, const v3_store_trace_query *q,
                          int (*cb)(void *ud, const v3_store_trace_row *row), void *ud, v3_err *err) {
    sqlite3_stmt *st = NULL, *vq = NULL;
    verdict_buf vb = {0};
    char sql[1024];
    int rc = v3_store__check_reader(s, err), in_txn = 0, k;
    if (rc) return rc;
    /* light: the texts are not read at all (length() of a TEXT column still reads it, but nothing
     * is copied out); the prompt join is skipped too. */
    int n = snprintf(sql, sizeof sql,
                     "SELECT t.id, t.run_id, t.prompt_id, t.key, t.truncated, t.accepted, "
                     "length(CAST(t.reasoning AS BLOB)), length(CAST(t.answer AS BLOB)), %s "
                     "FROM traces t %s WHERE t.id > ?1",
                     q->light ? "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
                              : "t.reasoning, t.answer, t.source_model, t.provenance, "
                                "t.filters_passed, p.text, p.messages, p.fields",
                     q->light ? "" : "LEFT JOIN prompts p ON p.id = t.prompt_id");
    if (q->selection_id > 0)
        n += snprintf(sql + n, sizeof sql - (size_t)n,
                      " AND t.id IN (SELECT trace_id FROM selection_traces WHERE selection_id = ?2 "
                      "AND kept = 1)");
    n += snprintf(sql + n, sizeof sql - (size_t)n, " ORDER BY t.id");
    if (q->limit > 0) snprintf(sql + n, sizeof sql - (size_t)n, " LIMIT ?3");
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = v3_store__sqlerr(err, s->db, s->path, "preparing the trace query");
        goto done;
    }
    sqlite3_bind_int64(st, 1, q->after_id);
    if (q->selection_id > 0) sqlite3_bind_int64(st, 2, q->selection_id);
    if (q->limit > 0) sqlite3_bind_int64(st, 3, q->limit);
    if (q->with_verdicts && !q->light &&
        sqlite3_prepare_v2(s->db, "SELECT verifier, passed, score, detail, weight, error, extra, "
                                  "script_hash, elapsed_ms FROM verdicts WHERE trace_id = ?1 "
                                  "ORDER BY verifier", -1, &vq, NULL) != SQLITE_OK) {
        rc = v3_store__sqlerr(err, s->db, s->path, "preparing the verdict query");
        goto done;
    }
    if ((rc = v3_store__exec(s->db, s->path, "BEGIN", err))) goto done;
    in_txn = 1;
    while ((k = v3_store__step(st)) == SQLITE_ROW) {
        v3_store_trace_row r = {0};
        r.id = sqlite3_column_int64(st, 0);
        r.run_id = sqlite3_column_int64(st, 1);
        r.prompt_id = sqlite3_column_int64(st, 2);
        r.key = (uint64_t)sqlite3_column_int64(st, 3);
        r.truncated = sqlite3_column_int(st, 4);
        r.accepted = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 5);
        r.reasoning_bytes = sqlite3_column_int64(st, 6);
        r.answer_bytes = sqlite3_column_int64(st, 7);
        r.reasoning = v3_store__col_text(st, 8);
        r.answer = v3_store__col_text(st, 9);
        r.source_model = v3_store__col_text(st, 10);
        r.provenance_json = v3_store__col_text(st, 11);
        r.filters_json = v3_store__col_text(st, 12);
        r.prompt_text = v3_store__col_text(st, 13);
        r.prompt_messages = v3_store__col_text(st, 14);
        r.prompt_fields = v3_store__col_text(st, 15);
        if (vq) {
            if ((rc = load_verdicts(s, vq, r.id, &vb, err))) goto done;
            r.n_verdicts = vb.n;
            r.verdicts = vb.rows;
        }
        if ((rc = cb(ud, &r))) goto done;
    }
    if (k != SQLITE_DONE) rc = v3_store__sqlerr(err, s->db, s->path, "reading traces");
done:
    verdict_buf_clear(&vb);
    free(vb.rows);
    sqlite3_finalize(vq);
    sqlite3_finalize(st);
    if (in_txn) sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

int v3_store_latest_selection(v3_store *s, int64_t *id, v3_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = v3_store__check_reader(s, err);
    if (rc) return rc;
    *id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(id), 0) FROM selections", -1, &st, NULL) !=
            SQLITE_OK ||
        v3_store__step(st) != SQLITE_ROW)
        rc = v3_store__sqlerr(err, s->db, s->path, "finding the latest selection");
    else
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}
