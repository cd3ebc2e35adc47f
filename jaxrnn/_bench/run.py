"""``jaxrnn bench``: throughput and memory of recurrent layers, jaxrnn against its peers.

One run times every implementation on the same weights and inputs:

- ``jaxrnn-bptt`` (:func:`jaxrnn.rnn` with the hand-written BPTT on the XLA
  backend), ``jaxrnn-pallas`` (the same with the fused Pallas kernels; GPU and TPU
  only; "highest" precision at ``--precision highest``, else "fast"), ``jaxrnn-cpu``
  (the same with the C++ CPU kernel; CPU only, where it builds) and
  ``jaxrnn-autodiff`` (``jax.grad`` through the plain scan);
- flax ``nn.RNN`` with its cells and, on GPU, cuDNN through
  ``jax.experimental.rnn`` (:mod:`jaxrnn._bench.peers`);
- PyTorch ``nn.LSTM/GRU/RNN`` when installed, in a separate process
  (:mod:`jaxrnn._bench.torch_peer`).

The cells are named as everywhere in the application (:data:`jaxrnn._app.cells.CELLS`);
``layer_norm_lstm`` has no peer, so only jaxrnn's implementations run for it.

Before anything is timed, every implementation's loss and gradients (of all
weights and inputs, mapped to PyTorch's layout) are compared with
``jaxrnn-autodiff``; an implementation whose relative error exceeds the
tolerance is reported as wrong and left out of the ratios.

Timing: compile time separately; one warm-up call; then ``repeats`` calls with
rotating inputs, each ended by ``block_until_ready``; median, min and max.
Memory: JAX implementations report the buffers of the compiled fwd+bwd program
from XLA's buffer assignment (arguments + outputs + temporaries of
``memory_analysis()``), the memory the program needs on the device; PyTorch reports the CUDA allocator's peak on GPU
and the growth of the worker process's peak RSS on CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn._app import options, plotting
from jaxrnn._app import progress as bars  # run() takes a progress callback
from jaxrnn._app.cells import CELLS
from jaxrnn._bench import peers, torch_peer, torch_worker
from jaxrnn._kernels import cpu_build
from jaxrnn._kernels import registry as _kernels

# The cells measured by default: those with peers to compare against.
DEFAULT_CELLS = ("lstm", "gru", "elman_tanh")
JAXRNN_IMPLS = ("jaxrnn-bptt", "jaxrnn-pallas", "jaxrnn-cpu", "jaxrnn-autodiff")
PALLAS = "jaxrnn-pallas"
CPU_KERNEL = "jaxrnn-cpu"
ALL_IMPLS = JAXRNN_IMPLS + (
    "flax-LSTMCell",
    "flax-OptimizedLSTMCell",
    "flax-GRUCell",
    "flax-SimpleCell",
    "jax-cudnn",
    "torch",
)
REFERENCE = "jaxrnn-autodiff"
OURS = "jaxrnn-bptt"
# Relative error (of the loss, every weight gradient and the input gradient) above
# which an implementation is reported as wrong: float32 rounding over thousands of
# steps reaches ~1e-4; TF32 matmuls ~1e-3.
# bfloat16 keeps 8 mantissa bits; jaxrnn carries in float32 but flax and PyTorch in
# bfloat16, so their errors grow with T.
TOLERANCE = {"highest": 2e-3, "default": 2e-2, "bf16": 1e-1}
PRECISIONS = {
    "highest": "float32 matmuls at full precision ('highest'; TF32 off for torch)",
    "default": "float32 at the backend default (TF32 matmuls on NVIDIA GPUs, full float32 on CPU)",
    "bf16": "bfloat16 weights and inputs (jaxrnn: float32 carry and accumulation; flax and torch: "
    "their own bfloat16 handling); the reference runs in float32 on the same rounded values",
}


class Shape(NamedTuple):
    batch: int
    steps: int
    hidden: int

    def __str__(self):
        return f"{self.batch}x{self.steps}x{self.hidden}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures."""

    cells: tuple
    shapes: tuple  # table rows
    sweep: tuple  # sequence-length sweep rows (same batch and hidden, growing T)
    impls: tuple | None  # None: every implementation available on the backend
    repeats: int
    precision: str  # "default" (backend default; TF32 on NVIDIA GPUs), "highest" or "bf16"
    backend: str


