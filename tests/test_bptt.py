"""Hand-written BPTT against jax.grad of the plain scan, finite differences and explicit references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CELLS, assert_trees_close, make
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn as jr

LENGTHS = jnp.array([7, 3, 0, 5])
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


# Every cell without and with lengths, in float64 and (the same code at its own tolerance)
# float32. The custom VJP sees lengths only as masks; direction is a reordering outside
# it (reverse_within, differentiated by JAX), so it rides along with the padded case,
# where reversing within each length is not a plain flip. The forward values of all four
# lengths x direction combinations are checked against a Python loop in test_runner.py.
BPTT_CASES = [(jnp.float64, False, False), (jnp.float64, True, True), (jnp.float32, True, True)]


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize(
    "dtype, padded, reverse", BPTT_CASES, ids=[f"{d.__name__}-padded{p}-reverse{r}" for d, p, r in BPTT_CASES]
)
def test_bptt_equals_autodiff(name, dtype, padded, reverse):
    cell, params, xs = make(name, dtype)
    lengths = LENGTHS if padded else None
    err = jr.check_bptt(cell, params, xs, lengths=lengths, reverse=reverse)
    assert err <= TOL[dtype]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_recomputing_from_saved_states_equals_autodiff(name):
    cell, params, xs = make(name)
    assert jr.check_bptt(cell, params, xs, lengths=LENGTHS, reverse=True, residuals="states", truncate=2) <= 1e-10


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
def test_finite_differences_float64(name):
    cell, params, xs = make(name, batch=2, steps=4)
    lengths = jnp.array([4, 2])
    state = jax.tree_util.tree_map(lambda a: a + 0.1, cell.initial_state((2,), dtype=jnp.float64))

    def f(p, s, x):
        ys, final = jr.rnn(cell, p, x, s, lengths=lengths, reverse=True)
        return ys, final

    check_grads(jax.jit(f), (params, state, xs), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def _truncated_reference(cell, params, xs, state, k):
    """A Python loop that stops the state's gradient explicitly at multiples of k."""
    ys = []
    for t in range(xs.shape[0]):
        if t > 0 and t % k == 0:
            state = jax.lax.stop_gradient(state)
        state, y = cell.step(params, state, xs[t])
        ys.append(y)
    return jnp.stack(ys), state


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
@pytest.mark.parametrize("grad", ["bptt", "autodiff"])
@pytest.mark.parametrize("k", [1, 3])
def test_truncate_equals_explicit_stop_gradient(name, grad, k):
    cell, params, xs = make(name, batch=2, steps=7)
    seq = xs[0]
    state = cell.initial_state((), dtype=jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(5), (7, cell.hidden_size), jnp.float64)

    def loss(run):
        def f(p, x):
            ys, final = run(p, x)
            return jnp.sum(ys * w) + jnp.sum(final.h)

        return jax.jit(jax.grad(f, argnums=(0, 1)))

    got = loss(lambda p, x: jr.rnn(cell, p, x, truncate=k, grad=grad))(params, seq)
    want = loss(lambda p, x: _truncated_reference(cell, p, x, state, k))(params, seq)
    full = loss(lambda p, x: jr.rnn(cell, p, x, grad=grad))(params, seq)
    assert_trees_close(got, want, rtol=1e-10, atol=1e-13)
    # Truncation must change the gradient, or this test proves nothing.
    assert float(jnp.abs(got[1] - full[1]).max()) > 1e-6


def test_truncate_counts_steps_in_processing_order_when_reversed():
    cell, params, xs = make("gru", batch=1, steps=7)
    n = 5
    lengths = jnp.array([n])
    state = cell.initial_state((), dtype=jnp.float64)

    def f_rnn(x):
        return jnp.sum(jr.rnn(cell, params, x[None], lengths=lengths, reverse=True, truncate=2)[0] ** 2)

    def f_ref(x):
        return jnp.sum(_truncated_reference(cell, params, x[:n][::-1], state, 2)[0] ** 2)

    got = jax.jit(jax.grad(f_rnn))(xs[0])
    want = jax.jit(jax.grad(f_ref))(xs[0])
    assert_trees_close(got, want, rtol=1e-10, atol=1e-13)
    assert float(jnp.abs(got[n:]).max()) == 0.0
    full = jax.jit(jax.grad(lambda x: jnp.sum(jr.rnn(cell, params, x[None], lengths=lengths, reverse=True)[0] ** 2)))(
        xs[0]
    )
    assert float(jnp.abs(got - full).max()) > 1e-6


class MinimalGatedUnit:
    """A user-defined cell: only init, initial_state and step (state is a dict)."""

    def __init__(self, hidden_size):
        self.hidden_size = hidden_size

    def init(self, key, input_size, dtype=jnp.float32):
        k = jax.random.split(key, 4)
        h = self.hidden_size
        return {
            "w_f": jax.random.normal(k[0], (input_size, h), dtype),
            "u_f": jax.random.normal(k[1], (h, h), dtype) / h,
            "w_n": jax.random.normal(k[2], (input_size, h), dtype),
            "u_n": jax.random.normal(k[3], (h, h), dtype) / h,
        }

    def initial_state(self, batch_shape=(), dtype=jnp.float32):
        return {"h": jnp.zeros(tuple(batch_shape) + (self.hidden_size,), dtype)}

    def step(self, params, state, x):
        h = state["h"]
        f = jax.nn.sigmoid(x @ params["w_f"] + h @ params["u_f"])
        n = jnp.tanh(x @ params["w_n"] + (f * h) @ params["u_n"])
        h = (1.0 - f) * h + f * n
        return {"h": h}, h


