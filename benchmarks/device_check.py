"""Correctness of jaxrnn on the current device: hand-written BPTT against autodiff.

For each cell, with and without lengths and reverse, on a few shapes in float32:
the largest gradient error of ``grad="bptt"`` relative to ``grad="autodiff"``
(``jr.check_bptt``), at the backend's default matmul precision (TF32 on NVIDIA
GPUs, where the two differ by TF32 rounding) and at "highest". Writes ``device_check.json`` to ``--out`` and prints a table; exits 1 if any
error exceeds the tolerance.

Then the precision of every backend and mode: the gradients of a float32 run
(XLA at the default and at "highest" precision; on GPU and TPU, the Pallas
kernels in "highest" and "fast") against a float64 run of the same problem on
the host CPU, as the largest error relative to the largest entry of each
gradient. ``--interpret`` also runs the Pallas kernels in interpret mode on a
CPU-only machine.

Run: ``python -m benchmarks.device_check [--out DIR] [--interpret]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn._app.cells import CELLS
from jaxrnn._kernels import registry as _kernels

SHAPES = [(8, 64, 32), (1, 257, 16), (5, 33, 128)]
# TF32 rounds matmul inputs to 10 mantissa bits; BASELINES.md measured 2.6e-4 between
# TF32 and full float32 gradients on an H100.
TOLERANCE = {"default": 5e-3, "highest": 1e-4}


PRECISION_SHAPE = (16, 256, 64)
# Largest gradient error against float64 that passes: float32 rounding over a few hundred
# steps stays near 1e-5; TF32 and bfloat16 products keep 10 and 7 mantissa bits.
PRECISION_TOLERANCE = {"highest": 1e-4, "default": 2e-2, "fast": 2e-2}


def _grads(cell, params, xs, **kwargs):
    def loss(p, x):
        ys, _ = jr.rnn(cell, p, x, **kwargs)
        return jnp.sum(ys * ys) / ys.size

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)


def precision_rows(interpret: bool = False) -> list:
    """Gradient errors of each backend and precision mode against float64 on the host CPU."""
    platform = jax.devices()[0].platform
    target = _kernels.pallas_target(platform)
    targets = [target] if target else (["gpu", "tpu"] if interpret else [])
    batch, steps, hidden = PRECISION_SHAPE
    rows = []
    for name in ("lstm", "gru", "elman_tanh"):
        cell = CELLS[name](hidden)
        params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
        xs = jax.random.normal(jax.random.PRNGKey(1), (batch, steps, hidden), jnp.float32)
        with jax.default_device(jax.devices("cpu")[0]):
            wide = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (params, xs))
            want = _grads(cell, *wide, grad="autodiff", backend="xla")
        modes = [("xla", "default", dict(backend="xla")), ("xla", "highest", dict(backend="xla"))]
        modes += [
            (f"pallas-{t}", p, dict(backend=jr.Pallas(target=t, precision=p, interpret=interpret)))
            for t in targets
            for p in ("highest", "fast")
        ]
        for backend, precision, kwargs in modes:
            context = jax.default_matmul_precision("highest" if precision == "highest" else None)
            try:
                with context:
                    got = _grads(cell, params, xs, **kwargs)
            except ValueError as e:  # a kernel that cannot run this shape says why
                rows.append(dict(cell=name, backend=backend, precision=precision, status="unsupported", reason=str(e)))
                continue
            err = max(
                float(jnp.abs(jnp.asarray(g, jnp.float64) - w).max() / jnp.abs(w).max())
                for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want))
            )
            rows.append(
                dict(
                    cell=name,
                    backend=backend,
                    precision=precision,
                    rel_error_vs_float64=err,
                    status="ok" if err <= PRECISION_TOLERANCE[precision] else "FAIL",
                )
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--interpret", action="store_true", help="also run the Pallas kernels in interpret mode")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # for the float64 reference; every other array is float32
    device = jax.devices()[0]
    rows = []
    for name, make in CELLS.items():
        for batch, steps, hidden in SHAPES:
            cell = make(hidden)
            params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
            xs = jax.random.normal(jax.random.PRNGKey(1), (batch, steps, hidden), jnp.float32)
            lengths = jnp.maximum(jnp.arange(batch, dtype=jnp.int32) * (steps // max(batch, 1)), 1).at[0].set(steps)
            for padded in (False, True):
                for reverse in (False, True):
                    for precision in ("default", "highest"):
                        with jax.default_matmul_precision(None if precision == "default" else "highest"):
                            err = jr.check_bptt(
                                cell, params, xs, lengths=lengths if padded else None, reverse=reverse, rtol=1.0
                            )
                        rows.append(
                            dict(
                                cell=name,
                                shape=f"{batch}x{steps}x{hidden}",
                                padded=padded,
                                reverse=reverse,
                                precision=precision,
                                rel_error=err,
                                ok=err <= TOLERANCE[precision],
                            )
                        )
    modes = precision_rows(args.interpret)
    bad = [r for r in rows if not r["ok"]] + [r for r in modes if r["status"] == "FAIL"]
    result = {
        "device": f"{device.device_kind} ({device.platform})",
        "jax": jax.__version__,
        "tolerance": TOLERANCE,
        "rows": rows,
        "precision_shape": PRECISION_SHAPE,
        "precision_tolerance": PRECISION_TOLERANCE,
        "precision": modes,
        "all_ok": not bad,
    }
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
    print(f"gradient error against float64, B x T x H = {' x '.join(map(str, PRECISION_SHAPE))}")
    for r in modes:
        detail = f"{r['rel_error_vs_float64']:.2e}" if "rel_error_vs_float64" in r else r["reason"][:100]
        print(f"  {r['cell']:6s} {r['backend']:11s} {r['precision']:8s} {detail} {r['status']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
