"""Datasets: the ``NeuralDataset`` base classes and one subclass per public dataset.

Exports load on first use, so worker processes that import a submodule (a raw
reader, say) do not pay for importing torch.
"""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

_LAZY = {"NeuralDataset": "deepstrf.datasets.neural_dataset"}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
