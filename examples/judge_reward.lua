-- judge_reward.lua — an LLM-as-judge reward: an OpenAI-compatible server grades each completion
-- against the question (and the reference answer, when the row has one) on a 0..10 scale; the
-- reward is that grade / 10. See docs/rewards-judge.md.
--
--   JUDGE_API_KEY=... v3tune reward --script examples/judge_reward.lua --data samples.jsonl \
--       [--judge-url http://127.0.0.1:8000/v1] [--judge-model NAME]
--
-- The host runs request() for every sample in its sandboxed workers, sends all requests at once
-- (at most max_in_flight on the wire), then runs parse() on each reply. A request that still fails
-- after its retries, or a reply parse() rejects, scores the fallback and records the error.

local SYSTEM = [[You are a strict grader. You are given a question, possibly a reference answer,
and an answer to grade. Judge whether the answer is correct and whether its reasoning holds.
Reply with at most three sentences of justification, then a last line of exactly this form:
SCORE: N
where N is an integer from 0 (wrong) to 10 (correct and well argued).]]

local MAX_ANSWER = 8000 -- bytes of the completion shown to the judge

-- The question as text, from whichever form the sample has: prompt text, or the last user
-- message of a chat prompt (which may also arrive as the row's `prompt` list).
local function question(s)
  if type(s.prompt) == "string" then return s.prompt end
  local msgs = s.messages or (type(s.prompt) == "table" and s.prompt) or {}
  for i = #msgs, 1, -1 do
    if msgs[i].role == "user" and type(msgs[i].content) == "string" then return msgs[i].content end
  end
  return type(s.question) == "string" and s.question or ""
end

return {
  name = "judge",
  fallback = 0.0,
  judge = {
    url = "http://127.0.0.1:8000/v1", -- any OpenAI-compatible server (vLLM, llama.cpp, SGLang, ...)
    model = "judge",                  -- the served model's name
    key_env = "JUDGE_API_KEY",        -- the key is read from this variable by the host, never here
    max_in_flight = 16,
    timeout = 60,                     -- seconds per attempt
    retries = 3,                      -- on network errors, 408, 429 and 5xx
  },

  request = function(s)
    if s.completion == "" then return nil end -- nothing to grade: skip, no request
    local answer = s.completion
    if #answer > MAX_ANSWER then answer = answer:sub(1, MAX_ANSWER) .. "\n[...]" end
    local user = "Question:\n" .. question(s) .. "\n\n"
    if s.answer ~= nil then user = user .. "Reference answer:\n" .. tostring(s.answer) .. "\n\n" end
    user = user .. "Answer to grade:\n" .. answer
    return {
      messages = {
        { role = "system", content = SYSTEM },
        { role = "user", content = user },
      },
      temperature = 0,
      max_tokens = 512,
    }
  end,

  parse = function(s, reply)
    local last
    for n in reply.content:gmatch("SCORE:%s*(%d+)") do last = n end
    if not last then
      error("the judge's reply has no SCORE line: " .. reply.content:sub(1, 120))
    end
    local n = math.min(tonumber(last), 10)
    return { score = n / 10, grade = n, attempts = reply.attempts }
  end,
}
