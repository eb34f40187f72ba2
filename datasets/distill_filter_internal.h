/* distill_filter_internal.h — the filter's per-trace measures and its rules, apart from the store
 * so that they can be tested on synthetic traces. Not part of the public API. */
#ifndef V3_DISTILL_FILTER_INTERNAL_H
#define V3_DISTILL_FILTER_INTERNAL_H

#include <stdint.h>

#include "datasets/distill.h"
#include "datasets/distill_metrics.h"

typedef struct v3_distill_trace_info {
    int64_t id, prompt_id;
    int64_t tokens;     /* tokens of the assistant turn; < 0 = not counted */
    double score;       /* the correctness verdict's score; NAN = none or skipped */
    int has_verdict;    /* a verdict of that name exists (it may be a skip) */
    int truncated, no_answer, no_reasoning;
    int script;         /* expected script of the language rule; < 0 = none */
    double language;    /* share of the reasoning's letters in that script */
    double repetition;  /* n-gram repetition ratio of the reasoning */
    int rejected;       /* out: the rule that removed it (V3_RULE_*), -1 = kept */
} v3_distill_trace_info;

/* Applies the rules of o, in order, to t[0..n) (sets t[i].rejected) and fills st's counts (all
 * but selection_id). Returns V3_OK, or V3_ENOMEM (st and t[].rejected are then incomplete). language_rule: whether t[].script/language were measured. Per-prompt
 * selection keeps, per prompt_id, the k survivors with the fewest tokens (ties: lower id) or,
 * with V3_PICK_RANDOM, the k with the smallest splitmix64(seed ^ id): the same seed gives the same
 * choice whatever the order of t. t is reordered by id. */
int v3_distill_apply_rules(v3_distill_trace_info *t, int64_t n, const v3_distill_filter_opts *o,
                           int language_rule, v3_distill_filter_stats *st);

#endif
