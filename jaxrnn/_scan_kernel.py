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
  recurrent n-projection), not the projections: the reverse loop recomputes no
  gate (only the LSTM's ``tanh(c)``), and the kernel's residual is ``4H`` floats
  per step instead of ``2*G*H``; the input projection is not kept at all;
- the LSTM and Elman reverse steps return one delta array (``d_px`` is
  ``d_rec``), not two copies.

Its ``residual`` (the third output of :func:`forward`) is this kernel's own, not
the contract reference's ``rec_all``; only :func:`backward` reads it. The gate
equations are the reference's (``activations``, ``step_from_gates``,
``reverse_from_gates``), written once.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _kernel_ref as ref
from jaxrnn._cells import carry_dtype

NEEDS_PX = False  # backward() reads the saved gates, not the input projection


def _precision(precision: Optional[str]):
    return {None: None, "highest": lax.Precision.HIGHEST, "fast": lax.Precision.DEFAULT}[precision]


def _weights(w):
    """``(w for the loop's products, the dtype the other operand is rounded to)``.

    On CPU, low-precision weights are widened once, before the loop, and the other
    operand is rounded to their dtype: products of two bfloat16 numbers are exact
    in float32, so the result is that of a bfloat16 product with float32
    accumulation, and XLA:CPU of jax 0.7 has no bfloat16 dot in this layout.
    """
    wide = carry_dtype(w.dtype)
    if w.dtype != wide and jax.default_backend() == "cpu":
        return w.astype(wide), w.dtype
    return w, w.dtype


def _dot(a, w, precision):
    """``a @ w[0]`` with ``a`` rounded to ``w[1]``, accumulated in the carry dtype."""
    w, round_to = w
    return lax.dot_general(
        a.astype(round_to).astype(w.dtype), w, (((1,), (0,)), ((), ())), precision=precision,
        preferred_element_type=carry_dtype(a.dtype),
    )


def forward(kind, px, w_hh, b_hh, h0, c0, mask, *, precision=None, unroll: int = 1):
    """The contract's forward; the third output is this kernel's residual (the saved gates)."""
    w_t = _weights(w_hh.T)  # once, outside the loop
    prec = _precision(precision)
    bias = b_hh.astype(px.dtype)[None, :]

    def body(carry, inp):
        h, c = carry
        px_t, mask_t = inp
        act = ref.activations(kind, px_t, _dot(h, w_t, prec) + bias)
        h_new, c_new = ref.step_from_gates(kind, act, h, c)
        h_new, c_new = ref.select(mask_t, (h_new, c_new), (h, c))
        # Elman's activation is its new state, already in h_all: nothing more to keep.
        return (h_new, c_new), (h_new, c_new, None if kind.startswith("elman") else act)

    _, (h_all, c_all, saved) = lax.scan(body, (h0, c0), (px, mask), unroll=unroll)
    return h_all, c_all, saved


def backward(kind, px, saved, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, *,
             truncate=None, precision=None, unroll: int = 1):
    """The contract's backward, reading the residual of :func:`forward` (``px`` is unused)."""
    del px
    prec = _precision(precision)
    w = _weights(w_hh)
    num_steps = h_all.shape[0]
    h_prev = jnp.concatenate([h0[None], h_all[:-1]], axis=0) if kind == "gru" else None
    c_prev = None if c_all is None else jnp.concatenate([c0[None], c_all[:-1]], axis=0)
    if kind.startswith("elman"):
        saved = h_all  # the activation of each step is its new state

    def body(carry, inp):
        dh, dc = carry
        t, act_t, h_prev_t, c_t, c_prev_t, dh_t, mask_t = inp
        dh = dh + dh_t
        d_px_t, d_rec_t, dh_direct, dc_prev = ref.reverse_from_gates(kind, act_t, h_prev_t, c_prev_t, c_t, dh, dc)
        dh_prev = _dot(d_rec_t, w, prec)
        if dh_direct is not None:
            dh_prev = dh_prev + dh_direct
        same = d_px_t is d_rec_t
        d_px_t = ref.zero_where_masked(mask_t, d_px_t)
        d_rec_t = d_px_t if same else ref.zero_where_masked(mask_t, d_rec_t)
        dh_prev, dc_prev = ref.select(mask_t, (dh_prev, dc_prev), (dh, dc))
        if truncate is not None:
            dh_prev, dc_prev = ref.zero_where_masked(~ref.truncation_cut(t, truncate), (dh_prev, dc_prev))
        return (dh_prev, dc_prev), (d_px_t, None if same else d_rec_t)

    steps = jnp.arange(num_steps, dtype=jnp.int32)
    inputs = (steps, saved, h_prev, c_all, c_prev, d_h_all, mask)
    (d_h0, d_c0), (d_px, d_rec) = lax.scan(body, (jnp.zeros_like(h0), d_c_last), inputs, reverse=True, unroll=unroll)
    return d_px, (d_px if d_rec is None else d_rec), d_h0, d_c0
