/* cmd_samples.c — `v3tune samples`: shows the samples a run stored, with the prompt, the
 * completion, each reward function's score (or error) and the advantage; filters map onto the
 * store's indices (step, prompt, reward) and --where adds any SQL condition. Read-only: the run.db
 * is opened with mode=ro, so looking at a live run never disturbs it. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "datasets/blob.h"
#include "datasets/store.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: v3tune samples RUN_DIR [options]\n\n"
            "Show samples stored by a run (RUN_DIR is a run directory or its run.db).\n\n"
            "filters:\n"
            "  --run ID          only this run (a resumed run adds a run; default: all)\n"
            "  --step N          only samples generated at optimizer step N\n"
            "  --prompt ID       only completions of prompt ID\n"
            "  --min-reward X    total reward >= X\n"
            "  --max-reward X    total reward <= X\n"
            "  --where SQL       extra SQL condition on samples (alias s) and prompts (alias p),\n"
            "                    e.g. --where \"s.finish_reason = 'length'\"\n"
            "output:\n"
            "  --order ORDER     id (default) | best | worst (by reward; unscored samples are\n"
            "                    skipped) | recent\n"
            "  --limit K         at most K samples (default 20; 0 = all)\n"
            "  --json            one JSON object per line\n"
            "  --tokens          with --json: add token_ids and the logprob arrays\n"
            "  --full            text mode: do not shorten long prompts and completions\n\n"
            "examples:\n"
            "  v3tune samples runs/grpo1 --order best --limit 5\n"
            "  v3tune samples runs/grpo1 --step 120 --max-reward 0 --json | jq .completion\n");
}

typedef struct opts {
    int json, tokens, full;
    long long shown;
} opts;

static int takes_value(const char *a) {
    static const char *const names[] = {"--step", "--run", "--prompt", "--min-reward",
                                        "--max-reward", "--limit", "--where", "--order"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(a, names[i])) return 1;
    return 0;
}

static int parse_i64(const char *s, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_f64(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !*s || *end || isnan(v)) return -1;
    *out = v;
    return 0;
}

/* RUN_DIR may be a directory holding run.db or the file itself. */
static void resolve(const char *arg, char *buf, size_t n) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(buf, n, "%s/run.db", arg);
    else snprintf(buf, n, "%s", arg);
}

static json_t *num_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* A stored JSON text becomes nested JSON when it parses, a string otherwise. */
static json_t *json_text(const char *t) {
    if (!t) return json_null();
    json_t *j = json_loads(t, JSON_DECODE_ANY, NULL);
    return j ? j : json_string(t);
}

static json_t *f32_array(const uint8_t *blob, int32_t n) {
    if (!blob) return json_null();
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) {
        float v;
        v3_blob_get_f32(&v, blob + 4 * (size_t)i, 1);
        json_array_append_new(a, isfinite(v) ? json_real(v) : json_null());
    }
    return a;
}

