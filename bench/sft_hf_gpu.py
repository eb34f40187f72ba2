#!/usr/bin/env python3
"""sft_hf_gpu.py — the Hugging Face side of the GPU SFT comparison (scripts/gpu_run.sh, stage sft):
training steps of transformers' DeepseekV3ForCausalLM on one GPU, from the same config.json that
bench_model --config-out writes, with random weights and random tokens, timed like bench_model
--device cuda --adamw times ours: zero_grad, forward with labels, backward, gradient-norm clip at
1, AdamW (fused on CUDA), per step.

  python bench/sft_hf_gpu.py --config config.json [--seq 4096] [--batch 1] [--steps 3] [--warmup 2]
                             [--dtype bf16|fp32|amp] [--attn auto|sdpa|eager|flash_attention_2]
                             [--experts auto|grouped_mm|batched_mm|eager] [--fit]
  python bench/sft_hf_gpu.py --config tiny.json --dry-run      (CPU, 64 tokens: code paths only)

--dtype bf16: weights, gradients and AdamW state in bf16 (what "bf16 training" means for a plain
HF model); fp32: all fp32 with TF32 off, as our fp32 backend computes; amp: fp32 weights under
autocast to bf16. --attn auto takes flash_attention_2 when the flash_attn package is importable,
else sdpa; --experts auto is transformers' default (grouped_mm where it can dispatch), and when a
step fails with an error other than out-of-memory (grouped_mm may refuse fp32) eager is tried.
batched_mm is never tried by itself: it gathers one weight matrix per (token, expert) pair, 64 GB
for medium at 4096 tokens.
--fit halves the sequence after an out-of-memory error. Prints one JSON line (tokens/s, the peak of
torch.cuda.max_memory_allocated, the implementations that ran)."""
import argparse
import contextlib
import gc
import json
import statistics
import sys
import time

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM


def pick_attn(req, dev):
    if req != "auto":
        return req
    if dev == "cuda":
        try:
            import flash_attn  # noqa: F401  (not in the device image as of writing)
            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def build(cfg_dict, dtype, dev, attn, experts):
    cfg = DeepseekV3Config(**cfg_dict)
    kw = {"attn_implementation": attn, "dtype": torch.bfloat16 if dtype == "bf16" else torch.float32}
    if experts != "auto":
        kw["experts_implementation"] = experts
    torch.manual_seed(0)
    with torch.device(dev):
        model = DeepseekV3ForCausalLM._from_config(cfg, **kw)
    return model.train()


def run(a, cfg_dict, dev, experts):
    attn = pick_attn(a.attn, dev)
    model = build(cfg_dict, a.dtype, dev, attn, experts)
    n_params = sum(p.numel() for p in model.parameters())
    # AdamW as our trainer: betas 0.9/0.95, eps 1e-8, weight decay 0.1 (norms excluded)
    decay = [p for n, p in model.named_parameters() if "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-5, betas=(0.9, 0.95), eps=1e-8, fused=dev == "cuda")
    ids = torch.randint(0, cfg_dict["vocab_size"], (a.batch, a.seq), device=dev)
    autocast = (torch.autocast(device_type=dev, dtype=torch.bfloat16) if a.dtype == "amp"
                else contextlib.nullcontext())

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    loss = None
    for _ in range(a.warmup):
        loss = step()
    sync()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    mean = statistics.mean(times)
    n = a.batch * a.seq
    rec = {"impl": "hf-transformers", "device": dev, "dtype": a.dtype, "seq": a.seq, "batch": a.batch,
           "attn": model.config._attn_implementation,
           "experts": getattr(model.config, "_experts_implementation", None) or "default",
           "params": n_params, "loss": round(float(loss.detach()), 6), "step_s": round(mean, 4),
           "best_s": round(min(times), 4), "tokens_per_s": round(n / mean, 1), "steps": a.steps,
           "warmup": a.warmup, "torch": torch.__version__}
    if dev == "cuda":
        rec["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        rec["max_memory_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2 ** 20, 1)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", choices=["bf16", "fp32", "amp"], default="bf16")
    ap.add_argument("--attn", default="auto")
    ap.add_argument("--experts", default="auto")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--fit", action="store_true", help="halve the sequence after an out-of-memory error")
    ap.add_argument("--dry-run", action="store_true", help="CPU, 64 tokens, 1 warm-up + 1 step")
    a = ap.parse_args()
    if a.dry_run:
        a.device, a.seq, a.steps, a.warmup = "cpu", 64, 1, 1
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return 77
    with open(a.config) as f:
        cfg_dict = json.load(f)
    cfg_dict.pop("quantization_config", None)
    # fp32 compares with our fp32 backend (TF32 off); bf16/amp products are bf16 either way
    torch.set_float32_matmul_precision("highest")
    tries = [a.experts] if a.experts != "auto" else ["auto", "eager"]
    i = 0
    while True:
        try:
            rec = run(a, cfg_dict, dev, tries[i])
            break
        except torch.OutOfMemoryError as e:
            msg = str(e).splitlines()[0]
            if not a.fit or a.seq <= 256:
                print(json.dumps({"impl": "hf-transformers", "dtype": a.dtype, "seq": a.seq, "error": msg}))
                return 1
            print(f"sft_hf_gpu: seq {a.seq} does not fit ({msg}); trying seq {a.seq // 2}", file=sys.stderr)
            a.seq //= 2
        except RuntimeError as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if i + 1 >= len(tries):
                print(json.dumps({"impl": "hf-transformers", "dtype": a.dtype, "seq": a.seq, "error": msg}))
                return 1
            print(f"sft_hf_gpu: experts {tries[i]} failed ({msg}); trying {tries[i + 1]}", file=sys.stderr)
            i += 1
        gc.collect()  # the failed try's model and optimizer, before the next allocates
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
