"""The built-in training tasks: what ``jaxrnn train TASK`` trains and how it is judged.

A :class:`Task` is a name, a one-line summary, its config defaults, the validation
metric that early stopping watches, and ``build(config) -> Setup``. A
:class:`Setup` holds the pure pieces the training loop (:mod:`jaxrnn._trainer`)
needs: parameter init, a batch for each step, the loss, fixed validation batches
with their metrics, and the final report. The interface is fixed in
``docs/training-design.md``.

Every task reads the same shared config keys: ``cell`` (``"lstm"``, ``"gru"`` or
``"elman"``), ``hidden``, ``layers``, ``steps``, ``batch_size``, ``learning_rate``,
``seed`` and ``eval_every``; some add their own (``length``, ``delay``,
``num_symbols``, ``window``). ``build`` checks the values it uses and raises a
``ValueError`` that names the command-line option (``--batch-size`` for
``batch_size``).

Batches are dicts of NumPy arrays with a leading batch axis. ``train_batch(step)``
depends on ``(config["seed"], step)`` alone, so a resumed run sees the batches the
interrupted one would have seen. Training, validation and test data come from
different seeds (or, for the fixed data sets, different examples).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train

CELLS = {"lstm": jr.LSTM, "gru": jr.GRU, "elman": jr.RNN}

# Seed streams of the generated tasks: one per purpose, so the validation and test
# batches are never training batches.
_TRAIN, _VALIDATION, _TEST = 0, 1, 2


class Setup(NamedTuple):
    """A task built for one config: the pure pieces of a training run."""

    init_params: Callable[[jax.Array], Any]  # key -> params (pure)
    train_batch: Callable[[int], dict]  # step -> batch, deterministic in (seed, step)
    loss_fn: Callable[[Any, dict, jax.Array], tuple]  # (params, batch, rng) -> (loss, aux), for train.make_train_step
    eval_batches: list  # fixed validation batches
    eval_fn: Callable[[Any, dict], dict]  # (params, batch) -> mean-type scalar metrics of the batch (jit-able)
    report: Callable[[Any, str], dict]  # (params, out_dir) -> final test metrics and baselines; writes plots


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


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int(config: dict, name: str, minimum: int) -> int:
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{_option(name)} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{_option(name)} must be at least {minimum}, got {value}")
    return int(value)


def _model(config: dict, input_size: int) -> jr.StackedRNN:
    """The recurrent stack the shared keys describe, after checking them."""
    if config["cell"] not in CELLS:
        raise ValueError(f"--cell must be one of {', '.join(CELLS)}, got {config['cell']!r}")
    _int(config, "seed", 0)
    _int(config, "batch_size", 1)
    return CELLS[config["cell"]](input_size, _int(config, "hidden", 1), _int(config, "layers", 1))


def _stream_seed(seed: int, stream: int, index: int) -> int:
    """A seed for batch ``index`` of one stream (train, validation, test) of a run's seed."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _init(model: jr.StackedRNN, head: jr.Readout) -> Callable[[jax.Array], Params]:
    def init_params(key: jax.Array) -> Params:
        k_rnn, k_head = jax.random.split(key)
        return Params(model.init(k_rnn), head.init(k_head, model.output_size))

    return init_params


def _last_step(model: jr.StackedRNN, head: jr.Readout) -> Callable[[Params, jax.Array], jax.Array]:
    """``forward(params, xs [B, T, I]) -> [B, O]``, the readout of the last step's output."""

    def forward(params: Params, xs: jax.Array) -> jax.Array:
        ys, _ = model.apply(params.rnn, xs)
        return head.apply(params.head, ys[:, -1])

    return forward


