"""The benchmark suite runs and reports honestly (smoke tests; no test asserts a timing)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import jaxrnn as jr
from jaxrnn._app import cells
from jaxrnn._app.cli import main
from jaxrnn._bench import parallel
from jaxrnn._bench import run as _bench

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_in_one_process(calls, cwd):
    """Run ``calls`` (``(module, argv)``: ``module.main(argv)``) in one fresh interpreter, so JAX starts once.

    Returns its stdout; no call may raise or return a non-zero exit code.
    """
    script = (
        "import importlib\nfor module, argv in %r:\n    code = importlib.import_module(module).main(argv)\n"
        "    assert not isinstance(code, int) or code == 0, (module, argv, code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script % (calls,)], capture_output=True, text=True, timeout=900, env=env, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_command_checks_every_implementation_and_writes_reports(tmp_path):
    """``jaxrnn bench`` in float32 and in bfloat16, in one subprocess; the checks of each follow."""
    stdout = _run_in_one_process(
        [
            # The quick table's shape as the one sweep point too: every implementation of every default
            # cell, checked and reported (the shape is big enough for torch's RSS growth to show).
            (
                "jaxrnn._app.cli",
                ["bench", "--quick", "--sweep", "4x32:128", "--repeats", "1", "--out", str(tmp_path / "bench")],
            ),
            (
                "jaxrnn._app.cli",
                [
                    "bench",
                    "--precision",
                    "bf16",
                    "--cells",
                    "gru",
                    "--impls",
                    "jaxrnn-bptt,flax-GRUCell,torch",
                    "--shapes",
                    "2x16x8",
                    "--sweep",
                    "2x8:16",
                    "--repeats",
                    "2",
                    "--out",
                    str(tmp_path / "bf16"),
                ],
            ),
        ],
        tmp_path,
    )
    _check_every_implementation_is_checked_and_reported(tmp_path / "bench", stdout)
    _check_bfloat16_rows_against_a_float32_reference(tmp_path / "bf16")


def _check_every_implementation_is_checked_and_reported(out, stdout):
    data = json.loads((out / "bench.json").read_text())
    impls = {r["impl"] for r in data["rows"]}
    assert {"jaxrnn-bptt", "jaxrnn-autodiff", "flax-OptimizedLSTMCell", "flax-GRUCell", "flax-SimpleCell"} <= impls
    try:
        import torch  # noqa: F401

        assert "torch" in impls
    except ImportError:
        assert data["torch"]["available"] is False
    for row in data["rows"]:
        assert row["status"] == "ok", row  # same weights, same numbers: every peer agrees with the reference
        assert row["rel_error"] <= data["tolerance"]
        assert row["fwdbwd"]["min_ms"] <= row["fwdbwd"]["median_ms"] <= row["fwdbwd"]["max_ms"]
        assert row["peak_bytes"] > 0
    assert data["versions"]["jax"] and data["device"]["platform"] == "cpu"
    table = (out / "bench.md").read_text()
    assert "best jaxrnn / best peer" in table and "Sequence-length sweep" in table
    assert sorted(p.name for p in out.glob("*.png")) == ["sweep_elman_tanh.png", "sweep_gru.png", "sweep_lstm.png"]
    assert "| lstm | 4×128×32 |" in stdout


def _check_bfloat16_rows_against_a_float32_reference(out):
    data = json.loads((out / "bench.json").read_text())
    assert data["precision"].startswith("bfloat16") and data["tolerance"] == _bench.TOLERANCE["bf16"]
    rows = {r["impl"]: r for r in data["rows"]}
    assert rows["jaxrnn-autodiff"]["rel_error"] == 0.0  # the float32 reference itself
    # jaxrnn carries bfloat16 inputs in float32, so it stays much closer to the reference.
    assert 0.0 < rows["jaxrnn-bptt"]["rel_error"] < 1e-2
    assert all(r["status"] == "ok" for r in data["rows"])


def _mingru_with_a_wrong_parallel_form(hidden_size):
    """A minGRU whose declared recurrence halves ``a``: its step (the sequential solver) is right, the parallel wrong."""
    cell = jr.mingru(hidden_size)
    recurrence = cell.recurrence

    def coefficients(params, xs):
        a, b = recurrence.coefficients(params, xs)
        return 0.5 * a, b

    return cell._replace(recurrence=recurrence._replace(coefficients=coefficients))


def test_parallel_suite_checks_each_row_before_timing_it(tmp_path, monkeypatch, capsys):
    """``jaxrnn bench --suite parallel``, tiny: a wrong parallel form is reported and left untimed; a Newton
    solver's row is checked, timed and reports its iterations; one over the Jacobian cap is skipped, saying why.

    (A correct linear cell's row: tests/test_notebook.py runs the suite on minlstm.)
    """
    monkeypatch.setitem(cells.CELLS, "mingru", _mingru_with_a_wrong_parallel_form)
    monkeypatch.setattr(parallel, "JACOBIAN_CAP_BYTES", 4096)  # DEER's [16, 2, 8, 8] float32 take 8 KiB
    out = tmp_path / "parallel"
    argv = ["--cells", "mingru,gru", "--lengths", "16", "--batches", "2", "--hidden", "8", "--repeats", "1"]
    assert main(["bench", "--suite", "parallel", *argv, "--solvers", "elk@1x16"]) == 2
    assert "--solvers elk@1x16: 1x16 not among the shapes of --batches 2 and --lengths 16" in capsys.readouterr().err
    solvers = ["--solvers", "parallel,quasi-deer,deer@16"]
    assert main(["bench", "--suite", "parallel", *argv, *solvers, "--out", str(out)]) == 0
    data = json.loads((out / "parallel.json").read_text())
    assert data["suite"] == "parallel" and (data["lengths"], data["batches"], data["hidden"]) == ([16], [2], 8)
    assert data["solvers"] == ["parallel", "quasi-deer", "deer@16"] and data["jacobian_cap_bytes"] == 4096
    wrong, gru, quasi, deer = data["rows"]
    assert [r["impl"] for r in data["rows"]] == [
        "mingru (parallel)",
        "gru (sequential)",
        "gru (quasi-deer)",
        "gru (deer)",
    ]
    assert wrong["status"] == "wrong" and wrong["rel_error"] > 0.1 and "fwdbwd" not in wrong
    for row in (gru, quasi):
        assert row["status"] == "ok" and row["rel_error"] < 1e-5 and row["check_steps"] == 16
        assert row["fwdbwd"]["min_ms"] <= row["fwdbwd"]["median_ms"] <= row["fwdbwd"]["max_ms"]
        assert row["peak_bytes"] > 0 and (row["batch"], row["steps"], row["hidden"]) == (2, 16, 8)
    assert gru["speedup_vs_gru"] == gru["speedup_vs_sequential"] == 1.0 and "speedup_vs_gru" not in wrong
    assert "iterations" not in gru and 1 <= quasi["iterations"] <= 16  # exact after at most T iterations
    assert quasi["converged"] is True and quasi["residual"] <= 1e-5
    assert quasi["speedup_vs_sequential"] == quasi["speedup_vs_gru"] > 0
    assert deer["status"] == "skipped" and "fwdbwd" not in deer and "rel_error" not in deer
    assert (
        deer["reason"]
        == "its full Jacobians, T*B*N^2 = 16*2*8^2 float32 = 7.63e-06 GiB, exceed the cap of 3.81e-06 GiB"
    )
    table = (out / "parallel.md").read_text()
    assert table.count("| 2 × 16 | **wrong** (err") == 2  # in the time table and in the speedup table
    assert f"MiB | skipped | {quasi['fwdbwd']['median_ms']:.1f} ms, " in table  # by cell, then solver
    assert f"MiB, {quasi['iterations']} it. |" in table
    assert "Skipped: gru (deer) 2×16: its full Jacobians" in table
    assert sorted(p.name for p in out.glob("*.png")) == ["newton_B2_gru.png", "parallel_B2.png"]
    assert table in capsys.readouterr().out


def test_quick_plan_sweeps_three_lengths():
    plan = _bench.default_plan("cpu", quick=True)
    assert plan["shapes"] == (_bench.Shape(4, 128, 32),) and [s.steps for s in plan["sweep"]] == [64, 128, 256]


def test_benchmark_scripts_run_quick(tmp_path):
    """benchmarks/core_choices, remat_memory, parallel_choices, pallas_tune and cpu_kernel quick, in one subprocess."""
    _run_in_one_process(
        [
            ("benchmarks.core_choices", ["--quick", "--out", str(tmp_path)]),
            ("benchmarks.remat_memory", ["--quick", "--out", str(tmp_path)]),
            ("benchmarks.parallel_choices", ["--quick", "--out", str(tmp_path)]),
            (
                "benchmarks.pallas_tune",
                ["--quick", "--interpret", "--repeats", "1", "--cells", "gru", "--out", str(tmp_path)],
            ),
            ("benchmarks.cpu_kernel", ["--quick", "--out", str(tmp_path)]),
        ],
        ROOT,
    )
    _check_core_choices_writes_every_row(tmp_path)
    _check_remat_memory_shows_the_memory_shrink(tmp_path)
    _check_parallel_choices_times_every_variant(tmp_path)
    _check_pallas_tune_runs_the_gpu_kernels_in_interpret_mode(tmp_path)
    _check_cpu_kernel_times_every_part(tmp_path)


def _check_cpu_kernel_times_every_part(out):
    rows = json.loads((out / "cpu_kernel.json").read_text())["rows"]
    assert [r["cell"] for r in rows] == ["lstm", "gru"]
    for r in rows:
        assert set(r["sequential"]) == {"xla", "cpu-1", "cpu-2"} and set(r["whole"]) == {"xla", "cpu"}
        for part in (r["sequential"], r["whole"]):
            assert all(v["ms"] > 0 and v["rel_error"] < 1e-5 for v in part.values())


def _check_core_choices_writes_every_row(out):
    data = json.loads((out / "core_choices.json").read_text())
    variants = {r["variant"] for r in data["rows"] if r["study"] == "residuals"}
    assert variants == {"bptt/states", "bptt/gates", "autodiff"}
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in data["rows"])


def _check_parallel_choices_times_every_variant(out):
    rows = json.loads((out / "parallel_choices.json").read_text())["rows"]
    assert {(r["study"], r.get("dtype"), r.get("cell")) for r in rows} == {
        ("order", "real", None),
        ("order", "complex", None),
        ("fused_sum", None, None),
        ("solvers", None, "mingru"),
        ("solvers", None, "minlstm"),
        ("solvers", None, "lru"),
    }
    times = [v for r in rows for k, v in r.items() if k.endswith("_ms")]
    assert len(times) == 2 * len(rows) and min(times) > 0


def _check_remat_memory_shows_the_memory_shrink(out):
    data = json.loads((out / "remat_memory.json").read_text())
    by_steps = {}
    for row in data["rows"]:
        by_steps.setdefault(row["steps"], {})[row["remat"]] = row["temp_bytes"]
    for steps, temps in by_steps.items():
        plain = temps[None]
        assert all(t < plain for k, t in temps.items() if k is not None), (steps, temps)


def _check_pallas_tune_runs_the_gpu_kernels_in_interpret_mode(out):
    data = json.loads((out / "pallas_tune.json").read_text())
    kernel_rows = [r for r in data["rows"] if r["impl"] == "pallas-gpu"]
    assert kernel_rows and all(r["status"] == "ok" and r["rel_error_vs_xla"] < 1e-5 for r in kernel_rows)


def _row(impl, ms, status="ok", cell="lstm", steps=8):
    return {
        "cell": cell,
        "batch": 2,
        "steps": steps,
        "hidden": 4,
        "impl": impl,
        "status": status,
        "rel_error": 0.5 if status == "wrong" else 1e-7,
        "fwdbwd": {"median_ms": ms},
        "fwd": {"median_ms": ms / 3},
    }


def test_ratio_is_against_the_fastest_correct_peer():
    rows = [
        _row("jaxrnn-bptt", 10.0),
        _row("jaxrnn-autodiff", 5.0),
        _row("flax-LSTMCell", 40.0),
        _row("torch", 20.0),
        _row("jax-cudnn", 1.0, status="wrong"),
    ]
    assert _bench.best_peer(rows)["impl"] == "torch"  # not the wrong one, not jaxrnn's own reference
    result = {
        "rows": rows,
        "shapes": ["2x8x4"],
        "sweep": [],
        "date": "d",
        "repeats": 3,
        "precision": "p",
        "device": {"kind": "k", "platform": "cpu"},
        "versions": {"jax": "j", "flax": "f"},
        "torch": None,
    }
    table = _bench.markdown(result)
    assert "| 0.50 (jaxrnn-bptt vs torch) |" in table
    rows.append(_row("jaxrnn-pallas", 4.0))
    assert _bench.best_ours(rows)["impl"] == "jaxrnn-pallas"
    assert "| 0.20 (jaxrnn-pallas vs torch) |" in _bench.markdown({**result, "rows": rows})
    assert "1.0 (0.3) **wrong** (err 5.0e-01)" in table


def test_relative_error_is_per_array_and_relative():
    want = {"a": [1.0, -2.0], "b": [1e-6, 0.0]}
    assert _bench.relative_error({"a": [1.0, -2.0], "b": [1e-6, 0.0]}, want) == 0.0
    assert _bench.relative_error({"a": [1.0, -2.2], "b": [1e-6, 0.0]}, want) == pytest.approx(0.1)
    assert _bench.relative_error({"a": [1.0, -2.0], "b": [2e-6, 0.0]}, want) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--shapes", "16x1024"],
            "--shapes: expected BATCHxSTEPSxHIDDEN with positive integers, e.g. 16x1024x256, got '16x1024'",
        ),
        (["--shapes", "16x0x8"], "got '16x0x8'"),
        (["--sweep", "16x128"], "--sweep: expected BATCHxHIDDEN:T1,T2,... e.g. 16x128:256,512,1024, got '16x128'"),
        (
            ["--cells", "lstm,transformer"],
            "unknown cell 'transformer' in 'lstm,transformer'; choose from lstm, gru, "
            "elman_tanh, elman_relu, layer_norm_lstm",
        ),
        (["--cells", "elman"], "unknown cell 'elman' in 'elman'; choose from lstm, gru, elman_tanh"),
        (["--impls", "keras"], "got 'keras'"),
        (["--precision", "tf16"], "invalid choice: 'tf16'"),
        (["--repeats", "0"], "--repeats must be at least 1, got 0"),
        (
            ["--suite", "parallel", "--lengths", "1024,0"],
            "--lengths: expected positive integers separated by commas, e.g. 1024,4096, got '1024,0'",
        ),
        (["--suite", "parallel", "--solvers", "fast"], "--solvers: expected a comma-separated list of parallel"),
        (["--suite", "parallel", "--hidden", "0"], "--hidden must be at least 1, got 0"),
        (
            ["--suite", "parallel", "--shapes", "2x8x8"],
            "--shapes do not apply to --suite parallel; it takes --batches, --hidden, --lengths, --solvers",
        ),
        (["--batches", "1"], "--batches do not apply to --suite peers"),
        (["--devices", "2", "--suite", "parallel"], "--devices measures scaling over devices"),
    ],
)
def test_bench_command_rejects_bad_options(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_command_names_a_missing_backend(capsys):
    assert main(["bench", "--backend", "tpu", "--quick"]) == 2
    assert "--backend tpu: no such device here" in capsys.readouterr().err


def test_sweep_rows_by_length_and_their_plots(tmp_path, capsys, monkeypatch):
    rows = [
        _row(impl, ms, steps=t) | {"tokens_per_s": 2 * t / ms, "peak_bytes": 2**20 * t}
        for t in (16, 8)
        for impl, ms in (("jaxrnn-bptt", t / 2), ("torch", float(t)))
    ]
    result = {
        "rows": rows,
        "shapes": [],
        "sweep": ["2x16x4", "2x8x4"],
        "date": "d",
        "repeats": 1,
        "precision": "p",
        "device": {"kind": "k", "platform": "cpu"},
        "versions": {"jax": "j", "flax": "f"},
        "torch": None,
    }
    table = _bench.markdown(result)
    assert table.index("| lstm | 2×8×4 |") < table.index("| lstm | 2×16×4 |")  # the sweep by sequence length
    assert [p.name for p in _bench.plot(result, tmp_path)] == ["sweep_lstm.png"]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # a bare device image: the table, no plots
    assert _bench.plot(result, tmp_path / "bare") == []
    assert "matplotlib is not installed, so no plots (pip install 'jaxrnn[tasks]')" in capsys.readouterr().err
