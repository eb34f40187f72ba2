/* cmd_reward.c — `v3tune reward`: scores JSONL rows, or the samples a run stored for one step,
 * with Lua reward scripts through the reward host (rewards/host.h) and with local reward models
 * (rewards/rm.h) in this process, exactly as a GRPO run would, so rewards can be written and
 * checked offline. One JSON line per row on stdout; a summary (per-function mean, errors, speed)
 * on stderr. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "datasets/blob.h"
#include "datasets/store.h"
#include "rewards/host.h"
#include "rewards/rm.h"
#include "rewards/rm_mix.h"

#define CMD "reward"
#define MAX_DIRS 16
#define MAX_MODELS 8
#define BATCH 256

static const char *USAGE =
    "usage: v3tune reward (--script F.lua[:WEIGHT] | --reward-model [NAME=]DIR[:WEIGHT])...\n"
    "                     (--data FILE | --run RUN_DIR --step N [--run-id ID])\n"
    "                     [--jobs N] [--timeout-ms T] [--fallback X] [--instructions N]\n"
    "                     [--mem-mb M] [--reward-dir DIR]... [--judge-url URL] [--judge-model M]\n"
    "                     [--judge-key-env VAR] [--judge-in-flight N] [--judge-timeout S]\n"
    "                     [--judge-retries N] [--rm-template T] [--rm-max-tokens N]\n"
    "                     [--rm-label K] [--rm-device NAME] [--threads N]\n"
    "\n"
    "Scores every row of FILE (JSONL; - for stdin) with each reward script, in sandboxed worker\n"
    "processes, and with each reward model, in this process, and prints one JSON line per row:\n"
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
    "Rescoring a run (debug a reward on real samples): --run RUN_DIR --step N reads the samples\n"
    "the run stored for optimizer step N (RUN_DIR/run.db: prompt text or messages, completion,\n"
    "token ids, finish reason, the prompt's fields) and scores them as the run did. Each line has\n"
    "\"sample\", \"step\", \"group\", \"index\" instead of \"line\", and \"stored\": the total reward\n"
    "and the per-function scores the run recorded.\n"
    "  --run RUN_DIR     a run directory (or its run.db)\n"
    "  --step N          the optimizer step whose samples are rescored\n"
    "  --run-id ID       only run ID of the store (a resumed run adds one; default: every run)\n"
    "\n"
    "Local reward models (docs/rewards-model.md): a Hugging Face DeepseekV3ForSequenceClassification\n"
    "directory (config.json, safetensors with score.weight, tokenizer.json); the conversation plus\n"
    "the completion as the assistant's reply is scored at its last token:\n"
    "  --reward-model [NAME=]DIR[:W]  a reward model (repeatable); W its weight (default 1);\n"
    "                      NAME its name in the outputs (default: the directory's base name)\n"
    "  --rm-template T     v3 (default), r1, or raw (prompt + completion as one text)\n"
    "  --rm-max-tokens N   tokens per forward and longest sequence (default 4096)\n"
    "  --rm-label K        which logit of score.weight is the reward (default 0)\n"
    "  --rm-device NAME    backend: cpu (default) or cuda\n"
    "  --threads N         CPU threads of the cpu backend (default: all cores)\n"
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

/* One row to score: from a JSONL line (strings borrowed from obj) or from the store (owned). */
typedef struct row {
    long line;                 /* --data: the line number; 0 for a stored sample */
    int64_t sample_id, step;   /* --run */
    json_t *obj;               /* --data: the parsed row */
    const char *prompt, *completion, *finish;
    char *messages, *row;
    char *own[3];              /* --run: the copies prompt, completion and finish point at */
    int32_t *ids;
    int n_ids;
    int64_t group, index;
    json_t *stored;            /* --run: {"reward": x, "rewards": {NAME: score}} */
} row;

