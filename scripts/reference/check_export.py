"""Checks that transformers loads what `lathe export` writes and computes what Lathe computes on it.

    python3 scripts/reference/check_export.py [MODEL] [QUANT,...]
        MODEL: default smollm2-135m; QUANT: the GGUF types, default q8_0,q4_k_m; needs torch, transformers, gguf
        LATHE=.build/debug/lathe to use another build than .build/release/lathe
    e.g. python3 scripts/reference/check_export.py Tests/Fixtures/models/tiny-qwen3 f32,q8_0
Exports MODEL as a GGUF of each type and a safetensors folder, loads each in transformers (the GGUFs through
gguf_file=, which dequantizes with gguf-py), and compares its log-probabilities of a fixed text and a chat with
`lathe logprobs` on the same file (tolerance 1e-3). The text is tokenized by Lathe; transformers' own tokenizer of
each export must give the same ids (where transformers cannot convert a GGUF's tokenizer, e.g. Phi-3's converter
expects a SentencePiece vocabulary, that is said and the ids are not compared; where it cannot load the GGUF at
all, Lathe's log-probabilities on it are compared with transformers' on MODEL's own folder). Each GGUF is also read with
gguf-py's GGUFReader: its architecture must be one gguf-py knows and every tensor a name gguf-py's TENSOR_NAMES
gives that architecture (MODEL_TENSORS), with the shared `{arch}.*` keys llama.cpp reads present.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATHE = os.path.join(ROOT, os.environ.get("LATHE", os.path.join(".build", "release", "lathe")))
TEXT = "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; 3 astronauts flew."
CHAT = [{"role": "user", "content": "Extract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo."}]


def lathe(*args):
    return subprocess.run([LATHE, *args], capture_output=True, text=True, check=True).stdout


def gguf_problems(path):
    """What in the GGUF gguf-py does not name as llama.cpp's architecture has it."""
    import gguf
    reader = gguf.GGUFReader(path)
    arch_name = reader.fields["general.architecture"].contents()
    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
    if arch is None:
        return [f"general.architecture {arch_name} is not a gguf-py architecture"]
    blocks = reader.fields[f"{arch_name}.block_count"].contents()
    known = {gguf.TENSOR_NAMES[t].format(bid=b) for t in gguf.MODEL_TENSORS[arch] for b in range(blocks)}
    problems = [f"tensor {t.name} is not one of gguf-py's {arch_name} names" for t in reader.tensors
                if t.name.rsplit(".", 1)[0] not in known]
    keys = [gguf.Keys.LLM.CONTEXT_LENGTH, gguf.Keys.LLM.EMBEDDING_LENGTH, gguf.Keys.LLM.BLOCK_COUNT,
            gguf.Keys.LLM.FEED_FORWARD_LENGTH, gguf.Keys.Attention.HEAD_COUNT, gguf.Keys.Attention.HEAD_COUNT_KV,
            gguf.Keys.Attention.LAYERNORM_RMS_EPS, gguf.Keys.Rope.FREQ_BASE]
    if arch == gguf.MODEL_ARCH.PHI3:  # what Phi3MiniModel.set_gguf_parameters adds
        keys += [gguf.Keys.Rope.DIMENSION_COUNT, gguf.Keys.Rope.SCALING_ORIG_CTX_LEN, gguf.Keys.Attention.SLIDING_WINDOW]
    problems += [f"{k.format(arch=arch_name)} is missing" for k in keys if k.format(arch=arch_name) not in reader.fields]
    return problems


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"
    quants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["q8_0", "q4_k_m"]
    work = tempfile.mkdtemp(prefix="lathe-export-check-")
    inputs = os.path.join(work, "inputs.jsonl")
    with open(inputs, "w") as f:
        f.write(json.dumps({"text": TEXT}) + "\n" + json.dumps({"messages": CHAT}) + "\n")
    exports = {f"{q.upper()} GGUF": ("gguf", q, os.path.join(work, f"{q}.gguf")) for q in quants}
    exports["safetensors folder"] = ("safetensors", "f32", os.path.join(work, "hf"))
    failed = False
    for label, (fmt, quant, out) in exports.items():
        lathe("export", "--model", model, "--format", fmt, "--quantize", quant, "--output", out)
        if fmt == "gguf":
            for problem in gguf_problems(out):
                print(f"{label}: {problem}")
                failed = True
            folder, name = os.path.dirname(out), os.path.basename(out)
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            except Exception as error:  # transformers' GGUF tokenizer converters are per architecture
                print(f"{label}: transformers cannot convert its tokenizer ({type(error).__name__}: {error}); ids not compared")
                tokenizer = None
            try:
                hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
            except Exception as error:
                # transformers' GGUF config mapping misses keys llama.cpp reads (qwen3's attention.key_length: it
                # assumes head_dim 128; phi3 keeps its default pad_token_id 32000): compare with the source folder.
                print(f"{label}: transformers cannot load it ({type(error).__name__}: {str(error).splitlines()[0]})")
                if not os.path.isdir(model):
                    raise
                if quant != "f32":  # the source folder's weights are not the quantized ones
                    print(f"{label}: not compared (only an F32 GGUF is compared with the source folder)")
                    continue
                print(f"{label}: compared with transformers on the source folder")
                hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        else:
            tokenizer = AutoTokenizer.from_pretrained(out)
            hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        worst = 0.0
        tokens = 0
        for line, row in zip(lathe("logprobs", "--model", out, "--input", inputs).splitlines(), (TEXT, CHAT)):
            scored = json.loads(line)
            ids = scored["ids"]
            own = (None if tokenizer is None else tokenizer(row)["input_ids"] if isinstance(row, str)
                   else tokenizer.apply_chat_template(row, add_generation_prompt=True, tokenize=True, return_dict=False))
            if tokenizer is not None and list(own) != ids:
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
