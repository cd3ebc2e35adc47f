"""Masked losses and classification metrics (the mask convention is :mod:`jaxrnn.train`'s).

Counts and rates come in JAX's default float dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn._core.checks import check_positive_int, default_float_dtype

Array = jax.Array

LOSSES = ("cross_entropy", "mse")


# ----------------------------------------------------------------------------- masks


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _valid(mask, shape: tuple, what: str) -> Array | None:
    """``mask`` as a bool array broadcast to ``shape``; None for no mask."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.ndim > len(shape) or tuple(mask.shape) != tuple(shape[: mask.ndim]):
        raise ValueError(
            f"mask must have a leading part of the shape of {what} {tuple(shape)}, e.g. "
            f"{tuple(shape[:2])} per step or {tuple(shape[:1])} per sequence, got shape {tuple(mask.shape)}."
        )
    valid = mask if mask.dtype == jnp.bool_ else mask != 0
    valid = valid.reshape(valid.shape + (1,) * (len(shape) - valid.ndim))
    return jnp.broadcast_to(valid, shape)


def _masked_mean(values: Array, valid: Array | None) -> Array:
    """Mean of ``values`` over ``valid`` entries; 0.0 when there are none."""
    if valid is None:
        return jnp.mean(values) if values.size else jnp.zeros((), values.dtype)
    total = jnp.sum(jnp.where(valid, values, jnp.zeros_like(values)))
    count = jnp.sum(valid).astype(values.dtype)
    return jnp.where(count > 0, total / jnp.maximum(count, jnp.ones_like(count)), jnp.zeros_like(total))


def _check_same_shape(predictions, targets) -> None:
    if tuple(predictions.shape) != tuple(targets.shape):
        raise ValueError(
            f"predictions and targets must have the same shape, got {tuple(predictions.shape)} "
            f"and {tuple(targets.shape)}."
        )


def _check_labels(labels) -> Array:
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array of class indices, got dtype {labels.dtype}.")
    return labels


def _check_logits(logits, labels) -> None:
    if tuple(logits.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"logits must have shape labels.shape + (num_classes,) = {tuple(labels.shape)} + (C,), "
            f"got {tuple(logits.shape)}."
        )


def _predictions(logits_or_pred, labels) -> Array:
    """Class predictions from logits ``[..., C]`` (argmax) or integer predictions ``[...]``."""
    x = jnp.asarray(logits_or_pred)
    if x.ndim == labels.ndim + 1:
        _check_logits(x, labels)
        return jnp.argmax(x, axis=-1).astype(labels.dtype)
    if x.ndim == labels.ndim and jnp.issubdtype(x.dtype, jnp.integer):
        if tuple(x.shape) != tuple(labels.shape):
            raise ValueError(
                f"predictions and labels must have the same shape, got {tuple(x.shape)} and {tuple(labels.shape)}."
            )
        return x.astype(labels.dtype)
    raise ValueError(
        f"expected logits of shape labels.shape + (C,) = {tuple(labels.shape)} + (C,) or integer predictions "
        f"of shape {tuple(labels.shape)}, got shape {tuple(x.shape)} and dtype {x.dtype}."
    )


# ---------------------------------------------------------------------------- losses


