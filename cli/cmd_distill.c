/* cmd_distill.c — `v3tune distill import|verify|filter|export|generate`: distilling reasoning
 * from DeepSeek-R1 outputs through the run store (datasets/distill.h, datasets/distill_generate.h,
 * docs/distill.md). This file only reads the command line and the config and prints summaries;
 * the work is in datasets/. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/fs.h"
#include "datasets/distill.h"
#include "datasets/distill_config.h"
#include "datasets/distill_generate.h"

#define CMD "distill"

static const char *const HELP =
    "usage: v3tune distill import FILE... --db RUN_DIR [--config F.lua] [options]\n"
    "       v3tune distill verify --db RUN_DIR [--script F.lua[:WEIGHT]]... [--jobs N] [options]\n"
    "       v3tune distill filter --db RUN_DIR --config F.lua [options]\n"
    "       v3tune distill export --db RUN_DIR --out FILE.jsonl [--form r1|original] [options]\n"
    "       v3tune distill generate --db RUN_DIR (--url URL --teacher NAME | --model DIR)\n"
    "                               [--prompts FILE.jsonl] [options]\n"
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
    "generate: asks a teacher for new traces, stored like imported ones (verify/filter/export\n"
    "  read them). Resumable: a prompt x sample x teacher already stored is never asked again;\n"
    "  failed requests are reported and asked again by the next run (exit 1 until none fail).\n"
    "  --prompts FILE.jsonl  rows with prompt or messages (+ answer, solution, system)\n"
    "                        (generate.prompts; default: the prompts already in the store)\n"
    "  --url URL             OpenAI-compatible endpoint, e.g. https://api.deepseek.com/v1 (generate.url)\n"
    "  --teacher NAME        the endpoint's model name, e.g. deepseek-reasoner (generate.model)\n"
    "  --key-env VAR         environment variable holding the API key (generate.key_env)\n"
    "  --model DIR           local teacher: a model directory sampled with the rollout engine\n"
    "                        (R1 template, split at </think>) instead of --url (generate.model_dir)\n"
    "  --tokenizer DIR       local teacher's tokenizer when DIR has none (tokenizer.dir)\n"
    "  --n N                 samples per prompt (generate.n)\n"
    "  --temperature T  --top-p P  --max-tokens N  --seed S   sampling (generate.*)\n"
    "  --system-prompt TEXT  replaces each prompt's system messages (generate.system_prompt)\n"
    "  --max-in-flight N  --timeout S  --retries N   HTTP concurrency, seconds per attempt,\n"
    "                        retries after 429/5xx/network errors (generate.*)\n"
    "  --max-requests K      ask for at most K prompt samples in this run (the rest: next run)\n"
    "  Ctrl-C stops after the chunk in flight (what came back is kept; a second one kills).\n"
    "\n"
    "exit codes: 0 success, 1 runtime failure, 2 usage error; generate: 130 when stopped by Ctrl-C\n";

#define MAX_LIST 256
#define MAX_GEN_SETS 32

/* Set by SIGINT/SIGTERM while `distill generate` runs, read between chunks. A signal handler can
 * reach nothing else, so this one flag is file-scope. */
static volatile sig_atomic_t generate_stop;

static void on_signal(int sig) {
    (void)sig;
    generate_stop = 1;
}

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
    /* generate: options that set generate.* keys, as --set strings applied after the user's */
    char *gen_sets[MAX_GEN_SETS];
    int n_gen_sets;
    int gen_url, gen_model_dir, gen_teacher;
    int64_t max_requests;
} dargs;

/* Options each subcommand takes, as " name " words. */
static const char *allowed(const char *sub) {
    if (!strcmp(sub, "import")) return " db config set form field records source-model strict ";
    if (!strcmp(sub, "verify")) return " db config set script jobs timeout-ms ";
    if (!strcmp(sub, "filter")) return " db config set tokenizer ";
    if (!strcmp(sub, "generate"))
        return " db config set tokenizer prompts url teacher key-env model n temperature top-p "
               "max-tokens seed system-prompt max-in-flight timeout retries max-requests ";
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

/* generate options that are config keys: option name → generate.KEY */
static const char *gen_key(const char *name) {
    static const char *const map[][2] = {
        {"prompts", "prompts"}, {"url", "url"}, {"teacher", "model"}, {"key-env", "key_env"},
        {"model", "model_dir"}, {"n", "n"}, {"temperature", "temperature"}, {"top-p", "top_p"},
        {"max-tokens", "max_tokens"}, {"seed", "seed"}, {"max-in-flight", "max_in_flight"},
        {"timeout", "timeout"}, {"retries", "retries"}, {NULL, NULL}};
    for (int i = 0; map[i][0]; i++)
        if (!strcmp(map[i][0], name)) return map[i][1];
    return NULL;
}

static int add_gen_set(dargs *a, const char *key, const char *v, char *cmd) {
    if (a->n_gen_sets == MAX_GEN_SETS) return v3_cli_usage_error(cmd, "too many options");
    size_t n = strlen(key) + strlen(v) + 16;
    char *s = malloc(n);
    if (!s) return v3_cli_fail(cmd, "out of memory");
    snprintf(s, n, "generate.%s=%s", key, v);
    a->gen_sets[a->n_gen_sets++] = s;
    return V3_EXIT_OK;
}

/* The command line's generate options after the user's --set; --url or --model on the command line
 * picks the teacher, so the other kind's key from the config is cleared (and with --model, the
 * config's endpoint model name, which would otherwise name the local teacher). */
static int finish_gen_sets(dargs *a, char *cmd) {
    if (a->gen_url && a->gen_model_dir)
        return v3_cli_usage_error(cmd, "--url and --model both name a teacher: give one (--model "
                                  "is a local model directory; --teacher names the endpoint's model)");
    int rc = V3_EXIT_OK;
    if (a->gen_url) rc = add_gen_set(a, "model_dir", "", cmd);
    if (a->gen_model_dir) rc = add_gen_set(a, "url", "", cmd);
    if (!rc && a->gen_model_dir && !a->gen_teacher) rc = add_gen_set(a, "model", "", cmd);
    for (int i = 0; i < a->n_gen_sets && !rc; i++) {
        if (a->n_sets == MAX_LIST) return v3_cli_usage_error(cmd, "too many --set");
        a->sets[a->n_sets++] = a->gen_sets[i];
    }
    return rc;
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
        if (!strcmp(sub, "generate") && gen_key(name)) {
            a->gen_url |= !strcmp(name, "url");
            a->gen_model_dir |= !strcmp(name, "model");
            a->gen_teacher |= !strcmp(name, "teacher");
            int rc = add_gen_set(a, gen_key(name), v, cmd);
            if (rc) return rc;
            continue;
        }
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
        } else if (!strcmp(name, "max-requests")) {
            a->max_requests = strtoll(v, &end, 10);
            if (!*v || *end || a->max_requests < 1)
                return v3_cli_usage_error(cmd, "--max-requests needs a count >= 1");
        }
    }
    if (!a->db) return v3_cli_usage_error(cmd, "--db RUN_DIR is required");
    if (!strcmp(sub, "generate")) {
        if (a->system_prompt) {
            int rc = add_gen_set(a, "system_prompt", a->system_prompt, cmd);
            if (rc) return rc;
        }
        return finish_gen_sets(a, cmd);
    }
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

