/* grpo_eval.c — evaluation on the held-out prompts: eval.samples completions of each of the first
 * eval.prompts held-out prompts (greedy when eval.temperature is 0), scored by the run's reward
 * modules. Every evaluation uses the same prompts and the same random streams, so two evaluations
 * differ only by the weights. Results go to the evals table of run.db: eval/reward, eval/accuracy
 * (the function named accuracy, else math), eval/rewards/<name>, eval/mean_length,
 * eval/clipped_ratio; n_examples = completions scored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "trainer/grpo_internal.h"

static int log_eval(grpo *g, int64_t step, const char *name, double v, int64_t n, v3_err *err) {
    v3_store_eval ev = {.step = step, .name = name, .value = v, .n_examples = n};
    return v3_store_log_eval(g->store, &ev, err);
}

int grpo_evaluate(grpo *g, int64_t step, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int64_t np = g->eval.n;
    if (o->eval_prompts > 0 && o->eval_prompts < np) np = o->eval_prompts;
    if (np == 0) return V3_OK;
    double t0 = v3_now();
    v3_gen_request *rq = calloc((size_t)np, sizeof *rq);
    if (!rq) return v3_errf(err, V3_ENOMEM, "eval: out of memory");
    v3_sampling sp = o->sampling;
    sp.temperature = o->eval_temperature;
    if (sp.temperature == 0) sp = (v3_sampling){.temperature = 0, .top_p = 1};
    for (int64_t i = 0; i < np; i++) {
        rq[i].prompt = g->eval.p[i].ids;
        rq[i].prompt_len = g->eval.p[i].n;
        rq[i].n = o->eval_samples;
        rq[i].sampling = sp;
        rq[i].max_new_tokens = o->max_new_tokens;
        rq[i].stop_ids = g->stop_ids;
        rq[i].n_stop_ids = g->n_stop_ids;
        rq[i].stop = o->stop;
        rq[i].n_stop = o->n_stop;
        rq[i].seed = o->seed ^ 0x65766131ULL; /* the same streams at every evaluation */
    }
    v3_gen_output *outs = NULL;
    int64_t n = 0;
    int rc = v3_engine_generate(&g->eng, rq, (int)np, &outs, &n, err);
    free(rq);
    v3_model_update_router_bias(&g->m, 0.0f);
    if (rc) return v3_err_prefix(err, "eval (step %lld)", (long long)step);
    v3_reward_sample *rs = calloc((size_t)(n ? n : 1), sizeof *rs);
    char **texts = calloc((size_t)(n ? n : 1), sizeof *texts);
    v3_reward_result *res = calloc((size_t)(n ? n : 1), sizeof *res);
    double *x = malloc((size_t)(n ? n : 1) * (size_t)(g->n_func + 1) * sizeof *x);
    if (!rs || !res || !x || !texts) rc = v3_errf(err, V3_ENOMEM, "eval: out of memory");
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!(texts[i] = grpo_completion_text(g, &outs[i]))) rc = v3_errf(err, V3_ENOMEM, "eval: out of memory");
        grpo_reward_sample(&g->eval.p[outs[i].request], &outs[i], texts[i], outs[i].request, outs[i].sample, &rs[i]);
    }
    if (!rc) rc = v3_reward_host_score(g->host, rs, (int)n, res, err);
    double mean, sd, acc = NAN, len = 0, trunc = 0;
    if (!rc) {
        /* the combined reward as the trainer sees it: nansum of weighted scores, NaN if all skipped */
        for (int64_t i = 0; i < n; i++) {
            double r = 0;
            int k = 0;
            for (int f = 0; f < g->n_func; f++) {
                double v = res[i].values[f].score;
                x[(i * (g->n_func + 1)) + f] = v;
                if (!isnan(v)) r += g->weights[f] * v, k++;
            }
            x[i * (g->n_func + 1) + g->n_func] = k ? r : NAN;
            len += (double)outs[i].n;
            trunc += outs[i].finish == V3_FINISH_LENGTH;
        }
        v3_grpo_nanmean_std(x + g->n_func, n, g->n_func + 1, &mean, &sd);
        rc = log_eval(g, step, "eval/reward", mean, n, err);
        double rmean = mean;
        for (int f = 0; f < g->n_func && !rc; f++) {
            char name[200];
            v3_grpo_nanmean_std(x + f, n, g->n_func + 1, &mean, &sd);
            snprintf(name, sizeof name, "eval/rewards/%s", v3_reward_host_func(g->host, f)->name);
            rc = log_eval(g, step, name, mean, n, err);
            if (f == g->acc_func) acc = mean;
        }
        if (!rc && g->acc_func >= 0) rc = log_eval(g, step, "eval/accuracy", acc, n, err);
        if (!rc) rc = log_eval(g, step, "eval/mean_length", n ? len / (double)n : NAN, n, err);
        if (!rc) rc = log_eval(g, step, "eval/clipped_ratio", n ? trunc / (double)n : NAN, n, err);
        if (!rc && o->log) {
            fprintf(o->log, "eval step %lld: ", (long long)step);
            if (g->acc_func >= 0) fprintf(o->log, "accuracy %.4f, ", acc);
            fprintf(o->log, "reward %.4f over %lld held-out prompts x %d (%s), mean length %.1f, %.1fs\n",
                    rmean, (long long)np, o->eval_samples, sp.temperature > 0 ? "sampled" : "greedy",
                    n ? len / (double)n : 0.0, v3_now() - t0);
        }
    }
    v3_reward_results_free(res, (int)n);
    free(res);
    free(rs);
    free(x);
    for (int64_t i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    v3_gen_outputs_free(outs, n);
    return rc;
}