def default_plan(backend: str, *, quick: bool) -> dict:
    """Shapes for a backend: long sequences on GPU/TPU, smaller on CPU, tiny with ``quick``."""
    if quick:
        return dict(shapes=(Shape(4, 128, 32),), sweep=tuple(Shape(4, t, 32) for t in (64, 128, 256)), repeats=3)
    if backend == "cpu":
        return dict(
            shapes=(Shape(16, 1024, 256), Shape(1, 4096, 128)),
            sweep=tuple(Shape(16, t, 128) for t in (256, 512, 1024, 2048, 4096)),
            repeats=5,
        )
    return dict(
        shapes=(Shape(16, 4096, 256), Shape(64, 2048, 512), Shape(1, 8192, 128)),
        sweep=tuple(Shape(16, t, 256) for t in (256, 1024, 4096, 16384)),
        repeats=10,
    )


def parse_shapes(text: str, name: str = "--shapes") -> tuple:
    """``"16x1024x256,1x4096x128"`` -> Shapes, with an error naming the bad item."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or min(numbers) < 1:
            raise ValueError(
                f"{name}: expected BATCHxSTEPSxHIDDEN with positive integers, e.g. 16x1024x256, got {item!r}"
            )
        shapes.append(Shape(*numbers))
    return tuple(shapes)


def parse_sweep(text: str) -> tuple:
    """``"16x128:256,512,1024"`` -> Shapes of batch 16, hidden 128 and those lengths."""
    head, sep, tail = text.partition(":")
    bh = head.lower().split("x")
    try:
        batch, hidden = (int(v) for v in bh)
        steps = [int(v) for v in tail.split(",")]
    except ValueError:
        steps = []
    if not sep or not steps or len(bh) != 2 or min(steps + [batch, hidden]) < 1:
        raise ValueError(f"--sweep: expected BATCHxHIDDEN:T1,T2,... e.g. 16x128:256,512,1024, got {text!r}")
    return tuple(Shape(batch, t, hidden) for t in steps)


class Impl(NamedTuple):
    """An implementation prepared for one problem (same interface as :class:`jaxrnn._bench.peers.Peer`)."""

    name: str
    params: Any
    forward: Callable
    loss_and_grad: Callable
    to_canonical: Callable


def loss_and_grad(cell, *, argnums: int | tuple = (0, 1), **options) -> Callable:
    """Jitted ``(params, xs) -> (sum(ys**2), gradients)`` through ``jr.rnn(cell, ..., **options)``.

    The loss every study times; ``argnums`` 0 for the parameters' gradient alone,
    ``(0, 1)`` for the parameters' and the inputs'.
    """

    def loss(params, xs):
        ys = jr.rnn(cell, params, xs, **options)[0]
        return jnp.sum(ys * ys)

    return jax.jit(jax.value_and_grad(loss, argnums=argnums))


def canonical(loss, d_params, d_xs=None) -> dict:
    """A loss and its jaxrnn gradients as float64 arrays by name (``"loss"``, the params' fields, ``"xs"``)."""
    out = {k: np.asarray(v, np.float64) for k, v in d_params._asdict().items()}
    if d_xs is not None:
        out["xs"] = np.asarray(d_xs, np.float64)
    out["loss"] = np.asarray(loss, np.float64)
    return out


def _jaxrnn_impl(name: str, cell, params, precision: str = "default") -> Impl:
    grad = "autodiff" if name == REFERENCE else "bptt"
    backend: str | jr.Pallas | jr.CPUKernel = "xla"
    if name == PALLAS:
        backend = jr.Pallas(precision="highest" if precision == "highest" else "fast")
    if name == CPU_KERNEL:
        backend = jr.CPUKernel()

    def forward(p, xs):
        return jr.rnn(cell, p, xs, grad=grad, backend=backend)[0]

    return Impl(name, params, jax.jit(forward), loss_and_grad(cell, grad=grad, backend=backend), lambda g: g._asdict())


def _canonical(impl: Impl | peers.Peer, loss, grads) -> dict:
    native, d_xs = grads
    out = {k: np.asarray(v, np.float64) for k, v in impl.to_canonical(native).items() if k != "b_hh"}
    out["xs"] = np.asarray(d_xs, np.float64)
    out["loss"] = np.asarray(loss, np.float64)
    return out


def relative_error(got: dict, want: dict) -> float:
    """Largest error over the loss and every gradient, each relative to its largest entry."""
    worst = 0.0
    for key, w in want.items():
        if key not in got:
            continue
        scale = max(float(np.abs(w).max(initial=0.0)), 1e-30)
        worst = max(worst, float(np.abs(np.asarray(got[key], np.float64) - w).max(initial=0.0)) / scale)
    return worst


def _stats(times_ms: list) -> dict:
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms), "max_ms": max(times_ms)}


