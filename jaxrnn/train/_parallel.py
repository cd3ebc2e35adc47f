"""Data parallelism through JAX's own sharding: one mesh axis for the batch.

A 1-D :class:`jax.sharding.Mesh` whose one axis is :data:`DATA_AXIS` spans the
devices used (:func:`make_mesh`). A batch is split along its leading axis over
that axis (``NamedSharding(mesh, P(DATA_AXIS))``, :func:`shard_batch`);
parameters, optimiser state and PRNG keys are replicated (``P()``,
:func:`replicate`). A step jitted over such arrays is partitioned by XLA (GSPMD):
each device runs the forward and backward pass on its rows and XLA inserts the
all-reduce of the gradients; nothing here schedules work by hand
(:func:`data_parallel`). Steps are traced and run inside :func:`mesh_context`, so
code that reads ``jax.sharding.get_abstract_mesh()`` while tracing (jaxrnn's
Pallas kernels) finds :data:`DATA_AXIS` and can run per shard with ``shard_map``.

More than one process (:func:`initialize_distributed`, a wrapper of
``jax.distributed.initialize``): the mesh spans the devices of every process, as
in JAX's multi-controller model every process runs every step. Each process holds
the same global batch (the built-in tasks' batches are pure functions of the seed
and the step) and transfers only the rows of its own devices
(``jax.make_array_from_process_local_data``). Files are written by process 0
(:func:`is_primary`); :func:`broadcast` hands its values to the others and
:func:`gather` collects arrays that span processes before they are saved.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrnn._core.checks import check_positive_int
from jaxrnn._kernels.sharding import DATA_AXIS as DATA_AXIS

Devices = int | str

# The environment variables read for the flags of the same names when those are not
# given; JAX itself reads JAX_COORDINATOR_ADDRESS (and detects Cloud TPU, SLURM,
# Open MPI and Kubernetes clusters).
DISTRIBUTED_ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def parse_devices(text: str) -> Devices:
    """``"all"`` or a positive int, from a command-line value.

    Raises:
      ValueError: anything else.
    """
    if text == "all":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--devices must be a positive integer or 'all', got {text!r}")
    return count


def make_mesh(devices: Devices = "all", *, backend: str | None = None, name: str = "devices") -> Mesh:
    """A 1-D mesh with the axis :data:`DATA_AXIS` for data parallelism.

    Args:
      devices: ``"all"``: every device of every process; an int N: the first N
        devices of each process, so N devices in all on one process and
        ``N * jax.process_count()`` with several.
      backend: ``"cpu"``, ``"gpu"``, ``"tpu"``; None for JAX's default backend.
      name: how error messages call ``devices`` (``"--devices"`` on the command line).

    Returns:
      ``Mesh(devices, (DATA_AXIS,))`` with an ``Auto`` axis: XLA's partitioner
      propagates the shardings.

    Raises:
      ValueError: ``devices`` is not ``"all"`` or a positive int, or exceeds the
        devices this process has.

    Example:
      >>> from jaxrnn import train
      >>> mesh = train.make_mesh(1)
      >>> mesh.axis_names, mesh.size
      (('data',), 1)
    """
    local = jax.local_devices(backend=backend)
    if devices == "all":
        chosen = jax.devices(backend)
    else:
        count = check_positive_int(devices, f"{name} (or 'all')")
        if count > len(local):
            raise ValueError(
                f"{name} {count} asks for more devices than this process has: {len(local)} "
                f"({local[0].platform}); use {name} {len(local)} or fewer, or 'all'."
            )
        by_process: dict = {}
        for device in jax.devices(backend):
            by_process.setdefault(device.process_index, []).append(device)
        chosen = [device for process in sorted(by_process) for device in by_process[process][:count]]
    kwargs = {}
    if hasattr(jax.sharding, "AxisType"):  # jax >= 0.6; Auto is what older versions always did
        kwargs["axis_types"] = (jax.sharding.AxisType.Auto,)
    return Mesh(np.asarray(chosen), (DATA_AXIS,), **kwargs)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: its leading axis split over :data:`DATA_AXIS`."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters and optimiser state: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def mesh_context(mesh: Mesh):
    """A context manager that makes ``mesh`` the current mesh while tracing and running.

    ``jax.set_mesh`` (jax >= 0.7), else ``jax.sharding.use_mesh`` (jax 0.6).
    Inside it ``jax.sharding.get_abstract_mesh()`` has the axis :data:`DATA_AXIS`.
    """
    set_mesh = getattr(jax, "set_mesh", None)
    return set_mesh(mesh) if set_mesh is not None else jax.sharding.use_mesh(mesh)  # type: ignore[attr-defined]


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "batch_size") -> None:
    """Raise if ``batch_size`` rows cannot be split evenly over the devices of ``mesh``.

    Raises:
      ValueError: naming ``name``, the batch size and the device count, with the
        nearest multiples and the device counts that would divide it.
    """
    count = mesh.size
    if batch_size % count == 0:
        return
    multiples = [m for m in (count * (batch_size // count), count * (batch_size // count + 1)) if m > 0]
    divisors = [d for d in range(1, count) if batch_size % d == 0]
    counts = ", ".join(map(str, divisors[:-1])) + (" or " if len(divisors) > 1 else "") + str(divisors[-1])
    raise ValueError(
        f"{name} must be divisible by the number of devices, {count}, so that each device gets an equal "
        f"share of the batch; got {batch_size}. Use a multiple of {count} "
        f"({' or '.join(map(str, multiples))}), or {counts} devices."
    )


def is_primary() -> bool:
    """Whether this is process 0, the one that writes files and logs."""
    return jax.process_index() == 0


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _place(leaf, sharding: NamedSharding):
    """``leaf`` as one global array with ``sharding``; each process supplies its devices' parts."""
    if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
        return leaf
    if jax.process_count() == 1:
        return jax.device_put(leaf, sharding)
    if _is_key(leaf):
        data = _place(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    # Every process holds the whole value (global_shape == its shape), and each
    # device copies only its own part of it.
    host = np.asarray(leaf)
    return jax.make_array_from_process_local_data(sharding, host, host.shape)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree``'s arrays copied to every device of ``mesh`` (already replicated ones are kept).

    With several processes every process must pass the same values.
    """
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, replicated(mesh)), tree)


def _leading_sizes(batch) -> dict:
    """``{path: leading size}`` of the batch's leaves that have axes."""
    return {
        jax.tree_util.keystr(path): np.shape(leaf)[0]
        for path, leaf in jax.tree_util.tree_leaves_with_path(batch)
        if np.ndim(leaf) > 0
    }


def _splits(sizes: dict, mesh: Mesh) -> bool:
    """Whether batch leaves of these leading sizes split evenly over the devices of ``mesh``."""
    return all(size % mesh.size == 0 for size in sizes.values())


def shard_batch(batch: Any, mesh: Mesh, *, replicate_uneven: bool = False) -> Any:
    """``batch`` as global arrays whose leading (batch) axis is split over :data:`DATA_AXIS`.

    Leaves without axes (flags such as a stream's ``reset``) are replicated.
    With several processes every process passes the same global batch and only
    its own devices' rows are copied to them.

    Args:
      batch: a pytree of NumPy or JAX arrays whose leaves with axes share their
        leading size B (the carried state of a stream counts as batch too).
      mesh: from :func:`make_mesh`.
      replicate_uneven: replicate a batch whose B the device count does not
        divide, instead of raising (evaluation: the metrics are then computed in
        full on every device).

    Returns:
      The batch with the same structure, as ``jax.Array`` leaves.

    Raises:
      ValueError: leaves disagree on B, or (without ``replicate_uneven``) B is not
        divisible by the device count.
    """
    sizes = _leading_sizes(batch)
    if len(set(sizes.values())) > 1:
        found = ", ".join(f"{size} at {path}" for path, size in sizes.items())
        raise ValueError(
            f"every array of a batch must have the batch size as its leading axis, got leading sizes {found}; "
            f"keep arrays of other sizes out of the batch (e.g. in the loss function's closure)."
        )
    sharding = batch_sharding(mesh)
    if not _splits(sizes, mesh):
        if not replicate_uneven:
            check_batch_size(
                next(iter(sizes.values())), mesh, name="the batch size (the leading axis of every array of the batch)"
            )
        sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, sharding if np.ndim(leaf) > 0 else replicated(mesh)), batch)


