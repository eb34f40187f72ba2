#!/usr/bin/env bash
# run_math_reward.sh — the math accuracy reward in C (v3_math_accuracy_reward) against TRL/open-r1's
# accuracy_reward with math-verify, on the same pairs (tests/golden/data/math_pairs.jsonl.zst),
# one thread each. Fails if the two reward sums differ by more than 1% of the pairs.
# usage: bench/run_math_reward.sh [BUILD_DIR] [N_PAIRS] [PAIRS_FILE]
#        (BUILD_DIR default ../build, N default 3000 (0 = all), PAIRS_FILE default the golden pairs;
#        tests/golden/gen_math_pairs.py --full-traces FILE writes full-length R1 traces to try)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-3000}
pairs=${3:-$here/../tests/golden/data/math_pairs.jsonl.zst}
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "python:  math-verify $(python3 -c 'import importlib.metadata as m; print(m.version("math-verify"))'), latex2sympy2_extended $(python3 -c 'import importlib.metadata as m; print(m.version("latex2sympy2_extended"))')"
c=$("$build/bench/bench_math_reward" "$pairs" "$n" 5)
echo "$c"
p=$(python3 "$here/math_reward_py.py" "$pairs" "$( [ "$n" -gt 0 ] && echo "$n" || echo 100000000)")
echo "$p"
cs=$(echo "$c" | grep -o 'samples_per_s=[0-9]*' | cut -d= -f2)
ps=$(echo "$p" | grep -o 'samples_per_s=[0-9]*' | cut -d= -f2)
echo "speedup: $(awk -v a="$cs" -v b="$ps" 'BEGIN { printf "%.0fx", a / b }')"
csum=$(echo "$c" | grep -o 'reward_sum=[0-9]*' | cut -d= -f2)
psum=$(echo "$p" | grep -o 'reward_sum=[0-9]*' | cut -d= -f2)
np=$(echo "$c" | grep -o 'pairs=[0-9]*' | cut -d= -f2)
awk -v a="$csum" -v b="$psum" -v n="$np" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * n) }' ||
    { echo "reward sums differ: c=$csum python=$psum" >&2; exit 1; }
