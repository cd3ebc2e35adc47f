"""What every built-in task is made of: the :class:`Task` and :class:`Setup` interface,
the shared config keys and their checks, the model, and seeded batches.

A :class:`Task` is a name, a one-line summary, its config defaults, the validation
metric that early stopping watches, and ``build(config) -> Setup``. A
:class:`Setup` holds the pure pieces the training loop (:mod:`jaxrnn._app.trainer`)
needs: parameter init, a batch for each step, the loss, fixed validation batches
with their metrics, and the final report. The interface is fixed in
``docs/training-design.md``.

Every task reads the same shared config keys: ``cell`` (a name of
:data:`jaxrnn._app.cells.CELLS`), ``hidden``, ``layers``, ``steps``, ``batch_size``,
``learning_rate``, ``seed`` and ``eval_every``, and the optional ``solver``,
``newton_max_iters`` and ``newton_tol`` (:func:`solver_option`, which every
``model.apply`` of training and evaluation gets); some add their own (``length``,
``delay``, ``num_symbols``, ``window``). ``build`` checks the values it uses and
raises a ``ValueError`` that names the command-line option (``--batch-size`` for
``batch_size``).

Batches are dicts of NumPy arrays with a leading batch axis. ``train_batch(step)``
depends on ``(config["seed"], step)`` alone, so a resumed run sees the batches the
interrupted one would have seen. Training, validation and test data come from
different seeds (or, for the fixed data sets, different examples). Parameters and
inputs are float32 whatever JAX's default float is (:data:`DTYPE`), so a run is the
same with ``jax_enable_x64`` on or off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import train
from jaxrnn._app import cells
from jaxrnn._app.options import SOLVERS, option
from jaxrnn._core import newton
from jaxrnn._core.checks import check_positive_int

# The dtype of every task's parameters, inputs and carried state.
DTYPE = jnp.float32

# The config every task starts from; each task adds its own keys and sizes.
SHARED = {"cell": "lstm", "hidden": 64, "layers": 1, "seed": 0}

# Seed streams of the generated tasks: one per purpose, so the validation and test
# batches are never training batches; the text task's split uses a fourth.
TRAIN, VALIDATION, TEST, SPLIT = 0, 1, 2, 3


class Setup(NamedTuple):
    """A task built for one config: the pure pieces of a training run."""

    init_params: Callable[[jax.Array], Any]  # key -> params (pure)
    train_batch: Callable[[int], dict]  # step -> batch, deterministic in (seed, step)
    # (params, batch, rng) -> (loss, aux), for train.make_train_step; with a carry, see initial_carry.
    loss_fn: Callable[..., tuple]
    eval_batches: list  # fixed validation batches
    eval_fn: Callable[[Any, dict], dict]  # (params, batch) -> mean-type scalar metrics of the batch (jit-able)
    report: Callable[[Any, str], dict]  # (params, out_dir) -> final test metrics and baselines; writes plots
    # None: batches are independent. Otherwise the state carried from step to step
    # (charlm's recurrent state over a stream), and loss_fn is
    # (params, batch, carry, rng) -> (loss, carry); the loop checkpoints the carry.
    initial_carry: Any = None
    files: dict | None = None  # {name: text} the loop writes into out_dir before training


class Task(NamedTuple):
    """A built-in task: its name, defaults, early-stopping metric and ``build``."""

    name: str  # the name on the command line
    summary: str  # one line for ``jaxrnn tasks``
    defaults: dict  # the config a run starts from; the user's options override it
    monitor: tuple  # (validation metric name, "min" | "max") for early stopping
    build: Callable[[dict], Setup]  # config -> Setup


class Params(NamedTuple):
    """The parameters of every built-in task's model: a recurrent stack and a readout."""

    rnn: tuple  # per-layer cell params, from StackedRNN.init
    head: jr.ReadoutParams  # the readout on the last layer's outputs


# ------------------------------------------------------------------------ config checks


def int_option(config: dict, key: str, minimum: int = 1) -> int:
    """``config[key]`` as an int >= ``minimum``, else a ValueError naming its flag (``--batch-size``)."""
    return check_positive_int(config[key], option(key), minimum=minimum)


def model(config: dict, input_size: int) -> jr.StackedRNN:
    """The recurrent stack the shared keys describe, after checking them."""
    cells.check_cell(config["cell"])
    int_option(config, "seed", 0)
    int_option(config, "batch_size")
    return cells.stack(config["cell"], input_size, int_option(config, "hidden"), int_option(config, "layers"))


