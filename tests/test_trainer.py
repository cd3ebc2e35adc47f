"""jaxrnn._app.trainer: the training loop (exact resume, non-finite stop, early stopping,
the run folder's files), and the ``jaxrnn train`` / ``jaxrnn tasks`` commands
(jaxrnn._app.cli) with what they need installed, on a tiny linear-regression task so
the tests do not depend on the real tasks."""

import argparse
import io
import json
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import train
from jaxrnn._app import cli, trainer
from jaxrnn._app.options import RunError
from jaxrnn._app.tasks import TASKS
from jaxrnn.train import _checkpoint


class Task(NamedTuple):  # as docs/training-design.md; the real tasks are jaxrnn._app.tasks
    name: str
    summary: str
    defaults: dict
    monitor: tuple
    build: Callable


class Setup(NamedTuple):
    init_params: Callable
    train_batch: Callable
    loss_fn: Callable
    eval_batches: Any
    eval_fn: Callable
    report: Callable
    initial_carry: Any = None
    files: Any = None


W_TRUE = np.array([1.0, -2.0, 0.5], np.float32)


@pytest.fixture(autouse=True)
def _optax_promotion():
    # optax's Adam mixes a Python float with an int32 step count, which the strict
    # promotion of conftest.py rejects; jaxrnn never changes JAX's settings itself.
    with jax.numpy_dtype_promotion("standard"):
        yield


def _batch(seed, step, size=8):
    x = np.random.default_rng([seed, step]).normal(size=(size, 3)).astype(np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(x @ W_TRUE)}


def _build(config, *, poison_step=None, flat_eval=False):
    def loss_fn(params, batch, rng):
        # Noise from the step's key, so a resume that lost the key would show.
        noise = 0.01 * jax.random.normal(rng, batch["x"].shape, jnp.float32)
        loss = train.mse((batch["x"] + noise) @ params["w"], batch["y"])
        return jnp.where(batch["poison"], jnp.float32(jnp.nan), loss), {"w_norm": jnp.linalg.norm(params["w"])}

    def train_batch(step):
        return {**_batch(config["seed"], step), "poison": jnp.asarray(step == poison_step)}

    def eval_fn(params, batch):
        mse = train.mse(batch["x"] @ params["w"], batch["y"])
        return {"mse": jnp.ones_like(mse) if flat_eval else mse}

    def report(params, out_dir):
        return {"test_mse": float(eval_fn(params, _batch(config["seed"] + 1, 0, 32))["mse"])}

    return Setup(
        init_params=lambda key: {"w": jnp.zeros(3, jnp.float32)},
        train_batch=train_batch,
        loss_fn=loss_fn,
        eval_batches=[_batch(config["seed"] + 2, i) for i in range(2)],
        eval_fn=eval_fn,
        report=report,
    )


def _task(name="linear", **build_options):
    defaults = {"cell": "lstm", "steps": 12, "batch_size": 8, "learning_rate": 0.05, "seed": 0, "eval_every": 3}
    return Task(
        name,
        f"{name}: a tiny linear regression",
        defaults,
        ("mse", "min"),
        lambda config: _build(config, **build_options),
    )


def _records(out_dir, split):
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def _run(task, out_dir, **config):
    messages = []
    summary = trainer.run(task, {"log_every": 1, **config}, out_dir, progress=False, log=messages.append)
    return summary, messages


def _interrupt_at(setup, step):
    def train_batch(s):
        if s == step:
            raise KeyboardInterrupt
        return setup.train_batch(s)

    return setup._replace(train_batch=train_batch)


