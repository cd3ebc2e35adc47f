"""The examples run as a user runs them (their ``__main__``, with command-line options) and
do what they say. They run one after another in one fresh interpreter, so JAX starts once;
each ``_check_*`` below states what its example must show."""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each example's script and options: short runs whose printed results are still meaningful.
RUNS = {
    "custom_cell": ["custom_cell.py", "--steps", "300"],
    "adding": ["adding.py", "--steps", "100", "--length", "10", "--out", "{out}"],
    "copy_task": ["copy_task.py", "--steps", "150", "--length", "5", "--delay", "5"],
    "sunspots": ["sunspots.py", "--steps", "25", "--out", "{out}"],
    "digits": ["digits.py", "--steps", "60"],
    "charlm": ["charlm.py", "--steps", "3", "--sample-length", "20"],
    "own_data": ["own_data.py", "--steps", "150"],
}

# Runs each example as `python examples/NAME.py ARGS` would (runpy, __main__, sys.argv), printing
# {name: its stdout} as JSON; an example that fails stops the run with its traceback.
_DRIVER = """
import contextlib, io, json, runpy, sys
runs, outputs = json.loads(sys.argv[1]), {}
for name, (script, *args) in runs.items():
    sys.argv = [script, *args]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        runpy.run_path(script, run_name="__main__")
    outputs[name] = out.getvalue()
print(json.dumps(outputs))
"""


def run_examples(tmp_path) -> dict:
    runs = {
        name: [str(ROOT / "examples" / script), *(a.format(out=tmp_path) for a in args)]
        for name, (script, *args) in RUNS.items()
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_examples(tmp_path):
    outputs = run_examples(tmp_path)
    assert set(outputs) == set(RUNS)
    _check_custom_cell_checks_gradients_and_learns(outputs["custom_cell"])
    _check_adding_lstm_beats_the_mean_baseline(outputs["adding"], tmp_path)
    _check_copy_task_recalls_above_chance(outputs["copy_task"])
    _check_sunspots_forecasts_and_plots(outputs["sunspots"], tmp_path)
    _check_digits_reports_accuracy_f1_and_confusion(outputs["digits"])
    _check_charlm_reports_bits_per_character_and_samples(outputs["charlm"])
    _check_own_data_forecasts_a_csv_series(outputs["own_data"])


def _check_custom_cell_checks_gradients_and_learns(out):
    error = float(re.search(r"max relative error (\S+)", out).group(1))
    assert error < 1e-5
    losses = [float(v) for v in re.findall(r"cross-entropy (\S+)", out)]
    assert losses[0] > 0.6 and losses[-1] < 0.3  # from chance (ln 2) to remembering the sign


def numbers(pattern, out):
    """Every float that ``pattern``'s first group matches in ``out``; at least one, all finite."""
    values = [float(v) for v in re.findall(pattern, out)]
    assert values, f"no match for {pattern!r} in:\n{out}"
    assert all(math.isfinite(v) for v in values), values
    return values


def _check_adding_lstm_beats_the_mean_baseline(out, tmp_path):
    lstm, elman = numbers(r"test MSE (\S+)", out)
    (baseline,) = set(numbers(r"baseline (\S+),", out))
    assert abs(baseline - 1 / 6) < 1e-3
    assert lstm < baseline / 4  # at T=10 even 100 steps learn the sum; Elman's result is only printed
    assert elman >= 0
    assert (tmp_path / "adding.png").stat().st_size > 0


def _check_copy_task_recalls_above_chance(out):
    (accuracy,) = numbers(r"test recall accuracy (\S+)", out)
    (chance,) = numbers(r"\(chance (\S+);", out)
    assert chance == 0.125 and accuracy > 2 * chance
    (loss,) = numbers(r"test recall cross-entropy (\S+)", out)
    assert loss < math.log(8)


def _check_sunspots_forecasts_and_plots(out, tmp_path):
    (rmse,) = numbers(r"test RMSE (\S+)", out)
    (persistence,) = numbers(r"persistence (\S+);", out)
    assert 0 < rmse < 200 and abs(persistence - 29.1) < 0.1  # 25 steps: only finite and printed
    assert (tmp_path / "sunspots.png").stat().st_size > 0


def _check_digits_reports_accuracy_f1_and_confusion(out):
    (accuracy,) = numbers(r"test accuracy (\S+)", out)
    (f1,) = numbers(r"F1 (\S+)", out)
    assert accuracy > 0.3 and 0 < f1 <= 1  # chance is 0.1
    rows = re.findall(r"^ +(\d) ((?: +\d+){10})$", out, re.MULTILINE)
    assert [int(digit) for digit, _ in rows] == list(range(10))
    assert sum(int(n) for _, counts in rows for n in counts.split()) == 360  # the test images


def _check_charlm_reports_bits_per_character_and_samples(out):
    (bits,) = numbers(r"held-out (\S+) bits per character", out)
    (uniform,) = numbers(r"characters: (\S+);", out)
    assert 0 < bits < 2 * uniform  # 3 steps: only finite and printed
    sample = out.split("sample (temperature 0.7):\n", 1)[1]
    assert sample.startswith("The ") and len(sample) >= len("The ") + 20


def _check_own_data_forecasts_a_csv_series(out):
    rmse, persistence = (float(v) for v in re.search(r"test RMSE (\S+)\s+\(persistence (\S+)\)", out).groups())
    assert math.isfinite(rmse) and rmse < persistence  # the cycles are learnable; persistence ignores them
