/* test_judge.c — the LLM-judge client (rewards/judge.h) and judge modules in the reward host,
 * against a local HTTP/1.1 server (judge_server.c) that answers right, slowly (past the timeout),
 * with 500 then success, with 429 + Retry-After then success, by dropping the connection, with
 * garbage JSON, with 200 without choices, with 400, with 401 for a wrong key. Checks: one outcome
 * per request (the reply, or an error naming the failure), attempts and retries counted, more than
 * one request in flight (seen by the server) and never more than max_in_flight, the batch's time
 * bounded by the timeouts, the key sent as `Authorization: Bearer` from the environment and never
 * quoted in an error; then the same through the reward host with examples/judge_reward.lua. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "rewards/host.h"
#include "rewards/judge.h"
#include "rewards/judge_module.h"
#include "testutil.h"

#include "judge_server.c" /* the test server, compiled into this test */

#define KEY_ENV "V3_TEST_JUDGE_KEY"
#define SLOW_MS 1500 /* the server's "slow": well past the timeouts below */

static double ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static int contains(const char *s, const char *w) { return s && w && strstr(s, w) != NULL; }

static void test_parse_reply(void) {
    static const struct {
        const char *body, *content, *reasoning, *err;
    } cases[] = {
        {"{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"hi\",\"reasoning_content\":"
         "\"hmm\"},\"finish_reason\":\"stop\"}]}",
         "hi", "hmm", NULL},
        {"{\"choices\":[{\"message\":{\"content\":\"\"}}]}", "", NULL, NULL},
        {"{\"choices\":[{\"message\":{\"content\":null}}]}", NULL, NULL, "no choices[0].message.content"},
        {"{\"choices\":[]}", NULL, NULL, "no choices"},
        {"{\"error\":{\"message\":\"quota exceeded\"}}", NULL, NULL, "no choices: quota exceeded"},
        {"[1,2]", NULL, NULL, "not a JSON object"},
        {"{\"choices\":[{\"text\":\"x\"}]}", NULL, NULL, "(no message)"},
        {"this is {not json", NULL, NULL, "not valid JSON"},
        {"", NULL, NULL, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v3_judge_result r = {0};
        v3_err e = {0};
        int rc = v3_judge_parse_reply(cases[i].body, strlen(cases[i].body), &r, &e);
        if (cases[i].err) {
            CHECK(rc != V3_OK && contains(e.msg, cases[i].err) && !r.content, "case %zu: rc %d msg %s", i,
                  rc, e.msg);
        } else {
            CHECK(rc == V3_OK && r.content && !strcmp(r.content, cases[i].content), "case %zu: %s", i, e.msg);
            CHECK(cases[i].reasoning ? r.reasoning && !strcmp(r.reasoning, cases[i].reasoning) : !r.reasoning,
                  "case %zu reasoning %s", i, r.reasoning ? r.reasoning : "(null)");
        }
        v3_judge_results_free(&r, 1);
    }
}

static void test_config(void) {
    static const struct {
        const char *json, *err;
    } bad[] = {
        {"{\"url\":\"http://127.0.0.1:9/v1\",\"timout\":3}", "judge.timout: unknown option"},
        {"{\"url\":\"ftp://127.0.0.1/v1\"}", "not http:// or https://"},
        {"{}", "judge.url is required"},
        {"{\"url\":\"http://127.0.0.1:9/v1\",\"max_in_flight\":0}", "judge.max_in_flight must be an integer"},
        {"{\"url\":\"http://127.0.0.1:9/v1\",\"timeout\":\"10\"}", "judge.timeout must be a number"},
        {"{\"url\":\"http://127.0.0.1:9/v1\",\"retries\":1.5}", "judge.retries must be an integer"},
        {"{\"url\":7}", "judge.url must be a string"},
        {"{\"url\":\"http://127.0.0.1:9/v1\",\"key_env\":\"V3_TEST_JUDGE_UNSET\"}",
         "environment variable V3_TEST_JUDGE_UNSET"},
        {"[1]", "not a table of options"},
    };
    unsetenv("V3_TEST_JUDGE_UNSET");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v3_judge *j = (v3_judge *)1;
        v3_err e = {0};
        int rc = v3_judge_from_config(&j, bad[i].json, NULL, &e);
        CHECK(rc != V3_OK && j == NULL && contains(e.msg, bad[i].err), "config %s: rc %d msg \"%s\"",
              bad[i].json, rc, e.msg);
    }
    /* the endpoint: a base URL gets /chat/completions, a whole endpoint is kept; overrides win */
    static const struct {
        const char *json, *override_url, *want;
    } ok[] = {
        {"{\"url\":\"http://127.0.0.1:9/v1\"}", NULL, "http://127.0.0.1:9/v1/chat/completions"},
        {"{\"url\":\"http://127.0.0.1:9/v1/\"}", NULL, "http://127.0.0.1:9/v1/chat/completions"},
        {"{\"url\":\"https://h.example/api/v1/chat/completions\"}", NULL,
         "https://h.example/api/v1/chat/completions"},
        {"{\"url\":\"http://a/v1\",\"timeout\":5}", "http://127.0.0.1:7/x/", "http://127.0.0.1:7/x/chat/completions"},
        {"{\"timeout\":5}", "http://127.0.0.1:7/v1", "http://127.0.0.1:7/v1/chat/completions"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        v3_judge *j = NULL;
        v3_err e = {0};
        v3_judge_opts ov = {.url = ok[i].override_url};
        CHECK_OK(v3_judge_from_config(&j, ok[i].json, &ov, &e), &e);
        if (!j) continue;
        CHECK(!strcmp(v3_judge_endpoint(j), ok[i].want), "endpoint %s, want %s", v3_judge_endpoint(j),
              ok[i].want);
        v3_judge_free(j);
    }
}

typedef struct jcase {
    const char *mode;
    int sleep_ms;
    int want_ok;
    int want_attempts; /* -1: any */
    const char *want_err;
} jcase;

static const jcase CASES[] = {
    {"ok", 150, 1, 1, NULL},   {"ok", 150, 1, 1, NULL},   {"ok", 150, 1, 1, NULL},
    {"ok", 150, 1, 1, NULL},   {"ok", 150, 1, 1, NULL},   {"ok", 150, 1, 1, NULL},
    {"ok", 150, 1, 1, NULL},   {"ok", 150, 1, 1, NULL},   {"reason", 0, 1, 1, NULL},
    {"slow", 0, 0, 3, "timed out"},
    {"slowonce", 0, 1, 2, NULL},
    {"fail500", 0, 1, 2, NULL},
    {"always500", 0, 0, 3, "HTTP 500: {\"error\":{\"message\":\"overloaded\"}} (3 attempts)"},
    {"ratelimit", 0, 1, 2, NULL},
    {"ratelimitms", 0, 1, 2, NULL},
    {"drop", 0, 0, 3, "Empty reply from server (3 attempts)"},
    {"droponce", 0, 1, -1, NULL}, /* curl itself may resend on a fresh connection first */
    {"garbage", 0, 0, 1, "HTTP 200: response is not valid JSON"},
    {"nochoices", 0, 0, 1, "HTTP 200: response has no choices"},
    {"bad400", 0, 0, 1, "HTTP 400: {\"error\":{\"message\":\"The model does not exist\""},
};
enum { NCASES = sizeof CASES / sizeof CASES[0] };

static void test_batch(judge_server *srv, const char *key) {
    js_reset_counts(srv);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", srv->port);
    v3_judge_opts o = {.url = url, .model = "judge-model", .key_env = KEY_ENV, .max_in_flight = 4,
                       .timeout_s = 0.5, .max_retries = 2, .backoff_base_s = 0.05,
                       .backoff_max_s = 0.2, .seed = 1};
    v3_judge *j = NULL;
    v3_err err = {0};
    CHECK_OK(v3_judge_init(&j, &o, &err), &err);
    if (!j) return;
    enum { N = NCASES + 1 };
    char bodies[N][256];
    const char *ptrs[N];
    for (int i = 0; i < NCASES; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"grade case_mode=%s case_id=%d "
                 "case_sleep=%d\"}],\"temperature\":0}",
                 CASES[i].mode, i, CASES[i].sleep_ms);
        ptrs[i] = bodies[i];
    }
    snprintf(bodies[NCASES], sizeof bodies[NCASES], "[\"not an object\"]");
    ptrs[NCASES] = bodies[NCASES];
    v3_judge_result r[N];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(v3_judge_run(j, ptrs, N, r, &err), &err);
    double ms = ms_since(&t0);
    int64_t attempts = 0, retries = 0, failures = 0;
    for (int i = 0; i < N; i++) {
        const jcase *c = i < NCASES ? &CASES[i] : NULL;
        CHECK(r[i].ok ? r[i].error == NULL && r[i].content != NULL : r[i].error != NULL && r[i].content == NULL,
              "case %d: not exactly one outcome (ok %d error %s)", i, r[i].ok, r[i].error ? r[i].error : "-");
        CHECK(!contains(r[i].error, key) && !contains(r[i].body, key), "case %d quotes the key", i);
        attempts += r[i].attempts;
        retries += r[i].attempts > 1 ? r[i].attempts - 1 : 0;
        failures += !r[i].ok;
        printf("  %-12s ok %d  HTTP %3ld  attempts %d  %6.0f ms  %s\n", c ? c->mode : "(bad body)", r[i].ok,
               r[i].http_status, r[i].attempts, r[i].elapsed_ms, r[i].ok ? r[i].content : r[i].error);
        if (!c) {
            CHECK(!r[i].ok && r[i].attempts == 0 && contains(r[i].error, "not a JSON object"),
                  "bad body: attempts %d error %s", r[i].attempts, r[i].error ? r[i].error : "-");
            continue;
        }
        CHECK(r[i].ok == c->want_ok, "%s (case %d): ok %d, error %s", c->mode, i, r[i].ok,
              r[i].error ? r[i].error : "-");
        if (c->want_attempts >= 0)
            CHECK(r[i].attempts == c->want_attempts, "%s: %d attempts, want %d", c->mode, r[i].attempts,
                  c->want_attempts);
        else CHECK(r[i].attempts >= 1 && r[i].attempts <= 2, "%s: %d attempts", c->mode, r[i].attempts);
        if (c->want_err)
            CHECK(contains(r[i].error, c->want_err), "%s: error \"%s\" lacks \"%s\"", c->mode,
                  r[i].error ? r[i].error : "(none)", c->want_err);
        if (r[i].ok) {
            char want[64];
            snprintf(want, sizeof want, "Looks right. SCORE: %d", i % 11);
            CHECK(!strcmp(r[i].content, want), "%s: content \"%s\", want \"%s\" (replies out of order?)",
                  c->mode, r[i].content, want);
            CHECK(r[i].http_status == 200 && r[i].finish_reason && !strcmp(r[i].finish_reason, "stop"),
                  "%s: status %ld finish %s", c->mode, r[i].http_status,
                  r[i].finish_reason ? r[i].finish_reason : "(null)");
            char th[64];
            snprintf(th, sizeof th, "thinking about %d", i);
            CHECK(strcmp(c->mode, "reason") ? r[i].reasoning == NULL
                                            : r[i].reasoning && !strcmp(r[i].reasoning, th),
                  "%s: reasoning %s", c->mode, r[i].reasoning ? r[i].reasoning : "(null)");
        }
        /* Retry-After honoured: the backoff alone would wait at most backoff_max (0.2 s) */
        if (!strcmp(c->mode, "ratelimit"))
            CHECK(r[i].elapsed_ms >= 950, "ratelimit: retried after %.0f ms, Retry-After said 1 s",
                  r[i].elapsed_ms);
        if (!strcmp(c->mode, "ratelimitms"))
            CHECK(r[i].elapsed_ms >= 280 && r[i].elapsed_ms < 950, "ratelimitms: %.0f ms (want 300)",
                  r[i].elapsed_ms);
        if (!strcmp(c->mode, "slow"))
            CHECK(r[i].elapsed_ms >= 3 * 500 && r[i].elapsed_ms < 3 * 500 + 2 * 200 + 500,
                  "slow: %.0f ms for 3 attempts of 500 ms", r[i].elapsed_ms);
    }
    v3_judge_stats st;
    v3_judge_get_stats(j, &st);
    CHECK(st.requests == N && st.attempts == attempts && st.retries == retries && st.failures == failures,
          "stats: requests %lld attempts %lld (%lld) retries %lld (%lld) failures %lld (%lld)",
          (long long)st.requests, (long long)st.attempts, (long long)attempts, (long long)st.retries,
          (long long)retries, (long long)st.failures, (long long)failures);
    CHECK(retries >= 9, "retries %lld", (long long)retries);
    pthread_mutex_lock(&srv->mu);
    long requests = srv->requests, bad_auth = srv->bad_auth, with_model = srv->with_model;
    int max_active = srv->max_active, max_conns = srv->max_conns;
    pthread_mutex_unlock(&srv->mu);
    printf("batch of %d: %.0f ms; server saw %ld requests, at most %d at once on %d connections\n", N, ms,
           requests, max_active, max_conns);
    /* every attempt reached the server, once; except that when a kept-alive connection turns out
     * dead (the drop cases), curl itself resends the request on another connection */
    CHECK(requests >= attempts, "server saw %ld requests for %lld attempts", requests, (long long)attempts);
    for (int i = 0; i < NCASES; i++) {
        int dropping = !strncmp(CASES[i].mode, "drop", 4);
        pthread_mutex_lock(&srv->mu);
        int hits = srv->hits[i];
        pthread_mutex_unlock(&srv->mu);
        CHECK(dropping ? hits >= r[i].attempts : hits == r[i].attempts, "%s: server saw %d requests, %d attempts",
              CASES[i].mode, hits, r[i].attempts);
    }
    CHECK(bad_auth == 0, "%ld requests without the right Authorization: Bearer", bad_auth);
    CHECK(with_model == requests, "%ld of %ld requests carried the judge's model", with_model, requests);
    CHECK(st.max_in_flight_seen == 4, "client had at most %d in flight", st.max_in_flight_seen);
    /* sanity, not speed: a request's worst case is 3 timeouts + 2 backoffs + the 1 s Retry-After,
     * and with 4 slots the whole batch fits in a few of those */
    double worst = 3 * 500 + 2 * 200 + 1000;
    CHECK(ms < 2.5 * worst, "batch took %.0f ms (worst single request %.0f ms)", ms, worst);
    CHECK(ms > 3 * 500, "batch took %.0f ms, less than the slow case's timeouts", ms);
    v3_judge_results_free(r, N);
    v3_judge_free(j);
}

