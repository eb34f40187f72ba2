#!/usr/bin/env python3
"""make_seed_corpus.py — writes the seed corpora of the fuzz targets (small valid and invalid
samples), so they can be regenerated and reviewed. Run by hand from anywhere:
    python3 tests/fuzz/make_seed_corpus.py
Needs only the standard library (plus numpy-free struct packing)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ST = os.path.join(HERE, "corpus", "fuzz_safetensors")
CF = os.path.join(HERE, "corpus", "fuzz_config")
SIZE = {"F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1}


def st_file(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr, off, data = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_header(text, data=b""):
    h = text.encode()
    return struct.pack("<Q", len(h)) + h + data


def write(d, name, blob):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    f32 = struct.pack("<6f", 1.0, -2.0, 0.5, 3.25, -0.0, 1e-3)
    bf16 = struct.pack("<4H", 0x3F80, 0xC000, 0x7FC0, 0x0001)
    f16 = struct.pack("<3H", 0x3C00, 0x7C00, 0x0001)
    fp8 = bytes(range(0, 256, 7))[:2 * 18]  # [2, 18] incl. NaN-free and subnormal codes
    fp8 = (fp8 + bytes(36))[:36]
    write(ST, "valid_all_dtypes.safetensors", st_file([
        ("a.weight", "F32", [2, 3], f32), ("b", "BF16", [4], bf16), ("c", "F16", [3], f16),
        ("d", "I32", [1], struct.pack("<i", -7)), ("e", "I64", [], struct.pack("<q", 1 << 40)),
        ("f", "U8", [2], b"\x00\xff"), ("g", "BOOL", [2], b"\x01\x00"),
        ("empty", "F32", [0, 5], b"")], meta={"format": "pt"}))
    write(ST, "valid_fp8.safetensors", st_file([
        ("w.weight", "F8_E4M3", [2, 18], fp8),
        ("w.weight_scale_inv", "F32", [1, 1], struct.pack("<f", 0.25))]))
    write(ST, "valid_fp8_edge_blocks.safetensors", st_file([
        ("w.weight", "F8_E4M3", [3, 130], bytes((i * 37) & 0x7e for i in range(390))),
        ("w.weight_scale_inv", "BF16", [1, 2], struct.pack("<2H", 0x3F80, 0x4000))]))
    write(ST, "fp8_no_scale.safetensors", st_file([("w.weight", "F8_E4M3", [2, 2], b"\x38\x40\xb8\x7f")]))
    write(ST, "fp8_bad_scale.safetensors", st_file([
        ("w.weight", "F8_E4M3", [2, 2], b"\x38\x40\xb8\x7f"),
        ("w.weight_scale_inv", "F32", [2, 1], struct.pack("<2f", 1, 2))]))
    write(ST, "unpadded.safetensors", st_file([("x", "F32", [1], struct.pack("<f", 1))], pad=False))
    write(ST, "truncated.safetensors", st_file([("x", "F32", [6], f32)])[:-5])
    write(ST, "hlen_too_big.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    write(ST, "short.safetensors", b"\x05\x00\x00")
    write(ST, "not_json.safetensors", raw_header('{"x": {"dtype": "F32",'))
    write(ST, "not_object.safetensors", raw_header("[1,2,3]"))
    write(ST, "unknown_dtype.safetensors", raw_header('{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', bytes(8)))
    write(ST, "mismatch.safetensors", raw_header('{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}', bytes(16)))
    write(ST, "outside.safetensors", raw_header('{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', bytes(8)))
    write(ST, "overlap.safetensors", raw_header(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', bytes(8)))
    write(ST, "duplicate.safetensors", raw_header(
        '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)))
    write(ST, "overflow.safetensors", raw_header(
        '{"a":{"dtype":"F32","shape":[9223372036854775807,2],"data_offsets":[0,0]}}'))
    write(ST, "bad_metadata.safetensors", raw_header('{"__metadata__":{"k":[1]}}'))

    tiny = {"vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
            "num_hidden_layers": 3, "num_attention_heads": 4, "q_lora_rank": 16, "kv_lora_rank": 16,
            "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 4,
            "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
            "first_k_dense_replace": 1, "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0,
            "factor": 4.0, "original_max_position_embeddings": 64, "mscale": 1.0, "mscale_all_dim": 1.0}}
    write(CF, "tiny_v5.json", json.dumps(tiny, indent=1).encode())
    v671 = {"model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168,
            "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
            "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536,
            "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
            "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
            "topk_group": 4, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
            "topk_method": "noaux_tc", "norm_topk_prob": True, "first_k_dense_replace": 3,
            "moe_layer_freq": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000,
            "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
            "max_position_embeddings": 163840, "num_nextn_predict_layers": 1,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                    "quant_method": "fp8", "weight_block_size": [128, 128]}}
    write(CF, "v3_671b.json", json.dumps(v671, indent=2).encode())
    moon = dict(v671, q_lora_rank=None, n_group=1, topk_group=1, rope_scaling=None,
                n_routed_experts=64, num_experts_per_tok=6, first_k_dense_replace=1)
    moon.pop("quantization_config")
    write(CF, "moonlight_like.json", json.dumps(moon).encode())
    write(CF, "softmax.json", b'{"scoring_func": "softmax"}')
    write(CF, "wrong_type.json", b'{"hidden_size": "big", "n_group": 3}')
    write(CF, "syntax.json", b'{"hidden_size": 12,')
    write(CF, "not_object.json", b'[1, 2]')
    write(CF, "empty_object.json", b'{}')
    write(CF, "huge_numbers.json", b'{"hidden_size": 9223372036854775807, "vocab_size": 1073741824}')
    write(CF, "rope_bad.json", b'{"rope_scaling": {"type": "linear", "factor": 2}}')


if __name__ == "__main__":
    main()
