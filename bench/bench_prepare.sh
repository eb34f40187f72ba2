#!/usr/bin/env bash
# bench_prepare.sh — `v3tune data prepare` on an instruction set expanded to >= 1.5M conversations
# (the shared LLaMA-Factory alpaca + glaive demo rows, 1299 per copy, replicated into $TMPDIR as
# JSONL; never into the repo). Reports wall time and peak memory from /usr/bin/time -v.
#   usage: bench/bench_prepare.sh V3TUNE [ROWS] [JOBS]     (ROWS default 1500000, JOBS = nproc)
set -euo pipefail
BIN=${1:?usage: bench_prepare.sh V3TUNE [ROWS] [JOBS]}
ROWS=${2:-1500000}
JOBS=${3:-$(nproc)}
SRC=$(cd "$(dirname "$0")/.." && pwd)
DATA=${V3_SHARED_DATA:-$SRC/../shared/data}
W=$(mktemp -d "${TMPDIR:-/tmp}/v3bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
python3 - "$DATA/sft_llamafactory_demo" "$W/base.jsonl" <<'PY'
import json, sys
d, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    for name in ("alpaca_en_demo.json", "glaive_toolcall_en_demo.json"):
        for row in json.load(open(f"{d}/{name}")):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
PY
base=$(wc -l < "$W/base.jsonl")
copies=$(( (ROWS + base - 1) / base ))
for ((i = 0; i < copies; i++)); do cat "$W/base.jsonl"; done > "$W/big.jsonl"
echo "input: $(wc -l < "$W/big.jsonl") rows ($copies copies of $base), $(du -h "$W/big.jsonl" | cut -f1)"
/usr/bin/time -v "$BIN" data prepare --input "$W/big.jsonl" --out "$W/out" --jobs "$JOBS" \
    --eval-fraction 0.01 --seed 1 --max-len 4096 2> "$W/time.txt" | tee "$W/summary.txt"
grep -E "Elapsed|Maximum resident|User time|System time|Percent of CPU" "$W/time.txt"
du -sh "$W/out"
