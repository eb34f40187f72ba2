#!/usr/bin/env python3
"""check_init_in_hf.py — does Hugging Face accept a model directory that v3tune wrote?

Given a directory from `v3tune init` (config.json + model.safetensors or shards + index):
  1. python safetensors (safe_open, framework "pt") opens every file and reads every tensor;
     dtypes, shapes and finiteness are recorded;
  2. transformers' DeepseekV3ForCausalLM.from_pretrained loads it (output_loading_info=True);
     missing / unexpected / mismatched keys and any warnings are recorded. transformers has no MTP
     module, so the MTP layer's tensors (model.layers.{num_hidden_layers}.*) are expected to be
     reported as unexpected and dropped; anything else is a failure;
  3. a forward pass on a few token ids must give finite logits of shape [1, T, vocab].
The result goes to a JSON file (default tests/golden/data/hf_load_check.json) with "ok".

Run by hand:
  v3tune init --preset tiny --out "$TMPDIR/v3init"
  python3 tests/golden/check_init_in_hf.py "$TMPDIR/v3init"
"""
import argparse
import glob
import json
import logging
import os
import re
import warnings

import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage()[:2000])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--out", default=os.path.join(HERE, "data", "hf_load_check.json"))
    args = ap.parse_args()
    res = {"transformers": transformers.__version__, "torch": torch.__version__,
           "dir": os.path.basename(os.path.normpath(args.dir)), "ok": False}

    cfg = AutoConfig.from_pretrained(args.dir)
    n_layer = cfg.num_hidden_layers
    mtp = re.compile(rf"^model\.layers\.{n_layer}\.")

    # 1. safetensors
    files = sorted(glob.glob(os.path.join(args.dir, "*.safetensors")))
    st = {}
    for fn in files:
        with safe_open(fn, framework="pt") as f:
            meta = f.metadata()
            for k in f.keys():
                t = f.get_tensor(k)
                st[k] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                         "finite": bool(torch.isfinite(t.float()).all())}
        res.setdefault("metadata", {})[os.path.basename(fn)] = meta
    index = os.path.join(args.dir, "model.safetensors.index.json")
    if os.path.exists(index):
        wm = json.load(open(index))["weight_map"]
        res["index_consistent"] = sorted(wm) == sorted(st)
    res["safetensors_files"] = [os.path.basename(f) for f in files]
    res["safetensors_tensors"] = len(st)
    res["safetensors_dtypes"] = sorted({v["dtype"] for v in st.values()})
    res["all_finite"] = all(v["finite"] for v in st.values())
    res["mtp_tensors_in_file"] = sum(1 for k in st if mtp.match(k))

    # 2. transformers
    cap = Capture()
    logging.getLogger("transformers").addHandler(cap)
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always")
        model, info = DeepseekV3ForCausalLM.from_pretrained(args.dir, output_loading_info=True,
                                                            dtype=torch.float32)
    logging.getLogger("transformers").removeHandler(cap)
    info = {k: sorted(str(x) for x in v) if isinstance(v, (list, set)) else str(v)
            for k, v in info.items()}
    res["loading_info"] = info
    # no machine paths in the committed result; ANSI colour codes of the load report removed
    scrub = lambda m: re.sub(r"\x1b\[[0-9;]*m", "", m.replace(os.path.abspath(args.dir), "<dir>")
                             .replace(args.dir, "<dir>"))
    res["warnings"] = [scrub(str(w.message)[:2000]) for w in wl] + [scrub(x) for x in cap.lines]
    unexpected = info.get("unexpected_keys", [])
    res["unexpected_non_mtp"] = [k for k in unexpected if not mtp.match(k)]
    res["unexpected_mtp"] = len(unexpected) - len(res["unexpected_non_mtp"])

    # every tensor HF kept equals what the file holds (transformers fuses the per-expert names:
    # gate_up_proj [E, 2I, d] with gate rows first, down_proj [E, d, I])
    sd = model.state_dict()
    res["hf_parameters"] = len(sd)
    differ = []
    files_t = {}
    for fn in files:
        with safe_open(fn, framework="pt") as f:
            for k in f.keys():
                files_t[k] = f.get_tensor(k).float()
    for name, t in sd.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            pre = name[: -len("gate_up_proj")]
            want = torch.stack([torch.cat([files_t[f"{pre}{e}.gate_proj.weight"],
                                           files_t[f"{pre}{e}.up_proj.weight"]]) for e in range(t.shape[0])])
        elif name.endswith("mlp.experts.down_proj"):
            pre = name[: -len("down_proj")]
            want = torch.stack([files_t[f"{pre}{e}.down_proj.weight"] for e in range(t.shape[0])])
        elif name in files_t:
            want = files_t[name]
        else:
            differ.append(name + " (not in files)")
            continue
        if not torch.equal(t.float(), want):
            differ.append(name)
    res["values_differ"] = differ

    # 3. forward
    ids = torch.tensor([[1, 5, 9, 2, 7, 3, 11, 4]]) % cfg.vocab_size
    with torch.no_grad():
        out = model(input_ids=ids)
    logits = out.logits
    res["logits_shape"] = list(logits.shape)
    res["logits_finite"] = bool(torch.isfinite(logits).all())
    res["logits_first"] = [round(float(x), 6) for x in logits[0, 0, :4]]

    res["ok"] = (not info.get("missing_keys") and not res["unexpected_non_mtp"]
                 and not info.get("mismatched_keys") and res["all_finite"] and not differ
                 and res["logits_finite"] and res["logits_shape"] == [1, ids.shape[1], cfg.vocab_size]
                 and res.get("index_consistent", True))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps({k: res[k] for k in ("ok", "transformers", "safetensors_tensors",
                                          "unexpected_mtp", "unexpected_non_mtp", "logits_shape")}))
    print("missing:", info.get("missing_keys"), "mismatched:", info.get("mismatched_keys"))
    print("warnings:", len(res["warnings"]))
    for w in res["warnings"][:5]:
        print("  ", w[:300])
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
