#!/usr/bin/env bash
# The prepared device run: one call on a GPU machine, meant to take under 5 minutes
# (not yet run on a device: the sessions so far had none).
#   1. correctness on the device: hand-written BPTT against autodiff, and the gradient
#      error of every backend and precision mode (XLA, Pallas "highest" and "fast")
#      against float64;
#   2. the Pallas kernels' launch settings (block_batch x num_warps) against the XLA scan;
#   3. the benchmark table against cuDNN (PyTorch and jax.experimental.rnn) and flax, at
#      the backend default precision (TF32) and for LSTM at full float32 and in bfloat16.
# Usage, from the repository root (no install needed):
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# Results: $OUT/device_check.json, $OUT/pallas_tune.json, $OUT/{default,highest,bf16}/bench.{json,md}, plots.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-bench-gpu}"
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
python3 -m benchmarks.device_check --out "$OUT" || status=1
python3 -m benchmarks.pallas_tune --out "$OUT" --repeats 5 > "$OUT/pallas_tune.txt" 2>&1 || status=1
python3 -m jaxrnn bench --backend gpu --cells lstm,gru,elman_tanh --repeats 5 \
  --shapes 16x4096x256,64x2048x512,1x8192x128,16x4096x64,1x8192x64 --sweep 16x256:1024,16384 \
  --out "$OUT/default" || status=1
python3 -m jaxrnn bench --backend gpu --precision highest --cells lstm --repeats 5 \
  --shapes 16x4096x256,1x8192x128,1x8192x64 --sweep 16x256:4096 --out "$OUT/highest" || status=1
python3 -m jaxrnn bench --backend gpu --precision bf16 --cells lstm,gru --repeats 5 \
  --shapes 16x4096x128,1x8192x128 --sweep 16x128:4096 --out "$OUT/bf16" || status=1
cat "$OUT/pallas_tune.txt" "$OUT/default/bench.md" "$OUT/highest/bench.md" "$OUT/bf16/bench.md" 2>/dev/null
exit $status
