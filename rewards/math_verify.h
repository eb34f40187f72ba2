/* math_verify.h — rule-based math answer reward: extract a final answer, decide equivalence.
 *
 * Reimplements, in bounded C, the semantics of the Python package math-verify as used by
 * TRL/open-r1's accuracy_reward (see docs/rewards-math.md for what is matched and every known
 * difference). Typical use in a GRPO reward:
 *
 *     v3_math_opts o;  v3_math_opts_default(&o);
 *     v3_math_status st;
 *     double r = v3_math_accuracy_reward(completion, strlen(completion), gold, strlen(gold), &o, &st);
 *     if (st == V3_MATH_GOLD_UNPARSED) skip_sample();     // open-r1 returns None here
 *
 * All functions are pure (no globals, no allocation that outlives a call), thread-safe, and do
 * bounded work: inputs longer than opts->max_input are cut to their last max_input bytes (the
 * answer is at the end), and parser nesting is capped at V3_MATH_MAX_DEPTH.
 */
#ifndef V3_MATH_VERIFY_H
#define V3_MATH_VERIFY_H

#include <stddef.h>

#define V3_MATH_MAX_DEPTH 64       /* nesting cap for braces/parentheses in the expression parser */
#define V3_MATH_ANSWER_MAX 1024    /* longest extracted answer kept (longer ones are treated as text) */

typedef enum {
    V3_MATH_NONE = 0,        /* nothing extracted */
    V3_MATH_BOXED,           /* last \boxed{...} / \fbox{...} */
    V3_MATH_FINAL_ANSWER,    /* "final answer ... is $X$" */
    V3_MATH_ANSWER_WORD,     /* "Answer: $X$", "the answer is $X$" (X inside a LaTeX environment) */
    V3_MATH_LATEX_ENV,       /* a plain $...$ / \[...\] / \(...\) (gold-style parsing only) */
    V3_MATH_GSM8K_HASH,      /* "#### N" (only with opts.gsm8k_hash) */
    V3_MATH_LAST_NUMBER,     /* last number in the text (only with opts.last_number_fallback) */
} v3_math_extract_kind;

typedef enum {
    V3_MATH_OK = 0,              /* reward computed */
    V3_MATH_GOLD_UNPARSED = 1,   /* gold has no extractable answer: open-r1 returns None (skip) */
    V3_MATH_NO_ANSWER = 2,       /* completion has no extractable answer: reward 0 */
} v3_math_status;

typedef struct v3_math_opts {
    size_t max_input;           /* bytes of each input looked at (the tail); default 65536 */
    int gsm8k_hash;             /* also accept "#### N" in completions (math-verify does not); default 0 */
    int last_number_fallback;   /* fall back to the last number (math-verify does not); default 0 */
    double float_rounding;      /* decimals compared when either side is a decimal literal; default 6 */
} v3_math_opts;

void v3_math_opts_default(v3_math_opts *o);

/* The final answer of a model completion, as open-r1's completion parser finds it: the last
 * \boxed{...} (brace-matched), else a LaTeX environment after "final answer ... is" / "answer:" /
 * "answer", else (if enabled) "#### N" or the last number. Writes the NUL-terminated raw answer
 * (before normalisation) to out. Returns 0 when found, -1 when not (out = "", *kind = NONE).
 * kind may be NULL. */
int v3_math_extract(const char *text, size_t len, char *out, size_t out_size,
                    v3_math_extract_kind *kind, const v3_math_opts *opts);

/* Whether two bare answers are equivalent (1) or not (0): both are normalised (Minerva style:
 * \left/\right, spacing commands, \text units, \$, ^\circ, \dfrac, thousands separators, percent,
 * "x = 5" right-hand sides) and then compared as numbers (exact rationals, decimals rounded to
 * opts->float_rounding places), expressions (evaluated at sample points), tuples, intervals,
 * sets, or text. gold is the reference. opts may be NULL for defaults. */
int v3_math_equal(const char *gold, const char *pred, const v3_math_opts *opts);

/* open-r1/TRL accuracy_reward for one sample: the gold (a LaTeX string such as "$42$" or a full
 * solution with \boxed{}) is parsed as math-verify's default LatexExtractionConfig does, the
 * completion as open-r1's completion config does; returns 1.0 when they verify as equal, else 0.0.
 * *status (may be NULL) says V3_MATH_GOLD_UNPARSED (caller should skip: open-r1's None) or
 * V3_MATH_NO_ANSWER. opts may be NULL. */
double v3_math_accuracy_reward(const char *completion, size_t completion_len, const char *gold,
                               size_t gold_len, const v3_math_opts *opts, v3_math_status *status);

#endif
