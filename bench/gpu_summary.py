#!/usr/bin/env python3
"""gpu_summary.py — summary.md of a GPU run (scripts/gpu_run.sh): our CUDA kernels against PyTorch on
the same shapes, the SFT step of both sides, and MFU. Standard library only, so it runs anywhere.

  python3 bench/gpu_summary.py --config config.json [--kernels kernels.jsonl] [--sft sft.jsonl]
                               [--stages stages.tsv] [--env env.txt] > summary.md

Inputs are the JSON lines bench_gpu_ops, gpu_ops_torch.py, bench_model --json and sft_hf_gpu.py
print (other lines are ignored). MFU follows the DeepSeek-V3 report's accounting of training
FLOPs per token: 6 × active non-embedding parameters (the count `v3tune inspect` prints) plus the
attention score and value products, 3 × the forward's 2·H·(d_qk + d_v)·ctx per layer, with
ctx = (T + 1)/2 visible keys on average under a causal mask. A second column adds the lm_head
(6·V·C per token), which is real work for a model this small. The denominator is the measured
bf16 matrix-product ceiling (torch.matmul 8192³), not a datasheet figure."""
import argparse
import json
import sys


def read_jsonl(path):
    out = []
    if not path:
        return out
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out


def active_nonembed(c):
    """v3_config_count_params's active_nonembed (model/config.c), from config.json"""
    d, H = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qk, qr, kvr = dn + dr, c.get("q_lora_rank") or 0, c["kv_lora_rank"]
    attn = d * qr + qr + qr * H * qk if qr else d * H * qk
    attn += d * (kvr + dr) + kvr + kvr * H * (dn + dv) + H * dv * d
    E, K = c.get("n_routed_experts") or 0, c["num_experts_per_tok"]
    expert = 3 * d * c["moe_intermediate_size"]
    router = E * d + (E if c.get("topk_method", "noaux_tc") == "noaux_tc" else 0)
    moe_active = router + expert * (c.get("n_shared_experts") or 0) + expert * K
    dense = 3 * d * c["intermediate_size"]
    freq = c.get("moe_layer_freq") or 1
    n = d  # the final norm
    for layer in range(c["num_hidden_layers"]):
        moe = E > 0 and layer >= c.get("first_k_dense_replace", 0) and layer % freq == 0
        n += attn + 2 * d + (moe_active if moe else dense)
    return n


def flops_per_token(c, T):
    H, L = c["num_attention_heads"], c["num_hidden_layers"]
    dqk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    attn = 3 * 2 * H * (dqk + c["v_head_dim"]) * (T + 1) / 2 * L
    head = 6 * c["vocab_size"] * c["hidden_size"]
    return 6 * active_nonembed(c) + attn, head


