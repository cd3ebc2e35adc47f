"""``jaxrnn`` / ``python -m jaxrnn``: a short demo that trains a small model.

It trains a recurrent network on the adding problem (two marked values among T
random ones; the target is their sum) with Optax and the hand-written BPTT, and
prints the loss as it falls. The MSE of always predicting the mean is about 0.167.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import optax

import jaxrnn as jr

CELLS = {"lstm": jr.LSTM, "gru": jr.GRU, "elman": jr.RNN}


def adding_batch(key: jax.Array, batch: int, steps: int):
    """Adding-problem inputs ``[B, T, 2]`` (value, marker) and targets ``[B]``."""
    k_v, k_i = jax.random.split(key)
    values = jax.random.uniform(k_v, (batch, steps), jnp.float32)
    # One marked position in each half of the sequence.
    half = steps // 2
    first = jax.random.randint(k_i, (batch,), 0, half)
    second = jax.random.randint(jax.random.fold_in(k_i, 1), (batch,), half, steps)
    marks = jax.nn.one_hot(first, steps, dtype=jnp.float32) + jax.nn.one_hot(second, steps, dtype=jnp.float32)
    return jnp.stack([values, marks], axis=-1), jnp.sum(values * marks, axis=1)


def train(cell: str = "lstm", *, steps: int = 400, length: int = 30, hidden: int = 32, batch: int = 64,
          learning_rate: float = 1e-2, seed: int = 0, log_every: int = 50, out=sys.stdout) -> list:
    """Train on the adding problem; returns ``[(step, loss), ...]`` as printed."""
    model = CELLS[cell](input_size=2, hidden_size=hidden)
    head = jr.readout(1)
    key = jax.random.PRNGKey(seed)
    k_model, k_head, k_data = jax.random.split(key, 3)
    params = (model.init(k_model), head.init(k_head, model.output_size))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    opt_state = optimizer.init(params)

    def loss_fn(params, xs, target):
        rnn_params, head_params = params
        ys, _ = model.apply(rnn_params, xs)
        prediction = head.apply(head_params, ys[:, -1])[:, 0]
        return jnp.mean((prediction - target) ** 2)

    @jax.jit
    def train_step(params, opt_state, key):
        xs, target = adding_batch(key, batch, length)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    print(f"adding problem, T={length}: {cell} with {hidden} units, batch {batch}, {steps} Adam steps "
          f"(predicting the mean scores about 0.167)", file=out)
    history, start, running = [], time.perf_counter(), []
    for step in range(1, steps + 1):
        params, opt_state, loss = train_step(params, opt_state, jax.random.fold_in(k_data, step))
        running.append(loss)
        if step % log_every == 0 or step == steps:
            mean = float(jnp.mean(jnp.stack(running)))
            running = []
            history.append((step, mean))
            print(f"step {step:5d}  train MSE {mean:.4f}  ({time.perf_counter() - start:.1f} s)", file=out)
    return history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxrnn", description="Train a small recurrent network on the adding problem and print its loss."
    )
    parser.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="recurrent cell (default lstm)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--length", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    for name in ("steps", "length", "hidden"):
        if getattr(args, name) < (2 if name == "length" else 1):
            parser.error(f"--{name} must be at least {2 if name == 'length' else 1}, got {getattr(args, name)}")
    train(args.cell, steps=args.steps, length=args.length, hidden=args.hidden, seed=args.seed,
          log_every=max(1, args.steps // 8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
