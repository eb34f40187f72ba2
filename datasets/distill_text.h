/* distill_text.h — the text side of a reasoning trace: splitting an R1 output into reasoning and
 * final answer, the normalised form two traces are compared in, the dedupe key, and a set of keys.
 *
 * Splitting follows what R1 outputs look like in the wild:
 *   "<think>\nR\n</think>\n\nA"  R1's own form (the opening tag may be missing: R1's chat template
 *                                puts "<think>\n" in the prompt, so API dumps often start with R);
 *   "<|begin_of_thought|>R<|end_of_thought|> <|begin_of_solution|>A<|end_of_solution|>"
 *                                OpenThoughts / Bespoke-Stratos;
 *   an opening tag that is never closed: the output was cut off (truncated = 1, no answer);
 *   no tag at all: by mode, a plain answer (no reasoning); reasoning whose last "**Final Answer**"
 *   section is the answer (a field known to hold only reasoning: LIMO's `solution`); or, for
 *   outputs that began inside the reasoning, reasoning that was cut off.
 * Both parts are trimmed of surrounding whitespace: the chat template writes its own newlines. */
#ifndef V3_DISTILL_TEXT_H
#define V3_DISTILL_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct v3_distill_split_out {
    char *reasoning; /* malloc'd, never NULL after a successful split ("" when none) */
    char *answer;    /* malloc'd, never NULL ("" when none) */
    int truncated;   /* 1: the reasoning was opened and never closed */
} v3_distill_split_out;

/* What a text without any tag is. */
typedef enum v3_split_mode {
    V3_SPLIT_ANSWER = 0,    /* a plain answer: no reasoning */
    V3_SPLIT_REASONING,     /* reasoning only (LIMO's solution): a last "**Final Answer**" section
                               is the answer */
    V3_SPLIT_OPEN,          /* the output started inside the reasoning (the chat template put
                               "<think>\n" in the prompt) and never closed it: cut off */
} v3_split_mode;

/* Splits text[0..len). Returns 0, or -1 when out of memory (out is then empty). */
int v3_distill_split(const char *text, size_t len, v3_split_mode mode, v3_distill_split_out *out);
void v3_distill_split_free(v3_distill_split_out *out);

/* A malloc'd copy of s[0..n) without leading/trailing whitespace; NULL when out of memory. */
char *v3_distill_trim_dup(const char *s, size_t n);

/* The reference answer as verifiers want it: trimmed, and a GSM8K solution ("...\n#### 42") cut
 * to what follows "####". malloc'd; NULL when out of memory. */
char *v3_distill_reference(const char *s);

/* Dedupe key: the 64 leading bits of SHA-256 over the normalised prompt (each message as role and
 * content, whitespace runs collapsed to one space, trimmed), the normalised reasoning and the
 * normalised answer, with separators between the parts. Never 0. prompt_parts: alternating role,
 * content strings (n_parts even). */
uint64_t v3_distill_key(const char *const *prompt_parts, int n_parts, const char *reasoning,
                        const char *answer);

/* A set of 64-bit keys (open addressing; 0 is never a key). */
typedef struct v3_keyset {
    uint64_t *slot;
    size_t cap, n;
} v3_keyset;

void v3_keyset_init(v3_keyset *s);
void v3_keyset_free(v3_keyset *s);
/* 1 when key was added, 0 when it was already there, -1 when out of memory. */
int v3_keyset_add(v3_keyset *s, uint64_t key);
/* Adds the key of every trace stored in the run store db_path (import and generate skip them). */
int v3_keyset_load_traces(v3_keyset *s, const char *db_path, v3_err *err);
int v3_keyset_has(const v3_keyset *s, uint64_t key);

#endif
