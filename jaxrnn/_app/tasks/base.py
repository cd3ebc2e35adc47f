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
``newton_max_iters``, ``newton_tol`` and ``warm_start`` (:func:`solver_option`, which
every ``model.apply`` of training and evaluation gets, through :func:`apply_rnn`);
some add their own (``length``, ``delay``, ``num_symbols``, ``window``). ``build``
checks the values it uses and raises a ``ValueError`` that names the command-line
option (``--batch-size`` for ``batch_size``).

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

# With a Newton solver and ``warm_start`` the loop passes loss_fn the previous step's
# trajectories as batch[GUESS] and takes this step's from its aux[TRAJECTORIES] (apply_rnn).
GUESS = "newton_guess"
TRAJECTORIES = "newton_trajectories"

# Seed streams of the generated tasks: one per purpose, so the validation and test
# batches are never training batches; the text task's split uses a fourth.
TRAIN, VALIDATION, TEST, SPLIT = 0, 1, 2, 3


class Setup(NamedTuple):
    """A task built for one config: the pure pieces of a training run."""

    init_params: Callable[[jax.Array], Any]  # key -> params (pure)
    train_batch: Callable[[int], dict]  # step -> batch, deterministic in (seed, step)
    # (params, batch, rng) -> (loss, aux), for train.make_train_step; with a carry, see initial_carry.
    # With a Newton solver aux holds its iterations, and with warm_start batch[GUESS] and
    # aux[TRAJECTORIES] the trajectories (apply_rnn).
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
      None without ``config["solver"]`` (:func:`jaxrnn.rnn`'s default); the name of
      a scan; or the Newton solver, with ``newton_max_iters`` and ``newton_tol`` if
      given (``jr.QuasiDEER(max_iters=..., tol=...)``).

    Raises:
      ValueError: naming the flag: an unknown solver, ``"parallel"`` for a cell
        without a linear recurrence, Newton options or ``warm_start`` without a
        Newton solver, or out of range.
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
    warm_start = config.get("warm_start", False)
    if not isinstance(warm_start, bool):
        raise ValueError(f"--warm-start is a switch (true or false in a config file), got {warm_start!r}")
    given = [key for key in ("newton_max_iters", "newton_tol") if config.get(key) is not None]
    given += ["warm_start"] if warm_start else []
    if name not in newton.NEWTON_NAMES:
        if given:
            has = "no --solver" if name is None else f"--solver {name}"
            raise ValueError(
                f"{' and '.join(map(option, given))} set a Newton solver's options, but the run has {has}; "
                f"add --solver {' | '.join(newton.NEWTON_NAMES)}"
            )
        return name
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


def apply_rnn(
    model: jr.StackedRNN, params: tuple, xs: jax.Array, lengths: jax.Array | None = None, *, solver: Any, batch=None
) -> tuple:
    """``(ys, aux)`` of ``model.apply(params, xs, lengths, solver=solver)``, for a loss_fn's aux.

    Args:
      model, params, xs, lengths: as in :meth:`jaxrnn.StackedRNN.apply`.
      solver: from :func:`solver_option`.
      batch: the batch of the call, or None. With ``batch[GUESS]`` (a training
        batch under ``--warm-start``) the Newton solver starts each layer from
        that trajectory (None: zeros) and ``aux[TRAJECTORIES]`` returns this call's.

    Returns:
      ``ys``, and ``aux``: ``{}`` unless ``solver`` is a Newton solver; then
      ``newton_iterations_mean`` and ``newton_iterations_max``, its iterations over
      the layers (and directions), and with a guess ``aux[TRAJECTORIES]``.
    """
    if not newton.is_newton(solver):
        return model.apply(params, xs, lengths, solver=solver)[0], {}
    warm = batch is not None and GUESS in batch
    if warm:
        solver = solver._replace(guess=batch[GUESS])
    ys, _, infos = model.apply(params, xs, lengths, solver=solver, return_info=True)
    solved = jax.tree_util.tree_leaves(infos, is_leaf=_is_info)
    iterations = jnp.stack([info.iterations for info in solved])
    aux = {"newton_iterations_mean": jnp.mean(iterations.astype(DTYPE)), "newton_iterations_max": jnp.max(iterations)}
    if warm:
        aux[TRAJECTORIES] = jax.tree_util.tree_map(lambda info: info.states, infos, is_leaf=_is_info)
    return ys, aux


def _is_info(value) -> bool:
    return isinstance(value, jr.SolverInfo)


def last_step(model: jr.StackedRNN, head: jr.Readout, solver: Any) -> Callable[..., tuple]:
    """``forward(params, xs [B, T, I], batch=None) -> ([B, O], aux)``: the readout of the last step's
    output, with ``solver``; ``batch`` and ``aux`` as in :func:`apply_rnn`."""

    def forward(params: Params, xs: jax.Array, batch=None) -> tuple:
        ys, aux = apply_rnn(model, params.rnn, xs, solver=solver, batch=batch)
        return head.apply(params.head, ys[:, -1]), aux

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
