#!/usr/bin/env bash
# gpu_run.sh — run THERE, on a lent GPU machine (docs/gpu-run.md): unpack the Debian packages that
# scripts/gpu_bundle.sh put into .gpudeps/ into a prefix, build with CUDA for sm_90, then run the
# requested stages, each logging into $OUT and going on after a failure:
#   build    configure + build only the targets the other stages need (always runs first)
#   test     ctest -L gpu, then test_ops (every op of the CUDA backend against the CPU)
#   kernels  bench_gpu_ops and bench/gpu_ops_torch.py on one medium layer at 4096 tokens
#   sft      bench_model --device cuda --adamw against bench/sft_hf_gpu.py (bf16, then fp32),
#            then bench_model --profile (our step's time per op; V3_GPU_PROFILE=0 skips it)
#   store    bench_store insert (no GPU: the run store's insert rate on this machine's disk and
#            cores, which CI's 2-core VM cannot show; under a minute)
#   all      all of the above
#
#   bash scripts/gpu_run.sh [build] [test] [kernels] [sft] [store] | all  (default: all)
#
# Files in $OUT (at most 8): build.log, test.log, kernels.jsonl, kernels.log, sft.jsonl, sft.log,
# store.log, summary.md (bench/gpu_summary.py: tables, MFU, stage times; printed last).
# Environment: OUT (default out/gpu), V3_GPU_BUILD (build-gpu), V3_GPU_DEPS_PREFIX (/opt/v3deps:
# never / itself, which the device notes warn can break), V3_GPU_CUDA (ON), V3_GPU_TARGETS ("all"
# builds everything), V3_GPU_PRESET (medium), V3_GPU_SEQ (4096), V3_GPU_STEPS (3),
# V3_GPU_HF_DTYPES ("bf16 fp32"), V3_GPU_MATHS (our modes, "bf16 fp32"), V3_GPU_CUBLAS (auto; "pip" forces PyTorch's cuBLAS), V3_PYTHON
# (python3), V3_GPU_DEADLINE (575: seconds after which no step starts, and every step's time
# limit is cut to end before it, so that the tool's 10-minute limit never kills the script with
# its summary unwritten; summary.md is rewritten after every stage anyway).
# V3_GPU_RUN_DRY=1 goes through every stage on this (GPU-less) machine: CPU build, tiny preset,
# the Python sides in their --dry-run mode.
#   bash scripts/gpu_run.sh libpath     prints the loader path of the prefix (for gpu_bundle.sh)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

dry=${V3_GPU_RUN_DRY:-0}
if [ "$dry" = 1 ]; then
  build=${V3_GPU_BUILD:-build-gpu-dry}
  prefix=${V3_GPU_DEPS_PREFIX:-$build/deps}
  out=${OUT:-out/gpu-dry}
  cuda=${V3_GPU_CUDA:-OFF}
  preset=${V3_GPU_PRESET:-tiny}; seq=${V3_GPU_SEQ:-64}; steps=${V3_GPU_STEPS:-1}
  deadline=${V3_GPU_DEADLINE:-3600}
else
  build=${V3_GPU_BUILD:-build-gpu}
  prefix=${V3_GPU_DEPS_PREFIX:-/opt/v3deps}
  out=${OUT:-out/gpu}
  cuda=${V3_GPU_CUDA:-ON}
  preset=${V3_GPU_PRESET:-medium}; seq=${V3_GPU_SEQ:-4096}; steps=${V3_GPU_STEPS:-3}
  deadline=${V3_GPU_DEADLINE:-575}
