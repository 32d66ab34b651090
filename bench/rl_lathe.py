"""Lathe's side of the RL benchmark (bench/rl.sh): runs `lathe grpo` or `lathe ppo` on examples/orders/grpo.yaml or
ppo.yaml (without their held-out set, evaluation and checkpoints) for one warm-up step plus --steps, and turns the
run's metrics.jsonl into one JSON line with the fields bench/rl_trl.py prints.

    python3 bench/rl_lathe.py grpo --adapter SFT_DIR [--steps 3] [--threads N] [--dtype f32|bf16]
    python3 bench/rl_lathe.py ppo --adapter SFT_DIR --reward-model RM_DIR [--steps 2] [--threads N] [--dtype f32|bf16]

Per step, from metrics.jsonl: the step's wall time is the difference of the cumulative elapsed time each line implies
(cumulative `tokens` / `tokens_per_s`: the whole optimizer step, clipping and AdamW included, as TRL's on_step_begin ->
on_step_end); rollout = `time/rollout_s`, reward = `time/reward_s` (GRPO; PPO scores inside its rollout, as TRL's
PPOTrainer does), update = step - rollout - reward. Rollout tokens = `num_tokens/rollout` (sampled tokens, each
completion's stop token included), update tokens = `tokens` (prompt + completion tokens the update's forward passes
read). PPO: a lathe step is one minibatch update and a rollout batch is sampled every num_ppo_epochs x
num_mini_batches steps (4 here); those steps are summed into one step per rollout batch, TRL's PPO step. Peak RSS is
the lathe process's (RUSAGE_CHILDREN).
"""
import argparse, json, os, re, resource, shutil, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
p = argparse.ArgumentParser()
p.add_argument("stage", choices=["grpo", "ppo"])
p.add_argument("--adapter", required=True)
p.add_argument("--reward-model")
p.add_argument("--steps", type=int, default=3, help="timed steps (PPO: rollout batches) after one warm-up")
p.add_argument("--threads")
p.add_argument("--dtype")
p.add_argument("--lathe", default=os.path.join(root, ".build", "release", "lathe"))
p.add_argument("--keep", action="store_true", help="keep the run folder (a temporary folder, named on stderr)")
args = p.parse_args()
if args.stage == "ppo" and not args.reward_model:
    p.error("ppo needs --reward-model")

work = tempfile.mkdtemp(prefix=f"rl-lathe-{args.stage}-")
source = open(os.path.join(root, "examples", "orders", f"{args.stage}.yaml")).read()
# No held-out evaluation (before, during and after training) and no checkpoints: only the training steps run.
config = re.sub(r"(?m)^(valid|eval_every|save_every|output|adapter):.*\n", "", source)
config = re.sub(r"(?m)^\s+reward_model_path:.*\n", "", config)
data = re.sub(r"(?m)^data:\s*(\S+)", lambda m: "data: " + os.path.join(root, m.group(1)), config)
yaml_path = os.path.join(work, f"{args.stage}.yaml")
open(yaml_path, "w").write(data)
per_rollout = 1
if args.stage == "ppo":
    epochs = int(re.search(r"(?m)^\s+num_ppo_epochs:\s*(\d+)", source).group(1))
    minibatches = int(re.search(r"(?m)^\s+num_mini_batches:\s*(\d+)", source).group(1))
    per_rollout = epochs * minibatches
command = [args.lathe, args.stage, yaml_path, "--adapter", args.adapter, "--output", os.path.join(work, "run"),
           "--max-steps", str(per_rollout * (args.steps + 1))]
if args.stage == "ppo":
    command += ["--reward-model", args.reward_model]
if args.threads:
    command += ["--threads", args.threads]
if args.dtype:
    command += ["--dtype", args.dtype]
log = os.path.join(work, "log.txt")
with open(log, "w") as fh:
    code = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT, cwd=root)
if code != 0:
    sys.stderr.write(open(log).read()[-4000:])
    sys.exit(f"lathe exited with {code}: {' '.join(command)}")
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

lines = [json.loads(l) for l in open(os.path.join(work, "run", "metrics.jsonl")) if l.strip()]
lines = [l for l in lines if "tokens_per_s" in l]
steps, seen, elapsed = [], 0, 0.0
for l in lines:
    seen += l["tokens"]
    now = seen / l["tokens_per_s"]
    wall, elapsed = now - elapsed, now
    if args.stage == "grpo" or "time/rollout_s" in l:
        steps.append(dict(rollout_s=l["time/rollout_s"], reward_s=l.get("time/reward_s", 0.0),
                          rollout_tokens=l["num_tokens/rollout"], update_tokens=0, step_s=0.0))
    steps[-1]["update_tokens"] += l["tokens"]
    steps[-1]["step_s"] += wall
assert len(steps) == args.steps + 1, (len(steps), args.steps)
text = open(log).read()
threads = re.search(r"compute threads: (.*)", text)
products = re.search(r"products: (.*)", text)
if args.keep:
    sys.stderr.write(f"run folder: {work}\n")
else:
    shutil.rmtree(work)
timed = steps[1:]
rollout_s = sum(s["rollout_s"] for s in timed)
update_s = sum(s["step_s"] - s["rollout_s"] - s["reward_s"] for s in timed)
print(json.dumps({
    "stage": args.stage, "rollout_tokens_per_s": sum(s["rollout_tokens"] for s in timed) / rollout_s,
    "update_tokens_per_s": sum(s["update_tokens"] for s in timed) / update_s,
    "step_s": sum(s["step_s"] for s in timed) / len(timed), "reward_s": sum(s["reward_s"] for s in timed) / len(timed),
    "rollout_s": [round(s["rollout_s"], 4) for s in timed], "update_s": [round(s["step_s"] - s["rollout_s"] - s["reward_s"], 4) for s in timed],
    "rollout_tokens": [int(s["rollout_tokens"]) for s in timed], "update_tokens": [s["update_tokens"] for s in timed],
    "warmup_step_s": round(steps[0]["step_s"], 4), "steps": len(timed), "threads": threads[1] if threads else args.threads,
    "products": products[1] if products else args.dtype, "peak_rss_mib": peak, "backend": "lathe"}))
