"""The kernel contract's reference (jaxrnn._kernel_ref) against jax.vjp of its own forward.

The kernels are tested against this reference, so its backward is checked here
against automatic differentiation, with a perturbation ``eps`` added to the
recurrent projection so that ``d_rec`` is a gradient JAX can take.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxrnn import _kernel_ref as ref


def _forward_with_eps(kind, px, eps, w_hh, b_hh, h0, c0, mask):
    """``ref.forward`` with ``eps[t]`` added to the recurrent projection of step t."""

    def body(carry, inp):
        h, c = carry
        px_t, eps_t, mask_t = inp
        rec_t = h @ w_hh.T + b_hh[None, :] + eps_t
        h_new, c_new = ref.gates_forward(kind, px_t, rec_t, h, c)
        if mask_t is not None:
            h_new = jnp.where(mask_t[:, None], h_new, h)
            c_new = None if c_new is None else jnp.where(mask_t[:, None], c_new, c)
        return (h_new, c_new), (h_new, c_new)

    _, (h_all, c_all) = lax.scan(body, (h0, c0), (px, eps, mask))
    return h_all, c_all


def _inputs(kind, num_steps, batch, hidden, with_mask, seed=0):
    g = ref.NUM_GATES[kind]
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


@pytest.mark.parametrize("kind", ref.KINDS)
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("truncate", [None, 3])
def test_reference_backward_is_the_vjp_of_the_forward(kind, with_mask, truncate):
    num_steps, batch, hidden = 7, 3, 5
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs(kind, num_steps, batch, hidden, with_mask)
    eps = jnp.zeros((num_steps, batch, ref.NUM_GATES[kind] * hidden), jnp.float64)

    h_all, c_all, rec_all = ref.forward(kind, px, w_hh, b_hh, h0, c0, mask)
    want_h, want_c = _forward_with_eps(kind, px, eps, w_hh, b_hh, h0, c0, mask)
    np.testing.assert_allclose(h_all, want_h, rtol=1e-12, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(c_all, want_c, rtol=1e-12, atol=1e-12)

    got = ref.backward(kind, px, rec_all, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, truncate=truncate)

    def loss(px, eps, h0, c0):
        if truncate is None:
            h_all, c_all = _forward_with_eps(kind, px, eps, w_hh, b_hh, h0, c0, mask)
        else:
            h_all, c_all = _truncated_forward(kind, px, eps, w_hh, b_hh, h0, c0, mask, truncate)
        out = jnp.sum(h_all * d_h_all)
        if kind == "lstm":
            out = out + jnp.sum(c_all[-1] * d_c_last)
        return out

    want = jax.grad(loss, argnums=(0, 1, 2, 3) if kind == "lstm" else (0, 1, 2))(px, eps, h0, c0)
    for name, g_, w_ in zip(("d_px", "d_rec", "d_h0", "d_c0"), got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-10, atol=1e-10, err_msg=name)
    if kind != "lstm":
        assert got[3] is None


def _truncated_forward(kind, px, eps, w_hh, b_hh, h0, c0, mask, truncate):
    """The forward with the entering state's gradient stopped at multiples of ``truncate``."""
    num_steps = px.shape[0]
    h, c = h0, c0
    hs, cs = [], []
    for t in range(num_steps):
        if t > 0 and t % truncate == 0:
            h = lax.stop_gradient(h)
            c = None if c is None else lax.stop_gradient(c)
        rec_t = h @ w_hh.T + b_hh[None, :] + eps[t]
        h_new, c_new = ref.gates_forward(kind, px[t], rec_t, h, c)
        if mask is not None:
            h_new = jnp.where(mask[t][:, None], h_new, h)
            c_new = None if c_new is None else jnp.where(mask[t][:, None], c_new, c)
        h, c = h_new, c_new
        hs.append(h)
        cs.append(c)
    return jnp.stack(hs), (jnp.stack(cs) if c is not None else None)


@pytest.mark.parametrize("kind", ref.KINDS)
@pytest.mark.parametrize("with_mask, truncate, unroll", [(False, None, 1), (True, 2, 3)])
def test_xla_scan_kernel_equals_the_reference(kind, with_mask, truncate, unroll):
    """jaxrnn._scan_kernel (the XLA backend) against the contract, with its own residual."""
    from jaxrnn import _scan_kernel

    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs(kind, 7, 3, 5, with_mask, seed=1)
    want_fwd = ref.forward(kind, px, w_hh, b_hh, h0, c0, mask)
    h_all, c_all, saved = _scan_kernel.forward(kind, px, w_hh, b_hh, h0, c0, mask, unroll=unroll)
    np.testing.assert_allclose(h_all, want_fwd[0], rtol=1e-12, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(c_all, want_fwd[1], rtol=1e-12, atol=1e-12)
    want = ref.backward(kind, px, want_fwd[2], w_hh, h0, c0, *want_fwd[:2], mask, d_h_all, d_c_last, truncate=truncate)
    got = _scan_kernel.backward(
        kind, None, saved, w_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, truncate=truncate, unroll=unroll
    )
    for name, g_, w_ in zip(("d_px", "d_rec", "d_h0", "d_c0"), got, want):
        if w_ is None:
            assert g_ is None, name
        else:
            np.testing.assert_allclose(g_, w_, rtol=1e-12, atol=1e-12, err_msg=name)
