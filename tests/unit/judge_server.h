/* judge_server.h — a small OpenAI-compatible HTTP/1.1 server on 127.0.0.1 for the judge's tests
 * and benchmark (plain sockets, one thread per connection, keep-alive). Each test program
 * includes judge_server.c once (a test is built as one file).
 *
 * What it answers depends on the request body: "case_mode=NAME" picks the behaviour, "case_id=N"
 * names the case (per-id hit counts make "fail once, then succeed" possible), "case_sleep=MS"
 * delays the answer. Modes:
 *   ok          200, content "Looks right. SCORE: <id mod 11>" (the default)
 *   reason      200 like ok, with message.reasoning_content "thinking about <id>"
 *   noscore     200, content without a SCORE line
 *   slow        sleeps slow_ms (beyond the client's timeout) on every hit
 *   slowonce    sleeps slow_ms on the first hit, then ok
 *   fail500     500 on the first hit, then ok
 *   always500   500 on every hit
 *   ratelimit   429 with "Retry-After: 1" on the first hit, then ok
 *   ratelimitms 429 with "retry-after-ms: 300" on the first hit, then ok
 *   drop        closes the connection without answering, on every hit
 *   droponce    closes on the first hit, then ok
 *   garbage     200 with a body that is not JSON
 *   nochoices   200 with a completion object without choices
 *   bad400      400 with an OpenAI error object
 * When expect_key is set, a request whose Authorization is not "Bearer <expect_key>" gets 401 and
 * is counted in bad_auth. */
#ifndef V3_TEST_JUDGE_SERVER_H
#define V3_TEST_JUDGE_SERVER_H

#include <pthread.h>

#define JS_MAX_IDS 4096
#define JS_MAX_CONNS 512

typedef struct judge_server judge_server;
/* Writes the response to one request on fd; nonzero closes the connection. */
typedef int (*js_answer_fn)(judge_server *s, int fd, const char *hdr, const char *body);

struct judge_server {
    int fd, port;
    js_answer_fn answer;         /* the judge's answers (js_start) or a test's own */
    pthread_t accept_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int slow_ms;                 /* sleep of the slow modes */
    char expect_key[256];        /* "" = any Authorization */
    /* under mu */
    int handlers;                /* connection threads alive */
    int conn_fds[JS_MAX_CONNS];  /* open connections (-1 = free), shut down at stop */
    int conns, max_conns;        /* open connections now / at most */
    int active, max_active;      /* requests being answered now / at most */
    long requests, bad_auth, with_model;
    int hits[JS_MAX_IDS];
};

/* Binds 127.0.0.1 on an ephemeral port and starts accepting. 0 on success. */
int js_start(judge_server *s, const char *expect_key, int slow_ms);
/* The same with another answer function (s may be the first member of a larger struct). */
int js_start_with(judge_server *s, const char *expect_key, int slow_ms, js_answer_fn answer);
/* Stops accepting, shuts every connection down, waits for the handlers. */
void js_stop(judge_server *s);
/* Resets the counters (not the connections). */
void js_reset_counts(judge_server *s);

#endif
