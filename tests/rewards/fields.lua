-- fields.lua — test reward that echoes the sample table's fields as extra fields, and uses a
-- module from the reward directory through `require`.
local helper = require("helper")
return {
  name = "fields",
  weight = 2,
  fallback = -1,
  score = function(s)
    if s.completion == "skip" then return nil end
    return {
      score = helper.double(#s.completion),
      prompt = s.prompt,
      answer = s.answer,
      row_answer = s.row and s.row.answer,
      first_id = s.completion_ids and s.completion_ids[1],
      n_ids = s.completion_ids and #s.completion_ids,
      finish = s.finish_reason,
      group = s.group,
      index = s.index,
      role = s.messages and s.messages[1].role,
      absent = s.missing == nil,
    }
  end,
}
