/* bench_judge.c — requests/s of the judge client (rewards/judge.h) against the local test server
 * (tests/unit/judge_server.c, in this process, one thread per connection) for several numbers of
 * requests in flight. The server answers at once, or after --delay-ms (a stand-in for a model's
 * latency, where concurrency is what counts).
 *
 *   bench_judge [--requests N] [--in-flight 1,4,16,64] [--delay-ms D] [--repeats R]
 *   bench_judge --serve [PORT]     run only the test server (for trying `v3tune reward` by hand):
 *                                  prints its base URL and serves until killed
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rewards/judge.h"

#include "../tests/unit/judge_server.c" /* the tests' server, compiled into this program */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int serve(int port) {
    /* blocked before the server's threads start, so that they inherit the mask and sigwait
     * below gets the signal */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    judge_server s;
    if (js_start(&s, NULL, 2000) != 0) {
        fprintf(stderr, "bench_judge: cannot start the server\n");
        return 1;
    }
    if (port) fprintf(stderr, "bench_judge: --serve binds an ephemeral port; ignoring %d\n", port);
    printf("http://127.0.0.1:%d/v1\n", s.port);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    js_stop(&s);
    return 0;
}

int main(int argc, char **argv) {
    int n = 2000, delay = 0, repeats = 3;
    const char *flights = "1,4,16,64";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--serve")) return serve(i + 1 < argc ? atoi(argv[i + 1]) : 0);
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--requests")) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--in-flight")) flights = argv[++i];
        else if (!strcmp(argv[i], "--delay-ms")) delay = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[++i]);
    }
    if (n < 1 || repeats < 1) return 2;
    judge_server s;
    if (js_start(&s, "bench-key", 2000) != 0) return 1;
    setenv("V3_BENCH_JUDGE_KEY", "bench-key", 1);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", s.port);
    char **bodies = malloc((size_t)n * sizeof *bodies);
    for (int i = 0; i < n; i++) {
        bodies[i] = malloc(256);
        snprintf(bodies[i], 256,
                 "{\"messages\":[{\"role\":\"system\",\"content\":\"You are a grader.\"},{\"role\":"
                 "\"user\",\"content\":\"grade case_mode=ok case_id=%d case_sleep=%d\"}],"
                 "\"temperature\":0,\"max_tokens\":16}",
                 i % JS_MAX_IDS, delay);
    }
    v3_judge_result *r = calloc((size_t)n, sizeof *r);
    printf("bench_judge: %d requests per pass, server delay %d ms, best of %d passes\n", n, delay, repeats);
    printf("%10s %12s %12s %10s\n", "in_flight", "requests/s", "ms/request", "failed");
    char *list = strdup(flights);
    int rc = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int k = atoi(tok);
        v3_judge_opts o = {.url = url, .model = "bench", .key_env = "V3_BENCH_JUDGE_KEY",
                           .max_in_flight = k, .timeout_s = 30, .seed = 1};
        v3_judge *j = NULL;
        v3_err err = {0};
        if (v3_judge_init(&j, &o, &err) != V3_OK) {
            fprintf(stderr, "bench_judge: %s\n", err.msg);
            rc = 1;
            break;
        }
        double best = 1e30;
        long failed = 0;
        for (int rep = 0; rep < repeats; rep++) {
            double t0 = now_s();
            if (v3_judge_run(j, (const char *const *)bodies, n, r, &err) != V3_OK) {
                fprintf(stderr, "bench_judge: %s\n", err.msg);
                rc = 1;
                break;
            }
            double dt = now_s() - t0;
            if (dt < best) best = dt;
            failed = 0;
            for (int i = 0; i < n; i++) failed += !r[i].ok;
            v3_judge_results_free(r, n);
        }
        printf("%10d %12.0f %12.3f %10ld\n", k, n / best, 1e3 * best / n, failed);
        v3_judge_free(j);
    }
    pthread_mutex_lock(&s.mu);
    printf("server: %ld requests, at most %d at once, %d connections at most, %ld bad auth\n", s.requests,
           s.max_active, s.max_conns, s.bad_auth);
    pthread_mutex_unlock(&s.mu);
    js_stop(&s);
    for (int i = 0; i < n; i++) free(bodies[i]);
    free(bodies);
    free(r);
    free(list);
    return rc;
}
