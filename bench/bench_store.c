/* bench_store.c — run store benchmarks, plus the small fixture the CLI tests read.
 *
 *   bench_store insert [--dir D | --db FILE] [--samples N] [--tokens T] [--batch B] [--page-size P]
 *       sustained insert rate of GRPO-sized samples: T-token completions (text of ~4 bytes per
 *       token, uint32 ids, float32 sampler logprobs) plus two reward rows each, submitted in
 *       batches of B (one GRPO step's worth) as the trainer would. Reports how long submit
 *       blocked the caller (what training would wait) and the committed rate.
 *   bench_store query [--dir D] [--rows N] [--tokens T] [--reps R] [--page-size P]
 *       builds (once) a store of N samples of T tokens across steps of 1024 samples, then times
 *       the `v3tune samples` queries through the API, and the v3tune binary itself when $V3TUNE
 *       is set.
 *   bench_store fixture DIR
 *       writes DIR/run.db with a small deterministic GRPO run (tests/cli/test_samples.sh).
 *
 * D defaults to $TMPDIR (else /tmp); never point it into the source tree. Results and the
 * machine they were measured on: bench/RESULTS.md, section "Run store". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/rng.h"
#include "datasets/store.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static const char *default_dir(void) {
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static int64_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : 0;
}

#define DIE(...)                          \
    do {                                  \
        fprintf(stderr, __VA_ARGS__);     \
        fputc('\n', stderr);              \
        goto done;                        \
    } while (0)

/* Fills a batch with B samples of step `step`, each T tokens, and two rewards per sample. */
static int fill_batch(v3_store *s, v3_store_batch *b, int64_t step, int B, int T, const char *text,
                      const uint32_t *ids, const float *lp, v3_rng *rng, v3_err *err) {
    int64_t pid = 0;
    int rc = 0;
    for (int i = 0; i < B; i++) {
        if (i % 16 == 0) {
            char p[64];
            snprintf(p, sizeof p, "prompt %lld", (long long)(step * 64 + i / 16));
            if ((rc = v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = p}, &pid, err))) return rc;
        }
        double reward = v3_rng_uniform_f64(rng);
        int64_t sid = 0;
        v3_store_sample smp = {.step = step, .prompt_id = pid, .group_id = i / 16,
                               .group_index = i % 16, .completion = text, .n_tokens = T,
                               .token_ids = ids + (i % 7), .logprobs = lp + (i % 5),
                               .finish_reason = "stop", .prompt_tokens = 100,
                               .policy_version = step, .seed = (uint64_t)(step * B + i),
                               .reward = reward, .advantage = reward - 0.5};
        if ((rc = v3_store_batch_add_sample(b, &smp, &sid, err))) return rc;
        if ((rc = v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid, .name = "correct",
                 .score = reward, .weight = 1.0, .elapsed_ms = 0.1}, err)) ||
            (rc = v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid, .name = "format",
                 .score = 1.0, .weight = 0.1, .elapsed_ms = 0.05}, err)))
            return rc;
    }
    (void)s;
    return 0;
}

