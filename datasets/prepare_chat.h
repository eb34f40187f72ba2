/* prepare_chat.h — the production v3_encoder: DeepSeek-V3 tokenizer (tokenizer.h) + chat
 * template (chat.h). A conversation becomes the messages JSON the template takes; a raw-text
 * row becomes BOS + text + EOS with every token trained on. */
#ifndef V3_PREPARE_CHAT_H
#define V3_PREPARE_CHAT_H

#include "datasets/chat.h"
#include "datasets/prepare.h"
#include "datasets/tokenizer.h"

typedef struct v3_chat_encoder {
    v3_tokenizer *tok;
    v3_chat_opts opts;
} v3_chat_encoder;

/* Loads the tokenizer from tok_dir and fills enc (enc->ctx = ce). template_name: v3 | r1 |
 * r1-keep-reasoning. mask_last: loss only on the last assistant message. */
int v3_chat_encoder_init(v3_chat_encoder *ce, v3_encoder *enc, const char *tok_dir,
                         const char *template_name, int mask_last, v3_err *err);
void v3_chat_encoder_free(v3_chat_encoder *ce);

/* The conversation as the template's messages array (new reference; NULL when out of memory). */
json_t *v3_conv_to_json(const v3_conv *c);

#endif
