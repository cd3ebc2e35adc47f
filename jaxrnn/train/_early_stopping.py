"""Early stopping on a validation metric, as a NamedTuple state and a pure update."""

from __future__ import annotations

import math
from typing import NamedTuple

from jaxrnn._core.checks import check_positive_int

MODES = ("min", "max")


class EarlyStopping(NamedTuple):
    """Early-stopping state: start from ``EarlyStopping()``."""

    best: float | None = None  # the best value so far; None before the first finite one
    best_step: int = -1  # the step at which ``best`` was seen
    bad_evals: int = 0  # evaluations since the last improvement


def early_stopping_update(
    es: EarlyStopping, value: float, step: int, *, patience: int, mode: str = "min"
) -> tuple[EarlyStopping, bool]:
    """Record one evaluation; stop after ``patience`` evaluations without improvement.

    A value improves if it is strictly below (``mode="min"``) or above (``"max"``)
    the best so far; the first finite value always does; NaN never does.

    Args:
      es: the state, ``EarlyStopping()`` at first.
      value: the evaluated metric (a Python or 0-d array number).
      step: the training step of this evaluation (kept as ``best_step``).
      patience: how many evaluations in a row may fail to improve.
      mode: ``"min"`` for losses, ``"max"`` for accuracies.

    Returns:
      ``(es, stop)``: the new state and whether to stop now.

    Raises:
      ValueError: ``patience`` is not a positive int or ``mode`` is unknown.

    Example:
      >>> from jaxrnn import train
      >>> es = train.EarlyStopping()
      >>> for step, loss in enumerate([3.0, 2.0, 2.5, 2.1, 2.2]):
      ...     es, stop = train.early_stopping_update(es, loss, step, patience=2)
      ...     if stop:
      ...         break
      >>> step, es.best, es.best_step
      (3, 2.0, 1)
    """
    patience = check_positive_int(patience, "patience")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    value = float(value)
    if math.isfinite(value) and (es.best is None or (value < es.best if mode == "min" else value > es.best)):
        es = EarlyStopping(best=value, best_step=int(step), bad_evals=0)
    else:
        es = es._replace(bad_evals=es.bad_evals + 1)
    return es, es.bad_evals >= patience
