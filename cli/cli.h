/* cli.h — the v3tune subcommands and the small helpers they share.
 * Each subcommand is `int v3_cmd_<name>(int argc, char **argv)` in cli/cmd_<name>.c, with argv[0]
 * the subcommand name. It returns the process exit code: 0 ok, 1 runtime failure, 2 usage error.
 * Only main() calls exit(). */
#ifndef V3_CLI_H
#define V3_CLI_H

#include <stdio.h>

#define V3_EXIT_OK 0
#define V3_EXIT_FAIL 1
#define V3_EXIT_USAGE 2

typedef struct v3_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} v3_command;

int v3_cmd_init(int argc, char **argv);
int v3_cmd_inspect(int argc, char **argv);
int v3_cmd_config(int argc, char **argv);
int v3_cmd_tokenize(int argc, char **argv);
int v3_cmd_score(int argc, char **argv);
int v3_cmd_generate(int argc, char **argv);
int v3_cmd_samples(int argc, char **argv);
int v3_cmd_runs(int argc, char **argv);
int v3_cmd_data(int argc, char **argv);
int v3_cmd_reward(int argc, char **argv);
int v3_cmd_sft(int argc, char **argv);
int v3_cmd_grpo(int argc, char **argv);
int v3_cmd_report(int argc, char **argv);
int v3_cmd_distill(int argc, char **argv);

/* True when argv holds -h or --help. */
int v3_cli_wants_help(int argc, char **argv);
/* Prints "v3tune NAME: message" and the hint to use --help; returns V3_EXIT_USAGE. */
int v3_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "v3tune NAME: error: message" for a runtime failure; returns V3_EXIT_FAIL. */
int v3_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct v3_cfg;
struct v3_cfg_schema;
/* The arguments of a trainer command, `v3tune CMD CONFIG.lua [--set key=value]... [--resume]
 * [--quiet]`: parses them and loads the config under schema into *cfg. Returns -1 when *cfg is
 * loaded, else the exit code to return (the message is printed). */
int v3_cli_load_run_config(const char *cmd, int argc, char **argv,
                           const struct v3_cfg_schema *schema, struct v3_cfg *cfg, int *resume,
                           int *quiet);
/* Directory holding the DeepSeek-V3 tokenizer files: $V3_TOKENIZER_DIR, else the shared data
 * folder beside the source tree. */
const char *v3_cli_default_tokenizer_dir(char *buf, size_t n);

#endif
