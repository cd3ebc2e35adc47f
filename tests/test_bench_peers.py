"""Benchmark peers: each one, given jaxrnn's weights, computes jaxrnn's outputs and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.lib import gpu_rnn
from jax.experimental import rnn as jax_rnn

import jaxrnn as jr
from jaxrnn._app.cells import CELLS
from jaxrnn._bench.peers import available_peers, make_peer

B, T, I, H = 3, 6, 4, 5
RTOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}
CPU_PEERS = [(cell, name) for cell in CELLS for name in available_peers(cell, "cpu")]
# The cuDNN RNN ops need jax's CUDA plugin even to be traced (their abstract eval asks
# it for the reserve-space size).
HAS_CUDA_PLUGIN = hasattr(gpu_rnn, "compute_rnn_workspace_reserve_space_sizes")


@functools.lru_cache
def _cell(cell_name):
    """One cell per name, so the jitted jaxrnn reference below compiles once per cell and dtype."""
    return CELLS[cell_name](H)


def _setup(cell_name, dtype, seed=0):
    """jaxrnn's cell, params with distinct random biases (so a wrong merge shows) and inputs."""
    cell = _cell(cell_name)
    k_p, k_ih, k_hh, k_x = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = cell.init(k_p, I, dtype=dtype)
    scale = jnp.asarray(1.5, dtype)
    params = params._replace(
        w_ih=params.w_ih * scale,
        w_hh=params.w_hh * scale,
        b_ih=jax.random.normal(k_ih, params.b_ih.shape, dtype),
        b_hh=jax.random.normal(k_hh, params.b_hh.shape, dtype),
    )
    xs = jax.random.normal(k_x, (B, T, I), dtype)
    return cell, params, xs


@functools.partial(jax.jit, static_argnums=0)
def _jaxrnn_loss_and_grad(cell, params, xs):
    return jax.value_and_grad(lambda p, x: jnp.sum(jr.rnn(cell, p, x)[0] ** 2), argnums=(0, 1))(params, xs)


@functools.partial(jax.jit, static_argnums=0)
def _jaxrnn_forward(cell, params, xs):
    return jr.rnn(cell, params, xs)[0]


def _assert_close(got, want, rtol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= rtol, f"{what}: max error {err:.3g} relative to max |value| (rtol {rtol:g})"


def _assert_matches_jaxrnn(cell, params, xs, ys, loss, canonical, d_xs, rtol):
    want_loss, (want_params, want_xs) = _jaxrnn_loss_and_grad(cell, params, xs)
    _assert_close(ys, _jaxrnn_forward(cell, params, xs), rtol, "ys")
    _assert_close(loss, want_loss, rtol, "loss")
    for field in ("w_ih", "w_hh", "b_ih"):
        _assert_close(canonical[field], getattr(want_params, field), rtol, f"grad {field}")
    _assert_close(d_xs, want_xs, rtol, "grad xs")
    return want_params


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell_name, name", CPU_PEERS)
def test_peer_matches_jaxrnn(cell_name, name, dtype):
    cell, params, xs = _setup(cell_name, dtype)
    peer = make_peer(name, cell_name, params, unroll=2)
    assert peer.name == name
    ys = peer.forward(peer.params, xs)
    loss, (grads, d_xs) = peer.loss_and_grad(peer.params, xs)
    assert ys.dtype == dtype and d_xs.dtype == dtype
    want_params = _assert_matches_jaxrnn(cell, params, xs, ys, loss, peer.to_canonical(grads), d_xs, RTOL[dtype])
    if cell_name == "gru":
        # The one native gradient the canonical dict leaves out: flax's hn bias is b_hn.
        _assert_close(grads["cell"]["hn"]["bias"], want_params.b_hh[2 * H :], RTOL[dtype], "grad b_hn")


def _cudnn_ref(weights, xs):
    """``jax.experimental.rnn.lstm_ref``, the pure-JAX reference of cuDNN's LSTM, on packed weights."""
    sizes = (I, H, 1)
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, *sizes, False)
    zeros = jnp.zeros((1, B, H), weights.dtype)
    seq_lengths = jnp.full((B,), T, jnp.int32)
    ys, _, _ = jax_rnn.lstm_ref(xs, zeros, zeros, w_ih, w_hh, b_ih, b_hh, seq_lengths, *sizes, 0.0, False)
    return ys