static int print_json(const v3_store_sample_row *r, const opts *o) {
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer(r->id));
    json_object_set_new(j, "run", json_integer(r->run_id));
    json_object_set_new(j, "step", json_integer(r->step));
    json_object_set_new(j, "prompt_id", json_integer(r->prompt_id));
    json_object_set_new(j, "group", json_integer(r->group_id));
    json_object_set_new(j, "index", json_integer(r->group_index));
    json_object_set_new(j, "prompt", r->prompt_text ? json_string(r->prompt_text) : json_null());
    json_object_set_new(j, "messages", json_text(r->prompt_messages));
    json_object_set_new(j, "fields", json_text(r->prompt_fields));
    json_object_set_new(j, "completion", json_string(r->completion ? r->completion : ""));
    json_object_set_new(j, "finish_reason",
                        r->finish_reason ? json_string(r->finish_reason) : json_null());
    json_object_set_new(j, "prompt_tokens",
                        r->prompt_tokens >= 0 ? json_integer(r->prompt_tokens) : json_null());
    json_object_set_new(j, "completion_tokens", json_integer(r->completion_tokens));
    json_object_set_new(j, "policy_version", json_integer(r->policy_version));
    json_object_set_new(j, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(j, "reward", num_or_null(r->reward));
    json_object_set_new(j, "advantage", num_or_null(r->advantage));
    json_t *rw = json_object();
    for (int i = 0; i < r->n_rewards; i++) {
        const v3_store_reward_row *x = &r->rewards[i];
        json_t *e = json_object();
        json_object_set_new(e, "score", num_or_null(x->score));
        if (x->error) json_object_set_new(e, "error", json_string(x->error));
        if (x->extra_json) json_object_set_new(e, "extra", json_text(x->extra_json));
        if (!isnan(x->weight)) json_object_set_new(e, "weight", json_real(x->weight));
        json_object_set_new(rw, x->name, e);
    }
    json_object_set_new(j, "rewards", rw);
    if (o->tokens) {
        json_t *ids = json_array();
        for (int32_t i = 0; i < r->n_ids; i++) {
            uint32_t v;
            v3_blob_get_u32(&v, r->token_ids + 4 * (size_t)i, 1);
            json_array_append_new(ids, json_integer(v));
        }
        json_object_set_new(j, "token_ids", r->token_ids ? ids : (json_decref(ids), json_null()));
        json_object_set_new(j, "logprobs", f32_array(r->logprobs, r->n_logprobs));
        json_object_set_new(j, "trainer_logprobs",
                            f32_array(r->trainer_logprobs, r->n_trainer_logprobs));
        json_object_set_new(j, "ref_logprobs", f32_array(r->ref_logprobs, r->n_ref_logprobs));
    }
    /* 10 significant digits: every float32 logprob round-trips, rewards print as written */
    char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!line) return V3_ENOMEM;
    puts(line);
    free(line);
    return 0;
}

/* Prints text with every line after the first indented, shortened unless --full. */
static void print_block(const char *label, const char *text, const opts *o) {
    const size_t max = 600;
    size_t n = text ? strlen(text) : 0;
    size_t show = (!o->full && n > max) ? max : n;
    printf("  %-12s", label);
    for (size_t i = 0; i < show; i++) {
        putchar(text[i]);
        if (text[i] == '\n') fputs("              ", stdout);
    }
    if (show < n) printf(" … (%zu more bytes; --full shows all)", n - show);
    putchar('\n');
}

static int print_text(const v3_store_sample_row *r, const opts *o) {
    char ptok[16] = "?";
    if (r->prompt_tokens >= 0) snprintf(ptok, sizeof ptok, "%d", r->prompt_tokens);
    printf("#%lld  run %lld  step %lld  prompt %lld  group %lld[%d]  %s  %s+%d tokens  policy %lld\n",
           (long long)r->id, (long long)r->run_id, (long long)r->step, (long long)r->prompt_id,
           (long long)r->group_id, r->group_index, r->finish_reason ? r->finish_reason : "-", ptok,
           r->completion_tokens, (long long)r->policy_version);
    printf("  reward      ");
    if (isnan(r->reward)) printf("-");
    else printf("%.4f", r->reward);
    printf("   advantage ");
    if (isnan(r->advantage)) printf("-");
    else printf("%+.4f", r->advantage);
    if (r->n_rewards) {
        printf("   (");
        for (int i = 0; i < r->n_rewards; i++) {
            const v3_store_reward_row *x = &r->rewards[i];
            printf("%s%s=", i ? ", " : "", x->name);
            if (!isnan(x->score)) printf("%.4f", x->score);
            else printf("none");
            if (x->error) printf(" [error: %s]", x->error);
        }
        printf(")");
    }
    printf("\n");
    print_block("prompt:", r->prompt_text ? r->prompt_text : r->prompt_messages, o);
    print_block("completion:", r->completion, o);
    printf("\n");
    return 0;
}

static int on_row(void *ud, const v3_store_sample_row *r) {
    opts *o = ud;
    o->shown++;
    return o->json ? print_json(r, o) : print_text(r, o);
}

