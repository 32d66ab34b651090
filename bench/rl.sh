#!/usr/bin/env bash
# Side-by-side RL benchmark on SmolLM2-135M-Instruct with LoRA (r 8, alpha 16, every linear), the settings of
# examples/orders/grpo.yaml and ppo.yaml: lathe grpo / lathe ppo (bench/rl_lathe.py reads their metrics.jsonl) against
# TRL 1.16.0's GRPOTrainer and TRL 0.29.1's experimental PPOTrainer with PEFT (bench/rl_trl.py, float32, 2 threads),
# runs alternating in one session. Lathe at its defaults and at --dtype f32 --threads 2. Each run: one warm-up step,
# then GRPO_STEPS steps (default 3: 2 prompts x 4 completions each) and PPO_STEPS rollout batches (default 2: 8
# prompts, then 4 PPO epochs of 1 minibatch; lathe's 4 steps). Rows: rollout tokens/s, update tokens/s, step seconds.
# Both sides start from the same weak SFT adapter (6 steps, as grpo.yaml's comment makes it) and PPO uses the same
# reward model adapter, both made here once in $RL_BENCH_DIR (default /tmp/lathe-bench-rl) if missing.
# TRL 0.29.1 is fetched into $TRL_0291 (default /tmp/trlold/trl-0.29.1) if missing: pip download, unzip, not installed.
# Usage: bash bench/rl.sh [rounds] > rl.txt && python3 bench/summary.py rl.txt   (needs torch, transformers, peft, trl;
#   RL_STAGES="grpo" for GRPO only; TRL's stderr goes to $RL_BENCH_DIR/trl.log)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
grpo_steps=${GRPO_STEPS:-3}; ppo_steps=${PPO_STEPS:-2}; stages=${RL_STAGES:-grpo ppo}
work=${RL_BENCH_DIR:-/tmp/lathe-bench-rl}
export TRL_0291=${TRL_0291:-/tmp/trlold/trl-0.29.1}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
flags=$( (grep -o -w 'avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo || true) | sort -u | xargs)
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), flags: ${flags:-none of avx512f, avx512_bf16, amx_bf16}"
mkdir -p "$work"
if [ ! -f "$work/sft/adapter_model.safetensors" ]; then
  .build/release/lathe sft examples/orders/sft.yaml --max-steps 6 --output "$work/sft" >&2
fi
if [[ "$stages" == *ppo* ]] && [ ! -f "$work/rm/adapter_model.safetensors" ]; then
  .build/release/lathe reward examples/orders/reward.yaml --max-steps "${RM_STEPS:-10}" --output "$work/rm" >&2
fi
if [[ "$stages" == *ppo* ]] && [ ! -d "$TRL_0291/trl" ]; then
  dir=$(dirname "$TRL_0291"); mkdir -p "$dir"
  pip download --no-deps trl==0.29.1 -d "$dir" >&2
  unzip -q -o "$dir"/trl-0.29.1-*.whl -d "$TRL_0291"
fi
lathe() { echo "lathe $1 $(python3 bench/rl_lathe.py "${@:2}" | tail -1)"; }
trl() { echo "trl $1 $(python3 bench/rl_trl.py "${@:2}" 2>>"$work/trl.log" | tail -1)"; }
grpo="grpo --adapter $work/sft --steps $grpo_steps"
ppo="ppo --adapter $work/sft --reward-model $work/rm --steps $ppo_steps"
for i in $(seq "$rounds"); do
  for stage in $stages; do
    s=${!stage}
    lathe "$stage-default" $s
    trl "$stage-f32-t2" $s --threads 2
    lathe "$stage-f32-t2" $s --dtype f32 --threads 2
  done
done
