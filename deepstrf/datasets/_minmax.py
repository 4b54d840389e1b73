"""Min-max scaling as recorded, undoable dataset operations (deepSTRF's Wingert 2026 scaling).

deepSTRF 0.1.0 scales Wingert 2026's stimuli per band and its responses per
neuron to ``[0, 1]`` over all loaded stimuli. Here both are affine maps
applied to the loaded dataset (never inside the build, so the cache holds the
unscaled values), recorded in ``provenance['operations']`` and stored in the
same records as :meth:`~deepstrf.datasets.neural_dataset.NeuralDataset.standardize_stims`
and :meth:`~deepstrf.datasets.neural_dataset.NeuralDataset.normalize_responses`
(``x' = (x - offset) / scale``), so :meth:`destandardize_stims` and
:meth:`denormalize_responses` undo them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepstrf._validation import check_positive

if TYPE_CHECKING:
    from deepstrf.datasets.neural_dataset import NeuralDataset

__all__ = ["minmax_responses", "minmax_stims"]


def minmax_stims(ds: NeuralDataset, eps: float = 1e-12) -> dict[str, Any]:
    """Scale every band of the ``(1, F, T)`` stims to ``[0, 1]`` over all stimuli.

    The record (``ds.stim_normalization``) holds ``mean`` = each band's
    minimum and ``std`` = its range (floored at ``eps``), with
    ``method='minmax'``, so ``destandardize_stims`` restores the values.
    """
    eps = check_positive("eps", eps)
    if ds.stim_normalization is not None:
        ds.destandardize_stims()
    if not ds.stims or ds.stims[0].dim() < 3:
        raise ValueError("minmax_stims needs (1, F, T) spectrograms; these stims have shape "
                         f"{tuple(ds.stims[0].shape) if ds.stims else ()}.")
    lo = torch.stack([x.amin(dim=-1, keepdim=True) for x in ds.stims]).amin(dim=0)
    hi = torch.stack([x.amax(dim=-1, keepdim=True) for x in ds.stims]).amax(dim=0)
    span = (hi - lo).clamp(min=eps)
    ds.stims = [(x - lo) / span for x in ds.stims]
    ds.stim_normalization = {"method": "minmax", "mean": lo, "std": span, "min": lo, "max": hi,
                             "per_band": True, "stim_indices": None, "eps": eps}
    ds._record("minmax_stims", per_band=True, eps=eps)
    return ds.stim_normalization


def minmax_responses(ds: NeuralDataset, eps: float = 1e-12) -> dict[str, Any]:
    """Scale each neuron's responses to ``[0, 1]`` over all its valid values (NaN kept).

    The record (``ds.response_normalization``) has ``offset`` = the
    neuron's minimum and ``scale`` = its range (floored at ``eps``), with
    ``method='minmax'``, so ``denormalize_responses`` restores the counts.
    """
    from deepstrf.datasets._preprocess import _apply_affine

    eps = check_positive("eps", eps)
    if ds.response_normalization is not None:
        ds.denormalize_responses()
    N = ds.N_neurons
    lo, hi = np.full(N, np.inf), np.full(N, -np.inf)
    for _, rn, x, nan_free in ds.response_store.iter_row_chunks():
        low = x.min(axis=1) if nan_free else np.where(np.isnan(x), np.inf, x).min(axis=1)
        high = x.max(axis=1) if nan_free else np.where(np.isnan(x), -np.inf, x).max(axis=1)
        np.minimum.at(lo, rn, low.astype(np.float64))
        np.maximum.at(hi, rn, high.astype(np.float64))
    has = np.isfinite(lo) & np.isfinite(hi)
    offset = torch.from_numpy(np.where(has, lo, 0.0))
    scale = torch.from_numpy(np.where(has, np.maximum(hi - lo, eps), 1.0))
    _apply_affine(ds, offset, scale, inverse=False)
    ds.response_normalization = {
        "method": "minmax", "scale": scale.to(torch.float32), "offset": offset.to(torch.float32),
        "stim_indices": None, "eps": eps,
        "neurons_without_statistics": np.flatnonzero(~has).tolist()}
    ds._record("minmax_responses", eps=eps)
    return ds.response_normalization
