#!/usr/bin/env bash
# test_generate.sh — `v3tune generate` end to end on a tiny random model with the real tokenizer:
# text / chat / token-id prompts, n samples, JSONL and run.db outputs, streaming, stop strings,
# reproducibility from the seed, bad rows reported as FILE:LINE, usage errors.
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
tokdir="$V3_SHARED_DATA/deepseek-v3"
"$V3TUNE" init --preset tiny --dtype f32 --no-mtp --out "$d/model" --seed 3 --force --tokenizer "$tokdir" >/dev/null \
  || { echo "FAIL: init"; exit 1; }
cat > "$d/p.jsonl" <<'J'
{"prompt": "The capital of France is", "id": 7}
{"messages": [{"role": "user", "content": "What is 2+3?"}], "answer": "5"}
{"input_ids": [0, 100, 200, 300]}
not json
{"prompt": 12}
J
g() { "$V3TUNE" generate --model "$d/model" --threads 2 "$@"; }

g --prompts "$d/p.jsonl" --n 2 --max-new-tokens 6 --seed 5 --out "$d/o.jsonl" --run "$d/run" 2>"$d/err"
rc=$?
[ $rc -eq 1 ] || bad "bad rows should give exit 1 (got $rc)"
grep -q "p.jsonl:4: invalid JSON" "$d/err" || bad "no FILE:LINE for the bad JSON row: $(cat "$d/err")"
grep -q "p.jsonl:5: needs" "$d/err" || bad "no FILE:LINE for the row without a prompt"
[ "$(wc -l < "$d/o.jsonl")" -eq 6 ] || bad "expected 6 output rows, got $(wc -l < "$d/o.jsonl")"
grep -q '"id":7,"index":0,"sample":1' "$d/o.jsonl" || bad "row fields not carried to the output"
grep -q '"answer":"5"' "$d/o.jsonl" || bad "answer field not carried"
[ "$(grep -c '"completion_tokens":6' "$d/o.jsonl")" -eq 6 ] || bad "every sample should have 6 tokens"
grep -q "shared" "$d/err" || bad "no summary line"
"$V3TUNE" samples "$d/run" > "$d/s" 2>&1 || bad "samples failed: $(cat "$d/s")"
[ "$(grep -c '^#' "$d/s")" -eq 6 ] || bad "run.db should hold 6 samples: $(head -5 "$d/s")"

# same seed, same output; another seed, another output
g --prompts "$d/p.jsonl" --n 2 --max-new-tokens 6 --seed 5 --out "$d/o2.jsonl" 2>/dev/null
cmp -s <(sed 's/"time_s":[^}]*//' "$d/o.jsonl") <(sed 's/"time_s":[^}]*//' "$d/o2.jsonl") || bad "same seed gave different output"
g --prompts "$d/p.jsonl" --n 2 --max-new-tokens 6 --seed 6 --out "$d/o3.jsonl" 2>/dev/null
cmp -s <(sed 's/"time_s":[^}]*//' "$d/o.jsonl") <(sed 's/"time_s":[^}]*//' "$d/o3.jsonl") && bad "another seed gave the same output"

# streaming one sample prints exactly the text of the stored row (greedy)
head -1 "$d/p.jsonl" > "$d/one.jsonl"
g --prompts "$d/one.jsonl" --temperature 0 --max-new-tokens 12 --stream --out "$d/s.jsonl" > "$d/stream" 2>/dev/null \
  || bad "stream failed"
want=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["text"])' "$d/s.jsonl" 2>/dev/null || echo "")
if [ -n "$want" ]; then
  [ "$(cat "$d/stream")" = "$want" ] || bad "streamed text differs from the row's text"
fi

