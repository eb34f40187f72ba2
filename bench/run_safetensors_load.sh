#!/bin/bash
# run_safetensors_load.sh — v3tune vs Python safetensors loading one multi-GB BF16 checkpoint,
# side by side in one run, page cache warm and cold. The checkpoint is generated in a scratch
# directory outside the repository and removed at the end (keep it with KEEP=1).
#
#   bench/run_safetensors_load.sh BUILD_DIR [GB] [REPEATS]
#     BUILD_DIR  a cmake build of this repository (holds bench/bench_safetensors_load)
#     GB         checkpoint size, default 3;  REPEATS  timed passes per mode (median), default 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run_safetensors_load.sh BUILD_DIR [GB] [REPEATS]}"
gb="${2:-3}"
reps="${3:-3}"
bin="$build/bench/bench_safetensors_load"
dir="$(mktemp -d "${TMPDIR:-/tmp}/v3bench-st.XXXXXX")"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -m), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1e6}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" generate "$dir/ckpt" "$gb"
printf "impl\tcache\tmode\ttensors\tGB\tseconds\tGB/s\n"
for cache in warm cold; do
  c=""; [ $cache = cold ] && c=cold
  "$bin" run "$dir/ckpt" "$reps" $c
  python3 "$here/safetensors_load.py" "$dir/ckpt" "$reps" $c
done
