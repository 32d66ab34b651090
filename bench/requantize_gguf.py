"""Writes a copy of a GGUF with its quantized tensors requantized to another ggml type (gguf-py, pip: gguf), every
metadata key kept: the SmolLM2 package ships only Q4_1, and the decoding benchmark also wants a Q8_0 file. The
weights are the source's dequantized values quantized again, so only the speed compares with a Q8_0 made from the
original model, not the accuracy.

    python3 bench/requantize_gguf.py SmolLM2-135M-Instruct.Q4_1.gguf /tmp/SmolLM2-135M-Instruct.Q8_0.gguf --type Q8_0
"""
import argparse

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--type", default="Q8_0")
    args = parser.parse_args()
    target = T[args.type]
    reader = gguf.GGUFReader(args.source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(args.output, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(name, field.contents())
        else:
            writer.add_key_value(name, field.contents(), kind)
    for tensor in reader.tensors:
        if tensor.tensor_type in (T.F32, T.F16, T.BF16):
            writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
            continue
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        blocks = gguf.quants.quantize(values, target)
        writer.add_tensor(tensor.name, blocks, raw_shape=blocks.shape, raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
