#!/usr/bin/env bash
# Side-by-side generation benchmark: lathe and transformers on the same model, alternating runs, N rounds,
# each side in float32 and in bf16.
# Usage: bash bench/generate.sh [rounds] [threads]   (needs torch and transformers for the Python side)
#   GGUF=F.gguf bash bench/generate.sh …: another model on both sides (e.g. Gemma 3 270M)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
model_flags=(); gguf_flags=()
if [ -n "${GGUF:-}" ]; then model_flags=(--model "$GGUF"); gguf_flags=(--gguf "$GGUF"); fi
for i in $(seq "$rounds"); do
  echo "lathe        f32  $(.build/release/lathe bench generate "${model_flags[@]}" --threads "$threads" --dtype f32)"
  echo "transformers f32  $(python3 bench/transformers_generate.py "${gguf_flags[@]}" --threads "$threads" 2>/dev/null | tail -1)"
  echo "lathe        bf16 $(.build/release/lathe bench generate "${model_flags[@]}" --threads "$threads" --dtype bf16)"
  echo "transformers bf16 $(python3 bench/transformers_generate.py "${gguf_flags[@]}" --threads "$threads" --bf16 2>/dev/null | tail -1)"
done
