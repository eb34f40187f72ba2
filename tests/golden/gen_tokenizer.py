#!/usr/bin/env python3
"""gen_tokenizer.py — golden ids from HF `tokenizers` for tests/unit/test_tokenizer_golden.c.

Run by hand (ctest never needs Python):  python3 tests/golden/gen_tokenizer.py
Reads the DeepSeek-V3 tokenizer.json and every .json/.jsonl file under the shared data folder
($V3_SHARED_DATA, else ../shared/data beside the repo) and writes:

  tests/golden/data/tok_rows.txt.zst   one line per text field, in a fixed order:
      "F <relpath> <rows> <file_hash>"   a file header, then for each row
      "<bytes> <tokens> <hash>"           its UTF-8 byte length, token count and id hash.
  tests/golden/data/tok_edge.jsonl     hand-made edge cases with their full ids.
  tests/golden/data/tok_decode.jsonl   random id sequences (partial UTF-8 bytes, added tokens) with
                                       HF's decode, with and without special tokens.

Row order (the C test enumerates the same way): files sorted by relative path (deepseek-v3/
excluded); a .jsonl file is read line by line (blank lines skipped), a .json file is one
document; within a document every string VALUE (not object keys) is a row, in document order
(objects in key order as written, arrays in index order). Hashes are FNV-1a 64 over the ids
written as 4-byte little-endian integers: the per-row hash is its low 32 bits (to keep the
committed file small), the per-file hash is the full 64 bits over all ids of all its rows
(each row's ids followed by the 4 bytes ff ff ff ff as a separator).
"""
import json
import os
import random
import struct
import subprocess
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("V3_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data")
OUT = os.path.join(HERE, "data")

FNV_OFF = 1469598103934665603
FNV_PRIME = 1099511628211
MASK = (1 << 64) - 1


