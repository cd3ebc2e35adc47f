"""Truncated BPTT over one long stream: chunks, the carried state, and its train step.

A stream is cut into parallel rows and consecutive chunks (:func:`stream_chunks`);
each chunk starts from the state the previous one ended in, with the gradient
stopped at the border (:func:`stream_forward`, :func:`make_stream_train_step`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn._core.checks import carry_dtype, check_positive_int
from jaxrnn.train._losses import LOSSES, cross_entropy, mse
from jaxrnn.train._parallel import data_parallel
from jaxrnn.train._steps import TrainState, guarded_update

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def stream_chunks(tokens: ArrayLike, batch_size: int, chunk_length: int, *, targets: bool = True) -> Array:
    """Cut one long stream into ``batch_size`` parallel streams and consecutive chunks.

    A 1-D stream of N tokens is trimmed to ``B * (N // B)`` and reshaped to ``[B, M]``
    (row b is the b-th contiguous part of the stream, the usual "batchify"); a 2-D
    ``[B, M]`` input is taken as those rows already. Chunk k of row b is
    ``rows[b, k*L : k*L + L + 1]`` with ``targets=True`` (inputs ``chunk[..., :-1]``,
    next-token targets ``chunk[..., 1:]``; consecutive chunks overlap by one token)
    and ``rows[b, k*L : (k+1)*L]`` without. So chunk k + 1 continues every row of
    chunk k: carry the recurrent state from one to the next (truncated BPTT, see
    :func:`make_stream_train_step`). Tokens that do not fill a chunk are dropped.

    Args:
      tokens: one stream ``[N]``, or its rows ``[B, M]`` already split.
      batch_size: B.
      chunk_length: L, the steps per chunk.
      targets: add the one-token overlap for next-token targets.

    Returns:
      ``[num_chunks, B, L + 1]`` (``[num_chunks, B, L]`` with ``targets=False``),
      ``num_chunks = (M - 1) // L`` (``M // L``).

    Raises:
      ValueError: ``tokens`` is not 1-D or 2-D, a 2-D ``tokens`` has not ``batch_size``
        rows, or the stream is too short for one chunk.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import train
      >>> chunks = train.stream_chunks(jnp.arange(20), batch_size=2, chunk_length=4)
      >>> chunks.shape
      (2, 2, 5)
      >>> chunks[0].tolist(), chunks[1].tolist()
      ([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]], [[4, 5, 6, 7, 8], [14, 15, 16, 17, 18]])
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk_length = check_positive_int(chunk_length, "chunk_length")
    tokens = jnp.asarray(tokens)
    if tokens.ndim == 1:
        per_row = tokens.shape[0] // batch_size
        rows = tokens[: batch_size * per_row].reshape(batch_size, per_row)
    elif tokens.ndim == 2:
        if tokens.shape[0] != batch_size:
            raise ValueError(
                f"a 2-D tokens [B, M] must have batch_size = {batch_size} rows, got shape {tuple(tokens.shape)}; "
                f"pass a 1-D stream to split it into rows."
            )
        rows = tokens
    else:
        raise ValueError(f"tokens must be a stream [N] or rows [B, M], got shape {tuple(tokens.shape)}.")
    overlap = 1 if targets else 0
    num_chunks = (rows.shape[1] - overlap) // chunk_length
    if num_chunks < 1:
        raise ValueError(
            f"each of the {batch_size} rows has {rows.shape[1]} tokens, fewer than one chunk needs "
            f"(chunk_length + {overlap} = {chunk_length + overlap}); use a shorter chunk_length or a smaller batch_size."
        )
    index = chunk_length * np.arange(num_chunks)[:, None] + np.arange(chunk_length + overlap)[None, :]
    return jnp.swapaxes(rows[:, index], 0, 1)


class StreamParams(NamedTuple):
    """Parameters of a recurrent model followed by a per-step readout."""

    rnn: Any  # model.init(key): a tuple over layers
    readout: Any  # head.init(key, model.output_size): ReadoutParams


def stream_forward(
    model, head, params: StreamParams, xs: Array, carry: Any = None, *, key: Array | None = None, solver: Any = None
):
    """Run one chunk from ``carry`` and return the state to carry to the next chunk.

    The returned state has its gradient stopped (``jax.lax.stop_gradient``), so a
    loss on a later chunk does not backpropagate into this one: truncated BPTT at
    chunk borders. The outputs equal those of the whole stream run at once.

    Args:
      model: a :class:`jaxrnn.StackedRNN` (:func:`jaxrnn.LSTM`, ...).
      head: a readout, e.g. :func:`jaxrnn.readout`.
      params: :class:`StreamParams` ``(rnn, readout)``.
      xs: ``[B, L, I]`` inputs of this chunk.
      carry: the states returned for the previous chunk; None (zeros) for the first.
      key: dropout key, or None for no dropout.
      solver: how the layers cover time, as in :func:`jaxrnn.rnn` (None: its default).

    Returns:
      ``(outputs [B, L, O], carry)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import train
      >>> model, head = jr.LSTM(3, 8), jr.readout(2)
      >>> params = train.StreamParams(model.init(jax.random.key(0)), head.init(jax.random.key(1), model.output_size))
      >>> xs = jax.random.normal(jax.random.key(2), (4, 10, 3))
      >>> out_a, carry = train.stream_forward(model, head, params, xs[:, :6])
      >>> out_b, carry = train.stream_forward(model, head, params, xs[:, 6:], carry)
      >>> whole, _ = train.stream_forward(model, head, params, xs)
      >>> bool(jnp.allclose(jnp.concatenate([out_a, out_b], axis=1), whole, atol=1e-5))
      True
    """
    ys, finals = model.apply(params.rnn, xs, key=key, state=carry, solver=solver)
    return head.apply(params.readout, ys), jax.lax.stop_gradient(finals)


