/* cmd_report.c — `v3tune report RUN_DIR [--out DIR]`: PNG charts of a run's metrics drawn with
 * gnuplot (loss with eval loss, learning rate, gradient norm, tokens/s, expert-load heatmap per
 * MoE layer; for GRPO runs also the reward curve per reward function, accuracy with the held-out
 * evaluations, KL, clip fractions, entropy, completion lengths, truncated and zero-std fractions,
 * the sampler/trainer logprob gap and the time split) and one index.html showing them with the
 * run's configuration. Reads run.db read-only; a run that continued from a checkpoint shows, per
 * step, the newest run's row. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/fs.h"

static const char *const help =
    "usage: v3tune report RUN_DIR [--out DIR]\n"
    "\n"
    "Writes DIR (default RUN_DIR/report)/index.html and its PNG charts from RUN_DIR/run.db:\n"
    "loss.png (train loss and val/loss), lr.png, grad_norm.png, tokens_per_s.png and\n"
    "expert_load_L<n>.png (share of routed tokens per expert and step, one per MoE layer).\n"
    "GRPO runs add rewards.png (the reward of each reward function and the total, with the\n"
    "held-out evaluations), accuracy.png, kl.png, clip.png, entropy.png, length.png,\n"
    "fractions.png, logprob_gap.png and time.png.\n"
    "Needs gnuplot on PATH.\n";

/* rows of the newest run for every step (a resumed run re-logs steps after its checkpoint) */
#define NEWEST(t) "run_id = (SELECT max(run_id) FROM " t " x WHERE x.step = " t ".step)"

/* Writes the result rows of sql as whitespace-separated columns; returns the row count or -1. */
static long dump(sqlite3 *db, const char *sql, const char *path) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
    FILE *f = fopen(path, "w");
    if (!f) {
        sqlite3_finalize(q);
        return -1;
    }
    long n = 0;
    int nc = sqlite3_column_count(q);
    while (sqlite3_step(q) == SQLITE_ROW) {
        for (int c = 0; c < nc; c++)
            fprintf(f, "%s%.10g", c ? " " : "", sqlite3_column_type(q, c) == SQLITE_NULL ? 0.0 : sqlite3_column_double(q, c));
        fputc('\n', f);
        n++;
    }
    fclose(f);
    sqlite3_finalize(q);
    return n;
}

