-- overlong.lua — built-in reward: DAPO's soft overlong punishment (DAPO paper, arXiv 2503.14476,
-- eq. 13; open-r1's get_soft_overlong_punishment), with L = the completion's length in tokens:
--   R = 0                                  if L <= L_max - L_cache
--   R = ((L_max - L_cache) - L) / L_cache  if L_max - L_cache < L <= L_max
--   R = -1                                 if L > L_max
-- so R is in [-1, 0]: no bonus for short completions, a penalty growing linearly through the last
-- L_cache tokens of the budget, and -1 past it (with L_cache = 0: 0 up to L_max, -1 beyond).
--
-- The length is #s.completion_ids. A sample without completion_ids is skipped (nil): counting
-- characters instead would mix units with L_max, which is a token budget.
--
-- Options (fields of this table; `require("overlong").new{max_completion_len = 8192,
-- soft_punish_cache = 1024}` makes a copy):
--   max_completion_len = 16384   L_max: the rollout's max new tokens (open-r1's default)
--   soft_punish_cache  = 4096    L_cache (open-r1's default), 0 <= L_cache <= L_max
local M = { name = "overlong", max_completion_len = 16384, soft_punish_cache = 4096 }

local function check(o)
  local lmax, cache = o.max_completion_len, o.soft_punish_cache
  if math.type(lmax) ~= "integer" or lmax < 0 then
    error("overlong: option max_completion_len must be a non-negative integer", 0)
  end
  if math.type(cache) ~= "integer" or cache < 0 or cache > lmax then
    error("overlong: option soft_punish_cache must be an integer in 0..max_completion_len", 0)
  end
  return lmax, cache
end

local function score(o, s)
  local lmax, cache = check(o)
  local ids = s.completion_ids
  if type(ids) ~= "table" then return nil end
  local len = #ids
  if len <= lmax - cache then return 0.0 end
  if len <= lmax then return (lmax - cache - len) / cache end
  return -1.0
end

function M.new(opts)
  local m = {}
  for k, v in pairs(M) do m[k] = v end
  for k, v in pairs(opts or {}) do m[k] = v end
  m.score = function(s) return score(m, s) end
  check(m)
  return m
end

M.score = function(s) return score(M, s) end
return M
