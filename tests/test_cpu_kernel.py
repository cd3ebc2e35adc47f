"""The C++ CPU kernel (``jaxrnn/_kernels/cpu.py``, ``csrc/rnn_cpu.cc``): values, gradients, build and cache.

References: the float64 oracle (``kernel_oracle.py``: a plain scan of restated gate
equations, differentiated by JAX), the XLA kernel in float32, and ``jax.grad`` of
the autodiff path through :func:`jaxrnn.rnn`.
"""

import os
import pathlib
import stat
import threading
import warnings

import jax
import jax.numpy as jnp
import kernel_oracle as oracle
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._kernels import cpu, cpu_build, registry, xla

F32 = jnp.float32


def _f32(tree):
    return jax.tree.map(lambda a: a if a is None or a.dtype == jnp.bool_ else a.astype(F32), tree)


@pytest.mark.parametrize("kind", oracle.KINDS)
@pytest.mark.parametrize("batch, with_mask, truncate", [(1, False, None), (3, True, 2), (16, True, None)])
def test_kernel_equals_the_float64_oracle_and_the_xla_kernel(kind, batch, with_mask, truncate):
    """H = 20 is one full block of 16 units and a partial one; T = 7 with lengths 0..T and truncation."""
    inputs64 = oracle.inputs(kind, 7, batch, 20, with_mask, seed=batch)
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _f32(inputs64)
    h_want, c_want, rec_all = oracle.forward(
        kind, *[None if a is None else a.astype(jnp.float64) for a in (px, w_hh, b_hh, h0, c0)], mask
    )
    h_all, c_all, act = jax.jit(cpu.forward, static_argnums=0)(kind, px, w_hh, b_hh, h0, c0, mask)
    x_h, x_c, x_act = xla.forward(kind, px, w_hh, b_hh, h0, c0, mask)
    np.testing.assert_allclose(h_all, h_want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(h_all, x_h, rtol=2e-5, atol=2e-6)
    if kind == "lstm":
        np.testing.assert_allclose(c_all, c_want, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(c_all, x_c, rtol=2e-5, atol=2e-6)
    want = oracle.backward(
        kind, px.astype(jnp.float64), rec_all, w_hh.astype(jnp.float64), b_hh.astype(jnp.float64),
        h0.astype(jnp.float64), None if c0 is None else c0.astype(jnp.float64), h_want, c_want, mask,
        d_h_all.astype(jnp.float64), None if d_c_last is None else d_c_last.astype(jnp.float64), truncate=truncate,
    )  # fmt: skip
    got = cpu.backward(kind, None, act, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last, truncate=truncate)
    from_xla = xla.backward(kind, px, x_act, w_hh, b_hh, h0, c0, x_h, x_c, mask, d_h_all, d_c_last, truncate=truncate)
    for name, g_, w_, x_ in zip(("d_px", "d_rec", "d_h0", "d_c0"), got, want, from_xla):
        if w_ is None:
            assert g_ is None, name
            continue
        assert g_.dtype == F32, name
        np.testing.assert_allclose(g_, w_, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(g_, x_, rtol=1e-4, atol=1e-5, err_msg=name)


def test_threads_do_not_change_the_result():
    """Two threads split the hidden units; each unit's arithmetic is the same, so the results are bitwise equal."""
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _f32(oracle.inputs("lstm", 5, 4, 70, True, seed=5))
    one = cpu.forward("lstm", px, w_hh, b_hh, h0, c0, mask, threads=1)
    two = cpu.forward("lstm", px, w_hh, b_hh, h0, c0, mask, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    args = ("lstm", None, one[2], w_hh, b_hh, h0, c0, one[0], one[1], mask, d_h_all, d_c_last)
    for a, b in zip(cpu.backward(*args, threads=1), cpu.backward(*args, threads=2)):
        np.testing.assert_array_equal(a, b)


def test_activations_error_against_float64():
    """The kernel's sigmoid and tanh: at most 3 float32 ulps from float64 over [-30, 30] and tiny |x|; NaN propagates."""
    x = np.concatenate([np.linspace(-30, 30, 200001), np.geomspace(1e-30, 1, 20001), -np.geomspace(1e-30, 1, 20001)])
    x = x.astype(np.float32)
    sig, tanh = (np.asarray(a, np.float64) for a in jax.jit(cpu.activations)(x))
    x64 = x.astype(np.float64)
    for got, want in ((sig, 1.0 / (1.0 + np.exp(-x64))), (tanh, np.tanh(x64))):
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        assert np.max(np.abs(got - want) / ulp) <= 3.0
    special = np.array([np.nan, np.inf, -np.inf, 0.0, 50.0, -50.0], np.float32)
    sig, tanh = (np.asarray(a) for a in cpu.activations(special))
    np.testing.assert_array_equal(sig, np.float32([np.nan, 1.0, 0.0, 0.5, 1.0, 1.0 / (1.0 + np.exp(50.0))]))
    np.testing.assert_array_equal(tanh, [np.nan, 1.0, -1.0, 0.0, 1.0, -1.0])


def _model_loss(model, params, xs, lengths, backend, **options):
    ys, finals = model.apply(params, xs, lengths=lengths, backend=backend, **options)
    leaves = jax.tree.leaves(finals)
    return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(a)) for a in leaves)


@pytest.mark.parametrize(
    "make, options",
    [
        (jr.LSTM, dict(bidirectional=True, num_layers=2)),
        (jr.GRU, dict(num_layers=1)),
    ],
)
def test_models_through_the_kernel_equal_autodiff(make, options):
    """Stacked and bidirectional models, lengths, truncate and remat, under jit: values and every gradient."""
    model = make(input_size=5, hidden_size=16, **options)
    params = model.init(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda a: a.astype(F32), params)
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 5), F32)
    lengths = jnp.array([8, 5, 1])
    for extra in (dict(), dict(truncate=3, remat=6)):
        loss = lambda p, x, backend, extra=extra: _model_loss(model, p, x, lengths, backend, **extra)
        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
        value, grads = grad(params, xs, "cpu")
        if extra:
            want_value, want = grad(params, xs, "xla")  # truncation: the XLA kernel's hand-written reverse
        else:
            reference = lambda p, x: _model_loss(model, p, x, lengths, "xla", grad="autodiff")
            want_value, want = jax.value_and_grad(reference, (0, 1))(params, xs)
        np.testing.assert_allclose(value, want_value, rtol=1e-5)
        for g_, w_ in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
            np.testing.assert_allclose(g_, w_, rtol=2e-4, atol=2e-5)