def mse(predictions: Array, targets: Array, mask: Array | None = None) -> Array:
    r"""Mean squared error over the valid entries: :math:`\frac{1}{N}\sum_{valid} (p - y)^2`.

    Args:
      predictions: ``[B, T, ...]`` (or any shape).
      targets: the same shape as ``predictions``.
      mask: None, or bool / 0-1 ``[B, T]`` (per step) or ``[B]`` (per sequence);
        the mean runs over every element of the valid entries (features included).

    Returns:
      A scalar; 0.0 when the mask has no valid entry.

    Raises:
      ValueError: shapes of ``predictions``, ``targets`` or ``mask`` do not match.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> p, y = jnp.array([[1.0, 2.0, 9.0]]), jnp.array([[0.0, 0.0, 0.0]])
      >>> float(train.mse(p, y, mask=jnp.array([[True, True, False]])))
      2.5
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    _check_same_shape(predictions, targets)
    valid = _valid(mask, predictions.shape, "predictions")
    return _masked_mean(optax.losses.squared_error(predictions, targets), valid)


def rmse(predictions: Array, targets: Array, mask: Array | None = None) -> Array:
    """Root mean squared error, ``sqrt(mse(predictions, targets, mask))``.

    Args:
      predictions, targets, mask: as in :func:`mse`.

    Returns:
      A scalar; 0.0 when the mask has no valid entry.

    Raises:
      ValueError: as :func:`mse`.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> float(train.rmse(jnp.array([3.0, -3.0]), jnp.zeros(2)))
      3.0
    """
    return jnp.sqrt(mse(predictions, targets, mask))


def cross_entropy(logits: Array, labels: Array, mask: Array | None = None) -> Array:
    r"""Softmax cross-entropy with integer labels, averaged over valid entries.

    :math:`\frac{1}{N}\sum_{valid} -\log \mathrm{softmax}(z)_{y}`. Labels at masked
    entries are ignored, so padding may hold any integer (e.g. -1 or -100).

    Args:
      logits: ``[..., C]`` unnormalised log-probabilities, e.g. ``[B, T, C]``.
      labels: integer ``[...]`` in ``[0, C)``, e.g. ``[B, T]``.
      mask: None, or bool / 0-1 ``[B, T]`` (per step) or ``[B]`` (per sequence).

    Returns:
      A scalar; 0.0 when the mask has no valid entry.

    Raises:
      TypeError: ``labels`` are not integers.
      ValueError: ``logits`` is not ``labels.shape + (C,)``, or a bad ``mask`` shape.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> logits = jnp.zeros((2, 3, 4))              # uniform over 4 classes
      >>> labels = jnp.array([[0, 1, -1], [2, -1, -1]])
      >>> loss = train.cross_entropy(logits, labels, mask=labels >= 0)
      >>> bool(jnp.isclose(loss, jnp.log(4.0)))
      True
    """
    logits, labels = jnp.asarray(logits), _check_labels(labels)
    _check_logits(logits, labels)
    valid = _valid(mask, labels.shape, "labels")
    if valid is not None:
        labels = jnp.where(valid, labels, jnp.zeros_like(labels))
    losses = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _masked_mean(losses, valid)


# --------------------------------------------------------------------------- metrics


def accuracy(logits_or_pred: Array, labels: Array, mask: Array | None = None) -> Array:
    """The fraction of valid entries whose predicted class equals the label.

    Args:
      logits_or_pred: logits ``[..., C]`` (the prediction is their argmax) or integer
        predictions with the shape of ``labels``.
      labels: integer ``[...]``, e.g. ``[B, T]``.
      mask: None, or bool / 0-1 ``[B, T]`` (per step) or ``[B]`` (per sequence).

    Returns:
      A float scalar in ``[0, 1]``; 0.0 when the mask has no valid entry.

    Raises:
      TypeError: ``labels`` are not integers.
      ValueError: shapes do not match.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> float(train.accuracy(jnp.array([1, 2, 0, 0]), jnp.array([1, 2, 1, 3]), mask=jnp.array([1, 1, 1, 0])))
      0.6666...
    """
    labels = _check_labels(labels)
    pred = _predictions(logits_or_pred, labels)
    valid = _valid(mask, labels.shape, "labels")
    return _masked_mean((pred == labels).astype(default_float_dtype()), valid)


def _check_class_range(values, valid, num_classes: int, name: str) -> None:
    if not (_is_concrete(values) and (valid is None or _is_concrete(valid))):
        return
    values = np.asarray(values)
    if valid is not None:
        values = values[np.asarray(valid)]
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (num_classes = {num_classes}) at valid entries, got values "
            f"from {values.min()} to {values.max()}; mask out padding or raise num_classes."
        )


def confusion_matrix(pred: Array, labels: Array, num_classes: int, mask: Array | None = None) -> Array:
    """Counts of (label, prediction) pairs over the valid entries.

    Rows are the true classes and columns the predicted ones, as in
    ``sklearn.metrics.confusion_matrix(labels, pred, labels=range(num_classes))``.

    Args:
      pred: integer predictions with the shape of ``labels``, or logits
        ``labels.shape + (num_classes,)`` (their argmax is taken).
      labels: integer ``[...]`` in ``[0, num_classes)`` at valid entries.
      num_classes: C.
      mask: None, or bool / 0-1 ``[B, T]`` (per step) or ``[B]`` (per sequence).

    Returns:
      int32 ``[C, C]``.

    Raises:
      TypeError: ``labels`` are not integers.
      ValueError: bad shapes, or (when not traced) a valid label or prediction outside
        ``[0, num_classes)``. Under ``jit`` such entries are dropped unchecked.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> train.confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=2).tolist()
      [[1, 1], [0, 1]]
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    labels = _check_labels(labels)
    pred_in = jnp.asarray(pred)
    if pred_in.ndim == labels.ndim + 1 and pred_in.shape[-1] != num_classes:
        raise ValueError(
            f"logits must have num_classes = {num_classes} entries on their last axis, got shape {tuple(pred_in.shape)}."
        )
    pred = _predictions(pred_in, labels)
    valid = _valid(mask, labels.shape, "labels")
    _check_class_range(labels, valid, num_classes, "labels")
    _check_class_range(pred, valid, num_classes, "predictions")
    weight = jnp.ones(labels.shape, jnp.int32) if valid is None else valid.astype(jnp.int32)
    if valid is not None:
        # Padding labels such as -1 would otherwise wrap around to the last class.
        labels = jnp.where(valid, labels, jnp.zeros_like(labels))
        pred = jnp.where(valid, pred, jnp.zeros_like(pred))
    counts = jnp.zeros((num_classes, num_classes), jnp.int32)
    return counts.at[labels.ravel(), pred.ravel()].add(weight.ravel(), mode="drop")


