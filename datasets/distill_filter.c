/* distill_filter.c — `distill filter`: rejection sampling over the stored traces by the rules of
 * distill.h, written as a new selection (selections + selection_traces) and mirrored into
 * traces.accepted / filters_passed. Nothing is deleted; every earlier selection stays readable.
 *
 * Measures are taken page by page (texts are not kept): the tokens of the assistant turn as R1
 * writes it ("<think>\nR\n</think>\n\nA", the real DeepSeek-V3 tokenizer, counted on several
 * threads), the share of the reasoning's letters in the expected script, the n-gram repetition
 * of the reasoning. Then the rules are applied in order, per-prompt selection last. The selection
 * row is committed after all of its trace rows, so an interrupted run leaves no half selection
 * behind (export reads the newest complete one). */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill.h"
#include "datasets/distill_filter_internal.h"
#include "datasets/store.h"
#include "datasets/tokenizer.h"

#define PAGE 128
#define WRITE_BATCH 1024

void v3_distill_filter_opts_default(v3_distill_filter_opts *o) {
    memset(o, 0, sizeof *o);
    o->correct = "math";
    o->min_score = 1.0;
    o->require_complete = 1;
    o->require_answer = 1;
    o->language = "auto";
    o->min_language_fraction = 0.95;
    o->ngram = 8;
    o->max_repetition = 0.3;
    o->pick = V3_PICK_SHORTEST;
}

const char *v3_distill_rule_name(int rule) {
    static const char *const names[V3_RULE_COUNT] = {"complete", "answer", "correct", "length",
                                                     "language", "repetition", "per_prompt"};
    return rule >= 0 && rule < V3_RULE_COUNT ? names[rule] : "?";
}

/* ---- reading and measuring ---- */

typedef struct page_item {
    v3_distill_trace_info info;
    char *text;      /* the assistant turn: what tokens are counted on */
    char *reasoning; /* what language and repetition are measured on (the answer when no reasoning) */
    char *prompt;
} page_item;

typedef struct read_ctx {
    const v3_distill_filter_opts *o;
    page_item items[PAGE];
    int n;
    int64_t last_id;
    int oom;
} read_ctx;

static int take(void *ud, const v3_store_trace_row *r) {
    read_ctx *c = ud;
    page_item *it = &c->items[c->n++];
    memset(it, 0, sizeof *it);
    v3_distill_trace_info *t = &it->info;
    t->id = r->id;
    t->prompt_id = r->prompt_id;
    t->truncated = r->truncated;
    t->no_answer = !r->answer || !r->answer[0];
    t->no_reasoning = !r->reasoning || !r->reasoning[0];
    t->score = NAN;
    t->rejected = -1;
    t->tokens = -1;
    t->script = -1;
    t->language = NAN;
    for (int i = 0; i < r->n_verdicts && c->o->correct && c->o->correct[0]; i++) {
        if (strcmp(r->verdicts[i].verifier, c->o->correct) != 0) continue;
        t->has_verdict = 1;
        t->score = r->verdicts[i].score;
    }
    const char *re = r->reasoning ? r->reasoning : "", *an = r->answer ? r->answer : "";
    size_t n = strlen(re) + strlen(an) + 32;
    it->text = malloc(n);
    it->reasoning = strdup(re[0] ? re : an);
    it->prompt = strdup(r->prompt_text ? r->prompt_text : "");
    c->last_id = r->id;
    if (!it->text || !it->reasoning || !it->prompt) {
        c->oom = 1;
        return V3_ENOMEM;
    }
    if (r->truncated) snprintf(it->text, n, "<think>\n%s", re);
    else if (!re[0]) snprintf(it->text, n, "%s", an);
    else snprintf(it->text, n, "<think>\n%s\n</think>\n\n%s", re, an);
    return 0;
}

static void page_clear(read_ctx *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->items[i].text);
        free(c->items[i].reasoning);
        free(c->items[i].prompt);
    }
    c->n = 0;
}

typedef struct measure_job {
    read_ctx *c;
    const v3_tokenizer *tok;
    int script; /* expected script, or -2 = the prompt's, -3 = no language rule */
    int t, nt;
    int rc;
    v3_err err;
} measure_job;

