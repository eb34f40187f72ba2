/* config.c — loading a Lua config: evaluate in the sandbox, check keys and types against the
 * schema, fill defaults, apply --set overrides, and build the resolved tree (see config.h).
 *
 * Reading the Lua table: all conversion code uses only Lua API calls that cannot raise (lua_next,
 * lua_pushvalue after lua_checkstack, lua_to* on values of the right type, lua_rawlen). Raising
 * calls outside a protected call would abort the process on a memory error, and raising through
 * this code would leak its C allocations. To visit keys in sorted order (so that the first error
 * reported does not depend on hash order), a table's pairs are copied onto the Lua stack. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/config_internal.h"

/* Open values nest at most this deep; deeper is almost surely a cycle (t.self = t). */
#define V3_CFG_MAX_DEPTH 32

enum { SRC_FILE, SRC_SET, SRC_DEFAULT };

typedef struct load_ctx {
    v3_cfg *cfg;
    v3_sandbox sb;
    v3_alloc_fault *fault;
    const char *display; /* the file name in messages */
    const char *text;    /* the source, for finding a key's line */
    size_t len;
    json_t *extra; /* undeclared keys of an open schema, nested */
    int src;       /* SRC_*: where the value being converted comes from */
    v3_err *err;
} load_ctx;

/* ---- messages ---- */

static int ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Position of `name = ` (or `["name"] =`) at or after `from`, outside "--" comments; len if none. */
static size_t find_assignment(const char *t, size_t len, size_t from, const char *name, size_t ln) {
    for (size_t i = from; i + ln <= len; i++) {
        if (t[i] == '-' && i + 1 < len && t[i + 1] == '-') {
            while (i < len && t[i] != '\n') i++;
            continue;
        }
        size_t j;
        if ((t[i] == '"' || t[i] == '\'') && i > 0 && t[i - 1] == '[' && i + ln + 2 <= len &&
            memcmp(t + i + 1, name, ln) == 0 && t[i + 1 + ln] == t[i] && t[i + 2 + ln] == ']')
            j = i + ln + 3;
        else if ((i == 0 || !ident_char(t[i - 1])) && memcmp(t + i, name, ln) == 0 &&
                 (i + ln == len || !ident_char(t[i + ln])))
            j = i + ln;
        else
            continue;
        while (j < len && (t[j] == ' ' || t[j] == '\t')) j++;
        if (j < len && t[j] == '=' && (j + 1 == len || t[j + 1] != '=')) return i;
    }
    return len;
}

/* Best-effort line of a key in the source: each part of the path is searched after the previous
 * one ("optim" then "lr"), so same-named keys of other sections are skipped. 0 when not found. */
static int key_line(const load_ctx *c, const char *path) {
    if (!c->text) return 0;
    size_t pos = 0, found = c->len;
    const char *p = path;
    while (*p && *p != '[') {
        size_t ln = strcspn(p, ".[");
        found = find_assignment(c->text, c->len, pos, p, ln);
        if (found == c->len) return 0;
        pos = found + ln;
        p += ln;
        if (*p == '.') p++;
    }
    if (found == c->len) return 0;
    int line = 1;
    for (size_t i = 0; i < found; i++) line += c->text[i] == '\n';
    return line;
}

/* An error about a value at `path`, phrased for where the value came from. */
static int val_error(load_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int val_error(load_ctx *c, const char *path, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->src == SRC_SET) return v3_errf(c->err, V3_EUSAGE, "--set %s: %s", path, msg);
    if (c->src == SRC_DEFAULT)
        return v3_errf(c->err, V3_EINVAL, "schema '%s': default of '%s': %s",
                       c->cfg->schema->name, path, msg);
    int line = key_line(c, path);
    if (line > 0) return v3_errf(c->err, V3_EINVAL, "%s:%d: key '%s': %s", c->display, line, path, msg);
    return v3_errf(c->err, V3_EINVAL, "%s: key '%s': %s", c->display, path, msg);
}

static int oom(load_ctx *c) { return v3_errf(c->err, V3_ENOMEM, "%s: out of memory", c->display); }

