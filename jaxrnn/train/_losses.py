"""Training: masked losses and metrics, an optax train step that skips non-finite
updates, evaluation, early stopping, and truncated BPTT over one long stream.

Everything here is a pure function or a small factory of jitted pure functions, in
the style of optax: the training state is a :class:`TrainState` NamedTuple, the
optimiser any ``optax.GradientTransformation`` (learning-rate schedules are optax's
schedules, passed as its ``learning_rate``).

Masks: wherever a ``mask`` is taken it may be ``None`` (all entries count), or a
bool / 0-1 array whose shape is a leading part of the per-entry shape, typically
``[B, T]`` (per step) or ``[B]`` (per sequence). Non-zero entries count. A mean over
no valid entries is 0.0, not NaN, so a fully padded batch adds nothing.

Data parallelism: the step factories take ``mesh=``, a mesh from :func:`make_mesh`
whose axis :data:`DATA_AXIS` the batch's leading axis is split over; parameters
and optimiser state are replicated and XLA reduces the gradients across devices
(:mod:`jaxrnn._parallel`). The losses are those of one device, up to float
rounding. :func:`shard_batch` and :func:`replicate` place arrays by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Iterable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn import _parallel
from jaxrnn._cells import carry_dtype, check_positive_int
from jaxrnn._parallel import DATA_AXIS as DATA_AXIS
from jaxrnn._parallel import make_mesh as make_mesh
from jaxrnn._parallel import replicate as replicate
from jaxrnn._parallel import shard_batch as shard_batch

Array = jax.Array

LOSSES = ("cross_entropy", "mse")
MODES = ("min", "max")

# optax.tree.norm is new (0.2.5); tree_utils.tree_l2_norm, deprecated since, serves optax 0.2.4.
_tree_norm = optax.tree.norm if hasattr(optax, "tree") else optax.tree_utils.tree_l2_norm


# ----------------------------------------------------------------------------- masks


def _float_dtype():
    """float64 with ``jax_enable_x64``, else float32: the dtype of counts and rates."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _valid(mask, shape: tuple, what: str) -> Optional[Array]:
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


def _masked_mean(values: Array, valid: Optional[Array]) -> Array:
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


def mse(predictions: Array, targets: Array, mask: Optional[Array] = None) -> Array:
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


def rmse(predictions: Array, targets: Array, mask: Optional[Array] = None) -> Array:
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


def cross_entropy(logits: Array, labels: Array, mask: Optional[Array] = None) -> Array:
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


def accuracy(logits_or_pred: Array, labels: Array, mask: Optional[Array] = None) -> Array:
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
    return _masked_mean((pred == labels).astype(_float_dtype()), valid)


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


def confusion_matrix(pred: Array, labels: Array, num_classes: int, mask: Optional[Array] = None) -> Array:
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