static void *measure(void *arg) {
    measure_job *j = arg;
    const v3_distill_filter_opts *o = j->c->o;
    v3_tok_ids ids = {0};
    for (int i = j->t; i < j->c->n && !j->rc; i += j->nt) {
        page_item *it = &j->c->items[i];
        ids.n = 0;
        if ((j->rc = v3_tok_encode(j->tok, it->text, strlen(it->text), V3_TOK_LOSSY, &ids, &j->err)))
            break;
        it->info.tokens = (int64_t)ids.n;
        if (j->script != -3) {
            size_t rc_counts[V3_SCRIPT_COUNT], pc[V3_SCRIPT_COUNT];
            int want = j->script;
            v3_script_counts(it->reasoning, strlen(it->reasoning), rc_counts);
            if (want == -2) {
                v3_script_counts(it->prompt, strlen(it->prompt), pc);
                want = v3_script_dominant(pc);
                if (want < 0) want = v3_script_dominant(rc_counts);
            }
            it->info.script = want;
            it->info.language = v3_script_fraction(rc_counts, want, 20);
        }
        if (o->max_repetition > 0) {
            it->info.repetition = v3_repetition_ratio(it->reasoning, strlen(it->reasoning), o->ngram);
            if (it->info.repetition < 0) {
                j->rc = v3_errf(&j->err, V3_ENOMEM, "out of memory measuring repetition");
                break;
            }
        }
    }
    v3_tok_ids_free(&ids);
    return NULL;
}

static int measure_page(read_ctx *c, const v3_tokenizer *tok, int script, int threads, v3_err *err) {
    measure_job jobs[16];
    pthread_t th[16];
    int nt = threads < 1 ? 1 : threads > 16 ? 16 : threads, started = 0;
    for (int t = 0; t < nt; t++) jobs[t] = (measure_job){.c = c, .tok = tok, .script = script,
                                                         .t = t, .nt = nt};
    for (int t = 1; t < nt; t++) {
        if (pthread_create(&th[t], NULL, measure, &jobs[t]) != 0) break;
        started = t;
    }
    measure(&jobs[0]);
    for (int t = started + 1; t < nt; t++) measure(&jobs[t]); /* a thread that did not start */
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < nt; t++)
        if (jobs[t].rc) {
            if (err) *err = jobs[t].err;
            return jobs[t].rc;
        }
    return V3_OK;
}

/* ---- writing ---- */

static char *detail_json(const v3_distill_trace_info *t, const v3_distill_filter_opts *o) {
    json_t *d = json_object();
    if (!d) return NULL;
    if (!isnan(t->score)) json_object_set_new(d, "score", json_real(t->score));
    if (t->script >= 0) {
        json_object_set_new(d, "script", json_string(v3_script_name(t->script)));
        json_object_set_new(d, "language", json_real(t->language));
    }
    if (o->max_repetition > 0) json_object_set_new(d, "repetition", json_real(t->repetition));
    char *s = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(d);
    return s;
}

static char *passed_json(const v3_distill_trace_info *t, const int *active) {
    json_t *a = json_array();
    if (!a) return NULL;
    for (int r = 0; r < V3_RULE_COUNT; r++)
        if (active[r] && (t->rejected < 0 || r < t->rejected))
            json_array_append_new(a, json_string(v3_distill_rule_name(r)));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static char *report_json(const v3_distill_filter_stats *st) {
    json_t *o = json_object(), *rm = json_object();
    for (int r = 0; r < V3_RULE_COUNT; r++)
        if (st->active[r])
            json_object_set_new(rm, v3_distill_rule_name(r), json_integer(st->removed[r]));
    json_object_set_new(o, "traces", json_integer(st->traces));
    json_object_set_new(o, "removed", rm);
    json_object_set_new(o, "kept", json_integer(st->kept));
    json_object_set_new(o, "prompts", json_integer(st->prompts));
    json_object_set_new(o, "prompts_kept", json_integer(st->prompts_kept));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static int write_selection(v3_store *w, const v3_distill_trace_info *t, int64_t n,
                           const v3_distill_filter_opts *o, v3_distill_filter_stats *st, v3_err *err) {
    v3_store_batch *sel = NULL, *b = NULL;
    char *report = report_json(st);
    int rc = report ? v3_store_batch_new(w, &sel, err) : v3_errf(err, V3_ENOMEM, "out of memory");
    if (rc) goto done;
    v3_store_selection s = {.name = "filter", .config_json = o->config_json, .report_json = report,
                            .n_traces = st->traces, .n_kept = st->kept};
    if ((rc = v3_store_batch_add_selection(sel, &s, &st->selection_id, err))) goto done;
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!b && (rc = v3_store_batch_new(w, &b, err))) break;
        char *detail = detail_json(&t[i], o), *passed = passed_json(&t[i], st->active);
        if (!detail || !passed) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        v3_store_selected sd = {.selection_id = st->selection_id, .trace_id = t[i].id,
                                .kept = t[i].rejected < 0,
                                .rejected_by = t[i].rejected < 0 ? NULL
                                                                 : v3_distill_rule_name(t[i].rejected),
                                .tokens = t[i].tokens, .detail_json = detail};
        v3_store_trace_update u = {.trace_id = t[i].id, .accepted = t[i].rejected < 0,
                                   .filters_json = passed};
        if (!rc && !(rc = v3_store_batch_add_selected(b, &sd, err)))
            rc = v3_store_batch_update_trace(b, &u, err);
        free(detail);
        free(passed);
        if (!rc && (i + 1) % WRITE_BATCH == 0) {
            rc = v3_store_submit(w, b, NULL, err);
            b = NULL;
        }
    }
    if (!rc && b) {
        rc = v3_store_submit(w, b, NULL, err);
        b = NULL;
    }
    if (!rc) { /* last: the selection exists only once all of its rows do */
        rc = v3_store_submit(w, sel, NULL, err);
        sel = NULL;
    }
done:
    v3_store_batch_free(b);
    v3_store_batch_free(sel);
    free(report);
    return rc;
}

