"""Yearly sunspot numbers, one year ahead (RMSE; the baseline repeats the last year)."""

from __future__ import annotations

from jaxrnn import data
from jaxrnn._app.tasks.base import SHARED, Setup, Task, int_option
from jaxrnn._app.tasks.forecasting import series_setup


def build(config: dict) -> Setup:
    window = int_option(config, "window")
    try:
        splits = data.sunspots(window)
    except ValueError as e:
        raise ValueError(f"--window {window} is too long for the 309 yearly values: {e}") from None
    return series_setup(
        config,
        splits,
        xlabel="year",
        ylabel="sunspot number",
        title="one-year-ahead forecast, test years",
        persistence_label="persistence (last year)",
    )


TASK = Task(
    "sunspots",
    "yearly sunspot numbers, one year ahead (RMSE; the baseline repeats the last year)",
    # 206 training windows overfit fast: validation RMSE is best near step 250 (3 s),
    # test RMSE 25.9 against persistence's 29.1 at step 500.
    {**SHARED, "hidden": 32, "window": 20, "steps": 400, "batch_size": 32, "learning_rate": 3e-3, "eval_every": 25},
    ("rmse", "min"),
    build,
)
