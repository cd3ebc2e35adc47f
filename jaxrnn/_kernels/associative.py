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


def _combine(ops: _Ops, earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return ops.compose(a1, a2), ops.apply(a2, b1) + b2


def _prefixes(ops: _Ops, a, b, reverse: bool, method: str):
    """``(A, B)``: the pairs composed from the start of axis 0 (from its end with ``reverse``) to each step."""
    if method == "associative":
        return lax.associative_scan(functools.partial(_combine, ops), (a, b), reverse=reverse, axis=0)

    def step(carry, ab):
        carry = _combine(ops, carry, ab)
        return carry, carry

    init = (ops.identity(a[0]), jnp.zeros_like(b[0]))
    return lax.scan(step, init, (a, b), reverse=reverse)[1]


def _local_scan(ops: _Ops, a, b, h0, reverse: bool, method: str):
    if method == "associative":  # h0 folded into the first step's b
        first = -1 if reverse else 0
        return _prefixes(ops, a, b.at[first].add(ops.apply(a[first], h0)), reverse, method)[1]

    def step(h, ab):
        h = ops.apply(ab[0], h) + ab[1]
        return h, h

    return lax.scan(step, h0, (a, b), reverse=reverse)[1]


def _split_over_time(ops: _Ops, a, b, h0, reverse: bool, method: str):
    """:func:`_local_scan` with the time axis split over the ambient mesh's sequence axis."""
    mesh = sharding.sequence_mesh()
    size = sharding.sequence_devices()
    data = sharding.data_mesh()
    # b is [T, *shape] (elementwise) or [T, *batch, K] (matrices): a batch axis when it has more than two.
    has_batch = b.ndim > 2
    batch = (
        sharding.DATA_AXIS
        if data is not None and has_batch and b.shape[1] % data.shape[sharding.DATA_AXIS] == 0
        else None
    )
    lead = (batch,) if has_batch else ()  # the trailing axes, unnamed, are whole on every device
    spec_t, spec_h = P(sharding.SEQUENCE_AXIS, *lead), P(*lead)

    def local(a, b, h0):
        prefix_a, prefix_b = _prefixes(ops, a, b, reverse, method)
        end = 0 if reverse else -1
        summary_a = lax.all_gather(prefix_a[end], sharding.SEQUENCE_AXIS)
        summary_b = lax.all_gather(prefix_b[end], sharding.SEQUENCE_AXIS)
        me = lax.axis_index(sharding.SEQUENCE_AXIS)

        def enter(j, h):  # compose the chunks before this one (after it, in reverse) in time order
            k = size - 1 - j if reverse else j
            before = k > me if reverse else k < me
            return jnp.where(before, ops.apply(summary_a[k], h) + summary_b[k], h)

        h_in = lax.fori_loop(0, size, enter, h0)
        return ops.apply(prefix_a, h_in[None]) + prefix_b

    return jax.shard_map(local, mesh=mesh, in_specs=(spec_t, spec_t, spec_h), out_specs=spec_t, check_vma=False)(
        a, b, h0
    )


def _scan(ops: _Ops, a, b, h0, reverse: bool, method: str | None):
    method = default_method() if method is None else method
    if sharding.sequence_mesh() is not None:
        return _split_over_time(ops, a, b, h0, reverse, method)
    return _local_scan(ops, a, b, h0, reverse, method)


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
