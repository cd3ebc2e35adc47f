"""``jaxrnn bench --suite parallel``: linear-recurrence cells in parallel over time against sequential RNNs.

For every batch size B and sequence length T of the plan, at one hidden size H
(input size = H), the value and gradient of ``sum(h**2)`` over all outputs with
respect to all weights and the inputs, through :func:`jaxrnn.rnn` with its
default ``grad="bptt"``:

- a cell that declares a linear recurrence (``mingru``, ``minlstm``, ``lru``) with
  ``solver="parallel"`` (an associative scan over time and its hand-written
  reverse), and with ``--solvers parallel,sequential`` also step by step;
- any other cell (by default jaxrnn's ``gru`` and ``lstm``: the baselines) with
  ``solver="sequential"``, the time loop every RNN needs.

Before a row is timed, its loss and gradients at ``min(T, check_steps)`` steps
(same batch, same weights) are compared with ``jax.grad`` of the plain sequential
scan of the same cell (``grad="autodiff"``, ``solver="sequential"``); a row above
the tolerance of :data:`jaxrnn._bench.run.TOLERANCE` is reported as wrong and not
timed. Timing and memory as in :mod:`jaxrnn._bench.run`: compiled separately, one
warm-up call, the median of ``repeats`` calls on two rotating inputs, each ended by
``block_until_ready``; XLA's buffers of the compiled fwd+bwd program.

Each row's ``speedup_vs_gru`` is the sequential GRU's fwd+bwd time over the row's
at the same B, T and H: above 1, the row is faster than the GRU.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._app.cells import CELLS
from jaxrnn._bench import run as bench
from jaxrnn._bench.run import Shape

DEFAULT_CELLS = ("mingru", "minlstm", "lru", "gru", "lstm")
SOLVERS = ("parallel", "sequential")
# The row every other row is compared with: jaxrnn's GRU, step by step.
BASELINE = ("gru", "sequential")
# Sequence length of the correctness check: long enough for the scan's tree to have
# many levels, short enough for the plain scan's jax.grad to cost little.
CHECK_STEPS = 256
REFERENCE = "jax.grad of the cell's sequential scan (grad='autodiff', solver='sequential')"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run of the parallel suite measures."""

    cells: tuple  # names in jaxrnn._app.cells.CELLS
    solvers: tuple  # of a linear-recurrence cell; any other cell runs sequentially
    lengths: tuple  # sequence lengths T
    batches: tuple  # batch sizes B
    hidden: int  # H, also the input size
    repeats: int
    precision: str  # as jaxrnn bench --precision
    backend: str
    check_steps: int = CHECK_STEPS


def default_plan(backend: str, *, quick: bool) -> dict:
    """Lengths 1024 to 65536 at batch 1 and 16, H = 128; tiny with ``quick``."""
    if quick:
        return dict(lengths=(64, 256), batches=(1,), hidden=32, repeats=3)
    return dict(lengths=(1024, 4096, 16384, 65536), batches=(1, 16), hidden=128, repeats=5 if backend == "cpu" else 10)


def parse_sizes(text: str, name: str) -> tuple:
    """``"1024,4096"`` -> ``(1024, 4096)``: positive integers, with an error naming the option ``name``."""
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"{name}: expected positive integers separated by commas, e.g. 1024,4096, got {text!r}")
    return sizes


def parse_solvers(text: str) -> tuple:
    """``"parallel,sequential"`` -> ``("parallel", "sequential")``."""
    solvers = tuple(t.strip() for t in text.split(","))
    if not solvers or any(s not in SOLVERS for s in solvers):
        raise ValueError(f"--solvers: expected a comma-separated list of {', '.join(SOLVERS)}, got {text!r}")
    return solvers


def solvers_of(cell, solvers: tuple) -> tuple:
    """The solvers a row of ``cell`` runs: ``solvers`` for a linear-recurrence cell, else the sequential one."""
    return solvers if getattr(cell, "recurrence", None) is not None else ("sequential",)


class _Row(NamedTuple):
    """One row kind: its weights and jitted fwd+bwd, and its reference's (each traced once per shape)."""

    params: Any  # float32, as jaxrnn bench's peers suite makes them (the same for every B and T)
    timed: Callable  # the row's solver, grad="bptt"
    reference: Callable  # the sequential scan, grad="autodiff"


