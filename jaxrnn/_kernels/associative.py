r"""Linear recurrences :math:`h_t = a_t \odot h_{t-1} + b_t` as associative scans, split along time across devices.

The pairs :math:`(a, b)` compose associatively,
:math:`(a_1, b_1) \bullet (a_2, b_2) = (a_1 a_2,\ a_2 b_1 + b_2)`, so
``lax.associative_scan`` computes every :math:`h_t` in :math:`O(\log T)` depth
(Blelloch, 1990). That is how GPUs and TPUs evaluate it. On the CPU an in-order
``lax.scan`` of the elementwise update is faster (a few cores have no width to
spend the associative scan's extra passes over memory on: 16 ms against 94 ms
for ``T=65536, B=1, H=128``, ``benchmarks/parallel_choices.py``), so :func:`default_method`
picks it there; both give the same states. Under a mesh with a :data:`jaxrnn._kernels.sharding.SEQUENCE_AXIS`
of size ``P``, the time axis is split into ``P`` chunks: each device scans its
chunk from a zero state, the ``P`` chunk summaries (the composed pair of each
chunk, ``[P, B, N]``) are gathered, each device composes the summaries before
its own into its entering state, and finishes its chunk with one multiply-add.
Only the summaries cross devices.

:func:`matrix_linear_scan` is the same with matrices,
:math:`h_t = A_t h_{t-1} + b_t`, composed as
:math:`(A_1, b_1) \bullet (A_2, b_2) = (A_2 A_1,\ A_2 b_1 + b_2)` (summaries
``[P, B, K, K]`` and ``[P, B, K]``). It is what each Newton iteration of DEER
solves: linearising a nonlinear recurrence :math:`h_t = f(h_{t-1}, x_t)` about a
guess gives :math:`A_t = \partial f / \partial h_{t-1}`, a ``K x K`` Jacobian
(Lim et al., 2024, "Parallelizing non-linear sequential models over the sequence
length"). Both forms run through one implementation, which takes how a
coefficient applies to a state and how two coefficients compose (``_Ops``).

The split over devices is :func:`prefix_scan`'s, for any associative operator
on elements with a time axis: the pairs above, and the Kalman filter elements of
the damped Newton solvers (ELK) in :mod:`jaxrnn._core.newton`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrnn._kernels import sharding

METHODS = ("associative", "sequential")
# The evaluation order by platform, measured (benchmarks/NOTES.md, "parallel solver on the CPU");
# the associative scan elsewhere.
_DEFAULT_METHOD = {"cpu": "sequential"}


def default_method() -> str:
    """How :func:`linear_scan` and :func:`matrix_linear_scan` evaluate on the default backend: ``"associative"`` or ``"sequential"``."""
    return _DEFAULT_METHOD.get(jax.default_backend(), "associative")


class _Ops(NamedTuple):
    """What the elementwise and the matrix forms differ in: how a coefficient acts on a state and on another."""

    apply: Callable  # (a, h) -> a h: a [..., N] on h [..., N] elementwise, or a [..., K, K] on h [..., K]
    compose: Callable  # (earlier, later) -> the coefficient of applying earlier, then later
    identity: Callable  # a -> the coefficient that leaves a state as it is, shaped as a


_ELEMENTWISE = _Ops(apply=lambda a, h: a * h, compose=lambda earlier, later: earlier * later, identity=jnp.ones_like)
_MATRIX = _Ops(
    apply=lambda a, h: jnp.einsum("...ij,...j->...i", a, h),
    compose=lambda earlier, later: jnp.einsum("...ij,...jk->...ik", later, earlier),
    identity=lambda a: jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape),
)


class Associative(NamedTuple):
    """An associative operator on elements, pytrees whose leaves share a leading time axis.

    Each element maps the state entering a step to the state after it (with
    whatever else the recurrence carries); its composition with a known state is
    again an element, whose map is constant.
    """

    combine: Callable  # (earlier, later) -> the element of both, earlier processed first (broadcasts over time)
    identity: Callable  # one element -> the element that composes with it to leave it as it is
    enter: Callable  # (state, element) -> the element entered from that known state


def _pairs(ops: _Ops) -> Associative:
    r"""The pairs :math:`(a, b)` of a linear recurrence, each the map :math:`h \mapsto a h + b`."""

    def combine(earlier, later):
        a1, b1 = earlier
        a2, b2 = later
        return ops.compose(a1, a2), ops.apply(a2, b1) + b2

    return Associative(
        combine,
        identity=lambda pair: (ops.identity(pair[0]), jnp.zeros_like(pair[1])),
        enter=lambda h, pair: (jnp.zeros_like(pair[0]), ops.apply(pair[0], h) + pair[1]),
    )


def _prefixes(op: Associative, elements, reverse: bool, method: str):
    """The elements composed from the start of axis 0 (from its end with ``reverse``) to each step."""
    if method == "associative":
        return lax.associative_scan(op.combine, elements, reverse=reverse, axis=0)

    def step(carry, element):
        carry = op.combine(carry, element)
        return carry, carry

    init = op.identity(jax.tree_util.tree_map(lambda leaf: leaf[0], elements))
    return lax.scan(step, init, elements, reverse=reverse)[1]


def _split_over_time(op: Associative, h0, elements, reverse: bool, method: str, batched: bool):
    """:func:`prefix_scan` with the time axis split over the ambient mesh's sequence axis."""
    mesh = sharding.sequence_mesh()
    data = sharding.data_mesh()
    batch_size = jax.tree_util.tree_leaves(elements)[0].shape[1] if batched else 0
    divides = data is not None and batched and batch_size % data.shape[sharding.DATA_AXIS] == 0
    batch = sharding.DATA_AXIS if divides else None
    lead = (batch,) if batched else ()  # the trailing axes, unnamed, are whole on every device
    spec_t, spec_h = P(sharding.SEQUENCE_AXIS, *lead), P(*lead)
    local = functools.partial(_chunk_prefixes, op, reverse=reverse, method=method, devices=sharding.sequence_devices())
    return jax.shard_map(local, mesh=mesh, in_specs=(spec_t, spec_h), out_specs=spec_t, check_vma=False)(elements, h0)