@pytest.mark.parametrize("padded", [False, True])
def test_user_defined_cell_uses_vjp_of_step(padded):
    cell = MinimalGatedUnit(4)
    params = cell.init(jax.random.PRNGKey(0), 3, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, 7, 3), jnp.float64)
    lengths = LENGTHS if padded else None
    ys, final = jr.rnn(cell, params, xs, lengths=lengths)
    assert ys.shape == (4, 7, 4) and final["h"].shape == (4, 4)
    assert jr.check_bptt(cell, params, xs, lengths=lengths, reverse=True, truncate=3) <= 1e-10
    assert jr.check_bptt(cell, params, xs, lengths=lengths) <= 1e-10


def test_split_cell_without_handwritten_reverse_uses_vjp_of_update():
    cell = jr.lstm(5)._replace(update_bwd=None)
    _, params, xs = make("lstm")
    assert jr.check_bptt(cell, params, xs, lengths=LENGTHS, reverse=True) <= 1e-10


def test_check_bptt_catches_a_wrong_backward():
    def wrong_bwd(state, px, rec, d_new, d_y):
        d_state, d_px, d_rec = jr.gru(5).update_bwd(state, px, rec, d_new, d_y)
        return d_state, d_px, d_px  # forgets the reset gate on the recurrent path

    cell = jr.gru(5)._replace(update_bwd=wrong_bwd)
    _, params, xs = make("gru")
    with pytest.raises(AssertionError, match=r"bptt gradient of params"):
        jr.check_bptt(cell, params, xs)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
def test_handwritten_gate_reverse_equals_vjp_of_update(name):
    cell = CELLS[name](5)
    k = jax.random.split(jax.random.PRNGKey(2), 5)
    state = cell.initial_state((3,), dtype=jnp.float64)
    state = jax.tree_util.tree_map(lambda a: jax.random.normal(k[0], a.shape, a.dtype), state)
    g = cell.init(k[1], 2, jnp.float64).w_ih.shape[0]
    px, rec = (jax.random.normal(kk, (3, g), jnp.float64) for kk in k[2:4])
    d_new = jax.tree_util.tree_map(lambda a: jax.random.normal(k[4], a.shape, a.dtype), state)
    d_y = jax.random.normal(k[4], (3, 5), jnp.float64) * 0.5
    _, vjp = jax.vjp(cell.update, state, px, rec)
    assert_trees_close(cell.update_bwd(state, px, rec, d_new, d_y), vjp((d_new, d_y)), rtol=1e-13, atol=1e-15)


def _ln_lstm(*args, **kwargs):
    return jr.LSTM(*args, layer_norm=True, **kwargs)


@pytest.mark.parametrize(
    "factory, dtype",
    [(jr.LSTM, jnp.float64), (jr.GRU, jnp.float64), (_ln_lstm, jnp.float64), (jr.LSTM, jnp.float32)],
    ids=["lstm-f64", "gru-f64", "ln_lstm-f64", "lstm-f32"],
)
def test_stacked_bidirectional_models_bptt_equals_autodiff(factory, dtype):
    model = factory(3, [5, 4], bidirectional=True, merge="concat")
    params = model.init(jax.random.PRNGKey(0), dtype=dtype)
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, 7, 3), dtype)
    w = jax.random.normal(jax.random.PRNGKey(2), (4, 7, model.output_size), dtype)

    def grads(grad):
        def f(p, x):
            ys, finals = model.apply(p, x, LENGTHS, grad=grad)
            return jnp.sum(ys * w) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(finals))

        return jax.jit(jax.grad(f, argnums=(0, 1)))(params, xs)

    got, want = grads("bptt"), grads("autodiff")
    tol = TOL[dtype]
    for g, w_ in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        scale = float(jnp.abs(w_).max())
        assert float(jnp.abs(g - w_).max()) <= tol * scale


def test_bptt_under_vmap_over_parameter_sets():
    cell, _, xs = make("lstm", jnp.float32)
    stacked = jax.vmap(lambda k: cell.init(k, 3, jnp.float32))(jax.random.split(jax.random.PRNGKey(4), 3))

    def grads(grad):
        def f(p):
            return jnp.sum(jr.rnn(cell, p, xs, lengths=LENGTHS, grad=grad)[0] ** 2)

        return jax.jit(jax.vmap(jax.grad(f)))(stacked)

    got, want = grads("bptt"), grads("autodiff")
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert float(jnp.abs(g - w).max()) <= 1e-5 * float(jnp.abs(w).max())


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(sorted(CELLS)),
    batch=st.integers(1, 3),
    steps=st.integers(1, 6),
    hidden=st.integers(1, 4),
    data=st.data(),
)
def test_property_bptt_equals_autodiff_over_shapes_and_lengths(name, batch, steps, hidden, data):
    lengths = jnp.array(data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    reverse = data.draw(st.booleans())
    cell = CELLS[name](hidden)
    params = cell.init(jax.random.PRNGKey(steps), 2, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(batch), (batch, steps, 2), jnp.float64)
    assert jr.check_bptt(cell, params, xs, lengths=lengths, reverse=reverse) <= 1e-10
    ys, _ = jax.jit(lambda p, x, n: jr.rnn(cell, p, x, lengths=n, reverse=reverse))(params, xs, lengths)
    mask = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    assert float(np.abs(np.asarray(ys)[~mask]).max(initial=0.0)) == 0.0