def row_kind(cell_name: str, solver: str, hidden: int) -> _Row:
    """The ``cell_name`` cell of ``hidden`` units with ``solver``: params, fwd+bwd and its reference."""
    cell = CELLS[cell_name](hidden)
    params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
    timed = bench.loss_and_grad(cell, solver=solver)
    return _Row(params, timed, bench.loss_and_grad(cell, grad="autodiff", solver="sequential"))


def _cast(precision: str, tree):
    """``tree`` as timed: bfloat16 at ``--precision bf16`` (the reference gets the same numbers in float32)."""
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), tree) if precision == "bf16" else tree


def check(kind: _Row, xs, precision: str) -> float:
    """Relative error of a row's loss and gradients against its reference's, on the inputs ``xs``."""
    params, xs = _cast(precision, (kind.params, xs))
    loss, grads = kind.timed(params, xs)
    got = bench.canonical(loss, *grads)
    as_f32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), (params, xs))
    loss, grads = kind.reference(*as_f32)
    return bench.relative_error(got, bench.canonical(loss, *grads))


def _measure_row(plan: Plan, kind: _Row, cell_name: str, solver: str, shape: Shape, inputs, errors: dict) -> dict:
    row = {
        "cell": cell_name,
        "solver": solver,
        "impl": f"{cell_name} ({solver})",
        "batch": shape.batch,
        "steps": shape.steps,
        "hidden": shape.hidden,
        "precision": plan.precision,
    }
    check_shape = shape._replace(steps=min(shape.steps, plan.check_steps))
    key = (cell_name, solver, check_shape)
    try:
        if key not in errors:
            errors[key] = check(kind, bench.inputs(check_shape)[0], plan.precision)
        if errors[key] > bench.TOLERANCE[plan.precision]:
            return {**row, "status": "wrong", "rel_error": errors[key], "check_steps": check_shape.steps}
        params, inputs = _cast(plan.precision, (kind.params, inputs))
        # At T = check_steps the check has compiled this program already.
        compile_ms, (loss, _), fwdbwd, peak = bench.measure(kind.timed, params, inputs, plan.repeats)
    except Exception as e:  # a row that cannot run here (out of memory, a dtype) is reported, not fatal
        return {**row, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]}
    finite = math.isfinite(float(loss))
    return {
        **row,
        "status": "ok" if finite else "wrong",
        "rel_error": errors[key],
        "check_steps": check_shape.steps,
        **({} if finite else {"reason": f"loss {float(loss)} at T={shape.steps}"}),
        "fwdbwd": fwdbwd,
        "compile_ms": compile_ms,
        "peak_bytes": peak,
        "memory_method": "XLA buffer assignment: arguments + outputs + temporaries",
        "tokens_per_s": shape.batch * shape.steps / (fwdbwd["median_ms"] / 1e3),
    }


def _add_speedups(rows: list) -> None:
    """``speedup_vs_gru`` on every timed row: the sequential GRU's time at its B, T, H over its own."""
    baseline = {
        (r["batch"], r["steps"], r["hidden"]): r["fwdbwd"]["median_ms"]
        for r in rows
        if (r["cell"], r["solver"]) == BASELINE and r["status"] == "ok"
    }
    for r in rows:
        base = baseline.get((r["batch"], r["steps"], r["hidden"]))
        if r["status"] == "ok" and base is not None:
            r["speedup_vs_gru"] = base / r["fwdbwd"]["median_ms"]


def run(plan: Plan, *, progress: Callable[[str], None] | None = None) -> dict:
    """Check, then measure, every (batch, length, cell, solver) of ``plan``; the result dict of ``parallel.json``."""
    kinds = {
        (c, s): row_kind(c, s, plan.hidden) for c in plan.cells for s in solvers_of(CELLS[c](plan.hidden), plan.solvers)
    }
    rows: list = []
    errors: dict = {}
    precision_ctx = jax.default_matmul_precision("highest" if plan.precision == "highest" else None)
    with jax.default_device(jax.devices(plan.backend)[0]), precision_ctx:
        for batch in plan.batches:
            for steps in plan.lengths:
                shape = Shape(batch, steps, plan.hidden)
                inputs = bench.inputs(shape)  # the same for every row of this B and T
                for (cell_name, solver), kind in kinds.items():
                    if progress:
                        progress(f"{cell_name} ({solver}) {shape}")
                    rows.append(_measure_row(plan, kind, cell_name, solver, shape, inputs, errors))
                del inputs  # before the next shape's are made
    _add_speedups(rows)
    return {
        **bench.environment(plan.backend),
        "suite": "parallel",
        "precision": bench.PRECISIONS[plan.precision],
        "loss": "sum(h**2) over all outputs; fwd+bwd = loss and gradient of all weights and inputs",
        "input_size": "equal to hidden size",
        "grad": "bptt (jaxrnn.rnn's default; for solver='parallel' the hand-written reverse scan)",
        "repeats": plan.repeats,
        "tolerance": bench.TOLERANCE[plan.precision],
        "reference": REFERENCE,
        "check_steps": plan.check_steps,
        "baseline": "{} ({})".format(*BASELINE),
        "lengths": list(plan.lengths),
        "batches": list(plan.batches),
        "hidden": plan.hidden,
        "rows": rows,
    }


