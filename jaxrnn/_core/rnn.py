"""The sequence runner :func:`rnn` and :func:`check_bptt`: the public face of the time loop.

:func:`rnn` checks its inputs, brings them to the time-major layout, resolves
its keyword arguments into one :class:`jaxrnn._core.strategy.Strategy` and hands
everything to :func:`jaxrnn._core.loop.run`.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._core import loop, newton
from jaxrnn._core import strategy as strategies
from jaxrnn._core.checks import carry_dtype, check_lengths, check_params_dtype, check_state, check_xs

tree_map = jax.tree_util.tree_map


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
    truncate: int | None = None,
    unroll: int | None = None,
    residuals: str = "gates",
    remat: int | None = None,
    backend: Any = "auto",
    solver: Any = None,
    return_info: bool = False,
) -> tuple:
    r"""Run ``cell`` over a batch of sequences.

    The recurrence is a ``lax.scan`` over time. For a split cell (the built-in
    ones) the input projection :math:`x_t W_{ih}^T + b_{ih}` of all steps is one
    matmul before the loop. How the gradient is computed is an argument:

    - ``grad="bptt"`` (default): hand-written backpropagation through time, a
      reverse loop with the cell's hand-written gate deltas (``jax.vjp`` of
      ``step`` for a cell without them) and the weight and input gradients as
      large matmuls over all steps after the loop. The built-in cells run on a
      fused kernel (``backend``); the BPTT equations of each are derived in the
      documentation ("The time loop").
    - ``grad="autodiff"``: ``jax.grad`` through the plain scan, the reference.

    The keyword arguments resolve into one frozen strategy value that the time
    loop reads; invalid combinations are refused here, before any work.

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
      residuals: what the forward pass of ``grad="bptt"`` keeps for the backward
        pass: ``"gates"`` (default; for :func:`lstm` and :func:`gru` the activated
        gates of every step, ``4H`` floats per step and example on top of the
        states; for other split cells the input and recurrent projections,
        ``2*G*H``) or ``"states"`` (only the states: the input projection is
        recomputed as one matmul in the backward pass and each step's recurrent
        projection and gates inside the reverse loop: less memory held between
        the passes, more time). It changes only what is saved, never which
        implementation runs. Measured in ``benchmarks/NOTES.md``.
      remat: checkpointing for long sequences: keep only the state entering every
        ``remat``-th step and recompute each chunk of ``remat`` steps in the
        backward pass. The states kept fall from O(T) to O(T/remat + remat) at the
        cost of a second forward pass; ``remat ~ sqrt(T)`` minimises it. Works with
        every ``grad`` and ``backend``; with ``truncate``, a multiple of it.
      backend: what runs the time loop: ``"xla"`` (``lax.scan``), ``"pallas"``
        (a fused kernel per layer with the recurrent weights on chip, for
        :func:`elman`, :func:`lstm` and :func:`gru` on GPU and TPU; needs
        ``grad="bptt"``), a :class:`Pallas` with explicit settings, ``"cpu"`` or a
        :class:`CPUKernel` (the C++ kernel of the same three cells on a CPU, float32,
        compiled on first use), or ``"auto"`` (default): a kernel only where a
        committed benchmark measured it faster, else XLA.
      solver: how the forward pass covers time. ``"sequential"``: a scan, step by
        step (any cell). ``"parallel"``: an associative scan of the linear
        recurrence :math:`h_t = a_t \odot h_{t-1} + b_t` that a cell declares
        (:func:`mingru`, :func:`minlstm`, :func:`lru`): the gates of all steps
        as one projection, the recurrence as ``lax.associative_scan`` (depth
        :math:`O(\log T)`; on the CPU an in-order elementwise scan, measured
        faster there), with a hand-written reverse scan for ``grad="bptt"``; under a mesh with
        an axis named ``"sequence"`` (``jax.set_mesh``) time is split over its
        devices. None (default): ``"parallel"`` for a cell that declares a linear
        recurrence under ``grad="bptt"``, else ``"sequential"`` (so
        ``grad="autodiff"`` stays the plain scan, the reference). A Newton solver,
        for any cell: :class:`DEER`, :class:`QuasiDEER`, :class:`ELK`,
        :class:`QuasiELK` with their options, or ``"deer"``, ``"quasi-deer"``,
        ``"elk"``, ``"quasi-elk"`` with the defaults: the whole trajectory by
        Newton's method in time, each iteration a parallel scan; its gradient is
        the BPTT equations at the converged trajectory (``grad="bptt"``).
      return_info: also return a Newton solver's :class:`SolverInfo`
        (iterations, residual, whether it converged, the trajectory for a warm
        start). A Newton solver that stops above its ``tol`` warns when called
        outside ``jit``; inside, read ``info.converged``.

    Returns:
      ``(ys, final_state)``: ``ys [B, T, H]`` (``[T, B, H]`` time-major, ``[T, H]``
      for one sequence) and the state after the last valid step; with
      ``return_info``, ``(ys, final_state, info)``.

    Raises:
      TypeError: integer or complex ``xs``, non-integer ``lengths``, non-floating
        state, float64 mixed with lower precision.
      ValueError: wrong rank, input size not matching ``params``, ``lengths`` of
        the wrong shape or out of range, a state that does not match the cell,
        unknown ``grad``, ``residuals`` or ``backend``, non-positive ``truncate``,
        ``unroll`` or ``remat``, ``remat`` not a multiple of ``truncate``, a Pallas
        backend that cannot run the call (the message says why), an unknown
        ``solver``, ``solver="parallel"`` for a cell without a linear recurrence
        or under a sequence mesh axis that does not divide T; a Newton solver
        with options out of range, ``grad="autodiff"``, ``remat``, a kernel
        backend, a ``guess`` that does not match the state, or a cell whose step
        JAX cannot differentiate forward; ``return_info`` without a Newton solver.

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
    xs_tm, batch_shape = check_xs(xs, time_major)
    dtype, w_dtype = check_params_dtype(params, xs_tm.dtype)
    strategy = strategies.resolve(
        cell,
        grad=grad,
        truncate=truncate,
        remat=remat,
        residuals=residuals,
        unroll=unroll,
        backend=backend,
        solver=solver,
        batch=batch_shape[0] if batch_shape else 1,
        num_steps=xs_tm.shape[0],
        w_dtype=w_dtype,
        xs_dtype=xs_tm.dtype,
    )
    if state is None:
        state = cell.initial_state(batch_shape, dtype=dtype)
    else:
        state = check_state(cell, state, batch_shape, dtype)
    lengths = check_lengths(lengths, batch_shape, xs_tm.shape[0])
    batch_major = len(batch_shape) == 1 and not time_major
    guess = None
    if newton.is_newton(strategy.solver):
        newton.check_differentiable(cell, params, state, xs_tm[0])
        guess = newton.check_guess(getattr(solver, "guess", None), state, xs_tm.shape[0], batch_major)
    elif return_info:
        raise ValueError(
            f"return_info=True reports a Newton solver's iterations; solver={solver!r} runs {strategy.solver!r}. "
            f"Pass solver=jr.QuasiDEER(...) (or 'deer', 'quasi-deer', 'elk', 'quasi-elk'), or drop return_info."
        )
    ys, final, info = loop.run(cell, strategy, params, state, xs_tm, lengths, reverse=reverse, guess=guess)
    if batch_major:
        ys = tree_map(lambda a: jnp.swapaxes(a, 0, 1), ys)
    if info is None:
        return ys, final
    if batch_major:
        info = info._replace(states=tree_map(lambda a: jnp.swapaxes(a, 0, 1), info.states))
    if not isinstance(info.converged, jax.core.Tracer) and not bool(info.converged):
        warnings.warn(newton.not_converged_message(strategy.solver, info, xs_tm.dtype), stacklevel=2)
    return (ys, final, info) if return_info else (ys, final)


def check_bptt(
    cell,
    params,
    xs,
    state=None,
    *,
    lengths=None,
    reverse: bool = False,
    time_major: bool = False,
    truncate: int | None = None,
    residuals: str = "gates",
    solver: str | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> float:
    """Check that ``grad="bptt"`` gives the gradients of ``grad="autodiff"`` (the plain scan) for a cell.

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

    def loss(grad_mode, solver):
        def f(p, s, x):
            out = rnn(cell, p, x, s, grad=grad_mode, solver=solver, **kwargs)
            terms = jax.tree_util.tree_map(lambda o, w: jnp.sum(o * w), out, weights)
            return sum(jax.tree_util.tree_leaves(terms))

        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))

    got = loss("bptt", solver)(params, state, xs)
    want = loss("autodiff", "sequential")(params, state, xs)
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