/* "string \"abc\"", "number 0.5", "boolean true", "table": what a mismatching value is. */
static void describe(lua_State *L, int idx, char *out, size_t cap) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, idx, &l);
        snprintf(out, cap, "string \"%.*s%s\"", (int)(l > 40 ? 40 : l), s, l > 40 ? "..." : "");
        break;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) snprintf(out, cap, "integer %lld", (long long)lua_tointeger(L, idx));
        else snprintf(out, cap, "number %.14g", lua_tonumber(L, idx));
        break;
    case LUA_TBOOLEAN: snprintf(out, cap, "boolean %s", lua_toboolean(L, idx) ? "true" : "false"); break;
    default: snprintf(out, cap, "%s", lua_typename(L, lua_type(L, idx)));
    }
}

static int mismatch(load_ctx *c, lua_State *L, int idx, const char *path, const char *expected) {
    char found[96];
    describe(L, idx, found, sizeof found);
    return val_error(c, path, "expected %s, found %s", expected, found);
}

/* ---- UTF-8 (JSON strings must be valid UTF-8) ---- */

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) k = 1, cp = b & 0x1F;
        else if ((b & 0xF0) == 0xE0) k = 2, cp = b & 0x0F;
        else if ((b & 0xF8) == 0xF0) k = 3, cp = b & 0x07;
        else return 0;
        if (n - i - 1 < k) return 0; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        /* overlong forms, surrogates and code points past Unicode are not UTF-8 */
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int make_string(load_ctx *c, const char *path, const char *s, size_t n, json_t **out) {
    if (!utf8_valid((const unsigned char *)s, n)) return val_error(c, path, "string is not valid UTF-8");
    *out = json_stringn_nocheck(s, n);
    return *out ? V3_OK : oom(c);
}

/* ---- tables: pairs copied onto the stack ---- */

typedef struct entry {
    const char *key; /* string keys (borrowed from the Lua string on the stack) */
    size_t klen;
    lua_Integer ikey; /* integer keys */
    int kind;         /* LUA_TSTRING, LUA_TNUMBER (integer key) or another type: not allowed */
    int vidx;         /* stack index of the value */
} entry;

typedef struct pairs {
    entry *e;
    size_t n;
    int base; /* stack top before the copy: restore with lua_settop(L, base) */
    int n_str, n_int;
} pairs;

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->kind == LUA_TSTRING) {
        size_t m = x->klen < y->klen ? x->klen : y->klen;
        int r = memcmp(x->key, y->key, m);
        return r ? r : (x->klen > y->klen) - (x->klen < y->klen);
    }
    return (x->ikey > y->ikey) - (x->ikey < y->ikey);
}

static void pairs_release(lua_State *L, pairs *p) {
    lua_settop(L, p->base);
    free(p->e);
    p->e = NULL;
}

/* Copies the pairs of the table at idx onto the stack and sorts them (string keys by bytes,
 * integer keys by value). */
static int pairs_collect(load_ctx *c, lua_State *L, int idx, pairs *p) {
    idx = lua_absindex(L, idx);
    memset(p, 0, sizeof *p);
    p->base = lua_gettop(L);
    size_t cap = 0;
    if (!lua_checkstack(L, 3)) return oom(c);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* each pair keeps two slots and the next lua_next needs one more */
        if (!lua_checkstack(L, 3)) {
            pairs_release(L, p);
            return v3_errf(c->err, V3_ENOMEM, "%s: table too large (Lua stack)", c->display);
        }
        if (p->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            entry *ne = v3_fault_realloc(c->fault, p->e, ncap * sizeof *ne);
            if (!ne) {
                pairs_release(L, p);
                return oom(c);
            }
            p->e = ne;
            cap = ncap;
        }
        entry *e = &p->e[p->n++];
        memset(e, 0, sizeof *e);
        e->vidx = lua_gettop(L);
        e->kind = lua_type(L, -2);
        if (e->kind == LUA_TSTRING) {
            e->key = lua_tolstring(L, -2, &e->klen);
            p->n_str++;
        } else if (e->kind == LUA_TNUMBER && lua_isinteger(L, -2)) {
            e->ikey = lua_tointeger(L, -2);
            p->n_int++;
        } else {
            e->kind = LUA_TNONE;
        }
        lua_pushvalue(L, -2); /* the key again, for lua_next */
    }
    if (p->n > 1) qsort(p->e, p->n, sizeof *p->e, cmp_entry);
    return V3_OK;
}

/* A sequence: integer keys exactly 1..n. */
static int pairs_is_list(const pairs *p) {
    if ((size_t)p->n_int != p->n) return 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].ikey != (lua_Integer)i + 1) return 0;
    return 1;
}

static int pairs_is_record(const pairs *p) { return (size_t)p->n_str == p->n; }

