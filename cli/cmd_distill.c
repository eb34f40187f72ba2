/* cmd_distill.c — `v3tune distill import|verify|filter|export|generate`: distilling reasoning
 * from DeepSeek-R1 outputs through the run store (datasets/distill.h, docs/distill.md). This file
 * only reads the command line and the config and prints summaries; the work is in datasets/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/fs.h"
#include "datasets/distill.h"
#include "datasets/distill_config.h"

#define CMD "distill"

static const char *const HELP =
    "usage: v3tune distill import FILE... --db RUN_DIR [--config F.lua] [options]\n"
    "       v3tune distill verify --db RUN_DIR [--script F.lua[:WEIGHT]]... [--jobs N] [options]\n"
    "       v3tune distill filter --db RUN_DIR --config F.lua [options]\n"
    "       v3tune distill export --db RUN_DIR --out FILE.jsonl [--form r1|original] [options]\n"
    "       v3tune distill generate ...   (not available yet)\n"
    "\n"
    "Distils reasoning from DeepSeek-R1 outputs: import them into RUN_DIR/run.db, verify them with\n"
    "Lua reward scripts, filter them by rules (rejection sampling) and export an SFT dataset in\n"
    "messages form that `v3tune data prepare --template r1-keep-reasoning` and `v3tune sft` read.\n"
    "Every stage is recorded as a run in run.db; nothing is ever deleted. See docs/distill.md.\n"
    "\n"
    "common options:\n"
    "  --db RUN_DIR          the run directory (its run.db; a path ending in .db is the file itself)\n"
    "  --config F.lua        a distill config (keys: v3tune config F.lua --schema distill)\n"
    "  --set KEY=VALUE       override a config key (repeatable)\n"
    "\n"
    "import: reads JSONL, JSON arrays or a JSON document with a list of records (.zst allowed):\n"
    "  OpenAI messages/responses with reasoning_content, text with <think>...</think>, rows of\n"
    "  OpenR1 / OpenThoughts / LIMO / s1 (problem, solution, answer, generations, flags). A trace\n"
    "  with the same normalised prompt and trace as a stored one is a duplicate, stored once.\n"
    "  --form F              auto|messages|response|pair|text|solution (import.form)\n"
    "  --field KEY=NAME      read field NAME for KEY (import.fields; repeatable)\n"
    "  --records NAME        member holding the records, e.g. results (import.records)\n"
    "  --source-model NAME   model of traces whose row names none (import.source_model)\n"
    "  --strict              exit 1 when a row was bad (bad rows are always reported and skipped)\n"
    "verify: scores every trace with each script (default: the built-in math and r1_format)\n"
    "  --script F.lua[:W]    a reward module and its weight (repeatable; replaces verify.scripts)\n"
    "  --jobs N              worker processes (verify.jobs)\n"
    "  --timeout-ms T        wall clock per call (verify.timeout_ms)\n"
    "filter: applies the rules of the config's filter.* keys and stores a new selection\n"
    "  --tokenizer DIR       tokenizer.json directory (tokenizer.dir; default the DeepSeek-V3 one)\n"
    "export: writes the latest selection's traces\n"
    "  --out FILE.jsonl      output file (written atomically)\n"
    "  --form r1|original    <system prompt, problem, R1 response> or <problem, original response>\n"
    "  --system-prompt TEXT  system prompt of the r1 form (export.system_prompt)\n"
    "  --inline              reasoning inline in content (<think>...</think>) instead of reasoning_content\n"
    "  --selection N         a given selection (default: the latest)\n"
    "  --all                 every stored trace, without a filter run\n"
    "\n"
    "exit codes: 0 success, 1 runtime failure, 2 usage error\n";

#define MAX_LIST 256

typedef struct dargs {
    const char *db, *config, *out, *tokenizer, *system_prompt, *form, *records, *source_model;
    const char *sets[MAX_LIST];
    size_t n_sets;
    const char *files[MAX_LIST];
    int n_files;
    char *fields[MAX_LIST];
    int n_fields;
    v3_reward_script scripts[V3_REWARD_MAX_FUNCS];
    int n_scripts;
    int jobs, timeout_ms, all, inline_reasoning, strict;
    int64_t selection;
} dargs;

/* Options each subcommand takes, as " name " words. */
static const char *allowed(const char *sub) {
    if (!strcmp(sub, "import")) return " db config set form field records source-model strict ";
    if (!strcmp(sub, "verify")) return " db config set script jobs timeout-ms ";
    if (!strcmp(sub, "filter")) return " db config set tokenizer ";
    return " db config set out form system-prompt inline selection all ";
}

static int is_allowed(const char *sub, const char *name) {
    char w[64];
    snprintf(w, sizeof w, " %s ", name);
    return strstr(allowed(sub), w) != NULL;
}

