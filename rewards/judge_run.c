/* judge_run.c — one batch of judge requests: an event loop over libcurl's multi handle that
 * starts attempts as slots free up (retries that are due first), classifies each finished attempt
 * as done, failed for good, or to be retried after a backoff, and sleeps in curl_multi_poll until
 * the next transfer event, curl timeout or due retry. See judge.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rewards/judge_internal.h"

#define SNIPPET 200 /* bytes of a response body quoted in an error */

enum { R_NEW = 0, R_WAIT, R_RUN, R_DONE };

typedef struct req_state {
    char *body;       /* as sent (model added) */
    size_t len;
    int state;
    int64_t first_ns; /* first attempt's start */
    int64_t ready_ns; /* R_WAIT: when the next attempt may start */
} req_state;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* The body as sent: the caller's JSON object, with the judge's model when it has none. */
static int prepare_body(const v3_judge *j, const char *body, req_state *q, v3_err *err) {
    json_error_t je;
    json_t *o = json_loads(body ? body : "", 0, &je);
    int rc = V3_OK;
    if (!json_is_object(o))
        rc = v3_errf(err, V3_EINVAL, "request body is not a JSON object%s%s", o ? "" : ": ",
                     o ? "" : je.text);
    else if (json_is_true(json_object_get(o, "stream")))
        rc = v3_errf(err, V3_EUNSUPPORTED, "request body asks for \"stream\": true (not supported)");
    else if (j->model && !json_object_get(o, "model") &&
             json_object_set_new(o, "model", json_string(j->model)) != 0)
        rc = v3_errf(err, V3_ENOMEM, "out of memory");
    if (rc == V3_OK) {
        q->body = json_dumps(o, JSON_COMPACT);
        if (!q->body) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        else q->len = strlen(q->body);
    }
    json_decref(o);
    return rc;
}

/* Overwrites every occurrence of the key in s[0..n) with '*' (a server that echoes it). */
static void wipe_key(const v3_judge *j, char *s, size_t n) {
    size_t k = j->key ? strlen(j->key) : 0;
    if (!k || !s) return;
    for (char *p = memmem(s, n, j->key, k); p; p = memmem(p, (size_t)(s + n - p), j->key, k))
        memset(p, '*', k);
}

/* Up to SNIPPET bytes of a body as printable ASCII (anything else becomes '?'). */
static void snippet(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; s && i < n && k + 4 < cap && i < SNIPPET; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = c == '\n' || c == '\r' || c == '\t' ? ' ' : c < 0x20 || c > 0x7e ? '?' : (char)c;
    }
    if (s && n > SNIPPET && k + 4 < cap) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = 0;
}

static int curl_retryable(CURLcode c) {
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int status_retryable(long st) { return st == 408 || st == 429 || st >= 500; }

/* Seconds to wait before retry number k (1-based) of a request. */
static double backoff_s(v3_judge *j, int k, double retry_after_s) {
    if (retry_after_s >= 0 && retry_after_s <= j->retry_after_max_s) return retry_after_s;
    double d = j->backoff_base_s * ldexp(1.0, k - 1 < 60 ? k - 1 : 60);
    if (d > j->backoff_max_s) d = j->backoff_max_s;
    return d / 2 + v3_rng_uniform_f64(&j->rng) * d / 2;
}

static int start_attempt(v3_judge *j, xfer *x, int q, req_state *rq, v3_judge_result *res,
                         v3_err *err) {
    x->req = q;
    x->n = 0;
    x->truncated = 0;
    x->retry_after_s = -1;
    x->errbuf[0] = 0;
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq[q].len);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, rq[q].body);
    CURLMcode mc = curl_multi_add_handle(j->multi, x->easy);
    if (mc != CURLM_OK) {
        x->req = -1;
        return v3_errf(err, V3_EIO, "judge: curl_multi_add_handle: %s", curl_multi_strerror(mc));
    }
    if (res[q].attempts == 0) rq[q].first_ns = v3_judge_now_ns();
    else j->stats.retries++;
    res[q].attempts++;
    j->stats.attempts++;
    rq[q].state = R_RUN;
    return V3_OK;
}

/* An attempt ended with curl code cc. Returns 1 when the request is done (ok or failed for
 * good), 0 when it was scheduled for a retry. */
