"""Argument checks shared by the kernels that refuse bad input before their call (Pallas TPU, CPU).

Each message names the kernel function, the argument, what was expected and what came.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn._core import gates


def check_shape(fn: str, name: str, a, expected: tuple, what: str):
    if a is None:
        raise ValueError(f"{fn}: {name} is None; expected {what} of shape {expected}.")
    if tuple(a.shape) != expected:
        raise ValueError(f"{fn}: {name} has shape {tuple(a.shape)}; expected {what} of shape {expected}.")


def check_dtype(fn: str, name: str, a, allowed: tuple):
    if a is not None and jnp.dtype(a.dtype) not in tuple(jnp.dtype(d) for d in allowed):
        names = " or ".join(jnp.dtype(d).name for d in allowed)
        raise ValueError(f"{fn}: {name} has dtype {jnp.dtype(a.dtype).name}; expected {names}.")


def check_common(fn: str, kind: str, px, w_hh, h0, c0, mask, *, w_dtypes: tuple) -> tuple:
    """``(T, B, H)`` after checking the arguments that a kernel's forward and backward share.

    ``px``, ``h0`` and ``c0`` must be float32, ``w_hh`` one of ``w_dtypes``.
    """
    if kind not in gates.KINDS:
        raise ValueError(f"{fn}: kind must be one of {gates.KINDS}, got {kind!r}.")
    if getattr(h0, "ndim", None) != 2:
        raise ValueError(f"{fn}: h0 must be [B, H], got shape {getattr(h0, 'shape', None)}.")
    batch, hidden = h0.shape
    g = gates.NUM_GATES[kind]
    if getattr(px, "ndim", None) != 3 or px.shape[0] < 1:
        raise ValueError(
            f"{fn}: px must be [T, B, {g}*H] with T >= 1 (time-major input projection), "
            f"got shape {getattr(px, 'shape', None)}."
        )
    steps = px.shape[0]
    check_shape(fn, "px", px, (steps, batch, g * hidden), f"[T, B, {g}*H] for kind {kind!r}")
    check_shape(fn, "w_hh", w_hh, (g * hidden, hidden), f"[{g}*H, H] for kind {kind!r}")
    if kind == "lstm":
        check_shape(fn, "c0", c0, (batch, hidden), "[B, H] (LSTM)")
    elif c0 is not None:
        raise ValueError(f"{fn}: c0 must be None for kind {kind!r} (only LSTM has a cell state).")
    if mask is not None:
        check_shape(fn, "mask", mask, (steps, batch), "[T, B]")
        check_dtype(fn, "mask", mask, (jnp.bool_,))
    check_dtype(fn, "px", px, (jnp.float32,))
    check_dtype(fn, "w_hh", w_hh, w_dtypes)
    check_dtype(fn, "h0", h0, (jnp.float32,))
    check_dtype(fn, "c0", c0, (jnp.float32,))
    return steps, batch, hidden
