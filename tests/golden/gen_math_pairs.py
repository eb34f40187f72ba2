#!/usr/bin/env python3
"""gen_math_pairs.py — builds the labelled (gold, completion) pairs that test_math_golden.c checks.

Each row is {"id", "src", "gold", "completion", "label"} where label is what TRL/open-r1's
accuracy_reward returns with math-verify: 1.0, 0.0, or null (gold unparseable -> example skipped).
Golds and answers come from ../shared/data (GSM8K, MATH-500, MATH, AIME) plus real R1 / R1-distill
completions; synthetic completions imitate model output styles (boxed, prose, LaTeX variants,
units, separators, wrong answers, missing answers).

Usage: python3 tests/golden/gen_math_pairs.py [--data DIR] [--out FILE(.zst)]
The data dir defaults to $V3_SHARED_DATA, else ../shared/data relative to the repo root.
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore")
import logging

logging.disable(logging.CRITICAL)

from latex2sympy2_extended import NormalizationConfig  # noqa: E402
from math_verify import LatexExtractionConfig, parse, verify  # noqa: E402

# The completion config is open-r1's accuracy_reward's, verbatim in meaning.
PRED_CFG = [
    LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            nits=False, malformed_operators=False, basic_latex=True, equations=True,
            boxed="all", units=True),
        boxed_match_priority=0,
        try_extract_without_anchor=False,
    )
]
GOLD_CFG = [LatexExtractionConfig()]


def accuracy_reward(completion, gold):
    """open-r1 / TRL accuracy_reward for one sample: 1.0, 0.0, or None when the gold is unparseable."""
    gold_parsed = parse(gold, extraction_mode="first_match", extraction_config=GOLD_CFG)
    if len(gold_parsed) == 0:
        return None
    answer_parsed = parse(completion, extraction_config=PRED_CFG, extraction_mode="first_match")
    try:
        return float(verify(gold_parsed, answer_parsed))
    except Exception:
        return None


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gsm8k_answer(ans):
    return ans.split("####")[-1].strip().replace(",", "")


def number_variants(n, rng):
    """Completions for a GSM8K-style integer answer n (a string)."""
    v = int(n) if re.fullmatch(r"-?\d+", n) else None
    out = []
    pre = rng.choice(["", "Let me compute step by step. 3 + 4 = 7, then 7 * 2 = 14.\n",
                      "First, 12 * 5 = 60 and 60 - 8 = 52.\n</think>\n"])
    out.append(("boxed", pre + f"So the final answer is $\\boxed{{{n}}}$."))
    out.append(("boxed_display", pre + f"Therefore she makes\n\\[\n\\boxed{{{n}}}\n\\]\ndollars."))
    out.append(("answer_is_dollar", pre + f"The answer is ${n}$."))
    out.append(("answer_is_plain", pre + f"The answer is {n}."))
    out.append(("answer_colon_plain", pre + f"Answer: {n}"))
    out.append(("answer_bold_latex", pre + f"**Answer:** ${n}$"))
    out.append(("boxed_no_dollar", pre + f"\\boxed{{{n}}}"))
    out.append(("missing", pre + "I am not sure how to finish this problem."))
    if v is not None:
        out.append(("off_by_one", pre + f"The final answer is $\\boxed{{{v + 1}}}$"))
        out.append(("sign_flip", pre + f"$\\boxed{{{-v}}}$"))
        out.append(("decimal", pre + f"\\boxed{{{v}.00}}"))
        out.append(("dollar_unit", pre + f"\\boxed{{\\${v}}}"))
        out.append(("text_unit", pre + f"\\boxed{{{v} \\text{{ dollars}}}}"))
        out.append(("x_eq", pre + f"\\boxed{{x = {v}}}"))
        if abs(v) >= 1000:
            out.append(("thousands", pre + f"\\boxed{{{v:,}}}"))
            out.append(("thousands_brace", pre + f"\\boxed{{{v:,}}}".replace(",", "{,}")))
        out.append(("two_boxed_last", pre + f"First guess \\boxed{{{v + 3}}}. Rechecking the sums carefully "
                    f"I see an error in step two, so the corrected value is \\boxed{{{v}}}."))
        out.append(("percent", pre + f"\\boxed{{{v}\\%}}"))
        out.append(("paren_inline", pre + f"The answer is \\({v}\\)."))
        out.append(("boxed_then_text", pre + f"\\boxed{{{v}}} is the number of eggs."))
    return out


def latex_variants(a, rng):
    """Completions for a MATH-style LaTeX answer a."""
    out = []
    pre = rng.choice(["", "We simplify the expression and check the cases.\n",
                      "Okay, so x = 3 and y = 4 gives 25.\n</think>\n"])
    out.append(("boxed", pre + f"The final answer is $\\boxed{{{a}}}$."))
    out.append(("boxed_display", pre + f"\\[\n\\boxed{{{a}}}\n\\]"))
    out.append(("answer_is_dollar", pre + f"The answer is ${a}$."))
    out.append(("answer_is_plain", pre + f"The answer is {a}."))
    out.append(("missing", pre + "Therefore the problem has been solved."))
    out.append(("final_answer_hope", pre + f"Final Answer: The final answer is ${a}$. I hope it is correct."))
    out.append(("fbox", pre + f"\\fbox{{{a}}}"))
    out.append(("boxed_space", pre + f"\\boxed {{{a}}}"))
    out.append(("answer_paren", pre + f"**Answer:** \\({a}\\)"))
    out.append(("two_envs", pre + f"We get $x = 1$ first, and then the answer is ${a}$ as claimed."))
    out.append(("degrees", pre + f"\\boxed{{{a}^\\circ}}"))
    out.append(("units_cm", pre + f"\\boxed{{{a} \\text{{ cm}}}}"))
    out.append(("dollar_in_box", pre + f"\\boxed{{\\${a}}}"))
    out.append(("text_wrapped", pre + f"\\boxed{{\\text{{{a}}}}}"))
    out.append(("boxed_then_wrong", pre + f"\\boxed{{{a}}}. Hmm, wait, let me redo the last step: \\boxed{{{a}+1}}"))
    out.append(("boxed_trailing_brace", pre + f"\\boxed{{{a}}} (see {{Eq. 3}})"))
    if "," in a:
        parts = [x.strip() for x in a.strip("()[]\\{}").split(",")]
        out.append(("reversed_elems", pre + "\\boxed{" + ", ".join(reversed(parts)) + "}"))
    if "\\pi" in a:
        out.append(("pi_decimal", pre + "\\boxed{" + a.replace("\\pi", "3.14159") + "}"))
    b = a.replace("\\frac", "\\dfrac")
    if b != a:
        out.append(("dfrac", pre + f"\\boxed{{{b}}}"))
        m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", a)
        if m:
            p, q = int(m.group(2)), int(m.group(3))
            s = m.group(1)
            out.append(("frac_decimal", pre + f"\\boxed{{{s}{p / q:.6f}}}"))
            out.append(("frac_decimal_short", pre + f"\\boxed{{{s}{p / q:.2f}}}"))
            out.append(("frac_slash", pre + f"\\boxed{{{s}{p}/{q}}}"))
            out.append(("wrong_frac", pre + f"\\boxed{{{s}\\frac{{{q}}}{{{p}}}}}"))
            out.append(("frac_unreduced", pre + f"\\boxed{{{s}\\frac{{{2 * p}}}{{{2 * q}}}}}"))
    if re.fullmatch(r"-?\d+", a):
        v = int(a)
        out.append(("off_by_one", pre + f"\\boxed{{{v + 1}}}"))
        out.append(("sign_flip", pre + f"\\boxed{{{-v}}}"))
        out.append(("x_eq", pre + f"\\boxed{{x={v}}}"))
    else:
        out.append(("spaced", pre + "\\boxed{" + " ".join(a) + "}"))
        out.append(("left_right", pre + "\\boxed{" + a.replace("(", "\\left(").replace(")", "\\right)") + "}"))
        out.append(("neg", pre + f"\\boxed{{-{a}}}" if not a.startswith("-") else pre + f"\\boxed{{{a[1:]}}}"))
    return out


# A second family of completion styles, first run as a held-out check (never tuned on) before it
# joined the committed set: repeated boxes, \\( \\boxed{} \\), x = (tuple), {braces}, \\textbf, ...
EXTRA_TEMPLATES = [
    lambda a: f"$\\boxed{{{a}}}$ and $\\boxed{{{a}}}$", lambda a: f"The answer is \\(\\boxed{{{a}}}\\).",
    lambda a: f"\\boxed{{x = {a}}}", lambda a: f"\\boxed{{{a}}}\\%", lambda a: f"answer: $${a}$$",
    lambda a: f"\\boxed{{{a}^2}}", lambda a: f"\\boxed{{2{a}}}", lambda a: f"\\boxed{{{a}.}}",
    lambda a: f"\\boxed{{{{{a}}}}}", lambda a: f"\\boxed{{\\left( {a} \\right)}}",
    lambda a: f"So we get \\boxed{{{a}}}\n\n**Final Answer**\n\\[\\boxed{{{a}}}\\]",
    lambda a: f"Answer: \\({a}\\) units", lambda a: f"\\boxed{{({a})}}", lambda a: f"\\boxed{{{a}}} \\quad \\text{{(final)}}",
    lambda a: f"The value is $y={a}$, so the answer is $y = {a}$.", lambda a: f"\\boxed{{\\textbf{{{a}}}}}",
    lambda a: f"\\boxed{{{a}}}\\boxed{{{a}}}", lambda a: f"Therefore, $\\boxed{{{a} \\text{{ square units}}}}$.",
    lambda a: f"\\boxed{{-{a}}}", lambda a: f"\\boxed{{\\frac{{1}}{{{a}}}}}", lambda a: f"\\boxed{{{a} + 0}}",
    lambda a: f"\\boxed{{ {a} }}.", lambda a: f"\\fbox{{{a}}} so \\boxed{{{a}}}", lambda a: f"final answer is $\\boxed{{{a}}}$",
]

# A third family, also measured held-out first (96.0% agreement at first sight, mostly
# "\\left[ x \\right]" one-element brackets): R1-style endings, spacing/units after tuples, ...
EXTRA_TEMPLATES2 = [lambda a:f"**Final Answer**\n\\boxed{{{a}}}", lambda a:f"The final answer is \\(\\boxed{{{a}}}\\)",
   lambda a:f"\\boxed{{\\displaystyle {a}}}", lambda a:f"\\boxed{{{a} \\, \\text{{m}}}}", lambda a:f"\\boxed{{{a}\\text{{ km/h}}}}",
   lambda a:f"\\boxed{{\\mathbf{{{a}}}}}", lambda a:f"\\boxed{{\\mathrm{{{a}}}}}",
   lambda a:f"\\boxed{{{a}}}\n\nWait, no. Let me recompute. Actually the answer is \\boxed{{{a}+2}}",
   lambda a:f"\\[ \\boxed{{{a}}} \\]", lambda a:f"$$\\boxed{{{a}}}$$", lambda a:f"\\boxed{{+{a}}}", lambda a:f"\\boxed{{{a}\\%}}",
   lambda a:f"\\boxed{{\\$ {a}}}", lambda a:f"\\boxed{{\\approx {a}}}", lambda a:f"\\boxed{{{a}^{{1}}}}",
   lambda a:f"ANSWER: ${a}$", lambda a:f"\\boxed{{{a}}}\\boxed{{}}", lambda a:f"so $y = {a}$ is the final answer",
   lambda a:f"The final answer is: $${a}$$", lambda a:f"Hence the answer is \\[{a}\\]", lambda a:f"\\boxed{{ \\left[ {a} \\right] }}",
   lambda a:f"\\boxed{{{a} }} \\text{{ (rounded)}}", lambda a:f"Answer:\n\n$\\boxed{{{a}}}$", lambda a:f"\\boxed{{{a}}} or \\boxed{{{a}}}",
   lambda a:f"the answer: {a}", lambda a:f"$\\boxed{{a={a}}}$"]


def full_trace_pairs(D):
    """Real R1 / R1-distill completions at full length (reasoning included), as accuracy_reward
    sees them. Too large to commit; written only with --full-traces for an ad-hoc check."""
    R = os.path.join(D, "r1_math_traces")
    rows = []
    for r in json.load(open(os.path.join(R, "mip_overthinking/response/gsm8k/normal/deepseekR1/response.json"))):
        t = r["deepseek-reasoner (question)"]
        if not t.startswith("Error after"):
            rows.append(("full:r1:gsm8k", f"${gsm8k_answer(r['answer'])}$", t))
    for r in json.load(open(os.path.join(R, "mip_overthinking/response/gsm8k/normal/DSQ/response.json")))[:300]:
        rows.append(("full:r1dsq:gsm8k", f"${gsm8k_answer(r['answer'])}$", r["model_answer"]))
    for f, key in [("deepseekR1", "deepseek-reasoner (question)"), ("DSQ", "model_answer")]:
        for r in json.load(open(os.path.join(R, f"mip_overthinking/response/math/normal/{f}/response.json"))):
            rows.append((f"full:{f}:math", f"${r['answer']}$", r[key]))
    for fn in sorted(glob.glob(os.path.join(R, "reasoning_models_probing/initial_cot/*.jsonl"))):
        for r in load_jsonl(fn):
            rows.append(("full:aime", f"${r['answer']}$", r["completion"]))
    for pj in sorted(glob.glob(os.path.join(R, "thought_anchors/src/app/data/*/*/problem_*/problem.json"))):
        prob = json.load(open(pj))
        sol = json.load(open(os.path.join(os.path.dirname(pj), "base_solution.json")))
        rows.append(("full:thought_anchors", f"${prob['gt_answer']}$", sol["solution"]))
    return rows


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def after_think(text, cap=500):
    """The final-answer part of an R1 string, capped so the pair file stays small."""
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return text[-cap:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("V3_SHARED_DATA",
                                                     os.path.join(repo_root(), "..", "shared", "data")))
    ap.add_argument("--out", default=os.path.join(repo_root(), "tests", "golden", "data", "math_pairs.jsonl.zst"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--full-traces", metavar="FILE", help="also write full-length R1 trace pairs (not committed)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    D = args.data
    pairs = []  # (src, gold, completion)

    gsm = load_jsonl(os.path.join(D, "gsm8k", "test.jsonl"))
    rng.shuffle(gsm)
    for row in gsm[:100]:
        n = gsm8k_answer(row["answer"])
        for kind, c in number_variants(n, rng):
            pairs.append((f"gsm8k:{kind}", f"${n}$", c))
    # Golds as GSM8K gives them: a bare number (math-verify finds no LaTeX -> skipped) and the full "#### N".
    for row in gsm[100:120]:
        n = gsm8k_answer(row["answer"])
        pairs.append(("gsm8k:bare_gold", n, f"\\boxed{{{n}}}"))
        pairs.append(("gsm8k:hash_gold", row["answer"], f"\\boxed{{{n}}}"))

    m500 = load_jsonl(os.path.join(D, "math500", "test.jsonl"))
    rng.shuffle(m500)
    for row in m500:
        a = row["answer"]
        for kind, c in latex_variants(a, rng):
            pairs.append((f"math500:{kind}", f"${a}$", c))
        # other rows' answers as wrong predictions
        other = rng.choice(m500)["answer"]
        pairs.append(("math500:other_answer", f"${a}$", f"\\boxed{{{other}}}"))

    for row in m500[:250]:
        a = row["answer"]
        for t in rng.sample(EXTRA_TEMPLATES, 8):
            pairs.append(("math500:extra", f"${a}$", t(a)))
    for row in gsm[:120]:
        n = gsm8k_answer(row["answer"])
        for t in rng.sample(EXTRA_TEMPLATES, 6):
            pairs.append(("gsm8k:extra", f"${n}$", t(n)))

    for row in m500[250:450]:
        a = row["answer"]
        for t in rng.sample(EXTRA_TEMPLATES2, 6):
            pairs.append(("math500:extra2", f"${a}$", t(a)))
    for row in gsm[120:220]:
        n = gsm8k_answer(row["answer"])
        for t in rng.sample(EXTRA_TEMPLATES2, 5):
            pairs.append(("gsm8k:extra2", f"${n}$", t(n)))

    # Full MATH solutions as golds (gold has \boxed), completion = boxed answer from the solution.
    files = sorted(glob.glob(os.path.join(D, "math", "MATH", "test", "*", "*.json")))
    rng.shuffle(files)
    for fn in files[:110]:
        with open(fn) as f:
            row = json.load(f)
        sol = row["solution"]
        i = sol.rfind("\\boxed")
        if i < 0:
            continue
        pairs.append(("math:solution_gold_self", sol, sol[i:] if rng.random() < 0.5 else "Thus " + sol[i:]))
        pairs.append(("math:solution_gold_wrong", sol, "\\boxed{7}"))

    for fn in sorted(glob.glob(os.path.join(D, "aime", "*.jsonl"))):
        for row in load_jsonl(fn):
            a = str(row["answer"])
            pairs.append(("aime:boxed", f"${a}$", f"Hence $m+n = \\boxed{{{a}}}$."))
            pairs.append(("aime:leading_zero", f"${a}$", f"\\boxed{{{int(a):03d}}}"))

    # Real R1 / R1-distill completions.
    R = os.path.join(D, "r1_math_traces")
    gr1 = json.load(open(os.path.join(R, "mip_overthinking/response/gsm8k/normal/deepseekR1/response.json")))
    gdsq = json.load(open(os.path.join(R, "mip_overthinking/response/gsm8k/normal/DSQ/response.json")))
    idx = list(range(len(gr1)))
    rng.shuffle(idx)
    for i in idx[:260]:
        r = gr1[i]["deepseek-reasoner (question)"]
        if r.startswith("Error after"):
            continue
        n = gsm8k_answer(gr1[i]["answer"])
        pairs.append(("r1:gsm8k", f"${n}$", after_think(r)))
    for i in idx[260:460]:
        n = gsm8k_answer(gdsq[i]["answer"])
        pairs.append(("r1dsq:gsm8k", f"${n}$", after_think(gdsq[i]["model_answer"])))
    mr1 = json.load(open(os.path.join(R, "mip_overthinking/response/math/normal/deepseekR1/response.json")))
    mdsq = json.load(open(os.path.join(R, "mip_overthinking/response/math/normal/DSQ/response.json")))
    for row in mr1:
        pairs.append(("r1:math", f"${row['answer']}$", after_think(row["deepseek-reasoner (question)"])))
    for row in mdsq:
        pairs.append(("r1dsq:math", f"${row['answer']}$", after_think(row["model_answer"])))
    for fn in sorted(glob.glob(os.path.join(R, "reasoning_models_probing/initial_cot/*.jsonl"))):
        for row in load_jsonl(fn):
            c = row["completion"]
            if "</think>" not in c:
                c = c[-400:]  # truncated mid-reasoning: keep a tail, usually no answer
            pairs.append(("r1distill:aime", f"${row['answer']}$", after_think(c, 400)))
    for pj in sorted(glob.glob(os.path.join(R, "thought_anchors/src/app/data/*/*/problem_*/problem.json"))):
        prob = json.load(open(pj))
        sol = json.load(open(os.path.join(os.path.dirname(pj), "base_solution.json")))
        pairs.append(("r1distill:math", f"${prob['gt_answer']}$", after_think(sol["solution"])))

    if args.full_traces:
        with open(args.full_traces, "w") as f:
            for k, (src, gold, comp) in enumerate(full_trace_pairs(D)):
                f.write(json.dumps({"id": k, "src": src, "gold": gold, "completion": comp,
                                    "label": accuracy_reward(comp, gold)}) + "\n")

    n_lab = {"1.0": 0, "0.0": 0, "None": 0}
    plain = args.out[:-4] if args.out.endswith(".zst") else args.out
    with open(plain, "w") as f:
        for k, (src, gold, comp) in enumerate(pairs):
            lab = accuracy_reward(comp, gold)
            n_lab[str(lab)] += 1
            f.write(json.dumps({"id": k, "src": src, "gold": gold, "completion": comp, "label": lab}) + "\n")
    if plain != args.out:  # committed compressed (zstd CLI), read back by v3_jsonl
        subprocess.run(["zstd", "-19", "-q", "-f", "--rm", plain, "-o", args.out], check=True)
    print(f"{len(pairs)} pairs -> {args.out}; labels {n_lab}", file=sys.stderr)


if __name__ == "__main__":
    main()
