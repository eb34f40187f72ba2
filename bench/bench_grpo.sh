#!/usr/bin/env bash
# bench_grpo.sh — one GRPO step on the CPU, v3tune against TRL's GRPOTrainer over the HF model
# (bench/grpo_trl.py, transformers generation, no vLLM), side by side in one run: the same model
# directory (v3tune init, f32, no MTP), the same GSM8K prompts under the DeepSeek-V3 chat template,
# G samples per prompt, prompts per step, max new tokens, temperature 1, dapo loss with eps 0.2 and
# beta 0, one AdamW step per generation batch with clipping, the same two rewards (Lua here, Python
# there), the same threads. Prints each side's step time split (generation / rewards / update) and
# completion tokens per second; the first step of each side is a warm-up and is not counted.
#   bench/bench_grpo.sh BUILD_DIR [PRESET=small] [PROMPTS=4] [G=4] [MAX_NEW=32] [STEPS=3] [THREADS=2]
# Needs the shared data (GSM8K, tokenizer), sqlite3, and python3 with torch, transformers, trl.
set -euo pipefail
build=$(cd "$1" && pwd); preset=${2:-small}; np=${3:-4}; g=${4:-4}; max_new=${5:-32}; steps=${6:-3}
threads=${7:-2}
here=$(cd "$(dirname "$0")" && pwd); src=$(cd "$here/.." && pwd)
data=${V3_SHARED_DATA:-$src/../shared/data}
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
head -n 200 "$data/gsm8k/train.jsonl" > "$t/gsm.jsonl"
"$build/v3tune" init --preset "$preset" --dtype f32 --no-mtp --out "$t/model" --tokenizer "$data/deepseek-v3" >/dev/null
cat > "$t/bench.lua" <<EOF
return {
  model = { dir = "$t/model" }, run = { dir = "$t/run" }, device = "cpu",
  data = { prompts = { "$t/gsm.jsonl" }, prompt_field = "question", seq_len = 512 },
  train = { steps = $((steps + 1)), seed = 1, threads = $threads, micro_batch_tokens = 8192, log_every = 1 },
  rollout = { group_size = $g, prompts_per_step = $np, max_new_tokens = $max_new, temperature = 1.0 },
  grpo = { loss_type = "dapo", eps_low = 0.2, eps_high = 0.2, beta = 0, mu = 1, mini_batches = 1 },
  rewards = {
    { name = "accuracy", source = [[
return function(s)
  local ref = tostring(s.answer or ""):match("####%s*(.-)%s*$") or ""
  return (s.completion or ""):match("^%s*(.-)%s*$") == ref and 1.0 or 0.0
end]] },
    { name = "format", source = [[return function(s) return (s.completion or ""):find("%d") and 1.0 or 0.0 end]] },
  },
  eval = { every = 0 },
  optim = { lr = 1e-6, betas = { 0.9, 0.95 }, weight_decay = 0.0, clip_grad_norm = 1.0 },
  sched = { kind = "constant", warmup_steps = 0 },
  moe = { router_bias_gamma = 0, balance_alpha = 0 },
  ckpt = { every = 0 },
}
EOF
echo "$(date -u '+%F %T UTC'), $(nproc) cores, preset $preset, $np prompts x $g samples, $max_new new tokens, $steps timed steps, $threads threads"
"$build/v3tune" grpo "$t/bench.lua" > "$t/grpo.log" 2>&1 || { cat "$t/grpo.log"; exit 1; }
db="$t/run/run.db"
m() { echo "(select value from metrics x where x.step = s.step and x.name = '$1')"; }
sqlite3 "$db" "select printf('v3tune step %d: %.2f s (generate %.2f s, reward %.3f s, update %.2f s), mean completion length %.1f',
  step, $(m time/step_s), $(m time/rollout_s), $(m time/reward_s), $(m time/train_s), $(m completions/mean_length))
  from steps s where step > 1 order by step"
sqlite3 "$db" "select printf('v3tune: %d steps, step %.2f s (generate %.2f, reward %.3f, update %.2f), %.1f completion tokens/s, logprob gap %g',
  count(*), avg($(m time/step_s)), avg($(m time/rollout_s)), avg($(m time/reward_s)), avg($(m time/train_s)),
  sum($(m completions/mean_length) * $np * $g) / sum($(m time/step_s)), max($(m logprob_gap/max))) from steps s where step > 1"
python3 "$here/grpo_trl.py" --model "$t/model" --data "$t/gsm.jsonl" --prompts "$np" --group "$g" \
  --max-new "$max_new" --steps "$steps" --threads "$threads" 2>"$t/trl.err" || { tail -30 "$t/trl.err"; exit 1; }
