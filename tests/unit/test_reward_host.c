/* test_reward_host.c — the reward host: hostile scripts (endless loops, loops inside pcall,
 * unbounded allocation, deep recursion, huge strings, a pathological pattern stuck in C, os/io/
 * bytecode/C-module/dofile escapes, bad return values) each end within budget with a recorded error
 * and the fallback, while good samples interleaved with them are scored right and in order; a
 * worker killed from outside (busy or idle) is replaced; the sample table, `require`, module
 * options, extra fields, weights/NaN combination (TRL) and the script hash. */
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sha256.h"
#include "rewards/host.h"
#include "testutil.h"


static double ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static const char *script(const char *name, char *buf, size_t n) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/rewards/%s", name);
    return t_source_path(rel, buf, n);
}

static void test_hostile(void) {
    char path[1024];
    v3_reward_script sc = {.path = script("hostile.lua", path, sizeof path)};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 2, .timeout_ms = 200,
                        .grace_ms = 100, .max_instructions = 1000000, .mem_cap = 16u << 20,
                        .fallback = -1};
    v3_reward_host *h;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    /* bad ones with the words their error must contain */
    static const struct {
        const char *c, *want;
    } bad[] = {
        {"loop", "instruction budget"},       {"pcall_loop", "instruction budget"},
        {"alloc", "exceeded"},              {"recurse", "exceeded"},
        {"bigstr", "memory cap"},             {"rep", "memory cap"},
        {"pattern", "deadline of 200 ms exceeded (killed)"},
        {"c_recurse", "stack overflow"},     {"move", "(killed)"},
        {"gc", "__gc"},                       {"xpcall", "instruction budget"},
        {"os", "os"},                         {"io", "io"},
        {"bytecode", "binary chunk"},         {"require_c", "not found"},
        {"require_path", "invalid module name"}, {"dofile", "dofile"},
        {"badret", "bad return value"},       {"nan", "bad return value"},
        {"error", "boom"},
    };
    enum { NB = sizeof bad / sizeof bad[0] };
    /* good, bad, good, bad, ... */
    v3_reward_sample s[2 * NB + 1];
    char words[2 * NB + 1][32];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 2 * NB + 1; i++) {
        if (i % 2 == 0) snprintf(words[i], sizeof words[i], "ok%d", i);
        else snprintf(words[i], sizeof words[i], "%s", bad[i / 2].c);
        s[i].completion = words[i];
        s[i].index = i;
    }
    v3_reward_result r[2 * NB + 1];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(v3_reward_host_score(h, s, 2 * NB + 1, r, &err), &err);
    double ms = ms_since(&t0);
    printf("hostile batch of %d: %.0f ms\n", 2 * NB + 1, ms);
    CHECK(ms < 5000, "hostile batch took %.0f ms", ms);
    for (int i = 0; i < 2 * NB + 1; i++) {
        const v3_reward_value *v = &r[i].values[0];
        if (i % 2 == 0) {
            CHECK(v->status == V3_REWARD_OK && v->score == i, "sample %d (%s): status %d score %g err %s",
                  i, words[i], v->status, v->score, v->error ? v->error : "");
            CHECK(r[i].reward == i && r[i].n_scored == 1, "sample %d reward %g", i, r[i].reward);
        } else {
            const char *want = bad[i / 2].want;
            CHECK(v->status == V3_REWARD_ERROR && v->score == -1, "%s: status %d score %g", words[i],
                  v->status, v->score);
            CHECK(v->error && strstr(v->error, want), "%s: error \"%s\" lacks \"%s\"", words[i],
                  v->error ? v->error : "(none)", want);
            CHECK(v->elapsed_ms < 1000, "%s: took %.0f ms", words[i], v->elapsed_ms);
            CHECK(r[i].reward == -1 && r[i].n_errors == 1, "%s: combined %g", words[i], r[i].reward);
            printf("  %-12s -> %s (%.1f ms)\n", words[i], v->error ? v->error : "?", v->elapsed_ms);
        }
    }
    v3_reward_results_free(r, 2 * NB + 1);
    v3_reward_host_stats st;
    v3_reward_host_get_stats(h, &st);
    CHECK(st.kills == 2, "kills %lld (want 2: pattern, move)", (long long)st.kills);
    v3_reward_host_free(h);
}

/* A worker killed while busy: the sample records the crash; one killed while idle is replaced
 * without costing any sample. */
