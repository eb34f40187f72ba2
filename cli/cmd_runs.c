/* cmd_runs.c — `v3tune runs [DIR]`: one line per run found in DIR (DIR itself when it holds a
 * run.db, each subdirectory that holds one, or DIR given as a run.db file), with status and
 * headline metrics. A run whose status says "running" while no process holds its writer lock is
 * shown as "dead" (it crashed or was killed). Read-only, like every reader of the store. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "datasets/store.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: v3tune runs [DIR] [--json]\n\n"
            "List the runs stored in DIR (default: the current directory): DIR/run.db and every\n"
            "DIR/*/run.db, or DIR itself when it is a run.db file. For each run: id, command,\n"
            "status, start time (UTC), optimizer steps logged, last loss, samples stored and the\n"
            "mean reward of the last step that produced samples.\n\n"
            "status: running | completed | failed | interrupted | dead (marked running, but no\n"
            "process is writing it: it crashed or was killed)\n\n"
            "  --json   one JSON object per run and line\n");
}

typedef struct ctx {
    const char *label;
    int json;
    int n;
} ctx;

static void fmt_time(double t, char *buf, size_t n) {
    if (isnan(t)) {
        snprintf(buf, n, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static const char *shown_status(const v3_store_run_summary *r) {
    return r->stale ? "dead" : r->status ? r->status : "?";
}

static int on_run(void *ud, const v3_store_run_summary *r) {
    ctx *c = ud;
    c->n++;
    if (c->json) {
        json_t *j = json_object();
        json_object_set_new(j, "dir", json_string(c->label));
        json_object_set_new(j, "id", json_integer(r->id));
        json_object_set_new(j, "command", json_string(r->command ? r->command : ""));
        json_object_set_new(j, "status", json_string(shown_status(r)));
        json_object_set_new(j, "started_at", isnan(r->started_at) ? json_null() : json_real(r->started_at));
        json_object_set_new(j, "ended_at", isnan(r->ended_at) ? json_null() : json_real(r->ended_at));
        json_object_set_new(j, "steps", json_integer(r->n_steps));
        json_object_set_new(j, "last_step", r->last_step >= 0 ? json_integer(r->last_step) : json_null());
        json_object_set_new(j, "last_loss", isnan(r->last_loss) ? json_null() : json_real(r->last_loss));
        json_object_set_new(j, "samples", json_integer(r->n_samples));
        json_object_set_new(j, "last_step_mean_reward",
                            isnan(r->last_step_mean_reward) ? json_null()
                                                            : json_real(r->last_step_mean_reward));
        if (r->resumed_from > 0) json_object_set_new(j, "resumed_from", json_integer(r->resumed_from));
        if (r->git_rev) json_object_set_new(j, "git_rev", json_string(r->git_rev));
        if (r->message) json_object_set_new(j, "message", json_string(r->message));
        char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(j);
        if (line) puts(line);
        free(line);
        return 0;
    }
    char started[32], loss[32], reward[32];
    fmt_time(r->started_at, started, sizeof started);
    if (isnan(r->last_loss)) snprintf(loss, sizeof loss, "-");
    else snprintf(loss, sizeof loss, "%.4f", r->last_loss);
    if (isnan(r->last_step_mean_reward)) snprintf(reward, sizeof reward, "-");
    else snprintf(reward, sizeof reward, "%.4f", r->last_step_mean_reward);
    printf("%-28s %4lld  %-10s %-12s %-19s %7lld %10s %10lld %10s\n", c->label, (long long)r->id,
           r->command ? r->command : "?", shown_status(r), started, (long long)r->n_steps, loss,
           (long long)r->n_samples, reward);
    return 0;
}

/* Lists one run.db; returns 0, or 1 after printing why it could not be read. */
static int list_one(const char *db, const char *label, ctx *c) {
    v3_err err = {0};
    v3_store *s = NULL;
    c->label = label;
    if (v3_store_open(&s, db, V3_STORE_READ, &err) ||
        v3_store_list_runs(s, on_run, c, &err)) {
        v3_store_close(s, NULL);
        v3_cli_fail("runs", "%s", err.msg);
        return 1;
    }
    v3_store_close(s, NULL);
    return 0;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int v3_cmd_runs(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        usage(stdout);
        return V3_EXIT_OK;
    }
    const char *dir = NULL;
    ctx c = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) c.json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return v3_cli_usage_error("runs", "unknown option %s", argv[i]);
        else if (dir) return v3_cli_usage_error("runs", "one DIR only");
        else dir = argv[i];
    }
    if (!dir) dir = ".";
    struct stat st;
    if (stat(dir, &st) != 0) return v3_cli_fail("runs", "%s: no such file or directory", dir);
    if (!c.json)
        printf("%-28s %4s  %-10s %-12s %-19s %7s %10s %10s %10s\n", "DIR", "RUN", "COMMAND", "STATUS",
               "STARTED (UTC)", "STEPS", "LAST LOSS", "SAMPLES", "REWARD");
    int failed = 0;
    if (S_ISREG(st.st_mode)) {
        failed |= list_one(dir, dir, &c);
    } else {
        char path[4200];
        snprintf(path, sizeof path, "%s/run.db", dir);
        if (is_file(path)) failed |= list_one(path, dir, &c);
        struct dirent **ents = NULL;
        int n = scandir(dir, &ents, NULL, alphasort);
        if (n < 0) return v3_cli_fail("runs", "%s: cannot list the directory", dir);
        for (int i = 0; i < n; i++) {
            const char *name = ents[i]->d_name;
            if (name[0] != '.') {
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", dir, name);
                snprintf(path, sizeof path, "%s/run.db", sub);
                if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode) && is_file(path))
                    failed |= list_one(path, sub, &c);
            }
            free(ents[i]);
        }
        free(ents);
    }
    if (c.n == 0 && !failed && !c.json) fprintf(stderr, "v3tune runs: no runs under %s\n", dir);
    return failed ? V3_EXIT_FAIL : V3_EXIT_OK;
}
