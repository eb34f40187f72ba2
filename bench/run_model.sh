#!/usr/bin/env bash
# run_model.sh — v3tune's CPU forward+backward against HF transformers on PyTorch CPU, side by
# side in one run: same preset config, batch, sequence length and thread count.
#   bench/run_model.sh BUILD_DIR [preset:seq ...]      (default: tiny:256 small:512)
# Prints one JSON line per implementation and configuration (append them to RESULTS_model.md).
set -eu
build=${1:?usage: run_model.sh BUILD_DIR [preset:seq ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
runs=${*:-tiny:256 small:512}
threads=${THREADS:-$(nproc)}
steps=${STEPS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -m) $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), threads $threads"
for r in $runs; do
  preset=${r%%:*}; seq=${r##*:}
  "$build/bench/bench_model" --preset "$preset" --config-out "$tmp/$preset.json"
  "$build/bench/bench_model" --preset "$preset" --seq "$seq" --steps "$steps" --threads "$threads" --json
  python3 "$here/model_hf.py" --config "$tmp/$preset.json" --preset "$preset" --seq "$seq" --steps "$steps" --threads "$threads"
done
