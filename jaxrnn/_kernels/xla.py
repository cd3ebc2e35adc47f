"""The fused recurrence of the built-in cells as a tuned ``lax.scan``: the XLA kernel.

It implements :class:`jaxrnn._kernels.interface.Kernel`, as the Pallas kernels
do. What makes it faster than the generic loop over a cell's own functions
(measured in ``benchmarks/NOTES.md``):

- the recurrent weights are transposed once before the loop, so each step's
  product is ``h @ W_hh^T`` in row-major order (XLA:CPU runs
  ``dot_general`` over ``W_hh``'s second axis about 1.5x slower in a loop);
- with ``residuals="gates"`` the forward keeps the activated gates (LSTM: i, f,
  g, o; GRU: r, z, n and the recurrent n-projection), not the projections: the
  reverse loop recomputes no gate (only the LSTM's ``tanh(c)``), the residual is
  ``4H`` floats per step instead of ``2*G*H``, and the input projection is not
  kept at all; with ``residuals="states"`` it keeps nothing but the states and
  the reverse loop recomputes each step's recurrent projection and gates;
- the LSTM and Elman reverse steps return one delta array (``d_px`` is
  ``d_rec``), not two copies.

The gate equations are :mod:`jaxrnn._core.gates`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._core import gates
from jaxrnn._core.checks import carry_dtype
from jaxrnn._core.masking import select, truncation_cut, zero_where_masked

AVAILABLE = True
WHY_UNAVAILABLE: str | None = None
RESIDUALS = ("gates", "states")


def unsupported(kind: str, batch: int, hidden_size: int, w_dtype, precision: str | None = None) -> str | None:
    """Why the kernel cannot run this configuration (never: it runs every kind, shape and dtype)."""
    if kind not in gates.KINDS:
        return f"no kernel for kind {kind!r} (kinds: {gates.KINDS})"
    return None


def needs_px(residuals: str) -> bool:
    """The backward reads ``px`` only to recompute the gates (``residuals="states"``)."""
    return residuals == "states"


def _precision(precision: str | None):
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
        a.astype(round_to).astype(w.dtype),
        w,
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=carry_dtype(a.dtype),
    )


def forward(
    kind,
    px,
    w_hh,
    b_hh,
    h0,
    c0,
    mask,
    *,
    residuals: str = "gates",
    precision: str | None = None,
    interpret: bool = False,
    unroll: int = 1,
):
    """The kernel's forward: ``(h_all, c_all, residual)``, the residual the saved gates (or None)."""
    del interpret
    w_t = _weights(w_hh.T)  # once, outside the loop
    prec = _precision(precision)
    bias = b_hh.astype(px.dtype)[None, :]
    # Elman's activation is its new state, already in h_all: nothing more to keep.
    keep = residuals == "gates" and not kind.startswith("elman")

    def body(carry, inp):
        h, c = carry
        px_t, mask_t = inp
        h_new, c_new, act = gates.forward(kind, px_t, _dot(h, w_t, prec) + bias, h, c)
        h_new, c_new = select(mask_t, (h_new, c_new), (h, c))
        return (h_new, c_new), (h_new, c_new, act if keep else None)

    _, (h_all, c_all, saved) = lax.scan(body, (h0, c0), (px, mask), unroll=unroll)
    return h_all, c_all, saved


def backward(
    kind,
    px,
    residual,
    w_hh,
    b_hh,
    h0,
    c0,
    h_all,
    c_all,
    mask,
    d_h_all,
    d_c_last,
    *,
    truncate: int | None = None,
    precision: str | None = None,
    interpret: bool = False,
    unroll: int = 1,
):
    """The kernel's reverse loop: ``(d_px, d_rec, d_h0, d_c0)``.

    Reads the gates kept by :func:`forward`; without them (``residuals="states"``)
    recomputes each step's gates from ``px`` and the state entering it.
    """
    del interpret
    prec = _precision(precision)
    w = _weights(w_hh)
    num_steps = h_all.shape[0]
    recompute = residual is None and not kind.startswith("elman")
    need_h_prev = kind == "gru" or recompute
    h_prev = jnp.concatenate([h0[None], h_all[:-1]], axis=0) if need_h_prev else None
    c_prev = None if c_all is None else jnp.concatenate([c0[None], c_all[:-1]], axis=0)
    if kind.startswith("elman"):
        residual = h_all  # the activation of each step is its new state
    w_t = _weights(w_hh.T) if recompute else None
    bias = b_hh.astype(h_all.dtype)[None, :] if recompute else None

    def body(carry, inp):
        dh, dc = carry
        t, act_t, px_t, h_prev_t, c_t, c_prev_t, dh_t, mask_t = inp
        if recompute:
            act_t = gates.forward(kind, px_t, _dot(h_prev_t, w_t, prec) + bias, h_prev_t, c_prev_t)[2]
        dh = dh + dh_t
        d_px_t, d_rec_t, dh_direct, dc_prev = gates.reverse(kind, act_t, h_prev_t, c_prev_t, c_t, dh, dc)
        dh_prev = _dot(d_rec_t, w, prec)
        if dh_direct is not None:
            dh_prev = dh_prev + dh_direct
        same = d_px_t is d_rec_t
        d_px_t = zero_where_masked(mask_t, d_px_t)
        d_rec_t = d_px_t if same else zero_where_masked(mask_t, d_rec_t)
        dh_prev, dc_prev = select(mask_t, (dh_prev, dc_prev), (dh, dc))
        if truncate is not None:
            dh_prev, dc_prev = zero_where_masked(~truncation_cut(t, truncate), (dh_prev, dc_prev))
        return (dh_prev, dc_prev), (d_px_t, None if same else d_rec_t)

    steps = jnp.arange(num_steps, dtype=jnp.int32)
    inputs = (steps, residual, px if recompute else None, h_prev, c_all, c_prev, d_h_all, mask)
    (d_h0, d_c0), (d_px, d_rec) = lax.scan(body, (jnp.zeros_like(h0), d_c_last), inputs, reverse=True, unroll=unroll)
    return d_px, (d_px if d_rec is None else d_rec), d_h0, d_c0
