"""Whole-dataset preprocessing on the packed storage (one pass per stimulus block).

The functions here back the ``NeuralDataset`` methods ``smooth_responses``,
``normalize_responses``, ``standardize_stims`` and their inverses. Each works
block by block (a loop over stimuli, never over (stimulus, neuron) pairs),
keeps NaN where it was (padding, missing values) and builds new tensors
rather than writing into the stored ones (which may be shared or
memory-mapped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepstrf._validation import check_choice, check_index, check_positive

if TYPE_CHECKING:
    from deepstrf.datasets.neural_dataset import NeuralDataset

__all__ = ["normalize_responses", "denormalize_responses", "smooth_responses",
           "standardize_stims", "destandardize_stims"]


def _stim_list(ds: NeuralDataset, stim_indices: Sequence[int] | None, what: str) -> list[int]:
    if stim_indices is None:
        return list(range(ds.get_S()))
    if isinstance(stim_indices, (str, bytes)):
        raise TypeError("stim_indices must be a sequence of ints or None; got a string.")
    out = [check_index("stim_indices entry", s, ds.get_S()) for s in stim_indices]
    if not out:
        raise ValueError(f"{what}: stim_indices is empty; give the stimuli to take the "
                         "statistics from (e.g. the training and validation stimuli), or None "
                         "for all of them.")
    return sorted(set(out))


def smooth_responses(ds: NeuralDataset, window_ms: float) -> np.ndarray:
    """Smooth every response with the unit-sum Hanning kernel; return the kernel."""
    from deepstrf.preprocessing.spikes import hanning_kernel, smooth_rows

    window_ms = check_positive("window_ms", window_ms)
    kernel = hanning_kernel(window_ms, ds.dt)
    ds.response_store.map_blocks_(lambda s, neurons, reps, rows: smooth_rows(rows, kernel))
    return kernel


def _row_neurons(store: Any, s: int) -> torch.Tensor:
    return torch.from_numpy(store.row_neurons(s))


def _apply_affine(ds: NeuralDataset, offset: torch.Tensor, scale: torch.Tensor,
                  inverse: bool) -> None:
    store = ds.response_store

    def apply(s: int, neurons: np.ndarray, reps: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
        idx = _row_neurons(store, s)
        o = offset[idx].unsqueeze(1).to(rows.dtype)
        c = scale[idx].unsqueeze(1).to(rows.dtype)
        return rows * c + o if inverse else (rows - o) / c

    store.map_blocks_(apply)


def normalize_responses(ds: NeuralDataset, method: str, stim_indices: Sequence[int] | None,
                        eps: float) -> dict[str, Any]:
    """Per-neuron normalisation with statistics from ``stim_indices`` (see the method)."""
    check_choice("method", method, ("max", "zscore"))
    eps = check_positive("eps", eps)
    stims = _stim_list(ds, stim_indices, "normalize_responses")
    if ds.response_normalization is not None:
        denormalize_responses(ds)
    store = ds.response_store
    N = ds.N_neurons
    count = torch.zeros(N, dtype=torch.float64)
    total = torch.zeros(N, dtype=torch.float64)
    peak = torch.zeros(N, dtype=torch.float64)
    for s in stims:
        _, _, rows = store.block(s)
        if rows.shape[0] == 0:
            continue
        idx = _row_neurons(store, s)
        x = rows.to(torch.float64)
        valid = ~torch.isnan(x)
        x0 = torch.where(valid, x, torch.zeros((), dtype=x.dtype))
        count.index_add_(0, idx, valid.sum(1).to(torch.float64))
        total.index_add_(0, idx, x0.sum(1))
        peak.scatter_reduce_(0, idx, x0.abs().amax(1), reduce="amax")
    has = count > 0
    offset = torch.zeros(N, dtype=torch.float64)
    scale = torch.ones(N, dtype=torch.float64)
    if method == "max":
        scale[has] = peak[has].clamp(min=eps)
    else:
        mean = torch.where(has, total / count.clamp(min=1), torch.zeros_like(total))
        squares = torch.zeros(N, dtype=torch.float64)
        for s in stims:  # second pass: sum of squared deviations, no cancellation
            _, _, rows = store.block(s)
            if rows.shape[0] == 0:
                continue
            idx = _row_neurons(store, s)
            dev = rows.to(torch.float64) - mean[idx].unsqueeze(1)
            dev = torch.where(torch.isnan(dev), torch.zeros((), dtype=dev.dtype), dev)
            squares.index_add_(0, idx, (dev * dev).sum(1))
        enough = count > 1
        offset[has] = mean[has]
        scale[enough] = (squares[enough] / (count[enough] - 1)).sqrt().clamp(min=eps)
    _apply_affine(ds, offset, scale, inverse=False)
    ds.response_normalization = {
        "method": method,
        "scale": scale.to(torch.float32),
        "offset": offset.to(torch.float32),
        "stim_indices": None if stim_indices is None else stims,
        "eps": eps,
        "neurons_without_statistics": torch.nonzero(~has).flatten().tolist(),
    }
    return ds.response_normalization


def denormalize_responses(ds: NeuralDataset) -> None:
    """Undo :func:`normalize_responses` (``x * scale + offset``, to float32 rounding)."""
    record = ds.response_normalization
    if record is None:
        raise RuntimeError(f"{type(ds).__name__}: the responses are not normalised; there is "
                           "nothing to undo.")
    _apply_affine(ds, record["offset"].to(torch.float64), record["scale"].to(torch.float64),
                  inverse=True)
    ds.response_normalization = None


def standardize_stims(ds: NeuralDataset, stim_indices: Sequence[int] | None, per_band: bool,
                      eps: float) -> dict[str, Any]:
    """``(x - mean) / std`` with statistics from ``stim_indices`` (see the method)."""
    if not isinstance(per_band, bool):
        raise TypeError(f"per_band must be True or False; got {per_band!r}.")
    eps = check_positive("eps", eps)
    stims = _stim_list(ds, stim_indices, "standardize_stims")
    if ds.stim_normalization is not None:
        destandardize_stims(ds)
    first = ds.stims[stims[0]]
    # (1, F, T) spectrograms have bands on axis -2; a (1, T) waveform has none
    band_axis = first.dim() - 2 if per_band and first.dim() >= 3 else None
    if per_band and band_axis is None:
        raise ValueError("per_band=True needs stims with a band axis (..., F, T); these stims "
                         f"have shape {tuple(first.shape)}. Use per_band=False for waveforms.")

    def reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
        return tuple(d for d in range(x.dim()) if d != band_axis)

    count, total = 0, None
    for s in stims:
        x = ds.stims[s].to(torch.float64)
        part = x.sum(dim=reduce_dims(x), keepdim=band_axis is not None)
        total = part if total is None else total + part
        count += x.numel() // (x.shape[band_axis] if band_axis is not None else 1)
    mean = total / count
    squares = None
    for s in stims:
        x = ds.stims[s].to(torch.float64)
        part = ((x - mean) ** 2).sum(dim=reduce_dims(x), keepdim=band_axis is not None)
        squares = part if squares is None else squares + part
    std = (squares / max(count - 1, 1)).sqrt().clamp(min=eps)
    mean32, std32 = mean.to(torch.float32), std.to(torch.float32)
    ds.stims = [(x - mean32) / std32 for x in ds.stims]
    ds.stim_normalization = {"mean": mean32, "std": std32, "per_band": per_band,
                             "stim_indices": None if stim_indices is None else stims, "eps": eps}
    return ds.stim_normalization


def destandardize_stims(ds: NeuralDataset) -> None:
    """Undo :func:`standardize_stims` (``x * std + mean``)."""
    record = ds.stim_normalization
    if record is None:
        raise RuntimeError(f"{type(ds).__name__}: the stimuli are not standardised; there is "
                           "nothing to undo.")
    ds.stims = [x * record["std"] + record["mean"] for x in ds.stims]
    ds.stim_normalization = None
