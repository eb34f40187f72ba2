/* test_lua_sandbox.c — the sandboxed lua_State: library set, budgets that pcall cannot swallow,
 * memory cap, refused bytecode, reuse after errors, and a fail-the-Nth-allocation sweep. */
#include <lauxlib.h>
#include <string.h>
#include <time.h>

#include "lua/sandbox.h"
#include "testutil.h"

static const v3_sandbox_limits LIMITS = {
    .mem_cap = 8u << 20, .max_instructions = 2000000, .deadline_ms = 5000};

/* Loads and runs `src`; returns the status and leaves one result (if any) on the stack. */
static int run(v3_sandbox *sb, const char *src, v3_err *err) {
    int rc = v3_sandbox_load(sb, src, strlen(src), "=test", err);
    if (rc != V3_OK) return rc;
    return v3_sandbox_call(sb, 0, 1, err);
}

/* Runs src, expects failure with code and a message containing `want`. */
static void expect_fail(v3_sandbox *sb, const char *src, int code, const char *want) {
    v3_err err = {0};
    int top = lua_gettop(sb->L);
    int rc = run(sb, src, &err);
    CHECK(rc == code, "%s: rc %d (want %d): %s", src, rc, code, err.msg);
    CHECK(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", src, err.msg, want);
    CHECK(lua_gettop(sb->L) == top, "%s: stack %d -> %d", src, top, lua_gettop(sb->L));
}

/* Runs src, expects an integer result. */
static void expect_int(v3_sandbox *sb, const char *src, lua_Integer want) {
    v3_err err = {0};
    int rc = run(sb, src, &err);
    CHECK(rc == V3_OK, "%s: %s", src, err.msg);
    if (rc != V3_OK) return;
    CHECK(lua_isinteger(sb->L, -1) && lua_tointeger(sb->L, -1) == want, "%s: got %s", src,
          luaL_typename(sb->L, -1));
    lua_pop(sb->L, 1);
}

static void test_library_set(void) {
    v3_sandbox sb;
    v3_err err = {0};
    CHECK_OK(v3_sandbox_init(&sb, &LIMITS, &err), &err);
    const char *absent[] = {"io", "os", "debug", "package", "require", "dofile", "loadfile",
                            "coroutine", "string.dump"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "return %s == nil and 1 or 0", absent[i]);
        expect_int(&sb, src, 1);
    }
    expect_int(&sb, "return ('').dump == nil and 1 or 0", 1);
    const char *present[] = {"string.format", "table.concat", "math.floor", "utf8.char", "pcall",
                             "load", "setmetatable", "tostring", "print"};
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++) {
        char src[128];
        snprintf(src, sizeof src, "return type(%s) == 'function' and 1 or 0", present[i]);
        expect_int(&sb, src, 1);
    }
    /* each escape attempt ends in a recorded error naming the chunk and line */
    expect_fail(&sb, "\nos.execute('true')", V3_EINVAL, "test:2: attempt to index a nil value");
    expect_fail(&sb, "io.open('/etc/passwd')", V3_EINVAL, "test:1: attempt to index a nil value");
    expect_fail(&sb, "require('os')", V3_EINVAL, "attempt to call a nil value (global 'require')");
    expect_fail(&sb, "dofile('x.lua')", V3_EINVAL, "attempt to call a nil value (global 'dofile')");
    expect_fail(&sb, "return string.dump(print)", V3_EINVAL, "attempt to call a nil value");
    /* load: text works, binary refused even when the script asks for mode "b" */
    expect_int(&sb, "return load('return 40 + 2')()", 42);
    expect_int(&sb, "return load('return 7', 'c', 'b')()", 7);
    expect_int(&sb, "local n = 0; return load(function() n = n + 1; "
                    "if n == 1 then return 'return 5' end end)()", 5);
    expect_fail(&sb, "assert(load('\\27LuaT\\0\\25\\147\\r\\n'))", V3_EINVAL,
                "attempt to load a binary chunk");
    expect_fail(&sb, "assert(load('\\27Lua', 'bin', 'b'))", V3_EINVAL,
                "attempt to load a binary chunk");
    /* the host refuses binary chunks too */
    static const char bin[] = "\x1bLuaT\x00\x19\x93\r\n\x1a\n";
    int rc = v3_sandbox_load(&sb, bin, sizeof bin - 1, "=bin", &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "binary chunk"), "binary load rc %d: %s", rc,
          err.msg);
    /* syntax errors carry chunk:line */
    rc = v3_sandbox_load(&sb, "local x = 1\nlocal = 2\n", 22, "@cfg.lua", &err);
    CHECK(rc == V3_EFORMAT && strncmp(err.msg, "cfg.lua:2:", 10) == 0, "syntax rc %d: %s", rc,
          err.msg);
    CHECK(lua_gettop(sb.L) == 0, "stack left %d", lua_gettop(sb.L));
    v3_sandbox_free(&sb);
    v3_sandbox_free(&sb); /* freeing twice is allowed */
}

