/* distill_verify.c — `distill verify`: every stored trace through the reward host, one verdict
 * per trace and function (score, error, extra fields, script hash, time) in the verdicts table.
 *
 * What a script sees (docs/distill.md): completion = the trace as R1 wrote it
 * ("<think>\nR\n</think>\n\nA", or "<think>\nR" when cut off), finish_reason "stop" / "length"
 * (cut off), prompt / messages = the prompt, and the row = the prompt's fields (answer = the
 * reference, solution) plus reasoning, response (the final answer), source_model, trace_id and
 * truncated. Traces are read page by page, so memory does not grow with the store. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill.h"
#include "datasets/store.h"

#define PAGE 128

typedef struct trace_copy {
    int64_t id, prompt_id;
    int truncated;
    char *completion, *prompt, *messages, *row;
} trace_copy;

typedef struct page {
    trace_copy t[PAGE];
    int n;
    int64_t last_id;
    int oom;
} page;

static void page_clear(page *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->t[i].completion);
        free(p->t[i].prompt);
        free(p->t[i].messages);
        free(p->t[i].row);
    }
    p->n = 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static char *completion_of(const v3_store_trace_row *r) {
    const char *re = r->reasoning ? r->reasoning : "", *an = r->answer ? r->answer : "";
    size_t n = strlen(re) + strlen(an) + 32;
    char *c = malloc(n);
    if (!c) return NULL;
    if (r->truncated) snprintf(c, n, "<think>\n%s", re);
    else if (!re[0]) snprintf(c, n, "%s", an);
    else snprintf(c, n, "<think>\n%s\n</think>\n\n%s", re, an);
    return c;
}

static char *row_of(const v3_store_trace_row *r) {
    json_t *o = r->prompt_fields ? json_loads(r->prompt_fields, 0, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    if (!o) return NULL;
    json_object_set_new(o, "reasoning", json_string(r->reasoning ? r->reasoning : ""));
    json_object_set_new(o, "response", json_string(r->answer ? r->answer : ""));
    json_object_set_new(o, "source_model", json_string(r->source_model ? r->source_model : ""));
    json_object_set_new(o, "trace_id", json_integer(r->id));
    json_object_set_new(o, "truncated", json_boolean(r->truncated));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int take(void *ud, const v3_store_trace_row *r) {
    page *p = ud;
    trace_copy *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    t->id = r->id;
    t->prompt_id = r->prompt_id;
    t->truncated = r->truncated;
    t->completion = completion_of(r);
    t->prompt = dup_or_null(r->prompt_text);
    t->messages = dup_or_null(r->prompt_messages);
    t->row = row_of(r);
    p->last_id = r->id;
    if (!t->completion || !t->row || (r->prompt_text && !t->prompt) ||
        (r->prompt_messages && !t->messages)) {
        p->oom = 1;
        return V3_ENOMEM;
    }
    return 0;
}

static int score_page(v3_reward_host *h, v3_store *w, page *p, const v3_distill_verify_opts *o,
                      v3_distill_verify_stats *st, v3_err *err) {
    v3_reward_sample s[PAGE];
    v3_reward_result res[PAGE];
    for (int i = 0; i < p->n; i++)
        s[i] = (v3_reward_sample){.prompt = p->t[i].prompt, .messages_json = p->t[i].messages,
                                  .completion = p->t[i].completion,
                                  .finish_reason = p->t[i].truncated ? "length" : "stop",
                                  .row_json = p->t[i].row, .group = p->t[i].prompt_id,
                                  .index = p->t[i].id};
    int rc = v3_reward_host_score(h, s, p->n, res, err);
    if (rc) return rc;
    v3_store_batch *b = NULL;
    if ((rc = v3_store_batch_new(w, &b, err))) goto done;
    int nf = v3_reward_host_n_funcs(h);
    for (int i = 0; i < p->n && !rc; i++) {
        st->traces++;
        for (int f = 0; f < nf && !rc; f++) {
            const v3_reward_func_info *fi = v3_reward_host_func(h, f);
            const v3_reward_value *v = &res[i].values[f];
            int ok = v->status == V3_REWARD_OK && !isnan(v->score);
            int passed = ok && v->score >= o->pass_score;
            if (v->status == V3_REWARD_ERROR) st->errors[f]++;
            if (isnan(v->score)) st->skipped[f]++;
            else st->scored[f]++, st->sum[f] += v->score;
            st->passed[f] += passed;
            v3_store_verdict vd = {.trace_id = p->t[i].id, .verifier = fi->name, .passed = passed,
                                   .score = v->score,
                                   .detail = v->status == V3_REWARD_SKIP ? "skipped" : NULL,
                                   .weight = fi->weight, .error = v->error,
                                   .extra_json = v->extra_json, .script_hash = fi->sha256,
                                   .elapsed_ms = v->elapsed_ms};
            rc = v3_store_batch_add_verdict(b, &vd, err);
        }
    }
    if (!rc) {
        rc = v3_store_submit(w, b, NULL, err);
        b = NULL;
    }
done:
    v3_store_batch_free(b);
    v3_reward_results_free(res, p->n);
    return rc;
}

int v3_distill_verify(const char *db_path, const v3_distill_verify_opts *o,
                      v3_distill_verify_stats *st, v3_err *err) {
    v3_reward_host *h = NULL;
    v3_store *w = NULL, *r = NULL;
    page *p = calloc(1, sizeof *p);
    memset(st, 0, sizeof *st);
    if (!p) return v3_errf(err, V3_ENOMEM, "out of memory");
    /* the workers fork before the store starts its writer thread (rewards/host.h) */
    int rc = v3_reward_host_init(&h, &o->host, err);
    if (rc) goto out;
    st->n_funcs = v3_reward_host_n_funcs(h);
    for (int f = 0; f < st->n_funcs; f++)
        snprintf(st->names[f], sizeof st->names[f], "%s", v3_reward_host_func(h, f)->name);
    if ((rc = v3_store_open(&w, db_path, V3_STORE_WRITE, err))) goto out;
    if ((rc = v3_store_run_begin(w, &(v3_store_run_info){.command = "distill verify",
                                                        .config = o->config_json},
                                 NULL, err)))
        goto out;
    if (!(rc = v3_store_open(&r, db_path, V3_STORE_READ, err))) {
        for (;;) {
            v3_store_trace_query q = {.after_id = p->last_id, .limit = PAGE};
            rc = v3_store_query_traces(r, &q, take, p, err);
            if (rc == V3_ENOMEM && p->oom) v3_errf(err, V3_ENOMEM, "out of memory reading traces");
            if (rc || p->n == 0) break;
            rc = score_page(h, w, p, o, st, err);
            int n = p->n;
            page_clear(p);
            if (rc) break;
            if (o->log) fprintf(o->log, "\rverified %lld traces", (long long)st->traces);
            if (n < PAGE) break;
        }
        if (o->log && st->traces) fputc('\n', o->log);
    }
    page_clear(p);
    v3_store_close(r, NULL);
    rc = v3_store_finish(w, 1, rc, err);
    w = NULL;
out:
    if (w) rc = v3_store_finish(w, 0, rc, err);
    v3_reward_host_free(h);
    free(p);
    return rc;
}
