"""``jaxrnn bench --suite parallel``: recurrences solved in parallel over time against the sequential scan.

For every batch size B and sequence length T of the plan, at one hidden size H
(input size = H), the value and gradient of ``sum(h**2)`` over all outputs with
respect to all weights and the inputs, through :func:`jaxrnn.rnn` with its
default ``grad="bptt"``:

- a cell that declares a linear recurrence (``mingru``, ``minlstm``, ``lru``) with
  ``solver="parallel"`` (an associative scan over time and its hand-written
  reverse), and with ``--solvers parallel,sequential`` also step by step;
- any other cell (by default jaxrnn's ``gru`` and ``lstm``: the baselines; also
  ``gru_diagonal``, ``lstm_diagonal``, ...) with ``solver="sequential"``, the time
  loop every RNN needs, and with ``--solvers deer,quasi-deer,elk,quasi-elk`` (any
  of them) one row per Newton solver in time (:mod:`jaxrnn._core.newton`, at its
  defaults). A Newton row also records, from one more forward call
  ``jr.rnn(..., return_info=True)`` on the timed inputs, the iterations it took,
  its final residual and whether it converged.

``SOLVER@BxT+T`` in ``--solvers`` runs a solver at those shapes only: ``BxT``
that batch size and length, ``T`` that length at every batch size (e.g.
``elk@1x1024``: the damped solvers' Kalman smoother runs in order along time and
costs :math:`O(N^3)` a step; ``sequential@...`` limits the baseline rows too). A
solver with full Jacobians (``deer``, ``elk``) keeps ``T*B*N^2`` floats of them
(``N`` the state size: H, or 2H for an LSTM's ``(h, c)``); a row whose Jacobians
would exceed :data:`JACOBIAN_CAP_BYTES` is not run but reported as skipped, with
the reason.

Before a row is timed, its loss and gradients at ``min(T, check_steps)`` steps
(same batch, same weights) are compared with ``jax.grad`` of the plain sequential
scan of the same cell (``grad="autodiff"``, ``solver="sequential"``); a row above
the tolerance of :data:`jaxrnn._bench.run.TOLERANCE` is reported as wrong and not
timed. Timing and memory as in :mod:`jaxrnn._bench.run`: compiled separately, one
warm-up call, the median of ``repeats`` calls on two rotating inputs, each ended by
``block_until_ready``; XLA's buffers of the compiled fwd+bwd program.

Each row's ``speedup_vs_gru`` is the sequential GRU's fwd+bwd time over the row's
at the same B, T and H, and its ``speedup_vs_sequential`` the same cell's
sequential time over the row's: above 1, the row is faster. A Newton row that did
not converge at the timed shape gets neither.
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

import jaxrnn as jr
from jaxrnn._app.cells import CELLS
from jaxrnn._bench import run as bench
from jaxrnn._bench.run import Shape
from jaxrnn._core import newton

DEFAULT_CELLS = ("mingru", "minlstm", "lru", "gru", "lstm")
# The Newton solvers by the names jr.rnn takes: "deer", "quasi-deer", "elk", "quasi-elk".
NEWTON = tuple(newton.NEWTON_NAMES)
SOLVERS = ("parallel", "sequential") + NEWTON
# A row of a solver with full Jacobians ([T, B, N, N] floats) above this is skipped: XLA's buffers of
# DEER's fwd+bwd came to 2.7 times its Jacobians (LSTM, 16 x 1024 x 64 on the CPU), so 5-6 GiB here.
JACOBIAN_CAP_BYTES = 2 * 2**30
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
    solvers: tuple  # of Solver; see solvers_of for which of them each cell runs
    lengths: tuple  # sequence lengths T
    batches: tuple  # batch sizes B
    hidden: int  # H, also the input size
    repeats: int
    precision: str  # as jaxrnn bench --precision
    backend: str
    check_steps: int = CHECK_STEPS
    jacobian_cap_bytes: int = JACOBIAN_CAP_BYTES


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


class Solver(NamedTuple):
    """A solver of the plan and the shapes it runs at."""

    name: str  # of SOLVERS
    # (batch, steps) pairs from SOLVER@BxT+T..., batch None for a bare T (every batch); None: every shape
    at: tuple | None = None

    def runs_at(self, shape: Shape) -> bool:
        return self.at is None or any(b in (None, shape.batch) and t == shape.steps for b, t in self.at)

    def __str__(self):
        if self.at is None:
            return self.name
        return self.name + "@" + "+".join(str(t) if b is None else f"{b}x{t}" for b, t in self.at)


def parse_solvers(text: str) -> tuple:
    """``"sequential,quasi-deer,elk@1x1024+4096"`` -> ``Solver``s.

    ``@`` limits a solver to shapes: ``BxT`` one batch size and length, ``T`` a
    length at every batch size of the plan.
    """
    solvers = []
    for item in text.split(","):
        name, limited, shapes = item.strip().partition("@")
        try:
            sizes = [tuple(int(v) for v in s.lower().split("x")) for s in shapes.split("+")] if limited else []
        except ValueError:
            sizes = [()]
        if name not in SOLVERS or any(len(n) not in (1, 2) or min(n) < 1 for n in sizes):
            raise ValueError(
                f"--solvers: expected a comma-separated list of {', '.join(SOLVERS)}, each optionally limited "
                f"to some shapes as SOLVER@BxT+T (BxT: that batch size and length, T: that length at every "
                f"batch size; e.g. elk@1x1024), got {text!r}"
            )
        at = tuple(n if len(n) == 2 else (None, n[0]) for n in sizes) if limited else None
        solvers.append(Solver(name, at))
    return tuple(solvers)


def solvers_of(cell, solvers: tuple) -> tuple:
    """The ``Solver``s of ``solvers`` that rows of ``cell`` run.

    A linear-recurrence cell: its "parallel" and "sequential" ones. Any other
    cell: "sequential" (where the plan limits it, else at every shape: the
    Newton rows' baseline) and the Newton solvers.
    """
    if getattr(cell, "recurrence", None) is not None:
        return tuple(s for s in solvers if s.name in ("parallel", "sequential"))
    sequential = next((s for s in solvers if s.name == "sequential" and s.at is not None), Solver("sequential"))
    return (sequential,) + tuple(s for s in solvers if s.name in NEWTON)


def jacobian_bytes(solver: str, state_size: int, shape: Shape) -> int:
    """The bytes of a Newton solver's full Jacobians, ``T*B*N^2`` float32 (0 for a solver without them)."""
    if solver not in NEWTON or newton.NEWTON_NAMES[solver]().jacobian != "full":
        return 0
    return shape.steps * shape.batch * state_size**2 * jnp.dtype(jnp.float32).itemsize


class _Row(NamedTuple):
    """One row kind: its weights and jitted fwd+bwd, and its reference's (each traced once per shape)."""

    params: Any  # float32, as jaxrnn bench's peers suite makes them (the same for every B and T)
    timed: Callable  # the row's solver, grad="bptt"
    reference: Callable  # the sequential scan, grad="autodiff": one function for all the kinds of a cell
    info: Callable | None  # a Newton solver's forward: (iterations, residual, converged); None for any other
    state_size: int  # N: the state's floats per example


def reference(cell_name: str, hidden: int) -> Callable:
    """The fwd+bwd every row of the ``cell_name`` cell of ``hidden`` units is checked against."""
    return bench.loss_and_grad(CELLS[cell_name](hidden), grad="autodiff", solver="sequential")


def row_kind(cell_name: str, solver: str, hidden: int, reference: Callable) -> _Row:
    """The ``cell_name`` cell of ``hidden`` units with ``solver``: params, fwd+bwd, solver info, and ``reference``."""
    cell = CELLS[cell_name](hidden)
    params = cell.init(jax.random.PRNGKey(0), hidden, jnp.float32)
    timed = bench.loss_and_grad(cell, solver=solver)
    info = None
    if solver in NEWTON:

        def forward_info(params, xs):
            solved = jr.rnn(cell, params, xs, solver=solver, return_info=True)[2]
            return solved.iterations, solved.residual, solved.converged  # not .states: XLA need not keep them

        info = jax.jit(forward_info)
    state_size = sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(cell.initial_state((), dtype=jnp.float32)))
    return _Row(params, timed, reference, info, state_size)