def data_parallel(
    fn: Callable,
    mesh: Mesh,
    *,
    batch_argnums: Iterable[int],
    replicated_outputs: Iterable[int] = (),
    replicate_uneven: bool = False,
) -> Callable:
    """``fn`` jitted to run data parallel over ``mesh``.

    Each call places its arguments, those at ``batch_argnums`` with
    :func:`shard_batch` and the others with :func:`replicate` (arguments already
    placed pass as they are), and traces and runs ``fn`` inside
    :func:`mesh_context`. XLA partitions the program: every device works on its
    rows of the batch, and reductions over the batch (a mean loss, the gradient
    of the replicated parameters) become all-reduces. A batch replicated because
    it does not split evenly (``replicate_uneven``) runs outside the mesh
    context: code that looks for :data:`DATA_AXIS` then finds none and does not
    split it.

    Args:
      fn: a function of positional arguments that returns a tuple (or one value).
      mesh: from :func:`make_mesh`.
      batch_argnums: the positions of the arguments split over :data:`DATA_AXIS`.
      replicated_outputs: positions in ``fn``'s output tuple that are constrained
        to stay replicated (the new parameters and optimiser state), so they come
        back placed for the next call.
      replicate_uneven: as in :func:`shard_batch`.

    Returns:
      ``step(*args)``, with ``fn``'s outputs as global arrays.
    """
    batch_argnums, replicated_outputs = frozenset(batch_argnums), frozenset(replicated_outputs)

    def constrained(*args):
        out = fn(*args)
        if not replicated_outputs:
            return out
        return tuple(
            jax.lax.with_sharding_constraint(value, replicated(mesh)) if i in replicated_outputs else value
            for i, value in enumerate(out)
        )

    jitted = jax.jit(constrained)

    def step(*args):
        placed = [
            shard_batch(arg, mesh, replicate_uneven=replicate_uneven) if i in batch_argnums else replicate(arg, mesh)
            for i, arg in enumerate(args)
        ]
        split = all(_splits(_leading_sizes(arg), mesh) for i, arg in enumerate(args) if i in batch_argnums)
        with mesh_context(mesh) if split else contextlib.nullcontext():
            return jitted(*placed)

    return step


