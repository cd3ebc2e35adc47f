"""jr.rnn's forward pass against a Python loop of cell.step, and its transformations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CELLS, assert_trees_close, loop_rnn, loop_rnn_padded, make

import jaxrnn as jr

LENGTHS = np.array([7, 3, 0, 5])


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_scan_equals_python_loop_per_sequence(name, reverse, padded):
    cell, params, xs = make(name)
    lengths = LENGTHS if padded else np.full(xs.shape[0], xs.shape[1])
    ys, final = jr.rnn(cell, params, xs, lengths=jnp.asarray(lengths) if padded else None, reverse=reverse)
    want_ys, want_final = loop_rnn_padded(cell, params, xs, lengths, reverse=reverse)
    assert_trees_close((ys, final), (want_ys, want_final), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_layouts_agree(name):
    cell, params, xs = make(name)
    batch_major = jr.rnn(cell, params, xs)
    time_major = jr.rnn(cell, params, jnp.swapaxes(xs, 0, 1), time_major=True)
    single = jr.rnn(cell, params, xs[1])
    assert_trees_close(batch_major[0], jnp.swapaxes(time_major[0], 0, 1), rtol=1e-13)
    assert_trees_close(batch_major[1], time_major[1], rtol=1e-13)
    assert_trees_close(single, jax.tree_util.tree_map(lambda a: a[1], batch_major), rtol=1e-13)
    assert_trees_close(single, loop_rnn(cell, params, xs[1]), rtol=1e-12)


def test_given_initial_state_is_used():
    cell, params, xs = make("lstm")
    state = jr.LSTMState(h=jnp.full((4, 5), 0.3), c=jnp.full((4, 5), -0.7))
    ys, final = jr.rnn(cell, params, xs, state)
    want = [loop_rnn(cell, params, xs[b], jax.tree_util.tree_map(lambda a: a[b], state)) for b in range(4)]
    assert_trees_close(ys, jnp.stack([w[0] for w in want]), rtol=1e-12)
    assert_trees_close(final.c, jnp.stack([w[1].c for w in want]), rtol=1e-12)


@pytest.mark.parametrize("grad", ["bptt", "autodiff"])
def test_zero_length_returns_initial_state_and_finite_gradients(grad):
    cell, params, xs = make("lstm")
    state = jr.LSTMState(h=jnp.full((4, 5), 0.25), c=jnp.full((4, 5), 0.5))
    lengths = jnp.zeros(4, jnp.int32)

    def loss(p, s, x):
        ys, final = jr.rnn(cell, p, x, s, lengths=lengths, grad=grad, reverse=True)
        return jnp.sum(ys) + jnp.sum(final.h * final.c)

    ys, final = jr.rnn(cell, params, xs, state, lengths=lengths)
    assert float(jnp.abs(ys).max()) == 0.0
    assert_trees_close(final, state, rtol=0.0)
    g_p, g_s, g_x = jax.grad(loss, argnums=(0, 1, 2))(params, state, xs)
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree_util.tree_leaves((g_p, g_s, g_x)))
    assert float(jnp.abs(g_x).max()) == 0.0  # padded inputs do not influence anything
    assert_trees_close(g_s, jr.LSTMState(h=state.c, c=state.h), rtol=1e-15)


@pytest.mark.parametrize("unroll", [1, 3, 8, True])
def test_unroll_does_not_change_results(unroll):
    cell, params, xs = make("gru")
    want = jr.rnn(cell, params, xs, unroll=1)
    assert_trees_close(jr.rnn(cell, params, xs, unroll=unroll), want, rtol=1e-13)


def test_default_unroll_is_a_positive_int_for_this_backend():
    assert isinstance(jr.default_unroll(), int) and jr.default_unroll() >= 1


def test_no_retrace_on_second_call_with_same_shapes():
    cell, params, xs = make("lstm")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def loss(p, x):
        ys, _ = jr.rnn(cell, p, x, lengths=jnp.array([7, 3, 1, 5]))
        return jnp.sum(ys**2)

    grad = jax.jit(jax.grad(loss))
    grad(params, xs)
    grad(params, xs + 1.0)
    loss(params, xs)
    loss(params, xs * 2.0)
    chex.clear_trace_counter()


def test_vmap_over_parameter_sets_is_an_ensemble():
    cell, _, xs = make("gru")
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    stacked = jax.vmap(lambda k: cell.init(k, 3, dtype=jnp.float64))(keys)
    ys = jax.vmap(lambda p: jr.rnn(cell, p, xs)[0])(stacked)
    for i in range(3):
        member = jax.tree_util.tree_map(lambda a: a[i], stacked)
        assert_trees_close(ys[i], jr.rnn(cell, member, xs)[0], rtol=1e-13)


def test_vmap_over_single_sequences_equals_batch():
    cell, params, xs = make("lstm")
    lengths = jnp.asarray(LENGTHS)
    vmapped = jax.vmap(lambda x, n: jr.rnn(cell, params, x, lengths=n, reverse=True))(xs, lengths)
    assert_trees_close(vmapped, jr.rnn(cell, params, xs, lengths=lengths, reverse=True), rtol=1e-13)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
def test_bfloat16_params_and_inputs_carry_in_float32(name):
    cell, params, xs = make(name, jnp.float32)
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    ys16, final16 = jr.rnn(cell, p16, xs.astype(jnp.bfloat16))
    assert ys16.dtype == jnp.float32 and all(leaf.dtype == jnp.float32 for leaf in final16)
    # The same computation with the rounded weights and inputs in float32.
    p_rounded = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p16)
    ys32, _ = jr.rnn(cell, p_rounded, xs.astype(jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(ys16), np.asarray(ys32), atol=3e-2)
    grads = jax.grad(lambda p: jnp.sum(jr.rnn(cell, p, xs.astype(jnp.bfloat16))[0]))(p16)
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree_util.tree_leaves(grads))


def test_readout_applies_to_every_step():
    cell, params, xs = make("gru")
    head = jr.readout(2, activation="tanh")
    hp = head.init(jax.random.PRNGKey(1), cell.hidden_size, dtype=jnp.float64)
    ys, _ = jr.rnn(cell, params, xs)
    out = head.apply(hp, ys)
    want = np.tanh(np.asarray(ys) @ np.asarray(hp.weight).T + np.asarray(hp.bias))
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12)