@pytest.mark.parametrize(
    "interrupt, crash, resumed_from",
    [
        (6, False, 6),  # Ctrl-C right after the checkpoint of the evaluation at step 6
        (7, False, 7),  # Ctrl-C between evaluations: the loop saves step 7 before re-raising
        (8, True, 6),  # a hard crash at step 8 (its checkpoint lost): metrics.jsonl is cut back to 6
    ],
)
def test_resumed_run_logs_exactly_the_losses_of_an_uninterrupted_one(tmp_path, interrupt, crash, resumed_from):
    whole, _ = _run(_task(), tmp_path / "a")

    task = _task()
    with pytest.raises(KeyboardInterrupt):
        _run(task._replace(build=lambda config: _interrupt_at(_build(config), interrupt)), tmp_path / "b")
    newest = _checkpoint.latest(tmp_path / "b" / "checkpoints")
    assert newest.name == f"ckpt-{interrupt:08d}.ckpt"
    if crash:
        newest.unlink()
    resumed, messages = _run(task, tmp_path / "b")

    assert messages[0] == f"resumed from step {resumed_from}"
    losses = {d: [(r["step"], r["loss"]) for r in _records(tmp_path / d, "train")] for d in "ab"}
    assert [s for s, _ in losses["a"]] == list(range(1, 13))
    assert losses["b"] == losses["a"]  # exact, not approximate
    assert [r["step"] for r in _records(tmp_path / "b", "val")] == [3, 6, 9, 12]
    assert resumed["val"] == whole["val"] and resumed["report"] == whole["report"]
    assert resumed["status"] == whole["status"] == "done" and resumed["steps"] == 12


def test_a_finished_run_resumes_to_the_same_summary(tmp_path):
    first, _ = _run(_task(), tmp_path, steps=3)
    again, messages = _run(_task(), tmp_path, steps=3)
    assert messages[0] == "resumed from step 3"
    assert {k: v for k, v in again.items() if k != "time_s"} == {k: v for k, v in first.items() if k != "time_s"}
    assert len(_records(tmp_path, "val")) == 1


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    summary, messages = _run(_task(poison_step=4), tmp_path)  # update 5 is non-finite

    assert summary["status"] == "nonfinite" and summary["steps"] == 4
    assert "loss became non-finite at step 5; stopped; the last good checkpoint (step 3) is kept" in messages
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-00000003.ckpt"]
    assert [r["step"] for r in _records(tmp_path, "train")] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "nonfinite"


def test_early_stopping_after_patience_evaluations(tmp_path):
    summary, messages = _run(_task(flat_eval=True), tmp_path, eval_every=1, patience=2, steps=20)

    assert summary["status"] == "early_stopped" and summary["steps"] == 3
    assert summary["best"] == {"metric": "mse", "value": 1.0, "step": 1}
    assert any(m.startswith("early stopping at step 3") for m in messages)


def test_a_folder_with_another_run_is_refused(tmp_path):
    _run(_task(), tmp_path, steps=3)
    with pytest.raises(
        RunError,
        match=r"--out .* holds another run \(task 'linear', .*learning_rate=0.05.*; "
        r"choose another --out or delete it",
    ):
        _run(_task(), tmp_path, steps=3, learning_rate=0.01)


def test_run_writes_config_metrics_curves_and_summary(tmp_path):
    summary, messages = _run(_task(), tmp_path, steps=4, log_every=2)

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["task"] == "linear" and config["steps"] == 4 and config["patience"] == 10
    train_records, val_records = _records(tmp_path, "train"), _records(tmp_path, "val")
    assert [r["step"] for r in train_records] == [2, 4]
    assert set(train_records[0]) == {"step", "split", "loss", "grad_norm", "w_norm", "time_s"}
    assert [(r["step"], set(r)) for r in val_records] == [
        (3, {"step", "split", "mse", "time_s"}),
        (4, {"step", "split", "mse", "time_s"}),
    ]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "done" and saved["steps"] == 4 and saved["val"]["mse"] == val_records[-1]["mse"]
    assert saved["report"]["test_mse"] == summary["report"]["test_mse"]
    assert messages[-1].startswith("linear: done after 4 steps")
    assert "step 2/4  loss" in messages[0]