def fnv_ids(ids, h=FNV_OFF):
    for b in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def leaves(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from leaves(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from leaves(x)


def data_files():
    out = []
    for dp, _, fn in os.walk(DATA):
        for f in fn:
            if f.endswith(".json") or f.endswith(".jsonl"):
                rel = os.path.relpath(os.path.join(dp, f), DATA)
                if not rel.startswith("deepseek-v3" + os.sep):
                    out.append(rel)
    return sorted(out, key=lambda s: s.encode("utf-8"))


def file_rows(rel):
    path = os.path.join(DATA, rel)
    with open(path, "rb") as fh:
        raw = fh.read()
    if rel.endswith(".jsonl"):
        docs = [json.loads(l) for l in raw.split(b"\n") if l.strip()]
    else:
        docs = [json.loads(raw)]
    rows = []
    for d in docs:
        rows.extend(leaves(d))
    return rows


# Edge cases for the committed full-id corpus (all valid UTF-8; invalid bytes are tested in C).
EDGE = [
    "", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n\n", " \n ", "a\r\nb", "\t\tindent\ttab",
    "trailing space ", "trailing spaces   ", "trailing newline\n", "  leading", "a  b   c    d",
    "word", "Hello, world!", "It's a dog's life; we're here, they've gone, I'm fine, you'll see, he'd go.",
    "12", "123", "1234", "1234567", "3.14159265358979", "1,000,000", "x=10**20", "v1.2.3-rc4",
    "٣٤٥ ١٢", "१२३४५", "²³¹ ½ Ⅻ", "0x1F600",
    "中文测试，你好世界。", "日本語のひらがなとカタカナ、漢字。", "ｶﾀｶﾅ半角", "한국어 텍스트입니다",
    "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, यह एक परीक्षण है।", "Ελληνικά κείμενο", "Русский текст, ёж.",
    "e\u0301 a\u0308 n\u0303 combining", "\u0301 leading combining", "ﬁ ligature ß ẞ",
    "emoji 😀👍🏽 🇺🇸 👨‍👩‍👧‍👦 ❤️ 🏳️‍🌈", "😀😀😀", "zero\u200bwidth\u200djoiner\u2060", "nbsp\u00a0here\u202fnarrow",
    "ideographic\u3000space", "line\u2028sep\u2029para", "\u0085nel", "\x0bvt\x0cff",
    "$\\frac{a}{b} + \\sqrt{x^2+1} = \\boxed{42}$", "\\begin{align} x &= 1 \\\\ y &= 2 \\end{align}",
    "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] >> 2; }", "if x!=y and z>=3: print('ok')",
    "<html><body class=\"x\">text</body></html>", "https://example.com/a/b?c=d&e=f#g", "user@example.com",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "text<｜User｜>more<｜Assistant｜>reply",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f", "<|EOT|>", "a<|EOT|>b",
    "<｜User", "<｜User｜", "<｜User｜>>", "<<｜User｜>", "<｜place▁holder▁no▁42｜>", "<｜place▁holder▁no▁800｜>",
    "<think>\nreasoning\n</think>\n\nanswer", "<｜▁pad▁｜><｜▁pad▁｜>", "Ġ Ċ ĉ Ā", "\u0100\u0101",
    "'s 't 're 've 'm 'll 'd", "don't", "'''", "...", "!!!???", "-- --- ----", "____init____",
    "   \n   \n", " \t \n", "a" * 300, " " * 200, "ab" * 150, "\n" * 50, "9" * 40, "$" * 30,
    "x\x00y", "\x01\x02\x1f\x7f", "\u00ad soft hyphen", "\ufeffBOM", "\U0010FFFF\U0001F9FF", "\ufffd",
    "Mixed 中文 and English 123 数字", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３", "Ⓐⓑ ① ㊀", "∑∫∂√∞ ≤≥≠ →⇒",
]


def main():
    tok = Tokenizer.from_file(os.path.join(DATA, "deepseek-v3", "tokenizer.json"))
    os.makedirs(OUT, exist_ok=True)

    # edge corpus: full ids
    enc = tok.encode_batch(EDGE, add_special_tokens=False)
    with open(os.path.join(OUT, "tok_edge.jsonl"), "w", encoding="utf-8") as f:
        for t, e in zip(EDGE, enc):
            f.write(json.dumps({"text": t, "ids": e.ids}, ensure_ascii=False) + "\n")

    # decode corpus: random id sequences (any token, partial UTF-8 byte tokens, added tokens)
    # with HF's decode with and without special tokens
    rng = random.Random(1234)
    byte_ids = [tok.token_to_id(c) for c in (chr(0x100 + k) for k in range(68)) if tok.token_to_id(c) is not None]
    high_bytes = [tok.token_to_id(chr(b)) for b in range(0xA1, 0x100) if b != 0xAD]
    with open(os.path.join(OUT, "tok_decode.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(300):
            ids = []
            for _ in range(rng.randrange(1, 12)):
                kind = rng.randrange(5)
                if kind == 0:
                    ids.append(rng.randrange(0, 128000))
                elif kind == 1:
                    ids.append(rng.randrange(128000, 128815))
                elif kind == 2:
                    ids.append(rng.choice(byte_ids))
                elif kind == 3:
                    ids.append(rng.choice(high_bytes))
                else:
                    ids.append(rng.randrange(0, 3))
            f.write(json.dumps({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                                "text_skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")

    lines = []
    n_rows = n_bytes = n_tok = 0
    bad_roundtrip = 0
    for rel in data_files():
        rows = file_rows(rel)
        encs = tok.encode_batch(rows, add_special_tokens=False) if rows else []
        fh = FNV_OFF
        body = []
        for s, e in zip(rows, encs):
            ids = e.ids
            b = s.encode("utf-8")
            h = fnv_ids(ids)
            fh = fnv_ids(ids, fh)
            fh = fnv_ids([-1], fh)
            body.append("%d %d %08x" % (len(b), len(ids), h & 0xFFFFFFFF))
            if tok.decode(ids, skip_special_tokens=False) != s:
                bad_roundtrip += 1
            n_rows += 1
            n_bytes += len(b)
            n_tok += len(ids)
        lines.append("F %s %d %016x" % (rel, len(rows), fh))
        lines.extend(body)
    text = ("\n".join(lines) + "\n").encode("utf-8")
    # the zstd command line tool (the Python module is not assumed to be installed)
    zst = subprocess.run(["zstd", "-19", "-q", "-c", "--stream-size=%d" % len(text)], input=text, stdout=subprocess.PIPE, check=True)
    with open(os.path.join(OUT, "tok_rows.txt.zst"), "wb") as f:
        f.write(zst.stdout)
    print("files %d rows %d bytes %d tokens %d hf-roundtrip-mismatches %d edge %d" %
          (len([l for l in lines if l.startswith("F ")]), n_rows, n_bytes, n_tok, bad_roundtrip, len(EDGE)))


if __name__ == "__main__":
    sys.exit(main())
