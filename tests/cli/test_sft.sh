#!/usr/bin/env bash
# test_sft.sh — `v3tune sft` and `v3tune report` as a user runs them: a tiny model from
# `v3tune init`, examples/sft_tiny.lua on real GSM8K rows; the loss falls, eval runs, run.db holds
# the metrics, checkpoints are complete, --resume without a checkpoint to continue works, and the
# report writes non-empty PNGs and an HTML page. Skips (77) without the shared data, or while the
# sft/report commands are not registered in cli/main.c.
set -u
: "${V3TUNE:?}" "${V3_SOURCE_DIR:?}" "${V3_SHARED_DATA:?}"
gsm="$V3_SHARED_DATA/gsm8k/train.jsonl"
[ -f "$gsm" ] && [ -f "$V3_SHARED_DATA/deepseek-v3/tokenizer.json" ] || { echo "skip: no shared data"; exit 77; }
"$V3TUNE" sft --help >/dev/null 2>&1 && "$V3TUNE" report --help >/dev/null 2>&1 ||
  { echo "skip: sft/report not registered in this binary"; exit 77; }
command -v sqlite3 >/dev/null && command -v gnuplot >/dev/null || { echo "skip: needs sqlite3 and gnuplot"; exit 77; }
fail=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
no() { echo "FAIL: $*"; fail=$((fail+1)); }

"$V3TUNE" init --preset tiny --dtype f32 --no-mtp --out "$t/model" --tokenizer "$V3_SHARED_DATA/deepseek-v3" >"$t/init.log" 2>&1 ||
  { no "init"; cat "$t/init.log"; exit 1; }
head -n 120 "$gsm" >"$t/gsm.jsonl"
cfg="$V3_SOURCE_DIR/examples/sft_tiny.lua"
sets=(--set "model.dir=$t/model" --set "run.dir=$t/run" --set "data.train=$t/gsm.jsonl" --set train.steps=12
      --set eval.every=6 --set ckpt.every=6 --set train.threads=2)

"$V3TUNE" sft "$cfg" "${sets[@]}" >"$t/sft.log" 2>&1 || { no "sft exit $?"; tail -20 "$t/sft.log"; }
grep -q "^step 12/12 loss" "$t/sft.log" || no "no plain progress line for step 12"
grep -q "eval step 12: val/loss" "$t/sft.log" || no "no eval line"
db="$t/run/run.db"
n=$(sqlite3 "$db" "select count(*) from steps")
[ "$n" = 12 ] || no "steps in run.db: $n"
drop=$(sqlite3 "$db" "select (select avg(loss) from steps where step<=3) - (select avg(loss) from steps where step>=10)")
awk -v d="$drop" 'BEGIN{exit !(d >= 1.0)}' || no "loss fell by only $drop nats (want >= 1.0)"
echo "loss drop over 12 steps: $drop nats"
[ "$(sqlite3 "$db" "select count(*) from evals where name='val/loss'")" = 2 ] || no "evals"
[ "$(sqlite3 "$db" "select count(*) from checkpoints")" = 2 ] || no "checkpoint rows"
[ "$(sqlite3 "$db" "select count(distinct layer) from expert_load")" = 2 ] || no "expert load"
for f in model.safetensors config.json tokenizer.json optim.bin trainer_state.json; do
  [ -s "$t/run/step-12/$f" ] || no "step-12/$f missing"
done
grep -q '"version": 1' "$t/run/step-12/trainer_state.json" || no "trainer_state version"
# the checkpoint is a model directory v3tune itself loads
"$V3TUNE" inspect "$t/run/step-12" >/dev/null 2>&1 || no "inspect step-12"

# a second start without --resume refuses; with --resume at the end it has nothing left to do
"$V3TUNE" sft "$cfg" "${sets[@]}" >"$t/again.log" 2>&1 && no "restart without --resume accepted"
grep -q -- "--resume" "$t/again.log" || no "refusal does not mention --resume"
"$V3TUNE" sft "$cfg" "${sets[@]}" --set train.steps=14 --resume >"$t/resume.log" 2>&1 || { no "resume"; tail "$t/resume.log"; }
[ "$(sqlite3 "$db" "select max(step) from steps")" = 14 ] || no "resumed run did not reach step 14"
grep -q "resuming from .*step-12" "$t/resume.log" || no "resume message"

"$V3TUNE" report "$t/run" >"$t/report.log" 2>&1 || { no "report"; cat "$t/report.log"; }
for f in index.html loss.png lr.png grad_norm.png tokens_per_s.png expert_load_L1.png expert_load_L2.png; do
  [ -s "$t/run/report/$f" ] || no "report/$f missing or empty"
done
grep -q "loss.png" "$t/run/report/index.html" && grep -q "seq_len" "$t/run/report/index.html" || no "index.html content"

# usage errors
"$V3TUNE" sft >/dev/null 2>&1; [ $? = 2 ] || no "sft without config: not a usage error"
"$V3TUNE" sft "$cfg" --set bogus.key=1 >/dev/null 2>&1; [ $? = 2 ] || no "unknown --set key: not a usage error"
[ $fail = 0 ] && echo "test_sft.sh: ok" || echo "test_sft.sh: $fail failed"
exit $((fail > 0))
