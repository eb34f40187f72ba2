/* distill_generate_prompts.c — the prompts of `distill generate`: rows of a JSONL file (read as
 * `distill import` reads a row's prompt, reference answer and solution) or the prompts table of
 * the store; the system prompt; the resume key of a prompt, sample and teacher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "datasets/distill_generate_internal.h"
#include "datasets/distill_row.h"
#include "datasets/distill_row_internal.h"
#include "datasets/distill_text.h"
#include "datasets/jsonl.h"
#include "datasets/store.h"

#define MAX_REPORTED 20

void v3_dgen_prompts_init(v3_dgen_prompts *ps) { memset(ps, 0, sizeof *ps); }

static void prompt_free(v3_dgen_prompt *p) {
    json_decref(p->messages);
    free(p->messages_json);
    free(p->fields_json);
    memset(p, 0, sizeof *p);
}

void v3_dgen_prompts_free(v3_dgen_prompts *ps) {
    for (int64_t i = 0; i < ps->n; i++) prompt_free(&ps->p[i]);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

/* Replaces the system messages of msgs with one holding sys (when sys is set); then finds the
 * last user message. V3_EFORMAT when there is none or it is blank. */
static int finish_messages(json_t *msgs, const char *sys, const char **text, v3_err *err) {
    if (sys && sys[0]) {
        for (size_t i = json_array_size(msgs); i-- > 0;) {
            const char *r = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
            if (r && !strcmp(r, "system")) json_array_remove(msgs, i);
        }
        json_t *m = json_pack("{s:s, s:s}", "role", "system", "content", sys);
        if (!m || json_array_insert_new(msgs, 0, m)) return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    *text = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *r = json_string_value(json_object_get(m, "role"));
        if (r && !strcmp(r, "user")) *text = json_string_value(json_object_get(m, "content"));
    }
    if (!*text) return v3_errf(err, V3_EFORMAT, "the prompt has no user message");
    if (!(*text)[strspn(*text, " \t\r\n")]) return v3_errf(err, V3_EFORMAT, "the prompt is empty");
    return V3_OK;
}

/* Appends a prompt; takes messages and fields (also on failure). */
static int add_prompt(v3_dgen_prompts *ps, json_t *msgs, char *fields, const char *file,
                      int64_t line, const v3_distill_generate_opts *o, v3_err *err) {
    v3_dgen_prompt p = {.messages = msgs, .fields_json = fields, .file = file, .line = line};
    int rc = finish_messages(msgs, o->system_prompt, &p.text, err);
    if (!rc && !(p.messages_json = json_dumps(msgs, JSON_COMPACT)))
        rc = v3_errf(err, V3_ENOMEM, "out of memory");
    if (!rc && ps->n == ps->cap) {
        int64_t cap = ps->cap ? 2 * ps->cap : 64;
        v3_dgen_prompt *np = realloc(ps->p, (size_t)cap * sizeof *np);
        if (!np) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        else ps->p = np, ps->cap = cap;
    }
    if (rc) {
        prompt_free(&p);
        return rc;
    }
    ps->p[ps->n++] = p;
    return V3_OK;
}

/* {"answer": reference, "solution": solution} with the present ones (as import stores them). */
static int fields_of(const v3_distill_row *row, char **out, v3_err *err) {
    *out = NULL;
    if (!row->reference && !row->solution) return V3_OK;
    json_t *f = json_object();
    if (f && row->reference) json_object_set_new(f, "answer", json_string(row->reference));
    if (f && row->solution) json_object_set_new(f, "solution", json_string(row->solution));
    *out = f ? json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(f);
    return *out ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
}

/* One row → a prompt; V3_EFORMAT (reason in err) for a bad row. */
static int parse_row(v3_dgen_prompts *ps, const char *text, int64_t line,
                     const v3_distill_generate_opts *o, v3_err *err) {
    json_error_t je;
    json_t *obj = json_loads(text, 0, &je);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return obj ? v3_errf(err, V3_EFORMAT, "a row must be a JSON object")
                   : v3_errf(err, V3_EFORMAT, "invalid JSON: %s", je.text);
    }
    v3_distill_fields f;
    memset(&f, 0, sizeof f);
    v3_distill_row row;
    memset(&row, 0, sizeof row);
    char *fields = NULL;
    int rc = v3_distill_prompt(obj, &f, &row, err);
    if (!rc) rc = v3_distill_meta(obj, &f, &row, err);
    if (!rc) rc = fields_of(&row, &fields, err);
    if (!rc) {
        json_t *msgs = row.messages;
        row.messages = NULL;
        rc = add_prompt(ps, msgs, fields, o->prompts, line, o, err);
    }
    v3_distill_row_free(&row);
    json_decref(obj);
    return rc;
}

