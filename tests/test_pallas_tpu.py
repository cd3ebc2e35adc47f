"""The TPU kernels (jaxrnn._kernels.pallas_tpu) against the kernel oracle, on CPU.

Correctness runs in Pallas's TPU interpreter (``interpret=True`` maps to
``pltpu.InterpretParams()``, which simulates VMEM scratch, block copies and the
grid order); compilation is checked by lowering for the ``"tpu"`` platform, which
runs Pallas's Mosaic lowering of the kernels without a TPU.
"""

import base64
import importlib.util
import re
import sys

import jax
import jax.numpy as jnp
import kernel_oracle as ref
import numpy as np
import pytest

from jaxrnn._kernels import pallas_tpu as tpu

pytestmark = pytest.mark.skipif(not tpu.AVAILABLE, reason=str(tpu.WHY_UNAVAILABLE))

F32, BF16 = jnp.float32, jnp.bfloat16


def _inputs(kind, num_steps, batch, hidden, *, with_mask, w_dtype=F32, seed=0):
    g = ref.NUM_GATES[kind]
    rng = np.random.default_rng(seed)

    def normal(scale, *shape):
        return jnp.asarray(scale * rng.standard_normal(shape), F32)

    px = normal(1.0, num_steps, batch, g * hidden)
    w_hh = normal(0.8 / np.sqrt(hidden), g * hidden, hidden).astype(w_dtype)
    b_hh = normal(0.1, g * hidden)
    h0 = normal(0.5, batch, hidden)
    c0 = normal(0.5, batch, hidden) if kind == "lstm" else None
    mask = None
    if with_mask:
        # Random lengths, the first row of length 0 (never runs), the last of full length.
        lengths = rng.integers(0, num_steps + 1, batch)
        lengths[0], lengths[-1] = 0, num_steps
        mask = jnp.asarray(np.arange(num_steps)[:, None] < lengths[None, :])
    d_h_all = normal(1.0, num_steps, batch, hidden)
    d_c_last = normal(1.0, batch, hidden) if kind == "lstm" else None
    return px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last


def _assert_close(got, want, tol, names):
    for name, g, w in zip(names, got, want):
        if w is None:
            assert g is None, name
        else:
            assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, g.dtype, w.shape, w.dtype)
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)


def _two_core_interpreter():
    """Pallas's TPU interpreter simulating two TensorCores (the argument's name varies by version)."""
    for name in ("num_cores_or_threads", "num_cores_per_device"):
        try:
            return tpu.pltpu.InterpretParams(**{name: 2})
        except TypeError:
            continue
    return True


def _check_against_reference(kind, shape, *, with_mask, truncate, tiles, tol, w_dtype=F32, precision="highest"):
    """Forward and backward of the kernel against the reference, with the reference's own residuals."""
    num_steps, batch, hidden = shape
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs(
        kind, num_steps, batch, hidden, with_mask=with_mask, w_dtype=w_dtype
    )
    # Several batch tiles: split across two simulated cores, as the "parallel" batch axis allows.
    interpret = _two_core_interpreter() if tiles.get("batch_block", batch) < batch else True
    # "fast" on TPU is bfloat16 products: the reference with the weights rounded to bfloat16.
    w_ref = w_hh.astype(BF16) if precision == "fast" else w_hh
    want = ref.forward(kind, px, w_ref, b_hh, h0, c0, mask, precision=precision)
    got = tpu.forward(kind, px, w_hh, b_hh, h0, c0, mask, precision=precision, interpret=interpret, **tiles)
    _assert_close(got, want, tol, ("h_all", "c_all", "rec_all"))

    h_all, c_all, rec_all = want
    args = (kind, px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last)
    want = ref.backward(*args[:3], w_ref, *args[4:], truncate=truncate, precision=precision)
    got = tpu.backward(*args, truncate=truncate, precision=precision, interpret=interpret, **tiles)
    _assert_close(got, want, tol, ("d_px", "d_rec", "d_h0", "d_c0"))


