/* grpo_rollout.c — one step's generation batch: prompts from the cursor, G completions each from
 * the rollout engine running on the policy model itself, every completion scored by the reward
 * host, advantages per group (trainer/grpo_adv.h).
 *
 * Dynamic sampling (DAPO): a group whose rewards are all equal (std 0), or that has fewer than
 * two scored samples (every reward nil, say), carries no learning signal. With
 * rollout.dynamic_sampling such groups are dropped and the missing number of groups is generated
 * from the next prompts, for at most rollout.dynamic_max_rounds extra rounds; the step then
 * trains on the groups it kept (fewer than prompts_per_step when the rounds ran out). Dropped
 * groups are still recorded (advantage as computed in their round; no trainer logprobs).
 *
 * Seeds: request r of round k of step s draws from the engine stream (seed(s, k), r, sample), a
 * pure function of the step, so a resumed run samples exactly what the uninterrupted one did. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "trainer/grpo_internal.h"

char *grpo_completion_text(const grpo *g, const v3_gen_output *o) {
    if (o->text) return strdup(o->text);
    /* the model's vocabulary (129280) is larger than the tokenizer's: ids it does not know (an
     * untrained model samples them) are left out of the text, as HF's decode drops them */
    int32_t *ids = malloc((size_t)(o->n ? o->n : 1) * sizeof *ids);
    if (!ids) return NULL;
    size_t k = 0, len = 0;
    for (int64_t t = 0; t < o->n; t++) {
        size_t nb = 0;
        if (o->ids[t] >= 0 && o->ids[t] < v3_tok_n_ids(g->tok) && v3_tok_token_bytes(g->tok, o->ids[t], &nb))
            ids[k++] = o->ids[t];
    }
    char *text = NULL;
    v3_err err;
    if (v3_tok_decode(g->tok, ids, k, 1, &text, &len, &err)) text = strdup("");
    free(ids);
    return text;
}

void grpo_reward_sample(const grpo_prompt *p, const v3_gen_output *o, const char *text, int64_t group,
                        int64_t index, v3_reward_sample *rs) {
    memset(rs, 0, sizeof *rs);
    rs->prompt = p->text;
    rs->messages_json = p->messages;
    rs->completion = text ? text : "";
    rs->completion_ids = o->ids;
    rs->n_completion_ids = (int)o->n;
    rs->finish_reason = v3_finish_name(o->finish);
    rs->row_json = p->fields;
    rs->group = group;
    rs->index = index;
}

void grpo_batch_free(grpo_batch *b) {
    for (int64_t i = 0; i < b->n; i++) {
        free(b->s[i].lp);
        free(b->s[i].ref);
        free(b->s[i].text);
    }
    for (int r = 0; r < b->n_rounds; r++) {
        v3_reward_results_free(b->rounds[r].res, (int)b->rounds[r].n_outs);
        free(b->rounds[r].res);
        v3_gen_outputs_free(b->rounds[r].outs, b->rounds[r].n_outs);
    }
    free(b->s);
    free(b->scores);
    memset(b, 0, sizeof *b);
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int grow(grpo *g, grpo_batch *b, int64_t need, v3_err *err) {
    if (b->n + need <= b->cap) return V3_OK;
    int64_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + need) cap *= 2;
    grpo_sample *s = realloc(b->s, (size_t)cap * sizeof *s);
    if (s) b->s = s;
    double *sc = realloc(b->scores, (size_t)(cap * g->n_func) * sizeof *sc);
    if (sc) b->scores = sc;
    if (!s || !sc) return v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    /* samples point into scores: re-aim them after a move */
    for (int64_t i = 0; i < b->n; i++) b->s[i].score = b->scores + i * g->n_func;
    b->cap = cap;
    return V3_OK;
}

/* Generates and scores one round of k prompts; appends k·G samples. */
static int gen_round(grpo *g, int64_t step, const int64_t *pidx, int k, grpo_batch *b, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int G = o->group_size, round = b->n_rounds;
    int64_t first = b->n;
    v3_gen_request *rq = calloc((size_t)k, sizeof *rq);
    if (!rq) return v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    uint64_t seed = mix64(o->seed ^ mix64(((uint64_t)step << 8) | (uint64_t)round));
    for (int r = 0; r < k; r++) {
        const grpo_prompt *p = &g->train.p[pidx[r]];
        rq[r].prompt = p->ids;
        rq[r].prompt_len = p->n;
        rq[r].n = G;
        rq[r].sampling = o->sampling;
        rq[r].max_new_tokens = o->max_new_tokens;
        rq[r].stop_ids = g->stop_ids;
        rq[r].n_stop_ids = g->n_stop_ids;
        rq[r].stop = o->stop;
        rq[r].n_stop = o->n_stop;
        rq[r].seed = seed;
    }
    grpo_round *rd = &b->rounds[round];
    double t0 = v3_now();
    int rc = v3_engine_generate(&g->eng, rq, k, &rd->outs, &rd->n_outs, err);
    free(rq);
    /* generation routed tokens through the experts: they must not steer the router bias */
    v3_model_update_router_bias(&g->m, 0.0f);
    b->t_rollout += v3_now() - t0;
    if (rc) return v3_err_prefix(err, "rollout (step %lld)", (long long)step);
    b->n_rounds++;
    int64_t n = rd->n_outs;
    if (n != (int64_t)k * G) return v3_errf(err, V3_ERANGE, "rollout: %lld outputs for %d prompts", (long long)n, k);
    if ((rc = grow(g, b, n, err))) return rc;
    v3_reward_sample *rs = calloc((size_t)n, sizeof *rs);
    rd->res = calloc((size_t)n, sizeof *rd->res);
    if (!rs || !rd->res) {
        free(rs);
        return v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        const v3_gen_output *out = &rd->outs[i];
        grpo_sample *s = &b->s[first + i];
        memset(s, 0, sizeof *s);
        s->prompt = pidx[out->request];
        s->group = b->n_groups + out->request;
        s->index = out->sample;
        s->round = round;
        s->seed = seed;
        s->o = out;
        s->r = &rd->res[i];
        s->score = b->scores + (first + i) * g->n_func;
        s->truncated = out->finish == V3_FINISH_LENGTH;
        s->reward = s->adv = NAN;
        b->gen_tokens += out->n;
        s->text = grpo_completion_text(g, out);
        grpo_reward_sample(&g->train.p[s->prompt], out, s->text, s->group, s->index, &rs[i]);
    }
    b->n += n;
    for (int64_t i = first; i < b->n; i++)
        if (!b->s[i].text) {
            free(rs);
            return v3_errf(err, V3_ENOMEM, "rollout: out of memory");
        }
    b->n_groups += k;
    t0 = v3_now();
    rc = v3_reward_host_score(g->host, rs, (int)n, rd->res, err);
    b->t_reward += v3_now() - t0;
    free(rs);
    if (rc) return v3_err_prefix(err, "rewards (step %lld)", (long long)step);
    for (int64_t i = 0; i < n; i++)
        for (int f = 0; f < g->n_func; f++) b->s[first + i].score[f] = rd->res[i].values[f].score;
    return V3_OK;
}

