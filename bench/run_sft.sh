#!/usr/bin/env bash
# run_sft.sh — SFT tokens/s, v3tune against a plain PyTorch training loop over the HF model
# (bench/sft_torch.py), side by side in one run: same model (v3tune init, f32, no MTP), same
# sequence length, micro-batch, gradient accumulation, AdamW settings and clipping, same threads.
#   bench/run_sft.sh BUILD_DIR [PRESET=tiny] [SEQ=128] [STEPS=8] [THREADS=2]
# Needs the shared data (GSM8K, tokenizer) and python3 with torch, transformers, tokenizers.
set -euo pipefail
build=$(cd "$1" && pwd); preset=${2:-tiny}; seq=${3:-128}; steps=${4:-8}; threads=${5:-2}
here=$(cd "$(dirname "$0")" && pwd); src=$(cd "$here/.." && pwd)
data=${V3_SHARED_DATA:-$src/../shared/data}
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
head -n 400 "$data/gsm8k/train.jsonl" > "$t/gsm.jsonl"
"$build/v3tune" init --preset "$preset" --dtype f32 --no-mtp --out "$t/model" --tokenizer "$data/deepseek-v3" >/dev/null
echo "$(date -u '+%F %T UTC'), $(nproc) cores, preset $preset, seq $seq, micro-batch 1 x $seq, grad_accum 2, $steps timed steps, $threads threads"
# v3tune: one extra (first) step is the warm-up, as for torch; no eval, checkpoint only at the end
"$build/v3tune" sft "$src/examples/sft_tiny.lua" --set "model.dir=$t/model" --set "run.dir=$t/run" \
  --set "data.train=$t/gsm.jsonl" --set "train.steps=$((steps + 1))" --set "data.seq_len=$seq" \
  --set "data.micro_batch_tokens=$seq" --set data.grad_accum=2 --set eval.every=0 \
  --set "ckpt.every=0" --set "train.threads=$threads" --set train.log_every=1000 > "$t/sft.log" 2>&1 ||
  { cat "$t/sft.log"; exit 1; }
sqlite3 "$t/run/run.db" "select printf('v3tune: %d steps, %d tokens, %.3f s, %.1f tokens/s',
  count(*), count(*) * 2 * $seq, sum(step_time_s), count(*) * 2 * $seq / sum(step_time_s)) from steps where step > 1"
python3 "$here/sft_torch.py" --model "$t/model" --data "$t/gsm.jsonl" --seq "$seq" --accum 2 \
  --steps "$steps" --threads "$threads" 2>/dev/null
