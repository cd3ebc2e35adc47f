"""The commands' progress bars (tqdm on stderr), and log messages that keep clear of them.

tqdm is imported when a bar is made, so importing the application needs none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any


def shown(progress: bool | None) -> bool:
    """Whether to draw bars: as asked (True or False), or when stderr is a terminal (None)."""
    return sys.stderr.isatty() if progress is None else progress


def bar(iterable: Iterable | None = None, **options):
    """A tqdm bar on stderr that follows the terminal's width; ``options`` go to ``tqdm``."""
    from tqdm import tqdm

    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **options)


def nested(iterable: Iterable, outer, **options) -> Iterable:
    """``iterable`` under a second, transient bar below ``outer``; ``iterable`` itself when ``outer`` is None."""
    if outer is None:
        return iterable
    return bar(iterable, leave=False, position=1, **options)


def writer(log: Callable[[str], Any], outer, prefix: str = "") -> Callable[[str], None]:
    """``log`` with ``prefix`` before each message, clearing the bar ``outer`` (if any) around it."""

    def say(message: str) -> None:
        if outer is None:
            log(prefix + message)
        else:
            with outer.external_write_mode():
                log(prefix + message)

    return say
