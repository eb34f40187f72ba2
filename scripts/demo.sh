#!/usr/bin/env bash
# demo.sh — install, build, and show v3tune on a CPU-sized model: initialise a small model,
# inspect it. (Later stages extend this with SFT and GRPO.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${V3_DEMO_DIR:-out/demo}
mkdir -p "$out"
echo "== v3tune init --preset tiny"
./build/v3tune init --preset tiny --out "$out/model" --seed 1 --force
echo
echo "== v3tune inspect"
./build/v3tune inspect "$out/model"
