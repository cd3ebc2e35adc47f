"""The linear-recurrence cells (minGRU, minLSTM, LRU) and the parallel solver.

References, independent of the code under test: the papers' equations restated
in NumPy (float64), a Python loop over ``cell.step``, the sequential scan and
``jax.grad`` of it. The 8-device checks (time split over a mesh axis) are in
``test_parallel.py``.
"""

import re

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import loop_rnn_padded

import jaxrnn as jr
from jaxrnn._kernels import associative

INPUT, HIDDEN, STATE = 3, 4, 5

# name -> factory; the product of cells the tests run over (both forms of the min cells).
CELLS = {
    "mingru": lambda: jr.mingru(HIDDEN),
    "mingru_log": lambda: jr.mingru(HIDDEN, log_space=True),
    "minlstm": lambda: jr.minlstm(HIDDEN),
    "minlstm_log": lambda: jr.minlstm(HIDDEN, log_space=True),
    "lru": lambda: jr.lru(HIDDEN, state_size=STATE, r_min=0.5, r_max=0.95),
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _g(a):
    return np.where(a >= 0, a + 0.5, _sigmoid(a))


def _numpy_step(name, p, h, x):
    """One step of each paper's equations, in float64 NumPy; ``p`` a dict of arrays, ``h`` complex for the LRU."""
    if name == "lru":
        lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
        bx = (p["b_re"] + 1j * p["b_im"]) @ x
        h = lam * h + np.exp(p["gamma_log"]) * bx
        return h, np.real((p["c_re"] + 1j * p["c_im"]) @ h) + p["d"] @ x
    k = p["w_ih"] @ x + p["b_ih"]
    candidate = _g if name.endswith("_log") else (lambda a: a)
    if name.startswith("mingru"):
        k_z, k_h = np.split(k, 2)
        z = _sigmoid(k_z)
        h = (1 - z) * h + z * candidate(k_h)
    else:
        k_f, k_i, k_h = np.split(k, 3)
        f, i = _sigmoid(k_f), _sigmoid(k_i)
        h = f / (f + i) * h + i / (f + i) * candidate(k_h)
    return h, h


def _make(name, dtype=jnp.float64, batch=3, steps=9, seed=0):
    cell = CELLS[name]()
    k_p, k_x, k_s = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = cell.init(k_p, INPUT, dtype=dtype)
    xs = jax.random.normal(k_x, (batch, steps, INPUT), dtype)
    state = jax.tree_util.tree_map(
        lambda a: jax.random.normal(k_s, a.shape, a.dtype), cell.initial_state((batch,), dtype=dtype)
    )
    return cell, params, xs, state


def _leaves(tree):
    return [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(tree)]


def _assert_trees_close(got, want, rtol, atol):
    for g, w in zip(_leaves(got), _leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", CELLS)
def test_parallel_solver_equals_the_papers_equations(name):
    """jr.rnn (parallel scan by default) against each paper's equations in NumPy, from a nonzero state."""
    cell, params, xs, state = _make(name, batch=2, steps=6)
    ys, final = jr.rnn(cell, params, xs, state)
    h = np.asarray(state.h) if name != "lru" else np.asarray(state.re) + 1j * np.asarray(state.im)
    p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}
    x = np.asarray(xs)
    want = []
    for t in range(x.shape[1]):
        outs = [_numpy_step(name, p, h[b], x[b, t]) for b in range(x.shape[0])]
        h = np.stack([o[0] for o in outs])
        want.append(np.stack([o[1] for o in outs]))
    np.testing.assert_allclose(np.asarray(ys), np.stack(want, axis=1), rtol=1e-10, atol=1e-12)
    got_h = np.asarray(final.h) if name != "lru" else np.asarray(final.re) + 1j * np.asarray(final.im)
    np.testing.assert_allclose(got_h, h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["mingru", "minlstm_log", "lru"])
def test_parallel_solver_with_lengths_and_reverse_equals_a_python_loop(name):
    cell, params, xs, _ = _make(name)
    lengths = jnp.array([9, 4, 0])
    for reverse in (False, True):
        got = jr.rnn(cell, params, xs, lengths=lengths, reverse=reverse)
        want = loop_rnn_padded(cell, params, xs, lengths, reverse=reverse)
        _assert_trees_close(got, want, rtol=1e-10, atol=1e-12)


# Between them, lengths, reverse, truncate, remat and both residuals; every cell runs the first.
OPTIONS = {
    "lengths_reverse_truncate_states": dict(lengths=jnp.array([9, 4, 0]), reverse=True, truncate=3, residuals="states"),
    "remat_truncate_lengths": dict(remat=4, truncate=2, lengths=jnp.array([9, 3, 8])),
}
CASES = [(name, "lengths_reverse_truncate_states") for name in CELLS] + [("lru", "remat_truncate_lengths")]


def _value_and_grads(cell, params, xs, state, **kwargs):
    def loss(p, s, x):
        ys, final = jr.rnn(cell, p, x, s, **kwargs)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(final))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, state, xs)


