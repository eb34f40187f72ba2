#!/usr/bin/env python3
"""sft_torch.py — the competitor for bench/run_sft.sh: a plain PyTorch SFT loop over the Hugging
Face model (DeepseekV3ForCausalLM, fp32, eager attention) with torch.optim.AdamW and gradient-norm
clipping — the same model directory, sequence length, micro-batch, gradient accumulation, learning
rate, betas, weight decay and clip as the v3tune run it is compared with. Tokens come from the
same GSM8K rows, tokenized with HF tokenizers and cut into seq_len windows (throughput does not
depend on the exact packing). Prints one line: tokens/s over the timed steps (the first step is a
warm-up and is not timed).
"""
import argparse
import json
import time

import torch
from tokenizers import Tokenizer
from transformers import DeepseekV3ForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="GSM8K-style JSONL (question, answer)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-2)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
    stream = []
    with open(a.data) as f:
        for line in f:
            row = json.loads(line)
            stream += tok.encode(row["question"] + "\n" + row["answer"]).ids + [1]
    need = (a.steps + 1) * a.accum * (a.seq + 1)
    while len(stream) < need:
        stream += stream
    windows = [stream[i * (a.seq + 1):(i + 1) * (a.seq + 1)] for i in range((a.steps + 1) * a.accum)]

    model = DeepseekV3ForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32,
                                                  attn_implementation="eager")
    model.train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    t0 = None
    w = 0
    for step in range(a.steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for _ in range(a.accum):
            ids = torch.tensor([windows[w]])
            w += 1
            out = model(input_ids=ids[:, :-1], labels=ids[:, :-1].clone())
            (out.loss / a.accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
    dt = time.perf_counter() - t0
    tokens = a.steps * a.accum * a.seq
    print(f"torch: {a.steps} steps, {tokens} tokens, {dt:.3f} s, {tokens / dt:.1f} tokens/s")


if __name__ == "__main__":
    main()
