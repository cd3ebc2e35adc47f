"""The oracle for every kernel: a plain scan of the gate equations, differentiated by JAX.

Independent of the production code: the gate equations are restated here (the
kernels use :mod:`jaxrnn._core.gates`), and the backward is ``jax.vjp`` of the
forward, with a perturbation ``eps`` added to each step's recurrent projection so
that ``d_rec`` is a gradient JAX can take. Same signatures as the kernel
interface (:mod:`jaxrnn._kernels.interface`); options it does not need are ignored.
"""

import jax
import jax.numpy as jnp
from jax import lax

KINDS = ("elman_tanh", "elman_relu", "lstm", "gru")
NUM_GATES = {"elman_tanh": 1, "elman_relu": 1, "lstm": 4, "gru": 3}


def gates_forward(kind, px, rec, h, c):
    """One step: ``(h_new, c_new)``, ``c_new`` None but for the LSTM."""
    sig = jax.nn.sigmoid
    if kind == "elman_tanh":
        return jnp.tanh(px + rec), None
    if kind == "elman_relu":
        return jnp.maximum(px + rec, 0.0), None
    if kind == "lstm":
        i, f, g, o = jnp.split(px + rec, 4, axis=-1)
        c_new = sig(f) * c + sig(i) * jnp.tanh(g)
        return sig(o) * jnp.tanh(c_new), c_new
    xr, xz, xn = jnp.split(px, 3, axis=-1)
    hr, hz, hn = jnp.split(rec, 3, axis=-1)
    r, z = sig(xr + hr), sig(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h, None


def _dot_t(h, w_hh):
    return lax.dot_general(
        h.astype(w_hh.dtype),
        w_hh,
        (((1,), (1,)), ((), ())),
        precision=lax.Precision.HIGHEST,
        preferred_element_type=h.dtype,
    )


def _scan(kind, px, eps, w_hh, b_hh, h0, c0, mask, truncate=None):
    """``(h_all, c_all, rec_all)`` with ``eps[t]`` added to step t's recurrent projection."""

    def body(carry, inp):
        h, c = carry
        t, px_t, eps_t, mask_t = inp
        if truncate is not None:
            cut = jnp.logical_and(t > 0, t % truncate == 0)
            h = jnp.where(cut, lax.stop_gradient(h), h)
            c = None if c is None else jnp.where(cut, lax.stop_gradient(c), c)
        rec_t = _dot_t(h, w_hh) + b_hh[None, :].astype(h.dtype) + eps_t
        h_new, c_new = gates_forward(kind, px_t, rec_t, h, c)
        if mask_t is not None:
            h_new = jnp.where(mask_t[:, None], h_new, h)
            c_new = None if c is None else jnp.where(mask_t[:, None], c_new, c)
        return (h_new, c_new), (h_new, c_new, rec_t)

    steps = jnp.arange(px.shape[0])
    _, (h_all, c_all, rec_all) = lax.scan(body, (h0, c0), (steps, px, eps, mask))
    return h_all, c_all, rec_all


def forward(kind, px, w_hh, b_hh, h0, c0, mask, **options):
    """``(h_all, c_all, rec_all)``."""
    return _scan(kind, px, jnp.zeros_like(px), w_hh, b_hh, h0, c0, mask)


def backward(kind, px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, *, truncate=None, **options):
    """``(d_px, d_rec, d_h0, d_c0)`` by ``jax.vjp`` of the forward (``rec_all``, ``h_all``, ``c_all`` unused)."""
    lstm = kind == "lstm"

    def f(px, eps, h0, c0):
        h_all, c_all, _ = _scan(kind, px, eps, w_hh, b_hh, h0, c0, mask, truncate)
        return h_all, (c_all[-1] if lstm else None)

    _, vjp = jax.vjp(f, px, jnp.zeros_like(px), h0, c0)
    d_px, d_rec, d_h0, d_c0 = vjp((d_h_all, d_c_last))
    return d_px, d_rec, d_h0, (d_c0 if lstm else None)


def inputs(kind, num_steps, batch, hidden, with_mask, seed=0):
    """Random float64 kernel inputs: ``px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last``."""
    import numpy as np

    g = NUM_GATES[kind]
    keys = jax.random.split(jax.random.PRNGKey(seed), 8)
    px = jax.random.normal(keys[0], (num_steps, batch, g * hidden), jnp.float64)
    w_hh = 0.5 * jax.random.normal(keys[1], (g * hidden, hidden), jnp.float64) / np.sqrt(hidden)
    b_hh = 0.1 * jax.random.normal(keys[2], (g * hidden,), jnp.float64)
    h0 = 0.5 * jax.random.normal(keys[3], (batch, hidden), jnp.float64)
    c0 = 0.5 * jax.random.normal(keys[4], (batch, hidden), jnp.float64) if kind == "lstm" else None
    mask = None
    if with_mask:
        lengths = jax.random.randint(keys[5], (batch,), 0, num_steps + 1)
        mask = jnp.arange(num_steps)[:, None] < lengths[None, :]
    d_h_all = jax.random.normal(keys[6], (num_steps, batch, hidden), jnp.float64)
    d_c_last = jax.random.normal(keys[7], (batch, hidden), jnp.float64) if kind == "lstm" else None
    return px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last
