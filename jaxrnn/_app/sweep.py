"""``jaxrnn sweep`` and ``jaxrnn compare``: one task trained several times, one setting varied.

- :func:`sweep` answers "how large a hidden state?": one run per hidden size, each
  in ``OUT/hidden-N``; ``sweep.json``, ``sweep.md`` and ``sweep.png`` put the best
  validation metric, the parameter count and the time per step side by side.
- :func:`compare` answers "which cell?": one run per cell on the same config, each
  in ``OUT/CELL``; ``compare.png`` draws their validation curves in one figure, and
  ``compare.json`` / ``compare.md`` hold each cell's best validation metric and test
  report. On the adding problem at T=100 it shows the vanishing gradient: an LSTM or
  GRU learns the task while an Elman network stays near the 1/6 baseline.

Every run is a plain :func:`jaxrnn._app.trainer.run` in its own folder, so a study that
is interrupted, or run again with the same options, resumes each run where it
stopped and does not retrain the finished ones. The study's JSON is written after
every run and records the shared config; a folder that holds a study with another
config is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxrnn._app import options, plotting, trainer
from jaxrnn._app import progress as bars  # the studies' argument is called progress
from jaxrnn._app.cells import parse_cells
from jaxrnn._app.options import RunError
from jaxrnn._app.tasks import TASKS

# The cells `jaxrnn compare` trains by default, in the order they are drawn.
DEFAULT_CELLS = ("lstm", "gru", "elman_tanh")
DEFAULT_HIDDEN = (32, 64, 128, 256)


# --------------------------------------------------------------------------- parsing


def parse_sizes(text: str) -> list:
    """``"32,64,128"`` -> ``[32, 64, 128]``; raises ValueError naming the item that is not a positive int."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError(f"expected a comma-separated list of hidden sizes such as 32,64,128, got {text!r}")
    sizes = []
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"hidden size {item!r} in {text!r} is not a positive integer")
        if int(item) in sizes:
            raise ValueError(f"hidden size {item} appears twice in {text!r}")
        sizes.append(int(item))
    return sizes


# ------------------------------------------------------------------------------ runs


def _study(
    kind: str,
    task,
    overrides: dict,
    key: str,
    values: list,
    out_dir: pathlib.Path,
    folder: Callable[[Any], str],
    *,
    progress: bool | None,
    log: Callable[[str], Any],
) -> dict:
    """Run ``task`` once per value of config ``key``, each in ``out_dir / folder(value)``.

    Returns the study (also written to ``out_dir / f"{kind}.json"`` after each run):
    ``{"task", "varied", "config", "monitor", "runs": [row, ...]}``; see :func:`_row`.
    """
    if key in overrides:
        raise RunError(f"--{key} is what {kind} varies; give the values as a list, not as a fixed option.")
    base = trainer.resolve_config(task, overrides)
    # The shared config without the varied key, JSON-normalised so it compares with a saved one.
    shared = json.loads(json.dumps({k: v for k, v in base.items() if k != key}))
    metric, mode = task.monitor
    study = {
        "task": task.name,
        "varied": key,
        "config": shared,
        "monitor": {"metric": metric, "mode": mode},
        "runs": [],
    }
    path = out_dir / f"{kind}.json"
    _claim(path, study, kind)
    out_dir.mkdir(parents=True, exist_ok=True)

    bar = bars.bar(values, desc=f"{kind} {task.name}", unit="run") if bars.shown(progress) else None
    try:
        for i, value in enumerate(values):
            label = f"{key} {value}"
            say = bars.writer(log, bar, f"[{label}] ")
            if bar is None:
                log(f"{kind} {task.name}: {label} ({i + 1}/{len(values)})")
            else:
                bar.set_postfix_str(label)
            config = {**overrides, key: value}
            summary = trainer.run(task, config, out_dir / folder(value), progress=False, log=say)
            study["runs"].append(_row(task, trainer.resolve_config(task, config), key, value, summary))
            path.write_text(json.dumps(study, indent=2, default=trainer.jsonable) + "\n")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return study


