#!/usr/bin/env bash
# run_generate.sh — generation throughput of the rollout engine (bench_generate) against Hugging
# Face transformers' generate (bench/generate_hf.py), side by side in one run, on the `small`
# preset (random weights written once by `v3tune init --dtype DTYPE`, loaded by both sides, fp32
# on the CPU, same prompts, same thread count; with DTYPE=bf16, the released checkpoints' dtype,
# the engine keeps bf16 copies of the weights for decoding: the same values, half the bytes); then MTP speculative decoding on a model trained with
# the MTP loss (`v3tune sft`, moe.mtp_lambda > 0) on GSM8K: greedy without MTP, with MTP drafting
# over the whole vocabulary and over the engine's default draft vocabulary (token ids < 16384),
# and, at batch 1 without EOS stopping, HF transformers' generate on the same model and prompt.
#
#   bench/run_generate.sh BUILD_DIR [WORK_DIR]
#
# WORK_DIR (default: a fresh temp dir, removed at the end) keeps the models between runs: the
# small checkpoint and the MTP-trained tiny run are reused when already there.
# Environment: DTYPE (f32; bf16 uses WORK_DIR/small-bf16), THREADS (2), PROMPT_LEN (64), MAX_NEW (32), PROMPTS (32), N (8),
#   MTP_PRESET (tiny), MTP_STEPS (200), MTP_PROMPTS (8), MTP_MAX_NEW (128), REPEAT_B1 (5), REPEAT_BATCH (1),
#   REPEAT_MTP (3) (timed runs per measurement, the fastest reported: the machine is shared),
#   MTP_THREADS (1: the tiny model's steps are a few ms, and with 2 threads on a loaded 2-core
#   machine its many short parallel regions stall at barriers, which swamps what MTP changes),
#   ONLY (all, or some of: hf = b1 + batch, b1, batch, mtp; e.g. ONLY="b1 mtp").
# Prints one JSON line per measurement and a summary with the v3tune / HF ratios.
set -eu
build=${1:?usage: run_generate.sh BUILD_DIR [WORK_DIR]}
build=$(cd "$build" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
data=${V3_SHARED_DATA:-$root/../shared/data}
threads=${THREADS:-2}
dtype=${DTYPE:-f32}
plen=${PROMPT_LEN:-64}
max_new=${MAX_NEW:-32}
prompts=${PROMPTS:-32}
n=${N:-8}
mtp_steps=${MTP_STEPS:-200}
mtp_preset=${MTP_PRESET:-tiny}
mtp_prompts=${MTP_PROMPTS:-8}
mtp_max_new=${MTP_MAX_NEW:-128}
only=${ONLY:-all}
rep_b1=${REPEAT_B1:-5}
rep_batch=${REPEAT_BATCH:-1}
rep_mtp=${REPEAT_MTP:-3}
mtp_threads=${MTP_THREADS:-1}
if [ -n "${2:-}" ]; then
  work=$2
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
v3=$build/v3tune
bg=$build/bench/bench_generate
res=$work/results.jsonl
: > "$res"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -m) $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), threads $threads, small in $dtype, load $(cut -d' ' -f1-3 /proc/loadavg)"

run() { # label, command...: prints and records one JSON line tagged with the label
  local label=$1
  shift
  local line
  line=$("$@" 2>"$work/stderr.log") || { cat "$work/stderr.log" >&2; exit 1; }
  line=$(printf '%s' "$line" | tail -n 1)
  printf '{"case": "%s", %s\n' "$label" "${line#\{}" | tee -a "$res"
}

want() { # section: b1, batch or mtp
  case " $only " in *" all "* | *" $1 "*) return 0 ;; esac
  if [ "$1" != mtp ]; then case " $only " in *" hf "*) return 0 ;; esac; fi
  return 1
}
case $dtype in
  f32) small=$work/small ;;
  bf16) small=$work/small-bf16 ;;
  *) echo "DTYPE must be f32 or bf16" >&2; exit 2 ;;
esac
if want b1 || want batch; then
  [ -f "$small/config.json" ] || "$v3" init --preset small --dtype "$dtype" --no-mtp --out "$small" >/dev/null
fi
if want b1; then
  # (a) batch 1, greedy and temperature 1
  run b1-greedy "$bg" --model "$small" --prompts 1 --prompt-len "$plen" --max-new "$max_new" \
      --temperature 0 --threads "$threads" --prompts-out "$work/p1.json" --repeat "$rep_b1"
  run b1-greedy python3 "$here/generate_hf.py" --model "$small" --prompts "$work/p1.json" \
      --max-new "$max_new" --temperature 0 --threads "$threads" --repeat "$rep_b1"
  run b1-t1 "$bg" --model "$small" --prompts 1 --prompt-len "$plen" --max-new "$max_new" \
      --temperature 1 --threads "$threads" --repeat "$rep_b1"
  run b1-t1 python3 "$here/generate_hf.py" --model "$small" --prompts "$work/p1.json" \
      --max-new "$max_new" --temperature 1 --threads "$threads" --repeat "$rep_b1"
fi
if want batch; then
  # (b) PROMPTS prompts x N samples, temperature 1
  run "b${prompts}x${n}-t1" "$bg" --model "$small" --prompts "$prompts" --n "$n" --prompt-len "$plen" \
      --max-new "$max_new" --temperature 1 --threads "$threads" --prompts-out "$work/pb.json" \
      --repeat "$rep_batch"
  run "b${prompts}x${n}-t1" python3 "$here/generate_hf.py" --model "$small" --prompts "$work/pb.json" \
      --n "$n" --max-new "$max_new" --temperature 1 --threads "$threads" --repeat "$rep_batch"
fi

