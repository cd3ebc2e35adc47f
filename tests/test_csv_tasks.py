"""The CSV tasks (jaxrnn._app.tasks.series and .text): a user's series and labelled texts build, train,
evaluate and report; the text model reads each text up to its length; missing or bad
files give messages that name the option or the line."""

import json
import math

import jax
import numpy as np
import pytest

from jaxrnn import data, train
from jaxrnn._app.tasks import TASKS
from jaxrnn._app.tasks import text as text_task

TINY = {"hidden": 8, "layers": 1, "batch_size": 8, "learning_rate": 1e-2}
PNG = b"\x89PNG\r\n\x1a\n"


def sine_csv(path, n=300, header="value"):
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 25) + np.random.default_rng(0).normal(0, 1, n)
    path.write_text(f"{header}\n" + "".join(f"{v:.4f}\n" for v in values))
    return path


def texts_csv(path, per_class=20):
    # "pos" texts are runs of "a", "neg" of "b", with a "c" somewhere; lengths 3 to 12.
    rng = np.random.default_rng(0)
    rows = ["label,text"]
    for label, char in (("pos", "a"), ("neg", "b")):
        for i in range(per_class):
            text = list(char * (3 + i % 10))
            text[rng.integers(len(text))] = "c"
            rows.append(f"{label},{''.join(text)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def series_config(path, **overrides):
    return {**TASKS["series"].defaults, **TINY, "window": 10, "data": str(path), **overrides}


def text_config(path, **overrides):
    return {**TASKS["text"].defaults, **TINY, "length": 20, "data": str(path), **overrides}


def train_steps(setup, steps):
    optimizer = train.default_optimizer(1e-2)
    state = train.init_state(setup.init_params(jax.random.PRNGKey(0)), optimizer, jax.random.PRNGKey(1))
    step = train.make_train_step(setup.loss_fn, optimizer)
    losses = []
    with jax.numpy_dtype_promotion("standard"):
        for i in range(steps):
            state, metrics = step(state, setup.train_batch(i))
            assert bool(metrics["finite"])
            losses.append(float(metrics["loss"]))
    return state, losses


@pytest.mark.parametrize("task", [TASKS["series"], TASKS["text"]])
def test_task_declares_its_interface(task):
    assert task.name in ("series", "text") and "\n" not in task.summary
    assert task.defaults["data"] is None and task.monitor[1] in train.MODES
    assert {"cell", "hidden", "layers", "steps", "batch_size", "learning_rate", "seed", "eval_every"} <= set(
        task.defaults
    )


def test_series_trains_evaluates_and_reports(tmp_path):
    setup = TASKS["series"].build(series_config(sine_csv(tmp_path / "sine.csv")))
    batch = setup.train_batch(0)
    assert batch["xs"].shape == (8, 10, 1) and batch["xs"].dtype == np.float32 and batch["targets"].shape == (8,)
    state, losses = train_steps(setup, 40)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 2

    metrics = train.evaluate(train.make_eval_step(setup.eval_fn), state.params, setup.eval_batches)
    assert set(metrics) == {"rmse"} and math.isfinite(metrics["rmse"])
    report = setup.report(state.params, str(tmp_path / "out"))
    assert set(report) == {"test_rmse", "persistence_rmse", "plot"}
    json.dumps(report)
    assert 0.5 < report["persistence_rmse"] < 10  # in the file's units: the sine moves ~2.5 a step, noise 1
    assert (tmp_path / "out" / report["plot"]).read_bytes()[:8] == PNG


def test_series_picks_a_column(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("day,flow\n" + "".join(f"{i},{(i * 7) % 11}\n" for i in range(60)))
    setup = TASKS["series"].build(series_config(path, column="flow", window=3))
    scaled = setup.eval_batches[0]["xs"]
    assert scaled.shape[1:] == (3, 1) and abs(float(scaled.mean())) < 1  # standardised flow, not the day


def test_text_trains_evaluates_and_reports(tmp_path):
    setup = TASKS["text"].build(text_config(texts_csv(tmp_path / "texts.csv")))
    batch = setup.train_batch(0)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "ids": ((8, 12), np.int32),
        "lengths": ((8,), np.int32),
        "labels": ((8,), np.int32),
    }
    # 40 texts, 20 a class: 32 train, and validation and test get 2 of each class.
    assert np.bincount(setup.eval_batches[0]["labels"]).tolist() == [2, 2]
    state, losses = train_steps(setup, 40)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) / 2

    metrics = train.evaluate(train.make_eval_step(setup.eval_fn), state.params, setup.eval_batches)
    assert set(metrics) == {"accuracy"} and 0 <= metrics["accuracy"] <= 1
    report = setup.report(state.params, str(tmp_path / "out"))
    assert set(report) == {"test_accuracy", "test_macro_f1", "majority_accuracy", "classes", "confusion_matrix", "plot"}
    json.dumps(report)
    confusion = np.array(report["confusion_matrix"])
    assert report["classes"] == ["neg", "pos"] and confusion.shape == (2, 2) and confusion.sum() == 4
    assert report["test_accuracy"] == pytest.approx(np.trace(confusion) / 4) and report["majority_accuracy"] == 0.5
    assert (tmp_path / "out" / report["plot"]).read_bytes()[:8] == PNG