/* Concurrency as the server sees it: 12 requests that each take 200 ms, 4 in flight. (Run first:
 * a "slow" handler the client has given up on keeps counting as active on the server.) */
static void test_concurrency(judge_server *srv) {
    js_reset_counts(srv);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", srv->port);
    v3_judge_opts o = {.url = url, .model = "judge-model", .key_env = KEY_ENV, .max_in_flight = 4,
                       .timeout_s = 5};
    v3_judge *j = NULL;
    v3_err err = {0};
    CHECK_OK(v3_judge_init(&j, &o, &err), &err);
    if (!j) return;
    enum { N = 12 };
    char bodies[N][160];
    const char *ptrs[N];
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"case_id=%d case_sleep=200\"}]}", i);
        ptrs[i] = bodies[i];
    }
    v3_judge_result r[N];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(v3_judge_run(j, ptrs, N, r, &err), &err);
    double ms = ms_since(&t0);
    int ok = 0;
    for (int i = 0; i < N; i++) ok += r[i].ok && r[i].attempts == 1;
    pthread_mutex_lock(&srv->mu);
    int max_active = srv->max_active;
    long requests = srv->requests;
    pthread_mutex_unlock(&srv->mu);
    printf("concurrency: %d requests of 200 ms in %.0f ms, server saw at most %d at once\n", N, ms, max_active);
    CHECK(ok == N && requests == N, "%d of %d ok, server saw %ld", ok, N, requests);
    CHECK(max_active >= 2 && max_active <= 4, "server saw at most %d requests at once (want 2..4)", max_active);
    v3_judge_results_free(r, N);
    v3_judge_free(j);
}

