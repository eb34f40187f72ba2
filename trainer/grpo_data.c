/* grpo_data.c — GRPO prompt sets: JSONL rows become token ids (through the chat template with its
 * generation prompt, or as raw text), the rest of each row is kept for the rewards. Bad rows and
 * prompts that leave no room for a completion within data.seq_len are reported as FILE:LINE:
 * reason and skipped (counted). Prompts are visited in a seeded random order per epoch; the
 * cursor (epoch, next) is part of the checkpointed trainer state. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/sha256.h"
#include "datasets/chat.h"
#include "datasets/jsonl.h"
#include "trainer/grpo_internal.h"

static void prompt_free(grpo_prompt *p) {
    free(p->ids);
    free(p->text);
    free(p->messages);
    free(p->fields);
    memset(p, 0, sizeof *p);
}

void grpo_prompts_free(grpo_prompts *ps) {
    for (int64_t i = 0; i < ps->n; i++) prompt_free(&ps->p[i]);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

static int push(grpo_prompts *ps, grpo_prompt *p, v3_err *err) {
    if (ps->n == ps->cap) {
        int64_t cap = ps->cap ? 2 * ps->cap : 64;
        grpo_prompt *np = realloc(ps->p, (size_t)cap * sizeof *np);
        if (!np) return v3_errf(err, V3_ENOMEM, "prompts: out of memory");
        ps->p = np;
        ps->cap = cap;
    }
    ps->p[ps->n++] = *p;
    return V3_OK;
}

/* messages for a text prompt: [system?, user] */
static json_t *as_messages(const char *system, const char *text) {
    json_t *a = json_array();
    if (system) json_array_append_new(a, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(a, json_pack("{s:s, s:s}", "role", "user", "content", text));
    return a;
}

/* One row -> p; on failure writes why and returns -1 (p left empty). long_row is set when the
 * row is fine but too long. */
static int parse_row(grpo *g, const char *text, grpo_prompt *p, int *long_row, char *why, size_t nwhy) {
    const v3_grpo_opts *o = g->o;
    json_error_t je;
    json_t *row = json_loads(text, 0, &je);
    json_t *msgs = NULL;
    v3_chat_out co = {0};
    v3_tok_ids ti = {0};
    v3_err err;
    int rc = -1;
    *long_row = 0;
    if (!json_is_object(row)) {
        snprintf(why, nwhy, row ? "a row must be a JSON object" : "invalid JSON: %s (column %d)", je.text, je.column);
        goto out;
    }
    json_t *ms = json_object_get(row, "messages"), *pr = json_object_get(row, o->prompt_field);
    if (json_is_array(ms) && json_array_size(ms) > 0) {
        if (!o->chat) {
            snprintf(why, nwhy, "\"messages\" needs data.chat = true");
            goto out;
        }
        msgs = json_deep_copy(ms);
        if (o->system_prompt) {
            json_t *m0 = json_array_get(msgs, 0);
            const char *r0 = json_string_value(json_object_get(m0, "role"));
            if (!r0 || strcmp(r0, "system"))
                json_array_insert_new(msgs, 0, json_pack("{s:s, s:s}", "role", "system", "content", o->system_prompt));
        }
        p->text = NULL;
    } else if (json_is_string(pr)) {
        p->text = strdup(json_string_value(pr));
        if (o->chat) msgs = as_messages(o->system_prompt, json_string_value(pr));
    } else {
        snprintf(why, nwhy, "needs \"%s\" (a string) or \"messages\" (a non-empty array)", o->prompt_field);
        goto out;
    }
    if (msgs) {
        v3_chat_opts copt = {(v3_chat_template)v3_chat_template_parse(o->template_name), 1, 0, 0};
        if (v3_chat_render(g->tok, msgs, &copt, &co, &err)) {
            snprintf(why, nwhy, "messages: %.400s", err.msg);
            goto out;
        }
        if (!p->text) p->text = strdup(co.text);
        p->messages = json_dumps(msgs, JSON_COMPACT);
        p->n = (int64_t)co.ids.n;
        p->ids = malloc((size_t)(p->n ? p->n : 1) * sizeof(int32_t));
        if (p->ids) memcpy(p->ids, co.ids.ids, (size_t)p->n * sizeof(int32_t));
    } else {
        if (v3_tok_encode(g->tok, p->text, strlen(p->text), V3_TOK_DEFAULT_BOS, &ti, &err)) {
            snprintf(why, nwhy, "prompt: %.400s", err.msg);
            goto out;
        }
        p->n = (int64_t)ti.n;
        p->ids = malloc((size_t)(p->n ? p->n : 1) * sizeof(int32_t));
        if (p->ids) memcpy(p->ids, ti.ids, (size_t)p->n * sizeof(int32_t));
    }
    if (!p->ids || !p->text) {
        snprintf(why, nwhy, "out of memory");
        goto out;
    }
    if (p->n == 0) {
        snprintf(why, nwhy, "the prompt is empty");
        goto out;
    }
    for (int64_t t = 0; t < p->n; t++)
        if (p->ids[t] < 0 || p->ids[t] >= g->cfg.vocab_size) {
            snprintf(why, nwhy, "token %d is outside the model's vocabulary (%lld)", p->ids[t],
                     (long long)g->cfg.vocab_size);
            goto out;
        }
    int64_t room = o->seq_len - o->max_new_tokens;
    if (p->n > room) {
        snprintf(why, nwhy, "prompt of %lld tokens is longer than the context allows (data.seq_len %lld - "
                 "rollout.max_new_tokens %lld = %lld): skipped", (long long)p->n, (long long)o->seq_len,
                 (long long)o->max_new_tokens, (long long)room);
        *long_row = 1;
        goto out;
    }
    json_object_del(row, "messages");
    json_object_del(row, o->prompt_field);
    p->fields = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
    if (!p->fields) {
        snprintf(why, nwhy, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (rc) prompt_free(p);
    v3_tok_ids_free(&ti);
    v3_chat_out_free(&co);
    json_decref(msgs);
    json_decref(row);
    return rc;
}

int grpo_prompts_load(grpo *g, const char *const *files, int n_files, grpo_prompts *out, v3_err *err) {
    FILE *log = g->o->log;
    for (int f = 0; f < n_files; f++) {
        v3_jsonl *jr = NULL;
        int rc = v3_jsonl_open(&jr, files[f], V3_JSONL_AUTO, 0, err);
        if (rc) return rc;
        for (;;) {
            v3_record rec;
            int got = 0;
            if ((rc = v3_jsonl_next(jr, &rec, &got, err))) break;
            if (!got) break;
            char why[600];
            int long_row = 0;
            grpo_prompt p = {0};
            if (rec.too_long || parse_row(g, rec.text, &p, &long_row, why, sizeof why)) {
                if (long_row) out->n_long++;
                else out->n_bad++;
                /* the first few of each kind are shown; the counts go to every step's metrics */
                if (log && (long_row ? out->n_long : out->n_bad) <= 5)
                    fprintf(log, "%s:%lld: %s\n", files[f], (long long)rec.line, rec.too_long ? "row too long" : why);
                continue;
            }
            p.file = files[f];
            p.line = rec.line;
            if ((rc = push(out, &p, err))) {
                prompt_free(&p);
                break;
            }
        }
        v3_jsonl_close(jr);
        if (rc) return rc;
    }
    return V3_OK;
}

/* Fisher-Yates with a stream of (seed, salt) */
static void shuffle(int32_t *a, int64_t n, uint64_t seed, uint64_t salt) {
    v3_rng r;
    v3_rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ULL * (salt + 1)));
    for (int64_t i = 0; i < n; i++) a[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)v3_rng_below(&r, (uint64_t)i + 1);
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

int grpo_prompts_split(grpo_prompts *train, grpo_prompts *eval, double frac, uint64_t seed, v3_err *err) {
    int64_t n = train->n, k = (int64_t)(frac * (double)n + 0.5);
    if (k <= 0 || n < 2) return V3_OK;
    if (k >= n) k = n - 1;
    int32_t *perm = malloc((size_t)n * sizeof *perm);
    uint8_t *to_eval = calloc((size_t)n, 1);
    if (!perm || !to_eval) {
        free(perm);
        free(to_eval);
        return v3_errf(err, V3_ENOMEM, "prompts: out of memory");
    }
    shuffle(perm, n, seed, 0xe7a1);
    for (int64_t i = 0; i < k; i++) to_eval[perm[i]] = 1;
    int64_t w = 0;
    int rc = V3_OK;
    for (int64_t i = 0; i < n; i++) {
        if (to_eval[i] && !rc) {
            rc = push(eval, &train->p[i], err);
            if (!rc) continue;
        }
        train->p[w++] = train->p[i];
    }
    train->n = w;
    free(perm);
    free(to_eval);
    return rc;
}

int grpo_next_prompts(grpo *g, int k, int64_t *out, v3_err *err) {
    int64_t n = g->train.n;
    v3_pack_cursor *c = &g->st.cursor;
    if (!g->order && !(g->order = malloc((size_t)n * sizeof *g->order)))
        return v3_errf(err, V3_ENOMEM, "prompts: out of memory");
    for (int i = 0; i < k; i++) {
        if (c->next >= (uint64_t)n) {
            c->epoch++;
            c->next = 0;
        }
        if (!g->have_order || g->order_epoch != c->epoch) {
            shuffle(g->order, n, c->seed, c->epoch + 1);
            g->order_epoch = c->epoch;
            g->have_order = 1;
        }
        out[i] = g->order[c->next++];
    }
    return V3_OK;
}

void grpo_prompts_sha(const grpo_prompts *ps, char hex[65]) {
    v3_sha256_ctx s;
    v3_sha256_init(&s);
    for (int64_t i = 0; i < ps->n; i++) {
        int64_t n = ps->p[i].n;
        v3_sha256_update(&s, &n, sizeof n);
        v3_sha256_update(&s, ps->p[i].ids, (size_t)n * sizeof(int32_t));
        if (ps->p[i].fields) v3_sha256_update(&s, ps->p[i].fields, strlen(ps->p[i].fields) + 1);
    }
    uint8_t d[32];
    v3_sha256_final(&s, d);
    v3_sha256_hex(d, hex);
}
