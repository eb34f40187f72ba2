/* v3mod.c — installs the `v3` module (json, utf8, log, math) and the restricted `require` into a
 * sandboxed state. See v3mod.h for what scripts get; the JSON part is in v3mod_json.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "lua/v3mod.h"

/* Longest module file `require` reads; reward helpers are small, and this bounds the read before
 * the sandbox's cap sees the bytes. */
#define V3_REQUIRE_MAX_FILE (4u << 20)
/* Longest v3.log line (longer ones are cut, so a script cannot flood the log in one call). */
#define V3_LOG_MAX 4096

/* ---- v3.log ---- */

/* v3.log(...) — writes "[reward NAME] a b c" (arguments through tostring, space-separated, cut at
 * V3_LOG_MAX bytes) as one line on stderr. Upvalue 1: the name. Pops nothing of the caller's,
 * pushes nothing; may raise from a __tostring metamethod or a memory error. */
static int l_log(lua_State *L) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        if (i > 1) luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, &len); /* pushes; then luaL_addvalue pops it into the buffer */
        luaL_addvalue(&b);
        if (luaL_bufflen(&b) > V3_LOG_MAX) break;
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (len > V3_LOG_MAX) len = V3_LOG_MAX;
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    /* one fprintf, so lines of concurrent workers do not interleave mid-line */
    fprintf(stderr, "[reward %s] %.*s\n", name, (int)len, s);
    return 0;
}

/* ---- v3.utf8 ---- */

/* v3.utf8.valid(s) -> boolean. Pops nothing; pushes whether s is valid UTF-8; raises when s is not
 * a string (numbers are converted). */
static int l_utf8_valid(lua_State *L) {
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    size_t i = 0;
    while (i < n) {
        size_t k = v3_utf8_seq(s + i, n - i);
        if (!k) break;
        i += k;
    }
    lua_pushboolean(L, i == n);
    return 1;
}

/* v3.utf8.sanitize(s) -> string: s with every byte that starts no valid UTF-8 sequence replaced by
 * U+FFFD (completions cut at a token boundary can end mid-character). Pops nothing; pushes the
 * string; raises on a non-string argument or a memory error. */