def _cast(precision: str, tree):
    """``tree`` as timed: bfloat16 at ``--precision bf16`` (the reference gets the same numbers in float32)."""
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), tree) if precision == "bf16" else tree


def check(kind: _Row, xs, precision: str, answers: dict, key) -> float:
    """Relative error of a row's loss and gradients against its reference's on ``xs``; the reference's answer
    is kept in ``answers[key]`` for the cell's other rows."""
    params, xs = _cast(precision, (kind.params, xs))
    loss, grads = kind.timed(params, xs)
    got = bench.canonical(loss, *grads)
    if key not in answers:
        loss, grads = kind.reference(*jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), (params, xs)))
        answers[key] = bench.canonical(loss, *grads)
    return bench.relative_error(got, answers[key])


def _measure_row(
    plan: Plan, kind: _Row, cell_name: str, solver: str, shape: Shape, inputs, errors: dict, answers: dict
) -> dict:
    row = {
        "cell": cell_name,
        "solver": solver,
        "impl": f"{cell_name} ({solver})",
        "batch": shape.batch,
        "steps": shape.steps,
        "hidden": shape.hidden,
        "precision": plan.precision,
    }
    jacobians = jacobian_bytes(solver, kind.state_size, shape)
    if jacobians > plan.jacobian_cap_bytes:
        return {
            **row,
            "status": "skipped",
            "reason": f"its full Jacobians, T*B*N^2 = {shape.steps}*{shape.batch}*{kind.state_size}^2 float32 = "
            f"{jacobians / 2**30:.3g} GiB, exceed the cap of {plan.jacobian_cap_bytes / 2**30:.3g} GiB",
            "jacobian_bytes": jacobians,
        }
    check_shape = shape._replace(steps=min(shape.steps, plan.check_steps))
    key = (cell_name, solver, check_shape)
    try:
        if key not in errors:
            xs = bench.inputs(check_shape)[0]
            errors[key] = check(kind, xs, plan.precision, answers, (cell_name, check_shape))
        if errors[key] > bench.TOLERANCE[plan.precision]:
            return {**row, "status": "wrong", "rel_error": errors[key], "check_steps": check_shape.steps}
        params, inputs = _cast(plan.precision, (kind.params, inputs))
        # At T = check_steps the check has compiled this program already.
        compile_ms, (loss, _), fwdbwd, peak = bench.measure(kind.timed, params, inputs, plan.repeats)
        solved = {}
        if kind.info is not None:
            iterations, residual, converged = kind.info(params, inputs[0])
            solved = {"iterations": int(iterations), "residual": float(residual), "converged": bool(converged)}
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
        **solved,
    }


