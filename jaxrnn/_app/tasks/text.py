"""A user's labelled texts from a CSV file of ``label,text`` rows: ``jaxrnn train --task text --data FILE``.

Characters one-hot, sequences padded to the longest (at most ``length``
characters) and run with ``lengths``, the class read from the last layer's output
at each text's last character; accuracy, macro F1 and a confusion matrix.
The file is read with :func:`jaxrnn.data.load_csv_labelled_text`, whose
``ValueError``s name the file and the line; ``build`` lets them through.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train
from jaxrnn._app.tasks.base import (
    DTYPE,
    SHARED,
    SPLIT,
    Setup,
    Task,
    apply_rnn,
    data_path,
    init,
    int_option,
    minibatch,
    model,
    solver_option,
    stream_seed,
)
from jaxrnn._app.tasks.classification import classification_report

# Train, validation and test shares of the examples.
TEXT_SPLIT = (0.8, 0.1, 0.1)
# Examples per validation or test batch: bounds the memory of the one-hot inputs.
EVAL_BATCH = 256


def stratified_split(labels: np.ndarray, seed: int) -> tuple:
    """Indices of train, validation and test, each class shared out as :data:`TEXT_SPLIT`.

    Each class's examples, shuffled, are placed evenly in [0, 1] (the i-th of n at
    ``(i + 0.5) / n``); all examples sorted by place (ties broken at random) are cut
    at 80% and 90%. So the splits have the overall sizes exactly and every class's
    share of a split is within one example of its fair share; a class of one or two
    examples lands in train.
    """
    rng = np.random.default_rng(stream_seed(seed, SPLIT, 0))
    place = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        place[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(labels)), place))
    n_val, n_test = (round(f * len(labels)) for f in TEXT_SPLIT[1:])
    n_train = len(labels) - n_val - n_test
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def encode(vocab: data.CharVocab, texts: list, length: int) -> tuple:
    """``(ids [N, T] int32, lengths [N] int32)``: texts cut to ``length`` characters.

    Characters outside ``vocab`` get the id ``vocab.size``; padding gets -1, which
    one-hot encodes as zeros (and ``lengths`` hides anyway).
    """
    index = {c: i for i, c in enumerate(vocab.chars)}
    lengths = np.asarray([min(len(t), length) for t in texts], np.int32)
    ids = np.full((len(texts), int(lengths.max())), -1, np.int32)
    for row, text in enumerate(texts):
        ids[row, : lengths[row]] = [index.get(c, vocab.size) for c in text[:length]]
    return ids, lengths


def build(config: dict) -> Setup:
    path = data_path(config, "text")
    length = int_option(config, "length")
    labelled = data.load_csv_labelled_text(path)
    classes = len(labelled.classes)
    if classes < 2:
        raise ValueError(
            f"{path}: every row has the label {labelled.classes[0]!r}; a classifier needs at least two labels"
        )
    if len(labelled.texts) < 10:
        raise ValueError(
            f"{path}: {len(labelled.texts)} labelled texts are too few to split 80/10/10 into "
            "train, validation and test; give at least 10"
        )
    parts = stratified_split(labelled.labels, int_option(config, "seed", 0))
    vocab = data.CharVocab.from_text("".join(labelled.texts[i] for i in parts[0]))
    input_size = vocab.size + 1  # the characters of the train split, and one id for any other
    rnn = model(config, input_size)
    solver = solver_option(config, rnn)
    batch_size = config["batch_size"]
    ids, lengths = encode(vocab, labelled.texts, length)

    def examples(indices) -> dict:
        return {"ids": ids[indices], "lengths": lengths[indices], "labels": labelled.labels[indices]}

    def batches(indices) -> list:
        return [examples(indices[i : i + EVAL_BATCH]) for i in range(0, len(indices), EVAL_BATCH)]

    train_split, val_split, test_split = parts
    head = jr.readout(classes)

    def forward(params, batch):
        xs = jax.nn.one_hot(batch["ids"], input_size, dtype=DTYPE)
        ys, aux = apply_rnn(rnn, params.rnn, xs, batch["lengths"], solver=solver, batch=batch)
        # The output at each text's last character: the hidden state for the gated cells,
        # a readout of the state for others (lru), so not a field of the final state.
        last = jnp.take_along_axis(ys, batch["lengths"][:, None, None] - 1, axis=1)[:, 0]
        return head.apply(params.head, last), aux

    def loss_fn(params, batch, rng):
        logits, aux = forward(params, batch)
        return train.cross_entropy(logits, batch["labels"]), aux

    def eval_fn(params, batch):
        return {"accuracy": train.accuracy(forward(params, batch)[0], batch["labels"])}

    def report(params, out_dir) -> dict:
        predict = jax.jit(lambda p, b: jnp.argmax(forward(p, b)[0], axis=-1))
        tests = batches(test_split)
        predicted = np.concatenate([np.asarray(predict(params, b)) for b in tests]).astype(np.int32)
        truth = labelled.labels[test_split]
        majority = np.bincount(labelled.labels[train_split], minlength=classes).argmax()
        report = classification_report(
            predicted,
            truth,
            classes,
            out_dir,
            class_names=labelled.classes,
            title=f"{os.path.basename(path)}, test split",
        )
        return {**report, "majority_accuracy": float(np.mean(truth == majority)), "classes": list(labelled.classes)}

    return Setup(
        init_params=init(rnn, head),
        train_batch=lambda step: examples(train_split[minibatch(config["seed"], step, len(train_split), batch_size)]),
        loss_fn=loss_fn,
        eval_batches=batches(val_split),
        eval_fn=eval_fn,
        report=report,
    )


TASK = Task(
    "text",
    "your labelled texts (--data FILE.csv of label,text rows) by character (accuracy, macro F1, confusion matrix)",
    {**SHARED, "length": 200, "steps": 1000, "batch_size": 32, "learning_rate": 3e-3, "eval_every": 100, "data": None},
    ("accuracy", "max"),
    build,
)
