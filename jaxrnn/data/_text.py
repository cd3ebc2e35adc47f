"""Text for a character language model: the corpus that ships, users' files, and the vocabulary."""

from __future__ import annotations

import importlib.resources
from typing import NamedTuple

import numpy as np

from jaxrnn.data._common import read_utf8


def load_text(path=None) -> str:
    """A text for a character language model: a UTF-8 file, or the corpus that ships.

    Without ``path``, the default corpus: about 150 KB of English prose, the
    docstrings of Python standard-library modules (PSF License; see the module
    docstring and ``jaxrnn/data/corpus/``).

    Args:
      path: a UTF-8 text file, or ``None`` for the default corpus.

    Returns:
      The text, a ``str``.

    Raises:
      ValueError: the file is missing, not UTF-8 or empty; the message names it.

    Example:
      >>> from jaxrnn import data
      >>> text = data.load_text()
      >>> 100_000 < len(text) < 200_000, text.splitlines()[0]
      (True, 'jaxrnn default character-language-model corpus')
    """
    if path is None:
        return (importlib.resources.files("jaxrnn.data") / "corpus" / "default.txt").read_text("utf-8")
    return read_utf8(path)


class CharVocab(NamedTuple):
    """The characters of a text, each with an id: its index in ``chars`` (sorted).

    Example:
      >>> from jaxrnn import data
      >>> vocab = data.CharVocab.from_text("hello world")
      >>> vocab.chars, vocab.size
      (' dehlorw', 8)
      >>> ids = vocab.encode("hold")
      >>> ids.tolist(), ids.dtype
      ([3, 5, 4, 1], dtype('int32'))
      >>> vocab.decode(ids)
      'hold'
    """

    chars: str  # the distinct characters, sorted

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The vocabulary of every character in ``text`` (ValueError if it is empty)."""
        if not isinstance(text, str) or not text:
            raise ValueError(
                f"text must be a non-empty str, got {type(text).__name__} of length "
                f"{len(text) if isinstance(text, str) else 'n/a'}"
            )
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        """Number of distinct characters, the size of a one-hot input or a softmax output."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as ``[len(text)]`` int32 ids; ValueError listing unknown characters."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            shown = ", ".join(repr(c) for c in unknown[:5]) + more
            raise ValueError(
                f"text has {len(unknown)} characters outside the vocabulary: {shown}; build the "
                "vocabulary with CharVocab.from_text on a text that contains them"
            )
        return np.fromiter((index[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        """The text of ``[N]`` integer ids; ValueError for ids outside ``[0, size)``."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-D integer array, got dtype {ids.dtype} and shape {ids.shape}")
        bad = ids[(ids < 0) | (ids >= self.size)]
        if bad.size:
            raise ValueError(f"ids must be in [0, {self.size}), got {bad[:5].tolist()}")
        return "".join(self.chars[i] for i in ids.tolist())