# (T, B, H), tiles, mask, truncate. Both cases pad every axis:
# - T=9 in blocks of 5 pads one step after the end, with no mask to skip it, and truncate=3
#   would cut there (t=9) if padded steps counted; B=1 pads 7 rows, H=8 pads 120 lanes;
# - masks with a length-0 row; T=7 in blocks of 3 (two padded, masked-off steps); B=11 in
#   two batch tiles of 8, run on two simulated cores; H=20.
CASES = [
    pytest.param((9, 1, 8), {"time_block": 5}, False, 3, id="T9-B1-H8-no-mask"),
    pytest.param((7, 11, 20), {"time_block": 3, "batch_block": 8}, True, 2, id="T7-B11-H20-mask-two-tiles"),
]


# Every kind in both cases, but the two Elman activations (which differ in f alone) one case each.
KERNEL_CASES = [
    pytest.param(kind, *case.values, id=f"{case.id}-{kind}")
    for case in CASES
    for kind in ref.KINDS
    if (kind, case.id) not in {("elman_relu", "T7-B11-H20-mask-two-tiles"), ("elman_tanh", "T9-B1-H8-no-mask")}
]


@pytest.mark.parametrize("kind, shape, tiles, with_mask, truncate", KERNEL_CASES)
def test_kernels_equal_the_reference(kind, shape, tiles, with_mask, truncate):
    _check_against_reference(kind, shape, with_mask=with_mask, truncate=truncate, tiles=tiles, tol=2e-5)


@pytest.mark.parametrize(
    "kind, w_dtype, precision",
    [pytest.param("lstm", BF16, "highest", id="lstm-bf16-weights"), pytest.param("gru", F32, "fast", id="gru-fast")],
)
def test_bfloat16_products_equal_the_reference(kind, w_dtype, precision):
    """bfloat16 weights, or "fast" (weights rounded to bfloat16 before the kernel), as the reference does."""
    _check_against_reference(
        kind,
        (5, 3, 20),
        with_mask=True,
        truncate=None,
        tiles={"time_block": 2},
        tol=2e-3,
        w_dtype=w_dtype,
        precision=precision,
    )


# ---------------------------------------------------------------------------------------------
# Lowering for TPU


def _abstract_args(kind, num_steps, batch, hidden, with_mask, w_dtype):
    g = ref.NUM_GATES[kind]
    lstm = kind == "lstm"

    def arr(*shape, dtype=F32):
        return jax.ShapeDtypeStruct(shape, dtype)

    seq, state = arr(num_steps, batch, hidden), arr(batch, hidden)
    gates = arr(num_steps, batch, g * hidden)
    mask = arr(num_steps, batch, dtype=jnp.bool_) if with_mask else None
    w_hh = arr(g * hidden, hidden, dtype=w_dtype)
    fwd = (gates, w_hh, arr(g * hidden), state, state if lstm else None, mask)
    bwd = (gates, gates, w_hh, arr(g * hidden), state, state if lstm else None, seq, seq if lstm else None, mask, seq)
    return fwd, bwd + (state if lstm else None,)


def _mosaic_body(lowered_text: str) -> bytes:
    """The serialised Mosaic module of the one TPU custom call in ``lowered_text``."""
    bodies = re.findall(r"custom_call @tpu_custom_call.*?body\\22: \\22([A-Za-z0-9+/=]+)", lowered_text)
    assert len(bodies) == 1, f"expected one tpu_custom_call, found {len(bodies)}"
    return base64.b64decode(bodies[0])


