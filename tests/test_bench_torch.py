"""The PyTorch benchmark peer (jaxrnn._bench.torch_peer and its worker process
jaxrnn._bench.torch_worker): results, errors, and a request checked before the worker starts."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._app.cells import CELLS as ALL_CELLS
from jaxrnn._bench.torch_peer import run_torch

torch = pytest.importorskip("torch")

B, T, I, H = 2, 5, 3, 4
GATES = {"lstm": 4, "gru": 3, "elman_tanh": 1, "elman_relu": 1}  # the cells torch has
CELLS = {name: ALL_CELLS[name] for name in GATES}
FIELDS = ("w_ih", "w_hh", "b_ih", "b_hh")


def make_arrays(cell, prefix, seed=0, batch=B, dtype=np.float32):
    """The worker's input arrays for one case: weights (PyTorch layout) and two inputs."""
    rng = np.random.default_rng(seed)
    gh = GATES[cell] * H
    shapes = {
        "w_ih": (gh, I),
        "w_hh": (gh, H),
        "b_ih": (gh,),
        "b_hh": (gh,),
        "xs0": (batch, T, I),
        "xs1": (batch, T, I),
    }
    return {f"{prefix}/{name}": rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def make_case(cell, case_id=None, prefix=None):
    return dict(id=case_id or cell, cell=cell, batch=B, steps=T, hidden=H, input=I, weights=prefix or cell)


def run(cases, arrays, **options):
    return run_torch(
        cases, arrays, **{"device": "cpu", "precision": "highest", "repeats": 2, "timeout": 120, **options}
    )


@pytest.fixture(scope="module")
def measured():
    """One worker run with a case per cell: the input arrays and the result."""
    arrays = {}
    for seed, cell in enumerate(CELLS):
        arrays.update(make_arrays(cell, cell, seed))
    return arrays, run([make_case(cell) for cell in CELLS], arrays, threads=1)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_timings_are_positive_and_ordered(measured, cell):
    case = measured[1]["cases"][cell]
    assert (case["cell"], case["batch"], case["steps"], case["hidden"], case["input"]) == (cell, B, T, H, I)
    assert case["repeats"] == 2 and case["inputs"] == 2
    for phase in ("forward", "fwd_bwd"):
        t = case[phase]
        assert len(t["times_ms"]) == 2
        assert t["first_call_ms"] > 0 and 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_memory_is_measured_per_case(measured, cell):
    memory = measured[1]["cases"][cell]["memory"]
    assert memory["method"] == ("vmhwm" if sys.platform.startswith("linux") else "ru_maxrss")
    assert 0 < memory["before_bytes"] <= memory["peak_bytes"]
    assert memory["growth_bytes"] == memory["peak_bytes"] - memory["before_bytes"]


def test_worker_records_its_setup_and_never_imports_jax(measured):
    worker = measured[1]["worker"]
    assert measured[1]["available"] is True
    assert worker["torch"] == torch.__version__ and worker["device"] == "cpu" and worker["device_name"]
    assert worker["threads"] == 1 and worker["precision"] == "highest" and worker["dtype"] == "float32"
    assert worker["flags"]["cuda.matmul.allow_tf32"] is False and worker["flags"]["cudnn.allow_tf32"] is False
    assert worker["jax_imported"] is False


def assert_close(actual, expected):
    """Equal to 1e-5 relative, entries near zero judged against the array's scale."""
    expected = np.asarray(expected)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(expected))))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_loss_and_gradients_equal_jaxrnn_autodiff(measured, cell):
    arrays, result = measured
    params = jr.CellParams(*(jnp.asarray(arrays[f"{cell}/{field}"]) for field in FIELDS))
    xs = jnp.asarray(arrays[f"{cell}/xs0"])

    def loss(params, xs):
        ys, _ = jr.rnn(CELLS[cell](H), params, xs, grad="autodiff")
        return jnp.sum(ys * ys)

    value, (d_params, d_xs) = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
    case = result["cases"][cell]
    assert_close(case["loss"], value)
    for field in FIELDS:
        assert_close(case["grads"][field], getattr(d_params, field))
    assert_close(case["grads"]["xs"], d_xs)


