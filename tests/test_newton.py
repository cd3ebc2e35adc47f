"""Newton solvers in time (DEER, quasi-DEER, ELK, quasi-ELK): values, gradients, convergence, bad input.

References: a Python loop over ``cell.step`` (values), ``jax.grad`` of the
sequential scan (gradients, through ``jr.check_bptt``), ``jax.jacfwd`` of the
step (the structured Jacobians).
"""

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._core import newton
from jaxrnn._kernels import associative, sharding
from tests.helpers import assert_trees_close, loop_rnn_padded

HIDDEN, INPUT, BATCH, STEPS = 3, 2, 2, 8
SOLVERS = {
    "deer": jr.DEER(max_iters=STEPS),
    "quasi-deer": jr.QuasiDEER(max_iters=STEPS),
    "elk": jr.ELK(max_iters=60, damping=0.5),
    "quasi-elk": jr.QuasiELK(max_iters=60, damping=0.5),
}


def _leaky_cell():
    """A cell that is not split (only ``step``), with a two-leaf state of unequal sizes."""

    class State(tuple):
        pass

    def init(key, input_size, dtype=None):
        return jax.random.normal(key, (input_size, HIDDEN), dtype) * 0.5

    def initial_state(batch_shape=(), dtype=None):
        return {"h": jnp.zeros((*batch_shape, HIDDEN), dtype), "m": jnp.zeros((*batch_shape, 1), dtype)}

    def step(params, state, x):
        h = jnp.tanh(0.8 * state["h"] + x @ params + state["m"])
        m = 0.5 * jnp.tanh(state["m"]) + 0.1 * jnp.sum(h, axis=-1, keepdims=True)
        return {"h": h, "m": m}, h

    return jr.Cell(hidden_size=HIDDEN, init=init, initial_state=initial_state, step=step, name="leaky")


CELLS = {
    "elman_tanh": lambda: jr.elman(HIDDEN),
    "lstm": lambda: jr.lstm(HIDDEN),
    "gru": lambda: jr.gru(HIDDEN),
    "layer_norm_lstm": lambda: jr.layer_norm_lstm(HIDDEN),
    "gru_diagonal": lambda: jr.gru(HIDDEN, recurrent="diagonal"),
    "lstm_diagonal": lambda: jr.lstm(HIDDEN, recurrent="diagonal"),
    "leaky": _leaky_cell,
}


def _make(name, dtype=jnp.float64, steps=STEPS, batch=BATCH, seed=0):
    cell = CELLS[name]()
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = cell.init(k1, INPUT, dtype)
    xs = jax.random.normal(k2, (batch, steps, INPUT), dtype)
    return cell, params, xs


LENGTHS = jnp.array([STEPS, 5])


# (solver, cell, reverse): each solver on the Jacobian paths it takes (structured full or blocks, jacfwd
# of a cell's step, one- and two-leaf blocks), each with lengths.
VALUE_CASES = [
    ("deer", "lstm", False),
    ("deer", "leaky", True),
    ("quasi-deer", "gru", True),
    ("elk", "elman_tanh", True),
    ("quasi-deer", "layer_norm_lstm", False),
]


@pytest.mark.parametrize("solver_name, cell_name, reverse", VALUE_CASES)
def test_values_equal_a_python_loop(solver_name, cell_name, reverse):
    cell, params, xs = _make(cell_name)
    want = loop_rnn_padded(cell, params, xs, LENGTHS, reverse=reverse)
    run = jax.jit(lambda p, x: jr.rnn(cell, p, x, lengths=LENGTHS, reverse=reverse, solver=SOLVERS[solver_name]))
    assert_trees_close(run(params, xs), want, rtol=1e-9, atol=1e-9)


def test_the_implicit_gradient_equals_autodiff():
    """On the CPU: the hand-written reverse loop at the converged trajectory; float64, lengths, reverse, truncate."""
    cell, params, xs = _make("gru")
    jr.check_bptt(cell, params, xs, lengths=LENGTHS, reverse=True, truncate=3, solver=SOLVERS["quasi-deer"])


@pytest.mark.parametrize("cell_name", ["lstm_diagonal", "leaky"])
def test_the_parallel_reverse_scan_equals_autodiff(cell_name, monkeypatch):
    """Off the CPU the implicit gradient is a reverse parallel scan of the transposed Jacobians.

    Unit blocks for a diagonal cell, full ones otherwise (a dense built-in cell's full reverse scan
    runs in test_parallel.py's sequence-mesh case, split over devices, against one device).
    """
    monkeypatch.setattr(associative, "_DEFAULT_METHOD", {})
    cell, params, xs = _make(cell_name)
    jr.check_bptt(cell, params, xs, lengths=LENGTHS, reverse=True, truncate=3, solver=SOLVERS["quasi-deer"])


