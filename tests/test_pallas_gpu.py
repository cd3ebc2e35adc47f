"""The GPU kernels (jaxrnn._kernels.pallas_gpu) on CPU: the kernel oracle, and lowering for CUDA.

Correctness runs the Triton-style kernels in Pallas's interpret mode against
the oracle of ``tests/kernel_oracle.py``. Compilation for the target is checked by lowering
for the ``"cuda"`` platform from CPU, which runs Pallas's Triton lowering of the
kernels; the Triton IR it prints (``debug=True``) is checked for what the
design promises: one time loop per kernel, the recurrent weights loaded before
it and used from there by every step's product, and the product's precision.
"""

import pathlib
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import kernel_oracle as ref
import numpy as np
import pytest
from kernel_oracle import inputs as reference_inputs

from jaxrnn._kernels import pallas_gpu as gpu

pytestmark = pytest.mark.skipif(not gpu.AVAILABLE, reason=str(gpu.WHY_UNAVAILABLE))

F32, BF16 = jnp.float32, jnp.bfloat16
TRITON_TARGETS = ("__gpu$xla.gpu.triton", "triton_kernel_call_ffi")


def _inputs(kind, num_steps, batch, hidden, *, with_mask, w_dtype=F32):
    """The reference tests' inputs in float32, the first row of length 0 (it never runs)."""
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = jax.tree_util.tree_map(
        lambda a: a if a.dtype == jnp.bool_ else a.astype(F32),
        reference_inputs(kind, num_steps, batch, hidden, with_mask),
    )
    if with_mask:
        mask = mask.at[:, 0].set(False)
    return px, w_hh.astype(w_dtype), b_hh, h0, c0, mask, d_h_all, d_c_last


def _assert_close(got, want, tol, names):
    for name, g, w in zip(names, got, want):
        if w is None:
            assert g is None, name
            continue
        assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, g.dtype, w.shape, w.dtype)
        scale = max(1.0, float(jnp.max(jnp.abs(w))))
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale, err_msg=name)


# kind, (T, B, H), mask, truncate, w_hh dtype, precision. Every kind on non-power-of-2
# batch and hidden sizes (padded to 16 and 32) with a mask that has a length-0 row, and
# truncation; then one case each for:
# - B=17: two batch tiles, the second padded with 15 rows;
# - B=16, H=16: nothing padded; "fast" precision (TF32 on a GPU; float32 in interpret mode);
# - B=1 (15 padded rows) and bfloat16 weights (products in bfloat16, accumulated in float32);
# - the GRU (the one cell whose d_rec is not d_px) with bfloat16 weights.
CASES = [
    *(pytest.param(kind, (7, 3, 20), True, 3, F32, "highest", id=f"{kind}-T7-B3-H20") for kind in ref.KINDS),
    pytest.param("elman_tanh", (6, 17, 8), True, None, F32, "highest", id="elman_tanh-T6-B17-H8-two-tiles"),
    pytest.param("elman_relu", (5, 16, 16), True, 2, F32, "fast", id="elman_relu-T5-B16-H16-fast"),
    pytest.param("lstm", (5, 1, 32), True, 2, BF16, "highest", id="lstm-T5-B1-H32-bf16"),
    pytest.param("gru", (5, 16, 8), False, None, BF16, "fast", id="gru-T5-B16-H8-bf16"),
]


@pytest.mark.parametrize("kind, shape, with_mask, truncate, w_dtype, precision", CASES)
def test_interpret_mode_equals_the_reference(kind, shape, with_mask, truncate, w_dtype, precision):
    inputs = _inputs(kind, *shape, with_mask=with_mask, w_dtype=w_dtype)

    @jax.jit  # one compilation of the four passes (interpret mode is compile-bound)
    def run(px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last):
        want = ref.forward(kind, px, w_hh, b_hh, h0, c0, mask, precision=precision)
        got = gpu.forward(kind, px, w_hh, b_hh, h0, c0, mask, precision=precision, interpret=True)
        # The backward from the reference's residuals, so that it is tested on its own.
        h_all, c_all, rec_all = want
        args = (kind, px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last)
        want_d = ref.backward(*args, truncate=truncate, precision=precision)
        got_d = gpu.backward(*args, truncate=truncate, precision=precision, interpret=True)
        return want, got, want_d, got_d

    want, got, want_d, got_d = run(*inputs)
    # bfloat16 weights: same products as the reference, but an ulp of difference in a
    # state can round it to another bfloat16 on the next step.
    tol = 1e-5 if w_dtype == F32 else 2e-3
    _assert_close(got, want, tol, ("h_all", "c_all", "rec_all"))
    _assert_close(got_d, want_d, tol, ("d_px", "d_rec", "d_h0", "d_c0"))


