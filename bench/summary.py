"""Medians and ratios of `bash bench/sft.sh` output: one row per (run, shape), lathe's default against the best
PyTorch + PEFT setting and against lathe's own best explicit setting, and what the machine allows.

The bound: a step needs `achieved_gflops / tokens_per_s` GFLOP per token; at the matmul rate the run measured on
the model's own shape (`matmul_peak_gflops`, at its thread count), no step can beat rate / (GFLOP per token).
Usage: python3 bench/summary.py sft.txt
"""
import json, statistics, sys
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#") or "{" not in line:
        continue
    side, label, payload = line.split(" ", 2)
    result = json.loads(payload)
    runs[(side, label, result["batch_size"], result["seq_len"])].append(result)

def median(key, field):
    return statistics.median(r[field] for r in runs[key])

shapes = sorted({(b, t) for (_, _, b, t) in runs}, key=lambda s: (s[0] * s[1], s[0]))
print("| run | (batch, length) | tokens/s (median) | peak MiB | plan MiB | GFLOP/s achieved / matmul rate | bound tokens/s | runs |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for b, t in shapes:
    for key in sorted(k for k in runs if k[2:] == (b, t)):
        side, label = key[0], key[1]
        tps = median(key, "tokens_per_s")
        row = [f"{side} {label}", f"({b}, {t})", f"{tps:.0f}", f"{median(key, 'peak_rss_mib'):.0f}"]
        if side == "lathe":
            achieved, rate = median(key, "achieved_gflops"), median(key, "matmul_peak_gflops")
            flops_per_token = achieved / tps
            row += [f"{median(key, 'planned_mib'):.0f}", f"{achieved:.0f} / {rate:.0f} ({100 * achieved / rate:.0f}%)",
                    f"{rate / flops_per_token:.0f}"]
        else:
            row += ["", "", ""]
        row.append(str(len(runs[key])))
        print("| " + " | ".join(row) + " |")
print()
for b, t in shapes:
    def best(side, prefix):
        keys = [k for k in runs if k[0] == side and k[1].startswith(prefix) and k[2:] == (b, t) and "default" not in k[1]]
        return max(((median(k, "tokens_per_s"), k[1]) for k in keys), default=(None, None))
    default_key = ("lathe", "lora-default", b, t)
    if default_key not in runs:
        continue
    default = median(default_key, "tokens_per_s")
    torch_best, torch_label = best("pytorch", "lora")
    lathe_best, lathe_label = best("lathe", "lora")
    parts = [f"({b}, {t}): lathe default {default:.0f} tokens/s"]
    if torch_best:
        parts.append(f"{default / torch_best:.2f}x PyTorch's best ({torch_label}, {torch_best:.0f})")
    if lathe_best:
        parts.append(f"{default / lathe_best:.2f}x lathe's best explicit ({lathe_label}, {lathe_best:.0f})")
    print("; ".join(parts))