def test_cudnn_packing_matches_jaxrnn_through_lstm_ref():
    cell, params, xs = _setup("lstm", jnp.float32)
    peer = make_peer("jax-cudnn", "lstm", params)
    assert peer.params.shape == (jax_rnn.get_num_params_in_lstm(I, H, 1, False),)
    ys = _cudnn_ref(peer.params, xs)
    loss_and_grad = jax.value_and_grad(lambda w, x: jnp.sum(_cudnn_ref(w, x) ** 2), argnums=(0, 1))
    loss, (grads, d_xs) = loss_and_grad(peer.params, xs)
    _assert_matches_jaxrnn(cell, params, xs, ys, loss, peer.to_canonical(grads), d_xs, RTOL[jnp.float32])


@pytest.mark.skipif(not HAS_CUDA_PLUGIN, reason="jax's CUDA plugin is not installed")
def test_cudnn_forward_and_grad_lower_for_cuda():
    _, params, xs = _setup("lstm", jnp.float32)
    peer = make_peer("jax-cudnn", "lstm", params)
    for fn in (peer.forward, peer.loss_and_grad):
        text = fn.trace(peer.params, xs).lower(lowering_platforms=("cuda",)).as_text()
        assert "cudnn_rnn" in text


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs a GPU")
def test_cudnn_peer_matches_jaxrnn_on_gpu():
    cell, params, xs = _setup("lstm", jnp.float32)
    peer = make_peer("jax-cudnn", "lstm", params)
    with jax.default_matmul_precision("highest"):
        ys = peer.forward(peer.params, xs)
        loss, (grads, d_xs) = peer.loss_and_grad(peer.params, xs)
        _assert_matches_jaxrnn(cell, params, xs, ys, loss, peer.to_canonical(grads), d_xs, 1e-4)


@pytest.mark.parametrize(
    "cell_name, backend, expected",
    [
        ("lstm", "cpu", ["flax-LSTMCell", "flax-OptimizedLSTMCell"]),
        ("lstm", "tpu", ["flax-LSTMCell", "flax-OptimizedLSTMCell"]),
        ("lstm", "gpu", ["flax-LSTMCell", "flax-OptimizedLSTMCell", "jax-cudnn"]),
        *[("gru", b, ["flax-GRUCell"]) for b in ("cpu", "gpu", "tpu")],
        *[(elman, b, ["flax-SimpleCell"]) for elman in ("elman_tanh", "elman_relu") for b in ("cpu", "gpu", "tpu")],
        *[("layer_norm_lstm", b, []) for b in ("cpu", "gpu", "tpu")],
    ],
)
def test_available_peers(cell_name, backend, expected):
    assert available_peers(cell_name, backend) == expected


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda p: available_peers("elman", "cpu"),
            ValueError,
            r"one of \['lstm', 'gru', 'elman_tanh', 'elman_relu', 'layer_norm_lstm', 'lstm_diagonal', 'gru_diagonal', "
            r"'mingru', 'minlstm', 'lru'\], got 'elman'",
        ),
        (
            lambda p: make_peer("flax-SimpleCell", "lstm", p),
            ValueError,
            r"peer 'flax-SimpleCell' runs elman_tanh or elman_relu cells, not lstm",
        ),
        (lambda p: make_peer("torch", "lstm", p), ValueError, r"unknown peer 'torch'; the peers are"),
        (lambda p: make_peer("flax-GRUCell", "lstm", p), ValueError, r"peer 'flax-GRUCell' runs gru cells, not lstm"),
        (lambda p: make_peer("flax-GRUCell", "gru", p), ValueError, r"but a gru cell with 3 gate\(s\) needs"),
        (lambda p: make_peer("flax-LSTMCell", "lstm", p, unroll=0), ValueError, r"unroll must be a positive int"),
        (
            lambda p: make_peer("jax-cudnn", "lstm", jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)),
            TypeError,
            r"float32 LSTM only, got params of dtype float64",
        ),
    ],
)
def test_errors(call, error, match):
    _, params, _ = _setup("lstm", jnp.float32)
    with pytest.raises(error, match=match):
        call(params)
