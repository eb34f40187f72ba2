-- config_example.lua — a supervised fine-tuning run, to show the config format.
-- A config is Lua that returns a table; `v3tune config examples/config_example.lua` prints it
-- resolved (defaults filled, --set applied). Keys not written here take their defaults.
local seq_len = 4096

return {
  model = { dir = "models/moonlight-16b-a3b" },
  run = { dir = "runs/sft-example", meta = { owner = "example", purpose = "demo" } },
  data = {
    train = { "data/chat-train.jsonl.zst" },
    eval = { "data/chat-eval.jsonl" },
    seq_len = seq_len,
    micro_batch_tokens = 4 * seq_len, -- plain Lua arithmetic is fine
    grad_accum = 8,
  },
  train = { epochs = 2, seed = 42 },
  optim = { lr = 2e-5, betas = { 0.9, 0.95 }, weight_decay = 0.1 },
  sched = { kind = "cosine", warmup_steps = 50, min_lr = 2e-6 },
  ckpt = { every = 500, keep = 2 },
}