@pytest.mark.parametrize("cell_name", ["lstm", "gru_diagonal"])  # two leaves and dense; one leaf and diagonal
def test_structured_jacobians_equal_jacfwd_of_the_step(cell_name):
    cell, params, xs = _make(cell_name)
    state = jax.tree_util.tree_map(
        lambda a: jax.random.normal(jax.random.PRNGKey(3), (STEPS,) + a.shape, a.dtype),
        cell.initial_state((BATCH,), jnp.float64),
    )
    layout = newton._Layout.of(state)
    xs_tm = jnp.swapaxes(xs, 0, 1)
    problem = newton._Problem(cell, params, cell.project(params, xs_tm), layout, None)
    prev_v = layout.flat(state)

    @jax.jit
    def all_forms(prev_v):
        f, full = problem.linearise(prev_v, "full")
        return problem._dense(prev_v), f, full, problem.linearise(prev_v, "diagonal")[1], problem.evaluate(prev_v)

    dense, f, full, blocks, evaluated = all_forms(prev_v)
    np.testing.assert_allclose(full, dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f, evaluated, rtol=1e-12, atol=1e-12)
    k, h = layout.shape
    six = dense.reshape(dense.shape[:2] + (k, h, k, h))
    want = jnp.einsum("tbkili->tbikl", six)
    np.testing.assert_allclose(blocks, want, rtol=1e-12, atol=1e-12)
    if cell_name.endswith("diagonal"):  # block-diagonal by construction: the blocks are the whole Jacobian
        off = six * (1 - jnp.eye(h))[None, None, None, :, None, :]
        assert float(jnp.abs(off).max()) == 0.0


def test_diagonal_cells_quasi_deer_is_exact_newton():
    """For a diagonal cell quasi-DEER's Jacobian is the true one: the same iterates as DEER."""
    cell, params, xs = _make("lstm_diagonal", steps=12)
    quasi, full = jax.jit(
        lambda x: [jr.rnn(cell, params, x, solver=s(tol=1e-12), return_info=True)[2] for s in (jr.QuasiDEER, jr.DEER)]
    )(xs)
    assert int(quasi.iterations) == int(full.iterations) < 12
    assert_trees_close(quasi.states, full.states, rtol=1e-12, atol=1e-12)


def test_deer_is_exact_after_t_iterations_and_reports_fewer():
    """Iteration k makes the first k states exact: T iterations always converge; T - 3 do not, and say so."""
    cell, params, xs = _make("elman_tanh", steps=10)
    params = params._replace(w_hh=3.0 * params.w_hh)  # strongly coupled: Newton needs about T iterations
    want_ys, _ = jr.rnn(cell, params, xs, solver="sequential")
    for solver in (jr.DEER, jr.QuasiDEER):
        ys, _, info = jr.rnn(cell, params, xs, solver=solver(max_iters=10, tol=1e-12), return_info=True)
        assert bool(info.converged) and int(info.iterations) <= 10 and float(info.residual) <= 1e-12
        np.testing.assert_allclose(ys, want_ys, rtol=1e-10, atol=1e-10)
        short = solver(max_iters=int(info.iterations) - 3, tol=1e-12)
        with pytest.warns(UserWarning, match=rf"{solver.__name__} stopped after {short.max_iters} iterations"):
            _, _, info = jr.rnn(cell, params, xs, solver=short, return_info=True)
        assert not bool(info.converged) and float(info.residual) > 1e-12


def test_where_deer_overflows_elk_converges():
    """The hard case: 4x the orthogonal recurrent weights make the Jacobians at the zero guess unstable.

    DEER's first step overflows float32: reported as not converged (a flag and a
    warning), never returned as an answer. ELK's and quasi-ELK's filtered steps stay
    bounded and converge to the sequential scan's states.
    """
    cell, params, xs = _make("elman_tanh", dtype=jnp.float32, steps=150, batch=1)
    params = params._replace(w_hh=4.0 * params.w_hh)
    want, _ = jr.rnn(cell, params, xs[0], solver="sequential")
    with pytest.warns(UserWarning, match="DEER stopped after 1 iterations with residual nan"):
        _, _, info = jr.rnn(cell, params, xs[0], solver="deer", return_info=True)
    assert not bool(info.converged) and not np.isfinite(float(info.residual))
    damped = jax.jit(
        lambda x: [jr.rnn(cell, params, x, solver=s(max_iters=150), return_info=True) for s in (jr.ELK, jr.QuasiELK)]
    )
    for ys, _, info in damped(xs[0]):
        assert bool(info.converged) and int(info.iterations) < 150
        np.testing.assert_allclose(ys, want, atol=1e-4)


def test_float32_warm_start_jit_and_vmap():
    cell, params, xs = _make("elman_tanh", dtype=jnp.float32, steps=16, batch=2)
    want = jax.jit(lambda x: jr.rnn(cell, params, x, solver="sequential")[0])(xs)

    @jax.jit
    def run(xs, guess):
        return jr.rnn(cell, params, xs, solver=jr.QuasiDEER(guess=guess), return_info=True)

    ys, final, info = run(xs, None)
    np.testing.assert_allclose(ys, want, rtol=1e-4, atol=1e-4)
    assert bool(info.converged) and int(info.iterations) > 2 and info.states.h.shape == (2, 16, HIDDEN)
    _, _, warm = run(xs, info.states)  # the trajectory of a previous call: converged from the start
    assert int(warm.iterations) == 0
    mapped = jax.jit(jax.vmap(lambda x: jr.rnn(cell, params, x, solver="quasi-deer")[0]))(xs)
    np.testing.assert_allclose(mapped, want, rtol=1e-4, atol=1e-4)