def _claim(path: pathlib.Path, study: dict, kind: str) -> None:
    """Refuse a folder whose ``{kind}.json`` records a study of another task or config."""
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(
            f"--out {path.parent} has an unreadable {path.name} ({error}); choose another --out or delete it."
        ) from error
    theirs, ours = {"task": saved.get("task"), **saved.get("config", {})}, {"task": study["task"], **study["config"]}
    if theirs != ours:
        changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        what = ", ".join(f"{k}={theirs.get(k)!r} (now {ours.get(k)!r})" for k in changed[:4])
        raise RunError(f"--out {path.parent} holds another {kind} ({what}); choose another --out or delete it.")


def _row(task, config: dict, key: str, value, summary: dict) -> dict:
    """One run of a study: ``{key: value, "params", "status", "steps", "best", "report", "time_s", "ms_per_step", "out"}``.

    ``ms_per_step`` is the steady rate between the first and last logged train steps
    (so compilation is left out; the evaluations in between are counted), or the
    whole time over the steps when fewer than three steps were logged.
    """
    out = pathlib.Path(summary["out"])
    train_records = [r for r in trainer.read_records(out / "metrics.jsonl") if r["split"] == "train"]
    if len(train_records) >= 3:
        first, last = train_records[1], train_records[-1]
        ms_per_step = 1000 * (last["time_s"] - first["time_s"]) / (last["step"] - first["step"])
    else:
        ms_per_step = 1000 * summary["time_s"] / max(summary["steps"], 1)
    return {
        key: value,
        "params": _parameter_count(task, config),
        "status": summary["status"],
        "steps": summary["steps"],
        "best": summary["best"],
        "report": summary["report"],
        "time_s": summary["time_s"],
        "ms_per_step": ms_per_step,
        "out": summary["out"],
    }


def _parameter_count(task, config: dict) -> int:
    """How many numbers the model of ``config`` holds, from the shapes alone (nothing is computed)."""
    shapes = jax.eval_shape(task.build(config).init_params, jax.random.key(0))
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)))


# ---------------------------------------------------------------------------- sweep


def sweep(
    task, config: dict, hidden_sizes: list, out_dir, *, progress: bool | None = None, log: Callable[[str], Any] = print
) -> dict:
    """Train ``task`` once per hidden size, each run in ``out_dir/hidden-N``; tabulate and plot them.

    Args:
      task: a ``Task`` (see ``docs/training-design.md``).
      config: the user's values shared by every run; must not set ``hidden``.
      hidden_sizes: the hidden sizes, positive ints (:func:`parse_sizes`).
      out_dir: the sweep's folder, created if missing; a sweep there with the same
        config is resumed, and its finished runs are not retrained.
      progress: a tqdm bar over the sizes (True), a plain line per size (False), or a
        bar only when stderr is a terminal (None). The runs themselves log plain lines.
      log: where messages go, one string per call.

    Returns:
      The sweep, also written to ``sweep.json``: ``{"task", "varied": "hidden",
      "config", "monitor": {"metric", "mode"}, "runs": [{"hidden", "params", "status",
      "steps", "best": {"metric", "value", "step"}, "report", "time_s", "ms_per_step",
      "out"}, ...]}``; ``sweep.md`` holds its table (also logged) and ``sweep.png``
      the best validation metric and the time per step against the hidden size.

    Raises:
      RunError: a bad config, ``config`` sets ``hidden``, or ``out_dir`` holds a
        sweep with another config.
    """
    out_dir = pathlib.Path(out_dir)
    result = _study(
        "sweep",
        task,
        dict(config),
        "hidden",
        list(hidden_sizes),
        out_dir,
        lambda n: f"hidden-{n}",
        progress=progress,
        log=log,
    )
    table = _markdown(result, "hidden")
    (out_dir / "sweep.md").write_text(f"# {task.name}: hidden size sweep\n\n{_config_line(result)}\n\n{table}\n")
    _plot_sweep(result, out_dir / "sweep.png")
    log(table)
    log(f"written to {out_dir / 'sweep.json'}, sweep.md and sweep.png")
    return result


