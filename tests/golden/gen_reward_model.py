#!/usr/bin/env python3
"""gen_reward_model.py — golden data for the local reward model (tests/unit/test_reward_model.c,
tests/cli/test_reward_run.sh): tiny DeepSeek-V3 models with a scalar head, as HF's
DeepseekV3ForSequenceClassification.

Run by hand (ctest never needs Python; needs torch, transformers v5, tokenizers, safetensors, and
the shared DeepSeek-V3 tokenizer_config.json for its chat template):
    python3 tests/golden/gen_reward_model.py
Writes tests/golden/data/rm_<name>/{config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, ref.json}.

Reference: transformers' own DeepseekV3ForSequenceClassification (GenericForSequenceClassification:
the base DeepseekV3Model, whose last_hidden_state is the final-norm output, then
`score = nn.Linear(hidden, num_labels, bias=False)`; the pooled logits are those of the rightmost
token whose id is not config.pad_token_id, or of the last token when pad_token_id is None), in
fp32 with attn_implementation="eager". The checkpoint names are HF's: model.* and score.weight
[num_labels, hidden]; there is no lm_head.weight.

The tokenizer is a tiny byte-level BPE built here with `tokenizers`: ids 0/1/2 are
<｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜> (as DeepSeek-V3), then the 256 byte-level
symbols, a few merges, and the 11 other chat-template tokens (<｜User｜>, <｜Assistant｜>, tool
tokens), with DeepSeek-V3's pre-tokenizer and its tokenizer_config.json chat_template (pad_token =
eos, as DeepSeek's config). Conversations are tokenised with tokenizer.apply_chat_template(
conversation + [{"role": "assistant", "content": completion}], tokenize=True), the usual input of
a TRL reward model.

ref.json:
  {"num_labels": L, "pad_token_id": id or null,
   "ids_cases":  [{"ids": [...], "scores": [L floats]}],          token sequences scored directly
   "chat_cases": [{"prompt": str | "messages": [...], "completion": str, "row": {...},
                   "ids": [...HF ids...], "scores": [L floats]}]}
Model "a": one label, pad_token_id = 1 (the eos, as TRL sets it from DeepSeek's tokenizer), so a
sequence ending in <｜end▁of▁sentence｜> (every chat case) is scored at the token before it;
q_lora, yarn, 4 expert groups, 1 dense layer. An ids case ends in two pad tokens and one is all
pad (HF then scores row 0). Model "b": two labels, pad_token_id null (the last token is scored),
no q_lora, plain RoPE, 2 dense layers. The script also checks that a right-padded batch gives the
same pooled logits as one sequence at a time (what packing relies on).
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import DeepseekV3Config, DeepseekV3ForSequenceClassification, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("V3_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
TEMPLATE_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
                   "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>",
                   "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
                   "<｜tool▁sep｜>"]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "s"), ("Ġ", "a")]

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256, "beta_fast": 32,
        "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}

CONFIGS = {
    "a": dict(num_labels=1, pad_token_id=1, hidden_size=32, intermediate_size=64,
              moe_intermediate_size=16, num_hidden_layers=3, num_attention_heads=4, q_lora_rank=24,
              kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=16, v_head_dim=8,
              n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
              first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
              rope_scaling=YARN),
    "b": dict(num_labels=2, pad_token_id=None, hidden_size=32, intermediate_size=48,
              moe_intermediate_size=16, num_hidden_layers=3, num_attention_heads=2, q_lora_rank=None,
              kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
              n_routed_experts=6, n_shared_experts=2, num_experts_per_tok=3, n_group=1, topk_group=1,
              first_k_dense_replace=2, norm_topk_prob=False, routed_scaling_factor=1.5,
              rope_scaling=None),
}

CHATS = [
    dict(prompt="What is 2+3?", completion="The answer is 5.", row={"answer": "5"}),
    dict(messages=[{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Name the capital of France."}],
         completion="Paris is the capital.", row={"id": 7}),
    dict(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                   {"role": "user", "content": "is the sky blue?"}],
         completion="Yes, it is — mostly.", row={}),
    dict(prompt="Say nothing.", completion="", row={}),
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_tokenizer(outdir):
    vocab = {BOS: 0, EOS: 1, PAD: 2}
    for b, ch in sorted(bytes_to_unicode().items()):
        vocab[ch] = len(vocab)
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    for t in TEMPLATE_TOKENS:
        vocab[t] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(MERGES)))
    shared = json.load(open(os.path.join(SHARED, "deepseek-v3", "tokenizer.json"), encoding="utf-8"))
    tk.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, PAD] + TEMPLATE_TOKENS
    tk.add_special_tokens([AddedToken(t, special=(t in (BOS, EOS, PAD)), normalized=False) for t in specials])
    path = os.path.join(outdir, "tokenizer.json")
    tk.save(path)
    # DeepSeek-V3's pre-tokenizer, normalizer and post-processor, verbatim from the shared file
    j = json.load(open(path, encoding="utf-8"))
    for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        j[k] = shared[k]
    for t in j["added_tokens"]:
        t["special"] = t["content"] in (BOS, EOS, PAD)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
    sc = json.load(open(os.path.join(SHARED, "deepseek-v3", "tokenizer_config.json"), encoding="utf-8"))
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS,
           "pad_token": EOS, "clean_up_tokenization_spaces": False, "model_max_length": 4096,
           "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": sc["chat_template"]}
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    tok = PreTrainedTokenizerFast.from_pretrained(outdir)
    assert tok.convert_tokens_to_ids(EOS) == 1 and tok.bos_token_id == 0
    return tok, len(vocab)


def randomise(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "mlp.gate.weight" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        for mod in model.modules():
            if hasattr(mod, "e_score_correction_bias"):
                mod.e_score_correction_bias.copy_(0.1 * torch.randn(mod.e_score_correction_bias.shape, generator=gen))


def checkpoint_state(model):
    """HF parameters under checkpoint names (v5 fuses experts: split them per expert)."""
    out = {}
    for name, t in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers()
                                                       if n.endswith("e_score_correction_bias")]:
        t = t.detach()
        if name.endswith("mlp.experts.gate_up_proj"):
            pre, inter = name[: -len("gate_up_proj")], t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = t[e, :inter].clone()
                out[f"{pre}{e}.up_proj.weight"] = t[e, inter:].clone()
        elif name.endswith("mlp.experts.down_proj"):
            pre = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = t[e].clone()
        else:
            out[name] = t.clone()
    return {k: v.contiguous().float() for k, v in out.items()}


def pooled(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].tolist()


def run(name, spec, seed, tok, tokdir, vocab):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rs = spec["rope_scaling"]
    maxpos = int(rs["factor"] * rs["original_max_position_embeddings"]) if rs else 512
    kw = dict(spec)
    cfg = DeepseekV3Config(vocab_size=vocab, num_key_value_heads=spec["num_attention_heads"],
                           max_position_embeddings=maxpos, tie_word_embeddings=False,
                           attn_implementation="eager", rms_norm_eps=1e-6, num_nextn_predict_layers=0,
                           moe_layer_freq=1, bos_token_id=0, eos_token_id=1, **kw)
    model = DeepseekV3ForSequenceClassification(cfg).float().eval()
    randomise(model, gen)
    assert model.score.weight.shape == (spec["num_labels"], spec["hidden_size"])
    pad = spec["pad_token_id"]

    ids_cases = []
    lens = (7, 12, 5, 1)
    for i, n in enumerate(lens):
        ids = torch.randint(3, vocab, (n,), generator=gen).tolist()
        if pad is not None and i == 1:
            ids[-2:] = [pad, pad]          # trailing pads: HF scores the token before them
        ids_cases.append({"ids": ids, "scores": pooled(model, ids)})
    if pad is not None:
        ids = [pad, pad, pad]              # all pad: HF's argmax of zeros picks row 0
        ids_cases.append({"ids": ids, "scores": pooled(model, ids)})

    chat_cases = []
    for c in CHATS:
        msgs = c["messages"] if "messages" in c else [{"role": "user", "content": c["prompt"]}]
        ids = tok.apply_chat_template(msgs + [{"role": "assistant", "content": c["completion"]}],
                                      tokenize=True, add_generation_prompt=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        assert ids[0] == 0 and ids[-1] == 1, ids
        case = {k: v for k, v in c.items()}
        case["ids"] = ids
        case["scores"] = pooled(model, ids)
        chat_cases.append(case)

    # a right-padded batch pools the same logits as one sequence at a time
    if pad is not None:
        seqs = [c["ids"] for c in chat_cases]
        T = max(len(s) for s in seqs)
        batch = torch.tensor([s + [pad] * (T - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
        with torch.no_grad():
            got = model(input_ids=batch, attention_mask=mask).logits
        want = torch.tensor([c["scores"] for c in chat_cases])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want)

    outdir = os.path.join(HERE, "data", f"rm_{name}")
    os.makedirs(outdir, exist_ok=True)
    save_file(checkpoint_state(model), os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    cfg_d = json.loads(cfg.to_json_string())
    cfg_d["rope_scaling"] = spec["rope_scaling"]
    cfg_d["q_lora_rank"] = spec["q_lora_rank"]
    cfg_d["architectures"] = ["DeepseekV3ForSequenceClassification"]
    for k in ("rope_parameters", "transformers_version", "_experts_implementation"):
        cfg_d.pop(k, None)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg_d, f, indent=2, sort_keys=True)
    ref = {"num_labels": spec["num_labels"], "pad_token_id": pad, "ids_cases": ids_cases,
           "chat_cases": chat_cases}
    with open(os.path.join(outdir, "ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(tokdir, fn), "rb") as src, open(os.path.join(outdir, fn), "wb") as dst:
            dst.write(src.read())
    print(f"rm_{name}: labels={spec['num_labels']} pad={pad} vocab={vocab} "
          f"ids cases={len(ids_cases)} chat cases={len(chat_cases)} "
          f"scores={[c['scores'] for c in chat_cases]}")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    tokdir = tempfile.mkdtemp()
    tok, vocab = build_tokenizer(tokdir)
    vocab = (vocab + 15) // 16 * 16   # a model vocabulary larger than the tokenizer's, as DeepSeek's
    names = sys.argv[1:] or list(CONFIGS)
    for i, n in enumerate(names):
        run(n, CONFIGS[n], seed=4321 + i, tok=tok, tokdir=tokdir, vocab=vocab)
