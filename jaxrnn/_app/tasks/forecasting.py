"""One-step forecasting of a windowed series, shared by the sunspots and series tasks."""

from __future__ import annotations

import jax
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train
from jaxrnn._app import plotting
from jaxrnn._app.tasks.base import Setup, init, last_step, minibatch, model, solver_option


def series_setup(
    config: dict, splits: data.SeriesData, *, xlabel: str, ylabel: str, title: str, persistence_label: str
) -> Setup:
    """The Setup of forecasting ``splits``: MSE on scaled values, RMSE in the series' units, a forecast plot."""
    rnn = model(config, 1)
    seed, batch_size = config["seed"], config["batch_size"]
    std = splits.scaler.std
    head = jr.readout(1)
    forward = last_step(rnn, head, solver_option(config, rnn))

    def as_batch(split, indices=slice(None)) -> dict:
        return {"xs": split.xs[indices], "targets": split.ys[indices]}

    def loss_fn(params, batch, rng):
        predicted, aux = forward(params, batch["xs"], batch)
        return train.mse(predicted[:, 0], batch["targets"]), aux

    def eval_fn(params, batch):
        # RMSE in the series' units: the scaled error times the training split's std.
        return {"rmse": train.rmse(forward(params, batch["xs"])[0][:, 0], batch["targets"]) * std}

    def report(params, out_dir) -> dict:
        test = splits.test
        predicted = splits.scaler.unscale(jax.jit(lambda p, xs: forward(p, xs)[0])(params, test.xs)[:, 0])
        truth = splits.scaler.unscale(test.ys)
        fig, ax = plotting.pyplot().subplots(figsize=(8, 4))
        ax.plot(test.times, truth, "k.-", label="observed")
        ax.plot(test.times, predicted, "C1.-", label=f"{config['cell']} forecast")
        ax.plot(test.times, splits.scaler.unscale(test.xs[:, -1, 0]), "C2:", label=persistence_label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend()
        return {
            "test_rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
            "persistence_rmse": data.persistence_rmse(test),
            "plot": plotting.save_figure(fig, out_dir, "forecast.png", bbox_inches="tight"),
        }

    return Setup(
        init_params=init(rnn, head),
        train_batch=lambda step: as_batch(splits.train, minibatch(seed, step, len(splits.train.ys), batch_size)),
        loss_fn=loss_fn,
        eval_batches=[as_batch(splits.val)],
        eval_fn=eval_fn,
        report=report,
    )
