#!/usr/bin/env bash
# The prepared device run: one call on a GPU machine, meant to take under 8 minutes
# (not yet run on a device: the sessions so far had none).
#   1. correctness on the device: hand-written BPTT against autodiff, and the gradient
#      error of every backend and precision mode (XLA, Pallas "highest" and "fast")
#      against float64;
#   2. the Pallas kernels' launch settings (block_batch x num_warps) against the XLA scan;
#   3. the benchmark table against cuDNN (PyTorch and jax.experimental.rnn) and flax, at
#      the backend default precision (TF32) and for LSTM at full float32 and in bfloat16;
#   4. the parallel suite: mingru, minlstm and lru with solver="parallel" against jaxrnn's
#      sequential GRU and LSTM, H=128, B=1 and 16, T=1024 to 65536 (each row checked first
#      against the sequential scan's jax.grad; estimated 2-3 minutes, most of it the
#      sequential rows at T=65536);
#   5. the Newton solvers (quasi-DEER, DEER) for GRU, LSTM and their diagonal variants against
#      their sequential scans at B=1, T=16384 and 65536, H=128, and cuDNN and PyTorch at the
#      same shapes (the target: a Newton solver faster than the best sequential path, cuDNN
#      included, at B=1, T >= 16k). DEER rows over the suite's 2 GiB Jacobian cap are skipped.
# Usage, from the repository root (no install needed):
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# Results: $OUT/device_check.json, $OUT/pallas_tune.json, $OUT/{default,highest,bf16}/bench.{json,md},
# $OUT/parallel/parallel.{json,md}, $OUT/newton/parallel.{json,md}, $OUT/newton_peers/bench.{json,md}, plots.
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
python3 -m jaxrnn bench --backend gpu --suite parallel --lengths 1024,4096,16384,65536 --batches 1,16 \
  --hidden 128 --repeats 5 --out "$OUT/parallel" || status=1
python3 -m jaxrnn bench --backend gpu --suite parallel --cells gru,lstm,gru_diagonal,lstm_diagonal \
  --lengths 16384,65536 --batches 1 --hidden 128 --solvers sequential,quasi-deer,deer --repeats 3 \
  --out "$OUT/newton" || status=1
python3 -m jaxrnn bench --backend gpu --cells lstm,gru --repeats 3 --shapes 1x16384x128,1x65536x128 \
  --out "$OUT/newton_peers" || status=1
cat "$OUT/pallas_tune.txt" "$OUT/default/bench.md" "$OUT/highest/bench.md" "$OUT/bf16/bench.md" \
  "$OUT/parallel/parallel.md" "$OUT/newton/parallel.md" "$OUT/newton_peers/bench.md" 2>/dev/null
exit $status