static int bench_insert(int argc, char **argv) {
    const char *dir = arg(argc, argv, "--dir", default_dir());
    int64_t N = atoll(arg(argc, argv, "--samples", "200000"));
    int T = atoi(arg(argc, argv, "--tokens", "1024"));
    int B = atoi(arg(argc, argv, "--batch", "1024"));
    int page = atoi(arg(argc, argv, "--page-size", "0"));
    char path[4096];
    /* --db: append a run to an existing store (kept), e.g. one grown by `query` to millions of rows */
    const char *db = arg(argc, argv, "--db", NULL);
    if (db) snprintf(path, sizeof path, "%s", db);
    else snprintf(path, sizeof path, "%s/bench_store_insert.%d.db", dir, (int)getpid());
    v3_err err = {0};
    v3_store *s = NULL;
    int rc = 1;
    uint32_t *ids = malloc((size_t)(T + 8) * sizeof *ids);
    float *lp = malloc((size_t)(T + 8) * sizeof *lp);
    char *text = malloc((size_t)4 * T + 1);
    v3_rng rng;
    v3_rng_seed(&rng, 1);
    for (int i = 0; i < T + 8; i++) {
        ids[i] = (uint32_t)v3_rng_below(&rng, 129280);
        lp[i] = -3.0f * v3_rng_uniform(&rng);
    }
    for (int i = 0; i < 4 * T; i++) text[i] = (char)('a' + v3_rng_below(&rng, 26)) ;
    for (int i = 5; i < 4 * T; i += 6) text[i] = ' ';
    text[4 * T] = 0;
    v3_store_opts o = {.page_size = page};
    double t_open = now_s();
    if (v3_store_open_opts(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &o, &err)) DIE("%s", err.msg);
    t_open = now_s() - t_open;
    int64_t run = 0;
    if (v3_store_run_begin(s, &(v3_store_run_info){.command = "bench"}, &run, &err)) DIE("%s", err.msg);
    double t0 = now_s(), blocked = 0;
    int64_t done_n = 0;
    for (int64_t step = 0; done_n < N; step++) {
        int nb = (int)(N - done_n < B ? N - done_n : B);
        v3_store_batch *b = NULL;
        if (v3_store_batch_new(s, &b, &err)) DIE("%s", err.msg);
        if (fill_batch(s, b, step, nb, T, text, ids, lp, &rng, &err)) DIE("%s", err.msg);
        double a = now_s();
        if (v3_store_submit(s, b, NULL, &err)) DIE("%s", err.msg);
        blocked += now_s() - a;
        done_n += nb;
    }
    double t_submit = now_s() - t0;
    if (v3_store_flush(s, 1, &err)) DIE("%s", err.msg);
    double t_commit = now_s() - t0;
    int64_t bytes = file_size(path);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", path);
    int64_t wal_bytes = file_size(wal);
    printf("insert: %lld samples x %d tokens (text %d B + ids %d B + logprobs %d B), batch %d, "
           "page %d\n", (long long)N, T, 4 * T, 4 * T, 4 * T, B, page ? page : 65536);
    printf("  open (and any schema upgrade of --db): %.2f s\n", t_open);
    printf("  submit (caller side, incl. copying into batches): %.2f s, %.0f samples/s; blocked "
           "in submit by back-pressure %.2f s\n", t_submit, N / t_submit, blocked);
    printf("  committed (durable flush): %.2f s -> %.0f samples/s, %.0f MB/s of payload\n", t_commit,
           N / t_commit, N * 12.0 * T / t_commit / 1e6);
    printf("  file %.1f MB + wal %.1f MB\n", bytes / 1e6, wal_bytes / 1e6);
    /* Closing copies what is left of the WAL into the database file: a sustained rate has to
     * pay for that too. */
    int close_rc = v3_store_close(s, &err);
    s = NULL;
    if (close_rc) DIE("%s", err.msg);
    double t_close = now_s() - t0;
    printf("  closed (WAL copied into the file): %.2f s -> %.0f samples/s; file %.1f MB\n", t_close,
           N / t_close, file_size(path) / 1e6);
    rc = 0;
done:
    if (v3_store_close(s, &err)) fprintf(stderr, "%s\n", err.msg);
    if (!db && !getenv("BENCH_KEEP")) {
        static const char *const side[] = {"", "-wal", "-shm", "-lock"};
        for (int i = 0; i < 4; i++) {
            snprintf(wal, sizeof wal, "%s%s", path, side[i]);
            unlink(wal);
        }
    }
    free(ids);
    free(lp);
    free(text);
    return rc;
}

static int count_row(void *ud, const v3_store_sample_row *r) {
    (void)r;
    (*(int64_t *)ud)++;
    return 0;
}

static int count_run(void *ud, const v3_store_run_summary *r) {
    *(int64_t *)ud = r->n_samples;
    return 0;
}

