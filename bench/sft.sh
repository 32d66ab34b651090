#!/usr/bin/env bash
# Side-by-side fine-tuning benchmark: lathe and PyTorch + PEFT, same model, shapes and hyper-parameters,
# alternating runs: LoRA (lathe with a float32 and a bf16 base, PyTorch in float32 and with bf16 autocast),
# QLoRA (NF4 base; PyTorch through bitsandbytes), full fine-tuning (lathe also with 8-bit AdamW). Each lathe line also carries `lathe plan`'s estimate for the same run.
# Usage: bash bench/sft.sh [rounds] [threads]   (needs torch, transformers, peft and bitsandbytes)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
lathe() { echo "lathe   $1 $(.build/release/lathe bench sft "${@:2}" --steps 3 --threads "$threads")"; }
torch() { echo "pytorch $1 $(python3 bench/pytorch_sft.py "${@:2}" --steps 3 --threads "$threads" 2>/dev/null | tail -1)"; }
for shape in "4 128" "8 256" "1 512"; do
  set -- $shape
  for i in $(seq "$rounds"); do
    lathe lora --batch-size "$1" --seq-len "$2"
    torch lora --batch-size "$1" --seq-len "$2"
    lathe lora-bf16 --batch-size "$1" --seq-len "$2" --dtype bf16
    lathe qlora --batch-size "$1" --seq-len "$2" --quantize nf4
    torch lora-bf16 --batch-size "$1" --seq-len "$2" --bf16
    torch qlora --batch-size "$1" --seq-len "$2" --quantize nf4
  done
done
for i in $(seq "$rounds"); do
  lathe full --batch-size 4 --seq-len 128 --full
  lathe full-8bit --batch-size 4 --seq-len 128 --full --optimizer adamw8bit
  torch full --batch-size 4 --seq-len 128 --full
done
