#!/usr/bin/env bash
# test_code_reward.sh — the built-in code reward (rewards/code.lua, v3.code.run) through
# `v3tune reward`: HumanEval rows (body-only completion with the prompt put in front, a fenced
# whole function after prose, a chat-style function without the prompt's typing import, one that
# calls a helper only the prompt defines, a broken one), MBPP rows (full with fenced reference code, sanitized with test_imports), generic `tests`
# with partial credit, a row without tests (skipped), and code that hangs in Python or in C: with
# --timeout-ms 800 the sandbox run is cut to fit the call's deadline, so those rows score 0 with
# the sandbox's message instead of the worker being killed. Needs python3 (exit 77 without).
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }

py=""
for p in /usr/local/bin/python3 /usr/bin/python3 /bin/python3; do [ -x "$p" ] && py=$p && break; done
if [ -z "$py" ]; then echo "SKIP: python3 is not installed (scripts/setup.sh installs it)"; exit 77; fi
if ! "$V3TUNE" reward --help > /dev/null 2>&1; then echo "SKIP: no reward command"; exit 77; fi

"$py" - "$V3_SHARED_DATA" > "$d/rows.jsonl" <<'PY'
import json, sys
data = sys.argv[1]
he = [json.loads(l) for l in open(data + '/humaneval/HumanEval.jsonl')]
mb = [json.loads(l) for l in open(data + '/mbpp/mbpp.jsonl')]
san = json.load(open(data + '/mbpp/sanitized-mbpp.json'))
out = []
def row(base, completion):
    r = dict(base); r['completion'] = completion; out.append(r)
h0, h2 = he[0], he[2]
row(h0, h0['canonical_solution'])                                                        # 1: body only
row(h2, 'Sure:\n\n```python\n' + h2['prompt'] + h2['canonical_solution'] + '```\nDone.')  # 2: fenced
no_import = h0['prompt'].replace('from typing import List\n', '')
row(h0, '```py\n' + no_import + h0['canonical_solution'] + '```')                       # 3: no import
row(h0, h0['canonical_solution'].replace('return True', 'return False'))                 # 4: broken
row(mb[10], '```python\n' + mb[10]['code'] + '\n```')                                     # 5: mbpp
s = next(r for r in san if r['test_imports'])
row(s, '```python\n' + s['code'] + '\n```')                                               # 6: sanitized
row({'tests': ['assert f(1) == 2', 'assert f(2) == 4']}, 'def f(x):\n    return x + 1\n')  # 7: 1/2
row({'answer': '4'}, 'no tests here')                                                     # 8: skip
row({'tests': ['assert True']}, '```python\nwhile True:\n    pass\n```')                  # 9: loop
row({'tests': ['assert True']}, '```python\nsum(range(10**12))\n```')                     # 10: C loop
h10 = he[10]  # the prompt defines the helper is_palindrome; the answer only make_palindrome
row(h10, 'Use the helper:\n```python\ndef make_palindrome(string: str) -> str:\n'
    + h10['canonical_solution'] + '```')                                                  # 11: helper
for r in out: print(json.dumps(r))
PY

"$V3TUNE" reward --script "$V3_SOURCE_DIR/rewards/code.lua" --data "$d/rows.jsonl" --jobs 2 \
  --timeout-ms 800 > "$d/out" 2> "$d/err"
rc=$?
[ $rc -eq 0 ] || bad "exit $rc: $(cat "$d/err")"
line() { sed -n "$1p" "$d/out"; }
[ "$(wc -l < "$d/out")" -eq 11 ] || bad "want 11 lines: $(cat "$d/out") $(cat "$d/err")"
for i in 1 2 3 5 6 11; do
  line $i | grep -q '"rewards":{"code":1.0}' || bad "row $i should pass: $(line $i)"
done
line 4 | grep -q '"passed":3,"total":7' || bad "row 4 partial credit: $(line 4)"
line 7 | grep -q '"rewards":{"code":0.5}' || bad "row 7: $(line 7)"
line 8 | grep -q '"rewards":{"code":null}' || bad "row 8 skip: $(line 8)"
line 9 | grep -q '"rewards":{"code":0.0}' || bad "row 9 loop: $(line 9)"
# the harness's alarm ends it; on a loaded machine the run's wall clock may come first
line 9 | grep -Eq 'time limit|timed out' || bad "row 9 message: $(line 9)"
line 10 | grep -q '"rewards":{"code":0.0}' || bad "row 10 C loop: $(line 10)"
line 10 | grep -q 'timed out' || bad "row 10 message: $(line 10)"
grep -q '"errors"' "$d/out" && bad "no call may fail (the sandbox must end before the deadline): $(grep errors "$d/out")"
grep -q 'code .*errors 0' "$d/err" || bad "summary: $(cat "$d/err")"

[ $fail -eq 0 ] && echo "test_code_reward.sh: ok"
exit $((fail > 0))
