/* judge.c — the judge's set-up: options, endpoint, key and headers, the multi handle with
 * max_in_flight reusable easy handles (connections stay alive between requests and batches), and
 * the callbacks that collect a response's body and Retry-After. The batch loop is judge_run.c.
 * See judge.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rewards/judge_internal.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* ---- curl callbacks ---- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb, keep = n;
    if (x->n + keep > x->max) {
        keep = x->max - x->n;
        x->truncated = 1; /* the rest is read and dropped, so the connection stays usable */
    }
    if (keep) {
        if (x->n + keep + 1 > x->cap) {
            size_t nc = x->cap ? x->cap : 4096;
            while (nc < x->n + keep + 1) nc *= 2;
            char *nb = realloc(x->buf, nc);
            if (!nb) return 0; /* CURLE_WRITE_ERROR */
            x->buf = nb;
            x->cap = nc;
        }
        memcpy(x->buf + x->n, p, keep);
        x->n += keep;
        x->buf[x->n] = 0;
    }
    return n;
}

/* Retry-After (seconds or an HTTP date) and OpenAI's retry-after-ms. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after a 100 Continue, say) */
        x->retry_after_s = -1;
        return n;
    }
    static const char ms_name[] = "retry-after-ms:", s_name[] = "retry-after:";
    int is_ms = n > sizeof ms_name - 1 && strncasecmp(p, ms_name, sizeof ms_name - 1) == 0;
    int is_s = !is_ms && n > sizeof s_name - 1 && strncasecmp(p, s_name, sizeof s_name - 1) == 0;
    if (!is_ms && !is_s) return n;
    size_t skip = is_ms ? sizeof ms_name - 1 : sizeof s_name - 1;
    char v[128];
    size_t k = n - skip < sizeof v - 1 ? n - skip : sizeof v - 1;
    memcpy(v, p + skip, k);
    v[k] = 0;
    while (k && isspace((unsigned char)v[k - 1])) v[--k] = 0;
    char *s = v;
    while (isspace((unsigned char)*s)) s++;
    char *end;
    double d = strtod(s, &end);
    if (end != s && *end == 0 && d >= 0 && isfinite(d)) {
        x->retry_after_s = is_ms ? d / 1000 : d;
    } else if (is_s) {
        time_t t = curl_getdate(s, NULL);
        if (t != -1) {
            double dt = difftime(t, time(NULL));
            x->retry_after_s = dt > 0 ? dt : 0;
        }
    }
    return n;
}

/* ---- init / free ---- */

void v3_judge_free(v3_judge *j) {
    if (!j) return;
    for (int i = 0; j->x && i < j->max_in_flight; i++) {
        if (j->x[i].easy) {
            if (j->multi && j->x[i].req >= 0) curl_multi_remove_handle(j->multi, j->x[i].easy);
            curl_easy_cleanup(j->x[i].easy);
        }
        free(j->x[i].buf);
    }
    free(j->x);
    if (j->multi) curl_multi_cleanup(j->multi);
    for (struct curl_slist *h = j->headers; h; h = h->next) explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(j->headers);
    if (j->key) {
        explicit_bzero(j->key, strlen(j->key));
        free(j->key);
    }
    free(j->endpoint);
    free(j->model);
    if (j->curl_ready) curl_global_cleanup();
    free(j);
}

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int set_endpoint(v3_judge *j, const char *url, v3_err *err) {
    if (!url || !url[0]) return v3_errf(err, V3_EINVAL, "judge: no url");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return v3_errf(err, V3_EINVAL, "judge: url %.200s is not http:// or https://", url);
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return v3_errf(err, V3_EINVAL, "judge: url %.200s holds a space or control byte", url);
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/') n--;
    const char *tail = ends_with(url, n, "/chat/completions") ? "" : "/chat/completions";
    j->endpoint = malloc(n + strlen(tail) + 1);
    if (!j->endpoint) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    memcpy(j->endpoint, url, n);
    strcpy(j->endpoint + n, tail);
    return V3_OK;
}

static int read_key(v3_judge *j, const char *key_env, v3_err *err) {
    if (!key_env || !key_env[0]) return V3_OK;
    const char *v = getenv(key_env);
    if (!v || !v[0])
        return v3_errf(err, V3_EINVAL,
                       "judge: environment variable %.100s (key_env, meant to hold the API key) is "
                       "not set",
                       key_env);
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            return v3_errf(err, V3_EINVAL, "judge: the API key in %.100s holds a control byte", key_env);
    j->key = dup_str(v);
    if (!j->key) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    return V3_OK;
}

static int set_headers(v3_judge *j, v3_err *err) {
    /* "Expect:" stops curl from waiting for a 100 Continue before larger bodies */
    static const char *const fixed[] = {"Content-Type: application/json", "Accept: application/json",
                                        "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *h = curl_slist_append(j->headers, fixed[i]);
        if (!h) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
        j->headers = h;
    }
    if (!j->key) return V3_OK;
    static const char pre[] = "Authorization: Bearer ";
    size_t n = sizeof pre + strlen(j->key);
    char *auth = malloc(n);
    if (!auth) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    snprintf(auth, n, "%s%s", pre, j->key);
    struct curl_slist *h = curl_slist_append(j->headers, auth);
    explicit_bzero(auth, n);
    free(auth);
    if (!h) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    j->headers = h;
    return V3_OK;
}

