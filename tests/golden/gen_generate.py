#!/usr/bin/env python3
"""gen_generate.py — golden data for greedy generation (tests/unit/test_generate_golden.c).

Run by hand (needs torch, transformers v5, safetensors):  python tests/golden/gen_generate.py
Writes tests/golden/data/generate_golden.json.

Reference: transformers DeepseekV3ForCausalLM.from_pretrained(tests/golden/data/model_<name>) in fp32
with attn_implementation="eager", `generate(do_sample=False, max_new_tokens=24)` on one prompt at a
time (batch 1, no padding, all-ones attention mask), EOS stopping off (generation_config
eos_token_id = None, so every output has exactly 24 tokens). HF decodes with its KV cache
(DynamicCache), as the engine decodes with its paged latent cache.

Prompts are random token ids (torch.Generator seeded per model, lengths 1..40; the first two
candidates have lengths 1 and 40). The tiny random models have near-ties, which two correct
implementations may break differently, so a prompt is kept only when
  * every generated step's top-1 logit beats the top-2 by more than MARGIN (1e-4), and
  * every router decision made while generating it (prefill and decode, every MoE layer) has a
    margin > MARGIN: the K-th vs (K+1)-th allowed biased score and, with groups, the topk_group-th
    vs next group score (the same test gen_model.py applies to its batch),
and candidates are drawn until each model has N_KEEP prompts. The margins are recorded.
The MTP layer of model_a is not in HF (reported as unexpected and dropped); greedy outputs do not
depend on it (MTP speculative decoding must leave them unchanged).
"""
import json
import logging
import os

import torch
import transformers
from transformers import DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("a", "b", "c")
MAX_NEW = 24
MARGIN = 1e-4
N_KEEP = 8
MAX_CANDIDATES = 200


def router_hooks(model):
    """Hooks every router; worst[0] tracks the smallest selection margin seen since reset."""
    worst = [float("inf")]

    def hook(mod, inp, out):
        x = inp[0].reshape(-1, mod.hidden_dim).float()
        s = torch.sigmoid(x @ mod.weight.float().t())
        c = s + mod.e_score_correction_bias
        G, E, K = mod.num_group, mod.num_experts, mod.top_k
        if G > 1:
            gsc = c.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1)
            gs = gsc.sort(dim=-1, descending=True)[0]
            worst[0] = min(worst[0], (gs[:, mod.topk_group - 1] - gs[:, mod.topk_group]).min().item())
            keep = torch.zeros_like(gsc)
            keep.scatter_(1, gsc.topk(mod.topk_group, -1)[1], 1)
            c = c.masked_fill(~keep.repeat_interleave(E // G, dim=1).bool(), float("-inf"))
        cs = c.sort(dim=-1, descending=True)[0]
        worst[0] = min(worst[0], (cs[:, K - 1] - cs[:, K]).min().item())

    hs = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__ == "DeepseekV3TopkRouter"]
    return worst, hs


def load(name):
    d = os.path.join(HERE, "data", f"model_{name}")
    model, info = DeepseekV3ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                                        output_loading_info=True)
    L = model.config.num_hidden_layers
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(f"model.layers.{L}.")]
    assert not info["missing_keys"] and not unexpected and not info["mismatched_keys"], (name, info)
    model.eval()
    gc = model.generation_config
    gc.eos_token_id = None
    gc.bos_token_id = None
    gc.pad_token_id = None
    gc.do_sample = False
    gc.max_new_tokens = MAX_NEW
    gc.min_new_tokens = None
    gc.max_length = None
    for k in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty"):
        if hasattr(gc, k):
            setattr(gc, k, None)
    return model, gc


def run(name, seed):
    model, gc = load(name)
    V = model.config.vocab_size
    worst, hooks = router_hooks(model)
    gen = torch.Generator().manual_seed(seed)
    cases, rejected = [], []
    for cand in range(MAX_CANDIDATES):
        if len(cases) >= N_KEEP:
            break
        n = 1 if cand == 0 else 40 if cand == 1 else int(torch.randint(1, 41, (1,), generator=gen))
        prompt = torch.randint(0, V, (1, n), generator=gen)
        worst[0] = float("inf")
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gc,
                                 return_dict_in_generate=True, output_logits=True)
        ids = out.sequences[0, n:].tolist()
        assert len(ids) == MAX_NEW, (name, len(ids))
        margins = []
        for step, lg in enumerate(out.logits):
            top = lg[0].float().topk(2)
            assert int(top.indices[0]) == ids[step]
            margins.append(float(top.values[0] - top.values[1]))
        m, rm = min(margins), worst[0]
        if m > MARGIN and rm > MARGIN:
            cases.append({"prompt": prompt[0].tolist(), "output": ids, "min_margin": m,
                          "min_router_margin": rm})
        else:
            rejected.append({"len": n, "min_margin": m, "min_router_margin": rm})
    for h in hooks:
        h.remove()
    assert len(cases) >= N_KEEP, f"{name}: only {len(cases)} prompts without near-ties"
    res = {"name": name, "dir": f"tests/golden/data/model_{name}", "vocab_size": V, "seed": seed,
           "min_margin": min(c["min_margin"] for c in cases),
           "min_router_margin": min(c["min_router_margin"] for c in cases),
           "candidates": len(cases) + len(rejected), "rejected": rejected, "cases": cases}
    print(f"{name}: kept {len(cases)} of {res['candidates']} prompts (lengths "
          f"{[len(c['prompt']) for c in cases]}), min logit margin {res['min_margin']:.3e}, "
          f"min router margin {res['min_router_margin']:.3e}")
    return res


def main():
    torch.set_default_dtype(torch.float32)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    out = {"generator": "tests/golden/gen_generate.py", "transformers": transformers.__version__,
           "torch": torch.__version__, "reference": "DeepseekV3ForCausalLM fp32 eager, generate(do_sample=False)",
           "max_new_tokens": MAX_NEW, "margin_threshold": MARGIN,
           "models": [run(n, 4321 + i) for i, n in enumerate(MODELS)]}
    path = os.path.join(HERE, "data", "generate_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