@pytest.mark.parametrize(("name", "option"), CASES)
def test_hand_written_reverse_scan_equals_autodiff_of_the_sequential_scan(name, option):
    """Values and gradients (params, initial state, inputs) of the parallel solver's BPTT, float64."""
    cell, params, xs, state = _make(name)
    kwargs = OPTIONS[option]
    got = _value_and_grads(cell, params, xs, state, solver="parallel", **kwargs)
    want = _value_and_grads(cell, params, xs, state, solver="sequential", grad="autodiff", **kwargs)
    _assert_trees_close(got, want, rtol=1e-9, atol=1e-11)


def test_autodiff_through_the_associative_scan_equals_the_hand_written_reverse(monkeypatch):
    """The log-space forward as on GPU and TPU (a cumulative log-sum-exp), differentiated by JAX."""
    monkeypatch.setattr(associative, "_DEFAULT_METHOD", {})
    cell, params, xs, state = _make("mingru_log")
    got = _value_and_grads(cell, params, xs, state, solver="parallel", lengths=jnp.array([9, 2, 6]))
    want = _value_and_grads(cell, params, xs, state, solver="parallel", grad="autodiff", lengths=jnp.array([9, 2, 6]))
    _assert_trees_close(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["mingru", "minlstm_log", "lru"])
def test_float32_is_close_to_float64_on_a_long_sequence(name):
    """float32 on 400 steps: values and gradients loose against the float64 sequential reference."""
    cell, params64, xs64, state64 = _make(name, batch=2, steps=400)
    to32 = lambda tree: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), tree)
    got = _value_and_grads(cell, to32(params64), to32(xs64), to32(state64))
    want = _value_and_grads(cell, params64, xs64, state64, solver="sequential", grad="autodiff")
    for g, w in zip(_leaves(got), _leaves(want), strict=True):
        scale = max(np.abs(w).max(), 1.0)
        assert np.abs(g - w).max() <= 2e-4 * scale * (100 if name.endswith("_log") else 1)


def test_jit_and_vmap_of_the_parallel_solver():
    cell, params, xs, state = _make("lru")
    batched = jr.rnn(cell, params, xs, state, lengths=jnp.array([9, 4, 6]))
    one = lambda x, s, n: jr.rnn(cell, params, x, s, lengths=n)
    mapped = jax.jit(jax.vmap(one))(xs, state, jnp.array([9, 4, 6]))
    _assert_trees_close(mapped, batched, rtol=1e-12, atol=1e-13)


def _scan_bodies(jaxpr) -> list:
    """The jaxprs of every ``scan`` in ``jaxpr``, nested ones included."""
    bodies = []
    for eqn in jaxpr.eqns:
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            if eqn.primitive.name == "scan":
                bodies.append(sub)
            bodies.extend(_scan_bodies(sub))
    return bodies


def test_the_parallel_solver_is_the_default_for_linear_cells_only(monkeypatch):
    """Its program has no matmul in a loop (CPU: an in-order elementwise scan) or no loop at all (associative)."""
    cell, params, xs, _ = _make("mingru")
    gru = jr.gru(HIDDEN)

    def loops(c, p, **kw):
        jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(jr.rnn(c, p, x, **kw)[0])))(xs).jaxpr
        return ["dot_general" in str(body) for body in _scan_bodies(jaxpr)]

    assert loops(cell, params) and not any(loops(cell, params))  # the CPU's method: no matmul inside
    assert any(loops(cell, params, solver="sequential")) and any(loops(cell, params, grad="autodiff"))
    assert any(loops(gru, gru.init(jax.random.PRNGKey(0), INPUT)))
    monkeypatch.setattr(associative, "_DEFAULT_METHOD", {})
    assert associative.default_method() == "associative" and loops(cell, params) == []


