/* main.c — the v3tune command: dispatch to a subcommand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const v3_command commands[] = {
    {"init", v3_cmd_init, "write a randomly initialised model (config, weights, tokenizer)"},
    {"inspect", v3_cmd_inspect, "print a model's config, parameter counts, dtypes and memory"},
    {"config", v3_cmd_config, "print a Lua run configuration after --set overrides"},
    {"tokenize", v3_cmd_tokenize, "tokenize JSONL text or chat rows from stdin"},
    {"data", v3_cmd_data, "prepare token shards from conversations (prepare), show their stats"},
    {"sft", v3_cmd_sft, "supervised fine-tuning from a Lua config (checkpoints, --resume, metrics in run.db)"},
    {"grpo", v3_cmd_grpo, "GRPO from a Lua config: rollouts, Lua rewards, policy updates (--resume, every sample in run.db)"},
    {"report", v3_cmd_report, "PNG charts (gnuplot) and an HTML page of a run's metrics"},
    {"generate", v3_cmd_generate, "sample completions with the rollout engine (JSONL or run.db)"},
    {"score", v3_cmd_score, "mean loss and perplexity of a model over token rows"},
    {"reward", v3_cmd_reward, "score JSONL rows with Lua reward scripts (sandboxed workers)"},
    {"distill", v3_cmd_distill, "R1 reasoning traces: import, verify, filter, export an SFT set"},
    {"samples", v3_cmd_samples, "show samples, rewards and advantages stored by a run"},
    {"runs", v3_cmd_runs, "list runs with status and headline metrics"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "v3tune %s — post-training for DeepSeek-V3-architecture MoE models\n\n"
            "usage: v3tune COMMAND [options]   (v3tune COMMAND --help for details)\n\ncommands:\n",
            V3_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 success, 1 runtime failure, 2 usage error\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return V3_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return V3_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("v3tune %s\n", V3_VERSION);
        return V3_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "v3tune: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return V3_EXIT_USAGE;
}
