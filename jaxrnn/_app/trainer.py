"""The training loop behind ``jaxrnn train``: one task, one config, one output folder.

:func:`run` follows ``docs/training-design.md``. A run's folder holds:

- ``config.json``: the task's defaults overridden by the user's values, plus the
  task's name and the derived settings (``log_every``, ``patience``);
- ``checkpoints/ckpt-*.ckpt`` (:mod:`jaxrnn.train._checkpoint`): the :class:`LoopState`
  every ``eval_every`` steps, at the end, and when the run is interrupted;
- ``metrics.jsonl``: one JSON object a line, ``{"step", "split", metrics..., "time_s"}``,
  for every ``log_every``-th train step (that step's own metrics, not a running
  mean; with a Newton ``--solver`` also ``newton_iterations_mean`` and ``_max``
  over the layers) and every evaluation;
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

With ``warm_start`` (``--warm-start``, a Newton ``--solver``) each step's Newton
solves start from the trajectories of the step before (``Setup.loss_fn``'s
``batch[GUESS]`` and ``aux[TRAJECTORIES]``), inputs and outputs of the jitted step
with the same shapes every step. They are a cache, not in the checkpoint: the
first step of a run and of each resumed session starts from zeros, so a resumed
run's losses agree with an uninterrupted one's to the solver's ``tol`` rather than
bit for bit (everything else is restored exactly). Evaluation starts from zeros.

:func:`run` reads as its steps: check the config and claim the folder
(:func:`_start`), restore or initialise the loop state (:class:`_Session`), train
with evaluations and checkpoints (:meth:`_Session.train`), then report and write the
summary (:meth:`_Session.finish`).

Steps are counted as updates done: batch ``train_batch(s)`` makes update ``s + 1``,
and ``metrics.jsonl`` logs it as ``"step": s + 1``.

Data parallel (``mesh``, ``jaxrnn train --devices N|all``): every batch is split
over the mesh's devices, parameters and optimiser state replicated
(:mod:`jaxrnn.train._parallel`). The device count is not part of the config: a run
resumes on any count that divides its batch size, with the losses of one device
up to float rounding (bit for bit on the same count). With several processes
(``jax.distributed``) every process runs the same loop in lockstep; process 0
alone reads and writes the folder and logs, and hands the resumed state to the
others, so ``--out`` need not be shared between hosts.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import train
from jaxrnn._app import plotting
from jaxrnn._app import progress as bars  # run()'s argument is called progress
from jaxrnn._app.options import RunError, positive
from jaxrnn._app.tasks.base import GUESS, TRAJECTORIES
from jaxrnn.train import _checkpoint, _parallel

DEFAULT_PATIENCE = 10  # evaluations without improvement before early stopping


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
    steps = positive(config.get("steps"), "steps")
    config.setdefault("eval_every", max(1, steps // 10))
    config.setdefault("log_every", max(1, steps // 50))
    config.setdefault("patience", DEFAULT_PATIENCE)
    for name in ("eval_every", "log_every", "patience"):
        positive(config.get(name), name)
    positive(config.get("seed"), "seed", minimum=0)
    rate = config.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or not math.isfinite(rate):
        raise RunError(f"--learning-rate must be a positive number, got {rate!r}.")
    return config


def _claim(out_dir: pathlib.Path, config: dict) -> None:
    """Refuse a folder whose ``config.json`` records another run."""
    path = out_dir / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(
            f"--out {out_dir} has an unreadable config.json ({error}); choose another --out or delete it."
        ) from error
    if saved != json.loads(json.dumps(config)):
        changed = sorted(
            k for k in set(saved) | set(config) if saved.get(k, None) != json.loads(json.dumps(config.get(k)))
        )
        what = ", ".join(f"{k}={saved.get(k)!r}" for k in changed[:4])
        raise RunError(
            f"--out {out_dir} holds another run (task {saved.get('task')!r}, {what}); "
            f"choose another --out or delete it."
        )


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


# ------------------------------------------------------------------------------ loop


def run(
    task,
    config: dict,
    out_dir,
    *,
    progress: bool | None = None,
    log: Callable[[str], Any] = print,
    mesh: jax.sharding.Mesh | None = None,
) -> dict:
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
      RunError: a bad config (``task.build``'s ValueErrors included, and its
        ImportErrors of a missing extra), a batch size the mesh's device count does
        not divide, or ``out_dir`` holds another run's ``config.json``.
      KeyboardInterrupt: re-raised after saving a checkpoint at the last completed step.
    """
    out_dir = pathlib.Path(out_dir)
    config = resolve_config(task, dict(config))
    primary = _parallel.is_primary()
    log = log if primary else _silent
    setup = _start(task, config, out_dir, mesh=mesh, primary=primary)
    session = _Session(task, setup, config, out_dir, mesh=mesh, primary=primary, log=log)
    status = session.train(show_bar=primary and bars.shown(progress))
    return session.finish(status)


