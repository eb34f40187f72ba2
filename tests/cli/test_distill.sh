#!/usr/bin/env bash
# test_distill.sh — `v3tune distill` end to end on the real R1 traces in ../shared/data:
# import (JSON arrays, JSONL, pretty-printed documents; duplicates; a bad row as file:line) →
# verify (built-in math + r1_format verifiers, compared with the sources' own labels) → filter
# (examples/distill_r1.lua) → export (r1 and original forms) → `v3tune data prepare` with the
# r1-keep-reasoning template (the reasoning carries the loss) → a short `v3tune sft` run on a tiny
# model → `distill generate` with the tiny model as a local teacher and a Python endpoint as an
# HTTP teacher (resumed with --max-requests, a 429 retried), verified and exported. Prints the
# counts of every stage. Skips (77) without the shared data or sqlite3.
set -u
: "${V3TUNE:?}" "${V3_SOURCE_DIR:?}" "${V3_SHARED_DATA:?}"
D="$V3_SHARED_DATA"
MIP="$D/r1_math_traces/mip_overthinking/response"
AIME="$D/r1_math_traces/reasoning_models_probing/initial_cot"
MA="$D/r1_traces_misguided_attention"
TOK="$D/deepseek-v3"
[ -f "$MIP/gsm8k/normal/deepseekR1/response.json" ] && [ -f "$MA/thinking_input_r1.json" ] &&
  [ -f "$TOK/tokenizer.json" ] || { echo "skip: no shared R1 traces"; exit 77; }
command -v sqlite3 >/dev/null || { echo "skip: needs sqlite3"; exit 77; }
"$V3TUNE" distill --help >/dev/null 2>&1 || { echo "skip: distill not registered"; exit 77; }
fail=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
no() { echo "FAIL: $*"; fail=$((fail+1)); }
code() { # expected-code description command...
  local want=$1 what=$2; shift 2
  "$@" >"$t/out" 2>"$t/err"
  local got=$?
  [ "$got" -eq "$want" ] || { no "$what: exit $got, expected $want"; sed 's/^/    /' "$t/err" | head -5; }
}
q() { sqlite3 "$t/run/run.db" "$1"; }
cfg="$V3_SOURCE_DIR/examples/distill_r1.lua"

# ---- usage ----
code 2 "distill without subcommand" "$V3TUNE" distill
code 2 "unknown subcommand" "$V3TUNE" distill frob
code 2 "import without --db" "$V3TUNE" distill import "$MA/thinking_input_r1.json"
code 2 "import without files" "$V3TUNE" distill import --db "$t/x"
code 2 "bad --form" "$V3TUNE" distill import x.jsonl --db "$t/x" --form csv
code 2 "bad --field" "$V3TUNE" distill import x.jsonl --db "$t/x" --field nokey=a
code 2 "unknown option" "$V3TUNE" distill verify --db "$t/x" --bogus 1
code 2 "filter without --config" "$V3TUNE" distill filter --db "$t/x"
code 2 "export without --out" "$V3TUNE" distill export --db "$t/x"
code 2 "bad --set" "$V3TUNE" distill import x.jsonl --db "$t/x" --set import.nokey=1
code 1 "missing input file" "$V3TUNE" distill import "$t/none.jsonl" --db "$t/x"
code 1 "verify without a store" "$V3TUNE" distill verify --db "$t/nothere"
code 2 "generate without a teacher" "$V3TUNE" distill generate --db "$t/x"
code 2 "generate with two teachers" "$V3TUNE" distill generate --db "$t/x" --url http://127.0.0.1:9/v1 --model "$t/m"
code 2 "generate --url without --teacher" "$V3TUNE" distill generate --db "$t/x" --url http://127.0.0.1:9/v1
code 2 "generate bad --max-requests" "$V3TUNE" distill generate --db "$t/x" --model "$t/m" --max-requests 0
code 0 "config --schema distill" "$V3TUNE" config "$cfg" --schema distill
grep -q "per_prompt = 1" "$t/out" || no "config does not resolve filter.per_prompt"

# ---- import ----
"$V3TUNE" distill import "$MIP/gsm8k/normal/deepseekR1/response.json" "$MIP/math/normal/deepseekR1/response.json" \
  "$MA/thinking_input_r1.json" "$MA/output_queries_r10528.json" --db "$t/run" --config "$cfg" \
  >"$t/imp1" 2>"$t/imp1.err" || { no "import R1 files"; cat "$t/imp1.err"; }
cat "$t/imp1"
grep -q "4 files, 699 rows (1 bad, skipped)" "$t/imp1" || no "import 1 rows"
grep -q "traces read 828: added 828, duplicates 0" "$t/imp1" || no "import 1 traces"
grep -q "gsm8k/normal/deepseekR1/response.json:398: no reasoning trace found" "$t/imp1.err" ||
  no "the API-error row is not reported as file:line"
