"""The time loop on a kernel (jaxrnn._core.loop.KernelSteps), backend resolution, and remat.

The loop is tested with the kernel oracle (``tests/kernel_oracle.py``) standing in
for a Pallas kernel module, in float64, against the autodiff reference; the
Pallas kernels themselves are tested against the same oracle in
test_pallas_gpu.py / test_pallas_tpu.py, and end to end through jr.rnn in
interpret mode at the bottom of this file.
"""

import types

import jax
import jax.numpy as jnp
import kernel_oracle
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._core import cells, strategy
from jaxrnn._kernels import registry
from tests.helpers import make

KERNEL_CELLS = ["elman_tanh", "elman_relu", "lstm", "gru"]


@pytest.fixture
def reference_kernels(monkeypatch):
    """The kernel oracle served as the kernel module of both Pallas targets, on a pretend GPU."""
    module = types.SimpleNamespace(
        AVAILABLE=True,
        WHY_UNAVAILABLE=None,
        RESIDUALS=("gates",),
        needs_px=lambda residuals: True,
        forward=kernel_oracle.forward,
        backward=kernel_oracle.backward,
        unsupported=lambda kind, batch, hidden, w_dtype, precision: None,
    )
    real_kernel = registry.kernel
    monkeypatch.setattr(registry, "kernel", lambda name: module if name in ("gpu", "tpu") else real_kernel(name))
    monkeypatch.setattr(registry, "pallas_target", lambda platform: "gpu")
    # The oracle computes in float64 here; the dtype rule is tested separately.
    monkeypatch.setattr(strategy, "_dtype_problem", lambda w_dtype, xs_dtype: None)
    return module


def _backend(backend, cell, grad="bptt", residuals="gates"):
    """The backend that jr.rnn resolves ``backend`` to for ``cell`` (batch 4, float32)."""
    return strategy.resolve(cell, grad=grad, residuals=residuals, backend=backend, batch=4).backend


def _loss(backend, grad="bptt", **kwargs):
    def f(params, state, xs, weights):
        ys, final = jr.rnn(cell_of[0], params, xs, state, grad=grad, backend=backend, **kwargs)
        out = jnp.sum(ys * weights[0]) + jnp.sum(final.h * weights[1])
        if hasattr(final, "c"):
            out = out + jnp.sum(final.c * weights[2])
        return out

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))


cell_of = [None]


def _setup(name, *, batch=4, steps=7):
    cell, params, xs = make(name, jnp.float64, batch=batch, steps=steps)
    cell_of[0] = cell
    state = jax.tree_util.tree_map(lambda s: 0.3 * jnp.ones_like(s), cell.initial_state((batch,), dtype=jnp.float64))
    k = jax.random.split(jax.random.PRNGKey(7), 3)
    weights = (
        jax.random.normal(k[0], (batch, steps, cell.hidden_size), jnp.float64),
        jax.random.normal(k[1], (batch, cell.hidden_size), jnp.float64),
        jax.random.normal(k[2], (batch, cell.hidden_size), jnp.float64),
    )
    return cell, params, state, xs, weights


def _assert_close(got, want, tol=1e-10):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", KERNEL_CELLS)
@pytest.mark.parametrize("reverse, padded", [(False, False), (True, True)])
def test_kernel_wrapper_equals_xla_autodiff(reference_kernels, name, reverse, padded):
    cell, params, state, xs, weights = _setup(name)
    lengths = jnp.array([7, 0, 3, 5]) if padded else None
    got = _loss(jr.Pallas(), lengths=lengths, reverse=reverse)(params, state, xs, weights)
    want = _loss("xla", grad="autodiff", lengths=lengths, reverse=reverse)(params, state, xs, weights)
    _assert_close(got, want)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_kernel_wrapper_truncate_equals_xla(reference_kernels, name):
    cell, params, state, xs, weights = _setup(name)
    got = _loss("pallas", truncate=3, lengths=jnp.array([7, 2, 6, 4]))(params, state, xs, weights)
    want = _loss("xla", grad="autodiff", truncate=3, lengths=jnp.array([7, 2, 6, 4]))(params, state, xs, weights)
    _assert_close(got, want)


def test_kernel_wrapper_single_sequence_and_vmap(reference_kernels):
    cell, params, _, xs, _ = _setup("lstm")

    def run(backend):
        return jax.vmap(lambda x: jr.rnn(cell, params, x, backend=backend))(xs)

    _assert_close(run("pallas"), run("xla"))


def test_auto_is_xla_without_committed_device_measurements(reference_kernels):
    cell, params, _, xs, _ = _setup("lstm")
    assert _backend("auto", cell) == "xla"
    assert _backend(jr.Pallas(), cell) == jr.Pallas(target="gpu")