def precision_recall_f1(
    logits: Array, labels: Array, num_classes: int, mask: Optional[Array] = None
) -> PrecisionRecallF1:
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
      As :func:`confusion_matrix`.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> p, r, f1 = train.precision_recall_f1(jnp.array([0, 0, 1]), jnp.array([0, 1, 1]), num_classes=5)
      >>> round(float(p), 4), round(float(r), 4), round(float(f1), 4)
      (0.75, 0.75, 0.6667)
    """
    counts = confusion_matrix(logits, labels, num_classes, mask).astype(_float_dtype())
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
        return ratio(jnp.sum(jnp.where(present, per_class, jnp.zeros_like(per_class))), jnp.sum(present).astype(per_class.dtype))

    return PrecisionRecallF1(macro(precision), macro(recall), macro(f1))


# -------------------------------------------------------------------------- training


class TrainState(NamedTuple):
    """Everything a training step changes."""

    params: Any  # the model's parameter pytree
    opt_state: optax.OptState  # the optimiser's state for params
    step: Array  # int32 [], the number of updates applied
    rng: Array  # PRNG key, split once per step; the step's half goes to loss_fn


def default_optimizer(learning_rate: float | optax.Schedule = 1e-3, clip_norm: Optional[float] = 1.0) -> optax.GradientTransformation:
    """Adam after clipping the gradient's global norm, the usual choice for RNNs.

    Args:
      learning_rate: a float or an optax schedule (``step -> rate``).
      clip_norm: the largest global gradient norm passed on; None for no clipping.

    Returns:
      ``optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))``.

    Raises:
      ValueError: ``clip_norm`` is not positive.

    Example:
      >>> from jaxrnn import train
      >>> opt = train.default_optimizer(3e-3, clip_norm=0.5)
      >>> type(opt).__name__
      'GradientTransformationExtraArgs'
    """
    adam = optax.adam(learning_rate)
    if clip_norm is None:
        return adam
    if not float(clip_norm) > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}.")
    return optax.chain(optax.clip_by_global_norm(clip_norm), adam)


def init_state(params: Any, optimizer: optax.GradientTransformation, rng: Array) -> TrainState:
    """The training state before the first step.

    Args:
      params: the parameter pytree.
      optimizer: an ``optax.GradientTransformation``.
      rng: a PRNG key (``jax.random.key(0)`` or ``jax.random.PRNGKey(0)``).

    Returns:
      ``TrainState(params, optimizer.init(params), step=0 (int32), rng)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxrnn import train
      >>> state = train.init_state({"w": jnp.zeros(3)}, optax.sgd(0.1), jax.random.key(0))
      >>> int(state.step)
      0
    """
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), rng)


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _guarded_update(loss_fn, optimizer, state: TrainState, *args):
    """One step of ``loss_fn(params, *args, rng) -> (loss, aux)``; the input state if not finite.

    Returns ``(state, loss, grad_norm, finite, aux)``.
    """
    rng, step_rng = jax.random.split(state.rng)
    out = jax.eval_shape(loss_fn, state.params, *args, step_rng)
    if not (isinstance(out, tuple) and len(out) == 2 and jnp.shape(out[0]) == ()):
        got = f"a loss of shape {jnp.shape(out[0])}" if isinstance(out, tuple) and len(out) == 2 else type(out).__name__
        raise ValueError(f"loss_fn must return (loss, aux) with a scalar loss, got {got}; reduce the loss with a mean.")
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, *args, step_rng)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new = TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1, rng)
    # lax.cond rather than jnp.where: it also selects typed PRNG keys.
    state = jax.lax.cond(finite, lambda: new, lambda: state)
    return state, loss, _tree_norm(grads), finite, aux


def make_train_step(
    loss_fn: Callable[[Any, Any, Array], tuple[Array, dict]], optimizer: optax.GradientTransformation, *,
    mesh: Optional[jax.sharding.Mesh] = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """A jitted training step: gradient of ``loss_fn``, then one optimiser update.

    The step splits ``state.rng``, passes one half to ``loss_fn`` (for dropout) and
    keeps the other. If the loss or any gradient entry is NaN or infinite, the step
    returns the input state unchanged (params, optimiser state, step count and key)
    and ``metrics["finite"]`` is False: the caller can stop, naming
    ``int(state.step)``, with its last good state intact.

    Learning-rate schedules need no wrapper: pass an optax optimiser built with one.

    Args:
      loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)`` with a scalar loss and
        ``aux`` a dict of scalar metrics (``{}`` for none).
      optimizer: an ``optax.GradientTransformation``, e.g. :func:`default_optimizer`.
      mesh: None (one device), or a mesh from :func:`make_mesh`: each call splits
        the batch's leading axis over its devices (every array of the batch has
        the batch size B as its leading axis; arrays without axes are
        replicated), replicates ``state``, and the returned state stays
        replicated. B must be divisible by the device count.

    Returns:
      ``train_step(state, batch) -> (state, metrics)``, jitted; ``metrics`` holds
      ``aux`` and ``"loss"``, ``"grad_norm"`` (global norm before the optimiser)
      and ``"finite"`` (bool).

    Raises:
      ValueError (when the step is first traced): the loss is not a scalar.
      TypeError (when the step is first traced): ``aux`` is not a dict.
      ValueError (with ``mesh``, at each call): B is not divisible by the device count.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxrnn import train
      >>> def loss_fn(params, batch, rng):
      ...     return train.mse(batch["x"] * params["w"], batch["y"]), {}
      >>> schedule = optax.cosine_decay_schedule(init_value=0.1, decay_steps=100)
      >>> opt = optax.adam(schedule)
      >>> step = train.make_train_step(loss_fn, opt)
      >>> state = train.init_state({"w": jnp.zeros(())}, opt, jax.random.key(0))
      >>> batch = {"x": jnp.arange(4.0), "y": 2 * jnp.arange(4.0)}
      >>> for _ in range(50):
      ...     state, metrics = step(state, batch)
      ...     if not metrics["finite"]:
      ...         raise FloatingPointError(f"non-finite loss at step {int(state.step)}")
      >>> int(state.step), bool(metrics["loss"] < 1.0)
      (50, True)
    """

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        state, loss, grad_norm, finite, aux = _guarded_update(loss_fn, optimizer, state, batch)
        if not isinstance(aux, Mapping):
            raise TypeError(
                f"loss_fn must return (loss, aux) with aux a dict of metrics, got aux of type {type(aux).__name__}; "
                f"return (loss, {{}}) for none."
            )
        return state, {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}

    if mesh is None:
        return jax.jit(train_step)
    return _parallel.data_parallel(train_step, mesh, batch_argnums=(1,), replicated_outputs=(0,))


def make_eval_step(metric_fn: Callable[[Any, Any], dict], *,
                   mesh: Optional[jax.sharding.Mesh] = None) -> Callable[[Any, Any], dict]:
    """A jitted evaluation step.

    Args:
      metric_fn: ``metric_fn(params, batch) -> dict`` of scalar metrics of one batch
        (means over its examples, e.g. :func:`cross_entropy`, :func:`accuracy`).
      mesh: None (one device), or a mesh from :func:`make_mesh`: the batch is
        split over its devices as in :func:`make_train_step`, except that a batch
        whose size the device count does not divide is replicated (a validation
        set of any size works; every device then computes all of it).

    Returns:
      ``eval_step(params, batch) -> dict``, jitted; use it with :func:`evaluate`.

    Raises:
      TypeError: ``metric_fn`` is not callable.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> eval_step = train.make_eval_step(lambda p, b: {"rmse": train.rmse(p * b["x"], b["y"])})
      >>> float(eval_step(2.0, {"x": jnp.ones(3), "y": jnp.ones(3)})["rmse"])
      1.0
    """
    if not callable(metric_fn):
        raise TypeError(f"metric_fn must be callable, got {type(metric_fn).__name__}.")
    if mesh is None:
        return jax.jit(metric_fn)
    return _parallel.data_parallel(metric_fn, mesh, batch_argnums=(1,), replicate_uneven=True)


def _batch_weight(batch) -> float:
    if isinstance(batch, Mapping) and "weight" in batch:
        return float(np.sum(np.asarray(batch["weight"])))
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError(
            "cannot weight a batch without a leading batch axis: give it a 'weight' entry "
            "(e.g. the number of valid tokens) or array leaves of shape [B, ...]."
        )
    return float(np.shape(leaves[0])[0])


def evaluate(eval_step: Callable[[Any, Any], dict], params: Any, batches: Iterable[Any]) -> dict:
    """Metrics over many batches: the means of each batch's metrics, weighted by its size.

    A batch's weight is ``sum(batch["weight"])`` when it is a dict with a ``"weight"``
    entry (e.g. its number of valid tokens, which makes masked per-token means exact
    over the whole set), else its leading size B. Weighted means are exact for
    metrics that are means over examples (losses, accuracy, MSE), not for ratios
    such as F1 or RMSE; compute those from summed :func:`confusion_matrix` counts or
    from the mean MSE.

    Args:
      eval_step: ``eval_step(params, batch) -> dict`` of scalars, e.g. from :func:`make_eval_step`.
      params: passed to ``eval_step``.
      batches: an iterable of batches (read once).

    Returns:
      A dict of Python floats with the keys of ``eval_step``'s dict.

    Raises:
      ValueError: no batches, a total weight of 0, metrics that are not scalars, or
        batches whose metric names differ.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> eval_step = train.make_eval_step(lambda p, b: {"mse": train.mse(p * b["x"], b["y"])})
      >>> batches = [{"x": jnp.ones(3), "y": jnp.zeros(3)}, {"x": jnp.zeros(1), "y": jnp.zeros(1)}]
      >>> train.evaluate(eval_step, 1.0, batches)
      {'mse': 0.75}
    """
    totals: Optional[dict] = None
    total_weight = 0.0
    for batch in batches:
        metrics = eval_step(params, batch)
        weight = _batch_weight(batch)
        if totals is None:
            totals = {name: 0.0 for name in metrics}
        if set(metrics) != set(totals):
            raise ValueError(f"every batch must give the same metrics, got {sorted(metrics)} after {sorted(totals)}.")
        for name, value in metrics.items():
            if np.ndim(value) != 0:
                raise ValueError(f"metric {name!r} must be a scalar, got shape {np.shape(value)}.")
            totals[name] += weight * float(value)
        total_weight += weight
    if totals is None:
        raise ValueError("batches is empty: evaluate needs at least one batch.")
    if total_weight <= 0:
        raise ValueError(f"the batches' total weight must be positive, got {total_weight}.")
    return {name: total / total_weight for name, total in totals.items()}


class EarlyStopping(NamedTuple):
    """Early-stopping state: start from ``EarlyStopping()``."""

    best: Optional[float] = None  # the best value so far; None before the first finite one
    best_step: int = -1  # the step at which ``best`` was seen
    bad_evals: int = 0  # evaluations since the last improvement


def early_stopping_update(
    es: EarlyStopping, value: float, step: int, *, patience: int, mode: str = "min"
) -> tuple[EarlyStopping, bool]:
    """Record one evaluation; stop after ``patience`` evaluations without improvement.

    A value improves if it is strictly below (``mode="min"``) or above (``"max"``)
    the best so far; the first finite value always does; NaN never does.

    Args:
      es: the state, ``EarlyStopping()`` at first.
      value: the evaluated metric (a Python or 0-d array number).
      step: the training step of this evaluation (kept as ``best_step``).
      patience: how many evaluations in a row may fail to improve.
      mode: ``"min"`` for losses, ``"max"`` for accuracies.

    Returns:
      ``(es, stop)``: the new state and whether to stop now.

    Raises:
      ValueError: ``patience`` is not a positive int or ``mode`` is unknown.

    Example:
      >>> from jaxrnn import train
      >>> es = train.EarlyStopping()
      >>> for step, loss in enumerate([3.0, 2.0, 2.5, 2.1, 2.2]):
      ...     es, stop = train.early_stopping_update(es, loss, step, patience=2)
      ...     if stop:
      ...         break
      >>> step, es.best, es.best_step
      (3, 2.0, 1)
    """
    patience = check_positive_int(patience, "patience")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    value = float(value)
    if math.isfinite(value) and (es.best is None or (value < es.best if mode == "min" else value > es.best)):
        es = EarlyStopping(best=value, best_step=int(step), bad_evals=0)
    else:
        es = es._replace(bad_evals=es.bad_evals + 1)
    return es, es.bad_evals >= patience


# ------------------------------------------------------------- truncated BPTT on streams


def stream_chunks(tokens: Array, batch_size: int, chunk_length: int, *, targets: bool = True) -> Array:
    """Cut one long stream into ``batch_size`` parallel streams and consecutive chunks.

    A 1-D stream of N tokens is trimmed to ``B * (N // B)`` and reshaped to ``[B, M]``
    (row b is the b-th contiguous part of the stream, the usual "batchify"); a 2-D
    ``[B, M]`` input is taken as those rows already. Chunk k of row b is
    ``rows[b, k*L : k*L + L + 1]`` with ``targets=True`` (inputs ``chunk[..., :-1]``,
    next-token targets ``chunk[..., 1:]``; consecutive chunks overlap by one token)
    and ``rows[b, k*L : (k+1)*L]`` without. So chunk k + 1 continues every row of
    chunk k: carry the recurrent state from one to the next (truncated BPTT, see
    :func:`make_stream_train_step`). Tokens that do not fill a chunk are dropped.

    Args:
      tokens: one stream ``[N]``, or its rows ``[B, M]`` already split.
      batch_size: B.
      chunk_length: L, the steps per chunk.
      targets: add the one-token overlap for next-token targets.

    Returns:
      ``[num_chunks, B, L + 1]`` (``[num_chunks, B, L]`` with ``targets=False``),
      ``num_chunks = (M - 1) // L`` (``M // L``).

    Raises:
      ValueError: ``tokens`` is not 1-D or 2-D, a 2-D ``tokens`` has not ``batch_size``
        rows, or the stream is too short for one chunk.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> chunks = train.stream_chunks(jnp.arange(20), batch_size=2, chunk_length=4)
      >>> chunks.shape
      (2, 2, 5)
      >>> chunks[0].tolist(), chunks[1].tolist()
      ([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]], [[4, 5, 6, 7, 8], [14, 15, 16, 17, 18]])
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk_length = check_positive_int(chunk_length, "chunk_length")
    tokens = jnp.asarray(tokens)
    if tokens.ndim == 1:
        per_row = tokens.shape[0] // batch_size
        rows = tokens[: batch_size * per_row].reshape(batch_size, per_row)
    elif tokens.ndim == 2:
        if tokens.shape[0] != batch_size:
            raise ValueError(
                f"a 2-D tokens [B, M] must have batch_size = {batch_size} rows, got shape {tuple(tokens.shape)}; "
                f"pass a 1-D stream to split it into rows."
            )
        rows = tokens
    else:
        raise ValueError(f"tokens must be a stream [N] or rows [B, M], got shape {tuple(tokens.shape)}.")
    overlap = 1 if targets else 0
    num_chunks = (rows.shape[1] - overlap) // chunk_length
    if num_chunks < 1:
        raise ValueError(
            f"each of the {batch_size} rows has {rows.shape[1]} tokens, fewer than one chunk needs "
            f"(chunk_length + {overlap} = {chunk_length + overlap}); use a shorter chunk_length or a smaller batch_size."
        )
    index = chunk_length * np.arange(num_chunks)[:, None] + np.arange(chunk_length + overlap)[None, :]
    return jnp.swapaxes(rows[:, index], 0, 1)


