"""The examples run as a user runs them, in a fresh interpreter, and do what they say."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_example(name, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_custom_cell_example_checks_gradients_and_learns():
    out = run_example("custom_cell.py", "--steps", "300")
    error = float(re.search(r"max relative error (\S+)", out).group(1))
    assert error < 1e-5
    losses = [float(v) for v in re.findall(r"cross-entropy (\S+)", out)]
    assert losses[0] > 0.6 and losses[-1] < 0.3  # from chance (ln 2) to remembering the sign
