"""jaxrnn.flax: the nnx and linen wrappers match the pure functions, train, and keep BPTT exact."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn as jr
import jaxrnn.flax as jrf

B, T, I, H = 3, 6, 4, 5
LENGTHS = np.array([6, 2, 4], np.int32)


def _model(dropout=0.0):
    return jr.LSTM(I, H, num_layers=2, bidirectional=True, dropout=dropout)


def _inputs(seed=0):
    return jax.random.normal(jax.random.key(seed), (B, T, I), jnp.float32)


def _random_state(model, seed=1):
    zeros = model.initial_state((B,), dtype=jnp.float32)
    leaves, treedef = jax.tree.flatten(zeros)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def _is_variable(x):
    return isinstance(x, nnx.Variable)


class _NNX:
    """The nnx wrapper as a pure ``run(variables, xs, ...)`` of its ``nnx.State``."""

    def __init__(self, model, seed=0):
        self.graphdef, self.variables = nnx.split(jrf.Recurrent(model, rngs=nnx.Rngs(seed), param_dtype=jnp.float32))

    def raw_params(self, variables):
        return jax.tree.map(lambda v: v[...], nnx.merge(self.graphdef, variables).params, is_leaf=_is_variable)

    def run(self, variables, xs, lengths=None, state=None, dropout_key=None, *, grad="bptt"):
        layer = nnx.merge(self.graphdef, variables)
        rngs = None if dropout_key is None else nnx.Rngs(dropout=dropout_key)
        return layer(xs, lengths, state=state, rngs=rngs, grad=grad)


class _Linen:
    """The linen wrapper as a pure ``run(variables, xs, ...)`` of its variables."""

    def __init__(self, model, seed=0):
        self.model = model
        self.variables = jrf.LinenRecurrent(model, param_dtype=jnp.float32).init(jax.random.key(seed), _inputs())

    def raw_params(self, variables):
        return variables["params"]["rnn"]

    def run(self, variables, xs, lengths=None, state=None, dropout_key=None, *, grad="bptt"):
        module = jrf.LinenRecurrent(self.model, grad=grad, param_dtype=jnp.float32)
        if dropout_key is None:
            return module.apply(variables, xs, lengths, state=state)
        return module.apply(variables, xs, lengths, state=state, deterministic=False, rngs={"dropout": dropout_key})


WRAPPERS = pytest.mark.parametrize("wrapper", [_NNX, _Linen], ids=["nnx", "linen"])


def _assert_trees_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@WRAPPERS
@pytest.mark.parametrize("lengths, with_state", [(None, False), (LENGTHS, True)], ids=["plain", "lengths+state"])
def test_outputs_equal_pure_apply(wrapper, lengths, with_state):
    model = _model()
    w = wrapper(model)
    xs = _inputs()
    state = _random_state(model) if with_state else None
    params = w.raw_params(w.variables)
    assert jax.tree.structure(params) == jax.tree.structure(model.init(jax.random.key(0)))
    got = jax.jit(w.run)(w.variables, xs, lengths, state)
    want = jax.jit(model.apply)(params, xs, lengths, state=state)
    _assert_trees_equal(got, want)


@WRAPPERS
def test_bptt_gradients_equal_autodiff(wrapper):
    model = _model()
    w = wrapper(model)
    xs = _inputs()
    ys_shape = jax.eval_shape(lambda: w.run(w.variables, xs, LENGTHS)[0])
    weights = jax.random.normal(jax.random.key(2), ys_shape.shape, jnp.float32)

    def grads(grad):
        def loss(variables):
            ys, finals = w.run(variables, xs, LENGTHS, grad=grad)
            return jnp.sum(ys * weights) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(finals))

        return jax.tree.leaves(jax.jit(jax.grad(loss))(w.variables))

    got, want = grads("bptt"), grads("autodiff")
    assert len(got) == len(want) == 2 * 2 * 4  # layers x directions x (w_ih, w_hh, b_ih, b_hh)
    for g, a in zip(got, want):
        scale = np.abs(a).max()
        assert scale > 0.0
        np.testing.assert_allclose(g / scale, a / scale, rtol=0.0, atol=1e-5)


@WRAPPERS
def test_dropout_only_with_rngs(wrapper):
    model = _model(dropout=0.5)
    w = wrapper(model)
    xs = _inputs()
    run = jax.jit(w.run)
    evaluation = run(w.variables, xs, LENGTHS)
    _assert_trees_equal(evaluation, jax.jit(model.apply)(w.raw_params(w.variables), xs, LENGTHS))
    ys_a, _ = run(w.variables, xs, LENGTHS, None, jax.random.key(1))
    ys_b, _ = run(w.variables, xs, LENGTHS, None, jax.random.key(2))
    assert not np.allclose(ys_a, evaluation[0])
    assert not np.allclose(ys_a, ys_b)


VOCAB, EMBED = 11, 4
TOKENS = jax.random.randint(jax.random.key(3), (B, T), 0, VOCAB)
TARGETS = jax.random.normal(jax.random.key(4), (B, T), jnp.float32)
STEPS = 8


def _optax_promotion():
    # optax's Adam raises its decay (a Python float) to an int32 step count, which
    # jax_numpy_dtype_promotion="strict" (tests/conftest.py) rejects.
    return jax.numpy_dtype_promotion("standard")


def _mse(pred):
    return jnp.mean((pred[..., 0] - TARGETS) ** 2)


class _NNXTagger(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        self.rnn = jrf.Recurrent(
            jr.LSTM(EMBED, H, num_layers=2, bidirectional=True, dropout=0.1), rngs=rngs, param_dtype=jnp.float32
        )
        self.head = nnx.Linear(2 * H, 1, rngs=rngs)

    def __call__(self, tokens, lengths, rngs=None):
        ys, _ = self.rnn(self.embed(tokens), lengths, rngs=rngs)
        return self.head(ys)


def _train_nnx():
    # The functional nnx pattern (split, optax, merge) works on every flax version we support.
    graphdef, params, rest = nnx.split(_NNXTagger(nnx.Rngs(0)), nnx.Param, ...)
    tx = optax.adam(3e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        def loss(p):
            return _mse(nnx.merge(graphdef, p, rest)(TOKENS, LENGTHS, nnx.Rngs(dropout=key)))

        value, grads = jax.value_and_grad(loss)(params)
        with _optax_promotion():
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    evaluate = jax.jit(lambda p: _mse(nnx.merge(graphdef, p, rest)(TOKENS, LENGTHS)))
    before = evaluate(params)
    losses = []
    for i in range(STEPS):
        params, opt_state, value = step(params, opt_state, jax.random.key(5 + i))
        losses.append(value)
    assert np.all(np.isfinite(losses))
    return before, evaluate(params)


class _LinenTagger(nn.Module):
    @nn.compact
    def __call__(self, tokens, lengths, deterministic=True):
        xs = nn.Embed(VOCAB, EMBED)(tokens)
        ys, _ = jrf.LinenRecurrent(
            jr.LSTM(EMBED, H, num_layers=2, bidirectional=True, dropout=0.1), param_dtype=jnp.float32
        )(xs, lengths, deterministic=deterministic)
        return nn.Dense(1)(ys)


def _train_linen():
    tagger = _LinenTagger()
    params = tagger.init(jax.random.key(0), TOKENS, LENGTHS)["params"]
    tx = optax.adam(3e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        def loss(p):
            pred = tagger.apply({"params": p}, TOKENS, LENGTHS, deterministic=False, rngs={"dropout": key})
            return _mse(pred)

        grads = jax.grad(loss)(params)
        with _optax_promotion():
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    evaluate = jax.jit(lambda p: _mse(tagger.apply({"params": p}, TOKENS, LENGTHS)))
    before = evaluate(params)
    for key in jax.random.split(jax.random.key(5), STEPS):
        params, opt_state = step(params, opt_state, key)
    return before, evaluate(params)


@pytest.mark.parametrize("train", [_train_nnx, _train_linen], ids=["nnx", "linen"])
def test_small_model_trains(train):
    before, after = train()
    assert np.isfinite(after)
    assert after < 0.8 * before
