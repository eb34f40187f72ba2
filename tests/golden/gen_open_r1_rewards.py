#!/usr/bin/env python3
"""gen_open_r1_rewards.py — expected values of open-r1's rule-based rewards for the built-in Lua
rewards (rewards/reasoning_steps.lua, repetition.lua, cosine_length.lua, overlong.lua), checked by
tests/unit/test_reward_builtin2.c.

The four reward functions below restate open-r1's src/open_r1/rewards.py (huggingface/open-r1,
main branch as of 2026-04): reasoning_steps_reward, get_repetition_penalty_reward (language "en"),
get_cosine_scaled_reward and get_soft_overlong_punishment. They take plain strings / lengths instead
of TRL's chat-message lists; the arithmetic and the regex are the same. cosine_scaled_reward needs
math-verify (0.9.0) for correctness; rows where v3tune's C verifier is not expected to agree are
simply not generated (all golds and answers here are plain numbers or fractions).

Each output line: {"reward": NAME, "completion": str, "opts": {...}, "expected": float, ...}
with "solution" (cosine) or "n_ids" (overlong: the completion has that many token ids).

Usage:
  python3 tests/golden/gen_open_r1_rewards.py [--out tests/golden/data/open_r1_rewards.jsonl]
  python3 tests/golden/gen_open_r1_rewards.py --c-tables   # prints the Unicode tables of
                                                            # lua/v3mod_text.c (from this Python's
                                                            # unicodedata; committed: Unicode 14.0.0)
"""
import argparse
import json
import math
import os
import random
import re
import sys
import unicodedata
import logging
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)


# ---- open-r1's definitions (restated) ----

def reasoning_steps_reward(content):
    pattern = r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)"
    count = len(re.findall(pattern, content))
    return min(1.0, count / 3)


def repetition_penalty_reward(completion, ngram_size=3, max_penalty=-1.0):
    if max_penalty > 0:
        raise ValueError(f"max_penalty {max_penalty} should not be positive")

    def zipngram(text, ngram_size):
        words = text.lower().split()
        return zip(*[words[i:] for i in range(ngram_size)]), words

    if completion == "":
        return 0.0
    ngrams = set()
    total = 0
    ngram_array, words = zipngram(completion, ngram_size)
    if len(words) < ngram_size:
        return 0.0
    for ng in ngram_array:
        ngrams.add(ng)
        total += 1
    scaling = 1 - len(ngrams) / total
    return scaling * max_penalty


def cosine_scaled_reward(content, sol, min_value_wrong=-1.0, max_value_wrong=-0.5,
                         min_value_correct=0.5, max_value_correct=1.0, max_len=1000):
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse, verify

    gold_parsed = parse(sol, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
    if len(gold_parsed) == 0:
        return 1.0
    answer_parsed = parse(
        content,
        extraction_config=[
            LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False, malformed_operators=False, basic_latex=True, equations=True,
                    boxed=True, units=True),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ],
        extraction_mode="first_match",
    )
    is_correct = verify(answer_parsed, gold_parsed)
    gen_len = len(content)
    progress = gen_len / max_len
    cosine = math.cos(progress * math.pi)
    if is_correct:
        min_value, max_value = min_value_correct, max_value_correct
    else:
        min_value, max_value = max_value_wrong, min_value_wrong
    return float(min_value + 0.5 * (max_value - min_value) * (1.0 + cosine))


def soft_overlong_punishment(completion_length, max_completion_len, soft_punish_cache):
    if completion_length <= max_completion_len - soft_punish_cache:
        return 0.0
    elif max_completion_len - soft_punish_cache < completion_length <= max_completion_len:
        return (max_completion_len - soft_punish_cache - completion_length) / soft_punish_cache
    return -1.0


# ---- cases ----

STEP_PIECES = ["Step 1:", "Step 12:", "Step :", "Step x:", "step 1:", "Step \u0661\u0662:",
               "Step \uff11:", "Step 1", "Step 3 :", "1.", "12.", "1)", "\n-", "\n*", "\n", "-", "*",
               "First,", "First", "Second,", "Next,", "Finally,", "finally,", " ", "a", "\u4e2d\u6587",
               "\n1.", "Step 1:Step 2:", "Ste", "p 3:", "\u0967.", "Step 7\u0663:"]