def _kalman_filter_over_devices(a, c, s_bar, s0, damping, devices):
    """ELK's filter split over ``devices`` as under a sequence mesh, the devices simulated by ``vmap``.

    Each composes its chunk of steps as an associative scan, then enters it from
    the devices' composed elements (the 8-device run in test_parallel.py has the
    CPU's in-order chunks).
    """
    elements = newton._kalman_elements(a, c, s_bar, damping)
    chunks = jax.tree_util.tree_map(lambda e: e.reshape((devices, -1) + e.shape[1:]), elements)
    local = functools.partial(
        associative._chunk_prefixes, newton._KALMAN, reverse=False, method="associative", devices=devices
    )
    means = jax.vmap(local, in_axes=(0, None), axis_name=sharding.SEQUENCE_AXIS)(chunks, s0)[1]
    return means.reshape(c.shape)


@pytest.mark.parametrize("units", [1, 2])
def test_the_associative_kalman_filter_equals_the_in_order_one(units, monkeypatch):
    """ELK's step off the CPU (an associative scan of filter elements) against the in-order filter, float64.

    One unit: the CPU's scalar filter against the associative one on 1 x 1 matrices. Two: the
    associative filter also split over 4 devices of 2 steps.
    """
    keys = jax.random.split(jax.random.PRNGKey(4), 4)
    a = 1.5 * jax.random.normal(keys[0], (STEPS, BATCH, units, units), jnp.float64)
    c, s_bar = (jax.random.normal(k, (STEPS, BATCH, units), jnp.float64) for k in keys[1:3])
    s0 = jax.random.normal(keys[3], (BATCH, units), jnp.float64)
    want = jax.jit(lambda *args: newton._kalman_filter(*args, 0.5))(a, c, s_bar, s0)
    monkeypatch.setattr(associative, "_DEFAULT_METHOD", {})

    @jax.jit
    def filters(*args):
        whole = newton._kalman_filter(*args, 0.5)
        return [whole] if units == 1 else [whole, _kalman_filter_over_devices(*args, 0.5, devices=4)]

    for got in filters(a, c, s_bar, s0):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _message(fn):
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    return str(info.value)


def test_bad_input_is_refused_with_a_message():
    cell, params, xs = _make("gru")
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.DEER(max_iters=0))) == (
        "DEER: max_iters must be a positive int, got 0."
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.QuasiDEER(tol=-1.0))) == (
        "QuasiDEER: tol must be a finite float >= 0, got -1.0."
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.ELK(damping=float("nan")))) == (
        "ELK: damping must be a finite float >= 0, got nan."
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.QuasiELK(damping="big"))) == (
        "QuasiELK: damping must be a float >= 0, got 'big'."
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver="quasi-deer", grad="autodiff")).startswith(
        "solver=jr.QuasiDEER(...) needs grad='bptt': its gradient is implicit"
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver="deer", remat=2)).startswith(
        "remat=2 with solver=jr.DEER(...): a Newton solver holds the whole trajectory"
    )
    pallas = jr.Pallas(target="gpu", interpret=True)
    assert "solver=jr.ELK(...) runs parallel scans in XLA" in _message(
        lambda: jr.rnn(cell, params, xs, solver="elk", backend=pallas)
    )
    assert _message(lambda: jr.rnn(cell, params, xs, return_info=True)).startswith(
        "return_info=True reports a Newton solver's iterations; solver=None runs 'sequential'."
    )
    guess = jnp.zeros((BATCH, STEPS + 1, HIDDEN))
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.QuasiDEER(guess=jr.HiddenState(guess)))) == (
        f"guess leaf has shape (2, 9, 3), expected (2, 8, 3): the state's shape with the time axis of ys "
        f"({STEPS} steps). Pass info.states of a previous call with return_info=True."
    )
    assert _message(lambda: jr.rnn(cell, params, xs, solver=jr.QuasiDEER(guess=guess))).startswith(
        "guess must be a trajectory with the structure of the state"
    )

    @jax.custom_vjp
    def clip(h):  # reverse mode only: no Jacobian-vector product
        return jnp.clip(h, -1, 1)

    clip.defvjp(lambda h: (clip(h), None), lambda _, g: (g,))
    user = _leaky_cell()._replace(
        step=lambda p, s, x: ({"h": clip(s["h"] + x @ p), "m": s["m"]}, s["h"]), name="clipped"
    )
    message = _message(lambda: jr.rnn(user, user.init(jax.random.PRNGKey(0), INPUT), xs, solver="deer"))
    assert re.match(
        r"a Newton solver needs the Jacobian of the clipped cell's step with respect to its state, but "
        r"jax.jvp of cell.step fails: TypeError: .* Use solver='sequential' for this cell.",
        message,
    )


def test_converged_runs_do_not_warn():
    cell, params, xs = _make("gru")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jr.rnn(cell, params, xs, solver="quasi-deer")