/* The run directory is created; its parent must exist. */
static int make_run_dir(const char *path, char *cmd) {
    char dir[4300];
    v3_err err = {0};
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        if (dir[0] && v3_mkdirs(dir, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    }
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
    int rc = make_run_dir(path, cmd);
    if (rc) return rc;
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

static void print_generate(const v3_distill_generate_stats *st) {
    printf("distill generate: teacher %s\n", st->teacher[0] ? st->teacher : "(none)");
    if (st->rows != st->prompts || st->bad_rows)
        printf("  prompts %lld (%lld rows, %lld bad, skipped)\n", (long long)st->prompts,
               (long long)st->rows, (long long)st->bad_rows);
    else
        printf("  prompts %lld\n", (long long)st->prompts);
    printf("  samples wanted %lld: %lld stored before, %lld asked now, %lld left for a later run\n",
           (long long)st->wanted, (long long)st->done_before, (long long)st->requested,
           (long long)st->left);
    printf("  stored %lld (%lld cut off, %lld without reasoning), failed %lld%s\n",
           (long long)st->stored, (long long)st->truncated, (long long)st->no_reasoning,
           (long long)st->failed, st->failed ? " (asked again by the next run)" : "");
    printf("  attempts %lld (%lld retries); tokens: %lld prompt, %lld completion\n",
           (long long)st->attempts, (long long)st->retries, (long long)st->prompt_tokens,
           (long long)st->completion_tokens);
}

static int run_generate(dargs *a, const char *path, v3_distill_config *c, char *cmd) {
    v3_distill_generate_opts o;
    v3_distill_generate_stats st;
    v3_err err = {0};
    char tokdir[4096];
    v3_distill_generate_opts_default(&o);
    int rc = v3_distill_config_generate(c, &o, &err);
    if (rc) return v3_cli_fail(cmd, "%s", err.msg);
    if (!o.url && !o.model_dir)
        return v3_cli_usage_error(cmd, "no teacher: give --url URL --teacher NAME (an OpenAI-"
                                  "compatible endpoint) or --model DIR (a local model directory)");
    if (o.url && o.model_dir)
        return v3_cli_usage_error(cmd, "generate.url and generate.model_dir both name a teacher");
    if (o.url && !o.model)
        return v3_cli_usage_error(cmd, "--teacher NAME (generate.model) is required with --url: "
                                  "the model name the endpoint serves");
    if (a->tokenizer) o.tokenizer_dir = a->tokenizer;
    if (!o.tokenizer_dir) o.tokenizer_dir = v3_cli_default_tokenizer_dir(tokdir, sizeof tokdir);
    o.max_requests = a->max_requests;
    o.progress = isatty(fileno(stderr)) ? stderr : NULL;
    if ((rc = make_run_dir(path, cmd))) return rc;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    generate_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    o.stop = &generate_stop;
    rc = v3_distill_generate(path, &o, &st, &err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc) return v3_cli_fail(cmd, "%s", err.msg);
    print_generate(&st);
    if (st.stopped) return 130;
    return st.failed ? V3_EXIT_FAIL : V3_EXIT_OK;
}

int v3_cmd_distill(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? V3_EXIT_USAGE : V3_EXIT_OK;
    }
    const char *sub = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "distill %.40s", sub);
    if (strcmp(sub, "import") && strcmp(sub, "verify") && strcmp(sub, "filter") && strcmp(sub, "export") &&
        strcmp(sub, "generate"))
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
        else if (!strcmp(sub, "generate")) rc = run_generate(a, path, &c, cmd);
        else rc = run_export(a, path, &c, cmd);
    }
    fflush(stdout);
    v3_distill_config_free(&c);
    for (int i = 0; i < a->n_gen_sets; i++) free(a->gen_sets[i]);
    free(a);
    return rc;
}
