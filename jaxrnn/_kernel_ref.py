"""The contract of the fused recurrence kernels, and its reference in plain JAX.

A kernel backend (``jaxrnn._pallas_gpu``, ``jaxrnn._pallas_tpu``) runs the
sequential part of one layer of a built-in cell: everything that cannot be a
large matmul. The input projection before the loop and the weight gradients after
it stay in XLA (:mod:`jaxrnn._kernels`). Every kernel module provides

- ``forward(kind, px, w_hh, b_hh, h0, c0, mask, *, precision, interpret)``
  returning ``(h_all, c_all, rec_all)``, and
- ``backward(kind, px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all,
  d_c_last, *, truncate, precision, interpret)`` returning
  ``(d_px, d_rec, d_h0, d_c0)``,
- ``unsupported(kind, batch, hidden_size, w_dtype) -> Optional[str]``: why the
  kernel cannot run this shape (None when it can),

with exactly the semantics of :func:`forward` and :func:`backward` below, which
the kernel tests compare against. Shapes (``T`` steps, ``B`` batch, ``H`` hidden
size, ``G`` gates):

- ``kind``: ``"elman_tanh" | "elman_relu" | "lstm" | "gru"`` (static).
- ``px [T, B, G*H]`` float32: the input projection ``x_t W_ih^T + b_ih``.
- ``w_hh [G*H, H]`` (float32 or bfloat16, PyTorch layout), ``b_hh [G*H]`` float32.
- ``h0 [B, H]`` float32; ``c0 [B, H]`` float32 for LSTM, None otherwise.
- ``mask [T, B]`` bool or None: where False, the step is skipped: the state is
  carried unchanged (``h_all[t] = h_all[t-1]``).
- ``h_all [T, B, H]``: the state after every step; ``c_all`` likewise for LSTM
  (None otherwise); ``rec_all [T, B, G*H]``: the recurrent projection
  ``h_{t-1} W_hh^T + b_hh`` of every step, kept for the backward pass.
- ``d_h_all [T, B, H]``: the cotangent of ``h_all``; ``d_c_last [B, H]``: the
  cotangent of ``c_all[T-1]`` (LSTM; None otherwise).
- ``truncate``: None, or k: the cotangent carried back into the state entering
  step t is zeroed when ``t > 0`` and ``t % k == 0``.
- Returns ``d_px``, ``d_rec [T, B, G*H]``: the cotangents of ``px`` and of
  ``rec_all`` (they differ only for the GRU's n gate, where ``d_rec = d_px * r``),
  zero on skipped steps; ``d_h0``, ``d_c0`` the cotangents of the initial state.
- ``precision``: ``"highest"`` (full float32 products) or ``"fast"`` (TF32 on
  GPU, bfloat16 products on TPU; accumulation in float32 either way).

Gate order and equations are PyTorch's (see :mod:`jaxrnn._cells`).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._cells import carry_dtype

KINDS = ("elman_tanh", "elman_relu", "lstm", "gru")
NUM_GATES = {"elman_tanh": 1, "elman_relu": 1, "lstm": 4, "gru": 3}
PRECISIONS = ("highest", "fast")


def _dot_t(h, w_hh, precision: str):
    """``h @ w_hh.T`` accumulated in float32 (float64 for float64 ``h``)."""
    prec = lax.Precision.HIGHEST if precision == "highest" else lax.Precision.DEFAULT
    return lax.dot_general(
        h.astype(w_hh.dtype), w_hh, (((1,), (1,)), ((), ())), precision=prec, preferred_element_type=carry_dtype(h.dtype)
    )


def _dot(d, w_hh, precision: str):
    """``d @ w_hh`` accumulated in float32 (float64 for float64 ``d``)."""
    prec = lax.Precision.HIGHEST if precision == "highest" else lax.Precision.DEFAULT
    return lax.dot_general(
        d.astype(w_hh.dtype), w_hh, (((1,), (0,)), ((), ())), precision=prec, preferred_element_type=carry_dtype(d.dtype)
    )


def _blocks(a, parts: int):
    """The ``parts`` equal blocks of the last axis of ``a``."""
    size = a.shape[-1] // parts
    return [a[:, k * size : (k + 1) * size] for k in range(parts)]


def activations(kind: str, px_t, rec_t):
    """One step's activated gates, what the reverse step needs of the forward.

    Elman: the new state ``f(px + rec)``; LSTM: ``[i, f, g, o]`` concatenated;
    GRU: ``[r, z, n, hn]`` with ``hn`` the recurrent n-projection (``4H`` wide).
    """
    if kind == "elman_tanh":
        return jnp.tanh(px_t + rec_t)
    if kind == "elman_relu":
        return jnp.maximum(px_t + rec_t, 0.0)
    if kind == "lstm":
        i, f, g, o = _blocks(px_t + rec_t, 4)
        return jnp.concatenate([jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)], axis=-1)
    xr, xz, xn = _blocks(px_t, 3)
    hr, hz, hn = _blocks(rec_t, 3)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    return jnp.concatenate([r, z, jnp.tanh(xn + r * hn), hn], axis=-1)


def step_from_gates(kind: str, act, h, c):
    """The state after the step from :func:`activations`: ``(h_new, c_new)``, ``c_new`` None but for LSTM."""
    if kind in ("elman_tanh", "elman_relu"):
        return act, None
    if kind == "lstm":
        i, f, g, o = _blocks(act, 4)
        c_new = f * c + i * g
        return o * jnp.tanh(c_new), c_new
    _, z, n, _ = _blocks(act, 4)
    return (1.0 - z) * n + z * h, None


def reverse_from_gates(kind: str, act, h, c, c_new, dh, dc):
    """One step's gate reverse from :func:`activations`.

    ``h``, ``c``: the state entering the step; ``c_new`` the LSTM cell state after
    it; ``dh``, ``dc``: cotangents of the state after the step (``dc`` None but for
    LSTM). Returns ``(d_px_t, d_rec_t, dh_direct, dc_prev)``: the gate deltas (one
    array for both but for the GRU), the cotangent of the previous ``h`` through
    every path but ``rec`` (None where there is none; add ``d_rec_t @ w_hh`` for
    the whole of it) and of the previous ``c``.
    """
    if kind in ("elman_tanh", "elman_relu"):
        slope = 1.0 - act * act if kind == "elman_tanh" else (act > 0.0).astype(act.dtype)
        da = dh * slope
        return da, da, None, None
    if kind == "lstm":
        i, f, g, o = _blocks(act, 4)
        tanh_c = jnp.tanh(c_new)
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        da = jnp.concatenate(
            [dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)],
            axis=-1,
        )
        return da, da, None, dc * f
    r, z, n, hn = _blocks(act, 4)
    dan = dh * (1.0 - z) * (1.0 - n * n)
    daz = dh * (h - n) * z * (1.0 - z)
    dar = dan * hn * r * (1.0 - r)
    d_px = jnp.concatenate([dar, daz, dan], axis=-1)
    d_rec = jnp.concatenate([dar, daz, dan * r], axis=-1)
    return d_px, d_rec, dh * z, None


def gates_forward(kind: str, px_t, rec_t, h, c):
    """One step's gate arithmetic: ``(h_new, c_new)`` (``c_new`` None but for LSTM)."""
    return step_from_gates(kind, activations(kind, px_t, rec_t), h, c)


