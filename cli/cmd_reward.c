/* cmd_reward.c — `v3tune reward`: scores JSONL rows with Lua reward scripts through the reward host
 * (rewards/host.h), exactly as a GRPO run would, so scripts can be written and checked offline.
 * One JSON line per row on stdout; a summary (per-function mean, errors, speed) on stderr. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "rewards/host.h"

#define CMD "reward"
#define MAX_DIRS 16
#define BATCH 256

static const char *USAGE =
    "usage: v3tune reward --script F.lua[:WEIGHT] [--script G.lua[:WEIGHT]]... --data FILE\n"
    "                     [--jobs N] [--timeout-ms T] [--fallback X] [--instructions N]\n"
    "                     [--mem-mb M] [--reward-dir DIR]... [--judge-url URL] [--judge-model M]\n"
    "                     [--judge-key-env VAR] [--judge-in-flight N] [--judge-timeout S]\n"
    "                     [--judge-retries N]\n"
    "\n"
    "Scores every row of FILE (JSONL; - for stdin) with each reward script, in sandboxed worker\n"
    "processes, and prints one JSON line per row:\n"
    "  {\"line\": L, \"rewards\": {NAME: score or null}, \"errors\": {NAME: msg}, \"extra\": {NAME: {...}},\n"
    "   \"reward\": combined}\n"
    "(errors and extra only when present; combined = sum of weight*score over functions that did\n"
    "not skip, as TRL does). A row needs \"completion\" (a string, or a list of messages whose last\n"
    "content is used); \"prompt\" (a string, or a list of messages), \"completion_ids\",\n"
    "\"finish_reason\", \"group\", \"index\" are optional, and every field reaches the script in\n"
    "sample.row (and at top level). See docs/rewards.md.\n"
    "\n"
    "  --script F[:W]    a reward module; W its weight (default: the module's, else 1)\n"
    "  --data FILE       JSONL rows\n"
    "  --jobs N          worker processes (default 2)\n"
    "  --timeout-ms T    wall clock per call (default 2000); the worker is killed past it\n"
    "  --fallback X      score of a failed call (default 0; \"nan\" = skip)\n"
    "  --instructions N  VM instructions per call (default 50000000; 0 = unlimited)\n"
    "  --mem-mb M        memory per script state (default 64)\n"
    "  --reward-dir DIR  where `require` looks (repeatable; the scripts' own dirs come first)\n"
    "\n"
    "Judge modules (docs/rewards-judge.md) ask an OpenAI-compatible server; these options win over\n"
    "every judge module's own `judge` table:\n"
    "  --judge-url URL       base URL (http://HOST:PORT/v1) or the /chat/completions endpoint\n"
    "  --judge-model M       model name put into requests without one\n"
    "  --judge-key-env VAR   environment variable holding the API key (sent as a Bearer token)\n"
    "  --judge-in-flight N   requests on the wire at once\n"
    "  --judge-timeout S     seconds per attempt\n"
    "  --judge-retries N     retries on network errors, 408, 429, 5xx (0 = none)\n"
    "\n"
    "A bad row is reported as FILE:LINE: reason and skipped; the exit code is then 1. Script\n"
    "failures are recorded in the output, not failures of the command.\n";

typedef struct row {
    long line;
    json_t *obj;
    char *prompt, *messages, *completion, *row;
    int32_t *ids;
    int n_ids;
    const char *finish;
} row;

static void row_free(row *r) {
    json_decref(r->obj);
    free(r->messages);
    free(r->row);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* Fills r from a parsed row; returns 0, or -1 with why filled. */
