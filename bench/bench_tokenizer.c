/* bench_tokenizer.c — encode throughput of v3_tok_encode on real text, one thread and all
 * threads (OpenMP over documents, one shared tokenizer). The corpus is every string value of
 * the R1-0528 traces (r1_traces_misguided_attention/output_queries_r10528.json) and of GSM8K
 * train (gsm8k/train.jsonl), in file order — bench/tokenizer_hf.py reads the same documents, so
 * the token totals printed by both must agree. Three corpora are timed: GSM8K alone (short
 * documents), the R1 traces alone (long documents, 1-60 KB) and both together.
 *
 * usage: bench_tokenizer [DATA_DIR] [REPEATS]   (DATA_DIR default: $V3_SHARED_DATA or
 *        ../shared/data beside the source tree; prints the best of REPEATS runs, default 3) */
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "datasets/tokenizer.h"

typedef struct docs {
    json_t *all; /* array of strings */
} docs;


static int add_file(docs *d, const char *path, int jsonl) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", path);
        return -1;
    }
    json_error_t je;
    if (!jsonl) {
        json_t *doc = json_loadf(f, 0, &je);
        fclose(f);
        if (!doc) return fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text), -1;
        v3_json_collect_strings(doc, d->all);
        json_decref(doc);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (n <= 1) continue;
        json_t *doc = json_loadb(line, (size_t)n, 0, &je);
        if (!doc) {
            fprintf(stderr, "%s: %s\n", path, je.text);
            continue;
        }
        v3_json_collect_strings(doc, d->all);
        json_decref(doc);
    }
    free(line);
    fclose(f);
    return 0;
}

static double run(const v3_tokenizer *tok, json_t *all, int threads, long long *tokens) {
    size_t n = json_array_size(all);
    long long total = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        v3_tok_ids ids = {0};
        v3_err err = {0};
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(all, i);
            ids.n = 0;
            if (v3_tok_encode(tok, json_string_value(s), json_string_length(s), 0, &ids, &err) == 0)
                total += (long long)ids.n;
        }
        v3_tok_ids_free(&ids);
    }
    double dt = omp_get_wtime() - t0;
    *tokens = total;
    return dt;
}

static void bench(const v3_tokenizer *tok, const char *name, json_t *all, int repeats) {
    size_t bytes = 0;
    for (size_t i = 0; i < json_array_size(all); i++) bytes += json_string_length(json_array_get(all, i));
    int maxt = omp_get_max_threads();
    printf("corpus %s: %zu documents, %.2f MB\n", name, json_array_size(all), bytes / 1e6);
    int tcounts[2] = {1, maxt};
    for (int k = 0; k < (maxt > 1 ? 2 : 1); k++) {
        double best = 1e30, first = 0;
        long long toks = 0;
        for (int r = 0; r < repeats; r++) {
            double dt = run(tok, all, tcounts[k], &toks);
            if (r == 0) first = dt;
            if (dt < best) best = dt;
        }
        printf("  v3tune threads=%d: best %.3f s (first %.3f s)  %.2f MB/s  %.0f tokens/s  tokens=%lld\n",
               tcounts[k], best, first, bytes / 1e6 / best, toks / best, toks);
    }
}

int main(int argc, char **argv) {
    char data[4096], path[4600];
    const char *env = getenv("V3_SHARED_DATA");
    if (argc > 1) snprintf(data, sizeof data, "%s", argv[1]);
    else if (env) snprintf(data, sizeof data, "%s", env);
    else snprintf(data, sizeof data, "%s/../shared/data", V3_SOURCE_DIR);
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    if (repeats < 1) repeats = 1;

    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    snprintf(path, sizeof path, "%s/deepseek-v3", data);
    double tl = omp_get_wtime();
    if (v3_tok_load(&tok, path, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    printf("tokenizer load %.2f s\n", omp_get_wtime() - tl);
    docs r1 = {.all = json_array()}, gsm = {.all = json_array()};
    snprintf(path, sizeof path, "%s/r1_traces_misguided_attention/output_queries_r10528.json", data);
    if (add_file(&r1, path, 0)) return 1;
    snprintf(path, sizeof path, "%s/gsm8k/train.jsonl", data);
    if (add_file(&gsm, path, 1)) return 1;
    json_t *all = json_array();
    json_array_extend(all, r1.all);
    json_array_extend(all, gsm.all);
    /* short documents, long documents, and both (each corpus starts with a cold word cache
     * only for the first corpus; "first" times include cache warm-up) */
    bench(tok, "gsm8k (short docs)", gsm.all, repeats);
    bench(tok, "r1 (long docs)", r1.all, repeats);
    bench(tok, "all", all, repeats);
    json_decref(all);
    json_decref(r1.all);
    json_decref(gsm.all);
    v3_tok_free(tok);
    return 0;
}
