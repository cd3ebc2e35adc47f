"""The C++ CPU kernel against the XLA kernel, piece by piece: 1 and 2 threads, and where the time goes.

For each (cell, B×T×H), times (median of ``--repeats``, ms, after a warm-up):

- the sequential part alone: the kernel's forward and backward calls (no input
  projection, no weight gradients) of the XLA scan kernel and of the CPU kernel with
  1 and with 2 threads (``jr.CPUKernel(threads=...)``);
- the whole ``jr.rnn`` fwd+bwd (gradient of all weights and inputs of ``sum(h²)``)
  with ``backend="xla"`` and ``backend="cpu"``; the difference between the whole and
  the sequential part is the XLA matmuls around the loop (the input projection, the
  input and weight gradients).

Every timed result is first checked against the XLA path (relative error printed).
Writes ``cpu_kernel.json`` to ``--out`` and prints a table.

Run: ``python -m benchmarks.cpu_kernel [--out DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn._bench.run import environment
from jaxrnn._core import gates
from jaxrnn._kernels import cpu, xla

SHAPES = ("16x1024x256", "1x4096x128")
CELLS = {"lstm": jr.lstm, "gru": jr.gru, "elman_tanh": jr.elman}  # named as the kernels' kinds


def _time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _rel(a, b) -> float:
    a, b = (np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(t)]) for t in (a, b))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _sequential(kind, batch, steps, hidden, repeats) -> dict:
    """The kernels' forward + backward calls alone."""
    g = gates.NUM_GATES[kind]
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    px = jax.random.normal(keys[0], (steps, batch, g * hidden), jnp.float32)
    w_hh = jax.random.normal(keys[1], (g * hidden, hidden), jnp.float32) / np.sqrt(hidden)
    b_hh = jnp.zeros((g * hidden,), jnp.float32)
    h0 = jnp.zeros((batch, hidden), jnp.float32)
    c0 = h0 if kind == "lstm" else None
    d_h = jax.random.normal(keys[2], (steps, batch, hidden), jnp.float32)
    d_c = h0 if kind == "lstm" else None

    def both(module, **options):
        def run(px, w_hh, d_h):
            h_all, c_all, res = module.forward(kind, px, w_hh, b_hh, h0, c0, None, **options)
            return h_all, module.backward(kind, px, res, w_hh, b_hh, h0, c0, h_all, c_all, None, d_h, d_c, **options)

        return jax.jit(run)

    fns = {"xla": both(xla), "cpu-1": both(cpu, threads=1), "cpu-2": both(cpu, threads=2)}
    want = fns["xla"](px, w_hh, d_h)
    return {
        name: {"ms": _time(fn, (px, w_hh, d_h), repeats), "rel_error": _rel(fn(px, w_hh, d_h), want)}
        for name, fn in fns.items()
    }


def _whole(cell_name, batch, steps, hidden, repeats) -> dict:
    cell = CELLS[cell_name](hidden)
    params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
    xs = jax.random.normal(jax.random.PRNGKey(1), (batch, steps, hidden), jnp.float32)

    def grad(backend):
        def loss(p, x):
            ys, _ = jr.rnn(cell, p, x, backend=backend)
            return jnp.sum(ys * ys)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    fns = {backend: grad(backend) for backend in ("xla", "cpu")}
    want = fns["xla"](params, xs)
    return {
        backend: {"ms": _time(fn, (params, xs), repeats), "rel_error": _rel(fn(params, xs), want)}
        for backend, fn in fns.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.repeats = "3x16x20", 1
    rows = []
    for cell_name in args.cells.split(","):
        for shape in args.shapes.split(","):
            batch, steps, hidden = (int(v) for v in shape.split("x"))
            row = {"cell": cell_name, "batch": batch, "steps": steps, "hidden": hidden}
            row["sequential"] = _sequential(cell_name, batch, steps, hidden, args.repeats)
            row["whole"] = _whole(cell_name, batch, steps, hidden, args.repeats)
            rows.append(row)
            print(f"done {cell_name} {shape}", file=sys.stderr, flush=True)
    result = {**environment("cpu"), "rows": rows}
    lines = [
        "| cell | B×T×H | loop: XLA | loop: CPU 1 thread | loop: CPU 2 threads | whole fwd+bwd: XLA | whole: CPU | whole CPU / XLA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, w = r["sequential"], r["whole"]
        lines.append(
            f"| {r['cell']} | {r['batch']}×{r['steps']}×{r['hidden']} | {s['xla']['ms']:.1f} | {s['cpu-1']['ms']:.1f} | "
            f"{s['cpu-2']['ms']:.1f} | {w['xla']['ms']:.1f} | {w['cpu']['ms']:.1f} | {w['cpu']['ms'] / w['xla']['ms']:.2f} |"
        )
    errors = [v["rel_error"] for r in rows for part in ("sequential", "whole") for v in r[part].values()]
    lines.append(f"\nlargest relative error against the XLA path: {max(errors):.1e}")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cpu_kernel.json").write_text(json.dumps(result, indent=1))
        (args.out / "cpu_kernel.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
