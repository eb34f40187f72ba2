/* pretok_deepseek.h — a hand-written scanner equivalent to DeepSeek-V3's pre-tokenizer regexes.
 *
 * DeepSeek-V3's tokenizer.json splits text with three Oniguruma regexes in sequence (all
 * Isolated; model-spec §10):
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
 *      ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Running Oniguruma per piece dominates encode time, so when a tokenizer's pre_tokenizer is
 * exactly this sequence, the tokenizer uses this scanner instead. It reproduces the regex
 * semantics, backtracking included (each alternative's outcome is worked out in closed form in
 * the .c file), and takes its Unicode classes (\p{L}, \p{N}, \p{M}, \p{P}, \p{S}, \s) from
 * Oniguruma's own tables, so both paths agree by construction on what each character is. The
 * Oniguruma path stays available (V3_TOK_NO_FASTPATH) and the fuzz target compares the two.
 *
 * Input must be valid UTF-8 (the tokenizer validates or repairs first). */
#ifndef V3_PRETOK_DEEPSEEK_H
#define V3_PRETOK_DEEPSEEK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The exact pattern strings (UTF-8) the scanner implements. */
extern const char *const v3_pretok_ds_patterns[3];

typedef struct v3_pretok_ds v3_pretok_ds;

/* Builds the code point class table (1.1 MB) from Oniguruma's Unicode data. */
int v3_pretok_ds_init(v3_pretok_ds **out, v3_err *err);
void v3_pretok_ds_free(v3_pretok_ds *ds);

/* Called for each piece in order; a non-zero return stops the split and is returned. */
typedef int (*v3_piece_fn)(void *ctx, const char *p, size_t n);

/* Splits text[0..n) as the three Isolated Split pre-tokenizers would. */
int v3_pretok_ds_split(const v3_pretok_ds *ds, const char *text, size_t n, v3_piece_fn fn, void *ctx);

#endif
