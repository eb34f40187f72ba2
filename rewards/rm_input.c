/* rm_input.c — what a reward model reads for a sample (rewards/rm.h): the conversation plus the
 * completion as the assistant's reply, rendered with the DeepSeek chat template and the model's
 * tokenizer (as tokenizer.apply_chat_template(messages + [reply]) for a TRL reward model), or
 * prompt + completion as one raw text; and the row HF pools the score head at. */
#include "rewards/rm_internal.h"

#include <stdlib.h>
#include <string.h>

/* The sample's conversation with the completion appended as the assistant's message. */
static int conversation(const v3_reward_sample *s, json_t **out, v3_err *err) {
    json_t *msgs = NULL;
    if (s->messages_json) {
        json_error_t je;
        msgs = json_loads(s->messages_json, 0, &je);
        if (!json_is_array(msgs)) {
            json_decref(msgs);
            return v3_errf(err, V3_EFORMAT, "the sample's messages are not a JSON array");
        }
    } else {
        msgs = json_array();
        if (!msgs) return v3_errf(err, V3_ENOMEM, "out of memory");
        /* json_pack refuses invalid UTF-8 (and fails when out of memory) */
        if (s->prompt &&
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", s->prompt))) {
            json_decref(msgs);
            return v3_errf(err, V3_EFORMAT, "the prompt is not valid UTF-8 text");
        }
    }
    const char *c = s->completion ? s->completion : "";
    json_t *reply = json_pack("{s:s, s:s}", "role", "assistant", "content", c);
    if (json_array_append_new(msgs, reply)) {
        json_decref(msgs);
        return v3_errf(err, V3_EFORMAT, "the completion is not valid UTF-8 text");
    }
    *out = msgs;
    return V3_OK;
}

static int encode_chat(const v3_rm *rm, const v3_reward_sample *s, v3_tok_ids *ids, v3_err *err) {
    json_t *msgs = NULL;
    int rc = conversation(s, &msgs, err);
    if (rc) return rc;
    v3_chat_out co = {0};
    v3_chat_opts copt = {(v3_chat_template)rm->tmpl, 0, 0, 0};
    rc = v3_chat_render(rm->tok, msgs, &copt, &co, err);
    for (size_t i = 0; !rc && i < co.ids.n; i++) rc = v3_tok_ids_push(ids, co.ids.ids[i], err);
    v3_chat_out_free(&co);
    json_decref(msgs);
    return rc;
}

/* prompt + completion as one text, with the tokenizer's default BOS unless the text starts with
 * the BOS token already (a prompt rendered by the chat template does). */
static int encode_raw(const v3_rm *rm, const v3_reward_sample *s, v3_tok_ids *ids, v3_err *err) {
    const char *p = s->prompt ? s->prompt : "", *c = s->completion ? s->completion : "";
    size_t np = strlen(p), nc = strlen(c);
    char *text = malloc(np + nc + 1);
    if (!text) return v3_errf(err, V3_ENOMEM, "out of memory");
    memcpy(text, p, np);
    memcpy(text + np, c, nc + 1);
    int flags = V3_TOK_LOSSY;
    int32_t bos = v3_tok_bos_id(rm->tok);
    const char *bs = bos >= 0 ? v3_tok_token_str(rm->tok, bos) : NULL;
    if (!bs || strncmp(text, bs, strlen(bs)) != 0) flags |= V3_TOK_DEFAULT_BOS;
    int rc = v3_tok_encode(rm->tok, text, np + nc, flags, ids, err);
    free(text);
    return rc;
}

int v3_rm_encode(const v3_rm *rm, const v3_reward_sample *s, v3_tok_ids *ids, v3_err *err) {
    ids->n = 0;
    return rm->tmpl == V3_RM_TEMPLATE_RAW ? encode_raw(rm, s, ids, err) : encode_chat(rm, s, ids, err);
}

int64_t v3_rm_pool_row(const int32_t *ids, int64_t n, int pad_id) {
    if (pad_id < 0) return n - 1;
    for (int64_t t = n - 1; t >= 0; t--)
        if (ids[t] != pad_id) return t;
    return 0;
}
