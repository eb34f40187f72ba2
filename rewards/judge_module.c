/* judge_module.c — the host side of judge modules: the wire payloads of the judge phases, the
 * reply table handed to parse(), and the module's `judge` table turned into a v3_judge. See
 * judge_module.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/judge_module.h"

typedef struct piece {
    const char *p;
    size_t n;
} piece;

#define LIT(s) ((piece){s, sizeof s - 1})

/* The pieces concatenated into a new NUL-terminated string. */
static int concat(const piece *pc, int np, char **out, size_t *len, v3_err *err) {
    size_t n = 0;
    for (int i = 0; i < np; i++) n += pc[i].n;
    char *s = malloc(n + 1);
    if (!s) return v3_errf(err, V3_ENOMEM, "judge: out of memory");
    size_t o = 0;
    for (int i = 0; i < np; i++) {
        memcpy(s + o, pc[i].p, pc[i].n);
        o += pc[i].n;
    }
    s[o] = 0;
    *out = s;
    *len = o;
    return V3_OK;
}

int v3_judge_wire_config(char **out, size_t *len, v3_err *err) {
    piece pc[1] = {LIT("{\"" V3_JUDGE_PHASE_KEY "\":\"config\"}")};
    return concat(pc, 1, out, len, err);
}

int v3_judge_wire_request(const char *sample, size_t sample_len, char **out, size_t *len, v3_err *err) {
    piece pc[3] = {LIT("{\"" V3_JUDGE_PHASE_KEY "\":\"request\",\"sample\":"), {sample, sample_len},
                   LIT("}")};
    return concat(pc, 3, out, len, err);
}

/* The table parse() receives as `reply`. */
static json_t *reply_json(const v3_judge_result *r) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = json_object_set_new(o, "content", json_string(r->content ? r->content : ""));
    if (r->reasoning) bad |= json_object_set_new(o, "reasoning_content", json_string(r->reasoning));
    if (r->finish_reason) bad |= json_object_set_new(o, "finish_reason", json_string(r->finish_reason));
    bad |= json_object_set_new(o, "status", json_integer(r->http_status));
    bad |= json_object_set_new(o, "attempts", json_integer(r->attempts));
    bad |= json_object_set_new(o, "elapsed_ms", json_real(r->elapsed_ms));
    json_t *full = r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    if (full) bad |= json_object_set_new(o, "response", full);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int v3_judge_wire_parse(const char *sample, size_t sample_len, const v3_judge_result *reply,
                        char **out, size_t *len, v3_err *err) {
    json_t *o = reply_json(reply);
    char *r = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!r) return v3_errf(err, V3_ENOMEM, "judge: out of memory encoding a reply");
    piece pc[5] = {LIT("{\"" V3_JUDGE_PHASE_KEY "\":\"parse\",\"reply\":"), {r, strlen(r)},
                   LIT(",\"sample\":"), {sample, sample_len}, LIT("}")};
    int rc = concat(pc, 5, out, len, err);
    free(r);
    return rc;
}

/* ---- the `judge` table ---- */

enum { K_STR, K_INT, K_NUM };

typedef struct key_spec {
    const char *name;
    int kind;
    double lo, hi; /* K_INT, K_NUM: allowed range */
} key_spec;

static const key_spec KEYS[] = {
    {"url", K_STR, 0, 0},
    {"model", K_STR, 0, 0},
    {"key_env", K_STR, 0, 0},
    {"max_in_flight", K_INT, 1, V3_JUDGE_MAX_IN_FLIGHT},
    {"timeout", K_NUM, 1e-3, 86400},
    {"connect_timeout", K_NUM, 1e-3, 86400},
    {"retries", K_INT, 0, 100},
    {"backoff", K_NUM, 1e-3, 3600},
    {"backoff_max", K_NUM, 1e-3, 86400},
    {"retry_after_max", K_NUM, 1e-3, 86400},
    {"max_body", K_INT, 1024, 1 << 30},
};

/* Checks one member; on success stores it in o (strings borrowed from the JSON tree). */
static int take_key(const char *key, json_t *v, v3_judge_opts *o, v3_err *err) {
    const key_spec *k = NULL;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (strcmp(KEYS[i].name, key) == 0) k = &KEYS[i];
    if (!k) {
        char known[400] = "";
        for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", KEYS[i].name);
        return v3_errf(err, V3_EINVAL, "judge.%.64s: unknown option (known: %s)", key, known);
    }
    if (k->kind == K_STR) {
        if (!json_is_string(v)) return v3_errf(err, V3_EINVAL, "judge.%s must be a string", key);
        const char *s = json_string_value(v);
        if (strcmp(key, "url") == 0) o->url = s;
        else if (strcmp(key, "model") == 0) o->model = s;
        else o->key_env = s;
        return V3_OK;
    }
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= k->lo && x <= k->hi) || (k->kind == K_INT && x != floor(x)))
        return v3_errf(err, V3_EINVAL, "judge.%s must be %s in %g..%g", key,
                       k->kind == K_INT ? "an integer" : "a number", k->lo, k->hi);
    if (strcmp(key, "max_in_flight") == 0) o->max_in_flight = (int)x;
    else if (strcmp(key, "timeout") == 0) o->timeout_s = x;
    else if (strcmp(key, "connect_timeout") == 0) o->connect_timeout_s = x;
    else if (strcmp(key, "retries") == 0) o->max_retries = x == 0 ? -1 : (int)x;
    else if (strcmp(key, "backoff") == 0) o->backoff_base_s = x;
    else if (strcmp(key, "backoff_max") == 0) o->backoff_max_s = x;
    else if (strcmp(key, "retry_after_max") == 0) o->retry_after_max_s = x;
    else o->max_body = (size_t)x;
    return V3_OK;
}

int v3_judge_from_config(v3_judge **judge, const char *config_json, const v3_judge_opts *ov,
                         v3_err *err) {
    *judge = NULL;
    json_error_t je;
    json_t *cfg = json_loads(config_json ? config_json : "", 0, &je);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return v3_errf(err, V3_EINVAL, "judge: the module's `judge` is not a table of options");
    }
    v3_judge_opts o = {0};
    int rc = V3_OK;
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        rc = take_key(key, v, &o, err);
        if (rc != V3_OK) break;
    }
    if (rc == V3_OK && ov) {
        if (ov->url) o.url = ov->url;
        if (ov->model) o.model = ov->model;
        if (ov->key_env) o.key_env = ov->key_env;
        if (ov->max_in_flight) o.max_in_flight = ov->max_in_flight;
        if (ov->timeout_s) o.timeout_s = ov->timeout_s;
        if (ov->connect_timeout_s) o.connect_timeout_s = ov->connect_timeout_s;
        if (ov->max_retries) o.max_retries = ov->max_retries;
        if (ov->backoff_base_s) o.backoff_base_s = ov->backoff_base_s;
        if (ov->backoff_max_s) o.backoff_max_s = ov->backoff_max_s;
        if (ov->retry_after_max_s) o.retry_after_max_s = ov->retry_after_max_s;
        if (ov->max_body) o.max_body = ov->max_body;
        if (ov->seed) o.seed = ov->seed;
    }
    if (rc == V3_OK && (!o.url || !o.url[0]))
        rc = v3_errf(err, V3_EINVAL, "judge.url is required (e.g. \"http://127.0.0.1:8000/v1\")");
    if (rc == V3_OK) rc = v3_judge_init(judge, &o, err);
    json_decref(cfg);
    return rc;
}
