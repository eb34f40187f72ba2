#!/usr/bin/env bash
# test_reward_run.sh — `v3tune reward` with local reward models and on a run's stored samples:
#   --reward-model on JSONL rows: each score equals HF's DeepseekV3ForSequenceClassification
#     (tests/golden/data/rm_a/ref.json) within 1e-5 relative, the weight enters the combined reward,
#     alongside a Lua script; a causal LM directory is refused;
#   --run RUN --step N: the samples `v3tune generate --run` stored (prompt text / messages,
#     completion ids, finish reason, the prompt's fields, group and index) reach the script as the
#     GRPO run gave them; only step N is read; a step without samples exits 1; usage errors exit 2.
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
RM="$V3_SOURCE_DIR/tests/golden/data/rm_a"
command -v python3 > /dev/null || { echo "SKIP: no python3 to read the JSON outputs"; exit 77; }

# ---- a reward model on JSONL rows (prompt as text or as messages), next to a Lua script ----
python3 - "$RM/ref.json" > "$d/rows.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
for c in r["chat_cases"]:
    print(json.dumps({"prompt": c.get("messages", c.get("prompt")), "completion": c["completion"],
                      "want": c["scores"][0]}, ensure_ascii=False))
PY
cat > "$d/len.lua" <<'L'
return { name = "len", score = function(s) return #s.completion end }
L
"$V3TUNE" reward --script "$d/len.lua" --reward-model "$RM:0.5" --data "$d/rows.jsonl" --threads 2 \
  > "$d/out" 2> "$d/err" || bad "reward model run failed: $(cat "$d/err")"
python3 - "$d/rows.jsonl" "$d/out" <<'PY' || bad "reward model scores: see above"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
out = [json.loads(l) for l in open(sys.argv[2])]
assert len(out) == len(rows), (len(out), len(rows))
scores = [r["want"] for r in rows]
scale = max((sum(x * x for x in scores) / len(scores)) ** 0.5, 1e-3)
for r, o in zip(rows, out):
    got, want = o["rewards"]["rm_a"], r["want"]
    assert abs(got - want) <= 1e-5 * max(abs(want), scale), ("score", got, want)
    n = len(r["completion"].encode())
    assert o["rewards"]["len"] == n, o
    assert abs(o["reward"] - (n + 0.5 * got)) < 1e-9, ("combined", o)
    assert o["extra"]["rm_a"]["tokens"] > 5, o
PY
grep -q 'rm_a .*weight 0.5 .*errors 0.*(reward model)' "$d/err" || bad "summary: $(cat "$d/err")"

# two models named on the command line (NAME=DIR[:W]); the same name twice is refused
"$V3TUNE" reward --reward-model "a=$RM" --reward-model "b=$RM:2" --data "$d/rows.jsonl" > "$d/ab" 2> /dev/null \
  || bad "two named models failed"
python3 - "$d/ab" <<'PY' || bad "two named models: see above"
import json, sys
for o in map(json.loads, open(sys.argv[1])):
    assert o["rewards"]["a"] == o["rewards"]["b"] and abs(o["reward"] - 3 * o["rewards"]["a"]) < 1e-9, o
PY
"$V3TUNE" reward --reward-model "$RM" --reward-model "$RM" --data "$d/rows.jsonl" > /dev/null 2> "$d/dup"
[ $? -eq 1 ] && grep -q "two functions are named 'rm_a'" "$d/dup" || bad "duplicate names: $(cat "$d/dup")"

# a too-small budget is a per-row error with the fallback, not a failure of the command
"$V3TUNE" reward --reward-model "$RM" --rm-max-tokens 20 --fallback -3 --data "$d/rows.jsonl" \
  > "$d/out2" 2> "$d/err2" || bad "small budget: exit $?: $(cat "$d/err2")"
grep -q '"rm_a":-3.0.*max_tokens 20' "$d/out2" || bad "small budget: no fallback/error: $(cat "$d/out2")"

# a causal LM is not a reward model
"$V3TUNE" reward --reward-model "$V3_SOURCE_DIR/tests/golden/data/model_b" --data "$d/rows.jsonl" \
  > /dev/null 2> "$d/err3"
[ $? -eq 1 ] || bad "causal LM as reward model: want exit 1"
grep -q 'no score.weight' "$d/err3" || bad "causal LM message: $(cat "$d/err3")"

# ---- rescoring the samples a run stored ----
tok="$V3_SHARED_DATA/deepseek-v3"
if [ ! -f "$tok/tokenizer.json" ]; then
  echo "SKIP (partly): no shared tokenizer at $tok for the run part"
  [ $fail -eq 0 ] && echo "test_reward_run.sh: ok" ; exit $((fail > 0))
fi
"$V3TUNE" init --preset tiny --dtype f32 --no-mtp --out "$d/model" --seed 3 --force --tokenizer "$tok" \
  > /dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
cat > "$d/p.jsonl" <<'J'
{"prompt": "The capital of France is", "id": 7}
{"messages": [{"role": "user", "content": "What is 2+3?"}], "answer": "5"}
J
"$V3TUNE" generate --model "$d/model" --threads 2 --prompts "$d/p.jsonl" --n 2 --max-new-tokens 5 \
  --seed 5 --out "$d/gen.jsonl" --run "$d/run" > /dev/null 2> "$d/gerr" || bad "generate: $(cat "$d/gerr")"
cat > "$d/probe.lua" <<'L'
return { name = "probe", score = function(s)
  return { score = #(s.completion_ids or {}) + (s.answer == "5" and 100 or 0) + (s.messages and 1000 or 0),
           group = s.group, index = s.index, finish = s.finish_reason, id = s.id,
           prompt = s.prompt, completion = s.completion }
end }
L
"$V3TUNE" reward --script "$d/probe.lua" --reward-model "$RM:2" --run "$d/run" --step 0 \
  > "$d/rs" 2> "$d/rerr" || bad "rescore failed: $(cat "$d/rerr")"
python3 - "$d/gen.jsonl" "$d/rs" <<'PY' || bad "rescored samples: see above"
import json, sys
gen = {(g["index"], g["sample"]): g for g in map(json.loads, open(sys.argv[1], encoding="utf-8"))}
out = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert len(out) == 4, len(out)
for o in out:
    g = gen[(o["group"], o["index"])]
    x = o["extra"]["probe"]
    want = g["completion_tokens"] + (1100 if g["index"] == 1 else 0)
    assert o["rewards"]["probe"] == want, (o, want)
    assert x["completion"] == g["text"] and x["finish"] == g["finish_reason"], (x, g)
    assert x["group"] == o["group"] and x["index"] == o["index"] and o["step"] == 0, x
    assert (x.get("id") == 7) == (g["index"] == 0), x
    if g["index"] == 1:
        assert x["prompt"].startswith("<｜begin▁of▁sentence｜><｜User｜>What is 2+3?"), x["prompt"]
    rm = o["rewards"]["rm_a"]
    assert isinstance(rm, float) and abs(o["reward"] - (o["rewards"]["probe"] + 2 * rm)) < 1e-9, o
    assert o["stored"] == {"reward": None, "rewards": {}}, o["stored"]
PY
grep -q '4 rows' "$d/rerr" || bad "rescore summary: $(cat "$d/rerr")"

# only the asked step is read: move group 1 to step 7
python3 - "$d/run/run.db" <<'PY' || bad "could not edit run.db"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE samples SET step = 7 WHERE group_id = 1")
db.commit()
db.close()
PY
"$V3TUNE" reward --script "$d/probe.lua" --run "$d/run" --step 7 > "$d/r7" 2> /dev/null || bad "step 7 rescore failed"
[ "$(wc -l < "$d/r7")" -eq 2 ] && ! grep -qv '"step":7,"group":1' "$d/r7" || bad "step 7: $(cat "$d/r7")"
"$V3TUNE" reward --script "$d/probe.lua" --run "$d/run/run.db" --step 0 --run-id 1 > "$d/r0" 2> /dev/null \
  || bad "run.db path with --run-id failed"
[ "$(wc -l < "$d/r0")" -eq 2 ] || bad "step 0 after the move: $(cat "$d/r0")"
"$V3TUNE" reward --script "$d/probe.lua" --run "$d/run" --step 3 > /dev/null 2> "$d/e3"
[ $? -eq 1 ] || bad "a step without samples: want exit 1"
grep -q 'no samples at step 3' "$d/e3" || bad "empty step message: $(cat "$d/e3")"

# usage errors
"$V3TUNE" reward --script "$d/probe.lua" --run "$d/run" > /dev/null 2>&1; [ $? -eq 2 ] || bad "--run without --step: want 2"
"$V3TUNE" reward --script "$d/probe.lua" --run "$d/run" --step 0 --data "$d/rows.jsonl" > /dev/null 2>&1
[ $? -eq 2 ] || bad "--run with --data: want 2"
"$V3TUNE" reward --script "$d/probe.lua" --data "$d/rows.jsonl" --step 1 > /dev/null 2>&1; [ $? -eq 2 ] || bad "--step without --run: want 2"
"$V3TUNE" reward --run "$d/run" --step 0 > /dev/null 2>&1; [ $? -eq 2 ] || bad "no function: want 2"
"$V3TUNE" reward --reward-model "$RM" --rm-template chatml --data "$d/rows.jsonl" > /dev/null 2>&1
[ $? -eq 2 ] || bad "bad --rm-template: want 2"

[ $fail -eq 0 ] && echo "test_reward_run.sh: ok"
exit $((fail > 0))