static int row_take(row *r, json_t *o, char *why, size_t wn) {
    r->obj = o;
    json_t *c = json_object_get(o, "completion");
    if (json_is_array(c) && json_array_size(c) > 0)
        c = json_object_get(json_array_get(c, json_array_size(c) - 1), "content");
    if (!json_is_string(c)) {
        snprintf(why, wn, "missing \"completion\" (a string or a list of messages)");
        return -1;
    }
    r->completion = (char *)json_string_value(c);
    json_t *p = json_object_get(o, "prompt");
    if (json_is_string(p)) r->prompt = (char *)json_string_value(p);
    else if (json_is_array(p)) r->messages = json_dumps(p, JSON_COMPACT);
    else if (p && !json_is_null(p)) {
        snprintf(why, wn, "\"prompt\" must be a string or a list of messages");
        return -1;
    }
    json_t *ids = json_object_get(o, "completion_ids");
    if (json_is_array(ids)) {
        size_t n = json_array_size(ids);
        r->ids = malloc((n ? n : 1) * sizeof *r->ids);
        if (!r->ids) {
            snprintf(why, wn, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(ids, i);
            if (!json_is_integer(v)) {
                snprintf(why, wn, "\"completion_ids\" must hold integers");
                return -1;
            }
            r->ids[i] = (int32_t)json_integer_value(v);
        }
        r->n_ids = (int)n;
    }
    r->finish = json_string_value(json_object_get(o, "finish_reason"));
    r->row = json_dumps(o, JSON_COMPACT);
    if (!r->row) {
        snprintf(why, wn, "out of memory");
        return -1;
    }
    return 0;
}

typedef struct totals {
    double sum[V3_REWARD_MAX_FUNCS];
    long scored[V3_REWARD_MAX_FUNCS], errors[V3_REWARD_MAX_FUNCS], skipped[V3_REWARD_MAX_FUNCS];
    long rows;
} totals;

static json_t *number_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

static int score_batch(v3_reward_host *h, row *rows, int n, totals *tot, v3_err *err) {
    v3_reward_sample s[BATCH] = {{0}};
    v3_reward_result res[BATCH];
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        json_t *g = json_object_get(r->obj, "group"), *ix = json_object_get(r->obj, "index");
        s[i] = (v3_reward_sample){.prompt = r->prompt, .messages_json = r->messages,
                                  .completion = r->completion, .completion_ids = r->ids,
                                  .n_completion_ids = r->n_ids, .finish_reason = r->finish,
                                  .row_json = r->row,
                                  .group = json_is_integer(g) ? json_integer_value(g) : 0,
                                  .index = json_is_integer(ix) ? json_integer_value(ix) : r->line - 1};
    }
    int rc = v3_reward_host_score(h, s, n, res, err);
    if (rc != V3_OK) return rc;
    int nf = v3_reward_host_n_funcs(h);
    for (int i = 0; i < n; i++) {
        json_t *out = json_object(), *rw = json_object(), *er = NULL, *ex = NULL;
        json_object_set_new(out, "line", json_integer(rows[i].line));
        for (int f = 0; f < nf; f++) {
            const char *name = v3_reward_host_func(h, f)->name;
            const v3_reward_value *v = &res[i].values[f];
            json_object_set_new(rw, name, number_or_null(v->score));
            if (v->status == V3_REWARD_ERROR) {
                if (!er) er = json_object();
                json_object_set_new(er, name, json_string(v->error ? v->error : "error"));
                tot->errors[f]++;
            }
            if (isnan(v->score)) tot->skipped[f]++;
            else tot->sum[f] += v->score, tot->scored[f]++;
            if (v->extra_json) {
                json_t *x = json_loads(v->extra_json, 0, NULL);
                if (x) {
                    if (!ex) ex = json_object();
                    json_object_set_new(ex, name, x);
                }
            }
        }
        json_object_set_new(out, "rewards", rw);
        if (er) json_object_set_new(out, "errors", er);
        if (ex) json_object_set_new(out, "extra", ex);
        json_object_set_new(out, "reward", json_real(res[i].reward));
        char *line = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line) {
            puts(line);
            free(line);
        }
        json_decref(out);
        tot->rows++;
    }
    v3_reward_results_free(res, n);
    return V3_OK;
}

