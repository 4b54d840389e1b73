"""Spike times to binned counts, the response time grid, and PSTH smoothing.

This module holds the package's one binning function. Every dataset turns
spike times into counts with :func:`bin_spike_times` on the grid given by
:func:`n_bins_for_duration`, the same grid the spectrogram front end
(:mod:`deepstrf.preprocessing.spectrogram`) produces frames on, so that
response bin k and spectrogram frame k describe the same stretch of time.

Edge convention
---------------
Bin ``k`` covers ``[onset + k*dt, onset + (k+1)*dt)``: closed on the left,
open on the right. A spike exactly on an edge belongs to the bin that starts
there. Spike times are decimal numbers (``15.000`` ms, ``0.3`` ms) that binary
floating point cannot always represent, so ``0.3 / 0.1`` evaluates to
``2.9999999999999996``; a plain ``floor`` would put that spike in bin 2. The
rule used here snaps a time that lies within floating-point rounding error of
an edge onto that edge: with ``x = (t - onset) / dt`` the bin is
``floor(x + tol)``, where ``tol = 16 * eps * (|t| + |onset| + dt) / dt`` and
``eps`` is the float64 machine epsilon. ``tol`` bounds the rounding error of
the decimal-to-binary conversion of ``t``, ``onset`` and ``dt`` and of the
subtraction and division, with a wide margin; it is about ``1e-14`` bins for
millisecond data, far below the resolution of any recording (a spike 1 ns
from an edge at a 1 ms bin width is still 1e-6 bins away, and binned
correctly).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepstrf._validation import check_int, check_positive

__all__ = ["bin_flat_spike_times", "bin_spike_times", "n_bins_for_duration", "hanning_kernel",
           "smooth_rows", "RowSmoother", "SMOOTHING_ARITHMETIC"]

_EPS = np.finfo(np.float64).eps
# Relative slack for "this float is really a whole number": far above float64
# rounding error (1e-16), far below any meaningful fraction of a bin.
_WHOLE_TOL = 1e-9


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    return value


def bin_spike_times(trials: Sequence[np.ndarray], dt_ms: float, n_bins: int, *,
                    onset_ms: float = 0.0) -> np.ndarray:
    """Count the spikes of each trial in ``n_bins`` bins of ``dt_ms``.

    All trials are binned at once (one ``numpy.bincount`` over the
    concatenated spikes), so the cost is linear in the number of spikes with
    no Python loop over them.

    Parameters
    ----------
    trials : sequence of array_like
        One array of spike times (ms) per trial (repeat), e.g. the output of
        :func:`deepstrf.io.readers.read_spike_times`. A scalar counts as one
        spike; an empty array is a trial without spikes and gives a row of
        zeros.
    dt_ms : float
        Bin width in ms, > 0.
    n_bins : int
        Number of bins T, >= 0; usually :func:`n_bins_for_duration` of the
        stimulus.
    onset_ms : float, default 0.0
        Time of the left edge of bin 0, in the trials' time frame (0 when the
        times are relative to stimulus onset).

    Returns
    -------
    numpy.ndarray
        float32 counts of shape ``(len(trials), n_bins)``; ``(0, n_bins)``
        for no trials.

    Raises
    ------
    ValueError
        If ``dt_ms`` is not > 0, ``n_bins`` < 0, ``onset_ms`` or a spike time
        is not finite, or a trial is not one-dimensional.

    Notes
    -----
    Bin ``k`` covers ``[onset + k*dt, onset + (k+1)*dt)``; a spike exactly on
    an edge goes to the bin starting there, exactly, despite floating point
    (``t=15.000`` with ``dt=5`` is bin 3; ``t=0.3`` with ``dt=0.1`` is bin 3;
    see the module docstring for the rule). Spikes before the onset
    (negative relative time) and at or after ``onset + n_bins*dt`` are
    dropped: the responses are cropped to the stimulus grid.

    Examples
    --------
    >>> bin_spike_times([[-1.0, 0.0, 4.999, 5.0, 15.0], []], dt_ms=5, n_bins=3)
    array([[2., 1., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    arrays = []
    for i, trial in enumerate(trials):
        spikes = np.asarray(trial, dtype=np.float64)
        if spikes.ndim > 1:
            raise ValueError(
                f"trial {i} must be a 1-D array of spike times; got shape {spikes.shape}. "
                "Pass one array per trial."
            )
        arrays.append(spikes.reshape(-1))
    lengths = np.fromiter((a.size for a in arrays), dtype=np.intp, count=len(arrays))
    times = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float64)
    return bin_flat_spike_times(times, lengths, dt_ms, n_bins, onset_ms=onset_ms)


def bin_flat_spike_times(times: np.ndarray, lengths: np.ndarray, dt_ms: float, n_bins: int, *,
                         onset_ms: float = 0.0) -> np.ndarray:
    """:func:`bin_spike_times` for trials given as one flat array (the same rule).

    Parameters
    ----------
    times : numpy.ndarray
        Every trial's spike times (ms), one after the other.
    lengths : numpy.ndarray
        Spikes per trial (``sum(lengths) == len(times)``), e.g. from
        :func:`deepstrf.io.readers.read_spike_times_flat`.
    dt_ms, n_bins, onset_ms
        As for :func:`bin_spike_times`.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(lengths), n_bins)`` counts.
    """
    dt_ms = check_positive("dt_ms", dt_ms)
    n_bins = check_int("n_bins", n_bins, minimum=0)
    onset_ms = _check_finite("onset_ms", onset_ms)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.intp).reshape(-1)
    n_trials = len(lengths)
    if int(lengths.sum()) != times.size or (lengths < 0).any():
        raise ValueError(f"lengths must be non-negative and sum to the number of spike times; "
                         f"got {int(lengths.sum())} for {times.size} times.")
    if n_trials == 0 or n_bins == 0:
        return np.zeros((n_trials, n_bins), dtype=np.float32)
    if not np.isfinite(times).all():
        first_bad = int(np.flatnonzero(~np.isfinite(times))[0])
        bad_trial = int(np.searchsorted(np.cumsum(lengths), first_bad, side="right"))
        raise ValueError(
            f"spike times must be finite; trial {bad_trial} holds {float(times[first_bad])!r}. Remove "
            "missing-value markers (NaN, inf) before binning."
        )
    rows = np.repeat(np.arange(n_trials, dtype=np.intp), lengths)
    tol = (16.0 * _EPS) * (np.abs(times) + (abs(onset_ms) + dt_ms)) / dt_ms
    position = np.floor((times - onset_ms) / dt_ms + tol)
    keep = (position >= 0) & (position < n_bins)
    flat = rows[keep] * n_bins + position[keep].astype(np.intp)
    binned = np.bincount(flat, minlength=n_trials * n_bins)
    return binned.reshape(n_trials, n_bins).astype(np.float32)


def _round_if_whole(x: float) -> float:
    """``x`` rounded to the nearest integer if within float error of it."""
    nearest = round(x)
    if abs(x - nearest) <= _WHOLE_TOL * max(1.0, abs(x)):
        return float(nearest)
    return x


def n_bins_for_duration(n_samples: int, sample_rate: float, dt_ms: float) -> int:
    """Number of response bins of ``dt_ms`` covering a sound.

    ``T = ceil(duration / dt)`` with ``duration = n_samples / sample_rate``:
    the last bin is kept even when the sound ends inside it. A duration
    within float rounding error (1e-9 relative) of a whole number of bins
    counts as that whole number, so 1 s at 32 kHz is exactly 10000 bins of
    0.1 ms, not 10001.

    The spectrogram front end produces exactly this many frames and
    :func:`~deepstrf.preprocessing.spectrogram.waveform_on_grid` this many
    hops, so responses and stimuli share one time axis.

    Parameters
    ----------
    n_samples : int
        Length of the sound in samples, >= 0.
    sample_rate : float
        Its sample rate in Hz, > 0.
    dt_ms : float
        Bin width in ms, > 0.

    Returns
    -------
    int
        T >= 0.

    Examples
    --------
    >>> n_bins_for_duration(32000, 32000, 5.0)
    200
    >>> n_bins_for_duration(32001, 32000, 5.0)
    201
    """
    n_samples = check_int("n_samples", n_samples, minimum=0)
    sample_rate = check_positive("sample_rate", sample_rate)
    dt_ms = check_positive("dt_ms", dt_ms)
    bins = n_samples * 1000.0 / (sample_rate * dt_ms)
    return int(math.ceil(_round_if_whole(bins)))


def hanning_kernel(window_ms: float, dt_ms: float) -> np.ndarray:
    """Hanning smoothing kernel of Hsu, Borst & Theunissen (2004), unit sum.

    PSTHs are smoothed with a Hanning window about ``window_ms`` wide (21 ms
    in Hsu et al. 2004 and the CRCNS AA papers) before fitting, to trade a
    little temporal resolution for much less noise.

    ``K = floor(window_ms / dt_ms)`` bins, raised to the next odd number so
    the kernel has a centre tap and smoothing causes no shift. The taps are
    MATLAB's ``hanning(K)``, the window without its zero end points
    (``numpy.hanning(K + 2)[1:-1]``), so all K taps carry weight and the
    kernel spans the full window. The taps are divided by their sum, so
    smoothing preserves the spike count of each trial. ``K < 2`` gives the
    identity ``[1.0]``.

    Parameters
    ----------
    window_ms : float
        Window length in ms, > 0.
    dt_ms : float
        Bin width in ms, > 0.

    Returns
    -------
    numpy.ndarray
        float64 kernel of odd length K, symmetric, summing to 1.

    Notes
    -----
    deepSTRF 0.1.0 convolves with the un-normalised ``numpy.hanning(K)``
    (same K), whose two end taps are zero: at ``dt=5`` its kernel is
    ``[0, .5, 1, .5, 0]`` (sum 2, three useful taps), at ``dt=10`` it is
    ``[0, 1, 0]``, the identity, and at ``dt=1`` it sums to 10. Its smoothed
    responses are scaled by about K/2 and no longer in spike counts. Here
    ``dt=5`` gives ``[1, 3, 4, 3, 1] / 12`` and ``dt=10`` gives
    ``[1, 2, 1] / 4``.

    References
    ----------
    Hsu, A., Borst, A. & Theunissen, F. E. (2004). Quantifying variability in
    neural responses and its application for the validation of model
    predictions. Network: Computation in Neural Systems 15(2), 91-109.
    doi:10.1088/0954-898X_15_2_002

    Examples
    --------
    >>> hanning_kernel(21, 5.0) * 12
    array([1., 3., 4., 3., 1.])
    """
    window_ms = check_positive("window_ms", window_ms)
    dt_ms = check_positive("dt_ms", dt_ms)
    n_taps = int(math.floor(_round_if_whole(window_ms / dt_ms)))
    if n_taps < 2:
        return np.ones(1, dtype=np.float64)
    if n_taps % 2 == 0:
        n_taps += 1
    taps = np.hanning(n_taps + 2)[1:-1]
    return taps / taps.sum()


def _whole_number_kernel(weights: tuple[int, ...]) -> tuple[np.ndarray, float]:
    total = float(sum(weights))
    return (np.asarray(weights, dtype=np.float64) / total).astype(np.float32), total


#: Kernels applied as sums with whole-number weights, then one division:
#: (their float32 taps, the weights' sum). Only these two factor into 2-tap
#: and 3-tap sums ([1, 2, 1] = [1, 1] * [1, 1]; [1, 3, 4, 3, 1] = that * [1, 1, 1]).
_FACTORED = (_whole_number_kernel((1, 2, 1)), _whole_number_kernel((1, 3, 4, 3, 1)))


#: Arrays of at most this many values are smoothed through one zero-padded
#: copy (fewer numpy calls than the flat passes and the rows' ends).
_SMALL = 4096


#: Version of the values :func:`smooth_rows` gives (2: float32 :class:`RowSmoother`
#: arithmetic, a few ulp from the float64 ``convolve1d`` of version 1). Every build
#: that smooths puts it in its cache key, so a cached entry is never a mix of both.
SMOOTHING_ARITHMETIC = 2


class RowSmoother:
    """Convolve rows with one odd-length kernel, into a given output, reusing scratch memory.

    The arithmetic of :func:`smooth_rows`, as an object to call chunk after
    chunk (``NeuralDataset.smooth_responses`` streams the packed blocks
    through one): ``smoother(x, out)`` writes the zero-padded ("same")
    convolution of each row of ``x`` into ``out``, which may be ``x`` itself.

    Every output value is computed by the same fixed sequence of float32
    numpy ufuncs (each multiply and each add rounded on its own, no fused
    multiply-add), whatever the number of rows, how they are split into
    chunks, the thread count or the CPU's vector width: every caller gets
    bit-identical values. With ``h = K // 2`` and ``w`` the kernel,

    * a symmetric kernel (``w[h - d] == w[h + d]``) is applied as
      ``y = x[i] * w[h]``, then for ``d = 1 .. h``
      ``y = y + (x[i - d] + x[i + d]) * w[h - d]``;
    * another kernel as ``y = x[i] * w[h]``, then for ``d = 1 .. h``
      ``y = y + x[i - d] * w[h + d]`` and ``y = y + x[i + d] * w[h - d]``;

    with ``x`` outside the row taken as 0. The taps are rounded to float32
    first. Two kernels whose float32 taps are those of whole-number weights
    are summed in those weights and divided once, which takes fewer passes
    and gives spike counts their correctly rounded smoothed values: the
    Hanning kernels of a 21 ms window at 5 ms bins, ``[1, 3, 4, 3, 1] / 12``
    (pair sums ``s = x[i] + x[i+1]``, ``u = s[i] + s[i+1]``, then
    ``y = ((u[i-2] + u[i-1]) + u[i]) / 12``), and at 10 ms,
    ``[1, 2, 1] / 4`` (``y = u[i-1] / 4``). Kernels longer than
    ``LONG_KERNEL`` taps (41: a 21 ms window at 0.5 ms bins has 43), where
    those 3 passes per tap pair cost more than a direct loop, go through
    ``scipy.ndimage.convolve1d`` instead (float64 sums of the same float32
    taps, rounded once to float32; also one fixed order per value).

    Accuracy: against the exact convolution ``c[i] = sum_j w[j] x[i+h-j]``
    with the float64 taps, each output is within
    ``(K + 2) * eps * sum_j |w[j]| |x[i+h-j]|`` (``eps = 2**-23``, float32
    machine epsilon): at most ``K + 1`` roundings of relative size ``eps/2``
    reach each term (its tap, at most one pair sum, the product, at most
    ``K - 1`` accumulations; 5 and 3 for the whole-number kernels). For a
    unit-sum kernel of non-negative taps (Hanning, Gaussian) that is at most
    ``(K + 2) * eps * max|x|`` over the window: 7 ulp-sized steps of the largest count for the 5 taps of a 21 ms
    window at 5 ms bins, 23 for the 21 taps at 1 ms. (The long-kernel path
    is more accurate still: about ``eps`` relative to that sum.)

    Parameters
    ----------
    kernel : array_like
        The taps, odd length (a centre tap, so nothing shifts).
    chunk_values : int, default 65536
        Values of ``x`` handled per ufunc call: small enough that the
        chunk and its two float32 scratch arrays stay in the core's cache.

    Notes
    -----
    A smoother reuses its scratch memory from call to call: give each thread
    its own.
    """

    #: Above this many taps, ``scipy.ndimage.convolve1d`` is the faster loop.
    LONG_KERNEL = 41

    def __init__(self, kernel: Any, *, chunk_values: int = 1 << 16) -> None:
        taps = np.asarray(kernel, dtype=np.float64).reshape(-1)
        if taps.size % 2 != 1:
            raise ValueError(f"kernel must have an odd length (a centre tap); got {taps.size} "
                             "taps.")
        self.kernel = taps
        self._taps = taps.astype(np.float32)
        self._h = taps.size // 2
        self._symmetric = bool(np.array_equal(self._taps, self._taps[::-1]))
        # the Hanning kernels of a 21 ms window at 5 and 10 ms bins, in whole-number weights
        self._binomial = next((d for c, d in _FACTORED if c.size == self._taps.size
                               and np.array_equal(self._taps, c)), None)
        self._chunk = max(1, int(chunk_values))
        self._scratch: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, size: int) -> np.ndarray:
        buf = self._scratch.get(name)
        if buf is None or buf.size < size:   # grown, never shrunk: reused chunk after chunk
            grown = size if buf is None else max(size, min(2 * buf.size, self._chunk + size))
            buf = self._scratch[name] = np.empty(grown, dtype=np.float32)
        return buf[:size]

    def _flat(self, src: np.ndarray, out: np.ndarray) -> None:
        """``out[q]`` = the convolution at ``src[q + h]`` for ``q < len(src) - 2h`` (1-D)."""
        h, w = self._h, self._taps
        n = src.size - 2 * h
        if h == 0:
            np.multiply(src, w[0], out=out)
            return
        acc = self._buffer("acc", n + 2 * h)
        tmp = self._buffer("tmp", n + 2 * h)
        if self._binomial is not None:
            # [1, 2, 1] = [1, 1] * [1, 1]; [1, 3, 4, 3, 1] = that * [1, 1, 1]
            np.add(src[:-1], src[1:], out=acc[:n + 2 * h - 1])
            np.add(acc[:n + 2 * h - 2], acc[1:n + 2 * h - 1], out=tmp[:n + 2 * h - 2])
            if h == 1:
                np.divide(tmp[:n], self._binomial, out=out)
            else:
                np.add(tmp[:n], tmp[1:n + 1], out=acc[:n])
                np.add(acc[:n], tmp[2:n + 2], out=acc[:n])
                np.divide(acc[:n], self._binomial, out=out)
            return
        acc, tmp = acc[:n], tmp[:n]
        np.multiply(src[h:h + n], w[h], out=acc)
        for d in range(1, h + 1):
            left, right = src[h - d:h - d + n], src[h + d:h + d + n]
            last = out if d == h else acc
            if self._symmetric:
                np.add(left, right, out=tmp)
                np.multiply(tmp, w[h - d], out=tmp)
                np.add(acc, tmp, out=last)
            else:
                np.multiply(left, w[h + d], out=tmp)
                np.add(acc, tmp, out=acc)
                np.multiply(right, w[h - d], out=tmp)
                np.add(acc, tmp, out=last)

    def _padded(self, x: np.ndarray, out: np.ndarray) -> None:
        """Each row of ``x`` padded with ``h`` zeros a side, then flat passes.

        The pads are zeros, so no shift reaches into the next row's values.
        """
        m, T = x.shape
        h = self._h
        width = T + 2 * h
        rows = max(1, self._chunk // width)
        for a in range(0, m, rows):
            b = min(a + rows, m)
            padded = self._buffer("pad", (b - a) * width).reshape(b - a, width)
            padded[:, :h] = 0
            padded[:, h + T:] = 0
            padded[:, h:h + T] = x[a:b]
            res = self._buffer("res", (b - a) * width)
            self._flat(padded.reshape(-1), res[:res.size - 2 * h])
            np.copyto(out[a:b], res.reshape(b - a, width)[:, :T])

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None, *,
                 nan_free: bool | None = None) -> np.ndarray:
        """Smooth the rows of the float32 ``(n, T)`` array ``x`` into ``out`` (returned).

        ``out`` (float32, ``x``'s shape) may be ``x``; ``None`` allocates it.
        ``nan_free=True`` promises ``x`` holds no NaN (skips the check).
        NaN counts as 0 for its neighbours and stays NaN.
        """
        if x.ndim != 2 or x.dtype != np.float32:
            raise ValueError(f"rows must be a 2-D float32 array (n_rows, T); got shape "
                             f"{tuple(x.shape)} and dtype {x.dtype}.")
        if out is None:
            out = np.empty(x.shape, dtype=np.float32)
        elif out.shape != x.shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {tuple(x.shape)}; got "
                             f"{out.dtype} {tuple(out.shape)}.")
        if x.size == 0:
            return out
        nan = None
        # np.maximum propagates NaN: one max (a pass that also brings a
        # cache-sized x into cache for the passes below) rules NaN out
        if not nan_free and np.isnan(np.maximum.reduce(x, axis=None)):
            nan = np.isnan(x)
            x = np.where(nan, np.float32(0), x)
        if not out.flags.c_contiguous:
            target = np.empty(x.shape, dtype=np.float32)
            self._into(np.ascontiguousarray(x), target)
            out[...] = target
        else:
            self._into(np.ascontiguousarray(x), out)
        if nan is not None:
            out[nan] = np.nan
        return out

    def _into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Smooth C-contiguous ``x`` into C-contiguous ``out`` (NaN already zeroed)."""
        n, T = x.shape
        h = self._h
        if self._taps.size > self.LONG_KERNEL:
            from scipy.ndimage import convolve1d

            rows = max(1, self._chunk // T)
            for a in range(0, n, rows):     # through scratch: out may be x
                b = min(a + rows, n)
                res = self._buffer("res", (b - a) * T).reshape(b - a, T)
                convolve1d(x[a:b], self._taps, axis=1, output=res, mode="constant", cval=0.0)
                out[a:b] = res
            return
        if T <= 2 * h or x.size <= _SMALL:  # no bin clear of both ends, or a small array:
            self._padded(x, out)            # the same values in fewer calls
            return
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        # The flat passes below run over chunks of whole rows, so the bins
        # within h of a row's end get values of the neighbouring row; they are
        # recomputed from a copy of the rows' ends taken first (out may be x):
        # row r's first and last 2h values at ends[r*5h + h : r*5h + 5h], after
        # h zeros (and h zeros close the buffer), so those bins only reach
        # values of their own row and zeros, as in the zero-padded row.
        if h:
            ends = self._scratch.get("ends")
            if ends is None or ends.size < n * 5 * h + h:
                ends = self._scratch["ends"] = np.zeros(n * 5 * h + h, dtype=np.float32)
            # each row's 2h end values as one opaque item: one strided copy of
            # n items instead of n tiny rows
            run = np.dtype((np.void, 2 * h * x.itemsize))
            rows_ends = ends[:n * 5 * h].reshape(n, 5 * h)
            np.copyto(rows_ends[:, h:3 * h].view(run), x[:, :2 * h].view(run))
            np.copyto(rows_ends[:, 3 * h:].view(run), x[:, T - 2 * h:].view(run))
        rows = max(1, self._chunk // T)
        for a in range(0, n, rows):
            lo, hi = a * T, min(a + rows, n) * T
            self._flat(flat_x[lo:hi], flat_out[lo + h:hi - h])
        if h:
            res = self._buffer("res", n * 5 * h)
            self._flat(ends[:n * 5 * h + h], res[:n * 5 * h - h])
            # res[r*5h + c] is bin c, res[r*5h + 3h + c] bin T - h + c (c < h)
            rows_res = res.reshape(n, 5 * h)
            run = np.dtype((np.void, h * x.itemsize))
            np.copyto(out[:, :h].view(run), rows_res[:, :h].view(run))
            np.copyto(out[:, T - h:].view(run), rows_res[:, 3 * h:4 * h].view(run))


def smooth_rows(rows: Any, kernel: np.ndarray) -> Any:
    """Convolve each row (a repeat's time course) with ``kernel``, same length.

    The one smoothing routine of the package: dataset builders,
    ``NeuralDataset.smooth_responses`` and the video datasets' Gaussian
    smoothing all run its arithmetic (:class:`RowSmoother`), so they give
    bit-identical values.

    Parameters
    ----------
    rows : numpy.ndarray or torch.Tensor
        ``(n_rows, T)`` float array.
    kernel : numpy.ndarray
        Odd-length kernel, e.g. from :func:`hanning_kernel`.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A new float32 ``(n_rows, T)`` array of the input's kind: the
        zero-padded ("same") convolution, so bins near the ends only receive
        the part of the kernel that falls inside the response. NaN values
        (missing samples) count as 0 for their neighbours and stay NaN.
        Computed in float32, within ``(K + 2) * eps * sum_j |w_j| |x|`` of
        the exact convolution for K taps (see :class:`RowSmoother`).
    """
    is_tensor = not isinstance(rows, np.ndarray)
    x = rows.detach().to("cpu").numpy() if is_tensor else rows
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"rows must be 2-D (n_rows, T); got shape {tuple(x.shape)}.")
    out = RowSmoother(kernel)(x)
    if is_tensor:
        import torch

        return torch.from_numpy(out)
    return out
