/* distill_prompt.c — what a row says besides its traces: the prompt as messages, the reference
 * answer, the original solution, the model, the source's correctness flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_row.h"
#include "datasets/distill_row_internal.h"
#include "datasets/distill_text.h"

const json_t *v3_distill_get(const json_t *row, const char *name) {
    if (!name || !json_is_object(row)) return NULL;
    const json_t *v = json_object_get(row, name);
    if (v || !strchr(name, '.')) return v;
    /* a dotted path: "response.choices" */
    char part[256];
    const char *p = name;
    v = row;
    while (*p && v) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return v;
}

static const char *role_of(const char *r) {
    if (!r) return NULL;
    if (!strcmp(r, "user") || !strcmp(r, "human")) return "user";
    if (!strcmp(r, "assistant") || !strcmp(r, "gpt") || !strcmp(r, "model")) return "assistant";
    if (!strcmp(r, "system")) return "system";
    if (!strcmp(r, "tool") || !strcmp(r, "function") || !strcmp(r, "observation")) return "tool";
    return NULL;
}

const char *v3_distill_msg_role(const json_t *m) {
    const json_t *r = json_object_get(m, "role");
    if (!r) r = json_object_get(m, "from");
    return role_of(json_string_value(r));
}

const json_t *v3_distill_msg_content(const json_t *m) {
    const json_t *c = json_object_get(m, "content");
    return c ? c : json_object_get(m, "value");
}

int v3_distill_messages_from(const json_t *arr, size_t n, json_t **out, v3_err *err) {
    json_t *msgs = json_array();
    if (!msgs) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(arr, i);
        const char *role = json_is_object(m) ? v3_distill_msg_role(m) : NULL;
        const json_t *c = json_is_object(m) ? v3_distill_msg_content(m) : NULL;
        if (!role) {
            json_decref(msgs);
            return v3_errf(err, V3_EFORMAT, "message %zu: no known role (role/from: user, "
                           "assistant, system, tool, human, gpt)", i);
        }
        if (!json_is_string(c)) {
            json_decref(msgs);
            return v3_errf(err, V3_EFORMAT, "message %zu: content is not a string", i);
        }
        json_t *o = json_pack("{s:s, s:O}", "role", role, "content", c);
        if (!o || json_array_append_new(msgs, o)) {
            json_decref(msgs);
            return v3_errf(err, V3_ENOMEM, "out of memory");
        }
    }
    *out = msgs;
    return V3_OK;
}

static const char *const PROMPT_NAMES[] = {"prompt", "problem", "question", "instruction",
                                           "query", "input", NULL};

/* The prompt of a row whose traces are not in a conversation. */
static int prompt_from_fields(const json_t *row, const v3_distill_fields *f, v3_distill_row *out,
                              v3_err *err) {
    const json_t *p = NULL;
    if (f->prompt) {
        if (!(p = v3_distill_get(row, f->prompt)))
            return v3_errf(err, V3_EFORMAT, "missing prompt field \"%.80s\"", f->prompt);
    } else {
        for (int i = 0; PROMPT_NAMES[i] && !p; i++) {
            const json_t *v = json_object_get(row, PROMPT_NAMES[i]);
            if ((json_is_string(v) && json_string_length(v) > 0) ||
                (json_is_array(v) && json_array_size(v) > 0))
                p = v;
        }
        /* an OpenAI request/response pair: the request's messages */
        const json_t *m = v3_distill_get(row, "messages");
        if (!p && !json_is_array(m)) m = v3_distill_get(row, "request.messages");
        if (!p && json_is_array(m) && json_array_size(m) > 0) p = m;
    }
    if (!p)
        return v3_errf(err, V3_EFORMAT, "no prompt found (looked for prompt, problem, question, "
                       "instruction, query, input, messages; map one with import.fields "
                       "prompt=NAME)");
    if (json_is_string(p)) {
        out->messages = json_pack("[{s:s, s:O}]", "role", "user", "content", p);
        if (!out->messages) return v3_errf(err, V3_ENOMEM, "out of memory");
        return V3_OK;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return v3_errf(err, V3_EFORMAT, "the prompt is neither a string nor a list of messages");
    size_t n = json_array_size(p);
    /* a conversation given as the prompt may still end with an assistant turn: drop it */
    if (n > 1 && json_is_object(json_array_get(p, n - 1)) &&
        v3_distill_msg_role(json_array_get(p, n - 1)) &&
        !strcmp(v3_distill_msg_role(json_array_get(p, n - 1)), "assistant"))
        n--;
    return v3_distill_messages_from(p, n, &out->messages, err);
}

int v3_distill_prompt(const json_t *row, const v3_distill_fields *f, v3_distill_row *out,
                      v3_err *err) {
    int rc;
    if (out->messages && json_array_size(out->messages) == 0) { /* a conversation of one turn */
        json_decref(out->messages);
        out->messages = NULL;
    }
    if (!out->messages && (rc = prompt_from_fields(row, f, out, err))) return rc;
    /* a system prompt the teacher saw */
    const json_t *sys = v3_distill_get(row, f->system ? f->system : "system");
    const json_t *first = json_array_get(out->messages, 0);
    const char *r0 = first ? json_string_value(json_object_get(first, "role")) : NULL;
    if (json_is_string(sys) && json_string_length(sys) > 0 && !(r0 && !strcmp(r0, "system"))) {
        json_t *m = json_pack("{s:s, s:O}", "role", "system", "content", sys);
        if (!m || json_array_insert_new(out->messages, 0, m))
            return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    int has_user = 0;
    size_t i;
    json_t *m;
    json_array_foreach(out->messages, i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "role")), "user")) {
            has_user = 1;
            out->prompt_text = json_string_value(json_object_get(m, "content"));
        }
    }
    if (!has_user) return v3_errf(err, V3_EFORMAT, "the prompt has no user message");
    if (!out->prompt_text[strspn(out->prompt_text, " \t\r\n")])
        return v3_errf(err, V3_EFORMAT, "the prompt is empty");
    return V3_OK;
}

