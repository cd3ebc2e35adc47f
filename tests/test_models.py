"""Stacked models against the same stack composed by hand from jr.rnn calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

import jaxrnn as jr
from jaxrnn._core import loop

LENGTHS = jnp.array([6, 2, 4])


def _inputs(size=3, dtype=jnp.float64):
    return jax.random.normal(jax.random.PRNGKey(1), (3, 6, size), dtype)


def _by_hand(model, params, xs, lengths, merge="concat", residual=False):
    """The stack written out: one jr.rnn per layer and direction."""
    finals, inputs = [], xs
    for layer, (cell, p) in enumerate(zip(model.cells, params)):
        if model.bidirectional:
            y_f, s_f = jr.rnn(cell, p.forward, inputs, lengths=lengths)
            y_b, s_b = jr.rnn(cell, p.backward, inputs, lengths=lengths, reverse=True)
            ys = jnp.concatenate([y_f, y_b], -1) if merge == "concat" else y_f + y_b
            finals.append(jr.Bidirectional(s_f, s_b))
        else:
            ys, s = jr.rnn(cell, p, inputs, lengths=lengths)
            finals.append(s)
        if residual and layer > 0:
            ys = ys + inputs
        inputs = ys
    return inputs, tuple(finals)


@pytest.mark.parametrize("factory", [jr.LSTM, jr.GRU, jr.RNN], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional, merge", [(False, "concat"), (True, "concat"), (True, "sum")])
def test_stack_equals_layers_composed_by_hand(factory, bidirectional, merge):
    model = factory(3, 4, num_layers=2, bidirectional=bidirectional, merge=merge)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = _inputs()
    got = model.apply(params, xs, LENGTHS)
    assert got[0].shape == (3, 6, model.output_size)
    assert model.output_size == (8 if bidirectional and merge == "concat" else 4)
    assert_trees_close(got, _by_hand(model, params, xs, LENGTHS, merge), rtol=1e-13)


def test_per_layer_sizes_and_residual_connections():
    model = jr.GRU(4, [4, 4, 4], residual=True)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    assert model.num_layers == 3 and model.layer_input_sizes == (4, 4, 4)
    xs = _inputs(4)
    assert_trees_close(
        model.apply(params, xs, LENGTHS), _by_hand(model, params, xs, LENGTHS, residual=True), rtol=1e-13
    )
    sized = jr.LSTM(3, [8, 5, 2], bidirectional=True)
    assert sized.layer_input_sizes == (3, 16, 10) and sized.output_size == 4
    ys, finals = sized.apply(sized.init(jax.random.PRNGKey(0), dtype=jnp.float64), _inputs())
    assert ys.shape == (3, 6, 4) and [f.forward.h.shape[-1] for f in finals] == [8, 5, 2]


def test_dropout_only_with_a_key_and_only_between_layers():
    xs = _inputs()
    one_layer = jr.LSTM(3, 4, dropout=0.5)
    p1 = one_layer.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    assert_trees_close(one_layer.apply(p1, xs, key=jax.random.PRNGKey(3)), one_layer.apply(p1, xs), rtol=0.0)

    model = jr.LSTM(3, 4, num_layers=2, dropout=0.5)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    plain = model.apply(params, xs)[0]
    undropped = jr.LSTM(3, 4, num_layers=2).apply(params, xs)[0]
    a = model.apply(params, xs, key=jax.random.PRNGKey(3))[0]
    b = model.apply(params, xs, key=jax.random.PRNGKey(3))[0]
    c = model.apply(params, xs, key=jax.random.PRNGKey(4))[0]
    assert_trees_close(plain, undropped, rtol=0.0)
    assert_trees_close(a, b, rtol=0.0)
    assert float(jnp.abs(a - plain).max()) > 1e-3 and float(jnp.abs(a - c).max()) > 1e-3


def test_dropout_scales_kept_units():
    # With an identity-like second layer input we can see the mask: a 2-layer Elman relu
    # model whose first layer outputs h, and the dropout mask is applied to h.
    model = jr.RNN(2, 64, num_layers=2, dropout=0.25, activation="relu")
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = jnp.abs(_inputs(2))
    # Replace layer 2 by a probe: zero recurrent weights, identity input weights.
    probe = jr.CellParams(jnp.eye(64), jnp.zeros((64, 64)), jnp.zeros(64), jnp.zeros(64))
    params = (params[0], probe)
    h1, _ = jr.rnn(model.cells[0], params[0], xs)
    out = model.apply(params, xs, key=jax.random.PRNGKey(5))[0]
    active = h1 > 0
    kept = out[active] > 0
    assert 0.65 < float(kept.mean()) < 0.85  # keep rate 0.75
    assert_trees_close(out[active][kept], (h1[active] / 0.75)[kept], rtol=1e-12)


def test_initial_state_structure_matches_finals_and_is_used():
    model = jr.LSTM(3, 4, num_layers=2, bidirectional=True)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = _inputs()
    state = jax.tree_util.tree_map(lambda a: a + 0.3, model.initial_state((3,), dtype=jnp.float64))
    ys, finals = model.apply(params, xs, state=state)
    assert jax.tree_util.tree_structure(finals) == jax.tree_util.tree_structure(state)
    y_f, _ = jr.rnn(model.cells[0], params[0].forward, xs, state[0].forward)
    y_b, _ = jr.rnn(model.cells[0], params[0].backward, xs, state[0].backward, reverse=True)
    y0 = jnp.concatenate([y_f, y_b], -1)
    y1_f, _ = jr.rnn(model.cells[1], params[1].forward, y0, state[1].forward)
    assert_trees_close(ys[..., :4], y1_f, rtol=1e-13)


def test_layer_norm_lstm_model_uses_layer_norm_cells():
    model = jr.LSTM(3, 4, num_layers=2, layer_norm=True)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    assert all(isinstance(p, jr.LayerNormLSTMParams) for p in params)
    xs = _inputs()
    assert_trees_close(model.apply(params, xs, LENGTHS), _by_hand(model, params, xs, LENGTHS), rtol=1e-13)


def test_time_major_model_layout():
    model = jr.GRU(3, 4, num_layers=2, time_major=True)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = _inputs()
    ys_tm, finals_tm = model.apply(params, jnp.swapaxes(xs, 0, 1))
    ys, finals = model.apply(params, xs, time_major=False)
    assert_trees_close((jnp.swapaxes(ys_tm, 0, 1), finals_tm), (ys, finals), rtol=1e-13)


def test_models_pass_remat_and_backend_to_every_layer(monkeypatch):
    model = jr.GRU(input_size=3, hidden_size=6, num_layers=2)
    params = model.init(jax.random.PRNGKey(0), jnp.float32)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3), jnp.float32)
    lengths = jnp.array([4, 3])

    def loss(p, **kwargs):
        ys, _ = model.apply(p, xs, lengths, **kwargs)
        return jnp.sum(ys * ys)

    want = jax.grad(loss)(params, backend="xla")
    got = jax.grad(lambda p: loss(p, remat=2))(params)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
    # Every layer's time loop gets the strategy (the kernels' numbers are test_backends.py's).
    seen = []

    def spy(cell, strategy, *args, **kwargs):
        seen.append(strategy)
        return run(cell, strategy._replace(backend="xla"), *args, **kwargs)

    run = loop.run
    monkeypatch.setattr(loop, "run", spy)
    pallas = jr.Pallas(target="gpu", interpret=True)
    jax.grad(lambda p: loss(p, remat=2, backend=pallas))(params)
    assert len(seen) == 2 and all(s.remat == 2 and s.backend == pallas for s in seen)
    with pytest.raises(ValueError, match=r"remat must be a positive int"):
        model.apply(params, xs, remat=0)


def _trajectories(infos):
    return jax.tree.map(lambda i: i.states, infos, is_leaf=lambda i: isinstance(i, jr.SolverInfo))


def _iterations(infos):
    return [int(i.iterations) for i in jax.tree.leaves(infos, is_leaf=lambda i: isinstance(i, jr.SolverInfo))]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["two-layers", "bidirectional"])
def test_newton_solver_reports_every_layer_and_warm_starts_each_from_its_trajectory(bidirectional):
    # Two layers one way, or one layer both ways: two solves a call either way.
    model = jr.GRU(3, 4, num_layers=1 if bidirectional else 2, bidirectional=bidirectional)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = _inputs()
    ys, finals, infos = model.apply(params, xs, LENGTHS, solver=jr.QuasiDEER(), return_info=True)
    cold = _iterations(infos)
    assert len(infos) == model.num_layers and isinstance(infos[0], jr.Bidirectional) == bidirectional
    assert len(cold) == 2 and min(cold) > 0

    # Started at its solution a solve does no iteration and returns that solution, so the
    # outputs are the same; the other, cold, sees the same inputs and iterates as before.
    guess = _trajectories(infos)
    guess = (jr.Bidirectional(guess[0].forward, None),) if bidirectional else (None, guess[1])
    warm = model.apply(params, xs, LENGTHS, solver=jr.QuasiDEER(guess=guess), return_info=True)
    assert _iterations(warm[2]) == ([0, cold[1]] if bidirectional else [cold[0], 0])
    assert_trees_close(warm[:2], (ys, finals), rtol=0.0)


def test_a_guess_that_is_not_one_entry_per_layer_is_refused():
    model = jr.GRU(3, 4, num_layers=2)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    xs = _inputs()
    one_layer = model.cells[0].initial_state((3, 6), jnp.float64)  # a HiddenState, a NamedTuple: one layer's
    fix = r"Pass the trajectories of a previous call with return_info=True: jax\.tree\.map\(lambda i: i\.states"
    for guess, got in [(one_layer, "a HiddenState of length 1"), ((one_layer,), "a tuple of length 1")]:
        with pytest.raises(
            ValueError,
            match=rf"solver\.guess must be a tuple with one entry per layer \(2\), each None or its trajectory; "
            rf"got {got}\. {fix}",
        ):
            model.apply(params, xs, solver=jr.QuasiDEER(guess=guess))
    both = jr.GRU(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(
        ValueError,
        match=r"solver\.guess\[1\] must be None or a Bidirectional pair of the directions' trajectories; "
        r"got a HiddenState\.",
    ):
        both.apply(both.init(jax.random.PRNGKey(0)), xs, solver=jr.DEER(guess=(None, one_layer)))
    with pytest.raises(ValueError, match=r"return_info=True reports a Newton solver's iterations"):
        model.apply(params, xs, return_info=True)
