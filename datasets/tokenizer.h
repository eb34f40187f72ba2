/* tokenizer.h — byte-level BPE tokenizer that reproduces Hugging Face `tokenizers` exactly.
 *
 * Loads a tokenizer.json (BPE model, vocab, merges as "a b" strings or [a, b] pairs, added
 * tokens, normalizer none/empty Sequence, pre_tokenizer Split/ByteLevel or a Sequence of them,
 * ByteLevel decoder) and optionally tokenizer_config.json (add_bos_token, add_eos_token,
 * bos_token, eos_token). Encoding follows HF step by step:
 *   1. added tokens are found as whole strings in the raw text (leftmost-longest; first those with
 *      normalized=false, then the normalized ones in the gaps — the normalizer is the identity);
 *   2. the text between them goes through the pre-tokenizers: Split regexes compiled with
 *      Oniguruma exactly as the Rust `onig` crate does (UTF-8, OnigDefaultSyntax, no options),
 *      each regex run on each piece as its own subject string, then ByteLevel (for DeepSeek-V3's
 *      exact regex sequence an equivalent hand-written scanner is used: pretok_deepseek.h);
 *   3. each piece is merged with BPE by merge rank (lowest rank first, leftmost on ties).
 *
 * Thread safety: any number of threads may call encode/decode on one shared tokenizer. After
 * v3_tok_load everything is read-only except a word cache of BPE results (sharded, one mutex per
 * shard; it changes speed, never results); onig_search runs with a private region per call.
 * Load tokenizers from one thread (Oniguruma initialises its globals on first use), then share.
 *
 * Added-token flags lstrip/rstrip/single_word are honoured with ASCII notions of whitespace and
 * word characters (HF uses Unicode ones); DeepSeek-V3 sets none of them. Split behaviours other
 * than Isolated (Removed, MergedWithPrevious/Next, Contiguous) follow HF's definitions but are
 * not covered by golden tests.
 *
 * Invalid UTF-8 input: v3_tok_encode rejects it with V3_EFORMAT and a message naming the byte
 * offset, unless V3_TOK_LOSSY is given, in which case each ill-formed subpart is replaced by
 * U+FFFD (maximal-subpart rule, as Python's bytes.decode(errors="replace")) before encoding.
 * Decoding never fails on content: bytes that do not form UTF-8 become U+FFFD, as in HF.
 *
 * Example:
 *     v3_tokenizer *tok; v3_err err;
 *     if (v3_tok_load(&tok, dir, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
 *     v3_tok_ids ids = {0};
 *     v3_tok_encode(tok, "Hello", 5, V3_TOK_ADD_BOS, &ids, &err);
 *     char *s; size_t n; v3_tok_decode(tok, ids.ids, ids.n, 1, &s, &n, &err);
 *     free(s); v3_tok_ids_free(&ids); v3_tok_free(tok);
 */
#ifndef V3_TOKENIZER_H
#define V3_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct v3_tokenizer v3_tokenizer;

/* A growable id list; encode appends to it. Zero-initialise, free with v3_tok_ids_free. */
typedef struct v3_tok_ids {
    int32_t *ids; /* [n] */
    size_t n, cap;
} v3_tok_ids;

void v3_tok_ids_free(v3_tok_ids *v);
int v3_tok_ids_push(v3_tok_ids *v, int32_t id, v3_err *err);

enum {
    V3_TOK_ADD_BOS = 1 << 0,    /* prepend the BOS id (tokenizer_config bos_token) */
    V3_TOK_ADD_EOS = 1 << 1,    /* append the EOS id */
    V3_TOK_LOSSY = 1 << 2,      /* repair invalid UTF-8 with U+FFFD instead of failing */
    V3_TOK_NO_ADDED = 1 << 3,   /* do not match added-token strings: encode them as plain text */
    V3_TOK_DEFAULT_BOS = 1 << 4, /* add BOS/EOS as tokenizer_config's add_bos_token/add_eos_token say */
    V3_TOK_NO_FASTPATH = 1 << 5  /* testing: run the pre-tokenizer regexes through Oniguruma even
                                    when the hand-written DeepSeek scanner applies (same result) */
};

