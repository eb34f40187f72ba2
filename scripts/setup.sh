#!/usr/bin/env bash
# setup.sh — install the Debian packages v3tune builds against (only those missing), then
# configure and build into build/. Safe to run repeatedly. Needs root or sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      liblua5.4-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev libjansson-dev libonig-dev
      libopenblas-dev libzstd-dev zstd libopenmpi-dev openmpi-bin gnuplot-nox
      python3)  # python3: the code reward runs completions with it (docs/rewards-code.md)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The CUDA toolkit is optional: CMake finds nvcc on PATH or in /usr/local/cuda and then also
# compiles the CUDA backend.
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
