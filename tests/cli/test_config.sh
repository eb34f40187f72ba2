#!/usr/bin/env bash
# test_config.sh — `v3tune config`: resolved output, --set overrides, and each kind of error with
# its message and exit code (1 for a wrong config file, 2 for command-line misuse).
set -u
: "${V3TUNE:?set V3TUNE to the v3tune binary}"
: "${V3_SOURCE_DIR:?set V3_SOURCE_DIR to the source tree}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# run NAME WANT_RC WANT_TEXT ARGS... : runs v3tune config, checks exit code and that stdout+stderr
# contain WANT_TEXT (a fixed string)
run() {
  local name=$1 want_rc=$2 want=$3
  shift 3
  local out rc
  out=$("$V3TUNE" config "$@" 2>&1)
  rc=$?
  [ "$rc" -eq "$want_rc" ] || fail "$name: exit $rc, want $want_rc; output: $out"
  printf '%s' "$out" | grep -qF -- "$want" || fail "$name: output lacks '$want': $out"
  printf '%s' "$out" > "$tmp/$name.out"
}

example=$V3_SOURCE_DIR/examples/config_example.lua
cat > "$tmp/ok.lua" <<'LUA'
return {
  model = { dir = "models/tiny" },
  data = { train = { "a.jsonl" } },
  optim = { lr = 3e-4 },
}
LUA

# ok: defaults filled, values from the file kept, JSON parses
run ok 0 'lr = 0.0003, -- peak learning rate of AdamW [number: file]' "$tmp/ok.lua"
grep -qF 'kind = "cosine",' "$tmp/ok.out" || fail "ok: default sched.kind missing"
run example 0 '"micro_batch_tokens": 16384' "$example" --json
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/example.out" 2>/dev/null ||
  { command -v python3 >/dev/null && fail "example: --json output is not JSON"; }

# overrides by type: number, list, boolean-free open subtree, string choice
run override 0 '"lr": 0.001' "$tmp/ok.lua" --json --set optim.lr=1e-3 --set optim.betas=0.8,0.9 \
  --set run.meta.owner=alice --set sched.kind=linear
grep -qF '"betas": [' "$tmp/override.out" || fail "override: betas"
grep -qF '"owner": "alice"' "$tmp/override.out" || fail "override: open subtree"
grep -qF '"kind": "linear"' "$tmp/override.out" || fail "override: sched.kind"
run override_literal 0 'betas = { 0.9, 0.5 }' "$tmp/ok.lua" --set 'optim.betas={0.9, 1/2}'

# the Lua dump loads back to the same configuration
"$V3TUNE" config "$tmp/ok.lua" > "$tmp/dump.lua" || fail "dump"
"$V3TUNE" config "$tmp/dump.lua" --json > "$tmp/a.json" 2>&1 || fail "reloading the dump: $(cat "$tmp/a.json")"
"$V3TUNE" config "$tmp/ok.lua" --json > "$tmp/b.json" || fail "json"
cmp -s "$tmp/a.json" "$tmp/b.json" || fail "dump does not round-trip"

# unknown key in the file: file:line, the key, a suggestion; exit 1
cat > "$tmp/unknown.lua" <<'LUA'
return {
  model = { dir = "models/tiny" },
  data = { train = { "a.jsonl" } },
  optim = {
    lrr = 3e-4,
  },
}
LUA
run unknown_key 1 "unknown.lua:5: unknown key 'optim.lrr' (did you mean 'optim.lr'?)" "$tmp/unknown.lua"
# unknown key in --set: command-line misuse, exit 2
run unknown_set 2 "unknown key 'optim.lrr' (did you mean 'optim.lr'?)" "$tmp/ok.lua" --set optim.lrr=1
run unknown_section 2 "(did you mean 'optim.lr'?)" "$tmp/ok.lua" --set train.lr=1
run bad_set_value 2 "--set data.seq_len: expected integer, found \"long\"" "$tmp/ok.lua" --set data.seq_len=long
run bad_set_form 2 '--set expects KEY=VALUE' "$tmp/ok.lua" --set optim.lr

# type mismatch: key, expected and found types, line
cat > "$tmp/type.lua" <<'LUA'
return {
  model = { dir = "models/tiny" },
  data = { train = { "a.jsonl" }, seq_len = "long" },
}
LUA
run type_mismatch 1 "type.lua:3: key 'data.seq_len': expected integer, found string \"long\"" "$tmp/type.lua"

# an infinite loop ends with the budget error, quickly
printf 'local n = 0\nwhile true do n = n + 1 end\n' > "$tmp/loop.lua"
start=$(date +%s)
run infinite_loop 1 "instruction budget of" "$tmp/loop.lua"
grep -qF "(at $tmp/loop.lua:2)" "$tmp/infinite_loop.out" || fail "loop: no location"
[ $(( $(date +%s) - start )) -lt 10 ] || fail "infinite loop took too long"
# the same inside pcall
printf 'while true do pcall(function() while true do end end) end\n' > "$tmp/pcall.lua"
run pcall_loop 1 "instruction budget of" "$tmp/pcall.lua"

# syntax error with file:line
printf 'return {\n  model = { dir = "m" }\n  data = {}\n}\n' > "$tmp/syntax.lua"
run syntax_error 1 "syntax.lua:3: '}' expected (to close '{' at line 1) near 'data'" "$tmp/syntax.lua"

# sandbox: no os/io
printf 'os.execute("touch %s/escaped")\nreturn {}\n' "$tmp" > "$tmp/escape.lua"
run escape 1 "escape.lua:1: attempt to index a nil value (global 'os')" "$tmp/escape.lua"
[ ! -e "$tmp/escaped" ] || fail "escape: os.execute ran"

# usage errors and other runtime failures
run missing_file 1 "No such file or directory" "$tmp/nope.lua"
run directory 1 "Is a directory" "$tmp"
run no_file 2 "missing the config FILE.lua"
run bad_schema 2 "unknown schema 'x'" "$tmp/ok.lua" --schema x
printf 'return { model = { dir = "m" } }\n' > "$tmp/required.lua"
run missing_required 1 "missing required key 'data.train'" "$tmp/required.lua" --schema sft
run generic 0 '"dir": "models/tiny"' "$tmp/unknown.lua" --schema generic --json
run help 0 "usage: v3tune config" --help

if [ "$fails" -ne 0 ]; then
  echo "test_config.sh: $fails failed" >&2
  exit 1
fi
echo "test_config.sh: ok"
