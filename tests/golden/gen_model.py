#!/usr/bin/env python3
"""gen_model.py — golden data for the model's forward/backward parity test (tests/unit/test_model_golden.c).

Run by hand (needs torch, transformers v5, safetensors):  python tests/golden/gen_model.py
Writes tests/golden/data/model_<name>/{config.json, model.safetensors, ref.safetensors}.

Reference: transformers DeepseekV3ForCausalLM in fp32 with attn_implementation="eager".

Packed batch: every config feeds ONE packed sequence of two documents. HF has no packed-document
mask, so the reference runs HF on each document separately (positions restarting at 0) and
concatenates the logits; the loss is the mean token cross-entropy over all non-ignored targets of
both documents (what our flat batch computes), and its gradient is taken through both HF runs.

ref.safetensors holds (flat over the N packed tokens):
  tokens, targets (-100 = ignored; targets[t] is the next token of t's document), positions,
  doc_start (index of the first token of t's document) — int32 [N];
  logits [N, V], loss [1], and grad.<HF parameter name> for every parameter (per-expert names, as
  in the checkpoint); for config "a" also the MTP reference (mtp.* below).

Where HF v5 and the official DeepSeek code could differ, checked against transformers 5.x:
  * group masking: v5's DeepseekV3TopkRouter masks excluded groups with -inf, as the official
    code does (older HF versions used 0.0, which differs when biased scores are negative), and
    the group score is the sum of the group's top-2 biased scores, as official; so the golden
    routing is the official one. Every group holds >= 2 experts (HF's topk(2) needs it);
    the script asserts that the bias and the group limit each change some selections;
  * router GEMM: v5 computes it in fp32 (F.linear on fp32 casts) — the same as ours;
  * ties: torch.topk order is unspecified; the script asserts every selection (the K-th vs K+1-th
    allowed biased score, and the topk_group-th vs next group score) has a margin > 1e-4, so no
    near-tie can flip between implementations;
  * v5 fuses experts (mlp.experts.gate_up_proj [E, 2I, d], gate rows first, down_proj [E, d, I]);
    this script writes and compares per-expert checkpoint names, split from the fused tensors;
  * HF ignores moe_layer_freq (every layer >= first_k_dense_replace is MoE): configs use 1;
  * norm_topk_prob false is supported by v5 (weights = scores * routed_scaling_factor): config b.
MTP (model-spec §6) is not in HF; config "a" adds an independent torch reference from the spec's
equations (HF's DeepseekV3DecoderLayer reused as layer n_layer) and stores its weights under the
checkpoint names model.layers.<n_layer>.*.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm

HERE = os.path.dirname(os.path.abspath(__file__))

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256, "beta_fast": 32,
        "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}

CONFIGS = {
    # q_lora on, n_group 4 > topk_group 2, yarn, 1 dense layer, 1 shared expert, norm_topk_prob, MTP
    "a": dict(vocab_size=256, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
              num_hidden_layers=3, num_attention_heads=4, q_lora_rank=24, kv_lora_rank=16,
              qk_nope_head_dim=8, qk_rope_head_dim=16, v_head_dim=8, n_routed_experts=8,
              n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
              first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
              rope_scaling=YARN, docs=(7, 9), mtp=True),
    # q_lora off, no groups, plain RoPE, 2 dense layers, 2 shared experts, norm_topk_prob false
    "b": dict(vocab_size=256, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
              num_hidden_layers=3, num_attention_heads=2, q_lora_rank=None, kv_lora_rank=16,
              qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=6,
              n_shared_experts=2, num_experts_per_tok=3, n_group=1, topk_group=1,
              first_k_dense_replace=2, norm_topk_prob=False, routed_scaling_factor=1.5,
              rope_scaling=None, docs=(10, 5), mtp=False),
    # q_lora on, n_group 3 > topk_group 2 (groups of 4), yarn factor 8, 2 shared, 4 layers
    "c": dict(vocab_size=288, hidden_size=40, intermediate_size=48, moe_intermediate_size=8,
              num_hidden_layers=4, num_attention_heads=3, q_lora_rank=20, kv_lora_rank=12,
              qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=6, n_routed_experts=12,
              n_shared_experts=2, num_experts_per_tok=3, n_group=3, topk_group=2,
              first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
              rope_scaling=dict(YARN, factor=8.0, original_max_position_embeddings=128),
              docs=(12, 8), mtp=False),
}


def make_config(spec):
    kw = {k: v for k, v in spec.items() if k not in ("docs", "mtp")}
    rs = spec["rope_scaling"]
    maxpos = int(rs["factor"] * rs["original_max_position_embeddings"]) if rs else 256
    return DeepseekV3Config(num_key_value_heads=spec["num_attention_heads"], max_position_embeddings=maxpos,
                            tie_word_embeddings=False, attn_implementation="eager", rms_norm_eps=1e-6,
                            num_nextn_predict_layers=1 if spec["mtp"] else 0, moe_layer_freq=1,
                            **kw)


def randomise(model, gen):
    """Larger-than-init random weights so every path carries signal; norm gains around 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "mlp.gate.weight" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
        for mod in model.modules():
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(0.1 * torch.randn(mod.e_score_correction_bias.shape,
                                                                    generator=gen))