/* Advantages of samples [first, first + n) (whole groups); marks groups with no signal. */
static int round_advantages(grpo *g, grpo_batch *b, int64_t first, int64_t n, v3_err *err) {
    int G = g->o->group_size;
    int64_t ng = n / G;
    double *adv = malloc((size_t)n * sizeof *adv), *rew = malloc((size_t)n * sizeof *rew);
    double *gstd = malloc((size_t)ng * sizeof *gstd);
    uint8_t *zero = malloc((size_t)ng);
    int rc = adv && rew && gstd && zero ? V3_OK : v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    v3_grpo_adv_opts ao = {.group_size = G, .scale = g->o->scale, .agg = g->o->agg};
    v3_grpo_adv_out out = {.adv = adv, .reward = rew, .group_std = gstd, .group_zero_std = zero};
    if (!rc) rc = v3_grpo_advantages(b->scores + first * g->n_func, g->weights, n, g->n_func, &ao, &out, err);
    for (int64_t q = 0; q < ng && !rc; q++) {
        int nosig = isnan(gstd[q]), flat = zero[q];
        b->n_zero_std += flat;
        b->n_no_signal += nosig;
        int keep = !g->o->dynamic_sampling || (!flat && !nosig);
        for (int64_t i = q * G; i < (q + 1) * G; i++) {
            grpo_sample *s = &b->s[first + i];
            s->adv = adv[i];
            s->reward = rew[i];
            s->kept = keep;
        }
        b->n_kept_groups += keep;
    }
    free(adv);
    free(rew);
    free(gstd);
    free(zero);
    return rc;
}

/* With dynamic sampling the kept groups come from several rounds: their advantages are
 * recomputed over the kept set as one generation batch (this matters for batch scaling and
 * normalize_then_sum; group scaling gives the same values). */
static int kept_advantages(grpo *g, grpo_batch *b, v3_err *err) {
    int64_t nk = 0;
    for (int64_t i = 0; i < b->n; i++) nk += b->s[i].kept;
    if (nk == 0) return V3_OK;
    double *sc = malloc((size_t)(nk * g->n_func) * sizeof *sc), *adv = malloc((size_t)nk * sizeof *adv);
    int64_t *idx = malloc((size_t)nk * sizeof *idx);
    int rc = sc && adv && idx ? V3_OK : v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < b->n && !rc; i++)
        if (b->s[i].kept) {
            memcpy(sc + k * g->n_func, b->s[i].score, (size_t)g->n_func * sizeof *sc);
            idx[k++] = i;
        }
    v3_grpo_adv_opts ao = {.group_size = g->o->group_size, .scale = g->o->scale, .agg = g->o->agg};
    v3_grpo_adv_out out = {.adv = adv};
    if (!rc) rc = v3_grpo_advantages(sc, g->weights, nk, g->n_func, &ao, &out, err);
    for (int64_t j = 0; j < nk && !rc; j++) b->s[idx[j]].adv = adv[j];
    free(sc);
    free(adv);
    free(idx);
    return rc;
}

int grpo_rollout(grpo *g, int64_t step, grpo_batch *b, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int P = o->prompts_per_step;
    int64_t *pidx = malloc((size_t)P * sizeof *pidx);
    if (!pidx) return v3_errf(err, V3_ENOMEM, "rollout: out of memory");
    int rc = V3_OK, want = P;
    while (want > 0 && !rc) {
        int64_t first = b->n;
        if ((rc = grpo_next_prompts(g, want, pidx, err))) break;
        if ((rc = gen_round(g, step, pidx, want, b, err))) break;
        int before = b->n_kept_groups;
        if ((rc = round_advantages(g, b, first, b->n - first, err))) break;
        want -= b->n_kept_groups - before;
        if (!o->dynamic_sampling || b->n_rounds > o->dynamic_max_rounds) break;
    }
    free(pidx);
    if (!rc && o->dynamic_sampling && b->n_rounds > 1) rc = kept_advantages(g, b, err);
    return rc;
}
