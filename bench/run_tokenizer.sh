#!/usr/bin/env bash
# run_tokenizer.sh — encode throughput of v3tune's tokenizer and HF `tokenizers`, side by side on
# the same corpus (R1-0528 traces + GSM8K train, see bench_tokenizer.c), one thread and all
# threads. Both print their token totals; the script fails if they differ.
# usage: bench/run_tokenizer.sh [BUILD_DIR] [REPEATS]    (BUILD_DIR default ../build; best of
#        REPEATS runs, default 3; data from $V3_SHARED_DATA or ../shared/data)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
repeats=${2:-3}
data=${V3_SHARED_DATA:-$here/../../shared/data}
threads=$(nproc)
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $threads cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hf:      tokenizers $(python3 -c 'import tokenizers; print(tokenizers.__version__)')"
c=$(OMP_NUM_THREADS=$threads "$build/bench/bench_tokenizer" "$data" "$repeats")
echo "$c"
h1=$(RAYON_NUM_THREADS=1 python3 "$here/tokenizer_hf.py" "$data" "$repeats")
echo "$h1"
hn=$(RAYON_NUM_THREADS=$threads python3 "$here/tokenizer_hf.py" "$data" "$repeats")
echo "$hn"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# each corpus's token total must be the same for every implementation
for corpus in gsm8k r1 all; do
    n=$(printf '%s\n%s\n%s\n' "$c" "$h1" "$hn" | awk -v c="$corpus" '/^corpus/ {sub(":", "", $2); on = ($2 == c)} on' |
        grep -o 'tokens=[0-9]*' | sort -u | wc -l)
    [ "$n" -eq 1 ] || { echo "token totals differ between v3tune and HF on $corpus" >&2; exit 1; }
done
