"""The fused recurrence of the built-in cells as a tuned ``lax.scan``: the XLA backend.

It implements the kernel contract of :mod:`jaxrnn._kernel_ref` (the Pallas
kernels implement the same one), so :mod:`jaxrnn._kernels` wraps all backends in
one ``custom_vjp`` whose input projection and weight gradients are large
matmuls. What makes it faster than the generic BPTT of :mod:`jaxrnn._bptt`
(measured in ``benchmarks/NOTES.md``):

- the recurrent weights are transposed once before the loop, so each step's
  product is ``h @ W_hh^T`` in row-major order (XLA:CPU runs
  ``dot_general`` over ``W_hh``'s second axis about 1.5x slower in a loop);
- the forward keeps the activated gates (LSTM: i, f, g, o; GRU: r, z, n and the
  recurrent n-projection), not the projections: the reverse loop computes no
  transcendental functions, and the kernel's residual is ``4H`` floats per step
  instead of ``2*G*H``; the input projection is not kept at all;
- the LSTM and Elman reverse steps return one delta array (``d_px`` is
  ``d_rec``), not two copies.

Its ``residual`` (the third output of :func:`forward`) is this kernel's own, not
the contract reference's ``rec_all``; only :func:`backward` reads it.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._cells import carry_dtype

AVAILABLE = True
WHY_UNAVAILABLE = None
NEEDS_PX = False  # backward() reads the saved gates, not the input projection


def unsupported(kind, batch, hidden_size, w_dtype, precision) -> Optional[str]:
    return None


def _precision(precision: Optional[str]):
    return {None: None, "highest": lax.Precision.HIGHEST, "fast": lax.Precision.DEFAULT}[precision]


def _dot(a, w, precision):
    """``a @ w`` in ``w``'s dtype, accumulated in the carry dtype."""
    return lax.dot_general(
        a.astype(w.dtype), w, (((1,), (0,)), ((), ())), precision=precision,
        preferred_element_type=carry_dtype(a.dtype),
    )


def _split(a, parts: int):
    return jnp.split(a, parts, axis=-1)


def _keep(mask_t, new, old):
    if mask_t is None or new is None:
        return new
    return jnp.where(mask_t[:, None], new, old)


def _step_forward(kind: str, px_t, rec_t, h, c):
    """``(h_new, c_new, saved)`` of one step; ``saved`` is what :func:`_step_backward` reads."""
    if kind == "elman_tanh":
        return jnp.tanh(px_t + rec_t), None, None
    if kind == "elman_relu":
        return jnp.maximum(px_t + rec_t, 0.0), None, None
    if kind == "lstm":
        i, f, g, o = _split(px_t + rec_t, 4)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_new = f * c + i * g
        return o * jnp.tanh(c_new), c_new, jnp.concatenate([i, f, g, o], axis=-1)
    xr, xz, xn = _split(px_t, 3)
    hr, hz, hn = _split(rec_t, 3)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h, None, jnp.concatenate([r, z, n, hn], axis=-1)


def _step_backward(kind: str, saved, h_prev, h_new, c, c_prev, dh, dc):
    """``(d_px, d_rec, dh_direct, dc_prev)`` of one step from what the forward saved."""
    if kind in ("elman_tanh", "elman_relu"):
        slope = 1.0 - h_new * h_new if kind == "elman_tanh" else (h_new > 0.0).astype(h_new.dtype)
        da = dh * slope
        return da, da, None, None
    if kind == "lstm":
        i, f, g, o = _split(saved, 4)
        tanh_c = jnp.tanh(c)
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        da = jnp.concatenate(
            [dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)],
            axis=-1,
        )
        return da, da, None, dc * f
    r, z, n, hn = _split(saved, 4)
    dan = dh * (1.0 - z) * (1.0 - n * n)
    daz = dh * (h_prev - n) * z * (1.0 - z)
    dar = dan * hn * r * (1.0 - r)
    d_px = jnp.concatenate([dar, daz, dan], axis=-1)
    d_rec = jnp.concatenate([dar, daz, dan * r], axis=-1)
    return d_px, d_rec, dh * z, None


def forward(kind, px, w_hh, b_hh, h0, c0, mask, *, precision=None, interpret=False, unroll: int = 1):
    """The contract's forward; the third output is this kernel's residual (the saved gates)."""
    del interpret
    w_t = w_hh.T  # once, outside the loop
    prec = _precision(precision)
    bias = b_hh.astype(px.dtype)[None, :]

    def body(carry, inp):
        h, c = carry
        px_t, mask_t = inp
        rec_t = _dot(h, w_t, prec) + bias
        h_new, c_new, saved = _step_forward(kind, px_t, rec_t, h, c)
        h_new, c_new = _keep(mask_t, h_new, h), _keep(mask_t, c_new, c)
        return (h_new, c_new), (h_new, c_new, saved)

    _, (h_all, c_all, saved) = lax.scan(body, (h0, c0), (px, mask), unroll=unroll)
    return h_all, c_all, saved


def backward(kind, px, saved, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, *,
             truncate=None, precision=None, interpret=False, unroll: int = 1):
    """The contract's backward, reading the residual of :func:`forward` (``px`` is unused)."""
    del px, interpret
    prec = _precision(precision)
    num_steps = h_all.shape[0]
    h_prev = None if kind == "elman_tanh" or kind == "elman_relu" or kind == "lstm" else (
        jnp.concatenate([h0[None], h_all[:-1]], axis=0)
    )
    c_prev = None if c_all is None else jnp.concatenate([c0[None], c_all[:-1]], axis=0)
    h_new = h_all if kind in ("elman_tanh", "elman_relu") else None

    def body(carry, inp):
        dh, dc = carry
        t, saved_t, h_prev_t, h_new_t, c_t, c_prev_t, dh_t, mask_t = inp
        dh = dh + dh_t
        d_px_t, d_rec_t, dh_direct, dc_prev = _step_backward(kind, saved_t, h_prev_t, h_new_t, c_t, c_prev_t, dh, dc)
        dh_prev = _dot(d_rec_t, w_hh, prec)
        if dh_direct is not None:
            dh_prev = dh_prev + dh_direct
        same = d_px_t is d_rec_t
        if mask_t is not None:
            d_px_t = jnp.where(mask_t[:, None], d_px_t, 0.0)
            d_rec_t = d_px_t if same else jnp.where(mask_t[:, None], d_rec_t, 0.0)
            dh_prev = jnp.where(mask_t[:, None], dh_prev, dh)
            dc_prev = _keep(mask_t, dc_prev, dc)
        if truncate is not None:
            cut = jnp.logical_and(t > 0, t % truncate == 0)
            dh_prev = jnp.where(cut, jnp.zeros_like(dh_prev), dh_prev)
            dc_prev = None if dc_prev is None else jnp.where(cut, jnp.zeros_like(dc_prev), dc_prev)
        return (dh_prev, dc_prev), (d_px_t, None if same else d_rec_t)

    steps = jnp.arange(num_steps, dtype=jnp.int32)
    inputs = (steps, saved, h_prev, h_new, c_all, c_prev, d_h_all, mask)
    (d_h0, d_c0), (d_px, d_rec) = lax.scan(body, (jnp.zeros_like(h0), d_c_last), inputs, reverse=True, unroll=unroll)
    return d_px, (d_px if d_rec is None else d_rec), d_h0, d_c0
