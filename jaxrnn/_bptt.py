"""The time loop and its gradients: plain autodiff, and hand-written BPTT.

Everything here works on time-major inputs ``xs [T, *batch, I]`` whose shapes the
runner (:mod:`jaxrnn._runner`) has already checked.

Hand-written BPTT (``grad="bptt"``) is a ``jax.custom_vjp``:

- forward: one ``lax.scan``; the input projection of all steps is one matmul before
  it; the scan saves the state entering each step (and, with
  ``residuals="gates"``, the input and recurrent projections of each step);
- backward: one reverse ``lax.scan`` whose body takes the cell's gate deltas
  (``update_bwd``, written by hand for the built-in cells) and carries the state
  cotangent back through the recurrent weights; the weight gradients are then
  two large matmuls over all ``T * batch`` rows, as are the input gradients.

``residuals="gates"`` (the default) keeps the input projections and the
recurrent projections of all steps from the forward pass: ``2*G*H`` floats per
step and example on top of the states. ``residuals="states"`` keeps only the
states and recomputes both projections of each step inside the reverse loop: two
more small matmuls per step in the sequential loop, no ``[T, B, G*H]`` buffers
but the gate deltas. Measured in ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _kernels
from jaxrnn._cells import builtin_kernel
from jaxrnn._kernel_ref import select, step_masks, truncation_cut, zero_where_masked

tree_map = jax.tree_util.tree_map


class ScanConfig(NamedTuple):
    """Static settings of one run of the time loop (hashable)."""

    truncate: Optional[int]  # stop gradients at every multiple of this step, or None
    unroll: int  # lax.scan unroll
    residuals: str  # "states" | "gates"


def is_structured(cell) -> bool:
    """Whether ``cell`` splits its step into ``project`` / ``project_state`` / ``update``."""
    return all(getattr(cell, name, None) is not None for name in ("project", "project_state", "update"))


def forward_scan(cell, cfg: ScanConfig, params, state, xs, lengths, *, save: bool = False, stop_gradients: bool = False):
    """Run the cell over time-major ``xs``.

    Returns ``(ys, final_state, saved)``: ``saved`` is ``None`` unless ``save``, then
    ``(px, states_prev, rec)`` with ``px`` the hoisted input projection (``None``
    for unstructured cells), ``states_prev`` the state entering each step
    (leading axis T) and ``rec`` the recurrent projections (only with
    ``residuals="gates"``).

    With ``stop_gradients`` (the autodiff reference for ``truncate``), the entering
    state is wrapped in ``lax.stop_gradient`` at every multiple of
    ``cfg.truncate``.
    """
    num_steps = xs.shape[0]
    masks = step_masks(lengths, num_steps)
    structured = is_structured(cell)
    px = cell.project(params, xs) if structured else None
    save_rec = save and structured and cfg.residuals == "gates"

    def body(state, inp):
        t, x_t, mask_t = inp
        if stop_gradients and cfg.truncate is not None:
            cut = truncation_cut(t, cfg.truncate)
            state = tree_map(lambda s: jnp.where(cut, lax.stop_gradient(s), s), state)
        if structured:
            rec = cell.project_state(params, state)
            new_state, y = cell.update(state, x_t, rec)
        else:
            rec = None
            new_state, y = cell.step(params, state, x_t)
        new_state = select(mask_t, new_state, state)
        y = zero_where_masked(mask_t, y)
        out = (y, state if save else None, rec if save_rec else None)
        return new_state, out

    inputs = (jnp.arange(num_steps), px if structured else xs, masks)
    final, (ys, states_prev, rec) = lax.scan(body, state, inputs, unroll=cfg.unroll)
    saved = (px, states_prev, rec) if save else None
    return ys, final, saved


def autodiff_scan(cell, cfg: ScanConfig, params, state, xs, lengths):
    """The reference: the plain scan, differentiated by JAX."""
    ys, final, _ = forward_scan(cell, cfg, params, state, xs, lengths, stop_gradients=True)
    return ys, final


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def bptt_scan(cell, cfg: ScanConfig, params, state, xs, lengths):
    """The plain scan, with the hand-written reverse pass below as its VJP."""
    ys, final, _ = forward_scan(cell, cfg, params, state, xs, lengths)
    return ys, final


def _bptt_fwd(cell, cfg, params, state, xs, lengths):
    ys, final, (px, states_prev, rec) = forward_scan(cell, cfg, params, state, xs, lengths, save=True)
    if cfg.residuals == "states":
        px = None  # recomputed in the backward pass as one matmul
    return (ys, final), (params, xs, lengths, (px, states_prev, rec))


def _update_bwd(cell):
    """The cell's hand-written gate reverse, or ``jax.vjp`` of its ``update``."""
    if getattr(cell, "update_bwd", None) is not None:
        return cell.update_bwd

    def update_bwd(state, px, rec, d_new_state, d_y):
        _, vjp = jax.vjp(cell.update, state, px, rec)
        return vjp((d_new_state, d_y))

    return update_bwd


