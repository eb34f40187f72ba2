#!/usr/bin/env python3
"""gen_chat.py — golden chat renderings for tests/unit/test_chat.c.

Run by hand (ctest never needs Python):  python3 tests/golden/gen_chat.py
Writes tests/golden/data/chat_golden.jsonl.zst: one JSON object per (conversation, template,
add_generation_prompt) with
  name, template ("v3" | "r1" | "r1-keep-reasoning"), add_generation_prompt, mask_last_only,
  messages, rendered (the string), ids (HF ids of that string), masked_text (what the tokens
  with loss mask 1 decode to, or null when a text run mixes masked and unmasked bytes).

"v3" is rendered with the shared tokenizer_config.json's chat_template (AutoTokenizer on a temp dir
holding the two shared files) through transformers' own Jinja renderer (render_jinja_template,
the function apply_chat_template calls), and the ids are the tokenizer's encode of that string
with add_special_tokens=False, which is what apply_chat_template(tokenize=True) does. The
renderer is called directly because transformers v5's apply_chat_template drops message keys
whose value is None, so "content": None (the template's tool-call branch) would raise; for the
conversations without None values the ids are also checked against apply_chat_template itself.
"r1" uses DeepSeek-R1's chat_template (R1_TEMPLATE below: the JSON string value of
"chat_template" in the R1 tokenizer_config.json cited in model-spec §10, verbatim). "r1-keep-reasoning" is v3tune's own extension
(datasets/chat.h) with no upstream template: it is rendered by the reference renderer below,
and its ids are HF's encode of the rendered string. The reference renderer is checked against
the Jinja output for v3 and r1 on every conversation before it is trusted for masks and keep.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("V3_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")
OUT = os.path.join(HERE, "data", "chat_golden.jsonl.zst")

R1_TEMPLATE_JSON = r"""{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"""
R1_TEMPLATE = json.loads('"' + R1_TEMPLATE_JSON + '"')

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUTS_BEGIN, OUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"
OUT_BEGIN, OUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"


def reference(messages, tmpl, add_gen, mask_last_only=False):
    """Reference renderer (datasets/chat.h semantics): list of (text, is_special, mask)."""
    r1 = tmpl != "v3"
    keep = tmpl == "r1-keep-reasoning"
    segs = []
    last = max([i for i, m in enumerate(messages) if m["role"] == "assistant"], default=-1)
    segs.append((BOS, True, 0))
    sys_parts = [m["content"] for m in messages if m["role"] == "system"]
    if sys_parts:
        segs.append(("\n\n".join(sys_parts), False, 0))
    is_first, is_tool, out_first = False, False, True

    def call_body(t, am):
        return [(t["type"], False, am), (SEP, True, am),
                (t["function"]["name"] + "\n```json\n" + t["function"]["arguments"] + "\n```", False, am),
                (CALL_END, True, am)]

    for i, m in enumerate(messages):
        role = m["role"]
        am = 1 if role == "assistant" and (not mask_last_only or i == last) else 0
        if role == "user":
            is_tool = False
            segs += [(USER, True, 0), (m["content"], False, 0)]
        elif role == "assistant":
            content = m.get("content")
            tool_branch = ("tool_calls" in m) if r1 else content is None
            if tool_branch:
                is_tool = False
                for t in m.get("tool_calls") or []:
                    if not is_first:
                        segs.append((ASSISTANT, True, 0))
                        if r1 and content is not None:
                            segs.append((content, False, am))
                        segs += [(CALLS_BEGIN, True, am), (CALL_BEGIN, True, am)] + call_body(t, am)
                        is_first = True
                    else:
                        segs += [("\n", False, am), (CALL_BEGIN, True, am)] + call_body(t, am)
                        if not r1:
                            segs += [(CALLS_END, True, am), (EOS, True, am)]
                if r1:
                    segs += [(CALLS_END, True, am), (EOS, True, am)]
            else:
                segs.append((OUTS_END if is_tool else ASSISTANT, True, 0))
                if keep and i == last and m.get("reasoning_content") is not None:
                    segs += [("<think>\n", False, 0), (m["reasoning_content"] + "\n</think>\n\n", False, am)]
                elif r1 and not is_tool and not (keep and i == last) and "</think>" in content:
                    content = content.split("</think>")[-1]
                segs += [(content, False, am), (EOS, True, am)]
                is_tool = False
        elif role == "tool":
            is_tool = True
            if out_first:
                segs += [(OUTS_BEGIN, True, 0), (OUT_BEGIN, True, 0)]
                out_first = False
            else:
                if not r1:
                    segs.append(("\n", False, 0))
                segs.append((OUT_BEGIN, True, 0))
            segs += [(m["content"], False, 0), (OUT_END, True, 0)]
    if is_tool:
        segs.append((OUTS_END, True, 0))
    if add_gen and not is_tool:
        segs.append((ASSISTANT, True, 0))
        if r1:
            segs.append(("<think>\n", False, 0))
    return segs


def masked_text(segs):
    """Text of the masked tokens, or None when a text run mixes masks (token-level ambiguity)."""
    run = []
    for text, special, mask in segs + [("", True, 0)]:
        if special:
            if len({m for t, m in run if t}) > 1:
                return None
            run = []
        else:
            run.append((text, mask))
    return "".join(t for t, _, m in segs if m)


def call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def handmade():
    c = []
    c.append(("user_only", [{"role": "user", "content": "What is 2+2?"}]))
    c.append(("system_multi_turn", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."}]))
    c.append(("two_systems", [
        {"role": "system", "content": "Rule one."},
        {"role": "user", "content": "Q1"},
        {"role": "system", "content": "Rule two, later."},
        {"role": "assistant", "content": "A1"}]))
    c.append(("three_turns", [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d\n"},
        {"role": "user", "content": " e "}, {"role": "assistant", "content": "  f"}]))
    c.append(("tool_single", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Paris"})]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "It is 21°C in Paris."}]))
    c.append(("tool_two_calls_one_message", [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None,
         "tool_calls": [call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Rome"})]},
        {"role": "tool", "content": "21"}, {"role": "tool", "content": "25"},
        {"role": "assistant", "content": "Paris 21, Rome 25."}]))
    c.append(("tool_is_first_quirk", [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [call("now", {})]},
        {"role": "tool", "content": "12:00"},
        {"role": "assistant", "content": "Noon."},
        {"role": "user", "content": "And in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [call("now", {"tz": "Asia/Tokyo"})]},
        {"role": "tool", "content": "20:00"},
        {"role": "assistant", "content": "8 pm."}]))
    c.append(("ends_on_tool", [
        {"role": "user", "content": "Search cats"},
        {"role": "assistant", "content": None, "tool_calls": [call("search", {"q": "cats"})]},
        {"role": "tool", "content": "result 1"}, {"role": "tool", "content": "result 2"}]))
    c.append(("think_in_history", [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>\nsimple\n</think>\n\n2"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>a</think>b</think>\n\n4"}]))
    c.append(("specials_in_content", [
        {"role": "user", "content": "Say <｜User｜> and <｜end▁of▁sentence｜> and <|EOT|> please"},
        {"role": "assistant", "content": "<｜Assistant｜> ok <｜tool▁sep｜>"}]))
    c.append(("empty_contents", [
        {"role": "system", "content": ""}, {"role": "user", "content": ""},
        {"role": "assistant", "content": ""}]))
    c.append(("multilingual", [
        {"role": "user", "content": "用中文解释一下量子纠缠。日本語でも。"},
        {"role": "assistant", "content": "量子纠缠是……😀 مرحبا नमस्ते\r\n\t123456"}]))
    c.append(("tool_then_user", [
        {"role": "user", "content": "Convert 100 USD"},
        {"role": "assistant", "content": None, "tool_calls": [call("convert", {"amount": 100, "to": "EUR"})]},
        {"role": "tool", "content": "92.5"},
        {"role": "user", "content": "thanks, now JPY"}]))
    c.append(("reasoning_starts_with_newline", [
        {"role": "user", "content": "Think first."},
        {"role": "assistant", "content": "Done.", "reasoning_content": "\n(starts with a newline) hmm"}]))
    c.append(("r1_tool_with_content", [
        {"role": "user", "content": "Look up pi"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call("lookup", {"name": "pi"})]},
        {"role": "tool", "content": "3.14159"},
        {"role": "assistant", "content": "Pi is about 3.14159."}]))
    return c


def glaive(n=12):
    convs = json.load(open(os.path.join(DATA, "sft_llamafactory_demo", "glaive_toolcall_en_demo.json"), encoding="utf-8"))
    out = []
    for k, conv in enumerate(convs):
        turns = conv["conversations"]
        if not any(t["from"] == "function_call" for t in turns):
            continue
        msgs = []
        if conv.get("system"):
            msgs.append({"role": "system", "content": conv["system"]})
        for t in turns:
            if t["from"] == "human":
                msgs.append({"role": "user", "content": t["value"]})
            elif t["from"] == "gpt":
                msgs.append({"role": "assistant", "content": t["value"]})
            elif t["from"] == "function_call":
                fc = json.loads(t["value"])
                msgs.append({"role": "assistant", "content": None,
                             "tool_calls": [call(fc["name"], fc.get("arguments", {}))]})
            elif t["from"] == "observation":
                msgs.append({"role": "tool", "content": t["value"]})
        out.append(("glaive_%d" % k, msgs))
        if len(out) == n:
            break
    return out


def r1_traces(n=6):
    recs = json.load(open(os.path.join(DATA, "r1_traces_misguided_attention", "thinking_input_r1.json"), encoding="utf-8"))["results"]
    items = sorted(((len(t) + len(o), r["prompt_id"], i, r["prompt"], t, o)
                    for r in recs for i, (t, o) in enumerate(zip(r["thinking"], r["output"]))))[:n]
    out = []
    for j, (_, pid, i, prompt, thinking, output) in enumerate(items):
        msgs = [{"role": "user", "content": prompt},
                {"role": "assistant", "content": output, "reasoning_content": thinking}]
        if j % 2 == 1:  # a second turn: the first answer carries its reasoning inline
            msgs = [{"role": "system", "content": "You are a careful reasoner."},
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": "<think>\n" + thinking + "\n</think>\n\n" + output},
                    {"role": "user", "content": "Are you sure? Answer briefly."},
                    {"role": "assistant", "content": "Yes.", "reasoning_content": "The user asks again; I re-check.\n" + thinking[:300]}]
        out.append(("r1_%s_%d" % (pid, i), msgs))
    return out


def main():
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    tmp = tempfile.mkdtemp()
    try:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(DATA, "deepseek-v3", f), tmp)
        tok = AutoTokenizer.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp)
    v3_template = tok.chat_template
    convs = handmade() + glaive() + r1_traces()
    rows = []
    ref_checked = via_apply = 0
    for name, msgs in convs:
        for tmpl in ("v3", "r1", "r1-keep-reasoning"):
            for add_gen in (False, True):
                for last_only in ((False, True) if tmpl != "r1" else (False,)):
                    segs = reference(msgs, tmpl, add_gen, last_only)
                    ref = "".join(t for t, _, _ in segs)
                    if tmpl == "r1-keep-reasoning":
                        rendered = ref
                        ids = tok(rendered, add_special_tokens=False)["input_ids"]
                    else:
                        jt = v3_template if tmpl == "v3" else R1_TEMPLATE
                        rendered = render_jinja_template(conversations=[msgs], chat_template=jt,
                                                         add_generation_prompt=add_gen,
                                                         **tok.special_tokens_map)[0][0]
                        ids = tok(rendered, add_special_tokens=False)["input_ids"]
                        if not any(v is None for m in msgs for v in m.values()):
                            enc = tok.apply_chat_template(msgs, chat_template=jt, tokenize=True,
                                                          add_generation_prompt=add_gen)
                            hf = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
                            assert hf == ids, name
                            via_apply += 1
                        assert rendered == ref, "reference renderer differs from Jinja: %s %s %s\n%r\n%r" % (
                            name, tmpl, add_gen, rendered, ref)
                        ref_checked += 1
                    rows.append({"name": name, "template": tmpl, "add_generation_prompt": add_gen,
                                 "mask_last_only": last_only, "messages": msgs, "rendered": rendered,
                                 "ids": ids, "masked_text": masked_text(segs)})
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    zst = subprocess.run(["zstd", "-19", "-q", "-c", "--stream-size=%d" % len(text)], input=text, stdout=subprocess.PIPE, check=True)
    with open(OUT, "wb") as f:
        f.write(zst.stdout)
    print("conversations %d rows %d (reference checked against Jinja on %d, ids also via "
          "apply_chat_template(tokenize=True) on %d) -> %s (%d bytes)" %
          (len(convs), len(rows), ref_checked, via_apply, OUT, len(zst.stdout)))


if __name__ == "__main__":
    sys.exit(main())
