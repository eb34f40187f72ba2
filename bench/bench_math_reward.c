/* bench_math_reward.c — throughput of v3_math_accuracy_reward on the labelled pairs of
 * tests/golden/data/math_pairs.jsonl.zst (synthetic + real R1 completions), one thread.
 * usage: bench_math_reward [PAIRS_FILE] [N_PAIRS] [REPEATS]
 * Prints samples/s (best of REPEATS passes over the first N_PAIRS pairs) and the reward sum, which
 * bench/math_reward_py.py prints for the same pairs so run_math_reward.sh can compare them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/jsonl.h"
#include "rewards/math_verify.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : V3_SOURCE_DIR "/tests/golden/data/math_pairs.jsonl.zst";
    long want = argc > 2 ? atol(argv[2]) : 3000;
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    v3_err err = {0};
    v3_jsonl *r = NULL;
    if (v3_jsonl_open(&r, path, V3_JSONL_LINES, 0, &err) != V3_OK) {
        fprintf(stderr, "bench_math_reward: %s\n", err.msg);
        return 1;
    }
    size_t cap = 1024, n = 0;
    char **gold = malloc(cap * sizeof *gold), **comp = malloc(cap * sizeof *comp);
    for (;;) {
        v3_record rec;
        int got = 0;
        if (v3_jsonl_next(r, &rec, &got, &err) != V3_OK) { fprintf(stderr, "%s\n", err.msg); return 1; }
        if (!got || (want > 0 && (long)n >= want)) break;
        json_t *row = json_loadb(rec.text, rec.len, 0, NULL);
        if (!row) continue;
        if (n == cap) {
            cap *= 2;
            gold = realloc(gold, cap * sizeof *gold);
            comp = realloc(comp, cap * sizeof *comp);
        }
        gold[n] = strdup(json_string_value(json_object_get(row, "gold")));
        comp[n] = strdup(json_string_value(json_object_get(row, "completion")));
        n++;
        json_decref(row);
    }
    v3_jsonl_close(r);
    v3_math_opts o;
    v3_math_opts_default(&o);
    double best = 1e30, sum = 0;
    long skipped = 0;
    for (int rep = 0; rep < repeats; rep++) {
        double t0 = now_s(), s = 0;
        long sk = 0;
        for (size_t i = 0; i < n; i++) {
            v3_math_status st;
            double v = v3_math_accuracy_reward(comp[i], strlen(comp[i]), gold[i], strlen(gold[i]), &o, &st);
            if (st == V3_MATH_GOLD_UNPARSED) sk++;
            else s += v;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
        sum = s;
        skipped = sk;
    }
    printf("c:      pairs=%zu  best_of=%d  seconds=%.4f  samples_per_s=%.0f  reward_sum=%.0f  none=%ld\n", n,
           repeats, best, (double)n / best, sum, skipped);
    for (size_t i = 0; i < n; i++) { free(gold[i]); free(comp[i]); }
    free(gold);
    free(comp);
    return 0;
}
