"""Checkpoints of a training run: one self-checking file per step, written atomically.

The format is flax's msgpack serialisation (``flax.serialization.msgpack_serialize``)
of the state's leaves, inside a small envelope written here. msgpack stores each
array as its raw bytes with its dtype and shape, so a round trip is bit for bit;
it is one in-memory buffer, so a checkpoint is one file written with one
``os.replace``, which makes the write atomic and the checksum a single SHA-256;
and it runs in the calling thread. orbax-checkpoint was the other candidate: it
writes a directory of files per step (an atomic rename of a directory, with a
tensorstore per array), saves on background threads by default, and leaves
corruption checks to the storage layer, which is more than a training run on one
host needs. flax is already a dependency of jaxrnn.

A file ``ckpt-{step:08d}.ckpt`` holds, in order:

- ``MAGIC`` (16 bytes), then the format version, the header size and the payload
  size as big-endian ``uint32, uint64, uint64``;
- the header: UTF-8 JSON ``{"format", "step", "config", "leaves"}``, where
  ``leaves`` lists each leaf's path (``jax.tree_util.keystr``), dtype, shape and,
  for typed PRNG keys, the key implementation;
- the payload: ``msgpack_serialize`` of ``{"0": leaf_0, "1": leaf_1, ...}`` as
  NumPy arrays (typed keys as their ``jax.random.key_data``);
- the SHA-256 of everything before it (32 bytes), so a flipped byte anywhere, in
  the header or the payload, is found before anything is decoded.

The tree structure is not stored: :func:`restore` takes it from a ``target``, the
freshly initialised state (as ``flax.serialization.from_bytes`` and orbax do), and
checks every leaf's path, dtype and shape against the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import secrets
import struct
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxrnn._core.checks import check_positive_int

FORMAT_VERSION = 1
MAGIC = b"\x89jaxrnn-ckpt\r\n\x1a\n"  # as PNG's: catches text-mode and 7-bit transfers
_SIZES = struct.Struct(">IQQ")  # format version, header bytes, payload bytes
_DIGEST_BYTES = 32
_FIXED_BYTES = len(MAGIC) + _SIZES.size
_NAME = re.compile(r"ckpt-(\d{8,})\.ckpt")
_PYTHON_SCALARS = (bool, int, float, complex)

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file is damaged, is not a jaxrnn checkpoint, or does not fit the target.

    The message names the file and what is wrong with it.
    """


def save(directory: PathLike, state: Any, *, step: int, config: dict, keep: int = 3) -> pathlib.Path:
    """Write ``state`` to ``directory/ckpt-{step:08d}.ckpt`` atomically and prune old checkpoints.

    The file is written under a temporary name in ``directory``, flushed and
    fsynced, then renamed into place with ``os.replace``, so a crash at any point
    leaves either the complete new checkpoint or none (and the older ones intact).
    Only then are older checkpoints deleted: the new one is kept with the
    ``keep - 1`` others of highest step. Files that are not jaxrnn checkpoints are
    never touched. A checkpoint already saved at ``step`` is replaced.

    Args:
      directory: where checkpoints live; created if missing.
      state: a pytree of ``jax.Array`` (typed PRNG keys included), NumPy arrays
        and Python numbers, e.g. ``{"params": ..., "opt_state": ..., "key": ...}``.
        Arrays must be fully addressable from this process.
      step: the training step, a non-negative int; it names the file.
      config: a JSON-serialisable dict stored with the state (the run's settings).
        :func:`restore` returns it as ``json.loads`` reads it (tuples become lists).
      keep: how many checkpoints to keep in ``directory``, at least 1.

    Returns:
      The path of the new checkpoint.

    Raises:
      TypeError: ``config`` is not a JSON-serialisable dict, or a leaf of
        ``state`` is not an array or a Python number (the message names its path).
      ValueError: ``step`` or ``keep`` is not a valid int.

    Example:
      >>> import tempfile
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.train import _checkpoint as checkpoint
      >>> state = {"params": jnp.ones(3), "key": jax.random.key(0), "step": 7}
      >>> with tempfile.TemporaryDirectory() as directory:
      ...     path = checkpoint.save(directory, state, step=7, config={"lr": 0.01})
      ...     restored, step, config = checkpoint.restore(directory, target=state)
      >>> path.name, step, config, restored["step"]
      ('ckpt-00000007.ckpt', 7, {'lr': 0.01}, 7)
      >>> bool(jnp.all(jax.random.key_data(restored["key"]) == jax.random.key_data(state["key"])))
      True
    """
    step = check_positive_int(step, "step", minimum=0)
    keep = check_positive_int(keep, "keep")
    directory = pathlib.Path(directory)
    data = _encode(state, step, config)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{step:08d}.ckpt"
    _write_atomically(path, data)
    _prune(directory, keep=keep, written=path)
    return path


