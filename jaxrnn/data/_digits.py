"""scikit-learn's handwritten digits as sequences."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrnn.data._common import TASKS_EXTRA, check_split, rng


class Labelled(NamedTuple):
    """Sequences with one class id each."""

    xs: np.ndarray  # [N, T, F] float32
    labels: np.ndarray  # [N] int32


class Digits(NamedTuple):
    """The digits data set, split into train and test."""

    train: Labelled
    test: Labelled
    num_classes: int


def digits(*, by: str = "rows", split=(0.8, 0.2), seed=0) -> Digits:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) as sequences.

    Pixels (0 to 16) are divided by 16 into [0, 1]. ``by="rows"`` reads each image
    as 8 steps of its 8 rows; ``by="pixels"`` as 64 steps of one pixel, row by row.
    The split is shuffled with ``seed`` and stratified, so each class has the same
    share in train and test.

    Args:
      by: ``"rows"`` (``[N, 8, 8]``) or ``"pixels"`` (``[N, 64, 1]``).
      split: train and test fractions, each in (0, 1), summing to 1.
      seed: an ``int`` or a JAX PRNG key for the shuffle.

    Returns:
      ``Digits(train=Labelled(xs, labels), test=Labelled(xs, labels), num_classes=10)``
      with ``xs`` float32 and ``labels`` int32.

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: an unknown ``by``, a bad ``split`` or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> d = data.digits(by="pixels")
      >>> d.train.xs.shape, d.test.xs.shape, d.train.labels.dtype, d.num_classes
      ((1437, 64, 1), (360, 64, 1), dtype('int32'), 10)
    """
    if by not in ("rows", "pixels"):
        raise ValueError(f"by must be 'rows' or 'pixels', got {by!r}")
    fractions = check_split(split, 2)
    generator = rng(seed)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError(f"jaxrnn.data.digits needs scikit-learn: {TASKS_EXTRA}") from e
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    xs = images if by == "rows" else images.reshape(len(images), 64, 1)
    labels = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        xs, labels, test_size=fractions[1], stratify=labels, random_state=int(generator.integers(2**31 - 1))
    )
    return Digits(Labelled(x_train, y_train), Labelled(x_test, y_test), 10)
