"""The charlm task (jaxrnn._app.tasks.charlm) and `jaxrnn generate` (jaxrnn._app.generate): a
character language model trained with truncated BPTT over one stream, whose
recurrent state the training loop carries from step to step and checkpoints."""

import argparse
import io
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import train
from jaxrnn._app import cli, generate, trainer
from jaxrnn._app.options import RunError
from jaxrnn._app.tasks import TASKS, charlm
from jaxrnn.train import _checkpoint

TEXT = "the cat sat on the mat. " * 60  # 1440 characters, 11 distinct
# 8 rows of the 1296 training characters hold 10 chunks of 16: the stream wraps at step 10.
TINY = {
    "hidden": 16,
    "length": 16,
    "batch_size": 8,
    "learning_rate": 3e-2,
    "steps": 12,
    "eval_every": 3,
    "log_every": 1,
}
TASK = TASKS["charlm"]


@pytest.fixture(autouse=True)
def _optax_promotion():
    # optax's Adam mixes a Python float with an int32 step count, which the strict
    # promotion of conftest.py rejects; jaxrnn never changes JAX's settings itself.
    with jax.numpy_dtype_promotion("standard"):
        yield


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TEXT)
    return str(path)


def _config(text_file, **overrides):
    return {**TASK.defaults, **TINY, "text": text_file, **overrides}


def _run(out_dir, text_file, **overrides):
    messages = []
    with jax.numpy_dtype_promotion("standard"):
        summary = trainer.run(
            TASK, {**TINY, "text": text_file, **overrides}, out_dir, progress=False, log=messages.append
        )
    return summary, messages


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp("run")
    summary, _ = _run(out, text_file)
    return out, summary


def test_loss_is_finite_and_falls_in_30_steps(text_file):
    setup = TASK.build(_config(text_file))
    batch = setup.train_batch(0)
    assert batch["tokens"].shape == (8, 17) and bool(batch["reset"])
    assert not bool(setup.train_batch(1)["reset"]) and bool(setup.train_batch(10)["reset"])
    assert np.array_equal(setup.train_batch(13)["tokens"], setup.train_batch(3)["tokens"])
    optimizer = train.default_optimizer(3e-2)
    step = trainer.make_step(setup, optimizer)
    state = train.init_state(setup.init_params(jax.random.key(0)), optimizer, jax.random.key(1))
    carry, losses = setup.initial_carry, []
    for i in range(30):
        state, carry, metrics = step(state, carry, setup.train_batch(i))
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    assert math.isfinite(losses[0]) and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_bpc_over_whole_rows_equals_chunks_with_the_carry(text_file):
    setup = TASK.build(_config(text_file))
    params = setup.init_params(jax.random.key(0))
    [batch] = setup.eval_batches
    bpc = float(setup.eval_fn(params, batch)["bpc"])
    model, head, _ = charlm.charlm_model(_config(text_file), 11)
    chunks = train.stream_chunks(batch["tokens"], batch["tokens"].shape[0], 1)

    @jax.jit
    def chunk_losses(params):
        def one_chunk(carry, chunk):  # the loop over chunks, compiled once as a scan
            xs = jax.nn.one_hot(chunk[:, :-1], 11, dtype=jnp.float32)
            logits, carry = train.stream_forward(model, head, train.StreamParams(params.rnn, params.head), xs, carry)
            return carry, train.cross_entropy(logits, chunk[:, 1:])

        return jax.lax.scan(one_chunk, charlm.initial_carry(model, chunks.shape[1]), chunks)[1]

    assert chunks.shape[0] == batch["tokens"].shape[1] - 1  # one chunk per character: the carry does it all
    assert bpc == pytest.approx(float(jnp.mean(chunk_losses(params))) / math.log(2), rel=1e-5)


def test_run_reports_bpc_baseline_samples_and_saves_the_vocabulary(trained):
    out, summary = trained
    report = summary["report"]
    assert set(report) == {"test_bpc", "unigram_bpc", "prompt", "samples"}
    counts = np.array([TEXT.count(c) for c in sorted(set(TEXT))])
    # the training split is whole repeats of the sentence, so its frequencies are the text's
    assert report["unigram_bpc"] == pytest.approx(-(counts / counts.sum() * np.log2(counts / counts.sum())).sum())
    assert math.isfinite(report["test_bpc"]) and summary["best"]["metric"] == "bpc"
    assert list(report["samples"]) == ["0.5", "0.8", "1.0"]
    assert all(len(s) == 200 and set(s) <= set(TEXT) for s in report["samples"].values())
    assert json.loads((out / "vocab.json").read_text()) == {"chars": " .acehmnost", "prompt": report["prompt"]}
    assert report["prompt"] == TEXT[1368:1400] and (out / "samples.txt").exists()


