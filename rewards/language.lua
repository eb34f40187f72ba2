-- language.lua — built-in reward: language consistency of the reasoning, as described in the
-- DeepSeek-R1 report (arXiv 2501.12948, sec. 2.3.2: "the proportion of target language words in
-- the CoT"):
--   score = (units of the reasoning written in the target's scripts) / (all units of the reasoning)
-- in [0, 1]. Units come from v3.text.scripts (C, linear time): each Han or kana character is one
-- unit (Chinese and Japanese have no spaces between words), in every other script a run of
-- letters is one unit (a word). Digits, punctuation, symbols, math and emoji are not counted.
-- Scripts are told apart by Unicode block: latin, greek, cyrillic, armenian, hebrew, arabic,
-- devanagari, bengali, tamil, thai, georgian, hangul, han, kana (other letters: "other").
--
-- The reasoning is the text between "<think>" and "</think>"; after "<think>" when it is not
-- closed; before "</think>" when only that is present (templates that open <think> in the
-- prompt); else the whole completion.
--
-- The target is, first found:
--   1. the option `language` of this module;
--   2. the sample field `language` (a dataset column), when it names a known language — other
--      values (a code dataset's "python") are ignored;
--   3. the script that has the most units in the prompt (the last user message of s.messages,
--      else s.prompt without special tokens like <|...|> and <｜...｜>): han (with kana present:
--      Japanese, han + kana) or that one script.
-- A language is an ISO 639-1 code ("en", "zh", "ja", "zh-CN" ...), an English name ("chinese"),
-- a script name ("latin", "han"), or a list of these. zh = han, ja = han + kana, ko = hangul,
-- en/fr/de/es/... = latin, ru/uk/... = cyrillic, ar/fa/ur = arabic (see LANGS below).
-- No target (no option, no field, no letters in the prompt): the sample is skipped (nil).
--
-- Options (fields of this table; `require("language").new{language = "zh"}` makes a copy):
--   language = nil      the target, as above; an unknown name is an error
--   no_words = 0.0      score when the reasoning has no countable unit (also: empty completion)
-- Returns {score = x, target = "zh" | "latin" | ..., units = n}.
local M = { name = "language", language = nil, no_words = 0.0 }

local L, H, K = { "latin" }, { "han" }, { "han", "kana" }
local LANGS = {
  zh = H, ja = K, ko = { "hangul" }, el = { "greek" }, hy = { "armenian" }, ka = { "georgian" },
  he = { "hebrew" }, yi = { "hebrew" }, th = { "thai" }, ta = { "tamil" }, bn = { "bengali" },
  as = { "bengali" },
  chinese = H, japanese = K, korean = { "hangul" }, greek = { "greek" }, hebrew = { "hebrew" },
  thai = { "thai" }, arabic = { "arabic" }, russian = { "cyrillic" }, hindi = { "devanagari" },
  english = L, french = L, german = L, spanish = L, italian = L, portuguese = L, dutch = L,
  cjk = { "han", "kana", "hangul" },
}
for _, c in ipairs({ "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "nb", "nn", "fi",
                     "is", "pl", "cs", "sk", "sl", "hr", "bs", "ro", "hu", "et", "lv", "lt", "sq",
                     "tr", "az", "uz", "vi", "id", "ms", "tl", "sw", "ca", "eu", "gl", "ga", "cy",
                     "af", "mt", "eo", "la" }) do
  LANGS[c] = L
end
for _, c in ipairs({ "ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "mn", "tg" }) do
  LANGS[c] = { "cyrillic" }
end
for _, c in ipairs({ "ar", "fa", "ur", "ps", "ug" }) do LANGS[c] = { "arabic" } end
for _, c in ipairs({ "hi", "mr", "ne", "sa" }) do LANGS[c] = { "devanagari" } end
for _, sc in ipairs({ "latin", "greek", "cyrillic", "armenian", "hebrew", "arabic", "devanagari",
                      "bengali", "tamil", "thai", "georgian", "hangul", "han", "kana", "other" }) do
  LANGS[sc] = { sc }
end

-- the scripts of a language spec (string or list of strings), or nil when unknown
local function scripts_of(spec)
  if type(spec) == "string" then
    local key = spec:lower()
    if not LANGS[key] then key = key:match("^(%a+)[-_]") or key end
    return LANGS[key]
  end
  if type(spec) == "table" and #spec > 0 then
    local out = {}
    for _, x in ipairs(spec) do
      local sc = scripts_of(x)
      if not sc then return nil end
      for _, v in ipairs(sc) do out[#out + 1] = v end
    end
    return out
  end
  return nil
end

local function name_of(spec)
  if type(spec) == "table" then return table.concat(spec, "+") end
  return spec
end

-- removes special tokens "<|...|>" and "<｜...｜>" (chat templates; up to 80 bytes long). Linear
-- time: a match attempt can only start at "<|" and its scan stops at the next "|" (or, for the
-- fullwidth form, at the next 0xEF byte, which starts "｜"), so the scans never overlap.
local function blank(token)
  if #token <= 80 then return " " end
end

local function strip_special(text)
  text = text:gsub("<|[^|]-|>", blank)
  return (text:gsub("<\239\189\156[^\239]-\239\189\156>", blank))
end

local function prompt_text(s)
  if type(s.messages) == "table" then
    for i = #s.messages, 1, -1 do
      local m = s.messages[i]
      if type(m) == "table" and m.role == "user" and type(m.content) == "string" then
        return m.content
      end
    end
  end
  if type(s.prompt) == "string" then return strip_special(s.prompt) end
  return nil
end

-- fixed order, so that ties go the same way every time
local ORDER = { "han", "latin", "cyrillic", "arabic", "devanagari", "hangul", "kana", "greek",
                "hebrew", "thai", "bengali", "tamil", "armenian", "georgian", "other" }

local function prompt_target(s)
  local text = prompt_text(s)
  if not text then return nil end
  local counts, total = v3.text.scripts(text)
  if total == 0 then return nil end
  local best, n = nil, 0
  for _, sc in ipairs(ORDER) do
    if (counts[sc] or 0) > n then best, n = sc, counts[sc] end
  end
  if (best == "han" or best == "kana") and counts.kana then return K, "han+kana" end
  return { best }, best
end

local function reasoning(text)
  local a, b = text:find("<think>", 1, true)
  if a then
    local c = text:find("</think>", b + 1, true)
    return c and text:sub(b + 1, c - 1) or text:sub(b + 1)
  end
  local c = text:find("</think>", 1, true)
  if c then return text:sub(1, c - 1) end
  return text
end

local function score(o, s)
  if type(o.no_words) ~= "number" or o.no_words ~= o.no_words then
    error("language: option no_words must be a number", 0)
  end
  local target, tname
  if o.language ~= nil then
    target = scripts_of(o.language)
    if not target then error("language: unknown language " .. tostring(name_of(o.language)), 0) end
    tname = name_of(o.language)
  elseif s.language ~= nil and scripts_of(s.language) then
    target, tname = scripts_of(s.language), name_of(s.language)
  else
    target, tname = prompt_target(s)
    if not target then return nil end
  end
  local text = s.completion
  if type(text) ~= "string" then text = "" end
  local counts, total = v3.text.scripts(reasoning(text))
  if total == 0 then return { score = o.no_words, target = tname, units = 0 } end
  local hit, seen = 0, {}
  for _, sc in ipairs(target) do
    if not seen[sc] then hit, seen[sc] = hit + (counts[sc] or 0), true end
  end
  return { score = hit / total, target = tname, units = total }
end

function M.new(opts)
  local m = {}
  for k, v in pairs(M) do m[k] = v end
  for k, v in pairs(opts or {}) do m[k] = v end
  m.score = function(s) return score(m, s) end
  if m.language ~= nil and not scripts_of(m.language) then
    error("language: unknown language " .. tostring(name_of(m.language)), 0)
  end
  return m
end

M.score = function(s) return score(M, s) end
return M
