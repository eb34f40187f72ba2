/* v3mod_json.c — JSON for sandboxed scripts: v3.json.encode/decode/null and the C helpers the
 * reward worker shares with them (v3_json_push, v3_json_encode_push).
 *
 * Encoding writes into a Lua userdata that is replaced by a bigger one as it grows, not into a C
 * buffer: every byte is then counted by the sandbox's memory cap, and a Lua error (a budget kill,
 * a bad value) can unwind through the encoder without leaking anything. Decoding uses jansson,
 * whose tree lives outside the sandbox: its input length is capped, and the tree is held by a
 * userdata with a C finalizer so that an error while building the Lua value still frees it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/v3mod.h"

#define JSONBOX_META "v3.jsonbox"

/* ---- UTF-8 ---- */

size_t v3_utf8_seq(const unsigned char *p, size_t n) {
    if (n == 0) return 0;
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* overlong forms, surrogates and code points past U+10FFFF are not valid UTF-8 */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* ---- the growing output buffer: a userdata at stack slot `slot` ---- */

typedef struct jbuf {
    lua_State *L;
    int slot;
    char *p;
    size_t n, cap;
} jbuf;

static void jb_init(jbuf *b, lua_State *L) {
    b->L = L;
    b->cap = 256;
    b->n = 0;
    b->p = lua_newuserdatauv(L, b->cap, 0);
    b->slot = lua_gettop(L);
}

static void jb_reserve(jbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t nc = b->cap;
    while (nc < b->n + extra) {
        if (nc > ((size_t)-1) / 2) luaL_error(b->L, "json: value too large");
        nc *= 2;
    }
    char *np = lua_newuserdatauv(b->L, nc, 0);
    memcpy(np, b->p, b->n);
    lua_replace(b->L, b->slot);
    b->p = np;
    b->cap = nc;
}

static void jb_add(jbuf *b, const char *s, size_t n) {
    jb_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void jb_addc(jbuf *b, char c) { jb_add(b, &c, 1); }

static void jb_addstr(jbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    jb_reserve(b, n + 2);
    jb_addc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jb_add(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '\n') jb_add(b, "\\n", 2);
            else if (c == '\t') jb_add(b, "\\t", 2);
            else if (c == '\r') jb_add(b, "\\r", 2);
            else jb_add(b, e, 6);
            i++;
        } else if (c < 0x80) {
            jb_addc(b, (char)c);
            i++;
        } else {
            size_t k = v3_utf8_seq(u + i, n - i);
            if (k == 0) {
                jb_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that starts no valid sequence */
                i++;
            } else {
                jb_add(b, s + i, k);
                i += k;
            }
        }
    }
    jb_addc(b, '"');
}

static void jb_addnum(jbuf *b, lua_State *L, int idx) {
    char tmp[64];
    int len;
    if (lua_isinteger(L, idx)) {
        len = snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) luaL_error(L, "json: cannot encode %f (NaN or infinity)", d);
        len = snprintf(tmp, sizeof tmp, "%.17g", d);
        /* keep it a JSON real, so a decoder gives back a float */
        if (!strpbrk(tmp, ".eE")) tmp[len++] = '.', tmp[len++] = '0', tmp[len] = 0;
    }
    jb_add(b, tmp, (size_t)len);
}

/* ---- encode ---- */

typedef struct keyref {
    const char *s;
    size_t len;
} keyref;

static int keyref_cmp(const void *a, const void *b) {
    const keyref *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void encode_value(jbuf *b, int idx, int depth);

/* The table at idx as an array ([...]) when its keys are exactly 1..n with n >= 1. */
static int is_array(lua_State *L, int idx, lua_Integer *n_out) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 0) return 0;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n_out = n;
    return count == n;
}

/* An object's members in sorted key order, so that equal tables encode to equal text whatever
 * the state's hash seed. Keys that are numbers are written as their decimal text. */
static void encode_object(jbuf *b, int idx, int depth) {
    lua_State *L = b->L;
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
    }
    /* anchor: text key -> original key; it also keeps converted key strings alive */
    lua_createtable(L, 0, (int)(count < 1u << 20 ? count : 0));
    int anchor = lua_gettop(L);
    keyref *keys = lua_newuserdatauv(L, (count ? count : 1) * sizeof(keyref), 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int t = lua_type(L, -1);
        if (t == LUA_TSTRING) {
            lua_pushvalue(L, -1);
        } else if (t == LUA_TNUMBER) {
            char tmp[64];
            if (lua_isinteger(L, -1)) snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, -1));
            else snprintf(tmp, sizeof tmp, "%.17g", lua_tonumber(L, -1));
            lua_pushstring(L, tmp);
        } else {
            luaL_error(L, "json: cannot encode a table key of type %s", luaL_typename(L, -1));
        }
        /* stack: key, text */
        lua_pushvalue(L, -1);
        if (lua_rawget(L, anchor) != LUA_TNIL)
            luaL_error(L, "json: two keys of one table encode as \"%s\"", lua_tostring(L, -2));
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushvalue(L, -3);
        lua_rawset(L, anchor); /* anchor[text] = key */
        keys[k].s = lua_tolstring(L, -1, &keys[k].len); /* alive as a key of anchor */
        k++;
        lua_pop(L, 1);
    }
    qsort(keys, k, sizeof *keys, keyref_cmp);
    jb_addc(b, '{');
    for (size_t i = 0; i < k; i++) {
        if (i) jb_addc(b, ',');
        jb_addstr(b, keys[i].s, keys[i].len);
        jb_addc(b, ':');
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, anchor); /* the original key */
        lua_rawget(L, idx);    /* its value */
        encode_value(b, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    jb_addc(b, '}');
    lua_pop(L, 2); /* keys, anchor */
}

