"""Each cell's step against its textbook equations written in NumPy, and its initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CELLS, assert_trees_close

import jaxrnn as jr


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_step(name, p, h, c, x):
    """The equations of each cell's docstring, in NumPy (PyTorch gate order)."""
    p = jax.tree_util.tree_map(np.asarray, p)
    if name.startswith("elman"):
        a = x @ p.w_ih.T + p.b_ih + h @ p.w_hh.T + p.b_hh
        h = np.tanh(a) if name == "elman_tanh" else np.maximum(a, 0.0)
        return h, None
    if name == "lstm":
        i, f, g, o = np.split(x @ p.w_ih.T + p.b_ih + h @ p.w_hh.T + p.b_hh, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    if name == "gru":
        xr, xz, xn = np.split(x @ p.w_ih.T + p.b_ih, 3, axis=-1)
        hr, hz, hn = np.split(h @ p.w_hh.T + p.b_hh, 3, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None
    if name == "layer_norm_lstm":

        def ln(a, g):
            return (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5) * g

        a = ln(x @ p.w_ih.T, p.ln_ih_scale) + ln(h @ p.w_hh.T, p.ln_hh_scale) + p.bias
        i, f, g, o = np.split(a, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_step_matches_numpy_equations(name):
    cell = CELLS[name](6)
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    params = cell.init(keys[0], 4, dtype=jnp.float64)
    # Random biases and gains, so that every parameter takes part in the check.
    params = params._replace(
        **{
            f: jax.random.normal(k, getattr(params, f).shape, jnp.float64)
            for f, k in zip([f for f in params._fields if not f.startswith("w_")], keys[1:])
        }
    )
    x = np.asarray(jax.random.normal(keys[4], (3, 4), jnp.float64))
    h = np.asarray(jax.random.normal(keys[5], (3, 6), jnp.float64))
    c = -0.5 * h
    state = (
        jr.LSTMState(jnp.asarray(h), jnp.asarray(c))
        if hasattr(cell.initial_state(), "c")
        else jr.HiddenState(jnp.asarray(h))
    )
    new_state, y = cell.step(params, state, jnp.asarray(x))
    want_h, want_c = numpy_step(name, params, h, c, x)
    np.testing.assert_allclose(np.asarray(y), want_h, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(new_state.h), want_h, rtol=1e-12)
    if want_c is not None:
        np.testing.assert_allclose(np.asarray(new_state.c), want_c, rtol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
def test_step_accepts_any_leading_batch_shape(name):
    cell = CELLS[name](4)
    params = cell.init(jax.random.PRNGKey(0), 3, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3), jnp.float64)
    state = jax.tree_util.tree_map(lambda a: a + 0.2, cell.initial_state((2, 5), dtype=jnp.float64))
    got = cell.step(params, state, x)
    want = jax.vmap(jax.vmap(lambda s, xi: cell.step(params, s, xi)))(state, x)
    assert_trees_close(got, want, rtol=1e-14)
    one = cell.step(params, jax.tree_util.tree_map(lambda a: a[1, 2], state), x[1, 2])
    assert_trees_close(one, jax.tree_util.tree_map(lambda a: a[1, 2], got), rtol=1e-14)


@pytest.mark.parametrize("name, gates", [("elman_tanh", 1), ("lstm", 4), ("gru", 3), ("layer_norm_lstm", 4)])
def test_default_initialisers(name, gates):
    h, i = 8, 5
    cell = CELLS[name](h)
    params = cell.init(jax.random.PRNGKey(0), i, jnp.float32)
    assert params.w_ih.shape == (gates * h, i) and params.w_hh.shape == (gates * h, h)
    assert all(leaf.dtype == jnp.float32 for leaf in params)
    for block in np.split(np.asarray(params.w_hh, np.float64), gates):
        np.testing.assert_allclose(block @ block.T, np.eye(h), atol=1e-5)  # orthogonal per gate
    w_ih = np.asarray(params.w_ih)
    assert 0.5 / i < w_ih.var() < 2.0 / i  # LeCun normal: variance 1 / input_size
    bias = np.asarray(params.b_ih if hasattr(params, "b_ih") else params.bias)
    want = np.zeros(gates * h)
    if gates == 4:
        want[h : 2 * h] = 1.0  # forget gate
    np.testing.assert_array_equal(bias, want)


def test_forget_bias_is_configurable_and_initial_state_is_zero():
    cell = jr.lstm(3, forget_bias=2.5)
    params = cell.init(jax.random.PRNGKey(0), 2, dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(params.b_ih), [0, 0, 0, 2.5, 2.5, 2.5, 0, 0, 0, 0, 0, 0])
    state = cell.initial_state((2, 4), dtype=jnp.float64)
    assert isinstance(state, jr.LSTMState) and state.h.shape == state.c.shape == (2, 4, 3)
    assert float(jnp.abs(state.h).max()) == 0.0 and state.c.dtype == jnp.float64


def test_init_is_deterministic_in_the_key_and_keeps_dtype():
    cell = jr.gru(4)
    a = cell.init(jax.random.PRNGKey(7), 3, dtype=jnp.bfloat16)
    b = cell.init(jax.random.PRNGKey(7), 3, dtype=jnp.bfloat16)
    c = cell.init(jax.random.PRNGKey(8), 3, dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in a)
    assert_trees_close(a, b, rtol=0.0)
    assert float(jnp.abs(a.w_ih.astype(jnp.float32) - c.w_ih.astype(jnp.float32)).max()) > 0.0


_enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64


@pytest.mark.parametrize("x64, want", [(False, jnp.float32), (True, jnp.float64)])
def test_default_dtype_follows_jax(x64, want):
    """Parameters and states default to JAX's default float, as jnp.zeros does; an explicit dtype wins."""
    from flax import nnx

    import jaxrnn.flax as jrf

    with _enable_x64(x64):
        assert jnp.zeros(1).dtype == want
        for name, factory in CELLS.items():
            cell = factory(4)
            params = cell.init(jax.random.PRNGKey(0), 3)
            assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(want)}, name
            assert {leaf.dtype for leaf in cell.initial_state((2,))} == {jnp.dtype(want)}, name
            if name in ("lstm", "layer_norm_lstm"):  # the fused and the generic loop
                # x64 users' float64 inputs run with the default params, without a cast.
                xs = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 3))
                ys, _ = jr.rnn(cell, params, xs)
                assert ys.dtype == want, name
        model = jr.LSTM(3, 4, num_layers=2, bidirectional=True)
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.init(jax.random.PRNGKey(0)))} == {
            jnp.dtype(want)
        }
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.initial_state((2,)))} == {jnp.dtype(want)}
        layer = jrf.Recurrent(model, rngs=nnx.Rngs(0))
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(nnx.state(layer, nnx.Param))} == {jnp.dtype(want)}
        linen = jrf.LinenRecurrent(model).init(jax.random.PRNGKey(0), jnp.ones((2, 3, 3)))
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(linen)} == {jnp.dtype(want)}
        head = jr.readout(2)
        assert head.init(jax.random.PRNGKey(0), 4).weight.dtype == want
        # An explicit dtype still wins, and float64 mixed with float32 stays an error.
        explicit = jr.lstm(4).init(jax.random.PRNGKey(0), 3, jnp.bfloat16)
        assert {leaf.dtype for leaf in explicit} == {jnp.dtype(jnp.bfloat16)}
    with _enable_x64(True):
        params64 = jr.lstm(4).init(jax.random.PRNGKey(0), 3)
        with pytest.raises(TypeError, match="float64 cannot be mixed with lower precisions"):
            jr.rnn(jr.lstm(4), params64, jnp.ones((2, 3, 3), jnp.float32))