/* Why a table is neither a list nor a record, for messages. */
static const char *shape_problem(const pairs *p) {
    if (p->n_str + p->n_int < (int)p->n) return "has keys that are neither strings nor integers";
    if (p->n_str && p->n_int) return "mixes named keys and list elements";
    return "is a list with holes (indices are not 1..n)";
}

/* ---- Lua value -> JSON ---- */

static int convert_any(load_ctx *c, lua_State *L, int idx, const char *path, int depth, json_t **out);

static int convert_table(load_ctx *c, lua_State *L, int idx, const char *path, int depth,
                         int want_list, json_t **out) {
    if (depth > V3_CFG_MAX_DEPTH)
        return val_error(c, path, "tables nested deeper than %d (a table containing itself?)",
                         V3_CFG_MAX_DEPTH);
    pairs p;
    int rc = pairs_collect(c, L, idx, &p);
    if (rc != V3_OK) return rc;
    int is_list = p.n == 0 ? want_list : pairs_is_list(&p);
    if (!is_list && !pairs_is_record(&p)) {
        rc = val_error(c, path, "table %s", shape_problem(&p));
        goto done;
    }
    *out = is_list ? json_array() : json_object();
    if (!*out) {
        rc = oom(c);
        goto done;
    }
    for (size_t i = 0; i < p.n && rc == V3_OK; i++) {
        char child[V3_CFG_PATH_MAX + 32];
        const entry *e = &p.e[i];
        if (is_list) snprintf(child, sizeof child, "%s[%zu]", path, i + 1);
        else snprintf(child, sizeof child, "%s.%.*s", path, (int)e->klen, e->key);
        if (!is_list && (memchr(e->key, 0, e->klen) || !utf8_valid((const unsigned char *)e->key, e->klen))) {
            rc = val_error(c, child, "key is not valid UTF-8 text");
            break;
        }
        json_t *v = NULL;
        rc = convert_any(c, L, e->vidx, child, depth + 1, &v);
        if (rc != V3_OK) break;
        int bad = is_list ? json_array_append_new(*out, v)
                          : json_object_setn_new_nocheck(*out, e->key, e->klen, v);
        if (bad) rc = oom(c);
    }
    if (rc != V3_OK) {
        json_decref(*out);
        *out = NULL;
    }
done:
    pairs_release(L, &p);
    return rc;
}

static int convert_any(load_ctx *c, lua_State *L, int idx, const char *path, int depth, json_t **out) {
    *out = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: *out = json_boolean(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            *out = json_integer(lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (!isfinite(d)) return val_error(c, path, "%g is not a finite number", d);
            *out = json_real(d);
        }
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return make_string(c, path, s, n, out);
    }
    case LUA_TTABLE: return convert_table(c, L, idx, path, depth, 0, out);
    default:
        return val_error(c, path,
                         "a %s cannot be stored in a configuration (only strings, numbers, "
                         "booleans and tables)",
                         lua_typename(L, lua_type(L, idx)));
    }
    return *out ? V3_OK : oom(c);
}