static void row_free(row *r) {
    json_decref(r->obj);
    json_decref(r->stored);
    free(r->messages);
    free(r->row);
    free(r->ids);
    for (int i = 0; i < 3; i++) free(r->own[i]);
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
    r->completion = json_string_value(c);
    json_t *p = json_object_get(o, "prompt");
    if (json_is_string(p)) r->prompt = json_string_value(p);
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
    json_t *g = json_object_get(o, "group"), *ix = json_object_get(o, "index");
    r->group = json_is_integer(g) ? json_integer_value(g) : 0;
    r->index = json_is_integer(ix) ? json_integer_value(ix) : r->line - 1;
    r->row = json_dumps(o, JSON_COMPACT);
    if (!r->row) {
        snprintf(why, wn, "out of memory");
        return -1;
    }
    return 0;
}

static json_t *number_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* A stored sample as the GRPO run gave it to the reward host (trainer/grpo_rollout.c); -1 when
 * out of memory. */
static int row_from_store(row *r, const v3_store_sample_row *s) {
    memset(r, 0, sizeof *r);
    r->sample_id = s->id;
    r->step = s->step;
    r->group = s->group_id;
    r->index = s->group_index;
    r->own[0] = dup_or_null(s->prompt_text);
    r->own[1] = strdup(s->completion ? s->completion : "");
    r->own[2] = dup_or_null(s->finish_reason);
    r->messages = dup_or_null(s->prompt_messages);
    r->row = dup_or_null(s->prompt_fields);
    if ((s->prompt_text && !r->own[0]) || !r->own[1] || (s->finish_reason && !r->own[2]) ||
        (s->prompt_messages && !r->messages) || (s->prompt_fields && !r->row))
        return -1;
    r->prompt = r->own[0];
    r->completion = r->own[1];
    r->finish = r->own[2];
    if (s->n_ids > 0 && s->token_ids) {
        r->ids = malloc((size_t)s->n_ids * sizeof *r->ids);
        if (!r->ids) return -1;
        v3_blob_get_u32((uint32_t *)r->ids, s->token_ids, (size_t)s->n_ids);
        r->n_ids = s->n_ids;
    }
    json_t *rw = json_object();
    r->stored = json_object();
    if (!rw || !r->stored) {
        json_decref(rw);
        return -1;
    }
    for (int i = 0; i < s->n_rewards; i++)
        json_object_set_new(rw, s->rewards[i].name, number_or_null(s->rewards[i].score));
    json_object_set_new(r->stored, "reward", number_or_null(s->reward));
    json_object_set_new(r->stored, "rewards", rw);
    return 0;
}

typedef struct totals {
    double sum[V3_REWARD_MAX_FUNCS];
    long scored[V3_REWARD_MAX_FUNCS], errors[V3_REWARD_MAX_FUNCS], skipped[V3_REWARD_MAX_FUNCS];
    long rows;
} totals;

static void print_result(const v3_rm_mix *x, const row *r, const v3_reward_result *res, totals *tot) {
    json_t *out = json_object(), *rw = json_object(), *er = NULL, *ex = NULL;
    if (r->stored) {
        json_object_set_new(out, "sample", json_integer(r->sample_id));
        json_object_set_new(out, "step", json_integer(r->step));
        json_object_set_new(out, "group", json_integer(r->group));
        json_object_set_new(out, "index", json_integer(r->index));
    } else {
        json_object_set_new(out, "line", json_integer(r->line));
    }
    int nf = v3_rm_mix_n_funcs(x);
    for (int f = 0; f < nf; f++) {
        const char *name = v3_rm_mix_func(x, f)->name;
        const v3_reward_value *v = &res->values[f];
        json_object_set_new(rw, name, number_or_null(v->score));
        if (v->status == V3_REWARD_ERROR) {
            if (!er) er = json_object();
            json_object_set_new(er, name, json_string(v->error ? v->error : "error"));
            tot->errors[f]++;
        }
        if (isnan(v->score)) tot->skipped[f]++;
        else tot->sum[f] += v->score, tot->scored[f]++;
        if (v->extra_json) {
            json_t *e = json_loads(v->extra_json, 0, NULL);
            if (e) {
                if (!ex) ex = json_object();
                json_object_set_new(ex, name, e);
            }
        }
    }
    json_object_set_new(out, "rewards", rw);
    if (er) json_object_set_new(out, "errors", er);
    if (ex) json_object_set_new(out, "extra", ex);
    json_object_set_new(out, "reward", json_real(res->reward));
    if (r->stored) json_object_set(out, "stored", r->stored);
    char *line = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
        puts(line);
        free(line);
    }
    json_decref(out);
    tot->rows++;
}

