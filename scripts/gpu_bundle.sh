#!/usr/bin/env bash
# gpu_bundle.sh — run HERE (Debian, with apt) before a session on a lent GPU machine: downloads
# the Debian packages the build needs into .gpudeps/ at the repo root, because that machine has
# no network and very likely none of our -dev packages. scripts/gpu_run.sh unpacks them there
# into a prefix (never into /: see docs/gpu-run.md) and points CMake, pkg-config and the loader
# at it. The folder is ignored through .git/info/exclude and travels only when a call names it
# in carry. The shared data the GPU tests read goes along (see below).
#   scripts/gpu_bundle.sh            download (again) and print the size
#   scripts/gpu_bundle.sh --check    also unpack into a temporary prefix and configure + build
#                                    v3tune against it (prints what CMake resolved, and where)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpudeps

# The -dev packages of CMakeLists.txt (pkg-config modules, OpenMP, OpenBLAS) and pkg-config
# itself, then their run-time closure (apt-cache depends --recurse on the libraries), less what
# every glibc system has and what must stay the system's own: libc6, libgcc-s1, libstdc++6
# (a bookworm copy would shadow a newer one), zlib1g, gcc-12-base (documentation only).
# libreadline-dev (a dependency of liblua5.4-dev) is left out: only the lua binary needs it;
# so are OpenBLAS's OpenMP and serial builds (alternatives of the pthread one that CMake is
# pointed at). MPI is left out: the build treats it as optional and the GPU runs need one process.
dev=(liblua5.4-dev libjansson-dev libonig-dev libsqlite3-dev libcurl4-openssl-dev libzstd-dev
     libopenblas-dev libopenblas-pthread-dev pkg-config pkgconf pkgconf-bin)
roots=(liblua5.4-0 libjansson4 libonig5 libsqlite3-0 libcurl4 libzstd1 libopenblas0
       libopenblas0-pthread libgomp1 libpkgconf3 pkgconf-bin)
skip='^(libc6|libgcc-s1|libstdc\+\+6|zlib1g|gcc-[0-9]+-base|libopenblas0-(openmp|serial))$'

if ! apt-cache show libcurl4 >/dev/null 2>&1; then
  echo "gpu_bundle: apt-get update"
  apt-get update -qq
fi
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "${roots[@]}" | grep -v '^ ' | grep -v '^<' | sort -u)
mapfile -t pkgs < <(printf '%s\n' "${dev[@]}" "$closure" | grep -Ev "$skip" | sort -u)

rm -rf "$dest"
mkdir -p "$dest"
# amd64 explicitly: the device machine is x86-64 whatever this machine is
(cd "$dest" && apt-get download -qq -o APT::Architecture=amd64 -o APT::Sandbox::User=root "${pkgs[@]}")
printf '%s\n' "${pkgs[@]}" > "$dest/PACKAGES"

# The shared data that test_gpu_sft reads (GSM8K rows, the DeepSeek-V3 tokenizer) lives beside
# the checkout and does not travel with it: the first 400 rows and the tokenizer, compressed.
# gpu_run.sh unpacks them into ../shared/data on the device when that is absent.
data=${V3_SHARED_DATA:-../shared/data}
if [ -f "$data/deepseek-v3/tokenizer.json" ] && [ -f "$data/gsm8k/train.jsonl" ]; then
  t=$(mktemp -d)
  mkdir -p "$t/deepseek-v3" "$t/gsm8k"
  cp "$data"/deepseek-v3/tokenizer*.json "$t/deepseek-v3/"
  head -n 400 "$data/gsm8k/train.jsonl" > "$t/gsm8k/train.jsonl"
  tar -czf "$dest/shared-data.tar.gz" -C "$t" .
  rm -rf "$t"
else
  echo "gpu_bundle: no $data/{deepseek-v3,gsm8k}: test_gpu_sft will skip on the device" >&2
fi

exclude=.git/info/exclude
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpudeps/' "$exclude" 2>/dev/null || echo '/.gpudeps/' >> "$exclude"

n=$(find "$dest" -name '*.deb' | wc -l)
echo "gpu_bundle: $n packages (+ shared-data.tar.gz) in $dest/, $(du -sh "$dest" | cut -f1) (carry [\"$dest\"])"

[ "${1:-}" = "--check" ] || exit 0

# ---- --check: build against the unpacked prefix only as far as this machine can show ----
# The system's own -dev packages are installed here too, so CMake could still fall back to them;
# the check prints what the link and compile lines name and fails if one is outside the prefix.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export V3_GPU_DEPS_PREFIX="$tmp/prefix" V3_GPU_BUILD="$tmp/build" OUT="$tmp/out" V3_GPU_CUDA=OFF
export V3_GPU_TARGETS=v3tune
bash scripts/gpu_run.sh build
echo "== what v3tune's link and compile lines name (from build.ninja)"
ninja_file="$tmp/build/build.ninja"
named=$( (grep -m1 'LINK_LIBRARIES' "$ninja_file" | tr ' ' '\n'; grep -m1 'INCLUDES' "$ninja_file" | tr ' ' '\n') |
        grep -E 'lua|jansson|onig|sqlite|curl|zstd|openblas|/include' | sed 's/^-I//' | sort -u)
echo "${named//$tmp\/prefix/<prefix>}"
outside=$(echo "$named" | grep '^/' | grep -v "^$tmp/prefix" | tr '\n' ' ' || true)
[ -n "$outside" ] && outside=" $outside"
echo "== where the loader finds them (LD_LIBRARY_PATH = the prefix, as gpu_run.sh sets it)"
LD_LIBRARY_PATH=$(V3_GPU_DEPS_PREFIX="$tmp/prefix" bash scripts/gpu_run.sh libpath) ldd "$tmp/build/v3tune" |
  grep -E 'lua|jansson|onig|sqlite|curl|zstd|openblas|gomp|nghttp|ssl|gssapi' | sed "s#$tmp/prefix#<prefix>#g"
echo "== packages owning the system headers the compiler read (only the C library's may appear)"
(cd "$tmp/build" && ninja -t deps) | grep -E '^ +/usr/include' | awk '{print $1}' | sort -u |
  xargs -r dpkg -S 2>/dev/null | cut -d: -f1 | tr ',' '\n' | sed 's/^ *//' | sort | uniq -c
own=$( (cd "$tmp/build" && ninja -t deps) | grep -E '^ +/usr/include' | awk '{print $1}' | sort -u |
      xargs -r dpkg -S 2>/dev/null | cut -d: -f1 | tr ',' '\n' | sed 's/^ *//' |
      grep -xF -f <(printf '%s\n' "${dev[@]}") || true)
[ -n "$own" ] && outside="$outside headers of: $own"
echo "== the newest glibc symbol version the bundled libraries need (the device's glibc must be as new)"
find "$tmp/prefix" -name '*.so*' -type f -exec objdump -T {} + 2>/dev/null | grep -o 'GLIBC_[0-9.]*' |
  sort -t. -k2,2n -u | tail -1
if [ -n "$outside" ]; then
  echo "gpu_bundle: resolved outside the prefix:$outside" >&2
  exit 1
fi
echo "gpu_bundle: check passed (every -dev dependency from the prefix; libgomp is the compiler's)"