def test_auto_picks_the_kernel_where_a_measurement_says_so(reference_kernels, monkeypatch):
    cell = jr.lstm(64)
    monkeypatch.setattr(registry, "AUTO_PALLAS", {("gpu", "lstm"): 128})
    assert _backend("auto", cell) == jr.Pallas(target="gpu")
    assert _backend("auto", jr.lstm(256)) == "xla"
    assert _backend("auto", cell, grad="autodiff") == "xla"
    assert _backend("auto", jr.gru(64)) == "xla"


def test_auto_on_cpu_picks_the_cpu_kernel_where_the_benchmark_measured_it_faster():
    """LSTM and GRU in float32 run the C++ kernel (registry.AUTO_CPU); Elman, float64 and autodiff run XLA."""
    cell, params, _, xs, _ = _setup("gru")
    assert _backend("auto", cell) == jr.CPUKernel()
    assert _backend("auto", jr.lstm(8)) == jr.CPUKernel()
    assert _backend("auto", jr.elman(8)) == "xla"
    assert _backend("auto", cell, grad="autodiff") == "xla"
    assert _backend("auto", cell, residuals="states") == "xla"
    # float64 (this test's params) stays on the XLA path, bit for bit.
    _assert_close(jr.rnn(cell, params, xs), jr.rnn(cell, params, xs, backend="xla"), tol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(backend="cudnn"),
            r"backend must be one of \('auto', 'xla', 'pallas', 'cpu'\), a jr.Pallas\(...\) or a jr.CPUKernel\(...\), got 'cudnn'",
        ),
        (dict(backend=jr.Pallas(target="mps")), r"Pallas target must be one of \('gpu', 'tpu'\) or None, got 'mps'"),
        (
            dict(backend=jr.Pallas(precision="tf32")),
            r"Pallas precision must be one of \('highest', 'fast'\), got 'tf32'",
        ),
        (
            dict(backend="pallas"),
            r"backend=Pallas\(.*\) cannot run this call: the default device is 'cpu'; Pallas kernels compile for GPU and TPU only",
        ),
        (dict(backend="pallas", grad="autodiff"), r"needs grad='bptt'.*got|needs grad='bptt'"),
        (dict(backend="pallas", residuals="states"), r"residuals='states' applies to the XLA path only"),
        (dict(remat=0), r"remat must be a positive int"),
        (dict(remat=5, truncate=2), r"remat must be a multiple of truncate.*remat=5 and truncate=2. Try remat=4"),
    ],
)
def test_backend_and_remat_errors(kwargs, match):
    cell, params, _, xs, _ = _setup("lstm")
    with pytest.raises(ValueError, match=match):
        jr.rnn(cell, params, xs, **kwargs)


def test_pallas_refuses_cells_without_a_kernel_and_float64(reference_kernels, monkeypatch):
    cell, params, _, xs, _ = _setup("layer_norm_lstm")
    with pytest.raises(
        ValueError,
        match=r"the layer_norm_lstm cell has no fused kernel \(only jr.elman, jr.lstm and jr.gru do, with their own functions\)",
    ):
        jr.rnn(cell, params, xs, backend="pallas")
    monkeypatch.undo()
    monkeypatch.setattr(registry, "pallas_target", lambda platform: "gpu")
    cell, params, _, xs, _ = _setup("lstm")
    with pytest.raises(
        ValueError, match=r"the kernels compute in float32 \(and bfloat16\); float64 runs on the XLA path"
    ):
        jr.rnn(cell, params, xs, backend="pallas")


def test_a_builtin_cell_with_replaced_functions_runs_its_own_functions(reference_kernels):
    cell, params, _, xs, _ = _setup("lstm")
    doubled = cell._replace(update=lambda state, px, rec: cell.update(state, 2.0 * px, rec))
    assert cells.builtin_kind(cell) == "lstm" and cells.builtin_kind(doubled) is None
    with pytest.raises(ValueError, match=r"the lstm cell has no fused kernel"):
        jr.rnn(doubled, params, xs, backend="pallas")
    ys, _ = jr.rnn(doubled, params, xs)
    want, _ = jr.rnn(cell, params._replace(w_ih=2.0 * params.w_ih, b_ih=2.0 * params.b_ih), xs)
    np.testing.assert_allclose(ys, want, rtol=1e-12, atol=1e-12)


