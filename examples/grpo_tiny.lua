-- grpo_tiny.lua — GRPO a tiny model can be seen to learn on 2 CPU cores in a few minutes (the
-- README demo, scripts/demo.sh; tests/cli/test_grpo.sh runs a smaller version).
--
-- The task (examples/grpo_tiny_data.sh), as raw text: "Uppercase the last: x q c" -> " C". The
-- SFT warm-up documents (examples/sft_tiny.lua on the generated sft.jsonl, format text) end the
-- answer with a period half of the time, so the warmed-up model often answers " C." or goes on;
-- GRPO then rewards the exact answer:
--   accuracy  1 when the completion is exactly the answer, else 0
--   format    1 when the completion is one capital letter and nothing else (weight 0.5)
-- evaluated on 200 held-out prompts (none of them in the training data), 4 samples each at the
-- sampling temperature: eval/accuracy and eval/reward in run.db; `v3tune report` charts them with
-- the reward curve of each function. What it shows on 2 cores (docs/grpo.md, "The CPU demo"):
-- the held-out reward rises from ~0.30 to ~0.53 in 40 steps, as the policy learns to stop after
-- the letter; learning the letter itself takes the tiny model far more steps than this demo has.
--
--   v3tune init --preset tiny --dtype f32 --no-mtp --out models/tiny
--   examples/grpo_tiny_data.sh out/grpo_tiny
--   v3tune sft examples/sft_tiny.lua --set model.dir=models/tiny --set run.dir=runs/tiny-sft \
--     --set data.train=out/grpo_tiny/sft.jsonl --set data.format=text --set data.fields= \
--     --set data.eval_fraction=0 --set data.micro_batch_tokens=256 --set data.grad_accum=1 \
--     --set train.steps=160 --set eval.every=0
--   v3tune grpo examples/grpo_tiny.lua --set model.dir=runs/tiny-sft/step-160
--   v3tune samples runs/grpo-tiny --order best --limit 5
--   v3tune report runs/grpo-tiny
-- Paths are relative to the directory v3tune runs in.
return {
  model = { dir = "runs/tiny-sft/step-160" },
  run = { dir = "runs/grpo-tiny" },
  device = "cpu",
  data = {
    prompts = { "out/grpo_tiny/train.jsonl" },
    eval = { "out/grpo_tiny/eval.jsonl" },
    chat = false,                 -- raw text, as the SFT warm-up documents
    seq_len = 24,                 -- prompts are 10 tokens (BOS included)
  },
  train = { steps = 40, seed = 7, threads = 2, micro_batch_tokens = 4096 },
  rollout = { group_size = 8, prompts_per_step = 16, max_new_tokens = 4, temperature = 1.0 },
  grpo = { loss_type = "dapo", eps_low = 0.2, eps_high = 0.28, beta = 0.0, mu = 1 },
  rewards = {
    { name = "accuracy", source = [[
return function(s)
  local got = (s.completion or ""):match("^%s*(.-)%s*$")
  return { score = got == s.answer and 1.0 or 0.0, got = got }
end]] },
    { name = "format", weight = 0.5, source = [[
return function(s)
  return (s.completion or ""):match("^%s*%u%s*$") and 1.0 or 0.0
end]] },
  },
  -- the policy's own accuracy at its sampling temperature: 4 samples of each held-out prompt
  eval = { every = 10, prompts = 200, samples = 4, temperature = 1.0 },
  -- Adam's first steps move every weight by ~lr whatever the gradient's size: a warmup keeps the
  -- noisy first policy gradients from wrecking what SFT taught; beta2 0.99 smooths the scale
  optim = { lr = 2e-3, betas = { 0.9, 0.99 }, weight_decay = 0.0, clip_grad_norm = 1.0 },
  sched = { kind = "constant", warmup_steps = 8 },
  moe = { router_bias_gamma = 1e-3, balance_alpha = 0 },
  ckpt = { every = 10, keep = 2 },
}
