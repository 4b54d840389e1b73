"""Datasets: the ``NeuralDataset`` base classes and one subclass per public dataset.

Exports load on first use, so worker processes that import a submodule (a raw
reader, say) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"NeuralDataset": "deepstrf.datasets.neural_dataset"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepstrf.datasets' has no attribute {name!r}")
