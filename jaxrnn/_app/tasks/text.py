"""Training tasks on users' own CSV files: ``jaxrnn train --task series|text --data FILE``.

- :data:`SERIES_TASK` forecasts a univariate series one step ahead, as the sunspots
  task does: windows of ``window`` past values, MSE on standardised values, RMSE in
  the file's units, persistence as the baseline, a forecast plot.
- :data:`TEXT_TASK` classifies texts read from rows ``label,text``: characters
  one-hot, sequences padded to the longest (at most ``length`` characters) and run
  with ``lengths``, the class read from the last layer's hidden state after each
  text's last character; accuracy, macro F1 and a confusion matrix.

Both read the file named by ``config["data"]`` with :mod:`jaxrnn.data`, whose
``ValueError``s name the file and the line; ``build`` lets them through, as it does
its own for a missing ``data`` or a bad option.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train
from jaxrnn._tasks import (_SHARED, Setup, Task, _classification_report, _init, _int, _minibatch, _model,
                           _series_setup, _stream_seed)

# The seed stream of the text task's split; _tasks uses 0 to 2 for train, validation, test.
_SPLIT = 3
# Train, validation and test shares of the text task's examples.
_TEXT_SPLIT = (0.8, 0.1, 0.1)
# Examples per validation or test batch: bounds the memory of the one-hot inputs.
_EVAL_BATCH = 256


def _data_path(config: dict, task: str) -> str:
    path = config.get("data")
    if path is None or path == "":
        raise ValueError(f"--data FILE is required for the {task} task")
    return os.fspath(path)


# ------------------------------------------------------------------------------ series


def _build_series(config: dict) -> Setup:
    path = _data_path(config, "series")
    window = _int(config, "window", 1)
    column = config.get("column")
    series = data.load_csv_series(path, column)
    try:
        splits = data.windowed_splits(series, window)
    except ValueError as e:
        raise ValueError(f"{path}: {len(series)} values: {e}") from None
    return _series_setup(config, splits, xlabel="row", ylabel="value" if column is None else str(column),
                         title=f"one-step-ahead forecast, test rows of {os.path.basename(path)}",
                         persistence_label="persistence (last value)")


# -------------------------------------------------------------------------------- text


def _stratified_split(labels: np.ndarray, seed: int) -> tuple:
    """Indices of train, validation and test, each class shared out as ``_TEXT_SPLIT``.

    Each class's examples, shuffled, are placed evenly in [0, 1] (the i-th of n at
    ``(i + 0.5) / n``); all examples sorted by place (ties broken at random) are cut
    at 80% and 90%. So the splits have the overall sizes exactly and every class's
    share of a split is within one example of its fair share; a class of one or two
    examples lands in train.
    """
    rng = np.random.default_rng(_stream_seed(seed, _SPLIT, 0))
    place = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        place[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(labels)), place))
    n_val, n_test = (round(f * len(labels)) for f in _TEXT_SPLIT[1:])
    n_train = len(labels) - n_val - n_test
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def _encode(vocab: data.CharVocab, texts: list, length: int) -> tuple:
    """``(ids [N, T] int32, lengths [N] int32)``: texts cut to ``length`` characters.

    Characters outside ``vocab`` get the id ``vocab.size``; padding gets -1, which
    one-hot encodes as zeros (and ``lengths`` hides anyway).
    """
    index = {c: i for i, c in enumerate(vocab.chars)}
    lengths = np.asarray([min(len(t), length) for t in texts], np.int32)
    ids = np.full((len(texts), int(lengths.max())), -1, np.int32)
    for row, text in enumerate(texts):
        ids[row, :lengths[row]] = [index.get(c, vocab.size) for c in text[:length]]
    return ids, lengths


def _build_text(config: dict) -> Setup:
    path = _data_path(config, "text")
    length = _int(config, "length", 1)
    labelled = data.load_csv_labelled_text(path)
    classes = len(labelled.classes)
    if classes < 2:
        raise ValueError(f"{path}: every row has the label {labelled.classes[0]!r}; a classifier needs at least "
                         "two labels")
    if len(labelled.texts) < 10:
        raise ValueError(f"{path}: {len(labelled.texts)} labelled texts are too few to split 80/10/10 into "
                         "train, validation and test; give at least 10")
    parts = _stratified_split(labelled.labels, _int(config, "seed", 0))
    vocab = data.CharVocab.from_text("".join(labelled.texts[i] for i in parts[0]))
    input_size = vocab.size + 1  # the characters of the train split, and one id for any other
    model = _model(config, input_size)
    batch_size = config["batch_size"]
    ids, lengths = _encode(vocab, labelled.texts, length)

    def examples(indices) -> dict:
        return {"ids": ids[indices], "lengths": lengths[indices], "labels": labelled.labels[indices]}

    def batches(indices) -> list:
        return [examples(indices[i:i + _EVAL_BATCH]) for i in range(0, len(indices), _EVAL_BATCH)]

    train_split, val_split, test_split = parts
    head = jr.readout(classes)

    def forward(params, batch):
        xs = jax.nn.one_hot(batch["ids"], input_size, dtype=jnp.float32)
        _, finals = model.apply(params.rnn, xs, batch["lengths"])
        return head.apply(params.head, finals[-1].h)  # the last layer's state after each text's last step

    def loss_fn(params, batch, rng):
        return train.cross_entropy(forward(params, batch), batch["labels"]), {}

    def eval_fn(params, batch):
        return {"accuracy": train.accuracy(forward(params, batch), batch["labels"])}

    def report(params, out_dir) -> dict:
        predict = jax.jit(lambda p, b: jnp.argmax(forward(p, b), axis=-1))
        tests = batches(test_split)
        predicted = np.concatenate([np.asarray(predict(params, b)) for b in tests]).astype(np.int32)
        truth = labelled.labels[test_split]
        majority = np.bincount(labelled.labels[train_split], minlength=classes).argmax()
        report = _classification_report(predicted, truth, classes, out_dir, class_names=labelled.classes,
                                        title=f"{os.path.basename(path)}, test split")
        return {**report, "majority_accuracy": float(np.mean(truth == majority)), "classes": list(labelled.classes)}

    return Setup(
        init_params=_init(model, head),
        train_batch=lambda step: examples(train_split[_minibatch(config["seed"], step, len(train_split),
                                                                 batch_size)]),
        loss_fn=loss_fn,
        eval_batches=batches(val_split),
        eval_fn=eval_fn,
        report=report,
    )


# ---------------------------------------------------------------------------- the tasks

SERIES_TASK = Task(
    "series",
    "your time series (--data FILE.csv, --column NAME), one step ahead (RMSE; the baseline repeats the last value)",
    {**_SHARED, "hidden": 32, "window": 20, "steps": 400, "batch_size": 32, "learning_rate": 3e-3,
     "eval_every": 25, "data": None, "column": None},
    ("rmse", "min"),
    _build_series,
)

TEXT_TASK = Task(
    "text",
    "your labelled texts (--data FILE.csv of label,text rows) by character (accuracy, macro F1, confusion matrix)",
    {**_SHARED, "length": 200, "steps": 1000, "batch_size": 32, "learning_rate": 3e-3, "eval_every": 100,
     "data": None},
    ("accuracy", "max"),
    _build_text,
)
