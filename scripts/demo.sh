#!/usr/bin/env bash
# demo.sh — install, build, and show v3tune on a CPU-sized model: initialise a tiny DeepSeek-V3-
# shaped model with the real tokenizer, inspect it, fine-tune it briefly on GSM8K conversations,
# and draw the run's report. (GRPO joins this demo when it lands.)
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
$v3 runs "$out"