class StreamParams(NamedTuple):
    """Parameters of a recurrent model followed by a per-step readout."""

    rnn: Any  # model.init(key): a tuple over layers
    readout: Any  # head.init(key, model.output_size): ReadoutParams


def stream_forward(model, head, params: StreamParams, xs: Array, carry: Any = None, *, key: Optional[Array] = None):
    """Run one chunk from ``carry`` and return the state to carry to the next chunk.

    The returned state has its gradient stopped (``jax.lax.stop_gradient``), so a
    loss on a later chunk does not backpropagate into this one: truncated BPTT at
    chunk borders. The outputs equal those of the whole stream run at once.

    Args:
      model: a :class:`jaxrnn.StackedRNN` (:func:`jaxrnn.LSTM`, ...).
      head: a readout, e.g. :func:`jaxrnn.readout`.
      params: :class:`StreamParams` ``(rnn, readout)``.
      xs: ``[B, L, I]`` inputs of this chunk.
      carry: the states returned for the previous chunk; None (zeros) for the first.
      key: dropout key, or None for no dropout.

    Returns:
      ``(outputs [B, L, O], carry)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import train
      >>> model, head = jr.LSTM(3, 8), jr.readout(2)
      >>> params = train.StreamParams(model.init(jax.random.key(0)), head.init(jax.random.key(1), model.output_size))
      >>> xs = jax.random.normal(jax.random.key(2), (4, 10, 3))
      >>> out_a, carry = train.stream_forward(model, head, params, xs[:, :6])
      >>> out_b, carry = train.stream_forward(model, head, params, xs[:, 6:], carry)
      >>> whole, _ = train.stream_forward(model, head, params, xs)
      >>> bool(jnp.allclose(jnp.concatenate([out_a, out_b], axis=1), whole, atol=1e-5))
      True
    """
    ys, finals = model.apply(params.rnn, xs, key=key, state=carry)
    return head.apply(params.readout, ys), jax.lax.stop_gradient(finals)