/* Converts the value at idx to declared key k's type. */
static int convert_typed(load_ctx *c, lua_State *L, int idx, const v3_cfg_key *k, const char *path,
                         json_t **out) {
    *out = NULL;
    int t = lua_type(L, idx);
    switch (k->type) {
    case V3_CFG_STRING: {
        if (t != LUA_TSTRING) return mismatch(c, L, idx, path, "string");
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (k->choices && (memchr(s, 0, n) || !v3_cfg_choice_ok(k->choices, s))) {
            char near[64];
            v3_cfg_suggest_choice(k->choices, s, near, sizeof near);
            return val_error(c, path, "\"%s\" is not one of %s%s%s%s", s, k->choices,
                             near[0] ? " (did you mean '" : "", near, near[0] ? "'?)" : "");
        }
        return make_string(c, path, s, n, out);
    }
    case V3_CFG_INT: {
        if (t != LUA_TNUMBER) return mismatch(c, L, idx, path, "integer");
        if (!lua_isinteger(L, idx)) {
            /* 1e3 is a float in Lua; accept it when it is an exact integer */
            double d = lua_tonumber(L, idx);
            if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
                return mismatch(c, L, idx, path, "integer");
            *out = json_integer((json_int_t)d);
        } else {
            *out = json_integer(lua_tointeger(L, idx));
        }
        break;
    }
    case V3_CFG_NUMBER: {
        if (t != LUA_TNUMBER) return mismatch(c, L, idx, path, "number");
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) return val_error(c, path, "expected a finite number, found %g", d);
        *out = json_real(d);
        break;
    }
    case V3_CFG_BOOL:
        if (t != LUA_TBOOLEAN) return mismatch(c, L, idx, path, "boolean");
        *out = json_boolean(lua_toboolean(L, idx));
        break;
    case V3_CFG_STRING_LIST:
    case V3_CFG_NUMBER_LIST: {
        const char *what = v3_cfg_type_name(k->type);
        if (t != LUA_TTABLE) return mismatch(c, L, idx, path, what);
        pairs p;
        int rc = pairs_collect(c, L, idx, &p);
        if (rc != V3_OK) return rc;
        if (p.n && !pairs_is_list(&p)) rc = val_error(c, path, "expected %s, found a table that %s", what, shape_problem(&p));
        if (rc == V3_OK && !(*out = json_array())) rc = oom(c);
        for (size_t i = 0; rc == V3_OK && i < p.n; i++) {
            int vi = p.e[i].vidx;
            char el[48];
            json_t *v = NULL;
            snprintf(el, sizeof el, "element %zu", i + 1);
            if (k->type == V3_CFG_STRING_LIST) {
                if (lua_type(L, vi) != LUA_TSTRING) {
                    char found[96];
                    describe(L, vi, found, sizeof found);
                    rc = val_error(c, path, "%s: expected string, found %s", el, found);
                    break;
                }
                size_t n;
                const char *s = lua_tolstring(L, vi, &n);
                rc = make_string(c, path, s, n, &v);
            } else {
                double d = lua_tonumber(L, vi);
                if (lua_type(L, vi) != LUA_TNUMBER || !isfinite(d)) {
                    char found[96];
                    describe(L, vi, found, sizeof found);
                    rc = val_error(c, path, "%s: expected a finite number, found %s", el, found);
                    break;
                }
                if (!(v = json_real(d))) rc = oom(c);
            }
            if (rc == V3_OK && json_array_append_new(*out, v)) rc = oom(c);
        }
        pairs_release(L, &p);
        if (rc != V3_OK) {
            json_decref(*out);
            *out = NULL;
        }
        return rc;
    }
    case V3_CFG_LIST: {
        if (t != LUA_TTABLE) return mismatch(c, L, idx, path, "list");
        int rc = convert_table(c, L, idx, path, 1, 1, out);
        if (rc == V3_OK && !json_is_array(*out)) {
            json_decref(*out);
            *out = NULL;
            return val_error(c, path, "expected a list, found a table with named keys");
        }
        return rc;
    }
    case V3_CFG_TABLE:
        if (t != LUA_TTABLE) return mismatch(c, L, idx, path, "table");
        return convert_table(c, L, idx, path, 1, 0, out);
    }
    return *out ? V3_OK : oom(c);
}

/* ---- the resolved values ---- */

static void set_value(load_ctx *c, int ki, json_t *v, int origin) {
    json_decref(c->cfg->vals[ki]);
    c->cfg->vals[ki] = v;
    c->cfg->origin[ki] = (unsigned char)origin;
}

/* Stores v (stolen) at dotted `path` below object `root`, creating objects on the way. */
static int set_path(load_ctx *c, json_t *root, const char *path, json_t *v, const char *what) {
    json_t *node = root;
    const char *p = path;
    for (;;) {
        size_t ln = strcspn(p, ".");
        if (p[ln] == 0) {
            if (json_object_setn_new_nocheck(node, p, ln, v)) return oom(c);
            return V3_OK;
        }
        json_t *next = json_object_getn(node, p, ln);
        if (!next) {
            next = json_object();
            if (!next || json_object_setn_new_nocheck(node, p, ln, next)) {
                json_decref(v);
                return oom(c);
            }
        } else if (!json_is_object(next)) {
            /* `path` is the tail of `what` (the full key): name the full key of the value */
            size_t shown = strlen(what) - strlen(path) + (size_t)(p + ln - path);
            json_decref(v);
            return val_error(c, what, "'%.*s' is already a value, not a table", (int)shown, what);
        }
        node = next;
        p += ln + 1;
    }
}

/* ---- walking the file's table along the schema ---- */

