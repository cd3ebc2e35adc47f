"""jaxrnn.train: losses and metrics against NumPy / scikit-learn, the guarded train
step, evaluation, early stopping, stream chunks and truncated BPTT across chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.metrics

import jaxrnn as jr
from jaxrnn import train

B, T, C, F = 5, 7, 4, 3


def _optax_promotion():
    # optax's Adam raises its decay (a Python float) to an int32 step count, which
    # jax_numpy_dtype_promotion="strict" (tests/conftest.py) rejects. Only the tests
    # need this; jaxrnn.train never changes JAX's global settings.
    return jax.numpy_dtype_promotion("standard")


def _mask(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "step":
        return rng.random((B, T)) < 0.6
    if kind == "step01":
        return (rng.random((B, T)) < 0.6).astype(np.int32)
    if kind == "sequence":
        return np.array([True, False, True, True, False])
    if kind == "empty":
        return np.zeros((B, T), bool)
    raise ValueError(kind)


def _valid_np(mask, shape):
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask) != 0
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim)), shape)


MASKS = ["none", "step", "step01", "sequence", "empty"]


# ---------------------------------------------------------------------- losses


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("with_features", [False, True])
def test_mse_and_rmse_match_numpy(mask_kind, with_features):
    rng = np.random.default_rng(1)
    shape = (B, T, F) if with_features else (B, T)
    pred, target = rng.normal(size=shape), rng.normal(size=shape)
    mask = _mask(mask_kind)
    valid = _valid_np(mask, shape)
    want = ((pred - target) ** 2)[valid].mean() if valid.any() else 0.0
    got = train.mse(jnp.asarray(pred), jnp.asarray(target), mask)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(train.rmse(jnp.asarray(pred), jnp.asarray(target), mask), np.sqrt(want), rtol=1e-12)
    assert np.isfinite(float(got))


def _log_softmax_np(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("mask_kind", MASKS)
def test_cross_entropy_matches_numpy(mask_kind):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(B, T, C)) * 3
    labels = rng.integers(0, C, size=(B, T))
    mask = _mask(mask_kind)
    valid = _valid_np(mask, (B, T))
    labels = np.where(valid, labels, -100)  # padding labels must be ignored
    nll = -np.take_along_axis(_log_softmax_np(logits), np.maximum(labels, 0)[..., None], axis=-1)[..., 0]
    want = nll[valid].mean() if valid.any() else 0.0
    got = train.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), mask)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_all_masked_loss_has_zero_finite_gradient():
    pred = jnp.ones((B, T))
    grad = jax.grad(lambda p: train.mse(p, jnp.zeros((B, T)), jnp.zeros((B, T), bool)))(pred)
    assert float(jnp.abs(grad).max()) == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: train.mse(jnp.ones((B, T)), jnp.ones((B, T + 1))), r"same shape, got \(5, 7\) and \(5, 8\)"),
        (
            lambda: train.mse(jnp.ones((B, T)), jnp.ones((B, T)), jnp.ones((T,), bool)),
            r"mask must have a leading part .* got shape \(7,\)",
        ),
        (lambda: train.cross_entropy(jnp.ones((B, T, C)), jnp.ones((B, T))), "labels must be an integer array"),
        (
            lambda: train.cross_entropy(jnp.ones((B, C)), jnp.ones((B, T), jnp.int32)),
            r"logits must have shape labels.shape \+ \(num_classes,\)",
        ),
        (lambda: train.accuracy(jnp.ones((B, T)), jnp.ones((B, T), jnp.int32)), "expected logits of shape"),
        (lambda: train.confusion_matrix(jnp.array([0, 5]), jnp.array([0, 1]), 3), r"predictions must lie in \[0, 3\)"),
        (lambda: train.confusion_matrix(jnp.ones((2, 4)), jnp.array([0, 1]), 3), "num_classes = 3 entries"),
        (lambda: train.confusion_matrix(jnp.array([0, 1]), jnp.array([0, 1]), 0), "num_classes must be a positive int"),
    ],
)
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --------------------------------------------------------------------- metrics


def _classification_data(seed, num_classes):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, T, num_classes))
    # Skewed labels, so that some classes have no support or no predictions.
    labels = rng.choice(num_classes, size=(B, T), p=np.r_[0.6, 0.3, 0.1, np.zeros(num_classes - 3)])
    return logits, labels


@pytest.mark.parametrize("mask_kind", ["none", "step", "step01", "sequence"])
@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_match_sklearn(mask_kind, seed):
    num_classes = 6
    logits, labels = _classification_data(seed, num_classes)
    mask = _mask(mask_kind, seed)
    valid = _valid_np(mask, (B, T))
    y, p = labels[valid], logits.argmax(-1)[valid]
    labels = np.where(valid, labels, -1)  # padding must not count, nor wrap to the last class
    args = (jnp.asarray(logits), jnp.asarray(labels))

    np.testing.assert_allclose(train.accuracy(*args, mask), sklearn.metrics.accuracy_score(y, p), rtol=1e-12)
    np.testing.assert_array_equal(
        train.confusion_matrix(*args, num_classes, mask),
        sklearn.metrics.confusion_matrix(y, p, labels=np.arange(num_classes)),
    )
    want = sklearn.metrics.precision_recall_fscore_support(y, p, average="macro", zero_division=0)[:3]
    np.testing.assert_allclose(train.precision_recall_f1(*args, num_classes, mask), want, rtol=1e-12)
    # Integer predictions give the same as logits.
    pred = jnp.asarray(np.where(valid, logits.argmax(-1), -1))
    np.testing.assert_allclose(train.precision_recall_f1(pred, args[1], num_classes, mask), want, rtol=1e-12)


def test_macro_average_skips_classes_seen_nowhere():
    # Class 3 is predicted but never true (P = R = F1 = 0, counted); class 2 is absent (not counted).
    labels, pred = np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1])
    want = sklearn.metrics.precision_recall_fscore_support(labels, pred, average="macro", zero_division=0)[:3]
    got = train.precision_recall_f1(jnp.asarray(pred), jnp.asarray(labels), num_classes=5)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isclose(float(got.recall), (0.5 + 1 + 0) / 3)  # classes 0, 1, 3; not 2 or 4


def test_metrics_of_an_empty_mask_are_zero_and_jit():
    logits, labels = _classification_data(0, C)
    empty = jnp.zeros((B, T), bool)

    @jax.jit
    def metrics(logits, labels, mask):
        return (train.accuracy(logits, labels, mask), *train.precision_recall_f1(logits, labels, C, mask))

    values = metrics(jnp.asarray(logits), jnp.asarray(labels), empty)
    assert [float(v) for v in values] == [0.0] * 4
    assert int(train.confusion_matrix(jnp.asarray(logits), jnp.asarray(labels), C, empty).sum()) == 0


# -------------------------------------------------------------------- training


def _regression_problem(dtype=jnp.float64):
    model, head = jr.LSTM(2, 8), jr.readout(1)
    k_m, k_h, k_x = jax.random.split(jax.random.PRNGKey(0), 3)
    params = train.StreamParams(model.init(k_m, dtype), head.init(k_h, model.output_size, dtype))
    xs = jax.random.normal(k_x, (8, 6, 2), dtype)
    target = jnp.cumsum(xs[..., :1], axis=1) * jnp.asarray(0.5, dtype)  # a running sum: needs memory
    lengths = jnp.array([6, 6, 5, 4, 6, 3, 6, 2])
    mask = jnp.arange(6)[None, :] < lengths[:, None]

    def loss_fn(params, batch, rng):
        ys, _ = model.apply(params.rnn, batch["x"], batch["lengths"])
        pred = head.apply(params.readout, ys)
        return train.mse(pred, batch["y"], batch["mask"]), {"rmse": train.rmse(pred, batch["y"], batch["mask"])}

    batch = {"x": xs, "y": target, "lengths": lengths, "mask": mask}
    return params, loss_fn, batch


@pytest.mark.parametrize("clip_norm", [1.0, None])
def test_lstm_regression_loss_falls(clip_norm):
    params, loss_fn, batch = _regression_problem()
    opt = train.default_optimizer(3e-2, clip_norm=clip_norm)
    step = train.make_train_step(loss_fn, opt)
    state = train.init_state(params, opt, jax.random.PRNGKey(1))
    losses = []
    with _optax_promotion():
        for _ in range(40):
            state, metrics = step(state, batch)
            assert bool(metrics["finite"])
            losses.append(float(metrics["loss"]))
    assert int(state.step) == 40 and state.step.dtype == jnp.int32
    assert losses[-1] < 0.3 * losses[0]
    assert set(metrics) == {"loss", "grad_norm", "finite", "rmse"}
    np.testing.assert_allclose(metrics["rmse"] ** 2, metrics["loss"], rtol=1e-10)
    if clip_norm is not None:
        assert step._cache_size() == 1  # no retrace across steps


def test_train_step_with_schedule_and_grad_norm():
    params, loss_fn, batch = _regression_problem()
    opt = optax.adam(optax.cosine_decay_schedule(init_value=1e-2, decay_steps=10))
    step = train.make_train_step(loss_fn, opt)
    state = train.init_state(params, opt, jax.random.PRNGKey(1))
    grads = jax.grad(lambda p: loss_fn(p, batch, None)[0])(params)
    want_norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(grads)))
    with _optax_promotion():
        new, metrics = step(state, batch)
    np.testing.assert_allclose(metrics["grad_norm"], want_norm, rtol=1e-10)
    assert not np.array_equal(jax.random.key_data(new.rng), jax.random.key_data(state.rng))


def _bad_loss(kind):
    # Finite except where the batch's "poison" is 1: then a NaN loss, or a finite loss
    # whose gradient is not (sqrt(|v|^2 + 1 - poison) at v = 0: sqrt'(0) = inf, times 0).
    def loss_fn(params, batch, rng):
        base = jnp.sum((params["w"] - batch["y"]) ** 2)
        if kind == "nan_loss":
            return jnp.where(batch["poison"] > 0, jnp.nan, base), {}
        return base + jnp.sqrt(jnp.sum(params["v"] ** 2) + 1 - batch["poison"]), {}

    return loss_fn


@pytest.mark.parametrize("kind", ["nan_loss", "inf_grad"])
@pytest.mark.parametrize("key", [jax.random.PRNGKey(3), jax.random.key(3)], ids=["raw_key", "typed_key"])
def test_non_finite_step_returns_input_state(kind, key):
    opt = train.default_optimizer(0.1)
    step = train.make_train_step(_bad_loss(kind), opt)
    state = train.init_state({"w": jnp.zeros(3), "v": jnp.zeros(2)}, opt, key)
    batches = [{"y": jnp.ones(3), "poison": jnp.asarray(float(i == 3))} for i in range(6)]
    flags = []
    with _optax_promotion():
        for i, batch in enumerate(batches):
            before = state
            state, metrics = step(state, batch)
            flags.append(bool(metrics["finite"]))
            if i == 3:
                for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(state)):
                    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                        a, b = jax.random.key_data(a), jax.random.key_data(b)
                    np.testing.assert_array_equal(a, b)
    assert flags == [True, True, True, False, True, True]
    assert int(state.step) == 5  # the bad step was not counted
    assert bool(jnp.all(jnp.isfinite(state.params["w"])))


def test_loss_fn_contract_errors():
    opt = optax.sgd(0.1)
    state = train.init_state(jnp.zeros(3), opt, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"scalar loss, got a loss of shape \(3,\)"):
        train.make_train_step(lambda p, b, r: (p * b, {}), opt)(state, jnp.ones(3))
    with pytest.raises(TypeError, match="aux a dict of metrics, got aux of type tuple"):
        train.make_train_step(lambda p, b, r: (jnp.sum(p * b), ()), opt)(state, jnp.ones(3))


# ------------------------------------------------------------------ evaluation


@pytest.mark.parametrize("weighted", [False, True])
def test_evaluate_weights_batches(weighted):
    rng = np.random.default_rng(4)
    sizes = [3, 5, 1]
    batches = []
    for n in sizes:
        batch = {"x": jnp.asarray(rng.normal(size=(n, T))), "mask": jnp.asarray(rng.random((n, T)) < 0.5)}
        if weighted:
            batch["weight"] = jnp.sum(batch["mask"])
        batches.append(batch)
    eval_step = train.make_eval_step(
        lambda p, b: {"mse": train.mse(b["x"], jnp.zeros_like(b["x"]) + p, b["mask"] if weighted else None)}
    )
    got = train.evaluate(eval_step, 0.5, batches)
    x = [np.asarray(b["x"]) for b in batches]
    if weighted:
        want = np.concatenate([(xi - 0.5)[np.asarray(b["mask"])] ** 2 for xi, b in zip(x, batches)]).mean()
    else:
        want = np.concatenate([((xi - 0.5) ** 2).ravel() for xi in x]).mean()
    assert set(got) == {"mse"}
    np.testing.assert_allclose(got["mse"], want, rtol=1e-12)


def test_evaluate_errors():
    eval_step = train.make_eval_step(lambda p, b: {"m": jnp.sum(b)})
    with pytest.raises(ValueError, match="batches is empty"):
        train.evaluate(eval_step, None, [])
    with pytest.raises(ValueError, match="leading batch axis"):
        train.evaluate(eval_step, None, [jnp.ones(())])
    with pytest.raises(TypeError, match="metric_fn must be callable"):
        train.make_eval_step(3)


# -------------------------------------------------------------- early stopping


@pytest.mark.parametrize(
    "mode, values, patience, stop_at, best, best_step",
    [
        ("min", [3.0, 2.0, 2.5, 2.1, 2.2], 2, 3, 2.0, 1),
        ("min", [3.0, 2.0, 2.5, 1.0, 2.2, 2.3, 2.4], 3, 6, 1.0, 3),
        ("max", [0.1, 0.5, 0.4, 0.5, 0.6], 3, None, 0.6, 4),  # ties do not improve
        ("max", [0.1, 0.5, 0.4, 0.5], 2, 3, 0.5, 1),
        ("min", [float("nan"), 1.0, float("nan")], 1, 0, None, -1),
        ("min", [float("nan"), 1.0, float("nan"), 2.0], 2, 3, 1.0, 1),
    ],
)
def test_early_stopping(mode, values, patience, stop_at, best, best_step):
    es, stopped = train.EarlyStopping(), None
    for step, value in enumerate(values):
        es, stop = train.early_stopping_update(es, value, step, patience=patience, mode=mode)
        if stop:
            stopped = step
            break
    assert stopped == stop_at
    assert (es.best, es.best_step) == (best, best_step)


def test_early_stopping_errors():
    with pytest.raises(ValueError, match="patience must be a positive int, got 0"):
        train.early_stopping_update(train.EarlyStopping(), 1.0, 0, patience=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        train.early_stopping_update(train.EarlyStopping(), 1.0, 0, patience=1, mode="up")


# --------------------------------------------------------------------- streams


def test_stream_chunks_layout():
    # 23 tokens, 2 rows: rows are 0..10 and 11..21 (token 22 dropped); chunks of 3 (+1 target).
    chunks = np.asarray(train.stream_chunks(jnp.arange(23), batch_size=2, chunk_length=3))
    want = np.array(
        [
            [[0, 1, 2, 3], [11, 12, 13, 14]],
            [[3, 4, 5, 6], [14, 15, 16, 17]],
            [[6, 7, 8, 9], [17, 18, 19, 20]],
        ]
    )
    np.testing.assert_array_equal(chunks, want)
    plain = np.asarray(train.stream_chunks(jnp.arange(23), batch_size=2, chunk_length=3, targets=False))
    np.testing.assert_array_equal(plain, want[:, :, :3])
    rows = np.asarray(train.stream_chunks(jnp.arange(22).reshape(2, 11), batch_size=2, chunk_length=3))
    np.testing.assert_array_equal(rows, want)


@pytest.mark.parametrize("n, batch_size, chunk_length", [(100, 4, 7), (50, 1, 49), (64, 8, 1)])
def test_stream_chunks_continue_each_row(n, batch_size, chunk_length):
    chunks = np.asarray(train.stream_chunks(jnp.arange(n), batch_size, chunk_length))
    rows = np.arange(batch_size * (n // batch_size)).reshape(batch_size, -1)
    assert chunks.shape == ((rows.shape[1] - 1) // chunk_length, batch_size, chunk_length + 1)
    inputs = np.concatenate(list(chunks[:, :, :-1]), axis=1)
    np.testing.assert_array_equal(inputs, rows[:, : inputs.shape[1]])
    np.testing.assert_array_equal(chunks[1:, :, 0], chunks[:-1, :, -1])  # targets overlap by one


@pytest.mark.parametrize(
    "args, match",
    [
        (
            (jnp.arange(10), 4, 2),
            r"each of the 4 rows has 2 tokens, fewer than one chunk needs \(chunk_length \+ 1 = 3\)",
        ),
        ((jnp.zeros((3, 10), jnp.int32), 2, 2), r"must have batch_size = 2 rows, got shape \(3, 10\)"),
        ((jnp.zeros((2, 2, 2)), 2, 1), "tokens must be a stream"),
        ((jnp.arange(10), 2, 0), "chunk_length must be a positive int"),
    ],
)
def test_stream_chunks_errors(args, match):
    with pytest.raises(ValueError, match=match):
        train.stream_chunks(*args)


def _stream_model(num_layers):
    model, head = jr.LSTM(F, 6, num_layers), jr.readout(F)
    k_m, k_h = jax.random.split(jax.random.PRNGKey(5))
    params = train.StreamParams(model.init(k_m, jnp.float64), head.init(k_h, model.output_size, jnp.float64))
    return model, head, params


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("split", [1, 5])
def test_carried_chunks_equal_the_whole_sequence(num_layers, split):
    model, head, params = _stream_model(num_layers=num_layers)
    xs = jax.random.normal(jax.random.PRNGKey(6), (B, 9, F), jnp.float64)
    out_a, carry = train.stream_forward(model, head, params, xs[:, :split])
    out_b, final = train.stream_forward(model, head, params, xs[:, split:], carry)
    whole, whole_final = train.stream_forward(model, head, params, xs)
    np.testing.assert_allclose(jnp.concatenate([out_a, out_b], axis=1), whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(whole_final)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_gradient_stops_at_chunk_borders():
    model, head, params = _stream_model(num_layers=2)
    xs = jax.random.normal(jax.random.PRNGKey(7), (B, 10, F), jnp.float64)

    def second_chunk_loss(first, stop):
        if stop:
            _, carry = train.stream_forward(model, head, params, first)
        else:
            _, carry = model.apply(params.rnn, first)
        out, _ = train.stream_forward(model, head, params, xs[:, 5:], carry)
        return train.mse(out[:, :-1], xs[:, 6:])

    truncated = jax.grad(second_chunk_loss)(xs[:, :5], True)
    full = jax.grad(second_chunk_loss)(xs[:, :5], False)
    assert float(jnp.abs(truncated).max()) == 0.0
    assert float(jnp.abs(full).max()) > 1e-6  # without the stop the gradient does flow back


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_stream_train_step_learns_and_carries(loss):
    vocab = 4
    model, head = jr.LSTM(vocab, 12), jr.readout(vocab)
    k_m, k_h = jax.random.split(jax.random.PRNGKey(8))
    params = train.StreamParams(model.init(k_m, jnp.float64), head.init(k_h, 12, jnp.float64))
    # "abcb" repeated: the next token after "b" depends on the one before it, so
    # the carried state matters at chunk borders.
    stream = jnp.tile(jnp.array([0, 1, 2, 1]), 60)
    chunks = train.stream_chunks(stream, batch_size=4, chunk_length=6)
    if loss == "mse":
        chunks = jax.nn.one_hot(chunks, vocab, dtype=jnp.float64)
    opt = train.default_optimizer(5e-2)
    state = train.init_state(params, opt, jax.random.PRNGKey(9))
    step = train.make_stream_train_step(model, head, opt, loss=loss)
    losses = []
    with _optax_promotion():
        for _ in range(4):
            carry = None
            for chunk in chunks:
                state, carry, metrics = step(state, chunk, carry)
                assert bool(metrics["finite"])
                losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.2 * losses[0]
    assert carry[0].h.shape == (4, 12) and carry[0].h.dtype == jnp.float64
    assert step._cache_size() <= 2  # one trace for carry=None, one for a carried state


def test_stream_train_step_errors():
    model, head = jr.LSTM(4, 3), jr.readout(4)
    with pytest.raises(ValueError, match="loss must be one of"):
        train.make_stream_train_step(model, head, optax.sgd(0.1), loss="nll")
    params = train.StreamParams(
        model.init(jax.random.PRNGKey(0), jnp.float64), head.init(jax.random.PRNGKey(1), 3, jnp.float64)
    )
    opt = optax.sgd(0.1)
    step = train.make_stream_train_step(model, head, opt)
    with pytest.raises(ValueError, match=r"integer tokens \[B, L \+ 1\], got shape \(2, 5, 4\)"):
        step(train.init_state(params, opt, jax.random.PRNGKey(2)), jnp.zeros((2, 5, 4)))