def test_reverse_and_vmap_run_the_batch_through_one_call():
    cell = jr.gru(16)
    params = _f32(jax.vmap(lambda k: cell.init(k, 4))(jax.random.split(jax.random.PRNGKey(0), 3)))
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 4), F32)

    def loss(p, backend):
        ys, final = jr.rnn(cell, p, xs, reverse=True, lengths=jnp.array([9, 4]), backend=backend)
        return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(final.h)

    batched = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(0, None)), static_argnums=1)
    got, want = batched(params, "cpu"), batched(params, "xla")
    for g_, w_ in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g_, w_, rtol=2e-5, atol=2e-6)
    text = batched.lower(params, "cpu").as_text()
    assert text.count("jaxrnn_cpu_forward") == 1 and text.count("jaxrnn_cpu_backward") == 1


def test_bad_arguments_are_refused_before_the_call():
    px, w_hh, b_hh, h0, c0, mask, _, _ = _f32(oracle.inputs("lstm", 4, 2, 8, True))
    with pytest.raises(ValueError, match=r"px has dtype float64; expected float32"):
        cpu.forward("lstm", px.astype(jnp.float64), w_hh, b_hh, h0, c0, mask)
    with pytest.raises(
        ValueError, match=r"w_hh has shape \(32, 7\); expected \[4\*H, H\] for kind 'lstm' of shape \(32, 8\)"
    ):
        cpu.forward("lstm", px, w_hh[:, :7], b_hh, h0, c0, mask)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 2\); expected \[T, B\] of shape \(4, 2\)"):
        cpu.forward("lstm", px, w_hh, b_hh, h0, c0, mask[:3])
    with pytest.raises(ValueError, match=r"b_hh has shape \(31,\); expected \[4\*H\] for kind 'lstm' of shape \(32,\)"):
        cpu.forward("lstm", px, w_hh, b_hh[:31], h0, c0, mask)
    h_all, c_all, act = cpu.forward("lstm", px, w_hh, b_hh, h0, c0, mask)
    with pytest.raises(ValueError, match=r"residual has shape \(4, 2, 16\); expected \[T, B, 4\*H\]"):
        cpu.backward("lstm", None, act[..., :16], w_hh, b_hh, h0, c0, h_all, c_all, mask, h_all, h0)
    with pytest.raises(ValueError, match=r"CPUKernel threads must be a positive int or None, got 0"):
        jr.rnn(
            jr.lstm(8), jr.lstm(8).init(jax.random.PRNGKey(0), 3), jnp.zeros((2, 4, 3)), backend=jr.CPUKernel(threads=0)
        )
    cell = jr.lstm(8)
    params = _f32(cell.init(jax.random.PRNGKey(0), 3))
    with pytest.raises(
        ValueError,
        match=r"backend=CPUKernel\(threads=None\) cannot run this call: the CPU kernel computes in float32 and xs are float64",
    ):
        jr.rnn(
            cell,
            jax.tree.map(lambda a: a.astype(jnp.float64), params),
            jnp.zeros((2, 4, 3), jnp.float64),
            backend="cpu",
        )
    with pytest.raises(ValueError, match=r"cannot run this call: the layer_norm_lstm cell has no fused kernel"):
        ln = jr.layer_norm_lstm(8)
        jr.rnn(ln, _f32(ln.init(jax.random.PRNGKey(0), 3)), jnp.zeros((2, 4, 3), F32), backend="cpu")
    with pytest.raises(ValueError, match=r"needs grad='bptt'"):
        jr.rnn(cell, params, jnp.zeros((2, 4, 3), F32), backend="cpu", grad="autodiff")


