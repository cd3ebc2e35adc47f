"""The ``jaxrnn`` command (also ``python -m jaxrnn``).

- ``jaxrnn`` or ``jaxrnn demo``: a short demo that trains a small model;
- ``jaxrnn train`` / ``tasks``: training on the built-in tasks and users' CSV data
  (:mod:`jaxrnn._app.trainer`, :mod:`jaxrnn._app.tasks`);
- ``jaxrnn sweep`` / ``compare`` (:mod:`jaxrnn._app.sweep`) and ``jaxrnn generate``
  (:mod:`jaxrnn._app.generate`);
- ``jaxrnn bench``: the benchmark suite (:mod:`jaxrnn._bench`).

Each command imports its modules when it runs, so ``jaxrnn demo`` stays light.
``train``, ``sweep`` and ``compare`` need matplotlib and tqdm (the ``tasks``
extra); without them they say what to install.

The demo trains a recurrent network on the adding problem (two marked values among T
random ones; the target is their sum; :func:`jaxrnn.data.adding`) with the train step
of :mod:`jaxrnn.train` (Optax Adam with gradient clipping) and the hand-written BPTT,
and prints the loss as it falls. The MSE of always predicting the mean is 1/6.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn import data
from jaxrnn import train as training
from jaxrnn._app import cells, options
from jaxrnn._app.options import RunError

# ------------------------------------------------------------------------------ demo


def train(
    cell: str = "lstm",
    *,
    steps: int = 400,
    length: int = 30,
    hidden: int = 32,
    batch: int = 64,
    learning_rate: float = 1e-2,
    seed: int = 0,
    log_every: int = 50,
    out=sys.stdout,
) -> list:
    """Train on the adding problem with :mod:`jaxrnn.train`; returns ``[(step, loss), ...]`` as printed."""
    model = cells.stack(cell, input_size=2, hidden_size=hidden)
    head = jr.readout(1)
    k_model, k_head, k_state = jax.random.split(jax.random.PRNGKey(seed), 3)
    # float32 as data.adding's inputs, whatever JAX's default float is.
    params = (model.init(k_model, jnp.float32), head.init(k_head, model.output_size, jnp.float32))

    def loss_fn(params, batch, rng):
        rnn_params, head_params = params
        ys, _ = model.apply(rnn_params, batch["xs"])
        prediction = head.apply(head_params, ys[:, -1])[:, 0]
        return training.mse(prediction, batch["targets"]), {}

    optimizer = training.default_optimizer(learning_rate)
    state = training.init_state(params, optimizer, k_state)
    train_step = training.make_train_step(loss_fn, optimizer)

    print(
        f"adding problem, T={length}: {cell} with {hidden} units, batch {batch}, {steps} Adam steps "
        f"(predicting the mean scores {data.ADDING_BASELINE_MSE:.3f})",
        file=out,
    )
    history, start, running = [], time.perf_counter(), []
    for step in range(1, steps + 1):
        xs, targets = data.adding(seed * 1_000_003 + step, batch, length)
        state, metrics = train_step(state, {"xs": xs, "targets": targets})
        running.append(metrics["loss"])
        if step % log_every == 0 or step == steps:
            mean = float(jnp.mean(jnp.stack(running)))
            running = []
            history.append((step, mean))
            print(f"step {step:5d}  train MSE {mean:.4f}  ({time.perf_counter() - start:.1f} s)", file=out)
    return history


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cell",
        type=options.argument_type(cells.check_cell),
        default="lstm",
        help=f"recurrent cell: {', '.join(cells.CELLS)} (default lstm)",
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--length", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    for name in ("steps", "length", "hidden"):
        if getattr(args, name) < (2 if name == "length" else 1):
            parser.error(f"--{name} must be at least {2 if name == 'length' else 1}, got {getattr(args, name)}")
    train(
        args.cell,
        steps=args.steps,
        length=args.length,
        hidden=args.hidden,
        seed=args.seed,
        log_every=max(1, args.steps // 8),
    )
    return 0


# ---------------------------------------------------------------------- train, tasks

_TRAIN_HELPS = {
    "cell": f"recurrent cell: {', '.join(cells.CELLS)}",
    "hidden": "hidden units per layer",
    "layers": "stacked layers",
    "steps": "training steps",
    "batch_size": "examples per batch",
    "learning_rate": "Adam's learning rate",
    "length": "sequence length (adding), symbols to copy (copy), characters per chunk (charlm)",
    "seed": "random seed",
    "eval_every": "steps between evaluations and checkpoints",
    "window": "past values per forecast (sunspots)",
    "delay": "blank steps before recall (copy)",
    "num_symbols": "alphabet size (copy)",
    "text": "a UTF-8 text file to model (charlm)",
    "data": "your CSV file: a numeric series (series) or label,text rows (text)",
    "column": "the series' column, by header name or 0-based index (series)",
    "solver": "how the recurrent layers cover time in training and evaluation: sequential, parallel (a cell "
    f"with a linear recurrence) or a Newton solver for any cell, {', '.join(options.NEWTON_SOLVERS)}",
    "newton_max_iters": "the most iterations of a Newton --solver",
    "newton_tol": "a Newton --solver stops once no step's residual exceeds it",
    "warm_start": "start each training step's Newton --solver from the previous step's trajectories (evaluation "
    "and the first step of a run or a resumed session start from zeros; not for charlm)",
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn train`` to ``parser``; flags left out stay None."""
    parser.add_argument("--task", help=f"the task to train on (see `jaxrnn tasks`; default {options.DEFAULT_TASK})")
    options.add_flag_arguments(parser, _TRAIN_HELPS)
    parser.add_argument(
        "--config",
        type=pathlib.Path,
        default=None,
        metavar="FILE",
        help="a JSON object of config keys (a run's config.json works); command-line values win",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        metavar="DIR",
        help="the run's folder (default runs/TASK-CELL); an existing run there is resumed",
    )
    options.add_parallel_arguments(
        parser,
        what="the batch is split over them and they must divide --batch-size "
        "(default: one device, or all with more than one process)",
    )
    scale = parser.add_argument_group(
        "more than one process (jax.distributed): run the same command on every host; process 0 writes --out"
    )
    scale.add_argument(
        "--coordinator-address",
        default=None,
        metavar="HOST:PORT",
        help="process 0's address and a free port (default: $JAX_COORDINATOR_ADDRESS)",
    )
    scale.add_argument(
        "--num-processes",
        type=int,
        default=None,
        metavar="N",
        help="how many processes take part (default: $JAX_NUM_PROCESSES)",
    )
    scale.add_argument(
        "--process-id",
        type=int,
        default=None,
        metavar="I",
        help="this process's index, 0 to N-1 (default: $JAX_PROCESS_ID)",
    )
    scale.add_argument(
        "--distributed",
        action="store_true",
        help="initialise jax.distributed even without the options above, letting JAX detect "
        "the cluster (Cloud TPU slices, SLURM, Open MPI, Kubernetes)",
    )


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


