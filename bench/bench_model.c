/* bench_model.c — forward+backward throughput of the model on a backend (CPU by default), and its
 * memory: the planned bytes (params + grads + activation arena) against the measured peak RSS, or
 * on a device the device memory in use (cudaMemGetInfo) above what it was before the model.
 *
 *   bench_model --preset small --seq 2048 [--batch 1] [--steps 3] [--threads N]
 *               [--recompute none|all|K] [--loss-chunk T] [--prompt F] [--separate] [--json] [--profile]
 *   bench_model --preset small --config-out config.json     (writes the preset's config.json)
 *   bench_model --preset small --seq 2048 --steps 0          (prints the memory plan only)
 *   bench_model --preset medium --seq 4096 --device cuda --math bf16 --adamw --fit --json
 *
 * --math picks the device's arithmetic (kernels.h V3_MATH_*; default fp32, the exact mode; the
 * CPU is always fp32). --device cuda runs on the CUDA backend (exit 77, "skipped", when the build or the machine has
 * none); --adamw adds the trainer's optimizer step (gradient norm, clip at 1, AdamW; its fp32
 * m and v are added to the plan) to the timed step; --fit halves the sequence until the model
 * (and the optimizer state) can be allocated, saying so, instead of failing. With --json the
 * memory plan goes to stderr, so stdout stays one JSON line.
 *
 * Weights are random (normal, std = initializer_range; norms 1) and written through a small host
 * buffer, so no full host copy of the parameters inflates the RSS. A batch is `batch` sequences
 * of `seq` tokens packed into one flat batch (document boundaries between them); --prompt F
 * ignores the targets of the first F·seq tokens of each sequence, as a chat template's loss mask
 * does with the prompt. The timed step is the trainer's (v3_model_forward_backward); --separate
 * times v3_model_forward then v3_model_backward instead (the head GEMM once more). The RSS figure
 * is the process's peak (getrusage) minus its RSS before the model was created. --profile times
 * the main ops through a wrapped copy of the op table (and prints GFLOP/s of the GEMMs); on a
 * device every clock reading waits for the device first, so those are device times too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef V3_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "common/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "trainer/optim.h"

/* Set when the backend is a device: its ops are asynchronous, so reading the clock first waits
 * for the device, which makes the step times and the --profile op times the device's. */
static v3_kctx *sync_ctx;

/* CPU time of the process (all threads): on a shared machine it moves much less than the wall
 * clock with other jobs' load, since a descheduled thread does not count. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void) {
    if (sync_ctx) sync_ctx->be->sync(sync_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --profile: a copy of the CPU table whose main ops are wrapped with timers (bench-only state) */
enum { P_GEMM_NN, P_GEMM_NT, P_GEMM_TN, P_GROUPED, P_ATT_F, P_ATT_B, P_CE, P_ROUTER, P_NORM, P_ROWS,
       P_SWIGLU, P_COPY3D, P_OTHER_N };
static const char *const prof_name[] = {"gemm x·W (NN)", "gemm x·Wᵀ (NT)", "gemm dW += dyᵀ·x (TN)",
                                        "gemm_grouped (experts)", "attention_fwd", "attention_bwd",
                                        "cross_entropy", "router fwd/bwd", "rmsnorm fwd/bwd",
                                        "gather/scatter/combine", "swiglu fwd/bwd", "copy_3d"};
static double prof_s[P_OTHER_N];
static double prof_flop[P_OTHER_N];
static const v3_backend *prof_base;

