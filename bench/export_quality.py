"""What each `lathe export --quantize` type costs against the F32 export, on a fixed text: perplexity from
`lathe logprobs` on every file, and (with --llama-perplexity, llama.cpp's tool) llama.cpp's mean KL divergence
from the F32 file's distributions and its perplexity on the same files; prints the README's table.

    python3 bench/export_quality.py [--model smollm2-135m] [--llama-perplexity PATH] [--llama-quantize PATH]
The text is the Apache License 2.0 as Debian ships it (/usr/share/common-licenses/Apache-2.0), scored by Lathe in
paragraph groups of about 2,000 characters. With --llama-quantize, the same table rows for llama-quantize's own
files made from Lathe's F32 export follow.
"""
import argparse
import json
import math
import os
import re
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0"]


def chunks(text, size=2000):
    out, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > size:
            out.append(current)
            current = ""
        current += paragraph + "\n\n"
    return out + ([current] if current.strip() else [])


def perplexity(model, inputs):
    result = subprocess.run([LATHE, "logprobs", "--model", model, "--input", inputs], capture_output=True, text=True,
                            check=True).stdout
    values = [v for line in result.splitlines() for v in json.loads(line)["logprobs"][1:]]
    return math.exp(-sum(values) / len(values)), len(values)


def llama_kl(tool, model, base_file, text, base=False):
    args = [tool, "-m", model, "-f", text, "-c", "512", "-t", "2", "--kl-divergence-base", base_file]
    if not base:
        args.append("--kl-divergence")
    output = subprocess.run(args, capture_output=True, text=True, check=base)
    log = output.stdout + output.stderr
    if base or output.returncode != 0:  # e.g. a llama.cpp build whose AMX kernels the machine refuses (SIGILL)
        return None, None
    kl = re.search(r"Mean\s+KLD:\s+([-0-9.e]+)", log)
    ppl = re.search(r"Mean PPL\(Q\)\s*:\s*([0-9.e]+)", log)
    return (float(kl.group(1)) if kl else None), (float(ppl.group(1)) if ppl else None)


def main():
    global LATHE
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--text", default="/usr/share/common-licenses/Apache-2.0")
    parser.add_argument("--llama-perplexity")
    parser.add_argument("--llama-quantize")
    parser.add_argument("--lathe", default=LATHE, help="the lathe binary (default: the release build)")
    args = parser.parse_args()
    LATHE = args.lathe
    work = tempfile.mkdtemp(prefix="lathe-export-quality-")
    text = open(args.text).read()
    inputs = os.path.join(work, "text.jsonl")
    with open(inputs, "w") as f:
        for chunk in chunks(text):
            f.write(json.dumps({"text": chunk}) + "\n")
    files = {}
    for t in TYPES:
        files[t] = os.path.join(work, t + ".gguf")
        subprocess.run([LATHE, "export", "--model", args.model, "--format", "gguf", "--quantize", t, "--output", files[t]],
                       check=True, capture_output=True)
    base_kl = os.path.join(work, "f32.kld")
    if args.llama_perplexity:
        llama_kl(args.llama_perplexity, files["F32"], base_kl, args.text, base=True)
    f32_ppl, tokens = perplexity(files["F32"], inputs)
    print(f"{tokens} tokens scored by Lathe; F32 perplexity {f32_ppl:.4f}")
    print("| file | type | size (MiB) | Lathe perplexity | change | llama.cpp mean KL | llama.cpp perplexity |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = [("lathe export", t, files[t]) for t in TYPES]
    if args.llama_quantize:
        for t in TYPES[1:]:
            out = os.path.join(work, "llama-" + t + ".gguf")
            subprocess.run([args.llama_quantize, files["F32"], out, t], check=True, capture_output=True)
            rows.append(("llama-quantize", t, out))
    for source, t, path in rows:
        ppl, _ = perplexity(path, inputs)
        kl, lppl = llama_kl(args.llama_perplexity, path, base_kl, args.text) if args.llama_perplexity else (None, None)
        size = os.path.getsize(path) / 1048576
        print(f"| {source} | {t} | {size:.1f} | {ppl:.4f} | {100 * (ppl / f32_ppl - 1):+.2f}% | "
              f"{'' if kl is None else f'{kl:.5f}'} | {'' if lppl is None else f'{lppl:.4f}'} |")


if __name__ == "__main__":
    main()