def _logging_compiler(tmp_path: pathlib.Path, real: str) -> tuple:
    """A compiler wrapper that appends one line per compile (not per --version) to a log."""
    log = tmp_path / "compiles.log"
    script = tmp_path / "cxx"
    script.write_text(f'#!/bin/sh\ncase "$*" in *" -o "*) echo compile >> "{log}";; esac\nexec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def test_cache_compiles_once_for_concurrent_builds_and_never_again(tmp_path):
    real = cpu_build.find_compiler()
    compiler, log = _logging_compiler(tmp_path, real)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(cpu_build.build(tmp_path / "cache", compiler))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.compiled for r in results) == [False, True]
    assert results[0].path == results[1].path and results[0].path.exists()
    again = cpu_build.build(tmp_path / "cache", compiler)  # what the next process (import) does
    assert not again.compiled and again.path == results[0].path
    assert log.read_text().splitlines() == ["compile"]
    leftovers = [p.name for p in (tmp_path / "cache" / "cpu-kernel").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def test_no_compiler_falls_back_to_xla_with_one_warning(tmp_path, monkeypatch):
    with pytest.raises(cpu_build.BuildError, match=r"compiler .*no-such-c\+\+.* could not run"):
        cpu_build.build(tmp_path, compiler=str(tmp_path / "no-such-c++"))
    # A process whose build failed: "auto" (where the benchmark would pick the kernel) warns once and runs XLA.
    monkeypatch.setattr(cpu_build, "_state", {"error": "no C++ compiler found (none of $CXX, c++, g++, clang++)"})
    monkeypatch.setattr(cpu, "_warned", [])
    monkeypatch.setattr(registry, "AUTO_CPU", frozenset({"gru"}))
    cell = jr.gru(8)
    params = _f32(cell.init(jax.random.PRNGKey(0), 3))
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3), F32)
    with pytest.warns(
        RuntimeWarning,
        match=r"the CPU kernel could not be built: no C\+\+ compiler found.*the XLA path runs instead.*install a C\+\+17 compiler",
    ):
        ys, _ = jr.rnn(cell, params, xs, backend="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jr.rnn(cell, params, xs, backend="auto")  # no second warning
    np.testing.assert_allclose(ys, jr.rnn(cell, params, xs, backend="xla")[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"cannot run this call: the CPU kernel could not be built: no C\+\+ compiler"):
        jr.rnn(cell, params, xs, backend="cpu")


def test_auto_picks_the_kernel_where_the_table_says(monkeypatch):
    cell = jr.lstm(8)
    params = _f32(cell.init(jax.random.PRNGKey(0), 3))
    xs = jnp.zeros((2, 4, 3), F32)
    text = lambda: jax.jit(lambda p: jr.rnn(cell, p, xs, backend="auto")[0]).lower(params).as_text()
    monkeypatch.setattr(registry, "AUTO_CPU", frozenset())
    assert "jaxrnn_cpu_forward" not in text()
    monkeypatch.setattr(registry, "AUTO_CPU", frozenset({"lstm"}))
    assert "jaxrnn_cpu_forward" in text()


def test_the_kernel_builds_where_the_tests_run():
    """CI and the README's test command have a C++ compiler: the kernel must build there, not be skipped."""
    assert cpu_build.SOURCE.is_file() and os.path.getsize(cpu_build.SOURCE) > 0
    assert cpu_build.problem() is None


def test_a_forward_pass_alone_keeps_no_gates():
    """Without a reverse pass the loop asks the kernel to keep nothing (XLA cannot drop a custom call's outputs)."""
    cell = jr.lstm(8)
    params = _f32(cell.init(jax.random.PRNGKey(0), 3))
    xs = jnp.zeros((2, 5, 3), F32)

    def results(fn):
        text = jax.jit(fn).lower(params).as_text()
        (line,) = [line for line in text.splitlines() if "jaxrnn_cpu_forward" in line]
        return line.rsplit("->", 1)[1]

    forward = results(lambda p: jr.rnn(cell, p, xs, backend="cpu")[0])
    with_grad = results(jax.grad(lambda p: jnp.sum(jr.rnn(cell, p, xs, backend="cpu")[0])))
    assert forward.strip() == "(tensor<5x2x8xf32>, tensor<5x2x8xf32>, tensor<0xf32>)"
    assert with_grad.strip() == "(tensor<5x2x8xf32>, tensor<5x2x8xf32>, tensor<5x2x32xf32>)"
