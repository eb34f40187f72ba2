/* cmd_grpo.c — `v3tune grpo CONFIG.lua [--set key=value]... [--resume] [--quiet]`: reads the config
 * (schema "grpo", lua/config_schemas.c), maps it onto v3_grpo_opts (trainer/grpo_config.c) and runs
 * the GRPO loop (trainer/grpo.h). SIGINT/SIGTERM finish the current step, write a checkpoint and
 * stop (exit 130); --resume continues from it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lua/config.h"
#include "lua/config_schemas.h"
#include "trainer/grpo.h"

static const char *const help =
    "usage: v3tune grpo CONFIG.lua [--set key=value]... [--resume] [--quiet]\n"
    "\n"
    "GRPO on a DeepSeek-V3-family model (Hugging Face layout in model.dir). Every step samples\n"
    "rollout.group_size completions for each of rollout.prompts_per_step prompts of data.prompts with\n"
    "the rollout engine running on the policy's own weights, scores them with the Lua reward modules\n"
    "of `rewards`, computes group advantages and updates the policy grpo.mu times over\n"
    "grpo.mini_batches mini-batches (TRL's clipped loss: grpo/bnpo/dr_grpo/dapo; k3 KL to a frozen\n"
    "reference when grpo.beta > 0). Every prompt, sample, reward, advantage and logprob (sampler,\n"
    "trainer, reference) and the step metrics go to run.dir/run.db; held-out evaluations to its evals;\n"
    "checkpoints (HF layout + optimizer + state) to run.dir/step-N/.\n"
    "  v3tune samples RUN_DIR --order best    best / worst samples\n"
    "  v3tune report RUN_DIR                  charts, the reward curve per function included\n"
    "Reference: docs/grpo.md.\n"
    "\n"
    "options:\n"
    "  --set key=value   override a config key (repeatable; `v3tune config --schema grpo` lists keys)\n"
    "  --resume          continue from the latest complete checkpoint in run.dir (exact on the CPU\n"
    "                    backend: the same samples and weights as an uninterrupted run)\n"
    "  --quiet           no progress output\n"
    "Ctrl-C (SIGINT) or SIGTERM: the current step finishes, a checkpoint is written, exit 130.\n";

/* Set by SIGINT/SIGTERM and read by the training loop between steps. A signal handler can reach
 * nothing else, so this one flag is file-scope; it lives only while v3_cmd_grpo runs. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int v3_cmd_grpo(int argc, char **argv) {
    const char *cmd = "grpo";
    if (v3_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    int resume = 0, quiet = 0;
    v3_cfg cfg;
    v3_err err;
    int rc = v3_cli_load_run_config(cmd, argc, argv, &v3_cfg_schema_grpo, &cfg, &resume, &quiet);
    if (rc >= 0) return rc;

    v3_grpo_opts o;
    v3_grpo_opts_default(&o);
    v3_grpo_cfg_hold hold;
    rc = v3_grpo_opts_from_cfg(&cfg, &o, &hold, &err);
    int exit_code;
    char *json = NULL, *lua = NULL;
    if (rc) {
        exit_code = v3_cli_fail(cmd, "%s", err.msg);
    } else {
        struct sigaction sa, old_int, old_term;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        stop_requested = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        o.stop_flag = &stop_requested;
        o.resume = resume;
        o.log = quiet ? NULL : stderr;
        json = v3_cfg_to_json(&cfg, 0);
        lua = v3_cfg_to_lua(&cfg);
        o.config_json = json;
        o.config_lua = lua;
        rc = v3_grpo_run(&o, &err);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        exit_code = rc ? v3_cli_fail(cmd, "%s", err.msg) : stop_requested ? 130 : V3_EXIT_OK;
    }
    free(json);
    free(lua);
    v3_grpo_cfg_hold_free(&hold);
    v3_cfg_free(&cfg);
    return exit_code;
}
