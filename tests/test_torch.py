"""jr.from_torch / jr.to_torch against torch.nn.RNN, LSTM and GRU, in float64."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

from_torch, to_torch = jr.from_torch, jr.to_torch

torch = pytest.importorskip("torch")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

B, T, I, H = 3, 5, 4, 6
TOL = dict(rtol=1e-9, atol=1e-9)

MODULES = {
    "rnn_tanh": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    "lstm": torch.nn.LSTM,
    "gru": torch.nn.GRU,
}
JAX_MODELS = {
    "rnn_tanh": lambda **kw: jr.RNN(activation="tanh", **kw),
    "rnn_relu": lambda **kw: jr.RNN(activation="relu", **kw),
    "lstm": jr.LSTM,
    "gru": jr.GRU,
}

kinds = pytest.mark.parametrize("kind", sorted(MODULES))
layers = pytest.mark.parametrize("num_layers", [1, 2])
directions = pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
layouts = pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])


def make_module(kind, num_layers=2, bidirectional=False, batch_first=True, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return MODULES[kind](
        input_size=I,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        dtype=dtype,
        **kw,
    )


def random_inputs(batch_first, seed=1):
    shape = (B, T, I) if batch_first else (T, B, I)
    return np.random.default_rng(seed).normal(size=shape)


def torch_layout(finals, field):
    """jaxrnn's per-layer finals as torch's h_n / c_n: [num_layers * num_directions, B, H]."""
    states = []
    for layer in finals:
        states.extend(layer if isinstance(layer, jr.Bidirectional) else (layer,))
    return jnp.stack([getattr(s, field) for s in states])


def jax_outputs(model, params, xs, lengths=None):
    """(ys, h_n[, c_n]) in torch's layout."""
    ys, finals = model.apply(params, xs, lengths)
    first = finals[0].forward if isinstance(finals[0], jr.Bidirectional) else finals[0]
    return (ys,) + tuple(torch_layout(finals, field) for field in first._fields)


def torch_outputs(module, xs):
    out, hidden = module(xs)
    return (out,) + (hidden if isinstance(hidden, tuple) else (hidden,))


def assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.detach().numpy() if isinstance(w, torch.Tensor) else w
        np.testing.assert_allclose(np.asarray(g), w, **TOL)


@kinds
@layers
@directions
@layouts
def test_apply_matches_torch(kind, num_layers, bidirectional, batch_first):
    module = make_module(kind, num_layers, bidirectional, batch_first)
    model, params = from_torch(module)
    xs = random_inputs(batch_first)
    got = jax.jit(lambda p, x: jax_outputs(model, p, x))(params, jnp.asarray(xs))
    with torch.no_grad():
        want = torch_outputs(module, torch.from_numpy(xs))
    assert got[0].dtype == jnp.float64
    assert_close(got, want)


@kinds
@directions
def test_gradients_match_torch(kind, bidirectional):
    """Input and weight gradients of a random linear function of outputs and final states."""
    module = make_module(kind, bidirectional=bidirectional)
    model, params = from_torch(module)
    xs = random_inputs(batch_first=True)
    xs_torch = torch.from_numpy(xs).requires_grad_()
    outputs = torch_outputs(module, xs_torch)
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=o.shape) for o in outputs]
    sum(torch.sum(o * torch.from_numpy(w)) for o, w in zip(outputs, weights)).backward()

    def loss(p, x):
        return sum(jnp.sum(o * w) for o, w in zip(jax_outputs(model, p, x), weights))

    d_params, d_xs = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(xs))
    np.testing.assert_allclose(np.asarray(d_xs), xs_torch.grad.numpy(), **TOL)
    # to_torch lays jaxrnn's gradients out under torch's parameter names.
    d_params_torch = to_torch(model, d_params).state_dict()
    for name, p in module.named_parameters():
        np.testing.assert_allclose(d_params_torch[name].numpy(), p.grad.numpy(), err_msg=name, **TOL)


@kinds
@directions
@layouts
def test_lengths_match_packed_sequences(kind, bidirectional, batch_first):
    module = make_module(kind, bidirectional=bidirectional, batch_first=batch_first)
    model, params = from_torch(module)
    xs = random_inputs(batch_first)
    lengths = np.array([2, T, 1])
    got = jax.jit(lambda p, x, n: jax_outputs(model, p, x, n))(params, jnp.asarray(xs), jnp.asarray(lengths))
    packed = pack_padded_sequence(
        torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False
    )
    with torch.no_grad():
        out, *finals = torch_outputs(module, packed)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    assert_close(got, [out] + finals)


@kinds
@directions
def test_round_trip_keeps_state_dict(kind, bidirectional):
    module = make_module(kind, bidirectional=bidirectional, batch_first=False, dropout=0.25)
    back = to_torch(*from_torch(module))
    assert type(back) is type(module)
    for attr in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "dropout", "bias"):
        assert getattr(back, attr) == getattr(module, attr), attr
    assert getattr(back, "nonlinearity", None) == getattr(module, "nonlinearity", None)
    want, got = module.state_dict(), back.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == torch.float64
        assert torch.equal(got[name], want[name]), name


