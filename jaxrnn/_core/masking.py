"""Lengths, padding and direction: the masks every time loop and kernel shares.

A padded batch has ``lengths [*batch]``: step ``t`` of a sequence is valid when
``t < length``. Past the length, a step carries the state unchanged, its output
is zero and no cotangent flows into it. Everything here works on time-major
arrays ``[T, *batch, ...]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

tree_map = jax.tree_util.tree_map


def step_masks(lengths, num_steps: int):
    """``[T, *batch]`` bool: step t is inside each sequence's length; None without lengths."""
    if lengths is None:
        return None
    t = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * lengths.ndim)
    return t < lengths[None]


def _expand_mask(mask, a):
    return mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))


def select(mask, new, old):
    """``new`` where ``mask`` (a leading prefix of each leaf's shape), else ``old``, leaf by leaf; ``new`` without a mask."""
    if mask is None:
        return new
    return tree_map(lambda n, o: jnp.where(_expand_mask(mask, n), n, o), new, old)


def zero_where_masked(mask, tree):
    """``tree`` with zeros where ``mask`` is False (``mask`` a leading prefix of each leaf's shape)."""
    if mask is None:
        return tree
    return tree_map(lambda a: jnp.where(_expand_mask(mask, a), a, jnp.zeros_like(a)), tree)


def truncation_cut(t, truncate: int):
    """True at the steps whose entering state's cotangent truncated BPTT zeroes (``t > 0``, a multiple of ``truncate``)."""
    return jnp.logical_and(t > 0, t % truncate == 0)


def reverse_within(xs, lengths: jax.Array | None):
    """Reverse time-major ``xs [T, *batch, ...]`` within each sequence's length.

    Padding stays at the end: step t < L maps to L - 1 - t, steps t >= L stay. The
    map is its own inverse. Without ``lengths`` it is a plain flip.
    """
    if lengths is None:
        return tree_map(lambda a: jnp.flip(a, axis=0), xs)
    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    t = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * lengths.ndim)
    lengths = lengths[None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)

    def gather(a):
        idx = index.reshape(index.shape + (1,) * (a.ndim - index.ndim))
        return jnp.take_along_axis(a, idx, axis=0)

    return tree_map(gather, xs)
