-- repetition.lua — built-in reward: n-gram repetition penalty, as open-r1's
-- get_repetition_penalty_reward(ngram_size, max_penalty) with language "en"
-- (src/open_r1/rewards.py; Appendix C.2 of arXiv 2502.03373):
--   words   = text.lower().split()
--   ngrams  = zip(*[words[i:] for i in range(ngram_size)])   -- len(words) - n + 1 of them
--   score   = (1 - len(set(ngrams)) / len(ngrams)) * max_penalty
-- and 0 for an empty completion or one with fewer than ngram_size words. So the score is in
-- [max_penalty, 0]: 0 when no n-gram repeats, near max_penalty when one n-gram fills the text.
-- Lowercasing and splitting follow Python's str.lower() and str.split() (Unicode whitespace,
-- full lowercase mapping); the counting is v3.text.ngrams (C, linear time). Words are split at
-- whitespace only, so a text without spaces (Chinese) is one word: open-r1's "zh" mode, which
-- segments with jieba, is not available.
--
-- Options (fields of this table; `require("repetition").new{ngram_size = 4, max_penalty = -0.5}`
-- makes a copy):
--   ngram_size  = 3     integer in 1..1024
--   max_penalty = -1.0  must not be positive (open-r1 raises ValueError)
local M = { name = "repetition", ngram_size = 3, max_penalty = -1.0 }

local function check(o)
  local n, p = o.ngram_size, o.max_penalty
  if math.type(n) ~= "integer" or n < 1 or n > 1024 then
    error("repetition: option ngram_size must be an integer in 1..1024", 0)
  end
  if type(p) ~= "number" or p > 0 or p ~= p then
    error("repetition: option max_penalty " .. tostring(p) .. " should not be positive", 0)
  end
  return n, p
end

local function score(o, s)
  local n, p = check(o)
  local text = s.completion
  if type(text) ~= "string" or text == "" then return 0.0 end
  local total, unique, words = v3.text.ngrams(text, n)
  if words < n then return 0.0 end
  local r = (1 - unique / total) * p
  if r == 0 then return 0.0 end -- not -0.0 (Python's value; equal, but odd in outputs)
  return r
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
