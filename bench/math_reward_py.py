#!/usr/bin/env python3
"""math_reward_py.py — TRL/open-r1 accuracy_reward (math-verify) on the same pairs as
bench_math_reward.c, in one process, one thread.
usage: python3 bench/math_reward_py.py [PAIRS_FILE] [N_PAIRS]
Prints samples/s and the reward sum (None = gold unparseable, counted separately)."""
import json
import logging
import os
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

from latex2sympy2_extended import NormalizationConfig  # noqa: E402
from math_verify import LatexExtractionConfig, parse, verify  # noqa: E402


def accuracy_reward(completions, solution):
    """open-r1's accuracy_reward body (contents already extracted from the chat messages)."""
    rewards = []
    for content, sol in zip(completions, solution):
        gold_parsed = parse(sol, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
        if len(gold_parsed) != 0:
            answer_parsed = parse(
                content,
                extraction_config=[LatexExtractionConfig(
                    normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True,
                                                             equations=True, boxed="all", units=True),
                    boxed_match_priority=0, try_extract_without_anchor=False)],
                extraction_mode="first_match")
            try:
                reward = float(verify(gold_parsed, answer_parsed))
            except Exception:
                reward = None
        else:
            reward = None
        rewards.append(reward)
    return rewards


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "golden", "data",
                                                              "math_pairs.jsonl.zst")
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    if path.endswith(".zst"):
        text = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True, text=True).stdout
    else:
        with open(path) as f:
            text = f.read()
    rows = [json.loads(l) for l in text.splitlines() if l.strip()][:want]
    comps = [r["completion"] for r in rows]
    golds = [r["gold"] for r in rows]
    t0 = time.perf_counter()
    out = accuracy_reward(comps, golds)
    dt = time.perf_counter() - t0
    s = sum(x for x in out if x is not None)
    none = sum(1 for x in out if x is None)
    print(f"python: pairs={len(rows)}  seconds={dt:.4f}  samples_per_s={len(rows) / dt:.0f}  "
          f"reward_sum={s:.0f}  none={none}")


if __name__ == "__main__":
    main()
