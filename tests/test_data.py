"""jaxrnn.data: each task checked against an independent computation, each error message tested."""

import importlib.resources
import re

import jax
import numpy as np
import pytest

from jaxrnn import data


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- adding ---------------------------------------------------------------------------------


def test_adding_shapes_dtypes_and_determinism():
    xs, targets = data.adding(3, batch=5, length=11)
    assert xs.shape == (5, 11, 2) and xs.dtype == np.float32
    assert targets.shape == (5,) and targets.dtype == np.float32
    again = data.adding(3, batch=5, length=11)
    np.testing.assert_array_equal(xs, again.xs)
    np.testing.assert_array_equal(targets, again.targets)
    assert not np.array_equal(xs, data.adding(4, batch=5, length=11).xs)


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_adding_accepts_jax_keys(make_key):
    first, second = data.adding(make_key(7), 4, 6), data.adding(make_key(7), 4, 6)
    np.testing.assert_array_equal(first.xs, second.xs)
    assert not np.array_equal(first.xs, data.adding(make_key(8), 4, 6).xs)


@pytest.mark.parametrize("length", [2, 7, 50])
def test_adding_targets_are_the_sum_of_one_marked_value_per_half(length):
    xs, targets = data.adding(0, batch=64, length=length)
    values, markers = xs[..., 0], xs[..., 1]
    assert np.all((values >= 0.0) & (values < 1.0))
    assert set(np.unique(markers).tolist()) <= {0.0, 1.0}
    half = length // 2
    for b in range(64):
        marked = np.flatnonzero(markers[b])
        assert len(marked) == 2 and marked[0] < half <= marked[1]
        assert targets[b] == np.float32(values[b, marked[0]] + values[b, marked[1]])


def test_adding_baseline_mse_is_the_target_variance():
    assert data.ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    _, targets = data.adding(0, batch=200_000, length=4)
    empirical = np.mean((targets.astype(np.float64) - 1.0) ** 2)
    assert empirical == pytest.approx(data.ADDING_BASELINE_MSE, abs=3e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed=0, batch=0, length=5), "batch must be a positive int, got 0."),
        (dict(seed=0, batch=2, length=1), "length must be an int >= 2, got 1."),
        (dict(seed=-1, batch=2, length=5), "seed must be a non-negative int or a JAX PRNG key, got -1"),
        (dict(seed=1.5, batch=2, length=5), "seed must be a non-negative int or a single JAX PRNG key, got float"),
    ],
)
def test_adding_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.adding(**kwargs)


# --- copy task ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_symbols, length, delay", [(8, 10, 20), (3, 4, 1), (1, 2, 5)])
def test_copy_task_recall_targets_are_the_input_symbols(num_symbols, length, delay):
    xs, targets, mask = data.copy_task(1, 16, num_symbols=num_symbols, sequence_length=length, delay=delay)
    steps = 2 * length + delay
    assert xs.shape == (16, steps, num_symbols + 2) and xs.dtype == np.float32
    assert targets.shape == mask.shape == (16, steps)
    assert targets.dtype == np.int32 and mask.dtype == np.float32
    np.testing.assert_array_equal(xs.sum(-1), 1.0)  # one-hot
    ids = xs.argmax(-1)
    symbols = ids[:, :length]
    assert np.all((symbols >= 1) & (symbols <= num_symbols))
    np.testing.assert_array_equal(ids[:, length : length + delay - 1], 0)  # blanks while waiting
    np.testing.assert_array_equal(ids[:, length + delay - 1], num_symbols + 1)  # the delimiter
    np.testing.assert_array_equal(ids[:, length + delay :], 0)  # blanks while recalling
    np.testing.assert_array_equal(targets[:, length + delay :], symbols)
    np.testing.assert_array_equal(targets[:, : length + delay], 0)
    np.testing.assert_array_equal(mask, np.broadcast_to(np.arange(steps) >= length + delay, mask.shape))


def test_copy_task_is_deterministic():
    first, second = data.copy_task(5, 3), data.copy_task(5, 3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.targets, data.copy_task(6, 3).targets)


def test_copy_task_errors():
    with pytest.raises(ValueError, match=re.escape("delay must be a positive int, got 0.")):
        data.copy_task(0, 2, delay=0)
    with pytest.raises(ValueError, match=re.escape("num_symbols must be a positive int, got 0.")):
        data.copy_task(0, 2, num_symbols=0)


# --- series ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_sunspots():
    datasets = pytest.importorskip("statsmodels.datasets")
    frame = datasets.sunspots.load_pandas().data
    return dict(zip(frame["YEAR"].astype(int), frame["SUNACTIVITY"].astype(float)))


