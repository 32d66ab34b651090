"""Reference fixtures for NF4Weight: QLoRA's NF4 with double quantization, as bitsandbytes 0.50.2 computes it
on the CPU (`quantize_4bit(W, blocksize, quant_type="nf4", compress_statistics=...)` and `dequantize_4bit`).

Inputs come from a formula that Swift reproduces bit for bit (integers and powers of two only), so the fixture
holds no input tensors: value i of a case with seed s is
    h = splitmix64(s * 2^32 + i),  k = (h & M21) + ((h >> 21) & M21) + ((h >> 42) & M21)   (M21 = 2^21 - 1)
    value = (k - 3 * 2^20) * 2^-20 * 2^-(row % 4)      (a bell-shaped spread; rows at four scales)
then the listed zero blocks are set to 0 (an all-zero block exercises bitsandbytes' absmax clamp).

Run: pip install --no-deps bitsandbytes==0.50.2; python scripts/reference/nf4.py
"""
import base64
import json
import os

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

MASK64 = (1 << 64) - 1
MASK21 = (1 << 21) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def make_weight(rows, columns, seed, zero_blocks, block_size):
    values = np.empty(rows * columns, dtype=np.float32)
    for i in range(rows * columns):
        h = splitmix64(seed * (1 << 32) + i)
        k = (h & MASK21) + ((h >> 21) & MASK21) + ((h >> 42) & MASK21)
        row = i // columns
        values[i] = np.float32(k - 3 * (1 << 20)) * np.float32(2.0 ** -20) * np.float32(2.0 ** -(row % 4))
    for block in zero_blocks:
        values[block * block_size:(block + 1) * block_size] = 0
    return torch.from_numpy(values.reshape(rows, columns))


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def floats(tensor):
    return [float(x) for x in tensor.reshape(-1).numpy().astype(np.float32)]


def case(name, rows, columns, seed, block_size=64, double_quantization=True, zero_blocks=()):
    weight = make_weight(rows, columns, seed, zero_blocks, block_size)
    packed, state = F.quantize_4bit(weight, blocksize=block_size, quant_type="nf4",
                                    compress_statistics=double_quantization)
    # bitsandbytes 0.50.2's CPU C kernel behind dequantize_4bit is wrong for some shapes: on [6, 96] it disagrees
    # with bitsandbytes' own default (pure PyTorch) implementation at every block size from 64 to 512, with errors
    # far above NF4's. The default implementation is recorded; the C kernel's agreement is checked and noted.
    absmax = state.absmax
    if double_quantization:
        absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    dequantized = _dequantize_4bit_compute(packed.reshape(-1), absmax, F.get_4bit_type("nf4", device="cpu"),
                                           block_size, (rows, columns), torch.float32)
    cpu_kernel_agrees = torch.equal(F.dequantize_4bit(packed, state), dequantized)
    if block_size == 64:
        assert cpu_kernel_agrees, name
    assert dequantized.dtype == torch.float32 and tuple(dequantized.shape) == (rows, columns)
    entry = {
        "name": name, "rows": rows, "columns": columns, "seed": seed, "blockSize": block_size,
        "doubleQuantization": double_quantization, "zeroBlocks": list(zero_blocks),
        "cpuKernelAgrees": cpu_kernel_agrees,
        "firstInputs": floats(weight.reshape(-1)[:8]),
        "packed": b64(packed.reshape(-1).numpy().astype(np.uint8)),
        "dequantized": b64(dequantized.reshape(-1).numpy().astype("<f4")),
    }
    if double_quantization:
        entry.update({
            "quantizedAbsmax": b64(state.absmax.numpy().astype(np.uint8)),
            "absmaxScales": floats(state.state2.absmax),
            "absmaxOffset": float(state.offset.float()),
            "absmaxBlockSize": state.state2.blocksize,
            "dequantizedAbsmax": floats(absmax),
        })
    else:
        entry["absmax"] = floats(state.absmax)
    return entry


def main():
    torch.manual_seed(0)
    cases = [
        case("one row block per row", 8, 64, seed=1),
        case("partial last block, blocks straddle rows", 3, 200, seed=2),
        case("odd count and odd columns", 5, 37, seed=3),
        # One block: its absmax is the mean, so the second-level scale is 0.
        case("single block", 1, 64, seed=6),
        case("no double quantization", 3, 200, seed=2, double_quantization=False),
        case("block size 128 without double quantization", 6, 96, seed=4, block_size=128,
             double_quantization=False, zero_blocks=(2,)),
        # 473 blocks: two second-level blocks (the last partial), a zero block, rows straddling blocks.
        case("several second-level blocks", 39, 776, seed=5, zero_blocks=(5,)),
    ]
    code = F.get_4bit_type("nf4", device="cpu")
    fixture = {
        "bitsandbytesVersion": bitsandbytes.__version__,
        "codebook": floats(code),
        "dynamicMap": floats(F.create_dynamic_map(signed=True)),
        "cases": cases,
    }
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "nf4")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "nf4.json"), "w") as file:
        json.dump(fixture, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    main()