def _silent(message: str) -> None:
    """The log of processes other than 0: one copy of each message is enough."""


def _start(task, config: dict, out_dir: pathlib.Path, *, mesh, primary: bool):
    """Claim ``out_dir``, build the task's Setup and write ``config.json`` and the Setup's files."""
    _claim_on_primary(out_dir, config)
    try:
        setup = task.build(config)
        if config.get("warm_start") and setup.initial_carry is not None:
            raise ValueError(
                f"--warm-start is for tasks with independent batches; task {task.name!r} carries a state between them"
            )
        if mesh is not None:
            _parallel.check_batch_size(config["batch_size"], mesh, name="--batch-size")
    except (ValueError, ImportError) as error:
        raise RunError(str(error)) from error
    if primary:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for name, text in (setup.files or {}).items():
            (out_dir / name).write_text(text, encoding="utf-8")
    return setup


def initial_loop(init_params: Callable, initial_carry: Any, config: dict, optimizer) -> LoopState:
    """The :class:`LoopState` before the first step; also the template a checkpoint restores into."""
    init_key, rng = jax.random.split(jax.random.key(config["seed"]))
    params = init_params(init_key)
    return LoopState(train.init_state(params, optimizer, rng), math.nan, -1, 0, -1, params, 0.0, initial_carry)


def make_step(setup, optimizer, *, mesh=None, warm_start: bool = False) -> Callable:
    """``step(state, carry, batch) -> (state, carry, metrics)``, jitted, for either kind of ``loss_fn``.

    With ``warm_start`` (independent batches only) the carry is the Newton
    solver's trajectories: the previous step's in, this step's out. With a
    ``mesh`` the carry is split over its devices with the batch, row by row.
    """
    if setup.initial_carry is None:
        independent = train.make_train_step(setup.loss_fn, optimizer, mesh=mesh)

        def step(state, carry, batch):
            if not warm_start:
                state, metrics = independent(state, batch)
                return state, None, metrics
            state, metrics = independent(state, {**batch, GUESS: carry})
            return state, metrics.pop(TRAJECTORIES), metrics
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


def zero_trajectories(setup, state: train.TrainState, batch: dict) -> Any:
    """The guess of a warm-started first step: zeros shaped as the trajectories ``setup.loss_fn`` returns.

    Zeros are where a Newton solver starts without a guess, so the first step is
    the cold one; as arrays (not None) they keep the jitted step from tracing again.
    """
    aux = jax.eval_shape(setup.loss_fn, state.params, {**batch, GUESS: None}, state.rng)[1]
    if TRAJECTORIES not in aux:
        raise RunError("--warm-start needs a task whose loss_fn returns its Newton trajectories; this one does not.")
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), aux[TRAJECTORIES])


def latest_params(out_dir, init_params: Callable, initial_carry: Any, config: dict) -> Any | None:
    """The parameters a run's report scores, from its latest checkpoint: those of the best
    evaluation, or the latest ones before any evaluation; None without a checkpoint."""
    found = _checkpoint.latest(pathlib.Path(out_dir) / "checkpoints")
    if found is None:
        return None
    template = initial_loop(init_params, initial_carry, config, train.default_optimizer(config["learning_rate"]))
    loop, _, _ = _checkpoint.restore(found, template)
    return loop.best_params if loop.best_step >= 0 else loop.train.params


