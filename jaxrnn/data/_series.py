"""Datasets for the built-in training tasks, and loaders for users' own files.

Every function here is pure and returns NumPy arrays (``float32`` inputs and
``int32`` class ids, batch-major ``[B, T, F]``); the seeded ones give the same
arrays for the same seed, an ``int`` or a JAX PRNG key.

- :func:`adding`: the adding problem (two marked values among ``T``; the target is
  their sum). Predicting the mean scores :data:`ADDING_BASELINE_MSE`.
- :func:`copy_task`: the copy (memory) task with a delay; chance is
  ``log(num_symbols)`` nats per recalled symbol.
- :func:`sunspots` and :func:`windowed_splits`: one-step forecasting on windows of a
  series, split in time; :func:`persistence_rmse` is the baseline.
- :func:`digits`: scikit-learn's 8x8 digits read as sequences (rows or pixels).
- :func:`load_text` and :class:`CharVocab`: text for a character language model.
- :func:`load_csv_series` and :func:`load_csv_labelled_text`: users' CSV files.

The default text corpus (``jaxrnn/corpus/default.txt``, about 150 KB) is made of the
docstrings of thirty Python standard-library modules, dedented and otherwise
unchanged, with a header naming the source. No public-domain book ships with the
tools jaxrnn depends on and the package cannot download one; Python's docstrings are
English prose under the Python Software Foundation License Version 2, which allows
redistribution in any form provided the PSF's copyright notice and license are
retained: the header carries the notice and ``jaxrnn/corpus/LICENSE-PSF.txt`` is
Python's own LICENSE file.

``sunspots`` needs statsmodels and ``digits`` scikit-learn (``pip install
'jaxrnn[tasks]'``); both are imported only when called.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import math
import os
from typing import NamedTuple

import numpy as np

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting the mean target (1.0) on the adding problem.

The target is the sum of two independent ``U(0, 1)`` values, so its variance is
``2 * 1/12 = 1/6``.
"""

_TASKS_EXTRA = "pip install 'jaxrnn[tasks]'"


class AddingBatch(NamedTuple):
    """A batch of the adding problem."""

    xs: np.ndarray  # [B, T, 2] float32: (value, marker)
    targets: np.ndarray  # [B] float32: the sum of the two marked values


class CopyBatch(NamedTuple):
    """A batch of the copy task."""

    xs: np.ndarray  # [B, T, num_symbols + 2] float32, one-hot of the input ids
    targets: np.ndarray  # [B, T] int32: the ids to predict at each step
    mask: np.ndarray  # [B, T] float32: 1.0 at the recall steps, 0.0 elsewhere


class Scaler(NamedTuple):
    """Standardisation ``(x - mean) / std`` with statistics of a training split."""

    mean: float
    std: float

    def unscale(self, x):
        """Map scaled values (such as predictions) back to the original units."""
        return np.asarray(x, np.float64) * self.std + self.mean


class SeriesSplit(NamedTuple):
    """One split of a windowed series: ``window`` past values -> the next value."""

    xs: np.ndarray  # [N, window, 1] float32, scaled
    ys: np.ndarray  # [N] float32, scaled: the value right after each window
    times: np.ndarray  # [N] float64: the time of each target (the year, for sunspots)
    scaler: Scaler  # the training split's statistics, shared by all three splits


class SeriesData(NamedTuple):
    """A series windowed and split in time (train first, then validation, then test)."""

    train: SeriesSplit
    val: SeriesSplit
    test: SeriesSplit
    scaler: Scaler


class Labelled(NamedTuple):
    """Sequences with one class id each."""

    xs: np.ndarray  # [N, T, F] float32
    labels: np.ndarray  # [N] int32


class Digits(NamedTuple):
    """The digits data set, split into train and test."""

    train: Labelled
    test: Labelled
    num_classes: int


class LabelledText(NamedTuple):
    """Texts with one label each, as read by :func:`load_csv_labelled_text`."""

    texts: list  # [N] str
    labels: np.ndarray  # [N] int32: index into ``classes``
    classes: tuple  # the distinct labels, sorted


