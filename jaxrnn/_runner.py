"""The sequence runner :func:`rnn`: input checks, layouts, lengths and direction."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _bptt, _kernels
from jaxrnn._cells import carry_dtype, check_positive_int

tree_map = jax.tree_util.tree_map

GRAD_MODES = ("bptt", "autodiff")
RESIDUALS = ("states", "gates")

# lax.scan unroll by backend. CPU: measured in benchmarks/NOTES.md ("unroll on CPU").
# GPU/TPU: BASELINES.md measured unroll 8 near the best at batch >= 16 on an H100.
_DEFAULT_UNROLL = {"cpu": 1, "gpu": 8, "cuda": 8, "rocm": 8, "tpu": 8}


def default_unroll() -> int:
    """The ``lax.scan`` unroll that :func:`rnn` uses on the default backend.

    Returns:
      An int: the measured best on CPU, 8 on GPU and TPU (see ``benchmarks/NOTES.md``).
    """
    return _DEFAULT_UNROLL.get(jax.default_backend(), 1)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_xs(xs, time_major: bool):
    """The inputs as an array, its time-major form ``[T, *batch, I]`` and the batch shape."""
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
        xs = jnp.asarray(xs)
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(
            f"xs must be a floating array (float32, float64 or bfloat16), got dtype {xs.dtype}; "
            f"cast it first, e.g. xs.astype(jnp.float32)."
        )
    layout = "[T, B, I]" if time_major else "[B, T, I]"
    if xs.ndim not in (2, 3):
        raise ValueError(
            f"xs must have rank 3 ({layout}) or rank 2 ([T, I], one sequence), got shape "
            f"{tuple(xs.shape)} (rank {xs.ndim}). For more batch axes, use jax.vmap(lambda x: jr.rnn(...))."
        )
    if xs.ndim == 3 and not time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    if xs.shape[0] == 0:
        raise ValueError(f"xs must have at least one time step, got shape {tuple(xs.shape)}.")
    return xs, tuple(xs.shape[1:-1])


def _check_params_dtype(params, xs_dtype):
    """``(carry dtype, params' dtype)``; a TypeError for a float64 / lower-precision mix."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(params) if hasattr(leaf, "dtype")]
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"params must be floating arrays, got a leaf of dtype {leaf.dtype}.")
    param_dtype = leaves[0].dtype if leaves else xs_dtype
    wide = {jnp.dtype(jnp.float64)}
    if (jnp.dtype(param_dtype) in wide) != (jnp.dtype(xs_dtype) in wide):
        raise TypeError(
            f"xs has dtype {xs_dtype} but params have dtype {param_dtype}: float64 cannot be mixed "
            f"with lower precisions; cast xs or params (jax.tree_util.tree_map(lambda a: a.astype(...), params))."
        )
    return carry_dtype(xs_dtype), param_dtype


def _check_state(cell, state, batch_shape, dtype):
    expected = jax.eval_shape(lambda: cell.initial_state(batch_shape, dtype=dtype))
    exp_leaves, exp_def = jax.tree_util.tree_flatten(expected)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    if treedef != exp_def:
        raise ValueError(
            f"state does not match the cell: expected a pytree of structure {exp_def}, got {treedef}. "
            f"Build one with cell.initial_state(batch_shape={batch_shape})."
        )
    checked = []
    for got, want in zip(leaves, exp_leaves):
        got = jnp.asarray(got) if not hasattr(got, "shape") else got
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"state leaf has shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                f"(batch shape {batch_shape} from xs, then the cell's state size). "
                f"Build one with cell.initial_state(batch_shape={batch_shape})."
            )
        if not jnp.issubdtype(got.dtype, jnp.floating):
            raise TypeError(f"state leaves must be floating, got dtype {got.dtype}.")
        checked.append(got.astype(want.dtype))
    return jax.tree_util.tree_unflatten(treedef, checked)


def _check_lengths(lengths, batch_shape, num_steps: int):
    if not hasattr(lengths, "shape"):
        lengths = np.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}.")
    if tuple(lengths.shape) != batch_shape:
        raise ValueError(
            f"lengths must have shape {batch_shape} (one length per sequence in xs), "
            f"got shape {tuple(lengths.shape)}."
        )
    if _is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > num_steps):
            raise ValueError(
                f"lengths must lie in [0, {num_steps}] (T = {num_steps} steps in xs), got values from "
                f"{values.min()} to {values.max()}."
            )
    return jnp.asarray(lengths, jnp.int32)


def _check_options(grad, truncate, unroll, residuals, remat):
    if remat is not None:
        check_positive_int(remat, "remat")
        if truncate is not None and remat % truncate:
            raise ValueError(
                f"remat must be a multiple of truncate, so that truncation points line up with the "
                f"recomputed chunks; got remat={remat} and truncate={truncate}. Try remat={truncate * max(1, remat // truncate)}."
            )
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}.")
    if residuals not in RESIDUALS:
        raise ValueError(f"residuals must be one of {RESIDUALS}, got {residuals!r}.")
    if truncate is not None:
        check_positive_int(truncate, "truncate")
    if unroll is None:
        return default_unroll()
    if isinstance(unroll, bool):
        return unroll
    return check_positive_int(unroll, "unroll")


