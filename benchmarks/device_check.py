"""Correctness of jaxrnn on the current device: hand-written BPTT against autodiff.

For each cell, with and without lengths and reverse, on a few shapes in float32:
the largest gradient error of ``grad="bptt"`` relative to ``grad="autodiff"``
(``jr.check_bptt``), at the backend's default matmul precision (TF32 on NVIDIA
GPUs, where the two differ by TF32 rounding) and at "highest". Writes ``device_check.json`` to ``--out`` and prints a table; exits 1 if any
error exceeds the tolerance.

Run: ``python -m benchmarks.device_check [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

import jaxrnn as jr

CELLS = {"lstm": jr.lstm, "gru": jr.gru, "elman": jr.elman, "layer_norm_lstm": jr.layer_norm_lstm}
SHAPES = [(8, 64, 32), (1, 257, 16), (5, 33, 128)]
# TF32 rounds matmul inputs to 10 mantissa bits; BASELINES.md measured 2.6e-4 between
# TF32 and full float32 gradients on an H100.
TOLERANCE = {"default": 5e-3, "highest": 1e-4}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    rows = []
    for name, make in CELLS.items():
        for batch, steps, hidden in SHAPES:
            cell = make(hidden)
            params = cell.init(jax.random.PRNGKey(0), hidden)
            xs = jax.random.normal(jax.random.PRNGKey(1), (batch, steps, hidden), jnp.float32)
            lengths = jnp.maximum(jnp.arange(batch, dtype=jnp.int32) * (steps // max(batch, 1)), 1).at[0].set(steps)
            for padded in (False, True):
                for reverse in (False, True):
                    for precision in ("default", "highest"):
                        with jax.default_matmul_precision(None if precision == "default" else "highest"):
                            err = jr.check_bptt(cell, params, xs, lengths=lengths if padded else None,
                                                reverse=reverse, rtol=1.0)
                        rows.append(dict(cell=name, shape=f"{batch}x{steps}x{hidden}", padded=padded,
                                         reverse=reverse, precision=precision, rel_error=err,
                                         ok=err <= TOLERANCE[precision]))
    bad = [r for r in rows if not r["ok"]]
    result = {"device": f"{device.device_kind} ({device.platform})", "jax": jax.__version__,
              "tolerance": TOLERANCE, "rows": rows, "all_ok": not bad}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "device_check.json").write_text(json.dumps(result, indent=1))
    worst = {}
    for r in rows:
        key = (r["cell"], r["precision"])
        worst[key] = max(worst.get(key, 0.0), r["rel_error"])
    print(f"bptt vs autodiff on {result['device']} (largest relative gradient error)")
    for (cell, precision), err in worst.items():
        verdict = "ok" if err <= TOLERANCE[precision] else "FAIL"
        print(f"  {cell:16s} {precision:8s} {err:.2e} (tolerance {TOLERANCE[precision]:g}) {verdict}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