/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. */
int v3_tok_load(v3_tokenizer **out, const char *dir, v3_err *err);
/* Same with explicit paths; config_path may be NULL. */
int v3_tok_load_files(v3_tokenizer **out, const char *json_path, const char *config_path,
                      v3_err *err);
void v3_tok_free(v3_tokenizer *tok);

/* Encodes text[0..len) (need not be NUL-terminated; may contain NUL) and appends the ids to out.
 * On failure out keeps its previous length. */
int v3_tok_encode(const v3_tokenizer *tok, const char *text, size_t len, int flags,
                  v3_tok_ids *out, v3_err *err);

/* Decodes ids to UTF-8 text (malloc'd, NUL-terminated, *out_len excludes the NUL). With
 * skip_special, ids of special added tokens are left out (non-special added tokens such as
 * <｜User｜> stay, as in HF). Unknown ids fail with V3_ERANGE (HF silently drops them). */
int v3_tok_decode(const v3_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                  char **out, size_t *out_len, v3_err *err);

/* Incremental decoder for generation: feed ids one at a time and get text that never ends in
 * the middle of a UTF-8 sequence; a possibly-incomplete tail (<= 3 bytes) is held back until the
 * next id completes it or proves it invalid. The concatenation of every push and the final flush
 * equals v3_tok_decode of all the ids. */
typedef struct v3_tok_stream {
    const v3_tokenizer *tok;
    int skip_special;
    uint8_t held[4]; /* incomplete UTF-8 tail */
    int n_held;
} v3_tok_stream;

void v3_tok_stream_init(v3_tok_stream *s, const v3_tokenizer *tok, int skip_special);
/* Appends the newly completed text for id to *out (realloc'd; *len, *cap updated; stays
 * NUL-terminated). */
int v3_tok_stream_push(v3_tok_stream *s, int32_t id, char **out, size_t *len, size_t *cap,
                       v3_err *err);
/* Emits the held tail as U+FFFD (it can no longer be completed) and resets the stream. */
int v3_tok_stream_flush(v3_tok_stream *s, char **out, size_t *len, size_t *cap, v3_err *err);

/* Queries. Ids range over [0, v3_tok_n_ids). */
int32_t v3_tok_n_ids(const v3_tokenizer *tok);              /* highest id + 1 */
int32_t v3_tok_token_id(const v3_tokenizer *tok, const char *token); /* -1 when absent */
/* The token's string as stored in tokenizer.json (byte-level symbols for BPE tokens); NULL for
 * an unused id. */
const char *v3_tok_token_str(const v3_tokenizer *tok, int32_t id);
/* The raw bytes the token decodes to (not NUL-terminated). NULL for an unused id. */
const uint8_t *v3_tok_token_bytes(const v3_tokenizer *tok, int32_t id, size_t *n);
int v3_tok_is_special(const v3_tokenizer *tok, int32_t id);
int v3_tok_is_added(const v3_tokenizer *tok, int32_t id);
int32_t v3_tok_bos_id(const v3_tokenizer *tok); /* -1 when not configured */
int32_t v3_tok_eos_id(const v3_tokenizer *tok);
int v3_tok_add_bos_default(const v3_tokenizer *tok);
/* tokenizer_config.json's chat_template, or NULL. */
const char *v3_tok_chat_template(const v3_tokenizer *tok);

/* The directory to load the tokenizer from: `given` when set; else model_dir when it holds
 * tokenizer.json (model_dir may be NULL); else $V3_TOKENIZER_DIR; else the shared data folder
 * beside the source tree. Returns given, model_dir, or buf (filled). */
const char *v3_tok_find_dir(const char *given, const char *model_dir, char *buf, size_t n);

#endif
