r"""The time loop: one scan, one ``custom_vjp``, and every way of running it.

Everything here works on time-major inputs ``xs [T, *batch, I]`` (``batch`` of
rank 0 or 1) whose shapes :func:`jaxrnn.rnn` has checked, and on a
:class:`jaxrnn._core.strategy.Strategy` that says how to run and differentiate.

:func:`run` owns direction and lengths (reversal within each length), remat
(chunks recomputed in the backward pass) and the choice between the reference
and the hand-written gradient:

- ``grad="autodiff"``: the plain scan of the cell's own functions, differentiated
  by JAX (truncation as ``lax.stop_gradient`` every ``truncate`` steps): the
  reference every other path is tested against.
- ``grad="bptt"``: :func:`_bptt`, the one ``jax.custom_vjp``. Its forward
  computes the input projection of all steps as one matmul and runs a
  :class:`Steps` implementation; its backward runs the implementation's reverse
  loop, which returns the gate deltas ``d_px`` and ``d_rec`` of every step, and
  then computes the weight and input gradients as large matmuls over all
  ``T * B`` rows: the transposes of the input projection
  (:math:`dW_{ih} = \sum_t \delta px_t^T x_t`, :math:`dx_t = \delta px_t W_{ih}`)
  and of the recurrent projection (:math:`dW_{hh} = \sum_t \delta rec_t^T h_{t-1}`).

:func:`dispatch` picks the :class:`Steps` implementation:

- :class:`ParallelSteps` (``solver="parallel"``): a cell that declares a linear
  recurrence :math:`h_t = a_t h_{t-1} + b_t`, run as an associative scan
  (:mod:`jaxrnn._kernels.associative`, split along time under a sequence mesh
  axis); its reverse is the adjoint recurrence
  :math:`\lambda_t = g_t + a_{t+1} \lambda_{t+1}`, a reverse associative scan;
- :class:`jaxrnn._core.newton.NewtonSteps` (a Newton solver: DEER, quasi-DEER,
  ELK, quasi-ELK): any cell, its trajectory found by Newton's method in time,
  each iteration a parallel scan of the linearised recurrence; its reverse is
  the BPTT equations at the converged trajectory;
- :class:`CellSteps`, generic: the cell's own ``project`` / ``project_state`` /
  ``update`` with ``update_bwd`` (``jax.vjp`` of ``update`` where the cell has no
  hand-written reverse), or ``jax.vjp`` of ``step`` for a cell that is not split;
- :class:`KernelSteps`: a built-in cell on a fused kernel of
  :mod:`jaxrnn._kernels` (the XLA scan kernel, or Pallas on GPU and TPU).

What each implementation's forward keeps for its reverse is its own business
(its ``residual``); ``residuals="states"`` only asks it to keep less.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._core import newton
from jaxrnn._core.cells import HiddenState, LSTMState, builtin_kind, is_split
from jaxrnn._core.masking import reverse_within, select, step_masks, truncation_cut, zero_where_masked
from jaxrnn._core.strategy import Strategy
from jaxrnn._kernels import associative, registry, sharding

tree_map = jax.tree_util.tree_map


class Steps(Protocol):
    """A step implementation: what :func:`_bptt` needs to run a layer forward and in reverse.

    ``px`` is :meth:`project` of the inputs (the inputs themselves for a cell that
    is not split); ``mask [T, B]`` (or None) marks the valid steps.
    """

    @property
    def strategy(self) -> Strategy:
        """How the run is executed and differentiated."""

    def project(self, params, xs):
        """The input projection of all steps, ``px [T, B, G*H]``: one matmul."""

    def project_state(self, params, states):
        """The recurrent projection of a stack of states (for ``dW_hh``)."""

    def needs_px(self) -> bool:
        """Whether :meth:`backward` reads ``px`` (kept, or recomputed as one matmul)."""

    def forward(self, params, state, px, mask) -> tuple:
        """``(ys, final_state, residual)``."""

    def backward(self, params, state, px, residual, mask, d_ys, d_final) -> tuple:
        """``(d_px, d_rec, d_state0, d_params, states_prev)``.

        ``d_rec`` and ``states_prev`` (the state entering every step) are None
        where the parameters' gradient is ``d_params``, accumulated in the loop.
        """


def _carry_back(strategy: Strategy, d_prev, d_state, t, mask_t):
    """The cotangent into the previous state: skipped steps pass it through; truncation stops it."""
    d_prev = select(mask_t, d_prev, d_state)
    if strategy.truncate is not None:
        cut = truncation_cut(t, strategy.truncate)
        d_prev = tree_map(lambda d: jnp.where(cut, jnp.zeros_like(d), d), d_prev)
    return d_prev


class CellSteps(NamedTuple):
    """The generic implementation: a ``lax.scan`` over the cell's own functions."""

    cell: Any
    strategy: Strategy

    def project(self, params, xs):
        return self.cell.project(params, xs) if is_split(self.cell) else xs

    def project_state(self, params, states):
        return self.cell.project_state(params, states)

    def needs_px(self) -> bool:
        return True

    def forward(self, params, state, px, mask, *, cut_gradients: bool = False):
        """``(ys, final, (states_prev, rec))``; ``rec`` only for a split cell with ``residuals="gates"``.

        With ``cut_gradients`` (the autodiff reference for ``truncate``), the
        entering state is wrapped in ``lax.stop_gradient`` at every multiple of
        ``truncate``.
        """
        cell, strategy = self.cell, self.strategy
        split = is_split(cell)
        keep_rec = split and strategy.residuals == "gates"
        truncate = strategy.truncate if cut_gradients else None

        def body(state, inp):
            t, px_t, mask_t = inp
            if truncate is not None:
                cut = truncation_cut(t, truncate)
                state = tree_map(lambda s: jnp.where(cut, lax.stop_gradient(s), s), state)
            if split:
                rec = cell.project_state(params, state)
                new_state, y = cell.update(state, px_t, rec)
            else:
                rec = None
                new_state, y = cell.step(params, state, px_t)
            new_state = select(mask_t, new_state, state)
            return new_state, (zero_where_masked(mask_t, y), state, rec if keep_rec else None)

        steps = jnp.arange(px.shape[0])
        final, (ys, states_prev, rec) = lax.scan(body, state, (steps, px, mask), unroll=strategy.unroll)
        return ys, final, (states_prev, rec)

    def _update_bwd(self):
        cell = self.cell
        if getattr(cell, "update_bwd", None) is not None:
            return cell.update_bwd

        def update_bwd(state, px, rec, d_new_state, d_y):
            _, vjp = jax.vjp(cell.update, state, px, rec)
            return vjp((d_new_state, d_y))

        return update_bwd

    def backward(self, params, state, px, residual, mask, d_ys, d_final):
        cell, strategy = self.cell, self.strategy
        states_prev, saved_rec = residual
        steps = jnp.arange(px.shape[0])
        if not is_split(cell):
            return self._step_vjp_backward(params, px, states_prev, mask, d_ys, d_final)
        update_bwd = self._update_bwd()

        def body(d_state, inp):
            t, s_prev, px_t, rec_t, dy_t, mask_t = inp
            rec_new, rec_vjp = jax.vjp(lambda s: cell.project_state(params, s), s_prev)
            rec_t = rec_new if rec_t is None else rec_t
            # Zero cotangents on skipped rows make their deltas zero (the reverse is linear in them).
            d_direct, d_px_t, d_rec_t = update_bwd(
                s_prev, px_t, rec_t, zero_where_masked(mask_t, d_state), zero_where_masked(mask_t, dy_t)
            )
            (d_via_rec,) = rec_vjp(d_rec_t)
            d_prev = tree_map(jnp.add, d_direct, d_via_rec)
            return _carry_back(strategy, d_prev, d_state, t, mask_t), (d_px_t, d_rec_t)

        inputs = (steps, states_prev, px, saved_rec, d_ys, mask)
        d_state0, (d_px, d_rec) = lax.scan(body, d_final, inputs, reverse=True, unroll=strategy.unroll)
        return d_px, d_rec, d_state0, None, states_prev

    def _step_vjp_backward(self, params, xs, states_prev, mask, d_ys, d_final):
        """The reverse scan with ``jax.vjp`` of ``step``, for a cell that is not split."""
        cell, strategy = self.cell, self.strategy

        def body(carry, inp):
            d_state, d_params = carry
            t, s_prev, x_t, dy_t, mask_t = inp
            _, step_vjp = jax.vjp(cell.step, params, s_prev, x_t)
            dp, d_prev, dx = step_vjp((zero_where_masked(mask_t, d_state), zero_where_masked(mask_t, dy_t)))
            d_params = tree_map(jnp.add, d_params, dp)
            return (_carry_back(strategy, d_prev, d_state, t, mask_t), d_params), dx

        inputs = (jnp.arange(xs.shape[0]), states_prev, xs, d_ys, mask)
        zeros = tree_map(jnp.zeros_like, params)
        (d_state0, d_params), d_xs = lax.scan(body, (d_final, zeros), inputs, reverse=True, unroll=strategy.unroll)
        return d_xs, None, d_state0, d_params, None


