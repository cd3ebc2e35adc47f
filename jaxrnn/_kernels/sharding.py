"""The mesh axes jaxrnn reads (data, sequence), and running a kernel per batch shard.

Data-parallel training (:mod:`jaxrnn.train`) splits the batch over a one-axis
mesh named :data:`DATA_AXIS`. XLA's partitioner splits a ``lax.scan`` along the
batch by itself, but a ``pallas_call`` is opaque to it: it would gather the batch
and run it whole on every device. So the Pallas kernels run per batch shard
through ``jax.shard_map`` when the ambient mesh has this axis. The parallel
solver splits time over :data:`SEQUENCE_AXIS` (:mod:`jaxrnn._kernels.associative`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"  # the mesh axis that the batch's leading axis is split over
SEQUENCE_AXIS = "sequence"  # the mesh axis that the time axis is split over by the parallel solver


def _ambient_mesh():
    """The mesh set by ``jax.set_mesh`` / ``use_mesh`` while tracing (None on a JAX without abstract meshes)."""
    get = getattr(jax.sharding, "get_abstract_mesh", None)
    return get() if get is not None else None


def _axis_sizes() -> dict:
    """The ambient mesh's axis sizes by name (empty without a mesh)."""
    mesh = _ambient_mesh()
    return dict(zip(tuple(getattr(mesh, "axis_names", ())), tuple(getattr(mesh, "axis_sizes", ()))))


def data_mesh():
    """The ambient mesh when it has a :data:`DATA_AXIS` of size > 1, else None."""
    return _ambient_mesh() if _axis_sizes().get(DATA_AXIS, 1) > 1 else None


def spec(a, batch_axis: int):
    """The PartitionSpec of ``a`` split along ``batch_axis`` (None for a missing operand)."""
    if a is None:
        return None
    parts: list = [None] * a.ndim
    parts[batch_axis] = DATA_AXIS
    return P(*parts)


def per_batch_shard(fn: Callable, args: tuple, batch_axes: tuple, out_batch_axes: tuple) -> tuple:
    """``fn(*args)``, run per batch shard under a data-parallel mesh, else as is.

    ``batch_axes``: for each argument, the axis that holds the batch (None:
    replicated); ``out_batch_axes``: the same for each output.
    """
    mesh = data_mesh()
    if mesh is None:
        return fn(*args)
    in_specs = tuple(P() if axis is None else spec(a, axis) for a, axis in zip(args, batch_axes))
    outs = jax.eval_shape(fn, *args)
    out_specs = tuple(None if o is None else spec(o, axis) for o, axis in zip(outs, out_batch_axes))
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(*args)


def sequence_axis_is_explicit() -> bool:
    """Whether the ambient mesh has a :data:`SEQUENCE_AXIS` of type ``Explicit`` (sharding in types)."""
    mesh = _ambient_mesh()
    names = tuple(getattr(mesh, "axis_names", ()))
    if SEQUENCE_AXIS not in names or not hasattr(jax.sharding, "AxisType"):
        return False
    types = tuple(getattr(mesh, "axis_types", ()))
    return len(types) == len(names) and types[names.index(SEQUENCE_AXIS)] == jax.sharding.AxisType.Explicit


def sequence_devices() -> int:
    """How many devices the ambient mesh splits time over: the size of its :data:`SEQUENCE_AXIS` (1 without)."""
    return int(_axis_sizes().get(SEQUENCE_AXIS, 1))


def sequence_mesh():
    """The ambient mesh when it has a :data:`SEQUENCE_AXIS` of size > 1, else None."""
    return _ambient_mesh() if sequence_devices() > 1 else None
