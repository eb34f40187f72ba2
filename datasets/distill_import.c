/* distill_import.c — `distill import`: R1 outputs → prompts + traces in the run store, each
 * (normalised prompt, reasoning, answer) once. The keys of the traces already stored are read
 * first (a read connection beside the writer), so importing the same file twice adds nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill.h"
#include "datasets/distill_row.h"
#include "datasets/distill_src.h"
#include "datasets/distill_text.h"
#include "datasets/store.h"

#define BATCH_TRACES 256
#define BATCH_BYTES ((size_t)32 << 20)

void v3_distill_import_opts_default(v3_distill_import_opts *o) {
    memset(o, 0, sizeof *o);
    o->form = V3_DISTILL_AUTO;
}

typedef struct import_ctx {
    const v3_distill_import_opts *o;
    v3_distill_import_stats *st;
    v3_store *w;
    v3_store_batch *b;
    int b_traces;
    size_t b_bytes;
    v3_keyset keys;    /* traces stored (before and now) */
    v3_keyset prompts; /* prompt ids of the traces added now */
    FILE *log;
} import_ctx;

static int submit(import_ctx *c, v3_err *err) {
    if (!c->b) return V3_OK;
    v3_store_batch *b = c->b;
    c->b = NULL;
    c->b_traces = 0;
    c->b_bytes = 0;
    return v3_store_submit(c->w, b, NULL, err);
}

/* {"answer": reference, "solution": solution} with the present ones; NULL when neither is. */
static char *fields_json(const v3_distill_row *row) {
    if (!row->reference && !row->solution) return NULL;
    json_t *o = json_object();
    if (row->reference) json_object_set_new(o, "answer", json_string(row->reference));
    if (row->solution) json_object_set_new(o, "solution", json_string(row->solution));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static char *provenance_json(const char *file, int64_t line, int64_t index, int gen, int n_gens,
                             v3_distill_form form) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:s}", "file", file, "line", (json_int_t)line, "index",
                          (json_int_t)index, "form", v3_distill_form_name(form));
    if (!o) return NULL;
    if (n_gens > 1) json_object_set_new(o, "generation", json_integer(gen));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Prompt parts (role, content, role, content, ...) of the dedupe key; borrowed from messages. */
static const char **prompt_parts(const json_t *messages, int *n) {
    size_t m = json_array_size(messages);
    const char **p = malloc((2 * m + 1) * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < m; i++) {
        const json_t *msg = json_array_get(messages, i);
        p[2 * i] = json_string_value(json_object_get(msg, "role"));
        p[2 * i + 1] = json_string_value(json_object_get(msg, "content"));
    }
    *n = (int)(2 * m);
    return p;
}

/* Stores the new generations of one parsed row. */
static int store_row(import_ctx *c, const char *file, int64_t line, int64_t index,
                     const v3_distill_row *row, v3_err *err) {
    int rc = V3_OK, n_parts = 0;
    int64_t prompt_id = 0;
    char *msgs = NULL, *fields = NULL;
    const char **parts = prompt_parts(row->messages, &n_parts);
    if (!parts) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int g = 0; g < row->n_gens && !rc; g++) {
        const v3_distill_gen *gen = &row->gens[g];
        c->st->traces++;
        if (!gen->reasoning[0] && !gen->answer[0]) {
            c->st->empty++;
            continue;
        }
        uint64_t key = v3_distill_key(parts, n_parts, gen->reasoning, gen->answer);
        int added = v3_keyset_add(&c->keys, key);
        if (added < 0) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        if (!added) {
            c->st->duplicates++;
            continue;
        }
        if (!c->b && (rc = v3_store_batch_new(c->w, &c->b, err))) break;
        if (!prompt_id) { /* once per row and batch (store.h: the prompt row travels with its traces) */
            if (!msgs && !(msgs = json_dumps(row->messages, JSON_COMPACT))) {
                rc = v3_errf(err, V3_ENOMEM, "out of memory");
                break;
            }
            if (!fields && (row->reference || row->solution) && !(fields = fields_json(row))) {
                rc = v3_errf(err, V3_ENOMEM, "out of memory");
                break;
            }
            v3_store_prompt p = {.text = row->prompt_text, .messages_json = msgs,
                                 .fields_json = fields, .source_file = file, .source_line = line};
            if ((rc = v3_store_batch_add_prompt(c->b, &p, &prompt_id, err))) break;
            if (v3_keyset_add(&c->prompts, (uint64_t)prompt_id) > 0) c->st->prompts++;
        }
        char *prov = provenance_json(file, line, index, g, row->n_gens, row->form);
        if (!prov) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        const char *model = row->model ? row->model
                                       : (c->o->source_model && c->o->source_model[0]
                                              ? c->o->source_model : "unknown");
        v3_store_trace t = {.prompt_id = prompt_id, .reasoning = gen->reasoning,
                            .answer = gen->answer, .source_model = model, .provenance_json = prov,
                            .accepted = -1, .key = key, .truncated = gen->truncated};
        int64_t trace_id = 0;
        rc = v3_store_batch_add_trace(c->b, &t, &trace_id, err);
        free(prov);
        if (rc) break;
        if (gen->correct >= 0) { /* the source's own label, kept as the verdict "source" */
            v3_store_verdict v = {.trace_id = trace_id, .verifier = "source", .passed = gen->correct,
                                  .score = gen->correct, .detail = row->correct_field,
                                  .weight = NAN, .elapsed_ms = NAN};
            if ((rc = v3_store_batch_add_verdict(c->b, &v, err))) break;
            c->st->labelled++;
        }
        c->st->added++;
        c->st->truncated += gen->truncated;
        c->st->no_reasoning += gen->reasoning[0] == 0;
        c->b_traces++;
        c->b_bytes += strlen(gen->reasoning) + strlen(gen->answer);
        if (c->b_traces >= BATCH_TRACES || c->b_bytes >= BATCH_BYTES) {
            prompt_id = 0; /* the next batch carries the prompt row again */
            rc = submit(c, err);
        }
    }
    free(parts);
    free(msgs);
    free(fields);
    return rc;
}

