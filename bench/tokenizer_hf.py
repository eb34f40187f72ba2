#!/usr/bin/env python3
"""tokenizer_hf.py — HF `tokenizers` encode throughput on the corpus bench_tokenizer.c uses.

usage: RAYON_NUM_THREADS=N python3 bench/tokenizer_hf.py [DATA_DIR] [REPEATS]
Corpora (the same documents as bench_tokenizer.c): every string value of gsm8k/train.jsonl
(short documents), of r1_traces_misguided_attention/output_queries_r10528.json (long ones), and
both. Prints, best of REPEATS: with RAYON_NUM_THREADS=1 a Python loop of Tokenizer.encode, and
always encode_batch (RAYON_NUM_THREADS threads; rayon reads the variable once at start-up, so
run one process per thread count).
"""
import json
import os
import sys
import time

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))


def leaves(v, out):
    if isinstance(v, str):
        out.append(v)
    elif isinstance(v, list):
        for x in v:
            leaves(x, out)
    elif isinstance(v, dict):
        for x in v.values():
            leaves(x, out)


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("V3_SHARED_DATA") or os.path.join(HERE, "..", "..", "shared", "data")
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tok = Tokenizer.from_file(os.path.join(data, "deepseek-v3", "tokenizer.json"))
    r1, gsm = [], []
    with open(os.path.join(data, "r1_traces_misguided_attention", "output_queries_r10528.json"), encoding="utf-8") as f:
        leaves(json.load(f), r1)
    with open(os.path.join(data, "gsm8k", "train.jsonl"), encoding="utf-8") as f:
        for line in f:
            if len(line) > 1:
                leaves(json.loads(line), gsm)
    threads = os.environ.get("RAYON_NUM_THREADS", "default")
    for name, docs in (("gsm8k (short docs)", gsm), ("r1 (long docs)", r1), ("all", r1 + gsm)):
        nbytes = sum(len(d.encode("utf-8")) for d in docs)
        print("corpus %s: %d documents, %.2f MB" % (name, len(docs), nbytes / 1e6))
        if threads == "1":
            best, toks = 1e30, 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                toks = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)
                best = min(best, time.perf_counter() - t0)
            print("  hf encode loop threads=1: best %.3f s  %.2f MB/s  %.0f tokens/s  tokens=%d" %
                  (best, nbytes / 1e6 / best, toks / best, toks))
        best = 1e30
        for _ in range(repeats):
            t0 = time.perf_counter()
            encs = tok.encode_batch(docs, add_special_tokens=False)
            best = min(best, time.perf_counter() - t0)
            toks = sum(len(e.ids) for e in encs)
        print("  hf encode_batch threads=%s: best %.3f s  %.2f MB/s  %.0f tokens/s  tokens=%d" %
              (threads, best, nbytes / 1e6 / best, toks / best, toks))

if __name__ == "__main__":
    main()
