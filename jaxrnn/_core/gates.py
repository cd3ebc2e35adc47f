r"""The gate equations of the built-in cells, forward and reverse, written once.

Every user of the gate maths calls these functions: the cells' ``update`` and
``update_bwd`` (:mod:`jaxrnn._core.cells`), the XLA scan kernel, and both Pallas
kernels (:mod:`jaxrnn._kernels`). The tests keep their own NumPy equations as the
independent oracle.

The equations work on *per-gate blocks*: ``px`` and ``rec`` are sequences of
``G`` arrays ``[*batch, H]``, one per gate in PyTorch's order (Elman: one; LSTM:
i, f, g, o; GRU: r, z, n). Triton cannot slice values inside a kernel, so the GPU
kernel loads one block per gate and calls :func:`forward_blocks` and
:func:`reverse_blocks` directly; everyone else uses the wrappers over
concatenated gates, :func:`forward` and :func:`reverse`.

Notation (``a`` the pre-activations, ``px`` the input projection
:math:`W_{ih} x_t + b_{ih}`, ``rec`` the recurrent projection
:math:`W_{hh} h_{t-1} + b_{hh}`):

- Elman: :math:`h_t = f(px + rec)`, ``f`` = tanh or relu;
- LSTM: :math:`(i, f, g, o) = (\sigma, \sigma, \tanh, \sigma)(px + rec)`,
  :math:`c_t = f c_{t-1} + i g`, :math:`h_t = o \tanh c_t`;
- GRU: :math:`r = \sigma(px_r + rec_r)`, :math:`z = \sigma(px_z + rec_z)`,
  :math:`n = \tanh(px_n + r\, rec_n)`, :math:`h_t = (1 - z) n + z h_{t-1}`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

KINDS = ("elman_tanh", "elman_relu", "lstm", "gru")
NUM_GATES = {"elman_tanh": 1, "elman_relu": 1, "lstm": 4, "gru": 3}
# Blocks of the activations kept for the reverse: Elman its new state; LSTM i, f, g, o;
# GRU r, z, n and the recurrent n-projection (the reverse of the reset gate needs it).
NUM_ACTIVATIONS = {"elman_tanh": 1, "elman_relu": 1, "lstm": 4, "gru": 4}


def forward_blocks(kind: str, px: Sequence[Array], rec: Sequence[Array], h: Array, c: Array | None):
    """One step from per-gate blocks: ``(h_new, c_new, act)``.

    ``c`` and ``c_new`` are the LSTM's cell state (None for the other kinds);
    ``act`` is the list of activated blocks the reverse needs (see
    :data:`NUM_ACTIVATIONS`).
    """
    if kind == "elman_tanh":
        a = jnp.tanh(px[0] + rec[0])
        return a, None, [a]
    if kind == "elman_relu":
        a = jnp.maximum(px[0] + rec[0], 0.0)
        return a, None, [a]
    sigmoid = jax.nn.sigmoid
    if kind == "lstm":
        i = sigmoid(px[0] + rec[0])
        f = sigmoid(px[1] + rec[1])
        g = jnp.tanh(px[2] + rec[2])
        o = sigmoid(px[3] + rec[3])
        assert c is not None, "the LSTM needs its cell state c"
        c_new = f * c + i * g
        return o * jnp.tanh(c_new), c_new, [i, f, g, o]
    if kind == "gru":
        r = sigmoid(px[0] + rec[0])
        z = sigmoid(px[1] + rec[1])
        n = jnp.tanh(px[2] + r * rec[2])
        return (1.0 - z) * n + z * h, None, [r, z, n, rec[2]]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")


def reverse_blocks(kind: str, act: Sequence[Array], h: Array, c: Array | None, c_new: Array | None, dh, dc):
    r"""One step's reverse from the activations of :func:`forward_blocks`.

    ``h``, ``c``: the state entering the step; ``c_new``: the LSTM cell state after
    it; ``dh``, ``dc``: cotangents of the state after the step (``dc`` None but for
    the LSTM). Returns ``(d_px, d_rec, dh_direct, dc_prev)``:

    - ``d_px``, ``d_rec``: per-gate lists of the deltas of the input and the
      recurrent projection (the same list but for the GRU, where
      :math:`\delta rec_n = \delta a_n\, r`);
    - ``dh_direct``: the cotangent of ``h`` through every path but ``rec`` (None
      where there is none: add :math:`W_{hh}^T \delta rec` for the whole of it);
    - ``dc_prev``: the cotangent of ``c`` (LSTM; None otherwise).
    """
    if kind in ("elman_tanh", "elman_relu"):
        (a,) = act
        slope = 1.0 - a * a if kind == "elman_tanh" else (a > 0.0).astype(a.dtype)
        da = [dh * slope]
        return da, da, None, None
    if kind == "lstm":
        i, f, g, o = act
        assert c is not None and c_new is not None and dc is not None, "the LSTM needs c, c_new and dc"
        tanh_c = jnp.tanh(c_new)
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        da = [dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)]
        return da, da, None, dc * f
    if kind == "gru":
        r, z, n, hn = act
        dan = dh * (1.0 - z) * (1.0 - n * n)
        daz = dh * (h - n) * z * (1.0 - z)
        dar = dan * hn * r * (1.0 - r)
        return [dar, daz, dan], [dar, daz, dan * r], dh * z, None
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")


def split(a: Array, parts: int) -> list:
    """The ``parts`` equal blocks of the last axis of ``a``."""
    size = a.shape[-1] // parts
    return [a[..., k * size : (k + 1) * size] for k in range(parts)]


def _join(blocks: list) -> Array:
    return blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=-1)


def forward(kind: str, px: Array, rec: Array, h: Array, c: Array | None):
    """:func:`forward_blocks` on concatenated gates ``px, rec [*batch, G*H]``: ``(h_new, c_new, act)``.

    ``act`` is the activations concatenated, ``[*batch, A*H]`` with ``A`` =
    :data:`NUM_ACTIVATIONS` (for Elman it is ``h_new`` itself).
    """
    g = NUM_GATES[kind]
    h_new, c_new, act = forward_blocks(kind, split(px, g), split(rec, g), h, c)
    return h_new, c_new, _join(act)


def reverse(kind: str, act: Array, h: Array, c: Array | None, c_new: Array | None, dh, dc):
    """:func:`reverse_blocks` on concatenated activations: ``(d_px, d_rec, dh_direct, dc_prev)``.

    ``d_px`` and ``d_rec`` are concatenated ``[*batch, G*H]`` and the same array
    but for the GRU.
    """
    d_px, d_rec, dh_direct, dc_prev = reverse_blocks(kind, split(act, NUM_ACTIVATIONS[kind]), h, c, c_new, dh, dc)
    d_px_all = _join(d_px)
    return d_px_all, (d_px_all if d_rec is d_px else _join(d_rec)), dh_direct, dc_prev


def step_backward(kind: str, px: Array, rec: Array, h: Array, c: Array | None, dh, dc):
    """One step's reverse from the projections (the activations are recomputed).

    Returns ``(d_px, d_rec, dh_direct, dc_prev)`` as :func:`reverse`, with
    ``dh_direct`` zeros where there is no direct path.
    """
    _, c_new, act = forward(kind, px, rec, h, c)
    d_px, d_rec, dh_direct, dc_prev = reverse(kind, act, h, c, c_new, dh, dc)
    return d_px, d_rec, jnp.zeros_like(h) if dh_direct is None else dh_direct, dc_prev