static void test_crash(void) {
    char path[1024];
    v3_reward_script sc = {.path = script("hostile.lua", path, sizeof path)};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 2, .timeout_ms = 3000,
                        .fallback = 0.5};
    v3_reward_host *h;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    int p0 = v3_reward_host_worker_pid(h, 0), p1 = v3_reward_host_worker_pid(h, 1);
    CHECK(p0 > 0 && p1 > 0, "worker pids %d %d", p0, p1);
    pid_t killer = fork();
    if (killer == 0) {
        usleep(150 * 1000);
        kill(p0, SIGKILL);
        kill(p1, SIGKILL);
        _exit(0);
    }
    /* both workers stuck in the pattern (in C) when the killer strikes */
    v3_reward_sample s[4] = {{.completion = "pattern"}, {.completion = "pattern"},
                             {.completion = "ok7"}, {.completion = "ok8"}};
    v3_reward_result r[4];
    CHECK_OK(v3_reward_host_score(h, s, 4, r, &err), &err);
    for (int i = 0; i < 2; i++)
        CHECK(r[i].values[0].status == V3_REWARD_ERROR && r[i].values[0].score == 0.5 &&
                  r[i].values[0].error && strstr(r[i].values[0].error, "signal 9"),
              "busy kill %d: status %d error %s", i, r[i].values[0].status,
              r[i].values[0].error ? r[i].values[0].error : "");
    CHECK(r[2].values[0].score == 7 && r[3].values[0].score == 8, "after crash: %g %g",
          r[2].values[0].score, r[3].values[0].score);
    v3_reward_results_free(r, 4);
    int status;
    waitpid(killer, &status, 0);
    /* idle kill */
    int q0 = v3_reward_host_worker_pid(h, 0);
    CHECK(q0 > 0 && q0 != p0, "worker 0 not replaced (%d)", q0);
    kill(q0, SIGKILL);
    usleep(50 * 1000);
    v3_reward_sample g[4] = {{.completion = "ok1"}, {.completion = "ok2"}, {.completion = "ok3"},
                             {.completion = "ok4"}};
    CHECK_OK(v3_reward_host_score(h, g, 4, r, &err), &err);
    for (int i = 0; i < 4; i++)
        CHECK(r[i].values[0].status == V3_REWARD_OK && r[i].values[0].score == i + 1,
              "idle kill: sample %d status %d score %g (%s)", i, r[i].values[0].status,
              r[i].values[0].score, r[i].values[0].error ? r[i].values[0].error : "");
    v3_reward_results_free(r, 4);
    v3_reward_host_stats st;
    v3_reward_host_get_stats(h, &st);
    CHECK(st.crashes >= 3 && st.restarts >= 3, "crashes %lld restarts %lld", (long long)st.crashes,
          (long long)st.restarts);
    v3_reward_host_free(h);
}