def latest(directory: PathLike) -> pathlib.Path | None:
    """The checkpoint of highest step in ``directory`` whose checksum verifies.

    Newer files that fail to verify (truncated, corrupted, not jaxrnn checkpoints)
    are skipped with a ``UserWarning`` naming each file and its problem. Nothing is
    modified or deleted.

    Args:
      directory: the directory given to :func:`save`.

    Returns:
      The path, or None if ``directory`` does not exist or holds no checkpoint that
      verifies.

    Example:
      >>> import tempfile
      >>> import jax.numpy as jnp
      >>> from jaxrnn.train import _checkpoint as checkpoint
      >>> with tempfile.TemporaryDirectory() as directory:
      ...     before = checkpoint.latest(directory)
      ...     for step in (10, 20):
      ...         _ = checkpoint.save(directory, {"w": jnp.zeros(2)}, step=step, config={})
      ...     after = checkpoint.latest(directory)
      >>> before, after.name
      (None, 'ckpt-00000020.ckpt')
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    for _, path in reversed(_checkpoints(directory)):
        try:
            _read(path)
        except CheckpointError as error:
            warnings.warn(f"skipping a checkpoint that does not verify: {error}", stacklevel=2)
            continue
        return path
    return None


def restore(path_or_directory: PathLike, target: Any) -> tuple:
    """Read a checkpoint into the structure of ``target``.

    Args:
      path_or_directory: a checkpoint file, or a directory to take the
        :func:`latest` verified checkpoint from.
      target: a pytree with the structure, dtypes and shapes of the saved state,
        e.g. the freshly initialised state, or ``jax.eval_shape`` of its
        initialiser. Each restored leaf has the type of the target's leaf: a
        ``jax.Array`` placed with the target leaf's sharding, a NumPy array or a
        Python number.

    Returns:
      ``(state, step, config)``: the state with ``target``'s structure, and the
      ``step`` and ``config`` given to :func:`save`.

    Raises:
      CheckpointError: the file is truncated, fails its checksum, is not a jaxrnn
        checkpoint or has another format version, or its leaves differ from
        ``target``'s (the message names the first leaf path that differs).
      FileNotFoundError: the file does not exist, or the directory holds no
        checkpoint that verifies.

    Example:
      >>> import tempfile
      >>> import jax.numpy as jnp
      >>> from jaxrnn.train import _checkpoint as checkpoint
      >>> with tempfile.TemporaryDirectory() as directory:
      ...     _ = checkpoint.save(directory, {"w": jnp.arange(3.0)}, step=1, config={})
      ...     try:
      ...         checkpoint.restore(directory, target={"w": jnp.zeros(4)})
      ...     except checkpoint.CheckpointError as error:
      ...         print(str(error).split(": ", 1)[1])
      does not match the target at leaf ['w']: the checkpoint has float32[3], the target float32[4].
    """
    path = pathlib.Path(path_or_directory)
    if path.is_dir():
        found = latest(path)
        if found is None:
            raise FileNotFoundError(f"{path} holds no jaxrnn checkpoint that verifies (ckpt-*.ckpt).")
        path = found
    header, payload = _read(path)
    try:
        values = serialization.msgpack_restore(payload)
        records = header["leaves"]
        saved = [(r["path"], _Spec(r["dtype"], tuple(r["shape"]))) for r in records]
        arrays = [values[str(i)] for i in range(len(records))]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path}: the payload does not decode ({error!r}) although its checksum verifies."
        ) from error
    target_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    wanted = [(jax.tree_util.keystr(p), _spec(leaf, jax.tree_util.keystr(p))) for p, leaf in target_leaves]
    _check_matches(path, saved, wanted)
    leaves = [_restore_leaf(a, r.get("impl"), leaf) for a, r, (_, leaf) in zip(arrays, records, target_leaves)]
    return jax.tree_util.tree_unflatten(treedef, leaves), header["step"], header["config"]


class _Spec(NamedTuple):
    """What must agree between a saved leaf and the target's leaf."""

    dtype: str  # a NumPy dtype name, or e.g. "key<fry>" for typed PRNG keys
    shape: tuple

    def __str__(self):
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def _is_key(leaf) -> bool:
    return isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _spec(leaf, path: str) -> _Spec:
    if _is_key(leaf):
        return _Spec(str(leaf.dtype), tuple(leaf.shape))
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic)):
        return _Spec(np.dtype(leaf.dtype).name, tuple(leaf.shape))
    if isinstance(leaf, _PYTHON_SCALARS):
        return _Spec(np.asarray(leaf).dtype.name, ())
    raise TypeError(
        f"state leaf {path} is a {type(leaf).__name__}; checkpoints hold arrays and Python numbers "
        f"(keep other values in config, or out of the pytree)."
    )


