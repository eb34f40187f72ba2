#!/usr/bin/env python3
"""gen_grpo.py — golden data for the GRPO advantage and loss test (tests/unit/test_grpo_loss.c).

Run by hand (needs torch, trl, accelerate from PyPI):  python tests/golden/gen_grpo.py
Writes tests/golden/data/grpo_golden.json.

Every number comes out of TRL's own code: a GRPOTrainer object is made without __init__ (no model,
no dataset) and given the attributes its methods read, exactly as GRPOTrainer.__init__ sets them
from a real GRPOConfig. Then

  * GRPOTrainer._generate_and_score_completions runs as is, with `_generate` replaced by a stub that
    returns the fixed completions below and `_get_per_token_logps_and_entropies` replaced by a stub
    that returns the fixed old / reference log-probabilities. The reward functions are plain Python
    callables (one of them returns None for some rows), so TRL's own `_calculate_rewards`, its
    None -> NaN rule, the unscorable-row rule, nanmean/nanstd, scale_rewards, the +1e-4, the
    mask_truncated_completions masking and num_items_in_batch are all TRL's code.
  * GRPOTrainer._compute_loss runs as is on that output, with the stub returning the current
    log-probabilities as a leaf tensor that requires grad; torch autograd gives d loss / d logp.
    Its logged metrics (clip_ratio/*, kl) are read back from trainer._metrics.

Precision: torch's default dtype is set to float64, so TRL computes in double (its rewards tensor
is created with the default dtype). All inputs are float32 values (the C side takes float32
log-probabilities), so the C code, which computes in double from the same float32 values, can be
held to ~1e-12 before its float32 gradient output.

Only the ratio statistics (mean/min/max of the importance ratio over active tokens, or over
non-empty sequences at sequence level) are computed here with plain torch: TRL 1.16 does not log
them.
"""
import json
import logging
import math
import os
import platform
import tempfile
import warnings
from collections import defaultdict, deque
from types import SimpleNamespace

import numpy as np
import torch
import trl
from accelerate import Accelerator
from trl import GRPOConfig, GRPOTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "grpo_golden.json")
SEED = 20250611

G = 4                 # generations per prompt
N_PROMPTS = 3         # B = 12: group 0 ordinary, group 1 with None scores and an unscorable row,
B = G * N_PROMPTS     #         group 2 with identical rewards (zero variance)
T = 12                # max_completion_length
PAD, EOS = 0, 2
WEIGHTS = [1.0, 0.5]  # accuracy, format (float32-exact)

