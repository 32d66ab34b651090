#!/usr/bin/env bash
# Side-by-side DPO benchmark on SmolLM2-135M-Instruct with LoRA (r 8, all linear layers): lathe's DPO step (TRL's
# sigmoid loss, reference = adapter off) against PyTorch + PEFT computing the same loss on the same batch shape
# (bench/dpo_torch.py), 4 pairs × 256 tokens (prompts of 128), runs alternating in one session. PyTorch in float32 at 1 and 2
# threads (bf16 autocast too where the CPU has AVX512-BF16 or AMX: on AVX2-only CPUs it is emulated and far slower).
# Usage: bash bench/dpo.sh [rounds] > dpo.txt && python3 bench/summary.py dpo.txt   (needs torch, transformers, peft)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
flags=$( (grep -o -w 'avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo || true) | sort -u | xargs)
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), flags: ${flags:-none of avx512f, avx512_bf16, amx_bf16}"
s="--batch-size 4 --seq-len 256"
lathe() { echo "lathe $1 $(.build/release/lathe bench sft --objective dpo $s "${@:2}" --steps 3)"; }
torch() { echo "pytorch $1 $(python3 bench/dpo_torch.py --pairs 4 --length 256 --prompt-length 128 "${@:2}" --steps 3 2>/dev/null | tail -1)"; }
for i in $(seq "$rounds"); do
  lathe dpo-default
  torch dpo-f32-t1 --threads 1 --dtype f32
  lathe dpo-f32-t1 --dtype f32 --threads 1
  torch dpo-f32-t2 --threads 2 --dtype f32
  if [[ "$flags" == *bf16* ]]; then torch dpo-bf16-t2 --threads 2 --dtype bf16; fi
done