@kinds
def test_no_bias_converts_with_zero_biases(kind):
    module = make_module(kind, bidirectional=True, bias=False)
    model, params = from_torch(module)
    state = to_torch(model, params).state_dict()
    for name, value in state.items():
        want = module.state_dict()[name] if name.startswith("weight") else torch.zeros_like(value)
        assert torch.equal(value, want), name


@kinds
def test_to_torch_reproduces_jaxrnn(kind):
    model = JAX_MODELS[kind](input_size=I, hidden_size=H, num_layers=2, bidirectional=True)
    params = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    module = to_torch(model, params)
    assert module.batch_first and module.bias
    xs = random_inputs(batch_first=True)
    with torch.no_grad():
        want = torch_outputs(module, torch.from_numpy(xs))
    assert_close(jax.jit(lambda p, x: jax_outputs(model, p, x))(params, jnp.asarray(xs)), want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_dtype_is_kept(dtype):
    module = make_module("lstm", dtype=getattr(torch, dtype))
    model, params = from_torch(module)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(dtype)}
    back = to_torch(model, params)
    for name, value in module.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


def test_from_torch_rejects_other_modules():
    expected = r"expects a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got torch.nn.*Linear"
    with pytest.raises(TypeError, match=expected):
        from_torch(torch.nn.Linear(I, H))


def test_from_torch_rejects_projections():
    with pytest.raises(ValueError, match=r"proj_size=3.*Use proj_size=0"):
        from_torch(torch.nn.LSTM(I, H, proj_size=3))


def test_from_torch_rejects_mixed_dtypes():
    module = make_module("gru")
    module.weight_hh_l1.data = module.weight_hh_l1.data.float()
    with pytest.raises(TypeError, match=r"share one floating dtype .* got float32, float64"):
        from_torch(module)


def test_from_torch_float64_needs_x64():
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match=r"float64 module.*jax_enable_x64"):
            from_torch(make_module("gru"))


def test_missing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"jaxrnn.from_torch needs PyTorch: pip install 'jaxrnn\[torch\]'"):
        from_torch(None)
    with pytest.raises(ImportError, match=r"jaxrnn.to_torch needs PyTorch"):
        to_torch(None, None)


@pytest.mark.parametrize(
    "model, match",
    [
        (jr.LSTM(I, H, layer_norm=True), r"layer-normalised LSTM cells \(jr.LSTM\(..., layer_norm=True\)\)"),
        (jr.GRU(I, H, bidirectional=True, merge="sum"), r"merge='sum'.*concatenate"),
        (jr.RNN(I, H, num_layers=2, residual=True), r"residual=True"),
        (jr.LSTM(I, (H, H + 1)), r"one hidden size for all layers.*\(6, 7\)"),
        (jr.StackedRNN(cells=(jr.gru(H), jr.lstm(H)), input_size=I), r"the same cell in every layer"),
        (jr.GRU(I, H, recurrent="diagonal"), r"'gru_diagonal' cells \(recurrent='diagonal'\).*torch.nn.GRU's"),
        (jr.RNN(I, H, recurrent="diagonal"), r"'elman_tanh_diagonal' cells.*torch.nn.RNN's weight_hh is a dense"),
    ],
    ids=["layer_norm", "merge_sum", "residual", "hidden_sizes", "mixed_cells", "diagonal_gru", "diagonal_elman"],
)
def test_to_torch_rejects_models_torch_cannot_represent(model, match):
    params = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=match):
        to_torch(model, params)


def test_to_torch_rejects_other_models():
    with pytest.raises(TypeError, match=r"expects a jaxrnn.StackedRNN.*got Cell"):
        to_torch(jr.lstm(H), None)


def test_to_torch_checks_params():
    model = jr.GRU(I, H, num_layers=2, bidirectional=True)
    params = model.init(jax.random.PRNGKey(0), jnp.float32)
    with pytest.raises(ValueError, match=r"one entry per layer \(2\), got a tuple of length 1"):
        to_torch(model, params[:1])
    with pytest.raises(ValueError, match=r"params\[1\] must be a jaxrnn.Bidirectional pair"):
        to_torch(model, (params[0], params[1].forward))
    wrong = params[1]._replace(backward=params[1].backward._replace(w_ih=params[1].backward.w_ih[:, :H]))
    with pytest.raises(ValueError, match=r"params\[1\].backward.w_ih has shape \(18, 6\), .* expects \(18, 12\)"):
        to_torch(model, (params[0], wrong))
    mixed = (params[0], jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params[1]))
    with pytest.raises(TypeError, match=r"one floating dtype .* got float32, float64"):
        to_torch(model, mixed)
