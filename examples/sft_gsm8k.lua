-- sft_gsm8k.lua — SFT on the GSM8K training set (7473 question/answer pairs rendered as
-- user/assistant conversations with the DeepSeek-V3 chat template; loss on the answers).
-- Prepared into token shards in run.dir/data on first use; 2% held out for val/loss.
--   v3tune sft examples/sft_gsm8k.lua --set model.dir=models/moonlight-16b-a3b
--   v3tune sft examples/sft_gsm8k.lua --resume        -- after an interruption
--   v3tune report runs/sft-gsm8k
-- The recipe follows model-spec §9: packed sequences with per-document masking, AdamW
-- (0.9, 0.95), cosine decay to 10% after a short warmup, clipping at 1.0.
local seq_len = 2048 -- GSM8K conversations are short (~200 tokens): many per sequence

return {
  model = { dir = "models/small" },
  run = { dir = "runs/sft-gsm8k" },
  data = {
    train = { "../shared/data/gsm8k/train.jsonl" },
    format = "prompt_completion",
    fields = { "prompt=question", "completion=answer" },
    eval_fraction = 0.02,
    seq_len = seq_len,
    micro_batch_tokens = 4 * seq_len,
    grad_accum = 4,
  },
  train = { epochs = 3, seed = 1234 },
  eval = { every = 50 },
  optim = { lr = 2e-5, betas = { 0.9, 0.95 }, weight_decay = 0.1, clip_grad_norm = 1.0 },
  sched = { kind = "cosine", warmup_steps = 20, min_lr = 2e-6 },
  moe = { router_bias_gamma = 1e-3, balance_alpha = 1e-4, mtp_lambda = 0 },
  ckpt = { every = 100, keep = 3, dtype = "f32" },
  guard = { max_bad_steps = 10, outlier_z = 0 },
}
