"""Memory and time of ``jr.rnn(..., remat=k)`` against plain BPTT over sequence length.

For an LSTM layer at several T, reports XLA's temporary buffers of the jitted
fwd+bwd (``memory_analysis().temp_size_in_bytes``: what the program allocates
beyond its arguments and outputs) without remat, with ``remat = sqrt(T)`` and
with a fixed ``remat``, and the fwd+bwd time at the shortest T. The loss reads
the final state only: a loss over all outputs needs the ``[T, B, H]`` outputs
and their cotangents, O(T) whatever the checkpointing. Writes
``remat_memory.json`` to ``--out`` and prints a table.

Plain BPTT keeps O(T) states and gates; remat keeps the T/k chunk-entering
states and one chunk's residuals in the backward pass: O(T/k + k), so the
temporaries should grow like sqrt(T) with ``k = sqrt(T)``.

Run: ``python -m benchmarks.remat_memory [--out DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import jaxrnn as jr


def _grad_fn(cell, xs, remat):
    def loss(params):
        _, final = jr.rnn(cell, params, xs, remat=remat)
        return jnp.sum(final.h * final.h) + jnp.sum(final.c)

    return jax.jit(jax.grad(loss))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", default="1024,4096,16384,65536")
    parser.add_argument("--fixed", type=int, default=64, help="the fixed remat k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.hidden, args.steps, args.fixed, args.repeats = 2, 8, "64,256", 8, 1
    cell = jr.lstm(args.hidden)
    params = cell.init(jax.random.PRNGKey(0), args.hidden)
    rows = []
    for steps in [int(t) for t in args.steps.split(",")]:
        xs = jnp.ones((args.batch, steps, args.hidden), jnp.float32)
        sqrt_k = int(round(math.sqrt(steps)))
        for label, remat in (("none", None), (f"sqrt(T)={sqrt_k}", sqrt_k), (f"{args.fixed}", args.fixed)):
            compiled = _grad_fn(cell, xs, remat).lower(params).compile()
            temp = compiled.memory_analysis().temp_size_in_bytes
            row = dict(steps=steps, remat=remat, label=label, temp_bytes=int(temp))
            if steps == min(int(t) for t in args.steps.split(",")):
                jax.block_until_ready(compiled(params))
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    jax.block_until_ready(compiled(params))
                    times.append((time.perf_counter() - start) * 1e3)
                row["fwdbwd_ms"] = statistics.median(times)
            rows.append(row)
    device = jax.devices()[0]
    result = {
        "device": f"{device.device_kind} ({device.platform})",
        "jax": jax.__version__,
        "cell": "lstm",
        "batch": args.batch,
        "hidden": args.hidden,
        "rows": rows,
        "state_bytes": args.batch * args.hidden * 4,
        "method": "XLA temp_size_in_bytes of jit(grad)",
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "remat_memory.json").write_text(json.dumps(result, indent=1))
    print(f"LSTM B={args.batch} H={args.hidden} on {result['device']}: XLA temporaries of fwd+bwd (MiB)")
    print(f"| T | no remat | remat = sqrt(T) | remat = {args.fixed} |")
    print("|---|---|---|---|")
    for steps in dict.fromkeys(r["steps"] for r in rows):
        here = [r for r in rows if r["steps"] == steps]
        cells = []
        for r in here:
            text = f"{r['temp_bytes'] / 2**20:.1f}"
            if "fwdbwd_ms" in r:
                text += f" ({r['fwdbwd_ms']:.0f} ms)"
            cells.append(text)
        print(f"| {steps} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