def gates_backward(kind: str, px_t, rec_t, h, c, dh, dc):
    """One step's gate reverse from the projections (recomputes the gates).

    ``h``, ``c``: the state entering the step; ``dh``, ``dc``: cotangents of the
    state after it. Returns ``(d_px_t, d_rec_t, dh_direct, dc_prev)`` as
    :func:`reverse_from_gates`, with ``dh_direct`` zeros where there is no direct path.
    """
    act = activations(kind, px_t, rec_t)
    c_new = step_from_gates(kind, act, h, c)[1]
    d_px, d_rec, dh_direct, dc_prev = reverse_from_gates(kind, act, h, c, c_new, dh, dc)
    return d_px, d_rec, jnp.zeros_like(h) if dh_direct is None else dh_direct, dc_prev


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
    return jax.tree_util.tree_map(lambda n, o: jnp.where(_expand_mask(mask, n), n, o), new, old)


def zero_where_masked(mask, tree):
    """``tree`` with zeros where ``mask`` is False (``mask`` a leading prefix of each leaf's shape)."""
    if mask is None:
        return tree
    return jax.tree_util.tree_map(lambda a: jnp.where(_expand_mask(mask, a), a, jnp.zeros_like(a)), tree)


def truncation_cut(t, truncate: int):
    """True at the steps whose entering state's cotangent truncated BPTT zeroes (``t > 0``, a multiple of ``truncate``)."""
    return jnp.logical_and(t > 0, t % truncate == 0)


def forward(kind: str, px, w_hh, b_hh, h0, c0, mask, *, precision: str = "highest", interpret: bool = False):
    """The reference forward: ``(h_all, c_all, rec_all)`` (see the module docstring)."""
    del interpret

    def body(carry, inp):
        h, c = carry
        px_t, mask_t = inp
        rec_t = _dot_t(h, w_hh, precision) + b_hh[None, :]
        h_new, c_new = gates_forward(kind, px_t, rec_t, h, c)
        h_new, c_new = select(mask_t, (h_new, c_new), (h, c))
        return (h_new, c_new), (h_new, c_new, rec_t)

    _, (h_all, c_all, rec_all) = lax.scan(body, (h0, c0), (px, mask))
    return h_all, c_all, rec_all


def backward(
    kind: str,
    px,
    rec_all,
    w_hh,
    h0,
    c0,
    h_all,
    c_all,
    mask,
    d_h_all,
    d_c_last,
    *,
    truncate: Optional[int] = None,
    precision: str = "highest",
    interpret: bool = False,
):
    """The reference backward: ``(d_px, d_rec, d_h0, d_c0)`` (see the module docstring)."""
    del interpret
    num_steps = px.shape[0]
    h_prev = jnp.concatenate([h0[None], h_all[:-1]], axis=0)
    c_prev = None if c_all is None else jnp.concatenate([c0[None], c_all[:-1]], axis=0)

    def body(carry, inp):
        dh, dc = carry
        t, px_t, rec_t, h, c, dh_t, mask_t = inp
        dh = dh + dh_t
        d_px_t, d_rec_t, dh_prev, dc_prev = gates_backward(kind, px_t, rec_t, h, c, dh, dc)
        dh_prev = dh_prev + _dot(d_rec_t, w_hh, precision)
        d_px_t, d_rec_t = zero_where_masked(mask_t, (d_px_t, d_rec_t))
        dh_prev, dc_prev = select(mask_t, (dh_prev, dc_prev), (dh, dc))
        if truncate is not None:
            dh_prev, dc_prev = zero_where_masked(~truncation_cut(t, truncate), (dh_prev, dc_prev))
        return (dh_prev, dc_prev), (d_px_t, d_rec_t)

    inputs = (jnp.arange(num_steps), px, rec_all, h_prev, c_prev, d_h_all, mask)
    (d_h0, d_c0), (d_px, d_rec) = lax.scan(body, (jnp.zeros_like(h0), d_c_last), inputs, reverse=True)
    return d_px, d_rec, d_h0, d_c0