class KernelSteps(NamedTuple):
    """A built-in cell on a fused kernel (:class:`jaxrnn._kernels.interface.Kernel`)."""

    cell: Any
    kind: str  # one of jaxrnn._core.gates.KINDS
    kernel: Any  # the kernel module
    strategy: Strategy

    def project(self, params, xs):
        return self.cell.project(params, xs)

    def project_state(self, params, states):
        return self.cell.project_state(params, states)

    def needs_px(self) -> bool:
        return self.kernel.needs_px(self.strategy.residuals)

    def _options(self) -> dict:
        backend = self.strategy.backend
        if isinstance(backend, registry.Pallas):
            return dict(precision=backend.precision, interpret=backend.interpret, unroll=self.strategy.unroll)
        if isinstance(backend, registry.CPUKernel):
            return dict(precision=None, interpret=False, unroll=self.strategy.unroll, threads=backend.threads)
        return dict(precision=None, interpret=False, unroll=self.strategy.unroll)

    def _call(self, fn, args: tuple, batch_axes: tuple, out_batch_axes: tuple):
        """``fn(*args)``; a Pallas or CPU kernel (opaque to XLA's partitioner) runs per batch shard under a data-parallel mesh."""
        if isinstance(self.strategy.backend, (registry.Pallas, registry.CPUKernel)):
            return sharding.per_batch_shard(fn, args, batch_axes, out_batch_axes)
        return fn(*args)

    def forward(self, params, state, px, mask):
        kind, lstm = self.kind, self.kind == "lstm"
        options = self._options()

        def run(px, w_hh, b_hh, h0, c0, mask):
            return self.kernel.forward(kind, px, w_hh, b_hh, h0, c0, mask, residuals=self.strategy.residuals, **options)

        c0 = state.c if lstm else None
        h_all, c_all, residual = self._call(
            run, (px, params.w_hh, params.b_hh, state.h, c0, mask), (1, None, None, 0, 0, 1), (1, 1, 1)
        )
        final = LSTMState(h_all[-1], c_all[-1]) if lstm else HiddenState(h_all[-1])
        return zero_where_masked(mask, h_all), final, (h_all, c_all, residual)

    def backward(self, params, state, px, residual, mask, d_ys, d_final):
        kind, lstm = self.kind, self.kind == "lstm"
        h_all, c_all, kernel_residual = residual
        options = self._options()

        def run(px, kernel_residual, w_hh, b_hh, h0, c0, h_all, c_all, mask, d_h_all, d_c_last):
            return self.kernel.backward(
                kind,
                px,
                kernel_residual,
                w_hh,
                b_hh,
                h0,
                c0,
                h_all,
                c_all,
                mask,
                d_h_all,
                d_c_last,
                truncate=self.strategy.truncate,
                **options,
            )

        c0 = state.c if lstm else None
        d_h_all = zero_where_masked(mask, d_ys.astype(h_all.dtype)).at[-1].add(d_final.h.astype(h_all.dtype))
        d_c_last = d_final.c.astype(c_all.dtype) if lstm else None
        args = (px, kernel_residual, params.w_hh, params.b_hh, state.h, c0, h_all, c_all, mask, d_h_all, d_c_last)
        d_px, d_rec, d_h0, d_c0 = self._call(run, args, (1, 1, None, None, 0, 0, 1, 1, 1, 1, 0), (1, 1, 0, 0))
        d_state0 = LSTMState(d_h0, d_c0) if lstm else HiddenState(d_h0)
        d_state0 = tree_map(lambda d, s: d.astype(s.dtype), d_state0, state)
        h_prev = jnp.concatenate([state.h[None], h_all[:-1]], axis=0)
        states_prev = (
            LSTMState(h_prev, jnp.concatenate([state.c[None], c_all[:-1]], axis=0)) if lstm else HiddenState(h_prev)
        )
        return d_px, d_rec, d_state0, None, states_prev


