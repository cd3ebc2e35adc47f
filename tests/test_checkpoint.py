"""Checkpoints: bit-exact round trips, exact resume, corruption, crashes mid-save, retention."""

import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn as jr
from jaxrnn.train import _checkpoint as checkpoint

MODEL = jr.LSTM(3, 8, num_layers=2, bidirectional=True, dropout=0.25)
HEAD = jr.readout(1)
OPTIMIZER = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
BATCH = 4
KEYS = {"raw": jax.random.PRNGKey, "typed": jax.random.key}  # uint32[2] and key<fry>[]


def data():
    """Fixed random sequences ``[16, 6, 3]`` and targets ``[16, 6, 1]``."""
    k_x, k_y = jax.random.split(jax.random.PRNGKey(42))
    return jax.random.normal(k_x, (16, 6, 3), jnp.float32), jax.random.normal(k_y, (16, 6, 1), jnp.float32)


def initial_state(key_style):
    k_rnn, k_head = jax.random.split(jax.random.PRNGKey(0))
    params = {"rnn": MODEL.init(k_rnn, jnp.float32), "head": HEAD.init(k_head, MODEL.output_size, jnp.float32)}
    return {
        "params": params,
        "opt_state": OPTIMIZER.init(params),
        "step": jnp.zeros((), jnp.int32),
        "key": KEYS[key_style](1),
    }


def loss_fn(params, xs, ys, key):
    hs, _ = MODEL.apply(params["rnn"], xs, key=key)
    return jnp.mean((HEAD.apply(params["head"], hs) - ys) ** 2)


@jax.jit
def train_step(state, xs, ys):
    """One step; the batch and the dropout masks are drawn from the state's key."""
    key, k_batch, k_dropout = jax.random.split(state["key"], 3)
    index = jax.random.choice(k_batch, xs.shape[0], (BATCH,), replace=False)
    # optax's adam mixes weakly typed Python floats into float32 arithmetic, which
    # the suite's strict dtype promotion (conftest.py) rejects.
    with jax.numpy_dtype_promotion("standard"):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], xs[index], ys[index], k_dropout)
        updates, opt_state = OPTIMIZER.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "key": key}, loss


def train(state, steps):
    xs, ys = data()
    losses = []
    for _ in range(steps):
        state, loss = train_step(state, xs, ys)
        losses.append(float(loss))
    return state, losses


def assert_bit_identical(actual, expected):
    """Same tree, same leaf types and dtypes, same bytes (typed keys compared by their key data)."""
    actual_leaves, actual_tree = jax.tree_util.tree_flatten_with_path(actual)
    expected_leaves, expected_tree = jax.tree_util.tree_flatten_with_path(expected)
    assert actual_tree == expected_tree
    for (path, a), (_, e) in zip(actual_leaves, expected_leaves):
        where = jax.tree_util.keystr(path)
        assert type(a) is type(e), where
        if isinstance(e, jax.Array):
            assert a.dtype == e.dtype, where
            if jnp.issubdtype(e.dtype, jax.dtypes.prng_key):
                assert jax.random.key_impl(a) == jax.random.key_impl(e), where
                a, e = jax.random.key_data(a), jax.random.key_data(e)
        a, e = np.asarray(a), np.asarray(e)
        assert (a.dtype, a.shape, a.tobytes()) == (e.dtype, e.shape, e.tobytes()), where


@pytest.fixture(scope="module", params=sorted(KEYS))
def trained(request):
    """``(key_style, state after 3 training steps)``."""
    return request.param, train(initial_state(request.param), 3)[0]