def _plot_sweep(result: dict, path: pathlib.Path) -> None:
    plt = plotting.pyplot()
    runs = sorted(result["runs"], key=lambda r: r["hidden"])
    sizes = [r["hidden"] for r in runs]
    metric = result["monitor"]["metric"]
    best = [math.nan if r["best"]["value"] is None else r["best"]["value"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(sizes, best, marker="o")
    left.set_ylabel(f"best validation {metric}")
    right.plot(sizes, [r["ms_per_step"] for r in runs], marker="o")
    right.set_ylabel("ms per training step")
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(n) for n in sizes])
        axes.minorticks_off()
        axes.set_xlabel("hidden size")
        axes.grid(True, alpha=0.3)
    fig.suptitle(f"{result['task']}: {result['config'].get('cell', '')} hidden size sweep".replace(":  ", ": "))
    plotting.save_figure(fig, path.parent, path.name)


# -------------------------------------------------------------------------- compare


def compare(
    task, config: dict, cells: list, out_dir, *, progress: bool | None = None, log: Callable[[str], Any] = print
) -> dict:
    """Train ``task`` once per cell on the same config, each run in ``out_dir/CELL``; draw them in one figure.

    Args:
      task: a ``Task`` (see ``docs/training-design.md``).
      config: the user's values shared by every run; must not set ``cell``.
      cells: the cells, e.g. ``["lstm", "gru", "elman_tanh"]`` (:func:`jaxrnn._app.cells.parse_cells`).
      out_dir: the comparison's folder, created if missing; one there with the same
        config is resumed, and its finished runs are not retrained.
      progress, log: as for :func:`sweep`.

    Returns:
      The comparison, also written to ``compare.json``: as :func:`sweep`'s with
      ``"varied": "cell"`` and a ``"cell"`` in each run; ``compare.md`` holds its
      table and ``compare.png`` each cell's validation metric against the step
      (from its ``metrics.jsonl``), with the task's baseline where the report has one.

    Raises:
      RunError: a bad config, ``config`` sets ``cell``, or ``out_dir`` holds a
        comparison with another config.
    """
    out_dir = pathlib.Path(out_dir)
    result = _study("compare", task, dict(config), "cell", list(cells), out_dir, str, progress=progress, log=log)
    table = _markdown(result, "cell")
    (out_dir / "compare.md").write_text(f"# {task.name}: cells compared\n\n{_config_line(result)}\n\n{table}\n")
    _plot_compare(result, out_dir / "compare.png")
    log(table)
    log(f"written to {out_dir / 'compare.json'}, compare.md and compare.png")
    return result


