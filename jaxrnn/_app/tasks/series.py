"""A user's time series from a CSV file, one step ahead: ``jaxrnn train --task series --data FILE``.

Forecasting as the sunspots task does: windows of ``window`` past values, MSE on
standardised values, RMSE in the file's units, persistence as the baseline, a
forecast plot. The file is read with :func:`jaxrnn.data.load_csv_series`, whose
``ValueError``s name the file and the line; ``build`` lets them through.
"""

from __future__ import annotations

import os

from jaxrnn import data
from jaxrnn._app.tasks.base import SHARED, Setup, Task, data_path, int_option
from jaxrnn._app.tasks.forecasting import series_setup


def build(config: dict) -> Setup:
    path = data_path(config, "series")
    window = int_option(config, "window")
    column = config.get("column")
    series = data.load_csv_series(path, column)
    try:
        splits = data.windowed_splits(series, window)
    except ValueError as e:
        raise ValueError(f"{path}: {len(series)} values: {e}") from None
    return series_setup(
        config,
        splits,
        xlabel="row",
        ylabel="value" if column is None else str(column),
        title=f"one-step-ahead forecast, test rows of {os.path.basename(path)}",
        persistence_label="persistence (last value)",
    )


TASK = Task(
    "series",
    "your time series (--data FILE.csv, --column NAME), one step ahead (RMSE; the baseline repeats the last value)",
    {
        **SHARED,
        "hidden": 32,
        "window": 20,
        "steps": 400,
        "batch_size": 32,
        "learning_rate": 3e-3,
        "eval_every": 25,
        "data": None,
        "column": None,
    },
    ("rmse", "min"),
    build,
)