static void test_budgets(void) {
    v3_sandbox sb;
    v3_err err = {0};
    CHECK_OK(v3_sandbox_init(&sb, &LIMITS, &err), &err);
    expect_fail(&sb, "while true do end", V3_ENOMEM, "instruction budget of 2000000 exceeded");
    /* the kill reports where it happened */
    expect_fail(&sb, "local x = 0\nwhile true do x = x + 1 end", V3_ENOMEM, "(at test:2)");
    /* usable after a kill, with a fresh budget */
    expect_int(&sb, "local s = 0 for i = 1, 1000 do s = s + i end return s", 500500);
    /* pcall cannot swallow the kill, at any nesting */
    expect_fail(&sb, "while true do pcall(function() while true do end end) end", V3_ENOMEM,
                "instruction budget");
    expect_fail(&sb, "local ok = pcall(function() while true do end end) return 1", V3_ENOMEM,
                "instruction budget");
    expect_fail(&sb,
                "for i = 1, 10 do xpcall(function() while true do end end, "
                "function(m) while true do end end) end return 1",
                V3_ENOMEM, "instruction budget");
    /* xpcall keeps its meaning for ordinary errors: the handler's result comes back */
    expect_int(&sb, "local ok, v = xpcall(error, function(m) return #m end, 'abc') "
                    "return ok == false and v or -1",
               3);
    expect_int(&sb, "local ok, a, b = xpcall(function(x, y) return x + y, x * y end, print, 3, 4) "
                    "return ok and a * 100 + b or -1",
               712);
    expect_fail(&sb, "while true do local ok, e = pcall(error, 'x') end", V3_ENOMEM,
                "instruction budget");
    /* ordinary errors are caught by pcall as usual */
    expect_int(&sb, "local ok = pcall(error, 'x') return ok and 1 or 0", 0);
    /* recursion: Lua's stack limit or the memory cap, never a crash */
    {
        int top = lua_gettop(sb.L);
        int rc = run(&sb, "local function f(n) return 1 + f(n + 1) end return f(1)", &err);
        CHECK(rc != V3_OK && (strstr(err.msg, "stack overflow") || strstr(err.msg, "memory cap")),
              "recursion rc %d: %s", rc, err.msg);
        CHECK(lua_gettop(sb.L) == top, "stack");
    }
    expect_fail(&sb, "local function f() return string.gsub('x', '.', f) end return f()",
                V3_EINVAL, "stack overflow");
    expect_int(&sb, "return 3", 3);
    v3_sandbox_free(&sb);

    /* the wall clock, with no instruction budget */
    v3_sandbox_limits lim = {.mem_cap = 8u << 20, .deadline_ms = 50};
    CHECK_OK(v3_sandbox_init(&sb, &lim, &err), &err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_fail(&sb, "while true do pcall(string.rep, 'x', 10) end", V3_ENOMEM,
                "deadline of 50 ms exceeded");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(ms >= 45 && ms < 2000, "deadline took %.1f ms", ms);
    expect_int(&sb, "return 9", 9);
    v3_sandbox_free(&sb);
}

static void test_memory(void) {
    v3_sandbox sb;
    v3_err err = {0};
    CHECK_OK(v3_sandbox_init(&sb, &LIMITS, &err), &err);
    CHECK(sb.mem_used > 0 && sb.mem_used < LIMITS.mem_cap, "mem_used %zu", sb.mem_used);
    size_t base = sb.mem_used;
    expect_fail(&sb, "local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end", V3_ENOMEM,
                "memory cap of 8388608 bytes exceeded");
    CHECK(sb.mem_peak <= LIMITS.mem_cap, "peak %zu over cap", sb.mem_peak);
    expect_fail(&sb, "return string.rep('x', 1 << 30)", V3_ENOMEM, "memory cap");
    expect_fail(&sb, "local s = 'x' while true do s = s .. s end", V3_ENOMEM, "memory cap");
    /* a memory error caught by pcall still kills the script */
    expect_fail(&sb, "local ok = pcall(string.rep, 'x', 1 << 30) while true do end return 1",
                V3_ENOMEM, "memory cap");
    expect_fail(&sb, "local ok = pcall(string.rep, 'x', 1 << 30) return 1", V3_ENOMEM,
                "memory cap");
    /* a script that churns garbage near the cap is not killed: Lua collects and retries */
    expect_int(&sb, "local n = 0 for i = 1, 40 do local s = string.rep('y', 1 << 20) n = n + #s "
                    "end return n",
               40 << 20);
    /* the state is usable and its garbage collectable after memory kills */
    lua_gc(sb.L, LUA_GCCOLLECT);
    CHECK(sb.mem_used < base + (256u << 10), "mem after kills %zu (base %zu)", sb.mem_used, base);
    expect_int(&sb, "local t = {} for i = 1, 100 do t[i] = i end return #t", 100);
    /* globals survive errors (documented: callers needing isolation recreate the state) */
    expect_fail(&sb, "kept = 5 error('boom')", V3_EINVAL, "test:1: boom");
    expect_int(&sb, "return kept", 5);
    /* finalizers run unhooked, so they are refused; other metatables work */
    expect_fail(&sb, "setmetatable({}, {__gc = function() while true do end end}) return 1",
                V3_EINVAL, "__gc metamethods are not allowed");
    expect_int(&sb, "local t = setmetatable({}, {__index = function(_, k) return k * 2 end}) "
                    "return t[21]",
               42);
    v3_sandbox_free(&sb);
    CHECK(sb.L == NULL, "freed");
}

static int push_table(lua_State *L) {
    int *n = lua_touserdata(L, 1);
    lua_createtable(L, *n, 0);
    for (int i = 1; i <= *n; i++) {
        lua_pushfstring(L, "item %d", i);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "made");
    return 0;
}

static void test_cpcall_and_nesting(void) {
    v3_sandbox sb;
    v3_err err = {0};
    CHECK_OK(v3_sandbox_init(&sb, &LIMITS, &err), &err);
    int n = 10;
    CHECK_OK(v3_sandbox_cpcall(&sb, push_table, &n, &err), &err);
    expect_int(&sb, "return #made", 10);
    n = 1 << 22; /* 4M strings: far past 8 MiB; a raising API call must not abort the process */
    int rc = v3_sandbox_cpcall(&sb, push_table, &n, &err);
    CHECK(rc == V3_ENOMEM && strstr(err.msg, "memory cap"), "cpcall rc %d: %s", rc, err.msg);
    CHECK(lua_gettop(sb.L) == 0, "stack %d", lua_gettop(sb.L));
    CHECK(v3_sandbox_from(sb.L) == &sb, "from");
    v3_sandbox_free(&sb);
}

/* SQLite's test_malloc sweep: fail allocation N (once, then from N on) for every N until the
 * operation completes without reaching N; each failure must be a clean V3_ENOMEM. */
static void test_fault_sweep(void) {
    const char *src = "local t = {} for i = 1, 50 do t[i] = ('v'):rep(i) end "
                      "return #table.concat(t)";
    int clean_runs = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (int64_t nth = 1;; nth++) {
            v3_alloc_fault fault = {.fail_at = nth, .persist = persist};
            v3_sandbox_limits lim = LIMITS;
            lim.fault = &fault;
            v3_sandbox sb;
            v3_err err = {0};
            int rc = v3_sandbox_init(&sb, &lim, &err);
            if (rc == V3_OK) {
                rc = run(&sb, src, &err);
                if (rc == V3_OK) {
                    CHECK(lua_tointeger(sb.L, -1) == 1275, "result");
                    lua_pop(sb.L, 1);
                }
                v3_sandbox_free(&sb);
            }
            if (rc != V3_OK)
                CHECK(rc == V3_ENOMEM && strstr(err.msg, "memory"), "nth %lld persist %d: rc %d %s",
                      (long long)nth, persist, rc, err.msg);
            if (fault.failed == 0) { /* N was never reached: the sweep covered the operation */
                CHECK(rc == V3_OK, "unfaulted run failed: %s", err.msg);
                clean_runs++;
                if (nth < 50) CHECK(0, "suspiciously few allocations: %lld", (long long)nth);
                break;
            }
            if (nth > 100000) {
                CHECK(0, "sweep did not terminate");
                break;
            }
        }
    }
    CHECK(clean_runs == 2, "clean runs %d", clean_runs);
}

int main(void) {
    test_library_set();
    test_budgets();
    test_memory();
    test_cpcall_and_nesting();
    test_fault_sweep();
    return t_finish("test_lua_sandbox");
}
