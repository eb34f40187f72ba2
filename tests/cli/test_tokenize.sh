#!/usr/bin/env bash
# test_tokenize.sh — `v3tune tokenize`: text rows (with and without BOS), chat rows with a loss
# mask, a bad row in the middle (reported as <stdin>:LINE, skipped, exit 1), usage errors.
# Expected ids come from HF tokenizers on the shared DeepSeek-V3 tokenizer.json.
set -u
: "${V3TUNE:?V3TUNE must point at the v3tune binary}"
DATA="${V3_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
TOK="$DATA/deepseek-v3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        echo "FAIL $1"; echo "  expected: $2"; echo "  actual:   $3"; fails=$((fails + 1))
    else
        echo "ok   $1"
    fi
}

out=$(printf '{"text": "Hello world"}\n' | "$V3TUNE" tokenize --tokenizer "$TOK")
check "text row with BOS" '{"ids": [0,19923,2058]}' "$out"
out=$(printf '{"text": "Hello world"}\n' | "$V3TUNE" tokenize --tokenizer "$TOK" --no-bos)
check "text row --no-bos" '{"ids": [19923,2058]}' "$out"
out=$(printf '{"text": ""}\n' | "$V3TUNE" tokenize --tokenizer "$TOK" --no-bos)
check "empty text" '{"ids": []}' "$out"

chat='{"messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}'
out=$(printf '%s\n' "$chat" | "$V3TUNE" tokenize --tokenizer "$TOK" --chat)
check "chat row ids+mask" '{"ids": [0,53,20842,128803,23166,128804,19923,3,1], "mask": [0,0,0,0,0,0,1,1,1]}' "$out"
out=$(printf '%s\n' "$chat" | "$V3TUNE" tokenize --tokenizer "$TOK" --chat --template r1 --generation-prompt | head -c 40)
check "r1 template accepted" '{"ids": [0,53,20842,128803,23166,128804,' "$out"

# a bad row between two good ones: both good rows are written, the bad one named by line
printf '{"text": "a"}\nnot json\n\n{"texts": 1}\n{"text": "b"}\n' > "$tmp/in.jsonl"
"$V3TUNE" tokenize --tokenizer "$TOK" --no-bos < "$tmp/in.jsonl" > "$tmp/out" 2> "$tmp/err"
rc=$?
check "bad rows -> exit 1" 1 "$rc"
check "good rows kept" "$(printf '{"ids": [67]}\n{"ids": [68]}')" "$(cat "$tmp/out")"
grep -q '^<stdin>:2: invalid JSON' "$tmp/err" || { echo "FAIL line 2 not reported"; cat "$tmp/err"; fails=$((fails + 1)); }
grep -q '^<stdin>:4: no string "text" field' "$tmp/err" || { echo "FAIL line 4 not reported"; cat "$tmp/err"; fails=$((fails + 1)); }
printf '{"messages": [{"role": "user", "content": null}]}\n' | "$V3TUNE" tokenize --tokenizer "$TOK" --chat > /dev/null 2> "$tmp/err"
check "bad chat row -> exit 1" 1 "$?"
grep -q '^<stdin>:1: messages\[0\]' "$tmp/err" || { echo "FAIL chat error not reported"; cat "$tmp/err"; fails=$((fails + 1)); }

# usage errors and help
"$V3TUNE" tokenize --template v9 < /dev/null 2> /dev/null
check "unknown template -> 2" 2 "$?"
"$V3TUNE" tokenize --bogus < /dev/null 2> /dev/null
check "unknown flag -> 2" 2 "$?"
"$V3TUNE" tokenize --help | grep -q "usage: v3tune tokenize"
check "--help" 0 "$?"
"$V3TUNE" tokenize --tokenizer "$tmp/nowhere" < /dev/null 2> "$tmp/err"
check "missing tokenizer -> 1" 1 "$?"
grep -q "tokenizer.json" "$tmp/err" || { echo "FAIL missing tokenizer message"; fails=$((fails + 1)); }

# a larger file: every GSM8K test question, one row each, exit 0 and one output line per row
if [ -f "$DATA/gsm8k/test.jsonl" ]; then
    sed 's/"question"/"text"/' "$DATA/gsm8k/test.jsonl" | "$V3TUNE" tokenize --tokenizer "$TOK" > "$tmp/g" 2> "$tmp/err"
    check "gsm8k test rows" "0 $(wc -l < "$DATA/gsm8k/test.jsonl")" "$? $(wc -l < "$tmp/g")"
fi

[ "$fails" -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "all tokenize CLI checks passed"