def test_sunspots_split_in_time_scaled_by_train(raw_sunspots):
    window = 12
    d = data.sunspots(window)
    years = [s.times.astype(int) for s in (d.train, d.val, d.test)]
    everything = np.concatenate(years)
    # Every year after the first window is the target of exactly one split, in time order.
    np.testing.assert_array_equal(everything, np.arange(1700 + window, 2009))
    assert years[0][-1] < years[1][0] and years[1][-1] < years[2][0]
    train_years = [y for y in raw_sunspots if y < years[1][0]]
    assert len(train_years) == round(0.7 * 309)
    train_values = np.array([raw_sunspots[y] for y in train_years])
    mean, std = train_values.mean(), train_values.std()
    assert d.scaler.mean == pytest.approx(mean, rel=1e-12) and d.scaler.std == pytest.approx(std, rel=1e-12)
    for split in (d.train, d.val, d.test):
        assert split.xs.dtype == split.ys.dtype == np.float32 and split.xs.shape == (len(split.ys), window, 1)
        assert split.scaler == d.scaler
        for i in (0, len(split.ys) // 2, len(split.ys) - 1):
            year = int(split.times[i])
            expected_xs = [(raw_sunspots[y] - mean) / std for y in range(year - window, year)]
            np.testing.assert_allclose(split.xs[i, :, 0], expected_xs, rtol=1e-5, atol=1e-6)
            assert split.ys[i] == pytest.approx((raw_sunspots[year] - mean) / std, abs=1e-5)
    assert abs(float(np.mean(d.train.ys))) < 0.1  # standardised on (nearly) its own values


def test_persistence_rmse_against_numpy(raw_sunspots):
    d = data.sunspots(5)
    for split in (d.train, d.val, d.test):
        years = split.times.astype(int)
        errors = np.array([raw_sunspots[y] - raw_sunspots[y - 1] for y in years])
        assert data.persistence_rmse(split) == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-5)


def test_windowed_splits_custom_split_and_times():
    d = data.windowed_splits(np.sin(np.arange(40.0)), 4, split=(0.5, 0.3, 0.2), times=np.arange(40.0) + 2000)
    assert d.train.times.tolist() == list(range(2004, 2020))
    assert d.val.times.tolist() == list(range(2020, 2032)) and d.test.times.tolist() == list(range(2032, 2040))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((np.zeros((4, 2)), 2), {}, "series must be 1-D and finite, got shape (4, 2)"),
        ((np.array([1.0, np.nan, 2.0]), 1), {}, "with non-finite values"),
        ((np.arange(10.0), 2), dict(times=np.arange(9.0)), "times must have the series' shape (10,), got (9,)"),
        ((np.arange(10.0), 2), dict(split=(0.5, 0.5)), "split must be 3 fractions in (0, 1) that sum to 1"),
        ((np.arange(10.0), 2), dict(split=(0.5, 0.3, 0.3)), "split must be 3 fractions"),
        ((np.arange(10.0), 0), {}, "window must be a positive int, got 0."),
        ((np.arange(10.0), 8), {}, "window=8 with split=(0.7, 0.15, 0.15) leaves the train split"),
        ((np.ones(20), 2), {}, "series is constant on the train split"),
    ],
)
def test_windowed_splits_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        data.windowed_splits(*args, **kwargs)


# --- digits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    return bunch.images, bunch.target


def test_digits_reproduce_the_images_in_a_stratified_split(raw_digits):
    images, target = raw_digits
    rows, pixels = data.digits(by="rows", seed=1), data.digits(by="pixels", seed=1)
    assert rows.num_classes == 10
    assert rows.train.xs.shape == (1437, 8, 8) and pixels.train.xs.shape == (1437, 64, 1)
    for part in (rows.train, rows.test, pixels.train, pixels.test):
        assert part.xs.dtype == np.float32 and part.labels.dtype == np.int32
    np.testing.assert_array_equal(pixels.train.xs.reshape(-1, 8, 8), rows.train.xs)
    np.testing.assert_array_equal(pixels.test.labels, rows.test.labels)
    # Train and test together are the data set, image by image with its label.
    ours = np.concatenate([rows.train.xs, rows.test.xs]) * 16
    labels = np.concatenate([rows.train.labels, rows.test.labels])
    key = lambda imgs, lab: sorted(zip(lab.tolist(), [i.astype(np.int64).tobytes() for i in imgs]))
    assert key(np.rint(ours), labels) == key(images, target)
    np.testing.assert_array_equal(ours, np.rint(ours))
    # Stratified: every class has its share of the test set, to within one image.
    for c in range(10):
        share = np.sum(target == c) * 0.2
        assert abs(np.sum(rows.test.labels == c) - share) <= 1


def test_digits_seed_decides_the_split(raw_digits):
    first, again, other = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    np.testing.assert_array_equal(first.test.xs, again.test.xs)
    assert not np.array_equal(first.test.labels, other.test.labels)


def test_digits_errors():
    with pytest.raises(ValueError, match=re.escape("by must be 'rows' or 'pixels', got 'columns'")):
        data.digits(by="columns")
    message = "split must be 2 fractions in (0, 1) that sum to 1, got (0.8, 0.1)"
    with pytest.raises(ValueError, match=re.escape(message)):
        data.digits(split=(0.8, 0.1))


# --- text -----------------------------------------------------------------------------------