static void test_api(void) {
    char p1[1024], p2[1024], p3[1024], dir[1024];
    v3_reward_script sc[3] = {
        {.path = script("hostile.lua", p1, sizeof p1), .name = "hostile", .weight = 0.5, .has_weight = 1},
        {.path = script("fields.lua", p2, sizeof p2)},
        {.path = script("json.lua", p3, sizeof p3)},
    };
    const char *dirs[1] = {t_source_path("tests/rewards/lib", dir, sizeof dir)};
    v3_reward_opts o = {.scripts = sc, .n_scripts = 3, .n_workers = 3, .timeout_ms = 500,
                        .reward_dirs = dirs, .n_reward_dirs = 1, .fallback = -3};
    v3_reward_host *h;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    CHECK(v3_reward_host_n_funcs(h) == 3, "n_funcs");
    const v3_reward_func_info *f0 = v3_reward_host_func(h, 0), *f1 = v3_reward_host_func(h, 1),
                              *f2 = v3_reward_host_func(h, 2);
    CHECK(strcmp(f0->name, "hostile") == 0 && f0->weight == 0.5 && f0->fallback == -3, "f0 %s %g %g",
          f0->name, f0->weight, f0->fallback);
    CHECK(strcmp(f1->name, "fields") == 0 && f1->weight == 2 && f1->fallback == -1, "f1 %s %g %g",
          f1->name, f1->weight, f1->fallback);
    CHECK(strcmp(f2->name, "json") == 0 && f2->weight == 1, "f2 %s %g", f2->name, f2->weight);
    /* provenance: the hash of the file's bytes */
    FILE *f = fopen(p2, "rb");
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    uint8_t d[32];
    char hex[65];
    v3_sha256(buf, n, d);
    v3_sha256_hex(d, hex);
    CHECK(strcmp(hex, f1->sha256) == 0, "sha256 %s vs %s", f1->sha256, hex);

    int32_t ids[3] = {11, 12, 13};
    v3_reward_sample s[3] = {
        {.prompt = "What is 2+2?", .messages_json = "[{\"role\":\"user\",\"content\":\"2+2?\"}]",
         .completion = "ok4", .completion_ids = ids, .n_completion_ids = 3, .finish_reason = "stop",
         .row_json = "{\"answer\":\"4\",\"completion\":\"hidden\",\"x\":null}", .group = 9, .index = 1},
        {.completion = "skip"},
        {.completion = "error"},
    };
    v3_reward_result r[3];
    CHECK_OK(v3_reward_host_score(h, s, 3, r, &err), &err);
    const v3_reward_value *v = &r[0].values[1];
    CHECK(v->status == V3_REWARD_OK && v->score == 6, "fields score %g err %s", v->score,
          v->error ? v->error : "");
    const char *want[] = {"\"answer\":\"4\"", "\"row_answer\":\"4\"", "\"first_id\":11",
                          "\"n_ids\":3", "\"finish\":\"stop\"", "\"group\":9", "\"index\":1",
                          "\"role\":\"user\"", "\"prompt\":\"What is 2+2?\"", "\"absent\":true"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(v->extra_json && strstr(v->extra_json, want[i]), "extra %s lacks %s",
              v->extra_json ? v->extra_json : "(null)", want[i]);
    const v3_reward_value *j = &r[0].values[2];
    CHECK(j->status == V3_REWARD_OK && j->score == 2, "json score %g err %s", j->score,
          j->error ? j->error : "");
    CHECK(j->extra_json && strstr(j->extra_json, "\"enc\":\"{\\\"a\\\":[1,2,{\\\"b\\\":null}],\\\"c\\\":\\\"x\\\"}\"") &&
              strstr(j->extra_json, "\"bad\":true") && strstr(j->extra_json, "\"valid\":true") &&
              strstr(j->extra_json, "\"san\":\"a\xEF\xBF\xBD" "b\""),
          "json extra %s", j->extra_json ? j->extra_json : "(null)");
    /* combined: 0.5·4 + 2·6 + 1·2 = 16 */
    CHECK(fabs(r[0].reward - 16) < 1e-12 && r[0].n_scored == 3, "combined %g (n %d)", r[0].reward,
          r[0].n_scored);
    /* sample 1: hostile and fields skip (NaN, left out), json scores 2 */
    CHECK(r[1].values[0].status == V3_REWARD_SKIP && isnan(r[1].values[0].score), "skip status");
    CHECK(r[1].values[1].status == V3_REWARD_SKIP, "fields skip");
    CHECK(r[1].reward == 2 && r[1].n_scored == 1, "skip combined %g n %d", r[1].reward, r[1].n_scored);
    /* sample 2: hostile errors -> fallback -3 at weight 0.5; fields 2·10; json 2 */
    CHECK(r[2].values[0].status == V3_REWARD_ERROR && r[2].values[0].score == -3, "error fallback");
    CHECK(fabs(r[2].reward - (-1.5 + 20 + 2)) < 1e-12 && r[2].n_errors == 1, "error combined %g",
          r[2].reward);
    v3_reward_results_free(r, 3);
    v3_reward_host_free(h);
}

static void test_load_errors(void) {
    char p[1024];
    v3_err err = {0};
    v3_reward_host *h;
    v3_reward_script sc = {.path = script("syntax.lua", p, sizeof p)};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 1, .timeout_ms = 200};
    CHECK(v3_reward_host_init(&h, &o, &err) != V3_OK && h == NULL, "syntax error accepted");
    CHECK(strstr(err.msg, "syntax.lua:3:"), "syntax message: %s", err.msg);
    sc.path = script("notfn.lua", p, sizeof p);
    CHECK(v3_reward_host_init(&h, &o, &err) != V3_OK, "non-function module accepted");
    CHECK(strstr(err.msg, "must return a function"), "notfn message: %s", err.msg);
    sc.path = script("does_not_exist.lua", p, sizeof p);
    CHECK(v3_reward_host_init(&h, &o, &err) == V3_EIO, "missing file: %s", err.msg);
}

int main(void) {
    test_load_errors();
    test_api();
    test_hostile();
    test_crash();
    return t_finish("test_reward_host");
}
