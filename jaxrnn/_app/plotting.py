"""The commands' figures: matplotlib's pyplot on the file-only Agg backend, and saving a figure.

matplotlib is imported on the first call, so importing the application needs none.
"""

from __future__ import annotations

import os


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (runs need no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir, name: str, **options) -> str:
    """Write ``fig`` to ``out_dir/name`` (the folder is created if missing) and close it; returns ``name``.

    ``options`` go to ``fig.savefig`` (default ``dpi=100``).
    """
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, name), **{"dpi": 100, **options})
    pyplot().close(fig)
    return name
