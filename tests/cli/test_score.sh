#!/usr/bin/env bash
# test_score.sh — `v3tune score` on golden model "b" (tests/golden/gen_model.py): the mean loss and
# the per-row losses equal Hugging Face transformers' (rows packed into one forward pass or not);
# bad rows are reported as FILE:LINE: reason; usage errors exit 2.
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
M="$V3_SOURCE_DIR/tests/golden/data/model_b"
exp_loss=$(awk '/^loss/{print $2}' "$M/score_expected.txt")

# |a-b| <= tol·|b|
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN{d=a-b; if(d<0)d=-d; m=b<0?-b:b; exit !(d<=t*m)}'; }

"$V3TUNE" score --model "$M" --data "$M/score.jsonl" > "$d/out" 2>"$d/err" || bad "score failed: $(cat "$d/err")"
loss=$(sed -n 's/.*loss \([0-9.]*\).*/\1/p' "$d/out")
ppl=$(sed -n 's/.*perplexity \([0-9.]*\).*/\1/p' "$d/out")
close "$loss" "$exp_loss" 1e-5 || bad "mean loss $loss, HF $exp_loss"
want_ppl=$(awk -v l="$exp_loss" 'BEGIN{printf "%.6f", exp(l)}')
close "$ppl" "$want_ppl" 1e-4 || bad "perplexity $ppl, want $want_ppl"
grep -q "scored tokens 12" "$d/out" || bad "expected 12 scored tokens: $(cat "$d/out")"

# --json: one line per row with HF's per-row loss; one row per forward pass gives the same
for bt in 4096 10; do
  "$V3TUNE" score --model "$M" --data "$M/score.jsonl" --json --threads 1 --batch-tokens $bt > "$d/j" 2>"$d/err" \
    || bad "score --json (batch $bt) failed: $(cat "$d/err")"
  [ "$(wc -l < "$d/j")" -eq 2 ] || bad "--json printed $(wc -l < "$d/j") lines"
  for i in 0 1; do
    got=$(sed -n "s/.*\"index\": $i, \"tokens\": [0-9]*, \"loss\": \([0-9.e+-]*\)}.*/\1/p" "$d/j")
    want=$(awk -v i=$i '$1=="row" && $2==i {print $3}' "$M/score_expected.txt")
    [ -n "$got" ] || bad "row $i missing from --json output: $(cat "$d/j")"
    [ -n "$got" ] && { close "$got" "$want" 1e-5 || bad "row $i loss $got, HF $want (batch $bt)"; }
  done
  grep -q '"index": 1, "tokens": 3,' "$d/j" || bad "row 1 should score 3 tokens (labels mask the rest): $(cat "$d/j")"
done

# bad rows: FILE:LINE: reason, skipped, exit 1; the good rows are still scored
{ cat "$M/score.jsonl"; echo '{"input_ids": [1, 2, 99999]}'; echo 'not json'; echo '{"labels": [1]}';
  echo '{"input_ids": [1, 2], "labels": [1]}'; } > "$d/bad.jsonl"
"$V3TUNE" score --model "$M" --data "$d/bad.jsonl" > "$d/out" 2>"$d/err"
[ $? -eq 1 ] || bad "bad rows should exit 1"
grep -q "bad.jsonl:3: input_ids\[2\]" "$d/err" || bad "no FILE:LINE for an out-of-vocabulary id: $(cat "$d/err")"
grep -q "bad.jsonl:4: invalid JSON" "$d/err" || bad "no FILE:LINE for invalid JSON: $(cat "$d/err")"
grep -q "bad.jsonl:5: missing \"input_ids\"" "$d/err" || bad "no FILE:LINE for a missing field"
grep -q "bad.jsonl:6: \"labels\" must be" "$d/err" || bad "no FILE:LINE for a label length mismatch"
loss=$(sed -n 's/.*loss \([0-9.]*\).*/\1/p' "$d/out")
close "$loss" "$exp_loss" 1e-5 || bad "good rows not scored with bad ones present: $loss"

# usage errors
"$V3TUNE" score --model "$M" > /dev/null 2>&1; [ $? -eq 2 ] || bad "missing --data should exit 2"
"$V3TUNE" score --model "$M" --data "$M/score.jsonl" --bogus > /dev/null 2>&1; [ $? -eq 2 ] || bad "unknown flag should exit 2"
"$V3TUNE" score --help | grep -q "input_ids" || bad "--help does not describe the row format"
"$V3TUNE" score --model "$d/nope" --data "$M/score.jsonl" > /dev/null 2>&1; [ $? -eq 1 ] || bad "missing model should exit 1"

[ $fail -eq 0 ] && echo "test_score: ok"
exit $fail
