#!/usr/bin/env bash
# test_reward.sh — `v3tune reward`: per-row JSONL with per-function scores, errors and the
# weighted combination; a hostile row (a pattern stuck in C) is killed and the fallback used while
# the following rows are scored right; bad rows are FILE:LINE: reason (exit 1); usage errors exit 2.
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
R="$V3_SOURCE_DIR/tests/rewards"

if ! "$V3TUNE" reward --help > /dev/null 2>&1; then
  echo "SKIP: the reward command is not registered in cli/main.c"
  exit 77
fi

cat > "$d/rows.jsonl" <<'ROWS'
{"prompt": "2+2?", "completion": "ok4", "answer": "4"}
{"completion": "pattern"}
{"completion": "ok7", "completion_ids": [5, 6], "finish_reason": "stop"}
not json
{"prompt": "no completion"}
{"completion": "skip"}
ROWS
"$V3TUNE" reward --script "$R/hostile.lua:0.5" --script "$R/fields.lua" --reward-dir "$R/lib" \
  --data "$d/rows.jsonl" --timeout-ms 200 --fallback -1 --jobs 2 > "$d/out" 2> "$d/err"
rc=$?
[ $rc -eq 1 ] || bad "exit $rc with bad rows (want 1): $(cat "$d/err")"
[ "$(wc -l < "$d/out")" -eq 4 ] || bad "want 4 output lines: $(cat "$d/out")"
line() { sed -n "$1p" "$d/out"; }
line 1 | grep -q '"line":1,"rewards":{"hostile":4.0,"fields":6.0}' || bad "row 1: $(line 1)"
line 1 | grep -q '"reward":14.0' || bad "row 1 combined (0.5*4+2*6): $(line 1)"
line 1 | grep -q '"answer":"4"' || bad "row 1 extra: $(line 1)"
line 2 | grep -q '"hostile":-1.0' || bad "row 2 fallback: $(line 2)"
line 2 | grep -q 'deadline of 200 ms exceeded (killed)' || bad "row 2 error: $(line 2)"
line 3 | grep -q '"hostile":7.0' || bad "row 3 after the kill: $(line 3)"
line 3 | grep -q '"first_id":5' || bad "row 3 ids: $(line 3)"
line 4 | grep -q '"rewards":{"hostile":null,"fields":null}' || bad "row 4 skip: $(line 4)"
line 4 | grep -q '"reward":0.0' || bad "row 4 all skipped -> 0: $(line 4)"
grep -q 'rows.jsonl:4: invalid JSON' "$d/err" || bad "no FILE:LINE for bad JSON: $(cat "$d/err")"
grep -q 'rows.jsonl:5: missing "completion"' "$d/err" || bad "no FILE:LINE for missing completion"
grep -q 'hostile .*errors 1' "$d/err" || bad "summary: $(cat "$d/err")"
grep -q 'samples/s' "$d/err" || bad "summary lacks speed"

# a script that does not load fails the command (exit 1) with the script's line
"$V3TUNE" reward --script "$R/syntax.lua" --data "$d/rows.jsonl" > /dev/null 2> "$d/err2"
[ $? -eq 1 ] || bad "syntax error: want exit 1"
grep -q 'syntax.lua:3:' "$d/err2" || bad "syntax message: $(cat "$d/err2")"

# usage errors
"$V3TUNE" reward --data "$d/rows.jsonl" > /dev/null 2>&1; [ $? -eq 2 ] || bad "no --script: want 2"
"$V3TUNE" reward --script "$R/hostile.lua" > /dev/null 2>&1; [ $? -eq 2 ] || bad "no --data: want 2"
"$V3TUNE" reward --script "$R/hostile.lua" --data x --jobs 0 > /dev/null 2>&1; [ $? -eq 2 ] || bad "--jobs 0: want 2"

[ $fail -eq 0 ] && echo "test_reward.sh: ok"
exit $((fail > 0))