def test_zero_steps_need_no_kernel():
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs("lstm", 0, 2, 8, with_mask=False)
    h_all, c_all, rec_all = gpu.forward("lstm", px, w_hh, b_hh, h0, c0, None)
    assert h_all.shape == c_all.shape == (0, 2, 8) and rec_all.shape == (0, 2, 32)
    d_px, d_rec, d_h0, d_c0 = gpu.backward(
        "lstm", px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, None, d_h_all, d_c_last
    )
    assert d_px.shape == d_rec.shape == (0, 2, 32)
    np.testing.assert_array_equal(d_h0, jnp.zeros_like(h0))
    np.testing.assert_array_equal(d_c0, d_c_last)


# ----------------------------------------------------------------------------- lowering for CUDA


def _lower_for_cuda(capsys, kind, pass_, shape, w_dtype, precision, launch):
    """The StableHLO text of one pass lowered for CUDA, and the Triton IR Pallas printed."""
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs(kind, *shape, with_mask=True, w_dtype=w_dtype)
    opts = dict(precision=precision, debug=True, **launch)
    if pass_ == "forward":
        args = (px, w_hh, b_hh, h0, c0, mask)
        fn = lambda *a: gpu.forward(kind, *a, **opts)
    else:
        h_all, c_all, rec_all = ref.forward(kind, px, w_hh, b_hh, h0, c0, mask)
        args = (px, rec_all, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last)
        fn = lambda *a: gpu.backward(kind, *a, truncate=2, **opts)
    capsys.readouterr()
    traced = jax.jit(fn).trace(*args)
    hlo = traced.lower(lowering_platforms=("cuda",)).as_text()
    printed = capsys.readouterr().out
    assert "The Triton module for pallas_call" in printed, printed[-2000:]
    return traced.jaxpr.jaxpr.outvars, hlo, printed.split("The Triton module for pallas_call", 1)[1]


def _time_loop(triton_ir: str):
    """``(lines before the loop, lines of the loop)`` of the one ``scf.for`` in ``triton_ir``."""
    lines = triton_ir.splitlines()
    starts = [i for i, line in enumerate(lines) if "scf.for" in line]
    assert len(starts) == 1, f"expected one time loop in the kernel, found {len(starts)}"
    start = starts[0]
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(" " * indent + "}"))
    return lines[:start], lines[start : end + 1]


# kind, pass, (T, B, H), w_hh dtype, precision, launch settings: every kind and pass, both
# precisions, bfloat16 weights, the largest resident weights (LSTM, H=128, bfloat16: 128 KiB)
# and several batch tiles.
LOWERINGS = [
    ("elman_tanh", (6, 3, 20), F32, "highest", {}),
    ("elman_relu", (6, 40, 128), F32, "fast", {"num_warps": 8, "num_stages": 3}),
    ("lstm", (5, 64, 128), BF16, "highest", {"block_batch": 32}),
    ("gru", (5, 17, 8), F32, "fast", {}),
]