# a stop string taken from the greedy text cuts it there with finish "stop"
if [ -n "$want" ] && [ ${#want} -gt 8 ]; then
  stop=${want:4:3}
  g --prompts "$d/one.jsonl" --temperature 0 --max-new-tokens 12 --stop "$stop" --out "$d/st.jsonl" 2>/dev/null || bad "stop run failed"
  grep -q '"finish_reason":"stop"' "$d/st.jsonl" || bad "stop string '$stop' did not stop"
  got=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["text"])' "$d/st.jsonl")
  pre=${want%%"$stop"*}
  [ "$got" = "$pre" ] || bad "text '$got' is not the greedy text cut before '$stop' ('$pre')"
fi

# MTP speculative decoding (a tiny model with its MTP layer): greedy text unchanged, drafting over
# the whole vocabulary and over its first 1000 ids
"$V3TUNE" init --preset tiny --dtype f32 --out "$d/mtp" --seed 4 --force --tokenizer "$tokdir" >/dev/null \
  || bad "init with MTP"
head -2 "$d/p.jsonl" > "$d/two.jsonl"
gm() { "$V3TUNE" generate --model "$d/mtp" --threads 2 --prompts "$d/two.jsonl" --temperature 0 \
         --max-new-tokens 10 "$@"; }
strip() { sed 's/"time_s":[^}]*//' "$1"; }
gm --out "$d/m0.jsonl" 2>/dev/null || bad "greedy without MTP failed"
gm --mtp --mtp-draft-vocab 0 --out "$d/m1.jsonl" 2>"$d/m1.err" || bad "MTP failed: $(cat "$d/m1.err")"
gm --mtp --mtp-draft-vocab 1000 --out "$d/m2.jsonl" 2>"$d/m2.err" || bad "MTP (1000 ids) failed: $(cat "$d/m2.err")"
grep -q "MTP acceptance" "$d/m2.err" || bad "no MTP acceptance in the summary: $(cat "$d/m2.err")"
cmp -s <(strip "$d/m0.jsonl") <(strip "$d/m1.jsonl") || bad "MTP changed the greedy output"
cmp -s <(strip "$d/m0.jsonl") <(strip "$d/m2.jsonl") || bad "MTP drafting among 1000 ids changed the greedy output"
gm --mtp --mtp-draft-vocab -5 >/dev/null 2>&1; [ $? -eq 2 ] || bad "--mtp-draft-vocab -5 should exit 2"
# without the packed weight copies, or with fp32 copies only: the same greedy text
gm --no-pack-weights --out "$d/m3.jsonl" 2>/dev/null || bad "--no-pack-weights failed"
cmp -s <(strip "$d/m0.jsonl") <(strip "$d/m3.jsonl") || bad "--no-pack-weights changed the greedy output"
gm --no-pack-bf16 --out "$d/m4.jsonl" 2>/dev/null || bad "--no-pack-bf16 failed"
gm --out "$d/m5.jsonl" 2>"$d/m5.err"
grep -q "packed weights: [1-9][0-9]* copies (0 bf16)" "$d/m5.err" || bad "f32 random weights packed as bf16: $(cat "$d/m5.err")"
cmp -s <(strip "$d/m0.jsonl") <(strip "$d/m4.jsonl") || bad "--no-pack-bf16 changed the greedy output"
# a bf16 checkpoint: its weights are exactly bf16, so the decode copies are bf16 (half the bytes);
# greedy text and sampled logprobs equal those with fp32 copies and with none
"$V3TUNE" init --preset tiny --dtype bf16 --out "$d/b16" --seed 5 --force --tokenizer "$tokdir" >/dev/null \
  || bad "init bf16"
gb() { "$V3TUNE" generate --model "$d/b16" --threads 2 --prompts "$d/two.jsonl" --max-new-tokens 12 "$@"; }
for t in 0 1; do
  gb --temperature $t --out "$d/b0.jsonl" 2>"$d/b0.err" || bad "bf16 checkpoint, T=$t: generate failed"
  grep -q "packed weights: [0-9]* copies ([1-9][0-9]* bf16)" "$d/b0.err" || bad "no bf16 copies: $(cat "$d/b0.err")"
  gb --temperature $t --no-pack-bf16 --out "$d/b1.jsonl" 2>/dev/null || bad "bf16, T=$t, --no-pack-bf16 failed"
  gb --temperature $t --no-pack-weights --out "$d/b2.jsonl" 2>/dev/null || bad "bf16, T=$t, --no-pack-weights failed"
  cmp -s <(strip "$d/b0.jsonl") <(strip "$d/b1.jsonl") || bad "bf16 copies changed the output at T=$t"
  cmp -s <(strip "$d/b0.jsonl") <(strip "$d/b2.jsonl") || bad "packed copies changed the output at T=$t"
done

# usage errors
g --prompts "$d/p.jsonl" >/dev/null 2>&1 ; true
"$V3TUNE" generate --prompts "$d/p.jsonl" >/dev/null 2>&1; [ $? -eq 2 ] || bad "missing --model should exit 2"
g --prompts "$d/p.jsonl" --n 0 >/dev/null 2>&1; [ $? -eq 2 ] || bad "--n 0 should exit 2"
g --prompts "$d/p.jsonl" --temperature abc >/dev/null 2>&1; [ $? -eq 2 ] || bad "bad number should exit 2"
g --prompts "$d/nope.jsonl" >/dev/null 2>&1; [ $? -eq 1 ] || bad "missing prompts file should exit 1"

[ $fail -eq 0 ] && echo "test_generate: all checks passed"
exit $((fail > 0))
