/* sandbox.c — the sandboxed lua_State: capped allocator, safe libraries, budget hook, calls.
 * See sandbox.h for what a script may use and what is enforced. */
#include "sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

enum { REFUSE_NONE = 0, REFUSE_CAP, REFUSE_INJECTED, REFUSE_MALLOC };

/* Instructions between two hook calls while no budget is spent: small enough that budgets are
 * precise to a thousand instructions, large enough that the hook costs nothing measurable. */
#define V3_SB_HOOK_PERIOD 1000

/* ---- fault injection ---- */

/* Counts one allocation; true when this one must fail. */
static int fault_tick(v3_alloc_fault *f) {
    if (!f) return 0;
    f->count++;
    if (f->fail_at > 0 && (f->count == f->fail_at || (f->persist && f->count > f->fail_at))) {
        f->failed++;
        return 1;
    }
    return 0;
}

void *v3_fault_malloc(v3_alloc_fault *fault, size_t n) {
    if (fault_tick(fault)) return NULL;
    return malloc(n ? n : 1);
}

void *v3_fault_realloc(v3_alloc_fault *fault, void *p, size_t n) {
    if (fault_tick(fault)) return NULL;
    return realloc(p, n ? n : 1);
}

/* ---- kill and hook ---- */

static void sb_hook(lua_State *L, lua_Debug *ar);

/* Marks the running script as killed and makes the hook raise before every instruction from now
 * on. lua_sethook may be called at any time (the manual allows it from a signal handler), so this
 * is safe from inside the allocator too. */
static void sb_kill(v3_sandbox *sb, int reason) {
    if (!sb->killed) sb->killed = reason;
    if (sb->L) lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sets the periodic budget hook of the current operation, or none when it has no budget. */
static void arm_budget_hook(v3_sandbox *sb) {
    if (sb->hook_period > 0) lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, sb->hook_period);
    else lua_sethook(sb->L, NULL, 0, 0);
}

static void sb_hook(lua_State *L, lua_Debug *ar) {
    v3_sandbox *sb = v3_sandbox_from(L);
    if (!sb->killed && sb->mem_check) {
        /* armed by a refused allocation: was it rescued by Lua's retry after a collection? */
        sb->mem_check = 0;
        if (!sb->pending && !sb->unrescued) {
            arm_budget_hook(sb);
            return;
        }
    }
    if (!sb->killed) {
        int reason = V3_SB_KILL_NONE;
        if (sb->pending || sb->unrescued) {
            reason = V3_SB_KILL_MEMORY;
        } else {
            sb->executed += sb->hook_period;
            if (sb->limits.max_instructions > 0 && sb->executed >= sb->limits.max_instructions)
                reason = V3_SB_KILL_INSTRUCTIONS;
            else if (sb->deadline_ns > 0 && now_ns() >= sb->deadline_ns)
                reason = V3_SB_KILL_DEADLINE;
        }
        if (reason == V3_SB_KILL_NONE) return;
        /* remember where the script was when it was killed, for the error message */
        if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
            snprintf(sb->kill_where, sizeof sb->kill_where, "%s:%d", ar->short_src, ar->currentline);
        sb_kill(sb, reason);
    }
    /* Raised again at every instruction: a pcall in the script catches one, and the script's next
     * instruction raises the next. */
    luaL_error(L, "script killed: budget exceeded");
}

/* ---- the capped allocator (lua_Alloc contract: nsize == 0 frees; with ptr == NULL, osize is a
 * type tag; NULL only when the request cannot be met; shrinking never fails) ---- */

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    v3_sandbox *sb = ud;
    if (ptr == NULL) osize = 0;
    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= osize;
        return NULL;
    }
    int why = REFUSE_NONE;
    void *p = NULL;
    if (nsize > osize && sb->limits.mem_cap && nsize - osize > sb->limits.mem_cap - sb->mem_used)
        why = REFUSE_CAP;
    else if (nsize > osize && fault_tick(sb->limits.fault))
        why = REFUSE_INJECTED;
    else if (!(p = realloc(ptr, nsize))) {
        if (nsize <= osize) return ptr; /* Lua assumes shrinking succeeds; the old block still fits */
        why = REFUSE_MALLOC;
    }
    int same = sb->pending && sb->pend_ptr == ptr && sb->pend_osize == osize &&
               sb->pend_nsize == nsize;
    if (why == REFUSE_NONE) {
        sb->mem_used = sb->mem_used - osize + nsize;
        if (sb->mem_used > sb->mem_peak) sb->mem_peak = sb->mem_used;
        if (same) sb->pending = 0; /* Lua's retry after an emergency collection succeeded */
        return p;
    }
    /* Lua answers most refused allocations with an emergency collection and one identical retry,
     * and tolerates a few refusals (a string table that cannot grow); but some callers raise at
     * once ("not enough memory" from a luaL_Buffer) and a script may catch that with pcall. So a
     * refusal is not a kill by itself: it stays pending, the hook is armed to run before the next
     * instruction, and if no identical retry has succeeded by then, the script is killed. */
    sb->refusal = why;
    if (!same) {
        if (sb->pending) sb->unrescued = 1; /* the earlier refusal was never retried */
        sb->pending = 1;
        sb->pend_ptr = ptr;
        sb->pend_osize = osize;
        sb->pend_nsize = nsize;
    }
    if (sb->L && !sb->killed) {
        sb->mem_check = 1;
        lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
    }
    return NULL;
}

