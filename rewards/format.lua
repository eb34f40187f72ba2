-- format.lua — built-in reward: 1 when the completion has the reasoning format
--   <think>\n...\n</think>\n<answer>\n...\n</answer>
-- else 0. Same verdicts as open-r1's format_reward, which is
--   re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", text, re.DOTALL | re.MULTILINE)
-- (so, with MULTILINE, "</answer>" may be followed by a newline and more text).
-- Written with plain finds instead of a Lua pattern: two lazy `.-` on a long completion can
-- backtrack quadratically inside C, out of reach of the instruction budget.
local OPEN = "<think>\n"
local MID = "\n</think>\n<answer>\n"
local CLOSE = "\n</answer>"

local function has_format(text)
  if text:sub(1, #OPEN) ~= OPEN then return false end
  -- the earliest MID leaves the most room for the answer part, so it is the only one to try
  local p = text:find(MID, #OPEN + 1, true)
  if not p then return false end
  local from = p + #MID -- the answer part starts right after MID (it may be empty)
  while true do
    local q = text:find(CLOSE, from, true)
    if not q then return false end
    local after = q + #CLOSE
    if after > #text or text:sub(after, after) == "\n" then return true end
    from = q + 1
  end
end

return {
  name = "format",
  score = function(s)
    return has_format(s.completion or "") and 1.0 or 0.0
  end,
}
