/* sandbox.h — a sandboxed lua_State for untrusted Lua: config files now, reward scripts later.
 *
 * What a sandboxed state offers the script: the base library without dofile and loadfile, and
 * with `load` restricted to text chunks; string (without string.dump), table, math, utf8. `print`
 * writes to stderr, so that a chatty script cannot corrupt a command's stdout (`config --json`).
 * Two base functions are changed because Lua runs their callbacks with hooks disabled, out of
 * reach of the budgets: `xpcall` calls its message handler after the unwind (as an ordinary,
 * hooked call), and `setmetatable` refuses metatables with __gc (finalizers run unhooked).
 * Nothing else: no io, os, debug, package, require, coroutine. A caller may install more (the `v3`
 * module, a restricted `require`) after v3_sandbox_init.
 *
 * What it enforces:
 *   memory        every allocation of the state goes through a capped allocator; growth past
 *                 `mem_cap` bytes is refused. The cap is for the whole state, not per call.
 *   instructions  a count hook counts VM instructions of each v3_sandbox_call.
 *   wall clock    the same hook compares the monotonic clock with the call's deadline.
 * Once a budget is spent (or a refused allocation was not rescued by Lua's emergency collection),
 * the hook is re-armed to run on every instruction and raises each time, so a script's own `pcall`
 * catches at most one of those errors and the script dies at its next instruction (Redis's script
 * kill). v3_sandbox_call also checks the kill flag after the call returns, so a killed script
 * never reports success. Only the memory cap applies while compiling (v3_sandbox_load).
 *
 * After an error: the state stays usable. A Lua error, budget kills included, unwinds cleanly;
 * the next v3_sandbox_call gets fresh instruction and time budgets. What the script stored in
 * globals stays (memory included), so callers that need isolation between runs (the reward host)
 * free the sandbox and init a new one.
 *
 * Limitations (the reason reward scripts will run in killable worker processes):
 *   - The count hook only fires between VM instructions. A script stuck inside one C function,
 *     e.g. string.find/match/gsub with a pathological pattern on a long subject, is interrupted
 *     by neither the instruction nor the time budget (only the memory cap still applies, which
 *     is what stops a huge string.rep). The reward host must therefore run scripts in worker
 *     processes it can kill from outside.
 *   - The same holds for other C loops: table.move over a huge index range, for one.
 *   - Hooks are per thread; that is why coroutine is not opened (a coroutine would run unhooked).
 *   - Calls do not nest: v3_sandbox_call from inside a C function called by the script is refused.
 *
 * Fault injection (SQLite's test_malloc idea): a v3_alloc_fault makes the Nth counted allocation
 * fail, so tests can sweep N over a whole operation and check that each failure is reported cleanly.
 */
#ifndef V3_LUA_SANDBOX_H
#define V3_LUA_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "common/err.h"

/* Fails the `fail_at`-th counted allocation (1-based; 0 = never). With `persist` set, every
 * allocation after it fails too. Shared by reference: the sandbox allocator and the C code of
 * callers (v3_fault_malloc) tick the same counter, so one sweep covers both. */
typedef struct v3_alloc_fault {
    int64_t fail_at;
    int persist;
    int64_t count;  /* allocations counted so far */
    int64_t failed; /* allocations refused so far */
} v3_alloc_fault;

/* malloc/realloc that consult `fault` (may be NULL: plain malloc/realloc). */
void *v3_fault_malloc(v3_alloc_fault *fault, size_t n);
void *v3_fault_realloc(v3_alloc_fault *fault, void *p, size_t n);

typedef struct v3_sandbox_limits {
    size_t mem_cap;           /* bytes for the whole state; 0 = no cap */
    int64_t max_instructions; /* per v3_sandbox_call; 0 = unlimited */
    int64_t deadline_ms;      /* wall-clock time per v3_sandbox_call; 0 = none */
    v3_alloc_fault *fault;    /* optional fault injection (tests); borrowed */
} v3_sandbox_limits;

enum {
    V3_SB_KILL_NONE = 0,
    V3_SB_KILL_INSTRUCTIONS,
    V3_SB_KILL_DEADLINE,
    V3_SB_KILL_MEMORY, /* an allocation was refused: cap reached, injected fault, or malloc NULL */
};