static int l_utf8_sanitize(lua_State *L) {
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    while (i < n) {
        size_t k = v3_utf8_seq(s + i, n - i);
        if (k) {
            luaL_addlstring(&b, (const char *)s + i, k);
            i += k;
        } else {
            luaL_addlstring(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- require ---- */

/* A module name: 1..128 characters of [A-Za-z0-9_-] separated by single dots, so that it can name
 * no absolute path and no "..". */
static int valid_module_name(const char *s, size_t n) {
    if (n == 0 || n > 128 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || (c == '.' && s[i + 1] != '.');
        if (!ok) return 0;
    }
    return 1;
}

/* Reads the file at path into a new userdata (counted by the sandbox cap) and compiles it as a
 * text chunk. Pushes the function; returns 0 when the file does not exist (pushing nothing).
 * Raises on read errors, oversized files, syntax errors and memory errors. No Lua call happens
 * while the FILE is open, so an error cannot leak it. */
static int load_module_file(lua_State *L, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return luaL_error(L, "require: %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return luaL_error(L, "require: %s: not a regular file", path);
    if ((uint64_t)st.st_size > V3_REQUIRE_MAX_FILE)
        return luaL_error(L, "require: %s: larger than %u bytes", path, (unsigned)V3_REQUIRE_MAX_FILE);
    size_t size = (size_t)st.st_size;
    char *buf = lua_newuserdatauv(L, size ? size : 1, 0);
    FILE *f = fopen(path, "rb");
    if (!f) return luaL_error(L, "require: %s: %s", path, strerror(errno));
    size_t got = fread(buf, 1, size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) return luaL_error(L, "require: %s: read error", path);
    /* a "#!" first line is blanked, as lua.c does, keeping line numbers */
    if (got && buf[0] == '#')
        for (size_t i = 0; i < got && buf[i] != '\n'; i++) buf[i] = ' ';
    lua_pushfstring(L, "@%s", path);
    int st_load = luaL_loadbufferx(L, buf, got, lua_tostring(L, -1), "t");
    if (st_load != LUA_OK) return lua_error(L);
    lua_replace(L, -3); /* function over the buffer; drop the chunk name */
    lua_pop(L, 1);
    return 1;
}

/* require(name) -> value. Upvalue 1: array of reward directories; upvalue 2: the cache of loaded
 * modules (false while one is loading). Pops nothing of the caller's; pushes the module's value
 * (true when its chunk returned nothing/nil). Raises: invalid name, not found (listing the files
 * tried), a require loop, and whatever loading or running the module raises. Modules run under
 * the budgets of the call that required them. */
static int l_require(lua_State *L) {
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    lua_settop(L, 1);
    int t = lua_getfield(L, lua_upvalueindex(2), name);
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        return luaL_error(L, "require: loop while loading module '%s'", name);
    if (t != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (!valid_module_name(name, n))
        return luaL_error(L, "require: invalid module name '%s' (letters, digits, _ - and dots)", name);
    lua_Integer ndirs = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
    /* dots become '/' */
    const char *rel = luaL_gsub(L, name, ".", "/");
    int top = lua_gettop(L);
    for (lua_Integer i = 1; i <= ndirs; i++) {
        lua_rawgeti(L, lua_upvalueindex(1), i);
        const char *path = lua_pushfstring(L, "%s/%s.lua", lua_tostring(L, -1), rel);
        if (load_module_file(L, path)) {
            lua_pushboolean(L, 0);
            lua_setfield(L, lua_upvalueindex(2), name); /* loading */
            lua_pushstring(L, name);
            /* a failed load must not leave the "loading" mark (a retry would report a loop);
             * the error, budget kills included, is re-raised unchanged */
            if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
                lua_pushnil(L);
                lua_setfield(L, lua_upvalueindex(2), name);
                return lua_error(L);
            }
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 1);
            }
            lua_pushvalue(L, -1);
            lua_setfield(L, lua_upvalueindex(2), name);
            return 1;
        }
        lua_settop(L, top);
    }
    if (ndirs == 0)
        return luaL_error(L, "require: module '%s' not found (no reward directories configured)", name);
    /* the message lists every file tried, as Lua's own require does */
    lua_pushfstring(L, "require: module '%s' not found in the reward directories:", name);
    for (lua_Integer i = 1; i <= ndirs; i++) {
        lua_rawgeti(L, lua_upvalueindex(1), i);
        lua_pushfstring(L, "\n\tno file '%s/%s.lua'", lua_tostring(L, -1), rel);
        lua_remove(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

/* ---- open ---- */

typedef struct open_args {
    const v3_v3mod_opts *opts;
} open_args;

/* Protected part of v3_v3mod_open: builds `v3` and `require`. */
static int open_protected(lua_State *L) {
    const open_args *a = lua_touserdata(L, 1);
    const v3_v3mod_opts *o = a->opts;
    lua_createtable(L, 0, 4);
    v3_v3mod_push_json(L);
    lua_setfield(L, -2, "json");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_utf8_valid);
    lua_setfield(L, -2, "valid");
    lua_pushcfunction(L, l_utf8_sanitize);
    lua_setfield(L, -2, "sanitize");
    lua_setfield(L, -2, "utf8");
    lua_pushstring(L, o && o->log_name ? o->log_name : "?");
    lua_pushcclosure(L, l_log, 1);
    lua_setfield(L, -2, "log");
    if (v3_v3mod_push_math(L)) lua_setfield(L, -2, "math");
    if (v3_v3mod_push_text(L)) lua_setfield(L, -2, "text");
    lua_setglobal(L, "v3");

    lua_createtable(L, o ? o->n_reward_dirs : 0, 0);
    for (int i = 0; o && i < o->n_reward_dirs; i++) {
        lua_pushstring(L, o->reward_dirs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_newtable(L);
    lua_pushcclosure(L, l_require, 2);
    lua_setglobal(L, "require");
    return 0;
}

int v3_v3mod_open(v3_sandbox *sb, const v3_v3mod_opts *opts, v3_err *err) {
    open_args a = {opts};
    int rc = v3_sandbox_cpcall(sb, open_protected, &a, err);
    if (rc != V3_OK) v3_err_prefix(err, "lua: opening the v3 module");
    return rc;
}