def _entry(row: dict | None, text: Callable[[dict], str]) -> str:
    if row is None:
        return "—"
    if row["status"] == "failed":
        return "failed"
    if row["status"] == "wrong":
        return f"**wrong** (err {row['rel_error']:.1e})"
    return text(row)


def _time_and_memory(row: dict) -> str:
    memory = f", {row['peak_bytes'] / 2**20:.3g} MiB" if row.get("peak_bytes") else ""
    return f"{row['fwdbwd']['median_ms']:.1f} ms{memory}"


def _speedup(row: dict) -> str:
    return f"{row['speedup_vs_gru']:.2f}×" if "speedup_vs_gru" in row else "—"


def markdown(result: dict) -> str:
    """Two tables by B and T: fwd+bwd time and memory per row, and the GRU's time over each row's."""
    rows = result["rows"]
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    keys = list(dict.fromkeys((r["batch"], r["steps"]) for r in rows))
    by_key = {(r["batch"], r["steps"], r["impl"]): r for r in rows}
    checked = [r["rel_error"] for r in rows if "rel_error" in r]
    lines = [
        f"Device: {result['device']['kind']} ({result['device']['platform']}), {result['date']}; "
        f"jax {result['versions']['jax']}. Precision: {result['precision']}. H = {result['hidden']}, input size = H. "
        f"fwd+bwd ms (median of {result['repeats']} runs) and XLA's buffers of the fwd+bwd program. "
        f"Every row was first checked against {result['reference']} at min(T, {result['check_steps']}) steps"
        + (f": largest relative error {max(checked):.1e}." if checked else "."),
        "",
    ]

    def table(names, text):
        out = ["| B × T | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for b, t in keys:
            out.append(f"| {b} × {t} | " + " | ".join(_entry(by_key.get((b, t, i)), text) for i in names) + " |")
        return out

    lines += table(impls, _time_and_memory)
    baseline = "{} ({})".format(*BASELINE)
    others = [i for i in impls if i != baseline]
    if baseline in impls and others:
        lines += ["", f"{baseline} fwd+bwd time over each row's (above 1: faster than the GRU):", ""]
        lines += table(others, _speedup)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{r['impl']} {r['batch']}×{r['steps']}: {r['reason']}" for r in failed)]
    return "\n".join(lines) + "\n"


def plot(result: dict, out: pathlib.Path) -> list:
    """``parallel_B{B}.png`` per batch size: fwd+bwd time and memory against T, one line per row kind."""
    figures = {}
    for batch in dict.fromkeys(r["batch"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["batch"] == batch and r["status"] == "ok"]
        if rows:
            figures[f"parallel_B{batch}.png"] = (f"batch {batch}, hidden {result['hidden']}", rows)
    return bench.plot_against_length(
        result, out, figures, value=lambda r: r["fwdbwd"]["median_ms"], ylabel="fwd+bwd ms"
    )


def main(args) -> int:
    """``jaxrnn bench --suite parallel`` with parsed ``args`` (``args.backend`` checked); returns the exit code."""
    backend = args.backend
    defaults = default_plan(backend, quick=args.quick)
    plan = Plan(
        cells=tuple(args.cells),
        solvers=args.solvers or ("parallel",),
        lengths=args.lengths or defaults["lengths"],
        batches=args.batches or defaults["batches"],
        hidden=args.hidden or defaults["hidden"],
        repeats=args.repeats or defaults["repeats"],
        precision=args.precision,
        backend=backend,
    )
    out = args.out or pathlib.Path(f"bench-parallel-{backend}-{datetime.date.today().isoformat()}")

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    result = run(plan, progress=progress)
    files = bench.write(result, out, name="parallel", render=markdown, draw=plot)
    print(markdown(result))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
