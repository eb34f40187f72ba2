/* distill_row.h — one data row (a JSON object) → a prompt and its reasoning traces.
 *
 * Detection in AUTO (the first that applies; an explicit field mapping forces its form):
 *   1. a "generations" list (OpenR1-Math)                               → TEXT, one trace each
 *   2. "messages"/"conversations" ending in an assistant turn (OpenAI chat, OpenThoughts,
 *      ShareGPT from/value): reasoning_content + content, or inline tags   → MESSAGES
 *   3. "choices" (an OpenAI chat completion; also under "response")       → RESPONSE, one per choice
 *   4. a reasoning field with its answer field: reasoning_content/content, thinking/output,
 *      thinking/response, deepseek_thinking_trajectory/deepseek_attempt,
 *      thinking_trajectories/attempt (s1), reasoning/response|output|content → PAIR
 *   5. one text with inline tags: completion(s), response(s), output(s), generation, model_answer,
 *      model_output, prediction, content, text, or else any field holding "</think>" → TEXT
 *   6. "solution" next to a reference answer and nothing else (LIMO)      → SOLUTION
 * Each value may be a string or a list (several generations, aligned with a list of flags).
 * The prompt comes from the conversation before the final turn, or from prompt / problem /
 * question / instruction / query / input (a string or a messages list), with "system" prepended.
 * Reference: answer, gt_answer, reference_answer, ground_truth, expected_answer, gold_answer,
 * final_answer, target (else the solution). Original response: solution, gt_solution,
 * original_response, reference_solution (else a GSM8K answer's worked solution). Correctness:
 * correctness_math_verify, is_correct, correct, correctness, verified, eval_result (1 = correct).
 * Model: model, llm, source_model, generator, teacher, model_name. */
#ifndef V3_DISTILL_ROW_H
#define V3_DISTILL_ROW_H

#include <jansson.h>

#include "common/err.h"
#include "datasets/distill.h"

typedef struct v3_distill_gen {
    char *reasoning, *answer; /* trimmed, never NULL */
    int truncated;
    int correct;              /* the source's flag: 1 / 0; -1 = none */
} v3_distill_gen;

typedef struct v3_distill_row {
    v3_distill_form form;  /* what was detected */
    json_t *messages;      /* the prompt as an OpenAI messages array (owned) */
    const char *prompt_text; /* the last user message's content (borrowed from messages) */
    char *reference;       /* normalised reference answer, or NULL */
    char *solution;        /* the source's original response, or NULL */
    char *model;           /* the row's model name, or NULL */
    const char *correct_field; /* the flag's field name (borrowed), or NULL */
    v3_distill_gen *gens;
    int n_gens, cap;
} v3_distill_row;

/* Parses row into out by o's form, fields and starts_in_reasoning (zero out first; free with v3_distill_row_free, also after a failure). A
 * row that holds no usable prompt or trace is V3_EFORMAT with a short reason (no file:line: the
 * caller adds it); V3_ENOMEM when out of memory. */
int v3_distill_parse_row(const json_t *row, const v3_distill_import_opts *o, v3_distill_row *out,
                         v3_err *err);
void v3_distill_row_free(v3_distill_row *r);

#endif
