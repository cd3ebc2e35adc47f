"""Write your own recurrent cell and train it with jaxrnn's BPTT.

A cell is anything with ``hidden_size``, ``init``, ``initial_state`` and ``step``.
Here: the minimal gated unit (Zhou et al., 2016), one gate that both forgets and
writes. We check its gradients with ``jr.check_bptt`` and train it to remember
the sign of the first input of a noisy sequence.

Run: ``python examples/custom_cell.py [--steps N]``.
"""

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxrnn as jr


class MGUParams(NamedTuple):
    w: jax.Array  # [I, 2H] input weights of the gate and the candidate
    u_f: jax.Array  # [H, H] recurrent weights of the gate
    u_n: jax.Array  # [H, H] recurrent weights of the candidate
    b: jax.Array  # [2H] biases


class MinimalGatedUnit(NamedTuple):
    r"""f = σ(W_f x + U_f h + b_f);  n = tanh(W_n x + U_n (f ⊙ h) + b_n);  h' = (1 - f) ⊙ h + f ⊙ n."""

    hidden_size: int

    def init(self, key, input_size, dtype=jnp.float32):
        k_w, k_f, k_n = jax.random.split(key, 3)
        h = self.hidden_size
        orthogonal = jax.nn.initializers.orthogonal()
        return MGUParams(
            w=jax.random.normal(k_w, (input_size, 2 * h), dtype) / jnp.sqrt(input_size).astype(dtype),
            u_f=orthogonal(k_f, (h, h), dtype),
            u_n=orthogonal(k_n, (h, h), dtype),
            b=jnp.zeros((2 * h,), dtype),
        )

    def initial_state(self, batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*batch_shape, self.hidden_size), dtype)

    def step(self, params, h, x):
        a_f, a_n = jnp.split(x @ params.w + params.b, 2, axis=-1)
        f = jax.nn.sigmoid(a_f + h @ params.u_f)
        n = jnp.tanh(a_n + (f * h) @ params.u_n)
        h = (1.0 - f) * h + f * n
        return h, h


def sign_task(key, batch=64, steps=20):
    """Inputs [B, T, 1]: noise, and the label is the sign of the first value."""
    xs = jax.random.normal(key, (batch, steps, 1), jnp.float32)
    return xs, (xs[:, 0, 0] > 0).astype(jnp.int32)


def main(steps=300):
    cell = MinimalGatedUnit(hidden_size=16)
    head = jr.readout(2)
    key = jax.random.PRNGKey(0)
    params = (cell.init(key, input_size=1), head.init(jax.random.fold_in(key, 1), cell.hidden_size))

    # Our BPTT for this cell (jax.vjp of step inside a reverse scan) against jax.grad.
    xs, _ = sign_task(key, batch=4, steps=12)
    print(f"check_bptt: max relative error {jr.check_bptt(cell, params[0], xs):.1e}")

    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    def loss_fn(params, xs, labels):
        ys, h_last = jr.rnn(cell, params[0], xs)
        logits = head.apply(params[1], h_last)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def train_step(params, opt_state, key):
        xs, labels = sign_task(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, labels)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for step in range(1, steps + 1):
        params, opt_state, loss = train_step(params, opt_state, jax.random.fold_in(key, step))
        losses.append(float(loss))
        if step % max(1, steps // 5) == 0:
            print(f"step {step:4d}  cross-entropy {sum(losses[-20:]) / len(losses[-20:]):.3f}")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)
