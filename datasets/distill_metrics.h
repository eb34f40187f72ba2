/* distill_metrics.h — cheap text measures the distillation filter uses.
 *
 * Language consistency (R1's "language mixing"): letters are counted by writing system, and the
 * measure is the share of the letters that belong to the expected one. Digits, punctuation,
 * symbols, spaces and Greek letters (mathematics uses them in any language) count for none.
 * Scripts: latin, cyrillic, greek, arabic, hebrew, devanagari, thai, hangul, cjk (Han ideographs,
 * Hiragana, Katakana: Chinese and Japanese share Han), other (any other letter-like code point
 * above U+00FF). Invalid UTF-8 bytes count as "other".
 *
 * Repetition: the text is split into words at whitespace; over its n-grams of words,
 * ratio = 1 - distinct / total (0: no n-gram repeats; near 1: a loop). Fewer than n words: 0. */
#ifndef V3_DISTILL_METRICS_H
#define V3_DISTILL_METRICS_H

#include <stddef.h>

typedef enum v3_script {
    V3_SCRIPT_NONE = -1, /* not a letter */
    V3_SCRIPT_LATIN = 0,
    V3_SCRIPT_CYRILLIC,
    V3_SCRIPT_GREEK,
    V3_SCRIPT_ARABIC,
    V3_SCRIPT_HEBREW,
    V3_SCRIPT_DEVANAGARI,
    V3_SCRIPT_THAI,
    V3_SCRIPT_HANGUL,
    V3_SCRIPT_CJK,
    V3_SCRIPT_OTHER,
    V3_SCRIPT_COUNT
} v3_script;

/* Parses a script name ("latin", ...); -1 when unknown. */
int v3_script_parse(const char *name);
const char *v3_script_name(int script);
/* The script of one code point. */
v3_script v3_script_of(unsigned cp);

/* Letters per script of s[0..n) (counts[V3_SCRIPT_COUNT], zeroed first). Returns the total. */
size_t v3_script_counts(const char *s, size_t n, size_t *counts);
/* The script with most letters other than Greek (V3_SCRIPT_NONE when there are no letters). */
int v3_script_dominant(const size_t *counts);
/* Share of the counted letters (Greek excluded) that are in `script`; 1 when there are fewer than
 * min_letters letters (too short to judge). */
double v3_script_fraction(const size_t *counts, int script, size_t min_letters);

/* Repetition ratio of s[0..n) over word n-grams (n >= 1). -1 when out of memory. */
double v3_repetition_ratio(const char *s, size_t len, int n);

#endif