def _rng(seed) -> np.random.Generator:
    """A NumPy generator from an ``int`` seed or a JAX PRNG key (typed or raw ``uint32``)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or a JAX PRNG key, got {seed}")
        return np.random.default_rng(int(seed))
    import jax  # only for keys; the rest of the module is NumPy

    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        seed = jax.random.key_data(seed)
    words = np.asarray(seed)
    if words.dtype != np.uint32 or words.ndim != 1:
        raise ValueError(f"seed must be a non-negative int or a single JAX PRNG key, got {type(seed).__name__} "
                         f"of dtype {words.dtype} and shape {words.shape}")
    return np.random.default_rng([int(w) for w in words])


def _check_positive(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int of at least {minimum}, got {value!r}")


def _check_split(split, parts: int) -> tuple:
    fractions = tuple(split) if isinstance(split, (tuple, list)) else ()
    if (len(fractions) != parts or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions)
            or not math.isclose(sum(fractions), 1.0)):
        raise ValueError(f"split must be {parts} fractions in (0, 1) that sum to 1, got {split!r}")
    return fractions


def adding(seed, batch: int, length: int) -> AddingBatch:
    """A batch of the adding problem.

    Each sequence has ``length`` steps of two features: a value drawn from
    ``U(0, 1)`` and a marker that is 1 at exactly two steps, one drawn uniformly from
    the first half ``[0, length // 2)`` and one from the second ``[length // 2,
    length)``, and 0 elsewhere. The target is the sum of the two marked values.
    Predicting the mean, 1, scores :data:`ADDING_BASELINE_MSE` = 1/6.

    Args:
      seed: an ``int`` or a JAX PRNG key.
      batch: number of sequences ``B``.
      length: steps per sequence ``T``, at least 2.

    Returns:
      ``AddingBatch(xs [B, T, 2] float32, targets [B] float32)``.

    Raises:
      ValueError: ``batch`` below 1, ``length`` below 2, or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> xs, targets = data.adding(0, batch=4, length=10)
      >>> xs.shape, xs.dtype, targets.shape
      ((4, 10, 2), dtype('float32'), (4,))
      >>> xs[..., 1].sum(axis=1).tolist()
      [2.0, 2.0, 2.0, 2.0]

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997;
      Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
      rectified linear units", arXiv:1504.00941, 2015.
    """
    _check_positive("batch", batch)
    _check_positive("length", length, 2)
    rng = _rng(seed)
    values = rng.uniform(0.0, 1.0, (batch, length)).astype(np.float32)
    half = length // 2
    rows = np.arange(batch)
    first = rng.integers(0, half, batch)
    second = rng.integers(half, length, batch)
    markers = np.zeros((batch, length), np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return AddingBatch(np.stack([values, markers], axis=-1), targets)


def copy_task(seed, batch: int, num_symbols: int = 8, sequence_length: int = 10, delay: int = 20) -> CopyBatch:
    """A batch of the copy task with a delay.

    Input ids: ``0`` is the blank, ``1 .. num_symbols`` are symbols and
    ``num_symbols + 1`` is the delimiter. Each sequence has ``T = 2 *
    sequence_length + delay`` steps: ``sequence_length`` random symbols, ``delay - 1``
    blanks, the delimiter, then ``sequence_length`` blanks during which the network
    must output the symbols in order. The target is the blank everywhere else.
    ``mask`` marks the recall steps.

    A model that has forgotten the symbols but knows the format scores
    ``log(num_symbols)`` nats of cross-entropy per recall step (``log 8 ≈ 2.079``),
    or ``sequence_length * log(num_symbols) / T`` averaged over all steps, the
    baseline of Arjovsky et al.

    Args:
      seed: an ``int`` or a JAX PRNG key.
      batch: number of sequences ``B``.
      num_symbols: distinct symbols to copy, at least 1.
      sequence_length: symbols per sequence ``L``, at least 1.
      delay: steps from the last symbol to the last step before recall, at least 1
        (the delimiter takes the last of them).

    Returns:
      ``CopyBatch(xs [B, T, num_symbols + 2] float32 one-hot, targets [B, T] int32,
      mask [B, T] float32)``.

    Raises:
      ValueError: an argument below its minimum, or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> xs, targets, mask = data.copy_task(0, batch=2, num_symbols=3, sequence_length=4, delay=2)
      >>> xs.shape, targets.shape, mask.shape
      ((2, 10, 5), (2, 10), (2, 10))
      >>> xs[0].argmax(-1).tolist()
      [3, 2, 2, 1, 0, 4, 0, 0, 0, 0]
      >>> targets[0].tolist()
      [0, 0, 0, 0, 0, 0, 3, 2, 2, 1]

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks", ICML
      2016, section 4.1; Hochreiter & Schmidhuber, Neural Computation 1997.
    """
    _check_positive("batch", batch)
    _check_positive("num_symbols", num_symbols)
    _check_positive("sequence_length", sequence_length)
    _check_positive("delay", delay)
    symbols = _rng(seed).integers(1, num_symbols + 1, (batch, sequence_length))
    steps = 2 * sequence_length + delay
    recall = sequence_length + delay
    inputs = np.zeros((batch, steps), np.int32)
    inputs[:, :sequence_length] = symbols
    inputs[:, recall - 1] = num_symbols + 1
    targets = np.zeros((batch, steps), np.int32)
    targets[:, recall:] = symbols
    mask = np.zeros((batch, steps), np.float32)
    mask[:, recall:] = 1.0
    xs = np.eye(num_symbols + 2, dtype=np.float32)[inputs]
    return CopyBatch(xs, targets, mask)


def windowed_splits(series, window: int, *, split=(0.7, 0.15, 0.15), times=None) -> SeriesData:
    """Windows of a series for one-step forecasting, split in time and standardised.

    The series' steps are cut in order into train, validation and test parts of
    ``round(fraction * len(series))`` steps (the test part takes the rest). A
    window's target belongs to the part its step falls in, so no target is in two
    splits; a window may reach back into the previous part for its inputs (those
    values are known by then). The first ``window`` steps are only inputs. All
    values are scaled with the mean and standard deviation of the train part alone.

    Args:
      series: ``[T]`` numbers, oldest first.
      window: past values per input, at least 1.
      split: train, validation and test fractions, each in (0, 1), summing to 1.
      times: ``[T]`` the time of each step (default ``0 .. T-1``).

    Returns:
      ``SeriesData(train, val, test, scaler)``, each split ``SeriesSplit(xs [N,
      window, 1] float32, ys [N] float32, times [N] float64, scaler)``.

    Raises:
      ValueError: a series that is not 1-D, finite and non-constant on the train
        part, ``times`` of another length, a bad ``split``, or a ``window`` that
        leaves a split without targets.

    Example:
      >>> import numpy as np
      >>> from jaxrnn import data
      >>> d = data.windowed_splits(np.arange(20.0), 3, split=(0.5, 0.25, 0.25))
      >>> d.train.xs.shape, d.val.times.tolist(), d.test.times.tolist()
      ((7, 3, 1), [10.0, 11.0, 12.0, 13.0, 14.0], [15.0, 16.0, 17.0, 18.0, 19.0])
      >>> print(round(d.scaler.mean, 3), round(d.scaler.std, 3))
      4.5 2.872
    """
    values = np.asarray(series, np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"series must be 1-D and finite, got shape {values.shape}"
                         + ("" if values.ndim != 1 else " with non-finite values"))
    steps = np.arange(len(values), dtype=np.float64) if times is None else np.asarray(times, np.float64)
    if steps.shape != values.shape:
        raise ValueError(f"times must have the series' shape {values.shape}, got {steps.shape}")
    _check_positive("window", window)
    fractions = _check_split(split, 3)
    n_train = round(fractions[0] * len(values))
    n_val = round(fractions[1] * len(values))
    bounds = [(window, n_train), (n_train, n_train + n_val), (n_train + n_val, len(values))]
    for name, (start, stop) in zip(("train", "val", "test"), bounds):
        if stop <= max(start, window):
            raise ValueError(f"window={window} with split={split} leaves the {name} split of a series of "
                             f"{len(values)} steps without targets; use a shorter window or a larger {name} fraction")
    train_values = values[:n_train]
    scaler = Scaler(float(train_values.mean()), float(train_values.std()))
    if scaler.std == 0.0:
        raise ValueError("series is constant on the train split, so it cannot be standardised")
    scaled = ((values - scaler.mean) / scaler.std).astype(np.float32)

    def make(start, stop):
        targets = np.arange(max(start, window), stop)
        xs = scaled[targets[:, None] - window + np.arange(window)]
        return SeriesSplit(xs[..., None], scaled[targets], steps[targets], scaler)

    return SeriesData(*(make(*b) for b in bounds), scaler)


def sunspots(window: int, *, split=(0.7, 0.15, 0.15)) -> SeriesData:
    """Yearly sunspot numbers (1700-2008, 309 values) windowed for one-step forecasting.

    The ``SUNACTIVITY`` column of ``statsmodels.datasets.sunspots``, through
    :func:`windowed_splits`: split in time, scaled with the train split's statistics,
    ``times`` the year of each target. :func:`persistence_rmse` gives the baseline.

    Args:
      window: past years per input, at least 1.
      split: train, validation and test fractions, each in (0, 1), summing to 1.

    Returns:
      ``SeriesData(train, val, test, scaler)`` as :func:`windowed_splits`.

    Raises:
      ImportError: statsmodels is not installed.
      ValueError: a bad ``window`` or ``split``.

    Example:
      >>> from jaxrnn import data
      >>> d = data.sunspots(10)
      >>> d.train.xs.shape, d.val.xs.shape, d.test.xs.shape
      ((206, 10, 1), (46, 10, 1), (47, 10, 1))
      >>> int(d.train.times[0]), int(d.test.times[-1])
      (1710, 2008)
    """
    try:
        from statsmodels.datasets import sunspots as dataset
    except ImportError as e:
        raise ImportError(f"jaxrnn.data.sunspots needs statsmodels: {_TASKS_EXTRA}") from e
    frame = dataset.load_pandas().data
    return windowed_splits(frame["SUNACTIVITY"].to_numpy(np.float64), window, split=split,
                           times=frame["YEAR"].to_numpy(np.float64))


def persistence_rmse(split: SeriesSplit) -> float:
    """RMSE, in the series' original units, of predicting each target by the last input.

    The "tomorrow equals today" baseline that a forecasting model has to beat.

    Args:
      split: a :class:`SeriesSplit`, such as ``sunspots(10).test``.

    Returns:
      The root mean squared error as a Python float.

    Example:
      >>> import numpy as np
      >>> from jaxrnn import data
      >>> d = data.windowed_splits(np.arange(20.0) ** 2, 2, split=(0.5, 0.25, 0.25))
      >>> data.persistence_rmse(d.test)  # targets 15**2 .. 19**2, each 2t - 1 above the last
      33.1...
    """
    errors = split.scaler.unscale(split.ys) - split.scaler.unscale(split.xs[:, -1, 0])
    return float(np.sqrt(np.mean(errors**2)))


def digits(*, by: str = "rows", split=(0.8, 0.2), seed=0) -> Digits:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) as sequences.

    Pixels (0 to 16) are divided by 16 into [0, 1]. ``by="rows"`` reads each image
    as 8 steps of its 8 rows; ``by="pixels"`` as 64 steps of one pixel, row by row.
    The split is shuffled with ``seed`` and stratified, so each class has the same
    share in train and test.

    Args:
      by: ``"rows"`` (``[N, 8, 8]``) or ``"pixels"`` (``[N, 64, 1]``).
      split: train and test fractions, each in (0, 1), summing to 1.
      seed: an ``int`` or a JAX PRNG key for the shuffle.

    Returns:
      ``Digits(train=Labelled(xs, labels), test=Labelled(xs, labels), num_classes=10)``
      with ``xs`` float32 and ``labels`` int32.

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: an unknown ``by``, a bad ``split`` or a bad ``seed``.

    Example:
      >>> from jaxrnn import data
      >>> d = data.digits(by="pixels")
      >>> d.train.xs.shape, d.test.xs.shape, d.train.labels.dtype, d.num_classes
      ((1437, 64, 1), (360, 64, 1), dtype('int32'), 10)
    """
    if by not in ("rows", "pixels"):
        raise ValueError(f"by must be 'rows' or 'pixels', got {by!r}")
    fractions = _check_split(split, 2)
    rng = _rng(seed)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError(f"jaxrnn.data.digits needs scikit-learn: {_TASKS_EXTRA}") from e
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    xs = images if by == "rows" else images.reshape(len(images), 64, 1)
    labels = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        xs, labels, test_size=fractions[1], stratify=labels, random_state=int(rng.integers(2**31 - 1)))
    return Digits(Labelled(x_train, y_train), Labelled(x_test, y_test), 10)


