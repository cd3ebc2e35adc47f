"""The training state, the guarded optax step, the evaluation step and weighted evaluation.

Everything here is a pure function or a small factory of jitted pure functions, in
the style of optax: the training state is a :class:`TrainState` NamedTuple, the
optimiser any ``optax.GradientTransformation`` (learning-rate schedules are optax's
schedules, passed as its ``learning_rate``). With ``mesh=`` a step runs data
parallel (:mod:`jaxrnn.train._parallel`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.train._parallel import data_parallel

Array = jax.Array

# optax.tree.norm is new (0.2.5); tree_utils.tree_l2_norm, deprecated since, serves optax 0.2.4.
_tree_norm = optax.tree.norm if hasattr(optax, "tree") else optax.tree_utils.tree_l2_norm


class TrainState(NamedTuple):
    """Everything a training step changes."""

    params: Any  # the model's parameter pytree
    opt_state: optax.OptState  # the optimiser's state for params
    step: Array  # int32 [], the number of updates applied
    rng: Array  # PRNG key, split once per step; the step's half goes to loss_fn


def default_optimizer(
    learning_rate: float | optax.Schedule = 1e-3, clip_norm: float | None = 1.0
) -> optax.GradientTransformation:
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


def guarded_update(loss_fn, optimizer, state: TrainState, *args):
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
    loss_fn: Callable[[Any, Any, Array], tuple[Array, dict]],
    optimizer: optax.GradientTransformation,
    *,
    mesh: jax.sharding.Mesh | None = None,
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
        state, loss, grad_norm, finite, aux = guarded_update(loss_fn, optimizer, state, batch)
        if not isinstance(aux, Mapping):
            raise TypeError(
                f"loss_fn must return (loss, aux) with aux a dict of metrics, got aux of type {type(aux).__name__}; "
                f"return (loss, {{}}) for none."
            )
        return state, {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}

    if mesh is None:
        return jax.jit(train_step)
    return data_parallel(train_step, mesh, batch_argnums=(1,), replicated_outputs=(0,))


def make_eval_step(
    metric_fn: Callable[[Any, Any], dict], *, mesh: jax.sharding.Mesh | None = None
) -> Callable[[Any, Any], dict]:
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
    return data_parallel(metric_fn, mesh, batch_argnums=(1,), replicate_uneven=True)


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
    totals: dict | None = None
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
