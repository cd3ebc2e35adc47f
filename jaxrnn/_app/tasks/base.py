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

``charlm`` is the one task whose model carries state from batch to batch
(truncated BPTT over a stream): its Setup has an ``initial_carry`` and a
``loss_fn(params, batch, carry, rng) -> (loss, carry)``; see ``docs/training-design.md``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any, Callable, NamedTuple, Optional

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
    # None: batches are independent. Otherwise the state carried from step to step
    # (charlm's recurrent state over a stream), and loss_fn is
    # (params, batch, carry, rng) -> (loss, carry); the loop checkpoints the carry.
    initial_carry: Any = None
    files: Optional[dict] = None  # {name: text} the loop writes into out_dir before training


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
    pyplot().close(fig)
    return name


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (runs need no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(**kwargs):
    return pyplot().subplots(**kwargs)


def _classification_report(predicted, truth, classes: int, out_dir, *, title: str, class_names=None) -> dict:
    """Test accuracy, macro F1, the confusion matrix and its plot ``confusion.png``."""
    confusion = np.asarray(train.confusion_matrix(predicted, truth, classes))
    scores = train.precision_recall_f1(predicted, truth, classes)
    size = 5 if class_names is None else 1.5 + 0.6 * classes
    fig, ax = _figure(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > confusion.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes), title=title)
    if class_names is not None:
        ax.set(xticklabels=class_names, yticklabels=class_names)
        ax.tick_params(axis="x", labelrotation=90)
    return {"test_accuracy": float(np.mean(predicted == truth)),
            "test_macro_f1": float(scores.f1),
            "confusion_matrix": confusion.tolist(),
            "plot": _save_figure(fig, out_dir, "confusion.png")}


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


