"""Datasets whose stimuli are sounds (exports load on first use)."""

from __future__ import annotations

from deepstrf._lazy import lazy_exports

_LAZY = {
    "AliceEEGDataset": "deepstrf.datasets.audio.alice_eeg",
    "AudioNeuralDataset": "deepstrf.datasets.audio.audio_dataset",
    "CRCNSAA1Dataset": "deepstrf.datasets.audio.crcns_aa1",
    "CRCNSAA2Dataset": "deepstrf.datasets.audio.crcns_aa2",
    "CRCNSAA4Dataset": "deepstrf.datasets.audio.crcns_aa4",
    "CRCNSAC1Dataset": "deepstrf.datasets.audio.crcns_ac1",
    "EspejoDataset": "deepstrf.datasets.audio.espejo",
    "Downer2025Dataset": "deepstrf.datasets.audio.downer2025",
    "Le2025Dataset": "deepstrf.datasets.audio.le_2025",
    "NAT4Dataset": "deepstrf.datasets.audio.nat4",
    "NS1Dataset": "deepstrf.datasets.audio.ns1",
    "Wingert2026Dataset": "deepstrf.datasets.audio.wingert2026",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