int v3_dgen_prompts_from_file(v3_dgen_prompts *ps, const v3_distill_generate_opts *o, FILE *log,
                              v3_distill_generate_stats *st, v3_err *err) {
    v3_jsonl *r = NULL;
    int rc = v3_jsonl_open(&r, o->prompts, V3_JSONL_AUTO, 0, err);
    if (rc) return rc;
    for (;;) {
        v3_record rec;
        int got = 0;
        if ((rc = v3_jsonl_next(r, &rec, &got, err)) || !got) break;
        st->rows++;
        v3_err rerr = {0};
        int k = rec.too_long ? v3_errf(&rerr, V3_EFORMAT, "row too long")
                             : parse_row(ps, rec.text, rec.line, o, &rerr);
        if (k == V3_EFORMAT) {
            if (st->bad_rows++ < MAX_REPORTED)
                fprintf(log, "%s:%lld: %s\n", o->prompts, (long long)rec.line, rerr.msg);
        } else if (k) {
            rc = v3_errf(err, k, "%s:%lld: %s", o->prompts, (long long)rec.line, rerr.msg);
            break;
        }
    }
    if (st->bad_rows > MAX_REPORTED)
        fprintf(log, "%s: %lld more bad rows not shown\n", o->prompts,
                (long long)(st->bad_rows - MAX_REPORTED));
    v3_jsonl_close(r);
    st->prompts = ps->n;
    return rc;
}

/* A stored prompt's messages: its messages column, else its text as one user message. */
static int stored_messages(const char *text, const char *messages, json_t **out, v3_err *err) {
    if (messages) {
        json_t *m = json_loads(messages, 0, NULL);
        int rc = json_is_array(m) ? v3_distill_messages_from(m, json_array_size(m), out, err)
                                  : v3_errf(err, V3_EFORMAT, "its messages are not a JSON array");
        json_decref(m);
        return rc;
    }
    if (!text) return v3_errf(err, V3_EFORMAT, "it has neither text nor messages");
    *out = json_pack("[{s:s, s:s}]", "role", "user", "content", text);
    return *out ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
}

int v3_dgen_prompts_from_store(v3_dgen_prompts *ps, const char *db_path,
                               const v3_distill_generate_opts *o, v3_distill_generate_stats *st,
                               v3_err *err) {
    v3_store *s = NULL;
    int rc = v3_store_open(&s, db_path, V3_STORE_READ, err);
    if (rc) return rc;
    sqlite3 *db = v3_store_db(s);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id, text, messages, fields FROM prompts ORDER BY id", -1, &q,
                           NULL) != SQLITE_OK) {
        rc = v3_errf(err, V3_EIO, "%s: reading prompts: %s", db_path, sqlite3_errmsg(db));
        goto done;
    }
    int step;
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        st->rows++;
        const char *text = (const char *)sqlite3_column_text(q, 1);
        const char *msgs = (const char *)sqlite3_column_text(q, 2);
        const char *fields = (const char *)sqlite3_column_text(q, 3);
        json_t *m = NULL;
        char *f = fields ? strdup(fields) : NULL;
        v3_err rerr = {0};
        int k = fields && !f ? v3_errf(&rerr, V3_ENOMEM, "out of memory")
                             : stored_messages(text, msgs, &m, &rerr);
        if (!k) {
            k = add_prompt(ps, m, f, NULL, 0, o, &rerr);
        } else {
            json_decref(m);
            free(f);
        }
        if (k == V3_EFORMAT) {
            st->bad_rows++; /* a prompt generate cannot send (a GRPO prompt of token ids, say) */
        } else if (k) {
            rc = v3_errf(err, k, "%s: prompt %lld: %s", db_path,
                         (long long)sqlite3_column_int64(q, 0), rerr.msg);
        }
    }
    if (!rc && step != SQLITE_DONE)
        rc = v3_errf(err, V3_EIO, "%s: reading prompts: %s", db_path, sqlite3_errmsg(db));
done:
    sqlite3_finalize(q);
    v3_store_close(s, NULL);
    st->prompts = ps->n;
    return rc;
}

uint64_t v3_dgen_key(const v3_dgen_prompt *p, const char *model, int sample) {
    size_t m = json_array_size(p->messages);
    const char *stack[64], **parts = 2 * m + 4 <= 64 ? stack : malloc((2 * m + 4) * sizeof *parts);
    if (!parts) return 0;
    for (size_t i = 0; i < m; i++) {
        const json_t *msg = json_array_get(p->messages, i);
        parts[2 * i] = json_string_value(json_object_get(msg, "role"));
        parts[2 * i + 1] = json_string_value(json_object_get(msg, "content"));
    }
    char idx[32];
    snprintf(idx, sizeof idx, "%d", sample);
    /* the roles of these two parts can never be a message's (roles are normalised names) */
    parts[2 * m] = "\x01teacher";
    parts[2 * m + 1] = model;
    parts[2 * m + 2] = "\x01sample";
    parts[2 * m + 3] = idx;
    uint64_t k = v3_distill_key(parts, (int)(2 * m + 4), "", "");
    if (parts != stack) free(parts);
    return k;
}