class ParallelSteps(NamedTuple):
    r"""A cell with a :class:`jaxrnn.LinearRecurrence` run as an associative scan over time.

    ``px`` is ``(a, b, xs)``: the recurrence's coefficients of all steps (their
    logarithms for a log-space cell), one projection, and the inputs (for
    ``output``). The reverse pass is the adjoint recurrence, itself linear:
    with :math:`g_t` the cotangent reaching :math:`h_t` from the output (and the
    final state), :math:`\lambda_t = g_t + \tilde a_{t+1} \lambda_{t+1}` where
    :math:`\tilde a_t` is :math:`a_t` (1 on a skipped step, 0 where ``truncate``
    cuts), run as a reverse associative scan; then :math:`\delta b_t = \lambda_t`,
    :math:`\delta a_t = \lambda_t h_{t-1}` (times :math:`a_t`, :math:`b_t` for the
    logarithms) and :math:`\delta h_0 = \tilde a_0 \lambda_0`, elementwise over
    all steps. As everywhere in JAX, complex cotangents are transposes, not
    conjugates.
    """

    cell: Any
    strategy: Strategy

    def project(self, params, xs):
        recurrence = self.cell.recurrence
        coefficients = recurrence.log_coefficients or recurrence.coefficients
        a, b = coefficients(params, xs)
        return a, b, xs

    def project_state(self, params, states):
        raise TypeError("the parallel solver has no recurrent projection: its reverse returns no d_rec")

    def needs_px(self) -> bool:
        return True

    def forward(self, params, state, px, mask):
        """``(ys, final, hs)``: every state ``hs [T, B, N]`` is the residual."""
        recurrence = self.cell.recurrence
        a, b, xs = px
        h0 = recurrence.from_state(state)
        if recurrence.log_coefficients is not None:
            # A skipped step: log a = 0 and log b the most negative half-float, whose exp is 0 like
            # -inf's but whose log-sum-exp stays differentiable (all -inf would give NaN gradients).
            tiny = jnp.full_like(b, jnp.finfo(b.dtype).min / 2)
            hs = associative.log_linear_scan(select(mask, a, jnp.zeros_like(a)), select(mask, b, tiny), h0)
        else:
            hs = associative.linear_scan(select(mask, a, jnp.ones_like(a)), zero_where_masked(mask, b), h0)
        ys = zero_where_masked(mask, recurrence.output(params, hs, xs))
        return ys, recurrence.to_state(hs[-1]), hs

    def backward(self, params, state, px, residual, mask, d_ys, d_final):
        recurrence, truncate = self.cell.recurrence, self.strategy.truncate
        hs = residual
        a, b, xs = px
        log_space = recurrence.log_coefficients is not None
        if log_space:
            a, b = jnp.exp(a), jnp.exp(b)
        _, output_vjp = jax.vjp(recurrence.output, params, hs, xs)
        d_params, g, d_xs = output_vjp(zero_where_masked(mask, d_ys))
        _, to_state_vjp = jax.vjp(recurrence.to_state, hs[-1])
        g = g.at[-1].add(to_state_vjp(d_final)[0])

        carry = select(mask, a, jnp.ones_like(a))  # what multiplies h_(t-1) in h_t
        if truncate is not None:
            cut = truncation_cut(jnp.arange(a.shape[0]), truncate).reshape((-1,) + (1,) * (a.ndim - 1))
            carry = jnp.where(cut, jnp.zeros_like(carry), carry)
        lam, d_h0 = associative.adjoint_scan(carry, g)

        h0 = recurrence.from_state(state)
        h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
        d_a, d_b = zero_where_masked(mask, (lam * h_prev, lam))
        if log_space:
            d_a, d_b = d_a * a, d_b * b
        _, from_state_vjp = jax.vjp(recurrence.from_state, state)
        (d_state0,) = from_state_vjp(d_h0)
        return (d_a, d_b, d_xs), None, d_state0, d_params, None


