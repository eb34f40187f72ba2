/* test_reward_builtin.c — the built-in reward scripts rewards/format.lua and rewards/tag_count.lua
 * give open-r1's verdicts (expected values computed with Python's re and str.count on the same
 * strings), and stay linear on an adversarial completion that would make a lazy Lua pattern
 * backtrack for seconds; and the v3.math binding of the C math verifier works from a script. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/host.h"
#include "testutil.h"

static const struct {
    const char *text;
    double format, tags;
} cases[] = {
    {"<think>\na\n</think>\n<answer>\nb\n</answer>", 1, 1},
    {"<think>\n\n</think>\n<answer>\n\n</answer>", 1, 1},
    {"<think>\na\n</think>\n<answer>\nb\n</answer>\ntrailing", 1, 1},
    {"<think>\na\n</think>\n<answer>\nb\n</answer>x", 0, 1},
    {"<think>\na\n</think>\n<answer>\nb\n</answer>x\n</answer>", 1, 0.75},
    {" <think>\na\n</think>\n<answer>\nb\n</answer>", 0, 1},
    {"<think>\na</think>\n<answer>\nb\n</answer>", 0, 0.75},
    {"<think>\n</think>\n<answer>\nb\n</answer>", 0, 1},
    {"<think>\nx\n</think>\n<answer>\ny\n</think>\n<answer>\nz\n</answer>", 1, 0.5},
    {"<think>\n<think>\na\n</think>\n<answer>\nb\n</answer>", 1, 0.75},
    {"plain text", 0, 0},
    {"", 0, 0},
    {"<think>\na\n</think>\n<answer>\n</answer>", 0, 1},
};
enum { NC = sizeof cases / sizeof cases[0] };

int main(void) {
    char p1[1024], p2[1024];
    v3_reward_script sc[2] = {{.path = t_source_path("rewards/format.lua", p1, sizeof p1)},
                              {.path = t_source_path("rewards/tag_count.lua", p2, sizeof p2)}};
    v3_reward_opts o = {.scripts = sc, .n_scripts = 2, .n_workers = 2, .timeout_ms = 500,
                        .fallback = -9};
    v3_reward_host *h;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return t_finish("test_reward_builtin");
    CHECK(strcmp(v3_reward_host_func(h, 0)->name, "format") == 0, "name %s", v3_reward_host_func(h, 0)->name);
    CHECK(strcmp(v3_reward_host_func(h, 1)->name, "tag_count") == 0, "name %s", v3_reward_host_func(h, 1)->name);

    /* adversarial: "<think>\n\n</think>\n<answer>\n" then 100000 × "\n</answer>x" (~1.1 MB) */
    const char *head = "<think>\n\n</think>\n<answer>\n";
    size_t hl = strlen(head), unit = strlen("\n</answer>x"), reps = 100000;
    char *adv = malloc(hl + unit * reps + 1);
    memcpy(adv, head, hl);
    for (size_t i = 0; i < reps; i++) memcpy(adv + hl + i * unit, "\n</answer>x", unit);
    adv[hl + unit * reps] = 0;

    v3_reward_sample s[NC + 1];
    memset(s, 0, sizeof s);
    for (int i = 0; i < NC; i++) s[i].completion = cases[i].text;
    s[NC].completion = adv;
    v3_reward_result r[NC + 1];
    CHECK_OK(v3_reward_host_score(h, s, NC + 1, r, &err), &err);
    for (int i = 0; i < NC; i++) {
        CHECK(r[i].values[0].status == V3_REWARD_OK && r[i].values[0].score == cases[i].format,
              "format case %d: %g (want %g) %s", i, r[i].values[0].score, cases[i].format,
              r[i].values[0].error ? r[i].values[0].error : "");
        CHECK(r[i].values[1].status == V3_REWARD_OK && r[i].values[1].score == cases[i].tags,
              "tag_count case %d: %g (want %g)", i, r[i].values[1].score, cases[i].tags);
    }
    CHECK(r[NC].values[0].status == V3_REWARD_OK && r[NC].values[0].score == 0,
          "adversarial format: status %d score %g %s (%.0f ms)", r[NC].values[0].status,
          r[NC].values[0].score, r[NC].values[0].error ? r[NC].values[0].error : "",
          r[NC].values[0].elapsed_ms);
    printf("adversarial 1.1 MB completion: format %.1f ms, tag_count %.1f ms\n",
           r[NC].values[0].elapsed_ms, r[NC].values[1].elapsed_ms);
    v3_reward_results_free(r, NC + 1);
    free(adv);
    v3_reward_host_free(h);

    /* v3.math (rewards/math_verify.h) from a script */
    char p3[1024];
    v3_reward_script ms = {.path = t_source_path("tests/rewards/math.lua", p3, sizeof p3)};
    v3_reward_opts mo = {.scripts = &ms, .n_scripts = 1, .n_workers = 1, .timeout_ms = 500};
    CHECK_OK(v3_reward_host_init(&h, &mo, &err), &err);
    if (!h) return t_finish("test_reward_builtin");
    v3_reward_sample m[2] = {{.completion = "so the answer is \\boxed{\\frac{1}{2}}", .row_json = "{\"answer\":\"0.5\"}"},
                             {.completion = "\\boxed{3}", .row_json = "{\"answer\":\"2\"}"}};
    CHECK_OK(v3_reward_host_score(h, m, 2, r, &err), &err);
    CHECK(r[0].values[0].status != V3_REWARD_SKIP, "v3.math missing in the sandbox");
    CHECK(r[0].values[0].status == V3_REWARD_OK && r[0].values[0].score == 1,
          "v3.math 1/2 vs 0.5: %g %s", r[0].values[0].score,
          r[0].values[0].error ? r[0].values[0].error : "");
    CHECK(r[1].values[0].status == V3_REWARD_OK && r[1].values[0].score == 0,
          "v3.math 3 vs 2: %g %s", r[1].values[0].score,
          r[1].values[0].error ? r[1].values[0].error : "");
    printf("v3.math: %s | %s\n", r[0].values[0].extra_json ? r[0].values[0].extra_json : "",
           r[1].values[0].extra_json ? r[1].values[0].extra_json : "");
    v3_reward_results_free(r, 2);
    v3_reward_host_free(h);
    return t_finish("test_reward_builtin");
}
