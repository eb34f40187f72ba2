#!/usr/bin/env python3
"""gpu_ops_torch.py — PyTorch on the shapes bench_gpu_ops times with our CUDA backend, in the same
JSON-lines format and with the same "case" names, so bench/gpu_summary.py can set them side by side:

  - gemm / gemm_grouped: torch.matmul (torch.bmm for the E equal-size experts) in fp32 with TF32
    off (what our cuBLAS sgemm does), fp32 with TF32 on, and bf16 (the design's target dtype);
  - attention_fwd / attention_bwd: F.scaled_dot_product_attention, causal, in bf16 and fp32, with
    the backend PyTorch picks by itself ("default", named from the operators it ran) and with
    each backend forced in turn (those that refuse the shapes are reported as such; flash refuses
    d_v != d_qk, so it runs once more on v zero-padded to d_qk, the pad and slice timed too);
  - ceiling: the bf16 matrix-product rate at 8192³, the denominator of MFU.

  python bench/gpu_ops_torch.py --config config.json [--tokens 4096] [--reps 10] [--only gemm,attn,ceiling]
  python bench/gpu_ops_torch.py --config config.json --dry-run      (CPU, small shapes: code paths only)

config.json is the preset's (bench_model --preset medium --config-out config.json). Timing: one
warm-up, then the median of --reps, each between two CUDA events after a 256 MiB write that evicts
the L2 cache; on the CPU (dry run) the wall clock. Inputs are random normals, never zeros."""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def layer_shapes(c, T):
    """(case prefix, rows, in, out) of every linear layer bench_gpu_ops times, as it derives them."""
    C, H = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    dqk, qr, kvr = dn + dr, c.get("q_lora_rank") or 0, c["kv_lora_rank"]
    E, K, Ie = c.get("n_routed_experts") or 0, c["num_experts_per_tok"], c["moe_intermediate_size"]
    Is, V, I = Ie * (c.get("n_shared_experts") or 0), c["vocab_size"], c["intermediate_size"]
    chunk = min(max((256 << 20) // V, 16), 4096)  # the model's automatic loss chunk on a device (model/model.c)
    lin = [("q_a", T, C, qr), ("q_b", T, qr, H * dqk)] if qr else [("q", T, C, H * dqk)]
    lin += [("kv_a", T, C, kvr + dr), ("kv_b", T, kvr, H * (dn + dv)), ("o", T, H * dv, C)]
    grouped = []
    if E:
        lin.append(("router", T, C, E))
        if Is:
            lin += [("shared.gate_up", T, C, 2 * Is), ("shared.down", T, Is, C)]
        rows = T * K // E  # one expert's rows under a perfectly balanced routing
        lin += [("expert.gate_up", rows, C, 2 * Ie), ("expert.down", rows, Ie, C)]
        grouped = [("experts.gate_up", E, rows, C, 2 * Ie), ("experts.down", E, rows, Ie, C)]
    lin += [("dense.gate_up", T, C, 2 * I), ("dense.down", T, I, C), ("head_chunk", chunk, C, V)]
    return lin, grouped


def passes(rows, n_in, n_out):
    """fwd y = x·Wᵀ, bwd_x dx = dy·W, bwd_w dW += dyᵀ·x as (pass, tA, tB, M, N, K, beta)."""
    return [("fwd", 0, 1, rows, n_out, n_in, 0.0), ("bwd_x", 0, 0, rows, n_in, n_out, 0.0),
            ("bwd_w", 1, 0, n_out, n_in, rows, 1.0)]


def softmax_scale(c):
    s = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c.get("rope_scaling") or {}
    if rs.get("type", rs.get("rope_type")) == "yarn" and rs.get("mscale_all_dim"):
        f = rs.get("factor", 1.0)
        m = 0.1 * rs["mscale_all_dim"] * math.log(f) + 1.0 if f > 1 else 1.0
        s *= m * m
    return s


class Timer:
    def __init__(self, dev, reps):
        self.dev, self.reps = dev, reps
        self.flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev) if dev == "cuda" else None

    def ms(self, fn, setup=None):
        """median milliseconds of fn() over reps after one warm-up; setup() runs untimed before each"""
        if setup:
            setup()
        fn()
        times = []
        for _ in range(self.reps):
            if setup:
                setup()
            if self.dev == "cuda":
                self.flush.zero_()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def emit(rec):
    print(json.dumps(rec), flush=True)


def set_fp32_mode(mode):
    # "highest": true fp32 (TF32 off), as our cuBLAS sgemm with pedantic math; "high": TF32
    torch.set_float32_matmul_precision("highest" if mode == "fp32" else "high")


DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def bench_gemm(c, T, tm, dev, dtypes):
    lin, grouped = layer_shapes(c, T)
    for name in dtypes:
        set_fp32_mode(name)
        dt = DTYPES[name]
        for layer, rows, n_in, n_out in lin:
            for p, tA, tB, M, N, K, beta in passes(rows, n_in, n_out):
                A = torch.randn((K, M) if tA else (M, K), device=dev, dtype=dt)
                B = torch.randn((N, K) if tB else (K, N), device=dev, dtype=dt)
                Cm = torch.randn(M, N, device=dev, dtype=dt)
                a, b = (A.t() if tA else A), (B.t() if tB else B)
                fn = (lambda: Cm.addmm_(a, b)) if beta else (lambda: torch.mm(a, b, out=Cm))
                ms = tm.ms(fn)
                emit({"impl": "torch", "op": "gemm", "case": f"{layer}.{p}", "dtype": name, "M": M, "N": N,
                      "K": K, "ms": round(ms, 4), "tflops": round(2 * M * N * K / ms * 1e-9, 3)})
                del A, B, Cm
        for layer, E, rows, n_in, n_out in grouped:
            for p, tA, tB, M, N, K, beta in passes(rows, n_in, n_out):
                A = torch.randn((E, K, M) if tA else (E, M, K), device=dev, dtype=dt)
                B = torch.randn((E, N, K) if tB else (E, K, N), device=dev, dtype=dt)
                Cm = torch.randn(E, M, N, device=dev, dtype=dt)
                a, b = (A.transpose(1, 2) if tA else A), (B.transpose(1, 2) if tB else B)
                fn = (lambda: Cm.baddbmm_(a, b)) if beta else (lambda: torch.bmm(a, b, out=Cm))
                ms = tm.ms(fn)
                emit({"impl": "torch", "op": "gemm_grouped", "case": f"{layer}.{p}", "dtype": name, "E": E,
                      "M": M, "N": N, "K": K, "backend": "bmm", "ms": round(ms, 4),
                      "tflops": round(2 * E * M * N * K / ms * 1e-9, 3)})
                del A, B, Cm
    set_fp32_mode("fp32")


def kernel_backend(fn, dev):
    """the SDPA backend a call used, read off the names of the operators (aten::_scaled_dot_product_
    <backend>_attention) and kernels it ran"""
    if dev != "cuda":
        return "cpu"
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = " ".join(e.key.lower() for e in prof.key_averages())
    for key, what in (("_scaled_dot_product_cudnn", "cudnn"), ("_scaled_dot_product_flash", "flash"),
                      ("_scaled_dot_product_efficient", "efficient"), ("_scaled_dot_product_attention_math", "math"),
                      ("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient")):
        if key in names:
            return what
    return "unknown"


def bench_attention(c, T, tm, dev, dtypes):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    H, dv = c["num_attention_heads"], c["v_head_dim"]
    dqk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    scale = softmax_scale(c)
    pairs = T * (T + 1) / 2
    flop = {"fwd": 2 * pairs * H * (dqk + dv), "bwd": 2 * pairs * H * (3 * dqk + 2 * dv)}
    forced = [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
              ("cudnn", SDPBackend.CUDNN_ATTENTION), ("math", SDPBackend.MATH)]
    for name in dtypes:
        dt = DTYPES[name]
        set_fp32_mode(name)
        q = torch.randn(1, H, T, dqk, device=dev, dtype=dt, requires_grad=True)
        k = torch.randn(1, H, T, dqk, device=dev, dtype=dt, requires_grad=True)
        v = torch.randn(1, H, T, dv, device=dev, dtype=dt, requires_grad=True)
        dout = torch.randn(1, H, T, dv, device=dev, dtype=dt)
        shape = f"T={T} H={H} d_qk={dqk} d_v={dv} causal"

        def run_all(label, ctx_factory, pad_v=False):
            state = {}

            def fwd():
                with ctx_factory():
                    if pad_v:  # as transformers' flash-attention path does when d_v < d_qk
                        o = F.scaled_dot_product_attention(q, k, F.pad(v, (0, dqk - dv)), is_causal=True,
                                                           scale=scale)
                        state["o"] = o[..., :dv]
                    else:
                        state["o"] = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)

            def clear():
                q.grad = k.grad = v.grad = None

            def bwd():
                state["o"].backward(dout, retain_graph=True)

            try:
                ms_f = tm.ms(fwd)
                backend = kernel_backend(fwd, dev) if label == "default" else label
                ms_b = tm.ms(bwd, setup=clear)
            except RuntimeError as e:  # this backend refuses these shapes or this dtype
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                emit({"impl": "torch", "op": "attention_fwd", "case": "attn.fwd", "dtype": name, "shape": shape,
                      "backend": label, "error": msg})
                return
            for p, ms in (("fwd", ms_f), ("bwd", ms_b)):
                emit({"impl": "torch", "op": f"attention_{p}", "case": f"attn.{p}", "dtype": name, "T": T,
                      "H": H, "d_qk": dqk, "d_v": dv, "shape": shape,
                      "backend": backend if label != "default" else f"default({backend})",
                      "ms": round(ms, 4), "tflops": round(flop[p] / ms * 1e-9, 3)})
            state.clear()

        import contextlib
        run_all("default", contextlib.nullcontext)
        for label, be in forced:  # on the CPU (dry run) too: some refuse, which exercises that path
            run_all(label, lambda be=be: sdpa_kernel([be]))
        if dv < dqk:  # flash refuses d_v != d_qk; padded v is how the flash path runs MLA
            run_all("flash(v padded)", lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pad_v=True)
        del q, k, v, dout
    set_fp32_mode("fp32")