def dispatch(cell, strategy: Strategy) -> Steps:
    """The step implementation that runs ``cell`` under ``strategy``: the one place that chooses.

    The parallel solver runs a linear-recurrence cell as an associative scan. A
    built-in cell (with its own functions) runs on a fused kernel: the XLA scan
    kernel, or the Pallas or C++ CPU kernel the strategy names. Every other cell, and the
    autodiff reference, runs on the cell's own functions.
    """
    if strategy.solver == "parallel":
        return ParallelSteps(cell, strategy)
    if newton.is_newton(strategy.solver):
        return newton.NewtonSteps(cell, strategy, CellSteps(cell, strategy._replace(residuals="states")))
    kind = builtin_kind(cell)
    if strategy.grad == "autodiff" or kind is None:
        return CellSteps(cell, strategy)
    backend = strategy.backend
    if isinstance(backend, registry.CPUKernel):
        return KernelSteps(cell, kind, registry.kernel("cpu"), strategy)
    name = backend.target if isinstance(backend, registry.Pallas) else "xla"
    assert name is not None, "the strategy's Pallas backend has its target resolved"
    return KernelSteps(cell, kind, registry.kernel(name), strategy)


def _forward(steps: Steps, params, state, px, mask, guess):
    """``(ys, final, residual, info)``: ``info`` (and ``guess``) only for a Newton solver, else None."""
    if isinstance(steps, newton.NewtonSteps):
        ys, final, residual = steps.forward(params, state, px, mask, guess)
        return ys, final, residual, residual[1]
    ys, final, residual = steps.forward(params, state, px, mask)
    return ys, final, residual, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bptt(steps: Steps, params, state, xs, lengths, guess):
    """The forward of :func:`_bptt_fwd`, with the hand-written reverse :func:`_bptt_bwd` as its VJP.

    Called as is (a forward pass with no reverse after it), a kernel that can keep
    nothing for a reverse pass is asked to: XLA drops unused scan outputs by itself,
    but not the outputs of a custom call (the CPU kernel's kept gates).
    """
    return _bptt_fwd(_forward_only(steps), params, state, xs, lengths, guess)[0]