/* ---- the command ---- */

typedef struct trace_list {
    v3_distill_trace_info *t;
    int64_t n, cap;
} trace_list;

static int read_all(v3_store *r, const v3_tokenizer *tok, int script, const v3_distill_filter_opts *o,
                    trace_list *tl, v3_err *err) {
    read_ctx *c = calloc(1, sizeof *c);
    if (!c) return v3_errf(err, V3_ENOMEM, "out of memory");
    c->o = o;
    int rc = V3_OK;
    for (;;) {
        v3_store_trace_query q = {.after_id = c->last_id, .limit = PAGE, .with_verdicts = 1};
        rc = v3_store_query_traces(r, &q, take, c, err);
        if (rc == V3_ENOMEM && c->oom) v3_errf(err, V3_ENOMEM, "out of memory reading traces");
        if (!rc && c->n) rc = measure_page(c, tok, script, o->threads > 0 ? o->threads : 2, err);
        if (!rc && tl->n + c->n > tl->cap) {
            int64_t cap = tl->cap ? 2 * tl->cap : 1024;
            while (cap < tl->n + c->n) cap *= 2;
            v3_distill_trace_info *p = realloc(tl->t, (size_t)cap * sizeof *p);
            if (!p) rc = v3_errf(err, V3_ENOMEM, "out of memory");
            else tl->t = p, tl->cap = cap;
        }
        for (int i = 0; !rc && i < c->n; i++) tl->t[tl->n++] = c->items[i].info;
        int n = c->n;
        page_clear(c);
        if (rc || n < PAGE) break;
    }
    free(c);
    return rc;
}

int v3_distill_filter(const char *db_path, const v3_distill_filter_opts *o,
                      v3_distill_filter_stats *st, v3_err *err) {
    v3_store *w = NULL, *r = NULL;
    v3_tokenizer *tok = NULL;
    trace_list tl = {0};
    memset(st, 0, sizeof *st);
    int script = -3;
    if (o->language && o->language[0] && strcmp(o->language, "off") != 0) {
        script = !strcmp(o->language, "auto") ? -2 : v3_script_parse(o->language);
        if (script == -1)
            return v3_errf(err, V3_EINVAL, "filter.language \"%s\" is not auto, off or a script "
                           "(latin, cyrillic, greek, arabic, hebrew, devanagari, thai, hangul, cjk)",
                           o->language);
    }
    if (o->per_prompt < 0 || o->min_tokens < 0 || o->max_tokens < 0 || o->ngram < 1)
        return v3_errf(err, V3_EINVAL, "filter: per_prompt, min_tokens and max_tokens must be >= 0 "
                       "and ngram >= 1");
    if (!o->tokenizer_dir) return v3_errf(err, V3_EINVAL, "filter: no tokenizer directory");
    int rc = v3_tok_load(&tok, o->tokenizer_dir, err);
    if (rc) return rc;
    if ((rc = v3_store_open(&w, db_path, V3_STORE_WRITE, err))) goto out;
    if ((rc = v3_store_run_begin(w, &(v3_store_run_info){.command = "distill filter",
                                                        .config = o->config_json},
                                 NULL, err)))
        goto out;
    if (!(rc = v3_store_open(&r, db_path, V3_STORE_READ, err)))
        rc = read_all(r, tok, script, o, &tl, err);
    v3_store_close(r, NULL);
    if (!rc) {
        if (v3_distill_apply_rules(tl.t, tl.n, o, script != -3, st))
            rc = v3_errf(err, V3_ENOMEM, "out of memory applying the filter rules");
        else
            rc = write_selection(w, tl.t, tl.n, o, st, err);
    }
    rc = v3_store_finish(w, 1, rc, err);
    w = NULL;
out:
    if (w) rc = v3_store_finish(w, 0, rc, err);
    v3_tok_free(tok);
    free(tl.t);
    return rc;
}