def _stream_inputs(chunk, loss: str, input_size: int, dtype):
    """Inputs and next-step targets of a chunk ``[B, L + 1(, F)]``."""
    if loss == "cross_entropy":
        if chunk.ndim != 2 or not jnp.issubdtype(chunk.dtype, jnp.integer):
            raise ValueError(
                f"with loss='cross_entropy' a chunk must be integer tokens [B, L + 1], got shape "
                f"{tuple(chunk.shape)} and dtype {chunk.dtype}."
            )
        xs = jax.nn.one_hot(chunk[:, :-1], input_size, dtype=dtype)
    else:
        if chunk.ndim != 3 or not jnp.issubdtype(chunk.dtype, jnp.floating):
            raise ValueError(
                f"with loss='mse' a chunk must be floating features [B, L + 1, F], got shape "
                f"{tuple(chunk.shape)} and dtype {chunk.dtype}."
            )
        xs = chunk[:, :-1]
    if chunk.shape[1] < 2:
        raise ValueError(f"a chunk needs at least 2 steps (inputs and a next-step target), got shape {tuple(chunk.shape)}.")
    return xs, chunk[:, 1:]


def make_stream_train_step(model, head, optimizer: optax.GradientTransformation, *, loss: str = "cross_entropy",
                           mesh: Optional[jax.sharding.Mesh] = None):
    """A jitted truncated-BPTT step for next-step prediction on a long stream.

    Each chunk from :func:`stream_chunks` predicts ``chunk[:, 1:]`` from
    ``chunk[:, :-1]`` starting from the carried state; the gradient flows only
    within the chunk (:func:`stream_forward`). As in :func:`make_train_step`, a
    non-finite loss or gradient returns the input state and carry unchanged with
    ``metrics["finite"]`` False.

    Args:
      model: a :class:`jaxrnn.StackedRNN`; with ``loss="cross_entropy"`` its
        ``input_size`` is the vocabulary size (tokens enter one-hot).
      head: a readout with ``output_size`` the vocabulary size (logits, no
        activation) or F for ``loss="mse"``.
      optimizer: an ``optax.GradientTransformation``.
      loss: ``"cross_entropy"`` (integer tokens ``[B, L + 1]``) or ``"mse"``
        (features ``[B, L + 1, F]``).
      mesh: None (one device), or a mesh from :func:`make_mesh`: the chunk's rows
        and the carry are split over its devices, the state replicated, as in
        :func:`make_train_step`.

    Returns:
      ``step(state, chunk, carry=None) -> (state, carry, metrics)``, jitted, where
      ``state.params`` is :class:`StreamParams` and ``metrics`` holds ``"loss"``,
      ``"grad_norm"`` and ``"finite"``. Pass the returned carry with the next chunk;
      None starts from zeros.

    Raises:
      ValueError: unknown ``loss``; (when first traced) a chunk of the wrong rank or dtype.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import train
      >>> text = jnp.asarray(list(b"abcd" * 200), jnp.int32) - ord("a")       # vocabulary of 4
      >>> chunks = train.stream_chunks(text, batch_size=4, chunk_length=20)  # [9, 4, 21]
      >>> model, head = jr.LSTM(4, 16), jr.readout(4)
      >>> params = train.StreamParams(model.init(jax.random.key(0)), head.init(jax.random.key(1), 16))
      >>> opt = train.default_optimizer(3e-2)
      >>> state, step = train.init_state(params, opt, jax.random.key(2)), train.make_stream_train_step(model, head, opt)
      >>> for epoch in range(3):
      ...     carry = None                                  # a new pass over the stream
      ...     for chunk in chunks:
      ...         state, carry, metrics = step(state, chunk, carry)
      >>> bool(metrics["loss"] < 0.5)
      True
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")

    def loss_fn(params, chunk, carry, rng):
        dtype = jax.tree_util.tree_leaves(params.rnn)[0].dtype
        xs, targets = _stream_inputs(chunk, loss, model.input_size, dtype)
        outputs, carry = stream_forward(model, head, params, xs, carry, key=rng)
        value = cross_entropy(outputs, targets) if loss == "cross_entropy" else mse(outputs, targets.astype(outputs.dtype))
        return value, carry

    def step(state: TrainState, chunk: Array, carry: Any = None):
        if carry is None:
            dtype = carry_dtype(jax.tree_util.tree_leaves(state.params.rnn)[0].dtype)
            carry = model.initial_state((chunk.shape[0],), dtype=dtype)
        state, value, grad_norm, finite, new_carry = _guarded_update(loss_fn, optimizer, state, chunk, carry)
        new_carry = jax.tree_util.tree_map(lambda n, o: n.astype(o.dtype), new_carry, carry)
        carry = jax.lax.cond(finite, lambda: new_carry, lambda: carry)
        return state, carry, {"loss": value, "grad_norm": grad_norm, "finite": finite}

    if mesh is None:
        return jax.jit(step)
    return _parallel.data_parallel(step, mesh, batch_argnums=(1, 2), replicated_outputs=(0,))