def hf_state(model):
    """HF parameters under checkpoint names (fused experts split per expert)."""
    out = {}
    for name, p in model.named_parameters():
        t = p.detach() if not isinstance(p, torch.Tensor) or p.grad is None else p.detach()
        out.update(split_experts(name, t))
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            out[name] = b.detach().clone()
    return out


def split_experts(name, t):
    if name.endswith("mlp.experts.gate_up_proj"):
        pre = name[: -len("gate_up_proj")]
        inter = t.shape[1] // 2
        d = {}
        for e in range(t.shape[0]):
            d[f"{pre}{e}.gate_proj.weight"] = t[e, :inter].clone()
            d[f"{pre}{e}.up_proj.weight"] = t[e, inter:].clone()
        return d
    if name.endswith("mlp.experts.down_proj"):
        pre = name[: -len("down_proj")]
        return {f"{pre}{e}.down_proj.weight": t[e].clone() for e in range(t.shape[0])}
    return {name: t.clone()}


effect = {"bias": 0, "group": 0}


def check_router_margins(model, cfg):
    """Hooks every router: asserts no near-tie in group or expert selection, and counts how many
    token selections the correction bias and the group limit change (in `effect`)."""
    worst = [1e9]

    def hook(mod, inp, out):
        x = inp[0].reshape(-1, mod.hidden_dim).float()
        s = torch.sigmoid(x @ mod.weight.float().t())
        c = s + mod.e_score_correction_bias
        G, E, K = mod.num_group, mod.num_experts, mod.top_k
        if G > 1:
            gs = c.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1).sort(dim=-1, descending=True)[0]
            worst[0] = min(worst[0], (gs[:, mod.topk_group - 1] - gs[:, mod.topk_group]).min().item())
            keep = torch.zeros_like(c.view(-1, G, E // G)[..., 0])
            keep.scatter_(1, c.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1).topk(mod.topk_group, -1)[1], 1)
            c = c.masked_fill(~keep.repeat_interleave(E // G, dim=1).bool(), float("-inf"))
        cs = c.sort(dim=-1, descending=True)[0]
        worst[0] = min(worst[0], (cs[:, K - 1] - cs[:, K]).min().item())
        # how often the bias and the group limit actually change the chosen set (must be > 0)
        plain = s.topk(K, -1)[1].sort(-1)[0]
        biased_only = (s + mod.e_score_correction_bias).topk(K, -1)[1].sort(-1)[0]
        sel = c.topk(K, -1)[1].sort(-1)[0]
        effect["bias"] += int((biased_only != plain).any(-1).sum())
        effect["group"] += int((sel != biased_only).any(-1).sum())

    hs = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__ == "DeepseekV3TopkRouter"]
    return worst, hs


def causal_mask(n):
    m = torch.full((n, n), float("-inf")).triu(1)
    return m[None, None]


def mtp_reference(model, cfg, gen, docs_tokens, docs_labels, h0_docs):
    """MTP depth 1 from model-spec §6, per document: h'_i = eh_proj([enorm(emb(t_{i+1})); hnorm(h0_i)]),
    h1 = DecoderLayer(h'), logits = lm_head(shared_head.norm(h1)); row i predicts t_{i+2}."""
    d = cfg.hidden_size
    L = cfg.num_hidden_layers
    enorm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)
    hnorm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)
    snorm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)
    eh = torch.nn.Linear(2 * d, d, bias=False)
    layer = DeepseekV3DecoderLayer(cfg, layer_idx=L)
    mods = {"enorm": enorm, "hnorm": hnorm, "shared_head.norm": snorm, "eh_proj": eh}
    with torch.no_grad():
        for m in (enorm, hnorm, snorm):
            m.weight.copy_(1.0 + 0.2 * torch.randn(d, generator=gen))
        eh.weight.copy_(torch.randn(d, 2 * d, generator=gen) / (2 * d) ** 0.5)
        for name, p in layer.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "mlp.gate.weight" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        layer.mlp.gate.e_score_correction_bias.copy_(0.1 * torch.randn(cfg.n_routed_experts, generator=gen))
    worst, hs = check_router_margins(layer, cfg)
    emb, head = model.model.embed_tokens.weight, model.lm_head.weight
    rot = model.model.rotary_emb
    logits_rows, ce_sum, n_valid = [], 0.0, 0
    for toks, labs, h0 in zip(docs_tokens, docs_labels, h0_docs):
        n = len(toks)
        e = emb[toks[1:]]                                   # [n-1, d]: t_{i+1}
        hp = eh(torch.cat([enorm(e), hnorm(h0[: n - 1])], dim=-1))[None]
        pos = torch.arange(n - 1)[None]
        pe = rot(hp, pos)
        h1 = layer(hp, attention_mask=causal_mask(n - 1), position_ids=pos, position_embeddings=pe)
        h1 = h1[0] if isinstance(h1, tuple) else h1
        lg = snorm(h1[0]) @ head.t()                        # [n-1, V]
        logits_rows.append(lg)
        tgt = torch.tensor(labs[2:] + [-100])               # row i predicts t_{i+2}; last row none
        ce_sum = ce_sum + F.cross_entropy(lg, tgt, ignore_index=-100, reduction="sum")
        n_valid += int((tgt != -100).sum())
    for h in hs:
        h.remove()
    params = {}
    for k, m in mods.items():
        params[f"model.layers.{L}.{k}.weight"] = m.weight
    for name, p in layer.named_parameters():
        for k, v in split_experts(f"model.layers.{L}.{name}", p).items():
            params[k] = (name, p, v)
    return logits_rows, ce_sum / n_valid, params, layer, mods, worst[0]


