"""Pure-numpy helpers for continuous, signed traces (EEG, membrane potential, LFP).

Spike trains are binned (:mod:`deepstrf.preprocessing.spikes`); continuous
signals are instead *cut* at stimulus onsets and brought to the response grid
by resampling or by average pooling. This module holds the grid arithmetic
shared by every continuous source, with no MNE or torch dependency:

=================================  =============================================
:func:`pool_mean`                  NaN-aware mean over non-overlapping blocks
:func:`pool_factor`                the whole number of samples per bin
:func:`time_to_sample`             seconds -> nearest sample (round half up)
:func:`cut_padded`                 a window of a trace, NaN outside the data
:func:`span_to_bins`               a time span -> the bins it touches
=================================  =============================================

Grid conventions
----------------
Two kinds of output grid exist, and they differ in what a sample stands for:

* ``cell="bin"`` (average pooling, like spike binning): output sample ``i``
  summarises the interval ``[origin + i*dt, origin + (i+1)*dt)``.
* ``cell="point"`` (resampling): output sample ``i`` is the band-limited
  signal *at* ``origin + i*dt``; it is taken to stand for the interval
  ``[origin + (i-1/2)*dt, origin + (i+1/2)*dt)`` (its nearest-sample cell).

A time span (a ``BAD_*`` annotation, the end of the recording) marks every
output sample whose interval overlaps it, so the masking is conservative: a
bin that is partly bad is bad. Times that land within 1e-6 of a sample
boundary are snapped to it, so float rounding in ``onset * rate`` never adds
or drops a sample.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from deepstrf._validation import check_choice, check_int, check_positive

__all__ = ["pool_mean", "pool_factor", "time_to_sample", "cut_padded", "span_to_bins"]

#: Relative tolerance (in samples) under which a time is taken to sit on a sample boundary.
SNAP_SAMPLES = 1e-6

PartialPolicy = Literal["mean", "drop", "nan"]
Cell = Literal["bin", "point"]


def _snap(x: float) -> float:
    nearest = round(x)
    return float(nearest) if abs(x - nearest) <= SNAP_SAMPLES else x


def time_to_sample(t_s: float, sfreq: float) -> int:
    """Nearest sample index of a time, rounding halves up (towards later samples).

    ``floor(t * sfreq + 1/2)``, with ``t * sfreq`` snapped to a whole number
    when it is within 1e-6 of one. Round-half-up (not numpy's half-to-even) so
    two onsets half a sample apart never round to the same sample.

    Parameters
    ----------
    t_s : float
        Time in seconds from the first sample of the trace (may be negative).
    sfreq : float
        Sample rate in Hz, > 0.

    Returns
    -------
    int

    Examples
    --------
    >>> time_to_sample(1.0, 500.0), time_to_sample(0.003, 500.0), time_to_sample(0.005, 100.0)
    (500, 2, 1)
    """
    sfreq = check_positive("sfreq", sfreq)
    if not math.isfinite(t_s):
        raise ValueError(f"t_s must be a finite time in seconds; got {t_s!r}.")
    return int(math.floor(_snap(float(t_s) * sfreq + 0.5)))


def pool_factor(sfreq: float, dt_ms: float) -> int:
    """Samples per output bin for average pooling: ``sfreq * dt_ms / 1000`` as a whole number.

    Parameters
    ----------
    sfreq : float
        Input sample rate in Hz.
    dt_ms : float
        Output bin width in ms.

    Returns
    -------
    int
        The factor, >= 1.

    Raises
    ------
    ValueError
        If ``sfreq * dt_ms / 1000`` is not a whole number >= 1 (within 1e-6):
        pooling cannot make that grid; resample instead.

    Examples
    --------
    >>> pool_factor(500.0, 10.0)
    5
    """
    sfreq = check_positive("sfreq", sfreq)
    dt_ms = check_positive("dt_ms", dt_ms)
    ratio = sfreq * dt_ms / 1000.0
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > SNAP_SAMPLES:
        raise ValueError(
            f"average pooling needs a whole number of input samples per bin; a {sfreq:g} Hz "
            f"trace has {ratio:g} samples per {dt_ms:g} ms bin. Choose dt_ms as a multiple of "
            f"{1000.0 / sfreq:g} ms, or resample instead of pooling.")
    return int(factor)


def pool_mean(data: np.ndarray, factor: int, *, partial: PartialPolicy = "mean") -> np.ndarray:
    """NaN-aware mean of non-overlapping blocks of ``factor`` samples along the last axis.

    Signed values are averaged as they are (no rectification). NaN samples
    are left out of their block's mean; a block with no finite sample is NaN
    (without a numpy warning). Sums run in float64 whatever the input type,
    so the result does not depend on how the input was chunked.

    Parameters
    ----------
    data : numpy.ndarray
        Real array ``(..., n_samples)``.
    factor : int
        Samples per block, >= 1.
    partial : {'mean', 'drop', 'nan'}, default 'mean'
        What to do with the last block when ``n_samples`` is not a multiple
        of ``factor``: ``'mean'`` averages the samples it has (as if the trace
        were padded with NaN), ``'drop'`` leaves it out, ``'nan'`` keeps it
        as NaN (a bin that is not fully recorded is missing).

    Returns
    -------
    numpy.ndarray
        ``(..., n_bins)`` with ``n_bins = ceil(n_samples / factor)``
        (``floor`` for ``'drop'``); float32 for float16 or float32 input,
        float64 otherwise.

    Examples
    --------
    >>> pool_mean(np.array([1.0, -3.0, np.nan, 4.0, 5.0]), 2)
    array([-1.,  4.,  5.])
    >>> pool_mean(np.array([1.0, -3.0, np.nan, 4.0, 5.0]), 2, partial="nan")
    array([-1.,  4., nan])
    """
    factor = check_int("factor", factor, minimum=1)
    check_choice("partial", partial, ("mean", "drop", "nan"))
    data = np.asarray(data)
    if data.ndim == 0:
        raise ValueError("data must have at least one axis (time last); got a scalar.")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise TypeError(f"data must be a real numeric array; got dtype {data.dtype}.")
    out_dtype = np.float32 if data.dtype in (np.float32, np.float16) else np.float64
    n = data.shape[-1]
    n_full, rest = divmod(n, factor)
    n_bins = n_full + (1 if rest and partial != "drop" else 0)
    out = np.empty(data.shape[:-1] + (n_bins,), dtype=np.float64)
    values = data.astype(np.float64, copy=False)
    if n_full:
        out[..., :n_full] = _block_mean(values[..., :n_full * factor].reshape(
            data.shape[:-1] + (n_full, factor)))
    if n_bins > n_full:
        if partial == "nan":
            out[..., n_full] = np.nan
        else:
            out[..., n_full] = _block_mean(values[..., n_full * factor:][..., None, :])[..., 0]
    return out.astype(out_dtype, copy=False)


def _block_mean(blocks: np.ndarray) -> np.ndarray:
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=-1)
    sums = np.where(finite, blocks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def cut_padded(data: np.ndarray, start: int, n_samples: int) -> np.ndarray:
    """Samples ``[start, start + n_samples)`` of a trace, NaN where they fall outside it.

    Parameters
    ----------
    data : numpy.ndarray
        Float array ``(..., n_total)``.
    start : int
        First sample (may be negative: the window starts before the data).
    n_samples : int
        Window length, >= 0.

    Returns
    -------
    numpy.ndarray
        A new array ``(..., n_samples)`` of the input's float type.

    Examples
    --------
    >>> cut_padded(np.arange(4.0), 2, 4)
    array([ 2.,  3., nan, nan])
    >>> cut_padded(np.arange(4.0), -1, 2)
    array([nan,  0.])
    """
    start = check_int("start", start)
    n_samples = check_int("n_samples", n_samples, minimum=0)
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"data must be a float array (NaN padding); got dtype {data.dtype}.")
    out = np.full(data.shape[:-1] + (n_samples,), np.nan, dtype=data.dtype)
    lo = max(start, 0)
    hi = min(start + n_samples, data.shape[-1])
    if hi > lo:
        out[..., lo - start:hi - start] = data[..., lo:hi]
    return out


def span_to_bins(onset_s: float, duration_s: float, *, origin_s: float, dt_s: float,
                 n_bins: int, cell: Cell) -> tuple[int, int]:
    """The output samples ``[i0, i1)`` whose intervals overlap a time span.

    See the module docstring for what interval a sample stands for
    (``cell``). A span of zero duration marks the one sample whose interval
    holds its onset. The result is clipped to ``[0, n_bins]`` (empty when the
    span misses the window).

    Parameters
    ----------
    onset_s, duration_s : float
        The span ``[onset_s, onset_s + duration_s)`` in seconds, on the same
        clock as ``origin_s``; ``duration_s`` may be ``inf`` (to the end).
    origin_s : float
        Time of output sample 0.
    dt_s : float
        Output sample period in seconds, > 0.
    n_bins : int
        Length of the output window.
    cell : {'bin', 'point'}
        ``'bin'`` for pooled grids, ``'point'`` for resampled ones.

    Returns
    -------
    tuple of int
        ``(i0, i1)`` with ``0 <= i0 <= i1 <= n_bins``.

    Examples
    --------
    A bad span from 0.25 s to 0.31 s on a 100 Hz grid starting at 0.2 s:

    >>> span_to_bins(0.25, 0.06, origin_s=0.2, dt_s=0.01, n_bins=20, cell="bin")
    (5, 11)
    >>> span_to_bins(0.25, 0.06, origin_s=0.2, dt_s=0.01, n_bins=20, cell="point")
    (5, 12)
    """
    check_choice("cell", cell, ("bin", "point"))
    dt_s = check_positive("dt_s", dt_s)
    n_bins = check_int("n_bins", n_bins, minimum=0)
    if not (math.isfinite(onset_s) and math.isfinite(origin_s)):
        raise ValueError(f"onset_s and origin_s must be finite; got {onset_s!r}, {origin_s!r}.")
    if math.isnan(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be >= 0; got {duration_s!r}.")
    shift = 0.5 if cell == "point" else 0.0
    a = _snap((onset_s - origin_s) / dt_s + shift)
    i0 = math.floor(a)
    if duration_s == 0:
        i1 = i0 + 1
    elif math.isinf(duration_s):
        i1 = n_bins
    else:
        i1 = math.ceil(_snap((onset_s + duration_s - origin_s) / dt_s + shift))
    i0 = min(max(i0, 0), n_bins)
    i1 = min(max(i1, i0), n_bins)
    return int(i0), int(i1)
