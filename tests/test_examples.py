"""The examples run as a user runs them, in a fresh interpreter, and do what they say."""

import math
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


def numbers(pattern, out):
    """Every float that ``pattern``'s first group matches in ``out``; at least one, all finite."""
    values = [float(v) for v in re.findall(pattern, out)]
    assert values, f"no match for {pattern!r} in:\n{out}"
    assert all(math.isfinite(v) for v in values), values
    return values


def test_adding_example_lstm_beats_the_mean_baseline(tmp_path):
    out = run_example("adding.py", "--steps", "100", "--length", "10", "--out", str(tmp_path))
    lstm, elman = numbers(r"test MSE (\S+)", out)
    (baseline,) = set(numbers(r"baseline (\S+),", out))
    assert abs(baseline - 1 / 6) < 1e-3
    assert lstm < baseline / 4  # at T=10 even 100 steps learn the sum; Elman's result is only printed
    assert elman >= 0
    assert (tmp_path / "adding.png").stat().st_size > 0


def test_copy_task_example_recalls_above_chance():
    out = run_example("copy_task.py", "--steps", "150", "--length", "5", "--delay", "5")
    (accuracy,) = numbers(r"test recall accuracy (\S+)", out)
    (chance,) = numbers(r"\(chance (\S+);", out)
    assert chance == 0.125 and accuracy > 2 * chance
    (loss,) = numbers(r"test recall cross-entropy (\S+)", out)
    assert loss < math.log(8)


def test_sunspots_example_forecasts_and_plots(tmp_path):
    out = run_example("sunspots.py", "--steps", "25", "--out", str(tmp_path))
    (rmse,) = numbers(r"test RMSE (\S+)", out)
    (persistence,) = numbers(r"persistence (\S+);", out)
    assert 0 < rmse < 200 and abs(persistence - 29.1) < 0.1  # 25 steps: only finite and printed
    assert (tmp_path / "sunspots.png").stat().st_size > 0


def test_digits_example_reports_accuracy_f1_and_confusion():
    out = run_example("digits.py", "--steps", "60")
    (accuracy,) = numbers(r"test accuracy (\S+)", out)
    (f1,) = numbers(r"F1 (\S+)", out)
    assert accuracy > 0.3 and 0 < f1 <= 1  # chance is 0.1
    rows = re.findall(r"^ +(\d) ((?: +\d+){10})$", out, re.MULTILINE)
    assert [int(digit) for digit, _ in rows] == list(range(10))
    assert sum(int(n) for _, counts in rows for n in counts.split()) == 360  # the test images


def test_charlm_example_reports_bits_per_character_and_samples():
    out = run_example("charlm.py", "--steps", "3", "--sample-length", "20")
    (bits,) = numbers(r"held-out (\S+) bits per character", out)
    (uniform,) = numbers(r"characters: (\S+);", out)
    assert 0 < bits < 2 * uniform  # 3 steps: only finite and printed
    sample = out.split("sample (temperature 0.7):\n", 1)[1]
    assert sample.startswith("The ") and len(sample) >= len("The ") + 20


def test_own_data_example_forecasts_a_csv_series():
    out = run_example("own_data.py", "--steps", "150")
    rmse, persistence = (float(v) for v in re.search(r"test RMSE (\S+)\s+\(persistence (\S+)\)", out).groups())
    assert math.isfinite(rmse) and rmse < persistence  # the cycles are learnable; persistence ignores them