v3_sandbox *v3_sandbox_from(lua_State *L) {
    void *ud = NULL;
    if (lua_getallocf(L, &ud) != sb_alloc) return NULL;
    return ud;
}

/* ---- the library set ---- */

/* load(chunk [, chunkname [, mode [, env]]]) — the base library's load with mode forced to "t".
 * Upvalue 1: the original load. Pops nothing from the caller's view; pushes what load returns
 * (the function, or nil plus a message: "attempt to load a binary chunk (mode is 't')").
 * May raise what the original load raises (bad argument types, memory errors). Whether argument 4
 * is absent or nil matters to load (nil sets the chunk's _ENV to nil), so it is passed only when
 * given. */
static int sb_load_text(lua_State *L) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    if (n >= 2) lua_pushvalue(L, 2);
    else lua_pushnil(L);
    lua_pushliteral(L, "t");
    int nargs = 3;
    if (n >= 4) {
        lua_pushvalue(L, 4);
        nargs = 4;
    }
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - n;
}

/* print(...) — as the base print (luaL_tolstring of each argument, tab-separated, newline) but
 * to stderr, so a script cannot corrupt a command's stdout. Pops nothing, pushes nothing; may
 * raise from a __tostring metamethod or a memory error. */
static int sb_print(lua_State *L) {
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1) fputc('\t', stderr);
        fwrite(s, 1, len, stderr);
        lua_pop(L, 1);
    }
    fputc('\n', stderr);
    return 0;
}

/* xpcall(f, msgh, ...) — pcall(f, ...), then msgh(error) as an ordinary call after the unwind.
 * Lua runs a real message handler from inside the raise, and a raise from the count hook happens
 * while hooks are disabled: a handler that loops forever would escape every budget. Without the
 * debug library a handler cannot look at the failed stack anyway, so calling it after the unwind
 * loses nothing a sandboxed script could use. Pops nothing of the caller's; pushes true and f's
 * results, or false and the handler's result (or the handler's own error object). Raises when msgh
 * is not a function, like the original. */
static int sb_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checkstack(L, n + 3, "too many arguments");
    lua_pushvalue(L, 1);
    for (int i = 3; i <= n; i++) lua_pushvalue(L, i);
    if (lua_pcall(L, n - 2 < 0 ? 0 : n - 2, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_insert(L, n + 1);
        return lua_gettop(L) - n;
    }
    /* stack: args (1..n), error object (n+1) */
    lua_pushboolean(L, 0);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, n + 1);
    lua_pcall(L, 1, 1, 0); /* the handler's result, or its error object */
    return 2;
}

/* setmetatable(t, mt) — the original, but refuses a metatable with a __gc field. Finalizers run
 * with hooks disabled (during any collection and in lua_close), so a looping __gc would escape
 * every budget; Lua only registers an object for finalization when setmetatable sees __gc, so
 * checking here is enough. Upvalue 1: the original. Pushes t; raises on __gc or what the original
 * raises. */
static int sb_setmetatable(lua_State *L) {
    int n = lua_gettop(L);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox");
        lua_pop(L, 1);
    }
    luaL_checkstack(L, n + 1, "too many arguments");
    lua_pushvalue(L, lua_upvalueindex(1));
    for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
    lua_call(L, n, 1);
    return 1;
}

/* Protected part of init: every call here may raise a memory error. As linit.c shows embedders,
 * the libraries are chosen one by one with luaL_requiref. */
