#!/usr/bin/env bash
# grpo_tiny_data.sh — data of the CPU-sized GRPO task (examples/grpo_tiny.lua): capitalise the last
# of three random lower-case letters,
#     Uppercase the last: x q c   ->   " C"
# as raw text (no chat template), so that a tiny model can learn it from the last prompt token in
# minutes on 2 cores. Half of the SFT warm-up documents end the answer with a period (" C."), so
# a warmed-up model often adds one; the GRPO reward wants the exact answer. Writes into OUT_DIR
# (default out/grpo_tiny):
#   sft.jsonl    {text}             SFT warm-up documents: the prompt and its answer
#   train.jsonl  {prompt, answer}   GRPO prompts
#   eval.jsonl   {prompt, answer}   held-out prompts: none of them is in the other two files
# usage: examples/grpo_tiny_data.sh [OUT_DIR] [N_SFT] [N_TRAIN] [N_EVAL] [SEED]
# Deterministic in any awk: a Park-Miller generator, whose products stay below 2^53.
set -euo pipefail
out=${1:-out/grpo_tiny}
n_sft=${2:-2000}
n_train=${3:-4000}
n_eval=${4:-200}
seed=${5:-7}
mkdir -p "$out"
rm -f "$out/sft.jsonl" "$out/train.jsonl" "$out/eval.jsonl"
awk -v out="$out" -v n_sft="$n_sft" -v n_train="$n_train" -v n_eval="$n_eval" -v seed="$seed" '
function rnd(n) { state = (state * 16807) % 2147483647; return state % n }
function row(   i, k, c) {
  k = 3; prompt = "Uppercase the last:"
  for (i = 0; i < k; i++) { c = rnd(26); prompt = prompt " " substr(lower, c + 1, 1) }
  answer = substr(upper, c + 1, 1)
}
BEGIN {
  lower = "abcdefghijklmnopqrstuvwxyz"; upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  state = seed % 2147483646 + 1
  for (j = 0; j < 10; j++) rnd(10)
  # held-out prompts first, so that no train or SFT row repeats one of them
  while (ne < n_eval) { row(); if (prompt in held) continue; held[prompt] = 1; ne++
    printf "{\"prompt\": \"%s\", \"answer\": \"%s\"}\n", prompt, answer > (out "/eval.jsonl") }
  while (ns < n_sft) { row(); if (prompt in held) continue; ns++
    printf "{\"text\": \"%s %s%s\"}\n", prompt, answer, rnd(2) ? "." : "" > (out "/sft.jsonl") }
  while (nt < n_train) { row(); if (prompt in held) continue; nt++
    printf "{\"prompt\": \"%s\", \"answer\": \"%s\"}\n", prompt, answer > (out "/train.jsonl") }
}'
echo "grpo_tiny_data: $out/{sft,train,eval}.jsonl ($n_sft, $n_train, $n_eval rows)"