/* "F.lua:2.5" -> path F.lua, weight 2.5; a suffix that is not a number stays part of the path. */
static void split_script(char *arg, v3_reward_script *sc) {
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

/* One --judge-* option into the judge overrides. */
static int judge_option(const char *a, const char *v, v3_judge_opts *jo) {
    char *end = NULL;
    if (strcmp(a, "--judge-url") == 0) {
        jo->url = v;
    } else if (strcmp(a, "--judge-model") == 0) {
        jo->model = v;
    } else if (strcmp(a, "--judge-key-env") == 0) {
        jo->key_env = v;
    } else if (strcmp(a, "--judge-in-flight") == 0) {
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > V3_JUDGE_MAX_IN_FLIGHT)
            return v3_cli_usage_error(CMD, "--judge-in-flight must be 1..%d", V3_JUDGE_MAX_IN_FLIGHT);
        jo->max_in_flight = (int)n;
    } else if (strcmp(a, "--judge-timeout") == 0) {
        jo->timeout_s = strtod(v, &end);
        if (*end || !(jo->timeout_s > 0 && jo->timeout_s <= 86400))
            return v3_cli_usage_error(CMD, "--judge-timeout must be in (0, 86400] seconds");
    } else if (strcmp(a, "--judge-retries") == 0) {
        long n = strtol(v, &end, 10);
        if (*end || n < 0 || n > 100) return v3_cli_usage_error(CMD, "--judge-retries must be 0..100");
        jo->max_retries = n == 0 ? -1 : (int)n;
    } else {
        return v3_cli_usage_error(CMD, "unknown option %s", a);
    }
    return V3_EXIT_OK;
}