class PrecisionRecallF1(NamedTuple):
    """Macro-averaged precision, recall and F1 (float scalars)."""

    precision: Array  # [] float
    recall: Array  # [] float
    f1: Array  # [] float


def precision_recall_f1(logits: Array, labels: Array, num_classes: int, mask: Array | None = None) -> PrecisionRecallF1:
    r"""Macro precision, recall and F1, as scikit-learn computes them.

    Per class :math:`c`: :math:`P_c = TP_c / (TP_c + FP_c)`, :math:`R_c = TP_c / (TP_c + FN_c)`,
    :math:`F1_c = 2 P_c R_c / (P_c + R_c)`, each 0 where its denominator is 0
    (scikit-learn's ``zero_division=0``). The macro average runs over the classes
    that occur among the valid labels or predictions, as
    ``sklearn.metrics.precision_recall_fscore_support(y, p, average="macro", zero_division=0)``
    does without its ``labels`` argument; classes seen in neither do not count.

    Args:
      logits: logits ``labels.shape + (num_classes,)`` or integer predictions with the
        shape of ``labels``.
      labels: integer ``[...]`` in ``[0, num_classes)`` at valid entries.
      num_classes: C.
      mask: None, or bool / 0-1 ``[B, T]`` (per step) or ``[B]`` (per sequence).

    Returns:
      :class:`PrecisionRecallF1` ``(precision, recall, f1)``; all 0.0 when no entry is valid.

    Raises:
      TypeError: ``labels`` are not integers (as :func:`confusion_matrix`).
      ValueError: bad shapes, or (when not traced) a valid label or prediction outside
        ``[0, num_classes)`` (as :func:`confusion_matrix`).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> p, r, f1 = train.precision_recall_f1(jnp.array([0, 0, 1]), jnp.array([0, 1, 1]), num_classes=5)
      >>> round(float(p), 4), round(float(r), 4), round(float(f1), 4)
      (0.75, 0.75, 0.6667)
    """
    counts = confusion_matrix(logits, labels, num_classes, mask).astype(default_float_dtype())
    tp = jnp.diagonal(counts)
    predicted = jnp.sum(counts, axis=0)
    actual = jnp.sum(counts, axis=1)

    def ratio(num, den):
        return jnp.where(den > 0, num / jnp.maximum(den, jnp.ones_like(den)), jnp.zeros_like(num))

    precision = ratio(tp, predicted)
    recall = ratio(tp, actual)
    f1 = ratio(2 * tp, predicted + actual)  # = 2PR / (P + R), and 0 where TP = 0
    present = (predicted + actual) > 0

    def macro(per_class):
        return ratio(
            jnp.sum(jnp.where(present, per_class, jnp.zeros_like(per_class))), jnp.sum(present).astype(per_class.dtype)
        )

    return PrecisionRecallF1(macro(precision), macro(recall), macro(f1))
