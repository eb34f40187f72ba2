/* judge_module.h — reward modules that ask an LLM judge (docs/rewards-judge.md):
 *
 *   return {
 *     judge   = { url = "http://127.0.0.1:8000/v1", model = "...", key_env = "JUDGE_API_KEY",
 *                 max_in_flight = 16, timeout = 60, retries = 3, ... },
 *     request = function(s) return { messages = {...}, temperature = 0, max_tokens = 512 } end,
 *     parse   = function(s, reply) return score_or_table end,
 *   }
 *
 * The reward host scores a batch in three phases: request() in the workers (sandboxed, under the
 * usual budgets) gives each sample's request body; the host sends all of them concurrently
 * through a v3_judge (rewards/judge.h); parse() in the workers turns each reply into a score, as
 * `score` would. request() returning nil skips the sample (no HTTP request). A request that fails
 * after its retries is recorded as that sample's error, with the fallback.
 *
 * Wire: the judge phases reuse the worker protocol of rewards/worker.h unchanged. The host sends,
 * in place of the sample, a wrapper object whose key "judge_phase" an encoded sample never has
 * (rewards/sample.h writes a fixed set of keys):
 *   {"judge_phase":"config"}                            -> OK, extra = the `judge` table as JSON;
 *                                                          SKIP for a module that is no judge
 *   {"judge_phase":"request","sample":{...}}            -> OK, extra = the request body as JSON;
 *                                                          SKIP when request() returned nil
 *   {"judge_phase":"parse","reply":{...},"sample":{...}} -> like a `score` call
 * The host asks every function for its config once, at init.
 *
 * Worker side: judge_lua.c (called from worker_lua.c). Host side: judge_module.c. */
#ifndef V3_REWARDS_JUDGE_MODULE_H
#define V3_REWARDS_JUDGE_MODULE_H

#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "common/err.h"
#include "rewards/judge.h"

#define V3_JUDGE_PHASE_KEY "judge_phase"
#define V3_JUDGE_REG_REQUEST "v3.judge.request"
#define V3_JUDGE_REG_PARSE "v3.judge.parse"
#define V3_JUDGE_REG_CONFIG "v3.judge.config"

struct v3_reward_call;

/* ---- worker side (inside protected calls; these may raise Lua memory errors) ---- */

/* At load, with the module's table at index m: returns 0 when it has no `judge` field (not a judge
 * module). Otherwise checks its shape (`judge` a table that encodes to JSON, `request` and `parse`
 * functions, no `score`), keeps the parts in the registry and returns 1; a bad shape is reported
 * in errmsg. */
int v3_judge_lua_load(lua_State *L, int m, char *errmsg, size_t n);
/* The phase of a request, or NULL for an ordinary sample. */
const char *v3_judge_lua_phase(const json_t *request);
/* "config": fills out (OK with the config JSON as extra, or SKIP). */
void v3_judge_lua_config(lua_State *L, struct v3_reward_call *out);
/* "request": takes what request() returned (top of the stack): nil -> SKIP, a table -> its JSON,
 * a string -> itself; anything else is reported in errmsg. */
void v3_judge_lua_take_request(lua_State *L, struct v3_reward_call *out, char *errmsg, size_t n);

/* ---- host side ---- */

/* The wire payloads above (malloc'd, NUL-terminated, *len bytes). reply is a v3_judge_result that
 * is ok. V3_ENOMEM on failure. */
int v3_judge_wire_config(char **out, size_t *len, v3_err *err);
int v3_judge_wire_request(const char *sample, size_t sample_len, char **out, size_t *len, v3_err *err);
int v3_judge_wire_parse(const char *sample, size_t sample_len, const v3_judge_result *reply,
                        char **out, size_t *len, v3_err *err);

/* Starts the judge a module's `judge` table (config_json) describes; the non-zero fields of
 * override (may be NULL) win over the module's. Unknown keys and bad values fail with a message
 * naming the key. */
int v3_judge_from_config(v3_judge **judge, const char *config_json, const v3_judge_opts *override,
                         v3_err *err);

#endif