def fake_torch(folder, monkeypatch, body):
    """Put a module ``torch`` whose import runs ``body`` first on the worker's path."""
    (folder / "torch.py").write_text(body)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))


def test_worker_without_torch_reports_unavailable(tmp_path, monkeypatch):
    fake_torch(tmp_path, monkeypatch, "raise ImportError('No module named torch')\n")
    result = run([make_case("gru")], make_arrays("gru", "gru"))
    assert result["available"] is False
    assert "PyTorch cannot be imported" in result["reason"] and "jaxrnn[torch]" in result["reason"]


def test_failing_worker_raises_with_its_stderr(tmp_path, monkeypatch):
    fake_torch(tmp_path, monkeypatch, "raise RuntimeError('libtorch_cpu.so is corrupt')\n")
    with pytest.raises(
        RuntimeError, match=r"(?s)worker failed with exit status 1; stderr tail:.*libtorch_cpu.so is corrupt"
    ):
        run([make_case("lstm")], make_arrays("lstm", "lstm"))


def test_worker_past_its_timeout_raises(tmp_path, monkeypatch):
    fake_torch(
        tmp_path, monkeypatch, "import sys, time\nprint('loading torch', file=sys.stderr, flush=True)\ntime.sleep(60)\n"
    )
    with pytest.raises(RuntimeError, match=r"(?s)ran past timeout=1 s; stderr tail:.*loading torch"):
        run([make_case("lstm")], make_arrays("lstm", "lstm"), timeout=1)


def _without(arrays, key):
    return {k: v for k, v in arrays.items() if k != key}


@pytest.mark.parametrize(
    "cases, arrays, options, message",
    [
        (
            [make_case("lstm")],
            make_arrays("lstm", "lstm"),
            {"precision": "tf32"},
            "precision='tf32' needs device='cuda'",
        ),
        ([make_case("lstm")], make_arrays("lstm", "lstm"), {"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
        ([make_case("lstm")], make_arrays("lstm", "lstm"), {"precision": "half"}, "precision must be one of"),
        ([make_case("lstm")], make_arrays("lstm", "lstm"), {"repeats": 0}, "repeats must be a positive int"),
        ([make_case("lstm")], make_arrays("lstm", "lstm"), {"threads": 0}, "threads must be a positive int or None"),
        ([], {}, {}, "cases must be a non-empty list"),
        ([make_case("lstm"), make_case("gru", "lstm", "lstm")], make_arrays("lstm", "lstm"), {}, "unique"),
        ([make_case("lstm") | {"cell": "mgu"}], make_arrays("lstm", "lstm"), {}, "cell must be one of"),
        ([make_case("lstm") | {"cell": "layer_norm_lstm"}], make_arrays("lstm", "lstm"), {}, "cell must be one of"),
        ([make_case("lstm") | {"steps": 0}], make_arrays("lstm", "lstm"), {}, "'steps' must be a positive int"),
        ([make_case("lstm")], _without(make_arrays("lstm", "lstm"), "lstm/xs0"), {}, "needs the array 'lstm/xs0'"),
        ([make_case("gru")], make_arrays("lstm", "gru"), {}, r"'gru/w_ih' must be float32 of shape \(12, 3\)"),
        (
            [make_case("lstm")],
            make_arrays("lstm", "lstm", batch=3),
            {},
            r"'lstm/xs0' must be float32 of shape \(2, 5, 3\)",
        ),
        ([make_case("lstm")], make_arrays("lstm", "lstm", dtype=np.float64), {}, "must be float32 .* got float64"),
    ],
)
def test_invalid_requests_raise_before_the_worker_starts(cases, arrays, options, message):
    with pytest.raises(ValueError, match=message):
        run(cases, arrays, **options)
