"""Linear recurrences with matrix coefficients (associative.matrix_linear_scan), the system of DEER's Newton steps.

References, independent of the code under test: a Python loop of NumPy matrix
products (float64), and for ``K = 1`` the elementwise ``linear_scan``. The
8-device checks (time split over a mesh axis) are in ``test_parallel.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn._kernels import associative

T = 13  # odd, so the associative scan's odd-length paths run


def _system(batch: tuple, K: int, seed: int = 0):
    """``(a [T, *batch, K, K], b [T, *batch, K], h0 [*batch, K])``, float64, contracting on average."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(T, *batch, K, K)) * 0.8 / np.sqrt(K)
    return a, rng.normal(size=(T, *batch, K)), rng.normal(size=(*batch, K))


@pytest.mark.parametrize("method", associative.METHODS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch, K", [((), 3), ((2,), 1)])
def test_equals_a_python_loop(method, reverse, batch, K):
    a, b, h0 = _system(batch, K)
    want, h = [None] * T, h0
    for t in reversed(range(T)) if reverse else range(T):
        h = want[t] = np.einsum("...ij,...j->...i", a[t], h) + b[t]
    scan = jax.jit(lambda *x: associative.matrix_linear_scan(*x, reverse=reverse, method=method))
    got = scan(*map(jnp.asarray, (a, b, h0)))
    assert got.shape == (T, *batch, K) and got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), np.stack(want), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method, reverse", [("associative", False), ("sequential", True)])
def test_one_by_one_matrices_are_the_elementwise_scan(method, reverse):
    a, b, h0 = map(jnp.asarray, _system((3,), 1, seed=1))

    def both(a, b, h0):
        options = {"reverse": reverse, "method": method}
        matrix = associative.matrix_linear_scan(a, b, h0, **options)
        return matrix[..., 0], associative.linear_scan(a[..., 0, 0], b[..., 0], h0[..., 0], **options)

    got, want = jax.jit(both)(a, b, h0)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-14, atol=1e-15)
