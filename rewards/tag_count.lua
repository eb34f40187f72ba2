-- tag_count.lua — built-in reward: 0.25 for each of "<think>\n", "\n</think>\n", "\n<answer>\n"
-- and "\n</answer>" that occurs exactly once in the completion (open-r1's tag_count_reward, which
-- counts non-overlapping occurrences with str.count).
local TAGS = { "<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>" }

-- non-overlapping occurrences of plain string `needle` in `text`, as Python's str.count
local function count(text, needle)
  local n, from = 0, 1
  while true do
    local p = text:find(needle, from, true)
    if not p then return n end
    n = n + 1
    from = p + #needle
  end
end

return {
  name = "tag_count",
  score = function(s)
    local text = s.completion or ""
    local r = 0.0
    for _, tag in ipairs(TAGS) do
      if count(text, tag) == 1 then r = r + 0.25 end
    end
    return r
  end,
}
