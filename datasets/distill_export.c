/* distill_export.c — `distill export`: the selected traces as an SFT dataset in OpenAI `messages`
 * form, one conversation per line, in one of the two sample types of the DeepSeek-V3 report:
 *
 *   r1        <system prompt, problem, R1 response>: the final assistant turn carries the
 *             reasoning in "reasoning_content" and the answer in "content" (what the
 *             r1-keep-reasoning chat template renders as <think>\nR\n</think>\n\nA), or inline in
 *             content with inline_reasoning. The system prompt, when given, replaces the prompt's.
 *   original  <problem, original response>: the source's own solution of the problem, once per
 *             prompt (else the trace's final answer, without reasoning).
 *
 * Each line also names its trace (or prompt) and source model; `v3tune data prepare` reads the
 * messages and ignores the rest. The file is written beside its final name and renamed. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/distill.h"
#include "datasets/distill_text.h"
#include "datasets/store.h"

#define PAGE 256

typedef struct export_ctx {
    const v3_distill_export_opts *o;
    v3_distill_export_stats *st;
    FILE *f;
    const char *tmp;
    v3_keyset prompts; /* prompts seen (for the count and the original form's once-per-prompt) */
    int64_t last_id;
    int n;
    int rc;
    v3_err err;
} export_ctx;

/* The prompt's messages, without its system messages when drop_system. */
static json_t *prompt_messages(const v3_store_trace_row *r, int drop_system) {
    json_t *in = r->prompt_messages ? json_loads(r->prompt_messages, 0, NULL) : NULL;
    if (!json_is_array(in)) {
        json_decref(in);
        return r->prompt_text ? json_pack("[{s:s, s:s}]", "role", "user", "content", r->prompt_text)
                              : NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(in, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (drop_system && role && !strcmp(role, "system")) continue;
        json_array_append(out, m);
    }
    json_decref(in);
    return out;
}

static json_t *assistant_r1(const v3_store_trace_row *r, int inline_reasoning) {
    const char *re = r->reasoning ? r->reasoning : "", *an = r->answer ? r->answer : "";
    if (!inline_reasoning)
        return json_pack("{s:s, s:s, s:s}", "role", "assistant", "content", an, "reasoning_content", re);
    size_t n = strlen(re) + strlen(an) + 32;
    char *c = malloc(n);
    if (!c) return NULL;
    snprintf(c, n, "<think>\n%s\n</think>\n\n%s", re, an);
    json_t *m = json_pack("{s:s, s:s}", "role", "assistant", "content", c);
    free(c);
    return m;
}

static int write_line(export_ctx *c, json_t *line) {
    char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s) return v3_errf(&c->err, V3_ENOMEM, "out of memory");
    int ok = fputs(s, c->f) >= 0 && fputc('\n', c->f) != EOF;
    free(s);
    if (!ok) return v3_errf(&c->err, V3_EIO, "%s: write failed: %s", c->tmp, strerror(errno));
    c->st->written++;
    return V3_OK;
}

static int export_r1(export_ctx *c, const v3_store_trace_row *r) {
    const char *sys = c->o->system_prompt;
    int use_sys = sys && sys[0];
    json_t *msgs = prompt_messages(r, use_sys);
    json_t *asst = assistant_r1(r, c->o->inline_reasoning);
    if (!msgs || !asst) {
        json_decref(msgs);
        json_decref(asst);
        return v3_errf(&c->err, V3_ENOMEM, "out of memory");
    }
    if (use_sys) json_array_insert_new(msgs, 0, json_pack("{s:s, s:s}", "role", "system", "content", sys));
    json_array_append_new(msgs, asst);
    json_t *line = json_pack("{s:o, s:I, s:s}", "messages", msgs, "trace_id", (json_int_t)r->id,
                             "source_model", r->source_model ? r->source_model : "unknown");
    if (!line) return v3_errf(&c->err, V3_ENOMEM, "out of memory");
    int rc = write_line(c, line);
    json_decref(line);
    return rc;
}