int v3_cmd_reward(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return V3_EXIT_OK;
    }
    v3_reward_script scripts[V3_REWARD_MAX_FUNCS];
    char *dir_store[MAX_DIRS] = {0};
    const char *dirs[MAX_DIRS];
    int ns = 0, nd = 0, n_user_dirs = 0;
    const char *user_dirs[MAX_DIRS];
    const char *data = NULL;
    v3_reward_opts o = {0};
    v3_judge_opts jo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return v3_cli_usage_error(CMD, "%s needs a value (or is unknown)", a);
        char *v = argv[++i], *end = NULL;
        if (strcmp(a, "--script") == 0) {
            if (ns == V3_REWARD_MAX_FUNCS) return v3_cli_usage_error(CMD, "at most %d scripts", ns);
            memset(&scripts[ns], 0, sizeof scripts[ns]);
            split_script(v, &scripts[ns++]);
        } else if (strcmp(a, "--data") == 0) {
            data = v;
        } else if (strcmp(a, "--jobs") == 0) {
            o.n_workers = (int)strtol(v, &end, 10);
            if (*end || o.n_workers < 1 || o.n_workers > 256)
                return v3_cli_usage_error(CMD, "--jobs must be 1..256");
        } else if (strcmp(a, "--timeout-ms") == 0) {
            o.timeout_ms = strtoll(v, &end, 10);
            if (*end || o.timeout_ms < 1) return v3_cli_usage_error(CMD, "--timeout-ms must be >= 1");
        } else if (strcmp(a, "--fallback") == 0) {
            o.fallback = strtod(v, &end);
            if (*end) return v3_cli_usage_error(CMD, "--fallback must be a number or nan");
        } else if (strcmp(a, "--instructions") == 0) {
            o.max_instructions = strtoll(v, &end, 10);
            if (*end || o.max_instructions < 0)
                return v3_cli_usage_error(CMD, "--instructions must be >= 0");
            if (o.max_instructions == 0) o.max_instructions = -1;
        } else if (strcmp(a, "--mem-mb") == 0) {
            long m = strtol(v, &end, 10);
            if (*end || m < 1 || m > 65536) return v3_cli_usage_error(CMD, "--mem-mb must be 1..65536");
            o.mem_cap = (size_t)m << 20;
        } else if (strncmp(a, "--judge-", 8) == 0) {
            int rc = judge_option(a, v, &jo);
            if (rc != V3_EXIT_OK) return rc;
            o.judge = &jo;
        } else if (strcmp(a, "--reward-dir") == 0) {
            if (n_user_dirs == MAX_DIRS) return v3_cli_usage_error(CMD, "too many --reward-dir");
            user_dirs[n_user_dirs++] = v;
        } else {
            return v3_cli_usage_error(CMD, "unknown option %s", a);
        }
    }
    if (ns == 0) return v3_cli_usage_error(CMD, "--script is required");
    if (!data) return v3_cli_usage_error(CMD, "--data is required");
    /* require: the scripts' own directories, then --reward-dir */
    for (int i = 0; i < ns && nd < MAX_DIRS; i++) {
        const char *slash = strrchr(scripts[i].path, '/');
        size_t len = slash ? (size_t)(slash - scripts[i].path) : 1;
        char *d = malloc(len + 1);
        if (!d) break;
        memcpy(d, slash ? scripts[i].path : ".", len);
        d[len] = 0;
        int dup = 0;
        for (int k = 0; k < nd; k++) dup |= strcmp(dirs[k], d) == 0;
        if (dup) {
            free(d);
            continue;
        }
        dir_store[nd] = d;
        dirs[nd++] = d;
    }
    for (int i = 0; i < n_user_dirs && nd < MAX_DIRS; i++) dirs[nd++] = user_dirs[i];
    o.scripts = scripts;
    o.n_scripts = ns;
    o.reward_dirs = dirs;
    o.n_reward_dirs = nd;

    int code = V3_EXIT_OK;
    FILE *f = strcmp(data, "-") == 0 ? stdin : fopen(data, "r");
    v3_reward_host *h = NULL;
    v3_err err = {0};
    if (!f) {
        code = v3_cli_fail(CMD, "%s: %s", data, strerror(errno));
        goto out;
    }
    if (v3_reward_host_init(&h, &o, &err) != V3_OK) {
        code = v3_cli_fail(CMD, "%s", err.msg);
        goto out;
    }
    totals tot;
    memset(&tot, 0, sizeof tot);
    row rows[BATCH];
    int nr = 0;
    memset(rows, 0, sizeof rows);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, bad = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t got = getline(&line, &cap, f);
        if (got >= 0) {
            lineno++;
            size_t k = (size_t)got;
            while (k && (line[k - 1] == '\n' || line[k - 1] == '\r' || line[k - 1] == ' ')) line[--k] = 0;
            if (k == 0) continue;
            json_error_t je;
            char why[256] = "";
            json_t *obj = json_loads(line, 0, &je);
            if (!obj) snprintf(why, sizeof why, "invalid JSON: %s (column %d)", je.text, je.column);
            else if (!json_is_object(obj)) {
                snprintf(why, sizeof why, "a row must be a JSON object");
                json_decref(obj);
            } else {
                rows[nr].line = lineno;
                if (row_take(&rows[nr], obj, why, sizeof why) == 0) nr++;
                else row_free(&rows[nr]);
            }
            if (why[0]) {
                fprintf(stderr, "%s:%ld: %s\n", data, lineno, why);
                bad++;
            }
        }
        if (nr == BATCH || (got < 0 && nr > 0)) {
            int rc = score_batch(h, rows, nr, &tot, &err);
            for (int i = 0; i < nr; i++) row_free(&rows[i]);
            nr = 0;
            if (rc != V3_OK) {
                code = v3_cli_fail(CMD, "%s", err.msg);
                break;
            }
        }
        if (got < 0) break;
    }
    free(line);
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int fi = 0; fi < v3_reward_host_n_funcs(h); fi++) {
        const v3_reward_func_info *inf = v3_reward_host_func(h, fi);
        fprintf(stderr, "%-20s weight %g  mean %.6g over %ld  errors %ld  skipped %ld  sha256 %.12s\n",
                inf->name, inf->weight, tot.scored[fi] ? tot.sum[fi] / (double)tot.scored[fi] : NAN,
                tot.scored[fi], tot.errors[fi], tot.skipped[fi], inf->sha256);
        if (inf->is_judge) {
            v3_judge_stats js;
            v3_reward_host_judge_stats(h, fi, &js);
            fprintf(stderr, "%-20s judge: %lld requests, %lld attempts (%lld retries), %lld failed, "
                            "at most %d in flight\n",
                    "", (long long)js.requests, (long long)js.attempts, (long long)js.retries,
                    (long long)js.failures, js.max_in_flight_seen);
        }
    }
    fprintf(stderr, "%ld rows in %.3f s (%.1f samples/s), %ld bad rows\n", tot.rows, secs,
            secs > 0 ? (double)tot.rows / secs : 0.0, bad);
    if (bad && code == V3_EXIT_OK) code = V3_EXIT_FAIL;
out:
    v3_reward_host_free(h);
    if (f && f != stdin) fclose(f);
    for (int i = 0; i < MAX_DIRS; i++) free(dir_store[i]);
    return code;
}
