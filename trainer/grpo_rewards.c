/* grpo_rewards.c — the reward modules of a GRPO run, started as a reward host (rewards/host.h).
 *
 * A module comes from a file (`script`), from the config itself (`source`: its Lua text), or is
 * built in (`builtin`): "math" (below) or any rewards/NAME.lua shipped with v3tune (format,
 * tag_count, cosine_length, overlong, repetition, language, reasoning_steps, ...). Inline and
 * C-embedded modules are written to run_dir/rewards/NAME.lua first, so the run keeps the exact
 * source it used (its sha256 is stored with every reward row). v3tune's rewards/ directory is
 * always on the `require` path, after reward.dirs. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "trainer/grpo_internal.h"

/* 1 when the completion's final answer equals the reference s.answer; nil without one. */
static const char MATH_LUA[] =
    "-- math.lua: built-in reward of `v3tune grpo` (trainer/grpo_rewards.c).\n"
    "-- 1 when the completion's final answer equals the reference s.answer, else 0; nil (skip)\n"
    "-- when there is no usable reference. The reference may be a GSM8K solution (the number\n"
    "-- after '####'), LaTeX ('\\frac{1}{2}', '$x$', '\\boxed{3}') or a plain number. The answer is\n"
    "-- looked for in the completion's <answer>...</answer> part when it has one, else in the\n"
    "-- whole text: the part itself when it is short, what v3.math.extract finds (\\boxed{},\n"
    "-- 'the answer is $x$'), else the last number. Values are compared with v3.math.equal.\n"
    "local function reference(s)\n"
    "  local ref = s.answer\n"
    "  if type(ref) == 'number' then ref = tostring(ref) end\n"
    "  if type(ref) ~= 'string' then return nil end\n"
    "  local h = ref:match('####%s*([^\\n]-)%s*$')\n"
    "  if h then ref = h:gsub(',', '') end\n"
    "  if not ref:find('%S') then return nil end\n"
    "  local got = v3.math.extract(ref)\n"
    "  if got then ref = got end\n"
    "  if v3.math.accuracy('$0$', '$' .. ref .. '$') == nil then return nil end\n"
    "  return ref\n"
    "end\n"
    "local function last_number(text)\n"
    "  local last\n"
    "  for n in text:gmatch('%-?%d[%d,]*%.?%d*') do last = n end\n"
    "  if last then last = last:gsub(',', ''):gsub('%.$', '') end\n"
    "  return last\n"
    "end\n"
    "return {\n"
    "  name = 'math',\n"
    "  score = function(s)\n"
    "    local ref = reference(s)\n"
    "    if not ref then return nil end\n"
    "    local text = s.completion or ''\n"
    "    local a = text:find('<answer>', 1, true)\n"
    "    local part = text\n"
    "    if a then\n"
    "      local b = text:find('</answer>', a, true)\n"
    "      part = text:sub(a + 8, b and b - 1 or #text)\n"
    "    end\n"
    "    local bare = part:match('^%s*(.-)%s*$')\n"
    "    if #bare > 0 and #bare <= 64 and v3.math.equal(ref, bare) then\n"
    "      return { score = 1.0, extracted = bare }\n"
    "    end\n"
    "    local got = v3.math.extract(part) or last_number(part)\n"
    "    if not got then return { score = 0.0 } end\n"
    "    return { score = v3.math.equal(ref, got) and 1.0 or 0.0, extracted = got }\n"
    "  end,\n"
    "}\n";

static int valid_name(const char *s) {
    if (!*s || strlen(s) > 100) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return 0;
    return 1;
}

static int write_module(const char *dir, const char *name, const char *src, char *path, size_t n,
                        v3_err *err) {
    int rc = v3_mkdirs(dir, err);
    if (rc) return rc;
    snprintf(path, n, "%s/%s.lua", dir, name);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot write", tmp);
    size_t len = strlen(src);
    int bad = fwrite(src, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) return v3_errf(err, V3_EIO, "%s: cannot write", path);
    return V3_OK;
}