def test_default_corpus_round_trips_through_the_vocabulary():
    corpus = importlib.resources.files("jaxrnn.data") / "corpus"  # package data, as pip installs it
    assert (corpus / "LICENSE-PSF.txt").is_file()
    text = data.load_text()
    assert text == (corpus / "default.txt").read_text("utf-8")
    assert 50_000 < len(text.encode("utf-8")) < 200_000
    assert "Python Software Foundation License" in text[:2000]
    vocab = data.CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert ids.min() == 0 and ids.max() == vocab.size - 1
    assert vocab.decode(ids) == text
    assert list(vocab.chars) == sorted(set(text))


def test_load_text_reads_utf8(tmp_path):
    path = _write(tmp_path, "poem.txt", "Ærø — naïve\n")
    assert data.load_text(path) == data.load_text(str(path)) == "Ærø — naïve\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"fine\nbad \xff byte\n", "line 2: not UTF-8 (byte 0xff at offset 9)"),
    ],
)
def test_load_text_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        data.load_text(path)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: is a directory")):
        data.load_text(tmp_path)


def test_char_vocab_errors():
    vocab = data.CharVocab.from_text("abc")
    with pytest.raises(
        ValueError, match=re.escape("text has 7 characters outside the vocabulary: '1', '2', '3', '4', '5' and 2 more")
    ):
        vocab.encode("a7654321")
    with pytest.raises(ValueError, match=re.escape("ids must be in [0, 3), got [3, -1]")):
        vocab.decode(np.array([0, 3, -1], np.int32))
    with pytest.raises(ValueError, match="ids must be a 1-D integer array, got dtype float32"):
        vocab.decode(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="text must be a non-empty str"):
        data.CharVocab.from_text("")


# --- CSV ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, column, expected",
    [
        ("1\n2.5\n-3e2\n", None, [1.0, 2.5, -300.0]),
        ("flow\n1\n\n2\n", None, [1.0, 2.0]),
        ("day,flow\n1,10\n2,20\n", "flow", [10.0, 20.0]),
        ("day,flow\n1,10\n2,20\n", 0, [1.0, 2.0]),
        ("1,10\n2,20\n", 1, [10.0, 20.0]),
    ],
)
def test_load_csv_series(tmp_path, content, column, expected):
    series = data.load_csv_series(_write(tmp_path, "s.csv", content), column=column)
    assert series.dtype == np.float32 and series.tolist() == expected


@pytest.mark.parametrize(
    "content, column, message",
    [
        ("", None, "the file is empty"),
        ("value\n1\n2\n\nx3\n", None, "line 5: 'x3' is not a finite number"),
        ("value\n1\nnan\n", None, "line 3: 'nan' is not a finite number"),
        ("a,b\n1,2\n3\n", "b", "line 3: 1 fields, expected 2 as on line 1"),
        ("a,b\n1,2\n", "c", "line 1: no column named 'c' in the header ['a', 'b']"),
        ("a,b\n1,2\n", None, "line 1: 2 fields, expected 1; pass column="),
        ("a,b\n1,2\n", 2, "line 1: column must be a header name or an index in [0, 2), got 2"),
        ("value\n", None, "line 1 is a header and no data rows follow it"),
    ],
)
def test_load_csv_series_errors(tmp_path, content, column, message):
    path = _write(tmp_path, "series.csv", content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        data.load_csv_series(path, column=column)


@pytest.mark.parametrize("header", ["", "label,text\n", "Label,Text\n"])
def test_load_csv_labelled_text(tmp_path, header):
    path = _write(tmp_path, "t.csv", header + 'spam,"win, now"\nham,see you\n\nspam,free\n')
    d = data.load_csv_labelled_text(path)
    assert d.texts == ["win, now", "see you", "free"]
    assert d.classes == ("ham", "spam")
    assert d.labels.dtype == np.int32 and d.labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        ("label,text\nham,hi\nspam,win, now\n", "line 3: 3 fields, expected 2 (label,text); quote a text"),
        ("ham,hi\n\nlonely\n", "line 3: 1 fields, expected 2"),
        ("ham,hi\n,no label\n", "line 2: empty label"),
        ("ham,hi\nspam,\n", "line 2: empty text"),
        ("label,text\n", "line 1 is a header and no data rows follow it"),
        ('ham,"unclosed\n', "line 1: malformed CSV (unexpected end of data); check the quotes"),
        ('ham,hi\nspam,"win" now\n', "line 2: malformed CSV (',' expected after '\"')"),
    ],
)
def test_load_csv_labelled_text_errors(tmp_path, content, message):
    path = _write(tmp_path, "texts.csv", content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        data.load_csv_labelled_text(path)


def test_tasks_need_the_extra_when_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tasks(name, *args, **kwargs):
        if name.startswith(("statsmodels", "sklearn")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tasks)
    with pytest.raises(ImportError, match=re.escape("needs statsmodels: pip install 'jaxrnn[tasks]'")):
        data.sunspots(5)
    with pytest.raises(ImportError, match=re.escape("needs scikit-learn: pip install 'jaxrnn[tasks]'")):
        data.digits()
