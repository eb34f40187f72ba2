/* test_sft_guard.c — the trainer's small parts without a model: the step guard (NaN/Inf skip,
 * outlier z-score, stop after N bad steps in a row), the trainer state file (exact round trip,
 * version check) and checkpoint discovery/pruning (only complete step-N dirs count; *.tmp dirs
 * and the oldest beyond `keep` are removed). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "testutil.h"
#include "trainer/ckpt.h"
#include "trainer/guard.h"

static void test_guard(void) {
    v3_guard g;
    v3_err err;
    int stop;
    v3_guard_init(&g, 3.0, 8, 3);
    for (int i = 0; i < 8; i++)
        CHECK(v3_guard_check(&g, i + 1, 2.0 + 0.01 * (i % 3), 1.0 + 0.01 * (i % 2), &stop, &err) == V3_GUARD_OK,
              "normal step %d", i);
    CHECK(v3_guard_check(&g, 9, NAN, 1.0, &stop, &err) == V3_GUARD_NONFINITE && !stop, "NaN loss skipped");
    CHECK(v3_guard_check(&g, 10, 2.0, INFINITY, &stop, &err) == V3_GUARD_NONFINITE && !stop, "Inf norm skipped");
    CHECK(v3_guard_check(&g, 11, 9.0, 1.0, &stop, &err) == V3_GUARD_OUTLIER && stop, "third bad step stops");
    CHECK(strstr(err.msg, "3 bad steps in a row") != NULL, "stop message: %s", err.msg);
    CHECK(g.skipped == 3, "skipped count %lld", (long long)g.skipped);
    CHECK(v3_guard_check(&g, 12, 1.5, 1.0, &stop, &err) == V3_GUARD_OK && g.bad_in_row == 0,
          "a low loss is no outlier; a good step resets the run of bad ones");
    v3_guard_init(&g, 0.0, 8, 0);
    for (int i = 0; i < 8; i++) v3_guard_check(&g, i, 2.0 + 0.01 * i, 1.0, &stop, &err);
    CHECK(v3_guard_check(&g, 9, 1e6, 1.0, &stop, &err) == V3_GUARD_OK, "outlier check off when z_max = 0");
}

static void test_state_and_prune(void) {
    char tmp[1024], p[1400];
    v3_err err;
    t_tmpdir(tmp, sizeof tmp);
    v3_train_state a, b;
    memset(&a, 0, sizeof a);
    a.step = 42;
    a.tokens = 123456789012LL;
    a.cursor = (v3_pack_cursor){.seed = 0xFFFFFFFFFFFFFFF1ULL, .epoch = 3, .next = 17};
    v3_rng_seed(&a.rng, 5);
    v3_guard_init(&a.guard, 3, 8, 5);
    int stop;
    for (int i = 0; i < 5; i++) v3_guard_check(&a.guard, i, 1.0 / 3.0 + i, M_PI * i, &stop, &err);
    snprintf(p, sizeof p, "%s/state.json", tmp);
    CHECK_OK(v3_train_state_save(&a, p, &err), &err);
    memset(&b, 0, sizeof b);
    CHECK_OK(v3_train_state_load(&b, p, &err), &err);
    CHECK(b.step == 42 && b.tokens == a.tokens && !memcmp(&b.cursor, &a.cursor, sizeof a.cursor) &&
              !memcmp(&b.rng, &a.rng, sizeof a.rng),
          "state round trip");
    CHECK(b.guard.n == 5 && b.guard.head == 5 && !memcmp(b.guard.loss, a.guard.loss, 5 * sizeof(double)) &&
              !memcmp(b.guard.gnorm, a.guard.gnorm, 5 * sizeof(double)),
          "guard window round trip is exact");
    FILE *f = fopen(p, "w");
    fputs("{\"version\": 99}", f);
    fclose(f);
    CHECK(v3_train_state_load(&b, p, &err) == V3_EUNSUPPORTED, "future version rejected");
    remove(p);

    /* step-2, 4, 6, 8 complete; step-9 without its state file; step-10.tmp half written */
    int steps[] = {2, 4, 6, 8, 9};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/step-%d", tmp, steps[i]);
        v3_mkdirs(p, &err);
        if (steps[i] == 9) continue;
        snprintf(p, sizeof p, "%s/step-%d/trainer_state.json", tmp, steps[i]);
        f = fopen(p, "w");
        fputs("{}", f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/step-10.tmp/x", tmp);
    v3_mkdirs(p, &err);
    int64_t step = -1;
    char lp[1400];
    CHECK_OK(v3_ckpt_latest(tmp, &step, lp, sizeof lp, &err), &err);
    CHECK(step == 8, "latest complete checkpoint is step-8, got %lld", (long long)step);
    CHECK_OK(v3_ckpt_prune(tmp, 2, &err), &err);
    const int want[] = {0, 0, 1, 1, 1}; /* 2, 4 pruned; 6, 8 kept; 9 (incomplete) left alone */
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/step-%d", tmp, steps[i]);
        CHECK(v3_dir_exists(p) == want[i], "step-%d exists=%d", steps[i], v3_dir_exists(p));
    }
    snprintf(p, sizeof p, "%s/step-10.tmp", tmp);
    CHECK(!v3_dir_exists(p), "stale tmp dir removed");
    CHECK_OK(v3_rmtree(tmp, &err), &err);
    CHECK(!v3_dir_exists(tmp), "rmtree");
}

int main(void) {
    test_guard();
    test_state_and_prune();
    return t_finish("test_sft_guard");
}