def run(name, spec, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(spec)
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(cfg).float()
    randomise(model, gen)
    worst, hooks = check_router_margins(model, cfg)
    V = cfg.vocab_size
    docs = spec["docs"]
    docs_tokens = [torch.randint(0, V, (n,), generator=gen).tolist() for n in docs]
    # labels per document (HF convention: labels[t] = token t, shifted inside); mask a "prompt"
    docs_labels = [list(t) for t in docs_tokens]
    for j in range(2):
        docs_labels[1][j] = -100
    logits_docs, h0_docs = [], []
    ce_sum, n_valid = 0.0, 0
    for toks, labs in zip(docs_tokens, docs_labels):
        ids = torch.tensor([toks])
        out = model(input_ids=ids, position_ids=torch.arange(len(toks))[None], output_hidden_states=False)
        lg = out.logits[0]
        logits_docs.append(lg)
        tgt = torch.tensor(labs[1:] + [-100])
        ce_sum = ce_sum + F.cross_entropy(lg, tgt, ignore_index=-100, reduction="sum")
        n_valid += int((tgt != -100).sum())
        if spec["mtp"]:
            h0_docs.append(model.model(input_ids=ids, position_ids=torch.arange(len(toks))[None]).last_hidden_state[0])
        # sanity: HF's own loss on one document equals ours
        if labs[0] != -100:
            hl = model(input_ids=ids, labels=torch.tensor([labs])).loss
            mine = F.cross_entropy(lg[:-1], torch.tensor(labs[1:]), ignore_index=-100)
            assert abs(hl.item() - mine.item()) < 1e-5, (hl.item(), mine.item())
    loss = ce_sum / n_valid
    # rows for `v3tune score` (tests/cli/test_score.sh): the two documents as JSONL rows, with
    # the expected per-row and overall mean losses
    with torch.no_grad():
        row_loss = [F.cross_entropy(lg, torch.tensor(labs[1:] + [-100]), ignore_index=-100).item()
                    for lg, labs in zip(logits_docs, docs_labels)]
    score_rows = [{"input_ids": t, "labels": l} for t, l in zip(docs_tokens, docs_labels)]
    for h in hooks:
        h.remove()
    total = loss
    lam = 0.3
    if spec["mtp"]:
        mlog, mloss, mparams, mlayer, mmods, mworst = mtp_reference(model, cfg, gen, docs_tokens, docs_labels, h0_docs)
        worst[0] = min(worst[0], mworst)
        total = loss + lam * mloss
    assert worst[0] > 1e-4, f"{name}: router near-tie (margin {worst[0]:.2e}); change the seed"
    assert effect["bias"] > 0, f"{name}: the correction bias never changes a selection"
    if cfg.n_group > 1:
        assert effect["group"] > 0, f"{name}: the group limit never changes a selection"
    model.zero_grad()
    total.backward()

    outdir = os.path.join(HERE, "data", f"model_{name}")
    os.makedirs(outdir, exist_ok=True)
    weights = hf_state(model)
    grads = {}
    for pname, p in model.named_parameters():
        for k, v in split_experts(pname, p.grad).items():
            grads["grad." + k] = v
    if spec["mtp"]:
        L = cfg.num_hidden_layers
        for k, m in mmods.items():
            weights[f"model.layers.{L}.{k}.weight"] = m.weight.detach().clone()
            grads[f"grad.model.layers.{L}.{k}.weight"] = m.weight.grad.clone()
        for pname, p in mlayer.named_parameters():
            full = f"model.layers.{L}.{pname}"
            weights.update(split_experts(full, p.detach()))
            for k, v in split_experts(full, p.grad).items():
                grads["grad." + k] = v
        weights[f"model.layers.{L}.mlp.gate.e_score_correction_bias"] = mlayer.mlp.gate.e_score_correction_bias.clone()
        # the checkpoint's physical copies of the shared embedding and head
        weights[f"model.layers.{L}.embed_tokens.weight"] = model.model.embed_tokens.weight.detach().clone()
        weights[f"model.layers.{L}.shared_head.head.weight"] = model.lm_head.weight.detach().clone()
    weights = {k: v.contiguous().float() for k, v in weights.items()}
    save_file(weights, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    cfg_d = json.loads(cfg.to_json_string())
    cfg_d["rope_scaling"] = spec["rope_scaling"]
    cfg_d["q_lora_rank"] = spec["q_lora_rank"]
    for k in ("rope_parameters", "transformers_version", "_experts_implementation"):
        cfg_d.pop(k, None)
    cfg_d["num_nextn_predict_layers"] = 1 if spec["mtp"] else 0
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg_d, f, indent=2, sort_keys=True)
    with open(os.path.join(outdir, "score.jsonl"), "w") as f:
        for r in score_rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(outdir, "score_expected.txt"), "w") as f:
        f.write(f"loss {loss.item():.7f}\n")
        for i, x in enumerate(row_loss):
            f.write(f"row {i} {x:.7f}\n")

    # flat packed arrays
    tokens, targets, positions, doc_start = [], [], [], []
    for toks, labs in zip(docs_tokens, docs_labels):
        s = len(tokens)
        n = len(toks)
        tokens += toks
        targets += labs[1:] + [-100]
        positions += list(range(n))
        doc_start += [s] * n
    ref = {
        "tokens": torch.tensor(tokens, dtype=torch.int32),
        "targets": torch.tensor(targets, dtype=torch.int32),
        "positions": torch.tensor(positions, dtype=torch.int32),
        "doc_start": torch.tensor(doc_start, dtype=torch.int32),
        "logits": torch.cat(logits_docs).detach().contiguous(),
        "loss": loss.detach().reshape(1),
    }
    if spec["mtp"]:
        N = len(tokens)
        ml = torch.zeros(N, V)
        valid = torch.zeros(N, dtype=torch.int32)
        s = 0
        for lg, n in zip(mlog, docs):
            ml[s: s + n - 1] = lg.detach()
            valid[s: s + n - 1] = 1
            s += n
        ref["mtp.logits"] = ml
        ref["mtp.valid"] = valid
        ref["mtp.loss"] = mloss.detach().reshape(1)
        ref["mtp.lambda"] = torch.tensor([lam])
        ref["mtp.total"] = total.detach().reshape(1)
    ref.update({k: v.contiguous().float() for k, v in grads.items()})
    save_file(ref, os.path.join(outdir, "ref.safetensors"))
    print(f"{name}: N={len(tokens)} loss={loss.item():.6f} total={total.item():.6f} params={len(weights)} "
          f"grads={len(grads)} router-margin={worst[0]:.3e} selections changed by bias={effect['bias']} "
          f"by group limit={effect['group']}")
    effect["bias"] = effect["group"] = 0


if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    names = sys.argv[1:] or list(CONFIGS)
    for i, n in enumerate(names):
        run(n, CONFIGS[n], seed=1234 + i)