def reverse_within(xs, lengths):
    """Reverse time-major ``xs [T, *batch, ...]`` within each sequence's length.

    Padding stays at the end: step t < L maps to L - 1 - t, steps t >= L stay. The
    map is its own inverse. Without ``lengths`` it is a plain flip.
    """
    if lengths is None:
        return tree_map(lambda a: jnp.flip(a, axis=0), xs)
    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    t = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * lengths.ndim)
    lengths = lengths[None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)

    def gather(a):
        idx = index.reshape(index.shape + (1,) * (a.ndim - index.ndim))
        return jnp.take_along_axis(a, idx, axis=0)

    return tree_map(gather, xs)


def rnn(
    cell,
    params,
    xs,
    state=None,
    *,
    lengths=None,
    reverse: bool = False,
    time_major: bool = False,
    grad: str = "bptt",
    truncate: Optional[int] = None,
    unroll: Optional[int] = None,
    residuals: str = "gates",
    remat: Optional[int] = None,
    backend: Any = "auto",
) -> tuple[Any, Any]:
    r"""Run ``cell`` over a batch of sequences.

    The recurrence is a ``lax.scan`` over time. For the built-in cells the input
    projection :math:`x_t W_{ih}^T + b_{ih}` of all steps is one matmul before the
    loop. How the gradient is computed is an argument:

    - ``grad="bptt"`` (default): hand-written backpropagation through time, a
      reverse ``lax.scan`` with the cell's hand-written gate deltas (``jax.vjp`` of
      ``step`` for a cell without them) and the weight gradients as large matmuls
      over all steps after the loop.
    - ``grad="autodiff"``: ``jax.grad`` through the plain scan, the reference.

    Args:
      cell: a :class:`Cell` or any object with ``init``, ``initial_state``, ``step``.
      params: the cell's parameters.
      xs: inputs ``[B, T, I]``; ``[T, B, I]`` with ``time_major=True``; ``[T, I]`` for
        one sequence. Floating dtype; bfloat16 inputs and params carry in float32.
      state: initial state, a pytree matching ``cell.initial_state((B,))``
        (``cell.initial_state(())`` for one sequence); zeros if None. Cast to the
        carry dtype (float64 for float64 inputs, else float32).
      lengths: int ``[B]`` (``[]`` for one sequence): valid steps per sequence.
        Outputs past a sequence's length are zero and its final state is the state
        after its last valid step (the initial state for length 0). Values are
        checked to lie in ``[0, T]`` when concrete; under ``jit`` they are not.
      reverse: run each sequence backwards from its last valid step; the outputs
        are returned in the original time order.
      time_major: inputs and outputs are ``[T, B, ...]``.
      grad: ``"bptt"`` or ``"autodiff"``.
      truncate: truncated BPTT: the gradient of the state is stopped every
        ``truncate`` steps (counted from the first step processed), so it flows
        back at most ``truncate`` steps.
      unroll: ``lax.scan`` unroll; default :func:`default_unroll` for the backend.
      residuals: what ``grad="bptt"`` keeps for the backward pass: ``"gates"``
        (default; for :func:`elman`, :func:`lstm` and :func:`gru` the activated
        gates of every step, for other cells the input and recurrent projections,
        ``2*G*H`` floats per step and example on top of the states) or
        ``"states"`` (only the states; both projections recomputed per step in the
        reverse loop: less memory, more time). Measured in ``benchmarks/NOTES.md``.
      remat: checkpointing for long sequences: keep only the state entering every
        ``remat``-th step and recompute each chunk of ``remat`` steps in the
        backward pass. The states kept fall from O(T) to O(T/remat + remat) at the
        cost of a second forward pass; ``remat ~ sqrt(T)`` minimises it. Works with
        every ``grad`` and ``backend``; with ``truncate``, a multiple of it.
      backend: what runs the time loop: ``"xla"`` (``lax.scan``), ``"pallas"``
        (a fused kernel per layer with the recurrent weights on chip, for
        :func:`elman`, :func:`lstm` and :func:`gru` on GPU and TPU; needs
        ``grad="bptt"``), a :class:`Pallas` with explicit settings, or ``"auto"``
        (default): the kernel only where a committed device benchmark measured it
        faster, else XLA.

    Returns:
      ``(ys, final_state)``: ``ys [B, T, H]`` (``[T, B, H]`` time-major, ``[T, H]``
      for one sequence) and the state after the last valid step.

    Raises:
      TypeError: integer or complex ``xs``, non-integer ``lengths``, non-floating
        state, float64 mixed with lower precision.
      ValueError: wrong rank, input size not matching ``params``, ``lengths`` of
        the wrong shape or out of range, a state that does not match the cell,
        unknown ``grad``, ``residuals`` or ``backend``, non-positive ``truncate``,
        ``unroll`` or ``remat``, ``remat`` not a multiple of ``truncate``, a Pallas
        backend that cannot run the call (the message says why).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.gru(16)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=4)
      >>> xs = jnp.ones((2, 10, 4))
      >>> ys, final = jr.rnn(cell, params, xs, lengths=jnp.array([10, 3]))
      >>> ys.shape, final.h.shape
      ((2, 10, 16), (2, 16))
      >>> float(abs(ys[1, 3:]).max())
      0.0
    """
    unroll = _check_options(grad, truncate, unroll, residuals, remat)
    backend = _kernels.check_backend(backend)
    xs_tm, batch_shape = _check_xs(xs, time_major)
    dtype, w_dtype = _check_params_dtype(params, xs_tm.dtype)
    num_steps = xs_tm.shape[0]
    if state is None:
        state = cell.initial_state(batch_shape, dtype=dtype)
    else:
        state = _check_state(cell, state, batch_shape, dtype)
    if lengths is not None:
        lengths = _check_lengths(lengths, batch_shape, num_steps)

    if reverse:
        xs_tm = reverse_within(xs_tm, lengths)
    backend = _kernels.resolve(
        backend, cell, grad, residuals, batch_shape[0] if batch_shape else 1, w_dtype, xs_tm.dtype
    )
    cfg = _bptt.ScanConfig(truncate=truncate, unroll=unroll, residuals=residuals)

    def run(params, state, xs, lengths):
        return _bptt.run_scan(cell, cfg, grad, params, state, xs, lengths, backend)

    if remat is None:
        ys, final = run(params, state, xs_tm, lengths)
    else:
        ys, final = _bptt.remat_scan(run, remat, truncate, params, state, xs_tm, lengths)
    if reverse:
        ys = reverse_within(ys, lengths)
    if len(batch_shape) == 1 and not time_major:
        ys = tree_map(lambda a: jnp.swapaxes(a, 0, 1), ys)
    return ys, final


