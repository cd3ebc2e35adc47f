"""The public API is pinned, documented, and the README and demo run as written."""

import inspect
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

import jaxrnn as jr

ROOT = pathlib.Path(__file__).resolve().parents[1]

PUBLIC = [
    "Bidirectional",
    "CPUKernel",
    "Cell",
    "CellParams",
    "DEER",
    "ELK",
    "GRU",
    "HiddenState",
    "LRUParams",
    "LRUState",
    "LSTM",
    "LSTMState",
    "LayerNormLSTMParams",
    "LinearRecurrence",
    "MinRNNParams",
    "Pallas",
    "QuasiDEER",
    "QuasiELK",
    "RNN",
    "Readout",
    "ReadoutParams",
    "SolverInfo",
    "StackedRNN",
    "check_bptt",
    "default_unroll",
    "elman",
    "from_torch",
    "gru",
    "layer_norm_lstm",
    "lru",
    "lstm",
    "mingru",
    "minlstm",
    "readout",
    "rnn",
    "to_torch",
]


def test_public_api_is_pinned():
    assert sorted(jr.__all__) == PUBLIC
    exported = {n for n in dir(jr) if not n.startswith("_") and not inspect.ismodule(getattr(jr, n))}
    assert exported == set(PUBLIC)


def test_rnn_signature_is_pinned():
    params = inspect.signature(jr.rnn).parameters
    assert list(params) == [
        "cell",
        "params",
        "xs",
        "state",
        "lengths",
        "reverse",
        "time_major",
        "grad",
        "truncate",
        "unroll",
        "residuals",
        "remat",
        "backend",
        "solver",
        "return_info",
    ]
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in list(params)[4:])
    assert params["grad"].default == "bptt" and params["reverse"].default is False
    assert params["backend"].default == "auto" and params["remat"].default is None
    assert params["solver"].default is None and params["return_info"].default is False


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name):
    doc = inspect.getdoc(getattr(jr, name)) or ""
    assert len(doc) > 40, f"jr.{name} needs a docstring"
    if callable(getattr(jr, name)) and not inspect.isclass(getattr(jr, name)):
        assert "Example" in doc or "Returns" in doc, f"jr.{name} docstring lacks Returns/Example"


def _readme_code() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    return "\n".join(blocks)


def test_readme_python_blocks_run_as_written(tmp_path):
    script = tmp_path / "readme.py"
    script.write_text(_readme_code())
    # A fresh interpreter: the user's default JAX settings, not this suite's strict ones.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_readme_setup_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, "the README's test command must be exactly what .ci/run runs"


def test_demo_loss_falls():
    from jaxrnn._app.cli import train

    # optax's Adam mixes a Python float with an int32 step count, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        history = train("gru", steps=120, length=12, hidden=16, log_every=40, out=io.StringIO())
    assert len(history) == 3
    assert history[-1][1] < 0.5 * history[0][1]


def test_demo_rejects_bad_numbers(capsys):
    from jaxrnn._app.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--steps", "0"])
    assert exit_info.value.code == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_train_command_runs_a_real_task_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "jaxrnn",
        "train",
        "--task",
        "digits",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--hidden",
        "16",
        "--out",
        str(out),
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 30
    assert 0.1 < summary["report"]["test_accuracy"] <= 1.0
    assert {"config.json", "metrics.jsonl", "curves.png", "confusion.png", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "resumed from step 30" in again.stdout + again.stderr
    # A different config in the same folder is refused before any work (in-process: no training runs).
    from jaxrnn._app.cli import main

    try:
        code = main(command[3:-2] + ["--seed", "3", "--out", str(out)])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2 and "holds another run" in capsys.readouterr().err


def test_tasks_command_lists_the_tasks(capsys):
    from jaxrnn._app.cli import main

    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    assert all(f"{name}:" in text for name in ("adding", "copy", "sunspots", "digits"))


def test_train_command_takes_a_users_csv_series(tmp_path):
    values = "\n".join(f"{v:.4f}" for v in __import__("numpy").sin(__import__("numpy").arange(200) / 5.0))
    (tmp_path / "series.csv").write_text("value\n" + values + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxrnn",
            "train",
            "--task",
            "series",
            "--data",
            "series.csv",
            "--column",
            "0",
            "--steps",
            "10",
            "--window",
            "8",
            "--hidden",
            "8",
            "--out",
            "run",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == str(tmp_path / "series.csv") and config["column"] == 0  # absolute path, int index
    assert (tmp_path / "run" / "forecast.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--out", "no-such-run"], "jaxrnn generate: error:"),
        (["sweep", "--hidden", "32,x"], "x"),
        (["compare", "--cells", "lstm,transformer"], "transformer"),
        (["train", "--task", "nope"], "jaxrnn train: error: unknown task 'nope'"),
        (
            ["train", "--task", "adding", "--cell", "rnn", "--out", "unused"],
            "--cell must be one of lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, lstm_diagonal, gru_diagonal, mingru, minlstm, lru, got 'rnn'",
        ),
        (
            ["train", "--task", "adding", "--solver", "newton", "--out", "unused"],
            "jaxrnn train: error: --solver must be one of sequential, parallel, deer, quasi-deer, elk, quasi-elk, "
            "got 'newton'",
        ),
        (
            ["compare", "--cells", "gru", "--solver", "parallel", "--out", "unused"],
            "jaxrnn compare: error: --solver parallel scans a linear recurrence, which --cell gru does not have",
        ),
        (
            ["train", "--task", "adding", "--newton-tol", "1e-3", "--out", "unused"],
            "--newton-tol set a Newton solver's options, but the run has no --solver; "
            "add --solver deer | quasi-deer | elk | quasi-elk",
        ),
        (
            ["train", "--task", "adding", "--solver", "elk", "--newton-tol", "-1", "--out", "unused"],
            "--newton-tol must",
        ),
        (["sweep", "--solver", "elk", "--newton-max-iters", "0", "--out", "unused"], "--newton-max-iters must"),
    ],
)
def test_training_commands_report_bad_input_without_a_traceback(capsys, tmp_path, monkeypatch, argv, message):
    from jaxrnn._app.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