WORDS = ["the", "The", "THE", "cat", "Cat", "sat", "\u0130stanbul", "istanbul", "i\u0307stanbul",
         "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2", "\u03bf\u03b4\u03bf\u03c3",
         "\u039f\u0394\u039f\u03a3.", "\u03a3", "\u03c3", "\u03c2", "A\u03a3'B", "stra\u00dfe",
         "STRASSE", "\u1e9e", "\u00df", "\u212a", "k", "K", "\u4e2d\u6587", "x", "\u00c9t\u00e9",
         "\u00e9t\u00e9", "\u0410\u0411\u0412", "\u0430\u0431\u0432", "\ufffd"]
SEPS = [" ", " ", " ", "\n", "\t", "\u3000", "\u00a0", "\x1c", "\x85", "  ", "\u2028", "\u200b"]


def step_cases(rng):
    fixed = ["", "Step 1: a\nStep 2: b\nStep 3: c", "1. one\n2. two", "First, x. Second, y.",
             "no steps here", "\n- a\n- b\n* c\n- d", "Step 1:Step 2:", "12. a", " 1. a"]
    out = list(fixed)
    for _ in range(150):
        out.append("".join(rng.choice(STEP_PIECES) for _ in range(rng.randint(1, 12))))
    return [{"reward": "reasoning_steps", "completion": c, "opts": {},
             "expected": reasoning_steps_reward(c)} for c in out]


def repetition_cases(rng):
    rows = []
    fixed = ["", "a", "a b", "a b c", "a b c a b c", "the the the the", "The cat THE CAT the cat",
             "   ", "\u039f\u0394\u039f\u03a3 x \u03bf\u03b4\u03bf\u03c2 x \u039f\u0394\u039f\u03a3 x"]
    texts = list(fixed)
    for _ in range(150):
        n = rng.randint(0, 14)
        t = rng.choice(["", " ", "\n"])
        for i in range(n):
            t += rng.choice(WORDS) + rng.choice(SEPS)
        texts.append(t)
    for t in texts:
        rows.append({"reward": "repetition", "completion": t, "opts": {},
                     "expected": repetition_penalty_reward(t)})
    for n, p in [(1, -1.0), (2, -0.5), (4, -1.0)]:
        for t in texts[::5]:
            rows.append({"reward": "repetition", "completion": t,
                         "opts": {"ngram_size": n, "max_penalty": p},
                         "expected": repetition_penalty_reward(t, n, p)})
    return rows


def cosine_cases(rng):
    rows = []
    golds = [("$42$", "42", "41"), ("$\\frac{1}{2}$", "\\frac{1}{2}", "\\frac{1}{3}"), ("$7$", "7", "8")]
    for gold, right, wrong in golds:
        for ans in (right, wrong):
            for pad in (0, 1, 250, 500, 999, 1000, 1500, 2000, 2700):
                filler = "".join(rng.choice("ab \u00e9\u4e2d") for _ in range(pad))
                text = filler + "The answer is $\\boxed{" + ans + "}$."
                rows.append({"reward": "cosine_length", "completion": text, "solution": gold,
                             "opts": {}, "expected": cosine_scaled_reward(text, gold)})
    text = "The answer is $\\boxed{42}$."
    for opts in ({"max_len": 100}, {"min_value_wrong": 0.0, "max_len": 50}):
        for gold in ("$42$", "$43$"):
            rows.append({"reward": "cosine_length", "completion": text, "solution": gold, "opts": opts,
                         "expected": cosine_scaled_reward(text, gold, **opts)})
    rows.append({"reward": "cosine_length", "completion": "whatever", "solution": "no math here",
                 "opts": {}, "expected": cosine_scaled_reward("whatever", "no math here")})
    return rows