def median_ms(fn, *args, repeats: int) -> float:
    """The median wall time in ms of ``fn(*args)`` over ``repeats`` calls, after one warm-up call (the compile)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(fn, params, inputs, repeats: int):
    """Compile time, first-call result, and timing stats of a jitted ``fn``."""
    start = time.perf_counter()
    compiled = fn.lower(params, inputs[0]).compile()
    compile_ms = (time.perf_counter() - start) * 1e3
    first = jax.block_until_ready(compiled(params, inputs[0]))
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, inputs[(i + 1) % len(inputs)]))
        times.append((time.perf_counter() - start) * 1e3)
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        # peak_memory_in_bytes leaves out temporaries on CPU, so add the parts up.
        peak = int(
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    return compile_ms, first, _stats(times), peak


def problem(cell_name: str, shape: Shape, seed: int = 0):
    """The cell ``cell_name`` of ``shape.hidden`` units, its float32 params (input size = hidden size) and
    :func:`inputs`."""
    cell = CELLS[cell_name](shape.hidden)
    return cell, cell.init(jax.random.PRNGKey(seed), shape.hidden, jnp.float32), inputs(shape, seed)


def inputs(shape: Shape, seed: int = 0) -> list:
    """Two float32 ``[B, T, H]`` inputs to time in turn (the input size is the hidden size)."""
    return [
        jax.random.normal(jax.random.PRNGKey(seed + 1 + i), (shape.batch, shape.steps, shape.hidden), jnp.float32)
        for i in range(2)
    ]


def _impl_names(plan: Plan, cell_name: str) -> list:
    """The implementations to run, the correctness reference first."""
    device_platform = jax.devices(plan.backend)[0].platform
    pallas = [PALLAS] if _kernels.pallas_target(device_platform) else []
    cpu = [CPU_KERNEL] if device_platform == "cpu" and cpu_build.problem() is None else []
    torch = ["torch"] if cell_name in torch_worker.CELLS else []
    names = [REFERENCE, OURS] + pallas + cpu + peers.available_peers(cell_name, plan.backend) + torch
    if plan.impls is not None:
        names = [n for n in names if n in plan.impls or n == REFERENCE]
    return names


def _case_id(cell_name: str, shape: Shape) -> str:
    return f"{cell_name}-{shape}"


def run(plan: Plan, *, progress: Callable | None = None) -> dict:
    """Measure every (cell, shape, implementation) of ``plan``; returns the result dict."""
    device = jax.devices(plan.backend)[0]
    shapes = list(dict.fromkeys(plan.shapes + plan.sweep))
    cases = [(c, s) for c in plan.cells for s in shapes]
    rows, torch_cases, torch_arrays, references = [], [], {}, {}
    tol = TOLERANCE[plan.precision]
    precision_ctx = jax.default_matmul_precision("highest" if plan.precision == "highest" else None)
    with jax.default_device(device), precision_ctx:
        for cell_name, shape in cases:
            cell, params, inputs = problem(cell_name, shape)
            if plan.precision == "bf16":
                # Every implementation gets the same bfloat16 numbers; the reference gets them in float32.
                params, inputs = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), (params, inputs))
            names = _impl_names(plan, cell_name)
            for name in names:
                if name == "torch":
                    continue
                if progress:
                    progress(f"{cell_name} {shape} {name}")
                impl_params, impl_inputs = params, inputs
                if name == REFERENCE:
                    impl_params, impl_inputs = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), (params, inputs))
                try:
                    impl = (
                        _jaxrnn_impl(name, cell, impl_params, plan.precision)
                        if name in JAXRNN_IMPLS
                        else peers.make_peer(name, cell_name, impl_params)
                    )
                except (TypeError, ValueError) as e:  # e.g. cuDNN's op takes float32 only
                    rows.append(
                        {
                            "cell": cell_name,
                            "batch": shape.batch,
                            "steps": shape.steps,
                            "hidden": shape.hidden,
                            "impl": name,
                            "precision": plan.precision,
                            "status": "failed",
                            "reason": f"{type(e).__name__}: {e}"[:500],
                        }
                    )
                    continue
                row = {
                    "cell": cell_name,
                    "batch": shape.batch,
                    "steps": shape.steps,
                    "hidden": shape.hidden,
                    "impl": name,
                    "precision": plan.precision,
                }
                try:
                    compile_ms, (loss, grads), fwdbwd, peak = measure(
                        impl.loss_and_grad, impl.params, impl_inputs, plan.repeats
                    )
                    fwd_compile_ms, _, fwd, _ = measure(impl.forward, impl.params, impl_inputs, plan.repeats)
                except Exception as e:  # a peer that cannot run here is reported, not fatal
                    rows.append({**row, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]})
                    continue
                canonical = _canonical(impl, loss, grads)
                if name == REFERENCE:
                    references[_case_id(cell_name, shape)] = canonical
                error = relative_error(canonical, references[_case_id(cell_name, shape)])
                rows.append(
                    {
                        **row,
                        "status": "ok" if error <= tol else "wrong",
                        "rel_error": error,
                        "fwdbwd": fwdbwd,
                        "fwd": fwd,
                        "compile_ms": compile_ms + fwd_compile_ms,
                        "peak_bytes": peak,
                        "memory_method": "XLA buffer assignment: arguments + outputs + temporaries",
                        "tokens_per_s": shape.batch * shape.steps / (fwdbwd["median_ms"] / 1e3),
                    }
                )
            if "torch" in names:
                cid = _case_id(cell_name, shape)
                torch_cases.append(
                    {
                        "id": cid,
                        "cell": cell_name,
                        "batch": shape.batch,
                        "steps": shape.steps,
                        "hidden": shape.hidden,
                        "input": shape.hidden,
                        "weights": cid,
                    }
                )
                for field, value in params._asdict().items():
                    torch_arrays[f"{cid}/{field}"] = np.asarray(value.astype(jnp.float32))
                for i, xs in enumerate(inputs):
                    torch_arrays[f"{cid}/xs{i}"] = np.asarray(xs.astype(jnp.float32))
    torch_info = None
    if torch_cases:
        if progress:
            progress(f"torch: {len(torch_cases)} cases in a separate process")
        torch_info = _run_torch_rows(plan, torch_cases, torch_arrays, references, rows, tol)
    return {
        **environment(plan.backend),
        "precision": PRECISIONS[plan.precision],
        "loss": "sum(h**2) over all outputs; fwd+bwd = loss and gradient of all weights and inputs",
        "input_size": "equal to hidden size",
        "repeats": plan.repeats,
        "tolerance": tol,
        "reference": REFERENCE,
        "torch": torch_info,
        "shapes": [str(s) for s in plan.shapes],
        "sweep": [str(s) for s in plan.sweep],
        "rows": rows,
    }


# jaxrnn's precision names -> the torch worker's, per device.
_TORCH_PRECISION = {
    ("default", "cuda"): "tf32",
    ("highest", "cuda"): "highest",
    ("bf16", "cuda"): "bf16",
    ("default", "cpu"): "highest",
    ("highest", "cpu"): "highest",
    ("bf16", "cpu"): "bf16",
}


def _torch_memory(memory: dict) -> tuple:
    """Bytes comparable to XLA's (weights and inputs included on CUDA), and how they were measured."""
    if memory.get("method") == "cuda":
        return memory.get("peak_bytes"), "CUDA allocator peak during one fwd+bwd (weights and inputs included)"
    return memory.get("growth_bytes"), f"growth of the worker's peak RSS during one fwd+bwd ({memory.get('method')})"


