#!/bin/bash
# run.sh — builds the libFuzzer targets with clang (-DV3_FUZZ=ON: ASan + UBSan + libFuzzer) in
# their own build directory and runs each for a number of executions, from the committed seed
# corpus. New inputs go to a scratch corpus, never into the repository; crashes, leaks and
# timeouts stop the run with the reproducer saved in the scratch dir.
#
#   tests/fuzz/run.sh [RUNS] [TARGET...]      RUNS default 1000000; targets default all
# Environment: V3_FUZZ_BUILD (build dir, default $TMPDIR/v3tune-fuzz-build), V3_FUZZ_WORK
# (scratch, default $TMPDIR/v3tune-fuzz-work), V3_FUZZ_JOBS (make -j, default 2),
# V3_FUZZ_UBSAN_HALT (default 1: undefined behaviour stops the run; 0: it is reported in the
# log and the run goes on, to count executions past a known finding).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
runs="${1:-1000000}"
shift || true
build="${V3_FUZZ_BUILD:-${TMPDIR:-/tmp}/v3tune-fuzz-build}"
work="${V3_FUZZ_WORK:-${TMPDIR:-/tmp}/v3tune-fuzz-work}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$here"/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

CC=clang cmake -S "$src" -B "$build" -DV3_FUZZ=ON -DV3_CUDA=OFF -DV3_MPI=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
cmake --build "$build" -j"${V3_FUZZ_JOBS:-2}" --target "${targets[@]}"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=${V3_FUZZ_UBSAN_HALT:-1}"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  echo "== $t: $runs runs"
  # -timeout: an input taking over 10 s is a hang; -rss_limit_mb: a blow-up is a bug
  if ! "$build/tests/$t" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
      "$work/$t/corpus" "$here/corpus/$t" 2> "$work/$t/log.txt"; then
    echo "!! $t failed; see $work/$t/log.txt and $work/$t/artifacts/"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|ERROR|SUMMARY" "$work/$t/log.txt" || true
  # distinct undefined-behaviour sites (only when they do not halt the run)
  grep -oE "[^ ]+\.c:[0-9]+:[0-9]+: runtime error: [^0-9-]*" "$work/$t/log.txt" | sort | uniq -c || true
done
exit $status
