"""The training loop behind ``jaxrnn train``: one task, one config, one output folder.

:func:`run` follows ``docs/training-design.md``. A run's folder holds:

- ``config.json``: the task's defaults overridden by the user's values, plus the
  task's name and the derived settings (``log_every``, ``patience``);
- ``checkpoints/ckpt-*.ckpt`` (:mod:`jaxrnn._checkpoint`): the :class:`LoopState`
  every ``eval_every`` steps, at the end, and when the run is interrupted;
- ``metrics.jsonl``: one JSON object a line, ``{"step", "split", metrics..., "time_s"}``,
  for every ``log_every``-th train step (that step's own metrics, not a running
  mean) and every evaluation;
- ``curves.png``, ``summary.json`` and whatever the task's ``report`` writes, and
  the task's ``Setup.files`` (charlm's ``vocab.json``).

Resuming is exact: the checkpoint holds everything a step reads (parameters,
optimiser state, step count and PRNG key, early-stopping record, and the state a
task carries between batches, ``Setup.initial_carry``), and a task's
``train_batch(step)`` is a pure function of ``(seed, step)``, so a run stopped and
started again logs bit for bit the losses of one that never stopped. A run is
stopped cleanly with Ctrl-C (``KeyboardInterrupt``): the loop saves a checkpoint at
the last completed step before re-raising, so no step is lost. After a hard crash
the run resumes from the last checkpoint, and ``metrics.jsonl`` is cut back to
that step so no step is logged twice.

Steps are counted as updates done: batch ``train_batch(s)`` makes update ``s + 1``,
and ``metrics.jsonl`` logs it as ``"step": s + 1``.

Data parallel (``mesh``, ``jaxrnn train --devices N|all``): every batch is split
over the mesh's devices, parameters and optimiser state replicated
(:mod:`jaxrnn._parallel`). The device count is not part of the config: a run
resumes on any count that divides its batch size, with the losses of one device
up to float rounding (bit for bit on the same count). With several processes
(``jax.distributed``) every process runs the same loop in lockstep; process 0
alone reads and writes the folder and logs, and hands the resumed state to the
others, so ``--out`` need not be shared between hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import pathlib
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from jaxrnn import _checkpoint
from jaxrnn import _parallel
from jaxrnn import train

DEFAULT_PATIENCE = 10  # evaluations without improvement before early stopping


class RunError(ValueError):
    """A run cannot start: a bad config, or an output folder that holds another run."""


class LoopState(NamedTuple):
    """Everything the loop carries from step to step; what a checkpoint holds."""

    train: train.TrainState  # params, optimiser state, step (int32 []), PRNG key
    best: float  # the best value of the monitored metric so far; NaN before the first
    best_step: int  # the step of ``best``; -1 before the first evaluation
    bad_evals: int  # evaluations since the last improvement
    evaluated_step: int  # the step of the latest evaluation; -1 before the first
    best_params: Any  # the parameters at ``best_step``, which ``report`` scores
    time_s: float  # wall time spent on the run so far, over all its sessions
    carry: Any = None  # the task's state carried between batches (Setup.initial_carry); None for none


# ---------------------------------------------------------------------------- config


def resolve_config(task, overrides: dict) -> dict:
    """``task.defaults`` overridden by ``overrides``, with the loop's own settings filled in.

    Args:
      task: a ``Task`` (``name``, ``defaults``, ...).
      overrides: the user's values (any keys; unknown ones reach ``task.build``).

    Returns:
      A new dict: ``{"task": task.name, **defaults, **overrides}`` with ``eval_every``
      (default ``max(1, steps // 10)``), ``log_every`` (``max(1, steps // 50)``) and
      ``patience`` (10 evaluations) added where missing.

    Raises:
      RunError: ``steps``, ``eval_every``, ``log_every`` or ``patience`` is not a
        positive int, ``seed`` not an int >= 0, ``learning_rate`` not a positive number,
        or ``overrides`` names another task.
    """
    if overrides.get("task", task.name) != task.name:
        raise RunError(f"the config is for task {overrides['task']!r}, not {task.name!r}.")
    config = {"task": task.name, **task.defaults, **overrides}
    steps = _positive_int(config, "steps")
    config.setdefault("eval_every", max(1, steps // 10))
    config.setdefault("log_every", max(1, steps // 50))
    config.setdefault("patience", DEFAULT_PATIENCE)
    for name in ("eval_every", "log_every", "patience"):
        _positive_int(config, name)
    _positive_int(config, "seed", minimum=0)
    rate = config.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or not math.isfinite(rate):
        raise RunError(f"--learning-rate must be a positive number, got {rate!r}.")
    return config


def _positive_int(config: dict, name: str, minimum: int = 1) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RunError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _claim(out_dir: pathlib.Path, config: dict) -> None:
    """Refuse a folder whose ``config.json`` records another run."""
    path = out_dir / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"--out {out_dir} has an unreadable config.json ({error}); choose another --out or delete it.") from error
    if saved != json.loads(json.dumps(config)):
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k, None) != json.loads(json.dumps(config.get(k))))
        what = ", ".join(f"{k}={saved.get(k)!r}" for k in changed[:4])
        raise RunError(
            f"--out {out_dir} holds another run (task {saved.get('task')!r}, {what}); "
            f"choose another --out or delete it."
        )


# ------------------------------------------------------------------------------ loop


def run(task, config: dict, out_dir, *, progress: Optional[bool] = None, log: Callable[[str], Any] = print,
        mesh: Optional[jax.sharding.Mesh] = None) -> dict:
    """Train ``task`` with ``config`` in ``out_dir``, resuming the run already there.

    Each step is ``state, metrics = train_step(state, setup.train_batch(step))`` with
    :func:`jaxrnn.train.make_train_step` and :func:`jaxrnn.train.default_optimizer`;
    a task with ``setup.initial_carry`` also threads its carry through ``loss_fn``
    and checkpoints it (``docs/training-design.md``). ``setup.files`` are written
    into ``out_dir`` first.
    Every ``eval_every`` steps and at the end: :func:`jaxrnn.train.evaluate` on the
    validation batches, early stopping on ``task.monitor`` after ``patience``
    evaluations without improvement, and a checkpoint. A non-finite loss or gradient
    stops the run at once and saves nothing. At the end, ``setup.report`` scores the
    parameters of the best evaluation.

    Args:
      task: a ``Task`` (see ``docs/training-design.md``).
      config: the user's values; they override ``task.defaults`` (:func:`resolve_config`).
      out_dir: the run's folder, created if missing.
      progress: a tqdm bar (True), plain lines every ``log_every`` steps (False), or
        a bar only when stderr is a terminal (None).
      log: where messages go, one string per call (process 0's only).
      mesh: None (one device), or a mesh from :func:`jaxrnn.train.make_mesh`:
        data parallel over its devices, which must divide ``batch_size``.

    Returns:
      The summary also written to ``summary.json``: ``{"task", "status" ("done",
      "early_stopped" or "nonfinite"), "steps", "val" (the last evaluation's metrics),
      "best" ({"metric", "value", "step"}), "report", "time_s", "out"}``.

    Raises:
      RunError: a bad config (``task.build``'s ValueErrors included), a batch size
        the mesh's device count does not divide, or ``out_dir`` holds another
        run's ``config.json``.
      KeyboardInterrupt: re-raised after saving a checkpoint at the last completed step.
    """
    out_dir = pathlib.Path(out_dir)
    config = resolve_config(task, dict(config))
    primary = _parallel.is_primary()
    log = log if primary else _silent
    _claim_on_primary(out_dir, config)
    try:
        setup = task.build(config)
        if mesh is not None:
            _parallel.check_batch_size(config["batch_size"], mesh, name="--batch-size")
    except ValueError as error:
        raise RunError(str(error)) from error
    if primary:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    steps, eval_every, log_every = config["steps"], config["eval_every"], config["log_every"]
    patience = config["patience"]
    metric, mode = task.monitor
    optimizer = train.default_optimizer(config["learning_rate"])
    train_step = _make_step(setup, optimizer, mesh=mesh)
    eval_step = train.make_eval_step(setup.eval_fn, mesh=mesh)
    for name, text in (setup.files or {}).items() if primary else ():
        (out_dir / name).write_text(text, encoding="utf-8")

    loop = initial_loop(setup.init_params, setup.initial_carry, config, optimizer)
    checkpoints = out_dir / "checkpoints"
    metrics_path = out_dir / "metrics.jsonl"
    found = _checkpoint.latest(checkpoints) if primary else None
    saved_step = None
    if found is not None:
        loop, saved_step, _ = _checkpoint.restore(found, loop)
        _cut_metrics(metrics_path, saved_step, loop.evaluated_step)
        log(f"resumed from step {saved_step}")
    elif primary:
        metrics_path.unlink(missing_ok=True)
    if jax.process_count() > 1:
        loop, resumed = _parallel.broadcast((loop, saved_step is not None))
        saved_step = int(loop.train.step) if resumed else None
    if mesh is not None:
        log(_mesh_line(mesh, config["batch_size"]))

    step = int(loop.train.step)
    start = time.perf_counter() - loop.time_s
    status, last_val = "done", _last_val(metrics_path)

    def save(loop: LoopState) -> LoopState:
        nonlocal saved_step
        loop = loop._replace(time_s=time.perf_counter() - start)
        whole = _parallel.gather(loop)  # every process takes part; process 0 writes
        if primary:
            _checkpoint.save(checkpoints, whole, step=step, config=config)
        saved_step = step
        return loop

    show = primary and (sys.stderr.isatty() if progress is None else progress)
    bar = _bar(steps, step, task.name) if show else None
    say = _writer(log, bar)
    lap_step, lap_time = step, time.perf_counter()
    try:
        with open(metrics_path, "a") if primary else contextlib.nullcontext() as records:
            while True:
                if step > 0 and (step % eval_every == 0 or step == steps) and loop.evaluated_step != step:
                    last_val = train.evaluate(eval_step, loop.train.params, _eval_progress(setup.eval_batches, bar))
                    _write(records, {"step": step, "split": "val", **last_val, "time_s": time.perf_counter() - start})
                    if metric not in last_val:
                        raise RunError(f"task {task.name!r} monitors {metric!r}, but eval_fn gives {sorted(last_val)}.")
                    es = train.EarlyStopping(None if loop.best_step < 0 else loop.best, loop.best_step, loop.bad_evals)
                    es, _ = train.early_stopping_update(es, last_val[metric], step, patience=patience, mode=mode)
                    improved = es.best_step == step
                    loop = save(loop._replace(
                        best=math.nan if es.best is None else es.best, best_step=es.best_step, bad_evals=es.bad_evals,
                        evaluated_step=step, best_params=loop.train.params if improved else loop.best_params,
                    ))
                    say(_eval_line(step, steps, last_val, metric, loop))
                if step >= steps:
                    break
                if loop.bad_evals >= patience:
                    status = "early_stopped"
                    say(f"early stopping at step {step}: {metric} has not improved for {patience} evaluations "
                        f"(best {loop.best:.4g} at step {loop.best_step})")
                    break
                new_train, new_carry, metrics = train_step(loop.train, loop.carry, setup.train_batch(step))
                if not bool(metrics["finite"]):
                    status = "nonfinite"
                    kept = f"the last good checkpoint (step {saved_step}) is kept" if saved_step is not None else "no checkpoint was saved yet"
                    say(f"loss became non-finite at step {step + 1}; stopped; {kept}")
                    break
                loop, step = loop._replace(train=new_train, carry=new_carry), step + 1
                if bar is not None:
                    bar.update(1)
                if step % log_every == 0 or step == steps:
                    values = {k: float(v) for k, v in metrics.items() if k != "finite"}
                    _write(records, {"step": step, "split": "train", **values, "time_s": time.perf_counter() - start})
                    now = time.perf_counter()
                    rate = (step - lap_step) / max(now - lap_time, 1e-9)
                    lap_step, lap_time = step, now
                    if bar is not None:
                        bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
                    else:
                        say(f"step {step}/{steps}  loss {values['loss']:.4g}  ({rate:.1f} steps/s)")
    except KeyboardInterrupt:
        if step != saved_step:
            save(loop)
        say(f"interrupted at step {step}; checkpoint saved; run the same command again to resume")
        raise
    finally:
        if bar is not None:
            bar.close()

    elapsed = time.perf_counter() - start
    report = None
    if status != "nonfinite" and primary:
        report_params = loop.best_params if loop.best_step >= 0 else loop.train.params
        # On one device, as without a mesh: the report's own jitted functions run locally.
        report = setup.report(report_params if mesh is None else jax.device_get(report_params), out_dir)
    if primary:
        _plot(metrics_path, out_dir / "curves.png", metric, task.name)
    summary = {
        "task": task.name,
        "status": status,
        "steps": step,
        "val": last_val,
        "best": {"metric": metric, "value": None if loop.best_step < 0 else loop.best, "step": loop.best_step},
        "report": report,
        "time_s": elapsed,
        "out": str(out_dir),
    }
    if primary:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    log(_summary_line(summary))
    return summary


def _silent(message: str) -> None:
    """The log of processes other than 0: one copy of each message is enough."""


def _claim_on_primary(out_dir: pathlib.Path, config: dict) -> None:
    """:func:`_claim` on process 0; when it refuses, every process raises."""
    refusal = None
    if _parallel.is_primary():
        try:
            _claim(out_dir, config)
        except RunError as error:
            refusal = error
    if _parallel.broadcast(refusal is not None):
        raise refusal or RunError(f"process 0 refused --out {out_dir}; see its message.")


def _mesh_line(mesh, batch_size: int) -> str:
    platform = mesh.devices.flat[0].platform
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    return (f"data parallel over {mesh.size} {platform} device{'s' if mesh.size > 1 else ''}{processes}: "
            f"batch {batch_size}, {batch_size // mesh.size} per device")


def initial_loop(init_params: Callable, initial_carry: Any, config: dict, optimizer) -> LoopState:
    """The :class:`LoopState` before the first step; also the template a checkpoint restores into."""
    init_key, rng = jax.random.split(jax.random.key(config["seed"]))
    params = init_params(init_key)
    return LoopState(train.init_state(params, optimizer, rng), math.nan, -1, 0, -1, params, 0.0, initial_carry)


def _make_step(setup, optimizer, *, mesh=None) -> Callable:
    """``step(state, carry, batch) -> (state, carry, metrics)``, jitted, for either kind of ``loss_fn``.

    With a ``mesh`` the carry is split over its devices with the batch, row by row.
    """
    if setup.initial_carry is None:
        independent = train.make_train_step(setup.loss_fn, optimizer, mesh=mesh)

        def step(state, carry, batch):
            state, metrics = independent(state, batch)
            return state, None, metrics
    else:
        # The carry rides in the batch and comes back as aux, so make_train_step's
        # guard, gradient and metrics serve both kinds of task.
        def loss_fn(params, batch_and_carry, rng):
            batch, carry = batch_and_carry
            loss, carry = setup.loss_fn(params, batch, carry, rng)
            return loss, {"carry": carry}

        carried = train.make_train_step(loss_fn, optimizer, mesh=mesh)

        def step(state, carry, batch):
            state, metrics = carried(state, (batch, carry))
            return state, metrics.pop("carry"), metrics

    return step


def _eval_progress(batches, bar):
    """The validation batches, under a second, transient bar while the training bar shows."""
    if bar is None:
        return batches
    from tqdm import tqdm

    return tqdm(batches, desc="evaluating", unit="batch", leave=False, position=1, file=sys.stderr)


def _bar(steps: int, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(total=steps, initial=initial, desc=name, unit="step", dynamic_ncols=True, file=sys.stderr)


def _writer(log, bar) -> Callable[[str], None]:
    """``log``, clearing the bar around each message so they do not overlap."""
    if bar is None:
        return log

    def say(message: str) -> None:
        with bar.external_write_mode():
            log(message)

    return say


def _write(records, record: dict) -> None:
    if records is None:  # not process 0
        return
    records.write(json.dumps(record, default=_jsonable) + "\n")
    records.flush()


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(value).tolist()
    return str(value)


def _read_records(path: pathlib.Path) -> list:
    """The complete lines of ``metrics.jsonl``; a line cut short by a crash is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _cut_metrics(path: pathlib.Path, step: int, evaluated_step: int) -> None:
    """Drop records the checkpoint at ``step`` does not account for, so none is logged twice."""
    kept = [r for r in _read_records(path) if r["step"] <= (step if r["split"] == "train" else evaluated_step)]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _last_val(path: pathlib.Path) -> Optional[dict]:
    vals = [r for r in _read_records(path) if r["split"] == "val"]
    if not vals:
        return None
    return {k: v for k, v in vals[-1].items() if k not in ("step", "split", "time_s")}


def _eval_line(step: int, steps: int, values: dict, metric: str, loop: LoopState) -> str:
    shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
    return f"step {step}/{steps}  val {shown}  (best {metric} {loop.best:.4g} at step {loop.best_step})"


def _summary_line(summary: dict) -> str:
    best = summary["best"]
    text = f"{summary['task']}: {summary['status']} after {summary['steps']} steps in {summary['time_s']:.1f} s"
    if best["value"] is not None:
        text += f"; best val {best['metric']} {best['value']:.4g} at step {best['step']}"
    if summary["report"]:
        scalars = {k: v for k, v in summary["report"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if scalars:
            text += "; report: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
    return text + f"; written to {summary['out']}"


def _plot(metrics_path: pathlib.Path, path: pathlib.Path, metric: str, name: str) -> None:
    """``curves.png``: the train loss and the monitored validation metric against the step."""
    from jaxrnn._tasks import pyplot

    plt = pyplot()

    records = _read_records(metrics_path)
    train_points = [(r["step"], r["loss"]) for r in records if r["split"] == "train" and "loss" in r]
    val_points = [(r["step"], r[metric]) for r in records if r["split"] == "val" and metric in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axes, points, label in ((left, train_points, "train loss"), (right, val_points, f"validation {metric}")):
        if points:
            axes.plot(*zip(*points), marker="." if len(points) < 50 else None)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    fig.suptitle(name)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------- CLI

# The config keys that have flags, with their types; --batch-size sets "batch_size".
_FLAGS = {
    "cell": str, "hidden": int, "layers": int, "steps": int, "batch_size": int,
    "learning_rate": float, "length": int, "seed": int, "eval_every": int,
    "window": int, "delay": int, "num_symbols": int, "text": str, "data": str, "column": str,
}
_POSITIVE = ("hidden", "layers", "steps", "batch_size", "length", "eval_every", "window", "num_symbols")
# `jaxrnn train` with no options: the adding problem, a visible result in about a minute.
DEFAULT_TASK = "adding"


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse ``type``: its ValueError becomes argparse's usage error."""

    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return wrapped


def _flag_value(key: str, value):
    """Files as absolute paths (a resumed run compares its config), column indices as ints."""
    if key in ("text", "data"):
        return str(pathlib.Path(value).resolve())
    if key == "column" and value.isdigit():
        return int(value)
    return value


def flag_overrides(args: argparse.Namespace, *, skip: tuple = ()) -> dict:
    """The config values of the flags the user gave (not ``skip``), checked; RunError if one is bad."""
    overrides = {}
    for key in _FLAGS:
        value = None if key in skip else getattr(args, key, None)
        if value is not None:
            if key in _POSITIVE and value < 1:
                raise RunError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
            overrides[key] = _flag_value(key, value)
    return overrides


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn train`` to ``parser``; flags left out stay None."""
    parser.add_argument("--task", help=f"the task to train on (see `jaxrnn tasks`; default {DEFAULT_TASK})")
    helps = {
        "cell": "recurrent cell: lstm, gru or elman", "hidden": "hidden units per layer", "layers": "stacked layers",
        "steps": "training steps", "batch_size": "examples per batch", "learning_rate": "Adam's learning rate",
        "length": "sequence length (adding), symbols to copy (copy), characters per chunk (charlm)",
        "seed": "random seed",
        "eval_every": "steps between evaluations and checkpoints",
        "window": "past values per forecast (sunspots)", "delay": "blank steps before recall (copy)",
        "num_symbols": "alphabet size (copy)",
        "text": "a UTF-8 text file to model (charlm)",
        "data": "your CSV file: a numeric series (series) or label,text rows (text)",
        "column": "the series' column, by header name or 0-based index (series)",
    }
    for name, kind in _FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            metavar="FILE" if name in ("text", "data") else None,
                            help=f"{helps[name]} (default: the task's)")
    parser.add_argument("--config", type=pathlib.Path, default=None, metavar="FILE",
                        help="a JSON object of config keys (a run's config.json works); command-line values win")
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="DIR",
                        help="the run's folder (default runs/TASK-CELL); an existing run there is resumed")
    add_parallel_arguments(parser, what="the batch is split over them and they must divide --batch-size "
                                        "(default: one device, or all with more than one process)")
    scale = parser.add_argument_group(
        "more than one process (jax.distributed): run the same command on every host; process 0 writes --out")
    scale.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                       help="process 0's address and a free port (default: $JAX_COORDINATOR_ADDRESS)")
    scale.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="how many processes take part (default: $JAX_NUM_PROCESSES)")
    scale.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process's index, 0 to N-1 (default: $JAX_PROCESS_ID)")
    scale.add_argument("--distributed", action="store_true",
                       help="initialise jax.distributed even without the options above, letting JAX detect "
                            "the cluster (Cloud TPU slices, SLURM, Open MPI, Kubernetes)")


def add_parallel_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--devices N|all`` (None when not given) to ``parser``; ``what`` ends its help."""
    parser.add_argument("--devices", type=argument_type(_parallel.parse_devices), default=None, metavar="N|all",
                        help=f"data parallel over N devices of each process, or all of them: {what}")


def _default_tasks() -> dict:
    from jaxrnn import _tasks

    return _tasks.TASKS


def _error(message: str) -> int:
    print(f"jaxrnn train: error: {message}", file=sys.stderr)
    return 2


def _read_config_file(path: pathlib.Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise RunError(f"--config {path}: cannot read it: {error.strerror or error}") from error
    try:
        values = json.loads(text)
    except ValueError as error:
        raise RunError(f"--config {path}: not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise RunError(f"--config {path}: must hold a JSON object of config keys, got a {type(values).__name__}")
    return values


def main_train(args: argparse.Namespace, tasks: Optional[dict] = None, *, log: Callable[[str], Any] = print) -> int:
    """``jaxrnn train``: build the config from the task's defaults, ``--config`` and the flags given; run it.

    Returns:
      The exit code: 0 when the run is done or stopped early, 1 when it stopped on a
      non-finite loss, 2 for a usage error (printed as ``jaxrnn train: error: ...``),
      130 when interrupted (a checkpoint is saved; the same command resumes).
    """
    tasks = _default_tasks() if tasks is None else tasks
    try:
        mesh = _mesh(args)
        overrides = {} if args.config is None else _read_config_file(args.config)
        name = args.task if args.task is not None else overrides.get("task", DEFAULT_TASK)
        if name not in tasks:
            raise RunError(f"unknown task {name!r}; choose one of {', '.join(tasks)}")
        overrides.pop("task", None)
        overrides.update(flag_overrides(args))
        task = tasks[name]
        out = args.out
        if out is None:
            cell = {**task.defaults, **overrides}.get("cell")
            out = pathlib.Path("runs") / (f"{name}-{cell}" if cell else name)
        summary = run(task, overrides, out, log=log, mesh=mesh)
    except RunError as error:
        return _error(str(error))
    except KeyboardInterrupt:
        return 130
    return 1 if summary["status"] == "nonfinite" else 0


def _mesh(args: argparse.Namespace) -> Optional[jax.sharding.Mesh]:
    """Initialise jax.distributed if asked to, then the mesh of ``--devices``; None for one device."""
    try:
        distributed = _parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id,
                                                       required=args.distributed)
        devices = args.devices if args.devices is not None else ("all" if distributed else None)
        return None if devices is None else _parallel.make_mesh(devices, name="--devices")
    except ValueError as error:
        raise RunError(str(error)) from error


def main_tasks(tasks: Optional[dict] = None, *, out=None) -> int:
    """``jaxrnn tasks``: each task's name, summary, monitored metric and defaults; returns 0."""
    tasks = _default_tasks() if tasks is None else tasks
    out = sys.stdout if out is None else out
    for task in tasks.values():
        metric, mode = task.monitor
        print(f"{task.name}: {task.summary}", file=out)
        defaults = ", ".join(f"{k}={v}" for k, v in task.defaults.items())
        print(f"    defaults: {defaults}; early stopping on validation {metric} ({mode})", file=out)
    return 0


# The options of `jaxrnn generate`.
GENERATE_LENGTH, GENERATE_TEMPERATURE = 200, 0.8


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn generate`` to ``parser``."""
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="RUN_DIR",
                        help="the folder of a charlm run (`jaxrnn train --task charlm --out RUN_DIR`)")
    parser.add_argument("--prompt", default=None,
                        help="text to continue (default: the run's prompt, the start of its test split)")
    parser.add_argument("--length", type=int, default=GENERATE_LENGTH,
                        help=f"characters to generate (default {GENERATE_LENGTH})")
    parser.add_argument("--temperature", type=float, default=GENERATE_TEMPERATURE,
                        help=f"sampling temperature > 0; lower is more conservative (default {GENERATE_TEMPERATURE})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same text (default 0)")


def generate(out_dir, prompt: Optional[str] = None, *, length: int = GENERATE_LENGTH,
             temperature: float = GENERATE_TEMPERATURE, seed: int = 0) -> tuple:
    """Continue ``prompt`` with the latest checkpoint of the charlm run in ``out_dir``.

    Samples with the parameters ``report`` scores: those of the best evaluation so
    far, or the latest ones before any evaluation (see :func:`jaxrnn._tasks.sample`).

    Returns:
      ``(prompt, text)``: the prompt used and the ``length`` characters drawn.

    Raises:
      RunError: no run or no checkpoint in ``out_dir``, a run of another task, a
        temperature <= 0, a length < 1, or prompt characters outside the run's vocabulary.
    """
    from jaxrnn import _tasks, data

    out_dir = pathlib.Path(out_dir)
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise RunError(f"--temperature must be a positive number, got {temperature!r}.")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise RunError(f"--length must be an integer >= 1, got {length!r}.")
    try:
        config = json.loads((out_dir / "config.json").read_text())
    except OSError:
        raise RunError(f"--out {out_dir} holds no run (no config.json); train one with "
                       f"`jaxrnn train --task charlm --out {out_dir}`.") from None
    except ValueError as error:
        raise RunError(f"--out {out_dir} has an unreadable config.json ({error}).") from error
    if config.get("task") != "charlm":
        raise RunError(f"--out {out_dir} holds a {config.get('task')!r} run; generate needs a charlm run "
                       f"(`jaxrnn train --task charlm --out DIR`).")
    try:
        saved = json.loads((out_dir / _tasks.VOCAB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(f"--out {out_dir} has no readable {_tasks.VOCAB_FILE} ({error}); train the run again.") from error
    vocab = data.CharVocab(saved["chars"])
    prompt = saved["prompt"] if prompt is None else prompt
    if not prompt:
        raise RunError("--prompt must not be empty.")
    unknown = sorted(set(prompt) - set(vocab.chars))
    if unknown:
        raise RunError(f"--prompt has {len(unknown)} characters outside the run's vocabulary: "
                       f"{', '.join(map(repr, unknown))}; the run knows {vocab.chars!r}.")
    found = _checkpoint.latest(out_dir / "checkpoints")
    if found is None:
        raise RunError(f"--out {out_dir} holds no checkpoint yet; train the run first.")
    model, head, init_params = _tasks.charlm_model(config, vocab.size)
    template = initial_loop(init_params, model.initial_state((config["batch_size"],)), config,
                            train.default_optimizer(config["learning_rate"]))
    loop, _, _ = _checkpoint.restore(found, template)
    params = loop.best_params if loop.best_step >= 0 else loop.train.params
    return prompt, _tasks.sample(model, head, params, vocab, prompt, length, temperature, jax.random.key(seed))


def main_generate(args: argparse.Namespace, *, out=None) -> int:
    """``jaxrnn generate``: print the prompt and its continuation; returns 0, or 2 for a usage error."""
    out = sys.stdout if out is None else out
    try:
        prompt, text = generate(args.out, args.prompt, length=args.length, temperature=args.temperature,
                                seed=args.seed)
    except RunError as error:
        print(f"jaxrnn generate: error: {error}", file=sys.stderr)
        return 2
    print(prompt + text, file=out)
    return 0
