"""Datasets whose stimuli are sounds (exports load on first use)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AudioNeuralDataset": "deepstrf.datasets.audio.audio_dataset",
    "CRCNSAA1Dataset": "deepstrf.datasets.audio.crcns_aa1",
    "CRCNSAA2Dataset": "deepstrf.datasets.audio.crcns_aa2",
    "CRCNSAA4Dataset": "deepstrf.datasets.audio.crcns_aa4",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepstrf.datasets.audio' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