@pytest.mark.parametrize("template", ["fresh", "eval_shape"])
def test_round_trip_is_bit_exact(tmp_path, trained, template):
    key_style, state = trained
    state = {**state, "epoch": 2, "best_loss": 0.25, "order": np.arange(5, dtype=np.int16)}
    config = {"hidden_size": 8, "lr": 1e-2, "layers": [8, 8], "name": "run", "flag": None}
    path = checkpoint.save(tmp_path, state, step=3, config=config)
    assert path == tmp_path / "ckpt-00000003.ckpt"

    extras = {"epoch": 0, "best_loss": 0.0, "order": np.zeros(5, np.int16)}
    initial = initial_state(key_style) if template == "fresh" else jax.eval_shape(lambda: initial_state(key_style))
    target = {**initial, **extras}
    restored, step, restored_config = checkpoint.restore(path, target)

    assert (step, restored_config) == (3, config)
    assert_bit_identical(restored, state)
    adam = restored["opt_state"][1][0]
    assert isinstance(adam, optax.ScaleByAdamState)
    assert (adam.count.dtype, int(adam.count)) == (jnp.int32, 3)
    assert restored["params"]["rnn"][0].forward.w_ih.dtype == jnp.float32
    key_dtype = jnp.uint32 if key_style == "raw" else jax.random.key(0).dtype
    assert restored["key"].dtype == key_dtype


@pytest.mark.parametrize("key_style", sorted(KEYS))
def test_resume_after_a_crash_gives_exactly_the_same_losses(tmp_path, key_style):
    _, uninterrupted = train(initial_state(key_style), 10)

    state, first = train(initial_state(key_style), 4)
    checkpoint.save(tmp_path, state, step=int(state["step"]), config={"steps": 10})
    del state  # the crash: nothing survives but the directory

    state, step, config = checkpoint.restore(tmp_path, initial_state(key_style))
    assert (step, config, int(state["step"])) == (4, {"steps": 10}, 4)
    _, rest = train(state, 10 - step)

    assert first + rest == uninterrupted
    assert len(set(uninterrupted)) == 10  # the losses move, so the comparison means something


def small_state(key=None):
    key = jax.random.key(0) if key is None else key
    return {
        "params": {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)},
        "key": key,
        "step": jnp.int32(5),
    }


def corrupt(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        flipped = bytearray(data)
        flipped[len(data) - 40] ^= 0x01  # in the payload, just before the 32-byte digest
        path.write_bytes(bytes(flipped))
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif how == "other_format":
        path.write_bytes(flax.serialization.to_bytes(small_state(jax.random.PRNGKey(0))))


@pytest.mark.parametrize(
    "how, problem",
    [
        ("empty", "truncated"),
        ("truncated", "truncated"),
        ("flipped", "checksum mismatch"),
        ("garbage", "not a jaxrnn checkpoint"),
        ("other_format", "not a jaxrnn checkpoint"),
    ],
)
def test_corrupted_newest_checkpoint_is_named_and_skipped(tmp_path, how, problem):
    good = checkpoint.save(tmp_path, small_state(), step=1, config={"run": 1})
    bad = checkpoint.save(tmp_path, small_state(), step=2, config={"run": 1})
    corrupt(bad, how)
    good_bytes, good_stat, bad_bytes = good.read_bytes(), good.stat(), bad.read_bytes()

    with pytest.raises(checkpoint.CheckpointError, match=problem) as error:
        checkpoint.restore(bad, small_state())
    assert str(bad) in str(error.value)

    with pytest.warns(UserWarning, match=f"{bad.name}.*{problem}"):
        assert checkpoint.latest(tmp_path) == good
    with pytest.warns(UserWarning, match=bad.name):
        state, step, _ = checkpoint.restore(tmp_path, small_state())
    assert step == 1
    assert_bit_identical(state, small_state())

    assert (good.read_bytes(), good.stat().st_mtime_ns, bad.read_bytes()) == (
        good_bytes,
        good_stat.st_mtime_ns,
        bad_bytes,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name, bad.name]


@pytest.mark.parametrize("failing, exception", [("replace", OSError), ("fsync", KeyboardInterrupt)])
def test_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, failing, exception):
    previous = checkpoint.save(tmp_path, small_state(), step=1, config={}, keep=1)
    previous_bytes = previous.read_bytes()

    def crash(*args, **kwargs):
        raise exception("simulated crash")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(exception, match="simulated crash"):
        checkpoint.save(tmp_path, small_state(), step=2, config={}, keep=1)
    monkeypatch.undo()

    assert [p.name for p in tmp_path.iterdir()] == [previous.name]  # no partial or temporary file
    assert previous.read_bytes() == previous_bytes
    assert checkpoint.latest(tmp_path) == previous


