"""Strict reader of the small metadata CSV tables datasets ship (cell lists, sites, birds).

A table is read whole (they are kilobytes): the header must hold the columns
the caller needs, every row must have as many fields as the header, and a
cell that must be a number is checked where it is used, with
:func:`parse_cell`. Every fault raises :class:`~deepstrf.errors.RawDataError`
naming the file and the line, so a damaged or truncated table (or an HTML page
saved in its place) never yields silently wrong metadata.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

from deepstrf.errors import RawDataError

__all__ = ["MISSING", "parse_age_days", "parse_cell", "read_csv_table"]

#: Cell texts read as a missing value by :func:`parse_cell`.
MISSING = ("", "N/A", "NA", "NaN", "nan", "unknown")


def read_csv_table(path: str | os.PathLike[str],
                   columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV file with a header, as ``(line number, {column: text})``.

    Parameters
    ----------
    path : str or path-like
        The file (UTF-8, an optional byte-order mark is skipped).
    columns : sequence of str
        Columns that must be in the header (others are kept too).

    Returns
    -------
    list of (int, dict)
        One entry per non-blank row, cells stripped of surrounding spaces.

    Raises
    ------
    RawDataError
        If the file is not UTF-8 text, a column is missing, or a row has a
        different number of fields than the header.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as err:
        raise RawDataError(f"{path}: not a UTF-8 CSV file ({err.reason} at byte {err.start}); "
                           "it may be corrupt.") from err
    except csv.Error as err:
        raise RawDataError(f"{path}: not a readable CSV file ({err}).") from err
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise RawDataError(f"{path}: expected a CSV header with the columns {list(columns)}; "
                           f"missing {missing} (first line: {header[:8]}).")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise RawDataError(f"{path}: line {line}: expected {len(header)} comma-separated "
                               f"fields ({', '.join(header)}); got {len(row)}: {row}.")
        out.append((line, {h: cell.strip() for h, cell in zip(header, row)}))
    return out


def parse_cell(path: str | os.PathLike[str], line: int, column: str, text: str,
               kind: type = float) -> int | float | None:
    """A cell as ``kind`` (``int`` or ``float``); a :data:`MISSING` text gives None.

    Raises
    ------
    RawDataError
        Naming the file, line and column, if the text is not such a number.
    """
    if text in MISSING:
        return None
    try:
        return kind(text)
    except ValueError:
        raise RawDataError(f"{path}: line {line}: column {column!r} must be "
                           f"{'an integer' if kind is int else 'a number'}; got {text!r}.") \
            from None


def parse_age_days(path: str | os.PathLike[str], line: int, column: str,
                   text: str) -> int | None:
    """An age written ``'1y234d'``, ``'1y'`` or ``'234d'`` (the Meliza lab's bird
    colony database), in days, a year counted 365 days; a :data:`MISSING` text gives None.

    Raises
    ------
    RawDataError
        Naming the file, line and column, for any other text.
    """
    if text in MISSING:
        return None
    age = re.fullmatch(r"(?:(\d+)y)?(?:(\d+)d)?", text)
    if not age:
        raise RawDataError(f"{path}: line {line}: column {column!r} must be an age like "
                           f"1y234d; got {text!r}.")
    return 365 * int(age[1] or 0) + int(age[2] or 0)
