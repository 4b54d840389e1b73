"""Recording tolerated data quirks: counted for the manifest and warned once each."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from deepstrf.errors import DataQuirkWarning

__all__ = ["count_quirks", "warn_quirk"]


def count_quirks(quirks: dict[str, int], found: Mapping[str, int]) -> None:
    """Add the counts of ``found`` (kind -> count) to ``quirks``."""
    for kind, n in found.items():
        quirks[kind] = quirks.get(kind, 0) + int(n)


def warn_quirk(quirks: dict[str, int], owner: str, kind: str, count: int, text: str) -> None:
    """Count ``count`` quirks of ``kind`` and warn ``"<owner>: <count> <text>."``."""
    quirks[kind] = quirks.get(kind, 0) + int(count)
    warnings.warn(f"{owner}: {count} {text}.", DataQuirkWarning, stacklevel=3)