static int score_batch(const v3_rm_mix *x, row *rows, int n, totals *tot, v3_err *err) {
    v3_reward_sample s[BATCH] = {{0}};
    v3_reward_result res[BATCH];
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        s[i] = (v3_reward_sample){.prompt = r->prompt, .messages_json = r->messages,
                                  .completion = r->completion, .completion_ids = r->ids,
                                  .n_completion_ids = r->n_ids, .finish_reason = r->finish,
                                  .row_json = r->row, .group = r->group, .index = r->index};
    }
    int rc = v3_rm_mix_score(x, s, n, res, err);
    if (rc != V3_OK) return rc;
    for (int i = 0; i < n; i++) print_result(x, &rows[i], &res[i], tot);
    v3_reward_results_free(res, n);
    return V3_OK;
}

/* "F.lua:2.5" -> path F.lua, weight 2.5; a suffix that is not a number stays part of the path. */
static void split_weight(char *arg, const char **path, double *weight, int *has_weight) {
    *path = arg;
    char *colon = strrchr(arg, ':');
    if (!colon || colon[1] == 0) return;
    char *end;
    double w = strtod(colon + 1, &end);
    if (*end) return;
    *colon = 0;
    *weight = w;
    *has_weight = 1;
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

typedef struct args {
    v3_reward_script scripts[V3_REWARD_MAX_FUNCS];
    int ns;
    v3_rm_opts models[MAX_MODELS];
    int nm;
    const char *user_dirs[MAX_DIRS];
    int n_user_dirs;
    const char *data, *run, *rm_device;
    int64_t step, run_id;
    int has_step, threads;
    v3_reward_opts o;
    v3_judge_opts jo;
} args;

/* One --rm-* option, applied to every --reward-model (given before or after it). */
static int rm_option(const char *a, const char *v, args *g) {
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (strcmp(a, "--rm-template") == 0) {
        if (strcmp(v, "v3") && strcmp(v, "r1") && strcmp(v, "raw"))
            return v3_cli_usage_error(CMD, "--rm-template must be v3, r1 or raw");
        for (int i = 0; i < MAX_MODELS; i++) g->models[i].template_name = v;
    } else if (strcmp(a, "--rm-max-tokens") == 0) {
        if (*end || n < 1 || n > (1 << 24))
            return v3_cli_usage_error(CMD, "--rm-max-tokens must be 1..16777216");
        for (int i = 0; i < MAX_MODELS; i++) g->models[i].max_tokens = n;
    } else if (strcmp(a, "--rm-label") == 0) {
        if (*end || n < 0 || n > (1 << 20)) return v3_cli_usage_error(CMD, "--rm-label must be >= 0");
        for (int i = 0; i < MAX_MODELS; i++) g->models[i].label = (int)n;
    } else if (strcmp(a, "--rm-device") == 0) {
        g->rm_device = v;
    } else {
        return v3_cli_usage_error(CMD, "unknown option %s", a);
    }
    return V3_EXIT_OK;
}

static int parse_args(int argc, char **argv, args *g) {
    v3_reward_opts *o = &g->o;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return v3_cli_usage_error(CMD, "%s needs a value (or is unknown)", a);
        char *v = argv[++i], *end = NULL;
        if (strcmp(a, "--script") == 0) {
            if (g->ns == V3_REWARD_MAX_FUNCS) return v3_cli_usage_error(CMD, "at most %d scripts", g->ns);
            v3_reward_script *sc = &g->scripts[g->ns++];
            memset(sc, 0, sizeof *sc);
            split_weight(v, &sc->path, &sc->weight, &sc->has_weight);
        } else if (strcmp(a, "--reward-model") == 0) {
            if (g->nm == MAX_MODELS) return v3_cli_usage_error(CMD, "at most %d reward models", MAX_MODELS);
            v3_rm_opts *m = &g->models[g->nm++];
            char *eq = strchr(v, '='), *slash = strchr(v, '/');
            if (eq && eq > v && (!slash || eq < slash)) { /* NAME=DIR */
                *eq = 0;
                m->name = v;
                v = eq + 1;
            }
            split_weight(v, &m->dir, &m->weight, &m->has_weight);
        } else if (strncmp(a, "--rm-", 5) == 0) {
            int rc = rm_option(a, v, g);
            if (rc != V3_EXIT_OK) return rc;
        } else if (strcmp(a, "--threads") == 0) {
            g->threads = (int)strtol(v, &end, 10);
            if (*end || g->threads < 0 || g->threads > 4096)
                return v3_cli_usage_error(CMD, "--threads must be 0..4096");
        } else if (strcmp(a, "--data") == 0) {
            g->data = v;
        } else if (strcmp(a, "--run") == 0) {
            g->run = v;
        } else if (strcmp(a, "--step") == 0 || strcmp(a, "--run-id") == 0) {
            errno = 0;
            long long n = strtoll(v, &end, 10);
            if (errno || *end || !*v || n < 0)
                return v3_cli_usage_error(CMD, "%s must be an integer >= 0", a);
            if (strcmp(a, "--step") == 0) {
                g->step = n;
                g->has_step = 1;
            } else {
                g->run_id = n;
            }
        } else if (strcmp(a, "--jobs") == 0) {
            o->n_workers = (int)strtol(v, &end, 10);
            if (*end || o->n_workers < 1 || o->n_workers > 256)
                return v3_cli_usage_error(CMD, "--jobs must be 1..256");
        } else if (strcmp(a, "--timeout-ms") == 0) {
            o->timeout_ms = strtoll(v, &end, 10);
            if (*end || o->timeout_ms < 1) return v3_cli_usage_error(CMD, "--timeout-ms must be >= 1");
        } else if (strcmp(a, "--fallback") == 0) {
            o->fallback = strtod(v, &end);
            if (*end) return v3_cli_usage_error(CMD, "--fallback must be a number or nan");
        } else if (strcmp(a, "--instructions") == 0) {
            o->max_instructions = strtoll(v, &end, 10);
            if (*end || o->max_instructions < 0)
                return v3_cli_usage_error(CMD, "--instructions must be >= 0");
            if (o->max_instructions == 0) o->max_instructions = -1;
        } else if (strcmp(a, "--mem-mb") == 0) {
            long m = strtol(v, &end, 10);
            if (*end || m < 1 || m > 65536) return v3_cli_usage_error(CMD, "--mem-mb must be 1..65536");
            o->mem_cap = (size_t)m << 20;
        } else if (strncmp(a, "--judge-", 8) == 0) {
            int rc = judge_option(a, v, &g->jo);
            if (rc != V3_EXIT_OK) return rc;
            o->judge = &g->jo;
        } else if (strcmp(a, "--reward-dir") == 0) {
            if (g->n_user_dirs == MAX_DIRS) return v3_cli_usage_error(CMD, "too many --reward-dir");
            g->user_dirs[g->n_user_dirs++] = v;
        } else {
            return v3_cli_usage_error(CMD, "unknown option %s", a);
        }
    }
    if (g->ns == 0 && g->nm == 0) return v3_cli_usage_error(CMD, "--script or --reward-model is required");
    if (!g->data && !g->run) return v3_cli_usage_error(CMD, "--data or --run is required");
    if (g->data && g->run) return v3_cli_usage_error(CMD, "give --data or --run, not both");
    if (g->run && !g->has_step) return v3_cli_usage_error(CMD, "--run needs --step N");
    if (!g->run && (g->has_step || g->run_id))
        return v3_cli_usage_error(CMD, "--step and --run-id need --run");
    for (int i = 0; i < g->nm; i++) g->models[i].fallback = o->fallback;
    return V3_EXIT_OK;
}