def test_resume_with_the_carry_is_exact(tmp_path, text_file, trained):
    whole_dir, whole = trained

    def interrupt(config):
        setup = TASKS["charlm"].build(config)

        def train_batch(step):
            if step == 6:
                raise KeyboardInterrupt
            return setup.train_batch(step)

        return setup._replace(train_batch=train_batch)

    with pytest.raises(KeyboardInterrupt):
        with jax.numpy_dtype_promotion("standard"):
            trainer.run(
                TASK._replace(build=interrupt),
                {**TINY, "text": text_file},
                tmp_path,
                progress=False,
                log=lambda _: None,
            )
    config = json.loads((tmp_path / "config.json").read_text())
    model, _, init_params = charlm.charlm_model(config, 11)
    template = trainer.initial_loop(init_params, charlm.initial_carry(model, 8), config, train.default_optimizer(3e-2))
    saved, _, _ = _checkpoint.restore(tmp_path / "checkpoints", template)
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree_util.tree_leaves(saved.carry))

    resumed, messages = _run(tmp_path, text_file)
    assert messages[0] == "resumed from step 6"

    def losses(out):
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == "train"]

    assert [s for s, _ in losses(whole_dir)] == list(range(1, 13))
    assert losses(tmp_path) == losses(whole_dir)  # exact, across the wrap at step 10 as well
    assert resumed["val"] == whole["val"] and resumed["report"] == whole["report"]


def test_generate_is_deterministic_for_a_seed_and_uses_only_the_vocabulary(trained):
    out, summary = trained
    prompt, first = generate.generate(out, "the c", length=50, temperature=1.0, seed=3)
    assert (prompt, first) == generate.generate(out, "the c", length=50, temperature=1.0, seed=3)
    assert first != generate.generate(out, "the c", length=50, temperature=1.0, seed=4)[1]
    assert len(first) == 50 and set(first) <= set(TEXT)
    assert generate.generate(out)[0] == summary["report"]["prompt"]


def test_main_generate_prints_the_prompt_and_its_continuation(trained, capsys):
    out, _ = trained
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    printed = io.StringIO()
    args = parser.parse_args(["--out", str(out), "--prompt", "the ", "--length", "20", "--seed", "1"])
    assert generate.main(args, out=printed) == 0
    assert printed.getvalue() == "the " + generate.generate(out, "the ", length=20, seed=1)[1] + "\n"


def test_train_accepts_text(text_file):
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    assert parser.parse_args(["--task", "charlm", "--text", text_file]).text == text_file


@pytest.mark.parametrize(
    "where, options, message",
    [
        (
            "empty",
            {},
            "--out {out} holds no run (no config.json); train one with `jaxrnn train --task charlm --out {out}`.",
        ),
        (
            "adding",
            {},
            "--out {out} holds a 'adding' run; generate needs a charlm run (`jaxrnn train --task charlm --out DIR`).",
        ),
        ("trained", {"temperature": 0.0}, "--temperature must be a positive number, got 0.0."),
        ("trained", {"temperature": -1.0}, "--temperature must be a positive number, got -1.0."),
        ("trained", {"length": 0}, "--length must be a positive int, got 0."),
        ("trained", {"prompt": ""}, "--prompt must not be empty."),
        (
            "trained",
            {"prompt": "The Dog"},
            "--prompt has 3 characters outside the run's vocabulary: 'D', 'T', 'g'; the run knows ' .acehmnost'.",
        ),
    ],
)
def test_generate_errors(where, options, message, trained, tmp_path, capsys):
    out = trained[0] if where == "trained" else tmp_path
    if where == "adding":
        (tmp_path / "config.json").write_text(json.dumps({"task": "adding"}))
    args = argparse.Namespace(**{"out": out, "prompt": None, "length": 10, "temperature": 0.8, "seed": 0, **options})
    assert generate.main(args) == 2
    assert capsys.readouterr().err == f"jaxrnn generate: error: {message.format(out=out)}\n"


def test_generate_before_the_first_checkpoint(tmp_path, trained):
    for name in ("config.json", "vocab.json"):
        (tmp_path / name).write_text((trained[0] / name).read_text())
    with pytest.raises(RunError, match=f"^--out {tmp_path} holds no checkpoint yet; train the run first.$"):
        generate.generate(tmp_path)
    (tmp_path / "vocab.json").unlink()
    with pytest.raises(RunError, match=f"^--out {tmp_path} has no readable vocab.json"):
        generate.generate(tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"length": 0}, "--length must be a positive int, got 0."),
        (
            {"batch_size": 100},
            "--text {text} has 1440 characters; its training 90% (1296) cut into --batch-size 100 "
            "rows is shorter than one chunk of --length 16 + 1; use a longer text, a smaller "
            "--batch-size or a shorter --length",
        ),
        ({"text": "/nonexistent/x.txt"}, "/nonexistent/x.txt"),
    ],
)
def test_bad_options(overrides, message, text_file):
    with pytest.raises(ValueError, match=re.escape(message.format(text=text_file))):
        TASK.build(_config(text_file, **overrides))


def test_a_text_too_short_for_validation_and_test(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghijklmnopqrstuvwxyz")
    with pytest.raises(ValueError, match=f"^--text {path} has 26 characters, too few for validation and test"):
        TASK.build({**TASK.defaults, **TINY, "batch_size": 1, "length": 4, "text": str(path)})
