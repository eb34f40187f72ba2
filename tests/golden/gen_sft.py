#!/usr/bin/env python3
"""gen_sft.py — golden data for the SFT optimizer parity test (tests/unit/test_sft_parity.c).

Run by hand (needs torch, transformers v5, safetensors):  python tests/golden/gen_sft.py
Writes tests/golden/data/sft_parity/{config.json, model.safetensors, ref.safetensors}.

Reference: transformers DeepseekV3ForCausalLM in fp32, eager attention, trained for STEPS steps
with torch.optim.AdamW (betas, eps, weight decay 0 on every *norm* gain as v3tune's default),
torch.nn.utils.clip_grad_norm_ and a linear-warmup + cosine schedule computed the way
trainer/schedule.c does. Each step is one packed batch of two documents; as in gen_model.py, HF
has no packed-document mask, so each document runs separately and the loss is the mean
cross-entropy over all non-ignored targets of both (what v3tune's flat batch computes).

ref.safetensors holds, per step s (0-based): s<s>.tokens / targets / positions / doc_start
(int32 [N]); and (fp32) losses [STEPS] (loss before step s's update), grad_norms [STEPS] (pre-clip),
lrs [STEPS], hparams [lr, min_lr, warmup, total, beta1, beta2, eps, wd, max_norm], and
final.<name> for every trained weight after the last step (checkpoint names, experts split).
Router selections are asserted to have a margin > 1e-4 at every step so no near-tie can flip.
"""
import math
import os

import torch
import torch.nn.functional as F
import json
from safetensors.torch import save_file

import gen_model as gm
from transformers import DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 6
HP = dict(lr=3e-3, min_lr=3e-4, warmup=2, total=STEPS, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1,
          max_norm=1.0)
SPEC = dict(vocab_size=96, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
            num_hidden_layers=2, num_attention_heads=2, q_lora_rank=16, kv_lora_rank=16,
            qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=4,
            n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
            first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
            rope_scaling=None, docs=(9, 7), mtp=False)


def lr_at(step):  # 1-based, trainer/schedule.c cosine
    if HP["warmup"] > 0 and step <= HP["warmup"]:
        return HP["lr"] * step / HP["warmup"]
    prog = min(1.0, max(0.0, (step - HP["warmup"]) / (HP["total"] - HP["warmup"])))
    return HP["min_lr"] + (HP["lr"] - HP["min_lr"]) * 0.5 * (1 + math.cos(math.pi * prog))


def main():
    torch.set_default_dtype(torch.float32)
    seed = 4242
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg = gm.make_config(SPEC)
    model = DeepseekV3ForCausalLM(cfg).float()
    gm.randomise(model, gen)
    outdir = os.path.join(HERE, "data", "sft_parity")
    os.makedirs(outdir, exist_ok=True)
    init = {k: v.contiguous().float() for k, v in gm.hf_state(model).items()}
    save_file(init, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    cfg_d = json.loads(cfg.to_json_string())
    cfg_d["rope_scaling"] = None
    cfg_d["q_lora_rank"] = SPEC["q_lora_rank"]
    for k in ("rope_parameters", "transformers_version", "_experts_implementation"):
        cfg_d.pop(k, None)
    cfg_d["num_nextn_predict_layers"] = 0
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg_d, f, indent=2, sort_keys=True)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["wd"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    worst, hooks = gm.check_router_margins(model, cfg)
    V = cfg.vocab_size
    ref, losses, norms, lrs = {}, [], [], []
    for s in range(STEPS):
        lens = (9 + s % 3, 7 - s % 2)
        docs = [torch.randint(0, V, (n,), generator=gen).tolist() for n in lens]
        labels = [list(d) for d in docs]
        labels[1][0] = labels[1][1] = -100  # a masked "prompt" in the second document
        ce, nv = 0.0, 0
        for toks, labs in zip(docs, labels):
            out = model(input_ids=torch.tensor([toks]), position_ids=torch.arange(len(toks))[None])
            tgt = torch.tensor(labs[1:] + [-100])
            ce = ce + F.cross_entropy(out.logits[0], tgt, ignore_index=-100, reduction="sum")
            nv += int((tgt != -100).sum())
        loss = ce / nv
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), HP["max_norm"])
        lr = lr_at(s + 1)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        lrs.append(lr)
        tk, tg, ps, ds = [], [], [], []
        for toks, labs in zip(docs, labels):
            st = len(tk)
            tk += toks
            tg += labs[1:] + [-100]
            ps += list(range(len(toks)))
            ds += [st] * len(toks)
        for k, v in (("tokens", tk), ("targets", tg), ("positions", ps), ("doc_start", ds)):
            ref[f"s{s}.{k}"] = torch.tensor(v, dtype=torch.int32)
    for h in hooks:
        h.remove()
    assert worst[0] > 1e-4, f"router near-tie (margin {worst[0]:.2e}); change the seed"
    ref["losses"] = torch.tensor(losses, dtype=torch.float32)
    ref["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    ref["lrs"] = torch.tensor(lrs, dtype=torch.float32)
    ref["hparams"] = torch.tensor([HP[k] for k in ("lr", "min_lr", "warmup", "total", "beta1", "beta2",
                                                   "eps", "wd", "max_norm")], dtype=torch.float32)
    for k, v in gm.hf_state(model).items():
        if not k.endswith("e_score_correction_bias"):
            ref["final." + k] = v.contiguous().float()
    save_file(ref, os.path.join(outdir, "ref.safetensors"))
    print("losses", " ".join(f"{x:.6f}" for x in losses))
    print("grad norms", " ".join(f"{x:.4f}" for x in norms), f"router margin {worst[0]:.2e}")


if __name__ == "__main__":
    main()
