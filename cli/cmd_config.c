/* cmd_config.c — `v3tune config`: load a Lua run configuration against a command's schema, apply
 * --set overrides and print the resolved result (Lua by default, JSON with --json).
 * Exit codes: 0 resolved; 1 the config itself is wrong (unreadable file, Lua error, budget, unknown
 * key or type mismatch in the file, missing required key); 2 command-line misuse, which includes
 * a bad --set (unknown key, unparsable value): the fix is on the command line, not in the file. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lua/config.h"
#include "lua/config_schemas.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: v3tune config FILE.lua [--schema NAME] [--set KEY=VALUE]... [--json]\n\n"
            "Evaluates FILE.lua (a Lua file returning a table) in a sandbox, checks every key\n"
            "against the schema, fills defaults, applies the overrides in order and prints the\n"
            "resolved configuration: as a commented Lua file (loadable again), or as JSON.\n\n"
            "options:\n"
            "  --schema NAME    which command's keys: ");
    for (const char *const *n = v3_cfg_schema_names(); *n; n++)
        fprintf(f, "%s%s", *n, n[1] ? ", " : " (default sft;\n");
    fprintf(f,
            "                   generic accepts any keys)\n"
            "  --set KEY=VALUE  override one key (repeatable). VALUE is read by the key's type:\n"
            "                   text, a number, true/false, a comma-separated list (a,b) or a\n"
            "                   Lua table literal ({0.9, 0.95}).\n"
            "  --json           print JSON instead of Lua\n"
            "  -h, --help       this help\n\n"
            "exit codes: 0 ok, 1 error in the config file, 2 command-line misuse (bad --set too)\n");
}

/* The value of an option given as "--opt VALUE" or "--opt=VALUE"; NULL when absent (and *i is
 * left alone), otherwise *i moves past what was consumed. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing) {
    size_t ln = strlen(name);
    if (strncmp(argv[*i], name, ln) != 0) return NULL;
    if (argv[*i][ln] == '=') return argv[*i] + ln + 1;
    if (argv[*i][ln] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int v3_cmd_config(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        usage(stdout);
        return V3_EXIT_OK;
    }
    const char *file = NULL, *schema_name = "sft";
    int json = 0;
    const char **sets = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *sets);
    size_t n_sets = 0;
    if (!sets) return v3_cli_fail("config", "out of memory");
    int rc = V3_EXIT_OK;
    for (int i = 1; i < argc && rc == V3_EXIT_OK; i++) {
        int missing = 0;
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--set", &missing))) sets[n_sets++] = v;
        else if ((v = opt_value(argc, argv, &i, "--schema", &missing))) schema_name = v;
        else if (missing) rc = v3_cli_usage_error("config", "%s needs a value", argv[i]);
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) rc = v3_cli_usage_error("config", "unknown option %s", argv[i]);
        else if (file) rc = v3_cli_usage_error("config", "one config file at a time (got %s and %s)", file, argv[i]);
        else file = argv[i];
    }
    const v3_cfg_schema *schema = NULL;
    if (rc == V3_EXIT_OK && !file) rc = v3_cli_usage_error("config", "missing the config FILE.lua");
    if (rc == V3_EXIT_OK && !(schema = v3_cfg_schema_find(schema_name)))
        rc = v3_cli_usage_error("config", "unknown schema '%s' (sft, grpo or generic)", schema_name);
    if (rc != V3_EXIT_OK) {
        free(sets);
        return rc;
    }

    v3_cfg cfg;
    v3_err err = {0};
    int st = v3_cfg_load_file(&cfg, schema, file, sets, n_sets, NULL, &err);
    free(sets);
    if (st == V3_EUSAGE) return v3_cli_usage_error("config", "%s", err.msg);
    if (st != V3_OK) return v3_cli_fail("config", "%s", err.msg);
    char *out = json ? v3_cfg_to_json(&cfg, 2) : v3_cfg_to_lua(&cfg);
    v3_cfg_free(&cfg);
    if (!out) return v3_cli_fail("config", "out of memory printing the configuration");
    fputs(out, stdout);
    free(out);
    if (fflush(stdout) != 0) return v3_cli_fail("config", "cannot write the output");
    return V3_EXIT_OK;
}
