"""Forecast your own time series from a CSV file.

``data.load_csv_series(path, column)`` reads one numeric column (a header row is
optional; a malformed line raises an error naming the file and the line), and
``data.windowed_splits(series, window)`` cuts it into windows of ``window`` past
values and the value after each, split in time and standardised with the train
split's statistics. The rest is the same small forecaster as ``sunspots.py``.

Without ``--data`` the script writes an example file first: a noisy series with a
weekly and a yearly cycle, so there is something to forecast. The baseline is
persistence, "the next value equals the last one".

Run: ``python examples/own_data.py [--data FILE.csv] [--column NAME] [--steps N]``.
The same data trains from the command line with
``jaxrnn train --task series --data FILE.csv``.
"""

import argparse
import pathlib
import tempfile

import jax
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train


def write_example_csv(path: pathlib.Path, days: int = 730, seed: int = 0) -> None:
    """A made-up daily series: weekly and yearly cycles plus noise, with a header."""
    t = np.arange(days)
    noise = np.random.default_rng(seed).normal(0.0, 0.3, days)
    values = 10 + 2 * np.sin(2 * np.pi * t / 7) + 3 * np.sin(2 * np.pi * t / 365) + noise
    path.write_text("demand\n" + "\n".join(f"{v:.3f}" for v in values) + "\n")


def main(path, column=None, steps=300, window=14, seed=0):
    series = data.load_csv_series(path, column)
    splits = data.windowed_splits(series, window)
    model, head = jr.GRU(input_size=1, hidden_size=32), jr.readout(1)
    key = jax.random.key(seed)
    params = (model.init(jax.random.fold_in(key, 0)), head.init(jax.random.fold_in(key, 1), model.output_size))

    @jax.jit
    def predict(params, xs):
        ys, _ = model.apply(params[0], xs)
        return head.apply(params[1], ys[:, -1])[:, 0]

    def loss_fn(params, batch, rng):
        return train.mse(predict(params, batch["xs"]), batch["ys"]), {}

    optimizer = train.default_optimizer(3e-3)
    state = train.init_state(params, optimizer, jax.random.fold_in(key, 2))
    train_step = train.make_train_step(loss_fn, optimizer)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = rng.choice(len(splits.train.ys), size=32, replace=False)
        state, _ = train_step(state, {"xs": splits.train.xs[batch], "ys": splits.train.ys[batch]})

    # RMSE in the file's units: the scaled error times the train split's std.
    test_rmse = float(train.rmse(predict(state.params, splits.test.xs), splits.test.ys)) * splits.scaler.std
    print(f"{len(series)} values from {path}; {len(splits.train.ys)} training windows of {window}")
    print(f"test RMSE {test_rmse:.3f}  (persistence {data.persistence_rmse(splits.test):.3f})")
    return test_rmse


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=None, help="a CSV file (default: write an example)")
    parser.add_argument("--column", default=None, help="column name or 0-based index (default: the only one)")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    column = int(args.column) if args.column is not None and args.column.isdigit() else args.column
    if args.data is None:
        with tempfile.TemporaryDirectory() as folder:
            example = pathlib.Path(folder) / "demand.csv"
            write_example_csv(example)
            main(example, "demand", args.steps)
    else:
        main(args.data, column, args.steps)
