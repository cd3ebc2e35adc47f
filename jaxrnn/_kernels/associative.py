r"""Linear recurrences :math:`h_t = a_t \odot h_{t-1} + b_t` as associative scans, split along time across devices.

The pairs :math:`(a, b)` compose associatively,
:math:`(a_1, b_1) \bullet (a_2, b_2) = (a_1 a_2,\ a_2 b_1 + b_2)`, so
``lax.associative_scan`` computes every :math:`h_t` in :math:`O(\log T)` depth
(Blelloch, 1990). Under a mesh with a :data:`jaxrnn._kernels.sharding.SEQUENCE_AXIS`
of size ``P``, the time axis is split into ``P`` chunks: each device scans its
chunk from a zero state, the ``P`` chunk summaries (the composed pair of each
chunk, ``[P, B, N]``) are gathered, each device composes the summaries before
its own into its entering state, and finishes its chunk with one multiply-add.
Only the summaries cross devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxrnn._kernels import sharding


def _combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def _local_scan(a, b, h0, reverse: bool):
    first = -1 if reverse else 0
    b = b.at[first].add(a[first] * h0)
    return lax.associative_scan(_combine, (a, b), reverse=reverse, axis=0)[1]


def _split_over_time(a, b, h0, reverse: bool):
    """:func:`linear_scan` with the time axis split over the ambient mesh's sequence axis."""
    mesh = sharding.sequence_mesh()
    size = sharding.sequence_devices()
    data = sharding.data_mesh()
    batch = (
        sharding.DATA_AXIS
        if data is not None and a.ndim > 2 and a.shape[1] % data.shape[sharding.DATA_AXIS] == 0
        else None
    )
    spec_t = P(sharding.SEQUENCE_AXIS, *([batch] if a.ndim > 2 else []), *([None] * (a.ndim - 2)))
    spec_h = P(*([batch] if a.ndim > 2 else []), *([None] * (h0.ndim - 1)))

    def local(a, b, h0):
        prefix_a, prefix_b = lax.associative_scan(_combine, (a, b), reverse=reverse, axis=0)
        end = 0 if reverse else -1
        summary_a = lax.all_gather(prefix_a[end], sharding.SEQUENCE_AXIS)
        summary_b = lax.all_gather(prefix_b[end], sharding.SEQUENCE_AXIS)
        me = lax.axis_index(sharding.SEQUENCE_AXIS)

        def enter(j, h):  # compose the chunks before this one (after it, in reverse) in time order
            k = size - 1 - j if reverse else j
            before = k > me if reverse else k < me
            return jnp.where(before, summary_a[k] * h + summary_b[k], h)

        h_in = lax.fori_loop(0, size, enter, h0)
        return prefix_a * h_in[None] + prefix_b

    return jax.shard_map(local, mesh=mesh, in_specs=(spec_t, spec_t, spec_h), out_specs=spec_t, check_vma=False)(
        a, b, h0
    )


def linear_scan(a, b, h0, *, reverse: bool = False):
    r"""All states of :math:`h_t = a_t \odot h_{t-1} + b_t` (axis 0 is time), from :math:`h_{-1} = h_0`.

    With ``reverse``, time runs backwards: :math:`h_t = a_t \odot h_{t+1} + b_t`
    from :math:`h_T = h_0` (the adjoint of a forward recurrence is one).

    Args:
      a, b: ``[T, *shape]``, real or complex, of one dtype.
      h0: ``[*shape]``.

    Returns:
      ``h [T, *shape]``. Under a mesh with a sequence axis, split along time.
    """
    if sharding.sequence_mesh() is not None:
        return _split_over_time(a, b, h0, reverse)
    return _local_scan(a, b, h0, reverse)


def log_linear_scan(log_a, log_b, h0):
    r""":func:`linear_scan` for positive ``a = exp(log_a)``, ``b = exp(log_b)``, evaluated in log space.

    .. math::
        h_t = e^{a^*_t} h_0 + \exp\Big(a^*_t + \operatorname{logcumsumexp}_{s \le t}(\log b_s - a^*_s)\Big),
        \qquad a^*_t = \sum_{r \le t} \log a_r

    (Feng et al., 2024: a cumulative sum and a cumulative log-sum-exp). ``h_0``
    may have any sign. Under a mesh with a sequence axis it runs as
    :func:`linear_scan` on ``exp(log_a), exp(log_b)``, whose chunk summaries
    compose across devices.
    """
    if sharding.sequence_mesh() is not None:
        return linear_scan(jnp.exp(log_a), jnp.exp(log_b), h0)
    a_star = jnp.cumsum(log_a, axis=0)
    return jnp.exp(a_star) * h0[None] + jnp.exp(a_star + lax.cumlogsumexp(log_b - a_star, axis=0))
