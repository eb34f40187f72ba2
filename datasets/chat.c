/* chat.c — the DeepSeek-V3/R1 chat templates as C control flow (see chat.h for the semantics),
 * building the rendered string, the ids and the loss mask in one pass. */
#include "datasets/chat.h"

#include <stdlib.h>
#include <string.h>

/* The template tokens, looked up by string in the tokenizer at each render (cheap: a hash probe
 * each) so nothing is cached outside the tokenizer. */
enum {
    T_BOS, T_EOS, T_USER, T_ASSISTANT, T_CALLS_BEGIN, T_CALLS_END, T_CALL_BEGIN, T_CALL_END,
    T_OUTPUTS_BEGIN, T_OUTPUTS_END, T_OUTPUT_BEGIN, T_OUTPUT_END, T_SEP, T_COUNT
};

static const char *const TOKEN_STR[T_COUNT] = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>", "<｜tool▁sep｜>",
};

typedef struct builder {
    const v3_tokenizer *tok;
    v3_chat_out *out;
    int32_t id[T_COUNT];
    char *run;          /* pending text between two template tokens */
    uint8_t *run_mask;  /* [run_len] mask of each pending byte */
    size_t run_len, run_cap;
    int rc;             /* sticky: the first failure stops all later emits */
    v3_err *err;
} builder;

int v3_chat_template_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "v3") == 0) return V3_CHAT_V3;
    if (strcmp(name, "r1") == 0) return V3_CHAT_R1;
    if (strcmp(name, "r1-keep-reasoning") == 0) return V3_CHAT_R1_KEEP_REASONING;
    return -1;
}