/* No key configured: the server refuses (401), which is final at once. */
static void test_no_key(judge_server *srv) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", srv->port);
    v3_judge_opts o = {.url = url, .timeout_s = 2, .max_retries = 3, .backoff_base_s = 0.01};
    v3_judge *j = NULL;
    v3_err err = {0};
    CHECK_OK(v3_judge_init(&j, &o, &err), &err);
    if (!j) return;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"case_mode=ok case_id=1\"}]}";
    v3_judge_result r;
    js_reset_counts(srv);
    CHECK_OK(v3_judge_run(j, &body, 1, &r, &err), &err);
    CHECK(!r.ok && r.attempts == 1 && r.http_status == 401 && contains(r.error, "HTTP 401") &&
              contains(r.error, "Incorrect API key"),
          "no key: ok %d attempts %d status %ld error %s", r.ok, r.attempts, r.http_status,
          r.error ? r.error : "-");
    CHECK(srv->bad_auth == 1, "server bad_auth %ld", srv->bad_auth);
    v3_judge_results_free(&r, 1);
    v3_judge_free(j);
}

/* Nothing listens: connection refused is a network error, retried, then reported. */
static void test_refused(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* the port is now (almost certainly) closed */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", ntohs(a.sin_port));
    v3_judge_opts o = {.url = url, .timeout_s = 1, .max_retries = 2, .backoff_base_s = 0.01,
                       .backoff_max_s = 0.02};
    v3_judge *j = NULL;
    v3_err err = {0};
    CHECK_OK(v3_judge_init(&j, &o, &err), &err);
    if (!j) return;
    const char *body[2] = {"{\"messages\":[]}", "{\"messages\":[]}"};
    v3_judge_result r[2];
    CHECK_OK(v3_judge_run(j, body, 2, r, &err), &err);
    for (int i = 0; i < 2; i++)
        CHECK(!r[i].ok && r[i].attempts == 3 && r[i].http_status == 0 && contains(r[i].error, "onnect"),
              "refused: ok %d attempts %d error %s", r[i].ok, r[i].attempts, r[i].error ? r[i].error : "-");
    v3_judge_results_free(r, 2);
    v3_judge_free(j);
}