def solver_option(config: dict, rnn: jr.StackedRNN) -> Any:
    """The ``solver`` of ``rnn.apply`` that ``config`` asks for, after checking it.

    Returns:
      None without ``config["solver"]`` (:func:`jaxrnn.rnn`'s default); its name; or,
      with ``newton_max_iters`` or ``newton_tol``, the Newton solver with them
      (``jr.QuasiDEER(max_iters=..., tol=...)``).

    Raises:
      ValueError: naming the flag: an unknown solver, ``"parallel"`` for a cell
        without a linear recurrence, Newton options without a Newton solver, or
        out of range.
    """
    name = config.get("solver")
    if name is not None and name not in SOLVERS:
        raise ValueError(f"--solver must be one of {', '.join(SOLVERS)}, got {name!r}")
    if name == "parallel" and any(cell.recurrence is None for cell in rnn.cells):
        linear = [cell for cell, make in cells.CELLS.items() if make(1).recurrence is not None]
        raise ValueError(
            f"--solver parallel scans a linear recurrence, which --cell {config['cell']} does not have; "
            f"use a cell with one ({', '.join(linear)}), --solver sequential, or a Newton solver "
            f"({', '.join(newton.NEWTON_NAMES)})"
        )
    given = [key for key in ("newton_max_iters", "newton_tol") if config.get(key) is not None]
    if not given:
        return name
    if name not in newton.NEWTON_NAMES:
        has = "no --solver" if name is None else f"--solver {name}"
        raise ValueError(
            f"{' and '.join(map(option, given))} set a Newton solver's options, but the run has {has}; "
            f"add --solver {' | '.join(newton.NEWTON_NAMES)}"
        )
    settings: dict[str, Any] = {}
    if "newton_max_iters" in given:
        settings["max_iters"] = int_option(config, "newton_max_iters")
    if "newton_tol" in given:
        tol = config["newton_tol"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"--newton-tol must be a finite number >= 0, got {tol!r}")
        settings["tol"] = float(tol)
    return newton.NEWTON_NAMES[name](**settings)


def data_path(config: dict, task: str) -> str:
    """``config["data"]``, the user's file, else a ValueError asking for ``--data FILE``."""
    path = config.get("data")
    if path is None or path == "":
        raise ValueError(f"--data FILE is required for the {task} task")
    return os.fspath(path)


# ---------------------------------------------------------------------- model and data


def init(model: jr.StackedRNN, head: jr.Readout) -> Callable[[jax.Array], Params]:
    """``init_params(key) -> Params`` in :data:`DTYPE`."""

    def init_params(key: jax.Array) -> Params:
        k_rnn, k_head = jax.random.split(key)
        return Params(model.init(k_rnn, DTYPE), head.init(k_head, model.output_size, DTYPE))

    return init_params


def last_step(model: jr.StackedRNN, head: jr.Readout, solver: Any) -> Callable[[Params, jax.Array], jax.Array]:
    """``forward(params, xs [B, T, I]) -> [B, O]``, the readout of the last step's output, with ``solver``."""

    def forward(params: Params, xs: jax.Array) -> jax.Array:
        ys, _ = model.apply(params.rnn, xs, solver=solver)
        return head.apply(params.head, ys[:, -1])

    return forward


def stream_seed(seed: int, stream: int, index: int) -> int:
    """A seed for batch ``index`` of one stream (train, validation, test) of a run's seed."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def minibatch(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of step ``step``'s minibatch of a data set of ``n`` examples."""
    return np.random.default_rng((seed, step)).choice(n, size=min(batch_size, n), replace=False)


# How many sequences the generated tasks validate and test on, in batches of EVAL_BATCH.
EVAL_SEQUENCES, TEST_SEQUENCES, EVAL_BATCH = 512, 2048, 256


def generated_setup(model, head, batch, batch_size, loss_fn, eval_fn, report) -> Setup:
    """The Setup of a task with generated data: train, validation and test streams of ``batch``.

    ``batch(stream, index, size) -> dict``; ``report`` maps the test metrics
    (``eval_fn`` over the test stream) to the report.
    """

    def final_report(params, out_dir) -> dict:
        tests = [batch(TEST, i, EVAL_BATCH) for i in range(TEST_SEQUENCES // EVAL_BATCH)]
        return report(train.evaluate(train.make_eval_step(eval_fn), params, tests))

    return Setup(
        init_params=init(model, head),
        train_batch=lambda step: batch(TRAIN, step, batch_size),
        loss_fn=loss_fn,
        eval_batches=[batch(VALIDATION, i, EVAL_BATCH) for i in range(EVAL_SEQUENCES // EVAL_BATCH)],
        eval_fn=eval_fn,
        report=final_report,
    )
