"""Datasets for the built-in training tasks, and loaders for users' own files.

Every function here is pure and returns NumPy arrays (``float32`` inputs and
``int32`` class ids, batch-major ``[B, T, F]``); the seeded ones give the same
arrays for the same seed, an ``int`` or a JAX PRNG key.

- :func:`adding`: the adding problem (two marked values among ``T``; the target is
  their sum). Predicting the mean scores :data:`ADDING_BASELINE_MSE`.
- :func:`copy_task`: the copy (memory) task with a delay; chance is
  ``log(num_symbols)`` nats per recalled symbol.
- :func:`sunspots` and :func:`windowed_splits`: one-step forecasting on windows of a
  series, split in time; :func:`persistence_rmse` is the baseline.
- :func:`digits`: scikit-learn's 8x8 digits read as sequences (rows or pixels).
- :func:`load_text` and :class:`CharVocab`: text for a character language model.
- :func:`load_csv_series` and :func:`load_csv_labelled_text`: users' CSV files.

The implementation lives in private modules: ``_synthetic`` (adding, copy), ``_series``
(windowed series, sunspots), ``_digits``, ``_text`` (the corpus and the vocabulary) and
``_csv`` (users' files).

The default text corpus (``jaxrnn/data/corpus/default.txt``, about 150 KB) is made of the
docstrings of thirty Python standard-library modules, dedented and otherwise
unchanged, with a header naming the source. No public-domain book ships with the
tools jaxrnn depends on and the package cannot download one; Python's docstrings are
English prose under the Python Software Foundation License Version 2, which allows
redistribution in any form provided the PSF's copyright notice and license are
retained: the header carries the notice and ``jaxrnn/data/corpus/LICENSE-PSF.txt`` is
Python's own LICENSE file.

``sunspots`` needs statsmodels and ``digits`` scikit-learn (``pip install
'jaxrnn[tasks]'``); both are imported only when called.
"""

from jaxrnn.data._csv import LabelledText as LabelledText
from jaxrnn.data._csv import load_csv_labelled_text as load_csv_labelled_text
from jaxrnn.data._csv import load_csv_series as load_csv_series
from jaxrnn.data._digits import Digits as Digits
from jaxrnn.data._digits import Labelled as Labelled
from jaxrnn.data._digits import digits as digits
from jaxrnn.data._series import Scaler as Scaler
from jaxrnn.data._series import SeriesData as SeriesData
from jaxrnn.data._series import SeriesSplit as SeriesSplit
from jaxrnn.data._series import persistence_rmse as persistence_rmse
from jaxrnn.data._series import sunspots as sunspots
from jaxrnn.data._series import windowed_splits as windowed_splits
from jaxrnn.data._synthetic import ADDING_BASELINE_MSE as ADDING_BASELINE_MSE
from jaxrnn.data._synthetic import AddingBatch as AddingBatch
from jaxrnn.data._synthetic import CopyBatch as CopyBatch
from jaxrnn.data._synthetic import adding as adding
from jaxrnn.data._synthetic import copy_task as copy_task
from jaxrnn.data._text import CharVocab as CharVocab
from jaxrnn.data._text import load_text as load_text

__all__ = [
    "ADDING_BASELINE_MSE",
    "AddingBatch",
    "CharVocab",
    "CopyBatch",
    "Digits",
    "Labelled",
    "LabelledText",
    "Scaler",
    "SeriesData",
    "SeriesSplit",
    "adding",
    "copy_task",
    "digits",
    "load_csv_labelled_text",
    "load_csv_series",
    "load_text",
    "persistence_rmse",
    "sunspots",
    "windowed_splits",
]