static const char *write_file(const char *dir, const char *name, const char *text, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", dir, name);
    FILE *f = fopen(buf, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return buf;
}

/* Judge modules that do not load fail init with a message naming the problem. */
static void test_module_errors(const char *dir, judge_server *srv) {
    static const struct {
        const char *name, *text, *want;
    } bad[] = {
        {"noparse.lua", "return { judge = { url = 'http://127.0.0.1:9/v1' }, request = function(s) end }",
         "needs a function `parse`"},
        {"both.lua",
         "return { judge = { url = 'http://127.0.0.1:9/v1' }, request = function(s) end, parse = "
         "function(s, r) end, score = function(s) return 1 end }",
         "not `score`"},
        {"typo.lua",
         "return { judge = { url = 'http://127.0.0.1:9/v1', timout = 3 }, request = function(s) end, "
         "parse = function(s, r) end }",
         "typo.lua: judge.timout: unknown option"},
        {"nokey.lua",
         "return { judge = { url = 'http://127.0.0.1:9/v1', key_env = 'V3_TEST_JUDGE_UNSET' }, request = "
         "function(s) end, parse = function(s, r) end }",
         "nokey.lua: judge: environment variable V3_TEST_JUDGE_UNSET"},
        {"notable.lua", "return { judge = 'http://x', request = function(s) end, parse = function(s, r) end }",
         "`judge` must be a table"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char p[1024];
        v3_reward_script sc = {.path = write_file(dir, bad[i].name, bad[i].text, p, sizeof p)};
        v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 1, .timeout_ms = 500};
        v3_reward_host *h = NULL;
        v3_err err = {0};
        CHECK(v3_reward_host_init(&h, &o, &err) != V3_OK && !h && contains(err.msg, bad[i].want),
              "%s: \"%s\" lacks \"%s\"", bad[i].name, err.msg, bad[i].want);
        v3_reward_host_free(h);
    }
    /* request() returning something that is no request body: that sample's error, others go on */
    char p[1024], url[128];
    v3_reward_script sc = {
        .path = write_file(dir, "badreq.lua",
                           "return { judge = { url = 'http://127.0.0.1:9/v1' }, fallback = -1,\n"
                           "  request = function(s) if s.completion == 'num' then return 5 end\n"
                           "    if s.completion == 'boom' then error('no request for you') end\n"
                           "    return { messages = { { role = 'user', content = s.completion } } } end,\n"
                           "  parse = function(s, r) return #r.content end }\n",
                           p, sizeof p)};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", srv->port);
    v3_judge_opts jo = {.url = url, .key_env = KEY_ENV, .timeout_s = 2};
    v3_reward_opts o = {.scripts = &sc, .n_scripts = 1, .n_workers = 2, .timeout_ms = 1000, .judge = &jo};
    v3_reward_host *h = NULL;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    v3_reward_sample s[3] = {{.completion = "num"}, {.completion = "case_mode=ok case_id=3"},
                             {.completion = "boom"}};
    v3_reward_result r[3];
    CHECK_OK(v3_reward_host_score(h, s, 3, r, &err), &err);
    CHECK(r[0].values[0].status == V3_REWARD_ERROR && r[0].values[0].score == -1 &&
              contains(r[0].values[0].error, "bad return value: request()"),
          "num: status %d error %s", r[0].values[0].status, r[0].values[0].error ? r[0].values[0].error : "-");
    CHECK(r[1].values[0].status == V3_REWARD_OK && r[1].values[0].score == strlen("Looks right. SCORE: 3"),
          "ok: status %d score %g error %s", r[1].values[0].status, r[1].values[0].score,
          r[1].values[0].error ? r[1].values[0].error : "-");
    CHECK(r[2].values[0].status == V3_REWARD_ERROR && contains(r[2].values[0].error, "no request for you"),
          "boom: %s", r[2].values[0].error ? r[2].values[0].error : "-");
    v3_reward_results_free(r, 3);
    v3_reward_host_free(h);
}

/* examples/judge_reward.lua through the reward host, beside an ordinary module. */
static void test_host(const char *dir, judge_server *srv) {
    char p1[1024], p2[1024], url[128];
    v3_reward_script sc[2] = {
        {.path = t_source_path("examples/judge_reward.lua", p1, sizeof p1)},
        {.path = write_file(dir, "len.lua", "return function(s) return #s.completion end", p2, sizeof p2)},
    };
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", srv->port);
    v3_judge_opts jo = {.url = url, .model = "judge-model", .key_env = KEY_ENV, .max_in_flight = 4,
                        .timeout_s = 0.5, .max_retries = 2, .backoff_base_s = 0.05, .backoff_max_s = 0.2};
    v3_reward_opts o = {.scripts = sc, .n_scripts = 2, .n_workers = 2, .timeout_ms = 1000, .fallback = -1,
                        .judge = &jo};
    v3_reward_host *h = NULL;
    v3_err err = {0};
    CHECK_OK(v3_reward_host_init(&h, &o, &err), &err);
    if (!h) return;
    const v3_reward_func_info *fi = v3_reward_host_func(h, 0);
    CHECK(!strcmp(fi->name, "judge") && fi->is_judge && fi->fallback == 0 && fi->weight == 1,
          "judge module info: %s judge %d fallback %g", fi->name, fi->is_judge, fi->fallback);
    CHECK(!v3_reward_host_func(h, 1)->is_judge, "len.lua is no judge");
    js_reset_counts(srv);
    enum { N = 14 };
    static const struct {
        const char *mode;
        int status;         /* of the judge */
        const char *err;    /* its error */
    } want[N] = {
        {"ok", V3_REWARD_OK, NULL},      {"ok", V3_REWARD_OK, NULL},      {"ok", V3_REWARD_OK, NULL},
        {"ok", V3_REWARD_OK, NULL},      {"ok", V3_REWARD_OK, NULL},      {"ok", V3_REWARD_OK, NULL},
        {"reason", V3_REWARD_OK, NULL},  {"fail500", V3_REWARD_OK, NULL}, {"ratelimitms", V3_REWARD_OK, NULL},
        {"slow", V3_REWARD_ERROR, "judge: Operation timed out"},
        {"noscore", V3_REWARD_ERROR, "the judge's reply has no SCORE line: I cannot decide."},
        {"garbage", V3_REWARD_ERROR, "judge: HTTP 200: response is not valid JSON"},
        {"drop", V3_REWARD_ERROR, "judge: Empty reply from server (3 attempts)"},
        {"", V3_REWARD_SKIP, NULL}, /* empty completion: request() returns nil */
    };
    char comp[N][96];
    v3_reward_sample s[N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        if (want[i].mode[0]) snprintf(comp[i], sizeof comp[i], "It is 4. case_mode=%s case_id=%d", want[i].mode, 40 + i);
        else comp[i][0] = 0;
        s[i] = (v3_reward_sample){.prompt = "What is 2+2?", .completion = comp[i],
                                  .row_json = "{\"answer\":\"4\"}", .index = i};
    }
    v3_reward_result r[N];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(v3_reward_host_score(h, s, N, r, &err), &err);
    double ms = ms_since(&t0);
    int n_err = 0;
    for (int i = 0; i < N; i++) {
        const v3_reward_value *v = &r[i].values[0], *l = &r[i].values[1];
        printf("  %-12s status %d score %5.2f  %s\n", want[i].mode[0] ? want[i].mode : "(empty)", v->status,
               v->score, v->error ? v->error : v->extra_json ? v->extra_json : "");
        CHECK(v->status == want[i].status, "%s (sample %d): status %d, error %s", want[i].mode, i, v->status,
              v->error ? v->error : "-");
        CHECK((v->status == V3_REWARD_ERROR) == (v->error != NULL), "%s: one outcome", want[i].mode);
        if (want[i].status == V3_REWARD_OK) {
            double g = (double)((40 + i) % 11) / 10;
            CHECK(fabs(v->score - g) < 1e-12, "%s: score %g want %g", want[i].mode, v->score, g);
            CHECK(contains(v->extra_json, "\"grade\":"), "%s: extra %s", want[i].mode,
                  v->extra_json ? v->extra_json : "(null)");
        }
        if (want[i].status == V3_REWARD_ERROR) {
            n_err++;
            CHECK(v->score == 0 && contains(v->error, want[i].err), "%s: score %g error \"%s\" lacks \"%s\"",
                  want[i].mode, v->score, v->error ? v->error : "(none)", want[i].err);
        }
        if (want[i].status == V3_REWARD_SKIP) CHECK(isnan(v->score), "skip score %g", v->score);
        /* the ordinary module beside it is untouched */
        CHECK(l->status == V3_REWARD_OK && l->score == (double)strlen(comp[i]), "len: %g", l->score);
        double comb = (isnan(v->score) ? 0 : v->score) + l->score;
        CHECK(fabs(r[i].reward - comb) < 1e-9, "combined %g want %g", r[i].reward, comb);
    }
    v3_reward_results_free(r, N);
    v3_judge_stats st;
    v3_reward_host_judge_stats(h, 0, &st);
    pthread_mutex_lock(&srv->mu);
    long requests = srv->requests, bad_auth = srv->bad_auth, with_model = srv->with_model;
    int max_active = srv->max_active;
    pthread_mutex_unlock(&srv->mu);
    printf("host batch of %d: %.0f ms; judge %lld requests, %lld attempts, %lld retries, %lld failed; "
           "server: %ld requests, at most %d at once\n",
           N, ms, (long long)st.requests, (long long)st.attempts, (long long)st.retries,
           (long long)st.failures, requests, max_active);
    CHECK(st.requests == N - 1, "judge requests %lld (the skipped sample sends none)", (long long)st.requests);
    /* fail500 1, ratelimitms 1, slow 2, drop 2 */
    CHECK(st.retries == 6 && st.failures == 3, "judge retries %lld failures %lld", (long long)st.retries,
          (long long)st.failures);
    CHECK(requests >= st.attempts && bad_auth == 0 && with_model == requests,
          "server: %ld requests (%lld attempts), %ld bad auth, %ld with model", requests,
          (long long)st.attempts, bad_auth, with_model);
    CHECK(max_active > 1 && st.max_in_flight_seen > 1, "judge requests ran one at a time (server %d, client %d)",
          max_active, st.max_in_flight_seen);
    CHECK(ms < 6000, "host batch took %.0f ms", ms);
    v3_reward_host_free(h);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_judge"));
    char key[64];
    snprintf(key, sizeof key, "sk-test-%016llx", (unsigned long long)v3_rng_u64(&rng));
    setenv(KEY_ENV, key, 1);
    test_parse_reply();
    test_config();
    test_refused();
    judge_server srv;
    if (js_start(&srv, key, SLOW_MS) != 0) {
        CHECK(0, "cannot start the test server");
        return t_finish("test_judge");
    }
    char dir[512];
    t_tmpdir(dir, sizeof dir);
    test_concurrency(&srv);
    test_batch(&srv, key);
    test_no_key(&srv);
    test_module_errors(dir, &srv);
    test_host(dir, &srv);
    js_stop(&srv);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return t_finish("test_judge");
}