@pytest.mark.parametrize(
    "steps, keep, kept",
    [
        ((1, 2, 3, 4, 5), 2, (4, 5)),
        ((1, 2, 3), 3, (1, 2, 3)),
        ((1, 2, 3), 1, (3,)),
        ((3, 3), 2, (3,)),  # saving a step again replaces it
        ((10, 20, 5), 2, (5, 20)),  # the checkpoint just written is always kept
    ],
)
def test_keep_retains_the_newest_and_leaves_other_files_alone(tmp_path, steps, keep, kept):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "ckpt-00000000.ckpt").write_bytes(b"someone else's file")
    for step in steps:
        checkpoint.save(tmp_path, small_state(), step=step, config={"step": step}, keep=keep)
    ours = sorted(p.name for p in tmp_path.glob("ckpt-*.ckpt") if p.name != "ckpt-00000000.ckpt")
    assert ours == [f"ckpt-{s:08d}.ckpt" for s in kept]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "ckpt-00000000.ckpt").read_bytes() == b"someone else's file"


@pytest.mark.parametrize(
    "target, message",
    [
        (
            {**small_state(), "params": {"w": jnp.ones((2, 4), jnp.float32), "b": jnp.zeros(3, jnp.float32)}},
            r"at leaf \['params'\]\['w'\]: the checkpoint has float32\[2,3\], the target float32\[2,4\]",
        ),
        (
            {**small_state(), "step": jnp.int64(5)},
            r"at leaf \['step'\]: the checkpoint has int32\[\], the target int64\[\]",
        ),
        (
            small_state(jax.random.PRNGKey(0)),
            r"at leaf \['key'\]: the checkpoint has key<fry>\[\], the target uint32\[2\]",
        ),
        (
            small_state(jax.random.key(0, impl="rbg")),
            r"at leaf \['key'\]: the checkpoint has key<fry>\[\], the target key<rbg>\[\]",
        ),
        (
            {"params": small_state()["params"], "step": jnp.int32(5)},
            r"has leaf \['key'\] where the target has \['params'\]\['b'\]",
        ),
        ({**small_state(), "z": 0}, r"the first leaf only in the target is \['z'\]"),
        (
            {k: v for k, v in small_state().items() if k != "step"},
            r"the first leaf only in the checkpoint is \['step'\]",
        ),
    ],
    ids=["shape", "dtype", "key_style", "key_impl", "renamed", "extra_leaf", "missing_leaf"],
)
def test_mismatch_with_the_target_names_the_leaf(tmp_path, target, message):
    path = checkpoint.save(tmp_path, small_state(), step=1, config={})
    with pytest.raises(checkpoint.CheckpointError, match=message) as error:
        checkpoint.restore(path, target)
    assert str(error.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "kwargs, exception, message",
    [
        (dict(step=-1), ValueError, "step must be an int >= 0, got -1"),
        (dict(step=1.5), ValueError, "step must be an int >= 0, got 1.5"),
        (dict(keep=0), ValueError, "keep must be a positive int, got 0"),
        (dict(config={"f": object}), TypeError, "config must be a JSON-serialisable dict"),
        (dict(config=[1]), TypeError, "config must be a JSON-serialisable dict, got a list"),
        (dict(state={"name": "run"}), TypeError, r"state leaf \['name'\] is a str"),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, kwargs, exception, message):
    arguments = {"state": small_state(), "step": 1, "config": {}, **kwargs}
    with pytest.raises(exception, match=message):
        checkpoint.save(tmp_path, arguments.pop("state"), **arguments)
    assert list(tmp_path.iterdir()) == []


def test_restore_without_a_checkpoint(tmp_path):
    assert checkpoint.latest(tmp_path / "missing") is None
    with pytest.raises(FileNotFoundError, match="holds no jaxrnn checkpoint"):
        checkpoint.restore(tmp_path, small_state())
    with pytest.raises(FileNotFoundError):
        checkpoint.restore(tmp_path / "ckpt-00000001.ckpt", small_state())
