#!/usr/bin/env python3
"""gen_fp8.py — FP8 (e4m3fn) golden data from torch, read by tests/unit/test_fp8.c.

Writes, under tests/golden/data/:
  fp8_codes.safetensors   codes U8 [256] (0..255), value F32 [256] (torch's float8_e4m3fn ->
                          float32 of each code), is_nan U8 [256]
  fp8_block.safetensors   weight F8_E4M3 [260, 140] + weight_scale_inv F32 [3, 2]: a random
                          weight quantised per 128x128 block as model-spec §8 (partial edge
                          blocks both ways: 260 = 2*128 + 4 rows, 140 = 128 + 12 columns)
  fp8_dequant.safetensors weight F32 [260, 140]: torch's dequantisation, e4m3 -> fp32 times the
                          block's scale_inv (one fp32 multiply)
Run by hand:  python3 tests/golden/gen_fp8.py   (torch >= 2.1, safetensors)
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
B = 128


def main():
    os.makedirs(OUT, exist_ok=True)
    codes = torch.arange(256, dtype=torch.uint8)
    value = codes.view(torch.float8_e4m3fn).to(torch.float32)
    save_file({"codes": codes, "value": value, "is_nan": torch.isnan(value).to(torch.uint8)},
              os.path.join(OUT, "fp8_codes.safetensors"))

    g = torch.Generator().manual_seed(20261122)
    R, C = 260, 140
    # a spread of magnitudes per block, so the scales differ and subnormal codes occur
    w = torch.randn(R, C, generator=g) * torch.logspace(-3, 0, R).unsqueeze(1)
    w[0:4, 0:4] = 0.0  # exact zeros survive
    br, bc = -(-R // B), -(-C // B)
    scale = torch.empty(br, bc, dtype=torch.float32)
    wq = torch.empty(R, C, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            blk = w[i * B:(i + 1) * B, j * B:(j + 1) * B]
            s = blk.abs().max() / 448.0  # model-spec §8: scale_inv = max|W_block| / 448
            scale[i, j] = s
            wq[i * B:(i + 1) * B, j * B:(j + 1) * B] = (blk / s).to(torch.float8_e4m3fn)
    save_file({"weight": wq, "weight_scale_inv": scale}, os.path.join(OUT, "fp8_block.safetensors"))

    # reference dequantisation: expand each scale over its block (edge blocks cut), multiply once
    s_full = scale.repeat_interleave(B, 0)[:R].repeat_interleave(B, 1)[:, :C]
    deq = wq.to(torch.float32) * s_full
    save_file({"weight": deq.contiguous()}, os.path.join(OUT, "fp8_dequant.safetensors"))
    print("nan codes:", [int(c) for c in codes[torch.isnan(value)]],
          "max |w - deq| / max|w|:", float((w - deq).abs().max() / w.abs().max()))


if __name__ == "__main__":
    main()
