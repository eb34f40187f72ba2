-- distill_r1.lua — distilling DeepSeek-R1 reasoning into an SFT set (docs/distill.md):
--   v3tune distill import ../shared/data/r1_math_traces/.../response.json --db runs/distill --config examples/distill_r1.lua
--   v3tune distill verify --db runs/distill --config examples/distill_r1.lua
--   v3tune distill filter --db runs/distill --config examples/distill_r1.lua
--   v3tune distill export --db runs/distill --config examples/distill_r1.lua --out runs/distill/sft.jsonl
--   v3tune data prepare --input runs/distill/sft.jsonl --template r1-keep-reasoning --out runs/distill/shards
-- New traces from a teacher (resumable; stored like imported ones, then verify/filter/export):
--   v3tune distill generate --db runs/distill --config examples/distill_r1.lua --prompts problems.jsonl
--   v3tune distill generate --db runs/distill --config examples/distill_r1.lua --model runs/teacher
-- Print every key with its default: v3tune config examples/distill_r1.lua --schema distill
return {
  import = {
    form = "auto",                -- detect each row's shape (messages, response, pair, text, solution)
    fields = {},                  -- e.g. { "text=deepseek-reasoner (question)", "reference=answer" }
    source_model = "deepseek-r1", -- for rows that do not name their model
  },
  verify = {
    scripts = {},                 -- empty: the built-in verifiers below
    builtin = { "math", "r1_format" },
    jobs = 2,
    timeout_ms = 2000,
  },
  filter = {
    correct = "math",             -- the verdict that decides correctness ("source": the data's own flag)
    min_score = 1.0,
    keep_unverified = false,      -- traces the verifier skipped (no reference answer) are dropped
    require_complete = true,      -- drop traces cut off inside the reasoning
    require_answer = true,        -- drop traces without reasoning or without a final answer
    min_tokens = 32,
    max_tokens = 16384,           -- tokens of the assistant turn, DeepSeek-V3 tokenizer
    language = "auto",            -- the reasoning stays in the prompt's script ...
    min_language_fraction = 0.95, -- ... for at least this share of its letters
    ngram = 8,
    max_repetition = 0.3,         -- drop looping traces (real R1 traces: mean 0.02)
    per_prompt = 1,               -- rejection sampling: one trace per prompt ...
    pick = "shortest",            -- ... the shortest correct one
  },
  export = {
    form = "r1",                  -- <system prompt, problem, R1 response>
    system_prompt = "Think step by step inside <think> and </think>, verify your reasoning, "
      .. "then give the final answer.",
    reasoning = "field",          -- reasoning_content, rendered by the r1-keep-reasoning template
  },
  generate = {
    url = "https://api.deepseek.com/v1", -- an OpenAI-compatible endpoint (--model DIR: a local teacher instead)
    model = "deepseek-reasoner",  -- the endpoint's model name; part of the resume key
    key_env = "DEEPSEEK_API_KEY", -- the API key is read from this environment variable
    n = 2,                        -- samples per prompt, for rejection sampling
    temperature = 0.6,            -- R1's recommended sampling
    top_p = 0.95,
    max_tokens = 16384,           -- reasoning included
    max_in_flight = 8,            -- requests at once
    timeout = 600,                -- seconds per attempt
    retries = 3,                  -- after 429, 5xx or a network error (Retry-After honoured)
    system_prompt = "",           -- R1 is best asked without one
  },
}
