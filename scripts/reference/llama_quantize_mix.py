"""The tensor types llama-quantize picks for SmolLM2-135M, as the fixture of Lathe's GGUFQuantizationMix test.

    python3 scripts/reference/llama_quantize_mix.py PATH/TO/llama-quantize
Exports the default model as F32 with the release build (.build/release/lathe), runs llama-quantize (built from the
llama.cpp that llama-cpp-python 0.3.36 vendors: cmake -B build && cmake --build build --target llama-quantize) on
it for each type Lathe writes, and stores every tensor's ggml dimensions and type per type in
Tests/Fixtures/formats/llama_quantize_smollm2.json. Also prints how many tensors of `lathe export`'s file of the
same type are byte-identical to llama-quantize's.
"""
import json
import os
import subprocess
import sys
import tempfile

import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "formats", "llama_quantize_smollm2.json")
TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K_M", "Q5_K_M", "Q6_K", "F16", "BF16"]


def main():
    quantize = sys.argv[1]
    work = tempfile.mkdtemp(prefix="lathe-mix-")
    f32 = os.path.join(work, "f32.gguf")
    subprocess.run([LATHE, "export", "--format", "gguf", "--quantize", "f32", "--output", f32], check=True)
    fixture = {"source": "llama-quantize of llama.cpp vendored by llama-cpp-python 0.3.36, on lathe export F32 of SmolLM2-135M",
               "types": {}}
    for t in TYPES:
        theirs = os.path.join(work, "llama-" + t + ".gguf")
        ours = os.path.join(work, "lathe-" + t + ".gguf")
        subprocess.run([quantize, f32, theirs, t], check=True, capture_output=True)
        subprocess.run([LATHE, "export", "--format", "gguf", "--quantize", t, "--output", ours], check=True, capture_output=True)
        a, b = gguf.GGUFReader(theirs), gguf.GGUFReader(ours)
        fixture["types"][t] = {x.name: {"dimensions": [int(d) for d in x.shape], "type": x.tensor_type.name} for x in a.tensors}
        mine = {x.name: x for x in b.tensors}
        same = sum(1 for x in a.tensors if x.name in mine and mine[x.name].tensor_type == x.tensor_type
                   and bytes(mine[x.name].data.tobytes()) == bytes(x.data.tobytes()))
        types_agree = sum(1 for x in a.tensors if x.name in mine and mine[x.name].tensor_type == x.tensor_type)
        print(f"{t}: {types_agree}/{len(a.tensors)} tensor types agree, {same} tensors byte-identical")
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=0)


if __name__ == "__main__":
    main()