static void html_escape(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

static int plot_line(FILE *gp, const char *out, const char *png, const char *title, const char *ylabel,
                     const char *dat, int col, int logy) {
    fprintf(gp, "set output '%s/%s'\nset title '%s'\nset xlabel 'step'\nset ylabel '%s'\n%s\n", out, png, title,
            ylabel, logy ? "set logscale y" : "unset logscale y");
    fprintf(gp, "plot '%s/%s' using 1:%d with lines lw 2 title '%s'\n", out, dat, col, ylabel);
    return 0;
}

/* One series of a chart: a metric per step (metrics table) or an evaluation (evals table). */
typedef struct series {
    const char *name;  /* metric or eval name */
    int eval;          /* from the evals table (drawn as points) */
} series;

/* Dumps each series to DIR/<png>_<i>.dat and plots the non-empty ones on one chart; returns 1
 * when the chart was drawn. */
static int metric_chart(sqlite3 *db, FILE *gp, const char *out, const char *png, const char *title,
                        const char *ylabel, const series *sr, int n, int logy) {
    char path[4400], sql[512];
    int drawn = 0;
    for (int i = 0; i < n; i++) {
        char *q = sqlite3_mprintf(sr[i].eval
                                      ? "SELECT step, value FROM evals e WHERE name = %Q AND value IS NOT NULL AND "
                                        "run_id = (SELECT max(run_id) FROM evals x WHERE x.step = e.step AND "
                                        "x.name = e.name) ORDER BY step"
                                      : "SELECT step, value FROM metrics m WHERE name = %Q AND run_id = (SELECT "
                                        "max(run_id) FROM metrics x WHERE x.step = m.step AND x.name = m.name) "
                                        "ORDER BY step",
                                  sr[i].name);
        snprintf(sql, sizeof sql, "%s", q);
        sqlite3_free(q);
        snprintf(path, sizeof path, "%s/%.*s_%d.dat", out, (int)strlen(png) - 4, png, i);
        if (dump(db, sql, path) <= 0) continue;
        if (!drawn)
            fprintf(gp, "set output '%s/%s'\nset title '%s'\nset xlabel 'step'\nset ylabel '%s'\n%s\nplot ", out, png,
                    title, ylabel, logy ? "set logscale y" : "unset logscale y");
        fprintf(gp, "%s'%s' using 1:2 with %s title '%s'", drawn ? ", " : "", path,
                sr[i].eval ? "linespoints lw 2 pt 7" : "lines lw 2", sr[i].name);
        drawn = 1;
    }
    if (drawn) fputc('\n', gp);
    return drawn;
}

/* The GRPO charts (when the run logged GRPO metrics); their file names go to pngs. */
static int grpo_charts(sqlite3 *db, FILE *gp, const char *out, char pngs[][64], int max) {
    int n = 0;
    /* the reward curve per function: rewards/<name>/mean, the total, and their evaluations */
    series sr[64];
    char names[64][160];
    int k = 0;
    sqlite3_stmt *q;
    sr[k++] = (series){"reward", 0};
    sr[k++] = (series){"eval/reward", 1};
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT name FROM metrics WHERE name LIKE 'rewards/%/mean' ORDER BY name",
                           -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW && k < 62) {
            snprintf(names[k], sizeof names[k], "%s", (const char *)sqlite3_column_text(q, 0));
            sr[k] = (series){names[k], 0};
            k++;
            /* eval/rewards/<name> */
            const char *nm = names[k - 1] + 8;
            int len = (int)strlen(nm) - 5;
            snprintf(names[k], sizeof names[k], "eval/rewards/%.*s", len > 0 ? len : 0, nm);
            sr[k] = (series){names[k], 1};
            k++;
        }
        sqlite3_finalize(q);
    }
    if (n < max && metric_chart(db, gp, out, "rewards.png", "reward per function (mean over samples)", "reward", sr, k, 0))
        snprintf(pngs[n++], 64, "rewards.png");
    static const struct {
        const char *png, *title, *ylabel;
        series s[4];
        int n, logy;
    } charts[] = {
        {"accuracy.png", "accuracy (reward named accuracy, else math)", "accuracy",
         {{"accuracy", 0}, {"eval/accuracy", 1}}, 2, 0},
        {"kl.png", "KL to the reference (k3)", "kl", {{"kl", 0}}, 1, 0},
        {"clip.png", "clipped ratio fractions", "fraction",
         {{"clip_ratio/low_mean", 0}, {"clip_ratio/high_mean", 0}, {"clip_ratio/region_mean", 0}}, 3, 0},
        {"entropy.png", "sampling entropy (mean over completion tokens)", "nats", {{"entropy", 0}}, 1, 0},
        {"length.png", "completion length", "tokens",
         {{"completions/mean_length", 0}, {"completions/max_length", 0}, {"eval/mean_length", 1}}, 3, 0},
        {"fractions.png", "truncated completions, zero-std and no-signal groups", "fraction",
         {{"completions/clipped_ratio", 0}, {"frac_reward_zero_std", 0}, {"frac_no_signal", 0}}, 3, 0},
        {"logprob_gap.png", "max |sampler - trainer| logprob (0 on the CPU)", "gap",
         {{"logprob_gap/max", 0}}, 1, 0},
        {"time.png", "time per step", "seconds",
         {{"time/rollout_s", 0}, {"time/reward_s", 0}, {"time/train_s", 0}, {"time/step_s", 0}}, 4, 0},
    };
    for (size_t i = 0; i < sizeof charts / sizeof charts[0] && n < max; i++)
        if (metric_chart(db, gp, out, charts[i].png, charts[i].title, charts[i].ylabel, charts[i].s, charts[i].n,
                         charts[i].logy))
            snprintf(pngs[n++], 64, "%s", charts[i].png);
    return n;
}

