/* test_grpo_config.c — the GRPO options from a Lua config (schema "grpo", trainer/grpo_config.c):
 * both example configs load, map and pass the checks with the values they state; every reward
 * form maps (file name, builtin, inline source, weight, name); bad values are refused with a
 * message naming the key. */
#include <string.h>

#include "lua/config.h"
#include "lua/config_schemas.h"
#include "trainer/grpo.h"
#include "testutil.h"

static int load(const char *src, const char *const *sets, size_t n_sets, v3_cfg *cfg, v3_grpo_opts *o,
                v3_grpo_cfg_hold *h, v3_err *err) {
    int rc = v3_cfg_load_string(cfg, &v3_cfg_schema_grpo, "c.lua", src, strlen(src), sets, n_sets, NULL, err);
    if (rc) return rc;
    v3_grpo_opts_default(o);
    rc = v3_grpo_opts_from_cfg(cfg, o, h, err);
    if (!rc) rc = v3_grpo_opts_check(o, err);
    return rc;
}

static void examples(void) {
    static const char *const files[] = {"examples/grpo_tiny.lua", "examples/grpo_gsm8k.lua"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        t_source_path(files[i], path, sizeof path);
        v3_cfg cfg;
        v3_err err;
        CHECK_OK(v3_cfg_load_file(&cfg, &v3_cfg_schema_grpo, path, NULL, 0, NULL, &err), &err);
        v3_grpo_opts o;
        v3_grpo_cfg_hold h;
        v3_grpo_opts_default(&o);
        CHECK_OK(v3_grpo_opts_from_cfg(&cfg, &o, &h, &err), &err);
        CHECK_OK(v3_grpo_opts_check(&o, &err), &err);
        if (i == 0) {
            CHECK(o.n_rewards == 2 && o.rewards[0].source && !strcmp(o.rewards[0].name, "accuracy") &&
                      o.rewards[1].has_weight && o.rewards[1].weight == 0.5,
                  "grpo_tiny rewards");
            CHECK(!o.chat && o.group_size == 8 && o.prompts_per_step == 16 && o.loss.eps_high == 0.28 &&
                      o.eval_samples == 4 && o.sched.warmup == 8 && o.adamw.beta2 == 0.99f &&
                      o.pack_weights == 1,
                  "grpo_tiny values");
        } else {
            CHECK(o.n_rewards == 2 && !strcmp(o.rewards[0].builtin, "math") && !strcmp(o.rewards[1].builtin, "format"),
                  "grpo_gsm8k rewards");
            CHECK(o.chat && !strcmp(o.prompt_field, "question") && o.system_prompt && o.dynamic_sampling &&
                      o.mask_truncated && o.loss.type == V3_GRPO_LOSS_DAPO && o.n_eval == 1,
                  "grpo_gsm8k values");
        }
        v3_grpo_cfg_hold_free(&h);
        v3_cfg_free(&cfg);
    }
}

int main(void) {
    examples();
    const char *base = "return { model = { dir = 'm' }, data = { prompts = { 'p.jsonl' } }, rewards = %s }";
    static const struct {
        const char *rewards;
        const char *set, *want; /* want NULL: loads */
    } cases[] = {
        {"{ 'a.lua', { builtin = 'math', weight = 2 }, { name = 'x', source = 'return function() return 1 end' } }",
         NULL, NULL},
        {"{ { script = 'a.lua', builtin = 'math' } }", NULL, "rewards[1]: give exactly one of script, builtin, source"},
        {"{ { builtin = 'math', wieght = 2 } }", NULL, "rewards[1]: unknown key 'wieght'"},
        {"{ { source = 'return 1' } }", NULL, "rewards[1]: an inline source needs a name"},
        {"{ { builtin = 'math', weight = 'heavy' } }", NULL, "rewards[1].weight: expected a number"},
        {"{}", NULL, "rewards: 0 modules"},
        {"{ 'a.lua' }", "rollout.temperature=0", "rollout.temperature"},
        {"{ 'a.lua' }", "data.seq_len=100", "data.seq_len (100) must exceed rollout.max_new_tokens"},
        {"{ 'a.lua' }", "train.micro_batch_tokens=1000", "train.micro_batch_tokens (1000) must be >= data.seq_len"},
        {"{ 'a.lua' }", "moe.mtp_lambda=0.1", "moe.mtp_lambda"},
        {"{ 'a.lua' }", "grpo.loss_type=ppo", "grpo.loss_type"},
        {"{ 'a.lua' }", "grpo.mu=0", "grpo.mu"},
        {"{ 'a.lua' }", "rollout.dynamic_max_rounds=17", "rollout.dynamic_max_rounds"},
        {"{ 'a.lua' }", "grpo.eps_low=1.5", "grpo.eps_low"},
        {"{ 'a.lua' }", "rollout.pack_weights=3", "rollout.pack_weights"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, base, cases[i].rewards);
        const char *sets[1] = {cases[i].set};
        v3_cfg cfg = {0};
        v3_grpo_opts o;
        v3_grpo_cfg_hold h = {0};
        v3_err err = {0};
        int rc = load(src, sets, cases[i].set ? 1 : 0, &cfg, &o, &h, &err);
        if (!cases[i].want) {
            CHECK(rc == 0, "case %zu: %s", i, err.msg);
            if (!rc)
                CHECK(o.n_rewards == 3 && !strcmp(o.rewards[0].script, "a.lua") && o.rewards[1].weight == 2 &&
                          o.rewards[1].has_weight && !strcmp(o.rewards[2].name, "x"),
                      "case %zu: mapped rewards", i);
        } else {
            CHECK(rc != 0 && strstr(err.msg, cases[i].want), "case %zu: rc %d, message '%s' (want '%s')", i, rc,
                  err.msg, cases[i].want);
        }
        v3_grpo_cfg_hold_free(&h);
        v3_cfg_free(&cfg);
    }
    return t_finish("test_grpo_config");
}
