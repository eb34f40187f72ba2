/* rm_config.c — a reward-config entry naming a local reward model (rewards/rm.h):
 *     { model = "DIR", name = "helpful", weight = 0.5, template = "v3", label = 0,
 *       max_tokens = 4096, fallback = 0, tokenizer = "DIR2" }
 * read from its JSON form into v3_rm_opts. */
#include <math.h>
#include <string.h>

#include "rewards/rm.h"

static int str_key(const char *k, json_t *v, const char **dst, v3_err *err) {
    if (!json_is_string(v) || !*json_string_value(v))
        return v3_errf(err, V3_EINVAL, "reward model entry: %s must be a non-empty string", k);
    *dst = json_string_value(v);
    return V3_OK;
}

static int int_key(const char *k, json_t *v, int64_t lo, int64_t hi, int64_t *dst, v3_err *err) {
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= (double)lo && x <= (double)hi) || x != floor(x))
        return v3_errf(err, V3_EINVAL, "reward model entry: %s must be an integer in %lld..%lld", k,
                       (long long)lo, (long long)hi);
    *dst = (int64_t)x;
    return V3_OK;
}

static int num_key(const char *k, json_t *v, int allow_nan, double *dst, v3_err *err) {
    if (allow_nan && json_is_string(v) && !strcmp(json_string_value(v), "nan")) {
        *dst = NAN;
        return V3_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return v3_errf(err, V3_EINVAL, "reward model entry: %s must be a finite number%s", k,
                       allow_nan ? " or \"nan\"" : "");
    *dst = json_number_value(v);
    return V3_OK;
}

int v3_rm_opts_from_json(const json_t *entry, v3_rm_opts *o, v3_err *err) {
    memset(o, 0, sizeof *o);
    if (!json_is_object(entry)) return v3_errf(err, V3_EINVAL, "reward model entry: expected a table");
    const char *k;
    json_t *v;
    int rc = V3_OK;
    json_object_foreach((json_t *)entry, k, v) {
        int64_t i = 0;
        if (!strcmp(k, "model")) rc = str_key(k, v, &o->dir, err);
        else if (!strcmp(k, "name")) rc = str_key(k, v, &o->name, err);
        else if (!strcmp(k, "template")) rc = str_key(k, v, &o->template_name, err);
        else if (!strcmp(k, "tokenizer")) rc = str_key(k, v, &o->tokenizer_dir, err);
        else if (!strcmp(k, "weight")) rc = num_key(k, v, 0, &o->weight, err), o->has_weight = 1;
        else if (!strcmp(k, "fallback")) rc = num_key(k, v, 1, &o->fallback, err);
        else if (!strcmp(k, "label")) rc = int_key(k, v, 0, 1 << 20, &i, err), o->label = (int)i;
        else if (!strcmp(k, "max_tokens")) rc = int_key(k, v, 1, INT32_MAX, &i, err), o->max_tokens = i;
        else rc = v3_errf(err, V3_EINVAL, "reward model entry: unknown key '%s' (model, name, weight, "
                          "template, label, max_tokens, fallback, tokenizer)", k);
        if (rc) return rc;
    }
    if (!o->dir) return v3_errf(err, V3_EINVAL, "reward model entry: model = \"DIR\" is required");
    return V3_OK;
}
