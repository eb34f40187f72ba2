-- code.lua — the built-in code reward: runs the completion's code against the dataset row's tests
-- in the sandbox of v3.code.run (docs/rewards-code.md). Score = fraction of tests passed.
--
-- The program is the completion's last fenced block tagged python/py/python3 or untagged (an
-- unterminated last block counts: the completion may have been cut), else the whole completion.
-- The row's tests, by the first of these that is present:
--   tests       an array of snippets, usually assert statements (generic rows)
--   test_list   MBPP: assert statements; test_setup_code (full MBPP) or test_imports (sanitized
--               MBPP) run after the program, before the tests
--   test + entry_point
--               HumanEval: `test` defines check(candidate), split into one test per top-level
--               assert of check's body. The row's prompt goes in front of the program, as in
--               HumanEval's own harness: a body-only completion continues it; a whole function
--               redefines the prompt's stub and keeps its imports and helpers (chat models often
--               leave out `from typing import List`)
-- A row with none of these is skipped (nil).

local M = {
  name = "code",
  fallback = 0.0,
  -- per test (and for the program's top level), seconds; the whole run is cut to what is left of
  -- the call's deadline (--timeout-ms) by v3.code.run itself
  test_timeout = 1.0,
  memory_mb = 512,
}

local TAGS = { [""] = true, python = true, py = true, python3 = true }

-- The last suitable fenced block, or nil. Plain finds only: linear in the text.
local function last_block(text)
  local found
  local pos = 1
  while true do
    local s, e = text:find("```", pos, true)
    if not s then break end
    local eol = text:find("\n", e + 1, true)
    if not eol then break end
    local tag = text:sub(e + 1, math.min(eol - 1, e + 24)):match("^%s*([%w_+-]*)"):lower()
    local close = text:find("\n```", eol, true)
    local body = text:sub(eol + 1, close and close or #text)
    if TAGS[tag] then found = body end
    if not close then break end
    pos = close + 4
  end
  return found
end

-- HumanEval prompts are valid Python on their own (a function whose body is its docstring), so
-- the prompt always goes first: a body-only completion continues it, and a whole function
-- redefines the stub while the prompt's imports and helper functions stay defined.
local function humaneval_program(code, prompt)
  if type(prompt) ~= "string" then return code end
  return prompt .. (prompt:sub(-1) == "\n" and "" or "\n") .. code
end

local function strings(t)
  if type(t) ~= "table" then return nil end
  local out = {}
  for i = 1, #t do
    if type(t[i]) ~= "string" then return nil end
    out[i] = t[i]
  end
  return out
end

function M.score(s)
  local row = s.row or {}
  local text = s.completion or ""
  local code = last_block(text) or text
  local args = { code = code, test_timeout = M.test_timeout, memory_mb = M.memory_mb }
  local tests = strings(row.tests)
  if tests then
    args.tests = tests
  elseif strings(row.test_list) then
    args.tests = strings(row.test_list)
    local setup = row.test_setup_code
    if type(setup) ~= "string" or setup == "" then
      local imports = strings(row.test_imports)
      setup = imports and table.concat(imports, "\n") or nil
    end
    if setup ~= "" then args.setup = setup end
  elseif type(row.test) == "string" and type(row.entry_point) == "string" then
    args.check = row.test
    args.entry_point = row.entry_point
    args.code = humaneval_program(code, row.prompt)
  else
    return nil
  end
  if #(args.tests or {}) == 0 and not args.check then return nil end
  local r = v3.code.run(args)
  if r.total == 0 then return nil end
  return { score = r.passed / r.total, passed = r.passed, total = r.total, error = r.error }
end

return M
