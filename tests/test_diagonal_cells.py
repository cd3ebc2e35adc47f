"""The diagonal-recurrent cells (recurrent="diagonal") and the unit structure the Newton solvers read."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import INPUT, assert_trees_close, loop_rnn_padded
from test_cells import numpy_step

import jaxrnn as jr
from jaxrnn._core import cells

H = 4
# the kind of the gate equations -> factory(hidden_size, recurrent) -> Cell
FACTORIES = {
    "elman_tanh": lambda h, r: jr.elman(h, recurrent=r),
    "elman_relu": lambda h, r: jr.elman(h, activation="relu", recurrent=r),
    "lstm": lambda h, r: jr.lstm(h, recurrent=r),
    "gru": lambda h, r: jr.gru(h, recurrent=r),
}
KINDS = sorted(FACTORIES)
BOTH = [(kind, recurrent) for kind in KINDS for recurrent in ("dense", "diagonal")]


def make(kind, recurrent="diagonal", *, batch=3, steps=6, seed=0):
    """A cell, random float64 params of its init's shapes and inputs ``[B, T, I]``.

    NumPy draws them: random biases make every parameter take part, and some
    ``|w_hh| > 1`` makes sign and saturation errors show.
    """
    cell = FACTORIES[kind](H, recurrent)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: cell.init(key, INPUT, jnp.float64), jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(0.8 * rng.standard_normal(s.shape)), shapes)
    return cell, params, jnp.asarray(rng.standard_normal((batch, steps, INPUT)))


def random_state(cell, batch_shape, seed=1):
    rng = np.random.default_rng(seed)
    state = cell.initial_state(batch_shape, dtype=jnp.float64)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), state)


def dense_equivalent(params, num_gates):
    """The dense params whose ``w_hh`` is the diagonal cell's weights on each gate block's diagonal."""
    blocks = np.split(np.asarray(params.w_hh), num_gates)
    return params._replace(w_hh=jnp.asarray(np.concatenate([np.diag(b) for b in blocks])))


@pytest.mark.parametrize("kind", KINDS)
def test_step_matches_numpy_equations(kind):
    cell, params, xs = make(kind)
    assert cell.name == f"{kind}_diagonal"
    num_gates = params.w_hh.shape[0] // H
    state = random_state(cell, (2, 3))  # two batch axes: the projection flattens them to rows
    x = xs[:2, :3]
    rec = jax.jit(cell.project_state)(params, state)
    h = np.asarray(state.h)
    np.testing.assert_allclose(rec, np.tile(h, num_gates) * np.asarray(params.w_hh) + np.asarray(params.b_hh))
    new_state, y = jax.jit(cell.step)(params, state, x)
    c = np.asarray(state.c) if hasattr(state, "c") else None
    want_h, want_c = numpy_step(kind, dense_equivalent(params, num_gates), h, c, np.asarray(x))
    np.testing.assert_allclose(y, want_h, rtol=1e-12)
    np.testing.assert_allclose(new_state.h, want_h, rtol=1e-12)
    if want_c is not None:
        np.testing.assert_allclose(new_state.c, want_c, rtol=1e-12)


# 1, 4 and 3 gates (elman_relu differs in f alone), each direction once
@pytest.mark.parametrize("kind, reverse", [("elman_tanh", True), ("lstm", False), ("gru", True)])
def test_rnn_equals_python_loop(kind, reverse):
    cell, params, xs = make(kind)
    lengths = np.array([6, 2, 0])
    state = random_state(cell, (3,))
    got = jr.rnn(cell, params, xs, state, lengths=jnp.asarray(lengths), reverse=reverse)
    # The loop's steps jitted: one compilation instead of one per operation.
    want = loop_rnn_padded(cell._replace(step=jax.jit(cell.step)), params, xs, lengths, reverse=reverse, state=state)
    assert_trees_close(got, want, rtol=1e-12, atol=1e-14)


# The reverse of the diagonal projection is one for all kinds (jax.vjp of project_state); the LSTM
# and the GRU (reset gate on the projection) cover what differs around it.
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bptt_equals_autodiff(kind):
    cell, params, xs = make(kind)
    lengths = jnp.array([6, 4, 1])
    assert jr.check_bptt(cell, params, xs, lengths=lengths, reverse=True, truncate=3, rtol=1e-12) <= 1e-12


def test_weight_gradient_sums_over_two_d_rows():
    """The VJP of the diagonal projection reduces 2-D rows, never a [T, 1, G*H] array (slow on XLA:CPU)."""
    cell, params, _ = make("lstm")
    state = random_state(cell, (7, 1))
    _, vjp = jax.vjp(lambda p: cell.project_state(p, state), params)
    jaxpr = jax.make_jaxpr(vjp)(jnp.ones((7, 1, 4 * H), jnp.float64))
    sums = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "reduce_sum"]
    assert sums and all(e.invars[0].aval.ndim == 2 for e in sums), [e.invars[0].aval.shape for e in sums]


@pytest.mark.parametrize("kind, recurrent", BOTH)
def test_unit_structure_holds_the_jacobians(kind, recurrent):
    """``recurrent_blocks`` is ``d project_state / d h``; a diagonal cell's step couples one unit's entries only."""
    cell, params, xs = make(kind, recurrent)
    structure = cells.unit_structure(cell)
    assert structure.kind == kind and structure.diagonal == (recurrent == "diagonal")
    state = random_state(cell, ())

    @jax.jit
    def jacobians(state):
        d_rec = jax.jacfwd(lambda h: cell.project_state(params, state._replace(h=h)))(state.h)  # [G*H, H]
        return d_rec, jax.jacfwd(lambda s: cell.step(params, s, xs[0, 0])[0])(state)  # [out field][in field]: [H, H]

    d_rec, d_step = jacobians(state)
    blocks = structure.recurrent_blocks(params)
    assert blocks.dtype == structure.recurrent_diagonal(params).dtype == jnp.float64
    np.testing.assert_array_equal(blocks, d_rec.reshape(-1, H, H))
    np.testing.assert_array_equal(structure.recurrent_diagonal(params), np.diagonal(blocks, axis1=1, axis2=2))
    low = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    assert structure.recurrent_blocks(low).dtype == structure.recurrent_diagonal(low).dtype == jnp.bfloat16
    off_unit = np.asarray([np.abs(block * (1.0 - np.eye(H))).max() for row in d_step for block in row])
    assert (off_unit.max() == 0.0) == structure.diagonal, off_unit
    # Only the dense cells run on the fused kernels.
    assert cells.builtin_kind(cell) == (None if structure.diagonal else structure.kind)


def test_no_unit_structure_for_other_cells():
    lstm, gru = jr.lstm(H), jr.gru(H, recurrent="diagonal")
    others = [jr.layer_norm_lstm(H), jr.mingru(H), jr.lru(H), jr.Cell(H, lstm.init, lstm.initial_state, lstm.step)]
    others.append(lstm._replace(update=lambda state, px, rec: lstm.update(state, px, rec)))
    others.append(gru._replace(project_state=lambda params, state: gru.project_state(params, state)))
    for cell in others:
        assert cells.unit_structure(cell) is None and cells.builtin_kind(cell) is None, cell.name


def test_default_initialisers():
    """``w_hh`` uniform on [-0.9, 0.9] (the same code for every kind); the other params as the dense cell's."""
    cell = jr.lstm(8, recurrent="diagonal")
    params = jax.jit(cell.init, static_argnums=(1, 2))(jax.random.PRNGKey(0), 5, jnp.float32)
    assert all(leaf.dtype == jnp.float32 for leaf in params)
    w = np.asarray(params.w_hh)
    assert params.w_ih.shape == (32, 5) and w.shape == (32,)
    assert np.abs(w).max() <= 0.9 and w.std() > 0.2, w
    np.testing.assert_array_equal(params.b_ih, np.repeat([0.0, 1.0, 0.0, 0.0], 8))  # the forget bias
    np.testing.assert_array_equal(params.b_hh, np.zeros(32))


