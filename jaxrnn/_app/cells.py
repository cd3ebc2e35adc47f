"""The recurrent cells the commands accept, by the core's own names (``Cell.name``).

``jaxrnn train --cell``, the tasks' configs, ``jaxrnn compare --cells`` and
``jaxrnn bench --cells`` all read these names, so one cell kind has one name
everywhere: ``lstm``, ``gru``, ``elman_tanh``, ``elman_relu``, ``layer_norm_lstm``,
the diagonal-recurrent ``lstm_diagonal`` and ``gru_diagonal``, and the
linear-recurrence cells ``mingru``, ``minlstm``, ``lru`` (each with its factory's
defaults). The commands treat every cell alike: nothing in them reads
a cell's parameter or state fields, so a new cell needs only its line here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jaxrnn as jr

# name -> factory(hidden_size) -> Cell, whose Cell.name is that name.
CELLS: dict[str, Callable[[int], jr.Cell]] = {
    "lstm": jr.lstm,
    "gru": jr.gru,
    "elman_tanh": functools.partial(jr.elman, activation="tanh"),
    "elman_relu": functools.partial(jr.elman, activation="relu"),
    "layer_norm_lstm": jr.layer_norm_lstm,
    "lstm_diagonal": functools.partial(jr.lstm, recurrent="diagonal"),
    "gru_diagonal": functools.partial(jr.gru, recurrent="diagonal"),
    "mingru": jr.mingru,
    "minlstm": jr.minlstm,
    "lru": jr.lru,
}


def check_cell(name, option: str = "--cell") -> str:
    """``name`` if it is a cell of :data:`CELLS`, else a ValueError naming ``option`` and the choices."""
    if name not in CELLS:
        raise ValueError(f"{option} must be one of {', '.join(CELLS)}, got {name!r}")
    return name


def parse_cells(text: str, choices: Sequence[str] | None = None) -> list:
    """``"lstm,elman_tanh"`` -> ``["lstm", "elman_tanh"]``; a ValueError names an unknown or repeated cell.

    Example:
      >>> from jaxrnn._app.cells import parse_cells
      >>> parse_cells("lstm, elman_relu")
      ['lstm', 'elman_relu']
    """
    choices = list(CELLS) if choices is None else list(choices)
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError(f"expected a comma-separated list of cells ({', '.join(choices)}), got {text!r}")
    for i, item in enumerate(items):
        if item not in choices:
            raise ValueError(f"unknown cell {item!r} in {text!r}; choose from {', '.join(choices)}")
        if item in items[:i]:
            raise ValueError(f"cell {item!r} appears twice in {text!r}")
    return items


def stack(name: str, input_size: int, hidden_size: int, num_layers: int = 1) -> jr.StackedRNN:
    """``num_layers`` layers of the cell ``name`` with ``hidden_size`` units, as :func:`jaxrnn.LSTM` builds them.

    Raises:
      ValueError: an unknown ``name`` (naming ``--cell``).
    """
    make = CELLS[check_cell(name)]
    return jr.StackedRNN(cells=tuple(make(hidden_size) for _ in range(num_layers)), input_size=input_size)
