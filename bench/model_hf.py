#!/usr/bin/env python3
"""model_hf.py — the reference side of bench/run_model.sh: forward+backward time of Hugging Face
transformers' DeepseekV3ForCausalLM (fp32, eager attention, PyTorch CPU) on the same config,
batch and sequence length as bench_model, with random weights and random tokens.

  python bench/model_hf.py --config config.json --seq 2048 [--batch 1] [--steps 3] [--threads N]
Prints one JSON line like bench_model --json (plus peak RSS of this process)."""
import argparse
import json
import resource
import time

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--preset", default="")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with open(a.config) as f:
        d = json.load(f)
    d.pop("quantization_config", None)
    cfg = DeepseekV3Config(**d)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(cfg).float().train()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    times, loss = [], None
    for s in range(a.steps + 1):  # step 0 is a warm-up
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        dt = time.perf_counter() - t0
        loss = out.loss.item()
        if s > 0:
            times.append(dt)
    mean = sum(times) / len(times)
    n = a.batch * a.seq
    print(json.dumps({"impl": "hf-transformers", "preset": a.preset, "seq": a.seq, "batch": a.batch,
                      "threads": torch.get_num_threads(), "loss": round(loss, 6), "step_s": round(mean, 4),
                      "best_s": round(min(times), 4), "tokens_per_s": round(n / mean, 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