fi
case $build in /*) ;; *) build="$root/$build" ;; esac
case $prefix in /*) ;; *) prefix="$root/$prefix" ;; esac
py=${V3_PYTHON:-python3}
nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
hf_dtypes=${V3_GPU_HF_DTYPES:-bf16 fp32}
v3_maths=${V3_GPU_MATHS:-bf16 fp32} # our math modes in the sft stage; the first one is profiled
arch=x86_64-linux-gnu
libdirs="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/openblas-pthread:$prefix/lib/$arch"

if [ "${1:-}" = libpath ]; then
  echo "$libdirs"
  exit 0
fi

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
want() { # want STAGE: was it asked for?
  local s
  for s in "${stages[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done
  return 1
}
for s in "${stages[@]}"; do
  case $s in build | test | kernels | sft | store | all) ;; *) echo "gpu_run: unknown stage '$s' (build test kernels sft store all)" >&2; exit 2 ;; esac
done

mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)
(cd "$out" && rm -f build.log test.log kernels.jsonl kernels.log sft.jsonl sft.log store.log summary.md)
build_only=1
for s in "${stages[@]}"; do [ "$s" = build ] || build_only=0; done
state="$build/gpu-run" # this call's stage times and environment, read by the summary
mkdir -p "$state"
: > "$state/stages.tsv"
jobs=$(nproc 2>/dev/null || echo 4)

# Our binaries (and CMake, whose linker must resolve the libraries' own dependencies) see the
# prefix; Python does not, so PyTorch keeps the system's libraries.
withdeps() {
  LD_LIBRARY_PATH="$libdirs${fallback_dir:+:$fallback_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    LIBRARY_PATH="${fallback_dir:+$fallback_dir:}${LIBRARY_PATH:-}" \
    PKG_CONFIG_PATH="$prefix/usr/lib/$arch/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
    "$@"
}

# tl N: a step's time limit, N seconds or less so that it ends 20 s before the deadline (a step
# with no time left gets 1 s and shows up as timed out in its log)
tl() {
  local t=$((deadline - SECONDS - 20))
  [ "$t" -gt "$1" ] && t=$1
  [ "$t" -lt 1 ] && t=1
  echo "$t"
}

# stage NAME STATUS SECONDS: one row of the summary's stage table, a line on stdout, and the
# summary rewritten with what this call has so far
stage_done() {
  printf '%s\t%s\t%s\n' "$1" "$3" "$2" >> "$state/stages.tsv"
  echo "== $1: $2 (${3} s)"
  write_summary
}

# ---- the Debian packages, unpacked into the prefix once per machine ----
fallback_dir=""
unpack_deps() {
  if ! ls .gpudeps/*.deb >/dev/null 2>&1; then
    echo "no .gpudeps/*.deb (carry [\".gpudeps\"]): relying on the system's packages"
    return 0
  fi
  local sum stamp="$prefix/.v3deps" f
  sum=$(find .gpudeps -name '*.deb' -printf '%s %f\n' | sort | cksum)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    rm -rf "$prefix"
    mkdir -p "$prefix/gomp"
    for f in .gpudeps/*.deb; do
      # libgomp belongs to the compiler: ours only when the system has none (a bookworm copy
      # ahead of a newer gcc's on the loader path could lack symbols that gcc emits)
      local dst=$prefix
      case $(basename "$f") in libgomp1_*) dst="$prefix/gomp" ;; esac
      if command -v dpkg >/dev/null; then
        dpkg -x "$f" "$dst" || return 1
      else # no dpkg: a .deb is an ar archive holding data.tar.*
        local t
        t=$(mktemp -d)
        (cd "$t" && ar x "$root/$f" && tar -xf data.tar.* -C "$dst") || return 1
        rm -rf "$t"
      fi
    done
    # the .pc files say prefix=/usr (and some libdir=/usr/lib/...): point them into the prefix
    find "$prefix" -name '*.pc' -exec sed -i -e "s#=/usr#=$prefix/usr#g" -e "s#-I/usr/#-I$prefix/usr/#g" \
      -e "s#-L/usr/#-L$prefix/usr/#g" {} +
    echo "$sum" > "$stamp"
    echo "unpacked $(find .gpudeps -name '*.deb' | wc -l) packages into $prefix"
  fi
  # test_gpu_sft reads ../shared/data (tests/CMakeLists.txt), which stays behind with the checkout
  if [ "$dry" != 1 ] && [ ! -e ../shared/data/deepseek-v3/tokenizer.json ] && [ -f .gpudeps/shared-data.tar.gz ]; then
    mkdir -p ../shared/data && tar -xzf .gpudeps/shared-data.tar.gz -C ../shared/data &&
      echo "unpacked .gpudeps/shared-data.tar.gz into ../shared/data"
  fi
  if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 '; then
    fallback_dir="$prefix/gomp/usr/lib/$arch"
    ln -sf libgomp.so.1 "$fallback_dir/libgomp.so"
    echo "the system has no libgomp.so.1: using the bundled one"
  fi
}

# cuBLAS: from the CUDA toolkit beside nvcc; when that has none (a toolkit of nvcc alone), from
# PyTorch's pip package (nvidia/cu13/lib), whose version matches the same driver.
cublas_args=()
find_cublas() {
  local tk lib
  tk=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." 2>/dev/null && pwd)
  if [ "${V3_GPU_CUBLAS:-auto}" != pip ] &&
     ls "$tk"/lib64/libcublas.so "$tk"/targets/*/lib/libcublas.so >/dev/null 2>&1; then
    return 0
  fi
  lib=$("$py" -c 'import glob, os, nvidia
print("\n".join(sorted(p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "**", "libcublas*.so*"), recursive=True))))' 2>/dev/null)
  local blas lt
  blas=$(echo "$lib" | grep '/libcublas\.so' | head -1)
  lt=$(echo "$lib" | grep '/libcublasLt\.so' | head -1)
  if [ -z "$blas" ] || [ -z "$lt" ]; then
    echo "no libcublas beside nvcc ($tk) nor in PyTorch's nvidia packages"
    return 0
  fi
  echo "cuBLAS from PyTorch's package: $blas"
  cublas_args=(-DCUDA_cublas_LIBRARY="$blas" -DCUDA_cublasLt_LIBRARY="$lt"
               -DCMAKE_CUDA_FLAGS="-I$(dirname "$(dirname "$blas")")/include")
}

