/* chat.h — DeepSeek-V3 / R1 chat templates reimplemented in C, with token ids and a loss mask.
 *
 * The semantics are those of the Jinja chat_template in DeepSeek-V3's tokenizer_config.json
 * (model-spec §10), bug for bug:
 *   BOS, then every system content joined with "\n\n"; user: <｜User｜>content; assistant:
 *   <｜Assistant｜>content<｜end▁of▁sentence｜>; tool calls (assistant with content null) and tool
 *   outputs as §10 describes, including the is_first quirk (is_first is never reset, so only the
 *   very first call of the conversation opens with <｜Assistant｜><｜tool▁calls▁begin｜>, and the
 *   closing <｜tool▁calls▁end｜><｜end▁of▁sentence｜> follows every later call, never the first)
 *   and is_output_first never being reset either; an assistant turn right after tool outputs is
 *   <｜tool▁outputs▁end｜>content<｜end▁of▁sentence｜>; a conversation ending on a tool message gets
 *   <｜tool▁outputs▁end｜> and no generation prompt.
 * V3_CHAT_R1 follows DeepSeek-R1's template: the generation prompt is <｜Assistant｜><think>\n,
 *   assistant contents are cut to the text after their last </think>, an assistant message with
 *   a "tool_calls" key may carry content and its calls are closed after the loop; later tool
 *   outputs have no "\n" before <｜tool▁output▁begin｜>.
 * V3_CHAT_R1_KEEP_REASONING is R1 except for the LAST assistant message, which keeps its
 *   reasoning for SFT on R1 traces: its content is not cut, and when it has a string
 *   "reasoning_content" it is rendered as
 *       <｜Assistant｜><think>\n{reasoning_content}\n</think>\n\n{content}<｜end▁of▁sentence｜>
 *   (after tool outputs the opening token is <｜tool▁outputs▁end｜> instead, as in R1). The
 *   matching inference prompt is the R1 rendering of the earlier messages with
 *   add_generation_prompt, and its ids are a prefix of the keep-reasoning ids (tested).
 *
 * Messages are a JSON array of {"role": "system"|"user"|"assistant"|"tool", "content": string or
 * null, "tool_calls": [{"type": ..., "function": {"name": ..., "arguments": string}}],
 * "reasoning_content": string}; other roles are ignored, as the template ignores them.
 * Divergences from the Jinja template, which raises an error in these cases: a missing
 * "content" counts as null, and "tool_calls": null as no "tool_calls" key (what transformers v5
 * does before rendering); a null content for system/user/tool is an error here too.
 *
 * Tokenisation is segment by segment: each template token (<｜User｜>, <｜Assistant｜>, ...) is
 * inserted as its id, and each maximal run of text between two of them is encoded as one
 * string. Because HF also splits on added tokens before anything else, this equals HF's encode
 * of the whole rendered string (checked on the golden conversations), with one deliberate
 * exception: in R1_KEEP_REASONING the run is also cut right after "<think>\n", so the prompt
 * (which ends with R1's generation prompt <｜Assistant｜><think>\n) is always a token prefix of
 * the training sequence; whole-string encoding can differ there when the reasoning starts with
 * punctuation, a symbol or a newline (">\n" would merge with it).
 *
 * Loss mask (1 = train on the token): every token an assistant message produces except the
 * opening role token (<｜Assistant｜>, or <｜tool▁outputs▁end｜> after tool outputs): its content,
 * its tool calls, its closing <｜end▁of▁sentence｜> (and <｜tool▁calls▁end｜>). In
 * R1_KEEP_REASONING the "<think>\n" opener belongs to the prompt and is not masked. When a text
 * run holds bytes of both kinds (only the V3 is_first quirk does this: "\n" of a later tool call
 * right after user text), a token is masked if any of its bytes is. mask_last_only restricts
 * the mask to the last assistant message. */
#ifndef V3_CHAT_H
#define V3_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "datasets/tokenizer.h"

typedef enum v3_chat_template {
    V3_CHAT_V3 = 0,
    V3_CHAT_R1 = 1,
    V3_CHAT_R1_KEEP_REASONING = 2,
} v3_chat_template;

typedef struct v3_chat_opts {
    v3_chat_template tmpl;
    int add_generation_prompt;
    int mask_last_only; /* mask only the last assistant message (default: all of them) */
    int no_bos;         /* leave out the leading BOS the template writes */
} v3_chat_opts;

typedef struct v3_chat_out {
    char *text;        /* [text_len] the rendered string, NUL-terminated */
    size_t text_len, text_cap;
    v3_tok_ids ids;
    uint8_t *mask;     /* [ids.n] 1 = loss on this token */
    size_t mask_cap;
} v3_chat_out;

/* Parses "v3", "r1", "r1-keep-reasoning"; -1 when unknown. */
int v3_chat_template_parse(const char *name);

/* Renders messages (a JSON array) into out, which is reset first (zero-initialise it once, free
 * with v3_chat_out_free; it may be reused across calls). Errors name the message index; after a
 * failure out holds a partial rendering and must not be used (it can still be reused or freed).
 * Thread-safe for distinct outs sharing one tokenizer. */
int v3_chat_render(const v3_tokenizer *tok, const json_t *messages, const v3_chat_opts *opts,
                   v3_chat_out *out, v3_err *err);
void v3_chat_out_free(v3_chat_out *out);

#endif
