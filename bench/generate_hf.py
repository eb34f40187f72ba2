#!/usr/bin/env python3
"""generate_hf.py — the reference side of bench/run_generate.sh: Hugging Face transformers'
DeepseekV3ForCausalLM.generate (fp32, eager attention, PyTorch CPU, its DynamicCache) on the same
checkpoint directory and the same prompts as bench_generate.

  python bench/generate_hf.py --model DIR --prompts prompts.json [--n 8] [--max-new 32]
                              [--temperature 1] [--threads 2] [--repeat R]
prompts.json is what bench_generate --prompts-out wrote ({"prompts": [[ids], ...]}, all of one
length: no padding). Every prompt's --n samples come from one generate call over the whole batch
(num_return_sequences = n, which HF implements by repeating each prompt n times before the
prefill); temperature 0 = greedy (do_sample False), else do_sample with that temperature and no
other filter (top_k 0, top_p 1). EOS stopping is off (eos_token_id None), so every sample has
exactly max-new tokens, as on the v3tune side. One untimed warm-up call (8-token prompt, 2 new
tokens) first; with --repeat R the timed call is made R times (torch seed reset each time) and the
fastest is reported, with the median wall time beside it.

Prints one JSON line with the fields bench_generate prints: generated, wall_s, tok_s (end to end),
ttft_s (time until every sample has its first token: the prefill, taken from a streamer's
second put), decode_tok_s = (generated - samples) / (wall_s - ttft_s), cpu_s (CPU time of the
process, all threads, during the call: less sensitive than wall time to other jobs on the machine),
peak RSS."""
import argparse
import json
import logging
import resource
import time

import torch
import transformers
from transformers import DeepseekV3ForCausalLM, GenerationConfig
from transformers.generation.streamers import BaseStreamer


class Clock(BaseStreamer):
    """Timestamps every put: the prompt first, then one per generated step (whole batch)."""

    def __init__(self):
        self.t = []

    def put(self, value):
        self.t.append(time.perf_counter())

    def end(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with open(a.prompts) as f:
        prompts = json.load(f)["prompts"]
    assert len({len(p) for p in prompts}) == 1, "prompts of one length only (no padding)"
    t_load = time.perf_counter()
    model = DeepseekV3ForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    t_load = time.perf_counter() - t_load
    greedy = a.temperature == 0
    gc = GenerationConfig(max_new_tokens=a.max_new, min_new_tokens=0, do_sample=not greedy,
                          num_return_sequences=a.n, eos_token_id=None, bos_token_id=None, pad_token_id=0,
                          use_cache=True)
    if not greedy:
        gc.temperature = a.temperature
        gc.top_k = 0
        gc.top_p = 1.0
    ids = torch.tensor(prompts, dtype=torch.long)
    mask = torch.ones_like(ids)
    samples = len(prompts) * a.n
    runs = []
    with torch.no_grad():
        wgc = GenerationConfig(**{**gc.to_dict(), "max_new_tokens": 2, "num_return_sequences": 1})
        model.generate(ids[:1, :8], attention_mask=mask[:1, :8], generation_config=wgc)
        for _ in range(a.repeat):
            torch.manual_seed(a.seed)
            clock = Clock()
            c0, t0 = time.process_time(), time.perf_counter()
            out = model.generate(ids, attention_mask=mask, generation_config=gc, streamer=clock)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            gen = out[:, ids.shape[1]:]
            assert gen.shape == (samples, a.max_new), gen.shape
            runs.append({"wall": wall, "cpu": cpu, "ttft": clock.t[1] - t0, "steps": len(clock.t) - 1,
                         "ids": gen.tolist()})
    best = min(runs, key=lambda r: r["wall"])
    walls = sorted(r["wall"] for r in runs)
    median = walls[len(walls) // 2] if len(walls) % 2 else 0.5 * (walls[len(walls) // 2 - 1] + walls[len(walls) // 2])
    generated = samples * a.max_new
    wall, cpu, ttft = best["wall"], best["cpu"], best["ttft"]
    print(json.dumps({"impl": "hf-transformers", "prompts": len(prompts), "n": a.n, "prompt_len": ids.shape[1],
                      "prompt_tokens": ids.numel(), "max_new": a.max_new, "temperature": a.temperature,
                      "threads": torch.get_num_threads(), "repeat": a.repeat, "generated": generated,
                      "wall_s": round(wall, 3), "median_wall_s": round(median, 3),
                      "tok_s": round(generated / wall, 2), "cpu_s": round(cpu, 2), "ttft_s": round(ttft, 3),
                      "decode_tok_s": round((generated - samples) / (wall - ttft), 2),
                      "steps": best["steps"], "load_s": round(t_load, 2),
                      "repeats_same": all(r["ids"] == runs[0]["ids"] for r in runs),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