def _chunk_prefixes(op: Associative, elements, h0, *, reverse: bool, method: str, devices: int):
    """One device's part of :func:`_split_over_time`: the prefixes of its chunk of time, entered from those before it.

    Each device composes its chunk, the chunks' composed elements (one per
    device) are gathered, and each composes those before its own (after it, with
    ``reverse``), enters them from ``h0``, and composes the result with each
    prefix of its chunk. Collective over :data:`jaxrnn._kernels.sharding.SEQUENCE_AXIS`
    of ``devices`` devices: run under ``jax.shard_map``, or ``jax.vmap`` with
    that axis name (devices simulated on one).
    """
    tree_map = jax.tree_util.tree_map
    prefixes = _prefixes(op, elements, reverse, method)
    end = 0 if reverse else -1
    summaries = tree_map(lambda leaf: lax.all_gather(leaf[end], sharding.SEQUENCE_AXIS), prefixes)
    me = lax.axis_index(sharding.SEQUENCE_AXIS)

    def compose_before(j, carry):  # the chunks before this one (after it, in reverse), in time order
        k = devices - 1 - j if reverse else j
        before = k > me if reverse else k < me
        composed = op.combine(carry, tree_map(lambda leaf: leaf[k], summaries))
        return tree_map(lambda new, old: jnp.where(before, new, old), composed, carry)

    carry = lax.fori_loop(0, devices, compose_before, op.identity(tree_map(lambda leaf: leaf[end], prefixes)))
    entering = op.enter(h0, carry)
    return op.combine(tree_map(lambda e, p: jnp.broadcast_to(e, p.shape), entering, prefixes), prefixes)


def prefix_scan(op: Associative, h0, elements, *, reverse: bool = False, method: str | None = None, batched: bool):
    """The elements composed up to every step (from the end with ``reverse``), entered from the state ``h0``.

    Args:
      op: the operator.
      h0: the state entering the first step (the last with ``reverse``), no time axis.
      elements: a pytree of ``[T, ...]`` arrays.
      method: ``"associative"`` (``lax.associative_scan``) or ``"sequential"``
        (an in-order ``lax.scan`` of ``op.combine``); None: :func:`default_method`.
      batched: axis 1 of every element (axis 0 of ``h0``) is a batch axis,
        split over a data mesh axis when its size divides it.

    Returns:
      The composed elements, ``[T, ...]``, whose maps are constant: the states
      after every step. Under a mesh with a sequence axis each device composes
      its chunk of time, and only the chunks' composed elements cross devices.
    """
    method = default_method() if method is None else method
    if sharding.sequence_mesh() is not None:
        return _split_over_time(op, h0, elements, reverse, method, batched)
    first = -1 if reverse else 0
    entered = op.enter(h0, jax.tree_util.tree_map(lambda leaf: leaf[first], elements))
    elements = jax.tree_util.tree_map(lambda leaf, e: leaf.at[first].set(e), elements, entered)
    return _prefixes(op, elements, reverse, method)


def _scan(ops: _Ops, a, b, h0, reverse: bool, method: str | None):
    method = default_method() if method is None else method
    if method == "sequential" and sharding.sequence_mesh() is None:  # one multiply-add a step, nothing composed

        def step(h, ab):
            h = ops.apply(ab[0], h) + ab[1]
            return h, h

        return lax.scan(step, h0, (a, b), reverse=reverse)[1]
    # b is [T, *shape] (elementwise) or [T, *batch, K] (matrices): a batch axis when it has more than two.
    return prefix_scan(_pairs(ops), h0, (a, b), reverse=reverse, method=method, batched=b.ndim > 2)[1]