def _encode(state, step: int, config) -> bytes:
    if not isinstance(config, dict):
        raise TypeError(f"config must be a JSON-serialisable dict, got a {type(config).__name__}.")
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    specs, arrays = [], {}
    for i, (p, leaf) in enumerate(leaves):
        path = jax.tree_util.keystr(p)
        spec = _spec(leaf, path)
        record = {"path": path, "dtype": spec.dtype, "shape": list(spec.shape)}
        if _is_key(leaf):
            record["impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        specs.append(record)
        arrays[str(i)] = np.asarray(leaf)
    try:
        text = json.dumps({"format": "jaxrnn-checkpoint", "step": step, "config": config, "leaves": specs})
    except (TypeError, ValueError) as error:
        raise TypeError(f"config must be a JSON-serialisable dict: {error}.") from error
    header = text.encode("utf-8")
    payload = serialization.msgpack_serialize(arrays, in_place=True)
    body = MAGIC + _SIZES.pack(FORMAT_VERSION, len(header), len(payload)) + header + payload
    return body + hashlib.sha256(body).digest()


def _read(path: pathlib.Path) -> tuple:
    """Read and verify a checkpoint file: ``(header dict, payload bytes)``."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise CheckpointError(
                f"{path}: truncated: {len(data)} bytes, shorter than the {_FIXED_BYTES}-byte preamble."
            )
        raise CheckpointError(f"{path}: not a jaxrnn checkpoint: it starts with {data[:16]!r}, not {MAGIC!r}.")
    if len(data) < _FIXED_BYTES:
        raise CheckpointError(f"{path}: truncated: {len(data)} bytes, shorter than the {_FIXED_BYTES}-byte preamble.")
    version, header_bytes, payload_bytes = _SIZES.unpack_from(data, len(MAGIC))
    size = _FIXED_BYTES + header_bytes + payload_bytes + _DIGEST_BYTES
    if len(data) < size:
        raise CheckpointError(f"{path}: truncated: {len(data)} bytes, but its preamble records {size}.")
    if len(data) > size:
        raise CheckpointError(f"{path}: corrupted: {len(data)} bytes, but its preamble records {size}.")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    actual = hashlib.sha256(body).digest()
    if actual != digest:
        raise CheckpointError(
            f"{path}: checksum mismatch: the file records SHA-256 {digest.hex()[:16]}..., its contents "
            f"hash to {actual.hex()[:16]}...; the file is corrupted."
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version}; this jaxrnn reads version {FORMAT_VERSION}.")
    header = json.loads(body[_FIXED_BYTES : _FIXED_BYTES + header_bytes].decode("utf-8"))
    return header, body[_FIXED_BYTES + header_bytes :]


def _check_matches(path, saved: list, wanted: list) -> None:
    for (saved_path, saved_spec), (want_path, want_spec) in zip(saved, wanted):
        if saved_path != want_path:
            raise CheckpointError(
                f"{path}: structure does not match the target: the checkpoint has leaf {saved_path} "
                f"where the target has {want_path}."
            )
        if saved_spec != want_spec:
            raise CheckpointError(
                f"{path}: does not match the target at leaf {saved_path}: the checkpoint has {saved_spec}, "
                f"the target {want_spec}."
            )
    if len(saved) != len(wanted):
        extra, where = (saved, "checkpoint") if len(saved) > len(wanted) else (wanted, "target")
        raise CheckpointError(
            f"{path}: structure does not match the target: the checkpoint has {len(saved)} leaves, the "
            f"target {len(wanted)}; the first leaf only in the {where} is {extra[min(len(saved), len(wanted))][0]}."
        )


def _restore_leaf(array: np.ndarray, impl: str | None, target):
    if isinstance(target, _PYTHON_SCALARS):
        return type(target)(array.item())
    if isinstance(target, np.generic):
        return np.array(array)[()]
    if isinstance(target, np.ndarray):
        return np.array(array)
    value = jnp.asarray(array)
    if impl is not None:
        value = jax.random.wrap_key_data(value, impl=impl)
    sharding = getattr(target, "sharding", None)
    return value if sharding is None else jax.device_put(value, sharding)


def _checkpoints(directory: pathlib.Path) -> list:
    """``(step, path)`` of the files named like checkpoints, by increasing step."""
    found = []
    for path in directory.iterdir():
        match = _NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    # The temporary name starts with "." so it never looks like a checkpoint.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(directory: pathlib.Path, *, keep: int, written: pathlib.Path) -> None:
    ours = [path for _, path in _checkpoints(directory) if path != written and _starts_with_magic(path)]
    for path in ours[: max(len(ours) - (keep - 1), 0)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _starts_with_magic(path: pathlib.Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(MAGIC)) == MAGIC