def fmt(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def kernels_section(rows, out):
    ours = [r for r in rows if r.get("impl") == "v3tune" and "case" in r]
    torch_rows = [r for r in rows if r.get("impl") == "torch" and "case" in r]
    if not ours and not torch_rows:
        out.append("No kernel results in this run.\n")
        return

    def torch_pick(case, dtype, default_only=True):
        for r in torch_rows:
            if r["case"] == case and r.get("dtype") == dtype and "ms" in r:
                if not default_only or not r.get("backend") or r["backend"].startswith("default") \
                        or r["backend"] == "bmm":
                    return r
        return None

    cases = list(dict.fromkeys(r["case"] for r in ours)) or \
        sorted({r["case"] for r in torch_rows if r.get("op") != "ceiling"})
    out.append("| case | shape | ours fp32 ms | ours bf16 ms | ours bf16 TFLOP/s | torch fp32 ms | torch tf32 ms "
               "| torch bf16 ms | torch bf16 TFLOP/s | ours / torch fp32 | ours / torch bf16 (bf16) |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        o32 = next((r for r in ours if r["case"] == case and r.get("dtype", "fp32") == "fp32"), {})
        o16 = next((r for r in ours if r["case"] == case and r.get("dtype") == "bf16"), {})
        f32, t32, b16 = (torch_pick(case, d) for d in ("fp32", "tf32", "bf16"))
        shape = o32.get("shape") or o16.get("shape") or (f32 or b16 or {}).get("shape") or \
            " ".join(f"{k}={(f32 or b16 or {}).get(k)}" for k in ("E", "M", "N", "K") if (f32 or b16 or {}).get(k))
        err = o32.get("error") or o16.get("error")
        if err:
            out.append(f"| {case} | {shape} | error: {err} | | | | | | | | |")
            continue
        ms32, ms16 = o32.get("ms"), o16.get("ms")
        r32 = f"{ms32 / f32['ms']:.2f}×" if ms32 and f32 else "—"
        r16 = f"{ms16 / b16['ms']:.2f}×" if ms16 and b16 else "—"
        out.append(f"| {case} | {shape} | {fmt(ms32, 3)} | {fmt(ms16, 3)} | {fmt(o16.get('tflops'), 1)} | "
                   f"{fmt(f32 and f32['ms'], 3)} | {fmt(t32 and t32['ms'], 3)} | {fmt(b16 and b16['ms'], 3)} | "
                   f"{fmt(b16 and b16['tflops'], 1)} | {r32} | {r16} |")
    att = [r for r in torch_rows if r.get("op", "").startswith("attention")]
    if att:
        out.append("\nPyTorch SDPA by backend (\"default(x)\" is what PyTorch picked by itself, x read off the "
                   "operators it ran):\n")
        out.append("| dtype | backend | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |")
        out.append("|---|---|---:|---:|---:|---:|")
        seen = []
        for r in att:
            key = (r.get("dtype"), r.get("backend"))
            if key in seen:
                continue
            seen.append(key)
            if "error" in r:
                out.append(f"| {key[0]} | {key[1]} | refused: {r['error'][:90]} | | | |")
                continue
            f = next((x for x in att if (x.get("dtype"), x.get("backend")) == key and x["op"] == "attention_fwd"
                      and "ms" in x), None)
            b = next((x for x in att if (x.get("dtype"), x.get("backend")) == key and x["op"] == "attention_bwd"
                      and "ms" in x), None)
            out.append(f"| {key[0]} | {key[1]} | {fmt(f and f['ms'], 3)} | {fmt(f and f['tflops'], 1)} | "
                       f"{fmt(b and b['ms'], 3)} | {fmt(b and b['tflops'], 1)} |")


def sft_section(c, sft, ceiling, out):
    runs = [r for r in sft if r.get("impl") in ("v3tune", "hf-transformers") and "seq" in r]
    if not runs:
        out.append("No SFT results in this run.\n")
        return
    out.append("| impl | dtype | attention / experts | seq × batch | step s | tokens/s | memory MiB | "
               "TFLOP/s (model) | MFU | MFU incl. lm_head |")
    out.append("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        if "error" in r:
            out.append(f"| {r['impl']} | {r.get('dtype', '')} | | {r.get('seq')} | error: {r['error'][:100]} "
                       f"| | | | | |")
            continue
        T, tps = r["seq"], r["tokens_per_s"]
        body, head = flops_per_token(c, T)
        tf = tps * body * 1e-12
        mfu = tf / ceiling if ceiling else None
        mfu_h = tps * (body + head) * 1e-12 / ceiling if ceiling else None
        if r["impl"] == "v3tune":
            dtype = r.get("math", "fp32")
            impl = f"v3tune ({r.get('device', 'cpu')} backend)" + (" + AdamW" if r.get("adamw") else "")
            if r.get("device") != "cuda":
                how = "ours"
            elif dtype == "fp32":
                how = "warp-per-query / cuBLAS per expert"
            else:
                how = "tiled tensor-core / cuBLAS grouped"
            mem = r.get("device_used_mib")
            mem_s = f"{fmt(mem, 0)} in use (plan {fmt(r.get('plan_mib'), 0)})"
        else:
            dtype = r["dtype"]
            impl = f"HF transformers ({r.get('device', 'cuda')}) + AdamW" + (" fused" if r.get("device") == "cuda" else "")
            how = f"{r.get('attn')} / {r.get('experts')}"
            mem_s = f"{fmt(r.get('max_memory_allocated_mib'), 0)} max allocated"
        pct = (lambda x: "—" if x is None else f"{100 * x:.1f}%")
        out.append(f"| {impl} | {dtype} | {how} | {T} × {r.get('batch', 1)} | {fmt(r['step_s'], 3)} | "
                   f"{fmt(tps, 0)} | {mem_s} | {fmt(tf, 1)} | {pct(mfu)} | {pct(mfu_h)} |")
    T0 = runs[0]["seq"]
    body, head = flops_per_token(c, T0)
    out.append(f"\nFLOPs per token at T = {T0}: 6 × {active_nonembed(c) / 1e6:.1f}M active non-embedding "
               f"parameters + attention = {body / 1e9:.3f} GFLOP; the lm_head adds {head / 1e9:.3f} GFLOP. "
               f"MFU = tokens/s × FLOPs per token / the measured bf16 ceiling "
               f"({fmt(ceiling and ceiling * 1e0, 1)} TFLOP/s).")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--kernels")
    ap.add_argument("--sft")
    ap.add_argument("--stages", help="tab-separated stage, seconds, status lines")
    ap.add_argument("--env", help="a text file to quote (nvidia-smi, versions)")
    a = ap.parse_args()
    with open(a.config) as f:
        c = json.load(f)
    kern, sft = read_jsonl(a.kernels), read_jsonl(a.sft)
    ceil = [r["tflops"] for r in kern + sft if r.get("op") == "ceiling" and "tflops" in r]
    ceiling = max(ceil) if ceil else None
    out = ["# GPU run summary\n"]
    if a.stages:
        out.append("| stage | seconds | status |")
        out.append("|---|---:|---|")
        try:
            with open(a.stages) as f:
                for line in f:
                    p = line.rstrip("\n").split("\t")
                    if len(p) == 3:
                        out.append(f"| {p[0]} | {p[1]} | {p[2]} |")
        except OSError:
            pass
        out.append("")
    if a.env:
        try:
            with open(a.env) as f:
                out.append("```\n" + f.read().strip() + "\n```\n")
        except OSError:
            pass
    env = next((r for r in kern + sft if r.get("op") == "env"), None)
    if env:
        out.append(f"PyTorch {env.get('torch')} on {env.get('name', env.get('device'))}"
                   f" ({env.get('sms', '?')} SMs, CUDA {env.get('cuda', '?')}, cuDNN {env.get('cudnn', '?')}).\n")
    out.append(f"bf16 matrix-product ceiling (torch.matmul 8192³): "
               f"{fmt(ceiling, 1) + ' TFLOP/s' if ceiling else 'not measured in this run'}.\n")
    out.append("## Kernels: one layer's GEMMs and attention (ours in fp32 and bf16 math vs PyTorch)\n")
    kernels_section(kern, out)
    out.append("\n## SFT step (forward, backward, clip, AdamW)\n")
    sft_section(c, sft, ceiling, out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