def linear_scan(a, b, h0, *, reverse: bool = False, method: str | None = None):
    r"""All states of :math:`h_t = a_t \odot h_{t-1} + b_t` (axis 0 is time), from :math:`h_{-1} = h_0`.

    With ``reverse``, time runs backwards: :math:`h_t = a_t \odot h_{t+1} + b_t`
    from :math:`h_T = h_0` (the adjoint of a forward recurrence is one).

    Args:
      a, b: ``[T, *shape]``, real or complex, of one dtype.
      h0: ``[*shape]``.
      method: ``"associative"`` (``lax.associative_scan``, depth O(log T)) or
        ``"sequential"`` (an in-order ``lax.scan``); None: :func:`default_method`.

    Returns:
      ``h [T, *shape]``. Under a mesh with a sequence axis, split along time.
    """
    return _scan(_ELEMENTWISE, a, b, h0, reverse, method)


def matrix_linear_scan(a, b, h0, *, reverse: bool = False, method: str | None = None):
    r"""All states of :math:`h_t = A_t h_{t-1} + b_t` with matrices :math:`A_t` (axis 0 is time), from :math:`h_{-1} = h_0`.

    With ``reverse``, time runs backwards: :math:`h_t = A_t h_{t+1} + b_t` from
    :math:`h_T = h_0` (the adjoint of a forward recurrence is one, with each
    :math:`A_t` transposed by the caller). This is the linear system of each
    Newton iteration of DEER (Lim et al., 2024), :math:`A_t` the Jacobian of
    the step.

    Args:
      a: ``[T, *batch, K, K]``, real.
      b: ``[T, *batch, K]``, of ``a``'s dtype.
      h0: ``[*batch, K]``.
      method: ``"associative"`` (``lax.associative_scan``, depth O(log T),
        O(K^3) work per composition) or ``"sequential"`` (an in-order
        ``lax.scan``, O(K^2) per step); None: :func:`default_method`.

    Returns:
      ``h [T, *batch, K]``. Under a mesh with a sequence axis, split along time
      as :func:`linear_scan` is.
    """
    return _scan(_MATRIX, a, b, h0, reverse, method)


def adjoint_scan(carry, g, *, method: str | None = None):
    r"""The adjoint of :func:`linear_scan`: :math:`\lambda_t = g_t + c_{t+1} \lambda_{t+1}` from the end, and :math:`c_0 \lambda_0`.

    ``carry`` holds :math:`c_t`, what multiplies :math:`h_{t-1}` in :math:`h_t`
    (``a_t``, or 1 and 0 where a step is skipped or the gradient cut); ``g`` the
    cotangent reaching each :math:`h_t` directly. Returns ``(lambda, d_h0)``.
    The in-order method carries :math:`c_t \lambda_t` back, so it shifts nothing.
    """
    method = default_method() if method is None else method
    if method == "sequential" and sharding.sequence_mesh() is None:

        def step(into_next, cg):
            lam = cg[1] + into_next
            return cg[0] * lam, lam

        d_h0, lam = lax.scan(step, jnp.zeros_like(g[0]), (carry, g), reverse=True)
        return lam, d_h0
    carry_next = jnp.concatenate([carry[1:], jnp.zeros_like(carry[:1])], axis=0)
    lam = linear_scan(carry_next, g, jnp.zeros_like(g[0]), reverse=True, method=method)
    return lam, carry[0] * lam[0]


def log_linear_scan(log_a, log_b, h0, *, method: str | None = None):
    r""":func:`linear_scan` for positive ``a = exp(log_a)``, ``b = exp(log_b)``, evaluated in log space.

    .. math::
        h_t = e^{a^*_t} h_0 + \exp\Big(a^*_t + \operatorname{logcumsumexp}_{s \le t}(\log b_s - a^*_s)\Big),
        \qquad a^*_t = \sum_{r \le t} \log a_r

    (Feng et al., 2024: a cumulative sum and a cumulative log-sum-exp). ``h_0``
    may have any sign. With the ``"sequential"`` method (the CPU's default) and
    under a mesh with a sequence axis it runs as :func:`linear_scan` on
    ``exp(log_a), exp(log_b)``: an in-order scan multiplies no long products, so
    it needs no logarithms, and chunk summaries compose across devices.
    """
    method = default_method() if method is None else method
    if method == "sequential" or sharding.sequence_mesh() is not None:
        return linear_scan(jnp.exp(log_a), jnp.exp(log_b), h0, method=method)
    a_star = jnp.cumsum(log_a, axis=0)
    return jnp.exp(a_star) * h0[None] + jnp.exp(a_star + lax.cumlogsumexp(log_b - a_star, axis=0))
