"""Whole-dataset preprocessing on the packed storage (streamed, one block chunk at a time).

The functions here back the ``NeuralDataset`` methods ``smooth_responses``,
``normalize_responses``, ``standardize_stims`` and their inverses. Each
streams the blocks in cache-sized chunks of rows (a loop over stimuli, never
over (stimulus, neuron) pairs), keeps NaN where it was, and writes a block in
place only when nothing else can see it (see
:meth:`~deepstrf.datasets._storage.ResponseStore.transform_rows_`); shared or
memory-mapped blocks get new tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepstrf._validation import check_choice, check_index, check_positive
from deepstrf.datasets._storage import _has_nan

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
    """Smooth every response with the unit-sum Hanning kernel; return the kernel.

    Streams the blocks in cache-sized chunks of rows (rows are independent),
    in place where nothing else sees a block, through one
    :class:`~deepstrf.preprocessing.spikes.RowSmoother`: the arithmetic of
    :func:`~deepstrf.preprocessing.spikes.smooth_rows`, so the values are
    exactly those the dataset builders produce, written straight into the
    block with scratch memory reused from chunk to chunk.
    """
    from deepstrf.preprocessing.spikes import RowSmoother, hanning_kernel

    window_ms = check_positive("window_ms", window_ms)
    kernel = hanning_kernel(window_ms, ds.dt)
    if len(kernel) == 1 and float(kernel[0]) == 1.0:
        return kernel                       # the identity: nothing to rewrite
    smoother = RowSmoother(kernel)
    store = ds.response_store
    # a block already known NaN-free skips the check; the others are checked
    # chunk by chunk in cache (asking the block would cost a pass over it)
    known = [b._nan_free is True for b in store._blocks]

    def smooth(s: int, rows: slice, src: np.ndarray, dst: np.ndarray) -> None:
        smoother(src, dst, nan_free=known[s])

    store.transform_rows_(smooth)
    return kernel


def _row_values(values: np.ndarray, rn: np.ndarray) -> np.ndarray:
    return values[rn][:, None]


def _affine_chunks(store: Any, offset: torch.Tensor, scale: torch.Tensor, inverse: bool):
    """The chunk function of :func:`_apply_affine`, for :meth:`ResponseStore.transform_rows_`."""
    o32 = offset.to(torch.float32).numpy()
    c32 = scale.to(torch.float32).numpy()
    with_offset = bool(np.any(o32 != 0))
    row_neurons: dict[int, np.ndarray] = {}

    def apply(s: int, rows: slice, src: np.ndarray, dst: np.ndarray) -> None:
        rn = row_neurons.get(s)
        if rn is None:
            row_neurons.clear()
            b = store._blocks[s]
            rn = row_neurons[s] = np.repeat(b.neurons, b.reps)
        rn = rn[rows]
        # torch's elementwise kernels broadcast a per-row column faster than numpy's;
        # subtraction, multiplication and division are correctly rounded in every
        # code path, so the values do not depend on the thread count
        x, out = torch.from_numpy(src), torch.from_numpy(dst)
        c = torch.from_numpy(_row_values(c32, rn))
        if inverse:
            torch.mul(x, c, out=out)
            if with_offset:
                out.add_(torch.from_numpy(_row_values(o32, rn)))
        elif with_offset:
            torch.sub(x, torch.from_numpy(_row_values(o32, rn)), out=out)
            out.div_(c)
        else:
            torch.div(x, c, out=out)

    return apply


def _apply_affine(ds: NeuralDataset, offset: torch.Tensor, scale: torch.Tensor,
                  inverse: bool) -> None:
    """``(x - offset) / scale`` per neuron (``x * scale + offset`` if ``inverse``), float32.

    One streaming pass, in place where nothing else sees a block; the same
    two float32 operations as before, so the values do not change. A zero
    offset (``'max'``) skips its operation: ``x - 0`` is ``x``, so only the
    division (or the multiplication) is paid.
    """
    store = ds.response_store
    store.transform_rows_(_affine_chunks(store, offset, scale, inverse))


class _Scratch:
    """Reusable scratch arrays, one per ``(name, dtype)``, regrown only when too small."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, Any], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        size = 1
        for n in shape:
            size *= int(n)
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.size < size:
            buf = self._buffers[(name, dtype)] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