def test_text_length_caps_and_batches_are_deterministic(tmp_path):
    path = texts_csv(tmp_path / "texts.csv")
    capped = TASKS["text"].build(text_config(path, length=5))
    assert capped.train_batch(0)["ids"].shape == (8, 5) and capped.train_batch(0)["lengths"].max() == 5
    first, again, other = (TASKS["text"].build(text_config(path, seed=s)) for s in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first.train_batch(3).values(), again.train_batch(3).values()))
    assert not np.array_equal(first.eval_batches[0]["ids"], other.eval_batches[0]["ids"])


def test_text_padding_changes_no_logits(tmp_path):
    setup = TASKS["text"].build(text_config(texts_csv(tmp_path / "texts.csv")))
    params = setup.init_params(jax.random.PRNGKey(0))
    batch = setup.train_batch(0)
    short, long = np.argmin(batch["lengths"]), np.argmax(batch["lengths"])
    assert batch["lengths"][short] < batch["lengths"][long]

    def loss(rows, steps):
        # Padding filled with a real character: only ``lengths`` can keep it out.
        ids = np.where(batch["ids"][rows, :steps] < 0, 0, batch["ids"][rows, :steps])
        one = {"ids": ids, "lengths": batch["lengths"][rows], "labels": batch["labels"][rows]}
        return float(setup.loss_fn(params, one, None)[0])

    alone = [loss([i], batch["lengths"][i]) for i in (short, long)]
    assert loss([short], batch["ids"].shape[1]) == pytest.approx(alone[0], abs=1e-6)
    assert loss([short, long], batch["ids"].shape[1]) == pytest.approx(np.mean(alone), abs=1e-6)


def test_text_encoding_pads_cuts_and_maps_unseen_characters_to_one_id():
    ids, lengths = text_task.encode(data.CharVocab.from_text("ab"), ["abzy", "b", "ba"], length=3)
    assert ids.tolist() == [[0, 1, 2], [1, -1, -1], [1, 0, -1]] and lengths.tolist() == [3, 1, 2]


@pytest.mark.parametrize("task", ["series", "text"])
def test_data_is_required(task, tmp_path):
    config = series_config(None) if task == "series" else text_config(None)
    with pytest.raises(ValueError, match=f"^--data FILE is required for the {task} task$"):
        TASKS[task].build({**config, "data": None})


@pytest.mark.parametrize(
    "task, text, overrides, message",
    [
        ("series", "1.0\n2.0\n\nabc\n", {}, r"bad.csv: line 4: 'abc' is not a finite number$"),
        ("series", "1\n2\n", {}, r"bad.csv: 2 values: window=10 with split=.* leaves the train split"),
        ("series", "a,b\n1,2\n", {}, r"bad.csv: line 1: 2 fields, expected 1; pass column="),
        ("series", "a,b\n1,2\n", {"column": "c"}, r"bad.csv: line 1: no column named 'c'"),
        ("text", "pos,aaa\nneg\n", {}, r"bad.csv: line 2: 1 fields, expected 2 \(label,text\)"),
        ("text", "pos,aaa\npos,ab\n", {}, r"bad.csv: every row has the label 'pos'; a classifier needs at least two"),
        ("text", "pos,aaa\nneg,bbb\n", {}, r"bad.csv: 2 labelled texts are too few to split 80/10/10"),
        ("text", "pos,aaa\n" * 5 + "neg,b\n" * 5, {"length": 0}, r"^--length must be a positive int, got 0\.$"),
    ],
)
def test_bad_files_and_options(task, text, overrides, message, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    config = series_config(path, **overrides) if task == "series" else text_config(path, **overrides)
    with pytest.raises(ValueError, match=message):
        TASKS[task].build(config)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nothing.csv: no such file$"):
        TASKS["text"].build(text_config(tmp_path / "nothing.csv"))
