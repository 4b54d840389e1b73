"""deepstrf: public datasets of sensory neural responses behind one PyTorch API.

Heavy subpackages load on first use, so ``import deepstrf`` stays cheap and
touches no file or network.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "NeuralDataset": "deepstrf.datasets.neural_dataset",
    "neural_collate": "deepstrf.utils.data",
    "concat_neural_datasets": "deepstrf.utils.data",
    "list_datasets": "deepstrf.datasets.registry",
    "get_dataset": "deepstrf.datasets.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepstrf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
