#!/usr/bin/env bash
# Load test of `lathe serve` on SmolLM2-135M-Instruct with two LoRA adapters and the base live at once: every
# streamed answer must equal its single-request answer (bench/serve_load.py, the openai client), memory sampled over
# the run, aggregate tokens/s against one stream, at STREAMS (default "8 32") concurrent streams.
# The adapters are made once in $SERVE_BENCH_DIR (default /tmp/lathe-bench-serve): 10 LoRA steps on the bundled
# order task with two different seeds. Needs: pip install openai.
# Usage: bash bench/serve.sh [requests-per-run] > serve.txt
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-64}
work=${SERVE_BENCH_DIR:-/tmp/lathe-bench-serve}
port=${PORT:-18181}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
flags=$( (grep -o -w 'avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo || true) | sort -u | xargs)
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), flags: ${flags:-none of avx512f, avx512_bf16, amx_bf16}"
mkdir -p "$work"
for seed in 1 2; do
  if [ ! -f "$work/a$seed/adapter_model.safetensors" ]; then
    .build/release/lathe sft examples/orders/sft.yaml --max-steps 10 --seed "$seed" --output "$work/a$seed" >&2
  fi
done
for streams in ${STREAMS:-8 32}; do
  .build/release/lathe serve --port "$port" --adapter a1="$work/a1" --adapter a2="$work/a2" \
    --max-concurrency "$streams" --context 512 ${SERVE_FLAGS:-} 2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  python3 bench/serve_load.py --base-url "http://127.0.0.1:$port/v1" --models smollm2-135m a1 a2 \
    --prompts examples/orders/valid.jsonl --streams "$streams" --requests "$requests" --max-tokens 32 --server-pid "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
