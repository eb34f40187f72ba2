/* test_store_concurrency.c — readers in other processes while a run writes.
 * The writer commits batches of NB samples plus one step row whose `tokens` is NB, so in any
 * consistent snapshot count(samples) == sum(steps.tokens) == NB * count(steps). Reader processes
 * query in a loop (raw SQL, the store's query API, and — when $V3TUNE is set — the `v3tune runs`
 * and `v3tune samples` commands) and count torn reads and errors; any SQLITE_BUSY that reaches a
 * caller is an error. Reader processes are forked before the writer starts its thread. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datasets/store.h"
#include "testutil.h"

#define NB 50
#define N_BATCHES 400

typedef struct reader_stats {
    int64_t reads, torn, errors, changes, cli_runs, cli_fail;
} reader_stats;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int stop_requested(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0; /* EOF (parent closed its end) reads as POLLIN/POLLHUP */
}

typedef struct snap {
    int64_t n_samples, n_steps;
} snap;

static int on_run(void *ud, const v3_store_run_summary *r) {
    snap *sn = ud;
    sn->n_samples += r->n_samples;
    sn->n_steps += r->n_steps;
    return 0;
}

static int on_sample(void *ud, const v3_store_sample_row *r) {
    (void)r;
    (*(int64_t *)ud)++;
    return 0;
}

/* kind 0: raw SQL on a long-lived connection; 1: the store API, reopening every few reads;
 * 2: the v3tune binary. */
