/* bench_model.c — forward+backward throughput of the model on the CPU backend, and its memory:
 * the planned bytes (params + grads + activation arena) against the measured peak RSS.
 *
 *   bench_model --preset small --seq 2048 [--batch 1] [--steps 3] [--threads N]
 *               [--recompute none|all|K] [--json]
 *   bench_model --preset small --config-out config.json     (writes the preset's config.json)
 *
 * Weights are random (normal, std = initializer_range; norms 1) and written through a small host
 * buffer, so no full host copy of the parameters inflates the RSS. A batch is `batch` sequences
 * of `seq` tokens packed into one flat batch (document boundaries between them). The RSS figure
 * is the process's peak (getrusage) minus its RSS before the model was created. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_kb(void) { /* current RSS from /proc (peak comes from getrusage) */
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * 4;
}

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void random_weights(v3_model *m, uint64_t seed) {
    v3_rng r;
    v3_rng_seed(&r, seed);
    enum { CH = 1 << 16 };
    float *buf = malloc(CH * sizeof(float));
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        for (int64_t o = 0; o < p->numel; o += CH) {
            int64_t n = p->numel - o < CH ? p->numel - o : CH;
            for (int64_t j = 0; j < n; j++)
                buf[j] = p->kind == V3_PK_NORM ? 1.0f
                         : p->kind == V3_PK_BIAS ? 0.0f
                                                 : (float)m->cfg.initializer_range * v3_rng_normal(&r);
            m->ctx->be->to_device(m->ctx, m->params + p->offset + o, buf, (size_t)n * sizeof(float));
        }
    }
    free(buf);
}

int main(int argc, char **argv) {
    const char *preset = "tiny", *recompute = "none", *config_out = NULL;
    int64_t seq = 256, batch = 1;
    int steps = 3, threads = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) seq = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--recompute") && i + 1 < argc) recompute = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--config-out") && i + 1 < argc) config_out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_model --preset NAME --seq T [--batch B] [--steps S] "
                            "[--threads N] [--recompute none|all|K] [--json]\n");
            return 2;
        }
    }
    v3_err err;
    v3_config cfg;
    if (v3_config_preset(&cfg, preset, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (config_out) { /* the same config for bench/model_hf.py, then stop */
        if (v3_config_save(&cfg, config_out, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        return 0;
    }
    v3_kctx ctx;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), threads, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t N = seq * batch;
    unsigned char re[256] = {0};
    int n_re = !strcmp(recompute, "all") ? cfg.n_layer : !strcmp(recompute, "none") ? 0 : atoi(recompute);
    for (int l = 0; l < n_re && l < 256; l++) re[l] = 1;
    v3_model_options o = v3_model_default_options();
    o.recompute = re;

    long rss0 = rss_kb();
    v3_model m;
    if (v3_model_init(&m, &cfg, &ctx, N, &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    random_weights(&m, 1234);
    if (!json) v3_model_print_memory(&m, stdout);

    int32_t *tok = malloc((size_t)N * 4), *tgt = malloc((size_t)N * 4), *pos = malloc((size_t)N * 4),
            *ds = malloc((size_t)N * 4);
    v3_rng r;
    v3_rng_seed(&r, 99);
    for (int64_t t = 0; t < N; t++) tok[t] = (int32_t)v3_rng_below(&r, (uint64_t)cfg.vocab_size);
    for (int64_t t = 0; t < N; t++) {
        int64_t b = t / seq, i = t % seq;
        tgt[t] = i + 1 < seq ? tok[t + 1] : -100;
        pos[t] = (int32_t)i;
        ds[t] = (int32_t)(b * seq);
    }
    v3_batch bt = {N, tok, tgt, pos, ds, NULL, NULL, NULL};
    double best = 1e30, total = 0, loss = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 is a warm-up */
        double t0 = now();
        v3_model_zero_grad(&m);
        if (v3_model_forward(&m, &bt, &loss, &err) || v3_model_backward(&m, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double dt = now() - t0;
        if (s > 0) {
            total += dt;
            if (dt < best) best = dt;
        }
    }
    double mean = total / steps;
    long peak = peak_rss_kb();
    double plan_mib = (double)v3_model_device_bytes(&m) / 1048576.0;
    double used_mib = (double)(peak - rss0) / 1024.0;
    if (json)
        printf("{\"impl\": \"v3tune\", \"preset\": \"%s\", \"seq\": %lld, \"batch\": %lld, \"threads\": %d, "
               "\"recompute_layers\": %d, \"loss\": %.6f, \"step_s\": %.4f, \"best_s\": %.4f, "
               "\"tokens_per_s\": %.1f, \"plan_mib\": %.1f, \"arena_mib\": %.1f, \"peak_rss_mib\": %.1f, "
               "\"rss_over_plan\": %.4f}\n",
               preset, (long long)seq, (long long)batch, threads, n_re, loss, mean, best, N / mean,
               plan_mib, m.arena.planned / 1048576.0, used_mib, used_mib / plan_mib);
    else
        printf("v3tune cpu: %s seq %lld batch %lld: loss %.4f, fwd+bwd %.3f s/step (best %.3f), "
               "%.1f tokens/s\nmemory: plan %.1f MiB, peak RSS above start %.1f MiB (%.1f%% of plan)\n",
               preset, (long long)seq, (long long)batch, loss, mean, best, N / mean, plan_mib, used_mib,
               100.0 * used_mib / plan_mib);
    free(tok);
    free(tgt);
    free(pos);
    free(ds);
    v3_model_free(&m);
    v3_kctx_free(&ctx);
    return 0;
}