int v3_cmd_report(int argc, char **argv) {
    const char *cmd = "report";
    if (v3_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    const char *run = NULL, *outarg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) outarg = argv[++i];
        else if (argv[i][0] == '-' || run) return v3_cli_usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
        else run = argv[i];
    }
    if (!run) return v3_cli_usage_error(cmd, "RUN_DIR is required");
    char out[4096], db_path[4200], p[4400];
    snprintf(out, sizeof out, "%s", outarg ? outarg : run);
    if (!outarg) snprintf(out, sizeof out, "%s/report", run);
    snprintf(db_path, sizeof db_path, "%s/run.db", run);
    if (!v3_file_exists(db_path)) return v3_cli_fail(cmd, "%s: no run.db", run);
    v3_err err;
    if (v3_mkdirs(out, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        int rc = v3_cli_fail(cmd, "%s: %s", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return rc;
    }
    int rc = V3_EXIT_OK;
    snprintf(p, sizeof p, "%s/steps.dat", out);
    long n_steps = dump(db,
                        "SELECT s.step, s.loss, s.lr, s.grad_norm, "
                        " (SELECT value FROM metrics m WHERE m.run_id = s.run_id AND m.step = s.step "
                        "  AND m.name = 'tokens_per_s') FROM steps s WHERE s.run_id = (SELECT max(run_id) FROM steps x "
                        " WHERE x.step = s.step) ORDER BY s.step",
                        p);
    snprintf(p, sizeof p, "%s/eval.dat", out);
    long n_eval = dump(db, "SELECT step, value FROM evals WHERE name = 'val/loss' AND " NEWEST("evals") " ORDER BY step", p);
    if (n_steps <= 0) {
        sqlite3_close(db);
        return v3_cli_fail(cmd, "%s: no steps logged", db_path);
    }
    /* MoE layers with load records */
    int layers[256], n_layers = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT layer FROM expert_load ORDER BY layer", -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW && n_layers < 256) layers[n_layers++] = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    for (int i = 0; i < n_layers; i++) {
        char sql[512];
        /* share of the layer's routed tokens per (step, expert): a heatmap that is flat when
         * balanced */
        snprintf(sql, sizeof sql,
                 "SELECT e.step, e.expert, CAST(e.tokens AS REAL) / (SELECT sum(tokens) FROM expert_load t "
                 "WHERE t.run_id = e.run_id AND t.step = e.step AND t.layer = e.layer) FROM expert_load e "
                 "WHERE e.layer = %d AND run_id = (SELECT max(run_id) FROM expert_load x WHERE x.step = e.step) "
                 "ORDER BY e.step, e.expert",
                 layers[i]);
        snprintf(p, sizeof p, "%s/load_%d.dat", out, layers[i]);
        dump(db, sql, p);
    }
    int is_grpo = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM metrics WHERE name = 'reward'", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) is_grpo = sqlite3_column_int(q, 0) > 0;
        sqlite3_finalize(q);
    }
    char *config = NULL, *status = NULL;
    if (sqlite3_prepare_v2(db, "SELECT config, status FROM runs ORDER BY id DESC LIMIT 1", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) {
            const unsigned char *c = sqlite3_column_text(q, 0), *s = sqlite3_column_text(q, 1);
            config = strdup(c ? (const char *)c : "");
            status = strdup(s ? (const char *)s : "");
        }
        sqlite3_finalize(q);
    }

    /* charts */
    char grpo_pngs[16][64];
    int n_grpo = 0;
    FILE *gp = popen("gnuplot 2>&1", "w");
    if (!gp) {
        sqlite3_close(db);
        rc = v3_cli_fail(cmd, "cannot run gnuplot");
        goto out;
    }
    fprintf(gp, "set terminal png size 900,500 noenhanced\nset grid\nset key top right\n");
    fprintf(gp, "set output '%s/loss.png'\nset title 'loss'\nset xlabel 'step'\nset ylabel 'loss'\n", out);
    fprintf(gp, "plot '%s/steps.dat' using 1:2 with lines lw 2 title 'train'", out);
    if (n_eval > 0) fprintf(gp, ", '%s/eval.dat' using 1:2 with linespoints lw 2 pt 7 title 'val/loss'", out);
    fputc('\n', gp);
    plot_line(gp, out, "lr.png", "learning rate", "lr", "steps.dat", 3, 0);
    plot_line(gp, out, "grad_norm.png", "gradient norm (before clipping)", "grad norm", "steps.dat", 4, 1);
    plot_line(gp, out, "tokens_per_s.png", "throughput", "tokens/s", "steps.dat", 5, 0);
    fprintf(gp, "unset logscale y\n");
    if (is_grpo) n_grpo = grpo_charts(db, gp, out, grpo_pngs, 16);
    fprintf(gp, "unset logscale y\n");
    for (int i = 0; i < n_layers; i++) {
        fprintf(gp,
                "set output '%s/expert_load_L%d.png'\nset title 'expert load, layer %d (share of routed "
                "tokens)'\nset xlabel 'step'\nset ylabel 'expert'\nset cblabel 'share'\n"
                "plot '%s/load_%d.dat' using 1:2:3 with image notitle\n",
                out, layers[i], layers[i], out, layers[i]);
    }
    sqlite3_close(db);
    if (pclose(gp) != 0) {
        rc = v3_cli_fail(cmd, "gnuplot failed");
        goto out;
    }

    /* the page */
    snprintf(p, sizeof p, "%s/index.html", out);
    FILE *h = fopen(p, "w");
    if (!h) {
        rc = v3_cli_fail(cmd, "%s: cannot write", p);
        goto out;
    }
    fprintf(h, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>v3tune report: ");
    html_escape(h, run);
    fprintf(h, "</title>\n<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
               "img{max-width:100%%}pre{background:#f4f4f4;padding:8px;overflow-x:auto}</style>"
               "</head><body>\n<h1>v3tune run ");
    html_escape(h, run);
    fprintf(h, "</h1>\n<p>status: %s; %ld steps logged; %ld evaluations</p>\n", status ? status : "?", n_steps,
            n_eval > 0 ? n_eval : 0);
    static const char *const charts[] = {"loss.png", "lr.png", "grad_norm.png", "tokens_per_s.png"};
    for (int i = 0; i < 4; i++) fprintf(h, "<p><img src=\"%s\" alt=\"%s\"></p>\n", charts[i], charts[i]);
    if (n_grpo) fprintf(h, "<h2>GRPO</h2>\n");
    for (int i = 0; i < n_grpo; i++) fprintf(h, "<p><img src=\"%s\" alt=\"%s\"></p>\n", grpo_pngs[i], grpo_pngs[i]);
    if (n_layers) fprintf(h, "<h2>Expert load</h2>\n");
    for (int i = 0; i < n_layers; i++)
        fprintf(h, "<p><img src=\"expert_load_L%d.png\" alt=\"layer %d\"></p>\n", layers[i], layers[i]);
    fprintf(h, "<h2>Configuration</h2>\n<pre>");
    html_escape(h, config);
    fprintf(h, "</pre>\n</body></html>\n");
    if (fclose(h)) rc = v3_cli_fail(cmd, "%s: write failed", p);
    else printf("report: %s/index.html (%ld steps, %d MoE layers)\n", out, n_steps, n_layers);
out:
    free(config);
    free(status);
    return rc;
}