def test_progress_bar(tmp_path, capsys):
    trainer.run(_task(), {"steps": 2}, tmp_path, progress=True, log=print)
    err = capsys.readouterr().err
    assert "2/2" in err and "step" in err
    assert "evaluating" in err  # the validation pass has its own (transient) bar


# ------------------------------------------------------------------------------- CLI


def _main(argv, tasks, capsys):
    parser = argparse.ArgumentParser(prog="jaxrnn train")
    cli.add_train_arguments(parser)
    code = cli.main_train(parser.parse_args(argv), tasks, log=lambda message: None)
    return code, capsys.readouterr().err


def test_main_train_config_file_then_flags(tmp_path, capsys):
    tasks = {"linear": _task()}
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"task": "linear", "steps": 3, "learning_rate": 0.01, "extra": 1}))
    code, err = _main(
        ["--config", str(config_file), "--learning-rate", "0.02", "--out", str(tmp_path / "r")], tasks, capsys
    )

    assert (code, err) == (0, "")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["steps"], config["learning_rate"], config["extra"], config["seed"]) == (3, 0.02, 1, 0)


def test_main_train_default_out_and_nonfinite_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _ = _main(["--task", "bad", "--steps", "6"], {"bad": _task("bad", poison_step=4)}, capsys)
    assert code == 1
    assert (tmp_path / "runs" / "bad-lstm" / "summary.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "nope"], "unknown task 'nope'; choose one of linear, other"),
        ([], "unknown task 'adding'; choose one of linear, other"),
        (["--task", "linear", "--steps", "0"], "--steps must be a positive int, got 0."),
        (["--task", "linear", "--seed", "-1"], "--seed must be an int >= 0, got -1."),
        (["--task", "linear", "--config", "missing.json"], "--config missing.json: cannot read it"),
        (["--task", "linear", "--config", "{bad}"], "--config {bad}: not valid JSON"),
    ],
)
def test_main_train_usage_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "{bad}").write_text("{not json")
    code, err = _main(argv, {"linear": _task(), "other": _task("other")}, capsys)
    assert code == 2
    assert err.startswith("jaxrnn train: error: " + message)


def test_main_train_newton_solver_trains_as_the_sequential_scan(tmp_path, capsys, monkeypatch):
    # Newton's method run to its tolerance finds the scan's trajectory, and its implicit
    # gradient is the BPTT one: the first loss of a Newton run of a nonlinear cell, and
    # the validation MSE after that update, agree with the scan's to float32 rounding.
    monkeypatch.setattr(trainer, "_plot", lambda *args: None)  # the curves are not what is tested
    argv = ["--task", "adding", "--cell", "elman_tanh", "--hidden", "4", "--length", "3", "--batch-size", "4"]
    argv += ["--steps", "1"]
    metrics = {}
    for solver in ("sequential", "quasi-deer"):
        out = tmp_path / solver
        assert _main([*argv, "--solver", solver, "--out", str(out)], None, capsys) == (0, "")
        assert json.loads((out / "config.json").read_text())["solver"] == solver
        metrics[solver] = [r["loss"] for r in _records(out, "train")] + [r["mse"] for r in _records(out, "val")]
    assert len(metrics["quasi-deer"]) == 2 and np.isfinite(metrics["quasi-deer"]).all()
    np.testing.assert_allclose(metrics["quasi-deer"], metrics["sequential"], rtol=1e-5)

    # The solver is part of the run's config: resuming with another one is refused, as for any option.
    code, err = _main([*argv, "--solver", "deer", "--out", str(tmp_path / "quasi-deer")], None, capsys)
    assert code == 2 and "holds another run" in err and "solver='quasi-deer'" in err


