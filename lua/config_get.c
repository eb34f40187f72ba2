/* config_get.c — typed getters of a resolved configuration. */
#include <string.h>

#include "lua/config_internal.h"

/* The value of `key`: a declared key's value, or for open schemas/subtrees the node at that path
 * in the resolved tree. *ki is the declared index or -1. */
static int lookup(const v3_cfg *cfg, const char *key, const json_t **out, int *ki, v3_err *err) {
    size_t len = strlen(key);
    *ki = v3_cfg_find(cfg->keys, cfg->n_keys, key, len);
    if (*ki >= 0) {
        *out = cfg->vals[*ki];
        if (!*out) return v3_errf(err, V3_ENOTFOUND, "config key '%s' is not set", key);
        return V3_OK;
    }
    int open = cfg->schema && cfg->schema->open;
    if (open || v3_cfg_open_ancestor(cfg->keys, cfg->n_keys, key, len) >= 0) {
        const json_t *node = cfg->root;
        for (const char *p = key; node;) {
            size_t ln = strcspn(p, ".");
            node = json_is_object(node) ? json_object_getn(node, p, ln) : NULL;
            if (p[ln] == 0) break;
            p += ln + 1;
        }
        if (node && !json_is_null(node)) {
            *out = node;
            return V3_OK;
        }
        return v3_errf(err, V3_ENOTFOUND, "config key '%s' is not set", key);
    }
    char near[V3_CFG_PATH_MAX];
    v3_cfg_suggest(cfg->keys, cfg->n_keys, key, near, sizeof near);
    return v3_errf(err, V3_ENOTFOUND, "config key '%s' is not declared in schema '%s'%s%s%s", key,
                   cfg->schema ? cfg->schema->name : "?", near[0] ? " (did you mean '" : "", near,
                   near[0] ? "'?)" : "");
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "table";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "nil";
    }
}

static int wrong_type(const v3_cfg *cfg, const char *key, const json_t *v, int ki, const char *want,
                      v3_err *err) {
    const char *is = ki >= 0 ? v3_cfg_type_name(cfg->keys[ki]->type) : json_kind(v);
    return v3_errf(err, V3_EINVAL, "config key '%s' is a %s, not a %s", key, is, want);
}

int v3_cfg_get_int(const v3_cfg *cfg, const char *key, int64_t *out, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_integer(v)) return wrong_type(cfg, key, v, ki, "integer", err);
    *out = json_integer_value(v);
    return V3_OK;
}

int v3_cfg_get_number(const v3_cfg *cfg, const char *key, double *out, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_number(v)) return wrong_type(cfg, key, v, ki, "number", err);
    *out = json_number_value(v);
    return V3_OK;
}

int v3_cfg_get_bool(const v3_cfg *cfg, const char *key, int *out, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_boolean(v)) return wrong_type(cfg, key, v, ki, "boolean", err);
    *out = json_is_true(v);
    return V3_OK;
}

int v3_cfg_get_string(const v3_cfg *cfg, const char *key, const char **out, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_string(v)) return wrong_type(cfg, key, v, ki, "string", err);
    *out = json_string_value(v);
    return V3_OK;
}

int v3_cfg_get_list_len(const v3_cfg *cfg, const char *key, size_t *n, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_array(v)) return wrong_type(cfg, key, v, ki, "list", err);
    *n = json_array_size(v);
    return V3_OK;
}

/* Element i of a list key, or an error naming the key and index. */
static int element(const v3_cfg *cfg, const char *key, size_t i, const json_t **out, v3_err *err) {
    const json_t *v;
    int ki, rc = lookup(cfg, key, &v, &ki, err);
    if (rc != V3_OK) return rc;
    if (!json_is_array(v)) return wrong_type(cfg, key, v, ki, "list", err);
    if (i >= json_array_size(v))
        return v3_errf(err, V3_ERANGE, "config key '%s': index %zu past its %zu elements", key, i,
                       json_array_size(v));
    *out = json_array_get(v, i);
    return V3_OK;
}

int v3_cfg_get_list_string(const v3_cfg *cfg, const char *key, size_t i, const char **out,
                           v3_err *err) {
    const json_t *e;
    int rc = element(cfg, key, i, &e, err);
    if (rc != V3_OK) return rc;
    if (!json_is_string(e))
        return v3_errf(err, V3_EINVAL, "config key '%s': element %zu is a %s, not a string", key, i,
                       json_kind(e));
    *out = json_string_value(e);
    return V3_OK;
}

int v3_cfg_get_list_number(const v3_cfg *cfg, const char *key, size_t i, double *out, v3_err *err) {
    const json_t *e;
    int rc = element(cfg, key, i, &e, err);
    if (rc != V3_OK) return rc;
    if (!json_is_number(e))
        return v3_errf(err, V3_EINVAL, "config key '%s': element %zu is a %s, not a number", key, i,
                       json_kind(e));
    *out = json_number_value(e);
    return V3_OK;
}

int v3_cfg_get_json(const v3_cfg *cfg, const char *key, const json_t **out, v3_err *err) {
    int ki;
    return lookup(cfg, key, out, &ki, err);
}

int v3_cfg_origin(const v3_cfg *cfg, const char *key) {
    int ki = v3_cfg_find(cfg->keys, cfg->n_keys, key, strlen(key));
    return ki < 0 ? -1 : cfg->origin[ki];
}
