"""Medians and ratios of `bash bench/sft.sh` output: one row per (run, shape), lathe's default against the best
PyTorch + PEFT setting and against lathe's own best explicit setting, and what the machine allows.

The bound: a step needs `achieved_gflops / tokens_per_s` GFLOP per token; at the matmul rate the run measured on
the model's own shape (`matmul_peak_gflops`, at its thread count), no step can beat rate / (GFLOP per token).
Output of `bash bench/rl.sh` (rows whose JSON has a "stage": grpo or ppo) gives instead one row per run with the
medians of rollout tokens/s, update tokens/s and step seconds, then each lathe run against TRL's run of the same stage
(lathe / TRL for tokens/s and memory; steps per second: TRL's step time / lathe's; above 1: lathe faster).
Usage: python3 bench/summary.py sft.txt   (or dpo.txt, rl.txt)
"""
import json, statistics, sys
from collections import defaultdict

runs, rl = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#") or "{" not in line:
        continue
    side, label, payload = line.split(" ", 2)
    result = json.loads(payload)
    if "stage" in result:
        rl[(result["stage"], side, label)].append(result)
    else:
        runs[(side, label, result["batch_size"], result["seq_len"])].append(result)


def rl_summary():
    """bench/rl.sh: rollout and update tokens/s, step time; lathe against TRL per stage."""
    def med(key, field):
        return statistics.median(r[field] for r in rl[key])
    print("| stage | run | rollout tokens/s | update tokens/s | step s | rollout s | update s | peak MiB | runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(rl):
        stage, side, label = key
        per_step = lambda field: statistics.median(x for r in rl[key] for x in r[field])
        print(f"| {stage} | {side} {label} | {med(key, 'rollout_tokens_per_s'):.1f} | {med(key, 'update_tokens_per_s'):.1f} | "
              f"{med(key, 'step_s'):.1f} | {per_step('rollout_s'):.1f} | {per_step('update_s'):.1f} | "
              f"{med(key, 'peak_rss_mib'):.0f} | {len(rl[key])} |")
    print()
    for stage in sorted({k[0] for k in rl}):
        others = [k for k in rl if k[0] == stage and k[1] != "lathe"]
        for lathe in sorted(k for k in rl if k[0] == stage and k[1] == "lathe"):
            for other in sorted(others):
                print(f"{stage}: lathe {lathe[2]} against {other[1]} {other[2]}: rollout tokens/s "
                      f"{med(lathe, 'rollout_tokens_per_s') / med(other, 'rollout_tokens_per_s'):.2f}x, update tokens/s "
                      f"{med(lathe, 'update_tokens_per_s') / med(other, 'update_tokens_per_s'):.2f}x, steps per second "
                      f"{med(other, 'step_s') / med(lathe, 'step_s'):.2f}x, peak memory "
                      f"{med(lathe, 'peak_rss_mib') / med(other, 'peak_rss_mib'):.2f}x")


if rl:
    rl_summary()
    if not runs:
        sys.exit(0)
    print()

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