/* --- the rows: a JSONL file --- */
static int run_data(const char *data, const v3_rm_mix *x, totals *tot, long *bad, v3_err *err) {
    FILE *f = strcmp(data, "-") == 0 ? stdin : fopen(data, "r");
    if (!f) return v3_errf(err, V3_EIO, "%s: %s", data, strerror(errno));
    row rows[BATCH];
    int nr = 0, rc = V3_OK;
    memset(rows, 0, sizeof rows);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
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
                (*bad)++;
            }
        }
        if (nr == BATCH || (got < 0 && nr > 0)) {
            rc = score_batch(x, rows, nr, tot, err);
            for (int i = 0; i < nr; i++) row_free(&rows[i]);
            nr = 0;
            if (rc != V3_OK) break;
        }
        if (got < 0) break;
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

/* --- the rows: the samples a run stored for one step --- */
typedef struct store_feed {
    const v3_rm_mix *x;
    totals *tot;
    row rows[BATCH];
    int nr;
    v3_err *err;
} store_feed;

static int feed_flush(store_feed *sf) {
    int rc = sf->nr ? score_batch(sf->x, sf->rows, sf->nr, sf->tot, sf->err) : V3_OK;
    for (int i = 0; i < sf->nr; i++) row_free(&sf->rows[i]);
    sf->nr = 0;
    return rc;
}