/* One sandboxed state. Lives in caller storage and must stay at the same address between
 * v3_sandbox_init and v3_sandbox_free: the allocator and the hook find it through the state's
 * allocator userdata. Fields are read-only for callers. */
typedef struct v3_sandbox {
    lua_State *L;
    v3_sandbox_limits limits;
    size_t mem_used; /* bytes currently allocated by the state */
    size_t mem_peak;
    /* per-call budget state */
    int64_t executed;    /* instructions counted in the current call (hook granularity) */
    int64_t deadline_ns; /* CLOCK_MONOTONIC deadline of the current call; 0 = none */
    int hook_period;     /* instructions between two hook calls while not killed */
    int killed;          /* V3_SB_KILL_*: sticky until the next call starts */
    int refusal;         /* why the last allocation was refused: 1 cap, 2 injected, 3 malloc */
    int in_call;         /* guards against nested calls */
    char kill_where[160]; /* "chunk:line" where the hook killed the script, if known */
    /* the last refused allocation, to tell Lua's one retry after an emergency GC apart */
    int pending;
    int unrescued; /* a refused allocation that Lua did not retry (another one came first) */
    int mem_check; /* the hook was armed to decide whether the pending refusal is a kill */
    void *pend_ptr;
    size_t pend_osize, pend_nsize;
} v3_sandbox;

/* Creates the state and opens the safe libraries (the hook is set per call). A zero limit means
 * "no limit": callers choose their budgets (config.c does; the reward host will). On failure
 * nothing is left allocated and *sb is zeroed. */
int v3_sandbox_init(v3_sandbox *sb, const v3_sandbox_limits *limits, v3_err *err);
/* Closes the state. Accepts a zeroed or already freed sandbox. */
void v3_sandbox_free(v3_sandbox *sb);

/* The sandbox owning L (a state made by v3_sandbox_init). */
v3_sandbox *v3_sandbox_from(lua_State *L);

/* Compiles a text chunk; binary chunks are refused. chunkname follows lua_load ("@file.lua" makes
 * messages read "file.lua:LINE: ..."). Pushes the function on success; pushes nothing on failure
 * (V3_EFORMAT with Lua's "chunk:line: message", or V3_ENOMEM). Runs under the memory cap only. */
int v3_sandbox_load(v3_sandbox *sb, const char *text, size_t len, const char *chunkname,
                    v3_err *err);
/* Reads a whole text file (C stdio) into *text (malloc'd, not NUL-terminated; free it) and *len,
 * refusing files larger than the memory cap. A first line starting with '#' is blanked (kept as an
 * empty line so line numbers stay right), as lua.c skips it. V3_EIO when it cannot be read. */
int v3_sandbox_read_file(v3_sandbox *sb, const char *path, char **text, size_t *len, v3_err *err);
/* Reads `path` with v3_sandbox_read_file and loads it as chunk "@path". */
int v3_sandbox_load_file(v3_sandbox *sb, const char *path, v3_err *err);

/* Calls the function below its `nargs` arguments on top of the stack, as lua_pcall does, under
 * fresh per-call budgets. On success the `nresults` results (LUA_MULTRET allowed) are on the stack;
 * on failure function and arguments are popped, nothing is pushed and err says why:
 *   V3_ENOMEM  "instruction budget of N exceeded" / "deadline of N ms exceeded" /
 *              "memory cap of N bytes exceeded" / "out of memory ..."
 *   V3_EINVAL  the Lua error message ("chunk:line: message") for a runtime error
 * A killed script never returns success, even if it caught the kill with pcall. */
int v3_sandbox_call(v3_sandbox *sb, int nargs, int nresults, v3_err *err);

/* Runs the C function f(L) in protected mode under the same budgets, with `ud` as its only
 * argument (a light userdata at index 1). f returns its results as a lua_CFunction does; they are
 * discarded. Use it for C code that calls raising Lua API functions (lua_newtable, lua_pushstring,
 * luaL_requiref...): outside a protected call their memory errors would abort the process. */
int v3_sandbox_cpcall(v3_sandbox *sb, lua_CFunction f, void *ud, v3_err *err);

#endif
