/* test_reward_v3mod.c — the `v3` module in process (no workers): v3.json encode/decode (arrays vs
 * objects, sorted keys, escapes, integers vs reals, null, NaN/cycles/functions refused, invalid
 * UTF-8 replaced), v3.utf8, the restricted require (dots to dirs, caching, loops, not found, bad
 * names), and an allocation-failure sweep (SQLite's idea) over opening the module and running a
 * script that uses it: every injected failure must end as a clean error, never a crash or leak. */
#include <stdio.h>
#include <string.h>

#include "lua/sandbox.h"
#include "lua/v3mod.h"
#include "testutil.h"

/* Runs chunk `src` in a fresh sandbox with the module; returns the status and copies the first
 * result (tostring'd by the chunk) into out. */
static int run(const char *src, const v3_sandbox_limits *lim, char *out, size_t n, v3_err *err) {
    v3_sandbox sb;
    char dir[1024];
    const char *dirs[1] = {t_source_path("tests/rewards/lib", dir, sizeof dir)};
    v3_v3mod_opts mo = {.reward_dirs = dirs, .n_reward_dirs = 1, .log_name = "test"};
    int rc = v3_sandbox_init(&sb, lim, err);
    if (rc != V3_OK) return rc;
    rc = v3_v3mod_open(&sb, &mo, err);
    if (rc == V3_OK) rc = v3_sandbox_load(&sb, src, strlen(src), "=t", err);
    if (rc == V3_OK) rc = v3_sandbox_call(&sb, 0, 1, err);
    if (rc == V3_OK) {
        const char *s = lua_tostring(sb.L, -1);
        snprintf(out, n, "%s", s ? s : "(not a string)");
    }
    v3_sandbox_free(&sb);
    return rc;
}

static void expect(const char *src, const char *want) {
    char out[1024] = "";
    v3_err err = {0};
    v3_sandbox_limits lim = {.mem_cap = 8u << 20, .max_instructions = 1000000};
    int rc = run(src, &lim, out, sizeof out, &err);
    CHECK(rc == V3_OK && strcmp(out, want) == 0, "%s\n  got rc %d \"%s\" %s\n  want \"%s\"", src, rc,
          out, rc ? err.msg : "", want);
}

static void expect_error(const char *src, const char *want) {
    char out[1024] = "";
    v3_err err = {0};
    v3_sandbox_limits lim = {.mem_cap = 8u << 20, .max_instructions = 1000000};
    int rc = run(src, &lim, out, sizeof out, &err);
    CHECK(rc != V3_OK && strstr(err.msg, want), "%s\n  got rc %d \"%s\", want an error with \"%s\"",
          src, rc, rc ? err.msg : out, want);
}

int main(void) {
    /* encode */
    expect("return v3.json.encode({1, 2, 'x'})", "[1,2,\"x\"]");
    expect("return v3.json.encode({b = 1, a = {true, false}, c = v3.json.null})",
           "{\"a\":[true,false],\"b\":1,\"c\":null}");
    expect("return v3.json.encode({})", "{}");
    expect("return v3.json.encode({[1] = 'a', [3] = 'c'})", "{\"1\":\"a\",\"3\":\"c\"}");
    expect("return v3.json.encode(0.5) .. ' ' .. v3.json.encode(3) .. ' ' .. v3.json.encode(2.0)",
           "0.5 3 2.0");
    expect("return v3.json.encode('q\"\\\\\\n\\t\\1')", "\"q\\\"\\\\\\n\\t\\u0001\"");
    expect("return v3.json.encode('a\\255b\\xc3\\xa9')", "\"a\xEF\xBF\xBD" "b\xC3\xA9\"");
    expect_error("return v3.json.encode(0/0)", "NaN or infinity");
    expect_error("local t = {} t.t = t return v3.json.encode(t)", "nesting deeper");
    expect_error("return v3.json.encode({f = print})", "cannot encode a function");
    expect_error("return v3.json.encode({[{}] = 1})", "table key of type table");
    /* decode */
    expect("local t = v3.json.decode('{\"a\":[1,2.5,null,\"s\"],\"b\":{\"c\":true}}') "
           "return table.concat({math.type(t.a[1]), math.type(t.a[2]), tostring(t.a[3] == v3.json.null), "
           "t.a[4], tostring(t.b.c)}, ',')",
           "integer,float,true,s,true");
    expect("local v, m = v3.json.decode('{bad') return tostring(v) .. ' ' .. (m:match('^json:') or m)",
           "nil json:");
    expect("return v3.json.encode(v3.json.decode('[1,{\"z\":1,\"a\":[]}]'))", "[1,{\"a\":{},\"z\":1}]");
    expect_error("return v3.json.decode(string.rep('[', 100) .. string.rep(']', 100))", "nesting deeper");
    /* utf8 */
    expect("return tostring(v3.utf8.valid('h\\xc3\\xa9')) .. tostring(v3.utf8.valid('\\xed\\xa0\\x80')) "
           ".. tostring(v3.utf8.valid('\\xc0\\xaf'))",
           "truefalsefalse");
    expect("return v3.utf8.sanitize('a\\xffb\\xe2\\x82')", "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    /* require */
    expect("return tostring(require('helper').double(21))", "42");
    expect("return tostring(require('pkg.inner').value + 1)", "42");
    expect("return tostring(require('helper') == require('helper'))", "true");
    expect_error("return require('loop_a')", "loop while loading module 'loop_a'");
    expect_error("return require('nope')", "no file '");
    expect_error("return require('/etc/passwd')", "invalid module name");
    expect_error("return require('a..b')", "invalid module name");
    expect_error("return require('.hidden')", "invalid module name");
    /* log */
    expect("v3.log('hello', 1, true, nil) return 'ok'", "ok");

    /* allocation-failure sweep: every allocation of open + script in turn fails once */
    const char *src = "local t = v3.json.decode('{\"a\":[1,2,3],\"b\":\"x\"}') "
                      "local h = require('helper') "
                      "return v3.json.encode({t = t, d = h.double(2), s = v3.utf8.sanitize('a\\255')})";
    int ok_runs = 0, failed_runs = 0;
    for (int64_t at = 1; at < 5000; at++) {
        v3_alloc_fault fault = {.fail_at = at};
        v3_sandbox_limits lim = {.mem_cap = 8u << 20, .max_instructions = 1000000, .fault = &fault};
        char out[512] = "";
        v3_err err = {0};
        int rc = run(src, &lim, out, sizeof out, &err);
        if (fault.failed == 0) {
            /* the sweep went past the last allocation: the run must have succeeded */
            CHECK(rc == V3_OK, "no fault injected but rc %d: %s", rc, err.msg);
            CHECK(strstr(out, "\"d\":4"), "final output %s", out);
            break;
        }
        if (rc == V3_OK) ok_runs++; /* Lua rescued the failure (emergency GC retry) */
        else {
            failed_runs++;
            CHECK(err.msg[0], "failure %lld without a message", (long long)at);
        }
    }
    printf("fault sweep: %d runs failed cleanly, %d recovered\n", failed_runs, ok_runs);
    CHECK(failed_runs > 50, "sweep injected only %d failures", failed_runs);
    return t_finish("test_reward_v3mod");
}
