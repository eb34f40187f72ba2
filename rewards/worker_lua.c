/* worker_lua.c — a reward function inside a worker: load the module into a sandboxed state, call
 * it on a sample, turn what it returns into (status, score, extra JSON).
 *
 * Everything that touches the Lua API runs inside v3_sandbox_cpcall: outside a protected call a
 * memory error (the cap) would abort the process, and inside one the budgets also cover the
 * module's and the script's code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "rewards/code_exec.h"
#include "rewards/host.h"
#include "rewards/judge_module.h"
#include "rewards/worker_lua.h"

#define REG_SCORE "v3.reward.score"

typedef struct load_ctx {
    v3_reward_fn *fn;
    char errmsg[256]; /* a problem with the module's shape (not a Lua error) */
} load_ctx;

/* Reads optional field `key` of the table at idx (raw: no metamethod runs); 1 when it is a number. */
static int raw_number(lua_State *L, int idx, const char *key, double *out) {
    lua_pushstring(L, key);
    int t = lua_rawget(L, idx);
    int ok = t == LUA_TNUMBER;
    if (ok) *out = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return ok;
}

/* Protected: compile and run the module, check what it returned, keep the score function in the
 * registry and the options in fn. */
static int load_protected(lua_State *L) {
    load_ctx *c = lua_touserdata(L, 1);
    v3_reward_fn *fn = c->fn;
    if (luaL_loadbufferx(L, fn->text, fn->len, fn->chunkname, "t") != LUA_OK) return lua_error(L);
    lua_call(L, 0, 1);
    int m = lua_gettop(L);
    if (lua_type(L, m) == LUA_TFUNCTION) {
        lua_pushvalue(L, m);
    } else if (lua_type(L, m) == LUA_TTABLE) {
        lua_pushliteral(L, "name");
        if (lua_rawget(L, m) == LUA_TSTRING)
            snprintf(fn->mod_name, sizeof fn->mod_name, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        fn->has_weight = raw_number(L, m, "weight", &fn->weight);
        fn->has_fallback = raw_number(L, m, "fallback", &fn->fallback);
        if (v3_judge_lua_load(L, m, c->errmsg, sizeof c->errmsg)) return 0; /* a judge module */
        lua_pushliteral(L, "score");
        if (lua_rawget(L, m) != LUA_TFUNCTION) {
            snprintf(c->errmsg, sizeof c->errmsg,
                     "the module's table has no function `score` (got %s) and no `judge`",
                     luaL_typename(L, -1));
            return 0;
        }
    } else {
        snprintf(c->errmsg, sizeof c->errmsg,
                 "the module must return a function or a table with `score` or `judge` (got %s)",
                 luaL_typename(L, m));
        return 0;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, REG_SCORE);
    return 0;
}

int v3_reward_fn_load(v3_reward_fn *fn, const char *default_name, v3_err *err) {
    if (default_name && !fn->name[0]) snprintf(fn->name, sizeof fn->name, "%s", default_name);
    fn->mod.log_name = fn->name;
    int rc = v3_sandbox_init(&fn->sb, &fn->limits, err);
    if (rc == V3_OK) rc = v3_v3mod_open(&fn->sb, &fn->mod, err);
    if (rc == V3_OK) rc = v3_code_lua_open(&fn->sb, err); /* v3.code: workers only */
    load_ctx c = {fn, ""};
    if (rc == V3_OK) rc = v3_sandbox_cpcall(&fn->sb, load_protected, &c, err);
    if (rc == V3_OK && c.errmsg[0]) rc = v3_errf(err, V3_EINVAL, "%s", c.errmsg);
    if (rc != V3_OK) {
        v3_err_prefix(err, "%s", fn->chunkname + (fn->chunkname[0] == '@'));
        v3_sandbox_free(&fn->sb);
    }
    return rc;
}

void v3_reward_fn_free(v3_reward_fn *fn) { v3_sandbox_free(&fn->sb); }

typedef struct call_ctx {
    const json_t *sample;
    v3_reward_call *out;
    char errmsg[256];
} call_ctx;

/* Protected: build the sample table, call score(sample), classify the result. The extra JSON is
 * copied to C memory last, after which nothing can raise. */
static int call_protected(lua_State *L) {
    call_ctx *c = lua_touserdata(L, 1);
    v3_reward_call *out = c->out;
    /* a judge module's phases (judge_module.h) arrive as wrappers of the sample */
    const char *phase = v3_judge_lua_phase(c->sample);
    if (phase && strcmp(phase, "config") == 0) {
        v3_judge_lua_config(L, out);
        return 0;
    }
    int request = phase && strcmp(phase, "request") == 0, parse = phase && strcmp(phase, "parse") == 0;
    const json_t *sample = phase ? json_object_get(c->sample, "sample") : c->sample;
    if ((phase && !request && !parse) || !json_is_object(sample) ||
        (parse && !json_is_object(json_object_get(c->sample, "reply")))) {
        snprintf(c->errmsg, sizeof c->errmsg, "bad request");
        return 0;
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, request ? V3_JUDGE_REG_REQUEST
                                           : parse ? V3_JUDGE_REG_PARSE
                                                   : REG_SCORE) != LUA_TFUNCTION) {
        snprintf(c->errmsg, sizeof c->errmsg, "%s",
                 phase ? "not a judge module" : "a judge module has no `score` (the host runs its phases)");
        return 0;
    }
    v3_json_push(L, sample, 1);
    int s = lua_gettop(L);
    /* the dataset row's fields also appear at top level (TRL passes them as keyword arguments),
     * unless they would hide a field of the sample itself */
    if (lua_getfield(L, s, "row") == LUA_TTABLE) {
        int row = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, row)) {
            lua_pushvalue(L, -2);
            if (lua_rawget(L, s) == LUA_TNIL) {
                lua_pop(L, 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, s);
            } else {
                lua_pop(L, 2);
            }
        }
    }
    lua_settop(L, s);
    if (parse) v3_json_push(L, json_object_get(c->sample, "reply"), 1);
    lua_call(L, parse ? 2 : 1, 1);
    if (request) {
        v3_judge_lua_take_request(L, out, c->errmsg, sizeof c->errmsg);
        return 0;
    }
    int r = lua_gettop(L);
    int t = lua_type(L, r);
    double score = NAN;
    int status = V3_REWARD_OK;
    int extra = 0;
    if (t == LUA_TNIL) {
        status = V3_REWARD_SKIP;
    } else if (t == LUA_TNUMBER) {
        score = lua_tonumber(L, r);
    } else if (t == LUA_TTABLE) {
        lua_pushliteral(L, "score");
        int st = lua_rawget(L, r);
        if (st == LUA_TNUMBER) score = lua_tonumber(L, -1);
        else if (st == LUA_TNIL) status = V3_REWARD_SKIP;
        else {
            snprintf(c->errmsg, sizeof c->errmsg,
                     "bad return value: `score` must be a number or nil (got %s)", luaL_typename(L, -1));
            return 0;
        }
        lua_pop(L, 1);
        /* extra = the table without `score`, as a JSON object */
        lua_newtable(L);
        int copy = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, r)) {
            if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "score") == 0) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, copy);
            extra = 1;
        }
        if (extra) v3_json_encode_push(L, copy);
    } else {
        snprintf(c->errmsg, sizeof c->errmsg,
                 "bad return value: a reward returns a number, nil or a table (got %s)",
                 luaL_typename(L, r));
        return 0;
    }
    if (status == V3_REWARD_OK && !isfinite(score)) {
        snprintf(c->errmsg, sizeof c->errmsg, "bad return value: score is %g", score);
        return 0;
    }
    out->status = status;
    out->score = score;
    if (extra) {
        size_t n;
        const char *s2 = lua_tolstring(L, -1, &n);
        out->extra = malloc(n + 1);
        if (out->extra) memcpy(out->extra, s2, n + 1);
    }
    return 0;
}

void v3_reward_fn_call(v3_reward_fn *fn, const json_t *sample, v3_reward_call *out) {
    memset(out, 0, sizeof *out);
    out->status = V3_REWARD_ERROR;
    out->score = NAN;
    if (!fn->sb.L) {
        /* an earlier reset failed to reload the module */
        v3_errf(&out->err, V3_EINVAL, "reward module could not be reloaded after a kill");
        return;
    }
    call_ctx c = {sample, out, ""};
    int rc = v3_sandbox_cpcall(&fn->sb, call_protected, &c, &out->err);
    if (rc == V3_OK && c.errmsg[0]) {
        v3_errf(&out->err, V3_EINVAL, "%s", c.errmsg);
        rc = V3_EINVAL;
    }
    if (rc == V3_OK) {
        lua_settop(fn->sb.L, 0);
        return;
    }
    free(out->extra);
    out->extra = NULL;
    out->status = V3_REWARD_ERROR;
    out->score = NAN;
    if (rc == V3_ENOMEM) {
        /* killed by a budget: start from a fresh state, so that nothing half-done survives and the
         * memory it held is returned */
        v3_err ignored;
        v3_sandbox_free(&fn->sb);
        v3_reward_fn_load(fn, NULL, &ignored);
    }
}