static int bench_query(int argc, char **argv) {
    const char *dir = arg(argc, argv, "--dir", default_dir());
    int64_t N = atoll(arg(argc, argv, "--rows", "10000000"));
    int T = atoi(arg(argc, argv, "--tokens", "16"));
    int reps = atoi(arg(argc, argv, "--reps", "5"));
    const int B = 1024;
    char path[4096];
    int page = atoi(arg(argc, argv, "--page-size", "0"));
    if (page) snprintf(path, sizeof path, "%s/bench_store_query_%lld_%d_p%d.db", dir, (long long)N, T, page);
    else snprintf(path, sizeof path, "%s/bench_store_query_%lld_%d.db", dir, (long long)N, T);
    v3_err err = {0};
    v3_store *s = NULL;
    int rc = 1;
    uint32_t *ids = malloc((size_t)(T + 8) * sizeof *ids);
    float *lp = malloc((size_t)(T + 8) * sizeof *lp);
    char *text = malloc((size_t)4 * T + 1);
    v3_rng rng;
    v3_rng_seed(&rng, 2);
    for (int i = 0; i < T + 8; i++) {
        ids[i] = (uint32_t)v3_rng_below(&rng, 129280);
        lp[i] = -3.0f * v3_rng_uniform(&rng);
    }
    memset(text, 'x', (size_t)4 * T);
    text[4 * T] = 0;
    if (file_size(path) == 0) {
        double t0 = now_s();
        v3_store_opts o = {.page_size = page};
        if (v3_store_open_opts(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &o, &err)) DIE("%s", err.msg);
        int64_t run = 0;
        if (v3_store_run_begin(s, &(v3_store_run_info){.command = "bench"}, &run, &err)) DIE("%s", err.msg);
        for (int64_t step = 0; step * B < N; step++) {
            v3_store_batch *b = NULL;
            int nb = (int)(N - step * B < B ? N - step * B : B);
            if (v3_store_batch_new(s, &b, &err)) DIE("%s", err.msg);
            if (fill_batch(s, b, step, nb, T, text, ids, lp, &rng, &err)) DIE("%s", err.msg);
            if (v3_store_batch_add_step(b, &(v3_store_step){.step = step, .loss = 1.0 / (step + 1),
                    .lr = 1e-6, .grad_norm = NAN, .tokens = (int64_t)nb * T, .step_time_s = NAN}, &err))
                DIE("%s", err.msg);
            if (v3_store_submit(s, b, NULL, &err)) DIE("%s", err.msg);
            if (step % 1000 == 999)
                fprintf(stderr, "  built %lld rows, %.0f s\n", (long long)(step + 1) * B, now_s() - t0);
        }
        if (v3_store_run_end(s, "completed", NULL, &err)) DIE("%s", err.msg);
        if (v3_store_close(s, &err)) DIE("%s", err.msg);
        s = NULL;
        printf("built %lld samples (%d tokens each) in %.1f s: %.0f samples/s, file %.2f GB\n",
               (long long)N, T, now_s() - t0, N / (now_s() - t0), file_size(path) / 1e9);
    }
    if (v3_store_open(&s, path, V3_STORE_READ, &err)) DIE("%s", err.msg);
    int64_t last_step = (N - 1) / B;
    struct {
        const char *name;
        v3_store_sample_query q;
    } cases[8];
    int nc = 0;
    v3_store_sample_query q;
#define CASE(label, ...)                       \
    do {                                       \
        q = v3_store_sample_query_all();       \
        q.limit = 20;                          \
        __VA_ARGS__;                           \
        cases[nc].name = label;                \
        cases[nc++].q = q;                     \
    } while (0)
    CASE("--limit 20 (first samples)", (void)0);
    CASE("--step MID --limit 20", q.step = last_step / 2);
    CASE("--step MID --limit 0 (1024 rows)", q.step = last_step / 2; q.limit = 0);
    CASE("--order best --limit 20", q.order = V3_STORE_ORDER_BEST);
    CASE("--order worst --limit 20", q.order = V3_STORE_ORDER_WORST);
    CASE("--order recent --limit 20", q.order = V3_STORE_ORDER_RECENT);
    CASE("--step MID --order best --limit 20", q.step = last_step / 2; q.order = V3_STORE_ORDER_BEST);
    CASE("--prompt P --min-reward 0.5", q.prompt_id = 64 * (last_step / 3) + 1; q.min_reward = 0.5);
    printf("query latency on %lld rows (%s), median of %d after one warm-up:\n", (long long)N, path,
           reps);
    for (int c = 0; c < nc; c++) {
        double best[64];
        int64_t rows = 0;
        for (int r = 0; r <= reps && r < 64; r++) {
            rows = 0;
            double a = now_s();
            if (v3_store_query_samples(s, &cases[c].q, count_row, &rows, &err)) DIE("%s", err.msg);
            best[r] = now_s() - a;
        }
        /* median of reps (index 0 is the warm-up) */
        for (int i = 1; i <= reps; i++)
            for (int j = i + 1; j <= reps; j++)
                if (best[j] < best[i]) {
                    double t = best[i];
                    best[i] = best[j];
                    best[j] = t;
                }
        printf("  %-40s %8.2f ms  (%lld rows; cold first run %.2f ms)\n", cases[c].name,
               1e3 * best[1 + reps / 2], (long long)rows, 1e3 * best[0]);
    }
    double a = now_s();
    int64_t n_samples = 0;
    if (v3_store_list_runs(s, count_run, &n_samples, &err)) DIE("%s", err.msg);
    printf("  %-40s %8.2f ms  (counts %lld samples)\n", "v3tune runs summary", 1e3 * (now_s() - a),
           (long long)n_samples);
    const char *bin = getenv("V3TUNE");
    if (bin && *bin) {
        char cmd[8192];
        const char *clis[] = {"--order best --limit 20", "--step %lld --limit 20", "--order worst --json --limit 20"};
        for (int c = 0; c < 3; c++) {
            char opts[128];
            snprintf(opts, sizeof opts, clis[c], (long long)(last_step / 2));
            snprintf(cmd, sizeof cmd, "'%s' samples '%s' %s > /dev/null", bin, path, opts);
            double t = now_s();
            int st = system(cmd);
            printf("  CLI: v3tune samples DB %-28s %8.2f ms wall (exit %d)\n", opts,
                   1e3 * (now_s() - t), st);
        }
    }
    rc = 0;
done:
    v3_store_close(s, NULL);
    free(ids);
    free(lp);
    free(text);
    return rc;
}

