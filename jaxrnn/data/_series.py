"""Windowed series for one-step forecasting: the split in time, scaling, sunspots and the persistence baseline."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrnn._core.checks import check_positive_int
from jaxrnn.data._common import TASKS_EXTRA, check_split


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
        raise ValueError(
            f"series must be 1-D and finite, got shape {values.shape}"
            + ("" if values.ndim != 1 else " with non-finite values")
        )
    steps = np.arange(len(values), dtype=np.float64) if times is None else np.asarray(times, np.float64)
    if steps.shape != values.shape:
        raise ValueError(f"times must have the series' shape {values.shape}, got {steps.shape}")
    window = check_positive_int(window, "window")
    fractions = check_split(split, 3)
    n_train = round(fractions[0] * len(values))
    n_val = round(fractions[1] * len(values))
    bounds = [(window, n_train), (n_train, n_train + n_val), (n_train + n_val, len(values))]
    for name, (start, stop) in zip(("train", "val", "test"), bounds):
        if stop <= max(start, window):
            raise ValueError(
                f"window={window} with split={split} leaves the {name} split of a series of "
                f"{len(values)} steps without targets; use a shorter window or a larger {name} fraction"
            )
    train_values = values[:n_train]
    scaler = Scaler(float(train_values.mean()), float(train_values.std()))
    if scaler.std == 0.0:
        raise ValueError("series is constant on the train split, so it cannot be standardised")
    scaled = ((values - scaler.mean) / scaler.std).astype(np.float32)

    def make(start, stop):
        targets = np.arange(max(start, window), stop)
        xs = scaled[targets[:, None] - window + np.arange(window)]
        return SeriesSplit(xs[..., None], scaled[targets], steps[targets], scaler)

    train, val, test = (make(*b) for b in bounds)
    return SeriesData(train, val, test, scaler)


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
        raise ImportError(f"jaxrnn.data.sunspots needs statsmodels: {TASKS_EXTRA}") from e
    frame = dataset.load_pandas().data
    return windowed_splits(
        frame["SUNACTIVITY"].to_numpy(np.float64), window, split=split, times=frame["YEAR"].to_numpy(np.float64)
    )


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