def _read_utf8(path) -> str:
    """A file's text; ValueError naming the file if it is missing, not UTF-8 or empty."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{name}: is a directory, expected a file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{name}: line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                         "save the file as UTF-8") from None
    if not text.strip():
        raise ValueError(f"{name}: the file is empty")
    return text


def load_text(path=None) -> str:
    """A text for a character language model: a UTF-8 file, or the corpus that ships.

    Without ``path``, the default corpus: about 150 KB of English prose, the
    docstrings of Python standard-library modules (PSF License; see the module
    docstring and ``jaxrnn/corpus/``).

    Args:
      path: a UTF-8 text file, or ``None`` for the default corpus.

    Returns:
      The text, a ``str``.

    Raises:
      ValueError: the file is missing, not UTF-8 or empty; the message names it.

    Example:
      >>> from jaxrnn import data
      >>> text = data.load_text()
      >>> 100_000 < len(text) < 200_000, text.splitlines()[0]
      (True, 'jaxrnn default character-language-model corpus')
    """
    if path is None:
        return (importlib.resources.files("jaxrnn") / "corpus" / "default.txt").read_text("utf-8")
    return _read_utf8(path)


class CharVocab(NamedTuple):
    """The characters of a text, each with an id: its index in ``chars`` (sorted).

    Example:
      >>> from jaxrnn import data
      >>> vocab = data.CharVocab.from_text("hello world")
      >>> vocab.chars, vocab.size
      (' dehlorw', 8)
      >>> ids = vocab.encode("hold")
      >>> ids.tolist(), ids.dtype
      ([3, 5, 4, 1], dtype('int32'))
      >>> vocab.decode(ids)
      'hold'
    """

    chars: str  # the distinct characters, sorted

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of every character in ``text`` (ValueError if it is empty)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {type(text).__name__} of length "
                             f"{len(text) if isinstance(text, str) else 'n/a'}")
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        """Number of distinct characters, the size of a one-hot input or a softmax output."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as ``[len(text)]`` int32 ids; ValueError listing unknown characters."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            shown = ", ".join(repr(c) for c in unknown[:5]) + more
            raise ValueError(f"text has {len(unknown)} characters outside the vocabulary: {shown}; build the "
                             "vocabulary with CharVocab.from_text on a text that contains them")
        return np.fromiter((index[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        """The text of ``[N]`` integer ids; ValueError for ids outside ``[0, size)``."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-D integer array, got dtype {ids.dtype} and shape {ids.shape}")
        bad = ids[(ids < 0) | (ids >= self.size)]
        if bad.size:
            raise ValueError(f"ids must be in [0, {self.size}), got {bad[:5].tolist()}")
        return "".join(self.chars[i] for i in ids.tolist())


def _csv_rows(path):
    """``(name, [(line_number, fields), ...])`` of a CSV file, skipping blank lines."""
    name = os.fspath(path)
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""), strict=True)
    rows = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, [f.strip() for f in fields]))
    except csv.Error as e:
        raise ValueError(f"{name}: line {reader.line_num}: malformed CSV ({e}); check the quotes") from None
    if not rows:
        raise ValueError(f"{name}: the file has no fields, only separators")
    return name, rows


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_csv_series(path, column=None) -> np.ndarray:
    """A numeric time series from a CSV file: one value per row, oldest first.

    The file has one column, or several and ``column`` picks one, by header name or
    by 0-based index. A first row whose chosen field is not a number is a header
    (required when ``column`` is a name). Blank lines are skipped.

    Args:
      path: the CSV file, UTF-8.
      column: a header name, a 0-based index, or ``None`` for a one-column file.

    Returns:
      ``[T]`` float32 values; pass them to :func:`windowed_splits`.

    Raises:
      ValueError: the message names the file and, where there is one, the line:
        missing, not UTF-8 or empty file; no such column; several columns and no
        ``column``; a row with another number of fields than the first; a value
        that is not a finite number; a header and no data.

    Example:
      >>> import pathlib, tempfile
      >>> from jaxrnn import data
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "flow.csv"
      >>> _ = path.write_text("day,flow\\n1,2.5\\n2,3.0\\n")
      >>> data.load_csv_series(path, column="flow").tolist()
      [2.5, 3.0]
    """
    name, rows = _csv_rows(path)
    first_line, first = rows[0]
    width = len(first)
    if column is None:
        if width != 1:
            raise ValueError(f"{name}: line {first_line}: {width} fields, expected 1; pass column= (a header "
                             "name or a 0-based index) to pick one")
        index = 0
    elif isinstance(column, str):
        if column not in first:
            raise ValueError(f"{name}: line {first_line}: no column named {column!r} in the header {first}")
        index = first.index(column)
    elif isinstance(column, (int, np.integer)) and not isinstance(column, bool) and 0 <= column < width:
        index = int(column)
    else:
        raise ValueError(f"{name}: line {first_line}: column must be a header name or an index in "
                         f"[0, {width}), got {column!r}")
    has_header = isinstance(column, str) or _number(first[index]) is None
    values = []
    for line, fields in rows[1:] if has_header else rows:
        if len(fields) != width:
            raise ValueError(f"{name}: line {line}: {len(fields)} fields, expected {width} as on line {first_line}")
        value = _number(fields[index])
        if value is None:
            raise ValueError(f"{name}: line {line}: {fields[index]!r} is not a finite number")
        values.append(value)
    if not values:
        raise ValueError(f"{name}: line {first_line} is a header and no data rows follow it")
    return np.asarray(values, np.float32)


def load_csv_labelled_text(path) -> LabelledText:
    """Labelled texts from a CSV file of rows ``label,text``.

    An optional first row ``label,text`` is a header. Texts that contain commas must
    be quoted (``"a, b"``) as in any CSV file. Blank lines are skipped.

    Args:
      path: the CSV file, UTF-8.

    Returns:
      ``LabelledText(texts [N] str, labels [N] int32, classes)``; ``labels`` index
      into ``classes``, the distinct labels sorted.

    Raises:
      ValueError: the message names the file and, where there is one, the line:
        missing, not UTF-8 or empty file; a row without exactly 2 fields; an empty
        label or text; a header and no data.

    Example:
      >>> import pathlib, tempfile
      >>> from jaxrnn import data
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
      >>> _ = path.write_text('label,text\\npos,"good, really"\\nneg,dull\\n')
      >>> d = data.load_csv_labelled_text(path)
      >>> d.texts, d.labels.tolist(), d.classes
      (['good, really', 'dull'], [1, 0], ('neg', 'pos'))
    """
    name, rows = _csv_rows(path)
    if [f.lower() for f in rows[0][1]] == ["label", "text"]:
        header_line, rows = rows[0][0], rows[1:]
        if not rows:
            raise ValueError(f"{name}: line {header_line} is a header and no data rows follow it")
    pairs = []
    for line, fields in rows:
        if len(fields) != 2:
            raise ValueError(f"{name}: line {line}: {len(fields)} fields, expected 2 (label,text); quote a "
                             'text that contains commas: label,"a, b"')
        if not fields[0] or not fields[1]:
            raise ValueError(f"{name}: line {line}: empty {'label' if not fields[0] else 'text'}")
        pairs.append(fields)
    classes = tuple(sorted({label for label, _ in pairs}))
    ids = {c: i for i, c in enumerate(classes)}
    return LabelledText([text for _, text in pairs], np.asarray([ids[label] for label, _ in pairs], np.int32),
                        classes)