static void w_gemm(v3_kctx *c, int tA, int tB, int64_t M, int64_t N, int64_t K, float al, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float be, float *C, int64_t ldc) {
    double t = now();
    prof_base->gemm(c, tA, tB, M, N, K, al, A, lda, B, ldb, be, C, ldc);
    int k = tA ? P_GEMM_TN : tB ? P_GEMM_NT : P_GEMM_NN;
    prof_s[k] += now() - t;
    prof_flop[k] += 2.0 * M * N * K;
}
static void w_grouped(v3_kctx *c, int tA, int tB, float al, float be, int n, const v3_gemm_desc *d) {
    double t = now();
    prof_base->gemm_grouped(c, tA, tB, al, be, n, d);
    prof_s[P_GROUPED] += now() - t;
    for (int i = 0; i < n; i++) prof_flop[P_GROUPED] += 2.0 * d[i].M * d[i].N * d[i].K;
}
static void w_att_f(v3_kctx *c, const v3_attn_params *p) {
    double t = now();
    prof_base->attention_fwd(c, p);
    prof_s[P_ATT_F] += now() - t;
}
static void w_att_b(v3_kctx *c, const v3_attn_params *p) {
    double t = now();
    prof_base->attention_bwd(c, p);
    prof_s[P_ATT_B] += now() - t;
}
static void w_ce(v3_kctx *c, float *l, int64_t ld, float *loss, const int32_t *tg, int64_t T, int64_t V, float g) {
    double t = now();
    prof_base->cross_entropy(c, l, ld, loss, tg, T, V, g);
    prof_s[P_CE] += now() - t;
}
static void w_rf(v3_kctx *c, const v3_router_params *p) {
    double t = now();
    prof_base->router_fwd(c, p);
    prof_s[P_ROUTER] += now() - t;
}
static void w_rb(v3_kctx *c, const v3_router_params *p) {
    double t = now();
    prof_base->router_bwd(c, p);
    prof_s[P_ROUTER] += now() - t;
}
static void w_nf(v3_kctx *c, float *o, int64_t ldo, float *r, const float *x, int64_t ldx, const float *w,
                 int64_t T, int64_t C, float eps) {
    double t = now();
    prof_base->rmsnorm_fwd(c, o, ldo, r, x, ldx, w, T, C, eps);
    prof_s[P_NORM] += now() - t;
}
static void w_gather(v3_kctx *c, float *d, const float *s, const int32_t *i, int64_t R, int64_t C) {
    double t = now();
    prof_base->gather_rows(c, d, s, i, R, C);
    prof_s[P_ROWS] += now() - t;
}
static void w_scatter(v3_kctx *c, float *d, const float *s, const int32_t *i, int64_t R, int64_t C) {
    double t = now();
    prof_base->scatter_add_rows(c, d, s, i, R, C);
    prof_s[P_ROWS] += now() - t;
}
static void w_scatter_set(v3_kctx *c, float *d, const float *s, const int32_t *i, int64_t R, int64_t C) {
    double t = now();
    prof_base->scatter_rows(c, d, s, i, R, C);
    prof_s[P_ROWS] += now() - t;
}
static void w_cf(v3_kctx *c, float *y, const float *yp, const int32_t *ro, const float *w, int64_t T,
                 int64_t K, int64_t C) {
    double t = now();
    prof_base->moe_combine_fwd(c, y, yp, ro, w, T, K, C);
    prof_s[P_ROWS] += now() - t;
}
static void w_cb(v3_kctx *c, float *dyp, float *dw, const float *dy, const float *yp, const int32_t *ro,
                 const float *w, int64_t T, int64_t K, int64_t C) {
    double t = now();
    prof_base->moe_combine_bwd(c, dyp, dw, dy, yp, ro, w, T, K, C);
    prof_s[P_ROWS] += now() - t;
}
static void w_sf(v3_kctx *c, float *o, const float *in, int64_t ld, int64_t uo, int64_t r, int64_t n) {
    double t = now();
    prof_base->swiglu_fwd(c, o, in, ld, uo, r, n);
    prof_s[P_SWIGLU] += now() - t;
}
static void w_sb(v3_kctx *c, float *di, const float *d, const float *in, int64_t ld, int64_t uo, int64_t r,
                 int64_t n) {
    double t = now();
    prof_base->swiglu_bwd(c, di, d, in, ld, uo, r, n);
    prof_s[P_SWIGLU] += now() - t;
}
static void w_c3(v3_kctx *c, float *d, int64_t d0, int64_t d1, const float *s, int64_t s0, int64_t s1,
                 int64_t n0, int64_t n1, int64_t n2, int acc) {
    double t = now();
    prof_base->copy_3d(c, d, d0, d1, s, s0, s1, n0, n1, n2, acc);
    prof_s[P_COPY3D] += now() - t;
}
static void w_nb(v3_kctx *c, float *dx, int64_t lddx, float *dw, const float *d, int64_t ldd, const float *x,
                 int64_t ldx, const float *w, const float *r, int64_t T, int64_t C, int acc) {
    double t = now();
    prof_base->rmsnorm_bwd(c, dx, lddx, dw, d, ldd, x, ldx, w, r, T, C, acc);
    prof_s[P_NORM] += now() - t;
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

/* Device memory in use (MiB, cudaMemGetInfo), or -1 on the CPU backend. */
static double device_used_mib(const v3_kctx *ctx) {
#ifdef V3_HAVE_CUDA
    size_t free_b = 0, total_b = 0;
    if (strcmp(ctx->be->name, "cpu") && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        return (double)(total_b - free_b) / 1048576.0;
#endif
    (void)ctx;
    return -1.0;
}

/* On a device the parameters of a large preset would take a minute of single-threaded normal
 * draws (1.8G for medium); there a pool of 4M draws is reused at pseudo-random offsets, which
 * keeps what the timing depends on (the scale of activations, the spread of the routing). */
static void random_weights(v3_model *m, uint64_t seed) {
    v3_rng r;
    v3_rng_seed(&r, seed);
    enum { CH = 1 << 16, POOL = 1 << 22 };
    int pooled = strcmp(m->ctx->be->name, "cpu") != 0;
    float *buf = malloc(CH * sizeof(float)), *pool = pooled ? malloc(POOL * sizeof(float)) : NULL;
    for (int64_t j = 0; pooled && j < POOL; j++) pool[j] = v3_rng_normal(&r);
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        for (int64_t o = 0; o < p->numel; o += CH) {
            int64_t n = p->numel - o < CH ? p->numel - o : CH;
            const float *z = pooled ? pool + v3_rng_below(&r, POOL - CH) : NULL;
            for (int64_t j = 0; j < n; j++)
                buf[j] = p->kind == V3_PK_NORM ? 1.0f
                         : p->kind == V3_PK_BIAS ? 0.0f
                                                 : (float)m->cfg.initializer_range *
                                                       (z ? z[j] : v3_rng_normal(&r));
            m->ctx->be->to_device(m->ctx, m->params + p->offset + o, buf, (size_t)n * sizeof(float));
        }
    }
    free(buf);
    free(pool);
}

int main(int argc, char **argv) {
    const char *preset = "tiny", *recompute = "none", *config_out = NULL, *device = "cpu";
    const char *math_name = "fp32";
    int64_t seq = 256, batch = 1, loss_chunk = 0;
    int steps = 3, threads = 0, json = 0, profile = 0, separate = 0, adamw = 0, fit = 0;
    double prompt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) seq = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--recompute") && i + 1 < argc) recompute = argv[++i];
        else if (!strcmp(argv[i], "--loss-chunk") && i + 1 < argc) loss_chunk = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atof(argv[++i]);
        else if (!strcmp(argv[i], "--separate")) separate = 1;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--math") && i + 1 < argc) math_name = argv[++i];
        else if (!strcmp(argv[i], "--adamw")) adamw = 1;
        else if (!strcmp(argv[i], "--fit")) fit = 1;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--config-out") && i + 1 < argc) config_out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_model --preset NAME --seq T [--batch B] [--steps S] "
                            "[--threads N] [--recompute none|all|K] [--loss-chunk T] [--prompt F] [--separate] [--json] "
                            "[--profile] [--device cpu|cuda] [--math fp32|tf32|bf16] [--adamw] [--fit]\n");
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
    const v3_backend *be = v3_backend_by_name(device);
    if (!be && !strcmp(device, "cuda")) {
        printf("skipped: this build has no CUDA backend\n");
        return 77;
    }
    if (!be) {
        fprintf(stderr, "bench_model: unknown device \"%s\" (cpu, cuda)\n", device);
        return 2;
    }
    if (v3_kctx_init(&ctx, be, threads, &err)) {
        if (be == v3_backend_cpu()) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    if (be != v3_backend_cpu()) sync_ctx = &ctx;
    if (v3_math_by_name(math_name) < 0) {
        fprintf(stderr, "bench_model: unknown --math \"%s\" (fp32, tf32, bf16)\n", math_name);
        return 2;
    }
    if (be != v3_backend_cpu()) ctx.math = v3_math_by_name(math_name); /* the CPU is fp32 */
    v3_backend prof_be;
    if (profile) {
        prof_base = ctx.be;
        prof_be = *ctx.be;
        prof_be.gemm = w_gemm;
        prof_be.gemm_grouped = w_grouped;
        prof_be.attention_fwd = w_att_f;
        prof_be.attention_bwd = w_att_b;
        prof_be.cross_entropy = w_ce;
        prof_be.router_fwd = w_rf;
        prof_be.router_bwd = w_rb;
        prof_be.rmsnorm_fwd = w_nf;
        prof_be.rmsnorm_bwd = w_nb;
        prof_be.gather_rows = w_gather;
        prof_be.scatter_add_rows = w_scatter;
        prof_be.scatter_rows = w_scatter_set;
        prof_be.moe_combine_fwd = w_cf;
        prof_be.moe_combine_bwd = w_cb;
        prof_be.swiglu_fwd = w_sf;
        prof_be.swiglu_bwd = w_sb;
        prof_be.copy_3d = w_c3;
        ctx.be = &prof_be;
    }
    int64_t N = seq * batch;
    unsigned char re[256] = {0};
    int n_re = !strcmp(recompute, "all") ? cfg.n_layer : !strcmp(recompute, "none") ? 0 : atoi(recompute);
    for (int l = 0; l < n_re && l < 256; l++) re[l] = 1;
    v3_model_options o = v3_model_default_options();
    o.recompute = re;
    o.loss_chunk = loss_chunk;

    long rss0 = rss_kb();
    double dev0 = device_used_mib(&ctx), dev_peak = dev0;
    v3_model m;
    v3_optim opt = {0};
    v3_adamw_opts aw = v3_adamw_default_opts();
    for (;;) { /* --fit: halve the sequence until model and optimizer state can be allocated */
        int rc = v3_model_init(&m, &cfg, &ctx, N, &o, &err);
        if (!rc && adamw && (rc = v3_optim_init(&opt, &ctx, &m.table, &aw, &err))) v3_model_free(&m);
        if (!rc) break;
        if (!fit || err.code != V3_ENOMEM || seq < 256) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        fprintf(stderr, "bench_model: %s at seq %lld does not fit on %s (%s); trying seq %lld\n", preset,
                (long long)seq, device, err.msg, (long long)(seq / 2));
        seq /= 2;
        N = seq * batch;
    }
    FILE *plan = json ? stderr : stdout;
    v3_model_print_memory(&m, plan);
    double opt_mib = adamw ? 2.0 * (double)m.table.total * sizeof(float) / 1048576.0 : 0.0;
    if (adamw) fprintf(plan, "optimizer state (AdamW m, v)    %10.2f MiB\n", opt_mib);
    if (steps <= 0) { /* --steps 0: the plan only */
        v3_optim_free(&opt);
        v3_model_free(&m);
        v3_kctx_free(&ctx);
        return 0;
    }
    random_weights(&m, 1234);

    int32_t *tok = malloc((size_t)N * 4), *tgt = malloc((size_t)N * 4), *pos = malloc((size_t)N * 4),
            *ds = malloc((size_t)N * 4);
    v3_rng r;
    v3_rng_seed(&r, 99);
    for (int64_t t = 0; t < N; t++) tok[t] = (int32_t)v3_rng_below(&r, (uint64_t)cfg.vocab_size);
    int64_t n_prompt = (int64_t)(prompt * (double)seq);
    for (int64_t t = 0; t < N; t++) {
        int64_t b = t / seq, i = t % seq;
        tgt[t] = i + 1 < seq && i >= n_prompt ? tok[t + 1] : -100;
        pos[t] = (int32_t)i;
        ds[t] = (int32_t)(b * seq);
    }
    v3_batch bt = {N, tok, tgt, pos, ds, NULL, NULL, NULL, 0.0f, NULL};
    double best = 1e30, total = 0, loss = 0, zero_s = 0, cpu_total = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 is a warm-up */
        double t0 = now(), c0 = cpu_now();
        v3_model_zero_grad(&m);
        zero_s += now() - t0;
        int rc = separate ? v3_model_forward(&m, &bt, &loss, &err) || v3_model_backward(&m, &err)
                          : v3_model_forward_backward(&m, &bt, &loss, &err);
        if (!rc && adamw) {
            double gnorm = v3_optim_grad_norm(&opt, m.grads);
            v3_optim_step(&opt, m.params, m.grads, 1e-5f, v3_clip_coef(gnorm, 1.0));
            rc = v3k_check(&ctx, &err);
        }
        if (rc) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double dt = now() - t0;
        double dev = device_used_mib(&ctx);
        if (dev > dev_peak) dev_peak = dev;
        if (s > 0) {
            total += dt;
            cpu_total += cpu_now() - c0;
            if (dt < best) best = dt;
        }
    }
    double mean = total / steps;
    if (profile) {
        double sum = 0;
        printf("time per op over %d steps (+1 warm-up), per step:\n", steps);
        for (int k = 0; k < P_OTHER_N; k++) {
            sum += prof_s[k];
            printf("  %-26s %8.3f s", prof_name[k], prof_s[k] / (steps + 1));
            if (prof_flop[k] > 0) printf("  %7.2f GFLOP/s", prof_flop[k] / prof_s[k] * 1e-9);
            printf("\n");
        }
        printf("  %-26s %8.3f s\n", "zero_grad (memset)", zero_s / (steps + 1));
        printf("  %-26s %8.3f s (step time minus the above, warm-up included in the averages)\n",
               "everything else", total / steps - (sum + zero_s) / (steps + 1));
    }
    long peak = peak_rss_kb();
    double plan_mib = (double)v3_model_device_bytes(&m) / 1048576.0 + opt_mib;
    char dev_used[32] = "null";
    if (dev0 >= 0) snprintf(dev_used, sizeof dev_used, "%.1f", dev_peak - dev0);
    double used_mib = (double)(peak - rss0) / 1024.0;
    if (json)
        printf("{\"impl\": \"v3tune\", \"preset\": \"%s\", \"seq\": %lld, \"batch\": %lld, \"threads\": %d, "
               "\"recompute_layers\": %d, \"prompt\": %.3f, \"fused\": %d, \"loss\": %.6f, "
               "\"step_s\": %.4f, \"best_s\": %.4f, \"cpu_s\": %.4f, \"tokens_per_s\": %.1f, "
               "\"plan_mib\": %.1f, \"arena_mib\": %.1f, \"peak_rss_mib\": %.1f, "
               "\"rss_over_plan\": %.4f, \"device\": \"%s\", \"math\": \"%s\", \"adamw\": %d, \"device_used_mib\": %s}\n",
               preset, (long long)seq, (long long)batch, threads, n_re, prompt, !separate, loss, mean,
               best, cpu_total / steps, N / mean, plan_mib, m.arena.planned / 1048576.0, used_mib,
               used_mib / plan_mib, device, v3_math_name(ctx.math), adamw, dev_used);
    else if (dev0 < 0)
        printf("v3tune cpu: %s seq %lld batch %lld%s: loss %.4f, %s%s %.3f s/step (best %.3f), "
               "%.1f tokens/s\nmemory: plan %.1f MiB, peak RSS above start %.1f MiB (%.1f%% of plan)\n",
               preset, (long long)seq, (long long)batch, n_prompt ? " (prompt targets ignored)" : "",
               loss, separate ? "fwd, bwd" : "fwd+bwd", adamw ? "+adamw" : "", mean, best, N / mean,
               plan_mib, used_mib, 100.0 * used_mib / plan_mib);
    else
        printf("v3tune %s: %s seq %lld batch %lld%s: loss %.4f, %s%s %.3f s/step (best %.3f), "
               "%.1f tokens/s\nmemory: plan %.1f MiB, device memory in use above start %.1f MiB "
               "(%.1f%% of plan)\n",
               device, preset, (long long)seq, (long long)batch,
               n_prompt ? " (prompt targets ignored)" : "", loss, separate ? "fwd, bwd" : "fwd+bwd",
               adamw ? "+adamw" : "", mean, best, N / mean, plan_mib, dev_peak - dev0,
               100.0 * (dev_peak - dev0) / plan_mib);
    free(tok);
    free(tgt);
    free(pos);
    free(ds);
    v3_optim_free(&opt);
    v3_model_free(&m);
    v3_kctx_free(&ctx);
    return 0;
}
