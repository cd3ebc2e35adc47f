"""The built-in training tasks (jaxrnn._app.tasks): each task's pieces fit the training
step, its metrics and report have the documented names, its batches are
deterministic, and its options are checked; the cells they accept are the core's."""

import json
import math
import re

import jax
import numpy as np
import pytest

from jaxrnn import data, train
from jaxrnn._app import cells
from jaxrnn._app.tasks import TASKS

TINY = {"hidden": 8, "layers": 1, "steps": 3, "batch_size": 4, "eval_every": 1}
# Task options that keep each tiny run short.
TINY_TASK = {
    "adding": {"length": 6},
    "copy": {"length": 3, "delay": 2, "num_symbols": 4},
    "sunspots": {"window": 5},
    "digits": {},
}
EVAL_METRICS = {
    "adding": {"mse"},
    "copy": {"loss", "accuracy"},
    "sunspots": {"rmse"},
    "digits": {"accuracy"},
    "charlm": {"bpc"},
    "series": {"rmse"},
    "text": {"accuracy"},
}
# The tasks whose batches are independent; charlm carries state (tests/test_charlm.py).
INDEPENDENT = ["adding", "copy", "sunspots", "digits"]
REPORT_KEYS = {
    "adding": {"test_mse", "baseline_mse"},
    "copy": {"test_accuracy", "test_loss", "chance_accuracy", "chance_loss"},
    "sunspots": {"test_rmse", "persistence_rmse", "plot"},
    "digits": {"test_accuracy", "test_macro_f1", "chance_accuracy", "confusion_matrix", "plot"},
}


def tiny(name, **overrides):
    return {**TASKS[name].defaults, **TINY, **TINY_TASK[name], **overrides}


def test_registry():
    assert list(TASKS) == [*INDEPENDENT, "charlm", "series", "text"]
    for name, task in TASKS.items():
        assert task.name == name and task.summary and "\n" not in task.summary
        assert task.monitor[0] in EVAL_METRICS[name] and task.monitor[1] in train.MODES
        assert {"cell", "hidden", "layers", "steps", "batch_size", "learning_rate", "seed", "eval_every"} <= set(
            task.defaults
        )
        assert task.defaults["cell"] in cells.CELLS


@pytest.mark.parametrize("name", list(cells.CELLS))
def test_every_cell_is_named_as_the_core_names_it_and_trains_a_task(name):
    assert cells.CELLS[name](4).name == name
    setup = TASKS["adding"].build(tiny("adding", cell=name, layers=2))
    params = setup.init_params(jax.random.PRNGKey(0))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {np.dtype(np.float32)}  # also with x64 on
    loss, _ = jax.eval_shape(setup.loss_fn, params, setup.train_batch(0), jax.random.PRNGKey(1))
    assert loss.shape == () and loss.dtype == np.float32