@pytest.mark.parametrize("kind", ref.KINDS)
@pytest.mark.parametrize(
    "shape, with_mask, truncate, w_dtype, precision",
    [
        pytest.param((37, 3, 20), True, 4, F32, "highest", id="padded-mask-truncate"),
        pytest.param((64, 16, 256), False, None, BF16, "highest", id="16x64x256-bf16"),
        pytest.param((9, 300, 128), False, 2, F32, "fast", id="two-tiles-fast"),
    ],
)
def test_kernels_lower_for_tpu(kind, shape, with_mask, truncate, w_dtype, precision):
    fwd_args, bwd_args = _abstract_args(kind, *shape, with_mask, w_dtype)
    fwd = jax.jit(lambda *a: tpu.forward(kind, *a, precision=precision))
    bwd = jax.jit(lambda *a: tpu.backward(kind, *a, truncate=truncate, precision=precision))
    for name, fn, args in (("forward", fwd, fwd_args), ("backward", bwd, bwd_args)):
        body = _mosaic_body(fn.trace(*args).lower(lowering_platforms=("tpu",)).as_text())
        assert f"jaxrnn_tpu_{kind}_{name}".encode() in body
        # Batch tiles in parallel, time in order; the time loop inside a grid step; the
        # recurrent matmul on the MXU; the weights copied in once and single-buffered.
        for piece in (
            b"#tpu.dimension_semantics<parallel>",
            b"#tpu.dimension_semantics<arbitrary>",
            b"scf.for",
            b"tpu.matmul",
            b"#tpu.pipeline_mode<synchronous>",
        ):
            assert piece in body, (name, piece)


# ---------------------------------------------------------------------------------------------
# Limits and errors


@pytest.mark.parametrize("kind, largest", [("lstm", 1536), ("gru", 1664), ("elman_tanh", 3072)])
def test_unsupported_states_the_hidden_size_limit(kind, largest):
    """The limits the module docstring states for float32 weights; bfloat16 fits more."""
    assert tpu.unsupported(kind, 16, largest, F32, "highest") is None
    reason = tpu.unsupported(kind, 16, largest + 1, F32, "highest")
    assert reason is not None and "too large" in reason and "VMEM" in reason
    assert tpu.unsupported(kind, 16, largest + 1, BF16, "highest") is None
    assert tpu.unsupported(kind, 16, largest + 1, F32, "fast") is None


@pytest.mark.parametrize(
    "kind, shape, w_dtype",
    [
        ("lstm", (4096, 16, 256), F32),
        ("gru", (2048, 64, 512), F32),
        ("lstm", (100, 1000, 1536), F32),
        ("lstm", (3, 300, 2048), BF16),
        ("elman_tanh", (8192, 1, 128), F32),
    ],
)
def test_default_tiles_fit_vmem_and_pad_little(kind, shape, w_dtype):
    num_steps, batch, hidden = shape
    plan = tpu._plan(kind, num_steps, batch, hidden, w_dtype, None, None)
    assert plan.batch_block % 8 == 0 and plan.hidden_padded % 128 == 0
    assert 0 <= plan.steps_padded - num_steps < plan.time_blocks
    assert 0 <= plan.batch_padded - batch < 8 * plan.batch_blocks
    used = tpu._vmem_bytes(kind, plan.time_block, plan.batch_block, plan.hidden_padded, jnp.dtype(w_dtype).itemsize)
    assert used <= tpu.VMEM_BUDGET_BYTES < tpu.VMEM_LIMIT_BYTES


def test_tiles_too_large_for_vmem_raise():
    args = _abstract_args("lstm", 64, 256, 1536, False, F32)[0]
    with pytest.raises(ValueError, match=r"time_block=16 and batch_block=256 need more than the 40 MiB VMEM budget"):
        jax.eval_shape(lambda *a: tpu.forward("lstm", *a, time_block=16, batch_block=256), *args)


def test_unsupported_names_other_reasons():
    assert "kind" in tpu.unsupported("minigru", 4, 8, F32, "highest")
    assert "precision" in tpu.unsupported("lstm", 4, 8, F32, "tf32")
    assert "float64" in tpu.unsupported("lstm", 4, 8, jnp.float64, "highest")
    assert tpu.unsupported("lstm", 1, 1, BF16, "fast") is None


