#!/usr/bin/env python3
"""gen_hf_checkpoint.py — tiny DeepSeek-V3 checkpoints written by Hugging Face transformers,
read back by tests/unit/test_checkpoint.c.

transformers' DeepseekV3ForCausalLM with a tiny config (vocab 256, hidden 32, 3 layers: one
dense, two MoE; q_lora on; yarn rope), random init plus noise on every tensor (so norms and the
router bias are not all ones/zeros), saved with save_pretrained in fp32 and in bf16 to
tests/golden/data/hf_tiny_{f32,bf16}/ (config.json + model.safetensors).

Beside each directory, hf_tiny_{f32,bf16}.sha256.txt lists every saved tensor as
    name <TAB> dtype <TAB> shape (comma-separated) <TAB> sha256 of its raw little-endian bytes
taken from the model's own parameters as torch holds them. transformers v5 keeps routed experts
fused in memory (mlp.experts.gate_up_proj [E, 2I, d], gate rows first; mlp.experts.down_proj
[E, d, I]) and un-fuses them to per-expert names on save; the reference slices them here
itself, and checks that the file written agrees.

Run by hand:  python3 tests/golden/gen_hf_checkpoint.py   (transformers >= 5, torch, safetensors)
"""
import hashlib
import os
import shutil

import torch
import transformers
from safetensors.torch import load_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def tiny_config():
    return DeepseekV3Config(
        vocab_size=256, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
        q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
        n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
        first_k_dense_replace=1, max_position_embeddings=256,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 64, "beta_fast": 32.0,
                         "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})


def raw_bytes(t):
    return t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()


def per_expert_state(model):
    """The model's tensors under checkpoint names, experts sliced out of the fused parameters."""
    out = {}
    for name, t in model.state_dict().items():
        if name.endswith("mlp.experts.gate_up_proj"):
            pre = name[: -len("gate_up_proj")]
            inter = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = t[e, :inter]
                out[f"{pre}{e}.up_proj.weight"] = t[e, inter:]
        elif name.endswith("mlp.experts.down_proj"):
            pre = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = t[e]
        else:
            out[name] = t
    return out


DT = {torch.float32: "F32", torch.bfloat16: "BF16"}


def save(model, tag):
    d = os.path.join(OUT, f"hf_tiny_{tag}")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    state = per_expert_state(model)
    saved = load_file(os.path.join(d, "model.safetensors"))
    assert sorted(saved) == sorted(state), set(saved) ^ set(state)
    lines = []
    for name in sorted(state):
        t = state[name]
        assert raw_bytes(saved[name]) == raw_bytes(t), name  # the file holds torch's bytes
        shape = ",".join(str(s) for s in t.shape)
        lines.append(f"{name}\t{DT[t.dtype]}\t{shape}\t{hashlib.sha256(raw_bytes(t)).hexdigest()}")
    with open(os.path.join(OUT, f"hf_tiny_{tag}.sha256.txt"), "w") as f:
        f.write(f"# transformers {transformers.__version__}, torch {torch.__version__}\n")
        f.write("\n".join(lines) + "\n")
    print(tag, len(lines), "tensors,", os.path.getsize(os.path.join(d, "model.safetensors")), "bytes")


def main():
    torch.manual_seed(20261122)
    model = DeepseekV3ForCausalLM(tiny_config())
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
    save(model, "f32")
    save(model.to(torch.bfloat16), "bf16")


if __name__ == "__main__":
    main()
