"""What the data modules share: seeds, split fractions, reading text files, the extra to install."""

from __future__ import annotations

import math
import os

import numpy as np

TASKS_EXTRA = "pip install 'jaxrnn[tasks]'"


def rng(seed) -> np.random.Generator:
    """A NumPy generator from an ``int`` seed or a JAX PRNG key (typed or raw ``uint32``)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or a JAX PRNG key, got {seed}")
        return np.random.default_rng(int(seed))
    import jax  # only for keys; the rest of the module is NumPy

    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        seed = jax.random.key_data(seed)
    words = np.asarray(seed)
    if words.dtype != np.uint32 or words.ndim != 1:
        raise ValueError(
            f"seed must be a non-negative int or a single JAX PRNG key, got {type(seed).__name__} "
            f"of dtype {words.dtype} and shape {words.shape}"
        )
    return np.random.default_rng([int(w) for w in words])


def check_split(split, parts: int) -> tuple:
    fractions = tuple(split) if isinstance(split, (tuple, list)) else ()
    if (
        len(fractions) != parts
        or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions)
        or not math.isclose(sum(fractions), 1.0)
    ):
        raise ValueError(f"split must be {parts} fractions in (0, 1) that sum to 1, got {split!r}")
    return fractions


def read_utf8(path) -> str:
    """A file's text; ValueError naming the file if it is missing, not UTF-8 or empty."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{name}: is a directory, expected a file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{name}: line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ValueError(f"{name}: the file is empty")
    return text
