-- sft_tiny.lua — a CPU-sized SFT run: the "tiny" preset (real DeepSeek-V3 vocabulary) on the first
-- GSM8K training conversations. Used by tests/cli/test_sft.sh and the README demo:
--   v3tune init --preset tiny --dtype f32 --no-mtp --out models/tiny
--   head -n 200 ../shared/data/gsm8k/train.jsonl > /tmp/gsm8k_head.jsonl
--   v3tune sft examples/sft_tiny.lua --set data.train=/tmp/gsm8k_head.jsonl
--   v3tune report runs/sft-tiny
-- Paths are relative to the directory v3tune runs in.
return {
  model = { dir = "models/tiny" },
  run = { dir = "runs/sft-tiny" },
  device = "cpu",
  data = {
    train = { "../shared/data/gsm8k/train.jsonl" },
    format = "prompt_completion",
    fields = { "prompt=question", "completion=answer" }, -- gsm8k rows are {question, answer}
    eval_fraction = 0.1,
    seq_len = 128,
    micro_batch_tokens = 128,
    grad_accum = 2,
  },
  train = { steps = 16, seed = 7, log_every = 4 },
  eval = { every = 8, batches = 1 },
  optim = { lr = 2e-2, weight_decay = 0.1, clip_grad_norm = 1.0 },
  sched = { kind = "cosine", warmup_steps = 2, min_lr = 2e-3 },
  moe = { router_bias_gamma = 1e-3, balance_alpha = 1e-4 },
  ckpt = { every = 8, keep = 2 },
}
