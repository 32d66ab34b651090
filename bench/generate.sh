#!/usr/bin/env bash
# Side-by-side generation benchmark: lathe and transformers on the same model, alternating runs, N rounds.
# Usage: bash bench/generate.sh [rounds] [threads]   (needs torch and transformers for the Python side)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
swift build -c release --product lathe >/dev/null
export OMP_WAIT_POLICY=PASSIVE
for i in $(seq "$rounds"); do
  echo "lathe        $(.build/release/lathe bench generate --threads "$threads")"
  echo "transformers $(python3 bench/transformers_generate.py --threads "$threads" 2>/dev/null | tail -1)"
done