static int setup_easy(v3_judge *j, xfer *x, v3_err *err) {
    x->req = -1;
    x->max = j->max_body;
    x->easy = curl_easy_init();
    if (!x->easy) return v3_errf(err, V3_ENOMEM, "judge: curl_easy_init failed");
    CURL *e = x->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val) \
    if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, j->endpoint);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_HTTPHEADER, j->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, j->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, j->connect_ms);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, "v3tune/" V3_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
    if (c != CURLE_OK) return v3_errf(err, V3_EINVAL, "judge: curl option: %s", curl_easy_strerror(c));
    return V3_OK;
}

int v3_judge_init(v3_judge **out, const v3_judge_opts *o, v3_err *err) {
    *out = NULL;
    v3_judge *j = calloc(1, sizeof *j);
    if (!j) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    j->max_in_flight = o->max_in_flight > 0 ? o->max_in_flight : V3_JUDGE_DEFAULT_IN_FLIGHT;
    double timeout = o->timeout_s > 0 ? o->timeout_s : V3_JUDGE_DEFAULT_TIMEOUT_S;
    double connect = o->connect_timeout_s > 0 ? o->connect_timeout_s : V3_JUDGE_DEFAULT_CONNECT_S;
    if (connect > timeout) connect = timeout;
    j->timeout_ms = (long)ceil(timeout * 1000);
    j->connect_ms = (long)ceil(connect * 1000);
    j->max_retries = o->max_retries > 0 ? o->max_retries : o->max_retries < 0 ? 0 : V3_JUDGE_DEFAULT_RETRIES;
    j->backoff_base_s = o->backoff_base_s > 0 ? o->backoff_base_s : V3_JUDGE_DEFAULT_BACKOFF_S;
    j->backoff_max_s = o->backoff_max_s > 0 ? o->backoff_max_s : V3_JUDGE_DEFAULT_BACKOFF_MAX_S;
    j->retry_after_max_s = o->retry_after_max_s > 0 ? o->retry_after_max_s : V3_JUDGE_DEFAULT_RETRY_AFTER_MAX_S;
    j->max_body = o->max_body ? o->max_body : V3_JUDGE_DEFAULT_MAX_BODY;
    v3_rng_seed(&j->rng, o->seed ? o->seed : (uint64_t)v3_judge_now_ns() ^ ((uint64_t)getpid() << 32));
    int rc = V3_OK;
    if (j->max_in_flight > V3_JUDGE_MAX_IN_FLIGHT || !isfinite(timeout) || timeout > 86400 ||
        j->max_retries > 100 || !isfinite(j->backoff_base_s) || !isfinite(j->backoff_max_s) ||
        !isfinite(j->retry_after_max_s))
        rc = v3_errf(err, V3_EINVAL,
                     "judge: options out of range (max_in_flight 1..%d, timeout <= 86400 s, "
                     "retries <= 100, finite backoffs)",
                     V3_JUDGE_MAX_IN_FLIGHT);
    if (rc == V3_OK) rc = set_endpoint(j, o->url, err);
    if (rc == V3_OK && o->model && o->model[0] && !(j->model = dup_str(o->model)))
        rc = v3_errf(err, V3_ENOMEM, "judge: out of memory");
    if (rc == V3_OK) rc = read_key(j, o->key_env, err);
    if (rc == V3_OK) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            rc = v3_errf(err, V3_EINVAL, "judge: curl_global_init failed");
        else j->curl_ready = 1;
    }
    if (rc == V3_OK) rc = set_headers(j, err);
    if (rc == V3_OK && !(j->multi = curl_multi_init()))
        rc = v3_errf(err, V3_ENOMEM, "judge: curl_multi_init failed");
    if (rc == V3_OK) {
        curl_multi_setopt(j->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)j->max_in_flight);
        curl_multi_setopt(j->multi, CURLMOPT_MAXCONNECTS, (long)j->max_in_flight);
        j->x = calloc((size_t)j->max_in_flight, sizeof *j->x);
        if (!j->x) rc = v3_errf(err, V3_ENOMEM, "judge: out of memory");
        for (int i = 0; j->x && i < j->max_in_flight; i++) j->x[i].req = -1;
    }
    for (int i = 0; rc == V3_OK && i < j->max_in_flight; i++) rc = setup_easy(j, &j->x[i], err);
    if (rc != V3_OK) {
        v3_judge_free(j);
        return rc;
    }
    *out = j;
    return V3_OK;
}

const char *v3_judge_endpoint(const v3_judge *j) { return j->endpoint; }

void v3_judge_get_stats(const v3_judge *j, v3_judge_stats *st) { *st = j->stats; }

void v3_judge_results_free(v3_judge_result *r, int n) {
    for (int i = 0; r && i < n; i++) {
        free(r[i].body);
        free(r[i].content);
        free(r[i].reasoning);
        free(r[i].finish_reason);
        free(r[i].error);
        memset(&r[i], 0, sizeof r[i]);
    }
}