def gather(tree: Any) -> Any:
    """``tree`` with every array split across processes replaced by its whole value (NumPy).

    A collective with several processes: every process must call it at the same
    point. With one process it returns ``tree`` unchanged (such arrays are all
    addressable already).
    """

    from jax.experimental import multihost_utils  # imported here: it is only for several processes

    def whole(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return leaf

    return jax.tree_util.tree_map(whole, tree)


def broadcast(tree: Any) -> Any:
    """Process 0's ``tree`` on every process, bit for bit; ``tree`` itself with one process.

    Every process passes a tree of the same structure, dtypes and shapes (its
    own values, e.g. a freshly initialised state). The values travel as raw
    bytes, so float64 and typed PRNG keys arrive exactly.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    raw = [np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf) for leaf in leaves]
    sent = multihost_utils.broadcast_one_to_all([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in raw])
    received = [np.asarray(bytes_).view(a.dtype).reshape(a.shape) for bytes_, a in zip(sent, raw)]
    return jax.tree_util.tree_unflatten(treedef, [_like(leaf, value) for leaf, value in zip(leaves, received)])


def _like(template, value: np.ndarray):
    """``value`` with the type of ``template``: a Python number, a NumPy array, a JAX array or key."""
    if _is_key(template):
        return jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(template))
    if isinstance(template, jax.Array):
        return jnp.asarray(value)
    if isinstance(template, (np.ndarray, np.generic)):
        return value if isinstance(template, np.ndarray) else value[()]
    return type(template)(value.item())


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    required: bool = False,
) -> bool:
    """Start JAX's multi-process runtime (``jax.distributed.initialize``) when asked to.

    Values not given are read from :data:`DISTRIBUTED_ENV`; what is still
    missing, JAX detects on Cloud TPU slices, SLURM, Open MPI and Kubernetes.
    On CPU the processes' collectives run over gloo. Call it before anything
    else touches JAX's devices.

    Args:
      coordinator_address: ``host:port`` of process 0's coordinator.
      num_processes: how many processes take part.
      process_id: this process's index, in ``[0, num_processes)``.
      required: initialise even when no value is given (cluster auto-detection).

    Returns:
      Whether the runtime was initialised (nothing was given nor required: False).

    Raises:
      ValueError: a value is not a number, ``process_id`` is out of range, or JAX
        cannot initialise (the message carries JAX's).
    """
    values = (coordinator_address, num_processes, process_id)
    given = {
        key: value if value is not None else os.environ.get(variable) or None
        for (key, variable), value in zip(DISTRIBUTED_ENV.items(), values)
    }
    if not required and all(value is None for value in given.values()):
        return False
    address = given["coordinator_address"]
    count, index = (_as_int(given[key], key) for key in ("num_processes", "process_id"))
    if count is not None:
        check_positive_int(count, "--num-processes")
    if count is not None and index is not None and not 0 <= index < count:
        raise ValueError(f"--process-id must lie in [0, {count}) for --num-processes {count}, got {index}.")
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # older jax had none by default
    try:
        jax.distributed.initialize(
            coordinator_address=None if address is None else str(address), num_processes=count, process_id=index
        )
    except (ValueError, RuntimeError) as error:
        raise ValueError(
            f"jax.distributed.initialize failed: {str(error).rstrip('.')}. Give --coordinator-address HOST:PORT (process 0's), "
            f"--num-processes and --process-id, or set {', '.join(DISTRIBUTED_ENV.values())}."
        ) from error
    return True


def _as_int(value, key: str) -> int | None:
    """A ``num_processes`` or ``process_id`` given as a number or read as text, as an int."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"--{key.replace('_', '-')} ({DISTRIBUTED_ENV[key]}) must be an integer, got {value!r}."
        ) from None
