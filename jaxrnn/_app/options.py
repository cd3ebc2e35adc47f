"""What the training commands share on the command line: config flags, argument types,
the usage error, and the extra they need installed.

``jaxrnn train``, ``sweep`` and ``compare`` set the same config keys from the same
flags (:data:`FLAGS`); a value that cannot start a run is a :class:`RunError`,
which the command prints as ``jaxrnn COMMAND: error: ...`` with exit status 2.
A flag left out leaves its key out of the config, so the task's default holds, or
for the keys of :data:`LIBRARY_DEFAULTS`, which no task sets, the library's.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrnn._core import newton, strategy
from jaxrnn._core.checks import check_positive_int
from jaxrnn.train import _parallel

# What users install for the commands' plots, progress bars and real data sets.
EXTRA = "pip install 'jaxrnn[tasks]'"
# What `jaxrnn train`, `sweep` and `compare` import: plots and progress bars.
COMMAND_MODULES = ("matplotlib", "tqdm")
# `jaxrnn train` with no options: the adding problem, a visible result in about a minute.
DEFAULT_TASK = "adding"

# The config keys that have flags, with their types; --batch-size sets "batch_size"; a bool
# key is a switch (--warm-start sets True).
FLAGS = {
    "cell": str,
    "hidden": int,
    "layers": int,
    "steps": int,
    "batch_size": int,
    "learning_rate": float,
    "length": int,
    "seed": int,
    "eval_every": int,
    "window": int,
    "delay": int,
    "num_symbols": int,
    "text": str,
    "data": str,
    "column": str,
    "solver": str,
    "newton_max_iters": int,
    "newton_tol": float,
    "warm_start": bool,
}
POSITIVE = (
    "hidden",
    "layers",
    "steps",
    "batch_size",
    "length",
    "eval_every",
    "window",
    "num_symbols",
    "newton_max_iters",
)
# What --solver takes: jr.rnn's solver names, the sequential and parallel scans then the Newton solvers.
NEWTON_SOLVERS = tuple(newton.NEWTON_NAMES)
SOLVERS = strategy.SOLVERS + NEWTON_SOLVERS
# The config keys no task sets, with the default that holds without them (a help's "default: ...").
LIBRARY_DEFAULTS = {
    "solver": "jr.rnn's: parallel for a cell with a linear recurrence, else sequential",
    "newton_max_iters": f"the solver's, {newton.DEER().max_iters}",
    "newton_tol": f"the solver's, {newton.default_tol(np.float32):g} for the tasks' float32",
    "warm_start": "off",
}


class RunError(ValueError):
    """A run cannot start: a bad option or config, or an output folder that holds another run."""


def option(key: str) -> str:
    """The flag of a config key: ``"batch_size"`` -> ``"--batch-size"``."""
    return "--" + key.replace("_", "-")


def missing(modules: Sequence[str] = COMMAND_MODULES) -> list:
    """The ``modules`` that cannot be imported, in order."""
    absent = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


def require(command: str, modules: Sequence[str] = COMMAND_MODULES) -> None:
    """Raise a :class:`RunError` naming the extra to install when one of ``modules`` is missing.

    The message reads e.g. ``jaxrnn train needs matplotlib and tqdm: pip install 'jaxrnn[tasks]'``.
    """
    absent = missing(modules)
    if absent:
        raise RunError(f"{command} needs {' and '.join(absent)}: {EXTRA}")


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse ``type``: its ValueError becomes argparse's usage error."""

    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return wrapped


def positive(value, key: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a :class:`RunError` naming the flag of ``key``."""
    try:
        return check_positive_int(value, option(key), minimum=minimum)
    except ValueError as error:
        raise RunError(str(error)) from None


def _flag_value(key: str, value):
    """Files as absolute paths (a resumed run compares its config), column indices as ints."""
    if key in ("text", "data"):
        return str(pathlib.Path(value).resolve())
    if key == "column" and value.isdigit():
        return int(value)
    return value


def flag_overrides(args: argparse.Namespace, *, skip: tuple = ()) -> dict:
    """The config values of the flags the user gave (not ``skip``), checked; RunError if one is bad."""
    overrides = {}
    for key in FLAGS:
        value = None if key in skip else getattr(args, key, None)
        if value is not None:
            if key in POSITIVE:
                positive(value, key)
            overrides[key] = _flag_value(key, value)
    return overrides


def add_flag_arguments(parser: argparse.ArgumentParser, helps: dict, *, skip: tuple = ()) -> None:
    """One option per config key of :data:`FLAGS` but ``skip``, None when not given (a switch: True when given).

    Its help is ``helps[key]`` and the default: the task's, or :data:`LIBRARY_DEFAULTS`.
    """
    for key, kind in FLAGS.items():
        if key not in skip:
            default = LIBRARY_DEFAULTS.get(key, "the task's")
            help = f"{helps[key]} (default: {default})"
            if kind is bool:
                parser.add_argument(option(key), action="store_true", default=None, help=help)
                continue
            parser.add_argument(
                option(key),
                type=kind,
                default=None,
                metavar="FILE" if key in ("text", "data") else None,
                help=help,
            )


def add_parallel_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--devices N|all`` (None when not given) to ``parser``; ``what`` ends its help."""
    parser.add_argument(
        "--devices",
        type=argument_type(_parallel.parse_devices),
        default=None,
        metavar="N|all",
        help=f"data parallel over N devices of each process, or all of them: {what}",
    )


def task_named(name: str | None, tasks: dict):
    """``tasks[name]`` (``name`` None: :data:`DEFAULT_TASK`), else a RunError listing the tasks."""
    name = DEFAULT_TASK if name is None else name
    if name not in tasks:
        raise RunError(f"unknown task {name!r}; choose one of {', '.join(tasks)}")
    return tasks[name]
