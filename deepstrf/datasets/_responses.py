"""Response sources: how one (stimulus, neuron) pair's repeats reach the response grid.

A dataset's parse hook describes each recorded pair by one of three sources;
the build renders all of them, in the worker task of their stimulus, into
float32 ``(R, T)`` rows on the same grid and packs them in one
:class:`~deepstrf.datasets._storage.ResponseStore`:

=====================  ===============================================  ==================
source                 what it holds                                    rendering
=====================  ===============================================  ==================
:class:`SpikeTrains`   spike times, ms from the sound's onset           binned counts
:class:`BinnedRows`    ``(R, T_native)`` counts at a native bin width   block sums
:class:`ContinuousTrace` ``(R, n)`` signed samples at a sample rate     mean pool / resample
=====================  ===============================================  ==================

The grid: bin ``k`` covers ``[k*dt, (k+1)*dt)`` ms from the grid's start,
which is ``inset_ms`` before the sound's onset (the pre-stimulus silence of
:mod:`deepstrf.datasets.audio._stimuli`). Spike times are counted with the
package's one binning rule (:func:`~deepstrf.preprocessing.spikes.bin_flat_spike_times`,
spikes on an edge go to the bin starting there). Binned rows and traces
start at the grid's start. Missing samples (NaN) stay NaN: a block sum that
touches a NaN is NaN (the count is unknown), a pooled mean leaves NaN samples
out and is NaN only when its whole block is, and a bin past the end of a
trace or of the rows is NaN. Only counts (spike trains, binned rows) are
smoothed when smoothing is asked; continuous signals are left as recorded.

This module runs in worker processes and imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from deepstrf._validation import check_choice, check_positive

__all__ = ["BinnedRows", "ContinuousTrace", "ResponseBlock", "SpikeTrains", "render_responses",
           "response_bins"]

_WHOLE_TOL = 1e-6


class SpikeTrains(NamedTuple):
    """The trials of one (stimulus, neuron) pair: all spike times (ms from onset)
    one trial after the other, and the number of spikes of each trial.

    One pair of arrays instead of one array per trial: sending thousands of
    small arrays between processes cost more than the work they carried.
    """

    times: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_trials(cls, trials: Sequence[np.ndarray]) -> SpikeTrains:
        arrays = [np.asarray(t, dtype=np.float64).reshape(-1) for t in trials]
        return cls(np.concatenate(arrays) if arrays else np.zeros(0, np.float64),
                   np.array([a.size for a in arrays], dtype=np.intp))

    @property
    def n_trials(self) -> int:
        return len(self.lengths)

    def merged(self, other: SpikeTrains) -> SpikeTrains:
        """These trials followed by ``other``'s (a stimulus presented twice)."""
        return SpikeTrains(np.concatenate([self.times, other.times]),
                           np.concatenate([self.lengths, other.lengths]))


def _factor(native_ms: float, dt_ms: float, what: str) -> int:
    ratio = dt_ms / native_ms
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > _WHOLE_TOL:
        raise ValueError(f"dt_ms={dt_ms:g} is not a whole multiple of the {native_ms:g} ms bin of "
                         f"{what}; choose dt_ms among {native_ms:g}, {2 * native_ms:g}, "
                         f"{3 * native_ms:g}, ...")
    return int(factor)


