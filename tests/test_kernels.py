"""The kernel interface, the gate equations written once, and the XLA kernel against the oracle.

Every kernel module implements :class:`jaxrnn._kernels.interface.Kernel`; the
Pallas kernels are checked against the same oracle (``tests/kernel_oracle.py``)
in ``test_pallas_gpu.py`` and ``test_pallas_tpu.py``.
"""

import inspect

import jax
import jax.numpy as jnp
import kernel_oracle as oracle
import numpy as np
import pytest

from jaxrnn._core import gates
from jaxrnn._kernels import interface, registry, xla

KERNELS = ("xla", "gpu", "tpu", "cpu")


@pytest.mark.parametrize("name", KERNELS)
def test_every_kernel_implements_the_interface(name):
    module = registry.kernel(name)
    assert isinstance(module, interface.Kernel)
    for method in ("unsupported", "needs_px", "forward", "backward"):
        want = list(inspect.signature(getattr(interface.Kernel, method)).parameters.values())[1:]  # past self
        got = inspect.signature(getattr(module, method)).parameters
        positional = [p for p in got.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert len(positional) == sum(p.kind is p.POSITIONAL_OR_KEYWORD for p in want), f"{name}.{method}"
        for param in want:
            if param.kind is param.KEYWORD_ONLY:
                assert param.name in got and got[param.name].kind is param.KEYWORD_ONLY, (
                    f"{name}.{method}: {param.name}"
                )
    assert set(module.RESIDUALS) <= {"gates", "states"} and "gates" in module.RESIDUALS


def _gate_inputs(kind, seed):
    g, h = oracle.NUM_GATES[kind], 6
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    px, rec = (jax.random.normal(k, (3, g * h), jnp.float64) for k in keys[:2])
    state = jax.random.normal(keys[2], (3, h), jnp.float64)
    c = jax.random.normal(keys[3], (3, h), jnp.float64) if kind == "lstm" else None
    dh = jax.random.normal(keys[4], (3, h), jnp.float64)
    dc = jax.random.normal(keys[5], (3, h), jnp.float64) if kind == "lstm" else None
    return px, rec, state, c, dh, dc


@pytest.mark.parametrize("kind", gates.KINDS)
def test_gate_equations_equal_the_oracle_and_its_vjp(kind):
    """The one definition of the gate maths (forward and reverse) against the oracle's restated equations."""
    px, rec, h, c, dh, dc = _gate_inputs(kind, seed=3)
    h_new, c_new, act = gates.forward(kind, px, rec, h, c)
    want_h, want_c = oracle.gates_forward(kind, px, rec, h, c)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-13, atol=1e-13)
    if kind == "lstm":
        np.testing.assert_allclose(c_new, want_c, rtol=1e-13, atol=1e-13)

    _, vjp = jax.vjp(lambda px, rec, h, c: oracle.gates_forward(kind, px, rec, h, c), px, rec, h, c)
    want_px, want_rec, want_dh, want_dc = vjp((dh, dc))
    d_px, d_rec, dh_direct, dc_prev = gates.reverse(kind, act, h, c, c_new, dh, dc)
    np.testing.assert_allclose(d_px, want_px, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_rec, want_rec, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jnp.zeros_like(h) if dh_direct is None else dh_direct, want_dh, rtol=1e-12, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(dc_prev, want_dc, rtol=1e-12, atol=1e-12)
    # The per-gate form the GPU kernel calls is the same maths, block by block.
    g = gates.NUM_GATES[kind]
    _, _, act_blocks = gates.forward_blocks(kind, gates.split(px, g), gates.split(rec, g), h, c)
    np.testing.assert_array_equal(jnp.concatenate(act_blocks, axis=-1), act)


@pytest.mark.parametrize("kind", gates.KINDS)
@pytest.mark.parametrize(
    "with_mask, truncate, unroll, residuals",
    [(False, None, 1, "gates"), (True, 2, 3, "gates"), (True, 3, 1, "states")],
)
def test_xla_kernel_equals_the_oracle(kind, with_mask, truncate, unroll, residuals):
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = oracle.inputs(kind, 7, 3, 5, with_mask, seed=1)
    h_want, c_want, rec_all = oracle.forward(kind, px, w_hh, b_hh, h0, c0, mask)
    h_all, c_all, residual = xla.forward(kind, px, w_hh, b_hh, h0, c0, mask, residuals=residuals, unroll=unroll)
    np.testing.assert_allclose(h_all, h_want, rtol=1e-12, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(c_all, c_want, rtol=1e-12, atol=1e-12)
    if residuals == "states" or kind.startswith("elman"):
        assert residual is None
    want = oracle.backward(
        kind, px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, truncate=truncate
    )
    px_in = px if xla.needs_px(residuals) else None
    got = xla.backward(
        kind,
        px_in,
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
        truncate=truncate,
        unroll=unroll,
    )
    for name, g_, w_ in zip(("d_px", "d_rec", "d_h0", "d_c0"), got, want):
        if w_ is None:
            assert g_ is None, name
        else:
            np.testing.assert_allclose(g_, w_, rtol=1e-11, atol=1e-11, err_msg=name)


def test_pallas_values_are_checked():
    with pytest.raises(ValueError, match=r"Pallas target must be one of \('gpu', 'tpu'\) or None, got 'cuda'"):
        registry.Pallas(target="cuda").checked()
    with pytest.raises(ValueError, match=r"Pallas precision must be one of \('highest', 'fast'\), got 'tf32'"):
        registry.Pallas(precision="tf32").checked()
