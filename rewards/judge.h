/* judge.h — an HTTP client for OpenAI-compatible `/v1/chat/completions` servers (an "LLM judge"):
 * runs a batch of request bodies concurrently over libcurl's multi interface and returns, per
 * request, the reply's text or why it failed.
 *
 * - At most max_in_flight requests are on the wire at once; the rest wait their turn.
 * - Each attempt has its own timeout (timeout_s, connect_timeout_s).
 * - A network error (timeout, refused or dropped connection, ...), HTTP 408, 429 or 5xx is retried
 *   up to max_retries times, after an exponential backoff with jitter:
 *       delay = d/2 + uniform(0, d/2),  d = min(backoff_max_s, backoff_base_s · 2^(retry-1)),
 *   except that a `Retry-After: SECONDS` (or `retry-after-ms`) header of the failed response is
 *   honoured when it is at most retry_after_max_s. Other statuses (400, 401, 404, ...) and a 2xx
 *   that cannot be read are final at once.
 * - A 2xx is read with jansson: choices[0].message.content (a string) is required;
 *   choices[0].message.reasoning_content and choices[0].finish_reason are kept when present.
 * - The API key is read from the environment variable named by key_env at init and sent as
 *   `Authorization: Bearer KEY`. It appears in no message: curl's verbose output stays off, and
 *   errors quote response bodies with the key cut out.
 *
 * A judge is used by one thread at a time. Requests are POSTed as they are given, except that a
 * body without "model" gets the judge's model. Redirects are not followed. */
#ifndef V3_REWARDS_JUDGE_H
#define V3_REWARDS_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Defaults used when an option is 0. */
#define V3_JUDGE_DEFAULT_IN_FLIGHT 8
#define V3_JUDGE_DEFAULT_TIMEOUT_S 60.0
#define V3_JUDGE_DEFAULT_CONNECT_S 10.0     /* never more than the timeout */
#define V3_JUDGE_DEFAULT_RETRIES 3
#define V3_JUDGE_DEFAULT_BACKOFF_S 0.5
#define V3_JUDGE_DEFAULT_BACKOFF_MAX_S 30.0
#define V3_JUDGE_DEFAULT_RETRY_AFTER_MAX_S 60.0
#define V3_JUDGE_DEFAULT_MAX_BODY (1u << 20) /* bytes of a response kept */
#define V3_JUDGE_MAX_IN_FLIGHT 1024

typedef struct v3_judge_opts {
    const char *url;          /* "http://host:port/v1" (then /chat/completions is added) or the
                                 whole endpoint, ending in /chat/completions; http or https */
    const char *model;        /* put into bodies that have no "model"; NULL: none */
    const char *key_env;      /* environment variable holding the API key; NULL or "": no key */
    int max_in_flight;        /* 0 = default */
    double timeout_s;         /* per attempt, whole transfer; 0 = default */
    double connect_timeout_s; /* per attempt; 0 = default */
    int max_retries;          /* retries after the first attempt; 0 = default; < 0 = none */
    double backoff_base_s;    /* 0 = default */
    double backoff_max_s;     /* 0 = default */
    double retry_after_max_s; /* a longer Retry-After falls back to the backoff; 0 = default */
    size_t max_body;          /* longer response bodies are cut (and then unreadable); 0 = default */
    uint64_t seed;            /* of the jitter; 0 = from the clock and pid */
} v3_judge_opts;

/* One request's outcome. */
typedef struct v3_judge_result {
    int ok;               /* 1: a 2xx whose choices[0].message.content was read */
    long http_status;     /* of the last attempt; 0 when no response came */
    char *body;           /* last response body (cut at max_body, NUL-terminated), or NULL */
    size_t body_len;
    int body_truncated;
    char *content;        /* ok: choices[0].message.content */
    char *reasoning;      /* ok: choices[0].message.reasoning_content, or NULL */
    char *finish_reason;  /* ok: choices[0].finish_reason, or NULL */
    int attempts;         /* 0 when the body was refused before sending */
    double elapsed_ms;    /* first attempt's start to the outcome, waits between attempts included */
    char *error;          /* !ok: why the final attempt failed, naming the failure; else NULL */
} v3_judge_result;

typedef struct v3_judge_stats {
    int64_t requests;      /* requests given to v3_judge_run */
    int64_t attempts;      /* HTTP attempts started */
    int64_t retries;       /* attempts after a retryable failure */
    int64_t failures;      /* requests that ended without ok */
    int max_in_flight_seen;
} v3_judge_stats;

typedef struct v3_judge v3_judge; /* opaque */

/* Checks the options, reads the key (V3_EINVAL when key_env is named but unset or empty) and sets
 * up the transfers. No connection is made yet. On failure *judge is NULL. */
int v3_judge_init(v3_judge **judge, const v3_judge_opts *opts, v3_err *err);
/* Closes the connections, wipes the key, frees everything. NULL is fine. */
void v3_judge_free(v3_judge *judge);

/* The endpoint requests go to (for messages). */
const char *v3_judge_endpoint(const v3_judge *judge);

/* Sends bodies[0..n) (JSON objects as text) concurrently and fills results[0..n) in input order.
 * Failed requests are not errors of the call; it fails only when it cannot go on at all (out of
 * memory, libcurl refusing the multi handle), and then results are freed. Free results with
 * v3_judge_results_free. */
int v3_judge_run(v3_judge *judge, const char *const *bodies, int n, v3_judge_result *results,
                 v3_err *err);
void v3_judge_results_free(v3_judge_result *results, int n);

void v3_judge_get_stats(const v3_judge *judge, v3_judge_stats *st);

/* Reads a chat completion (a 2xx body) into r->content, r->reasoning and r->finish_reason; on
 * failure fills err ("not valid JSON: ...", "no choices[0].message.content ...") and leaves r's
 * text fields NULL. Used by v3_judge_run; exposed for tests. */
int v3_judge_parse_reply(const char *body, size_t len, v3_judge_result *r, v3_err *err);

#endif