def test_pallas_reports_what_the_kernel_cannot_run(reference_kernels):
    reference_kernels.unsupported = lambda kind, batch, hidden, w_dtype, precision: "H=5 is too large (test)"
    cell, params, _, xs, _ = _setup("lstm")
    with pytest.raises(
        ValueError, match=r"cannot run this call: H=5 is too large \(test\)\. Use backend='auto' or 'xla'"
    ):
        jr.rnn(cell, params, xs, backend="pallas")


# remat: checkpointing every k steps.


@pytest.mark.parametrize("name", ["lstm", "layer_norm_lstm"])
@pytest.mark.parametrize("grad", ["bptt", "autodiff"])
@pytest.mark.parametrize("remat", [3, 10])
def test_remat_equals_the_plain_gradient(name, grad, remat):
    cell, params, state, xs, weights = _setup(name)
    lengths = jnp.array([7, 0, 3, 5])
    got = _loss("xla", grad=grad, remat=remat, lengths=lengths, reverse=True)(params, state, xs, weights)
    want = _loss("xla", grad="autodiff", lengths=lengths, reverse=True)(params, state, xs, weights)
    _assert_close(got, want)


@pytest.mark.parametrize("remat", [2, 6])
def test_remat_with_truncate_equals_truncate_alone(remat):
    cell, params, state, xs, weights = _setup("lstm", steps=9)
    got = _loss("xla", truncate=2, remat=remat)(params, state, xs, weights)
    want = _loss("xla", grad="autodiff", truncate=2)(params, state, xs, weights)
    _assert_close(got, want)


def test_remat_with_the_kernel_backend(reference_kernels):
    cell, params, state, xs, weights = _setup("gru")
    got = _loss("pallas", remat=3, lengths=jnp.array([7, 1, 6, 3]))(params, state, xs, weights)
    want = _loss("xla", grad="autodiff", lengths=jnp.array([7, 1, 6, 3]))(params, state, xs, weights)
    _assert_close(got, want)


def test_remat_keeps_fewer_states():
    """XLA's buffer assignment: the temporaries of fwd+bwd shrink with remat ~ sqrt(T)."""
    cell = jr.lstm(64)
    params = cell.init(jax.random.PRNGKey(0), 16, jnp.float32)
    xs = jnp.ones((4, 1024, 16), jnp.float32)

    def temp_bytes(remat):
        f = jax.jit(jax.grad(lambda p: jnp.sum(jr.rnn(cell, p, xs, remat=remat)[0][:, -1] ** 2)))
        return f.lower(params).compile().memory_analysis().temp_size_in_bytes

    plain, chunked = temp_bytes(None), temp_bytes(32)
    # Plain BPTT keeps the states and both projections of all 1024 steps: 1024 * 4 * (2 + 8) * 64 floats
    # at least; remat=32 keeps 32 states plus one chunk's residuals.
    assert plain > 1024 * 4 * 10 * 64 * 4
    assert chunked < plain / 4


# The real kernels, end to end through jr.rnn: interpret mode on CPU, lowering for their targets.


def _float32_problem(name, batch=3, steps=7):
    cell = {"lstm": jr.lstm, "gru": jr.gru, "elman_tanh": jr.elman}[name](20)
    params = cell.init(jax.random.PRNGKey(0), 6, jnp.float32)
    xs = jax.random.normal(jax.random.PRNGKey(1), (batch, steps, 6), jnp.float32)
    lengths = jnp.array([7, 0, 4])

    def loss(params, xs, backend):
        ys, final = jr.rnn(cell, params, xs, lengths=lengths, reverse=True, backend=backend)
        return jnp.sum(ys * ys) + jnp.sum(final.h)

    return cell, params, xs, loss


@pytest.mark.parametrize("target, name", [("gpu", "lstm"), ("tpu", "gru")])
def test_pallas_kernels_in_interpret_mode_equal_the_xla_path(target, name):
    cell, params, xs, loss = _float32_problem(name)
    grad = jax.value_and_grad(loss, argnums=(0, 1))
    got = grad(params, xs, jr.Pallas(target=target, interpret=True))
    want = grad(params, xs, "xla")
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        scale = float(jnp.abs(w).max())
        assert float(jnp.abs(g - w).max()) <= 1e-5 * scale, (target, name)


@pytest.mark.parametrize("target, platform, marker", [("gpu", "cuda", "triton"), ("tpu", "tpu", "tpu_custom_call")])
def test_rnn_gradient_with_pallas_lowers_for_its_target(target, platform, marker):
    cell, params, xs, loss = _float32_problem("lstm")
    f = jax.jit(jax.grad(lambda p, x: loss(p, x, jr.Pallas(target=target))))
    text = f.trace(params, xs).lower(lowering_platforms=(platform,)).as_text()
    assert text.count(marker) >= 2, f"expected the forward and backward kernels as {marker} calls"