class _Session:
    """One session of a run: the loop state restored or initialised, and the steps of the loop.

    Process 0 alone reads and writes ``out_dir``; the others follow in lockstep.
    """

    def __init__(self, task, setup, config: dict, out_dir: pathlib.Path, *, mesh, primary: bool, log):
        self.task, self.setup, self.config, self.out_dir = task, setup, config, out_dir
        self.mesh, self.primary, self.log = mesh, primary, log
        optimizer = train.default_optimizer(config["learning_rate"])
        self.warm_start = bool(config.get("warm_start"))
        self.train_step = make_step(setup, optimizer, mesh=mesh, warm_start=self.warm_start)
        self.trajectories: Any = None  # with warm_start, the last step's Newton trajectories (not checkpointed)
        self.eval_step = train.make_eval_step(setup.eval_fn, mesh=mesh)
        self.checkpoints = out_dir / "checkpoints"
        self.metrics_path = out_dir / "metrics.jsonl"
        self.loop, self.saved_step = self._resume(
            initial_loop(setup.init_params, setup.initial_carry, config, optimizer)
        )
        if mesh is not None:
            log(_mesh_line(mesh, config["batch_size"]))
        self.step = int(self.loop.train.step)
        self.start = time.perf_counter() - self.loop.time_s
        self.last_val = _last_val(self.metrics_path)
        self.bar: Any = None  # the tqdm bar while one shows
        self.say: Callable[[str], Any] = log  # log, clear of the bar
        self.records: IO[str] | None = None  # metrics.jsonl, open while training (process 0)
        self.lap = (self.step, time.perf_counter())  # the step and time of the last rate shown

    def _resume(self, loop: LoopState) -> tuple:
        """``(loop, saved step)`` from the latest checkpoint, or ``(loop, None)`` for a new run."""
        found = _checkpoint.latest(self.checkpoints) if self.primary else None
        saved_step = None
        if found is not None:
            loop, saved_step, _ = _checkpoint.restore(found, loop)
            _cut_metrics(self.metrics_path, saved_step, loop.evaluated_step)
            self.log(f"resumed from step {saved_step}")
        elif self.primary:
            self.metrics_path.unlink(missing_ok=True)
        if jax.process_count() > 1:
            loop, resumed = _parallel.broadcast((loop, saved_step is not None))
            saved_step = int(loop.train.step) if resumed else None
        return loop, saved_step

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _save(self) -> None:
        """A checkpoint of the loop at the current step (every process takes part; process 0 writes)."""
        self.loop = self.loop._replace(time_s=self._elapsed())
        whole = _parallel.gather(self.loop)
        if self.primary:
            _checkpoint.save(self.checkpoints, whole, step=self.step, config=self.config)
        self.saved_step = self.step

    def _write(self, record: dict) -> None:
        if self.records is None:  # not process 0
            return
        self.records.write(json.dumps({**record, "time_s": self._elapsed()}, default=jsonable) + "\n")
        self.records.flush()

    def train(self, *, show_bar: bool) -> str:
        """Train until the last step, early stopping or a non-finite loss; returns that status."""
        self.bar = (
            bars.bar(total=self.config["steps"], initial=self.step, desc=self.task.name, unit="step")
            if show_bar
            else None
        )
        self.say = bars.writer(self.log, self.bar)
        try:
            with open(self.metrics_path, "a") if self.primary else contextlib.nullcontext() as self.records:
                return self._loop()
        except KeyboardInterrupt:
            if self.step != self.saved_step:
                self._save()
            self.say(f"interrupted at step {self.step}; checkpoint saved; run the same command again to resume")
            raise
        finally:
            if self.bar is not None:
                self.bar.close()

    def _loop(self) -> str:
        steps, patience = self.config["steps"], self.config["patience"]
        self.lap = (self.step, time.perf_counter())
        while True:
            if self._evaluation_due():
                self._evaluate()
            if self.step >= steps:
                return "done"
            if self.loop.bad_evals >= patience:
                metric = self.task.monitor[0]
                self.say(
                    f"early stopping at step {self.step}: {metric} has not improved for {patience} "
                    f"evaluations (best {self.loop.best:.4g} at step {self.loop.best_step})"
                )
                return "early_stopped"
            if not self._train_one():
                return "nonfinite"

    def _evaluation_due(self) -> bool:
        """At every ``eval_every``-th step and the last, once (a resumed run has evaluated its step)."""
        step, config = self.step, self.config
        due = step % config["eval_every"] == 0 or step == config["steps"]
        return step > 0 and due and self.loop.evaluated_step != step

    def _evaluate(self) -> None:
        """Validation metrics, the early-stopping record and a checkpoint at the current step."""
        metric, mode = self.task.monitor
        loop = self.loop
        self.last_val = train.evaluate(
            self.eval_step,
            loop.train.params,
            bars.nested(self.setup.eval_batches, self.bar, desc="evaluating", unit="batch"),
        )
        self._write({"step": self.step, "split": "val", **self.last_val})
        if metric not in self.last_val:
            raise RunError(f"task {self.task.name!r} monitors {metric!r}, but eval_fn gives {sorted(self.last_val)}.")
        es = train.EarlyStopping(None if loop.best_step < 0 else loop.best, loop.best_step, loop.bad_evals)
        es, _ = train.early_stopping_update(
            es, self.last_val[metric], self.step, patience=self.config["patience"], mode=mode
        )
        improved = es.best_step == self.step
        self.loop = loop._replace(
            best=math.nan if es.best is None else es.best,
            best_step=es.best_step,
            bad_evals=es.bad_evals,
            evaluated_step=self.step,
            best_params=loop.train.params if improved else loop.best_params,
        )
        self._save()
        self.say(_eval_line(self.step, self.config["steps"], self.last_val, metric, self.loop))

    def _train_one(self) -> bool:
        """One update; False (and nothing changed) when its loss or gradient is not finite."""
        batch = self.setup.train_batch(self.step)
        if self.warm_start and self.trajectories is None:
            self.trajectories = zero_trajectories(self.setup, self.loop.train, batch)
        carry = self.trajectories if self.warm_start else self.loop.carry
        new_train, new_carry, metrics = self.train_step(self.loop.train, carry, batch)
        if not bool(metrics["finite"]):
            kept = (
                f"the last good checkpoint (step {self.saved_step}) is kept"
                if self.saved_step is not None
                else "no checkpoint was saved yet"
            )
            self.say(f"loss became non-finite at step {self.step + 1}; stopped; {kept}")
            return False
        if self.warm_start:
            self.trajectories = new_carry
        else:
            self.loop = self.loop._replace(carry=new_carry)
        self.loop, self.step = self.loop._replace(train=new_train), self.step + 1
        if self.bar is not None:
            self.bar.update(1)
        if self.step % self.config["log_every"] == 0 or self.step == self.config["steps"]:
            self._log_train(metrics)
        return True

    def _log_train(self, metrics: dict) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "finite"}
        self._write({"step": self.step, "split": "train", **values})
        lap_step, lap_time = self.lap
        now = time.perf_counter()
        rate = (self.step - lap_step) / max(now - lap_time, 1e-9)
        self.lap = (self.step, now)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
        else:
            self.say(f"step {self.step}/{self.config['steps']}  loss {values['loss']:.4g}  ({rate:.1f} steps/s)")

    def finish(self, status: str) -> dict:
        """The report of the best parameters, the curves and ``summary.json``; returns the summary."""
        loop, metric = self.loop, self.task.monitor[0]
        elapsed = self._elapsed()
        report = None
        if status != "nonfinite" and self.primary:
            report_params = loop.best_params if loop.best_step >= 0 else loop.train.params
            # On one device, as without a mesh: the report's own jitted functions run locally.
            report = self.setup.report(
                report_params if self.mesh is None else jax.device_get(report_params), self.out_dir
            )
        if self.primary:
            _plot(self.metrics_path, self.out_dir, metric, self.task.name)
        summary = {
            "task": self.task.name,
            "status": status,
            "steps": self.step,
            "val": self.last_val,
            "best": {"metric": metric, "value": None if loop.best_step < 0 else loop.best, "step": loop.best_step},
            "report": report,
            "time_s": elapsed,
            "out": str(self.out_dir),
        }
        if self.primary:
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=jsonable) + "\n")
        self.log(_summary_line(summary))
        return summary