int v3_cmd_samples(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        usage(stdout);
        return V3_EXIT_OK;
    }
    v3_store_sample_query q = v3_store_sample_query_all();
    q.limit = 20;
    opts o = {0};
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--json")) o.json = 1, takes = 0;
        else if (!strcmp(a, "--tokens")) o.tokens = 1, takes = 0;
        else if (!strcmp(a, "--full")) o.full = 1, takes = 0;
        else if (!v && takes_value(a))
            return v3_cli_usage_error("samples", "%s needs a value", a);
        else if (!strcmp(a, "--step")) {
            if (parse_i64(v, &q.step) || q.step < 0)
                return v3_cli_usage_error("samples", "--step: \"%s\" is not a step number", v);
        } else if (!strcmp(a, "--run")) {
            if (parse_i64(v, &q.run_id) || q.run_id <= 0)
                return v3_cli_usage_error("samples", "--run: \"%s\" is not a run id", v);
        } else if (!strcmp(a, "--prompt")) {
            if (parse_i64(v, &q.prompt_id) || q.prompt_id < 0)
                return v3_cli_usage_error("samples", "--prompt: \"%s\" is not a prompt id", v);
        } else if (!strcmp(a, "--min-reward")) {
            if (parse_f64(v, &q.min_reward))
                return v3_cli_usage_error("samples", "--min-reward: \"%s\" is not a number", v);
        } else if (!strcmp(a, "--max-reward")) {
            if (parse_f64(v, &q.max_reward))
                return v3_cli_usage_error("samples", "--max-reward: \"%s\" is not a number", v);
        } else if (!strcmp(a, "--limit")) {
            if (parse_i64(v, &q.limit) || q.limit < 0)
                return v3_cli_usage_error("samples", "--limit: \"%s\" is not a count", v);
        } else if (!strcmp(a, "--where")) {
            q.where = v;
        } else if (!strcmp(a, "--order")) {
            if (!strcmp(v, "id")) q.order = V3_STORE_ORDER_ID;
            else if (!strcmp(v, "best")) q.order = V3_STORE_ORDER_BEST;
            else if (!strcmp(v, "worst")) q.order = V3_STORE_ORDER_WORST;
            else if (!strcmp(v, "recent")) q.order = V3_STORE_ORDER_RECENT;
            else return v3_cli_usage_error("samples", "--order: \"%s\" is not id, best, worst or recent", v);
        } else if (a[0] == '-' && a[1]) {
            return v3_cli_usage_error("samples", "unknown option %s", a);
        } else {
            if (dir) return v3_cli_usage_error("samples", "one RUN_DIR only (got \"%s\" and \"%s\")", dir, a);
            dir = a;
            takes = 0;
        }
        i += takes;
    }
    if (!dir) return v3_cli_usage_error("samples", "missing RUN_DIR");
    if (o.tokens && !o.json) return v3_cli_usage_error("samples", "--tokens needs --json");
    if (!isnan(q.min_reward) && !isnan(q.max_reward) && q.min_reward > q.max_reward)
        return v3_cli_usage_error("samples", "--min-reward is above --max-reward");

    char path[4096];
    resolve(dir, path, sizeof path);
    v3_err err = {0};
    v3_store *s = NULL;
    if (v3_store_open(&s, path, V3_STORE_READ, &err)) return v3_cli_fail("samples", "%s", err.msg);
    int rc = v3_store_query_samples(s, &q, on_row, &o, &err);
    v3_store_close(s, NULL);
    if (rc == V3_EUSAGE) return v3_cli_usage_error("samples", "%s", err.msg);
    if (rc) return v3_cli_fail("samples", "%s", err.msg);
    if (fflush(stdout) != 0) return v3_cli_fail("samples", "writing the output failed");
    if (!o.json && o.shown == 0) fprintf(stderr, "v3tune samples: no sample matches\n");
    return V3_EXIT_OK;
}
