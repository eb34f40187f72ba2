#!/usr/bin/env python3
"""grpo_trl.py — the competitor for bench/bench_grpo.sh: TRL's GRPOTrainer (transformers
generation, no vLLM) on the Hugging Face model of the same directory (DeepseekV3ForCausalLM, fp32,
eager attention, CPU), with the settings of the v3tune run it is compared with: the same prompts
(GSM8K questions under the DeepSeek-V3 chat template), G completions per prompt, prompts per step,
max new tokens, temperature, loss (dapo, eps 0.2/0.2, beta 0, one update per generation batch),
AdamW and clipping, and the same two rewards (exact answer, a length-free format check: the
Python twins of the Lua modules bench_grpo.sh gives v3tune).

The step time is split like v3tune's metrics: generation (TRL `_generate`), rewards
(`_calculate_rewards`), and the rest of the step (the policy update). Prints one line per timed
step and a summary line; the first step is a warm-up and is not timed.
"""
import argparse
import json
import re
import time

import torch
from datasets import Dataset
from transformers import AutoTokenizer, DeepseekV3ForCausalLM, TrainerCallback
from trl import GRPOConfig, GRPOTrainer


def accuracy(completions, answer, **kw):
    out = []
    for c, a in zip(completions, answer):
        text = c[0]["content"] if isinstance(c, list) else c
        out.append(1.0 if text.strip() == str(a).split("####")[-1].strip() else 0.0)
    return out


def fmt(completions, **kw):
    out = []
    for c in completions:
        text = c[0]["content"] if isinstance(c, list) else c
        out.append(1.0 if re.search(r"\d", text) else 0.0)
    return out


class Timer:
    """Accumulates wall time of wrapped methods per step."""

    def __init__(self):
        self.t = {"generate": 0.0, "reward": 0.0}

    def wrap(self, obj, name, key):
        f = getattr(obj, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                self.t[key] += time.perf_counter() - t0

        setattr(obj, name, timed)


class Steps(TrainerCallback):
    def __init__(self, timer, trainer_ref):
        self.timer, self.trainer_ref, self.rows, self.t0 = timer, trainer_ref, [], None

    def on_step_begin(self, args, state, control, **kw):
        self.timer.t = {"generate": 0.0, "reward": 0.0}
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        dt = time.perf_counter() - self.t0
        self.rows.append((dt, self.timer.t["generate"], self.timer.t["reward"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="GSM8K JSONL (question, answer)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-6)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    rows = []
    with open(a.data) as f:
        for line in f:
            r = json.loads(line)
            rows.append({"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]})
            if len(rows) >= a.prompts * (a.steps + 1):
                break
    ds = Dataset.from_list(rows)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = DeepseekV3ForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    n = a.prompts * a.group
    cfg = GRPOConfig(output_dir="/tmp/grpo_trl_bench", use_cpu=True, bf16=False, report_to=[],
                     save_strategy="no", logging_steps=1, max_steps=a.steps + 1,
                     per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=1,
                     num_generations=a.group, max_completion_length=a.max_new, temperature=1.0,
                     top_p=1.0, top_k=0, loss_type="dapo", epsilon=0.2, epsilon_high=0.2, beta=0.0,
                     num_iterations=1, learning_rate=a.lr, lr_scheduler_type="constant",
                     adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
                     use_vllm=False, shuffle_dataset=False, dataloader_num_workers=0, seed=0,
                     disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=[accuracy, fmt], args=cfg, train_dataset=ds,
                          processing_class=tok)
    timer = Timer()
    timer.wrap(trainer, "_generate", "generate")
    timer.wrap(trainer, "_calculate_rewards", "reward")
    cb = Steps(timer, trainer)
    trainer.add_callback(cb)
    trainer.train()
    timed = cb.rows[1:]
    tot = sum(r[0] for r in timed)
    gen = sum(r[1] for r in timed)
    rew = sum(r[2] for r in timed)
    toks = len(timed) * n * a.max_new  # completions reach max_new on a random model (see the log)
    for i, (dt, g, r) in enumerate(timed):
        print(f"trl step {i + 2}: {dt:.2f} s (generate {g:.2f} s, reward {r:.3f} s, update {dt - g - r:.2f} s)")
    mean_len = [x.get("completions/mean_length") for x in trainer.state.log_history if "completions/mean_length" in x]
    print(f"TRL {__import__('trl').__version__}: {len(timed)} steps, step {tot / len(timed):.2f} s "
          f"(generate {gen / len(timed):.2f}, reward {rew / len(timed):.3f}, update {(tot - gen - rew) / len(timed):.2f}), "
          f"{toks / tot:.1f} completion tokens/s; mean completion length {mean_len}")


if __name__ == "__main__":
    main()
