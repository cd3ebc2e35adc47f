"""Users' CSV files: a numeric series, or labelled texts; every error names the file and the line."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import NamedTuple

import numpy as np

from jaxrnn.data._common import read_utf8


class LabelledText(NamedTuple):
    """Texts with one label each, as read by :func:`load_csv_labelled_text`."""

    texts: list  # [N] str
    labels: np.ndarray  # [N] int32: index into ``classes``
    classes: tuple  # the distinct labels, sorted


def _csv_rows(path):
    """``(name, [(line_number, fields), ...])`` of a CSV file, skipping blank lines."""
    name = os.fspath(path)
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), strict=True)
    rows = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, [f.strip() for f in fields]))
    except csv.Error as e:
        raise ValueError(f"{name}: line {reader.line_num}: malformed CSV ({e}); check the quotes") from None
    if not rows:
        raise ValueError(f"{name}: the file has no fields, only separators")
    return name, rows


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_csv_series(path, column=None) -> np.ndarray:
    """A numeric time series from a CSV file: one value per row, oldest first.

    The file has one column, or several and ``column`` picks one, by header name or
    by 0-based index. A first row whose chosen field is not a number is a header
    (required when ``column`` is a name). Blank lines are skipped.

    Args:
      path: the CSV file, UTF-8.
      column: a header name, a 0-based index, or ``None`` for a one-column file.

    Returns:
      ``[T]`` float32 values; pass them to :func:`windowed_splits`.

    Raises:
      ValueError: the message names the file and, where there is one, the line:
        missing, not UTF-8 or empty file; no such column; several columns and no
        ``column``; a row with another number of fields than the first; a value
        that is not a finite number; a header and no data.

    Example:
      >>> import pathlib, tempfile
      >>> from jaxrnn import data
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "flow.csv"
      >>> _ = path.write_text("day,flow\\n1,2.5\\n2,3.0\\n")
      >>> data.load_csv_series(path, column="flow").tolist()
      [2.5, 3.0]
    """
    name, rows = _csv_rows(path)
    first_line, first = rows[0]
    width = len(first)
    if column is None:
        if width != 1:
            raise ValueError(
                f"{name}: line {first_line}: {width} fields, expected 1; pass column= (a header "
                "name or a 0-based index) to pick one"
            )
        index = 0
    elif isinstance(column, str):
        if column not in first:
            raise ValueError(f"{name}: line {first_line}: no column named {column!r} in the header {first}")
        index = first.index(column)
    elif isinstance(column, (int, np.integer)) and not isinstance(column, bool) and 0 <= column < width:
        index = int(column)
    else:
        raise ValueError(
            f"{name}: line {first_line}: column must be a header name or an index in [0, {width}), got {column!r}"
        )
    has_header = isinstance(column, str) or _number(first[index]) is None
    values = []
    for line, fields in rows[1:] if has_header else rows:
        if len(fields) != width:
            raise ValueError(f"{name}: line {line}: {len(fields)} fields, expected {width} as on line {first_line}")
        value = _number(fields[index])
        if value is None:
            raise ValueError(f"{name}: line {line}: {fields[index]!r} is not a finite number")
        values.append(value)
    if not values:
        raise ValueError(f"{name}: line {first_line} is a header and no data rows follow it")
    return np.asarray(values, np.float32)


def load_csv_labelled_text(path) -> LabelledText:
    """Labelled texts from a CSV file of rows ``label,text``.

    An optional first row ``label,text`` is a header. Texts that contain commas must
    be quoted (``"a, b"``) as in any CSV file. Blank lines are skipped.

    Args:
      path: the CSV file, UTF-8.

    Returns:
      ``LabelledText(texts [N] str, labels [N] int32, classes)``; ``labels`` index
      into ``classes``, the distinct labels sorted.

    Raises:
      ValueError: the message names the file and, where there is one, the line:
        missing, not UTF-8 or empty file; a row without exactly 2 fields; an empty
        label or text; a header and no data.

    Example:
      >>> import pathlib, tempfile
      >>> from jaxrnn import data
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
      >>> _ = path.write_text('label,text\\npos,"good, really"\\nneg,dull\\n')
      >>> d = data.load_csv_labelled_text(path)
      >>> d.texts, d.labels.tolist(), d.classes
      (['good, really', 'dull'], [1, 0], ('neg', 'pos'))
    """
    name, rows = _csv_rows(path)
    if [f.lower() for f in rows[0][1]] == ["label", "text"]:
        header_line, rows = rows[0][0], rows[1:]
        if not rows:
            raise ValueError(f"{name}: line {header_line} is a header and no data rows follow it")
    pairs = []
    for line, fields in rows:
        if len(fields) != 2:
            raise ValueError(
                f"{name}: line {line}: {len(fields)} fields, expected 2 (label,text); quote a "
                'text that contains commas: label,"a, b"'
            )
        if not fields[0] or not fields[1]:
            raise ValueError(f"{name}: line {line}: empty {'label' if not fields[0] else 'text'}")
        pairs.append(fields)
    classes = tuple(sorted({label for label, _ in pairs}))
    ids = {c: i for i, c in enumerate(classes)}
    return LabelledText([text for _, text in pairs], np.asarray([ids[label] for label, _ in pairs], np.int32), classes)
