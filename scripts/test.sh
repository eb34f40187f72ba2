#!/usr/bin/env bash
# test.sh — install, build and run the whole test suite: the normal build, then an ASan+UBSan
# build that runs the same tests. GPU tests (label gpu) skip cleanly without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DV3_SANITIZE=ON -DV3_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure -j"$jobs"