@pytest.mark.parametrize("method", associative.METHODS)
@pytest.mark.parametrize("reverse", [False, True])
def test_both_evaluation_orders_equal_a_python_loop(method, reverse):
    rng = np.random.default_rng(0)
    a, b, h0 = (
        jnp.asarray(v) for v in (rng.uniform(0.1, 1, (37, 3, 4)), rng.normal(size=(37, 3, 4)), rng.normal(size=(3, 4)))
    )
    want, h = [None] * 37, h0
    for t in reversed(range(37)) if reverse else range(37):
        h = want[t] = a[t] * h + b[t]
    got = associative.linear_scan(a, b, h0, reverse=reverse, method=method)
    np.testing.assert_allclose(np.asarray(got), np.stack(want), rtol=1e-12, atol=1e-13)
    if reverse:  # the adjoint: lambda_t = g_t + a_(t+1) lambda_(t+1), and a_0 lambda_0
        lam, d_h0 = associative.adjoint_scan(a, b, method=method)
        shifted = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
        lam_want, after = [None] * 37, jnp.zeros_like(h0)
        for t in reversed(range(37)):
            after = lam_want[t] = b[t] + shifted[t] * after
        np.testing.assert_allclose(np.asarray(lam), np.stack(lam_want), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(np.asarray(d_h0), np.asarray(a[0] * lam_want[0]), rtol=1e-12, atol=1e-13)
    if not reverse:
        log_got = associative.log_linear_scan(jnp.log(a), jnp.log(jnp.abs(b)), h0, method=method)
        h, log_want = h0, []
        for t in range(37):
            h = a[t] * h + jnp.abs(b[t])
            log_want.append(h)
        np.testing.assert_allclose(np.asarray(log_got), np.stack(log_want), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["lru"])  # complex; the log-space form runs associatively in the test above
def test_the_associative_evaluation_end_to_end(name, monkeypatch):
    """What GPUs and TPUs run (lax.associative_scan), through jr.rnn, against the sequential reference."""
    monkeypatch.setattr(associative, "_DEFAULT_METHOD", {})
    cell, params, xs, state = _make(name)
    kwargs = OPTIONS["lengths_reverse_truncate_states"]
    got = _value_and_grads(cell, params, xs, state, **kwargs)
    want = _value_and_grads(cell, params, xs, state, solver="sequential", grad="autodiff", **kwargs)
    _assert_trees_close(got, want, rtol=1e-9, atol=1e-11)


def test_check_bptt_on_a_linear_cell():
    cell, params, xs, state = _make("lru", steps=5)
    assert jr.check_bptt(cell, params, xs, state, lengths=jnp.array([5, 1, 3])) < 1e-10


def _message(fn):
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    return str(info.value)


def test_bad_input_is_refused_with_a_message():
    cell, params, xs, _ = _make("mingru")
    gru = jr.gru(HIDDEN)
    gru_params = gru.init(jax.random.PRNGKey(0), INPUT, jnp.float64)
    assert _message(lambda: jr.rnn(cell, params, xs, solver="newton")) == (
        "solver must be one of ('sequential', 'parallel', 'deer', 'quasi-deer', 'elk', 'quasi-elk'), a jr.DEER, "
        "jr.QuasiDEER, jr.ELK or jr.QuasiELK(...), or None; got 'newton'."
    )
    assert _message(lambda: jr.rnn(gru, gru_params, xs, solver="parallel")).startswith(
        "solver='parallel' needs a cell that declares a linear recurrence h_t = a_t*h_(t-1) + b_t "
        "(cell.recurrence, as jr.mingru, jr.minlstm and jr.lru do); the gru cell declares none."
    )
    assert "truncate with solver='parallel' needs grad='bptt'" in _message(
        lambda: jr.rnn(cell, params, xs, solver="parallel", grad="autodiff", truncate=2)
    )
    assert "solver='parallel' runs an associative scan in XLA" in _message(
        lambda: jr.rnn(cell, params, xs, backend=jr.Pallas(target="gpu", interpret=True))
    )
    assert _message(lambda: jr.rnn(cell, params, xs[..., :2])) == (
        "inputs have size 2 on their last axis (shape (9, 3, 2)), but params expect input_size=3 "
        "(params.w_ih has shape (8, 3))."
    )
    assert _message(lambda: jr.rnn(cell, gru_params, xs)) == (
        "params.w_ih has shape (12, 3), but the mingru cell with hidden_size=4 expects (8, input_size). "
        "Were these params made by another cell?"
    )
    assert _message(lambda: jr.lru(4, r_min=0.9, r_max=0.5)) == (
        "r_min and r_max must satisfy 0 <= r_min < r_max <= 1, got r_min=0.9, r_max=0.5."
    )
    assert _message(lambda: jr.lru(4, max_phase=0.0)) == "max_phase must be positive, got 0.0."
    assert _message(lambda: jr.lru(4, state_size=0)) == "state_size must be a positive int, got 0."
    assert _message(lambda: jr.mingru(0)) == "hidden_size must be a positive int, got 0."


def test_a_sequence_mesh_axis_must_divide_time_be_auto_and_excludes_remat():
    """Refused while tracing, before any work, under a mesh with a sequence axis."""
    cell, params, xs, _ = _make("mingru", steps=10)
    mesh = jax.sharding.AbstractMesh((4,), ("sequence",))
    with jax.sharding.use_abstract_mesh(mesh):
        message = _message(lambda: jax.eval_shape(lambda x: jr.rnn(cell, params, x), xs))
        assert message == (
            "xs has 10 time steps, which the mesh axis 'sequence' of 4 devices does not divide: "
            "solver='parallel' splits time into equal chunks. Pad xs to 12 steps (and pass lengths) or change the mesh."
        )
        message = _message(lambda: jax.eval_shape(lambda x: jr.rnn(cell, params, x, remat=4), xs[:, :8]))
        assert re.match(r"remat=4 with solver='parallel' under the mesh axis 'sequence'", message)
    explicit = jax.sharding.AbstractMesh((1,), ("sequence",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.sharding.use_abstract_mesh(explicit):
        message = _message(lambda: jax.eval_shape(lambda x: jr.rnn(cell, params, x), xs))
        assert message.startswith("solver='parallel' under a mesh whose axis 'sequence' is Explicit")
