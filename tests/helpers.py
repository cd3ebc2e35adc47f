"""Shared test fixtures: the cells under test and independent references."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn._core.checks import carry_dtype

HIDDEN = 5
INPUT = 3

# name -> cell factory; the product the tests run over.
CELLS = {
    "elman_tanh": lambda h: jr.elman(h),
    "elman_relu": lambda h: jr.elman(h, activation="relu"),
    "lstm": lambda h: jr.lstm(h),
    "gru": lambda h: jr.gru(h),
    "layer_norm_lstm": lambda h: jr.layer_norm_lstm(h),
}


def make(name, dtype=jnp.float64, *, batch=4, steps=7, seed=0):
    """A cell, its params and inputs ``[B, T, I]`` of ``dtype``."""
    cell = CELLS[name](HIDDEN)
    k_p, k_x = jax.random.split(jax.random.PRNGKey(seed))
    params = cell.init(k_p, INPUT, dtype=dtype)
    # Larger weights than the default make saturation and sign errors visible.
    params = jax.tree_util.tree_map(lambda a: a * jnp.asarray(1.5, a.dtype), params)
    xs = jax.random.normal(k_x, (batch, steps, INPUT), dtype)
    return cell, params, xs


def loop_rnn(cell, params, xs, state=None):
    """Reference: a Python loop of ``cell.step`` over one unpadded sequence ``xs [T, I]``."""
    if state is None:
        state = cell.initial_state((), dtype=carry_dtype(xs.dtype))
    ys = []
    for t in range(xs.shape[0]):
        state, y = cell.step(params, state, xs[t])
        ys.append(y)
    ys = jnp.stack(ys) if ys else jnp.zeros((0, cell.hidden_size), jax.tree_util.tree_leaves(state)[0].dtype)
    return ys, state


def loop_rnn_padded(cell, params, xs, lengths, *, reverse=False, state=None):
    """Reference for a padded batch: each sequence run alone, unpadded, then re-padded.

    ``state``: initial states with a leading batch axis (zeros if None).
    """
    outs, finals = [], []
    for b in range(xs.shape[0]):
        n = int(lengths[b])
        seq = xs[b, :n]
        if reverse:
            seq = seq[::-1]
        ys, final = loop_rnn(
            cell, params, seq, None if state is None else jax.tree_util.tree_map(lambda s: s[b], state)
        )
        if reverse:
            ys = ys[::-1]
        pad = jnp.zeros((xs.shape[1] - n, cell.hidden_size), ys.dtype)
        outs.append(jnp.concatenate([ys, pad]))
        finals.append(final)
    return jnp.stack(outs), jax.tree_util.tree_map(lambda *a: jnp.stack(a), *finals)


def assert_trees_close(got, want, *, rtol, atol=0.0):
    """Leaf-wise ``allclose`` with the leaf's path in the message."""
    want_leaves = jax.tree_util.tree_leaves(want)
    got_leaves = jax.tree_util.tree_leaves_with_path(got)
    assert len(got_leaves) == len(want_leaves), (len(got_leaves), len(want_leaves))
    for (path, g), w in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(
            np.asarray(g, np.float64),
            np.asarray(w, np.float64),
            rtol=rtol,
            atol=atol,
            err_msg=jax.tree_util.keystr(path),
        )


# A training run small enough for the command-line tests that start it several times:
# `jaxrnn` followed by these arguments and an --out folder.
TINY_TRAIN = ["train", "--task", "adding", "--cell", "elman_tanh", "--hidden", "8", "--length", "5"]
TINY_TRAIN += ["--batch-size", "16", "--steps", "6", "--eval-every", "3"]