# R1-distill outputs start inside the reasoning: untagged text is cut-off reasoning
"$V3TUNE" distill import "$AIME"/*.jsonl --db "$t/run" --source-model deepseek-r1-distill \
  --set import.starts_in_reasoning=true >"$t/imp2" 2>&1 || { no "import AIME files"; cat "$t/imp2"; }
cat "$t/imp2"
grep -q "added 150, duplicates 0" "$t/imp2" || no "import 2 traces"
grep -q "24 cut off inside the reasoning" "$t/imp2" || no "24 cut-off AIME traces (SOURCE.md)"
# the same file again: every trace is a duplicate
"$V3TUNE" distill import "$MIP/math/normal/deepseekR1/response.json" --db "$t/run" >"$t/imp3" 2>&1 || no "re-import"
grep -q "added 0, duplicates 52" "$t/imp3" || { no "re-import is not all duplicates"; cat "$t/imp3"; }
[ "$(q "select count(*) from traces")" = 978 ] || no "traces stored: $(q "select count(*) from traces")"
[ "$(q "select count(*) from traces where source_model = 'deepseek-r1-0528'")" = 156 ] || no "model from the llm field"
[ "$(q "select count(*) from verdicts where verifier = 'source'")" = 202 ] || no "source labels"
[ "$(q "select json_extract(provenance, '\$.line') from traces where provenance like '%thinking_input_r1%' order by id limit 1")" = 3 ] ||
  no "document record line"

# ---- verify ----
"$V3TUNE" distill verify --db "$t/run" --config "$cfg" >"$t/ver" 2>&1 || { no "verify"; cat "$t/ver"; }
cat "$t/ver"
[ "$(q "select count(*) from verdicts where verifier in ('math', 'r1_format')")" = 1956 ] || no "a verdict per trace and function"
[ -s "$t/run/verifiers/math.lua" ] || no "built-in verifier source kept"
gsm=$(q "select avg(v.score) from traces t join verdicts v on v.trace_id = t.id and v.verifier = 'math' where t.provenance like '%gsm8k/normal%'")
echo "R1 GSM8K accuracy by the math verifier: $gsm"
awk -v a="$gsm" 'BEGIN{exit !(a >= 0.9)}' || no "R1 GSM8K accuracy $gsm < 0.9"
agree=$(q "select avg(s.passed = (m.score = 1)) from verdicts s join verdicts m on m.trace_id = s.trace_id and m.verifier = 'math' where s.verifier = 'source'")
echo "agreement of the math verifier with the sources' own labels: $agree"
awk -v a="$agree" 'BEGIN{exit !(a >= 0.95)}' || no "agreement $agree < 0.95"

# a user script beside the built-ins: its own verdicts, weight from the command line
cat >"$t/long.lua" <<'LUA'
return { name = "long_reasoning", score = function(s) return { score = #s.reasoning > 2000 and 1.0 or 0.0, n = #s.reasoning } end }
LUA
"$V3TUNE" distill verify --db "$t/run" --script "$t/long.lua:0.5" --jobs 2 >"$t/ver2" 2>&1 || { no "verify --script"; cat "$t/ver2"; }
[ "$(q "select count(*) from verdicts where verifier = 'long_reasoning' and weight = 0.5 and json_extract(extra, '\$.n') > 0")" = 978 ] ||
  no "user script verdicts"

# ---- filter ----
"$V3TUNE" distill filter --db "$t/run" --config "$cfg" --tokenizer "$TOK" >"$t/fil" 2>&1 || { no "filter"; cat "$t/fil"; }
cat "$t/fil"
kept=$(q "select n_kept from selections order by id desc limit 1")
[ "$kept" -gt 500 ] || no "kept $kept"
[ "$(q "select count(*) from selection_traces st join verdicts v on v.trace_id = st.trace_id and v.verifier = 'math' where st.kept and v.score < 1")" = 0 ] ||
  no "an incorrect trace was kept"
[ "$(q "select count(*) from selection_traces st join traces t on t.id = st.trace_id where st.kept and t.truncated")" = 0 ] ||
  no "a cut-off trace was kept"
[ "$(q "select max(n) from (select count(*) n from traces where accepted = 1 group by prompt_id)")" = 1 ] ||
  no "more than one trace per prompt"
[ "$(q "select count(*) from traces where accepted = 1")" = "$kept" ] || no "traces.accepted mirrors the selection"
# a second run with other rules is another selection; the first stays
"$V3TUNE" distill filter --db "$t/run" --config "$cfg" --tokenizer "$TOK" --set filter.per_prompt=0 \
  --set filter.correct=source >"$t/fil2" 2>&1 || no "second filter"
[ "$(q "select count(*) from selections")" = 2 ] || no "second selection"
[ "$(q "select count(*) from selection_traces where selection_id = 1 and kept")" = "$kept" ] || no "first selection changed"

# ---- export ----
"$V3TUNE" distill export --db "$t/run" --selection 1 --config "$cfg" --out "$t/sft.jsonl" >"$t/exp" 2>&1 || { no "export"; cat "$t/exp"; }
cat "$t/exp"
[ "$(wc -l <"$t/sft.jsonl")" = "$kept" ] || no "exported lines != kept"
[ "$(grep -c '"reasoning_content":"[^"]' "$t/sft.jsonl")" = "$kept" ] || no "a conversation without reasoning_content"
grep -q '"role":"system","content":"Think step by step' "$t/sft.jsonl" || no "system prompt from the config"
"$V3TUNE" distill export --db "$t/run" --selection 1 --form original --out "$t/orig.jsonl" >"$t/exp2" 2>&1 || no "export original"
cat "$t/exp2"
grep -q '"origin":"solution"' "$t/orig.jsonl" && ! grep -q reasoning_content "$t/orig.jsonl" || no "original form"

# ---- the template keeps the reasoning: tokens with r1-keep-reasoning vs r1 (which drops it) ----
n_ids() { "$V3TUNE" tokenize --tokenizer "$TOK" --chat --template "$1" | sed 's/"mask".*//' | tr -cd ',' | wc -c; }
keep=$(head -1 "$t/sft.jsonl" | n_ids r1-keep-reasoning)
cut=$(head -1 "$t/sft.jsonl" | n_ids r1)
tid=$(head -1 "$t/sft.jsonl" | sed 's/.*"trace_id":\([0-9]*\).*/\1/')
rtok=$(q "select tokens from selection_traces where selection_id = 1 and trace_id = $tid")
echo "first conversation: $keep tokens with r1-keep-reasoning, $cut with r1; trace $tid has $rtok tokens"
[ $((keep - cut)) -gt $((rtok / 2)) ] || no "the reasoning is not in the rendered conversation"