def _series_setup(config: dict, splits: data.SeriesData, *, xlabel: str, ylabel: str, title: str,
                  persistence_label: str) -> Setup:
    """One-step forecasting of a windowed series (sunspots, users' CSV series)."""
    model = _model(config, 1)
    seed, batch_size = config["seed"], config["batch_size"]
    std = splits.scaler.std
    head = jr.readout(1)
    forward = _last_step(model, head)

    def as_batch(split, indices=slice(None)) -> dict:
        return {"xs": split.xs[indices], "targets": split.ys[indices]}

    def loss_fn(params, batch, rng):
        return train.mse(forward(params, batch["xs"])[:, 0], batch["targets"]), {}

    def eval_fn(params, batch):
        # RMSE in the series' units: the scaled error times the training split's std.
        return {"rmse": train.rmse(forward(params, batch["xs"])[:, 0], batch["targets"]) * std}

    def report(params, out_dir) -> dict:
        test = splits.test
        predicted = splits.scaler.unscale(jax.jit(forward)(params, test.xs)[:, 0])
        truth = splits.scaler.unscale(test.ys)
        fig, ax = _figure(figsize=(8, 4))
        ax.plot(test.times, truth, "k.-", label="observed")
        ax.plot(test.times, predicted, "C1.-", label=f"{config['cell']} forecast")
        ax.plot(test.times, splits.scaler.unscale(test.xs[:, -1, 0]), "C2:", label=persistence_label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
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


def _build_sunspots(config: dict) -> Setup:
    window = _int(config, "window", 1)
    try:
        splits = data.sunspots(window)
    except ValueError as e:
        raise ValueError(f"--window {window} is too long for the 309 yearly values: {e}") from None
    return _series_setup(config, splits, xlabel="year", ylabel="sunspot number",
                         title="one-year-ahead forecast, test years", persistence_label="persistence (last year)")


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
        report = _classification_report(predicted, test.labels, classes, out_dir, title="digits, test split")
        return {**report, "chance_accuracy": 1.0 / classes}

    return Setup(
        init_params=_init(model, head),
        train_batch=train_batch,
        loss_fn=loss_fn,
        eval_batches=[{"xs": val.xs, "labels": val.labels}],
        eval_fn=eval_fn,
        report=report,
    )


# ------------------------------------------------------------------------------ charlm

# The stream's split, in order: the first 90% trains, the next 5% validates, the last 5% tests.
_CHARLM_SPLIT = (0.9, 0.05)
# Validation and test streams are cut into at most this many rows, each run in one pass.
_CHARLM_EVAL_ROWS = 16
# The report's samples: this many characters at each temperature, after a prompt of
# the first _CHARLM_PROMPT characters of the test split.
_CHARLM_SAMPLE_LENGTH, _CHARLM_TEMPERATURES, _CHARLM_PROMPT = 200, (0.5, 0.8, 1.0), 32
# What a charlm run writes into its folder so `jaxrnn generate` works without the text.
VOCAB_FILE = "vocab.json"


def charlm_model(config: dict, vocab_size: int) -> tuple:
    """``(model, head, init_params)`` of a charlm config: one-hot characters in, logits out."""
    model, head = _model(config, vocab_size), jr.readout(vocab_size)
    return model, head, _init(model, head)


def _rows(tokens: np.ndarray, length: int) -> np.ndarray:
    """``tokens`` cut into up to _CHARLM_EVAL_ROWS contiguous rows of at least ``length + 1``."""
    count = max(1, min(_CHARLM_EVAL_ROWS, len(tokens) // (length + 1)))
    return tokens[: count * (len(tokens) // count)].reshape(count, -1)


def _bpc_fn(model, head) -> Callable[[Params, dict], dict]:
    """Bits per character of next-character prediction over whole rows ``[R, M]``.

    One pass over a row equals carrying the state across its chunks
    (:func:`jaxrnn.train.stream_forward`), without the chunk loop.
    """

    def eval_fn(params: Params, batch: dict) -> dict:
        tokens = batch["tokens"]
        xs = jax.nn.one_hot(tokens[:, :-1], model.input_size, dtype=jnp.float32)
        ys, _ = model.apply(params.rnn, xs)
        return {"bpc": train.cross_entropy(head.apply(params.head, ys), tokens[:, 1:]) / math.log(2)}

    return eval_fn


def sample(model, head, params: Params, vocab: data.CharVocab, prompt: str, length: int, temperature: float,
           key: jax.Array) -> str:
    """``length`` characters that follow ``prompt``, drawn one at a time.

    The prompt runs through ``model.apply`` from zero state; then each step draws a
    character with ``jax.random.categorical(key, logits / temperature)`` and feeds
    it back with ``model.apply`` on that one step from the carried state.

    Args:
      model, head, params: from :func:`charlm_model` (``params`` trained or not).
      vocab: the run's vocabulary; every character of ``prompt`` must be in it.
      prompt: a non-empty text to continue.
      length: how many characters to draw.
      temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
      key: PRNG key; the same key gives the same text.

    Returns:
      The drawn characters (without the prompt).
    """
    ids = jnp.asarray(vocab.encode(prompt))[None]
    return vocab.decode(np.asarray(_draw(model, head, length)(params, ids, jnp.float32(temperature), key)))


@functools.lru_cache(maxsize=16)
def _draw(model, head, length: int):
    def one_hot(ids):
        return jax.nn.one_hot(ids, model.input_size, dtype=jnp.float32)

    def draw(params, ids, temperature, key):
        ys, state = model.apply(params.rnn, one_hot(ids))
        logits = head.apply(params.head, ys[:, -1])

        def step(carry, key):
            state, logits = carry
            token = jax.random.categorical(key, logits / temperature)
            ys, state = model.apply(params.rnn, one_hot(token[:, None]), state=state)
            return (state, head.apply(params.head, ys[:, -1])), token[0]

        _, tokens = jax.lax.scan(step, (state, logits), jax.random.split(key, length))
        return tokens

    return jax.jit(draw)


def _build_charlm(config: dict) -> Setup:
    length = _int(config, "length", 1)
    text = data.load_text(config.get("text"))
    vocab = data.CharVocab.from_text(text)
    tokens = vocab.encode(text)
    model, head, init_params = charlm_model(config, vocab.size)
    batch_size = config["batch_size"]
    n_train = int(_CHARLM_SPLIT[0] * len(tokens))
    n_val = int(_CHARLM_SPLIT[1] * len(tokens))
    splits = tokens[:n_train], tokens[n_train:n_train + n_val], tokens[n_train + n_val:]
    where = "the default corpus" if config.get("text") is None else f"--text {config['text']}"
    if n_train // batch_size < length + 1:
        raise ValueError(
            f"{where} has {len(tokens)} characters; its training 90% ({n_train}) cut into --batch-size "
            f"{batch_size} rows is shorter than one chunk of --length {length} + 1; use a longer text, a "
            f"smaller --batch-size or a shorter --length")
    if min(len(splits[1]), len(splits[2])) < 2:
        raise ValueError(f"{where} has {len(tokens)} characters, too few for validation and test splits of "
                         f"5% with at least 2 characters each; use a longer text")
    chunks = np.asarray(train.stream_chunks(splits[0], batch_size, length))  # [num_chunks, B, L + 1]
    eval_fn = _bpc_fn(model, head)
    prompt = vocab.decode(splits[2][:_CHARLM_PROMPT])

    def train_batch(step: int) -> dict:
        # The stream wraps around after its last chunk; the carry restarts from zeros there.
        index = step % len(chunks)
        return {"tokens": chunks[index], "reset": np.asarray(index == 0)}

    def loss_fn(params: Params, batch: dict, carry, rng):
        carry = jax.tree_util.tree_map(lambda c: jnp.where(batch["reset"], jnp.zeros_like(c), c), carry)
        tokens = batch["tokens"]
        xs = jax.nn.one_hot(tokens[:, :-1], vocab.size, dtype=jnp.float32)
        logits, carry = train.stream_forward(model, head, train.StreamParams(params.rnn, params.head), xs, carry)
        return train.cross_entropy(logits, tokens[:, 1:]), carry

    def report(params: Params, out_dir) -> dict:
        test = train.evaluate(train.make_eval_step(eval_fn), params, [{"tokens": _rows(splits[2], length)}])
        counts = np.bincount(splits[0], minlength=vocab.size)
        p = counts[counts > 0] / counts.sum()
        keys = jax.random.split(jax.random.key(config["seed"]), len(_CHARLM_TEMPERATURES))
        samples = {str(t): sample(model, head, params, vocab, prompt, _CHARLM_SAMPLE_LENGTH, t, k)
                   for t, k in zip(_CHARLM_TEMPERATURES, keys)}
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "samples.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"--- temperature {t} ---\n{prompt}{s}\n" for t, s in samples.items())
        return {"test_bpc": test["bpc"], "unigram_bpc": float(-(p * np.log2(p)).sum()),
                "prompt": prompt, "samples": samples}

    return Setup(
        init_params=init_params,
        train_batch=train_batch,
        loss_fn=loss_fn,
        eval_batches=[{"tokens": _rows(splits[1], length)}],
        eval_fn=eval_fn,
        report=report,
        initial_carry=model.initial_state((batch_size,)),
        files={VOCAB_FILE: json.dumps({"chars": vocab.chars, "prompt": prompt}) + "\n"},
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
        Task(
            "charlm",
            "character language model, truncated BPTT over a text (bits per character; --text FILE)",
            # 1200 steps take 56 s on 2 shared CPU cores (~20 steps/s): on the default corpus test
            # bpc 2.65 against a unigram entropy of 4.73 bits; validation bpc 3.05 (the validation
            # 5% is harder text than the test 5%: indented lists of names).
            {**_SHARED, "hidden": 128, "length": 64, "steps": 1200, "batch_size": 32, "learning_rate": 5e-3,
             "eval_every": 200},
            ("bpc", "min"),
            _build_charlm,
        ),
    )
}


# Users' own CSV data; those tasks build on the helpers above, so they register last.
from jaxrnn import _csv_tasks  # noqa: E402

TASKS.update({task.name: task for task in (_csv_tasks.SERIES_TASK, _csv_tasks.TEXT_TASK)})