def _forward_only(steps: Steps) -> Steps:
    if isinstance(steps, KernelSteps) and "states" in steps.kernel.RESIDUALS:
        return steps._replace(strategy=steps.strategy._replace(residuals="states"))
    return steps


def _bptt_fwd(steps: Steps, params, state, xs, lengths, guess):
    mask = step_masks(lengths, xs.shape[0])
    px = steps.project(params, xs)
    ys, final, residual, info = _forward(steps, params, state, px, mask, guess)
    keep_px = steps.needs_px() and steps.strategy.residuals == "gates"
    return (ys, final, info), (params, state, xs, lengths, px if keep_px else None, residual)


def _bptt_bwd(steps: Steps, saved, cotangents):
    params, state, xs, lengths, px, residual = saved
    d_ys, d_final, _ = cotangents  # the solver's info (iterations, trajectory) is not differentiated
    mask = step_masks(lengths, xs.shape[0])
    if px is None and steps.needs_px():
        px = steps.project(params, xs)  # residuals="states": recomputed, one matmul
    d_px, d_rec, d_state0, d_params_loop, states_prev = steps.backward(params, state, px, residual, mask, d_ys, d_final)

    # The weight and input gradients: the transposes of the projections, one large matmul each.
    _, project_vjp = jax.vjp(steps.project, params, xs)
    d_params, d_xs = project_vjp(d_px)
    if d_rec is not None:
        _, project_state_vjp = jax.vjp(lambda p: steps.project_state(p, states_prev), params)
        d_params = tree_map(jnp.add, d_params, project_state_vjp(d_rec)[0])
    if d_params_loop is not None:
        d_params = tree_map(jnp.add, d_params, d_params_loop)
    return d_params, d_state0, d_xs, None, None


_bptt.defvjp(_bptt_fwd, _bptt_bwd)