def _run_torch_rows(plan, cases, arrays, references, rows, tol) -> dict:
    if plan.backend == "tpu":
        return {"available": False, "reason": "PyTorch is not compared on TPU"}
    device = "cuda" if plan.backend == "gpu" else "cpu"
    try:
        result = torch_peer.run_torch(
            cases,
            arrays,
            device=device,
            precision=_TORCH_PRECISION[plan.precision, device],
            repeats=plan.repeats,
            timeout=3600,
        )
    except RuntimeError as e:
        return {"available": False, "reason": str(e)[-1000:]}
    if not result.get("available", True):
        return result
    for case in cases:
        res = result["cases"][case["id"]]
        got = {k: res["grads"][k] for k in ("w_ih", "w_hh", "b_ih", "xs")}
        got["loss"] = res["loss"]
        error = relative_error(got, references[case["id"]])
        peak, method = _torch_memory(res.get("memory", {}))
        rows.append(
            {
                "cell": case["cell"],
                "batch": case["batch"],
                "steps": case["steps"],
                "hidden": case["hidden"],
                "impl": "torch",
                "precision": plan.precision,
                "status": "ok" if error <= tol else "wrong",
                "rel_error": error,
                "fwdbwd": _stats(res["fwd_bwd"]["times_ms"]),
                "fwd": _stats(res["forward"]["times_ms"]),
                "compile_ms": res["fwd_bwd"]["first_call_ms"],
                "peak_bytes": peak,
                "memory_method": method,
                "tokens_per_s": case["batch"] * case["steps"] / (res["fwd_bwd"]["median_ms"] / 1e3),
            }
        )
    return {k: v for k, v in result.items() if k != "cases"}


