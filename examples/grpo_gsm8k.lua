-- grpo_gsm8k.lua — GRPO on GSM8K (7473 grade-school math problems) with the built-in math and
-- format rewards: the recipe a GPU user would run (DeepSeek-R1-Zero style, as TRL/open-r1 set it
-- up), on a model that was SFT'd first or is already an instruct model.
--
--   v3tune grpo examples/grpo_gsm8k.lua --set model.dir=models/moonlight-16b-a3b
--   v3tune grpo examples/grpo_gsm8k.lua --resume       -- after an interruption (Ctrl-C checkpoints)
--   v3tune samples runs/grpo-gsm8k --order best --limit 5
--   v3tune report runs/grpo-gsm8k
--
-- The prompt is the question under a system prompt asking for <think>...</think><answer>...
-- </answer>; `math` scores the answer against the row's `answer` (GSM8K's solution: the number
-- after ####), `format` the tags (rewards/format.lua, open-r1's format reward). 16 questions x 8
-- samples per step, 1 update per generation batch (TRL's defaults: dapo loss, eps 0.2/0.28 as
-- DAPO, beta 0: no reference model), dynamic sampling drops questions the policy always or never
-- solves. 200 held-out questions from the GSM8K test split are evaluated greedily every 25 steps.
-- On one H100 a 16B-A3B model needs ~70 GiB for weights, gradients and AdamW state in fp32 master
-- weights; add grpo.beta > 0 only with room for the reference model (inference only).
return {
  model = { dir = "models/small" },
  run = { dir = "runs/grpo-gsm8k" },
  data = {
    prompts = { "../shared/data/gsm8k/train.jsonl" },
    eval = { "../shared/data/gsm8k/test.jsonl" },
    prompt_field = "question",    -- GSM8K rows are {question, answer}
    chat = true,
    template = "v3",
    system_prompt = "A conversation between User and Assistant. The user asks a question, and the "
      .. "Assistant solves it. The assistant first thinks about the reasoning process in the mind and "
      .. "then provides the user with the answer. The reasoning process and answer are enclosed within "
      .. "<think> </think> and <answer> </answer> tags, respectively, i.e., <think>\nreasoning process "
      .. "here\n</think>\n<answer>\nanswer here\n</answer>",
    seq_len = 1536,               -- GSM8K prompts are < 300 tokens with the system prompt
  },
  train = { steps = 500, seed = 1234, micro_batch_tokens = 16384 },
  rollout = {
    group_size = 8,
    prompts_per_step = 16,
    max_new_tokens = 1024,
    temperature = 1.0,
    dynamic_sampling = true,
    dynamic_max_rounds = 2,
    max_live_tokens = 262144,
    max_seqs = 128,
  },
  grpo = {
    loss_type = "dapo",
    eps_low = 0.2,
    eps_high = 0.28,
    beta = 0.0,
    mu = 1,
    mini_batches = 1,
    scale_rewards = "group",
    mask_truncated = true,        -- DAPO: a cut-off answer teaches nothing about correctness
  },
  rewards = {
    { builtin = "math", weight = 1.0 },
    { builtin = "format", weight = 0.2 },
  },
  reward = { workers = 4, timeout_ms = 2000 },
  eval = { every = 25, prompts = 200, samples = 1, temperature = 0 },
  optim = { lr = 1e-6, betas = { 0.9, 0.99 }, weight_decay = 0.0, clip_grad_norm = 1.0 },
  sched = { kind = "constant", warmup_steps = 10 },
  moe = { router_bias_gamma = 1e-3, balance_alpha = 0, mtp_lambda = 0 },
  ckpt = { every = 50, keep = 3, dtype = "f32" },
}