def _bptt_bwd(cell, cfg, res, cotangents):
    params, xs, lengths, (px, states_prev, rec) = res
    d_ys, d_final = cotangents
    num_steps = xs.shape[0]
    masks = step_masks(lengths, num_steps)
    steps = jnp.arange(num_steps)

    def carry_back(d_prev, d_state, t, mask_t):
        """Masked steps pass the cotangent through; truncation stops it."""
        d_prev = select(mask_t, d_prev, d_state)
        if cfg.truncate is not None:
            cut = truncation_cut(t, cfg.truncate)
            d_prev = tree_map(lambda d: jnp.where(cut, jnp.zeros_like(d), d), d_prev)
        return d_prev

    if not is_structured(cell):
        return _generic_bwd(cell, params, xs, lengths, states_prev, d_ys, d_final, masks, steps, carry_back, cfg)

    update_bwd = _update_bwd(cell)
    recompute = cfg.residuals == "states"

    def body(d_state, inp):
        t, s_prev, px_or_x, saved_rec, dy_t, mask_t = inp
        rec_t, rec_vjp = jax.vjp(lambda s: cell.project_state(params, s), s_prev)
        if recompute:
            px_t = cell.project(params, px_or_x)
        else:
            px_t, rec_t = px_or_x, saved_rec
        # Zero cotangents on padded rows make their deltas zero (the reverse is linear in them).
        d_state_in = zero_where_masked(mask_t, d_state)
        dy_t = zero_where_masked(mask_t, dy_t)
        d_direct, d_px_t, d_rec_t = update_bwd(s_prev, px_t, rec_t, d_state_in, dy_t)
        (d_via_rec,) = rec_vjp(d_rec_t)
        d_prev = tree_map(jnp.add, d_direct, d_via_rec)
        return carry_back(d_prev, d_state, t, mask_t), (d_px_t, d_rec_t)

    inputs = (steps, states_prev, xs if recompute else px, rec, d_ys, masks)
    d_state0, (d_px, d_rec) = lax.scan(body, d_final, inputs, reverse=True, unroll=cfg.unroll)

    # The weight gradients and input gradients: one large matmul each, over all steps.
    _, project_vjp = jax.vjp(cell.project, params, xs)
    d_params_in, d_xs = project_vjp(d_px)
    _, project_state_vjp = jax.vjp(lambda p: cell.project_state(p, states_prev), params)
    (d_params_rec,) = project_state_vjp(d_rec)
    d_params = tree_map(jnp.add, d_params_in, d_params_rec)
    return d_params, d_state0, d_xs, None


def _generic_bwd(cell, params, xs, lengths, states_prev, d_ys, d_final, masks, steps, carry_back, cfg):
    """Reverse scan with ``jax.vjp`` of ``step`` for cells without a split step."""

    def body(carry, inp):
        d_state, d_params = carry
        t, s_prev, x_t, dy_t, mask_t = inp
        _, step_vjp = jax.vjp(cell.step, params, s_prev, x_t)
        dp, d_prev, dx = step_vjp((zero_where_masked(mask_t, d_state), zero_where_masked(mask_t, dy_t)))
        d_params = tree_map(jnp.add, d_params, dp)
        return (carry_back(d_prev, d_state, t, mask_t), d_params), dx

    zeros = tree_map(jnp.zeros_like, params)
    inputs = (steps, states_prev, xs, d_ys, masks)
    (d_state0, d_params), d_xs = lax.scan(body, (d_final, zeros), inputs, reverse=True, unroll=cfg.unroll)
    return d_params, d_state0, d_xs, None


bptt_scan.defvjp(_bptt_fwd, _bptt_bwd)


def run_scan(cell, cfg: ScanConfig, grad: str, params, state, xs, lengths, backend: Any = "xla") -> Any:
    """Dispatch to the backend and to the gradient strategy named by ``grad``.

    ``backend`` is ``"xla"`` or a resolved :class:`jaxrnn._kernels.Pallas`.
    """
    if backend != "xla":
        return _kernels.kernel_scan(cell, backend, cfg.truncate, params, state, xs, lengths)
    if grad == "bptt" and cfg.residuals == "gates" and builtin_kernel(cell) is not None:
        return _kernels.kernel_scan(cell, _kernels.Scan(cfg.unroll), cfg.truncate, params, state, xs, lengths)
    if grad == "bptt":
        return bptt_scan(cell, cfg, params, state, xs, lengths)
    return autodiff_scan(cell, cfg, params, state, xs, lengths)


def remat_scan(run, every: int, truncate: Optional[int], params, state, xs, lengths) -> Any:
    """``run(params, state, xs, lengths)`` over chunks of ``every`` steps, recomputed in the backward pass.

    The forward keeps only the state entering each chunk (``T / every`` states);
    the backward pass reruns one chunk's forward at a time and keeps its residuals
    (``every`` steps' worth), so the memory of the states is O(T/every + every)
    instead of O(T). A last chunk of ``T % every`` steps runs after the others (no
    padding: a padded step would count as a step for ``truncate``). With
    ``truncate``, ``every`` is a multiple of it (the runner checks), so the cuts
    inside chunks fall at the same offsets and the state entering each chunk
    after the first is cut.
    """
    num_steps = xs.shape[0]
    num_chunks, rest = divmod(num_steps, every)

    @jax.checkpoint
    def chunk(state, j, x_chunk):
        if truncate is not None:
            state = tree_map(lambda s: jnp.where(j > 0, lax.stop_gradient(s), s), state)
        chunk_lengths = None if lengths is None else jnp.clip(lengths - j * every, 0, x_chunk.shape[0])
        ys, state = run(params, state, x_chunk, chunk_lengths)
        return state, ys

    parts = []
    if num_chunks:
        chunks = xs[: num_chunks * every].reshape((num_chunks, every) + xs.shape[1:])
        steps = jnp.arange(num_chunks, dtype=jnp.int32)
        state, ys = lax.scan(lambda s, inp: chunk(s, *inp), state, (steps, chunks))
        parts.append(tree_map(lambda a: a.reshape((num_chunks * every,) + a.shape[2:]), ys))
    if rest:
        state, ys = chunk(state, jnp.int32(num_chunks), xs[num_chunks * every :])
        parts.append(ys)
    ys = parts[0] if len(parts) == 1 else tree_map(lambda *a: jnp.concatenate(a, axis=0), *parts)
    return ys, state