/* A scalar as text: strings as they are, numbers and booleans as JSON writes them. */
static char *scalar_text(const json_t *v) {
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (json_is_number(v) || json_is_boolean(v)) return json_dumps(v, JSON_ENCODE_ANY);
    return NULL;
}

static const char *const REF_NAMES[] = {"answer", "gt_answer", "reference_answer", "ground_truth",
                                        "expected_answer", "gold_answer", "final_answer",
                                        "target", NULL};
static const char *const SOL_NAMES[] = {"solution", "gt_solution", "original_response",
                                        "reference_solution", NULL};
static const char *const MODEL_NAMES[] = {"model", "llm", "source_model", "generator", "teacher",
                                          "model_name", NULL};

static const json_t *first_of(const json_t *row, const char *mapped, const char *const *names) {
    if (mapped) return v3_distill_get(row, mapped);
    for (int i = 0; names[i]; i++) {
        const json_t *v = json_object_get(row, names[i]);
        if (v && !json_is_null(v) && !json_is_array(v) && !json_is_object(v)) return v;
    }
    return NULL;
}

int v3_distill_meta(const json_t *row, const v3_distill_fields *f, v3_distill_row *out,
                    v3_err *err) {
    const json_t *sol = first_of(row, f->solution, SOL_NAMES);
    const json_t *ref = first_of(row, f->reference, REF_NAMES);
    if (json_is_string(sol) && json_string_length(sol) > 0 &&
        !(out->solution = v3_distill_trim_dup(json_string_value(sol), json_string_length(sol))))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    char *raw = ref ? scalar_text(ref) : NULL;
    if (ref && !raw && !json_is_null(ref))
        return v3_errf(err, V3_EFORMAT, "the reference answer is not a string or a number");
    if (raw) {
        out->reference = v3_distill_reference(raw);
        /* a GSM8K answer is a worked solution ending "#### 42": it is the original response */
        if (out->reference && !out->solution && strcmp(out->reference, raw) != 0 &&
            strstr(raw, "####"))
            out->solution = v3_distill_trim_dup(raw, strlen(raw));
        free(raw);
        if (!out->reference) return v3_errf(err, V3_ENOMEM, "out of memory");
        if (!out->reference[0]) {
            free(out->reference);
            out->reference = NULL;
        }
    } else if (out->solution && !(out->reference = strdup(out->solution))) {
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    const json_t *model = first_of(row, f->model, MODEL_NAMES);
    if (json_is_string(model) && json_string_length(model) > 0 && !out->model &&
        !(out->model = strdup(json_string_value(model))))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    return V3_OK;
}

/* 1 / 0 for a correctness flag; -1 when v is no flag. eval_result style integers: 1 = correct. */
static int flag_of(const json_t *v) {
    if (json_is_boolean(v)) return json_is_true(v);
    if (json_is_integer(v)) return json_integer_value(v) == 1;
    if (json_is_real(v)) return json_real_value(v) == 1.0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "correct") ||
            !strcmp(s, "1"))
            return 1;
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no") ||
            !strcmp(s, "incorrect") || !strcmp(s, "0"))
            return 0;
    }
    return -1;
}

static const char *const FLAG_NAMES[] = {"correctness_math_verify", "is_correct", "correct",
                                         "correctness", "verified", "eval_result", NULL};

void v3_distill_flags(const json_t *row, const v3_distill_fields *f, v3_distill_row *out) {
    const json_t *v = NULL;
    const char *name = NULL;
    if (f->correct) {
        v = v3_distill_get(row, f->correct);
        name = f->correct;
    } else {
        for (int i = 0; FLAG_NAMES[i] && !v; i++)
            if ((v = json_object_get(row, FLAG_NAMES[i]))) name = FLAG_NAMES[i];
    }
    if (!v) return;
    int any = 0;
    for (int g = 0; g < out->n_gens; g++) {
        int c = -1;
        if (json_is_array(v)) c = flag_of(json_array_get(v, (size_t)g));
        else if (out->n_gens == 1) c = flag_of(v);
        if (out->gens[g].correct < 0) out->gens[g].correct = c; /* a flag inside a choice wins */
        any |= c >= 0;
    }
    if (any) out->correct_field = name;
}