/* "F.lua:2.5" -> path F.lua, weight 2.5; a suffix that is not a number stays part of the path. */
static void split_script(char *arg, v3_reward_script *sc) {
    memset(sc, 0, sizeof *sc);
    sc->path = arg;
    char *colon = strrchr(arg, ':');
    if (!colon || colon[1] == 0) return;
    char *end;
    double w = strtod(colon + 1, &end);
    if (*end) return;
    *colon = 0;
    sc->weight = w;
    sc->has_weight = 1;
}

static int parse(const char *sub, int argc, char **argv, dargs *a, char *cmd) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || !arg[1]) {
            if (strcmp(sub, "import") != 0) return v3_cli_usage_error(cmd, "unexpected argument %s", arg);
            if (a->n_files == MAX_LIST) return v3_cli_usage_error(cmd, "too many files");
            a->files[a->n_files++] = arg;
            continue;
        }
        const char *name = arg + 2;
        if (arg[1] != '-' || !is_allowed(sub, name))
            return v3_cli_usage_error(cmd, "unknown option %s", arg);
        if (!strcmp(name, "strict")) { a->strict = 1; continue; }
        if (!strcmp(name, "inline")) { a->inline_reasoning = 1; continue; }
        if (!strcmp(name, "all")) { a->all = 1; continue; }
        if (i + 1 >= argc) return v3_cli_usage_error(cmd, "%s needs a value", arg);
        char *v = argv[++i], *end = NULL;
        if (!strcmp(name, "db")) a->db = v;
        else if (!strcmp(name, "config")) a->config = v;
        else if (!strcmp(name, "out")) a->out = v;
        else if (!strcmp(name, "tokenizer")) a->tokenizer = v;
        else if (!strcmp(name, "system-prompt")) a->system_prompt = v;
        else if (!strcmp(name, "form")) a->form = v;
        else if (!strcmp(name, "records")) a->records = v;
        else if (!strcmp(name, "source-model")) a->source_model = v;
        else if (!strcmp(name, "set")) {
            if (a->n_sets == MAX_LIST) return v3_cli_usage_error(cmd, "too many --set");
            a->sets[a->n_sets++] = v;
        } else if (!strcmp(name, "field")) {
            if (a->n_fields == MAX_LIST) return v3_cli_usage_error(cmd, "too many --field");
            a->fields[a->n_fields++] = v;
        } else if (!strcmp(name, "script")) {
            if (a->n_scripts == V3_REWARD_MAX_FUNCS)
                return v3_cli_usage_error(cmd, "at most %d scripts", V3_REWARD_MAX_FUNCS);
            split_script(v, &a->scripts[a->n_scripts++]);
        } else if (!strcmp(name, "jobs")) {
            a->jobs = (int)strtol(v, &end, 10);
            if (*end || a->jobs < 1 || a->jobs > 256) return v3_cli_usage_error(cmd, "--jobs must be 1..256");
        } else if (!strcmp(name, "timeout-ms")) {
            a->timeout_ms = (int)strtol(v, &end, 10);
            if (*end || a->timeout_ms < 1) return v3_cli_usage_error(cmd, "--timeout-ms must be >= 1");
        } else if (!strcmp(name, "selection")) {
            a->selection = strtoll(v, &end, 10);
            if (*end || a->selection < 1) return v3_cli_usage_error(cmd, "--selection needs an id >= 1");
        }
    }
    if (!a->db) return v3_cli_usage_error(cmd, "--db RUN_DIR is required");
    return V3_EXIT_OK;
}

/* RUN_DIR/run.db, or the path itself when it names a .db file. */
static void db_path(const char *db, char *buf, size_t n) {
    size_t k = strlen(db);
    if (k > 3 && !strcmp(db + k - 3, ".db")) snprintf(buf, n, "%s", db);
    else snprintf(buf, n, "%s/run.db", db);
}

static int load_config(const dargs *a, v3_distill_config *c, char *cmd) {
    v3_err err = {0};
    int rc = v3_distill_config_load(c, a->config, a->sets, a->n_sets, &err);
    if (rc == V3_EUSAGE) return v3_cli_usage_error(cmd, "%s", err.msg);
    if (rc) return v3_cli_fail(cmd, "%s", err.msg);
    return V3_EXIT_OK;
}