# --------------------------------------------------------------------------- output


def _mesh_line(mesh, batch_size: int) -> str:
    platform = mesh.devices.flat[0].platform
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    return (
        f"data parallel over {mesh.size} {platform} device{'s' if mesh.size > 1 else ''}{processes}: "
        f"batch {batch_size}, {batch_size // mesh.size} per device"
    )


def jsonable(value):
    """``json.dumps``'s ``default``: arrays as lists, anything else as its ``str``."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(value).tolist()
    return str(value)


def read_records(path: pathlib.Path) -> list:
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
    kept = [r for r in read_records(path) if r["step"] <= (step if r["split"] == "train" else evaluated_step)]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _last_val(path: pathlib.Path) -> dict | None:
    vals = [r for r in read_records(path) if r["split"] == "val"]
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
        scalars = {
            k: v for k, v in summary["report"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if scalars:
            text += "; report: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
    return text + f"; written to {summary['out']}"


def _plot(metrics_path: pathlib.Path, out_dir: pathlib.Path, metric: str, name: str) -> None:
    """``curves.png``: the train loss and the monitored validation metric against the step."""
    records = read_records(metrics_path)
    train_points = [(r["step"], r["loss"]) for r in records if r["split"] == "train" and "loss" in r]
    val_points = [(r["step"], r[metric]) for r in records if r["split"] == "val" and metric in r]
    fig, (left, right) = plotting.pyplot().subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axes, points, label in ((left, train_points, "train loss"), (right, val_points, f"validation {metric}")):
        if points:
            axes.plot(*zip(*points), marker="." if len(points) < 50 else None)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    fig.suptitle(name)
    plotting.save_figure(fig, out_dir, "curves.png")