static int finish_attempt(v3_judge *j, xfer *x, CURLcode cc, req_state *q, v3_judge_result *r) {
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = cc == CURLE_OK ? status : 0;
    wipe_key(j, x->buf, x->n);
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->body_truncated = x->truncated;
    if (x->n) {
        r->body = malloc(x->n + 1);
        if (r->body) {
            memcpy(r->body, x->buf, x->n);
            r->body[x->n] = 0;
            r->body_len = x->n;
        }
    }
    char why[600];
    int retry = 0;
    if (cc != CURLE_OK) {
        snprintf(why, sizeof why, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
        size_t k = strlen(why);
        while (k && (why[k - 1] == '\n' || why[k - 1] == ' ')) why[--k] = 0;
        wipe_key(j, why, k);
        retry = curl_retryable(cc);
    } else if (status >= 200 && status < 300) {
        v3_err e;
        if (x->truncated)
            snprintf(why, sizeof why, "HTTP %ld: response longer than %zu bytes", status, x->max);
        else if (v3_judge_parse_reply(x->buf, x->n, r, &e) == V3_OK) {
            r->ok = 1;
            return 1;
        } else {
            char sn[SNIPPET + 8];
            snippet(x->buf, x->n, sn, sizeof sn);
            snprintf(why, sizeof why, "HTTP %ld: %.300s: %s", status, e.msg, sn);
        }
    } else {
        char sn[SNIPPET + 8];
        snippet(x->buf, x->n, sn, sizeof sn);
        snprintf(why, sizeof why, "HTTP %ld%s%s", status, sn[0] ? ": " : "", sn);
        retry = status_retryable(status);
    }
    if (retry && r->attempts <= j->max_retries) {
        double d = backoff_s(j, r->attempts, x->retry_after_s);
        q->ready_ns = v3_judge_now_ns() + (int64_t)(d * 1e9);
        q->state = R_WAIT;
        return 0;
    }
    size_t n = strlen(why) + 48;
    r->error = malloc(n);
    if (r->error)
        snprintf(r->error, n, "%s (%d attempt%s)", why, r->attempts, r->attempts == 1 ? "" : "s");
    return 1;
}

/* The next request to start: a waiting one whose time has come (wait[0..*n_wait), removed from
 * the list), else the next new one; -1 when none. */
static int pick(const req_state *rq, int n, int *wait, int *n_wait, int *next_new, int64_t now) {
    for (int k = 0; k < *n_wait; k++) {
        int i = wait[k];
        if (rq[i].ready_ns <= now) {
            wait[k] = wait[--*n_wait];
            return i;
        }
    }
    while (*next_new < n && rq[*next_new].state != R_NEW) (*next_new)++;
    return *next_new < n ? (*next_new)++ : -1;
}

int v3_judge_run(v3_judge *j, const char *const *bodies, int n, v3_judge_result *res, v3_err *err) {
    if (n <= 0) return V3_OK;
    memset(res, 0, (size_t)n * sizeof *res);
    req_state *rq = calloc((size_t)n, sizeof *rq);
    int *wait = calloc((size_t)n, sizeof *wait); /* requests waiting for a retry */
    if (!rq || !wait) {
        free(rq);
        free(wait);
        return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    }
    int done = 0, running = 0, next_new = 0, n_wait = 0, rc = V3_OK;
    j->stats.requests += n;
    for (int i = 0; i < n; i++) {
        v3_err e;
        if (prepare_body(j, bodies[i], &rq[i], &e) != V3_OK) {
            res[i].error = dup_str(e.msg);
            rq[i].state = R_DONE;
            j->stats.failures++;
            done++;
        }
    }
    while (done < n && rc == V3_OK) {
        int64_t now = v3_judge_now_ns();
        for (int s = 0; s < j->max_in_flight && rc == V3_OK; s++) {
            if (j->x[s].req >= 0) continue;
            int q = pick(rq, n, wait, &n_wait, &next_new, now);
            if (q < 0) break;
            rc = start_attempt(j, &j->x[s], q, rq, res, err);
            if (rc == V3_OK && ++running > j->stats.max_in_flight_seen) j->stats.max_in_flight_seen = running;
        }
        if (rc != V3_OK) break;
        int still = 0;
        CURLMcode mc = curl_multi_perform(j->multi, &still);
        if (mc != CURLM_OK) {
            rc = v3_errf(err, V3_EIO, "judge: curl_multi_perform: %s", curl_multi_strerror(mc));
            break;
        }
        int finished = 0, left = 0;
        CURLMsg *m;
        while ((m = curl_multi_info_read(j->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *e = m->easy_handle;
            CURLcode cc = m->data.result; /* m dies with remove_handle */
            char *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            xfer *x = (xfer *)priv;
            curl_multi_remove_handle(j->multi, e);
            int q = x->req;
            x->req = -1;
            running--;
            finished++;
            if (finish_attempt(j, x, cc, &rq[q], &res[q])) {
                rq[q].state = R_DONE;
                res[q].elapsed_ms = (double)(v3_judge_now_ns() - rq[q].first_ns) / 1e6;
                if (!res[q].ok) j->stats.failures++;
                done++;
            } else {
                wait[n_wait++] = q;
            }
        }
        if (done >= n || finished) continue;
        /* sleep until curl has work, its own timeout, or the next retry is due */
        long cto = -1;
        curl_multi_timeout(j->multi, &cto);
        int64_t wait_ms = cto >= 0 && cto < 1000 ? cto : 1000;
        if (n_wait && running < j->max_in_flight) {
            now = v3_judge_now_ns();
            for (int k = 0; k < n_wait; k++) {
                int64_t r = rq[wait[k]].ready_ns;
                int64_t w = r <= now ? 0 : (r - now + 999999) / 1000000;
                if (w < wait_ms) wait_ms = w;
            }
        }
        if (wait_ms > 0) curl_multi_poll(j->multi, NULL, 0, (int)wait_ms, NULL);
    }
    for (int s = 0; s < j->max_in_flight; s++)
        if (j->x[s].req >= 0) {
            curl_multi_remove_handle(j->multi, j->x[s].easy);
            j->x[s].req = -1;
        }
    for (int i = 0; i < n; i++) free(rq[i].body);
    free(rq);
    free(wait);
    if (rc != V3_OK) v3_judge_results_free(res, n);
    return rc;
}
