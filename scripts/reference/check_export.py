"""Checks that transformers loads what `lathe export` writes and computes what Lathe computes on it.

    python3 scripts/reference/check_export.py [MODEL]     (MODEL: default smollm2-135m; needs torch, transformers)
Exports MODEL with the release build (.build/release/lathe) as a Q8_0 GGUF, a Q4_K_M GGUF and a safetensors
folder, loads each in transformers (the GGUFs through gguf_file=, which dequantizes with gguf-py), and compares
its log-probabilities of a fixed text and a chat with `lathe logprobs` on the same file (tolerance 1e-3). The text
is tokenized by Lathe; transformers' own tokenizer of each export must give the same ids.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
TEXT = "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; 3 astronauts flew."
CHAT = [{"role": "user", "content": "Extract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo."}]


def lathe(*args):
    return subprocess.run([LATHE, *args], capture_output=True, text=True, check=True).stdout


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"
    work = tempfile.mkdtemp(prefix="lathe-export-check-")
    inputs = os.path.join(work, "inputs.jsonl")
    with open(inputs, "w") as f:
        f.write(json.dumps({"text": TEXT}) + "\n" + json.dumps({"messages": CHAT}) + "\n")
    exports = {
        "Q8_0 GGUF": ("gguf", "q8_0", os.path.join(work, "q8_0.gguf")),
        "Q4_K_M GGUF": ("gguf", "q4_k_m", os.path.join(work, "q4_k_m.gguf")),
        "safetensors folder": ("safetensors", "f32", os.path.join(work, "hf")),
    }
    failed = False
    for label, (fmt, quant, out) in exports.items():
        lathe("export", "--model", model, "--format", fmt, "--quantize", quant, "--output", out)
        if fmt == "gguf":
            folder, name = os.path.dirname(out), os.path.basename(out)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
        else:
            tokenizer = AutoTokenizer.from_pretrained(out)
            hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        worst = 0.0
        tokens = 0
        for line, row in zip(lathe("logprobs", "--model", out, "--input", inputs).splitlines(), (TEXT, CHAT)):
            scored = json.loads(line)
            ids = scored["ids"]
            own = (tokenizer(row)["input_ids"] if isinstance(row, str)
                   else tokenizer.apply_chat_template(row, add_generation_prompt=True, tokenize=True, return_dict=False))
            if list(own) != ids:
                print(f"{label}: transformers' tokenizer gives other ids than Lathe")
                failed = True
            with torch.no_grad():
                lp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].double(), -1)
            reference = [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]
            worst = max(worst, max(abs(a - b) for a, b in zip(scored["logprobs"][1:], reference)))
            tokens += len(reference)
        print(f"{label}: {tokens} tokens, largest log-probability difference between Lathe and transformers {worst:.2e}")
        failed |= worst >= 1e-3
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
