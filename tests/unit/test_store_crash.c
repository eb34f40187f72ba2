/* test_store_crash.c — crash safety of the run store under SIGKILL.
 * A child process writes batches (NB samples + one step row each, so a batch is checkable on its
 * own) and reports, through a pipe, every batch whose commit it has seen return. The parent kills
 * it with SIGKILL at a random moment — while creating the file, migrating, between commits, in the
 * middle of a transaction or a checkpoint — then checks: PRAGMA integrity_check is "ok", every
 * reported batch is present, no batch is partly present, batches form a gap-free prefix of what
 * was submitted, and the next child can open the file and continue the run's writing. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datasets/store.h"
#include "testutil.h"

#define NB 16          /* samples per batch */
#define N_KILLS 40     /* kills on one growing store */
#define N_FRESH 10     /* kills during creation of a new store */

/* The child: writes batches with steps base, base+1, ... forever, reporting committed ones. */
static void child_write(const char *path, int64_t base, uint64_t seed, int fd) {
    v3_err err = {0};
    v3_store *s = NULL;
    v3_rng rng;
    v3_rng_seed(&rng, seed);
    /* small WAL thresholds: checkpoints run (and get killed) all the time, not once per 32 MiB */
    v3_store_opts o = {.wal_checkpoint_bytes = 64 << 10, .wal_max_bytes = 512 << 10};
    if (v3_store_open_opts(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &o, &err)) goto fail;
    int64_t run = 0, pid = 0;
    if (v3_store_run_begin(s, &(v3_store_run_info){.command = "crash-test"}, &run, &err)) goto fail;
    enum { RING = 4096 };
    uint64_t seqs[RING];
    int64_t steps[RING];
    int head = 0, tail = 0;
    uint32_t ids[512];
    float lp[512];
    char text[2048];
    for (int64_t k = base;; k++) {
        v3_store_batch *b = NULL;
        if (v3_store_batch_new(s, &b, &err)) goto fail;
        char ptext[64];
        snprintf(ptext, sizeof ptext, "prompt %d", (int)(k % 7)); /* repeats: exercises dedupe */
        if (v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = ptext}, &pid, &err)) goto fail;
        for (int i = 0; i < NB; i++) {
            int n = 32 + (int)v3_rng_below(&rng, 480);
            for (int t = 0; t < n; t++) {
                ids[t] = (uint32_t)v3_rng_below(&rng, 129280);
                lp[t] = -v3_rng_uniform(&rng);
            }
            int m = (int)v3_rng_below(&rng, sizeof text - 1);
            memset(text, 'a' + (int)(k % 26), (size_t)m);
            text[m] = 0;
            int64_t sid = 0;
            if (v3_store_batch_add_sample(b, &(v3_store_sample){.step = k, .prompt_id = pid,
                    .group_id = i / 4, .group_index = i % 4, .completion = text, .n_tokens = n,
                    .token_ids = ids, .logprobs = lp, .finish_reason = "stop",
                    .reward = v3_rng_uniform(&rng), .advantage = NAN}, &sid, &err) ||
                v3_store_batch_add_reward(b, &(v3_store_reward){.sample_id = sid, .name = "r",
                    .score = 1.0, .weight = NAN, .elapsed_ms = NAN}, &err))
                goto fail;
        }
        if (v3_store_batch_add_step(b, &(v3_store_step){.step = k, .loss = 1.0, .lr = NAN,
                .grad_norm = NAN, .tokens = NB, .step_time_s = NAN}, &err))
            goto fail;
        uint64_t seq = 0;
        if (v3_store_submit(s, b, &seq, &err)) goto fail;
        seqs[head % RING] = seq;
        steps[head % RING] = k;
        head++;
        if (v3_rng_below(&rng, 8) == 0 && v3_store_flush(s, (int)v3_rng_below(&rng, 2), &err))
            goto fail;
        if (head - tail > RING - 2 && v3_store_flush(s, 0, &err)) goto fail; /* ring is full */
        uint64_t c = v3_store_committed_seq(s);
        while (tail < head && seqs[tail % RING] <= c) {
            int64_t v = steps[tail % RING];
            if (write(fd, &v, sizeof v) != (ssize_t)sizeof v) _exit(3);
            tail++;
        }
    }
