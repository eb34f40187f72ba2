/* config_dump.c — the resolved configuration as JSON (stored with a run) and as a commented Lua
 * file (shown to people; loading it back gives the same configuration).
 * Our own emitter rather than json_dumps: jansson prints reals with 17 digits (3e-4 becomes
 * 0.00029999999999999997); here every real is printed in its shortest form that reads back exactly. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/config_internal.h"

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) b->oom = 1;
    else sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_indent(strbuf *b, int n) {
    for (int i = 0; i < n; i++) sb_put(b, " ", 1);
}

static char *sb_finish(strbuf *b) {
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* Shortest %.Ng that reads back to the same double, with ".0" added when it would otherwise read
 * as an integer (in Lua and in JSON readers that keep the distinction). */
static void fmt_real(double d, char *out, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d) break;
    }
    if (!strpbrk(out, ".eEn")) {
        size_t l = strlen(out);
        if (l + 3 <= cap) memcpy(out + l, ".0", 3);
    }
}

/* ---- JSON ---- */

static void json_str(strbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) sb_printf(b, "\\u%04x", c);
            else sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void emit_json(strbuf *b, const json_t *v, int indent, int level) {
    char num[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY: {
        int obj = json_is_object(v);
        size_t n = obj ? json_object_size(v) : json_array_size(v);
        sb_puts(b, obj ? "{" : "[");
        if (n == 0) {
            sb_puts(b, obj ? "}" : "]");
            break;
        }
        size_t i = 0;
        const char *k;
        json_t *x;
        void *it = obj ? json_object_iter((json_t *)v) : NULL;
        for (i = 0; i < n; i++) {
            if (i) sb_puts(b, ",");
            if (indent) {
                sb_puts(b, "\n");
                sb_indent(b, indent * (level + 1));
            } else if (i) {
                sb_puts(b, " ");
            }
            if (obj) {
                k = json_object_iter_key(it);
                x = json_object_iter_value(it);
                json_str(b, k, json_object_iter_key_len(it));
                sb_puts(b, ": ");
                it = json_object_iter_next((json_t *)v, it);
            } else {
                x = json_array_get(v, i);
            }
            emit_json(b, x, indent, level + 1);
        }
        if (indent) {
            sb_puts(b, "\n");
            sb_indent(b, indent * level);
        }
        sb_puts(b, obj ? "}" : "]");
        break;
    }
    case JSON_STRING: json_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: sb_printf(b, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL:
        fmt_real(json_real_value(v), num, sizeof num);
        sb_puts(b, num);
        break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NULL: sb_puts(b, "null"); break;
    }
}

char *v3_cfg_to_json(const v3_cfg *cfg, int indent) {
    strbuf b = {0};
    if (!cfg->root) return NULL;
    emit_json(&b, cfg->root, indent < 0 ? 0 : indent, 0);
    sb_puts(&b, "\n");
    return sb_finish(&b);
}

/* ---- Lua ---- */

static int lua_reserved(const char *s, size_t n) {
    static const char *const words[] = {"and", "break", "do", "else", "elseif", "end", "false",
                                        "for", "function", "goto", "if", "in", "local", "nil",
                                        "not", "or", "repeat", "return", "then", "true", "until",
                                        "while"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0) return 1;
    return 0;
}

static int is_lua_name(const char *s, size_t n) {
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return !lua_reserved(s, n);
}

/* A Lua string literal; control bytes as \ddd (three digits, so a following digit is safe). */
static void lua_str(strbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') sb_puts(b, "\\\"");
        else if (c == '\\') sb_puts(b, "\\\\");
        else if (c == '\n') sb_puts(b, "\\n");
        else if (c == '\t') sb_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f) sb_printf(b, "\\%03u", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static int is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

static const char *origin_name(int o) {
    switch (o) {
    case V3_CFG_FROM_DEFAULT: return "default";
    case V3_CFG_FROM_FILE: return "file";
    case V3_CFG_FROM_SET: return "--set";
    default: return "unset";
    }
}

/* Emits value v. `path` is its dotted path while inside declared sections (for the doc comments),
 * NULL inside open values. */
static void emit_lua(strbuf *b, const v3_cfg *cfg, const json_t *v, const char *path, int level) {
    char num[40];
    switch (json_typeof(v)) {
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        int flat = 1;
        for (size_t i = 0; i < n; i++) flat &= is_scalar(json_array_get(v, i));
        sb_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            if (flat) sb_puts(b, i ? ", " : " ");
            else {
                sb_puts(b, "\n");
                sb_indent(b, 2 * (level + 1));
            }
            emit_lua(b, cfg, json_array_get(v, i), NULL, level + 1);
            if (!flat) sb_puts(b, ",");
        }
        if (n && flat) sb_puts(b, " ");
        if (n && !flat) {
            sb_puts(b, "\n");
            sb_indent(b, 2 * level);
        }
        sb_puts(b, "}");
        break;
    }
    case JSON_OBJECT: {
        sb_puts(b, "{");
        void *it = json_object_iter((json_t *)v);
        if (!it) {
            sb_puts(b, "}");
            break;
        }
        for (; it; it = json_object_iter_next((json_t *)v, it)) {
            const char *k = json_object_iter_key(it);
            size_t kl = json_object_iter_key_len(it);
            const json_t *x = json_object_iter_value(it);
            sb_puts(b, "\n");
            sb_indent(b, 2 * (level + 1));
            if (is_lua_name(k, kl)) sb_put(b, k, kl);
            else {
                sb_puts(b, "[");
                lua_str(b, k, kl);
                sb_puts(b, "]");
            }
            sb_puts(b, " = ");
            /* declared keys get their doc and origin; sections pass their path down */
            char child[V3_CFG_PATH_MAX];
            int ki = -1;
            const char *cpath = NULL;
            if (path && snprintf(child, sizeof child, "%s%s%.*s", path, path[0] ? "." : "",
                                 (int)kl, k) < (int)sizeof child) {
                ki = v3_cfg_find(cfg->keys, cfg->n_keys, child, strlen(child));
                if (ki < 0 && (v3_cfg_is_section(cfg->keys, cfg->n_keys, child, strlen(child)) ||
                               (cfg->schema && cfg->schema->open)))
                    cpath = child;
            }
            if (json_is_null(x)) sb_puts(b, "nil");
            else emit_lua(b, cfg, x, cpath, level + 1);
            sb_puts(b, ",");
            if (ki >= 0) {
                const v3_cfg_key *key = cfg->keys[ki];
                sb_printf(b, " -- %s [%s: %s]", key->doc ? key->doc : "", v3_cfg_type_name(key->type),
                          origin_name(cfg->origin[ki]));
            }
        }
        sb_puts(b, "\n");
        sb_indent(b, 2 * level);
        sb_puts(b, "}");
        break;
    }
    case JSON_STRING: lua_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: {
        long long i = json_integer_value(v);
        /* -9223372036854775808 would read back as a float: its positive part overflows */
        if (i == (-9223372036854775807LL - 1)) sb_puts(b, "math.mininteger");
        else sb_printf(b, "%lld", i);
        break;
    }
    case JSON_REAL:
        fmt_real(json_real_value(v), num, sizeof num);
        sb_puts(b, num);
        break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NULL: sb_puts(b, "nil"); break;
    }
}

char *v3_cfg_to_lua(const v3_cfg *cfg) {
    strbuf b = {0};
    if (!cfg->root) return NULL;
    sb_puts(&b, "-- resolved configuration, schema '");
    sb_puts(&b, cfg->schema && cfg->schema->name ? cfg->schema->name : "?");
    sb_puts(&b, "', from ");
    /* the source name goes into a comment: keep it on one line */
    for (const char *s = cfg->source ? cfg->source : "?"; *s; s++)
        sb_put(&b, (unsigned char)*s < 0x20 ? "?" : s, 1);
    sb_puts(&b, "\n-- each key: doc [type: where the value came from]\nreturn ");
    emit_lua(&b, cfg, cfg->root, "", 0);
    sb_puts(&b, "\n");
    return sb_finish(&b);
}
