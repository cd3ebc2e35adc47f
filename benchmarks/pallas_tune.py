"""Sweep the launch settings of the Pallas kernels on the current GPU or TPU.

For each cell and shape, times the fused forward and backward kernels
(``jaxrnn._kernels.pallas_gpu`` / ``jaxrnn._kernels.pallas_tpu``, called directly, without the
matmuls around them) over a grid of launch settings, next to the XLA scan kernel
(``jaxrnn._kernels.xla``, unroll 8) on the same inputs: the sequential part
of a layer on each backend. Also checks every setting's outputs against the XLA
scan kernel. Writes ``pallas_tune.json`` to ``--out`` and prints a table.

GPU settings: ``block_batch`` (rows per program) x ``num_warps``; TPU settings:
``time_block`` (steps per grid step) x ``batch_block``.

Run: ``python -m benchmarks.pallas_tune --out DIR`` (``--interpret --quick`` on
CPU checks that the script works; its timings mean nothing).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

from jaxrnn._bench.run import median_ms
from jaxrnn._core import gates
from jaxrnn._kernels import xla as _scan_kernel
from jaxrnn._kernels.interface import PRECISIONS

SHAPES = [(16, 4096, 64), (64, 2048, 64), (1, 8192, 64)]
QUICK_SHAPES = [(3, 12, 20)]
GPU_GRID = {"block_batch": [16, 32, 64], "num_warps": [2, 4, 8]}
TPU_GRID = {"time_block": [8, 16, 32], "batch_block": [8, 64, 256]}


def _inputs(kind, batch, steps, hidden, seed=0):
    g = gates.NUM_GATES[kind]
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    px = jax.random.normal(k[0], (steps, batch, g * hidden), jnp.float32)
    w_hh = jax.random.normal(k[1], (g * hidden, hidden), jnp.float32) / hidden**0.5
    b_hh = 0.1 * jax.random.normal(k[2], (g * hidden,), jnp.float32)
    h0 = jnp.zeros((batch, hidden), jnp.float32)
    c0 = h0 if kind == "lstm" else None
    d_h_all = jax.random.normal(k[3], (steps, batch, hidden), jnp.float32)
    d_c_last = h0 if kind == "lstm" else None
    return px, w_hh, b_hh, h0, c0, d_h_all, d_c_last


def _pair(module, kind, inputs, options, repeats):
    """(forward ms, backward ms, outputs) of one kernel module with ``options``."""
    px, w_hh, b_hh, h0, c0, d_h_all, d_c_last = inputs
    fwd = jax.jit(lambda px, w: module.forward(kind, px, w, b_hh, h0, c0, None, **options))
    h_all, c_all, res = fwd(px, w_hh)
    bwd = jax.jit(
        lambda res, w, d: module.backward(kind, px, res, w, b_hh, h0, c0, h_all, c_all, None, d, d_c_last, **options)
    )
    grads = bwd(res, w_hh, d_h_all)
    return (
        median_ms(fwd, px, w_hh, repeats=repeats),
        median_ms(bwd, res, w_hh, d_h_all, repeats=repeats),
        (h_all, grads[0]),
    )


def _error(got, want) -> float:
    return max(float(jnp.abs(g - w).max() / jnp.maximum(jnp.abs(w).max(), 1e-30)) for g, w in zip(got, want))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--cells", default="lstm,gru,elman_tanh")
    parser.add_argument("--precision", choices=PRECISIONS, default="fast")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--interpret", action="store_true", help="run the GPU kernels in interpret mode (CPU)")
    parser.add_argument("--quick", action="store_true", help="one tiny shape, two settings")
    args = parser.parse_args(argv)
    platform = jax.devices()[0].platform
    target = "tpu" if platform == "tpu" else "gpu"
    if target == "gpu":
        from jaxrnn._kernels import pallas_gpu as module

        grid = GPU_GRID
    else:
        from jaxrnn._kernels import pallas_tpu as module

        grid = TPU_GRID
    shapes = QUICK_SHAPES if args.quick else SHAPES
    settings = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if args.quick:
        settings = settings[:2]
    rows = []
    for kind in args.cells.split(","):
        for batch, steps, hidden in shapes:
            inputs = _inputs(kind, batch, steps, hidden)
            reason = module.unsupported(kind, batch, hidden, jnp.dtype(jnp.float32), args.precision)
            xla_f, xla_b, want = _pair(
                _scan_kernel, kind, inputs, dict(unroll=8, precision=args.precision), args.repeats
            )
            base = dict(cell=kind, batch=batch, steps=steps, hidden=hidden, precision=args.precision)
            rows.append({**base, "impl": "xla-scan (unroll 8)", "fwd_ms": xla_f, "bwd_ms": xla_b})
            if reason:
                rows.append({**base, "impl": f"pallas-{target}", "status": "unsupported", "reason": reason})
                continue
            for setting in settings:
                options = dict(setting, precision=args.precision, interpret=args.interpret)
                try:
                    f_ms, b_ms, got = _pair(module, kind, inputs, options, args.repeats)
                except Exception as e:  # a setting that does not fit is a result, not a crash
                    rows.append(
                        {
                            **base,
                            "impl": f"pallas-{target}",
                            "setting": setting,
                            "status": "failed",
                            "reason": f"{type(e).__name__}: {e}"[:300],
                        }
                    )
                    continue
                rows.append(
                    {
                        **base,
                        "impl": f"pallas-{target}",
                        "setting": setting,
                        "status": "ok",
                        "fwd_ms": f_ms,
                        "bwd_ms": b_ms,
                        "rel_error_vs_xla": _error(got, want),
                    }
                )
    device = jax.devices()[0]
    result = {
        "device": f"{device.device_kind} ({device.platform})",
        "jax": jax.__version__,
        "interpret": args.interpret,
        "rows": rows,
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pallas_tune.json").write_text(json.dumps(result, indent=1))
    print(
        f"Pallas launch settings on {result['device']}, {args.precision} precision: fwd / bwd ms of the kernels alone"
    )
    for row in rows:
        shape = f"{row['batch']}x{row['steps']}x{row['hidden']}"
        if "fwd_ms" in row:
            extra = f" err {row['rel_error_vs_xla']:.1e}" if "rel_error_vs_xla" in row else ""
            print(
                f"  {row['cell']:10s} {shape:12s} {row['impl']:20s} {row.get('setting', '')} "
                f"{row['fwd_ms']:.2f} / {row['bwd_ms']:.2f}{extra}"
            )
        else:
            print(
                f"  {row['cell']:10s} {shape:12s} {row['impl']:20s} {row.get('setting', '')} {row['status']}: {row['reason'][:120]}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
