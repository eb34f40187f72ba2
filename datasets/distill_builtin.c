/* distill_builtin.c — the verifiers `distill verify` runs when no script is given. They are
 * ordinary reward modules (docs/rewards.md), written next to the run store so the reward host
 * loads them like any script and the run keeps the exact source it used (its sha256 is stored
 * with every verdict). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "datasets/distill.h"

/* The trace's final answer against the prompt's reference answer (s.answer) with the C verifier
 * (rewards/math_verify.h). A bare reference ("540") is read as $540$. Where the answer is looked
 * for, in order: the final answer part as math-verify parses a completion (\boxed{}, "final
 * answer is $x$"); else the last number of the final answer (R1 often ends GSM8K answers with
 * "**Answer:** 44 hours", which math-verify does not parse); else the whole completion. */
static const char MATH_LUA[] =
    "-- math.lua: built-in verifier of `v3tune distill verify` (datasets/distill_builtin.c).\n"
    "-- 1 when the trace's final answer equals the reference answer (s.answer), else 0;\n"
    "-- nil (skip) when there is no reference or it cannot be parsed.\n"
    "local function gold_of(ref)\n"
    "  if ref:find('\\\\boxed', 1, true) or ref:find('$', 1, true) or ref:find('\\\\(', 1, true)\n"
    "     or ref:find('\\\\[', 1, true) then return ref end\n"
    "  return '$' .. ref .. '$'\n"
    "end\n"
    "local function last_number(text)\n"
    "  local last\n"
    "  for n in text:gmatch('%-?%d[%d,]*%.?%d*') do last = n end\n"
    "  if not last then return nil end\n"
    "  last = last:gsub(',', ''):gsub('%.$', '')\n"
    "  return last\n"
    "end\n"
    "return {\n"
    "  name = 'math',\n"
    "  score = function(s)\n"
    "    local ref = s.answer\n"
    "    if type(ref) == 'number' then ref = tostring(ref) end\n"
    "    if type(ref) ~= 'string' or not ref:find('%S') then return nil end\n"
    "    local gold = gold_of(ref)\n"
    "    local response = s.response or ''\n"
    "    local got, kind = v3.math.extract(response)\n"
    "    if got then\n"
    "      local r = v3.math.accuracy(response, gold)\n"
    "      if r == nil then return nil end\n"
    "      return { score = r, extracted = got, kind = kind }\n"
    "    end\n"
    "    local num = last_number(response)\n"
    "    if num then\n"
    "      if v3.math.accuracy('$' .. num .. '$', gold) == nil then return nil end\n"
    "      local bare = v3.math.extract(gold) or ref\n"
    "      return { score = v3.math.equal(bare, num) and 1.0 or 0.0, extracted = num,\n"
    "               kind = 'last_number' }\n"
    "    end\n"
    "    local text = s.completion or ''\n"
    "    got, kind = v3.math.extract(text)\n"
    "    local r = v3.math.accuracy(text, gold)\n"
    "    if r == nil then return nil end\n"
    "    return { score = r, extracted = got, kind = kind }\n"
    "  end,\n"
    "}\n";

/* The R1 shape: reasoning present and closed, a final answer after it, no stray tags. */
static const char R1_FORMAT_LUA[] =
    "-- r1_format.lua: built-in verifier of `v3tune distill verify` (datasets/distill_builtin.c).\n"
    "-- 1 when the trace has reasoning that was closed, a non-empty final answer and no stray\n"
    "-- <think> tags in either part; else 0 with the reason in `why`.\n"
    "return {\n"
    "  name = 'r1_format',\n"
    "  score = function(s)\n"
    "    local r, a = s.reasoning or '', s.response or ''\n"
    "    if s.truncated then return { score = 0.0, why = 'cut off inside the reasoning' } end\n"
    "    if not r:find('%S') then return { score = 0.0, why = 'no reasoning' } end\n"
    "    if not a:find('%S') then return { score = 0.0, why = 'no final answer' } end\n"
    "    for _, part in ipairs({ r, a }) do\n"
    "      if part:find('<think>', 1, true) or part:find('</think>', 1, true) then\n"
    "        return { score = 0.0, why = 'stray think tag' }\n"
    "      end\n"
    "    end\n"
    "    return 1.0\n"
    "  end,\n"
    "}\n";

static const char *const NAMES[] = {"math", "r1_format", NULL};

const char *const *v3_distill_builtin_names(void) { return NAMES; }

const char *v3_distill_builtin_source(const char *name) {
    if (!strcmp(name, "math")) return MATH_LUA;
    if (!strcmp(name, "r1_format")) return R1_FORMAT_LUA;
    return NULL;
}

int v3_distill_write_builtin(const char *dir, const char *name, char *path, size_t n, v3_err *err) {
    const char *src = v3_distill_builtin_source(name);
    if (!src)
        return v3_errf(err, V3_ENOTFOUND, "no built-in verifier \"%s\" (math, r1_format)", name);
    int rc = v3_mkdirs(dir, err);
    if (rc) return rc;
    char tmp[4200];
    snprintf(path, n, "%s/%s.lua", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return v3_errf(err, V3_EIO, "%s: %s", tmp, strerror(errno));
    int ok = fputs(src, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return v3_errf(err, V3_EIO, "%s: cannot write the built-in verifier: %s", path,
                       strerror(errno));
    }
    return V3_OK;
}