static int import_file(import_ctx *c, const char *file, v3_err *err) {
    v3_distill_src *src = NULL;
    int rc = v3_distill_src_open(&src, file, c->o->records, c->o->max_record, err);
    if (rc) return rc;
    int max_rep = c->o->max_reported > 0 ? c->o->max_reported : 20;
    int64_t bad = 0;
    c->st->files++;
    for (;;) {
        json_t *obj = NULL;
        int64_t line = 0, index = 0;
        int got = 0;
        char why[1100];
        if ((rc = v3_distill_src_next(src, &obj, &line, &index, why, sizeof why, &got, err))) break;
        if (!got) break;
        c->st->rows++;
        v3_distill_row row = {0};
        v3_err rerr = {0};
        if (obj) {
            int k = v3_distill_parse_row(obj, c->o, &row, &rerr);
            if (k == V3_EFORMAT) snprintf(why, sizeof why, "%s", rerr.msg);
            else if (k) {
                rc = v3_errf(err, k, "%s:%lld: %s", file, (long long)line, rerr.msg);
            } else {
                rc = store_row(c, file, line, index, &row, err);
            }
        }
        v3_distill_row_free(&row);
        json_decref(obj);
        if (rc) break;
        if (why[0]) {
            if (bad++ < max_rep) fprintf(c->log, "%s:%lld: %s\n", file, (long long)line, why);
            c->st->bad_rows++;
        }
    }
    if (bad > max_rep)
        fprintf(c->log, "%s: %lld more bad rows not shown\n", file, (long long)(bad - max_rep));
    v3_distill_src_close(src);
    return rc;
}

int v3_distill_import(const char *db_path, const char *const *files, int n_files,
                      const v3_distill_import_opts *o, v3_distill_import_stats *st, v3_err *err) {
    import_ctx c = {.o = o, .st = st, .log = o->log ? o->log : stderr};
    memset(st, 0, sizeof *st);
    v3_keyset_init(&c.keys);
    v3_keyset_init(&c.prompts);
    int rc = v3_store_open(&c.w, db_path, V3_STORE_WRITE | V3_STORE_CREATE, err);
    if (rc) goto done;
    if ((rc = v3_store_run_begin(c.w, &(v3_store_run_info){.command = "distill import",
                                                          .config = o->config_json},
                                 NULL, err)))
        goto done;
    if (!(rc = v3_keyset_load_traces(&c.keys, db_path, err))) {
        for (int i = 0; i < n_files && !rc; i++) rc = import_file(&c, files[i], err);
        if (!rc) rc = submit(&c, err);
    }
    v3_store_batch_free(c.b);
    c.b = NULL;
    v3_err end_err = {0};
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", rc && err ? err->msg : "");
    int erc = v3_store_run_end(c.w, rc ? "failed" : "completed", rc ? msg : NULL, &end_err);
    if (!rc && erc) {
        rc = erc;
        if (err) *err = end_err;
    }
done:;
    v3_err close_err = {0};
    int crc = v3_store_close(c.w, &close_err);
    if (!rc && crc) {
        rc = crc;
        if (err) *err = close_err;
    }
    v3_keyset_free(&c.keys);
    v3_keyset_free(&c.prompts);
    return rc;
}