static int export_original(export_ctx *c, const v3_store_trace_row *r, int first_of_prompt) {
    if (!first_of_prompt) return V3_OK;
    json_t *fields = r->prompt_fields ? json_loads(r->prompt_fields, 0, NULL) : NULL;
    const char *sol = json_string_value(json_object_get(fields, "solution"));
    const char *origin = "solution", *content = sol;
    if (!sol || !sol[0]) {
        if (c->o->original_skip || !r->answer || !r->answer[0]) {
            c->st->original_skipped++;
            json_decref(fields);
            return V3_OK;
        }
        origin = "answer";
        content = r->answer;
    }
    json_t *msgs = prompt_messages(r, 1);
    json_t *line = msgs ? json_pack("{s:o, s:I, s:s}", "messages", msgs, "prompt_id",
                                    (json_int_t)r->prompt_id, "origin", origin)
                        : NULL;
    int rc;
    if (!line || json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant",
                                                       "content", content)))
        rc = v3_errf(&c->err, V3_ENOMEM, "out of memory");
    else
        rc = write_line(c, line);
    if (!rc) {
        if (sol && sol[0]) c->st->original_from_solution++;
        else c->st->original_from_answer++;
    }
    json_decref(line);
    json_decref(fields);
    return rc;
}

static int take(void *ud, const v3_store_trace_row *r) {
    export_ctx *c = ud;
    c->last_id = r->id;
    c->n++;
    c->st->traces++;
    int first = v3_keyset_add(&c->prompts, (uint64_t)r->prompt_id);
    if (first < 0) return c->rc = v3_errf(&c->err, V3_ENOMEM, "out of memory");
    c->st->prompts += first;
    c->rc = c->o->form == V3_EXPORT_ORIGINAL ? export_original(c, r, first) : export_r1(c, r);
    return c->rc;
}

int v3_distill_export(const char *db_path, const char *out_path, const v3_distill_export_opts *o,
                      v3_distill_export_stats *st, v3_err *err) {
    v3_store *r = NULL;
    export_ctx c = {.o = o, .st = st};
    memset(st, 0, sizeof *st);
    v3_keyset_init(&c.prompts);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid());
    c.tmp = tmp;
    int rc = v3_store_open(&r, db_path, V3_STORE_READ, err);
    if (rc) goto out;
    int64_t sel = o->selection_id;
    if (sel == 0) {
        if ((rc = v3_store_latest_selection(r, &sel, err))) goto out;
        if (sel == 0) {
            rc = v3_errf(err, V3_ENOTFOUND, "%s: no selection yet: run `v3tune distill filter` first "
                         "(or export every trace with --all)", db_path);
            goto out;
        }
    }
    st->selection_id = sel > 0 ? sel : 0;
    if (!(c.f = fopen(tmp, "w"))) {
        rc = v3_errf(err, V3_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (;;) {
        v3_store_trace_query q = {.after_id = c.last_id, .limit = PAGE,
                                  .selection_id = sel > 0 ? sel : 0};
        c.n = 0;
        rc = v3_store_query_traces(r, &q, take, &c, err);
        if (rc && c.rc) {
            if (err) *err = c.err;
            rc = c.rc;
        }
        if (rc || c.n < PAGE) break;
    }
    if (fclose(c.f) != 0 && !rc) rc = v3_errf(err, V3_EIO, "%s: %s", tmp, strerror(errno));
    c.f = NULL;
    if (!rc && rename(tmp, out_path) != 0)
        rc = v3_errf(err, V3_EIO, "%s: cannot rename into place: %s", out_path, strerror(errno));
    if (rc) remove(tmp);
out:
    if (c.f) {
        fclose(c.f);
        remove(tmp);
    }
    v3_store_close(r, NULL);
    v3_keyset_free(&c.prompts);
    return rc;
}