static int feed_row(void *ud, const v3_store_sample_row *s) {
    store_feed *sf = ud;
    if (row_from_store(&sf->rows[sf->nr], s)) {
        row_free(&sf->rows[sf->nr]);
        return v3_errf(sf->err, V3_ENOMEM, "out of memory");
    }
    if (++sf->nr < BATCH) return 0;
    return feed_flush(sf);
}

static int run_store(const args *g, const v3_rm_mix *x, totals *tot, v3_err *err) {
    char path[4200];
    struct stat st;
    if (stat(g->run, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/run.db", g->run);
    else snprintf(path, sizeof path, "%s", g->run);
    v3_store *s = NULL;
    int rc = v3_store_open(&s, path, V3_STORE_READ, err);
    if (rc) return rc;
    store_feed *sf = calloc(1, sizeof *sf);
    if (!sf) rc = v3_errf(err, V3_ENOMEM, "out of memory");
    if (!rc) {
        *sf = (store_feed){.x = x, .tot = tot, .err = err};
        v3_store_sample_query q = v3_store_sample_query_all();
        q.step = g->step;
        q.run_id = g->run_id;
        rc = v3_store_query_samples(s, &q, feed_row, sf, err);
        int rc2 = feed_flush(sf); /* also frees the rows left by a failure */
        if (!rc) rc = rc2;
    }
    free(sf);
    v3_err e2;
    v3_store_close(s, &e2);
    if (!rc && tot->rows == 0)
        rc = v3_errf(err, V3_ENOTFOUND, "%s: no samples at step %lld%s (v3tune samples %s --order recent "
                     "lists what it holds)", path, (long long)g->step, g->run_id ? " of that run" : "",
                     g->run);
    return rc;
}

static void summary(const v3_rm_mix *x, const totals *tot, double secs, long bad) {
    int nh = x->host ? v3_reward_host_n_funcs(x->host) : 0;
    for (int fi = 0; fi < v3_rm_mix_n_funcs(x); fi++) {
        const v3_reward_func_info *inf = v3_rm_mix_func(x, fi);
        fprintf(stderr, "%-20s weight %g  mean %.6g over %ld  errors %ld  skipped %ld  sha256 %.12s%s\n",
                inf->name, inf->weight, tot->scored[fi] ? tot->sum[fi] / (double)tot->scored[fi] : NAN,
                tot->scored[fi], tot->errors[fi], tot->skipped[fi], inf->sha256,
                fi >= nh ? "  (reward model)" : "");
        if (fi < nh && inf->is_judge) {
            v3_judge_stats js;
            v3_reward_host_judge_stats(x->host, fi, &js);
            fprintf(stderr, "%-20s judge: %lld requests, %lld attempts (%lld retries), %lld failed, "
                            "at most %d in flight\n",
                    "", (long long)js.requests, (long long)js.attempts, (long long)js.retries,
                    (long long)js.failures, js.max_in_flight_seen);
        }
    }
    fprintf(stderr, "%ld rows in %.3f s (%.1f samples/s), %ld bad rows\n", tot->rows, secs,
            secs > 0 ? (double)tot->rows / secs : 0.0, bad);
}

/* require: the scripts' own directories, then --reward-dir */
static int reward_dirs(const args *g, const char **dirs, char **store) {
    int nd = 0;
    for (int i = 0; i < g->ns && nd < MAX_DIRS; i++) {
        const char *p = g->scripts[i].path, *slash = strrchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : 1;
        char *d = malloc(len + 1);
        if (!d) break;
        memcpy(d, slash ? p : ".", len);
        d[len] = 0;
        int dup = 0;
        for (int k = 0; k < nd; k++) dup |= strcmp(dirs[k], d) == 0;
        if (dup) {
            free(d);
            continue;
        }
        store[nd] = d;
        dirs[nd++] = d;
    }
    for (int i = 0; i < g->n_user_dirs && nd < MAX_DIRS; i++) dirs[nd++] = g->user_dirs[i];
    return nd;
}

int v3_cmd_reward(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return V3_EXIT_OK;
    }
    args *g = calloc(1, sizeof *g);
    if (!g) return v3_cli_fail(CMD, "out of memory");
    int code = parse_args(argc, argv, g);
    char *dir_store[MAX_DIRS] = {0};
    const char *dirs[MAX_DIRS];
    v3_reward_host *h = NULL;
    v3_rm *rms[MAX_MODELS] = {0};
    v3_kctx ctx;
    int have_ctx = 0, nm = 0;
    v3_err err = {0};
    if (code != V3_EXIT_OK) goto out;
    g->o.scripts = g->scripts;
    g->o.n_scripts = g->ns;
    g->o.reward_dirs = dirs;
    g->o.n_reward_dirs = reward_dirs(g, dirs, dir_store);
    /* the host first: its workers fork from a process without a model */
    if (g->ns && v3_reward_host_init(&h, &g->o, &err) != V3_OK) {
        code = v3_cli_fail(CMD, "%s", err.msg);
        goto out;
    }
    if (g->nm) {
        const char *dev = g->rm_device ? g->rm_device : "cpu";
        const v3_backend *be = v3_backend_by_name(dev);
        if (!be) {
            code = v3_cli_fail(CMD, "--rm-device %s: no such backend in this build", dev);
            goto out;
        }
        if (v3_kctx_init(&ctx, be, g->threads, &err)) {
            code = v3_cli_fail(CMD, "%s", err.msg);
            goto out;
        }
        have_ctx = 1;
    }
    for (; nm < g->nm; nm++)
        if (v3_rm_init(&rms[nm], &g->models[nm], &ctx, &err)) {
            code = v3_cli_fail(CMD, "%s", err.msg);
            goto out;
        }
    v3_rm_mix x = {h, rms, nm};
    if (v3_rm_mix_check(&x, &err)) {
        code = v3_cli_fail(CMD, "%s", err.msg);
        goto out;
    }
    totals tot;
    memset(&tot, 0, sizeof tot);
    long bad = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = g->run ? run_store(g, &x, &tot, &err) : run_data(g->data, &x, &tot, &bad, &err);
    if (rc != V3_OK) code = v3_cli_fail(CMD, "%s", err.msg);
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    summary(&x, &tot, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, bad);
    if (bad && code == V3_EXIT_OK) code = V3_EXIT_FAIL;
out:
    for (int i = 0; i < nm; i++) v3_rm_free(rms[i]);
    if (have_ctx) v3_kctx_free(&ctx);
    v3_reward_host_free(h);
    for (int i = 0; i < MAX_DIRS; i++) free(dir_store[i]);
    free(g);
    return code;
}
