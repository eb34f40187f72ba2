#!/usr/bin/env bash
# test_samples.sh — `v3tune samples` and `v3tune runs` on a small deterministic GRPO run written
# through the store's C API (bench_store fixture): filters, ordering, JSON, the text view, exit
# codes, and files a reader must refuse without touching (not SQLite, truncated, newer schema).
set -u
V3TUNE=${V3TUNE:?V3TUNE must name the v3tune binary}
FIXTURE=${V3_BENCH_STORE:-${V3TUNE%/*}/bench/bench_store}
if [ ! -x "$FIXTURE" ]; then
    echo "SKIP: fixture writer $FIXTURE not built"
    exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/v3samples.XXXXXX")
fails=0
pass=0
check() { # check NAME CONDITION-COMMAND...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name" >&2; fails=$((fails + 1)); fi
}
eq() { [ "$1" = "$2" ] || { echo "  expected [$2], got [$1]" >&2; return 1; }; }
has() { grep -qF -- "$2" <<<"$1" || { echo "  [$2] not in: ${1:0:400}" >&2; return 1; }; }

mkdir -p "$d/runs/a" "$d/runs/empty"
"$FIXTURE" fixture "$d/runs/a" || { echo "FAIL: fixture"; exit 1; }
db="$d/runs/a/run.db"
sum_before=$(md5sum <"$db")

# help and usage errors
out=$("$V3TUNE" samples --help); check "help exit" eq $? 0; check "help text" has "$out" "--min-reward"
"$V3TUNE" samples >/dev/null 2>&1; check "no RUN_DIR -> 2" eq $? 2
"$V3TUNE" samples "$d/runs/a" --step abc >/dev/null 2>&1; check "--step abc -> 2" eq $? 2
"$V3TUNE" samples "$d/runs/a" --order sideways >/dev/null 2>&1; check "--order -> 2" eq $? 2
"$V3TUNE" samples "$d/runs/a" --bogus >/dev/null 2>&1; check "unknown option -> 2" eq $? 2
"$V3TUNE" samples "$d/runs/a" --limit >/dev/null 2>&1; check "missing value -> 2" eq $? 2
"$V3TUNE" runs --help >/dev/null; check "runs help" eq $? 0

# counts through the filters (3 steps x 2 prompts x 4 completions)
n() { "$V3TUNE" samples "$d/runs/a" --json "$@" | wc -l; }
check "all" eq "$(n --limit 0)" 24
check "default limit 20" eq "$(n)" 20
check "--step 2" eq "$(n --step 2)" 8
check "--step 2 only step 2" eq "$("$V3TUNE" samples "$d/runs/a" --step 2 --json | grep -c '"step":2,')" 8
check "--prompt 2" eq "$(n --prompt 2 --limit 0)" 12
check "--min-reward 1" eq "$(n --min-reward 1 --limit 0)" 12
check "--max-reward 0.5" eq "$(n --max-reward 0.5 --limit 0)" 12
check "--min/--max" eq "$(n --min-reward 0.1 --max-reward 0.2 --limit 0)" 6
check "--where" eq "$(n --where "s.finish_reason = 'length'" --limit 0)" 6
check "--where on prompts" eq "$(n --where "p.text LIKE '%prime%'" --limit 0)" 12
check "--run 1" eq "$(n --run 1 --limit 0)" 24
check "--run 2" eq "$(n --run 2 --limit 0)" 0

# ordering: best is 1.13 (right answer + format at step 3), worst 0.01
best=$("$V3TUNE" samples "$d/runs/a" --order best --limit 1 --json)
check "best reward" has "$best" '"reward":1.13'
check "best is step 3" has "$best" '"step":3,'
worst=$("$V3TUNE" samples "$d/runs/a" --order worst --limit 1 --json)
check "worst reward" has "$worst" '"reward":0.01'
check "worst has the script error" has "$worst" 'format.lua:7: attempt to index a nil value'
recent=$("$V3TUNE" samples "$d/runs/a" --order recent --limit 1 --json)
check "recent is the last id" has "$recent" '"id":24,'

# JSON fields and blobs
tok=$("$V3TUNE" samples "$d/runs/a" --limit 1 --json --tokens)
check "token ids" has "$tok" '"token_ids":[100,200,300,1]'
check "logprobs" has "$tok" '"logprobs":[-0.5,-0.25,-1.0,-0.125]'
check "trainer logprobs" has "$tok" '"trainer_logprobs":[-0.5,'
check "ref logprobs null" has "$tok" '"ref_logprobs":null'
check "fields as JSON" has "$tok" '"fields":{"answer":"4"}'
check "rewards per function" has "$tok" '"correctness":{"score":1.0'
check "advantage" has "$tok" '"advantage":1.0'
"$V3TUNE" samples "$d/runs/a" --tokens >/dev/null 2>&1; check "--tokens without --json -> 2" eq $? 2

# the readable view
txt=$("$V3TUNE" samples "$d/runs/a" --order worst --limit 1)
check "text: header" has "$txt" "step 1  prompt"
check "text: rewards" has "$txt" "format=none [error: format.lua:7"
check "text: advantage" has "$txt" "advantage -1.0000"
check "text: prompt" has "$txt" "What is 2+2?"
check "text: completion" has "$txt" "The answer is 9."

# --where cannot smuggle statements; bad SQL is a usage error naming the file
out=$("$V3TUNE" samples "$d/runs/a" --where "1; DROP TABLE samples" 2>&1); rc=$?
check "two statements -> 2" eq $rc 2
out=$("$V3TUNE" samples "$d/runs/a" --where "nonsense((" 2>&1); rc=$?
check "bad SQL -> 2" eq $rc 2
check "bad SQL message names the db" has "$out" "run.db"
check "still 24 samples" eq "$(n --limit 0)" 24

# runs
out=$("$V3TUNE" runs "$d/runs")
check "runs: exit" eq $? 0
check "runs: dir" has "$out" "$d/runs/a"
check "runs: status" has "$out" "completed"
check "runs: last loss" has "$out" "0.3333"
check "runs: last-step reward" has "$out" "0.6050"
check "runs: samples" has "$out" " 24 "
js=$("$V3TUNE" runs "$db" --json)
check "runs json" has "$js" '"status":"completed"'
check "runs json steps" has "$js" '"steps":3,'

# sqlite3 shell reads the same file
if command -v sqlite3 >/dev/null; then
    check "sqlite3 shell" eq "$(sqlite3 "$db" 'SELECT count(*), sum(length(token_ids)) / 4 FROM samples')" "24|96"
fi

# readers never modify: the db file is byte-identical after all of the above
check "db untouched by readers" eq "$(md5sum <"$db")" "$sum_before"

# a run marked running with no writer is dead
cp "$db" "$d/dead.db"
sqlite3 "$d/dead.db" "UPDATE runs SET status = 'running'" 2>/dev/null
check "dead run" has "$("$V3TUNE" runs "$d/dead.db")" "dead"

# files that must be refused and left alone
"$V3TUNE" samples "$d/nothing" >/dev/null 2>&1; check "missing -> 1" eq $? 1
check "missing not created" eq "$(ls "$d" | grep -c nothing)" 0
printf 'not a database\n' >"$d/runs/empty/run.db"
out=$("$V3TUNE" samples "$d/runs/empty" 2>&1); rc=$?
check "text file -> 1" eq $rc 1
check "text file message" has "$out" "not an SQLite database"
check "text file untouched" eq "$(cat "$d/runs/empty/run.db")" "not a database"
out=$("$V3TUNE" runs "$d/runs" 2>&1); rc=$?
check "runs with a bad run.db -> 1" eq $rc 1
check "runs still lists the good one" has "$out" "completed"
cp "$db" "$d/newer.db"
sqlite3 "$d/newer.db" "PRAGMA user_version = 99"
out=$("$V3TUNE" samples "$d/newer.db" 2>&1); rc=$?
check "newer schema -> 1" eq $rc 1
check "newer schema message" has "$out" "newer v3tune"
size=$(stat -c %s "$db")
head -c $((size / 2 / 32768 * 32768)) "$db" >"$d/trunc.db"
out=$("$V3TUNE" samples "$d/trunc.db" 2>&1); rc=$?
check "truncated -> 1" eq $rc 1
check "truncated message" has "$out" "truncated"

echo "test_samples: $pass passed, $fails failed"
[ $fails -eq 0 ] && rm -rf "$d"
[ $fails -eq 0 ]