def overlong_cases():
    rows = []
    for lmax, cache, lens in [(16384, 4096, [0, 1, 12287, 12288, 12289, 14336, 16383, 16384, 16385, 20000]),
                              (100, 20, [0, 80, 81, 90, 99, 100, 101]),
                              (100, 0, [99, 100, 101])]:
        opts = {} if (lmax, cache) == (16384, 4096) else {"max_completion_len": lmax, "soft_punish_cache": cache}
        for n in lens:
            rows.append({"reward": "overlong", "completion": "x", "n_ids": n, "opts": opts,
                         "expected": soft_overlong_punishment(n, lmax, cache)})
    return rows


# ---- Unicode tables for lua/v3mod_text.c ----

def ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def emit(name, ctype, rows, per_line):
    print(f"static const {ctype} {name}[] = {{")
    for i in range(0, len(rows), per_line):
        print("    " + " ".join("{" + ", ".join(v if isinstance(v, str) else f"0x{v:X}" if v >= 0 else str(v)
                                                 for v in r) + "}," for r in rows[i:i + per_line]))
    print("};")


def c_tables():
    n = sys.maxunicode + 1
    print(f"/* generated by tests/golden/gen_open_r1_rewards.py --c-tables (Unicode {unicodedata.unidata_version}) */")
    zeros = [c for c in range(n) if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0]
    assert all(unicodedata.decimal(chr(z + i)) == i for z in zeros for i in range(10))
    assert sum(1 for c in range(n) if re.match(r"\d", chr(c))) == 10 * len(zeros)
    print("static const uint32_t nd_zero[] = {")
    for i in range(0, len(zeros), 10):
        print("    " + " ".join(f"0x{z:X}," for z in zeros[i:i + 10]))
    print("};")
    # simple lowercase mapping as runs {first, last, delta, stride}; U+0130 (the only multi-char
    # lowercase) and the final sigma are handled in code
    low = sorted((c, ord(chr(c).lower())) for c in range(n)
                 if len(chr(c).lower()) == 1 and chr(c).lower() != chr(c))
    runs, i = [], 0
    while i < len(low):
        c, d = low[i][0], low[i][1] - low[i][0]
        j, stride = i, 1
        if i + 1 < len(low) and low[i + 1][1] - low[i + 1][0] == d and low[i + 1][0] - c in (1, 2):
            stride = low[i + 1][0] - c
            while (j + 1 < len(low) and low[j + 1][0] - low[j][0] == stride
                   and low[j + 1][1] - low[j + 1][0] == d):
                j += 1
        runs.append((c, low[j][0], d, stride))
        i = j + 1
    emit("lower_runs", "lower_run", runs, 4)
    cased = [c for c in range(n) if chr(c).islower() or chr(c).isupper() or chr(c).istitle()]
    emit("cased", "cp_range", ranges(cased), 6)
    # Case_Ignorable, found through str.lower()'s final-sigma rule; kept only for the blocks that
    # surround Greek text (below U+0530, U+1D00..U+206F, U+FE00..U+FFFF)
    ign = []
    for c in range(n):
        if not (c < 0x530 or 0x1D00 <= c < 0x2070 or 0xFE00 <= c <= 0xFFFF) or c == 0x3A3:
            continue
        ch = chr(c)
        if ch.islower() or ch.isupper() or ch.istitle():
            if (ch + "\u03a3").lower()[-1] == "\u03c3":
                ign.append(c)
        elif ("A" + ch + "\u03a3").lower()[-1] == "\u03c2":
            ign.append(c)
    emit("case_ignorable", "cp_range", ranges(ign), 6)
    ws = [c for c in range(n) if chr(c).isspace()]
    print("/* str.split() separators: " + " ".join(f"U+{c:04X}" for c in ws) + " */")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "data", "open_r1_rewards.jsonl"))
    ap.add_argument("--c-tables", action="store_true")
    args = ap.parse_args()
    if args.c_tables:
        c_tables()
        return
    rng = random.Random(20260402)
    rows = step_cases(rng) + repetition_cases(rng) + cosine_cases(rng) + overlong_cases()
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