def bench_ceiling(tm, dev, n):
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    out = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
    ms = tm.ms(lambda: torch.mm(a, b, out=out))
    emit({"impl": "torch", "op": "ceiling", "case": f"bf16.{n}", "dtype": "bf16", "M": n, "N": n, "K": n,
          "ms": round(ms, 4), "tflops": round(2 * n ** 3 / ms * 1e-9, 3)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="the preset's config.json (bench_model --config-out)")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only", default="gemm,attn,ceiling", help="comma list of gemm, attn, ceiling")
    ap.add_argument("--dtypes", default="fp32,tf32,bf16")
    ap.add_argument("--ceiling-size", type=int, default=8192)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="CPU, 64 tokens, 2 reps, vocab ≤ 4096, 256³ ceiling")
    a = ap.parse_args()
    if a.dry_run:
        a.device, a.tokens, a.reps, a.ceiling_size = "cpu", 64, 2, 256
    if a.device == "cuda" and not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return 77
    with open(a.config) as f:
        c = json.load(f)
    if a.dry_run:  # bf16 matrix products are very slow on a CPU without AMX: a small head
        c["vocab_size"] = min(c["vocab_size"], 4096)
    torch.manual_seed(0)
    only = set(a.only.split(","))
    dtypes = [d for d in a.dtypes.split(",") if d in DTYPES]
    tm = Timer(a.device, a.reps)
    env = {"impl": "torch", "op": "env", "torch": torch.__version__, "device": a.device, "tokens": a.tokens}
    if a.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(name=p.name, sms=p.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    emit(env)
    if "ceiling" in only:  # first: the others are read against it
        bench_ceiling(tm, a.device, a.ceiling_size)
    if "gemm" in only:
        bench_gemm(c, a.tokens, tm, a.device, dtypes)
    if "attn" in only:
        bench_attention(c, a.tokens, tm, a.device, [d for d in dtypes if d != "tf32"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
