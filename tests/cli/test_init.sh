#!/usr/bin/env bash
# test_init.sh — `v3tune init` writes a complete HF-layout model deterministically; `inspect`
# reads it back; a bad config is refused with the field named.
set -u
fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bad() { echo "FAIL: $*"; fail=$((fail+1)); }

"$V3TUNE" init --preset tiny --out "$d/a" --seed 7 > "$d/log" 2>&1 || bad "init failed: $(cat "$d/log")"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -s "$d/a/$f" ] || bad "missing $f"
done
# same seed, same bytes; different seed, different bytes
"$V3TUNE" init --preset tiny --out "$d/b" --seed 7 >/dev/null 2>&1 || bad "second init failed"
cmp -s "$d/a/model.safetensors" "$d/b/model.safetensors" || bad "same seed gave different weights"
"$V3TUNE" init --preset tiny --out "$d/c" --seed 8 >/dev/null 2>&1 || bad "third init failed"
cmp -s "$d/a/model.safetensors" "$d/c/model.safetensors" && bad "different seeds gave identical weights"
# refuses to overwrite without --force
"$V3TUNE" init --preset tiny --out "$d/a" >/dev/null 2>&1 && bad "overwrote an existing model without --force"
# sharding: a small shard size gives an index and several shards that inspect reads
"$V3TUNE" init --preset tiny --out "$d/s" --dtype f32 --shard-size 20000000 >/dev/null 2>&1 || bad "sharded init failed"
[ -s "$d/s/model.safetensors.index.json" ] || bad "no index for sharded model"
ls "$d/s"/model-0000*-of-0000*.safetensors >/dev/null 2>&1 || bad "no shard files"

"$V3TUNE" inspect "$d/a" > "$d/inspect" 2>&1 || bad "inspect failed: $(cat "$d/inspect")"
grep -q "BF16" "$d/inspect" || bad "inspect does not list BF16"
grep -q "active per token" "$d/inspect" || bad "inspect shows no active count"
grep -q "AdamW" "$d/inspect" || bad "inspect shows no fine-tune memory"
"$V3TUNE" inspect "$d/s" > "$d/inspect2" 2>&1 || bad "inspect of sharded model failed: $(cat "$d/inspect2")"
grep -q "F32" "$d/inspect2" || bad "inspect of sharded f32 model does not list F32"

# a V2-style softmax router is refused, naming the field
mkdir -p "$d/v2"
echo '{"model_type":"deepseek_v3","scoring_func":"softmax"}' > "$d/v2/config.json"
out=$("$V3TUNE" inspect "$d/v2" 2>&1); rc=$?
[ $rc -eq 1 ] || bad "softmax config: exit $rc"
echo "$out" | grep -q "scoring_func" || bad "softmax refusal does not name the field: $out"
# a truncated safetensors file is reported with the file name
cp -r "$d/a" "$d/t"; truncate -s 1000 "$d/t/model.safetensors"
out=$("$V3TUNE" inspect "$d/t" 2>&1); rc=$?
[ $rc -eq 1 ] || bad "truncated: exit $rc"
echo "$out" | grep -q "model.safetensors" || bad "truncation error does not name the file: $out"

echo "init: $fail failed"
[ "$fail" -eq 0 ]