def _stream_inputs(chunk, loss: str, input_size: int, dtype):
    """Inputs and next-step targets of a chunk ``[B, L + 1(, F)]``."""
    if loss == "cross_entropy":
        if chunk.ndim != 2 or not jnp.issubdtype(chunk.dtype, jnp.integer):
            raise ValueError(
                f"with loss='cross_entropy' a chunk must be integer tokens [B, L + 1], got shape "
                f"{tuple(chunk.shape)} and dtype {chunk.dtype}."
            )
        xs = jax.nn.one_hot(chunk[:, :-1], input_size, dtype=dtype)
    else:
        if chunk.ndim != 3 or not jnp.issubdtype(chunk.dtype, jnp.floating):
            raise ValueError(
                f"with loss='mse' a chunk must be floating features [B, L + 1, F], got shape "
                f"{tuple(chunk.shape)} and dtype {chunk.dtype}."
            )
        xs = chunk[:, :-1]
    if chunk.shape[1] < 2:
        raise ValueError(
            f"a chunk needs at least 2 steps (inputs and a next-step target), got shape {tuple(chunk.shape)}."
        )
    return xs, chunk[:, 1:]


def make_stream_train_step(
    model,
    head,
    optimizer: optax.GradientTransformation,
    *,
    loss: str = "cross_entropy",
    mesh: jax.sharding.Mesh | None = None,
):
    """A jitted truncated-BPTT step for next-step prediction on a long stream.

    Each chunk from :func:`stream_chunks` predicts ``chunk[:, 1:]`` from
    ``chunk[:, :-1]`` starting from the carried state; the gradient flows only
    within the chunk (:func:`stream_forward`). As in :func:`make_train_step`, a
    non-finite loss or gradient returns the input state and carry unchanged with
    ``metrics["finite"]`` False.

    Args:
      model: a :class:`jaxrnn.StackedRNN`; with ``loss="cross_entropy"`` its
        ``input_size`` is the vocabulary size (tokens enter one-hot).
      head: a readout with ``output_size`` the vocabulary size (logits, no
        activation) or F for ``loss="mse"``.
      optimizer: an ``optax.GradientTransformation``.
      loss: ``"cross_entropy"`` (integer tokens ``[B, L + 1]``) or ``"mse"``
        (features ``[B, L + 1, F]``).
      mesh: None (one device), or a mesh from :func:`make_mesh`: the chunk's rows
        and the carry are split over its devices, the state replicated, as in
        :func:`make_train_step`.

    Returns:
      ``step(state, chunk, carry=None) -> (state, carry, metrics)``, jitted, where
      ``state.params`` is :class:`StreamParams` and ``metrics`` holds ``"loss"``,
      ``"grad_norm"`` and ``"finite"``. Pass the returned carry with the next chunk;
      None starts from zeros.

    Raises:
      ValueError: unknown ``loss``; (when first traced) a chunk of the wrong rank or dtype.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import train
      >>> text = jnp.asarray(list(b"abcd" * 200), jnp.int32) - ord("a")       # vocabulary of 4
      >>> chunks = train.stream_chunks(text, batch_size=4, chunk_length=20)  # [9, 4, 21]
      >>> model, head = jr.LSTM(4, 16), jr.readout(4)
      >>> params = train.StreamParams(model.init(jax.random.key(0)), head.init(jax.random.key(1), 16))
      >>> opt = train.default_optimizer(3e-2)
      >>> state, step = train.init_state(params, opt, jax.random.key(2)), train.make_stream_train_step(model, head, opt)
      >>> for epoch in range(3):
      ...     carry = None                                  # a new pass over the stream
      ...     for chunk in chunks:
      ...         state, carry, metrics = step(state, chunk, carry)
      >>> bool(metrics["loss"] < 0.5)
      True
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")

    def loss_fn(params, chunk, carry, rng):
        dtype = jax.tree_util.tree_leaves(params.rnn)[0].dtype
        xs, targets = _stream_inputs(chunk, loss, model.input_size, dtype)
        outputs, carry = stream_forward(model, head, params, xs, carry, key=rng)
        value = (
            cross_entropy(outputs, targets) if loss == "cross_entropy" else mse(outputs, targets.astype(outputs.dtype))
        )
        return value, carry

    def step(state: TrainState, chunk: Array, carry: Any = None):
        if carry is None:
            dtype = carry_dtype(jax.tree_util.tree_leaves(state.params.rnn)[0].dtype)
            carry = model.initial_state((chunk.shape[0],), dtype=dtype)
        state, value, grad_norm, finite, new_carry = guarded_update(loss_fn, optimizer, state, chunk, carry)
        new_carry = jax.tree_util.tree_map(lambda n, o: n.astype(o.dtype), new_carry, carry)
        carry = jax.lax.cond(finite, lambda: new_carry, lambda: carry)
        return state, carry, {"loss": value, "grad_norm": grad_norm, "finite": finite}

    if mesh is None:
        return jax.jit(step)
    return data_parallel(step, mesh, batch_argnums=(1, 2), replicated_outputs=(0,))
