#!/usr/bin/env bash
# Side-by-side fine-tuning benchmark: lathe and PyTorch + PEFT, same model, shapes and hyper-parameters, runs
# alternating in one session. LoRA: lathe's defaults, then every explicit --dtype (f32, bf16) × --threads (1, 2)
# against PyTorch float32 and bf16 autocast with 1 and 2 threads; QLoRA (NF4 base; PyTorch through bitsandbytes)
# and full fine-tuning (lathe also with 8-bit AdamW) at lathe's defaults. Every lathe line carries `lathe plan`'s
# estimate, the step's achieved GFLOP/s and the matmul rate it runs at.
# Usage: bash bench/sft.sh [rounds] > sft.txt && python3 bench/summary.py sft.txt
#   GGUF=F.gguf bash bench/sft.sh …: another model on both sides (e.g. Gemma 3 270M)
#   (needs torch, transformers, peft and bitsandbytes)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), flags: $(grep -o -w 'avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | xargs)"
model_flags=(); gguf_flags=()
if [ -n "${GGUF:-}" ]; then model_flags=(--model "$GGUF"); gguf_flags=(--gguf "$GGUF"); fi
lathe() { echo "lathe $1 $(.build/release/lathe bench sft "${@:2}" "${model_flags[@]}" --steps 3)"; }
torch() { echo "pytorch $1 $(python3 bench/pytorch_sft.py "${@:2}" "${gguf_flags[@]}" --steps 3 2>/dev/null | tail -1)"; }
for shape in "4 128" "8 256" "1 512"; do
  set -- $shape
  s="--batch-size $1 --seq-len $2"
  for i in $(seq "$rounds"); do
    lathe lora-default $s
    torch lora-f32-t1 $s --threads 1
    lathe lora-f32-t1 $s --dtype f32 --threads 1
    torch lora-bf16-t1 $s --threads 1 --bf16
    lathe lora-bf16-t1 $s --dtype bf16 --threads 1
    torch lora-f32-t2 $s --threads 2
    lathe lora-f32-t2 $s --dtype f32 --threads 2
    torch lora-bf16-t2 $s --threads 2 --bf16
    lathe lora-bf16-t2 $s --dtype bf16 --threads 2
  done
  lathe qlora-default $s --quantize nf4
  torch qlora-t1 $s --quantize nf4 --threads 1
done
lathe full-default --batch-size 4 --seq-len 128 --full
lathe full-8bit --batch-size 4 --seq-len 128 --full --optimizer adamw8bit
torch full-f32-t1 --batch-size 4 --seq-len 128 --full --threads 1
torch full-bf16-t1 --batch-size 4 --seq-len 128 --full --threads 1 --bf16
