"""Measure the parallel solver's design choices on the current backend.

1. ``order``: the recurrence ``h_t = a_t * h_{t-1} + b_t`` alone, evaluated by
   ``lax.associative_scan`` and by an in-order ``lax.scan``
   (``jaxrnn._kernels.associative.linear_scan``'s two methods), real and complex.
2. ``fused_sum``: ``sum(a * b)`` over the leading axis of ``[T, 1, H]`` (batch 1)
   against the same sum over the rows flattened to ``[T, H]``: the sum the VJP of a
   per-feature scale or bias makes.
3. ``solvers``: fwd+bwd of each linear-recurrence cell with ``solver="parallel"`` and
   with ``solver="sequential"``.

Run: ``python -m benchmarks.parallel_choices [--quick] [--studies order,fused_sum,solvers] [--out DIR]``.
Writes ``parallel_choices.json`` to ``--out`` and prints a table. float32, medians of
``--repeats`` runs after one warm-up (compile excluded); fwd+bwd is the gradient of
``sum(h**2)`` over all outputs with respect to the parameters and the inputs.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._app.cells import CELLS
from jaxrnn._bench import run as bench
from jaxrnn._kernels import associative

LINEAR_CELLS = ("mingru", "minlstm", "lru")


def _order(shapes, repeats):
    rows = []
    for batch, steps, hidden in shapes:
        keys = jax.random.split(jax.random.PRNGKey(0), 2)
        a = jax.random.uniform(keys[0], (steps, batch, hidden), jnp.float32, 0.5, 1.0)
        b = jax.random.normal(keys[1], (steps, batch, hidden), jnp.float32)
        for kind in ("real", "complex"):
            if kind == "complex":
                a, b = lax.complex(a, 0.1 * a), lax.complex(b, b)
            h0 = jnp.zeros(a.shape[1:], a.dtype)
            times = {
                method: bench.median_ms(
                    jax.jit(lambda a, b, h0, m=method: associative.linear_scan(a, b, h0, method=m)),
                    a,
                    b,
                    h0,
                    repeats=repeats,
                )
                for method in associative.METHODS
            }
            rows.append(
                dict(
                    study="order",
                    batch=batch,
                    steps=steps,
                    hidden=hidden,
                    dtype=kind,
                    **{f"{m}_ms": t for m, t in times.items()},
                )
            )
    return rows


def _fused_sum(shapes, repeats):
    rows = []
    for steps, hidden in shapes:
        a = jax.random.normal(jax.random.PRNGKey(0), (steps, 1, hidden), jnp.float32)
        b = a + 1.0
        leading = bench.median_ms(jax.jit(lambda a, b: jnp.sum(a * b, axis=0)), a, b, repeats=repeats)
        rows_2d = bench.median_ms(
            jax.jit(lambda a, b: jnp.sum((a * b).reshape(-1, a.shape[-1]), axis=0)), a, b, repeats=repeats
        )
        rows.append(
            dict(study="fused_sum", steps=steps, hidden=hidden, leading_axis_ms=leading, flattened_rows_ms=rows_2d)
        )
    return rows


def _solvers(shapes, repeats):
    rows = []
    for batch, steps, hidden in shapes:
        xs = jax.random.normal(jax.random.PRNGKey(0), (batch, steps, hidden), jnp.float32)
        for name in LINEAR_CELLS:
            cell = CELLS[name](hidden)
            params = cell.init(jax.random.PRNGKey(1), hidden, jnp.float32)
            times = {
                s: bench.median_ms(bench.loss_and_grad(cell, solver=s), params, xs, repeats=repeats)
                for s in ("parallel", "sequential")
            }
            rows.append(
                dict(
                    study="solvers",
                    cell=name,
                    batch=batch,
                    steps=steps,
                    hidden=hidden,
                    parallel_ms=times["parallel"],
                    sequential_ms=times["sequential"],
                )
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, to check that it runs")
    parser.add_argument(
        "--studies", default="order,fused_sum,solvers", help="comma-separated: order, fused_sum, solvers"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args(argv)
    studies = set(args.studies.split(","))
    if args.quick:
        order, fused, solvers, repeats = [(2, 16, 8)], [(16, 8)], [(2, 16, 8)], 1
    else:
        order = [(1, 65536, 128), (16, 16384, 128), (16, 1024, 128)]
        fused = [(65536, 128), (4096, 512)]
        solvers = [(1, 64, 128), (1, 1024, 128), (16, 64, 128), (16, 1024, 128), (64, 1024, 128), (16, 16384, 128)]
        repeats = args.repeats
    rows = []
    if "order" in studies:
        rows += _order(order, repeats)
    if "fused_sum" in studies:
        rows += _fused_sum(fused, repeats)
    if "solvers" in studies:
        rows += _solvers(solvers, repeats)
    result = dict(**bench.environment(jax.default_backend()), rows=rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel_choices.json").write_text(json.dumps(result, indent=1))
    for row in rows:
        print(", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