static int walk(load_ctx *c, lua_State *L, int idx, const char *prefix) {
    v3_cfg *cfg = c->cfg;
    pairs p;
    int rc = pairs_collect(c, L, idx, &p);
    if (rc != V3_OK) return rc;
    if (!pairs_is_record(&p)) {
        char where[V3_CFG_PATH_MAX + 32];
        if (prefix[0]) snprintf(where, sizeof where, "section '%s'", prefix);
        else snprintf(where, sizeof where, "the table the config returns");
        int line = prefix[0] ? key_line(c, prefix) : 0;
        char at[32] = "";
        if (line > 0) snprintf(at, sizeof at, ":%d", line);
        rc = v3_errf(c->err, V3_EINVAL, "%s%s: %s must have named keys only, but it %s",
                     c->display, at, where, shape_problem(&p));
    }
    for (size_t i = 0; rc == V3_OK && i < p.n; i++) {
        const entry *e = &p.e[i];
        char path[V3_CFG_PATH_MAX];
        int n = snprintf(path, sizeof path, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)e->klen, e->key);
        if (n < 0 || (size_t)n >= sizeof path || memchr(e->key, 0, e->klen)) {
            rc = v3_errf(c->err, V3_EINVAL, "%s: key '%.60s...' is too long or not text", c->display, path);
            break;
        }
        if (memchr(e->key, '.', e->klen)) {
            rc = val_error(c, path, "a key may not contain '.'; nest tables instead (a = { b = ... })");
            break;
        }
        int ki = v3_cfg_find(cfg->keys, cfg->n_keys, path, (size_t)n);
        if (ki >= 0) {
            json_t *v = NULL;
            rc = convert_typed(c, L, e->vidx, cfg->keys[ki], path, &v);
            if (rc == V3_OK) set_value(c, ki, v, V3_CFG_FROM_FILE);
        } else if (v3_cfg_is_section(cfg->keys, cfg->n_keys, path, (size_t)n)) {
            if (lua_type(L, e->vidx) != LUA_TTABLE) rc = mismatch(c, L, e->vidx, path, "table (a section)");
            else rc = walk(c, L, e->vidx, path);
        } else if (cfg->schema->open) {
            json_t *v = NULL;
            rc = convert_any(c, L, e->vidx, path, 1, &v);
            if (rc == V3_OK) rc = set_path(c, c->extra, path, v, path);
        } else {
            char near[V3_CFG_PATH_MAX];
            v3_cfg_suggest(cfg->keys, cfg->n_keys, path, near, sizeof near);
            int line = key_line(c, path);
            char at[32] = "";
            if (line > 0) snprintf(at, sizeof at, ":%d", line);
            rc = v3_errf(c->err, V3_EINVAL, "%s%s: unknown key '%s'%s%s%s", c->display, at, path,
                         near[0] ? " (did you mean '" : "", near, near[0] ? "'?)" : "");
        }
    }
    pairs_release(L, &p);
    return rc;
}

/* ---- --set values and defaults ---- */

static int parse_int(const char *s, int64_t *out) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == 0 && errno == 0) {
        *out = v;
        return 1;
    }
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno || d != floor(d) || !(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return 0;
    *out = (int64_t)d;
    return 1;
}

static int parse_num(const char *s, double *out) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(d)) return 0;
    *out = d;
    return 1;
}

/* Evaluates `return <text>` in the sandbox; on success the value is on top of the stack. */
static int eval_literal(load_ctx *c, const char *path, const char *text) {
    size_t n = strlen(text) + 8;
    char *chunk = v3_fault_malloc(c->fault, n);
    if (!chunk) return oom(c);
    snprintf(chunk, n, "return %s", text);
    char name[V3_CFG_PATH_MAX + 16];
    snprintf(name, sizeof name, "=%s", path);
    v3_err e = {0};
    int rc = v3_sandbox_load(&c->sb, chunk, strlen(chunk), name, &e);
    if (rc == V3_OK) rc = v3_sandbox_call(&c->sb, 0, 1, &e);
    free(chunk);
    if (rc == V3_OK) return V3_OK;
    if (rc == V3_ENOMEM) return v3_errf(c->err, rc, "%s: %s", path, e.msg);
    return val_error(c, path, "bad Lua literal: %s", e.msg);
}