def check_bptt(
    cell,
    params,
    xs,
    state=None,
    *,
    lengths=None,
    reverse: bool = False,
    time_major: bool = False,
    truncate: Optional[int] = None,
    residuals: str = "gates",
    rtol: Optional[float] = None,
    seed: int = 0,
) -> float:
    """Check that ``grad="bptt"`` gives the gradients of ``grad="autodiff"`` for a cell.

    Both gradients are taken of the same random linear function of the outputs
    and the final state, with respect to ``params``, ``xs`` and the initial state.
    Use it on your own cell as the tests use it on the built-in ones.

    Args:
      cell, params, xs, state, lengths, reverse, time_major, truncate, residuals: as
        in :func:`rnn`.
      rtol: tolerance on the largest error relative to the largest gradient
        entry of each leaf; default 1e-10 in float64, 1e-5 otherwise.
      seed: seed of the random output cotangents.

    Returns:
      The largest relative error over all gradient leaves.

    Raises:
      AssertionError: naming the first leaf whose error exceeds ``rtol``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.lstm(8)
      >>> params = cell.init(jax.random.PRNGKey(0), input_size=3)
      >>> err = jr.check_bptt(cell, params, jnp.ones((2, 6, 3)), lengths=jnp.array([6, 2]))
      >>> err < 1e-5
      True
    """
    xs = jnp.asarray(xs)
    if state is None:
        batch_shape = () if xs.ndim == 2 else (xs.shape[1] if time_major else xs.shape[0],)
        dtype = carry_dtype(xs.dtype)
        state = cell.initial_state(batch_shape, dtype=dtype)
    kwargs = dict(lengths=lengths, reverse=reverse, time_major=time_major, truncate=truncate, residuals=residuals)
    out_shapes = jax.eval_shape(lambda p, s, x: rnn(cell, p, x, s, **kwargs), params, state, xs)
    leaves, treedef = jax.tree_util.tree_flatten(out_shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    weights = jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    )

    def loss(grad_mode):
        def f(p, s, x):
            out = rnn(cell, p, x, s, grad=grad_mode, **kwargs)
            terms = jax.tree_util.tree_map(lambda o, w: jnp.sum(o * w), out, weights)
            return sum(jax.tree_util.tree_leaves(terms))

        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))

    got = loss("bptt")(params, state, xs)
    want = loss("autodiff")(params, state, xs)
    if rtol is None:
        rtol = 1e-10 if xs.dtype == jnp.float64 else 1e-5
    worst = 0.0
    names = ("params", "state", "xs")
    for name, g_tree, w_tree in zip(names, got, want):
        for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(g_tree), jax.tree_util.tree_leaves(w_tree)):
            g = np.asarray(g, np.float64)
            w = np.asarray(w, np.float64)
            scale = max(np.abs(w).max(initial=0.0), np.finfo(np.float64).tiny)
            err = float(np.abs(g - w).max(initial=0.0) / scale)
            worst = max(worst, err)
            if not err <= rtol:
                raise AssertionError(
                    f"bptt gradient of {name}{jax.tree_util.keystr(path)} differs from autodiff: "
                    f"max error {err:.3g} relative to max |grad| {scale:.3g} (rtol {rtol:.1g})."
                )
    return worst