def _mesh(args: argparse.Namespace) -> jax.sharding.Mesh | None:
    """Initialise jax.distributed if asked to, then the mesh of ``--devices``; None for one device."""
    from jaxrnn.train import _parallel

    try:
        distributed = _parallel.initialize_distributed(
            args.coordinator_address, args.num_processes, args.process_id, required=args.distributed
        )
        devices = args.devices if args.devices is not None else ("all" if distributed else None)
        return None if devices is None else _parallel.make_mesh(devices, name="--devices")
    except ValueError as error:
        raise RunError(str(error)) from error


def main_train(args: argparse.Namespace, tasks: dict | None = None, *, log: Callable[[str], Any] = print) -> int:
    """``jaxrnn train``: build the config from the task's defaults, ``--config`` and the flags given; run it.

    Returns:
      The exit code: 0 when the run is done or stopped early, 1 when it stopped on a
      non-finite loss, 2 for a usage error (printed as ``jaxrnn train: error: ...``),
      130 when interrupted (a checkpoint is saved; the same command resumes).
    """
    from jaxrnn._app import trainer

    try:
        tasks = _tasks() if tasks is None else tasks
        mesh = _mesh(args)
        overrides = {} if args.config is None else _read_config_file(args.config)
        task = options.task_named(args.task if args.task is not None else overrides.get("task"), tasks)
        overrides.pop("task", None)
        overrides.update(options.flag_overrides(args))
        out = args.out
        if out is None:
            cell = {**task.defaults, **overrides}.get("cell")
            out = pathlib.Path("runs") / (f"{task.name}-{cell}" if cell else task.name)
        summary = trainer.run(task, overrides, out, log=log, mesh=mesh)
    except RunError as error:
        print(f"jaxrnn train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1 if summary["status"] == "nonfinite" else 0


def _tasks() -> dict:
    from jaxrnn._app.tasks import TASKS

    return TASKS


def main_tasks(tasks: dict | None = None, *, out=None) -> int:
    """``jaxrnn tasks``: each task's name, summary, monitored metric and defaults; returns 0."""
    tasks = _tasks() if tasks is None else tasks
    out = sys.stdout if out is None else out
    for task in tasks.values():
        metric, mode = task.monitor
        print(f"{task.name}: {task.summary}", file=out)
        defaults = ", ".join(f"{k}={v}" for k, v in task.defaults.items())
        print(f"    defaults: {defaults}; early stopping on validation {metric} ({mode})", file=out)
    return 0


# ------------------------------------------------------------------------------ main


def _parser() -> tuple:
    """The parser and its subparsers by command name, without the commands' own options."""
    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="jaxrnn: recurrent networks in JAX. Without a command, runs the demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {
        "demo": commands.add_parser(
            "demo",
            help="train a small network on the adding problem and print its loss (default)",
            description="Train a small recurrent network on the adding problem and print its loss.",
        ),
        "bench": commands.add_parser(
            "bench",
            help="throughput and memory against flax, cuDNN and PyTorch",
            description="Time jaxrnn against its peers on the same weights and inputs; writes JSON, a markdown "
            "table and plots.",
        ),
        "train": commands.add_parser(
            "train",
            help="train a model on a built-in task (default: the adding problem, about a minute)",
            description="Train a recurrent network on a built-in task with progress, metrics, plots and "
            "checkpoints; running the same command again resumes the run.",
        ),
        "tasks": commands.add_parser(
            "tasks",
            help="list the built-in tasks and their defaults",
            description="List the built-in tasks, their defaults and the metric they stop early on.",
        ),
        "sweep": commands.add_parser(
            "sweep",
            help="train one task at several hidden sizes: validation metric and time per size",
            description="How to choose the hidden size: train the task at each size; writes a table and a plot.",
        ),
        "compare": commands.add_parser(
            "compare",
            help="train several cells on one task and plot their validation curves together",
            description="Train each cell on the same task and config; one figure of their validation curves.",
        ),
        "generate": commands.add_parser(
            "generate",
            help="sample text from a trained charlm run",
            description="Sample text from the latest checkpoint of a charlm run, with a temperature.",
        ),
    }
    _add_demo_arguments(subparsers["demo"])
    return parser, subparsers