/* "a, b,c" -> ["a","b","c"]; items trimmed of blanks; "" is the empty list. */
static int parse_csv(load_ctx *c, const v3_cfg_key *k, const char *path, const char *text,
                     json_t **out) {
    json_t *arr = json_array();
    if (!arr) return oom(c);
    int rc = V3_OK;
    for (const char *p = text; *text && rc == V3_OK;) {
        size_t ln = strcspn(p, ",");
        const char *s = p;
        size_t n = ln;
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        json_t *v = NULL;
        if (k->type == V3_CFG_STRING_LIST) {
            rc = make_string(c, path, s, n, &v);
        } else {
            char item[64];
            double d;
            snprintf(item, sizeof item, "%.*s", (int)n, s);
            if (n >= sizeof item || !parse_num(item, &d))
                rc = val_error(c, path, "expected a list of numbers, found item \"%.*s\"", (int)n, s);
            else if (!(v = json_real(d)))
                rc = oom(c);
        }
        if (rc == V3_OK && json_array_append_new(arr, v)) rc = oom(c);
        if (p[ln] == 0) break;
        p += ln + 1;
    }
    if (rc != V3_OK) json_decref(arr);
    else *out = arr;
    return rc;
}

/* A Lua table literal for declared key k, checked as a file value would be. */
static int parse_literal(load_ctx *c, const v3_cfg_key *k, const char *path, const char *lit,
                         json_t **out) {
    int rc = eval_literal(c, path, lit);
    if (rc != V3_OK) return rc;
    rc = convert_typed(c, c->sb.L, -1, k, path, out);
    lua_pop(c->sb.L, 1);
    return rc;
}

static int parse_typed(load_ctx *c, const v3_cfg_key *k, const char *path, const char *text,
                       json_t **out) {
    const char *lit = text + strspn(text, " \t");
    *out = NULL;
    switch (k->type) {
    case V3_CFG_STRING:
        if (k->choices && !v3_cfg_choice_ok(k->choices, text)) {
            char near[64];
            v3_cfg_suggest_choice(k->choices, text, near, sizeof near);
            return val_error(c, path, "\"%s\" is not one of %s%s%s%s", text, k->choices,
                             near[0] ? " (did you mean '" : "", near, near[0] ? "'?)" : "");
        }
        return make_string(c, path, text, strlen(text), out);
    case V3_CFG_INT: {
        int64_t v;
        if (!parse_int(text, &v)) return val_error(c, path, "expected integer, found \"%s\"", text);
        *out = json_integer(v);
        break;
    }
    case V3_CFG_NUMBER: {
        double d;
        if (!parse_num(text, &d)) return val_error(c, path, "expected number, found \"%s\"", text);
        *out = json_real(d);
        break;
    }
    case V3_CFG_BOOL:
        if (strcmp(text, "true") && strcmp(text, "false"))
            return val_error(c, path, "expected boolean (true or false), found \"%s\"", text);
        *out = json_boolean(text[0] == 't');
        break;
    case V3_CFG_STRING_LIST:
    case V3_CFG_NUMBER_LIST:
        if (*lit != '{') return parse_csv(c, k, path, text, out);
        return parse_literal(c, k, path, lit, out);
    case V3_CFG_LIST:
    case V3_CFG_TABLE:
        if (*lit != '{')
            return val_error(c, path, "expected a Lua table literal such as {...}, found \"%s\"", text);
        return parse_literal(c, k, path, lit, out);
    }
    return *out ? V3_OK : oom(c);
}

/* A value below an open subtree or in an open schema: its type is inferred from the text. */
static int parse_inferred(load_ctx *c, const char *path, const char *text, json_t **out) {
    int64_t i;
    double d;
    const char *lit = text + strspn(text, " \t");
    if (!strcmp(text, "true") || !strcmp(text, "false")) *out = json_boolean(text[0] == 't');
    else if (parse_int(text, &i) && !strpbrk(text, ".eE")) *out = json_integer(i);
    else if (parse_num(text, &d)) *out = json_real(d);
    else if (*lit == '{') {
        int rc = eval_literal(c, path, lit);
        if (rc != V3_OK) return rc;
        rc = convert_any(c, c->sb.L, -1, path, 1, out);
        lua_pop(c->sb.L, 1);
        return rc;
    } else return make_string(c, path, text, strlen(text), out);
    return *out ? V3_OK : oom(c);
}