@dataclass(frozen=True, slots=True)  # no __dict__: NAT4 makes ~500 000 of them
class BinnedRows:
    """Pre-binned repeats ``(R, T_native)`` at ``bin_ms`` (e.g. a NEMS raster), from the grid start.

    Rendered by summing blocks of ``dt_ms / bin_ms`` bins (which must be a
    whole number); a block holding a NaN is NaN.

    Float rows are held as given, without a copy (a float32 view into a
    recording's raster stays a view: a NAT4 population raster is held once,
    not again in float64); integer or boolean rows become float32, exact for
    counts below 2**24. The rendered rows are float32; block sums of more
    than one bin are accumulated in float64 per pair, so summing scaled
    (non-integer) rates loses no more than the final rounding to float32.
    """

    rows: np.ndarray
    bin_ms: float

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows)
        if not np.issubdtype(rows.dtype, np.floating):
            if not (np.issubdtype(rows.dtype, np.integer) or rows.dtype == np.bool_):
                raise ValueError(f"BinnedRows.rows must hold numbers (counts or rates); got "
                                 f"dtype {rows.dtype}.")
            rows = rows.astype(np.float32)
        if rows.ndim != 2:
            raise ValueError(f"BinnedRows.rows must be 2-D (repeats, bins); got shape "
                             f"{rows.shape}.")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "bin_ms", check_positive("bin_ms", self.bin_ms))

    @property
    def n_trials(self) -> int:
        return int(self.rows.shape[0])

    def natural_bins(self, dt_ms: float) -> int:
        return self.rows.shape[1] // _factor(self.bin_ms, dt_ms, "these binned rows")

    def render(self, dt_ms: float, n_bins: int) -> np.ndarray:
        """float32 ``(R, n_bins)``; the rows themselves (no copy) when they already are that."""
        k = _factor(self.bin_ms, dt_ms, "these binned rows")
        have = self.rows.shape[1] // k
        if k == 1 and have == n_bins and self.rows.dtype == np.float32 and \
                self.rows.flags.c_contiguous:
            return self.rows
        out = np.full((self.n_trials, n_bins), np.nan, dtype=np.float32)
        m = min(have, n_bins)
        if m and k == 1:
            out[:, :m] = self.rows[:, :m]
        elif m:
            blocks = self.rows[:, :m * k].reshape(self.n_trials, m, k)
            out[:, :m] = blocks.sum(axis=2, dtype=np.float64)
        return out


@dataclass(frozen=True)
class ContinuousTrace:
    """A signed continuous signal ``(R, n_samples)`` at ``sample_rate`` Hz (Vm, EEG, LFP).

    ``start_sample`` is the index of the grid's start in the data (negative:
    the data start later; the bins before are NaN). ``method="pool"``
    averages whole blocks of ``sample_rate * dt_ms / 1000`` samples (NaN-aware,
    :func:`~deepstrf.preprocessing.continuous.pool_mean`; the rate must give a
    whole number); ``"resample"`` resamples (polyphase, scipy) to one sample
    per bin, bin ``k`` then being the signal at ``k * dt``, NaN where its
    nearest-sample cell holds a missing sample.
    """

    data: np.ndarray
    sample_rate: float
    start_sample: int = 0
    method: str = "pool"

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"ContinuousTrace.data must be a float (repeats, samples) array; "
                             f"got {data.dtype} of shape {data.shape}.")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "sample_rate", check_positive("sample_rate",
                                                               self.sample_rate))
        check_choice("method", self.method, ("pool", "resample"))

    @property
    def n_trials(self) -> int:
        return int(self.data.shape[0])

    def natural_bins(self, dt_ms: float) -> int:
        available = self.data.shape[1] - self.start_sample
        return max(0, math.floor(available / (self.sample_rate * dt_ms / 1000.0) + 1e-9))

    def render(self, dt_ms: float, n_bins: int) -> np.ndarray:
        from deepstrf.preprocessing.continuous import cut_padded, pool_factor, pool_mean

        if self.method == "pool":
            k = pool_factor(self.sample_rate, dt_ms)
            window = cut_padded(self.data.astype(np.float64), self.start_sample, n_bins * k)
            return pool_mean(window, k).astype(np.float32)
        return self._resampled(dt_ms, n_bins)

    def _resampled(self, dt_ms: float, n_bins: int) -> np.ndarray:
        from fractions import Fraction

        from scipy.signal import resample_poly

        from deepstrf.preprocessing.continuous import cut_padded

        target = 1000.0 / dt_ms
        ratio = Fraction(target / self.sample_rate).limit_denominator(1000)
        n_native = math.ceil(n_bins * self.sample_rate / target) + 1
        window = cut_padded(self.data.astype(np.float64), self.start_sample, n_native)
        missing = np.isnan(window)
        filled = np.where(missing, 0.0, window)
        out = resample_poly(filled, ratio.numerator, ratio.denominator, axis=1)
        if out.shape[1] < n_bins:
            out = np.concatenate([out, np.full((self.n_trials, n_bins - out.shape[1]), np.nan)],
                                 axis=1)
        out = out[:, :n_bins]
        # bin k stands for [k - 1/2, k + 1/2) dt: NaN if a missing sample falls there
        if missing.any():
            edges = (np.arange(n_bins + 1) - 0.5) * self.sample_rate / target
            lo = np.clip(np.ceil(edges[:-1]).astype(int), 0, n_native)
            hi = np.clip(np.ceil(edges[1:]).astype(int), 0, n_native)
            csum = np.concatenate([np.zeros((self.n_trials, 1)), np.cumsum(missing, axis=1)],
                                  axis=1)
            out[(csum[:, hi] - csum[:, lo]) > 0] = np.nan
        return out.astype(np.float32)