def test_low_precision_params_carry_in_float32():
    cell = jr.gru(H, recurrent="diagonal")
    params = jax.eval_shape(lambda key: cell.init(key, INPUT, jnp.bfloat16), jax.random.PRNGKey(0))
    xs = jax.ShapeDtypeStruct((2, 3, INPUT), jnp.bfloat16)
    ys, final = jax.eval_shape(lambda p, x: jr.rnn(cell, p, x), params, xs)
    assert ys.dtype == final.h.dtype == jnp.float32


def test_models_and_app_pass_recurrent_through():
    from jaxrnn._app.cells import CELLS

    models = [jr.LSTM(INPUT, H, 2, recurrent="diagonal"), jr.GRU(INPUT, H, recurrent="diagonal")]
    models.append(jr.RNN(INPUT, H, activation="relu", recurrent="diagonal"))
    assert [m.cells[-1].name for m in models] == ["lstm_diagonal", "gru_diagonal", "elman_relu_diagonal"]
    assert [CELLS[name](H).name for name in ("lstm_diagonal", "gru_diagonal")] == ["lstm_diagonal", "gru_diagonal"]


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_recurrent_is_named(kind):
    with pytest.raises(ValueError, match=r"recurrent must be one of \['dense', 'diagonal'\], got 'block'\."):
        FACTORIES[kind](H, "block")


def test_layer_norm_lstm_model_has_no_diagonal_variant():
    with pytest.raises(ValueError, match=r"layer_norm=True has only a dense recurrence.*got recurrent='diagonal'"):
        jr.LSTM(INPUT, H, layer_norm=True, recurrent="diagonal")


@pytest.mark.parametrize(
    "recurrent, w_hh_shape, match",
    [
        ("diagonal", (3 * H, H), r"gru_diagonal cell with hidden_size=4 expects \(12,\)\. .*recurrent='dense'"),
        ("dense", (3 * H,), r"gru cell with hidden_size=4 expects \(12, 4\)\. .*recurrent='diagonal'"),
        ("diagonal", (2 * H,), r"params.w_hh has shape \(8,\), but the gru_diagonal cell .* expects \(12,\)\.$"),
    ],
    ids=["dense_params", "diagonal_params", "wrong_size"],
)
def test_w_hh_shape_messages(recurrent, w_hh_shape, match):
    cell, params, xs = make("gru", recurrent)
    params = params._replace(w_hh=jnp.zeros(w_hh_shape, jnp.float64))
    structure = cells.unit_structure(cell)
    for call in (
        lambda: cell.step(params, cell.initial_state(dtype=jnp.float64), xs[0, 0]),
        lambda: structure.recurrent_blocks(params),
        lambda: structure.recurrent_diagonal(params),
    ):
        with pytest.raises(ValueError, match=match):
            call()
