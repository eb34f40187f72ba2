/* prepare_chat.c — v3_encoder over the real tokenizer and chat template. */
#include "prepare_chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "common/sha256.h"

json_t *v3_conv_to_json(const v3_conv *c) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (int i = 0; i < c->n_msgs; i++) {
        const v3_msg *m = &c->msgs[i];
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(v3_role_name(m->role)));
        json_object_set_new(o, "content", m->content ? json_string(m->content) : json_null());
        if (m->reasoning) json_object_set_new(o, "reasoning_content", json_string(m->reasoning));
        if (m->n_calls) {
            json_t *calls = json_array();
            for (int k = 0; k < m->n_calls; k++) {
                json_t *fn = json_object(), *call = json_object();
                json_object_set_new(fn, "name", json_string(m->calls[k].name));
                json_object_set_new(fn, "arguments", json_string(m->calls[k].arguments));
                json_object_set_new(call, "type", json_string(m->calls[k].type));
                json_object_set_new(call, "function", fn);
                json_array_append_new(calls, call);
            }
            json_object_set_new(o, "tool_calls", calls);
        }
        if (json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static int encode_text(const v3_chat_encoder *ce, const char *text, v3_sample *out, v3_err *err) {
    v3_tok_ids ids = {0};
    int rc = v3_tok_encode(ce->tok, text, strlen(text), V3_TOK_ADD_BOS | V3_TOK_ADD_EOS, &ids, err);
    if (!rc) rc = v3_sample_push(out, ids.ids, ids.n, 1, err);
    v3_tok_ids_free(&ids);
    return rc;
}

static int chat_encode(void *ctx, const v3_conv *conv, v3_sample *out, v3_err *err) {
    const v3_chat_encoder *ce = ctx;
    if (conv->n_msgs == 1 && conv->msgs[0].role == V3_ROLE_TEXT) return encode_text(ce, conv->msgs[0].content, out, err);
    json_t *msgs = v3_conv_to_json(conv);
    if (!msgs) return v3_errf(err, V3_ENOMEM, "out of memory");
    v3_chat_out co;
    memset(&co, 0, sizeof co);
    int rc = v3_chat_render(ce->tok, msgs, &ce->opts, &co, err);
    json_decref(msgs);
    size_t start = out->n;
    for (size_t i = 0; !rc && i < co.ids.n; i++) rc = v3_sample_push(out, &co.ids.ids[i], 1, co.mask[i], err);
    if (rc) out->n = start;
    v3_chat_out_free(&co);
    return rc;
}

int v3_chat_encoder_init(v3_chat_encoder *ce, v3_encoder *enc, const char *tok_dir,
                         const char *template_name, int mask_last, v3_err *err) {
    memset(ce, 0, sizeof *ce);
    memset(enc, 0, sizeof *enc);
    int t = v3_chat_template_parse(template_name);
    if (t < 0) return v3_errf(err, V3_EUSAGE, "unknown template \"%s\" (v3, r1, r1-keep-reasoning)", template_name);
    ce->opts.tmpl = (v3_chat_template)t;
    ce->opts.mask_last_only = mask_last;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", tok_dir);
    char *buf;
    size_t n;
    int rc = v3_read_file(path, &buf, &n, (size_t)1 << 30, err);
    if (rc) return rc;
    uint8_t d[32];
    v3_sha256(buf, n, d);
    free(buf);
    v3_sha256_hex(d, enc->hash);
    if ((rc = v3_tok_load(&ce->tok, tok_dir, err))) return rc;
    enc->ctx = ce;
    enc->encode = chat_encode;
    enc->vocab_size = (uint32_t)v3_tok_n_ids(ce->tok);
    enc->masks_last = 1;
    snprintf(enc->name, sizeof enc->name, "tokenizer.json + chat template %.20s", template_name);
    return V3_OK;
}

void v3_chat_encoder_free(v3_chat_encoder *ce) {
    if (!ce) return;
    v3_tok_free(ce->tok);
    ce->tok = NULL;
}