fail:
    fprintf(stderr, "crash child: %s\n", err.msg);
    _exit(2);
}

static int64_t q1(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return v;
}

static int read_reports(int fd, int64_t *got, int cap, int *n, int want) {
    while (*n < want) {
        int64_t v;
        ssize_t r = read(fd, &v, sizeof v);
        if (r == 0) return -1; /* child died on its own */
        if (r < 0 && errno == EINTR) continue;
        if (r != (ssize_t)sizeof v) return -1;
        if (*n < cap) got[*n] = v;
        (*n)++;
    }
    return 0;
}

/* Kills one child at a random moment; returns the number of reported batches (into got). */
static int one_kill(const char *path, int64_t base, v3_rng *rng, int64_t *got, int cap, int *died) {
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        child_write(path, base, v3_rng_u64(rng), p[1]);
    }
    close(p[1]);
    int n = 0;
    int mode = (int)v3_rng_below(rng, 3);
    *died = 0;
    if (mode == 0) { /* anywhere from exec start through the first commits */
        struct timespec ts = {0, (long)v3_rng_below(rng, 8000) * 1000};
        nanosleep(&ts, NULL);
    } else { /* after some commits, right away or a little later (mid-transaction) */
        int want = 1 + (int)v3_rng_below(rng, 40);
        if (read_reports(p[0], got, cap, &n, want) != 0) *died = 1;
        if (mode == 2) {
            struct timespec ts = {0, (long)v3_rng_below(rng, 3000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) *died = 1;
    /* drain what it reported before dying */
    int64_t v;
    ssize_t r;
    while ((r = read(p[0], &v, sizeof v)) == (ssize_t)sizeof v) {
        if (n < cap) got[n] = v;
        n++;
    }
    close(p[0]);
    return n;
}

/* Checks the store after a kill; returns the next step to write (max step + 1). */
static int64_t verify(const char *path, const int64_t *got, int n_got, int64_t base) {
    v3_err err = {0};
    v3_store *s = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size == 0) {
        /* killed before the first commit: nothing may have been reported */
        CHECK(n_got == 0, "%d batches reported but the store is empty", n_got);
        return base;
    }
    int rc = v3_store_open(&s, path, V3_STORE_READ, &err);
    /* Killed before the schema, or while creating the file in rollback-journal mode (before the
     * switch to WAL): a read-only reader cannot roll the hot journal back (SQLITE_READONLY_ROLLBACK);
     * the next writer does, which the following round checks. Nothing may have been reported. */
    if ((rc == V3_ENOTFOUND || (rc && strstr(err.msg, "readonly"))) && n_got == 0 && base == 0)
        return base;
    CHECK(rc == V3_OK, "reopen after kill: %s", err.msg);
    if (!s) return base;
    sqlite3 *db = v3_store_db(s);
    sqlite3_stmt *ic = NULL;
    const char *res = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &ic, NULL) == SQLITE_OK &&
        sqlite3_step(ic) == SQLITE_ROW)
        res = (const char *)sqlite3_column_text(ic, 0);
    CHECK(res && !strcmp(res, "ok"), "integrity_check: %s", res ? res : sqlite3_errmsg(db));
    sqlite3_finalize(ic);
    /* no torn batches: every step has NB samples and its step row, and vice versa */
    CHECK(q1(db, "SELECT count(*) FROM (SELECT step, count(*) c FROM samples GROUP BY step "
                 "HAVING c != 16)") == 0, "a batch is partly present");
    CHECK(q1(db, "SELECT count(DISTINCT step) FROM samples") == q1(db, "SELECT count(*) FROM steps"),
          "step rows and sample batches disagree");
    CHECK(q1(db, "SELECT count(*) FROM rewards") == q1(db, "SELECT count(*) FROM samples"),
          "rewards and samples disagree");
    CHECK(q1(db, "SELECT count(*) FROM samples WHERE length(token_ids) != 4 * completion_tokens "
                 "OR length(logprobs) != 4 * completion_tokens OR completion_tokens < 32") == 0,
          "a sample's blobs do not match its length");
    CHECK(q1(db, "SELECT sum(n_samples) FROM runs") == q1(db, "SELECT count(*) FROM samples"),
          "runs.n_samples disagrees with the samples table");
    /* batches commit in order: the present steps are gap-free */
    int64_t lo = q1(db, "SELECT coalesce(min(step), 0) FROM steps");
    int64_t hi = q1(db, "SELECT coalesce(max(step), -1) FROM steps");
    CHECK(q1(db, "SELECT count(*) FROM steps") == hi - lo + 1, "gaps in steps %lld..%lld",
          (long long)lo, (long long)hi);
    /* every reported batch is there */
    sqlite3_stmt *one = NULL;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM samples WHERE step = ?1", -1, &one, NULL);
    int missing = 0;
    for (int i = 0; i < n_got; i++) {
        sqlite3_reset(one);
        sqlite3_bind_int64(one, 1, got[i]);
        if (sqlite3_step(one) != SQLITE_ROW || sqlite3_column_int64(one, 0) != NB) missing++;
    }
    sqlite3_finalize(one);
    CHECK(missing == 0, "%d of %d reported batches missing", missing, n_got);
    CHECK(n_got == 0 || got[n_got - 1] <= hi, "reported step beyond the store");
    v3_store_close(s, NULL);
    return hi >= base ? hi + 1 : base;
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_store_crash"));
    char dir[1024], path[1100], cmd[1200];
    t_tmpdir(dir, sizeof dir);
    enum { CAP = 1 << 16 };
    int64_t *got = malloc(CAP * sizeof *got);
    int total_reported = 0, died = 0;

    /* kills during the creation of a new file */
    for (int i = 0; i < N_FRESH; i++) {
        snprintf(path, sizeof path, "%s/fresh%d.db", dir, i);
        int n = one_kill(path, 0, &rng, got, CAP, &died);
        CHECK(!died, "fresh child %d ended on its own", i);
        verify(path, got, n < CAP ? n : CAP, 0);
        /* and a writer can always take it over */
        v3_err err = {0};
        v3_store *s = NULL;
        CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err), &err);
        CHECK_OK(v3_store_close(s, &err), &err);
    }

    /* kills on one store that keeps growing; each child continues where the last one stopped */
    snprintf(path, sizeof path, "%s/run.db", dir);
    int64_t base = 0;
    for (int i = 0; i < N_KILLS; i++) {
        int n = one_kill(path, base, &rng, got, CAP, &died);
        CHECK(!died, "child %d ended on its own", i);
        total_reported += n;
        base = verify(path, got, n < CAP ? n : CAP, base);
    }

    /* the run continues: a final writer appends one more batch and closes cleanly */
    v3_err err = {0};
    v3_store *s = NULL;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE, &err), &err);
    if (s) {
        int64_t run = 0, pid = 0, sid = 0;
        v3_store_batch *b = NULL;
        CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "after"}, &run, &err), &err);
        CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
        CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = "prompt 1"}, &pid, &err), &err);
        CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = base, .prompt_id = pid,
                 .completion = "done", .finish_reason = "stop", .reward = NAN, .advantage = NAN},
                 &sid, &err), &err);
        CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
        CHECK_OK(v3_store_run_end(s, "completed", NULL, &err), &err);
        CHECK_OK(v3_store_close(s, &err), &err);
    }
    CHECK_OK(v3_store_open(&s, path, V3_STORE_READ, &err), &err);
    if (s) {
        sqlite3 *db = v3_store_db(s);
        CHECK(q1(db, "SELECT count(*) FROM samples WHERE completion = 'done'") == 1, "final batch");
        CHECK(q1(db, "SELECT count(*) FROM runs WHERE status = 'running'") == 0,
              "dead runs marked interrupted");
        CHECK(q1(db, "SELECT count(*) FROM prompts") <= 7, "prompts deduplicated across kills");
        fprintf(stderr, "test_store_crash: %d kills, %d committed batches reported, %lld steps, "
                "%lld runs\n", N_KILLS + N_FRESH, total_reported,
                (long long)q1(db, "SELECT count(*) FROM steps"),
                (long long)q1(db, "SELECT count(*) FROM runs"));
        v3_store_close(s, NULL);
    }
    CHECK(total_reported > N_KILLS, "the children committed too little to test anything (%d)",
          total_reported);
    free(got);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_failures) system(cmd);
    return t_finish("test_store_crash");
}