void v3_chat_out_free(v3_chat_out *out) {
    if (!out) return;
    free(out->text);
    v3_tok_ids_free(&out->ids);
    free(out->mask);
    memset(out, 0, sizeof *out);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static void oom(builder *b) {
    if (!b->rc) b->rc = v3_errf(b->err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
}

static void append_rendered(builder *b, const char *s, size_t n) {
    v3_chat_out *o = b->out;
    if (grow((void **)&o->text, &o->text_cap, o->text_len + n + 1, 1)) return oom(b);
    memcpy(o->text + o->text_len, s, n);
    o->text_len += n;
    o->text[o->text_len] = 0;
}

/* Encodes the pending text run and gives each new token its mask. */
static void flush(builder *b) {
    if (b->rc || b->run_len == 0) return;
    v3_chat_out *o = b->out;
    size_t n0 = o->ids.n;
    int rc = v3_tok_encode(b->tok, b->run, b->run_len, 0, &o->ids, b->err);
    if (rc) {
        b->rc = rc;
        return;
    }
    size_t mcap = o->mask_cap;
    if (grow((void **)&o->mask, &mcap, o->ids.n, 1)) return oom(b);
    o->mask_cap = mcap;
    int any = 0, all = 1;
    for (size_t i = 0; i < b->run_len; i++) {
        any |= b->run_mask[i];
        all &= b->run_mask[i];
    }
    if (any == all) {
        memset(o->mask + n0, any, o->ids.n - n0);
    } else {
        /* mixed run: walk the tokens' source bytes (byte-level tokens decode to exactly the
         * bytes they were made from) and mask a token if any of its bytes is masked */
        size_t pos = 0;
        for (size_t t = n0; t < o->ids.n; t++) {
            size_t nb = 0;
            v3_tok_token_bytes(b->tok, o->ids.ids[t], &nb);
            uint8_t m = 0;
            for (size_t k = pos; k < pos + nb && k < b->run_len; k++) m |= b->run_mask[k];
            o->mask[t] = m;
            pos += nb;
        }
    }
    b->run_len = 0;
}

static void text(builder *b, const char *s, size_t n, int mask) {
    if (b->rc || n == 0) return;
    append_rendered(b, s, n);
    size_t cap = b->run_cap;
    if (grow((void **)&b->run, &cap, b->run_len + n, 1)) return oom(b);
    if (grow((void **)&b->run_mask, &b->run_cap, b->run_len + n, 1)) return oom(b);
    memcpy(b->run + b->run_len, s, n);
    memset(b->run_mask + b->run_len, mask ? 1 : 0, n);
    b->run_len += n;
}

static void textz(builder *b, const char *s, int mask) { text(b, s, strlen(s), mask); }

static void special(builder *b, int which, int mask) {
    flush(b);
    if (b->rc) return;
    append_rendered(b, TOKEN_STR[which], strlen(TOKEN_STR[which]));
    v3_chat_out *o = b->out;
    if (v3_tok_ids_push(&o->ids, b->id[which], b->err)) {
        b->rc = V3_ENOMEM;
        return;
    }
    size_t mcap = o->mask_cap;
    if (grow((void **)&o->mask, &mcap, o->ids.n, 1)) return oom(b);
    o->mask_cap = mcap;
    o->mask[o->ids.n - 1] = mask ? 1 : 0;
}

/* ---------------------------------------------------------------- message access */

static int get_str(builder *b, json_t *msg, size_t i, const char *key, int null_ok, const char **s,
                   size_t *n) {
    json_t *v = json_object_get(msg, key);
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *n = json_string_length(v);
        return 1;
    }
    if ((!v || json_is_null(v)) && null_ok) {
        *s = NULL;
        *n = 0;
        return 0;
    }
    if (!b->rc)
        b->rc = v3_errf(b->err, V3_EINVAL, "messages[%zu]: \"%s\" must be a string%s", i, key,
                        null_ok ? " or null" : "");
    return -1;
}

/* type<｜tool▁sep｜>name\n```json\nargs\n```<｜tool▁call▁end｜> after a <｜tool▁call▁begin｜>. */
static void tool_call_body(builder *b, json_t *call, size_t i, size_t k, int mask) {
    json_t *fn = json_object_get(call, "function");
    json_t *type = json_object_get(call, "type"), *name = json_object_get(fn, "name");
    json_t *args = json_object_get(fn, "arguments");
    if (!json_is_string(type) || !json_is_string(name) || !json_is_string(args)) {
        if (!b->rc)
            b->rc = v3_errf(b->err, V3_EINVAL,
                            "messages[%zu].tool_calls[%zu]: needs string type, function.name and "
                            "function.arguments (the template concatenates them as strings)", i, k);
        return;
    }
    text(b, json_string_value(type), json_string_length(type), mask);
    special(b, T_SEP, mask);
    text(b, json_string_value(name), json_string_length(name), mask);
    textz(b, "\n```json\n", mask);
    text(b, json_string_value(args), json_string_length(args), mask);
    textz(b, "\n```", mask);
    special(b, T_CALL_END, mask);
}

/* R1 keeps only what follows the last </think> of a past assistant content. */
static void strip_reasoning(const char **s, size_t *n) {
    static const char tag[] = "</think>";
    const size_t tl = sizeof tag - 1;
    if (!*s || *n < tl) return;
    for (size_t i = *n - tl + 1; i-- > 0;) {
        if (memcmp(*s + i, tag, tl) == 0) {
            *n -= i + tl;
            *s += i + tl;
            return;
        }
    }
}

int v3_chat_render(const v3_tokenizer *tok, const json_t *messages_c, const v3_chat_opts *opts,
                   v3_chat_out *out, v3_err *err) {
    json_t *messages = (json_t *)messages_c; /* jansson's getters are not const-qualified */
    v3_chat_opts dflt = {0};
    if (!opts) opts = &dflt;
    if (!json_is_array(messages))
        return v3_errf(err, V3_EINVAL, "chat: messages must be a JSON array");
    builder b = {.tok = tok, .out = out, .err = err};
    for (int t = 0; t < T_COUNT; t++) {
        b.id[t] = v3_tok_token_id(tok, TOKEN_STR[t]);
        if (b.id[t] < 0)
            return v3_errf(err, V3_EUNSUPPORTED, "chat: the tokenizer has no %s token", TOKEN_STR[t]);
    }
    out->text_len = 0;
    out->ids.n = 0;
    int r1 = opts->tmpl != V3_CHAT_V3, keep = opts->tmpl == V3_CHAT_R1_KEEP_REASONING;
    size_t n_msg = json_array_size(messages);
    long last_asst = -1;
    for (size_t i = 0; i < n_msg; i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_object(m)) return v3_errf(err, V3_EINVAL, "messages[%zu]: not an object", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) return v3_errf(err, V3_EINVAL, "messages[%zu]: missing string \"role\"", i);
        if (strcmp(role, "assistant") == 0) last_asst = (long)i;
    }

    /* BOS + system prompts joined with "\n\n" (all of them, wherever they appear) */
    if (!opts->no_bos) special(&b, T_BOS, 0);
    int first_sp = 1;
    for (size_t i = 0; i < n_msg && !b.rc; i++) {
        json_t *m = json_array_get(messages, i);
        if (strcmp(json_string_value(json_object_get(m, "role")), "system") != 0) continue;
        const char *s;
        size_t n;
        if (get_str(&b, m, i, "content", 0, &s, &n) < 0) break;
        if (!first_sp) textz(&b, "\n\n", 0);
        text(&b, s, n, 0);
        first_sp = 0;
    }

    int is_first = 0, is_tool = 0, is_output_first = 1;
    for (size_t i = 0; i < n_msg && !b.rc; i++) {
        json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        int am = (strcmp(role, "assistant") == 0) && (!opts->mask_last_only || (long)i == last_asst);
        const char *c;
        size_t cn;
        if (strcmp(role, "user") == 0) {
            if (get_str(&b, m, i, "content", 0, &c, &cn) < 0) break;
            is_tool = 0;
            special(&b, T_USER, 0);
            text(&b, c, cn, 0);
        } else if (strcmp(role, "assistant") == 0) {
            int has_content = get_str(&b, m, i, "content", 1, &c, &cn);
            if (has_content < 0) break;
            json_t *calls = json_object_get(m, "tool_calls");
            if (json_is_null(calls)) calls = NULL; /* "tool_calls": null counts as absent */
            int tool_branch = r1 ? calls != NULL : !has_content;
            if (tool_branch) {
                is_tool = 0;
                for (size_t k = 0; k < json_array_size(calls) && !b.rc; k++) {
                    json_t *call = json_array_get(calls, k);
                    if (!is_first) {
                        special(&b, T_ASSISTANT, 0);
                        if (r1 && has_content) text(&b, c, cn, am);
                        special(&b, T_CALLS_BEGIN, am);
                        special(&b, T_CALL_BEGIN, am);
                        tool_call_body(&b, call, i, k, am);
                        is_first = 1; /* never reset: the template's quirk */
                    } else {
                        textz(&b, "\n", am);
                        special(&b, T_CALL_BEGIN, am);
                        tool_call_body(&b, call, i, k, am);
                        if (!r1) {
                            special(&b, T_CALLS_END, am);
                            special(&b, T_EOS, am);
                        }
                    }
                }
                if (r1) {
                    special(&b, T_CALLS_END, am);
                    special(&b, T_EOS, am);
                }
            } else {
                if (!has_content) { /* R1 without tool_calls and with null content */
                    b.rc = v3_errf(err, V3_EINVAL, "messages[%zu]: assistant content is null and there are no tool_calls", i);
                    break;
                }
                int last = (long)i == last_asst;
                const char *reasoning = NULL;
                size_t rn = 0;
                if (keep && last && get_str(&b, m, i, "reasoning_content", 1, &reasoning, &rn) < 0) break;
                special(&b, is_tool ? T_OUTPUTS_END : T_ASSISTANT, 0);
                if (keep && last && reasoning) {
                    textz(&b, "<think>\n", 0);
                    flush(&b); /* prompt/response boundary: see chat.h */
                    text(&b, reasoning, rn, am);
                    textz(&b, "\n</think>\n\n", am);
                } else if (r1 && !is_tool && !(keep && last)) {
                    strip_reasoning(&c, &cn);
                }
                text(&b, c, cn, am);
                special(&b, T_EOS, am);
                is_tool = 0;
            }
        } else if (strcmp(role, "tool") == 0) {
            if (get_str(&b, m, i, "content", 0, &c, &cn) < 0) break;
            is_tool = 1;
            if (is_output_first) {
                special(&b, T_OUTPUTS_BEGIN, 0);
                special(&b, T_OUTPUT_BEGIN, 0);
                is_output_first = 0; /* never reset either */
            } else {
                if (!r1) textz(&b, "\n", 0);
                special(&b, T_OUTPUT_BEGIN, 0);
            }
            text(&b, c, cn, 0);
            special(&b, T_OUTPUT_END, 0);
        }
    }
    if (is_tool) special(&b, T_OUTPUTS_END, 0);
    if (opts->add_generation_prompt && !is_tool) {
        special(&b, T_ASSISTANT, 0);
        if (r1) textz(&b, "<think>\n", 0);
    }
    flush(&b);
    free(b.run);
    free(b.run_mask);
    if (!b.rc && out->ids.n == 0) { /* keep out->mask non-NULL for callers */
        size_t mcap = out->mask_cap;
        if (grow((void **)&out->mask, &mcap, 1, 1)) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        out->mask_cap = mcap;
    }
    return b.rc;
}
