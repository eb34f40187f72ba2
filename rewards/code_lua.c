/* code_lua.c — v3.code, the code sandbox for Lua reward scripts (reward workers only; the config
 * sandbox never gets it). See docs/rewards-code.md.
 *
 *   v3.code.run{code=, tests={...}, check=, entry_point=, setup=, timeout=, test_timeout=,
 *               memory_mb=, python=}
 *     -> {passed=, total=, results={bool...}, error=, failure=, timed_out=, isolation=, wall_ms=}
 *
 * The call blocks in C, where the sandbox's hooks cannot fire, and the reward host SIGKILLs a
 * worker that overruns its call's deadline. So the run's wall clock is cut to what is left of the
 * current call's deadline minus a margin: the run ends, and the script gets its partial verdicts,
 * before the worker could be killed. */
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "lua/sandbox.h"
#include "rewards/code_exec.h"

/* Kept free before the call's deadline for returning to Lua and finishing the script. */
#define DEADLINE_MARGIN_MS 150
/* The least time worth starting a run with. */
#define MIN_RUN_MS 50

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Optional string field (NULL when absent); raises on another type. */
static const char *opt_string(lua_State *L, const char *key) {
    int t = lua_getfield(L, 1, key);
    const char *s = NULL;
    if (t == LUA_TSTRING) s = lua_tostring(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "v3.code.run: `%s` must be a string (got %s)", key, lua_typename(L, t));
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

/* Optional positive number field, or dflt. */
static double opt_number(lua_State *L, const char *key, double dflt) {
    int t = lua_getfield(L, 1, key);
    double v = dflt;
    if (t == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
        if (!(v > 0)) luaL_error(L, "v3.code.run: `%s` must be positive", key);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "v3.code.run: `%s` must be a number (got %s)", key, lua_typename(L, t));
    }
    lua_pop(L, 1);
    return v;
}

/* The `tests` array as C strings in a userdata (pushed; the table keeps the strings alive). */
static const char **get_tests(lua_State *L, int *n) {
    *n = 0;
    int t = lua_getfield(L, 1, "tests");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushnil(L); /* keep the stack shape */
        return NULL;
    }
    if (t != LUA_TTABLE) luaL_error(L, "v3.code.run: `tests` must be an array of strings");
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    if (len > V3_CODE_MAX_TESTS) luaL_error(L, "v3.code.run: %d tests at most", V3_CODE_MAX_TESTS);
    const char **v = lua_newuserdatauv(L, sizeof *v * (size_t)(len ? len : 1), 0);
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
            luaL_error(L, "v3.code.run: tests[%d] must be a string", (int)i);
        v[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_remove(L, -2); /* the table stays referenced by the argument */
    *n = (int)len;
    return v;
}

static void set_bool(lua_State *L, const char *k, int v) {
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

/* v3.code.run(opts) -> result table. Pops nothing; pushes the table. Raises on bad options, when
 * the call's deadline leaves no time to run, or when nothing could be run (no interpreter, no
 * fork); what the code does is in the result, never an error. */
static int l_run(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    v3_code_tests t;
    memset(&t, 0, sizeof t);
    t.program = opt_string(L, "code");
    if (!t.program) return luaL_error(L, "v3.code.run: `code` (a string) is required");
    t.check = opt_string(L, "check");
    t.entry_point = opt_string(L, "entry_point");
    t.setup = opt_string(L, "setup");
    t.tests = get_tests(L, &t.n_tests);
    if (t.check && !t.entry_point) return luaL_error(L, "v3.code.run: `check` needs `entry_point`");
    if (!t.n_tests && !t.check) return luaL_error(L, "v3.code.run: no tests (give `tests` or `check`)");

    v3_code_opts o;
    v3_code_opts_default(&o);
    o.interpreter = opt_string(L, "python");
    double timeout_ms = opt_number(L, "timeout", V3_CODE_DEFAULT_TIMEOUT_MS / 1000.0) * 1000.0;
    double test_ms = opt_number(L, "test_timeout", V3_CODE_DEFAULT_TEST_TIMEOUT_MS / 1000.0) * 1000.0;
    double mem_mb = opt_number(L, "memory_mb", (double)(V3_CODE_DEFAULT_MEM >> 20));
    v3_sandbox *sb = v3_sandbox_from(L);
    if (sb && sb->deadline_ns > 0) {
        double left = (double)(sb->deadline_ns - mono_ns()) / 1e6 - DEADLINE_MARGIN_MS;
        if (left < MIN_RUN_MS) return luaL_error(L, "v3.code.run: too little time left before the call's deadline");
        if (timeout_ms > left) timeout_ms = left;
    }
    /* a test (or the program's top level) that runs over ends by the harness's alarm, with a
     * message, before the run's wall clock kills the whole run */
    if (test_ms > timeout_ms * 0.75) test_ms = timeout_ms * 0.75;
    if (mem_mb > 1 << 20) mem_mb = 1 << 20;
    o.timeout_ms = (int64_t)timeout_ms;
    t.test_timeout_ms = (int64_t)test_ms > 0 ? (int64_t)test_ms : 1;
    o.mem_bytes = (size_t)mem_mb << 20;

    /* the report lives in Lua memory, so no error path can leak it */
    v3_code_report *rep = lua_newuserdatauv(L, sizeof *rep, 0);
    v3_err err;
    if (v3_code_run_tests(&o, &t, rep, &err) != V3_OK) return luaL_error(L, "v3.code.run: %s", err.msg);

    lua_createtable(L, 0, 8);
    lua_pushinteger(L, rep->passed);
    lua_setfield(L, -2, "passed");
    lua_pushinteger(L, rep->total);
    lua_setfield(L, -2, "total");
    lua_createtable(L, rep->total, 0);
    for (int i = 0; i < rep->total; i++) {
        lua_pushboolean(L, rep->results[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "results");
    if (rep->error[0]) {
        lua_pushstring(L, rep->error);
        lua_setfield(L, -2, "error");
    }
    if (rep->failure[0]) {
        lua_pushstring(L, rep->failure);
        lua_setfield(L, -2, "failure");
    }
    set_bool(L, "timed_out", rep->timed_out);
    char iso[160];
    lua_pushstring(L, v3_code_isolation_str(rep->isolation, iso, sizeof iso));
    lua_setfield(L, -2, "isolation");
    lua_pushnumber(L, rep->wall_ms);
    lua_setfield(L, -2, "wall_ms");
    return 1;
}

static int open_protected(lua_State *L) {
    if (lua_getglobal(L, "v3") != LUA_TTABLE) return luaL_error(L, "the v3 module is not open");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_run);
    lua_setfield(L, -2, "run");
    lua_setfield(L, -2, "code");
    return 0;
}

int v3_code_lua_open(struct v3_sandbox *sb, v3_err *err) {
    int rc = v3_sandbox_cpcall(sb, open_protected, NULL, err);
    if (rc != V3_OK) v3_err_prefix(err, "lua: opening v3.code");
    return rc;
}
