-- cosine_length.lua — built-in reward: correctness scaled by length on a cosine schedule, as
-- open-r1's get_cosine_scaled_reward (src/open_r1/rewards.py; the cosine length scaling of
-- arXiv 2502.03373). With L the completion's length:
--   progress = L / max_len
--   cosine   = cos(progress * pi)
--   correct: lo, hi = min_value_correct, max_value_correct   (short right answers earn most)
--   wrong:   lo, hi = max_value_wrong, min_value_wrong       (short wrong answers lose most)
--   score    = lo + 0.5 * (hi - lo) * (1 + cosine)
-- With the defaults: correct 1.0 at L = 0 down to 0.5 at L = max_len; wrong -1.0 at L = 0 up to
-- -0.5 at L = max_len. As in open-r1, L is not clamped: past max_len the cosine goes on (at
-- L = 2 * max_len the score is back to its L = 0 value); set clamp = true to hold it at max_len.
-- The score always lies between the smallest and the largest of the four values.
--
-- Correctness: the built-in math verifier, v3.math.accuracy(completion, gold) (see
-- docs/rewards-math.md; open-r1 uses math-verify, with boxed=True where accuracy_reward uses
-- "all"). The gold is the sample field `solution` (open-r1's column), else `answer`; it must
-- contain LaTeX ("$42$", "\boxed{42}", a full solution), as in open-r1. A gold that does not parse
-- scores unparsed_gold (open-r1: 1.0); a sample with no gold at all is skipped (nil).
--
-- Length: in tokens (#s.completion_ids) when the sample has completion_ids, else in characters
-- (code points, Python's len(); open-r1 always uses characters). Set length = "chars" or
-- "tokens" to force one unit ("tokens" without completion_ids: skipped).
--
-- Options (fields of this table; `require("cosine_length").new{max_len = 4096}` makes a copy):
--   min_value_wrong = -1.0, max_value_wrong = -0.5,
--   min_value_correct = 0.5, max_value_correct = 1.0,   (get_cosine_scaled_reward's defaults;
--   max_len = 1000                                       open-r1's config default for
--                                                        min_value_wrong is 0.0)
--   length = "auto"        "auto" | "tokens" | "chars"
--   clamp = false          true: L = min(L, max_len)
--   unparsed_gold = 1.0    score when the gold does not parse; false: skip the sample
-- Returns {score = x, correct = true|false, length = L}.
local M = {
  name = "cosine_length",
  min_value_wrong = -1.0, max_value_wrong = -0.5,
  min_value_correct = 0.5, max_value_correct = 1.0,
  max_len = 1000, length = "auto", clamp = false, unparsed_gold = 1.0,
}

local function check(o)
  for _, k in ipairs({ "min_value_wrong", "max_value_wrong", "min_value_correct", "max_value_correct" }) do
    local v = o[k]
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      error("cosine_length: option " .. k .. " must be a finite number", 0)
    end
  end
  if type(o.max_len) ~= "number" or not (o.max_len > 0) or o.max_len == math.huge then
    error("cosine_length: option max_len must be a positive number", 0)
  end
  if o.length ~= "auto" and o.length ~= "tokens" and o.length ~= "chars" then
    error("cosine_length: option length must be \"auto\", \"tokens\" or \"chars\"", 0)
  end
  local u = o.unparsed_gold
  if u ~= false and (type(u) ~= "number" or u ~= u or u == math.huge or u == -math.huge) then
    error("cosine_length: option unparsed_gold must be a finite number or false", 0)
  end
end

local function gold_of(s)
  for _, k in ipairs({ "solution", "answer" }) do
    local g = s[k]
    if type(g) == "string" then return g end
    if type(g) == "number" then return tostring(g) end
  end
  return nil
end

local function score(o, s)
  check(o)
  local gold = gold_of(s)
  if not gold then return nil end
  local text = s.completion
  if type(text) ~= "string" then text = "" end
  local acc = v3.math.accuracy(text, gold)
  if acc == nil then
    if o.unparsed_gold == false then return nil end
    return o.unparsed_gold
  end
  local len
  local ids = s.completion_ids
  if o.length == "chars" or (o.length == "auto" and type(ids) ~= "table") then
    len = v3.text.len(text)
  elseif type(ids) == "table" then
    len = #ids
  else
    return nil -- length = "tokens" and no ids
  end
  local progress = len / o.max_len
  if o.clamp and progress > 1 then progress = 1 end
  local cosine = math.cos(progress * math.pi)
  local correct = acc == 1
  local lo, hi
  if correct then
    lo, hi = o.min_value_correct, o.max_value_correct
  else
    lo, hi = o.max_value_wrong, o.min_value_wrong
  end
  return { score = lo + 0.5 * (hi - lo) * (1.0 + cosine), correct = correct, length = len }
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
