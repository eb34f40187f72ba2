#!/usr/bin/env bash
# gemm_ab.sh — kernels/cpu/cpu_gemm.c at two git revisions, alternated in one process
# (bench/gemm_ab.c says why), on the shapes the small preset's training step issues.
#   bench/gemm_ab.sh BUILD_DIR REV_A [REV_B] [PAIRS]
# REV_B "work" (the default) is the working tree's file. BUILD_DIR is a CPU build of this tree
# (its libv3core.a supplies everything but the two GEMM builds). Threads: V3_THREADS (default 1).
set -eu
build=${1:?usage: gemm_ab.sh BUILD_DIR REV_A [REV_B] [PAIRS]}
rev_a=${2:?usage: gemm_ab.sh BUILD_DIR REV_A [REV_B] [PAIRS]}
rev_b=${3:-work}
pairs=${4:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-gcc}
flags="-O3 -std=c11 -fopenmp -D_GNU_SOURCE -I$root -I$root/kernels/cpu"
for side in a b; do
  rev=$rev_a; [ "$side" = b ] && rev=$rev_b
  if [ "$rev" = work ]; then
    cp "$root/kernels/cpu/cpu_gemm.c" "$tmp/$side.c"
  else
    git -C "$root" show "$rev:kernels/cpu/cpu_gemm.c" > "$tmp/$side.c"
  fi
  # compiled from the tree's directory so that its includes resolve
  $cc $flags -x c -c "$tmp/$side.c" -o "$tmp/$side.o"
  syms=""
  for s in cpu_gemm cpu_gemm_grouped cpu_gemm_strided_batched cpu_gemm_force_scalar; do
    syms="$syms --redefine-sym $s=${side}_${s#cpu_}"
  done
  objcopy $syms "$tmp/$side.o"
done
$cc $flags "$root/bench/gemm_ab.c" "$tmp/a.o" "$tmp/b.o" "$build/libv3core.a" \
  $(pkg-config --libs lua5.4 jansson oniguruma sqlite3 libcurl libzstd) -lopenblas -lm -lpthread \
  -o "$tmp/gemm_ab"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) A = $rev_a, B = $rev_b, threads ${V3_THREADS:-1}, $pairs pairs"
# the small preset at 512 tokens: the head in chunks of 260 rows, attention and dense projections,
# one MoE layer's grouped GEMMs
while read -r ta tb m n k; do
  "$tmp/gemm_ab" plain "$ta" "$tb" "$m" "$n" "$k" "$pairs"
done <<'EOF'
0 1 260 129280 512
0 0 260 512 129280
1 0 129280 512 260
0 1 512 768 192
0 1 512 512 512
0 0 512 512 512
1 0 512 512 512
0 1 512 3072 512
0 1 1 129280 512
0 1 1 1536 512
EOF
for w in 0 1 2 3 4 5; do "$tmp/gemm_ab" moe "$w" 512 "$pairs"; done