#: Rows per chunk of the statistics pass: 256 KiB of float32 (and its 512 KiB float64
#: copy) stay in a core's L2 cache, so only the first read of each value goes to memory.
_STATS_CHUNK_BYTES = 1 << 18


def _neuron_moments(ds: NeuralDataset, stims: Sequence[int], with_var: bool
                    ) -> tuple[np.ndarray, ...]:
    """Per-neuron ``(count, mean, m2, peak)`` of the valid values over ``stims``, float64.

    One streaming read of the blocks in L2-sized chunks of rows, keeping only
    per-row and ``(N,)`` sums (memory does not grow with the data). With
    ``with_var`` it takes the number of valid values, their sum and sum of
    squares (``peak`` is then 0: the z-score does not use it); without it,
    the count and the largest magnitude only.

    Each chunk is copied once into a float64 scratch array that stays in
    cache, and both sums are taken there: float32 values and their squares
    are exact in float64, so the sums are float64 sums of exact terms and
    ``m2 = sum(x^2) - sum(x)^2 / n`` is accurate to about
    ``1e-16 * (1 + mean^2 / var)`` relative, far below the float32 rounding of
    the stored scale for any signal whose mean is under ``10^4`` standard
    deviations. All sums are numpy's (pairwise along a row, then rows in
    order), in an order fixed by the data, so the result does not depend on
    the thread count.
    """
    store = ds.response_store
    moments = _Moments(ds.N_neurons, with_var)
    for s in stims:
        b = store._blocks[s]
        if b.numel == 0:
            continue
        data = b.data.detach().numpy()
        n_rows, T = data.shape
        nan_free = b.nan_free
        rows_of_block = moments.block_arrays(n_rows)
        step = max(1, _STATS_CHUNK_BYTES // (4 * T))
        for a in range(0, n_rows, step):
            moments.chunk(data[a:a + step], nan_free, rows_of_block, slice(a, min(a + step, n_rows)))
        del data
        moments.add_block(np.repeat(b.neurons, b.reps), rows_of_block)
    return moments.result()


class _Moments:
    """Running per-neuron sums of :func:`_neuron_moments`, fed a chunk of rows at a time.

    :meth:`chunk` writes each row's count, sum (or peak) and sum of squares
    into the block's per-row arrays; :meth:`add_block` adds them to the
    neurons' sums, one block after another. Row values do not depend on how
    a block is cut into chunks (each is a numpy reduction along its row),
    so any pass over the rows that feeds every block in stimulus order gives
    the same sums.
    """

    def __init__(self, n_neurons: int, with_var: bool) -> None:
        self.N, self.with_var = n_neurons, with_var
        self.count, self.sums = np.zeros(n_neurons), np.zeros(n_neurons)
        self.squares, self.peak = np.zeros(n_neurons), np.zeros(n_neurons)
        self.scratch = _Scratch()

    def block_arrays(self, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return (np.empty(n_rows), np.empty(n_rows),
                np.empty(n_rows) if self.with_var else None)

    def chunk(self, x: np.ndarray, nan_free: bool, out: tuple, rows: slice) -> None:
        c, r1, r2 = out
        if nan_free:
            c[rows] = float(x.shape[1])
        else:
            valid = ~np.isnan(x)
            c[rows] = valid.sum(axis=1)
            x = np.where(valid, x, np.float32(0))
        if self.with_var:
            y = self.scratch.get("f64", x.shape, np.float64)
            y[...] = x
            np.add.reduce(y, axis=1, out=r1[rows])
            np.einsum("ij,ij->i", y, y, out=r2[rows])
        else:
            m = self.scratch.get("abs", x.shape, np.float32)
            np.abs(x, out=m)
            r1[rows] = m.max(axis=1)

    def add_block(self, rn: np.ndarray, out: tuple) -> None:
        c, r1, r2 = out
        self.count += np.bincount(rn, weights=c, minlength=self.N)
        if self.with_var:
            self.sums += np.bincount(rn, weights=r1, minlength=self.N)
            self.squares += np.bincount(rn, weights=r2, minlength=self.N)
        else:
            np.maximum.at(self.peak, rn, r1)

    def result(self) -> tuple[np.ndarray, ...]:
        N, count, sums = self.N, self.count, self.sums
        mean = np.divide(sums, count, out=np.zeros(N), where=count > 0)
        m2 = np.maximum(self.squares - mean * sums, 0.0) if self.with_var else np.zeros(N)
        return count, mean, m2, self.peak


def _undo_and_measure(ds: NeuralDataset, stims: Sequence[int], with_var: bool
                      ) -> tuple[np.ndarray, ...]:
    """:func:`denormalize_responses` then :func:`_neuron_moments`, in one pass.

    Each chunk is denormalised and its statistics are taken while it is
    still in cache: the values written and the sums returned are exactly
    those of the two steps one after the other (the same operations on the
    same values, the blocks fed in the same order), one read of the data
    fewer.
    """
    record = ds.response_normalization
    store = ds.response_store
    undo = _affine_chunks(store, record["offset"].to(torch.float64),
                          record["scale"].to(torch.float64), inverse=True)
    moments = _Moments(ds.N_neurons, with_var)
    wanted = set(stims)
    arrays: dict[int, tuple] = {}

    def apply(s: int, rows: slice, src: np.ndarray, dst: np.ndarray) -> None:
        undo(s, rows, src, dst)
        if s in wanted:
            if rows.start == 0:
                arrays[s] = moments.block_arrays(store._blocks[s].shape[0])
            # the flag the rewrite gives the block: a NaN-aware chunk of NaN-free
            # rows gives the same row values, so per-chunk flags change nothing
            moments.chunk(dst, not _has_nan(dst), arrays[s], rows)

    store.transform_rows_(apply, chunk_bytes=_STATS_CHUNK_BYTES)
    for s in sorted(arrays):
        b = store._blocks[s]
        moments.add_block(np.repeat(b.neurons, b.reps), arrays.pop(s))
    ds.response_normalization = None
    return moments.result()


def normalize_responses(ds: NeuralDataset, method: str, stim_indices: Sequence[int] | None,
                        eps: float) -> dict[str, Any]:
    """Per-neuron normalisation with statistics from ``stim_indices`` (see the method).

    Two streaming passes over the data, the fewest the arithmetic allows: one
    read for the statistics (:func:`_neuron_moments`) and one rewrite; when
    a previous normalisation is undone first, the undoing pass takes the
    statistics too (:func:`_undo_and_measure`). The
    statistics are taken from the float32 values with float64 sums, so they
    lose nothing to the float32 result.
    """
    check_choice("method", method, ("max", "zscore"))
    eps = check_positive("eps", eps)
    stims = _stim_list(ds, stim_indices, "normalize_responses")
    N = ds.N_neurons
    if ds.response_normalization is not None:  # undo it and measure, in one pass
        count_np, mean_np, m2_np, peak_np = _undo_and_measure(ds, stims, method == "zscore")
    else:
        count_np, mean_np, m2_np, peak_np = _neuron_moments(ds, stims, method == "zscore")
    count = torch.from_numpy(count_np)
    has = count > 0
    offset = torch.zeros(N, dtype=torch.float64)
    scale = torch.ones(N, dtype=torch.float64)
    if method == "max":
        peak = torch.from_numpy(peak_np)
        scale[has] = peak[has].clamp(min=eps)
    else:
        mean, squares = torch.from_numpy(mean_np), torch.from_numpy(m2_np)
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
    # the modality says which axis holds the bands (spectrogram: F, movie: channels)
    band_axis = ds._stim_band_axis(first) if per_band else None
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