if want mtp; then
  mdir=$work/$mtp_preset
  run_dir=$work/runs/sft-$mtp_preset-mtp
  ck=$(ls -d "$run_dir"/step-"$mtp_steps" 2>/dev/null || true)
  if [ -z "$ck" ]; then
    [ -f "$mdir/config.json" ] || "$v3" init --preset "$mtp_preset" --dtype f32 --out "$mdir" >/dev/null
    cat > "$work/sft_mtp.lua" <<EOF
-- the $mtp_preset preset WITH its MTP layer, SFT on GSM8K train with the MTP loss on (mtp_lambda > 0)
return {
  model = { dir = "$mdir" },
  run = { dir = "$run_dir" },
  device = "cpu",
  data = {
    train = { "$data/gsm8k/train.jsonl" },
    format = "prompt_completion",
    fields = { "prompt=question", "completion=answer" },
    eval_fraction = 0.02,
    seq_len = 512,
    micro_batch_tokens = 512,
    grad_accum = 1,
  },
  train = { steps = $mtp_steps, seed = 7, log_every = 20, threads = $threads },
  eval = { every = 100, batches = 4 },
  optim = { lr = 1e-2, weight_decay = 0.1, clip_grad_norm = 1.0 },
  sched = { kind = "cosine", warmup_steps = 10, min_lr = 1e-3 },
  moe = { router_bias_gamma = 1e-3, balance_alpha = 1e-4, mtp_lambda = 0.3 },
  ckpt = { every = $mtp_steps, keep = 1, dtype = "f32" },
}
EOF
    "$v3" sft "$work/sft_mtp.lua" --quiet >&2
    ck=$run_dir/step-$mtp_steps
  fi
  # greedy decode of GSM8K test questions (V3 chat template), stopping at EOS; one prompt per
  # generate call (batch 1 latency), then all of them in one call; without and with MTP
  g=(--model "$ck" --gsm8k "$data/gsm8k/test.jsonl" --tokenizer "$ck" --prompts "$mtp_prompts"
     --max-new "$mtp_max_new" --temperature 0 --stop-eos --threads "$mtp_threads" --repeat "$rep_mtp")
  for b in b1 "b${mtp_prompts}"; do
    seq=(); [ "$b" = b1 ] && seq=(--sequential)
    run "mtp-off-$b" "$bg" "${g[@]}" "${seq[@]}" --ids-out "$work/mtp_ids_$b.jsonl"
    run "mtp-full-$b" "$bg" "${g[@]}" "${seq[@]}" --mtp --mtp-draft-vocab 0
    run "mtp-on-$b" "$bg" "${g[@]}" "${seq[@]}" --mtp
  done
  # batch 1 against HF generate on the same model and first prompt, EOS stopping off on both
  # sides (HF's generate has no MTP: its figure is the same with and without)
  h=(--model "$ck" --gsm8k "$data/gsm8k/test.jsonl" --tokenizer "$ck" --prompts 1
     --max-new "$mtp_max_new" --temperature 0 --threads "$threads" --repeat "$rep_b1")
  run mtp-hf-b1 "$bg" "${h[@]}" --prompts-out "$work/p_mtp.json"
  run mtp-hf-b1 "$bg" "${h[@]}" --mtp
  run mtp-hf-b1 python3 "$here/generate_hf.py" --model "$ck" --prompts "$work/p_mtp.json" \
      --max-new "$mtp_max_new" --temperature 0 --threads "$threads" --repeat "$rep_b1"
fi

python3 - "$res" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["case"], {})[r["impl"] + ("+mtp" if r.get("mtp") else "")] = r
print("\n| case | v3tune tok/s | HF tok/s | ratio | v3tune decode tok/s | HF decode tok/s | ratio | v3tune TTFT s | HF TTFT s | v3tune CPU s | HF CPU s | HF/v3tune CPU |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c, d in by.items():
    a, b = d.get("v3tune"), d.get("hf-transformers")
    if a and b:
        print(f"| {c} | {a['tok_s']:.2f} | {b['tok_s']:.2f} | {a['tok_s'] / b['tok_s']:.2f}x | "
              f"{a['decode_tok_s']:.2f} | {b['decode_tok_s']:.2f} | {a['decode_tok_s'] / b['decode_tok_s']:.2f}x | "
              f"{a['ttft_s']:.2f} | {b['ttft_s']:.2f} | {a['cpu_s']:.1f} | {b['cpu_s']:.1f} | {b['cpu_s'] / a['cpu_s']:.2f}x |")
for batch in sorted({c.split("-")[-1] for c in by if c.startswith("mtp-") and not c.startswith("mtp-hf")}):
    off = by.get(f"mtp-off-{batch}", {}).get("v3tune")
    for kind in ("full", "on"):
        on = by.get(f"mtp-{kind}-{batch}", {}).get("v3tune+mtp")
        if off and on:
            print(f"\nMTP {batch}, drafts among {on['mtp_draft_vocab'] or 'all'} ids: acceptance "
                  f"{100 * on['acceptance']:.1f}% ({on['mtp_accepted']}/{on['mtp_drafted']}), "
                  f"steps {off['steps']} -> {on['steps']}, tok/s {off['tok_s']:.2f} -> {on['tok_s']:.2f} "
                  f"(speed-up {on['tok_s'] / off['tok_s']:.2f}x), same tokens: {off['ids_fnv'] == on['ids_fnv']}")
d = by.get("mtp-hf-b1", {})
hf = d.get("hf-transformers")
for k in ("v3tune", "v3tune+mtp"):
    if hf and k in d:
        print(f"\nbatch 1 on the MTP-trained model, {k}: {d[k]['tok_s']:.2f} tok/s vs HF {hf['tok_s']:.2f} = "
              f"{d[k]['tok_s'] / hf['tok_s']:.2f}x")
EOF