def _bad_call(change):
    """A forward or backward call of an LSTM with one argument changed."""
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs("lstm", 3, 2, 8, with_mask=True)
    fwd = dict(kind="lstm", px=px, w_hh=w_hh, b_hh=b_hh, h0=h0, c0=c0, mask=mask)
    h_all = jnp.zeros((3, 2, 8), F32)
    bwd = dict(fwd, rec_all=px, h_all=h_all, c_all=h_all, d_h_all=d_h_all, d_c_last=d_c_last)
    which, name, value = change
    kwargs = dict(fwd if which == "forward" else bwd)
    kwargs[name] = value(kwargs) if callable(value) else value
    return getattr(tpu, which), kwargs


@pytest.mark.parametrize(
    "change, message",
    [
        (("forward", "kind", "minigru"), r"kind must be one of .*got 'minigru'"),
        (("forward", "precision", "tf32"), r"precision must be one of .*got 'tf32'"),
        (("forward", "px", lambda a: a["px"][:, :, :-1]), r"px has shape \(3, 2, 31\); expected \[T, B, 4\*H\]"),
        (("forward", "px", lambda a: a["px"][0]), r"px must be \[T, B, 4\*H\] with T >= 1"),
        (("forward", "px", lambda a: a["px"].astype(jnp.float64)), r"px has dtype float64; expected float32"),
        (("forward", "w_hh", lambda a: a["w_hh"].T), r"w_hh has shape \(8, 32\); expected \[4\*H, H\]"),
        (("forward", "b_hh", lambda a: a["b_hh"][None]), r"b_hh has shape \(1, 32\); expected \[4\*H\]"),
        (("forward", "c0", None), r"c0 is None; expected \[B, H\] \(LSTM\) of shape \(2, 8\)"),
        (("forward", "kind", "gru"), r"px has shape \(3, 2, 32\); expected \[T, B, 3\*H\]"),
        (("forward", "mask", lambda a: a["mask"].T), r"mask has shape \(2, 3\); expected \[T, B\]"),
        (("forward", "mask", lambda a: a["mask"].astype(jnp.int32)), r"mask has dtype int32; expected bool"),
        (("forward", "batch_block", 12), r"batch_block must be a multiple of 8"),
        (("forward", "time_block", 0), r"time_block must be a positive int or None, got 0"),
        (("backward", "truncate", 0), r"truncate must be a positive int or None, got 0"),
        (("backward", "d_c_last", None), r"d_c_last is None; expected \[B, H\] \(LSTM\)"),
        (("backward", "h_all", lambda a: a["h_all"][1:]), r"h_all has shape \(2, 2, 8\); expected \[T, B, H\]"),
    ],
)
def test_bad_arguments_raise_with_the_rule(change, message):
    fn, kwargs = _bad_call(change)
    with pytest.raises(ValueError, match=message):
        fn(**kwargs)


def test_import_never_raises_without_pallas_tpu(monkeypatch):
    """A JAX without ``jax.experimental.pallas.tpu``: the module imports and says why."""
    monkeypatch.delattr(tpu.pl, "tpu")
    monkeypatch.setitem(sys.modules, "jax.experimental.pallas.tpu", None)
    spec = importlib.util.spec_from_file_location("jaxrnn_pallas_tpu_without_pallas", tpu.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.AVAILABLE and "jax.experimental.pallas.tpu" in module.WHY_UNAVAILABLE
    assert module.unsupported("lstm", 4, 8, F32, "highest") == module.WHY_UNAVAILABLE
    px, w_hh, b_hh, h0, c0, mask, _, _ = _inputs("lstm", 2, 2, 8, with_mask=False)
    with pytest.raises(RuntimeError, match="Pallas TPU kernels cannot run"):
        module.forward("lstm", px, w_hh, b_hh, h0, c0, mask)
