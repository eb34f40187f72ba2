#!/usr/bin/env bash
# demo.sh — install, build, and show v3tune on a CPU-sized model: initialise a tiny DeepSeek-V3-
# shaped model with the real tokenizer, inspect it, fine-tune it briefly on GSM8K conversations,
# and draw the run's report; then the GRPO demo (examples/grpo_tiny.lua): a short SFT warm-up on
# a generated task, GRPO with Lua rewards on it, the best and worst samples, and the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data=${V3_SHARED_DATA:-../shared/data}
out=${V3_DEMO_DIR:-out/demo}
mkdir -p "$out"
v3=./build/v3tune

echo "== v3tune init --preset tiny"
$v3 init --preset tiny --dtype f32 --no-mtp --out "$out/model" --seed 1 --force \
  --tokenizer "$data/deepseek-v3"
echo
echo "== v3tune inspect"
$v3 inspect "$out/model"
echo
echo "== v3tune sft (24 steps on the first 200 GSM8K training conversations)"
head -n 200 "$data/gsm8k/train.jsonl" > "$out/gsm8k_head.jsonl"
rm -rf "$out/run"
$v3 sft examples/sft_tiny.lua --set "model.dir=$out/model" --set "run.dir=$out/run" \
  --set "data.train=$out/gsm8k_head.jsonl" --set train.steps=24 --set eval.every=8 --set ckpt.every=12
echo
echo "== v3tune report"
$v3 report "$out/run"

# ---- GRPO: "Uppercase the last: x q c" -> " C" (examples/grpo_tiny_data.sh) ----
echo
echo "== GRPO task data (examples/grpo_tiny_data.sh)"
bash examples/grpo_tiny_data.sh "$out/grpo_data"
echo
echo "== v3tune sft: warm-up on the task (160 steps)"
rm -rf "$out/grpo_sft" "$out/grpo"
$v3 sft examples/sft_tiny.lua --set "model.dir=$out/model" --set "run.dir=$out/grpo_sft" \
  --set "data.train=$out/grpo_data/sft.jsonl" --set data.format=text --set data.fields= \
  --set data.eval_fraction=0 --set data.micro_batch_tokens=256 --set data.grad_accum=1 \
  --set train.steps=160 --set eval.every=0 --set ckpt.every=0 --set train.log_every=20
echo
echo "== v3tune grpo examples/grpo_tiny.lua (40 steps; held-out accuracy every 10)"
$v3 grpo examples/grpo_tiny.lua --set "model.dir=$out/grpo_sft/step-160" --set "run.dir=$out/grpo" \
  --set "data.prompts=$out/grpo_data/train.jsonl" --set "data.eval=$out/grpo_data/eval.jsonl"
echo
echo "== v3tune samples: best and worst of the last step"
last=$(sqlite3 "$out/grpo/run.db" "select max(step) from samples" 2>/dev/null || echo 40)
$v3 samples "$out/grpo" --step "$last" --order best --limit 3
$v3 samples "$out/grpo" --step "$last" --order worst --limit 3
echo
echo "== v3tune report (GRPO)"
$v3 report "$out/grpo"
$v3 runs "$out"
