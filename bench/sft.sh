#!/usr/bin/env bash
# Side-by-side fine-tuning benchmark: lathe and PyTorch + PEFT, same model, shapes and hyper-parameters,
# alternating runs. Usage: bash bench/sft.sh [rounds] [threads]   (needs torch, transformers and peft)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
for shape in "4 128" "8 256" "1 512"; do
  set -- $shape
  for i in $(seq "$rounds"); do
    echo "lathe   lora $(.build/release/lathe bench sft --batch-size "$1" --seq-len "$2" --steps 3 --threads "$threads")"
    echo "pytorch lora $(python3 bench/pytorch_sft.py --batch-size "$1" --seq-len "$2" --steps 3 --threads "$threads" 2>/dev/null | tail -1)"
  done
done
for i in $(seq "$rounds"); do
  echo "lathe   full $(.build/release/lathe bench sft --batch-size 4 --seq-len 128 --steps 3 --full --threads "$threads")"
  echo "pytorch full $(python3 bench/pytorch_sft.py --batch-size 4 --seq-len 128 --steps 3 --full --threads "$threads" 2>/dev/null | tail -1)"
done
