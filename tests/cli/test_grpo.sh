#!/usr/bin/env bash
# test_grpo.sh — `v3tune grpo` as a user runs it, the README demo made small: a tiny model from
# `v3tune init` (real DeepSeek-V3 tokenizer), the task of examples/grpo_tiny_data.sh, a short SFT
# warm-up (examples/sft_tiny.lua), then GRPO with examples/grpo_tiny.lua. Asserts that the
# held-out reward rises from the SFT-warmed start, that the sampler/trainer logprob gap is exactly
# 0, that run.db holds samples, rewards per function and metrics, that `samples` shows the best and
# worst completions and `report` draws the GRPO charts, that --resume continues, and usage errors.
# Skips (77) without the shared data or sqlite3/gnuplot.
set -u
# passive OpenMP waiting: on a shared, oversubscribed machine spinning threads cost more than they save
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
: "${V3TUNE:?}" "${V3_SOURCE_DIR:?}" "${V3_SHARED_DATA:?}"
[ -f "$V3_SHARED_DATA/deepseek-v3/tokenizer.json" ] || { echo "skip: no shared data"; exit 77; }
command -v sqlite3 >/dev/null && command -v gnuplot >/dev/null || { echo "skip: needs sqlite3 and gnuplot"; exit 77; }
fail=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
no() { echo "FAIL: $*"; fail=$((fail+1)); }
ex="$V3_SOURCE_DIR/examples"

"$V3TUNE" init --preset tiny --dtype f32 --no-mtp --out "$t/model" --seed 1 --tokenizer "$V3_SHARED_DATA/deepseek-v3" \
  >"$t/init.log" 2>&1 || { no "init"; cat "$t/init.log"; exit 1; }
bash "$ex/grpo_tiny_data.sh" "$t/data" 1200 1000 64 >/dev/null || { no "data generator"; exit 1; }

# SFT warm-up: the model learns the form (one capital letter, then EOS) only partly
"$V3TUNE" sft "$ex/sft_tiny.lua" --set "model.dir=$t/model" --set "run.dir=$t/sft" \
  --set "data.train=$t/data/sft.jsonl" --set data.format=text --set data.fields= --set data.eval_fraction=0 \
  --set data.micro_batch_tokens=256 --set data.grad_accum=1 --set train.steps=40 --set eval.every=0 \
  --set ckpt.every=0 --set train.threads=2 >"$t/sft.log" 2>&1 || { no "sft warm-up"; tail -5 "$t/sft.log"; exit 1; }

sets=(--set "model.dir=$t/sft/step-40" --set "run.dir=$t/run" --set "data.prompts=$t/data/train.jsonl"
      --set "data.eval=$t/data/eval.jsonl" --set train.steps=12 --set rollout.prompts_per_step=8
      --set eval.every=12 --set eval.prompts=64 --set eval.samples=2 --set ckpt.every=4 --set sched.warmup_steps=2)
"$V3TUNE" grpo "$ex/grpo_tiny.lua" "${sets[@]}" >"$t/grpo.log" 2>&1 || { no "grpo exit $?"; tail -20 "$t/grpo.log"; }
grep -q "^step 12/12 reward" "$t/grpo.log" || no "no progress line for step 12"
db="$t/run/run.db"
q() { sqlite3 "$db" "$1"; }
start=$(q "select value from evals where name = 'eval/reward' and step = 0")
end=$(q "select value from evals where name = 'eval/reward' and step = 12")
echo "held-out reward: step 0 $start -> step 12 $end (accuracy $(q "select group_concat(round(value, 3), ' -> ') from evals where name = 'eval/accuracy'"))"
awk -v a="$start" -v b="$end" 'BEGIN{exit !(b - a >= 0.1)}' || no "held-out reward rose by less than 0.1 ($start -> $end)"
[ "$(q "select count(*) from steps")" = 12 ] || no "steps in run.db"
[ "$(q "select max(value) from metrics where name = 'logprob_gap/max'")" = 0.0 ] || no "logprob gap is not 0"
[ "$(q "select count(*) from samples")" = $((12 * 8 * 8)) ] || no "samples: $(q "select count(*) from samples")"
[ "$(q "select count(distinct name) from rewards")" = 2 ] || no "rewards per function"
for m in rewards/accuracy/mean rewards/format/mean accuracy entropy completions/mean_length clip_ratio/low_mean \
         time/rollout_s time/reward_s time/train_s tokens_per_s frac_reward_zero_std; do
  [ "$(q "select count(*) from metrics where name = '$m'")" = 12 ] || no "metric $m"
done
[ -s "$t/run/step-12/model.safetensors" ] && [ -s "$t/run/step-12/grpo_state.json" ] || no "checkpoint step-12"

"$V3TUNE" samples "$t/run" --order best --limit 2 >"$t/best.txt" 2>&1 || no "samples --order best"
"$V3TUNE" samples "$t/run" --order worst --limit 2 >"$t/worst.txt" 2>&1 || no "samples --order worst"
grep -q "accuracy" "$t/best.txt" && grep -q "Uppercase the last" "$t/worst.txt" || no "samples output"

"$V3TUNE" report "$t/run" >"$t/report.log" 2>&1 || { no "report"; cat "$t/report.log"; }
for f in index.html loss.png rewards.png accuracy.png entropy.png length.png logprob_gap.png time.png; do
  [ -s "$t/run/report/$f" ] || no "report/$f missing or empty"
done
grep -q "rewards.png" "$t/run/report/index.html" || no "index.html has no GRPO charts"

# a second start without --resume refuses; --resume with more steps continues from step-12
"$V3TUNE" grpo "$ex/grpo_tiny.lua" "${sets[@]}" >"$t/again.log" 2>&1 && no "restart without --resume accepted"
grep -q -- "--resume" "$t/again.log" || no "refusal does not mention --resume"
"$V3TUNE" grpo "$ex/grpo_tiny.lua" "${sets[@]}" --set train.steps=13 --set eval.every=0 --resume >"$t/resume.log" 2>&1 ||
  { no "resume"; tail "$t/resume.log"; }
grep -q "resuming from .*step-12" "$t/resume.log" && [ "$(q "select max(step) from steps")" = 13 ] || no "resume to step 13"

# usage errors and a bad config value
"$V3TUNE" grpo >/dev/null 2>&1; [ $? = 2 ] || no "grpo without config: not a usage error"
"$V3TUNE" grpo "$ex/grpo_tiny.lua" --set bogus.key=1 >/dev/null 2>&1; [ $? = 2 ] || no "unknown --set key: not a usage error"
"$V3TUNE" grpo "$ex/grpo_tiny.lua" "${sets[@]}" --set "run.dir=$t/r2" --set rollout.temperature=0 >"$t/t0.log" 2>&1
grep -q "rollout.temperature" "$t/t0.log" || no "temperature 0 not refused by name"
[ $fail = 0 ] && echo "test_grpo.sh: ok" || echo "test_grpo.sh: $fail failed"
exit $((fail > 0))