def _run_sequence(steps: Steps, params, state, xs, lengths, guess=None):
    """One pass over time-major ``xs [T, B, I]``: ``(ys, final_state, info)``, ``info`` None but for a Newton solver."""
    if steps.strategy.grad == "bptt":
        return _bptt(steps, params, state, xs, lengths, guess)
    mask = step_masks(lengths, xs.shape[0])
    if isinstance(steps, ParallelSteps):  # JAX differentiates the associative scan itself
        ys, final, _ = steps.forward(params, state, steps.project(params, xs), mask)
        return ys, final, None
    assert isinstance(steps, CellSteps), "the autodiff reference runs the cell's own functions"
    ys, final, _ = steps.forward(params, state, steps.project(params, xs), mask, cut_gradients=True)
    return ys, final, None


def _remat_chunks(steps: Steps, params, state, xs, lengths):
    """:func:`_run_sequence` over chunks of ``remat`` steps, each recomputed in the backward pass.

    The forward keeps only the state entering each chunk (``T / remat`` states);
    the backward pass reruns one chunk's forward at a time and keeps its
    residuals (``remat`` steps' worth), so the memory of the states is
    O(T/remat + remat) instead of O(T). A last chunk of ``T % remat`` steps runs
    after the others (no padding: a padded step would count as a step for
    ``truncate``). With ``truncate``, ``remat`` is a multiple of it (the strategy
    checks), so the cuts inside chunks fall at the same offsets and the state
    entering each chunk after the first is cut.
    """
    every, truncate = steps.strategy.remat, steps.strategy.truncate
    num_chunks, rest = divmod(xs.shape[0], every)

    @jax.checkpoint
    def chunk(state, j, x_chunk):
        if truncate is not None:
            state = tree_map(lambda s: jnp.where(j > 0, lax.stop_gradient(s), s), state)
        chunk_lengths = None if lengths is None else jnp.clip(lengths - j * every, 0, x_chunk.shape[0])
        ys, state, _ = _run_sequence(steps, params, state, x_chunk, chunk_lengths)
        return state, ys

    parts = []
    if num_chunks:
        chunks = xs[: num_chunks * every].reshape((num_chunks, every) + xs.shape[1:])
        indices = jnp.arange(num_chunks, dtype=jnp.int32)
        state, ys = lax.scan(lambda s, inp: chunk(s, *inp), state, (indices, chunks))
        parts.append(tree_map(lambda a: a.reshape((num_chunks * every,) + a.shape[2:]), ys))
    if rest:
        state, ys = chunk(state, jnp.int32(num_chunks), xs[num_chunks * every :])
        parts.append(ys)
    ys = parts[0] if len(parts) == 1 else tree_map(lambda *a: jnp.concatenate(a, axis=0), *parts)
    return ys, state, None


def run(cell, strategy: Strategy, params, state, xs, lengths: jax.Array | None, *, reverse: bool = False, guess=None):
    """Run ``cell`` over time-major ``xs [T, *batch, I]`` as ``strategy`` says: ``(ys, final_state, info)``.

    ``state`` and ``lengths`` are checked and have the batch shape of ``xs``
    (rank 0 or 1). With ``reverse``, each sequence runs backwards from its last
    valid step and the outputs come back in the original order. ``info`` is a
    Newton solver's :class:`jaxrnn._core.newton.SolverInfo` (its trajectory
    time-major, in the order of ``ys``), None for every other solver; ``guess``
    (a Newton solver's initial trajectory, time-major) is laid out the same way.
    """
    steps = dispatch(cell, strategy)
    single = xs.ndim == 2
    if single:  # one sequence: a batch of one, so every implementation sees [T, B, ...]
        xs = xs[:, None]
        state = tree_map(lambda s: s[None], state)
        lengths = None if lengths is None else lengths[None]
        guess = None if guess is None else tree_map(lambda g: g[:, None], guess)
    if reverse:
        xs = reverse_within(xs, lengths)
        guess = None if guess is None else reverse_within(guess, lengths)
    if strategy.remat is None:
        ys, final, info = _run_sequence(steps, params, state, xs, lengths, guess)
    else:
        ys, final, info = _remat_chunks(steps, params, state, xs, lengths)
    if info is not None:
        info = newton.SolverInfo(*info)
    if reverse:
        ys = reverse_within(ys, lengths)
        info = None if info is None else info._replace(states=reverse_within(info.states, lengths))
    if single:
        ys = tree_map(lambda a: a[:, 0], ys)
        final = tree_map(lambda s: s[0], final)
        info = None if info is None else info._replace(states=tree_map(lambda a: a[:, 0], info.states))
    return ys, final, info
