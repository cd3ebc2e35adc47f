"""jaxrnn._app.sweep: ``jaxrnn sweep`` (one run per hidden size) and ``jaxrnn compare`` (one run
per cell), on a tiny two-layer linear task so most tests do not depend on the real ones,
and once on the real adding problem at a toy size."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import train
from jaxrnn._app import cells, plotting
from jaxrnn._app import sweep as _sweep
from jaxrnn._app.options import RunError
from jaxrnn._app.tasks import TASKS as REAL_TASKS
from jaxrnn._app.tasks import Setup, Task


@pytest.fixture(autouse=True)
def _optax_promotion():
    # optax's Adam mixes a Python float with an int32 step count, which the strict
    # promotion of conftest.py rejects; jaxrnn never changes JAX's settings itself.
    with jax.numpy_dtype_promotion("standard"):
        yield


def _batch(seed, index, size=8):
    x = np.random.default_rng([seed, index]).normal(size=(size, 3)).astype(np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(x @ np.array([1.0, -2.0, 0.5], np.float32))}


def _build(config):
    """``y = x @ w @ v`` with ``w [3, hidden]``, ``v [hidden]``: 4 * hidden parameters."""
    hidden = config["hidden"]

    def predict(params, x):
        return x @ params["w"] @ params["v"]

    def eval_fn(params, batch):
        return {"mse": train.mse(predict(params, batch["x"]), batch["y"])}

    def init_params(key):
        k_w, k_v = jax.random.split(key)
        scale = 1.0 if config["cell"] == "lstm" else 0.1  # so the cells' curves differ
        return {
            "w": scale * jax.random.normal(k_w, (3, hidden), jnp.float32) / hidden**0.5,
            "v": jax.random.normal(k_v, (hidden,), jnp.float32),
        }

    return Setup(
        init_params=init_params,
        train_batch=lambda step: _batch(config["seed"], step),
        loss_fn=lambda params, batch, rng: (eval_fn(params, batch)["mse"], {}),
        eval_batches=[_batch(config["seed"] + 1, i) for i in range(2)],
        eval_fn=eval_fn,
        report=lambda params, out_dir: {
            "test_mse": float(eval_fn(params, _batch(config["seed"] + 2, 0, 32))["mse"]),
            "baseline_mse": 5.25,
        },
    )


TASK = Task(
    "linear",
    "a tiny linear regression",
    {
        "cell": "lstm",
        "hidden": 4,
        "layers": 1,
        "steps": 6,
        "batch_size": 8,
        "learning_rate": 0.05,
        "seed": 0,
        "eval_every": 2,
        "log_every": 1,
    },
    ("mse", "min"),
    _build,
)
TASKS = {"linear": TASK}


def _args(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_sweep_writes_one_row_per_size_and_resumes_without_retraining(tmp_path, capsys):
    messages = []
    result = _sweep.sweep(TASK, {}, [2, 8], tmp_path, progress=False, log=messages.append)

    assert [r["hidden"] for r in result["runs"]] == [2, 8]
    assert [r["params"] for r in result["runs"]] == [8, 32]
    for run in result["runs"]:
        assert run["status"] == "done" and run["steps"] == 6
        assert run["best"]["metric"] == "mse" and np.isfinite(run["best"]["value"])
        assert set(run["report"]) == {"test_mse", "baseline_mse"}
        assert run["time_s"] > 0 and run["ms_per_step"] > 0
        assert (tmp_path / f"hidden-{run['hidden']}" / "summary.json").exists()
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(result))
    assert result["config"]["steps"] == 6 and "hidden" not in result["config"]
    table = (tmp_path / "sweep.md").read_text()
    assert (
        "| hidden | parameters | best val mse (step) | test_mse | baseline_mse | time (s) | ms/step | status |" in table
    )
    assert [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ") and "done" in line] == [
        "| 2",
        "| 8",
    ]
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "[hidden 2] " in messages[1]  # each run's own messages, tagged

    again = _sweep.sweep(TASK, {}, [2, 8], tmp_path, progress=True, log=[].append)
    assert "2/2 [" in capsys.readouterr().err  # the tqdm bar over the sizes
    lines = (tmp_path / "hidden-8" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [1, 2, 3, 4, 5, 6]  # nothing retrained
    assert [r["best"] for r in again["runs"]] == [r["best"] for r in result["runs"]]


def test_a_sweep_folder_is_refused_to_another_config(tmp_path):
    _sweep.sweep(TASK, {}, [2], tmp_path, progress=False, log=[].append)
    with pytest.raises(RunError, match=r"holds another sweep \(learning_rate=0.05 \(now 0.1\)\)"):
        _sweep.sweep(TASK, {"learning_rate": 0.1}, [2], tmp_path, progress=False, log=[].append)
    # More sizes with the same config extend the sweep.
    assert [r["hidden"] for r in _sweep.sweep(TASK, {}, [2, 3], tmp_path, progress=False, log=[].append)["runs"]] == [
        2,
        3,
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("32,x,128", "hidden size 'x' in '32,x,128' is not a positive integer"),
        ("32,0", "hidden size '0' in '32,0' is not a positive integer"),
        ("32,-4", "hidden size '-4' in '32,-4' is not a positive integer"),
        ("32,,64", "hidden size '' in '32,,64' is not a positive integer"),
        ("64,64", "hidden size 64 appears twice in '64,64'"),
        ("", "expected a comma-separated list of hidden sizes"),
    ],
)
def test_bad_size_lists_name_the_item(text, message, capsys):
    with pytest.raises(ValueError, match=message):
        _sweep.parse_sizes(text)
    with pytest.raises(SystemExit):
        _args(_sweep.add_sweep_arguments, ["--hidden", text])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "lstm,rnn",
            "unknown cell 'rnn' in 'lstm,rnn'; choose from lstm, gru, elman_tanh, elman_relu, layer_norm_lstm",
        ),
        (
            "lstm,elman",
            "unknown cell 'elman' in 'lstm,elman'; choose from lstm, gru, elman_tanh, elman_relu, layer_norm_lstm",
        ),
        ("gru,gru", "cell 'gru' appears twice in 'gru,gru'"),
        (
            " ",
            "expected a comma-separated list of cells (lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, "
            "lstm_diagonal, gru_diagonal, mingru, minlstm, lru)",
        ),
    ],
)
def test_bad_cells_name_the_item(capsys, text, message):
    assert cells.parse_cells("lstm, elman_tanh") == ["lstm", "elman_tanh"]
    with pytest.raises(SystemExit):
        _args(_sweep.add_compare_arguments, ["--cells", text])
    assert message in capsys.readouterr().err


def test_main_sweep_errors(tmp_path, capsys):
    args = _args(_sweep.add_sweep_arguments, ["--task", "nope", "--out", str(tmp_path)])
    assert _sweep.main_sweep(args, TASKS) == 2
    assert "jaxrnn sweep: error: unknown task 'nope'; choose one of linear" in capsys.readouterr().err

    args = _args(
        _sweep.add_sweep_arguments, ["--task", "linear", "--hidden", "2", "--steps", "0", "--out", str(tmp_path)]
    )
    assert _sweep.main_sweep(args, TASKS) == 2
    assert "--steps must be a positive int, got 0." in capsys.readouterr().err

    args = _args(
        _sweep.add_sweep_arguments, ["--task", "linear", "--hidden", "2", "--steps", "2", "--out", str(tmp_path)]
    )
    assert _sweep.main_sweep(args, TASKS, log=[].append) == 0
    args.steps = 3
    assert _sweep.main_sweep(args, TASKS, log=[].append) == 2
    assert "holds another sweep (steps=2 (now 3)" in capsys.readouterr().err


def test_compare_draws_one_line_per_cell_on_the_adding_problem(tmp_path, monkeypatch):
    closed = []  # the figures drawn, the last one compare.png
    monkeypatch.setattr(plotting.pyplot(), "close", closed.append)
    args = _args(
        _sweep.add_compare_arguments,
        [
            "--task",
            "adding",
            "--cells",
            "lstm,elman_tanh",
            "--hidden",
            "8",
            "--length",
            "10",
            "--steps",
            "20",
            "--eval-every",
            "10",
            "--batch-size",
            "16",
            "--out",
            str(tmp_path),
        ],
    )
    assert _sweep.main_compare(args, REAL_TASKS, log=[].append) == 0

    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["varied"] == "cell" and result["config"]["length"] == 10 and "cell" not in result["config"]
    assert [r["cell"] for r in result["runs"]] == ["lstm", "elman_tanh"]
    for run in result["runs"]:
        assert run["best"]["metric"] == "mse" and run["best"]["step"] in (10, 20)
        assert set(run["report"]) == {"test_mse", "baseline_mse"}
    assert (
        "| cell | parameters | best val mse (step) | test_mse | baseline_mse |" in (tmp_path / "compare.md").read_text()
    )
    assert (tmp_path / "compare.png").stat().st_size > 0 and (tmp_path / "lstm" / "curves.png").exists()

    [axes] = closed[-1].axes
    assert [line.get_label() for line in axes.lines] == ["lstm", "elman_tanh", "baseline mse 0.167"]
    assert [list(line.get_xdata()) for line in axes.lines[:2]] == [[10, 20], [10, 20]]