# ---- data prepare: every exported conversation, reasoning in the loss ----
"$V3TUNE" data prepare --input "$t/sft.jsonl" --template r1-keep-reasoning --tokenizer "$TOK" \
  --out "$t/shards" --quiet >"$t/prep" 2>&1 || { no "data prepare"; cat "$t/prep"; }
cat "$t/prep"
grep -q "$kept rows -> $kept docs" "$t/prep" || no "prepare lost rows"
loss=$(sed -n 's/.* \([0-9]*\) loss tokens.*/\1/p' "$t/prep" | head -1)
ftok=$(q "select sum(tokens) from selection_traces where selection_id = 1 and kept")
echo "loss tokens $loss; tokens of the kept traces $ftok"
awk -v l="$loss" -v f="$ftok" 'BEGIN{exit !(l >= 0.95 * f)}' || no "loss tokens $loss do not cover the traces ($ftok)"

# ---- a short SFT run on a tiny model with the exported conversations ----
"$V3TUNE" init --preset tiny --dtype f32 --no-mtp --out "$t/model" --tokenizer "$TOK" >"$t/init.log" 2>&1 ||
  { no "init"; cat "$t/init.log"; }
head -n 24 "$t/sft.jsonl" >"$t/sft24.jsonl"
"$V3TUNE" sft "$V3_SOURCE_DIR/examples/sft_tiny.lua" --set "model.dir=$t/model" --set "run.dir=$t/sft" \
  --set "data.train=$t/sft24.jsonl" --set data.format=messages --set data.fields= \
  --set data.template=r1-keep-reasoning --set data.eval_fraction=0 --set data.grad_accum=1 \
  --set train.steps=3 --set eval.every=0 --set ckpt.every=0 --set train.threads=2 >"$t/sft.log" 2>&1 ||
  { no "sft"; tail -20 "$t/sft.log"; }
grep -E "^(step|done)" "$t/sft.log"
[ "$(sqlite3 "$t/sft/run.db" "select count(*) from steps where loss > 0 and loss < 100")" = 3 ] || no "sft steps"

# ---- generate: new traces from a local teacher (the tiny model above), then from an endpoint ----
printf '%s\n' '{"prompt": "What is 2+3?", "answer": "5"}' \
  '{"messages": [{"role": "user", "content": "Name a prime number."}], "answer": "7"}' \
  '{"question": "Natalia sold 48 clips in April and half as many in May. How many in all?", "answer": "#### 72"}' \
  >"$t/gp.jsonl"