static void encode_value(jbuf *b, int idx, int depth) {
    lua_State *L = b->L;
    if (depth > V3_JSON_MAX_DEPTH)
        luaL_error(L, "json: nesting deeper than %d (or a cycle)", V3_JSON_MAX_DEPTH);
    luaL_checkstack(L, 8, "json: nesting too deep");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        jb_add(b, "null", 4);
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) jb_add(b, "true", 4);
        else jb_add(b, "false", 5);
        break;
    case LUA_TNUMBER:
        jb_addnum(b, L, idx);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        jb_addstr(b, s, n);
        break;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            jb_add(b, "null", 4);
            break;
        }
        luaL_error(L, "json: cannot encode a userdata");
        break;
    case LUA_TTABLE: {
        lua_Integer n;
        if (is_array(L, idx, &n)) {
            jb_addc(b, '[');
            for (lua_Integer i = 1; i <= n; i++) {
                if (i > 1) jb_addc(b, ',');
                lua_rawgeti(L, idx, i);
                encode_value(b, lua_gettop(L), depth + 1);
                lua_pop(L, 1);
            }
            jb_addc(b, ']');
        } else {
            encode_object(b, idx, depth);
        }
        break;
    }
    default:
        luaL_error(L, "json: cannot encode a %s", luaL_typename(L, idx));
    }
}

void v3_json_encode_push(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    jbuf b;
    jb_init(&b, L);
    encode_value(&b, idx, 0);
    lua_pushlstring(L, b.p, b.n);
    lua_remove(L, b.slot);
}

/* ---- decode ---- */

static void push_rec(lua_State *L, const json_t *j, int nil_members, int depth) {
    if (depth > V3_JSON_MAX_DEPTH) luaL_error(L, "json: nesting deeper than %d", V3_JSON_MAX_DEPTH);
    luaL_checkstack(L, 4, "json: nesting too deep");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *v;
        size_t size = json_object_size(j);
        lua_createtable(L, 0, size < 1u << 20 ? (int)size : 0);
        json_object_foreach((json_t *)j, key, v) {
            if (nil_members && json_is_null(v)) continue;
            push_rec(L, v, nil_members, depth + 1);
            lua_setfield(L, -2, key);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, n < 1u << 24 ? (int)n : 0, 0);
        for (size_t i = 0; i < n; i++) {
            push_rec(L, json_array_get(j, i), nil_members, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushlightuserdata(L, NULL);
    }
}

void v3_json_push(lua_State *L, const json_t *j, int null_members_nil) {
    push_rec(L, j, null_members_nil, 0);
}

/* __gc of the box holding a decoded jansson tree: frees it if an error left it there. C code only,
 * so running unhooked (as finalizers do) is harmless. Pops/pushes nothing; never raises. */
static int jsonbox_gc(lua_State *L) {
    json_t **box = luaL_testudata(L, 1, JSONBOX_META);
    if (box && *box) {
        json_decref(*box);
        *box = NULL;
    }
    return 0;
}

/* v3.json.decode(s) -> value | nil, message. Pops nothing of the caller's; pushes the decoded value
 * (null as v3.json.null), or nil and "json: MESSAGE (line L, column C)" for invalid JSON. Raises
 * when s is not a string, is longer than V3_JSON_MAX_DECODE, nests too deep, or on memory errors. */
static int l_json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n > V3_JSON_MAX_DECODE)
        return luaL_error(L, "json.decode: text of %zu bytes exceeds the limit of %u", n,
                          (unsigned)V3_JSON_MAX_DECODE);
    json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, JSONBOX_META);
    json_error_t je;
    *box = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!*box) {
        lua_pushnil(L);
        lua_pushfstring(L, "json: %s (line %d, column %d)", je.text, je.line, je.column);
        return 2;
    }
    v3_json_push(L, *box, 0);
    json_decref(*box);
    *box = NULL;
    return 1;
}

/* v3.json.encode(v) -> string. Pops nothing; pushes the JSON text; raises on values JSON cannot
 * hold (see v3_json_encode_push), depth, or memory. */
static int l_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    v3_json_encode_push(L, 1);
    return 1;
}

void v3_v3mod_push_json(lua_State *L) {
    if (luaL_newmetatable(L, JSONBOX_META)) {
        lua_pushcfunction(L, jsonbox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