static int apply_set(load_ctx *c, const char *set) {
    v3_cfg *cfg = c->cfg;
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return v3_errf(c->err, V3_EUSAGE, "--set expects KEY=VALUE, got \"%s\"", set);
    size_t kl = (size_t)(eq - set);
    if (kl >= V3_CFG_PATH_MAX) return v3_errf(c->err, V3_EUSAGE, "--set: key too long");
    char path[V3_CFG_PATH_MAX];
    memcpy(path, set, kl);
    path[kl] = 0;
    const char *text = eq + 1;
    c->src = SRC_SET;
    int ki = v3_cfg_find(cfg->keys, cfg->n_keys, path, kl);
    int oa = ki < 0 ? v3_cfg_open_ancestor(cfg->keys, cfg->n_keys, path, kl) : -1;
    json_t *v = NULL;
    int rc;
    if (ki >= 0) {
        rc = parse_typed(c, cfg->keys[ki], path, text, &v);
        if (rc == V3_OK) set_value(c, ki, v, V3_CFG_FROM_SET);
    } else if (oa >= 0) {
        json_t *base = cfg->vals[oa];
        if (base && !json_is_object(base))
            return val_error(c, path, "'%s' holds a list; set it whole with a Lua table literal",
                             cfg->keys[oa]->path);
        if (!base) {
            if (!(base = json_object())) return oom(c);
            set_value(c, oa, base, V3_CFG_FROM_SET);
        }
        rc = parse_inferred(c, path, text, &v);
        if (rc == V3_OK) rc = set_path(c, base, path + strlen(cfg->keys[oa]->path) + 1, v, path);
        if (rc == V3_OK) cfg->origin[oa] = V3_CFG_FROM_SET;
    } else if (v3_cfg_is_section(cfg->keys, cfg->n_keys, path, kl)) {
        rc = v3_errf(c->err, V3_EUSAGE, "--set %s: '%s' is a section; set one of its keys", path, path);
    } else if (cfg->schema->open) {
        rc = parse_inferred(c, path, text, &v);
        if (rc == V3_OK) rc = set_path(c, c->extra, path, v, path);
    } else {
        char near[V3_CFG_PATH_MAX];
        v3_cfg_suggest(cfg->keys, cfg->n_keys, path, near, sizeof near);
        rc = v3_errf(c->err, V3_EUSAGE, "--set: unknown key '%s'%s%s%s", path,
                     near[0] ? " (did you mean '" : "", near, near[0] ? "'?)" : "");
    }
    return rc;
}

/* Deep merge of src into dst (both objects); src's values win. */
static int merge(load_ctx *c, json_t *dst, json_t *src) {
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v) {
        json_t *d = json_object_get(dst, k);
        if (d && json_is_object(d) && json_is_object(v)) {
            int rc = merge(c, d, v);
            if (rc != V3_OK) return rc;
        } else if (json_object_set(dst, k, v)) {
            return oom(c);
        }
    }
    return V3_OK;
}

/* ---- the load ---- */

void v3_cfg_free(v3_cfg *cfg) {
    if (!cfg) return;
    if (cfg->vals)
        for (size_t i = 0; i < cfg->n_keys; i++) json_decref(cfg->vals[i]);
    free(cfg->vals);
    free(cfg->origin);
    free(cfg->keys);
    free(cfg->source);
    json_decref(cfg->root);
    memset(cfg, 0, sizeof *cfg);
}

