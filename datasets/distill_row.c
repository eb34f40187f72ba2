/* distill_row.c — which form a row is in, and its generations (see distill_row.h). */
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_row.h"
#include "datasets/distill_row_internal.h"
#include "datasets/distill_text.h"

int v3_distill_form_parse(const char *name) {
    static const char *const names[] = {"auto", "messages", "response", "pair", "text", "solution"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

const char *v3_distill_form_name(v3_distill_form f) {
    switch (f) {
    case V3_DISTILL_MESSAGES: return "messages";
    case V3_DISTILL_RESPONSE: return "response";
    case V3_DISTILL_PAIR: return "pair";
    case V3_DISTILL_TEXT: return "text";
    case V3_DISTILL_SOLUTION: return "solution";
    default: return "auto";
    }
}

int v3_distill_map_field(v3_distill_fields *f, char *spec, v3_err *err) {
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return v3_errf(err, V3_EUSAGE, "field mapping \"%s\" is not KEY=NAME", spec);
    *eq = 0;
    const char *name = eq + 1;
    struct { const char *key; const char **dst; } keys[] = {
        {"prompt", &f->prompt},       {"system", &f->system},   {"messages", &f->messages},
        {"reasoning", &f->reasoning}, {"content", &f->content}, {"text", &f->text},
        {"reference", &f->reference}, {"solution", &f->solution}, {"correct", &f->correct},
        {"model", &f->model}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!strcmp(spec, keys[i].key)) {
            *keys[i].dst = name;
            *eq = '=';
            return V3_OK;
        }
    }
    v3_errf(err, V3_EUSAGE, "unknown key \"%s\" in field mapping (prompt, system, messages, "
            "reasoning, content, text, reference, solution, correct, model)", spec);
    *eq = '=';
    return V3_EUSAGE;
}

void v3_distill_row_free(v3_distill_row *r) {
    json_decref(r->messages);
    free(r->reference);
    free(r->solution);
    free(r->model);
    for (int i = 0; i < r->n_gens; i++) {
        free(r->gens[i].reasoning);
        free(r->gens[i].answer);
    }
    free(r->gens);
    memset(r, 0, sizeof *r);
}

/* Appends a generation; takes ownership of a split. */
static int add_gen(v3_distill_row *r, v3_distill_split_out *sp, int truncated, v3_err *err) {
    if (r->n_gens == r->cap) {
        int cap = r->cap ? 2 * r->cap : 4;
        v3_distill_gen *g = realloc(r->gens, (size_t)cap * sizeof *g);
        if (!g) {
            v3_distill_split_free(sp);
            return v3_errf(err, V3_ENOMEM, "out of memory");
        }
        r->gens = g;
        r->cap = cap;
    }
    r->gens[r->n_gens++] = (v3_distill_gen){.reasoning = sp->reasoning, .answer = sp->answer,
                                            .truncated = sp->truncated || truncated, .correct = -1};
    return V3_OK;
}

/* One text with inline tags (without any: what mode says, distill_text.h). */
static int gen_text(v3_distill_row *r, const char *s, size_t n, v3_split_mode mode, int truncated,
                    v3_err *err) {
    v3_distill_split_out sp;
    if (v3_distill_split(s, n, mode, &sp)) return v3_errf(err, V3_ENOMEM, "out of memory");
    return add_gen(r, &sp, truncated, err);
}

/* A separate reasoning and answer. An empty reasoning with tags in the answer is split instead. */
static int gen_pair(v3_distill_row *r, const char *reason, const char *answer, int truncated,
                    v3_err *err) {
    if (!reason || !reason[strspn(reason, " \t\r\n")])
        return gen_text(r, answer ? answer : "", answer ? strlen(answer) : 0, V3_SPLIT_ANSWER,
                        truncated, err);
    v3_distill_split_out sp = {0};
    sp.reasoning = v3_distill_trim_dup(reason, strlen(reason));
    sp.answer = v3_distill_trim_dup(answer ? answer : "", answer ? strlen(answer) : 0);
    if (!sp.reasoning || !sp.answer) {
        v3_distill_split_free(&sp);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    return add_gen(r, &sp, truncated, err);
}

/* A string or a list of strings: each one a generation. */
static int gens_from_value(v3_distill_row *r, const json_t *v, const char *name, v3_split_mode mode,
                           v3_err *err) {
    if (json_is_string(v))
        return gen_text(r, json_string_value(v), json_string_length(v), mode, 0, err);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return v3_errf(err, V3_EFORMAT, "\"%.60s\" is neither a string nor a list of strings", name);
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x))
            return v3_errf(err, V3_EFORMAT, "\"%.60s\"[%zu] is not a string", name, i);
        int rc = gen_text(r, json_string_value(x), json_string_length(x), mode, 0, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static int is_final_assistant(const json_t *msgs) {
    size_t n = json_array_size(msgs);
    const json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
    const char *role = json_is_object(last) ? v3_distill_msg_role(last) : NULL;
    return role && !strcmp(role, "assistant");
}

static const json_t *conversation(const json_t *row, const v3_distill_fields *f) {
    if (f->messages) return v3_distill_get(row, f->messages);
    const json_t *m = json_object_get(row, "messages");
    if (is_final_assistant(m)) return m;
    m = json_object_get(row, "conversations");
    return is_final_assistant(m) ? m : NULL;
}

static int form_messages(const json_t *row, const json_t *msgs, const v3_distill_fields *f,
                         v3_distill_row *r, v3_err *err) {
    if (!is_final_assistant(msgs))
        return v3_errf(err, V3_EFORMAT, "the conversation does not end with an assistant turn");
    size_t n = json_array_size(msgs);
    int rc = v3_distill_messages_from(msgs, n - 1, &r->messages, err);
    if (rc) return rc;
    const json_t *last = json_array_get(msgs, n - 1);
    const json_t *c = v3_distill_msg_content(last);
    const json_t *rs = json_object_get(last, f->reasoning ? f->reasoning : "reasoning_content");
    if (c && !json_is_string(c) && !json_is_null(c))
        return v3_errf(err, V3_EFORMAT, "the final assistant content is not a string");
    r->form = V3_DISTILL_MESSAGES;
    return gen_pair(r, json_string_value(rs), json_string_value(c), 0, err);
}

static int form_response(const json_t *row, const json_t *choices, v3_distill_row *r, v3_err *err) {
    if (!json_is_array(choices) || json_array_size(choices) == 0)
        return v3_errf(err, V3_EFORMAT, "\"choices\" is not a non-empty list");
    size_t i;
    const json_t *ch;
    json_array_foreach(choices, i, ch) {
        const json_t *m = json_object_get(ch, "message");
        if (!m) m = json_object_get(ch, "delta");
        const char *content = json_string_value(m ? json_object_get(m, "content")
                                                  : json_object_get(ch, "text"));
        const char *reason = m ? json_string_value(json_object_get(m, "reasoning_content")) : NULL;
        if (!reason && m) reason = json_string_value(json_object_get(m, "reasoning"));
        if (!content && !reason)
            return v3_errf(err, V3_EFORMAT, "choices[%zu] has no message content", i);
        const char *fin = json_string_value(json_object_get(ch, "finish_reason"));
        int rc = gen_pair(r, reason, content, fin && !strcmp(fin, "length"), err);
        if (rc) return rc;
    }
    const json_t *model = json_object_get(row, "model");
    if (!json_is_string(model)) model = v3_distill_get(row, "response.model");
    if (json_is_string(model) && !(r->model = strdup(json_string_value(model))))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    r->form = V3_DISTILL_RESPONSE;
    return V3_OK;
}

/* reasoning / answer pairs whose names go together */
static const char *const PAIRS[][2] = {
    {"reasoning_content", "content"}, {"thinking", "output"}, {"thinking", "response"},
    {"deepseek_thinking_trajectory", "deepseek_attempt"}, {"thinking_trajectories", "attempt"},
    {"thinking_trajectory", "attempt"}, {"reasoning", "response"}, {"reasoning", "output"},
    {"reasoning", "content"}, {NULL, NULL}};

static int form_pair(const json_t *rv, const char *rname, const json_t *av, const char *aname,
                     v3_distill_row *r, v3_err *err) {
    r->form = V3_DISTILL_PAIR;
    if (json_is_string(rv))
        return gen_pair(r, json_string_value(rv), json_string_value(json_is_array(av)
                                                                        ? json_array_get(av, 0) : av),
                        0, err);
    if (!json_is_array(rv) || json_array_size(rv) == 0)
        return v3_errf(err, V3_EFORMAT, "\"%.60s\" is neither a string nor a list of strings", rname);
    size_t i;
    const json_t *x;
    json_array_foreach(rv, i, x) {
        const json_t *a = json_is_array(av) ? json_array_get(av, i) : (i == 0 ? av : NULL);
        if (!json_is_string(x))
            return v3_errf(err, V3_EFORMAT, "\"%.60s\"[%zu] is not a string", rname, i);
        if (a && !json_is_string(a) && !json_is_null(a))
            return v3_errf(err, V3_EFORMAT, "\"%.60s\"[%zu] is not a string", aname ? aname : "", i);
        int rc = gen_pair(r, json_string_value(x), json_string_value(a), 0, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static const char *const TEXT_NAMES[] = {"completion", "completions", "response", "responses",
                                         "output", "outputs", "generation", "model_answer",
                                         "model_output", "prediction", "content", "text", NULL};

static int has_tags(const json_t *v) {
    if (json_is_array(v)) v = json_array_get(v, 0);
    const char *s = json_string_value(v);
    return s && (strstr(s, "</think>") || strstr(s, "<think>") || strstr(s, "<|end_of_thought|>"));
}

static int is_texts(const json_t *v) {
    return (json_is_string(v) && json_string_length(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0 && json_is_string(json_array_get(v, 0)));
}

/* The field holding inline-tagged texts: mapped, a known name, else any field with tags. */
static const char *text_field(const json_t *row, const v3_distill_fields *f) {
    if (f->text) return f->text;
    for (int i = 0; TEXT_NAMES[i]; i++)
        if (is_texts(json_object_get(row, TEXT_NAMES[i]))) return TEXT_NAMES[i];
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)row, k, v) {
        if (has_tags(v)) return k;
    }
    return NULL;
}

/* Runs the detector(s) allowed by form; returns V3_ENOTFOUND when none applies. */
static int detect(const json_t *row, const v3_distill_import_opts *o, v3_distill_row *r,
                  v3_err *err) {
    v3_distill_form form = o->form;
    const v3_distill_fields *f = &o->fields;
    v3_split_mode text_mode = o->starts_in_reasoning ? V3_SPLIT_OPEN : V3_SPLIT_ANSWER;
    int any = form == V3_DISTILL_AUTO;
    /* 1. OpenR1's list of generations */
    const json_t *gens = json_object_get(row, "generations");
    if (any && !f->messages && !f->reasoning && !f->text && json_is_array(gens) &&
        json_array_size(gens) > 0) {
        r->form = V3_DISTILL_TEXT;
        return gens_from_value(r, gens, "generations", text_mode, err);
    }
    /* 2. a conversation */
    if ((any && !f->reasoning && !f->text) || form == V3_DISTILL_MESSAGES) {
        const json_t *m = conversation(row, f);
        if (m || form == V3_DISTILL_MESSAGES || f->messages) {
            if (!json_is_array(m))
                return v3_errf(err, V3_EFORMAT, "no conversation (\"%s\") ending in an assistant turn",
                               f->messages ? f->messages : "messages");
            return form_messages(row, m, f, r, err);
        }
    }
    /* 3. an OpenAI chat completion */
    if ((any && !f->reasoning && !f->text) || form == V3_DISTILL_RESPONSE) {
        const json_t *c = json_object_get(row, "choices");
        if (!c) c = v3_distill_get(row, "response.choices");
        if (c || form == V3_DISTILL_RESPONSE) {
            if (!c) return v3_errf(err, V3_EFORMAT, "no \"choices\" (an OpenAI chat completion)");
            return form_response(row, c, r, err);
        }
    }
    /* 4. reasoning + answer fields */
    if ((any && !f->text) || form == V3_DISTILL_PAIR) {
        if (f->reasoning) {
            const json_t *rv = v3_distill_get(row, f->reasoning);
            if (!rv) return v3_errf(err, V3_EFORMAT, "missing reasoning field \"%.80s\"", f->reasoning);
            return form_pair(rv, f->reasoning, f->content ? v3_distill_get(row, f->content) : NULL,
                             f->content, r, err);
        }
        for (int i = 0; PAIRS[i][0]; i++) {
            const json_t *rv = json_object_get(row, PAIRS[i][0]);
            const json_t *av = json_object_get(row, PAIRS[i][1]);
            if (is_texts(rv) && av) return form_pair(rv, PAIRS[i][0], av, PAIRS[i][1], r, err);
        }
        if (form == V3_DISTILL_PAIR)
            return v3_errf(err, V3_EFORMAT, "no reasoning field with its answer field (map them with "
                           "import.fields reasoning=NAME content=NAME)");
    }
    /* 5. inline tags */
    if (any || form == V3_DISTILL_TEXT) {
        const char *name = text_field(row, f);
        if (name) {
            const json_t *v = v3_distill_get(row, name);
            if (!v) return v3_errf(err, V3_EFORMAT, "missing text field \"%.80s\"", name);
            r->form = V3_DISTILL_TEXT;
            return gens_from_value(r, v, name, text_mode, err);
        }
        if (form == V3_DISTILL_TEXT)
            return v3_errf(err, V3_EFORMAT, "no text with the reasoning (map one with import.fields "
                           "text=NAME)");
    }
    /* 6. LIMO: the solution is the reasoning */
    if (any || form == V3_DISTILL_SOLUTION) {
        const char *name = f->solution ? f->solution : "solution";
        const json_t *sol = v3_distill_get(row, name);
        int has_ref = f->reference ? v3_distill_get(row, f->reference) != NULL
                                   : json_object_get(row, "answer") != NULL;
        if (json_is_string(sol) && (has_ref || form == V3_DISTILL_SOLUTION)) {
            r->form = V3_DISTILL_SOLUTION;
            return gens_from_value(r, sol, name, V3_SPLIT_REASONING, err);
        }
        if (form == V3_DISTILL_SOLUTION)
            return v3_errf(err, V3_EFORMAT, "missing solution field \"%.80s\"", name);
    }
    return V3_ENOTFOUND;
}

int v3_distill_parse_row(const json_t *row, const v3_distill_import_opts *o, v3_distill_row *out,
                         v3_err *err) {
    const v3_distill_fields *f = &o->fields;
    if (!json_is_object(row)) return v3_errf(err, V3_EFORMAT, "a row must be a JSON object");
    int rc = detect(row, o, out, err);
    if (rc == V3_ENOTFOUND)
        return v3_errf(err, V3_EFORMAT, "no reasoning trace found (looked for generations, "
                       "messages, choices, reasoning_content/content, thinking/output, completion, "
                       "a field holding </think>, solution; map one with import.fields)");
    if (rc) return rc;
    if ((rc = v3_distill_prompt(row, f, out, err)) || (rc = v3_distill_meta(row, f, out, err)))
        return rc;
    v3_distill_flags(row, f, out);
    return V3_OK;
}