def _add_arguments(command: str, subparsers: dict) -> None:
    """The options of ``command`` only: each imports its command's modules."""
    if command == "bench":
        from jaxrnn._bench import command as bench

        bench.add_arguments(subparsers["bench"])
    elif command == "train":
        add_train_arguments(subparsers["train"])
    elif command == "generate":
        from jaxrnn._app import generate

        generate.add_arguments(subparsers["generate"])
    elif command in ("sweep", "compare"):
        from jaxrnn._app import sweep

        sweep.add_sweep_arguments(subparsers["sweep"])
        sweep.add_compare_arguments(subparsers["compare"])


def main(argv=None) -> int:
    """Run the ``jaxrnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, subparsers = _parser()
    _add_arguments(argv[0] if argv else "demo", subparsers)
    args = parser.parse_args(argv or ["demo"])
    if args.command in ("train", "sweep", "compare"):
        try:
            options.require(f"jaxrnn {args.command}")
        except RunError as error:
            print(error, file=sys.stderr)
            return 2
    if args.command == "train":
        return main_train(args)
    if args.command == "tasks":
        return main_tasks()
    if args.command == "generate":
        from jaxrnn._app import generate

        return generate.main(args)
    if args.command in ("sweep", "compare"):
        from jaxrnn._app import sweep

        return sweep.main_sweep(args) if args.command == "sweep" else sweep.main_compare(args)
    if args.command == "bench":
        from jaxrnn._bench import command as bench

        return bench.main(subparsers["bench"], args)
    return _demo(subparsers["demo"], args)