# Completion lengths and truncation: a truncated completion has T tokens and no EOS at the end.
LENGTHS = [5, 12, 10, 9, 12, 7, 11, 3, 6, 12, 8, 10]
TRUNCATED = [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
ACCURACY = [1.0, 0.0, 0.0, 1.0, 1.0, None, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
FORMAT = [1.0, 0.5, None, 0.0, 0.5, None, 1.0, None, 1.0, 1.0, 1.0, 1.0]


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def make_inputs():
    rng = np.random.default_rng(SEED)
    logp = f32(-rng.gamma(2.0, 1.0, size=(B, T)))                       # around -2
    old = logp + rng.normal(0.0, 0.2, size=(B, T))                       # ratios ~ 0.6..1.6
    old[6] += 0.06  # a drifted negative-advantage row: sequence ratio < 1, dropped by OPSM at 0.02
    old = f32(old)
    ref = f32(logp + rng.normal(0.0, 0.3, size=(B, T)))
    ent = f32(rng.uniform(0.05, 3.0, size=(B, T)))
    comp_ids = []
    for b in range(B):
        ids = [int(v) for v in rng.integers(3, 100, size=LENGTHS[b])]
        if not TRUNCATED[b]:
            ids[-1] = EOS
        comp_ids.append(ids)
    return logp, old, ref, ent, comp_ids


def accuracy(prompts, completions, completion_ids, **kw):
    return list(ACCURACY)


def format_reward(prompts, completions, completion_ids, **kw):
    return list(FORMAT)


def make_trainer(cfg_kw, data, tmp):
    """A GRPOTrainer without __init__, with the attributes __init__ sets from GRPOConfig(cfg_kw)."""
    logp, old, ref, ent, comp_ids = data
    args = GRPOConfig(output_dir=tmp, report_to="none", use_cpu=True, num_generations=G,
                      per_device_train_batch_size=cfg_kw.pop("per_device_train_batch_size", B),
                      max_completion_length=T, reward_weights=WEIGHTS, **cfg_kw)
    t = GRPOTrainer.__new__(GRPOTrainer)
    t.args = args
    t.accelerator = Accelerator(cpu=True)
    t.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    t.ref_model = SimpleNamespace(name="ref") if args.beta != 0.0 else None
    # as GRPOTrainer.__init__ (trl 1.16.0, grpo_trainer.py lines ~782-947)
    t.max_completion_length = args.max_completion_length
    t.num_generations = args.num_generations
    t.num_generations_eval = args.num_generations_eval or t.num_generations
    t.pad_to_multiple_of = args.pad_to_multiple_of
    t.use_vllm = args.use_vllm
    t.vllm_importance_sampling_correction = args.vllm_importance_sampling_correction
    t.loss_type = args.loss_type
    t.multi_objective_aggregation = args.multi_objective_aggregation
    t.router_aux_loss_coef = 0.0
    t.aux_loss_enabled = False
    t.scale_rewards = args.scale_rewards
    t.importance_sampling_level = args.importance_sampling_level
    t.off_policy_mask_threshold = args.off_policy_mask_threshold
    t.mask_truncated_completions = args.mask_truncated_completions
    t.top_entropy_quantile = args.top_entropy_quantile
    t.entropy_coef = args.entropy_coef
    t.use_adaptive_entropy = args.use_adaptive_entropy
    t._entropy_bonus_enabled = t.entropy_coef != 0.0 or t.use_adaptive_entropy
    t.num_iterations = args.num_iterations
    t.epsilon_low = args.epsilon
    t.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    t.beta = args.beta
    t.reward_funcs = [accuracy, format_reward]
    t.reward_func_names = ["accuracy", "format"]
    t.reward_processing_classes = [None, None]
    t.reward_weights = torch.tensor(args.reward_weights, dtype=torch.float32)
    t.eos_token_ids = [EOS]
    t._tokenizer = SimpleNamespace(pad_token_id=PAD)
    t.environment_factories = None
    t.environments = None
    t.tools = None
    t.state = SimpleNamespace(global_step=0)
    t.log_multimodal = False
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    gb = args.generation_batch_size
    t._logs = {"images": deque(maxlen=gb), "prompt": deque(maxlen=gb), "completion": deque(maxlen=gb),
               "rewards": defaultdict(lambda: deque(maxlen=gb)), "advantages": deque(maxlen=gb),
               "extra": defaultdict(lambda: deque(maxlen=gb))}
    t._pending_extra_logs = defaultdict(list)
    t._pending_metrics = defaultdict(list)
    t.current_gradient_accumulation_steps = args.gradient_accumulation_steps

    prompt_ids = [[5, 6, 7 + g] for g in range(N_PROMPTS) for _ in range(G)]

    def fake_generate(prompts):
        completions = [f"completion {i}" for i in range(len(prompts))]
        return prompt_ids, comp_ids, None, completions, None, {}, None, None

    def fake_logps(model, input_ids, attention_mask, logits_to_keep, **kw):
        # generation phase: the old policy (self.model) or the reference (self.ref_model)
        if model is t.ref_model:
            return torch.tensor(ref[:, :logits_to_keep]), None, None
        if model is t.model:
            return torch.tensor(old[:, :logits_to_keep]), None, None
        # loss phase: model is the dict the caller hands in (rows of the micro-batch)
        return model["logp"], model["entropy"], None

    t._generate = fake_generate
    t._get_per_token_logps_and_entropies = fake_logps
    return t


def clean(x):
    """float, or None for NaN (the JSON must stay strict)."""
    x = float(x)
    return None if math.isnan(x) else x


def run_config(name, cfg_kw, data, rows_list=None, extra=None):
    logp, old, ref, ent, comp_ids = data
    cfg_kw = dict(cfg_kw)
    with tempfile.TemporaryDirectory() as tmp:
        t = make_trainer(cfg_kw, data, tmp)
        args = t.args
        prompts = [{"prompt": f"question {b // G}"} for b in range(B)]
        out = GRPOTrainer._generate_and_score_completions(t, prompts)
        mtr = t._metrics["train"]
        # the combined reward as TRL logs it (grpo_trainer.py ~line 2817: nansum, unscorable rows NaN)
        per_func = torch.tensor([[np.nan if v is None else v for v in (a, f)]
                                 for a, f in zip(ACCURACY, FORMAT)])
        rewards = (per_func * t.reward_weights.unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(per_func).all(dim=1)] = torch.nan
        adv_rec = dict(
            rewards=[clean(x) for x in rewards],
            adv=[float(x) for x in out["advantages"]],
            reward_mean=clean(mtr["reward"][-1]), reward_std=clean(mtr["reward_std"][-1]),
            frac_reward_zero_std=clean(mtr["frac_reward_zero_std"][-1]),
            func_mean=[clean(mtr[f"rewards/{n}/mean"][-1]) for n in t.reward_func_names],
            func_std=[clean(mtr[f"rewards/{n}/std"][-1]) for n in t.reward_func_names])
        Tp = out["completion_mask"].shape[1]
        rec = dict(name=name, loss_type=args.loss_type, scale_rewards=args.scale_rewards,
                   multi_objective_aggregation=args.multi_objective_aggregation,
                   beta=args.beta, epsilon_low=t.epsilon_low, epsilon_high=t.epsilon_high,
                   delta=args.delta, importance_sampling_level=args.importance_sampling_level,
                   use_bias_correction_kl=args.use_bias_correction_kl,
                   mask_truncated_completions=args.mask_truncated_completions,
                   top_entropy_quantile=args.top_entropy_quantile,
                   off_policy_mask_threshold=args.off_policy_mask_threshold,
                   gradient_accumulation_steps=args.gradient_accumulation_steps,
                   steps_per_generation=args.steps_per_generation,
                   num_processes=t.accelerator.num_processes,
                   max_completion_length=t.max_completion_length,
                   on_policy="old_per_token_logps" not in out,
                   T_padded=int(Tp),
                   completion_mask=[int(v) for v in out["completion_mask"].flatten()],
                   num_items_in_batch=int(out["num_items_in_batch"]),
                   advantages=adv_rec, steps=[])
        if extra:
            rec.update(extra)
        for rows in rows_list or [(0, B)]:
            r0, r1 = rows
            lp = torch.tensor(logp[r0:r1, :Tp], requires_grad=True)
            inputs = {k: (v[r0:r1] if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == B else v)
                      for k, v in out.items()}
            t._metrics["train"] = defaultdict(list)
            model = {"logp": lp, "entropy": torch.tensor(ent[r0:r1, :Tp])}
            loss = GRPOTrainer._compute_loss(t, model, inputs)
            loss.backward()
            m = t._metrics["train"]
            mask = inputs["completion_mask"].bool()
            if "old_per_token_logps" in inputs:
                lr = (lp.detach() - inputs["old_per_token_logps"])
            else:
                lr = torch.zeros_like(lp)
            if args.importance_sampling_level == "sequence":
                mf = mask.double()
                ratio = torch.exp((lr * mf).sum(-1) / mf.sum(-1).clamp(min=1.0))[mf.sum(-1) > 0]
            else:
                ratio = torch.exp(lr)[mask]
            step = dict(rows=[r0, r1], loss=loss.item(),
                        grad=[float(x) for x in lp.grad.flatten()],
                        metrics={k: clean(m[k][-1]) for k in
                                 ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
                                  "clip_ratio/low_min", "clip_ratio/high_max", "kl") if k in m},
                        ratio_mean=clean(ratio.mean()) if ratio.numel() else None,
                        ratio_min=clean(ratio.min()) if ratio.numel() else None,
                        ratio_max=clean(ratio.max()) if ratio.numel() else None)
            rec["steps"].append(step)
        return rec


def main():
    # row 5 is unscorable on purpose; TRL warns about it on every call
    logging.getLogger("trl.trainer.grpo_trainer").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(SEED)
    data = make_inputs()
    logp, old, ref, ent, comp_ids = data
    # num_iterations=2 makes TRL compute old_per_token_logps (GA % (steps_per_generation*2) != 0)
    base = dict(epsilon=0.2, epsilon_high=0.28, num_iterations=2, mask_truncated_completions=True)
    configs = []
    for lt in ("grpo", "bnpo", "dr_grpo", "dapo"):
        for sc in ("group", "batch", "none"):
            for beta in (0.0, 0.04):
                configs.append((f"{lt}_{sc}_b{beta:g}",
                                dict(base, loss_type=lt, scale_rewards=sc, beta=beta)))
    configs += [
        ("gspo_b0", dict(base, loss_type="grpo", importance_sampling_level="sequence", beta=0.0,
                         epsilon=3e-4, epsilon_high=4e-4)),
        ("gspo_b0.04", dict(base, loss_type="grpo", importance_sampling_level="sequence", beta=0.04,
                            epsilon=3e-4, epsilon_high=4e-4)),
        ("gspo_dapo_b0.04", dict(base, loss_type="dapo", importance_sampling_level="sequence", beta=0.04,
                                 epsilon=0.02, epsilon_high=0.03)),
        ("delta_dapo_b0.04", dict(base, loss_type="dapo", delta=1.25, beta=0.04)),
        ("nobiaskl_grpo_b0.04", dict(base, loss_type="grpo", beta=0.04, use_bias_correction_kl=False)),
        ("nobiaskl_gspo_b0.04", dict(base, loss_type="grpo", importance_sampling_level="sequence",
                                     beta=0.04, use_bias_correction_kl=False, epsilon=0.02)),
        ("entropy_dapo_b0.04", dict(base, loss_type="dapo", beta=0.04, top_entropy_quantile=0.3)),
        ("opsm_grpo_b0", dict(base, loss_type="grpo", beta=0.0, off_policy_mask_threshold=0.02)),
        ("notrunc_dapo_b0.04", dict(base, loss_type="dapo", beta=0.04, mask_truncated_completions=False)),
        ("notrunc_grpo_b0", dict(base, loss_type="grpo", beta=0.0, mask_truncated_completions=False)),
        ("onpolicy_grpo_b0.04", dict(base, loss_type="grpo", beta=0.04, num_iterations=1)),
        ("n2s_grpo_b0", dict(base, loss_type="grpo", beta=0.0,
                             multi_objective_aggregation="normalize_then_sum")),
        ("symeps_bnpo_b0", dict(base, loss_type="bnpo", beta=0.0, epsilon_high=None)),
    ]
    recs = [run_config(n, c, data) for n, c in configs]
    # Gradient accumulation: the generation batch is split into 2 micro-batches of 6 rows
    # (steps_per_generation = gradient_accumulation_steps = 2); TRL scales each micro-batch loss.
    for lt in ("dapo", "bnpo", "grpo", "dr_grpo"):
        recs.append(run_config(f"ga2_{lt}_b0.04",
                               dict(base, loss_type=lt, beta=0.04, gradient_accumulation_steps=2,
                                    steps_per_generation=2, per_device_train_batch_size=B // 2),
                               data, rows_list=[(0, B // 2), (B // 2, B)]))
    # sanity: the data exercise what the test relies on
    some = next(r for r in recs if r["name"] == "dapo_group_b0.04")
    assert some["steps"][0]["metrics"]["clip_ratio/low_mean"] > 0
    assert some["steps"][0]["metrics"]["clip_ratio/high_mean"] > 0
    doc = dict(
        generator="tests/golden/gen_grpo.py",
        trl_version=trl.__version__, torch_version=torch.__version__,
        python=platform.python_version(), seed=SEED,
        B=B, T=T, G=G, pad=PAD, eos=EOS,
        inputs=dict(logp=[float(x) for x in logp.flatten()], old_logp=[float(x) for x in old.flatten()],
                    ref_logp=[float(x) for x in ref.flatten()], entropy=[float(x) for x in ent.flatten()],
                    lengths=LENGTHS, truncated=TRUNCATED,
                    scores=[[a, f] for a, f in zip(ACCURACY, FORMAT)], weights=WEIGHTS),
        configs=recs)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(recs)} configs, trl {trl.__version__}, "
          f"torch {torch.__version__}")
    for r in recs:
        s = r["steps"][0]
        print(f"{r['name']:24s} loss {s['loss']:+.6f} items {r['num_items_in_batch']} "
              + " ".join(f"{k.split('/')[-1]}={v:.3f}" for k, v in s["metrics"].items() if v is not None))


if __name__ == "__main__":
    main()