def environment(backend: str) -> dict:
    """The date, device, versions and XLA flags of a run on ``backend``: the head of every result JSON."""
    device = jax.devices(backend)[0]
    return {
        "date": datetime.date.today().isoformat(),
        "device": {
            "platform": device.platform,
            "kind": device.device_kind,
            "count": len(jax.devices(backend)),
            "host": platform.machine(),
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
        },
        "versions": versions(),
        "flags": {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "")},
    }


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import flax
    import jaxlib

    return {
        "jaxrnn": jr.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _cell_text(row: dict | None) -> str:
    if row is None:
        return "—"
    if row["status"] == "failed":
        return "failed"
    text = f"{row['fwdbwd']['median_ms']:.1f} ({row['fwd']['median_ms']:.1f})"
    if row["status"] == "wrong":
        text += f" **wrong** (err {row['rel_error']:.1e})"
    return text


def best_peer(rows: list) -> dict | None:
    """The fastest correct non-jaxrnn implementation among ``rows`` (fwd+bwd median)."""
    peers = [r for r in rows if not r["impl"].startswith("jaxrnn") and r["status"] == "ok"]
    return min(peers, key=lambda r: r["fwdbwd"]["median_ms"], default=None)


def best_ours(rows: list) -> dict | None:
    """The fastest correct jaxrnn implementation among ``rows`` (hand-written BPTT: XLA, Pallas or the CPU kernel)."""
    ours = [r for r in rows if r["impl"] in (OURS, PALLAS, CPU_KERNEL) and r["status"] == "ok"]
    return min(ours, key=lambda r: r["fwdbwd"]["median_ms"], default=None)


def _table(rows: list, keys: list) -> list:
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    head = ["cell", "B×T×H"] + impls + ["best jaxrnn / best peer (fwd+bwd time)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, b, t, h in keys:
        here = [r for r in rows if (r["cell"], r["batch"], r["steps"], r["hidden"]) == (cell, b, t, h)]
        by_impl = {r["impl"]: r for r in here}
        ours, peer = best_ours(here), best_peer(here)
        ratio = "—"
        if ours is not None and peer is not None:
            ratio = (
                f"{ours['fwdbwd']['median_ms'] / peer['fwdbwd']['median_ms']:.2f} ({ours['impl']} vs {peer['impl']})"
            )
        lines.append(
            "| " + " | ".join([cell, f"{b}×{t}×{h}"] + [_cell_text(by_impl.get(i)) for i in impls] + [ratio]) + " |"
        )
    return lines


def markdown(result: dict) -> str:
    """Tables of fwd+bwd ms (forward ms) per implementation, with jaxrnn / best peer."""
    rows = result["rows"]
    cells = list(dict.fromkeys(r["cell"] for r in rows))

    def keys_for(shape_texts, by_steps):
        shapes = [tuple(int(v) for v in s.split("x")) for s in shape_texts]
        if by_steps:
            shapes.sort(key=lambda s: s[1])
        return [
            (c, *s)
            for c in cells
            for s in shapes
            if any((r["cell"], r["batch"], r["steps"], r["hidden"]) == (c, *s) for r in rows)
        ]

    torch_worker = (result.get("torch") or {}).get("worker")
    lines = [
        f"Device: {result['device']['kind']} ({result['device']['platform']}), {result['date']}; "
        f"jax {result['versions']['jax']}, flax {result['versions']['flax']}"
        + (f", torch {torch_worker['torch']}" if torch_worker else "")
        + f". Precision: {result['precision']}. Times in ms: fwd+bwd (forward), median of {result['repeats']} "
        "runs. Ratios are jaxrnn's time over the fastest correct peer's: below 1, jaxrnn is faster.",
        "",
    ]
    lines += _table(rows, keys_for(result["shapes"], False))
    if result["sweep"]:
        lines += ["", "Sequence-length sweep:", ""] + _table(rows, keys_for(result["sweep"], True))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += [
            "",
            "Failed: "
            + "; ".join(
                f"{r['impl']} {r['cell']} {r['batch']}×{r['steps']}×{r['hidden']}: {r['reason']}" for r in failed
            ),
        ]
    if result.get("torch") and not result["torch"].get("available", True):
        lines += ["", f"PyTorch not measured: {result['torch'].get('reason')}"]
    return "\n".join(lines) + "\n"


def plot_against_length(
    result: dict, out: pathlib.Path, figures: dict, *, value: Callable[[dict], float], ylabel: str
) -> list:
    """A PNG per entry of ``figures`` (file name -> (title, rows)): ``value(row)`` and the fwd+bwd memory
    against T, log-log, one line per implementation (dashed where a row is wrong); returns the paths."""
    if options.missing(("matplotlib",)):  # a bare device image; the JSON and table are still written
        print(f"jaxrnn bench: matplotlib is not installed, so no plots ({options.EXTRA})", file=sys.stderr)
        return []
    plt = plotting.pyplot()
    files = []
    for name, (title, rows) in figures.items():
        fig, (ax_value, ax_mem) = plt.subplots(1, 2, figsize=(11, 4))
        for impl in dict.fromkeys(r["impl"] for r in rows):
            mine = sorted((r for r in rows if r["impl"] == impl), key=lambda r: r["steps"])
            style = dict(marker="o", linestyle="--" if any(r["status"] == "wrong" for r in mine) else "-")
            label = impl + (" (wrong)" if style["linestyle"] == "--" else "")
            ax_value.plot([r["steps"] for r in mine], [value(r) for r in mine], label=label, **style)
            mem = [(r["steps"], r["peak_bytes"] / 2**20) for r in mine if r.get("peak_bytes")]
            if mem:
                ax_mem.plot(*zip(*mem), label=label, **style)
        ax_value.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel=ylabel, title=title)
        ax_mem.set(
            xscale="log",
            yscale="log",
            xlabel="sequence length T",
            ylabel="peak memory, MiB (fwd+bwd)",
            title=f"{result['device']['kind']}, {result['date']}",
        )
        ax_value.legend(fontsize=8)
        ax_mem.legend(fontsize=8)
        fig.tight_layout()
        files.append(out / plotting.save_figure(fig, out, name, dpi=110))
    return files


def plot(result: dict, out: pathlib.Path) -> list:
    """PNG per cell: tokens/s and peak memory against T over the sweep, one line per implementation."""
    sweep = {tuple(int(v) for v in s.split("x")) for s in result["sweep"]}
    figures = {}
    for cell in dict.fromkeys(r["cell"] for r in result["rows"]):
        rows = [
            r
            for r in result["rows"]
            if r["cell"] == cell and (r["batch"], r["steps"], r["hidden"]) in sweep and r["status"] != "failed"
        ]
        if rows:
            title = f"{cell}, batch {rows[0]['batch']}, hidden {rows[0]['hidden']}"
            figures[f"sweep_{cell}.png"] = (title, rows)
    return plot_against_length(result, out, figures, value=lambda r: r["tokens_per_s"], ylabel="tokens/s (fwd+bwd)")


def write(
    result: dict, out: pathlib.Path, *, name: str = "bench", render: Callable = markdown, draw: Callable = plot
) -> list:
    """``NAME.json``, ``NAME.md`` (``render(result)``) and the plots (``draw(result, out)``) in ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(render(result))
    return [out / f"{name}.json", out / f"{name}.md"] + draw(result, out)


def _progress_bar():
    """A tqdm bar on a terminal; None (plain log lines) otherwise or without tqdm."""
    if not bars.shown(None) or options.missing(("tqdm",)):
        return None
    return bars.bar(desc="jaxrnn bench", unit="step")


def main(args) -> int:
    """``jaxrnn bench`` with parsed ``args`` (see ``jaxrnn bench --help``; ``args.backend`` checked): the peers."""
    backend = args.backend
    defaults = default_plan(backend, quick=args.quick)
    plan = Plan(
        cells=tuple(args.cells),
        shapes=args.shapes if args.shapes is not None else defaults["shapes"],
        sweep=args.sweep if args.sweep is not None else defaults["sweep"],
        impls=tuple(args.impls) if args.impls else None,
        repeats=args.repeats or defaults["repeats"],
        precision=args.precision,
        backend=backend,
    )
    out = args.out or pathlib.Path(f"bench-{backend}-{datetime.date.today().isoformat()}")
    total = len(plan.cells) * len(set(plan.shapes + plan.sweep))
    bar = _progress_bar()

    def progress(message):
        if bar is None:
            print(f"[bench] {message}", file=sys.stderr, flush=True)
        else:
            bar.set_postfix_str(message)
            bar.update(1)

    progress(f"{total} cases on {backend}, precision {plan.precision}")
    result = run(plan, progress=progress)
    if bar is not None:
        bar.close()
    files = write(result, out)
    print(markdown(result))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
