"""Bad input gets a clear error naming the argument, what was expected and what came."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make

import jaxrnn as jr


@pytest.fixture(scope="module")
def lstm_setup():
    return make("lstm", jnp.float32)  # xs [4, 7, 3], hidden 5


def _call(setup, **changes):
    cell, params, xs = setup
    args = dict(cell=cell, params=params, xs=xs)
    args.update(changes)
    kwargs = {k: v for k, v in args.items() if k not in ("cell", "params", "xs")}
    return jr.rnn(args["cell"], args["params"], args["xs"], **kwargs)


RNN_ERRORS = [
    (
        "rank_1",
        dict(xs=jnp.ones(3)),
        ValueError,
        r"xs must have rank 3 \(\[B, T, I\]\) or rank 2 .* got shape \(3,\) \(rank 1\)",
    ),
    ("rank_4", dict(xs=jnp.ones((2, 4, 7, 3))), ValueError, r"got shape \(2, 4, 7, 3\) \(rank 4\).*jax.vmap"),
    ("int_xs", dict(xs=jnp.ones((4, 7, 3), jnp.int32)), TypeError, r"xs must be a floating array .* got dtype int32"),
    (
        "complex_xs",
        dict(xs=jnp.ones((4, 7, 3), jnp.complex64)),
        TypeError,
        r"xs must be a floating array .* got dtype complex64",
    ),
    (
        "input_size",
        dict(xs=jnp.ones((4, 7, 6), jnp.float32)),
        ValueError,
        r"inputs have size 6 on their last axis \(shape \(7, 4, 6\)\), but params expect input_size=3",
    ),
    (
        "no_steps",
        dict(xs=jnp.ones((4, 0, 3))),
        ValueError,
        r"xs must have at least one time step, got shape \(0, 4, 3\)",
    ),
    (
        "lengths_shape",
        dict(lengths=jnp.array([1, 2])),
        ValueError,
        r"lengths must have shape \(4,\) .* got shape \(2,\)",
    ),
    (
        "lengths_rank",
        dict(lengths=jnp.ones((4, 1), jnp.int32)),
        ValueError,
        r"lengths must have shape \(4,\) .* got shape \(4, 1\)",
    ),
    ("lengths_dtype", dict(lengths=jnp.ones(4)), TypeError, r"lengths must be an integer array, got dtype float"),
    (
        "lengths_above",
        dict(lengths=jnp.array([1, 2, 8, 3])),
        ValueError,
        r"lengths must lie in \[0, 7\] \(T = 7 steps in xs\), got values from 1 to 8",
    ),
    (
        "lengths_below",
        dict(lengths=jnp.array([-1, 2, 3, 3])),
        ValueError,
        r"lengths must lie in \[0, 7\] .* got values from -1 to 3",
    ),
    ("grad_name", dict(grad="adjoint"), ValueError, r"grad must be one of \('bptt', 'autodiff'\), got 'adjoint'"),
    ("residuals_name", dict(residuals="all"), ValueError, r"residuals must be one of \('states', 'gates'\), got 'all'"),
    ("truncate_zero", dict(truncate=0), ValueError, r"truncate must be a positive int or None, got 0"),
    ("truncate_float", dict(truncate=2.5), ValueError, r"truncate must be a positive int or None, got 2.5"),
    ("unroll_zero", dict(unroll=0), ValueError, r"unroll must be a positive int, got 0"),
    (
        "state_structure",
        dict(state=jr.HiddenState(jnp.zeros((4, 5)))),
        ValueError,
        r"state does not match the cell: expected a pytree of structure .*LSTMState",
    ),
    (
        "state_shape",
        dict(state=jr.LSTMState(jnp.zeros((4, 6)), jnp.zeros((4, 6)))),
        ValueError,
        r"state leaf has shape \(4, 6\), expected \(4, 5\)",
    ),
    (
        "state_batch",
        dict(state=jr.LSTMState(jnp.zeros((2, 5)), jnp.zeros((2, 5)))),
        ValueError,
        r"state leaf has shape \(2, 5\), expected \(4, 5\) \(batch shape \(4,\)",
    ),
    (
        "state_dtype",
        dict(state=jr.LSTMState(jnp.zeros((4, 5), jnp.int32), jnp.zeros((4, 5), jnp.int32))),
        TypeError,
        r"state leaves must be floating, got dtype int32",
    ),
    (
        "f64_with_f32",
        dict(xs=jnp.ones((4, 7, 3), jnp.float64)),
        TypeError,
        r"xs has dtype float64 but params have dtype float32",
    ),
]


@pytest.mark.parametrize("changes, error, message", [c[1:] for c in RNN_ERRORS], ids=[c[0] for c in RNN_ERRORS])
def test_rnn_rejects_bad_input(lstm_setup, changes, error, message):
    with pytest.raises(error, match=message):
        _call(lstm_setup, **changes)


def test_params_of_another_cell_are_named(lstm_setup):
    cell, _, xs = lstm_setup
    gru_params = jr.gru(5).init(jax.random.PRNGKey(0), 3, jnp.float32)
    with pytest.raises(
        ValueError,
        match=re.escape("params.w_ih has shape (15, 3), but the lstm cell with hidden_size=5 expects (20, input_size)"),
    ):
        jr.rnn(cell, gru_params, xs)


def test_integer_params_are_rejected(lstm_setup):
    cell, params, xs = lstm_setup
    with pytest.raises(TypeError, match=r"params must be floating arrays, got a leaf of dtype int32"):
        jr.rnn(cell, jax.tree_util.tree_map(lambda a: a.astype(jnp.int32), params), xs)


def test_lengths_are_not_checked_against_values_under_jit(lstm_setup):
    cell, params, xs = lstm_setup
    ys, _ = jax.jit(lambda n: jr.rnn(cell, params, xs, lengths=n))(jnp.array([7, 3, 0, 5]))
    assert ys.shape == (4, 7, 5)


def test_step_rejects_wrong_input_and_state_sizes(lstm_setup):
    cell, params, _ = lstm_setup
    state = cell.initial_state((2,))
    with pytest.raises(
        ValueError, match=r"inputs have size 4 on their last axis \(shape \(2, 4\)\), but params expect input_size=3"
    ):
        cell.step(params, state, jnp.ones((2, 4)))
    bad_state = jr.LSTMState(jnp.zeros((2, 6)), jnp.zeros((2, 6)))
    with pytest.raises(
        ValueError, match=r"state has hidden size 6 \(shape \(2, 6\)\), but the lstm cell has hidden_size=5"
    ):
        cell.step(params, bad_state, jnp.ones((2, 3)))


FACTORY_ERRORS = [
    (
        "activation",
        lambda: jr.elman(4, activation="sigmoid"),
        ValueError,
        r"activation must be one of \['relu', 'tanh'\], got 'sigmoid'",
    ),
    ("hidden_zero", lambda: jr.lstm(0), ValueError, r"hidden_size must be a positive int, got 0"),
    ("hidden_float", lambda: jr.gru(4.0), ValueError, r"hidden_size must be a positive int, got 4.0"),
    (
        "input_size",
        lambda: jr.lstm(4).init(jax.random.PRNGKey(0), input_size=0),
        ValueError,
        r"input_size must be a positive int, got 0",
    ),
    (
        "init_dtype",
        lambda: jr.lstm(4).init(jax.random.PRNGKey(0), 3, dtype=jnp.int32),
        TypeError,
        r"dtype must be a floating dtype .* got int32",
    ),
    (
        "state_dtype",
        lambda: jr.gru(4).initial_state((2,), dtype=jnp.int8),
        TypeError,
        r"dtype must be a floating dtype .* got int8",
    ),
    (
        "readout_activation",
        lambda: jr.readout(3, activation="gelu"),
        ValueError,
        r"activation must be None or one of \[.*'tanh'\], got 'gelu'",
    ),
    ("readout_size", lambda: jr.readout(0), ValueError, r"output_size must be a positive int, got 0"),
    (
        "readout_input",
        lambda: jr.readout(3).apply(jr.readout(3).init(jax.random.PRNGKey(0), 4), jnp.ones((2, 5))),
        ValueError,
        r"ys have size 5 on their last axis \(shape \(2, 5\)\), but the readout expects 4",
    ),
    (
        "model_merge",
        lambda: jr.LSTM(3, 4, bidirectional=True, merge="mean"),
        ValueError,
        r"merge must be one of \('concat', 'sum'\), got 'mean'",
    ),
    ("model_dropout", lambda: jr.GRU(3, 4, 2, dropout=1.0), ValueError, r"dropout must lie in \[0, 1\), got 1.0"),
    ("model_layers", lambda: jr.GRU(3, 4, num_layers=0), ValueError, r"num_layers must be a positive int, got 0"),
    (
        "model_sizes",
        lambda: jr.LSTM(3, [4, 5], num_layers=3),
        ValueError,
        r"num_layers=3 does not match the 2 per-layer sizes in hidden_size=\[4, 5\]",
    ),
    (
        "model_empty_sizes",
        lambda: jr.LSTM(3, []),
        ValueError,
        r"hidden_size must name at least one layer size, got an empty sequence",
    ),
    ("model_input", lambda: jr.RNN(0, 4), ValueError, r"input_size must be a positive int, got 0"),
    (
        "model_residual",
        lambda: jr.LSTM(3, [4, 5], residual=True),
        ValueError,
        r"residual=True needs .* layer 1 takes 4 and outputs 5",
    ),
    (
        "model_activation",
        lambda: jr.RNN(3, 4, activation="gelu"),
        ValueError,
        r"activation must be one of \['relu', 'tanh'\], got 'gelu'",
    ),
]


@pytest.mark.parametrize("build, error, message", [c[1:] for c in FACTORY_ERRORS], ids=[c[0] for c in FACTORY_ERRORS])
def test_factories_reject_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_model_apply_rejects_params_and_state_of_wrong_depth():
    model = jr.GRU(3, 4, 2)
    params = model.init(jax.random.PRNGKey(0), jnp.float32)
    xs = jnp.ones((2, 5, 3), jnp.float32)
    with pytest.raises(
        ValueError, match=r"params must be a tuple with one entry per layer \(2\), got a tuple of length 1"
    ):
        model.apply(params[:1], xs)
    with pytest.raises(ValueError, match=r"state must be a tuple with one entry per layer \(2\)"):
        model.apply(params, xs, state=model.initial_state((2,))[:1])
    with pytest.raises(ValueError, match=r"inputs have size 2 on their last axis"):
        model.apply(params, np.ones((2, 5, 2), np.float32))
