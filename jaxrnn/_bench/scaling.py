"""``jaxrnn bench --devices N|all``: how jaxrnn's fwd+bwd scales with data parallelism.

For each cell and shape ``BxTxH`` (B: the batch of one device) and each device
count n in 1, 2, 4, ... up to N (and N itself), the value and gradient of
``sum(h**2)`` with respect to the weights is jitted over a mesh of the first n
devices, the batch split over them and the weights replicated
(:mod:`jaxrnn.train._parallel`; XLA adds the all-reduce of the gradients). Two series:

- fixed batch per device (weak scaling): a global batch of ``n * B`` rows; ideal
  is n times the tokens per second of one device;
- fixed global batch (strong scaling): ``N * B`` rows whatever n; ideal is one
  device's time divided by n. Each count's loss and gradients are checked
  against the one-device run of the same batch.

Speedup is tokens per second over that of one device in the same series;
efficiency is speedup / n. Timing and memory as in :mod:`jaxrnn._bench.run`
(compiled separately, a warm-up call, the median of ``repeats``; XLA's buffers
of the program on each device).
"""

from __future__ import annotations

import datetime
import pathlib
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrnn._app import plotting
from jaxrnn._bench import run as bench
from jaxrnn._bench.run import Shape
from jaxrnn.train import _parallel

SERIES = {"per_device": "fixed batch per device", "global": "fixed global batch"}


def device_counts(total: int) -> tuple:
    """1, 2, 4, ... below ``total``, then ``total``."""
    counts, n = [], 1
    while n < total:
        counts.append(n)
        n *= 2
    return tuple(counts + [total])


def default_shapes(backend: str, *, quick: bool) -> tuple:
    """The batch per device, steps and hidden size measured by default."""
    if quick:
        return (Shape(4, 64, 32),)
    if backend == "cpu":
        return (Shape(8, 256, 128),)
    return (Shape(32, 1024, 256),)


