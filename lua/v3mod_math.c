/* v3mod_math.c — v3.math: the C math-answer verifier (rewards/math_verify.h) for Lua rewards.
 *
 * The functions do bounded work in C (math_verify.h caps input and nesting), which matters here:
 * Lua's hooks cannot interrupt C code, only the worker's outside kill can. */
#include <string.h>

#include <lauxlib.h>

#include "lua/v3mod.h"
#include "rewards/math_verify.h"

static const char *kind_name(v3_math_extract_kind k) {
    switch (k) {
    case V3_MATH_BOXED: return "boxed";
    case V3_MATH_FINAL_ANSWER: return "final_answer";
    case V3_MATH_ANSWER_WORD: return "answer_word";
    case V3_MATH_LATEX_ENV: return "latex";
    case V3_MATH_GSM8K_HASH: return "gsm8k";
    case V3_MATH_LAST_NUMBER: return "last_number";
    default: return "none";
    }
}

/* v3.math.extract(text) -> answer, kind | nil. Pops nothing; pushes the raw final answer of a
 * completion (last \boxed{}, "final answer is $X$", ...) and how it was found ("boxed", ...), or
 * nil when there is none. Raises when text is not a string. */
static int l_math_extract(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    v3_math_opts o;
    v3_math_opts_default(&o);
    char out[V3_MATH_ANSWER_MAX + 1];
    v3_math_extract_kind kind = V3_MATH_NONE;
    if (v3_math_extract(s, n, out, sizeof out, &kind, &o) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, out);
    lua_pushstring(L, kind_name(kind));
    return 2;
}

/* v3.math.equal(gold, pred) -> boolean. Pops nothing; pushes whether the two bare answers are
 * mathematically equivalent (math_verify's normalisation and comparison). Raises on non-strings. */
static int l_math_equal(lua_State *L) {
    const char *gold = luaL_checkstring(L, 1);
    const char *pred = luaL_checkstring(L, 2);
    lua_pushboolean(L, v3_math_equal(gold, pred, NULL) == 1);
    return 1;
}

/* v3.math.accuracy(completion, gold) -> 1.0 | 0.0 | nil. Pops nothing; pushes open-r1's
 * accuracy_reward: 1 when the completion's answer verifies against the gold, 0 when not or when
 * it has none, nil when the gold itself cannot be parsed (skip). Raises on non-strings. */
static int l_math_accuracy(lua_State *L) {
    size_t nc, ng;
    const char *c = luaL_checklstring(L, 1, &nc);
    const char *g = luaL_checklstring(L, 2, &ng);
    v3_math_status st = V3_MATH_OK;
    double r = v3_math_accuracy_reward(c, nc, g, ng, NULL, &st);
    if (st == V3_MATH_GOLD_UNPARSED) lua_pushnil(L);
    else lua_pushnumber(L, r);
    return 1;
}

int v3_v3mod_push_math(lua_State *L) {
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_math_extract);
    lua_setfield(L, -2, "extract");
    lua_pushcfunction(L, l_math_equal);
    lua_setfield(L, -2, "equal");
    lua_pushcfunction(L, l_math_accuracy);
    lua_setfield(L, -2, "accuracy");
    return 1;
}
