/* util.c — helpers shared by the subcommands: help detection and uniform error lines. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    const char *env = getenv("V3_TOKENIZER_DIR");
    if (env && *env) snprintf(buf, n, "%s", env);
    else snprintf(buf, n, "%s/../shared/data/deepseek-v3", V3_SOURCE_DIR);
    return buf;
}
