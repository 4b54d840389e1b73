"""NaN-aware metrics and losses for encoding models of neural responses.

Predictions are ``(B, N, 1, T)`` and responses ``(B, N, R, T)``, as
:func:`deepstrf.utils.data.neural_collate` makes them; NaN padding (or an
explicit boolean ``mask``) marks missing data. Metrics return one value per
neuron or a NaN-aware reduction (``'mean' | 'sum' | 'median' | 'none'``);
losses are differentiable and give padding zero gradient. See
``docs/metrics.md`` for the formulas and their sources.

Metrics: :func:`corrcoef`, :func:`fve`, :func:`normalized_corrcoef`,
:func:`coherence`, :func:`signal_power`, :func:`noise_power`, :func:`snr`,
and the per-stimulus :func:`compute_CCmax` and :func:`compute_TTRC`.
Losses: :func:`mse_loss`, :func:`poisson_loss`. Streaming per-neuron quality:
:class:`NeuronQualityAccumulator`.
"""

from __future__ import annotations

from deepstrf.metrics.losses import mse_loss, poisson_loss
from deepstrf.metrics.performance import (
    coherence,
    compute_CCmax,
    compute_TTRC,
    corrcoef,
    fve,
    noise_power,
    normalized_corrcoef,
    signal_power,
    snr,
)
from deepstrf.metrics.quality import NeuronQualityAccumulator

__all__ = [
    "corrcoef",
    "fve",
    "normalized_corrcoef",
    "coherence",
    "signal_power",
    "noise_power",
    "snr",
    "compute_CCmax",
    "compute_TTRC",
    "mse_loss",
    "poisson_loss",
    "NeuronQualityAccumulator",
]
