"""Greedy chat answers with their top-20 log-probabilities from an OpenAI-compatible server (--save), and the
comparison of two such runs (--compare A B): identical answers, first differing token, and over the shared prefix of
each answer the chosen tokens' |Δ logprob| and KL(A‖B) on A's top 20 (B's missing entries at B's 20th value)."""
import argparse, json, math, statistics
from concurrent.futures import ThreadPoolExecutor

def collect(args):
    from openai import OpenAI
    client = OpenAI(base_url=args.base_url, api_key="none")
    rows = [json.loads(line) for line in open(args.prompts)][: args.count]
    def ask(row):
        messages = [m for m in row["messages"] if m["role"] != "assistant"]
        answer = client.chat.completions.create(model=client.models.list().data[0].id, messages=messages,
                                                max_tokens=args.max_tokens, temperature=0, logprobs=True, top_logprobs=20)
        return [{"token": t.token, "logprob": t.logprob, "top": {c.token: c.logprob for c in t.top_logprobs}}
                for t in answer.choices[0].logprobs.content]
    with ThreadPoolExecutor(8) as pool:
        json.dump(list(pool.map(ask, rows)), open(args.save, "w"))

def compare(a_path, b_path):
    a_runs, b_runs = json.load(open(a_path)), json.load(open(b_path))
    identical, first_diffs, deltas, kls, shared = 0, [], [], [], 0
    for a, b in zip(a_runs, b_runs):
        same = 0
        while same < min(len(a), len(b)) and a[same]["token"] == b[same]["token"]:
            same += 1
        if same == len(a) == len(b):
            identical += 1
        else:
            first_diffs.append(same)
        for x, y in zip(a[:same], b[:same]):
            deltas.append(abs(x["logprob"] - y["logprob"]))
            floor = min(y["top"].values())
            kls.append(sum(math.exp(p) * (p - y["top"].get(t, floor)) for t, p in x["top"].items()))
        shared += same
    print(f"answers identical: {identical} of {len(a_runs)}; first differing token of the others: {sorted(first_diffs)}")
    print(f"over {shared} shared tokens: |Δ logprob| of the chosen token median {statistics.median(deltas):.2e}, "
          f"mean {statistics.fmean(deltas):.2e}, max {max(deltas):.2e}; top-20 KL mean {statistics.fmean(kls):.2e}, "
          f"max {max(kls):.2e}")

parser = argparse.ArgumentParser()
parser.add_argument("--base-url"); parser.add_argument("--prompts"); parser.add_argument("--count", type=int, default=32)
parser.add_argument("--max-tokens", type=int, default=64); parser.add_argument("--save")
parser.add_argument("--compare", nargs=2)
args = parser.parse_args()
compare(*args.compare) if args.compare else collect(args)
