/* v3mod.h — the `v3` Lua module for sandboxed reward scripts, and the restricted `require`.
 *
 * Installed into a v3_sandbox (see sandbox.h) by v3_v3mod_open, it gives scripts:
 *   v3.json.encode(v)      v3.json.decode(s)      v3.json.null
 *   v3.utf8.valid(s)       v3.utf8.sanitize(s)
 *   v3.log(...)            (one line on stderr, prefixed with the module's name)
 *   v3.math.extract(text)  v3.math.equal(gold, pred)  v3.math.accuracy(completion, gold)
 *                          (the C verifier of rewards/math_verify.h)
 *   require(name)          modules found as DIR/name.lua (dots become '/') in the configured
 *                          reward directories only; text chunks only, run in the same sandbox and
 *                          under the current call's budgets; results cached per state.
 * Every binding documents what it pops, pushes and may raise, as the Lua manual does.
 *
 * The JSON helpers are also what the reward worker uses to turn a sample into a Lua table and a
 * returned table into stored "extra" JSON, so the two stay in step. */
#ifndef V3_LUA_V3MOD_H
#define V3_LUA_V3MOD_H

#include <jansson.h>
#include <lua.h>

#include "common/err.h"
#include "lua/sandbox.h"

/* Nesting depth beyond which encode and decode refuse a value (a cycle also ends here). */
#define V3_JSON_MAX_DEPTH 64
/* Longest text v3.json.decode accepts: jansson's tree lives outside the sandbox's capped
 * allocator, so its input is bounded here instead. */
#define V3_JSON_MAX_DECODE (8u << 20)

typedef struct v3_v3mod_opts {
    const char *const *reward_dirs; /* directories `require` searches, in order; copied */
    int n_reward_dirs;
    const char *log_name; /* prefix of v3.log lines, e.g. the reward's name; copied; may be NULL */
} v3_v3mod_opts;

/* Sets the globals `v3` and `require` in sb's state. Runs protected (v3_sandbox_cpcall), so memory
 * errors come back as V3_ENOMEM. */
int v3_v3mod_open(v3_sandbox *sb, const v3_v3mod_opts *opts, v3_err *err);

/* Pushes the Lua value of j: objects and arrays become tables, null becomes v3.json.null (a light
 * userdata NULL) — or, with null_members_nil, object members that are null are left out (the
 * sample table uses that, so `if s.answer then` works). Pops nothing; pushes 1; raises on memory
 * errors or nesting deeper than V3_JSON_MAX_DEPTH. j stays owned by the caller. */
void v3_json_push(lua_State *L, const json_t *j, int null_members_nil);

/* Encodes the value at idx as compact JSON into a new string on the stack. Tables with keys
 * exactly 1..n (n >= 1) become arrays, other tables objects (keys must be strings or numbers);
 * an empty table becomes {}. Integers stay integers; NaN and infinities are refused; bytes that
 * are not valid UTF-8 become U+FFFD. Pops nothing; pushes 1; raises on unsupported values
 * (functions, userdata other than v3.json.null), depth, or memory. */
void v3_json_encode_push(lua_State *L, int idx);

/* Length of the valid UTF-8 sequence at p (at most n bytes available), or 0 when p[0] starts
 * none (overlong forms, surrogates and code points past U+10FFFF are invalid). */
size_t v3_utf8_seq(const unsigned char *p, size_t n);

/* Internal to the module. v3_v3mod_push_json (lua/v3mod_json.c) builds the table v3.json: pushes
 * 1; may raise. v3_v3mod_push_math (lua/v3mod_math.c) builds v3.math, pushes it and returns 1;
 * may raise. */
void v3_v3mod_push_json(lua_State *L);
int v3_v3mod_push_math(lua_State *L);
int v3_v3mod_push_text(lua_State *L); /* v3.text (lua/v3mod_text.c): pushes it, returns 1 */

#endif