int grpo_rewards_init(grpo *g, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    char dir[4200], builtin_dir[4200];
    snprintf(dir, sizeof dir, "%s/rewards", o->run_dir);
    snprintf(builtin_dir, sizeof builtin_dir, "%s/rewards", V3_SOURCE_DIR);
    v3_reward_script sc[V3_REWARD_MAX_FUNCS];
    char paths[V3_REWARD_MAX_FUNCS][4400];
    int rc = V3_OK;
    for (int i = 0; i < o->n_rewards && !rc; i++) {
        const v3_grpo_reward *r = &o->rewards[i];
        memset(&sc[i], 0, sizeof sc[i]);
        sc[i].name = r->name;
        sc[i].weight = r->weight;
        sc[i].has_weight = r->has_weight;
        if (r->script) {
            snprintf(paths[i], sizeof paths[i], "%s", r->script);
            if (!v3_file_exists(paths[i]))
                rc = v3_errf(err, V3_ENOTFOUND, "rewards[%d].script: %s: no such file", i + 1, r->script);
        } else if (r->source) {
            if (!valid_name(r->name))
                rc = v3_errf(err, V3_EINVAL, "rewards[%d].name: '%s' (letters, digits, _ and - only)", i + 1, r->name);
            else rc = write_module(dir, r->name, r->source, paths[i], sizeof paths[i], err);
        } else if (!strcmp(r->builtin, "math")) {
            rc = write_module(dir, "math", MATH_LUA, paths[i], sizeof paths[i], err);
        } else {
            snprintf(paths[i], sizeof paths[i], "%s/%s.lua", builtin_dir, r->builtin);
            if (!valid_name(r->builtin) || !v3_file_exists(paths[i]))
                rc = v3_errf(err, V3_ENOTFOUND, "rewards[%d].builtin: unknown built-in '%s' (math, or a "
                             "module of %s: format, tag_count, cosine_length, overlong, repetition, "
                             "language, reasoning_steps)", i + 1, r->builtin, builtin_dir);
        }
        sc[i].path = paths[i];
    }
    if (rc) return rc;
    const char **dirs = calloc((size_t)o->n_reward_dirs + 1, sizeof *dirs);
    if (!dirs) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < o->n_reward_dirs; i++) dirs[i] = o->reward_dirs[i];
    dirs[o->n_reward_dirs] = builtin_dir;
    v3_reward_opts ro = {0};
    ro.scripts = sc;
    ro.n_scripts = o->n_rewards;
    ro.n_workers = o->reward_workers;
    ro.timeout_ms = o->reward_timeout_ms;
    ro.fallback = o->reward_fallback;
    ro.reward_dirs = dirs;
    ro.n_reward_dirs = o->n_reward_dirs + 1;
    rc = v3_reward_host_init(&g->host, &ro, err);
    free(dirs);
    if (rc) return v3_err_prefix(err, "rewards");
    g->n_func = v3_reward_host_n_funcs(g->host);
    g->acc_func = -1;
    for (int f = 0; f < g->n_func; f++) {
        const v3_reward_func_info *fi = v3_reward_host_func(g->host, f);
        g->weights[f] = fi->weight;
        if (!strcmp(fi->name, "accuracy")) g->acc_func = f;
        else if (!strcmp(fi->name, "math") && g->acc_func < 0) g->acc_func = f;
    }
    for (int f = 0; f < g->n_func; f++)
        for (int k = 0; k < f; k++)
            if (!strcmp(v3_reward_host_func(g->host, f)->name, v3_reward_host_func(g->host, k)->name))
                return v3_errf(err, V3_EINVAL, "rewards: two modules are named '%s' (set name = ... on one)",
                               v3_reward_host_func(g->host, f)->name);
    return V3_OK;
}