def test_main_train_warm_start_records_iterations_and_trains_as_the_cold_start(tmp_path, capsys, monkeypatch):
    # Each step's solves start from the previous step's trajectories: the losses are the
    # cold run's to the solver's tolerance (the first step's exactly: it starts from zeros).
    monkeypatch.setattr(trainer, "_plot", lambda *args: None)  # the curves are not what is tested
    traces = []
    adding = TASKS["adding"]

    def build(config):
        setup = adding.build(config)

        def loss_fn(*args):
            traces.append(config.get("warm_start", False))
            return setup.loss_fn(*args)

        return setup._replace(loss_fn=loss_fn)

    tasks = {"adding": adding._replace(build=build)}
    argv = ["--task", "adding", "--cell", "elman_tanh", "--hidden", "4", "--length", "12", "--batch-size", "4"]
    argv += ["--steps", "2", "--solver", "quasi-deer"]
    records = {}
    for warm in (False, True):
        out = tmp_path / str(warm)
        assert _main([*argv, *["--warm-start"] * warm, "--out", str(out)], tasks, capsys) == (0, "")
        records[warm] = _records(out, "train")
        assert [r["step"] for r in records[warm]] == [1, 2]
        for r in records[warm]:
            assert 1 <= r["newton_iterations_mean"] <= r["newton_iterations_max"] <= 12
    assert json.loads((tmp_path / "True" / "config.json").read_text())["warm_start"] is True
    cold, warm = ([r["loss"] for r in records[w]] for w in (False, True))
    assert warm[0] == cold[0]
    np.testing.assert_allclose(warm, cold, rtol=1e-5)
    # No retrace when the guess turns from zeros into the last step's trajectories: the
    # warm run traces loss_fn once more than the cold one, for the trajectories' shapes.
    assert traces.count(True) == traces.count(False) + 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--warm-start"],
            "--warm-start set a Newton solver's options, but the run has no --solver; add --solver deer",
        ),
        (["--solver", "sequential", "--warm-start"], "--warm-start set a Newton solver's options, but the run has "),
        (
            ["--task", "charlm", "--solver", "quasi-deer", "--warm-start"],
            "--warm-start is not available for the charlm task: its steps continue a stream",
        ),
    ],
)
def test_main_train_warm_start_needs_a_newton_solver_and_independent_batches(tmp_path, capsys, argv, message):
    code, err = _main(["--task", "adding", *argv, "--out", str(tmp_path / "run")], None, capsys)
    assert code == 2 and err.startswith("jaxrnn train: error: " + message)
    assert not (tmp_path / "run" / "config.json").exists()


def test_main_tasks_lists_names_summaries_and_defaults():
    out = io.StringIO()
    assert cli.main_tasks({"linear": _task()}, out=out) == 0
    text = out.getvalue()
    assert text.startswith("linear: linear: a tiny linear regression\n")
    assert "steps=12" in text and "early stopping on validation mse (min)" in text


def test_a_task_that_needs_an_extra_names_it(tmp_path):
    def build(config):
        raise ImportError("jaxrnn.data.sunspots needs statsmodels: pip install 'jaxrnn[tasks]'")

    with pytest.raises(RunError, match=r"^jaxrnn.data.sunspots needs statsmodels: pip install 'jaxrnn\[tasks\]'$"):
        _run(_task()._replace(build=build), tmp_path)


@pytest.mark.parametrize("command", ["train", "sweep", "compare"])
@pytest.mark.parametrize(
    "hidden, named",
    [(["matplotlib"], "matplotlib"), (["tqdm"], "tqdm"), (["matplotlib", "tqdm"], "matplotlib and tqdm")],
)
def test_commands_name_the_extra_when_plots_or_bars_are_missing(tmp_path, capsys, monkeypatch, command, hidden, named):
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    monkeypatch.chdir(tmp_path)
    assert cli.main([command, "--task", "adding", "--steps", "1"]) == 2
    assert capsys.readouterr().err == f"jaxrnn {command} needs {named}: pip install 'jaxrnn[tasks]'\n"
    assert not (tmp_path / "runs").exists()  # nothing started