def _add_speedups(rows: list) -> None:
    """On every timed row that converged: ``speedup_vs_gru``, the sequential GRU's time at its B, T, H over
    its own, and ``speedup_vs_sequential``, its cell's sequential time there over its own."""
    sequential = {
        (r["cell"], r["batch"], r["steps"], r["hidden"]): r["fwdbwd"]["median_ms"]
        for r in rows
        if r["solver"] == "sequential" and r["status"] == "ok"
    }
    for r in rows:
        if r["status"] != "ok" or not r.get("converged", True):
            continue
        at = (r["batch"], r["steps"], r["hidden"])
        for field, base in (
            ("speedup_vs_gru", sequential.get((BASELINE[0], *at))),
            ("speedup_vs_sequential", sequential.get((r["cell"], *at))),
        ):
            if base is not None:
                r[field] = base / r["fwdbwd"]["median_ms"]


def run(plan: Plan, *, progress: Callable[[str], None] | None = None) -> dict:
    """Check, then measure, every (batch, length, cell, solver) of ``plan``; the result dict of ``parallel.json``."""
    references = {c: reference(c, plan.hidden) for c in plan.cells}
    kinds = {
        (c, s): row_kind(c, s.name, plan.hidden, references[c])
        for c in plan.cells
        for s in solvers_of(CELLS[c](plan.hidden), plan.solvers)
    }
    rows: list = []
    errors: dict = {}
    answers: dict = {}  # the reference's loss and gradients by cell and check shape
    precision_ctx = jax.default_matmul_precision("highest" if plan.precision == "highest" else None)
    with jax.default_device(jax.devices(plan.backend)[0]), precision_ctx:
        for batch in plan.batches:
            for steps in plan.lengths:
                shape = Shape(batch, steps, plan.hidden)
                inputs = bench.inputs(shape)  # the same for every row of this B and T
                for (cell_name, solver), kind in kinds.items():
                    if not solver.runs_at(shape):
                        continue
                    if progress:
                        progress(f"{cell_name} ({solver.name}) {shape}")
                    rows.append(_measure_row(plan, kind, cell_name, solver.name, shape, inputs, errors, answers))
                del inputs  # before the next shape's are made
    _add_speedups(rows)
    return {
        **bench.environment(plan.backend),
        "suite": "parallel",
        "precision": bench.PRECISIONS[plan.precision],
        "loss": "sum(h**2) over all outputs; fwd+bwd = loss and gradient of all weights and inputs",
        "input_size": "equal to hidden size",
        "grad": "bptt (jaxrnn.rnn's default; for solver='parallel' the hand-written reverse scan, for a Newton "
        "solver the BPTT equations at its converged trajectory)",
        "solvers": [str(s) for s in plan.solvers],
        "newton": "a Newton solver at its defaults; iterations, residual and converged from one more forward "
        "call jr.rnn(..., return_info=True) on the timed inputs",
        "jacobian_cap_bytes": plan.jacobian_cap_bytes,
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
    if row["status"] in ("failed", "skipped"):
        return row["status"]
    if row["status"] == "wrong":
        return f"**wrong** (err {row['rel_error']:.1e})"
    return text(row)


def _time_and_memory(row: dict) -> str:
    memory = f", {row['peak_bytes'] / 2**20:.3g} MiB" if row.get("peak_bytes") else ""
    solved = ""
    if "iterations" in row:
        solved = f", {row['iterations']} it." + ("" if row["converged"] else " **not converged**")
    return f"{row['fwdbwd']['median_ms']:.1f} ms{memory}{solved}"


def _speedup(field: str) -> Callable[[dict], str]:
    return lambda row: f"{row[field]:.2f}×" if field in row else "—"


def markdown(result: dict) -> str:
    """Tables by B and T: fwd+bwd time, memory (and a Newton solver's iterations) per row; the GRU's time over
    each row's; each cell's sequential time over its other rows'."""
    rows = result["rows"]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    # By cell, then solver: a solver limited to some shapes (SOLVER@BxT) would otherwise come last.
    order = {r["impl"]: (cells.index(r["cell"]), SOLVERS.index(r["solver"])) for r in rows}
    impls = sorted(order, key=order.__getitem__)
    by_impl = {r["impl"]: r for r in rows}
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
        lines += table(others, _speedup("speedup_vs_gru"))
    with_sequential = {r["cell"] for r in rows if r["solver"] == "sequential"}
    against = [i for i in impls if by_impl[i]["cell"] in with_sequential and by_impl[i]["solver"] != "sequential"]
    if against:
        lines += ["", "The same cell's sequential fwd+bwd time over each row's (above 1: faster than the scan):", ""]
        lines += table(against, _speedup("speedup_vs_sequential"))
    for status in ("failed", "skipped"):
        these = [r for r in rows if r["status"] == status]
        if these:
            text = "; ".join(f"{r['impl']} {r['batch']}×{r['steps']}: {r['reason']}" for r in these)
            lines += ["", f"{status.capitalize()}: {text}"]
    return "\n".join(lines) + "\n"


def plot(result: dict, out: pathlib.Path) -> list:
    """Fwd+bwd time and memory against T, one line per row kind, per batch size: ``parallel_B{B}.png`` for the
    rows without a Newton solver, and ``newton_B{B}_{cell}.png`` for each cell with Newton rows (and its
    sequential row), so that a figure keeps to a few lines."""
    figures = {}
    hidden = result["hidden"]
    for batch in dict.fromkeys(r["batch"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["batch"] == batch and r["status"] == "ok"]
        plain = [r for r in rows if r["solver"] not in NEWTON]
        if plain:
            figures[f"parallel_B{batch}.png"] = (f"batch {batch}, hidden {hidden}", plain)
        for cell in dict.fromkeys(r["cell"] for r in rows if r["solver"] in NEWTON):
            figures[f"newton_B{batch}_{cell}.png"] = (
                f"{cell}, batch {batch}, hidden {hidden}",
                [r for r in rows if r["cell"] == cell],
            )
    return bench.plot_against_length(
        result, out, figures, value=lambda r: r["fwdbwd"]["median_ms"], ylabel="fwd+bwd ms"
    )


def main(args) -> int:
    """``jaxrnn bench --suite parallel`` with parsed ``args`` (``args.backend`` checked); returns the exit code."""
    backend = args.backend
    defaults = default_plan(backend, quick=args.quick)
    plan = Plan(
        cells=tuple(args.cells),
        solvers=args.solvers or parse_solvers("parallel"),
        lengths=args.lengths or defaults["lengths"],
        batches=args.batches or defaults["batches"],
        hidden=args.hidden or defaults["hidden"],
        repeats=args.repeats or defaults["repeats"],
        precision=args.precision,
        backend=backend,
        jacobian_cap_bytes=JACOBIAN_CAP_BYTES,
    )
    for solver in plan.solvers:
        outside = [
            str(t) if b is None else f"{b}x{t}"
            for b, t in solver.at or ()
            if t not in plan.lengths or b not in (None, *plan.batches)
        ]
        if outside:
            print(
                f"jaxrnn bench: error: --solvers {solver}: {', '.join(outside)} not among the shapes of "
                f"--batches {','.join(map(str, plan.batches))} and --lengths {','.join(map(str, plan.lengths))}",
                file=sys.stderr,
            )
            return 2
    out = args.out or pathlib.Path(f"bench-parallel-{backend}-{datetime.date.today().isoformat()}")

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    result = run(plan, progress=progress)
    files = bench.write(result, out, name="parallel", render=markdown, draw=plot)
    print(markdown(result))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