def _plot_compare(result: dict, path: pathlib.Path) -> None:
    plt = plotting.pyplot()
    metric, mode = result["monitor"]["metric"], result["monitor"]["mode"]
    fig, axes = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    values = []
    for run in result["runs"]:
        records = trainer.read_records(pathlib.Path(run["out"]) / "metrics.jsonl")
        points = [(r["step"], r[metric]) for r in records if r["split"] == "val" and metric in r]
        if points:
            axes.plot(*zip(*points), marker="." if len(points) < 50 else None, label=run["cell"])
            values += [v for _, v in points]
    baselines = {(run["report"] or {}).get(f"baseline_{metric}") for run in result["runs"]} - {None}
    for baseline in baselines:
        axes.axhline(baseline, color="grey", linestyle="--", label=f"baseline {metric} {baseline:.3g}")
        values.append(baseline)
    # Errors that fall by orders of magnitude read best on a log scale.
    if mode == "min" and values and min(values) > 0:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(f"validation {metric}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    length = result["config"].get("length")
    axes.set_title(f"{result['task']}" + (f", T={length}" if length is not None else "") + ": cells compared")
    plotting.save_figure(fig, path.parent, path.name)


# --------------------------------------------------------------------------- output


def _config_line(result: dict) -> str:
    return "Shared config: " + ", ".join(f"{k}={v}" for k, v in result["config"].items() if k != "task") + "."


def _markdown(result: dict, key: str) -> str:
    """One row per run: the varied value, parameters, best validation metric, test report, time, status."""
    metric = result["monitor"]["metric"]
    reported = list(dict.fromkeys(k for r in result["runs"] for k, v in (r["report"] or {}).items() if _scalar(v)))
    head = [key, "parameters", f"best val {metric} (step)", *reported, "time (s)", "ms/step", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        best = "—" if r["best"]["value"] is None else f"{r['best']['value']:.4g} ({r['best']['step']})"
        report = [f"{v:.4g}" if _scalar(v := (r["report"] or {}).get(k)) else "—" for k in reported]
        cells = [
            str(r[key]),
            f"{r['params']:,}",
            best,
            *report,
            f"{r['time_s']:.1f}",
            f"{r['ms_per_step']:.1f}",
            r["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _scalar(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------- CLI


def _add_shared_arguments(parser: argparse.ArgumentParser, varied: str, kind: str) -> None:
    parser.add_argument("--task", help=f"the task (see `jaxrnn tasks`; default {options.DEFAULT_TASK})")
    options.add_flag_arguments(
        parser,
        {key: f"{key.replace('_', ' ')} for every run" for key in options.FLAGS},
        skip=(varied,),
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        metavar="DIR",
        help=f"the {kind}'s folder (default runs/{kind}-TASK); running the same command again "
        "resumes it without retraining the finished runs",
    )


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn sweep`` to ``parser``."""
    parser.add_argument(
        "--hidden",
        type=options.argument_type(parse_sizes),
        default=list(DEFAULT_HIDDEN),
        metavar="N,N,...",
        help=f"the hidden sizes to train (default {','.join(map(str, DEFAULT_HIDDEN))})",
    )
    _add_shared_arguments(parser, "hidden", "sweep")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn compare`` to ``parser``."""
    parser.add_argument(
        "--cells",
        type=options.argument_type(parse_cells),
        default=list(DEFAULT_CELLS),
        metavar="CELL,...",
        help=f"the cells to train (default {','.join(DEFAULT_CELLS)})",
    )
    _add_shared_arguments(parser, "cell", "compare")


def _main(kind: str, study: Callable, values: list, varied: str, args, tasks: dict | None, log) -> int:
    tasks = TASKS if tasks is None else tasks
    try:
        task = options.task_named(args.task, tasks)
        out = args.out if args.out is not None else pathlib.Path("runs") / f"{kind}-{task.name}"
        result = study(task, options.flag_overrides(args, skip=(varied,)), values, out, log=log)
    except RunError as error:
        print(f"jaxrnn {kind}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1 if any(r["status"] == "nonfinite" for r in result["runs"]) else 0


def main_sweep(args: argparse.Namespace, tasks: dict | None = None, *, log: Callable[[str], Any] = print) -> int:
    """``jaxrnn sweep``: :func:`sweep` over ``args.hidden`` with the options given.

    Returns:
      The exit code: 0 when every run is done or stopped early, 1 when one stopped on
      a non-finite loss (the sweep's files are still written), 2 for a usage error
      (printed as ``jaxrnn sweep: error: ...``), 130 when interrupted (the same
      command resumes).
    """
    return _main("sweep", sweep, args.hidden, "hidden", args, tasks, log)


def main_compare(args: argparse.Namespace, tasks: dict | None = None, *, log: Callable[[str], Any] = print) -> int:
    """``jaxrnn compare``: :func:`compare` over ``args.cells`` with the options given; exit codes as :func:`main_sweep`."""
    return _main("compare", compare, args.cells, "cell", args, tasks, log)
