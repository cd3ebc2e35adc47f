"""Measure the two design choices of the core runner on the current backend.

1. ``unroll``: fwd+bwd time of ``jr.rnn(..., grad="bptt")`` for several unrolls.
2. ``residuals``: what the hand-written BPTT saves, ``"states"`` vs ``"gates"``:
   fwd+bwd time (default unroll) and XLA's temporary buffer size for the compiled gradient
   (``compiled.memory_analysis().temp_size_in_bytes``), against ``grad="autodiff"``.

Run: ``python -m benchmarks.core_choices [--quick] [--out DIR]``. Writes
``core_choices.json`` to ``--out`` and prints a table. Loss is ``sum(h**2)`` over all
outputs; inputs float32, input size = hidden size; compile time excluded; medians
of ``--repeats`` runs after one warm-up, with the spread (min, max).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn._app.cells import CELLS
from jaxrnn._bench.run import cpu_name


def _problem(cell_name, batch, steps, hidden):
    cell = CELLS[cell_name](hidden)
    params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
    xs = [jax.random.normal(jax.random.PRNGKey(i), (batch, steps, hidden), jnp.float32) for i in range(2)]
    return cell, params, xs


def _grad_fn(cell, **options):
    def loss(params, xs):
        ys, _ = jr.rnn(cell, params, xs, **options)
        return jnp.sum(ys * ys)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _time(fn, params, xs_list, repeats):
    """Median and spread in ms; inputs rotate so no call sees the previous one's input."""
    jax.block_until_ready(fn(params, xs_list[0]))  # compile and warm up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(params, xs_list[i % len(xs_list)]))
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def _temp_bytes(fn, params, xs):
    analysis = fn.lower(params, xs).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the LSTM only, small shapes, 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder for core_choices.json")
    parser.add_argument("--studies", default="unroll,residuals", help="comma-separated: unroll, residuals")
    parser.add_argument("--shapes", default=None, help="BxTxH,... (default: 16x1024x256,1x4096x128)")
    args = parser.parse_args(argv)
    studies = set(args.studies.split(","))
    repeats = 3 if args.quick else args.repeats
    shapes = [(4, 128, 64)] if args.quick else [(16, 1024, 256), (1, 4096, 128)]
    if args.shapes:
        shapes = [tuple(int(n) for n in item.split("x")) for item in args.shapes.split(",")]
    unrolls = [1, 4, 16] if args.quick else [1, 2, 4, 8, 16]

    rows = []
    for cell_name in ("lstm",) if args.quick else ("lstm", "gru"):
        for batch, steps, hidden in shapes:
            cell, params, xs = _problem(cell_name, batch, steps, hidden)
            shape = f"{batch}x{steps}x{hidden}"
            for unroll in unrolls if "unroll" in studies else ():
                t = _time(_grad_fn(cell, unroll=unroll), params, xs, repeats)
                rows.append({"study": "unroll", "cell": cell_name, "shape": shape, "unroll": unroll, **t})
                print(f"unroll    {cell_name:5s} {shape:>14s} unroll={unroll:<3d} {t['median_ms']:9.1f} ms")
            residual_variants = [
                ("bptt/states", dict(residuals="states")),
                ("bptt/gates", dict(residuals="gates")),
                ("autodiff", dict(grad="autodiff")),
            ]
            for variant, options in residual_variants if "residuals" in studies else ():
                fn = _grad_fn(cell, **options)
                t = _time(fn, params, xs, repeats)
                temp = _temp_bytes(fn, params, xs[0])
                rows.append(
                    {
                        "study": "residuals",
                        "cell": cell_name,
                        "shape": shape,
                        "variant": variant,
                        "temp_bytes": temp,
                        **t,
                    }
                )
                print(
                    f"residuals {cell_name:5s} {shape:>14s} {variant:12s} {t['median_ms']:9.1f} ms  "
                    f"temp {temp / 2**20 if temp is not None else float('nan'):8.1f} MiB"
                )

    result = {
        "date": datetime.date.today().isoformat(),
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "versions": {"jax": jax.__version__, "jaxrnn": jr.__version__, "python": platform.python_version()},
        "precision": "float32, default matmul precision",
        "loss": "sum(h**2) over all outputs; gradient of all params and inputs",
        "repeats": repeats,
        "rows": rows,
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "core_choices.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
