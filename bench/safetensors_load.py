#!/usr/bin/env python3
"""safetensors_load.py — the Python side of bench/run_safetensors_load.sh: Hugging Face
safetensors reading the same checkpoint that bench_safetensors_load reads, printed in the same
tab-separated form (impl, cache, mode, tensors, GB, seconds (median), GB/s).

Modes: open (safe_open + keys of every shard), pt (get_tensor of every tensor, torch, BF16 as
stored: safetensors 0.8 hands back tensors over the mapping, so this touches no data),
pt_touch (pt, then one byte of every 4 KiB page summed: the data read once), pt_fp32 (the same then .float()), np (framework "numpy": fails on BF16, numpy has no
such dtype; reported as such), np_manual_fp32 (np.memmap of the data region and the BF16 bits
widened by hand: (u16 << 16).view(float32), what one does without torch).
cold: posix_fadvise(DONTNEED) on every shard before each repeat.

  python3 bench/safetensors_load.py DIR [REPEATS] [cold]
"""
import glob
import json
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
from safetensors import safe_open


def shards(d):
    return sorted(glob.glob(os.path.join(d, "*.safetensors")))


def drop(files):
    for fn in files:
        fd = os.open(fn, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_mode(files, mode):
    n, nbytes, sink = 0, 0, 0.0
    for fn in files:
        if mode == "np_manual_fp32":
            with open(fn, "rb") as f:
                hl = struct.unpack("<Q", f.read(8))[0]
                hdr = json.loads(f.read(hl))
            mm = np.memmap(fn, dtype=np.uint8, mode="r", offset=8 + hl)
            for k, v in hdr.items():
                if k == "__metadata__":
                    continue
                b, e = v["data_offsets"]
                u16 = mm[b:e].view(np.uint16)
                x = (u16.astype(np.uint32) << 16).view(np.float32)
                sink += float(x[x.size // 2])
                n += 1
                nbytes += e - b
            del mm
            continue
        fw = "numpy" if mode == "np" else "pt"
        with safe_open(fn, framework=fw) as f:
            for k in f.keys():
                n += 1
                if mode == "open":
                    continue
                t = f.get_tensor(k)
                if mode == "pt_fp32":
                    t = t.float()
                elif mode == "pt_touch":
                    sink += float(t.view(-1).view(torch.uint8)[::4096].sum())
                nbytes += t.numel() * t.element_size() if mode != "pt_fp32" else t.numel() * 2
                sink += float(t.reshape(-1)[t.numel() // 2])
    return n, nbytes


def main():
    d = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cold = len(sys.argv) > 3 and sys.argv[3] == "cold"
    files = shards(d)
    total = sum(os.path.getsize(f) for f in files)
    for mode in ("open", "pt", "pt_touch", "pt_fp32", "np", "np_manual_fp32"):
        try:
            if not cold:
                run_mode(files, mode)  # warm-up
            times = []
            for _ in range(repeats):
                if cold:
                    drop(files)
                t0 = time.perf_counter()
                n, nbytes = run_mode(files, mode)
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            gb = (nbytes or total) / 1e9
            rate = 0.0 if mode == "open" else gb / med
            print(f"python\t{'cold' if cold else 'warm'}\t{mode}\t{n}\t{gb:.3f}\t{med:.3f}\t{rate:.2f}", flush=True)
        except Exception as e:  # numpy has no bfloat16: recorded, not hidden
            print(f"python\t{'cold' if cold else 'warm'}\t{mode}\t-\t-\t-\tunsupported: {type(e).__name__}: {e}", flush=True)
    print(f"# torch {torch.__version__} threads {torch.get_num_threads()}, numpy {np.__version__}, "
          f"safetensors {__import__('safetensors').__version__}", flush=True)


if __name__ == "__main__":
    main()
