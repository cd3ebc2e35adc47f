"""The copy task: read 10 symbols, wait 20 steps, then write them back in order.

Inputs are one-hot ids: the symbols (1..8), blanks (0) and, one step before the
recall, a delimiter. The network outputs a class at every step, but only the 10
recall steps matter, so the loss and the accuracy are *masked*: the other steps
(whose target is always the blank) are left out of both. A model that knows the
format but has forgotten the symbols recalls 1 in 8 (chance, 0.125) at a
cross-entropy of log 8 = 2.08 nats.

With the defaults (LSTM, 64 units, 3000 steps of 64 sequences, about 35 s on two
CPU cores) test recall accuracy reaches 0.94 at a cross-entropy of 0.16, and is
still climbing.

Run: ``python examples/copy_task.py [--steps N] [--length L] [--delay D]``.
"""

import argparse
import math

import jax

import jaxrnn as jr
from jaxrnn import data, train

NUM_SYMBOLS = 8


def main(steps=3000, length=10, delay=20, seed=0):
    # Inputs: blank, 8 symbols, delimiter. Outputs: blank and the 8 symbols (the
    # delimiter is never a target, so the readout has one class fewer).
    model = jr.LSTM(input_size=NUM_SYMBOLS + 2, hidden_size=64)
    head = jr.readout(NUM_SYMBOLS + 1)
    key = jax.random.key(seed)
    params = (model.init(jax.random.fold_in(key, 0)), head.init(jax.random.fold_in(key, 1), model.output_size))

    def logits(params, xs):
        ys, _ = model.apply(params[0], xs)
        return head.apply(params[1], ys)  # [B, T, classes]: a prediction at every step

    def loss_fn(params, batch, rng):
        # batch["mask"] is 1 at the recall steps only: without it the easy blank targets
        # would dominate the mean and hide whether anything is remembered.
        return train.cross_entropy(logits(params, batch["xs"]), batch["targets"], batch["mask"]), {}

    optimizer = train.default_optimizer(1e-2)
    state = train.init_state(params, optimizer, jax.random.fold_in(key, 2))
    train_step = train.make_train_step(loss_fn, optimizer)

    report_every = max(1, steps // 5)
    for step in range(1, steps + 1):
        batch = data.copy_task(step, batch=64, num_symbols=NUM_SYMBOLS, sequence_length=length, delay=delay)
        state, metrics = train_step(state, batch._asdict())
        if not metrics["finite"]:
            raise FloatingPointError(f"non-finite loss at step {int(state.step)}")
        if step % report_every == 0:
            print(f"step {step:5d}  recall cross-entropy {float(metrics['loss']):.3f}")

    # Test on sequences from a seed that no training step used.
    test = data.copy_task(10**6, batch=1000, num_symbols=NUM_SYMBOLS, sequence_length=length, delay=delay)
    z = jax.jit(logits)(state.params, test.xs)
    loss = float(train.cross_entropy(z, test.targets, test.mask))
    accuracy = float(train.accuracy(z, test.targets, test.mask))
    print(f"test recall cross-entropy {loss:.3f}  (chance {math.log(NUM_SYMBOLS):.3f})")
    print(
        f"test recall accuracy {accuracy:.3f}  (chance {1 / NUM_SYMBOLS:.3f}; "
        f"{length} symbols, delay {delay}, {steps} steps)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--length", type=int, default=10, help="symbols to copy")
    parser.add_argument("--delay", type=int, default=20, help="steps between the last symbol and the recall")
    args = parser.parse_args()
    main(args.steps, args.length, args.delay)
