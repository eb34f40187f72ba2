/* judge_lua.c — the worker side of judge modules: checks a module's shape at load and keeps its
 * `request`, `parse` and `judge` parts in the registry; answers the "config" phase; turns what
 * request() returns into a request body. See judge_module.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/v3mod.h"
#include "rewards/host.h"
#include "rewards/judge_module.h"
#include "rewards/worker_lua.h"

int v3_judge_lua_load(lua_State *L, int m, char *errmsg, size_t n) {
    lua_pushliteral(L, "judge");
    int t = lua_rawget(L, m);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    int cfg = lua_gettop(L);
    if (t != LUA_TTABLE) {
        snprintf(errmsg, n, "the module's `judge` must be a table of options (got %s)", luaL_typename(L, cfg));
        return 1;
    }
    static const char *const parts[2] = {"request", "parse"};
    static const char *const keys[2] = {V3_JUDGE_REG_REQUEST, V3_JUDGE_REG_PARSE};
    for (int i = 0; i < 2; i++) {
        lua_pushstring(L, parts[i]);
        if (lua_rawget(L, m) != LUA_TFUNCTION) {
            snprintf(errmsg, n, "a judge module needs a function `%s` (got %s)", parts[i],
                     luaL_typename(L, -1));
            return 1;
        }
        lua_setfield(L, LUA_REGISTRYINDEX, keys[i]);
    }
    lua_pushliteral(L, "score");
    if (lua_rawget(L, m) != LUA_TNIL) {
        snprintf(errmsg, n, "a judge module has `request` and `parse`, not `score`");
        return 1;
    }
    lua_pop(L, 1);
    v3_json_encode_push(L, cfg); /* raises on values JSON cannot hold */
    lua_setfield(L, LUA_REGISTRYINDEX, V3_JUDGE_REG_CONFIG);
    lua_settop(L, cfg - 1);
    return 1;
}

const char *v3_judge_lua_phase(const json_t *request) {
    return json_string_value(json_object_get(request, V3_JUDGE_PHASE_KEY));
}

/* Copies the string at the top of the stack into out->extra (C memory; nothing raises after). */
static void take_string(lua_State *L, v3_reward_call *out) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    out->extra = malloc(len + 1);
    if (!out->extra) {
        v3_errf(&out->err, V3_ENOMEM, "out of memory");
        return;
    }
    memcpy(out->extra, s, len + 1);
    out->status = V3_REWARD_OK;
    out->score = 0;
}

void v3_judge_lua_config(lua_State *L, v3_reward_call *out) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, V3_JUDGE_REG_CONFIG) != LUA_TSTRING) {
        out->status = V3_REWARD_SKIP; /* an ordinary module */
        return;
    }
    take_string(L, out);
}

void v3_judge_lua_take_request(lua_State *L, v3_reward_call *out, char *errmsg, size_t n) {
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        out->status = V3_REWARD_SKIP;
        return;
    }
    if (t == LUA_TTABLE) v3_json_encode_push(L, lua_gettop(L));
    else if (t != LUA_TSTRING) {
        snprintf(errmsg, n, "bad return value: request() returns a table, a JSON string or nil (got %s)",
                 luaL_typename(L, -1));
        return;
    }
    take_string(L, out);
}