def run(
    cells: tuple,
    shapes: tuple,
    counts: tuple,
    *,
    repeats: int,
    precision: str = "default",
    backend: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure every (cell, shape, series, device count); returns the result dict of ``scaling.json``.

    Args:
      cells: names in :data:`jaxrnn._app.cells.CELLS`.
      shapes: :class:`jaxrnn._bench.run.Shape` rows; ``batch`` is the batch per device.
      counts: device counts, increasing, starting at 1 (:func:`device_counts`).
      repeats: timed calls per measurement.
      precision: ``"default"``, ``"highest"`` or ``"bf16"``, as ``jaxrnn bench --precision``.
      backend: the devices' backend; None for JAX's default.
      progress: called with a line before each measurement.
    """
    backend = backend or jax.default_backend()
    total = counts[-1]
    tolerance = bench.TOLERANCE[precision]
    rows = []
    precision_ctx = jax.default_matmul_precision("highest" if precision == "highest" else None)
    with precision_ctx:
        for cell_name in cells:
            for shape in shapes:
                for series in SERIES:
                    reference, base_rate = None, None
                    for n in counts:
                        batch = shape.batch * (n if series == "per_device" else total)
                        if progress:
                            progress(f"{cell_name} {shape} {SERIES[series]}: {n} of {total} devices, batch {batch}")
                        cell, params, inputs = bench.problem(cell_name, Shape(batch, shape.steps, shape.hidden))
                        if precision == "bf16":
                            params, inputs = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), (params, inputs))
                        mesh = _parallel.make_mesh(n, backend=backend)
                        params = _parallel.replicate(params, mesh)
                        inputs = [_parallel.shard_batch(xs, mesh) for xs in inputs]
                        with _parallel.mesh_context(mesh):
                            compile_ms, (loss, grads), fwdbwd, peak = bench.measure(
                                bench.loss_and_grad(cell, argnums=0), params, inputs, repeats
                            )
                        rate = batch * shape.steps / (fwdbwd["median_ms"] / 1e3)
                        base_rate = rate if base_rate is None else base_rate
                        row = {
                            "cell": cell_name,
                            "shape": str(shape),
                            "series": series,
                            "devices": n,
                            "batch": batch,
                            "batch_per_device": batch // n,
                            "steps": shape.steps,
                            "hidden": shape.hidden,
                            "fwdbwd": fwdbwd,
                            "compile_ms": compile_ms,
                            "peak_bytes_per_device": peak,
                            "tokens_per_s": rate,
                            "speedup": rate / base_rate,
                            "efficiency": rate / base_rate / n,
                            "status": "ok",
                            "rel_error": None,
                        }
                        if series == "global":
                            canonical = bench.canonical(loss, grads)
                            reference = canonical if reference is None else reference
                            error = bench.relative_error(canonical, reference)
                            row.update(rel_error=error, status="ok" if error <= tolerance else "wrong")
                        rows.append(row)
    return {
        **bench.environment(backend),
        "precision": bench.PRECISIONS[precision],
        "loss": "sum(h**2) over all outputs; fwd+bwd = loss and gradient of all weights, batch split over the "
        "devices, weights replicated",
        "input_size": "equal to hidden size",
        "repeats": repeats,
        "tolerance": tolerance,
        "counts": list(counts),
        "shapes": [str(s) for s in shapes],
        "series": SERIES,
        "rows": rows,
    }


def _groups(result: dict) -> dict:
    """``{(cell, shape): {series: {devices: row}}}``."""
    groups: dict = {}
    for row in result["rows"]:
        groups.setdefault((row["cell"], row["shape"]), {}).setdefault(row["series"], {})[row["devices"]] = row
    return groups


def markdown(result: dict) -> str:
    """A table per cell and shape: time, tokens/s, speedup and efficiency of both series per device count."""
    device = result["device"]
    lines = [
        f"Data-parallel scaling on {device['kind']} ({device['platform']}), {result['date']}; "
        f"jax {result['versions']['jax']}. Precision: {result['precision']}. fwd+bwd ms, median of "
        f"{result['repeats']} runs; speedup = tokens/s over one device's in the same series; efficiency = "
        "speedup / devices. In B×T×H, B is the batch of one device.",
    ]
    for (cell, shape), series in _groups(result).items():
        weak, strong = series.get("per_device", {}), series.get("global", {})
        lines += [
            "",
            f"{cell} {shape.replace('x', '×')}",
            "",
            f"| devices | global batch | {SERIES['per_device']}: ms | tokens/s | speedup | efficiency "
            f"| global batch | {SERIES['global']}: ms | tokens/s | speedup | efficiency | rel. error |",
            "|" + "---|" * 12,
        ]
        for n in result["counts"]:
            cells = [str(n)]
            for row in (weak.get(n), strong.get(n)):
                cells += (
                    [
                        str(row["batch"]),
                        f"{row['fwdbwd']['median_ms']:.2f}",
                        f"{row['tokens_per_s']:.3g}",
                        f"{row['speedup']:.2f}",
                        f"{row['efficiency']:.2f}",
                    ]
                    if row
                    else ["—"] * 5
                )
            row = strong.get(n)
            cells.append(
                "—" if row is None else f"{row['rel_error']:.1e}" + (" **wrong**" if row["status"] == "wrong" else "")
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, out: pathlib.Path) -> list:
    """``scaling_CELL.png``: tokens/s against the device count, both series and the ideal line."""
    plt = plotting.pyplot()
    figures = {}
    for (cell, shape), series in _groups(result).items():
        if cell not in figures:
            figures[cell] = plt.subplots(figsize=(6, 4), constrained_layout=True)
        axes = figures[cell][1]
        for name, by_count in series.items():
            counts = sorted(by_count)
            (line,) = axes.plot(
                counts, [by_count[n]["tokens_per_s"] for n in counts], marker="o", label=f"{shape}, {SERIES[name]}"
            )
            axes.plot(counts, [by_count[1]["tokens_per_s"] * n for n in counts], linestyle=":", color=line.get_color())
    files = []
    for cell, (fig, axes) in figures.items():
        axes.set(
            xscale="log",
            yscale="log",
            xlabel="devices",
            ylabel="tokens/s (fwd+bwd)",
            title=f"{cell}, {result['device']['kind']} (dotted: ideal)",
        )
        axes.minorticks_off()
        axes.set_xticks(result["counts"], [str(n) for n in result["counts"]])
        axes.legend(fontsize=8)
        files.append(out / plotting.save_figure(fig, out, f"scaling_{cell}.png", dpi=110))
    return files


def main(args) -> int:
    """``jaxrnn bench --devices N|all`` with parsed ``args``; returns the exit code."""
    backend = args.backend or jax.default_backend()
    try:
        total = _parallel.make_mesh(args.devices, backend=backend, name="--devices").size
    except (ValueError, RuntimeError) as error:
        print(f"jaxrnn bench: error: {error}", file=sys.stderr)
        return 2
    shapes = args.shapes if args.shapes is not None else default_shapes(backend, quick=args.quick)
    repeats = args.repeats or (3 if args.quick else 5)
    out = args.out or pathlib.Path(f"bench-scaling-{backend}-{datetime.date.today().isoformat()}")

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    result = run(
        tuple(args.cells),
        shapes,
        device_counts(total),
        repeats=repeats,
        precision=args.precision,
        backend=backend,
        progress=progress,
    )
    files = bench.write(result, out, name="scaling", render=markdown, draw=plot)
    print(markdown(result))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
