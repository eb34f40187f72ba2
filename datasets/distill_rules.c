/* distill_rules.c — the filter's rules over measured traces (distill_filter_internal.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_filter_internal.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The first rule (before per-prompt selection) that t fails, or -1. */
static int first_failure(const v3_distill_trace_info *t, const v3_distill_filter_opts *o,
                         int language_rule) {
    if (o->require_complete && t->truncated) return V3_RULE_COMPLETE;
    if (o->require_answer && (t->no_answer || t->no_reasoning)) return V3_RULE_ANSWER;
    if (o->correct && o->correct[0]) {
        int verified = t->has_verdict && !isnan(t->score);
        if (verified ? !(t->score >= o->min_score) : !o->keep_unverified) return V3_RULE_CORRECT;
    }
    if ((o->min_tokens > 0 && t->tokens < o->min_tokens) ||
        (o->max_tokens > 0 && t->tokens > o->max_tokens))
        return V3_RULE_LENGTH;
    if (language_rule && t->script >= 0 && t->language < o->min_language_fraction)
        return V3_RULE_LANGUAGE;
    if (o->max_repetition > 0 && t->repetition > o->max_repetition) return V3_RULE_REPETITION;
    return -1;
}

/* qsort has no context argument; the pick order is encoded in a key computed beforehand. */
typedef struct ranked {
    int64_t prompt_id, key, id;
    int64_t index; /* into t */
} ranked;

static int by_prompt_key(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->prompt_id != y->prompt_id) return x->prompt_id < y->prompt_id ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int by_id(const void *a, const void *b) {
    const v3_distill_trace_info *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int v3_distill_apply_rules(v3_distill_trace_info *t, int64_t n, const v3_distill_filter_opts *o,
                           int language_rule, v3_distill_filter_stats *st) {
    int64_t sel = st->selection_id;
    memset(st, 0, sizeof *st);
    st->selection_id = sel;
    st->active[V3_RULE_COMPLETE] = o->require_complete != 0;
    st->active[V3_RULE_ANSWER] = o->require_answer != 0;
    st->active[V3_RULE_CORRECT] = o->correct && o->correct[0];
    st->active[V3_RULE_LENGTH] = o->min_tokens > 0 || o->max_tokens > 0;
    st->active[V3_RULE_LANGUAGE] = language_rule;
    st->active[V3_RULE_REPETITION] = o->max_repetition > 0;
    st->active[V3_RULE_PER_PROMPT] = o->per_prompt > 0;
    qsort(t, (size_t)n, sizeof *t, by_id);
    st->traces = n;
    int64_t survivors = 0;
    for (int64_t i = 0; i < n; i++) {
        t[i].rejected = first_failure(&t[i], o, language_rule);
        if (t[i].rejected >= 0) st->removed[t[i].rejected]++;
        else survivors++;
    }
    /* k per prompt among the survivors */
    ranked *rk = NULL, *pp = NULL;
    if (o->per_prompt > 0 && survivors) {
        if (!(rk = malloc((size_t)survivors * sizeof *rk))) return V3_ENOMEM;
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (t[i].rejected >= 0) continue;
            int64_t key = o->pick == V3_PICK_RANDOM
                              ? (int64_t)(splitmix64(o->seed ^ (uint64_t)t[i].id) >> 1)
                              : t[i].tokens;
            rk[m++] = (ranked){.prompt_id = t[i].prompt_id, .key = key, .id = t[i].id, .index = i};
        }
        qsort(rk, (size_t)m, sizeof *rk, by_prompt_key);
        int64_t run = 0;
        for (int64_t j = 0; j < m; j++) {
            run = j > 0 && rk[j].prompt_id == rk[j - 1].prompt_id ? run + 1 : 0;
            if (run >= o->per_prompt) {
                t[rk[j].index].rejected = V3_RULE_PER_PROMPT;
                st->removed[V3_RULE_PER_PROMPT]++;
            }
        }
        free(rk);
    }
    /* prompts seen and prompts with something kept (t is in id order, prompts are not) */
    if (n) {
        if (!(pp = malloc((size_t)n * sizeof *pp))) return V3_ENOMEM;
        for (int64_t i = 0; i < n; i++)
            pp[i] = (ranked){.prompt_id = t[i].prompt_id, .key = t[i].rejected < 0 ? 0 : 1, .id = 0};
        qsort(pp, (size_t)n, sizeof *pp, by_prompt_key);
        for (int64_t i = 0; i < n; i++) {
            if (i > 0 && pp[i].prompt_id == pp[i - 1].prompt_id) continue;
            st->prompts++;
            st->prompts_kept += pp[i].key == 0; /* sorted: a kept one comes first */
        }
        free(pp);
    }
    for (int64_t i = 0; i < n; i++) {
        if (t[i].rejected >= 0) continue;
        st->kept++;
        if (t[i].tokens > 0) st->tokens_kept += t[i].tokens;
    }
    return V3_OK;
}
