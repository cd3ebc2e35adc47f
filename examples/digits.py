"""Classify handwritten digits by reading each 8x8 image as a sequence of 8 rows.

``data.digits(by="rows")`` gives scikit-learn's 1797 digits as ``[N, 8, 8]``
sequences (8 steps of 8 pixels) with a stratified train/test split. An LSTM reads
the rows top to bottom and a readout classifies its last output.

Accuracy alone hides which digits get confused, so we also print the macro F1
(the mean of the per-class F1 scores, so each digit counts equally) and the
confusion matrix (rows: true digit, columns: predicted). With the defaults (1000
steps, about 5 s on two CPU cores) test accuracy and macro F1 are 0.98; chance
is 0.1.

Run: ``python examples/digits.py [--steps N]``.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train


def main(steps=1000, seed=0):
    digits = data.digits(by="rows")
    classes = digits.num_classes
    model = jr.LSTM(input_size=8, hidden_size=64)
    head = jr.readout(classes)
    key = jax.random.key(seed)
    params = (model.init(jax.random.fold_in(key, 0)), head.init(jax.random.fold_in(key, 1), model.output_size))

    @jax.jit
    def logits(params, xs):
        ys, _ = model.apply(params[0], xs)
        return head.apply(params[1], ys[:, -1])  # the last row has seen the whole image

    def loss_fn(params, batch, rng):
        return train.cross_entropy(logits(params, batch["xs"]), batch["labels"]), {}

    optimizer = train.default_optimizer(3e-3)
    state = train.init_state(params, optimizer, jax.random.fold_in(key, 2))
    train_step = train.make_train_step(loss_fn, optimizer)

    rng = np.random.default_rng(seed)
    report_every = max(1, steps // 5)
    for step in range(1, steps + 1):
        batch = rng.choice(len(digits.train.labels), size=64, replace=False)
        state, metrics = train_step(state, {"xs": digits.train.xs[batch], "labels": digits.train.labels[batch]})
        if not metrics["finite"]:
            raise FloatingPointError(f"non-finite loss at step {step}")
        if step % report_every == 0:
            print(f"step {step:5d}  cross-entropy {float(metrics['loss']):.3f}")

    test = digits.test
    predicted = jnp.argmax(logits(state.params, test.xs), axis=-1).astype(jnp.int32)
    scores = train.precision_recall_f1(predicted, test.labels, classes)
    confusion = np.asarray(train.confusion_matrix(predicted, test.labels, classes))
    print(
        f"test accuracy {float(train.accuracy(predicted, test.labels)):.3f}  (chance {1 / classes:.3f}; "
        f"{len(test.labels)} images)"
    )
    print(
        f"test macro precision {float(scores.precision):.3f}  recall {float(scores.recall):.3f}  "
        f"F1 {float(scores.f1):.3f}"
    )
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("     " + "".join(f"{c:4d}" for c in range(classes)))
    for digit, row in enumerate(confusion):
        print(f"{digit:4d} " + "".join(f"{n:4d}" for n in row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    main(parser.parse_args().steps)