static int sb_open_libs(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    lua_pushnil(L);
    lua_setfield(L, -2, "dofile");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadfile");
    lua_getfield(L, -1, "load");
    lua_pushcclosure(L, sb_load_text, 1);
    lua_setfield(L, -2, "load");
    lua_pushcfunction(L, sb_print);
    lua_setfield(L, -2, "print");
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, -2, "xpcall");
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, sb_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    /* string.dump makes bytecode, which nothing here accepts; removing it also removes the
     * ("").dump method, since strings index the string table */
    lua_getfield(L, -1, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 2);
    return 0;
}

/* ---- init / free ---- */

int v3_sandbox_init(v3_sandbox *sb, const v3_sandbox_limits *limits, v3_err *err) {
    memset(sb, 0, sizeof *sb);
    if (limits) sb->limits = *limits;
    lua_State *L = lua_newstate(sb_alloc, sb);
    if (!L) {
        int cap = sb->refusal == REFUSE_CAP;
        size_t capb = sb->limits.mem_cap;
        memset(sb, 0, sizeof *sb);
        if (cap) return v3_errf(err, V3_ENOMEM, "lua: memory cap of %zu bytes exceeded creating the state", capb);
        return v3_errf(err, V3_ENOMEM, "lua: out of memory creating the state");
    }
    sb->L = L;
    int rc = v3_sandbox_cpcall(sb, sb_open_libs, NULL, err);
    if (rc != V3_OK) {
        v3_err_prefix(err, "lua: opening the libraries");
        v3_sandbox_free(sb);
        return rc;
    }
    return V3_OK;
}

void v3_sandbox_free(v3_sandbox *sb) {
    if (!sb || !sb->L) return;
    lua_close(sb->L);
    memset(sb, 0, sizeof *sb);
}

/* ---- per-operation budget state ---- */

static void op_begin(v3_sandbox *sb, int with_budgets) {
    sb->executed = 0;
    sb->killed = V3_SB_KILL_NONE;
    sb->refusal = REFUSE_NONE;
    sb->pending = 0;
    sb->unrescued = 0;
    sb->mem_check = 0;
    sb->kill_where[0] = 0;
    sb->deadline_ns = 0;
    sb->hook_period = 0;
    int64_t max = sb->limits.max_instructions;
    if (with_budgets && (max > 0 || sb->limits.deadline_ms > 0)) {
        if (sb->limits.deadline_ms > 0) sb->deadline_ns = now_ns() + sb->limits.deadline_ms * 1000000;
        sb->hook_period = max > 0 && max < V3_SB_HOOK_PERIOD ? (int)max : V3_SB_HOOK_PERIOD;
    }
    arm_budget_hook(sb);
}

static void op_end(v3_sandbox *sb) {
    lua_sethook(sb->L, NULL, 0, 0);
    sb->hook_period = 0;
    sb->mem_check = 0;
}

/* The message for a killed operation. */
static int kill_error(v3_sandbox *sb, v3_err *err) {
    char where[sizeof sb->kill_where + 8] = "";
    if (sb->kill_where[0]) snprintf(where, sizeof where, " (at %s)", sb->kill_where);
    switch (sb->killed) {
    case V3_SB_KILL_INSTRUCTIONS:
        return v3_errf(err, V3_ENOMEM, "instruction budget of %lld exceeded%s",
                       (long long)sb->limits.max_instructions, where);
    case V3_SB_KILL_DEADLINE:
        return v3_errf(err, V3_ENOMEM, "deadline of %lld ms exceeded%s",
                       (long long)sb->limits.deadline_ms, where);
    default:
        if (sb->refusal == REFUSE_CAP)
            return v3_errf(err, V3_ENOMEM, "memory cap of %zu bytes exceeded%s", sb->limits.mem_cap,
                           where);
        if (sb->refusal == REFUSE_INJECTED)
            return v3_errf(err, V3_ENOMEM, "out of memory (injected failure at allocation %lld)%s",
                           sb->limits.fault ? (long long)sb->limits.fault->fail_at : 0LL, where);
        return v3_errf(err, V3_ENOMEM, "out of memory%s", where);
    }
}

/* Turns the error object on top of the stack into err and pops it. Never calls a metamethod or
 * converts a number in place (both could run code or allocate outside protection). */
static int lua_error_to_err(v3_sandbox *sb, int status, v3_err *err) {
    lua_State *L = sb->L;
    int code = status == LUA_ERRSYNTAX ? V3_EFORMAT : status == LUA_ERRMEM ? V3_ENOMEM : V3_EINVAL;
    if (sb->killed ||
        (sb->refusal != REFUSE_NONE && (status == LUA_ERRMEM || sb->pending || sb->unrescued))) {
        lua_pop(L, 1);
        return kill_error(sb, err);
    }
    if (lua_type(L, -1) == LUA_TSTRING) v3_errf(err, code, "%s", lua_tostring(L, -1));
    else if (lua_type(L, -1) == LUA_TNUMBER) v3_errf(err, code, "%.14g", lua_tonumber(L, -1));
    else v3_errf(err, code, "(error object is a %s value)", luaL_typename(L, -1));
    lua_pop(L, 1);
    return code;
}

