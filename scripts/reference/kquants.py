"""Reference fixtures for Lathe's K-quant quantizers (Q4_K, Q5_K, Q6_K): ggml's own reference quantizers.

gguf-py has no K-quant quantizers, so this compiles ggml's C (quantize_row_q4_K_ref, quantize_row_q5_K_ref,
quantize_row_q6_K_ref in ggml/src/ggml-quants.c, what llama-quantize runs without an importance matrix) from a
llama.cpp source tree and calls it through ctypes. The source used for the committed fixture: the llama.cpp that
llama-cpp-python 0.3.36 vendors (its sdist, `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`,
vendor/llama.cpp at commit 0c1e570). Compiled with -ffp-contract=off: without it gcc may fuse a*b+c into one FMA,
which changes the last bit of some scales (a build detail, not ggml's arithmetic).

Run from the package root:  python scripts/reference/kquants.py PATH/TO/llama.cpp
Writes Tests/Fixtures/formats/kquants.json: per type the input (float32 bit patterns), ggml's bytes (hex) and
gguf-py's dequantization of those bytes (bit patterns).
"""
import ctypes
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "formats", "kquants.json")

# ggml-quants.c calls these four from ggml.c only on paths the reference quantizers never take.
STUBS = r"""
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
void ggml_abort(const char * file, int line, const char * fmt, ...) { abort(); }
size_t ggml_row_size(int type, int64_t ne) { abort(); }
const char * ggml_type_name(int type) { abort(); }
size_t ggml_type_size(int type) { abort(); }
"""


def build(llama_cpp):
    ggml = os.path.join(llama_cpp, "ggml")
    folder = tempfile.mkdtemp()
    stubs = os.path.join(folder, "stubs.c")
    with open(stubs, "w") as f:
        f.write(STUBS)
    library = os.path.join(folder, "libkquants.so")
    subprocess.run(["gcc", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
                    "-I" + os.path.join(ggml, "include"), "-I" + os.path.join(ggml, "src"),
                    os.path.join(ggml, "src", "ggml-quants.c"), stubs, "-lm", "-o", library], check=True)
    return ctypes.CDLL(library)


def inputs(rng, blocks=10):
    """Super-blocks of 256 that exercise the quantizers: normals at several scales, all zero, all positive (the
    minimum clamps to 0), a constant, one dominant negative value, one zero sub-block among normals, exact ties,
    and near-zero values around ggml's GROUP_MAX_EPS."""
    out = [rng.standard_normal(256).astype(np.float32) * s for s in (1.0, 0.02, 40.0)]
    out.append(np.zeros(256, np.float32))
    out.append(np.abs(rng.standard_normal(256)).astype(np.float32) + 0.5)
    out.append(np.full(256, -0.75, np.float32))
    x = rng.standard_normal(256).astype(np.float32)
    x[17] = -12.0
    out.append(x)
    x = rng.standard_normal(256).astype(np.float32)
    x[32:64] = 0
    out.append(x)
    out.append(((np.arange(256, dtype=np.float32) - 128) * 0.25).astype(np.float32))
    out.append((rng.standard_normal(256) * 1e-16).astype(np.float32))
    while len(out) < blocks:
        out.append(rng.standard_normal(256).astype(np.float32))
    return np.concatenate(out)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/reference/kquants.py PATH/TO/llama.cpp")
    lib = build(sys.argv[1])
    rng = np.random.default_rng(20261207)
    cases = []
    for qtype, function in ((QT.Q4_K, lib.quantize_row_q4_K_ref), (QT.Q5_K, lib.quantize_row_q5_K_ref),
                            (QT.Q6_K, lib.quantize_row_q6_K_ref)):
        x = inputs(rng)
        _, type_size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros(len(x) // 256 * type_size, np.uint8)
        function(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(len(x)))
        y = dequantize(out.reshape(1, -1), qtype).ravel()
        cases.append({"type": qtype.name, "typeID": int(qtype),
                      "input": x.view(np.uint32).tolist(), "bytes": out.tobytes().hex(),
                      "output": np.ascontiguousarray(y, np.float32).view(np.uint32).tolist()})
    with open(OUT, "w") as f:
        json.dump({"reference": "ggml-quants.c quantize_row_q{4,5,6}_K_ref from " + os.path.abspath(sys.argv[1])
                   + ", dequantized by gguf-py " + importlib.metadata.version("gguf"), "cases": cases}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
