/* rm_score.c — scoring with a local reward model (rewards/rm.h): sequences packed greedily, in
 * order, into forwards of up to max_tokens tokens (each a document of its own: positions restart,
 * attention stays inside it), one pooled row per sequence through the score head. */
#include "rewards/rm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sequences [first, last) packed into one forward; their logits into logits[first..last). */
static int forward(v3_rm *rm, const int32_t *const *ids, const int64_t *lens, int first, int last,
                   float *logits, v3_err *err) {
    int64_t N = 0;
    for (int i = first; i < last; i++) {
        for (int64_t t = 0; t < lens[i]; t++) {
            rm->tokens[N + t] = ids[i][t];
            rm->positions[N + t] = (int32_t)t;
            rm->doc_start[N + t] = (int32_t)N;
        }
        rm->out_rows[i - first] = (int32_t)(N + v3_rm_pool_row(ids[i], lens[i], rm->pad_id));
        N += lens[i];
    }
    v3_score_batch b = {N, rm->tokens, rm->positions, rm->doc_start, last - first, rm->out_rows,
                        rm->m.head, rm->num_labels, rm->scores};
    int rc = v3_model_score(&rm->m, &b, err);
    if (!rc)
        memcpy(logits + (size_t)first * (size_t)rm->num_labels, rm->scores,
               (size_t)(last - first) * (size_t)rm->num_labels * sizeof(float));
    return rc;
}

int v3_rm_score_ids(v3_rm *rm, const int32_t *const *ids, const int64_t *lens, int n, float *logits,
                    v3_err *err) {
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > rm->max_tokens)
            return v3_errf(err, V3_ERANGE, "reward model: sequence %d has %lld tokens (want 1..%lld)", i,
                           (long long)lens[i], (long long)rm->max_tokens);
        for (int64_t t = 0; t < lens[i]; t++)
            if (ids[i][t] < 0 || ids[i][t] >= rm->cfg.vocab_size)
                return v3_errf(err, V3_ERANGE, "reward model: sequence %d, token %lld is %d, outside the "
                               "vocabulary [0, %lld)", i, (long long)t, ids[i][t],
                               (long long)rm->cfg.vocab_size);
    }
    for (int first = 0; first < n;) {
        int64_t N = 0;
        int last = first;
        while (last < n && N + lens[last] <= rm->max_tokens) N += lens[last++];
        int rc = forward(rm, ids, lens, first, last, logits, err);
        if (rc) return rc;
        first = last;
    }
    return V3_OK;
}

void v3_rm_values_free(v3_reward_value *v, int n) {
    for (int i = 0; v && i < n; i++) {
        free(v[i].error);
        free(v[i].extra_json);
        v[i].error = v[i].extra_json = NULL;
    }
}

static void set_error(const v3_rm *rm, v3_reward_value *v, const char *msg) {
    v->status = V3_REWARD_ERROR;
    v->score = rm->info.fallback;
    free(v->error);
    v->error = strdup(msg);
}

/* {"tokens": n} and, with several labels, "logits": [...] */
static char *extra(const v3_rm *rm, int64_t n_tokens, const float *logits) {
    json_t *x = json_pack("{s:I}", "tokens", (json_int_t)n_tokens);
    if (x && rm->num_labels > 1) {
        json_t *a = json_array();
        for (int j = 0; a && j < rm->num_labels; j++) json_array_append_new(a, json_real(logits[j]));
        json_object_set_new(x, "logits", a);
    }
    char *s = x ? json_dumps(x, JSON_COMPACT) : NULL;
    json_decref(x);
    return s;
}

/* The ids of every sample; a sample that cannot be scored gets its error now (ids[i].n = 0). */
static void encode_all(const v3_rm *rm, const v3_reward_sample *s, int n, v3_tok_ids *ids,
                       v3_reward_value *out) {
    for (int i = 0; i < n; i++) {
        v3_err e = {0};
        char msg[1200];
        msg[0] = 0;
        if (v3_rm_encode(rm, &s[i], &ids[i], &e)) snprintf(msg, sizeof msg, "reward model input: %s", e.msg);
        else if (ids[i].n == 0) snprintf(msg, sizeof msg, "reward model input: no tokens");
        else if ((int64_t)ids[i].n > rm->max_tokens)
            snprintf(msg, sizeof msg, "reward model input: %zu tokens, more than max_tokens %lld", ids[i].n,
                     (long long)rm->max_tokens);
        for (size_t t = 0; !msg[0] && t < ids[i].n; t++)
            if (ids[i].ids[t] >= rm->cfg.vocab_size)
                snprintf(msg, sizeof msg, "reward model input: token %d is outside the model's vocabulary "
                         "(%lld)", ids[i].ids[t], (long long)rm->cfg.vocab_size);
        if (msg[0]) {
            set_error(rm, &out[i], msg);
            ids[i].n = 0;
        }
    }
}

int v3_rm_score(v3_rm *rm, const v3_reward_sample *s, int n, v3_reward_value *out, v3_err *err) {
    double t0 = now_ms();
    memset(out, 0, (size_t)(n > 0 ? n : 0) * sizeof *out);
    v3_tok_ids *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    const int32_t **seq = calloc((size_t)(n > 0 ? n : 1), sizeof *seq);
    int64_t *lens = calloc((size_t)(n > 0 ? n : 1), sizeof *lens);
    int *which = calloc((size_t)(n > 0 ? n : 1), sizeof *which);
    float *logits = calloc((size_t)(n > 0 ? n : 1) * (size_t)rm->num_labels, sizeof *logits);
    int rc = ids && seq && lens && which && logits ? V3_OK
                                                   : v3_errf(err, V3_ENOMEM, "reward model: out of memory");
    int k = 0;
    int64_t total = 0;
    if (!rc) {
        encode_all(rm, s, n, ids, out);
        for (int i = 0; i < n; i++)
            if (ids[i].n > 0) {
                seq[k] = ids[i].ids;
                lens[k] = (int64_t)ids[i].n;
                total += lens[k];
                which[k++] = i;
            }
        rc = v3_rm_score_ids(rm, seq, lens, k, logits, err);
    }
    double per_token = total > 0 ? (now_ms() - t0) / (double)total : 0.0;
    for (int r = 0; !rc && r < k; r++) {
        v3_reward_value *v = &out[which[r]];
        const float *lg = logits + (size_t)r * (size_t)rm->num_labels;
        v->elapsed_ms = per_token * (double)lens[r]; /* the batch's time, shared by tokens */
        if (!isfinite(lg[rm->label])) {
            set_error(rm, v, "reward model: the score is not finite");
            continue;
        }
        v->status = V3_REWARD_OK;
        v->score = lg[rm->label];
        v->extra_json = extra(rm, lens[r], lg);
    }
    for (int i = 0; ids && i < n; i++) v3_tok_ids_free(&ids[i]);
    free(ids);
    free(seq);
    free(lens);
    free(which);
    free(logits);
    if (rc) v3_rm_values_free(out, n);
    return rc;
}