/* ---- load / call ---- */

int v3_sandbox_load(v3_sandbox *sb, const char *text, size_t len, const char *chunkname,
                    v3_err *err) {
    if (sb->in_call) return v3_errf(err, V3_EINVAL, "lua: sandbox load from inside a call");
    if (!lua_checkstack(sb->L, 2)) return v3_errf(err, V3_ENOMEM, "lua: out of memory (stack)");
    op_begin(sb, 0);
    int st = luaL_loadbufferx(sb->L, text, len, chunkname, "t");
    op_end(sb);
    if (st == LUA_OK) return V3_OK;
    return lua_error_to_err(sb, st, err);
}

int v3_sandbox_read_file(v3_sandbox *sb, const char *path, char **text, size_t *len,
                         v3_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return v3_errf(err, V3_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = v3_fault_malloc(sb->limits.fault, cap);
    int rc = V3_OK;
    while (buf) {
        if (n == cap) {
            /* the memory cap bounds what a file may make us read, not only what Lua allocates */
            if (sb->limits.mem_cap && cap > sb->limits.mem_cap) {
                rc = v3_errf(err, V3_ENOMEM, "%s: file larger than the memory cap of %zu bytes",
                             path, sb->limits.mem_cap);
                break;
            }
            char *nb = v3_fault_realloc(sb->limits.fault, buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) rc = v3_errf(err, V3_EIO, "%s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (rc == V3_OK && (!buf || n == cap))
        rc = v3_errf(err, V3_ENOMEM, "%s: out of memory reading the file", path);
    if (rc != V3_OK) {
        free(buf);
        return rc;
    }
    /* a "#!" first line is blanked, not removed, so that line numbers stay right */
    if (n && buf[0] == '#')
        for (size_t i = 0; i < n && buf[i] != '\n'; i++) buf[i] = ' ';
    *text = buf;
    *len = n;
    return V3_OK;
}

int v3_sandbox_load_file(v3_sandbox *sb, const char *path, v3_err *err) {
    char *buf;
    size_t len;
    int rc = v3_sandbox_read_file(sb, path, &buf, &len, err);
    if (rc != V3_OK) return rc;
    size_t nlen = strlen(path) + 2;
    char *chunkname = v3_fault_malloc(sb->limits.fault, nlen);
    if (!chunkname) {
        free(buf);
        return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    }
    snprintf(chunkname, nlen, "@%s", path);
    rc = v3_sandbox_load(sb, buf, len, chunkname, err);
    free(chunkname);
    free(buf);
    /* syntax errors already read "path:line: ..."; others need the file named */
    if (rc != V3_OK && rc != V3_EFORMAT) v3_err_prefix(err, "%s", path);
    return rc;
}

int v3_sandbox_call(v3_sandbox *sb, int nargs, int nresults, v3_err *err) {
    lua_State *L = sb->L;
    int base = lua_gettop(L) - nargs - 1; /* the stack height after function and args are gone */
    if (sb->in_call) {
        lua_settop(L, base);
        return v3_errf(err, V3_EINVAL, "lua: nested sandbox call refused");
    }
    op_begin(sb, 1);
    sb->in_call = 1;
    int st = lua_pcall(L, nargs, nresults, 0);
    sb->in_call = 0;
    op_end(sb);
    if (st != LUA_OK) return lua_error_to_err(sb, st, err);
    /* a script that caught every raise and still returned is killed anyway; so is one whose last
     * refused allocation was never rescued (no instruction ran after it to trigger the hook) */
    if (sb->killed || sb->pending || sb->unrescued) {
        if (!sb->killed) sb->killed = V3_SB_KILL_MEMORY;
        lua_settop(L, base);
        return kill_error(sb, err);
    }
    return V3_OK;
}

int v3_sandbox_cpcall(v3_sandbox *sb, lua_CFunction f, void *ud, v3_err *err) {
    if (!lua_checkstack(sb->L, 2)) return v3_errf(err, V3_ENOMEM, "lua: out of memory (stack)");
    lua_pushcfunction(sb->L, f);
    lua_pushlightuserdata(sb->L, ud);
    return v3_sandbox_call(sb, 1, 0, err);
}
