"""Tools for testing code that uses deepstrf, and for the library's own tests.

* synthetic ragged datasets of any size (:func:`make_ragged_dataset`);
* miniature raw trees in each public dataset's exact distributed format,
  filled from simulated neurons with known receptive fields;
* a local HTTP server that imitates the dataset hosts (plain files, CRCNS login).

Submodules load on first use; importing this package touches nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "make_ragged_dataset": "deepstrf.testing.synthetic",
    "LocalHTTPServer": "deepstrf.testing.http_server",
    "RecordedRequest": "deepstrf.testing.http_server",
    "LOGIN_PAGE": "deepstrf.testing.http_server",
    "write_mat": "deepstrf.testing.matfiles",
    "struct_array": "deepstrf.testing.matfiles",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepstrf.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
