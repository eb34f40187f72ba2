/* test_sft_e2e.c — the SFT trainer end to end on the CPU: a tiny DeepSeek-V3 (the "tiny" preset,
 * real vocabulary) trained on real GSM8K conversations (question -> answer, loss on the answer).
 *   1. A run killed with SIGKILL mid-training (after its step-4 checkpoint) and resumed gives the
 *      same per-step losses, grad norms and eval losses, bit for bit, as an uninterrupted run.
 *   2. The uninterrupted run's loss falls by at least 1.5 nats (first 3 vs last 3 steps); eval
 *      runs; run.db holds steps, metrics, evals, expert load and checkpoints; only the last
 *      ckpt.keep checkpoints remain, each complete (weights, optimizer, trainer state) and no
 *      *.tmp directory is left.
 * Skipped (77) when the shared data (GSM8K, tokenizer) is absent. */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/rng.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"
#include "sftcase.h"
#include "testutil.h"
#include "trainer/ckpt.h"
#include "trainer/sft.h"

#define STEPS 12

static const char *const fields[] = {"prompt=question", "completion=answer"};

static void opts_for(v3_sft_opts *o, const char *model, const char *data, const char *run,
                     const char *tok) {
    static const char *tf[1];
    tf[0] = data;
    v3_sft_opts_default(o);
    o->model_dir = model;
    o->run_dir = run;
    o->tokenizer_dir = tok;
    o->train = tf;
    o->n_train = 1;
    o->eval_fraction = 0.1;
    o->format = "prompt_completion";
    o->fields = fields;
    o->n_fields = 2;
    o->seq_len = 128;
    o->micro_batch_tokens = 128;
    o->grad_accum = 1; /* tests/cli/test_sft.sh covers grad_accum 2 */
    o->steps = STEPS;
    o->eval_every = 6;
    o->eval_batches = 1;
    o->seed = 99;
    o->sched = (v3_schedule){.kind = V3_SCHED_COSINE, .lr = 2e-2, .min_lr = 2e-3, .warmup = 2};
    o->router_gamma = 1e-3f;
    o->balance_alpha = 1e-4f;
    o->ckpt_every = 4;
    o->ckpt_keep = 2;
    o->threads = 2;
    o->log = NULL;
    o->tty = 0;
}

typedef struct series {
    int n;
    double loss[STEPS + 1], gnorm[STEPS + 1];
    int64_t step[STEPS + 1];
    double eval[8];
    int n_eval;
} series;

/* steps of the newest run in db (a resumed run logs from its checkpoint on) merged over runs:
 * for every step the row of the latest run that logged it */
