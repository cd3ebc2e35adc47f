#!/usr/bin/env bash
# The prepared device run: one call on a GPU machine, under 5 minutes.
#   1. correctness of the hand-written BPTT on the device (both precisions);
#   2. the benchmark table against cuDNN (PyTorch and jax.experimental.rnn) and flax,
#      at the backend default precision (TF32) and for LSTM at full float32.
# Usage, from the repository root (no install needed):
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# Results: $OUT/device_check.json, $OUT/default/bench.{json,md}, $OUT/highest/bench.{json,md}, plots.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-bench-gpu}"
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
python3 -m benchmarks.device_check --out "$OUT" || status=1
python3 -m jaxrnn bench --backend gpu --cells lstm,gru,elman --repeats 5 \
  --shapes 16x4096x256,64x2048x512,1x8192x128 --sweep 16x256:1024,4096,16384 --out "$OUT/default" || status=1
python3 -m jaxrnn bench --backend gpu --precision highest --cells lstm --repeats 5 \
  --shapes 16x4096x256,1x8192x128 --sweep 16x256:4096 --out "$OUT/highest" || status=1
cat "$OUT/default/bench.md" "$OUT/highest/bench.md" 2>/dev/null
exit $status