# ---- build: only the targets the requested stages run ----
targets() {
  local t=(v3tune) f
  if want test || [ $build_only = 1 ]; then
    t+=(test_ops)
    for f in tests/unit/test_gpu_*.c; do [ -e "$f" ] && t+=("$(basename "$f" .c)"); done
  fi
  if { want kernels || [ $build_only = 1 ]; } && [ "$cuda" = ON ]; then t+=(bench_gpu_ops); fi
  if want store || [ $build_only = 1 ]; then t+=(bench_store); fi
  # bench_model also writes the preset's config.json that every Python side reads
  t+=(bench_model)
  echo "${t[@]}"
}

do_build() {
  local log="$out/build.log" t0=$SECONDS rc=0 gen=() extra=() keep=()
  {
    echo "$(date -u '+%F %T UTC'), $(uname -m), $jobs cores, stages: ${stages[*]}"
    command -v nvidia-smi >/dev/null &&
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    [ -n "$nvcc" ] && "$nvcc" --version | tail -1
    echo "cmake $(cmake --version | head -1 | awk '{print $3}'), $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null | cut -d= -f2), $("$py" -c 'from importlib.metadata import version as v
print("torch", v("torch"), "transformers", v("transformers"))' 2>&1 | tail -1)"
  } > "$state/env.txt" 2>&1
  cp "$state/env.txt" "$log"
  {
    unpack_deps || rc=1
    [ "$cuda" = ON ] && [ -n "$nvcc" ] && find_cublas
  } >> "$log" 2>&1
  command -v ninja >/dev/null && gen=(-G Ninja)
  [ -f "$build/CMakeCache.txt" ] && gen=() # the generator of an existing build dir stays
  if [ -x "$prefix/usr/bin/pkgconf" ] && ! command -v pkg-config >/dev/null; then
    extra+=(-DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf")
  fi
  if [ -e "$prefix/usr/lib/$arch/openblas-pthread/libopenblas.so" ]; then # not on CMake's paths
    extra+=(-DOPENBLAS_LIB="$prefix/usr/lib/$arch/openblas-pthread/libopenblas.so"
            -DCBLAS_INCLUDE="$prefix/usr/include/$arch/openblas-pthread")
  fi
  [ -n "$nvcc" ] && extra+=(-DCMAKE_CUDA_COMPILER="$nvcc")
  if [ $rc -eq 0 ]; then
    withdeps cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DV3_CUDA="$cuda" -DV3_MPI=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$prefix/usr" "${extra[@]}" "${cublas_args[@]}" \
      >> "$log" 2>&1 || rc=1
  fi
  if [ $rc -eq 0 ]; then
    local t
    if [ "${V3_GPU_TARGETS:-}" = all ]; then t=(); else read -ra t <<< "${V3_GPU_TARGETS:-$(targets)}"; fi
    if [ "$cuda" = ON ] && ! grep -q 'v3tune: CUDA ON' "$log"; then # no nvcc or no toolkit found
      echo "gpu_run: WARNING: the CUDA backend is NOT in this build (see build.log)"
      read -ra t <<< "${t[*]/bench_gpu_ops/}"
    fi
    echo "building: ${t[*]:-everything}" >> "$log"
    # keep going past a failed target, so that the stages whose binaries did build still run
    if grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$build/CMakeCache.txt"; then keep=(-- -k 0); else keep=(-- -k); fi
    withdeps cmake --build "$build" -j"$jobs" ${t[@]:+--target "${t[@]}"} "${keep[@]}" >> "$log" 2>&1 || rc=1
  fi
  grep -E 'v3tune: CUDA|Found CUDAToolkit|cuBLAS from' "$log" | sed 's/^-- //'
  if [ $rc -ne 0 ]; then
    tail -n 25 "$log"
    stage_done build FAILED $((SECONDS - t0))
  else
    stage_done build ok $((SECONDS - t0))
  fi
  return $rc
}

# ---- test ----
do_test() {
  local log="$out/test.log" t0=$SECONDS rc=0
  (cd "$build" && withdeps timeout "$(tl 400)" ctest -L gpu --output-on-failure --timeout 300) > "$log" 2>&1 || rc=1
  echo "== test_ops: every op of the compiled backends against the CPU" >> "$log"
  (cd "$build" && withdeps timeout "$(tl 300)" ctest -R '^test_ops$' --output-on-failure -V) >> "$log" 2>&1 || rc=1
  grep -E 'tests passed|No tests were found|Test +#|checks,' "$log" | tail -n 12
  [ $rc -ne 0 ] && tail -n 15 "$log"
  stage_done test "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $((SECONDS - t0))
}

# ---- the config of the preset (for the Python sides and the summary) ----
config="$state/config.json"
write_config() {
  withdeps "$build/bench/bench_model" --preset "$preset" --config-out "$config"
}

# ---- kernels ----
do_kernels() {
  local log="$out/kernels.log" jl="$out/kernels.jsonl" t0=$SECONDS rc=0 r
  : > "$jl"
  echo "# $(date -u '+%F %T UTC') kernels: preset $preset, $seq tokens" > "$log"
  write_config >> "$log" 2>&1 || rc=1
  if [ -x "$build/bench/bench_gpu_ops" ]; then
    withdeps timeout "$(tl 240)" "$build/bench/bench_gpu_ops" --preset "$preset" --tokens "$seq" >> "$jl" 2>> "$log"
    r=$?
    [ $r -ne 0 ] && [ $r -ne 77 ] && rc=1
    [ $r -eq 77 ] && grep skipped "$jl" >> "$log"
  else
    echo "bench_gpu_ops not built (CUDA $cuda): our side skipped" >> "$log"
  fi
  local dry_arg=()
  [ "$dry" = 1 ] && dry_arg=(--dry-run)
  PYTHONUNBUFFERED=1 timeout "$(tl 300)" "$py" bench/gpu_ops_torch.py --config "$config" --tokens "$seq" \
    "${dry_arg[@]}" >> "$jl" 2>> "$log"
  r=$?
  [ $r -ne 0 ] && [ $r -ne 77 ] && rc=1
  grep -c '"ms"' "$jl" | sed 's/^/timed cases: /'
  [ $rc -ne 0 ] && tail -n 15 "$log"
  stage_done kernels "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $((SECONDS - t0))
}

# ---- sft ----
do_sft() {
  local log="$out/sft.log" jl="$out/sft.jsonl" t0=$SECONDS rc=0 r dev=cuda dry_arg=() d
  : > "$jl"
  [ "$dry" = 1 ] && dev=cpu && dry_arg=(--dry-run)
  echo "# $(date -u '+%F %T UTC') sft: preset $preset, seq $seq, $steps timed steps" > "$log"
  write_config >> "$log" 2>&1 || rc=1
  for m in $v3_maths; do
    echo "== v3tune: bench_model --device $dev --math $m --adamw --fit (the plan first)" >> "$log"
    withdeps timeout "$(tl 200)" "$build/bench/bench_model" --preset "$preset" --seq "$seq" --steps "$steps" \
      --device "$dev" --math "$m" --adamw --fit --json >> "$jl" 2>> "$log"
    r=$?
    [ $r -ne 0 ] && [ $r -ne 77 ] && rc=1 && echo "bench_model ($m) exited $r" >> "$log"
  done
  grep -E 'does not fit|^total|optimizer state' "$log"
  # the MFU denominator, measured in this call (the kernels stage may have run in another)
  PYTHONUNBUFFERED=1 timeout "$(tl 90)" "$py" bench/gpu_ops_torch.py --config "$config" --only ceiling \
    "${dry_arg[@]}" >> "$jl" 2>> "$log" || true
  for d in $hf_dtypes; do
    echo "== HF transformers $d" >> "$log"
    PYTHONUNBUFFERED=1 timeout "$(tl 240)" "$py" bench/sft_hf_gpu.py --config "$config" --seq "$seq" \
      --steps "$steps" --dtype "$d" --fit "${dry_arg[@]}" >> "$jl" 2>> "$log"
    r=$?
    [ $r -ne 0 ] && [ $r -ne 77 ] && rc=1 && echo "sft_hf_gpu.py ($d) exited $r" >> "$log"
  done
  if [ "${V3_GPU_PROFILE:-1}" = 1 ]; then # where our step's time goes, op by op (synchronised)
    echo "== v3tune: bench_model --profile (1 warm-up + 1 step, each op timed after a device sync)" >> "$log"
    withdeps timeout "$(tl 180)" "$build/bench/bench_model" --preset "$preset" --seq "$seq" --steps 1 \
      --device "$dev" --math "${v3_maths%% *}" --adamw --fit --profile >> "$log" 2>&1 || echo "bench_model --profile exited $?" >> "$log"
  fi
  [ $rc -ne 0 ] && tail -n 15 "$log"
  stage_done sft "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $((SECONDS - t0))
}

# ---- store (CPU and disk only) ----
do_store() {
  local log="$out/store.log" t0=$SECONDS rc=0 n=${V3_GPU_STORE_SAMPLES:-200000} d dirs=("$build")
  [ "$dry" = 1 ] && n=2000
  [ -d /dev/shm ] && dirs+=(/dev/shm)
  {
    echo "# $(date -u '+%F %T UTC') store: $n samples of 1024 tokens, $(nproc) cores"
    df -h "$build" /dev/shm 2>/dev/null
    lsblk -d -o NAME,ROTA,MODEL,SIZE 2>/dev/null
  } > "$log"
  for d in "${dirs[@]}"; do
    for p in 65536 32768; do
      echo "== $d, page $p" >> "$log"
      withdeps timeout "$(tl 120)" "$build/bench/bench_store" insert --dir "$d" --samples "$n" \
        --tokens 1024 --page-size "$p" >> "$log" 2>&1 || { rc=1; echo "bench_store exited $?" >> "$log"; }
    done
  done
  grep -E '^==|committed|closed' "$log"
  stage_done store "$([ $rc -eq 0 ] && echo ok || echo FAILED)" $((SECONDS - t0))
}

write_summary() {
  [ -f "$config" ] || write_config > /dev/null 2>&1 || return 0
  "$py" bench/gpu_summary.py --config "$config" --kernels "$out/kernels.jsonl" --sft "$out/sft.jsonl" \
    --stages "$state/stages.tsv" --env "$state/env.txt" > "$out/summary.md" 2>> "$out/build.log"
}

# A failed build does not stop the stages: each runs what did build (and PyTorch's side).
rm -f "$config" # written again by this call's bench_model, for this call's preset
do_build
want test && do_test
want kernels && do_kernels
want sft && do_sft
want store && do_store

echo
[ -f "$out/summary.md" ] && cat "$out/summary.md"
echo "gpu_run: logs in $out: $(find "$out" -maxdepth 1 -type f -printf '%f ')"