static void read_series(const char *run_dir, series *s) {
    char p[1200];
    snprintf(p, sizeof p, "%s/run.db", run_dir);
    sqlite3 *db;
    memset(s, 0, sizeof *s);
    CHECK(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "open %s", p);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db,
                       "SELECT step, loss, grad_norm FROM steps s WHERE run_id = (SELECT max(run_id) "
                       "FROM steps t WHERE t.step = s.step) ORDER BY step",
                       -1, &q, NULL);
    while (sqlite3_step(q) == SQLITE_ROW && s->n <= STEPS) {
        s->step[s->n] = sqlite3_column_int64(q, 0);
        s->loss[s->n] = sqlite3_column_double(q, 1);
        s->gnorm[s->n] = sqlite3_column_double(q, 2);
        s->n++;
    }
    sqlite3_finalize(q);
    sqlite3_prepare_v2(db,
                       "SELECT value FROM evals e WHERE run_id = (SELECT max(run_id) FROM evals f "
                       "WHERE f.step = e.step) ORDER BY step",
                       -1, &q, NULL);
    while (sqlite3_step(q) == SQLITE_ROW && s->n_eval < 8) s->eval[s->n_eval++] = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static int64_t count(const char *run_dir, const char *sql) {
    char p[1200];
    snprintf(p, sizeof p, "%s/run.db", run_dir);
    sqlite3 *db;
    int64_t n = -1;
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -1;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

int main(void) {
    sft_paths sp;
    int prep = sft_case_prepare(&sp, "test_sft_e2e", "run_a", "run_b");
    if (prep == 77) return 77;
    if (prep) return t_finish("test_sft_e2e");
    const char *tok = sp.tok, *tmp = sp.tmp, *model = sp.model, *data = sp.data, *ra = sp.ra,
               *rb = sp.rb;
    char p[1400];
    v3_err err;
    v3_sft_opts o;

    /* run B in a child, killed once its step-10 checkpoint exists: forked before this process
     * starts OpenMP threads (fork after OpenMP is unsafe in libgomp) */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        opts_for(&o, model, data, rb, tok);
        _exit(v3_sft_run(&o, &err) ? 1 : 0);
    }
    snprintf(p, sizeof p, "%s/step-4/trainer_state.json", rb);
    int killed = 0;
    for (int i = 0; i < 6000 && !killed; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) break; /* finished before the kill: a failure */
        if (v3_file_exists(p)) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        } else {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(killed, "run B was not killed mid-training");
    int64_t latest = -1;
    char lp[1400];
    CHECK_OK(v3_ckpt_latest(rb, &latest, lp, sizeof lp, &err), &err);
    printf("run B killed; latest complete checkpoint step-%lld\n", (long long)latest);
    CHECK(latest >= 4 && latest < STEPS, "killed mid-training (latest %lld)", (long long)latest);

    /* without --resume the trainer refuses to overwrite */
    opts_for(&o, model, data, rb, tok);
    CHECK(v3_sft_run(&o, &err) == V3_EINVAL && strstr(err.msg, "--resume"), "refuses without resume: %s", err.msg);
    o.resume = 1;
    CHECK_OK(v3_sft_run(&o, &err), &err);

    /* run A uninterrupted */
    opts_for(&o, model, data, ra, tok);
    CHECK_OK(v3_sft_run(&o, &err), &err);

    series a, b;
    read_series(ra, &a);
    read_series(rb, &b);
    CHECK(a.n == STEPS && b.n == STEPS, "steps logged: %d, %d", a.n, b.n);
    int same = a.n == b.n;
    for (int i = 0; i < a.n && i < b.n; i++)
        if (a.loss[i] != b.loss[i] || a.gnorm[i] != b.gnorm[i] || a.step[i] != b.step[i]) {
            same = 0;
            fprintf(stderr, "step %lld: loss %.17g vs %.17g, grad norm %.17g vs %.17g\n", (long long)a.step[i],
                    a.loss[i], b.loss[i], a.gnorm[i], b.gnorm[i]);
        }
    CHECK(same, "resumed run differs from the uninterrupted one");
    CHECK(a.n_eval == 2 && b.n_eval == 2, "evals at steps 6, 12: %d, %d", a.n_eval, b.n_eval);
    for (int i = 0; i < a.n_eval && i < b.n_eval; i++)
        CHECK(a.eval[i] == b.eval[i], "eval %d: %.17g vs %.17g", i, a.eval[i], b.eval[i]);

    /* learning */
    double first = (a.loss[0] + a.loss[1] + a.loss[2]) / 3, last = 0;
    for (int i = a.n - 3; i < a.n; i++) last += a.loss[i] / 3;
    printf("loss: first 3 steps %.4f, last 3 steps %.4f; eval %.4f -> %.4f\n", first, last, a.eval[0],
           a.eval[a.n_eval ? a.n_eval - 1 : 0]);
    CHECK(first - last >= 1.5, "loss fell by only %.3f nats (%.3f -> %.3f)", first - last, first, last);
    CHECK(a.n_eval >= 2 && a.eval[a.n_eval - 1] < a.eval[0], "eval loss did not fall");

    /* run.db contents and the checkpoints on disk */
    CHECK(count(ra, "SELECT count(*) FROM expert_load") == (int64_t)STEPS * 2 * 8,
          "expert load rows: %lld", (long long)count(ra, "SELECT count(*) FROM expert_load"));
    CHECK(count(ra, "SELECT count(*) FROM metrics WHERE name='tokens_per_s'") == STEPS, "metrics");
    CHECK(count(ra, "SELECT count(*) FROM checkpoints") == 3, "checkpoint rows (4, 8, 12)");
    CHECK(count(ra, "SELECT count(*) FROM runs WHERE status='completed'") == 1, "run completed");
    CHECK(count(rb, "SELECT count(*) FROM runs WHERE resumed_from IS NOT NULL AND status='completed'") == 1,
          "resumed run recorded");
    static const char *const present[] = {"step-8", "step-12"}, *const gone[] = {"step-4"};
    for (int i = 0; i < 2; i++) {
        static const char *const files[] = {"model.safetensors", "config.json", "optim.bin", "trainer_state.json",
                                            "tokenizer.json"};
        for (int f = 0; f < 5; f++) {
            snprintf(p, sizeof p, "%s/%s/%s", ra, present[i], files[f]);
            CHECK(v3_file_exists(p), "missing %s", p);
        }
        snprintf(p, sizeof p, "%s/%s.tmp", ra, present[i]);
        CHECK(!v3_dir_exists(p), "left %s", p);
    }
    for (int i = 0; i < 1; i++) {
        snprintf(p, sizeof p, "%s/%s", ra, gone[i]);
        CHECK(!v3_dir_exists(p), "%s should be pruned (keep 2)", p);
    }
    if (!t_failures) v3_rmtree(tmp, &err);
    return t_finish("test_sft_e2e");
}