static int load(load_ctx *c, const char *path, const char *text, size_t len,
                const char *const *sets, size_t n_sets, const v3_cfg_opts *opts) {
    v3_cfg *cfg = c->cfg;
    v3_sandbox_limits lim = opts ? opts->limits : (v3_sandbox_limits){0};
    if (!lim.mem_cap) lim.mem_cap = V3_CFG_DEFAULT_MEM_CAP;
    if (!lim.max_instructions) lim.max_instructions = V3_CFG_DEFAULT_MAX_INSTRUCTIONS;
    if (!lim.deadline_ms) lim.deadline_ms = V3_CFG_DEFAULT_DEADLINE_MS;
    c->fault = lim.fault;

    int rc = v3_cfg_schema_flatten(cfg->schema, c->fault, &cfg->keys, &cfg->n_keys, c->err);
    if (rc != V3_OK) return rc;
    size_t nk = cfg->n_keys ? cfg->n_keys : 1;
    /* each array is cleared as soon as it exists: v3_cfg_free reads vals after any failure */
    if ((cfg->vals = v3_fault_malloc(c->fault, nk * sizeof *cfg->vals)))
        memset(cfg->vals, 0, nk * sizeof *cfg->vals);
    if ((cfg->origin = v3_fault_malloc(c->fault, nk))) memset(cfg->origin, 0, nk);
    size_t ls = strlen(c->display) + 1;
    if ((cfg->source = v3_fault_malloc(c->fault, ls))) memcpy(cfg->source, c->display, ls);
    if (!cfg->vals || !cfg->origin || !cfg->source) return oom(c);
    if (!(c->extra = json_object())) return oom(c);

    rc = v3_sandbox_init(&c->sb, &lim, c->err);
    if (rc != V3_OK) return v3_err_prefix(c->err, "%s", c->display);
    lua_State *L = c->sb.L;
    char *owned = NULL;
    if (path) {
        rc = v3_sandbox_read_file(&c->sb, path, &owned, &len, c->err);
        text = owned;
    }
    if (rc == V3_OK) {
        c->text = text;
        c->len = len;
        size_t nl = strlen(c->display) + 2;
        char *chunkname = v3_fault_malloc(c->fault, nl);
        if (!chunkname) rc = oom(c);
        else {
            snprintf(chunkname, nl, "@%s", c->display);
            rc = v3_sandbox_load(&c->sb, text, len, chunkname, c->err);
            free(chunkname);
        }
    }
    if (rc == V3_OK) {
        rc = v3_sandbox_call(&c->sb, 0, 1, c->err);
        /* syntax and runtime errors already read "file:line: ..."; budgets need the file named */
        if (rc == V3_ENOMEM) v3_err_prefix(c->err, "%s", c->display);
    }
    if (rc == V3_OK) {
        if (lua_type(L, -1) != LUA_TTABLE)
            rc = v3_errf(c->err, V3_EINVAL, "%s: the config must return a table, got %s", c->display,
                         luaL_typename(L, -1));
        else {
            c->src = SRC_FILE;
            rc = walk(c, L, -1, "");
        }
        lua_pop(L, 1);
    }
    /* defaults fill what the file left unset; they use the --set syntax */
    c->src = SRC_DEFAULT;
    for (size_t i = 0; rc == V3_OK && i < cfg->n_keys; i++) {
        const v3_cfg_key *k = cfg->keys[i];
        if (cfg->vals[i] || !k->def) continue;
        json_t *v = NULL;
        rc = parse_typed(c, k, k->path, k->def, &v);
        if (rc == V3_OK) set_value(c, (int)i, v, V3_CFG_FROM_DEFAULT);
    }
    for (size_t i = 0; rc == V3_OK && i < n_sets; i++) rc = apply_set(c, sets[i]);
    for (size_t i = 0; rc == V3_OK && i < cfg->n_keys; i++)
        if (!cfg->vals[i] && (cfg->keys[i]->flags & V3_CFG_REQUIRED))
            rc = v3_errf(c->err, V3_EINVAL, "%s: missing required key '%s' (%s)", c->display,
                         cfg->keys[i]->path, cfg->keys[i]->doc ? cfg->keys[i]->doc : "");
    /* the resolved tree, in schema order; unset keys are null so the shape is always complete */
    if (rc == V3_OK && !(cfg->root = json_object())) rc = oom(c);
    for (size_t i = 0; rc == V3_OK && i < cfg->n_keys; i++) {
        json_t *v = cfg->vals[i] ? json_incref(cfg->vals[i]) : json_null();
        rc = set_path(c, cfg->root, cfg->keys[i]->path, v, cfg->keys[i]->path);
    }
    if (rc == V3_OK) rc = merge(c, cfg->root, c->extra);
    free(owned);
    return rc;
}

static int load_common(v3_cfg *cfg, const v3_cfg_schema *schema, const char *display,
                       const char *path, const char *text, size_t len, const char *const *sets,
                       size_t n_sets, const v3_cfg_opts *opts, v3_err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->schema = schema;
    load_ctx c = {.cfg = cfg, .display = display, .err = err};
    int rc = load(&c, path, text, len, sets, n_sets, opts);
    v3_sandbox_free(&c.sb);
    json_decref(c.extra);
    if (rc != V3_OK) v3_cfg_free(cfg);
    return rc;
}

int v3_cfg_load_file(v3_cfg *cfg, const v3_cfg_schema *schema, const char *path,
                     const char *const *sets, size_t n_sets, const v3_cfg_opts *opts, v3_err *err) {
    return load_common(cfg, schema, path, path, NULL, 0, sets, n_sets, opts, err);
}

int v3_cfg_load_string(v3_cfg *cfg, const v3_cfg_schema *schema, const char *name,
                       const char *text, size_t len, const char *const *sets, size_t n_sets,
                       const v3_cfg_opts *opts, v3_err *err) {
    return load_common(cfg, schema, name, NULL, text, len, sets, n_sets, opts, err);
}
