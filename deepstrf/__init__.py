"""deepstrf: public datasets of sensory neural responses behind one PyTorch API.

Heavy subpackages load on first use, so ``import deepstrf`` stays cheap and
touches no file or network.
"""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

#: The package version.
__version__ = "0.1.0"

_LAZY = {
    "NeuralDataset": "deepstrf.datasets.neural_dataset",
    "neural_collate": "deepstrf.utils.data",
    "concat_neural_datasets": "deepstrf.utils.data",
    "list_datasets": "deepstrf.datasets.registry",
    "get_dataset": "deepstrf.datasets.registry",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
