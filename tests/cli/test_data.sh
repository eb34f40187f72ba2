#!/usr/bin/env bash
# test_data.sh — `v3tune data prepare|stats` with the real tokenizer on ../shared/data: usage
# errors, identical output for --jobs 1 and 2, zstd input, bad rows as file:line, strict mode
# leaving no manifest, stats, and a corrupted shard refused by name.
set -u
BIN=${V3TUNE_DATA:-$V3TUNE}   # V3TUNE_DATA: a binary to test before `data` is registered in main.c
DATA=${V3_SHARED_DATA:?V3_SHARED_DATA not set}
TOK="$DATA/deepseek-v3"
if ! "$BIN" data --help >/dev/null 2>&1; then
  echo "SKIP: the data command is not registered in this binary"; exit 77
fi
[ -f "$TOK/tokenizer.json" ] || { echo "SKIP: no tokenizer at $TOK"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/v3data.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
check() { # expected-code description command...
  local want=$1 what=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; sed 's/^/    /' "$T/err" | head -5; fail=$((fail+1))
  else
    echo "ok: $what"
  fi
}
has() { # description pattern file
  if grep -qF -- "$2" "$3"; then echo "ok: $1"; else echo "FAIL: $1: \"$2\" not in $3:"; sed 's/^/    /' "$3" | head -8; fail=$((fail+1)); fi
}

A="$DATA/sft_llamafactory_demo/alpaca_en_demo.json"
G="$DATA/sft_llamafactory_demo/glaive_toolcall_en_demo.json"
Q="$DATA/gsm8k/test.jsonl"

check 0 "data --help" "$BIN" data --help
check 2 "data without subcommand" "$BIN" data
check 2 "unknown subcommand" "$BIN" data frob
check 2 "prepare without --out" "$BIN" data prepare --input "$A"
check 2 "prepare without input" "$BIN" data prepare --out "$T/x"
check 2 "bad --format" "$BIN" data prepare --input "$A" --out "$T/x" --format csv
check 2 "bad --mask" "$BIN" data prepare --input "$A" --out "$T/x" --mask some
check 2 "bad --template" "$BIN" data prepare --input "$A" --out "$T/x" --template v2
check 2 "bad --field" "$BIN" data prepare --input "$A" --out "$T/x" --field nokey
check 2 "bad --eval-fraction" "$BIN" data prepare --input "$A" --out "$T/x" --eval-fraction 2
check 2 "unknown option" "$BIN" data prepare --input "$A" --out "$T/x" --bogus
check 1 "missing input file" "$BIN" data prepare --input "$T/none.jsonl" --out "$T/x" --tokenizer "$TOK"
check 2 "stats without dir" "$BIN" data stats
check 1 "stats of a non-dataset" "$BIN" data stats "$T"

# --jobs 1 and --jobs 2 give the same bytes (small shards, eval split, field mapping, mask last)
common=(--input "$A" "$G" "$Q" --field prompt=question --field completion=answer --tokenizer "$TOK"
        --eval-fraction 0.1 --seed 11 --shard-size 300000 --mask last --max-len 1024 --quiet)
check 0 "prepare --jobs 1" "$BIN" data prepare "${common[@]}" --out "$T/j1" --jobs 1
has "summary counts rows" "2618 rows" "$T/out"
check 0 "prepare --jobs 2" "$BIN" data prepare "${common[@]}" --out "$T/j2" --jobs 2
if diff -r "$T/j1" "$T/j2" >/dev/null; then echo "ok: --jobs 1 and --jobs 2 outputs identical ($(ls "$T/j1" | wc -l) files)";
else echo "FAIL: --jobs 1 and --jobs 2 outputs differ"; fail=$((fail+1)); fi
check 1 "refuses to overwrite without --force" "$BIN" data prepare "${common[@]}" --out "$T/j2" --jobs 2
has "overwrite message" "already holds a prepared dataset" "$T/err"

# zstd input gives the same documents as the plain file
if command -v zstd >/dev/null; then
  zstd -q -o "$T/q.jsonl.zst" "$Q"
  check 0 "prepare plain" "$BIN" data prepare --input "$Q" --field prompt=question --field completion=answer --tokenizer "$TOK" --out "$T/qp" --quiet
  check 0 "prepare zstd" "$BIN" data prepare --input "$T/q.jsonl.zst" --field prompt=question --field completion=answer --tokenizer "$TOK" --out "$T/qz" --quiet
  if cmp -s "$T/qp/train-00000.bin" "$T/qz/train-00000.bin"; then echo "ok: zstd shard equals plain shard"; else echo "FAIL: zstd shard differs"; fail=$((fail+1)); fi
fi

# bad rows: reported file:line: reason, skipped by default, fatal with --strict
B="$T/bad.jsonl"
printf '%s\n' '{"prompt":"a","completion":"b"}' '{"prompt": "a",' '{"messages":[]}' \
  '{"messages":[{"role":"wizard","content":"x"}]}' '{"prompt":"a","completion":"b"}' > "$B"
check 0 "prepare with bad rows" "$BIN" data prepare --input "$B" --out "$T/b" --tokenizer "$TOK" --quiet
has "bad row count" "bad rows: 3" "$T/out"
has "invalid JSON line" "$B:2: invalid JSON:" "$T/out"
has "empty conversation line" "$B:3: empty conversation" "$T/out"
has "unknown role line" "$B:4: messages[0]: unknown role \"wizard\"" "$T/out"
check 1 "prepare --strict stops" "$BIN" data prepare --input "$B" --out "$T/s" --tokenizer "$TOK" --strict --quiet
has "strict names the row" "$B:2: invalid JSON:" "$T/err"
if [ -e "$T/s/manifest.json" ] || ls "$T/s"/*.bin* >/dev/null 2>&1; then echo "FAIL: strict run left files"; fail=$((fail+1)); else echo "ok: strict run left no shard or manifest"; fi
printf '%s\n' '{"prompt":"a","completion":"this answer is long enough to pass eight tokens"}' > "$T/long.jsonl"
check 0 "overlong drop" "$BIN" data prepare --input "$T/long.jsonl" --out "$T/d" --tokenizer "$TOK" --max-len 8 --overlong drop --quiet
has "overlong drop reported" "$T/long.jsonl:1: sample has" "$T/out"

# stats, then a corrupted shard is refused with its name
check 0 "stats" "$BIN" data stats "$T/j1" --seq-len 4096
has "stats docs" "[train] shards" "$T/out"
has "stats efficiency" "efficiency" "$T/out"
shard=$(ls "$T/j1"/train-*.bin | head -1)
printf '\x7f' | dd of="$shard" bs=1 seek=1000 conv=notrunc 2>/dev/null
check 1 "stats on a corrupted shard" "$BIN" data stats "$T/j1"
has "corruption names the shard" "$shard: checksum mismatch" "$T/err"

echo "data: $fail failed"
[ "$fail" -eq 0 ]