@pytest.mark.parametrize("name", INDEPENDENT)
def test_task_trains_evaluates_and_reports(name, tmp_path):
    task = TASKS[name]
    setup = task.build(tiny(name))
    batch = setup.train_batch(0)
    sizes = {v.shape[0] for v in batch.values()}
    assert sizes == {4}, {k: v.shape for k, v in batch.items()}
    assert batch["xs"].dtype == np.float32 and batch["xs"].ndim == 3
    params = setup.init_params(jax.random.PRNGKey(0))
    loss, aux = setup.loss_fn(params, batch, jax.random.PRNGKey(1))
    assert loss.shape == () and math.isfinite(float(loss)) and aux == {}

    optimizer = train.default_optimizer(1e-2)
    state = train.init_state(params, optimizer, jax.random.PRNGKey(2))
    step = train.make_train_step(setup.loss_fn, optimizer)
    with jax.numpy_dtype_promotion("standard"):
        for i in range(3):
            state, metrics = step(state, setup.train_batch(i))
            assert bool(metrics["finite"])
    assert int(state.step) == 3

    metrics = train.evaluate(train.make_eval_step(setup.eval_fn), state.params, setup.eval_batches)
    assert set(metrics) == EVAL_METRICS[name] and all(math.isfinite(v) for v in metrics.values())

    report = setup.report(state.params, str(tmp_path))
    assert set(report) == REPORT_KEYS[name]
    json.dumps(report)  # the loop writes it into summary.json
    if "plot" in report:
        assert (tmp_path / report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", INDEPENDENT)
def test_train_batch_depends_on_seed_and_step_only(name):
    first, again, other_seed = (TASKS[name].build(tiny(name, seed=s)) for s in (0, 0, 1))
    same = [np.array_equal(a, b) for a, b in zip(first.train_batch(5).values(), again.train_batch(5).values())]
    assert all(same)
    assert not np.array_equal(first.train_batch(5)["xs"], first.train_batch(6)["xs"])
    assert not np.array_equal(first.train_batch(5)["xs"], other_seed.train_batch(5)["xs"])


@pytest.mark.parametrize("name", ["adding", "copy"])
def test_validation_batches_are_not_training_batches(name):
    setup = TASKS[name].build(tiny(name, batch_size=256))
    assert not any(np.array_equal(setup.train_batch(i)["xs"], setup.eval_batches[0]["xs"]) for i in range(3))


def test_digits_report_scores(tmp_path):
    setup = TASKS["digits"].build(tiny("digits"))
    report = setup.report(setup.init_params(jax.random.PRNGKey(0)), str(tmp_path))
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == len(data.digits().test.labels)
    assert report["test_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("adding", {"length": 1}, "--length must be an int >= 2, got 1."),
        ("adding", {"length": 2.5}, "--length must be an int >= 2, got 2.5."),
        (
            "adding",
            {"cell": "rnn"},
            "--cell must be one of lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, lstm_diagonal, gru_diagonal, mingru, minlstm, lru, got 'rnn'",
        ),
        (
            "adding",
            {"cell": "elman"},
            "--cell must be one of lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, lstm_diagonal, gru_diagonal, mingru, minlstm, lru, got 'elman'",
        ),
        ("adding", {"hidden": 0}, "--hidden must be a positive int, got 0."),
        ("adding", {"layers": 0}, "--layers must be a positive int, got 0."),
        ("adding", {"batch_size": 0}, "--batch-size must be a positive int, got 0."),
        ("adding", {"seed": -1}, "--seed must be an int >= 0, got -1."),
        ("copy", {"length": 0}, "--length must be a positive int, got 0."),
        ("copy", {"delay": 0}, "--delay must be a positive int, got 0."),
        ("copy", {"num_symbols": True}, "--num-symbols must be a positive int, got True."),
        ("sunspots", {"window": 0}, "--window must be a positive int, got 0."),
        (
            "digits",
            {"cell": "LSTM"},
            "--cell must be one of lstm, gru, elman_tanh, elman_relu, layer_norm_lstm, lstm_diagonal, gru_diagonal, mingru, minlstm, lru, got 'LSTM'",
        ),
    ],
)
def test_bad_options(name, overrides, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        TASKS[name].build(tiny(name, **overrides))


def test_sunspots_window_too_long():
    with pytest.raises(ValueError, match="^--window 250 is too long .* leaves the train split"):
        TASKS["sunspots"].build(tiny("sunspots", window=250))


def test_adding_defaults_beat_the_baseline_quickly():
    task = TASKS["adding"]
    config = {**task.defaults, "length": 50}
    setup = task.build(config)
    optimizer = train.default_optimizer(config["learning_rate"])
    state = train.init_state(setup.init_params(jax.random.PRNGKey(0)), optimizer, jax.random.PRNGKey(1))
    # 300 steps: the one loop in these tests whose time is running, not compiling, so it is
    # compiled at optimisation level 2 instead of the suite's 0 (conftest.py): 3.4 s instead
    # of 8.4 on 2 cores. The step is the library's, traced into this jit unchanged.
    step = jax.jit(
        train.make_train_step(setup.loss_fn, optimizer), compiler_options={"xla_backend_optimization_level": 2}
    )
    losses = []
    with jax.numpy_dtype_promotion("standard"):
        for i in range(300):
            state, metrics = step(state, setup.train_batch(i))
            losses.append(float(metrics["loss"]))
    assert np.mean(losses[-50:]) < data.ADDING_BASELINE_MSE / 4
