"""The benchmark scripts run (smoke tests; no test asserts a timing)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_core_choices_quick_writes_every_row(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.core_choices", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "core_choices.json").read_text())
    assert data["backend"] == "cpu" and data["versions"]["jax"]
    variants = {r["variant"] for r in data["rows"] if r["study"] == "residuals"}
    assert variants == {"bptt/states", "bptt/gates", "autodiff"}
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in data["rows"])
