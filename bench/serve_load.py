"""A bounded load test of `lathe serve` through the official openai client (pip: openai), on loopback.

Each (model, prompt) pair is first asked alone, one request at a time (the single-stream answers and tokens/s);
then `--requests` streamed requests cycling over the models and prompts run with `--streams` at once. Every answer
must equal its single-request answer; errors are counted; the server's resident memory (VmRSS of --server-pid) is
sampled every 0.25 s. Prints one JSON line.

    python3 bench/serve_load.py --base-url http://127.0.0.1:8080/v1 --models smollm2-135m a b \
        --prompts examples/orders/valid.jsonl --streams 32 --requests 96 --max-tokens 32 --server-pid PID
"""
import argparse
import asyncio
import json
import time

import openai


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def ask(client, model, messages, max_tokens):
    """One streamed greedy chat request: (text, completion tokens, seconds to first token)."""
    start = time.perf_counter()
    first = None
    pieces, tokens = [], 0
    stream = await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                if first is None:
                    first = time.perf_counter() - start
                pieces.append(choice.delta.content)
    return "".join(pieces), tokens, first or 0.0


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--prompt-count", type=int, default=8)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()

    with open(args.prompts) as f:
        rows = [json.loads(line) for line in f if line.strip()][: args.prompt_count]
    prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key="none", max_retries=0, timeout=600)

    expected, single_tokens, single_seconds = {}, 0, 0.0
    for model in args.models:
        for p, messages in enumerate(prompts):
            start = time.perf_counter()
            text, tokens, _ = await ask(client, model, messages, args.max_tokens)
            single_seconds += time.perf_counter() - start
            single_tokens += tokens
            expected[(model, p)] = text

    jobs = [(args.models[i % len(args.models)], (i // len(args.models)) % len(prompts)) for i in range(args.requests)]
    limit = asyncio.Semaphore(args.streams)
    samples = []
    done = asyncio.Event()

    async def sample_memory():
        while not done.is_set():
            if args.server_pid:
                samples.append(rss_mib(args.server_pid))
            await asyncio.sleep(0.25)

    async def run(job):
        async with limit:
            try:
                return job, await ask(client, job[0], prompts[job[1]], args.max_tokens), None
            except Exception as error:  # counted, not raised: the test reports every failure
                return job, None, repr(error)

    sampler = asyncio.create_task(sample_memory())
    start = time.perf_counter()
    results = await asyncio.gather(*(run(job) for job in jobs))
    wall = time.perf_counter() - start
    done.set()
    await sampler

    errors = [e for _, _, e in results if e]
    mismatches = sum(1 for job, answer, e in results if not e and answer[0] != expected[job])
    tokens = sum(answer[1] for _, answer, e in results if not e)
    first_tokens = sorted(answer[2] for _, answer, e in results if not e)
    quarter = max(1, len(samples) // 4)
    print(json.dumps({
        "streams": args.streams, "requests": args.requests, "max_tokens": args.max_tokens,
        "models": args.models, "errors": len(errors), "first_error": errors[0] if errors else None,
        "mismatches": mismatches,
        "single_stream_tokens_per_s": round(single_tokens / single_seconds, 2),
        "aggregate_tokens_per_s": round(tokens / wall, 2),
        "speedup": round((tokens / wall) / (single_tokens / single_seconds), 2),
        "median_time_to_first_token_s": round(first_tokens[len(first_tokens) // 2], 3) if first_tokens else None,
        "rss_mib_first_quarter_max": round(max(samples[:quarter]), 1) if samples else None,
        "rss_mib_last_quarter_max": round(max(samples[-quarter:]), 1) if samples else None,
        "rss_mib_max": round(max(samples), 1) if samples else None,
        "wall_s": round(wall, 2),
    }))


if __name__ == "__main__":
    asyncio.run(main())