static void reader(const char *path, const char *dir, int kind, int stop_fd, int out_fd) {
    reader_stats rs = {0};
    v3_err err = {0};
    v3_store *s = NULL;
    int64_t last = -1; /* the sample count of the previous read: counts how often it moved */
    const char *bin = getenv("V3TUNE");
    while (!stop_requested(stop_fd)) {
        if (kind == 2) {
            if (!bin || !*bin) break;
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "'%s' runs '%s' > /dev/null 2> '%s/cli.err' && '%s' samples "
                     "'%s' --order best --limit 3 --json > /dev/null 2>> '%s/cli.err'",
                     bin, dir, dir, bin, dir, dir);
            int st = system(cmd);
            rs.cli_runs++;
            if (st != 0) {
                rs.cli_fail++;
                snprintf(cmd, sizeof cmd, "cat '%s/cli.err' >&2", dir);
                if (system(cmd)) {}
            }
            continue;
        }
        if (!s) {
            if (v3_store_open(&s, path, V3_STORE_READ, &err)) {
                fprintf(stderr, "reader open: %s\n", err.msg);
                rs.errors++;
                continue;
            }
        }
        if (kind == 0) {
            sqlite3_stmt *st = NULL;
            const char *sql = "SELECT (SELECT count(*) FROM samples), "
                              "(SELECT coalesce(sum(tokens), 0) FROM steps), "
                              "(SELECT count(*) FROM steps)";
            if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) != SQLITE_OK ||
                sqlite3_step(st) != SQLITE_ROW) {
                fprintf(stderr, "reader sql: %s\n", sqlite3_errmsg(v3_store_db(s)));
                rs.errors++;
            } else {
                int64_t a = sqlite3_column_int64(st, 0), b = sqlite3_column_int64(st, 1),
                        c = sqlite3_column_int64(st, 2);
                if (a != b || a != NB * c) rs.torn++;
                if (a != last) rs.changes++;
                last = a;
            }
            sqlite3_finalize(st);
        } else {
            snap sn = {0};
            if (v3_store_list_runs(s, on_run, &sn, &err)) {
                fprintf(stderr, "reader list_runs: %s\n", err.msg);
                rs.errors++;
            } else {
                if (sn.n_samples != NB * sn.n_steps) rs.torn++;
                if (sn.n_samples != last) rs.changes++;
                last = sn.n_samples;
                /* the last complete step has exactly NB samples */
                v3_store_sample_query q = v3_store_sample_query_all();
                q.step = sn.n_steps - 1;
                int64_t n = 0;
                if (sn.n_steps > 0) {
                    if (v3_store_query_samples(s, &q, on_sample, &n, &err)) {
                        fprintf(stderr, "reader query: %s\n", err.msg);
                        rs.errors++;
                    } else if (n != NB) {
                        rs.torn++;
                    }
                }
            }
            if (rs.reads % 5 == 4) { /* opening while the writer writes must work too */
                v3_store_close(s, NULL);
                s = NULL;
            }
        }
        rs.reads++;
    }
    v3_store_close(s, NULL);
    if (write(out_fd, &rs, sizeof rs) != (ssize_t)sizeof rs) _exit(3);
    _exit(0);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_store_concurrency"));
    char dir[1024], path[1100], cmd[1200];
    t_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/run.db", dir);
    v3_err err = {0};
    v3_store *s = NULL;

    /* create the store and its run, then close: readers are forked from a process with no
     * threads and no open connection */
    int64_t run = 0, pid = 0;
    CHECK_OK(v3_store_open(&s, path, V3_STORE_WRITE | V3_STORE_CREATE, &err), &err);
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo"}, &run, &err), &err);
    CHECK_OK(v3_store_close(s, &err), &err);

    enum { N_READERS = 3 };
    int stop[2], out[2];
    if (pipe(stop) || pipe(out)) return 1;
    pid_t kids[N_READERS];
    fflush(NULL);
    for (int k = 0; k < N_READERS; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            close(stop[1]);
            close(out[0]);
            reader(path, dir, k, stop[0], out[1]);
        }
    }
    close(stop[0]);
    close(out[1]);

    /* the writer: its run is resumed (a new run row), samples of 256..1024 tokens */
    /* small WAL thresholds: the checkpointer runs every few commits, under the readers */
    v3_store_opts o = {.wal_checkpoint_bytes = 256 << 10, .wal_max_bytes = 1 << 20};
    CHECK_OK(v3_store_open_opts(&s, path, V3_STORE_WRITE, &o, &err), &err);
    if (!s) return t_finish("test_store_concurrency");
    CHECK_OK(v3_store_run_begin(s, &(v3_store_run_info){.command = "grpo", .resumed_from = run},
                                &run, &err), &err);
    uint32_t *ids = malloc(1024 * sizeof *ids);
    float *lp = malloc(1024 * sizeof *lp);
    for (int i = 0; i < 1024; i++) {
        ids[i] = (uint32_t)v3_rng_below(&rng, 129280);
        lp[i] = -v3_rng_uniform(&rng);
    }
    double t0 = now_s();
    for (int k = 0; k < N_BATCHES; k++) {
        v3_store_batch *b = NULL;
        CHECK_OK(v3_store_batch_new(s, &b, &err), &err);
        CHECK_OK(v3_store_batch_add_prompt(b, &(v3_store_prompt){.text = "p"}, &pid, &err), &err);
        for (int i = 0; i < NB; i++) {
            int n = 256 + (int)v3_rng_below(&rng, 768);
            int64_t sid = 0;
            CHECK_OK(v3_store_batch_add_sample(b, &(v3_store_sample){.step = k, .prompt_id = pid,
                     .group_id = i / 8, .group_index = i % 8, .completion = "some text",
                     .n_tokens = n, .token_ids = ids, .logprobs = lp, .finish_reason = "stop",
                     .reward = v3_rng_uniform(&rng), .advantage = 0.0}, &sid, &err), &err);
        }
        CHECK_OK(v3_store_batch_add_step(b, &(v3_store_step){.step = k, .loss = 1.0, .lr = NAN,
                 .grad_norm = NAN, .tokens = NB, .step_time_s = NAN}, &err), &err);
        CHECK_OK(v3_store_submit(s, b, NULL, &err), &err);
        if (k % 50 == 49) CHECK_OK(v3_store_flush(s, k % 100 == 99, &err), &err);
        if (k % 4 == 0) { /* pace the writer so readers overlap many commits */
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK_OK(v3_store_run_end(s, "completed", NULL, &err), &err);
    double t1 = now_s();
    CHECK_OK(v3_store_close(s, &err), &err);

    close(stop[1]); /* readers stop */
    reader_stats tot = {0};
    for (int k = 0; k < N_READERS; k++) {
        reader_stats rs;
        ssize_t r = read(out[0], &rs, sizeof rs);
        CHECK(r == (ssize_t)sizeof rs, "reader report %d missing", k);
        if (r != (ssize_t)sizeof rs) continue;
        tot.reads += rs.reads;
        tot.torn += rs.torn;
        tot.errors += rs.errors;
        tot.cli_runs += rs.cli_runs;
        tot.cli_fail += rs.cli_fail;
        tot.changes += rs.changes;
    }
    for (int k = 0; k < N_READERS; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader %d exit", k);
    }
    fprintf(stderr, "test_store_concurrency: %d batches (%d samples) in %.2f s; readers: %lld reads, "
            "%lld torn, %lld errors, %lld CLI runs (%lld failed), %lld distinct states seen\n",
            N_BATCHES, N_BATCHES * NB, t1 - t0, (long long)tot.reads, (long long)tot.torn,
            (long long)tot.errors, (long long)tot.cli_runs, (long long)tot.cli_fail,
            (long long)tot.changes);
    CHECK(tot.torn == 0, "%lld torn reads", (long long)tot.torn);
    CHECK(tot.errors == 0, "%lld reader errors", (long long)tot.errors);
    CHECK(tot.cli_fail == 0, "%lld CLI failures", (long long)tot.cli_fail);
    CHECK(tot.reads > 20, "readers ran only %lld queries", (long long)tot.reads);
    CHECK(tot.changes >= 5, "readers saw only %lld states: they never overlapped the writer",
          (long long)tot.changes);
    free(ids);
    free(lp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_failures) system(cmd);
    return t_finish("test_store_concurrency");
}
