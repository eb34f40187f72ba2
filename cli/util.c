/* util.c — helpers shared by the subcommands: help detection and uniform error lines. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "datasets/tokenizer.h"
#include "lua/config.h"

int v3_cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    }
    return 0;
}

int v3_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "v3tune %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see `v3tune %s --help`)\n", cmd);
    return V3_EXIT_USAGE;
}

int v3_cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "v3tune %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return V3_EXIT_FAIL;
}

const char *v3_cli_default_tokenizer_dir(char *buf, size_t n) {
    return v3_tok_find_dir(NULL, NULL, buf, n);
}

int v3_cli_load_run_config(const char *cmd, int argc, char **argv, const v3_cfg_schema *schema,
                           v3_cfg *cfg, int *resume, int *quiet) {
    const char *file = NULL;
    *resume = *quiet = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    size_t n_sets = 0;
    if (!sets) return v3_cli_fail(cmd, "out of memory");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) *resume = 1;
        else if (!strcmp(argv[i], "--quiet")) *quiet = 1;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6)) sets[n_sets++] = argv[i] + 6;
        else if (argv[i][0] == '-' || file) {
            free(sets);
            return v3_cli_usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
        } else file = argv[i];
    }
    if (!file) {
        free(sets);
        return v3_cli_usage_error(cmd, "a CONFIG.lua is required");
    }
    v3_err err;
    int rc = v3_cfg_load_file(cfg, schema, file, sets, n_sets, NULL, &err);
    free(sets);
    if (rc) return rc == V3_EUSAGE ? v3_cli_usage_error(cmd, "%s", err.msg) : v3_cli_fail(cmd, "%s", err.msg);
    return -1;
}
