-- reasoning_steps.lua — built-in reward: clear step-by-step reasoning, as open-r1's
-- reasoning_steps_reward (src/open_r1/rewards.py):
--   count = len(re.findall(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", text))
--   score = min(1.0, count / 3)
-- so 0, 1/3, 2/3 or 1. The matches are counted by v3.text.reasoning_steps (C, linear time) with
-- Python's semantics: \d is any Unicode decimal digit, `^` is the start of the text only (no
-- MULTILINE: "1." counts at the very beginning, not after a newline), matching is case-sensitive
-- and matches do not overlap.
--
-- Options (fields of this table; `require("reasoning_steps").new{steps = 5}` makes a copy):
--   steps = 3    the count that earns the full score (open-r1's "magic number 3")
-- A missing or empty completion scores 0.
local M = { name = "reasoning_steps", steps = 3 }

local function check(o)
  local steps = o.steps
  if type(steps) ~= "number" or not (steps > 0) or steps == math.huge then
    error("reasoning_steps: option steps must be a positive number", 0)
  end
  return steps
end

local function score(o, s)
  local steps = check(o)
  local text = s.completion
  if type(text) ~= "string" then return 0.0 end
  return math.min(1.0, v3.text.reasoning_steps(text) / steps)
end

-- a copy of this module with some options replaced (open-r1 builds its rewards with factories too)
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