static int run_import(dargs *a, const char *path, v3_distill_config *c, char *cmd) {
    v3_distill_import_opts o;
    v3_distill_import_stats st;
    v3_err err = {0};
    v3_distill_import_opts_default(&o);
    if (a->n_files == 0) return v3_cli_usage_error(cmd, "no input FILE given");
    if (v3_distill_config_import(c, &o, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    if (a->form) {
        int f = v3_distill_form_parse(a->form);
        if (f < 0) return v3_cli_usage_error(cmd, "unknown --form \"%s\" (auto, messages, response, "
                                             "pair, text, solution)", a->form);
        o.form = (v3_distill_form)f;
    }
    for (int i = 0; i < a->n_fields; i++)
        if (v3_distill_map_field(&o.fields, a->fields[i], &err)) return v3_cli_usage_error(cmd, "%s", err.msg);
    if (a->records) o.records = a->records;
    if (a->source_model) o.source_model = a->source_model;
    /* the run directory is created; its parent must exist */
    char dir[4300];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        if (dir[0] && v3_mkdirs(dir, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    }
    if (v3_distill_import(path, a->files, a->n_files, &o, &st, &err))
        return v3_cli_fail(cmd, "%s", err.msg);
    printf("distill import: %lld files, %lld rows (%lld bad, skipped)\n", (long long)st.files,
           (long long)st.rows, (long long)st.bad_rows);
    printf("  traces read %lld: added %lld, duplicates %lld, empty %lld\n", (long long)st.traces,
           (long long)st.added, (long long)st.duplicates, (long long)st.empty);
    printf("  added: %lld prompts, %lld cut off inside the reasoning, %lld without reasoning, "
           "%lld with the source's correctness label\n", (long long)st.prompts,
           (long long)st.truncated, (long long)st.no_reasoning, (long long)st.labelled);
    return a->strict && st.bad_rows ? V3_EXIT_FAIL : V3_EXIT_OK;
}

static int run_verify(dargs *a, const char *path, v3_distill_config *c, char *cmd) {
    v3_distill_verify_opts o;
    v3_distill_verify_stats st;
    v3_err err = {0};
    memset(&o, 0, sizeof o);
    if (v3_distill_config_verify(c, &o, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    if (a->n_scripts) {
        o.host.scripts = a->scripts;
        o.host.n_scripts = a->n_scripts;
    }
    if (a->jobs) o.host.n_workers = a->jobs;
    if (a->timeout_ms) o.host.timeout_ms = a->timeout_ms;
    /* no script: the built-in verifiers, written beside run.db so the run keeps their source */
    v3_reward_script builtin[V3_REWARD_MAX_FUNCS];
    char bpath[V3_REWARD_MAX_FUNCS][4200];
    if (o.host.n_scripts == 0) {
        const char *names[V3_REWARD_MAX_FUNCS];
        int n = 0;
        char dir[4300];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/verifiers");
        if (v3_distill_config_builtins(c, names, V3_REWARD_MAX_FUNCS, &n, &err))
            return v3_cli_fail(cmd, "%s", err.msg);
        if (n == 0) return v3_cli_usage_error(cmd, "no verifier: give --script or verify.builtin");
        if (!v3_file_exists(path)) return v3_cli_fail(cmd, "%s: no run store here (run `v3tune distill import` first)", path);
        for (int i = 0; i < n; i++) {
            if (v3_distill_write_builtin(dir, names[i], bpath[i], sizeof bpath[i], &err))
                return v3_cli_fail(cmd, "%s", err.msg);
            builtin[i] = (v3_reward_script){.path = bpath[i]};
        }
        o.host.scripts = builtin;
        o.host.n_scripts = n;
    }
    /* `require` looks in the scripts' own directories, as in `v3tune reward` */
    char dirs[V3_REWARD_MAX_FUNCS][4200];
    const char *dir_list[V3_REWARD_MAX_FUNCS];
    int nd = 0;
    for (int i = 0; i < o.host.n_scripts; i++) {
        const char *p = o.host.scripts[i].path, *slash = strrchr(p, '/');
        snprintf(dirs[nd], sizeof dirs[nd], "%.*s", slash ? (int)(slash - p) : 1, slash ? p : ".");
        int dup = 0;
        for (int k = 0; k < nd; k++) dup |= !strcmp(dirs[k], dirs[nd]);
        if (!dup) dir_list[nd] = dirs[nd], nd++;
    }
    o.host.reward_dirs = dir_list;
    o.host.n_reward_dirs = nd;
    o.log = isatty(fileno(stderr)) ? stderr : NULL;
    if (v3_distill_verify(path, &o, &st, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    printf("distill verify: %lld traces\n", (long long)st.traces);
    for (int f = 0; f < st.n_funcs; f++)
        printf("  %-16s scored %lld, passed %lld, skipped %lld, errors %lld, mean %.4f\n",
               st.names[f], (long long)st.scored[f], (long long)st.passed[f],
               (long long)st.skipped[f], (long long)st.errors[f],
               st.scored[f] ? st.sum[f] / (double)st.scored[f] : 0.0);
    return V3_EXIT_OK;
}

static int run_filter(dargs *a, const char *path, v3_distill_config *c, char *cmd) {
    v3_distill_filter_opts o;
    v3_distill_filter_stats st;
    v3_err err = {0};
    char tokdir[4096];
    if (!a->config) return v3_cli_usage_error(cmd, "--config F.lua is required (the filter rules)");
    v3_distill_filter_opts_default(&o);
    if (v3_distill_config_filter(c, &o, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    o.tokenizer_dir = a->tokenizer ? a->tokenizer : v3_distill_config_tokenizer(c);
    if (!o.tokenizer_dir) o.tokenizer_dir = v3_cli_default_tokenizer_dir(tokdir, sizeof tokdir);
    if (v3_distill_filter(path, &o, &st, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    printf("distill filter: selection %lld over %lld traces of %lld prompts\n",
           (long long)st.selection_id, (long long)st.traces, (long long)st.prompts);
    for (int r = 0; r < V3_RULE_COUNT; r++)
        if (st.active[r])
            printf("  %-12s removed %lld\n", v3_distill_rule_name(r), (long long)st.removed[r]);
    printf("  kept %lld traces of %lld prompts (%lld tokens)\n", (long long)st.kept,
           (long long)st.prompts_kept, (long long)st.tokens_kept);
    return V3_EXIT_OK;
}

static int run_export(dargs *a, const char *path, v3_distill_config *c, char *cmd) {
    v3_distill_export_opts o;
    v3_distill_export_stats st;
    v3_err err = {0};
    memset(&o, 0, sizeof o);
    if (!a->out) return v3_cli_usage_error(cmd, "--out FILE.jsonl is required");
    if (a->all && a->selection) return v3_cli_usage_error(cmd, "--all and --selection exclude each other");
    if (v3_distill_config_export(c, &o, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    if (a->form) {
        if (!strcmp(a->form, "r1")) o.form = V3_EXPORT_R1;
        else if (!strcmp(a->form, "original")) o.form = V3_EXPORT_ORIGINAL;
        else return v3_cli_usage_error(cmd, "--form must be r1 or original");
    }
    if (a->system_prompt) o.system_prompt = a->system_prompt;
    if (a->inline_reasoning) o.inline_reasoning = 1;
    o.selection_id = a->all ? -1 : a->selection;
    if (v3_distill_export(path, a->out, &o, &st, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    char sel[64];
    if (st.selection_id) snprintf(sel, sizeof sel, "selection %lld", (long long)st.selection_id);
    else snprintf(sel, sizeof sel, "every trace");
    printf("distill export: %lld conversations (%s form, %s: %lld traces of %lld prompts) -> %s\n",
           (long long)st.written, o.form == V3_EXPORT_ORIGINAL ? "original" : "r1", sel,
           (long long)st.traces, (long long)st.prompts, a->out);
    if (o.form == V3_EXPORT_ORIGINAL)
        printf("  original responses: %lld from the source's solution, %lld from the trace's final "
               "answer, %lld prompts skipped\n", (long long)st.original_from_solution,
               (long long)st.original_from_answer, (long long)st.original_skipped);
    return V3_EXIT_OK;
}

int v3_cmd_distill(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? V3_EXIT_USAGE : V3_EXIT_OK;
    }
    const char *sub = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "distill %.40s", sub);
    if (!strcmp(sub, "generate"))
        return v3_cli_fail(cmd, "not available yet: generating traces from a teacher model over "
                           "HTTP is planned; for now import R1 outputs you already have with "
                           "`v3tune distill import`");
    if (strcmp(sub, "import") && strcmp(sub, "verify") && strcmp(sub, "filter") && strcmp(sub, "export"))
        return v3_cli_usage_error(CMD, "unknown subcommand \"%s\" (import, verify, filter, export, "
                                  "generate)", sub);
    if (v3_cli_wants_help(argc - 1, argv + 1)) {
        fputs(HELP, stdout);
        return V3_EXIT_OK;
    }
    dargs *a = calloc(1, sizeof *a);
    if (!a) return v3_cli_fail(cmd, "out of memory");
    int rc = parse(sub, argc - 1, argv + 1, a, cmd);
    v3_distill_config c;
    memset(&c, 0, sizeof c);
    if (rc == V3_EXIT_OK) rc = load_config(a, &c, cmd);
    if (rc == V3_EXIT_OK) {
        char path[4200];
        db_path(a->db, path, sizeof path);
        if (!strcmp(sub, "import")) rc = run_import(a, path, &c, cmd);
        else if (!strcmp(sub, "verify")) rc = run_verify(a, path, &c, cmd);
        else if (!strcmp(sub, "filter")) rc = run_filter(a, path, &c, cmd);
        else rc = run_export(a, path, &c, cmd);
    }
    fflush(stdout);
    v3_distill_config_free(&c);
    free(a);
    return rc;
}
