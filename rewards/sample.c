/* sample.c — encodes a v3_reward_sample for the worker, and combines per-function scores the way
 * TRL's GRPOTrainer does (see sample.h and host.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lua/v3mod.h"
#include "rewards/sample.h"

/* Length of the longest prefix of s[0..n) of at most max bytes that does not cut a UTF-8
 * sequence in two. */
static size_t cut_utf8(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    size_t k = max;
    /* step back over continuation bytes, then drop the lead byte whose sequence was cut */
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* A JSON string of text (cut to max bytes); invalid UTF-8 bytes become U+FFFD, since jansson only
 * holds valid UTF-8 and completions cut at token boundaries are often not. */
static json_t *text_json(const char *text, size_t max, int *truncated) {
    size_t n = strlen(text);
    size_t keep = cut_utf8(text, n, max);
    if (keep < n) *truncated = 1;
    char *c = malloc(keep * 3 + 1);
    if (!c) return NULL;
    size_t o = 0, i = 0;
    while (i < keep) {
        size_t k = v3_utf8_seq((const unsigned char *)text + i, keep - i);
        if (k == 0) {
            memcpy(c + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(c + o, text + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(c, o);
    free(c);
    return j;
}

int v3_reward_sample_encode(const v3_reward_sample *s, size_t max_text, size_t max_sample,
                            char **json, size_t *len, v3_err *err) {
    *json = NULL;
    *len = 0;
    json_t *o = json_object();
    if (!o) return v3_errf(err, V3_ENOMEM, "out of memory encoding a sample");
    int truncated = 0, rc = V3_OK;
    if (s->prompt) json_object_set_new(o, "prompt", text_json(s->prompt, max_text, &truncated));
    if (s->completion)
        json_object_set_new(o, "completion", text_json(s->completion, max_text, &truncated));
    if (s->finish_reason)
        json_object_set_new(o, "finish_reason", text_json(s->finish_reason, 256, &truncated));
    if (s->completion_ids) {
        json_t *a = json_array();
        for (int i = 0; a && i < s->n_completion_ids; i++)
            json_array_append_new(a, json_integer(s->completion_ids[i]));
        json_object_set_new(o, "completion_ids", a);
    }
    const char *what[2] = {s->messages_json, s->row_json};
    const char *key[2] = {"messages", "row"};
    for (int k = 0; k < 2 && rc == V3_OK; k++) {
        if (!what[k]) continue;
        json_error_t je;
        json_t *v = json_loads(what[k], 0, &je);
        if (!v || (k == 0 ? !json_is_array(v) : !json_is_object(v))) {
            rc = v3_errf(err, V3_EFORMAT, "sample %s: %s", key[k],
                         v ? (k == 0 ? "not a JSON array" : "not a JSON object") : je.text);
            json_decref(v);
            break;
        }
        json_object_set_new(o, key[k], v);
    }
    json_object_set_new(o, "group", json_integer(s->group));
    json_object_set_new(o, "index", json_integer(s->index));
    if (truncated) json_object_set_new(o, "truncated", json_true());
    if (rc == V3_OK) {
        char *t = json_dumps(o, JSON_COMPACT);
        if (!t) rc = v3_errf(err, V3_ENOMEM, "out of memory encoding a sample");
        else if (strlen(t) > max_sample) {
            rc = v3_errf(err, V3_ERANGE, "sample of %zu bytes exceeds the limit of %zu", strlen(t),
                         max_sample);
            free(t);
        } else {
            *json = t;
            *len = strlen(t);
        }
    }
    json_decref(o);
    return rc;
}

void v3_reward_combine(v3_reward_result *r, const double *weights, int n_funcs) {
    double sum = 0;
    r->n_scored = 0;
    r->n_errors = 0;
    for (int f = 0; f < n_funcs; f++) {
        const v3_reward_value *v = &r->values[f];
        if (v->status == V3_REWARD_ERROR) r->n_errors++;
        if (isnan(v->score)) continue; /* None -> NaN -> left out by nansum */
        sum += weights[f] * v->score;
        r->n_scored++;
    }
    r->reward = sum;
}
