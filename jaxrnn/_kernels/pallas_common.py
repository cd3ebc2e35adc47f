"""Padding shared by the Pallas kernels: shapes the hardware tiles want, sliced back after.

Padding is exact for every built-in cell. Padded hidden units have zero weights in
and out and zero inputs, so they stay at zero (LSTM: ``g = tanh(0) = 0`` keeps
``c = 0`` and ``h = o * tanh(0) = 0``; GRU: ``n = 0`` and ``h = z * 0``; Elman:
``f(0) = 0``) and never feed a real unit. Padded batch rows are separate
sequences whose results are dropped.
"""

from __future__ import annotations

import jax.numpy as jnp


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_power_of_2(n: int, minimum: int = 1) -> int:
    p = max(1, minimum)
    while p < n:
        p *= 2
    return p


def pad_axis(a, axis: int, size: int):
    """``a`` with zeros appended along ``axis`` up to ``size`` (None stays None)."""
    if a is None or a.shape[axis] == size:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return jnp.pad(a, widths)


def pad_gates(a, axis: int, num_gates: int, hidden: int, hidden_padded: int):
    """Pad each of the ``num_gates`` blocks of size ``hidden`` along ``axis`` to ``hidden_padded``."""
    if a is None or hidden == hidden_padded:
        return a
    axis = axis % a.ndim
    shape = a.shape[:axis] + (num_gates, hidden) + a.shape[axis + 1 :]
    padded = pad_axis(a.reshape(shape), axis + 1, hidden_padded)
    return padded.reshape(a.shape[:axis] + (num_gates * hidden_padded,) + a.shape[axis + 1 :])


def unpad_gates(a, axis: int, num_gates: int, hidden: int, hidden_padded: int):
    """The inverse of :func:`pad_gates`."""
    if a is None or hidden == hidden_padded:
        return a
    axis = axis % a.ndim
    shape = a.shape[:axis] + (num_gates, hidden_padded) + a.shape[axis + 1 :]
    kept = a.reshape(shape)[(slice(None),) * (axis + 1) + (slice(0, hidden),)]
    return kept.reshape(a.shape[:axis] + (num_gates * hidden,) + a.shape[axis + 1 :])
