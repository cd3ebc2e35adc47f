"""Generated sequence tasks: the adding problem and the copy task."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrnn._core.checks import check_positive_int
from jaxrnn.data._common import rng

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting the mean target (1.0) on the adding problem.

The target is the sum of two independent ``U(0, 1)`` values, so its variance is
``2 * 1/12 = 1/6``.
"""


class AddingBatch(NamedTuple):
    """A batch of the adding problem."""

    xs: np.ndarray  # [B, T, 2] float32: (value, marker)
    targets: np.ndarray  # [B] float32: the sum of the two marked values


class CopyBatch(NamedTuple):
    """A batch of the copy task."""

    xs: np.ndarray  # [B, T, num_symbols + 2] float32, one-hot of the input ids
    targets: np.ndarray  # [B, T] int32: the ids to predict at each step
    mask: np.ndarray  # [B, T] float32: 1.0 at the recall steps, 0.0 elsewhere


def adding(seed, batch: int, length: int) -> AddingBatch:
    """A batch of the adding problem.

    Each sequence has ``length`` steps of two features: a value drawn from
    ``U(0, 1)`` and a marker that is 1 at exactly two steps, one drawn uniformly from
    the first half ``[0, length // 2)`` and one from the second ``[length // 2,
    length)``, and 0 elsewhere. The target is the sum of the two marked values.
    Predicting the mean, 1, scores :data:`ADDING_BASELINE_MSE` = 1/6.

    Args:
      seed: an ``int`` or a JAX PRNG key.
      batch: number of sequences ``B``.
      length: steps per sequence ``T``, at least 2.

    Returns:
      ``AddingBatch(xs [B, T, 2] float32, targets [B] float32)``.

    Raises:
      ValueError: ``batch`` below 1, ``length`` below 2, or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> xs, targets = data.adding(0, batch=4, length=10)
      >>> xs.shape, xs.dtype, targets.shape
      ((4, 10, 2), dtype('float32'), (4,))
      >>> xs[..., 1].sum(axis=1).tolist()
      [2.0, 2.0, 2.0, 2.0]

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997;
      Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
      rectified linear units", arXiv:1504.00941, 2015.
    """
    batch = check_positive_int(batch, "batch")
    length = check_positive_int(length, "length", minimum=2)
    generator = rng(seed)
    values = generator.uniform(0.0, 1.0, (batch, length)).astype(np.float32)
    half = length // 2
    rows = np.arange(batch)
    first = generator.integers(0, half, batch)
    second = generator.integers(half, length, batch)
    markers = np.zeros((batch, length), np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return AddingBatch(np.stack([values, markers], axis=-1), targets)


def copy_task(seed, batch: int, num_symbols: int = 8, sequence_length: int = 10, delay: int = 20) -> CopyBatch:
    """A batch of the copy task with a delay.

    Input ids: ``0`` is the blank, ``1 .. num_symbols`` are symbols and
    ``num_symbols + 1`` is the delimiter. Each sequence has ``T = 2 *
    sequence_length + delay`` steps: ``sequence_length`` random symbols, ``delay - 1``
    blanks, the delimiter, then ``sequence_length`` blanks during which the network
    must output the symbols in order. The target is the blank everywhere else.
    ``mask`` marks the recall steps.

    A model that has forgotten the symbols but knows the format scores
    ``log(num_symbols)`` nats of cross-entropy per recall step (``log 8 ≈ 2.079``),
    or ``sequence_length * log(num_symbols) / T`` averaged over all steps, the
    baseline of Arjovsky et al.

    Args:
      seed: an ``int`` or a JAX PRNG key.
      batch: number of sequences ``B``.
      num_symbols: distinct symbols to copy, at least 1.
      sequence_length: symbols per sequence ``L``, at least 1.
      delay: steps from the last symbol to the last step before recall, at least 1
        (the delimiter takes the last of them).

    Returns:
      ``CopyBatch(xs [B, T, num_symbols + 2] float32 one-hot, targets [B, T] int32,
      mask [B, T] float32)``.

    Raises:
      ValueError: an argument below its minimum, or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> xs, targets, mask = data.copy_task(0, batch=2, num_symbols=3, sequence_length=4, delay=2)
      >>> xs.shape, targets.shape, mask.shape
      ((2, 10, 5), (2, 10), (2, 10))
      >>> xs[0].argmax(-1).tolist()
      [3, 2, 2, 1, 0, 4, 0, 0, 0, 0]
      >>> targets[0].tolist()
      [0, 0, 0, 0, 0, 0, 3, 2, 2, 1]

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks", ICML
      2016, section 4.1; Hochreiter & Schmidhuber, Neural Computation 1997.
    """
    batch = check_positive_int(batch, "batch")
    num_symbols = check_positive_int(num_symbols, "num_symbols")
    sequence_length = check_positive_int(sequence_length, "sequence_length")
    delay = check_positive_int(delay, "delay")
    symbols = rng(seed).integers(1, num_symbols + 1, (batch, sequence_length))
    steps = 2 * sequence_length + delay
    recall = sequence_length + delay
    inputs = np.zeros((batch, steps), np.int32)
    inputs[:, :sequence_length] = symbols
    inputs[:, recall - 1] = num_symbols + 1
    targets = np.zeros((batch, steps), np.int32)
    targets[:, recall:] = symbols
    mask = np.zeros((batch, steps), np.float32)
    mask[:, recall:] = 1.0
    xs = np.eye(num_symbols + 2, dtype=np.float32)[inputs]
    return CopyBatch(xs, targets, mask)
