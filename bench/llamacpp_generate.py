"""llama.cpp's prompt and decoding speed through llama-cpp-python (pip: llama-cpp-python, built here from source),
measured as `lathe bench generate` measures its own: a prompt of random token ids evaluated in one call, then greedy
decoding one token at a time with the KV cache, the median of `--repeats` timed rounds after a warm-up. Prints one
JSON line.

    python3 bench/llamacpp_generate.py --model SmolLM2-135M-Instruct.Q4_1.gguf --threads 1
"""
import argparse
import json
import random
import time

import numpy as np
from llama_cpp import Llama, __version__

from llamacpp_cpu_buffers import EXTRA_BUFFERS


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    llm = Llama(model_path=args.model, n_ctx=args.prompt_tokens + args.new_tokens + 8, n_batch=args.prompt_tokens,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=False, verbose=False)
    rng = random.Random(7)
    prompt = [rng.randrange(llm.n_vocab()) for _ in range(args.prompt_tokens)]
    prefill, decode = [], []
    for round in range(args.repeats + 1):  # round 0 warms up
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.new_tokens):
            # Without logits_all llama-cpp-python keeps no scores: read the last token's logits from the context.
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            llm.eval([int(np.argmax(logits))])
        decode_seconds = time.perf_counter() - start
        if round > 0:
            prefill.append(args.prompt_tokens / prefill_seconds)
            decode.append(args.new_tokens / decode_seconds)
    median = lambda xs: sorted(xs)[len(xs) // 2]
    print(json.dumps({"llama_cpp_python": __version__, "threads": args.threads, "prompt_tokens": args.prompt_tokens,
                      "new_tokens": args.new_tokens, "extra_buffer_types": EXTRA_BUFFERS, "prompt_tokens_per_s": median(prefill),
                      "generate_tokens_per_s": median(decode)}))


if __name__ == "__main__":
    main()