@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("kind, shape, w_dtype, precision, launch", LOWERINGS, ids=[c[0] for c in LOWERINGS])
def test_lowers_for_cuda_with_the_weights_resident(capsys, kind, pass_, shape, w_dtype, precision, launch):
    outvars, hlo, triton_ir = _lower_for_cuda(capsys, kind, pass_, shape, w_dtype, precision, launch)
    if pass_ == "backward":  # d_rec is d_px, not a second copy written by the kernel, but for the GRU
        assert (outvars[1] is outvars[0]) == (kind != "gru")

    # One Triton kernel launch for the whole sequence, no XLA loop around it.
    assert sum(hlo.count(target) for target in TRITON_TARGETS) == 1, hlo
    assert "stablehlo.while" not in hlo
    if "__gpu$xla.gpu.triton" in hlo:  # the launch settings are readable in this jaxlib's backend config
        _, batch, hidden = shape
        tiles = -(-batch // launch.get("block_batch", gpu.default_block_batch(batch)))
        warps = launch.get("num_warps", gpu.default_num_warps(kind, hidden, w_dtype))
        assert f"grid_x = {tiles} : i32" in hlo
        assert f"num_warps = {warps} : i32" in hlo
        assert f"num_stages = {launch.get('num_stages', 2)} : i32" in hlo

    # The time loop is inside the kernel; each gate's product is in it, and its weight
    # operand is loaded before it (resident), not re-read per step.
    before, loop = _time_loop(triton_ir)
    defined_before = set(re.findall(r"^\s*(%[\w.]+)(?::\d+)? =", "\n".join(before), re.M))
    dots = [re.search(r"tt\.dot (%[\w.#]+), (%[\w.#]+), (%[\w.#]+)(.*)", line) for line in loop if "tt.dot " in line]
    assert len(dots) == ref.NUM_GATES[kind], loop
    assert "tt.dot " not in "\n".join(before)
    for dot in dots:
        assert dot.group(2) in defined_before, f"weight operand {dot.group(2)} is not loaded before the loop"
        operand_type = "bf16" if w_dtype == BF16 else "f32"
        assert f"x{operand_type}> * tensor<" in dot.group(4), dot.group(0)
        # Triton's default input precision is IEEE; "fast" float32 products ask for TF32.
        assert ("inputPrecision = tf32" in dot.group(4)) == (precision == "fast" and w_dtype == F32), dot.group(0)


# ----------------------------------------------------------------------------- limits and errors


def test_unsupported_names_the_resident_weight_limit():
    assert gpu.unsupported("lstm", 16, 64, F32, "highest") is None
    assert gpu.unsupported("lstm", 1, 128, BF16, "fast") is None
    assert gpu.unsupported("elman_tanh", 4096, 128, F32, "highest") is None
    reason = gpu.unsupported("lstm", 16, 128, F32, "highest")
    assert "256 KiB" in reason and "128 KiB" in reason and "bfloat16" in reason, reason
    assert gpu.unsupported("gru", 16, 100, BF16, "highest") is None  # padded to 128: 3 x 128 x 128 x 2 B = 96 KiB
    assert "384 KiB" in gpu.unsupported("gru", 16, 129, BF16, "highest")  # padded to 256
    assert "dtype float64" in gpu.unsupported("elman_relu", 16, 32, jnp.float64, "highest")
    assert "kind 'rnn'" in gpu.unsupported("rnn", 16, 32, F32, "highest")
    assert "precision 'bf16'" in gpu.unsupported("lstm", 16, 32, F32, "bf16")


def test_default_launch_settings():
    assert gpu.default_block_batch(1) == gpu.default_block_batch(16 * 132) == 16
    assert gpu.default_block_batch(16 * 132 + 1) == 32
    assert gpu.default_block_batch(10**6) == gpu.MAX_BLOCK_BATCH
    assert gpu.default_num_warps("lstm", 32, F32) == 4  # 16 KiB of weights
    assert gpu.default_num_warps("lstm", 64, F32) == 8  # 64 KiB


def _replace(args, **changes):
    return {**args, **changes}


def _forward_args():
    px, w_hh, b_hh, h0, c0, mask, _, _ = _inputs("lstm", 5, 3, 20, with_mask=True)
    return dict(kind="lstm", px=px, w_hh=w_hh, b_hh=b_hh, h0=h0, c0=c0, mask=mask)


FORWARD_ERRORS = [
    ({"kind": "rnn"}, ValueError, re.escape(f"kind must be one of {ref.KINDS}, got 'rnn'")),
    ({"px": jnp.zeros((5, 3, 81), F32)}, ValueError, r"px has shape \(5, 3, 81\), expected \(5, 3, 80\)"),
    ({"px": jnp.zeros((3, 80), F32)}, ValueError, r"px has shape \(3, 80\), expected \(T, B, 80\)"),
    ({"w_hh": jnp.zeros((60, 20), F32)}, ValueError, r"w_hh has shape \(60, 20\), expected \(4 \* H, H\)"),
    ({"w_hh": jnp.zeros((80, 20), jnp.float64)}, TypeError, "w_hh has dtype float64, expected float32 or bfloat16"),
    ({"b_hh": jnp.zeros((60,), F32)}, ValueError, r"b_hh has shape \(60,\), expected \(80,\)"),
    ({"h0": jnp.zeros((4, 20), F32)}, ValueError, r"h0 has shape \(4, 20\), expected \(3, 20\)"),
    ({"h0": jnp.zeros((3, 20), jnp.float64)}, TypeError, "h0 has dtype float64, expected float32"),
    ({"c0": None}, ValueError, "c0 must be an array for kind='lstm', got None"),
    ({"mask": jnp.ones((3, 5), bool)}, ValueError, r"mask has shape \(3, 5\), expected \(5, 3\)"),
    ({"mask": jnp.ones((5, 3), jnp.int32)}, TypeError, "mask has dtype int32, expected bool"),
]


@pytest.mark.parametrize("changes, error, message", FORWARD_ERRORS, ids=[str(list(c)[0]) for c, _, _ in FORWARD_ERRORS])
def test_forward_rejects_bad_arguments(changes, error, message):
    args = _replace(_forward_args(), **changes)
    with pytest.raises(error, match=message):
        gpu.forward(**args, interpret=True)


def test_forward_rejects_bad_settings():
    args = _forward_args()
    with pytest.raises(ValueError, match="precision must be one of .*, got 'bf16'"):
        gpu.forward(**args, precision="bf16", interpret=True)
    with pytest.raises(ValueError, match=r"block_batch must be a power of 2 >= 16 \(a tl.dot tile\), got 8"):
        gpu.forward(**args, block_batch=8, interpret=True)
    with pytest.raises(ValueError, match="num_warps must be a power of 2, got 3"):
        gpu.forward(**args, num_warps=3, interpret=True)
    gru = _inputs("gru", 5, 3, 20, with_mask=False)
    with pytest.raises(ValueError, match="c0 must be None for kind='gru', got an array"):
        gpu.forward("gru", *gru[:4], jnp.zeros((3, 20), F32), None, interpret=True)


def test_backward_rejects_bad_arguments():
    px, w_hh, b_hh, h0, c0, mask, d_h_all, d_c_last = _inputs("lstm", 5, 3, 20, with_mask=True)
    h_all, c_all, rec_all = ref.forward("lstm", px, w_hh, b_hh, h0, c0, mask)
    args = dict(
        kind="lstm",
        px=px,
        rec_all=rec_all,
        w_hh=w_hh,
        b_hh=b_hh,
        h0=h0,
        c0=c0,
        h_all=h_all,
        c_all=c_all,
        mask=mask,
        d_h_all=d_h_all,
        d_c_last=d_c_last,
    )
    cases = [
        ({"truncate": 0}, "truncate must be a positive int or None, got 0"),
        ({"rec_all": rec_all[:, :, :40]}, r"rec_all has shape \(5, 3, 40\), expected \(5, 3, 80\)"),
        ({"h_all": h_all[:4]}, r"h_all has shape \(4, 3, 20\), expected \(5, 3, 20\)"),
        ({"d_h_all": d_h_all[:, :2]}, r"d_h_all has shape \(5, 2, 20\), expected \(5, 3, 20\)"),
        ({"c_all": None}, "c_all must be an array for kind='lstm', got None"),
        ({"d_c_last": d_c_last[:, :5]}, r"d_c_last has shape \(3, 5\), expected \(3, 20\)"),
    ]
    for changes, message in cases:
        kwargs = _replace(args, **changes)
        truncate = kwargs.pop("truncate", None)
        with pytest.raises(ValueError, match=message):
            gpu.backward(**kwargs, truncate=truncate, interpret=True)


def test_import_without_pallas_never_raises():
    """A jax without Pallas Triton: the module imports; the kernels say why they cannot run."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["jax.experimental.pallas"] = None  # as if this jax had no Pallas
        from jaxrnn._kernels import pallas_gpu as gpu
        assert not gpu.AVAILABLE
        assert "no usable Pallas Triton backend" in gpu.WHY_UNAVAILABLE, gpu.WHY_UNAVAILABLE
        assert gpu.unsupported("lstm", 16, 32, "float32", "highest") == gpu.WHY_UNAVAILABLE
        try:
            gpu.forward("lstm", None, None, None, None, None, None)
        except RuntimeError as err:
            assert "need Pallas with its Triton backend" in str(err), err
        else:
            raise AssertionError("forward ran without Pallas")
        """
    )
    root = pathlib.Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=root)