def _save_figure(fig, out_dir, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(**kwargs)


# ------------------------------------------------------------------------------ adding

# How many sequences the adding and copy tasks validate and test on.
_EVAL_SEQUENCES, _TEST_SEQUENCES, _EVAL_BATCH = 512, 2048, 256


def _generated_setup(model, head, batch, batch_size, loss_fn, eval_fn, report) -> Setup:
    """The Setup of a task with generated data: train, validation and test streams of ``batch``.

    ``report`` maps the test metrics (``eval_fn`` over the test stream) to the report.
    """

    def final_report(params, out_dir) -> dict:
        tests = [batch(_TEST, i, _EVAL_BATCH) for i in range(_TEST_SEQUENCES // _EVAL_BATCH)]
        return report(train.evaluate(train.make_eval_step(eval_fn), params, tests))

    return Setup(
        init_params=_init(model, head),
        train_batch=lambda step: batch(_TRAIN, step, batch_size),
        loss_fn=loss_fn,
        eval_batches=[batch(_VALIDATION, i, _EVAL_BATCH) for i in range(_EVAL_SEQUENCES // _EVAL_BATCH)],
        eval_fn=eval_fn,
        report=final_report,
    )


def _build_adding(config: dict) -> Setup:
    length = _int(config, "length", 2)
    model = _model(config, 2)
    seed, batch_size = config["seed"], config["batch_size"]
    head = jr.readout(1)
    forward = _last_step(model, head)

    def batch(stream: int, index: int, size: int) -> dict:
        xs, targets = data.adding(_stream_seed(seed, stream, index), size, length)
        return {"xs": xs, "targets": targets}

    def loss_fn(params, batch, rng):
        return train.mse(forward(params, batch["xs"])[:, 0], batch["targets"]), {}

    def eval_fn(params, batch):
        return {"mse": train.mse(forward(params, batch["xs"])[:, 0], batch["targets"])}

    def report(test: dict) -> dict:
        return {"test_mse": test["mse"], "baseline_mse": data.ADDING_BASELINE_MSE}

    return _generated_setup(model, head, batch, batch_size, loss_fn, eval_fn, report)


# -------------------------------------------------------------------------------- copy


def _build_copy(config: dict) -> Setup:
    length = _int(config, "length", 1)
    delay = _int(config, "delay", 1)
    num_symbols = _int(config, "num_symbols", 1)
    model = _model(config, num_symbols + 2)
    seed, batch_size = config["seed"], config["batch_size"]
    head = jr.readout(num_symbols + 1)  # the blank and the symbols; the delimiter is never a target

    def batch(stream: int, index: int, size: int) -> dict:
        xs, targets, mask = data.copy_task(_stream_seed(seed, stream, index), size, num_symbols, length, delay)
        return {"xs": xs, "targets": targets, "mask": mask}

    def logits(params, xs):
        ys, _ = model.apply(params.rnn, xs)
        return head.apply(params.head, ys)

    def loss_fn(params, batch, rng):
        return train.cross_entropy(logits(params, batch["xs"]), batch["targets"], batch["mask"]), {}

    def eval_fn(params, batch):
        z = logits(params, batch["xs"])
        return {"loss": train.cross_entropy(z, batch["targets"], batch["mask"]),
                "accuracy": train.accuracy(z, batch["targets"], batch["mask"])}

    def report(test: dict) -> dict:
        return {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                "chance_accuracy": 1.0 / num_symbols, "chance_loss": math.log(num_symbols)}

    return _generated_setup(model, head, batch, batch_size, loss_fn, eval_fn, report)


# ---------------------------------------------------------------------------- sunspots


def _minibatch(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of step ``step``'s minibatch of a data set of ``n`` examples."""
    return np.random.default_rng((seed, step)).choice(n, size=min(batch_size, n), replace=False)


def _build_sunspots(config: dict) -> Setup:
    window = _int(config, "window", 1)
    model = _model(config, 1)
    seed, batch_size = config["seed"], config["batch_size"]
    try:
        splits = data.sunspots(window)
    except ValueError as e:
        raise ValueError(f"--window {window} is too long for the 309 yearly values: {e}") from None
    std = splits.scaler.std
    head = jr.readout(1)
    forward = _last_step(model, head)

    def as_batch(split, indices=slice(None)) -> dict:
        return {"xs": split.xs[indices], "targets": split.ys[indices]}

    def loss_fn(params, batch, rng):
        return train.mse(forward(params, batch["xs"])[:, 0], batch["targets"]), {}

    def eval_fn(params, batch):
        # RMSE in sunspot numbers: the scaled error times the training split's std.
        return {"rmse": train.rmse(forward(params, batch["xs"])[:, 0], batch["targets"]) * std}

    def report(params, out_dir) -> dict:
        test = splits.test
        predicted = splits.scaler.unscale(jax.jit(forward)(params, test.xs)[:, 0])
        truth = splits.scaler.unscale(test.ys)
        fig, ax = _figure(figsize=(8, 4))
        ax.plot(test.times, truth, "k.-", label="observed")
        ax.plot(test.times, predicted, "C1.-", label=f"{config['cell']} forecast")
        ax.plot(test.times, splits.scaler.unscale(test.xs[:, -1, 0]), "C2:", label="persistence (last year)")
        ax.set(xlabel="year", ylabel="sunspot number", title="one-year-ahead forecast, test years")
        ax.legend()
        return {"test_rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
                "persistence_rmse": data.persistence_rmse(test),
                "plot": _save_figure(fig, out_dir, "forecast.png")}

    return Setup(
        init_params=_init(model, head),
        train_batch=lambda step: as_batch(splits.train, _minibatch(seed, step, len(splits.train.ys), batch_size)),
        loss_fn=loss_fn,
        eval_batches=[as_batch(splits.val)],
        eval_fn=eval_fn,
        report=report,
    )


# ------------------------------------------------------------------------------ digits

# The share of the digits' training split held out for validation.
_DIGITS_VALIDATION = 0.2


def _build_digits(config: dict) -> Setup:
    model = _model(config, 8)
    seed, batch_size = config["seed"], config["batch_size"]
    digits = data.digits(by="rows")
    classes = digits.num_classes
    # data.digits shuffles before splitting, so the tail of its train split is a fair hold-out.
    n_fit = len(digits.train.labels) - round(_DIGITS_VALIDATION * len(digits.train.labels))
    fit = data.Labelled(digits.train.xs[:n_fit], digits.train.labels[:n_fit])
    val = data.Labelled(digits.train.xs[n_fit:], digits.train.labels[n_fit:])
    head = jr.readout(classes)
    forward = _last_step(model, head)

    def train_batch(step: int) -> dict:
        indices = _minibatch(seed, step, n_fit, batch_size)
        return {"xs": fit.xs[indices], "labels": fit.labels[indices]}

    def loss_fn(params, batch, rng):
        return train.cross_entropy(forward(params, batch["xs"]), batch["labels"]), {}

    def eval_fn(params, batch):
        return {"accuracy": train.accuracy(forward(params, batch["xs"]), batch["labels"])}

    def report(params, out_dir) -> dict:
        test = digits.test
        predicted = np.asarray(jnp.argmax(jax.jit(forward)(params, test.xs), axis=-1)).astype(np.int32)
        confusion = np.asarray(train.confusion_matrix(predicted, test.labels, classes))
        scores = train.precision_recall_f1(predicted, test.labels, classes)
        fig, ax = _figure(figsize=(5, 5))
        ax.imshow(confusion, cmap="Blues")
        for (row, col), count in np.ndenumerate(confusion):
            ax.text(col, row, str(count), ha="center", va="center",
                    color="white" if count > confusion.max() / 2 else "black")
        ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes),
               title="digits, test split")
        return {"test_accuracy": float(np.mean(predicted == test.labels)),
                "test_macro_f1": float(scores.f1),
                "chance_accuracy": 1.0 / classes,
                "confusion_matrix": confusion.tolist(),
                "plot": _save_figure(fig, out_dir, "confusion.png")}

    return Setup(
        init_params=_init(model, head),
        train_batch=train_batch,
        loss_fn=loss_fn,
        eval_batches=[{"xs": val.xs, "labels": val.labels}],
        eval_fn=eval_fn,
        report=report,
    )


# ---------------------------------------------------------------------------- registry

_SHARED = {"cell": "lstm", "hidden": 64, "layers": 1, "seed": 0}

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "adding",
            "the adding problem: sum the two marked values among T (MSE; predicting the mean scores 1/6)",
            # Sized for a visible result in about a minute on 2 shared CPU cores: there an
            # LSTM step at T=100 takes ~29 ms; seed 0 passes the 1/6 plateau near step 300
            # and reaches test MSE 0.0003 by step 1000 (31 s); seed 1 reaches 0.002 by 600.
            {**_SHARED, "length": 100, "steps": 1500, "batch_size": 64, "learning_rate": 1e-2, "eval_every": 100},
            ("mse", "min"),
            _build_adding,
        ),
        Task(
            "copy",
            "the copy task: recall a sequence of symbols after a delay (accuracy; chance is 1/num_symbols)",
            # ~9 ms a step at T=50 on 2 shared CPU cores: test accuracy 0.80 after 1000
            # steps (13 s), 0.97 after 3000 (27 s).
            {**_SHARED, "length": 10, "delay": 20, "num_symbols": 8, "steps": 4000, "batch_size": 64,
             "learning_rate": 1e-2, "eval_every": 200},
            ("loss", "min"),
            _build_copy,
        ),
        Task(
            "sunspots",
            "yearly sunspot numbers, one year ahead (RMSE; the baseline repeats the last year)",
            # 206 training windows overfit fast: validation RMSE is best near step 250 (3 s),
            # test RMSE 25.9 against persistence's 29.1 at step 500.
            {**_SHARED, "hidden": 32, "window": 20, "steps": 400, "batch_size": 32, "learning_rate": 3e-3,
             "eval_every": 25},
            ("rmse", "min"),
            _build_sunspots,
        ),
        Task(
            "digits",
            "8x8 handwritten digits read row by row (accuracy, macro F1, confusion matrix)",
            # 1000 steps take 6 s on 2 shared CPU cores: test accuracy 0.972, macro F1 0.972.
            {**_SHARED, "steps": 1000, "batch_size": 64, "learning_rate": 3e-3, "eval_every": 100},
            ("accuracy", "max"),
            _build_digits,
        ),
    )
}