gq() { sqlite3 "$t/gen/run.db" "$1"; }
gen() { "$V3TUNE" distill generate --db "$t/gen" --prompts "$t/gp.jsonl" "$@"; }
gen --model "$t/model" --n 2 --max-tokens 8 --max-requests 4 >"$t/gen1" 2>&1 || { no "generate (local)"; cat "$t/gen1"; }
cat "$t/gen1"
[ "$(gq "select count(*) from traces")" = 4 ] || no "generate --max-requests 4 stored $(gq "select count(*) from traces")"
gen --model "$t/model" --n 2 --max-tokens 8 >"$t/gen2" 2>&1 || { no "generate (local, rest)"; cat "$t/gen2"; }
cat "$t/gen2"
grep -q "samples wanted 6: 4 stored before, 2 asked now" "$t/gen2" || no "the second run did not continue"
[ "$(gq "select count(*) from traces where source_model = 'model'")" = 6 ] || no "local traces"
[ "$(gq "select count(distinct prompt_id || '/' || json_extract(provenance, '\$.sample')) from traces")" = 6 ] ||
  no "a prompt x sample stored twice"
[ "$(gq "select count(*) from traces where json_extract(provenance, '\$.teacher') = 'local' and
  json_extract(provenance, '\$.usage.completion_tokens') between 1 and 8")" = 6 ] || no "local provenance"
[ "$(gq "select json_extract(fields, '\$.answer') from prompts where text like 'Natalia%'")" = 72 ] || no "reference answer"
if command -v python3 >/dev/null; then
  # an OpenAI-compatible endpoint: inline <think>, a 429 on each prime-prompt sample's first try
  python3 - "$t/port" <<'PY' &
import http.server, json, sys
hits = {}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        q = body["messages"][-1]["content"]
        k = (q, body.get("seed"))
        hits[k] = hits.get(k, 0) + 1
        if self.headers.get("Authorization") != "Bearer sk-cli-test":
            code, out = 401, {"error": {"message": "bad key"}}
        elif "prime" in q and hits[k] == 1:
            code, out = 429, {"error": {"message": "slow down"}}
        else:
            text = "<think>\nAdd them.\n</think>\n\nThe answer is $\\boxed{5}$."
            code, out = 200, {"id": "c1", "model": body["model"], "choices": [{"index": 0,
                "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 429: self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
PY
  spid=$!
  trap 'kill $spid 2>/dev/null; rm -rf "$t"' EXIT
  for _ in $(seq 100); do [ -s "$t/port" ] && break; sleep 0.1; done
  port=$(cat "$t/port" 2>/dev/null)
  V3_CLI_KEY=sk-cli-test gen --url "http://127.0.0.1:$port/v1" --teacher cli-teacher --key-env V3_CLI_KEY \
    --n 2 --seed 5 --max-in-flight 2 --retries 2 >"$t/gen3" 2>&1 || { no "generate (http)"; cat "$t/gen3"; }
  cat "$t/gen3"
  grep -q "stored 6 .*failed 0" "$t/gen3" || no "http: 6 stored"
  grep -q "attempts 8 (2 retries)" "$t/gen3" || no "http: the two 429s were retried"
  [ "$(gq "select count(*) from traces where source_model = 'cli-teacher' and reasoning = 'Add them.'")" = 6 ] ||
    no "http traces"
  [ "$(gq "select count(*) from traces where json_extract(provenance, '\$.usage.total_tokens') = 21")" = 6 ] ||
    no "http usage in provenance"
  V3_CLI_KEY=sk-cli-test gen --url "http://127.0.0.1:$port/v1" --teacher cli-teacher --key-env V3_CLI_KEY \
    --n 2 --seed 5 >"$t/gen4" 2>&1 || no "generate (http, again)"
  grep -q "6 stored before, 0 asked now" "$t/gen4" || no "http rerun asked again"
  kill $spid 2>/dev/null
fi
"$V3TUNE" distill verify --db "$t/gen" >"$t/gver" 2>&1 || { no "verify generated traces"; cat "$t/gver"; }
cat "$t/gver"
"$V3TUNE" distill export --db "$t/gen" --all --out "$t/gen.jsonl" >"$t/gexp" 2>&1 || { no "export generated"; cat "$t/gexp"; }
cat "$t/gexp"
[ "$(wc -l <"$t/gen.jsonl")" = "$(gq "select count(*) from traces")" ] || no "exported generated traces"
if command -v python3 >/dev/null; then
  [ "$(gq "select count(*) from verdicts v join traces t on t.id = v.trace_id join prompts p on p.id = t.prompt_id
    where v.verifier = 'math' and v.passed and t.source_model = 'cli-teacher'")" = 2 ] ||
    no "the teacher's two right answers (2+3) are verified"
fi

echo "runs in the distill store:"
q "select id, command, status from runs" | sed 's/^/  /'
[ "$(q "select count(*) from runs where command like 'distill %' and status = 'completed'")" = 7 ] || no "runs recorded"
[ $fail = 0 ] && echo "test_distill.sh: ok" || echo "test_distill.sh: $fail failed"
exit $((fail > 0))
