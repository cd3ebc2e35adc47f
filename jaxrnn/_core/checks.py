"""Input checks and dtypes, run in plain Python on static shapes before any work.

Every message names the argument, what was expected, what came and, where there
is one, the fix.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def default_float_dtype() -> jnp.dtype:
    """JAX's default floating dtype: float64 with ``jax_enable_x64`` on, else float32.

    What ``jnp.zeros`` and ``jax.random.normal`` give; the default of every
    ``init`` and ``initial_state`` in jaxrnn.
    """
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def carry_dtype(dtype) -> jnp.dtype:
    """The dtype of the recurrent state and of all accumulation for ``dtype`` inputs.

    float64 stays float64; float32, bfloat16 and float16 carry in float32.
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def check_positive_int(value, name: str, *, minimum: int = 1, allow_none: bool = False) -> Any:
    """``value`` if it is an int >= ``minimum`` (or None, with ``allow_none``), else a ValueError naming ``name``."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


def float_dtype(dtype, name: str = "dtype") -> jnp.dtype:
    """``dtype`` as a floating ``jnp.dtype``; JAX's default float for None; a TypeError otherwise."""
    if dtype is None:
        return default_float_dtype()
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating dtype (float32, float64, bfloat16), got {dtype}.")
    return dtype


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_xs(xs, time_major: bool):
    """The inputs as an array in time-major form ``[T, *batch, I]``, and the batch shape."""
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
        xs = jnp.asarray(xs)
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(
            f"xs must be a floating array (float32, float64 or bfloat16), got dtype {xs.dtype}; "
            f"cast it first, e.g. xs.astype(jnp.float32)."
        )
    layout = "[T, B, I]" if time_major else "[B, T, I]"
    if xs.ndim not in (2, 3):
        raise ValueError(
            f"xs must have rank 3 ({layout}) or rank 2 ([T, I], one sequence), got shape "
            f"{tuple(xs.shape)} (rank {xs.ndim}). For more batch axes, use jax.vmap(lambda x: jr.rnn(...))."
        )
    if xs.ndim == 3 and not time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    if xs.shape[0] == 0:
        raise ValueError(f"xs must have at least one time step, got shape {tuple(xs.shape)}.")
    return xs, tuple(xs.shape[1:-1])


def check_params_dtype(params, xs_dtype):
    """``(carry dtype, params' dtype)``; a TypeError for a float64 / lower-precision mix."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(params) if hasattr(leaf, "dtype")]
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"params must be floating arrays, got a leaf of dtype {leaf.dtype}.")
    param_dtype = leaves[0].dtype if leaves else xs_dtype
    wide = {jnp.dtype(jnp.float64)}
    if (jnp.dtype(param_dtype) in wide) != (jnp.dtype(xs_dtype) in wide):
        raise TypeError(
            f"xs has dtype {xs_dtype} but params have dtype {param_dtype}: float64 cannot be mixed "
            f"with lower precisions; cast xs or params (jax.tree_util.tree_map(lambda a: a.astype(...), params))."
        )
    return carry_dtype(xs_dtype), param_dtype


def check_state(cell, state, batch_shape, dtype):
    """``state`` checked against ``cell.initial_state(batch_shape)`` and cast to the carry ``dtype``."""
    expected = jax.eval_shape(lambda: cell.initial_state(batch_shape, dtype=dtype))
    exp_leaves, exp_def = jax.tree_util.tree_flatten(expected)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    if treedef != exp_def:
        raise ValueError(
            f"state does not match the cell: expected a pytree of structure {exp_def}, got {treedef}. "
            f"Build one with cell.initial_state(batch_shape={batch_shape})."
        )
    checked = []
    for got, want in zip(leaves, exp_leaves):
        got = jnp.asarray(got) if not hasattr(got, "shape") else got
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"state leaf has shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                f"(batch shape {batch_shape} from xs, then the cell's state size). "
                f"Build one with cell.initial_state(batch_shape={batch_shape})."
            )
        if not jnp.issubdtype(got.dtype, jnp.floating):
            raise TypeError(f"state leaves must be floating, got dtype {got.dtype}.")
        checked.append(got.astype(want.dtype))
    return jax.tree_util.tree_unflatten(treedef, checked)


def check_lengths(lengths, batch_shape, num_steps: int) -> jax.Array | None:
    """``lengths`` as int32 ``[*batch]``, values checked to lie in ``[0, T]`` when concrete."""
    if lengths is None:
        return None
    if not hasattr(lengths, "shape"):
        lengths = np.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}.")
    if tuple(lengths.shape) != batch_shape:
        raise ValueError(
            f"lengths must have shape {batch_shape} (one length per sequence in xs), got shape {tuple(lengths.shape)}."
        )
    if _is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > num_steps):
            raise ValueError(
                f"lengths must lie in [0, {num_steps}] (T = {num_steps} steps in xs), got values from "
                f"{values.min()} to {values.max()}."
            )
    return jnp.asarray(lengths, jnp.int32)