/* A small deterministic GRPO run: 3 steps x 2 prompts x 4 completions; reward = correct + 0.1 *
 * format; prompt "2+2" answered right by even indices. One reward script fails on one sample. */
static int fixture(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/run.db", dir);
    v3_err err = {0};
    v3_store *s = NULL;
    int rc = 1;
    if (v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err)) DIE("%s", err.msg);
    int64_t run = 0;
    if (v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo", .config = "{\"group_size\":4}",
                                                    .git_rev = "fixture"}, &run, &err))
        DIE("%s", err.msg);
    const char *qs[2] = {"What is 2+2?", "Name a prime above 10."};
    const char *fields[2] = {"{\"answer\":\"4\"}", "{\"answer\":\"11\"}"};
    for (int step = 1; step <= 3; step++) {
        v3_store_batch *b = NULL;
        if (v3_store_batch_new(s, &b, &err)) DIE("%s", err.msg);
        for (int p = 0; p < 2; p++) {
            int64_t pid = 0;
            if (v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = qs[p], .fields_json = fields[p],
                    .source_file = "prompts.jsonl", .source_line = p + 1}, &pid, &err))
                DIE("%s", err.msg);
            for (int g = 0; g < 4; g++) {
                int right = g % 2 == 0;
                char comp[128];
                snprintf(comp, sizeof comp, "<think>step %d, try %d</think>\nThe answer is %s.", step, g,
                         right ? (p ? "11" : "4") : "9");
                uint32_t ids[4] = {100u + (uint32_t)g, 200, 300, 1};
                float lp[4] = {-0.5f, -0.25f, -1.0f, -0.125f};
                double reward = (right ? 1.0 : 0.0) + 0.1 * (g != 3) + 0.01 * step;
                int64_t sid = 0;
                if (v3_store_batch_add_sample(b, &(v3_store_sample){.step = step, .prompt_id = pid,
                        .group_id = p, .group_index = g, .completion = comp, .n_tokens = 4,
                        .token_ids = ids, .logprobs = lp, .trainer_logprobs = lp,
                        .finish_reason = g == 3 ? "length" : "stop", .prompt_tokens = 9,
                        .policy_version = step - 1, .seed = (uint64_t)(1000 * step + 10 * p + g),
                        .reward = reward, .advantage = right ? 1.0 : -1.0}, &sid, &err) ||
                    v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid,
                        .name = "correctness", .score = right ? 1.0 : 0.0, .weight = 1.0,
                        .script_hash = "c0ffee", .elapsed_ms = 0.2}, &err) ||
                    v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid, .name = "format",
                        .score = g == 3 ? NAN : 1.0, .weight = 0.1,
                        .error = g == 3 ? "format.lua:7: attempt to index a nil value" : NULL,
                        .extra_json = g == 3 ? NULL : "{\"has_think\":true}", .elapsed_ms = 0.1}, &err))
                    DIE("%s", err.msg);
            }
        }
        const char *names[1] = {"reward/mean"};
        double vals[1] = {0.5 + 0.01 * step};
        if (v3_store_batch_add_step(b, &(v3_store_step){.step = step, .loss = 1.0 / step, .lr = 1e-6,
                .grad_norm = 0.5, .tokens = 32, .step_time_s = 1.5, .n_metrics = 1,
                .metric_names = names, .metric_values = vals}, &err) ||
            v3_store_submit(s, b, NULL, &err))
            DIE("%s", err.msg);
    }
    if (v3_store_run_end(s, "completed", NULL, &err)) DIE("%s", err.msg);
    rc = 0;
done:
    if (v3_store_close(s, &err) && !rc) {
        fprintf(stderr, "%s\n", err.msg);
        rc = 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "insert")) return bench_insert(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "query")) return bench_query(argc, argv);
    if (argc == 3 && !strcmp(argv[1], "fixture")) return fixture(argv[2]);
    fprintf(stderr, "usage: bench_store insert|query [options] | bench_store fixture DIR\n"
                    "(options and what is measured: the comment at the top of bench/bench_store.c)\n");
    return 2;
}