ResponseSource = SpikeTrains | BinnedRows | ContinuousTrace


@dataclass(frozen=True)
class ResponseBlock:
    """The responses of many neurons to one stimulus in one source (a population raster's slice).

    ``source`` holds the rows of every neuron in ``neurons`` (increasing
    indices), ``repeats[i]`` rows each, one neuron after the other. One
    object per stimulus instead of one per (stimulus, neuron) pair: a NAT4
    population raster has half a million pairs. A block of float32 rows at
    the response bin is rendered without a copy, so the built store shares
    its memory instead of holding a second one.
    """

    neurons: np.ndarray
    repeats: np.ndarray
    source: BinnedRows | ContinuousTrace

    def __post_init__(self) -> None:
        neurons = np.asarray(self.neurons, dtype=np.int64).reshape(-1)
        repeats = np.asarray(self.repeats, dtype=np.int64).reshape(-1)
        if not isinstance(self.source, (BinnedRows, ContinuousTrace)):
            raise TypeError(f"ResponseBlock.source must be BinnedRows or ContinuousTrace; got "
                            f"{type(self.source).__name__}.")
        if len(neurons) != len(repeats) or (repeats < 1).any() or \
                int(repeats.sum()) != self.source.n_trials:
            raise ValueError(f"ResponseBlock: {len(neurons)} neurons with repeats summing to "
                             f"{int(repeats.sum())} (each >= 1) must match the source's "
                             f"{self.source.n_trials} rows.")
        if len(neurons) and ((neurons < 0).any() or (np.diff(neurons) <= 0).any()):
            raise ValueError("ResponseBlock.neurons must be increasing indices >= 0.")
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "repeats", repeats)


def response_bins(sources: Sequence[Any], dt_ms: float, owner: str = "") -> int:
    """T from the response window: the bins every binned/continuous source covers."""
    lengths = [s.natural_bins(dt_ms) for s in sources if not isinstance(s, SpikeTrains)]
    if not lengths:
        raise ValueError(f"{owner}: the stimulus takes its length from its responses, but they "
                         "are spike trains, which have no length; give the stimulus n_bins.")
    return int(min(lengths))


def render_responses(sources: Sequence[Any], dt_ms: float, n_bins: int, *, onset_ms: float,
                     smooth_ms: float | None) -> np.ndarray:
    """The rows of every source, one after the other, float32 ``(sum R, n_bins)``.

    ``onset_ms`` is the time of the grid's start in the spike trains' frame
    (``-inset_ms``: the sound starts ``inset_ms`` after it).
    """
    from deepstrf.preprocessing.spikes import RowSmoother, bin_flat_spike_times, hanning_kernel

    blocks = []
    # smooth_rows' arithmetic, one smoother (and its scratch memory) for all the sources
    smoother = RowSmoother(hanning_kernel(smooth_ms, dt_ms)) if smooth_ms is not None else None
    for source in sources:
        if isinstance(source, SpikeTrains):
            rows = bin_flat_spike_times(source.times, source.lengths, dt_ms, n_bins,
                                        onset_ms=onset_ms)
        elif isinstance(source, (BinnedRows, ContinuousTrace)):
            rows = source.render(dt_ms, n_bins)
        else:
            raise TypeError(f"a response source must be SpikeTrains, BinnedRows or "
                            f"ContinuousTrace; got {type(source).__name__}.")
        if smoother is not None and len(rows) and not isinstance(source, ContinuousTrace):
            rows = smoother(np.asarray(rows, dtype=np.float32))
        blocks.append(rows)
    if not blocks:
        return np.zeros((0, n_bins), np.float32)
    if len(blocks) == 1:  # a whole-stimulus block: keep it, do not copy it
        return blocks[0].astype(np.float32, copy=False)
    return np.concatenate(blocks, axis=0).astype(np.float32, copy=False)
